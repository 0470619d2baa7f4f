# Declarations of the unit fastwsgi/_conn_output.pxi: framing and sending.
# Included by _connection.pxd; the functions are direct C calls inside the extension.

cdef bytes error_page(int code, str reason)
cdef bint _queue_continue(Connection self) except -1
cdef int _frame_head(Connection self) except -1
cdef int _write_body(Connection self, bytes data) except -1
cdef int _queue_big(Connection self, bytes data, Py_ssize_t n) except -1
cdef bint _queue_cached(Connection self, bytes data, Py_ssize_t n) except -1
cdef bint _try_sendfile(Connection self, FileWrapper wrapper) except -1
cdef void _send_lowat(Connection self) noexcept
cdef bint _flush(Connection self) except -1
cdef void _advance_big(Connection self, Py_ssize_t n) noexcept
cdef int _flush_blocking(Connection self) except -1
