# Declarations of the unit fastwsgi/_conn_state.pxi: the state machine and its owner
# (the class Connection and its entry points are declared in _connection.pxd).

cdef int _serve(Connection self) except -1
cdef int _dispatch_request(Connection self) except -1
cdef int _after_request(Connection self, int rc) except -1
cdef Py_ssize_t _proxy_header(Connection self) except -1
cdef int _resume_from_app(Connection self) except -1
cdef void _watch(Connection self, bint busy) noexcept
cdef double _watch_block(Connection self) noexcept
cdef void _watch_unblock(Connection self, double blocked) noexcept
cdef int _flush_then(Connection self, int want) except -1
cdef int _reject(Connection self, exc) except -1
cdef int _linger(Connection self) except -1
cdef int _pause(Connection self) except -1
cdef int _abort(Connection self) except -1
