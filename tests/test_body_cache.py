"""The body cache (fastwsgi/_conn_cache.pxi): a large bytes body the app returns
again is sent from a sealed memfd with sendfile(2).

In-process over socketpairs (the connection inline and on app threads), and a real
server over TCP.  What must hold: every response carries exactly its own bytes, in
order, whatever was evicted or cleared while it was in flight; bodies seen once are
never copied into memfds; the cache keeps within its size.
"""

import gc
import os
import socket
import time

import pytest

from test_connection import MODES, harness, read_response, wait_until  # noqa: F401

MiB = 1024 * 1024
BIG = b"".join(b"%08d" % i for i in range(MiB // 8))
OTHER = b"".join(b"%08x" % (i * 7) for i in range(300 * 1024 // 8))
SMALL = b"s" * 100_000                    # under the cache's 128 KiB minimum


def get(path="/", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def constant(body, length=None, status="200 OK"):
    """An app returning the same bytes object every time."""
    def app(environ, start_response):
        start_response(status, [("Content-Length", str(len(body) if length is None else length))])
        return [body]
    return app


def by_path(bodies):
    """An app answering bodies[PATH_INFO]: the same objects every time."""
    def app(environ, start_response):
        body = bodies[environ["PATH_INFO"]]
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    return app


def connect(h):
    """A client of the harness and a reader of its responses."""
    c = h.client()
    return c, c.makefile("rb")


def memfds(pid=None):
    """The memfds of the body cache open in a process (this one by default)."""
    base = f"/proc/{pid or 'self'}/fd"
    found = []
    for fd in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, fd))
        except OSError:
            continue
        if "memfd:fastwsgi-body" in target:
            found.append(fd)
    return found


@pytest.mark.parametrize("mode", MODES)
def test_same_object_is_filled_once_then_sent_from_the_cache(harness, mode):
    h = harness(constant(BIG), mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for i in range(4):
        c.sendall(get())
        status, headers, body = read_response(f)
        assert status == 200 and body == BIG, i
    stats = h.state.body_cache.stats
    # seen once (a candidate), filled at the second, then hits
    assert stats["fills"] == 1 and stats["hits"] == 2, stats
    assert stats["entries"] == 1 and stats["bytes"] == len(BIG)
    assert len(memfds()) >= 1
    assert not h.records.tracebacks()


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_cached_responses_stay_in_order(harness, mode):
    bodies = {"/a": BIG, "/b": OTHER, "/c": SMALL}
    h = harness(by_path(bodies), mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    order = ["/a", "/b", "/c", "/a", "/b", "/a", "/c", "/b"]
    for _ in range(2):
        c.sendall(b"".join(get(p) for p in order))
        for p in order:
            status, _, body = read_response(f)
            assert status == 200 and body == bodies[p], p
    assert h.state.body_cache.stats["hits"] >= 4


@pytest.mark.parametrize("mode", MODES)
def test_cached_chunks_between_copied_ones_keep_their_order(harness, mode):
    # a list of several chunks, the big ones cached: the small ones framed after a
    # pending sendfile must not overtake it
    parts = [b"head-", BIG, b"-middle-", OTHER, b"-tail"]
    whole = b"".join(parts)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(whole)))])
        return list(parts)

    h = harness(app, mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for i in range(3):
        c.sendall(get())
        status, _, body = read_response(f)
        assert body == whole, i
    assert h.state.body_cache.stats["hits"] >= 2


@pytest.mark.parametrize("mode", MODES)
def test_write_callable_with_cached_bodies(harness, mode):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", str(2 * len(BIG) + 3))])
        write(BIG)
        write(b"+++")
        write(BIG)
        return []

    h = harness(app, mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for i in range(3):
        c.sendall(get())
        status, _, body = read_response(f)
        assert body == BIG + b"+++" + BIG, i
    assert h.state.body_cache.stats["hits"] >= 2


@pytest.mark.parametrize("mode", MODES)
def test_a_body_longer_than_its_content_length_is_cut_from_the_cache(harness, mode):
    h = harness(constant(BIG, length=200_000), mode, body_cache_size=64 * MiB).start()
    for i in range(3):
        c = h.client()
        c.sendall(get())
        status, headers, body = read_response(c)
        assert status == 200 and body == BIG[:200_000], i
        c.close()
    assert h.state.body_cache.stats["fills"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_head_sends_no_cached_body(harness, mode):
    h = harness(constant(BIG), mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for _ in range(2):
        c.sendall(get())
        assert read_response(f)[2] == BIG
    c.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get())
    line = f.readline()
    assert line.startswith(b"HTTP/1.1 200"), line
    while f.readline() != b"\r\n":
        pass
    # the next response follows the HEAD's head directly: no body bytes between
    status, _, body = read_response(f)
    assert status == 200 and body == BIG


@pytest.mark.parametrize("mode", MODES)
def test_fresh_objects_are_never_copied_into_memfds(harness, mode):
    def app(environ, start_response):
        body = BIG[:-1] + b"%d" % (len(environ["PATH_INFO"]) % 10)   # new every time
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    h = harness(app, mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for i in range(12):
        c.sendall(get("/" + "x" * i))
        assert read_response(f)[2] == BIG[:-1] + b"%d" % ((i + 1) % 10)
    stats = h.state.body_cache.stats
    assert stats["fills"] == 0 and stats["hits"] == 0, stats
    # the bodies it remembers to recognise a second time: a few
    assert stats["candidates"] <= 4, stats


def test_candidates_pin_at_most_an_eighth_of_the_size(harness):
    def app(environ, start_response):
        body = BIG[:-1] + b"!"                                        # new every time
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    h = harness(app, body_cache_size=4 * MiB).start()      # an eighth: 512 KiB < 1 MiB
    c, f = connect(h)
    for _ in range(3):
        c.sendall(get())
        assert read_response(f)[2] == BIG[:-1] + b"!"
    assert h.state.body_cache.stats["candidates"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_eviction_keeps_the_cache_within_its_size(harness, mode):
    bodies = {f"/{k}": bytes([65 + k]) * (200 * 1024 - k) for k in range(12)}  # 2.4 MB
    h = harness(by_path(bodies), mode, body_cache_size=2 * MiB).start()
    c, f = connect(h)
    for rnd in range(3):
        for k in range(12):
            for _ in range(2):          # twice in a row: a candidate, then filled
                c.sendall(get(f"/{k}"))
                assert read_response(f)[2] == bodies[f"/{k}"], (rnd, k)
            stats = h.state.body_cache.stats
            assert stats["bytes"] <= 2 * MiB, stats
    stats = h.state.body_cache.stats
    assert stats["fills"] > 12 and stats["entries"] < 12, stats


def test_at_most_64_bodies_are_cached(harness):
    # each cached body holds a file descriptor: their number is bounded too
    bodies = {f"/{k}": b"%03d" % k * 50_000 for k in range(80)}         # 150 KB each
    gc.collect()                    # other tests' caches: closed
    h = harness(by_path(bodies), body_cache_size=1 << 30).start()
    c, f = connect(h)
    for path, body in bodies.items():
        for _ in range(2):
            c.sendall(get(path))
            assert read_response(f)[2] == body, path
    stats = h.state.body_cache.stats
    assert stats["fills"] == 80 and stats["entries"] == 64, stats
    assert len(memfds()) == 64


@pytest.mark.parametrize("mode", MODES)
def test_clearing_the_cache_under_a_stalled_send_keeps_its_bytes(harness, mode):
    """The client does not read: the response waits half sent from a memfd.  The
    cache forgets the body meanwhile; the memfd stays open for that send (the
    connection holds it) and the client still gets exactly the body."""
    big = b"".join(b"%07d\n" % i for i in range(4 * MiB // 8))
    gc.collect()
    before = set(memfds())
    h = harness(constant(big), mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    c.sendall(get())
    assert read_response(f)[2] == big                   # a candidate now
    c.sendall(get())
    assert read_response(f)[2] == big                   # filled, sent from the memfd
    c.sendall(get())                                    # this one stalls (4 MiB)
    time.sleep(0.3)
    h.state.body_cache.clear()
    gc.collect()
    assert h.state.body_cache.stats["entries"] == 0
    status, _, body = read_response(f)
    assert status == 200 and body == big
    # once sent, nothing holds the memfd
    c.sendall(get())
    assert read_response(f)[2] == big
    assert wait_until(lambda: set(memfds()) <= before, 5), memfds()


@pytest.mark.parametrize("mode", MODES)
def test_a_client_gone_mid_send_leaves_the_server_serving(harness, mode):
    h = harness(constant(b"".join(b"%07d\n" % i for i in range(4 * MiB // 8))), mode,
                body_cache_size=64 * MiB).start()
    for _ in range(3):
        c = h.client()
        c.sendall(get())
        c.recv(1000)
        c.close()                                       # mid-body
    for _ in range(2):
        c = h.client()
        c.sendall(get())
        status, _, body = read_response(c)
        assert status == 200 and len(body) == 4 * MiB
        c.close()
    assert h.state.body_cache.stats["fills"] == 1
    assert not h.records.tracebacks()


@pytest.mark.parametrize("mode", MODES)
def test_chunked_and_small_bodies_take_the_copy_path(harness, mode):
    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/small":
            return [SMALL]
        return iter([BIG, BIG])               # no length: chunked

    h = harness(app, mode, body_cache_size=64 * MiB).start()
    c, f = connect(h)
    for _ in range(3):
        c.sendall(get("/chunked"))
        status, headers, body = read_response(f)
        assert headers.get("transfer-encoding") == "chunked" and body == BIG + BIG
        c.sendall(get("/small"))
        assert read_response(f)[2] == SMALL
    stats = h.state.body_cache.stats
    assert stats["fills"] == 0 and stats["candidates"] == 0, stats


def test_size_zero_turns_it_off(harness):
    gc.collect()
    before = set(memfds())
    h = harness(constant(BIG), body_cache_size=0).start()
    assert h.state.body_cache is None
    c, f = connect(h)
    for _ in range(3):
        c.sendall(get())
        assert read_response(f)[2] == BIG
    assert set(memfds()) <= before


def test_a_body_over_the_cache_size_is_never_held(harness):
    h = harness(constant(BIG), body_cache_size=MiB // 2).start()
    c, f = connect(h)
    for _ in range(3):
        c.sendall(get())
        assert read_response(f)[2] == BIG
    stats = h.state.body_cache.stats
    assert stats == {"entries": 0, "bytes": 0, "candidates": 0, "hits": 0, "fills": 0}


# -- over TCP: TCP_NOTSENT_LOWAT before a large sendfile ---------------------------

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


def tcp_client(h):
    """A TCP connection the loop serves; and a dup of the server's end, to read its
    socket options."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        client = socket.create_connection(lsock.getsockname(), timeout=10)
        server_end, _ = lsock.accept()
    spy = socket.socket(fileno=os.dup(server_end.fileno()))
    h.loop.adopt(server_end)
    return client, spy


@pytest.mark.parametrize("mode", MODES)
def test_large_sendfile_sets_notsent_lowat_once(harness, mode):
    bodies = {"/big": BIG, "/small": SMALL}
    h = harness(by_path(bodies), mode, body_cache_size=64 * MiB).start()
    client, spy = tcp_client(h)
    with client, spy:
        default = spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT)
        f = client.makefile("rb")
        for _ in range(2):            # copied: a candidate; then filled and sendfile'd
            client.sendall(get("/small"))
            assert read_response(f)[2] == SMALL
            client.sendall(get("/big"))
            assert read_response(f)[2] == BIG
            if h.state.body_cache.stats["fills"] == 0:
                assert spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT) == default
        assert h.state.body_cache.stats["fills"] == 1
        assert spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT) == 16384
        client.sendall(get("/small") + get("/big") + get("/small"))
        assert [read_response(f)[2] for _ in range(3)] == [SMALL, BIG, SMALL]


@pytest.mark.parametrize("mode", MODES)
def test_large_file_wrapper_sendfile_sets_notsent_lowat(harness, mode, tmp_path):
    (tmp_path / "small").write_bytes(b"s" * 10_000)
    (tmp_path / "large").write_bytes(OTHER)

    def app(environ, start_response):
        f = open(tmp_path / environ["PATH_INFO"][1:], "rb")
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    h = harness(app, mode).start()
    client, spy = tcp_client(h)
    with client, spy:
        default = spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT)
        f = client.makefile("rb")
        client.sendall(get("/small"))
        assert read_response(f)[2] == b"s" * 10_000
        assert spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT) == default
        client.sendall(get("/large"))
        assert read_response(f)[2] == OTHER
        assert spy.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT) == 16384


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_download_over_tcp_gets_its_bytes_while_others_are_served(harness, mode):
    big = b"".join(b"%07d\n" % i for i in range(8 * MiB // 8))
    bodies = {"/big": big, "/hello": b"hello"}
    h = harness(by_path(bodies), mode, body_cache_size=64 * MiB).start()
    slow, spy = tcp_client(h)
    spy.close()
    with slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        for rnd in range(2):
            slow.sendall(get("/big"))
            got = b""
            while len(got) < 200_000:
                got += slow.recv(16384)
                time.sleep(0.002)
            # meanwhile another client is served
            other, spy2 = tcp_client(h)
            spy2.close()
            with other:
                other.sendall(get("/hello"))
                assert read_response(other)[2] == b"hello"
            got += slow.recv(1 << 20)
            while True:
                head, sep, rest = got.partition(b"\r\n\r\n")
                if sep and len(rest) >= len(big):
                    break
                got += slow.recv(1 << 20)
            assert head.startswith(b"HTTP/1.1 200") and rest == big, rnd
    assert h.state.body_cache.stats["fills"] == 1


# -- a real server over TCP ------------------------------------------------------

def fetch(server, path, count, keep_alive=True):
    """count responses on one connection; their bodies."""
    out = []
    s = server.connect()
    f = s.makefile("rb")
    try:
        for _ in range(count):
            s.sendall(get(path))
            out.append(read_response(f)[2])
    finally:
        s.close()
    return out


@pytest.mark.parametrize("threads", ["1", "4"])
def test_server_sends_constant_bodies_from_memfds(serve, threads):
    server = serve("cached_body:app", "--no-master", "--threads", threads)
    for body in fetch(server, "/big", 5):
        assert body == BIG          # the same expression as the app's
    for body in fetch(server, "/other", 3):
        assert body == OTHER
    for body in fetch(server, "/fresh", 3):
        assert body[-1:] == b"!" and len(body) == MiB
    # the worker holds one memfd per constant body, none for the fresh ones
    assert len(memfds(server.pid)) == 2, memfds(server.pid)


def test_server_option_off(serve):
    server = serve("cached_body:app", "--no-master", "--body-cache-size", "0")
    for body in fetch(server, "/big", 3):
        assert len(body) == MiB
    assert memfds(server.pid) == []
