"""The request-line and header edge cases of issue 12, answered by a real server
as RFC 9110/9112 say (the parser side is in tests/corpus and test_parser.py):
each bad request gets its status and a close, and the server serves on."""

import pytest

from conftest import read_response

GOOD = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("mode", [(), ("--threads", "2")], ids=["loop", "threads"])
@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
     b"Content-Type: text/html\r\nContent-Length: 0\r\n\r\n", 400),
    (b"GET /a\\..\\b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"A" * 100_000 + b" / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
], ids=["empty-host", "two-content-types", "backslash", "long-method", "http2"])
def test_bad_requests_get_their_status(serve, mode, raw, status):
    server = serve(*mode, "deploy:app")
    out = server.request(raw)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:100]
    assert b"Traceback" not in out
    assert server.request(GOOD).startswith(b"HTTP/1.1 200")


def test_http_1_2_is_served_as_http_1_1(serve):
    server = serve("deploy:app")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n")
        status, headers, body = read_response(s)
        assert status == 200 and b'"SERVER_PROTOCOL": "HTTP/1.1"' in body
        s.sendall(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n")     # kept alive, as 1.1
        assert read_response(s)[0] == 200
