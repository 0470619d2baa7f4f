"""--reload: notice when a source file of a loaded module changes (development).

Contract: ``Reloader(on_change, interval=1.0).start()`` polls, in a daemon thread,
the modification times of the files behind ``sys.modules`` (``.py`` sources rather
than their ``.pyc``) plus ``extra_files`` (paths, or glob patterns expanded on each
poll, --reload-extra-file); when some change it calls
``on_change(paths)`` once for that change, from the reloader thread, then takes the
new times as its reference.  A file first seen (a module imported later) is a
reference, not a change.  ``check()`` runs one poll and returns the changed paths.

Polling costs one stat() per file and second; no inotify dependency.  In fastwsgi
each worker runs one and asks the master to reload (SIGHUP), so the code is
re-imported by new workers while the old ones finish their requests.
"""

import os
import sys
import threading

__all__ = ["Reloader", "module_files"]

_GLOB_CHARS = frozenset("*?[")


def module_files(modules=None):
    """The source files of the loaded modules (sources for .pyc, existing only)."""
    files = set()
    for module in list((modules or sys.modules).values()):
        path = getattr(module, "__file__", None)
        if not path or not isinstance(path, str):
            continue
        if path.endswith(".pyc"):
            source = path[:-1]
            if "__pycache__" in path:       # pkg/__pycache__/mod.cpython-311.pyc
                head, name = os.path.split(path)
                source = os.path.join(os.path.dirname(head), name.split(".")[0] + ".py")
            path = source
        files.add(path)
    return files


def _mtime(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns


class Reloader(threading.Thread):
    def __init__(self, on_change, interval=1.0, extra_files=()):
        super().__init__(name="fastwsgi-reloader", daemon=True)
        self.on_change = on_change
        self.interval = interval
        self.extra_files = set(extra_files)
        self._times = {}
        self._stopped = threading.Event()
        self.check()                        # the reference times

    def _extra_files(self):
        # patterns (*, ?, [) are expanded on every poll: a file created later counts
        if not any(set(p) & _GLOB_CHARS for p in self.extra_files):
            return self.extra_files
        import glob
        files = set()
        for pattern in self.extra_files:
            if set(pattern) & _GLOB_CHARS:
                files.update(glob.glob(pattern, recursive=True))
            else:
                files.add(pattern)
        return files

    def check(self):
        changed = []
        for path in module_files() | self._extra_files():
            mtime = _mtime(path)
            if mtime is None:
                continue                    # deleted or not a file: nothing to reload
            old = self._times.get(path)
            self._times[path] = mtime
            if old is not None and old != mtime:
                changed.append(path)
        return sorted(changed)

    def run(self):
        while not self._stopped.wait(self.interval):
            changed = self.check()
            if changed:
                self.on_change(changed)

    def stop(self):
        self._stopped.set()
