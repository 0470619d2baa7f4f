"""Typing stub of fastwsgi._loop (compiled): the Python-visible API only.

The epoll dispatch, accept and timeout sweep are cdef-only; see _loop.pyx.
"""

import socket
from typing import Any, Callable, Iterable, Optional

from fastwsgi._connection import Connection, ServerState

class Loop:
    max_connections: int
    graceful_timeout: float
    on_tick: Optional[Callable[[], Any]]
    threads: int
    def __init__(
        self,
        st: ServerState,
        listeners: Iterable[socket.socket] = (),
        max_connections: int = 10000,
        graceful_timeout: float = 30.0,
    ) -> None: ...
    def wakeup_fd(self) -> int: ...
    def connections(self) -> int: ...
    def is_stopping(self) -> bool: ...
    def add_listener(
        self,
        sock: socket.socket,
        protocol: int = 0,
        proxy_protocol: bool = False,
        trust: Optional[Callable[[str], bool]] = None,
    ) -> None:
        """protocol: 0 HTTP, 1 uwsgi."""
    def stop(self, graceful: bool = True) -> None:
        """Safe from signal handlers and other threads."""
    def handback(self, conn: Connection) -> None:
        """An app thread is done with `conn` (thread-safe)."""
    def run(self, until_requests: int = -1, timeout: float = -1.0) -> int:
        """Serve until stopped; returns the number of requests served."""
    def close(self) -> None: ...
