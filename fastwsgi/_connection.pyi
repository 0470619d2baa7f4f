"""Typing stub of fastwsgi._connection (compiled): the Python-visible API only.

The request cycle (receive, parse, call the app, frame, send) is cdef-only; see
_connection.pxd.  server.py builds a ServerState and hands it to _loop.Loop.
"""

from typing import IO, Any, Callable, Dict, Iterator, List, Optional

from fastwsgi._parser import Limits

def monotonic() -> float:
    """The loop's clock (CLOCK_MONOTONIC seconds)."""

class FileWrapper:
    """wsgi.file_wrapper: blocks of `filelike`, or sendfile(2) for a regular file."""
    filelike: Any
    blksize: int
    def __init__(self, filelike: Any, blksize: int = 8192) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

class InputStream:
    """wsgi.input of one request (PEP 3333); reads b"" once the request is over."""
    def read(self, size: Optional[int] = -1) -> bytes: ...
    def readline(self, size: Optional[int] = -1) -> bytes: ...
    def readlines(self, hint: Optional[int] = -1) -> List[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

class BodyCache:
    """Large bytes bodies the app returns again, kept in sealed memfds."""
    def __init__(self, limit: int) -> None: ...
    @property
    def stats(self) -> Dict[str, int]: ...
    def clear(self) -> None: ...

class ServerState:
    """What every connection of one server shares: the app, limits, timeouts."""
    app: Callable[..., Any]
    base_environ: dict
    limits: Limits
    script_name: str
    server_line: bytes
    keep_alive: float
    header_timeout: float
    io_timeout: float
    access_log: Any
    logger: Any
    requests: int
    max_requests: int
    stop_requested: bool
    forwarded: Optional[Callable[[dict], None]]
    dispatch: Optional[Callable[["Connection"], None]]
    deferred: Optional[List["Connection"]]
    body_cache: Optional[BodyCache]
    def __init__(
        self,
        app: Callable[..., Any],
        base_environ: dict,
        limits: Limits,
        script_name: str = "",
        server_header: str = "fastwsgi",
        keep_alive: float = 5.0,
        header_timeout: float = 10.0,
        io_timeout: float = 30.0,
        access_log: Any = None,
        logger: Any = None,
        max_requests: int = 0,
        body_timeout: float = 30.0,
        body_min_rate: float = 1024.0,
        body_buffer_size: int = 65536,
        body_temp_dir: Optional[str] = None,
        stream_body: bool = False,
        body_cache_size: int = 0,
    ) -> None: ...
    def set_watchdog(self, buf: Any, slots: int) -> None:
        """App-call start times, one double per slot, in a writable shared buffer."""

class Connection:
    """One client connection; created and driven by _loop.Loop."""
    fd: int
    remote_addr: str
    remote_port: str
    def __init__(self, st: ServerState, fd: int, remote_addr: str, remote_port: str) -> None: ...
