# One client connection, compiled.  Declared for cimport by fastwsgi/_loop.pyx.
#
# The loop calls, for a connection's fd:
#   want = conn.on_readable()   # recv once, parse every complete request, call the app,
#                               # frame all responses into one buffer, send once
#   want = conn.on_writable()   # resume a paused response (backpressure) or flush
#   want = conn.on_timeout()    # deadline passed: 408 / close
# and acts on the returned interest: WANT_READ, WANT_WRITE or WANT_CLOSE
# (then conn.close()).  conn.deadline is the monotonic time of its next timeout.
#
# Input lives in a window (cur, cur_len) that points into the loop's shared receive
# buffer while a recv is being processed, and into the connection's own ibuf once
# control returns to the loop with bytes left over: an idle connection holds no buffer.

from fastwsgi._parser cimport RequestParser, Limits
from fastwsgi._writer cimport OutBuf
from fastwsgi._metrics cimport Block


# the monotonic clock, in seconds: deadlines and timeouts of the connection and the loop
cdef extern from "time.h" nogil:
    ctypedef int clockid_t
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(clockid_t clk, timespec* ts)
    clockid_t CLOCK_MONOTONIC


cdef inline double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

cdef enum Want:
    WANT_CLOSE = 0
    WANT_READ = 1
    WANT_WRITE = 2
    WANT_NONE = 3     # handed to an app thread: the loop watches nothing until it is back
    WANT_UNREGISTERED = 4   # accepted and served once, not yet in the epoll set
    # (no negative value: -1 is the "exception raised" return of `except -1` methods)

cdef enum Protocol:
    PROTO_HTTP = 0
    PROTO_UWSGI = 1

cdef enum ConnState:
    ST_READ = 0       # waiting for / parsing request heads
    ST_WRITE = 1      # a response is paused until the socket is writable
    ST_DRAIN = 2      # discarding the unread body of the last request
    ST_LINGER = 3     # write side shut; discarding input until EOF, then close
    ST_CLOSED = 4
    ST_APP = 5        # an app thread owns the connection (threaded workers)
    ST_BODY = 6       # a small body is arriving; the app is called once it is whole

cdef class FileWrapper:
    cdef public object filelike
    cdef public Py_ssize_t blksize

cdef class Connection

cdef class InputStream:
    cdef Connection conn

cdef class ServerState:
    cdef public object app
    cdef public dict base_environ
    cdef public Limits limits
    cdef public str script_name
    cdef public bytes server_line
    cdef public double keep_alive
    cdef public double header_timeout
    cdef public double io_timeout
    cdef public object access_log
    cdef public object logger
    cdef public long long requests
    cdef public long long max_requests
    cdef public bint stop_requested
    cdef public object forwarded     # callable(environ) for trusted peers, or None
    cdef public object dispatch      # callable(conn): run it in an app thread, or None
    cdef public list deferred        # connections whose output waits for the batch's end
    cdef char* rbuf
    cdef Py_ssize_t rbuf_size
    cdef double* watchdog            # app-call start times per slot (shared memory), or NULL
    cdef Py_ssize_t watchdog_slots
    cdef object watchdog_buf
    cdef Block* metrics              # this process's metrics block (--status-bind), or NULL
    cdef public bint clock_requests  # note when requests arrive (metrics, timing, access log)
    cdef public bint timing_environ  # put fastwsgi.request_start/.queue_time in the environ
    cdef object metrics_owner        # the fastwsgi._metrics.Metrics that holds its buffer

cdef class Connection:
    cdef public int fd
    cdef ServerState st
    cdef RequestParser parser
    cdef public str remote_addr
    cdef public str remote_port
    cdef public int state
    cdef public int interest
    cdef public double deadline
    cdef public int protocol
    cdef public bint proxy_pending   # a PROXY protocol header comes before the first request
    cdef public bint trusted         # the peer may send a PROXY header, X-Forwarded-* / Forwarded
    cdef public dict base_environ    # its listener's (fastwsgi.listeners.Listener.base_environ)
    cdef int slot                    # watchdog slot of the thread running the app
    cdef int app_rc                  # what the app thread's request ended with
    cdef bint deferred               # queued in st.deferred

    # input window and owned buffer
    cdef char* cur
    cdef Py_ssize_t cur_len
    cdef char* ibuf
    cdef Py_ssize_t icap
    cdef char* dptr                 # decoded, not yet delivered body bytes
    cdef Py_ssize_t dlen
    cdef bint head_started
    cdef long long drain_budget

    # output
    cdef OutBuf out
    cdef object big                 # a large body chunk sent without copying
    cdef Py_ssize_t big_off
    cdef bint crlf_after_big
    cdef int sf_fd                  # sendfile source, -1 when none
    cdef long long sf_off
    cdef long long sf_left

    # the current response
    cdef object environ
    cdef object status
    cdef object headers
    cdef object app_iter
    cdef object iterator
    cdef object input
    cdef bint head_framed
    cdef bint no_body
    cdef bint chunked
    cdef bint close_after
    cdef bint client_closes         # the client asked to close: no lingering needed
    cdef bint sent_continue
    cdef bint blocking_io
    cdef long long remaining
    cdef long long known_length
    cdef long long body_bytes
    cdef int status_code
    cdef double t_start
    cdef double t_recv               # monotonic time of the last recv that brought bytes
    cdef double t_head               # ... of the one that brought this request's first byte
    # self.start_response / self.write as bound methods, made once per connection
    # rather than per request (a cycle: close() breaks it)
    cdef object sr_bound
    cdef object write_bound

    cdef int on_readable(self) except -1
    cdef int on_writable(self) except -1
    cdef int on_timeout(self) except -1
    cdef void close(self) noexcept
    cdef bint is_idle(self) noexcept

    # private
    cdef int _serve(self) except -1
    cdef int _dispatch_request(self) except -2
    cdef int _after_request(self, int rc) except -2
    cdef Py_ssize_t _proxy_header(self) except -1
    cdef int _resume_from_app(self) except -1
    cdef void _watch(self, bint busy) noexcept
    cdef int _flush_then(self, int want) except -1
    cdef int _reject(self, exc) except -1
    cdef int _linger(self) except -1
    cdef int _pause(self) except -1
    cdef int _abort(self) except -1
    cdef int _handle_request(self) except -1
    cdef int _app_error(self, exc) except -1
    cdef int _pump(self) except -1
    cdef int _end_response(self, bint complete) except -1
    cdef void _detach_input(self) noexcept
    cdef int _close_iterable(self) except -1
    cdef int _frame_head(self) except -1
    cdef int _write_body(self, bytes data) except -1
    cdef int _queue_big(self, bytes data, Py_ssize_t n) except -1
    cdef bint _try_sendfile(self, FileWrapper wrapper) except -1
    cdef bint _flush(self) except -1
    cdef void _advance_big(self, Py_ssize_t n) noexcept
    cdef int _flush_blocking(self) except -1
    cdef int _grow_ibuf(self, Py_ssize_t need) except -1
    cdef int _save_input(self) except -1
    cdef bint _decode_some(self) except -1
    cdef int _fetch(self) except -1
    cdef Py_ssize_t _recv_blocking(self, char* dst, Py_ssize_t size) except -1
    cdef object _read_length(self, Py_ssize_t size)
    cdef bint _fill(self) except -1
    cdef bytes _take(self, Py_ssize_t n)
    cdef object body_read(self, Py_ssize_t size)
    cdef object body_readline(self, Py_ssize_t size)
    cdef bint _discard_body(self) except -1
