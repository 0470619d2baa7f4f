"""python -m bench idle: what many idle keep-alive connections cost, side by side.

For each server (one process, pinned to CPU 0, installed and started as the main
bench does): open N connections that each complete one request and then stay
open, idle; report the server's RSS before and with them, the bytes per idle
connection, how long a new client then waits for its answer, and how many of the
N the server kept open.

    python -m bench idle [--servers fastwsgi,bjoern,fastwsgi-c,granian]
                         [--connections 10000] [--out bench/out]
"""

import argparse
import os
import resource
import socket
import sys
import time
from pathlib import Path

from . import envs, servers
from .run import prepare_rundir
from .scenarios import SCENARIOS

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
ROOT = Path(__file__).resolve().parent.parent


def tree_rss_kib(pid):
    """VmRSS of `pid` and its descendants, KiB."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"Hello, World!"):
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("closed before the response ended")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected response {data[:40]!r}")


def hold(port, n):
    """n keep-alive connections, each having completed one request."""
    socks = []
    for i in range(n):
        s = socket.create_connection((servers.HOST, port), timeout=10)
        s.sendall(REQUEST)
        socks.append(s)
        if len(socks) % 200 == 0:
            for t in socks[-200:]:
                read_response(t)
    for t in socks[len(socks) - len(socks) % 200:]:
        read_response(t)
    return socks


def still_open(socks):
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += s.recv(1) != b""
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def measure(name, env, rundir, n):
    spec = servers.SERVERS[name]
    server = servers.start(spec, env, SCENARIOS["hello"].app, "idle", rundir, cpu=0)
    socks = []
    try:
        server.wait_ready()
        probe = socket.create_connection((servers.HOST, server.port), timeout=10)
        probe.sendall(REQUEST)
        read_response(probe)
        probe.close()
        time.sleep(0.5)
        base = tree_rss_kib(server.pid)
        socks = hold(server.port, n)
        time.sleep(1.0)
        held = tree_rss_kib(server.pid)
        t0 = time.monotonic()
        late = socket.create_connection((servers.HOST, server.port), timeout=10)
        late.sendall(REQUEST)
        read_response(late)
        wait_ms = (time.monotonic() - t0) * 1000
        late.close()
        return dict(server=name, base_mib=base / 1024, held_mib=held / 1024,
                    per_conn=(held - base) * 1024 / n, new_client_ms=wait_ms,
                    open=still_open(socks))
    except OSError as exc:
        return dict(server=name, error=f"{type(exc).__name__}: {exc}")
    finally:
        for s in socks:
            s.close()
        server.stop()


def main(argv):
    p = argparse.ArgumentParser(prog="python -m bench idle")
    p.add_argument("--servers", default="fastwsgi,bjoern,fastwsgi-c,granian")
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    opts = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < opts.connections + 100:
        sys.exit(f"the hard open-files limit ({hard}) is below --connections + 100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # ours caps connections per worker (10000 by default): lift it above the crowd
    os.environ["FASTWSGI_MAX_CONNECTIONS"] = str(opts.connections + 1000)
    rundir = prepare_rundir(Path(opts.out) / "idle")
    rows = []
    for name in opts.servers.split(","):
        try:
            env = servers.install(servers.SERVERS[name], repo=str(ROOT),
                                  log=lambda m: print(m, file=sys.stderr))
        except envs.EnvError as exc:
            rows.append(dict(server=name, error=f"install failed: {exc}"))
            continue
        print(f"{name}: {opts.connections} idle connections ...", file=sys.stderr)
        rows.append(measure(name, env, rundir, opts.connections))
    lines = [f"# {opts.connections} idle keep-alive connections (each served one request)", "",
             "| server | RSS before MiB | RSS with them MiB | bytes per connection "
             "| new client served in ms | still open |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['server']} | ✗ {r['error']} | | | | |")
        else:
            lines.append(f"| {r['server']} | {r['base_mib']:.1f} | {r['held_mib']:.1f} | "
                         f"{r['per_conn']:.0f} | {r['new_client_ms']:.1f} | {r['open']} |")
    text = "\n".join(lines) + "\n"
    out = Path(opts.out) / "idle.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0
