"""The WSGI applications every server runs, one per scenario.

Contract: this module is copied into each run directory as ``bench_apps.py``
and imported by the server under test as ``bench_apps:<name>``. It imports
only the standard library at load time (Flask is imported the first time
``flask_app`` is looked up), so it loads in every server's virtualenv and
never puts the repository on ``sys.path``: there, ``import fastwsgi`` would
find the source tree instead of the package installed in the venv.

The expected responses are defined here too, so the correctness checker
(bench/check.py) and the apps can never disagree.
"""
import hashlib
import json

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


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", "13")])
    return [HELLO_BODY]


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(BIG_SIZE))])
    return [BIG_BODY]


def post(environ, start_response):
    # Read in pieces, as a real app would, so servers that hand out a
    # socket-backed wsgi.input are exercised rather than one big read().
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    digest = hashlib.sha256()
    while remaining > 0:
        chunk = stream.read(min(remaining, 16384))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    body = digest.hexdigest().encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    # No Content-Length: an HTTP/1.1 server must chunk (or close to delimit).
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (STREAM_CHUNK for _ in range(STREAM_COUNT))


def _make_flask_app():
    from flask import Flask, jsonify

    app = Flask("bench_apps")

    @app.route("/json")
    def json_endpoint():
        return jsonify(FLASK_PAYLOAD)

    return app


def __getattr__(name):
    # Lazy so that servers without Flask can still load the other apps.
    if name == "flask_app":
        app = _make_flask_app()
        globals()["flask_app"] = app
        return app
    raise AttributeError(name)


def flask_expected_ok(body):
    """Flask's JSON spacing changes between versions; compare the data."""
    try:
        return json.loads(body) == FLASK_PAYLOAD
    except ValueError:
        return False
