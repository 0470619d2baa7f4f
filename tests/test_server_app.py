"""Functional tests of how the server treats the application (PEP 3333).

App errors, start_response misuse, Content-Length lies and header injection must end
in a 500 (while no byte was sent) or a closed connection (afterwards), never in a
well-framed wrong response; iterable close() is called exactly once; write() and
wsgi.file_wrapper deliver exact bytes; wsgiref's validator finds nothing to object to.
"""

import http.client
import importlib.util
import os
import re
import time
import uuid

import pytest

from conftest import APPS, ServerProcess
from test_server_helpers import Conn, chunked, digest, get, pattern, req

# The fixture app itself, loaded without touching sys.path: its file_content() is what
# /file serves.
_spec = importlib.util.spec_from_file_location("_basic_fixture", os.path.join(APPS, "basic.py"))
basic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(basic)


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["basic:app"])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _server_survives(request):
    """The server outlives every app error, and no exception escapes its own handling."""
    srv = request.getfixturevalue("server") if "server" in request.fixturenames else None
    mark = len(srv.output) if srv else 0
    yield
    if srv:
        assert srv.alive(), f"server died:\n{srv.output}"
        assert "Exception ignored" not in srv.output[mark:], srv.output[mark:]


def wait_for_value(srv, path, expected, timeout=5.0):
    """Poll a counter endpoint until it shows `expected`; then check it stays there."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = get(srv, path).body
        if body == expected:
            time.sleep(0.2)
            assert get(srv, path).body == expected, "counted more than once"
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: {body!r}, expected {expected!r}")


def assert_500(resp):
    assert resp.status == 500, (resp.status, resp.body)
    assert len(resp.body) < 1024
    assert b"Traceback" not in resp.body
    assert b"should not be sent" not in resp.body


def log_mark(srv):
    return len(srv.output)


def logged_since(srv, mark, pattern_, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern_, srv.output[mark:]):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing matching {pattern_!r} logged:\n{srv.output[mark:]}")


def assert_truncated(raw, declared=None):
    """A response cut short by a close: headers went out, the body never completed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200 "), raw[:300]
    if b"transfer-encoding: chunked" in head.lower():
        assert not body.endswith(b"0\r\n\r\n"), "a failed body must not look complete"
    else:
        assert declared is not None and len(body) < declared, raw[:300]
    return body


# --- app errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after_start", "first_iter"])
def test_app_error_before_any_byte_is_500(server, when):
    token = uuid.uuid4().hex
    mark = log_mark(server)
    resp = get(server, f"/raise?when={when}&token={token}")
    assert_500(resp)
    assert token.encode() not in resp.body
    logged_since(server, mark, "Traceback")
    logged_since(server, mark, f"fixture failure {token}")
    assert get(server, "/say/next").body == b"next"


@pytest.mark.parametrize("when,declared", [("mid_iter", None), ("mid_iter_cl", 100)])
def test_app_error_mid_body_closes_connection(server, when, declared):
    token = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(req(path=f"/raise?when={when}&token={token}") + req(path="/say/never"))
    raw = conn.wait_eof()
    body = assert_truncated(raw, declared)
    assert b"partial" in body
    assert b"never" not in raw
    server.wait_for_output(f"fixture failure {token}")


def test_http_client_sees_incomplete_response(server):
    client = http.client.HTTPConnection(server.host, server.port, timeout=10)
    client.request("GET", "/raise?when=mid_iter_cl&token=hc")
    resp = client.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    client.close()


def test_start_response_twice_without_exc_info(server):
    assert_500(get(server, "/start_twice"))


def test_exc_info_before_headers_sent_replaces_status(server):
    resp = get(server, "/exc_info?when=before")
    assert (resp.status, resp.body) == (503, b"recovered")


def test_exc_info_after_headers_sent_aborts(server):
    conn = Conn(server)
    conn.send(req(path="/exc_info?when=after"))
    raw = conn.wait_eof()
    body = assert_truncated(raw)
    assert b"first" in body
    assert b"must not be sent" not in body


@pytest.mark.parametrize("what", ["none", "str_item", "int_item"])
def test_bad_return_value_is_500(server, what):
    mark = log_mark(server)
    assert_500(get(server, f"/bad_return?what={what}"))
    logged_since(server, mark, r"(?i)error|traceback")


def test_str_item_after_bytes(server):
    conn = Conn(server)
    conn.send(req(path="/bad_return?what=mixed") + req(path="/say/never"))
    raw = conn.wait_eof()
    if raw.startswith(b"HTTP/1.1 500 "):
        return  # the server looked ahead before sending anything: fine
    body = assert_truncated(raw)
    assert b"then text" not in body
    assert b"never" not in raw


@pytest.mark.parametrize("kind", ["bytes", "garbage", "short", "header_bytes", "header_tuple"])
def test_invalid_start_response_arguments_are_500(server, kind):
    mark = log_mark(server)
    assert_500(get(server, f"/bad_status?kind={kind}"))
    logged_since(server, mark, r"(?i)error|traceback")


@pytest.mark.parametrize("where", ["value", "value_lf", "value_cr", "name", "colon"])
def test_header_injection_is_500(server, where):
    conn = Conn(server)
    conn.send(req(path=f"/inject?where={where}", headers=[("Connection", "close")]))
    raw = conn.wait_eof()
    assert raw.startswith(b"HTTP/1.1 500 "), raw[:300]
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"X-Evil" not in head
    assert b"injected" not in raw


@pytest.mark.parametrize("declared,actual", [(10, 5), (10, 20), (10, 0)])
def test_content_length_mismatch_never_corrupts_the_stream(server, declared, actual):
    conn = Conn(server)
    conn.send(req(path=f"/cl?declared={declared}&actual={actual}") + req(path="/say/after"))
    if actual < declared:
        # Short: the connection must close; reading on would swallow the next response.
        try:
            resp = conn.response()
        except http.client.IncompleteRead as exc:
            assert exc.partial == pattern(actual)
            return
        # Only an app that sent no byte at all can still get a clean 500.
        assert actual == 0 and resp.status == 500, (resp.status, resp.body)
        try:
            nxt = conn.response()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return
        assert (nxt.status, nxt.body) == (200, b"after")
        return
    resp = conn.response()
    assert resp.body == pattern(declared)
    try:
        nxt = conn.response()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return  # closed after the declared bytes: fine
    assert (nxt.status, nxt.body) == (200, b"after")


def test_write_callable_mixed_with_iterable(server):
    conn = Conn(server)
    conn.send(req(path="/write") + req(path="/say/after"))
    assert conn.response().body == b"hello wide world"
    assert conn.response().body == b"after"


# --- close() ----------------------------------------------------------------------------------


def test_close_called_once_on_success(server):
    key = uuid.uuid4().hex
    assert get(server, f"/closing?id={key}&mode=ok").body == b"one two"
    wait_for_value(server, f"/closes?id={key}", b"1")


def test_close_called_once_on_head(server):
    key = uuid.uuid4().hex
    resp = get(server, f"/closing?id={key}&mode=ok", method="HEAD")
    assert (resp.status, resp.body) == (200, b"")
    wait_for_value(server, f"/closes?id={key}", b"1")


def test_close_called_once_on_error_before_body(server):
    key = uuid.uuid4().hex
    assert_500(get(server, f"/closing?id={key}&mode=raise_first"))
    wait_for_value(server, f"/closes?id={key}", b"1")


def test_close_called_once_on_error_mid_body(server):
    key = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(req(path=f"/closing?id={key}&mode=raise_mid"))
    assert b"one " in assert_truncated(conn.wait_eof())
    wait_for_value(server, f"/closes?id={key}", b"1")


def test_close_called_once_on_client_disconnect(server):
    key = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(req(path=f"/closing?id={key}&mode=big"))
    received = 0
    while received < 256 * 1024:
        data = conn.rfile.read1(65536)
        assert data, "the server ended a 1 GiB stream early"
        received += len(data)
    conn.close()
    wait_for_value(server, f"/closes?id={key}", b"1", timeout=10)
    assert get(server, "/say/next").body == b"next"


# --- wsgi.file_wrapper -------------------------------------------------------------------------

FIVE_MIB = 5 * 1024 * 1024


@pytest.mark.parametrize("query", ["cl=1", "", "blksize=8192"])
def test_file_wrapper_sends_exact_bytes_and_closes_the_file(server, query):
    key = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(req(path=f"/file?size={FIVE_MIB}&id={key}&{query}") + req(path="/say/after"))
    resp = conn.response()
    assert resp.status == 200
    if query == "cl=1":
        assert resp.header("content-length") == str(FIVE_MIB)
    assert digest(resp.body) == digest(basic.file_content(FIVE_MIB))
    assert conn.response().body == b"after"
    wait_for_value(server, f"/file_closed?id={key}", b"1")


def test_file_wrapper_over_http10(server):
    key = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(f"GET /file?size=300000&id={key} HTTP/1.0\r\n\r\n".encode())
    raw = conn.wait_eof()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert body == basic.file_content(300000)
    wait_for_value(server, f"/file_closed?id={key}", b"1")


def test_file_wrapper_on_head_sends_no_body_and_closes_the_file(server):
    key = uuid.uuid4().hex
    conn = Conn(server)
    conn.send(req("HEAD", f"/file?size=100000&id={key}&cl=1") + req(path="/say/after"))
    resp = conn.response("HEAD")
    assert (resp.status, resp.body, resp.header("content-length")) == (200, b"", "100000")
    assert conn.response().body == b"after"
    wait_for_value(server, f"/file_closed?id={key}", b"1")


def test_file_wrapper_over_a_file_like_without_fileno(server):
    assert get(server, "/filelike?size=100000").body == basic.file_content(100000)


# --- wsgiref.validate -------------------------------------------------------------------------


def test_validator_finds_no_violation(serve):
    srv = serve("basic:validated_app")
    conn = Conn(srv)
    conn.send(req(path="/"))
    assert (conn.response().body) == b"hello from /"
    conn.send(req(path="/some/where?q=1"))
    assert conn.response().body == b"hello from /some/where"
    conn.send(req("POST", "/echo", body=pattern(10000)))
    assert conn.response().body == pattern(10000)
    conn.send(req("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"abc", b"def")))
    assert conn.response().body == b"abcdef"
    conn.send(req("POST", "/lines", body=b"a\nb\nc"))
    assert conn.response().body == b"3"
    conn.send(req("HEAD", "/"))
    head = conn.response("HEAD")
    assert (head.status, head.body) == (200, b"")
    conn.send(req(path="/stream"))
    assert conn.response().body == b"a" * 100 + b"b" * 100 + b"c" * 100
    conn.send(req(path="/write"))
    assert conn.response().body == b"written returned"
    conn.send(req(path="/nocontent"))
    assert conn.response().status == 204
    conn.send(req(path="/", version="HTTP/1.0"))
    assert conn.response().body == b"hello from /"
    conn.close()
    time.sleep(0.3)  # a leaked, unclosed iterator complains when it is collected
    assert "AssertionError" not in srv.output, srv.output
    assert "garbage collected without being closed" not in srv.output, srv.output
    assert "Traceback" not in srv.output, srv.output
