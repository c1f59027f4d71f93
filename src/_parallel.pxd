# Helpers every kernel module uses around its OpenMP loop: per-thread scratch, whether an output is
# streamed, the fixed-order sum of per-chunk partials, and run_chunks, the one loop skeleton of the
# wrappers (the plan in fastconv/ops/_plan.py chose the chunks and the thread count).
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from _common cimport floating

# Outputs at least this large are written with non-temporal stores when vector-aligned: they would
# not stay in cache for the next op anyway, and streaming saves the read-for-ownership.  The one
# definition of the threshold: fastconv/ops/_validate.py reads it (STREAM_BYTES of each module).
cdef enum:
    STREAM_MIN_BYTES = 4 << 20


cdef inline int clamp_threads(int nthreads, Py_ssize_t work) noexcept nogil:
    """At most one thread per unit of work, and at least one thread."""
    if nthreads > work:
        nthreads = <int>work
    return nthreads if nthreads > 0 else 1


cdef inline int stream_ok(const void *out, size_t nbytes, Py_ssize_t channels, size_t itemsize,
                          size_t vector_bytes) noexcept nogil:
    """Whether an output may be streamed: large, and every vector store of a pixel aligned."""
    return (nbytes >= STREAM_MIN_BYTES and (<size_t>out) % vector_bytes == 0
            and (channels * itemsize) % vector_bytes == 0)


cdef inline char *alloc_scratch(size_t *sb, int nthreads) except NULL:
    """Room for nthreads slices of sb bytes; rounds sb up to 64.  Free the result with free();
    thread t's slice starts at scratch_base(mem) + t * sb[0]."""
    sb[0] = (sb[0] + 63) & ~(<size_t>63)
    cdef char *mem = <char *>malloc(sb[0] * nthreads + 64)
    if mem == NULL:
        raise MemoryError()
    return mem


cdef inline char *scratch_base(char *mem) noexcept nogil:
    """The first 64-byte boundary in an alloc_scratch block."""
    return <char *>((<size_t>mem + 63) & ~(<size_t>63))


# One chunk of a job: chunk j covers units [u0, u1); scratch is the running thread's slice.
ctypedef void (*chunk_fn)(const void *job, Py_ssize_t j, Py_ssize_t u0, Py_ssize_t u1,
                          char *scratch) noexcept nogil


cdef inline int run_chunks(chunk_fn fn, const void *job, Py_ssize_t units, Py_ssize_t nchunks,
                           int nthreads, bint dynamic, size_t scratch_bytes) except -1:
    """The loop skeleton of every wrapper: `units` cut into `nchunks` contiguous chunks
    (chunk j = [units*j // nchunks, units*(j+1) // nchunks)), run by `nthreads` threads with a
    dynamic or a static schedule, each thread with its own 64-byte aligned scratch slice.

    The plan chose nchunks and nthreads (a static plan has one chunk per thread); `fn` casts `job`
    to its struct and calls the f32 or f64 kernel, so the float/double branch is one line per
    kernel and the indirect call is paid once per chunk, not per row.
    """
    if units <= 0 or nchunks <= 0:
        return 0
    nthreads = clamp_threads(nthreads, nchunks)
    cdef size_t sb = scratch_bytes
    cdef char *mem = NULL
    cdef char *base = NULL
    if sb:
        mem = alloc_scratch(&sb, nthreads)
        base = scratch_base(mem)
    cdef Py_ssize_t j
    with nogil:
        if dynamic:
            for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
                fn(job, j, units * j // nchunks, units * (j + 1) // nchunks,
                   base + threadid() * sb if sb else NULL)
        else:
            for j in prange(nchunks, num_threads=nthreads, schedule='static'):
                fn(job, j, units * j // nchunks, units * (j + 1) // nchunks,
                   base + threadid() * sb if sb else NULL)
    free(mem)
    return 0


cdef inline int run_split(chunk_fn fn, const void *job, tuple split, size_t scratch_bytes) except -1:
    """run_chunks with the plan's split (units, nchunks, threads, dynamic): fastconv/ops/_plan.py
    RowSplit.args()."""
    cdef Py_ssize_t units, nchunks
    cdef int nthreads
    cdef bint dynamic
    units, nchunks, nthreads, dynamic = split
    return run_chunks(fn, job, units, nchunks, nthreads, dynamic, scratch_bytes)


cdef inline void sum_partials(const floating *partials, size_t stride, Py_ssize_t nparts, size_t n,
                              floating *out) noexcept nogil:
    """out[i] = partials[i] + partials[stride + i] + ... in part order, so the sum does not depend on
    which thread produced which part."""
    cdef size_t i
    cdef Py_ssize_t j
    cdef floating s
    for i in range(n):
        s = partials[i]
        for j in range(1, nparts):
            s = s + partials[j * stride + i]
        out[i] = s
