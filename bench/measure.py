"""CPU time and resident memory of a server's whole process tree, from /proc.

Contract: ``TreeSampler(pid)`` polls, in a thread, every process whose
ancestry leads to ``pid`` (a pre-fork master and its workers, nginx's
workers). ``start()`` takes the baseline; ``stop()`` returns a ``Usage``.

CPU is utime+stime from /proc/<pid>/stat (threads included): for each process
the last value seen minus its baseline (0 for a process born during the run),
so a worker that exits still counts up to its last sample. Peak RSS is the
largest sum of the tree's RSS over the samples, or, if larger, the sum of
each process's VmHWM (its peak since it started, so short peaks between
samples count; a master and its workers may peak at different times, which
makes that sum an upper bound). ``cpu_busy`` is how busy each
CPU was over the run (all processes), to show load from anything else.
"""
import os
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Usage:
    cpu_seconds: float
    wall_seconds: float
    peak_rss: int          # bytes
    processes: int         # most processes seen at once
    cpu_busy: dict = None  # {cpu: % of the run it was busy}, all processes

    @property
    def cpu_percent(self):
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _hwm(pid):
    """VmHWM (peak resident set since the process started) in pages, or 0."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024 // PAGE
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _stat(pid):
    """(ppid, cpu ticks, rss pages) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime=14, stime=15, rss=24 in proc(5).
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21])


def cpu_ticks():
    """{cpu number: (busy ticks, total ticks)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                vals = [int(v) for v in vals[:8]]
                idle = vals[3] + vals[4]  # idle + iowait
                out[int(name[3:])] = (sum(vals) - idle, sum(vals))
    return out


def tree(root):
    """{pid: (cpu ticks, rss pages)} for root and all its descendants."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s:
                stats[int(name)] = s
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        out[pid] = stats[pid][1:]
        todo.extend(children.get(pid, ()))
    return out


class TreeSampler:
    def __init__(self, pid, interval=0.2):
        self.pid = pid
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        now = tree(self.pid)
        for pid, (ticks, rss) in now.items():
            self._last[pid] = ticks
            self._base.setdefault(pid, 0)  # born during the run
        self._peak = max(self._peak, sum(rss for _, rss in now.values()))
        # A peak between two samples (one 20 MB body held for a moment) is
        # missed by the sum above; each process's high-water mark is not.
        self._hwm.update((pid, _hwm(pid)) for pid in now)
        self._peak = max(self._peak, sum(self._hwm.values()))
        self._procs = max(self._procs, len(now))

    def start(self):
        first = tree(self.pid)
        self._base = {pid: ticks for pid, (ticks, _) in first.items()}
        self._last = dict(self._base)
        self._peak = sum(rss for _, rss in first.values())
        self._procs = len(first)
        self._hwm = {}
        self._t0 = time.monotonic()
        self._cpus0 = cpu_ticks()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._t0
        ticks = sum(self._last[pid] - self._base[pid] for pid in self._last)
        cpus1 = cpu_ticks()
        busy = {}
        for cpu, (b0, t0) in self._cpus0.items():
            b1, t1 = cpus1.get(cpu, (b0, t0))
            busy[cpu] = 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        return Usage(ticks / CLK_TCK, wall, self._peak * PAGE, self._procs, busy)
