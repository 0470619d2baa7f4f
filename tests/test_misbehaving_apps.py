"""Applications that break PEP 3333, beyond what tests/test_server_app.py covers.

test_server_app.py already checks start_response twice without exc_info, None
returned, str and int body items, exceptions before and inside the iterator, and
close() being called once.  Here: start_response never called, statuses that are
not a str "NNN reason", bytes-like items that are not bytes, a non-iterable
return, start_response called after the first yield, an exception in close(),
and a generator that keeps yielding after its client left.  Each one gets a 500
(nothing was sent yet) or a close, a log line that names the problem, and the
server keeps serving.
"""

import socket
import time
import uuid

import pytest

from conftest import ServerProcess


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["hostile:app"])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _still_serving(server):
    yield
    assert server.alive(), server.output
    assert exchange(server, b"/")[0] == b"HTTP/1.1 200 OK"
    assert "Exception ignored" not in server.output


def exchange(srv, path, pipelined=b"", timeout=5.0):
    """GET `path` (then `pipelined` raw bytes, else with Connection: close); read
    until the server closes or is silent for 1 s.  Returns (status line, raw answer)."""
    close = b"" if pipelined else b"Connection: close\r\n"
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n" + close + b"\r\n" + pipelined)
        s.settimeout(1.0)
        data = b""
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except socket.timeout:
            pass
    return data.partition(b"\r\n")[0], data


def logged(srv, mark, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in srv.output[mark:]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged:\n{srv.output[mark:]}")


def assert_500_then_close(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), raw[:300]
    assert b"connection: close" in head.lower()
    assert b"should not be sent" not in raw and b"too early" not in raw
    assert b"Traceback" not in raw
    assert raw.count(b"HTTP/1.1 ") == 1, "nothing may follow the 500 on this connection"


NEXT = b"GET /count?key=never HTTP/1.1\r\nHost: h\r\n\r\n"

CASES = [
    # path, what the log line must say
    (b"/never_starts", "did not call start_response"),
    (b"/never_starts_empty", "did not call start_response"),
    (b"/status?kind=int", "status must be str"),
    (b"/status?kind=no_reason", "status must look like"),
    (b"/status?kind=lower", "status must look like"),
    (b"/status?kind=long_code", "status must look like"),
    (b"/status?kind=crlf", "control character in status"),
    (b"/status?kind=non_latin1", "not latin-1"),
    (b"/bytearray_items", "must be bytes"),
    (b"/not_iterable", "not iterable"),
    (b"/start_after_body", "did not call start_response"),
]


@pytest.mark.parametrize("path,log", CASES, ids=[c[0].decode().strip("/") for c in CASES])
def test_broken_app_gets_500_log_line_and_close(server, path, log):
    mark = len(server.output)
    _, raw = exchange(server, path, pipelined=NEXT)
    assert_500_then_close(raw)
    logged(server, mark, log)
    logged(server, mark, "Error handling request GET " + path.decode())
    assert exchange(server, b"/counted?key=never")[1].endswith(b"\r\n\r\n0")


def test_exception_in_close_is_logged_and_the_response_stands(server):
    key = uuid.uuid4().hex
    mark = len(server.output)
    _, raw = exchange(server, b"/raise_in_close?key=" + key.encode(), pipelined=b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"xxxxxxxx"), raw[:300]
    # the response was complete and well framed before close() ran: the
    # connection may go on (it does) or close, but never carry a second status
    after = rest[8:]
    assert after == b"" or after.startswith(b"HTTP/1.1 200 "), after[:200]
    logged(server, mark, "Error closing the response iterable")
    logged(server, mark, f"fixture failure in close() {key}")
    _, closes = exchange(server, b"/closes?key=" + key.encode())
    assert closes.endswith(b"1 0 1")


def test_generator_stops_soon_after_its_client_is_gone(server):
    key = uuid.uuid4().hex
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"GET /after_gone?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    got = 0
    while got < 200000:
        got += len(s.recv(65536))
    s.close()
    # 400 chunks at 5 ms each would take 2 s; the server must stop pulling long before
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, raw = exchange(server, b"/closes?key=" + key.encode())
        closes, live, yielded = raw.rpartition(b"\r\n\r\n")[2].split()
        if closes == b"1":
            break
        time.sleep(0.05)
    assert (closes, live) == (b"1", b"0"), raw
    assert int(yielded) < 400, "the generator was drained to the end for a client that left"
