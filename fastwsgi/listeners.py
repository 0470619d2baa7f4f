"""Listening sockets and what each one is: the Listener record, made once at bind time.

Contract:
- ``bind_one(addr, backlog, unix_mode, reuse_port=False) -> socket`` opens one
  listening socket for a parsed ``--bind`` (fastwsgi.config.BindAddress).
- ``bind_sockets(config)`` opens those of ``config.bind`` (or takes systemd's);
  ``bind_listeners(config)`` does the same and returns Listener records.
  A failure raises OSError carrying ``.address`` (the bind text).
- ``listeners_for(config, sockets)`` makes the records for sockets bound
  elsewhere (the pre-fork master binds, the workers serve): a socket is paired
  with the ``config.bind`` entry at its position when the two agree (family,
  port or path), else (systemd sockets) it gets the global settings.
- ``Listener``: sock, bind (BindAddress or None), protocol (PROTOCOLS value),
  proxy_protocol (bool), trust (callable(addr) -> bool, or None: nobody),
  base_environ (this listener's SERVER_NAME/SERVER_PORT/url scheme and the
  constant PEP 3333 keys).  The compiled loop reads these attributes once, in
  ``Loop.add_listener``, and hands protocol, trust and base environ to every
  connection it accepts on the socket.  ``refused(addr)`` logs a peer the
  listener will not take uwsgi packets from (once per peer, rate-limited).

Trust (docs/deployment.md, SECURITY.md): a PROXY protocol header or a uwsgi
packet names the client and may set any CGI variable, so a listener takes them
only from peers in ``--forwarded-allow-ips`` (default: loopback and unix-socket
peers), the same list that decides whether X-Forwarded-* headers count.  An
untrusted peer's PROXY header gets 400 and a close; an untrusted peer on a uwsgi
listener is closed at accept.

To add a protocol or a per-listener option: a field here, set in Listener.__init__
from the bind or config, read in Loop.add_listener.
"""

import logging
import os
import socket
import stat
import sys
import time

from fastwsgi import __version__

__all__ = ["Listener", "PROTOCOLS", "bind_one", "bind_sockets", "bind_listeners",
           "listeners_for", "systemd_sockets", "socket_url", "base_environ"]

log = logging.getLogger("fastwsgi.error")

# what the compiled connection calls them (fastwsgi/_connection.pxd Protocol)
PROTOCOLS = {"http": 0, "uwsgi": 1}


# --------------------------------------------------------------------------- binding


def _idna_free(host):
    """``host`` for getaddrinfo(), as bytes when that is what the idna codec makes of it.

    getaddrinfo() encodes a str host with the idna codec, whose module imports
    stringprep and unicodedata (kept for the life of the server).  For an ASCII
    name whose labels are 1-63 bytes long (the last may be empty: "host.") the
    codec returns the ASCII bytes; anything else stays a str, for the codec.
    """
    try:
        raw = host.encode("ascii")
    except UnicodeEncodeError:
        return host
    labels = raw.split(b".")
    if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
        return raw
    return host


def bind_one(addr, backlog, unix_mode, reuse_port=False):
    """One listening socket for the BindAddress ``addr``."""
    if addr.kind == "fd":
        sock = socket.socket(fileno=addr.fd)
        return sock
    if addr.kind == "unix":
        try:
            if stat.S_ISSOCK(os.stat(addr.path).st_mode):
                os.unlink(addr.path)        # a stale socket of an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o777 & ~unix_mode)
            try:
                sock.bind(addr.path)
            finally:
                os.umask(old)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    host = addr.host
    if family == socket.AF_INET and host not in ("", "0.0.0.0"):
        # a host name: resolve it the way the kernel would connect
        infos = socket.getaddrinfo(_idna_free(host), addr.port, 0, socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        host = sockaddr[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, addr.port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def systemd_sockets():
    """Sockets passed by systemd socket activation, or [].

    sd_listen_fds(3): when LISTEN_PID is this process, fds 3 .. 3+LISTEN_FDS-1 are
    listening sockets.  The variables are then removed, so that processes the app
    starts do not take the fds for theirs.
    """
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(3, 3 + count):
        try:
            sockets.append(socket.socket(fileno=fd))
        except OSError as exc:
            exc.address = f"LISTEN_FDS fd {fd}"
            raise
    return sockets


def bind_sockets(config, reuse_port=None):
    """The listening sockets for config.bind, in its order; OSError.address names
    a failing bind.  Under systemd socket activation (LISTEN_FDS) the inherited
    sockets are used instead of config.bind, as gunicorn does."""
    return [sock for _, sock in _bind(config, reuse_port)[1]]


def bind_listeners(config, reuse_port=None, multiprocess=False):
    """bind_sockets(), as Listener records (each knows the bind it was made from)."""
    inherited, pairs = _bind(config, reuse_port)
    return [Listener(sock, None if inherited else bind, config, multiprocess)
            for bind, sock in pairs]


def _bind(config, reuse_port):
    """(inherited, [(BindAddress or None, socket)]): the work of both bind_* above."""
    from fastwsgi.config import parse_bind

    inherited = systemd_sockets()
    if inherited:
        for sock in inherited:
            sock.set_inheritable(True)
        return True, [(None, sock) for sock in inherited]
    pairs = []
    reuse = config.reuse_port if reuse_port is None else reuse_port
    try:
        for text in config.bind:
            addr = parse_bind(text)
            try:
                pairs.append((addr, bind_one(addr, config.backlog,
                                             config.unix_socket_mode, reuse)))
            except OSError as exc:
                exc.address = text
                raise
    except BaseException:
        for _, sock in pairs:
            sock.close()
        raise
    for _, sock in pairs:
        sock.set_inheritable(True)
    return False, pairs


def listeners_for(config, sockets, multiprocess=False):
    """Listener records for sockets bound elsewhere (see the module contract).

    Items that already are Listener records are kept as they are.  Sockets are
    paired with config.bind by position, and only when every pair agrees: a
    socket list of another shape (systemd's) gets the global settings rather
    than a guess."""
    from fastwsgi.config import parse_bind

    binds = [parse_bind(text) for text in config.bind]
    plain = [s for s in sockets if not isinstance(s, Listener)]
    paired = len(plain) == len(binds) and all(
        _agrees(b, s) for b, s in zip(binds, plain))
    result, i = [], 0
    for item in sockets:
        if isinstance(item, Listener):
            result.append(item)
            continue
        result.append(Listener(item, binds[i] if paired else None, config, multiprocess))
        i += 1
    return result


def _agrees(bind, sock):
    """Whether ``sock`` can have been made from ``bind``."""
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if bind.kind == "unix":
        if sock.family != socket.AF_UNIX:
            return False
        name = os.fsdecode(name) if isinstance(name, bytes) else name
        return name == bind.path
    if bind.kind == "tcp":
        return (sock.family in (socket.AF_INET, socket.AF_INET6)
                and (bind.port == 0 or name[1] == bind.port))
    return True     # fd://N: whatever the inherited socket is


def socket_url(sock):
    """How the banner names a listening socket."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# ------------------------------------------------------------------------ the record


class Listener:
    """One listening socket and what it is; see the module contract."""

    __slots__ = ("sock", "bind", "protocol", "proxy_protocol", "trust", "base_environ",
                 "_refused", "_quiet_until", "_suppressed")

    REFUSED_MEMORY = 4096       # peers remembered as already logged
    REFUSED_INTERVAL = 1.0      # seconds between two "refused" records at most

    def __init__(self, sock, bind, config, multiprocess=False):
        from fastwsgi.proxy import Trust

        self.sock = sock
        self.bind = bind
        name = (bind.protocol if bind is not None else None) or config.protocol
        self.protocol = PROTOCOLS[name]
        self.proxy_protocol = bool(config.proxy_protocol)
        self.trust = Trust.from_config(config)
        self.base_environ = base_environ(config, sock, multithread=config.threads > 1,
                                         multiprocess=multiprocess)
        self._refused = set()
        self._quiet_until = 0.0
        self._suppressed = 0

    @property
    def url(self):
        return socket_url(self.sock)

    def refused(self, addr):
        """An untrusted peer connected to a listener that needs trust (uwsgi): log
        it once per peer, and at most one record per REFUSED_INTERVAL (a scan from
        many addresses must not flood the log)."""
        if addr in self._refused:
            return
        if len(self._refused) < self.REFUSED_MEMORY:
            self._refused.add(addr)
        t = time.monotonic()
        if t < self._quiet_until:
            self._suppressed += 1
            return
        self._quiet_until = t + self.REFUSED_INTERVAL
        more = f" (and {self._suppressed} other peers)" if self._suppressed else ""
        self._suppressed = 0
        # addr is the kernel's text of the peer address (or "" for unix): no
        # client-chosen bytes
        log.warning("refused a %s connection from %s%s: not in --forwarded-allow-ips",
                    "uwsgi" if self.protocol == PROTOCOLS["uwsgi"] else "PROXY protocol",
                    addr or "a unix socket peer", more)

    def __repr__(self):
        return f"<Listener {self.url} protocol={self.protocol} proxy={self.proxy_protocol}>"


def request_timing(config):
    """Whether requests carry environ["fastwsgi.request_start"] and ["fastwsgi.queue_time"]
    (docs/observability.md): asked for, or needed by the JSON access log, the slow-request
    log or OpenTelemetry.  Off otherwise: two dict stores per request are ~5% of a
    hello-world request's instructions."""
    return bool(config.request_timing or config.otel or config.log_slow_requests
                or (config.access_log and config.access_log_format == "json"))


def base_environ(config, sock, multithread=False, multiprocess=False):
    """The keys every request of a listener shares (PEP 3333 §"environ Variables")."""
    from fastwsgi._connection import FileWrapper

    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        name = sock.getsockname()
        server_name, server_port = name[0], str(name[1])
    else:
        server_name, server_port = "localhost", "80"
    # (SCRIPT_NAME is the parser's: it splits it from PATH_INFO per request; a
    # base without request keys is cloned by the parser, the fast path)
    timing = {"fastwsgi.request_start": 0.0, "fastwsgi.queue_time": 0.0} \
        if request_timing(config) else {}
    return _roomy({
        "GATEWAY_INTERFACE": "CGI/1.1",
        # set per connection / request by the compiled connection; present here
        # so that setting them overwrites instead of growing the dict
        "REMOTE_ADDR": "",
        "REMOTE_PORT": "",
        "wsgi.input": None,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": f"fastwsgi/{__version__}",
        # placeholders, so that each request overwrites them rather than grows its dict
        **timing,
    })


def _roomy(base):
    """`base`, rebuilt so that its copies take a request's keys without resizing.

    Each request's environ is PyDict_Copy(base), which memcpys a compact dict's
    table (CPython's fast path needs used >= 2/3 of the table's entries).  A
    15-key dict has a 32-slot table that a dozen request keys overflow: one
    resize per request.  Inserting 7 placeholders first grows the table to 64
    slots; deleting them keeps the dict compact enough (15 >= 2/3 * 22) for the
    fast copy, which then has room for about 20 request keys.  Measured: a copy
    plus a typical request's keys goes from ~1.9 to ~0.4 us.  The keys are
    interned so that the compiled code's constants find them by identity.  On other dict
    implementations this is merely a dict with the same items."""
    roomy = {sys.intern(key): value for key, value in base.items()}
    n = len(base)
    pads = [f"\0pad{i}" for i in range(max(0, min(22 - n, n // 2)))]
    for key in pads:
        roomy[key] = None
    for key in pads:
        del roomy[key]
    return roomy
