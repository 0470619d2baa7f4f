"""Metrics (fastwsgi/_metrics.pyx, metrics.py, status.py's /metrics): the compiled
block on its own, a server in this process, and real servers with -w 2 --threads 2
scraped over HTTP and parsed with prometheus_client's parser."""

import http.client
import os
import re
import socket
import threading
import types

import pytest

from fastwsgi._metrics import Metrics, new_buffer
from fastwsgi.metrics import Registry, render, saturated
from fastwsgi.server import make_server
from observe_helpers import (BAD_REQUEST, families, gauge, raw, requests_by_code,
                             samples, scrape, status_port)
from process_helpers import get, wait_until

# -------------------------------------------------------------- the compiled block


def test_block_records_codes_and_histogram_buckets():
    m = Metrics(new_buffer())
    bounds = Metrics.bounds()
    m.record(200, 0.0004, 0.0001)          # first bucket (<= 0.0005)
    m.record(200, bounds[3], 0.0)          # exactly on a bound: that bucket (le)
    m.record(404, 1e9, 2.0)                # past the last bound: +Inf
    m.record(400, 0.002, rejected=True)    # rejected: no queue time
    m.record(1000, 0.0)                    # out of range: code 0
    snap = m.snapshot()
    assert snap["codes"] == {0: 1, 200: 2, 400: 1, 404: 1}
    assert snap["rejected"] == {400: 1}
    assert snap["duration"][0] == 2        # 0.0004 and 0.0 (the code-0 one)
    assert snap["duration"][3] == 1
    assert snap["duration"][-1] == 1
    assert sum(snap["duration"]) == 5
    assert sum(snap["queue"]) == 3         # the rejection and the last have none
    assert snap["queue"][bounds.index(2.5)] == 1
    assert snap["duration_sum"] == pytest.approx(0.0004 + bounds[3] + 1e9 + 0.002)


def test_block_in_shared_memory_is_seen_by_the_parent_after_fork():
    m = Metrics(new_buffer())
    pid = os.fork()
    if pid == 0:                           # the child records, as a worker does
        try:
            for _ in range(3):
                m.record(201, 0.01, 0.001)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert m.snapshot()["codes"] == {201: 3}


def test_an_existing_block_is_not_zeroed_when_mapped_again():
    buf = new_buffer()
    Metrics(buf).record(200, 0.01)
    assert Metrics(buf).snapshot()["codes"] == {200: 1}


def test_registry_keeps_the_counts_of_a_retired_worker_and_drops_its_gauges():
    reg = Registry()
    a, b = reg.new_block(), reg.new_block()
    a.set_gauge("app_threads", 2)
    b.set_gauge("app_threads", 2)
    reg.adopt(1, a)
    reg.adopt(2, b)
    a.record(200, 0.01, 0.001)
    a.record(500, 0.02, 0.001)
    b.record(200, 0.01, 0.001)
    a.add("in_flight", 1)
    assert reg.snapshot()["in_flight"] == 1
    reg.retire(1, "crash")
    snap = reg.snapshot()
    assert snap["codes"] == {200: 2, 500: 1}
    assert sum(snap["duration"]) == 3
    assert snap["in_flight"] == 0 and snap["app_threads"] == 2 and snap["workers"] == 1
    assert snap["restarts"]["crash"] == 1


def test_render_is_parsable_prometheus_text():
    reg = Registry()
    block = reg.new_block()
    reg.adopt(1, block)
    block.record(200, 0.003, 0.0002)
    block.record(431, 0.001, rejected=True)
    body, ctype = render(reg.snapshot())
    assert ctype.startswith("text/plain; version=0.0.4")
    fams = families(body.decode())
    assert requests_by_code(fams) == {"200": 1, "431": 1}
    buckets = samples(fams, "fastwsgi_request_duration_seconds",
                      "fastwsgi_request_duration_seconds_bucket")
    assert buckets[(("le", "+Inf"),)] == 2
    assert buckets[(("le", "0.0025"),)] == 1          # cumulative: the 0.001 one
    assert samples(fams, "fastwsgi_rejected_requests")[(("reason", "431"),)] == 1
    assert set(dict(k)["reason"] for k in samples(fams, "fastwsgi_worker_restarts")) >= {
        "exit", "crash", "timeout", "max_requests", "memory", "age", "reload"}


def test_saturation_needs_every_thread_busy_and_someone_waiting():
    snap = {"app_threads": 4, "busy": 4, "queued": 0}
    assert not saturated(snap)
    assert saturated(snap, backlog=1)
    assert saturated(dict(snap, queued=1))
    assert not saturated(dict(snap, busy=3, queued=5), backlog=5)


# ------------------------------------------------------------ a server in-process


def _app(environ, start_response):
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    body = repr((environ.get("fastwsgi.request_start"),
                 environ.get("fastwsgi.queue_time"))).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _start(**options):
    server = make_server("127.0.0.1", 0, _app, **options)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def inprocess():
    server = _start(status_bind="127.0.0.1:0", request_timing=True)
    yield server
    server.shutdown()
    server.server_close()


def test_in_process_server_records_requests_rejections_and_connections(inprocess):
    host, port = inprocess.server_address[:2]
    registry = inprocess.status.registry
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for path in ("/", "/", "/missing"):
        conn.request("GET", path)
        conn.getresponse().read()
    snap = registry.snapshot()
    assert snap["connections"] == 1               # the keep-alive one, still open
    assert snap["codes"] == {200: 2, 404: 1}
    conn.close()
    assert raw(host, port, BAD_REQUEST).startswith(b"HTTP/1.1 400 ")
    wait_until(lambda: registry.snapshot()["connections"] == 0, what="connections closed")
    snap = registry.snapshot()
    assert snap["codes"] == {200: 2, 404: 1, 400: 1}
    assert snap["rejected"] == {400: 1}
    assert snap["in_flight"] == 0 and snap["busy"] == 0
    assert sum(snap["duration"]) == 4 and sum(snap["queue"]) == 3


def test_environ_has_request_start_and_queue_time(inprocess):
    import time

    host, port = inprocess.server_address[:2]
    before = time.time()
    status, body = get(types.SimpleNamespace(host=host, port=port), "/")
    after = time.time()
    started, queue = eval(body)
    assert status == 200
    assert before - 0.001 <= started <= after
    assert 0 <= queue <= after - before


@pytest.mark.parametrize("options", [{}, {"status_bind": "127.0.0.1:0"}])
def test_environ_has_no_timing_keys_unless_asked(options):
    server = _start(**options)
    try:
        host, port = server.server_address[:2]
        assert get(types.SimpleNamespace(host=host, port=port), "/") == (200, "(None, None)")
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- real servers


def test_metrics_sum_every_response_of_both_workers(serve):
    server = serve("observe_app:app", "-w", "2", "--threads", "2",
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    sent = {"200": 0, "404": 0, "400": 0, "500": 0}
    pids = set()
    lock = threading.Lock()

    def client():
        for _ in range(25):
            status, body = get(server, "/")
            with lock:
                sent["200"] += status == 200
                pids.add(body)
            status, _ = get(server, "/missing")
            with lock:
                sent["404"] += status == 404

    # until both workers have answered (the kernel picks who accepts)
    for _ in range(20):
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(pids) == 2:
            break
    assert len(pids) == 2, "one worker served everything"
    for _ in range(3):
        assert raw(server.host, server.port, BAD_REQUEST).startswith(b"HTTP/1.1 400 ")
        sent["400"] += 1
    status, _ = get(server, "/error")
    assert status == 500
    sent["500"] += 1

    status, ctype, text = scrape(port)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    fams = families(text)
    assert requests_by_code(fams) == {code: n for code, n in sent.items()}
    total = sum(sent.values())
    for hist in ("fastwsgi_request_duration_seconds", "fastwsgi_request_queue_seconds"):
        assert fams[hist].type == "histogram"
        count = samples(fams, hist, hist + "_count")[()]
        assert count == (total if "duration" in hist else total - sent["400"])
        assert samples(fams, hist, hist + "_bucket")[(("le", "+Inf"),)] == count
    assert samples(fams, "fastwsgi_rejected_requests")[(("reason", "400"),)] == 3
    assert gauge(fams, "fastwsgi_workers") == 2
    assert gauge(fams, "fastwsgi_app_threads") == 4
    assert gauge(fams, "fastwsgi_requests_in_flight") == 0
    assert gauge(fams, "fastwsgi_app_threads_busy") == 0
    assert "fastwsgi_connections" in fams and "fastwsgi_request_timeouts" in fams


def test_counts_survive_a_worker_crash_and_the_restart_is_counted(serve):
    server = serve("observe_app:app", "-w", "2", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    served = {}
    for _ in range(400):
        _, body = get(server, "/")
        pid = int(re.search(r"pid=(\d+)", body).group(1))
        served[pid] = served.get(pid, 0) + 1
        if len(served) == 2 and sum(served.values()) >= 10:
            break
    assert len(served) == 2
    total = sum(served.values())
    with pytest.raises((http.client.HTTPException, OSError)):
        get(server, "/exit?7")
    dead = int(server.wait_for_output(r"worker (\d+) exited with code 7").group(1))
    assert served[dead] > 0             # the dead worker had counts of its own

    def replaced():
        fams = families(scrape(port)[2])
        return fams if gauge(fams, "fastwsgi_workers") == 2 else None

    fams = wait_until(replaced, timeout=10, what="the replacement worker")
    assert requests_by_code(fams) == {"200": total}
    restarts = {dict(k)["reason"]: v for k, v in samples(
        fams, "fastwsgi_worker_restarts", "fastwsgi_worker_restarts_total").items()}
    assert restarts["crash"] == 1 and restarts["exit"] == 0


def test_single_process_serves_its_own_metrics(serve, tmp_path):
    server = serve("observe_app:app", "--threads", "2", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    for _ in range(5):
        assert get(server, "/")[0] == 200
    fams = families(scrape(port)[2])
    assert requests_by_code(fams) == {"200": 5}
    assert gauge(fams, "fastwsgi_app_threads") == 2


def test_status_bind_without_prometheus_client_fails_with_one_line(tmp_path):
    import subprocess
    import sys

    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed (test shadow)')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path / "shadow"), os.path.join(os.path.dirname(__file__), "apps"),
         os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "fastwsgi", "--status-bind", "127.0.0.1:0",
                           "observe_app:app"], env=env, capture_output=True, text=True,
                          timeout=30, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastwsgi: error: --status-bind: needs the metrics extra")
    assert "Traceback" not in proc.stderr


def test_status_listener_answers_404_and_405_and_keeps_serving(serve):
    server = serve("observe_app:app", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    assert scrape(port, "/nope")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/metrics", body=b"x")
    assert conn.getresponse().status == 405
    conn.close()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        s.recv(1024)
    assert scrape(port, "/livez")[0] == 200


def test_a_response_cut_by_a_timeout_leaves_no_request_in_flight(serve):
    server = serve("observe_app:app", "--io-timeout", "1", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")   # and never read it
        wait_until(lambda: gauge(families(scrape(port)[2]), "fastwsgi_requests_in_flight")
                   == 1, what="the response in flight")
        fams = wait_until(lambda: (lambda f: f if gauge(f, "fastwsgi_connections") == 0
                                   else None)(families(scrape(port)[2])),
                          timeout=20, what="the server to give up on the client")
    assert gauge(fams, "fastwsgi_requests_in_flight") == 0


def test_header_timeout_and_limits_are_counted_as_rejections(serve):
    server = serve("observe_app:app", "--header-timeout", "1", "--limit-request-line", "64",
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")          # and the head never ends
        assert s.recv(1024).startswith(b"HTTP/1.1 408 ")
    long_line = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(server.host, server.port, long_line).startswith(b"HTTP/1.1 414 ")
    fams = families(scrape(port)[2])
    assert requests_by_code(fams) == {"408": 1, "414": 1}
    rejected = {dict(k)["reason"]: v for k, v in samples(
        fams, "fastwsgi_rejected_requests", "fastwsgi_rejected_requests_total").items()}
    assert rejected == {"408": 1, "414": 1}


def test_a_body_refused_before_the_app_is_counted_as_a_rejection(serve):
    # bodies are received whole before the app runs: their 400/413/408 come from the
    # server, never from the app, and count as rejections
    server = serve("observe_app:app", "--limit-request-body", "100", "--body-timeout", "1",
                   "--body-min-rate", "0", "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert raw(server.host, server.port, chunked + b"zz\r\n").startswith(b"HTTP/1.1 400 ")
    too_big = chunked + b"c8\r\n" + b"b" * 200 + b"\r\n0\r\n\r\n"
    assert raw(server.host, server.port, too_big).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert s.recv(1024).startswith(b"HTTP/1.1 408 ")     # the rest never comes
    fams = families(scrape(port)[2])
    assert requests_by_code(fams) == {"400": 1, "408": 1, "413": 1}
    rejected = {dict(k)["reason"]: v for k, v in samples(
        fams, "fastwsgi_rejected_requests", "fastwsgi_rejected_requests_total").items()}
    assert rejected == {"400": 1, "408": 1, "413": 1}
    assert gauge(fams, "fastwsgi_requests_in_flight") == 0


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_request_answered_by_timeout_is_counted(serve, threads):
    # the worker's watchdog answers 504 (no worker is killed): counted all the same
    server = serve("procapp:app", "--threads", threads, "--timeout", "1",
                   "--status-bind", "127.0.0.1:0")
    port = status_port(server)
    hung = raw(server.host, server.port, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    assert hung.startswith(b"HTTP/1.1 504 ")
    fams = wait_until(lambda: (lambda f: f if requests_by_code(f).get("504") else None)(
        families(scrape(port)[2])), what="the 504 recorded")
    assert samples(fams, "fastwsgi_request_timeouts",
                   "fastwsgi_request_timeouts_total") == {(): 1.0}
    assert get(server, "/")[0] == 200


# ------------------------------------------- the compiled connection, in-process


def test_gauges_follow_a_request_an_app_thread_owns_until_its_timeout():
    """The connection over a socketpair (tests/test_connection.py's Harness), an app
    thread holding its request: connection, busy thread and request in flight are
    counted while it runs; app_timed_out() counts a timeout and a 504; once the
    thread hands the connection back every gauge is 0 again."""
    from test_connection import Harness, recv_all

    release = threading.Event()

    def app(environ, start_response):
        release.wait(5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    m = Metrics(new_buffer())
    h = Harness(app, "threads")
    h.state.set_metrics(m)
    h.start()
    try:
        c = h.client()
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: m.snapshot()["busy"] == 1, what="the app running")
        snap = m.snapshot()
        assert (snap["connections"], snap["in_flight"], snap["queued"]) == (1, 1, 0)
        assert h.owned[0].app_timed_out() == 504
        assert recv_all(c).startswith(b"HTTP/1.1 504 ")
        release.set()
        wait_until(lambda: h.loop.connections == 0, what="the connection closed")
        snap = m.snapshot()
        assert snap["timeouts"] == 1 and snap["codes"] == {504: 1}
        assert (snap["connections"], snap["in_flight"], snap["busy"], snap["queued"]) == (
            0, 0, 0, 0)
    finally:
        release.set()
        h.stop()
