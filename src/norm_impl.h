/* norm_impl.h: BatchNorm and element-wise activation loops for ONE element type and ONE SIMD level.
 *
 * Included several times by norm_kernels.h with FC_T (float or double), FC_IS_F32, FC_IT (the
 * integer as wide as FC_T), FC_VLEN (elements per vector) and FC_SFX (name suffix) defined, inside a `#pragma GCC target` region for the x86
 * levels.  GCC vector extensions, so one source becomes SSE/NEON, AVX2+FMA or AVX-512 code.
 *
 * Tensors are viewed as (M, C) with channels innermost (NHWC flattened over N, H, W).
 * - Reductions (fc_bn_stats_rows, fc_bn_dsums_rows) sum rows [r0, r1) into float64 per-channel
 *   partials.  Rows are taken in blocks of about 16 KiB; per block each vector of channels keeps
 *   its two accumulators in registers (a loop over rows with accumulators in memory would be
 *   bound by the stores), then adds them to the partial.
 * - Statistics are shifted sums, s1 = sum(x - k), s2 = sum((x - k)^2), with k a sample of the
 *   channel (its first row): the variance (s2 - s1^2/M)/M then loses no digits to a large mean.
 * - Element-wise passes subtract the mean before scaling, (x - mean) * a + b, again so a large
 *   mean costs no precision.
 * - Fused activation `act`: 0 none, 1 relu, 2 relu6.  Forward clamps; backward masks dy with the
 *   forward's output y (relu: y > 0, relu6: 0 < y < 6), the rule activations.py uses.
 */
#define NM_CAT_(a, b) a##b
#define NM_CAT(a, b) NM_CAT_(a, b)
#define NFN(name) NM_CAT(name, FC_SFX)
#define NV NFN(fc_nvec)
#define NVU NFN(fc_nvecu)
#define NVD NFN(fc_nvecd)
#define NVDU NFN(fc_nvecdu)
#define NVI NFN(fc_nveci)
#define NLD(p) (*(const NVU *)(p))
#define NST(p, v) (*(NVU *)(p) = (v))
#define NLDD(p) (*(const NVDU *)(p))
#define NSTD(p, v) (*(NVDU *)(p) = (v))

typedef FC_T NV __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));
typedef FC_T NVU __attribute__((vector_size(FC_VLEN * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));
/* The float64 accumulators of one vector of channels: two native-width double vectors (lanes
 * 0..VLEN/2-1 and VLEN/2..VLEN-1) for float, one (the vector itself) for double.  A single
 * FC_VLEN-double vector is twice the register width for float, and GCC then spills it. */
#if FC_IS_F32
#define NDL (FC_VLEN / 2)
#else
#define NDL FC_VLEN
#endif
typedef double NVD __attribute__((vector_size(NDL * sizeof(double))));
typedef double NVDU __attribute__((vector_size(NDL * sizeof(double)), aligned(sizeof(double)), may_alias));
#if !FC_IS_F32
#define NLO(v) (v)
#elif FC_VLEN == 4
#define NLO(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 0, 1), NVD)
#define NHI(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 2, 3), NVD)
#elif FC_VLEN == 8
#define NLO(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 0, 1, 2, 3), NVD)
#define NHI(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 4, 5, 6, 7), NVD)
#elif FC_VLEN == 16
#define NLO(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7), NVD)
#define NHI(v) __builtin_convertvector(__builtin_shufflevector((v), (v), 8, 9, 10, 11, 12, 13, 14, 15), NVD)
#endif
/* lanes of a comparison result (-1 true, 0 false), FC_IT being the integer as wide as FC_T */
typedef FC_IT NVI __attribute__((vector_size(FC_VLEN * sizeof(FC_T))));

/* m ? a : b per lane (GCC's vector ?: exists only in C++) */
static inline __attribute__((always_inline)) NV NFN(fc_sel)(NVI m, NV a, NV b)
{
    return (NV)(((NVI)a & m) | ((NVI)b & ~m));
}

/* Rows per reduction block: the block's input rows stay in L1 while every channel vector
 * walks down them. */
static inline long NFN(fc_bn_block_rows)(int C, int nin)
{
    long r = 16384 / ((long)C * nin * (long)sizeof(FC_T));
    return r < 8 ? 8 : r;
}

/* The activation mask of the backward pass as a select: dy where the forward's output y let the
 * gradient through, else 0. */
static inline __attribute__((always_inline)) NV NFN(fc_bn_mask)(NV dy, NV y, int act)
{
    const NV zero = {0};
    if (act == 1)
        return (NV)((NVI)dy & (y > zero));
    if (act == 2) {
        const NV six = zero + (FC_T)6;
        return (NV)((NVI)dy & (y > zero) & (y < six));
    }
    return dy;
}

static inline FC_T NFN(fc_bn_mask1)(FC_T dy, FC_T y, int act)
{
    if (act == 1)
        return y > 0 ? dy : (FC_T)0;
    if (act == 2)
        return (y > 0 && y < 6) ? dy : (FC_T)0;
    return dy;
}

/* Clamp of the forward activation; NaN passes through (as np.maximum / np.clip). */
static inline __attribute__((always_inline)) NV NFN(fc_bn_act)(NV v, int act)
{
    const NV zero = {0};
    if (act >= 1)
        v = NFN(fc_sel)(v < zero, zero, v);
    if (act == 2) {
        const NV six = zero + (FC_T)6;
        v = NFN(fc_sel)(v > six, six, v);
    }
    return v;
}

static inline FC_T NFN(fc_bn_act1)(FC_T v, int act)
{
    if (act >= 1)
        v = v < 0 ? (FC_T)0 : v;
    if (act == 2)
        v = v > 6 ? (FC_T)6 : v;
    return v;
}

#ifdef FC_LD_TAIL
/* Channels past the last whole vector as one masked vector (float32 AVX2 / AVX-512): the n < VLEN
 * lanes at p, the others read as 0 and never written.  A lane-by-lane tail walked down the rows one
 * channel at a time, at a row's stride: a third of the work of a 24-channel DenseNet map. */
#define NLDT(p, n) ((NV)FC_LD_TAIL((p), (n)))
#define NSTT(p, n, v) FC_ST_TAIL((p), (n), (v))

/* s[j] += the first n lanes of the double pair (lo, hi) */
static inline void NFN(fc_bn_addn)(double *s, NVD lo, NVD hi, int n)
{
    double t[FC_VLEN];
    NSTD(t, lo);
    NSTD(t + NDL, hi);
    for (int j = 0; j < n; j++)
        s[j] += t[j];
}
#endif

/* s1[c] += sum_r (x[r,c] - k[c]), s2[c] += sum_r (x[r,c] - k[c])^2 over rows [r0, r1). */
static void NFN(fc_bn_stats_rows)(const FC_T *x, int C, long r0, long r1, const FC_T *k, double *s1,
                                  double *s2)
{
    const long RB = NFN(fc_bn_block_rows)(C, 1);
    const int CV = C - C % FC_VLEN;
    for (long b0 = r0; b0 < r1; b0 += RB) {
        const long b1 = b0 + RB < r1 ? b0 + RB : r1;
        for (int c = 0; c < CV; c += FC_VLEN) {
            const NV kv = NLD(k + c);
            NVD a1 = {0}, a2 = {0};
#if FC_IS_F32
            NVD h1 = {0}, h2 = {0};
#endif
            const FC_T *xp = x + b0 * C + c;
            for (long r = b0; r < b1; r++, xp += C) {
                const NV d = NLD(xp) - kv;
                const NVD dl = NLO(d);
                a1 += dl;
                a2 += dl * dl;
#if FC_IS_F32
                const NVD dh = NHI(d);
                h1 += dh;
                h2 += dh * dh;
#endif
            }
            NSTD(s1 + c, NLDD(s1 + c) + a1);
            NSTD(s2 + c, NLDD(s2 + c) + a2);
#if FC_IS_F32
            NSTD(s1 + c + NDL, NLDD(s1 + c + NDL) + h1);
            NSTD(s2 + c + NDL, NLDD(s2 + c + NDL) + h2);
#endif
        }
#ifdef FC_LD_TAIL
        if (CV < C) {
            const int n = C - CV;
            const NV kv = NLDT(k + CV, n);
            NVD a1 = {0}, a2 = {0}, h1 = {0}, h2 = {0};
            const FC_T *xp = x + b0 * C + CV;
            for (long r = b0; r < b1; r++, xp += C) {
                const NV d = NLDT(xp, n) - kv;
                const NVD dl = NLO(d), dh = NHI(d);
                a1 += dl;
                a2 += dl * dl;
                h1 += dh;
                h2 += dh * dh;
            }
            NFN(fc_bn_addn)(s1 + CV, a1, h1, n);
            NFN(fc_bn_addn)(s2 + CV, a2, h2, n);
        }
#else
        for (int c = CV; c < C; c++) {
            double a1 = 0, a2 = 0;
            for (long r = b0; r < b1; r++) {
                const double d = (double)(x[r * C + c] - k[c]);
                a1 += d;
                a2 += d * d;
            }
            s1[c] += a1;
            s2[c] += a2;
        }
#endif
    }
}

/* Backward sums over rows [r0, r1), g = dy masked by the fused activation (y may be NULL when
 * act == 0): s1[c] += sum g, s2[c] += sum g * (x - mean[c]).  With fa and fb (the forward's scale
 * and shift, y then NULL) the mask comes from the forward's pre-activation (x - mean) * fa + fb,
 * recomputed from x as the forward computed it: y is not read. */
static void NFN(fc_bn_dsums_rows)(const FC_T *dy, const FC_T *x, const FC_T *y, int act, int C, long r0,
                                  long r1, const FC_T *mean, const FC_T *fa, const FC_T *fb, double *s1,
                                  double *s2)
{
    if (fa)
        y = NULL;
    const long RB = NFN(fc_bn_block_rows)(C, act ? 3 : 2);
    const int CV = C - C % FC_VLEN;
    for (long b0 = r0; b0 < r1; b0 += RB) {
        const long b1 = b0 + RB < r1 ? b0 + RB : r1;
        for (int c = 0; c < CV; c += FC_VLEN) {
            const NV mv = NLD(mean + c);
            NVD a1 = {0}, a2 = {0};
#if FC_IS_F32
            NVD h1 = {0}, h2 = {0};
#endif
            const NV fav = fa ? (NV)NLD(fa + c) : mv, fbv = fa ? (NV)NLD(fb + c) : mv;
            const long off = b0 * C + c;
            const FC_T *dp = dy + off, *xp = x + off, *yp = y ? y + off : dp;
            for (long r = b0; r < b1; r++, dp += C, xp += C, yp += C) {
                const NV d = NLD(xp) - mv;
                const NV g = NFN(fc_bn_mask)(NLD(dp), fa ? d * fav + fbv : (NV)NLD(yp), act);
                const NVD gl = NLO(g);
                a1 += gl;
                a2 += gl * NLO(d);
#if FC_IS_F32
                const NVD gh = NHI(g);
                h1 += gh;
                h2 += gh * NHI(d);
#endif
            }
            NSTD(s1 + c, NLDD(s1 + c) + a1);
            NSTD(s2 + c, NLDD(s2 + c) + a2);
#if FC_IS_F32
            NSTD(s1 + c + NDL, NLDD(s1 + c + NDL) + h1);
            NSTD(s2 + c + NDL, NLDD(s2 + c + NDL) + h2);
#endif
        }
#ifdef FC_LD_TAIL
        if (CV < C) {
            const int n = C - CV;
            const NV mv = NLDT(mean + CV, n);
            const NV fav = fa ? NLDT(fa + CV, n) : mv, fbv = fa ? NLDT(fb + CV, n) : mv;
            NVD a1 = {0}, a2 = {0}, h1 = {0}, h2 = {0};
            const long off = b0 * C + CV;
            const FC_T *dp = dy + off, *xp = x + off, *yp = y ? y + off : dp;
            for (long r = b0; r < b1; r++, dp += C, xp += C, yp += C) {
                const NV d = NLDT(xp, n) - mv;
                const NV g = NFN(fc_bn_mask)(NLDT(dp, n), fa ? d * fav + fbv : NLDT(yp, n), act);
                const NVD gl = NLO(g), gh = NHI(g);
                a1 += gl;
                a2 += gl * NLO(d);
                h1 += gh;
                h2 += gh * NHI(d);
            }
            NFN(fc_bn_addn)(s1 + CV, a1, h1, n);
            NFN(fc_bn_addn)(s2 + CV, a2, h2, n);
        }
#else
        for (int c = CV; c < C; c++) {
            double a1 = 0, a2 = 0;
            for (long r = b0; r < b1; r++) {
                const long i = r * C + c;
                const FC_T v = fa ? (x[i] - mean[c]) * fa[c] + fb[c] : act ? y[i] : 0;
                const double g = (double)NFN(fc_bn_mask1)(dy[i], v, act);
                a1 += g;
                a2 += g * (double)(x[i] - mean[c]);
            }
            s1[c] += a1;
            s2[c] += a2;
        }
#endif
    }
}

/* y = act((x - mean[c]) * a[c] + b[c]) for rows [r0, r1) (y may alias x). */
static void NFN(fc_bn_affine_rows)(const FC_T *x, const FC_T *mean, const FC_T *a, const FC_T *b, int act, int C,
                                   long r0, long r1, FC_T *y)
{
    const int CV = C - C % FC_VLEN;
    for (long r = r0; r < r1; r++) {
        const FC_T *xr = x + r * C;
        FC_T *yr = y + r * C;
        for (int c = 0; c < CV; c += FC_VLEN) {
            const NV v = (NLD(xr + c) - NLD(mean + c)) * NLD(a + c) + NLD(b + c);
            NST(yr + c, NFN(fc_bn_act)(v, act));
        }
#ifdef FC_LD_TAIL
        if (CV < C) {
            const int n = C - CV;
            const NV v = (NLDT(xr + CV, n) - NLDT(mean + CV, n)) * NLDT(a + CV, n) + NLDT(b + CV, n);
            NSTT(yr + CV, n, NFN(fc_bn_act)(v, act));
        }
#else
        for (int c = CV; c < C; c++)
            yr[c] = NFN(fc_bn_act1)((xr[c] - mean[c]) * a[c] + b[c], act);
#endif
    }
}

/* dx = g * ga[c] + (x - mean[c]) * gb[c] + gc[c], g = dy masked by the fused activation (y may be
 * NULL when act == 0; x, mean, gb, gc may be NULL for a plain per-channel scale).  fa, fb (with x):
 * the mask from the recomputed pre-activation, as in fc_bn_dsums_rows. */
static void NFN(fc_bn_dx_rows)(const FC_T *dy, const FC_T *x, const FC_T *y, int act, const FC_T *mean,
                               const FC_T *fa, const FC_T *fb, const FC_T *ga, const FC_T *gb, const FC_T *gc,
                               int C, long r0, long r1, FC_T *dx)
{
    if (!x)
        fa = NULL;
    const int CV = C - C % FC_VLEN;
    for (long r = r0; r < r1; r++) {
        const long o = r * C;
        for (int c = 0; c < CV; c += FC_VLEN) {
            NV g = NLD(dy + o + c);
            if (fa) {
                const NV d = NLD(x + o + c) - NLD(mean + c);
                g = NFN(fc_bn_mask)(g, d * NLD(fa + c) + NLD(fb + c), act);
                NV v = g * NLD(ga + c);
                v += d * NLD(gb + c) + NLD(gc + c);
                NST(dx + o + c, v);
                continue;
            }
            if (act)
                g = NFN(fc_bn_mask)(g, NLD(y + o + c), act);
            NV v = g * NLD(ga + c);
            if (x)
                v += (NLD(x + o + c) - NLD(mean + c)) * NLD(gb + c) + NLD(gc + c);
            NST(dx + o + c, v);
        }
#ifdef FC_LD_TAIL
        if (CV < C) {
            const int n = C - CV;
            NV g = NLDT(dy + o + CV, n);
            if (fa)
                g = NFN(fc_bn_mask)(g, (NLDT(x + o + CV, n) - NLDT(mean + CV, n)) * NLDT(fa + CV, n)
                                           + NLDT(fb + CV, n), act);
            else if (act)
                g = NFN(fc_bn_mask)(g, NLDT(y + o + CV, n), act);
            NV v = g * NLDT(ga + CV, n);
            if (x)
                v += (NLDT(x + o + CV, n) - NLDT(mean + CV, n)) * NLDT(gb + CV, n) + NLDT(gc + CV, n);
            NSTT(dx + o + CV, n, v);
        }
#else
        for (int c = CV; c < C; c++) {
            const FC_T pre = fa ? (x[o + c] - mean[c]) * fa[c] + fb[c] : act ? y[o + c] : 0;
            const FC_T g = NFN(fc_bn_mask1)(dy[o + c], pre, act);
            FC_T v = g * ga[c];
            if (x)
                v += (x[o + c] - mean[c]) * gb[c] + gc[c];
            dx[o + c] = v;
        }
#endif
    }
}

/* Element-wise activation forward on elements [i0, i1) of a flat array (y may alias x). */
static void NFN(fc_act_forward)(const FC_T *x, int act, long i0, long i1, FC_T *y)
{
    long i = i0;
    for (; i + FC_VLEN <= i1; i += FC_VLEN)
        NST(y + i, NFN(fc_bn_act)(NLD(x + i), act));
    for (; i < i1; i++)
        y[i] = NFN(fc_bn_act1)(x[i], act);
}

/* dx = dy masked by the activation's output y on elements [i0, i1). */
static void NFN(fc_act_backward)(const FC_T *dy, const FC_T *y, int act, long i0, long i1, FC_T *dx)
{
    long i = i0;
    for (; i + FC_VLEN <= i1; i += FC_VLEN)
        NST(dx + i, NFN(fc_bn_mask)(NLD(dy + i), NLD(y + i), act));
    for (; i < i1; i++)
        dx[i] = NFN(fc_bn_mask1)(dy[i], y[i], act);
}

/* y = act(a + b) on elements [i0, i1) of flat arrays (y may alias a or b; act 0: the plain sum). */
static void NFN(fc_add_act)(const FC_T *a, const FC_T *b, int act, long i0, long i1, FC_T *y)
{
    long i = i0;
    for (; i + FC_VLEN <= i1; i += FC_VLEN)
        NST(y + i, NFN(fc_bn_act)(NLD(a + i) + NLD(b + i), act));
    for (; i < i1; i++)
        y[i] = NFN(fc_bn_act1)(a[i] + b[i], act);
}

#undef NFN
#undef NV
#undef NVU
#undef NVD
#undef NVDU
#undef NVI
#undef NDL
#undef NLO
#undef NHI
#undef NLD
#undef NST
#undef NLDD
#undef NSTD
#undef NLDT
#undef NSTT
