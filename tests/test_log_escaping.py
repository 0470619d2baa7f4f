"""Every client-controlled byte is escaped in every log record (issue 12).

A record is one line: a client that gets a newline into a logged value could
write a forged record (here "[2099-01-01 00:00:00 +0000] [1] [ERROR] forged")
into the error log.  The app raises so that the server logs the request.  An
HTTP request line cannot hold a control byte (the parser rejects it), so the
way in is a uwsgi packet: its PATH_INFO (without REQUEST_URI) becomes the
logged target, and its HTTP_* variables the access log's header atoms.
"""

import logging
import struct

import pytest

FORGED = b"[2099-01-01 00:00:00 +0000] [1] [ERROR] forged"


def packet(pairs):
    data = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in pairs)
    return bytes([0]) + struct.pack("<H", len(data)) + bytes([0]) + data


def forged_lines(server):
    return [line for line in server.lines if line.startswith(FORGED.decode()[:20])]


@pytest.mark.parametrize("mode", [(), ("--threads", "2")], ids=["loop", "threads"])
def test_uwsgi_path_info_newline_cannot_forge_an_error_record(serve, mode):
    server = serve("--protocol", "uwsgi", *mode, "hostile:app")
    pkt = packet([(b"REQUEST_METHOD", b"GET"),
                  (b"PATH_INFO", b"/not_iterable/\n" + FORGED + b"\r\x1b[31m"),
                  (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1")])
    raw = server.request(pkt)
    assert raw.startswith(b"HTTP/1.1 500"), raw[:100]
    server.wait_for_output(r"Error handling request")
    record = next(line for line in server.lines if "Error handling request" in line)
    assert "\\x0a[2099" in record and "\\x1b[31m" in record, record
    assert forged_lines(server) == []


def test_access_log_escapes_uwsgi_vars(serve):
    server = serve("--protocol", "uwsgi", "--access-logfile", "-", "hostile:app")
    pkt = packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/\n" + FORGED),
                  (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                  (b"REMOTE_ADDR", b"10.0.0.1")])
    raw = server.request(pkt)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    server.wait_for_output(r"10\.0\.0\.1")
    assert forged_lines(server) == []


def test_client_log_escapes_arguments_not_the_format_or_traceback():
    import io
    import sys

    from fastwsgi.logs import ClientLog
    stream = io.StringIO()
    logger = logging.getLogger("fastwsgi.test-client-log")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            ClientLog(logger).error("request %s %s %d\n", "GET", "/x\n[forged]\x7f\u0085", 7,
                                    exc_info=sys.exc_info())
        ClientLog(logger).debug("not enabled %s", "\n")       # below the level: no record
        ClientLog(logger).warning("peer %s: %s", "1.2.3.4", ValueError("bad\r\nvalue"))
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().split("\n")
    assert lines[0] == "ERROR request GET /x\\x0a[forged]\\x7f\\x85 7"
    assert lines[1] == "Traceback (most recent call last):"     # the format's own "\n"
    assert "ValueError: boom" in stream.getvalue()
    assert "WARNING peer 1.2.3.4: bad\\x0d\\x0avalue" in lines
