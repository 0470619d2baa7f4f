"""Drive load with wrk and read its results.

Contract: ``write_script(scenario, dir)`` writes the Lua script for a
scenario; ``wrk_command(...)`` returns the exact argv (pinned to a CPU with
taskset); ``run_wrk(argv)`` runs it and returns a ``WrkResult``, parsed from
the JSON line our Lua ``done()`` prints, with wrk's own text summary as the
fallback. Raises ``LoadError`` if wrk fails or prints neither.

Pipelining: wrk sends one request per response unless the script's
``request()`` returns several concatenated; wrk then counts each response.
Only pipelined and multi-path scenarios define ``request()``, because wrk's
static request path is faster and the client must not be the bottleneck.
"""
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

JSON_MARK = "BENCH_JSON "

_LUA_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d}}\n',
    "%(mark)s", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
'''


class LoadError(Exception):
    pass


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    errors: dict = field(default_factory=dict)
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def rps(self):
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def bytes_per_s(self):
        return self.bytes / self.duration_s if self.duration_s else 0.0

    @property
    def socket_errors(self):
        return sum(v for k, v in self.errors.items() if k != "status")


def _lua_string(data):
    """A Lua expression for ``data``, using string.rep for the repeated bodies."""
    for unit_len in (1, 8, 16):
        unit = data[:unit_len]
        if unit and unit * (len(data) // unit_len) == data:
            return f'string.rep({_lua_quote(unit)}, {len(data) // unit_len})'
    return _lua_quote(data)


def _lua_quote(data):
    return '"' + "".join(
        chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data) + '"'


def script_text(scenario):
    lines = [f'wrk.method = "{scenario.method}"']
    if scenario.body:
        lines.append(f"wrk.body = {_lua_string(scenario.body)}")
    for name, value in scenario.headers:
        lines.append(f'wrk.headers[{_lua_quote(name.encode())}] = {_lua_quote(value.encode())}')
    if scenario.close:
        lines.append('wrk.headers["Connection"] = "close"')
    if scenario.targets:
        # One pre-formatted request per path, taken in turn (one counter per wrk
        # thread, shared by its connections).
        paths = ", ".join(_lua_quote(p.encode()) for p, _ in scenario.targets)
        lines.append(f"local paths = {{{paths}}}")
        lines.append("local reqs = {}\nlocal i = 0")
        lines.append("init = function(args)\n"
                     "  for k, p in ipairs(paths) do reqs[k] = wrk.format(nil, p) end\n"
                     "end")
        lines.append("request = function()\n"
                     "  i = i % #reqs + 1\n"
                     "  return reqs[i]\n"
                     "end")
    if scenario.pipeline > 1:
        lines.append(f"local depth = {scenario.pipeline}")
        lines.append("local batch = nil")
        lines.append("init = function(args)\n"
                     "  local r = {}\n"
                     "  for i = 1, depth do r[i] = wrk.format() end\n"
                     "  batch = table.concat(r)\n"
                     "end")
        lines.append("request = function() return batch end")
    lines.append(_LUA_DONE.replace("%(mark)s", JSON_MARK))
    return "\n".join(lines) + "\n"


def write_script(scenario, directory):
    path = Path(directory) / f"{scenario.name}.lua"
    path.write_text(script_text(scenario))
    return path


def wrk_command(url, script, duration, connections, threads=1, cpu=1, timeout=5, nice=0):
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
            "--timeout", f"{timeout}s", "--latency", "-s", str(script), url]
    if nice:
        argv = ["nice", "-n", str(nice)] + argv
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    return argv


def run_wrk(argv, grace=30):
    duration = next(int(a[2:-1]) for a in argv if a.startswith("-d"))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=duration + grace)
    except subprocess.TimeoutExpired:
        raise LoadError("wrk did not finish in time") from None
    if proc.returncode != 0:
        raise LoadError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    return parse_output(proc.stdout)


def parse_output(text):
    for line in text.splitlines():
        if line.startswith(JSON_MARK):
            d = json.loads(line[len(JSON_MARK):])
            lat = d["latency_us"]
            return WrkResult(
                requests=d["requests"], duration_s=d["duration_us"] / 1e6,
                bytes=d["bytes"], errors=d["errors"],
                p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000,
                p99_ms=lat["p99"] / 1000, mean_ms=lat["mean"] / 1000,
                max_ms=lat["max"] / 1000)
    return parse_text(text)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_UNITS_B = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_text(text):
    """wrk's human summary; used only if the Lua done() line is missing."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB) read", text)
    if not m:
        raise LoadError(f"cannot parse wrk output: {text.strip()[:200]!r}")
    result = WrkResult(requests=int(m.group(1)),
                       duration_s=_ms(m.group(2) + m.group(3)) / 1000,
                       bytes=int(float(m.group(4)) * _UNITS_B[m.group(5)]))
    for pct, attr in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        pm = re.search(rf"^\s*{pct}%\s+([\d.]+(?:us|ms|s|m))\s*$", text, re.M)
        if pm:
            setattr(result, attr, _ms(pm.group(1)))
    em = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = dict(connect=0, read=0, write=0, status=0, timeout=0)
    if em:
        errors.update(connect=int(em.group(1)), read=int(em.group(2)),
                      write=int(em.group(3)), timeout=int(em.group(4)))
    sm = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if sm:
        errors["status"] = int(sm.group(1))
    result.errors = errors
    return result
