"""Typing stub of fastwsgi._parser (compiled): the Python-visible API only.

The hot path (parse_head / decode_body / reset) is cdef-only; see _parser.pxd.
"""

from typing import Literal, Optional, Tuple, Union

BODY_NONE: int
BODY_LENGTH: int
BODY_CHUNKED: int

Event = Union[
    Tuple[Literal["request"], dict],
    Tuple[Literal["data"], bytes],
    Tuple[Literal["end"], None],
]

class Limits:
    max_request_line: int     # bytes of the request line, CRLF excluded -> 414
    max_header_bytes: int     # bytes of the whole head -> 431
    max_headers: int          # number of field lines -> 431
    max_body: int             # decoded body bytes; 0 = unlimited -> 413
    max_chunk_line: int       # bytes of one chunk-size line -> 400
    max_trailer_bytes: int    # bytes of the trailer field lines -> 431
    def __init__(
        self,
        *,
        max_request_line: int = ...,
        max_header_bytes: int = ...,
        max_headers: int = ...,
        max_body: int = ...,
        max_chunk_line: int = ...,
        max_trailer_bytes: int = ...,
    ) -> None: ...

class RequestParser:
    @property
    def limits(self) -> Limits: ...
    script_name: str
    environ: Optional[dict]
    body_kind: int            # BODY_NONE / BODY_LENGTH / BODY_CHUNKED
    content_length: int       # -1 unless BODY_LENGTH
    keep_alive: bool
    expect_continue: bool
    http11: bool
    is_head: bool
    body_received: int
    body_done: bool
    def __init__(self, limits: Optional[Limits] = None, script_name: str = "") -> None: ...
    def feed(self, data: bytes) -> None: ...
    def next_event(self, base: Optional[dict] = None) -> Optional[Event]:
        """None: need more bytes.  Raises fastwsgi.errors.HttpParserError subclasses."""
    def buffered(self) -> bytes: ...
