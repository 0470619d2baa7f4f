"""Fixture app of tests/test_privileges.py: who imported it and who serves.

The uid/gid at import time prove the app was imported after the privilege drop.
It imports nothing the server has not imported already: where Python itself is
not readable by the user dropped to (an interpreter under /root), a new stdlib
import would fail after the drop.
"""

import os

IMPORTED_AS = [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())]


def app(environ, start_response):
    serving_as = [os.getuid(), os.geteuid(), os.getgid(), os.getegid(),
                  sorted(os.getgroups())]
    # repr of ints and lists of ints is JSON
    body = (f'{{"imported_as": {list(IMPORTED_AS)!r}, "serving_as": {serving_as!r}, '
            f'"pid": {os.getpid()}}}').encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
