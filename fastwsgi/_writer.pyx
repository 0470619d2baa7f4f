# cython: language_level=3
"""Compiled response framing: status line, headers, Date cache, chunked framing.

Contract: everything here appends to a growable C buffer (OutBuf) owned by the
caller; nothing is sent.  write_head_start frames what the application gave to
start_response (PEP 3333 §"The start_response() Callable") under the
response-header policy written out above it -- the one place those rules live --
and raises fastwsgi.errors.ResponseError for anything the policy refuses (a status
that is not a final "NNN reason" of 200-599, a header that is not a (str, str)
pair, a name that is not an RFC 9110 token, a value with CR, LF, NUL or another
control character).  It reads the app's strings through pointers only while it
holds a reference to the exact str they point into.  The Date header is
formatted at most once per second.  The Python-level helpers at the bottom exist
for the tests.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_Check, PyUnicode_FromObject
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove
from libc.time cimport time_t, time, tm

from fastwsgi.errors import ResponseError

cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    int PyUnicode_1BYTE_KIND
    bint PyUnicode_CheckExact(object)
    bint PyTuple_CheckExact(object)
    bint PyList_CheckExact(object)

cdef extern from "time.h" nogil:
    tm* gmtime_r(const time_t* t, tm* result)


# --- the output buffer -----------------------------------------------------------

# Emptied first-size buffers wait here for the next response instead of going
# back to malloc: a keep-alive request then costs no malloc/free pair.  One pool
# per process, bounded (OB_POOL_MAX * OB_FIRST = 256 KiB at most), and touched
# only with the GIL held -- so a free-threaded build (Py_GIL_DISABLED: app
# threads frame heads in parallel) has no pool, and formats Date per response
# instead of sharing the cached line.
cdef enum:
    OB_FIRST = 4096
    OB_POOL_MAX = 64

cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define FW_SHARED_CACHES 0
    #else
    #define FW_SHARED_CACHES 1
    #endif
    """
    const bint FW_SHARED_CACHES

cdef char* _ob_pool[OB_POOL_MAX]
cdef int _ob_pooled = 0


cdef int ob_reserve(OutBuf* ob, Py_ssize_t extra) except -1:
    global _ob_pooled
    cdef Py_ssize_t need = ob.len + extra
    cdef Py_ssize_t cap
    cdef char* p
    if need <= ob.cap:
        return 0
    if FW_SHARED_CACHES and ob.cap == 0 and need <= OB_FIRST and _ob_pooled:
        _ob_pooled -= 1
        ob.data = _ob_pool[_ob_pooled]
        ob.cap = OB_FIRST
        return 0
    cap = ob.cap * 2 if ob.cap else OB_FIRST
    while cap < need:
        cap *= 2
    p = <char*>realloc(ob.data, cap)
    if p == NULL:
        raise MemoryError()
    ob.data = p
    ob.cap = cap
    return 0


cdef int ob_write(OutBuf* ob, const char* p, Py_ssize_t n) except -1:
    if ob.len + n > ob.cap:
        ob_reserve(ob, n)
    memcpy(ob.data + ob.len, p, n)
    ob.len += n
    return 0


cdef void ob_consume(OutBuf* ob, Py_ssize_t n) noexcept:
    """Drop n sent bytes from the front; an emptied buffer is freed once it grew
    past 64 KiB so an idle connection holds no large buffer."""
    if n >= ob.len:
        ob.len = 0
        if ob.cap > 65536:
            free(ob.data)
            ob.data = NULL
            ob.cap = 0
        return
    memmove(ob.data, ob.data + n, ob.len - n)
    ob.len -= n


cdef void ob_free(OutBuf* ob) noexcept:
    global _ob_pooled
    if FW_SHARED_CACHES and ob.cap == OB_FIRST and _ob_pooled < OB_POOL_MAX:
        _ob_pool[_ob_pooled] = ob.data
        _ob_pooled += 1
    else:
        free(ob.data)
    ob.data = NULL
    ob.len = 0
    ob.cap = 0


# --- character classes (RFC 9110 §5.6.2 tchar; field-vchar / obs-text) ----------

cdef unsigned char TCHAR[256]
cdef unsigned char VALUE_OK[256]

cdef void _init_tables() noexcept:
    cdef int c
    for c in range(256):
        TCHAR[c] = 0
        VALUE_OK[c] = 0
    for c in range(ord("0"), ord("9") + 1):
        TCHAR[c] = 1
    for c in range(ord("a"), ord("z") + 1):
        TCHAR[c] = 1
    for c in range(ord("A"), ord("Z") + 1):
        TCHAR[c] = 1
    for c in b"!#$%&'*+-.^_`|~":
        TCHAR[c] = 1
    # field-value: SP, HTAB, VCHAR, obs-text; every other CTL (CR, LF, NUL...) is refused
    VALUE_OK[9] = 1
    for c in range(0x20, 0x7F):
        VALUE_OK[c] = 1
    for c in range(0x80, 0x100):
        VALUE_OK[c] = 1

_init_tables()


# --- Date: formatted at most once a second (RFC 9110 §5.6.7 IMF-fixdate) ----------

cdef char DATE_LINE[64]
cdef Py_ssize_t DATE_LEN = 0
cdef time_t DATE_AT = -1
cdef const char* DAYS = b"SunMonTueWedThuFriSat"
cdef const char* MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"


cdef inline void _two(char* p, int v) noexcept:
    p[0] = <char>(48 + v // 10)
    p[1] = <char>(48 + v % 10)


cdef void _format_date_into(char* p, time_t now) noexcept:
    """'Date: Sun, 06 Nov 1994 08:49:37 GMT\\r\\n' (37 bytes at p) without strftime
    (no locale)."""
    cdef tm t
    cdef int year
    gmtime_r(&now, &t)
    memcpy(p, b"Date: ", 6)
    memcpy(p + 6, DAYS + 3 * t.tm_wday, 3)
    p[9] = b","
    p[10] = b" "
    _two(p + 11, t.tm_mday)
    p[13] = b" "
    memcpy(p + 14, MONTHS + 3 * t.tm_mon, 3)
    p[17] = b" "
    year = t.tm_year + 1900
    _two(p + 18, year // 100)
    _two(p + 20, year % 100)
    p[22] = b" "
    _two(p + 23, t.tm_hour)
    p[25] = b":"
    _two(p + 26, t.tm_min)
    p[28] = b":"
    _two(p + 29, t.tm_sec)
    memcpy(p + 31, b" GMT\r\n", 6)


cdef void _format_date(time_t now) noexcept:
    global DATE_LEN, DATE_AT
    _format_date_into(DATE_LINE, now)
    DATE_LEN = 37
    DATE_AT = now


cdef int write_date(OutBuf* ob) except -1:
    cdef time_t now = time(NULL)
    cdef char line[40]
    if not FW_SHARED_CACHES:
        _format_date_into(line, now)
        return ob_write(ob, line, 37)
    if now != DATE_AT:
        _format_date(now)
    return ob_write(ob, DATE_LINE, DATE_LEN)


# --- the response-header policy ----------------------------------------------------
#
# What an application may put in start_response(), and what the server does with
# it.  Every rule that depends only on the status and the headers is enforced
# here, in write_head_start; the framing the server adds (Content-Length or
# chunked, nothing for HEAD/204/304, Connection: close or keep-alive) depends on
# the request and the connection, and the connection chooses it from the RespInfo
# filled here.  Anything refused is a ResponseError: the connection answers 500
# and logs it (nothing of a refused head reaches the socket).
#
#   status         "NNN reason" (PEP 3333; RFC 9112 §4 status-line): 3 digits, SP,
#                  a reason of HTAB / SP / VCHAR / obs-text.  The code is a final
#                  status, 200-599 (RFC 9110 §15): 1xx never -- an interim answer
#                  is the server's (100 Continue), and a client reads the response
#                  after any 1xx as this request's answer; 101 would switch to a
#                  protocol we do not speak -- and 600-999 are no status at all.
#   str types      status, names and values are str (PEP 3333 native strings; a
#                  str subclass such as StrEnum is copied to a plain str first),
#                  latin-1 only; bytes where str is due is refused.
#   names          RFC 9110 §5.6.2 tokens (no ':', no whitespace, no CTL).
#   values         field-vchar / SP / HTAB / obs-text (RFC 9110 §5.5): CR, LF, NUL
#                  and every other CTL refused (no response splitting).
#   Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding
#                  connection-specific (RFC 9110 §7.6.1), the server's business
#                  (PEP 3333 forbids hop-by-hop headers to applications): dropped.
#                  A "close" token in the app's Connection is honoured (app_close).
#   Upgrade        passed through: a 426 must carry it (RFC 9110 §15.5.22); the
#                  server never switches protocols (101 is refused above).
#   Content-Length digits only, at most once; the connection sends no more body
#                  than it declares (and closes if the app sends less).
#   204, 304       no body and no Content-Length / Transfer-Encoding (RFC 9110 §8.6,
#                  §15.3.5, §15.4.5; RFC 9112 §6.1, §6.3): the app's are dropped
#                  silently, as waitress does -- frameworks send "Content-Length: 0"
#                  with a 204 -- and the connection discards any body (no_body).
#   Server, Date   added unless the app sent its own (RFC 9110 §10.2.4, §6.6.1).
#   HEAD           (the connection) the headers a GET would get, no body
#                  (RFC 9110 §9.3.2).

cdef inline bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lower) noexcept:
    """Case-insensitive compare of p[:n] against a lowercase ASCII literal of length n."""
    cdef Py_ssize_t i
    for i in range(n):
        if (p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef enum HeaderKind:
    H_OTHER              # sent as given
    H_DROP               # connection-specific: never sent from the app
    H_CONNECTION         # dropped, its "close" token honoured
    H_CONTENT_LENGTH
    H_SERVER
    H_DATE


cdef inline HeaderKind _header_kind(const unsigned char* p, Py_ssize_t n) noexcept:
    """Which rule of the policy above a header name falls under (by length first:
    most names match no length here and cost one switch)."""
    if n == 14:
        if _ieq(p, 14, b"content-length"):
            return H_CONTENT_LENGTH
    elif n == 10:
        if _ieq(p, 10, b"connection"):
            return H_CONNECTION
        if _ieq(p, 10, b"keep-alive"):
            return H_DROP
    elif n == 17:
        if _ieq(p, 17, b"transfer-encoding"):
            return H_DROP
    elif n == 16:
        if _ieq(p, 16, b"proxy-connection"):
            return H_DROP
    elif n == 2:
        if _ieq(p, 2, b"te"):
            return H_DROP
    elif n == 6:
        if _ieq(p, 6, b"server"):
            return H_SERVER
    elif n == 4:
        if _ieq(p, 4, b"date"):
            return H_DATE
    return H_OTHER


cdef inline bint _has_close_token(const unsigned char* p, Py_ssize_t n) noexcept:
    """Whether a Connection value's comma list holds the token 'close'."""
    cdef Py_ssize_t i = 0, start, end
    while i < n:
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 44):
            i += 1
        start = i
        while i < n and p[i] != 44:
            i += 1
        end = i
        while end > start and (p[end - 1] == 32 or p[end - 1] == 9):
            end -= 1
        if end - start == 5 and _ieq(p + start, 5, b"close"):
            return True
    return False


# --- app strings: hold what you point into -------------------------------------------
#
# The head is framed from pointers into the application's str objects.  Each
# pointer comes from _chars() on an exact str that the caller keeps in a local
# for as long as it reads through the pointer.  (The old _latin1 returned a
# pointer into a temporary str(s) of a str subclass, freed on return: a later
# allocation reused it, and a header went out as "value-value: value-value".)

cdef inline str _native(object s, str what):
    """s as an exact str.  A str subclass (enum.StrEnum, markupsafe.Markup) is
    copied to a plain str by PyUnicode_FromObject, which reads its characters
    and never calls a __str__ the subclass may override; the copy is the
    caller's to hold.  PyUnicode_Check reads the type's flags, so an object
    that only claims to be a str (a __class__ property) is refused."""
    if PyUnicode_CheckExact(s):
        return <str>s
    if PyUnicode_Check(s):
        return PyUnicode_FromObject(s)
    raise ResponseError(f"{what} must be str, not {_type_name(s)}")


cdef inline const unsigned char* _chars(str s, Py_ssize_t* n, str what) except NULL:
    """The characters of an exact str whose characters all fit latin-1 (one byte
    each, as PEP 3333 requires of native strings).  Valid while s is alive."""
    if PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        raise ResponseError(f"{what} is not latin-1 encodable: {_clip(s)}")
    n[0] = PyUnicode_GET_LENGTH(s)
    return <const unsigned char*>PyUnicode_DATA(s)


cdef str _clip(str s):
    """An exact str's repr for an error message, at most 80 characters: a 1 MB
    header must not become a 1 MB log line.  (Only exact strs: repr() of an app
    object would run its code.)"""
    cdef str r = repr(s[:80])
    return r if len(r) <= 80 and len(s) <= 80 else r[:77] + "..."


cdef str _type_name(object o):
    return type(o).__name__


# --- status line and headers ---------------------------------------------------------

cdef int write_head_start(OutBuf* ob, object status, object headers, bytes server_line,
                          RespInfo* info) except -1:
    """The status line and the app's headers under the policy above, then Server
    and Date.  Ends without the blank line: the connection adds its framing."""
    cdef Py_ssize_t n = 0, vn = 0, i
    cdef const unsigned char* p
    cdef const unsigned char* v
    cdef int code
    cdef bint saw_server = False, saw_date = False
    cdef HeaderKind kind
    cdef str st, name, value    # exact strs: they keep alive what p and v point into
    cdef object item

    info.content_length = -1
    info.app_close = False

    st = _native(status, "status")
    p = _chars(st, &n, "status")
    if n < 4 or p[3] != 32:
        raise ResponseError(f"status must look like '200 OK': {_clip(st)}")
    for i in range(3):
        if p[i] < 48 or p[i] > 57:
            raise ResponseError(f"status must start with three digits: {_clip(st)}")
    code = (p[0] - 48) * 100 + (p[1] - 48) * 10 + (p[2] - 48)
    if code < 200 or code > 599:
        raise ResponseError(f"status code must be a final status, 200-599: {_clip(st)}")
    for i in range(4, n):
        if not VALUE_OK[p[i]]:
            raise ResponseError(f"control character in status: {_clip(st)}")
    info.status_code = code
    info.no_body = code == 204 or code == 304
    ob_reserve(ob, n + 11)
    memcpy(ob.data + ob.len, b"HTTP/1.1 ", 9)
    memcpy(ob.data + ob.len + 9, p, n)
    memcpy(ob.data + ob.len + 9 + n, b"\r\n", 2)
    ob.len += n + 11

    if not (PyList_CheckExact(headers) or PyTuple_CheckExact(headers)):
        if not isinstance(headers, (list, tuple)):
            raise ResponseError(f"headers must be a list, not {_type_name(headers)}")
    for item in headers:
        # PyTuple_GET_SIZE, not len(): a tuple subclass's __len__ may lie, and the
        # two items are then read without a bounds check
        if not PyTuple_Check(item) or PyTuple_GET_SIZE(item) != 2:
            raise ResponseError(f"header must be a (name, value) tuple, not {_type_name(item)}"
                                + (f" of {PyTuple_GET_SIZE(item)} items" if PyTuple_Check(item) else ""))
        name = _native(<object>PyTuple_GET_ITEM(item, 0), "header name")
        value = _native(<object>PyTuple_GET_ITEM(item, 1), "header value")
        p = _chars(name, &n, "header name")
        v = _chars(value, &vn, "header value")
        if n == 0:
            raise ResponseError("empty header name")
        for i in range(n):
            if not TCHAR[p[i]]:
                raise ResponseError(f"invalid character in header name {_clip(name)}")
        for i in range(vn):
            if not VALUE_OK[v[i]]:
                raise ResponseError(f"control character in header {_clip(name)}: {_clip(value)}")
        kind = _header_kind(p, n)
        if kind == H_CONTENT_LENGTH:
            if info.no_body:
                continue
            if info.content_length >= 0:
                raise ResponseError("duplicate Content-Length header")
            info.content_length = _parse_length(v, vn, value)
        elif kind == H_CONNECTION:
            if _has_close_token(v, vn):
                info.app_close = True
            continue
        elif kind == H_DROP:
            continue
        elif kind == H_SERVER:
            saw_server = True
        elif kind == H_DATE:
            saw_date = True
        ob_reserve(ob, n + vn + 4)
        memcpy(ob.data + ob.len, p, n)
        ob.data[ob.len + n] = b":"
        ob.data[ob.len + n + 1] = b" "
        memcpy(ob.data + ob.len + n + 2, v, vn)
        ob.data[ob.len + n + 2 + vn] = b"\r"
        ob.data[ob.len + n + 3 + vn] = b"\n"
        ob.len += n + vn + 4
    if not saw_server and server_line is not None and PyBytes_GET_SIZE(server_line):
        ob_write(ob, PyBytes_AS_STRING(server_line), PyBytes_GET_SIZE(server_line))
    if not saw_date:
        write_date(ob)
    return 0


cdef long long _parse_length(const unsigned char* v, Py_ssize_t n, str value) except -2:
    """The app's Content-Length: 1 to 18 digits (no sign, no list, no spaces)."""
    cdef long long r = 0
    cdef Py_ssize_t i
    if n == 0 or n > 18:
        raise ResponseError(f"invalid Content-Length from the application: {_clip(value)}")
    for i in range(n):
        if v[i] < 48 or v[i] > 57:
            raise ResponseError(f"invalid Content-Length from the application: {_clip(value)}")
        r = r * 10 + (v[i] - 48)
    return r


cdef int write_content_length(OutBuf* ob, long long n) except -1:
    cdef char tmp[40]
    cdef int i = 40
    ob_write(ob, b"Content-Length: ", 16)
    if n == 0:
        return ob_write(ob, b"0\r\n", 3)
    tmp[38] = b"\r"
    tmp[39] = b"\n"
    i = 38
    while n > 0:
        i -= 1
        tmp[i] = <char>(48 + n % 10)
        n //= 10
    return ob_write(ob, tmp + i, 40 - i)


cdef const char* HEX = b"0123456789abcdef"


cdef int write_chunk_header(OutBuf* ob, Py_ssize_t n) except -1:
    """The chunk-size line of an n-byte chunk: size in hex, CRLF (RFC 9112 §7.1)."""
    cdef char tmp[24]
    cdef int i = 22
    tmp[22] = b"\r"
    tmp[23] = b"\n"
    while n > 0:
        i -= 1
        tmp[i] = HEX[n & 15]
        n >>= 4
    return ob_write(ob, tmp + i, 24 - i)


cdef int write_chunk(OutBuf* ob, const char* p, Py_ssize_t n) except -1:
    """One chunk: its size line, the data, CRLF (RFC 9112 §7.1)."""
    if n == 0:
        return 0
    ob_reserve(ob, 20 + n)
    write_chunk_header(ob, n)
    memcpy(ob.data + ob.len, p, n)
    ob.len += n
    ob.data[ob.len] = b"\r"
    ob.data[ob.len + 1] = b"\n"
    ob.len += 2
    return 0


# --- Python-level helpers (tests) ----------------------------------------------------

def frame_head(status, headers, server="fastwsgi"):
    """write_head_start as the connection calls it: status line, validated headers,
    Server, Date, without the final CRLF.

    Returns (bytes, status_code, content_length or -1, app_close); RespInfo's
    no_body is status_code in (204, 304)."""
    cdef OutBuf ob
    cdef RespInfo info
    ob.data = NULL
    ob.len = ob.cap = 0
    line = (f"Server: {server}\r\n".encode("latin-1")) if server else b""
    try:
        write_head_start(&ob, status, headers, line, &info)
        return (PyBytes_FromStringAndSize(ob.data, ob.len), info.status_code,
                info.content_length, bool(info.app_close))
    finally:
        ob_free(&ob)


def frame_chunk(bytes data not None):
    """write_chunk's framing of one chunk (b"" frames to nothing)."""
    cdef OutBuf ob
    ob.data = NULL
    ob.len = ob.cap = 0
    try:
        write_chunk(&ob, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        return PyBytes_FromStringAndSize(ob.data, ob.len)
    finally:
        ob_free(&ob)


def frame_content_length(long long n):
    """The Content-Length line write_content_length frames for n."""
    cdef OutBuf ob
    ob.data = NULL
    ob.len = ob.cap = 0
    try:
        write_content_length(&ob, n)
        return PyBytes_FromStringAndSize(ob.data, ob.len)
    finally:
        ob_free(&ob)


def format_date(long long ts):
    """The Date header line for a Unix time, as the writer caches it."""
    _format_date(<time_t>ts)
    return PyBytes_FromStringAndSize(DATE_LINE, DATE_LEN)
