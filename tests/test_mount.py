"""Mounted apps: fastwsgi.mount({...}) and `fastwsgi /=site:app /api=api:app`.

The dispatcher is checked against Werkzeug's DispatcherMiddleware (the reference
the issue names) on a table of paths, then through real servers started with
positional PREFIX=APP_SPEC arguments.
"""

import http.client
import json
import os
import subprocess
import sys

import pytest

import fastwsgi
from fastwsgi.mount import Mount

from conftest import APPS


def tagger(name):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{name}|{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()]
    return app


def call(app, path, script_name=""):
    out = {}
    body = b"".join(app({"PATH_INFO": path, "SCRIPT_NAME": script_name},
                        lambda status, headers: out.setdefault("status", status)))
    return out["status"][:3], body.decode()


PATHS = ["/", "", "/x", "/api", "/api/", "/api/v1/users", "/apiary", "/api/v2",
         "/api/v2/deep/er", "/admin", "/admin/x", "/a%20b"]


def test_matches_werkzeug_dispatcher_middleware():
    werkzeug = pytest.importorskip("werkzeug.middleware.dispatcher")
    root = tagger("root")
    mounts = {"/api": tagger("api"), "/api/v2": tagger("v2"), "/admin": tagger("admin")}
    ours = fastwsgi.mount(dict(mounts, **{"/": root}))
    reference = werkzeug.DispatcherMiddleware(root, mounts)
    for path in PATHS:
        for script in ("", "/base"):
            assert call(ours, path, script) == call(reference, path, script), (path, script)


def test_without_a_root_app_unmatched_paths_are_404():
    app = Mount({"/api": tagger("api")})
    assert call(app, "/api/x") == ("200", "api|/api|/x")
    assert call(app, "/other")[0] == "404"


def test_specs_trailing_slashes_and_errors():
    sys.path.insert(0, APPS)
    try:
        app = fastwsgi.mount({"/": "deploy:app", "/tools/": tagger("tools")})
    finally:
        sys.path.remove(APPS)
    assert call(app, "/tools/hammer") == ("200", "tools|/tools|/hammer")
    with pytest.raises(ValueError, match="two apps"):
        Mount({"/a": tagger("a"), "/a/": tagger("b")})
    with pytest.raises(ValueError, match="start with '/'"):
        Mount({"a": tagger("a")})


# ------------------------------------------------------------------- through a server


def get(server, path):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if resp.status == 200 else body)
    finally:
        conn.close()


def test_cli_positional_mounts(serve):
    server = serve("/=deploy:app", "/api=deploy:api", "/admin/=deploy:admin")
    expect = {
        "/": ("site", "", "/"),
        "/about": ("site", "", "/about"),
        "/api": ("api", "/api", ""),
        "/api/users/7": ("api", "/api", "/users/7"),
        "/apiary": ("site", "", "/apiary"),
        "/admin/x?y=1": ("admin", "/admin", "/x"),
    }
    for path, (name, script, info) in expect.items():
        status, data = get(server, path)
        assert status == 200
        assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == (name, script, info), path


def test_app_spec_is_the_root_beside_mounts_and_root_path_stays_in_front(serve):
    server = serve("deploy:app", "--mount", "/api=deploy:api", "--root-path", "/r")
    status, data = get(server, "/r/api/x")
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == ("api", "/r/api", "/x")
    status, data = get(server, "/r/home")
    assert (data["app"], data["SCRIPT_NAME"], data["PATH_INFO"]) == ("site", "/r", "/home")


def test_mounts_without_root_and_with_static(serve, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"static A\n")
    server = serve("/api=deploy:api", "--static", f"/api/files={tmp_path}")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/api/files/a.txt")
    assert conn.getresponse().read() == b"static A\n"
    conn.close()
    assert get(server, "/api/q")[1]["app"] == "api"
    assert get(server, "/nothing-here")[0] == 404


@pytest.mark.parametrize("extra", [["-w", "2"], ["-w", "1", "--preload"]],
                         ids=["workers", "preload"])
def test_mounts_and_static_in_worker_processes(serve, tmp_path, extra):
    """Workers (and a preloading master) build the same app as a single process."""
    (tmp_path / "a.txt").write_bytes(b"static A\n")
    server = serve("/api=deploy:api", "/=deploy:app", "--static", f"/files={tmp_path}",
                   *extra)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/files/a.txt")
    assert conn.getresponse().read() == b"static A\n"
    conn.close()
    assert get(server, "/api/q")[1]["app"] == "api"
    assert get(server, "/home")[1]["app"] == "site"


@pytest.mark.parametrize("args, code, message", [
    (["/a=deploy:app", "/a/=deploy:api"], 1, "prefix '/a' given twice"),
    (["deploy:app", "/=deploy:api"], 1, "name the app at '/'"),
    (["deploy:app", "deploy:api"], 2, "more than one APP_SPEC"),
    (["/api=deploy:nope"], 1, "nope"),
    (["/api="], 1, "PREFIX=APP_SPEC"),
])
def test_cli_errors(args, code, message):
    # (not this process's sys.path: a test may have put the checkout's root on it,
    # whose unbuilt fastwsgi/ would shadow the installed package)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (APPS, os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-m", "fastwsgi", "--bind", "127.0.0.1:0"] + args,
                            capture_output=True, text=True, env=env, timeout=20,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    assert result.returncode == code, result.stderr
    assert message in result.stderr


# ------------------------------------------------------- normalized routing (issue 12)


@pytest.mark.parametrize("path, expected", [
    ("/admin/../api/x", "api|/api|/x"),
    ("/admin/./../api", "api|/api|"),
    ("/admin/..", "root||/"),
    ("/../admin/x", "admin|/admin|/x"),         # a ".." at the root is dropped
    ("//api//x", "api|/api|/x"),                # merge_slashes
    ("/api/v2/../../admin/", "admin|/admin|/"),
    ("/api/.", "api|/api|/"),
    ("/api/x/..", "api|/api|/"),
    ("/.well-known/acme", "root||/.well-known/acme"),
    ("/api/..x", "api|/api|/..x"),              # not a dot segment
])
def test_routing_is_on_the_normalized_path(path, expected):
    app = fastwsgi.mount({"/": tagger("root"), "/api": tagger("api"),
                          "/admin": tagger("admin")})
    assert call(app, path) == ("200", expected)


@pytest.mark.parametrize("path, expected", [
    ("/a/b/c/./../../g", "/a/g"),               # RFC 3986 §5.2.4's own example
    ("/mid/content=5/../6", "/mid/6"),
    ("/", "/"), ("", ""), ("*", "*"), ("/a/b", "/a/b"),
    ("/..", "/"), ("/a/..", "/"), ("/a/../", "/"), ("///", "/"),
])
def test_normalize_path(path, expected):
    from fastwsgi.mount import normalize_path
    assert normalize_path(path) == expected


NGINX_DENY_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location /admin {{ deny all; }}
        location / {{ proxy_pass http://{upstream}; }}
    }}
}}
"""


def test_nginx_location_deny_cannot_be_bypassed_with_dot_segments(serve, tmp_path):
    import os
    import socket
    from test_nginx import NGINX_PREAMBLE, Nginx, free_port, nginx_binary
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: apt-get install nginx-light (.ci/run does)")
    server = serve("/admin=deploy:admin", "/api=deploy:api", "deploy:app")
    port = free_port()
    prefix = tmp_path / "nginx"
    nginx = Nginx(str(prefix), NGINX_PREAMBLE.format(
        user="user root;" if os.geteuid() == 0 else "", prefix=prefix)
        + NGINX_DENY_SERVER.format(port=port, upstream=f"{server.host}:{server.port}"))
    try:
        nginx.wait_listening([port])
        for target, app in [("/admin/../api/x", "api"), ("/admin/%2e%2e/api/x", "api"),
                            ("/admin/..%2fapi/x", "api"), ("//admin/../api/x", "api"),
                            ("/x/../api/y", "api")]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                          .encode())
                raw = b""
                while chunk := s.recv(65536):
                    raw += chunk
            # nginx matched its rules on the normalized path and passed the raw
            # target on: fastwsgi must route the same normalized path
            assert raw.startswith(b"HTTP/1.1 200"), (target, raw[:200])
            info = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            assert info["app"] == app and info["SCRIPT_NAME"] == "/api", (target, info)
        for target in ("/api/../admin/x", "/api/%2e%2e/admin/x", "//admin/x"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                          .encode())
                assert s.recv(100).startswith(b"HTTP/1.1 403"), target
    finally:
        nginx.stop()
