# cython: language_level=3
"""BatchNorm and element-wise activation kernels (channels-last, float32 and float64).

Design (loops in src/norm_impl.h):
- A tensor (N, ..., C) is viewed as M = N*H*W rows of C channels, vectorised over channels.
- Reductions (batch statistics; the backward's sum(dy) and sum(dy * (x - mean))) cut the rows into
  a number of chunks that depends on the shape only, each summed in float64 into its own partial;
  the partials are added in chunk order, so the result is bit-identical for any thread count.
  Chunks are handed out dynamically: a thread that shares its core with another process takes
  fewer of them.
- Statistics are shifted by the first row (see norm_impl.h): one pass, no loss to a large mean.
- Element-wise passes (normalise, input gradient, activations) run over chunks of rows with the
  same dynamic schedule; they may write in place.
- `act`: 0 none, 1 relu, 2 relu6 fused after the normalisation (backward masks with the output).
- Sizes: rows, element counts, offsets (r * C) and chunk bounds (M * j // nchunks) are long
  (64-bit); the channel count C is an int, which the layer checks (C <= INT32_MAX); 2 * C, the
  partials' stride, is taken in size_t.
Callers (fastconv/layers/normalization.py, fastconv/activations.py) check dtypes, contiguity and
shapes; nothing here raises except MemoryError.
"""
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from _common cimport floating
from _parallel cimport clamp_threads, sum_partials

cdef extern from "norm_kernels.h" nogil:
    void fc_bn_stats_f32(int isa, const float *x, int C, long r0, long r1, const float *k, double *s1, double *s2)
    void fc_bn_stats_f64(int isa, const double *x, int C, long r0, long r1, const double *k, double *s1,
                         double *s2)
    void fc_bn_dsums_f32(int isa, const float *dy, const float *x, const float *y, int act, int C, long r0,
                         long r1, const float *mean, double *s1, double *s2)
    void fc_bn_dsums_f64(int isa, const double *dy, const double *x, const double *y, int act, int C, long r0,
                         long r1, const double *mean, double *s1, double *s2)
    void fc_bn_affine_f32(int isa, const float *x, const float *mean, const float *a, const float *b, int act,
                          int C, long r0, long r1, float *y)
    void fc_bn_affine_f64(int isa, const double *x, const double *mean, const double *a, const double *b,
                          int act, int C, long r0, long r1, double *y)
    void fc_bn_dx_f32(int isa, const float *dy, const float *x, const float *y, int act, const float *mean,
                      const float *ga, const float *gb, const float *gc, int C, long r0, long r1, float *dx)
    void fc_bn_dx_f64(int isa, const double *dy, const double *x, const double *y, int act, const double *mean,
                      const double *ga, const double *gb, const double *gc, int C, long r0, long r1, double *dx)
    void fc_act_forward_f32(int isa, const float *x, int act, long i0, long i1, float *y)
    void fc_act_forward_f64(int isa, const double *x, int act, long i0, long i1, double *y)
    void fc_act_backward_f32(int isa, const float *dy, const float *y, int act, long i0, long i1, float *dx)
    void fc_act_backward_f64(int isa, const double *dy, const double *y, int act, long i0, long i1, double *dx)

ACT_CODES = {None: 0, "linear": 0, "relu": 1, "relu6": 2}

# Elements per reduction chunk (a shape-only choice: it fixes the order of the float64 sums) and
# per element-wise chunk; at most _MAX_CHUNKS partials are kept.
cdef long _REDUCE_ELEMS = 32768
cdef long _PASS_ELEMS = 65536
cdef long _MAX_CHUNKS = 64


cdef inline long _chunks(long rows, long row_elems, long per_chunk) noexcept nogil:
    """Chunks of whole rows of about `per_chunk` elements (1 <= chunks <= rows, _MAX_CHUNKS)."""
    cdef long n = rows * row_elems // per_chunk
    if n > _MAX_CHUNKS:
        n = _MAX_CHUNKS
    if n > rows:
        n = rows
    return n if n > 1 else 1


cdef double *_partials(long nchunks, int C) except NULL:
    cdef double *p = <double *>malloc(<size_t>nchunks * 2 * C * sizeof(double) + 8)
    if p == NULL:
        raise MemoryError()
    memset(p, 0, <size_t>nchunks * 2 * C * sizeof(double))
    return p


def bn_stats(const floating[:, ::1] x,      # IN  (M, C), M >= 1
             double[::1] mean,              # OUT (C,) batch mean
             double[::1] var,               # OUT (C,) biased batch variance
             int isa, int nthreads):
    """Per-channel mean and biased variance of x over its rows (float64 results)."""
    cdef long M = x.shape[0], j, r0, r1
    cdef int C = x.shape[1], c
    if M == 0 or C == 0:
        return
    cdef long nchunks = _chunks(M, C, _REDUCE_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    cdef double *part = _partials(nchunks, C)
    cdef const floating *k = &x[0, 0]  # shift: the first row
    cdef double s1, s2
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            r0 = M * j // nchunks
            r1 = M * (j + 1) // nchunks
            if floating is float:
                fc_bn_stats_f32(isa, &x[0, 0], C, r0, r1, k, part + j * 2 * C, part + j * 2 * C + C)
            else:
                fc_bn_stats_f64(isa, &x[0, 0], C, r0, r1, k, part + j * 2 * C, part + j * 2 * C + C)
        # per chunk: C sums of d, then C sums of d*d; added in chunk order
        sum_partials(part, 2 * <size_t>C, nchunks, C, &mean[0])
        sum_partials(part + C, 2 * <size_t>C, nchunks, C, &var[0])
        for c in range(C):
            s1 = mean[c]
            s2 = var[c]
            mean[c] = <double>k[c] + s1 / M
            s2 = (s2 - s1 * s1 / M) / M
            var[c] = s2 if s2 > 0 else 0.0
    free(part)


def bn_dsums(const floating[:, ::1] dy,     # IN  (M, C)
             const floating[:, ::1] x,      # IN  (M, C) the forward's input
             const floating[:, ::1] y,      # IN  (M, C) the forward's output, or None when act == 0
             int act,
             const floating[::1] mean,      # IN  (C,) the batch mean used by the forward
             double[::1] s1,                # OUT (C,) sum of g (g = dy through the fused activation)
             double[::1] s2,                # OUT (C,) sum of g * (x - mean)
             int isa, int nthreads):
    """The two per-channel sums of BatchNorm's backward (float64)."""
    cdef long M = x.shape[0], j, r0, r1
    cdef int C = x.shape[1]
    if C == 0:
        return
    if M == 0:
        s1[:] = 0
        s2[:] = 0
        return
    cdef long nchunks = _chunks(M, C, _REDUCE_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    cdef double *part = _partials(nchunks, C)
    cdef const floating *yp = &y[0, 0] if y is not None else NULL
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            r0 = M * j // nchunks
            r1 = M * (j + 1) // nchunks
            if floating is float:
                fc_bn_dsums_f32(isa, &dy[0, 0], &x[0, 0], yp, act, C, r0, r1, &mean[0],
                                part + j * 2 * C, part + j * 2 * C + C)
            else:
                fc_bn_dsums_f64(isa, &dy[0, 0], &x[0, 0], yp, act, C, r0, r1, &mean[0],
                                part + j * 2 * C, part + j * 2 * C + C)
        sum_partials(part, 2 * <size_t>C, nchunks, C, &s1[0])
        sum_partials(part + C, 2 * <size_t>C, nchunks, C, &s2[0])
    free(part)


def bn_affine(const floating[:, ::1] x,     # IN  (M, C)
              const floating[::1] mean,     # IN  (C,)
              const floating[::1] a,        # IN  (C,) scale
              const floating[::1] b,        # IN  (C,) shift
              floating[:, ::1] y,           # OUT (M, C), may be x's buffer
              int act, int isa, int nthreads):
    """y = act((x - mean) * a + b) per channel."""
    cdef long M = x.shape[0], j, r0, r1
    cdef int C = x.shape[1]
    if M == 0 or C == 0:
        return
    cdef long nchunks = _chunks(M, C, _PASS_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            r0 = M * j // nchunks
            r1 = M * (j + 1) // nchunks
            if floating is float:
                fc_bn_affine_f32(isa, &x[0, 0], &mean[0], &a[0], &b[0], act, C, r0, r1, &y[0, 0])
            else:
                fc_bn_affine_f64(isa, &x[0, 0], &mean[0], &a[0], &b[0], act, C, r0, r1, &y[0, 0])


def bn_dx(const floating[:, ::1] dy,        # IN  (M, C)
          const floating[:, ::1] x,         # IN  (M, C) the forward's input, or None (scale only)
          const floating[:, ::1] y,         # IN  (M, C) the forward's output, or None when act == 0
          int act,
          const floating[::1] mean,         # IN  (C,) (None with x None)
          const floating[::1] ga,           # IN  (C,)
          const floating[::1] gb,           # IN  (C,) (None with x None)
          const floating[::1] gc,           # IN  (C,) (None with x None)
          floating[:, ::1] dx,              # OUT (M, C), may be dy's buffer
          int isa, int nthreads):
    """dx = g * ga + (x - mean) * gb + gc per channel, g = dy through the fused activation."""
    cdef long M = dy.shape[0], j, r0, r1
    cdef int C = dy.shape[1]
    if M == 0 or C == 0:
        return
    cdef long nchunks = _chunks(M, C, _PASS_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    cdef const floating *xp = &x[0, 0] if x is not None else NULL
    cdef const floating *yp = &y[0, 0] if y is not None else NULL
    cdef const floating *mp = &mean[0] if x is not None else NULL
    cdef const floating *gbp = &gb[0] if x is not None else NULL
    cdef const floating *gcp = &gc[0] if x is not None else NULL
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            r0 = M * j // nchunks
            r1 = M * (j + 1) // nchunks
            if floating is float:
                fc_bn_dx_f32(isa, &dy[0, 0], xp, yp, act, mp, &ga[0], gbp, gcp, C, r0, r1, &dx[0, 0])
            else:
                fc_bn_dx_f64(isa, &dy[0, 0], xp, yp, act, mp, &ga[0], gbp, gcp, C, r0, r1, &dx[0, 0])


def act_forward(const floating[::1] x,      # IN  (n,) flat
                floating[::1] y,            # OUT (n,), may be x's buffer
                int act, int isa, int nthreads):
    """y = relu(x) (act 1) or relu6(x) (act 2), NaN passing through."""
    cdef long n = x.shape[0], j, i0, i1
    if n == 0:
        return
    cdef long nchunks = _chunks(n, 1, _PASS_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            i0 = n * j // nchunks
            i1 = n * (j + 1) // nchunks
            if floating is float:
                fc_act_forward_f32(isa, &x[0], act, i0, i1, &y[0])
            else:
                fc_act_forward_f64(isa, &x[0], act, i0, i1, &y[0])


def act_backward(const floating[::1] dy,    # IN  (n,) flat
                 const floating[::1] y,     # IN  (n,) the forward's output
                 floating[::1] dx,          # OUT (n,)
                 int act, int isa, int nthreads):
    """dx = dy where the activation let the gradient through (relu: y > 0; relu6: 0 < y < 6), else 0."""
    cdef long n = dy.shape[0], j, i0, i1
    if n == 0:
        return
    cdef long nchunks = _chunks(n, 1, _PASS_ELEMS)
    nthreads = clamp_threads(nthreads, nchunks)
    with nogil:
        for j in prange(nchunks, num_threads=nthreads, schedule='dynamic'):
            i0 = n * j // nchunks
            i1 = n * (j + 1) // nchunks
            if floating is float:
                fc_act_backward_f32(isa, &dy[0], &y[0], act, i0, i1, &dx[0])
            else:
                fc_act_backward_f64(isa, &dy[0], &y[0], act, i0, i1, &dx[0])
