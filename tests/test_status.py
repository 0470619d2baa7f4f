"""The status listener's /livez and /readyz (fastwsgi/status.py) against real
servers: draining on SIGTERM while an in-flight request still gets its 200,
--drain-delay, a reload, saturation.  In-flight requests are held by the app until
the test creates a file (observe_app's /hold), so nothing here depends on timing."""

import signal

import time

import pytest

from observe_helpers import (Held, families, gauge, in_flight, readyz, requests_by_code,
                             samples, scrape, status_port)
from process_helpers import get, wait_until


@pytest.mark.parametrize("threads", ["1", "2"])
def test_readyz_is_503_while_sigterm_drains_and_the_request_still_gets_its_200(
        serve, tmp_path, threads):
    server = serve("observe_app:app", "-w", "2", "--threads", threads,
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    wait_until(lambda: readyz(port) == (200, "ready"), what="ready")
    assert scrape(port, "/livez")[0] == 200
    held = Held(server, tmp_path)
    wait_until(lambda: in_flight(port) == 1, what="the request in flight")
    server.send_signal(signal.SIGTERM)
    wait_until(lambda: readyz(port) == (503, "draining"), what="/readyz 503")
    assert server.alive()
    assert scrape(port, "/livez")[0] == 200          # draining is alive
    status, body = held.release()
    assert status == 200 and body.startswith("ok pid=")
    assert server.proc.wait(20) == 0


def test_drain_delay_keeps_serving_while_readyz_says_503(serve, tmp_path):
    server = serve("observe_app:app", "-w", "2", "--drain-delay", "60",
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    wait_until(lambda: readyz(port)[0] == 200, what="ready")
    server.send_signal(signal.SIGTERM)
    server.wait_for_output(r"draining \(SIGTERM\)")
    assert readyz(port) == (503, "draining")
    for _ in range(5):                                # new requests are still served
        assert get(server, "/")[0] == 200
    server.send_signal(signal.SIGTERM)                # a second one: stop now
    assert server.proc.wait(20) == 0


def test_drain_delay_in_a_single_process(serve):
    server = serve("observe_app:app", "--drain-delay", "60", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    assert readyz(port) == (200, "ready")
    server.send_signal(signal.SIGTERM)
    server.wait_for_output(r"draining \(SIGTERM\)")
    assert readyz(port) == (503, "draining")
    assert get(server, "/")[0] == 200
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0


def test_readyz_says_saturated_when_every_thread_is_busy_and_requests_wait(
        serve, tmp_path):
    server = serve("observe_app:app", "--threads", "2", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    held = [Held(server, tmp_path, "release")for _ in range(2)]
    wait_until(lambda: gauge(families(scrape(port)[2]), "fastwsgi_app_threads_busy") == 2,
               what="both app threads busy")
    assert readyz(port) == (200, "ready")            # busy, but nobody waits yet
    waiting = Held(server, tmp_path, "release")
    wait_until(lambda: readyz(port) == (503, "saturated"), what="/readyz saturated")
    results = [h.release() for h in held] + [waiting.release()]
    assert all(r[0] == 200 for r in results), results
    wait_until(lambda: readyz(port) == (200, "ready"), what="ready again")


def test_readyz_is_503_during_a_reload(serve, tmp_path):
    server = serve("observe_app:app", "-w", "1", "--max-requests", "0", "--preload",
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    wait_until(lambda: readyz(port)[0] == 200, what="ready")
    held = Held(server, tmp_path)                     # keeps the old worker draining
    wait_until(lambda: in_flight(port) == 1, what="the request in flight")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: readyz(port) == (503, "reloading"), what="/readyz 503")
    assert held.release()[0] == 200
    wait_until(lambda: readyz(port) == (200, "ready"), timeout=20, what="ready again")
    wait_until(lambda: restarts(port)["reload"] == 1, what="the reload counted")
    assert requests_by_code(families(scrape(port)[2])) == {"200": 1}


def restarts(port):
    fams = families(scrape(port)[2])
    return {dict(k)["reason"]: v for k, v in samples(
        fams, "fastwsgi_worker_restarts", "fastwsgi_worker_restarts_total").items()}


def test_max_requests_restarts_are_counted_and_lose_no_count(serve):
    server = serve("observe_app:app", "--max-requests", "3", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    # a recycling worker serves on until its replacement does (--max-requests is
    # approximate): send until two have been replaced, then count every answer
    sent = 0
    deadline = time.monotonic() + 20
    while restarts(port)["max_requests"] < 2 and time.monotonic() < deadline:
        assert get(server, "/")[0] == 200
        sent += 1
        time.sleep(0.05)
    assert restarts(port)["max_requests"] >= 2, "two recycled workers"
    assert requests_by_code(families(scrape(port)[2])) == {"200": sent}


def test_age_recycling_is_counted_as_age(serve):
    server = serve("observe_app:app", "--max-worker-age", "1", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    wait_until(lambda: restarts(port)["age"] >= 1, 15, "a worker recycled for its age")
    counted = restarts(port)
    assert counted["crash"] == counted["exit"] == 0
    assert get(server, "/")[0] == 200


@pytest.mark.parametrize("value", ["unix:/tmp/s.sock", "fd://3", "uwsgi://127.0.0.1:9",
                                   "127.0.0.1:99999"])
def test_status_bind_takes_tcp_addresses_only(value):
    from fastwsgi.config import Config, ConfigError

    with pytest.raises(ConfigError, match="^status_bind=: "):
        Config.from_options(status_bind=value)
    assert Config.from_options(status_bind="[::1]:0").status_bind == "[::1]:0"


def test_otel_setup_is_module_colon_function():
    from fastwsgi.config import Config, ConfigError

    assert Config.from_options(otel_setup="a.b:c.d").otel_setup == "a.b:c.d"
    for bad in ("a", "a:", ":f", "a b:c", "a:1f"):
        with pytest.raises(ConfigError, match="expected MODULE:FUNCTION"):
            Config.from_options(otel_setup=bad)
