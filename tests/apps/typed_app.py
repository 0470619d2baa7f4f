"""An application written against fastwsgi's public API with type annotations:
test_packaging.py runs mypy on it to check that the installed package is typed
(py.typed, a .pyi for every compiled module).  It is also a servable app."""

from __future__ import annotations

from typing import Callable, Iterable

import fastwsgi
from fastwsgi import errors
from fastwsgi._connection import FileWrapper
from fastwsgi._parser import Limits, RequestParser
from fastwsgi._writer import frame_chunk, frame_head

StartResponse = Callable[..., Callable[[bytes], object]]


def application(environ: dict[str, object], start_response: StartResponse) -> Iterable[bytes]:
    body = f"fastwsgi {fastwsgi.__version__}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def parse_one(raw: bytes) -> int:
    parser = RequestParser(Limits(max_body=1024))
    parser.feed(raw)
    try:
        event = parser.next_event()
    except errors.HttpParserError as exc:
        return exc.status_code
    return 200 if event is not None else 0


def framed(status: str) -> bytes:
    head, code, length, close = frame_head(status, [("X-A", "b")])
    return head + frame_chunk(b"x") + bytes(code + length + int(close))


def wrapped(path: str) -> FileWrapper:
    return FileWrapper(open(path, "rb"), 65536)


def serve() -> None:
    app = fastwsgi.mount({"/": application})
    with fastwsgi.make_server("127.0.0.1", 0, app) as server:
        server.handle_request()
