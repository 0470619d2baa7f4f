"""--otel (fastwsgi/otel.py): server spans checked with the OpenTelemetry SDK's
in-memory exporter -- in this process around a plain WSGI call, and in real servers
(set up after fork by --otel-setup) with and without app threads."""

import json
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastwsgi.otel import _Traced
from process_helpers import get

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def traced():
    """(wrap(app) -> traced app, exporter), on a provider of this test's own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return (lambda app: _Traced(app, provider.get_tracer("test"))), exporter


def call(app, path="/", headers=None):
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
               "QUERY_STRING": "q=1", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "h",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "REMOTE_ADDR": "10.1.2.3",
               "HTTP_HOST": "example.com:8080", "HTTP_USER_AGENT": "ua/1",
               "fastwsgi.request_start": 1700000000.5}
    environ.update(headers or {})
    seen = []
    body = app(environ, lambda status, hdrs, exc_info=None: seen.append(status))
    chunks = list(body)
    if hasattr(body, "close"):
        body.close()
    return seen[0], b"".join(chunks)


def test_a_server_span_per_request_with_http_attributes(traced):
    wrap, exporter = traced

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"hi"]

    assert call(wrap(app), "/p", {"HTTP_TRACEPARENT": TRACEPARENT}) == ("200 OK", b"hi")
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET" and span.kind.name == "SERVER"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_ID and span.parent.is_remote
    assert span.start_time == 1700000000500000000
    assert dict(span.attributes) == {
        "http.request.method": "GET", "url.path": "/p", "url.query": "q=1",
        "url.scheme": "http", "network.protocol.version": "1.1",
        "server.address": "example.com", "server.port": 8080,
        "client.address": "10.1.2.3", "user_agent.original": "ua/1",
        "http.response.status_code": 200}


def test_the_span_is_current_while_a_generator_body_runs(traced):
    wrap, exporter = traced
    from opentelemetry import trace

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            for part in (b"a", b"b"):
                yield (part + b"%016x" % trace.get_current_span().get_span_context().span_id)
        return body()

    status, body = call(wrap(app))
    (span,) = exporter.get_finished_spans()
    ids = {body[1:17], body[18:]}
    assert ids == {b"%016x" % span.context.span_id}
    assert span.parent is None                       # no traceparent: a new trace
    assert trace.get_current_span() is trace.INVALID_SPAN   # detached afterwards


def test_errors_mark_the_span(traced):
    wrap, exporter = traced

    def fails(environ, start_response):
        raise ValueError("boom")

    def five_hundred(environ, start_response):
        start_response("503 Service Unavailable", [])
        return [b""]

    with pytest.raises(ValueError):
        call(wrap(fails))
    call(wrap(five_hundred))
    raised, answered = exporter.get_finished_spans()
    assert raised.status.status_code.name == "ERROR"
    assert raised.attributes["error.type"] == "ValueError"
    assert answered.status.status_code.name == "ERROR"
    assert answered.attributes["error.type"] == "503"
    assert answered.attributes["http.response.status_code"] == 503


@pytest.mark.parametrize("threads", ["1", "2"])
def test_real_server_spans_nest_under_the_traceparent(serve, threads):
    server = serve("observe_app:app", "--threads", threads, "--otel",
                   "--otel-setup", "observe_app:otel_setup")
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/nested?x=1", headers={"traceparent": TRACEPARENT})
    app_span = json.loads(conn.getresponse().read())
    conn.request("GET", "/stream")
    assert conn.getresponse().read() == b"abc"
    conn.close()
    status, body = get(server, "/spans")
    assert status == 200
    spans = json.loads(body)
    server_spans = [s for s in spans if s["kind"] == "SERVER"]
    nested = next(s for s in server_spans if s["attributes"]["url.path"] == "/nested")
    assert nested["trace_id"] == TRACE_ID and nested["parent_id"] == PARENT_ID
    assert nested["attributes"]["http.response.status_code"] == 200
    assert nested["attributes"]["url.query"] == "x=1"
    # the app's own span is a child of the server span
    assert app_span == {"trace_id": TRACE_ID, "parent_id": nested["span_id"]}
    inner = next(s for s in spans if s["name"] == "app-work")
    assert inner["parent_id"] == nested["span_id"]
    stream = next(s for s in server_spans if s["attributes"]["url.path"] == "/stream")
    assert stream["parent_id"] is None and stream["trace_id"] != TRACE_ID
    assert stream["attributes"]["http.response.status_code"] == 200


def test_otel_without_the_extra_fails_with_one_clear_line(tmp_path):
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed (test shadow)')\n")
    apps = os.path.join(os.path.dirname(__file__), "apps")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path / "shadow"), apps, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "fastwsgi", "--otel", "observe_app:app"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("fastwsgi: error: --otel: needs the otel extra: "
                                  "pip install 'fastwsgi[otel]'")
