"""Differential fuzzing of fastwsgi's request parser against httptools (llhttp) and h11.

Every input is a byte stream a client could send on one connection.  Each parser
reads it as far as it can and reports the messages it saw (method, target,
headers as environ keys, body) and how it stopped: an error, a close (the
request asked for one), an upgrade/pause, or "needs more bytes".  The streams
are then compared message by message; the boundaries (body length, where the
next request starts) show up as a different body or a different next message.

Classes (the ones marked * are findings: fixed in the parser or listed with a
reason in fuzz/findings.md):

  * accept_both_reject   we complete a message that httptools AND h11 reject
  * frame_differs        we and another parser both complete message i, but
                         method, target or body differ, or one of them completes
                         it while the other still waits for bytes
    headers_differ       same framing, different header values
    we_reject            we reject what at least one other accepts (strictness)
    known_difference     both reject, but llhttp only for its method whitelist
    agree                everything else

Two documented differences are levelled before comparing: h11 gets up to two
empty lines before each request skipped (RFC 9112 §2.2, as fastwsgi does), and
llhttp's and h11's views end at an Upgrade / CONNECT (fastwsgi ignores Upgrade).

Inputs: a byte whose high bit is clear starts a raw request stream (so the
seed files in fuzz/seeds/ are used as they are and mutated by libFuzzer); a
first byte >= 0x80 makes the rest drive a generator of smuggling-shaped
requests (header and chunk obfuscations, pipelined second requests).

Usage (one process; see fuzz/README.md):

  python fuzz/differential.py fuzz/work fuzz/seeds -max_total_time=3600 -max_len=2048
  python fuzz/differential.py --replay FILE...      # classify files, print outcomes
  python fuzz/differential.py --random N [SEED]     # no atheris: seeded generator only

New finding signatures are written to $FUZZ_OUT (default fuzz/out/): the
minimised input (.http), the input as found (.orig) and the three views (.json);
counters go to $FUZZ_OUT/stats.json every 20,000 inputs and add up across runs.
FUZZ_ROOT names a tree whose parser build is used instead of this one (a
coverage-instrumented or sanitizer build; see fuzz/README.md).
"""

import hashlib
import json
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("FUZZ_OUT", os.path.join(HERE, "out"))
# FUZZ_ROOT: a tree with a coverage-instrumented build of the parser (fuzz/README.md)
sys.path.insert(0, os.environ.get("FUZZ_ROOT", os.path.dirname(HERE)))

FINDING_CLASSES = ("accept_both_reject", "frame_differs")


# --- one parser's view of a stream -------------------------------------------------------


class View:
    """What one parser made of a stream: complete messages, then how it stopped."""

    __slots__ = ("messages", "stop", "error", "partial")

    def __init__(self):
        self.messages = []  # (method, target, headers tuple, body)
        self.stop = "need_data"  # need_data | error | close | upgrade
        self.error = ""
        self.partial = False  # a message was started and not completed

    def as_dict(self):
        return {
            "messages": [
                {"method": m[0], "target": m[1], "headers": dict(m[2]), "body": m[3].decode("latin-1")}
                for m in self.messages
            ],
            "stop": self.stop,
            "error": self.error,
            "partial": self.partial,
        }


def environ_key(name):
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def normalise_fields(fields, target):
    """Raw (name, value) pairs -> sorted environ-style items, as fastwsgi builds them."""
    headers = {}
    for name, value in fields:
        if "_" in name:  # fastwsgi drops these on purpose (spoofing of "-" names)
            continue
        key = environ_key(name)
        value = value.strip(" \t")
        if key == "HTTP_TRANSFER_ENCODING":
            value = value.lower()  # h11 lowercases it; the case carries no meaning
        if key in headers:
            headers[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            headers[key] = value
    if target[:8].lower().startswith(("http://", "https://")):
        # absolute-form: the target's authority is the Host (RFC 9112 §3.2.2)
        headers["HTTP_HOST"] = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return tuple(sorted(headers.items()))


def _short(exc):
    """An error message with its variable parts removed, for signatures."""
    text = f"{type(exc).__name__}: {exc}"
    text = re.sub(r"b'.*'|\".*\"|0x[0-9a-f]+|\d+", "#", text)
    return text[:120]


def run_ours(raw, _cache={}):
    from fastwsgi._parser import RequestParser
    from fastwsgi.errors import HttpParserError

    view = View()
    p = RequestParser()
    p.feed(raw)
    cur = None
    try:
        while True:
            ev = p.next_event()
            if ev is None:
                break
            kind, value = ev
            if kind == "request":
                env = value
                cur = [env["REQUEST_METHOD"], env["RAW_URI"],
                       tuple(sorted((k, v.lower() if k == "HTTP_TRANSFER_ENCODING" else v)
                                    for k, v in env.items()
                                    if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH"))),
                       b""]
            elif kind == "data":
                cur[3] += value
            else:
                view.messages.append(tuple(cur))
                cur = None
                if not p.keep_alive:
                    view.stop = "close"
                    return view
    except HttpParserError as exc:
        view.stop = "error"
        view.error = _short(exc)
        view.partial = cur is not None
        return view
    view.partial = cur is not None or p.buffered().strip(b"\r\n") != b""
    return view


class _Upgraded(Exception):
    pass


class _HttptoolsProto:
    __slots__ = ("view", "cur", "in_head", "parser", "closed")

    def __init__(self, view):
        self.view = view
        self.cur = None
        self.in_head = False
        self.closed = False

    def on_message_begin(self):
        self.cur = {"url": b"", "fields": [], "body": b""}
        self.in_head = True

    def on_url(self, url):
        self.cur["url"] += url

    def on_header(self, name, value):
        if self.in_head:  # llhttp reports trailer fields here too
            self.cur["fields"].append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self):
        self.in_head = False
        self.cur["method"] = self.parser.get_method().decode("latin-1")
        if self.parser.should_upgrade():
            # llhttp hands the rest of the stream to the upgraded protocol; a
            # server that does not upgrade (fastwsgi) keeps reading HTTP/1.1
            raise _Upgraded()

    def on_body(self, body):
        self.cur["body"] += body

    def on_message_complete(self):
        if self.closed:
            return
        c = self.cur
        target = c["url"].decode("latin-1")
        self.view.messages.append((c["method"], target, normalise_fields(c["fields"], target), c["body"]))
        self.cur = None
        if not self.parser.should_keep_alive():
            self.closed = True


def run_httptools(raw):
    import httptools

    view = View()
    proto = _HttptoolsProto(view)
    parser = httptools.HttpRequestParser(proto)
    proto.parser = parser
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        view.stop = "upgrade"
        return view
    except httptools.HttpParserError as exc:
        if isinstance(exc.__context__, _Upgraded) or isinstance(exc.__cause__, _Upgraded):
            view.stop = "upgrade"
            return view
        if proto.closed:
            view.stop = "close"
            return view
        view.stop = "error"
        view.error = _short(exc)
        view.partial = proto.cur is not None
        return view
    if proto.closed:
        view.stop = "close"
    else:
        view.partial = proto.cur is not None
    return view


def _skip_empty_lines(data):
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a
    request-line.  fastwsgi ignores up to 2; h11 ignores none, so the harness
    does it for h11 (the difference is listed in tests/test_differential.py)."""
    for _ in range(2):
        if data.startswith(b"\r\n"):
            data = data[2:]
    return data


def run_h11(raw):
    import h11

    view = View()
    data = _skip_empty_lines(raw)
    cur = None
    while True:
        # one Connection per request, so the empty-line skip can run between them
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        upgrade = False
        try:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    view.partial = cur is not None
                    return view
                if event is h11.PAUSED:
                    if conn.their_state is h11.MIGHT_SWITCH_PROTOCOL or upgrade:
                        view.stop = "upgrade"
                    elif conn.their_state is h11.MUST_CLOSE:
                        view.stop = "close"
                    else:
                        view.stop = "paused"
                    return view
                if isinstance(event, h11.Request):
                    upgrade = event.method == b"CONNECT" or any(
                        n.lower() == b"upgrade" for n, _ in event.headers.raw_items())
                    target = event.target.decode("latin-1")
                    cur = [event.method.decode("latin-1"), target,
                           normalise_fields([(n.decode("latin-1"), v.decode("latin-1"))
                                             for n, v in event.headers.raw_items()], target), b""]
                elif isinstance(event, h11.Data):
                    cur[3] += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    view.messages.append(tuple(cur))
                    cur = None
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return view
        except h11.RemoteProtocolError as exc:
            view.stop = "error"
            view.error = _short(exc)
            view.partial = cur is not None
            return view
        if upgrade:
            view.stop = "upgrade"
            return view
        if conn.their_state is h11.MUST_CLOSE:
            view.stop = "close"
            return view
        data = _skip_empty_lines(conn.trailing_data[0])
        if not data:
            return view


# --- comparison ------------------------------------------------------------------------


def _rejects_at(view, i):
    """`view` raised an error before completing message i."""
    return view.stop == "error" and len(view.messages) <= i


def _still_reading(view, i):
    """`view` has not completed message i, but is not done with the stream either."""
    return view.stop == "need_data" and len(view.messages) <= i


# Rejections that are not about framing: llhttp only knows the registered
# method names (RFC 9110 §9.1 allows any token), and "PRI" is its HTTP/2 preface.
BENIGN_HTTPTOOLS = ("HttpParserInvalidMethodError", "Expected HTTP/# Connection Preface")


def classify(raw):
    """(class, signature, views) for one input."""
    ours, ht, h = run_ours(raw), run_httptools(raw), run_h11(raw)
    views = {"fastwsgi": ours, "httptools": ht, "h11": h}
    # 1. a message we complete that both others reject
    for i in range(len(ours.messages)):
        if _rejects_at(ht, i) and _rejects_at(h, i):
            if any(b in ht.error for b in BENIGN_HTTPTOOLS):
                return "known_difference", ("known_difference", "llhttp method", h.error), views
            sig = ("accept_both_reject", i > 0, ht.error, h.error)
            return "accept_both_reject", sig, views
    # 2. framing: the same message index, different message
    for name, other in (("httptools", ht), ("h11", h)):
        for i, mine in enumerate(ours.messages):
            if i < len(other.messages):
                theirs = other.messages[i]
                diff = [f for f, a, b in zip(("method", "target", "body"), (mine[0], mine[1], mine[3]),
                                             (theirs[0], theirs[1], theirs[3])) if a != b]
                if diff:
                    sig = ("frame_differs", name, tuple(diff), i > 0)
                    return "frame_differs", sig, views
            elif _still_reading(other, i) and other.partial:
                # we finished message i; the other one is still inside it: it
                # reads the body longer than we do (TE vs CL, chunk size, ...)
                sig = ("frame_differs", name, ("other_still_in_message",), i > 0)
                return "frame_differs", sig, views
        if other.stop != "error":
            for i in range(len(ours.messages), len(other.messages)):
                if ours.stop == "need_data" and ours.partial and i == len(ours.messages):
                    # the other parser ended a message we are still reading
                    sig = ("frame_differs", name, ("we_still_in_message",), i > 0)
                    return "frame_differs", sig, views
    for name, other in (("httptools", ht), ("h11", h)):
        for mine, theirs in zip(ours.messages, other.messages):
            if mine[2] != theirs[2]:
                keys = tuple(sorted({k for k, _ in set(mine[2]) ^ set(theirs[2])}))[:3]
                return "headers_differ", ("headers_differ", name, keys), views
    if ours.stop == "error" and (len(ht.messages) > len(ours.messages) or len(h.messages) > len(ours.messages)
                                 or (ht.stop != "error" and not ht.partial) or (h.stop != "error" and not h.partial)):
        return "we_reject", ("we_reject", ours.error), views
    return "agree", ("agree",), views


def minimise(raw, sig, budget=3000):
    """Shrink `raw` while classify() keeps the same signature (greedy chunk removal)."""
    best = raw
    n = len(best) // 2
    while n >= 1 and budget > 0:
        i = 0
        changed = False
        while i < len(best) and budget > 0:
            cand = best[:i] + best[i + n:]
            budget -= 1
            if cand and classify(cand)[1] == sig:
                best = cand
                changed = True
            else:
                i += n
        if not changed:
            n //= 2
    return best


# --- the generator of smuggling-shaped requests ----------------------------------------

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"get", b"CONNECT",
           b"PRI", b"TRACE", b"G\x00T", b"GET\t", b"M-SEARCH", b"PO ST", b"\x80GET"]
TARGETS = [b"/", b"/a?b=c", b"*", b"http://h/x", b"https://h:443/", b"h:80", b"/a#f", b"/%zz", b"/ a",
           b"/a\tb", b"//", b"/%00", b"http://u@h/", b"HTTP://H", b"/?", b"/\x7f", b"/\x80", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/01.1",
            b"HTTP/1", b"HTTP/1.1\x00", b"HTTP/0.9", b"", b"HTTP/1.10"]
SEPS = [b" ", b" ", b" ", b"\t", b"  ", b"\x0b", b"\x0c", b"\r"]
EOLS = [b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"]
TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING", b"Transfer-Encoding ",
            b"Transfer-Encoding\t", b" Transfer-Encoding", b"Transfer_Encoding", b"Transfer-Encoding\x00",
            b"Transfer\x0bEncoding", b"\tTransfer-Encoding", b"X-Transfer-Encoding"]
TE_VALUES = [b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked", b"\x0bchunked",
             b"chunked\x0b", b"xchunked", b"chunkedx", b"chunked, identity", b"identity, chunked",
             b"gzip, chunked", b"chunked, chunked", b"chunked,", b",chunked", b"chunked;q=1", b"\"chunked\"",
             b"chunk", b"chunked\x00", b"identity", b"", b"chunked\r", b"chu\x00nked", b"cHuNkEd",
             b"chunked , ", b"  chunked  ", b"chunked\xff"]
CL_NAMES = [b"Content-Length", b"content-length", b"Content-Length ", b"Content_Length", b" Content-Length",
            b"Content-Length\t", b"CONTENT-LENGTH", b"Content-Lengthx"]
CL_VALUES = [b"0", b"5", b"10", b"+5", b"-5", b" 5", b"5 ", b"5,5", b"5, 5", b"05", b"0x5", b"5.0",
             b"99999999999999999999", b"18446744073709551621", b"5\x0b", b"", b"1e1", b"\t5\t", b"5 5",
             b"4294967301", b"00000000000000000005", b"5\x00"]
OTHER_HEADERS = [
    b"Host: h", b"Host: h", b"Host: h", b"Host:", b"Host: h:80", b"Host: [::1]", b"Host: a b", b"Host: a@b",
    b"Host: h\r\nHost: h", b"Connection: close", b"Connection: keep-alive", b"Connection: Upgrade",
    b"Upgrade: h2c", b"Expect: 100-continue", b"Expect: foo", b"X-A: a\x00b", b"X-A: a\x01b", b"X-A: a\x7fb",
    b"X-A: \xff", b"X-A: a\rb", b"X-A: a\nb", b"X-A:", b"X-A : b", b"X A: b", b": b", b"X-A", b"X-A:\x0bb",
    b" folded", b"\tfolded", b"X-A: a\r\n b", b"Cookie: a=1", b"Trailer: X-T", b"TE: trailers", b"\x00: b",
    b"X-\xff: b", b"Keep-Alive: 5", b"Content-Type: t",
]
CHUNK_SIZES = [b"%x", b"%x", b"%x", b"%X", b"0%x", b"%x ", b" %x", b"%x;a=b", b"%x ;a=b", b"%x;a=\"b c\"",
               b"%x;\x00", b"-%x", b"+%x", b"0x%x", b"%x\t", b"%xg", b"%x;a\rb", b"ffffffffffffffff%x",
               b"1%x0000000000000000", b"%x;" + b"a" * 300]
CHUNK_ENDS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"", b"XX", b"\r\n\r\n", b" \r\n"]
LAST_CHUNKS = [b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\n\r\n", b"00\r\n\r\n", b"0;x=y\r\n\r\n", b"0\r\nX-T: v\r\n\r\n",
               b"0\r\nX-T : v\r\n\r\n", b"0\r\n folded\r\n\r\n", b"0\n\n", b"0\r\n\n", b"0\r\n", b"0 \r\n\r\n",
               b"0\r\nX-T: a\x00\r\n\r\n", b"0\r\nContent-Length: 5\r\n\r\n", b"0\r\nTransfer-Encoding: x\r\n\r\n"]


class Gen:
    """A tiny structured generator over a byte source (atheris' provider or random)."""

    def __init__(self, pick_int):
        self.pick_int = pick_int  # (lo, hi) -> int

    def choice(self, seq):
        return seq[self.pick_int(0, len(seq) - 1)]

    def chance(self, percent):
        return self.pick_int(0, 99) < percent

    def line(self, parts):
        return b"".join(parts) + (self.choice(EOLS) if self.chance(10) else b"\r\n")

    def message(self):
        g = self
        sep = (lambda: g.choice(SEPS)) if g.chance(15) else (lambda: b" ")
        method = g.choice(METHODS) if g.chance(30) else g.choice([b"GET", b"POST"])
        target = g.choice(TARGETS) if g.chance(25) else b"/"
        version = g.choice(VERSIONS) if g.chance(15) else b"HTTP/1.1"
        out = [g.line([method, sep(), target, sep(), version])]
        if g.chance(92):
            out.append(b"Host: h\r\n")
        body = g.choice([b"", b"hello", b"x" * 16, b"0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"])
        framing = g.pick_int(0, 5)  # 0 none, 1 CL, 2 TE, 3 CL+TE, 4 TE+CL, 5 two of one
        headers = []
        cl_value = (b"%d" % len(body)) if g.chance(60) else g.choice(CL_VALUES)
        te_name = g.choice(TE_NAMES) if g.chance(40) else b"Transfer-Encoding"
        te_value = g.choice(TE_VALUES) if g.chance(50) else b"chunked"
        cl_name = g.choice(CL_NAMES) if g.chance(25) else b"Content-Length"
        if framing in (1, 3, 4):
            headers.append(cl_name + b": " + cl_value)
        if framing in (2, 3, 4):
            headers.append(te_name + (b":" if g.chance(20) else b": ") + te_value)
        if framing == 4:
            headers.reverse()
        if framing == 5:
            if g.chance(50):
                headers += [b"Content-Length: " + cl_value, b"Content-Length: " + g.choice(CL_VALUES)]
            else:
                headers += [b"Transfer-Encoding: " + te_value, te_name + b": " + g.choice(TE_VALUES)]
        for _ in range(g.pick_int(0, 3)):
            headers.insert(g.pick_int(0, len(headers)), g.choice(OTHER_HEADERS))
        out += [g.line([h]) for h in headers]
        out.append(b"\r\n" if g.chance(92) else g.choice(EOLS))
        if framing in (2, 3, 4) or (framing == 5 and b"Transfer" in headers[0]) or g.chance(5):
            out.append(self.chunked_body(body))
        else:
            out.append(body)
        return b"".join(out)

    def chunked_body(self, body):
        g = self
        out = []
        parts = [body[:3], body[3:]] if g.chance(40) else [body]
        for part in parts:
            if not part:
                continue
            size = g.choice(CHUNK_SIZES) if g.chance(30) else b"%x"
            n = len(part) + (g.pick_int(-2, 2) if g.chance(10) else 0)
            out.append(size.replace(b"%x", b"%x" % max(n, 0)).replace(b"%X", b"%X" % max(n, 0)))
            out.append(g.choice(CHUNK_ENDS) if g.chance(10) else b"\r\n")
            out.append(part)
            out.append(g.choice(CHUNK_ENDS) if g.chance(10) else b"\r\n")
        out.append(g.choice(LAST_CHUNKS) if g.chance(30) else b"0\r\n\r\n")
        return b"".join(out)

    def stream(self):
        out = [self.message()]
        while len(out) < 3 and self.chance(50):
            out.append(self.message())
        return b"".join(out)


# --- drivers -----------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.counts = {}
        self.total = 0
        self.signatures = {}
        self.started = time.time()
        self.base_total = 0
        path = os.path.join(OUT, "stats.json")
        if os.path.exists(path):  # runs add up
            with open(path) as f:
                old = json.load(f)
            self.base_total = old.get("inputs_total", 0)
            self.prior_counts = old.get("classes_total", {})
        else:
            self.prior_counts = {}

    def record(self, raw, cls, sig, views):
        self.total += 1
        self.counts[cls] = self.counts.get(cls, 0) + 1
        if cls in FINDING_CLASSES or cls == "headers_differ":
            key = hashlib.sha1(repr(sig).encode()).hexdigest()[:12]
            if key not in self.signatures:
                self.signatures[key] = sig
                self.save(key, raw, cls, sig, views)
        if self.total % 20000 == 0:
            self.dump()

    def save(self, key, raw, cls, sig, views):
        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, f"{cls}-{key}")
        if os.path.exists(path + ".json"):
            return
        small = minimise(raw, sig)
        with open(path + ".http", "wb") as f:
            f.write(small)
        with open(path + ".orig", "wb") as f:
            f.write(raw)
        _, _, small_views = classify(small)
        with open(path + ".json", "w") as f:
            json.dump({"class": cls, "signature": repr(sig),
                       "views": {k: v.as_dict() for k, v in small_views.items()}}, f, indent=1)
        print(f"\n[finding] {cls} {key} {sig!r}: {small!r}", file=sys.stderr, flush=True)

    def dump(self):
        os.makedirs(OUT, exist_ok=True)
        classes = dict(self.prior_counts)
        for k, v in self.counts.items():
            classes[k] = classes.get(k, 0) + v
        data = {"inputs_total": self.base_total + self.total, "inputs_this_run": self.total,
                "seconds_this_run": round(time.time() - self.started, 1), "classes_total": classes}
        tmp = os.path.join(OUT, "stats.json.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, os.path.join(OUT, "stats.json"))


STATS = None


def to_stream(data, pick_int_factory):
    if not data or data[0] < 0x80:
        return data
    return Gen(pick_int_factory(data[1:])).stream()


_loaded = []


def _load_instrumented_parser():
    """Import the parser on the first input, once libFuzzer runs.

    Atheris loads its libFuzzer core only in Fuzz(), with RTLD_LOCAL; a parser
    built with -fsanitize-coverage (FUZZ_ROOT) needs its __sanitizer_cov_*
    symbols, so the core is promoted to RTLD_GLOBAL before the import."""
    import atheris
    import ctypes
    import glob

    if os.environ.get("FUZZ_ROOT"):
        core = glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))[0]
        ctypes.CDLL(core, mode=ctypes.RTLD_GLOBAL | os.RTLD_NOLOAD)
    import fastwsgi._parser

    print(f"parser: {fastwsgi._parser.__file__}", file=sys.stderr, flush=True)
    _loaded.append(True)


def one_input(data):
    if not _loaded:
        _load_instrumented_parser()
    raw = to_stream(data, _atheris_picker)
    if not raw:
        return
    cls, sig, views = classify(raw)
    STATS.record(raw, cls, sig, views)


def _atheris_picker(data):
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    return lambda lo, hi: fdp.ConsumeIntInRange(lo, hi)


def _random_picker(seed):
    rng = random.Random(seed)
    return lambda lo, hi: rng.randint(lo, hi)


def main(argv):
    global STATS
    if argv[1:2] == ["--replay"]:
        for path in argv[2:]:
            with open(path, "rb") as f:
                raw = f.read()
            cls, sig, views = classify(raw)
            print(f"{path}: {cls} {sig!r}")
            for name, v in views.items():
                print(f"  {name:9} stop={v.stop} error={v.error!r} messages="
                      f"{[(m[0], m[1], len(m[3])) for m in v.messages]} partial={v.partial}")
        return
    STATS = Stats()
    if argv[1:2] == ["--random"]:
        n = int(argv[2])
        seed0 = int(argv[3]) if len(argv) > 3 else 0
        for i in range(n):
            raw = Gen(_random_picker(seed0 + i)).stream()
            cls, sig, views = classify(raw)
            STATS.record(raw, cls, sig, views)
        STATS.dump()
        print(json.dumps(STATS.counts))
        return
    import atheris

    with atheris.instrument_imports(include=["h11"]):
        import h11  # noqa: F401  (coverage of h11's branches guides the mutator too)
    import httptools  # noqa: F401
    import atexit
    atexit.register(lambda: STATS.dump())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
