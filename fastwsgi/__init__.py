"""fastwsgi: a fast, strict WSGI HTTP/1.1 server with a compiled hot path.

Public API only; the server is imported on first use so that ``import fastwsgi``
stays cheap for the CLI and for config files.
"""

__version__ = "0.1.0"

__all__ = ["run", "make_server", "Server", "mount", "errors", "__version__"]

from fastwsgi import errors  # noqa: E402
# the function, bound over the submodule's name (importing fastwsgi.mount anywhere
# would otherwise make the package attribute the module)
from fastwsgi.mount import mount  # noqa: E402


def __getattr__(name):
    if name in ("run", "make_server", "Server"):
        from fastwsgi import server
        return getattr(server, name)
    raise AttributeError(f"module 'fastwsgi' has no attribute {name!r}")
