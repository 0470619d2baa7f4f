# cython: language_level=3
"""The uwsgi binary protocol request parser (see _uwsgi.pxd for the contract).

Stub: not implemented yet; every packet is answered 501.
"""

from fastwsgi._parser cimport RequestParser

from fastwsgi.errors import UnsupportedTransferCoding


cdef Py_ssize_t parse_uwsgi_head(RequestParser parser, const char* buf, Py_ssize_t n,
                                 dict base) except -1:
    if n == 0:
        return 0
    raise UnsupportedTransferCoding("the uwsgi protocol is not implemented yet")
