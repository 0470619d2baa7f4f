"""The master process (fastwsgi/arbiter.py): real processes, real signals, real load.

Each test starts ``python -m fastwsgi -w N procapp:app`` (tests/apps/procapp.py
answers ``pid=... version=...``) and talks to it over TCP.
"""

import os
import signal
import socket
import sys
import threading
import time

import pytest

from process_helpers import (Load, booted_pids, children, get, pid_of, start_wrk,
                             wait_until, wrk_result)

APP = "procapp:app"


def get_quietly(server, path, timeout=10.0):
    """A request whose connection the test expects to be cut."""
    try:
        return get(server, path, timeout=timeout)
    except OSError as exc:
        return exc


def worker_count(server, n, timeout=5.0):
    return wait_until(lambda: len(children(server.pid)) == n, timeout,
                      f"{n} workers (have {children(server.pid)})")


def test_master_forks_workers_that_share_the_socket(serve):
    server = serve(APP, "-w", "2")
    # the banner names the master, which serves nothing itself
    assert server.pid == server.proc.pid
    worker_count(server, 2)
    workers = children(server.pid)
    seen = set()
    for _ in range(40):
        status, body = get(server)
        assert status == 200 and "multiprocess=True" in body
        seen.add(pid_of(body))
    assert seen <= workers and server.pid not in seen
    assert server.stop() == 0
    assert "stopping gracefully (SIGTERM)" in server.output


def test_sigkill_a_worker_during_load_it_is_replaced(serve):
    server = serve(APP, "-w", "2")
    worker_count(server, 2)
    with Load(server, clients=4) as load:
        time.sleep(0.3)
        victim = sorted(children(server.pid))[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        server.wait_for_output(rf"worker {victim} was killed by signal 9 \(SIGKILL\)", 2)
        wait_until(lambda: len(booted_pids(server)) == 3, 2, "a replacement worker")
        replaced_in = time.monotonic() - killed_at
        ok_after_kill = load.ok
        time.sleep(0.5)
        assert load.ok > ok_after_kill + 50           # still answering under load
    assert replaced_in < 1.0
    new = booted_pids(server)[-1]
    assert wait_until(lambda: new in {pid_of(get(server)[1]) for _ in range(20)}, 5,
                      "the replacement serving")
    # only connections the dead worker held can fail
    assert len(load.failures) <= 4, load.failures


def test_sighup_under_wrk_load_fails_no_request(serve, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    server = serve(APP, "-w", "2", env={"PROCAPP_VERSION_FILE": str(version)})
    worker_count(server, 2)
    first = children(server.pid)
    wrk = start_wrk(server, seconds=4, connections=16)
    time.sleep(1.0)
    version.write_text("2")
    server.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    version.write_text("3")
    server.send_signal(signal.SIGHUP)
    requests, errors, report = wrk_result(wrk)
    assert errors == [], report
    assert requests > 1000, report
    assert server.output.count("reload: new workers serving") == 2
    # the code was imported again: every answer comes from the third version
    bodies = [get(server)[1] for _ in range(10)]
    assert all("version=3" in b for b in bodies), bodies
    assert not ({pid_of(b) for b in bodies} & first)
    print(f"SIGHUP x2 under wrk -c16 -d4s: {requests} requests, no errors")


def test_sigterm_lets_a_slow_request_finish(serve):
    server = serve(APP, "-w", "2", "--graceful-timeout", "10")
    worker_count(server, 2)
    result = {}

    def slow():
        result["response"] = get(server, "/slow?1.5")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    t.join(5)
    assert result["response"][0] == 200
    assert time.monotonic() - started < 3
    assert server.output.rstrip().endswith("stopped")


def test_graceful_timeout_then_kill_and_sigquit_immediate(serve):
    server = serve(APP, "-w", "1", "--max-requests", "1000000", "--graceful-timeout", "1")
    worker_count(server, 1)
    t = threading.Thread(target=lambda: get_quietly(server, "/slow?30"), daemon=True)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 2.5

    server = serve(APP, "-w", "2", "--graceful-timeout", "30")
    worker_count(server, 2)
    t = threading.Thread(target=lambda: get_quietly(server, "/slow?30"), daemon=True)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    server.send_signal(signal.SIGQUIT)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 2
    assert "stopping now (SIGQUIT)" in server.output


def test_ttin_ttou_change_the_worker_count(serve):
    server = serve(APP, "-w", "2")
    worker_count(server, 2)
    server.send_signal(signal.SIGTTIN)
    worker_count(server, 3)
    server.send_signal(signal.SIGTTOU)
    worker_count(server, 2)
    server.send_signal(signal.SIGTTOU)
    worker_count(server, 1)
    server.send_signal(signal.SIGTTOU)           # never fewer than one
    time.sleep(0.5)
    worker_count(server, 1)
    assert get(server)[0] == 200
    assert "workers: 3 (SIGTTIN)" in server.output


def test_pidfile_and_hooks(serve, tmp_path):
    calls = tmp_path / "calls"
    conf = tmp_path / "conf.py"
    conf.write_text(
        "import os\n"
        f"CALLS = {str(calls)!r}\n"
        "def _note(text):\n"
        "    with open(CALLS, 'a') as f:\n"
        "        f.write(text + '\\n')\n"
        "def on_starting(server):\n"
        "    _note(f'on_starting {os.getpid()}')\n"
        "def post_fork(server, worker):\n"
        "    _note(f'post_fork {worker.pid} {os.getpid()}')\n"
        "def worker_exit(server, worker):\n"
        "    _note(f'worker_exit {worker.pid}')\n"
        "def on_exit(server):\n"
        "    _note(f'on_exit {os.getpid()}')\n")
    pidfile = tmp_path / "run" / "fastwsgi.pid"
    pidfile.parent.mkdir()
    server = serve(APP, "-c", str(conf), "-w", "2", "--pid", str(pidfile))
    worker_count(server, 2)
    assert pidfile.read_text().strip() == str(server.pid)
    workers = children(server.pid)
    assert get(server)[0] == 200
    assert server.stop() == 0
    assert not pidfile.exists()
    lines = calls.read_text().splitlines()
    assert lines[0] == f"on_starting {server.pid}"
    assert lines[-1] == f"on_exit {server.pid}"
    assert sorted(lines[1:-1]) == sorted(
        [f"post_fork {w} {w}" for w in workers] + [f"worker_exit {w}" for w in workers])


WRAPPER = """\
import os, socket, sys
# what systemd does: a listening socket on fd 3, LISTEN_FDS=1, LISTEN_PID=<the
# pid that will run fastwsgi> -- this one, since exec keeps the pid
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
    sock.close()
else:
    os.set_inheritable(sock.detach(), True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv({python!r}, [{python!r}] + sys.argv[1:])
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activation(serve, tmp_path, monkeypatch, workers):
    wrapper = tmp_path / "systemd-like"
    wrapper.write_text(f"#!{sys.executable}\n" + WRAPPER.format(python=sys.executable))
    wrapper.chmod(0o755)
    # ServerProcess runs [sys.executable, "-m", "fastwsgi", ...]: run it through the
    # wrapper, which execs the real interpreter with fd 3 set up
    monkeypatch.setattr(sys, "executable", str(wrapper))
    server = serve(APP, "-w", workers, bind=False)
    monkeypatch.undo()
    status, body = get(server)
    assert status == 200
    assert "(pid" in server.output and server.port > 0
    assert server.stop() == 0


def test_usr1_reopens_the_access_log(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve(APP, "-w", "2", "--access-logfile", str(log))
    worker_count(server, 2)
    for _ in range(4):
        assert get(server)[0] == 200
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 4, 3, "4 log lines")
    log.rename(tmp_path / "access.log.1")
    server.send_signal(signal.SIGUSR1)
    server.wait_for_output("log files reopened")
    time.sleep(0.6)                               # the workers reopen on their next tick
    for _ in range(4):
        assert get(server)[0] == 200
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 4, 3,
               "4 lines in the new access log")


def test_preload_imports_once_and_sighup_reimports(serve, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    server = serve(APP, "-w", "2", "--preload", env={"PROCAPP_VERSION_FILE": str(version)})
    worker_count(server, 2)
    assert "version=1" in get(server)[1]
    version.write_text("2")
    server.send_signal(signal.SIGHUP)
    server.wait_for_output("reload: new workers serving")
    wait_until(lambda: all("version=2" in get(server)[1] for _ in range(6)), 5,
               "the re-imported code")


def test_a_reload_that_cannot_import_keeps_the_old_workers(serve, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    imports = tmp_path / "imports"
    server = serve(APP, "-w", "2", env={"PROCAPP_VERSION_FILE": str(version),
                                        "PROCAPP_IMPORTS": str(imports)})
    wait_until(lambda: imports.exists() and len(imports.read_text().splitlines()) == 2,
               5, "both workers to import the app")
    old = children(server.pid)
    version.write_text("raise")
    server.send_signal(signal.SIGHUP)
    server.wait_for_output("reload failed")
    time.sleep(0.3)
    assert children(server.pid) == old
    assert all("version=1" in get(server)[1] for _ in range(6))
    version.write_text("2")                         # fixed: the next reload works
    server.send_signal(signal.SIGHUP)
    server.wait_for_output("reload: new workers serving")
    wait_until(lambda: all("version=2" in get(server)[1] for _ in range(6)), 5, "version 2")


def test_app_that_cannot_load_stops_the_master(serve):
    # no worker ever served: the CLI's one error line, status 1, no banner
    with pytest.raises(RuntimeError, match="(?s)exited with 1:.*fastwsgi: error: module "
                                           "'procapp' has no attribute 'nope'"):
        serve("procapp:nope", "-w", "2")


def test_reload_restarts_workers_when_a_source_changes(serve, tmp_path):
    app = tmp_path / "devapp.py"
    app.write_text("def app(environ, start_response):\n"
                   "    start_response('200 OK', [('Content-Length', '3')])\n"
                   "    return [b'one']\n")
    server = serve("devapp:app", "--reload", cwd=str(tmp_path))
    assert wait_until(lambda: get(server)[1] == "one", 5, "the first version")
    app.write_text(app.read_text().replace("b'one'", "b'two'"))
    stat = app.stat()
    os.utime(app, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    server.wait_for_output("devapp.py changed; reloading", 5)
    assert wait_until(lambda: get(server)[1] == "two", 5, "the edited version")


def test_reuse_port_workers_listen_on_their_own_sockets(serve):
    server = serve(APP, "-w", "2", "--reuse-port")
    worker_count(server, 2)
    seen = {pid_of(get(server)[1]) for _ in range(60)}
    assert seen <= children(server.pid) and len(seen) == 2
    # the master only reserves the port: it must not be listening itself
    master_fds = os.listdir(f"/proc/{server.pid}/fd")
    inodes = {os.readlink(f"/proc/{server.pid}/fd/{fd}") for fd in master_fds}
    with open("/proc/net/tcp") as f:
        listening = {line.split()[9] for line in f.readlines()[1:] if line.split()[3] == "0A"}
    assert not {f"socket:[{i}]" for i in listening} & inodes
    victim = sorted(children(server.pid))[0]
    os.kill(victim, signal.SIGKILL)
    worker_count(server, 2)
    wait_until(lambda: victim not in children(server.pid), 2, "the victim reaped")
    assert all(get(server)[0] == 200 for _ in range(10))
    sock = socket.create_connection((server.host, server.port))
    sock.close()


def test_unix_socket_outlives_recycled_workers_and_goes_with_the_master(serve, tmp_path):
    path = str(tmp_path / "fw.sock")
    server = serve(APP, "-w", "2", "--max-requests", "3", "--bind", f"unix:{path}",
                   bind=False)
    pids = set()
    deadline = time.monotonic() + 20
    while len(pids) < 4 and time.monotonic() < deadline:   # four generations of workers
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        pids.add(pid_of(data.decode()))
    assert len(pids) >= 4
    assert server.stop() == 0
    assert not os.path.exists(path)
