# Helpers every kernel module uses around its OpenMP loop: how many threads a job gets, per-thread
# scratch, whether an output is streamed, and the fixed-order sum of per-chunk partials.
from libc.stdlib cimport malloc
from _common cimport floating

# Outputs at least this large are written with non-temporal stores when vector-aligned: they would
# not stay in cache for the next op anyway, and streaming saves the read-for-ownership.
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
