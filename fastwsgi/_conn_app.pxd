# Declarations of the unit fastwsgi/_conn_app.pxi: the application's side of a request.

cdef int _handle_request(Connection self) except -1
cdef int _timed_out(Connection self) except -1
cdef int _app_exit(Connection self, exc) except -1
cdef int _app_error(Connection self, exc) except -1
cdef int _error_response(Connection self, int code, str reason) except -1
cdef int _pump(Connection self) except -1
cdef int _end_response(Connection self, bint complete) except -1
cdef int _close_iterable(Connection self) except -1
