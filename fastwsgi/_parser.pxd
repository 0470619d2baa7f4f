# The compiled, sans-I/O HTTP/1.1 request parser (RFC 9112), declared for cimport.
#
# Hot-path call sequence (fastwsgi/_connection.pyx):
#
#   n = parser.parse_head(buf, length, base)    # 0: need more bytes; >0: head consumed
#   environ = parser.environ                    # a new dict: copy of `base` + request keys
#   ... parser.body_kind / content_length / keep_alive / expect_continue ...
#   while not parser.body_done:
#       used = parser.decode_body(buf, length, &out)   # decodes IN PLACE: the first `out`
#                                                      # bytes of buf are body data now
#   parser.reset()                              # before the next request's parse_head
#
# The parser never owns or keeps a pointer to the bytes it is given: every call
# works on (pointer, length) and says how many bytes it consumed; the caller keeps
# the unconsumed rest for the next call.  parse_head may be called again with a
# longer buffer that starts with the same bytes (it resumes its terminator scan
# at self.scan_pos, so trickled input is not rescanned quadratically).
#
# Errors: parse_head and decode_body raise a fastwsgi.errors.HttpParserError
# subclass (its status_code is the answer) and return -1.

cdef enum BodyKind:
    BODY_NONE = 0       # no body: no Content-Length, no Transfer-Encoding
    BODY_LENGTH = 1     # Content-Length: content_length bytes
    BODY_CHUNKED = 2    # Transfer-Encoding: chunked

cdef class Limits:
    cdef public Py_ssize_t max_request_line     # bytes of the request line, CRLF excluded -> 414
    cdef public Py_ssize_t max_header_bytes     # bytes of the whole head (request line + fields + CRLFs) -> 431
    cdef public Py_ssize_t max_headers          # number of field lines -> 431
    cdef public long long max_body             # decoded body bytes; 0 = unlimited -> 413
    cdef public Py_ssize_t max_chunk_line       # bytes of one chunk-size line incl. extensions -> 400
    cdef public Py_ssize_t max_trailer_bytes    # bytes of the trailer section -> 431

cdef class RequestParser:
    cdef readonly Limits limits
    cdef public str script_name        # --root-path: SCRIPT_NAME, stripped from PATH_INFO's front

    # incremental head scan (state between parse_head calls on a growing buffer)
    cdef Py_ssize_t scan_pos
    cdef Py_ssize_t scan_lines

    # results of the last successful parse_head
    cdef dict _clean_base                  # last base found free of request keys
    cdef Py_ssize_t _clean_len
    cdef public dict environ
    cdef public int body_kind
    cdef public long long content_length   # -1 unless BODY_LENGTH
    cdef public bint keep_alive            # False for Connection: close, and HTTP/1.0 without keep-alive
    cdef public bint expect_continue       # Expect: 100-continue on HTTP/1.1
    cdef public bint http11                # request version is HTTP/1.1
    cdef public bint is_head               # method is HEAD (the response has no body)
    cdef public bint forwarded             # a Forwarded or X-Forwarded-For/-Proto/-Host/-Port field came

    # body decoding state
    cdef long long remaining              # BODY_LENGTH: bytes left; BODY_CHUNKED: bytes left in chunk
    cdef int chunk_state
    cdef Py_ssize_t chunk_line_len         # bytes of the current chunk-size / trailer line seen so far
    cdef Py_ssize_t trailer_bytes
    cdef public long long body_received    # decoded body bytes so far
    cdef public bint body_done             # the whole body (and trailers) has been consumed

    # private (added by _parser.pyx): the rest of the incremental head scan state
    cdef Py_ssize_t scan_line_start        # offset of the line the scan is in
    cdef Py_ssize_t scan_head_start        # offset of the request line (after skipped empty lines)
    cdef int scan_empty_lines              # empty lines skipped before the request line (max 2)

    # private: the Python-level driver (feed / next_event / buffered), tests and fuzzing only
    cdef bytearray _buf
    cdef int _in_message                   # 0 head, 1 body, 2 ended (reset on the next call)
    cdef object _error                     # the error raised once; raised again on every call

    cdef Py_ssize_t parse_head(self, const char* buf, Py_ssize_t n, dict base) except -1
    cdef Py_ssize_t decode_body(self, char* buf, Py_ssize_t n, Py_ssize_t* out_n) except -1
    cdef void frame_by_length(self, long long cl) noexcept   # Content-Length cl, or none if < 0
    cdef void reset(self)
