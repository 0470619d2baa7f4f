"""Fixture app for the process-model tests (tests/test_arbiter.py, test_workers.py).

Every response body is one line ``pid=N version=V multiprocess=B multithread=B`` so
a test knows which worker answered and which import of the code it runs.
``VERSION`` is read at import time from the file named by $PROCAPP_VERSION_FILE (a
test rewrites it, then reloads): a new value proves the module was imported again.
A version file saying ``raise`` makes the import fail (a broken deploy).
Each import appends ``PID VERSION`` to the file named by $PROCAPP_IMPORTS, if set.

Paths: /slow?S sleeps S seconds; /hang never returns (in ``hang_forever_in_app``,
the name the --timeout tests look for in the logged stack); /exit?C ends the
worker process with status C; anything else answers at once.
For --timeout and recycling (tests/test_supervise.py): /sleep?S one time.sleep(S)
(stuck in C: only the call's return delivers an exception); /swallow hangs in an
``except Exception`` loop (RequestTimeout must still get through); /sysexit?C
raises SystemExit(C) (/sysexit-iter?C: while its iterable runs); /big?MIB answers MIB MiB in 64 KiB chunks; /grow?MIB keeps
MIB MiB more memory for the life of the worker; /upload reads the whole body and
answers its length.  $PROCAPP_IMPORT_DELAY makes each import sleep that long.
"""

import os
import time


def _read_version():
    path = os.environ.get("PROCAPP_VERSION_FILE")
    if not path:
        return "1"
    with open(path) as f:
        text = f.read().strip()
    if text == "raise":
        raise RuntimeError("broken deploy")
    return text


VERSION = _read_version()
time.sleep(float(os.environ.get("PROCAPP_IMPORT_DELAY") or 0))

if os.environ.get("PROCAPP_IMPORTS"):       # one line per import: the test waits for it
    with open(os.environ["PROCAPP_IMPORTS"], "a") as _f:
        _f.write(f"{os.getpid()} {VERSION}\n")


def hang_forever_in_app():
    while True:
        time.sleep(0.05)


def swallow_every_exception():
    while True:
        try:
            time.sleep(0.05)
        except Exception:
            pass


KEPT = []


def _big(mib, start_response):
    chunk = b"x" * 65536
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(mib * 1048576))])
    return (chunk for _ in range(mib * 16))


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(float(query or 1))
    elif path == "/swallow":
        swallow_every_exception()
    elif path == "/sysexit":
        raise SystemExit(int(query or 0))
    elif path == "/sysexit-iter":
        return _exit_while_iterating(int(query or 0), start_response)
    elif path == "/big":
        return _big(int(query or 1), start_response)
    elif path == "/upload":
        size = len(environ["wsgi.input"].read())
        body = f"pid={os.getpid()} read={size}\n".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    elif path == "/grow":
        KEPT.append(bytearray(int(query or 1) * 1048576))
    elif path == "/slow":
        time.sleep(float(query or 1))
    elif path == "/hang":
        hang_forever_in_app()
    elif path == "/exit":
        os._exit(int(query or 1))
    body = (f"pid={os.getpid()} version={VERSION} "
            f"multiprocess={environ['wsgi.multiprocess']} "
            f"multithread={environ['wsgi.multithread']}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _exit_while_iterating(code, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise SystemExit(code)
