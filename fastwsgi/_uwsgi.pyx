# cython: language_level=3
"""The uwsgi binary protocol request parser (see _uwsgi.pxd for the contract).

What nginx's ``uwsgi_pass`` sends (uWSGI's "uwsgi protocol", modifier1 0 = WSGI)::

    packet  = modifier1:u8  datasize:u16le  modifier2:u8  vars
    vars    = *( keysize:u16le key  valsize:u16le value )     (datasize bytes)

followed by CONTENT_LENGTH bytes of body.  The vars are CGI meta-variables
(RFC 3875 §4.1; nginx's ``uwsgi_params``) plus one ``HTTP_*`` var per request
header, so they become environ keys as they are, with these exceptions:

* ``REQUEST_URI`` is also ``RAW_URI`` (the key the HTTP parser sets);
* ``HTTPS`` (``on``) or ``UWSGI_SCHEME`` (``http``/``https``) set wsgi.url_scheme;
* ``CONTENT_LENGTH`` frames the body; an empty one (nginx sends it empty for a
  request without a body) and an empty ``CONTENT_TYPE`` are left out, and
  ``HTTP_CONTENT_LENGTH`` / ``HTTP_CONTENT_TYPE`` (nginx passes the headers too)
  are dropped: PEP 3333 has them without the prefix only;
* a repeated ``HTTP_*`` var is joined with ", " ("; " for Cookie), as the HTTP
  parser joins repeated field lines; any other repeated var: the last one wins;
* ``SCRIPT_NAME``, when the proxy sends one (``uwsgi_param SCRIPT_NAME /app``),
  comes off the front of ``PATH_INFO`` if it is a whole-segment prefix (uWSGI's
  ``manage-script-name``); otherwise the server's --root-path does, as for HTTP;
* ``PATH_INFO`` missing: derived from ``REQUEST_URI``.

modifier1 may be 0 or 30 (uWSGI's "strip SCRIPT_NAME from PATH_INFO", which we
always do anyway); modifier2 must be 0.

Limits (the HTTP ones, so both listeners accept the same requests): the packet
(4 + datasize) within max_header_bytes (431), at most max_headers ``HTTP_*`` vars
(431), REQUEST_URI within max_request_line (414), CONTENT_LENGTH within max_body
(413).  Strictness: a var overrunning the packet, an empty or non-visible-ASCII
key, a ``wsgi.*`` key, control characters in a header value, a missing
REQUEST_METHOD, a bad CONTENT_LENGTH: 400.  The proxy already validated the
HTTP request; a packet that breaks these rules is not from a proxy we understand.

The response is plain HTTP/1.x (nginx parses the status line): keep_alive and
http11 are False, so it is framed with Content-Length or ends at close.
"""

from cpython.dict cimport PyDict_Copy, PyDict_GetItem, PyDict_SetDefault
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_GET_LENGTH
from libc.string cimport memcmp

from fastwsgi._parser cimport RequestParser

from fastwsgi.errors import (
    BodyTooLarge,
    HeadersTooLarge,
    InvalidFraming,
    InvalidHeader,
    InvalidRequestLine,
    InvalidTarget,
    RequestLineTooLong,
)

cdef extern from "Python.h":
    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t size, const char* errors)

cdef enum:
    HEAD_SIZE = 4
    MODIFIER_WSGI = 0
    MODIFIER_MANAGE_PATH_INFO = 30
    MAX_CONTENT_LENGTH_DIGITS = 18     # < 2**63: no overflow (as in _parser.pyx)
    KEY_CACHE_SIZE = 512               # power of two

cdef str K_RAW_URI = "RAW_URI"
cdef str K_REQUEST_URI = "REQUEST_URI"
cdef str K_REQUEST_METHOD = "REQUEST_METHOD"
cdef str K_PATH_INFO = "PATH_INFO"
cdef str K_SCRIPT_NAME = "SCRIPT_NAME"
cdef str K_QUERY_STRING = "QUERY_STRING"
cdef str K_SERVER_PROTOCOL = "SERVER_PROTOCOL"
cdef str K_CONTENT_LENGTH = "CONTENT_LENGTH"
cdef str K_URL_SCHEME = "wsgi.url_scheme"
cdef str V_EMPTY = ""
cdef str V_SLASH = "/"
cdef str V_HTTP = "http"
cdef str V_HTTPS = "https"
cdef str V_HTTP10 = "HTTP/1.0"
cdef str V_COMMA = ", "
cdef str V_SEMICOLON = "; "
cdef dict _EMPTY_BASE = {}

# visible ASCII: what a CGI variable name may hold (RFC 3875 §4.1 names are
# letters, digits and "_"; nginx passes custom uwsgi_param names as written)
cdef unsigned char _KEY[256]
# RFC 9110 §5.5 field-value bytes, as in _parser.pyx: HTAB, SP, VCHAR, obs-text
cdef unsigned char _FIELD_VALUE[256]
# request-target / query bytes: no CTL, no SP, no DEL (obs-text is let through:
# nginx accepts raw UTF-8 in the request line and passes it on)
cdef unsigned char _URI[256]


cdef void _init_tables() noexcept:
    cdef int c
    for c in range(256):
        _KEY[c] = 0x21 <= c <= 0x7E
        _FIELD_VALUE[c] = c == 9 or c == 32 or (0x21 <= c <= 0x7E) or c >= 0x80
        _URI[c] = (0x21 <= c <= 0x7E) or c >= 0x80

_init_tables()


# Keys repeat on every request (the same ~20 names from the same nginx): a
# direct-mapped cache (FNV-1a of the bytes -> str) makes them allocation-free.
cdef list _key_cache = [None] * KEY_CACHE_SIZE


cdef object _key_str(const unsigned char* p, Py_ssize_t n):
    cdef unsigned int h = 2166136261u
    cdef Py_ssize_t i
    cdef object cached
    for i in range(n):
        h = (h ^ p[i]) * 16777619u
    cached = _key_cache[h & (KEY_CACHE_SIZE - 1)]
    if (cached is not None and PyUnicode_GET_LENGTH(cached) == n
            and memcmp(PyUnicode_1BYTE_DATA(cached), p, n) == 0):
        return cached
    cached = PyUnicode_DecodeLatin1(<const char*>p, n, NULL)
    _key_cache[h & (KEY_CACHE_SIZE - 1)] = cached
    return cached


cdef inline object _latin1(const unsigned char* p, Py_ssize_t n):
    return PyUnicode_DecodeLatin1(<const char*>p, n, NULL)


cdef inline bint _is(const unsigned char* p, Py_ssize_t n, const char* name, Py_ssize_t m) noexcept:
    return n == m and memcmp(p, name, m) == 0


cdef inline unsigned int _u16(const unsigned char* p) noexcept:
    return p[0] | (<unsigned int>p[1] << 8)


cdef int _check(const unsigned char* p, Py_ssize_t n, unsigned char* table,
                const unsigned char* key, Py_ssize_t klen) except -1:
    cdef Py_ssize_t i
    for i in range(n):
        if not table[p[i]]:
            raise InvalidHeader(f"invalid byte in uwsgi var {_latin1(key, klen)}")
    return 0


cdef object _method(const unsigned char* p, Py_ssize_t n):
    # the prebuilt strings the HTTP parser uses for the common methods
    cdef Py_ssize_t i
    if n == 0:
        raise InvalidRequestLine("empty REQUEST_METHOD in uwsgi packet")
    for i in range(n):
        # RFC 9110 §9.1: method = token (a subset of the visible ASCII of _KEY)
        if not _KEY[p[i]] or p[i] in b'"(),/:;<=>?@[\\]{}':
            raise InvalidRequestLine("REQUEST_METHOD is not a token")
    if _is(p, n, b"GET", 3):
        return "GET"
    if _is(p, n, b"POST", 4):
        return "POST"
    if _is(p, n, b"HEAD", 4):
        return "HEAD"
    return _latin1(p, n)


cdef bint _https_on(const unsigned char* p, Py_ssize_t n) noexcept:
    # CGI's HTTPS is "on" when set (nginx: $https is "on" or empty); "1" too
    return (n == 2 and (p[0] | 32) == b'o' and (p[1] | 32) == b'n') or _is(p, n, b"1", 1)


cdef object _path_from_uri(str uri):
    """PATH_INFO from REQUEST_URI when the proxy sent no PATH_INFO: the path
    part, percent-decoded to bytes, as latin-1 (PEP 3333)."""
    from urllib.parse import unquote_to_bytes
    path = uri.split("?", 1)[0]
    if not path.startswith("/"):
        raise InvalidTarget("REQUEST_URI is not an absolute path")
    return unquote_to_bytes(path).decode("latin-1")


cdef Py_ssize_t parse_uwsgi_head(RequestParser parser, const char* buf, Py_ssize_t n,
                                 dict base) except -1:
    cdef const unsigned char* p = <const unsigned char*>buf
    cdef Py_ssize_t size, end, pos, k0, klen, v0, vlen, i, headers = 0
    cdef int modifier1
    cdef long long cl = -1
    cdef bint script_sent = False, https = False
    cdef dict env
    cdef object key, value, scheme = None, method = None, raw_uri = None
    cdef PyObject* old
    cdef Py_ssize_t before

    if n < HEAD_SIZE:
        return 0
    modifier1 = p[0]
    size = _u16(p + 1)
    if modifier1 != MODIFIER_WSGI and modifier1 != MODIFIER_MANAGE_PATH_INFO:
        raise InvalidRequestLine(f"uwsgi modifier1 {modifier1} (only 0, WSGI, is served)")
    if p[3] != 0:
        raise InvalidRequestLine(f"uwsgi modifier2 {p[3]} (must be 0)")
    end = HEAD_SIZE + size
    # judged on the header alone, as soon as it is here: the answer must not
    # depend on how the packet was split
    if end > parser.limits.max_header_bytes:
        raise HeadersTooLarge("uwsgi packet larger than max_header_bytes")
    if n < end:
        return 0
    if base is None:
        base = _EMPTY_BASE

    env = PyDict_Copy(base)
    pos = HEAD_SIZE
    while pos < end:
        # each length is checked against the bytes left in the packet: a var
        # that overruns it means the framing is not what the sender meant
        if end - pos < 2:
            raise InvalidHeader("truncated uwsgi var (key size)")
        klen = _u16(p + pos)
        k0 = pos + 2
        if klen == 0:
            raise InvalidHeader("empty uwsgi var name")
        if klen > end - k0 - 2:
            raise InvalidHeader("uwsgi var name overruns the packet")
        vlen = _u16(p + k0 + klen)
        v0 = k0 + klen + 2
        if vlen > end - v0:
            raise InvalidHeader("uwsgi var value overruns the packet")
        pos = v0 + vlen
        for i in range(klen):
            if not _KEY[p[k0 + i]]:
                raise InvalidHeader("uwsgi var name is not visible ASCII")

        if klen > 5 and memcmp(p + k0, b"HTTP_", 5) == 0:
            headers += 1
            if headers > parser.limits.max_headers:
                raise HeadersTooLarge("more than max_headers HTTP_* vars")
            if (_is(p + k0, klen, b"HTTP_CONTENT_LENGTH", 19)
                    or _is(p + k0, klen, b"HTTP_CONTENT_TYPE", 17)):
                continue
            _check(p + v0, vlen, _FIELD_VALUE, p + k0, klen)
            key = _key_str(p + k0, klen)
            value = _latin1(p + v0, vlen)
            # one lookup for the common case (see _parser.pyx _parse_head)
            before = len(env)
            old = PyDict_SetDefault(env, key, value)
            if len(env) == before:
                if PyDict_GetItem(base, key) == old:
                    env[key] = value
                else:
                    env[key] = <object>old + (
                        V_SEMICOLON if _is(p + k0, klen, b"HTTP_COOKIE", 11) else V_COMMA) + value
            continue

        if _is(p + k0, klen, b"REQUEST_METHOD", 14):
            method = _method(p + v0, vlen)
            env[K_REQUEST_METHOD] = method
        elif _is(p + k0, klen, b"REQUEST_URI", 11):
            if vlen > parser.limits.max_request_line:
                raise RequestLineTooLong("REQUEST_URI longer than max_request_line")
            _check(p + v0, vlen, _URI, p + k0, klen)
            raw_uri = _latin1(p + v0, vlen)
            env[K_REQUEST_URI] = raw_uri
            env[K_RAW_URI] = raw_uri
        elif _is(p + k0, klen, b"PATH_INFO", 9) or _is(p + k0, klen, b"SCRIPT_NAME", 11):
            # decoded paths: any byte but NUL (nginx never decodes %00 into one)
            for i in range(vlen):
                if p[v0 + i] == 0:
                    raise InvalidTarget("NUL in uwsgi PATH_INFO / SCRIPT_NAME")
            if klen == 11:
                script_sent = True
                env[K_SCRIPT_NAME] = _latin1(p + v0, vlen).rstrip("/")
            else:
                env[K_PATH_INFO] = _latin1(p + v0, vlen)
        elif _is(p + k0, klen, b"QUERY_STRING", 12):
            _check(p + v0, vlen, _URI, p + k0, klen)
            env[K_QUERY_STRING] = _latin1(p + v0, vlen)
        elif _is(p + k0, klen, b"CONTENT_LENGTH", 14):
            # RFC 9110 §8.6 Content-Length = 1*DIGIT; framing ambiguity is a 400
            if cl >= 0:
                raise InvalidFraming("repeated CONTENT_LENGTH")
            if vlen == 0:
                continue            # nginx: no body
            if vlen > MAX_CONTENT_LENGTH_DIGITS:
                raise InvalidFraming("CONTENT_LENGTH must be 1 to 18 digits")
            cl = 0
            for i in range(vlen):
                if not (48 <= p[v0 + i] <= 57):
                    raise InvalidFraming("CONTENT_LENGTH must be 1 to 18 digits")
                cl = cl * 10 + (p[v0 + i] - 48)
            env[K_CONTENT_LENGTH] = _latin1(p + v0, vlen)
        elif _is(p + k0, klen, b"CONTENT_TYPE", 12):
            if vlen:
                _check(p + v0, vlen, _FIELD_VALUE, p + k0, klen)
                env[_key_str(p + k0, klen)] = _latin1(p + v0, vlen)
        else:
            if klen >= 5 and memcmp(p + k0, b"wsgi.", 5) == 0:
                raise InvalidHeader("uwsgi var names a wsgi.* key")
            if _is(p + k0, klen, b"HTTPS", 5):
                https = _https_on(p + v0, vlen)
            elif _is(p + k0, klen, b"UWSGI_SCHEME", 12):
                if _is(p + v0, vlen, b"https", 5):
                    scheme = V_HTTPS
                elif _is(p + v0, vlen, b"http", 4):
                    scheme = V_HTTP
                else:
                    raise InvalidHeader("UWSGI_SCHEME must be http or https")
            env[_key_str(p + k0, klen)] = _latin1(p + v0, vlen)

    if method is None:
        raise InvalidRequestLine(
            "uwsgi packet without REQUEST_METHOD (does the proxy include uwsgi_params?)")
    path = env.get(K_PATH_INFO)
    if path is None:
        if raw_uri is None:
            raise InvalidTarget("uwsgi packet without PATH_INFO or REQUEST_URI")
        path = _path_from_uri(raw_uri)
    if script_sent:
        script_name = env[K_SCRIPT_NAME]
    else:
        script_name = parser.script_name
        env[K_SCRIPT_NAME] = script_name
    # PEP 3333: SCRIPT_NAME + PATH_INFO is the path; the mount point comes off
    # only as a whole-segment prefix ("/app" strips from "/app/x", not "/apple")
    if script_name and path.startswith(script_name) and (
            len(path) == len(script_name) or path[len(script_name)] == "/"):
        path = path[len(script_name):]
    env[K_PATH_INFO] = path
    if raw_uri is None:
        query = env.get(K_QUERY_STRING)
        env[K_RAW_URI] = (script_name + path) + ("?" + query if query else "")
    if K_QUERY_STRING not in env:
        env[K_QUERY_STRING] = V_EMPTY
    if K_SERVER_PROTOCOL not in env:
        env[K_SERVER_PROTOCOL] = V_HTTP10
    if scheme is not None:
        env[K_URL_SCHEME] = scheme
    elif https:
        env[K_URL_SCHEME] = V_HTTPS
    if cl >= 0 and parser.limits.max_body > 0 and cl > parser.limits.max_body:
        raise BodyTooLarge("CONTENT_LENGTH larger than max_body")

    parser.environ = env
    parser.http11 = False           # the response to the proxy: Content-Length or close
    parser.keep_alive = False       # nginx's uwsgi module: one request per connection
    parser.expect_continue = False  # the proxy answered any 100-continue itself
    parser.is_head = method == "HEAD"
    parser.body_received = 0
    parser.frame_by_length(cl)
    return end


def parse_packet(RequestParser parser not None, const unsigned char[:] data, dict base=None):
    """parse_uwsgi_head from Python (tests, fuzzing): the bytes consumed, 0 if more
    are needed.  The results are on `parser` (environ, body_kind, ...)."""
    if data.shape[0] == 0:
        return parse_uwsgi_head(parser, b"", 0, base)
    return parse_uwsgi_head(parser, <const char*>&data[0], data.shape[0], base)
