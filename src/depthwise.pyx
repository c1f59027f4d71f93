# cython: language_level=3
"""Depthwise convolution kernels: forward, input gradient, weight gradient (NHWC).

Design (the loops and register tiles are in src/depthwise_impl.h):
- x (N, H, W, C), w (KH, KW, C, M) read as (KH, KW, K) with K = C*M, y (N, OH, OW, K).
- Forward and input gradient are row jobs vectorised over channels with a 6-pixel register tile;
  the input gradient gathers from dy per dx row and column phase (no zero-stuffing), so every dx
  row is written by exactly one thread.
- The plan (fastconv/ops/_plan.py DepthwisePlan) gives the geometry, the backward's block rows and
  the split: one contiguous range of units per thread, static schedule (run_split, _parallel.pxd);
  each thread has its own scratch (row lists, tap lists and, for M > 1, a small cache of
  channel-expanded input rows).  These wrappers fill fc_dwp and run the loop.
- Weight gradient: each chunk (= thread) sums its rows into its own dw/db partial; partials are
  added in chunk order, so results depend on the thread count only through float rounding.
- backward() runs both gradients (or only dw, db when dx is None) in one parallel pass over blocks
  of ~96 KiB of dy rows: a block's weight-gradient rows and the matching input-gradient rows run
  back to back on one thread, so dy is read from memory once.
Callers (fastconv/ops/depthwise.py) validate shapes, plan and allocate outputs; nothing here raises
except MemoryError, and ValueError for a plan that does not match the arrays.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from _common cimport floating
from _parallel cimport run_split, stream_ok, sum_partials

cdef extern from "depthwise_kernels.h" nogil:
    ctypedef struct fc_dwp:
        int N, H, W, C, M, K
        int OH, OW, KH, KW
        int sh, sw, ph, pw, dh, dw
        int stream
    int fc_dw_vector_bytes(int isa)
    size_t fc_dw_scratch_f32(int isa, const fc_dwp *p, int backward)
    size_t fc_dw_scratch_f64(int isa, const fc_dwp *p, int backward)
    void fc_dw_forward_f32(int isa, const fc_dwp *p, const float *x, const float *w, const float *bias,
                           float *y, Py_ssize_t r0, Py_ssize_t r1, char *scratch)
    void fc_dw_forward_f64(int isa, const fc_dwp *p, const double *x, const double *w, const double *bias,
                           double *y, Py_ssize_t r0, Py_ssize_t r1, char *scratch)
    void fc_dw_backward_blocks_f32(int isa, const fc_dwp *p, const float *x, const float *dy, const float *w,
                                   float *dx, Py_ssize_t b0, Py_ssize_t b1, int BR, float *dwp, float *dbp, char *scratch)
    void fc_dw_backward_blocks_f64(int isa, const fc_dwp *p, const double *x, const double *dy, const double *w,
                                   double *dx, Py_ssize_t b0, Py_ssize_t b1, int BR, double *dwp, double *dbp, char *scratch)


cdef int _geometry(fc_dwp *p, tuple g, Py_ssize_t *x_shape, Py_ssize_t *w_shape, Py_ssize_t *y_shape) except -1:
    """fc_dwp from the plan's geometry, which must describe these arrays (the kernels trust it)."""
    (p.N, p.H, p.W, p.C, p.M, p.OH, p.OW, p.KH, p.KW, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw) = g
    p.K = p.C * p.M
    p.stream = 0
    if (x_shape[0] != p.N or x_shape[1] != p.H or x_shape[2] != p.W or x_shape[3] != p.C
            or w_shape[0] != p.KH or w_shape[1] != p.KW or w_shape[2] != p.C or w_shape[3] != p.M
            or y_shape[0] != p.N or y_shape[1] != p.OH or y_shape[2] != p.OW or y_shape[3] != p.K):
        raise ValueError(f"depthwise: the plan's geometry {g} does not match the arrays")
    return 0


cdef inline int _stream(const void *out, size_t nbytes, int channels, size_t itemsize, int isa) noexcept nogil:
    return stream_ok(out, nbytes, channels, itemsize, fc_dw_vector_bytes(isa) if itemsize == 4 else 16)


# One call of either kernel: chunk j of the plan's split runs units [u0, u1) (rows forward, blocks
# backward) with the f32 or the f64 kernel (f64 says which type the pointers point to).
ctypedef struct _job:
    fc_dwp p
    int isa, f64, BR
    const void *x
    const void *w
    const void *bias     # forward, or NULL
    const void *dy       # backward
    void *out            # y, or dx (NULL: no input gradient)
    void *partials       # backward: chunk j's dw then db at partials + j * part
    size_t part, nw


cdef void _forward(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    if b.f64:
        fc_dw_forward_f64(b.isa, &b.p, <const double *>b.x, <const double *>b.w, <const double *>b.bias,
                          <double *>b.out, r0, r1, s)
    else:
        fc_dw_forward_f32(b.isa, &b.p, <const float *>b.x, <const float *>b.w, <const float *>b.bias,
                          <float *>b.out, r0, r1, s)


cdef void _backward(const void *jp, Py_ssize_t j, Py_ssize_t b0, Py_ssize_t b1, char *s) noexcept nogil:
    cdef const _job *b = <const _job *>jp
    cdef double *pd
    cdef float *pf
    if b.f64:
        pd = <double *>b.partials + j * b.part
        fc_dw_backward_blocks_f64(b.isa, &b.p, <const double *>b.x, <const double *>b.dy, <const double *>b.w,
                                  <double *>b.out, b0, b1, b.BR, pd, pd + b.nw, s)
    else:
        pf = <float *>b.partials + j * b.part
        fc_dw_backward_blocks_f32(b.isa, &b.p, <const float *>b.x, <const float *>b.dy, <const float *>b.w,
                                  <float *>b.out, b0, b1, b.BR, pf, pf + b.nw, s)


cdef inline size_t _scratch(int isa, const fc_dwp *p, bint f64, int backward) noexcept nogil:
    return fc_dw_scratch_f64(isa, p, backward) if f64 else fc_dw_scratch_f32(isa, p, backward)


def forward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
            const floating[:, :, :, ::1] w,     # IN  (KH, KW, C, M)
            const floating[::1] bias,           # IN  (C*M,) or None
            floating[:, :, :, ::1] y,           # OUT (N, OH, OW, C*M)
            tuple geometry, tuple split, int isa):
    """y = depthwise_conv2d(x, w, bias) as DepthwisePlan planned it (geometry, split = RowSplit.args())."""
    cdef _job b
    memset(&b, 0, sizeof(_job))
    _geometry(&b.p, geometry, x.shape, w.shape, y.shape)
    cdef Py_ssize_t R = <Py_ssize_t>b.p.N * b.p.OH
    if split[0] != R:
        raise ValueError(f"depthwise: the plan's split {split} is not the {R} output rows of {geometry}")
    if R == 0 or b.p.OW == 0 or b.p.K == 0:
        return
    b.isa = isa
    b.f64 = floating is double
    b.x = &x[0, 0, 0, 0]
    b.w = &w[0, 0, 0, 0]
    b.bias = &bias[0] if bias is not None else NULL
    b.out = &y[0, 0, 0, 0]
    b.p.stream = _stream(b.out, <size_t>R * b.p.OW * b.p.K * sizeof(floating), b.p.K, sizeof(floating),
                         isa)
    run_split(_forward, &b, split, _scratch(isa, &b.p, b.f64, 0))


def backward(const floating[:, :, :, ::1] x,     # IN  (N, H, W, C)
             const floating[:, :, :, ::1] dy,    # IN  (N, OH, OW, C*M)
             const floating[:, :, :, ::1] w,     # IN  (KH, KW, C, M)
             floating[:, :, :, ::1] dx,          # OUT (N, H, W, C), or None to skip it
             floating[:, :, :, ::1] dw,          # OUT (KH, KW, C, M)
             floating[::1] db,                   # OUT (C*M,)
             tuple geometry, int block_rows, tuple split, int isa):
    """dx, dw and db of depthwise_conv2d in one parallel pass over the plan's blocks of block_rows
    dy rows (DepthwisePlan; split = RowSplit.args()).

    Each block's weight-gradient rows and input-gradient rows run back to back on one thread, so dy
    comes from memory once; dw/db partials per chunk are added in chunk order.
    """
    cdef _job b
    memset(&b, 0, sizeof(_job))
    _geometry(&b.p, geometry, x.shape, w.shape, dy.shape)
    if dw.shape[0] != w.shape[0] or dw.shape[1] != w.shape[1] or dw.shape[2] != w.shape[2] or dw.shape[3] != w.shape[3]:
        raise ValueError(f"depthwise: the plan's geometry {geometry} does not match dw")
    if dx is not None and (dx.shape[0] != b.p.N or dx.shape[1] != b.p.H or dx.shape[2] != b.p.W
                           or dx.shape[3] != b.p.C):
        raise ValueError(f"depthwise: the plan's geometry {geometry} does not match dx")
    if db.shape[0] != b.p.K:
        raise ValueError(f"depthwise: the plan's geometry {geometry} does not match db")
    if b.p.N == 0 or b.p.OH == 0 or b.p.OW == 0 or b.p.K == 0:
        dw[...] = 0
        db[...] = 0
        return
    cdef Py_ssize_t nchunks = split[1]
    if block_rows < 1 or split[0] != b.p.N * ((b.p.OH + block_rows - 1) // block_rows):
        raise ValueError(f"depthwise: the plan's split {split} is not the blocks of {block_rows} rows of {geometry}")
    b.isa = isa
    b.f64 = floating is double
    b.BR = block_rows
    b.x = &x[0, 0, 0, 0]
    b.dy = &dy[0, 0, 0, 0]
    b.w = &w[0, 0, 0, 0]
    if dx is not None:
        b.out = &dx[0, 0, 0, 0]
        b.p.stream = _stream(b.out, <size_t>b.p.N * b.p.H * b.p.W * b.p.C * sizeof(floating), b.p.K,
                             sizeof(floating), isa)
    b.nw = <size_t>b.p.KH * b.p.KW * b.p.K
    b.part = (b.nw + b.p.K + 15) & ~(<size_t>15)
    cdef floating *partials = <floating *>malloc(b.part * nchunks * sizeof(floating))
    if partials == NULL:
        raise MemoryError()
    b.partials = partials
    try:
        memset(partials, 0, b.part * nchunks * sizeof(floating))
        run_split(_backward, &b, split, _scratch(isa, &b.p, b.f64, 1))
        with nogil:
            # fixed-order reduction of the per-chunk partials
            sum_partials(partials, b.part, nchunks, b.nw, &dw[0, 0, 0, 0])
            sum_partials(partials + b.nw, b.part, nchunks, b.p.K, &db[0])
    finally:
        free(partials)
