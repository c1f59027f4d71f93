/* conv_wgrad_planar_impl.h: conv2d's weight gradient for few channels, vectorised along output
 * columns. Included by conv_impl.h once per element type and SIMD level (it uses V, LD, FN, FC_VLEN
 * from there); the problem is conv_geom.h's fc_wgrad, the row blocks and chunks those of fc_wgrad_rows.
 *
 * Why: fc_wgrad_rows's tile (6 reduction values (kw, c) x 2 vectors of output channels) fills its
 * vectors only when a group has 2 * FC_VLEN output channels and a kernel row has 6 (kw, c) values.
 * LeNet's 6 and 16 channels, and first layers (1-3 input channels), leave most lanes idle: with
 * AVX-512 its weight gradient ran at a tenth of PyTorch's speed.
 *
 * How: a block of rows is laid out as planes whose rows follow each other at one stride S (the x
 * columns one output row's taps meet): dy plane [k][r * S + ow] (zero past OW), and for each kernel
 * row kh, x plane [c][phase][r * S + j] = padded x column j * sw + phase of the row kh meets (one plane
 * per column phase of the stride, so tap kw of output column ow is plane (kw * dw) % sw at index
 * ow + (kw * dw) / sw: a contiguous, unaligned load for any stride and dilation). A tile then runs one
 * long loop over the whole block, as if it were one row: WGP_KW kernel columns x WGP_KT output
 * channels of vector accumulators, per vector WGP_KT dy loads and WGP_KW x loads feeding
 * WGP_KW * WGP_KT FMAs (a tap that runs past its row meets dy's zeros). The lanes are summed once per
 * tile into the chunk's partial. Tiles may run past the last kernel column or channel of a group
 * (reading the next row or group, or zero planes); those sums are not stored.
 *
 * Register budget: WGP_KW * WGP_KT accumulators + WGP_KT dy vectors + 1 x vector; 25 of AVX-512's
 * 32 vector registers (3 x 6 or 5 x 4), 13 of AVX2's / SSE's 16 (3 x 3 or 5 x 2).
 */

#if FC_VLEN >= 16
#define WGP_KT_A 6 /* with 3 kernel columns */
#define WGP_KT_B 4 /* with 5 kernel columns */
#else
#define WGP_KT_A 3
#define WGP_KT_B 2
#endif
#define WGP_KT_MAX 6

/* Shuffle indices that bring lanes [h, 2h) down to [0, h) (the rest: don't care) for a FC_VLEN vector. */
#if FC_VLEN == 16
#define FC_WGP_HALF(h) h, h + 1 - ((h) < 2), h + 2 - 2 * ((h) < 4), h + 3 - 3 * ((h) < 4), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#elif FC_VLEN == 8
#define FC_WGP_HALF(h) h, h + 1 - ((h) < 2), h + 2 - 2 * ((h) < 4), h + 3 - 3 * ((h) < 4), 4, 5, 6, 7
#elif FC_VLEN == 4
#define FC_WGP_HALF(h) h, h + 1 - ((h) < 2), 2, 3
#elif FC_VLEN == 2
#define FC_WGP_HALF(h) h, 1
#endif
#define WGP_KW_MAX 5

/* Keep a loaded vector in a register: without it GCC folds each dy load into every FMA that uses it
 * (WGP_KW loads instead of one), and the tile became bound by loads at ~40 % of the FMA peak. */
#if FC_X86
#define FC_WGP_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FC_WGP_IN_REGISTER(v) ((void)0)
#endif

/* Sum of a vector's lanes: halves added in log2(FC_VLEN) shuffle + add steps. */
static inline FC_T FN(fc_wgp_hsum)(V v)
{
#if FC_VLEN >= 16
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
#if FC_VLEN >= 8
    v += __builtin_shufflevector(v, v, FC_WGP_HALF(4));
#endif
#if FC_VLEN >= 4
    v += __builtin_shufflevector(v, v, FC_WGP_HALF(2));
#endif
#if FC_VLEN >= 2
    v += __builtin_shufflevector(v, v, FC_WGP_HALF(1));
#endif
    return v[0];
}

/* One tile: acc[j][t] = sum over i < n of x plane (at xoff[j] + i) * dy plane t (at t * dyk + i);
 * dst[j * dkw + t] += lane sum, for j < nkw, t < nkt. n is a whole number of vectors. */
#define FC_WGP_TILE(NAME, KWB, KT)                                                                      \
    static void FN(NAME)(int nkw, int nkt, const FC_T *xb, const ptrdiff_t *xoff, const FC_T *dyb,      \
                         ptrdiff_t dyk, ptrdiff_t n, FC_T *dst, ptrdiff_t dkw)                          \
    {                                                                                                   \
        V acc[KWB][KT];                                                                                 \
        _Pragma("GCC unroll 8") for (int j = 0; j < KWB; j++)                                           \
            _Pragma("GCC unroll 8") for (int t = 0; t < KT; t++) acc[j][t] = (V){0};                    \
        const FC_T *xs[KWB];                                                                            \
        _Pragma("GCC unroll 8") for (int j = 0; j < KWB; j++) xs[j] = xb + xoff[j];                     \
        for (ptrdiff_t i = 0; i < n; i += FC_VLEN) {                                                    \
            V d[KT];                                                                                    \
            _Pragma("GCC unroll 8") for (int t = 0; t < KT; t++) {                                      \
                d[t] = LD(dyb + t * dyk + i);                                                           \
                FC_WGP_IN_REGISTER(d[t]);                                                               \
            }                                                                                           \
            _Pragma("GCC unroll 8") for (int j = 0; j < KWB; j++) {                                     \
                const V xv = LD(xs[j] + i);                                                             \
                _Pragma("GCC unroll 8") for (int t = 0; t < KT; t++) acc[j][t] += xv * d[t];            \
            }                                                                                           \
        }                                                                                               \
        for (int j = 0; j < nkw; j++)                                                                   \
            for (int t = 0; t < nkt; t++) {                                                             \
                dst[j * dkw + t] += FN(fc_wgp_hsum)(acc[j][t]);                                         \
            }                                                                                           \
    }

FC_WGP_TILE(fc_wgp_tile_a, 3, WGP_KT_A)
FC_WGP_TILE(fc_wgp_tile_b, 5, WGP_KT_B)
#undef FC_WGP_TILE

/* Kernel columns per tile: 5 when that leaves fewer idle columns than 3 (KW = 5, 10, 4, 9...). */
static inline int FN(fc_wgp_kwb)(int KW)
{
    const int waste3 = (KW + 2) / 3 * 3 - KW, waste5 = (KW + 4) / 5 * 5 - KW;
    return waste5 < waste3 ? 5 : 3;
}

/* Row stride of the planes: the x columns one output row's taps meet (its dy row is zero past OW). */
static inline int FN(fc_wgp_stride)(const fc_wgrad *p) { return p->OW + ((p->KW - 1) * p->dw) / p->sw; }

/* Elements of one plane for RBLK rows: the rows, rounded up to whole vectors, plus the farthest a
 * tile's taps read past them (its idle kernel columns included). */
static inline ptrdiff_t FN(fc_wgp_plane)(const fc_wgrad *p, int RBLK)
{
    const ptrdiff_t rows = ((ptrdiff_t)RBLK * FN(fc_wgp_stride)(p) + FC_VLEN - 1) / FC_VLEN * FC_VLEN;
    return rows + ((ptrdiff_t)(p->KW + WGP_KW_MAX) * p->dw) / p->sw + FC_VLEN;
}

/* dy planes: K channels plus a tile's overrun. */
static inline int FN(fc_wgp_kp)(const fc_wgrad *p) { return p->K + WGP_KT_MAX; }

static size_t FN(fc_wgp_scratch_bytes)(const fc_wgrad *p, int RBLK)
{
    const size_t planes = (size_t)p->C * p->sw + (size_t)FN(fc_wgp_kp)(p);
    return planes * (size_t)FN(fc_wgp_plane)(p, RBLK) * sizeof(FC_T) + 128;
}

static void FN(fc_wgp_rows)(const fc_wgrad *p, const FC_T *x, const FC_T *dy, ptrdiff_t r0, ptrdiff_t r1,
                            int RBLK, FC_T *dw, FC_T *db, char *scratch)
{
    const int C = p->C, K = p->K, sw = p->sw, S = FN(fc_wgp_stride)(p);
    const int kwb = FN(fc_wgp_kwb)(p->KW), kt = kwb == 5 ? WGP_KT_B : WGP_KT_A;
    const ptrdiff_t P = FN(fc_wgp_plane)(p, RBLK);
    FC_T *xp = (FC_T *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);   /* C * sw x planes */
    FC_T *dyp = xp + (ptrdiff_t)C * sw * P;                             /* Kp dy planes */
    /* dy columns past OW, planes past K and every plane's tail stay zero: only the rows' [0, OW) of
     * [0, K) and the x rows are written below */
    memset(xp, 0, ((size_t)C * sw + FN(fc_wgp_kp)(p)) * (size_t)P * sizeof(FC_T));
    const ptrdiff_t dyrow = (ptrdiff_t)p->OW * K;

    for (ptrdiff_t ra = r0; ra < r1; ra += RBLK) {
        const int nr = (int)((r1 - ra) < RBLK ? (r1 - ra) : RBLK);
        const ptrdiff_t n = ((ptrdiff_t)nr * S + FC_VLEN - 1) / FC_VLEN * FC_VLEN;
        const FC_T *dyb = dy + ra * dyrow;
        for (int r = 0; r < nr; r++) {
            const FC_T *src = dyb + r * dyrow;
            FC_T *dst = dyp + (ptrdiff_t)r * S;
            for (int k = 0; k < K; k++) /* plane writes run along ow; the row being read sits in L1 */
                for (int ow = 0; ow < p->OW; ow++) dst[(ptrdiff_t)k * P + ow] = src[(ptrdiff_t)ow * K + k];
            if (db)
                for (int ow = 0; ow < p->OW; ow++)
                    for (int k = 0; k < K; k++) db[k] += src[(ptrdiff_t)ow * K + k];
        }
        if (nr < RBLK) /* a short last block: the rows past it must not pair old dy with new x */
            for (int k = 0; k < K; k++)
                memset(dyp + (ptrdiff_t)k * P + (ptrdiff_t)nr * S, 0, (size_t)(P - (ptrdiff_t)nr * S) * sizeof(FC_T));
        for (int kh = 0; kh < p->KH; kh++) {
            /* x planes of the rows kernel row kh meets: padded column u = j * sw + phase is x column u - pw;
             * rows in the padding are zero */
            for (int r = 0; r < nr; r++) {
                const ptrdiff_t row = ra + r;
                const int nn = (int)(row / p->OH), oh = (int)(row - (ptrdiff_t)nn * p->OH);
                const int ih = oh * p->sh - p->ph + kh * p->dh;
                const int inside_h = ih >= 0 && ih < p->H;
                const FC_T *src = x + ((ptrdiff_t)nn * p->H + (inside_h ? ih : 0)) * p->W * C;
                for (int ph = 0; ph < sw; ph++) {
                    /* plane columns j in [jlo, jhi) hold x columns j * sw + ph - pw in [0, W) */
                    int jlo = 0, jhi = 0;
                    if (inside_h) {
                        jlo = p->pw - ph > 0 ? (p->pw - ph + sw - 1) / sw : 0;
                        jhi = (p->W + p->pw - ph + sw - 1) / sw;
                        jhi = jhi < S ? jhi : S;
                        jlo = jlo < jhi ? jlo : jhi;
                    }
                    for (int c = 0; c < C; c++) {
                        FC_T *dst = xp + ((ptrdiff_t)c * sw + ph) * P + (ptrdiff_t)r * S;
                        const ptrdiff_t step = (ptrdiff_t)sw * C, first = (ptrdiff_t)(ph - p->pw) * C + c;
                        for (int j = 0; j < jlo; j++) dst[j] = 0;
                        for (int j = jlo; j < jhi; j++) dst[j] = src[first + j * step];
                        for (int j = jhi; j < S; j++) dst[j] = 0;
                    }
                }
            }
            for (int c = 0; c < C; c++) {
                const int g = c / p->Cg, cg = c - g * p->Cg;
                const int kbeg = g * p->Kg, kend = kbeg + p->Kg;
                for (int kw0 = 0; kw0 < p->KW; kw0 += kwb) {
                    const int nkw = p->KW - kw0 < kwb ? p->KW - kw0 : kwb;
                    ptrdiff_t xoff[WGP_KW_MAX];
                    for (int j = 0; j < WGP_KW_MAX; j++) {
                        const int tap = (kw0 + j) * p->dw;
                        xoff[j] = ((ptrdiff_t)c * sw + tap % sw) * P + tap / sw;
                    }
                    for (int k0 = kbeg; k0 < kend; k0 += kt) {
                        const int nkt = kend - k0 < kt ? kend - k0 : kt;
                        FC_T *d0 = dw + (((ptrdiff_t)kh * p->KW + kw0) * p->Cg + cg) * K + k0;
                        const FC_T *y0 = dyp + (ptrdiff_t)k0 * P;
                        if (kwb == 5)
                            FN(fc_wgp_tile_b)(nkw, nkt, xp, xoff, y0, P, n, d0, (ptrdiff_t)p->Cg * K);
                        else
                            FN(fc_wgp_tile_a)(nkw, nkt, xp, xoff, y0, P, n, d0, (ptrdiff_t)p->Cg * K);
                    }
                }
            }
        }
    }
}

#undef WGP_KT_A
#undef WGP_KT_B
#undef WGP_KT_MAX
#undef FC_WGP_HALF
#undef FC_WGP_IN_REGISTER
#undef WGP_KW_MAX
