# cython: language_level=3
"""One client connection: parse, call the WSGI application, frame, send.

Contract (see _connection.pxd for the loop's call sequence):
- on_readable() does one recv, then serves every complete request in the bytes it
  has, in order, framing all responses into one output buffer that is sent once.
- The application is called on the loop's thread (PEP 3333 with
  wsgi.multithread False).  wsgi.input streams: bytes already received are served
  from the window; more are read from the socket, blocking up to io_timeout, only
  when the application asks (sending 100 Continue first if the client expects it).
- A response iterable is pumped until the output passes HIGH_WATER; if the socket
  will not take more, the iterable is paused and resumed by on_writable(), and no
  further request is read meanwhile: a client that does not read cannot make the
  server buffer without bound.  write() (PEP 3333's imperative API) blocks instead.
- Malformed requests get their HttpParserError.status_code and a closed connection;
  the application never sees them.  An application error before the head is framed
  gets a 500; after it, the connection is closed so the client sees a truncated
  response, never a well-framed wrong one.  The iterable's close() runs exactly once.
- Closing after a response shuts the write side first and discards input for a
  moment (lingering close), so unread request bytes never turn into a TCP reset that
  destroys the response before the client reads it.  A client that said it closes
  (and whose request was read whole, with nothing after it) is closed at once.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_CheckExact
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from libc.errno cimport errno, EAGAIN, EINTR   # EWOULDBLOCK == EAGAIN on Linux
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove, memchr

from fastwsgi._parser cimport RequestParser, Limits, BODY_LENGTH
from fastwsgi._uwsgi cimport parse_uwsgi_head
from fastwsgi._proxyproto cimport parse_proxy_header
from fastwsgi._metrics cimport (Metrics, add_i, record_response, record_reject,
                                note_reject)
from fastwsgi._writer cimport (OutBuf, RespInfo, ob_write, ob_reserve, ob_consume, ob_free,
                               write_head_start, write_content_length, write_chunk,
                               write_chunk_header)

import os
import stat as _stat
import sys

from fastwsgi.errors import ClientDisconnected, HttpParserError, ResponseError, UntrustedPeer

cdef extern from "Python.h":
    bint PyList_CheckExact(object)
    bint PyTuple_CheckExact(object)

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int MSG_NOSIGNAL
    int SHUT_WR
    int SHUT_RDWR

cdef extern from "sys/uio.h" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int n)

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long n, int timeout)
    short POLLIN
    short POLLOUT

cdef extern from "sys/types.h":
    ctypedef long off_t

cdef extern from "sys/sendfile.h" nogil:
    ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count)

cdef extern from "unistd.h" nogil:
    int c_close "close"(int fd)

cdef extern from "time.h" nogil:
    clockid_t CLOCK_REALTIME


cdef inline double wall_time() noexcept nogil:
    """time.time(), without the Python call."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def monotonic():
    return now()


DEF HIGH_WATER = 262144       # pump the iterable until this much output is queued
DEF BIG_CHUNK = 65536         # body chunks at least this large are sent without a copy
DEF FETCH_SIZE = 65536        # bytes read per blocking body fetch
DEF LINGER_SECONDS = 2.0
DEF DRAIN_BUDGET = 1048576    # unread body bytes we discard to keep a connection alive
DEF DEFER_LIMIT = 16384       # output up to this size waits for the batch's end
DEF PREBUFFER = 65536         # Content-Length bodies up to this size are awaited in the
                              # loop before the app is called (a slow upload blocks no one)

# what _handle_request / _pump / _app_error report
DEF R_ABORT = 3               # the response cannot be completed: close (not -1: that is
                              # the "exception raised" return of every `except -1` method)
DEF R_PAUSED = 0              # the socket is full: resume on writable
DEF R_DONE = 1                # the body is all framed: the caller ends the response
DEF R_ENDED = 2               # an error page was framed and the response ended

cdef str K_REMOTE_ADDR = "REMOTE_ADDR"
cdef str K_REMOTE_PORT = "REMOTE_PORT"
# interned, as server._roomy interns the base environ's keys: a dict lookup
# then matches by identity ("wsgi.input" is not an identifier, so neither
# Cython nor the compiler interns it)
cdef str K_INPUT = sys.intern("wsgi.input")
# when the request's first byte arrived (time.time()) and how long it waited for
# the app (seconds): for APMs, docs/observability.md
cdef str K_REQUEST_START = sys.intern("fastwsgi.request_start")
cdef str K_QUEUE_TIME = sys.intern("fastwsgi.queue_time")
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef object _DONE = object()
cdef object _EMPTY = ()

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


@cython.final
@cython.freelist(8)
cdef class InputStream:
    """wsgi.input for one request; detached (reads b"") once the request is over."""

    def read(self, size=-1):
        if self.conn is None:
            return b""
        if size is None:
            size = -1
        return self.conn.body_read(size)

    def readline(self, size=-1):
        if self.conn is None:
            return b""
        if size is None:
            size = -1
        return self.conn.body_readline(size)

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


cdef class ServerState:
    """What every connection of one server shares: the app, config, shared buffer."""

    def __cinit__(self):
        # one recv takes a whole 64 KiB upload with its head, or a deep pipeline
        self.rbuf_size = 262144
        self.rbuf = <char*>malloc(self.rbuf_size)
        if self.rbuf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.rbuf)

    def __init__(self, app, dict base_environ, Limits limits, str script_name="",
                 str server_header="fastwsgi", double keep_alive=5.0,
                 double header_timeout=10.0, double io_timeout=30.0, access_log=None,
                 logger=None, long long max_requests=0):
        self.app = app
        self.base_environ = base_environ
        self.limits = limits
        self.script_name = script_name
        self.server_line = (f"Server: {server_header}\r\n".encode("latin-1")
                            if server_header else b"")
        self.keep_alive = keep_alive
        self.header_timeout = header_timeout
        self.io_timeout = io_timeout
        self.access_log = access_log
        self.logger = logger
        self.requests = 0
        self.max_requests = max_requests
        self.stop_requested = False
        self.clock_requests = access_log is not None
        self.timing_environ = False
        self.forwarded = None
        self.dispatch = None
        self.deferred = None

    def set_watchdog(self, buf, Py_ssize_t slots):
        """Record app-call start times (CLOCK_MONOTONIC seconds; 0 when idle) in a
        writable buffer of `slots` doubles -- shared memory the master watches for
        --timeout.  Slot 0 is the loop thread, 1..N the app threads."""
        cdef unsigned char[::1] view = buf
        if view.shape[0] < slots * <Py_ssize_t>sizeof(double):
            raise ValueError("watchdog buffer too small")
        self.watchdog_buf = buf
        self.watchdog = <double*>&view[0]
        self.watchdog_slots = slots

    def set_metrics(self, Metrics metrics):
        """Record requests, connections and app threads in `metrics` (a block in
        shared memory, fastwsgi/_metrics.pxd); None: record nothing."""
        self.metrics_owner = metrics
        self.metrics = metrics.block if metrics is not None else NULL
        if metrics is not None:
            self.clock_requests = True


@cython.final
cdef class Connection:

    def __cinit__(self):
        self.fd = -1
        self.sf_fd = -1

    def __init__(self, ServerState st, int fd, str remote_addr, str remote_port):
        self.st = st
        self.fd = fd
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.base_environ = st.base_environ     # the loop sets its listener's
        self.parser = RequestParser(st.limits, st.script_name)
        self.state = ST_READ
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
        if self.fd >= 0:
            c_close(self.fd)

    # --- the loop's entry points -------------------------------------------------

    cdef int on_readable(self) except -1:
        cdef ssize_t n
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
            # bytes of an unfinished head wait in ibuf (cur == ibuf); append after them
            if self.icap - self.cur_len < 4096:
                self._grow_ibuf(self.cur_len + 16384)
            n = recv(self.fd, self.ibuf + self.cur_len, self.icap - self.cur_len, 0)
            if n > 0:
                self.cur_len += n
        if n > 0 and self.st.clock_requests:
            self.t_recv = now()
        if n == 0:
            if self.head_started or self.state == ST_DRAIN:
                self.st.logger.debug("client %s closed mid-request", self.remote_addr)
            return WANT_CLOSE
        if n < 0:
            if errno == EAGAIN or errno == EINTR:
                return self.interest
            return WANT_CLOSE
        if self.state == ST_DRAIN:
            self.deadline = now() + self.st.io_timeout
            if not self._discard_body():
                self._save_input()
                return WANT_READ
            self.state = ST_READ
        return self._serve()

    cdef int on_writable(self) except -1:
        cdef int rc
        try:
            if not self._flush():
                self.deadline = now() + self.st.io_timeout
                return WANT_WRITE
        except ClientDisconnected:
            self._end_response(False)
            return WANT_CLOSE
        if self.state == ST_LINGER:
            return self._linger()
        if self.iterator is not None:
            if self.st.watchdog != NULL:
                self._watch(True)
            rc = self._pump()
            if rc == R_PAUSED:
                return self._pause()
            if rc == R_ABORT:
                return self._abort()
            if rc == R_DONE:
                self._end_response(True)
        if self.state == ST_DRAIN or self.state == ST_BODY:
            return WANT_READ
        self.state = ST_READ
        return self._serve()

    cdef int on_timeout(self) except -1:
        if (self.state == ST_READ and self.head_started) or self.state == ST_BODY:
            # a client that trickles its head: say so, best effort, and close
            page = error_page(408, "Request Timeout")
            send(self.fd, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page), MSG_NOSIGNAL)
            if self.st.metrics is not NULL:
                record_reject(self.st.metrics, 408, now() - self.t_head)
            self.st.logger.debug("header timeout for %s", self.remote_addr)
        return WANT_CLOSE

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
            self._close_iterable()
        except BaseException:
            pass
        self._detach_input()
        self.environ = None
        self.big = None
        self.sr_bound = None
        self.write_bound = None
        if self.sf_fd >= 0:
            self.sf_fd = -1
        free(self.ibuf)
        self.ibuf = NULL
        self.icap = 0
        self.cur_len = 0
        self.dlen = 0
        ob_free(&self.out)
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    # --- serving requests ----------------------------------------------------------

    cdef int _serve(self) except -1:
        """Serve every complete request in the window, then send what is queued."""
        cdef Py_ssize_t n
        cdef int rc
        while self.cur_len > 0 and not self.close_after:
            if self.state == ST_BODY:
                if self.cur_len < self.parser.remaining:
                    break                    # still arriving
                self.state = ST_READ
                want = self._dispatch_request()
                if want >= 0:
                    return want
                continue
            if not self.head_started:
                self.head_started = True
                self.t_head = self.t_recv
                self.deadline = now() + self.st.header_timeout
            try:
                if self.proxy_pending:
                    n = self._proxy_header()
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
                return self._reject(exc)
            if n == 0:
                break
            self.cur += n
            self.cur_len -= n
            self.head_started = False
            if (self.parser.body_kind == BODY_LENGTH and self.cur_len < self.parser.remaining
                    and self.parser.remaining <= PREBUFFER and not self.parser.expect_continue):
                # the body is on its way: wait for it here, where waiting blocks
                # no one, rather than in the app's read() (bounded: PREBUFFER)
                self.state = ST_BODY
                self.deadline = now() + self.st.header_timeout
                break
            want = self._dispatch_request()
            if want >= 0:
                return want
        self._save_input()
        if self.close_after:
            return self._linger()
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
        return self._flush_then(WANT_READ)

    def send_deferred(self):
        """The loop's end-of-batch send of what _serve deferred; returns the interest."""
        self.deferred = False
        if self.state != ST_READ:
            return self.interest if self.state != ST_CLOSED else WANT_CLOSE
        return self._flush_then(WANT_READ)

    cdef int _dispatch_request(self) except -2:
        """Run the app for the parsed request: -1 to go on serving, else the interest."""
        cdef int rc
        if self.st.dispatch is not None:
            # threaded worker: the app runs in a pool thread, which owns the
            # connection until it hands it back (_resume_from_app)
            self._save_input()
            self.state = ST_APP
            self.deadline = 1e300        # the app's time is --timeout's business
            if self.st.metrics is not NULL:
                add_i(&self.st.metrics.queued, 1)
            self.st.dispatch(self)
            return WANT_NONE
        if self.st.metrics is NULL:
            return self._after_request(self._handle_request())
        add_i(&self.st.metrics.busy, 1)      # the loop thread runs the app
        try:
            rc = self._handle_request()
        finally:
            add_i(&self.st.metrics.busy, -1)
        return self._after_request(rc)

    cdef int _after_request(self, int rc) except -2:
        """What follows a request: -1 to serve the next one, else the interest."""
        if rc == R_PAUSED:
            return self._pause()
        if rc == R_ABORT:
            return self._abort()
        if self.state == ST_DRAIN:
            self._save_input()
            return self._flush_then(WANT_READ)
        if self.big is not None or self.sf_fd >= 0 or self.out.len >= HIGH_WATER:
            # a large body is queued without a copy: nothing may be framed after
            # it until it is out, so send now and read on only once it is
            try:
                if not self._flush():
                    return self._pause()
            except ClientDisconnected:
                return WANT_CLOSE
        return -1

    cdef Py_ssize_t _proxy_header(self) except -1:
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

    def run_app(self, int slot):
        """Serve the parsed request from an app thread (threaded workers): blocking
        I/O on this socket is fine here, the loop does not watch it meanwhile.  The
        caller hands the connection back to the loop afterwards."""
        cdef Block* m = self.st.metrics
        self.slot = slot
        self.blocking_io = True
        if m is not NULL:
            add_i(&m.queued, -1)
            add_i(&m.busy, 1)
        try:
            self.app_rc = self._handle_request()
        except BaseException:
            self.app_rc = R_ABORT
            raise
        finally:
            self.blocking_io = False
            if m is not NULL:
                add_i(&m.busy, -1)

    # --- issue 11 (supervise), minimal version: conn's app_timed_out() replaces it ---
    def app_timed_out(self):
        """The app thread running this connection passed --timeout (called by the
        worker's watchdog thread, with the GIL, while that thread is still in the
        app).  504 if no response byte went out (returns 504), else 0; then the
        socket is shut down both ways, so whatever the stuck thread does later
        reaches no one, and the fd is closed only when the thread hands the
        connection back.  -1: no app thread owns the connection."""
        cdef bytes page
        cdef int rc = 0
        if self.state != ST_APP or self.fd < 0:
            return -1
        if not self.head_framed:
            page = error_page(504, "Gateway Timeout")
            send(self.fd, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page), MSG_NOSIGNAL)
            self.status_code = 504
            rc = 504
        self.close_after = True
        shutdown(self.fd, SHUT_RDWR)
        return rc
    # --- end of issue 11's minimal app_timed_out ---

    def resume(self):
        """Back on the loop thread after run_app(): returns the interest (Want)."""
        return self._resume_from_app()

    cdef int _resume_from_app(self) except -1:
        cdef int want
        if self.state == ST_CLOSED:
            return WANT_CLOSE
        if self.state == ST_APP:
            self.state = ST_READ
        want = self._after_request(self.app_rc)
        if want >= 0:
            return want
        return self._serve()

    cdef void _watch(self, bint busy) noexcept:
        if self.st.watchdog != NULL and self.slot < self.st.watchdog_slots:
            self.st.watchdog[self.slot] = now() if busy else 0.0

    cdef int _flush_then(self, int want) except -1:
        try:
            if self._flush():
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

    cdef int _reject(self, exc) except -1:
        """A malformed request: its status, Connection: close, lingering close."""
        cdef bytes page = error_page(exc.status_code, exc.reason)
        self.st.logger.debug("rejected request from %s: %s %s", self.remote_addr,
                             exc.status_code, exc)
        if self.st.metrics is not NULL:
            record_reject(self.st.metrics, exc.status_code, now() - self.t_head)
        ob_write(&self.out, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page))
        self.cur_len = 0
        self.close_after = True
        self.client_closes = False
        return self._linger()

    cdef int _linger(self) except -1:
        """Send what is queued, shut the write side, discard input until EOF."""
        try:
            if not self._flush():
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
        self._save_input()
        self.deadline = now() + LINGER_SECONDS
        return WANT_READ

    cdef int _pause(self) except -1:
        """The socket is full mid-response: keep the iterator, wait for writable."""
        if self.st.watchdog != NULL:
            self._watch(False)       # waiting for a slow client is not a hung app
        self._save_input()
        self.state = ST_WRITE
        self.deadline = now() + self.st.io_timeout
        return WANT_WRITE

    cdef int _abort(self) except -1:
        """The response cannot be completed: send what is framed, then close."""
        self._end_response(False)
        self.close_after = True
        self.client_closes = False
        self.cur_len = 0
        return self._linger()

    cdef int _handle_request(self) except -1:
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
        self.sent_continue = False
        self.remaining = -1
        self.known_length = -1
        self.body_bytes = 0
        self.status_code = 0
        self.app_iter = None
        self.iterator = None
        self.dlen = 0
        if self.st.metrics is not NULL:
            add_i(&self.st.metrics.in_flight, 1)
        if self.trusted and self.st.forwarded is not None and (
                p.forwarded or self.protocol != PROTO_HTTP):
            # over HTTP the parser flags the fields the handler reads, so most
            # requests skip its Python call; a uwsgi packet's vars are not flagged
            self.st.forwarded(environ)
        if self.st.watchdog != NULL:
            self._watch(True)
        try:
            if self.sr_bound is None:
                self.sr_bound = self.start_response
            result = self.st.app(environ, self.sr_bound)
            self.app_iter = result
            if PyList_CheckExact(result) and PyList_GET_SIZE(result) == 1 and not self.head_framed:
                # the common case: one bytes object, framed with its length
                body = <object>PyList_GET_ITEM(result, 0)
                if not PyBytes_CheckExact(body):
                    raise ResponseError(f"response body items must be bytes, not {type(body).__name__}")
                self.known_length = PyBytes_GET_SIZE(body)
                if self.known_length:
                    self._write_body(body)
                if not self.head_framed:
                    self._frame_head()
            elif type(result) is FileWrapper and not self.head_framed and self._try_sendfile(result):
                # (after write() the head is out, maybe chunked: the file is iterated)
                # the file stays open until sendfile is done: end the response then
                if self.sf_fd >= 0 and not self._flush():
                    if not self.blocking_io:
                        self.iterator = iter(_EMPTY)
                        return R_PAUSED
                    self._flush_blocking()
            else:
                if result is None:
                    raise ResponseError("the application returned None, not an iterable")
                self.iterator = iter(result)
                rc = self._pump()
                if rc != R_DONE:
                    return rc
        except Exception as exc:
            return self._app_error(exc)
        self._end_response(True)
        return R_DONE

    cdef int _app_error(self, exc) except -1:
        if isinstance(exc, ClientDisconnected):
            self.st.logger.debug("client %s disconnected: %s", self.remote_addr, exc)
            return R_ABORT
        if isinstance(exc, HttpParserError) and not self.head_framed:
            # the body the app was reading is malformed (bad chunk, too large)
            page = error_page(exc.status_code, exc.reason)
            if self.st.metrics is not NULL:
                note_reject(self.st.metrics, exc.status_code)
        else:
            self.st.logger.error("Error handling request %s %s",
                                 self.environ.get("REQUEST_METHOD"),
                                 self.environ.get("RAW_URI"), exc_info=exc)
            if self.head_framed:
                return R_ABORT
            page = error_page(500, "Internal Server Error")
        self.status_code = (<int>exc.status_code if isinstance(exc, HttpParserError) else 500)
        self.status = None
        if self.parser.is_head:
            # an answer to HEAD has no body (RFC 9110 §9.3.2), an error page neither
            page = page[:page.find(b"\r\n\r\n") + 4]
        ob_write(&self.out, PyBytes_AS_STRING(page), PyBytes_GET_SIZE(page))
        self.head_framed = True
        self.chunked = False
        self.remaining = -1
        self.close_after = True
        self._end_response(True)
        return R_ENDED

    cdef int _pump(self) except -1:
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
                self._write_body(chunk)
                urgent = lazy and ((first and self.remaining != 0) or now() - t0 > 0.001)
            except Exception as exc:
                self.iterator = None
                return self._app_error(exc)
            if self.out.len >= HIGH_WATER or self.big is not None or urgent:
                try:
                    if not self._flush():
                        if self.blocking_io:
                            self._flush_blocking()
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
                self._frame_head()
            except Exception as exc:
                return self._app_error(exc)
        return R_DONE

    cdef int _end_response(self, bint complete) except -1:
        """Close the iterable, finish framing, drain the body, log, reset."""
        cdef double t
        if self.iterator is not None:
            self.iterator = None
        if self.st.watchdog != NULL:
            self._watch(False)
        try:
            self._close_iterable()
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
                t = now()
                record_response(self.st.metrics, self.status_code, t - self.t_head,
                                self.t_start - self.t_head)
        self.st.requests += 1
        if self.st.max_requests and self.st.requests >= self.st.max_requests:
            self.st.stop_requested = True
        if not self.close_after and not self.parser.body_done:
            if self.parser.expect_continue and not self.sent_continue:
                # the client waits for 100 before sending its body: it never will
                self.close_after = True
            elif not self._discard_body():
                self.state = ST_DRAIN
                self.drain_budget = DRAIN_BUDGET
        self._detach_input()
        self.environ = None
        self.status = None
        self.headers = None
        if self.state != ST_DRAIN:
            self.parser.reset()
        return 0

    cdef void _detach_input(self) noexcept:
        if self.input is not None:
            (<InputStream>self.input).conn = None
            self.input = None
        self.dlen = 0

    cdef int _close_iterable(self) except -1:
        cdef object it = self.app_iter
        self.app_iter = None
        if it is not None and not PyList_CheckExact(it):
            close = getattr(it, "close", None)
            if close is not None:
                close()
        return 0

    # --- start_response and write() (PEP 3333) ---------------------------------------

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333's start_response, as a bound method: a vectorcall, which calling
        the connection object itself (tp_call through a slot wrapper) is not."""
        if exc_info is not None:
            try:
                if self.head_framed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        if not isinstance(status, str):
            raise ResponseError(f"status must be str, not {type(status).__name__}")
        if not isinstance(headers, list):
            raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        if self.write_bound is None:
            self.write_bound = self.write
        return self.write_bound

    def write(self, data):
        """The write() callable: blocks until the bytes are sent or buffered."""
        if self.state == ST_CLOSED or self.environ is None:
            raise ClientDisconnected("write() after the response ended")
        if not isinstance(data, bytes):
            raise ResponseError(f"write() takes bytes, not {type(data).__name__}")
        if not data:
            return
        self._write_body(data)
        if self.out.len >= HIGH_WATER or self.big is not None:
            self._flush_blocking()

    cdef int _frame_head(self) except -1:
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

    cdef int _write_body(self, bytes data) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if not self.head_framed:
            self._frame_head()
        self.body_bytes += n
        if self.no_body:
            return 0
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
                self._queue_big(data, n)
                self.crlf_after_big = True
            else:
                write_chunk(&self.out, PyBytes_AS_STRING(data), n)
        elif n >= BIG_CHUNK:
            self._queue_big(data, n)
        else:
            ob_write(&self.out, PyBytes_AS_STRING(data), n)
        return 0

    cdef int _queue_big(self, bytes data, Py_ssize_t n) except -1:
        """Hand a large chunk to the kernel without copying it: it waits in self.big
        (behind what out already holds) and is written with writev."""
        if self.big is not None:
            self._flush_blocking()
        if n < PyBytes_GET_SIZE(data):
            data = data[:n]            # truncated to the declared Content-Length
        self.big = data
        self.big_off = 0
        return 0

    cdef bint _try_sendfile(self, FileWrapper wrapper) except -1:
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
        self._frame_head()
        if self.remaining >= 0:
            size = min(size, self.remaining)
            if size < self.remaining:
                self.close_after = True       # the file is shorter than declared
            self.remaining -= size
        self.body_bytes = size
        if not self.no_body and size > 0:
            self.sf_fd = fd
            self.sf_off = offset
            self.sf_left = size
        return True

    # --- output ------------------------------------------------------------------------

    cdef bint _flush(self) except -1:
        """Write queued output without blocking. True when everything is out."""
        cdef ssize_t n
        cdef iovec iov[2]
        cdef Py_ssize_t blen
        cdef off_t off
        while True:
            if self.out.len and self.big is not None:
                blen = PyBytes_GET_SIZE(self.big) - self.big_off
                iov[0].iov_base = self.out.data
                iov[0].iov_len = self.out.len
                iov[1].iov_base = PyBytes_AS_STRING(self.big) + self.big_off
                iov[1].iov_len = blen
                n = writev(self.fd, iov, 2)
                if n > 0:
                    if n >= self.out.len:
                        n -= self.out.len
                        ob_consume(&self.out, self.out.len)
                        self._advance_big(n)
                    else:
                        ob_consume(&self.out, n)
                    continue
            elif self.out.len:
                n = send(self.fd, self.out.data, self.out.len, MSG_NOSIGNAL)
                if n > 0:
                    ob_consume(&self.out, n)
                    continue
            elif self.big is not None:
                blen = PyBytes_GET_SIZE(self.big) - self.big_off
                n = send(self.fd, PyBytes_AS_STRING(self.big) + self.big_off, blen, MSG_NOSIGNAL)
                if n > 0:
                    self._advance_big(n)
                    continue
            elif self.sf_fd >= 0:
                off = self.sf_off
                n = sendfile(self.fd, self.sf_fd, &off, min(self.sf_left, 1 << 22))
                if n > 0:
                    self.sf_off = off
                    self.sf_left -= n
                    if self.sf_left <= 0:
                        self.sf_fd = -1
                    continue
                if n == 0:
                    # the file shrank under us: the response cannot be completed
                    self.sf_fd = -1
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

    cdef void _advance_big(self, Py_ssize_t n) noexcept:
        self.big_off += n
        if self.big_off >= PyBytes_GET_SIZE(self.big):
            self.big = None
            self.big_off = 0
            if self.crlf_after_big:
                self.crlf_after_big = False
                ob_write(&self.out, b"\r\n", 2)

    cdef int _flush_blocking(self) except -1:
        """Flush, waiting for the socket up to io_timeout at a time."""
        cdef pollfd pfd
        cdef int r
        cdef int ms = <int>(self.st.io_timeout * 1000)
        while not self._flush():
            pfd.fd = self.fd
            pfd.events = POLLOUT
            self._watch(False)       # a slow reader is not app time (--timeout)
            with nogil:
                r = poll(&pfd, 1, ms)
            self._watch(True)
            if r == 0:
                raise ClientDisconnected("timed out writing to the client")
            if r < 0 and errno != EINTR:
                raise ClientDisconnected("poll failed")
        return 0

    # --- input -------------------------------------------------------------------------

    cdef int _grow_ibuf(self, Py_ssize_t need) except -1:
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

    cdef int _save_input(self) except -1:
        """Move the unconsumed windows (decoded body, then raw input) to the front of
        ibuf, so they survive the shared buffer's next use; free ibuf when empty."""
        cdef Py_ssize_t total = self.dlen + self.cur_len
        cdef char* p
        if total == 0:
            if self.icap:
                free(self.ibuf)
                self.ibuf = NULL
                self.icap = 0
            self.cur = NULL
            self.dptr = NULL
            return 0
        if self.cur >= self.ibuf and self.cur < self.ibuf + self.icap:
            if self.dlen:
                memmove(self.ibuf, self.dptr, self.dlen)
                self.dptr = self.ibuf
            memmove(self.ibuf + self.dlen, self.cur, self.cur_len)
            self.cur = self.ibuf + self.dlen
            return 0
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

    cdef bint _decode_some(self) except -1:
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

    cdef int _fetch(self) except -1:
        """Block until more body bytes arrive from the client (up to io_timeout)."""
        cdef Py_ssize_t n
        self._save_input()
        if self.icap - self.cur_len - self.dlen < FETCH_SIZE:
            self._grow_ibuf(self.dlen + self.cur_len + FETCH_SIZE)
        n = self._recv_blocking(self.ibuf + self.dlen + self.cur_len,
                                self.icap - self.dlen - self.cur_len)
        self.cur = self.ibuf + self.dlen
        self.cur_len += n
        return 0

    cdef Py_ssize_t _recv_blocking(self, char* dst, Py_ssize_t size) except -1:
        """recv up to `size` body bytes into dst, waiting up to io_timeout; sends
        100 Continue first if the client waits for it (RFC 9110 §10.1.1)."""
        cdef pollfd pfd
        cdef int r
        cdef ssize_t n
        cdef int ms = <int>(self.st.io_timeout * 1000)
        if self.parser.expect_continue and not self.sent_continue:
            self.sent_continue = True
            ob_write(&self.out, PyBytes_AS_STRING(CONTINUE), PyBytes_GET_SIZE(CONTINUE))
            self._flush_blocking()
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
            self._watch(False)       # a slow uploader is not app time (--timeout)
            with nogil:
                r = poll(&pfd, 1, ms)
            self._watch(True)
            if r == 0:
                raise ClientDisconnected("timed out reading the request body")

    cdef bint _fill(self) except -1:
        """Make decoded body bytes available. False at the end of the body."""
        while self.dlen == 0:
            if self.parser.body_done:
                return False
            if not self._decode_some():
                if self.parser.body_done:
                    return self.dlen > 0
                self._fetch()
        return True

    cdef bytes _take(self, Py_ssize_t n):
        cdef bytes b = PyBytes_FromStringAndSize(self.dptr, n)
        self.dptr += n
        self.dlen -= n
        return b

    cdef object body_read(self, Py_ssize_t size):
        """read(size): `size` bytes, or all that is left when size < 0 or the body
        ends first -- never a short read mid-body (apps call read(CONTENT_LENGTH))."""
        cdef list parts
        cdef Py_ssize_t n, got = 0
        if size == 0:
            return b""
        if self.parser.body_kind == BODY_LENGTH:
            return self._read_length(size)
        parts = []
        while (size < 0 or got < size) and self._fill():
            n = self.dlen if size < 0 or self.dlen < size - got else size - got
            parts.append(self._take(n))
            got += n
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    cdef object _read_length(self, Py_ssize_t size):
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
                self._decode_some()
            else:
                n = self._recv_blocking(dst + got, want - got)
                p.decode_body(dst + got, n, &out_n)     # counts them (in place)
                got += n
        return result

    cdef object body_readline(self, Py_ssize_t size):
        cdef list parts = []
        cdef Py_ssize_t got = 0, n
        cdef char* nl
        while size < 0 or got < size:
            if not self._fill():
                break
            n = self.dlen
            if size >= 0 and n > size - got:
                n = size - got
            nl = <char*>memchr(self.dptr, 10, n)
            if nl != NULL:
                parts.append(self._take(nl - self.dptr + 1))
                break
            parts.append(self._take(n))
            got += n
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    cdef bint _discard_body(self) except -1:
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

