# Declarations of the unit fastwsgi/_conn_cache.pxi: large bodies the app returns
# again, sent from sealed memfds.  Included by _connection.pxd.

cdef class CachedBody:
    cdef int fd                      # the sealed memfd, -1 once closed
    cdef bytes data                  # the body it holds (identity: the cache's key)
    cdef Py_ssize_t size

cdef class BodyCache:
    cdef long long limit             # bytes of cached bodies, and of candidates
    cdef dict entries                # id(data) -> CachedBody, oldest first
    cdef dict candidates             # id(data) -> data, seen once, oldest first
    cdef object lock
    cdef long long size
    cdef long long candidate_bytes
    cdef long long hits
    cdef long long fills
    cdef int skip                    # lookups left before trying memfds again

    cdef CachedBody lookup(self, bytes data)
    cdef void _remember(self, object key, bytes data, Py_ssize_t n) except *
    cdef void _evict(self, Py_ssize_t room) except *
