# The PROXY protocol header (HAProxy's v1 text and v2 binary), declared for cimport.
#
#   n = parse_proxy_header(buf, length, out)   # 0: need more bytes; >0: header consumed
#
# Called once per connection, before the first request, on listeners that expect it.
# On success `out` gets two str items appended: the client's address and port (nothing
# for a v2 LOCAL command or v1 UNKNOWN: keep the socket's peer).  A malformed header
# raises fastwsgi.errors.HttpParserError (the connection is closed).

cdef Py_ssize_t parse_proxy_header(const char* buf, Py_ssize_t n, list out) except -1
