"""Render the results of bench/run.py: Markdown, JSON and a PNG chart.

Contract: ``write(data, out_dir)`` writes results.json, results.md and
ratios.png into ``out_dir`` and returns the Markdown text. ``baseline`` is
fastwsgi when it has results, otherwise the first server that has some
(the chart and tables say which). A marked row (wrong answer, crash, failed
start) shows its reason and is not ranked or compared.
"""
import json
import subprocess
import sys
from pathlib import Path

from . import envs

PLOT = Path(__file__).resolve().parent / "plot.py"
MIB = 1024 * 1024
SMOKE_TEST = ("**Smoke test** (`--quick`: one round of 2 s): it shows that every server "
              "starts and answers correctly. Two such runs of one server differ by up to "
              "2x; compare servers only on a full run.")


def choose_baseline(data):
    ok = [e["server"] for e in data["results"] if e["summary"] and not e["mark"]]
    if "fastwsgi" in ok:
        return "fastwsgi"
    for s in data["options"]["servers"]:
        if s in ok:
            return s
    return None


def _num(v, fmt="{:,.0f}"):
    return "—" if v is None else fmt.format(v)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _by_scenario(data):
    out = {}
    for e in data["results"]:
        out.setdefault(e["scenario"], []).append(e)
    return out


def markdown(data):
    base = data["baseline"]
    m = data["machine"]
    o = data["options"]
    lines = ["# fastwsgi benchmark", ""]
    if o.get("quick"):
        lines += [SMOKE_TEST, ""]
    lines.append(f"- Machine: {m['cpu']}, {m['cpus']} CPUs, kernel {m['kernel']}, {m['os']}; "
                 f"benchmark driver on Python {m['python']}")
    lines.append(f"- Run: {data['started']}, {data['elapsed_s']:.0f} s; {o['rounds']} interleaved "
                 f"round(s) of {o['duration']} s after a {o['warmup']} s warm-up, "
                 f"{o['connections']} connections; server on CPU {o['server_cpu']}, "
                 f"wrk (1 thread) on CPU {o['client_cpu']}"
                 + (f"; both at niceness {o['nice']}" if o.get("nice") else ""))
    lines.append("- Tools: " + "; ".join(m["tools"].values()))
    lines.append(f"- Ratios are relative to **{base}** (median requests/s)."
                 if base else "- No server produced results.")
    lines.append("- Columns: CPU % = server process tree's utime+stime over the run "
                 "(100 = the one CPU it is pinned to); req/CPU-s = requests per second "
                 "of that CPU time; bg % = other load on the server's CPU during the run "
                 "(other processes, kernel work not charged to the server); p50/p99 from "
                 "wrk, not available under pipelining (wrk samples once per batch); "
                 "framing = how the response body was delimited (length, chunked, close); "
                 "wrk read errors come from servers that close connections.")
    lines.append("")
    lines.append("| server | version | note |")
    lines.append("|---|---|---|")
    for s in o["servers"]:
        ver = data["versions"].get(s) or "not installed"
        note = data["notes"].get(s, "")
        if s in data["install_failures"]:
            note = (note + "; " if note else "") + data["install_failures"][s].splitlines()[0]
        lines.append(f"| {s} | {_cell(ver)} | {_cell(note)} |")
    lines.append("")

    by_sc = _by_scenario(data)
    # Summary: requests/s of every server in every scenario.
    lines.append("## Requests/s (median; ratio to %s)" % base)
    lines.append("")
    lines.append("| server | " + " | ".join(o["scenarios"]) + " |")
    lines.append("|---" * (len(o["scenarios"]) + 1) + "|")
    index = {(e["server"], e["scenario"]): e for e in data["results"]}
    for s in o["servers"]:
        cells = []
        for sc in o["scenarios"]:
            e = index.get((s, sc))
            if e is None:
                cells.append("")
            elif e["mark"]:
                cells.append(f"✗ {e['mark']}")
            elif e["summary"]:
                b = index.get((base, sc))
                ratio = (e["summary"]["rps"] / b["summary"]["rps"]
                         if b and b["summary"] and not b["mark"] else None)
                cells.append(_num(e["summary"]["rps"]) +
                             (f" ({ratio:.2f}×)" if ratio is not None else ""))
            else:
                cells.append("—")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")

    for sc in o["scenarios"]:
        entries = by_sc.get(sc, [])
        lines.append(f"## {sc}: {data['scenarios'][sc]}")
        lines.append("")
        show_bytes = sc in data.get("bytes_scenarios", ())
        head = ["server", "req/s (min–max)", f"vs {base}"]
        if show_bytes:
            head.append("MiB/s")
        head += ["p50 ms", "p99 ms", "peak RSS MiB", "CPU %", "req/CPU-s", "bg %",
                 "framing", "notes"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---" * len(head) + "|")
        ranked = sorted((e for e in entries if e["summary"] and not e["mark"]),
                        key=lambda e: -e["summary"]["rps"])
        base_e = next((e for e in ranked if e["server"] == base), None)
        for e in ranked + [e for e in entries if e not in ranked]:
            s = e["summary"]
            if e["mark"] or not s:
                row = [e["server"], f"✗ {e['mark'] or 'no result'}", ""]
                row += [""] * (len(head) - 4)
                row.append(_cell(e["detail"][:160]))
                lines.append("| " + " | ".join(row) + " |")
                continue
            ratio = s["rps"] / base_e["summary"]["rps"] if base_e else None
            row = [e["server"],
                   f"{s['rps']:,.0f} ({s['rps_min']:,.0f}–{s['rps_max']:,.0f})",
                   _num(ratio, "{:.2f}×")]
            if show_bytes:
                row.append(_num(s["bytes_per_s"] and s["bytes_per_s"] / MIB, "{:,.1f}"))
            errs = {k: v for k, v in s["errors"].items() if v}
            notes = list(e.get("check_notes", []))
            if errs:
                notes.append("wrk errors " + ", ".join(f"{k} {v}" for k, v in errs.items()))
            row += [_num(s["p50_ms"], "{:.2f}"), _num(s["p99_ms"], "{:.2f}"),
                    _num(s["peak_rss"] / MIB, "{:.1f}"), _num(s["cpu_percent"], "{:.0f}"),
                    _num(s["req_per_cpu_s"]), _num(s.get("other_load"), "{:.0f}"),
                    ",".join(e.get("framing", [])), _cell("; ".join(notes))]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

    lines.append("## Command lines")
    lines.append("")
    lines.append("Servers (shown for the `hello` app; other scenarios change only "
                 "`bench_apps:<app>`), run from `RUNDIR` = `<out>/run` with "
                 "`PYTHONPATH=RUNDIR`:")
    lines.append("")
    lines.append("```")
    seen = set()
    for e in data["results"]:
        if e.get("server_argv") and e["server"] not in seen:
            seen.add(e["server"])
            lines.append(e["server_argv"])
    lines.append("```")
    lines.append("")
    lines.append("wrk, per scenario:")
    lines.append("")
    lines.append("```")
    seen = set()
    for e in data["results"]:
        if e.get("wrk_argv") and e["scenario"] not in seen:
            seen.add(e["scenario"])
            lines.append(f"{e['scenario']}: {e['wrk_argv']}")
    lines.append("```")
    lines.append("")
    return "\n".join(lines)


def write_png(json_path, png_path, log=print):
    try:
        import matplotlib  # noqa: F401
        python = sys.executable
    except ImportError:
        try:
            python = str(envs.ensure("_tools", ["matplotlib"], log=log).python)
        except envs.EnvError as exc:
            log(f"no chart: {exc}")
            return False
    proc = subprocess.run([python, str(PLOT), str(json_path), str(png_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"no chart: {proc.stderr.strip()[-300:]}")
        return False
    return True


def write(data, out_dir, log=print):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data["baseline"] = choose_baseline(data)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(data, indent=2, default=str))
    text = markdown(data)
    (out / "results.md").write_text(text)
    write_png(json_path, out / "ratios.png", log=log)
    return text
