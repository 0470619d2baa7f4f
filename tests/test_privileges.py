"""--user / --group (fastwsgi/privileges.py): bind as root, then serve as the user.

These tests run as root (the CI container does; they fail, not skip, otherwise):
the server drops to nobody/nogroup, and a fixture app (tests/apps/whoami.py)
reports the ids it was imported with and serves with, in a single process and
under the master (where the banner's pid is the master's, not the serving one).
"""

import grp
import json
import os
import pwd
import socket
import stat
import subprocess
import sys

import pytest

from conftest import APPS

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup")

MODES = {"single": (), "master": ("--workers", "2"), "preload": ("--workers", "2", "--preload"),
         "threads": ("--threads", "2")}


@pytest.fixture(autouse=True)
def as_root():
    if os.geteuid() != 0:
        pytest.fail("the --user/--group tests must run as root (they drop to nobody)")


def whoami(server):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("mode", MODES)
def test_app_is_imported_and_served_as_the_user(serve, mode):
    server = serve("--user", "nobody", "--group", "nogroup", *MODES[mode], "whoami:app")
    info = whoami(server)
    ids = [NOBODY.pw_uid, NOBODY.pw_uid, NOGROUP.gr_gid, NOGROUP.gr_gid]
    assert info["imported_as"][:4] == ids and info["serving_as"][:4] == ids
    assert 0 not in info["serving_as"][4]              # no supplementary root group
    assert server.alive()


def test_user_alone_takes_its_primary_group(serve):
    info = whoami(serve("--user", str(NOBODY.pw_uid), "whoami:app"))
    assert info["serving_as"][:4] == [NOBODY.pw_uid] * 2 + [NOBODY.pw_gid] * 2


def test_group_alone_keeps_the_user(serve):
    info = whoami(serve("--group", "nogroup", "whoami:app"))
    assert info["serving_as"][:4] == [0, 0, NOGROUP.gr_gid, NOGROUP.gr_gid]


def test_privileged_port_is_bound_before_the_drop(serve):
    for port in range(1000, 1024):
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        break
    else:
        pytest.fail("no free port in 1000-1023")
    server = serve("--bind", f"127.0.0.1:{port}", "--user", "nobody", "whoami:app",
                   bind=False)
    assert whoami(server)["serving_as"][0] == NOBODY.pw_uid


def test_unix_socket_is_given_to_the_user_and_group(serve, tmp_path):
    os.chmod(tmp_path, 0o755)
    path = str(tmp_path / "app.sock")
    serve("--bind", f"unix:{path}", "--user", "nobody", "--group", "nogroup", "whoami:app",
          bind=False)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOGROUP.gr_gid)
    assert stat.S_IMODE(st.st_mode) == 0o660


@pytest.mark.parametrize("args, message", [
    (["--user", "no-such-user-xyz"], "no such user 'no-such-user-xyz'"),
    (["--group", "no-such-group-xyz"], "no such group 'no-such-group-xyz'"),
])
def test_unknown_user_or_group_is_a_config_error(args, message):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([APPS, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "fastwsgi", "--bind", "127.0.0.1:0", *args,
                          "whoami:app"], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_a_non_root_process_cannot_switch():
    # a child that is already nobody asks to become group root: refused, worded
    from fastwsgi.config import Config
    from fastwsgi.privileges import _load_server_modules, drop_privileges
    _load_server_modules(Config())     # as nobody, an interpreter under /root is unreadable
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child: never returns
        code = 3
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            try:
                drop_privileges(Config.from_options(group="root"))
            except PermissionError as exc:
                os.write(write, str(exc).encode())
                code = 0
            except BaseException as exc:
                os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    assert os.waitpid(pid, 0)[1] == 0, message
    assert "--group root: cannot switch to uid 65534 gid 0 (only root can" in message
