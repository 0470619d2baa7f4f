# One client connection, compiled.  Declared for cimport by fastwsgi/_loop.pyx.
#
# The _connection extension is one module built from included units (uvloop's
# pattern: calls between them stay direct C calls), each with its contract at its top
# and its declarations in the .pxd of the same name, included below:
#   _conn_state    the connection's state machine and its owner; the loop's entry points
#   _conn_input    receiving: heads, whole bodies (memory, then a spool file), wsgi.input
#   _conn_output   framing and sending; the response-header policy, in one place
#   _conn_app      calling the app, pumping its iterable, ending the response
#   _conn_request  the WSGI objects of one request: start_response/write, wsgi.input
#   _conn_cache    large bodies the app returns again, sent from sealed memfds
#
# The loop calls, for a connection's fd (only while conn.owner == OWNER_LOOP):
#   want = conn.on_readable()   # recv once, parse every complete request, receive its
#                               # body, call the app, frame all responses, send once
#   want = conn.on_writable()   # resume a paused response (backpressure) or flush
#   want = conn.on_timeout()    # deadline passed: 408 / close
#   want = conn.on_resume()     # an app thread handed it back (the loop owns it again)
# and acts on the returned interest: WANT_READ, WANT_WRITE, WANT_NONE (an app thread
# owns the connection now) or WANT_CLOSE (then conn.close()).  conn.deadline is the
# monotonic time of its next timeout.
#
# Return codes, one convention for every cdef function of the units: -1 means a
# Python exception is set (`except -1`); any other value is a Want (what the loop is
# to do next, or WANT_MORE: serve the next request in the buffer), an R_* outcome of
# the application's request (_conn_app), or a bint.
#
# Input lives in a window (cur, cur_len) that points into the loop's shared receive
# buffer while a recv is being processed, and into the connection's own ibuf once
# control returns to the loop with bytes left over: an idle connection holds no buffer.
# A received body sits decoded in (dptr, dlen) in front of the window (ibuf layout:
# [decoded body][raw input]), or in a spool file once it passes body_buffer_size.

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
    WANT_MORE = 5     # internal: serve the next request in the buffer (never the loop's)
    # (no negative value: -1 is the "exception raised" return of `except -1` functions)

cdef enum Owner:
    OWNER_LOOP = 0    # the loop may read, write, close and call into the connection
    OWNER_APP = 1     # an app thread runs its request: the loop does not touch it

cdef enum Protocol:
    PROTO_HTTP = 0
    PROTO_UWSGI = 1

cdef enum ConnState:
    ST_READ = 0       # waiting for / parsing request heads
    ST_WRITE = 1      # a response is paused until the socket is writable
    ST_DRAIN = 2      # discarding the unread body of the last request (streamed bodies)
    ST_LINGER = 3     # write side shut; discarding input until EOF, then close
    ST_CLOSED = 4
    ST_APP = 5        # an app thread owns the connection (threaded workers)
    ST_BODY = 6       # a request body is arriving; the app is called once it is whole

cdef class FileWrapper:
    cdef public object filelike
    cdef public Py_ssize_t blksize

cdef class Connection

cdef class InputStream:
    cdef Connection conn

cdef class Responder:
    cdef Connection conn

include "_conn_cache.pxd"

cdef class ServerState:
    cdef public object app
    cdef public dict base_environ
    cdef public Limits limits
    cdef public str script_name
    cdef public bytes server_line
    cdef public double keep_alive
    cdef public double header_timeout
    cdef public double io_timeout
    cdef public double body_timeout      # a body must arrive within this (plus min rate)
    cdef public double body_min_rate     # bytes/s that extend body_timeout; 0: no extension
    cdef public Py_ssize_t body_buffer_size   # decoded body bytes kept in memory
    cdef public object body_temp_dir     # where bodies past body_buffer_size spool (None: TMPDIR)
    cdef public bint stream_body         # hand the app a streaming wsgi.input instead
    cdef public BodyCache body_cache     # large bodies sent from memfds, or None (off)
    cdef public object access_log
    cdef public object logger
    cdef public long long requests
    cdef public long long max_requests
    cdef public bint stop_requested
    cdef public object forwarded     # callable(environ) for trusted peers, or None
    cdef public object dispatch      # callable(conn): run it in an app thread, or None
    cdef public object on_app_exit   # callable(): the app raised SystemExit in a request
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
    cdef public int owner            # Owner: who may act on the connection now
    cdef public bint hangup          # the loop saw EPOLLERR/HUP while an app thread owned it
    cdef public bint abandoned       # app_timed_out(): the app thread's I/O goes nowhere
    cdef public int interest
    cdef public double deadline
    cdef public int protocol
    cdef public bint proxy_pending   # a PROXY protocol header comes before the first request
    cdef public bint trusted         # the peer may send a PROXY header, X-Forwarded-* / Forwarded
    cdef public dict base_environ    # its listener's (fastwsgi.listeners.Listener.base_environ)
    cdef int slot                    # watchdog slot of the thread running the app
    cdef double watch_start          # when the app's (counted) time began
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
    cdef double body_t0             # when the body began to arrive (ST_BODY)
    cdef int spool_fd               # the body's spool file while receiving, -1 when none
    cdef object spool               # the spool file as wsgi.input reads it, or None

    # output
    cdef OutBuf out
    cdef object big                 # a large body chunk sent without copying
    cdef Py_ssize_t big_off
    cdef bint crlf_after_big
    cdef int sf_fd                  # sendfile source, -1 when none
    cdef long long sf_off
    cdef long long sf_left
    cdef CachedBody sf_hold         # the cached body sf_fd belongs to, or None (a file)
    cdef bint send_lowat            # TCP_NOTSENT_LOWAT is set (_send_lowat)
    cdef bint resp_sent             # a byte of the current response reached the socket
    cdef Py_ssize_t resp_mark       # out.len when the response began (before: earlier ones)

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
    # the request's Responder and its bound start_response / write, made once and
    # reused while no one else holds them (see _conn_request)
    cdef Responder resp
    cdef object sr_bound
    cdef object write_bound

    cdef int on_readable(self) except -1
    cdef int on_writable(self) except -1
    cdef int on_timeout(self) except -1
    cdef int on_resume(self) except -1
    cdef void close(self) noexcept
    cdef bint is_idle(self) noexcept

include "_conn_state.pxd"
include "_conn_input.pxd"
include "_conn_output.pxd"
include "_conn_app.pxd"
include "_conn_request.pxd"
