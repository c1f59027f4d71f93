# cython: language_level=3
"""Depthwise convolution kernels: forward, input gradient, weight gradient (NHWC).

Design (the loops and register tiles are in src/depthwise_impl.h):
- x (N, H, W, C), w (KH, KW, C, M) read as (KH, KW, K) with K = C*M, y (N, OH, OW, K).
- Forward and input gradient are row jobs vectorised over channels with a 6-pixel register tile;
  the input gradient gathers from dy per dx row and column phase (no zero-stuffing), so every dx
  row is written by exactly one thread.
- Work is split into `nthreads` contiguous ranges of rows ((n, oh) for forward and weight gradient,
  (n, ih) for the input gradient) run with a static OpenMP schedule; each thread has its own
  scratch (row lists, tap lists and, for M > 1, a small cache of channel-expanded input rows).
- Weight gradient: each thread sums its rows into its own dw/db partial; partials are added in
  thread order, so results depend on the thread count only through float rounding.
- backward() runs both gradients (or only dw, db when dx is None) in one parallel pass over blocks of ~96 KiB of dy rows: a block's
  weight-gradient rows and the matching input-gradient rows run back to back on one thread, so dy
  is read from memory once.
Callers (fastconv/ops/depthwise.py) validate shapes and allocate outputs; nothing here raises
except MemoryError.
"""
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from _common cimport floating
from _parallel cimport (alloc_scratch, clamp_threads, scratch_base, stream_ok,
                        sum_partials)

cdef extern from "depthwise_kernels.h" nogil:
    ctypedef struct fc_dwp:
        int N, H, W, C, M, K
        int OH, OW, KH, KW
        int sh, sw, ph, pw, dh, dw
        int stream
    int fc_dw_vector_bytes(int isa)
    size_t fc_dw_scratch_f32(int isa, const fc_dwp *p)
    size_t fc_dw_scratch_f64(int isa, const fc_dwp *p)
    void fc_dw_forward_f32(int isa, const fc_dwp *p, const float *x, const float *w, const float *bias,
                           float *y, Py_ssize_t r0, Py_ssize_t r1, char *scratch)
    void fc_dw_forward_f64(int isa, const fc_dwp *p, const double *x, const double *w, const double *bias,
                           double *y, Py_ssize_t r0, Py_ssize_t r1, char *scratch)
    void fc_dw_backward_blocks_f32(int isa, const fc_dwp *p, const float *x, const float *dy, const float *w,
                                   float *dx, Py_ssize_t b0, Py_ssize_t b1, int BR, float *dwp, float *dbp, char *scratch)
    void fc_dw_backward_blocks_f64(int isa, const fc_dwp *p, const double *x, const double *dy, const double *w,
                                   double *dx, Py_ssize_t b0, Py_ssize_t b1, int BR, double *dwp, double *dbp, char *scratch)


cdef inline void _geometry(fc_dwp *p, int N, int H, int W, int C, int M, int OH, int OW, int KH, int KW,
                           int sh, int sw, int ph, int pw, int dh, int dwl) noexcept nogil:
    p.N = N; p.H = H; p.W = W; p.C = C; p.M = M; p.K = C * M
    p.OH = OH; p.OW = OW; p.KH = KH; p.KW = KW
    p.sh = sh; p.sw = sw; p.ph = ph; p.pw = pw; p.dh = dh; p.dw = dwl
    p.stream = 0


cdef inline int _stream(const void *out, size_t nbytes, int channels, size_t itemsize, int isa) noexcept nogil:
    return stream_ok(out, nbytes, channels, itemsize, fc_dw_vector_bytes(isa) if itemsize == 4 else 16)


def forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
            const floating[:, :, :, ::1] w,     # IN  (KH, KW, C, M)
            const floating[::1] bias,           # IN  (C*M,) or None
            floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C*M)
            int sh, int sw, int ph, int pw, int dh, int dwl, int isa, int nthreads):
    """y = depthwise_conv2d(x, w, bias) with top/left padding (ph, pw); OH, OW come from y."""
    cdef fc_dwp p
    _geometry(&p, x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[3], y.shape[1], y.shape[2],
              w.shape[0], w.shape[1], sh, sw, ph, pw, dh, dwl)
    cdef Py_ssize_t R = <Py_ssize_t>p.N * p.OH
    if R == 0 or p.OW == 0 or p.K == 0:
        return
    nthreads = clamp_threads(nthreads, R)
    cdef size_t sb = fc_dw_scratch_f32(isa, &p) if floating is float else fc_dw_scratch_f64(isa, &p)
    cdef char *mem = alloc_scratch(&sb, nthreads)
    cdef char *base = scratch_base(mem)
    cdef const floating *bp = &bias[0] if bias is not None else NULL
    p.stream = _stream(&y[0, 0, 0, 0], <size_t>R * p.OW * p.K * sizeof(floating), p.K, sizeof(floating), isa)
    cdef Py_ssize_t t, r0, r1
    with nogil:
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            r0 = R * t // nthreads
            r1 = R * (t + 1) // nthreads
            if floating is float:
                fc_dw_forward_f32(isa, &p, &x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], r0, r1,
                                  base + threadid() * sb)
            else:
                fc_dw_forward_f64(isa, &p, &x[0, 0, 0, 0], &w[0, 0, 0, 0], bp, &y[0, 0, 0, 0], r0, r1,
                                  base + threadid() * sb)
    free(mem)


def backward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
             const floating[:, :, :, ::1] dy,    # IN  (N, OH, OW, C*M)
             const floating[:, :, :, ::1] w,     # IN  (KH, KW, C, M)
             floating[:, :, :, ::1] dx,          # OUT (N, H, W, C), or None to skip it
             floating[:, :, :, ::1] dw,          # OUT (KH, KW, C, M)
             floating[::1] db,                   # OUT (C*M,)
             int sh, int sw, int ph, int pw, int dh, int dwl, int isa, int nthreads):
    """dx, dw and db of depthwise_conv2d in one parallel pass over blocks of dy rows.

    Each block's weight-gradient rows and input-gradient rows run back to back on one thread, so dy
    comes from memory once; dw/db partials per thread are added in thread order.
    """
    cdef fc_dwp p
    _geometry(&p, x.shape[0], x.shape[1], x.shape[2], x.shape[3], dw.shape[3], dy.shape[1], dy.shape[2],
              dw.shape[0], dw.shape[1], sh, sw, ph, pw, dh, dwl)
    cdef size_t nw = <size_t>p.KH * p.KW * p.K
    cdef size_t part = (nw + p.K + 15) & ~(<size_t>15)
    if p.N == 0 or p.OH == 0 or p.OW == 0 or p.K == 0:
        dw[...] = 0
        db[...] = 0
        return
    # dy rows per block: about 96 KiB of dy (the dx and x rows of a block are sh times that)
    cdef Py_ssize_t row_bytes = <Py_ssize_t>p.OW * p.K * <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t BR = 98304 // row_bytes
    if BR < 1:
        BR = 1
    if BR > p.OH:
        BR = p.OH
    cdef Py_ssize_t B = <Py_ssize_t>p.N * ((p.OH + BR - 1) // BR)
    nthreads = clamp_threads(nthreads, B)
    cdef floating *dxp = NULL
    if dx is not None:
        dxp = &dx[0, 0, 0, 0]
        p.stream = _stream(dxp, <size_t>p.N * p.H * p.W * p.C * sizeof(floating), p.K, sizeof(floating), isa)
    cdef size_t sb = fc_dw_scratch_f32(isa, &p) if floating is float else fc_dw_scratch_f64(isa, &p)
    cdef char *mem = alloc_scratch(&sb, nthreads)
    cdef char *base = scratch_base(mem)
    cdef floating *partials = <floating *>malloc(part * nthreads * sizeof(floating))
    if partials == NULL:
        free(mem)
        raise MemoryError()
    cdef floating *pd
    cdef Py_ssize_t t, b0, b1
    with nogil:
        memset(partials, 0, part * nthreads * sizeof(floating))
        for t in prange(nthreads, num_threads=nthreads, schedule='static'):
            b0 = B * t // nthreads
            b1 = B * (t + 1) // nthreads
            pd = partials + t * part
            if floating is float:
                fc_dw_backward_blocks_f32(isa, &p, &x[0, 0, 0, 0], &dy[0, 0, 0, 0], &w[0, 0, 0, 0], dxp, b0, b1,
                                          <int>BR, pd, pd + nw, base + threadid() * sb)
            else:
                fc_dw_backward_blocks_f64(isa, &p, &x[0, 0, 0, 0], &dy[0, 0, 0, 0], &w[0, 0, 0, 0], dxp, b0, b1,
                                          <int>BR, pd, pd + nw, base + threadid() * sb)
        # fixed-order reduction of the per-thread partials
        sum_partials(partials, part, nthreads, nw, &dw[0, 0, 0, 0])
        sum_partials(partials + nw, part, nthreads, p.K, &db[0])
    free(partials)
    free(mem)
