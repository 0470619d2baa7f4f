# cython: language_level=3
"""The compiled, sans-I/O HTTP/1.1 request parser (RFC 9112, RFC 9110).

Contract (the call sequence is in _parser.pxd):

* ``parse_head(buf, n, base)`` looks for the end of the head (the first empty
  line) in ``buf[0:n]``.  It returns 0 while the head is incomplete and keeps
  its scan state, so the next call with a longer buffer that starts with the
  same bytes resumes where it stopped.  Once the head is complete it validates
  all of it, sets ``environ`` (a copy of ``base`` plus the request keys, every
  value a latin-1 decoded str, PEP 3333) and the framing results, and returns
  the bytes consumed: up to 2 skipped empty lines, the head and its final CRLF.
  ``base`` is meant for server constants; a request key it happens to carry
  (``HTTP_*``, ``CONTENT_*``) is replaced by the request's field, never joined.
* ``decode_body(buf, n, &out)`` consumes body bytes and decodes them in place:
  afterwards the first ``out`` bytes of ``buf`` are body data (``out`` may be 0
  when only chunk framing was consumed).  It returns the input bytes consumed
  and may leave an incomplete chunk-size or trailer line unconsumed; the caller
  keeps the rest and calls again with more bytes.  ``body_done`` is set after
  the last byte of the message (for chunked: after the trailer's final CRLF).
* ``reset()`` forgets the message, keeps ``limits`` and ``script_name``.
* Errors: an ``fastwsgi.errors.HttpParserError`` subclass naming the broken
  rule; its ``status_code`` is the answer.  The parser is then unusable for
  this connection (the server answers and closes).

Strictness: when RFC 9112 lets a server choose between tolerating and
rejecting, this parser rejects; a request that two parsers could frame
differently is a request-smuggling vector.

Hot path: everything works on (pointer, length) with byte tables; the only
Python objects created per request are the environ dict and its values.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_Copy, PyDict_SetDefault
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_1BYTE_DATA, PyUnicode_GET_LENGTH
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove

from fastwsgi.errors import (
    BodyTooLarge,
    ExpectationFailed,
    HeadersTooLarge,
    HttpParserError,
    InvalidChunk,
    InvalidFraming,
    InvalidHeader,
    InvalidRequestLine,
    InvalidTarget,
    RequestLineTooLong,
    MethodTooLong,
    UnsupportedTransferCoding,
    UnsupportedVersion,
)

cdef extern from "Python.h":
    # const-correct declaration (Cython's cpython.unicode takes a char*)
    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t size, const char* errors)
    int PyDict_Merge(object a, object b, int override) except -1

cdef extern from *:
    """
    /* A dict sized for the whole environ up front: growing a copy of `base`
       key by key resizes it three or four times per request.
       _PyDict_NewPresized left the public headers in 3.13: there the dict
       grows as usual (correct, a little slower). */
    #if PY_VERSION_HEX < 0x030D0000
    #define fastwsgi_dict_presized(n) _PyDict_NewPresized(n)
    #else
    #define fastwsgi_dict_presized(n) PyDict_New()
    #endif
    """
    dict fastwsgi_dict_presized(Py_ssize_t n)

__all__ = ["Limits", "RequestParser", "BODY_NONE", "BODY_LENGTH", "BODY_CHUNKED"]


# The last base found clean, for all parsers: a parser is made per connection,
# and its own memo (_clean_base) would re-check the base on every new one.
cdef dict _clean_memo = None
cdef Py_ssize_t _clean_memo_len = -1


cdef bint _is_clean_base(dict base):
    """True if no key of `base` is one a request sets (then cloning is exact)."""
    if not base:
        return False
    for key in base:
        if not isinstance(key, str):
            return False
        if (key.startswith("HTTP_") or key in _REQUEST_KEYS):
            return False
    return True


_REQUEST_KEYS = frozenset({"REQUEST_METHOD", "SERVER_PROTOCOL", "RAW_URI", "QUERY_STRING",
                           "PATH_INFO", "SCRIPT_NAME", "CONTENT_TYPE", "CONTENT_LENGTH"})

# Python-visible copies of the BodyKind values (the enum is C-only)
globals().update(BODY_NONE=<int>BODY_NONE, BODY_LENGTH=<int>BODY_LENGTH,
                 BODY_CHUNKED=<int>BODY_CHUNKED)


cdef enum:
    HTAB = 9
    LF = 10
    CR = 13
    SP = 32

    # decode_body states for chunked bodies (self.chunk_state)
    CHUNK_SIZE = 0          # expecting a chunk-size line
    CHUNK_DATA = 1          # inside chunk data; self.remaining bytes left
    CHUNK_DATA_END = 2      # expecting the CRLF that ends chunk data
    CHUNK_TRAILER = 3       # after the last-chunk: trailer lines until an empty line
    CHUNK_DONE = 4

    # RFC 9112 §2.2: "a server that is expecting to receive and parse a
    # request-line SHOULD ignore at least one empty line (CRLF) received prior
    # to the request-line" -- we ignore up to this many, then call it garbage.
    MAX_LEADING_EMPTY_LINES = 2

    # RFC 9110 §8.6 / RFC 9112 §7.1: recipients "MUST anticipate potentially
    # large decimal [hexadecimal] numerals and prevent parsing errors due to
    # integer conversion overflows": 18 decimal digits < 2**63 and 15 hex
    # digits < 2**60, so neither can overflow a long long.
    MAX_CONTENT_LENGTH_DIGITS = 18
    MAX_CHUNK_SIZE_DIGITS = 15

    # RFC 9112 §3: "A server that receives a method longer than any that it
    # implements SHOULD respond with a 501 (Not Implemented)".  The app
    # implements the methods, so the bound is generous: the longest registered
    # method (IANA, "UPDATEREDIRECTREF") has 17 bytes.
    MAX_METHOD = 32

    KNOWN_NAME_MAX = 32     # longest name in _KNOWN_NAMES (checked at import)
    KNOWN_MAX = 128         # capacity of the known-name table
    NAME_CACHE_SIZE = 256   # slots of the unknown-name -> environ key cache
    UNKNOWN_NAME_STACK = 128


# ---------------------------------------------------------------------------
# Byte classes (filled once at import by _init_tables)

# RFC 9110 §5.6.2:  tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
#                           / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
#                   token = 1*tchar
# (value 2 marks "_", so a name scan learns whether it had one for free)
cdef unsigned char _TCHAR[256]

# RFC 9110 §5.5:  field-value = *field-content; field-vchar = VCHAR / obs-text
# "a recipient of CR, LF, or NUL within a field value MUST either reject the
# message or replace each of those characters with SP" -- we reject, and every
# other CTL and DEL too: field-content has no place for them.
cdef unsigned char _FIELD_VALUE[256]

# RFC 9112 §3.2: request-target has no whitespace; RFC 3986 URI characters are
# all visible ASCII.  Anything outside 0x21-0x7E (CTL, SP, DEL, >= 0x80) is
# rejected rather than guessed at, and so is "\\": no URI has one, and front
# ends disagree on it (some turn it into "/", which changes the path a
# prefix rule sees).
cdef unsigned char _TARGET[256]

# RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims )
#   unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
#   sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
# (IPv4address is a reg-name lexically; IP-literal is handled by _valid_host.)
cdef unsigned char _HOST[256]

cdef signed char _HEX[256]          # HEXDIG value, -1 otherwise
cdef unsigned char _LOWER[256]
cdef unsigned char _UPPER_KEY[256]  # field-name byte -> environ key byte ('-' -> '_')


cdef void _init_tables():
    cdef int c
    for c in range(256):
        _TCHAR[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
        _FIELD_VALUE[c] = c == HTAB or c == SP or (0x21 <= c <= 0x7E) or c >= 0x80
        _TARGET[c] = 0x21 <= c <= 0x7E and c != 92      # 92: backslash
        _HOST[c] = (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)
        _HEX[c] = -1
        _LOWER[c] = c + 32 if 65 <= c <= 90 else c
        _UPPER_KEY[c] = c - 32 if 97 <= c <= 122 else c
    for c in b"!#$%&'*+-.^_`|~":
        _TCHAR[c] = 1
    _TCHAR[95] = 2          # '_'
    for c in b"-._~!$&'()*+,;=%":
        _HOST[c] = 1
    for c in range(10):
        _HEX[48 + c] = c
    for c in range(6):
        _HEX[65 + c] = 10 + c
        _HEX[97 + c] = 10 + c
    _UPPER_KEY[45] = 95     # '-' -> '_'

_init_tables()


# ---------------------------------------------------------------------------
# Interned environ keys and prebuilt values (PEP 3333)

cdef str K_REQUEST_METHOD = "REQUEST_METHOD"
cdef str K_SERVER_PROTOCOL = "SERVER_PROTOCOL"
cdef str K_RAW_URI = "RAW_URI"
cdef str K_PATH_INFO = "PATH_INFO"
cdef str K_QUERY_STRING = "QUERY_STRING"
cdef str K_SCRIPT_NAME = "SCRIPT_NAME"
cdef str K_HTTP_HOST = "HTTP_HOST"

cdef str V_EMPTY = ""
cdef str V_SLASH = "/"
cdef str V_STAR = "*"
cdef str V_HTTP11 = "HTTP/1.1"
cdef str V_HTTP10 = "HTTP/1.0"
cdef str V_GET = "GET"
cdef str V_HEAD = "HEAD"
cdef str V_POST = "POST"
cdef str V_PUT = "PUT"
cdef str V_DELETE = "DELETE"
cdef str V_OPTIONS = "OPTIONS"
cdef str V_PATCH = "PATCH"
cdef str V_COMMA = ", "
cdef str V_SEMICOLON = "; "
cdef dict _EMPTY_BASE = {}      # base=None means this; never mutated

# Field names that get interned environ keys.  The first ones are the names the
# parser acts on; their ids are the H_* constants below (keep the order).
_KNOWN_NAMES = (
    b"host", b"content-length", b"content-type", b"transfer-encoding",
    b"connection", b"expect", b"cookie",
    # the rest only map to a prebuilt key
    b"accept", b"accept-encoding", b"accept-language", b"accept-charset",
    b"user-agent", b"referer", b"origin", b"cache-control", b"pragma",
    b"upgrade", b"upgrade-insecure-requests", b"authorization",
    b"proxy-authorization", b"if-none-match", b"if-modified-since", b"if-match",
    b"if-unmodified-since", b"if-range", b"range", b"te", b"trailer", b"dnt",
    b"keep-alive", b"priority", b"content-encoding", b"content-md5", b"date",
    b"from", b"via", b"max-forwards", b"forwarded", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-real-ip", b"x-requested-with", b"x-request-id", b"x-csrftoken",
    b"x-csrf-token", b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-user",
    b"sec-fetch-dest", b"sec-ch-ua", b"sec-ch-ua-mobile",
    b"sec-ch-ua-platform", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol",
)

cdef enum:
    H_HOST = 0
    H_CONTENT_LENGTH = 1
    H_CONTENT_TYPE = 2
    H_TRANSFER_ENCODING = 3
    H_CONNECTION = 4
    H_EXPECT = 5
    H_COOKIE = 6


cdef str _environ_key(bytes name):
    # PEP 3333: "CONTENT_TYPE", "CONTENT_LENGTH" carry no HTTP_ prefix; every
    # other header is HTTP_ + the name upper-cased with "-" -> "_".
    key = name.decode("ascii").upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    return key


cdef list _known_keys = []                  # id -> interned environ key
# The ids of Forwarded, X-Forwarded-For, -Proto, -Host, -Port (consecutive in
# _KNOWN_NAMES): a request with none of them skips the forwarded handler.
cdef Py_ssize_t H_FORWARDED_FIRST = _KNOWN_NAMES.index(b"forwarded")
cdef Py_ssize_t H_FORWARDED_LAST = _KNOWN_NAMES.index(b"x-forwarded-port")
assert H_FORWARDED_LAST - H_FORWARDED_FIRST == 4
cdef const char* _known_name[KNOWN_MAX]     # sorted by length
cdef Py_ssize_t _known_id[KNOWN_MAX]
cdef Py_ssize_t _known_first[KNOWN_NAME_MAX + 2]   # first index of each length


cdef void _init_known() except *:
    import sys
    cdef Py_ssize_t k, length
    cdef bytes name
    assert len(_KNOWN_NAMES) <= KNOWN_MAX
    for name in _KNOWN_NAMES:
        assert len(name) <= KNOWN_NAME_MAX and name == name.lower()
        _known_keys.append(sys.intern(_environ_key(name)))
    order = sorted(range(len(_KNOWN_NAMES)), key=lambda i: len(_KNOWN_NAMES[i]))
    for k, i in enumerate(order):
        _known_name[k] = <bytes>_KNOWN_NAMES[i]      # the tuple keeps them alive
        _known_id[k] = i
    k = 0
    for length in range(KNOWN_NAME_MAX + 2):
        while k < len(order) and len(_KNOWN_NAMES[order[k]]) < length:
            k += 1
        _known_first[length] = k

_init_known()


cdef inline Py_ssize_t _lookup_known(const unsigned char* name, Py_ssize_t n) noexcept:
    """Id of a known field name (case-insensitive, RFC 9110 §5.1), else -1."""
    cdef unsigned char low[KNOWN_NAME_MAX]
    cdef Py_ssize_t i, k
    if n > KNOWN_NAME_MAX:
        return -1
    for i in range(n):
        low[i] = _LOWER[name[i]]
    for k in range(_known_first[n], _known_first[n + 1]):
        if memcmp(low, _known_name[k], n) == 0:
            return _known_id[k]
    return -1


# Unknown names: a direct-mapped cache (hash of the key -> key str), so a custom
# header repeated on every request costs no allocation; a collision just
# replaces the slot, which keeps the cache bounded.
cdef list _name_cache = [None] * NAME_CACHE_SIZE


cdef object _unknown_key(const unsigned char* name, Py_ssize_t n):
    cdef char stack[5 + UNKNOWN_NAME_STACK]
    cdef char* key
    cdef Py_ssize_t i
    cdef unsigned int h = 2166136261u       # FNV-1a
    cdef unsigned char c
    cdef object cached
    if n > UNKNOWN_NAME_STACK:
        # rare (bounded by max_header_bytes): no cache, no stack buffer
        key = <char*>PyMem_Malloc(5 + n)
        if key == NULL:
            raise MemoryError()
        try:
            memcpy(key, b"HTTP_", 5)
            for i in range(n):
                key[5 + i] = <char>_UPPER_KEY[name[i]]
            return PyUnicode_DecodeLatin1(key, 5 + n, NULL)
        finally:
            PyMem_Free(key)
    key = stack
    memcpy(key, b"HTTP_", 5)
    for i in range(n):
        c = _UPPER_KEY[name[i]]
        key[5 + i] = <char>c
        h = (h ^ c) * 16777619u
    cached = _name_cache[h & (NAME_CACHE_SIZE - 1)]
    if (cached is not None and PyUnicode_GET_LENGTH(cached) == 5 + n
            and memcmp(PyUnicode_1BYTE_DATA(cached), key, 5 + n) == 0):
        return cached
    cached = PyUnicode_DecodeLatin1(key, 5 + n, NULL)
    _name_cache[h & (NAME_CACHE_SIZE - 1)] = cached
    return cached


cdef inline object _latin1(const unsigned char* p, Py_ssize_t n):
    return PyUnicode_DecodeLatin1(<const char*>p, n, NULL)


cdef inline bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lower, Py_ssize_t m) noexcept:
    """p[:n] equals the lowercase ASCII `lower`, case-insensitively."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if _LOWER[p[i]] != <unsigned char>lower[i]:
            return False
    return True


cdef inline Py_ssize_t _bare_cr(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """p[a:b] holds no LF.  If a CR in it is followed by another byte of it,
    that CR is bare: return the offset just past that following byte (where
    a byte-by-byte reader would notice), else 0.  A CR that is the last byte
    may still be the start of a CRLF."""
    cdef const unsigned char* cr
    if b - 1 <= a:
        return 0
    cr = <const unsigned char*>memchr(p + a, CR, b - 1 - a)
    return 0 if cr == NULL else cr - p + 2


cdef inline Py_ssize_t _partial_line(const unsigned char* p, Py_ssize_t start, Py_ssize_t n) noexcept:
    """Lower bound of the length of an unfinished line p[start:n], CRLF excluded.

    A final CR may be the start of the CRLF, so it does not count yet."""
    cdef Py_ssize_t k = n - start
    if k > 0 and p[n - 1] == CR:
        k -= 1
    return k


# ---------------------------------------------------------------------------
# Grammar pieces

cdef inline int _check_method_length(const unsigned char* p, Py_ssize_t start,
                                     Py_ssize_t end) except -1:
    """MethodTooLong (501) once the request line seen so far (p[start:end]) starts
    with more than MAX_METHOD token bytes: decided on at most MAX_METHOD + 1
    bytes, so a long method gets the same answer at every split and before the
    414 of a long request line."""
    cdef Py_ssize_t k = start
    cdef Py_ssize_t stop = end if end - start <= MAX_METHOD else start + MAX_METHOD + 1
    while k < stop and _TCHAR[p[k]]:
        k += 1
    if k - start > MAX_METHOD:
        raise MethodTooLong("method longer than any implemented")
    return 0


cdef object _method_str(const unsigned char* p, Py_ssize_t n):
    # RFC 9110 §9.1: "The method token is case-sensitive": only exact
    # upper-case names map to the prebuilt strings; "get" stays "get".
    cdef const char* s = <const char*>p
    if n == 3:
        if memcmp(s, b"GET", 3) == 0:
            return V_GET
        if memcmp(s, b"PUT", 3) == 0:
            return V_PUT
    elif n == 4:
        if memcmp(s, b"POST", 4) == 0:
            return V_POST
        if memcmp(s, b"HEAD", 4) == 0:
            return V_HEAD
    elif n == 5:
        if memcmp(s, b"PATCH", 5) == 0:
            return V_PATCH
    elif n == 6:
        if memcmp(s, b"DELETE", 6) == 0:
            return V_DELETE
    elif n == 7:
        if memcmp(s, b"OPTIONS", 7) == 0:
            return V_OPTIONS
    return _latin1(p, n)


cdef bint _valid_host(const unsigned char* p, Py_ssize_t n) noexcept:
    """RFC 9110 §7.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ].

    uri-host is an IP-literal "[...]" or a reg-name / IPv4address; an "http"
    URI must not have an empty host (RFC 9110 §4.2.1).  userinfo ("@"),
    paths, queries, fragments, backslashes and whitespace are all outside this
    grammar: they are how Host-based routing gets confused, so they are errors.
    port = *DIGIT."""
    cdef Py_ssize_t i = 0, j
    if n == 0:
        return False
    if p[0] == b'[':
        # IP-literal = "[" ( IPv6address / IPvFuture ) "]": their bytes are
        # HEXDIG, ".", ":" and (IPvFuture) unreserved / sub-delims.
        i = 1
        while i < n and p[i] != b']':
            if not (_HOST[p[i]] or p[i] == b':') or p[i] == b'%':
                return False
            i += 1
        if i == n or i == 1:
            return False
        i += 1
    else:
        while i < n and _HOST[p[i]]:
            i += 1
        if i == 0:
            return False
    if i == n:
        return True
    if p[i] != b':':
        return False
    for j in range(i + 1, n):
        if not (48 <= p[j] <= 57):
            return False
    return True


cdef object _decode_path(const unsigned char* p, Py_ssize_t n):
    """PEP 3333 PATH_INFO: the path with %XX decoded to bytes, then latin-1.

    RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG.  A "%" not followed by two
    HEXDIG is not a URI: reject it instead of passing it through, since a
    proxy in front of us may have decoded it differently."""
    cdef unsigned char stack[512]
    cdef unsigned char* out
    cdef Py_ssize_t i = 0, o = 0
    cdef signed char hi, lo
    stack[0] = 0            # (silences a gcc -Wmaybe-uninitialized false positive)
    if memchr(p, b'%', n) == NULL:
        return _latin1(p, n)
    if n <= 512:
        out = stack
    else:
        out = <unsigned char*>PyMem_Malloc(n)
        if out == NULL:
            raise MemoryError()
    try:
        while i < n:
            if p[i] == b'%':
                if i + 2 >= n:
                    raise InvalidTarget("invalid percent-escape in path (needs %XX)")
                hi = _HEX[p[i + 1]]
                lo = _HEX[p[i + 2]]
                if hi < 0 or lo < 0:
                    raise InvalidTarget("invalid percent-escape in path (needs %XX)")
                out[o] = <unsigned char>(hi * 16 + lo)
                i += 3
            else:
                out[o] = p[i]
                i += 1
            o += 1
        return _latin1(out, o)
    finally:
        if out != stack:
            PyMem_Free(out)


cdef inline Py_ssize_t _skip_visible(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept:
    """Skip 8-byte words holding only bytes >= 0x20 and != 0x7F (the common
    case of a field value); return where the byte-wise check must resume.

    "hasless(x, n)" / "haszero" from Sean Anderson's Bit Twiddling Hacks:
    exact as a yes/no answer for n <= 128.  memcpy makes the load safe at any
    alignment (compilers turn it into one mov)."""
    cdef uint64_t w, x
    while i + 8 <= end:
        memcpy(&w, p + i, 8)
        x = w ^ 0x7F7F7F7F7F7F7F7FULL
        if ((w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL) or \
                ((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL):
            break
        i += 8
    return i


cdef Py_ssize_t _field_line(const unsigned char* p, Py_ssize_t ls, Py_ssize_t le,
                            bint* underscore) except -1:
    """Check one field line p[ls:le] (CRLF excluded); return the colon offset.

    RFC 9112 §5:  field-line = field-name ":" OWS field-value OWS
    Used for header and trailer sections alike (RFC 9112 §7.1.2)."""
    cdef Py_ssize_t i = ls, j
    cdef unsigned char c, t, seen = 0
    c = p[ls]
    # RFC 9112 §5.2: "A server that receives an obs-fold in a request message
    # ... MUST either reject the message ... or replace each received obs-fold
    # with one or more SP" -- we reject: folding is how header values get
    # smuggled past a front end that unfolds differently.
    if c == SP or c == HTAB:
        raise InvalidHeader("obs-fold (field line starting with whitespace)")
    while i < le:
        t = _TCHAR[p[i]]
        if not t:
            break
        seen |= t
        i += 1
    if i == le or p[i] != b':':
        # RFC 9112 §5.1: "No whitespace is allowed between the field name and
        # colon ... A server MUST reject, with a response status code of 400"
        if i < le and (p[i] == SP or p[i] == HTAB):
            raise InvalidHeader("whitespace between field-name and colon")
        if i == le:
            raise InvalidHeader("field line without a colon")
        raise InvalidHeader("field-name is not a token")
    if i == ls:
        raise InvalidHeader("empty field-name")
    j = _skip_visible(p, i + 1, le)
    for j in range(j, le):
        if not _FIELD_VALUE[p[j]]:
            raise InvalidHeader("control character in field-value")
    underscore[0] = (seen & 2) != 0
    return i


cdef int _check_transfer_encoding(const unsigned char* p, Py_ssize_t n) except -1:
    """RFC 9112 §6.1: Transfer-Encoding = #transfer-coding; we decode chunked only.

    "If any transfer coding other than chunked is applied to a request's
    content, the sender MUST apply chunked as the final transfer coding" and
    "a sender MUST NOT apply the chunked transfer coding more than once";
    §6.3: if chunked is not final "the server MUST respond with the 400".
    A well-framed list with codings we do not implement gets 501 (§6.1:
    "SHOULD respond with 501 (Not Implemented)")."""
    cdef Py_ssize_t i = 0, e0, e1
    cdef int chunked = 0, unknown = 0
    cdef bint last_chunked = False
    while True:
        e0 = i
        while i < n and p[i] != b',':
            i += 1
        e1 = i
        while e0 < e1 and (p[e0] == SP or p[e0] == HTAB):
            e0 += 1
        while e1 > e0 and (p[e1 - 1] == SP or p[e1 - 1] == HTAB):
            e1 -= 1
        if e0 == e1:
            # Deliberately stricter than RFC 9110 §5.6.1.2 ("A recipient MUST
            # parse and ignore a reasonable number of empty list elements"):
            # no client sends "chunked," and in the one field that decides
            # framing, an odd list is a smuggling probe.
            raise InvalidFraming("empty element in Transfer-Encoding")
        last_chunked = _ieq(p + e0, e1 - e0, b"chunked", 7)
        if last_chunked:
            chunked += 1
        else:
            unknown += 1
        if i == n:
            break
        i += 1
    if chunked > 1:
        raise InvalidFraming("Transfer-Encoding applies chunked more than once")
    if chunked and not last_chunked:
        raise InvalidFraming("chunked is not the final Transfer-Encoding")
    if unknown:
        raise UnsupportedTransferCoding("transfer coding other than chunked")
    return 0


cdef int _connection_options(const unsigned char* p, Py_ssize_t n) noexcept:
    """RFC 9110 §7.6.1: Connection = #connection-option, case-insensitive.

    Returns bit 1 for "close", bit 2 for "keep-alive"."""
    cdef Py_ssize_t i = 0, e0, e1
    cdef int flags = 0
    while i <= n:
        e0 = i
        while i < n and p[i] != b',':
            i += 1
        e1 = i
        while e0 < e1 and (p[e0] == SP or p[e0] == HTAB):
            e0 += 1
        while e1 > e0 and (p[e1 - 1] == SP or p[e1 - 1] == HTAB):
            e1 -= 1
        if _ieq(p + e0, e1 - e0, b"close", 5):
            flags |= 1
        elif _ieq(p + e0, e1 - e0, b"keep-alive", 10):
            flags |= 2
        i += 1
    return flags


# ---------------------------------------------------------------------------

cdef class Limits:
    """Size limits of one request; the status each one answers is in _parser.pxd."""

    def __init__(self, *, Py_ssize_t max_request_line=8190,
                 Py_ssize_t max_header_bytes=65536, Py_ssize_t max_headers=100,
                 long long max_body=1073741824, Py_ssize_t max_chunk_line=4096,
                 Py_ssize_t max_trailer_bytes=8192):
        if min(max_request_line, max_header_bytes, max_headers, max_body,
               max_chunk_line, max_trailer_bytes) < 0:
            raise ValueError("limits must be >= 0")
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body = max_body
        self.max_chunk_line = max_chunk_line
        self.max_trailer_bytes = max_trailer_bytes

    def __repr__(self):
        return (
            f"Limits(max_request_line={self.max_request_line}, "
            f"max_header_bytes={self.max_header_bytes}, max_headers={self.max_headers}, "
            f"max_body={self.max_body}, max_chunk_line={self.max_chunk_line}, "
            f"max_trailer_bytes={self.max_trailer_bytes})"
        )


cdef class RequestParser:
    """One connection's request parser; see the module contract."""

    def __cinit__(self):
        self._buf = bytearray()
        self.script_name = V_EMPTY
        self.reset()

    def __init__(self, Limits limits=None, str script_name not None=""):
        self.limits = limits if limits is not None else Limits()
        self.script_name = script_name

    cdef void frame_by_length(self, long long cl) noexcept:
        """Frame the body as `cl` bytes (Content-Length), or no body when cl < 0."""
        if cl >= 0:
            self.body_kind = BODY_LENGTH
            self.content_length = cl
            self.remaining = cl
            self.body_done = cl == 0
        else:
            self.body_kind = BODY_NONE
            self.content_length = -1
            self.remaining = 0
            self.body_done = True

    cdef void reset(self):
        self.scan_pos = 0
        self.scan_lines = 0
        self.scan_line_start = 0
        self.scan_head_start = 0
        self.scan_empty_lines = 0
        self.environ = None
        self.body_kind = BODY_NONE
        self.content_length = -1
        self.keep_alive = True
        self.expect_continue = False
        self.http11 = False
        self.is_head = False
        self.remaining = 0
        self.chunk_state = CHUNK_SIZE
        self.chunk_line_len = 0
        self.trailer_bytes = 0
        self.body_received = 0
        self.body_done = False

    # -- head ---------------------------------------------------------------

    cdef Py_ssize_t parse_head(self, const char* buf, Py_ssize_t n, dict base) except -1:
        cdef const unsigned char* p = <const unsigned char*>buf
        cdef const unsigned char* lf
        cdef Limits limits = self.limits
        cdef Py_ssize_t pos, i, line_len, head_end, bare_cr
        if base is None:
            base = _EMPTY_BASE
        if n < self.scan_pos:
            # not the growing buffer of the contract: start the scan over
            self.scan_pos = self.scan_lines = self.scan_empty_lines = 0
            self.scan_line_start = self.scan_head_start = 0
        pos = self.scan_pos
        # Terminator scan: one memchr per line, resumed at scan_pos, with the
        # limits enforced as soon as the bytes seen prove them broken.
        while True:
            lf = <const unsigned char*>memchr(p + pos, LF, n - pos)
            i = n if lf == NULL else lf - p
            bare_cr = _bare_cr(p, max(self.scan_line_start, pos - 1), i)
            if bare_cr:
                i = bare_cr
            # The limits are judged first, on the bytes up to the LF (or up to
            # the byte that shows a CR is bare) exactly as if they had arrived
            # alone: the answer must not depend on how the input was split.
            if self.scan_lines == 0:
                _check_method_length(p, self.scan_line_start, i)
                if _partial_line(p, self.scan_line_start, i) > limits.max_request_line:
                    raise RequestLineTooLong("request line longer than max_request_line")
            if i - self.scan_head_start > limits.max_header_bytes:
                raise HeadersTooLarge("head larger than max_header_bytes")
            if bare_cr:
                # RFC 9112 §2.2: "A recipient of such a bare CR MUST consider
                # that element to be invalid or replace each bare CR with SP"
                if self.scan_lines == 0:
                    raise InvalidRequestLine("bare CR (CR not followed by LF)")
                raise InvalidHeader("bare CR (CR not followed by LF)")
            if lf == NULL:
                self.scan_pos = n
                return 0
            # RFC 9112 §2.2 allows a recipient to accept a bare LF as a line
            # terminator; we do not: a front end that disagrees would see
            # different lines than we do.
            if i == self.scan_line_start or p[i - 1] != CR:
                if self.scan_lines == 0:
                    raise InvalidRequestLine("bare LF (line not ended by CRLF)")
                raise InvalidHeader("bare LF (line not ended by CRLF)")
            line_len = i - 1 - self.scan_line_start
            pos = i + 1
            if line_len == 0:
                if self.scan_lines == 0:
                    self.scan_empty_lines += 1
                    if self.scan_empty_lines > MAX_LEADING_EMPTY_LINES:
                        raise InvalidRequestLine("too many empty lines before the request line")
                    self.scan_line_start = self.scan_head_start = pos
                    continue
                head_end = pos
                break
            if self.scan_lines > limits.max_headers:
                raise HeadersTooLarge("more than max_headers field lines")
            self.scan_lines += 1
            self.scan_line_start = pos
            if pos - self.scan_head_start > limits.max_header_bytes:
                raise HeadersTooLarge("head larger than max_header_bytes")
        if head_end - self.scan_head_start > limits.max_header_bytes:
            raise HeadersTooLarge("head larger than max_header_bytes")
        self.scan_pos = head_end
        _parse_head(self, p, self.scan_head_start, head_end, base)
        return head_end

    # -- body ---------------------------------------------------------------

    cdef Py_ssize_t decode_body(self, char* buf, Py_ssize_t n, Py_ssize_t* out_n) except -1:
        cdef Py_ssize_t take
        out_n[0] = 0
        if self.body_done or self.body_kind == BODY_NONE:
            return 0
        if self.body_kind == BODY_LENGTH:
            # RFC 9112 §6.2: exactly Content-Length octets; what follows is the
            # next request, and stays with the caller.
            take = n if n < self.remaining else <Py_ssize_t>self.remaining
            self.remaining -= take
            self.body_received += take
            self.body_done = self.remaining == 0
            out_n[0] = take
            return take
        return _decode_chunked(self, <unsigned char*>buf, n, out_n)

    # -- Python-level driver (tests, corpus, fuzzing) -------------------------

    def feed(self, data):
        """Append bytes to the internal buffer."""
        self._buf += data

    def buffered(self):
        """The bytes fed and not yet consumed."""
        return bytes(self._buf)

    def next_event(self, dict base=None):
        """None (need more bytes) | ("request", environ) | ("data", bytes) | ("end", None).

        After ("end", None) the attributes (keep_alive, ...) still describe
        that message; the next call resets the parser for the next one.
        After an error every call raises that same error again."""
        if self._error is not None:
            raise self._error
        try:
            return _driver_step(self, base)
        except HttpParserError as exc:
            self._error = exc
            raise


cdef object _driver_step(RequestParser self, dict base):
    """One next_event step over self._buf: the same calls the connection makes."""
    cdef bytearray b = self._buf
    cdef Py_ssize_t used, out = 0
    cdef char* data
    if self._in_message == 2:
        # the last message ended: its attributes stayed readable until now
        self.reset()
        self._in_message = 0
    if self._in_message == 0:
        used = self.parse_head(PyByteArray_AS_STRING(b), PyByteArray_GET_SIZE(b), base)
        if used == 0:
            return None
        del b[:used]
        self._in_message = 1
        return ("request", self.environ)
    while True:
        if self.body_done:
            self._in_message = 2
            return ("end", None)
        if PyByteArray_GET_SIZE(b) == 0:
            return None
        data = PyByteArray_AS_STRING(b)
        used = self.decode_body(data, PyByteArray_GET_SIZE(b), &out)
        chunk = PyBytes_FromStringAndSize(data, out)
        del b[:used]
        if out:
            return ("data", chunk)
        if used == 0:
            return None


cdef int _parse_head(RequestParser self, const unsigned char* p, Py_ssize_t start,
                     Py_ssize_t end, dict base) except -1:
    """Validate the complete head p[start:end] (it ends with CRLF CRLF, every
    line ends with CRLF) and set the environ and framing results."""
    global _clean_memo, _clean_memo_len
    cdef Limits limits = self.limits
    cdef Py_ssize_t rl_end, i, t0, t1, v0, mlen, tlen, path0, path_end, a0, a1
    cdef Py_ssize_t ls, le, colon, f0, f1, hid, size
    cdef Py_ssize_t te0 = 0, te1 = 0
    cdef const unsigned char* q
    cdef bint http11, asterisk = False, absolute = False, underscore
    cdef bint cl_seen = False, te_seen = False, expect_100 = False, expect_bad = False
    cdef bint forwarded = False, content_type_seen = False
    cdef int host_lines = 0, conn = 0
    cdef long long cl = -1
    cdef dict env
    cdef str path, script_name
    cdef object key, value, method, authority = None
    cdef PyObject* old

    rl_end = (<const unsigned char*>memchr(p + start, LF, end - start)) - p - 1

    # RFC 9112 §3:  request-line = method SP request-target SP HTTP-version
    # Recipients MAY split on any whitespace instead, but "lenient parsing can
    # result in request smuggling security vulnerabilities": one SP each.
    i = start
    while i < rl_end and _TCHAR[p[i]]:
        i += 1
    if i == start or i == rl_end or p[i] != SP:
        raise InvalidRequestLine("method must be a token followed by one SP")
    mlen = i - start
    t0 = i + 1
    i = t0
    while i < rl_end and _TARGET[p[i]]:
        i += 1
    t1 = i
    if i < rl_end and p[i] != SP:
        if p[i] == 92:
            raise InvalidTarget("backslash in request-target")
        raise InvalidTarget("request-target byte outside 0x21-0x7E")
    if t1 == t0:
        raise InvalidRequestLine("empty request-target (extra SP?)")
    if t1 == rl_end:
        # HTTP/0.9 "GET /path": RFC 9112 §2.3 has no room for it
        raise InvalidRequestLine("missing HTTP-version")
    # RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive
    v0 = t1 + 1
    if rl_end - v0 == 8 and memcmp(p + v0, b"HTTP/1.", 7) == 0 and 48 <= p[v0 + 7] <= 57:
        # RFC 9110 §2.5: a recipient receiving a higher minor version of a major
        # version it implements processes the message as the highest minor
        # version it implements: HTTP/1.2 .. HTTP/1.9 are served as HTTP/1.1
        # (SERVER_PROTOCOL "HTTP/1.1").
        http11 = p[v0 + 7] != b'0'
    elif (rl_end - v0 == 8 and memcmp(p + v0, b"HTTP/", 5) == 0 and 48 <= p[v0 + 5] <= 57
            and p[v0 + 6] == b'.' and 48 <= p[v0 + 7] <= 57):
        # RFC 9110 §15.6.6: 505 for a major version we do not support
        raise UnsupportedVersion("only HTTP/1.x is supported")
    else:
        raise InvalidRequestLine("malformed HTTP-version")

    # RFC 9112 §3.2: request-target forms
    tlen = t1 - t0
    if memchr(p + t0, b'#', tlen) != NULL:
        # RFC 9112 §3.2: no request-target form has a fragment; one here
        # means client and intermediaries may disagree on the target.
        raise InvalidTarget("fragment in request-target")
    if p[t0] == b'/':
        # §3.2.1 origin-form = absolute-path [ "?" query ]
        path0 = t0
    elif tlen == 1 and p[t0] == b'*':
        # §3.2.4 asterisk-form: "only used for a server-wide OPTIONS request"
        if not (mlen == 7 and memcmp(p + start, b"OPTIONS", 7) == 0):
            raise InvalidTarget("asterisk-form is only for OPTIONS")
        asterisk = True
        path0 = t1
    elif _ieq(p + t0, min(tlen, 7), b"http://", 7) or _ieq(p + t0, min(tlen, 8), b"https://", 8):
        # §3.2.2 absolute-form = absolute-URI, for http(s) only; RFC 3986 §3.1
        # scheme names are case-insensitive.
        absolute = True
        a0 = t0 + (7 if p[t0 + 4] == b':' else 8)
        a1 = a0
        while a1 < t1 and p[a1] != b'/' and p[a1] != b'?':
            a1 += 1
        # RFC 9110 §4.2.4: userinfo ("@") in an http(s) URI is to be treated
        # as an error; §4.2.1: an empty host is invalid.
        if not _valid_host(p + a0, a1 - a0):
            raise InvalidTarget("absolute-form target without a valid host[:port]")
        authority = _latin1(p + a0, a1 - a0)
        path0 = a1
    else:
        # authority-form is CONNECT-only (§3.2.3) and we do not tunnel; a
        # relative path or any other scheme is not a target for us.
        raise InvalidTarget("request-target is not origin-, absolute- or asterisk-form")

    # Sized for base + 6 request keys + one per field line.  The request keys
    # go in first and base is merged last without overriding them: merging
    # into an empty dict would clone base's (small) table and bring the
    # resizes back.
    # A base that holds no request keys (the server's: constants only) is
    # cloned -- PyDict_Copy memcpys a compact dict's table -- and the request
    # keys go on top.  Any other base is merged last without overriding, so a
    # request key in it is replaced, never joined.  A base is checked once and
    # remembered by identity and size.
    if base is self._clean_base and len(base) == self._clean_len:
        clone = True
    else:
        clone = ((base is _clean_memo and len(base) == _clean_memo_len)
                 or _is_clean_base(base))
        if clone:
            self._clean_base = base
            self._clean_len = len(base)
            _clean_memo = base
            _clean_memo_len = len(base)
    if clone:
        env = PyDict_Copy(base)
    else:
        env = fastwsgi_dict_presized(len(base) + 6 + self.scan_lines)
    method = _method_str(p + start, mlen)
    env[K_REQUEST_METHOD] = method
    env[K_SERVER_PROTOCOL] = V_HTTP11 if http11 else V_HTTP10
    env[K_RAW_URI] = _latin1(p + t0, tlen)
    if asterisk:
        path = V_STAR
        env[K_QUERY_STRING] = V_EMPTY
    else:
        q = <const unsigned char*>memchr(p + path0, b'?', t1 - path0)
        path_end = t1 if q == NULL else q - p
        env[K_QUERY_STRING] = V_EMPTY if q == NULL else _latin1(q + 1, t1 - path_end - 1)
        if path_end == path0:
            path = V_SLASH      # RFC 9110 §4.2.3: an empty path is equivalent to "/"
        else:
            path = _decode_path(p + path0, path_end - path0)
    # PEP 3333 SCRIPT_NAME / PATH_INFO: the mount point only comes off when it
    # is a whole path-segment prefix ("/app" matches "/app" and "/app/x", not
    # "/apple").
    script_name = self.script_name
    if script_name and not asterisk and path.startswith(script_name) and (
            len(path) == len(script_name) or path[len(script_name)] == "/"):
        path = path[len(script_name):]
    env[K_PATH_INFO] = path
    env[K_SCRIPT_NAME] = script_name

    # Field lines.  The terminator scan proved each line ends with CRLF and the
    # head ends with an empty line, so lines are walked with memchr only.
    ls = rl_end + 2
    while ls < end - 2:
        le = (<const unsigned char*>memchr(p + ls, LF, end - ls)) - p - 1
        colon = _field_line(p, ls, le, &underscore)
        f0 = colon + 1
        f1 = le
        # RFC 9112 §5: OWS around the value is not part of it
        while f0 < f1 and (p[f0] == SP or p[f0] == HTAB):
            f0 += 1
        while f1 > f0 and (p[f1 - 1] == SP or p[f1 - 1] == HTAB):
            f1 -= 1
        if underscore:
            # "X-Auth_User" and "X-Auth-User" both become HTTP_X_AUTH_USER; a
            # client could then spoof a header a proxy set.  Drop the "_" one
            # (as nginx, gunicorn and waitress do).  It still counted toward
            # the limits in the scan.
            ls = le + 2
            continue
        hid = _lookup_known(p + ls, colon - ls)
        if hid == H_HOST:
            # RFC 9112 §3.2: "A server MUST respond with a 400 ... to any
            # HTTP/1.1 request message that lacks a Host header field and to
            # any request message that contains more than one Host header
            # field line or a Host header field with an invalid field value."
            host_lines += 1
            if host_lines > 1:
                raise InvalidHeader("more than one Host field line")
            # RFC 9110 §7.2 lets a client send an empty Host when its target
            # URI has no authority -- but an http(s) URI always has one, and
            # RFC 9110 §4.2.1 says a recipient MUST reject an http URI with an
            # empty host as invalid (RFC 9112 §3.3: the target URI's authority
            # is the Host value).  Empty is accepted only beside an
            # absolute-form target, whose authority wins (§3.2.2).
            if f1 == f0:
                if not absolute:
                    raise InvalidHeader("empty Host")
            elif not _valid_host(p + f0, f1 - f0):
                raise InvalidHeader("Host is not a valid uri-host[:port]")
        elif hid == H_CONTENT_TYPE:
            # RFC 9110 §5.3: only list-valued fields may repeat; joining two
            # media types ("text/plain, text/html") makes a value no one sent,
            # and a front end may have used the other one
            if content_type_seen:
                raise InvalidHeader("more than one Content-Type field line")
            content_type_seen = True
        elif hid == H_CONTENT_LENGTH:
            # RFC 9112 §6.3: an invalid Content-Length makes the framing
            # invalid: "the server MUST respond with a 400".  The repeated
            # identical values RFC 9110 §8.6 lets recipients accept ("42, 42"
            # or two lines) are rejected too: nothing legitimate sends them.
            if cl_seen:
                raise InvalidFraming("repeated Content-Length")
            cl_seen = True
            # RFC 9110 §8.6: Content-Length = 1*DIGIT
            if f1 == f0 or f1 - f0 > MAX_CONTENT_LENGTH_DIGITS:
                raise InvalidFraming("Content-Length must be 1 to 18 digits")
            cl = 0
            for i in range(f0, f1):
                if not (48 <= p[i] <= 57):
                    raise InvalidFraming("Content-Length must be 1 to 18 digits")
                cl = cl * 10 + (p[i] - 48)
        elif hid == H_TRANSFER_ENCODING:
            # one field line only: a second one is how a smuggler hides
            # "chunked" from a front end that reads just the first
            if te_seen:
                raise InvalidFraming("repeated Transfer-Encoding")
            te_seen = True
            te0 = f0
            te1 = f1
        elif hid == H_CONNECTION:
            conn |= _connection_options(p + f0, f1 - f0)
        elif hid == H_EXPECT:
            # RFC 9110 §10.1.1: "100-continue" is the only expectation; "A
            # server that receives an Expect field value containing a member
            # other than 100-continue MAY respond with a 417"
            if _ieq(p + f0, f1 - f0, b"100-continue", 12):
                expect_100 = True
            else:
                expect_bad = True
        elif H_FORWARDED_FIRST <= hid <= H_FORWARDED_LAST:
            forwarded = True
        key = _known_keys[hid] if hid >= 0 else _unknown_key(p + ls, colon - ls)
        value = _latin1(p + f0, f1 - f0)
        # one dict lookup for the common case; the size tells whether the key
        # was new (values can be shared singletons such as "" or "1", so
        # identity of the returned value would not)
        size = len(env)
        old = PyDict_SetDefault(env, key, value)
        if len(env) == size:
            # RFC 9110 §5.3: repeated field lines combine into one list
            # joined with ", "; RFC 6265 §5.4: Cookie pairs join with "; "
            env[key] = <object>old + (V_SEMICOLON if hid == H_COOKIE else V_COMMA) + value
        ls = le + 2

    # Framing, RFC 9112 §6.  All 400s are decided before the 501 / 417 / 413
    # answers so the outcome does not depend on the order of the field lines.
    if te_seen:
        # §6.1: "A server MAY reject a request that contains both
        # Content-Length and Transfer-Encoding or process such a request in
        # accordance with the Transfer-Encoding alone" -- reject: it is the
        # classic smuggling request.
        if cl_seen:
            raise InvalidFraming("Content-Length and Transfer-Encoding together")
        # §6.1: "A server or client that receives an HTTP/1.0 message
        # containing a Transfer-Encoding header field MUST treat the message
        # as if the framing is faulty".
        if not http11:
            raise InvalidFraming("Transfer-Encoding in an HTTP/1.0 request")
    if http11 and host_lines == 0:
        raise InvalidHeader("HTTP/1.1 request without Host")
    if te_seen:
        _check_transfer_encoding(p + te0, te1 - te0)
    if expect_bad:
        raise ExpectationFailed("Expect other than 100-continue")
    if cl_seen and limits.max_body > 0 and cl > limits.max_body:
        raise BodyTooLarge("Content-Length larger than max_body")

    if absolute:
        # RFC 9112 §3.2.2: "the server MUST ignore the received Host header
        # field (if any) and instead use the host information of the
        # request-target".
        env[K_HTTP_HOST] = authority
    if base and not clone:
        PyDict_Merge(env, base, 0)      # 0: what the request set wins

    self.environ = env
    self.http11 = http11
    self.forwarded = forwarded
    self.is_head = mlen == 4 and memcmp(p + start, b"HEAD", 4) == 0
    # RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with the
    # "keep-alive" connection option -- and "close" always wins.
    if conn & 1:
        self.keep_alive = False
    else:
        self.keep_alive = http11 or (conn & 2) != 0
    # RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in
    # an HTTP/1.0 request MUST ignore that expectation."
    self.expect_continue = expect_100 and http11
    if te_seen:
        self.body_kind = BODY_CHUNKED
        self.content_length = -1
        self.chunk_state = CHUNK_SIZE
        self.body_done = False
    else:
        # RFC 9112 §6.3: a request with neither has a zero-length body
        self.frame_by_length(cl if cl_seen else -1)
    return 0


cdef Py_ssize_t _decode_chunked(RequestParser self, unsigned char* p, Py_ssize_t n,
                                Py_ssize_t* out_n) except -1:
    """RFC 9112 §7.1, decoded in place.

      chunked-body   = *chunk last-chunk trailer-section CRLF
      chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
      chunk-size     = 1*HEXDIG
      last-chunk     = 1*("0") [ chunk-ext ] CRLF
      trailer-section = *( field-line CRLF )

    Data bytes are moved down over the framing (out <= pos always holds, so a
    memmove never touches unread input).  An unfinished size or trailer line
    is left unconsumed; chunk_line_len remembers how much of it was already
    searched for its LF, so trickled input is not rescanned."""
    cdef Limits limits = self.limits
    cdef Py_ssize_t pos = 0, out = 0, take, i, le, start, k, bare_cr
    cdef const unsigned char* lf
    cdef bint underscore
    cdef Py_ssize_t colon
    while pos < n:
        if self.chunk_state == CHUNK_DATA:
            take = n - pos
            if take > self.remaining:
                take = <Py_ssize_t>self.remaining
            if out != pos:
                memmove(p + out, p + pos, take)
            out += take
            pos += take
            self.remaining -= take
            self.body_received += take
            if self.remaining == 0:
                self.chunk_state = CHUNK_DATA_END
        elif self.chunk_state == CHUNK_DATA_END:
            # chunk-data is followed by exactly CRLF: anything else means the
            # chunk-size lied, and guessing would desynchronise the stream.
            if p[pos] != CR:
                raise InvalidChunk("chunk data not followed by CRLF")
            if pos + 1 == n:
                break
            if p[pos + 1] != LF:
                raise InvalidChunk("chunk data not followed by CRLF")
            pos += 2
            self.chunk_state = CHUNK_SIZE
        elif self.chunk_state == CHUNK_SIZE or self.chunk_state == CHUNK_TRAILER:
            start = pos + self.chunk_line_len
            if start > n:           # caller broke the same-prefix contract
                start = pos
            lf = <const unsigned char*>memchr(p + start, LF, n - start)
            i = n if lf == NULL else lf - p
            bare_cr = _bare_cr(p, max(pos, start - 1), i)
            if bare_cr:
                i = bare_cr
            # limits first, as in parse_head; an unfinished line already over
            # its limit will never be valid
            k = _partial_line(p, pos, i)
            if self.chunk_state == CHUNK_SIZE:
                if k > limits.max_chunk_line:
                    raise InvalidChunk("chunk-size line longer than max_chunk_line")
            elif k > 0 and self.trailer_bytes + k + 2 > limits.max_trailer_bytes:
                raise HeadersTooLarge("trailer section larger than max_trailer_bytes")
            if bare_cr:
                # RFC 9112 §2.2, as for the head
                if self.chunk_state == CHUNK_SIZE:
                    raise InvalidChunk("bare CR in chunk-size line")
                raise InvalidHeader("bare CR in trailer section")
            if lf == NULL:
                self.chunk_line_len = n - pos
                break
            self.chunk_line_len = 0
            if i == pos or p[i - 1] != CR:
                raise InvalidChunk("bare LF in chunked framing")
            le = i - 1
            if self.chunk_state == CHUNK_SIZE:
                _chunk_size_line(self, p, pos, le)
            elif le == pos:
                # the empty line that ends the trailer section and the message
                self.chunk_state = CHUNK_DONE
                self.body_done = True
                pos = i + 1
                break
            else:
                # RFC 9112 §7.1.2: trailer fields are field lines; we check
                # them like header lines and drop them (PEP 3333 has no place
                # for them).
                self.trailer_bytes += le - pos + 2     # (its limit was checked above)
                colon = _field_line(p, pos, le, &underscore)
                if _forbidden_in_trailer(p + pos, colon - pos):
                    raise InvalidHeader("a framing, routing or control field in the "
                                        "chunked trailer section")
            pos = i + 1
        else:
            break
    out_n[0] = out
    return pos


cdef inline Py_ssize_t _skip_bws(const unsigned char* p, Py_ssize_t i, Py_ssize_t le) noexcept:
    while i < le and (p[i] == SP or p[i] == HTAB):
        i += 1
    return i


cdef bint _valid_chunk_ext(const unsigned char* p, Py_ssize_t i, Py_ssize_t le) noexcept:
    """p[i:le] (p[i] == ';') is a whole chunk-ext (RFC 9112 §7.1.1):

      chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
      chunk-ext-name = token
      chunk-ext-val  = token / quoted-string

    with RFC 9110 §5.6.4 quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE.
    Nothing may follow the last extension (no trailing whitespace): lenient
    extension parsing is a known smuggling vector (parsers disagree on where the
    size line ends)."""
    cdef Py_ssize_t j
    cdef unsigned char c
    while i < le:
        i = _skip_bws(p, i, le)
        if i == le or p[i] != b';':
            return False
        i = _skip_bws(p, i + 1, le)
        j = i
        while i < le and _TCHAR[p[i]]:
            i += 1
        if i == j:
            return False                    # an empty chunk-ext-name
        j = _skip_bws(p, i, le)
        if j == le or p[j] != b'=':
            continue                        # a name alone; a ";" must come next
        i = _skip_bws(p, j + 1, le)
        if i < le and p[i] == b'"':
            i += 1
            while True:
                if i >= le:
                    return False            # unterminated quoted-string
                c = p[i]
                if c == b'"':
                    i += 1
                    break
                if c == b'\\':
                    # quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    if i + 1 >= le or not (p[i + 1] == HTAB or p[i + 1] >= 0x20) or p[i + 1] == 0x7F:
                        return False
                    i += 2
                    continue
                # qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                if c == HTAB or c == SP or c == 0x21 or (0x23 <= c <= 0x5B) or \
                        (0x5D <= c <= 0x7E) or c >= 0x80:
                    i += 1
                    continue
                return False
        else:
            j = i
            while i < le and _TCHAR[p[i]]:
                i += 1
            if i == j:
                return False                # "=" without a value
    return True


cdef bint _forbidden_in_trailer(const unsigned char* name, Py_ssize_t n) noexcept:
    """RFC 9110 §6.5.1: fields "necessary prior to receiving the content" --
    framing, routing, connection control, request modifiers, content format --
    cannot come in a trailer; one that does is the smuggling kind (a front end
    that merged it would frame the stream differently), so it is refused."""
    return (_ieq(name, n, b"content-length", 14) or _ieq(name, n, b"transfer-encoding", 17)
            or _ieq(name, n, b"trailer", 7) or _ieq(name, n, b"host", 4)
            or _ieq(name, n, b"connection", 10) or _ieq(name, n, b"keep-alive", 10)
            or _ieq(name, n, b"upgrade", 7) or _ieq(name, n, b"te", 2)
            or _ieq(name, n, b"expect", 6) or _ieq(name, n, b"content-type", 12)
            or _ieq(name, n, b"content-encoding", 16) or _ieq(name, n, b"content-range", 13))


cdef int _chunk_size_line(RequestParser self, const unsigned char* p, Py_ssize_t pos,
                          Py_ssize_t le) except -1:
    """One chunk-size line p[pos:le] (CRLF excluded): sets the next state."""
    cdef Limits limits = self.limits
    cdef Py_ssize_t i = pos, j
    cdef long long size = 0
    # chunk-size = 1*HEXDIG: no sign, no "0x", no whitespace around it
    while i < le and _HEX[p[i]] >= 0:
        if i - pos == MAX_CHUNK_SIZE_DIGITS:
            raise InvalidChunk("chunk-size has more than 15 hex digits")
        size = size * 16 + _HEX[p[i]]
        i += 1
    if i == pos:
        raise InvalidChunk("chunk-size must be 1*HEXDIG")
    if i < le:
        # chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
        # RFC 9110 §5.6.3: "A recipient MUST parse for such bad whitespace and
        # remove it", so SP / HTAB may precede the ";" -- but only a ";":
        # "5 " or "5\t" alone is a malformed size, not an extension.  We ignore
        # extensions ("A recipient MUST ignore unrecognized chunk extensions")
        # and only check the rest of the line holds no CTL.
        while i < le and (p[i] == SP or p[i] == HTAB):
            i += 1
        if i == le or p[i] != b';':
            raise InvalidChunk("invalid byte after chunk-size")
        if not _valid_chunk_ext(p, i, le):
            raise InvalidChunk("chunk-ext is not ;name[=token|quoted-string] (RFC 9112 §7.1.1)")
    if size == 0:
        self.chunk_state = CHUNK_TRAILER
        return 0
    if limits.max_body > 0 and self.body_received + size > limits.max_body:
        raise BodyTooLarge("chunked body larger than max_body")
    self.remaining = size
    self.chunk_state = CHUNK_DATA
    return 0
