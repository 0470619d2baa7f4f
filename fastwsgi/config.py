"""Every fastwsgi setting, declared once.

Each ``Setting`` names its config key, CLI flags, environment variable, validator,
default and help text; the command line (``build_parser``), the pyproject table,
the Python config file, the environment, the Python API (``Config.from_options``)
and the docs (``settings_markdown``) all derive from the ``SETTINGS`` table below.
To add a setting, append one ``Setting(...)`` to that table: nothing else changes.

``load_config(argv)`` merges the sources, later ones winning::

    defaults < [tool.fastwsgi] in ./pyproject.toml < -c/--config FILE.py
             < FASTWSGI_<NAME> environment variables < command line

Contract: a value is validated where it is read, and a bad value from any source
(even one a later source overrides) raises ``ConfigError`` whose message is one
line that names the source and the setting, e.g.
``--workers: expected a positive integer, got 'x'``.
Validators take a string (CLI, environment) or a native value (TOML, Python) and
return the normalized value or raise ``ValueError`` with the text after the colon.
"""

import math
import os
import re
import sys
import types
from collections import namedtuple

from fastwsgi.errors import FastWSGIError

# A plain server process keeps every module it imports for its lifetime, so the
# modules that only some settings need are imported where they are used: argparse
# (fastwsgi.cli drops it after parsing), difflib ("did you mean" hints), inspect
# (hook signatures), ipaddress (IP and network values).

__all__ = [
    "ConfigError",
    "Setting",
    "SETTINGS",
    "Config",
    "BindAddress",
    "parse_bind",
    "load_config",
    "build_parser",
    "settings_markdown",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "ENV_PREFIX",
]

ENV_PREFIX = "FASTWSGI_"
DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class ConfigError(FastWSGIError, ValueError):
    """A setting has a bad value; ``str()`` is one line naming source and setting."""


# --------------------------------------------------------------------------- validators
# Each takes the raw value and returns the normalized one, or raises ValueError
# with a message of the form "expected ..., got ...".


def _got(value):
    return repr(value)


def _integer(value, minimum, what):
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {_got(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise ValueError(f"expected {what}, got {_got(value)}") from None
    else:
        raise ValueError(f"expected {what}, got {_got(value)}")
    if number < minimum:
        raise ValueError(f"expected {what}, got {_got(value)}")
    return number


def positive_int(value):
    return _integer(value, 1, "a positive integer")


def non_negative_int(value):
    return _integer(value, 0, "a non-negative integer")


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def _size(value, minimum, what):
    expected = f"{what} in bytes (e.g. 65536, 64K, 1G)"
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"expected {expected}, got {_got(value)}")
        number = int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
        if number < minimum:
            raise ValueError(f"expected {expected}, got {_got(value)}")
        return number
    return _integer(value, minimum, expected)


def positive_size(value):
    return _size(value, 1, "a positive size")


def non_negative_size(value):
    return _size(value, 0, "a non-negative size")


def _seconds(value, positive):
    what = "a positive number of seconds" if positive else "a non-negative number of seconds"
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {_got(value)}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"expected {what}, got {_got(value)}") from None
    else:
        raise ValueError(f"expected {what}, got {_got(value)}")
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"expected {what}, got {_got(value)}")
    return number


def positive_seconds(value):
    return _seconds(value, True)


def non_negative_seconds(value):
    return _seconds(value, False)


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def boolean(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {_got(value)}")


def string(value):
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_got(value)}")
    return value


def optional_string(value):
    """A string, or None; the empty string also means None (the feature is off)."""
    if value is None:
        return None
    return string(value) or None


def non_empty_string(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_got(value)}")
    return value


def header_value(value):
    """A response header value we send verbatim: no CR, LF or other CTL (no injection)."""
    value = string(value)
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        raise ValueError(f"must not contain control characters, got {_got(value)}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"must be ISO-8859-1 text, got {_got(value)}") from None
    return value


def root_path(value):
    """SCRIPT_NAME prefix: "" or "/path" (a trailing slash is dropped)."""
    value = string(value)
    if value and not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {_got(value)}")
    return value.rstrip("/")


def existing_directory(value):
    if value is None:
        return None
    value = non_empty_string(value)
    if not os.path.isdir(value):
        raise ValueError(f"no such directory: {_got(value)}")
    return value


def optional_path(value):
    if value is None:
        return None
    return string(value) or None


def file_mode(value):
    """An octal permission mode: "660", "0660", "0o660", or an int (used as is)."""
    expected = "an octal file mode such as 660 or 0o660"
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}, got {_got(value)}")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("0o"):
            text = text[2:]
        if not text or not set(text) <= set("01234567"):
            raise ValueError(f"expected {expected}, got {_got(value)}")
        mode = int(text, 8)
    else:
        raise ValueError(f"expected {expected}, got {_got(value)}")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"expected {expected}, got {_got(value)}")
    return mode


def choice(*choices):
    def validate(value):
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ValueError(f"expected one of {', '.join(choices)}, got {_got(value)}")

    validate.choices = choices
    return validate


def access_log_format(value):
    """A %-format over the access-log atoms; unknown atoms are rejected up front."""
    from fastwsgi.logs import check_access_log_format

    value = non_empty_string(value)
    check_access_log_format(value)  # raises ValueError naming the bad atom
    return value


def hook(*params):
    """A callable taking exactly ``params`` positionally, or None."""

    def validate(value):
        if value is None:
            return None
        shape = f"a callable taking ({', '.join(params)})"
        if not callable(value):
            raise ValueError(f"expected {shape}, got {_got(value)}")
        import inspect
        try:
            inspect.signature(value).bind(*params)
        except TypeError:
            raise ValueError(f"expected {shape}, got {_got(value)}") from None
        except ValueError:
            pass  # builtins without a signature: trust them
        return value

    validate.params = params
    return validate


class BindAddress(namedtuple("BindAddress", "kind host port path fd protocol",
                             defaults=(None, None, None, None, None))):
    """One parsed ``--bind`` value; ``str()`` gives back its canonical text.

    kind: "tcp", "unix" or "fd"; host: tcp host name or IP (IPv6 without
    brackets); port: tcp 0-65535 (0 = pick a free port); path: unix socket path;
    fd: an inherited, already listening socket; protocol: "uwsgi" for a
    uwsgi:// bind, None: --protocol.
    """

    __slots__ = ()

    def __str__(self):
        prefix = f"{self.protocol}://" if self.protocol else ""
        if self.kind == "unix":
            return f"{prefix}unix:{self.path}"
        if self.kind == "fd":
            return f"{prefix}fd://{self.fd}"
        if ":" in self.host:
            return f"{prefix}[{self.host}]:{self.port}"
        return f"{prefix}{self.host}:{self.port}"


_BIND_FORMS = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
DEFAULT_PORT = 8000


def parse_bind(text):
    """Parse one bind string; raises ValueError with a one-line reason.

    A bare HOST (no port) means HOST:8000, as in gunicorn.  A "uwsgi://" prefix
    (uwsgi://unix:/run/app.sock, uwsgi://127.0.0.1:9000) makes that one listener
    speak the uwsgi protocol whatever --protocol says.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected {_BIND_FORMS}, got {_got(text)}")
    raw = text.strip()
    if raw.startswith("uwsgi://"):
        inner = parse_bind(raw[len("uwsgi://"):])
        if inner.protocol:
            raise ValueError(f"expected uwsgi://ADDRESS, got {_got(text)}")
        return inner._replace(protocol="uwsgi")
    bad = ValueError(f"expected {_BIND_FORMS}, got {_got(text)}")
    if raw.startswith("unix:"):
        path = raw[len("unix:"):]
        if path.startswith("//"):  # unix:///tmp/x.sock, as gunicorn accepts
            path = path[2:]
        if not path:
            raise bad
        return BindAddress("unix", path=path)
    if raw.startswith("fd://"):
        digits = raw[len("fd://"):]
        if not digits.isdigit():
            raise bad
        return BindAddress("fd", fd=int(digits))
    if not raw or any(c.isspace() for c in raw) or "/" in raw:
        raise bad
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise bad
        host, rest = raw[1:close], raw[close + 1:]
        import ipaddress
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r} in {text!r}") from None
        if not rest:
            port_text = str(DEFAULT_PORT)
        elif rest.startswith(":"):
            port_text = rest[1:]
        else:
            raise bad
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            host, port_text = raw, str(DEFAULT_PORT)
        if not host or ":" in host:  # an unbracketed IPv6 address is ambiguous
            raise bad
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port must be 0-65535, got {port_text!r} in {text!r}")
    return BindAddress("tcp", host=host, port=int(port_text))


def bind_list(value):
    """One bind string or a list of them -> a list of canonical strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"expected one or more of {_BIND_FORMS}, got {_got(value)}")
    return [str(parse_bind(item)) for item in value]


def forwarded_allow_ips(value):
    """Peers whose forwarded headers count: "*", or IPs / CIDR networks and "unix"
    (unix-socket peers), comma-separated or a list -> one canonical comma-separated
    string ("127.0.0.1,::1,unix"; fastwsgi.proxy parses it)."""
    expected = "a comma-separated list of IP addresses, CIDR networks, 'unix' or '*'"
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ValueError(f"expected {expected}, got {_got(value)}")
    result = []
    for item in (part.strip() for part in items):
        if item in ("*", "unix"):
            result.append(item)
        elif item:
            import ipaddress
            try:
                net = ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"expected {expected}, got {_got(item)}") from None
            one = net.prefixlen == net.max_prefixlen
            result.append(str(net.network_address) if one else str(net))
    return ",".join(result)


def _prefixed_list(value, what, check_target):
    """PREFIX=TARGET items (one string or a list) -> canonical "PREFIX=TARGET" strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected PREFIX={what}, got {_got(value)}")
    result, seen = [], set()
    for item in value:
        prefix, sep, target = item.partition("=") if isinstance(item, str) else ("", "", "")
        prefix = prefix.strip()
        target = target.strip()
        if not sep or not prefix.startswith("/") or not target:
            raise ValueError(f"expected PREFIX={what} with PREFIX starting with '/', "
                             f"got {_got(item)}")
        prefix = prefix.rstrip("/") or "/"
        if prefix in seen:
            raise ValueError(f"prefix {prefix!r} given twice")
        seen.add(prefix)
        check_target(target)
        result.append(f"{prefix}={target}")
    return result


def static_list(value):
    return _prefixed_list(value, "DIR", lambda target: None)


def mount_list(value):
    def check(target):
        from fastwsgi._loader import parse_app_spec
        parse_app_spec(target)   # AppLoadError is not a ValueError: word it here
    try:
        return _prefixed_list(value, "APP_SPEC", check)
    except FastWSGIError as exc:
        raise ValueError(str(exc)) from None


# ----------------------------------------------------------------------------- settings

# Where a setting may come from. "toml" is [tool.fastwsgi] in pyproject.toml,
# "pyfile" the -c Python config file, "api" Config.from_options(**kwargs).
ALL_SOURCES = frozenset({"cli", "env", "toml", "pyfile", "api"})
HOOK_SOURCES = frozenset({"pyfile", "api"})


class Setting(namedtuple("Setting", "name section validator default help flags action "
                                    "metavar sources aliases",
                         defaults=((), "store", None, ALL_SOURCES, ()))):
    """One setting (a namedtuple: typing.NamedTuple would import typing).

    name: config key, attribute of Config, and FASTWSGI_<NAME.upper()>;
    section: heading in --help and in the docs table; validator: raw value ->
    normalized value, or ValueError; default; help: the --help text; flags: CLI
    flags, the first "--" one names the setting in errors; action: "store",
    "append" (repeatable list) or "bool"; metavar: the value in --help; sources:
    where it may be set (ALL_SOURCES, HOOK_SOURCES...); aliases: other keys
    accepted in files (gunicorn's spelling).
    """

    __slots__ = ()

    @property
    def env_var(self):
        return ENV_PREFIX + self.name.upper() if "env" in self.sources else None

    @property
    def cli_flag(self):
        longs = [f for f in self.flags if f.startswith("--")]
        return (longs or list(self.flags) or [None])[0]


SETTINGS = (
    # -- server socket
    Setting("bind", "Server socket", bind_list, ["127.0.0.1:8000"],
            "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; a "
            "uwsgi:// prefix makes that listener speak the uwsgi protocol. "
            "Repeat the flag to listen on several; the environment variable takes a "
            "comma-separated list.",
            flags=("-b", "--bind"), action="append", metavar="ADDRESS"),
    Setting("backlog", "Server socket", positive_int, 2048,
            "Maximum number of pending connections (listen() backlog).",
            flags=("--backlog",), metavar="INT"),
    Setting("reuse_port", "Server socket", boolean, False,
            "Set SO_REUSEPORT on listening sockets.",
            flags=("--reuse-port",), action="bool"),
    Setting("unix_socket_mode", "Server socket", file_mode, 0o660,
            "Permission bits of a unix: socket, in octal (660, 0o660).",
            flags=("--unix-socket-mode",), metavar="MODE"),
    Setting("max_connections", "Server socket", positive_int, 10000,
            "Maximum number of simultaneous client connections per worker.",
            flags=("--max-connections",), metavar="INT"),
    # -- behind a proxy (fastwsgi/proxy.py, docs/deployment.md)
    Setting("protocol", "Proxy", choice("http", "uwsgi"), "http",
            "Protocol of the listeners: http, or uwsgi (for nginx's uwsgi_pass). A "
            "uwsgi:// prefix on one --bind makes just that listener speak uwsgi.",
            flags=("--protocol",), metavar="PROTOCOL"),
    Setting("proxy_protocol", "Proxy", boolean, False,
            "Expect a PROXY protocol v1/v2 header (HAProxy, AWS NLB) at the start of "
            "every connection; it names the client (REMOTE_ADDR/REMOTE_PORT).",
            flags=("--proxy-protocol",), action="bool"),
    Setting("forwarded_allow_ips", "Proxy", forwarded_allow_ips,
            "127.0.0.1,::1,unix",
            "Peers trusted to set X-Forwarded-For/-Proto/-Host/-Port and Forwarded: "
            "comma-separated IPs or CIDR networks, 'unix' for unix-socket peers, '*' for "
            "all. Headers from other peers are ignored.",
            flags=("--forwarded-allow-ips",), metavar="LIST"),
    # -- HTTP protocol and limits
    Setting("root_path", "HTTP", root_path, "",
            "SCRIPT_NAME the application is mounted under, e.g. /api.",
            flags=("--root-path",), metavar="PATH"),
    Setting("server_header", "HTTP", header_value, "fastwsgi",
            "Value of the Server response header; empty for none.",
            flags=("--server-header",), metavar="TEXT"),
    Setting("limit_request_line", "HTTP", positive_int, 8190,
            "Maximum size in bytes of the request line (414 beyond).",
            flags=("--limit-request-line",), metavar="BYTES"),
    Setting("limit_header_size", "HTTP", positive_size, 65536,
            "Maximum size in bytes of the whole request head (431 beyond).",
            flags=("--limit-header-size",), metavar="BYTES"),
    Setting("limit_request_fields", "HTTP", positive_int, 100,
            "Maximum number of header fields in a request (431 beyond).",
            flags=("--limit-request-fields",), metavar="INT"),
    Setting("limit_request_body", "HTTP", non_negative_size, 1073741824,
            "Maximum request body size in bytes (413 beyond); 0 = unlimited.",
            flags=("--limit-request-body",), metavar="BYTES"),
    Setting("keep_alive", "HTTP", non_negative_seconds, 5.0,
            "Seconds an idle keep-alive connection is kept open; 0 disables keep-alive.",
            flags=("--keep-alive",), metavar="SECONDS", aliases=("keepalive",)),
    Setting("header_timeout", "HTTP", positive_seconds, 10.0,
            "Seconds a client has to send a complete request head.",
            flags=("--header-timeout",), metavar="SECONDS"),
    Setting("io_timeout", "HTTP", positive_seconds, 30.0,
            "Seconds a blocking body read or response write may wait for the client.",
            flags=("--io-timeout",), metavar="SECONDS"),
    # -- logging
    Setting("log_level", "Logging", choice("debug", "info", "warning", "error", "critical"),
            "info", "Error log level: debug, info, warning, error or critical.",
            flags=("--log-level",), metavar="LEVEL", aliases=("loglevel",)),
    Setting("error_log", "Logging", non_empty_string, "-",
            "Error log file; '-' = stderr.",
            flags=("--error-logfile", "--log-file"), metavar="FILE", aliases=("errorlog",)),
    Setting("access_log", "Logging", optional_string, None,
            "Access log file; '-' = stdout. Off by default.",
            flags=("--access-logfile", "--access-log"), metavar="FILE",
            aliases=("accesslog",)),
    Setting("access_log_format", "Logging", access_log_format, DEFAULT_ACCESS_LOG_FORMAT,
            "Access log line format (gunicorn's atoms: h l u t r m U q H s b B f a T M D "
            "L p, %({header}i)s, %({var}e)s). Default: Apache combined.",
            flags=("--access-logformat",), metavar="FORMAT"),
    # -- processes
    Setting("workers", "Processes", positive_int, 1,
            "Number of worker processes.",
            flags=("-w", "--workers"), metavar="INT"),
    Setting("threads", "Processes", positive_int, 1,
            "Number of threads per worker that run the application.",
            flags=("--threads",), metavar="INT"),
    Setting("timeout", "Processes", non_negative_seconds, 30.0,
            "An app call running longer than this many seconds gets its stack logged, "
            "and its worker is killed and replaced; 0 = never. Needs the master process: "
            "setting it explicitly starts one even with one worker.",
            flags=("-t", "--timeout"), metavar="SECONDS"),
    Setting("graceful_timeout", "Processes", non_negative_seconds, 30.0,
            "Seconds workers get to finish in-flight requests after a stop signal.",
            flags=("--graceful-timeout",), metavar="SECONDS"),
    Setting("max_requests", "Processes", non_negative_int, 0,
            "Restart a worker after this many requests; 0 = never.",
            flags=("--max-requests",), metavar="INT"),
    Setting("max_requests_jitter", "Processes", non_negative_int, 0,
            "Add a random 0..N to max_requests per worker so they do not restart together.",
            flags=("--max-requests-jitter",), metavar="INT"),
    Setting("preload", "Processes", boolean, False,
            "Load the application in the master before forking workers.",
            flags=("--preload",), action="bool"),
    Setting("reload", "Processes", boolean, False,
            "Restart workers when a source file changes (development).",
            flags=("--reload",), action="bool"),
    Setting("pidfile", "Processes", optional_path, None,
            "Write the master's pid to this file (removed at exit).",
            flags=("--pid",), metavar="FILE"),
    # -- application and configuration
    Setting("wsgi_app", "Application", optional_string, None,
            "The app to serve, MODULE[:NAME]; the APP_SPEC argument overrides it.",
            sources=frozenset({"env", "toml", "pyfile"})),
    Setting("chdir", "Application", existing_directory, None,
            "Change to this directory before loading the app (it also goes first on "
            "sys.path).",
            flags=("--chdir",), metavar="DIR"),
    Setting("config", "Application", optional_path, None,
            "Python config file: its module-level names are settings (and hooks).",
            flags=("-c", "--config"), metavar="FILE",
            sources=frozenset({"cli", "env"})),
    Setting("mount", "Application", mount_list, [],
            "Serve an app under a path prefix, PREFIX=APP_SPEC (repeatable); positional "
            "arguments starting with '/' are mounts too: fastwsgi /=site:app "
            "/api=api.wsgi:application.",
            flags=("--mount",), action="append", metavar="PREFIX=APP_SPEC"),
    Setting("static", "Application", static_list, [],
            "Serve the files of DIR under PREFIX, e.g. /static=./static (repeatable): "
            "sendfile, ETag/Last-Modified, Range, HEAD.",
            flags=("--static",), action="append", metavar="PREFIX=DIR"),
    # -- server hooks (Python config file or API only)
    Setting("on_starting", "Hooks", hook("config"), None,
            "on_starting(config): called once in the master before sockets are bound.",
            sources=HOOK_SOURCES),
    Setting("post_fork", "Hooks", hook("config", "worker_pid"), None,
            "post_fork(config, worker_pid): called in each worker right after fork.",
            sources=HOOK_SOURCES),
    Setting("worker_exit", "Hooks", hook("config", "worker_pid"), None,
            "worker_exit(config, worker_pid): called in a worker just before it exits.",
            sources=HOOK_SOURCES),
    Setting("on_exit", "Hooks", hook("config"), None,
            "on_exit(config): called once in the master just before fastwsgi exits.",
            sources=HOOK_SOURCES),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
assert len(SETTINGS_BY_NAME) == len(SETTINGS), "a setting is declared twice"
# File keys: names plus aliases (gunicorn's spellings, so its config files carry over).
_FILE_KEYS = dict(SETTINGS_BY_NAME)
_FILE_KEYS.update((alias, s) for s in SETTINGS for alias in s.aliases)
assert len(_FILE_KEYS) == len(SETTINGS) + sum(len(s.aliases) for s in SETTINGS)

# gunicorn settings with no fastwsgi equivalent: a config file setting one gets a
# warning instead of silence (a name that becomes a setting later simply stops
# being looked up here).
GUNICORN_UNSUPPORTED = frozenset({
    "worker_class", "worker_connections", "daemon", "user", "group", "umask",
    "proc_name", "logconfig", "logconfig_dict", "syslog", "statsd_host",
    "capture_output", "enable_stdio_inheritance", "certfile", "keyfile", "limit_request_field_size",
    "when_ready", "pre_fork", "pre_request", "post_request", "child_exit",
    "worker_int", "worker_abort", "pre_exec", "post_worker_init",
    "nworkers_changed", "on_reload", "worker_tmp_dir",
})


def _did_you_mean(name):
    import difflib
    close = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -------------------------------------------------------------------------------- Config


class Config:
    """The resolved settings: ``config.workers``, ``config.bind``, ...

    Assigning an attribute validates it like any other source; ``source_of(name)``
    tells where a value came from ("default", "--workers", "FASTWSGI_WORKERS", ...).
    ``warnings`` holds non-fatal notes made while loading, for the error log.
    """

    def __init__(self):
        values = {}
        for s in SETTINGS:
            values[s.name] = list(s.default) if isinstance(s.default, list) else s.default
        object.__setattr__(self, "_sources", dict.fromkeys(values, "default"))
        object.__setattr__(self, "warnings", [])
        self.__dict__.update(values)

    @classmethod
    def from_options(cls, **options):
        """Defaults overridden by keyword arguments (the Python API).

        An unknown keyword raises TypeError; a bad value raises ConfigError.
        """
        config = cls()
        for name, value in options.items():
            setting = SETTINGS_BY_NAME.get(name)
            if setting is None or "api" not in setting.sources:
                raise TypeError(
                    f"from_options() got an unexpected keyword argument {name!r}"
                    + _did_you_mean(name)
                )
            config.set(name, value, f"{name}=")
        return config

    def set(self, name, value, source):
        """Validate ``value`` for setting ``name`` and store it, remembering ``source``."""
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"{source}: unknown setting {name!r}{_did_you_mean(name)}")
        try:
            normalized = setting.validator(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        self.__dict__[name] = normalized
        self._sources[name] = source

    def __setattr__(self, name, value):
        if name not in SETTINGS_BY_NAME:
            raise AttributeError(f"Config has no setting {name!r}{_did_you_mean(name)}")
        self.set(name, value, f"Config.{name}")

    def source_of(self, name):
        return self._sources[name]

    def as_dict(self):
        return {s.name: self.__dict__[s.name] for s in SETTINGS}

    @property
    def bind_addresses(self):
        """``bind`` parsed into ``BindAddress`` tuples (kind, host, port, path, fd)."""
        return [parse_bind(b) for b in self.bind]

    def needs_master(self):
        """The setting that needs a master process, as its CLI text, or None."""
        if self.workers > 1:
            return "--workers > 1"
        if self.reload:
            return "--reload"
        if self.max_requests > 0:
            return "--max-requests"
        # a hung app call can only be killed from outside, and preloading means
        # importing before forking: both need the master, even for one worker
        if self.preload:
            return "--preload"
        if self.timeout > 0 and self.source_of("timeout") != "default":
            return "--timeout"
        return None

    def __repr__(self):
        changed = ", ".join(
            f"{s.name}={self.__dict__[s.name]!r}"
            for s in SETTINGS
            if self._sources[s.name] != "default"
        )
        return f"Config({changed})"


# ------------------------------------------------------------------------------ sources


def _read_pyproject(config, path):
    """Apply [tool.fastwsgi] of ``path`` (if it exists) to ``config``."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"fastwsgi" not in raw:
        return  # not ours: do not even parse it
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            config.warnings.append(
                f"{path}: [tool.fastwsgi] ignored: reading it on Python 3.10 needs "
                "the 'tomli' package"
            )
            return
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    tool = document.get("tool", {})
    table = tool.get("fastwsgi") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.fastwsgi] must be a table")
    if table is None:
        return
    for key, value in table.items():
        source = f"{path} [tool.fastwsgi] {key}"
        setting = _FILE_KEYS.get(key.replace("-", "_"))
        name = setting.name if setting else key.replace("-", "_")
        if setting is None:
            raise ConfigError(f"{source}: unknown setting{_did_you_mean(name)}")
        if "toml" not in setting.sources:
            where = "in a Python config file (-c)" if "pyfile" in setting.sources else (
                "on the command line or in " + setting.env_var
            )
            raise ConfigError(f"{source}: can only be set {where}")
        config.set(name, value, source)


def _exec_config_file(path, flag):
    """Run a Python config file like gunicorn does; return its namespace."""
    try:
        with open(path, "rb") as f:
            code = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{flag}: no such file: {path!r}") from None
    except IsADirectoryError:
        raise ConfigError(f"{flag}: {path!r} is a directory") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"{flag}: cannot read {path!r}: {reason}") from None
    namespace = {
        "__builtins__": __builtins__,
        "__name__": "__config__",
        "__file__": os.path.abspath(path),
        "__doc__": None,
        "__package__": None,
    }
    try:
        exec(compile(code, path, "exec"), namespace, namespace)
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:  # the file is user code: report, do not crash
        lineno = _last_lineno_in(exc.__traceback__, path)
        where = f"{path}:{lineno}" if lineno else path
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    return namespace


def _last_lineno_in(tb, filename):
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    return lineno


def _apply_config_file(config, path, flag="--config"):
    namespace = _exec_config_file(path, flag)
    for key, value in namespace.items():
        # isinstance(): inspect.ismodule/isclass/isfunction, without importing inspect
        if key.startswith("_") or isinstance(value, types.ModuleType):
            continue
        setting = _FILE_KEYS.get(key)
        if setting is None:
            # Helper names are allowed, as in gunicorn; flag likely mistakes only.
            if key in GUNICORN_UNSUPPORTED:
                config.warnings.append(
                    f"{path}: {key!r} is a gunicorn setting fastwsgi does not support; "
                    "ignored")
            elif not isinstance(value, (type, types.FunctionType)):
                hint = _did_you_mean(key)
                if hint:
                    config.warnings.append(f"{path}: {key!r} is not a setting{hint}")
            continue
        if "pyfile" not in setting.sources:
            raise ConfigError(f"{path}: {key}: can only be set on the command line "
                              f"or in {setting.env_var}")
        config.set(setting.name, value, f"{path}: {key}")


def _apply_env(config, env):
    for setting in SETTINGS:
        var = setting.env_var
        if var is None or var not in env:
            continue
        value = env[var]
        if setting.action == "append":
            value = [part.strip() for part in value.split(",") if part.strip()]
        config.set(setting.name, value, var)


# ----------------------------------------------------------------------------------- CLI


def version():
    """fastwsgi's version: fastwsgi.__version__, the one place it is written."""
    from fastwsgi import __version__
    return __version__


def build_parser(prog="fastwsgi"):
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
        "in [tool.fastwsgi] of ./pyproject.toml, or in a -c config file.",
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
    parser.add_argument("--version", action="version", version=f"{prog} {version()}",
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
        default = setting.default
        if default is not None and default != "":
            if isinstance(default, list):
                default = ", ".join(default)
            elif setting.validator is file_mode:
                default = f"{default:o}"
            help_text += f" [default: {str(default).replace('%', '%%')}]"
        group.add_argument(*setting.flags, dest=setting.name, action=setting.action,
                           metavar=setting.metavar, help=help_text)
    parser.formatter_class = argparse.HelpFormatter
    return parser


def _parse_command_line(argv, drop_parser_modules):
    """``argv`` -> {dest: raw value} of the options given, "app_spec" -> positionals.

    With ``drop_parser_modules`` the modules that parsing imported (argparse,
    gettext, locale: ~0.5 MB, kept for nothing by a server process) leave
    sys.modules again once the parser is garbage, so what the process allocates
    next (the app, the server) reuses their memory; anything that imports them
    later gets them afresh.
    """
    before = set(sys.modules) if drop_parser_modules else None
    args = vars(build_parser().parse_args(list(argv)))
    if drop_parser_modules:
        import gc
        for name in set(sys.modules) - before:
            del sys.modules[name]
        gc.collect()   # the parser and the modules are reference cycles
    return args


def load_config(argv=None, env=None, cwd=None, drop_parser_modules=False):
    """Parse ``argv`` and merge every source; return ``(Config, app_spec)``.

    ``app_spec`` is None when only mounts (``PREFIX=APP_SPEC``, ``config.mount``)
    name the apps; ``fastwsgi.mount.build_app(app_spec, config)`` builds either.

    ``env`` defaults to os.environ and ``cwd`` (where pyproject.toml is looked for,
    and relative config-file paths start) to the current directory.
    Raises ConfigError for bad values; argparse exits with status 2 on usage errors
    (including a missing APP_SPEC). ``drop_parser_modules``: see
    ``_parse_command_line`` (the CLI's process serves next).
    """
    if argv is None:
        argv = sys.argv[1:]
    env = os.environ if env is None else env
    args = _parse_command_line(argv, drop_parser_modules)

    config = Config()
    pyproject = "pyproject.toml" if cwd is None else os.path.join(cwd, "pyproject.toml")
    _read_pyproject(config, pyproject)

    config_file = args.get("config")
    config_source = "--config"
    if config_file is None and ENV_PREFIX + "CONFIG" in env:
        config_file, config_source = env[ENV_PREFIX + "CONFIG"], ENV_PREFIX + "CONFIG"
    if config_file:
        if cwd is not None and not os.path.isabs(config_file):
            config_file = os.path.join(cwd, config_file)
        if not os.path.exists(config_file):
            raise ConfigError(f"{config_source}: no such file: {config_file!r}")
        _apply_config_file(config, config_file, config_source)

    _apply_env(config, env)

    for setting in SETTINGS:
        if setting.name in args:
            config.set(setting.name, args[setting.name], setting.cli_flag)

    # positional arguments: one APP_SPEC, and/or mounts (they start with "/")
    positional = args.get("app_spec") or []
    mounts = [p for p in positional if p.startswith("/")]
    specs = [p for p in positional if not p.startswith("/")]
    if len(specs) > 1:
        build_parser().error(f"more than one APP_SPEC: {' '.join(specs)} "
                             "(mount them: PREFIX=APP_SPEC)")
    if mounts:
        config.set("mount", mounts, "APP_SPEC argument")
    app_spec = (specs[0] if specs else None) or config.wsgi_app
    if not app_spec and not config.mount:
        build_parser().error("the following arguments are required: APP_SPEC")
    return config, app_spec


# ---------------------------------------------------------------------------------- docs


def settings_markdown():
    """A Markdown table of every setting, for the README."""

    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    def code(text):
        return "" if text is None or text == "" else f"`{text}`"

    rows = [
        "| Setting | Command line | Environment | Default | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        flags = ", ".join(code(f) for f in s.flags) if "cli" in s.sources else ""
        if s.action == "bool" and flags:
            flags += ", " + code("--no-" + s.cli_flag[2:])
        if s.sources == HOOK_SOURCES:
            flags = "config file only"
        elif not flags:
            flags = "APP_SPEC argument" if s.name == "wsgi_app" else ""
        if s.default is None:
            default = ""
        elif isinstance(s.default, list):
            default = code(", ".join(s.default))
        elif s.validator is file_mode:
            default = code(f"0o{s.default:o}")
        else:
            default = code(repr(s.default) if isinstance(s.default, str) else s.default)
        help_text = s.help
        if s.aliases:
            help_text += " Files also accept " + ", ".join(code(a) for a in s.aliases) + "."
        rows.append(
            f"| {code(s.name)} | {cell(flags)} | {code(s.env_var or '')} | "
            f"{cell(default)} | {cell(help_text)} |"
        )
    return "\n".join(rows) + "\n"


def settings_document():
    """docs/settings.md, whole: the table with its preamble."""
    return ("# Settings\n\n"
            "Every setting, as `fastwsgi --help` shows it. Generated from `fastwsgi/config.py`\n"
            "(`python -m fastwsgi.config > docs/settings.md`); a test keeps the two identical.\n\n"
            "Precedence, low to high: defaults, `[tool.fastwsgi]` in `pyproject.toml`, the\n"
            "`-c` Python config file, `FASTWSGI_*` environment variables, the command line.\n"
            "The Python API (`fastwsgi.run(app, **options)`) takes the setting names.\n\n"
            + settings_markdown() + "\n")


if __name__ == "__main__":
    import sys
    sys.stdout.write(settings_document())
