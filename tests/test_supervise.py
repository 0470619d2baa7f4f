"""Request deadlines and the supervisor (issue 11): --timeout answers 504 and spares
the worker's other requests, recycling (requests, memory, age, lost threads, an app
that exits) never loses capacity, nothing an app does stops the master, a bad
deploy keeps the last good workers, no signal is dropped, no orphan keeps the port.

Real servers (``python -m fastwsgi ... procapp:app``, tests/apps/procapp.py) on port
0, real sockets.  Every test here fails on the code before issue 11 (a worker
killed by the master's SIGABRT, 0/10 requests after a failed recycle, the master
stopping on exit status 3/4, signals past five dropped, a single process by default).
"""

import os
import re
import signal
import socket
import time

import pytest

from process_helpers import (Load, children, get, in_thread, pid_of, start_wrk,
                             wait_until, wrk_result)

APP = "procapp:app"


def status_of(raw):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return int(m.group(1)) if m else raw


def raw_get(server, path, timeout=15.0):
    """GET on a fresh connection; everything read until the server closes."""
    return server.request(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          .encode(), timeout=timeout)


def slow_upload(server, size, seconds, timeout=20.0):
    """POST /upload, its body trickled over ``seconds``; -> (status, body)."""
    with server.connect(timeout) as s:
        s.sendall(f"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        steps = 12
        for _ in range(steps):
            time.sleep(seconds / steps)
            s.sendall(b"u" * (size // steps))
        s.sendall(b"u" * (size - steps * (size // steps)))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return status_of(data), data.split(b"\r\n\r\n", 1)[-1].decode()


def slow_download(server, path, rate, timeout=30.0):
    """GET ``path`` reading at most ``rate`` bytes a second, with a small receive
    buffer so that the server waits on us; -> (status, body length)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.settimeout(timeout)
    s.connect((server.host, server.port))
    with s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        step = rate // 10
        while True:
            chunk = s.recv(step)
            if not chunk:
                break
            data += chunk
            time.sleep(len(chunk) / rate)
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return status_of(head + b"\r\n"), len(body)


def one_worker(server):
    return wait_until(lambda: children(server.pid) if len(children(server.pid)) == 1
                      else None, 10, "one worker").pop()


# -- --timeout: 504 for the stuck request, nothing for the others ------------------

def test_stuck_requests_get_504_while_the_others_finish(serve):
    server = serve(APP, "--threads", "4", "--timeout", "2", "--timeout-grace", "2")
    worker = one_worker(server)
    # stuck in Python code, stuck in one C call (time.sleep), and two requests in
    # flight for 3 s each -- a client trickling its body, which is not app time
    hang = in_thread(raw_get, server, "/hang")
    stuck_in_c = in_thread(raw_get, server, "/sleep?60")
    uploads = [in_thread(slow_upload, server, 60000, 3.0) for _ in range(2)]
    # the 504s come without waiting for the threads (/sleep?60 is still sleeping)
    hang.join(10)
    stuck_in_c.join(10)
    assert status_of(hang.result) == 504, hang.result
    assert status_of(stuck_in_c.result) == 504, stuck_in_c.result
    for t in uploads:
        t.join(20)
        assert t.result[0] == 200 and f"pid={worker} read=60000" in t.result[1], t.result
    # the stacks, with the app's file and line
    server.wait_for_output(r"request on app thread \d passed --timeout 2s", 5)
    assert re.search(r'procapp\.py", line \d+, in hang_forever_in_app', server.output)
    assert re.search(r'procapp\.py", line \d+, in app\n\s+time\.sleep\(float',
                     server.output)
    # the thread stuck in C does not unwind within the grace: lost and replaced
    server.wait_for_output(r"app thread \d has not unwound [\d.]+s after its timeout "
                           r".*starting a replacement", 10)
    # the worker serves on, all four threads' worth
    concurrent = [in_thread(get, server, "/slow?0.5") for _ in range(4)]
    for t in concurrent:
        t.join(10)
        assert t.result[0] == 200 and pid_of(t.result[1]) == worker
    assert children(server.pid) == {worker}
    assert "killed by signal" not in server.output


def test_an_app_that_catches_exception_still_unwinds(serve):
    server = serve(APP, "--threads", "2", "--timeout", "1")
    worker = one_worker(server)
    assert status_of(raw_get(server, "/swallow")) == 504
    server.wait_for_output(r"in swallow_every_exception", 5)
    # RequestTimeout is a BaseException: the thread left the app and serves again
    for _ in range(4):
        status, body = get(server)
        assert status == 200 and pid_of(body) == worker
    assert "has not unwound" not in server.output


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_slow_download_is_not_app_time(serve, threads):
    # 16 MiB at 4 MiB/s: about 4 s, four times --timeout, most of it waiting on the
    # client (the kernel's socket buffers take a few MiB at once)
    server = serve(APP, "--threads", threads, "--timeout", "1")
    worker = one_worker(server)
    status, length = slow_download(server, "/big?16", 4 * 1048576)
    assert (status, length) == (200, 16 * 1048576)
    assert "passed --timeout" not in server.output and "stuck" not in server.output
    assert children(server.pid) == {worker}


def test_timeout_on_the_loop_thread_keeps_the_server(serve):
    # --threads 1: the exception first; a loop stuck in C is the master's to kill
    server = serve(APP, "--timeout", "1", "--timeout-grace", "1")
    first = one_worker(server)
    # the exception unwinds the app on the loop thread, which answers 504 itself
    assert status_of(raw_get(server, "/hang", timeout=10)) == 504
    server.wait_for_output(r"request on the loop thread passed --timeout 1s", 5)
    assert re.search(r"in hang_forever_in_app", server.output)
    assert wait_until(lambda: get(server)[0] == 200, 10, "serving again")
    # stuck in one C call: the heartbeat stops, the master kills the worker
    raw_get(server, "/sleep?60", timeout=15)
    server.wait_for_output(r"worker \d+ is stuck: silent for [\d.]+s", 10)
    wait_until(lambda: get(server)[0] == 200, 10, "a replacement serving")
    assert first not in children(server.pid)


def test_lost_threads_past_the_limit_recycle_the_worker(serve):
    server = serve(APP, "--threads", "2", "--timeout", "1", "--timeout-grace", "1",
                   "--max-lost-threads", "1")
    worker = one_worker(server)
    for _ in range(2):
        assert status_of(raw_get(server, "/sleep?60")) == 504
    server.wait_for_output(r"counting it as lost \(2 lost\)", 10)
    server.wait_for_output(rf"worker {worker} asks to be recycled \(lost-threads\)", 5)
    # its last connections are the lost threads': it stops without waiting for
    # them (--graceful-timeout is 30 s)
    server.wait_for_output(rf"worker {worker}: only lost threads are left; stopping now", 10)
    server.wait_for_output(rf"worker {worker} exited \(lost-threads\)", 5)
    status, body = get(server)
    assert status == 200 and pid_of(body) != worker


# -- recycling: memory, age; an app that exits ---------------------------------------

def test_max_worker_memory_recycles_gracefully(serve):
    server = serve(APP, "--max-worker-memory", "150M")
    worker = one_worker(server)
    assert get(server, "/grow?200")[0] == 200
    server.wait_for_output(rf"worker {worker} uses \d+ MiB \(--max-worker-memory 150 MiB\)",
                           5)
    server.wait_for_output(rf"worker {worker} exited \(max-worker-memory\)", 10)
    status, body = get(server)
    assert status == 200 and pid_of(body) != worker


def test_max_worker_age_recycles_without_failing_a_request(serve):
    server = serve(APP, "--max-worker-age", "1", "--max-worker-age-jitter", "0.5")
    first = one_worker(server)
    with Load(server, clients=4) as load:
        server.wait_for_output(rf"worker {first} exited \(max-worker-age\)", 10)
        wait_until(lambda: len(load.pids) >= 2, 5, "a second worker serving")
    assert load.failures == []
    assert re.search(rf"worker {first} has run for \d+s \(--max-worker-age\)", server.output)


@pytest.mark.parametrize("threads", ["1", "4"])
def test_systemexit_in_a_request_is_a_500_and_the_worker_is_replaced(serve, threads):
    server = serve(APP, "--threads", threads)
    worker = one_worker(server)
    assert status_of(raw_get(server, "/sysexit?4")) == 500
    server.wait_for_output(rf"worker {worker} asks to be recycled \(app-exit\)", 5)
    server.wait_for_output(rf"worker {worker} exited \(app-exit\)", 10)
    assert server.alive()
    status, body = get(server)
    assert status == 200 and pid_of(body) != worker


@pytest.mark.parametrize("threads", ["1", "4"])
def test_systemexit_never_stops_a_single_process_server(serve, threads):
    # no master to replace anything: the request gets its 500 (or, once the
    # response began, a cut connection) and the process serves on
    server = serve(APP, "--no-master", "--threads", threads)
    assert status_of(raw_get(server, "/sysexit?3")) == 500
    raw_get(server, "/sysexit-iter?3")
    assert server.alive()
    status, body = get(server)
    assert status == 200 and pid_of(body) == server.pid
    assert "the application raised SystemExit(3)" in server.output


@pytest.mark.parametrize("code", ["0", "3", "4"])
def test_os_exit_with_any_code_only_replaces_the_worker(serve, code):
    server = serve(APP)
    worker = one_worker(server)
    assert raw_get(server, f"/exit?{code}") == b""
    wait_until(lambda: worker not in children(server.pid), 5, "the worker to go")
    assert wait_until(lambda: get(server)[0] == 200, 10, "a replacement serving")
    assert server.alive() and "stopping" not in server.output


# -- a bad deploy never becomes an outage ---------------------------------------------

def test_bad_deploy_then_recycling_and_a_killed_worker_fail_no_request(serve, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    server = serve(APP, "-w", "2", "--max-requests", "400", "--max-requests-jitter", "100",
                   env={"PROCAPP_VERSION_FILE": str(version)})
    wait_until(lambda: len(children(server.pid)) == 2, 10, "two workers")
    version.write_text("raise")
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_output(r"reload failed: worker \d+ could not load the application", 10)
    # recycling under load: every replacement fails to import; the old workers serve
    wrk = start_wrk(server, seconds=4, connections=8)
    requests, errors, report = wrk_result(wrk)
    assert errors == [] and requests > 800, report
    server.wait_for_output(r"could not load the application; workers .* keep serving", 5)
    # a worker killed meanwhile: the other one carries the load, the master stays
    victim = sorted(children(server.pid))[0]
    os.kill(victim, signal.SIGKILL)
    server.wait_for_output(rf"worker {victim} was killed by signal 9", 5)
    wrk = start_wrk(server, seconds=2, connections=8)
    requests, errors, report = wrk_result(wrk)
    assert errors == [] and requests > 400, report
    assert server.alive() and "stopping" not in server.output
    # the deploy is fixed: the next retry boots, recycling resumes with the new code
    version.write_text("2")
    assert wait_until(lambda: "version=2" in get(server)[1], 30, "a worker of version 2")


# -- signals and orphans ---------------------------------------------------------------

def test_sigterm_during_a_preload_reimport_is_not_dropped(serve):
    server = serve(APP, "--preload", env={"PROCAPP_IMPORT_DELAY": "1.5"}, timeout=30)
    one_worker(server)
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_output(r"reloading \(SIGHUP\)", 5)
    for _ in range(8):                  # more HUPs during the re-import, then TERM
        os.kill(server.pid, signal.SIGHUP)
        time.sleep(0.02)
    os.kill(server.pid, signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert "stopping gracefully (SIGTERM)" in server.output


def test_workers_of_a_sigkilled_master_exit_and_free_the_port(serve):
    server = serve(APP, "-w", "2", "--threads", "2")
    workers = wait_until(lambda: children(server.pid) if len(children(server.pid)) == 2
                         else None, 10, "two workers")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(5)

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    wait_until(lambda: not any(alive(w) for w in workers), 5, "the workers to exit")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2)


# -- a master by default ------------------------------------------------------------

def test_a_master_and_one_worker_by_default(serve):
    server = serve(APP)
    worker = one_worker(server)
    status, body = get(server)
    assert status == 200 and pid_of(body) == worker != server.pid
    single = serve(APP, "--no-master")
    assert children(single.pid) == set()
    assert pid_of(get(single)[1]) == single.pid


def test_no_master_refuses_what_only_a_master_does(serve):
    with pytest.raises(RuntimeError, match="--no-master: --workers > 1 needs the master"):
        serve(APP, "--no-master", "-w", "2")


def test_a_worker_that_dies_before_booting_at_start_stops_the_master(tmp_path):
    # nothing has served yet and the worker dies on its way up (here: post_fork
    # ends the process; in the wild, a broken C extension): a broken deploy, so
    # the master stops with status 1 instead of replacing it forever
    import subprocess
    import sys

    from conftest import APPS, HERE

    conf = tmp_path / "conf.py"
    conf.write_text("import os\n\ndef post_fork(server, worker):\n    os._exit(1)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (APPS, os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-m", "fastwsgi", "--bind", "127.0.0.1:0",
                             "-c", str(conf), APP], cwd=HERE, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "could not boot; stopping" in result.stderr
