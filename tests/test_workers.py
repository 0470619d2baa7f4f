"""Worker processes (fastwsgi/worker.py) under the master: --timeout with the stack
of the hung app call in the log, threads, --max-requests, deaths and exit codes.

`-w 1` alone runs a single process (no master); the tests that want exactly one
worker under a master add `--max-requests 1000000`, which needs the master.
"""

import os
import re
import signal
import threading
import time

from process_helpers import (Load, booted_pids, children, get, pid_of, start_wrk,
                             wait_until, wrk_result)

APP = "procapp:app"
ONE_WORKER = ("-w", "1", "--max-requests", "1000000")


def background(server, path, timeout=15.0):
    """Start a request in a thread; .result holds (status, body) or the exception."""
    def run():
        try:
            t.result = get(server, path, timeout=timeout)
        except OSError as exc:
            t.result = exc

    t = threading.Thread(target=run, daemon=True)
    t.result = None
    t.start()
    return t


def test_hung_app_is_killed_after_timeout_with_its_stack_logged(serve):
    server = serve(APP, "-w", "2", "--timeout", "1")
    wait_until(lambda: len(children(server.pid)) == 2, 5, "two workers")
    hung = background(server, "/hang")
    time.sleep(0.3)
    # the other worker serves while one is stuck
    started = time.monotonic()
    while time.monotonic() - started < 0.8:
        assert get(server, timeout=5)[0] == 200
    m = server.wait_for_output(r"worker (\d+) timed out: an app call on the loop thread "
                               r"has run for [\d.]+s \(--timeout 1\)", 5)
    victim = int(m.group(1))
    server.wait_for_output(rf"worker {victim} was killed by signal 6 \(SIGABRT\) after "
                           "timing out; replacing it", 5)
    hung.join(5)
    assert isinstance(hung.result, OSError)       # its connection died with the worker
    # faulthandler's dump: the stuck frame, by name, in the worker's error log
    assert re.search(r'File ".*procapp\.py", line \d+ in hang_forever_in_app', server.output)
    wait_until(lambda: len(booted_pids(server)) == 3, 2, "a replacement")
    assert all(get(server)[0] == 200 for _ in range(10))


def test_hung_thread_is_killed_per_request_while_other_threads_serve(serve):
    server = serve(APP, *ONE_WORKER, "--threads", "4", "--timeout", "1.5")
    worker = wait_until(lambda: children(server.pid), 5, "the worker").pop()
    hung = background(server, "/hang")
    time.sleep(0.3)
    # the same worker answers on its other threads while one is stuck
    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 0.8:
        status, body = get(server, timeout=5)
        assert status == 200 and pid_of(body) == worker and "multithread=True" in body
        served += 1
    assert served > 10
    server.wait_for_output(rf"worker {worker} timed out: an app call on app thread \d "
                           r"has run for", 5)
    server.wait_for_output(rf"worker {worker} was killed by signal 6", 5)
    assert re.search(r"in hang_forever_in_app", server.output)
    hung.join(5)
    status, body = get(server)
    assert status == 200 and pid_of(body) != worker


def test_threaded_worker_serves_fast_requests_while_one_thread_sleeps(serve):
    server = serve(APP, *ONE_WORKER, "--threads", "4")
    slow = background(server, "/slow?1.5")
    time.sleep(0.2)
    started = time.monotonic()
    for _ in range(20):
        t0 = time.monotonic()
        status, body = get(server)
        assert status == 200 and time.monotonic() - t0 < 0.5
    assert time.monotonic() - started < 1.2            # all done while /slow sleeps
    assert slow.result is None                         # still sleeping
    slow.join(5)
    assert slow.result[0] == 200
    assert pid_of(slow.result[1]) == pid_of(body)      # the same worker process


def test_max_requests_recycles_workers_without_failing_a_request(serve):
    server = serve(APP, "-w", "2", "--max-requests", "300", "--max-requests-jitter", "100")
    wait_until(lambda: len(children(server.pid)) == 2, 5, "two workers")
    wrk = start_wrk(server, seconds=2, connections=8)
    requests, errors, report = wrk_result(wrk)
    assert errors == [], report
    retired = re.findall(r"served (\d+) requests \(--max-requests\)", server.output)
    # each worker retires after 300..400 requests (plus the few its other keep-alive
    # connections had in flight, answered with Connection: close), and is replaced
    assert len(booted_pids(server)) >= requests // 420
    assert retired and all(300 <= int(n) <= 400 + 8 for n in retired), retired
    assert len(set(booted_pids(server))) > 4
    print(f"--max-requests 300 under wrk -c8 -d2s: {requests} requests, "
          f"{len(booted_pids(server))} workers, no errors")


def test_max_requests_recycling_python_clients(serve):
    server = serve(APP, "-w", "2", "--max-requests", "50", "--max-requests-jitter", "10")
    with Load(server, clients=4) as load:
        wait_until(lambda: load.ok > 600, 10, "600 requests")
    assert load.failures == []
    assert len(load.pids) >= 600 // 60


def test_a_worker_that_exits_is_replaced_and_its_exit_code_logged(serve):
    server = serve(APP, "-w", "2")
    wait_until(lambda: len(children(server.pid)) == 2, 5, "two workers")
    try:
        get(server, "/exit?7", timeout=5)
    except OSError:
        pass
    m = server.wait_for_output(r"worker (\d+) exited with code 7; replacing it", 2)
    wait_until(lambda: len(children(server.pid)) == 2
               and int(m.group(1)) not in children(server.pid), 2, "the replacement")
    assert get(server)[0] == 200


def test_workers_stop_when_the_master_dies(serve):
    server = serve(APP, "-w", "2")
    workers = wait_until(lambda: children(server.pid) if len(children(server.pid)) == 2
                         else None, 5, "two workers")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(5)

    def gone():
        return not any(os.path.exists(f"/proc/{w}") and
                       open(f"/proc/{w}/stat").read().split(") ")[1][0] != "Z"
                       for w in workers)

    wait_until(gone, 3, "the orphaned workers to exit")
