# The uwsgi binary protocol (what nginx's uwsgi_pass speaks), declared for cimport.
#
#   n = parse_uwsgi_head(parser, buf, length, base)   # 0: need more; >0: packet consumed
#
# On success it fills the same fields parse_head fills (parser.environ from a copy of
# `base` plus the packet's vars, body_kind/content_length/remaining/body_done from
# CONTENT_LENGTH, keep_alive False, http11 False, is_head, expect_continue False), so
# the connection serves the request exactly like an HTTP one; the body that follows is
# decoded with parser.decode_body.  Errors raise fastwsgi.errors.HttpParserError.

from fastwsgi._parser cimport RequestParser

cdef Py_ssize_t parse_uwsgi_head(RequestParser parser, const char* buf, Py_ssize_t n,
                                 dict base) except -1
