"""fastwsgi behind a real Debian nginx, on loopback.

One nginx (temp prefix, temp config) fronts several fastwsgi processes, one
``server`` block per deployment shape of docs/deployment.md:

    proxy_pass over TCP        -> a pool of three fastwsgi instances (balancing, failover)
    proxy_pass over unix socket -> one fastwsgi on unix:http.sock
    uwsgi_pass over unix socket -> one fastwsgi --protocol uwsgi on unix:uwsgi.sock
    /static/ served by nginx itself (alias), everything else proxied

The location blocks are the templates below; ``test_the_docs_show_these_configs``
checks docs/deployment.md shows exactly them.  Clients connect from 127.0.0.3, so
the trusted proxy (nginx, 127.0.0.1 / unix) and the client are different hosts.

nginx missing is a failure, not a skip: ``apt-get install nginx-light`` (.ci/run
installs it).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import http.client

import pytest

from conftest import ServerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(os.path.dirname(HERE), "docs", "deployment.md")
CLIENT_ADDR = "127.0.0.3"

# ---------------------------------------------------------------- nginx configs
# Shared with docs/deployment.md (rendered there with the DOC_VALUES below).

UPSTREAM_HTTP = """\
upstream fastwsgi {{
    server {a} max_fails=1 fail_timeout=10s;
    server {b} max_fails=1 fail_timeout=10s;
    server {c} max_fails=1 fail_timeout=10s;
    keepalive 16;
}}
"""

UPSTREAM_UNIX = """\
upstream fastwsgi_unix {{
    server unix:{http_sock};
    keepalive 16;
}}
"""

UPSTREAM_UWSGI = """\
upstream fastwsgi_uwsgi {{
    server unix:{uwsgi_sock};
}}
"""

LOCATION_PROXY = """\
    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 3;
    }}
"""

LOCATION_UWSGI = """\
    location / {{
        include uwsgi_params;
        uwsgi_pass {upstream};
    }}
"""

LOCATION_STATIC = """\
    location /static/ {{
        alias {static_dir}/;
        expires 1h;
    }}
"""

DOC_VALUES = {
    "a": "10.0.0.11:8000", "b": "10.0.0.12:8000", "c": "10.0.0.13:8000",
    "http_sock": "/run/fastwsgi/http.sock", "uwsgi_sock": "/run/fastwsgi/uwsgi.sock",
    "static_dir": "/srv/app/static",
}

# everything but the servers (a str.format template: {user} {prefix}); the http
# block is left open (tests/test_mount.py adds its own server to it)
NGINX_PREAMBLE = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include mime.types;
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    scgi_temp_path {prefix}/tmp/scgi;
    client_max_body_size 16m;
"""

NGINX_CONF = NGINX_PREAMBLE + """
{upstreams}
    server {{
        listen 127.0.0.1:{port_pool};
{loc_pool}{loc_static}    }}
    server {{
        listen 127.0.0.1:{port_unix};
{loc_unix}    }}
    server {{
        listen 127.0.0.1:{port_uwsgi};
{loc_uwsgi}    }}
}}
"""

# Debian's list, for hosts without /etc/nginx/uwsgi_params
UWSGI_PARAMS = """\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;
uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;
uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
"""


def nginx_binary():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_address(server):
    m = re.match(r"http://127\.0\.0\.1:(\d+)", server.addresses[0])
    return f"127.0.0.1:{m.group(1)}"


class Nginx:
    """nginx -p PREFIX -c PREFIX/nginx.conf in the foreground, as our child."""

    def __init__(self, prefix, conf_text):
        self.prefix = prefix
        os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
        for name in ("mime.types", "uwsgi_params"):
            src = os.path.join("/etc/nginx", name)
            dst = os.path.join(prefix, name)
            if os.path.exists(src):
                shutil.copy(src, dst)
            elif name == "uwsgi_params":
                with open(dst, "w") as f:
                    f.write(UWSGI_PARAMS)
            else:
                open(dst, "w").close()
        self.conf = os.path.join(prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf_text)
        binary = nginx_binary()
        base = [binary, "-p", prefix, "-e", os.path.join(prefix, "error.log"), "-c", self.conf]
        check = subprocess.run(base + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}\n{conf_text}"
        self.proc = subprocess.Popen(base + ["-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_listening(self, ports, timeout=10.0):
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start:\n{self.error_log()}")
                    time.sleep(0.02)

    def error_log(self):
        try:
            with open(os.path.join(self.prefix, "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def request(port, method="GET", path="/", body=None, headers=None, timeout=10):
    """One request from CLIENT_ADDR; (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(CLIENT_ADDR, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def request_json(port, *args, **kwargs):
    status, headers, body = request(port, *args, **kwargs)
    assert status == 200, (status, body[:500])
    return json.loads(body)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: these tests drive a real nginx in front of "
                    "fastwsgi; install it with `apt-get install nginx-light` (.ci/run does)")
    tmp = str(tmp_path_factory.mktemp("nginx"))
    static_dir = os.path.join(tmp, "static")
    os.makedirs(static_dir)
    with open(os.path.join(static_dir, "logo.txt"), "wb") as f:
        f.write(b"served by nginx\n")
    socks = {"http_sock": os.path.join(tmp, "http.sock"),
             "uwsgi_sock": os.path.join(tmp, "uwsgi.sock")}
    # --no-master: each instance is the one process that answers (its pid in the body)
    trust = ["--forwarded-allow-ips", "127.0.0.1,unix", "--no-master"]
    started = []
    try:
        pool = []
        for _ in range(3):
            pool.append(ServerProcess(["deploy:app"] + trust))
            started.append(pool[-1])
        unix = ServerProcess(["--bind", f"unix:{socks['http_sock']}", "deploy:app"] + trust,
                             bind=False)
        started.append(unix)
        uwsgi = ServerProcess(["--bind", f"unix:{socks['uwsgi_sock']}", "--protocol", "uwsgi",
                               "--limit-request-body", "8M", "deploy:app"] + trust, bind=False)
        started.append(uwsgi)

        values = dict(socks, static_dir=static_dir,
                      a=tcp_address(pool[0]), b=tcp_address(pool[1]), c=tcp_address(pool[2]))
        ports = {"port_pool": free_port(), "port_unix": free_port(), "port_uwsgi": free_port()}
        prefix = os.path.join(tmp, "prefix")
        conf = NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            upstreams="".join(t.format(**values) for t in (UPSTREAM_HTTP, UPSTREAM_UNIX,
                                                             UPSTREAM_UWSGI)),
            loc_pool=LOCATION_PROXY.format(upstream="fastwsgi"),
            loc_static=LOCATION_STATIC.format(**values),
            loc_unix=LOCATION_PROXY.format(upstream="fastwsgi_unix"),
            loc_uwsgi=LOCATION_UWSGI.format(upstream="fastwsgi_uwsgi"),
            **ports)
        nginx = Nginx(prefix, conf)
        try:
            nginx.wait_listening(ports.values())
            yield dict(ports, pool=pool, unix=unix, uwsgi=uwsgi, nginx=nginx)
        finally:
            nginx.stop()
    finally:
        for server in started:
            server.stop()


# ------------------------------------------------------------------------- tests


def test_proxy_pass_over_tcp_sets_client_address_from_x_forwarded_for(stack):
    # the client forges an X-Forwarded-For hop; nginx appends the real one
    info = request_json(stack["port_pool"], path="/tcp?q=1",
                        headers={"X-Forwarded-For": "6.6.6.6", "X-Custom": "yes"})
    assert info["REMOTE_ADDR"] == CLIENT_ADDR
    assert info["HTTP_X_FORWARDED_FOR"] == f"6.6.6.6, {CLIENT_ADDR}"
    assert info["PATH_INFO"] == "/tcp" and info["QUERY_STRING"] == "q=1"
    assert info["HTTP_HOST"] == f"127.0.0.1:{stack['port_pool']}"
    assert info["wsgi.url_scheme"] == "http" and info["HTTP_X_CUSTOM"] == "yes"


def test_proxy_pass_over_unix_socket(stack):
    body = os.urandom(100_000)
    info = request_json(stack["port_unix"], "POST", "/unix", body=body)
    assert info["REMOTE_ADDR"] == CLIENT_ADDR            # unix peer trusted ("unix")
    assert info["body_len"] == len(body)
    assert info["body_sha"] == hashlib.sha256(body).hexdigest()
    assert info["pid"] == stack["unix"].pid


def test_uwsgi_pass_get(stack):
    info = request_json(stack["port_uwsgi"], path="/u/p%20q?a=1&b=%20",
                        headers={"Cookie": "a=1", "X-Custom": "v"})
    assert info["pid"] == stack["uwsgi"].pid
    assert info["REQUEST_METHOD"] == "GET"
    assert info["PATH_INFO"] == "/u/p q" and info["QUERY_STRING"] == "a=1&b=%20"
    assert info["RAW_URI"] == info["REQUEST_URI"] == "/u/p%20q?a=1&b=%20"
    assert info["REMOTE_ADDR"] == CLIENT_ADDR           # from the packet, not the socket
    assert info["SERVER_PORT"] == str(stack["port_uwsgi"])
    assert info["HTTP_COOKIE"] == "a=1" and info["HTTP_X_CUSTOM"] == "v"
    assert info["wsgi.url_scheme"] == "http"
    assert not info["has_http_content_length"]


def test_uwsgi_pass_streams_request_and_response_bodies(stack):
    body = os.urandom(3 * 1024 * 1024)
    info = request_json(stack["port_uwsgi"], "PUT", "/upload", body=body,
                        headers={"Content-Type": "application/octet-stream"})
    assert info["body_len"] == len(body) and info["CONTENT_LENGTH"] == str(len(body))
    assert info["body_sha"] == hashlib.sha256(body).hexdigest()
    assert info["CONTENT_TYPE"] == "application/octet-stream"
    status, headers, data = request(stack["port_uwsgi"], path="/big?n=2000000")
    assert status == 200 and len(data) == 2_000_000
    assert data == (b"0123456789abcdef" * 125_000)


def test_uwsgi_pass_chunked_request_is_buffered_by_nginx(stack):
    def chunks():
        yield b"hello "
        yield b"world"
    # http.client frames an iterable body with Transfer-Encoding: chunked
    info = request_json(stack["port_uwsgi"], "POST", "/chunked", body=chunks())
    assert info["body_len"] == 11 and info["CONTENT_LENGTH"] == "11"


def test_uwsgi_pass_head_and_many_requests(stack):
    status, headers, body = request(stack["port_uwsgi"], "HEAD", "/big?n=5000")
    assert status == 200 and body == b"" and headers["content-length"] == "5000"
    for i in range(20):
        assert request_json(stack["port_uwsgi"], path=f"/n{i}")["PATH_INFO"] == f"/n{i}"


def test_uwsgi_rejects_oversized_body_with_413(stack):
    status, _, _ = request(stack["port_uwsgi"], "POST", "/", body=b"x" * (9 * 1024 * 1024))
    assert status == 413


def test_nginx_serves_static_itself(stack):
    status, headers, body = request(stack["port_pool"], path="/static/logo.txt")
    assert status == 200 and body == b"served by nginx\n"
    assert headers["content-type"] == "text/plain" and "expires" in headers
    # a missing file is nginx's own 404 page: the request never reached fastwsgi
    status, _, body = request(stack["port_pool"], path="/static/missing.txt")
    assert status == 404 and b"<center>nginx" in body
    # everything else is the app's
    assert request_json(stack["port_pool"], path="/dynamic")["PATH_INFO"] == "/dynamic"


def test_upstream_balances_across_three_instances(stack):
    pids = {request_json(stack["port_pool"], path="/lb")["pid"] for _ in range(30)}
    assert pids == {s.pid for s in stack["pool"]}


def test_failover_when_an_instance_is_killed(stack):
    """Clients keep hammering while one instance dies: nginx retries the next."""
    port = stack["port_pool"]
    victim = stack["pool"][0]
    failures, seen, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                status, _, body = request(port, path="/failover", timeout=5)
                if status != 200:
                    failures.append((status, body[:200]))
                else:
                    seen.append(json.loads(body)["pid"])
            except Exception as exc:       # a refused or reset request is a failure
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    before = len(seen)
    victim.proc.kill()                      # SIGKILL: no graceful goodbye
    victim.proc.wait(5)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    after = seen[before + 8:]               # requests that started after the kill
    assert not failures, failures[:5]
    assert before > 10 and len(after) > 10
    assert victim.pid not in after
    assert set(after) == {s.pid for s in stack["pool"][1:]}


def test_the_docs_show_these_configs():
    with open(DOCS) as f:
        doc = f.read()
    for template, values in (
        (UPSTREAM_HTTP, DOC_VALUES),
        (UPSTREAM_UNIX, DOC_VALUES),
        (UPSTREAM_UWSGI, DOC_VALUES),
        (LOCATION_PROXY, {"upstream": "fastwsgi"}),
        (LOCATION_UWSGI, {"upstream": "fastwsgi_uwsgi"}),
        (LOCATION_STATIC, DOC_VALUES),
    ):
        text = template.format(**values)
        assert text in doc, f"docs/deployment.md does not show:\n{text}"
