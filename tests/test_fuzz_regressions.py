"""Replays fuzz/regressions: every interesting input the differential fuzzer found.

Each `NNN-name.http` holds the raw bytes, `NNN-name.json` what fastwsgi must do:
`{"expect": "reject", "status": 400, "messages_before": 0}` or
`{"expect": "accept", "bodies": ["latin-1 text", ...]}`, plus where it was found
and what httptools and h11 make of it.  An `"xfail"` key names a parser bug that is
not fixed yet: the case runs as a strict xfail, so the fix flips it to a failure
that asks for the key to be removed.  Fed whole and one byte at a time.
"""

import json
import os

import pytest

from fastwsgi._parser import RequestParser
from fastwsgi.errors import HttpParserError

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "regressions")


def load():
    cases = []
    for fname in sorted(os.listdir(FOLDER)):
        if fname.endswith(".http"):
            stem = fname[:-5]
            with open(os.path.join(FOLDER, fname), "rb") as f:
                raw = f.read()
            with open(os.path.join(FOLDER, stem + ".json"), encoding="utf-8") as f:
                cases.append((stem, raw, json.load(f)))
    return cases


CASES = load()


def run(pieces):
    p = RequestParser()
    bodies, cur = [], None
    try:
        for piece in pieces:
            p.feed(piece)
            while (ev := p.next_event()) is not None:
                if ev[0] == "request":
                    cur = b""
                elif ev[0] == "data":
                    cur += ev[1]
                else:
                    bodies.append(cur)
    except HttpParserError as exc:
        return bodies, exc
    return bodies, None


def params():
    out = []
    for stem, raw, exp in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=exp["xfail"])] if "xfail" in exp else []
        for mode in ("whole", "bytewise"):
            out.append(pytest.param(raw, exp, mode, id=f"{stem}-{mode}", marks=marks))
    return out


@pytest.mark.parametrize("raw,exp,mode", params())
def test_regression(raw, exp, mode):
    pieces = [raw] if mode == "whole" else [raw[i:i + 1] for i in range(len(raw))]
    bodies, error = run(pieces)
    if exp["expect"] == "accept":
        assert error is None, repr(error)
        assert bodies == [b.encode("latin-1") for b in exp["bodies"]]
    else:
        assert error is not None, f"accepted: bodies {bodies!r}"
        assert error.status_code == exp["status"], repr(error)
        assert len(bodies) == exp.get("messages_before", 0)


def test_every_case_has_its_expectation():
    names = os.listdir(FOLDER)
    stems = {n.rsplit(".", 1)[0] for n in names if n.endswith((".http", ".json"))}
    for stem in stems:
        assert stem + ".http" in names and stem + ".json" in names, stem
    assert len(CASES) >= 10
