"""The Python face of the server: sockets, the base environ, and the public API.

Contract:
- ``bind_sockets(config)`` (fastwsgi.listeners, re-exported) opens the listening
  sockets of ``config.bind``; a failure raises OSError carrying ``.address``.
- ``Server(app, config, sockets=None)`` wires an app to the compiled loop
  (fastwsgi._loop) and connection (fastwsgi._connection); ``sockets`` may be
  sockets bound elsewhere or fastwsgi.listeners.Listener records, and each
  listening socket is served with its own record (protocol, trust, base
  environ).  Its methods are the
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
import threading

from fastwsgi import __version__, hooks
from fastwsgi._connection import ServerState
from fastwsgi._loop import Loop
from fastwsgi._parser import Limits
from fastwsgi.config import Config
from fastwsgi import proxy
# the binding code lives in fastwsgi.listeners; these names stay importable from here
from fastwsgi.listeners import (base_environ, bind_listeners, bind_one, bind_sockets,
                                listeners_for, socket_url, systemd_sockets)

_bind_one = bind_one        # the old private name (arbiter/worker imported it)

__all__ = ["Server", "make_server", "run", "serve", "bind_sockets", "bind_listeners"]

log = logging.getLogger("fastwsgi.error")


def raise_fd_limit():
    """Let one process hold as many connections as the hard limit allows."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def make_state(app, config, sock=None, multiprocess=False, access_log=None):
    """The state the connections share; its base_environ is for connections made
    without a listener (tests over socketpair()): a listener brings its own.  Its
    logger escapes the client bytes the connections log (fastwsgi.logs.ClientLog)."""
    from fastwsgi.logs import ClientLog
    limits = Limits(
        max_request_line=config.limit_request_line,
        max_header_bytes=config.limit_header_size,
        max_headers=config.limit_request_fields,
        max_body=config.limit_request_body,
    )
    return ServerState(
        app,
        base_environ(config, sock, multithread=config.threads > 1, multiprocess=multiprocess),
        limits,
        script_name=config.root_path,
        server_header=config.server_header,
        keep_alive=config.keep_alive,
        header_timeout=config.header_timeout,
        io_timeout=config.io_timeout,
        access_log=access_log,
        logger=ClientLog(log),
    )


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
        self.app = app
        raise_fd_limit()
        if sockets is None:
            self.listeners = bind_listeners(self.config, multiprocess=multiprocess)
        else:
            self.listeners = listeners_for(self.config, sockets, multiprocess=multiprocess)
        self.sockets = [listener.sock for listener in self.listeners]
        first = self.sockets[0] if self.sockets else None
        self.state = make_state(app, self.config, first, multiprocess=multiprocess,
                                access_log=access_log)
        self.loop = Loop(self.state, (),
                         max_connections=self.config.max_connections,
                         graceful_timeout=self.config.graceful_timeout)
        for listener in self.listeners:
            self.loop.add_listener(listener)
        self.state.forwarded = proxy.forwarded_handler(self.config)
        self.threads = None
        if self.config.threads > 1:
            self.loop.threads = self.config.threads
            self.threads = AppThreads(self.loop, self.config.threads)
            self.state.dispatch = self.threads.dispatch
        self._stopped = threading.Event()
        self._stopped.set()

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


def _install_signals(loop):
    """SIGINT/SIGTERM stop gracefully; a second one stops at once."""
    def handler(signum, frame):
        if loop.is_stopping:
            loop.stop(graceful=False)
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


def serve(app, config, sockets=None):
    """The CLI's single-process server (on ``sockets`` if already bound: sockets or
    Listener records). Returns the exit status."""
    from fastwsgi.logs import AccessLog
    access = AccessLog.from_config(config)
    server = Server(app, config, sockets=sockets, access_log=access)
    _install_signals(server.loop)
    # the banner comes last: whoever waits for it may signal us right away
    log.info("fastwsgi %s listening on %s (pid %d)", __version__,
             ", ".join(server.urls), os.getpid())
    hooks.call(config, "when_ready", hooks.current_server())
    try:
        server.serve_forever()
    finally:
        # the process is about to exit: a second Ctrl-C must not turn into a
        # KeyboardInterrupt traceback during interpreter shutdown
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.server_close()
    log.info("stopped")
    return 0
