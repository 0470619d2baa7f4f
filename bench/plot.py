"""The benchmark chart, readable by itself: one panel per scenario, every server's
median requests/s as a labelled bar, the machine, the date and the load settings
in the caption.

Run as a script so it can use a venv that has matplotlib when the
interpreter running the benchmark has none:

    python plot.py results.json ratios.png

``model(data)`` is everything the picture says, as plain data (tested without
matplotlib); ``plot(data, path)`` only draws it.  Standard library and matplotlib
only (no imports from the bench package).
"""
import json
import math
import sys

MIB = 1024 * 1024


def smoke_test(options):
    """--quick: one short round.  Two such runs of the same server differ by up
    to 2x on a shared machine, so the chart must not pass for a measurement."""
    return bool(options.get("quick")) or (options.get("rounds", 3) < 2
                                          and options.get("duration", 10) < 5)


def caption(data):
    m = data.get("machine", {})
    o = data["options"]
    lines = [
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, kernel {m.get('kernel', '?')},"
        f" {m.get('os', '?')}.  Run started {data.get('started', '?')}.",
        f"Median of {o['rounds']} interleaved round(s) of {o['duration']} s after a "
        f"{o['warmup']} s warm-up; wrk with {o['connections']} connections; each server: "
        f"one worker pinned to CPU {o.get('server_cpu', '?')}, wrk on CPU "
        f"{o.get('client_cpu', '?')}.  Full tables: results.md.",
    ]
    if data.get("baseline"):
        lines[-1] += f"  Orange: {data['baseline']}; Nx = requests/s relative to it."
    if smoke_test(o):
        lines.insert(0, "SMOKE TEST (--quick): a single short round; figures vary by up to "
                        "2x between runs. Not a measurement.")
    return lines


def model(data):
    """{"title", "caption": [lines], "panels": [{"scenario", "help", "xlabel",
    "bars": [(server, rps, label, ours)], "missing": [(server, why)]}]}."""
    o = data["options"]
    baseline = data.get("baseline")
    index = {(e["server"], e["scenario"]): e for e in data["results"]}
    bytes_scenarios = set(data.get("bytes_scenarios", ()))
    panels = []
    for sc in o["scenarios"]:
        bars, missing = [], []
        base = index.get((baseline, sc))
        base_rps = base["summary"]["rps"] if base and base["summary"] and not base["mark"] else None
        for server in o["servers"]:
            e = index.get((server, sc))
            if e is None:
                missing.append((server, "not run"))
            elif e["mark"] or not e["summary"]:
                missing.append((server, e["mark"] or "no result"))
            else:
                s = e["summary"]
                label = f"{s['rps']:,.0f}"
                if sc in bytes_scenarios and s.get("bytes_per_s"):
                    label += f"  ({s['bytes_per_s'] / MIB:,.0f} MiB/s)"
                if base_rps and server != baseline:
                    label += f"  {s['rps'] / base_rps:.2f}x"
                bars.append((server, s["rps"], label, server == baseline))
        bars.sort(key=lambda b: -b[1])
        panels.append({"scenario": sc, "help": data.get("scenarios", {}).get(sc, ""),
                       "xlabel": "requests/s (median)", "bars": bars, "missing": missing})
    title = "WSGI servers, requests per second (higher is better)"
    if baseline:
        title += f"; ratios relative to {baseline}"
    if smoke_test(o):
        title = "SMOKE TEST, not a measurement -- " + title
    return {"title": title, "caption": caption(data), "panels": panels}


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = model(data)
    panels = m["panels"]
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    heights = [max(len(p["bars"]) + len(p["missing"]), 1) for p in panels]
    row_h = [max(heights[r * cols:(r + 1) * cols]) * 0.32 + 1.1 for r in range(rows)]
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, sum(row_h) + 1.6),
                             gridspec_kw={"height_ratios": row_h}, squeeze=False)
    for ax, p in zip(axes.flat, panels):
        names = [b[0] for b in p["bars"]] + [s for s, _ in p["missing"]]
        ys = list(range(len(names)))[::-1]
        values = [b[1] for b in p["bars"]]
        top = max(values) if values else 1.0
        colors = ["tab:orange" if b[3] else "tab:blue" for b in p["bars"]]
        ax.barh(ys[:len(values)], values, color=colors, height=0.7)
        for y, (_, value, label, _ours) in zip(ys, p["bars"]):
            inside = value > 0.55 * top
            ax.text(value * (0.98 if inside else 1.0) + (0 if inside else top * 0.01), y, label,
                    va="center", ha="right" if inside else "left", fontsize=8,
                    color="white" if inside else "black")
        for y, (_, why) in zip(ys[len(values):], p["missing"]):
            ax.text(top * 0.01, y, f"no bar: {why}"[:70], va="center", ha="left",
                    fontsize=7, color="grey", style="italic")
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlim(0, top * 1.25)
        ax.set_xlabel(p["xlabel"], fontsize=8)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _, k=top >= 10000: f"{v / 1000:g}k" if k else f"{v:,.0f}"))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{p['scenario']}: {p['help']}"[:80], fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(m["title"], fontsize=11, fontweight="bold",
                 color="firebrick" if m["title"].startswith("SMOKE") else "black")
    fig.text(0.01, 0.005, "\n".join(m["caption"]), fontsize=8, va="bottom", ha="left",
             wrap=True)
    bottom = (0.7 + 0.14 * len(m["caption"])) / (sum(row_h) + 1.6)
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        plot(json.load(f), sys.argv[2])
