"""--static PREFIX=DIR: files served by fastwsgi itself (fastwsgi/static.py).

One real server per module, `--static /static=<tmp>/root` in front of the
deploy fixture app; a keep-alive http.client connection checks framing across
200 / 206 / 304 / 416 answers.  The escape tests build a secret file next to the
root and a symlink pointing at it.
"""

import email.utils
import hashlib
import http.client
import os
import socket

import pytest

from fastwsgi.static import StaticFiles, _parse_range

BIG = bytes(range(256)) * 8192          # 2 MiB: goes out with sendfile


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from conftest import ServerProcess
    base = tmp_path_factory.mktemp("static")
    root = base / "root"
    (root / "css").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello, static world\n")
    (root / "css" / "site.css").write_bytes(b"body { color: red }\n")
    (root / "big.bin").write_bytes(BIG)
    (root / "data.json").write_bytes(b"{}")
    (root / "empty.txt").write_bytes(b"")
    (root / "caf\u00e9.txt").write_bytes(b"unicode name\n")
    (base / "secret.txt").write_bytes(b"TOP SECRET\n")
    os.symlink(base / "secret.txt", root / "leak.txt")
    os.symlink(root / "hello.txt", root / "alias.txt")
    os.symlink(base, root / "up")                        # a directory out of the root
    os.symlink(root / "css", root / "style")             # a directory inside it
    # a sibling whose name starts with the root's: outside all the same
    (base / "root2").mkdir()
    (base / "root2" / "s.txt").write_bytes(b"TOP SECRET sibling\n")
    os.symlink(base / "root2" / "s.txt", root / "sib.txt")
    server = ServerProcess(["--static", f"/static={root}", "deploy:app"])
    yield server, root
    server.stop()


def fetch(site, path, headers=None, method="GET", conn=None):
    server, _ = site
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        if own:
            conn.close()


def test_get_file_with_validators(site):
    server, root = site
    status, headers, body = fetch(site, "/static/hello.txt")
    assert status == 200 and body == b"hello, static world\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "20" and headers["accept-ranges"] == "bytes"
    st = os.stat(root / "hello.txt")
    assert headers["etag"] == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    assert headers["last-modified"] == email.utils.formatdate(int(st.st_mtime), usegmt=True)


@pytest.mark.parametrize("path, ctype", [
    ("/static/css/site.css", "text/css; charset=utf-8"),
    ("/static/data.json", "application/json"),
    ("/static/big.bin", "application/octet-stream"),
    ("/static/caf%C3%A9.txt", "text/plain; charset=utf-8"),
])
def test_content_types(site, path, ctype):
    status, headers, _ = fetch(site, path)
    assert status == 200 and headers["content-type"] == ctype


def test_large_file_and_empty_file(site):
    status, headers, body = fetch(site, "/static/big.bin")
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()
    status, headers, body = fetch(site, "/static/empty.txt")
    assert status == 200 and body == b"" and headers["content-length"] == "0"


def test_head(site):
    status, headers, body = fetch(site, "/static/big.bin", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(BIG))


def test_conditional_requests(site):
    _, headers, _ = fetch(site, "/static/hello.txt")
    etag, modified = headers["etag"], headers["last-modified"]
    for extra in ({"If-None-Match": etag}, {"If-None-Match": f'"x", W/{etag}'},
                  {"If-None-Match": "*"}, {"If-Modified-Since": modified},
                  {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}):
        status, h, body = fetch(site, "/static/hello.txt", extra)
        assert status == 304 and body == b"" and h["etag"] == etag, extra
    for extra in ({"If-None-Match": '"other"'},
                  {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                  {"If-Modified-Since": "not a date"},
                  {"If-None-Match": '"other"', "If-Modified-Since": modified}):
        status, _, body = fetch(site, "/static/hello.txt", extra)
        assert status == 200 and body == b"hello, static world\n", extra


@pytest.mark.parametrize("header, status, content_range, body", [
    ("bytes=0-4", 206, "bytes 0-4/20", b"hello"),
    ("bytes=7-", 206, "bytes 7-19/20", b"static world\n"),
    ("bytes=-6", 206, "bytes 14-19/20", b"world\n"),
    ("bytes=7-1000", 206, "bytes 7-19/20", b"static world\n"),
    ("bytes=-1000", 206, "bytes 0-19/20", b"hello, static world\n"),
    ("bytes=20-", 416, "bytes */20", None),
    ("bytes=-0", 416, "bytes */20", None),
    ("bytes=0-1,5-6", 200, None, b"hello, static world\n"),   # several ranges: whole file
    ("bytes=5-1", 200, None, b"hello, static world\n"),       # invalid: ignored
    ("items=0-1", 200, None, b"hello, static world\n"),
    ("bytes=x-y", 200, None, b"hello, static world\n"),
])
def test_ranges(site, header, status, content_range, body):
    got, headers, data = fetch(site, "/static/hello.txt", {"Range": header})
    assert got == status
    assert headers.get("content-range") == content_range
    if body is not None:
        assert data == body and headers["content-length"] == str(len(body))


def test_range_of_a_large_file_uses_the_offset(site):
    status, headers, body = fetch(site, "/static/big.bin", {"Range": "bytes=1000000-1099999"})
    assert status == 206 and body == BIG[1000000:1100000]


def test_if_range(site):
    _, headers, _ = fetch(site, "/static/hello.txt")
    status, _, body = fetch(site, "/static/hello.txt",
                            {"Range": "bytes=0-4", "If-Range": headers["etag"]})
    assert status == 206 and body == b"hello"
    status, _, body = fetch(site, "/static/hello.txt",
                            {"Range": "bytes=0-4", "If-Range": headers["last-modified"]})
    assert status == 206
    status, _, body = fetch(site, "/static/hello.txt", {"Range": "bytes=0-4", "If-Range": '"old"'})
    assert status == 200 and len(body) == 20
    status, _, body = fetch(site, "/static/hello.txt", {"Range": "bytes=0-4"}, method="HEAD")
    assert status == 200                                   # Range is for GET only


def test_keep_alive_across_answers(site):
    server, _ = site
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        _, headers, _ = fetch(site, "/static/hello.txt", conn=conn)
        assert fetch(site, "/static/hello.txt", {"If-None-Match": headers["etag"]}, conn=conn)[0] == 304
        assert fetch(site, "/static/hello.txt", {"Range": "bytes=0-1"}, conn=conn)[2] == b"he"
        assert fetch(site, "/static/hello.txt", {"Range": "bytes=99-"}, conn=conn)[0] == 416
        assert fetch(site, "/static/big.bin", {"Range": "bytes=-3"}, conn=conn)[2] == BIG[-3:]
        assert fetch(site, "/static/nope", conn=conn)[0] == 404
        assert fetch(site, "/elsewhere", conn=conn)[0] == 200
    finally:
        conn.close()


def raw_get(site, target):
    """The target exactly as written (http.client would not send some of these)."""
    server, _ = site
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    return int(raw[9:12]), raw


@pytest.mark.parametrize("target", [
    "/static/../static/hello.txt",
    "/static/css/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/css%2f..%2f..%2fsecret.txt",
    "/static/css%2Fsite.css",                  # an encoded slash even inside the root
    "/static/..%5csecret.txt",
    "/static/%5c..%5csecret.txt",
    "/static/hello.txt%00.png",
    "/static/leak.txt",                        # symlink out of the root
    "/static/up/secret.txt",                   # through a symlinked directory
    "/static/sib.txt",                         # into root2, a sibling named like it
    "/static/",
    "/static",
    "/static/css",
    "/static/missing.txt",
])
def test_no_way_out_of_the_root(site, target):
    status, raw = raw_get(site, target)
    assert status in (400, 404), raw[:200]
    assert b"TOP SECRET" not in raw


def test_symlink_inside_the_root_is_followed(site):
    assert raw_get(site, "/static/alias.txt")[1].endswith(b"hello, static world\n")
    assert raw_get(site, "/static/style/site.css")[1].endswith(b"body { color: red }\n")
    # out and back in again: the file is inside, wherever the path went
    assert raw_get(site, "/static/up/root/hello.txt")[1].endswith(b"hello, static world\n")


def test_other_methods_and_paths(site):
    server, _ = site
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/static/hello.txt", body=b"x")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
    resp.read()
    conn.close()
    status, headers, body = fetch(site, "/staticky/hello.txt")      # not under the prefix
    assert status == 200 and b'"PATH_INFO": "/staticky/hello.txt"' in body


def test_missing_static_directory_is_a_startup_error(tmp_path):
    from conftest import ServerProcess
    with pytest.raises(RuntimeError, match="no-such-dir"):
        ServerProcess(["--static", f"/s={tmp_path}/no-such-dir", "deploy:app"])


# ------------------------------------------------------------- without the server


def test_parse_range_table():
    assert _parse_range("bytes=0-0", 1) == (0, 0)
    assert _parse_range("bytes=0-", 0) == "unsatisfiable"
    assert _parse_range("bytes=-5", 0) == "unsatisfiable"
    assert _parse_range("BYTES = 2 - 3", 10) == (2, 3)
    assert _parse_range("bytes=", 10) is None


def test_middleware_under_a_server_without_file_wrapper(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"0123456789")
    app = StaticFiles(lambda e, s: [], {"/s": str(tmp_path)})
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/s/f.txt",
                         "HTTP_RANGE": "bytes=2-4"}, start_response))
    assert seen["status"] == "206 Partial Content" and body == b"234"
    big = bytes(range(256)) * 1000                     # several reads
    (tmp_path / "big.bin").write_bytes(big)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/s/big.bin"},
                            start_response))
        assert seen["status"] == "200 OK" and body == big
        body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/s/big.bin",
                             "HTTP_RANGE": "bytes=1000-"}, start_response))
        assert body == big[1000:]
    assert len(os.listdir("/proc/self/fd")) <= fds      # every file closed


def test_middleware_with_wsgiref_file_wrapper(tmp_path):
    """The file object handed to another server's wsgi.file_wrapper reads like a file."""
    from wsgiref.util import FileWrapper
    big = bytes(range(256)) * 1000
    (tmp_path / "big.bin").write_bytes(big)
    app = StaticFiles(lambda e, s: [], {"/s": str(tmp_path)})
    seen = {}

    def start_response(status, headers):
        seen["status"] = status

    result = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/s/big.bin",
                  "HTTP_RANGE": "bytes=10-99999", "wsgi.file_wrapper": FileWrapper},
                 start_response)
    body = b"".join(result)
    result.close()
    assert seen["status"] == "206 Partial Content" and body == big[10:100000]


# ------------------------------------------------------- safe by default (issue 12)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A directory with secrets beside the assets, a FIFO and a unix socket."""
    root = tmp_path_factory.mktemp("project")
    (root / ".env").write_bytes(b"SECRET_KEY=hunter2\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[remote] url=SECRET\n")
    (root / "app.css").write_bytes(b"body{}\n")
    (root / "big.bin").write_bytes(BIG)
    os.mkfifo(root / "pipe")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(root / "sock"))
    yield root
    unix.close()


@pytest.fixture(params=[(), ("--threads", "2")], ids=["loop", "threads"])
def guarded(request, serve, project):
    return serve("--static", f"/s={project}", *request.param, "deploy:app")


def _get(server, target, headers=b""):
    return server.request(f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n".encode()
                          + headers + b"\r\n")


@pytest.mark.parametrize("target", ["/s/.env", "/s/%2eenv", "/s/%2Eenv", "/s/.git/config",
                                    "/s/%2egit/config", "/s/x/../.env"])
def test_dotfiles_are_404_by_default(guarded, target):
    raw = _get(guarded, target)
    assert raw.startswith(b"HTTP/1.1 404") or raw.startswith(b"HTTP/1.1 400"), raw[:100]
    assert b"SECRET" not in raw and b"hunter2" not in raw


def test_dotfiles_when_enabled(serve, project):
    server = serve("--static", f"/s={project}", "--static-dotfiles", "deploy:app")
    assert _get(server, "/s/.env").endswith(b"SECRET_KEY=hunter2\n")
    assert _get(server, "/s/%2egit/config").endswith(b"SECRET\n")


@pytest.mark.parametrize("name", ["pipe", "sock"])
def test_fifos_and_sockets_are_404_and_do_not_block(guarded, name):
    assert _get(guarded, f"/s/{name}").startswith(b"HTTP/1.1 404")
    # the server did not hang in open(): the next request is served
    assert _get(guarded, "/s/app.css").endswith(b"body{}\n")


def test_devices_are_404():
    app = StaticFiles(lambda e, s: [], {"/d": "/dev"})
    seen = {}
    out = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/d/null"},
                       lambda status, headers: seen.update(status=status)))
    assert seen["status"].startswith("404") and out == b"Not Found\n"


@pytest.mark.parametrize("header, status, content_range", [
    ("bytes=" + "9" * 5000 + "-", 416, f"bytes */{len(BIG)}"),
    ("bytes=0-" + "9" * 5000, 206, f"bytes 0-{len(BIG) - 1}/{len(BIG)}"),
    ("bytes=-" + "9" * 5000, 206, f"bytes 0-{len(BIG) - 1}/{len(BIG)}"),
    ("bytes=" + "0" * 5000 + "1-2", 206, f"bytes 1-2/{len(BIG)}"),
])
def test_absurd_range_numbers_are_bounded(guarded, header, status, content_range):
    raw = _get(guarded, "/s/big.bin", f"Range: {header}\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:200]
    assert f"Content-Range: {content_range}".encode() in raw
    assert b"Traceback" not in "\n".join(guarded.lines).encode()


def test_cache_control_option(serve, project):
    value = "public, max-age=31536000, immutable"
    server = serve("--static", f"/s={project}", "--static-cache-control", value, "deploy:app")
    raw = _get(server, "/s/app.css")
    assert f"Cache-Control: {value}\r\n".encode() in raw
    etag = raw.split(b"ETag: ", 1)[1].split(b"\r\n", 1)[0]
    raw = _get(server, "/s/app.css", b"If-None-Match: " + etag + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 304") and f"Cache-Control: {value}".encode() in raw
    # without the option: no Cache-Control
    plain = serve("--static", f"/s={project}", "deploy:app")
    assert b"Cache-Control" not in _get(plain, "/s/app.css")
