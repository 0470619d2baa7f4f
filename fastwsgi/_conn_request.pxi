# Unit of fastwsgi/_connection.pyx (included): the WSGI objects of one request.
#
# Contract:
# - Responder holds start_response and write() (PEP 3333) of one request.  The
#   connection makes one, with its two bound methods, and reuses them for its next
#   request while no one else holds a reference to them (the reference counts say
#   so: an object only the connection holds cannot be called by anyone else).  When
#   an app kept one past its request, the Responder is retired (conn = None) and a
#   new one made: a kept start_response or write() then raises ResponseError and
#   never touches another request's response.  Reusing them keeps the hot path free
#   of two method-object allocations per request.
# - InputStream is wsgi.input of one request: it reads the received body (memory or
#   spool file, _conn_input) or, with stream_body, the socket.  Detached when its
#   request ends: a kept wsgi.input then raises ResponseError on read.
# - FileWrapper is wsgi.file_wrapper (sent with sendfile(2) when it wraps a file).


@cython.final
cdef class FileWrapper:
    """wsgi.file_wrapper: iterates blocks, or is sent with sendfile(2) when it wraps a
    regular file (PEP 3333 §"Optional Platform-Specific File Handling")."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self):
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


cdef object _stale_input():
    raise ResponseError("wsgi.input read after its request ended")


@cython.final
@cython.freelist(8)
cdef class InputStream:
    """wsgi.input for one request; detached (reading raises) once the request is over."""

    def read(self, size=-1):
        if self.conn is None:
            return _stale_input()
        if size is None:
            size = -1
        return body_read(self.conn, size)

    def readline(self, size=-1):
        if self.conn is None:
            return _stale_input()
        if size is None:
            size = -1
        return body_readline(self.conn, size)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


@cython.final
@cython.freelist(8)
cdef class Responder:
    """start_response and write() of one request (see the unit's contract)."""

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333's start_response, as a bound method: a vectorcall, which calling
        an object (tp_call through a slot wrapper) is not."""
        cdef Connection conn = self.conn
        if conn is None:
            raise ResponseError("start_response() called after its request ended")
        if exc_info is not None:
            try:
                if conn.head_framed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif conn.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        if not isinstance(status, str):
            raise ResponseError(f"status must be str, not {type(status).__name__}")
        if not isinstance(headers, list):
            raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
        conn.status = status
        conn.headers = headers
        if conn.write_bound is None:
            conn.write_bound = self.write
        return conn.write_bound

    def write(self, data):
        """The write() callable: blocks until the bytes are sent or buffered."""
        cdef Connection conn = self.conn
        if conn is None:
            raise ResponseError("write() called after its request ended")
        if conn.state == ST_CLOSED or conn.environ is None or conn.abandoned:
            raise ClientDisconnected("write() after the response ended")
        if not isinstance(data, bytes):
            raise ResponseError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        _write_body(conn, data)
        if conn.out.len >= HIGH_WATER or conn.big is not None or conn.sf_fd >= 0:
            _flush_blocking(conn)


cdef void _retire_responder(Connection conn, bint force) noexcept:
    """End of a request: keep the Responder for the next one unless someone else
    holds it or its bound methods (then they must not reach the next request)."""
    if conn.resp is None:
        return
    # (the casts read the reference counts without taking a reference)
    if (force
            or (conn.sr_bound is not None and _Py_REFCNT(<PyObject*>conn.sr_bound) > 1)
            or (conn.write_bound is not None and _Py_REFCNT(<PyObject*>conn.write_bound) > 1)
            or _Py_REFCNT(<PyObject*>conn.resp) > 1 + (conn.sr_bound is not None)
                                                    + (conn.write_bound is not None)):
        conn.resp.conn = None
        conn.resp = None
        conn.sr_bound = None
        conn.write_bound = None
