"""fastwsgi._loader: APP_SPEC forms and the one-line error for each way loading fails."""

import itertools
import os
import re
import subprocess
import sys
import textwrap

import pytest

from fastwsgi._loader import AppLoadError, load_app, parse_app_spec

_counter = itertools.count()


@pytest.fixture
def appdir(tmp_path, monkeypatch):
    """A temporary directory, made current, where tests write app modules.

    ``make(body)`` writes a module with a fresh name (so sys.modules caching never
    hides a test's module) and returns that name.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def make(body, name=None, directory=tmp_path):
        name = name or f"loader_app_{os.getpid()}_{next(_counter)}"
        (directory / f"{name}.py").write_text(textwrap.dedent(body))
        return name

    make.path = tmp_path
    yield make
    for mod in set(sys.modules) - before:
        del sys.modules[mod]


WSGI = """\
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"application"]

def app(environ, start_response):
    start_response("200 OK", [])
    return [b"app"]

class Holder:
    def wsgi(self, environ, start_response):
        start_response("200 OK", [])
        return [b"attr"]

holder = Holder()
holder.inner = Holder()

def create_app(mode="default", debug=False, **extra):
    def made(environ, start_response):
        return [repr((mode, debug, extra)).encode()]
    return made

not_callable = 42

def broken_factory():
    raise ValueError("database is down")

def returns_none():
    return None
"""


def call(app):
    return b"".join(app({}, lambda status, headers: None))


# ---------------------------------------------------------------------- spec forms


def test_module_colon_name(appdir):
    mod = appdir(WSGI)
    assert call(load_app(f"{mod}:app")) == b"app"


def test_module_alone_means_application(appdir):
    mod = appdir(WSGI)
    assert call(load_app(mod)) == b"application"


def test_attribute_path(appdir):
    mod = appdir(WSGI)
    assert call(load_app(f"{mod}:holder.wsgi")) == b"attr"
    assert call(load_app(f"{mod}:holder.inner.wsgi")) == b"attr"


def test_factory_without_arguments(appdir):
    mod = appdir(WSGI)
    assert call(load_app(f"{mod}:create_app()")) == b"('default', False, {})"


def test_factory_with_literal_arguments(appdir):
    mod = appdir(WSGI)
    app = load_app(f"{mod}:create_app('prod', debug=True, ports=[1, 2], extra={{'a': None}})")
    assert call(app) == b"('prod', True, {'ports': [1, 2], 'extra': {'a': None}})"


def test_spaces_around_parts_are_tolerated(appdir):
    mod = appdir(WSGI)
    assert call(load_app(f" {mod} : create_app( 'x' ) ")) == b"('x', False, {})"


def test_dotted_module_in_a_package(appdir):
    pkg = appdir.path / "mypkg_loader"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    appdir(WSGI, name="wsgi", directory=pkg)
    assert call(load_app("mypkg_loader.wsgi:app")) == b"app"


def test_current_directory_goes_first_on_sys_path(appdir):
    mod = appdir(WSGI)
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    load_app(f"{mod}:app")
    assert sys.path[0] == os.getcwd()


def test_chdir_argument(appdir, tmp_path_factory, monkeypatch):
    other = tmp_path_factory.mktemp("elsewhere")
    mod = appdir(WSGI, directory=other)
    assert call(load_app(f"{mod}:app", chdir=str(other))) == b"app"
    assert os.getcwd() == str(other)
    assert sys.path[0] == str(other)


def test_factory_arguments_are_never_evaluated(appdir):
    mod = appdir(WSGI)
    marker = appdir.path / "pwned"
    spec = f"{mod}:create_app(__import__('os').mkdir({str(marker)!r}))"
    with pytest.raises(AppLoadError, match="factory arguments must be literals"):
        load_app(spec)
    assert not marker.exists()


# ------------------------------------------------------------------------ bad specs


@pytest.mark.parametrize("spec,why", [
    ("", "it is empty"),
    ("   ", "it is empty"),
    (":app", "'' is not a module name"),
    ("my-app:app", "'my-app' is not a module name"),
    ("mod.:app", "is not a module name"),
    ("mod:", "nothing after ':'"),
    ("mod:app(", "is not valid Python"),
    ("mod:1 + 2", "must be a name or a call"),
    ("mod:apps[0]", "must be a name or a call"),
    ("mod:f()()", "must be a name or a call"),
    ("mod:f(*args)", "factory arguments must be literals"),
    ("mod:f(**kw)", "factory arguments must be literals"),
    ("mod:f(x)", "factory arguments must be literals"),
])
def test_invalid_specs(spec, why):
    with pytest.raises(AppLoadError) as info:
        parse_app_spec(spec)
    message = str(info.value)
    assert why in message and "expected MODULE" in message and "\n" not in message


@pytest.mark.parametrize("expr,expected", [
    # a plain dotted name is split without ast: the same result as ast's reading
    ("app", ["app"]),
    ("a.b.c", ["a", "b", "c"]),
    ("match", ["match"]),                 # soft keywords are names
    ("__debug__", ["__debug__"]),
    ("a . b", ["a", "b"]),
    ("\ufb01le", ["file"]),               # ast normalizes identifiers (NFKC)
    ("class", "is not valid Python"),     # keywords are not
    ("a.None", "is not valid Python"),
    ("True", "must be a name or a call"),
    ("a..b", "is not valid Python"),
    ("a.", "is not valid Python"),
    ("1a", "is not valid Python"),
])
def test_names_after_the_colon_as_python_reads_them(expr, expected):
    if isinstance(expected, list):
        assert parse_app_spec(f"mod:{expr}") == ("mod", expected, None)
    else:
        with pytest.raises(AppLoadError, match=re.escape(expected)):
            parse_app_spec(f"mod:{expr}")


def test_parse_app_spec_shapes():
    assert parse_app_spec("a.b") == ("a.b", ["application"], None)
    assert parse_app_spec("a:b.c") == ("a", ["b", "c"], None)
    assert parse_app_spec("a:f(1, k='v')") == ("a", ["f"], ([1], {"k": "v"}))


# ----------------------------------------------------------------------- load errors


def test_module_not_found(appdir):
    with pytest.raises(AppLoadError) as info:
        load_app("no_such_module_anywhere:app")
    assert str(info.value).startswith("module 'no_such_module_anywhere' not found")


def test_parent_package_not_found(appdir):
    with pytest.raises(AppLoadError, match="module 'nopkg_zz.wsgi' not found"):
        load_app("nopkg_zz.wsgi:app")


def test_import_inside_the_module_failed_is_not_reported_as_missing_module(appdir):
    mod = appdir("""\
        import os
        import missing_dependency_xyz
        """)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:app")
    message = str(info.value)
    assert message == (f"cannot import '{mod}': ModuleNotFoundError: No module named "
                       f"'missing_dependency_xyz' ({mod}.py, line 2)")


def test_exception_raised_while_importing(appdir):
    mod = appdir("""\
        SETTINGS = {}
        DEBUG = SETTINGS["DEBUG"]
        """)
    with pytest.raises(AppLoadError) as info:
        load_app(mod)
    assert str(info.value) == f"cannot import '{mod}': KeyError: 'DEBUG' ({mod}.py, line 2)"


def test_syntax_error_in_the_module(appdir):
    mod = appdir("def app(:\n    pass\n")
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:app")
    message = str(info.value)
    assert message.startswith(f"cannot import '{mod}': SyntaxError:")
    assert message.endswith(f"({mod}.py, line 1)")
    assert "\n" not in message


def test_sys_exit_while_importing(appdir):
    mod = appdir("import sys\nsys.exit(3)\n")
    with pytest.raises(AppLoadError, match=f"cannot import '{mod}': SystemExit: 3"):
        load_app(mod)


def test_attribute_missing(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:nope")
    assert str(info.value) == f"module '{mod}' has no attribute 'nope'"


def test_nested_attribute_missing(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:holder.nope")
    assert str(info.value) == f"object '{mod}:holder' has no attribute 'nope'"


def test_default_application_missing_suggests_app(appdir):
    mod = appdir("def app(environ, start_response):\n    return []\n")
    with pytest.raises(AppLoadError) as info:
        load_app(mod)
    assert str(info.value) == (f"module '{mod}' has no attribute 'application' "
                               f"(did you mean '{mod}:app'?)")


def test_not_callable(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:not_callable")
    assert str(info.value).startswith(f"'{mod}:not_callable' is not callable (it is int)")


def test_factory_not_callable(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError, match=r"factory '.*:not_callable' is not callable"):
        load_app(f"{mod}:not_callable()")


def test_factory_raised(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:broken_factory()")
    line = WSGI.splitlines().index('    raise ValueError("database is down")') + 1
    assert str(info.value) == (f"factory 'broken_factory()' raised ValueError: "
                               f"database is down ({mod}.py, line {line})")


def test_factory_with_wrong_arguments(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError, match=r"factory 'returns_none\(1\)' raised TypeError"):
        load_app(f"{mod}:returns_none(1)")


def test_factory_returned_non_callable(appdir):
    mod = appdir(WSGI)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{mod}:returns_none()")
    assert str(info.value) == ("factory 'returns_none()' returned NoneType, "
                               "which is not a WSGI callable")


def test_chdir_to_missing_directory(appdir):
    with pytest.raises(AppLoadError, match="cannot change to directory '/no/such/dir'"):
        load_app("x:app", chdir="/no/such/dir")


# ------------------------------------------------------------------ in a real process


def _run(code, cwd, extra_pythonpath=()):
    env = dict(os.environ)
    # fastwsgi from wherever this interpreter finds it (installed in CI; the
    # source tree alone has no compiled modules)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (*extra_pythonpath, os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_pythonpath_is_honoured(tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "pp_app.py").write_text("def app(e, s):\n    return [b'pp']\n")
    workdir = tmp_path / "work"
    workdir.mkdir()
    code = ("from fastwsgi._loader import load_app\n"
            "print(b''.join(load_app('pp_app:app')({}, None)).decode())")
    result = _run(code, cwd=workdir, extra_pythonpath=[str(libdir)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pp"


def test_cwd_module_found_when_started_from_elsewhere(tmp_path):
    # As from an installed console script: sys.path[0] is not the current directory.
    (tmp_path / "cwd_app.py").write_text("def app(e, s):\n    return [b'cwd']\n")
    code = ("import os, sys\n"
            "sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())]\n"
            "from fastwsgi._loader import load_app\n"
            "print(b''.join(load_app('cwd_app:app')({}, None)).decode())")
    result = _run(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cwd"
