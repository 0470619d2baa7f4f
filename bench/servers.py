"""How to install and start each server under test.

Contract: ``SERVERS`` maps a name to a ``ServerSpec`` (venv packages, Debian
build dependencies, and the command line). ``install(spec, ...)`` returns the
spec's ``Env`` (None for nginx) or raises ``envs.EnvError``;
``start(spec, env, ...)`` returns a ``Running`` server, pinned to one CPU with
taskset and in its own session so that ``stop()`` can signal its whole
process group by id.

Common settings: one worker process, access logs off, the app imported as
``bench_apps:<name>`` from the run directory (never the repo, see apps.py).
"""
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import apps, envs

HOST = "127.0.0.1"
APP_PACKAGES = ("flask",)    # every venv runs the flask scenario


@dataclass(frozen=True)
class Launch:
    bin: Path        # the venv's bin/
    port: int
    app: str         # MODULE:ATTR
    rundir: Path

    @property
    def bind(self):
        return f"{HOST}:{self.port}"

    def launcher(self, server):
        return [str(self.bin / "python"), "bench_launch.py", server, HOST, str(self.port), self.app]


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: object            # Launch -> argv
    packages: tuple = ()
    dist: str = None           # distribution whose version is reported
    apt: tuple = ()            # Debian packages needed to build it
    ours: bool = False         # install the repo (fastwsgi) into the venv
    fixed_only: bool = False   # serves only a fixed response (nginx)
    only: tuple = ()           # if set, the only scenarios it runs
    venv: str = None           # venv shared with another spec (default: its name)
    note: str = ""

    def runs(self, scenario):
        if self.only:
            return scenario.name in self.only
        return scenario.fixed or not self.fixed_only


def _nginx_command(launch):
    prefix = launch.rundir / f"nginx-{launch.port}"
    prefix.mkdir(parents=True, exist_ok=True)
    for d in ("tmp",):
        (prefix / d).mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, bind=launch.bind))
    return ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]


# What every nginx of the bench shares (a str.format template: {prefix}); the
# http block is left open for the caller's upstreams and servers.
NGINX_HTTP_PREAMBLE = """\
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    # nginx closes a keep-alive connection after 1000 requests by default;
    # the Python servers never do.
    keepalive_requests 100000000;
"""

NGINX_CONF = """\
# Ceiling: a fixed response with no application behind it.
worker_processes 1;
daemon off;
""" + NGINX_HTTP_PREAMBLE + """\
    server {{
        listen {bind} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
    }}
}}
"""

SERVERS = {s.name: s for s in [
    ServerSpec(
        "fastwsgi", ours=True, packages=("httptools", "h11"), dist="fastwsgi-server",
        command=lambda l: [str(l.bin / "fastwsgi"), "--bind", l.bind, l.app],
        note="ours, installed from the repo"),
    ServerSpec(
        # Ours from another checkout (--base-repo): the "before" of a change,
        # measured in the same run as the "after".  Only when asked for.
        "fastwsgi-base", ours=True, packages=("httptools", "h11"), dist="fastwsgi",
        command=lambda l: [str(l.bin / "fastwsgi"), "--bind", l.bind, l.app],
        note="ours, installed from --base-repo"),
    ServerSpec(
        # Ours again, with the files served by the server itself instead of
        # the app: its own row in the static scenario.
        "fastwsgi-static", ours=True, packages=("httptools", "h11"), dist="fastwsgi",
        venv="fastwsgi", only=("static",),
        command=lambda l: [str(l.bin / "fastwsgi"), "--bind", l.bind,
                           "--static", f"/static={apps.STATIC_DIR}", l.app],
        note="ours, --static: files served by the server, not the app"),
    ServerSpec(
        # C on libuv + llhttp, a fork of the PyPI fastwsgi; started by
        # bench/launch.py, which raises its 10 MB request body limit.
        "fastpysgi", packages=("fastpysgi",), dist="fastpysgi",
        command=lambda l: l.launcher("fastpysgi"),
        note="C, libuv + llhttp; body limit raised to 64 MiB for upload"),
    ServerSpec(
        "pyruvate", packages=("pyruvate",), dist="pyruvate",
        command=lambda l: l.launcher("pyruvate"),
        note="Rust; one request per connection (its default; 1.6.1 with "
             "keep-alive on leaves the second request unanswered)"),
    ServerSpec(
        # the same, recording metrics for a status listener (its cost: issue 14)
        "fastwsgi-metrics", ours=True, packages=("httptools", "h11", "prometheus_client"),
        dist="fastwsgi",
        command=lambda l: [str(l.bin / "fastwsgi"), "--bind", l.bind,
                           "--status-bind", "127.0.0.1:0", l.app],
        note="ours, with --status-bind (metrics on)"),
    ServerSpec(
        "gunicorn-sync", packages=("gunicorn",), dist="gunicorn",
        command=lambda l: [str(l.bin / "gunicorn"), "--workers", "1", "--worker-class", "sync",
                           "--bind", l.bind, "--log-level", "warning", l.app],
        note="closes the connection after every response"),
    ServerSpec(
        "gunicorn-gthread", packages=("gunicorn",), dist="gunicorn",
        command=lambda l: [str(l.bin / "gunicorn"), "--workers", "1", "--worker-class", "gthread",
                           "--threads", "4", "--bind", l.bind, "--log-level", "warning", l.app]),
    ServerSpec(
        "waitress", packages=("waitress",), dist="waitress",
        command=lambda l: [str(l.bin / "waitress-serve"), f"--listen={l.bind}", "--threads=4",
                           l.app]),
    ServerSpec(
        "granian", packages=("granian",), dist="granian",
        command=lambda l: [str(l.bin / "granian"), "--interface", "wsgi", "--host", HOST,
                           "--port", str(l.port), "--workers", "1", "--runtime-threads", "1",
                           "--blocking-threads", "1", "--no-access-log",
                           "--log-level", "warning", l.app]),
    ServerSpec(
        "bjoern", packages=("bjoern",), dist="bjoern", apt=("libev-dev",),
        command=lambda l: l.launcher("bjoern")),
    ServerSpec(
        # The PyPI "fastwsgi" by James Roberts (C, libuv + llhttp). Same import
        # name as ours, hence its own venv. It imports pkg_resources.
        "fastwsgi-c", packages=("fastwsgi", "setuptools<81"), dist="fastwsgi",
        command=lambda l: l.launcher("fastwsgi-c"),
        note="PyPI fastwsgi (James Roberts), not ours"),
    ServerSpec(
        "socketify", packages=("socketify",), dist="socketify",
        command=lambda l: [str(l.bin / "python"), "-m", "socketify", l.app,
                           "--interface", "wsgi", "--host", HOST, "--port", str(l.port),
                           "--workers", "1", "--disable-listen-log", "true"]),
    ServerSpec(
        "uwsgi", packages=("uwsgi",), dist="uwsgi",
        command=lambda l: [str(l.bin / "uwsgi"), "--http-socket", l.bind,
                           "--module", l.app, "--processes", "1", "--threads", "1",
                           "--disable-logging", "--need-app", "--die-on-term",
                           "--ignore-sigpipe", "--ignore-write-errors",
                           "--disable-write-exception"],
        note="--http-socket: one request per connection (with --http11-socket's "
             "keep-alive one connection holds the only thread, and a generator's "
             "response is sent unframed on a connection left open)"),
    ServerSpec(
        "cheroot", packages=("cheroot",), dist="cheroot",
        command=lambda l: [str(l.bin / "cheroot"), "--bind", l.bind, "--threads", "4",
                           "--max-threads", "4", l.app]),
    ServerSpec(
        "wsgiref", dist=None, command=lambda l: l.launcher("wsgiref"),
        note="stdlib, HTTP/1.0, one request per connection"),
    ServerSpec(
        "nginx", fixed_only=True, command=_nginx_command,
        note="fixed response (return 200), the ceiling"),
]}

DEFAULT_ORDER = [name for name in SERVERS if name != "fastwsgi-base"]


class StartError(Exception):
    pass


def ensure_apt(packages, log=print):
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    cmd = ["apt-get", "install", "-y", "-q"] + missing
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, capture_output=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise envs.EnvError(f"apt-get install {' '.join(missing)} failed: "
                                f"{proc.stderr.strip()[-300:]}")


def install(spec, python=None, repo=None, log=print, base_repo=None):
    if spec.fixed_only:
        if not shutil.which("nginx"):
            ensure_apt(("nginx-light",), log)
        return None
    ensure_apt(spec.apt, log)
    if spec.name == "fastwsgi-base":
        if base_repo is None:
            raise envs.EnvError("fastwsgi-base needs --base-repo PATH (another checkout)")
        repo = base_repo
    return envs.ensure(spec.venv or spec.name, APP_PACKAGES + spec.packages, python=python,
                       repo=repo if spec.ours else None, log=log)


def version(spec, env):
    if spec.fixed_only:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return out.stderr.strip().split("/")[-1]
    if spec.dist is None:
        out = subprocess.run([str(env.python), "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True)
        return "Python " + out.stdout.strip()
    return env.version(spec.dist)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Running:
    spec: ServerSpec
    argv: list
    proc: subprocess.Popen
    port: int
    logfile: Path
    _log: object = field(repr=False, default=None)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=5):
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def wait_ready(self, timeout=30.0):
        """Until the port accepts a connection; StartError if it dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise StartError(f"not listening after {timeout:.0f}s: {self.log_tail()}")

    def stop(self, timeout=5.0):
        if self.alive():
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Workers left behind by a master killed with SIGKILL: same group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._log:
            self._log.close()


def start(spec, env, app, label, rundir, cpu=0, nice=0):
    """Start ``spec`` serving ``app`` (MODULE:ATTR in ``rundir``)."""
    port = free_port()
    launch = Launch(env.bin if env else Path("/nonexistent"), port, app, Path(rundir))
    argv = spec.command(launch)
    if nice:
        argv = ["nice", "-n", str(nice)] + argv
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    logfile = Path(rundir) / "logs" / f"{spec.name}-{label}-{port}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log = open(logfile, "w")
    child_env = dict(os.environ, PYTHONPATH=str(rundir), PYTHONUNBUFFERED="1",
                     PYTHONDONTWRITEBYTECODE="1")
    child_env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen(argv, cwd=rundir, env=child_env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Running(spec, argv, proc, port, logfile, log)


def display_command(argv, port):
    """The command line with the venv and port made generic, for the report."""
    out = []
    for a in argv:
        a = a.replace(str(envs.VENVS) + "/", "bench/.venvs/").replace(str(port), "PORT")
        out.append(a)
    return " ".join(out)
