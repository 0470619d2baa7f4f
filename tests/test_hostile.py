"""Hostile clients against a real server: slowloris, readers that never read, idle
crowds, resets mid-request and mid-response, oversized uploads, a connection cap.

The crowds are driven from one thread with non-blocking sockets and a selector;
RLIMIT_NOFILE of this process is raised to its hard limit for them (the server
raises its own).  Memory is the server's VmRSS; descriptors are /proc/PID/fd.
No speed is asserted beyond "answered within a few seconds".
"""

import os
import resource
import selectors
import socket
import struct
import threading
import time
import uuid

import pytest

from conftest import ServerProcess, read_response
from test_server_helpers import rss_mib

SLOWLORIS = 1000
IDLE = 2000


@pytest.fixture(scope="module", autouse=True)
def _raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, IDLE + 1000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < IDLE + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {IDLE} connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["hostile:app", "--limit-request-body", "100000", "--keep-alive", "30"])
    yield srv
    srv.stop()


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def quiet_fds(pid):
    """The server's descriptor count once lingering closes are over (stable for 0.3 s)."""
    last, stable_since = fds(pid), time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() - stable_since < 0.3 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = fds(pid)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def request(srv, path, timeout=5.0, extra=b""):
    """One request on a fresh connection (Connection: close); (status, body)."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" + extra + b"\r\n")
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def settle(fn, expected, timeout=10.0):
    """Poll fn() until it returns `expected`; return the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = fn()
    return value


def reset(sock):
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def connect_many(srv, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    return socks


class Timer:
    """A normal client in a thread: one request every `interval`, latencies recorded."""

    def __init__(self, srv, interval=0.1):
        self.srv, self.interval = srv, interval
        self.latencies, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status, body = request(self.srv, "/", timeout=10)
                assert (status, body) == (200, b"hello")
                self.latencies.append(time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 (reported by the test)
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)


# --- slowloris ------------------------------------------------------------------------------


def test_slowloris_clients_time_out_while_others_are_served():
    srv = ServerProcess(["hostile:app", "--header-timeout", "2", "--keep-alive", "30"])
    try:
        base_fds = quiet_fds(srv.pid)
        socks = connect_many(srv, SLOWLORIS)
        sel = selectors.DefaultSelector()
        for s in socks:
            s.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
            sel.register(s, selectors.EVENT_READ)
        open_ = set(socks)
        started = time.monotonic()
        answered_408 = 0
        with Timer(srv) as normal:
            next_trickle = started
            while open_ and time.monotonic() - started < 12:
                if time.monotonic() >= next_trickle:
                    next_trickle += 0.25
                    for s in list(open_):
                        try:
                            s.send(b"a")  # one byte of a header that never ends
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            open_.discard(s)
                            sel.unregister(s)
                for key, _ in sel.select(timeout=0.05):
                    s = key.fileobj
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data.startswith(b"HTTP/1.1 408"):
                        answered_408 += 1
                    if not data:
                        open_.discard(s)
                        sel.unregister(s)
            elapsed = time.monotonic() - started
        for s in socks:
            s.close()
        assert not open_, f"{len(open_)} slowloris connections still open after {elapsed:.1f}s"
        assert elapsed < 8, f"header timeout of 2s took {elapsed:.1f}s to close them all"
        assert answered_408 > SLOWLORIS * 0.9, answered_408
        assert not normal.errors, normal.errors[:3]
        assert len(normal.latencies) >= 10, normal.latencies
        assert max(normal.latencies) < 3.0, f"normal client waited {max(normal.latencies):.2f}s"
        assert settle(lambda: fds(srv.pid), base_fds) == base_fds
        assert srv.alive()
    finally:
        srv.stop()


# --- readers that never read ----------------------------------------------------------------


def test_clients_that_never_read_a_large_response_leave_memory_bounded(server):
    assert request(server, "/")[0] == 200
    base = rss_mib(server.pid)
    stalled = []
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((server.host, server.port))
        s.sendall(b"GET /big?mb=64 HTTP/1.1\r\nHost: h\r\n\r\n")  # 20 x 64 MiB, never read
        stalled.append(s)
    try:
        time.sleep(1.5)
        with Timer(server) as normal:
            time.sleep(1.0)
        grown = rss_mib(server.pid) - base
        assert not normal.errors and normal.latencies, normal.errors[:3]
        assert max(normal.latencies) < 3.0
        # each stalled response may hold about HIGH_WATER (256 KiB) plus a chunk
        assert grown < 40, f"RSS grew {grown:.1f} MiB for 20 stalled 64 MiB responses"
    finally:
        for s in stalled:
            reset(s)
    assert request(server, "/")[0] == 200


# --- idle crowds ------------------------------------------------------------------------------


def test_idle_keepalive_connections_hold_little_memory():
    srv = ServerProcess(["hostile:app", "--keep-alive", "60", "--no-master"])
    try:
        assert request(srv, "/")[0] == 200
        base_rss, base_fds = rss_mib(srv.pid), quiet_fds(srv.pid)
        socks = connect_many(srv, IDLE)
        sel = selectors.DefaultSelector()
        pending = {}
        for s in socks:
            s.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                pending[s] += s.recv(4096)
                if pending[s].endswith(b"hello"):
                    del pending[s]
                    sel.unregister(s)
        assert not pending, f"{len(pending)} of {IDLE} connections got no answer"
        time.sleep(0.5)
        grown = rss_mib(srv.pid) - base_rss
        held = fds(srv.pid) - base_fds
        # new clients are still served while the crowd idles
        for _ in range(5):
            assert request(srv, "/", timeout=3) == (200, b"hello")
        for s in socks:
            s.close()
        assert held == IDLE, f"server holds {held} descriptors for {IDLE} idle connections"
        per_conn_kib = grown * 1024 / IDLE
        print(f"\n{IDLE} idle connections: RSS +{grown:.1f} MiB ({per_conn_kib:.1f} KiB each)")
        assert grown < 32, f"RSS grew {grown:.1f} MiB ({per_conn_kib:.1f} KiB per idle connection)"
        assert settle(lambda: fds(srv.pid), base_fds) == base_fds
    finally:
        srv.stop()


# --- resets -----------------------------------------------------------------------------------


def test_resets_mid_request_leak_no_descriptors(server):
    key = uuid.uuid4().hex
    assert request(server, "/")[0] == 200
    base = quiet_fds(server.pid)
    for i in range(100):
        s = socket.create_connection((server.host, server.port), timeout=5)
        if i % 3 == 0:
            s.sendall(b"GET /count?key=" + key.encode() + b" HTTP/1.1\r\nHo")  # mid-head
        elif i % 3 == 1:
            s.sendall(b"POST /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n"
                      b"Content-Length: 50000\r\n\r\n" + b"x" * 1000)  # mid-body
        else:
            s.sendall(b"POST /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n100\r\nabc")  # mid-chunk
        time.sleep(0.002)
        reset(s)
    assert settle(lambda: fds(server.pid), base) == base
    status, body = request(server, "/counted?key=" + key)
    assert status == 200
    assert request(server, "/")[0] == 200


def test_resets_mid_response_close_every_iterable(server):
    key = uuid.uuid4().hex
    assert request(server, "/")[0] == 200
    base = quiet_fds(server.pid)
    n = 60
    for i in range(n):
        s = socket.create_connection((server.host, server.port), timeout=5)
        cl = b"&cl=1" if i % 2 else b""
        s.sendall(b"GET /tracked?key=" + key.encode() + b"&chunks=4000&size=65536" + cl
                  + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        got = 0
        while got < 100000:  # the response is flowing
            got += len(s.recv(65536))
        reset(s)
    expected = f"{n} 0"  # close() once per iterable, none left open

    def closes():
        status, body = request(server, "/closes?key=" + key)
        return body.rsplit(b" ", 1)[0].decode()
    assert settle(closes, expected) == expected
    assert settle(lambda: fds(server.pid), base) == base
    assert server.alive()


# --- oversized uploads -------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_over_the_limit_gets_413_and_a_close(server, framing):
    key = uuid.uuid4().hex
    s = socket.create_connection((server.host, server.port), timeout=5)
    if framing == "content-length":
        head = b"Content-Length: 50000000\r\n"
    else:
        head = b"Transfer-Encoding: chunked\r\n"
    s.sendall(b"POST /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n")
    stop = threading.Event()

    def flood():  # the client keeps sending as if nothing happened
        block = (b"10000\r\n" + b"u" * 65536 + b"\r\n") if framing == "chunked" else b"u" * 65536
        try:
            while not stop.is_set():
                s.sendall(block)
        except OSError:
            pass

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
        else:
            raise AssertionError("the server kept the connection open after the 413")
        assert data.startswith(b"HTTP/1.1 413 "), data[:200]
        assert b"connection: close" in data.lower()
    finally:
        stop.set()
        s.close()
        sender.join(5)
    if framing == "content-length":  # known before the app is called: it never is
        assert request(server, "/counted?key=" + key) == (200, b"0")


# --- the connection cap --------------------------------------------------------------------------


def test_max_connections_makes_the_next_client_wait():
    """50 connections in the middle of a request fill the cap: the 51st waits in the
    kernel's queue until one of them goes."""
    srv = ServerProcess(["hostile:app", "--max-connections", "50", "--header-timeout", "30"])
    try:
        held = []
        for _ in range(50):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")      # a head still arriving
            held.append(s)
        time.sleep(0.3)
        extra = socket.create_connection((srv.host, srv.port), timeout=5)  # queued by the kernel
        extra.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        extra.settimeout(1.0)
        with pytest.raises(socket.timeout):
            extra.recv(4096)  # the 51st is not served while 50 are busy
        held.pop().close()
        extra.settimeout(5.0)
        assert extra.recv(4096).endswith(b"hello")
        for s in held:           # the held ones finish their requests and are served
            s.sendall(b"\r\n")
            assert s.recv(4096).endswith(b"hello")
            s.close()
        extra.close()
        # the server keeps working with its cap: 60 clients in turn
        for _ in range(60):
            assert request(srv, "/") == (200, b"hello")
    finally:
        srv.stop()


def test_idle_keepalive_connections_make_room_at_the_cap():
    """Idle keep-alive connections do not lock new clients out: at the cap the oldest
    idle ones are closed (as nginx does) and the new client is served."""
    srv = ServerProcess(["hostile:app", "--max-connections", "50", "--keep-alive", "60"])
    try:
        held = []
        for _ in range(50):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert s.recv(4096).endswith(b"hello")
            held.append(s)
        t0 = time.monotonic()
        assert request(srv, "/", timeout=5) == (200, b"hello")
        assert time.monotonic() - t0 < 1.0
        closed = 0
        for s in held:
            s.settimeout(0.5)
            try:
                closed += s.recv(4096) == b""
            except socket.timeout:
                pass
            s.close()
        assert 1 <= closed <= 16, closed      # the oldest few; the rest were left alone
    finally:
        srv.stop()


# --- slow request bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 4])
def test_slow_body_does_not_stall_other_clients(threads):
    """A small body that trickles in is awaited by the loop (one thread) or an app
    thread (--threads): either way other clients are served meanwhile, and the
    app then gets the whole body."""
    srv = ServerProcess(["hostile:app", "--io-timeout", "3", "--threads", str(threads)])
    try:
        slow = socket.create_connection((srv.host, srv.port), timeout=10)
        slow.sendall(b"POST /count?key=slow HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        time.sleep(0.3)
        t0 = time.monotonic()
        assert request(srv, "/", timeout=10) == (200, b"hello")
        waited = time.monotonic() - t0
        assert waited < 1.0, f"a normal client waited {waited:.1f}s behind a slow upload"
        slow.sendall(b"x" * 990)
        status, _, body = read_response(slow)
        assert status == 200 and b"1000" in body, body
        slow.close()
    finally:
        srv.stop()


def test_slow_small_body_times_out_with_408():
    """The loop awaits a body only up to --body-timeout: then 408 and close."""
    srv = ServerProcess(["hostile:app", "--body-timeout", "1"])
    try:
        slow = socket.create_connection((srv.host, srv.port), timeout=10)
        slow.sendall(b"POST /count?key=late HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nxx")
        t0 = time.monotonic()
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert 0.5 < time.monotonic() - t0 < 4
        assert request(srv, "/counted?key=late") == (200, b"0")   # the app never saw it
    finally:
        srv.stop()
