# cython: language_level=3
"""One client connection: receive a request whole, call the WSGI application,
frame, send.  One extension built from the units it includes (see _connection.pxd).

Contract (the loop's call sequence is in _connection.pxd):
- A connection has one owner at a time (Connection.owner): the loop, until the
  application is called on an app thread (--threads), which owns it until it hands
  the response back.  The loop never reads, writes, closes or calls into a
  connection an app thread owns; a hang-up it sees meanwhile is recorded
  (conn.hangup) and acted on by the owner at its next step.  The iterable's close()
  runs exactly once, on the thread that ran the application.
- on_readable() does one recv, then serves every complete request in the bytes it
  has, in order, framing all responses into one output buffer that is sent once.
- By default a request's whole body (Content-Length or chunked, decoded) is received
  by the loop before the application is called: in memory up to body_buffer_size,
  then in an unlinked temporary file, never more than the body limit.  A body must
  arrive within body_timeout (extended by body_min_rate) or the client gets 408;
  a bad chunk gets 400, a body over the limit 413 -- all before the application
  runs.  100 Continue is sent when the loop starts to receive such a body.  With
  stream_body the application reads the body from the socket as it arrives
  instead (blocking up to io_timeout per read), as before.
- start_response, write and wsgi.input belong to one request: used after it ended
  they raise and never touch another request's response (_conn_request).
- A response iterable is pumped until the output passes HIGH_WATER; if the socket
  will not take more, the iterable is paused and resumed by on_writable(), and no
  further request is read meanwhile: a client that does not read cannot make the
  server buffer without bound.  write() (PEP 3333's imperative API) blocks instead.
- Malformed requests get their HttpParserError.status_code and a closed connection;
  the application never sees them.  An application error before the head is framed
  gets a 500; after it, the connection is closed so the client sees a truncated
  response, never a well-framed wrong one.
- Closing after a response shuts the write side first and discards input for a
  moment (lingering close), so unread request bytes never turn into a TCP reset that
  destroys the response before the client reads it.  A client that said it closes
  (and whose request was read whole, with nothing after it) is closed at once.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_CheckExact
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from cpython.ref cimport PyObject
from libc.errno cimport errno, EAGAIN, EINTR   # EWOULDBLOCK == EAGAIN on Linux
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove, memchr

from fastwsgi._parser cimport RequestParser, Limits, BODY_NONE, BODY_LENGTH, BODY_CHUNKED
from fastwsgi._uwsgi cimport parse_uwsgi_head
from fastwsgi._proxyproto cimport parse_proxy_header
from fastwsgi._metrics cimport (Metrics, add_i, add_u, record_response, record_reject,
                                note_reject)
from fastwsgi._writer cimport (OutBuf, RespInfo, ob_write, ob_reserve, ob_consume, ob_free,
                               write_head_start, write_content_length, write_chunk,
                               write_chunk_header)

import os
import stat as _stat
import sys

from fastwsgi.errors import (ApplicationExit, ClientDisconnected, HttpParserError,
                             ResponseError, RequestTimeout, UntrustedPeer)

cdef extern from "Python.h":
    bint PyList_CheckExact(object)
    bint PyTuple_CheckExact(object)
    Py_ssize_t _Py_REFCNT "Py_REFCNT"(PyObject* o)

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int name, const void* val, unsigned int len)
    int MSG_NOSIGNAL
    int MSG_MORE
    int MSG_DONTWAIT
    int SHUT_WR
    int SHUT_RDWR

cdef extern from "netinet/in.h" nogil:
    int IPPROTO_TCP

cdef extern from "netinet/tcp.h" nogil:
    int TCP_NOTSENT_LOWAT

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
    ssize_t c_write "write"(int fd, const void* buf, size_t n)

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
DEF SEND_LOWAT = 16384        # unsent bytes the kernel keeps of a large sendfile
DEF LOWAT_FROM = 131072       # ... from a sendfile of this size on (a cached body: all)
DEF FETCH_SIZE = 65536        # bytes read per blocking body fetch
DEF LINGER_SECONDS = 2.0
DEF DRAIN_BUDGET = 1048576    # unread body bytes we discard to keep a connection alive
DEF DEFER_LIMIT = 16384       # output up to this size waits for the batch's end
DEF PREBUFFER = 65536         # stream_body: Content-Length bodies up to this size are
                              # still awaited in the loop before the app is called

# what the request of the application ended with (_conn_app; see the return-code
# convention in _connection.pxd)
DEF R_ABORT = 3               # the response cannot be completed: close
DEF R_PAUSED = 0              # the socket is full: resume on writable
DEF R_DONE = 1                # the body is all framed: the caller ends the response
DEF R_ENDED = 2               # an error page was framed and the response ended

cdef str K_REMOTE_ADDR = "REMOTE_ADDR"
cdef str K_REMOTE_PORT = "REMOTE_PORT"
cdef str K_CONTENT_LENGTH = "CONTENT_LENGTH"
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


include "_conn_cache.pxi"
include "_conn_output.pxi"
include "_conn_request.pxi"


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
                 logger=None, long long max_requests=0, double body_timeout=30.0,
                 double body_min_rate=1024.0, Py_ssize_t body_buffer_size=65536,
                 body_temp_dir=None, bint stream_body=False, long long body_cache_size=0):
        self.app = app
        self.base_environ = base_environ
        self.limits = limits
        self.script_name = script_name
        self.server_line = (f"Server: {server_header}\r\n".encode("latin-1")
                            if server_header else b"")
        self.keep_alive = keep_alive
        self.header_timeout = header_timeout
        self.io_timeout = io_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.body_buffer_size = body_buffer_size
        self.body_temp_dir = body_temp_dir
        self.stream_body = stream_body
        self.body_cache = BodyCache(body_cache_size) if body_cache_size > 0 else None
        self.access_log = access_log
        self.logger = logger
        self.requests = 0
        self.max_requests = max_requests
        self.stop_requested = False
        self.clock_requests = access_log is not None
        self.timing_environ = False
        self.forwarded = None
        self.dispatch = None
        self.on_app_exit = None
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



include "_conn_state.pxi"
include "_conn_input.pxi"
include "_conn_app.pxi"
