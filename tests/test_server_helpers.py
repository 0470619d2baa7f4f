"""Client helpers shared by the tests/test_server_*.py modules (this file holds no tests).

`Conn` is one raw client connection whose responses are parsed by http.client over a
single buffered reader, so pipelined responses are read in order and none is lost to
read-ahead; `req` and `chunked` build raw request bytes.
"""

import hashlib
import http.client
import json
import socket
import time


class _Lent:
    """A connection's buffered reader lent to http.client, which may not close it."""

    def __init__(self, rfile):
        self._rfile = rfile

    def makefile(self, *args, **kwargs):
        return self

    def __getattr__(self, name):
        return getattr(self._rfile, name)

    def close(self):
        pass


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status, self.reason, self.headers, self.body, self.version = (
            status, reason, headers, body, version)

    def header(self, name, default=None):
        for key, value in self.headers:
            if key == name.lower():
                return value
        return default

    def json(self):
        return json.loads(self.body)


class Conn:
    """One client connection: raw sends; responses read in order from one buffer."""

    def __init__(self, server, timeout=10.0):
        self.sock = server.connect(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def response(self, method="GET"):
        resp = http.client.HTTPResponse(_Lent(self.rfile), method=method)
        resp.begin()
        body = resp.read()
        headers = [(k.lower(), v) for k, v in resp.getheaders()]
        return Response(resp.status, resp.reason, headers, body, resp.version)

    def head_lines(self):
        """Read a raw status line and header lines up to the blank line."""
        lines = [self.rfile.readline()]
        while lines[-1] not in (b"\r\n", b""):
            lines.append(self.rfile.readline())
        return lines

    def read_chunked_strictly(self):
        """Decode a chunked body byte-exactly; fail on any framing deviation."""
        body = b""
        while True:
            size_line = self.rfile.readline()
            assert size_line.endswith(b"\r\n"), size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            data = self.rfile.read(size)
            assert len(data) == size
            assert self.rfile.read(2) == b"\r\n"
            body += data
        assert self.rfile.readline() == b"\r\n", "chunked body must end with 0 CRLF CRLF"
        return body

    def wait_eof(self, timeout=5.0):
        """Read until the server closes; return the bytes that came before. Fails if
        the connection is still open after `timeout` seconds."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        got = b""
        try:
            while True:
                data = self.rfile.read1(65536)
                if not data:
                    return got
                got += data
                assert time.monotonic() < deadline, "server kept sending, never closed"
        except ConnectionResetError:
            return got
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s; got {got[:200]!r}")

    def close(self):
        self.rfile.close()
        self.sock.close()


def req(method="GET", path="/", headers=(), body=b"", version="HTTP/1.1", host="t"):
    """Raw request bytes; Content-Length is added for a body unless headers frame it."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


def pattern(n):
    unit = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
    return (unit * (n // len(unit) + 1))[:n]


def get(server, path, **kwargs):
    """One request (see `req`) on a fresh connection; the parsed response."""
    conn = Conn(server)
    try:
        conn.send(req(path=path, **kwargs))
        return conn.response(kwargs.get("method", "GET"))
    finally:
        conn.close()


def digest(data):
    """What /hash answers for a body of `data`."""
    return {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def rss_mib(pid):
    """Resident set size of process `pid` in MiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
