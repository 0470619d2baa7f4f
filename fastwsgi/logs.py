"""The error log and the access log.

``setup_logging(config)`` configures the ``fastwsgi.error`` logger (stderr, or
``--error-logfile``) and returns it. ``AccessLog.from_config(config)`` returns a
callable ``access(environ, status, length, request_time)`` that writes one line per
request, or None when access logging is off, so the hot path pays only an
``if access_log is not None`` test.

The access-log format uses gunicorn's atoms (``%(h)s``, ``%({user-agent}i)s``...).
The atoms a format uses are worked out once, when the log is created; a request
computes only those. Request-controlled text (request line, headers, user) is
escaped Apache-style (``\\"``, ``\\\\``, ``\\xHH`` for control characters) so a
client cannot forge log lines. The format ``json`` writes one JSON object per
request instead (``JSON_FIELDS``; ASCII only, every client byte escaped by the JSON
encoder). Log files are opened for appending and every line is written with a
single write(), which keeps lines from several workers whole.

``--log-slow-requests SECONDS`` rides on the same per-request call: the callable
from ``AccessLog.from_config`` exists when either is on, and a request slower than
the threshold (head received to response end) logs a warning to the error log.
"""

import logging
import os
import re
import sys
import threading
import time

__all__ = [
    "ERROR_LOG_FORMAT",
    "ERROR_LOG_DATEFMT",
    "ACCESS_ATOMS",
    "setup_logging",
    "reopen_error_log",
    "AccessLog",
    "check_access_log_format",
    "JSON_FIELDS",
]

ERROR_LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
ERROR_LOG_DATEFMT = "%Y-%m-%d %H:%M:%S %z"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _config_error(flag, path, exc):
    from fastwsgi.errors import ConfigError

    reason = (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)
    return ConfigError(f"{flag}: cannot open {path!r}: {reason}")


# ---------------------------------------------------------------------------- error log


def setup_logging(config):
    """Point the ``fastwsgi.error`` logger at ``config.error_log``; return the logger.

    Safe to call again (for instance in a worker): handlers it added before are
    replaced. A log file that cannot be opened raises ConfigError.
    """
    logger = logging.getLogger("fastwsgi.error")
    if config.error_log == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = logging.FileHandler(config.error_log, mode="a", encoding="utf-8")
        except OSError as exc:
            raise _config_error("--error-logfile", config.error_log, exc) from None
    handler._fastwsgi = True
    handler.setFormatter(logging.Formatter(ERROR_LOG_FORMAT, ERROR_LOG_DATEFMT))
    for old in list(logger.handlers):
        if getattr(old, "_fastwsgi", False):
            logger.removeHandler(old)
            old.close()
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[config.log_level])
    logger.propagate = False
    return logger


# C0 controls, DEL and C1 as \\xHH: what a record must not carry raw from a client
_CONTROLS = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7F, 0xA0))}


class ClientLog(logging.LoggerAdapter):
    """The error log as the compiled loop and connections use it (ServerState.logger).

    Their records carry client bytes as arguments (a request target, a uwsgi
    packet's PATH_INFO, a peer's address), so control characters in str
    arguments are escaped as \\xHH: a newline there would start a forged record.
    The format string, and a traceback (exc_info), are the server's own text."""

    def __init__(self, logger):
        super().__init__(logger, {})

    def log(self, level, msg, *args, **kwargs):
        if self.isEnabledFor(level):
            args = tuple(_escaped(a) for a in args)
            self.logger.log(level, msg, *args, **kwargs)


def _escaped(arg):
    if isinstance(arg, BaseException):
        arg = str(arg)              # an error's text may quote what the client sent
    if isinstance(arg, str) and not arg.isprintable():
        return arg.translate(_CONTROLS)
    return arg


def reopen_error_log():
    """Reopen the error log file (after logrotate moved it; SIGUSR1)."""
    for handler in logging.getLogger("fastwsgi.error").handlers:
        if getattr(handler, "_fastwsgi", False) and isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()


# ---------------------------------------------------------------------------- access log

# Control characters (C0, DEL, C1), the quote and the backslash, escaped as Apache does.
_ESCAPES = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7F, 0xA0))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def _escape(text):
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _ClfClock:
    """``[10/Oct/2000:13:55:36 -0700]``, formatted once per second."""

    def __init__(self):
        self._second = None
        self._text = ""
        self._lock = threading.Lock()

    def __call__(self):
        now = int(time.time())
        if now != self._second:
            tm = time.localtime(now)
            off = tm.tm_gmtoff // 60
            sign = "-" if off < 0 else "+"
            off = abs(off)
            text = (f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:"
                    f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
                    f"{sign}{off // 60:02d}{off % 60:02d}]")
            with self._lock:
                self._second, self._text = now, text
            return text
        return self._text


def _user(environ):
    user = environ.get("REMOTE_USER")
    if user:
        return _escape(user)
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth and auth[:6].lower() == "basic ":
        import base64  # here: only this atom needs it (and binascii, struct)
        import binascii
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("latin-1")
        except (binascii.Error, ValueError):
            return "-"
        return _escape(decoded.split(":", 1)[0]) or "-"
    return "-"


def _request_line(environ):
    uri = environ.get("RAW_URI")
    if uri is None:
        uri = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        if query:
            uri += "?" + query
    return _escape(
        f"{environ.get('REQUEST_METHOD', '-')} {uri} {environ.get('SERVER_PROTOCOL', '-')}"
    )


def _environ_atom(key, escape=True):
    def atom(environ, status, length, request_time):
        value = environ.get(key)
        if value is None or value == "":
            return "-"
        return _escape(str(value)) if escape else str(value)

    return atom


# name -> (description, getter(environ, status, length, request_time))
ACCESS_ATOMS = {
    "h": ("remote address", _environ_atom("REMOTE_ADDR")),
    "l": ("'-'", lambda e, s, n, t: "-"),
    "u": ("user name (REMOTE_USER or Basic auth)", lambda e, s, n, t: _user(e)),
    "t": ("date and time of the request", None),  # bound per AccessLog (clock)
    "r": ("request line", lambda e, s, n, t: _request_line(e)),
    "m": ("request method", _environ_atom("REQUEST_METHOD")),
    "U": ("URL path without query string", _environ_atom("PATH_INFO")),
    "q": ("query string", _environ_atom("QUERY_STRING")),
    "H": ("protocol", _environ_atom("SERVER_PROTOCOL")),
    "s": ("status code", lambda e, s, n, t: s[:3]),
    "B": ("response body length", lambda e, s, n, t: n),
    "b": ("response body length or '-' (CLF)", lambda e, s, n, t: n if n else "-"),
    "f": ("referer", _environ_atom("HTTP_REFERER")),
    "a": ("user agent", _environ_atom("HTTP_USER_AGENT")),
    "T": ("request time in whole seconds", lambda e, s, n, t: int(t)),
    "M": ("request time in whole milliseconds", lambda e, s, n, t: int(t * 1000)),
    "D": ("request time in microseconds", lambda e, s, n, t: int(t * 1_000_000)),
    "L": ("request time in decimal seconds", lambda e, s, n, t: f"{t:.6f}"),
    "p": ("process id, as <pid>", None),  # bound per AccessLog (pid at creation)
}

_ATOM_KEY = re.compile(r"%\(([^)]*)\)")
_POSITIONAL = re.compile(r"%(?!\(|%)")
_HEADER_ATOM = re.compile(r"^\{([^{}]+)\}([ieo])$")


def _atom_getter(key, clock):
    if key == "t":
        return lambda e, s, n, t: clock()
    if key == "p":
        pid = f"<{os.getpid()}>"
        return lambda e, s, n, t: pid
    if key in ACCESS_ATOMS:
        return ACCESS_ATOMS[key][1]
    m = _HEADER_ATOM.match(key)
    if m is None:
        raise ValueError(
            f"unknown access log atom {key!r} (known: {' '.join(ACCESS_ATOMS)}, "
            "{header}i, {variable}e)"
        )
    name, kind = m.groups()
    if kind == "e":
        return _environ_atom(name)
    if kind == "o":  # response headers are not passed to the access log
        return lambda e, s, n, t: "-"
    cgi = name.strip().upper().replace("-", "_")
    if cgi not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        cgi = "HTTP_" + cgi
    return _environ_atom(cgi)


def _compile_format(fmt, clock=None):
    """``fmt`` -> [(atom, getter)]; raises ValueError for any fault in the format."""
    if _POSITIONAL.search(fmt.replace("%%", "")):
        raise ValueError("use %(atom)s placeholders only, e.g. '%(h)s \"%(r)s\" %(s)s'")
    getters = {}
    for key in _ATOM_KEY.findall(fmt):
        if key not in getters:
            getters[key] = _atom_getter(key, clock or _ClfClock())
    sample = {key: "x" if key not in ("B", "T", "M", "D") else 1 for key in getters}
    try:
        fmt % sample
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"invalid access log format: {exc}") from None
    return list(getters.items())


def check_access_log_format(fmt):
    """Raise ValueError with a one-line reason if ``fmt`` is not a usable format."""
    if fmt != "json":
        _compile_format(fmt)


# ------------------------------------------------------------------ JSON access log

# key -> what it holds (docs/observability.md shows the same table); null when the
# request did not have it
JSON_FIELDS = {
    "time": "when the request's first byte arrived, RFC 3339, UTC, milliseconds",
    "remote_addr": "client address (REMOTE_ADDR: the proxy's view when trusted)",
    "method": "request method",
    "path": "URL path, percent-decoded (SCRIPT_NAME + PATH_INFO)",
    "query": "query string, as sent",
    "protocol": "HTTP/1.1 or HTTP/1.0",
    "status": "response status code (integer)",
    "bytes": "response body bytes (integer)",
    "duration": "seconds from the head's arrival to the response's end",
    "queue_time": "seconds from the head's arrival to the app call",
    "user_agent": "User-Agent header",
    "referer": "Referer header",
    "request_id": "X-Request-ID header",
}


def _client_text(value):
    """A client's bytes (PEP 3333 carries them as latin-1 str) as the text they
    spell in UTF-8; bytes that are not UTF-8 stay visible as \\xHH."""
    if value is None:
        return None
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:          # not from the wire (the app or a middleware)
        return value
    if raw.isascii():
        return value
    return raw.decode("utf-8", "backslashreplace")


def _rfc3339(t):
    tm = time.gmtime(t)
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:"
            f"{tm.tm_min:02d}:{tm.tm_sec:02d}.{int(t * 1000) % 1000:03d}Z")


def _json_record(environ, status, length, request_time):
    get = environ.get
    queue = get("fastwsgi.queue_time") or 0.0
    started = get("fastwsgi.request_start") or (time.time() - request_time - queue)
    try:
        code = int(status[:3])
    except ValueError:
        code = None
    return {
        "time": _rfc3339(started),
        "remote_addr": get("REMOTE_ADDR") or None,
        "method": _client_text(get("REQUEST_METHOD")),
        "path": _client_text(get("SCRIPT_NAME", "") + get("PATH_INFO", "")),
        "query": _client_text(get("QUERY_STRING")) or None,
        "protocol": _client_text(get("SERVER_PROTOCOL")),
        "status": code,
        "bytes": length,
        "duration": round(request_time + queue, 6),
        "queue_time": round(queue, 6),
        "user_agent": _client_text(get("HTTP_USER_AGENT")),
        "referer": _client_text(get("HTTP_REFERER")),
        "request_id": _client_text(get("HTTP_X_REQUEST_ID")),
    }


class AccessLog:
    """``access(environ, status, length, request_time)``: write one access-log line.

    ``status`` is the WSGI status string ("200 OK"), ``length`` the body bytes sent,
    ``request_time`` the seconds from request head to last byte. Never raises: a
    failed write is reported once to the error log and the request goes on.
    """

    def __init__(self, path, fmt, slow=0.0):
        self.path = path              # None: no access lines (only the slow-request log)
        self.format = fmt
        self.slow = slow
        if fmt == "json":
            import json  # here: only this format needs it
            self._dumps = json.JSONEncoder(ensure_ascii=True, separators=(", ", ": ")).encode
            self._getters = None
        else:
            self._getters = _compile_format(fmt, _ClfClock())
        self._lock = threading.Lock()
        self._failed = False
        self._stream = None
        self._owns_stream = False
        self._open()

    @classmethod
    def from_config(cls, config):
        """An AccessLog for ``config``, or None if access logging and the slow-request
        log are both off (the hot path then pays one ``is not None`` test)."""
        if not config.access_log and not config.log_slow_requests:
            return None
        return cls(config.access_log, config.access_log_format, config.log_slow_requests)

    def _open(self):
        if self.path is None:
            return
        if self.path == "-":
            self._stream, self._owns_stream = sys.stdout, False
            return
        try:
            # Line buffered: each line reaches the file in one write() of its own.
            self._stream = open(self.path, "a", buffering=1, encoding="utf-8",
                                errors="backslashreplace")
        except OSError as exc:
            raise _config_error("--access-logfile", self.path, exc) from None
        self._owns_stream = True

    def __call__(self, environ, status, length, request_time):
        if self.slow:
            self._check_slow(environ, status, request_time)
        if self.path is None:
            return
        try:
            if self._getters is None:
                line = self._dumps(_json_record(environ, status, length, request_time))
            else:
                line = self.format % {
                    key: getter(environ, status, length, request_time)
                    for key, getter in self._getters
                }
        except Exception as exc:  # a hostile environ must not break the request
            if self._getters is None:
                line = self._dumps({"status": status[:3], "bytes": length,
                                    "log_error": repr(exc)})
            else:
                line = f"- - - - \"-\" {status[:3]} {length} \"-\" \"-\" (log error: {exc!r})"
        with self._lock:
            try:
                self._stream.write(line + "\n")
                if not self._owns_stream:
                    self._stream.flush()
            except (OSError, ValueError) as exc:
                if not self._failed:
                    self._failed = True
                    logging.getLogger("fastwsgi.error").error(
                        "cannot write the access log %s: %s", self.path, exc)

    def _check_slow(self, environ, status, request_time):
        queue = environ.get("fastwsgi.queue_time") or 0.0
        duration = request_time + queue
        if duration <= self.slow:
            return
        logging.getLogger("fastwsgi.error").warning(
            'slow request: "%s %s" %s took %.3fs (queue %.3fs, over --log-slow-requests %g)',
            _escape(str(environ.get("REQUEST_METHOD", "-"))),
            _escape(str(environ.get("RAW_URI") or environ.get("PATH_INFO", "-"))),
            status[:3], duration, queue, self.slow)

    def reopen(self):
        """Reopen the log file (after logrotate moved it; SIGUSR1). No-op for stdout."""
        if not self._owns_stream:
            return
        with self._lock:
            old = self._stream
            try:
                self._open()
            except Exception as exc:
                self._stream = old
                logging.getLogger("fastwsgi.error").error(
                    "cannot reopen the access log: %s", exc)
                return
            self._failed = False
            try:
                old.close()
            except OSError:
                pass

    def close(self):
        with self._lock:
            if self._owns_stream:
                self._stream.close()  # later writes fail quietly (ValueError)
