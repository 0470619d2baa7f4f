# Unit of fastwsgi/_connection.pyx (included): the connection's state machine and
# its owner; the loop's entry points.
#
# Contract:
# - state (ConnState): ST_READ (reading heads) -> ST_BODY (receiving a body; the app
#   is called once it is whole) -> the app runs: inline, or ST_APP on an app thread
#   -> the response is sent: at once, or ST_WRITE while the socket is full (the
#   iterable is paused and resumed by on_writable) -> ST_READ for the next request;
#   ST_DRAIN (stream_body: discarding an unread body), ST_LINGER (closing: write side
#   shut, input discarded until EOF), ST_CLOSED.
# - owner (Owner): OWNER_LOOP, or OWNER_APP from the moment the request is handed to
#   an app thread (_dispatch_request) until the loop takes it back (Loop._resume_done
#   sets OWNER_LOOP, then calls resume()).  The loop calls on_readable/on_writable/
#   on_timeout/close only while it owns the connection; an EPOLLERR/HUP it sees
#   meanwhile only sets conn.hangup, which the app thread's pump acts on (R_ABORT)
#   and resume() closes on.
# - app_timed_out() (issue 11's watchdog, from any Python thread with the GIL): the
#   app thread's request passed --timeout: answer 504 if nothing of the response was
#   framed, shut the socket both ways and mark the connection abandoned: the app
#   thread's later I/O raises ClientDisconnected and writes nothing.  The fd is
#   closed only when the owner hands the connection back, so a reused fd number never
#   receives a stale thread's bytes.
# - The watchdog slot (ServerState.set_watchdog) holds the start of the app's time
#   while the app or its iterable runs; it is cleared while the thread waits for the
#   client (_watch_block / _watch_unblock shift the start by the time waited).


@cython.final
cdef class Connection:

    """One client connection; its state machine (self.state) and its owner
    (self.owner) are the unit's contract above."""

    def __cinit__(self):
        self.fd = -1
        self.sf_fd = -1
        self.spool_fd = -1

    def __init__(self, ServerState st, int fd, str remote_addr, str remote_port):
        self.st = st
        self.fd = fd
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.base_environ = st.base_environ     # the loop sets its listener's
        self.parser = RequestParser(st.limits, st.script_name)
        self.state = ST_READ
        self.owner = OWNER_LOOP
        self.interest = WANT_READ
        self.deadline = now() + st.header_timeout
        if st.metrics is not NULL:
            add_i(&st.metrics.connections, 1)

    def __dealloc__(self):
        if (self.state != ST_CLOSED and self.st is not None
                and self.st.metrics is not NULL):
            add_i(&self.st.metrics.connections, -1)
        free(self.ibuf)
        ob_free(&self.out)
        if self.spool_fd >= 0:
            c_close(self.spool_fd)
        if self.fd >= 0:
            c_close(self.fd)

    # --- the loop's entry points -------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef ssize_t n
        cdef Py_ssize_t end
        if self.state == ST_LINGER:
            n = recv(self.fd, self.st.rbuf, self.st.rbuf_size, 0)
            if n > 0 or (n < 0 and (errno == EAGAIN or errno == EINTR)):
                return WANT_READ
            return WANT_CLOSE
        if self.cur_len == 0:
            n = recv(self.fd, self.st.rbuf, self.st.rbuf_size, 0)
            if n > 0:
                self.cur = self.st.rbuf
                self.cur_len = n
        else:
            # unconsumed input waits in ibuf, after any received body
            # ([decoded body][raw input]): append to it
            end = (self.cur - self.ibuf) + self.cur_len
            if self.icap - end < 4096:
                _grow_ibuf(self, end + 16384)
                end = (self.cur - self.ibuf) + self.cur_len
            n = recv(self.fd, self.ibuf + end, self.icap - end, 0)
            if n > 0:
                self.cur_len += n
        if n > 0 and self.st.clock_requests:
            self.t_recv = now()
        if n == 0:
            if self.head_started or self.state == ST_DRAIN or self.state == ST_BODY:
                self.st.logger.debug("client %s closed mid-request", self.remote_addr)
            return WANT_CLOSE
        if n < 0:
            if errno == EAGAIN or errno == EINTR:
                return self.interest
            return WANT_CLOSE
        if self.state == ST_DRAIN:
            self.deadline = now() + self.st.io_timeout
            if not _discard_body(self):
                _save_input(self)
                return WANT_READ
            self.state = ST_READ
        return _serve(self)

    cdef int on_writable(self) except -1:
        cdef int rc
        try:
            if not _flush(self):
                self.deadline = now() + self.st.io_timeout
                return WANT_WRITE
        except ClientDisconnected:
            _end_response(self, False)
            return WANT_CLOSE
        if self.state == ST_LINGER:
            return _linger(self)
        if self.iterator is not None:
            if self.st.watchdog != NULL:
                _watch(self, True)
            rc = _pump(self)
            if rc == R_PAUSED:
                return _pause(self)
            if rc == R_ABORT:
                return _abort(self)
            if rc == R_DONE:
                _end_response(self, True)
        if self.state == ST_DRAIN or self.state == ST_BODY:
            return WANT_READ
        self.state = ST_READ
        return _serve(self)

    cdef int on_timeout(self) except -1:
        if (self.state == ST_READ and self.head_started) or self.state == ST_BODY:
            # a client that trickles its head or its body: say so, best effort, and close
            page = error_page(408, "Request Timeout")
            send(self.fd, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page),
                 MSG_NOSIGNAL | MSG_DONTWAIT)
            if self.st.metrics is not NULL:
                record_reject(self.st.metrics, 408, now() - self.t_head)
            self.st.logger.debug("%s timeout for %s",
                                 "body" if self.state == ST_BODY else "header",
                                 self.remote_addr)
        return WANT_CLOSE

    cdef int on_resume(self) except -1:
        return _resume_from_app(self)

    cdef bint is_idle(self) noexcept:
        """Between requests with nothing pending: safe to close on shutdown."""
        return (self.state == ST_READ and not self.head_started and self.cur_len == 0
                and self.out.len == 0 and self.big is None and self.sf_fd < 0)

    cdef void close(self) noexcept:
        if self.state == ST_CLOSED:
            return
        self.state = ST_CLOSED
        if self.st.metrics is not NULL:
            add_i(&self.st.metrics.connections, -1)
            if self.environ is not None:     # closed mid-response (timeout, stop)
                add_i(&self.st.metrics.in_flight, -1)
        try:
            _close_iterable(self)
        except BaseException:
            pass
        _detach_input(self)
        _retire_responder(self, True)
        self.environ = None
        self.big = None
        self.sf_fd = -1
        self.sf_hold = None
        free(self.ibuf)
        self.ibuf = NULL
        self.icap = 0
        self.cur_len = 0
        self.dlen = 0
        ob_free(&self.out)
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    def send_deferred(self):
        """The loop's end-of-batch send of what _serve deferred; returns the interest."""
        self.deferred = False
        if self.state != ST_READ:
            return self.interest if self.state != ST_CLOSED else WANT_CLOSE
        return _flush_then(self, WANT_READ)

    def run_app(self, int slot):
        """Serve the parsed request from an app thread (threaded workers), which owns
        the connection meanwhile: blocking I/O on its socket is fine here, the loop
        does not touch it.  The caller hands the connection back to the loop
        afterwards (Loop.handback).  The iterable is closed here, on this thread."""
        cdef Block* m = self.st.metrics
        self.slot = slot
        self.blocking_io = True
        self.app_rc = R_ABORT
        if m is not NULL:
            add_i(&m.queued, -1)
            add_i(&m.busy, 1)
        try:
            self.app_rc = _handle_request(self)
        finally:
            self.blocking_io = False
            if m is not NULL:
                add_i(&m.busy, -1)
            if self.app_rc == R_ABORT:
                # end the response on this thread (its iterable's close() too)
                _end_response(self, False)

    def resume(self):
        """Back on the loop thread after run_app(): returns the interest (Want)."""
        return _resume_from_app(self)

    def app_timed_out(self):
        """The app thread's request passed --timeout (call with the GIL, from any
        thread).  -1: no app thread owns the connection.  Else shut the socket both
        ways and abandon the connection (its app thread's later I/O raises
        ClientDisconnected and writes nothing); 504 if a 504 page could be sent
        first (no byte of the response had been sent), else 0."""
        cdef bytes page
        cdef int code = 0
        if self.owner != OWNER_APP or self.fd < 0 or self.state == ST_CLOSED:
            return -1
        if self.abandoned:
            return 0
        self.abandoned = True
        if self.st.metrics is not NULL:
            add_u(&self.st.metrics.timeouts, 1)
        if not self.resp_sent:
            # nothing of this response reached the socket: drop what it framed (the
            # output before resp_mark belongs to earlier responses) and say 504
            self.out.len = self.resp_mark
            self.big = None
            self.crlf_after_big = False
            self.sf_fd = -1
            page = error_page(504, "Gateway Timeout")
            ob_write(&self.out, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page))
            if send(self.fd, self.out.data, self.out.len,
                    MSG_NOSIGNAL | MSG_DONTWAIT) == self.out.len:
                code = 504
                self.status_code = 504   # what the metrics and the access log count
            self.out.len = 0
        shutdown(self.fd, SHUT_RDWR)
        return code


cdef int _serve(Connection self) except -1:
    """Serve every complete request in the window, then send what is queued."""
    cdef Py_ssize_t n
    cdef int want
    cdef RequestParser p
    while self.cur_len > 0 and not self.close_after:
        if self.state == ST_BODY:
            try:
                if not _receive_body(self):
                    break                # still arriving
            except (HttpParserError, OSError) as exc:
                return _reject(self, exc)        # bad chunk, too large: the app never runs
            want = _dispatch_request(self)
            if want != WANT_MORE:
                return want
            continue
        if not self.head_started:
            self.head_started = True
            self.t_head = self.t_recv
            self.deadline = now() + self.st.header_timeout
        try:
            if self.proxy_pending:
                n = _proxy_header(self)
                if n == 0:
                    break
                self.cur += n
                self.cur_len -= n
                self.proxy_pending = False
                continue
            if self.protocol == PROTO_UWSGI:
                n = parse_uwsgi_head(self.parser, self.cur, self.cur_len,
                                     self.base_environ)
            else:
                n = self.parser.parse_head(self.cur, self.cur_len, self.base_environ)
        except HttpParserError as exc:
            return _reject(self, exc)
        if n == 0:
            break
        self.cur += n
        self.cur_len -= n
        self.head_started = False
        p = self.parser
        if not p.body_done and (not self.st.stream_body or (
                p.body_kind == BODY_LENGTH and p.remaining <= PREBUFFER
                and not p.expect_continue)):
            # receive the whole body here, where waiting blocks no one, before
            # the app is called (with stream_body: only a small one, as before)
            _start_body(self)
            try:
                if not _receive_body(self):
                    _queue_continue(self)      # goes out with this round's send
                    break
            except (HttpParserError, OSError) as exc:
                return _reject(self, exc)
        want = _dispatch_request(self)
        if want != WANT_MORE:
            return want
    _save_input(self)
    if self.close_after:
        return _linger(self)
    if self.cur_len == 0 and self.state == ST_READ:
        self.deadline = now() + (self.st.keep_alive if self.st.keep_alive > 0
                                 else self.st.header_timeout)
    if (self.out.len and self.out.len <= DEFER_LIMIT and self.state == ST_READ
            and self.st.deferred is not None):
        # Responses framed while the loop works through one epoll batch go out
        # together at its end (Loop._flush_deferred): a client that sleeps
        # between responses is then woken once per burst, not once per
        # response -- a cross-CPU wakeup costs more than the send.  Only small
        # output waits: a large one amortizes its wakeup, and holding it for
        # the whole batch would only cost memory and cache.
        if not self.deferred:
            self.deferred = True
            self.st.deferred.append(self)
        return WANT_READ
    return _flush_then(self, WANT_READ)


cdef int _dispatch_request(Connection self) except -1:
    """Run the app for the parsed request: WANT_MORE to go on serving, else the
    interest."""
    cdef int rc
    if self.st.dispatch is not None:
        # threaded worker: the app runs in a pool thread, which owns the
        # connection until it hands it back (_resume_from_app)
        _save_input(self)
        self.state = ST_APP
        self.owner = OWNER_APP
        self.deadline = 1e300        # the app's time is --timeout's business
        if self.st.metrics is not NULL:
            add_i(&self.st.metrics.queued, 1)
        self.st.dispatch(self)
        return WANT_NONE
    if self.st.metrics is NULL:
        return _after_request(self, _handle_request(self))
    add_i(&self.st.metrics.busy, 1)      # the loop thread runs the app
    try:
        rc = _handle_request(self)
    finally:
        add_i(&self.st.metrics.busy, -1)
    return _after_request(self, rc)


cdef int _after_request(Connection self, int rc) except -1:
    """What follows a request: WANT_MORE to serve the next one, else the interest."""
    if rc == R_PAUSED:
        return _pause(self)
    if rc == R_ABORT:
        return _abort(self)
    if self.state == ST_DRAIN:
        _save_input(self)
        return _flush_then(self, WANT_READ)
    if self.big is not None or self.sf_fd >= 0 or self.out.len >= HIGH_WATER:
        # a large body is queued without a copy: nothing may be framed after
        # it until it is out, so send now and read on only once it is
        try:
            if not _flush(self):
                return _pause(self)
        except ClientDisconnected:
            return WANT_CLOSE
    return WANT_MORE


cdef Py_ssize_t _proxy_header(Connection self) except -1:
    cdef list found = []
    if not self.trusted:
        # a PROXY header names the client: only a peer of the listener's
        # trust list may send one (fastwsgi/listeners.py)
        raise UntrustedPeer("PROXY protocol header from a peer not in "
                            "--forwarded-allow-ips")
    cdef Py_ssize_t n = parse_proxy_header(self.cur, self.cur_len, found)
    if n and found:
        self.remote_addr, self.remote_port = found[0], found[1]
    return n


cdef int _resume_from_app(Connection self) except -1:
    cdef int want
    if self.state == ST_CLOSED or self.abandoned or self.hangup:
        # timed out, or the client reset while the app ran: nothing more to say
        return WANT_CLOSE
    if self.state == ST_APP:
        self.state = ST_READ
    want = _after_request(self, self.app_rc)
    if want != WANT_MORE:
        return want
    return _serve(self)


cdef void _watch(Connection self, bint busy) noexcept:
    if self.st.watchdog != NULL and self.slot < self.st.watchdog_slots:
        if busy:
            self.watch_start = now()
            self.st.watchdog[self.slot] = self.watch_start
        else:
            self.watch_start = 0
            self.st.watchdog[self.slot] = 0.0


cdef double _watch_block(Connection self) noexcept:
    """The app's thread starts waiting for the client: not app time."""
    if self.st.watchdog == NULL or self.watch_start == 0 or self.slot >= self.st.watchdog_slots:
        return 0
    self.st.watchdog[self.slot] = 0.0
    return now()


cdef void _watch_unblock(Connection self, double blocked) noexcept:
    if blocked == 0:
        return
    self.watch_start += now() - blocked
    self.st.watchdog[self.slot] = self.watch_start


cdef int _flush_then(Connection self, int want) except -1:
    try:
        if _flush(self):
            if self.out.cap and self.cur_len == 0:
                ob_free(&self.out)   # idle: hold no buffer between requests
            return want
    except ClientDisconnected:
        return WANT_CLOSE
    # the client is slow to read: wait for it before reading anything more
    if self.state == ST_READ:
        self.state = ST_WRITE
    self.deadline = now() + self.st.io_timeout
    return WANT_WRITE


cdef int _reject(Connection self, exc) except -1:
    """A malformed request (an HttpParserError: its status), or a body the server
    could not keep (an OSError of its spool file: 500): Connection: close,
    lingering close."""
    cdef bytes page
    cdef int code = 500
    if isinstance(exc, HttpParserError):
        code = exc.status_code
        page = error_page(code, exc.reason)
        self.st.logger.debug("rejected request from %s: %s %s", self.remote_addr,
                             exc.status_code, exc)
    else:
        page = error_page(500, "Internal Server Error")
        self.st.logger.error("cannot receive a request body from %s: %s",
                             self.remote_addr, exc)
    if self.st.metrics is not NULL:
        # heads and bodies alike (a body's 400/408/413 is answered before the app)
        record_reject(self.st.metrics, code, now() - self.t_head)
    ob_write(&self.out, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page))
    self.cur_len = 0
    _detach_input(self)            # a body received so far (spool file included)
    self.close_after = True
    self.client_closes = False
    return _linger(self)


cdef int _linger(Connection self) except -1:
    """Send what is queued, shut the write side, discard input until EOF."""
    try:
        if not _flush(self):
            self.state = ST_LINGER
            self.deadline = now() + self.st.io_timeout
            return WANT_WRITE
    except ClientDisconnected:
        return WANT_CLOSE
    if self.client_closes and self.cur_len == 0:
        # The client said it closes (Connection: close, or HTTP/1.0 without
        # keep-alive), its body is read and nothing follows it in our buffer:
        # it may send nothing more (RFC 9112 §9.6), so close at once, as nginx
        # does, without a recv to look for more. Only a client that breaks
        # that rule can meet a reset.
        return WANT_CLOSE
    shutdown(self.fd, SHUT_WR)
    self.state = ST_LINGER
    self.cur_len = 0
    _save_input(self)
    self.deadline = now() + LINGER_SECONDS
    return WANT_READ


cdef int _pause(Connection self) except -1:
    """The socket is full mid-response: keep the iterator, wait for writable."""
    if self.st.watchdog != NULL:
        _watch(self, False)       # waiting for a slow client is not a hung app
    _save_input(self)
    self.state = ST_WRITE
    self.deadline = now() + self.st.io_timeout
    return WANT_WRITE


cdef int _abort(Connection self) except -1:
    """The response cannot be completed: send what is framed, then close."""
    _end_response(self, False)
    self.close_after = True
    self.client_closes = False
    self.cur_len = 0
    return _linger(self)
