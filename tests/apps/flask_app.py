"""Flask fixture app for tests/test_flask.py.

Served two ways: `flask_app:app` (a module-level instance) and
`flask_app:create_app()` (an application factory). `/origin` tells them apart,
so a test can prove the factory was called rather than `app` picked up.
Every route reports what the app saw, so the tests judge the server by what
reached the WSGI environ, not by what the client sent.
"""

import hashlib
import time

from flask import (
    Flask,
    Response,
    jsonify,
    redirect,
    request,
    session,
    stream_with_context,
    url_for,
)

STREAM_CHUNKS = 4
STREAM_DELAY = 0.25  # seconds between chunks: long enough to see them arrive apart


def create_app(origin="factory"):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-only-not-secret"
    app.config["ORIGIN"] = origin

    @app.get("/origin")
    def origin_view():
        return app.config["ORIGIN"]

    @app.get("/json")
    def json_get():
        return jsonify(method=request.method, args=request.args.to_dict(flat=False))

    @app.post("/json")
    def json_post():
        return jsonify(method=request.method, echo=request.get_json(),
                       content_length=request.content_length)

    @app.post("/form")
    def form():
        files = {}
        for field, storage in request.files.items():
            data = storage.read()
            files[field] = {
                "filename": storage.filename,
                "content_type": storage.mimetype,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        return jsonify(
            content_type=request.mimetype,
            form=request.form.to_dict(flat=False),
            files=files,
        )

    @app.get("/stream")
    def stream():
        # `request` is read inside the generator, after the view has returned:
        # that only works because stream_with_context keeps the context alive.
        def generate():
            for i in range(STREAM_CHUNKS):
                if i:
                    time.sleep(STREAM_DELAY)
                yield f"chunk {i} of {request.args['tag']}\n"

        return Response(stream_with_context(generate()), mimetype="text/plain")

    @app.get("/query")
    def query():
        return jsonify(
            args=request.args.to_dict(flat=False),
            query_string=request.query_string.decode("latin-1"),
        )

    @app.get("/héllo")
    def hello_unicode():
        return jsonify(path=request.path, route="héllo")

    @app.get("/echo-path/<path:rest>")
    def echo_path(rest):
        return jsonify(rest=rest, path=request.path)

    @app.get("/cookie/set")
    def cookie_set():
        resp = jsonify(ok=True)
        resp.set_cookie("flavor", "chocolate")
        resp.set_cookie("count", "3", httponly=True)
        return resp

    @app.get("/cookie/get")
    def cookie_get():
        return jsonify(cookies=request.cookies.to_dict())

    @app.get("/session/incr")
    def session_incr():
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @app.get("/boom")
    def boom():
        raise RuntimeError("flask-boom-marker")

    @app.get("/redirect")
    def redirect_relative():
        return redirect(url_for("json_get", via="redirect"))

    @app.get("/redirect-external")
    def redirect_external():
        return redirect(url_for("json_get", _external=True), code=301)

    @app.get("/url")
    def url_info():
        return jsonify(
            url=request.url,
            base_url=request.base_url,
            host_url=request.host_url,
            url_root=request.url_root,
            host=request.host,
            script_root=request.script_root,
            path=request.path,
            scheme=request.scheme,
        )

    return app


app = create_app(origin="module")
