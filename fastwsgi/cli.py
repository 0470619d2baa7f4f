"""``fastwsgi [OPTIONS] APP_SPEC``: the command line.

``build_parser()`` makes the argparse parser from the settings table
(fastwsgi.config.SETTINGS); ``parse_command_line`` runs it (and sets aside the
gunicorn flags fastwsgi does not declare, for fastwsgi._gunicorn to judge);
``load_config(argv)`` has fastwsgi.config.resolve merge the result with the other
sources and picks the APP_SPEC.

Order of work in ``main()``: load the config (every source), chdir, apply the
process settings (--env, --pythonpath, --name), set up the error log
(--capture-output), then --print-config / --check-config, or hand over to the
process model (``fastwsgi.arbiter.run(app_spec, config)``) when a setting needs a
master process, or load the app and run ``fastwsgi.server.serve(app, config)`` in
this process.

Contract: ``main()`` returns the exit status. Anything the user can fix (bad
value, app that does not load, address in use, unwritable log) is printed as one
line ``fastwsgi: error: ...`` on stderr and returns 1; when the app's own code
raised, its traceback (the app's frames; fastwsgi's too at --log-level debug)
comes first.  Command-line syntax errors exit 2 through argparse.
"""

import importlib
import os
import sys

from fastwsgi import hooks
from fastwsgi._loader import app_traceback
from fastwsgi.config import ENV_PREFIX, SETTINGS, file_mode, resolve
from fastwsgi.errors import AppLoadError, ConfigError, StartupError
from fastwsgi.logs import setup_logging

__all__ = ["main", "load_config", "build_parser", "parse_command_line", "usage_error",
           "version"]

PROG = "fastwsgi"


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 1


# --------------------------------------------------------------------- the parser


def version():
    """fastwsgi's version: fastwsgi.__version__, the one place it is written."""
    from fastwsgi import __version__
    return __version__


def build_parser(prog=PROG):
    """The argparse parser, generated from SETTINGS.

    Every option defaults to SUPPRESS, so the namespace holds only what was given;
    values stay strings here and are validated by the settings' own validators
    (bad values -> ConfigError, exit 1; malformed command lines -> argparse, exit 2).
    """
    import argparse
    import functools

    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} [OPTIONS] APP_SPEC | PREFIX=APP_SPEC...",
        description="A fast WSGI HTTP/1.1 server. APP_SPEC is MODULE[:NAME], "
        "MODULE:NAME.attr or MODULE:FACTORY(ARGS); MODULE alone means MODULE:application. "
        "PREFIX=APP_SPEC arguments mount several apps by path prefix "
        "(fastwsgi /=site:app /api=api.wsgi:application).",
        epilog=f"Every option can also be set as {ENV_PREFIX}<NAME> in the environment, "
        "in [tool.fastwsgi] of ./pyproject.toml, or in a -c config file "
        "(./fastwsgi.conf.py by default); the whole command line can come from "
        f"{ENV_PREFIX}CMD_ARGS. gunicorn's settings and flags: docs/gunicorn.md.",
        argument_default=argparse.SUPPRESS,
        # add_argument() makes a formatter only to check the metavar, which needs
        # no width; the default formatter would look the terminal width up with
        # shutil, which imports zlib, bz2 and lzma (~0.4 MB a server would keep).
        # Help, usage and errors get the default formatter (set below).
        formatter_class=functools.partial(argparse.HelpFormatter, width=80),
    )
    parser.add_argument("app_spec", metavar="APP_SPEC", nargs="*",
                        help="the WSGI application, e.g. myproject.wsgi:application; "
                        "or mounts, PREFIX=APP_SPEC (see --mount)")
    parser.add_argument("-v", "--version", action="version", version=f"{prog} {version()}",
                        help="print the version and exit")
    groups = {}
    for setting in SETTINGS:
        if "cli" not in setting.sources or not setting.flags:
            continue
        group = groups.get(setting.section)
        if group is None:
            group = groups[setting.section] = parser.add_argument_group(setting.section)
        help_text = setting.help.replace("%", "%%")
        if setting.action == "bool":
            group.add_argument(*setting.flags, dest=setting.name,
                               action=argparse.BooleanOptionalAction, help=help_text)
            continue
        if setting.action == "flag":        # a switch with no --no- form
            group.add_argument(*setting.flags, dest=setting.name, action="store_const",
                               const="true", help=help_text)
            continue
        default = setting.default
        if default is not None and default != "" and default != []:
            if isinstance(default, list):
                default = ", ".join(default)
            elif setting.validator is file_mode:
                default = f"{default:o}"
            help_text += f" [default: {str(default).replace('%', '%%')}]"
        group.add_argument(*setting.flags, dest=setting.name, action=setting.action,
                           metavar=setting.metavar, help=help_text)
    parser.formatter_class = argparse.HelpFormatter
    return parser


def usage_error(message):
    """Exit 2 with the usage and ``fastwsgi: error: message``, as argparse does."""
    build_parser().error(message)


def _take_gunicorn_flags(argv):
    """Remove gunicorn's flags that fastwsgi does not declare from ``argv``; return
    (the rest, [(flag, gunicorn setting name, value)]) for fastwsgi.config to judge."""
    from fastwsgi._gunicorn import CONST, FLAGS

    # a gunicorn name that became a fastwsgi setting (and flag) is ours to parse
    ours = {flag for setting in SETTINGS for flag in setting.flags}
    rest, found = [], []
    argv = list(argv)
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        flag, eq, inline = token.partition("=")
        flag = flag if flag.startswith("--") else token
        known = FLAGS.get(flag) if flag not in ours else None
        if known is None:
            rest.append(token)
            i += 1
            continue
        name, takes_value = known
        if not takes_value:
            found.append((flag, name, CONST.get(flag, True)))
            i += 1
        elif eq:
            found.append((flag, name, inline))
            i += 1
        elif i + 1 < len(argv):
            found.append((flag, name, argv[i + 1]))
            i += 2
        else:
            usage_error(f"argument {flag}: expected one argument")
    return rest, found


def _parse(argv):
    argv, gunicorn_flags = _take_gunicorn_flags(argv)
    parser = build_parser()
    namespace, unknown = parser.parse_known_args(argv)
    options = [u for u in unknown if u.startswith("-")]
    if unknown:
        # only the options: a value after one has gone to the APP_SPEC positionals
        parser.error(f"unrecognized option{'s' if len(options) > 1 else ''}: "
                     f"{' '.join(options or unknown)} (fastwsgi --help lists them; "
                     "gunicorn's: docs/gunicorn.md)")
    args = vars(namespace)
    if gunicorn_flags:
        args["gunicorn"] = gunicorn_flags
    return args


def parse_command_line(argv, env_argv=None, drop_parser_modules=False):
    """``argv`` (and ``env_argv``, FASTWSGI_CMD_ARGS split, or None) -> dicts
    {dest: raw value} of the options given, "app_spec" -> positionals, "gunicorn"
    -> gunicorn flags fastwsgi has no setting for; the second dict is None when
    ``env_argv`` is.

    With ``drop_parser_modules`` the modules that parsing imported (argparse,
    gettext, locale: ~0.5 MB, kept for nothing by a server process) leave
    sys.modules again once the parser is garbage, so what the process allocates
    next (the app, the server) reuses their memory; anything that imports them
    later gets them afresh.
    """
    before = set(sys.modules) if drop_parser_modules else None
    env_args = _parse(env_argv) if env_argv is not None else None
    args = _parse(argv)
    if drop_parser_modules:
        import gc
        for name in set(sys.modules) - before:
            del sys.modules[name]
        gc.collect()   # the parser and the modules are reference cycles
    return args, env_args


def load_config(argv=None, env=None, cwd=None, drop_parser_modules=False):
    """Parse ``argv`` and merge every source; return ``(Config, app_spec)``.

    ``app_spec`` is None when only mounts (``PREFIX=APP_SPEC``, ``config.mount``)
    name the apps; ``fastwsgi.mount.build_app(app_spec, config)`` builds either.
    ``env``, ``cwd``: see fastwsgi.config.resolve; ``drop_parser_modules``: see
    ``parse_command_line`` (the CLI's process serves next).  Raises ConfigError for
    bad values; exits with status 2 on usage errors (including a missing APP_SPEC).
    """
    if argv is None:
        argv = sys.argv[1:]
    env = os.environ if env is None else env
    cmd_args = env.get(ENV_PREFIX + "CMD_ARGS")
    if cmd_args:
        import shlex
        try:
            cmd_args = shlex.split(cmd_args)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}CMD_ARGS: {exc}") from None
    args, env_args = parse_command_line(argv, cmd_args or None, drop_parser_modules)
    config = resolve(args, env_args, env, cwd)

    # positional arguments: one APP_SPEC, and/or mounts (they start with "/")
    positional = args.get("app_spec") or (env_args or {}).get("app_spec") or []
    mounts = [p for p in positional if p.startswith("/")]
    specs = [p for p in positional if not p.startswith("/")]
    if len(specs) > 1:
        usage_error(f"more than one APP_SPEC: {' '.join(specs)} "
                    "(mount them: PREFIX=APP_SPEC)")
    if mounts:
        config.set("mount", mounts, "APP_SPEC argument")
    app_spec = (specs[0] if specs else None) or config.wsgi_app
    if not app_spec and not config.mount:
        usage_error("the following arguments are required: APP_SPEC")
    return config, app_spec


# ---------------------------------------------------------------------- running


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
        hook(*args)
    except Exception as exc:
        raise StartupError(f"{name} hook raised {type(exc).__name__}: {exc}") from None


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
                raise StartupError(f"--pid: cannot write {self.path!r}: "
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
    """One process, master and worker at once: the hooks of both that make sense
    without a fork run here, in gunicorn's order."""
    from fastwsgi.mount import build_app   # APP_SPEC or mounts, behind --static
    server_info = hooks.start(config, app_spec)
    _call_hook(config, "on_starting", server_info)
    try:
        listeners = None
        if config.user or config.group:
            # bind while still root (ports < 1024), then drop root before the app
            # is imported (fastwsgi/privileges.py)
            from fastwsgi.privileges import drop_privileges
            listeners = _server().bind_listeners(config)
            drop_privileges(config, listeners)
        app = hooks.wrap_app(build_app(app_spec, config), config)
        server = _server()
        _call_hook(config, "post_worker_init", hooks.current_worker())
        with _Pidfile(config.pidfile):
            if listeners is None:
                return server.serve(app, config)
            return server.serve(app, config, sockets=listeners)
    finally:
        try:
            hooks.call(config, "worker_exit", server_info, hooks.current_worker())
        finally:
            _call_hook(config, "on_exit", server_info)


def _apply_process_settings(config):
    """--env, --pythonpath: what this process (and the workers it forks) needs
    before the app is imported."""
    for item in config.raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    for path in reversed(config.pythonpath):
        path = os.path.abspath(path)
        if path not in sys.path:
            sys.path.insert(0, path)


def _capture_output(config, log):
    """--capture-output: the app's print()s and stray writes go to the error log file."""
    if not config.capture_output:
        return
    if config.error_log == "-":
        log.info("--capture-output: stdout and stderr are the error log already")
        return
    try:
        fd = os.open(config.error_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StartupError(f"--capture-output: cannot open {config.error_log!r}: "
                           f"{(exc.strerror or str(exc)).lower()}") from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _print_config(config):
    """--print-config: every setting, its value and where it came from."""
    width = max(len(s.name) for s in SETTINGS)
    for s in SETTINGS:
        value = getattr(config, s.name)
        text = (f"<{getattr(value, '__qualname__', type(value).__name__)}()>"
                if callable(value) else repr(value))
        print(f"{s.name:{width}} = {text}  # {config.source_of(s.name)}")
    return 0


def _check_config(app_spec, config):
    """--check-config: the settings are valid (else we would not be here) and the
    app loads; nothing is bound or served."""
    from fastwsgi.mount import build_app
    build_app(app_spec, config)
    print(f"{PROG}: configuration and application {app_spec or config.mount} are fine")
    return 0


def _server():
    try:
        return importlib.import_module("fastwsgi.server")
    except Exception as exc:  # compiled modules missing, stale or mismatched
        raise StartupError(f"cannot import the server: {type(exc).__name__}: {exc} "
                           "(rebuild the compiled modules: python setup.py "
                           "build_ext --inplace)") from None


def main(argv=None):
    """Run fastwsgi with ``argv`` (default: sys.argv[1:]); return the exit status."""
    config = None
    try:
        config, app_spec = load_config(argv, drop_parser_modules=True)
        if config.print_config:
            return _print_config(config)
        if config.chdir:
            try:
                os.chdir(config.chdir)
            except OSError as exc:
                raise StartupError(f"--chdir: cannot change to {config.chdir!r}: "
                                   f"{(exc.strerror or str(exc)).lower()}") from None
        _apply_process_settings(config)
        log = setup_logging(config)
        hooks.set_proc_title(config, "master")
        for warning in config.warnings:
            log.warning("%s", warning)
        for note in config.notes:
            log.info("%s", note)
        if config.check_config:
            return _check_config(app_spec, config)
        _capture_output(config, log)
        needs = config.needs_master()
        if needs:
            status = _run_master(app_spec, config, needs)
        else:
            status = _run_single(app_spec, config)
        return 0 if status is None else int(status)
    except AppLoadError as exc:
        # the app's traceback first (its frames; ours too at --log-level debug),
        # then the one line that says what failed
        debug = config is not None and config.log_level == "debug"
        sys.stderr.write(app_traceback(exc, debug))
        return _error(str(exc))
    except (ConfigError, StartupError) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(_describe_os_error(exc))
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
