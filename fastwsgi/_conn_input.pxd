# Declarations of the unit fastwsgi/_conn_input.pxi: receiving bodies, wsgi.input reads.

cdef int _grow_ibuf(Connection self, Py_ssize_t need) except -1
cdef int _save_input(Connection self) except -1
cdef int _start_body(Connection self) except -1
cdef bint _receive_body(Connection self) except -1
cdef int _body_append(Connection self, char* src, Py_ssize_t n) except -1
cdef int _spool_open(Connection self) except -1
cdef int _spool_write(Connection self, const char* src, Py_ssize_t n) except -1
cdef void _detach_input(Connection self) noexcept
cdef bint _decode_some(Connection self) except -1
cdef int _fetch(Connection self) except -1
cdef Py_ssize_t _recv_blocking(Connection self, char* dst, Py_ssize_t size) except -1
cdef bint _fill(Connection self) except -1
cdef bytes _take(Connection self, Py_ssize_t n)
cdef object body_read(Connection self, Py_ssize_t size)
cdef object _read_length(Connection self, Py_ssize_t size)
cdef object body_readline(Connection self, Py_ssize_t size)
cdef bint _discard_body(Connection self) except -1
