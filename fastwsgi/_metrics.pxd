# The per-process metrics block, compiled: what a worker records per request, in
# shared memory the status listener (in the master, or a thread) reads and sums.
#
# Declared here so that fastwsgi/_connection.pyx records with inline C, no call:
#   if st.metrics is not NULL: record_response(st.metrics, code, duration, queue)
# Every field is written by one process only (its own block), under the GIL; the
# reader sums blocks without locks.  Aligned 8-byte loads and stores are single
# instructions on the platforms we build for, so a reader sees each field whole
# (never torn), if not all fields of one instant.  Free-threaded builds
# (Py_GIL_DISABLED) add counters with relaxed atomics instead of a plain add.
#
# Histograms keep one count per bucket (not cumulative; the reader accumulates):
# bucket i counts values <= BOUNDS[i] and above the bound before it; the last one
# is +Inf.  Layout changes bump BLOCK_MAGIC.

from libc.stdint cimport uint64_t, int64_t

cdef extern from *:
    """
    static const double fastwsgi_bounds[16] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
        0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0};
    static inline int fastwsgi_bucket(double v) {
        int i = 0;
        while (i < 16 && v > fastwsgi_bounds[i]) i++;
        return i;
    }
    #ifdef Py_GIL_DISABLED
    #define fastwsgi_add(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
    #else
    #define fastwsgi_add(p, v) (*(p) += (v))
    #endif
    """
    const double* BOUNDS "fastwsgi_bounds"
    int bucket_of "fastwsgi_bucket"(double v) nogil
    void add_u "fastwsgi_add"(uint64_t* p, uint64_t v) nogil
    void add_i "fastwsgi_add"(int64_t* p, int64_t v) nogil

cdef enum:
    N_BOUNDS = 16
    N_BUCKETS = 17             # N_BOUNDS and +Inf
    N_CODES = 600              # status codes 0..599; 0: no status (never framed)
    BLOCK_MAGIC = 0x6677736731   # "fwsg" 1

cdef struct Block:
    uint64_t magic
    int64_t pid
    int64_t app_threads        # threads that run the app (1: the loop thread)
    int64_t busy               # of those, running the app now
    int64_t queued             # requests parsed, waiting for an app thread
    int64_t in_flight          # requests between app dispatch and response end
    int64_t connections        # open client connections
    uint64_t timeouts          # requests answered by --timeout
    uint64_t codes[N_CODES]    # responses by status code
    uint64_t rejected[N_CODES] # requests refused by the server (parser, limits, 408)
    uint64_t duration[N_BUCKETS]   # head received -> response done, seconds
    double duration_sum
    uint64_t queue[N_BUCKETS]      # head received -> app called, seconds
    double queue_sum


cdef inline void record_response(Block* m, int code, double duration,
                                 double queue) noexcept nogil:
    """A response ended: its status, its time since the head arrived and (queue
    >= 0) the wait before the app was called."""
    if code < 0 or code >= N_CODES:
        code = 0
    add_u(&m.codes[code], 1)
    if duration < 0:
        duration = 0
    add_u(&m.duration[bucket_of(duration)], 1)
    m.duration_sum += duration
    if queue >= 0:
        add_u(&m.queue[bucket_of(queue)], 1)
        m.queue_sum += queue


cdef inline void record_reject(Block* m, int code, double duration) noexcept nogil:
    """The server refused a request itself (4xx/5xx before or instead of the app)."""
    if code < 0 or code >= N_CODES:
        code = 0
    add_u(&m.rejected[code], 1)
    record_response(m, code, duration, -1.0)


cdef class Metrics:
    cdef Block* block
    cdef object buf          # the writable buffer (an mmap) the block lives in


cdef inline void note_reject(Block* m, int code) noexcept nogil:
    """A refusal whose response is counted elsewhere (it ends like any response)."""
    if code < 0 or code >= N_CODES:
        code = 0
    add_u(&m.rejected[code], 1)
