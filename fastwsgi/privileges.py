"""--user / --group: bind as root, then run as someone else (gunicorn's settings).

Contract:
- ``user_id(value)`` / ``group_id(value)`` are the settings' validators: a name or a
  number -> the canonical text; an unknown name raises ValueError.
- ``drop_privileges(config, sockets=())``: when ``config.user`` or ``config.group``
  is set, give the unix-socket files among ``sockets`` to that user and group
  (so the group can connect once we are no longer root), then switch the process
  to them: supplementary groups (the user's, initgroups(3)), then gid, then uid.
  The uid goes last because only root may change the others.  A no-op when
  neither is set or the process already runs as them; PermissionError (an
  OSError, worded for the CLI) when it may not switch.

Callers: the single-process CLI after bind_listeners() and before the app is
imported; the pre-fork master right after binding (its workers are forked from
it and inherit the identity), before --preload imports the app.
"""

import errno
import os
import socket

__all__ = ["user_id", "group_id", "drop_privileges", "target"]


def _lookup_user(value):
    import pwd
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return pwd.getpwuid(int(value))
    return pwd.getpwnam(value)


def _lookup_group(value):
    import grp
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return grp.getgrgid(int(value))
    return grp.getgrnam(value)


def _existing(value, lookup, what):
    """A name or number that ``lookup`` finds -> its text; None for none."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        lookup(text)
    except (KeyError, OverflowError):
        raise ValueError(f"no such {what} {text!r}") from None
    return text


def user_id(value):
    """A user name or uid that exists here -> its text (the setting's value)."""
    return _existing(value, _lookup_user, "user")


def group_id(value):
    """A group name or gid that exists here -> its text (the setting's value)."""
    return _existing(value, _lookup_group, "group")


def target(config):
    """(user name or None, uid, gid) to switch to, or None when nothing is set.

    --group alone keeps the uid; --user alone takes the user's primary group."""
    if not config.user and not config.group:
        return None
    if config.user:
        entry = _lookup_user(config.user)
        name, uid, gid = entry.pw_name, entry.pw_uid, entry.pw_gid
    else:
        name, uid, gid = None, os.getuid(), os.getgid()
    if config.group:
        gid = _lookup_group(config.group).gr_gid
    return name, uid, gid


def _load_server_modules(config):
    """Import the server's own modules while the process can still read them.

    After the switch the user may not be able to read the Python installation
    (an interpreter installed under /root); what the server imports on demand
    is imported now.  The app and what it imports must be readable by the user:
    that is the point of importing it after the switch."""
    import importlib
    names = ["fastwsgi.server", "fastwsgi.logs", "fastwsgi.mount", "fastwsgi._loader",
             # a worker's prctl(PR_SET_PDEATHSIG) and the watchdog's async exception
             # go through ctypes, imported on demand
             "ctypes", "fastwsgi.worker", "fastwsgi.watchdog"]
    if config.threads > 1:
        names.append("queue")
    if config.static:
        names.append("fastwsgi.static")
    for name in names:
        importlib.import_module(name)


def drop_privileges(config, sockets=()):
    goal = target(config)
    if goal is None:
        return
    name, uid, gid = goal
    _load_server_modules(config)
    if os.geteuid() == 0:
        for sock in sockets:
            sock = getattr(sock, "sock", sock)         # a Listener or a socket
            if sock.family == socket.AF_UNIX:
                path = sock.getsockname()
                if path and not (isinstance(path, str) and path.startswith("\0")):
                    os.chown(path, uid, gid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (uid, uid, gid, gid):
        return
    what = f"--user {config.user}" if config.user else f"--group {config.group}"
    try:
        if name is not None:
            os.initgroups(name, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)          # real, effective and saved: no way back to root
    except PermissionError:
        raise PermissionError(errno.EPERM, f"{what}: cannot switch to uid {uid} gid {gid} "
                              "(only root can; start fastwsgi as root)") from None
    if uid != 0:
        # the switch must be for good: a process that can become root again
        # has dropped nothing
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PermissionError(errno.EPERM, f"{what}: could still regain root after the switch")
