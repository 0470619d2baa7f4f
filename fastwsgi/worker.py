"""One worker process of the pre-fork model (the master is fastwsgi/arbiter.py).

Contract: the master forks, and the child calls ``Worker(...).run()``, which returns
the exit status; the caller passes it to ``os._exit`` (a worker never returns into
the master's code and never runs the master's atexit handlers). Exit statuses:
0 stopped (signal, --max-requests, master gone), ``WORKER_BOOT_ERROR`` (post_fork
hook or server setup failed), ``APP_LOAD_ERROR`` (the app did not import).

What a worker shares with the master is one small anonymous ``mmap`` (``Shared``),
created by the master before the fork:

    offset 0   heartbeat   CLOCK_MONOTONIC seconds of the last loop tick (0: booting)
    offset 8   state       BOOTING, SERVING, RETIRING (stopping on its own or told to)
    offset 16  slots       one double per thread that runs the app: the start time of
                           the app call in progress, 0.0 when idle (written by the
                           compiled layer: ServerState.set_watchdog)

The master reads it to know a worker booted, to replace a retiring one early, and to
find an app call older than --timeout (it then sends SIGABRT: ``faulthandler``,
enabled here, writes every thread's stack to the error log before the process dies).

Signals (handlers only set flags or call ``loop.stop()``, which is signal-safe):
SIGTERM, SIGINT, SIGHUP  graceful stop
SIGQUIT                  immediate stop
SIGUSR1                  reopen the log files (done on the next loop tick)
SIGTTIN, SIGTTOU         ignored (they are the master's)
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

__all__ = ["Worker", "Shared", "WORKER_BOOT_ERROR", "APP_LOAD_ERROR",
           "BOOTING", "SERVING", "RETIRING"]

log = logging.getLogger("fastwsgi.error")

WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4

BOOTING, SERVING, RETIRING = 0.0, 1.0, 2.0

_DOUBLE = struct.Struct("d")
_HEARTBEAT, _STATE, _SLOTS = 0, 8, 16


class Shared:
    """The master <-> worker shared page (layout in the module docstring)."""

    def __init__(self, threads):
        # slot 0 is the loop thread (--threads 1); with --threads N the app threads
        # write slots 1..N and slot 0 stays unused
        self.slots = threads + 1 if threads > 1 else 1
        self.mm = mmap.mmap(-1, _SLOTS + 8 * self.slots)   # MAP_SHARED | MAP_ANONYMOUS

    @property
    def heartbeat(self):
        return _DOUBLE.unpack_from(self.mm, _HEARTBEAT)[0]

    @heartbeat.setter
    def heartbeat(self, value):
        _DOUBLE.pack_into(self.mm, _HEARTBEAT, value)

    @property
    def state(self):
        return _DOUBLE.unpack_from(self.mm, _STATE)[0]

    @state.setter
    def state(self, value):
        _DOUBLE.pack_into(self.mm, _STATE, value)

    def watchdog_buffer(self):
        return memoryview(self.mm)[_SLOTS:_SLOTS + 8 * self.slots]

    def oldest_call(self):
        """(slot, start time) of the oldest app call in progress, or (None, 0.0)."""
        oldest, where = 0.0, None
        for slot in range(self.slots):
            started = _DOUBLE.unpack_from(self.mm, _SLOTS + 8 * slot)[0]
            if started and (not oldest or started < oldest):
                oldest, where = started, slot
        return where, oldest

    def close(self):
        try:
            self.mm.close()
        except BufferError:      # a memoryview still points at it (the worker's own)
            pass


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
                 reload=False, sigmask=None):
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
        self.sigmask = sigmask            # to restore once our handlers are in place

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
        self.shared.heartbeat = time.monotonic()
        loop = self.server.loop
        if self.reopen_pending:
            self.reopen_pending = False
            self._reopen_logs()
        if loop.is_stopping:
            self._retiring()
        elif os.getppid() != self.ppid:
            log.error("worker %d: the master (pid %d) is gone; stopping",
                      os.getpid(), self.ppid)
            loop.stop(graceful=True)

    def _retiring(self):
        """Tell the master (which starts a replacement now), once."""
        if self.retiring_logged:
            return
        self.retiring_logged = True
        self.shared.state = RETIRING
        state = self.server.state
        if state.max_requests and state.requests >= state.max_requests:
            log.info("worker %d: served %d requests (--max-requests); retiring",
                     os.getpid(), state.requests)

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
        from fastwsgi._loader import AppLoadError, load_error_text
        from fastwsgi.mount import build_app
        from fastwsgi.logs import AccessLog
        from fastwsgi.server import Server

        if not self._hook("post_fork"):
            return WORKER_BOOT_ERROR
        if self.app is None:
            try:
                self.app = build_app(self.app_spec, self.config)
            except AppLoadError as exc:
                log.error("worker %d: cannot load the application: %s", os.getpid(),
                          load_error_text(exc, self.config.log_level == "debug"))
                return APP_LOAD_ERROR
        self.app = hooks.wrap_app(self.app, self.config)   # pre_request/post_request
        try:
            if self.reserved:
                self.sockets = _reuse_port_sockets(self.sockets, self.reserved, self.config)
            self.access_log = AccessLog.from_config(self.config)
            self.server = Server(self.app, self.config, sockets=self.sockets,
                                 access_log=self.access_log, multiprocess=True)
        except Exception:
            log.exception("worker %d: cannot start the server", os.getpid())
            return WORKER_BOOT_ERROR
        state = self.server.state
        state.set_watchdog(self.shared.watchdog_buffer(), self.shared.slots)
        if self.config.max_requests:
            jitter = self.config.max_requests_jitter
            state.max_requests = self.config.max_requests + (
                random.randint(0, jitter) if jitter else 0)
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
        try:
            self.server.serve_forever()
        finally:
            self._retiring()
            if self.reloader is not None:
                self.reloader.stop()
            self._hook("worker_exit")
            self._close()
        return 0

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
