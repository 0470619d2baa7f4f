"""bench/plot.py and bench/report.py as a reader meets them: a chart that says what
it shows by itself (absolute values, axes, machine, date) and a --quick run that
says it is a smoke test.  The chart's content is checked through plot.model(),
without matplotlib (bench extras only)."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_plot():
    spec = importlib.util.spec_from_file_location("bench_plot", os.path.join(ROOT, "bench", "plot.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def results(quick=False):
    options = {"servers": ["fastwsgi", "bjoern", "uwsgi"], "scenarios": ["hello", "big"],
               "duration": 2 if quick else 10, "warmup": 1 if quick else 2,
               "connections": 64, "rounds": 1 if quick else 3, "server_cpu": 0,
               "client_cpu": 1, "nice": 0, "repo": ROOT}
    if quick:
        options["quick"] = True

    def entry(server, scenario, rps, mark=None):
        summary = None if mark else {
            "rps": rps, "rps_min": rps, "rps_max": rps, "bytes_per_s": rps * 1048576,
            "p50_ms": 1.0, "p99_ms": 2.0, "peak_rss": 1 << 24, "cpu_percent": 99,
            "req_per_cpu_s": rps, "other_load": 1, "errors": {}}
        return {"server": server, "scenario": scenario, "mark": mark, "summary": summary,
                "detail": "", "rounds": []}

    return {
        "machine": {"cpu": "Test CPU 9000", "cpus": 2, "kernel": "6.1.0", "os": "Debian 12",
                    "python": "3.11.7", "tools": {"wrk": "wrk 4.1.0"}},
        "started": "2026-12-02 10:30:00", "elapsed_s": 60.0, "baseline": "fastwsgi",
        "options": options, "versions": {}, "install_failures": {}, "notes": {},
        "scenarios": {"hello": "keep-alive GET", "big": "1 MiB response"},
        "bytes_scenarios": ["big"],
        "results": [entry("fastwsgi", "hello", 110213.4), entry("bjoern", "hello", 89000.0),
                    entry("uwsgi", "hello", 0, mark="wrong answer"),
                    entry("fastwsgi", "big", 3300.0), entry("bjoern", "big", 3700.0)],
    }


def test_chart_shows_absolute_values_on_labelled_axes():
    chart = load_plot().model(results())
    hello, big = chart["panels"]
    assert hello["scenario"] == "hello" and "keep-alive GET" in hello["help"]
    assert hello["xlabel"] == "requests/s (median)"
    # bars ranked, each labelled with its own requests/s (and the ratio for others)
    assert [(b[0], b[2]) for b in hello["bars"]] == [
        ("fastwsgi", "110,213"), ("bjoern", "89,000  0.81x")]
    assert hello["bars"][0][3] is True          # ours is highlighted
    assert hello["missing"] == [("uwsgi", "wrong answer")]
    assert big["missing"] == [("uwsgi", "not run")]
    assert big["bars"][0][2] == "3,700  (3,700 MiB/s)  1.12x"


def test_chart_caption_names_the_machine_date_and_load():
    caption = " ".join(load_plot().model(results())["caption"])
    assert "Test CPU 9000, 2 CPUs" in caption and "2026-12-02 10:30:00" in caption
    assert "Median of 3 interleaved round(s) of 10 s" in caption
    assert "64 connections" in caption
    assert "SMOKE" not in caption


def test_quick_run_is_labelled_a_smoke_test_in_chart_and_report():
    chart = load_plot().model(results(quick=True))
    assert chart["title"].startswith("SMOKE TEST")
    assert chart["caption"][0].startswith("SMOKE TEST (--quick)")
    sys.path.insert(0, ROOT)
    try:
        from bench import report
    finally:
        sys.path.remove(ROOT)
    assert "**Smoke test**" in report.markdown(results(quick=True))
    assert "Smoke test" not in report.markdown(results())
