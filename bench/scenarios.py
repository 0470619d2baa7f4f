"""What each scenario requests, which app answers it, and what a right answer is.

A scenario is data only: bench/load.py turns it into a wrk command line,
bench/check.py into raw requests; ``app`` is what the server is told to load
from the run directory (bench_apps.py is a copy of bench/apps.py; bench_flask.py
only builds the Flask app defined there, so no other scenario imports Flask).
A scenario with ``targets`` requests several paths (wrk cycles through them,
the check asks for each); ``connections`` and ``timeout`` override wrk's, and
``min_duration`` keeps a run long enough for a few slow requests to finish.
"""
import hashlib
from dataclasses import dataclass, replace

from . import apps


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str                     # MODULE:ATTR in the run directory
    path: str = "/"
    method: str = "GET"
    body: bytes = b""            # request body (POST)
    headers: tuple = ()          # extra request headers, (name, value)
    pipeline: int = 1            # requests written back to back per wrk batch
    close: bool = False          # Connection: close on every request
    expected: bytes = b""        # exact response body, unless check is set
    check: object = None         # callable(body) -> bool, overrides expected
    fixed: bool = False          # nginx's fixed response can stand in for it
    report_bytes: bool = False   # throughput in bytes/s is meaningful
    targets: tuple = ()          # ((path, expected body), ...): wrk cycles through them
    connections: int = None      # wrk connections, if not the run's --connections
    timeout: int = 5             # wrk's per-request timeout, seconds
    min_duration: int = 0        # seconds: a measured run is never shorter (--quick)
    slow: float = None           # seconds the check allows one response (check.SLOW)
    help: str = ""

    def body_ok(self, body):
        if self.check is not None:
            return self.check(body)
        return body == self.expected

    def variants(self):
        """One single-target scenario per target (itself if it has none): what
        bench/check.py checks."""
        if not self.targets:
            return [self]
        return [replace(self, path=path, expected=body, targets=())
                for path, body in self.targets]


_STATIC_TARGETS = tuple((f"/{apps.STATIC_DIR}/{name}", data)
                        for name, data in apps.STATIC_FILES.items())
_UPLOAD_BODY = apps.upload_body()


SCENARIOS = {s.name: s for s in [
    Scenario("hello", "bench_apps:hello", expected=apps.HELLO_BODY, fixed=True,
             help="keep-alive GET, 13-byte body"),
    Scenario("pipeline", "bench_apps:hello", expected=apps.HELLO_BODY, fixed=True,
             pipeline=16, help="same, 16 requests pipelined per write"),
    Scenario("newconn", "bench_apps:hello", expected=apps.HELLO_BODY, fixed=True,
             close=True, help="Connection: close, a new TCP connection per request"),
    Scenario("big", "bench_apps:big", expected=apps.BIG_BODY, report_bytes=True,
             help="1 MiB response body"),
    Scenario("post", "bench_apps:post", method="POST", body=apps.POST_BODY,
             headers=(("Content-Type", "application/octet-stream"),),
             expected=apps.POST_DIGEST,
             help="64 KiB POST, app returns its sha256"),
    Scenario("flask", "bench_flask:app", path="/json", check=apps.flask_expected_ok,
             help="Flask JSON endpoint"),
    Scenario("stream", "bench_apps:stream", expected=apps.STREAM_BODY, report_bytes=True,
             help="generator, 100 x 1 KiB, no Content-Length (chunked)"),
    Scenario("static", "bench_apps:static_file", path=_STATIC_TARGETS[0][0],
             targets=_STATIC_TARGETS,
             help="20 files of 1-20 KiB, returned by the app through wsgi.file_wrapper "
                  "(fastwsgi-static: by the server's own --static)"),
    Scenario("json", "bench_apps:json_app", check=apps.json_expected_ok,
             help="json.dumps of a small dict, no framework"),
    Scenario("upload", "bench_apps:upload", method="POST", body=_UPLOAD_BODY,
             headers=(("Content-Type", "application/octet-stream"),),
             expected=hashlib.sha256(_UPLOAD_BODY).hexdigest().encode("ascii"),
             connections=32, timeout=30, min_duration=5, slow=10.0,
             help="20 MB POST on 32 connections, app hashes the body (sha256)"),
]}

DEFAULT_ORDER = list(SCENARIOS)
