"""The compiled connection driven in-process, over socket.socketpair().

Each test builds a ServerState and a Loop in this process, hands the loop one end of
a socketpair (Loop.adopt) and talks HTTP on the other end; the loop runs in a thread,
the app inline on it or (threads=N) on app threads as with --threads.  What the
subprocess tests cannot see is checked here: which thread closed an iterable, the
spool file of a body, a stale write(), app_timed_out(), an asynchronous
RequestTimeout, and every traceback the connection logged.
"""

import ctypes
import hashlib
import logging
import os
import socket
import struct
import threading
import time

import pytest

from fastwsgi._connection import ServerState
from fastwsgi._loop import Loop
from fastwsgi._parser import Limits
from fastwsgi.config import Config
from fastwsgi.errors import ClientDisconnected, RequestTimeout, ResponseError
from fastwsgi.listeners import base_environ
from fastwsgi.server import AppThreads

MODES = ["inline", "threads"]


class Records(logging.Handler):
    """Every record the connection logged."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self):
        return [r for r in self.records if r.exc_info]


class Harness:
    """A Loop serving socketpairs in a thread; `mode`: the app inline or on threads."""

    def __init__(self, app, mode="inline", **state_options):
        self.records = Records()
        self.logger = logging.getLogger(f"test_connection.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.records)
        limits = Limits(max_body=state_options.pop("max_body", 1 << 30))
        self.state = ServerState(app, base_environ(Config(), None,
                                                   multithread=mode == "threads"),
                                 limits, logger=self.logger, **state_options)
        self.loop = Loop(self.state)
        self.threads = None
        self.owned = []          # connections handed to app threads, in order
        if mode == "threads":
            self.loop.threads = 4
            self.threads = AppThreads(self.loop, 4)

            def dispatch(conn):
                self.owned.append(conn)
                self.threads.dispatch(conn)

            self.state.dispatch = dispatch
        self.thread = None

    def client(self):
        """A new connection: the client's end of a socketpair the loop serves."""
        ours, theirs = socket.socketpair()
        ours.settimeout(10)
        self.loop.adopt(theirs)
        return ours

    def start(self):
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.loop.stop(graceful=False)
        if self.thread is not None:
            self.thread.join(10)
        if self.threads is not None:
            self.threads.stop(2)
        self.loop.close()


@pytest.fixture
def harness():
    made = []

    def make(app, mode="inline", **options):
        h = Harness(app, mode, **options)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


def read_response(source):
    """(status, headers dict, body) of one response, from a socket (one response
    arrived alone) or from a file made with sock.makefile("rb") (pipelined ones)."""
    f = source.makefile("rb") if isinstance(source, socket.socket) else source
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read()
    return status, headers, body


def recv_all(sock):
    data = b""
    while True:
        try:
            got = sock.recv(65536)
        except ConnectionResetError:
            break
        if not got:
            break
        data += got
    return data


def wait_until(predicate, timeout=5.0):
    """Poll predicate() until it is true (or timeout); returns its last value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


class Trickle:
    """`with Trickle(sock, data, every):` sends data every `every` seconds meanwhile."""

    def __init__(self, sock, data, every):
        self.sock, self.data, self.every = sock, data, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(self.every):
            try:
                self.sock.sendall(self.data)
            except OSError:
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(3)


def post(path, body=b"", headers=()):
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\n".encode()
    for name, value in headers:
        head += f"{name}: {value}\r\n".encode()
    return head + b"\r\n" + body


def chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def echo_app(calls):
    """Answers the body's sha256, its CONTENT_LENGTH and wsgi.input_terminated."""
    def app(environ, start_response):
        calls.append(dict(environ))
        body = environ["wsgi.input"].read()
        out = f"{hashlib.sha256(body).hexdigest()} {environ.get('CONTENT_LENGTH')} " \
              f"{environ['wsgi.input_terminated']} {len(body)}".encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    return app


def expected(body, length=None):
    return (f"{hashlib.sha256(body).hexdigest()} {length if length is not None else len(body)} "
            f"True {len(body)}").encode()


# --- whole bodies before the app ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("framing", ["length", "chunked", "expect"])
def test_body_is_whole_before_the_app_runs(harness, mode, framing):
    """A body sent in pieces: the app is called once, after the last piece, and
    reads it all; a chunked one comes with CONTENT_LENGTH = its decoded length."""
    calls = []
    h = harness(echo_app(calls), mode).start()
    c = h.client()
    body = os.urandom(3000)
    if framing == "chunked":
        head = post("/", headers=[("Transfer-Encoding", "chunked")])
        wire = chunked(body)
    else:
        extra = [("Expect", "100-continue")] if framing == "expect" else []
        head = post("/", headers=[("Content-Length", len(body))] + extra)
        wire = body
    c.sendall(head)
    if framing == "expect":
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    for i in range(0, len(wire), 1000):
        c.sendall(wire[i:i + 1000])
        time.sleep(0.05)
        if i + 1000 < len(wire):
            assert calls == [], "the app was called before the body was whole"
    status, _, out = read_response(c)
    assert (status, out) == (200, expected(body))
    assert len(calls) == 1
    assert h.records.tracebacks() == []


@pytest.mark.parametrize("mode", MODES)
def test_body_past_the_threshold_is_spooled_to_an_unlinked_file(harness, mode, tmp_path):
    """Past body_buffer_size the body goes to a temporary file in body_temp_dir that
    has no name (deleted) and is closed when the request ends."""
    seen = []

    def spooled():
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(tmp_path)):
                found.append(target)
        return found

    def app(environ, start_response):
        seen.append(spooled())
        body = b"".join(iter(lambda: environ["wsgi.input"].read(50000), b""))
        line = environ["wsgi.input"].readline()
        out = hashlib.sha256(body).hexdigest().encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out, line]

    h = harness(app, mode, body_buffer_size=65536, body_temp_dir=str(tmp_path)).start()
    body = os.urandom(1 << 20)
    for framing in ("length", "chunked"):
        c = h.client()
        if framing == "length":
            c.sendall(post("/", body, [("Content-Length", len(body))]))
        else:
            c.sendall(post("/", chunked(body, 10000), [("Transfer-Encoding", "chunked")]))
        status, _, out = read_response(c)
        assert (status, out) == (200, hashlib.sha256(body).hexdigest().encode())
        c.close()
    assert len(seen) == 2
    for files in seen:
        assert len(files) == 1 and files[0].endswith("(deleted)"), files
    assert os.listdir(tmp_path) == []
    wait_until(lambda: not (spooled()))
    assert spooled() == [], "the spool file outlived its request"
    assert h.records.tracebacks() == []


def test_small_body_stays_in_memory(harness, tmp_path):
    calls = []
    h = harness(echo_app(calls), body_buffer_size=65536, body_temp_dir=str(tmp_path)).start()
    c = h.client()
    body = os.urandom(60000)
    c.sendall(post("/", body[:30000], [("Content-Length", len(body))]))
    time.sleep(0.05)
    c.sendall(body[30000:])
    assert read_response(c)[2] == expected(body)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire, status", [
    (post("/", b"zz\r\nab\r\n0\r\n\r\n", [("Transfer-Encoding", "chunked")]), 400),
    (post("/", b"5\r\nabcde\r\n5\r\nabcde\r\n0\r\n\r\n", [("Transfer-Encoding", "chunked")]), 413),
    (post("/", b"x" * 20, [("Content-Length", "20")]), 413),
], ids=["bad-chunk", "chunked-over-limit", "length-over-limit"])
def test_bad_or_oversized_body_is_answered_before_the_app(harness, mode, wire, status):
    calls = []
    h = harness(echo_app(calls), mode, max_body=8).start()
    c = h.client()
    c.sendall(wire)
    data = recv_all(c)
    assert data.startswith(b"HTTP/1.1 %d " % status), data
    assert calls == []
    assert h.records.tracebacks() == []


SLOW = {
    "length": (post("/", b"abc", [("Content-Length", "100")]), b"d"),
    "large-length": (post("/", b"a" * 200000, [("Content-Length", "10000000")]), b"d"),
    "chunked": (post("/", b"64\r\nabc", [("Transfer-Encoding", "chunked")]), b"d"),
    "expect": (post("/", b"", [("Content-Length", "100"), ("Expect", "100-continue")]), b"d"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(SLOW))
def test_trickled_body_gets_408_and_holds_no_one(harness, mode, kind):
    """A body that trickles in gets 408 at body_timeout without the app ever seeing
    it, and meanwhile another client is served by the same loop (one thread)."""
    calls = []
    h = harness(echo_app(calls), mode, body_timeout=1.0, body_min_rate=0,
                body_buffer_size=65536).start()
    slow = h.client()
    head, drip = SLOW[kind]
    slow.sendall(head)
    got = b""
    if kind == "expect":
        got = slow.recv(100)
        assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
    with Trickle(slow, drip, 0.2):
        other = h.client()
        other.sendall(post("/", b"hi", [("Content-Length", "2")]))
        assert read_response(other)[2] == expected(b"hi")
        # the other client was answered while the slow one still has no answer
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(1)
        slow.setblocking(True)
        data = recv_all(slow)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert [c["PATH_INFO"] for c in calls] == ["/"]     # only the other client's
    assert h.records.tracebacks() == []


def test_body_min_rate_extends_the_deadline(harness):
    """A body that keeps up body_min_rate is not cut off at body_timeout."""
    calls = []
    h = harness(echo_app(calls), body_timeout=0.5, body_min_rate=1000).start()
    c = h.client()
    body = b"x" * 2000
    c.sendall(post("/", b"", [("Content-Length", len(body))]))
    for i in range(0, len(body), 500):
        c.sendall(body[i:i + 500])
        time.sleep(0.25)       # 2000 B/s: the deadline moves ahead 0.5 s per 500 B
    assert read_response(c)[2] == expected(body)


def test_stream_body_reads_as_the_app_asks(harness):
    """stream_body: the app is called before a large body arrives (as before)."""
    started = threading.Event()

    def app(environ, start_response):
        started.set()
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    h = harness(app, stream_body=True).start()
    c = h.client()
    c.sendall(post("/", b"a" * 1000, [("Content-Length", "200000")]))
    assert started.wait(5), "the app was not called before the body was whole"
    c.sendall(b"a" * 199000)
    assert read_response(c)[2] == b"a" * 200000


# --- request-scoped start_response, write, wsgi.input ----------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stale_write_and_start_response_raise_and_touch_nothing(harness, mode):
    """An app that keeps request 1's write(), start_response and wsgi.input and uses
    them during request 2 on the same connection gets an error; request 2's
    response is exactly what request 2 said."""
    kept = {}
    errors = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/first":
            kept["write"] = start_response("200 OK", [("Content-Length", "5")])
            kept["start_response"] = start_response
            kept["input"] = environ["wsgi.input"]
            return [b"first"]
        for name, use in (("write", lambda: kept["write"](b"INJECTED")),
                          ("start_response", lambda: kept["start_response"](
                              "500 Stale", [("Content-Length", "0")])),
                          ("input", lambda: kept["input"].read())):
            try:
                use()
            except ResponseError as exc:
                errors.append((name, str(exc)))
        start_response("200 OK", [("Content-Length", "6")])
        return [b"second"]

    h = harness(app, mode).start()
    c = h.client()
    c.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(c)[::2] == (200, b"first")
    c.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(c)[::2] == (200, b"second")
    assert [name for name, _ in errors] == ["write", "start_response", "input"]
    # and the connection is still in step: a third request is answered
    c.sendall(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(c)[::2] == (200, b"second")


@pytest.mark.parametrize("mode", MODES)
def test_start_response_is_reused_while_nobody_keeps_it(harness, mode):
    """The common case keeps its one Responder: the same start_response object
    serves request after request (no allocation per request)."""
    ids = []

    def app(environ, start_response):
        ids.append(id(start_response.__self__))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    h = harness(app, mode).start()
    c = h.client()
    for _ in range(3):
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(c)[2] == b"ok"
    assert len(set(ids)) == 1


# --- one owner per connection ---------------------------------------------------------------


def test_reset_while_an_app_thread_owns_the_connection(harness):
    """The client resets while the app thread is inside the iterable's __next__: the
    loop does not touch the connection; the iterable's close() runs once, on the
    app thread, after __next__ returned; nothing is logged with a traceback."""
    inside = threading.Event()
    release = threading.Event()
    events = []

    class Body:
        def __iter__(self):
            return self

        def __next__(self):
            events.append(("next-start", threading.get_ident()))
            if len([e for e in events if e[0] == "next-start"]) > 1:
                events.append(("next-end", threading.get_ident()))
                raise StopIteration
            inside.set()
            release.wait(5)
            events.append(("next-end", threading.get_ident()))
            return b"x" * 100000

        def close(self):
            events.append(("close", threading.get_ident()))

    app_thread = []

    def app(environ, start_response):
        app_thread.append(threading.get_ident())
        start_response("200 OK", [])
        return Body()

    h = harness(app, "threads").start()
    for attempt in range(3):
        inside.clear()
        release.clear()
        events.clear()
        c = h.client()
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert inside.wait(5)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()                   # RST
        conn = h.owned[-1]
        wait_until(lambda: conn.hangup)
        assert conn.hangup, "the loop did not record the hang-up"
        assert [e[0] for e in events] == ["next-start"], events   # the loop left it alone
        release.set()
        wait_until(lambda: any(e[0] == "close" for e in events))
        time.sleep(0.1)
        kinds = [e[0] for e in events]
        assert kinds.count("close") == 1, events
        assert kinds.index("close") > kinds.index("next-end"), events
        close_thread = [e[1] for e in events if e[0] == "close"][0]
        assert close_thread == app_thread[-1]
    assert h.records.tracebacks() == []
    assert h.loop.connections == 0


def test_app_timed_out_answers_504_and_abandons_the_thread(harness):
    """app_timed_out() on a connection an app thread owns: 504 to the client, the
    socket shut; the thread's later response is written nowhere."""
    release = threading.Event()
    wrote = []

    def app(environ, start_response):
        release.wait(5)
        write = start_response("200 OK", [("Content-Length", "4")])
        try:
            write(b"late")
        except ClientDisconnected:
            wrote.append("refused")
        return []

    h = harness(app, "threads").start()
    c = h.client()
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: h.owned)
    conn = h.owned[0]
    assert conn.app_timed_out() == 504
    assert conn.app_timed_out() == 0          # once
    data = recv_all(c)
    assert data.startswith(b"HTTP/1.1 504 ") and data.endswith(b"504 Gateway Timeout\n"), data
    release.set()
    wait_until(lambda: not (h.loop.connections))
    assert wrote == ["refused"]
    assert h.loop.connections == 0
    assert conn.app_timed_out() == -1         # the loop owns (and closed) it now


@pytest.mark.parametrize("sent", [False, True], ids=["framed-not-sent", "sent"])
def test_app_timed_out_once_the_head_is_framed(harness, sent):
    """A head framed but not sent yet is replaced by the 504; once bytes of the
    response reached the client, app_timed_out() returns 0 and the response is cut."""
    release = threading.Event()

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"p" * (100000 if sent else 10))     # a large write is sent at once
        release.wait(5)
        return [b"rest"]

    h = harness(app, "threads").start()
    c = h.client()
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: h.owned)
    if sent:
        assert c.recv(12) == b"HTTP/1.1 200"
    else:
        time.sleep(0.2)
    assert h.owned[0].app_timed_out() == (0 if sent else 504)
    release.set()
    data = recv_all(c)
    if sent:
        assert b"rest" not in data and not data.endswith(b"0\r\n\r\n")
    else:
        assert data.startswith(b"HTTP/1.1 504 ") and b"pppp" not in data, data


def _async_raise(thread_id, exc):
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))
    assert n == 1


@pytest.mark.parametrize("framed", [False, True], ids=["before-head", "after-head"])
def test_request_timeout_inline_answers_504_or_aborts_and_the_loop_goes_on(harness, framed):
    """RequestTimeout raised asynchronously in the loop's thread (--threads 1) while
    the app runs: 504 if nothing is framed, else the response is cut off; the loop
    serves the next client."""
    running = threading.Event()
    app_threads = []

    def slow():
        running.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.005)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/quick":
            start_response("200 OK", [("Content-Length", "5")])
            return [b"quick"]
        app_threads.append(threading.get_ident())
        if not framed:
            slow()
        start_response("200 OK", [])

        def body():
            yield b"first"
            slow()
            yield b"never"
        return body()

    h = harness(app).start()
    c = h.client()
    c.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert running.wait(5)
    _async_raise(app_threads[0], RequestTimeout)
    data = recv_all(c)
    if framed:
        assert data.startswith(b"HTTP/1.1 200 ") and b"never" not in data, data
        assert not data.endswith(b"0\r\n\r\n"), data     # cut off, not complete
    else:
        assert data.startswith(b"HTTP/1.1 504 "), data
    other = h.client()
    other.sendall(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(other)[2] == b"quick"
    assert h.thread.is_alive()


@pytest.mark.parametrize("mode", MODES)
def test_watchdog_counts_app_time_only(harness, mode):
    """The watchdog slot (the --timeout clock) holds the app's start while the app
    runs, is cleared while its thread waits for a client that does not read, and
    comes back shifted by the time waited."""
    started, wrote, release = threading.Event(), threading.Event(), threading.Event()
    t_start = []

    def app(environ, start_response):
        t_start.append(time.monotonic())
        started.set()
        write = start_response("200 OK", [("Content-Length", str(8 << 20))])
        write(b"x" * (8 << 20))            # blocks: the client does not read yet
        wrote.set()
        release.wait(5)
        return []

    h = harness(app, mode)
    slots = bytearray(8 * 5)
    h.state.set_watchdog(slots, 5)
    h.start()
    values = lambda: struct.unpack("5d", bytes(slots))   # noqa: E731
    c = h.client()
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert started.wait(5)
    time.sleep(0.5)
    assert not wrote.is_set()
    assert values() == (0.0,) * 5, "the wait for the client counted as app time"
    reader = threading.Thread(target=recv_all, args=(c,), daemon=True)
    reader.start()
    assert wrote.wait(10)
    running = [v for v in values() if v]
    assert len(running) == 1
    assert running[0] >= t_start[0] + 0.5      # shifted by the time waited
    release.set()
    assert wait_until(lambda: values() == (0.0,) * 5)


def test_pipelined_requests_on_app_threads_are_counted(harness):
    """Each hand-off to an app thread is counted once and each hand-back once, also
    when the loop hands a pipelined request straight back to a thread: the count of
    busy app threads (which pauses accepting) ends at zero."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    h = harness(app, "threads").start()
    c = h.client()
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
    responses = c.makefile("rb")
    for _ in range(3):
        assert read_response(responses)[2] == b"ok"
    assert wait_until(lambda: h.loop.app_connections == 0)
    assert h.loop.app_connections == 0


def test_spool_failure_is_a_500_before_the_app(harness, tmp_path):
    """A body that cannot be spooled (here: its directory is gone) gets a 500 and a
    one-line error log, the app never runs, and the loop goes on serving."""
    calls = []
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    h = harness(echo_app(calls), body_buffer_size=1024, body_temp_dir=str(spool_dir)).start()
    spool_dir.rmdir()
    c = h.client()
    c.sendall(post("/", b"x" * 5000, [("Content-Length", "5000")]))
    assert recv_all(c).startswith(b"HTTP/1.1 500 ")
    assert calls == []
    assert h.records.tracebacks() == []
    assert [r.levelname for r in h.records.records] == ["ERROR"]
    other = h.client()
    other.sendall(post("/", b"hi", [("Content-Length", "2")]))
    assert read_response(other)[2] == expected(b"hi")
