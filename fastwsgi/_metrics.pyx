# cython: language_level=3
"""The metrics block (layout and record functions in _metrics.pxd), from Python.

Contract: ``Metrics(buffer)`` puts a Block at the start of a writable buffer of at
least ``Metrics.size()`` bytes -- an anonymous shared mmap (``new_buffer()``), made
before fork so that the process that reads it sees every write -- and zeroes it
unless it already holds one (``magic``).  The compiled connection writes it through
``ServerState.set_metrics``; ``snapshot()`` reads it for the status listener (any
process, no lock); the few Python-side writers (gauges set at start, tests) use
``set_gauge``/``add``.  The object keeps a reference to the buffer, so the block
outlives no buffer it points into.
"""

import mmap

from libc.string cimport memset

GAUGES = ("app_threads", "busy", "queued", "in_flight", "connections")


cdef class Metrics:

    def __init__(self, buf):
        cdef unsigned char[::1] view = buf
        if view.shape[0] < <Py_ssize_t>sizeof(Block):
            raise ValueError("metrics buffer too small")
        self.buf = buf
        self.block = <Block*>&view[0]
        if self.block.magic != BLOCK_MAGIC:
            memset(self.block, 0, sizeof(Block))
            self.block.magic = BLOCK_MAGIC

    @staticmethod
    def size():
        return sizeof(Block)

    @staticmethod
    def bounds():
        """The histograms' bucket upper bounds, seconds (+Inf not included)."""
        return tuple(BOUNDS[i] for i in range(N_BOUNDS))

    @property
    def buffer(self):
        return self.buf

    def set_gauge(self, str name, long long value):
        if name == "app_threads":
            self.block.app_threads = value
        elif name == "pid":
            self.block.pid = value
        else:
            raise KeyError(name)

    def add(self, str name, long long value=1):
        """Python-side counting (what the master, or a test, records)."""
        if name == "timeouts":
            self.block.timeouts += value
        elif name == "in_flight":
            self.block.in_flight += value
        else:
            raise KeyError(name)

    def record(self, int code, double duration, double queue=-1.0, bint rejected=False):
        """What the connection records inline, callable from Python (tests)."""
        if rejected:
            record_reject(self.block, code, duration)
        else:
            record_response(self.block, code, duration, queue)

    def snapshot(self):
        """Every field as Python values: counters by code as {code: n} (nonzero
        only), histograms as lists of per-bucket counts."""
        cdef Block* m = self.block
        cdef int i
        return {
            "pid": m.pid,
            "app_threads": m.app_threads,
            "busy": m.busy,
            "queued": m.queued,
            "in_flight": m.in_flight,
            "connections": m.connections,
            "timeouts": m.timeouts,
            "codes": {i: m.codes[i] for i in range(N_CODES) if m.codes[i]},
            "rejected": {i: m.rejected[i] for i in range(N_CODES) if m.rejected[i]},
            "duration": [m.duration[i] for i in range(N_BUCKETS)],
            "duration_sum": m.duration_sum,
            "queue": [m.queue[i] for i in range(N_BUCKETS)],
            "queue_sum": m.queue_sum,
        }


def new_buffer():
    """An anonymous shared mapping for one block (shared with children forked later)."""
    return mmap.mmap(-1, sizeof(Block))
