"""Helpers of the process-model tests (test_arbiter.py, test_workers.py): plain
HTTP requests, a keep-alive load generator in threads, wrk, and /proc lookups."""

import http.client
import os
import re
import shutil
import subprocess
import threading
import time

import pytest


def get(server, path="/", timeout=10.0):
    """One request on a fresh connection -> (status, body text)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def pid_of(body):
    """The worker pid in a procapp response body."""
    return int(re.search(r"pid=(\d+)", body).group(1))


def children(pid):
    """Pids of the live (not zombie) children of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def in_thread(fn, *args):
    """Run fn(*args) in a thread; .result holds its return value or the exception."""
    def run():
        try:
            t.result = fn(*args)
        except Exception as exc:       # the test inspects it
            t.result = exc

    t = threading.Thread(target=run, daemon=True)
    t.result = None
    t.start()
    return t


def booted_pids(server):
    return [int(m) for m in re.findall(r"worker (\d+) booted", server.output)]


class Load:
    """Keep-alive clients in threads, requesting ``path`` until stop(); counts
    successes and keeps every failure (a non-200 or an exception) with its cause."""

    def __init__(self, server, clients=4, path="/"):
        self.server = server
        self.path = path
        self.ok = 0
        self.failures = []
        self.pids = set()
        self.answers = []           # the pid of every success, in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(clients)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self):
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        while not self._stop.is_set():
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read().decode()
                with self._lock:
                    if resp.status == 200:
                        self.ok += 1
                        self.pids.add(pid_of(body))
                        self.answers.append(pid_of(body))
                    else:
                        self.failures.append(f"status {resp.status}")
            except Exception as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                time.sleep(0.01)
        conn.close()


def require_wrk():
    path = shutil.which("wrk")
    if path is None:
        pytest.fail("wrk is not installed (apt-get install wrk; .ci/run installs it): "
                    "the load tests need it")
    return path


def start_wrk(server, seconds, connections=16, threads=2, path="/"):
    wrk = require_wrk()
    return subprocess.Popen(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
         f"http://{server.host}:{server.port}{path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(proc, timeout=30):
    """Wait for wrk; return (requests, error lines) from its report."""
    out, _ = proc.communicate(timeout=timeout)
    m = re.search(r"(\d+) requests in", out)
    assert m, f"no wrk report:\n{out}"
    errors = [line.strip() for line in out.splitlines()
              if "Socket errors" in line or "Non-2xx or 3xx" in line]
    return int(m.group(1)), errors, out
