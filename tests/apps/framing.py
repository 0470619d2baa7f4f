"""Fixture app for tests/test_writer.py: one start_response() call per case.

GET /<case> answers with the status, headers and body of CASES[case]; the test
module reads the same table (it imports this file), so a case is named once.
Each value is (status, headers, body items).  Statuses and headers are built
from str subclasses, enums, bytes, lying tuples and control characters: what the
writer must frame exactly (the good cases) or refuse with a 500 (the bad ones).
"""

import enum


class Sub(str):
    """A plain str subclass: its characters live in the object, not a temporary."""


class Sneaky(str):
    """A str subclass whose __str__ lies: the characters framed must be its own."""

    def __str__(self):
        return "X-Evil: injected"


class Status(enum.StrEnum):
    CREATED = "201 Created"
    CONTINUE = "100 Continue"


class Name(enum.StrEnum):
    TRACE = "X-Trace-Id"


class LyingTuple(tuple):
    """One item, but len() says two: read without a bounds check, item 1 is past
    the end of the tuple."""

    def __len__(self):
        return 2


class FakeStr:
    """Claims to be a str to isinstance() through __class__; it is not one."""

    __class__ = str


HUGE = "v" * (1 << 20)

GOOD = {
    # str subclasses and enums: their own characters, exactly
    "sub_headers": ("200 OK", [(Sub("X-Long-Name"), Sub("value-value"))], [b"ok"]),
    "sub_status": (Sub("202 Accepted"), [("X-A", "b")], [b"ok"]),
    "strenum_status": (Status.CREATED, [(Name.TRACE, Sub("abc"))], [b"ok"]),
    "sneaky_value": ("200 OK", [("X-Safe", Sneaky("plain"))], [b"ok"]),
    "many_sub_headers": ("200 OK", [(Sub(f"X-H{i}"), Sub(f"value-{i}")) for i in range(200)], [b"ok"]),
    # sizes
    "huge_value": ("200 OK", [("X-Huge", HUGE)], [b"ok"]),
    "latin1_value": ("200 OK", [("X-Latin", "caf\xe9")], [b"ok"]),
    "empty_value": ("200 OK", [("X-Empty", "")], [b"ok"]),
    "empty_reason": ("200 ", [], [b"ok"]),
    # bodiless statuses: the app's framing headers and body are dropped
    "no_content_with_length": ("204 No Content", [("Content-Length", "4"), ("X-A", "b")], [b"body"]),
    "no_content_chunked": ("204 No Content", [("Transfer-Encoding", "chunked")], [b"body"]),
    "not_modified_with_length": ("304 Not Modified", [("Content-Length", "10"), ("ETag", '"x"')], [b"0123456789"]),
    "not_modified_bad_length": ("304 Not Modified", [("Content-Length", "junk")], []),
    # connection-specific headers are the server's
    "hop_by_hop": ("200 OK", [("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                              ("Proxy-Connection", "keep-alive"), ("Transfer-Encoding", "gzip"),
                              ("Connection", "keep-alive"), ("Upgrade", "h2c"), ("X-A", "b")], [b"ok"]),
    "app_close": ("200 OK", [("Connection", "Keep-Alive, Close")], [b"ok"]),
    "own_server_date": ("200 OK", [("Server", "mine"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")], [b"ok"]),
    "head_length": ("200 OK", [("Content-Length", "5")], [b"hello"]),
    "status_599": ("599 Custom", [], [b"ok"]),
}

BAD = {
    # statuses: a final 200-599 "NNN reason", a str, latin-1, no CTL
    "status_100": ("100 Continue", [], [b"x"]),
    "status_101": ("101 Switching Protocols", [("Upgrade", "websocket")], [b"x"]),
    "status_103": ("103 Early Hints", [("Link", "</a.css>")], [b"x"]),
    "status_199": ("199 Whatever", [], [b"x"]),
    "status_enum_100": (Status.CONTINUE, [], [b"x"]),
    "status_600": ("600 Beyond", [], [b"x"]),
    "status_999": ("999 Whatever", [], [b"x"]),
    "status_000": ("000 Zero", [], [b"x"]),
    "status_099": ("099 Low", [], [b"x"]),
    "status_two_digits": ("20 OK", [], [b"x"]),
    "status_four_digits": ("2000", [], [b"x"]),
    "status_letters": ("abc", [], [b"x"]),
    "status_no_reason": ("200", [], [b"x"]),
    "status_tab": ("200\tOK", [], [b"x"]),
    "status_leading_space": (" 200 OK", [], [b"x"]),
    "status_crlf": ("200 OK\r\nX-Evil: injected", [], [b"x"]),
    "status_nul": ("200 O\x00K", [], [b"x"]),
    "status_non_latin1": ("200 \u03a9K", [], [b"x"]),
    "status_bytes": (b"200 OK", [], [b"x"]),
    "status_int": (200, [], [b"x"]),
    "status_none": (None, [], [b"x"]),
    "status_fake_str": (FakeStr(), [], [b"x"]),
    # header shapes and types
    "header_list_pair": ("200 OK", [["X-A", "b"]], [b"x"]),
    "header_triple": ("200 OK", [("X-A", "b", "c")], [b"x"]),
    "header_lying_tuple": ("200 OK", [LyingTuple(("X-A",))], [b"x"]),
    "name_bytes": ("200 OK", [(b"X-A", "b")], [b"x"]),
    "value_bytes": ("200 OK", [("X-A", b"b")], [b"x"]),
    "value_int": ("200 OK", [("Content-Length", 1)], [b"x"]),
    "value_none": ("200 OK", [("X-A", None)], [b"x"]),
    "value_fake_str": ("200 OK", [("X-A", FakeStr())], [b"x"]),
    "name_non_latin1": ("200 OK", [("X-\u20ac", "b")], [b"x"]),
    "value_non_latin1": ("200 OK", [("X-A", "\u20ac")], [b"x"]),
    "headers_dict": ("200 OK", {"X-A": "b"}, [b"x"]),
    # injection and control characters
    "name_crlf": ("200 OK", [("X-A\r\nX-Evil", "injected")], [b"x"]),
    "name_colon": ("200 OK", [("X-Evil: injected", "x")], [b"x"]),
    "name_space": ("200 OK", [("X A", "b")], [b"x"]),
    "name_empty": ("200 OK", [("", "b")], [b"x"]),
    "value_crlf": ("200 OK", [("X-A", "a\r\nX-Evil: injected")], [b"x"]),
    "value_lf": ("200 OK", [("X-A", "a\nX-Evil: injected")], [b"x"]),
    "value_nul": ("200 OK", [("X-A", "a\x00b")], [b"x"]),
    "value_del": ("200 OK", [("X-A", "a\x7fb")], [b"x"]),
    "sub_value_crlf": ("200 OK", [("X-A", Sub("a\r\nX-Evil: injected"))], [b"x"]),
    "huge_value_cr": ("200 OK", [("X-Huge", HUGE + "\r")], [b"x"]),
    # Content-Length from the app
    "length_letters": ("200 OK", [("Content-Length", "abc")], [b"x"]),
    "length_negative": ("200 OK", [("Content-Length", "-1")], [b"x"]),
    "length_plus": ("200 OK", [("Content-Length", "+1")], [b"x"]),
    "length_list": ("200 OK", [("Content-Length", "1, 1")], [b"x"]),
    "length_twice": ("200 OK", [("Content-Length", "1"), ("content-length", "1")], [b"x"]),
}

CASES = {**GOOD, **BAD}


FILE_BODY = bytes(range(256)) * 40


def write_then_file(environ, start_response):
    """write() before returning a wsgi.file_wrapper: the head is out (chunked) before
    the file is seen, so the file must be sent as chunks of the same response."""
    import tempfile

    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    write(b"written;")
    f = tempfile.TemporaryFile()
    f.write(FILE_BODY)
    f.seek(0)
    return environ["wsgi.file_wrapper"](f)


def app(environ, start_response):
    name = environ["PATH_INFO"].lstrip("/")
    if name == "write_then_file":
        return write_then_file(environ, start_response)
    if name not in CASES:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such case"]
    status, headers, body = CASES[name]
    start_response(status, headers)
    return list(body)
