"""Fixture apps for the deployment tests (tests/test_uwsgi.py, test_proxy.py,
test_static.py, test_mount.py, test_nginx.py).

`app` answers every request with JSON: the CGI keys of its environ, the scheme,
this process's pid and the body it read (length and sha256), so a test behind any
front end (raw uwsgi packets, nginx, PROXY headers) sees what the app saw.
`/big?n=N` answers N bytes; `/slow?s=S` sleeps first.  `api` and `admin` are the
same app tagged with another name (mount tests); `tagged(name)` makes more.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
    "REMOTE_PORT", "RAW_URI", "REQUEST_URI", "HTTP_HOST", "HTTP_COOKIE",
    "HTTP_X_FORWARDED_FOR", "HTTP_X_CUSTOM", "HTTPS", "wsgi.url_scheme",
)


def tagged(name):
    def app(environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "s" in query:
            time.sleep(float(query["s"][0]))
        if environ.get("PATH_INFO") == "/big":
            n = int(query.get("n", ["1000000"])[0])
            body = (b"0123456789abcdef" * (n // 16 + 1))[:n]
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(n))])
            return [body]
        data = environ["wsgi.input"].read()
        info = {k: environ[k] for k in KEYS if k in environ}
        info.update(app=name, pid=os.getpid(), body_len=len(data),
                    body_sha=hashlib.sha256(data).hexdigest(),
                    has_http_content_length="HTTP_CONTENT_LENGTH" in environ)
        body = json.dumps(info).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


app = tagged("site")
api = tagged("api")
admin = tagged("admin")


def streamed(environ, start_response):
    """A body without Content-Length (framed by the server)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (b"chunk %d\n" % i for i in range(5))
