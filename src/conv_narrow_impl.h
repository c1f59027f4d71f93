/* conv_narrow_impl.h: the gather convolution (conv_geom.h) for FEW OUTPUT channels per group.
 *
 * Included by conv_impl.h (so once per element type and SIMD level, with its FN/V/LD macros).
 *
 * When the output has 1-4 channels per group (the input gradient of a first layer, a transposed
 * conv to an image, a conv to a one-channel map) the main register tile, whose vectors run over
 * OUTPUT channels, would leave most lanes idle.  This one vectorises over the REDUCTION channels
 * instead: accumulator (pixel p, output channel k) is a vector of partial sums over reduction lanes,
 * reduced horizontally once at the end of the tile.
 *
 * Register tile: P pixels along an output row x KO output channels (KO = 1..4 per pass over a
 * channel chunk), P = 8, 6, 3, 2 for KO = 1, 2, 3, 4.  Budget on AVX2 (16 ymm): KO=1: 8 acc + 1
 * weight (input vectors are FMA memory operands, 9 loads per 8 FMAs); KO=2: 12 acc + 2 weights + 1
 * input; KO=3: 9 + 3 + 1; KO=4: 8 + 4 + 1.  (KO=3 with 4 pixels needed all 16 registers and GCC
 * turned every weight into a memory operand: 16 loads per 12 FMAs, load-port bound.)  Per step:
 * KO weight vectors are loaded once and one input vector per pixel, each feeding KO FMAs.
 *
 * Packed weights: wn[g][kh][kw][cv][k][v] = w(reduction c = cv*VLEN + v, output k), zero past Cr.
 * A reduction tail (Cr not a multiple of VLEN) is one more step whose input vector is loaded lane
 * by lane (never past the channels of a pixel).
 *
 * Addressing: a tile whose pixels read only inside the input (the interior of a row) reads it
 * directly, pixel p of tap t at x + xoff[t] + p*ps; with p->mergex and no tail the KW column taps
 * of a kernel row are one contiguous run (one tap, KW times longer).  Other tiles (image edges, a
 * row shorter than P, a block's last pixels) go through a table of one pointer per (tap, pixel),
 * pointing at a zero vector where the tap falls outside the input.
 *
 * Work unit: (grid row, block of FC_NK_BW columns); the Cython wrapper spreads units over threads.
 * Each pixel's arithmetic does not depend on the unit split, so any thread count gives the same bits.
 */

#ifndef FC_NK_CONSTS
#define FC_NK_CONSTS
#define FC_NK_MAXKO 4     /* output channels per register tile */
#define FC_NK_MAXP 8      /* pixels per register tile (KO = 1) */
#define FC_NK_BW 96       /* columns per work unit: a multiple of every tile width */
static inline int fc_nk_pixels(int KO) { return KO == 1 ? 8 : KO == 2 ? 6 : KO == 3 ? 3 : 2; }
#endif

static int FN(fc_nk_vlen)(void) { return FC_VLEN; }

/* Elements of the packed narrow weights. */
static size_t FN(fc_nk_wsize)(int KH, int KW, int G, int Cr, int Ko)
{
    const size_t ncv = (size_t)(Cr + FC_VLEN - 1) / FC_VLEN;
    return (size_t)G * KH * KW * ncv * Ko * FC_VLEN;
}

/* dst[g][kh][kw][cv][k][v] = src[kh*s_kh + kw*s_kw + g*s_g + (cv*VLEN+v)*s_cr + k*s_ko], zero past Cr. */
static void FN(fc_nk_pack)(const FC_T *src, int KH, int KW, int G, int Cr, int Ko,
                           ptrdiff_t s_kh, ptrdiff_t s_kw, ptrdiff_t s_g, ptrdiff_t s_cr, ptrdiff_t s_ko,
                           FC_T *dst)
{
    const int ncv = (Cr + FC_VLEN - 1) / FC_VLEN;
    for (int g = 0; g < G; g++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++)
                for (int cv = 0; cv < ncv; cv++)
                    for (int k = 0; k < Ko; k++) {
                        const FC_T *s = src + kh * s_kh + kw * s_kw + g * s_g + k * s_ko;
                        for (int v = 0; v < FC_VLEN; v++) {
                            const int c = cv * FC_VLEN + v;
                            *dst++ = (c < Cr) ? s[(ptrdiff_t)c * s_cr] : (FC_T)0;
                        }
                    }
}

/* The first n (< VLEN) elements of p, zeros above, never reading past them: one masked load where
 * the level has one (lane by lane a 3x3 conv 24 -> 8, a DenseNet layer, ran at 17 GFLOP/s). */
static inline V FN(fc_ld_tail)(const FC_T *p, int n)
{
#ifdef FC_LD_TAIL
    return (V)FC_LD_TAIL(p, n);
#else
    V v = {0};
    for (int i = 0; i < n; i++) v[i] = p[i];
    return v;
#endif
}

/* Horizontal sums of n vectors a[0..n): res[i] = sum of the lanes of a[i].  A tree of pairwise
 * even/odd lane sums turns VLEN vectors into one vector of their VLEN sums in log2(VLEN) levels
 * (7 shuffle-add pairs for 8 AVX2 accumulators instead of 8 separate reductions).  res needs room
 * for n rounded up to a multiple of VLEN. */
#if FC_VLEN == 2
typedef long long FN(fc_ivec) __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
#define FC_EVEN ((FN(fc_ivec)){0, 2})
#define FC_ODD ((FN(fc_ivec)){1, 3})
#elif FC_VLEN == 4
typedef int FN(fc_ivec) __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
#define FC_EVEN ((FN(fc_ivec)){0, 2, 4, 6})
#define FC_ODD ((FN(fc_ivec)){1, 3, 5, 7})
#elif FC_VLEN == 8
typedef int FN(fc_ivec) __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
#define FC_EVEN ((FN(fc_ivec)){0, 2, 4, 6, 8, 10, 12, 14})
#define FC_ODD ((FN(fc_ivec)){1, 3, 5, 7, 9, 11, 13, 15})
#elif FC_VLEN == 16
typedef int FN(fc_ivec) __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
#define FC_EVEN ((FN(fc_ivec)){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define FC_ODD ((FN(fc_ivec)){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
#endif

static inline __attribute__((always_inline)) void FN(fc_hsum_many)(const V *a, int n, FC_T *res)
{
    const V z = {0};
    for (int i0 = 0; i0 < n; i0 += FC_VLEN) {
        V v[FC_VLEN];
        for (int i = 0; i < FC_VLEN; i++) v[i] = i0 + i < n ? a[i0 + i] : z;
        for (int len = FC_VLEN; len > 1; len /= 2)
            for (int i = 0; i < len / 2; i++)
                v[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], FC_EVEN)
                       + __builtin_shuffle(v[2 * i], v[2 * i + 1], FC_ODD);
        ST(res + i0, v[0]);
    }
}
#undef FC_EVEN
#undef FC_ODD

/* res[p*KO + k] = sum over taps t, reduction vectors cv (nfull full ones, then a `rem`-lane tail) of
 *     x_t,p[cv*VLEN + 0..VLEN) . w[woff[t] + cv*wcv + k*VLEN + 0..VLEN)
 * with x_t,p = x + xoff[t] + p*ps (indirect == 0) or xind[t*P + p] (indirect == 1).
 * KO, P and indirect are constants after inlining: every `if` on them folds away and the named
 * accumulators a0..a11 (accumulator i is pixel i / KO, channel i % KO) stay in registers. */
#define FC_NK_SEL4(i, v0, v1, v2, v3) ((i) == 0 ? (v0) : (i) == 1 ? (v1) : (i) == 2 ? (v2) : (v3))
#define FC_NK_SEL8(i, v0, v1, v2, v3, v4, v5, v6, v7) \
    ((i) < 4 ? FC_NK_SEL4(i, v0, v1, v2, v3) : FC_NK_SEL4((i) - 4, v4, v5, v6, v7))
#define FC_NK_FMA(i) \
    if ((i) < P * KO) a##i += FC_NK_SEL8((i) / KO, x0, x1, x2, x3, x4, x5, x6, x7) * FC_NK_SEL4((i) % KO, w0, w1, w2, w3);
/* one reduction step: KO weight vectors at wq, one input vector per pixel from LDX(pointer) */
#define FC_NK_STEP(LDX)                                                                               \
    {                                                                                                 \
        const V w0 = LD(wq), w1 = KO > 1 ? (V)LD(wq + FC_VLEN) : z;                                   \
        const V w2 = KO > 2 ? (V)LD(wq + 2 * FC_VLEN) : z, w3 = KO > 3 ? (V)LD(wq + 3 * FC_VLEN) : z; \
        const V x0 = LDX(p0), x1 = P > 1 ? (V)LDX(p1) : z, x2 = P > 2 ? (V)LDX(p2) : z;               \
        const V x3 = P > 3 ? (V)LDX(p3) : z, x4 = P > 4 ? (V)LDX(p4) : z, x5 = P > 5 ? (V)LDX(p5) : z; \
        const V x6 = P > 6 ? (V)LDX(p6) : z, x7 = P > 7 ? (V)LDX(p7) : z;                             \
        FC_NK_FMA(0) FC_NK_FMA(1) FC_NK_FMA(2) FC_NK_FMA(3) FC_NK_FMA(4) FC_NK_FMA(5)               \
        FC_NK_FMA(6) FC_NK_FMA(7) FC_NK_FMA(8) FC_NK_FMA(9) FC_NK_FMA(10) FC_NK_FMA(11)             \
    }
static inline __attribute__((always_inline)) void
FN(fc_nk_tile)(const int KO, const int P, const int indirect, int ntaps,
               const FC_T *x, const ptrdiff_t *xoff, ptrdiff_t ps, const FC_T *const *xind,
               const FC_T *w, const ptrdiff_t *woff, ptrdiff_t wcv, int nfull, int rem, FC_T *res)
{
    const V z = {0};
    V a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z, a10 = z, a11 = z;
    for (int t = 0; t < ntaps; t++) {
        const FC_T *p0, *p1, *p2, *p3, *p4, *p5, *p6, *p7;
        if (indirect) {
            const FC_T *const *q = xind + t * P;
            p0 = q[0]; p1 = P > 1 ? q[1] : p0; p2 = P > 2 ? q[2] : p0; p3 = P > 3 ? q[3] : p0;
            p4 = P > 4 ? q[4] : p0; p5 = P > 5 ? q[5] : p0; p6 = P > 6 ? q[6] : p0; p7 = P > 7 ? q[7] : p0;
        } else {
            p0 = x + xoff[t]; p1 = p0 + ps; p2 = p1 + ps; p3 = p2 + ps;
            p4 = p3 + ps; p5 = p4 + ps; p6 = p5 + ps; p7 = p6 + ps;
        }
        const FC_T *wq = w + woff[t];
#pragma GCC unroll 4
        for (int cv = 0; cv < nfull; cv++, wq += wcv) {
            const int o = cv * FC_VLEN;
#define FC_NK_LD(ptr) LD((ptr) + o)
            FC_NK_STEP(FC_NK_LD)
#undef FC_NK_LD
        }
        if (rem) {
            const int o = nfull * FC_VLEN;
#define FC_NK_LD(ptr) FN(fc_ld_tail)((ptr) + o, rem)
            FC_NK_STEP(FC_NK_LD)
#undef FC_NK_LD
        }
    }
    const V all[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
    FN(fc_hsum_many)(all, P * KO, res);
}
#undef FC_NK_STEP
#undef FC_NK_FMA
#undef FC_NK_SEL8
#undef FC_NK_SEL4

/* One tile of KO channels: the register tile for this KO, direct or through the pointer table. */
static void FN(fc_nk_run)(int KO, int indirect, int ntaps, const FC_T *x, const ptrdiff_t *xoff, ptrdiff_t ps,
                          const FC_T *const *xind, const FC_T *w, const ptrdiff_t *woff, ptrdiff_t wcv,
                          int nfull, int rem, FC_T *res)
{
#define FC_NK_CASE(ko, pp)                                                                           \
    case ko:                                                                                         \
        if (indirect) FN(fc_nk_tile)(ko, pp, 1, ntaps, x, xoff, ps, xind, w, woff, wcv, nfull, rem, res); \
        else FN(fc_nk_tile)(ko, pp, 0, ntaps, x, xoff, ps, xind, w, woff, wcv, nfull, rem, res);          \
        break;
    switch (KO) {
    FC_NK_CASE(1, 8)
    FC_NK_CASE(2, 6)
    FC_NK_CASE(3, 3)
    default: FC_NK_CASE(4, 2)
    }
#undef FC_NK_CASE
}

static size_t FN(fc_nk_scratch_bytes)(const fc_gconv *p)
{
    const size_t ntap = (size_t)p->nty * p->ntx;
    return 5 * ntap * sizeof(ptrdiff_t) + ntap * FC_NK_MAXP * sizeof(FC_T *)
           + ((size_t)p->Cr + FC_VLEN) * sizeof(FC_T) + (FC_NK_MAXP * FC_NK_MAXKO + FC_VLEN) * sizeof(FC_T) + 8 * 64;
}

/* Work units: (grid row, column block). */
static ptrdiff_t FN(fc_nk_units)(const fc_gconv *p)
{
    return (ptrdiff_t)p->N * p->OH * ((p->OW + FC_NK_BW - 1) / FC_NK_BW);
}

/* Compute work units [u0, u1).  wn: fc_nk_pack'ed weights; scratch: fc_nk_scratch_bytes(p), 64-aligned. */
static void FN(fc_nk_units_run)(const fc_gconv *p, const FC_T *in, const FC_T *wn, const FC_T *bias,
                                FC_T *out, ptrdiff_t u0, ptrdiff_t u1, char *scratch)
{
    const int Cr = p->Cr, Ko = p->Ko, ICt = p->ICt, ax = p->ax;
    const int ncv = (Cr + FC_VLEN - 1) / FC_VLEN, nfull = Cr / FC_VLEN, rem = Cr % FC_VLEN;
    const ptrdiff_t wcv = (ptrdiff_t)Ko * FC_VLEN, wtap = (ptrdiff_t)ncv * wcv;
    const ptrdiff_t wgrp = (ptrdiff_t)p->KH * p->KW * wtap;
    const int mx = p->mergex && rem == 0;  /* (kw, cv) contiguous in input and weights */
    const int nfull_d = mx ? p->ntx * nfull : nfull;
    const ptrdiff_t ps = (ptrdiff_t)ax * ICt, pstep = (ptrdiff_t)p->out_ax * p->OPS;
    const size_t ntap = (size_t)p->nty * p->ntx;
    char *cur = scratch;
    ptrdiff_t *xoff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));    /* direct taps */
    ptrdiff_t *woff = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
    ptrdiff_t *woff_i = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));  /* table taps */
    ptrdiff_t *rowb_i = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
    ptrdiff_t *bx_i = (ptrdiff_t *)FN(fc_carve)(&cur, ntap * sizeof(ptrdiff_t));
    const FC_T **xind = (const FC_T **)FN(fc_carve)(&cur, ntap * FC_NK_MAXP * sizeof(FC_T *));
    FC_T *zeros = (FC_T *)FN(fc_carve)(&cur, ((size_t)Cr + FC_VLEN) * sizeof(FC_T));
    FC_T *res = (FC_T *)FN(fc_carve)(&cur, (FC_NK_MAXP * FC_NK_MAXKO + FC_VLEN) * sizeof(FC_T));
    FN(fc_zero)(zeros, Cr + FC_VLEN);

    /* grid columns [xlo, xhi) read every column tap inside the input */
    int bmin = p->bx[0], bmax = p->bx[0];
    for (int j = 1; j < p->ntx; j++) {
        bmin = fc_min(bmin, p->bx[j]);
        bmax = fc_max(bmax, p->bx[j]);
    }
    const int xlo = fc_min(p->OW, fc_max(0, fc_ceildiv(-bmin, ax)));
    const int xhi = fc_max(xlo, fc_min(p->OW, fc_floordiv(p->IW - 1 - bmax, ax) + 1));
    const int nblk = (p->OW + FC_NK_BW - 1) / FC_NK_BW;

    for (ptrdiff_t u = u0; u < u1; u++) {
        const ptrdiff_t row = u / nblk;
        const int c0 = (int)(u - row * nblk) * FC_NK_BW, c1 = fc_min(p->OW, c0 + FC_NK_BW);
        const int n = (int)(row / p->OH), oy = (int)(row - (ptrdiff_t)n * p->OH);
        FC_T *orow = out + (((ptrdiff_t)n * p->out_H + p->oy0 + (ptrdiff_t)oy * p->out_ay) * p->out_W + p->ox0) * p->OPS;
        for (int g = 0; g < p->G; g++) {
            /* taps of the kept kernel rows: direct ones (merged per kernel row when possible) and
             * one per (row, column) for the pointer table */
            int nt = 0, nti = 0;
            for (int i = 0; i < p->nty; i++) {
                const int iy = oy * p->ay + p->by[i];
                if (iy < 0 || iy >= p->IH) continue;
                const ptrdiff_t rowbase = ((ptrdiff_t)n * p->IH + iy) * p->IW * ICt + (ptrdiff_t)g * Cr;
                for (int j = 0; j < p->ntx; j++) {
                    const ptrdiff_t wo = (ptrdiff_t)g * wgrp + ((ptrdiff_t)p->ky[i] * p->KW + p->kx[j]) * wtap;
                    if (!mx || j == 0) {
                        xoff[nt] = rowbase + (ptrdiff_t)p->bx[j] * ICt;
                        woff[nt] = wo;
                        nt++;
                    }
                    woff_i[nti] = wo;
                    rowb_i[nti] = rowbase;
                    bx_i[nti] = p->bx[j];
                    nti++;
                }
            }
            for (int kc = 0; kc < Ko; kc += FC_NK_MAXKO) {
                const int KO = fc_min(FC_NK_MAXKO, Ko - kc), P = fc_nk_pixels(KO);
                const FC_T *wk = wn + (ptrdiff_t)kc * FC_VLEN;
                const int k0 = g * Ko + kc;
                for (int s0 = c0; s0 < c1; s0 += P) {
                    /* the block's last tile moves back to end at c1 (recomputing a few pixels) */
                    int s = s0, np = P;
                    if (s + P > c1) {
                        if (c1 - c0 >= P) s = c1 - P;
                        else np = c1 - s;
                    }
                    if (np == P && s >= xlo && s + P <= xhi) {
                        FN(fc_nk_run)(KO, 0, nt, in + s * ps, xoff, ps, NULL, wk, woff, wcv, nfull_d, rem, res);
                    } else {
                        /* pixel q of tap t reads column (s + q)*ax + bx: inside for q in [qlo, qhi) */
                        for (int t = 0; t < nti; t++) {
                            const int ix0 = s * ax + (int)bx_i[t];
                            const int lo = ax == 1 ? -ix0 : fc_ceildiv(-ix0, ax);  /* no division at ax = 1 */
                            const int hi = ax == 1 ? p->IW - ix0 : fc_floordiv(p->IW - 1 - ix0, ax) + 1;
                            const int qlo = fc_min(np, fc_max(0, lo)), qhi = fc_max(qlo, fc_min(np, hi));
                            const FC_T **dst = xind + t * P;
                            const FC_T *src = in + (rowb_i[t] + (ptrdiff_t)(ix0 + qlo * ax) * ICt);
                            int q = 0;
                            for (; q < qlo; q++) dst[q] = zeros;
                            for (; q < qhi; q++, src += ps) dst[q] = src;
                            for (; q < P; q++) dst[q] = zeros;
                        }
                        FN(fc_nk_run)(KO, 1, nti, NULL, NULL, 0, xind, wk, woff_i, wcv, nfull, rem, res);
                    }
                    FC_T *dst = orow + (ptrdiff_t)s * pstep + k0;
                    if (!bias && !p->relu) {
                        for (int q = 0; q < np; q++, dst += pstep)
                            for (int k = 0; k < KO; k++) dst[k] = res[q * KO + k];
                    } else {
                        for (int q = 0; q < np; q++, dst += pstep)
                            for (int k = 0; k < KO; k++) {
                                const FC_T v = res[q * KO + k] + (bias ? bias[k0 + k] : (FC_T)0);
                                dst[k] = (p->relu && v < 0) ? (FC_T)0 : v;
                            }
                    }
                }
            }
        }
    }
}
