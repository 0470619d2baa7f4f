"""Behind a proxy: trusted peers, forwarded headers, the PROXY protocol.

fastwsgi.proxy's pieces are tested on environ dicts first (the walk over the
hops, each header's grammar), then real servers check that only trusted peers
get them applied (TCP and unix sockets), and that PROXY protocol v1/v2 headers
name the client (the parser cut at every byte, then through a server).
"""

import json
import socket
import struct

import pytest

from fastwsgi import errors
from fastwsgi._proxyproto import parse as parse_proxy
from fastwsgi.config import Config
from fastwsgi.listeners import Listener, listeners_for
from fastwsgi.proxy import ForwardedHeaders, Trust, forwarded_handler

# --------------------------------------------------------------------------- trust


def test_trust_networks_unix_and_everyone():
    trust = Trust("127.0.0.1,10.0.0.0/8,::1,unix")
    assert trust("127.0.0.1") and trust("10.9.8.7") and trust("::1") and trust("")
    assert trust("::ffff:10.1.1.1")                 # IPv4-mapped IPv6
    assert not trust("127.0.0.2") and not trust("192.168.1.1") and not trust("garbage")
    assert not Trust("127.0.0.1")("")               # unix peers only with "unix"
    assert Trust("*")("203.0.113.9") and Trust("*")("")


def _trusted_by_ipaddress(spec, addr):
    """The oracle: every item an ipaddress network, the peer an ipaddress address."""
    import ipaddress
    items = [i.strip() for i in spec.split(",") if i.strip()]
    if "*" in items:
        return True
    if addr == "":
        return "unix" in items
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return any(ip in ipaddress.ip_network(i, strict=False)
               for i in items if i not in ("*", "unix"))


@pytest.mark.parametrize("spec", [
    "127.0.0.1,::1,unix",                   # the default: IPv4 peers judged by spelling
    "127.0.0.1,10.0.0.0/8,::1,unix",        # an IPv4 network: ipaddress throughout
    "10.0.0.1,192.168.0.7,::ffff:127.0.0.1,2001:db8::/32",
    "0.0.0.0,255.255.255.255,::",
    "::1",
    "192.168.1.7/32,fe80::1%eth0",
])
def test_trust_agrees_with_ipaddress(spec):
    trust = Trust(spec)
    for addr in ("127.0.0.1", "127.0.0.2", "10.0.0.1", "10.1.2.3", "192.168.0.7",
                 "192.168.1.7", "0.0.0.0", "255.255.255.255", "127.0.0.01", "127.1",
                 "1.2.3.4 ", "\uff11.2.3.4", "256.0.0.1", "::1", "0:0::1", "::",
                 "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2001:db8::5", "fe80::1",
                 "fe80::1%eth0", "", "unknown"):
        assert trust(addr) == _trusted_by_ipaddress(spec, addr), addr


@pytest.mark.parametrize("spec", ["::zz", "127.0.0.1,1::2::3", "10.0.0.0/33", "host"])
def test_trust_rejects_a_bad_item_at_once(spec):
    with pytest.raises(ValueError):
        Trust(spec)


def test_default_trusts_loopback_and_unix_only():
    config = Config()
    assert config.forwarded_allow_ips == "127.0.0.1,::1,unix"
    with socket.socket() as s:
        trust = Listener(s, None, config).trust
        assert trust("127.0.0.1") and trust("::1") and trust("") and not trust("10.0.0.1")
        assert forwarded_handler(Config.from_options(forwarded_allow_ips="")) is None
        assert Listener(s, None, Config.from_options(forwarded_allow_ips="")).trust is None


def test_forwarded_allow_ips_setting_is_validated():
    c = Config.from_options(forwarded_allow_ips=" 10.0.0.0/8 , 192.168.1.7/32,unix, ::1 ")
    assert c.forwarded_allow_ips == "10.0.0.0/8,192.168.1.7,unix,::1"
    with pytest.raises(errors.FastWSGIError, match="CIDR"):
        Config.from_options(forwarded_allow_ips="10.0.0.0/33")


def test_listener_protocol_per_bind():
    config = Config.from_options(bind=["uwsgi://127.0.0.1:0", "127.0.0.1:0"])
    socks = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        assert [listener.protocol for listener in listeners_for(config, socks)] == [1, 0]
        uwsgi = Config.from_options(protocol="uwsgi")
        assert [listener.protocol for listener in listeners_for(uwsgi, socks)] == [1, 1]
        assert str(config.bind_addresses[0]) == "uwsgi://127.0.0.1:0"
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- forwarded headers

TRUST = Trust("127.0.0.1,10.0.0.0/8,unix")


def apply(headers, remote="127.0.0.1", **extra):
    environ = {"REMOTE_ADDR": remote, "REMOTE_PORT": "5000", "wsgi.url_scheme": "http",
               "HTTP_HOST": "internal:8000", "SERVER_NAME": "internal", "SERVER_PORT": "8000"}
    environ.update(extra)
    environ.update(headers)
    ForwardedHeaders(TRUST)(environ)
    return environ


@pytest.mark.parametrize("xff, client", [
    ("203.0.113.5", "203.0.113.5"),
    ("203.0.113.5, 10.0.0.2", "203.0.113.5"),          # through two trusted proxies
    ("6.6.6.6, 203.0.113.5", "203.0.113.5"),           # the client's forged hop is left of it
    ("6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
    ("10.0.0.3, 10.0.0.2", "10.0.0.3"),                # all trusted: the leftmost
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]:4711", "2001:db8::1"),
    ("203.0.113.5:1234", "203.0.113.5"),
    ("unknown", "127.0.0.1"),                          # not an IP: REMOTE_ADDR stays
    ("6.6.6.6, unknown", "127.0.0.1"),
    ("", "127.0.0.1"),
])
def test_x_forwarded_for_rightmost_untrusted_hop(xff, client):
    assert apply({"HTTP_X_FORWARDED_FOR": xff})["REMOTE_ADDR"] == client


def test_x_forwarded_for_port():
    env = apply({"HTTP_X_FORWARDED_FOR": "203.0.113.5:1234"})
    assert env["REMOTE_PORT"] == "1234"
    assert apply({"HTTP_X_FORWARDED_FOR": "203.0.113.5"})["REMOTE_PORT"] == ""


def test_untrusted_remote_addr_applies_nothing():
    # a uwsgi packet's or PROXY header's REMOTE_ADDR is the client itself
    env = apply({"HTTP_X_FORWARDED_FOR": "6.6.6.6", "HTTP_X_FORWARDED_PROTO": "https"},
                remote="203.0.113.5")
    assert env["REMOTE_ADDR"] == "203.0.113.5" and env["wsgi.url_scheme"] == "http"


def test_x_forwarded_proto_host_port():
    env = apply({"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "example.com"})
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com" and env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "443"
    env = apply({"HTTP_X_FORWARDED_PROTO": "http, https", "HTTP_X_FORWARDED_HOST": "a.org:8443"})
    assert env["wsgi.url_scheme"] == "https" and env["SERVER_PORT"] == "8443"
    env = apply({"HTTP_X_FORWARDED_HOST": "a.org", "HTTP_X_FORWARDED_PORT": "8080"})
    assert env["HTTP_HOST"] == "a.org:8080" and env["SERVER_PORT"] == "8080"
    env = apply({"HTTP_X_FORWARDED_PORT": "9090"})
    assert env["HTTP_HOST"] == "internal:9090" and env["SERVER_PORT"] == "9090"


@pytest.mark.parametrize("headers", [
    {"HTTP_X_FORWARDED_PROTO": "javascript"},
    {"HTTP_X_FORWARDED_HOST": "evil.com/path"},
    {"HTTP_X_FORWARDED_HOST": "a b"},
    {"HTTP_X_FORWARDED_HOST": "user@evil.com"},
    {"HTTP_X_FORWARDED_PORT": "99999"},
    {"HTTP_X_FORWARDED_PORT": "8o"},
])
def test_invalid_values_are_ignored(headers):
    env = apply(headers)
    assert env["wsgi.url_scheme"] == "http" and env["HTTP_HOST"] == "internal:8000"
    assert env["SERVER_PORT"] == "8000"


def test_rfc7239_forwarded():
    env = apply({"HTTP_FORWARDED": 'for=203.0.113.5;proto=https;host="shop.example:8443"'})
    assert env["REMOTE_ADDR"] == "203.0.113.5" and env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example:8443" and env["SERVER_PORT"] == "8443"
    # two hops: the client's element is the one the first proxy wrote
    env = apply({"HTTP_FORWARDED": 'for=6.6.6.6;proto=https;host=evil, '
                                   'for="[2001:db8::7]:4711";proto=http;host=good.example, '
                                   'for=10.0.0.2;proto=https;host=inner'})
    assert env["REMOTE_ADDR"] == "2001:db8::7" and env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "http" and env["HTTP_HOST"] == "good.example"
    env = apply({"HTTP_FORWARDED": "for=_hidden;proto=https"})
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "https"


def test_malformed_forwarded_is_ignored_and_x_forwarded_wins():
    env = apply({"HTTP_FORWARDED": "for=203.0.113.5;;garbage=="})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    env = apply({"HTTP_FORWARDED": "for=6.6.6.6;proto=https",
                 "HTTP_X_FORWARDED_FOR": "203.0.113.5"})
    assert env["REMOTE_ADDR"] == "203.0.113.5" and env["wsgi.url_scheme"] == "http"


# ----------------------------------------------------------------- through a server


def get(address, path="/", headers=(), proxy_header=b"", requests=1):
    """Raw HTTP/1.1 GETs on one connection to a (host, port) or unix path."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(address)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers)
        out = proxy_header
        for i in range(requests):
            last = "Connection: close\r\n" if i == requests - 1 else ""
            out += f"GET {path} HTTP/1.1\r\nHost: h\r\n{head}{last}\r\n".encode()
        s.sendall(out)
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    bodies = []
    for part in raw.split(b"HTTP/1.1 ")[1:]:
        status = int(part[:3])
        body = part.split(b"\r\n\r\n", 1)[1]
        bodies.append(json.loads(body) if status == 200 else status)
    return bodies


XFF = [("X-Forwarded-For", "203.0.113.5"), ("X-Forwarded-Proto", "https")]


def test_trusted_tcp_peer_headers_apply(serve):
    server = serve("deploy:app")                    # default: loopback trusted
    info = get((server.host, server.port), headers=XFF)[0]
    assert info["REMOTE_ADDR"] == "203.0.113.5" and info["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize("name, value, key, expected", [
    ("x-FORWARDED-for", "203.0.113.5", "REMOTE_ADDR", "203.0.113.5"),
    ("X-Forwarded-PROTO", "https", "wsgi.url_scheme", "https"),
    ("x-forwarded-host", "shop.example", "HTTP_HOST", "shop.example"),
    ("X-FORWARDED-PORT", "8443", "SERVER_PORT", "8443"),
    ("FORWARDED", "for=198.51.100.7", "REMOTE_ADDR", "198.51.100.7"),
])
def test_each_forwarded_field_alone_applies_in_any_case(serve, name, value, key, expected):
    # The parser flags these five fields so that requests without them skip the
    # handler: each one alone, in any letter case, must still reach it.
    server = serve("deploy:app")
    plain, forwarded, after = _mixed((server.host, server.port), name, value)
    assert forwarded[key] == expected
    # the requests around it, on the same connection, are untouched
    for info in (plain, after):
        assert info["REMOTE_ADDR"] == "127.0.0.1" and info["wsgi.url_scheme"] == "http"
        assert info["HTTP_HOST"] == "h"


def _mixed(addr, name, value):
    """Three pipelined requests on one connection; only the second carries name."""
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
                  + f"GET / HTTP/1.1\r\nHost: h\r\n{name}: {value}\r\n\r\n".encode()
                  + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    return [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in raw.split(b"HTTP/1.1 ")[1:]]


def test_untrusted_tcp_peer_headers_are_ignored(serve):
    server = serve("--forwarded-allow-ips", "10.0.0.0/8", "deploy:app")
    info = get((server.host, server.port), headers=XFF)[0]
    assert info["REMOTE_ADDR"] == "127.0.0.1" and info["wsgi.url_scheme"] == "http"


def test_unix_peers(serve, tmp_path):
    trusted = str(tmp_path / "t.sock")
    untrusted = str(tmp_path / "u.sock")
    serve("--bind", f"unix:{trusted}", "deploy:app", bind=False)
    serve("--bind", f"unix:{untrusted}", "--forwarded-allow-ips", "127.0.0.1", "deploy:app",
          bind=False)
    assert get(trusted, headers=XFF)[0]["REMOTE_ADDR"] == "203.0.113.5"
    info = get(untrusted, headers=XFF)[0]
    assert info["REMOTE_ADDR"] == "" and info["wsgi.url_scheme"] == "http"


# -------------------------------------------------------------------- PROXY protocol

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command=1, family=0x11, addresses=b"", tlvs=b""):
    payload = addresses + tlvs
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(payload)) + payload


V2_TCP4 = v2(addresses=bytes([198, 51, 100, 7, 10, 0, 0, 1]) + struct.pack(">HH", 40000, 443))
V2_TCP6 = v2(family=0x21, addresses=socket.inet_pton(socket.AF_INET6, "2001:db8::5")
             + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack(">HH", 6000, 443),
             tlvs=b"\x04\x00\x01x")


@pytest.mark.parametrize("header, expected", [
    (b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 443\r\n", ["198.51.100.7", "40000"]),
    (b"PROXY TCP6 2001:db8:0::5 2001:db8::1 6000 443\r\n", ["2001:db8::5", "6000"]),
    (b"PROXY UNKNOWN\r\n", []),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", []),
    (V2_TCP4, ["198.51.100.7", "40000"]),
    (V2_TCP6, ["2001:db8::5", "6000"]),
    (v2(command=0, family=0), []),                       # LOCAL: health check
    (v2(family=0x31, addresses=b"\0" * 216), []),        # a unix client
])
def test_proxy_header_at_every_split(header, expected):
    for cut in range(len(header)):
        assert parse_proxy(header[:cut]) == (0, []), cut
    assert parse_proxy(header + b"GET / HTTP/1.1\r\n") == (len(header), expected)


@pytest.mark.parametrize("header", [
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                 # bare LF
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",               # two spaces
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 ::1 1 2\r\n",                       # family mismatch
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",               # leading zero
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY " + b"x" * 120,                              # no CRLF within 107 bytes
    V2_SIG[:11] + b"X",
    V2_SIG + b"\x31\x11\x00\x0c" + b"\0" * 12,           # version 3
    V2_SIG + b"\x22\x11\x00\x0c" + b"\0" * 12,           # command 2
    v2(addresses=b"\0" * 8),                             # TCP4 too short
    v2(family=0x41, addresses=b"\0" * 12),
])
def test_malformed_proxy_headers(header):
    with pytest.raises(errors.HttpParserError):
        parse_proxy(header)


def test_server_proxy_protocol_v1_and_v2(serve):
    server = serve("--proxy-protocol", "deploy:app")
    address = (server.host, server.port)
    infos = get(address, headers=[("X-Forwarded-For", "6.6.6.6")], requests=2,
                proxy_header=b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 443\r\n")
    # both requests of the connection; the client is untrusted: its X-F-F is ignored
    assert [(i["REMOTE_ADDR"], i["REMOTE_PORT"]) for i in infos] == [("198.51.100.7", "40000")] * 2
    info = get(address, proxy_header=V2_TCP6)[0]
    assert (info["REMOTE_ADDR"], info["REMOTE_PORT"]) == ("2001:db8::5", "6000")
    assert get(address, proxy_header=v2(command=0, family=0))[0]["REMOTE_ADDR"] == "127.0.0.1"
    # a proxy in front of the balancer can still be trusted through it
    info = get(address, headers=[("X-Forwarded-For", "203.0.113.9")],
               proxy_header=b"PROXY TCP4 10.0.0.7 10.0.0.1 40000 443\r\n")[0]
    assert info["REMOTE_ADDR"] == "10.0.0.7"          # 10.0.0.7 is not trusted here


def test_server_rejects_a_connection_without_proxy_header(serve):
    server = serve("--proxy-protocol", "deploy:app")
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        raw = s.recv(65536)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    assert b'"REMOTE_ADDR"' not in raw
    assert raw == b"" or raw.startswith(b"HTTP/1.1 400")
