"""One worker process of the pre-fork model (the master is fastwsgi/arbiter.py).

Contract: the master forks, and the child calls ``Worker(...).run()``, which returns
the exit status; the caller passes it to ``os._exit`` (a worker never returns into
the master's code and never runs the master's atexit handlers). Exit statuses:
0 stopped (signal, recycled, master gone), ``WORKER_BOOT_ERROR`` (post_fork
hook or server setup failed), ``APP_LOAD_ERROR`` (the app did not import).  The
master tells a failed boot from an app that exits by the state below (an exit
status alone proves nothing: the app may call ``os._exit(4)``).

What a worker shares with the master is one small anonymous ``mmap`` (``Shared``),
created by the master before the fork:

    offset 0   heartbeat   CLOCK_MONOTONIC seconds of the last loop tick (0: booting)
    offset 8   state       BOOTING, SERVING, RETIRING (stopping on its own or told to)
    offset 16  recycle     0.0, or the code of a reason (RECYCLE_REASONS) why this
                           worker asks to be replaced; the master starts the
                           replacement and stops this one once the new one serves
    offset 24  slots       one double per thread that runs the app: the start time of
                           the app call in progress, 0.0 when idle or waiting on the
                           client (written by the compiled layer:
                           ServerState.set_watchdog)
    then       message     why the app did not load, UTF-8, NUL-padded (MESSAGE_SIZE
                           bytes): its one line, NUL, the app's traceback; at start the
                           master prints them as the CLI does for one process

--timeout is enforced inside the worker (fastwsgi.watchdog: 504, the stuck
thread's stack, RequestTimeout raised in it, lost threads replaced).  The master
only watches the heartbeat: a loop thread stuck in C code stops it, and the worker
is killed after --timeout plus --timeout-grace (SIGABRT first: ``faulthandler``,
enabled here, writes every thread's stack to the error log).

Recycling (--max-requests, --max-worker-memory, --max-worker-age, lost threads, an
app that raised SystemExit) is checked on the loop's tick, between requests, and
asks the master for a replacement first: no capacity is lost, and a replacement
that cannot boot (a broken deploy) leaves this worker serving.

Signals (handlers only set flags or call ``loop.stop()``, which is signal-safe):
SIGTERM, SIGINT, SIGHUP  graceful stop
SIGQUIT                  immediate stop
SIGUSR1                  reopen the log files (done on the next loop tick)
SIGTTIN, SIGTTOU         ignored (they are the master's)
The master's death sends SIGTERM (``PR_SET_PDEATHSIG``), so no orphan keeps the port.
"""

import faulthandler
import logging
import mmap
import os
import random
import signal
import socket
import struct
import sys
import time

from fastwsgi import hooks
from fastwsgi.config import parse_bind
from fastwsgi.errors import RequestTimeout

__all__ = ["Worker", "Shared", "WORKER_BOOT_ERROR", "APP_LOAD_ERROR",
           "BOOTING", "SERVING", "RETIRING", "RECYCLE_REASONS"]

log = logging.getLogger("fastwsgi.error")

WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4

BOOTING, SERVING, RETIRING = 0.0, 1.0, 2.0

# Why a worker asks to be replaced: the code goes through the shared page, the
# name into the master's log and its restart counts (worker_restarts by reason).
RECYCLE_REASONS = {1: "max-requests", 2: "max-worker-memory", 3: "max-worker-age",
                   4: "lost-threads", 5: "app-exit"}
_RECYCLE_CODES = {name: code for code, name in RECYCLE_REASONS.items()}

_DOUBLE = struct.Struct("d")
_HEARTBEAT, _STATE, _RECYCLE, _SLOTS = 0, 8, 16, 24
MESSAGE_SIZE = 16384
_MEMORY_CHECK = 1.0            # seconds between RSS reads (--max-worker-memory)
PR_SET_PDEATHSIG = 1


class Shared:
    """The master <-> worker shared page (layout in the module docstring)."""

    def __init__(self, threads, spare=0):
        # slot 0 is the loop thread (--threads 1); with --threads N the app threads
        # write slots 1..N (and up to `spare` replacements of lost threads)
        self.slots = threads + 1 + spare if threads > 1 else 1
        self._message = _SLOTS + 8 * self.slots
        self.mm = mmap.mmap(-1, self._message + MESSAGE_SIZE)   # MAP_SHARED | MAP_ANONYMOUS

    def _get(self, offset):
        return _DOUBLE.unpack_from(self.mm, offset)[0]

    def _set(self, offset, value):
        _DOUBLE.pack_into(self.mm, offset, value)

    heartbeat = property(lambda self: self._get(_HEARTBEAT),
                         lambda self, v: self._set(_HEARTBEAT, v))
    state = property(lambda self: self._get(_STATE),
                     lambda self, v: self._set(_STATE, v))

    @property
    def recycle(self):
        """The reason this worker asks to be replaced, or None."""
        return RECYCLE_REASONS.get(int(self._get(_RECYCLE)))

    @recycle.setter
    def recycle(self, reason):
        self._set(_RECYCLE, float(_RECYCLE_CODES[reason]) if reason else 0.0)

    @property
    def message(self):
        return bytes(self.mm[self._message:self._message + MESSAGE_SIZE]).rstrip(
            b"\0").decode("utf-8", "replace")

    @message.setter
    def message(self, text):
        raw = text.encode("utf-8", "replace")[:MESSAGE_SIZE]
        self.mm[self._message:self._message + MESSAGE_SIZE] = raw.ljust(MESSAGE_SIZE, b"\0")

    def slot(self, index):
        return self._get(_SLOTS + 8 * index)

    def watchdog_buffer(self):
        return memoryview(self.mm)[_SLOTS:_SLOTS + 8 * self.slots]

    def close(self):
        try:
            self.mm.close()
        except BufferError:      # a memoryview still points at it (the worker's own)
            pass


def _die_with_parent(ppid):
    """SIGTERM when the master dies (even by SIGKILL), so no orphan keeps serving on
    its port; False if the master is already gone (it died before this call)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass                     # not Linux: the tick's getppid() check remains
    return os.getppid() == ppid


def _rss_bytes():
    """This process's resident set size, from /proc/self/statm (0 if unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


def _error_stream():
    """The file the error log writes to: where faulthandler dumps stacks."""
    for handler in logging.getLogger("fastwsgi.error").handlers:
        if getattr(handler, "_fastwsgi", False):
            stream = getattr(handler, "stream", None)
            if stream is not None:
                try:
                    stream.fileno()
                    return stream
                except (OSError, ValueError, AttributeError):
                    pass
    return sys.stderr


def _reuse_port_sockets(sockets, reserved, config):
    """--reuse-port: our own SO_REUSEPORT listener for each TCP address the master
    reserved (bound, not listening: the sockets in ``reserved``); the others (unix,
    fd://, systemd) stay shared."""
    from fastwsgi.listeners import bind_one as _bind_one

    own = []
    for sock in sockets:
        if sock in reserved:
            host, port = sock.getsockname()[:2]
            text = f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
            own.append(_bind_one(parse_bind(text), config.backlog, config.unix_socket_mode,
                                 reuse_port=True))
            sock.close()
        else:
            own.append(sock)
    return own


class Worker:
    """A forked worker: boot, serve until stopped, clean up; run() -> exit status."""

    def __init__(self, config, app_spec, app, sockets, shared, ppid, reserved=(),
                 reload=False, sigmask=None, first=False):
        self.config = config
        self.app_spec = app_spec
        self.app = app                    # None unless --preload
        self.sockets = sockets
        self.reserved = reserved          # --reuse-port: the master's placeholders
        self.shared = shared
        self.ppid = ppid
        self.reload = reload
        self.server = None
        self.access_log = None
        self.stop_signal = None           # a stop signal that came while booting
        self.reopen_pending = False
        self.retiring_logged = False
        self.reloader = None
        self.watchdog = None
        self.sigmask = sigmask            # to restore once our handlers are in place
        self.first = first                # nothing served yet: the master reports errors
        self.started = time.monotonic()
        self.recycle_reason = None        # why this worker asked to be replaced
        self.max_requests = 0             # with jitter: this worker's own limits
        self.max_age = 0.0
        self.next_memory_check = 0.0

    # -- signals -------------------------------------------------------------------

    def _init_signals(self):
        signal.set_wakeup_fd(-1)          # the master's pipe, inherited through fork
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        if self.sigmask is not None:      # the master blocked signals across fork()
            signal.pthread_sigmask(signal.SIG_SETMASK, self.sigmask)
        hooks.on_abort(self.config)       # worker_abort (before faulthandler.enable)

    def _on_signal(self, signum, frame):
        if signum == signal.SIGUSR1:
            self.reopen_pending = True
            return
        if signum in (signal.SIGINT, signal.SIGQUIT):
            hooks.call(self.config, "worker_int", hooks.current_worker())
        server = self.server
        if server is None:                # still booting: act once the server exists
            self.stop_signal = signum
            return
        if signum == signal.SIGQUIT:
            server.loop.stop(graceful=False)
        else:
            # no escalation on a second one: Ctrl-C reaches the workers and the
            # master (which then sends SIGTERM) alike; the master escalates (SIGQUIT)
            server.loop.stop(graceful=True)

    # -- the loop's tick (about every 0.25 s, on the loop thread) ------------------

    def _tick(self):
        now = time.monotonic()
        self.shared.heartbeat = now
        loop = self.server.loop
        if self.reopen_pending:
            self.reopen_pending = False
            self._reopen_logs()
        if loop.is_stopping:
            self._retiring()
            threads = self.server.threads
            if threads is not None and threads.lost_count and \
                    loop.connections <= threads.lost_count:
                # only the connections of lost threads are left: their clients had
                # their answer (504) and nothing more will come; do not wait for C
                # code that may never return
                log.info("worker %d: only lost threads are left; stopping now",
                         os.getpid())
                loop.stop(graceful=False)
        elif os.getppid() != self.ppid:
            log.error("worker %d: the master (pid %d) is gone; stopping",
                      os.getpid(), self.ppid)
            loop.stop(graceful=True)
        elif self.recycle_reason is None:
            self._check_limits(now)

    def _check_limits(self, now):
        """Recycling limits, between requests (the tick runs on the loop thread)."""
        requests = self.server.state.requests
        if self.max_requests and requests >= self.max_requests:
            self.recycle("max-requests", f"served {requests} requests (--max-requests)")
        elif self.max_age and now - self.started >= self.max_age:
            self.recycle("max-worker-age", f"has run for {now - self.started:.0f}s "
                                           f"(--max-worker-age)")
        elif self.config.max_worker_memory and now >= self.next_memory_check:
            self.next_memory_check = now + _MEMORY_CHECK
            rss = _rss_bytes()
            if rss > self.config.max_worker_memory:
                self.recycle("max-worker-memory",
                             f"uses {rss / 1048576:.0f} MiB "
                             f"(--max-worker-memory {self.config.max_worker_memory / 1048576:.0f} MiB)")

    def recycle(self, reason, why=None):
        """Ask the master for a replacement (once); it stops this worker gracefully
        when the replacement serves.  Any thread may call it."""
        if self.recycle_reason is not None:
            return
        self.recycle_reason = reason
        log.info("worker %d %s; asking for a replacement (%s)", os.getpid(),
                 why or reason, reason)
        self.shared.recycle = reason

    def _retiring(self):
        """Tell the master (which starts a replacement now), once."""
        if self.retiring_logged:
            return
        self.retiring_logged = True
        self.shared.state = RETIRING

    def _reopen_logs(self):
        from fastwsgi.logs import reopen_error_log

        reopen_error_log()
        if self.access_log is not None:
            self.access_log.reopen()
        faulthandler.enable(file=_error_stream(), all_threads=True)

    # -- life cycle ----------------------------------------------------------------

    def _hook(self, name):
        return hooks.call(self.config, name, hooks.current_server(), hooks.current_worker())

    def _boot(self):
        """Everything before serving; returns an exit status on failure, else None."""
        from fastwsgi._loader import AppLoadError, app_traceback, load_error_text
        from fastwsgi.mount import build_app
        from fastwsgi.logs import AccessLog
        from fastwsgi.server import Server

        if not self._hook("post_fork"):
            return WORKER_BOOT_ERROR
        if self.app is None:
            try:
                self.app = build_app(self.app_spec, self.config)
            except AppLoadError as exc:
                # at start (nothing served yet) the master reports it, once, as the
                # CLI's one error line after the app's traceback; later, say it here
                debug = self.config.log_level == "debug"
                self.shared.message = f"{exc}\0{app_traceback(exc, debug)}"
                if not self.first:
                    log.error("worker %d: cannot load the application: %s", os.getpid(),
                              load_error_text(exc, debug))
                return APP_LOAD_ERROR
        self.app = hooks.wrap_app(self.app, self.config)   # pre_request/post_request
        config = self.config
        try:
            if self.reserved:
                self.sockets = _reuse_port_sockets(self.sockets, self.reserved, config)
            self.access_log = AccessLog.from_config(config)
            self.server = Server(self.app, config,
                                 sockets=self.sockets, access_log=self.access_log,
                                 multiprocess=True)
        except Exception:
            log.exception("worker %d: cannot start the server", os.getpid())
            return WORKER_BOOT_ERROR
        state = self.server.state
        # SystemExit in a request: a 500 (the compiled layer), then a replacement
        state.on_app_exit = lambda: self.recycle(
            "app-exit", "had the application raise SystemExit in a request")
        state.set_watchdog(self.shared.watchdog_buffer(), self.shared.slots)
        # Limits are checked on the tick, not by the compiled per-request count: the
        # worker keeps serving until its replacement does.
        if config.max_requests:
            jitter = config.max_requests_jitter
            self.max_requests = config.max_requests + (random.randint(0, jitter)
                                                       if jitter else 0)
        if config.max_worker_age:
            self.max_age = config.max_worker_age + random.uniform(
                0, config.max_worker_age_jitter)
        threads = self.server.threads
        if threads is not None:
            threads.exit_requested = self.recycle
        if config.timeout:
            from fastwsgi.watchdog import Watchdog

            self.watchdog = Watchdog(self.shared, config.timeout, config.timeout_grace,
                                     pool=threads, max_lost=config.max_lost_threads,
                                     on_lost=self.recycle)
        self.server.loop.on_tick = self._tick
        signal.set_wakeup_fd(self.server.loop.wakeup_fd, warn_on_full_buffer=False)
        if self.reload:
            from fastwsgi.reloader import Reloader

            self.reloader = Reloader(self._source_changed,
                                     extra_files=self.config.reload_extra_files)
            self.reloader.start()
        return None

    def _source_changed(self, paths):
        """--reload (reloader thread): the master reloads every worker on SIGHUP."""
        log.info("worker %d: %s changed; reloading", os.getpid(), ", ".join(paths[:3]))
        try:
            os.kill(self.ppid, signal.SIGHUP)
        except OSError:
            pass

    def run(self):
        self._init_signals()
        if not _die_with_parent(self.ppid):
            log.error("worker %d: the master (pid %d) is gone; exiting", os.getpid(),
                      self.ppid)
            return 0
        # a stuck app call or import gets its stack written to the error log on SIGABRT
        faulthandler.enable(file=_error_stream(), all_threads=True)
        status = self._boot()
        if status is not None:
            return status
        if self.stop_signal == signal.SIGQUIT:
            return 0
        if self.stop_signal is not None:
            self.server.loop.stop(graceful=True)
        self.shared.heartbeat = time.monotonic()
        self.shared.state = SERVING
        hooks.call(self.config, "post_worker_init", hooks.current_worker())
        if self.watchdog is not None:
            self.watchdog.start()
        try:
            self._serve()
        finally:
            self._retiring()
            if self.watchdog is not None:
                self.watchdog.stop()
            if self.reloader is not None:
                self.reloader.stop()
            self._hook("worker_exit")
            self._close()
        return 0

    def _serve(self):
        """serve_forever(), which an app can leave only by an exception raised in the
        loop thread: a RequestTimeout (--threads 1: the request is lost with its
        connection) or a SystemExit while iterating a response.  Either way the
        worker stops: the master replaces it."""
        try:
            self.server.serve_forever()
        except RequestTimeout:
            log.error("worker %d: a timed-out request left the event loop; "
                      "replacing the worker", os.getpid())
        except SystemExit as exc:
            log.error("worker %d: the application raised SystemExit(%r) on the loop "
                      "thread; replacing the worker", os.getpid(), exc.code)

    def _close(self):
        server = self.server
        # An app thread may still be stuck in the app past the graceful deadline:
        # do not wait for it (os._exit follows).
        if server.threads is not None:
            server.threads.stop(timeout=0.2)
            server.threads = None
        server.loop.close()
        # The listening sockets stay open: they are the master's (Server.server_close
        # would also unlink a unix socket path every other worker still listens on).
        if self.access_log is not None:
            self.access_log.close()
