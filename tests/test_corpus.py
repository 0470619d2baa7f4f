"""The request corpus (tests/corpus, see its README) run through fastwsgi._parser.

Every case is fed three ways: whole, one byte at a time, and cut at 20 random
points (the seed is derived from the case name, so a failure replays exactly).
Valid cases must yield the expected messages and leave `rest` buffered; invalid
cases must raise the expected HttpParserError subclass at the latest once every
byte is fed, after exactly `messages_before` complete messages.
"""

import importlib.machinery
import json
import os
import random
import zlib

import pytest

from fastwsgi import errors

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MIN_CASES = 150
RANDOM_SPLITS = 20


def load_cases(kind):
    """[(name, raw bytes, expected dict)] for tests/corpus/<kind>, in file order."""
    folder = os.path.join(CORPUS, kind)
    cases = []
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith(".http"):
            continue
        stem = fname[: -len(".http")]
        with open(os.path.join(folder, fname), "rb") as f:
            raw = f.read()
        with open(os.path.join(folder, stem + ".json"), encoding="utf-8") as f:
            expected = json.load(f)
        cases.append((f"{kind}/{stem}", raw, expected))
    return cases


VALID = load_cases("valid")
INVALID = load_cases("invalid")


def parser_module():
    try:
        from fastwsgi import _parser
    except ImportError as exc:  # a missing build must fail loudly, not skip
        pytest.fail(f"fastwsgi._parser is not built ({exc}); run: cythonize -i -3 fastwsgi/_parser.pyx")
    return _parser


def splits(name, raw, mode):
    """The pieces `raw` is fed in, for one of the three feeding modes."""
    if mode == "whole":
        return [raw]
    if mode == "bytewise":
        return [raw[i : i + 1] for i in range(len(raw))]
    rng = random.Random(zlib.crc32(name.encode()))
    points = sorted(rng.sample(range(1, len(raw)), min(RANDOM_SPLITS, len(raw) - 1)))
    bounds = [0] + points + [len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:])]


class Run:
    """Feeds pieces and drains events, recording complete and in-progress messages."""

    def __init__(self, pieces, base=None):
        self.parser = parser_module().RequestParser()
        self.messages = []  # dicts: environ, body, keep_alive, complete
        self.error = None
        self.pieces = pieces
        self.base = base
        budget = sum(map(len, pieces)) * 4 + 1000  # events can't outnumber bytes by much
        current = None
        try:
            for piece in pieces:
                self.parser.feed(piece)
                while True:
                    budget -= 1
                    assert budget > 0, "next_event() keeps returning events without consuming input"
                    event = self.parser.next_event(base)
                    if event is None:
                        break
                    kind, value = event
                    if kind == "request":
                        assert current is None, "a request event before the previous message ended"
                        assert isinstance(value, dict)
                        current = {"environ": value, "body": b"", "complete": False,
                                   "keep_alive": bool(self.parser.keep_alive)}
                        self.messages.append(current)
                    elif kind == "data":
                        assert current is not None, "a data event outside a message"
                        assert isinstance(value, bytes), type(value)
                        current["body"] += value
                    elif kind == "end":
                        assert current is not None, "an end event outside a message"
                        assert value is None
                        current["complete"] = True
                        current["keep_alive_at_end"] = bool(self.parser.keep_alive)
                        current = None
                    else:
                        raise AssertionError(f"unknown event {event!r}")
        except errors.HttpParserError as exc:
            self.error = exc

    @property
    def complete(self):
        return [m for m in self.messages if m["complete"]]


MODES = ["whole", "bytewise", "random20"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,raw,expected", VALID, ids=[c[0] for c in VALID])
def test_valid(name, raw, expected, mode):
    base = {"fastwsgi.test": "from-base"} if mode == "whole" else None
    run = Run(splits(name, raw, mode), base)
    assert run.error is None, f"raised {type(run.error).__name__}({run.error}) on a valid request"
    want = expected["messages"]
    assert len(run.complete) == len(want), (
        f"{len(run.complete)} complete messages, expected {len(want)}")
    assert len(run.messages) == len(want), "a further message was started from the rest"
    for i, (got, exp) in enumerate(zip(run.complete, want)):
        env = got["environ"]
        for key, value in exp["environ"].items():
            assert key in env, f"message {i}: {key} missing from environ"
            assert env[key] == value, f"message {i}: {key}={env[key]!r}, expected {value!r}"
        for key in exp.get("absent", ()):
            assert key not in env, f"message {i}: {key}={env[key]!r} must not be set"
        for key, value in env.items():
            if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                assert type(value) is str, f"message {i}: {key} is {type(value).__name__}"
        assert got["body"] == exp["body"].encode("latin-1"), f"message {i}: body"
        assert got["keep_alive"] == exp["keep_alive"], f"message {i}: keep_alive"
        if base is not None:
            assert env.get("fastwsgi.test") == "from-base", "base environ not copied in"
    if base is not None:
        assert base == {"fastwsgi.test": "from-base"}, "the base dict was modified"
    assert run.parser.buffered() == expected["rest"].encode("latin-1"), "rest"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,raw,expected", INVALID, ids=[c[0] for c in INVALID])
def test_invalid(name, raw, expected, mode):
    run = Run(splits(name, raw, mode))
    assert run.error is not None, (
        f"no error once all bytes were fed; messages: "
        f"{[(m['environ'].get('REQUEST_METHOD'), m['environ'].get('RAW_URI')) for m in run.messages]}")
    err = run.error
    assert err.status_code == expected["status"], (
        f"{type(err).__name__}({err}) has status {err.status_code}, expected {expected['status']}")
    if "error" in expected:
        cls = getattr(errors, expected["error"])
        assert isinstance(err, cls), f"raised {type(err).__name__}({err}), expected {cls.__name__}"
    assert len(run.complete) == expected.get("messages_before", 0), "messages before the error"


CLOSING = [c for c in VALID if not all(m["keep_alive"] for m in c[2]["messages"])]


@pytest.mark.parametrize("name,raw,expected", CLOSING, ids=[c[0] for c in CLOSING])
def test_keep_alive_still_readable_after_end(name, raw, expected):
    """`keep_alive` describes the last parsed request until the next one starts:
    a server reads it after the body's ("end") to decide whether to close."""
    run = Run(splits(name, raw, "whole"))
    assert run.error is None
    for i, (got, exp) in enumerate(zip(run.complete, expected["messages"])):
        assert got["keep_alive_at_end"] == exp["keep_alive"], f"message {i}: keep_alive after end"


def test_corpus_size():
    assert len(VALID) + len(INVALID) >= MIN_CASES
    for kind in ("valid", "invalid"):
        files = os.listdir(os.path.join(CORPUS, kind))
        stems = {f.rsplit(".", 1)[0] for f in files}
        for stem in stems:
            assert {stem + ".http", stem + ".json"} <= set(files), f"{kind}/{stem} lacks its pair"


def test_parser_is_compiled():
    mod = parser_module()
    assert mod.__file__.endswith(".so"), mod.__file__
    assert isinstance(mod.__loader__, importlib.machinery.ExtensionFileLoader)
