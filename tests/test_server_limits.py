"""Functional tests of request limits (414, 431, 413) and malformed requests (RFC 9112).

Every rejected request must get a clean status line, a short body, `Connection: close`
and a closed connection; the server logs no traceback and keeps serving the next client.
"""

import re
import threading
import uuid

import pytest

from conftest import ServerProcess
from test_server_helpers import Conn, chunked, digest, get, req

LINE, HEAD, FIELDS, BODY = 100, 1000, 10, 1000


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["basic:app"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def limited():
    srv = ServerProcess([
        "basic:app",
        "--limit-request-line", str(LINE),
        "--limit-header-size", str(HEAD),
        "--limit-request-fields", str(FIELDS),
        "--limit-request-body", str(BODY),
    ])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_traceback_logged(request):
    """A client's mistake is never logged as a server traceback."""
    servers = [request.getfixturevalue(name) for name in ("server", "limited")
               if name in request.fixturenames]
    marks = [len(srv.output) for srv in servers]
    yield
    for srv, mark in zip(servers, marks):
        logged = srv.output[mark:]
        assert "Traceback" not in logged and "Exception ignored" not in logged, logged


def assert_serving(srv):
    assert srv.alive(), srv.output
    resp = get(srv, "/say/still-here")
    assert (resp.status, resp.body) == (200, b"still-here")


def assert_rejected(conn, status):
    """The next response is `status`, short, says close, and the server then closes."""
    resp = conn.response()
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("connection", "").lower() == "close"
    assert len(resp.body) < 1024
    assert b"Traceback" not in resp.body
    conn.wait_eof()
    return resp


def send_in_background(conn, data):
    """Send a large request while the caller reads: the server may answer (and close)
    before it has read it all, and the answer must still reach us."""
    def run():
        try:
            conn.sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- limits set by flags ------------------------------------------------------------------


def test_request_line_at_the_limit_is_accepted(limited):
    line = "GET /say/" + "a" * (LINE - len("GET /say/ HTTP/1.1")) + " HTTP/1.1"
    assert len(line) == LINE
    conn = Conn(limited)
    conn.send(line.encode() + b"\r\nHost: t\r\n\r\n")
    assert conn.response().status == 200


def test_request_line_over_the_limit_is_414(limited):
    conn = Conn(limited)
    conn.send(b"GET /say/" + b"a" * LINE + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_rejected(conn, 414)
    assert_serving(limited)


def _head_of_size(size):
    start = b"GET /say/h HTTP/1.1\r\nHost: t\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def test_head_under_the_size_limit_is_accepted(limited):
    head = _head_of_size(HEAD - 4)
    conn = Conn(limited)
    conn.send(head)
    assert conn.response().body == b"h"


def test_head_over_the_size_limit_is_431(limited):
    conn = Conn(limited)
    conn.send(_head_of_size(HEAD + 3))
    assert_rejected(conn, 431)
    assert_serving(limited)


def test_field_count_at_the_limit_is_accepted(limited):
    fields = [(f"X-F{i}", "v") for i in range(FIELDS - 1)]  # + Host = FIELDS
    conn = Conn(limited)
    conn.send(req(path="/say/fields", headers=fields))
    assert conn.response().body == b"fields"


def test_field_count_over_the_limit_is_431(limited):
    fields = [(f"X-F{i}", "v") for i in range(FIELDS)]  # + Host = FIELDS + 1
    conn = Conn(limited)
    conn.send(req(path="/say/fields", headers=fields))
    assert_rejected(conn, 431)
    assert_serving(limited)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_at_the_limit_is_accepted(limited, framing):
    data = b"b" * BODY
    if framing == "chunked":
        raw = req("POST", "/hash", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(data[:300], data[300:]))
    else:
        raw = req("POST", "/hash", body=data)
    conn = Conn(limited)
    conn.send(raw)
    assert conn.response().json() == digest(data)


def test_content_length_over_the_limit_is_413_before_the_app(limited):
    key = uuid.uuid4().hex
    conn = Conn(limited)
    conn.send(req("POST", f"/hit?key={key}", body=b"b" * (BODY + 1)))
    assert_rejected(conn, 413)
    assert get(limited, f"/hits?key={key}").body == b"0"
    assert_serving(limited)


def test_chunked_body_over_the_limit_is_413(limited):
    conn = Conn(limited)
    conn.send(req("POST", "/hash", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"c" * 500, b"c" * 500, b"c")))
    assert_rejected(conn, 413)
    assert_serving(limited)


# --- default limits -----------------------------------------------------------------------


@pytest.mark.parametrize("kind,status", [
    ("request-line", 414),
    ("header-value", 431),
    ("field-count", 431),
])
def test_default_limits(server, kind, status):
    if kind == "request-line":
        raw = req(path="/say/" + "a" * (1024 * 1024))
    elif kind == "header-value":
        raw = req(path="/say/x", headers=[("X-Big", "v" * (1024 * 1024))])
    else:
        raw = req(path="/say/x", headers=[(f"X-F{i}", "v") for i in range(20000)])
    conn = Conn(server)
    sender = send_in_background(conn, raw)
    assert_rejected(conn, status)
    sender.join(10)
    assert_serving(server)


# --- malformed requests -------------------------------------------------------------------

H = b"Host: t\r\n"
MALFORMED = [
    ("bare-lf", b"GET /say/x HTTP/1.1\nHost: t\n\n", {400}),
    ("obs-fold", b"GET /say/x HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", {400}),
    ("cl-and-te", b"POST /hash HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("bad-chunk-size", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk-without-crlf", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", {400}),
    ("chunk-size-overflow", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\nab\r\n", {400, 413}),
    ("http-2.0", b"GET /say/x HTTP/2.0\r\n" + H + b"\r\n", {505}),
    ("http-3.0", b"GET /say/x HTTP/3.0\r\n" + H + b"\r\n", {505}),
    ("version-garbage", b"GET /say/x HTTQ/1.1\r\n" + H + b"\r\n", {400}),
    ("version-suffix", b"GET /say/x HTTP/1.1x\r\n" + H + b"\r\n", {400}),
    ("no-version", b"GET /say/x\r\n\r\n", {400}),
    ("missing-host", b"GET /say/x HTTP/1.1\r\n\r\n", {400}),
    ("two-hosts", b"GET /say/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("nul-in-header", b"GET /say/x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", {400}),
    ("bare-cr-in-header", b"GET /say/x HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", {400}),
    ("space-before-colon", b"GET /say/x HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", {400}),
    ("bad-header-name", b"GET /say/x HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n", {400}),
    ("gzip-chunked", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {501}),
    ("unknown-coding", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: foo\r\n\r\n", {501}),
    ("chunked-not-final", b"POST /hash HTTP/1.1\r\n" + H
     + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}),
    ("two-content-lengths", b"POST /hash HTTP/1.1\r\n" + H
     + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", {400}),
    ("content-length-abc", b"POST /hash HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", {400}),
    ("content-length-negative", b"POST /hash HTTP/1.1\r\n" + H
     + b"Content-Length: -1\r\n\r\n", {400}),
    ("content-length-plus", b"POST /hash HTTP/1.1\r\n" + H
     + b"Content-Length: +5\r\n\r\nhello", {400}),
    ("double-space", b"GET  /say/x HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("bad-method-char", b"G(T /say/x HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("relative-target", b"GET say/x HTTP/1.1\r\n" + H + b"\r\n", {400}),
    ("ctl-in-target", b"GET /say/\x01 HTTP/1.1\r\n" + H + b"\r\n", {400}),
]
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [!-~][ -~]*\r\n")


@pytest.mark.parametrize("raw,expected", [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_request(server, raw, expected):
    conn = Conn(server)
    conn.send(raw)
    answer = conn.wait_eof()  # the server must close after a framing/parse error
    m = STATUS_LINE.match(answer)
    assert m, answer[:300]
    assert int(m.group(1)) in expected, answer[:300]
    assert answer.count(b"HTTP/1.") == 1, "only the error response, nothing after it"
    _, _, body = answer.partition(b"\r\n\r\n")
    assert len(body) < 1024
    assert b"Traceback" not in body
    assert_serving(server)
