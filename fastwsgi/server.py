"""The Python face of the server: sockets, the base environ, and the public API.

Contract:
- ``bind_sockets(config)`` opens the listening sockets of ``config.bind`` (TCP v4/v6,
  ``unix:PATH``, ``fd://N``); a failure raises OSError carrying ``.address``.
- ``Server(app, config, sockets=None)`` wires an app to the compiled loop
  (fastwsgi._loop) and connection (fastwsgi._connection); its methods are the
  ``wsgiref.simple_server`` ones: serve_forever(), handle_request(), shutdown(),
  server_close(), server_address.
- ``make_server(host, port, app, **options)`` and ``run(app, host, port, **options)``
  are the Python API; options are the setting names of fastwsgi.config.
- ``serve(app, config)`` is what the CLI runs in a single process: bind, banner,
  SIGINT/SIGTERM stop gracefully, return the exit status.
"""

import logging
import os
import resource
import signal
import socket
import stat
import sys
import threading

from fastwsgi import __version__
from fastwsgi._connection import FileWrapper, ServerState
from fastwsgi._loop import Loop
from fastwsgi._parser import Limits
from fastwsgi.config import Config, parse_bind
from fastwsgi import proxy

__all__ = ["Server", "make_server", "run", "serve", "bind_sockets"]

log = logging.getLogger("fastwsgi.error")


def _idna_free(host):
    """``host`` for getaddrinfo(), as bytes when that is what the idna codec makes of it.

    getaddrinfo() encodes a str host with the idna codec, whose module imports
    stringprep and unicodedata (kept for the life of the server).  For an ASCII
    name whose labels are 1-63 bytes long (the last may be empty: "host.") the
    codec returns the ASCII bytes; anything else stays a str, for the codec.
    """
    try:
        raw = host.encode("ascii")
    except UnicodeEncodeError:
        return host
    labels = raw.split(b".")
    if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
        return raw
    return host


def _bind_one(addr, backlog, unix_mode, reuse_port=False):
    if addr.kind == "fd":
        sock = socket.socket(fileno=addr.fd)
        return sock
    if addr.kind == "unix":
        try:
            if stat.S_ISSOCK(os.stat(addr.path).st_mode):
                os.unlink(addr.path)        # a stale socket of an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o777 & ~unix_mode)
            try:
                sock.bind(addr.path)
            finally:
                os.umask(old)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    host = addr.host
    if family == socket.AF_INET and host not in ("", "0.0.0.0"):
        # a host name: resolve it the way the kernel would connect
        infos = socket.getaddrinfo(_idna_free(host), addr.port, 0, socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        host = sockaddr[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, addr.port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def systemd_sockets():
    """Sockets passed by systemd socket activation, or [].

    sd_listen_fds(3): when LISTEN_PID is this process, fds 3 .. 3+LISTEN_FDS-1 are
    listening sockets.  The variables are then removed, so that processes the app
    starts do not take the fds for theirs.
    """
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(3, 3 + count):
        try:
            sockets.append(socket.socket(fileno=fd))
        except OSError as exc:
            exc.address = f"LISTEN_FDS fd {fd}"
            raise
    return sockets


def bind_sockets(config, reuse_port=None):
    """The listening sockets for config.bind; OSError.address names a failing bind.

    Under systemd socket activation (LISTEN_FDS) the inherited sockets are used
    instead of config.bind, as gunicorn does.
    """
    inherited = systemd_sockets()
    if inherited:
        for sock in inherited:
            sock.set_inheritable(True)
        return inherited
    sockets = []
    reuse = config.reuse_port if reuse_port is None else reuse_port
    try:
        for text in config.bind:
            addr = parse_bind(text)
            try:
                sockets.append(_bind_one(addr, config.backlog, config.unix_socket_mode, reuse))
            except OSError as exc:
                exc.address = text
                raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets


def socket_url(sock):
    """How the banner names a listening socket."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def raise_fd_limit():
    """Let one process hold as many connections as the hard limit allows."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def base_environ(config, sock, multithread=False, multiprocess=False):
    """The keys every request of a listener shares (PEP 3333 §"environ Variables")."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        name = sock.getsockname()
        server_name, server_port = name[0], str(name[1])
    else:
        server_name, server_port = "localhost", "80"
    # (SCRIPT_NAME is the parser's: it splits it from PATH_INFO per request; a
    # base without request keys is cloned by the parser, the fast path)
    return _roomy({
        "GATEWAY_INTERFACE": "CGI/1.1",
        # set per connection / request by the compiled connection; present here
        # so that setting them overwrites instead of growing the dict
        "REMOTE_ADDR": "",
        "REMOTE_PORT": "",
        "wsgi.input": None,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": f"fastwsgi/{__version__}",
    })


def _roomy(base):
    """`base`, rebuilt so that its copies take a request's keys without resizing.

    Each request's environ is PyDict_Copy(base), which memcpys a compact dict's
    table (CPython's fast path needs used >= 2/3 of the table's entries).  A
    15-key dict has a 32-slot table that a dozen request keys overflow: one
    resize per request.  Inserting 7 placeholders first grows the table to 64
    slots; deleting them keeps the dict compact enough (15 >= 2/3 * 22) for the
    fast copy, which then has room for about 20 request keys.  Measured: a copy
    plus a typical request's keys goes from ~1.9 to ~0.4 us.  The keys are
    interned so that the compiled code's constants find them by identity.  On other dict
    implementations this is merely a dict with the same items."""
    roomy = {sys.intern(key): value for key, value in base.items()}
    n = len(base)
    pads = [f"\0pad{i}" for i in range(max(0, min(22 - n, n // 2)))]
    for key in pads:
        roomy[key] = None
    for key in pads:
        del roomy[key]
    return roomy


def request_timing(config):
    """Whether requests carry environ["fastwsgi.request_start"] and ["fastwsgi.queue_time"]
    (docs/observability.md): asked for, or needed by the JSON access log, the slow-request
    log or OpenTelemetry.  Off otherwise: two dict stores per request are ~5% of a
    hello-world request's instructions."""
    return bool(config.request_timing or config.otel or config.log_slow_requests
                or (config.access_log and config.access_log_format == "json"))


def make_state(app, config, sock=None, multiprocess=False, access_log=None):
    timing = request_timing(config)
    limits = Limits(
        max_request_line=config.limit_request_line,
        max_header_bytes=config.limit_header_size,
        max_headers=config.limit_request_fields,
        max_body=config.limit_request_body,
    )
    base = base_environ(config, sock, multithread=config.threads > 1, multiprocess=multiprocess)
    if timing:
        # placeholders, so that each request overwrites them rather than grows its dict
        base = _roomy(dict(base, **{"fastwsgi.request_start": 0.0, "fastwsgi.queue_time": 0.0}))
    state = ServerState(
        app,
        base,
        limits,
        script_name=config.root_path,
        server_header=config.server_header,
        keep_alive=config.keep_alive,
        header_timeout=config.header_timeout,
        io_timeout=config.io_timeout,
        access_log=access_log,
        logger=log,
    )
    if timing:
        state.clock_requests = state.timing_environ = True
    return state


class AppThreads:
    """--threads N: the app runs in N threads; the loop keeps all other socket I/O.

    The loop hands a connection with a parsed request to dispatch() (on the loop
    thread); a pool thread runs it (conn.run_app) and hands it back with
    loop.handback(), which wakes the loop.  Thread i writes watchdog slot i.
    """

    def __init__(self, loop, count):
        import queue  # here: a server without --threads has no use for it

        self.loop = loop
        self.queue = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._work, args=(slot,), daemon=True,
                             name=f"fastwsgi-app-{slot}")
            for slot in range(1, count + 1)
        ]
        for thread in self.threads:
            thread.start()

    def dispatch(self, conn):
        self.queue.put(conn)

    def _work(self, slot):
        while True:
            conn = self.queue.get()
            if conn is None:
                return
            try:
                conn.run_app(slot)
            except BaseException:
                log.exception("app thread %d failed", slot)
            finally:
                self.loop.handback(conn)

    def stop(self, timeout=5.0):
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(timeout)


class Server:
    """A server in this process; the wsgiref.simple_server interface."""

    timeout = None          # handle_request() waits forever, as in socketserver

    def __init__(self, app, config=None, sockets=None, access_log=None, multiprocess=False):
        self.config = config or Config()
        if self.config.otel:
            from fastwsgi.otel import instrument   # here: after fork, in each worker
            app = instrument(app, self.config)
        self.app = app
        raise_fd_limit()
        self.sockets = sockets if sockets is not None else bind_sockets(self.config)
        first = self.sockets[0] if self.sockets else None
        self.state = make_state(app, self.config, first, multiprocess=multiprocess,
                                access_log=access_log)
        self.loop = Loop(self.state, (),
                         max_connections=self.config.max_connections,
                         graceful_timeout=self.config.graceful_timeout)
        for sock in self.sockets:
            self.loop.add_listener(sock, **proxy.listener_options(self.config, sock))
        self.state.forwarded = proxy.forwarded_handler(self.config)
        self.threads = None
        if self.config.threads > 1:
            self.loop.threads = self.config.threads
            self.threads = AppThreads(self.loop, self.config.threads)
            self.state.dispatch = self.threads.dispatch
        self._stopped = threading.Event()
        self._stopped.set()
        self.draining = False       # --drain-delay: /readyz says 503, still serving
        self.status = None
        if self.config.status_bind:
            from fastwsgi.status import for_server   # metrics; our own /metrics if no master
            self.status = for_server(self)

    @property
    def server_address(self):
        return self.sockets[0].getsockname()

    @property
    def urls(self):
        return [socket_url(s) for s in self.sockets]

    def serve_forever(self, poll_interval=0.5):
        self._stopped.clear()
        try:
            self.loop.run()
        finally:
            self._stopped.set()

    def handle_request(self):
        """Serve one request (waiting up to self.timeout), then return."""
        self.loop.run(1, -1.0 if self.timeout is None else float(self.timeout))

    def shutdown(self):
        """Stop serve_forever() (from another thread) and wait until it returns."""
        self.loop.stop()
        self._stopped.wait()

    def server_close(self):
        if self.status is not None:
            self.status.close()
            self.status = None
        if self.threads is not None:
            self.threads.stop()
            self.threads = None
        self.loop.close()
        for sock in self.sockets:
            path = sock.getsockname() if sock.family == socket.AF_UNIX else None
            sock.close()
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server_close()


def make_server(host, port, app, server_class=None, handler_class=None, **options):
    """A drop-in for wsgiref.simple_server.make_server (the extra classes are ignored)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    config = Config.from_options(bind=[f"{host}:{port}"], **options)
    return Server(app, config)


def _install_signals(loop, server=None):
    """SIGINT/SIGTERM stop gracefully (after --drain-delay); a second one stops at
    once (or ends the drain delay)."""
    def handler(signum, frame):
        if loop.is_stopping:
            loop.stop(graceful=False)
        elif server is not None and server.config.drain_delay and not server.draining:
            delay = server.config.drain_delay
            log.info("draining (%s): /readyz answers 503; stopping in %gs",
                     signal.Signals(signum).name, delay)
            server.draining = True
            timer = threading.Timer(delay, loop.stop)
            timer.daemon = True
            timer.start()
        else:
            log.info("stopping (%s)", signal.Signals(signum).name)
            loop.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    old_fd = signal.set_wakeup_fd(loop.wakeup_fd, warn_on_full_buffer=False)
    return previous, old_fd


def _restore_signals(saved):
    previous, old_fd = saved
    signal.set_wakeup_fd(old_fd)
    for sig, h in previous.items():
        signal.signal(sig, h)


def run(app, host="127.0.0.1", port=8000, **options):
    """Serve `app` until SIGINT/SIGTERM (the Python API's one-liner)."""
    from fastwsgi.logs import setup_logging
    server = make_server(host, port, app, **options)
    setup_logging(server.config)
    saved = _install_signals(server.loop)
    log.info("fastwsgi %s listening on %s (pid %d)", __version__,
             ", ".join(server.urls), os.getpid())
    try:
        server.serve_forever()
    finally:
        _restore_signals(saved)
        server.server_close()


def serve(app, config):
    """The CLI's single-process server. Returns the exit status."""
    from fastwsgi.logs import AccessLog
    access = AccessLog.from_config(config)
    server = Server(app, config, access_log=access)
    _install_signals(server.loop, server)
    # the banner comes last: whoever waits for it may signal us right away
    log.info("fastwsgi %s listening on %s (pid %d)", __version__,
             ", ".join(server.urls), os.getpid())
    try:
        server.serve_forever()
    finally:
        # the process is about to exit: a second Ctrl-C must not turn into a
        # KeyboardInterrupt traceback during interpreter shutdown
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.server_close()
    log.info("stopped")
    return 0
