# cython: language_level=3
"""Pooling kernels: max (with optional int32 argmax), average and global average, forward and
backward (NHWC, float32 and float64).

Design (loops in src/pool_impl.h):
- Vectorised over channels (C innermost); one pass over the input per forward.
- Forward: `nthreads` contiguous ranges of output rows (n, oh), static OpenMP schedule.
- Backward: every dx element is written exactly once by the thread owning it (no races, no zero
  fill).  Non-overlapping windows (stride >= pool size): one fused pass over output rows, each
  owning the band of dx rows up to the next window.  Overlapping windows: a gather per dx row;
  max pooling recomputes the argmax of the covering output rows from x into a per-thread ring
  (or reads an argmax saved by the forward: the input-plane index ih*W + iw, int32; the op
  refuses a saved argmax when H*W > INT32_MAX).
- Sizes: the geometry (fc_poolp) is int; fastconv/ops/pool.py checks every dimension, padded
  extent and window against INT32_MAX before calling (see pool_impl.h); offsets are 64-bit.
- Global average pooling: forward parallel over images, backward over dx rows.
Callers (fastconv/ops/pool.py) validate shapes and allocate outputs; nothing here raises except
MemoryError.
"""
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport int32_t
from _common cimport floating
from _parallel cimport alloc_scratch, clamp_threads, scratch_base, stream_ok

cdef extern from "pool_kernels.h" nogil:
    ctypedef struct fc_poolp:
        int N, H, W, C
        int OH, OW, KH, KW
        int sh, sw, ph, pw
        int include_pad
        int stream
    int fc_pool_vector_bytes(int isa)
    long fc_pool_backward_units(const fc_poolp *p, int saved_argmax)
    size_t fc_pool_scratch_f32(int isa, const fc_poolp *p)
    size_t fc_pool_scratch_f64(int isa, const fc_poolp *p)
    void fc_maxpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, int32_t *am, long r0, long r1)
    void fc_maxpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, int32_t *am, long r0, long r1)
    void fc_maxpool_backward_f32(int isa, const fc_poolp *p, const float *x, const float *dy, const int32_t *am,
                                 float *dx, long r0, long r1, char *scratch)
    void fc_maxpool_backward_f64(int isa, const fc_poolp *p, const double *x, const double *dy, const int32_t *am,
                                 double *dx, long r0, long r1, char *scratch)
    void fc_avgpool_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long r0, long r1)
    void fc_avgpool_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long r0, long r1)
    void fc_avgpool_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1,
                                 char *scratch)
    void fc_avgpool_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1,
                                 char *scratch)
    void fc_gap_forward_f32(int isa, const fc_poolp *p, const float *x, float *y, long n0, long n1, char *scratch)
    void fc_gap_forward_f64(int isa, const fc_poolp *p, const double *x, double *y, long n0, long n1, char *scratch)
    void fc_gap_backward_f32(int isa, const fc_poolp *p, const float *dy, float *dx, long r0, long r1)
    void fc_gap_backward_f64(int isa, const fc_poolp *p, const double *dy, double *dx, long r0, long r1)


cdef inline int _stream(const void *out, size_t nbytes, int channels, size_t itemsize, int isa) noexcept nogil:
    return stream_ok(out, nbytes, channels, itemsize, fc_pool_vector_bytes(isa) if itemsize == 4 else 16)


cdef inline void _geometry(fc_poolp *p, int N, int H, int W, int C, int OH, int OW, int KH, int KW,
                           int sh, int sw, int ph, int pw, int include_pad) noexcept nogil:
    p.N = N; p.H = H; p.W = W; p.C = C; p.OH = OH; p.OW = OW; p.KH = KH; p.KW = KW
    p.sh = sh; p.sw = sw; p.ph = ph; p.pw = pw; p.include_pad = include_pad
    p.stream = 0


def max_forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
                floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C)
                int32_t[:, :, :, ::1] argmax,       # OUT (N, OH, OW, C) input-plane index, or None
                int KH, int KW, int sh, int sw, int ph, int pw, int isa, int nthreads):
    """y = max_pool2d(x) (padding given as top/left; OH, OW come from y)."""
    cdef fc_poolp p
    _geometry(&p, x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], KH, KW,
              sh, sw, ph, pw, 0)
    cdef long R = <long>p.N * p.OH
    if R == 0 or p.OW == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    cdef int32_t *am = &argmax[0, 0, 0, 0] if argmax is not None else NULL
    p.stream = _stream(&y[0, 0, 0, 0], <size_t>R * p.OW * p.C * sizeof(floating), p.C, sizeof(floating), isa)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_maxpool_forward_f32(isa, &p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], am, r0, r1)
            else:
                fc_maxpool_forward_f64(isa, &p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], am, r0, r1)


def max_backward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C) (unused when argmax is given)
                 const floating[:, :, :, ::1] dy,    # IN  (N, OH, OW, C)
                 const int32_t[:, :, :, ::1] argmax,  # IN  saved argmax, or None to recompute from x
                 floating[:, :, :, ::1] dx,          # OUT (N, H, W, C)
                 int KH, int KW, int sh, int sw, int ph, int pw, int isa, int nthreads):
    """dx of max_pool2d: dy goes to the first maximum of each window; every dx element is written."""
    cdef fc_poolp p
    _geometry(&p, dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3], dy.shape[1], dy.shape[2], KH, KW,
              sh, sw, ph, pw, 0)
    cdef long R = fc_pool_backward_units(&p, argmax is not None)
    if p.N == 0 or p.H == 0 or p.W == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    cdef const int32_t *am = &argmax[0, 0, 0, 0] if argmax is not None else NULL
    p.stream = _stream(&dx[0, 0, 0, 0], <size_t>p.N * p.H * p.W * p.C * sizeof(floating), p.C, sizeof(floating), isa)
    cdef size_t sb = fc_pool_scratch_f32(isa, &p) if floating is float else fc_pool_scratch_f64(isa, &p)
    cdef char *mem = alloc_scratch(&sb, nthreads)
    cdef char *base = scratch_base(mem)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_maxpool_backward_f32(isa, &p, &x[0, 0, 0, 0], &dy[0, 0, 0, 0], am, &dx[0, 0, 0, 0], r0, r1,
                                        base + threadid() * sb)
            else:
                fc_maxpool_backward_f64(isa, &p, &x[0, 0, 0, 0], &dy[0, 0, 0, 0], am, &dx[0, 0, 0, 0], r0, r1,
                                        base + threadid() * sb)
    free(mem)


def avg_forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
                floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C)
                int KH, int KW, int sh, int sw, int ph, int pw, bint count_include_pad, int isa, int nthreads):
    """y = avg_pool2d(x) (padding given as top/left; OH, OW come from y)."""
    cdef fc_poolp p
    _geometry(&p, x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], KH, KW,
              sh, sw, ph, pw, count_include_pad)
    cdef long R = <long>p.N * p.OH
    if R == 0 or p.OW == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    p.stream = _stream(&y[0, 0, 0, 0], <size_t>R * p.OW * p.C * sizeof(floating), p.C, sizeof(floating), isa)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_avgpool_forward_f32(isa, &p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], r0, r1)
            else:
                fc_avgpool_forward_f64(isa, &p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], r0, r1)


def avg_backward(const floating[:, :, :, ::1] dy,   # IN  (N, OH, OW, C)
                 floating[:, :, :, ::1] dx,         # OUT (N, H, W, C)
                 int KH, int KW, int sh, int sw, int ph, int pw, bint count_include_pad, int isa, int nthreads):
    """dx of avg_pool2d; every dx element is written."""
    cdef fc_poolp p
    _geometry(&p, dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3], dy.shape[1], dy.shape[2], KH, KW,
              sh, sw, ph, pw, count_include_pad)
    cdef long R = fc_pool_backward_units(&p, 0)
    if p.N == 0 or p.H == 0 or p.W == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    p.stream = _stream(&dx[0, 0, 0, 0], <size_t>p.N * p.H * p.W * p.C * sizeof(floating), p.C, sizeof(floating), isa)
    cdef size_t sb = fc_pool_scratch_f32(isa, &p) if floating is float else fc_pool_scratch_f64(isa, &p)
    cdef char *mem = alloc_scratch(&sb, nthreads)
    cdef char *base = scratch_base(mem)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_avgpool_backward_f32(isa, &p, &dy[0, 0, 0, 0], &dx[0, 0, 0, 0], r0, r1, base + threadid() * sb)
            else:
                fc_avgpool_backward_f64(isa, &p, &dy[0, 0, 0, 0], &dx[0, 0, 0, 0], r0, r1, base + threadid() * sb)
    free(mem)


def global_avg_forward(const floating[:, :, :, ::1] x,   # IN  (N, H, W, C)
                       floating[:, ::1] y,               # OUT (N, C)
                       int isa, int nthreads):
    """y[n, c] = mean of x[n, :, :, c]; parallel over images."""
    cdef fc_poolp p
    _geometry(&p, x.shape[0], x.shape[1], x.shape[2], x.shape[3], 1, 1, x.shape[1], x.shape[2], 1, 1, 0, 0, 0)
    cdef long R = p.N
    if R == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    # Only the channel sums: fc_pool_scratch_* would size the window pooling's gather lists for an
    # H x W window at stride 1, about 40*H*W bytes per thread (43 GB for a 2 GB input of 2^29 pixels).
    # C + 16 sums of a pixel block (floating) and as many float64 totals (pool_impl.h).
    cdef size_t sb = (<size_t>p.C + 16) * (sizeof(floating) + sizeof(double)) + 128
    cdef char *mem = alloc_scratch(&sb, nthreads)
    cdef char *base = scratch_base(mem)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_gap_forward_f32(isa, &p, &x[0, 0, 0, 0], &y[0, 0], r0, r1, base + threadid() * sb)
            else:
                fc_gap_forward_f64(isa, &p, &x[0, 0, 0, 0], &y[0, 0], r0, r1, base + threadid() * sb)
    free(mem)


def global_avg_backward(const floating[:, ::1] dy,       # IN  (N, C)
                        floating[:, :, :, ::1] dx,       # OUT (N, H, W, C)
                        int isa, int nthreads):
    """dx[n, h, w, c] = dy[n, c] / (H*W); parallel over dx rows."""
    cdef fc_poolp p
    _geometry(&p, dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3], 1, 1, dx.shape[1], dx.shape[2],
              1, 1, 0, 0, 0)
    cdef long R = <long>p.N * p.H
    if R == 0 or p.W == 0 or p.C == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    cdef long t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_gap_backward_f32(isa, &p, &dy[0, 0], &dx[0, 0, 0, 0], r0, r1)
            else:
                fc_gap_backward_f64(isa, &p, &dy[0, 0], &dx[0, 0, 0, 0], r0, r1)
