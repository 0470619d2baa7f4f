"""--access-log-format json and --log-slow-requests (fastwsgi/logs.py): unit tests of
the record, and real servers (-w 2 --threads 2) whose log lines must each parse
with json.loads, whatever a client puts in its headers."""

import json
import re
import socket

import pytest

from fastwsgi.config import Config
from fastwsgi.logs import JSON_FIELDS, AccessLog
from test_logs import environ

RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
HOSTILE_UA = 'q"uote \\back\\slash\ttab caf\u00e9 \u65e5\u672c "}, {"forged": 1'


def json_line(tmp_path, env, status="200 OK", length=12, rt=0.25):
    path = tmp_path / "access.json"
    log = AccessLog.from_config(Config.from_options(access_log=str(path),
                                                    access_log_format="json"))
    log(env, status, length, rt)
    log.close()
    text = path.read_text()
    assert text.count("\n") == 1 and text.isascii()
    return json.loads(text)


def wire(text):
    """What a PEP 3333 environ holds for UTF-8 text sent on the wire (latin-1 str)."""
    return text.encode("utf-8").decode("latin-1")


def test_json_record_has_every_field(tmp_path):
    env = environ(HTTP_X_REQUEST_ID="abc-123", **{"fastwsgi.request_start": 1700000000.25,
                                                  "fastwsgi.queue_time": 0.125})
    record = json_line(tmp_path, env, status="404 Not Found", length=7, rt=0.5)
    assert set(record) == set(JSON_FIELDS)
    assert record == {
        "time": "2023-11-14T22:13:20.250Z",
        "remote_addr": "10.0.0.7",
        "method": "GET",
        "path": "/hello",
        "query": "a=1",
        "protocol": "HTTP/1.1",
        "status": 404,
        "bytes": 7,
        "duration": 0.625,
        "queue_time": 0.125,
        "user_agent": "curl/8.0",
        "referer": "http://example.com/",
        "request_id": "abc-123",
    }


def test_json_escapes_every_client_byte(tmp_path):
    env = environ(HTTP_USER_AGENT=wire(HOSTILE_UA), HTTP_REFERER="\x00\x1b[31m\x7f",
                  PATH_INFO=wire("/\u00e9\n"), HTTP_X_REQUEST_ID="\xff\xfe")
    record = json_line(tmp_path, env)
    assert record["user_agent"] == HOSTILE_UA
    assert record["referer"] == "\x00\x1b[31m\x7f"
    assert record["path"] == "/\u00e9\n"
    assert record["request_id"] == "\\xff\\xfe"       # not UTF-8: shown, not decoded


def test_missing_values_are_null(tmp_path):
    record = json_line(tmp_path, {"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
    assert record["user_agent"] is None and record["query"] is None
    assert re.fullmatch(RFC3339, record["time"])


def test_json_is_a_valid_format_setting():
    assert Config.from_options(access_log_format="json").access_log_format == "json"


def test_slow_request_log_only_past_the_threshold(caplog):
    log = AccessLog.from_config(Config.from_options(log_slow_requests=1.0))
    assert log is not None                   # on without an access log
    with caplog.at_level("WARNING", logger="fastwsgi.error"):
        log(environ(**{"fastwsgi.queue_time": 0.25}), "200 OK", 1, 0.5)   # 0.75 s
        log(environ(RAW_URI='/x"\n', **{"fastwsgi.queue_time": 0.5}), "200 OK", 1, 0.75)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ['slow request: "GET /x\\"\\x0a" 200 took 1.250s (queue 0.500s, '
                        'over --log-slow-requests 1)']


# ---------------------------------------------------------------- real servers


def send(server, head):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def read_lines(path, n):
    from process_helpers import wait_until

    return wait_until(lambda: (lambda lines: lines if len(lines) >= n else None)(
        path.read_text().splitlines() if path.exists() else []),
        what=f"{n} access log lines")


def test_json_log_of_a_real_server_parses_line_by_line(serve, tmp_path):
    path = tmp_path / "access.json"
    server = serve("observe_app:app", "-w", "2", "--threads", "2",
                   "--access-logfile", str(path), "--access-log-format", "json")
    sent = []
    for i in range(8):
        ua = f"{HOSTILE_UA} #{i}"
        head = (f"GET /missing?n={i} HTTP/1.1\r\nHost: x\r\nUser-Agent: {ua}\r\n"
                f"X-Request-ID: req-{i}\r\nConnection: close\r\n\r\n").encode("utf-8")
        assert send(server, head).startswith(b"HTTP/1.1 404 ")
        sent.append(ua)
    lines = read_lines(path, 8)
    records = [json.loads(line) for line in lines]
    assert all(line.isascii() for line in lines)
    assert sorted(r["user_agent"] for r in records) == sorted(sent)
    for r in records:
        n = int(r["query"][2:])
        assert r["request_id"] == f"req-{n}" and r["status"] == 404
        assert r["method"] == "GET" and r["path"] == "/missing"
        assert r["bytes"] == len(b"missing\n") and r["protocol"] == "HTTP/1.1"
        assert r["remote_addr"] == "127.0.0.1"
        assert 0 <= r["queue_time"] <= r["duration"]
        assert re.fullmatch(RFC3339, r["time"])


def test_gunicorn_format_of_a_real_server_escapes_client_bytes(serve, tmp_path):
    path = tmp_path / "access.log"
    server = serve("observe_app:app", "--access-logfile", str(path))
    head = ('GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a"b\\c\td\r\n'
            "Connection: close\r\n\r\n").encode()
    assert send(server, head).startswith(b"HTTP/1.1 200 ")
    (line,) = read_lines(path, 1)
    assert line.endswith('"-" "a\\"b\\\\c\\x09d"'), line


def test_slow_requests_are_logged_by_a_real_server(serve):
    server = serve("observe_app:app", "--threads", "2", "--log-slow-requests", "0.2")
    head = b"GET /slow?0.4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert send(server, head).startswith(b"HTTP/1.1 200 ")
    m = server.wait_for_output(r'slow request: "GET /slow\?0\.4" 200 took ([\d.]+)s '
                               r'\(queue ([\d.]+)s')
    assert float(m.group(1)) >= 0.4


@pytest.mark.parametrize("fmt", ["json", "%(h)s"])
def test_access_log_format_check_is_unchanged_for_other_formats(fmt):
    Config.from_options(access_log_format=fmt)
