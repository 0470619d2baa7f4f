"""Fixture app of the observability tests (tests/test_metrics.py, test_status.py,
test_otel.py, test_access_json.py).

Paths: / answers "ok pid=N"; /missing 404; /error 500 (the app raises);
/exit?C ends the
worker process with status C; /environ the request's fastwsgi.* keys as JSON; /hold?FILE answers only once the
file FILE exists (a test keeps a request in flight, and ends it, without timing);
/slow?S sleeps S seconds; /big streams 16 MiB; /nested opens an OpenTelemetry span of its own inside the
server's span and answers its trace and parent ids; /spans the spans this worker's
in-memory exporter holds (set up by ``otel_setup`` through --otel-setup).
"""

import json
import os
import time

EXPORTER = None


def otel_setup():
    """--otel-setup observe_app:otel_setup: the SDK with an in-memory exporter."""
    global EXPORTER
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    EXPORTER = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


def _span_dict(span):
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "attributes": dict(span.attributes),
        "status": span.status.status_code.name,
        "start": span.start_time,
    }


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing\n"]
    if path == "/error":
        raise RuntimeError("the app failed on purpose")
    if path == "/exit":
        os._exit(int(query or "0"))
    if path == "/environ":
        return _json(start_response, {k: v for k, v in environ.items()
                                      if k.startswith("fastwsgi.")})
    if path == "/hold":
        deadline = time.monotonic() + 30
        while not os.path.exists(query) and time.monotonic() < deadline:
            time.sleep(0.01)
    elif path == "/slow":
        time.sleep(float(query or "0.2"))
    elif path == "/nested":
        from opentelemetry import trace
        with trace.get_tracer("app").start_as_current_span("app-work") as span:
            ctx = span.get_span_context()
            return _json(start_response, {"trace_id": f"{ctx.trace_id:032x}",
                                          "parent_id": f"{span.parent.span_id:016x}"})
    elif path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(256))          # 16 MiB, streamed
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (chunk for chunk in (b"a", b"b", b"c"))
    elif path == "/spans":
        spans = EXPORTER.get_finished_spans() if EXPORTER is not None else ()
        return _json(start_response, [_span_dict(s) for s in spans])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"ok pid={os.getpid()}\n".encode()]
