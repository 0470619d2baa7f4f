# cython: language_level=3
"""PROXY protocol header parser (see _proxyproto.pxd for the contract).

HAProxy's PROXY protocol (haproxy.org/download/2.9/doc/proxy-protocol.txt), sent
once by a load balancer at the start of a connection to name the real client:

* v1, text:   "PROXY" SP ( "TCP4" | "TCP6" ) SP src SP dst SP sport SP dport CRLF
              "PROXY UNKNOWN" [ anything ] CRLF  (the balancer does not know)
              at most 107 bytes with the CRLF (spec §2.1).
* v2, binary: 12-byte signature, ver_cmd (0x20 LOCAL, 0x21 PROXY), family
              (0x00 UNSPEC, 0x11 TCP4, 0x21 TCP6, 0x31 UNIX stream), u16be length,
              then the addresses and optional TLVs (skipped).

Strict: a listener configured for the PROXY protocol takes nothing else, so a
connection that does not start with a valid header is rejected (spec §2: "the
receiver MUST ... not try to guess").  Addresses are validated with inet_pton
and given back in inet_ntop's canonical form, ports as decimal strings.
"""

from libc.string cimport memchr, memcmp, memcpy

from fastwsgi.errors import ProxyProtocolError

cdef extern from "arpa/inet.h":
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)

cdef extern from "sys/socket.h":
    int AF_INET
    int AF_INET6

cdef enum:
    V1_MAX = 107            # spec §2.1: worst case "PROXY UNKNOWN ffff:...\r\n"
    V2_HEAD = 16
    ADDR_TEXT = 64          # > INET6_ADDRSTRLEN (46)

cdef const char* V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"     # 12 bytes
cdef const char* V1_SIG = b"PROXY "


cdef Py_ssize_t parse_proxy_header(const char* buf, Py_ssize_t n, list out) except -1:
    cdef Py_ssize_t k
    if n == 0:
        return 0
    if buf[0] == b'P':
        k = n if n < 6 else 6
        if memcmp(buf, V1_SIG, k) != 0:
            raise ProxyProtocolError("not a PROXY protocol v1 header")
        return _parse_v1(buf, n, out)
    if buf[0] == b'\r':
        k = n if n < 12 else 12
        if memcmp(buf, V2_SIG, k) != 0:
            raise ProxyProtocolError("not a PROXY protocol v2 header")
        return _parse_v2(<const unsigned char*>buf, n, out)
    raise ProxyProtocolError("connection without a PROXY protocol header")


cdef str _address(int family, const char* text, Py_ssize_t n):
    """Validate one textual address of a v1 header; its canonical form."""
    cdef char tmp[ADDR_TEXT]
    cdef unsigned char raw[16]
    cdef char canon[ADDR_TEXT]
    if n == 0 or n >= ADDR_TEXT:
        raise ProxyProtocolError("bad address in PROXY header")
    memcpy(tmp, text, n)
    tmp[n] = 0
    if inet_pton(family, tmp, raw) != 1:
        raise ProxyProtocolError("bad address in PROXY header")
    inet_ntop(family, raw, canon, ADDR_TEXT)
    return canon.decode("ascii")


cdef int _port(const char* p, Py_ssize_t n) except -1:
    # spec §2.1: "a decimal number between 0 and 65535 ... Leading zeroes are not
    # permitted"
    cdef int value = 0
    cdef Py_ssize_t i
    if n == 0 or n > 5 or (n > 1 and p[0] == b'0'):
        raise ProxyProtocolError("bad port in PROXY header")
    for i in range(n):
        if not (48 <= p[i] <= 57):
            raise ProxyProtocolError("bad port in PROXY header")
        value = value * 10 + (p[i] - 48)
    if value > 65535:
        raise ProxyProtocolError("bad port in PROXY header")
    return value


cdef Py_ssize_t _parse_v1(const char* buf, Py_ssize_t n, list out) except -1:
    cdef const char* lf
    cdef Py_ssize_t end, i, start
    cdef int family
    cdef Py_ssize_t f0[5]
    cdef Py_ssize_t f1[5]
    cdef int nf = 0
    lf = <const char*>memchr(buf, b'\n', n if n < V1_MAX else V1_MAX)
    if lf == NULL:
        if n >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 header longer than 107 bytes")
        return 0
    end = lf - buf             # offset of the LF
    if end < 7 or buf[end - 1] != b'\r':
        raise ProxyProtocolError("PROXY v1 header not ended by CRLF")
    end -= 1                   # offset of the CR
    if end >= 13 and memcmp(buf + 6, b"UNKNOWN", 7) == 0 and (end == 13 or buf[13] == b' '):
        return end + 2         # spec: the receiver ignores the rest and keeps the peer
    if end < 11 or buf[10] != b' ':
        raise ProxyProtocolError("bad PROXY v1 protocol")
    if memcmp(buf + 6, b"TCP4", 4) == 0:
        family = AF_INET
    elif memcmp(buf + 6, b"TCP6", 4) == 0:
        family = AF_INET6
    else:
        raise ProxyProtocolError("bad PROXY v1 protocol")
    # four fields separated by exactly one SP
    start = 11
    i = 11
    while i <= end:
        if i == end or buf[i] == b' ':
            if nf == 4 or i == start:
                raise ProxyProtocolError("bad PROXY v1 fields")
            f0[nf] = start
            f1[nf] = i
            nf += 1
            start = i + 1
        i += 1
    if nf != 4:
        raise ProxyProtocolError("bad PROXY v1 fields")
    src = _address(family, buf + f0[0], f1[0] - f0[0])
    _address(family, buf + f0[1], f1[1] - f0[1])
    sport = _port(buf + f0[2], f1[2] - f0[2])
    _port(buf + f0[3], f1[3] - f0[3])
    out.append(src)
    out.append(str(sport))
    return end + 2


cdef Py_ssize_t _parse_v2(const unsigned char* p, Py_ssize_t n, list out) except -1:
    cdef Py_ssize_t length, total
    cdef int cmd, family
    cdef char canon[ADDR_TEXT]
    if n < V2_HEAD:
        if n > 12 and (p[12] & 0xF0) != 0x20:
            raise ProxyProtocolError("PROXY v2 header with a version other than 2")
        return 0
    if (p[12] & 0xF0) != 0x20:
        raise ProxyProtocolError("PROXY v2 header with a version other than 2")
    cmd = p[12] & 0x0F
    if cmd > 1:
        raise ProxyProtocolError("PROXY v2 command other than LOCAL or PROXY")
    family = p[13]
    length = (p[14] << 8) | p[15]
    total = V2_HEAD + length
    if n < total:
        return 0
    if cmd == 0:
        # LOCAL: the balancer's own connection (health checks): keep the peer
        return total
    if family == 0x11:
        if length < 12:
            raise ProxyProtocolError("PROXY v2 TCP4 addresses truncated")
        inet_ntop(AF_INET, p + 16, canon, ADDR_TEXT)
        out.append(canon.decode("ascii"))
        out.append(str((p[24] << 8) | p[25]))
    elif family == 0x21:
        if length < 36:
            raise ProxyProtocolError("PROXY v2 TCP6 addresses truncated")
        inet_ntop(AF_INET6, p + 16, canon, ADDR_TEXT)
        out.append(canon.decode("ascii"))
        out.append(str((p[48] << 8) | p[49]))
    elif family == 0x31:
        if length < 216:
            raise ProxyProtocolError("PROXY v2 UNIX addresses truncated")
        # a unix-socket client has no address to report: keep the peer
    elif family != 0x00:
        raise ProxyProtocolError("PROXY v2 family other than TCP4, TCP6, UNIX stream")
    return total


def parse(data):
    """parse_proxy_header from Python (tests, fuzzing): (consumed, [addr, port])."""
    cdef bytes raw = bytes(data)
    cdef list out = []
    cdef Py_ssize_t used = parse_proxy_header(raw, len(raw), out)
    return used, out
