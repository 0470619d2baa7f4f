"""Fixture app of tests/test_lifecycle.py: a request's life between socket and app.

`app` dispatches on PATH_INFO.  State a test reads back later lives in module
globals (the server runs the app in one process):
- /keep-write: keeps this request's write() callable; /use-stale-write then calls it
  while its own request runs, and answers what happened (the stale call must raise
  and must not reach this response).
- /held?key=K: an iterable whose __next__ blocks for ?hold seconds; it records, per
  key, its close() calls, whether close() ran while __next__ was running, and on
  which thread each ran.  /report?key=K answers that record as JSON.
- /echo: answers the body's length, CONTENT_LENGTH and wsgi.input_terminated.
"""

import json
import threading
import time
from urllib.parse import parse_qs

KEPT = {}
REPORTS = {}


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _reply(start_response, body):
    body = body.encode() if isinstance(body, str) else body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def keep_write(environ, start_response):
    KEPT["write"] = start_response("200 OK", [("Content-Length", "4")])
    return [b"kept"]


def use_stale_write(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])     # chunked
    try:
        KEPT["write"](b"INJECTED")
        outcome = "accepted"
    except Exception as exc:                      # noqa: BLE001 (the test reads the class)
        outcome = type(exc).__name__
    return [outcome.encode()]


class Held:
    def __init__(self, key, hold):
        self.key = key
        self.hold = hold
        self.inside = False
        self.sent = 0
        self.report = REPORTS.setdefault(key, {"closes": 0, "close_during_next": False,
                                               "threads": [], "close_thread": None})

    def __iter__(self):
        return self

    def __next__(self):
        self.inside = True
        try:
            if self.sent >= 50:
                raise StopIteration
            time.sleep(self.hold)
            self.sent += 1
            return b"x" * 65536
        finally:
            self.inside = False

    def close(self):
        self.report["closes"] += 1
        self.report["close_during_next"] |= self.inside
        self.report["close_thread"] = threading.get_ident()


def held(environ, start_response):
    q = _q(environ)
    it = Held(q.get("key", ""), float(q.get("hold", "0.3")))
    it.report["threads"].append(threading.get_ident())
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return it


def report(environ, start_response):
    return _reply(start_response, json.dumps(REPORTS.get(_q(environ).get("key", ""), {})))


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    return _reply(start_response, f"{len(body)} {environ.get('CONTENT_LENGTH')} "
                                  f"{environ.get('wsgi.input_terminated')}")


ROUTES = {"/keep-write": keep_write, "/use-stale-write": use_stale_write,
          "/held": held, "/report": report, "/echo": echo}


def app(environ, start_response):
    return ROUTES.get(environ.get("PATH_INFO", ""), echo)(environ, start_response)
