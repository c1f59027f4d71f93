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
 * Register tiles (DW_RB = 8 output pixels x one vector of channels, all channel blocks per tile):
 *   dw_ctile  (taps at consecutive source columns, column step 1 or 2: every forward with
 *             dilation 1 and every dx phase): each source column is loaded once for all the
 *             (pixel, tap) pairs that read it and a kernel row's weights stay in registers.
 *             AVX2 budget: 8 accumulators + <= 7 weights + 1 source = 16 ymm; AVX-512 runs two
 *             channel blocks at once for up to 5 taps (16 accumulators, twice the independent FMA
 *             chains).  On this class of machine loads, not FMAs, bound the simpler tile (one
 *             load per FMA).
 *   dw_tile   (any taps): one weight load feeds 8 FMAs with memory operands.
 * The last tile of a row is shifted back to end at the row's end (it rewrites identical values)
 * instead of running a short, latency-bound tile; dw_ctile's tail is 4, 6 or 8 pixels wide, the
 * smallest that covers the rest (widths 28 and 14 no longer compute 32 and 16 pixels).  Edge tiles (taps in the padding) read through
 * a table of column pointers whose padding entries point at a row of zeros; rows too short for
 * one tile write their missing pixels to a dummy row.  Inputs the next row will add are
 * prefetched while the current row computes, and large outputs are written with non-temporal
 * stores (through an L1 tile buffer so every store covers whole lines in order).
 * Channel tails: the last block is shifted back to K - VLEN (it overlaps the previous one and
 * rewrites identical values); K < VLEN goes to the next narrower level (or scalar code).
 *
 * Depth multiplier M > 1: the input rows are expanded to K channels (e[iw*K + c*M + m] =
 * x[iw*C + c]) in a small per-thread cache of KH rows, so the same K-channel code runs;
 * dx is computed in K space into a scratch row and then summed over m.
 * Small maps (dw_pads): the same cache also holds rows with zero columns left and right, in
 * 64-byte-aligned slots, and the forward and the weight gradient read every input row from it
 * (M = 1: a plain copy): every tile is an interior tile, every weight-gradient column an
 * interior column, and loads are aligned whatever the caller's x.  Used where the edge columns
 * are a large share of the work and the rows are small (see dw_pads for the measured limits).
 *
 * Weight gradient: per dy row, the taps of up to 3 kernel rows x 7 columns (<= 10 accumulators)
 * are reduced over the interior output columns (all of them on padded rows) in chunks of
 * DW_WCHUNK columns (all channel blocks per chunk, so the chunk's x and dy pixels stay in L1);
 * with dilation 1 the tile shares each source-column load between 4 output columns.  Edge
 * columns are added with bounds checks
 * and the sums go to the caller's per-thread partial dw (lanes of a shifted tail block that
 * belong to the previous block are skipped).
 */
#define DW_CAT_(a, b) a##b
#define DW_CAT(a, b) DW_CAT_(a, b)
#define DFN(name) DW_CAT(name, FC_SFX)
#define DV DFN(fc_dwv)
#define DVU DFN(fc_dwvu)
#define DLD(p) (*(const DVU *)(p))
#define DST(p, v) (*(DVU *)(p) = (v))
#define DW_RB 8
#define DW_WCHUNK 32 /* output columns per weight-gradient chunk */
/* dw_ctile runs two channel blocks at once (32 vector registers) */
#define DW_KB2 (FC_VLEN * sizeof(FC_T) >= 64)
/* Largest zero-padded row cache (KH rows) the weight gradient and the forward use: the forward's
 * tiles read the rows KH times over and lose (256 channels @14: -20 %) once the cache and the
 * row being copied no longer fit L1 together; the weight gradient gains up to 512 KiB. */
#define DW_PAD_WGRAD_BYTES (512 << 10)
#define DW_PAD_FWD_BYTES (24 << 10)

_Static_assert(DW_RB == 8, "dw_tile and dw_ctile hold exactly 8 pixel accumulators");
_Static_assert(DW_WCHUNK % 4 == 0, "dw_wtile_c steps 4 output columns at a time");

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
    const char *pf;          /* memory the next job will read (prefetched across this one's tiles) */
    size_t pflen;
    FC_T *sbuf;              /* non-NULL: stream the output (non-temporal stores) through this
                                DW_RB*K buffer; out is vector-aligned, ostep == K, K % VLEN == 0 */
} DFN(dw_job);

/* Prefetch [pf + lo, pf + hi) into the cache, one request per 64-byte line. */
static inline void DFN(dw_prefetch)(const char *pf, size_t lo, size_t hi)
{
    for (size_t o = lo & ~(size_t)63; o < hi; o += 64) __builtin_prefetch(pf + o, 0, 3);
}

/* Region of the input row(s) needed next but not now: rows (lo, hi] of the source tensor. */
static inline void DFN(dw_next_rows)(const FC_T *base, ptrdiff_t rowlen, int cur_last, int next_last, int nrows,
                                    const char **pf, size_t *pflen)
{
    *pf = NULL;
    *pflen = 0;
    if (next_last <= cur_last) return;
    int a = cur_last + 1;
    if (a < 0) a = 0;
    if (next_last >= nrows) next_last = nrows - 1;
    if (next_last < a) return;
    *pf = (const char *)(base + (ptrdiff_t)a * rowlen);
    *pflen = (size_t)(next_last - a + 1) * rowlen * sizeof(FC_T);
}

/* RB output pixels j0 .. j0+RB-1, channels k0 .. k0+VLEN-1, every tap read from src (whose
 * column 0 is source column cbase).  RB is a constant after inlining. */
static inline __attribute__((always_inline)) void
DFN(dw_tile)(const int RB, const DFN(dw_job) *jb, const FC_T *const *src, int cbase, int j0, int k0)
{
    const ptrdiff_t K = jb->K, ps = (ptrdiff_t)jb->qs * K;
    const DV z = {0};
    DV b = z;
    if (jb->bias) b = DLD(jb->bias + k0);
    DV a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b;
    const int nr = jb->nr, nt = jb->nt;
    const ptrdiff_t c0 = ((ptrdiff_t)j0 * jb->qs - cbase) * K + k0;
    for (int r = 0; r < nr; r++) {
        const FC_T *s = src[r] + c0;
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
            if (RB > 6) a6 += DLD(q + 6 * ps) * wv;
            if (RB > 7) a7 += DLD(q + 7 * ps) * wv;
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
    if (RB > 6) DST(o + 6 * os, a6);
    if (RB > 7) DST(o + 7 * os, a7);
}

/* NB (1 or 2) channel blocks kb, kb+1 of one dw_ctile (see there). */
static inline __attribute__((always_inline)) void
DFN(dw_ctile_blk)(const int NB, const int RB, const int NT, const int QS, const int IND, const ptrdiff_t K, const int nr,
                  const FC_T *const *wrow, const FC_T *bias, const ptrdiff_t *twK, const FC_T *const *colp, int NC,
                  FC_T *const *op, int kb)
{
    ptrdiff_t k0[2];
#pragma GCC unroll 2
    for (int u = 0; u < NB; u++) k0[u] = fc_min((kb + u) * FC_VLEN, (int)K - FC_VLEN);
    const DV z = {0};
    DV acc[2][DW_RB];
#pragma GCC unroll 2
    for (int u = 0; u < NB; u++) {
        DV b = z;
        if (bias) b = DLD(bias + k0[u]);
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) acc[u][i] = b;
    }
    for (int r = 0; r < nr; r++) {
        DV wv[2][7];
#pragma GCC unroll 2
        for (int u = 0; u < NB; u++)
#pragma GCC unroll 7
            for (int t = 0; t < NT; t++) wv[u][t] = DLD(wrow[r] + k0[u] + twK[t]);
        const FC_T *s = IND ? NULL : colp[r];
        const FC_T *const *cp = IND ? colp + (ptrdiff_t)r * NC : NULL;
#pragma GCC unroll 32
        for (int c = 0; c < (RB - 1) * QS + NT; c++) {
            DV xv[2];
            if (IND) {
#pragma GCC unroll 2
                for (int u = 0; u < NB; u++) xv[u] = DLD(cp[c] + k0[u]);
            } else {
                /* one pointer stepped by K (the empty asm keeps GCC from turning it back into
                 * s + c*K: one register per column, spilled for 5+ taps; 26 % slower) */
#pragma GCC unroll 2
                for (int u = 0; u < NB; u++) xv[u] = DLD(s + k0[u]);
                s += K;
                __asm__("" : "+r"(s));
            }
#pragma GCC unroll 7
            for (int t = 0; t < NT; t++) {
                const int d = c - t;
                if (d >= 0 && d % QS == 0 && d / QS < RB)
#pragma GCC unroll 2
                    for (int u = 0; u < NB; u++) acc[u][d / QS] += xv[u] * wv[u][t];
            }
        }
    }
#pragma GCC unroll 2
    for (int u = 0; u < NB; u++)
#pragma GCC unroll 8
        for (int i = 0; i < RB; i++) DST(op[i] + k0[u], acc[u][i]);
}

/* Specialised tile for NT taps at consecutive source columns (toff[t] = toff[0] + t: forward with
 * dilation 1, or an input-gradient phase) and column step QS (1 or 2), RB pixels (DW_RB, or 4 or
 * 6 for a row's tail), all channel blocks: every source column is loaded once and feeds all
 * (pixel, tap) pairs that read it, and the NT weight vectors of a kernel row stay in registers, so
 * a kernel row costs ((RB-1)*QS + NT) + NT loads per RB*NT FMAs (the generic tile needs one load
 * per FMA).
 * Registers: 8 accumulators + NT <= 7 weights + 1 source vector <= 16.
 * IND = 0: column c of row r is at rowp[r] + c*K (the tile lies inside the source row);
 * IND = 1: at colp[r*NC + c] (edge tiles: columns in the padding point at a row of zeros).
 * Output pixel i goes to outp[i] (a dummy row for pixels past the end of a short row).
 * Everything the loops need is copied to locals first: the vector stores are may_alias and
 * would otherwise force reloads of the job's fields. */
static inline __attribute__((always_inline)) void
DFN(dw_ctile)(const int RB, const int NT, const int QS, const int IND, const DFN(dw_job) *jb,
              const FC_T *const *colp, int NC, FC_T *const *outp)
{
    const ptrdiff_t K = jb->K;
    const int nr = jb->nr, nkb = (jb->K + FC_VLEN - 1) / FC_VLEN;
    const FC_T *const *wrow = jb->wrow;
    const FC_T *bias = jb->bias;
    ptrdiff_t twK[7];
#pragma GCC unroll 7
    for (int t = 0; t < NT; t++) twK[t] = jb->twK[t];
    FC_T *op[DW_RB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) op[i] = outp[i];
    int kb = 0;
    /* two channel blocks at once where registers allow (AVX-512: 2*8 accumulators + 2*NT weights
     * + 2 sources <= 28 of 32 for NT <= 5): twice the independent FMA chains */
    if (DW_KB2 && NT <= 5)
        for (; kb + 1 < nkb; kb += 2) DFN(dw_ctile_blk)(2, RB, NT, QS, IND, K, nr, wrow, bias, twK, colp, NC, op, kb);
    for (; kb < nkb; kb++) DFN(dw_ctile_blk)(1, RB, NT, QS, IND, K, nr, wrow, bias, twK, colp, NC, op, kb);
}

#define DW_CT(NT_, QS_)                                                                          \
    static void DFN(dw_ctiles_##NT_##_##QS_)(const DFN(dw_job) *jb, int ind, const FC_T *const *colp, int NC, \
                                              FC_T *const *outp, int rb)                         \
    {                                                                                            \
        if (rb == 4) {                                                                           \
            if (ind) DFN(dw_ctile)(4, NT_, QS_, 1, jb, colp, NC, outp);                          \
            else DFN(dw_ctile)(4, NT_, QS_, 0, jb, colp, NC, outp);                              \
        } else if (rb == 6) {                                                                    \
            if (ind) DFN(dw_ctile)(6, NT_, QS_, 1, jb, colp, NC, outp);                          \
            else DFN(dw_ctile)(6, NT_, QS_, 0, jb, colp, NC, outp);                              \
        } else {                                                                                 \
            if (ind) DFN(dw_ctile)(DW_RB, NT_, QS_, 1, jb, colp, NC, outp);                      \
            else DFN(dw_ctile)(DW_RB, NT_, QS_, 0, jb, colp, NC, outp);                          \
        }                                                                                        \
    }
DW_CT(1, 1) DW_CT(2, 1) DW_CT(3, 1) DW_CT(4, 1) DW_CT(5, 1) DW_CT(6, 1) DW_CT(7, 1)
DW_CT(1, 2) DW_CT(2, 2) DW_CT(3, 2) DW_CT(4, 2) DW_CT(5, 2) DW_CT(6, 2) DW_CT(7, 2)
#undef DW_CT

typedef void (*DFN(dw_ctiles_fn))(const DFN(dw_job) *, int, const FC_T *const *, int, FC_T *const *, int);

/* The specialised tile for this job, or NULL (taps not consecutive, more than 7, or QS > 2). */
static DFN(dw_ctiles_fn) DFN(dw_pick_ctiles)(const DFN(dw_job) *jb)
{
    static const DFN(dw_ctiles_fn) tab[2][7] = {
        {DFN(dw_ctiles_1_1), DFN(dw_ctiles_2_1), DFN(dw_ctiles_3_1), DFN(dw_ctiles_4_1), DFN(dw_ctiles_5_1),
         DFN(dw_ctiles_6_1), DFN(dw_ctiles_7_1)},
        {DFN(dw_ctiles_1_2), DFN(dw_ctiles_2_2), DFN(dw_ctiles_3_2), DFN(dw_ctiles_4_2), DFN(dw_ctiles_5_2),
         DFN(dw_ctiles_6_2), DFN(dw_ctiles_7_2)}};
    if (jb->nt < 1 || jb->nt > 7 || jb->qs < 1 || jb->qs > 2) return NULL;
    for (int t = 1; t < jb->nt; t++)
        if (jb->toff[t] != jb->toff[0] + t) return NULL;
    return tab[jb->qs - 1][jb->nt - 1];
}

/* Run a job with the specialised tile: DW_RB-pixel tiles over the row, then one tail tile of 4, 6
 * or DW_RB pixels (the smallest that covers the nj % DW_RB pixels left) shifted back to end at the
 * row's end: it rewrites a few identical outputs instead of running a short, latency-bound tile,
 * and the narrower tails compute no more than they must for widths 28 and 14 (an 8-pixel tail did
 * 32 and 16 pixels' work).  Tiles inside the source row read it directly; edge tiles read through
 * a table of column pointers in which padding columns point at zrow (K zeros); pixels past the
 * end of a row shorter than its tile are written to dummy (K values).  colp: KH*NC pointers. */
static void DFN(dw_run_ct)(const DFN(dw_job) *jb, DFN(dw_ctiles_fn) ct, const FC_T *zrow, FC_T *dummy,
                           const FC_T **colp)
{
    const int nj = jb->nj, qs = jb->qs, K = jb->K, nr = jb->nr, Wsrc = jb->Wsrc, t0 = jb->toff[0];
    const int rem = nj < DW_RB ? nj : nj % DW_RB;
    const int tail = rem == 0 ? 0 : rem <= 4 ? 4 : rem <= 6 ? 6 : DW_RB;
    const int nmain = nj / DW_RB, ntiles = nmain + (tail > 0);
    FC_T *outp[DW_RB];
    const size_t pfper = jb->pf && ntiles ? ((jb->pflen + ntiles - 1) / ntiles + 63) & ~(size_t)63 : 0;
    size_t pfdone = 0;
    for (int t = 0; t < ntiles; t++) {
        if (pfdone < jb->pflen) {
            DFN(dw_prefetch)(jb->pf, pfdone, pfdone + pfper < jb->pflen ? pfdone + pfper : jb->pflen);
            pfdone += pfper;
        }
        const int rb = t < nmain ? DW_RB : tail;
        const int j0 = t < nmain ? t * DW_RB : fc_max(0, nj - rb);
        const int NC = (rb - 1) * qs + jb->nt;
        for (int i = 0; i < rb; i++) outp[i] = j0 + i < nj ? jb->out + (ptrdiff_t)(j0 + i) * jb->ostep : dummy;
        const int stream = jb->sbuf && nj >= rb;
        if (stream)
            for (int i = 0; i < rb; i++) outp[i] = jb->sbuf + (ptrdiff_t)i * K;
        const int cfirst = j0 * qs + t0;
        if (cfirst >= 0 && cfirst + NC <= Wsrc) {
            for (int r = 0; r < nr; r++) colp[r] = jb->src[r] + (ptrdiff_t)cfirst * K;
            ct(jb, 0, colp, NC, outp, rb);
        } else {
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < NC; c++) {
                    const int col = cfirst + c;
                    colp[(ptrdiff_t)r * NC + c] = (col >= 0 && col < Wsrc) ? jb->src[r] + (ptrdiff_t)col * K : zrow;
                }
            ct(jb, 1, colp, NC, outp, rb);
        }
#ifdef FC_NT
        if (stream) { /* rb contiguous output pixels */
            FC_T *o = jb->out + (ptrdiff_t)j0 * K;
            for (ptrdiff_t i = 0; i < (ptrdiff_t)rb * K; i += FC_VLEN) FC_NT(o + i, DLD(jb->sbuf + i));
        }
#endif
    }
}

/* Pixels j0 .. j0+n-1 (1 <= n <= DW_RB) for every channel block. */
static void DFN(dw_tiles)(int n, const DFN(dw_job) *jb, const FC_T *const *src, int cbase, int j0)
{
    const int K = jb->K, nkb = (K + FC_VLEN - 1) / FC_VLEN;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN);
        switch (n) {
        case 1: DFN(dw_tile)(1, jb, src, cbase, j0, k0); break;
        case 2: DFN(dw_tile)(2, jb, src, cbase, j0, k0); break;
        case 3: DFN(dw_tile)(3, jb, src, cbase, j0, k0); break;
        case 4: DFN(dw_tile)(4, jb, src, cbase, j0, k0); break;
        case 5: DFN(dw_tile)(5, jb, src, cbase, j0, k0); break;
        case 6: DFN(dw_tile)(6, jb, src, cbase, j0, k0); break;
        case 7: DFN(dw_tile)(7, jb, src, cbase, j0, k0); break;
        default: DFN(dw_tile)(8, jb, src, cbase, j0, k0); break;
        }
    }
}

/* Source columns dw_edge copies per row at most: DW_RB - 1 strides (only while a stride is shorter
 * than the window span; wider strides go one pixel at a time) plus one window plus one.  An input-
 * gradient job (qs = 1, span <= the forward's) needs no more. */
static inline size_t DFN(dw_edge_cols)(const fc_dwp *p)
{
    const size_t span = (size_t)(p->KW - 1) * p->dw + 1, sw = (size_t)p->sw;
    return (DW_RB - 1) * (sw < span ? sw : span) + span + 1;
}

/* Edge pixels [j0, j0+n) whose taps leave the source row: copy the source columns they read
 * (zeros outside [0, Wsrc)) into a small buffer per row, then run the normal tile on it. */
static void DFN(dw_edge)(const DFN(dw_job) *jb, int j0, int n, int tmin, int tmax, FC_T *ebuf,
                         const FC_T **esrc)
{
    if (n > 1 && jb->qs > tmax - tmin + 1) {
        /* windows a stride apart do not overlap: one pixel at a time copies only the columns read
         * and keeps ebuf at one window (DW_EDGE_COLS), not DW_RB strides (60 GB for a stride of 2**24) */
        for (int i = 0; i < n; i++) DFN(dw_edge)(jb, j0 + i, 1, tmin, tmax, ebuf, esrc);
        return;
    }
    const int K = jb->K;
    const int c0 = j0 * jb->qs + tmin, c1 = (j0 + n - 1) * jb->qs + tmax + 1;
    const size_t rowb = (size_t)(c1 - c0) * K;
    for (int r = 0; r < jb->nr; r++) {
        FC_T *e = ebuf + r * rowb;
        for (int c = c0; c < c1; c++, e += K) {
            if (c < 0 || c >= jb->Wsrc) memset(e, 0, (size_t)K * sizeof(FC_T));
            else memcpy(e, jb->src[r] + (ptrdiff_t)c * K, (size_t)K * sizeof(FC_T));
        }
        esrc[r] = ebuf + r * rowb;
    }
    DFN(dw_tiles)(n, jb, esrc, c0, j0);
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

/* Run a row job: interior pixels in DW_RB tiles read the source directly (the last tile is
 * shifted back to end at the interior's end, rewriting a few identical outputs rather than
 * running a latency-bound short tile); edge pixels go through dw_edge.
 * ebuf: scratch for KH rows of dw_edge_cols(p)*K values; esrc: KH pointers. */
static void DFN(dw_run)(const DFN(dw_job) *jb, FC_T *ebuf, const FC_T **esrc, const FC_T *zrow, FC_T *dummy,
                        const FC_T **colp)
{
    const int nj = jb->nj;
    if (jb->K < FC_VLEN) {
        DFN(dw_run_scalar)(jb);
        return;
    }
    if (jb->nr == 0 || jb->nt == 0) { /* no taps: bias (or zeros) everywhere */
        for (int j = 0; j < nj; j += DW_RB) DFN(dw_tiles)(fc_min(DW_RB, nj - j), jb, jb->src, 0, j);
        return;
    }
    DFN(dw_ctiles_fn) ct = DFN(dw_pick_ctiles)(jb);
    if (ct) {
        DFN(dw_run_ct)(jb, ct, zrow, dummy, colp);
        return;
    }
    int tmin = jb->toff[0], tmax = jb->toff[0];
    for (int t = 1; t < jb->nt; t++) {
        tmin = fc_min(tmin, jb->toff[t]);
        tmax = fc_max(tmax, jb->toff[t]);
    }
    const int jlo = fc_min(nj, fc_max(0, fc_ceildiv(-tmin, jb->qs)));
    int jhi = fc_min(nj, fc_floordiv(jb->Wsrc - 1 - tmax, jb->qs) + 1);
    if (jhi < jlo) jhi = jlo;
    for (int j = 0; j < jlo; j += DW_RB)
        DFN(dw_edge)(jb, j, fc_min(DW_RB, jlo - j), tmin, tmax, ebuf, esrc);
    const int nin = jhi - jlo;
    if (nin >= DW_RB) {
        for (int j = jlo; j < jhi; j += DW_RB)
            DFN(dw_tiles)(DW_RB, jb, jb->src, 0, fc_min(j, jhi - DW_RB));
    } else if (nin > 0) {
        DFN(dw_tiles)(nin, jb, jb->src, 0, jlo);
    }
    for (int j = jhi; j < nj; j += DW_RB)
        DFN(dw_edge)(jb, j, fc_min(DW_RB, nj - j), tmin, tmax, ebuf, esrc);
}

/* ---- scratch carving and the expanded-row cache (M > 1) ---- */

static inline char *DFN(dw_carve)(char **cur, size_t bytes)
{
    char *r = *cur;
    *cur += (bytes + 63) & ~(size_t)63;
    return r;
}

typedef struct {
    ptrdiff_t *tag, *stamp;
    FC_T *rows;       /* KH slots of `stride` elements: pl zero columns, W columns, pr zero columns */
    ptrdiff_t stride; /* elements between slots (a multiple of 16: slots stay 64-byte aligned) */
    int pl, pr;
} DFN(dw_cache);

/* Zero columns the row cache adds left (pl) and right (pr) of each input row so that every
 * tile of the forward pass and every column of the weight gradient reads inside the row: no
 * edge tiles, no bounds checks, and (the slots being 64-byte aligned, K % VLEN == 0) aligned
 * loads whatever the caller's x is.  The right side covers the last forward tile of DW_RB
 * pixels even when OW < DW_RB.  Returns 0 (no padding) when the pads would be large (a
 * padding or stride far past the kernel): those keep the edge paths. */
static int DFN(dw_pads)(const fc_dwp *p, int *pl, int *pr, size_t maxbytes)
{
    *pl = *pr = 0;
    const ptrdiff_t span = (ptrdiff_t)(fc_max(p->OW, DW_RB) - 1) * p->sw + (ptrdiff_t)(p->KW - 1) * p->dw + 1;
    const ptrdiff_t right = span - p->pw - p->W;
    if (p->pw > 64 || right > 128) return 0;
    /* worth it when the edge columns (taps in the padding) are a large enough share of the
     * work: the copy costs sh*sw input vectors per output vector, the edges save bounds checks
     * and short / indirect tiles on KH*KW taps (measured: 3x3 s1 @28 and @7, 5x5 s2 @14 gain
     * 10-40 %; 3x3 s2 @56, 5x5 s2 @56 lose 5-25 %) */
    const int olo = fc_min(p->OW, fc_ceildiv(p->pw, p->sw));
    int ohi = fc_min(p->OW, fc_floordiv(p->W - 1 + p->pw - (p->KW - 1) * p->dw, p->sw) + 1);
    if (ohi < olo) ohi = olo;
    const ptrdiff_t edges = (ptrdiff_t)p->OW - (ohi - olo);
    if (edges * p->KH * p->KW * 2 < (ptrdiff_t)p->OW * p->sh * p->sw) return 0;
    const int l = p->pw, r = right > 0 ? (int)right : 0;
    if ((size_t)p->KH * ((size_t)l + p->W + r) * p->K * sizeof(FC_T) > maxbytes) return 0;
    *pl = l;
    *pr = r;
    return 1;
}

static ptrdiff_t DFN(dw_cache_stride)(const fc_dwp *p, int pl, int pr)
{
    return (((ptrdiff_t)pl + p->W + pr) * p->K + 15) & ~(ptrdiff_t)15;
}

static size_t DFN(dw_cache_bytes)(const fc_dwp *p, int pl, int pr)
{
    return (size_t)p->KH * DFN(dw_cache_stride)(p, pl, pr) * sizeof(FC_T);
}

static void DFN(dw_cache_init)(const fc_dwp *p, char **cur, DFN(dw_cache) *cc, int pl, int pr)
{
    cc->tag = (ptrdiff_t *)DFN(dw_carve)(cur, (size_t)p->KH * sizeof(ptrdiff_t));
    cc->stamp = (ptrdiff_t *)DFN(dw_carve)(cur, (size_t)p->KH * sizeof(ptrdiff_t));
    cc->stride = DFN(dw_cache_stride)(p, pl, pr);
    cc->rows = (FC_T *)DFN(dw_carve)(cur, DFN(dw_cache_bytes)(p, pl, pr));
    cc->pl = pl;
    cc->pr = pr;
    for (int i = 0; i < p->KH; i++) {
        cc->tag[i] = cc->stamp[i] = -1;
        FC_T *e = cc->rows + i * cc->stride;
        /* the pads are written once here; rows only ever overwrite their W middle columns */
        if (pl) memset(e, 0, (size_t)pl * p->K * sizeof(FC_T));
        if (pr) memset(e + ((ptrdiff_t)pl + p->W) * p->K, 0, (size_t)pr * p->K * sizeof(FC_T));
    }
}

/* Input row (n, ih) with each channel repeated M times, between the cache's zero pads; returns
 * the slot's first column (input column -pl).  stamp = the output row asking, so rows needed by
 * the same output row are never evicted by each other (there are KH slots). */
static const FC_T *DFN(dw_cache_get)(const fc_dwp *p, const FC_T *x, DFN(dw_cache) *cc, int n, int ih, ptrdiff_t stamp)
{
    const ptrdiff_t tag = (ptrdiff_t)n * p->H + ih;
    int slot = -1;
    for (int i = 0; i < p->KH; i++)
        if (cc->tag[i] == tag) { slot = i; break; }
    if (slot < 0) {
        for (int i = 0; i < p->KH; i++)
            if (cc->stamp[i] != stamp) { slot = i; break; }
        const FC_T *xs = x + (ptrdiff_t)tag * p->W * p->C;
        FC_T *e = cc->rows + slot * cc->stride + (ptrdiff_t)cc->pl * p->K;
        const int M = p->M;
        if (M == 1) { /* a vector loop: glibc's memcpy (rep movsb) is slow here from unaligned x */
            const ptrdiff_t len = (ptrdiff_t)p->W * p->C;
            ptrdiff_t i = 0;
            for (; i + 4 * FC_VLEN <= len; i += 4 * FC_VLEN) {
                const DV v0 = DLD(xs + i), v1 = DLD(xs + i + FC_VLEN), v2 = DLD(xs + i + 2 * FC_VLEN),
                         v3 = DLD(xs + i + 3 * FC_VLEN);
                DST(e + i, v0);
                DST(e + i + FC_VLEN, v1);
                DST(e + i + 2 * FC_VLEN, v2);
                DST(e + i + 3 * FC_VLEN, v3);
            }
            for (; i < len; i++) e[i] = xs[i];
        } else {
            for (ptrdiff_t i = 0; i < (ptrdiff_t)p->W * p->C; i++) {
                const FC_T v = xs[i];
                for (int m = 0; m < M; m++) *e++ = v;
            }
        }
        cc->tag[slot] = tag;
    }
    cc->stamp[slot] = stamp;
    return cc->rows + slot * cc->stride;
}

/* Per-thread scratch of the forward (backward = 0) or of the backward blocks (1): the row cache
 * is sized by the pass's own padding rule (the forward's is smaller, often none). */
static size_t DFN(fc_dw_scratch_bytes)(const fc_dwp *p, int backward)
{
    const size_t KH = (size_t)p->KH, KW = (size_t)p->KW;
    const size_t nph = (size_t)fc_min(p->sw, p->W); /* input-gradient column phases */
    size_t b = 2 * ((KH * sizeof(void *) + 63) & ~(size_t)63);        /* row lists */
    b += 3 * ((KW * sizeof(ptrdiff_t) + 63) & ~(size_t)63);           /* tap lists (all phases: KW taps) */
    b += ((nph + 1) * sizeof(int) + 63) & ~(size_t)63;                 /* first tap of each phase */
    b += 2 * ((KH * sizeof(ptrdiff_t) + 63) & ~(size_t)63);           /* cache tags */
    b += (((size_t)p->K + 16) * KH * KW * sizeof(FC_T) + 63) & ~(size_t)63; /* dw accumulators */
    b += 2 * ((KH * sizeof(void *) + 63) & ~(size_t)63);              /* edge / tap row pointers */
    b += (KH * DFN(dw_edge_cols)(p) * p->K * sizeof(FC_T) + 63) & ~(size_t)63; /* edge buffers */
    b += 2 * (((size_t)p->K * sizeof(FC_T) + 63) & ~(size_t)63);      /* zero row, dummy row */
    b += ((size_t)DW_RB * p->K * sizeof(FC_T) + 63) & ~(size_t)63;     /* streaming buffer */
    b += (KH * ((DW_RB - 1) * 2 + 7) * sizeof(void *) + 63) & ~(size_t)63; /* column pointers */
    b += 64;
    b += ((size_t)p->W * p->K * sizeof(FC_T) + 63) & ~(size_t)63;     /* dx row (K space / streamed) */
    {   /* row cache: expanded (M > 1) and / or zero-padded rows */
        int pl, pr;
        const int pad = DFN(dw_pads)(p, &pl, &pr, backward ? DW_PAD_WGRAD_BYTES : DW_PAD_FWD_BYTES);
        if (pad || p->M > 1) b += (DFN(dw_cache_bytes)(p, pl, pr) + 63) & ~(size_t)63;
    }
    return b;
}

/* ---- forward: output rows r = n*OH + oh in [r0, r1) ---- */
static void DFN(fc_dw_forward_rows)(const fc_dwp *p, const FC_T *x, const FC_T *w, const FC_T *bias, FC_T *y,
                                    ptrdiff_t r0, ptrdiff_t r1, char *scratch)
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
    const FC_T **esrc = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    FC_T *ebuf = (FC_T *)DFN(dw_carve)(&cur, KH * DFN(dw_edge_cols)(p) * K * sizeof(FC_T));
    FC_T *zrow = (FC_T *)DFN(dw_carve)(&cur, (size_t)K * sizeof(FC_T));
    FC_T *dummy = (FC_T *)DFN(dw_carve)(&cur, (size_t)K * sizeof(FC_T));
    const FC_T **colp = (const FC_T **)DFN(dw_carve)(&cur, (size_t)KH * ((DW_RB - 1) * 2 + 7) * sizeof(void *));
    memset(zrow, 0, (size_t)K * sizeof(FC_T));
    FC_T *sbuf = (FC_T *)DFN(dw_carve)(&cur, (size_t)DW_RB * K * sizeof(FC_T));
    (void)sbuf;
    /* pad: read every input row from the zero-padded, aligned row cache (columns shifted by pl) */
    int pl, pr;
    const int pad = DFN(dw_pads)(p, &pl, &pr, DW_PAD_FWD_BYTES);
    if (!pad) pl = pr = 0;
    DFN(dw_cache) cc;
    if (pad || p->M > 1) DFN(dw_cache_init)(p, &cur, &cc, pl, pr);
    for (int kw = 0; kw < KW; kw++) {
        toff[kw] = kw * p->dw - p->pw + pl;
        toffK[kw] = (ptrdiff_t)toff[kw] * K;
        twK[kw] = (ptrdiff_t)kw * K;
    }
    DFN(dw_job) jb;
    jb.K = K; jb.nt = KW; jb.qs = p->sw; jb.Wsrc = pl + p->W + pr; jb.nj = p->OW;
    jb.src = srcs; jb.wrow = wrows; jb.toff = toff; jb.toffK = toffK; jb.twK = twK;
    jb.ostep = K; jb.bias = bias;
    jb.sbuf = NULL;
#ifdef FC_NT
    if (p->stream && K % FC_VLEN == 0) jb.sbuf = sbuf;
#endif
    for (ptrdiff_t r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (ptrdiff_t)n * p->OH);
        int nr = 0;
        for (int kh = 0; kh < KH; kh++) {
            const int ih = oh * p->sh - p->ph + kh * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            srcs[nr] = p->M == 1 && !pad ? x + ((ptrdiff_t)n * p->H + ih) * p->W * K
                                         : DFN(dw_cache_get)(p, x, &cc, n, ih, r);
            wrows[nr] = w + (ptrdiff_t)kh * KW * K;
            nr++;
        }
        jb.nr = nr;
        jb.out = y + (ptrdiff_t)r * p->OW * K;
        jb.pf = NULL;
        jb.pflen = 0;
        if (p->M == 1 && oh + 1 < p->OH)
            DFN(dw_next_rows)(x + (ptrdiff_t)n * p->H * p->W * K, (ptrdiff_t)p->W * K,
                              oh * p->sh - p->ph + (KH - 1) * p->dh, (oh + 1) * p->sh - p->ph + (KH - 1) * p->dh,
                              p->H, &jb.pf, &jb.pflen);
        DFN(dw_run)(&jb, ebuf, esrc, zrow, dummy, colp);
    }
    if (jb.sbuf) FC_SFENCE();
}

/* ---- input gradient: dx rows r = n*H + ih in [r0, r1) ---- */
static void DFN(fc_dw_backward_input_rows)(const fc_dwp *p, const FC_T *dy, const FC_T *w, FC_T *dx,
                                           ptrdiff_t r0, ptrdiff_t r1, char *scratch)
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
    const int nph = fc_min(sw, W);
    /* Each kw belongs to exactly one column phase ((kw*dw - pw) mod sw), so the phases' tap lists
     * together hold KW entries: stored back to back, phase ph's from tfirst[ph] to tfirst[ph + 1].
     * (Rows of KW per phase would need sw*KW entries: gigabytes for a large stride and kernel.) */
    int *toff = (int *)DFN(dw_carve)(&cur, (size_t)KW * sizeof(ptrdiff_t));
    ptrdiff_t *toffK = (ptrdiff_t *)DFN(dw_carve)(&cur, (size_t)KW * sizeof(ptrdiff_t));
    ptrdiff_t *twK = (ptrdiff_t *)DFN(dw_carve)(&cur, (size_t)KW * sizeof(ptrdiff_t));
    int *tfirst = (int *)DFN(dw_carve)(&cur, ((size_t)nph + 1) * sizeof(int));
    FC_T *trow = (FC_T *)DFN(dw_carve)(&cur, (size_t)W * K * sizeof(FC_T)); /* K-space / stream row */
    const FC_T **esrc = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    FC_T *ebuf = (FC_T *)DFN(dw_carve)(&cur, KH * DFN(dw_edge_cols)(p) * K * sizeof(FC_T));
    FC_T *zrow = (FC_T *)DFN(dw_carve)(&cur, (size_t)K * sizeof(FC_T));
    FC_T *dummy = (FC_T *)DFN(dw_carve)(&cur, (size_t)K * sizeof(FC_T));
    const FC_T **colp = (const FC_T **)DFN(dw_carve)(&cur, (size_t)KH * ((DW_RB - 1) * 2 + 7) * sizeof(void *));
    memset(zrow, 0, (size_t)K * sizeof(FC_T));
    FC_T *sbuf = (FC_T *)DFN(dw_carve)(&cur, (size_t)DW_RB * K * sizeof(FC_T));
    (void)sbuf;
    /* tap lists of each column phase: the kw whose dy column (ph + pw - kw*dw) / sw is an integer,
     * i.e. ph = (kw*dw - pw) mod sw.  A counting sort over kw (O(KW + nph)); testing every
     * (phase, kw) pair cost nph*KW steps, 20 s for a stride of 2**20 and a 2048-wide kernel. */
    for (int ph = 0; ph <= nph; ph++) tfirst[ph] = 0;
    for (int kw = 0; kw < KW; kw++) {
        const int ph = (((kw * p->dw - p->pw) % sw) + sw) % sw;
        if (ph < nph) tfirst[ph + 1]++;
    }
    for (int ph = 0; ph < nph; ph++) tfirst[ph + 1] += tfirst[ph];
    for (int kw = KW - 1; kw >= 0; kw--) { /* ascending source columns within a phase */
        const int ph = (((kw * p->dw - p->pw) % sw) + sw) % sw;
        if (ph >= nph) continue;
        const int i = tfirst[ph]++, num = ph + p->pw - kw * p->dw;
        toff[i] = num / sw;
        toffK[i] = (ptrdiff_t)(num / sw) * K;
        twK[i] = (ptrdiff_t)kw * K;
    }
    for (int ph = nph; ph > 0; ph--) tfirst[ph] = tfirst[ph - 1]; /* back from ends to starts */
    tfirst[0] = 0;
    DFN(dw_job) jb;
    jb.K = K; jb.qs = 1; jb.Wsrc = p->OW; jb.src = srcs; jb.wrow = wrows; jb.bias = NULL;
    jb.ostep = (ptrdiff_t)sw * K;
    jb.sbuf = NULL;
    int rowstream = 0; /* strided phases: build the whole row in trow, then stream it out */
#ifdef FC_NT
    if (p->stream && sw == 1 && M == 1 && K % FC_VLEN == 0) jb.sbuf = sbuf;
    if (p->stream && sw > 1 && M == 1 && K % FC_VLEN == 0) rowstream = 1;
#endif
    for (ptrdiff_t r = r0; r < r1; r++) {
        const int n = (int)(r / p->H), ih = (int)(r - (ptrdiff_t)n * p->H);
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
        FC_T *orow = M == 1 && !rowstream ? dx + (ptrdiff_t)r * W * C : trow;
        const char *pf = NULL;
        size_t pflen = 0;
        if (ih + 1 < p->H) /* the dy row the next dx row adds (largest oh) */
            DFN(dw_next_rows)(dy + (ptrdiff_t)n * p->OH * p->OW * K, (ptrdiff_t)p->OW * K,
                              fc_floordiv(ih + p->ph, p->sh), fc_floordiv(ih + 1 + p->ph, p->sh), p->OH, &pf,
                              &pflen);
        for (int ph = 0; ph < nph; ph++) {
            jb.nt = tfirst[ph + 1] - tfirst[ph];
            jb.toff = toff + tfirst[ph]; jb.toffK = toffK + tfirst[ph]; jb.twK = twK + tfirst[ph];
            jb.nj = (W - ph + sw - 1) / sw;
            jb.out = orow + (ptrdiff_t)ph * K;
            jb.pf = ph == 0 ? pf : NULL;
            jb.pflen = ph == 0 ? pflen : 0;
            DFN(dw_run)(&jb, ebuf, esrc, zrow, dummy, colp);
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
#ifdef FC_NT
        if (rowstream) {
            FC_T *d = dx + (ptrdiff_t)r * W * C;
            for (ptrdiff_t i = 0; i < (ptrdiff_t)W * C; i += FC_VLEN) FC_NT(d + i, DLD(trow + i));
        }
#endif
    }
    if (jb.sbuf || rowstream) FC_SFENCE();
}

/* ---- weight gradient ---- */

/* acc[r][w][0..VLEN) += sum_{ow in [o0, o1)} xr[r][ow*sxK + w*tK] * dy[ow*K], for RR rows and NW
 * taps per row (constants after inlining; RR*NW <= 12 accumulators + 1 dy vector).
 * xr[r] already points at tap 0 of row r, channel k0; acc has stride astr between rows. */
#define DW_WACC(r, w) a##r##w
#define DW_WSTEP(r, w) if (RR > r && NW > w) DW_WACC(r, w) += DLD(q##r + w * tK) * d;
#define DW_WSAVE(r, w) \
    if (RR > r && NW > w) DST(acc + r * astr + w * FC_VLEN, DLD(acc + r * astr + w * FC_VLEN) + DW_WACC(r, w));
#define DW_WROW(M_, r) M_(r, 0) M_(r, 1) M_(r, 2) M_(r, 3) M_(r, 4) M_(r, 5) M_(r, 6)
static inline __attribute__((always_inline)) void
DFN(dw_wtile)(const int RR, const int NW, const FC_T *const *xr, ptrdiff_t tK, const FC_T *dyb, int o0, int o1,
              ptrdiff_t sxK, ptrdiff_t K, FC_T *acc, ptrdiff_t astr)
{
    const DV z = {0};
    DV a00 = z, a01 = z, a02 = z, a03 = z, a04 = z, a05 = z, a06 = z;
    DV a10 = z, a11 = z, a12 = z, a13 = z, a14 = z, a15 = z, a16 = z;
    DV a20 = z, a21 = z, a22 = z, a23 = z, a24 = z, a25 = z, a26 = z;
    const FC_T *q0 = xr[0] + (ptrdiff_t)o0 * sxK;
    const FC_T *q1 = RR > 1 ? xr[1] + (ptrdiff_t)o0 * sxK : q0;
    const FC_T *q2 = RR > 2 ? xr[2] + (ptrdiff_t)o0 * sxK : q0;
    const FC_T *dp = dyb + (ptrdiff_t)o0 * K;
    for (int ow = o0; ow < o1; ow++, q0 += sxK, q1 += sxK, q2 += sxK, dp += K) {
        const DV d = DLD(dp);
        DW_WROW(DW_WSTEP, 0)
        DW_WROW(DW_WSTEP, 1)
        DW_WROW(DW_WSTEP, 2)
    }
    DW_WROW(DW_WSAVE, 0)
    DW_WROW(DW_WSAVE, 1)
    DW_WROW(DW_WSAVE, 2)
}
#undef DW_WACC
#undef DW_WSTEP
#undef DW_WSAVE
#undef DW_WROW

#define DW_WCASE(RR_, NW_) \
    case (RR_) * 8 + (NW_): DFN(dw_wtile)(RR_, NW_, xr, tK, dyb, o0, o1, sxK, K, acc, astr); break;
static void DFN(dw_wtile_any)(int rr, int nw, const FC_T *const *xr, ptrdiff_t tK, const FC_T *dyb, int o0, int o1,
                              ptrdiff_t sxK, ptrdiff_t K, FC_T *acc, ptrdiff_t astr)
{
    switch (rr * 8 + nw) {
    DW_WCASE(1, 1) DW_WCASE(1, 2) DW_WCASE(1, 3) DW_WCASE(1, 4) DW_WCASE(1, 5) DW_WCASE(1, 6) DW_WCASE(1, 7)
    DW_WCASE(2, 1) DW_WCASE(2, 2) DW_WCASE(2, 3) DW_WCASE(2, 4) DW_WCASE(2, 5) DW_WCASE(2, 6)
    DW_WCASE(3, 1) DW_WCASE(3, 2) DW_WCASE(3, 3) DW_WCASE(3, 4)
    default: break;
    }
}
#undef DW_WCASE

/* Weight-gradient tile for dilation 1 and column stride SW (1 or 2): 4 output columns at a time,
 * each source column loaded once for the (ow, kw) pairs that read it, the 4 dy vectors kept in
 * registers.  Per kernel row and 4 columns: 3*SW + NW loads for 4*NW FMAs (+ 4 dy loads shared by
 * the RR rows).  Registers: RR*NW <= 10 accumulators + 4 dy + 1 source <= 15. */
static inline __attribute__((always_inline)) void
DFN(dw_wtile_c)(const int RR, const int NW, const int SW, const FC_T *const *xr, const FC_T *dyb, int o0, int o1,
                ptrdiff_t K, FC_T *acc, ptrdiff_t astr)
{
    const DV z = {0};
    DV a[3][7];
    for (int r = 0; r < RR; r++)
        for (int w = 0; w < NW; w++) a[r][w] = z;
    const FC_T *q0 = xr[0], *q1 = RR > 1 ? xr[1] : xr[0], *q2 = RR > 2 ? xr[2] : xr[0];
    int ow = o0;
    for (; ow + 4 <= o1; ow += 4) {
        const FC_T *dp = dyb + (ptrdiff_t)ow * K;
        const DV d0 = DLD(dp), d1 = DLD(dp + K), d2 = DLD(dp + 2 * K), d3 = DLD(dp + 3 * K);
        for (int r = 0; r < RR; r++) {
            const FC_T *q = (r == 0 ? q0 : r == 1 ? q1 : q2) + (ptrdiff_t)ow * SW * K;
#pragma GCC unroll 16
            for (int c = 0; c < 3 * SW + NW; c++) {
                const DV xv = DLD(q + c * K);
#pragma GCC unroll 7
                for (int w = 0; w < NW; w++) {
                    const int u = c - w;
                    if (u >= 0 && u % SW == 0 && u / SW < 4) {
                        const int uu = u / SW;
                        a[r][w] += xv * (uu == 0 ? d0 : uu == 1 ? d1 : uu == 2 ? d2 : d3);
                    }
                }
            }
        }
    }
    for (; ow < o1; ow++) {
        const DV d = DLD(dyb + (ptrdiff_t)ow * K);
        for (int r = 0; r < RR; r++) {
            const FC_T *q = (r == 0 ? q0 : r == 1 ? q1 : q2) + (ptrdiff_t)ow * SW * K;
            for (int w = 0; w < NW; w++) a[r][w] += DLD(q + w * K) * d;
        }
    }
    for (int r = 0; r < RR; r++)
        for (int w = 0; w < NW; w++) DST(acc + r * astr + w * FC_VLEN, DLD(acc + r * astr + w * FC_VLEN) + a[r][w]);
}

#define DW_WC(RR_, NW_, SW_)                                                                      \
    case ((RR_) * 8 + (NW_)) * 4 + (SW_):                                                         \
        DFN(dw_wtile_c)(RR_, NW_, SW_, xr, dyb, o0, o1, K, acc, astr);                            \
        return 1;
/* The dilation-1 tile for (rr, nw, sw) when it exists; returns 0 otherwise. */
static int DFN(dw_wtile_c_any)(int rr, int nw, int sw, const FC_T *const *xr, const FC_T *dyb, int o0, int o1,
                               ptrdiff_t K, FC_T *acc, ptrdiff_t astr)
{
    switch ((rr * 8 + nw) * 4 + sw) {
    DW_WC(1, 1, 1) DW_WC(1, 2, 1) DW_WC(1, 3, 1) DW_WC(1, 4, 1) DW_WC(1, 5, 1) DW_WC(1, 6, 1) DW_WC(1, 7, 1)
    DW_WC(2, 1, 1) DW_WC(2, 2, 1) DW_WC(2, 3, 1) DW_WC(2, 4, 1) DW_WC(2, 5, 1)
    DW_WC(3, 1, 1) DW_WC(3, 2, 1) DW_WC(3, 3, 1)
    DW_WC(1, 1, 2) DW_WC(1, 2, 2) DW_WC(1, 3, 2) DW_WC(1, 4, 2) DW_WC(1, 5, 2) DW_WC(1, 6, 2) DW_WC(1, 7, 2)
    DW_WC(2, 1, 2) DW_WC(2, 2, 2) DW_WC(2, 3, 2) DW_WC(2, 4, 2) DW_WC(2, 5, 2)
    DW_WC(3, 1, 2) DW_WC(3, 2, 2) DW_WC(3, 3, 2)
    default: return 0;
    }
}
#undef DW_WC

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

/* dy rows r = n*OH + oh in [r0, r1): dwp (KH*KW*K) and dbp (K) += their contributions.
 * Per row and channel block, the taps of up to 3 kernel rows x 7 columns are reduced together
 * over the interior output columns (one dy load feeds up to 12 FMAs), edge columns are added
 * with bounds checks, and the block's sums go to the partial.  With dilation 1 and stride <= 2 the
 * tile also shares source-column loads between 4 output columns (dw_wtile_c). */
static void DFN(fc_dw_backward_weight_rows)(const fc_dwp *p, const FC_T *x, const FC_T *dy, ptrdiff_t r0, ptrdiff_t r1,
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
    const FC_T **xrows = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    const FC_T **xr = (const FC_T **)DFN(dw_carve)(&cur, KH * sizeof(void *));
    int *khs = (int *)DFN(dw_carve)(&cur, KH * sizeof(ptrdiff_t));
    FC_T *acc = (FC_T *)DFN(dw_carve)(&cur, (size_t)nkb * KH * KW * FC_VLEN * sizeof(FC_T));
    /* output columns whose every tap is inside the row: all of them when the rows come from the
     * zero-padded row cache (pad), else the edge columns are added with bounds checks below */
    int pl, pr;
    const int pad = DFN(dw_pads)(p, &pl, &pr, DW_PAD_WGRAD_BYTES);
    if (!pad) pl = pr = 0;
    DFN(dw_cache) cc;
    if (pad || p->M > 1) DFN(dw_cache_init)(p, &cur, &cc, pl, pr);
    int olo = fc_min(OW, fc_ceildiv(p->pw, sw));
    int ohi = fc_min(OW, fc_floordiv(p->W - 1 + p->pw - (KW - 1) * p->dw, sw) + 1);
    if (ohi < olo) ohi = olo;
    if (pad) olo = 0, ohi = OW;
    const ptrdiff_t sxK = (ptrdiff_t)sw * K, tK = (ptrdiff_t)p->dw * K, astr = (ptrdiff_t)KW * FC_VLEN;
    const ptrdiff_t ablk = (ptrdiff_t)KH * astr; /* accumulators of one channel block */
    /* taps per tile: NW columns of RR rows with RR*NW <= 12 */
    const int NW = fc_min(KW, 7), RRmax = fc_max(1, fc_min(3, 10 / NW));
    const int cdil = p->dw == 1 && sw <= 2;
    for (ptrdiff_t r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (ptrdiff_t)n * p->OH);
        const FC_T *dyrow = dy + (ptrdiff_t)r * OW * K;
        if (K < FC_VLEN) { /* narrowest level, tiny K */
            for (int ow = 0; ow < OW; ow++)
                for (int k = 0; k < K; k++) dbp[k] += dyrow[(ptrdiff_t)ow * K + k];
        } else {
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN), lane0 = kb * FC_VLEN - k0;
                const DV z = {0};
                DV s0 = z, s1 = z, s2 = z, s3 = z;
                int ow = 0;
                for (; ow + 3 < OW; ow += 4) {
                    s0 += DLD(dyrow + (ptrdiff_t)ow * K + k0);
                    s1 += DLD(dyrow + (ptrdiff_t)(ow + 1) * K + k0);
                    s2 += DLD(dyrow + (ptrdiff_t)(ow + 2) * K + k0);
                    s3 += DLD(dyrow + (ptrdiff_t)(ow + 3) * K + k0);
                }
                for (; ow < OW; ow++) s0 += DLD(dyrow + (ptrdiff_t)ow * K + k0);
                FC_T tmp[FC_VLEN];
                DST(tmp, (s0 + s1) + (s2 + s3));
                DFN(dw_add_lanes)(dbp + k0, tmp, lane0);
            }
        }
        int nr = 0;
        for (int kh = 0; kh < KH; kh++) {
            const int ih = oh * p->sh - p->ph + kh * p->dh;
            if (ih < 0 || ih >= p->H) continue;
            xrows[nr] = p->M == 1 && !pad ? x + ((ptrdiff_t)n * p->H + ih) * p->W * K
                                          : DFN(dw_cache_get)(p, x, &cc, n, ih, r) + (ptrdiff_t)pl * K;
            khs[nr] = kh;
            nr++;
        }
        if (K < FC_VLEN) {
            for (int i = 0; i < nr; i++) DFN(dw_wgrad_row_scalar)(p, xrows[i], dyrow, khs[i], dwp);
            continue;
        }
        /* prefetch what the next row adds (its dy row and new x rows), spread over the steps */
        const char *pfx = NULL, *pfd = NULL;
        size_t pfxl = 0, pfdl = 0;
        if (r + 1 < r1) {
            pfd = (const char *)(dyrow + (ptrdiff_t)OW * K);
            pfdl = (size_t)OW * K * sizeof(FC_T);
            if (p->M == 1 && oh + 1 < p->OH)
                DFN(dw_next_rows)(x + (ptrdiff_t)n * p->H * p->W * K, (ptrdiff_t)p->W * K,
                                  oh * p->sh - p->ph + (KH - 1) * p->dh, (oh + 1) * p->sh - p->ph + (KH - 1) * p->dh,
                                  p->H, &pfx, &pfxl);
        }
        const int nch = (ohi - olo + DW_WCHUNK - 1) / DW_WCHUNK, nsteps = nch * nkb;
        {
            const DV z = {0};
            for (ptrdiff_t i = 0; i < (ptrdiff_t)nkb * ablk; i += FC_VLEN) DST(acc + i, z);
        }
        /* interior columns in chunks of DW_WCHUNK, all channel blocks per chunk: the chunk's x and
         * dy pixels stay in L1 while the blocks sweep them */
        for (int ch = 0; ch < nch; ch++) {
            const int c0 = olo + ch * DW_WCHUNK, c1 = fc_min(ohi, c0 + DW_WCHUNK);
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN), step = ch * nkb + kb;
                if (pfd) DFN(dw_prefetch)(pfd, pfdl * step / nsteps, pfdl * (step + 1) / nsteps);
                if (pfx) DFN(dw_prefetch)(pfx, pfxl * step / nsteps, pfxl * (step + 1) / nsteps);
                FC_T *accb = acc + (ptrdiff_t)kb * ablk;
                for (int i0 = 0; i0 < nr; i0 += RRmax) {
                    const int rr = fc_min(RRmax, nr - i0);
                    for (int w0 = 0; w0 < KW; w0 += NW) {
                        for (int i = 0; i < rr; i++)
                            xr[i] = xrows[i0 + i] + ((ptrdiff_t)w0 * p->dw - p->pw) * K + k0;
                        FC_T *ac = accb + i0 * astr + (ptrdiff_t)w0 * FC_VLEN;
                        const int nw = fc_min(NW, KW - w0);
                        if (!cdil || !DFN(dw_wtile_c_any)(rr, nw, sw, xr, dyrow + k0, c0, c1, K, ac, astr))
                            DFN(dw_wtile_any)(rr, nw, xr, tK, dyrow + k0, c0, c1, sxK, K, ac, astr);
                    }
                }
            }
        }
        for (int kb = 0; kb < nkb; kb++) {
            const int k0 = fc_min(kb * FC_VLEN, K - FC_VLEN), lane0 = kb * FC_VLEN - k0;
            FC_T *accb = acc + (ptrdiff_t)kb * ablk;
            for (int ow = 0; ow < OW; ow++) {
                if (ow == olo) ow = ohi;
                if (ow >= OW) break;
                const DV d = DLD(dyrow + (ptrdiff_t)ow * K + k0);
                for (int kw = 0; kw < KW; kw++) {
                    const int col = ow * sw - p->pw + kw * p->dw;
                    if (col < 0 || col >= p->W) continue;
                    for (int i = 0; i < nr; i++) {
                        FC_T *a = accb + i * astr + (ptrdiff_t)kw * FC_VLEN;
                        DST(a, DLD(a) + DLD(xrows[i] + (ptrdiff_t)col * K + k0) * d);
                    }
                }
            }
            for (int i = 0; i < nr; i++)
                for (int kw = 0; kw < KW; kw++)
                    DFN(dw_add_lanes)(dwp + ((ptrdiff_t)khs[i] * KW + kw) * K + k0,
                                      accb + i * astr + (ptrdiff_t)kw * FC_VLEN, lane0);
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
#undef DW_WCHUNK
#undef DW_KB2
#undef DW_PAD_WGRAD_BYTES
#undef DW_PAD_FWD_BYTES
