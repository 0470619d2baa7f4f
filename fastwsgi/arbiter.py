"""The master process: binds the sockets, forks workers, keeps them alive.

Contract: ``run(app_spec, config) -> int`` (what the CLI runs unless --no-master)
returns the exit status: 0 after a stop signal, 1 when the app cannot be loaded at
start (no worker ever booted).  It calls the ``on_starting`` and ``on_exit``
hooks, writes and removes ``--pid``, logs the banner
``fastwsgi VERSION listening on URLS (pid MASTERPID)`` once the sockets are bound.

As in gunicorn's arbiter, signal handlers only queue the signal (the wakeup fd
wakes the main loop); the loop dispatches each to ``handle_<name>``.  Repeated
HUPs coalesce; TERM/INT/QUIT are never dropped.

    SIGTERM, SIGINT  graceful stop: workers stop accepting, finish in-flight
                     requests, exit within --graceful-timeout, then SIGKILL
                     (a second SIGTERM/SIGINT: immediate stop)
    SIGQUIT          immediate stop
    SIGHUP           reload: start new workers (they import the app again), and
                     once they serve, stop the old ones gracefully
    SIGTTIN/SIGTTOU  one worker more / less
    SIGUSR1          reopen the log files (here and in every worker)
    SIGCHLD          reap; a worker that died is replaced and the reason logged

Nothing a worker does after it booted stops the master: any exit status, any
signal, and it is replaced.  A worker that asks to be recycled (its shared page:
--max-requests, --max-worker-memory, --max-worker-age, lost threads, SystemExit)
keeps serving until its replacement does.  Only boots that fail count, and only
until some worker has served: after that a broken deploy keeps the last good
workers (a failed reload is abandoned; a failed replacement is retried with
backoff while the workers it was to replace keep serving).  ``restarts`` counts
worker exits by reason.

Workers share the listening sockets (a connection waits in the kernel's backlog
until some worker accepts it), so a worker that stops accepting loses nothing.
With --reuse-port the master only reserves each TCP address (bound, not
listening) and every worker listens on its own SO_REUSEPORT socket.

--timeout is enforced in each worker (fastwsgi.watchdog); the master's last resort
is a worker whose loop heartbeat stops for --timeout + --timeout-grace: SIGABRT
(faulthandler in the worker logs every stack), SIGKILL a second later.
"""

import collections
import gc
import importlib
import logging
import os
import select
import signal
import socket
import sys
import sysconfig
import time

from fastwsgi import __version__, hooks
from fastwsgi.worker import (APP_LOAD_ERROR, RETIRING, SERVING, WORKER_BOOT_ERROR,
                             Shared, Worker)

__all__ = ["Arbiter", "run"]

log = logging.getLogger("fastwsgi.error")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})

ABORT_GRACE = 1.0        # SIGABRT (stack dump) -> SIGKILL
SIGNAL_QUEUE = 32        # queued signals other than TERM/INT/QUIT, at most
BOOT_RETRY = (1.0, 60.0)     # backoff between replacements that cannot boot: first, max
QUIT_GRACE = 1.0         # SIGQUIT -> SIGKILL
KILL_MARGIN = 0.5        # after --graceful-timeout, before SIGKILL: the worker's own
                         # loop gives up at the deadline and then runs worker_exit


def run(app_spec, config):
    return Arbiter(app_spec, config).run()


class WorkerRecord:
    """What the master knows about one worker process."""

    __slots__ = ("pid", "age", "generation", "shared", "spawned", "booted",
                 "retiring", "kill_at", "aborted", "reason", "recycling")

    def __init__(self, pid, age, generation, shared):
        self.pid = pid
        self.age = age                  # spawn order: TTOU retires the oldest
        self.generation = generation    # SIGHUP starts a new generation
        self.shared = shared
        self.spawned = time.monotonic()
        self.booted = False
        self.retiring = False           # told to stop, or stopping on its own
        self.kill_at = 0.0              # SIGKILL if still alive then
        self.aborted = False            # SIGABRT sent (--timeout)
        self.reason = None              # why it is expected to exit, for the log
        self.recycling = None           # why it asked to be replaced (RECYCLE_REASONS)


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


class Arbiter:
    SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "CHLD")

    def __init__(self, app_spec, config):
        self.app_spec = app_spec
        self.config = config
        self.app = None                 # --preload
        self.app_modules = set()
        self.sockets = []
        self.reserved = []              # --reuse-port placeholders (bound, not listening)
        self.workers = {}               # pid -> WorkerRecord
        self.num_workers = config.workers
        self.generation = 0
        self.age = 0
        self.sig_queue = []
        self.pipe = None
        self.stopping = None            # None, "graceful" or "immediate"
        self.stop_deadline = 0.0
        self.status = 0
        self.spawn_after = 0.0          # throttle after workers that die while booting
        self.boot_retry = 0.0           # the current backoff after failed boots
        self.served = False             # a worker of ours has served: never give up
        self.restarts = collections.Counter()   # worker exits by reason (metrics)
        self.start_error = None         # why the app did not load at start
        self.pidfile = os.path.abspath(config.pidfile) if config.pidfile else None
        self.pid = os.getpid()
        self._unix_paths = []
        self.hook_server = hooks.start(config, app_spec, self)   # gunicorn's `server`
        self.observer = None            # --status-bind (fastwsgi.status.MasterStatus)
        self.drain_until = 0.0          # --drain-delay: stop gracefully then
        self.drain_why = None

    # -- start and stop ------------------------------------------------------------

    def run(self):
        if not self._hook("on_starting"):
            return 1
        self._hook("nworkers_changed", self.num_workers, None)
        try:
            self._write_pidfile()
            try:
                return self._run()
            finally:
                self._remove_pidfile()
        finally:
            self._hook("on_exit")

    def _run(self):
        if self.config.preload and not (self.config.user or self.config.group):
            self._load_app()            # AppLoadError: the CLI prints it, exit 1
        self._bind()
        # --user/--group: root only to bind; the workers are forked as the user
        from fastwsgi.privileges import drop_privileges
        drop_privileges(self.config, self.sockets)
        if self.config.preload and self.app is None:
            self._load_app()
        if self.config.status_bind:
            # here, not at the top: without --status-bind the master imports
            # neither http.server nor prometheus_client
            from fastwsgi.status import for_master
            self.observer = for_master(self)
        self._init_signals()
        # The banner waits for the first worker to serve: it means the app loaded
        # (a broken one at start ends in exit status 1 without a banner), and with
        # --reuse-port, where only the workers listen, a client that acts on it
        # would otherwise be refused.
        self._announced = False
        self._hook("when_ready")        # as gunicorn: bound, before the first fork
        try:
            self.manage_workers()
            while True:
                self._sleep()
                self._dispatch_signals()
                if self.drain_until and time.monotonic() >= self.drain_until:
                    self.drain_until = 0.0
                    self._stop(immediate=False, why=self.drain_why)
                self.reap_workers()
                if self.stopping:
                    if not self.workers:
                        break
                    self._enforce_stop_deadline()
                    self.check_workers()
                    continue
                self.check_workers()
                self.manage_workers()
                if not self._announced and any(w.booted for w in self.workers.values()):
                    self._announced = True
                    self._announce()
        except BaseException:
            log.exception("master failed; killing the workers")
            self._kill_all(signal.SIGKILL)
            raise
        finally:
            self._close()
        if self.start_error is not None:
            from fastwsgi._loader import AppLoadError

            # what a single process says: the app's traceback, then the CLI's one line
            line, _, trace = self.start_error.partition("\0")
            sys.stderr.write(trace)
            raise AppLoadError(line)
        log.info("stopped")
        return self.status

    def _announce(self):
        urls = ", ".join(self._url(s) for s in self.sockets)
        log.info("fastwsgi %s listening on %s (pid %d)", __version__, urls, os.getpid())

    def _close(self):
        if self.observer is not None:
            self.observer.close()
        signal.set_wakeup_fd(-1)
        for sig in self.SIGNALS:
            # late signals must not interrupt on_exit or turn into a traceback
            signal.signal(getattr(signal, "SIG" + sig),
                          signal.SIG_DFL if sig == "CHLD" else signal.SIG_IGN)
        for fd in self.pipe or ():
            os.close(fd)
        for sock in self.sockets:
            sock.close()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass

    # -- hooks and pidfile ---------------------------------------------------------

    def _hook(self, name, *args):
        return hooks.call(self.config, name, self.hook_server, *args)

    def _write_pidfile(self):
        if not self.pidfile:
            return
        tmp = f"{self.pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, self.pidfile)     # readers never see an empty file

    def _remove_pidfile(self):
        if not self.pidfile:
            return
        try:
            with open(self.pidfile) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(self.pidfile)
        except OSError:
            pass

    # -- the app (--preload) -------------------------------------------------------

    def _load_app(self):
        from fastwsgi.mount import build_app   # APP_SPEC or mounts, behind --static

        before = set(sys.modules)
        self.app = build_app(self.app_spec, self.config)
        self.app_modules = set(sys.modules) - before
        # Objects that exist now are never collected again: the collector does not
        # touch (and so copy) their pages in the forked workers.
        gc.collect()
        gc.freeze()

    def _reload_app(self):
        """SIGHUP with --preload: import the project's modules again (installed
        packages and the standard library stay; some cannot be imported twice)."""
        from fastwsgi._loader import AppLoadError, load_error_text

        shared_dirs = {os.path.realpath(p) + os.sep for p in
                       (sysconfig.get_path(n) for n in
                        ("stdlib", "platstdlib", "purelib", "platlib")) if p}
        saved = {}
        for name in self.app_modules:
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if module is None or not path:
                continue
            if any(os.path.realpath(path).startswith(d) for d in shared_dirs):
                continue
            saved[name] = sys.modules.pop(name)
        importlib.invalidate_caches()
        old_app, old_modules = self.app, self.app_modules
        before = set(sys.modules)
        gc.unfreeze()
        try:
            self._load_app()
        except AppLoadError as exc:
            for name in set(sys.modules) - before:     # what the failed import left
                sys.modules.pop(name, None)
            sys.modules.update(saved)
            self.app, self.app_modules = old_app, old_modules
            gc.freeze()
            log.error("reload failed: %s; the old workers keep serving",
                      load_error_text(exc, self.config.log_level == "debug"))
            return False
        self.app_modules |= old_modules
        return True

    # -- sockets -------------------------------------------------------------------

    def _bind(self):
        from fastwsgi.config import parse_bind
        from fastwsgi.listeners import bind_one as _bind_one, bind_sockets, systemd_sockets

        inherited = systemd_sockets()
        if inherited:
            if self.config.reuse_port:
                log.warning("--reuse-port ignored: the sockets come from systemd")
            self.sockets = inherited
        elif not self.config.reuse_port:
            self.sockets = bind_sockets(self.config)
            self._unix_paths = [parse_bind(b).path for b in self.config.bind
                                if parse_bind(b).kind == "unix"]
        else:
            try:
                for text in self.config.bind:
                    addr = parse_bind(text)
                    try:
                        if addr.kind == "tcp":
                            sock = self._reserve(addr)
                            self.reserved.append(sock)
                        else:
                            sock = _bind_one(addr, self.config.backlog,
                                             self.config.unix_socket_mode)
                            if addr.kind == "unix":
                                self._unix_paths.append(addr.path)
                    except OSError as exc:
                        exc.address = text
                        raise
                    self.sockets.append(sock)
            except BaseException:
                for sock in self.sockets:
                    sock.close()
                raise
        for sock in self.sockets:
            sock.set_inheritable(True)

    @staticmethod
    def _reserve(addr):
        """--reuse-port: hold the address (and learn the port of :0) without
        listening, so the kernel never queues a connection on the master's socket."""
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        infos = socket.getaddrinfo(addr.host or None, addr.port, family, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _url(sock):
        from fastwsgi.server import socket_url

        return socket_url(sock)

    # -- signals -------------------------------------------------------------------

    def _init_signals(self):
        self.pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.pipe[1], warn_on_full_buffer=False)
        for name in self.SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)

    def _queue_signal(self, signum, frame):
        # SIGCHLD only wakes the loop (the wakeup fd), which reaps on every turn.
        # Repeated HUPs coalesce into one reload; a stop signal is never dropped
        # (a SIGTERM that comes during a long --preload re-import included); the
        # queue is bounded only for the others (a TTIN storm).
        if signum == signal.SIGCHLD:
            return
        if signum == signal.SIGHUP and signum in self.sig_queue:
            return
        if signum in STOP_SIGNALS or len(self.sig_queue) < SIGNAL_QUEUE:
            self.sig_queue.append(signum)

    def _sleep(self):
        if (self.stopping or self.drain_until
                or any(w.kill_at or not w.booted for w in self.workers.values())):
            timeout = 0.1
        else:
            timeout = 0.25      # heartbeats, recycling requests
        if self.sig_queue:
            timeout = 0
        try:
            ready, _, _ = select.select([self.pipe[0]], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self.pipe[0], 4096):
                    pass
            except BlockingIOError:
                pass

    def _dispatch_signals(self):
        handled = set()
        while self.sig_queue:
            signum = self.sig_queue.pop(0)
            if signum == signal.SIGHUP and signum in handled:
                continue                # several HUPs at once: one reload
            handled.add(signum)
            name = _signal_name(signum)
            getattr(self, "handle_" + name[3:].lower())()

    def handle_term(self):
        if self.stopping:
            self._stop(immediate=True, why="SIGTERM again")
        elif not self._drain_first("SIGTERM"):
            self._stop(immediate=False, why="SIGTERM")

    def handle_int(self):
        if self.stopping:
            self._stop(immediate=True, why="SIGINT again")
        elif not self._drain_first("SIGINT"):
            self._stop(immediate=False, why="SIGINT")

    def _drain_first(self, why):
        """--drain-delay: /readyz answers 503 while the workers go on serving, and
        the graceful stop starts when the delay is over (a second signal: now)."""
        if not self.config.drain_delay or self.drain_until:
            return False
        self.drain_until = time.monotonic() + self.config.drain_delay
        self.drain_why = why
        if self.observer is not None:
            self.observer.draining = True
        log.info("draining (%s): /readyz answers 503; stopping in %gs", why,
                 self.config.drain_delay)
        return True

    def handle_quit(self):
        self._stop(immediate=True, why="SIGQUIT")

    def handle_hup(self):
        if self.stopping:
            return
        log.info("reloading (SIGHUP)")
        self._hook("on_reload")
        if self.config.preload and not self._reload_app():
            return
        self.generation += 1
        self.manage_workers()

    def handle_ttin(self):
        self.num_workers += 1
        log.info("workers: %d (SIGTTIN)", self.num_workers)
        self._hook("nworkers_changed", self.num_workers, self.num_workers - 1)
        self.manage_workers()

    def handle_ttou(self):
        if self.num_workers > 1:
            self.num_workers -= 1
            self._hook("nworkers_changed", self.num_workers, self.num_workers + 1)
        log.info("workers: %d (SIGTTOU)", self.num_workers)
        self.manage_workers()

    def handle_usr1(self):
        from fastwsgi.logs import reopen_error_log

        reopen_error_log()
        log.info("log files reopened (SIGUSR1)")
        self._kill_all(signal.SIGUSR1)

    # -- stopping ------------------------------------------------------------------

    def _stop(self, immediate, why):
        now = time.monotonic()
        if immediate:
            if self.stopping == "immediate":
                return
            log.info("stopping now (%s)", why)
            self.stopping = "immediate"
            self.stop_deadline = now + QUIT_GRACE
            self._kill_all(signal.SIGQUIT)
        else:
            log.info("stopping gracefully (%s)", why)
            self.stopping = "graceful"
            self.stop_deadline = now + self.config.graceful_timeout + KILL_MARGIN
            for w in self.workers.values():
                w.retiring = True
                w.reason = w.reason or "stop"
            self._kill_all(signal.SIGTERM)

    def _enforce_stop_deadline(self):
        if time.monotonic() < self.stop_deadline:
            return
        for w in self.workers.values():
            if not w.kill_at:
                log.warning("worker %d did not stop in time; killing it", w.pid)
                w.reason = "killed at the stop deadline"
                self._kill(w.pid, signal.SIGKILL)
                w.kill_at = float("inf")

    def _kill(self, pid, sig):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _kill_all(self, sig):
        for pid in list(self.workers):
            self._kill(pid, sig)

    # -- workers -------------------------------------------------------------------

    def spawn_worker(self):
        self.age += 1
        shared = Shared(self.config.threads, spare=self.config.max_lost_threads)
        # --status-bind: the child records into a block of shared memory made now
        block = self.observer.before_fork() if self.observer is not None else None
        worker_info = hooks.WorkerInfo(self.hook_server, self.age)
        self._hook("pre_fork", worker_info)
        # Signals stay blocked across the fork until the child has its own handlers:
        # a SIGTERM that came before would run the master's handler in the child
        # and be lost.
        blocked = {getattr(signal, "SIG" + name) for name in self.SIGNALS}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            shared.close()
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            if self.observer is not None:
                self.observer.forked(pid, block)
            self.workers[pid] = WorkerRecord(pid, self.age, self.generation, shared)
            worker_info.pid = pid
            log.debug("worker %d booting", pid)
            return pid
        # the child: never return into the master's code
        status = 1
        try:
            hooks.forked(worker_info)
            for w in self.workers.values():
                w.shared.close()
            self.workers = {}
            os.close(self.pipe[0])
            os.close(self.pipe[1])
            worker = Worker(self.config, self.app_spec, self.app, self.sockets, shared,
                            ppid=self.pid, reserved=self.reserved,
                            reload=self.config.reload, sigmask=previous,
                            first=not self.served)
            status = worker.run()
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", os.getpid())
            status = 1
        finally:
            try:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)

    def manage_workers(self):
        """Keep num_workers of the current generation; retire the rest once their
        replacements serve (old generations after a reload, workers that asked to
        be recycled)."""
        if self.stopping:
            return
        current = [w for w in self.workers.values()
                   if w.generation == self.generation and not w.retiring
                   and not w.recycling]
        if len(current) < self.num_workers and time.monotonic() >= self.spawn_after:
            for _ in range(self.num_workers - len(current)):
                self.spawn_worker()
        elif len(current) > self.num_workers:
            for w in sorted(current, key=lambda w: w.age)[:len(current) - self.num_workers]:
                self._retire(w, "SIGTTOU")
        if sum(w.booted for w in current) < self.num_workers:
            return
        old = [w for w in self.workers.values()
               if w.generation < self.generation and not w.retiring]
        if old:
            log.info("reload: new workers serving; retiring %s",
                     ", ".join(str(w.pid) for w in old))
            for w in old:
                self._retire(w, "reload")
        for w in list(self.workers.values()):
            if w.recycling and not w.retiring:
                log.info("worker %d: its replacement serves; retiring it (%s)",
                         w.pid, w.recycling)
                self._retire(w, w.recycling)

    def _retire(self, w, reason):
        w.retiring = True
        w.reason = reason
        w.kill_at = time.monotonic() + self.config.graceful_timeout + KILL_MARGIN
        self._kill(w.pid, signal.SIGTERM)

    def check_workers(self):
        """Boot, recycling and retirement notices, kill deadlines, stuck loops."""
        now = time.monotonic()
        # --timeout is the worker's own business (fastwsgi.watchdog); the master only
        # takes a worker whose loop stopped beating for longer than a timed-out
        # request may take to unwind: its loop thread is stuck (in C code, or
        # --threads 1), or its boot is
        limit = self.config.timeout + self.config.timeout_grace
        for w in list(self.workers.values()):
            state = w.shared.state
            if not w.booted and state >= SERVING:
                self._booted(w)
            if state == RETIRING and not w.retiring:
                # stopping on its own (signalled directly, its master gone...):
                # start its replacement now, not when it has finished
                w.retiring = True
                w.reason = w.recycling or "retired"
                w.kill_at = now + self.config.graceful_timeout + KILL_MARGIN
            if not w.recycling and not w.retiring and w.shared.recycle:
                w.recycling = w.shared.recycle
                log.info("worker %d asks to be recycled (%s); starting its replacement",
                         w.pid, w.recycling)
            if w.kill_at and now >= w.kill_at:
                log.warning("worker %d did not exit in time; killing it", w.pid)
                self._kill(w.pid, signal.SIGKILL)
                w.kill_at = float("inf")
            if not self.config.timeout or w.aborted or state == RETIRING:
                continue
            # the heartbeat comes every 0.25 s: a loop (or boot) is stuck only if it
            # is silent for a while, however short --timeout is
            heartbeat = w.shared.heartbeat
            if now - (heartbeat or w.spawned) > max(limit, 2.0):
                what = "silent" if heartbeat else "booting"
                self._abort(w, f"{what} for {now - (heartbeat or w.spawned):.1f}s "
                               f"(--timeout {self.config.timeout:g} + --timeout-grace "
                               f"{self.config.timeout_grace:g})")

    def _booted(self, w):
        w.booted = True
        self.served = True
        log.info("worker %d booted", w.pid)
        if self.boot_retry:
            log.info("worker %d booted: the application loads again", w.pid)
            self.boot_retry = 0.0

    def _abort(self, w, why):
        log.error("worker %d is stuck: %s; logging its stack and killing it", w.pid, why)
        w.aborted = True
        w.reason = "timeout"
        if self.observer is not None:
            self.observer.timed_out()
        w.kill_at = time.monotonic() + ABORT_GRACE
        self._kill(w.pid, signal.SIGABRT)

    def reap_workers(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            state = w.shared.state
            if not w.booted and state >= SERVING:
                self._booted(w)          # it served before we noticed
            if state == RETIRING and not w.retiring:
                w.retiring, w.reason = True, w.recycling or "retired"
            try:
                self._log_exit(w, status)
            finally:
                w.shared.close()
            if self.observer is not None:
                self.observer.reaped(w, status)
            self._hook("child_exit", hooks.WorkerInfo(self.hook_server, w.age, w.pid))

    def _log_exit(self, w, status):
        """Log why a worker exited and count it (``restarts`` by reason).  Nothing a
        worker does after it booted stops the master: whatever its exit status or
        signal, it is replaced.  Only a boot that fails counts (_boot_failed)."""
        code = os.waitstatus_to_exitcode(status)
        if self.start_error is not None:
            return                      # the app did not load: the CLI says so, once
        if code < 0:
            sig = _signal_name(-code)
            how = f"was killed by signal {-code} ({sig})"
        else:
            how = f"exited with code {code}"
        if w.aborted:
            reason = "timeout"
            log.error("worker %d %s after timing out; replacing it", w.pid, how)
        elif w.retiring and code == 0:
            reason = w.reason or "retired"
            log.info("worker %d exited (%s)", w.pid, reason)
        elif not w.booted and code != 0 and (code in (APP_LOAD_ERROR, WORKER_BOOT_ERROR)
                                             or not self.served):
            # (a worker that dies before it boots, when nothing has ever served,
            # is a broken deploy however it died: replacing it forever would hang)
            reason = "boot-failure"
            self._boot_failed(w, code)
        elif code == 0:
            reason = "exit"
            log.info("worker %d exited; replacing it", w.pid)
        else:
            reason = "crash"
            log.error("worker %d %s; replacing it", w.pid, how)
        if not self.stopping:
            self.restarts[reason] += 1
        if not w.booted and not w.retiring and code != 0 and reason != "boot-failure":
            # dying while booting: do not fork in a tight loop
            self.spawn_after = max(self.spawn_after, time.monotonic() + 0.5)

    def _boot_failed(self, w, code):
        """A worker could not boot (import the app, or run post_fork).  At start,
        with nothing ever served, the deploy is broken: stop (status 1).  Once a
        generation has served, never give up and never drop capacity: a failed
        reload keeps the old workers; a failed replacement leaves the workers that
        asked to be recycled serving, and the boot is retried with backoff."""
        what = "load the application" if code == APP_LOAD_ERROR else "boot"
        if self.stopping or w.generation > self.generation:
            return                      # stopping anyway, or a reload already abandoned
        older = [o for o in self.workers.values()
                 if o.generation < w.generation and not o.retiring]
        if older:
            log.error("reload failed: worker %d could not %s; the old workers keep "
                      "serving", w.pid, what)
            self.generation = max(o.generation for o in older)
            for o in list(self.workers.values()):
                if o.generation > self.generation and not o.retiring:
                    self._retire(o, "failed reload")
            return
        if not self.served:
            if code == APP_LOAD_ERROR:
                # the CLI prints it as its one error line (status 1), as when the
                # app is loaded in this process
                self.start_error = w.shared.message or "the application did not load"
                self.stopping = "immediate"
                self.stop_deadline = time.monotonic() + QUIT_GRACE
                self._kill_all(signal.SIGKILL)
                return
            log.error("worker %d could not %s; stopping", w.pid, what)
            self.status = 1
            self._stop(immediate=False, why="a worker could not boot")
            return
        first, most = BOOT_RETRY
        self.boot_retry = min(most, self.boot_retry * 2) if self.boot_retry else first
        self.spawn_after = time.monotonic() + self.boot_retry
        serving = [o.pid for o in self.workers.values() if o.booted and not o.retiring]
        log.error("worker %d could not %s; %s; retrying in %gs", w.pid, what,
                  f"workers {', '.join(map(str, serving))} keep serving (recycling is "
                  f"held until a new worker boots)" if serving else
                  "NO WORKER IS SERVING", self.boot_retry)
