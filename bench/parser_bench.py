"""Parser micro-benchmark: bytes of one request in, a complete WSGI environ out.

Three parsers build the same environ keys (REQUEST_METHOD, SCRIPT_NAME,
PATH_INFO unquoted as latin-1, QUERY_STRING, RAW_URI, SERVER_PROTOCOL,
CONTENT_TYPE/CONTENT_LENGTH and HTTP_*, repeated fields joined with ", " and
cookies with "; "):

1. ``fastwsgi._parser.RequestParser`` through its Python API (feed,
   next_event until "end");
2. ``httptools.HttpRequestParser`` with the callbacks a server needs;
3. ``h11.Connection`` (server role).

Each parses with a fresh parser per request (what a new connection costs)
and, where the parser can be reused, with one parser across requests (a
keep-alive connection). The httptools and h11 adapters cache the
header-name -> environ-key mapping, as a good server would, so the figures
compare parsers rather than string formatting. Before timing, the three
environs are compared; a mismatch is printed.

Run by ``python -m bench parser`` with our server's venv interpreter (this
file runs as a script, standard library plus the parsers only). As a script:

    python bench/parser_bench.py [--runs N] [--seconds S] [--json PATH]
"""
import argparse
import json
import statistics
import sys
import time
from urllib.parse import unquote_to_bytes

# -- the requests -----------------------------------------------------------

MINIMAL = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"

BROWSER = (
    b"GET /shop/search%20results?q=caf%C3%A9&page=2&sort=price HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    b"image/webp,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.7,fr;q=0.3\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://www.example.com/shop/index.html?ref=home\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: sessionid=8f2a7c9e4b1d6f3a0e5c2b7d9a4f1e6c; csrftoken=Zx81LmQp0aVbN3kR7tYu\r\n"
    b"Cookie: theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"\r\n"
)


def _large():
    lines = [b"GET /api/v2/items/12345?fields=name,price,stock&expand=true HTTP/1.1",
             b"Host: api.example.com"]
    i = 0
    while len(lines) < 41:
        lines.append(b"X-Custom-Header-%02d: " % i + (b"%02d-" % i) * 60)
        i += 1
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    assert 7 * 1024 < len(head) < 9 * 1024, len(head)
    return head


LARGE = _large()
REQUESTS = {"minimal": MINIMAL, "browser": BROWSER, "large": LARGE}

# -- environ helpers shared by the adapters ---------------------------------

_KEYS = {}


def environ_key(name):
    """b"accept-encoding" -> "HTTP_ACCEPT_ENCODING", cached by raw name."""
    key = _KEYS.get(name)
    if key is None:
        text = name.decode("latin-1").upper().replace("-", "_")
        key = text if text in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + text
        _KEYS[name] = key
    return key


def add_headers(env, headers):
    for name, value in headers:
        key = environ_key(name)
        value = value.decode("latin-1")
        if key in env:
            env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            env[key] = value


def target_keys(env, target):
    path, _, query = target.partition(b"?")
    env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    env["QUERY_STRING"] = query.decode("latin-1")
    env["RAW_URI"] = target.decode("latin-1")


# -- adapters: each returns a callable data -> environ ----------------------

def fastwsgi_fresh():
    from fastwsgi._parser import RequestParser

    def parse(data):
        p = RequestParser()
        p.feed(data)
        kind, env = p.next_event()
        while p.next_event()[0] != "end":
            pass
        return env
    return parse


def fastwsgi_reuse():
    from fastwsgi._parser import RequestParser
    p = RequestParser()

    def parse(data):
        p.feed(data)
        kind, env = p.next_event()
        while p.next_event()[0] != "end":
            pass
        return env
    return parse


class _HttptoolsRequest:
    """The httptools callbacks a WSGI server needs to build an environ."""
    __slots__ = ("url", "headers", "complete")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.complete = False

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_message_complete(self):
        self.complete = True


def _httptools_environ(parser, req):
    url = req.url
    env = {"REQUEST_METHOD": parser.get_method().decode("ascii"), "SCRIPT_NAME": "",
           "SERVER_PROTOCOL": "HTTP/" + parser.get_http_version()}
    target_keys(env, url)
    add_headers(env, req.headers)
    return env


def httptools_fresh():
    import httptools

    def parse(data):
        req = _HttptoolsRequest()
        p = httptools.HttpRequestParser(req)
        p.feed_data(data)
        return _httptools_environ(p, req)
    return parse


def httptools_reuse():
    import httptools
    req = _HttptoolsRequest()
    p = httptools.HttpRequestParser(req)

    def parse(data):
        req.url = b""
        req.headers = []
        p.feed_data(data)
        return _httptools_environ(p, req)
    return parse


def h11_fresh():
    import h11

    def parse(data):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(data)
        ev = conn.next_event()
        env = {"REQUEST_METHOD": ev.method.decode("ascii"), "SCRIPT_NAME": "",
               "SERVER_PROTOCOL": "HTTP/" + ev.http_version.decode("ascii")}
        target_keys(env, ev.target)
        add_headers(env, ev.headers)
        while type(conn.next_event()) is not h11.EndOfMessage:
            pass
        return env
    return parse


PARSERS = [
    ("fastwsgi", "fresh", fastwsgi_fresh),
    ("fastwsgi", "reuse", fastwsgi_reuse),
    ("httptools", "fresh", httptools_fresh),
    ("httptools", "reuse", httptools_reuse),
    ("h11", "fresh", h11_fresh),
]
BASELINE = "httptools"

# -- timing -----------------------------------------------------------------


def rate(parse, data, seconds):
    """Requests/s of one timed run of about ``seconds``."""
    n = 64
    while True:  # calibrate to a loop of about a tenth of the run
        t0 = time.perf_counter()
        for _ in range(n):
            parse(data)
        if time.perf_counter() - t0 > seconds / 10:
            break
        n *= 4
    loops = max(1, int(seconds / (time.perf_counter() - t0) * n))
    t0 = time.perf_counter()
    for _ in range(loops):
        parse(data)
    return loops / (time.perf_counter() - t0)


def compare(envs):
    """Differences between the environs, as text lines (ignoring extra keys)."""
    out = []
    ref_name, ref = next(iter(envs.items()))
    for name, env in envs.items():
        for key in sorted(set(ref) | set(env)):
            if key.startswith("wsgi.") or key in ("SERVER_NAME", "SERVER_PORT",
                                                   "REMOTE_ADDR", "REMOTE_PORT"):
                continue
            if ref.get(key) != env.get(key):
                out.append(f"{name} vs {ref_name}: {key}: {env.get(key)!r} != {ref.get(key)!r}")
    return out


def run(runs, seconds, log=print):
    results = {"runs": runs, "seconds": seconds, "python": sys.version.split()[0],
               "versions": {}, "unavailable": {}, "mismatches": [], "cases": []}
    adapters = []
    for lib, mode, factory in PARSERS:
        try:
            adapters.append((lib, mode, factory()))
        except ImportError as exc:
            results["unavailable"][lib] = str(exc)
    for lib in {a[0] for a in adapters}:
        try:
            from importlib.metadata import version
            results["versions"][lib] = version(lib)
        except Exception:
            results["versions"][lib] = "?"
    for req_name, data in REQUESTS.items():
        envs = {f"{lib}/{mode}": parse(data) for lib, mode, parse in adapters}
        for line in compare(envs):
            results["mismatches"].append(f"{req_name}: {line}")
        for lib, mode, parse in adapters:
            samples = [rate(parse, data, seconds) for _ in range(runs)]
            results["cases"].append({"request": req_name, "bytes": len(data), "parser": lib,
                                     "mode": mode, "rps": statistics.median(samples),
                                     "min": min(samples), "max": max(samples)})
            log(f"  {req_name:8s} {lib:9s} {mode:5s} {statistics.median(samples):>12,.0f} req/s")
    return results


def markdown(results):
    lines = ["# Parser micro-benchmark", "",
             f"Python {results['python']}; " + ", ".join(
                 f"{k} {v}" for k, v in sorted(results["versions"].items()))
             + f"; median of {results['runs']} runs of {results['seconds']} s. "
             "Bytes of one request in, complete WSGI environ out. fresh = a new parser "
             "per request (new connection), reuse = one parser across requests "
             "(keep-alive).", ""]
    for lib, why in results["unavailable"].items():
        lines.append(f"- {lib}: not available ({why})")
    for m in results["mismatches"]:
        lines.append(f"- environ mismatch: {m}")
    lines += ["", "| request | parser | mode | req/s (min–max) | vs httptools |",
              "|---|---|---|---|---|"]
    base = {(c["request"], c["mode"]): c["rps"] for c in results["cases"]
            if c["parser"] == BASELINE}
    base_fresh = {r: v for (r, m), v in base.items() if m == "fresh"}
    for c in results["cases"]:
        b = base.get((c["request"], c["mode"])) or base_fresh.get(c["request"])
        ratio = f"{c['rps'] / b:.2f}×" if b else "—"
        lines.append(f"| {c['request']} ({c['bytes']} B) | {c['parser']} | {c['mode']} | "
                     f"{c['rps']:,.0f} ({c['min']:,.0f}–{c['max']:,.0f}) | {ratio} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--md", help="write the Markdown table here")
    opts = ap.parse_args(argv)
    results = run(opts.runs, opts.seconds, log=lambda m: print(m, file=sys.stderr))
    text = markdown(results)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
    if opts.md:
        with open(opts.md, "w") as f:
            f.write(text)
    print(text)
    return 0


def main_outer(opts):
    """``python -m bench parser``: run this file in our server's venv."""
    import subprocess
    from pathlib import Path

    from . import envs, servers
    spec = servers.SERVERS["fastwsgi"]
    try:
        env = servers.install(spec, python=opts.python, repo=opts.repo,
                              log=lambda m: print(m, file=sys.stderr))
    except envs.EnvError as exc:
        # The peers are installed before our package: run without ours.
        print(f"fastwsgi not installed, measuring the others: {exc}", file=sys.stderr)
        env = envs.Env(spec.name, envs.VENVS / spec.name)
        if not env.python.exists():
            return 1
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(env.python), str(Path(__file__).resolve()), "--runs", str(opts.runs),
           "--seconds", str(opts.seconds), "--json", str(out / "parser.json"),
           "--md", str(out / "parser.md")]
    # The server CPU: the same core the servers run on, away from this process.
    cmd = ["taskset", "-c", "0"] + cmd
    rc = subprocess.run(cmd).returncode
    if rc == 0:
        print(f"wrote {out}/parser.md, parser.json", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
