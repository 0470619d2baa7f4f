"""fastwsgi behind a real HAProxy (Debian's haproxy; .ci/run installs it) that
speaks PROXY protocol v2 to two fastwsgi instances.

The client connects from 127.0.0.3, HAProxy (a loopback peer: trusted by
default) balances over the two instances with ``send-proxy-v2``, and the app
must see the client's address.  An untrusted peer (127.0.0.2, outside the
instances' --forwarded-allow-ips) that sends a PROXY header of its own is
refused with 400.  The HAProxy config is the one docs/deployment.md shows.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import ServerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(os.path.dirname(HERE), "docs", "deployment.md")
CLIENT = "127.0.0.3"

# Shared with docs/deployment.md (rendered there with DOC_VALUES).
HAPROXY_BACKEND = """\
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend www
    bind {bind}
    default_backend fastwsgi

backend fastwsgi
    balance roundrobin
    server app1 {a} send-proxy-v2
    server app2 {b} send-proxy-v2
"""

DOC_VALUES = {"bind": ":80", "a": "10.0.0.11:8000", "b": "10.0.0.12:8000"}


def haproxy_binary():
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                       else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, host="127.0.0.1", source=CLIENT, prefix=b""):
    with socket.create_connection((host, port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(prefix + b"GET /who HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    return raw


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    binary = haproxy_binary()
    if binary is None:
        pytest.fail("haproxy is not installed: these tests drive a real HAProxy in front of "
                    "fastwsgi; install it with `apt-get install haproxy` (.ci/run does)")
    tmp = tmp_path_factory.mktemp("haproxy")
    # only the loopback proxy (127.0.0.1) may send PROXY headers
    servers = [ServerProcess(["--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1",
                              "deploy:app"]) for _ in range(2)]
    port = free_port()
    conf = tmp / "haproxy.cfg"
    conf.write_text("global\n    maxconn 100\n\n" + HAPROXY_BACKEND.format(
        bind=f"127.0.0.1:{port}", a=f"127.0.0.1:{servers[0].port}",
        b=f"127.0.0.1:{servers[1].port}"))
    check = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([binary, "-db", "-f", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"haproxy did not start: {proc.stdout.read()!r}")
                time.sleep(0.05)
        yield port, servers
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for server in servers:
            server.stop()


def test_client_address_reaches_the_app_through_both_instances(stack):
    port, servers = stack
    seen = set()
    for _ in range(4):
        raw = get(port)
        assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
        info = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert info["REMOTE_ADDR"] == CLIENT and info["HTTP_HOST"] == "shop.example"
        seen.add(info["pid"])
    assert len(seen) == 2            # round robin over both instances


def test_a_direct_proxy_header_from_an_untrusted_peer_is_refused(stack):
    _, servers = stack
    forged = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n"
    for server in servers:
        raw = get(server.port, source="127.0.0.2", prefix=forged)
        assert raw.startswith(b"HTTP/1.1 400"), raw[:300]
        assert b"10.1.2.3" not in raw
        assert server.alive()


def test_the_docs_show_this_config():
    with open(DOCS, encoding="utf-8") as f:
        docs = f.read()
    assert HAPROXY_BACKEND.format(**DOC_VALUES) in docs
