"""Typing stub of fastwsgi._proxyproto (compiled): the Python-visible API only.

The hot path (parse_proxy_header) is cdef-only; see _proxyproto.pxd.
"""

from typing import List, Tuple

from fastwsgi.errors import ProxyProtocolError as ProxyProtocolError

def parse(data: bytes) -> Tuple[int, List[str]]:
    """(bytes consumed or 0 for need more, [client address, port] or [])."""
