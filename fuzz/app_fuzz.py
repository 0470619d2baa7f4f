"""App-side fuzzing: an application that misbehaves at random, against a real server.

    python fuzz/app_fuzz.py --random 5000 [--seed 1] [--threads 4]
    python fuzz/app_fuzz.py --atheris [--threads 4] [libFuzzer options]   # pip install atheris
    python fuzz/app_fuzz.py --replay FILE...

A case is a byte string.  The driver sends it hex-encoded as the query of a
request to `python -m fastwsgi app_fuzz:app` (this file's `app`, in the server
process), pipelined before `GET /__ping` with Connection: close.  The first byte
picks the request (GET or HEAD, HTTP/1.1 or 1.0); the app reads the rest as a
stream of choices (Plan) and acts them out: start_response() arguments of every
type (str subclasses, enums, bytes where str is due, ints, None, objects that
claim to be str, tuples whose len() lies, non-latin-1, control characters, sizes
up to a megabyte, exc_info real and garbage, calls late or twice), write() with
odd items, and response iterables of every kind (lists, generators that raise or
call start_response, None, ints, str, bytes, huge items, close() that raises or
writes, wsgi.file_wrapper over files and over objects whose read()/fileno() lie).

The only allowed outcomes, judged by h11 over the raw bytes: a well-framed
response whose status is one the app gave (a final 200-599) or 500, then either
the close or the exact answer to /__ping; or a connection closed early (nothing,
or a valid prefix cut off).  Anything else is a finding: bytes h11 cannot parse,
a 1xx or a status the app never gave, bytes after a response that closes, a
wrong answer to /__ping, no answer and no close within the deadline, or a dead
server.  The caller also checks the server log (BAD_LOG) -- and fuzz/asan.sh runs
this under the ASan/UBSan build, where a sanitizer report is a finding too.
Findings are written to $FUZZ_OUT (default fuzz/out) as NNNN.case (the bytes)
and printed; `--replay` runs saved cases again.
"""

import argparse
import enum
import io
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _fastwsgi_home():
    """The directory the server's fastwsgi comes from: the one this process imports
    (an in-place build in the checkout, or the installed package -- never the bare
    source tree of a checkout whose extensions were never built there)."""
    import fastwsgi
    return os.path.dirname(os.path.dirname(os.path.abspath(fastwsgi.__file__)))

MAX_CASE = 1024                  # bytes of one case (2 KiB of hex in the request line)
DEADLINE = 30.0                  # seconds one exchange may take before it is a finding
# lines the server may never log, whatever the app does (an app error is logged
# as "Error handling request ..." with its traceback: that is allowed)
BAD_LOG = re.compile(r"internal error on a connection|Exception ignored|Fatal Python error|"
                     r"SystemError|AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:")


# --- the odd objects an application can hand over ------------------------------------------


class Sub(str):
    pass


class Sneaky(str):
    def __str__(self):
        return "X-Evil: injected"


class BSub(bytes):
    pass


class FakeStr:
    __class__ = str           # isinstance(FakeStr(), str) is True; it is no str


class LyingTuple(tuple):
    def __len__(self):
        return 2


class TupleSub(tuple):
    pass


class ListSub(list):
    pass


class Boom(Exception):
    """What the fuzzed app raises on purpose."""


class Choices:
    """Decisions read from the case bytes; past the end every choice is 0 (the first,
    most ordinary option), so short cases are ordinary responses.  The first byte
    sets the mischief: how often a choice goes wrong (never, rarely ... often), so
    that most cases get past start_response into the body paths."""

    def __init__(self, data):
        self.data, self.pos = data, 0
        self.level = (0, 0, 1, 1, 2, 4, 8, 16)[self.below(8)]

    def below(self, n):
        if n <= 1 or self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        if n > 256 and self.pos < len(self.data):
            b = b << 8 | self.data[self.pos]
            self.pos += 1
        return b % n

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, in_16):
        return self.below(16) >= 16 - in_16      # 0 (no more bytes): no

    def bad(self):
        """Whether this choice misbehaves (at the case's mischief level, in 64ths)."""
        return self.below(64) >= 64 - self.level


PRINTABLE = list("abcdefXYZ-_019 .:;=/,") + ["\t", "\xe9", "\xff", "\x85"]
TOKEN = list("abcdefghXYZ-_0123456789!#$%&'*+.^`|~")
BAD_CHARS = ["\r", "\n", "\r\n", "\x00", "\x01", "\x1f", "\x7f", "\u20ac", "\U0001f600", ":", " ",
             "\r\nX-Evil: injected"]
SIZES = [0, 1, 2, 3, 5, 8, 13, 30, 100, 1000, 65536, 1 << 20]
COMMON = [200, 200, 200, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 599]
ODD_STATUS = ["100 Continue", "101 Switching Protocols", "103 Early Hints", "199 X", "600 X",
              "999 Whatever", "000 X", "20 OK", "2000", "200", "", " 200 OK", "200\tOK",
              "200 OK\r\nX-Evil: injected", "200 \u03a9K", "200 OK\x00", "2OO OK", "200 "]
SPECIAL_NAMES = ["Content-Length", "content-length", "Transfer-Encoding", "Connection", "Keep-Alive",
                 "TE", "Server", "Date", "Upgrade", "Trailer", "Proxy-Connection", "Set-Cookie",
                 "Content-Type", "Location"]


def text(ch, alphabet=PRINTABLE, small=False):
    size = ch.pick(SIZES[:9] if small else SIZES[:9] * 4 + SIZES)
    if size > 100:
        s = ch.pick(["v", "\xe9"]) * size
    else:
        s = "".join(ch.pick(alphabet) for _ in range(size))
    if ch.bad():
        at = ch.below(len(s) + 1)
        s = s[:at] + ch.pick(BAD_CHARS) + s[at:]
    return s


def wrap(ch, s):
    """s as the app may hand it over: a str, a str subclass or enum (all fine), or
    (mischief) something that is no str."""
    k = ch.below(16)
    if k < 10:
        pass
    elif k < 16:
        s = [Sub(s), Sub(s), Sneaky(s), enum.StrEnum("E", {"M": s})["M"] if s else Sub(s),
             Sub(s), Sneaky(s)][k - 10]
    if ch.bad():
        s = ch.pick([str(s).encode("utf-8"), bytearray(b"b"), len(s), None, FakeStr(), [s]])
    return s


def status(ch):
    if ch.bad():
        return ch.pick([lambda: f"{ch.below(1000):03d} {text(ch)}", lambda: ch.pick(ODD_STATUS),
                        lambda: text(ch), lambda: wrap(ch, "200 OK")])()
    return wrap(ch, f"{ch.pick(COMMON)} {ch.pick(['OK', 'Fine', 'Not Found', '', 'caf' + chr(0xe9)])}")


def header_value(ch, name, small):
    if isinstance(name, str) and name.lower() == "content-length":
        if ch.bad():
            return ch.pick(["abc", "-1", "1, 1", "", " 4", "99999999999999999999", "+4"])
        return ch.pick(["0", "1", "4", "5", "100", "1000000"])
    if isinstance(name, str) and name.lower() == "connection":
        return ch.pick(["close", "keep-alive", "Upgrade", "keep-alive, close", "CLOSE", ""])
    return text(ch, small=small)


def header(ch, small):
    name = ch.pick(SPECIAL_NAMES) if ch.chance(4) else "X-" + text(ch, TOKEN, small=True)
    value = header_value(ch, name, small)
    pair = (wrap(ch, name), wrap(ch, value))
    if ch.chance(2):
        pair = TupleSub(pair)
    if ch.bad():
        return ch.pick([LyingTuple(pair[:1]), LyingTuple(pair + ("x",)), list(pair), pair[:1],
                        pair + ("x",), "X-A: b", None])
    return pair


def headers(ch):
    n = ch.pick([0, 1, 1, 2, 3, 4, 6, 10, 50, 2000])
    items = [header(ch, n > 10) for _ in range(n)]     # a megabyte value, but not 2000 of them
    if ch.bad():
        return ch.pick([tuple(items), dict((str(i), "v") for i in range(len(items))), None,
                        iter(items)])
    return ListSub(items) if ch.chance(2) else items


SHARED_BIG = (bytes(range(256)) * 4096, bytes(range(255, -1, -1)) * 768)   # 1 MiB, 192 KiB


def item(ch):
    """One body item."""
    if ch.bad():
        return ch.pick([bytearray(b"ba"), memoryview(b"mv"), "str", 7, None])
    k = ch.below(32)
    if k < 24:
        size = ch.pick(SIZES[:10])
        return os.urandom(size) if k & 1 else b"x" * size
    # large bodies: new objects, or the same objects again (the body cache's
    # memfds: a second sighting is sent with sendfile)
    big = ch.pick([b"y" * (1 << 20), b"y" * (3 << 20), SHARED_BIG[0], SHARED_BIG[1]])
    return [BSub(b"sub"), big, b"", b"", b"0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Evil: injected\r\n\r\n", b"z" * 65536, BSub(b"")][k - 24]


def exc_info(ch):
    k = ch.below(8)
    if k < 6:
        try:
            raise Boom("exc_info")
        except Boom:
            return sys.exc_info()
    return [(1, 2, 3), (None, None, None)][k - 6]


class Plan:
    """What the app does for one case: built the same way by the driver, which needs
    only the statuses the app may send (`statuses`)."""

    def __init__(self, data):
        ch = Choices(data)
        self.calls = []                        # (status, headers, exc_info or None)
        no_call = ch.bad()                     # start_response() late (in the iterable) or never
        if not no_call:
            self.calls.append((status(ch), headers(ch), None))
        if ch.bad():                           # a second call: replacing the head, or a misuse
            self.calls.append((status(ch), headers(ch), exc_info(ch) if ch.chance(12) else None))
        self.writes = [item(ch) for _ in range(ch.pick([0] * 6 + [1, 2]))]
        self.raise_before = ch.bad()
        self.kind = ch.pick([11, 12, 13, 14, 15, 16]) if ch.bad() else ch.pick(
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19, 20, 21, 22, 23])
        self.items = [item(ch) for _ in range(ch.pick([0, 1, 1, 1, 2, 3, 10, 100]))]
        self.raise_at = ch.pick([0, 1, 2]) if ch.bad() else -1
        self.call_in_iter = ch.pick([0, 0, 1, 2]) if no_call or ch.bad() else -1
        self.late_call = (status(ch), headers(ch), exc_info(ch) if ch.bad() else None)
        self.close_kind = ch.pick([1, 2, 3]) if ch.bad() else 0
        self.file_size = ch.pick([0, 1, 100, 8192, 100000])
        self.file_offset = ch.pick([0, 0, 0, 1, 50, 200000])
        self.read_kind = ch.below(8) if ch.bad() else 0
        self.fileno_kind = ch.below(6)
        self.statuses = [c[0] for c in self.calls] + [self.late_call[0]]

    def codes(self):
        """The statuses that may appear on the wire: a final one the app gave, or 500."""
        codes = {500}
        for s in self.statuses:
            if isinstance(s, str) and type(s) is not FakeStr and len(s) >= 4 and s[:3].isdigit():
                if 200 <= int(s[:3]) <= 599:
                    codes.add(int(s[:3]))
        return codes

    # -- acted out in the server ---------------------------------------------------------------

    def run(self, environ, start_response):
        write = None
        for st, hs, info in self.calls:
            write = start_response(st, hs, info) if info is not None else start_response(st, hs)
        for it in self.writes:
            write = write or self._late(start_response)
            write(it)
        if self.raise_before:
            raise Boom("before returning")
        return self.iterable(environ, start_response, write)

    def _late(self, start_response):
        st, hs, info = self.late_call
        return start_response(st, hs, info) if info is not None else start_response(st, hs)

    def _gen(self, start_response):
        for i, it in enumerate(self.items):
            if i == self.call_in_iter:
                self._late(start_response)
            if i == self.raise_at:
                raise Boom(f"in the generator at {i}")
            yield it
        if self.call_in_iter >= len(self.items):
            self._late(start_response)

    def iterable(self, environ, start_response, write):
        plan, k = self, self.kind
        if k < 6:
            return list(self.items)
        if k == 6:
            return tuple(self.items)
        if k < 11:
            return self._gen(start_response)
        if k == 11:
            return None
        if k == 12:
            return 5
        if k == 13:
            return "a str body"
        if k == 14:
            return b"bytes: iterating them gives ints"

        class Iterable:
            def __iter__(self):
                if plan.raise_at == 0 and plan.kind == 15:
                    raise Boom("in __iter__")
                return iter(plan.items) if plan.kind != 16 else 42

            def close(self):
                if plan.close_kind == 1:
                    raise Boom("in close()")
                if plan.close_kind == 2 and write is not None:
                    write(b"written from close()")
                if plan.close_kind == 3:
                    plan._late(start_response)

        if k < 18:
            return Iterable()
        wrapper = environ["wsgi.file_wrapper"]
        if k < 20:
            f = tempfile.TemporaryFile()
            f.write(os.urandom(self.file_size))
            f.seek(min(self.file_offset, self.file_size + 10))
            if self.close_kind == 1:
                f.close()                       # a closed file: fileno() raises ValueError
            return wrapper(f, ch_blksize(self.file_size))
        if k < 22:
            return wrapper(io.BytesIO(os.urandom(self.file_size)))

        class OddFile:
            """A file-like whose read() and fileno() lie."""

            def __init__(self):
                self.calls = 0

            def read(self, n=-1):
                self.calls += 1
                if self.calls > 3:
                    return b""
                return [b"data", "str", None, 5, b"y" * (1 << 20), b"", bytearray(b"ba"),
                        b"x"][plan.read_kind] if plan.read_kind != 7 else _raise(Boom("in read()"))

            def close(self):
                if plan.close_kind == 1:
                    raise Boom("in the file's close()")

        if self.fileno_kind:
            OddFile.fileno = [None, lambda s: -1, lambda s: 10 ** 9, lambda s: "x",
                              lambda s: _raise(OSError("no fileno")), lambda s: 10 ** 30][self.fileno_kind]
        return wrapper(OddFile())


def ch_blksize(size):
    return 1 + size % 9000


def _raise(exc):
    raise exc


def app(environ, start_response):
    if environ["PATH_INFO"] == "/__ping":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"pong"]
    return Plan(bytes.fromhex(environ["QUERY_STRING"])[1:]).run(environ, start_response)


# --- the driver ---------------------------------------------------------------------------------


class Finding(AssertionError):
    pass


def request_bytes(case):
    method = "HEAD" if case and case[0] & 1 else "GET"
    version = "HTTP/1.0" if case and case[0] & 2 else "HTTP/1.1"
    first = f"{method} /case?{case.hex()} {version}\r\nHost: f\r\n\r\n".encode()
    return method, version, first + b"GET /__ping HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n"


def exchange(host, port, data, deadline=DEADLINE):
    """Send; read until the server closes.  Finding if it neither closes nor stops."""
    with socket.create_connection((host, port), timeout=deadline) as s:
        s.sendall(data)
        chunks, end = [], time.monotonic() + deadline
        while True:
            if time.monotonic() > end:
                raise Finding(f"no close within {deadline}s after {sum(map(len, chunks))} bytes")
            try:
                got = s.recv(1 << 20)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise Finding(f"server silent for {deadline}s, connection open")
            if not got:
                break
            chunks.append(got)
    return b"".join(chunks)


def judge(raw, case):
    """'ok', '500' or 'closed'; a Finding for anything else."""
    import h11

    method, version, _ = request_bytes(case)
    plan = Plan(case[1:])
    c = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 26)
    # h11 speaks HTTP/1.1 only: an HTTP/1.0 request is told to it as a 1.1 request
    # with Connection: close (the server closes after its answer either way)
    close = [("Connection", "close")] if version == "HTTP/1.0" else []
    c.send(h11.Request(method=method, target="/", headers=[("Host", "f")] + close))
    c.send(h11.EndOfMessage())
    if not raw:
        return "closed"
    c.receive_data(raw)                     # (b"" would mean EOF to h11)
    eof = False

    def next_event():
        nonlocal eof
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError as exc:
                if eof:
                    raise EOFError(str(exc))
                raise Finding(f"malformed response: {exc}; {raw[:300]!r}")
            if ev is h11.NEED_DATA and not eof:
                eof = True
                c.receive_data(b"")
                continue
            return ev

    try:
        ev = next_event()
        if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
            return "closed"
        if isinstance(ev, h11.InformationalResponse):
            raise Finding(f"an interim {ev.status_code} response was sent: {raw[:300]!r}")
        code = ev.status_code
        if code not in plan.codes():
            raise Finding(f"status {code} is neither 500 nor one the app gave: {raw[:300]!r}")
        for name, _ in ev.headers:
            if name.lower() == b"x-evil":
                raise Finding(f"an injected header reached the wire: {raw[:300]!r}")
        while not isinstance(ev, h11.EndOfMessage):
            ev = next_event()
            if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                return "closed"
    except EOFError:
        return "closed"                     # cut off: the close is the answer
    outcome = "500" if code == 500 else "ok"
    if c.their_state is h11.MUST_CLOSE or c.our_state is h11.MUST_CLOSE:
        rest = c.trailing_data[0]
        if rest:
            raise Finding(f"{len(rest)} bytes after a response that closes: {rest[:200]!r}")
        return outcome
    c.start_next_cycle()
    c.send(h11.Request(method="GET", target="/__ping", headers=[("Host", "f")]))
    c.send(h11.EndOfMessage())
    try:
        ev = next_event()
    except EOFError:
        return outcome                      # closed after a complete response
    if ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
        return outcome
    try:
        body = b""
        status2 = ev.status_code
        while True:
            ev = next_event()
            if isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:
                raise Finding(f"the next request's answer ends early: {raw[-300:]!r}")
    except EOFError as exc:
        raise Finding(f"the next request's answer is cut off ({exc}): {raw[-300:]!r}")
    if (status2, body) != (200, b"pong"):
        raise Finding(f"the next request got {status2} {body[:100]!r}: {raw[-400:]!r}")
    return outcome


class Server:
    """`python -m fastwsgi app_fuzz:app` on 127.0.0.1:0; everything it logs is kept."""

    def __init__(self, threads=1, extra=()):
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([HERE, _fastwsgi_home(),
                                               os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastwsgi", "app_fuzz:app", "--bind", "127.0.0.1:0",
             "--threads", str(threads), "--io-timeout", "10", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=HERE)
        self.lines = []
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        end = time.monotonic() + 30
        while self.port is None:
            if time.monotonic() > end or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the server did not start:\n" + self.output)
            for line in list(self.lines):
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.02)

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def bad_log(self, since=0):
        return [ln for ln in self.lines[since:] if BAD_LOG.search(ln)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)


def run_case(server, case):
    """One case: the outcome, or a Finding (also for a dead server or a bad log line)."""
    mark = len(server.lines)
    try:
        raw = exchange("127.0.0.1", server.port, request_bytes(case)[2])
        outcome = judge(raw, case)
    except (ConnectionRefusedError, BrokenPipeError) as exc:
        raise Finding(f"cannot reach the server: {exc}")
    if server.proc.poll() is not None:
        raise Finding(f"the server died (exit {server.proc.returncode})")
    bad = server.bad_log(mark)
    if bad:
        raise Finding("the server logged: " + " | ".join(bad[:3]))
    return outcome


def random_cases(n, seed):
    rng = random.Random(seed)
    for _ in range(n):
        yield bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 32, 64, 128, 256])))


def save(case, reason):
    out = os.environ.get("FUZZ_OUT", os.path.join(HERE, "out"))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"app-{case.hex()[:16]}-{len(case)}.case")
    with open(path, "wb") as f:
        f.write(case)
    print(f"FINDING {path}: {reason}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--random", type=int, metavar="N", help="N seeded random cases")
    mode.add_argument("--atheris", action="store_true", help="libFuzzer-driven (rest of argv to it)")
    mode.add_argument("--replay", nargs="+", metavar="FILE")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args, rest = ap.parse_known_args(argv)
    server = Server(args.threads)
    try:
        if args.atheris:
            import atheris

            # the server runs in another process: libFuzzer's only coverage signal
            # is the judge, so h11 (which parses every answer) is instrumented
            with atheris.instrument_imports(include=["h11"]):
                import h11  # noqa: F401
            atheris.instrument_func(judge)

            def one(data):
                if len(data) <= MAX_CASE:
                    try:
                        run_case(server, bytes(data))
                    except Finding as exc:
                        save(bytes(data), exc)
                        raise

            atheris.Setup([sys.argv[0], *rest], one)
            atheris.Fuzz()
            return 0
        cases = (random_cases(args.random, args.seed) if args.random is not None
                 else (open(p, "rb").read() for p in args.replay))
        counts, findings = {}, 0
        for case in cases:
            try:
                outcome = run_case(server, case)
                counts[outcome] = counts.get(outcome, 0) + 1
            except Finding as exc:
                findings += 1
                save(case, exc)
                if server.proc.poll() is not None:
                    server = Server(args.threads)
        print(f"cases: {sum(counts.values()) + findings}, outcomes: {counts}, findings: {findings}")
        return 1 if findings else 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
