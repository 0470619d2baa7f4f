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
import time

from fastwsgi import __version__, hooks
from fastwsgi._connection import ServerState
from fastwsgi._loop import Loop
from fastwsgi._parser import Limits
from fastwsgi.config import Config
from fastwsgi import proxy
from fastwsgi.errors import RequestTimeout
# the binding code lives in fastwsgi.listeners; these names stay importable from here
from fastwsgi.listeners import (base_environ, bind_listeners, bind_one, bind_sockets,
                                listeners_for, request_timing, socket_url,
                                systemd_sockets)



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
    timing = request_timing(config)
    limits = Limits(
        max_request_line=config.limit_request_line,
        max_header_bytes=config.limit_header_size,
        max_headers=config.limit_request_fields,
        max_body=config.limit_request_body,
    )
    state = ServerState(
        app,
        base_environ(config, sock, multithread=config.threads > 1, multiprocess=multiprocess),
        limits,
        script_name=config.root_path,
        server_header=config.server_header,
        keep_alive=config.keep_alive,
        header_timeout=config.header_timeout,
        io_timeout=config.io_timeout,
        body_timeout=config.body_timeout,
        body_min_rate=config.body_min_rate,
        body_buffer_size=config.body_buffer_size,
        body_temp_dir=config.body_temp_dir,
        stream_body=config.stream_request_body,
        body_cache_size=config.body_cache_size,
        access_log=access_log,
        logger=ClientLog(log),
    )
    if timing:
        state.clock_requests = state.timing_environ = True
    return state


class AppThreads:
    """--threads N: the app runs in N threads; the loop keeps all other socket I/O.

    The loop hands a connection with a parsed request to dispatch() (on the loop
    thread); a pool thread runs it (conn.run_app) and hands it back with
    loop.handback(), which wakes the loop.  Each thread has a watchdog slot (its
    index, 1..); ``running`` maps a slot to the connection its thread is serving,
    so the worker's watchdog (fastwsgi.watchdog) can answer it 504 and raise
    RequestTimeout in exactly that thread, under ``lock``: the thread clears its
    slot under the same lock, so the exception never targets a thread that has
    moved on.  A thread that does not unwind is declared lost: a replacement
    takes a free slot (``spare`` of them beyond N) and the loop's thread count
    (which pauses accepting when every thread is busy) follows.
    """

    def __init__(self, loop, count, spare=0):
        import queue  # here: a server without --threads has no use for it

        self.loop = loop
        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.running = {}             # slot -> (conn, request key) while in the app
        self.threads = {}             # slot -> Thread
        self.lost = set()             # slots of lost threads (still stuck)
        self.free = list(range(count + spare, count, -1))   # spare slots, pop() lowest
        self.requests = 0             # request keys: one per dispatched request
        self.stopping = False
        self.exit_requested = None    # callable(reason, why): set by the worker
        loop.threads = count
        for slot in range(1, count + 1):
            self._start(slot)

    @property
    def lost_count(self):
        return len(self.lost)

    def _start(self, slot):
        thread = threading.Thread(target=self._work, args=(slot,), daemon=True,
                                  name=f"fastwsgi-app-{slot}")
        self.threads[slot] = thread
        thread.start()

    def dispatch(self, conn):
        self.queue.put(conn)

    def _work(self, slot):
        while True:
            conn = self.queue.get()
            if conn is None:
                return
            with self.lock:
                self.requests += 1
                self.running[slot] = (conn, self.requests)
            try:
                self._run(slot, conn)
            except RequestTimeout:
                pass                  # came while _run handled another exception
            if self._release(slot, conn):
                return

    def _run(self, slot, conn):
        try:
            conn.run_app(slot)
        except RequestTimeout:
            pass                      # answered 504 and logged by the watchdog
        except SystemExit as exc:
            log.error("the application raised SystemExit(%r) while iterating its "
                      "response; the connection is closed", exc.code)
            if self.exit_requested is not None:
                self.exit_requested("app-exit", "had the application raise "
                                                "SystemExit in a request")
        except BaseException:
            log.exception("app thread %d failed", slot)

    def _release(self, slot, conn):
        """Clear the slot and hand ``conn`` back; True if this thread was lost (it
        then ends: its replacement runs).  A RequestTimeout the watchdog raised as
        the app returned is delivered at this thread's next bytecode: absorbed
        here, however late, so that the connection is handed back exactly once."""
        lost = None
        while lost is None:
            try:
                with self.lock:
                    self.running.pop(slot, None)
                    lost = slot in self.lost
                    if lost:
                        self.lost.discard(slot)
                        self.threads.pop(slot, None)
                        self.free.append(slot)
                        self.loop.threads -= 1
                _delivered()
            except RequestTimeout:
                pass
        self.loop.handback(conn)
        if lost:
            log.warning("lost app thread %d unwound at last; it ends (its replacement "
                        "serves)", slot)
        return lost

    # -- the watchdog's side (fastwsgi.watchdog.Watchdog, its own thread) ---------

    def busy(self, shared):
        """(slot, request key, thread ident, start time) of every thread in the app."""
        with self.lock:
            running = [(slot, key, self.threads[slot].ident)
                       for slot, (conn, key) in self.running.items()
                       if slot in self.threads]
        return [(slot, key, ident, shared.slot(slot)) for slot, key, ident in running]

    def time_out(self, slot, key, ident):
        """Answer the request ``key`` of thread ``slot`` and raise RequestTimeout in
        that thread: 504 / 0 (see Connection.app_timed_out), None if it is over."""
        from fastwsgi.watchdog import raise_in_thread

        with self.lock:
            entry = self.running.get(slot)
            if entry is None or entry[1] != key:
                return None
            answered = entry[0].app_timed_out()
            raise_in_thread(ident)
        return answered

    def thread_lost(self, slot, key):
        """The thread still runs request ``key`` after the grace: count it lost and
        start a replacement (if a slot is free).  True if it was declared lost."""
        with self.lock:
            entry = self.running.get(slot)
            if entry is None or entry[1] != key or slot in self.lost or self.stopping:
                return False
            self.lost.add(slot)
            if not self.free:
                return True
            new = self.free.pop()
            self.loop.threads += 1
        self._start(new)
        return True

    def stop(self, timeout=5.0):
        with self.lock:
            self.stopping = True
            threads = list(self.threads.values())
        for _ in threads:
            self.queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _delivered():
    """A Python call: a pending asynchronous exception is raised by the time it returns."""


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
            self.threads = AppThreads(self.loop, self.config.threads,
                                      spare=self.config.max_lost_threads)
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


def serve(app, config, sockets=None):
    """The CLI's single-process server (on ``sockets`` if already bound: sockets or
    Listener records). Returns the exit status."""
    from fastwsgi.logs import AccessLog
    access = AccessLog.from_config(config)
    server = Server(app, config, sockets=sockets, access_log=access)
    _install_signals(server.loop, server)
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
