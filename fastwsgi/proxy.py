"""Deployment behind a proxy: which peers are trusted, forwarded headers, listener
protocols (HTTP, uwsgi, PROXY protocol).

Contract (used by fastwsgi/server.py):
- ``listener_options(config, sock) -> dict`` gives the keyword arguments of
  ``Loop.add_listener`` for one listening socket: ``protocol`` (0 HTTP, 1 uwsgi),
  ``proxy_protocol`` (bool: a PROXY header precedes each connection's first request),
  ``trust`` (callable(remote_addr: str) -> bool, or None: nobody is trusted; unix
  socket peers have remote_addr "").
- ``forwarded_handler(config) -> callable(environ) | None``: applied to each request
  of a trusted connection before the app sees it.

Stub: HTTP only, nobody trusted.
"""


def listener_options(config, sock):
    return {}


def forwarded_handler(config):
    return None
