"""fastwsgi.config: the settings table, each validator, and source precedence.

Precedence under test: default < pyproject.toml [tool.fastwsgi] < -c file.py
< FASTWSGI_* environment < command line. Every source's error names the source.
"""

import os
import re
import sys
import textwrap

import pytest

from fastwsgi import config as cfg
from fastwsgi.cli import build_parser, load_config
from fastwsgi.config import (
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    ConfigError,
    parse_bind,
    settings_markdown,
)


def load(argv, env=None, cwd=None):
    return load_config(argv, env=env or {}, cwd=str(cwd) if cwd else None)


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------ the table


def test_every_setting_is_complete_and_unique():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    flags = [f for s in SETTINGS for f in s.flags]
    assert len(flags) == len(set(flags)), "a CLI flag is declared twice"
    for s in SETTINGS:
        assert s.name.isidentifier() and s.name == s.name.lower()
        assert s.help and s.section and callable(s.validator)
        assert s.sources <= cfg.ALL_SOURCES
        if "cli" in s.sources:
            assert s.cli_flag and s.cli_flag.startswith("--"), s.name
        # The default itself passes its validator and is already normalized.
        if s.default is not None:
            assert s.validator(s.default) == s.default, s.name


def test_defaults_match_the_declared_values():
    c = Config()
    assert c.bind == ["127.0.0.1:8000"]
    assert c.workers == 1 and c.threads == 1
    assert c.limit_request_line == 8190
    assert c.limit_header_size == 65536
    assert c.limit_request_fields == 100
    assert c.limit_request_body == 1073741824
    assert c.keep_alive == 5 and c.header_timeout == 10 and c.io_timeout == 30
    assert c.server_header == "fastwsgi"
    assert c.backlog == 2048 and c.max_connections == 10000
    assert c.log_level == "info"
    assert c.access_log is None and c.error_log == "-"
    assert c.access_log_format == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    assert c.timeout == 30 and c.graceful_timeout == 30
    assert c.max_requests == 0 and c.max_requests_jitter == 0
    assert c.preload is False and c.reload is False and c.reuse_port is False
    assert c.pidfile is None and c.chdir is None and c.config is None
    assert c.unix_socket_mode == 0o660
    assert c.root_path == ""
    for hook in ("on_starting", "post_fork", "worker_exit", "on_exit"):
        assert getattr(c, hook) is None
    assert all(c.source_of(s.name) == "default" for s in SETTINGS)


def test_default_list_is_not_shared_between_configs():
    a, b = Config(), Config()
    a.bind.append("127.0.0.1:9")
    assert b.bind == ["127.0.0.1:8000"]
    assert SETTINGS_BY_NAME["bind"].default == ["127.0.0.1:8000"]


def test_env_var_names_derive_from_setting_names():
    assert SETTINGS_BY_NAME["max_requests"].env_var == "FASTWSGI_MAX_REQUESTS"
    assert SETTINGS_BY_NAME["access_log"].env_var == "FASTWSGI_ACCESS_LOG"
    assert SETTINGS_BY_NAME["on_starting"].env_var is None


def test_settings_markdown_lists_every_setting():
    table = settings_markdown()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| Setting |")
    assert len(lines) == 2 + len(SETTINGS)
    for s in SETTINGS:
        assert f"`{s.name}`" in table
    assert "`--no-reuse-port`" in table
    assert "`FASTWSGI_WORKERS`" in table
    assert "Files also accept `accesslog`." in table
    assert "`0o660`" in table and "| `False` |" in table and "| `0` |" in table
    # Pipes in the access log format would break the table; none are unescaped.
    for line in lines[2:]:
        assert line.replace("\\|", "").count("|") == 6


def test_parser_is_generated_from_the_table():
    parser = build_parser()
    helptext = parser.format_help()
    for s in SETTINGS:
        if "cli" in s.sources:
            for flag in s.flags:
                assert flag in helptext
    assert "--no-preload" in helptext


@pytest.mark.parametrize("columns", [60, 100])
def test_help_is_as_wide_as_the_terminal(monkeypatch, columns):
    # (the parser is built with a fixed-width formatter, which is only used to
    # check metavars: help, usage and errors get argparse's own)
    monkeypatch.setenv("COLUMNS", str(columns))
    lines = build_parser().format_help().splitlines()
    assert max(len(line) for line in lines) == columns - 2


def test_the_cli_drops_the_modules_parsing_imported(tmp_path):
    """load_config(drop_parser_modules=True), as the CLI calls it: argparse and
    what it imported leave sys.modules (a server would keep them for nothing);
    a usage error found after parsing still gets argparse's message and exit 2."""
    import subprocess
    code = textwrap.dedent("""\
        import sys
        from fastwsgi.cli import load_config
        config, spec = load_config(sys.argv[1:], env={}, drop_parser_modules=True)
        print(spec, config.bind, config.workers)
        print(*[m for m in ("argparse", "gettext", "locale") if m in sys.modules])
    """)

    def run(*argv):
        return subprocess.run([sys.executable, "-c", code, *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    # (site or a .pth file may import some of them before fastwsgi runs)
    at_startup = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                                capture_output=True, text=True, timeout=60).stdout.split()
    result = run("-b", "127.0.0.1:9", "-w", "3", "app:x")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "app:x ['127.0.0.1:9'] 3"
    assert second.split() == [m for m in ("argparse", "gettext", "locale") if m in at_startup]
    result = run("one:app", "two:app")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == ("fastwsgi: error: more than one APP_SPEC: "
                                              "one:app two:app (mount them: PREFIX=APP_SPEC)")
    assert result.stderr.startswith("usage: fastwsgi [OPTIONS] APP_SPEC")


def test_dropping_keeps_modules_imported_before():
    import argparse
    load_config(["app:x"], env={}, drop_parser_modules=True)
    assert sys.modules["argparse"] is argparse


# ------------------------------------------------------------------------ validators

VALID = [
    ("workers", "4", 4), ("workers", 4, 4), ("workers", " 2 ", 2),
    ("threads", "1", 1),
    ("backlog", 1, 1),
    ("max_requests", "0", 0), ("max_requests_jitter", 5, 5),
    ("limit_request_line", "100", 100),
    ("limit_request_fields", 7, 7),
    ("limit_header_size", "64K", 65536), ("limit_header_size", "1000", 1000),
    ("limit_request_body", "0", 0), ("limit_request_body", "1G", 1 << 30),
    ("limit_request_body", "10mb", 10 << 20), ("limit_request_body", 5, 5),
    ("keep_alive", "0", 0.0), ("keep_alive", 2, 2.0), ("keep_alive", "1.5", 1.5),
    ("header_timeout", "0.25", 0.25), ("io_timeout", 3, 3.0),
    ("timeout", "0", 0.0), ("graceful_timeout", 1.5, 1.5),
    ("reuse_port", "true", True), ("reuse_port", "0", False), ("reuse_port", "YES", True),
    ("preload", "off", False), ("reload", True, True),
    ("log_level", "DEBUG", "debug"), ("log_level", "warning", "warning"),
    ("unix_socket_mode", "660", 0o660), ("unix_socket_mode", "0o600", 0o600),
    ("unix_socket_mode", "0777", 0o777), ("unix_socket_mode", 0o640, 0o640),
    ("server_header", "", ""), ("server_header", "MyServer/1.0", "MyServer/1.0"),
    ("root_path", "/api/", "/api"), ("root_path", "", ""), ("root_path", "/a/b", "/a/b"),
    ("access_log", "-", "-"), ("access_log", "", None), ("access_log", None, None),
    ("error_log", "/tmp/x.log", "/tmp/x.log"),
    ("pidfile", "run.pid", "run.pid"), ("pidfile", None, None),
    ("access_log_format", "%(h)s %({x-request-id}i)s %(D)s %({REMOTE_PORT}e)s",
     "%(h)s %({x-request-id}i)s %(D)s %({REMOTE_PORT}e)s"),
    ("access_log_format", "%(s)s 100%%", "%(s)s 100%%"),
    ("bind", "0.0.0.0:80", ["0.0.0.0:80"]),
    ("bind", ["[::1]:8000", "unix:/tmp/a.sock", "fd://3"],
     ["[::1]:8000", "unix:/tmp/a.sock", "fd://3"]),
    ("bind", "unix:///tmp/b.sock", ["unix:/tmp/b.sock"]),
    ("bind", "localhost", ["localhost:8000"]),
    ("bind", "127.0.0.1:0", ["127.0.0.1:0"]),
]


@pytest.mark.parametrize("name,value,expected", VALID)
def test_validator_accepts(name, value, expected):
    assert SETTINGS_BY_NAME[name].validator(value) == expected


INVALID = [
    ("workers", "x", "expected a positive integer, got 'x'"),
    ("workers", "0", "expected a positive integer, got '0'"),
    ("workers", -1, "expected a positive integer, got -1"),
    ("workers", 2.5, "expected a positive integer, got 2.5"),
    ("workers", True, "expected a positive integer, got True"),
    ("workers", "", "expected a positive integer, got ''"),
    ("threads", "0", "positive integer"),
    ("backlog", "-5", "positive integer"),
    ("max_connections", "lots", "positive integer"),
    ("limit_request_line", "0", "positive integer"),
    ("limit_request_fields", "1.5", "positive integer"),
    ("max_requests", "-1", "expected a non-negative integer, got '-1'"),
    ("max_requests_jitter", "x", "non-negative integer"),
    ("limit_header_size", "0", "expected a positive size in bytes"),
    ("limit_header_size", "12Q", "positive size"),
    ("limit_request_body", "-1", "expected a non-negative size in bytes"),
    ("keep_alive", "-1", "expected a non-negative number of seconds, got '-1'"),
    ("keep_alive", "nan", "non-negative number of seconds"),
    ("keep_alive", "inf", "non-negative number of seconds"),
    ("header_timeout", "0", "expected a positive number of seconds, got '0'"),
    ("io_timeout", "soon", "positive number of seconds"),
    ("timeout", [], "non-negative number of seconds"),
    ("reuse_port", "maybe", "expected a boolean"),
    ("preload", 2, "expected a boolean"),
    ("log_level", "loud", "expected one of debug, info, warning, error, critical, got 'loud'"),
    ("log_level", 10, "expected one of"),
    ("unix_socket_mode", "999", "octal file mode"),
    ("unix_socket_mode", "0o1777", "octal file mode"),
    ("unix_socket_mode", "rw", "octal file mode"),
    ("unix_socket_mode", 660, "octal file mode"),  # decimal 660 > 0o777
    ("server_header", "a\r\nSet-Cookie: x", "control characters"),
    ("server_header", "caf\u00e9\u20ac", "ISO-8859-1"),
    ("server_header", 5, "expected a string"),
    ("root_path", "api", "starting with '/'"),
    ("error_log", "", "non-empty string"),
    ("access_log", 3, "expected a string"),
    ("access_log_format", "%(zz)s", "unknown access log atom 'zz'"),
    ("access_log_format", "%s %s", "placeholders"),
    ("access_log_format", "%(h)", "invalid access log format"),
    ("access_log_format", "", "non-empty"),
    ("chdir", "/definitely/not/here", "no such directory"),
    ("bind", "", "expected HOST:PORT"),
    ("bind", [], "expected one or more"),
    ("bind", "127.0.0.1:99999", "port must be 0-65535"),
    ("bind", "127.0.0.1:http", "port must be 0-65535"),
    ("bind", "::1:8000", "expected HOST:PORT"),
    ("bind", "[::zz]:80", "invalid IPv6 address"),
    ("bind", "[::1]80", "expected HOST:PORT"),
    ("bind", "unix:", "expected HOST:PORT"),
    ("bind", "fd://x", "expected HOST:PORT"),
    ("bind", "http://localhost:80", "expected HOST:PORT"),
    ("bind", 8000, "expected one or more"),
]


@pytest.mark.parametrize("name,value,message", INVALID)
def test_validator_rejects(name, value, message):
    with pytest.raises(ValueError) as info:
        SETTINGS_BY_NAME[name].validator(value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_hook_validator_checks_callability_and_arity():
    starting = SETTINGS_BY_NAME["on_starting"].validator
    post_fork = SETTINGS_BY_NAME["post_fork"].validator

    def one(server):
        pass

    def two(server, worker):
        pass

    def flexible(*args):
        pass

    assert starting(one) is one and starting(None) is None
    assert post_fork(two) is two and post_fork(flexible) is flexible
    with pytest.raises(ValueError, match=r"a callable taking \(server\)"):
        starting(two)
    with pytest.raises(ValueError, match=r"a callable taking \(server, worker\)"):
        post_fork(one)
    with pytest.raises(ValueError, match="got 'print'"):
        starting("print")


def test_parse_bind_gives_structured_addresses():
    assert parse_bind("0.0.0.0:80") == cfg.BindAddress("tcp", host="0.0.0.0", port=80)
    assert parse_bind("[::1]:8080") == cfg.BindAddress("tcp", host="::1", port=8080)
    assert parse_bind("unix:/run/app.sock") == cfg.BindAddress("unix", path="/run/app.sock")
    assert parse_bind("fd://4") == cfg.BindAddress("fd", fd=4)
    assert str(parse_bind("[::1]:8080")) == "[::1]:8080"
    c = Config.from_options(bind=["127.0.0.1:0", "unix:x.sock"])
    assert [a.kind for a in c.bind_addresses] == ["tcp", "unix"]


# ------------------------------------------------------------------- Config object


def test_from_options_sets_and_validates():
    def on_exit(config):
        pass

    c = Config.from_options(workers="3", keep_alive=0, bind="127.0.0.1:0", on_exit=on_exit)
    assert c.workers == 3 and c.keep_alive == 0.0 and c.bind == ["127.0.0.1:0"]
    assert c.on_exit is on_exit
    assert c.source_of("workers") == "workers="
    assert c.source_of("threads") == "default"


def test_from_options_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'wokers'.*did you mean 'workers'"):
        Config.from_options(wokers=2)
    with pytest.raises(TypeError, match="'frobnicate'"):
        Config.from_options(frobnicate=True)


def test_from_options_bad_value_names_the_keyword():
    with pytest.raises(ConfigError) as info:
        Config.from_options(workers="x")
    assert str(info.value) == "workers=: expected a positive integer, got 'x'"


def test_attribute_assignment_is_validated():
    c = Config()
    c.threads = "8"
    assert c.threads == 8
    with pytest.raises(ConfigError, match="Config.threads: expected a positive integer"):
        c.threads = 0
    with pytest.raises(AttributeError, match="did you mean 'threads'"):
        c.thread = 2
    with pytest.raises(AttributeError):
        c.no_such_setting  # noqa: B018


def test_needs_master():
    # a master (and at least one worker) by default, as gunicorn
    assert Config().needs_master() == "default"
    assert Config.from_options(threads=8, timeout=0).needs_master() == "default"
    assert Config.from_options(master=False).needs_master() is None
    assert Config.from_options(master=False, threads=8).needs_master() is None
    for options, text in (({"workers": 2}, "--workers > 1"), ({"reload": True}, "--reload"),
                          ({"max_requests": 100}, "--max-requests"),
                          ({"preload": True}, "--preload"),
                          ({"max_worker_memory": "1G"}, "--max-worker-memory"),
                          ({"max_worker_age": 60}, "--max-worker-age")):
        with pytest.raises(ConfigError, match=f"--no-master: {re.escape(text)} needs"):
            Config.from_options(master=False, **options).needs_master()


def test_as_dict_and_repr():
    c = Config.from_options(workers=2)
    d = c.as_dict()
    assert d["workers"] == 2 and set(d) == set(SETTINGS_BY_NAME)
    assert "workers=2" in repr(c) and "threads" not in repr(c)


# ------------------------------------------------------------------------ precedence


def test_precedence_default_pyproject_file_env_cli(tmp_path):
    # Each layer sets one more setting than the layer below it overrides:
    # threads: pyproject only; backlog: pyproject+file; keep_alive: +env; workers: +cli.
    write(tmp_path / "pyproject.toml", """\
        [project]
        name = "demo"

        [tool.fastwsgi]
        threads = 2
        backlog = 100
        keep_alive = 1
        workers = 2
        """)
    write(tmp_path / "conf.py", """\
        backlog = 200
        keep_alive = 2
        workers = 3
        """)
    env = {"FASTWSGI_KEEP_ALIVE": "3", "FASTWSGI_WORKERS": "4"}
    c, spec = load(["-c", "conf.py", "--workers", "5", "app:app"], env=env, cwd=tmp_path)
    assert spec == "app:app"
    assert (c.threads, c.backlog, c.keep_alive, c.workers) == (2, 200, 3.0, 5)
    assert c.max_requests == 0  # untouched: default
    assert c.source_of("threads") == f"{tmp_path}/pyproject.toml [tool.fastwsgi] threads"
    assert c.source_of("backlog").endswith("conf.py: backlog")
    assert c.source_of("keep_alive") == "FASTWSGI_KEEP_ALIVE"
    assert c.source_of("workers") == "--workers"
    assert c.source_of("max_requests") == "default"


def test_pyproject_dashed_keys_and_app_spec(tmp_path):
    write(tmp_path / "pyproject.toml", """\
        [tool.fastwsgi]
        wsgi_app = "myproj.wsgi:application"
        max-requests = 7
        bind = ["127.0.0.1:9001", "unix:/tmp/s.sock"]
        """)
    c, spec = load([], cwd=tmp_path)
    assert spec == "myproj.wsgi:application"
    assert c.max_requests == 7
    assert c.bind == ["127.0.0.1:9001", "unix:/tmp/s.sock"]
    # The positional APP_SPEC overrides wsgi_app.
    assert load(["other:app"], cwd=tmp_path)[1] == "other:app"


def test_pyproject_without_our_table_is_ignored(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n[tool.other]\nworkers = 'x'\n")
    c, _ = load(["a:b"], cwd=tmp_path)
    assert c.workers == 1


def test_no_pyproject_at_all(tmp_path):
    c, _ = load(["a:b"], cwd=tmp_path)
    assert c.as_dict() == Config().as_dict()


@pytest.mark.parametrize("body,message", [
    ("[tool.fastwsgi]\nworkers = 'x'\n",
     "pyproject.toml [tool.fastwsgi] workers: expected a positive integer, got 'x'"),
    ("[tool.fastwsgi]\nwokers = 2\n",
     "pyproject.toml [tool.fastwsgi] wokers: unknown setting (did you mean 'workers'?)"),
    ("[tool.fastwsgi]\non_starting = 'x'\n",
     "on_starting: can only be set in a Python config file (-c)"),
    ("[tool.fastwsgi]\nconfig = 'x.py'\n",
     "config: can only be set on the command line or in FASTWSGI_CONFIG"),
    ("[tool.fastwsgi]\nworkers = \n", "pyproject.toml: invalid TOML"),
    ("[tool]\nfastwsgi = 3\n", "[tool.fastwsgi] must be a table"),
    ("[tool.fastwsgi]\nkeep_alive = -1\n", "keep_alive: expected a non-negative number"),
])
def test_pyproject_errors_name_the_source(tmp_path, body, message):
    write(tmp_path / "pyproject.toml", body)
    with pytest.raises(ConfigError) as info:
        load(["a:b"], cwd=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_value_in_a_lower_layer_is_an_error_even_if_overridden(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.fastwsgi]\nworkers = 'x'\n")
    with pytest.raises(ConfigError, match="pyproject.toml"):
        load(["--workers", "2", "a:b"], cwd=tmp_path)


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="tomllib is in the stdlib")
def test_pyproject_without_tomli_is_skipped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomli", None)
    write(tmp_path / "pyproject.toml", "[tool.fastwsgi]\nworkers = 3\n")
    c, _ = load(["a:b"], cwd=tmp_path)
    assert c.workers == 1
    assert any("tomli" in w for w in c.warnings)


# ------------------------------------------------------------------ -c config file


def test_config_file_settings_and_hooks(tmp_path):
    write(tmp_path / "conf.py", """\
        import multiprocessing
        _private = 1
        helper = "not a setting"
        bind = "127.0.0.1:9100"
        workers = 2
        access_log = "-"
        def on_starting(config):
            pass
        def post_fork(config, worker_pid):
            pass
        def some_function():
            pass
        """)
    c, _ = load(["--config", str(tmp_path / "conf.py"), "a:b"])
    assert c.bind == ["127.0.0.1:9100"] and c.workers == 2 and c.access_log == "-"
    assert callable(c.on_starting) and callable(c.post_fork)
    assert c.worker_exit is None
    assert c.config == str(tmp_path / "conf.py")
    assert c.warnings == []


def test_config_file_typo_gives_a_warning_not_an_error(tmp_path):
    write(tmp_path / "conf.py", "wokers = 4\n")
    c, _ = load(["-c", "conf.py", "a:b"], cwd=tmp_path)
    assert c.workers == 1
    assert len(c.warnings) == 1 and "did you mean 'workers'" in c.warnings[0]


def test_gunicorn_config_file_carries_over(tmp_path):
    write(tmp_path / "gunicorn.conf.py", """\
        bind = ["0.0.0.0:8000"]
        workers = 4
        accesslog = "-"
        errorlog = "/tmp/err.log"
        loglevel = "warning"
        keepalive = 2
        worker_class = "sync"
        preload_app = True
        worker_connections = 500
        daemon = False
        def when_ready(server):
            pass
        """)
    c, _ = load(["-c", "gunicorn.conf.py", "a:b"], cwd=tmp_path)
    assert (c.access_log, c.error_log, c.log_level, c.keep_alive) == (
        "-", "/tmp/err.log", "warning", 2.0)
    assert (c.preload, c.max_connections, c.worker_class) == (True, 500, "sync")
    assert callable(c.when_ready)
    assert c.source_of("access_log").endswith("gunicorn.conf.py: accesslog")
    assert c.source_of("preload").endswith("gunicorn.conf.py: preload_app")
    assert c.warnings == [] and c.notes == []


def test_pyproject_accepts_aliases_and_odd_tool_tables(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.fastwsgi]\naccesslog = '-'\n")
    assert load(["a:b"], cwd=tmp_path)[0].access_log == "-"
    write(tmp_path / "pyproject.toml", "tool = 3\nname = 'fastwsgi'\n")
    assert load(["a:b"], cwd=tmp_path)[0].workers == 1


def test_config_file_from_environment(tmp_path):
    write(tmp_path / "conf.py", "threads = 6\n")
    c, _ = load(["a:b"], env={"FASTWSGI_CONFIG": "conf.py"}, cwd=tmp_path)
    assert c.threads == 6


@pytest.mark.parametrize("body,message", [
    ("workers = 'x'\n", "conf.py: workers: expected a positive integer, got 'x'"),
    ("def on_exit():\n    pass\n", "conf.py: on_exit: expected a callable taking (server)"),
    ("post_fork = 3\n", "conf.py: post_fork: expected a callable taking (server, worker)"),
    ("workers = (\n", "conf.py:1: SyntaxError:"),
    ("x = 1\nraise RuntimeError('boom')\n", "conf.py:2: RuntimeError: boom"),
    ("import no_such_module_xyz\n", "conf.py:1: ModuleNotFoundError: No module named"),
    ("config = 'other.py'\n", "conf.py: config: can only be set on the command line"),
])
def test_config_file_errors_name_file_and_line(tmp_path, body, message):
    write(tmp_path / "conf.py", body)
    with pytest.raises(ConfigError) as info:
        load(["-c", "conf.py", "a:b"], cwd=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="--config: no such file: .*nope.py"):
        load(["-c", "nope.py", "a:b"], cwd=tmp_path)
    with pytest.raises(ConfigError, match="FASTWSGI_CONFIG: no such file"):
        load(["a:b"], env={"FASTWSGI_CONFIG": "nope.py"}, cwd=tmp_path)


# ------------------------------------------------------------------- environment


def test_env_values_are_parsed(tmp_path):
    env = {
        "FASTWSGI_BIND": "127.0.0.1:1, [::1]:2,unix:/tmp/x.sock",
        "FASTWSGI_REUSE_PORT": "yes",
        "FASTWSGI_LOG_LEVEL": "ERROR",
        "FASTWSGI_SERVER_HEADER": "",
        "FASTWSGI_UNIX_SOCKET_MODE": "600",
        "FASTWSGI_WSGI_APP": "envapp:app",
        "UNRELATED": "x",
    }
    c, spec = load([], env=env, cwd=tmp_path)
    assert c.bind == ["127.0.0.1:1", "[::1]:2", "unix:/tmp/x.sock"]
    assert c.reuse_port is True and c.log_level == "error"
    assert c.server_header == "" and c.unix_socket_mode == 0o600
    assert spec == "envapp:app"


@pytest.mark.parametrize("var,value,message", [
    ("FASTWSGI_WORKERS", "x", "FASTWSGI_WORKERS: expected a positive integer, got 'x'"),
    ("FASTWSGI_KEEP_ALIVE", "long", "FASTWSGI_KEEP_ALIVE: expected a non-negative number"),
    ("FASTWSGI_PRELOAD", "sure", "FASTWSGI_PRELOAD: expected a boolean"),
    ("FASTWSGI_BIND", "nope:port", "FASTWSGI_BIND: port must be 0-65535"),
    ("FASTWSGI_BIND", ",", "FASTWSGI_BIND: expected one or more"),
])
def test_env_errors_name_the_variable(tmp_path, var, value, message):
    with pytest.raises(ConfigError) as info:
        load(["a:b"], env={var: value}, cwd=tmp_path)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------- command line


def test_cli_values(tmp_path):
    c, spec = load([
        "-b", "127.0.0.1:1", "--bind", "unix:/tmp/y.sock", "-w", "3", "-t", "0",
        "--threads", "4", "--reuse-port", "--preload", "--log-level", "debug",
        "--access-log", "-", "--log-file", "err.log", "--pid", "x.pid",
        "--unix-socket-mode", "0o600", "--root-path", "/api/", "--server-header", "",
        "--limit-request-body", "10M", "mod:app",
    ], cwd=tmp_path)
    assert spec == "mod:app"
    assert c.bind == ["127.0.0.1:1", "unix:/tmp/y.sock"]
    assert (c.workers, c.timeout, c.threads) == (3, 0.0, 4)
    assert c.reuse_port and c.preload and c.log_level == "debug"
    assert c.access_log == "-" and c.error_log == "err.log" and c.pidfile == "x.pid"
    assert c.unix_socket_mode == 0o600 and c.root_path == "/api"
    assert c.server_header == "" and c.limit_request_body == 10 << 20
    assert c.source_of("access_log") == "--access-logfile"


def test_cli_bind_replaces_lower_layers_instead_of_appending(tmp_path):
    env = {"FASTWSGI_BIND": "127.0.0.1:1,127.0.0.1:2"}
    c, _ = load(["-b", "127.0.0.1:3", "a:b"], env=env, cwd=tmp_path)
    assert c.bind == ["127.0.0.1:3"]


def test_cli_negative_bool_overrides_env(tmp_path):
    env = {"FASTWSGI_REUSE_PORT": "1", "FASTWSGI_PRELOAD": "1"}
    c, _ = load(["--no-reuse-port", "a:b"], env=env, cwd=tmp_path)
    assert c.reuse_port is False and c.preload is True


@pytest.mark.parametrize("argv,message", [
    (["--workers", "x"], "--workers: expected a positive integer, got 'x'"),
    (["-w", "0"], "--workers: expected a positive integer, got '0'"),
    (["--keep-alive", "-3"], "--keep-alive: expected a non-negative number of seconds"),
    (["--log-level", "chatty"], "--log-level: expected one of debug"),
    (["--bind", "localhost:99999"], "--bind: port must be 0-65535"),
    (["--unix-socket-mode", "888"], "--unix-socket-mode: expected an octal file mode"),
    (["--access-logformat", "%(nope)s"], "--access-logformat: unknown access log atom"),
    (["--chdir", "/no/such/dir"], "--chdir: no such directory"),
    (["--server-header", "x\ny"], "--server-header: must not contain control"),
    (["--limit-request-line", "big"], "--limit-request-line: expected a positive integer"),
])
def test_cli_errors_name_the_flag(tmp_path, argv, message):
    with pytest.raises(ConfigError) as info:
        load(argv + ["a:b"], cwd=tmp_path)
    assert str(info.value).startswith(message)


def test_missing_app_spec_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load([], cwd=tmp_path)
    assert info.value.code == 2
    assert "APP_SPEC" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load(["--wrokers", "2", "a:b"], cwd=tmp_path)
    assert info.value.code == 2
    assert "unrecognized option: --wrokers (fastwsgi --help" in capsys.readouterr().err


def test_every_cli_setting_can_be_set_from_every_source(tmp_path):
    """Round trip: the default, given as text, is accepted by CLI, env and TOML."""
    for s in SETTINGS:
        if s.default in (None, "", False, []) or s.action != "store":
            continue
        text = str(s.default) if s.validator is not cfg.file_mode else f"{s.default:o}"
        argv = [s.cli_flag, text, "a:b"]
        assert getattr(load(argv, cwd=tmp_path)[0], s.name) == s.default, s.name
        env = {s.env_var: text}
        assert getattr(load(["a:b"], env=env, cwd=tmp_path)[0], s.name) == s.default, s.name


def test_version_comes_from_the_package():
    from fastwsgi.cli import version
    assert re.match(r"^\d+\.\d+\.\d+", version())


def test_settings_doc_is_generated_from_the_declarations():
    """docs/settings.md is the settings table itself: regenerate it with
    `python -m fastwsgi.config > docs/settings.md` when a setting changes."""
    from fastwsgi.config import settings_document
    doc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "docs", "settings.md")
    with open(doc, encoding="utf-8") as f:
        assert f.read() == settings_document()
