"""Several WSGI apps on one server by path prefix, and the app a server runs.

``mount({"/": site, "/api": "api.wsgi:application"})`` returns a WSGI app that
dispatches on PATH_INFO exactly as Werkzeug's DispatcherMiddleware does: the
longest mounted prefix that is a whole-segment prefix of the path wins, its prefix
moves from PATH_INFO to the end of SCRIPT_NAME (PEP 3333: SCRIPT_NAME + PATH_INFO
stays the path), and a path under no prefix goes to the "/" app, or gets 404.

    GET /api/users   mounts /api  ->  SCRIPT_NAME="/api"  PATH_INFO="/users"
    GET /api         mounts /api  ->  SCRIPT_NAME="/api"  PATH_INFO=""
    GET /apiary      mounts /api  ->  the "/" app, PATH_INFO="/apiary"

Routing is on the normalized path, so that the app a request reaches is the one
a normalizing front end (nginx) chose its rules for: PATH_INFO (already
percent-decoded by the server, so "%2e%2e" and "%2f" are ".." and "/" here, as
in nginx) loses its dot segments as RFC 3986 §5.2.4 says ("/admin/../api/x" is
"/api/x"; a ".." at the root is dropped) and runs of "/" become one (nginx's
merge_slashes, on by default).  The app gets the normalized SCRIPT_NAME and
PATH_INFO; RAW_URI / REQUEST_URI keep the bytes the client sent.

    GET /admin/../api/x  mounts /api  ->  SCRIPT_NAME="/api"  PATH_INFO="/x"
    GET //api//x         mounts /api  ->  SCRIPT_NAME="/api"  PATH_INFO="/x"

Values may be WSGI callables or APP_SPEC strings (loaded with fastwsgi's loader).
``fastwsgi.mount`` is the function (fastwsgi/__init__.py binds it over this
module's name; ``from fastwsgi.mount import Mount`` still reaches the module).

``build_app(app_spec, config)`` is what a server process runs: the APP_SPEC app,
or the mounts of ``config.mount`` (the CLI's PREFIX=APP_SPEC arguments; an
APP_SPEC beside them is the "/" app), behind ``config.static``'s StaticFiles.
"""

__all__ = ["Mount", "mount", "build_app", "normalize_path"]


def normalize_path(path):
    """RFC 3986 §5.2.4 remove_dot_segments on an absolute path, with empty
    segments ("//") merged; a path that does not start with "/" is returned as
    it is.  "/a/./b/../c/" -> "/a/c/", "/.." -> "/", "/a//b" -> "/a/b"."""
    if not path.startswith("/") or ("/." not in path and "//" not in path):
        return path                      # nothing to remove: the common case
    segments = path.split("/")
    out = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    # a path ending in "/", "/." or "/.." names a directory: keep its "/"
    if out and segments[-1] in ("", ".", ".."):
        out.append("")
    return "/" + "/".join(out)


def _not_found(environ, start_response):
    body = b"Not Found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(body)))])
    return [body]


class Mount:
    """The dispatcher; ``mounts`` maps "/prefix" (no trailing "/") to apps."""

    def __init__(self, mounts):
        self.mounts = {}
        self.default = _not_found
        for prefix, app in dict(mounts).items():
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ValueError(f"mount prefix must start with '/', got {prefix!r}")
            if isinstance(app, str):
                from fastwsgi._loader import load_app
                app = load_app(app)
            if not callable(app):
                raise ValueError(f"the app mounted at {prefix!r} is not callable")
            prefix = prefix.rstrip("/")
            if prefix in self.mounts or (not prefix and self.default is not _not_found):
                raise ValueError(f"two apps mounted at {prefix or '/'!r}")
            if prefix:
                self.mounts[prefix] = app
            else:
                self.default = app

    def __call__(self, environ, start_response):
        script = normalize_path(environ.get("PATH_INFO", ""))
        path_info = ""
        # Werkzeug's walk: try the whole path, then drop one segment at a time
        while "/" in script:
            app = self.mounts.get(script)
            if app is not None:
                break
            script, last = script.rsplit("/", 1)
            path_info = f"/{last}{path_info}"
        else:
            app = self.mounts.get(script, self.default)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + script
        environ["PATH_INFO"] = path_info
        return app(environ, start_response)


def mount(mounts):
    """A WSGI app serving ``{"/prefix": app or "module:app", ...}``; see the module doc."""
    return Mount(mounts)


def build_app(app_spec, config):
    """The app for a server process (CLI, workers); AppLoadError says what is wrong."""
    from fastwsgi._loader import AppLoadError, load_app
    pairs = [item.split("=", 1) for item in (config.mount or [])]
    if pairs:
        mounts = {prefix: spec for prefix, spec in pairs}
        if app_spec:
            if "/" in mounts:
                raise AppLoadError(f"both APP_SPEC {app_spec!r} and the mount "
                                   f"/={mounts['/']} name the app at '/'")
            mounts["/"] = app_spec
        try:
            app = Mount({prefix: load_app(spec) for prefix, spec in mounts.items()})
        except ValueError as exc:
            raise AppLoadError(str(exc)) from None
    else:
        app = load_app(app_spec)
    if config.static:
        from fastwsgi.static import StaticFiles
        directories = dict(item.split("=", 1) for item in config.static)
        try:
            app = StaticFiles(app, directories, dotfiles=config.static_dotfiles,
                              cache_control=config.static_cache_control)
        except ValueError as exc:
            raise AppLoadError(f"--static: {exc}") from None
    return app
