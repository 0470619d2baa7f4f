"""Fixture apps for the security tests (test_smuggling, test_hostile, test_misbehaving_apps).

`app` dispatches on the first PATH_INFO segment.  State a test reads back later lives
in module globals (the server runs the app in one process): request counters
(/count, /counted), close() calls of response iterables (/closes) and the number
of generators still running (/live).
"""

import time
from urllib.parse import parse_qs

COUNTS = {}  # key -> requests the app saw (/count?key=K)
CLOSES = {}  # key -> close() calls on a Tracked iterable
LIVE = {}  # key -> iterables created and not yet closed
YIELDED = {}  # key -> chunks produced by Tracked iterables


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _reply(start_response, body, status="200 OK"):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def count(environ, start_response):
    """Count this request under ?key; drain the body; answer the count and body length."""
    key = _q(environ).get("key", "")
    COUNTS[key] = COUNTS.get(key, 0) + 1
    body = environ["wsgi.input"].read()
    return _reply(start_response, f"{COUNTS[key]} {len(body)}")


def counted(environ, start_response):
    return _reply(start_response, str(COUNTS.get(_q(environ).get("key", ""), 0)))


def echo(environ, start_response):
    """The body back, and the framing the app saw, as "METHOD PATH HOST len:body"."""
    body = environ["wsgi.input"].read()
    head = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ.get('HTTP_HOST', '-')} {len(body)}:"
    return _reply(start_response, head.encode("latin-1") + body)


class Tracked:
    """A response iterable that records close() and how many are still open."""

    def __init__(self, key, chunks, size, delay=0.0, fail_in_close=False):
        self.key, self.chunks, self.size, self.delay = key, chunks, size, delay
        self.fail_in_close = fail_in_close
        self.closed = False
        LIVE[key] = LIVE.get(key, 0) + 1
        CLOSES.setdefault(key, 0)

    def __iter__(self):
        block = b"x" * self.size
        for _ in range(self.chunks):
            if self.delay:
                time.sleep(self.delay)
            YIELDED[self.key] = YIELDED.get(self.key, 0) + 1
            yield block

    def close(self):
        CLOSES[self.key] += 1
        if not self.closed:
            self.closed = True
            LIVE[self.key] -= 1
        if self.fail_in_close:
            raise RuntimeError(f"fixture failure in close() {self.key}")


def tracked(environ, start_response):
    """?key&chunks&size&delay&cl=1&fail_close=1: a Tracked iterable."""
    q = _q(environ)
    chunks, size = int(q.get("chunks", 4)), int(q.get("size", 16))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(chunks * size)))
    start_response("200 OK", headers)
    return Tracked(q.get("key", ""), chunks, size, float(q.get("delay", 0)), q.get("fail_close") == "1")


def closes(environ, start_response):
    """?key: "close() calls, iterables still open, chunks yielded"."""
    key = _q(environ).get("key", "")
    return _reply(start_response, f"{CLOSES.get(key, -1)} {LIVE.get(key, -1)} {YIELDED.get(key, 0)}")


def big(environ, start_response):
    """?mb MiB with Content-Length, in 64 KiB chunks (a client may never read it)."""
    mb = int(_q(environ).get("mb", 64))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(mb * 1024 * 1024))])
    chunk = b"B" * 65536
    return (chunk for _ in range(mb * 16))


# --- misbehaving applications ---------------------------------------------------------


def never_starts(environ, start_response):
    """Returns a body without ever calling start_response."""
    return [b"should not be sent"]


def never_starts_empty(environ, start_response):
    """Returns an empty body without ever calling start_response."""
    return []


def status_not_str(environ, start_response):
    """?kind=int|no_reason|lower|crlf|long_code|non_latin1: a status PEP 3333 forbids."""
    kind = _q(environ).get("kind", "int")
    status = {
        "int": 200,
        "no_reason": "200",
        "lower": "ok 200",
        "crlf": "200 OK\r\nX-Evil: injected",
        "long_code": "2000 OK",
        "non_latin1": "200 \u2603",
    }[kind]
    start_response(status, [("Content-Type", "text/plain")])
    return [b"should not be sent"]


def raise_in_close(environ, start_response):
    """A complete, well-framed response whose close() raises afterwards."""
    key = _q(environ).get("key", "")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
    return Tracked(key, 1, 8, fail_in_close=True)


def after_gone(environ, start_response):
    """?key: a generator that keeps yielding slowly; a client that leaves must end it."""
    key = _q(environ).get("key", "")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Tracked(key, 400, 65536, delay=0.005)


def bytearray_items(environ, start_response):
    """Items that are bytes-like but not bytes (PEP 3333: must be bytes)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [bytearray(b"not bytes"), memoryview(b"either")]


def iter_raises_type(environ, start_response):
    """An iterable whose __iter__ is not iterable at all."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def start_after_body(environ, start_response):
    """A generator that yields before calling start_response."""
    def body():
        yield b"too early"
        start_response("200 OK", [("Content-Type", "text/plain")])
    return body()


def hello(environ, start_response):
    return _reply(start_response, b"hello")


ROUTES = {
    "count": count,
    "counted": counted,
    "echo": echo,
    "tracked": tracked,
    "closes": closes,
    "big": big,
    "never_starts": never_starts,
    "never_starts_empty": never_starts_empty,
    "status": status_not_str,
    "raise_in_close": raise_in_close,
    "after_gone": after_gone,
    "bytearray_items": bytearray_items,
    "not_iterable": iter_raises_type,
    "start_after_body": start_after_body,
}


def app(environ, start_response):
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, hello)(environ, start_response)

