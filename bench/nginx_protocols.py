"""nginx -> fastwsgi over uwsgi vs over HTTP, measured with wrk.

    python bench/nginx_protocols.py [--duration 5] [--rounds 3] [--connections 32] [--tcp]
                                    [--json FILE]

One fastwsgi process per protocol (the same app, bench/apps.py copied into a
temp dir as bench_apps.py, as the main bench does), one nginx (worker_processes 1)
with a server block per upstream shape, wrk on the nginx ports:

    http-keepalive  proxy_pass, HTTP/1.1 with an upstream keepalive pool (docs' config)
    http-close      proxy_pass, nginx's default HTTP/1.0 + a new connection per request
    uwsgi           uwsgi_pass (include uwsgi_params): a new connection per request,
                    as nginx's uwsgi module has no upstream keepalive

Upstreams are unix sockets unless --tcp.  Scenarios: hello (13-byte response),
post (64 KiB request body, digest back).  Reports, per scenario and shape, the
median req/s of --rounds alternating runs with the CPU time fastwsgi and nginx
spent per request, and the ratios uwsgi / http-*; wrk errors or non-2xx answers
are flagged.
Needs nginx (apt-get install nginx-light) and wrk.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)            # run as a script: bench/ is a package beside it
from bench.servers import NGINX_HTTP_PREAMBLE  # noqa: E402

NGINX_CONF = """\
{user}
worker_processes 1;
""" + NGINX_HTTP_PREAMBLE + """\

    upstream fastwsgi {{
        server {http_upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    upstream fastwsgi_close {{
        server {http_upstream};
    }}
    upstream fastwsgi_uwsgi {{
        server {uwsgi_upstream};
    }}
    server {{
        listen 127.0.0.1:{port_keepalive};
        location / {{
            proxy_pass http://fastwsgi;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
    server {{
        listen 127.0.0.1:{port_close};
        location / {{
            proxy_pass http://fastwsgi_close;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
    server {{
        listen 127.0.0.1:{port_uwsgi};
        location / {{
            include {uwsgi_params};
            uwsgi_pass fastwsgi_uwsgi;
        }}
    }}
}}
"""

POST_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("abcdefgh", 8192)
"""

SCENARIOS = {"hello": "/hello", "post": "/post"}
SHAPES = ("http-keepalive", "http-close", "uwsgi")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(address, proc, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.socket(family) as s:
                s.connect(address)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on {address}")


def start_fastwsgi(run, bind, protocol):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([run, ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "fastwsgi", "--bind", bind, "--protocol", protocol,
           "--log-level", "warning", "--backlog", "4096", "bench_apps:app_router"]
    return subprocess.Popen(cmd, env=env, cwd=run, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


ROUTER = '''

def app_router(environ, start_response):
    if environ["PATH_INFO"] == "/post":
        return post(environ, start_response)
    return hello(environ, start_response)
'''


def cpu_seconds(pid):
    """utime + stime of one process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid):
    """CPU seconds of pid and its direct children (nginx's master and workers)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == str(pid):
                        total += cpu_seconds(int(entry))
            except OSError:
                pass
    return total


def run_wrk(url, args, lua=None):
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d",
           f"{args.duration}s", url]
    if lua:
        cmd[1:1] = ["-s", lua]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not m or not total:
        raise SystemExit(f"wrk printed no Requests/sec:\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(m.group(1)), "requests": int(total.group(1)),
            "errors": (errors.group(1) if errors else "") + (
                f" non-2xx {non2xx.group(1)}" if non2xx else ""),
            "command": " ".join(cmd)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs per shape; the median counts")
    parser.add_argument("--tcp", action="store_true", help="TCP upstreams instead of unix sockets")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is missing (apt-get install "
                             f"{'nginx-light' if tool == 'nginx' else 'wrk'})")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    run = tempfile.mkdtemp(prefix="fastwsgi-nginx-bench-")
    procs = []
    try:
        shutil.copy(os.path.join(HERE, "apps.py"), os.path.join(run, "bench_apps.py"))
        with open(os.path.join(run, "bench_apps.py"), "a") as f:
            f.write(ROUTER)
        with open(os.path.join(run, "post.lua"), "w") as f:
            f.write(POST_LUA)
        if args.tcp:
            http_addr, uwsgi_addr = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
            http_bind, uwsgi_bind = f"127.0.0.1:{http_addr[1]}", f"127.0.0.1:{uwsgi_addr[1]}"
            http_up, uwsgi_up = http_bind, uwsgi_bind
        else:
            http_addr, uwsgi_addr = os.path.join(run, "http.sock"), os.path.join(run, "uwsgi.sock")
            http_bind, uwsgi_bind = f"unix:{http_addr}", f"unix:{uwsgi_addr}"
            http_up, uwsgi_up = http_bind, uwsgi_bind
        procs.append(start_fastwsgi(run, http_bind, "http"))
        wait_for(http_addr, procs[-1], "fastwsgi (http)")
        procs.append(start_fastwsgi(run, uwsgi_bind, "uwsgi"))
        wait_for(uwsgi_addr, procs[-1], "fastwsgi (uwsgi)")

        prefix = os.path.join(run, "nginx")
        os.makedirs(os.path.join(prefix, "tmp"))
        params = "/etc/nginx/uwsgi_params"
        if not os.path.exists(params):
            sys.path.insert(0, os.path.join(ROOT, "tests"))
            from test_nginx import UWSGI_PARAMS
            params = os.path.join(prefix, "uwsgi_params")
            with open(params, "w") as f:
                f.write(UWSGI_PARAMS)
        ports = {"port_keepalive": free_port(), "port_close": free_port(),
                 "port_uwsgi": free_port()}
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "",
                                      prefix=prefix, http_upstream=http_up,
                                      uwsgi_upstream=uwsgi_up, uwsgi_params=params, **ports))
        procs.append(subprocess.Popen(
            [nginx, "-p", prefix, "-e", os.path.join(prefix, "error.log"), "-c", conf,
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        for port in ports.values():
            wait_for(("127.0.0.1", port), procs[-1], "nginx")

        port_of = {"http-keepalive": ports["port_keepalive"], "http-close": ports["port_close"],
                   "uwsgi": ports["port_uwsgi"]}
        backend_of = {"http-keepalive": procs[0], "http-close": procs[0], "uwsgi": procs[1]}
        nginx_proc = procs[2]
        # rounds alternate the shapes, so a noisy neighbour hits them alike; the
        # median round counts.  CPU time per request (fastwsgi, nginx) is the
        # steadier figure on a small machine where wrk, nginx and fastwsgi share CPUs.
        samples = {}
        for scenario, path in SCENARIOS.items():
            lua = os.path.join(run, "post.lua") if scenario == "post" else None
            for shape in SHAPES:                     # warm-up
                run_wrk(f"http://127.0.0.1:{port_of[shape]}{path}",
                        argparse.Namespace(**dict(vars(args), duration=1)), lua)
            for _ in range(args.rounds):
                for shape in SHAPES:
                    backend = backend_of[shape].pid
                    b0, n0 = cpu_seconds(backend), tree_cpu_seconds(nginx_proc.pid)
                    r = run_wrk(f"http://127.0.0.1:{port_of[shape]}{path}", args, lua)
                    r["backend_us"] = (cpu_seconds(backend) - b0) / r["requests"] * 1e6
                    r["nginx_us"] = (tree_cpu_seconds(nginx_proc.pid) - n0) / r["requests"] * 1e6
                    samples.setdefault((scenario, shape), []).append(r)
        results = {key: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                   for key, runs in samples.items()}

        transport = "TCP" if args.tcp else "unix socket"
        print(f"nginx -> fastwsgi, upstream over {transport}; wrk -t{args.threads} "
              f"-c{args.connections} -d{args.duration}s, median of {args.rounds} rounds; "
              f"{os.cpu_count()} CPUs\n")
        print("| scenario | upstream | req/s | fastwsgi CPU us/req | nginx CPU us/req |")
        print("| --- | --- | ---: | ---: | ---: |")
        for (scenario, shape), r in results.items():
            flag = f" (wrk: {r['errors'].strip()})" if r["errors"].strip() else ""
            print(f"| {scenario} | {shape} | {r['rps']:,.0f}{flag} | {r['backend_us']:.1f} | "
                  f"{r['nginx_us']:.1f} |")
        print("\n| scenario | uwsgi / http-keepalive req/s | uwsgi / http-close req/s |")
        print("| --- | ---: | ---: |")
        report = []
        for scenario in SCENARIOS:
            r = {shape: results[(scenario, shape)] for shape in SHAPES}
            keep, close, uw = (r[s]["rps"] for s in SHAPES)
            print(f"| {scenario} | {uw / keep:.2f} | {uw / close:.2f} |")
            report.append({"scenario": scenario, "transport": transport,
                           "results": {s: r[s] for s in SHAPES},
                           "uwsgi_over_http_keepalive": uw / keep,
                           "uwsgi_over_http_close": uw / close})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if proc is procs[-1] else signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
