# The compiled response writer, declared for cimport by fastwsgi/_connection.pyx.
#
# Call sequence for one response (the connection owns the OutBuf):
#
#   mark = ob.len
#   write_head_start(&ob, status, headers, server_line, &info)   # status line + app headers
#                                                                # + Server + Date (validated)
#   ... decide framing from info (content_length, app_close, status_code) ...
#   write_content_length(&ob, n)  or  ob_write(&ob, "Transfer-Encoding: chunked\r\n")
#   ob_write(&ob, "Connection: ...\r\n\r\n")
#   write_chunk(&ob, data, n) / ob_write(&ob, data, n) ...
#
# On a ResponseError from write_head_start the caller rolls back with ob.len = mark:
# nothing of a rejected head ever reaches the socket (no response splitting).
# The response-header policy (statuses, hop-by-hop, 204/304, Server, Date) is
# written out once, above write_head_start in _writer.pyx.

cdef struct OutBuf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap

cdef struct RespInfo:
    int status_code
    long long content_length      # from the app's Content-Length, -1 when absent
    bint app_close                # the app sent Connection: close
    bint no_body                  # 204, 304: no body, and the app's Content-Length /
                                  # Transfer-Encoding were dropped (1xx is refused)

cdef int ob_reserve(OutBuf* ob, Py_ssize_t extra) except -1
cdef int ob_write(OutBuf* ob, const char* p, Py_ssize_t n) except -1
cdef void ob_consume(OutBuf* ob, Py_ssize_t n) noexcept
cdef void ob_free(OutBuf* ob) noexcept

cdef int write_head_start(OutBuf* ob, object status, object headers, bytes server_line,
                          RespInfo* info) except -1
cdef int write_content_length(OutBuf* ob, long long n) except -1
cdef int write_chunk_header(OutBuf* ob, Py_ssize_t n) except -1
cdef int write_chunk(OutBuf* ob, const char* p, Py_ssize_t n) except -1
cdef int write_date(OutBuf* ob) except -1
