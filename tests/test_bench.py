"""bench/'s scenarios against our real server: the apps, the wrk scripts and the
strict checker of the static, json and upload scenarios, and the peak-RSS
measurement that the upload scenario reports.

Each test starts `python -m fastwsgi` (this tree) on port 0 in a run directory
laid out by bench/run.py's prepare_rundir, exactly as `python -m bench` does.
"""

import os
import subprocess
import sys

import pytest

# bench/ is not installed: the checkout's root goes last on sys.path, so that under
# `.venv/bin/pytest` (no current directory on sys.path) `bench` is found while an
# installed fastwsgi still wins over the source tree's (which has no built .so)
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import apps, check, load, measure, run  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402

from process_helpers import require_wrk


@pytest.fixture
def rundir(tmp_path):
    return run.prepare_rundir(tmp_path)


@pytest.fixture
def bench_serve(serve, rundir):
    """serve() with the run directory first on PYTHONPATH and as cwd."""
    path = os.pathsep.join(p for p in (str(rundir), os.environ.get("PYTHONPATH")) if p)

    def start(*args):
        return serve(*args, env={"PYTHONPATH": path}, cwd=str(rundir))
    return start


@pytest.mark.parametrize("name, app", [
    ("static", "bench_apps:static_file"),
    ("json", "bench_apps:json_app"),
    ("upload", "bench_apps:upload"),
])
def test_scenario_passes_the_check(bench_serve, name, app):
    scenario = SCENARIOS[name]
    assert scenario.app == app
    server = bench_serve(app)
    result = check.check(server.port, scenario)
    assert result.ok, result.detail
    assert result.framings == {"length"}


def test_static_rows_of_app_and_server_serve_the_same_files(bench_serve):
    # fastwsgi-static's command line: the files come from --static, the app
    # behind it is never reached for /static/.
    server = bench_serve("--static", f"/static={apps.STATIC_DIR}", "bench_apps:hello")
    result = check.check(server.port, SCENARIOS["static"])
    assert result.ok, result.detail


def test_static_check_reads_every_file(bench_serve, rundir):
    # One file of twenty differs from what the app should send: the check names it.
    with open(rundir / apps.STATIC_DIR / "f13.bin", "r+b") as f:
        f.write(b"X")
    server = bench_serve("bench_apps:static_file")
    result = check.check(server.port, SCENARIOS["static"])
    assert not result.ok
    assert result.detail.startswith("/static/f13.bin: request 1: wrong body")


def test_static_files_are_1_to_20_kib(rundir):
    sizes = sorted(p.stat().st_size for p in (rundir / apps.STATIC_DIR).iterdir())
    assert sizes == [i * 1024 for i in range(1, 21)]


def test_json_check_compares_the_data():
    scenario = SCENARIOS["json"]
    assert scenario.body_ok(b'{"message":"Hello, World!","id":42,"ok":true,'
                            b'"tags":["fast","wsgi"],"score":0.5}')
    assert not scenario.body_ok(b'{"message": "Hello, World!"}')
    assert not scenario.body_ok(b"not json")


def test_upload_scenario_is_20_mb_on_32_connections():
    scenario = SCENARIOS["upload"]
    assert len(scenario.body) == 20 * 1000 * 1000
    assert scenario.connections == 32
    assert scenario.method == "POST"


def test_static_wrk_script_requests_every_file(bench_serve, rundir):
    # A wrong path would come back 404, which wrk counts as a status error.
    wrk = require_wrk()
    scenario = SCENARIOS["static"]
    script = load.write_script(scenario, rundir)
    text = script.read_text()
    for path, _ in scenario.targets:
        assert f'"{path}"' in text
    server = bench_serve("bench_apps:static_file")
    argv = load.wrk_command(f"http://127.0.0.1:{server.port}{scenario.path}", script,
                            1, 4, cpu=None)
    argv[0] = wrk
    result = load.run_wrk(argv)
    assert result.requests > 0
    assert result.errors["status"] == 0, result.errors


def test_upload_wrk_script_sends_the_body():
    # The app answers the sha256 of what it read; wrk counts a 200 either way,
    # so the Lua body is checked against the scenario's bytes directly.
    text = load.script_text(SCENARIOS["upload"])
    assert 'wrk.body = string.rep("0123456789abcdef", 1250000)' in text
    assert 'wrk.method = "POST"' in text


ALLOCATE_AND_FREE = """
import sys, time
block = bytearray(64 * 1024 * 1024)   # touched: resident
del block
print("freed", flush=True)
time.sleep(30)
"""


def test_peak_rss_counts_a_peak_between_samples():
    # The sampler polls every 0.2 s: a 64 MiB block held for less than that is
    # missed by the samples; the process's VmHWM still has it.
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATE_AND_FREE],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "freed"
        sampler = measure.TreeSampler(proc.pid, interval=0.05)
        sampler.start()
        usage = sampler.stop()
        assert usage.peak_rss >= 64 * 1024 * 1024
    finally:
        proc.kill()
        proc.wait()


STRACE_LINES = """\
101 epoll_wait(3, [], 64, 1000) = 1
101 recvfrom(7, ""..., 65536, 0, NULL, NULL) = 78
101 writev(7, [{iov_base=""..., iov_len=139}, {iov_base=""..., iov_len=1048576}], 2 <unfinished ...>
102 futex(0x7f, FUTEX_WAKE_PRIVATE, 1) = 0
101 <... writev resumed>) = 1048715
101 recvfrom(7, 0x7f, 65536, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
101 sendto(8, ""..., 200, MSG_NOSIGNAL, NULL, 0) = 100
101 +++ exited with 0 +++
"""


def test_costs_counts_calls_and_written_bytes():
    # strace -f output with an interrupted call: the resumed line carries the result.
    from bench import costs
    calls = costs.parse_strace(STRACE_LINES)
    assert calls == {"epoll_wait": [1, 0], "recvfrom": [2, 0], "writev": [1, 1048715],
                     "futex": [1, 0], "sendto": [1, 100]}


def test_which_servers_run_which_scenarios():
    from bench import servers
    static = [n for n, s in servers.SERVERS.items() if s.runs(SCENARIOS["static"])]
    hello = [n for n, s in servers.SERVERS.items() if s.runs(SCENARIOS["hello"])]
    assert "fastwsgi-static" in static and "fastwsgi-static" not in hello
    assert "nginx" in hello and "nginx" not in static   # a fixed response only
    assert {"fastpysgi", "pyruvate"} <= set(static) & set(hello)
    # our --static row shares our venv: one build of the repo, not two
    assert servers.SERVERS["fastwsgi-static"].venv == "fastwsgi"


def test_fastwsgi_base_runs_only_when_asked_and_needs_a_checkout():
    from bench import envs, servers

    assert "fastwsgi-base" in servers.SERVERS
    assert "fastwsgi-base" not in servers.DEFAULT_ORDER
    with pytest.raises(envs.EnvError, match="--base-repo"):
        servers.install(servers.SERVERS["fastwsgi-base"], log=lambda m: None)
