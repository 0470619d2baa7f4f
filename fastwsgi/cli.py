"""``fastwsgi [OPTIONS] APP_SPEC``: the command line.

Order of work: load the config (every source), chdir, set up the error log, then
either hand over to the process model (``fastwsgi.arbiter.run(app_spec, config)``)
when a setting needs a master process, or load the app and run
``fastwsgi.server.serve(app, config)`` in this process.

Contract: ``main()`` returns the exit status. Anything the user can fix (bad
value, app that does not load, address in use, unwritable log) is printed as one
line ``fastwsgi: error: ...`` on stderr, without a traceback, and returns 1;
command-line syntax errors exit 2 through argparse.
"""

import importlib
import os
import sys

from fastwsgi._loader import AppLoadError
from fastwsgi.config import ConfigError, load_config
from fastwsgi.logs import setup_logging

__all__ = ["main"]

PROG = "fastwsgi"


class _Fatal(Exception):
    """A one-line error for the user (already worded)."""


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 1


def _describe_os_error(exc):
    # strerror, not os.strerror(errno): getaddrinfo errors carry EAI_* codes.
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    reason = reason[:1].lower() + reason[1:]
    address = getattr(exc, "address", None)
    if address is not None:
        return f"cannot bind {address}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return str(exc) if not exc.errno else reason


def _call_hook(config, name, *args):
    hook = getattr(config, name)
    if hook is None:
        return
    try:
        hook(config, *args)
    except Exception as exc:
        raise _Fatal(f"{name} hook raised {type(exc).__name__}: {exc}") from None


class _Pidfile:
    """The single-process pidfile: written at start, removed at exit if still ours."""

    def __init__(self, path):
        self.path = os.path.abspath(path) if path else None

    def __enter__(self):
        if self.path:
            try:
                with open(self.path, "w") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as exc:
                raise _Fatal(f"--pid: cannot write {self.path!r}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
        return self

    def __exit__(self, *exc_info):
        if self.path:
            try:
                with open(self.path) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(self.path)
            except OSError:
                pass


def _run_master(app_spec, config, needs):
    from fastwsgi import arbiter
    return arbiter.run(app_spec, config)


def _run_single(app_spec, config):
    from fastwsgi.mount import build_app   # APP_SPEC or mounts, behind --static
    listeners = None
    if config.user or config.group:
        # bind while still root (ports < 1024), then drop root before the app is
        # imported (fastwsgi/privileges.py)
        from fastwsgi.privileges import drop_privileges
        listeners = _server().bind_listeners(config)
        drop_privileges(config, listeners)
    app = build_app(app_spec, config)
    server = _server()
    _call_hook(config, "on_starting")
    try:
        with _Pidfile(config.pidfile):
            if listeners is None:
                return server.serve(app, config)
            return server.serve(app, config, sockets=listeners)
    finally:
        _call_hook(config, "on_exit")


def _server():
    try:
        return importlib.import_module("fastwsgi.server")
    except Exception as exc:  # compiled modules missing, stale or mismatched
        raise _Fatal(f"cannot import the server: {type(exc).__name__}: {exc} (rebuild "
                     "the compiled modules: python setup.py build_ext --inplace)") from None


def main(argv=None):
    """Run fastwsgi with ``argv`` (default: sys.argv[1:]); return the exit status."""
    try:
        config, app_spec = load_config(argv, drop_parser_modules=True)
        if config.chdir:
            try:
                os.chdir(config.chdir)
            except OSError as exc:
                raise _Fatal(f"--chdir: cannot change to {config.chdir!r}: "
                             f"{(exc.strerror or str(exc)).lower()}") from None
        log = setup_logging(config)
        for warning in config.warnings:
            log.warning("%s", warning)
        needs = config.needs_master()
        if needs:
            status = _run_master(app_spec, config, needs)
        else:
            status = _run_single(app_spec, config)
        return 0 if status is None else int(status)
    except (ConfigError, AppLoadError, _Fatal) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(_describe_os_error(exc))
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
