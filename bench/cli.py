"""Command line: each option declared once, with its default and help.

``python -m bench`` runs the server comparison; ``python -m bench parser``
runs the parser micro-benchmark (bench/parser_bench.py) in our server's venv.
"""
import argparse
import sys
from pathlib import Path

from . import servers
from .scenarios import SCENARIOS

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_REPO = BENCH_DIR.parent
RUN_HELP = """Compare fastwsgi with other WSGI servers under wrk.

Every server runs one worker pinned to CPU 0, wrk runs on CPU 1; rounds are
interleaved and each run is checked for correct answers before and after.
Results: OUT/results.md, OUT/results.json, OUT/ratios.png.
Parser micro-benchmark: python -m bench parser --help
Idle connections: python -m bench idle --help
Instructions per request (callgrind): python -m bench instructions --help
Per-response CPU, TCP and system calls: python -m bench costs --help"""


def _names(known, what):
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
        return names
    return parse


def _common(p):
    p.add_argument("--repo", type=Path, default=DEFAULT_REPO,
                   help="fastwsgi repository to install (default: %(default)s)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                   help="output directory (default: bench/out)")
    p.add_argument("--python", default=None,
                   help="interpreter for the venvs (default: the one running this)")
    p.add_argument("--quick", action="store_true", help="smoke test: short and 1 round")


def run_parser():
    p = argparse.ArgumentParser(prog="python -m bench", description=RUN_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=_names(servers.SERVERS, "server"),
                   default=list(servers.DEFAULT_ORDER),
                   help="comma-separated (default: all): " + ", ".join(servers.SERVERS))
    p.add_argument("--base-repo", type=Path, default=None,
                   help="another fastwsgi checkout, run as the server fastwsgi-base: "
                        "before/after a change in one run")
    p.add_argument("--scenarios", type=_names(SCENARIOS, "scenario"),
                   default=list(SCENARIOS),
                   help="comma-separated (default: all): " + ", ".join(SCENARIOS))
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (2)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--nice", type=int, default=0,
                   help="run server and wrk at this niceness, e.g. -10 on a shared "
                        "machine so other jobs take less of their CPUs (0)")
    _common(p)
    return p


def parser_bench_parser():
    p = argparse.ArgumentParser(prog="python -m bench parser",
                                description="Parser micro-benchmark: fastwsgi._parser vs "
                                            "httptools vs h11, building a WSGI environ.")
    p.add_argument("--runs", type=int, default=7, help="timed runs per case (7)")
    p.add_argument("--seconds", type=float, default=0.5, help="length of one run (0.5)")
    _common(p)
    return p


def main(argv):
    if argv and argv[0] == "idle":
        from . import idle
        return idle.main(argv[1:])
    if argv and argv[0] == "costs":
        from . import costs
        return costs.main(argv[1:])
    if argv and argv[0] == "instructions":
        from . import instructions
        return instructions.main(argv[1:])
    if argv and argv[0] == "parser":
        from . import parser_bench
        opts = parser_bench_parser().parse_args(argv[1:])
        if opts.quick:
            opts.runs, opts.seconds = 3, 0.2
        return parser_bench.main_outer(opts)
    opts = run_parser().parse_args(argv)
    if opts.quick:
        opts.duration, opts.rounds, opts.warmup = 2, 1, 1
    for n in ("duration", "rounds", "connections"):
        if getattr(opts, n) < 1:
            sys.exit(f"--{n} must be >= 1")
    from . import report, run
    data = run.run(opts)
    data["options"]["quick"] = opts.quick
    text = report.write(data, opts.out, log=lambda m: print(m, file=sys.stderr))
    print(text)
    if opts.quick:
        print(report.SMOKE_TEST.replace("**", ""), file=sys.stderr)
    print(f"wrote {opts.out}/results.md, results.json, ratios.png", file=sys.stderr)
    return 0
