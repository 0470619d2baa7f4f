"""The WSGI applications every server runs, one per scenario.

Contract: this module is copied into each run directory as ``bench_apps.py``
and imported by the server under test as ``bench_apps:<name>``; it is never
imported from the repository, where ``import fastwsgi`` would find the source
tree instead of the package installed in the venv. It imports only the
standard library, so the Flask app is built by ``make_flask_app()``, called
from the two-line ``bench_flask.py`` (FLASK_SHIM) that the flask scenario
loads: the other scenarios' memory and start-up never include Flask.

The expected responses are defined here too, so the correctness checker
(bench/check.py) and the apps can never disagree.
"""
import hashlib
import json
import os

HELLO_BODY = b"Hello, World!"
BIG_SIZE = 1024 * 1024
BIG_BODY = (b"0123456789abcdef" * (BIG_SIZE // 16))
POST_SIZE = 64 * 1024
# Deterministic so the wrk Lua script can send the same bytes.
POST_BODY = b"abcdefgh" * (POST_SIZE // 8)
POST_DIGEST = hashlib.sha256(POST_BODY).hexdigest().encode("ascii")
STREAM_CHUNK = b"x" * 1024
STREAM_COUNT = 100
STREAM_BODY = STREAM_CHUNK * STREAM_COUNT
FLASK_PAYLOAD = {"message": "Hello, World!", "id": 42, "ok": True}
JSON_PAYLOAD = {"message": "Hello, World!", "id": 42, "ok": True,
                "tags": ["fast", "wsgi"], "score": 0.5}
# The static scenario's files: f01.bin .. f20.bin of 1 .. 20 KiB, written into
# the run directory's static/ by write_static_files(); every server's app (and
# fastwsgi's own --static) serves them from there.
STATIC_DIR = "static"
STATIC_FILES = {f"f{i:02d}.bin": (b"%02d" % i + b"0123456789abcdef" * 64)[:1024] * i
                for i in range(1, 21)}
# 20 MB request bodies: built only when asked for (the bench driver), never
# when a server imports this module, so no server's RSS includes them.
UPLOAD_SIZE = 20 * 1000 * 1000
UPLOAD_UNIT = b"0123456789abcdef"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", "13")])
    return [HELLO_BODY]


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(BIG_SIZE))])
    return [BIG_BODY]


def _sha256_of_body(environ, start_response, piece):
    # Read in pieces, as a real app would, so servers that hand out a
    # socket-backed wsgi.input are exercised rather than one big read().
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    digest = hashlib.sha256()
    while remaining > 0:
        chunk = stream.read(min(remaining, piece))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    body = digest.hexdigest().encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def post(environ, start_response):
    return _sha256_of_body(environ, start_response, 16384)


def upload(environ, start_response):
    # 20 MB bodies: the server's peak RSS shows whether it holds a whole
    # body (or several) in memory before or while the app reads it.
    return _sha256_of_body(environ, start_response, 65536)


def upload_body():
    return UPLOAD_UNIT * (UPLOAD_SIZE // len(UPLOAD_UNIT))


def json_app(environ, start_response):
    # The stdlib's json.dumps of a small dict, no framework.
    body = json.dumps(JSON_PAYLOAD).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_STATIC_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), STATIC_DIR)


def static_file(environ, start_response):
    # A small file through wsgi.file_wrapper, as a framework's send_file does.
    # Only the names written by write_static_files() are served.
    name = environ.get("PATH_INFO", "").rpartition("/")[2]
    if environ.get("PATH_INFO") != "/static/" + name or name not in STATIC_FILES:
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", "9")])
        return [b"not found"]
    f = open(os.path.join(_STATIC_ROOT, name), "rb")
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(f, 8192)
    return _blocks(f)


def _blocks(f):
    with f:
        while True:
            block = f.read(8192)
            if not block:
                return
            yield block


def write_static_files(directory):
    """Write STATIC_FILES into ``directory`` (created)."""
    os.makedirs(directory, exist_ok=True)
    for name, data in STATIC_FILES.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def stream(environ, start_response):
    # No Content-Length: an HTTP/1.1 server must chunk (or close to delimit).
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (STREAM_CHUNK for _ in range(STREAM_COUNT))


def make_flask_app():
    from flask import Flask, jsonify

    app = Flask("bench_apps")

    @app.route("/json")
    def json_endpoint():
        return jsonify(FLASK_PAYLOAD)

    return app


FLASK_SHIM = """\
# Generated by bench/run.py: the flask scenario's app, defined in bench_apps.
from bench_apps import make_flask_app
app = make_flask_app()
"""


def _json_equals(body, payload):
    try:
        return json.loads(body) == payload
    except ValueError:
        return False


def flask_expected_ok(body):
    """Flask's JSON spacing changes between versions; compare the data."""
    return _json_equals(body, FLASK_PAYLOAD)


def json_expected_ok(body):
    return _json_equals(body, JSON_PAYLOAD)
