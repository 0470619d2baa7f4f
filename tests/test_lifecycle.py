"""A request's life between the socket and the app, on real servers (subprocesses).

The in-process twin is tests/test_connection.py; these check the same promises end
to end, with the default server and with --threads:
- a client that sends its body at 1 byte/s (Content-Length, chunked, Expect:
  100-continue, or a large body) never holds the server: other clients are answered
  while it trickles, and it gets 408;
- a write() kept from an earlier request raises and never reaches the response of
  the request running on the same connection;
- a client reset while an app thread runs the response: the iterable's close() runs
  once, on the app thread, never while its __next__ runs, and nothing is logged
  with a traceback.
"""

import json
import socket
import struct
import time

import pytest

from conftest import read_response
from test_connection import Trickle, recv_all

THREADS = [["--threads", "1"], ["--threads", "4"]]
IDS = ["inline", "threads"]


def get(srv, path, timeout=10):
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = read_response(s, timeout)
        return status, body


SLOW = {
    "length": b"Content-Length: 50\r\n\r\n",
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n32\r\n",
    "expect": b"Content-Length: 50\r\nExpect: 100-continue\r\n\r\n",
    "large": b"Content-Length: 20000000\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(SLOW))
def test_one_byte_per_second_body_holds_no_one_and_gets_408(serve, kind):
    srv = serve("lifecycle:app", "--body-timeout", "3", "--body-min-rate", "0")
    slow = socket.create_connection((srv.host, srv.port), timeout=15)
    slow.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + SLOW[kind])
    if kind == "large":
        slow.sendall(b"y" * 1000000)       # a large start (spooled), then a trickle
    if kind == "expect":
        assert slow.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    with Trickle(slow, b"z", 1.0):          # 1 byte/s
        for _ in range(5):
            assert get(srv, "/echo") == (200, b"0 None True")
        # every other client was answered while the slow one still waits for its answer
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(1)
        slow.settimeout(15)
        data = recv_all(slow)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert srv.alive() and "Traceback" not in srv.output, srv.output


@pytest.mark.parametrize("threads", THREADS, ids=IDS)
def test_chunked_body_gets_its_decoded_length(serve, threads):
    srv = serve("lifecycle:app", *threads)
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert read_response(s)[::2] == (200, b"11 11 True")


@pytest.mark.parametrize("threads", THREADS, ids=IDS)
def test_stale_write_never_reaches_the_next_response(serve, threads):
    srv = serve("lifecycle:app", *threads)
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"GET /keep-write HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(s)[::2] == (200, b"kept")
        s.sendall(b"GET /use-stale-write HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(s)
        assert (status, body) == (200, b"ResponseError"), body
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")     # still in step
        assert read_response(s)[::2] == (200, b"0 None True")
    assert "Traceback" not in srv.output, srv.output


def test_reset_while_an_app_thread_runs_the_response(serve):
    srv = serve("lifecycle:app", "--threads", "4")
    for attempt in range(6):
        key = f"k{attempt}"
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(f"GET /held?key={key}&hold=0.2 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert s.recv(12) == b"HTTP/1.1 200"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()                                  # RST while __next__ sleeps
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report = json.loads(get(srv, f"/report?key={key}")[1])
            if report.get("closes"):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        report = json.loads(get(srv, f"/report?key={key}")[1])
        assert report["closes"] == 1, report
        assert not report["close_during_next"], report
        assert report["close_thread"] == report["threads"][0], report
    assert srv.alive()
    assert "Traceback" not in srv.output and "AttributeError" not in srv.output, srv.output
