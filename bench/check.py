"""Correctness check of a running server with a plain socket client.

Contract: ``check(port, scenario)`` sends the scenario's request a few times
(``scenario.pipeline`` of them written back to back, otherwise two in a row on
one connection) and reads every response strictly: status line, headers, and
a body framed by Content-Length, chunked coding, or connection close. It
returns a ``CheckResult``; it never raises for a wrong or missing answer.

A server may close the connection after a response if it said so
(``Connection: close`` or an HTTP/1.0 response without keep-alive); the
remaining requests are then sent again on a new connection, as a client must.
Closing without saying so, with requests still unanswered, is a failure.
"""
import socket
import time
from dataclasses import dataclass, field

TIMEOUT = 10.0
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


def _judge(resp, scenario):
    if resp.status != 200:
        return f"status {resp.status}, body {resp.body[:60]!r}"
    if not scenario.body_ok(resp.body):
        return f"wrong body ({len(resp.body)} bytes, starts {resp.body[:40]!r})"
    if scenario.close and resp.keeps_alive:
        return "ignored Connection: close (kept the connection open)"
    return None


def check(port, scenario, host="127.0.0.1", timeout=TIMEOUT):
    """Send ``max(2, scenario.pipeline)`` requests and judge every answer."""
    total = max(2, scenario.pipeline)
    framings = set()
    answered = 0
    reconnects = 0
    deadline = time.monotonic() + timeout * 3
    try:
        while answered < total:
            if reconnects > total or time.monotonic() > deadline:
                return CheckResult(False, "too many reconnects", framings)
            with socket.create_connection((host, port), timeout=timeout) as sock:
                reader = _Reader(sock)
                batch = scenario.pipeline if scenario.pipeline > 1 else 1
                batch = min(batch, total - answered)
                sock.sendall(build_request(scenario, port) * batch)
                got = 0
                while True:
                    resp = read_response(reader)
                    if resp is None:
                        if got == 0:
                            return CheckResult(False, "connection closed with no response", framings)
                        if got < batch:
                            return CheckResult(
                                False, f"closed after {got} of {batch} pipelined "
                                       "responses without Connection: close", framings)
                        break
                    framings.add(resp.framing)
                    problem = _judge(resp, scenario)
                    if problem:
                        return CheckResult(False, f"request {answered + 1}: {problem}", framings)
                    got += 1
                    answered += 1
                    if not resp.keeps_alive:
                        break  # resend the rest on a new connection
                    if got == batch:
                        if answered >= total:
                            break
                        batch = min(batch, total - answered)
                        sock.sendall(build_request(scenario, port) * batch)
                        got = 0
                if scenario.close:
                    # The server must close after a Connection: close exchange.
                    sock.settimeout(2.0)
                    try:
                        extra = reader.read_to_eof() if not reader.eof else b""
                    except socket.timeout:
                        return CheckResult(False, "did not close after Connection: close", framings)
                    if extra:
                        return CheckResult(False, f"junk after response: {extra[:40]!r}", framings)
            reconnects += 1
    except (OSError, ProtocolError) as exc:
        return CheckResult(False, f"{type(exc).__name__}: {exc}", framings)
    return CheckResult(True, "", framings)
