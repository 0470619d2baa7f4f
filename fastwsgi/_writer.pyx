# cython: language_level=3
"""Compiled response framing: status line, headers, Date cache, chunked framing.

Contract: everything here appends to a growable C buffer (OutBuf) owned by the
caller; nothing is sent.  write_head_start validates what the application gave to
start_response (PEP 3333 §"The start_response() Callable") and raises
fastwsgi.errors.ResponseError for a bad status, a header that is not a (str, str)
pair, a name that is not an RFC 9110 token, or a value with CR, LF, NUL or another
control character (response splitting).  The Date header is formatted at most
once per second.  The Python-level helpers at the bottom exist for the tests.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
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
# only with the GIL held.
cdef enum:
    OB_FIRST = 4096
    OB_POOL_MAX = 64

cdef char* _ob_pool[OB_POOL_MAX]
cdef int _ob_pooled = 0


cdef int ob_reserve(OutBuf* ob, Py_ssize_t extra) except -1:
    global _ob_pooled
    cdef Py_ssize_t need = ob.len + extra
    cdef Py_ssize_t cap
    cdef char* p
    if need <= ob.cap:
        return 0
    if ob.cap == 0 and need <= OB_FIRST and _ob_pooled:
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
    if ob.cap == OB_FIRST and _ob_pooled < OB_POOL_MAX:
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


cdef void _format_date(time_t now) noexcept:
    """'Date: Sun, 06 Nov 1994 08:49:37 GMT\\r\\n' without strftime (no locale)."""
    global DATE_LEN, DATE_AT
    cdef tm t
    cdef char* p = DATE_LINE
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
    DATE_LEN = 37
    DATE_AT = now


cdef int write_date(OutBuf* ob) except -1:
    cdef time_t now = time(NULL)
    if now != DATE_AT:
        _format_date(now)
    return ob_write(ob, DATE_LINE, DATE_LEN)


# --- status line and headers ---------------------------------------------------------

cdef inline bint _ieq(const unsigned char* p, Py_ssize_t n, const char* lower) noexcept:
    """Case-insensitive compare of p[:n] against a lowercase ASCII literal of length n."""
    cdef Py_ssize_t i
    for i in range(n):
        if (p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


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


cdef inline const unsigned char* _latin1(object s, Py_ssize_t* n, str what) except NULL:
    """The bytes of a str whose characters all fit latin-1 (PEP 3333 native strings)."""
    if not PyUnicode_CheckExact(s):
        if isinstance(s, str):
            s = str(s)
        else:
            raise ResponseError(f"{what} must be str, not {type(s).__name__}")
    if PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND:
        raise ResponseError(f"{what} is not latin-1 encodable: {s!r}")
    n[0] = PyUnicode_GET_LENGTH(s)
    return <const unsigned char*>PyUnicode_DATA(s)


cdef int write_head_start(OutBuf* ob, object status, object headers, bytes server_line,
                          RespInfo* info) except -1:
    cdef Py_ssize_t n, vn, i
    cdef const unsigned char* p
    cdef const unsigned char* v
    cdef int code
    cdef bint saw_server = False, saw_date = False
    cdef object item, name, value

    info.content_length = -1
    info.app_close = False

    # status: "NNN reason" (PEP 3333), a native str
    if isinstance(status, bytes):
        raise ResponseError(f"status must be str, not bytes: {status!r}")
    p = _latin1(status, &n, "status")
    if n < 4 or p[3] != 32:
        raise ResponseError(f"status must look like '200 OK': {status!r}")
    for i in range(3):
        if p[i] < 48 or p[i] > 57:
            raise ResponseError(f"status must start with three digits: {status!r}")
    code = (p[0] - 48) * 100 + (p[1] - 48) * 10 + (p[2] - 48)
    if code < 100:
        raise ResponseError(f"status code out of range: {status!r}")
    for i in range(4, n):
        if not VALUE_OK[p[i]]:
            raise ResponseError(f"control character in status: {status!r}")
    info.status_code = code
    info.no_body = code < 200 or code == 204 or code == 304
    ob_reserve(ob, n + 11)
    memcpy(ob.data + ob.len, b"HTTP/1.1 ", 9)
    memcpy(ob.data + ob.len + 9, p, n)
    memcpy(ob.data + ob.len + 9 + n, b"\r\n", 2)
    ob.len += n + 11

    if not (PyList_CheckExact(headers) or PyTuple_CheckExact(headers)):
        if not isinstance(headers, (list, tuple)):
            raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if not PyTuple_CheckExact(item) or len(<tuple>item) != 2:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ResponseError(f"header must be a (name, value) tuple: {item!r}")
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        p = _latin1(name, &n, "header name")
        v = _latin1(value, &vn, "header value")
        if n == 0:
            raise ResponseError("empty header name")
        for i in range(n):
            if not TCHAR[p[i]]:
                raise ResponseError(f"invalid character in header name {name!r}")
        for i in range(vn):
            if not VALUE_OK[v[i]]:
                raise ResponseError(f"control character in header {name!s}: {value!r}")
        # hop-by-hop headers are the server's business (PEP 3333 §"Other HTTP Features")
        if n == 14 and _ieq(p, 14, b"content-length"):
            if info.content_length >= 0:
                raise ResponseError("duplicate Content-Length header")
            info.content_length = _parse_length(v, vn, value)
        elif n == 10 and _ieq(p, 10, b"connection"):
            if _has_close_token(v, vn):
                info.app_close = True
            continue
        elif (n == 17 and _ieq(p, 17, b"transfer-encoding")) or (n == 10 and _ieq(p, 10, b"keep-alive")):
            continue
        elif n == 6 and _ieq(p, 6, b"server"):
            saw_server = True
        elif n == 4 and _ieq(p, 4, b"date"):
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


cdef long long _parse_length(const unsigned char* v, Py_ssize_t n, object value) except -2:
    cdef long long r = 0
    cdef Py_ssize_t i
    if n == 0 or n > 18:
        raise ResponseError(f"invalid Content-Length from the application: {value!r}")
    for i in range(n):
        if v[i] < 48 or v[i] > 57:
            raise ResponseError(f"invalid Content-Length from the application: {value!r}")
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


# --- Python-level helpers (tests, error pages) ---------------------------------------

def frame_head(status, headers, server="fastwsgi"):
    """Status line + validated headers + Server + Date, without the final CRLF.

    Returns (bytes, status_code, content_length or -1, app_close)."""
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


def frame_chunk(bytes data):
    cdef OutBuf ob
    ob.data = NULL
    ob.len = ob.cap = 0
    try:
        write_chunk(&ob, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        return PyBytes_FromStringAndSize(ob.data, ob.len)
    finally:
        ob_free(&ob)


def format_date(long long ts):
    """The Date header line for a Unix time, as the writer caches it."""
    _format_date(<time_t>ts)
    return PyBytes_FromStringAndSize(DATE_LINE, DATE_LEN)
