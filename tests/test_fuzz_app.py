"""A short seeded run of fuzz/app_fuzz.py, the application-side fuzzer, as a test.

An app that misbehaves at random (start_response arguments of every type, str
subclasses, lying tuples, exc_info, raising generators, None, ints, huge items,
close() that raises, file wrappers over lying objects) against a real server,
inline and with --threads 4: the only allowed outcomes are a well-framed
response (then the exact answer to the next request, or the close), a clean
500, or a closed connection; the server stays up and logs no internal error.
First, the oracle itself: responses it must reject are rejected.
"""

import collections
import importlib.util
import os

import pytest

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
_spec = importlib.util.spec_from_file_location("app_fuzz", os.path.join(FUZZ, "app_fuzz.py"))
app_fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app_fuzz)

CASES_PER_BATCH = 100
BATCHES = 3

# a GET over HTTP/1.1 whose app says "200 OK" (every choice 0: the ordinary case)
ORDINARY = b"\x00"
PONG = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("raw,outcome", [
    (OK + PONG, "ok"),
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\nConnection: close\r\n\r\nerr", "500"),
    (b"", "closed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed"),
    (OK, "ok"),                                     # closed before answering the next request
])
def test_the_oracle_accepts_the_allowed_outcomes(raw, outcome):
    assert app_fuzz.judge(raw, ORDINARY) == outcome


@pytest.mark.parametrize("raw,why", [
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK + PONG, "interim"),
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" + PONG, "neither 500 nor one the app gave"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nokHTTP/1.1", "after a response that closes"),
    (OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nleak", "the next request got"),
    (OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npo", "cut off"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nX-Evil: injected\r\nContent-Length: 2\r\n\r\nok" + PONG, "injected"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
     + PONG, "the next request got"),
])
def test_the_oracle_rejects_everything_else(raw, why):
    with pytest.raises(app_fuzz.Finding, match=why):
        app_fuzz.judge(raw, ORDINARY)


@pytest.fixture(scope="module", params=[1, 4], ids=["inline", "threads"])
def server(request):
    srv = app_fuzz.Server(request.param)
    yield srv
    srv.stop()


@pytest.mark.parametrize("batch", range(BATCHES))
def test_random_app_behaviour_only_ends_in_allowed_outcomes(server, batch):
    outcomes, findings = collections.Counter(), []
    for case in app_fuzz.random_cases(CASES_PER_BATCH, 9000 + batch):
        try:
            outcomes[app_fuzz.run_case(server, case)] += 1
        except app_fuzz.Finding as exc:
            findings.append(f"{case.hex()}: {str(exc)[:400]}")
            assert server.proc.poll() is None, "\n".join(findings) + "\n" + server.output[-3000:]
    assert not findings, "\n".join(findings)
    # a run that never gets a response through, or never breaks one, tests little
    assert outcomes["ok"] >= CASES_PER_BATCH // 4 and outcomes["500"] >= CASES_PER_BATCH // 10, outcomes
