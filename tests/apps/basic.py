"""Fixture WSGI apps for the functional tests of the core server (tests/test_server_*.py).

`app` dispatches on the first PATH_INFO segment to one small app per purpose, so a
single server process serves a whole test module; query parameters steer each app.
Unknown paths (and an empty PATH_INFO) go to `echo_environ`.

State that a test inspects afterwards (hit counters, close() calls, closed files)
lives in module globals: the server runs the app in one process, so a later request
on a fresh connection reads it back (`/hits`, `/closes`, `/file_closed`).

`validated_app` is a well-behaved app wrapped in `wsgiref.validate.validator`: any
PEP 3333 violation by the server turns into an AssertionError (a 500 and a log line).
"""

import hashlib
import io
import json
import os
import random
import sys
import tempfile
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

HITS = {}  # key -> number of requests the app saw (/hit)
CLOSES = {}  # key -> number of close() calls on a ClosingIterable (/closing)
FILES_CLOSED = {}  # key -> number of close() calls on a TrackedFile (/file)
OPEN_FILES = {}  # key -> TrackedFile: a strong reference, so only the server can close it

CGI_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "RAW_URI",
)
WSGI_FLAGS = (
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.input_terminated",
)


def _query(environ):
    pairs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in pairs.items()}


def _reply(start_response, body, status="200 OK", content_type="text/plain", extra=()):
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(status, headers + list(extra))
    return [body]


def _json(start_response, obj, status="200 OK"):
    return _reply(start_response, json.dumps(obj), status, "application/json")


def pattern(n):
    """n bytes of a fixed, recognisable pattern (the tests rebuild it to compare)."""
    unit = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
    return (unit * (n // len(unit) + 1))[:n]


def file_content(size):
    """The content of the file /file serves: deterministic, not periodic."""
    return random.Random(size).randbytes(size)


# --- environ and bodies ---------------------------------------------------------


def echo_environ(environ, start_response):
    """The request as the app saw it, as JSON; ?errors_probe=X writes X to wsgi.errors."""
    out = {k: environ[k] for k in CGI_KEYS if k in environ}
    out.update({k: v for k, v in environ.items() if k.startswith("HTTP_")})
    version = environ.get("wsgi.version")
    out["wsgi.version"] = list(version) if isinstance(version, tuple) else repr(version)
    for key in WSGI_FLAGS:
        out[key] = environ.get(key, "<missing>")
    out["file_wrapper_callable"] = callable(environ.get("wsgi.file_wrapper"))
    out["input_has"] = [m for m in ("read", "readline", "readlines", "__iter__")
                        if hasattr(environ.get("wsgi.input"), m)]
    out["errors_has"] = [m for m in ("write", "writelines", "flush")
                         if hasattr(environ.get("wsgi.errors"), m)]
    # PEP 3333: CGI variables (keys without a dot) are native strings.
    out["non_str_cgi_keys"] = sorted(
        k for k, v in environ.items() if "." not in k and not isinstance(v, str)
    )
    out["environ_type"] = type(environ).__name__
    probe = _query(environ).get("errors_probe")
    if probe:
        errors = environ["wsgi.errors"]
        errors.write(probe + "\n")
        errors.flush()
    return _json(start_response, out)


def echo_body(environ, start_response):
    """The request body, returned as is (read with one read())."""
    body = environ["wsgi.input"].read()
    ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
    return _reply(start_response, body, content_type=ctype)


def hash_body(environ, start_response):
    """Stream the body in ?chunk= sized reads (until b""); answer its length and sha256."""
    size = int(_query(environ).get("chunk", 65536))
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    total = 0
    while True:
        data = stream.read(size)
        if not data:
            break
        digest.update(data)
        total += len(data)
    return _json(start_response, {"len": total, "sha256": digest.hexdigest()})


def input_ops(environ, start_response):
    """Run ?ops=read:3,readline,readline:2,read,readlines,iter on wsgi.input; report results.

    bytes results come back latin-1 decoded; list results as lists of such strings.
    """
    stream = environ["wsgi.input"]
    results = []
    for op in _query(environ).get("ops", "").split(","):
        name, _, arg = op.partition(":")
        args = (int(arg),) if arg else ()
        if name == "iter":
            value = list(stream)
        else:
            value = getattr(stream, name)(*args)
        if isinstance(value, list):
            results.append([v.decode("latin-1") for v in value])
        else:
            results.append(value.decode("latin-1"))
    return _json(start_response, results)


# --- response shapes ---------------------------------------------------------------


def say(environ, start_response):
    """/say/WORD -> WORD (Content-Length set); never reads the body."""
    word = environ.get("PATH_INFO", "").split("/", 2)[-1]
    return _reply(start_response, word)


def fixed(environ, start_response):
    """?size=N -> N pattern bytes with Content-Length; never reads the body."""
    return _reply(start_response, pattern(int(_query(environ).get("size", 10))))


def stream(environ, start_response):
    """A generator: ?n chunks of ?size bytes, no Content-Length unless ?cl=1.

    ?empty=1 yields an empty bytestring between chunks (it must not end the body).
    """
    q = _query(environ)
    n, size = int(q.get("n", 5)), int(q.get("size", 10))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(n * size)))
    start_response("200 OK", headers)
    data = pattern(size)

    pause = float(q.get("sleep", 0))

    def body():
        for i in range(n):
            if i and pause:
                time.sleep(pause)
            yield data
            if q.get("empty") == "1":
                yield b""

    return body()


def big(environ, start_response):
    """?mb MiB in 64 KiB chunks, no Content-Length: for backpressure and disconnects."""
    mb = int(_query(environ).get("mb", 100))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = b"B" * 65536

    def body():
        for _ in range(mb * 16):
            yield chunk

    return body()


def status(environ, start_response):
    """?code=204|304|... with an empty body and no Content-Length."""
    code = int(_query(environ).get("code", 204))
    reasons = {204: "No Content", 304: "Not Modified", 200: "OK", 404: "Not Found"}
    start_response(f"{code} {reasons.get(code, 'Whatever')}", [])
    return []


def hit(environ, start_response):
    """?key=K: count this request under K; answer the new count."""
    key = _query(environ).get("key", "")
    HITS[key] = HITS.get(key, 0) + 1
    return _reply(start_response, str(HITS[key]))


def hits(environ, start_response):
    """?key=K: the count so far (does not count itself)."""
    return _reply(start_response, str(HITS.get(_query(environ).get("key", ""), 0)))


def content_length(environ, start_response):
    """Declare Content-Length ?declared but yield ?actual bytes (in two chunks)."""
    q = _query(environ)
    declared, actual = int(q.get("declared", 10)), int(q.get("actual", 5))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    data = pattern(actual)
    half = actual // 2

    def body():
        yield data[:half]
        yield data[half:]

    return body()


# --- application errors -----------------------------------------------------------


def raises(environ, start_response):
    """?when=before|after_start|first_iter|mid_iter|mid_iter_cl; the message carries ?token."""
    q = _query(environ)
    when, token = q.get("when", "before"), q.get("token", "x")
    message = f"fixture failure {token}"
    if when == "before":
        raise RuntimeError(message)
    headers = [("Content-Type", "text/plain")]
    if when == "mid_iter_cl":
        headers.append(("Content-Length", "100"))
    start_response("200 OK", headers)
    if when == "after_start":
        raise RuntimeError(message)

    def body():
        if when != "first_iter":
            yield b"partial"
        raise RuntimeError(message)

    return body()


def start_twice(environ, start_response):
    """start_response twice without exc_info: the second call must raise."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"should not be sent"]


def exc_info(environ, start_response):
    """?when=before: replace the status via exc_info before any byte is sent (503 wins).
    ?when=after: the same after the headers went out (start_response re-raises)."""
    when = _query(environ).get("when", "before")
    start_response("200 OK", [("Content-Type", "text/plain")])
    if when == "before":
        try:
            raise ValueError("replaced by 503")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"recovered"]

    def body():
        yield b"first"
        try:
            raise ValueError("too late to change the status")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        yield b"must not be sent"

    return body()


def bad_return(environ, start_response):
    """?what=none|str_item|int_item|mixed: return something that is not an iterable of bytes."""
    what = _query(environ).get("what", "none")
    start_response("200 OK", [("Content-Type", "text/plain")])
    if what == "none":
        return None
    if what == "str_item":
        return ["text, not bytes"]
    if what == "int_item":
        return [42]
    return [b"bytes first", "then text"]


def bad_status(environ, start_response):
    """?kind=bytes|garbage|short|header_bytes|header_tuple: an invalid start_response call."""
    kind = _query(environ).get("kind", "bytes")
    ok = [("Content-Type", "text/plain")]
    if kind == "bytes":
        start_response(b"200 OK", ok)
    elif kind == "garbage":
        start_response("OK 200", ok)
    elif kind == "short":
        start_response("20 OK", ok)
    elif kind == "header_bytes":
        start_response("200 OK", [(b"Content-Type", b"text/plain")])
    else:
        start_response("200 OK", [("Content-Type", "text/plain", "extra")])
    return [b"should not be sent"]


def inject(environ, start_response):
    """?where=value|value_lf|name|colon: a header that would split the response."""
    where = _query(environ).get("where", "value")
    header = {
        "value": ("X-Safe", "a\r\nX-Evil: injected"),
        "value_lf": ("X-Safe", "a\nX-Evil: injected"),
        "value_cr": ("X-Safe", "a\rX-Evil: injected"),
        "name": ("X-Safe\r\nX-Evil", "injected"),
        "colon": ("X-Evil: injected", "x"),
    }[where]
    start_response("200 OK", [("Content-Type", "text/plain"), header])
    return [b"should not be sent"]


def write_app(environ, start_response):
    """The legacy write() callable, mixed with a returned iterable."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"hello ")
    write(b"")
    write(b"wide ")
    return [b"world"]


# --- close() and file_wrapper -------------------------------------------------------


class ClosingIterable:
    """Yields ?mode-dependent chunks; counts close() calls in CLOSES[key]."""

    def __init__(self, key, mode):
        self.key = key
        self.mode = mode
        CLOSES.setdefault(key, 0)

    def __iter__(self):
        if self.mode == "raise_first":
            raise RuntimeError("fixture failure before the first chunk")
        if self.mode == "big":
            chunk = b"C" * 65536
            for _ in range(16384):  # 1 GiB: only a disconnect ends it early
                yield chunk
            return
        yield b"one "
        if self.mode == "raise_mid":
            raise RuntimeError("fixture failure mid-stream")
        yield b"two"

    def close(self):
        CLOSES[self.key] += 1


def closing(environ, start_response):
    """?id=K&mode=ok|raise_mid|raise_first|big: an iterable whose close() is counted."""
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(q.get("id", ""), q.get("mode", "ok"))


def closes(environ, start_response):
    """?id=K: close() calls so far, or -1 if the iterable was never created."""
    return _reply(start_response, str(CLOSES.get(_query(environ).get("id", ""), -1)))


class TrackedFile(io.FileIO):
    """A real file (it has a fileno(), so sendfile is possible) that counts close()."""

    def __init__(self, path, key):
        super().__init__(path, "rb")
        self.key = key

    def close(self):
        if not self.closed:
            FILES_CLOSED[self.key] = FILES_CLOSED.get(self.key, 0) + 1
        super().close()


def file_app(environ, start_response):
    """?size=N&id=K[&cl=1][&blksize=B]: wsgi.file_wrapper over a fresh N-byte file."""
    q = _query(environ)
    size, key = int(q.get("size", 1024)), q.get("id", "")
    fd, path = tempfile.mkstemp(prefix="fastwsgi-test-")
    with os.fdopen(fd, "wb") as f:
        f.write(file_content(size))
    tracked = TrackedFile(path, key)
    os.unlink(path)  # the open descriptor keeps the data; nothing is left behind
    OPEN_FILES[key] = tracked
    FILES_CLOSED.setdefault(key, 0)
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    wrapper = environ["wsgi.file_wrapper"]
    if "blksize" in q:
        return wrapper(tracked, int(q["blksize"]))
    return wrapper(tracked)


def filelike_app(environ, start_response):
    """?size=N: wsgi.file_wrapper over a BytesIO (no fileno): plain iteration must work."""
    size = int(_query(environ).get("size", 1024))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](io.BytesIO(file_content(size)), 8192)


def file_closed(environ, start_response):
    """?id=K: close() calls on the TrackedFile served under K (-1: never served)."""
    return _reply(start_response, str(FILES_CLOSED.get(_query(environ).get("id", ""), -1)))


ROUTES = {
    "environ": echo_environ,
    "echo": echo_body,
    "hash": hash_body,
    "input": input_ops,
    "say": say,
    "fixed": fixed,
    "stream": stream,
    "big": big,
    "status": status,
    "hit": hit,
    "hits": hits,
    "cl": content_length,
    "raise": raises,
    "start_twice": start_twice,
    "exc_info": exc_info,
    "bad_return": bad_return,
    "bad_status": bad_status,
    "inject": inject,
    "write": write_app,
    "closing": closing,
    "closes": closes,
    "file": file_app,
    "filelike": filelike_app,
    "file_closed": file_closed,
}


def app(environ, start_response):
    """Dispatch on the first PATH_INFO segment; anything else echoes the environ."""
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, echo_environ)(environ, start_response)


# --- a well-behaved app under wsgiref's validator ---------------------------------


def _polite(environ, start_response):
    """Uses wsgi.input only in the ways the validator allows (read(n), readline())."""
    path = environ.get("PATH_INFO", "")
    stream_in = environ["wsgi.input"]
    if path == "/echo":
        parts = []
        while True:
            data = stream_in.read(4096)
            if not data:
                break
            parts.append(data)
        return _reply(start_response, b"".join(parts), content_type="application/octet-stream")
    if path == "/lines":
        lines = list(stream_in)
        return _reply(start_response, str(len(lines)))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a" * 100, b"b" * 100, b"c" * 100])
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    return _reply(start_response, "hello from " + (path or "/"))


validated_app = validator(_polite)
