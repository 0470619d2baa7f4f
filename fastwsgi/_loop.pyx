# cython: language_level=3
"""The event loop: epoll, accept, dispatch to connections, timeouts, stop.

Contract: Loop(state, listeners).run() serves until stop() is called (from a signal
handler, another thread, or because state.stop_requested was set after
max_requests), then stops gracefully: it stops accepting, closes idle keep-alive
connections, lets responses in flight finish until the graceful deadline, and
returns.  epoll_wait runs without the GIL.  Python signal handlers run promptly:
the loop's wakeup pipe is meant for signal.set_wakeup_fd(), and a byte on it makes
the loop call PyErr_CheckSignals(); an exception a handler raises ends run().
An exception from one connection is logged and closes that connection only.

Ownership (see fastwsgi/_conn_state.pxi): a connection handed to an app thread
(WANT_NONE) is registered with no events and EPOLLONESHOT, so epoll reports its
hang-up at most once; the loop then only records it (conn.hangup) and never reads,
writes, closes or calls into the connection until the thread hands it back
(handback -> _resume_done, which makes the loop its owner again).  Dispatch, the
timeout sweep and eviction all skip connections the loop does not own.
"""

cimport cython
from libc.errno cimport errno, EAGAIN, EINTR, EMFILE, ENFILE, ECONNABORTED
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memset

from fastwsgi._connection cimport (Connection, ServerState, WANT_CLOSE, WANT_READ,
                                   WANT_WRITE, WANT_NONE, WANT_UNREGISTERED, ST_READ,
                                   OWNER_LOOP, PROTO_UWSGI, now)

import collections
import os
import socket

from fastwsgi.errors import RequestTimeout

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* ev)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLEXCLUSIVE, EPOLLONESHOT
    int EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, EPOLL_CLOEXEC

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    int accept4(int fd, sockaddr* addr, socklen_t* alen, int flags)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int SOCK_NONBLOCK, SOCK_CLOEXEC, AF_INET, AF_INET6, AF_UNIX, SOL_SOCKET

cdef extern from "netinet/in.h" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    int IPPROTO_TCP
    unsigned short ntohs(unsigned short)

cdef extern from "netinet/tcp.h" nogil:
    int TCP_NODELAY

cdef extern from "arpa/inet.h" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)


cdef inline int _put_uint(char* out, unsigned int v) noexcept nogil:
    """Decimal digits of v at out; returns their count (v < 100000)."""
    cdef char tmp[8]
    cdef int n = 0, i
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline int _ipv4_text(const unsigned char* a, char* out) noexcept nogil:
    """a.b.c.d of a network-order IPv4 address, NUL-terminated; returns its
    length.  What inet_ntop prints, without its sprintf."""
    cdef int n = 0, i
    for i in range(4):
        if i:
            out[n] = b"."
            n += 1
        n += _put_uint(out + n, a[i])
    out[n] = 0
    return n

cdef extern from "unistd.h" nogil:
    ssize_t read(int fd, void* buf, size_t n)
    ssize_t write(int fd, const void* buf, size_t n)
    int c_close "close"(int fd)


DEF MAX_EVENTS = 512
DEF ACCEPT_BATCH = 64
DEF SWEEP_INTERVAL = 0.25
DEF EVICT_BATCH = 16
DEF DEFER_MAX = 64             # deferred responses sent at once at the latest
DEF IDLE_GRACE = 0.5


@cython.final
cdef class Loop:
    cdef int epfd
    cdef int wake_r, wake_w
    cdef ServerState st
    cdef dict conns
    cdef dict listeners          # fd -> (sock, is_tcp, protocol, proxy_protocol, trust,
                                 #        trust memo, base environ, Listener)
    cdef dict addr_cache
    cdef bint accepting
    cdef bint stopping
    cdef bint hard_stop
    cdef double graceful_deadline
    cdef double next_sweep
    cdef double accept_resume_at
    cdef public Py_ssize_t max_connections
    cdef public double graceful_timeout
    cdef public object on_tick          # called about every SWEEP_INTERVAL (worker heartbeat)
    cdef public Py_ssize_t threads      # app threads (0: the app runs on this thread)
    cdef Py_ssize_t in_app              # connections handed to app threads
    cdef object done                    # connections app threads handed back
    cdef object adopted                 # (fd, addr, port) given to adopt(), not yet served

    def __cinit__(self):
        self.epfd = -1
        self.wake_r = -1
        self.wake_w = -1

    def __init__(self, ServerState st, listeners=(), Py_ssize_t max_connections=10000,
                 double graceful_timeout=30.0):
        self.st = st
        st.deferred = []
        self.conns = {}
        self.done = collections.deque()
        self.adopted = collections.deque()
        self.listeners = {}
        self.addr_cache = {}
        self.max_connections = max_connections if max_connections > 0 else (1 << 30)
        self.graceful_timeout = graceful_timeout
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, os.strerror(errno))
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ctl(EPOLL_CTL_ADD, self.wake_r, EPOLLIN)
        for listener in listeners:
            self.add_listener(listener)
        self.accepting = True

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
        if self.wake_r >= 0:
            c_close(self.wake_r)
        if self.wake_w >= 0:
            c_close(self.wake_w)

    @property
    def wakeup_fd(self):
        """The write end for signal.set_wakeup_fd(): signals wake epoll_wait."""
        return self.wake_w

    @property
    def connections(self):
        return len(self.conns)

    @property
    def app_connections(self):
        """Connections app threads own now (handed off, not yet taken back)."""
        return self.in_app

    @property
    def is_stopping(self):
        return self.stopping

    cdef int _ctl(self, int op, int fd, uint32_t events) except -1:
        cdef epoll_event ev
        memset(&ev, 0, sizeof(ev))
        ev.events = events
        ev.data.fd = fd
        if epoll_ctl(self.epfd, op, fd, &ev) < 0:
            raise OSError(errno, os.strerror(errno))
        return 0

    def add_listener(self, listener):
        """Accept on `listener` (a fastwsgi.listeners.Listener: .sock, .protocol 0
        HTTP / 1 uwsgi, .proxy_protocol, .trust(remote_addr) -> bool or None,
        .base_environ, .refused(remote_addr)).  Read once here: each accepted
        connection gets its listener's protocol, trust and base environ."""
        sock = listener.sock
        sock.setblocking(False)
        fd = sock.fileno()
        is_tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        if is_tcp:
            # accepted sockets inherit TCP_NODELAY (one setsockopt per connection
            # less); TCP_DEFER_ACCEPT wakes us only once the request's first bytes
            # are there, so _accept can serve them without an epoll round
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        self.listeners[fd] = (sock, is_tcp, int(listener.protocol),
                              bool(listener.proxy_protocol), listener.trust, {},
                              <dict?>listener.base_environ, listener)
        if self.accepting or not self.stopping:
            # EPOLLEXCLUSIVE: with several workers on one socket, one wakes per connection
            self._ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLEXCLUSIVE)

    def adopt(self, sock, str remote_addr="", str remote_port=""):
        """Serve an already connected socket (thread-safe; the loop takes its fd once
        it runs): for tests that drive a connection over socket.socketpair(), and for
        embedding."""
        sock.setblocking(False)
        self.adopted.append((sock.detach(), remote_addr, remote_port))
        self._wake(b"\2")

    cdef int _adopt_pending(self) except -1:
        while self.adopted:
            fd, remote_addr, remote_port = self.adopted.popleft()
            self._serve_new(self._new_connection(fd, remote_addr, remote_port))
        return 0

    cdef Connection _new_connection(self, int fd, str remote, str port):
        """A Connection for an accepted fd (closed if that fails)."""
        try:
            return Connection(self.st, fd, remote, port)
        except BaseException:
            c_close(fd)
            raise

    cdef int _serve_new(self, Connection conn) except -1:
        """Serve what has arrived right away; only a connection that stays open is
        registered with epoll (a one-shot one never is)."""
        self.conns[conn.fd] = conn
        conn.interest = WANT_UNREGISTERED
        self._dispatch(conn, EPOLLIN)
        return 0

    cdef void _wake(self, bytes why) noexcept:
        """Wake epoll_wait from another thread or a signal handler."""
        try:
            os.write(self.wake_w, why)
        except BaseException:
            pass

    cdef void _pause_accepting(self) noexcept:
        if not self.accepting:
            return
        self.accepting = False
        for fd in self.listeners:
            try:
                self._ctl(EPOLL_CTL_DEL, fd, 0)
            except OSError:
                pass

    cdef void _resume_accepting(self) noexcept:
        if self.accepting or self.stopping:
            return
        self.accepting = True
        for fd in self.listeners:
            try:
                self._ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLEXCLUSIVE)
            except OSError:
                pass

    def stop(self, graceful=True):
        """Ask the loop to stop; safe from signal handlers and other threads."""
        if not graceful:
            self.hard_stop = True
        if not self.stopping:
            self.stopping = True
            self.graceful_deadline = now() + self.graceful_timeout
            # every response from now on says Connection: close
            self.st.stop_requested = True
        self._wake(b"\0")

    def handback(self, conn):
        """An app thread is done with `conn` (thread-safe): the loop takes it back."""
        self.done.append(conn)
        self._wake(b"\1")

    cdef int _resume_done(self) except -1:
        cdef Connection conn
        cdef int want
        while self.done:
            conn = self.done.popleft()
            self.in_app -= 1
            conn.owner = OWNER_LOOP
            try:
                want = conn.on_resume()
            except Exception as exc:
                self.st.logger.error("internal error on a connection; closing it", exc_info=exc)
                want = WANT_CLOSE
            conn.interest = WANT_NONE
            self._apply(conn, want)
        if self.threads and self.in_app < self.threads and len(self.conns) < self.max_connections:
            self._resume_accepting()
        return 0

    cdef int _accept(self, int lfd, tuple entry) except -1:
        cdef sockaddr_storage addr
        cdef socklen_t alen
        cdef int fd, one = 1, i
        cdef char host[64]
        cdef Connection conn
        cdef str remote, port
        cdef object trusted
        for i in range(ACCEPT_BATCH):
            if self.st.stop_requested or not self.accepting:
                # serving inline (below) can end the worker (max-requests) or fill
                # the connection table: then stop taking more
                return 0
            alen = sizeof(addr)
            fd = accept4(lfd, <sockaddr*>&addr, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EINTR or errno == ECONNABORTED:
                    continue
                if errno == EMFILE or errno == ENFILE:
                    # out of descriptors: stop accepting for a moment, keep serving
                    self.st.logger.error("accept: too many open files; pausing accept")
                    self._pause_accepting()
                    self.accept_resume_at = now() + 0.5
                return 0
            remote = ""
            port = ""
            if addr.ss_family == AF_INET:
                _ipv4_text(<const unsigned char*>&(<sockaddr_in*>&addr).sin_addr, host)
                remote = self._intern_addr(host)
                port = host[:_put_uint(host, ntohs((<sockaddr_in*>&addr).sin_port))].decode("ascii")
            elif addr.ss_family == AF_INET6:
                inet_ntop(AF_INET6, &(<sockaddr_in6*>&addr).sin6_addr, host, sizeof(host))
                remote = self._intern_addr(host)
                port = host[:_put_uint(host, ntohs((<sockaddr_in6*>&addr).sin6_port))].decode("ascii")
            try:
                trusted = False
                if entry[4] is not None:
                    # trust(remote) is a Python call; its answers are kept per
                    # listener (peers are few: the proxies), bounded like addr_cache
                    memo = <dict>entry[5]
                    trusted = memo.get(remote)
                    if trusted is None:
                        trusted = bool(entry[4](remote))
                        if len(memo) < 4096:
                            memo[remote] = trusted
                if entry[2] == PROTO_UWSGI and not trusted:
                    # a uwsgi packet sets any CGI variable (REMOTE_ADDR, HTTPS,
                    # REMOTE_USER): only the listener's trusted peers may send one
                    c_close(fd)
                    fd = -1
                    entry[7].refused(remote)
                    continue
            except BaseException:
                if fd >= 0:
                    c_close(fd)
                raise
            # (from here on the connection owns fd: it closes it if what follows fails)
            conn = self._new_connection(fd, remote, port)
            conn.protocol = entry[2]
            conn.proxy_pending = entry[3]
            conn.trusted = trusted
            conn.base_environ = <dict>entry[6]
            self._serve_new(conn)
            if len(self.conns) >= self.max_connections and not self._evict_idle():
                self._pause_accepting()
                return 0
        return 0

    cdef bint _evict_idle(self) except -1:
        """At the connection cap, close up to EVICT_BATCH idle keep-alive connections,
        oldest first (dicts keep accept order), to make room -- as nginx drains its
        keep-alive connections when it runs out.  A connection in the middle of a
        request is never closed for this.  True if room was made."""
        cdef Connection conn
        cdef list idle = []
        for conn in self.conns.values():
            if (conn.owner == OWNER_LOOP and conn.state == ST_READ and conn.is_idle()
                    and conn.interest != WANT_UNREGISTERED):
                idle.append(conn)
                if len(idle) == EVICT_BATCH:
                    break
        for conn in idle:
            self._drop(conn)
        if idle:
            self.st.logger.debug("at --max-connections: closed %d idle keep-alive "
                                 "connections", len(idle))
        return len(idle) > 0

    cdef str _intern_addr(self, const char* host):
        cdef str s = host.decode("ascii")
        cdef object cached = self.addr_cache.get(s)
        if cached is not None:
            return <str>cached
        if len(self.addr_cache) < 4096:
            self.addr_cache[s] = s
        return s

    cdef void _apply(self, Connection conn, int want) noexcept:
        """Act on what a connection asked for: close it or change its interest.
        WANT_NONE always means a new hand-off to an app thread (also straight
        from _resume_done, for a pipelined request): it is counted in in_app."""
        cdef int fd = conn.fd
        cdef int op = EPOLL_CTL_MOD
        if want == WANT_CLOSE:
            self._drop(conn)
            return
        if want == WANT_UNREGISTERED:      # "as before" from a connection never registered
            want = WANT_READ
        if want == WANT_NONE:
            self.in_app += 1
            if self.threads and self.in_app >= self.threads:
                # every app thread is busy: new clients wait in the kernel's
                # backlog (for another worker) rather than in our memory
                self._pause_accepting()
        if want != conn.interest or want == WANT_NONE:
            if conn.interest == WANT_UNREGISTERED:
                op = EPOLL_CTL_ADD
            conn.interest = want
            try:
                # WANT_NONE: an app thread owns it; a hang-up is reported once
                # (EPOLLONESHOT, re-armed by this MOD at each hand-off)
                self._ctl(op, fd, EPOLLIN if want == WANT_READ else
                          (EPOLLOUT if want == WANT_WRITE else EPOLLONESHOT))
            except OSError:
                if conn.owner == OWNER_LOOP:
                    self._drop(conn)
                else:
                    conn.hangup = True       # its owner closes it when done

    cdef void _drop(self, Connection conn) noexcept:
        self.conns.pop(conn.fd, None)
        conn.close()        # closing the fd also removes it from the epoll set
        if not self.accepting and len(self.conns) < self.max_connections:
            if self.accept_resume_at == 0 and not (self.threads and self.in_app >= self.threads):
                self._resume_accepting()

    cdef int _flush_deferred(self) except -1:
        """Send the responses deferred during this batch (see Connection._serve)."""
        cdef Connection conn
        cdef list batch = self.st.deferred
        cdef int want
        self.st.deferred = []
        for conn in batch:
            if conn.owner != OWNER_LOOP:
                continue
            try:
                want = conn.send_deferred()
            except Exception as exc:
                self.st.logger.error("internal error on a connection; closing it", exc_info=exc)
                want = WANT_CLOSE
            self._apply(conn, want)
        return 0

    cdef int _dispatch(self, Connection conn, uint32_t events) except -1:
        cdef int want
        if conn.owner != OWNER_LOOP:
            # an app thread owns it: record what epoll saw, for the owner to act on
            if events & (EPOLLERR | EPOLLHUP):
                conn.hangup = True
            return 0
        try:
            if conn.interest == WANT_WRITE:
                want = conn.on_writable()
            else:
                want = conn.on_readable()
        except Exception as exc:
            self.st.logger.error("internal error on a connection; closing it", exc_info=exc)
            want = WANT_CLOSE
        except RequestTimeout:
            # the --timeout watchdog's exception landed outside the app (it raced
            # with the app's return): it is for the request, not for the loop
            self.st.logger.error("request timed out; closing its connection")
            want = WANT_CLOSE
        except BaseException:
            self._drop(conn)         # KeyboardInterrupt, SystemExit: stop the loop
            raise
        self._apply(conn, want)
        if len(self.st.deferred) >= DEFER_MAX:
            self._flush_deferred()
        return 0

    cdef void _sweep(self, double t) noexcept:
        """Close connections whose deadline passed; when stopping, idle ones too."""
        cdef Connection conn
        cdef list expired = []
        for conn in self.conns.values():
            if conn.owner != OWNER_LOOP:
                continue
            if conn.deadline <= t:
                expired.append(conn)
            elif self.stopping and conn.state == ST_READ and conn.is_idle():
                # an idle keep-alive connection: give a request that may be on its
                # way a moment to arrive (it is then answered with Connection:
                # close), then close it
                if conn.deadline > t + IDLE_GRACE:
                    conn.deadline = t + IDLE_GRACE
        for conn in expired:
            try:
                conn.on_timeout()
            except Exception:
                pass
            self._drop(conn)

    def run(self, long long until_requests=-1, double timeout=-1.0):
        """Serve until stopped (or until `until_requests` requests were served, or
        `timeout` seconds passed: handle_request()).  Returns the number served."""
        cdef epoll_event events[MAX_EVENTS]
        cdef int n, i, fd, ms
        cdef double t, t_end = (now() + timeout) if timeout >= 0 else 0
        cdef long long start = self.st.requests
        cdef char drain[256]
        cdef object entry, conn_obj
        self.next_sweep = now() + SWEEP_INTERVAL
        while True:
            if self.hard_stop:
                break
            if self.done:
                self._resume_done()
            if self.adopted:
                self._adopt_pending()
            if self.st.deferred:
                self._flush_deferred()   # before sleeping in epoll_wait
            if self.st.stop_requested and not self.stopping:
                self.stop()
            if self.stopping:
                self._pause_accepting()
                if not self.conns or now() >= self.graceful_deadline:
                    break
            if until_requests >= 0 and self.st.requests - start >= until_requests:
                break
            t = now()
            ms = <int>((self.next_sweep - t) * 1000) + 1
            if ms < 0:
                ms = 0
            if t_end and t_end - t < ms / 1000.0:
                ms = <int>((t_end - t) * 1000) + 1 if t_end > t else 0
            with nogil:
                n = epoll_wait(self.epfd, events, MAX_EVENTS, ms)
            if n < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                raise OSError(errno, os.strerror(errno))
            for i in range(n):
                fd = events[i].data.fd
                conn_obj = self.conns.get(fd)
                if conn_obj is not None:
                    self._dispatch(<Connection>conn_obj, events[i].events)
                elif fd == self.wake_r:
                    while read(self.wake_r, drain, sizeof(drain)) > 0:
                        pass
                    PyErr_CheckSignals()
                    if self.done:
                        self._resume_done()
                else:
                    entry = self.listeners.get(fd)
                    if entry is not None and self.accepting:
                        self._accept(fd, <tuple>entry)
            if self.st.deferred:
                self._flush_deferred()
            t = now()
            if t >= self.next_sweep:
                self.next_sweep = t + SWEEP_INTERVAL
                if self.accept_resume_at and t >= self.accept_resume_at:
                    self.accept_resume_at = 0
                    if len(self.conns) < self.max_connections:
                        self._resume_accepting()
                self._sweep(t)
                if self.on_tick is not None:
                    self.on_tick()
            if t_end and t >= t_end:
                break
        return self.st.requests - start

    def close(self):
        """Close every connection (the listeners belong to the caller)."""
        cdef Connection conn
        for conn in list(self.conns.values()):
            if conn.owner == OWNER_LOOP:
                conn.close()     # (one an app thread still runs is left to it)
        self.conns.clear()
        for fd in list(self.listeners):
            try:
                self._ctl(EPOLL_CTL_DEL, fd, 0)
            except OSError:
                pass
        self.listeners.clear()
