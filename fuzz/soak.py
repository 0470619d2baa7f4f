"""Soak: one million mixed requests against ONE server process; RSS and fds must not grow.

Run by hand (not in CI), from the repository root:

    python fuzz/soak.py [--requests 1000000] [--conns 32]

It starts `python -m fastwsgi soak:app` (this file's `app`) on 127.0.0.1:0, drives
`--conns` connections from one thread with a selector, and sends rounds of
pipelined requests: GETs, HEADs, POSTs with a Content-Length body, chunked POSTs,
a long query string; some rounds end with `Connection: close`, some with a
malformed request (400, the server closes), some are cut off mid-request by the
client (a reset).  Each connection is reopened after the server closes it.

The server's VmRSS and open descriptors are read from /proc after a warm-up of
--warmup requests (start) and after the measured --requests (end), each time
once every client connection is closed and the descriptor count is stable.  It exits 1 if RSS grew by 5 MiB or more, or the descriptors by
any, and prints one JSON line with the figures.
"""

import argparse
import json
import os
import random
import re
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --- the application (imported by the server process) --------------------------------------


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        out = b"got %d" % len(body)
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"chunk%d" % i for i in range(3))
    else:
        out = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]


# --- the driver ------------------------------------------------------------------------------

H = b"Host: soak\r\n"
GET = b"GET /get HTTP/1.1\r\n" + H + b"\r\n"
HEAD = b"HEAD /get HTTP/1.1\r\n" + H + b"\r\n"
STREAM = b"GET /stream HTTP/1.1\r\n" + H + b"\r\n"
QUERY = b"GET /q?" + b"a=b&" * 400 + b" HTTP/1.1\r\n" + H + b"User-Agent: soak\r\nAccept: */*\r\n\r\n"
POST = b"POST /post HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n" + b"p" * 1000
CHUNKED = (b"POST /chunked HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
           + b"100\r\n" + b"c" * 256 + b"\r\n" + b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
CLOSE = b"GET /get HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
BAD = b"POST /post HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
PARTIAL = b"POST /post HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nonly part"

KEEP_ROUND = [GET, GET, HEAD, POST, CHUNKED, STREAM, QUERY, GET]
# (bytes, responses expected, how the round ends)
ROUNDS = [
    (b"".join(KEEP_ROUND), len(KEEP_ROUND), "keep"),
    (GET + POST + CLOSE, 3, "server_closes"),
    (GET + CHUNKED + BAD, 3, "server_closes"),
    (GET, 1, "client_resets"),  # then PARTIAL is sent and the client resets at once
]
WEIGHTS = [85, 6, 6, 3]
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def proc_figures(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


def quiet(pid, seconds=1.0):
    """The figures once the descriptor count stopped moving (lingering closes end)."""
    last = proc_figures(pid)
    deadline = time.monotonic() + 10
    stable = time.monotonic()
    while time.monotonic() - stable < seconds and time.monotonic() < deadline:
        time.sleep(0.1)
        now = proc_figures(pid)
        if now[1] != last[1]:
            stable = time.monotonic()
        last = now
    return last


class Client:
    __slots__ = ("sock", "expect", "seen", "tail", "end", "statuses")

    def __init__(self, addr, sel):
        self.sock = socket.create_connection(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ, self)
        self.expect = 0
        self.seen = 0
        self.tail = b""
        self.end = "keep"
        self.statuses = {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT, os.environ.get("PYTHONPATH", "")]))
    log = open(os.environ["SOAK_LOG"], "w+b") if os.environ.get("SOAK_LOG") else tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the server
    server = subprocess.Popen(
        [sys.executable, "-m", "fastwsgi", "soak:app", "--bind", "127.0.0.1:0"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    m = None
    while m is None and time.monotonic() < deadline and server.poll() is None:
        time.sleep(0.05)
        log.seek(0)
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+).*\(pid (\d+)", log.read())
    if m is None:
        server.kill()
        log.seek(0)
        sys.exit(f"server did not start: {log.read().decode(errors='replace')}")
    addr, pid = ("127.0.0.1", int(m.group(1))), int(m.group(2))

    totals = {"sent": 0, "responses": 0, "resets": 0, "statuses": {}}

    def drive(n):
        """Run rounds on --conns connections until n responses came back; close them all."""
        sel = selectors.DefaultSelector()
        clients = []
        got = 0

        def new_round(c):
            data, expect, end = rng.choices(ROUNDS, WEIGHTS)[0]
            c.expect, c.seen, c.end = expect, 0, end
            c.sock.sendall(data)  # small: fits the socket buffer
            totals["sent"] += expect + (1 if end == "client_resets" else 0)

        def reopen(c):
            sel.unregister(c.sock)
            c.sock.close()
            clients.remove(c)
            fresh = Client(addr, sel)
            clients.append(fresh)
            new_round(fresh)

        try:
            for _ in range(args.conns):
                c = Client(addr, sel)
                clients.append(c)
                new_round(c)
            while got < n:
                for key, _ in sel.select(timeout=5):
                    c = key.data
                    try:
                        data = c.sock.recv(262144)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    if data:
                        buf = c.tail + data
                        found = 0
                        for m in STATUS.finditer(buf):
                            if m.end() > len(c.tail):  # not counted with the previous recv
                                code = m.group(1)
                                totals["statuses"][code] = totals["statuses"].get(code, 0) + 1
                                found += 1
                        c.seen += found
                        got += found
                        c.tail = buf[-15:]
                        if c.seen >= c.expect:
                            if c.end == "keep":
                                new_round(c)
                            elif c.end == "client_resets":
                                # half a request, then an RST: were the client to wait, the
                                # app (on the loop thread) would block reading the body
                                c.sock.sendall(PARTIAL)
                                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                                totals["resets"] += 1
                                reopen(c)
                    else:  # the server closed
                        if c.end == "keep" or c.seen < c.expect:
                            raise SystemExit(f"server closed a connection early ({c.seen}/{c.expect}, {c.end}, after {got} responses)")
                        reopen(c)
        finally:
            for c in clients:
                c.sock.close()
        totals["responses"] += got

    try:
        idle_fds = quiet(pid)[1]
        drive(args.warmup)
        start = quiet(pid)
        t0 = time.monotonic()
        drive(args.requests)
        elapsed = time.monotonic() - t0
        end = quiet(pid)
    finally:
        server.terminate()
        server.wait(30)
        log.seek(0)
        out = log.read().decode(errors="replace")
    result = {
        "requests_sent": totals["sent"],
        "responses": totals["responses"],
        "client_resets": totals["resets"],
        "statuses": {k.decode(): v for k, v in sorted(totals["statuses"].items())},
        "seconds_measured_run": round(elapsed, 1),
        "req_per_s": round(args.requests / elapsed),
        "fds_before_any_client": idle_fds,
        "rss_mib_start": round(start[0], 2),
        "fds_start": start[1],
        "rss_mib_end": round(end[0], 2),
        "fds_end": end[1],
        "rss_growth_mib": round(end[0] - start[0], 2),
        "fd_growth": end[1] - start[1],
        "server_tracebacks_logged": out.count("Traceback"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    res = main()
    ok = res["rss_growth_mib"] < 5 and res["fd_growth"] == 0 and res["server_tracebacks_logged"] == 0
    sys.exit(0 if ok else 1)
