"""The built-in demo app: ``fastwsgi fastwsgi.demo`` shows a page at once.

Routes: ``/`` an HTML page, ``/json`` the request as JSON, ``/echo`` the request
body back (POST), ``/stream`` a chunked response.
"""

import json

from fastwsgi import __version__

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fastwsgi</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>fastwsgi {version} is running</h1>
<p>This is the built-in demo app. Serve your own with
<code>fastwsgi yourproject.wsgi:application</code>.</p>
<ul>
<li><a href="/json?hello=world">/json</a>: the request as the app saw it</li>
<li><a href="/stream">/stream</a>: a streamed (chunked) response</li>
<li>POST to <code>/echo</code>: the body back</li>
</ul>
</body></html>
"""


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        body = PAGE.format(version=__version__).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]
    if path == "/json":
        seen = {k: v for k, v in environ.items() if isinstance(v, str)}
        body = json.dumps(seen, indent=2, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE") or
                                   "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return (f"line {i}\n".encode() for i in range(10))
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, World!"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not Found\n"]


app = application
