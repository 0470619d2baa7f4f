# Unit of fastwsgi/_connection.pyx (included): framing and sending a response.
#
# Contract:
# - The response-header policy lives here, in _frame_head, and only here: framing
#   (Content-Length, chunked, or close-delimited for HTTP/1.0), Connection: close /
#   keep-alive, and what HEAD and bodiless statuses get (the writer's RespInfo.no_body
#   says which statuses carry no body; Date and Server come from write_head_start).
# - _write_body frames one body chunk (truncating past the app's Content-Length);
#   large chunks are queued without a copy (self.big) and written with writev, or,
#   when the body cache knows the chunk (_conn_cache), sent from its memfd with
#   sendfile.  Nothing is framed behind a pending big chunk or sendfile: it is
#   flushed first.  A head queued in front of a sendfile is sent with MSG_MORE, so
#   head and body leave in the same segments.  Before a large sendfile the socket
#   gets TCP_NOTSENT_LOWAT (_send_lowat), once per connection.
# - _flush writes without blocking (True: all out); _flush_blocking waits up to
#   io_timeout per poll, with the watchdog paused meanwhile (waiting for a slow
#   client is not app time).  Once the connection is abandoned (app_timed_out) every
#   send raises ClientDisconnected and writes nothing.
# - error_page(code, reason) is a complete, closing error response; _queue_continue
#   queues the interim 100 Continue (once per request).

cdef dict _ERROR_PAGES = {}


cdef bytes error_page(int code, str reason):
    """A complete, closing error response (cached per status)."""
    cdef bytes page = _ERROR_PAGES.get(code)
    if page is None:
        body = f"{code} {reason}\n".encode("latin-1")
        page = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1") + body
        _ERROR_PAGES[code] = page
    return page


cdef bint _queue_continue(Connection self) except -1:
    """Queue 100 Continue if the client waits for it before it sends its body
    (RFC 9110 §10.1.1) and it was not sent yet.  True if queued."""
    if not self.parser.expect_continue or self.sent_continue:
        return False
    self.sent_continue = True
    ob_write(&self.out, PyBytes_AS_STRING(CONTINUE), PyBytes_GET_SIZE(CONTINUE))
    return True


cdef int _frame_head(Connection self) except -1:
    """The head of the current response, after the app's status and headers: the
    one place that decides framing and the Connection header."""
    cdef RespInfo info
    cdef Py_ssize_t mark = self.out.len
    cdef RequestParser p = self.parser
    if self.status is None:
        raise ResponseError("the application did not call start_response()")
    try:
        write_head_start(&self.out, self.status, self.headers, self.st.server_line, &info)
    except BaseException:
        self.out.len = mark
        raise
    if not self.abandoned:
        # (once app_timed_out() answered 504, this head goes nowhere: the 504 is
        # what the client got, and what the metrics and the access log count)
        self.status_code = info.status_code
    self.no_body = info.no_body or p.is_head
    if info.content_length >= 0:
        self.remaining = info.content_length
    elif info.no_body:
        pass
    elif self.known_length >= 0:
        write_content_length(&self.out, self.known_length)
        self.remaining = self.known_length
    elif p.is_head:
        pass
    elif p.http11:
        ob_write(&self.out, b"Transfer-Encoding: chunked\r\n", 28)
        self.chunked = True
    else:
        self.close_after = True          # HTTP/1.0: the body ends at close
    if info.app_close or not p.keep_alive or self.st.keep_alive <= 0:
        self.close_after = True
        self.client_closes = not p.keep_alive and p.body_done
    elif self.st.stop_requested or (self.st.max_requests and
                                    self.st.requests + 1 >= self.st.max_requests):
        # the server is stopping (or will after this request): say so now;
        # a connection whose response promised keep-alive is only closed
        # once idle, by the loop's grace sweep
        self.close_after = True
    elif not p.body_done and (
            (p.expect_continue and not self.sent_continue)
            or (p.body_kind == BODY_LENGTH and p.remaining > DRAIN_BUDGET)):
        # answered before the body was read, and it will not be drained: say we
        # close (RFC 9110 §10.1.1), or the client would reuse a dead connection
        self.close_after = True
    if self.close_after:
        ob_write(&self.out, b"Connection: close\r\n\r\n", 21)
    elif not p.http11:
        ob_write(&self.out, b"Connection: keep-alive\r\n\r\n", 26)
    else:
        ob_write(&self.out, b"\r\n", 2)
    self.head_framed = True
    return 0


cdef int _write_body(Connection self, bytes data) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if not self.head_framed:
        _frame_head(self)
    self.body_bytes += n
    if self.no_body:
        return 0
    if self.sf_fd >= 0:
        _flush_blocking(self)        # (the pump and write() flush before this)
    if self.remaining >= 0:
        if n > self.remaining:
            self.st.logger.error(
                "%s %s: the application sent more than its Content-Length; truncated",
                self.environ.get("REQUEST_METHOD"), self.environ.get("RAW_URI"))
            n = self.remaining
            self.close_after = True
        self.remaining -= n
        if n == 0:
            return 0
    if self.chunked:
        if n >= BIG_CHUNK:
            write_chunk_header(&self.out, n)
            _queue_big(self, data, n)
            self.crlf_after_big = True
        else:
            write_chunk(&self.out, PyBytes_AS_STRING(data), n)
    elif n >= BIG_CHUNK:
        if n < CACHE_MIN or self.st.body_cache is None or not _queue_cached(self, data, n):
            _queue_big(self, data, n)
    else:
        ob_write(&self.out, PyBytes_AS_STRING(data), n)
    return 0


cdef int _queue_big(Connection self, bytes data, Py_ssize_t n) except -1:
    """Hand a large chunk to the kernel without copying it: it waits in self.big
    (behind what out already holds) and is written with writev."""
    if self.big is not None:
        _flush_blocking(self)
    if n < PyBytes_GET_SIZE(data):
        data = data[:n]            # truncated to the declared Content-Length
    self.big = data
    self.big_off = 0
    return 0


cdef bint _queue_cached(Connection self, bytes data, Py_ssize_t n) except -1:
    """Queue the first n bytes of data from the body cache's memfd, to be sent
    with sendfile; False if the cache does not hold data (yet)."""
    cdef CachedBody body = self.st.body_cache.lookup(data)
    if body is None:
        return False
    if self.big is not None:
        _flush_blocking(self)
    _send_lowat(self)
    self.sf_fd = body.fd
    self.sf_off = 0
    self.sf_left = n
    self.sf_hold = body
    return True


cdef bint _try_sendfile(Connection self, FileWrapper wrapper) except -1:
    """Serve a wrapped regular file with sendfile(2); False: iterate it instead."""
    f = wrapper.filelike
    fileno = getattr(f, "fileno", None)
    if fileno is None:
        return False
    try:
        fd = fileno()
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            return False
        offset = f.tell() if hasattr(f, "tell") else 0
    except (OSError, ValueError, AttributeError):
        return False
    size = max(0, st.st_size - offset)
    self.known_length = size
    _frame_head(self)
    if self.remaining >= 0:
        size = min(size, self.remaining)
        if size < self.remaining:
            self.close_after = True       # the file is shorter than declared
        self.remaining -= size
    self.body_bytes = size
    if not self.no_body and size > 0:
        if size >= LOWAT_FROM:
            _send_lowat(self)
        self.sf_fd = fd
        self.sf_off = offset
        self.sf_left = size
    return True


cdef void _send_lowat(Connection self) noexcept:
    """Keep at most SEND_LOWAT bytes of this connection's output unsent in the
    kernel (TCP_NOTSENT_LOWAT; once per connection, before its first large
    sendfile).  The rest stays in the file until the peer's window opens, and our
    own sendfile, woken by EPOLLOUT, sends it: on the server's CPU, instead of the
    ACK of the client's read transmitting it on the client's.  Measured with wrk
    on loopback (bench/RESULTS.md, issue 15): about 1.15x the 1 MiB responses/s,
    at about the same server CPU per response.  (A Unix socket refuses the
    option: nothing to do there.)"""
    cdef int v = SEND_LOWAT
    if not self.send_lowat:
        self.send_lowat = True
        setsockopt(self.fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v))


cdef bint _flush(Connection self) except -1:
    """Write queued output without blocking. True when everything is out."""
    cdef ssize_t n
    cdef iovec iov[2]
    cdef Py_ssize_t blen
    cdef off_t off
    if self.abandoned:
        raise ClientDisconnected("the request timed out: its response was abandoned")
    while True:
        if self.out.len and self.big is not None:
            blen = PyBytes_GET_SIZE(self.big) - self.big_off
            iov[0].iov_base = self.out.data
            iov[0].iov_len = self.out.len
            iov[1].iov_base = PyBytes_AS_STRING(self.big) + self.big_off
            iov[1].iov_len = blen
            n = writev(self.fd, iov, 2)
            if n > 0:
                self.resp_sent = True
                if n >= self.out.len:
                    n -= self.out.len
                    ob_consume(&self.out, self.out.len)
                    _advance_big(self, n)
                else:
                    ob_consume(&self.out, n)
                continue
        elif self.out.len:
            # in front of a sendfile (a head): MSG_MORE, so the kernel sends it
            # with the file's first bytes rather than as a segment of its own
            n = send(self.fd, self.out.data, self.out.len,
                     MSG_NOSIGNAL | MSG_MORE if self.sf_fd >= 0 else MSG_NOSIGNAL)
            if n > 0:
                self.resp_sent = True
                ob_consume(&self.out, n)
                continue
        elif self.big is not None:
            blen = PyBytes_GET_SIZE(self.big) - self.big_off
            n = send(self.fd, PyBytes_AS_STRING(self.big) + self.big_off, blen, MSG_NOSIGNAL)
            if n > 0:
                self.resp_sent = True
                _advance_big(self, n)
                continue
        elif self.sf_fd >= 0:
            off = self.sf_off
            n = sendfile(self.fd, self.sf_fd, &off, min(self.sf_left, 1 << 22))
            if n > 0:
                self.resp_sent = True
                self.sf_off = off
                self.sf_left -= n
                if self.sf_left <= 0:
                    self.sf_fd = -1
                    self.sf_hold = None
                continue
            if n == 0:
                # the file shrank under us: the response cannot be completed
                self.sf_fd = -1
                self.sf_hold = None
                self.close_after = True
                continue
        else:
            return True
        if n < 0:
            if errno == EAGAIN:
                return False
            if errno == EINTR:
                continue
            raise ClientDisconnected(f"send failed: {os.strerror(errno)}")


cdef void _advance_big(Connection self, Py_ssize_t n) noexcept:
    self.big_off += n
    if self.big_off >= PyBytes_GET_SIZE(self.big):
        self.big = None
        self.big_off = 0
        if self.crlf_after_big:
            self.crlf_after_big = False
            ob_write(&self.out, b"\r\n", 2)


cdef int _flush_blocking(Connection self) except -1:
    """Flush, waiting for the socket up to io_timeout at a time."""
    cdef pollfd pfd
    cdef int r
    cdef int ms = <int>(self.st.io_timeout * 1000)
    cdef double blocked
    while not _flush(self):
        pfd.fd = self.fd
        pfd.events = POLLOUT
        blocked = _watch_block(self)
        with nogil:
            r = poll(&pfd, 1, ms)
        _watch_unblock(self, blocked)
        if r == 0:
            raise ClientDisconnected("timed out writing to the client")
        if r < 0 and errno != EINTR:
            raise ClientDisconnected("poll failed")
    return 0
