"""Metrics across processes: blocks in shared memory, summed, rendered for Prometheus.

Contract:
- ``Registry`` is the reading side, in the process that serves ``--status-bind``
  (the master, or the only process).  ``new_block()`` makes a block (an anonymous
  shared mmap, fastwsgi/_metrics.pxd) that a worker forked next inherits and writes
  without locks; ``adopt(pid, block)`` files it under the worker's pid;
  ``retire(pid, reason)`` folds a dead worker's counters into the retired totals
  (so a restart loses no count; its gauges go with it) and counts the restart.
  ``snapshot()`` sums the live blocks and the retired totals.
- ``render(snapshot)`` is the Prometheus text exposition (format 0.0.4), made by
  prometheus_client from the snapshot; ``saturated(snapshot, backlog)`` is
  /readyz's load test.
- ``inherit(block)`` / ``inherited()``: the block the master made for the worker it
  forks next (``fastwsgi.server.Server`` attaches it to the compiled connection).

Nothing here runs per request: the connection records into its block inline
(fastwsgi/_connection.pyx), and this module only reads.  prometheus_client (the
``metrics`` extra) is imported only by ``render``.
"""

import socket
import struct
import threading

from fastwsgi._metrics import Metrics, new_buffer

__all__ = ["Registry", "render", "require_prometheus_client", "saturated", "listen_backlog", "inherit", "inherited",
           "RESTART_REASONS", "empty_snapshot"]

# why a worker was replaced (fastwsgi_worker_restarts_total{reason}); the master
# names the reason, a plain string: these are exported at 0 from the start
RESTART_REASONS = ("exit", "crash", "timeout", "max_requests", "memory", "age", "reload")

_COUNTERS = ("timeouts",)
_GAUGES = ("app_threads", "busy", "queued", "in_flight", "connections")


def empty_snapshot():
    n = len(Metrics.bounds()) + 1
    snap = dict.fromkeys(_GAUGES + _COUNTERS, 0)
    snap.update(codes={}, rejected={}, duration=[0] * n, duration_sum=0.0,
                queue=[0] * n, queue_sum=0.0, restarts=dict.fromkeys(RESTART_REASONS, 0),
                workers=0)
    return snap


def _add_counters(total, snap):
    for key in _COUNTERS:
        total[key] += snap[key]
    for key in ("codes", "rejected"):
        into = total[key]
        for code, n in snap[key].items():
            into[code] = into.get(code, 0) + n
    for key in ("duration", "queue"):
        total[key] = [a + b for a, b in zip(total[key], snap[key])]
        total[key + "_sum"] += snap[key + "_sum"]


class Registry:
    """The blocks of this process and of its workers, and what dead workers left."""

    def __init__(self):
        self._lock = threading.Lock()    # between the master's reaping and a scrape
        self._live = {}                  # pid -> Metrics
        self._retired = empty_snapshot()
        self.own = None                  # this process's block when it serves itself

    def new_block(self):
        return Metrics(new_buffer())

    def adopt(self, pid, block):
        with self._lock:
            self._live[pid] = block

    def serve_own(self, block):
        """A single process: its own block is read live, like a worker's."""
        self.own = block
        self.adopt(0, block)

    def retire(self, pid, reason=None):
        """Worker ``pid`` is gone: keep its counters, drop its gauges; a ``reason``
        counts a restart."""
        with self._lock:
            block = self._live.pop(pid, None)
            if block is not None:
                _add_counters(self._retired, block.snapshot())
            if reason is not None:
                restarts = self._retired["restarts"]
                restarts[reason] = restarts.get(reason, 0) + 1

    def count_timeout(self):
        with self._lock:
            self._retired["timeouts"] += 1

    def snapshot(self):
        with self._lock:
            total = empty_snapshot()
            _add_counters(total, self._retired)
            total["restarts"] = dict(self._retired["restarts"])
            for block in self._live.values():
                snap = block.snapshot()
                _add_counters(total, snap)
                for key in _GAUGES:
                    total[key] += snap[key]
            total["workers"] = len(self._live)
        return total


def require_prometheus_client():
    """ValueError (one line, for the setting's error) unless prometheus_client imports."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"needs the metrics extra: pip install 'fastwsgi[metrics]' "
                         f"(cannot import prometheus_client: {exc})") from None


# ------------------------------------------------------------------ the fork hand-off

_inherited = None


def inherit(block):
    """The master, just before fork: the child's Server records into ``block``."""
    global _inherited
    _inherited = block


def inherited():
    return _inherited


# ------------------------------------------------------------------------- readiness


def listen_backlog(sockets):
    """Connections waiting in the kernel's accept queues of ``sockets`` (TCP only:
    Linux reports a listening socket's queue length as tcp_info.tcpi_unacked)."""
    waiting = 0
    for sock in sockets:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            waiting += struct.unpack_from("I", info, 24)[0]
        except (OSError, struct.error):
            pass
    return waiting


def saturated(snap, backlog=0):
    """Every app thread of every worker busy, and requests waiting for one."""
    threads = snap["app_threads"]
    return threads > 0 and snap["busy"] >= threads and (snap["queued"] > 0 or backlog > 0)


# ------------------------------------------------------------------------- rendering


def _collector(snap):
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                        HistogramMetricFamily)

    bounds = Metrics.bounds()

    def histogram(name, doc, buckets, total):
        family = HistogramMetricFamily(name, doc)
        cumulative, running = [], 0
        for bound, n in zip(bounds + (float("inf"),), buckets):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        family.add_metric([], cumulative, total)
        return family

    def collect():
        requests = CounterMetricFamily(
            "fastwsgi_requests", "Responses sent (by the app or the server), by status code.",
            labels=["code"])
        for code, n in sorted(snap["codes"].items()):
            requests.add_metric([str(code)], n)
        yield requests
        yield histogram("fastwsgi_request_duration_seconds",
                        "Time from the request head's arrival to the response's end.",
                        snap["duration"], snap["duration_sum"])
        yield histogram("fastwsgi_request_queue_seconds",
                        "Time from the request head's arrival to the app call.",
                        snap["queue"], snap["queue_sum"])
        for name, key, doc in (
                ("fastwsgi_requests_in_flight", "in_flight",
                 "Requests handed to the app and not yet answered."),
                ("fastwsgi_connections", "connections", "Open client connections."),
                ("fastwsgi_app_threads", "app_threads",
                 "Threads that run the app, all workers together."),
                ("fastwsgi_app_threads_busy", "busy", "App threads running the app now."),
                ("fastwsgi_requests_queued", "queued",
                 "Requests read and waiting for an app thread."),
                ("fastwsgi_workers", "workers", "Worker processes reporting metrics.")):
            yield GaugeMetricFamily(name, doc, value=snap[key])
        restarts = CounterMetricFamily(
            "fastwsgi_worker_restarts", "Workers replaced, by reason.", labels=["reason"])
        for reason, n in sorted(snap["restarts"].items()):
            restarts.add_metric([reason], n)
        yield restarts
        yield CounterMetricFamily("fastwsgi_request_timeouts",
                                  "App calls that ran past --timeout.", value=snap["timeouts"])
        rejected = CounterMetricFamily(
            "fastwsgi_rejected_requests",
            "Requests the server refused itself (malformed, limits, timeouts), by status.",
            labels=["reason"])
        for code, n in sorted(snap["rejected"].items()):
            rejected.add_metric([str(code)], n)
        yield rejected

    return collect


class _Once:
    def __init__(self, collect):
        self.collect = collect


def render(snap):
    """(body bytes, content type) of the Prometheus text exposition of ``snap``."""
    from prometheus_client import CollectorRegistry, exposition

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(_collector(snap)))
    content_type = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4",
                           "text/plain; version=0.0.4; charset=utf-8")
    return exposition.generate_latest(registry), content_type
