"""Flask end to end: tests/apps/flask_app.py under a real `python -m fastwsgi`.

One server per module (starting Python + Flask is most of the cost); the
factory form `flask_app:create_app()` gets its own server. The client is
`requests`; framing checks that must see the wire use a raw socket.
"""

import hashlib
import json
import random
import time

import pytest
import requests

from conftest import ServerProcess


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess(["flask_app:app"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def base(server):
    return f"http://127.0.0.1:{server.port}"


def test_module_app_is_served(base):
    r = requests.get(base + "/origin", timeout=10)
    assert r.status_code == 200
    assert r.text == "module"


def test_factory_app_is_called(serve):
    srv = serve("flask_app:create_app()")
    r = requests.get(f"http://127.0.0.1:{srv.port}/origin", timeout=10)
    assert r.status_code == 200
    assert r.text == "factory"


def test_json_get(base):
    r = requests.get(base + "/json", params={"a": ["1", "2"], "b": "x"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"method": "GET", "args": {"a": ["1", "2"], "b": ["x"]}}


def test_json_post_echo(base):
    payload = {"name": "zoë", "n": [1, 2.5, None, True], "nested": {"k": "v" * 1000}}
    r = requests.post(base + "/json", json=payload, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["echo"] == payload
    assert body["content_length"] == len(json.dumps(payload).encode())


def test_form_urlencoded(base):
    data = {"name": "José Ñ", "tags": ["a b", "c&d"], "empty": ""}
    r = requests.post(base + "/form", data=data, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["content_type"] == "application/x-www-form-urlencoded"
    assert body["form"] == {"name": ["José Ñ"], "tags": ["a b", "c&d"], "empty": [""]}
    assert body["files"] == {}


def test_multipart_upload_3mib(base):
    blob = random.Random(1234).randbytes(3 * 1024 * 1024 + 17)
    # Put boundary-like bytes inside the file, so a body that reaches the app
    # truncated or spliced does not parse into the same digest by accident.
    blob = blob[:1000] + b"\r\n--not-the-boundary\r\n" + blob[1000:]
    r = requests.post(
        base + "/form",
        data={"caption": "café"},
        files={"upload": ("data.bin", blob, "application/octet-stream")},
        timeout=30,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["content_type"] == "multipart/form-data"
    assert body["form"] == {"caption": ["café"]}
    assert body["files"]["upload"] == {
        "filename": "data.bin",
        "content_type": "application/octet-stream",
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def test_stream_with_context_is_chunked_and_incremental(base):
    start = time.monotonic()
    with requests.get(base + "/stream", params={"tag": "t1"}, stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in r.headers
        arrivals = []
        for piece in r.iter_content(chunk_size=1):
            arrivals.append((time.monotonic() - start, piece))
    text = b"".join(p for _, p in arrivals).decode()
    assert text == "".join(f"chunk {i} of t1\n" for i in range(4))
    # The app sleeps 0.25 s between its four chunks; a server that buffers the
    # whole body delivers everything at once.
    assert len(arrivals) >= 2
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5


def test_stream_chunk_framing_on_the_wire(server):
    raw = server.request(
        b"GET /stream?tag=w HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    chunks = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            assert body == b"\r\n"
            break
        chunks.append(body[:size])
        assert body[size:size + 2] == b"\r\n"
        body = body[size + 2:]
    assert b"".join(chunks) == b"".join(b"chunk %d of w\n" % i for i in range(4))


def test_query_string(base):
    r = requests.get(base + "/query?a=1&a=2&b=h%C3%A9&empty=&plus=a+b&pct=50%25", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["args"] == {
        "a": ["1", "2"], "b": ["hé"], "empty": [""], "plus": ["a b"], "pct": ["50%"],
    }
    assert body["query_string"] == "a=1&a=2&b=h%C3%A9&empty=&plus=a+b&pct=50%25"


def test_non_ascii_route(base):
    r = requests.get(base + "/héllo", timeout=10)  # requests sends /h%C3%A9llo
    assert r.request.path_url == "/h%C3%A9llo"
    assert r.status_code == 200
    assert r.json() == {"path": "/héllo", "route": "héllo"}


def test_non_ascii_path_parameter(base):
    r = requests.get(base + "/echo-path/caf%C3%A9/%E2%9C%93%20x", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"rest": "café/✓ x", "path": "/echo-path/café/✓ x"}


def test_cookies_set_and_sent_back(base):
    with requests.Session() as s:
        r = s.get(base + "/cookie/set", timeout=10)
        assert r.status_code == 200
        # Two Set-Cookie headers must stay two headers, not be folded into one.
        set_cookies = r.raw.headers.getlist("Set-Cookie")
        assert len(set_cookies) == 2
        assert any(c.startswith("flavor=chocolate") for c in set_cookies)
        assert any(c.startswith("count=3") and "HttpOnly" in c for c in set_cookies)
        r = s.get(base + "/cookie/get", timeout=10)
        assert r.json() == {"cookies": {"flavor": "chocolate", "count": "3"}}


def test_signed_session_cookie(base):
    with requests.Session() as s:
        assert [s.get(base + "/session/incr", timeout=10).json()["n"] for _ in range(3)] == [1, 2, 3]
    assert requests.get(base + "/session/incr", timeout=10).json()["n"] == 1


def test_404_is_flasks_page(base):
    r = requests.get(base + "/no/such/page", timeout=10)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<h1>Not Found</h1>" in r.text


def test_500_from_app_and_server_keeps_serving(server, base):
    with requests.Session() as s:
        r = s.get(base + "/boom", timeout=10)
        assert r.status_code == 500
        assert "<h1>Internal Server Error</h1>" in r.text
        # Same keep-alive session, then a fresh connection: both still served.
        assert s.get(base + "/origin", timeout=10).text == "module"
    assert requests.get(base + "/origin", timeout=10).text == "module"
    # Flask logged the traceback through wsgi.errors (or stderr): it must reach the log.
    server.wait_for_output(r"RuntimeError: flask-boom-marker", timeout=5)
    assert server.alive()


def test_relative_redirect_followed(base):
    r = requests.get(base + "/redirect", timeout=10)
    assert [h.status_code for h in r.history] == [302]
    assert r.history[0].headers["Location"] == "/json?via=redirect"
    assert r.status_code == 200
    assert r.url == base + "/json?via=redirect"
    assert r.json()["args"] == {"via": ["redirect"]}


def test_external_redirect_uses_host_header(base):
    r = requests.get(base + "/redirect-external", allow_redirects=False, timeout=10)
    assert r.status_code == 301
    assert r.headers["Location"] == base + "/json"
    r = requests.get(base + "/redirect-external", headers={"Host": "shop.example:8443"},
                     allow_redirects=False, timeout=10)
    assert r.headers["Location"] == "http://shop.example:8443/json"


def test_request_url_and_host_url(base):
    r = requests.get(base + "/url?x=1&y=z", timeout=10)
    assert r.json() == {
        "url": base + "/url?x=1&y=z",
        "base_url": base + "/url",
        "host_url": base + "/",
        "url_root": base + "/",
        "host": base[len("http://"):],
        "script_root": "",
        "path": "/url",
        "scheme": "http",
    }


def test_request_url_with_custom_host_header(base):
    r = requests.get(base + "/url", headers={"Host": "example.test:8080"}, timeout=10)
    body = r.json()
    assert body["url"] == "http://example.test:8080/url"
    assert body["host_url"] == "http://example.test:8080/"
    assert body["host"] == "example.test:8080"


def test_request_url_http10_without_host_falls_back_to_server_name(server):
    raw = server.request(b"GET /url HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"200"
    info = json.loads(body)
    # Without Host, Werkzeug rebuilds the host from SERVER_NAME and SERVER_PORT:
    # the name may be the bound address or a resolved name, the port must be real.
    assert info["host_url"] in (f"http://127.0.0.1:{server.port}/",
                                f"http://localhost:{server.port}/")
    assert info["url"] == info["host_url"] + "url"
