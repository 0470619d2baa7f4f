"""Functional tests of the server as a running process: timeouts, bounded memory under
large uploads and slow readers, many connections at once, IPv6 and unix sockets, and
a clean exit on SIGTERM / SIGINT.

Memory is judged from the server's own VmRSS (/proc/PID/status), sampled while the
traffic flows; the bounds are far below the sizes moved, so buffering everything
fails them and streaming passes.
"""

import hashlib
import http.client
import json
import os
import random
import select
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ServerProcess
from test_server_helpers import Conn, get, req, rss_mib

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["basic:app"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keepalive_server():
    srv = ServerProcess(["basic:app", "--keep-alive", "1"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def header_timeout_server():
    # A long keep-alive, so that only the header deadline can cut a slow head off.
    srv = ServerProcess(["basic:app", "--header-timeout", "1", "--keep-alive", "30"])
    yield srv
    srv.stop()


class PeakRSS:
    """Samples a process's RSS every 20 ms while the block runs; .peak in MiB."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join(2)
        self.peak = max(self.peak, rss_mib(self.pid))


# --- keep-alive and header timeouts -----------------------------------------------------------


def test_idle_keepalive_connection_is_closed(keepalive_server):
    conn = Conn(keepalive_server)
    conn.send(req(path="/say/x"))
    assert conn.response().body == b"x"
    start = time.monotonic()
    assert conn.wait_eof(timeout=5) == b""  # closed silently, no stray response
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed <= 4.0, elapsed


def test_active_keepalive_connection_stays_open(keepalive_server):
    conn = Conn(keepalive_server)
    for i in range(6):  # 2.4 s in all, more than the 1 s idle timeout
        conn.send(req(path=f"/say/a{i}"))
        assert conn.response().body == f"a{i}".encode()
        time.sleep(0.4)


def _closed_within(sock, send_more, limit):
    """Wait (trickling bytes if `send_more`) until the server closes; return
    (seconds, bytes the server sent) or fail after `limit` seconds."""
    start = time.monotonic()
    got = b""
    while time.monotonic() - start < limit:
        readable, _, _ = select.select([sock], [], [], 0.3)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return time.monotonic() - start, got
            got += data
            continue
        if send_more:
            try:
                sock.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start, got
    raise AssertionError(f"connection still open after {limit}s; got {got[:200]!r}")


def _assert_timed_out_answer(got):
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_header_timeout_half_request_line(header_timeout_server):
    sock = header_timeout_server.connect()
    sock.sendall(b"GET /say/x HT")
    elapsed, got = _closed_within(sock, send_more=False, limit=5)
    _assert_timed_out_answer(got)
    assert 0.5 <= elapsed <= 4.0, elapsed
    assert get(header_timeout_server, "/say/ok").body == b"ok"


def test_header_timeout_is_for_the_whole_head(header_timeout_server):
    sock = header_timeout_server.connect()
    sock.sendall(b"GET /say/x HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    elapsed, got = _closed_within(sock, send_more=True, limit=6)  # one byte every 0.3 s
    _assert_timed_out_answer(got)
    assert 0.5 <= elapsed <= 4.0, elapsed
    assert get(header_timeout_server, "/say/ok").body == b"ok"


def test_head_sent_in_pieces_within_the_deadline(header_timeout_server):
    conn = Conn(header_timeout_server)
    raw = req(path="/say/pieces")
    for i in range(0, len(raw), 8):
        conn.send(raw[i:i + 8])
        time.sleep(0.05)
    assert conn.response().body == b"pieces"


# --- memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_is_streamed(server, framing):
    assert get(server, "/hash", method="POST", body=b"warm up").status == 200
    base = rss_mib(server.pid)
    block = random.Random(7).randbytes(MIB)
    blocks, piece = 20, 256 * 1024
    expected = hashlib.sha256(block * blocks).hexdigest()
    conn = Conn(server, timeout=30)
    with PeakRSS(server.pid) as rss:
        if framing == "chunked":
            conn.send(req("POST", "/hash", headers=[("Transfer-Encoding", "chunked")]))
            for _ in range(blocks):
                for i in range(0, MIB, piece):
                    conn.send(b"%x\r\n" % piece + block[i:i + piece] + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.send(req("POST", "/hash", headers=[("Content-Length", str(blocks * MIB))]))
            for _ in range(blocks):
                for i in range(0, MIB, piece):
                    conn.send(block[i:i + piece])
        resp = conn.response()
    assert resp.json() == {"len": blocks * MIB, "sha256": expected}
    assert rss.peak - base < 60, f"RSS grew from {base:.1f} to {rss.peak:.1f} MiB"


def test_slow_reader_does_not_balloon_memory_or_block_others(server):
    assert get(server, "/say/warm").status == 200
    base = rss_mib(server.pid)
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect((server.host, server.port))
    try:
        slow.sendall(req(path="/big?mb=100"))
        with PeakRSS(server.pid) as rss:
            time.sleep(1.0)
            other = Conn(server, timeout=5)
            other.send(req(path="/say/alive"))
            assert other.response().body == b"alive"
            time.sleep(0.5)
        assert slow.recv(12) == b"HTTP/1.1 200"  # the big response did start
        assert rss.peak - base < 50, f"RSS grew from {base:.1f} to {rss.peak:.1f} MiB"
    finally:
        slow.close()
    assert get(server, "/say/after").body == b"after"


# --- many connections -------------------------------------------------------------------------


def test_many_concurrent_keepalive_connections(server):
    conns = [Conn(server, timeout=30) for _ in range(200)]

    def work(i):
        for j in range(5):
            conns[i].send(req(path=f"/say/c{i}-{j}"))
            resp = conns[i].response()
            assert (resp.status, resp.body) == (200, f"c{i}-{j}".encode())
        return i

    try:
        with ThreadPoolExecutor(max_workers=200) as pool:
            assert sorted(pool.map(work, range(200))) == list(range(200))
    finally:
        for conn in conns:
            conn.close()


# --- other listeners --------------------------------------------------------------------------


def _has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_bind(serve):
    srv = serve("basic:app", "--bind", "[::1]:0", bind=False)
    assert srv.host == "::1"
    client = http.client.HTTPConnection("::1", srv.port, timeout=10)
    client.request("GET", "/environ/v6")
    resp = client.getresponse()
    env = json.loads(resp.read())
    assert resp.status == 200
    assert env["REMOTE_ADDR"] == "::1"
    assert env["PATH_INFO"] == "/environ/v6"
    client.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def test_unix_socket_bind(serve):
    path = f"/tmp/fastwsgi-test-{uuid.uuid4().hex[:12]}.sock"
    try:
        srv = serve("basic:app", "--bind", f"unix:{path}", bind=False)
        assert f"unix:{path}" in srv.addresses
        client = UnixHTTPConnection(path)
        client.request("GET", "/say/over-unix")
        resp = client.getresponse()
        assert (resp.status, resp.read()) == (200, b"over-unix")
        client.request("POST", "/echo", body=b"x" * 100000)  # same connection, kept alive
        resp = client.getresponse()
        assert resp.read() == b"x" * 100000
        client.close()
    finally:
        if os.path.exists(path):
            os.unlink(path)


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_server_cleanly(serve, sig):
    srv = serve("basic:app")
    idle = Conn(srv)
    idle.send(req(path="/say/x"))
    assert idle.response().body == b"x"  # a keep-alive connection stays open, idle
    srv.send_signal(sig)
    assert srv.proc.wait(10) == 0, srv.output
    srv._reader.join(2)
    assert "Traceback" not in srv.output, srv.output
    assert "KeyboardInterrupt" not in srv.output, srv.output
    idle.close()
