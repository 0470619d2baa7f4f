"""fastwsgi.logs: the error log setup and the access log's atoms, escaping and files."""

import base64
import logging
import os
import re

import pytest

from fastwsgi.config import Config, ConfigError
from fastwsgi.logs import ACCESS_ATOMS, AccessLog, reopen_error_log, setup_logging

CLF_TIME = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"


def environ(**extra):
    env = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "a=1",
        "RAW_URI": "/hello?a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_REFERER": "http://example.com/",
        "HTTP_USER_AGENT": "curl/8.0",
    }
    env.update(extra)
    return env


def access_line(tmp_path, fmt=None, env=None, status="200 OK", length=12, rt=0.0123):
    path = tmp_path / "access.log"
    if path.exists():
        path.unlink()
    options = {"access_log": str(path)}
    if fmt is not None:
        options["access_log_format"] = fmt
    log = AccessLog.from_config(Config.from_options(**options))
    log(env if env is not None else environ(), status, length, rt)
    log.close()
    return path.read_text()


def test_access_log_is_off_by_default():
    assert AccessLog.from_config(Config()) is None
    assert AccessLog.from_config(Config.from_options(access_log="")) is None


def test_default_format_is_apache_combined(tmp_path):
    line = access_line(tmp_path)
    assert re.fullmatch(
        r'10\.0\.0\.7 - - ' + CLF_TIME
        + r' "GET /hello\?a=1 HTTP/1\.1" 200 12 "http://example\.com/" "curl/8\.0"\n',
        line,
    ), line


def test_every_atom(tmp_path):
    fmt = " | ".join(f"{k}=%({k})s" for k in ACCESS_ATOMS)
    line = access_line(tmp_path, fmt, status="404 Not Found", length=0, rt=1.5)
    fields = dict(part.split("=", 1) for part in line.strip().split(" | "))
    assert fields["h"] == "10.0.0.7"
    assert fields["l"] == "-"
    assert fields["u"] == "-"
    assert re.fullmatch(CLF_TIME, fields["t"])
    assert fields["r"] == "GET /hello?a=1 HTTP/1.1"
    assert fields["m"] == "GET"
    assert fields["U"] == "/hello"
    assert fields["q"] == "a=1"
    assert fields["H"] == "HTTP/1.1"
    assert fields["s"] == "404"
    assert fields["B"] == "0"
    assert fields["b"] == "-"
    assert fields["f"] == "http://example.com/"
    assert fields["a"] == "curl/8.0"
    assert fields["T"] == "1"
    assert fields["M"] == "1500"
    assert fields["D"] == "1500000"
    assert fields["L"] == "1.500000"
    assert fields["p"] == f"<{os.getpid()}>"


def test_header_environ_and_response_header_atoms(tmp_path):
    fmt = "%({X-Request-Id}i)s %({content-type}i)s %({missing}i)s %({REMOTE_PORT}e)s %({Server}o)s"
    env = environ(HTTP_X_REQUEST_ID="abc123", CONTENT_TYPE="text/plain", REMOTE_PORT="5555")
    assert access_line(tmp_path, fmt, env) == "abc123 text/plain - 5555 -\n"


def test_request_line_without_raw_uri_is_rebuilt(tmp_path):
    env = environ(SCRIPT_NAME="/app", PATH_INFO="/x", QUERY_STRING="")
    del env["RAW_URI"]
    assert access_line(tmp_path, "%(r)s", env) == "GET /app/x HTTP/1.1\n"


def test_missing_environ_values_become_dashes(tmp_path):
    assert access_line(tmp_path, "%(h)s %(f)s %(a)s %(q)s", {}) == "- - - -\n"


def test_client_controlled_text_is_escaped(tmp_path):
    env = environ(
        HTTP_USER_AGENT='evil"\n127.0.0.1 - - [forged] "GET / HTTP/1.1" 200',
        RAW_URI="/a\\b\x1b[31m",
        HTTP_REFERER="caf\u00e9",  # latin-1 text is fine as it is
    )
    line = access_line(tmp_path, '"%(r)s" "%(f)s" "%(a)s"', env)
    assert line.count("\n") == 1
    assert line == ('"GET /a\\\\b\\x1b[31m HTTP/1.1" "caf\u00e9" '
                    '"evil\\"\\x0a127.0.0.1 - - [forged] \\"GET / HTTP/1.1\\" 200"\n')


def test_user_from_remote_user_or_basic_auth(tmp_path):
    basic = "Basic " + base64.b64encode(b"alice:secret").decode()
    assert access_line(tmp_path, "%(u)s", environ(REMOTE_USER="bob")) == "bob\n"
    assert access_line(tmp_path, "%(u)s", environ(HTTP_AUTHORIZATION=basic)) == "alice\n"
    assert access_line(tmp_path, "%(u)s", environ(HTTP_AUTHORIZATION="Basic !!!")) == "-\n"
    assert access_line(tmp_path, "%(u)s", environ(HTTP_AUTHORIZATION="Bearer x")) == "-\n"


def test_lines_are_appended_and_reopen_follows_rotation(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog.from_config(Config.from_options(access_log=str(path),
                                                    access_log_format="%(U)s"))
    log(environ(PATH_INFO="/1"), "200 OK", 1, 0.0)
    os.rename(path, tmp_path / "access.log.1")
    log(environ(PATH_INFO="/2"), "200 OK", 1, 0.0)  # still into the rotated file
    log.reopen()
    log(environ(PATH_INFO="/3"), "200 OK", 1, 0.0)
    log.close()
    assert (tmp_path / "access.log.1").read_text() == "/1\n/2\n"
    assert path.read_text() == "/3\n"
    # Appending, not truncating, when opened again.
    log = AccessLog(str(path), "%(U)s")
    log(environ(PATH_INFO="/4"), "200 OK", 1, 0.0)
    log.close()
    assert path.read_text() == "/3\n/4\n"


def test_dash_means_stdout(capsys):
    log = AccessLog.from_config(Config.from_options(access_log="-",
                                                    access_log_format="%(s)s %(b)s"))
    log(environ(), "201 Created", 5, 0.0)
    log.reopen()  # no-op for stdout
    log(environ(), "204 No Content", 0, 0.0)
    assert capsys.readouterr().out == "201 5\n204 -\n"


def test_unopenable_access_log_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        AccessLog(str(tmp_path / "no" / "such" / "dir.log"), "%(h)s")
    assert str(info.value).startswith("--access-logfile: cannot open ")
    assert "no such file or directory" in str(info.value)


def test_write_failure_never_raises(tmp_path, caplog):
    log = AccessLog(str(tmp_path / "a.log"), "%(h)s")
    log.close()
    with caplog.at_level(logging.ERROR, logger="fastwsgi.error"):
        log(environ(), "200 OK", 1, 0.0)
        log(environ(), "200 OK", 1, 0.0)


def test_hostile_environ_never_raises(tmp_path):
    line = access_line(tmp_path, "%(h)s %(a)s", environ(HTTP_USER_AGENT=object()))
    assert line.startswith("10.0.0.7 <object object at")  # str() of whatever is there


# ------------------------------------------------------------------------ error log


@pytest.fixture
def error_logger():
    logger = logging.getLogger("fastwsgi.error")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.level, logger.propagate = saved[1], saved[2]


def test_error_log_to_file_with_level_and_format(tmp_path, error_logger):
    path = tmp_path / "error.log"
    log = setup_logging(Config.from_options(error_log=str(path), log_level="warning"))
    assert log is error_logger
    log.info("hidden")
    log.warning("shown %s", 1)
    text = path.read_text()
    assert "hidden" not in text
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[%d\] \[WARNING\] shown 1\n"
        % os.getpid(), text), text


def test_error_log_defaults_to_stderr_and_setup_is_idempotent(capsys, error_logger):
    setup_logging(Config())
    setup_logging(Config.from_options(log_level="debug"))
    error_logger.debug("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1 and "[DEBUG] once" in err


def test_error_log_reopen(tmp_path, error_logger):
    path = tmp_path / "error.log"
    log = setup_logging(Config.from_options(error_log=str(path)))
    log.info("before")
    os.rename(path, tmp_path / "error.log.1")
    reopen_error_log()
    log.info("after")
    assert "after" in path.read_text() and "after" not in (tmp_path / "error.log.1").read_text()


def test_unopenable_error_log_is_a_config_error(tmp_path, error_logger):
    with pytest.raises(ConfigError, match="--error-logfile: cannot open .*no such file"):
        setup_logging(Config.from_options(error_log=str(tmp_path / "no" / "e.log")))
