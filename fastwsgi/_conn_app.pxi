# Unit of fastwsgi/_connection.pyx (included): calling the application for one
# request, pumping its iterable, ending the response.
#
# Contract:
# - _handle_request(conn) runs on the thread that owns the connection (the loop, or
#   the app thread it was handed to) with the request's body already received
#   (unless stream_body).  It returns an R_* outcome: R_DONE (response framed and
#   ended), R_PAUSED (the socket is full: on_writable resumes _pump), R_ENDED (an
#   error page was framed and the response ended) or R_ABORT (close the connection).
# - An exception from the app before the head is framed is a 500 (logged); after
#   it, R_ABORT.  fastwsgi.errors.RequestTimeout (raised asynchronously in the thread
#   by the --timeout watchdog) is a 504 before the head is framed, else R_ABORT; the
#   loop goes on serving.  A hang-up the loop recorded (conn.hangup), or an abandoned
#   connection (app_timed_out), ends the pump with R_ABORT at its next chunk.
# - _end_response closes the iterable exactly once (on the owner's thread), finishes
#   the framing, logs, drops the request's body (spool file included) and retires
#   the request's WSGI objects.

cdef int _handle_request(Connection self) except -1:
    """Call the app for the parsed head. 1: done, 0: paused, -1: abort."""
    cdef RequestParser p = self.parser
    cdef dict environ = p.environ
    cdef InputStream inp = InputStream.__new__(InputStream)
    cdef object result
    cdef double t, queue
    inp.conn = self
    if self.protocol == PROTO_HTTP:
        environ[K_REMOTE_ADDR] = self.remote_addr
        environ[K_REMOTE_PORT] = self.remote_port
    else:
        # uwsgi: the proxy's packet names the client; the socket peer is the
        # proxy (the base holds "" placeholders for both)
        if not environ.get(K_REMOTE_ADDR):
            environ[K_REMOTE_ADDR] = self.remote_addr
        if not environ.get(K_REMOTE_PORT):
            environ[K_REMOTE_PORT] = self.remote_port
    environ[K_INPUT] = inp
    if self.st.clock_requests:
        # queue time: from the head's first byte to the app call, so it includes
        # receiving the body (docs/observability.md)
        t = now()
        queue = t - self.t_head
        if queue < 0 or self.t_head == 0:
            self.t_head = t          # not read from a socket (in-process callers)
            queue = 0.0
        self.t_start = t
        if self.st.timing_environ:
            environ[K_REQUEST_START] = wall_time() - queue
            environ[K_QUEUE_TIME] = queue
    self.environ = environ
    self.input = inp
    self.status = None
    self.headers = None
    self.head_framed = False
    self.chunked = False
    self.no_body = False
    self.resp_sent = False
    self.resp_mark = self.out.len
    self.remaining = -1
    self.known_length = -1
    self.body_bytes = 0
    self.status_code = 0
    self.app_iter = None
    self.iterator = None
    if self.st.metrics is not NULL:
        add_i(&self.st.metrics.in_flight, 1)
    if self.trusted and self.st.forwarded is not None and (
            p.forwarded or self.protocol != PROTO_HTTP):
        # over HTTP the parser flags the fields the handler reads, so most
        # requests skip its Python call; a uwsgi packet's vars are not flagged
        self.st.forwarded(environ)
    if self.st.watchdog != NULL:
        _watch(self, True)
    try:
        if self.resp is None:
            self.resp = Responder.__new__(Responder)
            self.resp.conn = self
            self.sr_bound = self.resp.start_response
        result = self.st.app(environ, self.sr_bound)
        self.app_iter = result
        if PyList_CheckExact(result) and PyList_GET_SIZE(result) == 1 and not self.head_framed:
            # the common case: one bytes object, framed with its length
            body = <object>PyList_GET_ITEM(result, 0)
            if not PyBytes_CheckExact(body):
                raise ResponseError(f"response body items must be bytes, not {type(body).__name__}")
            self.known_length = PyBytes_GET_SIZE(body)
            if self.known_length:
                _write_body(self, body)
            if not self.head_framed:
                _frame_head(self)
        elif type(result) is FileWrapper and not self.head_framed and _try_sendfile(self, result):
            # (after write() the head is out, maybe chunked: the file is iterated)
            # the file stays open until sendfile is done: end the response then
            if self.sf_fd >= 0 and not _flush(self):
                if not self.blocking_io:
                    self.iterator = iter(_EMPTY)
                    return R_PAUSED
                _flush_blocking(self)
        else:
            if result is None:
                raise ResponseError("the application returned None, not an iterable")
            self.iterator = iter(result)
            rc = _pump(self)
            if rc != R_DONE:
                return rc
    except Exception as exc:
        return _app_error(self, exc)
    except RequestTimeout:
        return _timed_out(self)
    except SystemExit as exc:
        return _app_exit(self, exc)
    _end_response(self, True)
    return R_DONE


cdef int _app_exit(Connection self, exc) except -1:
    """The app raised SystemExit (sys.exit(), raise SystemExit) in a request: an app
    error like any other (500, logged), never the end of the server; a worker then
    asks to be replaced (st.on_app_exit), as the app evidently wanted to stop.  Caught
    here rather than by a Python wrapper around the app: no frame per request."""
    self.iterator = None
    if self.st.on_app_exit is not None:
        try:
            self.st.on_app_exit()
        except Exception as err:
            self.st.logger.error("on_app_exit failed", exc_info=err)
    err = ApplicationExit(f"the application raised SystemExit({exc.code!r})")
    err.__cause__ = exc
    return _app_error(self, err)


cdef int _timed_out(Connection self) except -1:
    """RequestTimeout reached the app's thread: 504 if nothing is framed yet."""
    self.iterator = None
    self.st.logger.error("%s %s: the request timed out (--timeout)",
                         self.environ.get("REQUEST_METHOD"), self.environ.get("RAW_URI"))
    if not self.abandoned and self.st.metrics is not NULL:
        add_u(&self.st.metrics.timeouts, 1)  # (app_timed_out counted an abandoned one)
    if self.head_framed or self.abandoned:
        return R_ABORT
    return _error_response(self, 504, "Gateway Timeout")


cdef int _app_error(Connection self, exc) except -1:
    if isinstance(exc, ClientDisconnected):
        self.st.logger.debug("client %s disconnected: %s", self.remote_addr, exc)
        return R_ABORT
    if isinstance(exc, HttpParserError) and not self.head_framed:
        # the streamed body the app was reading is malformed (a bad chunk, too
        # large): its status is the answer
        if self.st.metrics is not NULL:
            note_reject(self.st.metrics, exc.status_code)
    else:
        self.st.logger.error("Error handling request %s %s",
                             self.environ.get("REQUEST_METHOD"),
                             self.environ.get("RAW_URI"), exc_info=exc)
        if self.head_framed:
            return R_ABORT
        return _error_response(self, 500, "Internal Server Error")
    return _error_response(self, exc.status_code, exc.reason)


cdef int _error_response(Connection self, int code, str reason) except -1:
    """Answer the request with a closing error page instead of the app's response."""
    cdef bytes page = error_page(code, reason)
    self.status_code = code
    self.status = None
    if self.parser.is_head:
        # an answer to HEAD has no body (RFC 9110 §9.3.2), an error page neither
        page = page[:page.find(b"\r\n\r\n") + 4]
    ob_write(&self.out, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page))
    self.head_framed = True
    self.chunked = False
    self.remaining = -1
    self.close_after = True
    _end_response(self, True)
    return R_ENDED


cdef int _pump(Connection self) except -1:
    """Iterate the response. 1: finished, 0: paused (socket full), -1: abort."""
    cdef object chunk
    cdef double t0 = 0
    cdef bint urgent, first
    # Small chunks are coalesced (one send for many) -- unless the iterable is a
    # generator that pauses between yields (server-sent events, progress): every
    # chunk that took over a millisecond to produce is sent at once, and so is
    # a first chunk that more are to follow (the length is unknown, or not yet
    # reached), so no chunk waits for the next one.  A first chunk that
    # completes its Content-Length (Flask's and Django's responses: lazy
    # iterables over one buffer) waits for the batch's one send like any other.
    cdef bint lazy = not (PyList_CheckExact(self.app_iter) or PyTuple_CheckExact(self.app_iter))
    while True:
        if self.hangup or self.abandoned:
            # the client is gone (the loop saw a reset) or the request timed out
            self.iterator = None
            return R_ABORT
        try:
            if lazy:
                t0 = now()
            chunk = next(self.iterator, _DONE)
            if chunk is _DONE:
                break
            if not PyBytes_CheckExact(chunk):
                if isinstance(chunk, bytes):
                    chunk = bytes(chunk)
                else:
                    raise ResponseError(
                        f"response body items must be bytes, not {type(chunk).__name__}")
            if PyBytes_GET_SIZE(chunk) == 0:
                continue
            first = self.body_bytes == 0
            _write_body(self, chunk)
            urgent = lazy and ((first and self.remaining != 0) or now() - t0 > 0.001)
        except Exception as exc:
            self.iterator = None
            return _app_error(self, exc)
        except RequestTimeout:
            return _timed_out(self)
        except SystemExit as exc:
            return _app_exit(self, exc)
        if self.out.len >= HIGH_WATER or self.big is not None or self.sf_fd >= 0 or urgent:
            try:
                if not _flush(self):
                    if self.blocking_io:
                        _flush_blocking(self)
                    else:
                        return R_PAUSED
            except ClientDisconnected:
                self.iterator = None
                return R_ABORT
    self.iterator = None
    if not self.head_framed:
        # an empty body: say so with a length rather than an empty chunked stream
        try:
            if not self.parser.is_head:
                self.known_length = 0
            _frame_head(self)
        except Exception as exc:
            return _app_error(self, exc)
    return R_DONE


cdef int _end_response(Connection self, bint complete) except -1:
    """Close the iterable, finish framing, drain the body, log, reset.  Once per
    request: a second call (an app thread aborted, then the loop) does nothing."""
    if self.environ is None:
        return 0
    if self.iterator is not None:
        self.iterator = None
    if self.st.watchdog != NULL:
        _watch(self, False)
    try:
        _close_iterable(self)
    except Exception as exc:
        self.st.logger.error("Error closing the response iterable", exc_info=exc)
    if complete and self.head_framed:
        if self.chunked:
            ob_write(&self.out, b"0\r\n\r\n", 5)
        elif self.remaining > 0 and not self.no_body:
            self.st.logger.error(
                "%s %s: the application sent %d bytes less than its Content-Length",
                self.environ.get("REQUEST_METHOD"), self.environ.get("RAW_URI"),
                self.remaining)
            self.close_after = True
    elif not complete:
        self.close_after = True
    if self.st.access_log is not None and self.environ is not None:
        try:
            self.st.access_log(self.environ, self.status or f"{self.status_code}",
                               self.body_bytes, now() - self.t_start)
        except Exception as exc:
            self.st.logger.error("access log failed", exc_info=exc)
    if self.st.metrics is not NULL and self.environ is not None:
        add_i(&self.st.metrics.in_flight, -1)
        if self.status_code:
            record_response(self.st.metrics, self.status_code, now() - self.t_head,
                            self.t_start - self.t_head)
    self.st.requests += 1
    if self.st.max_requests and self.st.requests >= self.st.max_requests:
        self.st.stop_requested = True
    if not self.close_after and not self.parser.body_done:
        if self.parser.expect_continue and not self.sent_continue:
            # the client waits for 100 before sending its body: it never will
            self.close_after = True
        elif not _discard_body(self):
            self.state = ST_DRAIN
            self.drain_budget = DRAIN_BUDGET
    _detach_input(self)
    _retire_responder(self, False)
    self.sent_continue = False
    self.environ = None
    self.status = None
    self.headers = None
    if self.state != ST_DRAIN:
        self.parser.reset()
    return 0


cdef int _close_iterable(Connection self) except -1:
    cdef object it = self.app_iter
    self.app_iter = None
    if it is not None and not PyList_CheckExact(it):
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return 0
