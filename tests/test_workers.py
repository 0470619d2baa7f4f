"""Worker processes (fastwsgi/worker.py) under the master: threads, --max-requests,
deaths and exit codes.  (--timeout, 504 and the other recycling limits:
tests/test_supervise.py.)

The CLI always runs a master; `-w 1 --max-requests 1000000` is kept from the days
when that was what started one.
"""

import os
import re
import signal
import time

from process_helpers import (Load, booted_pids, children, get, in_thread, pid_of,
                             start_wrk, wait_until, wrk_result)

APP = "procapp:app"
ONE_WORKER = ("-w", "1", "--max-requests", "1000000")


def test_threaded_worker_serves_fast_requests_while_one_thread_sleeps(serve):
    server = serve(APP, *ONE_WORKER, "--threads", "4")
    slow = in_thread(get, server, "/slow?1.5")
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
    # each worker asks for its replacement once it has served 300..400 requests
    # (checked on its tick, 4 times a second) and serves until the replacement does
    assert retired and all(int(n) >= 300 for n in retired), retired
    assert len(set(booted_pids(server))) > 4
    print(f"--max-requests 300 under wrk -c8 -d2s: {requests} requests, "
          f"{len(booted_pids(server))} workers, no errors")


def test_max_requests_recycling_python_clients(serve):
    server = serve(APP, "-w", "2", "--max-requests", "50", "--max-requests-jitter", "10")
    with Load(server, clients=4) as load:
        wait_until(lambda: load.ok > 600 and len(load.pids) >= 6, 20,
                   "600 requests from six generations of workers")
    assert load.failures == []


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
