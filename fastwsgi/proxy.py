"""Deployment behind a proxy: which peers are trusted, and forwarded headers.

Contract (used by fastwsgi/listeners.py and fastwsgi/server.py):
- ``Trust(spec)`` / ``Trust.from_config(config)``: callable(remote_addr: str) ->
  bool for a ``--forwarded-allow-ips`` list (unix socket peers have remote_addr
  ""); from_config gives None for an empty list (nobody is trusted).  Each
  listener carries one (fastwsgi.listeners.Listener.trust): it decides whether a
  peer may send a PROXY header, uwsgi packets and forwarded headers.
- ``forwarded_handler(config) -> callable(environ) | None``: applied to each request
  of a trusted connection before the app sees it.

Forwarded headers (from trusted peers only; ``--forwarded-allow-ips``):

* One family per request: if any ``X-Forwarded-For/-Proto/-Host/-Port`` is
  present those are used and ``Forwarded`` is ignored, else RFC 7239
  ``Forwarded``.  A proxy that sets one family passes the other through from
  the client untouched; preferring the de-facto one (nginx, HAProxy, cloud
  balancers set it) means the common setups cannot be spoofed with the other.
* Client address: the rightmost untrusted hop, as uvicorn does.  The chain is
  the forwarded addresses followed by REMOTE_ADDR (the socket peer over HTTP, the
  packet's REMOTE_ADDR over uwsgi, the PROXY header's client); walking it from
  the right, trusted entries are proxies and the first untrusted one is the
  client (all trusted: the leftmost).  Whatever a client writes into the header
  stays to the left of the address the first trusted proxy appended, so it is
  never picked.  If REMOTE_ADDR itself is untrusted (a uwsgi packet or PROXY
  header naming a real client), every forwarded header came from that client
  and none is applied.  A hop that is not an IP address ("unknown", an RFC 7239
  obfuscated "_id") is the client with an unknown address: REMOTE_ADDR stays.
  REMOTE_PORT becomes the hop's port if it gave one, else "".
* Scheme, host and port: from X-Forwarded-Proto/-Host/-Port the rightmost value
  (the one the nearest proxy wrote); from Forwarded the ``proto=`` / ``host=`` of
  the element whose ``for=`` was picked as the client (the proxy that received
  the request from it).  wsgi.url_scheme is only ever "http" or "https";
  HTTP_HOST and SERVER_NAME/SERVER_PORT follow the host; X-Forwarded-Port sets
  SERVER_PORT and the port of HTTP_HOST (as Werkzeug's ProxyFix).  Values that
  are not a valid host, port or scheme are ignored.
"""

import re
import socket

__all__ = ["forwarded_handler", "Trust"]


# ----------------------------------------------------------------------------- trust


# An IPv4 address as ipaddress writes it (no leading zeros, octets 0-255): a peer
# address in this form is the trusted host of the same spelling, or no host.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _is_ipv6_address(text):
    """A plain IPv6 address (no /prefix, no %scope), without importing ipaddress."""
    try:
        socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    return True


class Trust:
    """callable(addr) -> bool for one --forwarded-allow-ips value.

    "" is a unix-socket peer.  Results are cached per address (the loop asks once
    per connection, and peers are few: the proxies).

    ipaddress is imported only when needed: for networks, and for a peer that is
    not an IPv4 address in canonical form.  With only IPv4 hosts, IPv6
    addresses and "unix" (the default, "127.0.0.1,::1,unix"), an IPv4 peer is
    judged by its spelling, which is what a socket peer and nginx's REMOTE_ADDR
    look like.
    """

    CACHE_MAX = 4096

    def __init__(self, spec):
        items = [part.strip() for part in spec.split(",") if part.strip()]
        self.everyone = "*" in items
        self.unix = "unix" in items
        self._addresses = [i for i in items if i not in ("*", "unix")]
        self._ipv4_hosts = frozenset(i for i in self._addresses if _IPV4.fullmatch(i))
        others = [i for i in self._addresses if i not in self._ipv4_hosts]
        # IPv6 networks never hold an IPv4 address: an IPv4 peer's spelling is
        # enough unless there are IPv4 networks (and those need ipaddress anyway)
        self._by_spelling = all(_is_ipv6_address(i) for i in others)
        self._networks = None
        if not self._by_spelling:
            self.networks  # noqa: B018 - a bad item raises ValueError here and now
        self._cache = {}

    @property
    def networks(self):
        """The items as ipaddress networks (imports ipaddress)."""
        if self._networks is None:
            import ipaddress
            self._networks = [ipaddress.ip_network(i, strict=False) for i in self._addresses]
        return self._networks

    @classmethod
    def from_config(cls, config):
        spec = config.forwarded_allow_ips
        return cls(spec) if spec else None

    def __call__(self, addr):
        if self.everyone:
            return True
        cached = self._cache.get(addr)
        if cached is None:
            cached = self._check(addr)
            if len(self._cache) < self.CACHE_MAX:
                self._cache[addr] = cached
        return cached

    def _check(self, addr):
        if addr == "":
            return self.unix
        if self._by_spelling and _IPV4.fullmatch(addr):
            return addr in self._ipv4_hosts
        import ipaddress
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        return any(ip in net for net in self.networks)


# ------------------------------------------------------------------ header grammar

# RFC 3986 host (reg-name, IPv4, [IPv6]) with an optional port: what may go into
# HTTP_HOST / SERVER_NAME.  Anything else (spaces, "@", "/", CTLs) is ignored.
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::(\d{1,5}))?$")
_PORT = re.compile(r"^\d{1,5}$")
_SCHEMES = {"http": "http", "https": "https"}

# RFC 7239 §4: forwarded-pair = token "=" value; value = token / quoted-string
_PAIR = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*'
                   r'("(?:[^"\\]|\\.)*"|[!#$%&\'*+\-.^_`|~0-9A-Za-z:\[\]]*)\s*')


def _parse_forwarded(value):
    """RFC 7239 Forwarded -> a list of {param: value} elements, or None if malformed."""
    elements = []
    pos, n = 0, len(value)
    current = {}
    while pos < n:
        m = _PAIR.match(value, pos)
        if not m:
            return None
        name, v = m.group(1).lower(), m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        current[name] = v
        pos = m.end()
        if pos == n:
            break
        sep = value[pos]
        pos += 1
        if sep == ",":
            elements.append(current)
            current = {}
        elif sep != ";":
            return None
    elements.append(current)
    return elements


def _node(text):
    """A for= / X-Forwarded-For entry -> (ip str, port str) or None (not an IP).

    RFC 7239 §6: node = nodename [ ":" node-port ]; IPv6 in brackets."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        host, rest = text[1:close], text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text            # IPv4, or a bare IPv6 (X-Forwarded-For has those)
    if port and not (_PORT.match(port) and int(port) <= 65535):
        port = ""              # an obfuscated port ("_x"): drop it, keep the address
    import ipaddress
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), port


def _split_host(host):
    """A validated Host value -> (name, port or None)."""
    m = _HOST.match(host)
    if not m or (m.group(1) and int(m.group(1)) > 65535):
        return None
    port = m.group(1)
    name = host[: len(host) - len(port) - 1] if port else host
    return name, port


def _last(value):
    return value.rsplit(",", 1)[-1].strip()


# ------------------------------------------------------------------------ handler


class ForwardedHeaders:
    """The forwarded_handler: rewrites one trusted request's environ in place."""

    def __init__(self, trust):
        self.trust = trust

    def __call__(self, environ):
        if not self.trust(environ.get("REMOTE_ADDR", "")):
            # the client itself is the peer (PROXY protocol) or the packet's
            # REMOTE_ADDR (uwsgi): every forwarded header came from it
            return
        xff = environ.get("HTTP_X_FORWARDED_FOR")
        xproto = environ.get("HTTP_X_FORWARDED_PROTO")
        xhost = environ.get("HTTP_X_FORWARDED_HOST")
        xport = environ.get("HTTP_X_FORWARDED_PORT")
        if xff is not None or xproto is not None or xhost is not None or xport is not None:
            if xff is not None:
                self._client(environ, xff.split(","))
            scheme = _SCHEMES.get(_last(xproto).lower()) if xproto else None
            host = _last(xhost) if xhost else None
            port = _last(xport) if xport else None
        else:
            forwarded = environ.get("HTTP_FORWARDED")
            if forwarded is None:
                return
            elements = _parse_forwarded(forwarded)
            if elements is None:
                return              # malformed: ignored as a whole
            # the element of the client's hop: the proxy that received from it
            element = elements[self._client(environ, [e.get("for", "") for e in elements])]
            scheme = _SCHEMES.get(element.get("proto", "").lower())
            host = element.get("host")
            port = None
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        if host:
            split = _split_host(host)
            if split is not None:
                environ["HTTP_HOST"] = host
                environ["SERVER_NAME"] = split[0].strip("[]")
                environ["SERVER_PORT"] = split[1] or (
                    "443" if environ.get("wsgi.url_scheme") == "https" else "80")
        if port and _PORT.match(port) and int(port) <= 65535:
            environ["SERVER_PORT"] = port
            current = environ.get("HTTP_HOST")
            if current:
                split = _split_host(current)
                if split is not None:
                    environ["HTTP_HOST"] = f"{split[0]}:{port}"

    def _client(self, environ, hops):
        """Walk the hops from the right (REMOTE_ADDR, their right neighbour, is
        trusted); the first untrusted one, or the leftmost, is the client: its
        address and port go to REMOTE_ADDR / REMOTE_PORT.  Returns its index.  A
        non-IP hop ("unknown", "_hidden") is the client too, address unknown:
        REMOTE_ADDR stays."""
        for i in range(len(hops) - 1, -1, -1):
            node = _node(hops[i])
            if node is None:
                return i
            if i == 0 or not self.trust(node[0]):
                environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = node
                return i
        return 0


def forwarded_handler(config):
    trust = Trust.from_config(config)
    return ForwardedHeaders(trust) if trust is not None else None
