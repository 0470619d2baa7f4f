"""python -m bench instructions: instructions per request of our server, counted.

Time on a shared machine is noisy; valgrind's callgrind counts instructions, which
are the same for the same build, inputs and environment whatever else the machine
does. This starts fastwsgi (installed in the bench venv, as the main bench does)
under callgrind with the hello app, warms it up, zeroes the counters, drives
--requests requests, dumps, and reports the instructions per request with the
functions that spend them (self cost, whole process: interpreter, our compiled
modules, libc; the kernel is not counted).

    python -m bench instructions [--mode keepalive|newconn] [--requests 5000]
                                 [--top 30] [--out bench/out] [--metrics]

--metrics runs it with --status-bind (metrics recorded per request).

keepalive: 8 connections, each sending one request and reading its response in
turn; newconn: one request per connection, with Connection: close.
"""

import argparse
import collections
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import envs, servers
from .run import prepare_rundir

ROOT = Path(__file__).resolve().parent.parent
KEEPALIVE = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n"
NEWCONN = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
BODY = b"Hello, World!"


def drive(port, mode, n, conns=8):
    """Send n requests; every response must end with the hello body."""
    if mode == "newconn":
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                s.sendall(NEWCONN)
                raw = b""
                while chunk := s.recv(65536):
                    raw += chunk
            if not raw.endswith(BODY):
                raise RuntimeError(f"unexpected response: {raw[:200]!r}")
        return
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(conns)]
    try:
        done = 0
        while done < n:
            batch = socks[:min(conns, n - done)]
            for s in batch:
                s.sendall(KEEPALIVE)
            for s in batch:
                raw = b""
                while not raw.endswith(BODY):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("the server closed a keep-alive connection")
                    raw += chunk
            done += len(batch)
    finally:
        for s in socks:
            s.close()


def self_costs(path):
    """{function: self instructions} from a callgrind dump (name compression aware)."""
    names, cost = {}, collections.Counter()
    fn, skip_next = None, False

    def name(tok):
        m = re.match(r"\((\d+)\)(?: (.*))?", tok)
        if not m:
            return tok
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), tok)

    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = name(line[3:].strip())
            elif line.startswith("cfn="):
                name(line[4:].strip())          # registers the compressed name
            elif line.startswith("calls="):
                skip_next = True                # the next cost line is the call's inclusive cost
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if fn is not None and len(parts) >= 2:
                    cost[fn] += int(parts[1])
    return cost


def measure(env, rundir, mode, requests, warmup, extra=()):
    out = rundir / "callgrind.out"
    vlog = rundir / "valgrind.log"
    slog = rundir / "server.log"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={vlog}",
           # --no-master: the profiled process must be the one that serves
           str(env.python), "-m", "fastwsgi", "--no-master", "--bind", "127.0.0.1:0",
           *extra, "bench_apps:hello"]
    with open(slog, "w") as log:
        proc = subprocess.Popen(cmd, cwd=rundir, stdout=log, stderr=subprocess.STDOUT,
                                env={"PYTHONPATH": str(rundir), "PATH": "/usr/bin:/bin",
                                     # str hashes seeded alike in every run: the
                                     # count is then repeatable to a few instructions
                                     "PYTHONHASHSEED": "0"})
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", slog.read_text())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.2)
        if port is None:
            raise RuntimeError(f"the server did not start: {slog.read_text()[-500:]}")
        drive(port, mode, warmup)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drive(port, mode, requests)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    dumps = sorted(rundir.glob("callgrind.out.*"))
    if not dumps:
        raise RuntimeError(f"no callgrind dump in {rundir}")
    return self_costs(dumps[0])


def main(argv):
    p = argparse.ArgumentParser(prog="python -m bench instructions",
                                description="Instructions per request of fastwsgi "
                                            "(valgrind --tool=callgrind), hello app.")
    p.add_argument("--mode", choices=("keepalive", "newconn"), default="keepalive")
    p.add_argument("--requests", type=int, default=5000, help="measured requests (5000)")
    p.add_argument("--warmup", type=int, default=400, help="requests before counting (400)")
    p.add_argument("--top", type=int, default=30, help="functions listed (30)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    p.add_argument("--metrics", action="store_true",
                   help="with --status-bind: metrics recorded per request")
    opts = p.parse_args(argv)
    if opts.requests < 1:
        sys.exit("--requests must be >= 1")
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install valgrind)")
    try:
        name = "fastwsgi-metrics" if opts.metrics else "fastwsgi"
        env = servers.install(servers.SERVERS[name], repo=str(ROOT),
                              log=lambda m: print(m, file=sys.stderr))
    except envs.EnvError as exc:
        sys.exit(f"cannot install fastwsgi into the bench venv: {exc}")
    tag = f"{opts.mode}-metrics" if opts.metrics else opts.mode
    rundir = prepare_rundir(Path(opts.out) / f"instructions-{tag}")
    print(f"fastwsgi under callgrind: {opts.requests} {opts.mode} requests ...", file=sys.stderr)
    extra = ("--status-bind", "127.0.0.1:0") if opts.metrics else ()
    cost = measure(env, rundir, opts.mode, opts.requests, opts.warmup, extra)
    total = sum(cost.values())
    lines = [f"# Instructions per request: fastwsgi, hello app, {tag}", "",
             f"{total // opts.requests:,} instructions per request ({total:,} for "
             f"{opts.requests:,} requests; valgrind --tool=callgrind, user space only).", "",
             "| per request | share | function (self cost) |", "|---|---|---|"]
    for fn, c in cost.most_common(opts.top):
        lines.append(f"| {c // opts.requests:,} | {100 * c / total:.1f} % | `{fn[:100]}` |")
    text = "\n".join(lines) + "\n"
    target = Path(opts.out) / f"instructions-{tag}.md"
    target.write_text(text)
    print(text)
    print(f"wrote {target}", file=sys.stderr)
    return 0
