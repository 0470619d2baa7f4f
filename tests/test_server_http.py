"""Functional tests of the core server's HTTP/1.1 behaviour (RFC 9112) and environ (PEP 3333).

Real `python -m fastwsgi` processes serve tests/apps/basic.py; the client side is raw
sockets wherever framing matters, and http.client / requests elsewhere. Responses are
parsed by http.client over one buffered reader per connection, so pipelined responses
are read in order and none is lost to read-ahead.
"""

import email.utils
import http.client
import json
import re
import select
import socket
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from conftest import ServerProcess
from test_server_helpers import Conn, chunked, digest, get, pattern, req


# --- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["basic:app"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alt_server():
    srv = ServerProcess(["basic:app", "--root-path", "/app", "--server-header", ""])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stream_server():
    """Request bodies streamed to the app as it reads them (not received first)."""
    srv = ServerProcess(["basic:app", "--stream-request-body"])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _server_survives(request):
    """Whatever a test sent, its server is still up and logged no traceback meanwhile."""
    servers = [request.getfixturevalue(name) for name in ("server", "alt_server", "stream_server")
               if name in request.fixturenames]
    marks = [len(srv.output) for srv in servers]
    yield
    for srv, mark in zip(servers, marks):
        assert srv.alive(), f"server died:\n{srv.output}"
        logged = srv.output[mark:]
        assert "Traceback" not in logged and "Exception ignored" not in logged, logged


# --- basics -----------------------------------------------------------------------------


def test_get_over_raw_socket(server):
    conn = Conn(server)
    conn.send(b"GET /fixed?size=5 HTTP/1.1\r\nHost: t\r\n\r\n")
    resp = conn.response()
    assert resp.status == 200
    assert resp.version == 11
    assert resp.header("content-length") == "5"
    assert resp.body == pattern(5)


def test_post_with_http_client(server):
    client = http.client.HTTPConnection(server.host, server.port, timeout=10)
    body = b"a posted body \x00\xff with binary"
    client.request("POST", "/echo", body=body, headers={"Content-Type": "application/x-test"})
    resp = client.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/x-test"
    assert resp.read() == body
    client.close()


def test_requests_get_and_post(server):
    base = f"http://{server.host}:{server.port}"
    with requests.Session() as session:
        r = session.get(base + "/environ/via-requests", params={"q": "1"}, timeout=10)
        assert r.status_code == 200
        assert r.json()["PATH_INFO"] == "/environ/via-requests"
        assert r.json()["QUERY_STRING"] == "q=1"
        data = pattern(100_000)
        r = session.post(base + "/hash", data=data, timeout=10)
        assert r.json() == digest(data)


def test_head_over_raw_socket_has_no_body(server):
    conn = Conn(server)
    conn.send(req("HEAD", "/fixed?size=100") + req(path="/say/after"))
    head = conn.response("HEAD")
    assert head.status == 200
    assert head.header("content-length") == "100"
    assert head.body == b""
    # A body byte after the HEAD response would break the next status line.
    nxt = conn.response()
    assert (nxt.status, nxt.body) == (200, b"after")


# --- environ ----------------------------------------------------------------------------


def test_environ_contents(server):
    conn = Conn(server)
    target = "/environ/a%20b%2Fc%C3%A9?x=1&y=%20"
    conn.send(req(path=target, host=f"127.0.0.1:{server.port}",
                  headers=[("X-Custom-Thing", "v1"), ("Accept", "*/*")]))
    env = conn.response().json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    # percent-decoded, then each byte as one latin-1 character (PEP 3333)
    assert env["PATH_INFO"] == "/environ/a b/c" + "é".encode("utf-8").decode("latin-1")
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == target
    assert "CONTENT_LENGTH" not in env
    assert env["SERVER_NAME"]
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(conn.sock.getsockname()[1])
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["HTTP_X_CUSTOM_THING"] == "v1"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True          # a worker under the master
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["file_wrapper_callable"] is True
    assert env["input_has"] == ["read", "readline", "readlines", "__iter__"]
    assert env["errors_has"] == ["write", "writelines", "flush"]
    assert env["non_str_cgi_keys"] == []
    assert env["environ_type"] == "dict"


@pytest.mark.parametrize("source", ["127.0.0.1", "127.10.200.3", "127.255.0.99"])
def test_remote_addr_and_port_text(server, source):
    # The loop formats IPv4 peers itself (no inet_ntop/sprintf): zero, one-,
    # two- and three-digit octets, and the port, must read as Python spells them.
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", server.port))
        s.sendall(req(path="/environ/peer", headers=[("Connection", "close")]))
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
        port = s.getsockname()[1]
    env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert env["REMOTE_ADDR"] == source
    assert env["REMOTE_PORT"] == str(port)


def test_environ_body_headers(server):
    conn = Conn(server)
    conn.send(req("POST", "/environ", body=b"hello",
                  headers=[("Content-Type", "text/plain; charset=utf-8")]))
    env = conn.response().json()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "5"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env


def test_environ_repeated_header_is_combined(server):
    env = get(server, "/environ", headers=[("X-Multi", "a"), ("X-Multi", "b")]).json()
    assert env["HTTP_X_MULTI"] in ("a, b", "a,b")


def test_environ_header_normalisation(server):
    env = get(server, "/environ", headers=[("x-lower-case", "1"),
                                           ("X-Spaced", " \t padded value \t ")]).json()
    assert env["HTTP_X_LOWER_CASE"] == "1"
    assert env["HTTP_X_SPACED"] == "padded value"  # OWS around a field value is not part of it


@pytest.mark.parametrize("target,path,query", [
    # absolute-form must be accepted too (RFC 9112 §3.2.2)
    ("http://example.com/environ/abs?q=1", "/environ/abs", "q=1"),
    ("/environ?", "/environ", ""),
    ("/environ/%41%2f?a=%41", "/environ/A/", "a=%41"),
])
def test_environ_target_forms(server, target, path, query):
    env = get(server, target).json()
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == (path, query)


def test_environ_other_methods(server):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"):
        assert get(server, "/environ", method=method).json()["REQUEST_METHOD"] == method


def test_environ_http10(server):
    conn = Conn(server)
    conn.send(b"GET /environ/old HTTP/1.0\r\n\r\n")  # no Host: fine in HTTP/1.0
    resp = conn.response()
    assert resp.status == 200
    assert resp.json()["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_wsgi_errors_reaches_server_log(server):
    token = f"errors-probe-{uuid.uuid4().hex}"
    assert get(server, f"/environ?errors_probe={token}").status == 200
    server.wait_for_output(re.escape(token), timeout=5)


def test_root_path(alt_server):
    env = get(alt_server, "/app/environ/x%20y").json()
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ/x y")
    env = get(alt_server, "/app").json()
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "")
    env = get(alt_server, "/app/").json()
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/")


def test_root_path_does_not_split_a_segment(alt_server):
    resp = get(alt_server, "/apple")
    if resp.status == 200:
        env = resp.json()
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) != ("/app", "le")


# --- Server and Date headers --------------------------------------------------------------


def test_server_and_date_headers(server):
    resp = get(server, "/say/x")
    assert resp.header("server", "").startswith("fastwsgi")
    date = resp.header("date")
    assert date and re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
        r" \d{4} \d\d:\d\d:\d\d GMT", date), date
    sent = email.utils.parsedate_to_datetime(date)
    assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 120


def test_server_header_can_be_removed(alt_server):
    resp = get(alt_server, "/app/say/x")
    assert resp.status == 200
    assert resp.header("server") is None
    assert resp.header("date")


# --- keep-alive ---------------------------------------------------------------------------


def test_http11_keeps_connection_alive(server):
    conn = Conn(server)
    ports = set()
    for i in range(5):
        conn.send(req(path=f"/environ/{i}"))
        resp = conn.response()
        assert resp.status == 200
        assert resp.header("connection", "").lower() != "close"
        assert resp.json()["PATH_INFO"] == f"/environ/{i}"
        ports.add(resp.json()["REMOTE_PORT"])
    assert len(ports) == 1


def test_http10_closes_by_default(server):
    conn = Conn(server)
    conn.send(b"GET /fixed?size=3 HTTP/1.0\r\n\r\n")
    resp = conn.response()
    assert resp.body == pattern(3)
    assert resp.header("connection", "").lower() != "keep-alive"
    assert conn.wait_eof() == b""


def test_http10_keep_alive_on_request(server):
    conn = Conn(server)
    for i in range(3):
        conn.send(f"GET /say/k{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        resp = conn.response()
        assert resp.body == f"k{i}".encode()
        assert resp.header("connection", "").lower() == "keep-alive"


def test_connection_close_is_honoured(server):
    conn = Conn(server)
    conn.send(req(path="/say/bye", headers=[("Connection", "close")]) + req(path="/say/never"))
    resp = conn.response()
    assert resp.body == b"bye"
    assert resp.header("connection", "").lower() == "close"
    assert conn.wait_eof() == b""  # and the second request was not answered


# --- pipelining ---------------------------------------------------------------------------


def test_pipelined_gets_answered_in_order(server):
    conn = Conn(server)
    conn.send(b"".join(req(path=f"/say/w{i}") for i in range(10)))
    for i in range(10):
        resp = conn.response()
        assert (resp.status, resp.body) == (200, f"w{i}".encode())


def test_pipelined_posts_with_bodies(server):
    bodies = [b"", b"a", pattern(1000), pattern(20000),
              b"\r\n\r\nGET /say/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"]
    conn = Conn(server)
    conn.send(b"".join(req("POST", "/echo", body=b, headers=[("Content-Length", str(len(b)))])
                       for b in bodies))
    for body in bodies:
        resp = conn.response()
        assert (resp.status, resp.body) == (200, body)


def test_bad_request_after_good_ones(server):
    key = uuid.uuid4().hex
    conn = Conn(server)
    good = req(path=f"/hit?key={key}")
    bad = f"GET /hit?key={key} HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n".encode()
    conn.send(good + good + bad + good)
    assert conn.response().body == b"1"
    assert conn.response().body == b"2"
    resp = conn.response()
    assert resp.status == 400
    assert resp.header("connection", "").lower() == "close"
    assert conn.wait_eof() == b""
    assert get(server, f"/hits?key={key}").body == b"2"


# --- chunked request bodies -----------------------------------------------------------------


def test_chunked_request_in_one_piece(server):
    conn = Conn(server)
    conn.send(req("POST", "/hash", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"hello", b" world")))
    assert conn.response().json() == digest(b"hello world")


def test_chunked_request_split_at_odd_places(server):
    body = (b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n1\r\n!\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n")
    raw = req("POST", "/hash", headers=[("Transfer-Encoding", "chunked")], body=body)
    raw += req(path="/say/after")
    conn = Conn(server)
    for i in range(0, len(raw), 3):
        conn.send(raw[i:i + 3])
        time.sleep(0.003)
    assert conn.response().json() == digest(b"hello0123456789!")
    assert conn.response().body == b"after"


def test_large_chunked_request_with_varied_chunk_sizes(server):
    data = pattern(2 * 1024 * 1024)
    parts, pos, size = [], 0, 1
    while pos < len(data):
        parts.append(data[pos:pos + size])
        pos += size
        size = (size * 7 + 13) % 70000 + 1
    conn = Conn(server)
    conn.send(req("POST", "/hash?chunk=10000", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(*parts)))
    assert conn.response().json() == digest(data)


def test_chunked_request_read_with_one_read(server):
    conn = Conn(server)
    conn.send(req("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"abc", b"def", b"g" * 5000)))
    assert conn.response().body == b"abcdef" + b"g" * 5000


# --- chunked responses --------------------------------------------------------------------


def test_generator_response_is_chunked_on_http11(server):
    conn = Conn(server)
    conn.send(req(path="/stream?n=5&size=10") + req(path="/say/after"))
    lines = conn.head_lines()
    assert lines[0].startswith(b"HTTP/1.1 200 ")
    head = b"".join(lines).lower()
    assert b"\r\ntransfer-encoding: chunked\r\n" in head
    assert b"\r\ncontent-length:" not in head
    assert conn.read_chunked_strictly() == pattern(10) * 5
    assert conn.response().body == b"after"


def test_empty_yields_do_not_end_a_chunked_body(server):
    conn = Conn(server)
    conn.send(req(path="/stream?n=3&size=4&empty=1") + req(path="/say/after"))
    conn.head_lines()
    assert conn.read_chunked_strictly() == pattern(4) * 3
    assert conn.response().body == b"after"


def test_generator_response_on_http10_is_close_delimited(server):
    for extra in (b"", b"Connection: keep-alive\r\n"):
        conn = Conn(server)
        conn.send(b"GET /stream?n=4&size=10 HTTP/1.0\r\n" + extra + b"\r\n")
        raw = conn.wait_eof()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.")
        assert b"transfer-encoding" not in head.lower()
        assert b"connection: keep-alive" not in head.lower()
        assert body == pattern(10) * 4


def test_app_content_length_disables_chunking(server):
    conn = Conn(server)
    conn.send(req(path="/stream?n=3&size=10&cl=1") + req(path="/say/after"))
    resp = conn.response()
    assert resp.header("content-length") == "30"
    assert resp.header("transfer-encoding") is None
    assert resp.body == pattern(10) * 3
    assert conn.response().body == b"after"


# --- wsgi.input -----------------------------------------------------------------------------

LINES = b"line1\nline2\nline3 is longer\nlast-no-newline"
INPUT_CASES = [
    ("read:3,readline,readline:3,readline,read,read,read:10,readline",
     ["lin", "e1\n", "lin", "e2\n", "line3 is longer\nlast-no-newline", "", "", ""]),
    ("readlines,read,readline", [["line1\n", "line2\n", "line3 is longer\n", "last-no-newline"],
                                 "", ""]),
    ("iter", [["line1\n", "line2\n", "line3 is longer\n", "last-no-newline"]]),
    ("readline,iter", ["line1\n", ["line2\n", "line3 is longer\n", "last-no-newline"]]),
    ("read:0,read:5,read:1000,read:1", ["", "line1", "\nline2\nline3 is longer\nlast-no-newline",
                                        ""]),
    ("readline:100,readline:5,readline:5", ["line1\n", "line2", "\n"]),
]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("ops,expected", INPUT_CASES)
def test_wsgi_input_methods(server, framing, ops, expected):
    if framing == "chunked":
        raw = req("POST", f"/input?ops={ops}", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(*(LINES[i:i + 7] for i in range(0, len(LINES), 7))))
    else:
        raw = req("POST", f"/input?ops={ops}", body=LINES)
    conn = Conn(server)
    # The next request follows at once: reading past the end must not eat it.
    conn.send(raw + req(path="/say/after"))
    resp = conn.response()
    assert resp.status == 200, resp.body
    assert resp.json() == expected
    assert conn.response().body == b"after"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_read_n_waits_for_the_whole_body(server, framing):
    """read(CONTENT_LENGTH) returns the whole body even when it arrives in parts:
    apps call it once, so a short read mid-body would truncate their data."""
    body = b"x" * 3000 + b"y" * 3000
    if framing == "chunked":
        raw = req("POST", "/input?ops=read:6000,read", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(body))
    else:
        raw = req("POST", "/input?ops=read:6000,read", body=body)
    split = raw.index(b"y" * 3000)
    conn = Conn(server)
    conn.send(raw[:split])
    time.sleep(0.3)                      # the app is already reading by now
    conn.send(raw[split:] + req(path="/say/after"))
    resp = conn.response()
    assert resp.status == 200, resp.body
    assert resp.json() == [body.decode(), ""]
    assert conn.response().body == b"after"


def test_wsgi_input_without_body_is_empty(server):
    conn = Conn(server)
    conn.send(req(path="/input?ops=read,readline,read:10,readlines")
              + req("POST", "/input?ops=read,readline", headers=[("Content-Length", "0")]))
    assert conn.response().json() == ["", "", "", []]
    assert conn.response().json() == ["", ""]


def test_small_unread_body_is_drained(server):
    conn = Conn(server)
    conn.send(req("POST", "/say/first", body=b"GET /say/smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
              + req("POST", "/say/second", headers=[("Transfer-Encoding", "chunked")],
                    body=chunked(b"abc", b"GET / HTTP/1.1\r\n\r\n"))
              + req(path="/say/third"))
    assert conn.response().body == b"first"
    assert conn.response().body == b"second"
    assert conn.response().body == b"third"


def test_large_unread_body_is_received_before_the_app(server):
    """By default the whole body (spooled past the memory threshold) is received
    before the app runs; the connection then serves the next request."""
    total = 8 * 1024 * 1024
    conn = Conn(server)
    conn.send(req("POST", "/say/ignored", headers=[("Content-Length", str(total))]))
    block = b"z" * (1024 * 1024)
    readable, _, _ = select.select([conn.sock], [], [], 0.3)
    assert not readable, "answered before the body was whole"
    for _ in range(total // len(block)):
        conn.send(block)
    conn.send(req(path="/say/after"))
    resp = conn.response()
    assert (resp.status, resp.body) == (200, b"ignored")
    assert resp.header("connection", "").lower() != "close"
    assert conn.response().body == b"after"


def test_large_unread_body_closes_or_drains(stream_server):
    total = 50 * 1024 * 1024
    conn = Conn(stream_server)
    conn.send(req("POST", "/say/ignored", headers=[("Content-Length", str(total))]))
    block = b"z" * (1024 * 1024)
    conn.send(block)
    resp = conn.response()
    assert (resp.status, resp.body) == (200, b"ignored")
    if resp.header("connection", "").lower() == "close":
        conn.wait_eof(timeout=10)
        return
    # The server means to keep the connection: it must skip the rest of the body.
    try:
        for _ in range(total // len(block) - 1):
            conn.send(block)
        conn.send(req(path="/say/after"))
    except (BrokenPipeError, ConnectionResetError):
        return  # closed while we were sending: no corruption either
    try:
        nxt = conn.response()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return
    assert (nxt.status, nxt.body) == (200, b"after")


# --- Expect: 100-continue ---------------------------------------------------------------------


def test_100_continue_sent_when_app_reads(server):
    conn = Conn(server, timeout=5)
    conn.send(req("POST", "/hash", headers=[("Content-Length", "11"),
                                            ("Expect", "100-continue")]))
    lines = conn.head_lines()  # times out (fails) if no 100 comes before the body
    assert lines[0] == b"HTTP/1.1 100 Continue\r\n"
    assert lines[-1] == b"\r\n"
    conn.send(b"hello world")
    resp = conn.response()
    assert resp.json() == digest(b"hello world")
    conn.send(req(path="/say/after"))
    assert conn.response().body == b"after"


def test_100_continue_sent_when_the_loop_receives_the_body(server):
    """By default 100 Continue goes out as soon as the loop starts to receive the
    body, whether or not the app will read it; the app runs once it is whole."""
    conn = Conn(server, timeout=5)
    conn.send(req("POST", "/say/nobody", headers=[("Content-Length", "1000"),
                                                  ("Expect", "100-continue")]))
    lines = conn.head_lines()
    assert lines[0] == b"HTTP/1.1 100 Continue\r\n"
    conn.send(b"x" * 1000 + req(path="/say/after"))
    resp = conn.response()
    assert (resp.status, resp.body) == (200, b"nobody")
    assert conn.response().body == b"after"


def test_no_100_continue_when_app_does_not_read(stream_server):
    conn = Conn(stream_server, timeout=5)
    conn.send(req("POST", "/say/nobody", headers=[("Content-Length", "1000"),
                                                  ("Expect", "100-continue")]))
    assert conn.rfile.peek(12)[:12] == b"HTTP/1.1 200"
    resp = conn.response()
    assert resp.body == b"nobody"
    if resp.header("connection", "").lower() == "close":
        assert conn.wait_eof() == b""
        return
    # Not announced as closing: the server may still close (see the next test), or it
    # must read and discard the 1000 announced bytes before the next request.
    try:
        conn.send(b"x" * 1000 + req(path="/say/after"))
        nxt = conn.response()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return
    assert (nxt.status, nxt.body) == (200, b"after")


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100", "plain"])
def test_close_after_unread_body_is_announced(stream_server, expect):
    """RFC 9110 §10.1.1: a server that answers before reading the content SHOULD say
    whether it will close; a silent close makes clients reuse a dead connection."""
    # (a body this large is not awaited before the app runs; a small one would be,
    # and then the app does not answer "before reading the content")
    headers = [("Content-Length", "200000")] + ([("Expect", "100-continue")] if expect else [])
    conn = Conn(stream_server, timeout=5)
    conn.send(req("POST", "/say/early", headers=headers))  # the body is never sent
    resp = conn.response()
    assert resp.body == b"early"
    if resp.header("connection", "").lower() == "close":
        return
    conn.sock.settimeout(1.0)
    try:
        data = conn.rfile.read1(1)
    except socket.timeout:
        return  # still open, waiting for the body: consistent with keep-alive
    raise AssertionError(f"server closed (read {data!r}) without Connection: close")


@pytest.mark.parametrize("cl", ["0", "1"], ids=["chunked", "content-length"])
def test_slow_generator_streams_each_chunk(server, cl):
    """A generator that pauses between chunks gets each chunk sent as it comes, with
    or without a declared length: small chunks are coalesced, never held back."""
    conn = Conn(server, timeout=5)
    t0 = time.monotonic()
    conn.send(req(path=f"/stream?n=3&size=5&sleep=0.4&cl={cl}"))
    first = conn.rfile.read1(65536)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(
        b"01234" if cl == "1" else b"01234\r\n")
    assert time.monotonic() - t0 < 0.3, f"the first chunk waited for the next one: {first!r}"
    rest = first
    while not rest.endswith(b"01234" if cl == "1" else b"0\r\n\r\n") or rest.count(b"01234") < 3:
        rest += conn.rfile.read1(65536)   # to the end: the generator runs on the loop
    assert time.monotonic() - t0 >= 0.7


# --- HEAD, 204, 304 ------------------------------------------------------------------------


def test_head_on_streamed_response_sends_no_body(server):
    conn = Conn(server)
    conn.send(req("HEAD", "/stream?n=3&size=10") + req(path="/say/after"))
    head = conn.response("HEAD")
    assert head.status == 200
    assert head.body == b""
    assert conn.response().body == b"after"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_have_no_framing(server, code):
    conn = Conn(server)
    conn.send(req(path=f"/status?code={code}") + req(path="/say/after"))
    lines = conn.head_lines()
    assert lines[0].startswith(f"HTTP/1.1 {code} ".encode())
    head = b"".join(lines).lower()
    assert b"transfer-encoding" not in head
    if code == 204:
        assert b"content-length" not in head
    # The next bytes must be the next response, not "0\r\n\r\n".
    assert conn.rfile.peek(9)[:9] == b"HTTP/1.1 "
    assert conn.response().body == b"after"
