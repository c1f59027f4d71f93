/* pool_impl.h: pooling kernels for ONE element type and ONE SIMD level.
 *
 * Included several times by pool_kernels.h with FC_T, FC_IT (the signed integer of FC_T's size,
 * the lane type of a comparison mask), FC_VLEN and FC_SFX defined.  GCC vector extensions.
 *
 * Layout NHWC: x (N, H, W, C), y (N, OH, OW, C); every loop is vectorised over C.  A window
 * (oh, ow) has the taps rows oh*sh - ph + i*dh, i in [0, KH), and columns ow*sw - pw + j*dw,
 * j in [0, KW), clipped to the input (max pooling pads with -inf, average pooling with zeros;
 * the caller guarantees that every window has a tap on the input).  Ceil mode only changes OH/OW
 * (the op's) and the include_pad divisor: the taps before the extended ends eh = H + bottom,
 * ew = W + right padding (PyTorch's rule; all KH*KW unless ceil mode's last window passes them).
 * A dilated window reads rows dh*W*C and pixels dw*C apart: the same reductions with wider steps.
 *
 * Max pooling keeps, per lane, the first maximum in row-major window order and lets a NaN win
 * (PyTorch's rule: take v when v > best or v is NaN); the argmax is the input-plane index
 * ih*W + iw, stored as int32 only when asked for, tracked by the same vector loops as the value
 * (a blend per tap) and streamed with y when y is.
 * Backward passes write every dx element exactly once, from the thread that owns it (no races,
 * no separate zero fill, no atomics):
 *   non-overlapping windows (stride >= pool size), undilated: one fused pass over output rows;
 *        each window recomputes its max (or takes dy / count) and writes its dx pixels and the
 *        gaps of its band (zeros) directly; with a saved argmax, one pass over dx rows, each
 *        output column writing its band of the row (dy where the argmax is the pixel, else 0);
 *   overlapping or dilated windows, per dx row (n, ih), a gather per dx pixel: max pooling
 *        adds the dy of the covering windows (oh, ow) whose argmax is that pixel (the argmax of
 *        the covering output rows is recomputed from x into a per-thread ring of ceil(KH/sh)
 *        rows, or read from a saved argmax); average pooling dx[ih, iw] = sum over the windows
 *        with a tap on (ih, iw) of dy / count; 1, 2 or 4 covering windows branch-free.  Both
 *        add in a fixed order: results do not depend on the thread count.
 * Interior 2x2 and 3x3 windows use unrolled code; the value-only max uses the max instruction
 * with NaNs tracked on the side.  Large outputs are written with non-temporal stores.
 * Channel tails: a last block shifted back to C - VLEN rewrites identical values; C < VLEN goes
 * to the next narrower level (the narrowest is a 1-lane "vector"). *
 * Index widths: fc_poolp holds ints, and fastconv/ops/pool.py guarantees that every dimension and
 * every padded extent (H + top + bottom, W + left + right) is at most INT32_MAX, so window starts
 * and ends (o*s - pad, start + k) fit an int; max pooling's local argmax kh*KW + kw (int32 lanes)
 * needs KH*KW <= INT32_MAX and its saved argmax ih*W + iw needs H*W <= INT32_MAX, both checked
 * there too.  Everything else that multiplies sizes (element offsets, pixel counts, scratch
 * sizes) is computed in ptrdiff_t / size_t.
 */
#define PL_CAT_(a, b) a##b
#define PL_CAT(a, b) PL_CAT_(a, b)
#define PFN(name) PL_CAT(name, FC_SFX)
#define PV PFN(fc_plv)
#define PVU PFN(fc_plvu)
#define PVI PFN(fc_plvi)
#define PVI32 PFN(fc_plvi32)
#define PLD(p) (*(const PVU *)(p))
#define PST(p, v) (*(PVU *)(p) = (v))
#define PLDI(p) __builtin_convertvector(*(const PVI32 *)(p), PVI)
#define PSTI(p, v) (*(PVI32 *)(p) = __builtin_convertvector((v), PVI32))
#define PSEL(mk, a, b) ((PV)((((PVI)(a)) & (mk)) | (((PVI)(b)) & ~(mk))))
/* Lanes where a or b is NaN (all ones), as a mask vector. */
#ifdef FC_UNORDV
#define PL_UNORD(a, b) ((PVI)FC_UNORDV((a), (b)))
#else
#define PL_UNORD(a, b) ((PVI)((a) != (a)) | (PVI)((b) != (b)))
#endif
/* Store of an output vector: non-temporal when the caller asked for streaming (it checked that
 * every such store is vector-aligned). */
#ifdef FC_NT
#define PSTO(stream, p, v) do { if (stream) FC_NT((p), (v)); else PST((p), (v)); } while (0)
#else
#define PSTO(stream, p, v) PST((p), (v))
#endif
/* Store of an argmax vector (int32 lanes), non-temporal like PSTO where int32 lanes fill a float32
 * vector (float64 levels store normally). */
#if defined(FC_NT) && FC_IS_F32
#define PSTIO(stream, p, v) \
    do { if (stream) FC_NT((FC_T *)(p), (PV)__builtin_convertvector((v), PVI32)); else PSTI((p), (v)); } while (0)
#else
#define PSTIO(stream, p, v) PSTI((p), (v))
#endif

typedef FC_T PV __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T PVU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));
typedef FC_IT PVI __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef int32_t PVI32 __attribute__((vector_size(FC_VLEN * 4), aligned(4), may_alias));

static inline char *PFN(pl_carve)(char **cur, size_t bytes)
{
    char *r = *cur;
    *cur += (bytes + 63) & ~(size_t)63;
    return r;
}

/* Output rows (columns) whose windows can cover one input row (column): the effective window
 * (K - 1)*d + 1 over the stride, at most the outputs (64-bit: (K - 1)*d may pass INT32_MAX). */
static inline int PFN(pl_span)(int k, int d, int s, int nout)
{
    const long long c = ((long long)(k - 1) * d) / s + 1;
    return (int)(c < nout ? c : (nout > 0 ? nout : 1));
}

static size_t PFN(fc_pool_scratch_bytes)(const fc_poolp *p)
{
    const size_t cap = (size_t)PFN(pl_span)(p->KH, p->dh, p->sh, p->OH);
    const size_t capw = (size_t)PFN(pl_span)(p->KW, p->dw, p->sw, p->OW);
    size_t b = 6 * ((cap * sizeof(void *) + 63) & ~(size_t)63);           /* tags, row lists */
    b += cap * (((size_t)p->OW * p->C * sizeof(int32_t) + 63) & ~(size_t)63); /* argmax ring */
    /* W + OW in size_t: each may be near INT32_MAX (the op bounds them one by one) */
    b += 3 * ((((size_t)p->W + (size_t)p->OW) * sizeof(ptrdiff_t) + 63) & ~(size_t)63); /* column tables */
    b += 4 * (((cap * capw + 4) * sizeof(void *) + 63) & ~(size_t)63);     /* gather lists */
    b += 2 * (((size_t)p->C * sizeof(FC_T) * 2 + 63) & ~(size_t)63);       /* zero rows */
    b += (((size_t)p->C + 16) * sizeof(FC_T) + 63) & ~(size_t)63;         /* global pool sums */
    return b + 64;
}

/* ---- window reductions ---- */

/* Max (and argmax) over the clipped window whose first pixel is xw (= &x[ih0, iw0, k0]), nh x nw
 * pixels, row stride rs, pixel stride C.  The argmax of tap (i, j) of the clipped window is
 * t0 + i*ti + j*tj: the local index kh*KW + kw (t0 = that of the first pixel, ti = KW, tj = 1) or
 * the input-plane index ih*W + iw (t0 = ih0*W + iw0, ti = dh*W, tj = dw); the sum is formed in
 * ptrdiff_t (ti alone may pass an int) and is below KH*KW resp. H*W, which the op keeps within
 * INT32_MAX.  NH/NW > 0: compile-time extents (interior windows). */
static inline __attribute__((always_inline)) void
PFN(pl_max_win)(const int NH, const int NW, const int WANT_AM, const FC_T *xw, int nh, int nw, ptrdiff_t rs,
                ptrdiff_t C, ptrdiff_t t0, ptrdiff_t ti, ptrdiff_t tj, PV *mo, PVI *ao)
{
    if (NH) nh = NH;
    if (NW) nw = NW;
    PV m = PLD(xw);
    const PVI zi = {0};
    PVI ai = zi + (FC_IT)t0;
#ifdef FC_MAXV
    if (!WANT_AM) {
        /* Value only: one max instruction per tap, max(v, m) = v > m ? v : m keeps a NaN first
         * value; NaNs among the later taps are found with one unordered compare per pair of taps
         * and win at the end (all-ones lanes are NaN). */
        PVI nan = zi;
        PV pend = m;
        int have = 0;
        for (int i = 0; i < (NH ? NH : nh); i++)
            for (int j = 0; j < (NW ? NW : nw); j++) {
                if (i == 0 && j == 0) continue;
                const PV v = PLD(xw + i * rs + j * C);
                m = FC_MAXV(v, m);
                if (have) nan |= PL_UNORD(pend, v);
                else pend = v;
                have = !have;
            }
        if (have) nan |= PL_UNORD(pend, pend);
        *mo = (PV)((PVI)m | nan);
        return;
    }
#endif
    for (int i = 0; i < (NH ? NH : nh); i++)
        for (int j = 0; j < (NW ? NW : nw); j++) {
            if (i == 0 && j == 0) continue;
            const PV v = PLD(xw + i * rs + j * C);
            const PVI mk = (v > m) | (v != v);
            m = PSEL(mk, v, m);
            if (WANT_AM) ai = (ai & ~mk) | ((zi + (FC_IT)(t0 + i * ti + j * tj)) & mk);
        }
    *mo = m;
    if (WANT_AM) *ao = ai;
}

static inline __attribute__((always_inline)) PV
PFN(pl_sum_win)(const int NH, const int NW, const FC_T *xw, int nh, int nw, ptrdiff_t rs, ptrdiff_t C)
{
    const PV z = {0};
    PV s0 = z, s1 = z;
    for (int i = 0; i < (NH ? NH : nh); i++) {
        int j = 0;
        for (; j + 1 < (NW ? NW : nw); j += 2) {
            s0 += PLD(xw + i * rs + j * C);
            s1 += PLD(xw + i * rs + (j + 1) * C);
        }
        if (j < (NW ? NW : nw)) s0 += PLD(xw + i * rs + j * C);
    }
    return s0 + s1;
}

/* Window geometry along one axis for output o: start o*s - pad, taps start + i*d for i in [0, k);
 * the real ones (inside [0, n)) are i in [*a, *a + *cnt), the first at pixel *lo = start + *a * d.
 * Ints suffice: the op keeps o*s below the padded extent, and start + i*d of a real tap is < n;
 * the last tap index is computed from n - 1 - start (<= the padded extent), never from start + k*d. */
static inline void PFN(pl_win)(int o, int s, int pad, int k, int d, int n, int *start, int *a, int *cnt,
                               int *lo)
{
    const int st = o * s - pad;
    const int first = st < 0 ? fc_ceildiv(-st, d) : 0;
    const int last = st < n ? fc_min(k, (n - 1 - st) / d + 1) : 0; /* one past the last real tap */
    *start = st;
    *a = first;
    *cnt = last > first ? last - first : 0;
    *lo = st + (*cnt ? first * d : 0);
}

/* The include_pad divisor along one axis: the taps of the window at start before the extended end
 * e = n + after-padding (all k of them unless ceil mode's last window passes e; PyTorch's rule). */
static inline int PFN(pl_padcnt)(int start, int k, int d, int e)
{
    return fc_min(k, fc_ceildiv(e - start, d));
}

/* Output columns [*a, *b) whose windows (effective extent keff) lie inside the row. */
static inline void PFN(pl_interior)(int s, int pad, int keff, int n, int nout, int *a, int *b)
{
    *a = fc_min(nout, fc_ceildiv(pad, s));
    *b = fc_min(nout, fc_floordiv(n - keff + pad, s) + 1);
    if (*b < *a) *b = *a;
}

/* Effective window (k - 1)*d + 1, or INT32_MAX when it does not fit an int (then no window is
 * interior: pl_interior's n - keff + pad stays > INT32_MIN because n + pad <= INT32_MAX). */
static inline int PFN(pl_keff)(int k, int d)
{
    const long long e = (long long)(k - 1) * d + 1;
    return e > 2147483647LL ? 2147483647 : (int)e;
}

/* One output row (n, oh) of max pooling: y row (yrow, NULL = not wanted) and/or an argmax row
 * (irow, NULL = not wanted): the input-plane index ih*W + iw when plane, else the local index
 * kh*KW + kw of the unclipped window.  Interior 2x2 and 3x3 windows of a full row run unrolled
 * in every mode. */
static void PFN(pl_max_row)(const fc_poolp *p, const FC_T *x, int n, int oh, FC_T *yrow, int32_t *irow,
                            int plane)
{
    const int C = p->C, W = p->W, KW = p->KW, nkb = (C + FC_VLEN - 1) / FC_VLEN;
    const int stream = yrow && p->stream && C % FC_VLEN == 0;
    (void)stream;
    const ptrdiff_t rs = (ptrdiff_t)W * C, rsd = rs * p->dh, csd = (ptrdiff_t)C * p->dw;
    int h0, ah, nh, ih0;
    PFN(pl_win)(oh, p->sh, p->ph, p->KH, p->dh, p->H, &h0, &ah, &nh, &ih0);
    const FC_T *xr = x + ((ptrdiff_t)n * p->H + ih0) * rs;
    /* argmax steps per window row and column, and the row's part of t0 */
    const ptrdiff_t ti = plane ? (ptrdiff_t)p->dh * W : KW, tj = plane ? p->dw : 1;
    const ptrdiff_t trow0 = plane ? (ptrdiff_t)ih0 * W : (ptrdiff_t)ah * KW;
    int oa, ob;
    PFN(pl_interior)(p->sw, p->pw, PFN(pl_keff)(KW, p->dw), W, p->OW, &oa, &ob);
    const int fullrows = nh == p->KH, want_am = irow != NULL;
    if (!fullrows || !(p->KH == KW && (KW == 2 || KW == 3))) oa = ob = 0; /* generic for all */
    for (int ow = 0; ow < p->OW; ow++) {
        if (ow == oa && oa < ob) {
            /* interior windows of a full row, 2x2 or 3x3 */
            for (; ow < ob; ow++) {
                const int iw0 = ow * p->sw - p->pw;
                const FC_T *xw = xr + (ptrdiff_t)iw0 * C;
                const ptrdiff_t t0 = trow0 + (plane ? iw0 : 0);
                for (int kb = 0; kb < nkb; kb++) {
                    const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                    PV m;
                    PVI t = {0};
                    if (KW == 2) {
                        if (want_am) PFN(pl_max_win)(2, 2, 1, xw + k0, 2, 2, rsd, csd, t0, ti, tj, &m, &t);
                        else PFN(pl_max_win)(2, 2, 0, xw + k0, 2, 2, rsd, csd, 0, 0, 0, &m, &t);
                    } else {
                        if (want_am) PFN(pl_max_win)(3, 3, 1, xw + k0, 3, 3, rsd, csd, t0, ti, tj, &m, &t);
                        else PFN(pl_max_win)(3, 3, 0, xw + k0, 3, 3, rsd, csd, 0, 0, 0, &m, &t);
                    }
                    if (yrow) PSTO(stream, yrow + (ptrdiff_t)ow * C + k0, m);
                    if (irow) PSTIO(stream, irow + (ptrdiff_t)ow * C + k0, t);
                }
            }
            ow--;
            continue;
        }
        int w0, aw, nw, iw0;
        PFN(pl_win)(ow, p->sw, p->pw, KW, p->dw, W, &w0, &aw, &nw, &iw0);
        const FC_T *xw = xr + (ptrdiff_t)iw0 * C;
        const ptrdiff_t t0 = trow0 + (plane ? iw0 : aw);
        for (int kb = 0; kb < nkb; kb++) {
            const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
            PV m;
            PVI t = {0};
            PFN(pl_max_win)(0, 0, 1, xw + k0, nh, nw, rsd, csd, t0, ti, tj, &m, &t);
            if (yrow) PSTO(stream, yrow + (ptrdiff_t)ow * C + k0, m);
            if (irow) PSTIO(stream, irow + (ptrdiff_t)ow * C + k0, t);
        }
    }
}

/* ---- max pooling ---- */

/* Output rows r = n*OH + oh in [r0, r1): y and (if am != NULL) the input-plane argmax. */
static void PFN(fc_maxpool_forward_rows)(const fc_poolp *p, const FC_T *x, FC_T *y, int32_t *am, long r0, long r1)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_maxpool_forward_rows)(p, x, y, am, r0, r1);
        return;
    }
#endif
    const ptrdiff_t rl = (ptrdiff_t)p->OW * p->C;
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (long)n * p->OH);
        PFN(pl_max_row)(p, x, n, oh, y + r * rl, am ? am + r * rl : NULL, 1);
    }
    if (p->stream) FC_SFENCE();
}

/* Backward work units: output rows (N*OH) when windows do not overlap (fused single pass: each
 * output row owns the band of dx rows up to the next window), else dx rows (N*H, gather). */
static inline int PFN(pl_fused)(const fc_poolp *p)
{
    return p->dh == 1 && p->dw == 1 && p->sh >= p->KH && p->sw >= p->KW;
}
static long PFN(fc_pool_backward_units)(const fc_poolp *p)
{
    return PFN(pl_fused)(p) ? (long)p->N * p->OH : (long)p->N * p->H;
}

/* Band of dx rows/cols owned by output o in the fused backward: [o*s - pad, (o+1)*s - pad) clipped,
 * the first band starting at 0 and the last ending at n. */
static inline void PFN(pl_band)(int o, int s, int pad, int nout, int n, int *lo, int *hi)
{
    *lo = o == 0 ? 0 : fc_min(n, fc_max(0, o * s - pad));
    *hi = o == nout - 1 ? n : fc_min(n, fc_max(0, (o + 1) * s - pad));
}

/* Fused backward of non-overlapping windows, output rows [r0, r1): recompute each window's max
 * (max pooling) or take dy / count (average pooling) and write the window's dx pixels and the
 * gaps of its band (zeros) in one pass. */
static void PFN(pl_fused_backward)(const int MAX, const fc_poolp *p, const FC_T *x, const FC_T *dy, FC_T *dx,
                                   long r0, long r1)
{
    const int C = p->C, W = p->W, H = p->H, KH = p->KH, KW = p->KW, OW = p->OW;
    const int nkb = (C + FC_VLEN - 1) / FC_VLEN, stream = p->stream && C % FC_VLEN == 0;
    (void)stream;
    const ptrdiff_t rs = (ptrdiff_t)W * C;
    const PV z = {0};
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (long)n * p->OH);
        int h0, ah, nh, ih0, bh0, bh1;
        PFN(pl_win)(oh, p->sh, p->ph, KH, 1, H, &h0, &ah, &nh, &ih0);
        const int ih1 = ih0 + nh;
        PFN(pl_band)(oh, p->sh, p->ph, p->OH, H, &bh0, &bh1);
        const FC_T *xn = x + (ptrdiff_t)n * H * rs;
        FC_T *dxn = dx + (ptrdiff_t)n * H * rs;
        const FC_T *dyr = dy + r * (ptrdiff_t)OW * C;
        for (int ow = 0; ow < OW; ow++) {
            int w0, aw, nw, iw0, bw0, bw1;
            PFN(pl_win)(ow, p->sw, p->pw, KW, 1, W, &w0, &aw, &nw, &iw0);
            const int iw1 = iw0 + nw;
            PFN(pl_band)(ow, p->sw, p->pw, OW, W, &bw0, &bw1);
            const FC_T *xw = xn + (ptrdiff_t)ih0 * rs + (ptrdiff_t)iw0 * C;
            /* the local argmax offset only for max pooling, whose window the op keeps below 2^31
             * taps (an average window may be larger: UBSan caught 65535 * 65536 here) */
            const int t0 = MAX ? ah * KW + aw : 0;
            const int full = nh == 2 && nw == 2 && KH == 2 && KW == 2 && bh1 - bh0 == 2 && bw1 - bw0 == 2;
            FC_T inv = 0;
            /* pixel counts in 64 bits: a window may hold more than 2^31 pixels (only the local
             * argmax of max pooling needs KH*KW <= INT32_MAX, and the op checks that) */
            if (!MAX)
                inv = (FC_T)1 / (FC_T)(p->include_pad ? (ptrdiff_t)PFN(pl_padcnt)(h0, KH, 1, p->eh)
                                                            * PFN(pl_padcnt)(w0, KW, 1, p->ew)
                                                      : (ptrdiff_t)nh * nw);
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                const PV d = PLD(dyr + (ptrdiff_t)ow * C + k0);
                FC_T *o = dxn + (ptrdiff_t)ih0 * rs + (ptrdiff_t)iw0 * C + k0;
                if (full) { /* the exact 2x2 tiling: no gaps */
                    if (MAX) {
                        PV m;
                        PVI t;
                        PFN(pl_max_win)(2, 2, 1, xw + k0, 2, 2, rs, C, 0, 2, 1, &m, &t);
                        const PVI zi = {0};
                        PSTO(stream, o, (PV)((PVI)d & (t == zi)));
                        PSTO(stream, o + C, (PV)((PVI)d & (t == zi + 1)));
                        PSTO(stream, o + rs, (PV)((PVI)d & (t == zi + 2)));
                        PSTO(stream, o + rs + C, (PV)((PVI)d & (t == zi + 3)));
                    } else {
                        const PV v = d * inv;
                        PSTO(stream, o, v);
                        PSTO(stream, o + C, v);
                        PSTO(stream, o + rs, v);
                        PSTO(stream, o + rs + C, v);
                    }
                    continue;
                }
                PVI t = {0};
                PV v = d * inv;
                if (MAX) {
                    PV m;
                    PFN(pl_max_win)(0, 0, 1, xw + k0, nh, nw, rs, C, t0, KW, 1, &m, &t);
                }
                for (int ih = bh0; ih < bh1; ih++)
                    for (int iw = bw0; iw < bw1; iw++) {
                        FC_T *q = dxn + (ptrdiff_t)ih * rs + (ptrdiff_t)iw * C + k0;
                        const int in = ih >= ih0 && ih < ih1 && iw >= iw0 && iw < iw1;
                        if (!in) PSTO(stream, q, z);
                        else if (MAX) PSTO(stream, q, (PV)((PVI)d & (t == ((PVI){0} + (FC_IT)((ih - h0) * KW + iw - w0)))));
                        else PSTO(stream, q, v);
                    }
            }
        }
    }
    if (stream) FC_SFENCE();
}

/* Backward of undilated non-overlapping windows from a saved input-plane argmax, dx rows
 * r = n*H + ih in [r0, r1) (the saved argmax's units).  Row ih lies in the band of output row
 * oh = clamp(floor((ih + ph) / sh)) (pl_band); outside that window's rows it is all zeros, else
 * each output column writes its band of pixels: dy where the argmax is the pixel, zeros in the
 * gaps.  Every dx element is written once, with no recomputation and no gather lists. */
static void PFN(pl_band_backward_am)(const fc_poolp *p, const FC_T *dy, const int32_t *am, FC_T *dx, long r0,
                                     long r1)
{
    const int C = p->C, W = p->W, H = p->H, OW = p->OW;
    const int nkb = (C + FC_VLEN - 1) / FC_VLEN, stream = p->stream && C % FC_VLEN == 0;
    (void)stream;
    const ptrdiff_t rl = (ptrdiff_t)OW * C;
    const PV z = {0};
    const PVI zi = {0};
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / H), ih = (int)(r - (long)n * H);
        const int oh = fc_max(0, fc_min(p->OH - 1, fc_floordiv(ih + p->ph, p->sh)));
        int h0, ah, nh, ih0;
        PFN(pl_win)(oh, p->sh, p->ph, p->KH, 1, H, &h0, &ah, &nh, &ih0);
        FC_T *dxr = dx + r * (ptrdiff_t)W * C;
        if (ih < ih0 || ih >= ih0 + nh) { /* a gap row between windows */
            for (ptrdiff_t iw = 0; iw < W; iw++)
                for (int kb = 0; kb < nkb; kb++) PSTO(stream, dxr + iw * C + fc_min(kb * FC_VLEN, C - FC_VLEN), z);
            continue;
        }
        const FC_T *dyr = dy + ((ptrdiff_t)n * p->OH + oh) * rl;
        const int32_t *ar = am + ((ptrdiff_t)n * p->OH + oh) * rl;
        const ptrdiff_t rowidx = (ptrdiff_t)ih * W; /* < H*W <= INT32_MAX (the op checks) */
        for (int ow = 0; ow < OW; ow++) {
            int w0, aw, nw, iw0, bw0, bw1;
            PFN(pl_win)(ow, p->sw, p->pw, p->KW, 1, W, &w0, &aw, &nw, &iw0);
            PFN(pl_band)(ow, p->sw, p->pw, OW, W, &bw0, &bw1);
            const int iw1 = iw0 + nw;
            const PVI base = zi + (FC_IT)(rowidx + iw0);
            if (bw1 - bw0 == 2 && bw0 == iw0 && nw == 2) { /* the exact 2-wide tiling */
                FC_T *o = dxr + (ptrdiff_t)iw0 * C;
                for (int kb = 0; kb < nkb; kb++) {
                    const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                    const PVI d = (PVI)PLD(dyr + (ptrdiff_t)ow * C + k0), a = PLDI(ar + (ptrdiff_t)ow * C + k0);
                    PSTO(stream, o + k0, (PV)(d & (a == base)));
                    PSTO(stream, o + C + k0, (PV)(d & (a == base + 1)));
                }
                continue;
            }
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                const PVI d = (PVI)PLD(dyr + (ptrdiff_t)ow * C + k0), a = PLDI(ar + (ptrdiff_t)ow * C + k0);
                for (int iw = bw0; iw < bw1; iw++) {
                    FC_T *q = dxr + (ptrdiff_t)iw * C + k0;
                    if (iw < iw0 || iw >= iw1) PSTO(stream, q, z);
                    else PSTO(stream, q, (PV)(d & (a == base + (FC_IT)(iw - iw0))));
                }
            }
        }
    }
    if (stream) FC_SFENCE();
}

/* Per-column cover tables of the gather backward: output columns [lo[iw], lo[iw] + cnt[iw]). */
static void PFN(pl_cover_cols)(const fc_poolp *p, int *lo, int *cnt)
{
    const int keff = PFN(pl_keff)(p->KW, p->dw);
    for (int iw = 0; iw < p->W; iw++) {
        /* iw + pw <= the padded extent; minus keff stays above INT32_MIN */
        const int a = fc_max(0, fc_ceildiv(iw + p->pw - keff + 1, p->sw));
        const int b = fc_min(p->OW - 1, fc_floordiv(iw + p->pw, p->sw));
        lo[iw] = a;
        cnt[iw] = b >= a ? b - a + 1 : 0;
    }
}

/* Average pooling's dx pixel d (all channel blocks) = sum over NG covering windows g of
 * dy_g * weight_g.  NG is a constant after inlining. */
static inline __attribute__((always_inline)) void
PFN(pl_gather_px)(const int NG, int stream, int nkb, int C, const FC_T *const *gdy, const FC_T *gw, FC_T *d)
{
    const PV z = {0};
    const FC_T *d0 = NG > 0 ? gdy[0] : NULL, *d1 = NG > 1 ? gdy[1] : NULL;
    const FC_T *d2 = NG > 2 ? gdy[2] : NULL, *d3 = NG > 3 ? gdy[3] : NULL;
    const FC_T w0 = NG > 0 ? gw[0] : 0, w1 = NG > 1 ? gw[1] : 0, w2 = NG > 2 ? gw[2] : 0, w3 = NG > 3 ? gw[3] : 0;
    (void)stream;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
        PV s0 = z, s1 = z;
        if (NG > 0) s0 = PLD(d0 + k0) * w0;
        if (NG > 1) s1 = PLD(d1 + k0) * w1;
        if (NG > 2) s0 += PLD(d2 + k0) * w2;
        if (NG > 3) s1 += PLD(d3 + k0) * w3;
        PSTO(stream, d + k0, s0 + s1);
    }
}

/* Max pooling's dx pixel d (all channel blocks) = sum over the covering windows g, in list order
 * from 0, of dy_g where the window's argmax ga_g is gt[g].  NG in 1..4: a constant count after
 * inlining; 0: ng windows. */
static inline __attribute__((always_inline)) void
PFN(pl_maxgather_px)(const int NG, int stream, int nkb, int C, const FC_T *const *gdy, const int32_t *const *ga,
                     const ptrdiff_t *gt, int ng, FC_T *d)
{
    const PV z = {0};
    const PVI zi = {0};
    (void)stream;
    if (NG) {
        /* the lists in registers: the may_alias stores would otherwise reload them per block */
        const FC_T *dp[4];
        const int32_t *ap[4];
        PVI tv[4];
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            dp[g] = gdy[g];
            ap[g] = ga[g];
            tv[g] = zi + (FC_IT)gt[g];
        }
        for (int kb = 0; kb < nkb; kb++) {
            const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
            PV acc = z;
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) acc += (PV)((PVI)PLD(dp[g] + k0) & (PLDI(ap[g] + k0) == tv[g]));
            PSTO(stream, d + k0, acc);
        }
        return;
    }
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
        PV acc = z;
        for (int g = 0; g < ng; g++)
            acc += (PV)((PVI)PLD(gdy[g] + k0) & (PLDI(ga[g] + k0) == zi + (FC_IT)gt[g]));
        PSTO(stream, d + k0, acc);
    }
}

/* Backward over dx rows r = n*H + ih in [r0, r1) for overlapping or dilated windows.
 * MAX: a gather per dx pixel (see below); the local argmax of the covering output rows is
 * recomputed into a per-thread ring of ceil(KH/sh) rows (saved == NULL) or read from a saved
 * input-plane argmax.  Average: a gather per dx pixel, dx = sum of dy / count over its windows. */
static void PFN(pl_gather_backward)(const int MAX, const fc_poolp *p, const FC_T *x, const FC_T *dy,
                                    const int32_t *saved, FC_T *dx, long r0, long r1, char *scratch)
{
    const int H = p->H, W = p->W, C = p->C, OH = p->OH, OW = p->OW, KW = p->KW;
    const int nkb = (C + FC_VLEN - 1) / FC_VLEN, stream = p->stream && C % FC_VLEN == 0;
    (void)stream;
    const int cap = PFN(pl_span)(p->KH, p->dh, p->sh, OH), capw = PFN(pl_span)(KW, p->dw, p->sw, OW);
    const int dh = p->dh, dw = p->dw, keffh = PFN(pl_keff)(p->KH, dh);
    const ptrdiff_t rl = (ptrdiff_t)OW * C;
    const ptrdiff_t rls = ((size_t)rl * sizeof(int32_t) + 63) / sizeof(int32_t) / 16 * 16;
    char *cur = scratch;
    long *tags = (long *)PFN(pl_carve)(&cur, (size_t)cap * sizeof(long));
    int32_t *ring = (int32_t *)PFN(pl_carve)(&cur, (size_t)cap * rls * sizeof(int32_t));
    const int32_t **arows = (const int32_t **)PFN(pl_carve)(&cur, (size_t)cap * sizeof(void *));
    const FC_T **dyrows = (const FC_T **)PFN(pl_carve)(&cur, (size_t)cap * sizeof(void *));
    int *th = (int *)PFN(pl_carve)(&cur, (size_t)cap * sizeof(int));
    FC_T *invh = (FC_T *)PFN(pl_carve)(&cur, (size_t)cap * sizeof(FC_T));
    int *clo = (int *)PFN(pl_carve)(&cur, (size_t)W * sizeof(int));
    int *ccnt = (int *)PFN(pl_carve)(&cur, (size_t)W * sizeof(int));
    FC_T *invw = (FC_T *)PFN(pl_carve)(&cur, (size_t)OW * sizeof(FC_T));
    /* the gather list of one dx pixel: dy rows (both), weights (average) */
    const FC_T **gdy = (const FC_T **)PFN(pl_carve)(&cur, (size_t)cap * capw * sizeof(void *));
    FC_T *gw = (FC_T *)PFN(pl_carve)(&cur, (size_t)cap * capw * sizeof(FC_T));
    /* max: the argmax rows and the argmax value of this pixel of each covering window */
    const int32_t **gam = (const int32_t **)PFN(pl_carve)(&cur, (size_t)cap * capw * sizeof(void *));
    ptrdiff_t *gtap = (ptrdiff_t *)PFN(pl_carve)(&cur, (size_t)cap * capw * sizeof(ptrdiff_t));
    for (int i = 0; i < cap; i++) tags[i] = -1;
    PFN(pl_cover_cols)(p, clo, ccnt);
    for (int ow = 0; ow < OW; ow++) {
        int w0, a, c, lo;
        PFN(pl_win)(ow, p->sw, p->pw, KW, dw, W, &w0, &a, &c, &lo);
        invw[ow] = (FC_T)1 / (FC_T)(p->include_pad ? PFN(pl_padcnt)(w0, KW, dw, p->ew) : c);
    }
    const PV z = {0};
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / H), ih = (int)(r - (long)n * H);
        const int oh_lo = fc_max(0, fc_ceildiv(ih + p->ph - keffh + 1, p->sh));
        const int oh_hi = fc_min(OH - 1, fc_floordiv(ih + p->ph, p->sh));
        int nrow = 0;
        for (int oh = oh_lo; oh <= oh_hi; oh++) {
            /* the window of row oh has a tap on ih only when ih - start is a multiple of dh */
            const int off = ih + p->ph - oh * p->sh;
            if (dh != 1 && off % dh) continue;
            const int i = nrow++;
            const long tag = (long)n * OH + oh;
            int h0, a, c, lo;
            PFN(pl_win)(oh, p->sh, p->ph, p->KH, dh, H, &h0, &a, &c, &lo);
            invh[i] = (FC_T)1 / (FC_T)(p->include_pad ? PFN(pl_padcnt)(h0, p->KH, dh, p->eh) : c);
            dyrows[i] = dy + tag * rl;
            if (!MAX) continue;
            /* int is enough for max pooling only: the op checks H*W <= INT32_MAX for a saved argmax
             * and KH*KW <= INT32_MAX always; average windows may be larger */
            th[i] = saved ? ih * W : (dh == 1 ? off : off / dh) * KW;
            if (saved) {
                arows[i] = saved + tag * rl;
            } else {
                const int slot = oh % cap;
                int32_t *ar = ring + slot * rls;
                if (tags[slot] != tag) {
                    PFN(pl_max_row)(p, x, n, oh, NULL, ar, 0);
                    tags[slot] = tag;
                }
                arows[i] = ar;
            }
        }
        FC_T *dxrow = dx + r * (ptrdiff_t)W * C;
        if (MAX) {
            /* Max: a gather per dx pixel, written once (no row of sums to clear, fill and copy
             * out: that scatter took 2x this).  The covering windows (row i, column ow) in the
             * order (i, ow) add their dy where their argmax is this pixel, from 0, so the sums
             * are the same bits with the saved and the recomputed argmax. */
            for (int iw = 0; iw < W; iw++) {
                int ng = 0;
                for (int i = 0; i < nrow; i++)
                    for (int j = 0; j < ccnt[iw]; j++) {
                        const int ow = clo[iw] + j, offw = iw + p->pw - ow * p->sw;
                        if (dw != 1 && offw % dw) continue;
                        gdy[ng] = dyrows[i] + (ptrdiff_t)ow * C;
                        gam[ng] = arows[i] + (ptrdiff_t)ow * C;
                        /* the argmax of this pixel in window (i, ow): ih*W + iw saved, else the
                         * local tap (row part th[i]) */
                        gtap[ng] = (ptrdiff_t)th[i] + (saved ? iw : (dw == 1 ? offw : offw / dw));
                        ng++;
                    }
                FC_T *d = dxrow + (ptrdiff_t)iw * C;
                switch (ng) {
                case 1: PFN(pl_maxgather_px)(1, stream, nkb, C, gdy, gam, gtap, 1, d); break;
                case 2: PFN(pl_maxgather_px)(2, stream, nkb, C, gdy, gam, gtap, 2, d); break;
                case 4: PFN(pl_maxgather_px)(4, stream, nkb, C, gdy, gam, gtap, 4, d); break;
                default: PFN(pl_maxgather_px)(0, stream, nkb, C, gdy, gam, gtap, ng, d); break;
                }
            }
            continue;
        }
        /* Average.  1 or 2 covering rows and columns (every pixel of a 3x3 stride 2 or 2x2 stride 1
         * pool): the gather list in registers, in the order of the general list below (rows
         * outer), so the sums are the same bits */
        const int small_rows = dw == 1 && nrow >= 1 && nrow <= 2;
        for (int iw = 0; iw < W; iw++) {
            if (small_rows && ccnt[iw] >= 1 && ccnt[iw] <= 2) {
                const int nc = ccnt[iw], ow0 = clo[iw];
                const FC_T *ldy[4];
                FC_T lw[4] = {0, 0, 0, 0};
                for (int i = 0; i < nrow; i++)
                    for (int j = 0; j < nc; j++) {
                        const int g = i * nc + j, ow = ow0 + j;
                        ldy[g] = dyrows[i] + (ptrdiff_t)ow * C;
                        lw[g] = invh[i] * invw[ow];
                    }
                FC_T *d = dxrow + (ptrdiff_t)iw * C;
                switch (nrow * nc) {
                case 1: PFN(pl_gather_px)(1, stream, nkb, C, ldy, lw, d); break;
                case 2: PFN(pl_gather_px)(2, stream, nkb, C, ldy, lw, d); break;
                default: PFN(pl_gather_px)(4, stream, nkb, C, ldy, lw, d); break;
                }
                continue;
            }
            int ng = 0;
            for (int i = 0; i < nrow; i++)
                for (int j = 0; j < ccnt[iw]; j++) {
                    const int ow = clo[iw] + j, offw = iw + p->pw - ow * p->sw;
                    if (dw != 1 && offw % dw) continue; /* no division in the undilated case */
                    gdy[ng] = dyrows[i] + (ptrdiff_t)ow * C;
                    gw[ng] = invh[i] * invw[ow];
                    ng++;
                }
            FC_T *d = dxrow + (ptrdiff_t)iw * C;
            if (ng <= 4) {
                switch (ng) {
                case 0: PFN(pl_gather_px)(0, stream, nkb, C, gdy, gw, d); break;
                case 1: PFN(pl_gather_px)(1, stream, nkb, C, gdy, gw, d); break;
                case 2: PFN(pl_gather_px)(2, stream, nkb, C, gdy, gw, d); break;
                case 3: PFN(pl_gather_px)(3, stream, nkb, C, gdy, gw, d); break;
                default: PFN(pl_gather_px)(4, stream, nkb, C, gdy, gw, d); break;
                }
                continue;
            }
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                PV acc = z;
                for (int g = 0; g < ng; g++) acc += PLD(gdy[g] + k0) * gw[g];
                PSTO(stream, d + k0, acc);
            }
        }
    }
    if (stream) FC_SFENCE();
}

/* Backward work units [r0, r1) of fc_pool_backward_units (max pooling).  am == NULL: recompute
 * the argmax from x; else a saved input-plane argmax (then the units are always dx rows). */
static void PFN(fc_maxpool_backward_rows)(const fc_poolp *p, const FC_T *x, const FC_T *dy, const int32_t *am,
                                          FC_T *dx, long r0, long r1, char *scratch)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_maxpool_backward_rows)(p, x, dy, am, dx, r0, r1, scratch);
        return;
    }
#endif
    if (!PFN(pl_fused)(p)) PFN(pl_gather_backward)(1, p, x, dy, am, dx, r0, r1, scratch);
    else if (am) PFN(pl_band_backward_am)(p, dy, am, dx, r0, r1);
    else PFN(pl_fused_backward)(1, p, x, dy, dx, r0, r1);
}

/* ---- average pooling ---- */

/* Output rows r = n*OH + oh in [r0, r1). */
static void PFN(fc_avgpool_forward_rows)(const fc_poolp *p, const FC_T *x, FC_T *y, long r0, long r1)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_avgpool_forward_rows)(p, x, y, r0, r1);
        return;
    }
#endif
    const int W = p->W, C = p->C, KH = p->KH, KW = p->KW, nkb = (C + FC_VLEN - 1) / FC_VLEN;
    const int stream = p->stream && C % FC_VLEN == 0;
    (void)stream;
    const ptrdiff_t rs = (ptrdiff_t)W * C, rsd = rs * p->dh, csd = (ptrdiff_t)C * p->dw;
    int oa0, ob0;
    PFN(pl_interior)(p->sw, p->pw, PFN(pl_keff)(KW, p->dw), W, p->OW, &oa0, &ob0);
    for (long r = r0; r < r1; r++) {
        const int n = (int)(r / p->OH), oh = (int)(r - (long)n * p->OH);
        int h0, ah, nh, ih0;
        PFN(pl_win)(oh, p->sh, p->ph, KH, p->dh, p->H, &h0, &ah, &nh, &ih0);
        const FC_T *xr = x + ((ptrdiff_t)n * p->H + ih0) * rs;
        FC_T *yrow = y + r * (ptrdiff_t)p->OW * C;
        int oa = oa0, ob = ob0;
        if (nh != KH || KH != KW || (KW != 2 && KW != 3)) oa = ob = 0;
        const ptrdiff_t padh = p->include_pad ? PFN(pl_padcnt)(h0, KH, p->dh, p->eh) : 0;
        const FC_T inv_full = (FC_T)1 / (FC_T)((ptrdiff_t)KH * KW); /* may pass 2^31 (huge padding) */
        for (int ow = 0; ow < p->OW; ow++) {
            if (ow == oa && oa < ob) {
                for (; ow < ob; ow++) {
                    const FC_T *xw = xr + (ptrdiff_t)(ow * p->sw - p->pw) * C;
                    for (int kb = 0; kb < nkb; kb++) {
                        const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                        const PV s = KW == 2 ? PFN(pl_sum_win)(2, 2, xw + k0, 2, 2, rsd, csd)
                                             : PFN(pl_sum_win)(3, 3, xw + k0, 3, 3, rsd, csd);
                        PSTO(stream, yrow + (ptrdiff_t)ow * C + k0, s * inv_full);
                    }
                }
                ow--;
                continue;
            }
            int w0, aw, nw, iw0;
            PFN(pl_win)(ow, p->sw, p->pw, KW, p->dw, W, &w0, &aw, &nw, &iw0);
            const ptrdiff_t cnt = p->include_pad ? padh * PFN(pl_padcnt)(w0, KW, p->dw, p->ew) : (ptrdiff_t)nh * nw;
            const FC_T inv = (FC_T)1 / (FC_T)cnt;
            const FC_T *xw = xr + (ptrdiff_t)iw0 * C;
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                const PV s = PFN(pl_sum_win)(0, 0, xw + k0, nh, nw, rsd, csd);
                PSTO(stream, yrow + (ptrdiff_t)ow * C + k0, s * inv);
            }
        }
    }
    if (stream) FC_SFENCE();
}

/* Backward work units [r0, r1) of fc_pool_backward_units (average pooling). */
static void PFN(fc_avgpool_backward_rows)(const fc_poolp *p, const FC_T *dy, FC_T *dx, long r0, long r1,
                                          char *scratch)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_avgpool_backward_rows)(p, dy, dx, r0, r1, scratch);
        return;
    }
#endif
    if (PFN(pl_fused)(p)) PFN(pl_fused_backward)(0, p, NULL, dy, dx, r0, r1);
    else PFN(pl_gather_backward)(0, p, NULL, dy, NULL, dx, r0, r1, scratch);
}

/* ---- global average pooling ---- */

/* Pixels summed in FC_T before the block's sums go into the float64 totals: a float32 sum of
 * ones stops growing at 2^24, so one running FC_T sum over H*W pixels returned 0.5 for an all-ones
 * 8192x4096 image; 4096 pixels keep the FC_T part exact to about 12 bits below its ulp. */
#define PL_GAP_BLOCK 4096
#define PL_GAP_CHUNK 32 /* pixels a chunk when the channel blocks take several register groups */

/* Sums of G channel blocks (starting at block kb0) over pixels [i0, i1) of one image xp, added to
 * acc (VLEN lanes per block).  The sums stay in registers: 8 vector accumulators, S = 8/G
 * sets, pixel i going to set (i - i0) % S, the sets added pairwise at the end (a fixed order: the
 * result depends on neither the thread count nor where a thread's range starts).  One running
 * sum per block kept in memory had cost a store-to-load forwarding latency per pixel: 0.25x
 * PyTorch at 16 channels. */
static inline __attribute__((always_inline)) void
PFN(pl_gap_sum)(const int G, const FC_T *xp, int C, int kb0, ptrdiff_t i0, ptrdiff_t i1, FC_T *acc)
{
    const int S = 8 / G;
    const PV z = {0};
    PV a[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; u++) a[u] = z;
    ptrdiff_t k0s[8];
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) k0s[g] = fc_min((kb0 + g) * FC_VLEN, C - FC_VLEN);
    const FC_T *q = xp + i0 * (ptrdiff_t)C;
    ptrdiff_t i = i0;
    for (; i + S <= i1; i += S, q += (ptrdiff_t)S * C) {
#pragma GCC unroll 8
        for (int s = 0; s < S; s++)
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) a[s * G + g] += PLD(q + (ptrdiff_t)s * C + k0s[g]);
    }
    for (; i < i1; i++, q += C) {
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) a[g] += PLD(q + k0s[g]);
    }
    /* pairwise: sets s and s + S/2, then halves again */
#pragma GCC unroll 8
    for (int h = S / 2; h >= 1; h /= 2)
#pragma GCC unroll 8
        for (int s = 0; s < h; s++)
#pragma GCC unroll 8
            for (int g = 0; g < G; g++) a[s * G + g] += a[(s + h) * G + g];
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) PST(acc + (ptrdiff_t)(kb0 + g) * FC_VLEN, PLD(acc + (ptrdiff_t)(kb0 + g) * FC_VLEN) + a[g]);
}

/* y[n, :] = mean of x[n] over H*W for n in [n0, n1).  scratch: fc_gap_scratch_bytes(C). */
static void PFN(fc_gap_forward)(const fc_poolp *p, const FC_T *x, FC_T *y, long n0, long n1, char *scratch)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_gap_forward)(p, x, y, n0, n1, scratch);
        return;
    }
#endif
    const int C = p->C, nkb = (C + FC_VLEN - 1) / FC_VLEN;
    const ptrdiff_t P = (ptrdiff_t)p->H * p->W;
    const double inv = 1.0 / (double)P;
    /* block kb sums channels from min(kb*VLEN, C-VLEN): FC_T sums of a pixel block (acc; in
     * registers over chunks of pixels, groups of up to 8 blocks), float64 totals.  More than 8
     * blocks: chunks of PL_GAP_CHUNK pixels, so that the groups after the first read the chunk
     * from L1 (one whole-image pass per group was 1.4-1.8x slower at 7x7x256) */
    FC_T *acc = (FC_T *)scratch;
    const ptrdiff_t chunk = nkb > 8 ? PL_GAP_CHUNK : PL_GAP_BLOCK;
    const PV z = {0};
    double *tot = (double *)(scratch + ((((size_t)C + 16) * sizeof(FC_T) + 63) & ~(size_t)63));
    for (long n = n0; n < n1; n++) {
        for (ptrdiff_t i = 0; i < (ptrdiff_t)nkb * FC_VLEN; i++) tot[i] = 0;
        const FC_T *xp = x + n * P * C;
        for (ptrdiff_t i0 = 0; i0 < P; i0 += PL_GAP_BLOCK) {
            const ptrdiff_t i1 = i0 + PL_GAP_BLOCK < P ? i0 + PL_GAP_BLOCK : P;
            for (int kb = 0; kb < nkb; kb++) PST(acc + kb * FC_VLEN, z);
            for (ptrdiff_t c0 = i0; c0 < i1; c0 += chunk) {
                const ptrdiff_t c1 = c0 + chunk < i1 ? c0 + chunk : i1;
                for (int kb = 0; kb < nkb;) {
                    const int left = nkb - kb;
                    if (left >= 8) { PFN(pl_gap_sum)(8, xp, C, kb, c0, c1, acc); kb += 8; }
                    else if (left >= 4) { PFN(pl_gap_sum)(4, xp, C, kb, c0, c1, acc); kb += 4; }
                    else if (left >= 2) { PFN(pl_gap_sum)(2, xp, C, kb, c0, c1, acc); kb += 2; }
                    else { PFN(pl_gap_sum)(1, xp, C, kb, c0, c1, acc); kb += 1; }
                }
            }
            for (ptrdiff_t i = 0; i < (ptrdiff_t)nkb * FC_VLEN; i++) tot[i] += (double)acc[i];
        }
        for (int kb = 0; kb < nkb; kb++) {
            const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
            for (int v = 0; v < FC_VLEN; v++) y[n * C + k0 + v] = (FC_T)(tot[kb * FC_VLEN + v] * inv);
        }
    }
}

/* dx rows r = n*H + h in [r0, r1): dx[n, h, :, :] = dy[n, :] / (H*W). */
static void PFN(fc_gap_backward_rows)(const fc_poolp *p, const FC_T *dy, FC_T *dx, long r0, long r1)
{
#ifdef PL_NARROW
    if (p->C < FC_VLEN) {
        PL_NARROW(fc_gap_backward_rows)(p, dy, dx, r0, r1);
        return;
    }
#endif
    const int C = p->C, nkb = (C + FC_VLEN - 1) / FC_VLEN;
    const FC_T inv = (FC_T)1 / (FC_T)((ptrdiff_t)p->H * p->W);
    for (long r = r0; r < r1; r++) {
        const long n = r / p->H;
        FC_T *d = dx + r * (ptrdiff_t)p->W * C;
        for (int iw = 0; iw < p->W; iw++, d += C)
            for (int kb = 0; kb < nkb; kb++) {
                const int k0 = fc_min(kb * FC_VLEN, C - FC_VLEN);
                PST(d + k0, PLD(dy + n * C + k0) * inv);
            }
    }
}

#undef PL_CAT_
#undef PL_CAT
#undef PFN
#undef PV
#undef PVU
#undef PVI
#undef PVI32
#undef PLD
#undef PST
#undef PLDI
#undef PSTI
#undef PSEL
#undef PSTO
#undef PSTIO
#undef PL_UNORD
