"""Apps of tests/test_body_cache.py: large bytes bodies returned again and again
(module constants, as an in-memory asset cache would), and fresh ones."""

import os

# distinct bytes at every offset, so a body shifted, cut or mixed with another shows
BIG = b"".join(b"%08d" % i for i in range(1024 * 1024 // 8))        # 1 MiB
OTHER = b"".join(b"%08x" % (i * 7) for i in range(300 * 1024 // 8))  # 300 KiB
SIZES = {"big": BIG, "other": OTHER}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/fresh":
        body = bytes(BIG)[:-1] + b"!"        # a new object every time
    else:
        body = SIZES[path.strip("/") or "big"]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]
