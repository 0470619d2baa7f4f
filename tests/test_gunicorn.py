"""gunicorn config files, command lines and hooks, carried over unchanged.

The table tests check that every gunicorn setting name (fastwsgi._gunicorn lists
gunicorn's own) either works here or is judged, and that docs/gunicorn.md is that
table.  The loading tests drive fastwsgi.cli.load_config; the server tests start
real servers with a real gunicorn.conf.py whose hooks use ``server.log``.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from fastwsgi import _gunicorn, hooks
from fastwsgi.cli import build_parser
from fastwsgi.config import _FILE_KEYS, SETTINGS, Config, ConfigError
from process_helpers import children, get, wait_until
from test_config import load, write


# ------------------------------------------------------------------------ the table


def test_every_gunicorn_setting_works_or_is_judged():
    names = _gunicorn.GUNICORN_SETTINGS
    assert len(names) == len(set(names)) == 119   # gunicorn 25.x
    for name in names:
        # (a judged name that became a setting is looked up as the setting)
        assert name in _FILE_KEYS or name in _gunicorn.UNSUPPORTED, name
    assert set(_gunicorn.UNSUPPORTED) <= set(names)
    for name in ("preload_app", "raw_env", "pythonpath", "worker_connections",
                 "forwarded_allow_ips", "reload_extra_files", "capture_output",
                 "proc_name", "worker_class", "check_config", "print_config",
                 "keepalive", "accesslog", "errorlog", "loglevel"):
        assert name in _FILE_KEYS, name
    for name in ("on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
                 "post_worker_init", "worker_int", "worker_abort", "pre_request",
                 "post_request", "child_exit", "worker_exit", "nworkers_changed",
                 "on_exit"):
        assert _FILE_KEYS[name].section == "Hooks", name


def test_gunicorn_flags_are_not_ours_and_name_a_judged_setting():
    ours = {f for s in SETTINGS for f in s.flags}
    for flag, (name, _) in _gunicorn.FLAGS.items():
        assert name in _gunicorn.UNSUPPORTED, flag
        if flag in ours:        # it became a setting: ours to parse, not judged
            assert name in _FILE_KEYS, flag
    helptext = build_parser().format_help()
    for flag in ("-k", "--worker-class", "-p", "-e", "--env", "-n", "--name",
                 "--check-config", "--print-config", "--pythonpath",
                 "--worker-connections", "--capture-output", "--reload-extra-file"):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", helptext), flag


def test_gunicorn_doc_is_generated_from_the_tables():
    """docs/gunicorn.md: regenerate it with
    `python -m fastwsgi.config gunicorn > docs/gunicorn.md` when a table changes."""
    from fastwsgi.config import gunicorn_document
    doc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "docs", "gunicorn.md")
    with open(doc, encoding="utf-8") as f:
        assert f.read() == gunicorn_document()


# ---------------------------------------------------------------- config files


@pytest.mark.parametrize("line,message", [
    ("daemon = True", "daemon: gunicorn setting not supported: fastwsgi does not daemonize"),
    ("certfile = 'server.pem'", "certfile: gunicorn setting not supported: fastwsgi does "
                                "not terminate TLS"),
    ("limit_request_field_size = 4096", "use --limit-header-size"),
    ("proxy_allow_ips = '10.0.0.1'", "proxy_allow_ips: gunicorn setting not supported: "
                                     "fastwsgi takes PROXY headers, uwsgi packets"),
    ("uwsgi_allow_ips = '*'", "set --forwarded-allow-ips"),
    ("secure_scheme_headers = {'X-SCHEME': 'https'}", "have the proxy send X-Forwarded-Proto"),
    ("pre_exec = 'not callable'", "pre_exec: expected a callable (a gunicorn hook)"),
    ("statsd_host = 'localhost:8125'", "scrape its Prometheus metrics"),
    ("sendfile = False", "sendfile: gunicorn setting not supported"),
    ("worker_class = 'gevent'", "worker_class: fastwsgi has no worker class 'gevent'"),
    ("user = 'no-such-user-xyz'", "no such user 'no-such-user-xyz'"),
])
def test_gunicorn_settings_without_a_meaning_here_are_refused_in_one_line(
        tmp_path, line, message):
    write(tmp_path / "gunicorn.conf.py", line + "\n")
    with pytest.raises(ConfigError) as info:
        load(["-c", "gunicorn.conf.py", "a:b"], cwd=tmp_path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "gunicorn.conf.py"))
    assert "\n" not in str(info.value)


def test_gunicorn_defaults_and_harmless_values_are_accepted(tmp_path):
    write(tmp_path / "gunicorn.conf.py", """\
        daemon = False
        sendfile = True
        limit_request_field_size = 8190
        proxy_allow_ips = "127.0.0.1,::1"
        syslog = False
        user = None
        worker_tmp_dir = "/dev/shm"
        secure_scheme_headers = {"X-FORWARDED-PROTOCOL": "ssl",
                                 "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"}
        """)
    c, _ = load(["-c", "gunicorn.conf.py", "a:b"], cwd=tmp_path)
    assert c.warnings == []
    assert len(c.notes) == 2
    assert "worker_tmp_dir: has no effect in fastwsgi: workers report to the master " \
           "through shared memory" in c.notes[0]
    assert "secure_scheme_headers: only X-Forwarded-Proto counts" in c.notes[1]


def test_hooks_for_moments_fastwsgi_lacks_are_kept_with_a_warning(tmp_path):
    write(tmp_path / "gunicorn.conf.py", """\
        def pre_exec(server):
            server.log.info("Forked child, re-executing.")
        def ssl_context(conf, default_ssl_context_factory):
            return default_ssl_context_factory()
        """)
    c, _ = load(["-c", "gunicorn.conf.py", "a:b"], cwd=tmp_path)
    path = tmp_path / "gunicorn.conf.py"
    assert c.warnings == [
        f"{path}: pre_exec: gunicorn hook never called by fastwsgi: fastwsgi never "
        "re-executes itself (no SIGUSR2 binary upgrade): restart the service to run "
        "new code, or send SIGHUP",
        f"{path}: ssl_context: gunicorn hook never called by fastwsgi: fastwsgi does not "
        "terminate TLS: put nginx, HAProxy or a load balancer in front "
        "(docs/deployment.md)"]


def test_gunicorns_example_config_runs(tmp_path, serve):
    """gunicorn's examples/example_config.py (abridged: its settings and hooks)."""
    write(tmp_path / "example_config.py", """\
        bind = '127.0.0.1:8000'
        backlog = 2048
        workers = 1
        worker_class = 'sync'
        worker_connections = 1000
        timeout = 30
        keepalive = 2
        spew = False
        daemon = False
        raw_env = ['DJANGO_SECRET_KEY=something', 'SPAM=eggs']
        pidfile = None
        umask = 0
        user = None
        group = None
        tmp_upload_dir = None
        errorlog = '-'
        loglevel = 'info'
        accesslog = '-'
        access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
        proc_name = None
        def post_fork(server, worker):
            server.log.info("Worker spawned (pid: %s)", worker.pid)
        def pre_fork(server, worker):
            pass
        def pre_exec(server):
            server.log.info("Forked child, re-executing.")
        def when_ready(server):
            server.log.info("Server is ready. Spawning workers")
        def worker_int(worker):
            worker.log.info("worker received INT or QUIT signal")
        def worker_abort(worker):
            worker.log.info("worker received SIGABRT signal")
        def ssl_context(conf, default_ssl_context_factory):
            import ssl
            return default_ssl_context_factory()
        """)
    c, _ = load(["-c", "example_config.py", "a:b"], cwd=tmp_path)
    assert c.raw_env == ["DJANGO_SECRET_KEY=something", "SPAM=eggs"]
    assert (c.max_connections, c.keep_alive, c.access_log) == (1000, 2.0, "-")
    assert all(callable(getattr(c, h)) for h in ("post_fork", "pre_fork", "when_ready",
                                                  "worker_int", "worker_abort"))
    assert [w.split(": ")[1] for w in c.warnings] == ["pre_exec", "ssl_context"]
    (tmp_path / "envapp.py").write_text(ENVAPP)
    server = serve("-c", "example_config.py", "envapp:app", cwd=str(tmp_path))
    server.wait_for_output("Server is ready. Spawning workers")
    status, body = get(server)
    assert status == 200 and body.startswith("None None pid=")
    server.wait_for_output(r'"GET / HTTP/1.1" 200')       # accesslog = '-'


def test_gunicorn_names_that_work_here(tmp_path):
    (tmp_path / "libs").mkdir()
    write(tmp_path / "gunicorn.conf.py", """\
        preload_app = True
        worker_connections = 321
        raw_env = ["A=1", "B=x=y"]
        pythonpath = "libs, /opt/more"
        reload_extra_files = ["templates/*.html", "settings.toml"]
        capture_output = True
        proc_name = "shop"
        forwarded_allow_ips = "10.0.0.0/8"
        worker_class = "gthread"
        threads = 4
        """)
    c, _ = load(["-c", "gunicorn.conf.py", "a:b"], cwd=tmp_path)
    assert c.preload is True and c.max_connections == 321
    assert c.raw_env == ["A=1", "B=x=y"] and c.pythonpath == ["libs", "/opt/more"]
    assert c.reload_extra_files == ["templates/*.html", "settings.toml"]
    assert c.capture_output is True and c.proc_name == "shop"
    assert c.forwarded_allow_ips == "10.0.0.0/8"
    assert c.worker_class == "gthread" and c.threads == 4
    assert c.notes == [f"{tmp_path / 'gunicorn.conf.py'}: worker_class: gthread is "
                       "fastwsgi's worker with the app on --threads threads (4 here)"]


def test_post_request_with_two_three_or_four_arguments(tmp_path):
    seen = []
    validator = _FILE_KEYS["post_request"].validator

    def two(worker, req):
        seen.append(2)

    def three(worker, req, environ):
        seen.append(3)

    def four(worker, req, environ, resp):
        seen.append(4)

    assert validator(four) is four
    for func in (two, three, four):
        validator(func)("w", "r", {}, "resp")
    assert seen == [2, 3, 4]
    with pytest.raises(ValueError, match=r"\(worker, req\[, environ\[, resp\]\]\)"):
        validator(lambda worker: None)


def test_fastwsgi_conf_py_in_the_working_directory_is_loaded_by_default(tmp_path):
    write(tmp_path / "fastwsgi.conf.py", "workers = 3\n")
    write(tmp_path / "other.py", "workers = 5\n")
    c, _ = load(["a:b"], cwd=tmp_path)
    assert c.workers == 3
    assert c.source_of("workers") == f"{tmp_path / 'fastwsgi.conf.py'}: workers"
    assert c.config == str(tmp_path / "fastwsgi.conf.py")
    assert load(["-c", "other.py", "a:b"], cwd=tmp_path)[0].workers == 5
    env = {"FASTWSGI_CONFIG": "other.py"}
    assert load(["a:b"], env=env, cwd=tmp_path)[0].workers == 5


def test_config_file_forms_file_and_python(tmp_path, monkeypatch):
    write(tmp_path / "conf.py", "workers = 4\n")
    (tmp_path / "settings_pkg").mkdir()
    write(tmp_path / "settings_pkg" / "__init__.py", "")
    write(tmp_path / "settings_pkg" / "fastwsgi_conf.py", "threads = 6\nworkers = 2\n")
    assert load(["-c", "file:conf.py", "a:b"], cwd=tmp_path)[0].workers == 4
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    c, _ = load(["-c", "python:settings_pkg.fastwsgi_conf", "a:b"])
    assert (c.threads, c.workers) == (6, 2)
    assert c.source_of("threads") == "python:settings_pkg.fastwsgi_conf: threads"
    with pytest.raises(ConfigError, match=r"^--config: python:no_such_conf_xyz: "
                                          r"ModuleNotFoundError: No module named"):
        load(["-c", "python:no_such_conf_xyz", "a:b"])


def test_a_gunicorn_conf_py_alone_is_not_read_but_mentioned(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workers = 3\n")
    c, _ = load(["a:b"], cwd=tmp_path)
    assert c.workers == 1
    assert c.warnings == ["./gunicorn.conf.py is not read by default: pass "
                          "-c gunicorn.conf.py, or rename it fastwsgi.conf.py"]


# ------------------------------------------------------ environment, command line


def test_web_concurrency_is_the_workers_default(tmp_path):
    env = {"WEB_CONCURRENCY": "3"}
    c, _ = load(["a:b"], env=env, cwd=tmp_path)
    assert c.workers == 3 and c.source_of("workers") == "WEB_CONCURRENCY"
    write(tmp_path / "fastwsgi.conf.py", "workers = 2\n")
    assert load(["a:b"], env=env, cwd=tmp_path)[0].workers == 2
    assert load(["-w", "5", "a:b"], env=env, cwd=tmp_path)[0].workers == 5
    with pytest.raises(ConfigError, match="^WEB_CONCURRENCY: expected a positive integer"):
        load(["a:b"], env={"WEB_CONCURRENCY": "many"}, cwd=tmp_path)


def test_fastwsgi_cmd_args_is_gunicorn_cmd_args(tmp_path):
    env = {"FASTWSGI_CMD_ARGS": "-w 3 --threads 2 --log-level 'debug' env:app",
           "FASTWSGI_THREADS": "7"}
    c, spec = load(["-w", "5"], env=env, cwd=tmp_path)
    assert (c.workers, c.threads, c.log_level, spec) == (5, 2, "debug", "env:app")
    assert c.source_of("threads") == "FASTWSGI_CMD_ARGS"
    assert load(["cli:app"], env=env, cwd=tmp_path)[1] == "cli:app"
    write(tmp_path / "conf.py", "threads = 9\n")
    env = {"FASTWSGI_CMD_ARGS": "-c conf.py", "FASTWSGI_CONFIG": "other.py"}
    c, _ = load(["a:b"], env=env, cwd=tmp_path)
    assert c.threads == 9 and c.source_of("config") == "FASTWSGI_CMD_ARGS"
    c, _ = load(["a:b"], env={"GUNICORN_CMD_ARGS": "-w 3"}, cwd=tmp_path)
    assert c.workers == 1
    assert c.warnings == ["GUNICORN_CMD_ARGS is not read: set FASTWSGI_CMD_ARGS"]
    with pytest.raises(ConfigError, match="^FASTWSGI_CMD_ARGS: expected a positive"):
        load(["a:b"], env={"FASTWSGI_CMD_ARGS": "-w none"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="^FASTWSGI_CMD_ARGS: No closing quotation"):
        load(["a:b"], env={"FASTWSGI_CMD_ARGS": "-w '3"}, cwd=tmp_path)


@pytest.mark.parametrize("bind,expected", [
    (":8000", "0.0.0.0:8000"), ("8000", "0.0.0.0:8000"), (":0", "0.0.0.0:0"),
    ("localhost", "localhost:8000"), ("127.0.0.1:9", "127.0.0.1:9"),
    ("tcp://127.0.0.1:7", "127.0.0.1:7"),
])
def test_gunicorn_bind_forms(tmp_path, bind, expected):
    assert load(["-b", bind, "a:b"], cwd=tmp_path)[0].bind == [expected]


def test_worker_classes(tmp_path):
    c, _ = load(["-k", "sync", "a:b"], cwd=tmp_path)
    assert c.worker_class == "sync" and c.notes == []
    c, _ = load(["-k", "gthread", "--threads", "8", "a:b"], cwd=tmp_path)
    assert c.worker_class == "gthread" and c.threads == 8
    assert c.notes == ["--worker-class: gthread is fastwsgi's worker with the app on "
                       "--threads threads (8 here)"]
    assert load(["--worker-class", "gunicorn.workers.sync.SyncWorker", "a:b"],
                cwd=tmp_path)[0].worker_class == "sync"
    for klass in ("gevent", "eventlet", "uvicorn.workers.UvicornWorker", "tornado"):
        with pytest.raises(ConfigError) as info:
            load(["-k", klass, "a:b"], cwd=tmp_path)
        assert str(info.value).startswith(
            f"--worker-class: fastwsgi has no worker class '{klass}': its worker serves "
            "connections from an event loop and runs the app on --threads N threads")


def test_gunicorn_only_flags_on_the_command_line(tmp_path):
    c, spec = load(["--worker-tmp-dir", "/dev/shm", "-R", "app:x"], cwd=tmp_path)
    assert spec == "app:x"
    assert [n.split(":")[0] for n in c.notes] == ["--worker-tmp-dir", "-R"]
    c, _ = load(["--limit-request-field_size=8190", "app:x"], cwd=tmp_path)
    assert c.notes == [] and c.warnings == []
    for argv, message in [
        (["-D"], "-D: gunicorn setting not supported: fastwsgi does not daemonize"),
        (["--certfile=/etc/ssl/x.pem"], "--certfile: gunicorn setting not supported"),
        (["--no-sendfile"], "--no-sendfile: gunicorn setting not supported"),
        (["--limit-request-field_size", "100"], "--limit-request-field_size: gunicorn "
                                                "setting not supported: use --limit-header"),
    ]:
        with pytest.raises(ConfigError) as info:
            load(argv + ["app:x"], cwd=tmp_path)
        assert str(info.value).startswith(message), argv


def test_unknown_option_names_the_option_not_the_app_spec(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load(["--frobnicate", "3", "myapp:app"], cwd=tmp_path)
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("fastwsgi: error: unrecognized option: --frobnicate (fastwsgi --help "
                    "lists them; gunicorn's: docs/gunicorn.md)")


def test_gunicorn_short_flags(tmp_path):
    c, _ = load(["-p", "app.pid", "-e", "A=1", "--env", "B=2", "-n", "shop",
                 "--pythonpath", "src,lib", "--worker-connections", "50",
                 "--capture-output", "--reload-extra-file", "a.cfg", "app:x"], cwd=tmp_path)
    assert c.pidfile == "app.pid" and c.raw_env == ["A=1", "B=2"] and c.proc_name == "shop"
    assert c.pythonpath == ["src", "lib"] and c.max_connections == 50
    assert c.capture_output is True and c.reload_extra_files == ["a.cfg"]
    with pytest.raises(ConfigError, match="^--env: expected KEY=VALUE, got 'NOVALUE'"):
        load(["-e", "NOVALUE", "app:x"], cwd=tmp_path)


# ------------------------------------------------------------------ hook objects


def test_request_hooks_cost_nothing_when_not_set():
    def app(environ, start_response):
        return []

    assert hooks.wrap_app(app, Config()) is app
    assert hooks.wrap_app(app, Config.from_options(pre_request=lambda w, r: None)) is not app


def test_request_seen_by_pre_request_is_gunicorn_shaped():
    req = hooks.Request({"REQUEST_METHOD": "POST", "PATH_INFO": "/a b", "QUERY_STRING": "x=1",
                         "RAW_URI": "/a%20b?x=1", "SERVER_PROTOCOL": "HTTP/1.0",
                         "HTTP_USER_AGENT": "t", "CONTENT_TYPE": "text/plain",
                         "REMOTE_ADDR": "10.1.2.3", "wsgi.url_scheme": "http"})
    assert (req.method, req.path, req.query, req.uri, req.version) == (
        "POST", "/a b", "x=1", "/a%20b?x=1", (1, 0))
    assert sorted(req.headers) == [("CONTENT-TYPE", "text/plain"), ("USER-AGENT", "t")]
    assert req.remote_addr == "10.1.2.3"


# ---------------------------------------------------------------- real servers

ENVAPP = """\
import os, sys

def app(environ, start_response):
    if environ["PATH_INFO"] == "/print":
        print("printed by the app", flush=True)
    body = f"{os.environ.get('GREETING')} {os.environ.get('FROM_FILE')} pid={os.getpid()}"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
"""

GUNICORN_CONF = """\
# a gunicorn.conf.py as gunicorn's docs write them
import os

workers = 2
worker_class = "gthread"
threads = 2
preload_app = False
loglevel = "info"
raw_env = ["FROM_FILE=file"]
worker_tmp_dir = "/dev/shm"

CALLS = os.environ["HOOK_CALLS"]


def _note(text):
    with open(CALLS, "a") as f:
        f.write(text + "\\n")


def on_starting(server):
    server.log.info("hook on_starting: master %s app %s", server.pid, server.app.app_uri)
    _note(f"on_starting {server.pid} {os.getpid()}")


def when_ready(server):
    server.log.info("hook when_ready: %d workers", server.num_workers)
    _note("when_ready")


def nworkers_changed(server, new_value, old_value):
    _note(f"nworkers_changed {new_value} {old_value}")


def pre_fork(server, worker):
    _note(f"pre_fork {worker.age} {worker.pid}")


def post_fork(server, worker):
    server.log.info("hook post_fork: worker %s", worker.pid)
    _note(f"post_fork {worker.pid} {os.getpid()} {worker.ppid}")


def post_worker_init(worker):
    worker.log.info("hook post_worker_init: %s", worker.pid)
    _note(f"post_worker_init {worker.pid} {callable(worker.wsgi)}")


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    _note(f"pre_request {worker.pid} {req.method} {req.path}")


def post_request(worker, req, environ, resp):
    _note(f"post_request {req.path} {resp.status_code} {resp.sent}")


def on_reload(server):
    _note("on_reload")


def worker_int(worker):
    _note(f"worker_int {worker.pid}")


def worker_abort(worker):
    _note(f"worker_abort {worker.pid}")


def child_exit(server, worker):
    _note(f"child_exit {worker.pid}")


def worker_exit(server, worker):
    _note(f"worker_exit {worker.pid}")


def on_exit(server):
    server.log.info("hook on_exit")
    _note("on_exit")
"""


@pytest.fixture
def gproject(tmp_path):
    (tmp_path / "envapp.py").write_text(ENVAPP)
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    calls = tmp_path / "calls.txt"
    calls.touch()
    return tmp_path, calls


def lines_of(calls, prefix=""):
    return [line for line in calls.read_text().splitlines() if line.startswith(prefix)]


def test_a_gunicorn_conf_py_and_command_line_run_unchanged(serve, gproject):
    project, calls = gproject
    server = serve("-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "-k", "gthread",
                   "--threads", "2", "-w", "2", "-p", "app.pid", "-e", "GREETING=hello",
                   "-n", "shop", "--worker-tmp-dir", "/dev/shm", "envapp:app",
                   cwd=str(project), bind=False, env={"HOOK_CALLS": str(calls)})
    wait_until(lambda: len(lines_of(calls, "post_worker_init")) == 2, 20, "two workers")
    status, body = get(server)
    # -e on the command line replaces the file's raw_env, as in gunicorn
    assert status == 200 and body.startswith("hello None pid=")
    assert (project / "app.pid").read_text().strip() == str(server.pid)
    wait_until(lambda: lines_of(calls, "post_request"), 10, "post_request")
    assert lines_of(calls, "pre_request")[0].endswith(" GET /")
    assert lines_of(calls, "post_request") == [f"post_request / 200 {len(body)}"]

    workers = children(server.pid)
    assert lines_of(calls)[:3] == [f"on_starting {server.pid} {server.pid}",
                                   "nworkers_changed 2 None", "when_ready"]
    assert sorted(lines_of(calls, "pre_fork")) == ["pre_fork 1 None", "pre_fork 2 None"]
    assert sorted(lines_of(calls, "post_fork")) == sorted(
        f"post_fork {w} {w} {server.pid}" for w in workers)
    assert sorted(lines_of(calls, "post_worker_init")) == sorted(
        f"post_worker_init {w} True" for w in workers)
    out = server.output
    assert f"hook on_starting: master {server.pid} app envapp:app" in out
    assert "hook when_ready: 2 workers" in out and "hook post_fork: worker" in out
    assert "--worker-tmp-dir: has no effect in fastwsgi" in out
    assert "gthread is fastwsgi's worker with the app on --threads threads (2 here)" in out

    server.send_signal(signal.SIGTTIN)
    wait_until(lambda: "nworkers_changed 3 2" in lines_of(calls), 10, "nworkers_changed")
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: "on_reload" in lines_of(calls), 10, "on_reload")
    wait_until(lambda: lines_of(calls, "child_exit"), 20, "the old workers to exit")
    assert server.stop() == 0
    calls_now = lines_of(calls)
    assert calls_now[-1] == "on_exit" and "hook on_exit" in server.output
    exited = {line.split()[1] for line in lines_of(calls, "worker_exit")}
    reaped = {line.split()[1] for line in lines_of(calls, "child_exit")}
    assert {str(w) for w in workers} <= exited and exited == reaped
    assert not (project / "app.pid").exists()


def test_worker_int_and_worker_abort(serve, gproject):
    project, calls = gproject
    server = serve("-c", "gunicorn.conf.py", "-w", "2", "envapp:app",
                   cwd=str(project), env={"HOOK_CALLS": str(calls)})
    wait_until(lambda: len(lines_of(calls, "post_worker_init")) == 2, 20, "two workers")
    first, second = sorted(children(server.pid))
    os.kill(first, signal.SIGINT)
    wait_until(lambda: f"worker_int {first}" in lines_of(calls), 10, "worker_int")
    wait_until(lambda: f"child_exit {first}" in lines_of(calls), 10, "the worker to exit")
    os.kill(second, signal.SIGABRT)
    wait_until(lambda: f"worker_abort {second}" in lines_of(calls), 10, "worker_abort")
    server.wait_for_output(rf"worker {second} was killed by signal 6 \(SIGABRT\)")
    assert "Current thread" in server.output or "Thread 0x" in server.output  # stacks
    assert get(server)[0] == 200


def test_request_hooks_in_the_default_process_model(serve, gproject):
    """No -w: one process today, master and worker once the master is the default;
    either way the request hooks run and a pre_request that raises fails only its
    own request (500, logged) while the server keeps serving."""
    project, calls = gproject
    conf = project / "hooks.conf.py"
    conf.write_text(GUNICORN_CONF.replace("workers = 2", "") + textwrap.dedent("""\

        def pre_request(worker, req):
            _note(f"pre_request {worker.pid} {req.method} {req.path}")
            if req.path == "/refuse":
                raise PermissionError("refused by pre_request")
        """))
    server = serve("-c", str(conf), "envapp:app", cwd=str(project),
                   env={"HOOK_CALLS": str(calls), "GREETING": "hi"})
    wait_until(lambda: lines_of(calls, "post_worker_init"), 20, "post_worker_init")
    assert get(server, "/refuse")[0] == 500
    status, body = get(server, "/ok")
    assert status == 200 and body.startswith("hi file")
    wait_until(lambda: len(lines_of(calls, "post_request")) == 2, 10, "post_request")
    assert lines_of(calls, "post_request")[1] == f"post_request /ok 200 {len(body)}"
    assert "PermissionError: refused by pre_request" in server.output
    assert "when_ready" in lines_of(calls)
    assert server.stop() == 0
    assert lines_of(calls)[-1] == "on_exit" and lines_of(calls, "worker_exit")


def run_cli(*args, cwd, env=None):
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("FASTWSGI_") and k != "WEB_CONCURRENCY"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fastwsgi", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=60)


def test_check_config_loads_the_app_and_exits(gproject):
    project, _ = gproject
    result = run_cli("--check-config", "envapp:app", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("fastwsgi: configuration and application envapp:app "
                             "are fine\n")
    (project / "broken.py").write_text("import os\nos.nothing\n")
    result = run_cli("--check-config", "broken:app", cwd=project)
    assert result.returncode == 1
    assert f'File "{project / "broken.py"}", line 2, in <module>' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "fastwsgi: error: cannot import 'broken': AttributeError: module 'os' has no "
        "attribute 'nothing' (broken.py, line 2)")
    result = run_cli("--check-config", "-w", "x", "envapp:app", cwd=project)
    assert result.returncode == 1
    assert result.stderr == "fastwsgi: error: --workers: expected a positive integer, " \
                            "got 'x'\n"


def test_print_config_shows_values_and_sources(gproject):
    project, _ = gproject
    (project / "fastwsgi.conf.py").write_text("threads = 3\ndef on_exit(server):\n    pass\n")
    result = run_cli("--print-config", "-b", ":9000", "envapp:app", cwd=project,
                     env={"WEB_CONCURRENCY": "4"})
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert re.search(r"^workers +=  ?4  # WEB_CONCURRENCY$", result.stdout, re.M), out
    assert re.search(r"^threads += 3  # /.*/fastwsgi\.conf\.py: threads$", result.stdout, re.M)
    assert re.search(r"^bind += \['0\.0\.0\.0:9000'\]  # --bind$", result.stdout, re.M)
    assert re.search(r"^on_exit += <on_exit\(\)>  # /.*/fastwsgi\.conf\.py: on_exit$",
                     result.stdout, re.M)
    assert len(out) == len(SETTINGS)


def test_bind_colon_port_listens_on_every_interface(serve, gproject):
    project, _ = gproject
    server = serve("-b", ":0", "envapp:app", cwd=str(project), bind=False)
    assert server.url.startswith("http://0.0.0.0:")
    assert get(server)[0] == 200


def test_env_and_pythonpath(serve, tmp_path):
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libapp.py").write_text(ENVAPP)
    server = serve("--pythonpath", "libs", "-e", "GREETING=from-e", "-e", "FROM_FILE=x=y",
                   "libapp:app", cwd=str(tmp_path))
    status, body = get(server, "/print")
    assert status == 200 and body.startswith("from-e x=y pid=")


def test_capture_output_sends_the_apps_prints_to_the_error_log(tmp_path):
    (tmp_path / "envapp.py").write_text(ENVAPP)
    log = tmp_path / "error.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWSGI_")}
    proc = subprocess.Popen([sys.executable, "-m", "fastwsgi", "-b", "127.0.0.1:0",
                             "--capture-output", "--error-logfile", str(log), "envapp:app"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        banner = wait_until(lambda: log.exists() and re.search(
            r"listening on http://127\.0\.0\.1:(\d+)", log.read_text()), 20, "the banner")

        class Where:
            host, port = "127.0.0.1", int(banner.group(1))

        assert get(Where, "/print")[0] == 200
        wait_until(lambda: "printed by the app" in log.read_text(), 10, "the print")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert "printed by the app" not in out and err == ""


def test_proc_name(serve, gproject):
    """-n NAME: process titles with setproctitle (the `proctitle` extra), else a
    debug note; whichever is installed here is what is checked."""
    project, _ = gproject
    server = serve("-n", "shop", "-w", "2", "--log-level", "debug", "envapp:app",
                   cwd=str(project))
    workers = wait_until(lambda: len(children(server.pid)) == 2 and children(server.pid),
                         20, "two workers")

    def title(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()

    try:
        import setproctitle  # noqa: F401
    except ImportError:
        assert "--name shop: process titles need the setproctitle package" in server.output
        assert b"fastwsgi: master shop" not in title(server.pid)
    else:
        assert title(server.pid).startswith(b"fastwsgi: master shop")
        wait_until(lambda: all(title(w).startswith(b"fastwsgi: worker shop")
                               for w in workers), 10, "the worker titles")


def test_reload_extra_files(serve, gproject):
    project, _ = gproject
    (project / "templates").mkdir()
    template = project / "templates" / "page.html"
    template.write_text("v1")
    server = serve("--reload", "--reload-extra-file", "templates/*.html", "envapp:app",
                   cwd=str(project))
    server.wait_for_output(r"worker \d+ booted")
    wait_until(lambda: get(server)[0] == 200, 10, "a worker")
    st = template.stat()
    template.write_text("v2")
    os.utime(template, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    server.wait_for_output(r"page\.html changed; reloading", timeout=15)


def test_a_judged_name_that_becomes_a_setting_is_the_setting(tmp_path, monkeypatch):
    """Others add settings (gunicorn's user, group...): the setting, its alias and its
    flag then win over the table of unsupported names."""
    monkeypatch.setitem(_gunicorn.UNSUPPORTED, "backlog", ((2048,), "never used"))
    monkeypatch.setitem(_gunicorn.FLAGS, "--backlog", ("backlog", True))
    write(tmp_path / "conf.py", "backlog = 64\n")
    c, _ = load(["-c", "conf.py", "--backlog", "128", "a:b"], cwd=tmp_path)
    assert c.backlog == 128 and c.source_of("backlog") == "--backlog"
    c, _ = load(["-c", "conf.py", "a:b"], cwd=tmp_path)
    assert c.backlog == 64 and c.notes == []
