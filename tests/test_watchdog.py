"""fastwsgi.watchdog with the thread pool (server.AppThreads), in this process: a
real server (make_server) on a real socket, a watchdog checked by hand with a clock
moved forward, so that nothing waits for --timeout to pass.  (The same across
processes, with the master: tests/test_supervise.py.)"""

import socket
import threading
import time

from fastwsgi.errors import RequestTimeout
from fastwsgi.server import make_server
from fastwsgi.watchdog import Watchdog
from fastwsgi.worker import Shared
from process_helpers import wait_until

ENTERED = {}          # path -> threading.Event set once the app runs it
UNWOUND = []          # paths whose app call was left by RequestTimeout


def app(environ, start_response):
    path = environ["PATH_INFO"]
    ENTERED.setdefault(path, threading.Event()).set()
    try:
        if path == "/hang":
            while True:                       # Python code: unwinds at once
                time.sleep(0.01)
        elif path == "/sleep":
            time.sleep(3)                     # one C call: unwinds when it returns
    except RequestTimeout:
        UNWOUND.append(path)
        raise
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


class Served:
    """make_server(threads=2) serving in a thread, its pool watched by a Watchdog."""

    def __init__(self):
        self.server = make_server("127.0.0.1", 0, app, threads=2, max_lost_threads=1)
        self.shared = Shared(2, spare=1)
        self.server.state.set_watchdog(self.shared.watchdog_buffer(), self.shared.slots)
        self.recycled = []
        self.dog = Watchdog(self.shared, timeout=1.0, grace=1.0, pool=self.server.threads,
                            max_lost=1, on_lost=lambda *why: self.recycled.append(why))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def send(self, path):
        s = socket.create_connection(self.server.server_address[:2], timeout=10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        ENTERED.setdefault(path, threading.Event())
        return s

    def get(self, path):
        with self.send(path) as s:
            return s.recv(4096)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.shared.close()


def read_all(sock):
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_stuck_request_is_answered_504_and_its_thread_unwinds():
    served = Served()
    try:
        s = served.send("/hang")
        assert ENTERED["/hang"].wait(5)
        served.dog.check(time.monotonic() + 0.5)          # not yet: nothing happens
        served.dog.check(time.monotonic() + 2.0)          # past --timeout
        assert read_all(s).startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        s.close()
        wait_until(lambda: "/hang" in UNWOUND, 5, "the thread to unwind")
        # both threads serve again; nothing was lost
        for _ in range(4):
            assert served.get("/").startswith(b"HTTP/1.1 200 OK")
        served.dog.check(time.monotonic() + 10)
        assert served.server.threads.lost_count == 0 and served.recycled == []
    finally:
        served.close()


def test_a_thread_stuck_in_c_is_replaced_and_ends_when_it_unwinds():
    served = Served()
    pool = served.server.threads
    try:
        stuck = served.send("/sleep")
        assert ENTERED["/sleep"].wait(5)
        t0 = time.monotonic()
        served.dog.check(t0 + 1.5)                        # 504 at once...
        assert read_all(stuck).startswith(b"HTTP/1.1 504")
        served.dog.check(t0 + 3.0)                        # ...still in time.sleep
        # a replacement thread: two serve, the lost one still holds its connection
        assert pool.lost_count == 1 and len(pool.threads) == 3
        assert served.server.loop.threads == 3
        assert served.recycled == []                       # 1 lost: within the limit
        # the replacement and the other thread serve two requests at once
        ENTERED.pop("/hang", None)
        hang = served.send("/hang")
        assert ENTERED["/hang"].wait(5)
        assert served.get("/").startswith(b"HTTP/1.1 200 OK")
        served.dog.check(time.monotonic() + 1.5)
        assert read_all(hang).startswith(b"HTTP/1.1 504")
        # the lost thread unwinds when its C call returns, and ends
        wait_until(lambda: pool.lost_count == 0, 5, "the lost thread to end")
        assert "/sleep" in UNWOUND
        assert served.server.loop.threads == 2 and len(pool.threads) == 2
        assert served.get("/").startswith(b"HTTP/1.1 200 OK")
    finally:
        served.close()


def test_lost_threads_past_the_limit_ask_for_a_recycle():
    served = Served()
    pool = served.server.threads
    try:
        ENTERED.pop("/sleep", None)
        stuck = [served.send("/sleep") for _ in range(2)]
        wait_until(lambda: len(pool.running) == 2, 5, "both threads in the app")
        t0 = time.monotonic()
        served.dog.check(t0 + 1.5)
        served.dog.check(t0 + 3.0)
        assert pool.lost_count == 2
        assert served.recycled == [("lost-threads",
                                    "has 2 lost app threads (--max-lost-threads 1)")]
        # one spare slot: one replacement, which serves
        assert len(pool.threads) == 3
        assert served.get("/").startswith(b"HTTP/1.1 200 OK")
        for s in stuck:
            assert read_all(s).startswith(b"HTTP/1.1 504")
            s.close()
    finally:
        served.close()
