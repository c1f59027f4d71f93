# cython: language_level=3
"""Winograd F(4x4, 3x3) and F(2x2, 3x3) convolution kernels (NHWC, float32 and float64).

Design in src/winograd_impl.h.  The op (fastconv/ops/winograd.py) transforms and packs the weight
(U[pos][kb][c][VB]) and plans the tile blocks (fastconv/ops/_plan.py wino_plan); this wrapper fills
the fc_wino struct and runs the blocks of TB tiles in chunks with a dynamic OpenMP schedule, each
thread with its own scratch (the block's transformed input and products).  Every tile's arithmetic
is the same whichever thread runs it: the result does not depend on the thread count.
"""
from libc.limits cimport INT_MAX
from _common cimport floating, out_pixel_stride
from _parallel cimport run_chunks
import numpy as np

cdef extern from "winograd_kernels.h" nogil:
    ctypedef struct fc_wino:
        int N, IH, IW, C
        int OH, OW, K
        int pt, pl
        int m
        int th, tw
        int dh, dw
        int thp, twp
        int OPS
        int relu
    void fc_wino_transform_f32(int isa, const float *w, int C, int K, int m, int vb, int flip, float *out,
                               int threads)
    void fc_wino_transform_f64(const double *w, int C, int K, int m, int vb, int flip, double *out, int threads)
    size_t fc_wino_wgrad_scratch_f32(int isa, const fc_wino *p, int TB)
    size_t fc_wino_wgrad_scratch_f64(int isa, const fc_wino *p, int TB)
    Py_ssize_t fc_wino_wgrad_partial_f32(int isa, const fc_wino *p)
    Py_ssize_t fc_wino_wgrad_partial_f64(int isa, const fc_wino *p)
    void fc_wino_wgrad_tiles_f32(int isa, const fc_wino *p, const float *inp, const float *dy, Py_ssize_t t0,
                                 Py_ssize_t t1, int TB, float *S, char *scratch)
    void fc_wino_wgrad_tiles_f64(int isa, const fc_wino *p, const double *inp, const double *dy, Py_ssize_t t0,
                                 Py_ssize_t t1, int TB, double *S, char *scratch)
    void fc_wino_wgrad_finish_f32(const float *parts, Py_ssize_t psize, int nparts, int C, int K, int sc,
                                  int kp, float *dw, int threads)
    void fc_wino_wgrad_finish_f64(const double *parts, Py_ssize_t psize, int nparts, int C, int K, int sc,
                                  int kp, double *dw, int threads)
    int fc_wino_block_f32(int isa)
    int fc_wino_block_f64(int isa)
    size_t fc_wino_scratch_f32(int isa, const fc_wino *p, int TB)
    size_t fc_wino_scratch_f64(int isa, const fc_wino *p, int TB)
    void fc_wino_tiles_f32(int isa, const fc_wino *p, const float *inp, const float *U, const float *bias,
                           float *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)
    void fc_wino_tiles_f64(int isa, const fc_wino *p, const double *inp, const double *U, const double *bias,
                           double *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)


def block_size(int isa, dtype):
    """Output channels per block of the packed transformed weight (2 SIMD vectors)."""
    return fc_wino_block_f64(isa) if np.dtype(dtype) == np.float64 else fc_wino_block_f32(isa)


def scratch_bytes(int isa, dtype, int C, int K, int m, int TB):
    """Per-thread scratch of a block of TB tiles (ops/_plan.py wino_plan sizes TB from it)."""
    cdef fc_wino p
    p.C = C; p.K = K; p.m = m
    if np.dtype(dtype) == np.float64:
        return fc_wino_scratch_f64(isa, &p, TB)
    return fc_wino_scratch_f32(isa, &p, TB)


ctypedef struct _wn_job:
    fc_wino p
    int isa, f64, TB
    Py_ssize_t ntiles
    const void *inp
    const void *U
    const void *bias
    void *out


cdef void _wn_chunk(const void *jp, Py_ssize_t j, Py_ssize_t u0, Py_ssize_t u1, char *s) noexcept nogil:
    cdef const _wn_job *b = <const _wn_job *>jp
    cdef Py_ssize_t t0 = u0 * b.TB, t1 = min(b.ntiles, u1 * b.TB)
    if b.f64:
        fc_wino_tiles_f64(b.isa, &b.p, <const double *>b.inp, <const double *>b.U, <const double *>b.bias,
                          <double *>b.out, t0, t1, b.TB, s)
    else:
        fc_wino_tiles_f32(b.isa, &b.p, <const float *>b.inp, <const float *>b.U, <const float *>b.bias,
                          <float *>b.out, t0, t1, b.TB, s)


cdef void _set_tiles(fc_wino *p, int m, int dh, int dw) except *:
    """Tile counts of p (OH, OW set): dh x dw polyphase sub-lattices of ceil(OH / dh) x ceil(OW / dw)
    pixels, each cut into m x m tiles (src/winograd_kernels.h fc_wino)."""
    if dh < 1 or dw < 1:
        raise ValueError(f"winograd: dilation must be positive. Received: dh={dh}, dw={dw}")
    p.dh = dh; p.dw = dw
    p.thp = ((p.OH + dh - 1) // dh + m - 1) // m
    p.twp = ((p.OW + dw - 1) // dw + m - 1) // m
    p.th = dh * p.thp
    p.tw = dw * p.twp


def wino_conv(const floating[:, :, :, ::1] inp,   # IN  (N, IH, IW, C)
              const floating[::1] U,              # IN  transformed, packed weight
              const floating[::1] bias,           # IN  (K,) or None
              floating[:, :, :, :] out,           # OUT (N, OH, OW, K), pixels OPS apart
              int pt, int pl, int m, int TB, bint relu, int isa, Py_ssize_t nchunks, int nthreads,
              int dh=1, int dw=1):
    """out = conv3x3(inp, w) (+ bias, ReLU) with U the packed Winograd transform of w
    (ops/winograd.py): blocks of TB tiles in nchunks chunks, dynamic schedule."""
    cdef _wn_job b
    cdef int i
    for i in range(4):
        if inp.shape[i] > INT_MAX or out.shape[i] > INT_MAX:
            raise ValueError(f"wino_conv: tensor extents {[inp.shape[j] for j in range(4)]} -> "
                             f"{[out.shape[j] for j in range(4)]} exceed the kernels' 32-bit geometry")
    if m != 2 and m != 4:
        raise ValueError(f"wino_conv: m must be 2 or 4. Received: m={m}")
    if TB < 6 or TB % 6:
        raise ValueError(f"wino_conv: TB must be a positive multiple of 6. Received: TB={TB}")
    if inp.shape[0] != out.shape[0]:
        raise ValueError(f"wino_conv: batch sizes differ: {inp.shape[0]} vs {out.shape[0]}")
    b.p.N = inp.shape[0]; b.p.IH = inp.shape[1]; b.p.IW = inp.shape[2]; b.p.C = inp.shape[3]
    b.p.OH = out.shape[1]; b.p.OW = out.shape[2]; b.p.K = out.shape[3]
    b.p.OPS = out_pixel_stride("wino_conv", out.shape, out.strides, sizeof(floating))
    b.p.pt = pt; b.p.pl = pl; b.p.m = m
    _set_tiles(&b.p, m, dh, dw)
    b.p.relu = relu
    cdef int vb = block_size(isa, np.float64 if floating is double else np.float32)
    cdef Py_ssize_t need = 36 * ((b.p.K + vb - 1) // vb) * vb * <Py_ssize_t>b.p.C if m == 4 else \
        16 * ((b.p.K + vb - 1) // vb) * vb * <Py_ssize_t>b.p.C
    if U.shape[0] < need:
        raise ValueError(f"wino_conv: U holds {U.shape[0]} elements, the transform needs {need}")
    if bias is not None and bias.shape[0] != b.p.K:
        raise ValueError(f"wino_conv: bias has {bias.shape[0]} elements for {b.p.K} output channels")
    b.ntiles = <Py_ssize_t>b.p.N * b.p.th * b.p.tw
    if b.ntiles == 0:
        return
    cdef Py_ssize_t nblocks = (b.ntiles + TB - 1) // TB
    b.isa = isa
    b.f64 = floating is double
    b.TB = TB
    b.inp = &inp[0, 0, 0, 0]
    b.U = &U[0]
    b.bias = &bias[0] if bias is not None else NULL
    b.out = &out[0, 0, 0, 0]
    cdef size_t sb
    if floating is double:
        sb = fc_wino_scratch_f64(isa, &b.p, TB)
    else:
        sb = fc_wino_scratch_f32(isa, &b.p, TB)
    run_chunks(_wn_chunk, &b, nblocks, min(nchunks, nblocks), nthreads, True, sb)



def transform_weight(const floating[:, :, :, ::1] w, int m, int vb, bint flip, floating[::1] out, int threads=1,
                     int isa=0):
    """out[pos][kb][c][v] = (G g G^T)[pos] for g = w[:, :, c, kb*vb + v] (3 x 3), zero past K, in
    float64 arithmetic; flip=True transforms the input gradient's weight instead: g[i][j] =
    w[2 - i, 2 - j, kb*vb + v, c] (rotated 180 degrees, C and K swapped)."""
    cdef int C = w.shape[3] if flip else w.shape[2]
    cdef int K = w.shape[2] if flip else w.shape[3]
    cdef int al = m + 2
    if m != 2 and m != 4:
        raise ValueError(f"transform_weight: m must be 2 or 4. Received: m={m}")
    if w.shape[0] != 3 or w.shape[1] != 3:
        raise ValueError(f"transform_weight: w must be 3x3. Received: {tuple(w.shape)}")
    if vb < 1 or vb > 32:
        raise ValueError(f"transform_weight: vb must be in 1..32. Received: vb={vb}")
    if out.shape[0] < <Py_ssize_t>al * al * ((K + vb - 1) // vb) * C * vb:
        raise ValueError(f"transform_weight: out holds {out.shape[0]} elements, too few")
    with nogil:
        if floating is float:
            fc_wino_transform_f32(isa, &w[0, 0, 0, 0], C, K, m, vb, flip, &out[0], threads)
        else:
            fc_wino_transform_f64(&w[0, 0, 0, 0], C, K, m, vb, flip, &out[0], threads)


ctypedef struct _wg_job:
    fc_wino p
    int isa, f64, TB
    Py_ssize_t ntiles, nblocks, psize
    const void *inp
    const void *dy
    void *parts


cdef void _wg_chunk(const void *jp, Py_ssize_t j, Py_ssize_t u0, Py_ssize_t u1, char *s) noexcept nogil:
    cdef const _wg_job *b = <const _wg_job *>jp
    cdef Py_ssize_t t0 = u0 * b.TB, t1 = min(b.ntiles, u1 * b.TB)
    if b.f64:
        fc_wino_wgrad_tiles_f64(b.isa, &b.p, <const double *>b.inp, <const double *>b.dy, t0, t1, b.TB,
                                <double *>b.parts + j * b.psize, s)
    else:
        fc_wino_wgrad_tiles_f32(b.isa, &b.p, <const float *>b.inp, <const float *>b.dy, t0, t1, b.TB,
                                <float *>b.parts + j * b.psize, s)


def wino_wgrad(const floating[:, :, :, ::1] inp,   # IN  x (N, IH, IW, C)
               const floating[:, :, :, ::1] dy,    # IN  (N, OH, OW, K)
               floating[:, :, :, ::1] dw,          # OUT (3, 3, C, K)
               floating[::1] db,                   # OUT (K,) the bias gradient
               int pt, int pl, int m, int TB, int isa, Py_ssize_t nchunks, int nthreads,
               int dil_h=1, int dil_w=1):
    """dw and db of the 3x3 conv of inp whose output gradient is dy (output pixel (oy, ox) reads inp rows
    oy - pt + dil_h*i, columns ox - pl + dil_w*j): blocks of TB tiles in nchunks chunks, chunk j summed and
    folded by G^T . G into partial j, the partials added in chunk order (the result depends on nchunks,
    not on the thread count)."""
    cdef _wg_job b
    cdef int i
    for i in range(4):
        if inp.shape[i] > INT_MAX or dy.shape[i] > INT_MAX:
            raise ValueError(f"wino_wgrad: tensor extents exceed the kernels' 32-bit geometry")
    if m != 2 and m != 4:
        raise ValueError(f"wino_wgrad: m must be 2 or 4. Received: m={m}")
    if TB < 1:
        raise ValueError(f"wino_wgrad: TB must be positive. Received: TB={TB}")
    if (inp.shape[0] != dy.shape[0] or dw.shape[0] != 3 or dw.shape[1] != 3 or dw.shape[2] != inp.shape[3]
            or dw.shape[3] != dy.shape[3] or db.shape[0] != dy.shape[3]):
        raise ValueError(f"wino_wgrad: shapes disagree: x {tuple(inp.shape)}, dy {tuple(dy.shape)}, "
                         f"dw {tuple(dw.shape)}")
    b.p.N = inp.shape[0]; b.p.IH = inp.shape[1]; b.p.IW = inp.shape[2]; b.p.C = inp.shape[3]
    b.p.OH = dy.shape[1]; b.p.OW = dy.shape[2]; b.p.K = dy.shape[3]
    b.p.OPS = b.p.K
    b.p.pt = pt; b.p.pl = pl; b.p.m = m
    _set_tiles(&b.p, m, dil_h, dil_w)
    b.p.relu = 0
    b.ntiles = <Py_ssize_t>b.p.N * b.p.th * b.p.tw
    cdef int vb = block_size(isa, np.float64 if floating is double else np.float32)
    cdef int kp = (b.p.K + vb - 1) // vb * vb, sc = (b.p.C + 5) // 6 * 6
    if b.ntiles == 0:
        dw[...] = 0
        db[...] = 0
        return
    b.nblocks = (b.ntiles + TB - 1) // TB
    nchunks = max(1, min(nchunks, b.nblocks))
    cdef size_t sb
    if floating is double:
        b.psize = fc_wino_wgrad_partial_f64(isa, &b.p)
        sb = fc_wino_wgrad_scratch_f64(isa, &b.p, TB)
    else:
        b.psize = fc_wino_wgrad_partial_f32(isa, &b.p)
        sb = fc_wino_wgrad_scratch_f32(isa, &b.p, TB)
    parts_arr = np.empty(b.psize * nchunks, dtype=np.float64 if floating is double else np.float32)
    cdef floating[::1] parts = parts_arr
    b.isa = isa
    b.f64 = floating is double
    b.TB = TB
    b.inp = &inp[0, 0, 0, 0]
    b.dy = &dy[0, 0, 0, 0]
    b.parts = &parts[0]
    run_chunks(_wg_chunk, &b, b.nblocks, nchunks, nthreads, False, sb)
    cdef int j
    cdef floating sdb
    with nogil:
        # each chunk folded its sums by G^T . G (fc_wino_wgrad_tiles): the finish adds the folded
        # partials, each element in chunk order, on the threads
        if floating is double:
            fc_wino_wgrad_finish_f64(&parts[0], b.psize, <int>nchunks, b.p.C, b.p.K, sc, kp,
                                     &dw[0, 0, 0, 0], max(1, nthreads))
        else:
            fc_wino_wgrad_finish_f32(&parts[0], b.psize, <int>nchunks, b.p.C, b.p.K, sc, kp,
                                     &dw[0, 0, 0, 0], max(1, nthreads))
        for i in range(b.p.K):
            sdb = parts[b.psize - kp + i]
            for j in range(1, nchunks):
                sdb = sdb + parts[j * b.psize + b.psize - kp + i]
            db[i] = sdb
