"""Helpers of the observability tests (test_metrics, test_status, test_otel,
test_access_json, test_haproxy_readiness, test_prometheus_scrape): the status
listener's port and scrapes, prometheus_client parsing, requests held in flight,
system tools the integration tests drive."""

import http.client
import os
import shutil
import socket
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from process_helpers import get

STATUS_LINE = r"status listener on http://127\.0\.0\.1:(\d+)"
BAD_REQUEST = b"GET / HTTP/1.1\r\nHost\r\n\r\n"      # a field line without a colon


# ----------------------------------------------------------------------- helpers


def status_port(server):
    return int(server.wait_for_output(STATUS_LINE).group(1))


def scrape(port, path="/metrics"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams, family, sample=None, **labels):
    """{label value tuple: value} of a family's samples (``sample``: the sample name)."""
    found = {}
    for s in fams[family].samples:
        if sample is not None and s.name != sample:
            continue
        if all(s.labels.get(k) == v for k, v in labels.items()):
            found[tuple(sorted(s.labels.items()))] = s.value
    return found


def requests_by_code(fams):
    return {dict(k)["code"]: int(v) for k, v in samples(
        fams, "fastwsgi_requests", "fastwsgi_requests_total").items()}


def gauge(fams, name):
    return fams[name].samples[0].value


def raw(host, port, data):
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class Held:
    """A GET /hold request in a thread: in flight until release()."""

    def __init__(self, server, tmp_path, name="release"):
        self.flag = tmp_path / name
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(server,), daemon=True)
        self.thread.start()

    def _run(self, server):
        try:
            self.result = get(server, f"/hold?{self.flag}")
        except Exception as exc:
            self.result = exc

    def release(self):
        self.flag.write_text("go")
        self.thread.join(30)
        return self.result


def readyz(port):
    status, _, body = scrape(port, "/readyz")
    return status, body.strip()


def in_flight(port):
    return gauge(families(scrape(port)[2]), "fastwsgi_requests_in_flight")




def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(path, package, why):
    """``path`` (or the tool on PATH); a missing tool fails the test, naming the
    Debian package (.ci/run installs it)."""
    found = path if os.path.exists(path) else shutil.which(os.path.basename(path))
    if found is None:
        pytest.fail(f"{os.path.basename(path)} is not installed (apt-get install {package}; "
                    f".ci/run installs it): {why}")
    return found
