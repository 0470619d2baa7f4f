"""Start a server that has no command line of its own taking MODULE:APP.

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


RUNNERS = {"wsgiref": run_wsgiref, "bjoern": run_bjoern, "fastwsgi-c": run_fastwsgi_c}


def main(argv):
    server, host, port, spec = argv
    RUNNERS[server](load(spec), host, int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
