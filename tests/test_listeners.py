"""Listener records (fastwsgi/listeners.py): each listening socket knows its
protocol, whom it trusts and its own base environ, from bind to accept.

Real servers on port 0; an untrusted peer is simulated on this machine by
connecting from another loopback address (127.0.0.2) to a server whose trust
list holds only 127.0.0.1.  Each server test runs in a single process, with
--threads and with a master and two workers, where the sockets are bound by the
master and paired with their binds in the workers.
"""

import json
import socket
import struct

import pytest

from fastwsgi.config import Config, parse_bind

MODES = {
    "single": (),
    "threads": ("--threads", "4"),
    "master": ("--workers", "2"),
}


def packet(pairs):
    data = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in pairs)
    return bytes([0]) + struct.pack("<H", len(data)) + bytes([0]) + data


SPOOFED_UWSGI = packet([
    (b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/"), (b"QUERY_STRING", b""),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REMOTE_ADDR", b"10.1.2.3"),
    (b"REMOTE_USER", b"admin"), (b"HTTPS", b"on"), (b"SERVER_NAME", b"bank.example"),
    (b"SERVER_PORT", b"443"), (b"HTTP_HOST", b"bank.example"),
])


def exchange(address, data, source=None, timeout=10):
    """Send data on a fresh connection (from `source`), read until the server closes."""
    with socket.create_connection(address, timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        s.sendall(data)
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    return raw


def body_json(raw):
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def http_get(address, source=None, header=b""):
    return exchange(address, header + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                    source)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------- the record


def test_each_listener_has_its_own_base_environ_and_protocol():
    from fastwsgi.listeners import bind_listeners, listeners_for
    config = Config.from_options(bind=["127.0.0.1:0", "uwsgi://127.0.0.2:0"])
    listeners = bind_listeners(config)
    try:
        ports = [l.sock.getsockname()[1] for l in listeners]
        assert [l.protocol for l in listeners] == [0, 1]
        assert [l.bind for l in listeners] == [parse_bind(b) for b in config.bind]
        assert [(l.base_environ["SERVER_NAME"], l.base_environ["SERVER_PORT"])
                for l in listeners] == [("127.0.0.1", str(ports[0])),
                                        ("127.0.0.2", str(ports[1]))]
        # sockets bound elsewhere (the master) are paired with their binds by position
        again = listeners_for(config, [l.sock for l in listeners])
        assert [l.protocol for l in again] == [0, 1]
        # a socket list of another shape (systemd's) is not guessed at
        assert listeners_for(config, [listeners[1].sock])[0].protocol == 0
    finally:
        for l in listeners:
            l.sock.close()


def test_refused_peers_are_logged_once_each_and_rate_limited(caplog):
    from fastwsgi.listeners import Listener
    with socket.socket() as s:
        listener = Listener(s, parse_bind("uwsgi://127.0.0.1:0"), Config())
        with caplog.at_level("WARNING", logger="fastwsgi.error"):
            for _ in range(3):
                listener.refused("10.0.0.1")
            for i in range(50):
                listener.refused(f"10.0.1.{i}")
        records = [r.getMessage() for r in caplog.records]
    assert len(records) == 1, records
    assert "10.0.0.1" in records[0] and "forwarded-allow-ips" in records[0]


# ----------------------------------------------------------------- through servers


@pytest.mark.parametrize("mode", MODES)
def test_two_binds_each_report_their_own_server_name_and_port(serve, mode):
    server = serve("--bind", "127.0.0.2:0", *MODES[mode], "deploy:app")
    ports = [int(a.rsplit(":", 1)[1]) for a in server.addresses]
    hosts = ["127.0.0.1", "127.0.0.2"]
    for host, port in zip(hosts, ports):
        info = body_json(http_get((host, port)))
        assert (info["SERVER_NAME"], info["SERVER_PORT"]) == (host, str(port))


def test_same_port_on_two_hosts_keeps_each_ones_protocol(serve):
    for _ in range(5):                   # the port may be taken meanwhile: retry
        port = free_port()
        try:
            server = serve("--bind", f"127.0.0.1:{port}", "--bind",
                           f"uwsgi://127.0.0.2:{port}", "deploy:app", bind=False)
            break
        except RuntimeError:
            continue
    else:
        pytest.fail("no free port on both 127.0.0.1 and 127.0.0.2")
    assert body_json(http_get(("127.0.0.1", port)))["SERVER_PORT"] == str(port)
    # a uwsgi packet from a trusted (loopback 127.0.0.1) peer on the uwsgi listener
    info = body_json(exchange(("127.0.0.2", port), SPOOFED_UWSGI, source="127.0.0.1"))
    assert info["REMOTE_ADDR"] == "10.1.2.3"
    assert server.alive()


@pytest.mark.parametrize("mode", MODES)
def test_proxy_header_from_an_untrusted_peer_is_refused(serve, mode):
    server = serve("--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1", *MODES[mode],
                   "deploy:app")
    address = (server.host, server.port)
    header = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n"
    raw = http_get(address, source="127.0.0.2", header=header)
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    assert b"10.1.2.3" not in raw and b"REMOTE_ADDR" not in raw
    # the trusted peer's header is believed, and the server serves on
    info = body_json(http_get(address, source="127.0.0.1", header=header))
    assert info["REMOTE_ADDR"] == "10.1.2.3"


def test_proxy_header_is_refused_from_everyone_with_an_empty_trust_list(serve):
    server = serve("--proxy-protocol", "--forwarded-allow-ips", "", "deploy:app")
    raw = http_get((server.host, server.port),
                   header=b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]


@pytest.mark.parametrize("mode", MODES)
def test_uwsgi_from_an_untrusted_peer_is_closed_and_logged_once(serve, mode):
    server = serve("--protocol", "uwsgi", "--forwarded-allow-ips", "127.0.0.1", *MODES[mode],
                   "deploy:app")
    address = (server.host, server.port)
    for _ in range(3):
        assert exchange(address, SPOOFED_UWSGI, source="127.0.0.2") == b""
    info = body_json(exchange(address, SPOOFED_UWSGI, source="127.0.0.1"))
    assert (info["REMOTE_ADDR"], info["HTTPS"]) == ("10.1.2.3", "on")
    server.wait_for_output(r"refused a uwsgi connection from 127\.0\.0\.2")
    assert len([line for line in server.output.splitlines()
                if "refused a uwsgi connection" in line]) <= (2 if mode == "master" else 1)


def test_uwsgi_over_a_unix_socket_is_trusted_by_default(serve, tmp_path):
    path = str(tmp_path / "u.sock")
    serve("--bind", f"uwsgi://unix:{path}", "deploy:app", bind=False)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(SPOOFED_UWSGI)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert body_json(raw)["REMOTE_ADDR"] == "10.1.2.3"


# ------------------------------------------------- in process: the compiled loop


def test_in_process_loop_hands_each_connection_its_listeners_record():
    """The compiled loop and connection, driven in this process: Listener records
    made at bind time reach each accepted connection (base environ, trust)."""
    import threading

    from fastwsgi.server import Server

    seen = []

    def app(environ, start_response):
        seen.append((environ["SERVER_NAME"], environ["SERVER_PORT"], environ["REMOTE_ADDR"]))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    config = Config.from_options(bind=["127.0.0.1:0", "127.0.0.2:0"], proxy_protocol=True,
                                 forwarded_allow_ips="127.0.0.1")
    server = Server(app, config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        addresses = [sock.getsockname() for sock in server.sockets]
        assert [l.base_environ["SERVER_PORT"] for l in server.listeners] == \
            [str(port) for _, port in addresses]
        header = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 80\r\n"
        for host, port in addresses:
            assert http_get((host, port), source="127.0.0.1", header=header) \
                .startswith(b"HTTP/1.1 200")
            assert http_get((host, port), source="127.0.0.2", header=header) \
                .startswith(b"HTTP/1.1 400")
        assert seen == [(host, str(port), "10.1.2.3") for host, port in addresses]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
