"""python -m bench costs: what one response costs each server, side by side.

Contract: for one scenario (default ``big``) and the given servers (installed
and started as the main bench does, server on CPU 0, wrk on CPU 1), play
interleaved rounds and report per response:

- CPU microseconds of the server's process tree and of wrk (wrk's from its
  rusage): who pays for the kernel's loopback work shows here;
- TCP segments sent, retransmitted, tail-loss probes and DSACKs received per
  response, from /proc/net/snmp and /proc/net/netstat (host-wide counters:
  other traffic on the machine adds to them, so look at the bg % column);
- the connections' socket state in mid-run (``ss -tmi``): median send buffer
  (skmem tb), peer window (snd_wnd), congestion window, and the share of time
  the sender was limited by the receiver's window;
then, in one more run per server under ``strace -f`` (which slows the server,
so only counts are taken from it): system calls per response by name, and the
mean bytes per write-side call (write, writev, send*, sendfile).

Unlike requests/s, the counts do not depend on how busy the machine is; the
CPU figures do, so each row carries the bg % of the server's CPU. Output:
``OUT/costs-SCENARIO.md`` and ``.json``.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from . import load, run, servers
from .measure import TreeSampler, tree
from .scenarios import SCENARIOS

WRITE_CALLS = {"write", "writev", "send", "sendto", "sendmsg", "sendfile", "sendfile64"}
EXT_COUNTERS = ("TCPLossProbes", "TCPDSACKRecv", "DelayedACKs")


def _counters():
    """{name: value} of the host's TCP counters (snmp Tcp: and netstat TcpExt:)."""
    out = {}
    for path, prefix in (("/proc/net/snmp", "Tcp:"), ("/proc/net/netstat", "TcpExt:")):
        with open(path) as f:
            rows = [line.split() for line in f if line.startswith(prefix)]
        out.update(zip(rows[0][1:], (int(v) for v in rows[1][1:])))
    return out


def _socket_state(port):
    """Medians over the server's established connections, from ss -tmi."""
    text = subprocess.run(["ss", "-tmi", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True).stdout

    def med(pattern, conv=int):
        vals = [conv(v) for v in re.findall(pattern, text)]
        return statistics.median(vals) if vals else None
    return {"connections": len(re.findall(r"skmem:", text)),
            "sndbuf": med(r"skmem:\([^)]*\btb(\d+)"),
            "peer_window": med(r"snd_wnd:(\d+)"),
            "cwnd": med(r"\bcwnd:(\d+)"),
            "rwnd_limited_pct": med(r"rwnd_limited:\d+ms\(([\d.]+)%\)", float)}


def _wrk(argv):
    """Run wrk; return (WrkResult, its CPU seconds from rusage)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise load.LoadError(f"wrk exited {proc.returncode}: {out.strip()[:200]}")
    return load.parse_output(out), usage.ru_utime + usage.ru_stime


_CALL = re.compile(r"^\d+\s+(?:<\.\.\. (\w+) resumed>|(\w+)\().*\)\s+=\s+(-?\d+)")


def parse_strace(text):
    """{syscall: [count, bytes returned by successful write-side calls]}."""
    calls = {}
    for line in text.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        name, ret = m.group(1) or m.group(2), int(m.group(3))
        entry = calls.setdefault(name, [0, 0])
        entry[0] += 1
        if name in WRITE_CALLS and ret > 0:
            entry[1] += ret
    return calls


def measure_round(server, url, script, opts, scenario):
    connections = scenario.connections or opts.connections
    argv = load.wrk_command(url, script, opts.duration, connections, cpu=run.CLIENT_CPU,
                            timeout=scenario.timeout, nice=opts.nice)
    c0 = _counters()
    sampler = TreeSampler(server.pid)
    sampler.start()
    state = {}

    def snapshot():
        time.sleep(opts.duration / 2)
        state.update(_socket_state(server.port))
    snap = threading.Thread(target=snapshot, daemon=True)
    snap.start()
    result, wrk_cpu = _wrk(argv)
    usage = sampler.stop()
    snap.join()
    c1 = _counters()
    n = max(result.requests, 1)
    row = {"rps": result.rps, "requests": result.requests,
           "server_us": 1e6 * usage.cpu_seconds / n, "wrk_us": 1e6 * wrk_cpu / n,
           "server_cpu_pct": usage.cpu_percent,
           "bg_pct": max(0.0, usage.cpu_busy.get(run.SERVER_CPU, 0.0) - usage.cpu_percent),
           "segments": (c1["OutSegs"] - c0["OutSegs"]) / n,
           "retransmits": (c1["RetransSegs"] - c0["RetransSegs"]) / n}
    for k in EXT_COUNTERS:
        row[k] = (c1.get(k, 0) - c0.get(k, 0)) / n
    row.update(state)
    return row


def strace_round(server, url, script, opts, scenario, outdir):
    log = Path(outdir) / f"strace-{server.spec.name}.txt"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-s", "0", "-o", str(log),
                               "-p", str(server.pid)] +
                              [a for pid in _descendants(server.pid) for a in ("-p", str(pid))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    connections = scenario.connections or opts.connections
    try:
        result, _ = _wrk(load.wrk_command(url, script, opts.duration, connections,
                                          cpu=run.CLIENT_CPU, timeout=scenario.timeout,
                                          nice=opts.nice))
    finally:
        tracer.terminate()
        tracer.wait(10)
    calls = parse_strace(log.read_text(errors="replace"))
    n = max(result.requests, 1)
    written = sum(b for name, (c, b) in calls.items() if name in WRITE_CALLS)
    nwrites = sum(c for name, (c, b) in calls.items() if name in WRITE_CALLS)
    return {"requests": result.requests,
            "per_response": {name: c / n for name, (c, b) in
                             sorted(calls.items(), key=lambda kv: -kv[1][0])},
            "bytes_per_write": written / nwrites if nwrites else None}


def _descendants(pid):
    """The processes below pid (a master's workers); strace -f -p takes each
    process's threads itself."""
    return [p for p in tree(pid) if p != pid]


def main(argv):
    p = argparse.ArgumentParser(prog="python -m bench costs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="fastwsgi,fastpysgi",
                   help="comma-separated (default: %(default)s)")
    p.add_argument("--scenario", default="big", choices=sorted(SCENARIOS),
                   help="one scenario (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per run (5)")
    p.add_argument("--connections", type=int, default=64,
                   help="wrk connections unless the scenario sets its own (64)")
    p.add_argument("--no-strace", action="store_true", help="skip the strace run")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of server and wrk, as in the main run (0)")
    from .cli import _common
    _common(p)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.rounds, opts.duration = 1, 2
    names = [n.strip() for n in opts.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in servers.SERVERS]
    if unknown:
        p.error(f"unknown servers: {', '.join(unknown)}")
    if not opts.no_strace and not shutil.which("strace"):
        p.error("strace is not installed (apt-get install strace), or pass --no-strace")
    scenario = SCENARIOS[opts.scenario]
    out = Path(opts.out).resolve()
    rundir = run.prepare_rundir(out)
    script = load.write_script(scenario, rundir)
    try:
        os.sched_setaffinity(0, {run.CLIENT_CPU})
    except (OSError, AttributeError):
        pass
    envs = {}
    for name in names:
        spec = servers.SERVERS[name]
        envs[name] = servers.install(spec, python=opts.python, repo=opts.repo)
    rows = {n: [] for n in names}
    traces = {}
    for rnd in range(opts.rounds + (0 if opts.no_strace else 1)):
        for name in names:
            spec = servers.SERVERS[name]
            server = servers.start(spec, envs[name], scenario.app, f"costs{rnd}", rundir,
                                   cpu=run.SERVER_CPU, nice=opts.nice)
            try:
                server.wait_ready()
                url = f"http://{servers.HOST}:{server.port}{scenario.path}"
                # warm-up
                load.run_wrk(load.wrk_command(url, script, 1,
                                              scenario.connections or opts.connections,
                                              cpu=run.CLIENT_CPU, timeout=scenario.timeout,
                                              nice=opts.nice))
                if rnd < opts.rounds:
                    rows[name].append(measure_round(server, url, script, opts, scenario))
                else:
                    traces[name] = strace_round(server, url, script, opts, scenario, out)
            finally:
                server.stop()
    data = {"scenario": scenario.name, "options": vars(opts) | {"out": str(out),
                                                                 "repo": str(opts.repo)},
            "rounds": rows, "strace": traces}
    text = markdown(data)
    (out / f"costs-{scenario.name}.json").write_text(json.dumps(data, indent=2, default=str))
    (out / f"costs-{scenario.name}.md").write_text(text)
    print(text)
    return 0


COLUMNS = [("rps", "req/s", "{:,.0f}"), ("server_us", "server CPU µs", "{:.1f}"),
           ("wrk_us", "wrk CPU µs", "{:.1f}"), ("server_cpu_pct", "server CPU %", "{:.0f}"),
           ("bg_pct", "bg %", "{:.0f}"), ("segments", "TCP segs", "{:.1f}"),
           ("retransmits", "retrans", "{:.2f}"), ("TCPLossProbes", "loss probes", "{:.2f}"),
           ("TCPDSACKRecv", "DSACKs", "{:.2f}"), ("DelayedACKs", "delayed ACKs", "{:.2f}"),
           ("sndbuf", "sndbuf", "{:,.0f}"), ("peer_window", "peer window", "{:,.0f}"),
           ("cwnd", "cwnd", "{:.0f}"), ("rwnd_limited_pct", "rwnd-limited %", "{:.0f}")]


def markdown(data):
    lines = [f"# Per-response costs: {data['scenario']}", "",
             f"Medians of {data['options']['rounds']} interleaved rounds of "
             f"{data['options']['duration']} s; per response unless a column says otherwise. "
             "TCP counters are host-wide.", ""]
    lines.append("| server | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name, rows in data["rounds"].items():
        cells = []
        for key, _, fmt in COLUMNS:
            vals = [r[key] for r in rows if r.get(key) is not None]
            cells.append(fmt.format(statistics.median(vals)) if vals else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if data["strace"]:
        lines += ["", "System calls per response (one run under `strace -f`):", ""]
        lines.append("| server | responses | bytes per write call | calls per response |")
        lines.append("|---|---|---|---|")
        for name, t in data["strace"].items():
            calls = ", ".join(f"{k} {v:.2f}" for k, v in t["per_response"].items() if v >= 0.01)
            bpw = "—" if t["bytes_per_write"] is None else f"{t['bytes_per_write']:,.0f}"
            lines.append(f"| {name} | {t['requests']} | {bpw} | {calls} |")
    lines.append("")
    return "\n".join(lines)
