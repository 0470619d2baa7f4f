"""The Python API: make_server (wsgiref's drop-in), handle_request, shutdown, run.

Each test runs a small script in a subprocess that uses the API in-process, and
talks to it over real sockets from here.
"""

import http.client
import os
import signal
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

APP = """
def app(environ, start_response):
    body = (environ["PATH_INFO"] + " " + environ["SERVER_PROTOCOL"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def start(script):
    """Run `script` (APP is defined in it); return the process once it printed its port."""
    proc = subprocess.Popen(
        [sys.executable, "-c", APP + textwrap.dedent(script)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=HERE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise AssertionError(f"no port: {line!r} {proc.stderr.read()}")
    return proc, int(line.split()[1])


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_make_server_is_a_wsgiref_drop_in():
    proc, port = start("""
        import sys, threading
        from fastwsgi import make_server
        server = make_server("127.0.0.1", 0, app)   # positional, as wsgiref's
        host, port = server.server_address
        print("PORT", port, flush=True)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        sys.stdin.readline()                          # the test says when
        server.shutdown()                             # blocks until serve_forever returns
        thread.join(5)
        print("STOPPED", not thread.is_alive(), flush=True)
        server.server_close()
        print("CLOSED", flush=True)
    """)
    try:
        assert get(port, "/a") == (200, b"/a HTTP/1.1")
        assert get(port, "/b") == (200, b"/b HTTP/1.1")
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "STOPPED True"
        assert proc.stdout.readline().strip() == "CLOSED"
        assert proc.wait(10) == 0
        with pytest.raises(ConnectionRefusedError):
            get(port, "/after-close")
    finally:
        proc.kill()


def test_handle_request_serves_exactly_one_request_each_call():
    proc, port = start("""
        from fastwsgi import make_server
        with make_server("127.0.0.1", 0, app) as server:
            print("PORT", server.server_address[1], flush=True)
            server.handle_request()
            print("ONE", flush=True)
            server.handle_request()
            print("TWO", flush=True)
    """)
    try:
        assert get(port, "/first") == (200, b"/first HTTP/1.1")
        assert proc.stdout.readline().strip() == "ONE"
        assert get(port, "/second") == (200, b"/second HTTP/1.1")
        assert proc.stdout.readline().strip() == "TWO"
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_handle_request_honours_timeout():
    proc, port = start("""
        import time
        from fastwsgi import make_server
        server = make_server("127.0.0.1", 0, app)
        server.timeout = 0.3
        print("PORT", server.server_address[1], flush=True)
        t0 = time.monotonic()
        server.handle_request()                     # nobody comes
        print("WAITED", round(time.monotonic() - t0, 1), flush=True)
        server.server_close()
    """)
    try:
        waited = float(proc.stdout.readline().split()[1])
        assert 0.2 <= waited < 3
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_make_server_takes_setting_names_and_rejects_unknown_ones():
    proc, port = start("""
        from fastwsgi import make_server
        server = make_server("127.0.0.1", 0, app, server_header="", limit_request_line=64)
        print("PORT", server.server_address[1], flush=True)
        try:
            make_server("127.0.0.1", 0, app, no_such_option=1)
        except TypeError as exc:
            print("TYPEERROR", "no_such_option" in str(exc), flush=True)
        server.serve_forever()
    """)
    try:
        assert proc.stdout.readline().strip() == "TYPEERROR True"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/ok")
        resp = conn.getresponse()
        assert resp.read() == b"/ok HTTP/1.1" and resp.getheader("Server") is None
        conn.close()
        assert get(port, "/" + "x" * 100)[0] == 414       # limit_request_line=64
    finally:
        proc.kill()


def test_run_serves_until_sigterm():
    proc, port = start("""
        import logging, socket
        import fastwsgi
        # run() binds itself: find a free port first, as a user would pick one
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        print("PORT", port, flush=True)
        fastwsgi.run(app, host="127.0.0.1", port=port, keep_alive=2)
        print("RETURNED", flush=True)
    """)
    try:
        import time
        deadline = time.monotonic() + 10
        while True:
            try:
                status = get(port, "/run")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.05)
        assert status == (200, b"/run HTTP/1.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "RETURNED"
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
