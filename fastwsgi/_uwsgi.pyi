"""Typing stub of fastwsgi._uwsgi (compiled): the Python-visible API only.

The hot path (parse_uwsgi_head) is cdef-only; see _uwsgi.pxd.
"""

from typing import Optional

from fastwsgi._parser import RequestParser

def parse_packet(parser: RequestParser, data: bytes, base: Optional[dict] = None) -> int:
    """Bytes of the uwsgi packet consumed (0: need more); results are on `parser`.
    Raises fastwsgi.errors.HttpParserError subclasses."""
