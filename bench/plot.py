"""Bar chart of every server's requests/s relative to the baseline, per scenario.

Run as a script so it can use a venv that has matplotlib when the
interpreter running the benchmark has none:

    python plot.py results.json ratios.png

Standard library and matplotlib only (no imports from the bench package).
"""
import json
import sys


def ratios(data):
    """(baseline, scenarios, {server: [ratio or None per scenario]})."""
    baseline = data.get("baseline")
    scenarios = data["options"]["scenarios"]
    best = {}
    for e in data["results"]:
        if e["summary"] and not e["mark"]:
            best[(e["server"], e["scenario"])] = e["summary"]["rps"]
    servers = [s for s in data["options"]["servers"]
               if any((s, sc) in best for sc in scenarios)]
    table = {}
    for s in servers:
        row = []
        for sc in scenarios:
            base = best.get((baseline, sc))
            val = best.get((s, sc))
            row.append(val / base if base and val else None)
        table[s] = row
    return baseline, scenarios, table


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline, scenarios, table = ratios(data)
    servers = list(table)
    width = 0.8 / max(1, len(servers))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(scenarios) + 2), 5.5))
    cmap = plt.get_cmap("tab20")
    values = [v for row in table.values() for v in row if v]
    bottom = min([0.01] + values) / 1.5
    for i, server in enumerate(servers):
        xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(scenarios))]
        ys = [v if v is not None else 0 for v in table[server]]  # 0: no bar on log
        ax.bar(xs, ys, width, label=server, color=cmap(i % 20),
                      edgecolor="black" if server == baseline else None)
        for x, v in zip(xs, table[server]):
            if v is None:
                ax.text(x, bottom * 1.2, "×", ha="center", va="bottom", fontsize=7, color="grey")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios)
    ax.set_ylabel(f"requests/s relative to {baseline} (log scale)")
    title = f"Throughput relative to {baseline} (median of rounds; × = not run or marked)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        plot(json.load(f), sys.argv[2])
