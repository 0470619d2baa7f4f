"""fastwsgi/_writer.pyx: response framing, in-process and through a real server.

In-process, through the module's test entry points (frame_head is
write_head_start as the connection calls it): the status and header policy,
str subclasses and enums framed from their own characters (the old _latin1
pointed into a freed temporary), control characters, sizes, chunk and length
lines, the Date line.  Through a server (tests/apps/framing.py, inline and with
--threads 4): every good case is framed exactly and judged by h11, pipelined
behind a second request; every bad case is a 500 that closes the connection, a
log line that names the problem (clipped, never a megabyte), and a server that
keeps serving.
"""

import email.utils
import enum
import gc
import os
import random
import sys
import time

import h11
import pytest

from conftest import APPS, ServerProcess
from fastwsgi._writer import format_date, frame_chunk, frame_content_length, frame_head
from fastwsgi.errors import ResponseError

sys.path.insert(0, APPS)
import framing  # noqa: E402  (the fixture app: its CASES table is shared with the server)

sys.path.remove(APPS)


def frame(status, headers, server="fastwsgi"):
    """frame_head as (bytes, RespInfo as a dict)."""
    raw, code, length, close = frame_head(status, headers, server)
    return raw, {"status_code": code, "content_length": length, "app_close": close,
                 "no_body": code in (204, 304)}


def head(status, headers=(), server="fastwsgi"):
    """frame's bytes without the Date line (it changes every second)."""
    raw, info = frame(status, list(headers), server)
    lines = [ln for ln in raw.split(b"\r\n") if not ln.startswith(b"Date: ")]
    return b"\r\n".join(lines), info


# --- str subclasses and enums: framed from characters the writer holds -------------------


def test_str_subclass_header_is_framed_from_its_own_characters():
    # the reproducer: the name's temporary copy was freed and the value's
    # took its place, so the line went out as "value-value: value-value"
    raw, _ = head("200 OK", [(framing.Sub("X-Long-Name"), framing.Sub("value-value"))])
    assert raw == b"HTTP/1.1 200 OK\r\nX-Long-Name: value-value\r\nServer: fastwsgi\r\n"


def test_many_distinct_subclass_headers_survive_allocation_churn():
    pairs = [(framing.Sub(f"X-Name-{i:04d}"), framing.Sub(f"value-{i:04d}-" + "z" * (i % 37)))
             for i in range(2000)]
    raw, _ = frame("200 OK", pairs)
    expected = b"".join(f"{n}: {v}\r\n".encode() for n, v in pairs)
    assert expected in raw
    gc.collect()


def test_strenum_status_and_names():
    raw, info = head(framing.Status.CREATED, [(framing.Name.TRACE, "abc")])
    assert raw.startswith(b"HTTP/1.1 201 Created\r\nX-Trace-Id: abc\r\n")
    assert info["status_code"] == 201


def test_a_subclass_str_method_is_not_what_is_framed():
    # str(s) would call the override; the characters of s are what the app gave
    raw, _ = head("200 OK", [("X-Safe", framing.Sneaky("plain"))])
    assert b"X-Safe: plain\r\n" in raw and b"X-Evil" not in raw


def test_subclass_with_control_characters_is_still_checked():
    with pytest.raises(ResponseError, match="control character"):
        frame("200 OK", [("X-A", framing.Sub("a\r\nX-Evil: injected"))])


def test_object_claiming_to_be_str_is_refused():
    with pytest.raises(ResponseError, match="must be str"):
        frame("200 OK", [("X-A", framing.FakeStr())])
    with pytest.raises(ResponseError, match="must be str"):
        frame(framing.FakeStr(), [])


def test_tuple_size_comes_from_the_tuple_not_its_len():
    # the items are read without bounds checks: a __len__ that lies must not count
    with pytest.raises(ResponseError, match="1 items"):
        frame("200 OK", [framing.LyingTuple(("X-A",))])


# --- statuses --------------------------------------------------------------------------


@pytest.mark.parametrize("status,code", [
    ("200 OK", 200), ("201 Created", 201), ("404 Not Found", 404), ("599 Custom", 599),
    ("200 ", 200), ("500 Internal\tServer Error", 500), ("299 caf\xe9", 299),
])
def test_final_statuses_are_framed_as_given(status, code):
    raw, info = head(status)
    assert raw.startswith(b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n")
    assert info["status_code"] == code


@pytest.mark.parametrize("status", [
    "100 Continue", "101 Switching Protocols", "102 Processing", "103 Early Hints",
    "199 X", "600 X", "999 Whatever", "000 X", "099 X",
])
def test_non_final_or_unknown_status_codes_are_refused(status):
    with pytest.raises(ResponseError, match="200-599"):
        frame(status, [])


@pytest.mark.parametrize("status", [
    "20 OK", "2000", "abc", "200", "", " 200 OK", "200\tOK", "2OO OK", "+20 OK", "200-OK",
])
def test_malformed_statuses_are_refused(status):
    with pytest.raises(ResponseError, match="status must"):
        frame(status, [])


@pytest.mark.parametrize("status", ["200 OK\r\nX: y", "200 O\x00K", "200 O\nK", "200 O\x7fK"])
def test_control_characters_in_the_reason_are_refused(status):
    with pytest.raises(ResponseError, match="control character in status"):
        frame(status, [])


@pytest.mark.parametrize("status,match", [
    (b"200 OK", "must be str, not bytes"), (bytearray(b"200 OK"), "must be str"),
    (200, "must be str, not int"), (None, "must be str"), ("200 \u03a9K", "not latin-1"),
])
def test_status_types(status, match):
    with pytest.raises(ResponseError, match=match):
        frame(status, [])


# --- the header policy -----------------------------------------------------------------


def test_connection_specific_headers_are_dropped_and_upgrade_passes():
    raw, info = head("200 OK", [("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                                ("Proxy-Connection", "keep-alive"), ("Transfer-Encoding", "chunked"),
                                ("Connection", "keep-alive"), ("Upgrade", "h2c"), ("X-A", "b")])
    assert raw == b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nX-A: b\r\nServer: fastwsgi\r\n"
    assert info["app_close"] is False


@pytest.mark.parametrize("value,close", [
    ("close", True), ("Close", True), ("keep-alive, close", True), (" close ,x", True),
    ("closed", False), ("keep-alive", False), ("", False),
])
def test_close_token_in_the_apps_connection_header(value, close):
    raw, info = head("200 OK", [("Connection", value)])
    assert b"onnection" not in raw
    assert info["app_close"] is close


def test_server_and_date_are_added_unless_the_app_sent_its_own():
    raw, _ = frame("200 OK", [])
    assert raw.count(b"\r\nServer: fastwsgi\r\n") == 1 and raw.count(b"\r\nDate: ") == 1
    raw, _ = frame("200 OK", [("server", "mine"), ("DATE", "x")])
    assert b"Server: fastwsgi" not in raw and raw.lower().count(b"date") == 1
    assert raw.endswith(b"server: mine\r\nDATE: x\r\n")
    raw, _ = frame("200 OK", [], server="")
    assert b"Server" not in raw


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_bodiless_statuses_drop_the_apps_framing_headers(status):
    raw, info = head(status, [("Content-Length", "4"), ("Transfer-Encoding", "chunked"),
                              ("content-length", "junk"), ("ETag", '"x"')])
    assert raw == b"HTTP/1.1 " + status.encode() + b'\r\nETag: "x"\r\nServer: fastwsgi\r\n'
    assert info == {"status_code": int(status[:3]), "content_length": -1,
                    "app_close": False, "no_body": True}


@pytest.mark.parametrize("status", ["200 OK", "205 Reset Content", "404 Not Found", "500 Oops"])
def test_other_statuses_keep_the_apps_content_length(status):
    raw, info = head(status, [("Content-Length", "4")])
    assert b"\r\nContent-Length: 4\r\n" in raw
    assert info["content_length"] == 4 and info["no_body"] is False


@pytest.mark.parametrize("value", ["abc", "-1", "+1", "1, 1", " 1", "1 ", "", "1" * 19])
def test_invalid_content_length_from_the_app(value):
    with pytest.raises(ResponseError, match="Content-Length"):
        frame("200 OK", [("Content-Length", value)])


def test_duplicate_content_length_from_the_app():
    with pytest.raises(ResponseError, match="duplicate"):
        frame("200 OK", [("Content-Length", "1"), ("content-length", "1")])


def test_largest_content_length_accepted():
    _, info = frame("200 OK", [("Content-Length", "9" * 18)])
    assert info["content_length"] == int("9" * 18)


@pytest.mark.parametrize("headers,match", [
    ([["X-A", "b"]], "tuple, not list"),
    ([("X-A", "b", "c")], "tuple, not tuple of 3"),
    ([("X-A",)], "tuple, not tuple of 1"),
    (["X-A: b"], "tuple, not str"),
    ([(b"X-A", "b")], "header name must be str, not bytes"),
    ([("X-A", b"b")], "header value must be str, not bytes"),
    ([("X-A", 1)], "must be str, not int"),
    ([("X-A", None)], "must be str, not NoneType"),
    ([("X-\u20ac", "b")], "not latin-1"),
    ([("X-A", "\u20ac")], "not latin-1"),
    ([("X-A", "\U0001f600")], "not latin-1"),
    ({"X-A": "b"}, "headers must be a list"),
    (None, "headers must be a list"),
    ("X-A: b", "headers must be a list"),
])
def test_header_shapes_and_types(headers, match):
    with pytest.raises(ResponseError, match=match):
        frame("200 OK", headers)


def test_header_list_and_tuple_subclasses_and_generators_of_pairs():
    class L(list):
        pass

    class T(tuple):
        pass

    raw, _ = head("200 OK", L([T(("X-A", "b"))]))
    assert b"\r\nX-A: b\r\n" in raw
    raw, _ = head("200 OK", (("X-B", "c"),))
    assert b"\r\nX-B: c\r\n" in raw


TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@pytest.mark.parametrize("c", range(256))
def test_every_byte_in_a_name_and_a_value(c):
    ch = chr(c)
    if c in TCHAR:
        assert b"\r\nX" + bytes([c]) + b": v\r\n" in frame("200 OK", [("X" + ch, "v")])[0]
    else:
        with pytest.raises(ResponseError, match="header name"):
            frame("200 OK", [("X" + ch, "v")])
    if c == 9 or 0x20 <= c <= 0x7E or c >= 0x80:
        assert b"\r\nX: a" + bytes([c]) + b"b\r\n" in frame("200 OK", [("X", f"a{ch}b")])[0]
    else:
        with pytest.raises(ResponseError, match="control character"):
            frame("200 OK", [("X", f"a{ch}b")])


def test_empty_name_is_refused_and_empty_value_is_framed():
    with pytest.raises(ResponseError, match="empty header name"):
        frame("200 OK", [("", "v")])
    assert b"\r\nX-Empty: \r\n" in frame("200 OK", [("X-Empty", "")])[0]


def test_huge_headers_are_framed_whole():
    value = "v" * (1 << 22)
    headers = [(f"X-{i}", str(i)) for i in range(10000)] + [("X-Huge", value)]
    raw, _ = frame("200 OK", headers)
    assert raw.count(b"\r\n") == 10000 + 1 + 3       # status, headers, Server, Date
    assert b"\r\nX-Huge: " + value.encode() + b"\r\n" in raw


def test_error_messages_are_clipped():
    with pytest.raises(ResponseError) as info:
        frame("200 OK", [("X-Huge", "v" * (1 << 20) + "\r")])
    assert len(str(info.value)) < 300
    with pytest.raises(ResponseError) as info:
        frame("200 " + "\u03a9" * (1 << 20), [])
    assert len(str(info.value)) < 300


def test_refused_head_leaves_the_caller_nothing():
    # a head refused half way (status line framed, then a bad header) is an
    # exception; the bytes framed so far are the caller's to roll back
    with pytest.raises(ResponseError):
        frame("200 OK", [("X-A", "b"), ("X-B", "c\r\n")])


# --- chunks, lengths, Date -------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 9, 10, 15, 16, 255, 256, 4095, 4096, 65536, (1 << 20) + 3])
def test_chunk_framing(n):
    data = os.urandom(n)
    assert frame_chunk(data) == b"%x\r\n" % n + data + b"\r\n"


def test_empty_chunk_frames_to_nothing_and_none_is_refused():
    assert frame_chunk(b"") == b""
    with pytest.raises(TypeError):
        frame_chunk(None)


@pytest.mark.parametrize("n", [0, 1, 9, 10, 12345, 10 ** 17, (1 << 62)])
def test_content_length_line(n):
    assert frame_content_length(n) == b"Content-Length: %d\r\n" % n


def test_date_line_matches_the_rfc_example_and_email_utils():
    assert format_date(784111777) == b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    assert format_date(0) == b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
    rng = random.Random(9112)
    for _ in range(500):
        t = rng.randrange(0, 4102444800)      # to 2100
        assert format_date(t) == f"Date: {email.utils.formatdate(t, usegmt=True)}\r\n".encode()


# --- through a real server ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["1", "4"], ids=["inline", "threads"])
def server(request):
    srv = ServerProcess(["framing:app", "--threads", request.param])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _still_serving(request):
    if "server" not in request.fixturenames:
        yield
        return
    srv = request.getfixturevalue("server")
    yield
    assert srv.alive(), f"server died:\n{srv.output[-3000:]}"
    assert "Exception ignored" not in srv.output and "Fatal Python error" not in srv.output
    assert exchange(srv, [("GET", "/sub_status")])[0][0][0] == 202


def exchange(srv, requests):
    """Send the requests pipelined on one connection (the last with Connection:
    close); judge the answer with h11.  Returns ([(status, headers, body)...], raw)."""
    raw_out = b""
    for i, (method, path) in enumerate(requests):
        close = b"Connection: close\r\n" if i == len(requests) - 1 else b""
        raw_out += f"{method} {path} HTTP/1.1\r\nHost: t\r\n".encode() + close + b"\r\n"
    raw = srv.request(raw_out)
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 24)
    client.receive_data(raw)
    client.receive_data(b"")
    answers = []
    for method, path in requests:
        client.send(h11.Request(method=method, target=path, headers=[("Host", "t")]))
        client.send(h11.EndOfMessage())
        status, headers, body = None, None, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status, headers = event.status_code, [(k.decode(), v.decode("latin-1"))
                                                      for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"{path}: unexpected {event!r} in {raw[:500]!r}")
        answers.append((status, headers, body))
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return answers, raw


def header_names(headers):
    return [k for k, _ in headers]


def test_good_cases_are_framed_exactly_and_keep_the_connection(server):
    for name in framing.GOOD:
        if name == "app_close":
            continue
        answers, raw = exchange(server, [("GET", "/" + name), ("GET", "/sub_status")])
        assert len(answers) == 2, (name, raw[:500])
        assert answers[1][0] == 202, (name, raw[:500])


def test_subclass_headers_on_the_wire(server):
    (resp, *_), raw = exchange(server, [("GET", "/sub_headers")])
    assert b"\r\nX-Long-Name: value-value\r\n" in raw and b"value-value: value-value" not in raw
    (resp, *_), raw = exchange(server, [("GET", "/strenum_status")])
    assert raw.startswith(b"HTTP/1.1 201 Created\r\n") and b"\r\nX-Trace-Id: abc\r\n" in raw
    (resp, *_), raw = exchange(server, [("GET", "/sneaky_value")])
    assert b"\r\nX-Safe: plain\r\n" in raw and b"X-Evil" not in raw
    (resp, *_), raw = exchange(server, [("GET", "/many_sub_headers")])
    for i in range(200):
        assert f"\r\nX-H{i}: value-{i}\r\n".encode() in raw


def test_huge_header_on_the_wire(server):
    (resp,), raw = exchange(server, [("GET", "/huge_value")])
    assert ("x-huge", framing.HUGE) in resp[1]


@pytest.mark.parametrize("case", ["no_content_with_length", "no_content_chunked",
                                  "not_modified_with_length", "not_modified_bad_length"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_bodiless_statuses_on_the_wire(server, case, method):
    answers, raw = exchange(server, [(method, "/" + case), ("GET", "/sub_status")])
    (status, headers, body), nxt = answers
    assert status == int(framing.CASES[case][0][:3]) and body == b""
    names = header_names(headers)
    assert "content-length" not in names and "transfer-encoding" not in names, raw[:300]
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert rest.startswith(b"HTTP/1.1 202 "), raw[:300]     # no body bytes in between
    assert nxt[0] == 202


def test_head_keeps_the_apps_content_length(server):
    answers, raw = exchange(server, [("HEAD", "/head_length"), ("GET", "/head_length")])
    assert answers[0][0] == 200 and ("content-length", "5") in answers[0][1] and answers[0][2] == b""
    assert answers[1][2] == b"hello"


def test_hop_by_hop_on_the_wire(server):
    (resp, nxt), raw = exchange(server, [("GET", "/hop_by_hop"), ("GET", "/sub_status")])
    names = header_names(resp[1])
    for dropped in ("keep-alive", "te", "proxy-connection", "transfer-encoding"):
        assert dropped not in names, raw[:400]
    assert ("upgrade", "h2c") in resp[1] and resp[2] == b"ok" and nxt[0] == 202


def test_app_connection_close_closes(server):
    answers, raw = exchange(server, [("GET", "/app_close"), ("GET", "/sub_status")])
    assert len(answers) == 1 and ("connection", "close") in answers[0][1]
    assert raw.count(b"HTTP/1.1 ") == 1


def test_apps_server_and_date_win(server):
    (resp,), _ = exchange(server, [("GET", "/own_server_date")])
    assert ("server", "mine") in resp[1] and ("date", "Thu, 01 Jan 1970 00:00:00 GMT") in resp[1]
    assert header_names(resp[1]).count("server") == 1 and header_names(resp[1]).count("date") == 1


def logged_since(srv, mark, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in srv.output[mark:] + "\n":
            return
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} not logged:\n{srv.output[mark:][-3000:]}")


EXPECTED_LOG = {
    "status_100": "200-599", "status_101": "200-599", "status_999": "200-599",
    "status_enum_100": "200-599", "status_two_digits": "status must look like",
    "status_crlf": "control character in status", "status_non_latin1": "not latin-1",
    "header_lying_tuple": "tuple, not LyingTuple of 1 items",
    "value_fake_str": "header value must be str, not FakeStr",
    "value_crlf": "control character in header", "name_crlf": "invalid character in header name",
    "length_twice": "duplicate Content-Length",
}


@pytest.mark.parametrize("case", list(framing.BAD))
def test_bad_cases_are_a_logged_500_and_a_close(server, case):
    mark = len(server.output)
    path = "/" + case
    raw = server.request(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /sub_status HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head_, _, body = raw.partition(b"\r\n\r\n")
    assert head_.startswith(b"HTTP/1.1 500 "), raw[:300]
    assert b"\r\nConnection: close" in head_, raw[:300]
    assert raw.count(b"HTTP/1.1 ") == 1, "nothing may follow the 500 on this connection"
    assert b"X-Evil" not in raw and b"injected" not in raw
    logged_since(server, mark, f"Error handling request GET {path}\n")
    if case in EXPECTED_LOG:
        logged_since(server, mark, EXPECTED_LOG[case])
    longest = max(len(line) for line in server.output[mark:].splitlines())
    assert longest < 4000, "a log line carried the app's whole header"


# --- found by fuzz/app_fuzz.py ------------------------------------------------------------


@pytest.mark.parametrize("case", ["status_999", "value_crlf", "header_lying_tuple"])
def test_a_500_answering_head_has_no_body(server, case):
    raw = server.request(f"HEAD /{case} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 500 ") and raw.endswith(b"\r\n\r\n"), raw
    assert raw.count(b"\r\n\r\n") == 1 and b"Content-Length: 26\r\n" in raw


def test_write_then_file_wrapper_is_one_response(server):
    answers, raw = exchange(server, [("GET", "/write_then_file"), ("GET", "/sub_status")])
    assert [a[0] for a in answers] == [200, 202], raw[:600]
    assert answers[0][2] == b"written;" + framing.FILE_BODY
    assert raw.count(b"HTTP/1.1 200 ") == 1
