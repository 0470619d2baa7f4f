# cython: language_level=3
"""PROXY protocol v1/v2 header parser (see _proxyproto.pxd for the contract).

Stub: not implemented yet; every header is rejected.
"""

from fastwsgi.errors import InvalidRequestLine


cdef Py_ssize_t parse_proxy_header(const char* buf, Py_ssize_t n, list out) except -1:
    if n == 0:
        return 0
    raise InvalidRequestLine("the PROXY protocol is not implemented yet")
