# Unit of fastwsgi/_connection.pyx (included): receiving a request's body, and
# wsgi.input's reads.
#
# Contract:
# - Buffers: the window (cur, cur_len) is raw input; (dptr, dlen) is decoded body not
#   yet read by the app.  Both point into the loop's shared rbuf while one recv is
#   processed, and into the connection's own ibuf once control goes back to the loop
#   (_save_input); ibuf is then laid out [decoded body][raw input] and freed when
#   both are empty.
# - Whole bodies (the default): _start_body(conn) is called once a head announcing a
#   body is parsed; _receive_body(conn) decodes what the window holds (Content-Length
#   or chunked, in place) and appends it to the body: in memory while it fits in
#   body_buffer_size, else in a spool file (an unlinked temporary file in
#   body_temp_dir, closed -- so gone -- when the request ends).  Both return True
#   once the body is whole (trailers included); the body's framing and limit errors
#   are HttpParserErrors (400/413), raised before the app is called.  Meanwhile the
#   connection is in ST_BODY with deadline body_t0 + body_timeout + received /
#   body_min_rate (on_timeout answers 408).  A chunked body is then presented with
#   CONTENT_LENGTH = its decoded length (wsgi.input_terminated is True anyway).
# - wsgi.input reads (body_read, body_readline) serve the received body from memory
#   or the spool file; with stream_body they read the socket as the app asks
#   (_fetch/_recv_blocking: blocking up to io_timeout, 100 Continue first, the
#   watchdog paused while waiting), never past the body's end.
# - _discard_body drops a streamed body the app left unread (ST_DRAIN).

cdef int _grow_ibuf(Connection self, Py_ssize_t need) except -1:
    cdef char* p
    cdef Py_ssize_t cap = self.icap if self.icap else 4096
    while cap < need:
        cap *= 2
    if cap == self.icap:
        return 0
    p = <char*>realloc(self.ibuf, cap)
    if p == NULL:
        raise MemoryError()
    # keep the windows pointing into the moved buffer
    if self.cur_len and self.cur >= self.ibuf and self.cur < self.ibuf + self.icap:
        self.cur = p + (self.cur - self.ibuf)
    if self.dlen and self.dptr >= self.ibuf and self.dptr < self.ibuf + self.icap:
        self.dptr = p + (self.dptr - self.ibuf)
    self.ibuf = p
    self.icap = cap
    return 0


cdef inline bint _in_ibuf(Connection self, const char* p) noexcept:
    return self.icap > 0 and p >= self.ibuf and p < self.ibuf + self.icap


cdef int _save_input(Connection self) except -1:
    """Move the unconsumed windows (decoded body, then raw input) to the front of
    ibuf, so they survive the shared buffer's next use; free ibuf when empty."""
    cdef Py_ssize_t total = self.dlen + self.cur_len
    cdef char* p
    cdef bint d_in = self.dlen == 0 or _in_ibuf(self, self.dptr)
    cdef bint c_in = self.cur_len == 0 or _in_ibuf(self, self.cur)
    if total == 0:
        if self.icap:
            free(self.ibuf)
            self.ibuf = NULL
            self.icap = 0
        self.cur = NULL
        self.dptr = NULL
        return 0
    if d_in and c_in:
        # compact in place (the decoded body comes first, the raw input after it)
        if self.dlen and self.dptr != self.ibuf:
            memmove(self.ibuf, self.dptr, self.dlen)
        if self.cur_len:
            memmove(self.ibuf + self.dlen, self.cur, self.cur_len)
        self.dptr = self.ibuf
        self.cur = self.ibuf + self.dlen
        if self.icap > 65536 and total <= 16384:
            # a large body went to the app or the spool file: give the memory back
            p = <char*>realloc(self.ibuf, 16384)
            if p != NULL:
                self.ibuf = p
                self.icap = 16384
                self.dptr = p
                self.cur = p + self.dlen
        return 0
    if self.dlen and d_in:
        # the body so far is in ibuf, the new raw input in the shared buffer
        if self.dptr != self.ibuf:
            memmove(self.ibuf, self.dptr, self.dlen)
            self.dptr = self.ibuf
        _grow_ibuf(self, total)
        memcpy(self.ibuf + self.dlen, self.cur, self.cur_len)
        self.cur = self.ibuf + self.dlen
        return 0
    # everything lives in the shared buffer
    p = <char*>malloc(total if total > 4096 else 4096)
    if p == NULL:
        raise MemoryError()
    if self.dlen:
        memcpy(p, self.dptr, self.dlen)
    memcpy(p + self.dlen, self.cur, self.cur_len)
    free(self.ibuf)
    self.ibuf = p
    self.icap = total if total > 4096 else 4096
    self.dptr = p
    self.cur = p + self.dlen
    return 0


cdef int _start_body(Connection self) except -1:
    """A head announcing a body was parsed: receive it before the app (ST_BODY).
    (_serve sends 100 Continue if the body is not whole at once and the client
    waits for it.)"""
    self.state = ST_BODY
    self.body_t0 = now()
    self.dlen = 0
    _body_deadline(self)
    return 0


cdef inline void _body_deadline(Connection self) noexcept:
    cdef double t = self.body_t0 + self.st.body_timeout
    if self.st.body_min_rate > 0:
        t += self.parser.body_received / self.st.body_min_rate
    self.deadline = t


cdef bint _receive_body(Connection self) except -1:
    """Decode the window into the body. True once the body is whole."""
    cdef RequestParser p = self.parser
    cdef Py_ssize_t used, out_n
    while self.cur_len > 0 and not p.body_done:
        out_n = 0
        used = p.decode_body(self.cur, self.cur_len, &out_n)   # decodes in place
        if out_n:
            _body_append(self, self.cur, out_n)
        self.cur += used
        self.cur_len -= used
        if used == 0:
            break
    if not p.body_done:
        _body_deadline(self)
        return False
    self.state = ST_READ
    if self.spool_fd >= 0:
        # wsgi.input reads the spool file from its start (the file object owns the fd)
        self.spool = open(self.spool_fd, "rb", closefd=True)
        self.spool_fd = -1
        self.spool.seek(0)
    if p.body_kind == BODY_CHUNKED:
        # the whole body is here: tell the app its length, as waitress does
        p.environ[K_CONTENT_LENGTH] = str(p.body_received)
    return True


cdef int _body_append(Connection self, char* src, Py_ssize_t n) except -1:
    """Append n decoded body bytes at src (inside the window) to the body."""
    if self.spool_fd < 0 and self.dlen + n > self.st.body_buffer_size:
        _spool_open(self)
        if self.dlen:
            _spool_write(self, self.dptr, self.dlen)
            self.dlen = 0
    if self.spool_fd >= 0:
        return _spool_write(self, src, n)
    if self.dlen == 0:
        self.dptr = src
    elif self.dptr + self.dlen != src:
        if _in_ibuf(self, self.dptr) and not _in_ibuf(self, src):
            # the body so far is in ibuf, these bytes in the shared buffer
            _grow_ibuf(self, (self.dptr - self.ibuf) + self.dlen + n)
            memcpy(self.dptr + self.dlen, src, n)
        else:
            # the same buffer, src after the body: close the gap (chunk framing)
            memmove(self.dptr + self.dlen, src, n)
    self.dlen += n
    return 0


cdef int _spool_open(Connection self) except -1:
    """An unlinked temporary file for a body past body_buffer_size."""
    import tempfile
    f = tempfile.TemporaryFile(dir=self.st.body_temp_dir)
    try:
        self.spool_fd = os.dup(f.fileno())
    finally:
        f.close()
    return 0


cdef int _spool_write(Connection self, const char* src, Py_ssize_t n) except -1:
    cdef ssize_t w
    while n > 0:
        w = c_write(self.spool_fd, src, n)
        if w < 0:
            if errno == EINTR:
                continue
            raise OSError(errno, f"writing the request body's spool file: {os.strerror(errno)}")
        src += w
        n -= w
    return 0


cdef void _detach_input(Connection self) noexcept:
    """The request is over: its wsgi.input reads raise, its body is dropped."""
    if self.input is not None:
        (<InputStream>self.input).conn = None
        self.input = None
    self.dlen = 0
    if self.spool is not None:
        try:
            self.spool.close()
        except BaseException:
            pass
        self.spool = None
    if self.spool_fd >= 0:
        c_close(self.spool_fd)
        self.spool_fd = -1


cdef bint _decode_some(Connection self) except -1:
    """Decode body bytes from the window. False: the window holds no more."""
    cdef Py_ssize_t used, out_n = 0
    if self.cur_len == 0 or self.parser.body_done:
        return False
    used = self.parser.decode_body(self.cur, self.cur_len, &out_n)
    self.dptr = self.cur
    self.dlen = out_n
    self.cur += used
    self.cur_len -= used
    return used > 0


cdef int _fetch(Connection self) except -1:
    """Block until more body bytes arrive from the client (up to io_timeout)."""
    cdef Py_ssize_t n
    _save_input(self)
    if self.icap - self.cur_len - self.dlen < FETCH_SIZE:
        _grow_ibuf(self, self.dlen + self.cur_len + FETCH_SIZE)
    n = _recv_blocking(self, self.ibuf + self.dlen + self.cur_len,
                            self.icap - self.dlen - self.cur_len)
    self.cur = self.ibuf + self.dlen
    self.cur_len += n
    return 0


cdef Py_ssize_t _recv_blocking(Connection self, char* dst, Py_ssize_t size) except -1:
    """recv up to `size` body bytes into dst, waiting up to io_timeout; sends
    100 Continue first if the client waits for it (RFC 9110 §10.1.1)."""
    cdef pollfd pfd
    cdef int r
    cdef ssize_t n
    cdef int ms = <int>(self.st.io_timeout * 1000)
    cdef double blocked
    if self.abandoned:
        raise ClientDisconnected("the request timed out: its body is no longer read")
    if _queue_continue(self):
        _flush_blocking(self)
    while True:
        n = recv(self.fd, dst, size, 0)
        if n > 0:
            return n
        if n == 0:
            raise ClientDisconnected("the client closed the connection mid-body")
        if errno == EINTR:
            continue
        if errno != EAGAIN:
            raise ClientDisconnected(f"recv failed: {os.strerror(errno)}")
        pfd.fd = self.fd
        pfd.events = POLLIN
        blocked = _watch_block(self)
        with nogil:
            r = poll(&pfd, 1, ms)
        _watch_unblock(self, blocked)
        if r == 0:
            raise ClientDisconnected("timed out reading the request body")


cdef bint _fill(Connection self) except -1:
    """Make decoded body bytes available. False at the end of the body."""
    while self.dlen == 0:
        if self.parser.body_done:
            return False
        if not _decode_some(self):
            if self.parser.body_done:
                return self.dlen > 0
            _fetch(self)
    return True


cdef bytes _take(Connection self, Py_ssize_t n):
    cdef bytes b = PyBytes_FromStringAndSize(self.dptr, n)
    self.dptr += n
    self.dlen -= n
    return b


cdef object body_read(Connection self, Py_ssize_t size):
    """read(size): `size` bytes, or all that is left when size < 0 or the body
    ends first -- never a short read mid-body (apps call read(CONTENT_LENGTH))."""
    cdef list parts
    cdef Py_ssize_t n, got = 0
    if size == 0:
        return b""
    if self.spool is not None:
        return self.spool.read(size)
    if self.parser.body_kind == BODY_LENGTH:
        return _read_length(self, size)
    parts = []
    while (size < 0 or got < size) and _fill(self):
        n = self.dlen if size < 0 or self.dlen < size - got else size - got
        parts.append(_take(self, n))
        got += n
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


cdef object _read_length(Connection self, Py_ssize_t size):
    """A Content-Length body: the result is allocated once and what has not
    arrived yet is received straight into it (never past the body's end, so
    a pipelined request behind it stays in the socket)."""
    cdef RequestParser p = self.parser
    cdef Py_ssize_t want, got = 0, n, out_n
    cdef long long left = self.dlen + p.remaining
    cdef bytes result
    cdef char* dst
    want = <Py_ssize_t>left if size < 0 or size > left else size
    if want <= 0:
        return b""
    result = PyBytes_FromStringAndSize(NULL, want)
    dst = PyBytes_AS_STRING(result)
    while got < want:
        if self.dlen:
            n = self.dlen if self.dlen < want - got else want - got
            memcpy(dst + got, self.dptr, n)
            self.dptr += n
            self.dlen -= n
            got += n
        elif self.cur_len:
            _decode_some(self)
        else:
            n = _recv_blocking(self, dst + got, want - got)
            p.decode_body(dst + got, n, &out_n)     # counts them (in place)
            got += n
    return result


cdef object body_readline(Connection self, Py_ssize_t size):
    cdef list parts = []
    cdef Py_ssize_t got = 0, n
    cdef char* nl
    if self.spool is not None:
        return self.spool.readline(size)
    while size < 0 or got < size:
        if not _fill(self):
            break
        n = self.dlen
        if size >= 0 and n > size - got:
            n = size - got
        nl = <char*>memchr(self.dptr, 10, n)
        if nl != NULL:
            parts.append(_take(self, nl - self.dptr + 1))
            break
        parts.append(_take(self, n))
        got += n
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


cdef bint _discard_body(Connection self) except -1:
    """Discard unread body bytes in the window. True once the body is done."""
    cdef Py_ssize_t used, out_n
    self.dlen = 0
    while not self.parser.body_done and self.cur_len > 0:
        try:
            used = self.parser.decode_body(self.cur, self.cur_len, &out_n)
        except HttpParserError:
            self.close_after = True
            self.cur_len = 0
            return True
        self.cur += used
        self.cur_len -= used
        self.drain_budget -= out_n
        if used == 0:
            break
    if self.parser.body_done:
        self.parser.reset()
        return True
    if self.state == ST_DRAIN and self.drain_budget < 0:
        self.close_after = True
        self.cur_len = 0
        return True
    return False
