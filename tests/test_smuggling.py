"""The request-smuggling matrix: every framing trick that has split a front end and a
back end, at the parser level AND against a real server over raw sockets.

Each case is a request stream and what fastwsgi must make of it:

* REJECT(status, before=N): N complete requests, then an error answered with
  `status`.  Against the server a probe request is pipelined right behind the
  stream; the connection must close after the error response and the probe must
  never reach the application (the app counts calls per key).
* ACCEPT(*bodies): every request is parsed, with exactly these bodies; against
  the server each one gets its own 200 and the probe is served too.

The corpus (tests/corpus) holds one example per rule; this matrix crosses the
obfuscations with the places they hide in (CL.TE, TE.CL, TE.TE, trailers,
pipelines), and every CTL with every part of the head.
"""

import socket
import time
import uuid

import pytest

from conftest import ServerProcess
from fastwsgi._parser import RequestParser
from fastwsgi.errors import HttpParserError


class REJECT:
    def __init__(self, status=400, before=0, xfail=None):
        self.status, self.before, self.xfail = status, before, xfail


class ACCEPT:
    def __init__(self, *bodies, xfail=None):
        self.bodies, self.xfail = list(bodies), xfail


def post(headers, body=b"", method=b"POST", version=b"HTTP/1.1"):
    head = method + b" /echo " + version + b"\r\nHost: h\r\n"
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /count?key=SMUGGLED HTTP/1.1\r\nHost: h\r\n\r\n"
TE = b"Transfer-Encoding: "

CASES = {}


def case(name, raw, expected):
    assert name not in CASES, name
    CASES[name] = (raw, expected)


# --- TE.TE: obfuscated Transfer-Encoding, alone --------------------------------------------
for name, value, exp in [
    ("chunked", b"chunked", ACCEPT(b"hello")),
    ("case-Chunked", b"Chunked", ACCEPT(b"hello")),
    ("case-CHUNKED", b"CHUNKED", ACCEPT(b"hello")),
    ("ows-space", b"   chunked", ACCEPT(b"hello")),
    ("ows-tab", b"\tchunked\t", ACCEPT(b"hello")),
    ("vtab-before", b"\x0bchunked", REJECT(400)),
    ("vtab-after", b"chunked\x0b", REJECT(400)),
    ("formfeed", b"\x0cchunked", REJECT(400)),
    ("nul-inside", b"chu\x00nked", REJECT(400)),
    ("xchunked", b"xchunked", REJECT(501)),
    ("chunkedx", b"chunkedx", REJECT(501)),
    ("chunk", b"chunk", REJECT(501)),
    ("quoted", b'"chunked"', REJECT(501)),
    ("param", b"chunked;q=1", REJECT(501)),
    ("obs-text", b"chunked\xff", REJECT(501)),
    ("chunked-identity", b"chunked, identity", REJECT(400)),
    ("identity-chunked", b"identity, chunked", REJECT(501)),
    ("gzip-chunked", b"gzip, chunked", REJECT(501)),
    ("chunked-chunked", b"chunked, chunked", REJECT(400)),
    ("trailing-comma", b"chunked,", REJECT(400)),
    ("leading-comma", b",chunked", REJECT(400)),
    ("empty", b"", REJECT(400)),
    ("identity", b"identity", REJECT(501)),
]:
    case(f"te-{name}", post([TE + value], CHUNKED), exp)

for name, line, exp in [
    ("name-lowercase", b"transfer-encoding: chunked", ACCEPT(b"hello")),
    ("name-space-before-colon", b"Transfer-Encoding : chunked", REJECT(400)),
    ("name-tab-before-colon", b"Transfer-Encoding\t: chunked", REJECT(400)),
    ("name-vtab", b"Transfer-Encoding\x0b: chunked", REJECT(400)),
    ("name-nul", b"Transfer-Encoding\x00: chunked", REJECT(400)),
    ("name-leading-space", b" Transfer-Encoding: chunked", REJECT(400)),
    ("name-underscore", b"Transfer_Encoding: chunked", REJECT(400, before=1)),  # dropped: body is garbage
    ("no-space-after-colon", b"Transfer-Encoding:chunked", ACCEPT(b"hello")),
]:
    case(f"te-{name}", post([line], CHUNKED), exp)

# repeated Transfer-Encoding field lines, and obs-fold hiding one
case("te-repeated-same", post([TE + b"chunked", TE + b"chunked"], CHUNKED), REJECT(400))
case("te-repeated-identity", post([TE + b"chunked", TE + b"identity"], CHUNKED), REJECT(400))
case("te-repeated-obfuscated", post([TE + b"xchunked", TE + b"chunked"], CHUNKED), REJECT(400))
case("te-obs-fold-value", post([TE + b"\r\n chunked"], CHUNKED), REJECT(400))
case("te-obs-fold-after-other", post([b"X-A: a", b" " + TE + b"chunked"], CHUNKED), REJECT(400))
case("te-http10", post([TE + b"chunked"], CHUNKED, version=b"HTTP/1.0"), REJECT(400))

# --- CL.TE and TE.CL ------------------------------------------------------------------------
for n, te in enumerate((b"chunked", b"Chunked", b" chunked", b"xchunked", b"chunked, identity", b"\x0bchunked")):
    for order in ("cl-te", "te-cl"):
        lines = [b"Content-Length: 6", TE + te]
        if order == "te-cl":
            lines.reverse()
        case(f"{order}-{n}", post(lines, b"0\r\n\r\nG" + SMUGGLED), REJECT(400))
case("cl-te-cl-zero", post([b"Content-Length: 0", TE + b"chunked"], CHUNKED + SMUGGLED), REJECT(400))
case("te-cl-in-second-request",
     post([b"Content-Length: 0"]) + post([TE + b"chunked", b"Content-Length: 3"], CHUNKED), REJECT(400, before=1))

# --- Content-Length: duplicate, signed, malformed --------------------------------------------
for name, lines, exp in [
    ("plain", [b"Content-Length: 5"], ACCEPT(b"hello")),
    ("leading-zeros", [b"Content-Length: 0005"], ACCEPT(b"hello")),
    ("ows", [b"Content-Length: \t5 "], ACCEPT(b"hello")),
    ("duplicate-same", [b"Content-Length: 5", b"Content-Length: 5"], REJECT(400)),
    ("duplicate-different", [b"Content-Length: 5", b"Content-Length: 0"], REJECT(400)),
    ("list-same", [b"Content-Length: 5, 5"], REJECT(400)),
    ("list-different", [b"Content-Length: 5,0"], REJECT(400)),
    ("plus", [b"Content-Length: +5"], REJECT(400)),
    ("minus", [b"Content-Length: -5"], REJECT(400)),
    ("minus-zero", [b"Content-Length: -0"], REJECT(400)),
    ("hex", [b"Content-Length: 0x5"], REJECT(400)),
    ("decimal", [b"Content-Length: 5.0"], REJECT(400)),
    ("exponent", [b"Content-Length: 5e0"], REJECT(400)),
    ("inner-space", [b"Content-Length: 5 5"], REJECT(400)),
    ("empty", [b"Content-Length:"], REJECT(400)),
    ("vtab", [b"Content-Length: 5\x0b"], REJECT(400)),
    ("nul", [b"Content-Length: 5\x00"], REJECT(400)),
    ("fullwidth-digit", [b"Content-Length: \xef\xbc\x95"], REJECT(400)),
    ("19-digits", [b"Content-Length: 0000000000000000005"], REJECT(400)),
    ("wraps-2**64", [b"Content-Length: 18446744073709551621"], REJECT(400)),
    ("wraps-2**32", [b"Content-Length: 4294967301"], REJECT(413)),
    ("over-max-body", [b"Content-Length: 999999999999999999"], REJECT(413)),
    ("space-before-colon", [b"Content-Length : 5"], REJECT(400)),
    ("obs-fold", [b"Content-Length:", b" 5"], REJECT(400)),
]:
    case(f"cl-{name}", post(lines, b"hello"), exp)
# the "_" name is dropped, so the body is read as the next request line
case("cl-underscore-name", post([b"Content_Length: 9"], b"hello\r\n\r\n"), REJECT(400, before=1))
case("cl-shorter-than-body", post([b"Content-Length: 3"], b"helloGET / HTTP/1.1\r\n\r\n"), REJECT(400, before=1))
case("cl-body-is-a-request", post([b"Content-Length: %d" % len(SMUGGLED)], SMUGGLED), ACCEPT(SMUGGLED))

# --- line endings, obs-fold, CTLs ------------------------------------------------------------
for name, raw in [
    ("bare-lf-request-line", b"GET /echo HTTP/1.1\nHost: h\r\n\r\n"),
    ("bare-lf-header", b"GET /echo HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n"),
    ("bare-lf-final", b"GET /echo HTTP/1.1\r\nHost: h\r\n\n"),
    ("bare-lf-everywhere", b"GET /echo HTTP/1.1\nHost: h\n\n"),
    ("bare-cr-request-line", b"GET /echo HTTP/1.1\rHost: h\r\n\r\n"),
    ("bare-cr-header", b"GET /echo HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n"),
    ("bare-cr-final", b"GET /echo HTTP/1.1\r\nHost: h\r\n\r"),
    ("cr-cr-lf", b"GET /echo HTTP/1.1\r\nHost: h\r\r\n\r\n"),
    ("lf-cr", b"GET /echo HTTP/1.1\r\nHost: h\n\r\n"),
    ("obs-fold-space", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"),
    ("obs-fold-tab", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"),
    ("obs-fold-host", b"GET /echo HTTP/1.1\r\nHost:\r\n h\r\n\r\n"),
    ("first-line-indented", b"GET /echo HTTP/1.1\r\n Host: h\r\n\r\n"),
]:
    # "bare-cr-final" never completes a line: it is judged once "X" CRLF CRLF follows
    case(f"eol-{name}", raw, REJECT(400))

CTLS = [c for c in range(32) if c not in (9,)] + [127]
for c in CTLS:
    b = bytes([c])
    case(f"ctl-{c:02x}-header-value", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: a" + b + b"b\r\n\r\n", REJECT(400))
    case(f"ctl-{c:02x}-header-name", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A" + b + b": b\r\n\r\n", REJECT(400))
    case(f"ctl-{c:02x}-target", b"GET /echo" + b + b"x HTTP/1.1\r\nHost: h\r\n\r\n", REJECT(400))
    case(f"ctl-{c:02x}-method", b"GE" + b + b"T /echo HTTP/1.1\r\nHost: h\r\n\r\n", REJECT(400))
case("ctl-09-header-name", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A\t: b\r\n\r\n", REJECT(400))
case("ctl-09-target", b"GET /echo\tx HTTP/1.1\r\nHost: h\r\n\r\n", REJECT(400))
case("ctl-09-separator", b"GET\t/echo HTTP/1.1\r\nHost: h\r\n\r\n", REJECT(400))
case("ctl-09-header-value-ok", b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: a\tb\r\n\r\n", ACCEPT(b""))

# --- chunk sizes, extensions, trailers ------------------------------------------------------
for name, body, exp in [
    ("size-uppercase", b"A\r\n0123456789\r\n0\r\n\r\n", ACCEPT(b"0123456789")),
    ("size-leading-zeros", b"0005\r\nhello\r\n0000\r\n\r\n", ACCEPT(b"hello")),
    ("size-empty", b"\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-not-hex", b"5g\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-negative", b"-5\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-plus", b"+5\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-0x", b"0x5\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-leading-space", b" 5\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-trailing-space", b"5 \r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-trailing-tab", b"5\t\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-16-digits", b"0000000000000005\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-wraps-2**64", b"10000000000000005\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-huge", b"fffffffffffffff\r\nhello\r\n0\r\n\r\n", REJECT(413)),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("size-bare-cr", b"5\rhello\r\n0\r\n\r\n", REJECT(400)),
    ("data-too-long", b"3\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("data-too-short", b"7\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("data-bare-lf", b"5\r\nhello\n0\r\n\r\n", REJECT(400)),
    ("data-no-crlf", b"5\r\nhello0\r\n\r\n", REJECT(400)),
    ("last-chunk-bare-lf", b"5\r\nhello\r\n0\n\r\n", REJECT(400)),
    ("final-bare-lf", b"5\r\nhello\r\n0\r\n\n", REJECT(400)),
    ("ext-token", b"5;name=value\r\nhello\r\n0;x\r\n\r\n", ACCEPT(b"hello")),
    ("ext-quoted", b'5;name="a b;c"\r\nhello\r\n0\r\n\r\n', ACCEPT(b"hello")),
    ("ext-nul", b"5;a\x00\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("ext-bare-lf", b"5;a\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("ext-obs-text", b"5;a=\xff\r\nhello\r\n0\r\n\r\n", REJECT(400)),
    ("ext-bws-before-semicolon", b"5 ;a\r\nhello\r\n0\r\n\r\n", ACCEPT(b"hello")),  # RFC 9110 §5.6.3 BWS
    # RFC 9112 §7.1.1: chunk-ext-name is a token, chunk-ext-val a token or quoted-string
    ("ext-empty-name", b"5;\r\nhello\r\n0\r\n\r\n",
     REJECT(400)),
    ("ext-space-in-name", b"5;a b\r\nhello\r\n0\r\n\r\n",
     REJECT(400)),
    ("ext-space-in-value", b"5;a=b c\r\nhello\r\n0\r\n\r\n",
     REJECT(400)),
    ("ext-unterminated-quote", b'5;a="b\r\nhello\r\n0\r\n\r\n',
     REJECT(400)),
    ("trailer", b"5\r\nhello\r\n0\r\nX-T: v\r\n\r\n", ACCEPT(b"hello")),
    ("trailer-space-before-colon", b"5\r\nhello\r\n0\r\nX-T : v\r\n\r\n", REJECT(400)),
    ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX-T: v\r\n w\r\n\r\n", REJECT(400)),
    ("trailer-ctl", b"5\r\nhello\r\n0\r\nX-T: \x01\r\n\r\n", REJECT(400)),
    ("trailer-no-colon", b"5\r\nhello\r\n0\r\nX-T\r\n\r\n", REJECT(400)),
    # RFC 9110 §6.5.1: framing fields have no meaning in a trailer; httptools and h11
    # both reject a Transfer-Encoding there (fuzz/findings.md)
    ("trailer-content-length", b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
     REJECT(400)),
    ("trailer-transfer-encoding", b"5\r\nhello\r\n0\r\nTransfer-Encoding: x\r\n\r\n",
     REJECT(400)),
    ("missing-last-chunk-then-request", b"5\r\nhello\r\n0\r\n" + SMUGGLED, REJECT(400)),
]:
    case(f"chunk-{name}", post([TE + b"chunked"], body), exp)

# --- pipelines: a request after a rejected one, after Connection: close ---------------------
GOOD = b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n"
case("pipe-good-then-bad-version", GOOD + b"GET /echo HTTP/2.0\r\nHost: h\r\n\r\n", REJECT(505, before=1))
case("pipe-good-then-http12", GOOD + b"GET /echo HTTP/1.2\r\nHost: h\r\n\r\n", ACCEPT(b"", b""))
case("pipe-good-then-cl-te", GOOD + post([b"Content-Length: 4", TE + b"chunked"], CHUNKED), REJECT(400, before=1))
case("pipe-chunked-then-garbage", post([TE + b"chunked"], CHUNKED + b"XGET / HTTP/1.1\r\n\r\n"),
     REJECT(400, before=1))
case("pipe-three-good", GOOD + post([b"Content-Length: 5"], b"hello") + post([TE + b"chunked"], CHUNKED),
     ACCEPT(b"", b"hello", b"hello"))
case("pipe-leading-empty-lines", GOOD + b"\r\n\r\n" + GOOD, ACCEPT(b"", b""))
case("pipe-three-empty-lines", GOOD + b"\r\n\r\n\r\n" + GOOD, REJECT(400, before=1))

# --- request-target forms -------------------------------------------------------------------
for name, target, exp in [
    ("absolute-http", b"http://other.example/echo", ACCEPT(b"")),
    ("absolute-https-port", b"https://other.example:8443/echo?q", ACCEPT(b"")),
    ("absolute-uppercase-scheme", b"HTTP://other.example/echo", ACCEPT(b"")),
    ("absolute-ipv6", b"http://[::1]:80/echo", ACCEPT(b"")),
    ("absolute-userinfo", b"http://user@other.example/echo", REJECT(400)),
    ("absolute-empty-host", b"http:///echo", REJECT(400)),
    ("absolute-bad-port", b"http://other.example:8x/echo", REJECT(400)),
    ("absolute-backslash", b"http://other.example\\@evil/echo", REJECT(400)),
    ("absolute-ftp", b"ftp://other.example/echo", REJECT(400)),
    ("authority-form", b"other.example:80", REJECT(400)),
    ("fragment", b"/echo#frag", REJECT(400)),
    ("relative", b"echo", REJECT(400)),
    ("space-inside", b"/ec ho", REJECT(400)),
    ("non-ascii", b"/\xc3\xa9", REJECT(400)),
    ("bad-pct", b"/%zz", REJECT(400)),
]:
    case(f"target-{name}", b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n", exp)
case("target-connect", b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", REJECT(400))
case("target-asterisk-get", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", REJECT(400))


# --- parser level -----------------------------------------------------------------------------


def parse(pieces):
    """(complete bodies, keep_alive of each, error or None) for a fed stream."""
    p = RequestParser()
    bodies, keep, cur, error = [], [], None, None
    try:
        for piece in pieces:
            p.feed(piece)
            while True:
                ev = p.next_event()
                if ev is None:
                    break
                if ev[0] == "request":
                    cur = b""
                elif ev[0] == "data":
                    cur += ev[1]
                else:
                    bodies.append(cur)
                    keep.append(p.keep_alive)
                    cur = None
    except HttpParserError as exc:
        error = exc
    return bodies, keep, error


def _params():
    out = []
    for name, (raw, exp) in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=exp.xfail)] if exp.xfail else []
        out.append(pytest.param(raw, exp, id=name, marks=marks))
    return out


PARAMS = _params()


def _check_parse(raw, exp, pieces):
    bodies, _, error = parse(pieces)
    if isinstance(exp, ACCEPT):
        assert error is None, f"rejected: {error!r}"
        assert bodies == exp.bodies
    else:
        if error is None and raw.endswith(b"\r"):
            bodies, _, error = parse(pieces + [b"X\r\n\r\n"])  # a final CR is judged with its line
        assert error is not None, f"accepted; bodies {bodies!r}"
        assert error.status_code == exp.status, repr(error)
        assert len(bodies) == exp.before, f"{len(bodies)} requests before the error"


@pytest.mark.parametrize("raw,exp", PARAMS)
def test_parser_whole(raw, exp):
    _check_parse(raw, exp, [raw])


@pytest.mark.parametrize("raw,exp", PARAMS)
def test_parser_bytewise(raw, exp):
    _check_parse(raw, exp, [raw[i:i + 1] for i in range(len(raw))])


def test_matrix_is_large():
    assert len(CASES) >= 250


def test_parser_after_connection_close_reports_it():
    close = b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    bodies, keep, error = parse([close + GOOD])
    assert error is None and keep[0] is False  # the server stops reading here


def test_parser_http10_default_close():
    bodies, keep, _ = parse([b"GET /echo HTTP/1.0\r\n\r\n" + GOOD])
    assert keep[0] is False


# --- against a real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["hostile:app", "--keep-alive", "5"])
    yield srv
    srv.stop()


def exchange(srv, data, timeout=5.0):
    """Send `data` (then half-close), read until the server closes; the raw bytes back."""
    s = socket.create_connection((srv.host, srv.port), timeout=timeout)
    try:
        s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            chunks.append(got)
        else:
            raise AssertionError("server did not close the connection")
        return b"".join(chunks)
    finally:
        s.close()


def statuses(raw):
    """Status codes of the responses in a raw byte stream (bodies are short and not HTTP)."""
    out = []
    for part in raw.split(b"HTTP/1.1 ")[1:]:
        out.append(int(part[:3]))
    return out


def counted(srv, key):
    raw = exchange(srv, b"GET /counted?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    return int(raw.rpartition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("raw,exp", PARAMS)
def test_server(server, raw, exp):
    key = uuid.uuid4().hex
    probe = b"GET /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    data = raw + (b"X\r\n\r\n" if raw.endswith(b"\r") else b"") + probe
    answer = exchange(server, data)
    got = statuses(answer)
    if isinstance(exp, ACCEPT):
        assert got == [200] * (len(exp.bodies) + 1), answer[:500]
        assert counted(server, key) == 1
        for body in exp.bodies:
            assert b"%d:" % len(body) + body in answer
    else:
        assert got == [200] * exp.before + [exp.status], answer[:500]
        head = answer.split(b"HTTP/1.1 ")[-1]
        assert b"\r\nconnection: close\r\n" in head.lower()
        assert counted(server, key) == 0, "the request behind a rejected one reached the app"
    assert counted(server, "SMUGGLED") == 0, "a smuggled request reached the app"


def test_server_stops_reading_after_connection_close(server):
    key = uuid.uuid4().hex
    first = b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    answer = exchange(server, first + b"GET /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert statuses(answer) == [200]
    assert counted(server, key) == 0


def test_server_stops_reading_after_http10(server):
    key = uuid.uuid4().hex
    answer = exchange(server, b"GET /echo HTTP/1.0\r\n\r\nGET /count?key=" + key.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert answer.startswith(b"HTTP/1.")
    assert answer.count(b" 200 ") == 1
    assert counted(server, key) == 0


def test_absolute_form_host_wins(server):
    answer = exchange(server, b"GET http://real.example/echo HTTP/1.1\r\nHost: spoofed\r\nConnection: close\r\n\r\n")
    assert b"GET /echo real.example 0:" in answer
