"""Server hooks with gunicorn's arguments, so a gunicorn.conf.py's hooks run unchanged.

gunicorn passes its Arbiter as ``server`` and its Worker as ``worker``; hooks use a
few of their attributes (``server.log.info(...)``, ``worker.pid``).  ``ServerInfo``
and ``WorkerInfo`` are those shapes over fastwsgi's master and workers:

    server: .log (the 'fastwsgi.error' logger) .cfg (the Config) .pid (the master)
            .app (.cfg, .app_uri, .wsgi()) .num_workers .address .proc_name
    worker: .log .cfg .pid .ppid .age (spawn order, 1-based) .app .wsgi (the app,
            once loaded) .alive .booted

Who calls what (the moments gunicorn has; docs/gunicorn.md lists them):

    master (arbiter.py)   on_starting, nworkers_changed, when_ready, pre_fork,
                          on_reload, child_exit, on_exit
    worker (worker.py)    post_fork, post_worker_init, worker_int, worker_abort,
                          worker_exit; pre_request and post_request around each
                          request (``wrap_app``)
    single process (cli)  on_starting, when_ready, post_worker_init,
                          pre_request/post_request, worker_exit, on_exit

Contract: ``call(config, name, *args)`` runs hook ``name`` if it is set and returns
False (after logging the traceback) if it raised, True otherwise.  Each process
knows one ``server`` and, in a worker, one ``worker`` (``current_server()``,
``current_worker()``): set by ``start()`` in the master or single process, by
``forked()`` in a new worker.  ``wrap_app`` returns the app itself when neither
pre_request nor post_request is set: requests pay nothing for hooks nobody set.
``set_proc_title`` names the process after --name (gunicorn's proc_name), as
gunicorn does, when setproctitle is installed.
"""

import logging
import os
import signal

__all__ = ["ServerInfo", "WorkerInfo", "Request", "Response", "call", "start",
           "forked", "current_server", "current_worker", "wrap_app", "on_abort",
           "set_proc_title"]

log = logging.getLogger("fastwsgi.error")

_current = {"server": None, "worker": None}


class AppInfo:
    """gunicorn's ``server.app`` (its Application): the config and the app spec."""

    def __init__(self, config, app_spec):
        self.cfg = config
        self.app_uri = app_spec
        self.callable = None            # the WSGI app, once this process loaded it

    def wsgi(self):
        return self.callable


class ServerInfo:
    """What gunicorn's hooks get as ``server``: the master (or the single process)."""

    def __init__(self, config, app_spec, arbiter=None):
        self.cfg = config
        self.log = log
        self.app = AppInfo(config, app_spec)
        self._arbiter = arbiter
        self._pid = os.getpid()

    @property
    def pid(self):
        return getattr(self._arbiter, "pid", self._pid)

    @property
    def num_workers(self):
        return getattr(self._arbiter, "num_workers", 1)

    @property
    def address(self):
        return list(self.cfg.bind)

    @property
    def proc_name(self):
        return self.cfg.proc_name or self.app.app_uri or "fastwsgi"

    def __repr__(self):
        return f"<fastwsgi server pid={self.pid}>"


class WorkerInfo:
    """What gunicorn's hooks get as ``worker``.  Made in the master before the fork
    (``pre_fork`` sees ``pid`` None), completed in both processes after it."""

    def __init__(self, server, age, pid=None):
        self.server = server
        self.cfg = server.cfg
        self.log = log
        self.app = server.app
        self.age = age
        self.pid = pid
        self.ppid = server.pid
        self.wsgi = None
        self.alive = True
        self.booted = False

    def __repr__(self):
        return f"<fastwsgi worker pid={self.pid} age={self.age}>"


# ------------------------------------------------------------------ this process


def start(config, app_spec, arbiter=None):
    """The master (``arbiter``) or a single-process server starts: its ``server``."""
    server = ServerInfo(config, app_spec, arbiter)
    _current["server"], _current["worker"] = server, None
    if arbiter is None:                 # one process is master and worker at once
        _current["worker"] = WorkerInfo(server, 1, os.getpid())
    return server


def forked(worker):
    """In a new worker process, right after fork(): ``worker`` is this process."""
    worker.pid = os.getpid()
    _current["worker"] = worker
    set_proc_title(worker.cfg, "worker")
    return worker


def current_server():
    return _current["server"]


def current_worker():
    return _current["worker"]


def call(config, name, *args):
    """Run hook ``name`` with ``args`` if set; False if it raised (logged)."""
    hook = getattr(config, name, None)
    if hook is None:
        return True
    try:
        hook(*args)
        return True
    except Exception:
        log.exception("%s hook raised", name)
        return False


# ------------------------------------------------------------- per request hooks


class Request:
    """gunicorn's ``req`` as pre_request/post_request read it, from the environ."""

    def __init__(self, environ):
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.query = environ.get("QUERY_STRING", "")
        self.fragment = ""
        self.uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
            environ.get("SCRIPT_NAME", "") + self.path
            + ("?" + self.query if self.query else ""))
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        major, _, minor = protocol.partition("/")[2].partition(".")
        self.version = (int(major or 1), int(minor or 0)) if (
            major + minor).isdigit() else (1, 1)
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR")
        self.peer_addr = self.remote_addr
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-"), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                headers.append((key.replace("_", "-"), value))
        self.headers = headers          # gunicorn's: (UPPER-CASE-NAME, value)

    def __repr__(self):
        return f"<Request {self.method} {self.uri}>"


class Response:
    """gunicorn's ``resp`` for post_request: status, headers, bytes sent."""

    def __init__(self):
        self.status = None
        self.status_code = None
        self.headers = []
        self.sent = 0
        self.response_length = None

    def _started(self, status, headers):
        self.status = status
        self.status_code = int(status[:3]) if status[:3].isdigit() else None
        self.headers = list(headers)
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                self.response_length = int(value)


class _Finished:
    """The app's response iterable, counting what it yields; post_request runs when
    the server closes it (the response is done), as gunicorn runs it after the
    request is handled."""

    def __init__(self, result, resp, done):
        self._result = result
        self._resp = resp
        self._done = done

    def __iter__(self):
        for chunk in self._result:
            self._resp.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


def wrap_app(app, config, worker=None):
    """``app`` run between pre_request and post_request, or ``app`` itself if neither
    is set.  An exception from pre_request fails that request (500, logged), as in
    gunicorn; one from post_request is logged.  post_request runs once the server
    closes the response, or at once if pre_request or the app raised."""
    worker = worker or current_worker()
    if worker is not None:
        worker.wsgi = app
        worker.app.callable = app
    pre, post = config.pre_request, config.post_request
    if pre is None and post is None:
        return app

    def hooked(environ, start_response):
        req = Request(environ)
        if post is None:
            pre(worker, req)
            return app(environ, start_response)
        resp = Response()

        def done():
            call(config, "post_request", worker, req, environ, resp)

        def start(status, headers, exc_info=None):
            resp._started(status, headers)
            return start_response(status, headers, exc_info)

        try:                    # as gunicorn: post_request even if pre_request raised
            if pre is not None:
                pre(worker, req)
            result = app(environ, start)
        except BaseException:
            done()
            raise
        return _Finished(result, resp, done)

    hooked.__wrapped__ = app
    return hooked


# ------------------------------------------------------------------------ SIGABRT


def on_abort(config):
    """If worker_abort is set, run it when the master sends SIGABRT (--timeout).

    Call before ``faulthandler.enable()``: faulthandler then writes every stack at
    once (even with the main thread stuck in C) and hands the signal on to this
    Python handler, which runs the hook as soon as the interpreter can and then
    dies of SIGABRT as it would have.
    """
    if config.worker_abort is None:
        return

    def handler(signum, frame):
        worker = current_worker()
        if worker is not None:
            worker.alive = False
        call(config, "worker_abort", worker)
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGABRT)

    signal.signal(signal.SIGABRT, handler)


# ---------------------------------------------------------------- process titles


def set_proc_title(config, role):
    """--name/proc_name: "fastwsgi: ROLE NAME" as gunicorn's "gunicorn: master [NAME]",
    with setproctitle if it is installed (else a debug note: nothing to do)."""
    if not config.proc_name:
        return
    try:
        from setproctitle import setproctitle
    except ImportError:
        log.debug("--name %s: process titles need the setproctitle package; not set",
                  config.proc_name)
        return
    setproctitle(f"fastwsgi: {role} {config.proc_name}")
