"""Correctness check of a running server with a plain socket client.

Contract: ``check(port, scenario)`` sends the scenario's request (for each of
its targets in turn) a few times (``scenario.pipeline`` of them written back
to back, otherwise two in a row on one connection) and reads every response strictly: status line, headers, and
a body framed by Content-Length, chunked coding, or connection close. It
returns a ``CheckResult``; it never raises for a wrong or missing answer.

A server may close the connection after a response if it said so
(``Connection: close`` or an HTTP/1.0 response without keep-alive); the
remaining requests are then sent again on a new connection, as a client must.
Closing without saying so is allowed too (the client retries, and a note
says so), except on a fresh connection before any answer. A response slower
than SLOW seconds fails, and so does a connection left open after a request
with ``Connection: close``.
"""
import socket
import time
from dataclasses import dataclass, field

TIMEOUT = 10.0
SLOW = 2.0          # seconds: longer for one response is a failure (Scenario.slow)
MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    pass


@dataclass
class Response:
    version: str
    status: int
    headers: list
    body: bytes
    framing: str          # "length", "chunked" or "close"

    def header(self, name):
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ",".join(values) if values else None

    @property
    def keeps_alive(self):
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.framing == "close" or "close" in tokens:
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return True


@dataclass
class CheckResult:
    ok: bool
    detail: str = ""
    framings: set = field(default_factory=set)
    notes: set = field(default_factory=set)


class _Reader:
    """Buffered reads from a socket; EOF is b''."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, sep, limit):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError("line or head too long")
            if not self._fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ProtocolError(f"body cut short: {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self):
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def build_request(scenario, port, close=None):
    close = scenario.close if close is None else close
    lines = [f"{scenario.method} {scenario.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in scenario.headers]
    if scenario.body:
        lines.append(f"Content-Length: {len(scenario.body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + scenario.body


def read_response(reader):
    """One response, or None if the peer closed before sending a byte."""
    head = reader.read_until(b"\r\n\r\n", MAX_HEAD)
    if head is None:
        if reader.buf:
            raise ProtocolError(f"incomplete response head: {bytes(reader.buf[:80])!r}")
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    resp = Response(parts[0], int(parts[1]), headers, b"", "")
    te = (resp.header("transfer-encoding") or "").lower()
    cl = resp.header("content-length")
    if te:
        if te.split(",")[-1].strip() != "chunked":
            raise ProtocolError(f"unexpected Transfer-Encoding {te!r}")
        if cl is not None:
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        resp.body = _read_chunked(reader)
        resp.framing = "chunked"
    elif cl is not None:
        if not cl.isdigit():
            raise ProtocolError(f"bad Content-Length {cl!r}")
        resp.body = reader.read_exact(int(cl))
        resp.framing = "length"
    else:
        resp.body = reader.read_to_eof()
        resp.framing = "close"
    return resp


def _read_chunked(reader):
    body = bytearray()
    while True:
        line = reader.read_until(b"\r\n", 1024)
        if line is None:
            raise ProtocolError("chunked body cut short")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text!r}") from None
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = reader.read_until(b"\r\n", MAX_HEAD)
                if trailer is None:
                    raise ProtocolError("chunked trailer cut short")
                if trailer == b"\r\n":
                    return bytes(body)
        body += reader.read_exact(size)
        if reader.read_exact(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


def _judge(resp, scenario, seconds):
    if resp.status != 200:
        return f"status {resp.status}, body {resp.body[:60]!r}"
    if not scenario.body_ok(resp.body):
        return f"wrong body ({len(resp.body)} bytes, starts {resp.body[:40]!r})"
    if seconds > (scenario.slow or SLOW):
        # e.g. an unframed body that only a server-side idle timeout ends
        return f"response took {seconds:.1f} s (framing: {resp.framing})"
    return None


def check(port, scenario, host="127.0.0.1", timeout=TIMEOUT):
    """Check each of the scenario's targets (see ``Scenario.variants``)."""
    result = CheckResult(True)
    for variant in scenario.variants():
        one = _check_one(port, variant, host, timeout)
        result.framings |= one.framings
        result.notes |= one.notes
        if not one.ok:
            detail = one.detail if variant is scenario else f"{variant.path}: {one.detail}"
            return _fail(result, detail)
    return result


def _check_one(port, scenario, host, timeout):
    """Send ``max(2, scenario.pipeline)`` requests and judge every answer."""
    total = max(2, scenario.pipeline)
    result = CheckResult(True)
    answered = connections = 0
    try:
        while answered < total:
            connections += 1
            if connections > total + 1:
                return _fail(result, "too many reconnects")
            with socket.create_connection((host, port), timeout=timeout) as sock:
                reader = _Reader(sock)
                problem, answered = _exchange(sock, reader, scenario, port, total,
                                              answered, result)
                if problem:
                    return _fail(result, problem)
    except (OSError, ProtocolError) as exc:
        return _fail(result, f"{type(exc).__name__}: {exc}")
    return result


def _fail(result, detail):
    result.ok, result.detail = False, detail
    return result


def _exchange(sock, reader, scenario, port, total, answered, result):
    """Requests on one connection until done or the server ends it.

    Returns (problem or None, requests answered so far). A server may close a
    connection it has used without announcing it; the unanswered requests
    are then retried on a new one, as RFC 9112 9.3.1-9.3.2 tell clients to,
    and a note records it. Closing a fresh connection unanswered is a failure.
    """
    batch = min(scenario.pipeline, total - answered)
    on_conn = 0
    while True:
        t0 = time.monotonic()
        try:
            sock.sendall(build_request(scenario, port) * batch)
        except (BrokenPipeError, ConnectionResetError):
            if on_conn == 0:
                raise
            return _closed_early(result, on_conn, batch, 0), answered
        for got in range(batch):
            try:
                resp = read_response(reader)
            except socket.timeout:
                what = f"{got} of {batch} pipelined requests" if batch > 1 else "the request"
                return (f"timed out after {TIMEOUT:.0f} s waiting for an answer; "
                        f"answered {what} on this connection"), answered
            except ConnectionResetError:
                if on_conn == 0 or reader.buf:
                    raise
                resp = None
            if resp is None:
                if on_conn == 0:
                    return "connection closed with no response", answered
                return _closed_early(result, on_conn, batch, got), answered
            on_conn += 1
            result.framings.add(resp.framing)
            problem = _judge(resp, scenario, time.monotonic() - t0)
            if problem:
                return f"request {answered + 1}: {problem}", answered
            answered += 1
            if scenario.close:
                return _expect_close(sock, reader, resp, result), answered
            if not resp.keeps_alive:
                result.notes.add("one request per connection (announced)")
                return None, answered  # the rest go on a new connection
        if answered >= total:
            return None, answered
        batch = min(batch, total - answered)


def _closed_early(result, on_conn, batch, got):
    if batch > 1:
        result.notes.add("no pipelining: closes after the first response of a batch, "
                         "unannounced (the rest are retried)")
    else:
        result.notes.add("closes keep-alive connections without Connection: close")
    return None


def _expect_close(sock, reader, resp, result):
    """After Connection: close the server MUST close (RFC 9112 9.6)."""
    if reader.eof:
        return None
    if resp.keeps_alive:
        result.notes.add("no Connection: close in the response to one")
    sock.settimeout(2.0)
    try:
        extra = reader.read_to_eof()
    except socket.timeout:
        return "did not close the connection after Connection: close"
    if extra:
        return f"bytes after the response: {extra[:40]!r}"
    return None
