"""fastwsgi: a fast, strict WSGI HTTP/1.1 server with a compiled hot path.

Public API only; the server is imported on first use so that ``import fastwsgi``
stays cheap for the CLI and for config files.
"""

# the one place the version is written: pyproject.toml reads it (dynamic version),
# the CLI, the banner and SERVER_SOFTWARE import it
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
    if name == "run_from_cli":
        # the entry point of the *other* PyPI 'fastwsgi' (James Roberts' C server):
        # its `fastwsgi` command overwrote ours and imported this package
        raise SystemExit(
            "fastwsgi: this 'fastwsgi' command belongs to the PyPI package 'fastwsgi' "
            "(another server); run 'pip uninstall fastwsgi' and reinstall "
            "fastwsgi-server to get this server's command back")
    raise AttributeError(f"module 'fastwsgi' has no attribute {name!r}")
