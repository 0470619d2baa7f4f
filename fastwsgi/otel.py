"""OpenTelemetry server spans (``--otel``; the ``otel`` extra).

Contract: ``instrument(app, config)`` runs in each worker after fork (from
``fastwsgi.server.Server``), calls ``--otel-setup MODULE:FUNCTION`` first (where the
SDK, its span processors and exporters are set up: a BatchSpanProcessor's thread
must start in the process that uses it, not in the master before fork), and
returns ``app`` wrapped so that every request gets one SERVER span:

- its parent is the W3C ``traceparent``/``tracestate`` of the request (through the
  globally configured propagator), its start the arrival of the request's first
  byte (``environ["fastwsgi.request_start"]``);
- it is the current span while the app runs -- the call, and every ``next()`` on
  the response iterable -- so the app's own spans are its children;
- attributes follow the HTTP semantic conventions (``http.request.method``,
  ``url.path``, ``url.query``, ``url.scheme``, ``server.address``, ``server.port``,
  ``client.address``, ``network.protocol.version``, ``user_agent.original``,
  ``http.response.status_code``; a 5xx or an exception sets ``error.type`` and the
  ERROR status);
- it ends when the response does: at once for a list body, else when the server
  closes the iterable.

Without ``--otel`` nothing here is imported: the hot path does not change.
``require_opentelemetry()`` is the setting's check (one-line ValueError).
"""

import importlib

__all__ = ["instrument", "require_opentelemetry"]


def require_opentelemetry():
    try:
        import opentelemetry.context  # noqa: F401
        import opentelemetry.propagate  # noqa: F401
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"needs the otel extra: pip install 'fastwsgi[otel]' "
                         f"(cannot import opentelemetry: {exc})") from None


def _call_setup(spec):
    module, _, name = spec.partition(":")
    target = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    target()


class _EnvironGetter:
    """opentelemetry's Getter over a WSGI environ (headers are HTTP_* keys)."""

    def get(self, carrier, key):
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier):
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


def _attributes(environ):
    attrs = {
        "http.request.method": environ.get("REQUEST_METHOD", ""),
        "url.path": environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        "url.scheme": environ.get("wsgi.url_scheme", "http"),
        "network.protocol.version": environ.get("SERVER_PROTOCOL", "HTTP/1.1")[5:],
    }
    query = environ.get("QUERY_STRING")
    if query:
        attrs["url.query"] = query
    host = environ.get("HTTP_HOST")
    if host:
        name, sep, port = host.rpartition(":")
        if sep and port.isdigit() and (":" not in name or name.endswith("]")):
            attrs["server.address"] = name.strip("[]")
            attrs["server.port"] = int(port)
        else:
            attrs["server.address"] = host.strip("[]")
    else:
        attrs["server.address"] = environ.get("SERVER_NAME", "")
        try:
            attrs["server.port"] = int(environ.get("SERVER_PORT", ""))
        except ValueError:
            pass
    if environ.get("REMOTE_ADDR"):
        attrs["client.address"] = environ["REMOTE_ADDR"]
    agent = environ.get("HTTP_USER_AGENT")
    if agent:
        attrs["user_agent.original"] = agent
    return attrs


class _Traced:
    """The WSGI middleware: one SERVER span per request."""

    def __init__(self, app, tracer):
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.app = app
        self.tracer = tracer
        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.kind = SpanKind.SERVER
        self.error = Status(StatusCode.ERROR)
        self.getter = _EnvironGetter()

    def __call__(self, environ, start_response):
        parent = self.propagate.extract(environ, getter=self.getter)
        started = environ.get("fastwsgi.request_start")
        span = self.tracer.start_span(
            environ.get("REQUEST_METHOD", "HTTP"), context=parent, kind=self.kind,
            attributes=_attributes(environ),
            start_time=int(started * 1e9) if started else None)
        status = []

        def traced_start_response(line, headers, exc_info=None):
            status[:] = [line]
            return start_response(line, headers, exc_info)

        token = self.context.attach(self.trace.set_span_in_context(span))
        try:
            result = self.app(environ, traced_start_response)
        except BaseException as exc:
            self._end(span, status, exc)
            raise
        finally:
            self.context.detach(token)
        if isinstance(result, (list, tuple)) or type(result) is environ.get(
                "wsgi.file_wrapper"):
            # the body is ready (or sent by the server without app code): the
            # span ends here, and the server keeps its fast paths for these
            self._end(span, status)
            return result
        return _TracedBody(self, result, span, status)

    def _end(self, span, status, exc=None):
        if status:
            try:
                code = int(status[0][:3])
            except ValueError:
                code = 0
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_attribute("error.type", str(code))
                span.set_status(self.error)
        if exc is not None:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(self.error)
        span.end()


class _TracedBody:
    """The app's response iterable, run with its request's span current."""

    def __init__(self, traced, body, span, status):
        self.traced = traced
        self.body = body
        self.iterator = None
        self.span = span
        self.status = status
        self.ended = False

    def __iter__(self):
        return self

    def __next__(self):
        ctx = self.traced.context
        token = ctx.attach(self.traced.trace.set_span_in_context(self.span))
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)
            return next(self.iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            ctx.detach(token)

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self._end()

    def _end(self, exc=None):
        if not self.ended:
            self.ended = True
            self.traced._end(self.span, self.status, exc)


def instrument(app, config):
    """``app`` with a server span per request; calls --otel-setup first."""
    require_opentelemetry()
    if config.otel_setup:
        _call_setup(config.otel_setup)
    from opentelemetry import trace

    from fastwsgi import __version__
    return _Traced(app, trace.get_tracer("fastwsgi", __version__))

