"""Unit tests of fastwsgi._parser through its Python-level API.

Each rule of the parser has at least one request it accepts and one it rejects
(with the exception class, hence the status).  Every valid message is also fed
whole, one byte at a time and in odd-sized pieces, and must give the same
events; bytes after a message must stay buffered untouched (as h11's tests do).
"""

import pytest

from fastwsgi import errors
from fastwsgi._parser import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, Limits, RequestParser


# -- helpers -----------------------------------------------------------------


def run(data, step=None, base=None, parser=None, **kw):
    """Feed `data` (whole, or `step` bytes at a time); return (messages, parser).

    messages: [(environ, body_bytes, complete)], complete False when the last
    message is still waiting for bytes."""
    p = parser or RequestParser(**kw)
    step = step or max(len(data), 1)
    messages = []
    for i in range(0, max(len(data), 1), step):
        p.feed(data[i:i + step])
        while True:
            ev = p.next_event(base)
            if ev is None:
                break
            kind, value = ev
            if kind == "request":
                messages.append([value, b"", False])
            elif kind == "data":
                assert value, "data events are never empty"
                messages[-1][1] += value
            else:
                assert kind == "end" and value is None
                messages[-1][2] = True
    return [tuple(m) for m in messages], p


def one(data, **kw):
    """The environ of a single complete message with no body."""
    messages, p = run(data, **kw)
    assert len(messages) == 1 and messages[0][2]
    return messages[0][0]


def req(*fields, line=b"GET / HTTP/1.1", host=b"example.com", body=b""):
    """A request head: `line`, a Host field (unless host=None), `fields`."""
    lines = [line]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += list(fields)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def rejects(exc, data, **kw):
    with pytest.raises(exc) as info:
        run(data, **kw)
    assert info.type is exc, f"{info.type.__name__} raised, {exc.__name__} expected"
    return info.value


SPLITS = [None, 1, 2, 3, 7]


# -- API ---------------------------------------------------------------------


def test_limits_defaults_and_keywords():
    lim = Limits()
    assert (lim.max_request_line, lim.max_header_bytes, lim.max_headers) == (8190, 65536, 100)
    assert (lim.max_body, lim.max_chunk_line, lim.max_trailer_bytes) == (1073741824, 4096, 8192)
    lim = Limits(max_headers=5, max_body=0)
    assert lim.max_headers == 5 and lim.max_body == 0 and lim.max_request_line == 8190
    assert "max_headers=5" in repr(lim)
    with pytest.raises(ValueError):
        Limits(max_headers=-1)
    with pytest.raises(TypeError):
        Limits(5)


def test_minimal_get_environ_is_exact():
    env = one(b"GET /hello?a=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert env == {
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "RAW_URI": "/hello?a=1",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "a=1",
        "SCRIPT_NAME": "",
        "HTTP_HOST": "example.com",
    }
    assert all(type(v) is str for v in env.values())


def test_base_is_copied_not_mutated():
    base = {"wsgi.url_scheme": "http", "SERVER_NAME": "srv"}
    env = one(req(), base=base)
    assert env["wsgi.url_scheme"] == "http" and env["SERVER_NAME"] == "srv"
    assert base == {"wsgi.url_scheme": "http", "SERVER_NAME": "srv"}
    assert env is not base


def test_base_request_key_is_replaced_not_joined():
    env = one(req(b"X-A: new"), base={"HTTP_X_A": "stale"})
    assert env["HTTP_X_A"] == "new"


def test_parser_sets_no_server_keys():
    env = one(req())
    for key in ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT", "wsgi.input"):
        assert key not in env


def test_incomplete_head_returns_none_and_keeps_bytes():
    p = RequestParser()
    assert p.next_event() is None
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert p.next_event() is None
    assert p.buffered() == b"GET / HTTP/1.1\r\nHost: a\r\n"
    p.feed(b"\r")
    assert p.next_event() is None
    p.feed(b"\nrest")
    kind, env = p.next_event()
    assert kind == "request" and env["HTTP_HOST"] == "a"
    assert p.next_event() == ("end", None)
    assert p.buffered() == b"rest"


def test_no_body_gives_end_right_after_request():
    p = RequestParser()
    p.feed(req())
    assert p.next_event()[0] == "request"
    assert p.body_kind == BODY_NONE and p.content_length == -1
    assert p.next_event() == ("end", None)
    assert p.next_event() is None


@pytest.mark.parametrize("step", SPLITS)
def test_pipelined_requests_and_trailing_bytes(step):
    data = (
        req(line=b"GET /1 HTTP/1.1")
        + req(b"Content-Length: 5", line=b"POST /2 HTTP/1.1", body=b"hello")
        + req(b"Transfer-Encoding: chunked", line=b"PUT /3 HTTP/1.1",
              body=b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n")
        + b"\r\nGET /4 HTTP/1.0\r\n\r\n"          # an empty line before a request is skipped
        + b"GET /5 HTTP/1.1\r\nHo"                  # incomplete: stays buffered
    )
    messages, p = run(data, step=step)
    assert [(m[0]["PATH_INFO"], m[1], m[2]) for m in messages] == [
        ("/1", b"", True), ("/2", b"hello", True), ("/3", b"abcde", True), ("/4", b"", True),
    ]
    assert p.buffered() == b"GET /5 HTTP/1.1\r\nHo"


def test_body_data_stops_at_content_length():
    p = RequestParser()
    p.feed(req(b"Content-Length: 3", line=b"POST / HTTP/1.1", body=b"abcGET"))
    assert p.next_event()[0] == "request"
    assert p.body_kind == BODY_LENGTH and p.content_length == 3
    assert p.next_event() == ("data", b"abc")
    assert p.next_event() == ("end", None)
    assert p.buffered() == b"GET"


def test_body_arrives_in_pieces():
    p = RequestParser()
    p.feed(req(b"Content-Length: 6", line=b"POST / HTTP/1.1"))
    assert p.next_event()[0] == "request"
    assert p.next_event() is None
    p.feed(b"ab")
    assert p.next_event() == ("data", b"ab")
    assert p.next_event() is None
    p.feed(b"cdef")
    assert p.next_event() == ("data", b"cdef")
    assert p.next_event() == ("end", None)


def test_error_is_sticky():
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    with pytest.raises(errors.InvalidHeader) as first:
        p.next_event()
    p.feed(req())
    with pytest.raises(errors.InvalidHeader) as again:
        p.next_event()
    assert again.value is first.value


def test_errors_carry_status_and_message():
    exc = rejects(errors.InvalidFraming, req(b"Content-Length: 1", b"Transfer-Encoding: chunked"))
    assert exc.status_code == 400 and "Transfer-Encoding" in str(exc)
    assert isinstance(exc, errors.HttpParserError)


def test_attributes_after_head():
    p = RequestParser()
    p.feed(req(b"Expect: 100-continue", b"Content-Length: 10", line=b"HEAD / HTTP/1.1"))
    p.next_event()
    assert (p.keep_alive, p.expect_continue, p.http11, p.is_head) == (True, True, True, True)
    assert (p.body_kind, p.content_length) == (BODY_LENGTH, 10)
    p = RequestParser()
    p.feed(b"GET / HTTP/1.0\r\n\r\n")
    p.next_event()
    assert (p.keep_alive, p.expect_continue, p.http11, p.is_head) == (False, False, False, False)


# -- limits ------------------------------------------------------------------


def test_request_line_limit():
    line = b"GET /" + b"a" * 10 + b" HTTP/1.1"          # 24 bytes
    assert one(req(line=line), limits=Limits(max_request_line=24))["PATH_INFO"] == "/" + "a" * 10
    rejects(errors.RequestLineTooLong, req(line=line), limits=Limits(max_request_line=23))


def test_request_line_limit_fires_before_crlf_arrives():
    p = RequestParser(limits=Limits(max_request_line=20))
    p.feed(b"GET /" + b"a" * 15)                          # exactly 20: may still be fine
    assert p.next_event() is None
    p.feed(b"\r")                                         # the CR of the CRLF does not count
    assert p.next_event() is None
    p = RequestParser(limits=Limits(max_request_line=20))
    p.feed(b"GET /" + b"a" * 16)
    with pytest.raises(errors.RequestLineTooLong):
        p.next_event()


def test_header_bytes_limit():
    data = req(b"X-A: 1")                  # the whole head, final CRLF included
    assert one(data, limits=Limits(max_header_bytes=len(data)))["HTTP_X_A"] == "1"
    rejects(errors.HeadersTooLarge, data, limits=Limits(max_header_bytes=len(data) - 1))
    # leading empty lines are not part of the head
    assert one(b"\r\n\r\n" + data, limits=Limits(max_header_bytes=len(data)))


def test_header_bytes_limit_fires_on_incomplete_head():
    p = RequestParser(limits=Limits(max_header_bytes=100))
    p.feed(b"GET / HTTP/1.1\r\nX-A: " + b"a" * 200)
    with pytest.raises(errors.HeadersTooLarge):
        p.next_event()


def test_header_count_limit_counts_dropped_fields():
    fields = [b"X-%d: v" % i for i in range(3)]     # + Host = 4 field lines
    assert one(req(*fields), limits=Limits(max_headers=4))
    rejects(errors.HeadersTooLarge, req(*fields), limits=Limits(max_headers=3))
    rejects(errors.HeadersTooLarge, req(b"X_Dropped: 1", *fields), limits=Limits(max_headers=4))


def test_max_body_content_length():
    head = req(b"Content-Length: 10", line=b"POST / HTTP/1.1", body=b"0123456789")
    assert run(head, limits=Limits(max_body=10))[0][0][1] == b"0123456789"
    rejects(errors.BodyTooLarge, head, limits=Limits(max_body=9))
    big = req(b"Content-Length: 999999999999999999", line=b"POST / HTTP/1.1")
    rejects(errors.BodyTooLarge, big)
    messages, p = run(big, limits=Limits(max_body=0))           # 0 = unlimited
    assert p.content_length == 999999999999999999 and not messages[0][2]


def test_max_body_chunked():
    data = req(b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1",
               body=b"5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n")
    assert run(data, limits=Limits(max_body=10))[0][0][1] == b"abcdefghij"
    rejects(errors.BodyTooLarge, data, limits=Limits(max_body=9))
    # a huge chunk-size is refused at its size line, before any data
    rejects(errors.BodyTooLarge, req(b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1",
                                     body=b"fffffffffffffff\r\n"))


def chunked(body, **kw):
    return req(b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1", body=body, **kw)


@pytest.mark.parametrize("ext", [
    b";a", b";a=b", b' ; a = "b c"', b';a="q\\"uote"', b";a;b=1;c", b"\t;a\t=\t1",
    b";a=" + b"!#$%&'*+-.^_`|~09AZaz",
])
def test_chunk_ext_grammar_accepts(ext):
    # RFC 9112 §7.1.1: *( BWS ";" BWS name [ BWS "=" BWS token / quoted-string ] )
    body = b"5" + ext + b"\r\nhello\r\n0\r\n\r\n"
    for step in SPLITS:
        assert run(chunked(body), step=step)[0][0][1] == b"hello"


@pytest.mark.parametrize("ext", [
    b";", b";=", b";=1", b";a ", b";a=b ", b";a b", b";a=b c", b";a=", b';a="open',
    b";a\t", b";a=\x7f", b";a=<b>", b';a="x\x00"', b";a;", b"; ;a",
])
def test_chunk_ext_grammar_rejects(ext):
    rejects(errors.InvalidChunk, chunked(b"5" + ext + b"\r\nhello\r\n0\r\n\r\n"))


@pytest.mark.parametrize("name", [
    b"Content-Length", b"transfer-encoding", b"Host", b"Trailer", b"Connection",
    b"TE", b"Expect", b"Content-Type", b"Upgrade",
])
def test_framing_fields_in_trailer_are_rejected(name):
    # RFC 9110 §6.5.1: fields needed before the content cannot come in a trailer
    rejects(errors.InvalidHeader, chunked(b"0\r\n" + name + b": 5\r\n\r\n"))


def test_other_trailer_fields_are_dropped():
    messages, _ = run(chunked(b"1\r\nx\r\n0\r\nX-Checksum: abc\r\nExpires: 0\r\n\r\n"))
    env, body, complete = messages[0]
    assert (body, complete) == (b"x", True) and "HTTP_X_CHECKSUM" not in env


def test_max_chunk_line():
    ext = b";" + b"e" * 19                            # size line "1" + ext = 21 bytes
    assert run(chunked(b"1" + ext + b"\r\nx\r\n0\r\n\r\n"),
               limits=Limits(max_chunk_line=21))[0][0][1] == b"x"
    rejects(errors.InvalidChunk, chunked(b"1" + ext + b"\r\nx\r\n0\r\n\r\n"),
            limits=Limits(max_chunk_line=20))


def test_endless_chunk_line_is_an_error_not_a_stall():
    p = RequestParser(limits=Limits(max_chunk_line=50))
    p.feed(chunked(b"1;"))
    assert p.next_event()[0] == "request"
    for _ in range(48):
        p.feed(b"a")
        assert p.next_event() is None
    p.feed(b"a")
    with pytest.raises(errors.InvalidChunk):
        p.next_event()


def test_trailer_limit():
    trailer = b"X-T: 12345\r\n"                     # 12 bytes
    data = chunked(b"0\r\n" + trailer + trailer + b"\r\n")
    assert run(data, limits=Limits(max_trailer_bytes=24))[0][0][2]
    rejects(errors.HeadersTooLarge, data, limits=Limits(max_trailer_bytes=23))
    # 0: no trailer field allowed, the empty trailer section still is
    assert run(chunked(b"0\r\n\r\n"), limits=Limits(max_trailer_bytes=0))[0][0][2]
    rejects(errors.HeadersTooLarge, chunked(b"0\r\nX: 1\r\n\r\n"), limits=Limits(max_trailer_bytes=0))


def test_endless_trailer_line_is_an_error():
    p = RequestParser(limits=Limits(max_trailer_bytes=30))
    p.feed(chunked(b"0\r\nX: "))
    p.next_event()
    assert p.next_event() is None
    p.feed(b"a" * 40)
    with pytest.raises(errors.HeadersTooLarge):
        p.next_event()


# -- request line ------------------------------------------------------------


def test_leading_empty_lines():
    messages, p = run(b"\r\n\r\n" + req())
    assert messages[0][2] and messages[0][0]["REQUEST_METHOD"] == "GET"
    rejects(errors.InvalidRequestLine, b"\r\n\r\n\r\n" + req())
    rejects(errors.InvalidRequestLine, b"\n" + req())


@pytest.mark.parametrize("method", [b"GET", b"M-SEARCH", b"get", b"PROPFIND", b"X!#$%&'*+.^_`|~9"])
def test_method_token(method):
    env = one(req(line=method + b" / HTTP/1.1"))
    assert env["REQUEST_METHOD"] == method.decode()


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
def test_known_methods(method):
    target = b"*" if method == b"OPTIONS" else b"/"
    assert one(req(line=method + b" " + target + b" HTTP/1.1"))["REQUEST_METHOD"] == method.decode()


@pytest.mark.parametrize("line", [
    b" / HTTP/1.1",                 # empty method
    b"G(T / HTTP/1.1",              # "(" is not a tchar
    b"GET\t/ HTTP/1.1",             # HTAB is not SP
    b"GET  / HTTP/1.1",             # two SP after the method
    b"GET /  HTTP/1.1",             # two SP before the version
    b"GET / HTTP/1.1 ",             # trailing SP
    b"GET / HTTP/1.1x",             # trailing junk
    b"GET /",                       # HTTP/0.9: no version
    b"GET / http/1.1",              # HTTP-name is case-sensitive
    b"GET / HTTP/1.10",
    b"GET / HTTP/1",
    b"GET / HTTP/1.x",
    b"GET / HTTPS/1.1",
    b"GET",
    b"GET / HTTP/1.1\rX",           # bare CR
])
def test_invalid_request_line(line):
    rejects(errors.InvalidRequestLine, line + b"\r\nHost: a\r\n\r\n")


def test_bare_lf_in_request_line():
    rejects(errors.InvalidRequestLine, b"GET / HTTP/1.1\nHost: a\r\n\r\n")


@pytest.mark.parametrize("data, exc", [
    (b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
    (b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
    (b"GET / HTTP/1.1\r\nHost: a\rX-A: 1\r\n\r\n", errors.InvalidHeader),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", errors.InvalidHeader),
])
def test_bare_cr(data, exc):
    rejects(exc, data)
    rejects(exc, data, step=1)


def test_bare_cr_is_rejected_before_any_lf_arrives():
    # RFC 9112 §2.2: a CR not followed by LF is invalid at once; waiting for
    # a LF (or a limit) would only stall the connection
    for data, exc in ((b"GET / HTTP/1.1\rHost: a\r\r", errors.InvalidRequestLine),
                      (b"GET / HTTP/1.1\r\nHost: a\rX", errors.InvalidHeader)):
        p = RequestParser()
        p.feed(data)
        with pytest.raises(exc):
            p.next_event()
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r")          # a final CR may still be a CRLF
    assert p.next_event() is None


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0", b"HTTP/9.1"])
def test_unsupported_version(version):
    assert rejects(errors.UnsupportedVersion, req(line=b"GET / " + version)).status_code == 505


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_higher_minor_version_is_served_as_http11(version):
    # RFC 9110 §2.5: processed as the highest minor version we implement
    env = one(req(line=b"GET / " + version))
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_http10():
    env = one(b"GET / HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0" and "HTTP_HOST" not in env


@pytest.mark.parametrize("target", [
    b"/a\x00b", b"/a\x7fb", b"/a\x80b", b"/\xc3\xa9", b"/a\tb", b"/a\x1bb",
    b"/a#frag", b"#", b"/a?b#c",
    b"foo/bar", b"example.com:443", b"ftp://example.com/", b"?x", b"a",
])
def test_invalid_target(target):
    rejects(errors.InvalidTarget, req(line=b"GET " + target + b" HTTP/1.1"))


@pytest.mark.parametrize("target", [b"/", b"//", b"/a/./b/../c", b"/~user/!$&'()*+,;=:@-._", b"/%00"])
def test_origin_form(target):
    assert one(req(line=b"GET " + target + b" HTTP/1.1"))["RAW_URI"] == target.decode()


def test_connect_authority_form_rejected():
    rejects(errors.InvalidTarget, req(line=b"CONNECT example.com:443 HTTP/1.1"))


def test_asterisk_form():
    env = one(req(line=b"OPTIONS * HTTP/1.1"))
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["RAW_URI"]) == ("*", "", "*")
    rejects(errors.InvalidTarget, req(line=b"GET * HTTP/1.1"))
    rejects(errors.InvalidTarget, req(line=b"OPTIONS *x HTTP/1.1"))


@pytest.mark.parametrize("target, host, path, query", [
    (b"http://example.org/a/b?c=d", "example.org", "/a/b", "c=d"),
    (b"HTTPS://Example.org:8443", "Example.org:8443", "/", ""),
    (b"http://example.org?x", "example.org", "/", "x"),
    (b"http://[::1]:80/%41", "[::1]:80", "/A", ""),
])
def test_absolute_form(target, host, path, query):
    env = one(req(line=b"GET " + target + b" HTTP/1.1", host=b"ignored.example"))
    assert (env["HTTP_HOST"], env["PATH_INFO"], env["QUERY_STRING"]) == (host, path, query)
    assert env["RAW_URI"] == target.decode()


@pytest.mark.parametrize("target", [
    b"http://", b"http:///path", b"http://user@host/", b"http://h\\x/", b"http://h<x/",
    b"http://host:port/", b"httpx://host/", b"http:/host/", b"http:", b"https:/",
])
def test_absolute_form_invalid(target):
    rejects(errors.InvalidTarget, req(line=b"GET " + target + b" HTTP/1.1"))


def test_absolute_form_still_needs_host_on_11():
    rejects(errors.InvalidHeader, req(line=b"GET http://example.org/ HTTP/1.1", host=None))
    assert one(b"GET http://example.org/ HTTP/1.0\r\n\r\n")["HTTP_HOST"] == "example.org"


# -- environ: path, query, script name ----------------------------------------


@pytest.mark.parametrize("target, path, query", [
    (b"/", "/", ""),
    (b"/a%20b", "/a b", ""),
    (b"/a%2Fb%2fc", "/a/b/c", ""),
    (b"/caf%C3%A9", "/caf\xc3\xa9", ""),          # PEP 3333: bytes, latin-1 decoded
    (b"/%e9", "/\xe9", ""),
    (b"/p?", "/p", ""),
    (b"/p?a=%zz&b=%20?c", "/p", "a=%zz&b=%20?c"),  # the query is not decoded nor checked
    (b"/" + b"%41" * 300, "/" + "A" * 300, ""),    # longer than the stack buffer
])
def test_path_and_query(target, path, query):
    env = one(req(line=b"GET " + target + b" HTTP/1.1"))
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["RAW_URI"]) == (path, query, target.decode())


@pytest.mark.parametrize("target", [b"/%", b"/a%4", b"/a%zz", b"/a%4g?x", b"/%%41", b"/" + b"a" * 600 + b"%"])
def test_invalid_percent_escape(target):
    rejects(errors.InvalidTarget, req(line=b"GET " + target + b" HTTP/1.1"))


@pytest.mark.parametrize("target, script, path", [
    (b"/app", "/app", ""),
    (b"/app/", "/app", "/"),
    (b"/app/x?q=1", "/app", "/x"),
    (b"/app%2Fx", "/app", "/x"),      # matched on the decoded path
    (b"/apple", "/app", "/apple"),
    (b"/other", "/app", "/other"),
    (b"/x", "", "/x"),
])
def test_script_name(target, script, path):
    env = one(req(line=b"GET " + target + b" HTTP/1.1"), script_name=script)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, path)


def test_script_name_not_applied_to_asterisk():
    env = one(req(line=b"OPTIONS * HTTP/1.1"), script_name="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "*")


# -- field lines ---------------------------------------------------------------


def test_header_environ_keys():
    env = one(req(
        b"Content-Type: text/plain",
        b"content-length: 0",
        b"ACCEPT-Encoding: gzip",
        b"X-Custom-Thing: 1",
        b"x-custom-thing: 2",
        b"Sec-Fetch-Mode: navigate",
        b"X-" + b"L" * 200 + b": long",         # longer than the stack key buffer
    ))
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_ACCEPT_ENCODING"] == "gzip"
    assert env["HTTP_X_CUSTOM_THING"] == "1, 2"
    assert env["HTTP_SEC_FETCH_MODE"] == "navigate"
    assert env["HTTP_X_" + "L" * 200] == "long"


def test_content_type_and_length_absent_when_not_sent():
    env = one(req())
    assert "CONTENT_TYPE" not in env and "CONTENT_LENGTH" not in env


def test_many_distinct_unknown_names_map_correctly():
    # more names than the key cache has slots: collisions must not mix keys
    fields = [b"X-N%d: %d" % (i, i) for i in range(600)]
    env = one(req(*fields), limits=Limits(max_headers=1000))
    for i in range(600):
        assert env["HTTP_X_N%d" % i] == str(i)
    env = one(req(b"X-N7: again"))
    assert env["HTTP_X_N7"] == "again" and "HTTP_X_N8" not in env


def test_values_trim_ows_and_keep_inner_whitespace():
    env = one(req(b"X-A: \t a \t b \t ", b"X-Empty:", b"X-Sp:   "))
    assert env["HTTP_X_A"] == "a \t b"
    assert env["HTTP_X_EMPTY"] == "" and env["HTTP_X_SP"] == ""


def test_obs_text_is_latin1():
    assert one(req(b"X-A: caf\xc3\xa9 \xff"))["HTTP_X_A"] == "caf\xc3\xa9 \xff"


def test_repeated_fields_join():
    env = one(req(b"Accept: a", b"Accept: b", b"Cookie: x=1", b"cookie: y=2", b"X-E:", b"X-E: 1",
                  b"X-1: 1", b"X-1: 1"))
    assert env["HTTP_ACCEPT"] == "a, b"
    assert env["HTTP_COOKIE"] == "x=1; y=2"
    assert env["HTTP_X_E"] == ", 1"
    assert env["HTTP_X_1"] == "1, 1"          # identical (shared) value objects still join


def test_underscore_names_are_dropped():
    env = one(req(b"X-Auth-User: real", b"X_Auth_User: spoofed", b"_: x"))
    assert env["HTTP_X_AUTH_USER"] == "real"
    env = one(req(b"X_Auth_User: spoofed"))
    assert "HTTP_X_AUTH_USER" not in env


@pytest.mark.parametrize("line", [
    b"X-A : 1",            # whitespace before the colon
    b"X-A\t: 1",
    b": 1",                # empty name
    b" X-A: 1",            # obs-fold / leading whitespace
    b"\tcontinued",
    b"X-A",                # no colon
    b"X\"A: 1",            # not a token
    b"X@A: 1",
    b"X\x00A: 1",
    b"X-A: a\x00b",        # NUL in the value
    b"X-A: a\rb",          # bare CR
    b"X-A: a\x7fb",        # DEL
    b"X-A: a\x01b",
    b"X-A: \x0b",
    b"\xe9: 1",
])
def test_invalid_field_line(line):
    rejects(errors.InvalidHeader, req(line))


def test_obs_fold_after_a_field_is_rejected():
    rejects(errors.InvalidHeader, req(b"X-A: 1", b" 2"))


def test_bare_lf_in_fields():
    rejects(errors.InvalidHeader, b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n")
    rejects(errors.InvalidHeader, b"GET / HTTP/1.1\r\nHost: a\r\n\n")


def test_htab_in_value_is_allowed():
    assert one(req(b"X-A: a\tb"))["HTTP_X_A"] == "a\tb"


# -- Host ----------------------------------------------------------------------


@pytest.mark.parametrize("host", [
    b"example.com", b"example.com:8080", b"EXAMPLE.com:", b"127.0.0.1", b"[::1]", b"[::1]:443",
    b"xn--bcher-kva.example", b"a_b.example", b"%41.example",
])
def test_valid_host(host):
    assert one(req(host=host))["HTTP_HOST"] == host.decode()


@pytest.mark.parametrize("host", [b"", b"   "])
def test_empty_host_is_invalid(host):
    # RFC 9110 §4.2.1: an http URI with an empty host MUST be rejected
    assert rejects(errors.InvalidHeader, req(host=host)).status_code == 400


def test_empty_host_beside_absolute_form_is_ignored():
    env = one(b"GET http://example.com/x HTTP/1.1\r\nHost:\r\n\r\n")
    assert env["HTTP_HOST"] == "example.com"


def test_repeated_content_type_is_rejected():
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n\r\n"
    assert rejects(errors.InvalidHeader, raw).status_code == 400


@pytest.mark.parametrize("target", [b"/a\\b", b"\\", b"/static/..\\app.py", b"/x?q=\\"])
def test_backslash_in_target_is_rejected(target):
    exc = rejects(errors.InvalidTarget, req(line=b"GET " + target + b" HTTP/1.1"))
    assert "backslash" in str(exc)


@pytest.mark.parametrize("size", [33, 100, 8191, 100_000])
def test_method_longer_than_any_implemented_is_501(size):
    line = b"M" * size + b" / HTTP/1.1"
    assert rejects(errors.MethodTooLong, req(line=line)).status_code == 501
    # and the same at every split: the first MAX_METHOD + 1 bytes decide
    p = RequestParser()
    with pytest.raises(errors.MethodTooLong):
        for i in range(0, 40):
            p.feed(line[i:i + 1])
            p.next_event()


def test_method_of_32_bytes_is_a_method():
    assert one(req(line=b"M" * 32 + b" / HTTP/1.1"))["REQUEST_METHOD"] == "M" * 32


@pytest.mark.parametrize("host", [
    b"exa mple.com", b"example.com/", b"user@example.com", b"example.com?x",
    b"example.com#x", b"example.com\\x", b"example.com:80a", b"a:1:2", b"[::1", b"[]", b"::1",
    b":80", b"exam\xe9ple.com", b"a<b",
])
def test_invalid_host(host):
    rejects(errors.InvalidHeader, req(host=host))


def test_host_required_on_11_only():
    rejects(errors.InvalidHeader, req(host=None))
    assert one(req(host=None, line=b"GET / HTTP/1.0"))


def test_host_more_than_once():
    rejects(errors.InvalidHeader, req(b"Host: example.com"))
    rejects(errors.InvalidHeader, req(b"host: other.example", line=b"GET / HTTP/1.0"))


# -- Content-Length --------------------------------------------------------------


@pytest.mark.parametrize("value, n", [(b"0", 0), (b"5", 5), (b" 7 ", 7), (b"007", 7), (b"1" * 18, int(b"1" * 18))])
def test_content_length_valid(value, n):
    p = RequestParser(limits=Limits(max_body=0))
    p.feed(req(b"Content-Length:" + value, line=b"POST / HTTP/1.1"))
    kind, env = p.next_event()
    assert p.content_length == n and p.body_kind == BODY_LENGTH
    assert env["CONTENT_LENGTH"] == value.decode().strip()
    # an empty body ends at once; otherwise the parser waits for the bytes
    assert p.next_event() == (("end", None) if n == 0 else None)


@pytest.mark.parametrize("value", [
    b"", b"+5", b"-1", b"5 5", b"0x5", b"5,5", b"5, 5", b"1.0", b"five", b"1" * 19, b"\xb5",
])
def test_content_length_invalid(value):
    rejects(errors.InvalidFraming, req(b"Content-Length: " + value, line=b"POST / HTTP/1.1"))


def test_content_length_repeated():
    rejects(errors.InvalidFraming, req(b"Content-Length: 5", b"Content-Length: 5", line=b"POST / HTTP/1.1"))


# -- Transfer-Encoding -------------------------------------------------------------


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"  CHUNKED\t"])
def test_transfer_encoding_chunked(value):
    messages, p = run(req(b"Transfer-Encoding: " + value, line=b"POST / HTTP/1.1", body=b"0\r\n\r\n"))
    assert messages[0][2] and messages[0][0]["HTTP_TRANSFER_ENCODING"] == value.decode().strip()


@pytest.mark.parametrize("value, exc", [
    (b"gzip, chunked", errors.UnsupportedTransferCoding),
    (b"deflate,chunked", errors.UnsupportedTransferCoding),
    (b"identity", errors.UnsupportedTransferCoding),
    (b"xchunked", errors.UnsupportedTransferCoding),
    (b"chunk", errors.UnsupportedTransferCoding),
    (b"gzip", errors.UnsupportedTransferCoding),
    (b"chunked;q=1", errors.UnsupportedTransferCoding),
    (b"chunked, gzip", errors.InvalidFraming),
    (b"chunked, chunked", errors.InvalidFraming),
    (b"gzip, chunked, chunked", errors.InvalidFraming),
    (b"chunked,", errors.InvalidFraming),
    (b", chunked", errors.InvalidFraming),
    (b"gzip,,chunked", errors.InvalidFraming),
    (b"", errors.InvalidFraming),
])
def test_transfer_encoding_invalid(value, exc):
    status = rejects(exc, req(b"Transfer-Encoding: " + value, line=b"POST / HTTP/1.1")).status_code
    assert status == (501 if exc is errors.UnsupportedTransferCoding else 400)


def test_transfer_encoding_repeated():
    rejects(errors.InvalidFraming, req(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                                       line=b"POST / HTTP/1.1"))
    rejects(errors.InvalidFraming, req(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked",
                                       line=b"POST / HTTP/1.1"))


def test_transfer_encoding_in_http10():
    rejects(errors.InvalidFraming, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


@pytest.mark.parametrize("fields", [
    (b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
    (b"Transfer-Encoding: gzip, chunked", b"Content-Length: 5"),   # 400s win over 501
])
def test_transfer_encoding_with_content_length(fields):
    rejects(errors.InvalidFraming, req(*fields, line=b"POST / HTTP/1.1"))


# -- Connection / Expect -------------------------------------------------------------


@pytest.mark.parametrize("line, fields, keep_alive", [
    (b"GET / HTTP/1.1", (), True),
    (b"GET / HTTP/1.1", (b"Connection: close",), False),
    (b"GET / HTTP/1.1", (b"Connection: Upgrade, CLOSE",), False),
    (b"GET / HTTP/1.1", (b"Connection: keep-alive", b"Connection: close"), False),
    (b"GET / HTTP/1.1", (b"Connection: closed",), True),
    (b"GET / HTTP/1.0", (), False),
    (b"GET / HTTP/1.0", (b"Connection: Keep-Alive",), True),
    (b"GET / HTTP/1.0", (b"Connection: foo,keep-alive ",), True),
    (b"GET / HTTP/1.0", (b"Connection: keep-alive, close",), False),
    (b"GET / HTTP/1.0", (b"Connection: keep-alives",), False),
])
def test_connection(line, fields, keep_alive):
    p = RequestParser()
    p.feed(req(*fields, line=line))
    p.next_event()
    assert p.keep_alive is keep_alive
    assert p.next_event() == ("end", None)
    assert p.keep_alive is keep_alive        # still readable after the end


def test_attributes_reset_for_the_next_message():
    p = RequestParser()
    p.feed(req(b"Connection: close", b"Content-Length: 1", line=b"POST / HTTP/1.1", body=b"x"))
    p.feed(b"GET / HTTP/1.0\r\n")
    assert p.next_event()[0] == "request"
    assert p.next_event() == ("data", b"x")
    assert p.next_event() == ("end", None)
    assert (p.keep_alive, p.content_length, p.http11) == (False, 1, True)
    assert p.next_event() is None            # the next head has started
    assert (p.content_length, p.body_kind, p.environ) == (-1, BODY_NONE, None)
    p.feed(b"\r\n")
    assert p.next_event()[1]["SERVER_PROTOCOL"] == "HTTP/1.0"


@pytest.mark.parametrize("line, value, expect", [
    (b"POST / HTTP/1.1", b"100-continue", True),
    (b"POST / HTTP/1.1", b" 100-Continue ", True),
    (b"POST / HTTP/1.0", b"100-continue", False),     # ignored on 1.0
])
def test_expect_continue(line, value, expect):
    p = RequestParser()
    p.feed(req(b"Expect:" + value, b"Content-Length: 1", line=line))
    kind, env = p.next_event()
    assert p.expect_continue is expect
    assert env["HTTP_EXPECT"] == value.decode().strip()


@pytest.mark.parametrize("value", [b"", b"100-continue-x", b"200-ok", b"100-continue, foo"])
def test_expect_other(value):
    exc = rejects(errors.ExpectationFailed, req(b"Expect: " + value, line=b"POST / HTTP/1.1"))
    assert exc.status_code == 417


# -- chunked bodies ------------------------------------------------------------------


VALID_CHUNKED = [
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n", b"abc0123456789"),
    (b"a\r\n0123456789\r\n00\r\n\r\n", b"0123456789"),
    (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),                   # CRLF inside data
    (b"2;name=value;flag\r\nok\r\n0;last\r\n\r\n", b"ok"),
    (b"2;q=\"a b\"\r\nok\r\n0\r\n\r\n", b"ok"),
    (b"2 ;e\r\nok\r\n0\t; e = 1\r\n\r\n", b"ok"),              # BWS before ";"
    (b"0001\r\nx\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n", b"x"),
    (b"FFF\r\n" + b"z" * 0xFFF + b"\r\n0\r\n\r\n", b"z" * 0xFFF),
]


@pytest.mark.parametrize("body, decoded", VALID_CHUNKED)
@pytest.mark.parametrize("step", SPLITS)
def test_chunked_valid(body, decoded, step):
    messages, p = run(chunked(body) + b"NEXT", step=step)
    assert messages[0][1] == decoded and messages[0][2]
    assert p.buffered() == b"NEXT"
    assert "X-Trailer" not in str(messages[0][0])     # trailers are discarded


def test_chunked_every_split_point():
    data = chunked(b"3;e=1\r\nabc\r\n10\r\n" + b"q" * 16 + b"\r\n0\r\nT: v\r\n\r\n")
    for cut in range(1, len(data)):
        p = RequestParser()
        p.feed(data[:cut])
        events = []
        while (ev := p.next_event()) is not None:
            events.append(ev)
        p.feed(data[cut:])
        while (ev := p.next_event()) is not None:
            events.append(ev)
        body = b"".join(v for k, v in events if k == "data")
        assert body == b"abc" + b"q" * 16 and events[-1] == ("end", None), cut


@pytest.mark.parametrize("body", [
    b"\r\n",                    # empty chunk-size
    b"g\r\n",                   # not HEXDIG
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5 \t\r\nhello\r\n0\r\n\r\n",                    # BWS with no ";" after it
    b"5 x\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"-5\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"1" + b"0" * 15 + b"\r\n",         # 16 hex digits
    b"0" * 16 + b"\r\n\r\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",        # data not followed by CRLF
    b"5\r\nhello\rX0\r\n\r\n",
    b"5\r\nhello\n0\r\n\r\n",           # bare LF after data
    b"5\nhello\r\n0\r\n\r\n",           # bare LF after size
    b"0\r\n\n",                         # bare LF ending the trailer
    b"0\r\nX: 1\n\r\n",
    b"1;e\x00\r\nx\r\n0\r\n\r\n",        # CTL in chunk-ext
    b"1;e\x7f\r\nx\r\n0\r\n\r\n",
    b"1;\xe9\r\nx\r\n0\r\n\r\n",
    b"5\r\r\nhello\r\n0\r\n\r\n",
    b"5\rX",                            # bare CR: rejected without waiting for a LF
])
@pytest.mark.parametrize("step", [None, 1])
def test_chunked_invalid(body, step):
    rejects(errors.InvalidChunk, chunked(body), step=step)


@pytest.mark.parametrize("trailer", [b"Bad Name: 1", b" folded", b"X: a\x00b", b"NoColon", b": 1",
                                     b"X: a\rb"])
def test_chunked_invalid_trailer(trailer):
    rejects(errors.InvalidHeader, chunked(b"0\r\n" + trailer + b"\r\n\r\n"))


def test_fifteen_hex_digits_are_accepted():
    p = RequestParser(limits=Limits(max_body=0))
    p.feed(chunked(b"00000000000000f\r\n0123456789abcde\r\n0\r\n\r\n"))
    p.next_event()
    assert p.next_event() == ("data", b"0123456789abcde")
    assert p.next_event() == ("end", None)


def test_chunked_body_kind_attributes():
    p = RequestParser()
    p.feed(chunked(b""))
    p.next_event()
    assert p.body_kind == BODY_CHUNKED and p.content_length == -1
    assert p.next_event() is None


# -- whole-message equivalence under splitting ----------------------------------------


SPLIT_MESSAGES = [
    req(b"User-Agent: x", b"Accept: */*", b"Cookie: a=b", b"X-Custom: 1"),
    b"\r\n" + req(line=b"OPTIONS * HTTP/1.1"),
    req(b"Content-Length: 11", line=b"POST /up?x=1 HTTP/1.1", body=b"hello world"),
    b"GET http://h.example/p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]


@pytest.mark.parametrize("data", SPLIT_MESSAGES)
def test_split_feeding_gives_same_result(data):
    whole, _ = run(data + b"junk")
    for step in (1, 2, 5, 13):
        split, p = run(data + b"junk", step=step)
        assert split == whole
        assert p.buffered() == b"junk"


def test_stub_matches_the_module():
    import ast
    import os

    import fastwsgi._parser as mod

    stub = os.path.join(os.path.dirname(mod.__file__), "_parser.pyi")
    tree = ast.parse(open(stub).read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(mod, node.name)
            obj = cls() if node.name == "Limits" else cls(Limits())
            for item in node.body:
                name = getattr(item, "name", None) or getattr(getattr(item, "target", None), "id", None)
                if name and name != "__init__":
                    assert hasattr(obj, name), f"{node.name}.{name} is in the stub only"
        elif isinstance(node, ast.AnnAssign) and node.target.id.isupper():
            assert hasattr(mod, node.target.id), node.target.id
