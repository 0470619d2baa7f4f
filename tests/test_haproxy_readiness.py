"""A real HAProxy (Debian's haproxy) health-checks two fastwsgi instances on
/readyz: the one sent SIGTERM (with a request in flight) is taken out of rotation
while it still runs, and a client load through HAProxy -- with retries off, so
nothing is hidden -- sees no failed request.  Order is established by observation
(HAProxy's own stats socket says DOWN; the instance is still alive), not by time:
--drain-delay is long, and a second SIGTERM ends it once HAProxy has reacted."""

import signal
import socket
import subprocess

from observe_helpers import Held, free_port, in_flight, readyz, require_binary, status_port
from process_helpers import Load, children, wait_until

HAPROXY = "/usr/sbin/haproxy"

CONFIG = """\
global
    stats socket {stats} mode 600 level admin
    maxconn 256

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 0
    option http-server-close
    http-reuse never

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    server a 127.0.0.1:{a_port} check port {a_status} inter 100 fall 1 rise 1
    server b 127.0.0.1:{b_port} check port {b_status} inter 100 fall 1 rise 1
"""


def haproxy_binary():
    return require_binary(HAPROXY, "haproxy", "the readiness test drives a real HAProxy")


class HAProxy:
    def __init__(self, tmp_path, a, b):
        self.stats = str(tmp_path / "haproxy.sock")
        self.port = free_port()
        self.host = "127.0.0.1"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(CONFIG.format(stats=self.stats, port=self.port, a_port=a.port,
                                     a_status=status_port(a), b_port=b.port,
                                     b_status=status_port(b)))
        self.proc = subprocess.Popen([haproxy_binary(), "-f", str(cfg), "-db"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def servers(self):
        """{server name: status} from HAProxy's stats socket ("UP", "DOWN", ...)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.stats)
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        lines = data.decode().splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "be"
                and r["svname"] not in ("FRONTEND", "BACKEND")}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)      # soft stop
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stdout.read().decode(errors="replace")


def test_haproxy_stops_routing_to_a_draining_instance_before_it_closes(serve, tmp_path):
    haproxy_binary()
    options = ("observe_app:app", "-w", "2", "--threads", "2", "--drain-delay", "120",
               "--status-bind", "127.0.0.1:0")
    a = serve(*options)
    b = serve(*options)
    proxy = HAProxy(tmp_path, a, b)
    try:
        wait_until(lambda: proxy.servers() == {"a": "UP", "b": "UP"}, timeout=15,
                   what="HAProxy to see both instances UP")
        a_pids = wait_until(lambda: children(a.pid) if len(children(a.pid)) == 2 else None,
                            what="a's workers")
        with Load(proxy, clients=4) as load:
            wait_until(lambda: a_pids & load.pids and load.ok > 50,
                       timeout=30, what="load through HAProxy reaching instance a")
            held = Held(a, tmp_path)           # a request in flight on a
            wait_until(lambda: in_flight(status_port(a)) == 1, what="the request in flight")
            a.send_signal(signal.SIGTERM)
            wait_until(lambda: proxy.servers().get("a", "").startswith("DOWN"),
                       timeout=15, what="HAProxy to take a out")
            assert a.alive(), "a closed before HAProxy stopped routing to it"
            assert readyz(status_port(a))[0] == 503
            cut = load.ok
            # a goes on serving what reaches it directly, but HAProxy sends it nothing
            wait_until(lambda: load.ok > cut + 100, timeout=30, what="more load")
            a.send_signal(signal.SIGTERM)      # end the drain delay: stop gracefully
            status, body = held.release()
            assert status == 200, (status, body)
            assert a.proc.wait(30) == 0
            after_exit = load.ok
            wait_until(lambda: load.ok > after_exit + 100, timeout=30,
                       what="load after a exited")
        assert load.failures == [], load.failures[:5]
        # every request HAProxy forwarded once a was DOWN went to b; a answered before
        late = set(load.answers[cut + 4:])       # 4: one per client may span the cut
        assert late and not (late & a_pids), (late, a_pids)
        assert set(load.answers[:cut]) & a_pids
    finally:
        proxy.stop()
