"""The uwsgi protocol listener: fastwsgi._uwsgi's packet parser, then real servers.

The parser tests feed every packet whole, cut at every byte (0 = need more,
until the last byte), and with trailing body bytes that must stay unconsumed.
The server tests speak raw uwsgi packets to `python -m fastwsgi --protocol
uwsgi`; tests/test_nginx.py does the same through nginx's uwsgi_pass.
"""

import hashlib
import json
import re
import socket
import struct
import time

import pytest

from fastwsgi import errors
from fastwsgi._parser import BODY_LENGTH, BODY_NONE, Limits, RequestParser
from fastwsgi._uwsgi import parse_packet


def packet(pairs, modifier1=0, modifier2=0):
    data = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in pairs)
    return bytes([modifier1]) + struct.pack("<H", len(data)) + bytes([modifier2]) + data


def nginx_like(method=b"GET", uri=b"/", body=b"", extra=()):
    path, _, query = uri.partition(b"?")
    pairs = [
        (b"QUERY_STRING", query), (b"REQUEST_METHOD", method),
        (b"CONTENT_TYPE", b"text/plain" if body else b""),
        (b"CONTENT_LENGTH", str(len(body)).encode() if body else b""),
        (b"REQUEST_URI", uri), (b"PATH_INFO", path.replace(b"%20", b" ")),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"), (b"REMOTE_ADDR", b"203.0.113.7"),
        (b"REMOTE_PORT", b"51000"), (b"SERVER_PORT", b"80"), (b"SERVER_NAME", b"example.com"),
        (b"HTTP_HOST", b"example.com"), (b"HTTP_USER_AGENT", b"test/1"),
    ]
    pairs.extend(extra)
    return packet(pairs) + body


BASE = {"SCRIPT_NAME": "", "wsgi.url_scheme": "http", "SERVER_NAME": "localhost"}


def parse(data, limits=None, base=BASE, script_name=""):
    parser = RequestParser(limits or Limits(), script_name)
    used = parse_packet(parser, data, base)
    return used, parser


# ---------------------------------------------------------------------- the parser


def test_nginx_packet_becomes_the_environ():
    data = nginx_like(b"POST", b"/a%20b?x=1", body=b"hello")
    used, p = parse(data)
    assert used == len(data) - 5                      # the body stays with the caller
    env = p.environ
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/a b" and env["QUERY_STRING"] == "x=1"
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/a%20b?x=1"
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "80"
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "51000"
    assert env["CONTENT_LENGTH"] == "5" and env["CONTENT_TYPE"] == "text/plain"
    assert env["HTTP_HOST"] == "example.com" and env["HTTP_USER_AGENT"] == "test/1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["wsgi.url_scheme"] == "http"
    assert p.body_kind == BODY_LENGTH and p.content_length == 5 and not p.body_done
    assert not p.keep_alive and not p.http11 and not p.expect_continue and not p.is_head
    assert BASE == {"SCRIPT_NAME": "", "wsgi.url_scheme": "http", "SERVER_NAME": "localhost"}


def test_every_split_needs_more_until_the_last_byte():
    data = nginx_like(b"GET", b"/split?q=1")
    for cut in range(len(data)):
        used, p = parse(data[:cut])
        assert used == 0, cut
    used, p = parse(data + b"trailing junk")
    assert used == len(data) and p.environ["PATH_INFO"] == "/split"


def test_bodyless_request_drops_empty_content_keys():
    used, p = parse(nginx_like(b"HEAD", b"/"))
    assert p.body_kind == BODY_NONE and p.content_length == -1 and p.body_done
    assert "CONTENT_LENGTH" not in p.environ and "CONTENT_TYPE" not in p.environ
    assert p.is_head


def test_http_content_headers_are_dropped_and_repeats_joined():
    used, p = parse(nginx_like(b"POST", b"/", body=b"x", extra=[
        (b"HTTP_CONTENT_LENGTH", b"1"), (b"HTTP_CONTENT_TYPE", b"text/plain"),
        (b"HTTP_COOKIE", b"a=1"), (b"HTTP_COOKIE", b"b=2"),
        (b"HTTP_ACCEPT", b"text/html"), (b"HTTP_ACCEPT", b"*/*"),
    ]))
    env = p.environ
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["HTTP_COOKIE"] == "a=1; b=2" and env["HTTP_ACCEPT"] == "text/html, */*"


def test_a_packet_var_replaces_a_base_key_instead_of_joining():
    base = dict(BASE, HTTP_X_THING="base")
    used, p = parse(packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/"),
                            (b"HTTP_X_THING", b"packet")]), base=base)
    assert p.environ["HTTP_X_THING"] == "packet"


@pytest.mark.parametrize("pairs, scheme", [
    ([(b"HTTPS", b"on")], "https"),
    ([(b"HTTPS", b"off")], "http"),
    ([(b"UWSGI_SCHEME", b"https")], "https"),
    ([(b"HTTPS", b"on"), (b"UWSGI_SCHEME", b"http")], "http"),
])
def test_scheme_from_https_or_uwsgi_scheme(pairs, scheme):
    used, p = parse(nginx_like(extra=pairs))
    assert p.environ["wsgi.url_scheme"] == scheme


def test_script_name_from_the_packet_comes_off_path_info():
    extra = [(b"SCRIPT_NAME", b"/app/")]
    used, p = parse(packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/app/x/y")] + extra))
    assert p.environ["SCRIPT_NAME"] == "/app" and p.environ["PATH_INFO"] == "/x/y"
    used, p = parse(packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/apple")] + extra))
    assert p.environ["SCRIPT_NAME"] == "/app" and p.environ["PATH_INFO"] == "/apple"


def test_root_path_comes_off_path_info_when_the_packet_has_no_script_name():
    used, p = parse(nginx_like(uri=b"/mnt/page"), script_name="/mnt")
    assert p.environ["SCRIPT_NAME"] == "/mnt" and p.environ["PATH_INFO"] == "/page"


def test_path_info_from_request_uri_when_missing():
    used, p = parse(packet([(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/a%2Fb%20c?q")]))
    assert p.environ["PATH_INFO"] == "/a/b c" and p.environ["QUERY_STRING"] == ""
    assert p.environ["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_modifier1_30_is_accepted():
    used, p = parse(packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")], modifier1=30))
    assert used and p.environ["PATH_INFO"] == "/"


GOOD = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]


@pytest.mark.parametrize("data, error", [
    (packet(GOOD, modifier1=5), errors.InvalidRequestLine),
    (packet(GOOD, modifier2=1), errors.InvalidRequestLine),
    (b"\x00\x03\x00\x00\x05\x00A", errors.InvalidHeader),                  # key overruns
    (b"\x00\x05\x00\x00\x01\x00A\x05\x00", errors.InvalidHeader),          # value overruns
    (b"\x00\x01\x00\x00\x01", errors.InvalidHeader),                       # truncated size
    (packet([(b"", b"x")] + GOOD), errors.InvalidHeader),
    (packet([(b"BAD KEY", b"x")] + GOOD), errors.InvalidHeader),
    (packet([(b"wsgi.input", b"x")] + GOOD), errors.InvalidHeader),
    (packet([(b"HTTP_X", b"a\r\nb")] + GOOD), errors.InvalidHeader),
    (packet([(b"PATH_INFO", b"/")]), errors.InvalidRequestLine),           # no method
    (packet([(b"REQUEST_METHOD", b"GET")]), errors.InvalidTarget),         # no path
    (packet([(b"REQUEST_METHOD", b"G T")] + GOOD[1:]), errors.InvalidRequestLine),
    (packet(GOOD + [(b"CONTENT_LENGTH", b"-1")]), errors.InvalidFraming),
    (packet(GOOD + [(b"CONTENT_LENGTH", b"1"), (b"CONTENT_LENGTH", b"1")]), errors.InvalidFraming),
    (packet(GOOD + [(b"CONTENT_LENGTH", b"1" * 19)]), errors.InvalidFraming),
    (packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/a\x00b")]), errors.InvalidTarget),
    (packet(GOOD + [(b"UWSGI_SCHEME", b"ftp")]), errors.InvalidHeader),
    (packet(GOOD + [(b"QUERY_STRING", b"a b")]), errors.InvalidHeader),
])
def test_malformed_packets_are_400(data, error):
    with pytest.raises(error) as info:
        parse(data)
    assert info.value.status_code == 400


def test_limits_match_the_http_ones():
    big = packet(GOOD + [(b"HTTP_X", b"x" * 3000)])
    with pytest.raises(errors.HeadersTooLarge):
        parse(big[:4], Limits(max_header_bytes=2000))     # the 4-byte header is enough
    many = packet(GOOD + [(b"HTTP_X%d" % i, b"1") for i in range(11)])
    with pytest.raises(errors.HeadersTooLarge):
        parse(many, Limits(max_headers=10))
    assert parse(packet(GOOD + [(b"HTTP_X%d" % i, b"1") for i in range(10)]),
                 Limits(max_headers=10))[0]
    with pytest.raises(errors.RequestLineTooLong) as info:
        parse(packet(GOOD + [(b"REQUEST_URI", b"/" + b"a" * 100)]), Limits(max_request_line=50))
    assert info.value.status_code == 414
    with pytest.raises(errors.BodyTooLarge) as info:
        parse(packet(GOOD + [(b"CONTENT_LENGTH", b"1001")]), Limits(max_body=1000))
    assert info.value.status_code == 413


# ----------------------------------------------------------------------- the server


def uwsgi_port(server):
    for address in server.addresses:
        m = re.match(r"(?:uwsgi|http)://127\.0\.0\.1:(\d+)", address)
        if m:
            return int(m.group(1))
    raise AssertionError(server.addresses)


def exchange(port, data, pieces=1, pause=0.0):
    """Send data (in pieces), read until the server closes; (head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
            if pause:
                time.sleep(pause)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.fixture(scope="module")
def uwsgi_server():
    from conftest import ServerProcess
    server = ServerProcess(["--bind", "uwsgi://127.0.0.1:0", "--bind", "127.0.0.1:0",
                            "--limit-request-body", "4M", "--log-level", "debug",
                            "deploy:app"], bind=False)
    yield server
    server.stop()


def test_server_answers_plain_http_and_closes(uwsgi_server):
    body = b"hello uwsgi"
    head, data = exchange(uwsgi_port(uwsgi_server), nginx_like(b"POST", b"/p?q=1", body))
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "Connection: close" in head and f"Content-Length: {len(data)}" in head
    info = json.loads(data)
    assert info["REMOTE_ADDR"] == "203.0.113.7"           # the packet's, not the peer's
    assert info["PATH_INFO"] == "/p" and info["QUERY_STRING"] == "q=1"
    assert info["body_len"] == len(body) and info["CONTENT_LENGTH"] == str(len(body))


def test_server_streams_a_trickled_packet_and_a_large_body(uwsgi_server):
    body = bytes(range(256)) * 8192                        # 2 MiB
    head, data = exchange(uwsgi_port(uwsgi_server), nginx_like(b"PUT", b"/up", body), pieces=64)
    info = json.loads(data)
    assert info["body_len"] == len(body)
    assert info["body_sha"] == hashlib.sha256(body).hexdigest()
    head, data = exchange(uwsgi_port(uwsgi_server), nginx_like(uri=b"/slowhead"), pieces=8,
                          pause=0.01)
    assert json.loads(data)["PATH_INFO"] == "/slowhead"


def test_server_response_without_length_ends_at_close(uwsgi_server):
    head, data = exchange(uwsgi_port(uwsgi_server), nginx_like(uri=b"/big?n=300000"))
    assert "Content-Length: 300000" in head and len(data) == 300000
    head, data = exchange(uwsgi_port(uwsgi_server), nginx_like(b"HEAD", b"/big?n=10"))
    assert "Content-Length: 10" in head and data == b""


def test_server_peer_address_when_the_packet_has_none(uwsgi_server):
    head, data = exchange(uwsgi_port(uwsgi_server),
                          packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/")]))
    assert json.loads(data)["REMOTE_ADDR"] == "127.0.0.1"


def test_server_rejects_malformed_packets_and_logs_them(uwsgi_server):
    head, data = exchange(uwsgi_port(uwsgi_server), packet(GOOD, modifier1=7))
    assert head.startswith("HTTP/1.1 400 ")
    head, data = exchange(uwsgi_port(uwsgi_server),
                          packet(GOOD + [(b"CONTENT_LENGTH", b"99999999")]))
    assert head.startswith("HTTP/1.1 413 ")
    uwsgi_server.wait_for_output(r"modifier1 7")


def test_uwsgi_and_http_listeners_side_by_side(uwsgi_server):
    http_address = uwsgi_server.addresses[1]
    port = int(http_address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200 OK") and b'"PATH_INFO": "/h"' in raw


def test_protocol_flag_applies_to_every_bind(serve):
    server = serve("--protocol", "uwsgi", "deploy:app")
    head, data = exchange(server.port, nginx_like(uri=b"/all"))
    assert json.loads(data)["PATH_INFO"] == "/all"
