/* conv_impl.h: convolution kernels for ONE element type and ONE SIMD level.
 *
 * Included several times by conv_kernels.h with FC_T (float or double), FC_VLEN (elements per
 * vector) and FC_SFX (name suffix) defined, inside a `#pragma GCC target` region for the x86
 * levels.  Written with GCC vector extensions, so the same source becomes SSE/NEON, AVX2+FMA or
 * AVX-512 code depending on the region it is compiled in.
 *
 * Register tile of the gather convolution (fc_gconv): FC_RB = 6 output pixels x 2 vectors of output
 * channels (VB = 2*FC_VLEN channels).  Budget on AVX2 (16 ymm): 12 accumulators + 2 weight vectors
 * + 1 broadcast = 15.  The reduction loop runs over (tap, input channel); per step it loads two
 * weight vectors once and broadcasts one input value per pixel, so each weight load feeds 6 FMAs.
 * Accumulators are named locals (an array indexed by a loop variable made GCC spill them).
 * Each pixel reads each tap through its own pointer (x itself, or zeros outside x), so tiles at
 * image edges and tiles that wrap to the next row run the same loop with no copying.
 *
 * Few input channels (first layers, p->rowseg): each call covers one output row whose kernel rows
 * are first copied, zero-padded, into a segment.  When the column taps merge into one run of
 * KW*Cr values and (KW*Cr, ax*Cr) is one of FC_ROWK_SHAPES (conv_geom.h), fc_rowk runs the same
 * 6 x 2-vector tile with both compiled as constants: immediate addressing, no tap table, stores
 * straight from registers (1 channel: about 360 instructions per 108-FMA tile, from 510).
 * fc_rowk_rows runs a whole chunk of such rows with the per-row work cut to the kept kernel rows,
 * reading them in place when the row's columns are inside x (valid layers) and copying only the
 * inside columns otherwise; with at most one vector of output channels (LeNet's 1->6, 1->16) the
 * row runs fc_rowkh, 12 pixels x 1 vector, instead of a 6 x 2-vector tile with idle lanes.
 *
 * 1x1 stride-1 convs and Dense run as one row of N*H*W pixels (fc_gconv_pixel_row): the same
 * tiles, but each tile's pointers are formed in place (pixel q reads in + q*ICt), without the
 * per-tile tap tables, which cost most where few channels give a tile few FMAs.
 *
 * Few OUTPUT channels (input gradient of a first layer, transposed conv to an image): the
 * narrow-output kernel in conv_narrow_impl.h, vectorised over the reduction channels instead.
 *
 * Weight-gradient tile (fc_wgrad): 6 reduction rows x 2 vectors of output channels, reduced over
 * output pixels: per pixel two dy vectors are loaded and six x values broadcast. For few channels
 * (p->planar) conv_wgrad_planar_impl.h vectorises along output columns instead.
 *
 * Activation epilogue (p->act): relu is applied in the register tile (p->relu); any other
 * element-wise activation runs over each output pixel's OCt channels right after the tile batch
 * (or the output row) that wrote it, while those lines are still in L1, with the loops of
 * elementwise_impl.h: the result equals conv2d followed by ops.elementwise.activation bit for bit.
 */
#include "elementwise_impl.h"
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FN(name) FC_CAT(name, FC_SFX)
#define V FN(fc_vec)
#define VU FN(fc_vecu)
#define VB (2 * FC_VLEN)
#define LD(p) (*(const VU *)(p))
#define ST(p, v) (*(VU *)(p) = (v))

typedef FC_T V __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T VU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));

/* Broadcast of a scalar: an initializer list, so GCC emits one vbroadcastss from memory
 * (`zero + s` would cost an extra add, since 0 + s is not s for s = -0). */
#if FC_VLEN == 2
#define BC(s) ((V){(s), (s)})
#elif FC_VLEN == 4
#define BC(s) ((V){(s), (s), (s), (s)})
#elif FC_VLEN == 8
#define BC(s) ((V){(s), (s), (s), (s), (s), (s), (s), (s)})
#elif FC_VLEN == 16
#define BC(s) ((V){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})
#endif

static int FN(fc_block)(void) { return VB; }

/* dst[g][kb][kh][kw][cr][v] = src[kh*s_kh + kw*s_kw + g*s_g + cr*s_cr + (kb*VB+v)*s_ko], zero past Ko. */
static void FN(fc_pack)(const FC_T *src, int KH, int KW, int G, int Cr, int Ko,
                        ptrdiff_t s_kh, ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko,
                        FC_T *dst)
{
    const int nkb = (Ko + VB - 1) / VB;
    if (s_cr == 1 && s_ko != 1) {
        /* the input-gradient packing: reduction channels contiguous in src, so read along them
         * (a strided gather of k per element took ~1 ns per element) */
        for (int g = 0; g < G; g++)
            for (int kb = 0; kb < nkb; kb++)
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++, dst += (ptrdiff_t)Cr * VB)
                        for (int v = 0; v < VB; v++) {
                            const int k = kb * VB + v;
                            const FC_T *s = src + kh * s_kh + kw * s_kw + g * s_g + (ptrdiff_t)k * s_ko;
                            for (int c = 0; c < Cr; c++)
                                dst[(ptrdiff_t)c * VB + v] = k < Ko ? s[c] : (FC_T)0;
                        }
        return;
    }
    for (int g = 0; g < G; g++)
        for (int kb = 0; kb < nkb; kb++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    for (int c = 0; c < Cr; c++) {
                        const FC_T *s = src + kh * s_kh + kw * s_kw + g * s_g + c * s_cr;
                        for (int v = 0; v < VB; v++) {
                            const int k = kb * VB + v;
                            *dst++ = (k < Ko) ? s[(ptrdiff_t)k * s_ko] : (FC_T)0;
                        }
                    }
}

/* The register tile's accumulators a<q>0, a<q>1 (pixel q's two vectors) to acc[q*VB ...) for the
 * caller's partial store, pixels 0 .. np-1 (np 5 or 6). */
#define FC_SPILL_ACC(acc, np)                                                           \
    do {                                                                                \
        ST((acc) + 0 * VB, a00); ST((acc) + 0 * VB + FC_VLEN, a01);                     \
        ST((acc) + 1 * VB, a10); ST((acc) + 1 * VB + FC_VLEN, a11);                     \
        ST((acc) + 2 * VB, a20); ST((acc) + 2 * VB + FC_VLEN, a21);                     \
        ST((acc) + 3 * VB, a30); ST((acc) + 3 * VB + FC_VLEN, a31);                     \
        ST((acc) + 4 * VB, a40); ST((acc) + 4 * VB + FC_VLEN, a41);                     \
        if ((np) > 5) { ST((acc) + 5 * VB, a50); ST((acc) + 5 * VB + FC_VLEN, a51); }   \
    } while (0)

/* The NP x 2-vector register tile (NP = 5 or 6 pixels, a constant after inlining): sum over
 * taps t and channels c of
 *     xp[t][p][c] * w[woff[t] + c*VB + 0..VB)
 * where xp[t][p] (FC_RB pointers per tap) is where pixel p reads tap t: x itself, a run of zeros
 * where the tap falls outside x, or a zero-padded copy (fc_tile_prepare), so edges need no branch
 * then + bias and optional ReLU.  Five pixels still give 10 FMAs per 7 loads, so a row split
 * into 5- and 6-pixel tiles runs at the same FMA rate with no slot computed for nothing.  When the channel block is full (store_direct), the results go
 * straight from registers to out[p] for every pixel that exists (out[p] != NULL); otherwise they
 * are left in acc[p][0..VB) for the caller's partial store. */
static inline __attribute__((always_inline)) void
FN(fc_ukernel)(const int NP, int ntaps, const FC_T *const *xp, const FC_T *w, const ptrdiff_t *woff, int Cr, const FC_T *bias, int relu,
               FC_T *const *out, int store_direct, FC_T *acc)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int t = 0; t < ntaps; t++) {
        const FC_T *const *xt = xp + t * FC_RB;
        const FC_T *x0 = xt[0], *x1 = xt[1], *x2 = xt[2], *x3 = xt[3], *x4 = xt[4], *x5 = xt[5];
        const FC_T *wq = w + woff[t];
        /* unrolled: the 1-step loop ran at ~80% of the FMA peak in isolation, 4 steps at ~95% */
#pragma GCC unroll 4
        for (int c = 0; c < Cr; c++) {
            const V w0 = LD(wq), w1 = LD(wq + FC_VLEN);
            V b;
            b = BC(x0[c]); a00 += b * w0; a01 += b * w1;
            b = BC(x1[c]); a10 += b * w0; a11 += b * w1;
            b = BC(x2[c]); a20 += b * w0; a21 += b * w1;
            b = BC(x3[c]); a30 += b * w0; a31 += b * w1;
            b = BC(x4[c]); a40 += b * w0; a41 += b * w1;
            if (NP > 5) { b = BC(x5[c]); a50 += b * w0; a51 += b * w1; }
            wq += VB;
        }
    }
    if (store_direct) {
/* v < 0 ? 0 : v as a mask (vector ?: is C++ only): NaN and -0.0 pass through, as in ops.relu and
 * the scalar tails below, so the fused epilogue matches conv2d followed by relu bit for bit */
#define FC_RELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))
        V b0 = z, b1 = z;
        if (bias) { b0 = LD(bias); b1 = LD(bias + FC_VLEN); }
#define FC_OUT(q, lo, hi)                                                        \
        if (out[q]) {                                                            \
            V v0 = lo + b0, v1 = hi + b1;                                        \
            if (relu) { v0 = FC_RELU(v0); v1 = FC_RELU(v1); }                    \
            ST(out[q], v0); ST(out[q] + FC_VLEN, v1);                            \
        }
        FC_OUT(0, a00, a01) FC_OUT(1, a10, a11) FC_OUT(2, a20, a21) FC_OUT(3, a30, a31)
        FC_OUT(4, a40, a41)
        if (NP > 5) FC_OUT(5, a50, a51)
#undef FC_OUT
#undef FC_RELU
        return;
    }
    FC_SPILL_ACC(acc, NP);
}

/* Two tiles A and B with the same taps (same count and weight offsets) for a channel block of at
 * most FC_VLEN outputs: vector 0 of the register tile holds A's pixels, vector 1 B's, both against
 * the block's one weight vector, so no lane is computed for nothing (fc_ukernel would fill half of
 * its 2 vectors).  Per step: 1 weight load + 2*FC_RB broadcasts for 2*FC_RB FMAs.  All FC_RB slots
 * of both tiles run (a missing pixel reads zeros); stores skip out[q] == NULL.  With store_direct
 * (nk == FC_VLEN) the sums go to outa/outb, else to acc[q*VB + 0..FC_VLEN) (A) and
 * acc[q*VB + FC_VLEN..VB) (B) for the caller's partial store. */
static inline __attribute__((always_inline)) void
FN(fc_ukernel2t)(int ntaps, const FC_T *const *xa, const FC_T *const *xb, const FC_T *w, const ptrdiff_t *woff,
                 int Cr, const FC_T *bias, int relu, FC_T *const *outa, FC_T *const *outb, int store_direct,
                 FC_T *acc)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int t = 0; t < ntaps; t++) {
        const FC_T *const *ta = xa + t * FC_RB, *const *tb = xb + t * FC_RB;
        const FC_T *x0 = ta[0], *x1 = ta[1], *x2 = ta[2], *x3 = ta[3], *x4 = ta[4], *x5 = ta[5];
        const FC_T *y0 = tb[0], *y1 = tb[1], *y2 = tb[2], *y3 = tb[3], *y4 = tb[4], *y5 = tb[5];
        const FC_T *wq = w + woff[t];
#pragma GCC unroll 4
        for (int c = 0; c < Cr; c++) {
            const V w0 = LD(wq);
            a00 += BC(x0[c]) * w0; a01 += BC(y0[c]) * w0;
            a10 += BC(x1[c]) * w0; a11 += BC(y1[c]) * w0;
            a20 += BC(x2[c]) * w0; a21 += BC(y2[c]) * w0;
            a30 += BC(x3[c]) * w0; a31 += BC(y3[c]) * w0;
            a40 += BC(x4[c]) * w0; a41 += BC(y4[c]) * w0;
            a50 += BC(x5[c]) * w0; a51 += BC(y5[c]) * w0;
            wq += VB;
        }
    }
    if (store_direct) {
#define FC_RELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))  /* as in fc_ukernel */
        V b0 = z;
        if (bias) b0 = LD(bias);
#define FC_OUT1(o, q, acc_)                                                      \
        if (o[q]) {                                                              \
            V v_ = acc_ + b0;                                                    \
            if (relu) v_ = FC_RELU(v_);                                          \
            ST(o[q], v_);                                                        \
        }
        FC_OUT1(outa, 0, a00) FC_OUT1(outa, 1, a10) FC_OUT1(outa, 2, a20) FC_OUT1(outa, 3, a30)
        FC_OUT1(outa, 4, a40) FC_OUT1(outa, 5, a50)
        FC_OUT1(outb, 0, a01) FC_OUT1(outb, 1, a11) FC_OUT1(outb, 2, a21) FC_OUT1(outb, 3, a31)
        FC_OUT1(outb, 4, a41) FC_OUT1(outb, 5, a51)
#undef FC_OUT1
#undef FC_RELU
        return;
    }
    FC_SPILL_ACC(acc, 6);
}

/* Per-tile working set kept in the per-thread scratch. */
typedef struct {
    int ntaps, cr;                /* taps and reduction length per tap */
    const FC_T **xp;              /* [tap][FC_RB]: where each pixel reads the tap, see fc_tile_prepare */
    ptrdiff_t *woff;              /* [tap]: offset of its packed weights */
    FC_T *patch;                  /* [tap][FC_RB][cr]: merged column runs that cross the edge of x */
    FC_T *outp[FC_RB];            /* output pixel (group 0 channel 0); NULL = no pixel */
    int pn[FC_RB], iy[FC_RB], ix[FC_RB];  /* image and grid position * (ay, ax) of each pixel */
    int np;                       /* pixel slots the register tile computes: 5 or 6 on row tiles, else FC_RB */
} FN(fc_tile);

/* Horizontal extent (in input columns) that the 6 pixels of a one-row tile read. */
static inline void FN(fc_xspan)(const fc_gconv *p, int *bmin, int *span)
{
    int lo = p->bx[0], hi = p->bx[0];
    for (int j = 1; j < p->ntx; j++) {
        lo = p->bx[j] < lo ? p->bx[j] : lo;
        hi = p->bx[j] > hi ? p->bx[j] : hi;
    }
    *bmin = lo;
    *span = (FC_RB - 1) * p->ax + hi - lo + 1;
}

static size_t FN(fc_gconv_scratch_bytes)(const fc_gconv *p, int TB)
{
    const size_t ntap = (size_t)p->nty * p->ntx;
    if (p->rowseg) {  /* fc_gconv_row: tap offsets and pointers, one segment for a whole output row */
        int bmin, span;
        FN(fc_xspan)(p, &bmin, &span);
        const size_t row_span = (size_t)(FC_RB * ((p->OW + FC_RB - 1) / FC_RB) - FC_RB) * p->ax + span;
        return 2 * ntap * sizeof(ptrdiff_t) + ntap * FC_RB * sizeof(FC_T *)
               + (size_t)p->nty * row_span * p->Cr * sizeof(FC_T) + FC_RB * VB * sizeof(FC_T) + 5 * 64;
    }
    const size_t patch = p->mergex ? ntap * FC_RB * (size_t)p->Cr : 0;
    const size_t per_tile = sizeof(FN(fc_tile)) + ntap * FC_RB * sizeof(FC_T *) + ntap * sizeof(ptrdiff_t)
                            + patch * sizeof(FC_T) + 3 * 64;
    return (size_t)TB * per_tile + (FC_RB * VB + (size_t)p->ntx * p->Cr) * sizeof(FC_T) + 3 * 64;
}

/* Tiles per output row when tiles are row-aligned (p->rowtiles), else tiles run over the flattened
 * (n, oy, ox) pixels so small maps (7x7, 14x14) keep every register-tile slot busy. */
static inline ptrdiff_t FN(fc_ntiles)(const fc_gconv *p)
{
    if (p->rowtiles)
        return (ptrdiff_t)p->N * p->OH * ((p->OW + FC_RB - 1) / FC_RB);
    return ((ptrdiff_t)p->N * p->OH * p->OW + FC_RB - 1) / FC_RB;
}

static inline void FN(fc_set_pixel)(const fc_gconv *p, FC_T *out, FN(fc_tile) *tl, int i, int n, int oy, int ox)
{
    tl->pn[i] = n;
    tl->iy[i] = oy * p->ay;
    tl->ix[i] = ox * p->ax;
    tl->outp[i] = out + (((ptrdiff_t)n * p->out_H + p->oy0 + (ptrdiff_t)oy * p->out_ay) * p->out_W
                         + p->ox0 + (ptrdiff_t)ox * p->out_ax) * p->OPS;
}

/* Decode the pixels of tile t: where they come from and where they go (group independent). */
static void FN(fc_tile_pixels)(const fc_gconv *p, FC_T *out, ptrdiff_t t, FN(fc_tile) *tl)
{
    if (p->rowtiles) {
        /* the row's OW pixels split evenly over its tiles: 28 = 5+6+5+6+6, not 6+6+6+6+4 with two
         * slots computed for nothing.  Row tiles have OW % FC_RB == 0 (all 6) or OW >= 4*FC_RB,
         * where OW / ceil(OW/6) > 5, so every tile has 5 or 6 pixels. */
        const int tpr = (p->OW + FC_RB - 1) / FC_RB;
        const ptrdiff_t row = t / tpr;
        const int n = (int)(row / p->OH), oy = (int)(row - (ptrdiff_t)n * p->OH), j = (int)(t - row * tpr);
        /* j * OW passes 2^31 on a flattened row of ~113,000 pixels (1x1 convs, Dense): 64-bit */
        const int ox0 = (int)((ptrdiff_t)j * p->OW / tpr), ox1 = (int)((ptrdiff_t)(j + 1) * p->OW / tpr);
        tl->np = ox1 - ox0;
        for (int i = 0; i < FC_RB; i++) {
            FN(fc_set_pixel)(p, out, tl, i, n, oy, ox0 + i);
            if (i >= tl->np) tl->outp[i] = NULL;
        }
        return;
    }
    tl->np = FC_RB;
    const ptrdiff_t P = (ptrdiff_t)p->N * p->OH * p->OW, plane = (ptrdiff_t)p->OH * p->OW;
    for (int i = 0; i < FC_RB; i++) {
        const ptrdiff_t q = t * FC_RB + i;
        if (q >= P) { tl->outp[i] = NULL; continue; }
        const int n = (int)(q / plane);
        const ptrdiff_t rem = q - n * plane;   /* an image may hold more than 2^31 pixels */
        const int oy = (int)(rem / p->OW), ox = (int)(rem - (ptrdiff_t)oy * p->OW);
        FN(fc_set_pixel)(p, out, tl, i, n, oy, ox);
    }
}

static inline void FN(fc_copy)(FC_T *dst, const FC_T *src, int n)
{
    if (n <= 8) { for (int i = 0; i < n; i++) dst[i] = src[i]; }
    else memcpy(dst, src, (size_t)n * sizeof(FC_T));
}

static inline void FN(fc_zero)(FC_T *dst, int n)
{
    if (n <= 8) { for (int i = 0; i < n; i++) dst[i] = 0; }
    else memset(dst, 0, (size_t)n * sizeof(FC_T));
}

/* Taps of tile tl for group g: for each tap kept, woff (its packed weights) and xp[tap][q], where
 * pixel q reads it.  That is x itself wherever the tap falls inside x, and `zeros` (a run of cr
 * zeros) where it falls outside or the slot has no pixel, so edge tiles run the same register tile
 * as interior ones without copying anything.  Taps that no pixel reads inside x are dropped.
 * With p->mergex the KW column taps of a kernel row are consecutive input columns, so (kw, c) is
 * one contiguous run of KW*Cr values: one tap per kernel row with a KW times longer reduction
 * (this is what keeps few-channel convs efficient).  A merged run that crosses the left or right
 * edge of x is copied, zero-filled outside, into the tile's patch. */
static void FN(fc_tile_prepare)(const fc_gconv *p, const FC_T *in, int g, FN(fc_tile) *tl, const FC_T *zeros)
{
    const ptrdiff_t wtap = (ptrdiff_t)p->Cr * VB;
    const ptrdiff_t cin = (ptrdiff_t)g * p->Cr;
    const int Cr = p->Cr, mx = p->mergex;
    const int nj = mx ? 1 : p->ntx;    /* column taps */
    const int run = mx ? p->ntx : 1;   /* input columns one tap reads per pixel */
    const int cr = run * Cr;
    tl->cr = cr;
    const int np = tl->np;
    const ptrdiff_t pstep = (ptrdiff_t)p->ax * p->ICt;
    int nt = 0;
    for (int i = 0; i < p->nty; i++) {
        if (p->rowtiles) {  /* one image row for the whole tile: a kernel row outside x is dropped */
            const int iy = tl->iy[0] + p->by[i];
            if (iy < 0 || iy >= p->IH) continue;
        }
        for (int j = 0; j < nj; j++) {
            const FC_T **xp = tl->xp + (ptrdiff_t)nt * FC_RB;
            int any = 0;
            if (p->rowtiles) {
                /* pixels 0..np-1 are consecutive grid columns of one row: when the tap is inside x
                 * for the first and the last, the pointers are one stride apart */
                const int ix0 = tl->ix[0] + p->bx[j], ixl = tl->ix[np - 1] + p->bx[j];
                if (ix0 >= 0 && ixl + run <= p->IW) {
                    const FC_T *x0 = in + (((ptrdiff_t)tl->pn[0] * p->IH + tl->iy[0] + p->by[i]) * p->IW + ix0)
                                          * p->ICt + cin;
                    for (int q = 0; q < FC_RB; q++)
                        xp[q] = q < np ? x0 + q * pstep : zeros;
                    tl->woff[nt] = ((ptrdiff_t)p->ky[i] * p->KW + p->kx[j]) * wtap;
                    nt++;
                    continue;
                }
            }
            for (int q = 0; q < FC_RB; q++) {
                xp[q] = zeros;
                if (!tl->outp[q]) continue;
                const int iy = tl->iy[q] + p->by[i], ix = tl->ix[q] + p->bx[j];
                if (iy < 0 || iy >= p->IH || ix + run <= 0 || ix >= p->IW) continue;
                const FC_T *row = in + ((ptrdiff_t)tl->pn[q] * p->IH + iy) * p->IW * p->ICt + cin;
                any = 1;
                if (ix >= 0 && ix + run <= p->IW) {
                    xp[q] = row + (ptrdiff_t)ix * p->ICt;
                    continue;
                }
                /* a merged run across the edge: columns inside x copied, the rest zero */
                FC_T *dst = tl->patch + ((ptrdiff_t)nt * FC_RB + q) * cr;
                for (int u = 0; u < run; u++) {
                    if (ix + u >= 0 && ix + u < p->IW)
                        FN(fc_copy)(dst + (ptrdiff_t)u * Cr, row + (ptrdiff_t)(ix + u) * p->ICt, Cr);
                    else
                        FN(fc_zero)(dst + (ptrdiff_t)u * Cr, Cr);
                }
                xp[q] = dst;
            }
            if (!any) continue;  /* the slot is reused by the next tap */
            tl->woff[nt] = ((ptrdiff_t)p->ky[i] * p->KW + p->kx[j]) * wtap;
            nt++;
        }
    }
    tl->ntaps = nt;
}

/* Whether two prepared tiles run the same taps: the same count, reduction length and weight offsets. */
static inline int FN(fc_same_taps)(const FN(fc_tile) *a, const FN(fc_tile) *b)
{
    if (a->ntaps != b->ntaps || a->cr != b->cr) return 0;
    for (int t = 0; t < a->ntaps; t++)
        if (a->woff[t] != b->woff[t]) return 0;
    return 1;
}

static inline char *FN(fc_carve)(char **cur, size_t bytes)
{
    char *r = *cur;
    *cur += (bytes + 63) & ~(size_t)63;
    return r;
}

/* acc += a * b as one vfmadd231ps on AVX2: with 12 accumulators, 2 weights and a broadcast in 15 of
 * the 16 ymm registers, GCC 12 picked the 132/213 forms for the unrolled fc_rowk loop and moved or
 * spilled accumulators around them (the 1->32 first layer ran at ~25 % of the FMA peak).  The same
 * fused multiply-add, so the same bits; AVX-512 (32 registers) and the generic level keep C. */
#if FC_X86 && FC_IS_F32 && FC_VLEN == 8
#define FC_FMA_ACC(acc, a, b) __asm__("vfmadd231ps %2, %1, %0" : "+x"(acc) : "x"(a), "xm"(b))
#else
#define FC_FMA_ACC(acc, a, b) ((acc) += (a) * (b))
#endif

/* Lean register tile of the few-channel row path (first layers): the same 6 x 2-vector tile as
 * fc_ukernel, for merged column taps, with the run length CR (= KW*Cr) and pixel stride PS (= ax*Cr)
 * compile-time constants.  Kernel row r reads x + r*rstride + p*PS + c and weights w + (r*CR + c)*VB,
 * so every address inside a kernel row is an immediate offset and the loop has no tap bookkeeping.
 * Full channel blocks are stored straight from registers (bias and ReLU applied there); the sums of
 * a partial block go to acc[] for the caller's tail store. */
static inline __attribute__((always_inline)) void
FN(fc_rowk)(const int CR, const int PS, int nr, const FC_T *x, ptrdiff_t rstride, const FC_T *w,
            const FC_T *bias, int relu, FC_T *out, ptrdiff_t pstep, int nv, int store_direct, FC_T *acc)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int r = 0; r < nr; r++, x += rstride, w += CR * VB) {
#pragma GCC unroll 32
        for (int c = 0; c < CR; c++) {
            /* pixel p of step c reads x[p*PS + c], the value pixel p-1 reads at step c + PS: an
             * opaque copy of the pointer per step stops GCC from keeping loaded values alive across
             * steps (that spilled the accumulators) */
            const FC_T *xc = x + c;
            __asm__("" : "+r"(xc));
            const V w0 = LD(w + c * VB), w1 = LD(w + c * VB + FC_VLEN);
            V b;
            b = BC(xc[0]); FC_FMA_ACC(a00, b, w0); FC_FMA_ACC(a01, b, w1);
            b = BC(xc[PS]); FC_FMA_ACC(a10, b, w0); FC_FMA_ACC(a11, b, w1);
            b = BC(xc[2 * PS]); FC_FMA_ACC(a20, b, w0); FC_FMA_ACC(a21, b, w1);
            b = BC(xc[3 * PS]); FC_FMA_ACC(a30, b, w0); FC_FMA_ACC(a31, b, w1);
            b = BC(xc[4 * PS]); FC_FMA_ACC(a40, b, w0); FC_FMA_ACC(a41, b, w1);
            b = BC(xc[5 * PS]); FC_FMA_ACC(a50, b, w0); FC_FMA_ACC(a51, b, w1);
        }
    }
    if (store_direct) {  /* a full channel block: pixels q < nv straight from registers */
        if (bias) {
            const V b0 = LD(bias), b1 = LD(bias + FC_VLEN);
            a00 += b0; a01 += b1; a10 += b0; a11 += b1; a20 += b0; a21 += b1;
            a30 += b0; a31 += b1; a40 += b0; a41 += b1; a50 += b0; a51 += b1;
        }
        if (relu) {
#define FC_RELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))  /* as in fc_ukernel */
            a00 = FC_RELU(a00); a01 = FC_RELU(a01); a10 = FC_RELU(a10); a11 = FC_RELU(a11);
            a20 = FC_RELU(a20); a21 = FC_RELU(a21); a30 = FC_RELU(a30); a31 = FC_RELU(a31);
            a40 = FC_RELU(a40); a41 = FC_RELU(a41); a50 = FC_RELU(a50); a51 = FC_RELU(a51);
#undef FC_RELU
        }
#define FC_ST_PIX(q, lo, hi) if (q < nv) { ST(out + q * pstep, lo); ST(out + q * pstep + FC_VLEN, hi); }
        FC_ST_PIX(0, a00, a01) FC_ST_PIX(1, a10, a11) FC_ST_PIX(2, a20, a21)
        FC_ST_PIX(3, a30, a31) FC_ST_PIX(4, a40, a41) FC_ST_PIX(5, a50, a51)
#undef FC_ST_PIX
        return;
    }
    FC_SPILL_ACC(acc, 6);
}
#undef FC_SPILL_ACC

/* Few output channels (Ko <= FC_VLEN, a contiguous output row: pstep == Ko): 12 pixels x ONE
 * vector instead of 6 pixels x 2 vectors of which 2*FC_VLEN - Ko lanes would idle (LeNet's 5x5
 * 1->6 first layer: 6 of 32 lanes on AVX-512).  Reads the first vector of fc_rowk's packed
 * weights; bias is FC_VLEN values (zero past Ko).  Pixel q's full-vector store spills FC_VLEN - Ko
 * values into the pixels after it, which the later stores of the same row overwrite, so it is
 * used only while the spill stays inside the row (out_end); the last pixels store Ko values.  A row
 * of OW >= 12 pixels runs as tiles at 0, 12, ... and a last one at OW - 12 (overlapping). */
static inline __attribute__((always_inline)) void
FN(fc_rowkh)(const int CR, const int PS, int nr, const FC_T *x, ptrdiff_t rstride, const FC_T *w,
             const FC_T *bias, int relu, FC_T *out, int Ko, const FC_T *out_end, FC_T *acc)
{
    const V z = {0};
    V a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z, a10 = z, a11 = z;
    for (int r = 0; r < nr; r++, x += rstride, w += CR * VB) {
#pragma GCC unroll 32
        for (int c = 0; c < CR; c++) {
            const FC_T *xc = x + c;
            __asm__("" : "+r"(xc));   /* as in fc_rowk */
            const V w0 = LD(w + c * VB);
            FC_FMA_ACC(a0, BC(xc[0]), w0);       FC_FMA_ACC(a1, BC(xc[PS]), w0);
            FC_FMA_ACC(a2, BC(xc[2 * PS]), w0);  FC_FMA_ACC(a3, BC(xc[3 * PS]), w0);
            FC_FMA_ACC(a4, BC(xc[4 * PS]), w0);  FC_FMA_ACC(a5, BC(xc[5 * PS]), w0);
            FC_FMA_ACC(a6, BC(xc[6 * PS]), w0);  FC_FMA_ACC(a7, BC(xc[7 * PS]), w0);
            FC_FMA_ACC(a8, BC(xc[8 * PS]), w0);  FC_FMA_ACC(a9, BC(xc[9 * PS]), w0);
            FC_FMA_ACC(a10, BC(xc[10 * PS]), w0); FC_FMA_ACC(a11, BC(xc[11 * PS]), w0);
        }
    }
    const V b0 = LD(bias);
#define FC_RELU(v) ((V)((__typeof__((v) < z))(v) & ~((v) < z)))  /* as in fc_ukernel */
#define FC_ST_H(q, a)                                                              \
    {                                                                              \
        V v_ = a + b0;                                                             \
        if (relu) v_ = FC_RELU(v_);                                                \
        FC_T *o_ = out + (ptrdiff_t)(q) * Ko;                                      \
        if (o_ + FC_VLEN <= out_end) ST(o_, v_);                                   \
        else { ST(acc, v_); for (int k_ = 0; k_ < Ko; k_++) o_[k_] = acc[k_]; }    \
    }
    FC_ST_H(0, a0) FC_ST_H(1, a1) FC_ST_H(2, a2) FC_ST_H(3, a3) FC_ST_H(4, a4) FC_ST_H(5, a5)
    FC_ST_H(6, a6) FC_ST_H(7, a7) FC_ST_H(8, a8) FC_ST_H(9, a9) FC_ST_H(10, a10) FC_ST_H(11, a11)
#undef FC_ST_H
#undef FC_RELU
}

/* Every tile and channel block of one output row through fc_rowk: x = the row's segment, nr kept
 * kernel rows rstride apart, w = channel block 0 at the first kept kernel row (blocks wkb apart),
 * out = pixel 0 channel 0 of the group.  3x3 kernels with all three rows kept (the interior rows)
 * get the row count as a constant too, so the whole reduction is one straight run. */
static inline __attribute__((always_inline)) void
FN(fc_rowk_row)(const int CR, const int PS, int nr, const FC_T *x, ptrdiff_t rstride, const FC_T *w, ptrdiff_t wkb,
                int Ko, const FC_T *bias, int relu, FC_T *out, ptrdiff_t pstep, int OW, FC_T *acc)
{
    int oxh = 0;   /* pixels done by fc_rowkh */
    if (Ko <= FC_VLEN && pstep == Ko && OW >= 2 * FC_RB) {
        FC_T bpad[FC_VLEN];
        for (int v = 0; v < FC_VLEN; v++) bpad[v] = bias && v < Ko ? bias[v] : (FC_T)0;
        const FC_T *out_end = out + (ptrdiff_t)OW * Ko;
        /* the last tile ends at the row's end, recomputing (bit for bit) pixels already stored */
        for (int last = 0; !last;) {
            if (oxh + 2 * FC_RB >= OW) { oxh = OW - 2 * FC_RB; last = 1; }
            FN(fc_rowkh)(CR, PS, nr, x + (ptrdiff_t)oxh * PS, rstride, w, bpad, relu, out + (ptrdiff_t)oxh * Ko, Ko,
                         out_end, acc);
            oxh += 2 * FC_RB;
        }
    }
    for (int kb = 0; kb * VB < Ko; kb++, w += wkb) {
        const int nk = fc_min(VB, Ko - kb * VB), full = nk == VB;
        const FC_T *bk = bias ? bias + kb * VB : NULL, *xt = x + (ptrdiff_t)oxh * PS;
        FC_T *dt = out + kb * VB + (ptrdiff_t)oxh * pstep;
        for (int ox = oxh; ox < OW; ox += FC_RB, xt += FC_RB * PS, dt += FC_RB * pstep) {
            const int nv = OW - ox;
            if (CR <= 12 && CR % 3 == 0 && nr == 3)
                FN(fc_rowk)(CR, PS, 3, xt, rstride, w, bk, relu, dt, pstep, nv, full, acc);
            else
                FN(fc_rowk)(CR, PS, nr, xt, rstride, w, bk, relu, dt, pstep, nv, full, acc);
            if (full) continue;
            for (int q = 0; q < fc_min(nv, FC_RB); q++)
                for (int v = 0; v < nk; v++) {
                    const FC_T s = acc[q * VB + v] + (bk ? bk[v] : (FC_T)0);
                    dt[q * pstep + v] = (relu && s < 0) ? (FC_T)0 : s;
                }
        }
    }
}

/* fc_rowk_row for the (run length, pixel stride) pairs of FC_ROWK_SHAPES (conv_geom.h), compiled
 * with constants.  Returns 0 (nothing done) for other shapes. */
static int FN(fc_rowk_any)(int CR, int PS, int nr, const FC_T *x, ptrdiff_t rstride, const FC_T *w, ptrdiff_t wkb,
                           int Ko, const FC_T *bias, int relu, FC_T *out, ptrdiff_t pstep, int OW, FC_T *acc)
{
#define FC_ROWK(cr, ps) \
    case (cr) * 16 + (ps): FN(fc_rowk_row)(cr, ps, nr, x, rstride, w, wkb, Ko, bias, relu, out, pstep, OW, acc); return 1;
    if (PS >= 16) return 0;
    switch (CR * 16 + PS) {
    FC_ROWK_SHAPES(FC_ROWK)
    default: return 0;
    }
#undef FC_ROWK
}

/* One whole output row (tiles [t0, t1) of a row-aligned tiling) for inputs with few channels: the
 * kernel rows it reads are copied once, zero-padded, into one segment that every tile of the row
 * then reads like x, so the per-tile work is only the register tile itself. */
static void FN(fc_gconv_row)(const fc_gconv *p, const FC_T *in, const FC_T *wp, const FC_T *bias,
                             FC_T *out, ptrdiff_t t0, ptrdiff_t t1, char *scratch)
{
    const int nkb = (p->Ko + VB - 1) / VB, Cr = p->Cr, mx = p->mergex;
    const int tpr = (int)(t1 - t0);
    const ptrdiff_t wblk = (ptrdiff_t)p->KH * p->KW * Cr * VB, wtap = (ptrdiff_t)Cr * VB;
    const ptrdiff_t row = t0 / tpr;
    const int n = (int)(row / p->OH), oy = (int)(row - (ptrdiff_t)n * p->OH);
    int bmin, span;
    FN(fc_xspan)(p, &bmin, &span);
    span += (FC_RB * tpr - FC_RB) * p->ax;  /* < 2^31: the plan bounds (OW + FC_RB) * ax */
    const size_t ntap = (size_t)p->nty * p->ntx;
    char *cur = scratch;
    ptrdiff_t *xoff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
    ptrdiff_t *woff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
    const FC_T **xp = (const FC_T **)FN(fc_carve)(&cur, ntap * FC_RB * sizeof(FC_T *));
    FC_T *seg = (FC_T *)FN(fc_carve)(&cur, (size_t)p->nty * span * Cr * sizeof(FC_T));
    FC_T *acc = (FC_T *)FN(fc_carve)(&cur, FC_RB * VB * sizeof(FC_T));
    FC_T *orow = out + ((ptrdiff_t)n * p->out_H + p->oy0 + (ptrdiff_t)oy * p->out_ay) * p->out_W * p->OPS;
    const int iy0 = oy * p->ay, u0 = bmin;   /* segment column u holds input column u0 + u */
    const int ulo = fc_max(0, -u0), uhi = fc_min(span, p->IW - u0);
    const ptrdiff_t ps = (ptrdiff_t)p->ax * Cr, pstep = (ptrdiff_t)p->out_ax * p->OPS;
    for (int g = 0; g < p->G; g++) {
        int nt = 0, r = 0;
        for (int i = 0; i < p->nty; i++) {
            const int iy = iy0 + p->by[i];
            if (iy < 0 || iy >= p->IH) continue;
            FC_T *dst = seg + (ptrdiff_t)r * span * Cr;
            const FC_T *src = in + (((ptrdiff_t)n * p->IH + iy) * p->IW) * p->ICt + (ptrdiff_t)g * Cr;
            if (ulo > 0) FN(fc_zero)(dst, fc_min(ulo, span) * Cr);
            if (p->ICt == Cr) {
                if (uhi > ulo) memcpy(dst + (ptrdiff_t)ulo * Cr, src + (ptrdiff_t)(u0 + ulo) * Cr,
                                      (size_t)(uhi - ulo) * Cr * sizeof(FC_T));
            } else {
                for (int u = ulo; u < uhi; u++)
                    FN(fc_copy)(dst + (ptrdiff_t)u * Cr, src + (ptrdiff_t)(u0 + u) * p->ICt, Cr);
            }
            if (fc_max(uhi, ulo) < span)
                FN(fc_zero)(dst + (ptrdiff_t)fc_max(uhi, ulo) * Cr, (span - fc_max(uhi, ulo)) * Cr);
            for (int j = 0; j < (mx ? 1 : p->ntx); j++) {
                xoff[nt] = ((ptrdiff_t)r * span + (p->bx[j] - bmin)) * Cr;
                woff[nt] = ((ptrdiff_t)p->ky[i] * p->KW + p->kx[j]) * wtap;
                nt++;
            }
            r++;
        }
        const int cr = mx ? p->ntx * Cr : Cr;
        /* merged taps whose kept kernel rows are consecutive weight rows: the lean fc_rowk tile */
        int lean = mx && nt > 0;
        for (int i = 1; i < p->nty && lean; i++) lean = p->ky[i] == p->ky[0] + i;
        int ky0 = 0;
        for (int i = 0; i < p->nty; i++)
            if (iy0 + p->by[i] >= 0 && iy0 + p->by[i] < p->IH) { ky0 = p->ky[i]; break; }
        if (lean && FN(fc_rowk_any)(cr, (int)ps, nt, seg, (ptrdiff_t)span * Cr,
                                    wp + (ptrdiff_t)g * nkb * wblk + (ptrdiff_t)ky0 * cr * VB, wblk, p->Ko,
                                    bias ? bias + g * p->Ko : NULL, p->relu,
                                    orow + (ptrdiff_t)p->ox0 * p->OPS + g * p->Ko, pstep, p->OW, acc))
            continue;
        for (int kb = 0; kb < nkb; kb++) {
            const FC_T *wb = wp + ((ptrdiff_t)g * nkb + kb) * wblk;
            const int k0 = g * p->Ko + kb * VB;
            const int nk = (p->Ko - kb * VB) < VB ? (p->Ko - kb * VB) : VB;
            FC_T *dt = orow + (ptrdiff_t)p->ox0 * p->OPS + k0;
            for (int tt = 0; tt < tpr; tt++, dt += FC_RB * pstep) {
                FC_T *dst[FC_RB];
                const int nv = p->OW - tt * FC_RB;  /* pixels of this tile that exist (>= FC_RB but the last) */
                const FC_T *x = seg + tt * FC_RB * ps, *bk = bias ? bias + k0 : NULL;
                for (int q = 0; q < FC_RB; q++)
                    dst[q] = q < nv ? dt + q * pstep : NULL;
                for (int t = 0; t < nt; t++)
                    for (int q = 0; q < FC_RB; q++)
                        xp[t * FC_RB + q] = x + xoff[t] + q * ps;
                /* constant reduction lengths of common first layers: a fully unrolled channel loop */
                switch (cr) {
                case 3: FN(fc_ukernel)(FC_RB, nt, xp, wb, woff, 3, bk, p->relu, dst, nk == VB, acc); break;
                case 5: FN(fc_ukernel)(FC_RB, nt, xp, wb, woff, 5, bk, p->relu, dst, nk == VB, acc); break;
                case 9: FN(fc_ukernel)(FC_RB, nt, xp, wb, woff, 9, bk, p->relu, dst, nk == VB, acc); break;
                default: FN(fc_ukernel)(FC_RB, nt, xp, wb, woff, cr, bk, p->relu, dst, nk == VB, acc);
                }
                if (nk == VB) continue;
                for (int q = 0; q < FC_RB; q++) {
                    if (!dst[q]) continue;
                    for (int v = 0; v < nk; v++) {
                        FC_T s = acc[q * VB + v] + (bias ? bias[k0 + v] : (FC_T)0);
                        dst[q][v] = (p->relu && s < 0) ? (FC_T)0 : s;
                    }
                }
            }
        }
    }
}

/* The activation epilogue over the OW pixels of one output grid row (grid row `row` = n * OH + oy). */
static void FN(fc_gconv_act_row)(const fc_gconv *p, FC_T *out, ptrdiff_t row)
{
    const int n = (int)(row / p->OH), oy = (int)(row - (ptrdiff_t)n * p->OH);
    FC_T *orow = out + ((ptrdiff_t)n * p->out_H + p->oy0 + (ptrdiff_t)oy * p->out_ay) * p->out_W * p->OPS;
    if (p->out_ax == 1 && p->OPS == p->OCt) {
        FN(fc_ew_span)(p->act, (FC_T)p->alpha, orow + (ptrdiff_t)p->ox0 * p->OCt,
                   orow + (ptrdiff_t)p->ox0 * p->OCt, (ptrdiff_t)p->OW * p->OCt);
        return;
    }
    for (int ox = 0; ox < p->OW; ox++) {
        FC_T *px = orow + ((ptrdiff_t)p->ox0 + (ptrdiff_t)ox * p->out_ax) * p->OPS;
        FN(fc_ew_span)(p->act, (FC_T)p->alpha, px, px, p->OCt);
    }
}

/* Output rows [t0 / tpr, t1 / tpr) of a lean plan (merged column taps, kernel rows consecutive in the
 * weight and evenly spaced in x, a (KW*Cr, ax*Cr) of FC_ROWK_SHAPES) through fc_rowk, with the
 * per-row work cut to the kept kernel rows and one copy: when every column a row's tiles read
 * (phantom pixels of a partial last tile included) lies inside x, the tiles read the kernel rows
 * in place (valid and interior first layers); otherwise only the inside columns are copied into a
 * segment whose zero columns are written once per call.  Returns 0 (nothing done) for any other
 * plan, which fc_gconv_row then runs.  scratch: fc_gconv_scratch_bytes(p, .) of a rowseg plan. */
static int FN(fc_rowk_rows)(const fc_gconv *p, const FC_T *in, const FC_T *wp, const FC_T *bias,
                            FC_T *out, ptrdiff_t t0, ptrdiff_t t1, char *scratch)
{
    if (!p->mergex || p->G != 1 || p->ICt != p->Cr || p->nty < 1 || p->ntx != p->KW) return 0;
    const int Cr = p->Cr, cr = p->ntx * Cr, ps = p->ax * Cr, nty = p->nty;
    if (!fc_rowk_shape(cr, ps)) return 0;
    const int dby = nty > 1 ? p->by[1] - p->by[0] : 1;
    for (int i = 1; i < nty; i++)
        if (p->ky[i] != p->ky[0] + i || p->by[i] != p->by[0] + i * dby) return 0;
    const int tpr = (p->OW + FC_RB - 1) / FC_RB;
    const int u0 = p->bx[0];                                   /* span column u is x column u0 + u */
    const int span = (FC_RB * tpr - 1) * p->ax + p->ntx;        /* < 2^31: the plan bounds (OW + FC_RB) * ax */
    const int ulo = fc_max(0, -u0), uhi = fc_min(span, p->IW - u0);
    /* in place when the real pixels' columns are inside x; the phantom pixels of a partial last
     * tile may then read on into the next x row (their sums are dropped), but never past x's end */
    const int direct_cols = u0 >= 0 && u0 + (p->OW - 1) * p->ax + p->ntx <= p->IW;
    const int spill = uhi < span;
    const FC_T *in_end = in + (ptrdiff_t)p->N * p->IH * p->IW * p->ICt;
    const ptrdiff_t wblk = (ptrdiff_t)p->KH * p->KW * Cr * VB, srow = (ptrdiff_t)span * Cr;
    const ptrdiff_t xrow = (ptrdiff_t)p->IW * p->ICt, pstep = (ptrdiff_t)p->out_ax * p->OPS;
    char *cur = scratch;
    FC_T *seg = (FC_T *)FN(fc_carve)(&cur, (size_t)nty * srow * sizeof(FC_T));
    FC_T *acc = (FC_T *)FN(fc_carve)(&cur, FC_RB * VB * sizeof(FC_T));
    int zeroed = 0;
    for (ptrdiff_t row = t0 / tpr; row < t1 / tpr; row++) {
        const int n = (int)(row / p->OH), oy = (int)(row - (ptrdiff_t)n * p->OH);
        const int iy0 = oy * p->ay + p->by[0];                  /* x row of kernel row i: iy0 + i * dby */
        int ilo = 0, ihi = nty;
        while (ilo < ihi && (iy0 + ilo * dby < 0 || iy0 + ilo * dby >= p->IH)) ilo++;
        while (ihi > ilo && (iy0 + (ihi - 1) * dby < 0 || iy0 + (ihi - 1) * dby >= p->IH)) ihi--;
        if (ihi == ilo) {   /* no kernel row inside x (padding past a kernel height): bias only */
            FN(fc_gconv_row)(p, in, wp, bias, out, row * tpr, (row + 1) * tpr, scratch);
            zeroed = 0;     /* fc_gconv_row used the scratch */
        } else {
            const FC_T *xr = in + ((ptrdiff_t)n * p->IH + iy0 + ilo * dby) * xrow;   /* column 0 of the first kept row */
            ptrdiff_t rstride = (ptrdiff_t)dby * xrow;
            const int iy_last = dby > 0 ? iy0 + (ihi - 1) * dby : iy0 + ilo * dby;  /* the lowest kept x row */
            const int direct = direct_cols
                && (!spill || ((ptrdiff_t)n * p->IH + iy_last) * xrow + (ptrdiff_t)(u0 + span) * Cr
                              <= in_end - in);
            const FC_T *x = direct ? xr + (ptrdiff_t)u0 * Cr : seg;    /* direct: u0 >= 0 */
            if (!direct) {
                if (!zeroed) { memset(seg, 0, (size_t)nty * srow * sizeof(FC_T)); zeroed = 1; }
                if (uhi > ulo)
                    for (int r = 0; r < ihi - ilo; r++)
                        memcpy(seg + r * srow + (ptrdiff_t)ulo * Cr, xr + r * rstride + (ptrdiff_t)(u0 + ulo) * Cr,
                               (size_t)(uhi - ulo) * Cr * sizeof(FC_T));
                rstride = srow;
            }
            FC_T *orow = out + (((ptrdiff_t)n * p->out_H + p->oy0 + (ptrdiff_t)oy * p->out_ay) * p->out_W + p->ox0)
                               * p->OPS;  /* OPS: the output's pixel stride (a concatenation's slice) */
            FN(fc_rowk_any)(cr, ps, ihi - ilo, x, rstride, wp + (ptrdiff_t)p->ky[ilo] * cr * VB, wblk, p->Ko, bias,
                            p->relu, orow, pstep, p->OW, acc);
        }
        if (p->act)
            FN(fc_gconv_act_row)(p, out, row);
    }
    return 1;
}

/* The first nk < FC_VLEN channels of a tile pair's sums (fc_ukernel2t left them in acc: tile A's in
 * acc[q*VB ..], B's in acc[q*VB + FC_VLEN ..]) + bias (bk: the block's, or NULL), relu, to da / db. */
static void FN(fc_store_pair_part)(const FC_T *acc, FC_T *const *da, FC_T *const *db, int nk, const FC_T *bk,
                                   int relu)
{
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < FC_RB; q++) {
            FC_T *d = h ? db[q] : da[q];
            if (!d) continue;
            for (int v = 0; v < nk; v++) {
                FC_T s = acc[q * VB + h * FC_VLEN + v] + (bk ? bk[v] : (FC_T)0);
                d[v] = (relu && s < 0) ? (FC_T)0 : s;
            }
        }
}

/* The 1x1 pixel row: a 1x1 stride-1 unpadded conv (or Dense) run as one row of N*H*W pixels
 * (fastconv/ops/conv.py _pixel_row), one tap, one group. */
static inline int FN(fc_is_pixel_row)(const fc_gconv *p)
{
    return p->nty == 1 && p->ntx == 1 && p->by[0] == 0 && p->bx[0] == 0 && p->ky[0] == 0 && p->kx[0] == 0
           && p->N == 1 && p->IH == 1 && p->OH == 1 && p->oy0 == 0 && p->ox0 == 0 && p->ax == 1
           && p->out_ax == 1 && p->IW == p->OW && p->G == 1;
}

/* Tiles [t0, t1) of a pixel row: the same tiles, pixels, register tiles and sums as the general
 * loop of fc_gconv_tiles, with each tile's pointers formed in place (pixel q of a tile reads
 * in + q*ICt) instead of by fc_tile_pixels / fc_tile_prepare, whose per-tile bookkeeping took ~20 %
 * of a 1x1 32 -> 32 conv's time (AVX2, 1 thread: few channels give each tile few FMAs).
 * acc: FC_RB*VB scratch; zeros: Cr zeros (what the missing pixels of a short tile read). */
static void FN(fc_gconv_pixel_row)(const fc_gconv *p, const FC_T *in, const FC_T *wp, const FC_T *bias,
                                   FC_T *out, ptrdiff_t t0, ptrdiff_t t1, int TB, FC_T *acc, const FC_T *zeros)
{
    const int nkb = (p->Ko + VB - 1) / VB, Cr = p->Cr, OW = p->OW;
    const ptrdiff_t wblk = (ptrdiff_t)Cr * VB, ICt = p->ICt, OPS = p->OPS;
    /* tile t covers pixels [t*OW / tpr, (t+1)*OW / tpr) (row tiles, as fc_tile_pixels cuts them) or
     * [6t, 6t + 6) cut at OW (flattened tiles): stepped as a quotient and remainder, no division */
    const ptrdiff_t tpr = p->rowtiles ? (OW + FC_RB - 1) / FC_RB : 1;
    const ptrdiff_t qd = p->rowtiles ? OW / tpr : FC_RB, rd = p->rowtiles ? OW % tpr : 0;
    static const ptrdiff_t woff0 = 0;
#define FC_PR_NEXT(a, r) ((r) += rd, (a) += qd + ((r) >= tpr), (r) -= (r) >= tpr ? tpr : 0)
    for (ptrdiff_t tb = t0; tb < t1; tb += TB) {
        const ptrdiff_t te = t1 - tb < TB ? t1 : tb + TB;
        const ptrdiff_t a0 = p->rowtiles ? tb * OW / tpr : tb * FC_RB;
        const ptrdiff_t r0 = p->rowtiles ? tb * OW % tpr : 0;
        for (int kb = 0; kb < nkb; kb++) {
            const FC_T *wb = wp + kb * wblk;
            const int k0 = kb * VB, nk = p->Ko - k0 < VB ? p->Ko - k0 : VB;
            const FC_T *bk = bias ? bias + k0 : NULL;
            ptrdiff_t b = a0, rb = r0;   /* start of tile t and its remainder */
            for (ptrdiff_t t = tb; t < te; t++) {
                const ptrdiff_t a = b;
                FC_PR_NEXT(b, rb);
                const int np = (int)((b < OW ? b : OW) - a);
                const FC_T *xa[FC_RB], *xb[FC_RB];
                FC_T *da[FC_RB], *db[FC_RB];
                for (int q = 0; q < FC_RB; q++) {
                    xa[q] = q < np ? in + (a + q) * ICt : zeros;
                    da[q] = q < np ? out + (a + q) * OPS + k0 : NULL;
                }
                if (nk <= FC_VLEN && t + 1 < te) {
                    /* a block of at most one vector: tiles t and t + 1 together (fc_ukernel2t) */
                    const ptrdiff_t a2 = b;
                    FC_PR_NEXT(b, rb);
                    const int np2 = (int)((b < OW ? b : OW) - a2);
                    for (int q = 0; q < FC_RB; q++) {
                        xb[q] = q < np2 ? in + (a2 + q) * ICt : zeros;
                        db[q] = q < np2 ? out + (a2 + q) * OPS + k0 : NULL;
                    }
                    FN(fc_ukernel2t)(1, xa, xb, wb, &woff0, Cr, bk, p->relu, da, db, nk == FC_VLEN, acc);
                    t++;
                    if (nk < FC_VLEN)
                        FN(fc_store_pair_part)(acc, da, db, nk, bk, p->relu);
                    continue;
                }
                const int full = nk == VB;
                if (np == 5)
                    FN(fc_ukernel)(5, 1, xa, wb, &woff0, Cr, bk, p->relu, da, full, acc);
                else
                    FN(fc_ukernel)(FC_RB, 1, xa, wb, &woff0, Cr, bk, p->relu, da, full, acc);
                if (full) continue;
                for (int q = 0; q < FC_RB; q++) {
                    if (!da[q]) continue;
                    for (int v = 0; v < nk; v++) {
                        FC_T s = acc[q * VB + v] + (bk ? bk[v] : (FC_T)0);
                        da[q][v] = (p->relu && s < 0) ? (FC_T)0 : s;
                    }
                }
            }
        }
        if (p->act) { /* the pixels just stored, each one's OCt channels */
            const ptrdiff_t b = p->rowtiles ? te * OW / tpr : (te * FC_RB < OW ? te * FC_RB : OW);
            for (ptrdiff_t q = a0; q < b; q++)
                FN(fc_ew_span)(p->act, (FC_T)p->alpha, out + q * OPS, out + q * OPS, p->OCt);
        }
    }
#undef FC_PR_NEXT
}

/* Compute tiles [t0, t1) of the gather convolution, TB tiles at a time so that one block of packed
 * weights is reused across TB tiles.  scratch: fc_gconv_scratch_bytes(p, TB) bytes, 64-aligned. */
static void FN(fc_gconv_tiles)(const fc_gconv *p, const FC_T *in, const FC_T *wp, const FC_T *bias,
                               FC_T *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    if (p->rowseg) {  /* [t0, t1) is a whole number of output rows */
        if (FN(fc_rowk_rows)(p, in, wp, bias, out, t0, t1, scratch))
            return;
        const ptrdiff_t tpr = (p->OW + FC_RB - 1) / FC_RB;
        for (ptrdiff_t t = t0; t < t1; t += tpr) {
            FN(fc_gconv_row)(p, in, wp, bias, out, t, t + tpr, scratch);
            if (p->act)
                FN(fc_gconv_act_row)(p, out, t / tpr);
        }
        return;
    }
    const int nkb = (p->Ko + VB - 1) / VB;
    const ptrdiff_t wblk = (ptrdiff_t)p->KH * p->KW * p->Cr * VB;
    const size_t ntap = (size_t)p->nty * p->ntx, zrun = (size_t)p->ntx * p->Cr;
    char *cur = scratch;
    FN(fc_tile) *tiles = (FN(fc_tile) *)FN(fc_carve)(&cur, (size_t)TB * sizeof(FN(fc_tile)));
    for (int i = 0; i < TB; i++) {
        tiles[i].xp = (const FC_T **)FN(fc_carve)(&cur, ntap * FC_RB * sizeof(FC_T *));
        tiles[i].woff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
        tiles[i].patch = (FC_T *)FN(fc_carve)(&cur, (p->mergex ? ntap * FC_RB * p->Cr : 0) * sizeof(FC_T));
    }
    FC_T *acc = (FC_T *)FN(fc_carve)(&cur, FC_RB * VB * sizeof(FC_T));
    FC_T *zeros = (FC_T *)FN(fc_carve)(&cur, zrun * sizeof(FC_T));  /* what taps outside x read */
    FN(fc_zero)(zeros, (int)zrun);
    if (FN(fc_is_pixel_row)(p)) {
        FN(fc_gconv_pixel_row)(p, in, wp, bias, out, t0, t1, TB, acc, zeros);
        return;
    }

    for (ptrdiff_t tb = t0; tb < t1; tb += TB) {
        const int nt = (int)((t1 - tb) < TB ? (t1 - tb) : TB);
        for (int i = 0; i < nt; i++)
            FN(fc_tile_pixels)(p, out, tb + i, &tiles[i]);
        for (int g = 0; g < p->G; g++) {
            for (int i = 0; i < nt; i++)
                FN(fc_tile_prepare)(p, in, g, &tiles[i], zeros);
            for (int kb = 0; kb < nkb; kb++) {
                const FC_T *wb = wp + ((ptrdiff_t)g * nkb + kb) * wblk;
                const int k0 = g * p->Ko + kb * VB;
                const int nk = (p->Ko - kb * VB) < VB ? (p->Ko - kb * VB) : VB;
                const FC_T *bk0 = bias ? bias + k0 : NULL;
                for (int i = 0; i < nt; i++) {
                    const FN(fc_tile) *tl = &tiles[i];
                    /* a block of at most one vector: tiles i and i + 1 together when their taps agree */
                    if (nk <= FC_VLEN && i + 1 < nt && FN(fc_same_taps)(tl, &tiles[i + 1])) {
                        const FN(fc_tile) *tm = &tiles[i + 1];
                        FC_T *da[FC_RB], *db[FC_RB];
                        for (int q = 0; q < FC_RB; q++) {
                            da[q] = tl->outp[q] ? tl->outp[q] + k0 : NULL;
                            db[q] = tm->outp[q] ? tm->outp[q] + k0 : NULL;
                        }
                        FN(fc_ukernel2t)(tl->ntaps, tl->xp, tm->xp, wb, tl->woff, tl->cr, bk0, p->relu, da, db,
                                         nk == FC_VLEN, acc);
                        i++;
                        if (nk < FC_VLEN)
                            FN(fc_store_pair_part)(acc, da, db, nk, bk0, p->relu);
                        continue;
                    }
                    FC_T *dst[FC_RB];
                    const int full = nk == VB;
                    for (int q = 0; q < FC_RB; q++)
                        dst[q] = tl->outp[q] ? tl->outp[q] + k0 : NULL;
                    const FC_T *bk = bias ? bias + k0 : NULL;
                    switch (tl->np) {
                    case 5: FN(fc_ukernel)(5, tl->ntaps, tl->xp, wb, tl->woff, tl->cr,
                                           bk, p->relu, dst, full, acc); break;
                    default: FN(fc_ukernel)(FC_RB, tl->ntaps, tl->xp, wb, tl->woff, tl->cr,
                                            bk, p->relu, dst, full, acc);
                    }
                    if (full) continue;
                    for (int q = 0; q < FC_RB; q++) {
                        if (!dst[q]) continue;
                        for (int v = 0; v < nk; v++) {
                            FC_T s = acc[q * VB + v] + (bias ? bias[k0 + v] : (FC_T)0);
                            dst[q][v] = (p->relu && s < 0) ? (FC_T)0 : s;
                        }
                    }
                }
            }
        }
        if (p->act) /* the tiles just stored, pixel by pixel (tiles may wrap rows) */
            for (int i = 0; i < nt; i++)
                for (int q = 0; q < FC_RB; q++)
                    if (tiles[i].outp[q])
                        FN(fc_ew_span)(p->act, (FC_T)p->alpha, tiles[i].outp[q], tiles[i].outp[q], p->OCt);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Weight gradient.  Rows r = (n, oh) of dy are split between threads; each thread accumulates
 * into its own dw/db partial.  For each block of rows and each kh, the needed x rows are copied
 * once into a zero-padded row buffer (so no tap needs a bounds check), then every reduction
 * segment is a small GEMM: rows of (kw, c) x vectors of k, reduced over the pixels of the rows.
 * With one group and no horizontal dilation the (kw, c) pairs of a kernel row are contiguous in
 * the padded row, which keeps the tile full even for 1- or 3-channel first layers.
 */

/* dst[r][0..VB) += sum over rows/pixels of x[r] * dy[0..VB), RC rows (RC a constant after inlining). */
static inline __attribute__((always_inline)) void
FN(fc_wg_tile)(const int RC, const FC_T *xb, ptrdiff_t xrow, ptrdiff_t xpix,
               const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
               const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    const V z = {0};
    V a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    V a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int r = 0; r < nrows; r++) {
        if (!rowok[r]) continue;
        const FC_T *xp = xb + r * xrow;
        const FC_T *dp = dyb + r * dyrow;
        for (int ow = 0; ow < OW; ow++, xp += xpix, dp += dypix) {
            const V d0 = LD(dp), d1 = LD(dp + FC_VLEN);
            V b;
            b = BC(xp[0]); a00 += b * d0; a01 += b * d1;
            if (RC > 1) { b = BC(xp[1]); a10 += b * d0; a11 += b * d1; }
            if (RC > 2) { b = BC(xp[2]); a20 += b * d0; a21 += b * d1; }
            if (RC > 3) { b = BC(xp[3]); a30 += b * d0; a31 += b * d1; }
            if (RC > 4) { b = BC(xp[4]); a40 += b * d0; a41 += b * d1; }
            if (RC > 5) { b = BC(xp[5]); a50 += b * d0; a51 += b * d1; }
        }
    }
#define FC_WG_ADD(row, lo, hi) \
    if (RC > row) { FC_T *d_ = dst + row * dstride; ST(d_, LD(d_) + lo); ST(d_ + FC_VLEN, LD(d_ + FC_VLEN) + hi); }
    FC_WG_ADD(0, a00, a01) FC_WG_ADD(1, a10, a11) FC_WG_ADD(2, a20, a21)
    FC_WG_ADD(3, a30, a31) FC_WG_ADD(4, a40, a41) FC_WG_ADD(5, a50, a51)
#undef FC_WG_ADD
}

/* Partial output-channel block (nk < VB): plain loops, only for odd channel counts. */
static void FN(fc_wg_tile_any)(int rc, int nk, const FC_T *xb, ptrdiff_t xrow, ptrdiff_t xpix,
                               const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
                               const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    for (int r = 0; r < nrows; r++) {
        if (!rowok[r]) continue;
        for (int ow = 0; ow < OW; ow++) {
            const FC_T *xp = xb + r * xrow + ow * xpix;
            const FC_T *dp = dyb + r * dyrow + ow * dypix;
            for (int i = 0; i < rc; i++)
                for (int v = 0; v < nk; v++)
                    dst[i * dstride + v] += xp[i] * dp[v];
        }
    }
}

/* One vector of output channels (a block's first FC_VLEN when FC_VLEN <= nk < VB), RC <= 12 reduction
 * rows: per pixel one dy vector and RC broadcasts, so the 12 accumulators keep both FMA pipes busy
 * (fc_wg_tile_any's scalar loops ran 48-channel layers' last 16 channels at ~1/8 of the vector rate).
 * NT > 0 (where masked loads exist): only the first NT < FC_VLEN channels, as one masked vector; the
 * block's channels past its last whole vector (DenseNet's 20 and 22, 12 on AVX2) had run in
 * fc_wg_tile_any's scalar loops: a 1x1 40 -> 20 weight gradient at 0.16x PyTorch's speed on AVX2. */
#ifdef FC_LD_TAIL
#define FC_WG_LDY(p, NT) ((NT) ? (V)FC_LD_TAIL((p), (NT)) : (V)LD(p))
#define FC_WG_ADDST(p, NT, acc) \
    do { if (NT) FC_ST_TAIL((p), (NT), (V)FC_LD_TAIL((p), (NT)) + (acc)); else ST((p), LD(p) + (acc)); } while (0)
#else
#define FC_WG_LDY(p, NT) LD(p)
#define FC_WG_ADDST(p, NT, acc) ST((p), LD(p) + (acc))
#endif
static inline __attribute__((always_inline)) void
FN(fc_wg_tile1)(const int RC, const int NT, const FC_T *xb, ptrdiff_t xrow, ptrdiff_t xpix,
                const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
                const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    const V z = {0};
    V a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z, a10 = z, a11 = z;
    for (int r = 0; r < nrows; r++) {
        if (!rowok[r]) continue;
        const FC_T *xp = xb + r * xrow;
        const FC_T *dp = dyb + r * dyrow;
        for (int ow = 0; ow < OW; ow++, xp += xpix, dp += dypix) {
            const V d = FC_WG_LDY(dp, NT);
            a0 += BC(xp[0]) * d;
            if (RC > 1) a1 += BC(xp[1]) * d;
            if (RC > 2) a2 += BC(xp[2]) * d;
            if (RC > 3) a3 += BC(xp[3]) * d;
            if (RC > 4) a4 += BC(xp[4]) * d;
            if (RC > 5) a5 += BC(xp[5]) * d;
            if (RC > 6) a6 += BC(xp[6]) * d;
            if (RC > 7) a7 += BC(xp[7]) * d;
            if (RC > 8) a8 += BC(xp[8]) * d;
            if (RC > 9) a9 += BC(xp[9]) * d;
            if (RC > 10) a10 += BC(xp[10]) * d;
            if (RC > 11) a11 += BC(xp[11]) * d;
        }
    }
#define FC_WG_ADD1(row, acc) \
    if (RC > row) { FC_T *d_ = dst + row * dstride; FC_WG_ADDST(d_, NT, acc); }
    FC_WG_ADD1(0, a0) FC_WG_ADD1(1, a1) FC_WG_ADD1(2, a2) FC_WG_ADD1(3, a3) FC_WG_ADD1(4, a4) FC_WG_ADD1(5, a5)
    FC_WG_ADD1(6, a6) FC_WG_ADD1(7, a7) FC_WG_ADD1(8, a8) FC_WG_ADD1(9, a9) FC_WG_ADD1(10, a10) FC_WG_ADD1(11, a11)
#undef FC_WG_ADD1
}
#undef FC_WG_LDY
#undef FC_WG_ADDST

/* fc_wg_tile1 over `len` reduction rows, 12 at a time (nt: as fc_wg_tile1's NT). */
static void FN(fc_wg_rows1)(int len, int nt, const FC_T *xb, ptrdiff_t xrow, ptrdiff_t xpix,
                            const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
                            const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    for (int f = 0; f < len; f += 12) {
        const FC_T *x0 = xb + f;
        FC_T *d0 = dst + f * dstride;
#define FC_WG1(rc) case rc: FN(fc_wg_tile1)(rc, nt, x0, xrow, xpix, dyb, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
        switch (len - f < 12 ? len - f : 12) {
        FC_WG1(12) FC_WG1(11) FC_WG1(10) FC_WG1(9) FC_WG1(8) FC_WG1(7)
        FC_WG1(6) FC_WG1(5) FC_WG1(4) FC_WG1(3) FC_WG1(2)
        default: FN(fc_wg_tile1)(1, nt, x0, xrow, xpix, dyb, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
        }
#undef FC_WG1
    }
}

static void FN(fc_wg_segment)(int len, int nk_total, const FC_T *xb, ptrdiff_t xrow, ptrdiff_t xpix,
                              const FC_T *dyb, ptrdiff_t dyrow, ptrdiff_t dypix,
                              const unsigned char *rowok, int nrows, int OW, FC_T *dst, ptrdiff_t dstride)
{
    for (int kb = 0; kb < nk_total; kb += VB) {
        const int nk = nk_total - kb < VB ? nk_total - kb : VB;
        for (int f = 0; f < len; f += 6) {
            const int rc = len - f < 6 ? len - f : 6;
            const FC_T *x0 = xb + f;
            FC_T *d0 = dst + f * dstride + kb;
            const FC_T *y0 = dyb + kb;
            if (nk < VB) {
                /* a partial block: its first vector with the vector tile (all rows at once, below),
                 * the channels past it with plain loops */
                const int nv = nk >= FC_VLEN ? FC_VLEN : 0;
                if (nv && f == 0)
                    FN(fc_wg_rows1)(len, 0, xb, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, dst + kb, dstride);
#ifdef FC_LD_TAIL
                if (nk > nv && f == 0)   /* the rest (< FC_VLEN channels) as one masked vector */
                    FN(fc_wg_rows1)(len, nk - nv, xb, xrow, xpix, y0 + nv, dyrow, dypix, rowok, nrows, OW,
                                    dst + kb + nv, dstride);
#else
                if (nk > nv)
                    FN(fc_wg_tile_any)(rc, nk - nv, x0, xrow, xpix, y0 + nv, dyrow, dypix, rowok, nrows, OW,
                                       d0 + nv, dstride);
#endif
                continue;
            }
            switch (rc) {
            case 6: FN(fc_wg_tile)(6, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            case 5: FN(fc_wg_tile)(5, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            case 4: FN(fc_wg_tile)(4, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            case 3: FN(fc_wg_tile)(3, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            case 2: FN(fc_wg_tile)(2, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            default: FN(fc_wg_tile)(1, x0, xrow, xpix, y0, dyrow, dypix, rowok, nrows, OW, d0, dstride); break;
            }
        }
    }
}

/* Pixels of dy a weight-gradient tile reduces over before the next tile takes them (L1 reuse). */
#ifndef FC_WG_PIXELS
#define FC_WG_PIXELS 48
#endif

/* Width of a zero-padded x row: every tap of every output column falls inside it. */
static inline int FN(fc_wg_padw)(const fc_wgrad *p) { return (p->OW - 1) * p->sw + (p->KW - 1) * p->dw + 1; }

#include "conv_wgrad_planar_impl.h"
#include "conv_grouped_impl.h"

static size_t FN(fc_wgrad_scratch_bytes)(const fc_wgrad *p, int RBLK)
{
    if (p->planar) return FN(fc_wgp_scratch_bytes)(p, RBLK);
    return (size_t)RBLK * FN(fc_wg_padw)(p) * p->C * sizeof(FC_T) + (size_t)RBLK + 128;
}

/* Accumulate dw (KH, KW, Cg, K) and db (K) over dy rows [r0, r1) into the thread's partials. */
static void FN(fc_wgrad_rows)(const fc_wgrad *p, const FC_T *x, const FC_T *dy, ptrdiff_t r0, ptrdiff_t r1,
                              int RBLK, FC_T *dw, FC_T *db, char *scratch)
{
    const int Wp = FN(fc_wg_padw)(p), C = p->C, K = p->K;
    FC_T *xpad = (FC_T *)scratch;
    unsigned char *rowok = (unsigned char *)(scratch + (((size_t)RBLK * Wp * C * sizeof(FC_T) + 63) & ~(size_t)63));
    const ptrdiff_t xrow = (ptrdiff_t)Wp * C, xpix = (ptrdiff_t)p->sw * C;
    const ptrdiff_t dyrow = (ptrdiff_t)p->OW * K;
    const int flat = (p->G == 1 && p->dw == 1);   /* (kw, c) contiguous in the padded row */
    const int sub = p->OW >= FC_WG_PIXELS ? 1 : FC_WG_PIXELS / p->OW;
    if (p->planar) {
        FN(fc_wgp_rows)(p, x, dy, r0, r1, RBLK, dw, db, scratch);
        return;
    }

    for (ptrdiff_t ra = r0; ra < r1; ra += RBLK) {
        const int nr = (int)((r1 - ra) < RBLK ? (r1 - ra) : RBLK);
        const FC_T *dyb = dy + ra * dyrow;
        if (db)
            for (int r = 0; r < nr; r++)
                for (int ow = 0; ow < p->OW; ow++) {
                    const FC_T *d = dyb + r * dyrow + (ptrdiff_t)ow * K;
                    for (int k = 0; k < K; k++) db[k] += d[k];
                }
        for (int kh = 0; kh < p->KH; kh++) {
            /* gather the padded x rows that kernel row kh meets */
            for (int r = 0; r < nr; r++) {
                const ptrdiff_t row = ra + r;
                const int n = (int)(row / p->OH), oh = (int)(row - (ptrdiff_t)n * p->OH);
                const int ih = oh * p->sh - p->ph + kh * p->dh;
                FC_T *dst = xpad + r * xrow;
                rowok[r] = (ih >= 0 && ih < p->H);
                if (!rowok[r]) continue;
                const FC_T *src = x + ((ptrdiff_t)n * p->H + ih) * p->W * C;
                /* padded column u holds x column u - pw */
                const int ulo = fc_max(0, p->pw), uhi = fc_min(Wp, p->W + p->pw);
                if (ulo > 0) memset(dst, 0, (size_t)fc_min(ulo, Wp) * C * sizeof(FC_T));
                if (uhi > ulo)
                    memcpy(dst + (ptrdiff_t)ulo * C, src + (ptrdiff_t)(ulo - p->pw) * C,
                           (size_t)(uhi - ulo) * C * sizeof(FC_T));
                const int zlo = fc_max(uhi, ulo);
                if (zlo < Wp) memset(dst + (ptrdiff_t)zlo * C, 0, (size_t)(Wp - zlo) * C * sizeof(FC_T));
            }
            /* every tile of a kernel row runs over a few rows at a time (~FC_WG_PIXELS pixels), so the
             * dy and x it reads stay in L1 across the tiles instead of streaming from L2 per tile */
            for (int rs = 0; rs < nr; rs += sub) {
                const int ns = nr - rs < sub ? nr - rs : sub;
                const FC_T *xs = xpad + rs * xrow, *dys = dyb + rs * dyrow;
                if (flat) {
                    FN(fc_wg_segment)(p->KW * C, K, xs, xrow, xpix, dys, dyrow, K, rowok + rs, ns, p->OW,
                                      dw + (ptrdiff_t)kh * p->KW * C * K, K);
                } else if (p->pair) {   /* conv_grouped_impl.h */
                    for (int kw = 0; kw < p->KW; kw++)
                        FN(fc_wgpair_rows)(p, xs + (ptrdiff_t)kw * p->dw * C, xrow, xpix, dys, dyrow, rowok + rs, ns,
                                         dw + ((ptrdiff_t)kh * p->KW + kw) * p->Cg * K);
                } else {
                    for (int kw = 0; kw < p->KW; kw++)
                        for (int g = 0; g < p->G; g++)
                            FN(fc_wg_segment)(p->Cg, p->Kg, xs + (ptrdiff_t)kw * p->dw * C + (ptrdiff_t)g * p->Cg,
                                              xrow, xpix, dys + (ptrdiff_t)g * p->Kg, dyrow, K, rowok + rs, ns,
                                              p->OW, dw + ((ptrdiff_t)kh * p->KW + kw) * p->Cg * K + (ptrdiff_t)g * p->Kg,
                                              K);
                }
            }
        }
    }
}

#include "conv_narrow_impl.h"

#undef V
#undef VU
#undef VB
#undef LD
#undef ST
#undef BC
#undef FN
#undef FC_FMA_ACC
