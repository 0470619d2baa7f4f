"""Typing stub of fastwsgi._writer (compiled): the Python-visible API only.

The hot path (write_head_start / write_chunk into an OutBuf) is cdef-only; see
_writer.pxd.  These helpers serve tests and error pages.
"""

from typing import List, Tuple

def frame_head(
    status: str, headers: List[Tuple[str, str]], server: str = "fastwsgi"
) -> Tuple[bytes, int, int, bool]:
    """(status line + headers without the final CRLF, status code,
    Content-Length or -1, the app asked for Connection: close)."""

def frame_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body: size line, data, CRLF."""

def format_date(ts: int) -> bytes:
    """The Date header line for a Unix time, as the writer caches it."""
