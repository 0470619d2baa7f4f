"""Every fastwsgi setting, declared once.

Each ``Setting`` names its config key, CLI flags, environment variable, validator,
default and help text; the command line (``fastwsgi.cli.build_parser``), the
pyproject table, the Python config file, the environment, the Python API
(``Config.from_options``) and the docs (``settings_markdown``) all derive from the
``SETTINGS`` table below.  To add a setting, append one ``Setting(...)`` to that
table: nothing else changes.  gunicorn's spellings are the ``aliases`` column;
gunicorn settings with no fastwsgi equivalent are judged by fastwsgi._gunicorn.

``resolve(args)`` merges the sources, later ones winning (``args``: the command
line as fastwsgi.cli parsed it; ``fastwsgi.cli.load_config(argv)`` does both)::

    defaults < WEB_CONCURRENCY (workers) < [tool.fastwsgi] in ./pyproject.toml
             < -c/--config FILE.py (default: ./fastwsgi.conf.py if it exists)
             < FASTWSGI_<NAME> environment variables < FASTWSGI_CMD_ARGS
             < command line

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

from fastwsgi.errors import ConfigError, FastWSGIError

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
    "resolve",
    "settings_markdown",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "ENV_PREFIX",
    "DEFAULT_CONFIG_FILE",
]

ENV_PREFIX = "FASTWSGI_"
DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# loaded when no -c/FASTWSGI_CONFIG names one, as gunicorn loads ./gunicorn.conf.py
DEFAULT_CONFIG_FILE = "fastwsgi.conf.py"


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


def optional_header_value(value):
    """None, or a header_value (an empty string is None: no header)."""
    if value is None:
        return None
    return header_value(value) or None


def user_spec(value):
    from fastwsgi.privileges import user_id
    return user_id(value)


def group_spec(value):
    from fastwsgi.privileges import group_id
    return group_id(value)


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


def status_address(value):
    """--status-bind: a TCP HOST:PORT (or None: off); needs prometheus_client."""
    value = optional_string(value)
    if value is None:
        return None
    addr = parse_bind(value)
    if addr.kind != "tcp" or addr.protocol:
        raise ValueError(f"expected HOST:PORT or [IPv6]:PORT, got {_got(value)}")
    from fastwsgi.metrics import require_prometheus_client
    require_prometheus_client()      # ValueError: the extra is not installed
    return str(addr)


def otel_switch(value):
    """--otel: true needs the otel extra (OpenTelemetry's API) installed."""
    value = boolean(value)
    if value:
        from fastwsgi.otel import require_opentelemetry
        require_opentelemetry()
    return value


def callable_spec(value):
    """MODULE:FUNCTION, imported when used (or None: off)."""
    value = optional_string(value)
    if value is None:
        return None
    module, sep, name = value.partition(":")
    if not sep or not all(part.isidentifier() for part in module.split(".") + name.split(".")):
        raise ValueError(f"expected MODULE:FUNCTION, got {_got(value)}")
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


def post_request_hook(value):
    """gunicorn's post_request: (worker, req), (worker, req, environ) or (worker, req,
    environ, resp); returned as a callable taking all four."""
    if value is None:
        return None
    for count in (4, 3, 2):
        try:
            checked = hook(*("worker", "req", "environ", "resp")[:count])(value)
        except ValueError:
            continue
        return _adapt(checked, count)
    raise ValueError("expected a callable taking (worker, req[, environ[, resp]]), "
                     f"got {_got(value)}")


def _adapt(func, count):
    if count == 4:
        return func

    def post_request(worker, req, environ, resp):
        return func(*(worker, req, environ)[:count])

    post_request.__wrapped__ = func
    return post_request


# gunicorn's worker classes whose meaning fastwsgi's worker has: one event loop per
# worker process, the app on --threads threads
_WORKER_CLASSES = {
    "sync": "sync", "gunicorn.workers.sync.SyncWorker": "sync",
    "gthread": "gthread", "gunicorn.workers.gthread.ThreadWorker": "gthread",
}


def worker_class(value):
    """-k/--worker-class: gunicorn's sync and gthread map onto fastwsgi's worker."""
    if isinstance(value, str) and value.strip() in _WORKER_CLASSES:
        return _WORKER_CLASSES[value.strip()]
    raise ValueError(f"fastwsgi has no worker class {_got(value)}: its worker serves "
                     "connections from an event loop and runs the app on --threads N "
                     "threads (-k sync and -k gthread are accepted)")


def env_list(value):
    """KEY=VALUE items (one string or a list) -> canonical "KEY=VALUE" strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected KEY=VALUE, got {_got(value)}")
    result = []
    for item in value:
        key, sep, _ = item.partition("=") if isinstance(item, str) else ("", "", "")
        if not sep or not key or "\0" in item or any(c.isspace() for c in key):
            raise ValueError(f"expected KEY=VALUE, got {_got(item)}")
        result.append(item)
    return result


def path_list(value):
    """Directories, comma-separated or a list (gunicorn's --pythonpath)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected comma-separated directories, got {_got(value)}")
    return [v.strip() for v in value if v.strip()]


def file_list(value):
    """Paths or glob patterns, one string or a list."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value):
        raise ValueError(f"expected file paths or glob patterns, got {_got(value)}")
    return list(value)


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

    A bare HOST (no port) means HOST:8000, and ":PORT" or a bare PORT all
    interfaces (0.0.0.0:PORT), as in gunicorn.  A "uwsgi://" prefix
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
    if raw.startswith("tcp://"):            # gunicorn's explicit form
        raw = raw[len("tcp://"):]
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
            if raw.isdigit():               # gunicorn -b 8000
                host, port_text = "0.0.0.0", raw
        elif not host:                      # gunicorn -b :8000
            host = "0.0.0.0"
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
    "append" (repeatable list), "bool" (--x/--no-x) or "flag" (--x alone: a switch
    such as --check-config); metavar: the value in --help; sources:
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
            flags=("--max-connections", "--worker-connections"), metavar="INT",
            aliases=("worker_connections",)),
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
            "L p, %({header}i)s, %({var}e)s), or 'json' for one JSON object per request "
            "(docs/observability.md). Default: Apache combined.",
            flags=("--access-logformat", "--access-log-format"), metavar="FORMAT"),
    # -- observability (docs/observability.md)
    Setting("status_bind", "Observability", status_address, None,
            "Serve /metrics (Prometheus), /livez and /readyz on this HOST:PORT, apart "
            "from the app's listeners (from the master, summed over all workers). Needs "
            "the metrics extra (prometheus_client).",
            flags=("--status-bind",), metavar="ADDRESS"),
    Setting("request_timing", "Observability", boolean, False,
            "Put environ['fastwsgi.request_start'] (time.time() of the request's first "
            "byte) and environ['fastwsgi.queue_time'] (seconds until the app call) in "
            "every request, for APM agents. On anyway with --otel, --log-slow-requests "
            "and the JSON access log.",
            flags=("--request-timing",), action="bool"),
    Setting("drain_delay", "Observability", non_negative_seconds, 0.0,
            "On SIGTERM/SIGINT keep serving this many seconds while /readyz answers 503, "
            "so load balancers stop sending first; then stop gracefully.",
            flags=("--drain-delay",), metavar="SECONDS"),
    Setting("log_slow_requests", "Observability", non_negative_seconds, 0.0,
            "Log (warning) method, path, duration and queue time of every request that "
            "takes longer than this many seconds from head to response end; 0 = off.",
            flags=("--log-slow-requests",), metavar="SECONDS"),
    Setting("otel", "Observability", otel_switch, False,
            "An OpenTelemetry server span per request (W3C traceparent honoured, the "
            "span current while the app runs). Needs the otel extra.",
            flags=("--otel",), action="bool"),
    Setting("otel_setup", "Observability", callable_spec, None,
            "MODULE:FUNCTION called with no arguments in each worker after fork, before "
            "the first request: set the OpenTelemetry SDK and exporter up there.",
            flags=("--otel-setup",), metavar="MODULE:FUNCTION"),
    # -- processes
    Setting("workers", "Processes", positive_int, 1,
            "Number of worker processes.",
            flags=("-w", "--workers"), metavar="INT"),
    Setting("threads", "Processes", positive_int, 1,
            "Number of threads per worker that run the application.",
            flags=("--threads",), metavar="INT"),
    Setting("timeout", "Processes", non_negative_seconds, 30.0,
            "A request whose app call (and response iterable) runs longer than this many "
            "seconds gets its stack logged, a RequestTimeout raised in its thread and "
            "504 Gateway Timeout (the connection closed if the response had started); "
            "the worker's other requests go on. Time waiting on the client does not "
            "count. 0 = never.",
            flags=("-t", "--timeout"), metavar="SECONDS"),
    Setting("timeout_grace", "Processes", positive_seconds, 5.0,
            "Seconds a timed-out app thread gets to unwind before it counts as lost "
            "(stuck in C code) and a replacement thread is started.",
            flags=("--timeout-grace",), metavar="SECONDS"),
    Setting("max_lost_threads", "Processes", positive_int, 2,
            "A worker with more app threads lost (stuck past --timeout plus "
            "--timeout-grace) than this is recycled gracefully.",
            flags=("--max-lost-threads",), metavar="INT"),
    Setting("graceful_timeout", "Processes", non_negative_seconds, 30.0,
            "Seconds workers get to finish in-flight requests after a stop signal.",
            flags=("--graceful-timeout",), metavar="SECONDS"),
    Setting("max_requests", "Processes", non_negative_int, 0,
            "Restart a worker after this many requests; 0 = never.",
            flags=("--max-requests",), metavar="INT"),
    Setting("max_requests_jitter", "Processes", non_negative_int, 0,
            "Add a random 0..N to max_requests per worker so they do not restart together.",
            flags=("--max-requests-jitter",), metavar="INT"),
    Setting("max_worker_memory", "Processes", non_negative_size, 0,
            "Recycle a worker (gracefully) whose resident memory passes this size, "
            "checked between requests, e.g. 512M; 0 = never.",
            flags=("--max-worker-memory",), metavar="SIZE"),
    Setting("max_worker_age", "Processes", non_negative_seconds, 0.0,
            "Recycle a worker (gracefully) after it has run this many seconds; 0 = never.",
            flags=("--max-worker-age",), metavar="SECONDS"),
    Setting("max_worker_age_jitter", "Processes", non_negative_seconds, 0.0,
            "Add a random 0..N seconds to max_worker_age per worker.",
            flags=("--max-worker-age-jitter",), metavar="SECONDS"),
    Setting("master", "Processes", boolean, True,
            "Run a master process that supervises the workers (the default, with at "
            "least one worker). --no-master serves in this one process: no worker "
            "replaced after a crash or an exit, no --timeout, no recycling, no reload.",
            flags=("--master",), action="bool"),
    Setting("preload", "Processes", boolean, False,
            "Load the application in the master before forking workers.",
            flags=("--preload",), action="bool", aliases=("preload_app",)),
    Setting("reload", "Processes", boolean, False,
            "Restart workers when a source file changes (development).",
            flags=("--reload",), action="bool"),
    Setting("user", "Processes", user_spec, None,
            "Run as this user (name or uid) once the sockets are bound, before the app "
            "is imported; fastwsgi must be started as root. The group is the user's "
            "unless --group is given.",
            flags=("--user", "-u"), metavar="USER"),
    Setting("group", "Processes", group_spec, None,
            "Run as this group (name or gid) once the sockets are bound; unix sockets "
            "are given to --user/--group so that the group can connect.",
            flags=("--group", "-g"), metavar="GROUP"),
    Setting("pidfile", "Processes", optional_path, None,
            "Write the master's pid to this file (removed at exit).",
            flags=("-p", "--pid"), metavar="FILE"),
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
    Setting("static_dotfiles", "Application", boolean, False,
            "Let --static serve dotfiles and files under dot-directories (.env, "
            ".git/); by default they are 404.",
            flags=("--static-dotfiles",), action="bool"),
    Setting("static_cache_control", "Application", optional_header_value, None,
            "Cache-Control value sent with --static files, e.g. 'public, "
            "max-age=31536000, immutable' for hashed (collectstatic) names; none by "
            "default.",
            flags=("--static-cache-control",), metavar="VALUE"),
    # -- gunicorn's settings with a meaning here (docs/gunicorn.md)
    Setting("worker_class", "Processes", worker_class, "sync",
            "gunicorn's worker class: sync or gthread, both fastwsgi's worker (an event "
            "loop; the app runs on --threads threads); other classes are refused.",
            flags=("-k", "--worker-class"), metavar="CLASS"),
    Setting("proc_name", "Processes", optional_string, None,
            "Process title base (fastwsgi: master NAME / worker NAME); needs the "
            "setproctitle package (the proctitle extra), else it is only "
            "noted in the debug log.",
            flags=("-n", "--name"), metavar="NAME"),
    Setting("reload_extra_files", "Processes", file_list, [],
            "With --reload, also restart workers when these files (or glob patterns) "
            "change (repeatable).",
            flags=("--reload-extra-file",), action="append", metavar="FILE"),
    Setting("raw_env", "Application", env_list, [],
            "Set an environment variable for the app, KEY=VALUE (repeatable).",
            flags=("-e", "--env"), action="append", metavar="KEY=VALUE",
            sources=frozenset({"cli", "toml", "pyfile", "api"})),
    Setting("pythonpath", "Application", path_list, [],
            "Comma-separated directories put first on sys.path before the app loads.",
            flags=("--pythonpath",), metavar="DIRS"),
    Setting("capture_output", "Logging", boolean, False,
            "Send the app's stdout and stderr to --error-logfile (when it is a file).",
            flags=("--capture-output",), action="bool"),
    Setting("check_config", "Application", boolean, False,
            "Check the settings and that the app loads, then exit (0: fine, 1: not).",
            flags=("--check-config",), action="flag", sources=frozenset({"cli"})),
    Setting("print_config", "Application", boolean, False,
            "Print every setting's value and where it came from, then exit.",
            flags=("--print-config",), action="flag", sources=frozenset({"cli"})),
    # -- server hooks (Python config file or API only), gunicorn's names and
    # arguments: server and worker are fastwsgi.hooks.ServerInfo / WorkerInfo
    Setting("on_starting", "Hooks", hook("server"), None,
            "on_starting(server): in the master, before the sockets are bound.",
            sources=HOOK_SOURCES),
    Setting("on_reload", "Hooks", hook("server"), None,
            "on_reload(server): in the master, on SIGHUP, before new workers start.",
            sources=HOOK_SOURCES),
    Setting("when_ready", "Hooks", hook("server"), None,
            "when_ready(server): once the sockets listen, before the first worker.",
            sources=HOOK_SOURCES),
    Setting("pre_fork", "Hooks", hook("server", "worker"), None,
            "pre_fork(server, worker): in the master, before a worker is forked "
            "(worker.pid is still None).",
            sources=HOOK_SOURCES),
    Setting("post_fork", "Hooks", hook("server", "worker"), None,
            "post_fork(server, worker): in each worker right after fork.",
            sources=HOOK_SOURCES),
    Setting("post_worker_init", "Hooks", hook("worker"), None,
            "post_worker_init(worker): in each worker once the app is loaded.",
            sources=HOOK_SOURCES),
    Setting("worker_int", "Hooks", hook("worker"), None,
            "worker_int(worker): in a worker that got SIGINT or SIGQUIT.",
            sources=HOOK_SOURCES),
    Setting("worker_abort", "Hooks", hook("worker"), None,
            "worker_abort(worker): in a worker that got SIGABRT (the master's --timeout), "
            "after its stacks were logged.",
            sources=HOOK_SOURCES),
    Setting("pre_request", "Hooks", hook("worker", "req"), None,
            "pre_request(worker, req): before the app handles a request (req.method, "
            ".path, .query, .headers...); raising fails that request with a 500.",
            sources=HOOK_SOURCES),
    Setting("post_request", "Hooks", post_request_hook, None,
            "post_request(worker, req, environ, resp): once the response is done "
            "(resp.status, .status_code, .headers, .sent); 2 or 3 arguments also do.",
            sources=HOOK_SOURCES),
    Setting("child_exit", "Hooks", hook("server", "worker"), None,
            "child_exit(server, worker): in the master, once a worker has exited.",
            sources=HOOK_SOURCES),
    Setting("worker_exit", "Hooks", hook("server", "worker"), None,
            "worker_exit(server, worker): in a worker just before it exits.",
            sources=HOOK_SOURCES),
    Setting("nworkers_changed", "Hooks", hook("server", "new_value", "old_value"), None,
            "nworkers_changed(server, new_value, old_value): in the master when the "
            "number of workers is set (old_value None) or changed (SIGTTIN/SIGTTOU).",
            sources=HOOK_SOURCES),
    Setting("on_exit", "Hooks", hook("server"), None,
            "on_exit(server): in the master just before fastwsgi exits.",
            sources=HOOK_SOURCES),
    # -- request bodies (fastwsgi/_conn_input.pxi): received whole before the app runs
    Setting("body_timeout", "HTTP", positive_seconds, 30.0,
            "Seconds a request body may take to arrive, plus one second per "
            "--body-min-rate bytes received; a slower client gets 408 and is closed. "
            "The app is called once the body is whole.",
            flags=("--body-timeout",), metavar="SECONDS"),
    Setting("body_min_rate", "HTTP", non_negative_size, 1024,
            "Bytes per second of request body that extend --body-timeout (a body "
            "arriving at least this fast is never cut off); 0: a fixed deadline.",
            flags=("--body-min-rate",), metavar="BYTES"),
    Setting("body_buffer_size", "HTTP", positive_size, 65536,
            "Request body bytes kept in memory; a larger body is spooled to an "
            "unlinked temporary file (in --body-temp-dir) until its request ends. "
            "Bounds the memory of bodies in flight to this per connection.",
            flags=("--body-buffer-size",), metavar="BYTES"),
    Setting("body_temp_dir", "HTTP", existing_directory, None,
            "Directory of spooled request bodies (default: the system's temporary "
            "directory, TMPDIR).",
            flags=("--body-temp-dir",), metavar="DIR"),
    # -- response bodies (fastwsgi/_conn_cache.pxi)
    Setting("body_cache_size", "HTTP", non_negative_size, 64 * 1024 * 1024,
            "Bytes of response bodies kept in sealed memory files per worker (at "
            "most 64 bodies, each holds a file descriptor): a "
            "bytes body of 128 KiB or more that the app returns again (the same "
            "object, e.g. a module-level constant or an in-memory cache) is sent "
            "from one with sendfile(2), without copying it into the socket. Bodies "
            "seen once are remembered (referenced) to recognise them: at most 4, "
            "together at most an eighth of this size, which is so the largest body "
            "cached. The memory files count toward the worker's cgroup (as shared "
            "memory), not toward its RSS (--max-worker-memory). 0: off.",
            flags=("--body-cache-size",), metavar="BYTES"),
    Setting("stream_request_body", "HTTP", boolean, False,
            "Do not receive request bodies before calling the app: wsgi.input reads "
            "the socket as the app asks (each read waits up to --io-timeout), so a "
            "slow client holds the thread running the app. Use it with --threads or "
            "behind a buffering proxy.",
            flags=("--stream-request-body",), action="bool"),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
assert len(SETTINGS_BY_NAME) == len(SETTINGS), "a setting is declared twice"
# File keys: names plus aliases (gunicorn's spellings, so its config files carry over).
_FILE_KEYS = dict(SETTINGS_BY_NAME)
_FILE_KEYS.update((alias, s) for s in SETTINGS for alias in s.aliases)
assert len(_FILE_KEYS) == len(SETTINGS) + sum(len(s.aliases) for s in SETTINGS)



def _gunicorn_setting(config, name, value, source):
    """A gunicorn setting fastwsgi does not have (fastwsgi._gunicorn): accept a value
    that needs nothing from us (with a note if it is not gunicorn's default), refuse
    any other with one line saying what to use instead.  False if ``name`` is not
    one of them."""
    from fastwsgi import _gunicorn
    if name not in _gunicorn.UNSUPPORTED:
        return False
    verdict, text = _gunicorn.judge(name, value)
    if verdict == "refuse":
        raise ConfigError(f"{source}: {text}")
    if verdict == "note":
        config.notes.append(f"{source}: {text}")
    elif verdict == "warn":
        config.warnings.append(f"{source}: {text}")
    return True


def _did_you_mean(name):
    import difflib
    close = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -------------------------------------------------------------------------------- Config


class Config:
    """The resolved settings: ``config.workers``, ``config.bind``, ...

    Assigning an attribute validates it like any other source; ``source_of(name)``
    tells where a value came from ("default", "--workers", "FASTWSGI_WORKERS", ...).
    ``warnings`` holds non-fatal problems found while loading, for the error log;
    ``notes`` what gunicorn settings became here (logged at info level).
    """

    def __init__(self):
        values = {}
        for s in SETTINGS:
            values[s.name] = list(s.default) if isinstance(s.default, list) else s.default
        object.__setattr__(self, "_sources", dict.fromkeys(values, "default"))
        object.__setattr__(self, "warnings", [])
        object.__setattr__(self, "notes", [])   # info: what a gunicorn value became
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
        """Why this configuration runs a master process (always, unless --no-master),
        as text, or None.  ConfigError if --no-master is set with a setting that
        only a master provides."""
        if self.master:
            return "default"
        for name, text in (("workers", "--workers > 1"), ("reload", "--reload"),
                           ("max_requests", "--max-requests"), ("preload", "--preload"),
                           ("max_worker_memory", "--max-worker-memory"),
                           ("max_worker_age", "--max-worker-age")):
            value = getattr(self, name)
            if (value > 1 if name == "workers" else value):
                raise ConfigError(f"--no-master: {text} needs the master process")
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
            if _gunicorn_setting(config, name, value, source):
                continue
            raise ConfigError(f"{source}: unknown setting{_did_you_mean(name)}")
        if "toml" not in setting.sources:
            where = "in a Python config file (-c)" if "pyfile" in setting.sources else (
                "on the command line or in " + setting.env_var
            )
            raise ConfigError(f"{source}: can only be set {where}")
        config.set(name, value, source)


def _import_config_module(name, flag):
    """-c python:MODULE (gunicorn's form): the module's namespace."""
    import importlib
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"{flag}: python:{name}: not a module name")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return vars(importlib.import_module(name))
    except Exception as exc:  # the module is user code: report, do not crash
        raise ConfigError(f"{flag}: python:{name}: {type(exc).__name__}: {exc}") from None


def _exec_config_file(path, flag):
    """Run a Python config file like gunicorn does; return its namespace."""
    if path.startswith("python:"):
        return _import_config_module(path[len("python:"):], flag)
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
            if _gunicorn_setting(config, key, value, f"{path}: {key}"):
                continue
            if not isinstance(value, (type, types.FunctionType)):
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


# ------------------------------------------------------------------------------ loading


def _config_file(args, env_args, env, cwd):
    """(path, source) of the Python config file to run, or (None, None)."""
    path = args.get("config")
    source = "--config"
    if path is None and env_args is not None and "config" in env_args:
        path, source = env_args["config"], ENV_PREFIX + "CMD_ARGS"
    if path is None and ENV_PREFIX + "CONFIG" in env:
        path, source = env[ENV_PREFIX + "CONFIG"], ENV_PREFIX + "CONFIG"
    if path is None:
        default = os.path.join(cwd or os.getcwd(), DEFAULT_CONFIG_FILE)
        return (default, "./" + DEFAULT_CONFIG_FILE) if os.path.isfile(default) else (
            None, None)
    if not path:
        return None, None
    if path.startswith("python:"):          # gunicorn's -c python:MODULE
        return path, source
    if path.startswith("file:"):            # gunicorn's -c file:PATH
        path = path[len("file:"):]
    if cwd is not None and not os.path.isabs(path):
        path = os.path.join(cwd, path)
    if not os.path.exists(path):
        raise ConfigError(f"{source}: no such file: {path!r}")
    return path, source


def _apply_command_line(config, args, source=None):
    for setting in SETTINGS:
        if setting.name in args:
            config.set(setting.name, args[setting.name], source or setting.cli_flag)
    for flag, name, value in args.get("gunicorn", ()):
        _gunicorn_setting(config, name, value, source or flag)


def resolve(args, env_args=None, env=None, cwd=None):
    """Merge every source over the defaults; return the Config.

    ``args`` and ``env_args`` are what ``fastwsgi.cli.parse_command_line`` made of
    the command line and of FASTWSGI_CMD_ARGS (None: not set): {setting name: raw
    value}, plus "gunicorn": [(flag, gunicorn name, value)].  ``env`` defaults to
    os.environ and ``cwd`` (where pyproject.toml and fastwsgi.conf.py are looked
    for, and relative config-file paths start) to the current directory.  Raises
    ConfigError for bad values; the positionals (APP_SPEC, mounts) are the CLI's.
    """
    env = os.environ if env is None else env
    config = Config()
    if "WEB_CONCURRENCY" in env:        # gunicorn's (and Heroku's) workers default
        config.set("workers", env["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
    _read_pyproject(config, os.path.join(cwd or "", "pyproject.toml"))

    config_file, config_source = _config_file(args, env_args, env, cwd)
    if config_file:
        _apply_config_file(config, config_file, config_source)
        if config_source.startswith("./"):      # the default file
            config.set("config", config_file, config_source)
    elif os.path.isfile(os.path.join(cwd or "", "gunicorn.conf.py")):
        config.warnings.append("./gunicorn.conf.py is not read by default: pass "
                               "-c gunicorn.conf.py, or rename it fastwsgi.conf.py")

    _apply_env(config, env)
    if "GUNICORN_CMD_ARGS" in env and ENV_PREFIX + "CMD_ARGS" not in env:
        config.warnings.append(f"GUNICORN_CMD_ARGS is not read: set {ENV_PREFIX}CMD_ARGS")
    if env_args is not None:
        _apply_command_line(config, env_args, ENV_PREFIX + "CMD_ARGS")
    _apply_command_line(config, args)
    if config.worker_class == "gthread":
        config.notes.append(
            f"{config.source_of('worker_class')}: gthread is fastwsgi's worker with the "
            f"app on --threads threads ({config.threads} here)")
    return config


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


def gunicorn_document():
    """docs/gunicorn.md, whole: every gunicorn setting and what it is here."""
    from fastwsgi import _gunicorn

    def shown(value):
        return "`None`" if value is None else f"`{value!r}`"

    rows = ["| gunicorn | fastwsgi | |", "| --- | --- | --- |"]
    for name in _gunicorn.GUNICORN_SETTINGS:
        setting = _FILE_KEYS.get(name)
        if setting is not None:
            flag = setting.cli_flag if "cli" in setting.sources else None
            where = f"`{setting.name}`" + (f" (`{flag}`)" if flag else "")
            what = "works" if setting.name == name else "works (gunicorn's spelling)"
            rows.append(f"| `{name}` | {where} | {what} |")
            continue
        harmless, instead = _gunicorn.UNSUPPORTED[name]
        if harmless is _gunicorn.ANY:
            what = "accepted, no effect (noted in the log): " + instead
        elif harmless is _gunicorn.NEVER:
            what = "a hook kept but never called (a warning says so): " + instead
        else:
            values = ", ".join(shown(v) for v in harmless)
            what = f"accepted if {values}; refused otherwise: {instead}"
        rows.append(f"| `{name}` | none | {what.replace('|', '/')} |")
    hooks = [f"| `{s.name}` | {s.help} |" for s in SETTINGS if s.section == "Hooks"]
    return _GUNICORN_DOC.format(settings="\n".join(rows),
                                hooks="\n".join(["| Hook | Called |", "| --- | --- |"]
                                                + hooks))


_GUNICORN_DOC = """\
# Coming from gunicorn

A gunicorn config file and command line work unchanged where the meaning is the
same; where it is not, fastwsgi refuses the setting with one line saying what to
use instead (it never drops a setting in silence).  Generated from
`fastwsgi/config.py` and `fastwsgi/_gunicorn.py`
(`python -m fastwsgi.config gunicorn > docs/gunicorn.md`); a test keeps them in step.

## Files, environment, command line

- `-c gunicorn.conf.py` runs the file as gunicorn does: module-level names are
  settings, functions are hooks (`-c file:PATH` and `-c python:MODULE` too).
  `./fastwsgi.conf.py` is loaded by default (as gunicorn loads
  `./gunicorn.conf.py`); a `./gunicorn.conf.py` is not read unless named with `-c`
  (fastwsgi says so at start).  As in gunicorn, a setting given on the command line
  replaces the file's value, lists too (`-e` replaces the file's `raw_env`).
- `FASTWSGI_CMD_ARGS` is `GUNICORN_CMD_ARGS`: options, `-c FILE` and the APP_SPEC,
  read before the command line, which wins (a `GUNICORN_CMD_ARGS` left set gets a
  warning).  `WEB_CONCURRENCY` sets the default `workers`.  gunicorn's `PORT`,
  `FORWARDED_ALLOW_IPS` and `SENDFILE` variables are not read: use `FASTWSGI_BIND`,
  `FASTWSGI_FORWARDED_ALLOW_IPS`.
- `-b :8000` and `-b 8000` listen on every interface (0.0.0.0:8000), as in gunicorn;
  a bare host means port 8000; `tcp://HOST:PORT` is HOST:PORT.
- `-k sync` and `-k gthread` are fastwsgi's worker (one event loop per process, the
  app on `--threads` threads); other worker classes (gevent, eventlet, tornado,
  uvicorn's) are refused.
- `-p/--pid`, `-e/--env KEY=VALUE`, `-n/--name` (process titles with the
  `setproctitle` package), `--pythonpath`, `--preload`, `--worker-connections`,
  `--capture-output`, `--reload-extra-file`, `--check-config`, `--print-config` work.
- gunicorn flags with no equivalent here (`--keyfile`, `-D`, `--statsd-host`, ...)
  are judged like the settings below: refused, with the reason, unless the value
  needs nothing from fastwsgi.

## Hooks

Hooks take gunicorn's arguments.  `server` has `.log` (the `fastwsgi.error` logger:
`server.log.info(...)`), `.cfg` (the settings), `.pid` (the master's), `.app`
(`.app_uri`, `.wsgi()`), `.num_workers`, `.address`; `worker` has `.pid`, `.ppid`,
`.age`, `.log`, `.cfg`, `.wsgi` (the loaded app), `.alive`.  `pre_request` and
`post_request` wrap the app only when set: requests pay nothing otherwise.  With one
process and no master, the process is both: `on_starting`, `when_ready`,
`post_worker_init`, the request hooks, `worker_exit` and `on_exit` run; the fork
and signal hooks do not.  Hooks for moments fastwsgi does not have (`pre_exec`:
it never re-executes itself; `ssl_context`; the dirty-arbiter hooks) are accepted,
never called, and a warning says so at start: gunicorn's own example config runs.

{hooks}

## Every gunicorn setting

{settings}
"""


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["gunicorn"]:
        sys.stdout.write(gunicorn_document())
    else:
        sys.stdout.write(settings_document())
