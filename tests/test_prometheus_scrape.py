"""A real Prometheus server (Debian's prometheus) scrapes --status-bind's /metrics
of a two-worker fastwsgi; its query API then reports the target up and the
request count we sent."""

import json
import subprocess
import urllib.parse
import urllib.request

from observe_helpers import free_port, require_binary, status_port
from process_helpers import get, wait_until

PROMETHEUS = "/usr/bin/prometheus"

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fastwsgi
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prometheus_binary():
    return require_binary(PROMETHEUS, "prometheus",
                          "this test has a real Prometheus scrape /metrics")


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.load(resp)
    except OSError:
        return None
    if data.get("status") != "success" or not data["data"]["result"]:
        return None
    return float(data["data"]["result"][0]["value"][1])


def test_prometheus_scrapes_the_status_listener(serve, tmp_path):
    binary = prometheus_binary()
    server = serve("observe_app:app", "-w", "2", "--threads", "2",
                   "--status-bind", "127.0.0.1:0")
    target = status_port(server)
    for _ in range(7):
        assert get(server, "/")[0] == 200
    assert get(server, "/missing")[0] == 404
    (tmp_path / "prometheus.yml").write_text(CONFIG.format(port=target))
    web = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert wait_until(lambda: query(web, 'up{job="fastwsgi"}'), timeout=60,
                          what="Prometheus to scrape the target") == 1.0
        assert wait_until(lambda: query(web, 'fastwsgi_requests_total{code="200"}'),
                          timeout=30, what="the request count") == 7.0
        assert query(web, 'fastwsgi_requests_total{code="404"}') == 1.0
        assert query(web, "fastwsgi_app_threads") == 4.0
        assert query(web, "fastwsgi_request_duration_seconds_count") == 8.0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
