"""--timeout inside a worker: a thread that answers stuck requests 504 and spares the rest.

Contract: ``Watchdog(slots, timeout, grace, pool=None, on_lost=...)`` started in a
worker reads the watchdog slots (the start time of the app call each app thread
runs, written by the compiled layer; 0.0 when idle or waiting on the client) every
tick.  For a request past ``timeout`` it, once per request:

1. logs the stack of the thread running it (file and line of every frame);
2. answers the client: ``conn.app_timed_out()`` sends 504 if no response byte went
   out, else closes the connection (with --threads; inline, the compiled loop
   turns the exception into the answer);
3. raises ``fastwsgi.errors.RequestTimeout`` in that thread
   (``PyThreadState_SetAsyncExc``): CPython delivers it at the thread's next
   bytecode, so Python code unwinds now and code blocked in C (``time.sleep``, a
   socket call) when that call returns.

Nobody waits for the thread.  If it has not unwound ``grace`` seconds later it is
stuck in C: with --threads the pool counts it as lost and starts a replacement
thread (``AppThreads.thread_lost``), and past ``max_lost`` lost threads
``on_lost(reason, why)`` asks for the worker to be recycled.  On the loop thread
(--threads 1) a thread cannot be replaced: the loop stops beating, and the master
kills the worker after --timeout plus the grace (fastwsgi/arbiter.py).

mod_wsgi 6 does the same inside Apache (its ``request-timeout``); the exception
is a BaseException so that an app's ``except Exception`` does not swallow it.
"""

import ctypes
import logging
import sys
import threading
import time
import traceback

from fastwsgi.errors import RequestTimeout

__all__ = ["Watchdog", "raise_in_thread", "thread_stack"]

log = logging.getLogger("fastwsgi.error")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


def raise_in_thread(ident, exc_type=RequestTimeout):
    """Raise exc_type in the thread ``ident`` at its next bytecode; True if found."""
    return _set_async_exc(ident, exc_type) == 1


def thread_stack(ident):
    """The stack of thread ``ident``, formatted as a traceback (most recent call last)."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "  (the thread has no Python frame)\n"
    return "".join(traceback.format_stack(frame))


class Watchdog:
    """One daemon thread per worker; see the module docstring."""

    def __init__(self, slots, timeout, grace, pool=None, loop_thread=None,
                 max_lost=1, on_lost=None):
        self.slots = slots                  # fastwsgi.worker.Shared: slot start times
        self.timeout = timeout
        self.grace = grace
        self.pool = pool                    # server.AppThreads, or None (--threads 1)
        self.loop_thread = loop_thread or threading.main_thread().ident
        self.max_lost = max_lost
        self.on_lost = on_lost              # on_lost(reason, why): recycle the worker
        self.fired = {}                     # slot -> (request key, fired at)
        self.timeouts = 0                   # requests answered 504 / cut
        self.interval = min(0.25, max(0.02, timeout / 8))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastwsgi-watchdog",
                                        daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.check(time.monotonic())
            except Exception:
                log.exception("watchdog failed")

    def check(self, now):
        pool = self.pool
        if pool is None:
            self._check_inline(now)
            return
        for slot, key, ident, started in pool.busy(self.slots):
            fired = self.fired.get(slot)
            if fired is not None and fired[0] == key:
                if now - fired[1] > self.grace and pool.thread_lost(slot, key):
                    self._lost(slot, ident, now - fired[1])
                continue
            if started and now - started > self.timeout:
                where = f"app thread {slot}"
                stack = thread_stack(ident)
                answered = pool.time_out(slot, key, ident)
                if answered is None:
                    continue                 # it finished meanwhile
                self.fired[slot] = (key, now)
                self._report(where, now - started, answered, stack)

    def _check_inline(self, now):
        started = self.slots.slot(0)
        fired = self.fired.get(0)
        if fired is not None and fired[0] == started:
            # still stuck in C: the loop cannot serve; have the replacement started
            # now (the master kills this worker once its heartbeat is silent for
            # --timeout plus the grace)
            if now - fired[1] > self.grace and self.on_lost is not None:
                self.on_lost("lost-threads", "has its loop thread stuck past "
                                             "--timeout plus --timeout-grace")
            return
        if started and now - started > self.timeout:
            stack = thread_stack(self.loop_thread)
            if self.slots.slot(0) != started:
                return
            raise_in_thread(self.loop_thread)
            self.fired[0] = (started, now)
            self._report("the loop thread", now - started, None, stack)

    def _report(self, where, ran, answered, stack):
        self.timeouts += 1
        what = {504: "answered 504", 0: "its response had started: connection closed",
                None: "raising RequestTimeout"}.get(answered, "connection closed")
        log.error("request on %s passed --timeout %gs (running for %.1fs); %s; "
                  "its stack (most recent call last):\n%s",
                  where, self.timeout, ran, what, stack.rstrip("\n"))

    def _lost(self, slot, ident, since):
        lost = self.pool.lost_count
        log.error("app thread %d has not unwound %.1fs after its timeout (stuck in C "
                  "code?); counting it as lost (%d lost) and starting a replacement; "
                  "its stack:\n%s", slot, since, lost, thread_stack(ident).rstrip("\n"))
        if lost > self.max_lost and self.on_lost is not None:
            self.on_lost("lost-threads", f"has {lost} lost app threads "
                                         f"(--max-lost-threads {self.max_lost})")
