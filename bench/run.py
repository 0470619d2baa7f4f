"""The benchmark run: install, then interleaved rounds, then the report.

Contract: ``run(options)`` installs every selected server (a failure is
recorded and the server skipped), then for each scenario plays ``rounds``
rounds, each visiting every server in turn (A B C A B C ...). One visit is:
start the server on a fresh port, check its answers, warm up, measure
(wrk + /proc sampling), check again, stop. A server that answers wrongly,
returns non-2xx under load, or dies is marked for that scenario and not
visited again there. Returns the results dict that bench/report.py renders.

This process pins itself to the load generator's CPU so the sampler and the
checks never take time from the server's.
"""
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import apps, check, envs, load, servers
from .scenarios import SCENARIOS

SERVER_CPU = 0
CLIENT_CPU = 1


class Progress:
    def __init__(self, total):
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def line(self, text, final=False):
        msg = f"[{self.done:3d}/{self.total}] {text}"
        if self.tty:
            end = "\n" if final else ""
            sys.stderr.write("\r\033[K" + msg + end)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def log(self, text):
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def machine_info():
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tools = {}
    for tool, args in (("wrk", ["wrk", "-v"]), ("nginx", ["nginx", "-v"])):
        if shutil.which(tool):
            p = subprocess.run(args, capture_output=True, text=True)
            tools[tool] = (p.stdout + p.stderr).strip().splitlines()[0]
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "os": _os_release(), "python": platform.python_version(), "tools": tools}


def _os_release():
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def prepare_rundir(out):
    rundir = Path(out) / "run"
    if rundir.exists():
        shutil.rmtree(rundir)
    (rundir / "logs").mkdir(parents=True)
    here = Path(__file__).resolve().parent
    shutil.copy(here / "apps.py", rundir / "bench_apps.py")
    shutil.copy(here / "launch.py", rundir / "bench_launch.py")
    (rundir / "bench_flask.py").write_text(apps.FLASK_SHIM)
    apps.write_static_files(rundir / apps.STATIC_DIR)
    return rundir


def install_all(names, options, progress):
    """{name: env or None} for the servers that installed; failures recorded."""
    installed, failures, versions = {}, {}, {}
    for name in names:
        spec = servers.SERVERS[name]
        progress.line(f"installing {name} ...")
        try:
            env = servers.install(spec, python=options.python, repo=options.repo,
                                  log=progress.log)
            installed[name] = env
            versions[name] = servers.version(spec, env)
        except envs.EnvError as exc:
            failures[name] = f"install failed: {exc}"
            progress.log(f"{name}: {failures[name].splitlines()[0]}")
    return installed, failures, versions


def visit(spec, env, scenario, options, rundir, script, progress, label):
    """One start-check-warm-measure-check-stop cycle. Returns a round dict."""
    rnd = {"ok": False}
    try:
        server = servers.start(spec, env, scenario.app, scenario.name, rundir,
                               cpu=SERVER_CPU, nice=options.nice)
    except OSError as exc:
        return dict(rnd, mark="start failed", detail=str(exc))
    rnd["server_argv"] = servers.display_command(server.argv, server.port).replace(
        str(rundir), "RUNDIR")
    try:
        try:
            server.wait_ready()
        except servers.StartError as exc:
            return dict(rnd, mark="start failed", detail=str(exc))
        before = check.check(server.port, scenario)
        rnd["framing"] = sorted(before.framings)
        rnd["check_notes"] = sorted(before.notes)
        if not before.ok:
            return dict(rnd, mark="wrong response", detail=f"before load: {before.detail}")
        url = f"http://{servers.HOST}:{server.port}{scenario.path}"
        connections = scenario.connections or options.connections
        if options.warmup > 0:
            progress.line(f"{label}: warm-up")
            try:
                load.run_wrk(load.wrk_command(url, script, options.warmup, connections,
                                              cpu=CLIENT_CPU, timeout=scenario.timeout,
                                              nice=options.nice))
            except load.LoadError as exc:
                return dict(rnd, mark="load failed", detail=f"warm-up: {exc}")
        duration = max(options.duration, scenario.min_duration)
        argv = load.wrk_command(url, script, duration, connections,
                                cpu=CLIENT_CPU, timeout=scenario.timeout, nice=options.nice)
        rnd["wrk_argv"] = " ".join(argv).replace(str(server.port), "PORT").replace(
            str(rundir), "RUNDIR")
        progress.line(f"{label}: measuring {duration}s")
        sampler = measure_start(server.pid)
        try:
            result = load.run_wrk(argv)
        except load.LoadError as exc:
            sampler.stop()
            return dict(rnd, mark="load failed", detail=str(exc))
        usage = sampler.stop()
        if scenario.pipeline > 1:
            # wrk records one latency sample per batch, and this build's
            # percentiles of those come out as 0: not a per-request figure.
            result.p50_ms = result.p90_ms = result.p99_ms = None
        rnd.update(
            requests=result.requests, duration=result.duration_s, rps=result.rps,
            bytes_per_s=result.bytes_per_s, p50_ms=result.p50_ms, p90_ms=result.p90_ms,
            p99_ms=result.p99_ms, max_ms=result.max_ms, errors=result.errors,
            cpu_seconds=usage.cpu_seconds, cpu_percent=usage.cpu_percent,
            peak_rss=usage.peak_rss, processes=usage.processes,
            server_cpu_busy=usage.cpu_busy.get(SERVER_CPU),
            client_cpu_busy=usage.cpu_busy.get(CLIENT_CPU),
            # Busy time on the server's CPU that the server did not use:
            # other processes, plus kernel work not charged to it.
            other_load=max(0.0, usage.cpu_busy.get(SERVER_CPU, 0.0) - usage.cpu_percent),
            req_per_cpu_s=(result.requests / usage.cpu_seconds
                           if usage.cpu_seconds else None))
        if not server.alive():
            return dict(rnd, mark="crashed",
                        detail=f"exited {server.proc.returncode} under load: {server.log_tail()}")
        if result.errors.get("status"):
            return dict(rnd, mark="wrong response",
                        detail=f"{result.errors['status']} non-2xx/3xx responses under load")
        if result.requests == 0:
            return dict(rnd, mark="no responses", detail=f"wrk errors {result.errors}")
        after = check.check(server.port, scenario)
        if not after.ok:
            mark = "crashed" if not server.alive() else "wrong response"
            return dict(rnd, mark=mark, detail=f"after load: {after.detail}")
        rnd["ok"] = True
        return rnd
    finally:
        server.stop()


def measure_start(pid):
    from .measure import TreeSampler
    sampler = TreeSampler(pid)
    sampler.start()
    return sampler


def summarize(rounds):
    good = [r for r in rounds if r.get("ok")]
    if not good:
        return None

    def med(key):
        vals = [r[key] for r in good if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    rps = [r["rps"] for r in good]
    errors = {}
    for r in good:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {"rounds": len(good), "rps": statistics.median(rps), "rps_min": min(rps),
            "rps_max": max(rps), "bytes_per_s": med("bytes_per_s"), "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"), "peak_rss": max(r["peak_rss"] for r in good),
            "cpu_percent": med("cpu_percent"), "req_per_cpu_s": med("req_per_cpu_s"),
            "other_load": med("other_load"),
            "errors": errors}


def run(options):
    try:
        os.sched_setaffinity(0, {CLIENT_CPU})
    except (OSError, AttributeError):
        pass
    out = Path(options.out).resolve()  # servers run with cwd and PYTHONPATH there
    out.mkdir(parents=True, exist_ok=True)
    rundir = prepare_rundir(out)
    scenario_names = options.scenarios
    plan = {sc: [s for s in options.servers if servers.SERVERS[s].runs(SCENARIOS[sc])]
            for sc in scenario_names}
    total = sum(len(v) for v in plan.values()) * options.rounds
    progress = Progress(total)
    t0 = time.time()
    installed, failures, versions = install_all(options.servers, options, progress)

    results = {}
    for sc_name in scenario_names:
        scenario = SCENARIOS[sc_name]
        script = load.write_script(scenario, rundir)
        for name in plan[sc_name]:
            results[(name, sc_name)] = {"server": name, "scenario": sc_name, "rounds": [],
                                       "mark": failures.get(name) and "not installed",
                                       "detail": failures.get(name, "")}
        for rnd_no in range(1, options.rounds + 1):
            for name in plan[sc_name]:
                entry = results[(name, sc_name)]
                if entry["mark"]:
                    progress.done += 1
                    continue
                label = f"{sc_name} round {rnd_no}/{options.rounds} {name}"
                rnd = visit(servers.SERVERS[name], installed[name], scenario, options,
                            rundir, script, progress, label)
                progress.done += 1
                entry["rounds"].append(rnd)
                if rnd.get("server_argv"):
                    entry["server_argv"] = rnd["server_argv"]
                if rnd.get("wrk_argv"):
                    entry["wrk_argv"] = rnd["wrk_argv"]
                if rnd.get("framing"):
                    entry["framing"] = rnd["framing"]
                if rnd.get("check_notes"):
                    entry["check_notes"] = rnd["check_notes"]
                if rnd["ok"]:
                    p99 = "—" if rnd["p99_ms"] is None else f"{rnd['p99_ms']:.2f}"
                    progress.line(f"{label}: {rnd['rps']:,.0f} req/s, p99 {p99} ms, "
                                  f"cpu {rnd['cpu_percent']:.0f}%", final=not progress.tty)
                else:
                    entry["mark"], entry["detail"] = rnd["mark"], rnd["detail"]
                    progress.log(f"{label}: {rnd['mark']}: {rnd['detail'][:300]}")
    if progress.tty:
        sys.stderr.write("\n")

    entries = []
    for entry in results.values():
        entry["summary"] = summarize(entry["rounds"])
        entries.append(entry)
    return {
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
        "elapsed_s": round(time.time() - t0, 1),
        "options": {"servers": options.servers, "scenarios": scenario_names,
                    "duration": options.duration, "warmup": options.warmup,
                    "connections": options.connections, "rounds": options.rounds,
                    "repo": str(options.repo), "nice": options.nice, "server_cpu": SERVER_CPU,
                    "client_cpu": CLIENT_CPU},
        "versions": versions,
        "install_failures": failures,
        "notes": {n: servers.SERVERS[n].note for n in options.servers
                  if servers.SERVERS[n].note},
        "scenarios": {n: SCENARIOS[n].help for n in scenario_names},
        "bytes_scenarios": [n for n in scenario_names if SCENARIOS[n].report_bytes],
        "results": entries,
    }
