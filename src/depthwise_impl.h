/* depthwise_impl.h: depthwise convolution kernels for ONE element type and ONE SIMD level.
 *
 * Included several times by depthwise_kernels.h with FC_T, FC_VLEN and FC_SFX defined (inside a
 * `#pragma GCC target` region for the x86 levels); written with GCC vector extensions.
 *
 * Layout: x (N, H, W, C), w (KH, KW, C, M) read as (KH, KW, K) with K = C*M (output channel
 * k = c*M + m reads input channel k / M), y (N, OH, OW, K).  Everything is vectorised over the
 * K channels of a pixel (C innermost in NHWC).
 *
 * One "row job" (dw_job) serves the forward pass and the input gradient:
 *
 *     out[j*ostep + k] = bias[k] + sum_{row r, tap t} src_r[(j*qs + toff[t])*K + k] * wrow_r[tw[t]*K + k]
 *
 * with source columns outside [0, Wsrc) reading zero (the padding, never materialised).
 *   forward:  rows = the valid input rows of output row (n, oh); taps t = kw, toff = kw*dw - pw,
 *             qs = sw, out = y row.
 *   dx:       rows = the dy rows (n, oh) with oh*sh - ph + kh*dh = ih; one job per column phase
 *             phi < sw (dx columns phi + j*sw), taps = the kw with (phi + pw - kw*dw) % sw == 0,
 *             toff = (phi + pw - kw*dw) / sw, qs = 1: stride-1 gathers over dy, no zero-stuffing.
 * Register tile: DW_RB output pixels x one vector of channels, named accumulators; per tap one
 * weight vector is loaded and feeds DW_RB FMAs whose x operands come straight from memory.
 * Budget on AVX2 (16 ymm): 6 accumulators + 1 weight + 1 spare.  Pixels whose taps leave the
 * source row (the padding edges) take a per-pixel path with bounds checks.
 * Channel tails: the last block is shifted back to K - VLEN (it overlaps the previous one and
 * rewrites identical values); K < VLEN goes to the next narrower level (or scalar code).
 *
 * Depth multiplier M > 1: the input rows are expanded to K channels (e[iw*K + c*M + m] =
 * x[iw*C + c]) in a small per-thread cache of KH rows, so the same K-channel code runs;
 * dx is computed in K space into a scratch row and then summed over m.
 *
 * Weight gradient: per (dy row, kh) and channel block, a tile of up to 7 taps (named
 * accumulators) is reduced over the interior output columns, the edge columns are added with
 * bounds checks, and the result goes to the caller's per-thread partial dw (lanes of a shifted
 * tail block that belong to the previous block are skipped).
 */
#define DW_CAT_(a, b) a##b
#define DW_CAT(a, b) DW_CAT_(a, b)
#define DFN(name) DW_CAT(name, FC_SFX)
#define DV DFN(fc_dwv)
#define DVU DFN(fc_dwvu)
#define DLD(p) (*(const DVU *)(p))
#define DST(p, v) (*(DVU *)(p) = (v))
#define DW_RB 6

typedef FC_T DV __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T DVU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));

typedef struct {
    int K, nr, nt, qs, Wsrc, nj;
    const FC_T *const *src;  /* nr source rows (pixel 0, channel 0) */
    const FC_T *const *wrow; /* nr weight rows: w + kh*KW*K */
    const int *toff;         /* nt source column offsets */
    const ptrdiff_t *toffK;  /* toff * K */
    const ptrdiff_t *twK;    /* kw * K */
    FC_T *out;
    ptrdiff_t ostep;         /* elements between consecutive outputs j */
    const FC_T *bias;        /* K values or NULL */
} DFN(dw_job);

/* RB output pixels j0.. j0+RB-1 (all taps inside the source row), channels k0 .. k0+VLEN-1. */
static inline __attribute__((always_inline)) void
DFN(dw_tile)(const int RB, const DFN(dw_job) *jb, int j0, int k0)
{
    const ptrdiff_t ps = (ptrdiff_t)jb->qs * jb->K;
    const DV z = {0};
    DV b = z;
    if (jb->bias) b = DLD(jb->bias + k0);
    DV a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b;
    const int nr = jb->nr, nt = jb->nt;
    for (int r = 0; r < nr; r++) {
        const FC_T *s = jb->src[r] + (ptrdiff_t)j0 * ps + k0;
        const FC_T *wr = jb->wrow[r] + k0;
        for (int t = 0; t < nt; t++) {
            const DV wv = DLD(wr + jb->twK[t]);
            const FC_T *q = s + jb->toffK[t];
            a0 += DLD(q) * wv;
            if (RB > 1) a1 += DLD(q + ps) * wv;
            if (RB > 2) a2 += DLD(q + 2 * ps) * wv;
            if (RB > 3) a3 += DLD(q + 3 * ps) * wv;
            if (RB > 4) a4 += DLD(q + 4 * ps) * wv;
            if (RB > 5) a5 += DLD(q + 5 * ps) * wv;
        }
    }
    const ptrdiff_t os = jb->ostep;
    FC_T *o = jb->out + (ptrdiff_t)j0 * os + k0;
    DST(o, a0);
    if (RB > 1) DST(o + os, a1);
    if (RB > 2) DST(o + 2 * os, a2);
    if (RB > 3) DST(o + 3 * os, a3);
    if (RB > 4) DST(o + 4 * os, a4);
    if (RB > 5) DST(o + 5 * os, a5);
}

/* One output pixel j with bounds checks on every tap. */
static void DFN(dw_edge)(const DFN(dw_job) *jb, int j, int k0)
{
    const DV z = {0};
    DV a = z;
    if (jb->bias) a = DLD(jb->bias + k0);
    for (int r = 0; r < jb->nr; r++)
        for (int t = 0; t < jb->nt; t++) {
            const int col = j * jb->qs + jb->toff[t];
            if (col < 0 || col >= jb->Wsrc) continue;
            a += DLD(jb->src[r] + (ptrdiff_t)col * jb->K + k0) * DLD(jb->wrow[r] + jb->twK[t] + k0);
        }
    DST(jb->out + (ptrdiff_t)j * jb->ostep + k0, a);
}

/* Scalar version of the whole job (only for K < VLEN on the narrowest level). */
static void DFN(dw_run_scalar)(const DFN(dw_job) *jb)
{
    const int K = jb->K;
    for (int j = 0; j < jb->nj; j++)
        for (int k = 0; k < K; k++) {
            FC_T a = jb->bias ? jb->bias[k] : (FC_T)0;
            for (int r = 0; r < jb->nr; r++)
                for (int t = 0; t < jb->nt; t++) {
                    const int col = j * jb->qs + jb->toff[t];
                    if (col < 0 || col >= jb->Wsrc) continue;
                    a += jb->src[r][(ptrdiff_t)col * K + k] * jb->wrow[r][jb->twK[t] + k];
                }
            jb->out[(ptrdiff_t)j * jb->ostep + k] = a;
        }
}

/* Run a row job: interior pixels in DW_RB tiles, edge pixels with bounds checks. */
static void DFN(dw_run)(const DFN(dw_job) *jb)
{
    const int K = jb->K, nj = jb->nj;
    if (K < FC_VLEN) {
        DFN(dw_run_scalar)(jb);
        return;
    }
    int jlo = 0, jhi = nj;
    if (jb->nr > 0 && jb->nt > 0) {
        int tmin = jb->toff[0], tmax = jb->toff[0];
        for (int t = 1; t < jb->nt; t++) {
            tmin = fc_min(tmin, jb->toff[t]);
            tmax = fc_max(tmax, jb->toff[t]);
        }
        jlo = fc_min(nj, fc_max(0, fc_ceildiv(-tmin, jb->qs)));
        jhi = fc_min(nj, fc_floordiv(jb->Wsrc - 1 - tmax, jb->qs) + 1);
        if (jhi < jlo) jhi = jlo;
    }
    const int nkb = (K + FC_VLEN - 1) / FC_VLEN;
    for (int j = 0; j < jlo; j++)
        for (int kb = 0; kb < nkb; kb++)
            DFN(dw_edge)(jb, j, fc_min(kb * FC_VLEN, K - FC_VLEN));
    int j = jlo;
    for (; j + DW_RB <= jhi; j += DW_RB)
        for (int kb = 0; kb < nkb; kb++)
            DFN(dw_tile)(DW_RB, jb, j, fc_min(kb * FC_VLEN, K - FC_VLEN));
    for (; j < jhi; j++)
        for (int kb = 0; kb < nkb; kb++)
            DFN(dw_tile)(1, jb, j, fc_min(kb * FC_VLEN, K - FC_VLEN));
    for (j = jhi; j < nj; j++)
        for (int kb = 0; kb < nkb; kb++)
            DFN(dw_edge)(jb, j, fc_min(kb * FC_VLEN, K - FC_VLEN));
}

/* ---- scratch carving and the expanded-row cache (M > 1) ---- */

static inline char *DFN(dw_carve)(char **cur, size_t bytes)
{
    char *r = *cur;
    *cur += (bytes + 63) & ~(size_t)63;
    return r;
}

typedef struct {
    long *tag, *stamp;
    FC_T *rows; /* KH rows of W*K */
} DFN(dw_cache);

static void DFN(dw_cache_init)(const fc_dwp *p, char **cur, DFN(dw_cache) *cc)
{
    cc->tag = (long *)DFN(dw_carve)(cur, (size_t)p->KH * sizeof(long));
    cc->stamp = (long *)DFN(dw_carve)(cur, (size_t)p->KH * sizeof(long));
    cc->rows = (FC_T *)DFN(dw_carve)(cur, (size_t)p->KH * p->W * p->K * sizeof(FC_T));
    for (int i = 0; i < p->KH; i++) cc->tag[i] = cc->stamp[i] = -1;
}

/* Input row (n, ih) with each channel repeated M times; stamp = the output row asking, so rows
 * needed by the same output row are never evicted by each other (there are KH slots). */
static const FC_T *DFN(dw_cache_get)(const fc_dwp *p, const FC_T *x, DFN(dw_cache) *cc, int n, int ih, long stamp)
{
    const long tag = (long)n * p->H + ih;
    const size_t rowlen = (size_t)p->W * p->K;
    int slot = -1;
    for (int i = 0; i < p->KH; i++)
        if (cc->tag[i] == tag) { slot = i; break; }
    if (slot < 0) {
        for (int i = 0; i < p->KH; i++)
            if (cc->stamp[i] != stamp) { slot = i; break; }
        const FC_T *xs = x + (ptrdiff_t)tag * p->W * p->C;
        FC_T *e = cc->rows + slot * rowlen;
        const int M = p->M;
        for (ptrdiff_t i = 0; i < (ptrdiff_t)p->W * p->C; i++) {
            const FC_T v = xs[i];
            for (int m = 0; m < M; m++) *e++ = v;
        }
        cc->tag[slot] = tag;
    }
    cc->stamp[slot] = stamp;
    return cc->rows + slot * rowlen;
}

static size_t DFN(fc_dw_scratch_bytes)(const fc_dwp *p)
{
    const size_t KH = (size_t)p->KH, KW = (size_t)p->KW, sw = (size_t)p->sw;
    size_t b = 2 * ((KH * sizeof(void *) + 63) & ~(size_t)63);        /* row lists */
    b += 3 * ((sw * KW * sizeof(ptrdiff_t) + 63) & ~(size_t)63);      /* tap lists */
    b += (sw * sizeof(int) + 63) & ~(size_t)63;                        /* tap counts */
    b += 2 * ((KH * sizeof(long) + 63) & ~(size_t)63);                /* cache tags */
    b += (KW * 16 * sizeof(FC_T) + 63) & ~(size_t)63;                 /* dw accumulators */
    b += 64;
    if (p->M > 1) b += ((KH + 1) * (size_t)p->W * p->K * sizeof(FC_T) + 63) & ~(size_t)63;
    return b;
}

/* ---- forward: output rows r = n*OH + oh in [r0, r1) ---- */
static void DFN(fc_dw_forward_rows)(const fc_dwp *p, const FC_T *x, const FC_T *w, const FC_T *bias, FC_T *y,
                                    long r0, long r1, char *scratch)
{
#ifdef DW_NARROW
    if (p->K < FC_VLEN) {
        DW_NARROW(fc_dw_forward_rows)(p, x, w, bias, y, r0, r1, scratch);
        return;
    }
#endif
    const int KH = p->KH, KW = p->KW, K = p->K;
    char *cur = scratch;
    const FC_T **srcs = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    const FC_T **wrows = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    int *toff = (int *)DFN(dw_carve)(&cur, KW * sizeof(ptrdiff_t));
    ptrdiff_t *toffK = (ptrdiff_t *)DFN(dw_carve)(&cur, KW * sizeof(ptrdiff_t));
    ptrdiff_t *twK = (ptrdiff_t *)DFN(dw_carve)(&cur, KW * sizeof(ptrdiff_t));
    DFN(dw_cache) cc;
    if (p->M > 1) DFN(dw_cache_init)(p, &cur, &cc);
    for (int kw = 0; kw < KW; kw++) {
        toff[kw] = kw * p->dw - p->pw;
        toffK[kw] = (ptrdiff_t)toff[kw] * K;
        twK[kw] = (ptrdiff_t)kw * K;
    }
    DFN(dw_job) jb;
    jb.K = K; jb.nt = KW; jb.qs = p->sw; jb.Wsrc = p->W; jb.nj = p->OW;
    jb.src = srcs; jb.wrow = wrows; jb.toff = toff; jb.toffK = toffK; jb.twK = twK;
    jb.ostep = K; jb.bias = bias;
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (long)n * p->OH);
        int nr = 0;
        for (int kh = 0; kh < KH; kh++) {
            const int ih = oh * p->sh - p->ph + kh * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            srcs[nr] = p->M == 1 ? x + ((ptrdiff_t)n * p->H + ih) * p->W * K
                                 : DFN(dw_cache_get)(p, x, &cc, n, ih, r);
            wrows[nr] = w + (ptrdiff_t)kh * KW * K;
            nr++;
        }
        jb.nr = nr;
        jb.out = y + (ptrdiff_t)r * p->OW * K;
        DFN(dw_run)(&jb);
    }
}

/* ---- input gradient: dx rows r = n*H + ih in [r0, r1) ---- */
static void DFN(fc_dw_backward_input_rows)(const fc_dwp *p, const FC_T *dy, const FC_T *w, FC_T *dx,
                                           long r0, long r1, char *scratch)
{
#ifdef DW_NARROW
    if (p->K < FC_VLEN) {
        DW_NARROW(fc_dw_backward_input_rows)(p, dy, w, dx, r0, r1, scratch);
        return;
    }
#endif
    const int KH = p->KH, KW = p->KW, K = p->K, sw = p->sw, W = p->W, C = p->C, M = p->M;
    char *cur = scratch;
    const FC_T **srcs = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    const FC_T **wrows = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    int *toff = (int *)DFN(dw_carve)(&cur, (size_t)sw * KW * sizeof(ptrdiff_t));
    ptrdiff_t *toffK = (ptrdiff_t *)DFN(dw_carve)(&cur, (size_t)sw * KW * sizeof(ptrdiff_t));
    ptrdiff_t *twK = (ptrdiff_t *)DFN(dw_carve)(&cur, (size_t)sw * KW * sizeof(ptrdiff_t));
    int *cnt = (int *)DFN(dw_carve)(&cur, (size_t)sw * sizeof(int));
    FC_T *trow = M > 1 ? (FC_T *)DFN(dw_carve)(&cur, (size_t)W * K * sizeof(FC_T)) : NULL;
    const int nph = fc_min(sw, W);
    /* tap lists of each column phase: the kw whose dy column is an integer */
    for (int ph = 0; ph < nph; ph++) {
        int c0 = 0;
        for (int kw = 0; kw < KW; kw++) {
            const int num = ph + p->pw - kw * p->dw;
            if (((num % sw) + sw) % sw) continue;
            toff[ph * KW + c0] = num / sw;
            toffK[ph * KW + c0] = (ptrdiff_t)(num / sw) * K;
            twK[ph * KW + c0] = (ptrdiff_t)kw * K;
            c0++;
        }
        cnt[ph] = c0;
    }
    DFN(dw_job) jb;
    jb.K = K; jb.qs = 1; jb.Wsrc = p->OW; jb.src = srcs; jb.wrow = wrows; jb.bias = NULL;
    jb.ostep = (ptrdiff_t)sw * K;
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->H), ih = (int)(r - (long)n * p->H);
        int nr = 0;
        for (int kh = 0; kh < KH; kh++) {
            const int num = ih + p->ph - kh * p->dh;
            if (num < 0 || num % p->sh) continue;
            const int oh = num / p->sh;
            if (oh >= p->OH) continue;
            srcs[nr] = dy + ((ptrdiff_t)n * p->OH + oh) * p->OW * K;
            wrows[nr] = w + (ptrdiff_t)kh * KW * K;
            nr++;
        }
        jb.nr = nr;
        FC_T *orow = M == 1 ? dx + (ptrdiff_t)r * W * C : trow;
        for (int ph = 0; ph < nph; ph++) {
            jb.nt = cnt[ph];
            jb.toff = toff + ph * KW; jb.toffK = toffK + ph * KW; jb.twK = twK + ph * KW;
            jb.nj = (W - ph + sw - 1) / sw;
            jb.out = orow + (ptrdiff_t)ph * K;
            DFN(dw_run)(&jb);
        }
        if (M > 1) {
            FC_T *d = dx + (ptrdiff_t)r * W * C;
            const FC_T *t = trow;
            for (ptrdiff_t i = 0; i < (ptrdiff_t)W * C; i++) {
                FC_T s = t[0];
                for (int m = 1; m < M; m++) s += t[m];
                d[i] = s;
                t += M;
            }
        }
    }
}

/* ---- weight gradient ---- */

/* acc[i][0..VLEN) = sum_{ow in [o0, o1)} x[ow*sxK + offK[i]] * dy[ow*K], NT taps (a constant). */
static inline __attribute__((always_inline)) void
DFN(dw_wtile)(const int NT, const FC_T *xb, const ptrdiff_t *offK, const FC_T *dyb, int o0, int o1,
              ptrdiff_t sxK, ptrdiff_t K, FC_T *acc)
{
    const DV z = {0};
    DV a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z;
    const ptrdiff_t f0 = offK[0], f1 = NT > 1 ? offK[1] : 0, f2 = NT > 2 ? offK[2] : 0,
                    f3 = NT > 3 ? offK[3] : 0, f4 = NT > 4 ? offK[4] : 0, f5 = NT > 5 ? offK[5] : 0,
                    f6 = NT > 6 ? offK[6] : 0;
    const FC_T *xp = xb + (ptrdiff_t)o0 * sxK;
    const FC_T *dp = dyb + (ptrdiff_t)o0 * K;
    for (int ow = o0; ow < o1; ow++, xp += sxK, dp += K) {
        const DV d = DLD(dp);
        a0 += DLD(xp + f0) * d;
        if (NT > 1) a1 += DLD(xp + f1) * d;
        if (NT > 2) a2 += DLD(xp + f2) * d;
        if (NT > 3) a3 += DLD(xp + f3) * d;
        if (NT > 4) a4 += DLD(xp + f4) * d;
        if (NT > 5) a5 += DLD(xp + f5) * d;
        if (NT > 6) a6 += DLD(xp + f6) * d;
    }
    DST(acc, a0);
    if (NT > 1) DST(acc + FC_VLEN, a1);
    if (NT > 2) DST(acc + 2 * FC_VLEN, a2);
    if (NT > 3) DST(acc + 3 * FC_VLEN, a3);
    if (NT > 4) DST(acc + 4 * FC_VLEN, a4);
    if (NT > 5) DST(acc + 5 * FC_VLEN, a5);
    if (NT > 6) DST(acc + 6 * FC_VLEN, a6);
}

static void DFN(dw_wtile_any)(int nt, const FC_T *xb, const ptrdiff_t *offK, const FC_T *dyb, int o0, int o1,
                              ptrdiff_t sxK, ptrdiff_t K, FC_T *acc)
{
    switch (nt) {
    case 1: DFN(dw_wtile)(1, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    case 2: DFN(dw_wtile)(2, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    case 3: DFN(dw_wtile)(3, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    case 4: DFN(dw_wtile)(4, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    case 5: DFN(dw_wtile)(5, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    case 6: DFN(dw_wtile)(6, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    default: DFN(dw_wtile)(7, xb, offK, dyb, o0, o1, sxK, K, acc); break;
    }
}

/* dst[0..VLEN) += v, skipping the first lane0 lanes (they belong to the previous block). */
static inline void DFN(dw_add_lanes)(FC_T *dst, const FC_T *v, int lane0)
{
    if (lane0 == 0) {
        DST(dst, DLD(dst) + DLD(v));
    } else {
        for (int i = lane0; i < FC_VLEN; i++) dst[i] += v[i];
    }
}

/* Scalar weight gradient of one (dy row, x row) pair, for K < VLEN on the narrowest level. */
static void DFN(dw_wgrad_row_scalar)(const fc_dwp *p, const FC_T *xrow, const FC_T *dyrow, int kh, FC_T *dwp)
{
    const int K = p->K;
    for (int ow = 0; ow < p->OW; ow++)
        for (int kw = 0; kw < p->KW; kw++) {
            const int col = ow * p->sw - p->pw + kw * p->dw;
            if (col < 0 || col >= p->W) continue;
            FC_T *d = dwp + ((ptrdiff_t)kh * p->KW + kw) * K;
            for (int k = 0; k < K; k++) d[k] += xrow[(ptrdiff_t)col * K + k] * dyrow[(ptrdiff_t)ow * K + k];
        }
}

/* dy rows r = n*OH + oh in [r0, r1): dwp (KH*KW*K) and dbp (K) += their contributions. */
static void DFN(fc_dw_backward_weight_rows)(const fc_dwp *p, const FC_T *x, const FC_T *dy, long r0, long r1,
                                            FC_T *dwp, FC_T *dbp, char *scratch)
{
#ifdef DW_NARROW
    if (p->K < FC_VLEN) {
        DW_NARROW(fc_dw_backward_weight_rows)(p, x, dy, r0, r1, dwp, dbp, scratch);
        return;
    }
#endif
    const int KH = p->KH, KW = p->KW, K = p->K, OW = p->OW, sw = p->sw;
    const int nkb = (K + FC_VLEN - 1) / FC_VLEN;
    char *cur = scratch;
    ptrdiff_t *offK = (ptrdiff_t *)DFN(dw_carve)(&cur, KW * sizeof(ptrdiff_t));
    FC_T *acc = (FC_T *)DFN(dw_carve)(&cur, (size_t)KW * 16 * sizeof(FC_T));
    DFN(dw_cache) cc;
    if (p->M > 1) DFN(dw_cache_init)(p, &cur, &cc);
    for (int kw = 0; kw < KW; kw++) offK[kw] = ((ptrdiff_t)kw * p->dw - p->pw) * K;
    /* output columns whose every tap is inside the row */
    int olo = fc_min(OW, fc_ceildiv(p->pw, sw));
    int ohi = fc_min(OW, fc_floordiv(p->W - 1 + p->pw - (KW - 1) * p->dw, sw) + 1);
    if (ohi < olo) ohi = olo;
    const ptrdiff_t sxK = (ptrdiff_t)sw * K;
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (long)n * p->OH);
        const FC_T *dyrow = dy + (ptrdiff_t)r * OW * K;
        if (K < FC_VLEN) { /* narrowest level, tiny K */
            for (int ow = 0; ow < OW; ow++)
                for (int k = 0; k < K; k++) dbp[k] += dyrow[(ptrdiff_t)ow * K + k];
        } else {
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN), lane0 = kb * FC_VLEN - k0;
                const DV z = {0};
                DV s0 = z, s1 = z;
                int ow = 0;
                for (; ow + 1 < OW; ow += 2) {
                    s0 += DLD(dyrow + (ptrdiff_t)ow * K + k0);
                    s1 += DLD(dyrow + (ptrdiff_t)(ow + 1) * K + k0);
                }
                if (ow < OW) s0 += DLD(dyrow + (ptrdiff_t)ow * K + k0);
                FC_T tmp[FC_VLEN];
                DST(tmp, s0 + s1);
                DFN(dw_add_lanes)(dbp + k0, tmp, lane0);
            }
        }
        for (int kh = 0; kh < KH; kh++) {
            const int ih = oh * p->sh - p->ph + kh * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            const FC_T *xrow = p->M == 1 ? x + ((ptrdiff_t)n * p->H + ih) * p->W * K
                                         : DFN(dw_cache_get)(p, x, &cc, n, ih, r);
            if (K < FC_VLEN) {
                DFN(dw_wgrad_row_scalar)(p, xrow, dyrow, kh, dwp);
                continue;
            }
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN), lane0 = kb * FC_VLEN - k0;
                for (int g = 0; g < KW; g += 7)
                    DFN(dw_wtile_any)(fc_min(7, KW - g), xrow + k0, offK + g, dyrow + k0, olo, ohi, sxK, K,
                                      acc + (ptrdiff_t)g * FC_VLEN);
                for (int ow = 0; ow < OW; ow++) {
                    if (ow == olo) ow = ohi;
                    if (ow >= OW) break;
                    const DV d = DLD(dyrow + (ptrdiff_t)ow * K + k0);
                    for (int kw = 0; kw < KW; kw++) {
                        const int col = ow * sw - p->pw + kw * p->dw;
                        if (col < 0 || col >= p->W) continue;
                        FC_T *a = acc + (ptrdiff_t)kw * FC_VLEN;
                        DST(a, DLD(a) + DLD(xrow + (ptrdiff_t)col * K + k0) * d);
                    }
                }
                for (int kw = 0; kw < KW; kw++)
                    DFN(dw_add_lanes)(dwp + ((ptrdiff_t)kh * KW + kw) * K + k0, acc + (ptrdiff_t)kw * FC_VLEN, lane0);
            }
        }
    }
}

#undef DW_CAT_
#undef DW_CAT
#undef DFN
#undef DV
#undef DVU
#undef DLD
#undef DST
#undef DW_RB
