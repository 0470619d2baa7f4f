"""Start a server that has no command line of its own taking MODULE:APP, or
whose command line cannot set what a scenario needs (fastpysgi's body limit).

Copied into the run directory as ``bench_launch.py`` and run with the
server's venv interpreter:

    python bench_launch.py SERVER HOST PORT MODULE:APP

Only the standard library is imported here; each branch imports its server.
"""
import importlib
import sys


def load(spec):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def run_wsgiref(app, host, port):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):  # access log off
            pass

    make_server(host, port, app, handler_class=QuietHandler).serve_forever()


def run_bjoern(app, host, port):
    import bjoern
    bjoern.run(app, host, port)


def run_fastwsgi_c(app, host, port):
    # The PyPI "fastwsgi" (James Roberts): C, libuv + llhttp. Its default log
    # level is errors only; it prints one banner line.
    import fastwsgi
    fastwsgi.run(wsgi_app=app, host=host, port=port)


def run_fastpysgi(app, host, port):
    # fastpysgi (C, libuv + llhttp; a fork of the PyPI fastwsgi). Its own CLI
    # has no option for the request body limit, whose default (10,000,000
    # bytes) would answer the upload scenario's 20 MB bodies with 413; the
    # limit is raised to ours instead. Everything else keeps its default.
    import fastpysgi
    fastpysgi.server.max_content_length = UPLOAD_LIMIT
    fastpysgi.server.init(app, host, port)
    fastpysgi.server.run()


def run_pyruvate(app, host, port):
    # pyruvate (Rust, mio): serve(app, "HOST:PORT", workers), one worker
    # thread, its defaults: one request per connection (max_reuse_count=0,
    # announced with Connection: close). Keep-alive cannot be used: 1.6.1 with
    # max_reuse_count > 0 never answers the second request on a connection;
    # and chunked_transfer=True also ends responses that have a
    # Content-Length with a last-chunk "0\r\n\r\n".
    import pyruvate
    pyruvate.serve(app, f"{host}:{port}", 1)


# Request body limit given to servers whose default is below the upload
# scenario's 20 MB (ours is 1 GiB).
UPLOAD_LIMIT = 64 * 1024 * 1024

RUNNERS = {"wsgiref": run_wsgiref, "bjoern": run_bjoern, "fastwsgi-c": run_fastwsgi_c,
           "fastpysgi": run_fastpysgi, "pyruvate": run_pyruvate}


def main(argv):
    server, host, port, spec = argv
    RUNNERS[server](load(spec), host, int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
