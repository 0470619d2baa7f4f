"""The status listener (``--status-bind HOST:PORT``): /metrics, /livez, /readyz.

Contract: ``StatusServer(address, registry, live, ready, sockets)`` binds at once
(a bad address raises OSError carrying ``.address``), logs
``status listener on http://HOST:PORT (/metrics /livez /readyz)`` and serves in a
daemon thread, one short request at a time, never touching the app:

    GET /metrics  200, Prometheus text exposition (format 0.0.4) of
                  registry.snapshot(): every worker's counters summed
    GET /livez    200 "ok" while live() is true, else 503
    GET /readyz   200 "ready", or 503 and the reason: ready() returns one
                  ("draining", "reloading", "starting") or the server is saturated
                  (every app thread busy and requests waiting, fastwsgi.metrics)
    other paths   404; other methods 405 (HEAD is GET without the body)

It runs in the master (``for_master``, which reads the arbiter's state) or, with
no master, in the serving process (``for_server``).  A worker forked from the
master closes its inherited copy of the listening socket at once (os.register_at_fork).
"""

import logging
import os
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from fastwsgi.metrics import Registry, listen_backlog, render, saturated

__all__ = ["StatusServer", "for_master", "for_server"]

log = logging.getLogger("fastwsgi.error")

CLIENT_TIMEOUT = 5.0      # a scraper that stalls holds up the next one this long at most


class _Handler(BaseHTTPRequestHandler):
    server_version = "fastwsgi-status"
    sys_version = ""
    protocol_version = "HTTP/1.0"     # one request per connection: nothing lingers
    timeout = CLIENT_TIMEOUT

    def do_GET(self):
        self._answer(head=False)

    def do_HEAD(self):
        self._answer(head=True)

    def _answer(self, head):
        status = self.server.status
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                body, ctype = render(status.registry.snapshot())
                code = 200
            elif path == "/livez":
                code, body, ctype = (200, b"ok\n", "text/plain") if status.live() else (
                    503, b"no live workers\n", "text/plain")
            elif path == "/readyz":
                reason = status.not_ready()
                code = 503 if reason else 200
                body = ((reason or "ready") + "\n").encode()
                ctype = "text/plain"
            else:
                code, body, ctype = 404, b"not found: /metrics /livez /readyz\n", "text/plain"
        except Exception:
            log.exception("status listener: %s failed", path)
            code, body, ctype = 500, b"internal error\n", "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _not_allowed(self):
        self.send_error(405)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def log_message(self, format, *args):
        pass                  # scrapes every few seconds are not access-log material


class _HTTPServer(HTTPServer):
    allow_reuse_address = True

    def __init__(self, address, family):
        self.address_family = family
        super().__init__(address, _Handler, bind_and_activate=True)

    def handle_error(self, request, client_address):
        pass                  # a scraper that hung up: nothing to tell anyone


class StatusServer:
    def __init__(self, address, registry, live, ready, sockets=()):
        from fastwsgi.config import parse_bind

        self.registry = registry
        self.live = live
        self.ready = ready
        self.sockets = sockets
        addr = parse_bind(address)
        host = addr.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.httpd = _HTTPServer((host, addr.port), family)
        except OSError as exc:
            exc.address = f"--status-bind {address}"
            raise
        self.httpd.status = self
        self.httpd.socket.set_inheritable(False)
        host, port = self.httpd.socket.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else \
            f"http://{host}:{port}"
        self.httpd.timeout = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        os.register_at_fork(after_in_child=self._close_in_child)
        self.thread = threading.Thread(target=self._serve, name="fastwsgi-status",
                                       daemon=True)
        self.thread.start()
        log.info("status listener on %s (/metrics /livez /readyz)", self.url)

    def _serve(self):
        # blocks in select() without a timeout (no periodic wakeup: the serving
        # threads never wait for this one's GIL requests) until a scrape or close()
        httpd, wake = self.httpd, self._wake_r
        while True:
            try:
                ready, _, _ = select.select([httpd.socket, wake], [], [])
            except (OSError, ValueError):
                return
            if wake in ready:
                return
            httpd.handle_request()

    def not_ready(self):
        """None when ready, else why not (the /readyz body)."""
        reason = self.ready()
        if reason:
            return reason
        if saturated(self.registry.snapshot(), listen_backlog(self.sockets)):
            return "saturated"
        return None

    def _close_in_child(self):
        # a forked worker must not keep the port open (the thread did not follow)
        httpd, self.httpd = self.httpd, None
        if httpd is not None:
            httpd.socket.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def close(self):
        httpd, self.httpd = self.httpd, None
        if httpd is not None:
            os.write(self._wake_w, b"x")
            self.thread.join(CLIENT_TIMEOUT + 1)
            httpd.server_close()
            os.close(self._wake_r)
            os.close(self._wake_w)


# ------------------------------------------------------------------------ the master


class MasterStatus:
    """The arbiter's side: a block per worker, restarts by reason, readiness."""

    def __init__(self, arbiter):
        self.arbiter = arbiter
        self.registry = Registry()
        self.draining = False            # a stop or a --drain-delay is under way
        import prometheus_client  # noqa: F401  here, not in the thread: fail at start
        self.server = StatusServer(arbiter.config.status_bind, self.registry, self._live,
                                   self._ready, arbiter.sockets)

    def before_fork(self):
        """A block for the worker about to be forked (it inherits the mapping)."""
        from fastwsgi.metrics import inherit

        block = self.registry.new_block()
        inherit(block)
        return block

    def forked(self, pid, block):
        self.registry.adopt(pid, block)

    def reaped(self, w, status):
        """Worker record ``w`` exited with wait status ``status``."""
        self.registry.retire(w.pid, restart_reason(w, os.waitstatus_to_exitcode(status),
                                                   self.arbiter))

    def timed_out(self):
        self.registry.count_timeout()

    def _live(self):
        return any(w.booted for w in list(self.arbiter.workers.values()))

    def _ready(self):
        a = self.arbiter
        workers = list(a.workers.values())
        if a.stopping or self.draining:
            return "draining"
        if any(w.generation < a.generation for w in workers):
            return "reloading"
        if not any(w.booted and not w.retiring for w in workers):
            return "starting"
        return None

    def close(self):
        self.server.close()


# the worker's recycling reasons (fastwsgi.worker.RECYCLE_REASONS) as metric labels
_RECYCLED = {"max-requests": "max_requests", "max-worker-memory": "memory",
             "max-worker-age": "age", "lost-threads": "timeout", "app-exit": "exit"}


def restart_reason(w, code, arbiter):
    """Why worker record ``w`` (exit code ``code``) is being replaced, or None when it
    is not (the server stops, or SIGTTOU took a worker away)."""
    if arbiter.stopping:
        return None
    if w.aborted or w.reason == "timeout":
        return "timeout"
    reason = w.reason or ""
    if "reload" in reason:
        return "reload"
    if reason == "SIGTTOU":
        return None
    if reason in _RECYCLED:
        return _RECYCLED[reason]
    if code != 0:
        return "crash"
    if reason == "retired" and arbiter.config.max_requests:
        return "max_requests"
    return "exit"


def for_master(arbiter):
    """The status listener of a master process, or None without --status-bind."""
    if not arbiter.config.status_bind:
        return None
    return MasterStatus(arbiter)


# -------------------------------------------------------------------- single process


def for_server(server):
    """Attach metrics to ``server`` (a fastwsgi.server.Server); returns the
    StatusServer it serves itself, or None in a worker (its master serves them)."""
    from fastwsgi.metrics import inherited

    block = inherited()
    if block is not None:               # a worker: the master made our block
        block.set_gauge("pid", os.getpid())
        block.set_gauge("app_threads", max(1, server.config.threads))
        server.state.set_metrics(block)
        return None
    import prometheus_client  # noqa: F401  fail now (clear error) rather than per scrape
    registry = Registry()
    block = registry.new_block()
    block.set_gauge("pid", os.getpid())
    block.set_gauge("app_threads", max(1, server.config.threads))
    registry.serve_own(block)
    server.state.set_metrics(block)

    def ready():
        if server.draining or server.loop.is_stopping:
            return "draining"
        return None

    return StatusServer(server.config.status_bind, registry, lambda: True, ready,
                        server.sockets)
