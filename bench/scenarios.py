"""What each scenario requests, which app answers it, and what a right answer is.

A scenario is data only: bench/load.py turns it into a wrk command line,
bench/check.py into raw requests; ``app`` is what the server is told to load
from the run directory (bench_apps.py is a copy of bench/apps.py; bench_flask.py
only builds the Flask app defined there, so no other scenario imports Flask).
"""
from dataclasses import dataclass

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
    static: bool = False         # nginx's fixed response can stand in for it
    report_bytes: bool = False   # throughput in bytes/s is meaningful
    help: str = ""

    def body_ok(self, body):
        if self.check is not None:
            return self.check(body)
        return body == self.expected


SCENARIOS = {s.name: s for s in [
    Scenario("hello", "bench_apps:hello", expected=apps.HELLO_BODY, static=True,
             help="keep-alive GET, 13-byte body"),
    Scenario("pipeline", "bench_apps:hello", expected=apps.HELLO_BODY, static=True,
             pipeline=16, help="same, 16 requests pipelined per write"),
    Scenario("newconn", "bench_apps:hello", expected=apps.HELLO_BODY, static=True,
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
]}

DEFAULT_ORDER = list(SCENARIOS)
