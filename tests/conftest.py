"""Shared fixtures: real fastwsgi servers as subprocesses on port 0.

`serve("module:app", "--opt", "val")` starts `python -m fastwsgi --bind 127.0.0.1:0 ...`
with tests/apps on PYTHONPATH, waits for the startup banner, and returns a
`ServerProcess` that knows its port and keeps every line the server logged.
The banner contract (fastwsgi/server.py prints it once, to stderr):

    fastwsgi 0.1.0 listening on http://127.0.0.1:43817, unix:/tmp/x.sock (pid 1234)
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
BANNER = re.compile(r"listening on (?P<addrs>.+?) \(pid (?P<pid>\d+)")


class ServerProcess:
    """A running `python -m fastwsgi` subprocess and everything it printed."""

    def __init__(self, args, env=None, cwd=None, timeout=20.0, bind=True):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (APPS, full_env.get("PYTHONPATH", "")) if p
        )
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        cmd = [sys.executable, "-m", "fastwsgi"]
        if bind:
            cmd += ["--bind", "127.0.0.1:0"]
        cmd += list(args)
        self.cmd = cmd
        self.lines = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd or HERE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.addresses = []
        self.pid = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    m = BANNER.search(line)
                    if m:
                        self.addresses = [a.strip() for a in m.group("addrs").split(",")]
                        self.pid = int(m.group("pid"))
                        break
            if self.addresses:
                break
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.output}"
                )
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"no startup banner within {timeout}s:\n{self.output}")
        first = self.addresses[0]
        self.url = first
        m = re.match(r"http://(\[[^\]]+\]|[^:]+):(\d+)", first)
        if m:
            self.host = m.group(1).strip("[]")
            self.port = int(m.group(2))
        else:
            self.host, self.port = None, None

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self):
        with self._lock:
            return "\n".join(self.lines)

    def wait_for_output(self, pattern, timeout=10.0):
        """Wait until a logged line matches `pattern` (regex); return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
            time.sleep(0.02)
        raise AssertionError(f"no output matching {pattern!r} within {timeout}s:\n{self.output}")

    def connect(self, timeout=10.0):
        """A raw TCP socket to the server."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s

    def request(self, raw, timeout=10.0, read_until_close=True):
        """Send raw bytes; return everything read until the server closes (or timeout)."""
        with self.connect(timeout) as s:
            s.sendall(raw)
            chunks = []
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                    if not read_until_close:
                        break
            except socket.timeout:
                pass
            return b"".join(chunks)

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(2)
        return self.proc.returncode


@pytest.fixture
def serve():
    """Factory fixture: serve("app_module:app", *cli_args, env=..., cwd=...)."""
    started = []

    def start(*args, env=None, cwd=None, bind=True, timeout=20.0):
        server = ServerProcess(args, env=env, cwd=cwd, bind=bind, timeout=timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def read_response(sock, timeout=10.0):
    """Read one HTTP/1.1 response from a socket (status line, headers, body).

    Returns (status:int, headers:list[(name_lower, value)], body:bytes, raw:bytes).
    Handles Content-Length, chunked and close-delimited bodies; uses http.client's
    parser so that framing is judged by an independent implementation.
    """
    import http.client

    sock.settimeout(timeout)
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    body = resp.read()
    headers = [(k.lower(), v) for k, v in resp.getheaders()]
    return resp.status, headers, body
