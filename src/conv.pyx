# cython: language_level=3
"""Convolution kernels: forward, input gradient, weight gradient (NHWC, float32 and float64).

Design (see src/conv_impl.h for the register tile):
- Forward conv, the input gradient of conv (one call per stride phase, no zero-stuffing) and
  transposed conv are one "gather convolution" (fc_gconv): the Python plan (fastconv/ops/_plan.py:
  GatherPlan for the taps, TilePlan for the tile layout, the tiles per chunk and the path) is
  copied into the struct; these wrappers pack the weights into blocks of VB output channels and
  run tiles of 6 output pixels, parallel over chunks of tiles with a dynamic OpenMP schedule (whole
  output rows per chunk for few input channels).  All plans of one call (the stride phases of an
  input gradient) share one parallel region.
- Few output channels per group (<= 4, the input gradient of a first layer): narrow_conv runs the
  same geometry with vectors over the reduction channels (src/conv_narrow_impl.h), parallel over
  (row, block of 96 columns) units in chunks; fastconv/ops/conv.py chooses between the two.
- Weight gradient: rows (n, oh) of dy are cut into max(4, threads) chunks, each summed into its
  own dw/db partial; the partials are added in chunk order, so up to 4 threads give bit-identical
  results and more threads differ only by float rounding.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.limits cimport INT_MAX
from _common cimport floating, out_pixel_stride
from _parallel cimport run_chunks, run_split, sum_partials
import numpy as np

cdef extern from "conv_kernels.h" nogil:
    int FC_MAXT
    int FC_RB
    ctypedef struct fc_gconv:
        int N, IH, IW, ICt
        int OH, OW
        int out_H, out_W, OCt
        int OPS
        int oy0, ox0, out_ay, out_ax
        int ay, ax
        int nty, ntx
        int by[64]
        int bx[64]
        int ky[64]
        int kx[64]
        int KH, KW
        int G, Cr, Ko
        int relu
        int rowtiles
        int mergex
        int rowseg
        int act
        double alpha
    int fc_rowk_shape(int cr, int ps)
    ctypedef struct fc_wgrad:
        int N, H, W, C
        int OH, OW, K
        int KH, KW, sh, sw, ph, pw, dh, dw
        int G, Cg, Kg
        int planar
        int pair
    int fc_block_f32(int isa)
    int fc_block_f64(int isa)
    void fc_pack_f32(int isa, const float *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                     ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, float *dst)
    void fc_pack_f64(int isa, const double *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                     ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, double *dst)
    size_t fc_gconv_scratch_f32(int isa, const fc_gconv *p, int TB)
    size_t fc_gconv_scratch_f64(int isa, const fc_gconv *p, int TB)
    void fc_gconv_tiles_f32(int isa, const fc_gconv *p, const float *inp, const float *wp, const float *bias,
                            float *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)
    void fc_gconv_tiles_f64(int isa, const fc_gconv *p, const double *inp, const double *wp, const double *bias,
                            double *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)
    # group-pair tile of grouped convolutions (conv_grouped_impl.h)
    size_t fc_gp_scratch_f32(int isa, const fc_gconv *p, int TB)
    size_t fc_gp_scratch_f64(int isa, const fc_gconv *p, int TB)
    void fc_gp_tiles_f32(int isa, const fc_gconv *p, const float *inp, const float *wp, const float *bias,
                         float *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)
    void fc_gp_tiles_f64(int isa, const fc_gconv *p, const double *inp, const double *wp, const double *bias,
                         double *out, Py_ssize_t t0, Py_ssize_t t1, int TB, char *scratch)
    size_t fc_wgrad_scratch_f32(int isa, const fc_wgrad *p, int RBLK)
    size_t fc_wgrad_scratch_f64(int isa, const fc_wgrad *p, int RBLK)
    void fc_wgrad_rows_f32(int isa, const fc_wgrad *p, const float *x, const float *dy, Py_ssize_t r0, Py_ssize_t r1,
                           int RBLK, float *dw, float *db, char *scratch)
    void fc_wgrad_rows_f64(int isa, const fc_wgrad *p, const double *x, const double *dy, Py_ssize_t r0, Py_ssize_t r1,
                           int RBLK, double *dw, double *db, char *scratch)
    int FC_NK_MAXKO
    int FC_NK_BW
    int fc_nk_vlen_f32(int isa)
    int fc_nk_vlen_f64(int isa)
    size_t fc_nk_wsize_f32(int isa, int KH, int KW, int G, int Cr, int Ko)
    size_t fc_nk_wsize_f64(int isa, int KH, int KW, int G, int Cr, int Ko)
    void fc_nk_pack_f32(int isa, const float *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                        ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, float *dst)
    void fc_nk_pack_f64(int isa, const double *src, int KH, int KW, int G, int Cr, int Ko, ptrdiff_t s_kh,
                        ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko, double *dst)
    size_t fc_nk_scratch_f32(int isa, const fc_gconv *p)
    size_t fc_nk_scratch_f64(int isa, const fc_gconv *p)
    Py_ssize_t fc_nk_count(const fc_gconv *p)
    void fc_nk_run_f32(int isa, const fc_gconv *p, const float *inp, const float *wn,
                                         const float *bias, float *out, Py_ssize_t u0, Py_ssize_t u1, char *scratch)
    void fc_nk_run_f64(int isa, const fc_gconv *p, const double *inp, const double *wn,
                                         const double *bias, double *out, Py_ssize_t u0, Py_ssize_t u1, char *scratch)

MAX_TAPS = FC_MAXT   # kernel extent per axis the geometry holds: the one definition (conv_geom.h)
RB = FC_RB           # output pixels per register tile
NARROW_MAX_KO = FC_NK_MAXKO  # output channels per group up to which the narrow kernel may run
NARROW_BW = FC_NK_BW         # grid columns per work unit of the narrow kernel (ops/_plan.py narrow_plan)


def rowk_shape(int cr, int ps):
    """Whether fc_rowk has a constant-shape row for cr merged channels at pixel step ps."""
    return bool(fc_rowk_shape(cr, ps))


def block_size(int isa, dtype):
    """Output channels per packed weight block (2 SIMD vectors) for this level and dtype."""
    return fc_block_f64(isa) if np.dtype(dtype) == np.float64 else fc_block_f32(isa)


def pack_weights(const floating[::1] src, int KH, int KW, int G, int Cr, int Ko,
                 ptrdiff_t s_kh, ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko,
                 floating[::1] dst, int isa):
    """dst[g][kb][kh][kw][cr][v] = src[kh*s_kh + kw*s_kw + g*s_g + cr*s_cr + (kb*VB + v)*s_ko]."""
    with nogil:
        if floating is float:
            fc_pack_f32(isa, &src[0], KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, &dst[0])
        else:
            fc_pack_f64(isa, &src[0], KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, &dst[0])


cdef void _fill_geometry(fc_gconv *p, Py_ssize_t *in_shape, Py_ssize_t *out_shape, tuple grid, tuple taps_y,
                         tuple taps_x, int KH, int KW, int G, int Cr, int Ko, bint relu, bint rowtiles, bint mergex,
                         bint rowseg) except *:
    """The fc_gconv of one gather convolution and its tile layout (ops/_plan.py tile_plan)."""
    cdef int i
    # the op checked every extent against the int geometry (ops/_plan.py); a C assignment of a
    # Py_ssize_t to an int would wrap silently, so a plan that let one through stops here
    for i in range(4):
        if in_shape[i] > INT_MAX or out_shape[i] > INT_MAX:
            raise ValueError(f"gather_conv: tensor extents {[in_shape[j] for j in range(4)]} -> "
                             f"{[out_shape[j] for j in range(4)]} exceed the kernels' 32-bit geometry")
    p.N = in_shape[0]; p.IH = in_shape[1]; p.IW = in_shape[2]; p.ICt = in_shape[3]
    p.OH, p.OW, p.oy0, p.ox0, p.out_ay, p.out_ax, p.ay, p.ax = grid
    p.out_H = out_shape[1]; p.out_W = out_shape[2]; p.OCt = out_shape[3]; p.OPS = p.OCt
    p.nty = len(taps_y); p.ntx = len(taps_x)
    for i in range(p.nty):
        p.by[i], p.ky[i] = taps_y[i]
    for i in range(p.ntx):
        p.bx[i], p.kx[i] = taps_x[i]
    p.KH = KH; p.KW = KW; p.G = G; p.Cr = Cr; p.Ko = Ko; p.relu = relu
    p.mergex = mergex
    p.rowtiles = rowtiles
    p.rowseg = rowseg
    p.act = 0
    p.alpha = 0


# One gather_conv call: scheduled chunk c runs tiles of plan order[c] % np_ (run_chunks with one
# unit per chunk, dynamic: a thread that shares its core with another process takes fewer chunks).
ctypedef struct _gc_job:
    const fc_gconv *ps
    int np_, isa, f64
    int pair                        # the group-pair tile (fc_gp_tiles) instead of fc_gconv_tiles
    const Py_ssize_t *order
    const Py_ssize_t *ntiles
    const int *tbs
    const void *inp
    const void *wp
    const void *bias
    void *out


cdef void _gc_chunk(const void *jp, Py_ssize_t c, Py_ssize_t u0, Py_ssize_t u1, char *s) noexcept nogil:
    cdef const _gc_job *b = <const _gc_job *>jp
    cdef Py_ssize_t ci, t0, t1
    cdef int j
    for ci in range(u0, u1):
        j = b.order[ci] % b.np_
        t0 = (b.order[ci] // b.np_) * b.tbs[j]
        t1 = min(b.ntiles[j], t0 + b.tbs[j])
        if b.pair:
            if b.f64:
                fc_gp_tiles_f64(b.isa, &b.ps[j], <const double *>b.inp, <const double *>b.wp,
                                <const double *>b.bias, <double *>b.out, t0, t1, b.tbs[j], s)
            else:
                fc_gp_tiles_f32(b.isa, &b.ps[j], <const float *>b.inp, <const float *>b.wp,
                                <const float *>b.bias, <float *>b.out, t0, t1, b.tbs[j], s)
        elif b.f64:
            fc_gconv_tiles_f64(b.isa, &b.ps[j], <const double *>b.inp, <const double *>b.wp,
                               <const double *>b.bias, <double *>b.out, t0, t1, b.tbs[j], s)
        else:
            fc_gconv_tiles_f32(b.isa, &b.ps[j], <const float *>b.inp, <const float *>b.wp,
                               <const float *>b.bias, <float *>b.out, t0, t1, b.tbs[j], s)


def gather_conv(const floating[:, :, :, ::1] inp,      # IN  (N, IH, IW, ICt)
                const floating[::1] wp,                # IN  packed weights
                const floating[::1] bias,              # IN  (G*Ko,) or None
                floating[:, :, :, :] out,              # OUT (N, out_H, out_W, OCt), pixels OPS apart
                list plans, int KH, int KW, int G, int Cr, int Ko, bint relu, int isa, int nthreads,
                int act=0, double alpha=0, bint pair=False):
    """Run the gather convolutions of `plans` (see conv_geom.h) in one parallel region.

    Each plan is (grid, taps_y, taps_x, ntiles, tb, rowtiles, mergex, rowseg): the GatherPlan, with
    grid = (OH, OW, oy0, ox0, out_ay, out_ax, ay, ax) and taps = ((b, k), ...), then its TilePlan
    (fastconv/ops/_plan.py; tb tiles per chunk).  act / alpha: an element-wise activation
    (elementwise CODES) applied to each output pixel right after its tile (relu goes by `relu`).  The plans of an input gradient (one per stride phase) write disjoint
    pixels, so their chunks share one dynamic schedule: one thread wake-up and one tail per call.
    The schedule takes chunk k of every plan before chunk k + 1 of any: the stride phases of one
    band of rows read the same input rows, which are then still in cache for the next phase.
    pair: the group-pair tile (src/conv_grouped_impl.h): G pairs of groups with Cr reduced channels
    each, Ko = block_size output channels per pair, plans without rowseg or mergex.
    """
    cdef int np_ = len(plans), i
    if np_ == 0:
        return None
    cdef fc_gconv *ps = <fc_gconv *>malloc(np_ * sizeof(fc_gconv))
    cdef Py_ssize_t *first = <Py_ssize_t *>malloc((np_ + 1) * sizeof(Py_ssize_t))   # chunks of plans before each plan
    cdef Py_ssize_t *ntiles = <Py_ssize_t *>malloc(np_ * sizeof(Py_ssize_t))
    cdef int *tbs = <int *>malloc(np_ * sizeof(int))
    if ps == NULL or first == NULL or ntiles == NULL or tbs == NULL:
        free(ps); free(first); free(ntiles); free(tbs)
        raise MemoryError()
    cdef size_t sb = 0, s
    cdef _gc_job b
    cdef Py_ssize_t *order = NULL   # chunk k of plan j as k * np_ + j, in schedule order
    cdef Py_ssize_t k, c
    try:
        first[0] = 0
        for i in range(np_):
            grid, taps_y, taps_x, ntiles[i], tbs[i], rowtiles, mergex, rowseg = plans[i]
            _fill_geometry(&ps[i], inp.shape, out.shape, grid, taps_y, taps_x, KH, KW, G, Cr, Ko, relu,
                           rowtiles, mergex, rowseg)
            ps[i].OPS = out_pixel_stride("gather_conv", out.shape, out.strides, sizeof(floating))
            ps[i].act = act
            ps[i].alpha = alpha
            vb = fc_block_f64(isa) if floating is double else fc_block_f32(isa)
            if pair and (Ko != vb or rowseg or mergex):
                raise ValueError(f"gather_conv: the group-pair tile needs Ko == the block size and a plan "
                                 f"without rowseg/mergex. Received: Ko={Ko}, rowseg={rowseg}, mergex={mergex}")
            first[i + 1] = first[i] + (ntiles[i] + tbs[i] - 1) // tbs[i]
            if ntiles[i]:
                if pair:
                    s = fc_gp_scratch_f64(isa, &ps[i], tbs[i]) if floating is double else fc_gp_scratch_f32(isa, &ps[i], tbs[i])
                elif floating is float:
                    s = fc_gconv_scratch_f32(isa, &ps[i], tbs[i])
                else:
                    s = fc_gconv_scratch_f64(isa, &ps[i], tbs[i])
                sb = max(sb, s)
        if first[np_] == 0:
            return
        order = <Py_ssize_t *>malloc(first[np_] * sizeof(Py_ssize_t))
        if order == NULL:
            raise MemoryError()
        c = 0
        k = 0
        while c < first[np_]:
            for i in range(np_):
                if k < first[i + 1] - first[i]:
                    order[c] = k * np_ + i
                    c += 1
            k += 1
        b.ps = ps
        b.np_ = np_
        b.isa = isa
        b.f64 = floating is double
        b.pair = pair
        b.order = order
        b.ntiles = ntiles
        b.tbs = tbs
        b.inp = &inp[0, 0, 0, 0]
        b.wp = &wp[0]
        b.bias = &bias[0] if bias is not None else NULL
        b.out = &out[0, 0, 0, 0]
        run_chunks(_gc_chunk, &b, first[np_], first[np_], nthreads, True, sb)
    finally:
        free(ps); free(first); free(ntiles); free(tbs); free(order)


def narrow_vlen(int isa, dtype):
    """Reduction channels per vector of the narrow-output kernel for this level and dtype."""
    return fc_nk_vlen_f64(isa) if np.dtype(dtype) == np.float64 else fc_nk_vlen_f32(isa)


def narrow_weights_size(int isa, dtype, int KH, int KW, int G, int Cr, int Ko):
    """Elements of the narrow-output kernel's packed weights."""
    if np.dtype(dtype) == np.float64:
        return fc_nk_wsize_f64(isa, KH, KW, G, Cr, Ko)
    return fc_nk_wsize_f32(isa, KH, KW, G, Cr, Ko)


def pack_narrow(const floating[::1] src, int KH, int KW, int G, int Cr, int Ko,
                ptrdiff_t s_kh, ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko,
                floating[::1] dst, int isa):
    """dst[g][kh][kw][cv][k][v] = src[kh*s_kh + kw*s_kw + g*s_g + (cv*VLEN + v)*s_cr + k*s_ko], 0 past Cr."""
    with nogil:
        if floating is float:
            fc_nk_pack_f32(isa, &src[0], KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, &dst[0])
        else:
            fc_nk_pack_f64(isa, &src[0], KH, KW, G, Cr, Ko, s_kh, s_kw, s_g, s_cr, s_ko, &dst[0])


# One narrow-conv call: chunk j runs work units [u0, u1) with the f32 or the f64 kernel.
ctypedef struct _nk_job:
    const fc_gconv *p
    int isa, f64
    const void *inp
    const void *wn
    const void *bias
    void *out


cdef void _nk_chunk(const void *jp, Py_ssize_t j, Py_ssize_t u0, Py_ssize_t u1, char *s) noexcept nogil:
    cdef const _nk_job *b = <const _nk_job *>jp
    if b.f64:
        fc_nk_run_f64(b.isa, b.p, <const double *>b.inp, <const double *>b.wn, <const double *>b.bias,
                      <double *>b.out, u0, u1, s)
    else:
        fc_nk_run_f32(b.isa, b.p, <const float *>b.inp, <const float *>b.wn, <const float *>b.bias,
                      <float *>b.out, u0, u1, s)


def narrow_units(int N, int OH, int OW):
    """fc_nk_count: the narrow kernel's work units for an N x OH x OW grid (tests check
    ops/_plan.py narrow_plan against it)."""
    cdef fc_gconv p
    memset(&p, 0, sizeof(fc_gconv))
    p.N = N; p.OH = OH; p.OW = OW
    return fc_nk_count(&p)


def narrow_conv(const floating[:, :, :, ::1] inp,      # IN  (N, IH, IW, ICt)
                const floating[::1] wn,                # IN  weights packed by pack_narrow
                const floating[::1] bias,              # IN  (G*Ko,) or None
                floating[:, :, :, :] out,              # OUT (N, out_H, out_W, OCt), pixels OPS apart
                tuple grid, tuple taps_y, tuple taps_x, bint mergex, int KH, int KW, int G, int Cr, int Ko,
                bint relu, int isa, tuple split):
    """The gather convolution of gather_conv for few output channels per group (conv_narrow_impl.h).

    Work units (grid row, block of NARROW_BW columns) in the chunks of split (ops/_plan.py
    narrow_plan(N, OH, OW, nthreads).args()), dynamic schedule: each pixel's arithmetic is the same
    whichever thread or chunk computes it.
    """
    cdef fc_gconv p
    _fill_geometry(&p, inp.shape, out.shape, grid, taps_y, taps_x, KH, KW, G, Cr, Ko, relu, False, mergex, False)
    p.OPS = out_pixel_stride("narrow_conv", out.shape, out.strides, sizeof(floating))
    if <Py_ssize_t>p.N * p.OH * p.OW == 0:
        return
    cdef Py_ssize_t nunits = fc_nk_count(&p)
    if split[0] != nunits:
        raise ValueError(f"narrow_conv: the plan's split {split} does not cut the kernel's {nunits} units")
    cdef _nk_job b
    b.p = &p
    b.isa = isa
    b.f64 = floating is double
    b.inp = &inp[0, 0, 0, 0]
    b.wn = &wn[0]
    b.bias = &bias[0] if bias is not None else NULL
    b.out = &out[0, 0, 0, 0]
    run_split(_nk_chunk, &b, split, fc_nk_scratch_f64(isa, &p) if b.f64 else fc_nk_scratch_f32(isa, &p))


# One weight-gradient call: chunk j sums rows [r0, r1) of dy into its own dw/db partial.
ctypedef struct _wg_job:
    fc_wgrad p
    int isa, f64, RBLK
    const void *x
    const void *dy
    void *partials       # chunk j's dw then db at partials + j * part
    size_t part, nw


cdef void _wg_chunk(const void *jp, Py_ssize_t j, Py_ssize_t r0, Py_ssize_t r1, char *s) noexcept nogil:
    cdef const _wg_job *b = <const _wg_job *>jp
    cdef double *pd
    cdef float *pf
    if b.f64:
        pd = <double *>b.partials + j * b.part
        fc_wgrad_rows_f64(b.isa, &b.p, <const double *>b.x, <const double *>b.dy, r0, r1, b.RBLK, pd, pd + b.nw, s)
    else:
        pf = <float *>b.partials + j * b.part
        fc_wgrad_rows_f32(b.isa, &b.p, <const float *>b.x, <const float *>b.dy, r0, r1, b.RBLK, pf, pf + b.nw, s)


def weight_grad(const floating[:, :, :, ::1] x,        # IN  (N, H, W, C)
                const floating[:, :, :, ::1] dy,       # IN  (N, OH, OW, K)
                floating[:, :, :, ::1] dw,             # OUT (KH, KW, C // G, K)
                floating[::1] db,                      # OUT (K,) or None
                int sh, int sw, int ph, int pw, int dh, int dwl, int G, Py_ssize_t nchunks, int RBLK,
                int isa, int nthreads, bint planar=False, bint pair=False):
    """dw and db of conv2d, summed over all rows of dy (padding given as top/left), in the nchunks
    chunks and blocks of RBLK rows of ops/_plan.py wgrad_plan (planar: the few-channel kernel;
    pair: the group-pair tile of src/conv_grouped_impl.h, for Kg = one vector and an even G)."""
    cdef _wg_job b
    memset(&b, 0, sizeof(_wg_job))
    cdef fc_wgrad *p = &b.p
    p.N = x.shape[0]; p.H = x.shape[1]; p.W = x.shape[2]; p.C = x.shape[3]
    p.OH = dy.shape[1]; p.OW = dy.shape[2]; p.K = dy.shape[3]
    p.KH = dw.shape[0]; p.KW = dw.shape[1]
    p.sh = sh; p.sw = sw; p.ph = ph; p.pw = pw; p.dh = dh; p.dw = dwl
    p.G = G; p.Cg = p.C // G; p.Kg = p.K // G
    p.planar = planar
    p.pair = pair and not planar
    if p.pair and (p.G % 2 or 2 * p.Kg != (fc_block_f64(isa) if x.itemsize == 8 else fc_block_f32(isa))):
        raise ValueError(f"weight_grad: the group-pair tile needs an even G and Kg of one vector. "
                         f"Received: G={p.G}, Kg={p.Kg}")
    cdef Py_ssize_t R = <Py_ssize_t>p.N * p.OH
    if R == 0 or p.OW == 0:
        dw[...] = 0
        if db is not None:
            db[...] = 0
        return
    b.isa = isa
    b.f64 = floating is double
    b.RBLK = RBLK
    b.x = &x[0, 0, 0, 0]
    b.dy = &dy[0, 0, 0, 0]
    b.nw = <size_t>p.KH * p.KW * p.Cg * p.K
    b.part = (b.nw + p.K + 15) & ~(<size_t>15)
    # rows are cut into a fixed number of chunks, each summed into its own partial and the partials
    # added in chunk order: the result is the same whichever thread ran a chunk, and a thread slowed
    # by another process takes fewer chunks (dynamic schedule)
    cdef floating *partials = <floating *>malloc(b.part * nchunks * sizeof(floating) + 64)
    if partials == NULL:
        raise MemoryError()
    b.partials = partials
    try:
        memset(partials, 0, b.part * nchunks * sizeof(floating))
        run_chunks(_wg_chunk, &b, R, nchunks, nthreads, True,
                   fc_wgrad_scratch_f64(isa, p, RBLK) if b.f64 else fc_wgrad_scratch_f32(isa, p, RBLK))
        with nogil:
            # fixed-order reduction of the per-chunk partials
            sum_partials(partials, b.part, nchunks, b.nw, &dw[0, 0, 0, 0])
            if db is not None:
                sum_partials(partials + b.nw, b.part, nchunks, p.K, &db[0])
    finally:
        free(partials)


def channel_sum(const floating[:, ::1] dy,   # IN  (P, K)
                floating[::1] db):           # OUT (K,)
    """db[k] = sum over rows of dy[:, k] (bias gradient of the transposed convolution)."""
    cdef Py_ssize_t i, k, P = dy.shape[0], K = dy.shape[1]
    with nogil:
        for k in range(K):
            db[k] = 0
        for i in range(P):
            for k in range(K):
                db[k] += dy[i, k]
