"""What a plain ``fastwsgi --bind HOST:PORT module:app`` process has imported.

Every module costs resident memory for the life of the server (the peak RSS of
a single-process server is mostly the interpreter and its modules), so the
plain serving path imports only what it uses; settings that need more (CIDR
networks in --forwarded-allow-ips, FACTORY(ARGS) specs, --threads, "did you
mean" hints, --access-logfile) import it when they are used.

The served app reports ``sorted(sys.modules)`` of the server process itself.
Modules that the interpreter imports before any fastwsgi code runs (site, .pth
files), or that the stdlib's logging imports, are not fastwsgi's doing: those of
a bare interpreter that imported logging are left out.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import APPS, HERE
from process_helpers import get

APP = textwrap.dedent("""\
    import sys

    def app(environ, start_response):
        body = "\\n".join(sorted(sys.modules)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
""")

# Modules the plain serving path must not import; what importing each adds to the
# peak RSS of a python that has imported logging and socket (3.11, x86-64), and
# what needs it.
NOT_IMPORTED = [
    "difflib",                          # 150 KB: "did you mean" hints
    "inspect", "dis",                   # 900 KB (with ast): hook signatures
    "typing",                           # 390 KB: (was) NamedTuple
    "ipaddress",                        # 200 KB: networks in --forwarded-allow-ips
    "ast",                              # 390 KB: MODULE:FACTORY(ARGS) specs
    "argparse", "gettext", "locale",    # 1.1 MB (a parser, with shutil): dropped
    "shutil", "fnmatch", "bz2", "lzma",  # 580 KB: argparse's terminal width
    "json",                             # 90 KB: fastwsgi.demo only
    "queue",                            # 100 KB: --threads
    "base64",                           # 220 KB: the access log's %(u)s atom
    "encodings.idna", "stringprep", "unicodedata",  # 280 KB: getaddrinfo(str host)
    "fastwsgi._gunicorn", "shlex",      # gunicorn's names, FASTWSGI_CMD_ARGS
]


def startup_modules():
    """sys.modules of a bare interpreter in the environment the servers get, once it
    has imported logging (which every server needs): from 3.14 on, logging's own
    traceback import brings _colorize -> dataclasses -> inspect, dis and ast."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (APPS, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c",
                          "import sys, logging; print(*sorted(sys.modules))"],
                         env=env, capture_output=True, text=True, check=True,
                         cwd=HERE).stdout
    return set(out.split())


def unwanted(modules):
    baseline = startup_modules()
    return sorted(m for m in NOT_IMPORTED if m in modules and m not in baseline)


@pytest.fixture
def modlist(tmp_path):
    (tmp_path / "modlist_app.py").write_text(APP)
    return tmp_path


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "localhost:0"])
def test_plain_serving_path_imports_little(serve, modlist, bind):
    server = serve("--bind", bind, "modlist_app:app", cwd=str(modlist), bind=False)
    status, body = get(server)
    assert status == 200
    modules = set(body.split("\n"))
    assert "fastwsgi._loop" in modules  # the report is the server's own
    assert unwanted(modules) == []


def test_modules_come_back_when_used(serve, modlist):
    """The lazily imported modules still work where a setting needs them."""
    server = serve("--bind", "127.0.0.1:0", "--forwarded-allow-ips", "10.0.0.0/8,127.0.0.1",
                   "--threads", "2", "modlist_app:app", cwd=str(modlist), bind=False)
    status, body = get(server)
    assert status == 200
    modules = set(body.split("\n"))
    assert {"ipaddress", "queue"} <= modules


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "LocalHost", "example.com.",
                                  "x" * 63, "x" * 64, "a..b", ".a", "a.b..", "",
                                  "b\u00fccher.example", "\u00e9"])
def test_getaddrinfo_gets_what_the_idna_codec_makes_of_a_host(host):
    """fastwsgi.server hands getaddrinfo() the bytes the idna codec would make of
    an ASCII host (so the codec's module is not imported), else the str itself."""
    from fastwsgi.listeners import _idna_free

    try:
        encoded = host.encode("idna")
    except UnicodeError:
        encoded = None
    arg = _idna_free(host)
    if isinstance(arg, bytes):
        assert arg == encoded
    else:
        assert arg == host and (encoded is None or not host.isascii())


# ------------------------------------------------------------ the import graph

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fastwsgi")
_IMPORT = re.compile(r"^\s*(?:from\s+fastwsgi(\.\w+)?\s+(?:c?import)\s+\(?([\w\s,]+)"
                     r"|c?import\s+fastwsgi\.(\w+))", re.M)


def fastwsgi_modules():
    names = set()
    for entry in os.listdir(PACKAGE):
        stem, ext = os.path.splitext(entry)
        if ext in (".py", ".pyx") and stem != "__init__":
            names.add(stem)
    return sorted(names)


def import_graph():
    """module -> the fastwsgi modules it imports, at the top or inside a function
    (the package itself left out: every submodule import passes through it)."""
    modules = set(fastwsgi_modules())
    graph = {}
    for name in modules:
        edges = set()
        for ext in (".py", ".pyx", ".pxd"):
            path = os.path.join(PACKAGE, name + ext)
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                source = f.read()
            for sub, names, plain in _IMPORT.findall(source):
                if plain:
                    edges.add(plain)
                elif sub:
                    edges.add(sub[1:])
                else:   # from fastwsgi import a, b: the submodules among them
                    edges.update(n.strip() for n in names.split(",")
                                 if n.strip() in modules)
        graph[name] = edges & modules - {name}
    return graph


def test_no_import_cycle_between_fastwsgi_modules():
    """Lazy imports count: config.py <-> logs.py (over ConfigError) was such a cycle.
    errors.py, the exception tree, imports nothing of ours."""
    graph = import_graph()
    assert graph["errors"] == set()
    assert "cli" not in graph["config"] and "config" not in graph["logs"]
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(path + [node])
        state[node] = "open"
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


@pytest.mark.parametrize("module", [m for m in fastwsgi_modules()
                                    if m not in ("__main__", "demo")])
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    # cwd: not the checkout's root, whose unbuilt fastwsgi/ would shadow the installed one
    result = subprocess.run([sys.executable, "-c", f"import fastwsgi.{module}"],
                            capture_output=True, text=True, timeout=60, cwd=HERE)
    assert result.returncode == 0, result.stderr


def test_every_exception_class_lives_in_errors():
    """Other modules may re-export (config.ConfigError, _loader.AppLoadError) but
    define none."""
    import fastwsgi.errors as errors_module

    for name in fastwsgi_modules():
        if name == "errors":
            continue
        for ext in (".py", ".pyx"):
            path = os.path.join(PACKAGE, name + ext)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    defined = re.findall(r"^\s*class\s+(\w+)\s*\(([^)]*)\)", f.read(), re.M)
                bad = [cls for cls, bases in defined
                       if re.search(r"Error\b|Exception\b|\bFatal\b", bases + " " + cls)]
                assert bad == [], f"{name}{ext} defines {bad}"
    from fastwsgi import config, _loader
    assert config.ConfigError is errors_module.ConfigError
    assert _loader.AppLoadError is errors_module.AppLoadError
