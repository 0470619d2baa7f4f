# Unit of fastwsgi/_connection.pyx (included): large response bodies that the app
# returns again, sent from a sealed memfd with sendfile(2) instead of being copied.
#
# Contract:
# - BodyCache.lookup(data) is called by _write_body for a Content-Length-framed body
#   chunk of at least CACHE_MIN bytes.  It answers a CachedBody (a sealed memfd
#   holding exactly data's bytes) when `data` -- the same bytes object, by identity
#   -- was seen before, else None (the caller copies it into the socket as usual).
# - Identity is safe because the cache holds a reference to every object it knows:
#   an id() cannot be reused while it is in the cache.  A body seen once is a
#   candidate (held: at most MAX_CANDIDATES of them, together at most an eighth of
#   `limit`, so an app whose bodies are all new pins little; a larger body is never
#   a candidate, never cached); seen again,
#   it is copied once into a memfd that is then sealed (F_SEAL_WRITE and the size
#   seals): nothing can change those pages again, so a response can never carry
#   bytes other than its own, however long the kernel keeps them in flight after
#   sendfile() returned (on loopback, until the peer has read them).
# - Cached bodies are evicted oldest-first past `limit` bytes or MAX_ENTRIES
#   bodies (each holds a file descriptor).  The memfd is closed
#   when the last holder lets go: the cache, or a connection still sending it
#   (Connection.sf_hold); so an eviction never closes an fd under a send.
# - Every method may run on any thread (app threads); one lock guards the tables.
#   Failures to make a memfd (out of memory, out of fds) are not errors: the body
#   is sent by copy and the cache stops trying for the next RETRY_AFTER candidates.
#
# Why: on a socket, write() copies a body into the kernel's buffers each time;
# sendfile() of tmpfs pages lends the pages instead.  For a 1 MiB body that copy is
# half the server's CPU per response (bench/RESULTS.md, issue 15).

import threading

DEF CACHE_MIN = 131072        # bodies smaller than this are copied as before
DEF MAX_CANDIDATES = 4        # bodies seen once, kept to recognise a second time
DEF MAX_ENTRIES = 64          # cached bodies (memfds) at most
DEF RETRY_AFTER = 1000        # bodies sent by copy after a memfd could not be made


@cython.final
cdef class CachedBody:
    """A sealed memfd holding one body's bytes; closed when the last holder lets go."""

    def __cinit__(self):
        self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1


cdef CachedBody _seal_body(bytes data):
    """A new sealed memfd with data's bytes (OSError if one cannot be made)."""
    import fcntl
    cdef CachedBody body = CachedBody.__new__(CachedBody)
    body.fd = os.memfd_create("fastwsgi-body", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    body.data = data
    body.size = PyBytes_GET_SIZE(data)
    view = memoryview(data)
    done = 0
    while done < body.size:
        done += os.write(body.fd, view[done:])
    fcntl.fcntl(body.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return body


@cython.final
cdef class BodyCache:
    """Large bytes bodies seen twice, as sealed memfds (see the unit's contract)."""

    def __init__(self, long long limit):
        self.limit = limit
        self.entries = {}
        self.candidates = {}
        self.lock = threading.Lock()
        self.size = 0
        self.candidate_bytes = 0
        self.hits = 0
        self.fills = 0
        self.skip = 0

    @property
    def stats(self):
        """What the cache holds and did: for tests and debugging."""
        with self.lock:
            return {"entries": len(self.entries), "bytes": self.size,
                    "candidates": len(self.candidates), "hits": self.hits,
                    "fills": self.fills}

    cdef CachedBody lookup(self, bytes data):
        cdef CachedBody body
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        key = id(data)
        with self.lock:
            body = self.entries.get(key)
            if body is not None and body.data is data:
                # most recently used last: eviction takes the oldest
                del self.entries[key]
                self.entries[key] = body
                self.hits += 1
                return body
            if n > self.limit // 8:
                return None
            held = self.candidates.pop(key, None)
            if held is not data:
                if held is not None:
                    self.candidate_bytes -= PyBytes_GET_SIZE(held)
                self._remember(key, data, n)
                return None
            self.candidate_bytes -= n
            if self.skip > 0:
                self.skip -= 1
                return None
            try:
                body = _seal_body(data)
            except OSError:
                self.skip = RETRY_AFTER      # out of memory or fds: copy for a while
                return None
            self._evict(n)
            self.entries[key] = body
            self.size += n
            self.fills += 1
            return body

    cdef void _remember(self, object key, bytes data, Py_ssize_t n) except *:
        while self.candidates and (len(self.candidates) >= MAX_CANDIDATES
                                   or self.candidate_bytes + n > self.limit // 8):
            old = self.candidates.pop(next(iter(self.candidates)))
            self.candidate_bytes -= PyBytes_GET_SIZE(old)
        self.candidates[key] = data
        self.candidate_bytes += n

    cdef void _evict(self, Py_ssize_t room) except *:
        cdef CachedBody old
        while self.entries and (self.size + room > self.limit
                                or len(self.entries) >= MAX_ENTRIES):
            old = self.entries.pop(next(iter(self.entries)))
            self.size -= old.size

    def clear(self):
        """Forget every body (memfds close once no send holds them)."""
        with self.lock:
            self.entries.clear()
            self.candidates.clear()
            self.size = self.candidate_bytes = 0
            self.skip = 0
