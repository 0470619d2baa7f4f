"""fastwsgi.cli: `python -m fastwsgi` as a user meets it.

Error paths run in real subprocesses and must print exactly one line
``fastwsgi: error: ...`` (no traceback) and exit 1, or 2 for usage errors.
``main()`` is also driven in-process against a stand-in server module to check
what it hands to ``fastwsgi.server.serve``; the last tests start the real server.
"""

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import pytest

import fastwsgi
from fastwsgi import cli
from fastwsgi.config import Config



def pythonpath(*extra):
    """PYTHONPATH for a child: `extra`, then ours. fastwsgi itself comes from
    wherever this interpreter finds it (installed in CI, PYTHONPATH in a dev tree):
    the source tree alone has no compiled modules."""
    return os.pathsep.join(p for p in (*extra, os.environ.get("PYTHONPATH", "")) if p)

HERE = os.path.dirname(os.path.abspath(__file__))

APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]

application = app
value = 42

def create_app(name="x"):
    if name == "bad":
        raise RuntimeError("refusing to start")
    return app
"""


def run(*args, cwd, env=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWSGI_")}
    full_env["PYTHONPATH"] = pythonpath()
    full_env.update(env or {})
    # never the checkout's root: its unbuilt fastwsgi/ would shadow the installed one
    return subprocess.run([sys.executable, "-m", "fastwsgi", *args], cwd=cwd or HERE,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "cliapp.py").write_text(APP)
    return tmp_path


def assert_one_error_line(result, expected, code=1):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(lines[0]), lines[0]
    else:
        assert lines[0] == expected


# --------------------------------------------------------------------- usage, exit 0/2


def test_version(project):
    result = run("--version", cwd=project)
    assert result.returncode == 0
    assert re.fullmatch(r"fastwsgi \d+\.\d+\.\d+\S*\n", result.stdout)


def test_help_lists_every_option(project):
    result = run("--help", cwd=project)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: fastwsgi [OPTIONS] APP_SPEC")
    for flag in ("--bind", "--workers", "--access-logfile", "--keep-alive", "--config"):
        assert flag in result.stdout


def test_missing_app_spec_exits_2(project):
    result = run(cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fastwsgi: error: the following arguments are required: APP_SPEC")


def test_unknown_option_exits_2(project):
    result = run("--no-such-option", "cliapp:app", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fastwsgi: error: unrecognized option: --no-such-option (fastwsgi --help")


def test_option_without_value_exits_2(project):
    result = run("cliapp:app", "--workers", cwd=project)
    assert result.returncode == 2
    assert "expected one argument" in result.stderr


# ------------------------------------------------------------------ bad values, exit 1


@pytest.mark.parametrize("args,expected", [
    (["--workers", "x"], "--workers: expected a positive integer, got 'x'"),
    (["-w", "-2"], "--workers: expected a positive integer, got '-2'"),
    (["--threads", "0"], "--threads: expected a positive integer, got '0'"),
    (["--keep-alive", "soon"], "--keep-alive: expected a non-negative number of seconds, "
                               "got 'soon'"),
    (["--bind", "127.0.0.1:80000"], "--bind: port must be 0-65535, got '80000' in "
                                    "'127.0.0.1:80000'"),
    (["--bind", "127.0.0.1:1", "-b", "[::1"], "--bind: expected HOST:PORT, [IPv6]:PORT, "
                                              "unix:PATH or fd://N, got '[::1'"),
    (["--log-level", "verbose"], "--log-level: expected one of debug, info, warning, "
                                 "error, critical, got 'verbose'"),
    (["--unix-socket-mode", "9"], "--unix-socket-mode: expected an octal file mode such "
                                  "as 660 or 0o660, got '9'"),
    (["--limit-request-body", "-1"], "--limit-request-body: expected a non-negative size "
                                     "in bytes (e.g. 65536, 64K, 1G), got '-1'"),
    (["--reuse-port", "--chdir", "/nonexistent/dir"],
     "--chdir: no such directory: '/nonexistent/dir'"),
])
def test_bad_option_values(project, args, expected):
    result = run(*args, "cliapp:app", cwd=project)
    assert_one_error_line(result, f"fastwsgi: error: {expected}")


def test_bad_environment_value(project):
    result = run("cliapp:app", cwd=project, env={"FASTWSGI_MAX_REQUESTS": "many"})
    assert_one_error_line(
        result, "fastwsgi: error: FASTWSGI_MAX_REQUESTS: expected a non-negative integer, "
                "got 'many'")


def test_bad_pyproject_value(project):
    (project / "pyproject.toml").write_text("[tool.fastwsgi]\nbacklog = 0\n")
    result = run("cliapp:app", cwd=project)
    assert_one_error_line(
        result, "fastwsgi: error: pyproject.toml [tool.fastwsgi] backlog: expected a "
                "positive integer, got 0")


def test_bad_config_file(project):
    (project / "conf.py").write_text("bind = 'localhost:8000'\nworkers = 1 / 0\n")
    result = run("-c", "conf.py", "cliapp:app", cwd=project)
    assert_one_error_line(result, "fastwsgi: error: conf.py:2: ZeroDivisionError: "
                                  "division by zero")


def test_missing_config_file(project):
    result = run("-c", "missing.py", "cliapp:app", cwd=project)
    assert_one_error_line(result, "fastwsgi: error: --config: no such file: 'missing.py'")


def test_unwritable_error_log(project):
    result = run("--error-logfile", "/nonexistent/dir/e.log", "cliapp:app", cwd=project)
    assert_one_error_line(result, "fastwsgi: error: --error-logfile: cannot open "
                                  "'/nonexistent/dir/e.log': no such file or directory")


# ------------------------------------------------------------------ app errors, exit 1


@pytest.mark.parametrize("spec,expected", [
    ("nosuchmodule:app", re.compile(
        r"fastwsgi: error: module 'nosuchmodule' not found \(searched .*\)")),
    ("cliapp:nope", "fastwsgi: error: module 'cliapp' has no attribute 'nope'"),
    ("cliapp:value", "fastwsgi: error: 'cliapp:value' is not callable (it is int); "
                     "a WSGI application must be callable"),
    ("cliapp:create_app(open('x'))", re.compile(
        r"fastwsgi: error: invalid app spec .*factory arguments must be literals.*")),
    ("cli-app", re.compile(r"fastwsgi: error: invalid app spec 'cli-app': .*")),
])
def test_app_errors(project, spec, expected):
    assert_one_error_line(run(spec, cwd=project), expected)


def assert_app_traceback_then_one_line(result, frames, expected):
    """The app's traceback (its frames, full paths, none of fastwsgi's or
    importlib's), then one line ``fastwsgi: error: ...``; exit 1."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):", result.stderr
    assert lines[-1] == expected, result.stderr
    shown = re.findall(r'^  File "([^"]+)", line (\d+), in (\S+)$', result.stderr, re.M)
    assert [(path, int(line)) for path, line, _ in shown] == frames, result.stderr
    assert "fastwsgi" not in result.stderr.replace("fastwsgi: error:", "")
    assert "importlib" not in result.stderr and "<frozen" not in result.stderr


def test_import_error_inside_the_app_module(project):
    (project / "brokenapp.py").write_text("import os\nimport requests_not_installed_xyz\n")
    result = run("brokenapp:app", cwd=project)
    assert_app_traceback_then_one_line(
        result, [(str(project / "brokenapp.py"), 2)],
        "fastwsgi: error: cannot import 'brokenapp': ModuleNotFoundError: No module "
        "named 'requests_not_installed_xyz' (brokenapp.py, line 2)")


def test_error_raised_deep_inside_the_app_import(project):
    """The issue's case: the summary alone named util.py and no path or caller."""
    (project / "nested.py").write_text("import helpers.util\napp = None\n")
    (project / "helpers").mkdir()
    (project / "helpers" / "__init__.py").write_text("")
    (project / "helpers" / "util.py").write_text("x = 1\ny = 1 / 0\n")
    result = run("nested:app", cwd=project)
    assert_app_traceback_then_one_line(
        result, [(str(project / "nested.py"), 1), (str(project / "helpers" / "util.py"), 2)],
        "fastwsgi: error: cannot import 'nested': ZeroDivisionError: division by zero "
        "(util.py, line 2)")
    assert "    y = 1 / 0" in result.stderr


def test_factory_that_raises_shows_its_traceback(project):
    result = run("cliapp:create_app('bad')", cwd=project)
    assert_app_traceback_then_one_line(
        result, [(str(project / "cliapp.py"), 10)],
        "fastwsgi: error: factory \"create_app('bad')\" raised RuntimeError: refusing to "
        "start (cliapp.py, line 10)")


def test_factory_called_with_wrong_arguments_names_no_fastwsgi_file(project):
    result = run("cliapp:create_app(1, 2)", cwd=project)
    assert result.returncode == 1
    assert "_loader" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fastwsgi: error: factory 'create_app(1, 2)' raised TypeError: create_app() takes")


def test_import_error_at_log_level_debug_shows_fastwsgi_frames_too(project):
    (project / "brokenapp.py").write_text("raise KeyError('k')\n")
    result = run("--log-level", "debug", "brokenapp:app", cwd=project)
    assert result.returncode == 1
    assert re.search(r'File ".*fastwsgi.*_loader\.py", line \d+, in _import', result.stderr)
    assert f'File "{project / "brokenapp.py"}", line 1, in <module>' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "fastwsgi: error: cannot import 'brokenapp': KeyError: 'k' (brokenapp.py, line 1)")


def test_syntax_error_in_the_app_shows_the_line(project):
    (project / "brokenapp.py").write_text("x = (\n")
    result = run("brokenapp:app", cwd=project)
    assert result.returncode == 1
    assert f'File "{project / "brokenapp.py"}", line 1' in result.stderr
    assert "SyntaxError" in result.stderr
    assert "Traceback" not in result.stderr or "_loader" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "fastwsgi: error: cannot import 'brokenapp': SyntaxError:")


def test_app_is_found_through_pythonpath_and_chdir(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("start")
    # With --chdir the module is found in that directory; the failure is then only the
    # attribute, which proves the import worked.
    result = run("--chdir", str(project), "cliapp:nope", cwd=elsewhere)
    assert_one_error_line(result, "fastwsgi: error: module 'cliapp' has no attribute 'nope'")
    result = run("cliapp:nope", cwd=elsewhere,
                 env={"PYTHONPATH": pythonpath(str(project))})
    assert_one_error_line(result, "fastwsgi: error: module 'cliapp' has no attribute 'nope'")


# ------------------------------------------------- main() against a stand-in server


class FakeServer:
    def __init__(self, result=0, error=None):
        self.result, self.error, self.calls = result, error, []

    def serve(self, app, config):
        self.calls.append((app, config, os.getcwd(),
                           open(config.pidfile).read() if config.pidfile else None))
        if self.error:
            raise self.error
        return self.result


@pytest.fixture
def fake_server(monkeypatch, project):
    """Install a stand-in ``fastwsgi.server``; isolate cwd, sys.path and logging.
    (The tests that use it pass --no-master: serve() is the single-process path.)"""
    import logging

    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in list(os.environ):
        if name.startswith("FASTWSGI_"):
            monkeypatch.delenv(name)
    logger = logging.getLogger("fastwsgi.error")
    saved = list(logger.handlers)
    before = set(sys.modules)

    def install(**kwargs):
        fake = FakeServer(**kwargs)
        module = types.ModuleType("fastwsgi.server")
        module.serve = fake.serve
        monkeypatch.setitem(sys.modules, "fastwsgi.server", module)
        monkeypatch.setattr(fastwsgi, "server", module, raising=False)
        return fake

    yield install
    for handler in list(logger.handlers):
        if handler not in saved:
            logger.removeHandler(handler)
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def test_main_hands_app_and_config_to_serve(fake_server, project):
    fake = fake_server(result=0)
    assert cli.main(["--no-master", "--bind", "127.0.0.1:0", "--threads", "3", "cliapp:app"]) == 0
    (app, config, cwd, _), = fake.calls
    assert app.__name__ == "app" and app.__module__ == "cliapp"
    assert isinstance(config, Config)
    assert config.bind == ["127.0.0.1:0"] and config.threads == 3
    assert cwd == str(project)


def test_main_returns_serves_exit_code(fake_server):
    fake_server(result=3)
    assert cli.main(["--no-master", "cliapp:app"]) == 3


def test_main_factory_spec(fake_server):
    fake = fake_server()
    assert cli.main(["--no-master", "cliapp:create_app('ok')"]) == 0
    assert fake.calls[0][0].__name__ == "app"


def test_bind_error_is_one_line(fake_server, capsys):
    error = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    error.address = "127.0.0.1:8000"
    fake_server(error=error)
    assert cli.main(["--no-master", "cliapp:app"]) == 1
    err = capsys.readouterr().err
    assert err == "fastwsgi: error: cannot bind 127.0.0.1:8000: address already in use\n"


def test_permission_error_on_bind(fake_server, capsys):
    error = PermissionError(errno.EACCES, "Permission denied")
    error.address = "0.0.0.0:80"
    fake_server(error=error)
    assert cli.main(["--no-master", "cliapp:app"]) == 1
    assert capsys.readouterr().err == "fastwsgi: error: cannot bind 0.0.0.0:80: permission denied\n"


def test_chdir_hooks_and_pidfile(fake_server, project, tmp_path_factory):
    start = tmp_path_factory.mktemp("start")
    (start / "conf.py").write_text(textwrap.dedent(f"""\
        events = []
        def on_starting(config):
            with open({str(project / 'events.txt')!r}, "a") as f:
                f.write("starting\\n")
        def on_exit(config):
            with open({str(project / 'events.txt')!r}, "a") as f:
                f.write("exit\\n")
        """))
    pidfile = project / "app.pid"
    fake = fake_server()
    os.chdir(start)
    status = cli.main(["--no-master", "-c", "conf.py", "--chdir", str(project), "--pid", str(pidfile),
                       "cliapp:app"])
    assert status == 0
    _, _, cwd, pid_text = fake.calls[0]
    assert cwd == str(project)
    assert pid_text == f"{os.getpid()}\n"
    assert not pidfile.exists()  # removed at exit
    assert (project / "events.txt").read_text() == "starting\nexit\n"


def test_failing_hook_is_one_line(fake_server, project, capsys):
    (project / "conf.py").write_text("def on_starting(config):\n    raise ValueError('no')\n")
    fake = fake_server()
    assert cli.main(["--no-master", "-c", "conf.py", "cliapp:app"]) == 1
    assert capsys.readouterr().err == (
        "fastwsgi: error: on_starting hook raised ValueError: no\n")
    assert fake.calls == []


def test_config_warnings_go_to_the_error_log(fake_server, project, capsys):
    (project / "conf.py").write_text("treads = 4\n")
    fake_server()
    assert cli.main(["--no-master", "-c", "conf.py", "cliapp:app"]) == 0
    err = capsys.readouterr().err
    assert "[WARNING] conf.py: 'treads' is not a setting (did you mean 'threads'?)" in err


def test_master_settings_go_to_the_arbiter(fake_server, monkeypatch):
    fake = fake_server()
    calls = []
    arbiter = types.ModuleType("fastwsgi.arbiter")
    arbiter.run = lambda app_spec, config: calls.append((app_spec, config.workers)) or 0
    monkeypatch.setitem(sys.modules, "fastwsgi.arbiter", arbiter)
    monkeypatch.setattr(fastwsgi, "arbiter", arbiter, raising=False)
    assert cli.main(["-w", "4", "cliapp:app"]) == 0
    assert calls == [("cliapp:app", 4)]
    assert fake.calls == []


# ----------------------------------------------------------------- the real server



class Running:
    """`python -m fastwsgi ... fastwsgi.demo:app` until its banner shows its port."""

    BANNER = re.compile(r"listening on http://127\.0\.0\.1:(\d+) \(pid (\d+)\)")

    def __init__(self, *args, cwd):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWSGI_")}
        env.update(PYTHONPATH=pythonpath(), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastwsgi", "--bind", "127.0.0.1:0", *args,
             "fastwsgi.demo:app"], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.err_lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.err_lines.append(line)
            m = self.BANNER.search(line)
            if m:
                self.port, self.pid = int(m.group(1)), int(m.group(2))
                return
        self.proc.kill()
        raise AssertionError("no banner: " + "".join(self.err_lines))

    def get(self, path="/"):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: t/1\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, "".join(self.err_lines) + err


def test_real_server_banner_and_clean_stop(project):
    server = Running(cwd=project)
    assert server.pid == server.proc.pid
    assert server.get().startswith(b"HTTP/1.1 ")
    code, _, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_real_server_access_log_to_stdout(project):
    server = Running("--access-logfile", "-", cwd=project)
    server.get("/logged?x=1")
    code, out, err = server.stop()
    assert code == 0, err
    assert re.search(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /logged\?x=1 HTTP/1\.1" \d{3} '
                     r'(\d+|-) "-" "t/1"$', out, re.M), out


def test_real_server_address_in_use(project):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--bind", f"127.0.0.1:{port}", "fastwsgi.demo:app", cwd=project)
    assert_one_error_line(
        result, f"fastwsgi: error: cannot bind 127.0.0.1:{port}: address already in use")


def test_real_server_pidfile(project):
    pidfile = project / "s.pid"
    server = Running("--pid", str(pidfile), cwd=project)
    assert pidfile.read_text().strip() == str(server.pid)
    code, _, err = server.stop()
    assert code == 0, err
    assert not pidfile.exists()


def test_real_server_error_logfile(project):
    errlog = project / "error.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWSGI_")}
    env.update(PYTHONPATH=pythonpath())
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastwsgi", "--bind", "127.0.0.1:0", "--error-logfile",
         str(errlog), "fastwsgi.demo:app"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if errlog.exists() and "listening on" in errlog.read_text():
                break
            time.sleep(0.05)
        text = errlog.read_text()
        assert re.search(r"^\[[^\]]+\] \[\d+\] \[INFO\] fastwsgi \S+ listening on "
                         r"http://127\.0\.0\.1:\d+", text, re.M), text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "listening on" not in err


def test_single_process_hooks_get_gunicorn_shaped_arguments(fake_server, project):
    (project / "conf.py").write_text(textwrap.dedent("""\
        seen = []
        def on_starting(server):
            server.log.info("starting %s", server.app.app_uri)
            seen.append(("on_starting", server.pid, server.cfg.threads))
        def post_worker_init(worker):
            seen.append(("post_worker_init", worker.pid, worker.age, worker.wsgi.__name__))
        def worker_exit(server, worker):
            seen.append(("worker_exit", worker.pid))
        def on_exit(server):
            seen.append(("on_exit", server.pid))
        """))
    fake = fake_server()
    assert cli.main(["--no-master", "-c", "conf.py", "--threads", "2", "cliapp:app"]) == 0
    config = fake.calls[0][1]
    seen = config.on_starting.__globals__["seen"]
    pid = os.getpid()
    assert seen == [("on_starting", pid, 2), ("post_worker_init", pid, 1, "app"),
                    ("worker_exit", pid), ("on_exit", pid)]
    assert fake.calls[0][0].__name__ == "app"      # no request hooks: the app itself
    (project / "conf.py").write_text("def pre_request(worker, req):\n    pass\n")
    assert cli.main(["--no-master", "-c", "conf.py", "cliapp:app"]) == 0
    assert fake.calls[1][0].__name__ == "hooked"


def test_workers_that_cannot_load_the_app_at_start_say_it_as_one_process_does(project):
    # the master reports its workers' failure: the app's traceback, then the one line
    (project / "nested.py").write_text("import helper\napp = None\n")
    (project / "helper.py").write_text("def f():\n    return {}['key']\nf()\n")
    result = run("-w", "2", "-b", "127.0.0.1:0", "nested:app", cwd=project)
    assert_app_traceback_then_one_line(
        result, [(str(project / "nested.py"), 1), (str(project / "helper.py"), 3),
                 (str(project / "helper.py"), 2)],
        "fastwsgi: error: cannot import 'nested': KeyError: 'key' (helper.py, line 2)")
