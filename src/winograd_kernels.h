/* winograd_kernels.h: instantiates winograd_impl.h at every element type and SIMD level
 * (fc_instantiate.h) and exposes one entry per operation taking the SIMD level (chosen in Python).
 */
#ifndef FC_WINOGRAD_KERNELS_H
#define FC_WINOGRAD_KERNELS_H

#include "fc_common.h"
#include <stdlib.h>  /* malloc, free: the flipped weight transform's transposed taps */

#define FC_WINO_RB 6  /* tile rows of the GEMM register tile (6 rows x 2 vectors, as conv_impl.h) */

/* One Winograd F(m x m, 3x3) convolution (winograd_impl.h): input (N, IH, IW, C), output
 * (N, OH, OW, K), input row of output row oy at oy - pt (columns: ox - pl); th x tw tiles of m x m
 * output pixels per image.  Every field is checked against the int geometry by the op. */
typedef struct {
    int N, IH, IW, C;
    int OH, OW, K;
    int pt, pl;
    int m;          /* 4: F(4x4, 3x3), 2: F(2x2, 3x3) */
    int th, tw;     /* tiles per image column and row: dh * thp, dw * twp */
    int relu;
    /* dilation: output pixel (oy, ox) reads rows oy - pt + dh*i, columns ox - pl + dw*j.  A dilated
     * conv is dh*dw independent undilated ones on the sub-lattices oy = a + dh*j, ox = b + dw*j'
     * (polyphase): tile row ty is phase a = ty / thp, sub-tile ty % thp (columns alike), and its
     * m x m outputs and alpha x alpha inputs are dh (dw) apart.  dh = dw = 1: the plain conv. */
    int dh, dw;
    int thp, twp;   /* tiles per phase: ceil(ceil(OH / dh) / m), ceil(ceil(OW / dw) / m) */
    int OPS;        /* forward output pixel stride in elements: K, or more for a channel slice of a wider tensor */
} fc_wino;

/* The Winograd weight transform U[pos][kb][c][v] = (G g G^T)[pos] of g = w[:, :, c, kb*vb + v]
 * (w is (3, 3, C, K)), zero past K, in double arithmetic; flip: of the input gradient's weight
 * g[i][j] = w[2 - i, 2 - j, kb*vb + v, c] (w is (3, 3, K, C) then).  C, K: the transformed conv's. */
static const double fc_wino_g4[6][3] = {{1 / 4., 0, 0}, {-1 / 6., -1 / 6., -1 / 6.}, {-1 / 6., 1 / 6., -1 / 6.},
                                        {1 / 24., 1 / 12., 1 / 6.}, {1 / 24., -1 / 12., 1 / 6.}, {0, 0, 1}};
static const double fc_wino_g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

/* vb output channels at a time (v innermost, so the compiler vectorises over them), the alpha x 3
 * intermediate rows in double; AL (6 or 4) a constant so every loop unrolls. */
#ifdef _OPENMP
#define FC_WINO_PARALLEL_FOR _Pragma("omp parallel for schedule(static) num_threads(threads) if(threads > 1)")
#else
#define FC_WINO_PARALLEL_FOR
#endif
/* One 1-D weight transform in double, 3 values to AL: out[0..AL) = G (x0, x1, x2) for G = fc_wino_g4
 * (AL = 6) or fc_wino_g2 (AL = 4), written out[b]SUF (SUF an index suffix such as [j][v]); its rows
 * share sums: G4's rows 1, 2 are -(x0 + x2 +- x1) / 6, rows 3, 4 are x0 / 24 + x2 / 6 +- x1 / 12. */
#define FC_WINO_G1(AL, x0_, x1_, x2_, out, SUF)                                                             \
    do {                                                                                                    \
        const double x0 = (x0_), x1 = (x1_), x2 = (x2_), s02 = x0 + x2;                                    \
        if ((AL) == 6) {                                                                                    \
            const double e = x0 * (1 / 24.) + x2 * (1 / 6.), h = x1 * (1 / 12.);                           \
            out[0] SUF = x0 * 0.25;                                                                         \
            out[1] SUF = (s02 + x1) * (-1 / 6.);                                                            \
            out[2] SUF = (x1 - s02) * (1 / 6.);                                                             \
            out[3] SUF = e + h;                                                                             \
            out[(AL) - 2] SUF = e - h;                                                                           \
            out[(AL) - 1] SUF = x2;                                                                         \
        } else {                                                                                            \
            out[0] SUF = x0;                                                                                \
            out[1] SUF = (s02 + x1) * 0.5;                                                                  \
            out[2] SUF = (s02 - x1) * 0.5;                                                                  \
            out[(AL) - 1] SUF = x2;                                                                         \
        }                                                                                                   \
    } while (0)
#define FC_WINO_TRANSFORM(NAME, T, AL, GM)                                                                  \
static void NAME(const T *w, int C, int K, int vb, int flip, T *out, int threads)                           \
{                                                                                                           \
    enum { A2 = AL * AL, VMAX = 32 };                                                                       \
    const int nkb = (K + vb - 1) / vb;                                                                      \
    const ptrdiff_t ps = (ptrdiff_t)nkb * C * vb, tap = (ptrdiff_t)C * K;                                   \
    (void)threads;                                                                                          \
    if (flip) {                                                                                             \
        /* the flipped weight's taps transposed first (blocks of 32 x 32), then the contiguous loads:     \
         * its loads at stride C took 40 % of the flipped transform's time (128 x 128 channels) */          \
        T *wt = (T *)malloc((size_t)9 * tap * sizeof(T));                                                   \
        if (wt) {                                                                                           \
            for (int ij = 0; ij < 9; ij++) {                                                                \
                const T *src = w + (ptrdiff_t)(8 - ij) * tap; /* tap (2 - i, 2 - j), (K, C) */              \
                T *dst = wt + (ptrdiff_t)ij * tap;            /* (C, K) */                                  \
                for (int k0 = 0; k0 < K; k0 += 32)                                                          \
                    for (int c0 = 0; c0 < C; c0 += 32)                                                      \
                        for (int k = k0; k < K && k < k0 + 32; k++)                                         \
                            for (int c = c0; c < C && c < c0 + 32; c++)                                     \
                                dst[(ptrdiff_t)c * K + k] = src[(ptrdiff_t)k * C + c];                      \
            }                                                                                               \
            NAME(wt, C, K, vb, 0, out, threads);                                                            \
            free(wt);                                                                                       \
            return;                                                                                         \
        }                                                                                                   \
    }                                                                                                       \
    /* every (kb, c) writes its own slots of out: split across the threads (a training step transforms \
     * each 3x3 weight twice, forward and input gradient) */                                                \
    FC_WINO_PARALLEL_FOR                                                                                    \
    for (ptrdiff_t kc = 0; kc < (ptrdiff_t)nkb * C; kc++) {                                                 \
        const int kb = (int)(kc / C), c = (int)(kc - (ptrdiff_t)kb * C);                                   \
        {                                                                                                   \
            double g[3][3][VMAX], t[AL][3][VMAX];                                                           \
            const int nv = K - kb * vb < vb ? K - kb * vb : vb;                                             \
            /* the loads: contiguous along k forward; along k at stride C for the flipped weight */         \
            for (int i = 0; i < 3; i++)                                                                     \
                for (int j = 0; j < 3; j++) {                                                               \
                    if (flip) {                                                                             \
                        const T *src = w + (2 - i) * 3 * tap + (2 - j) * tap + (ptrdiff_t)kb * vb * C + c;  \
                        for (int v = 0; v < nv; v++)                                                        \
                            g[i][j][v] = src[(ptrdiff_t)v * C];                                             \
                    } else {                                                                                \
                        const T *src = w + i * 3 * tap + j * tap + (ptrdiff_t)c * K + kb * vb;              \
                        if (nv == VMAX) /* a full AVX-512 block: a constant trip count */                   \
                            for (int v = 0; v < VMAX; v++)                                                  \
                                g[i][j][v] = src[v];                                                        \
                        else                                                                                \
                            for (int v = 0; v < nv; v++)                                                    \
                                g[i][j][v] = src[v];                                                        \
                    }                                                                                       \
                    for (int v = nv; v < VMAX; v++)                                                         \
                        g[i][j][v] = 0;                                                                     \
                }                                                                                           \
            /* VMAX lanes whatever vb (a constant trip count the compiler vectorises); vb of them kept.   \
             * G g G^T separably, each 1-D G (3 -> AL values) by FC_WINO_G1 (G's structure: 9 operations    \
             * instead of 18 multiply-adds for AL = 6) */                                                   \
            for (int j = 0; j < 3; j++)                                                                     \
                for (int v = 0; v < VMAX; v++)                                                              \
                    FC_WINO_G1(AL, g[0][j][v], g[1][j][v], g[2][j][v], t, [j][v]);                          \
            T *o = out + ((ptrdiff_t)kb * C + c) * vb;                                                      \
            _Pragma("GCC unroll 6")                                                                         \
            for (int a = 0; a < AL; a++) {                                                                  \
                double r[AL][VMAX];                                                                         \
                for (int v = 0; v < VMAX; v++)                                                              \
                    FC_WINO_G1(AL, t[a][0][v], t[a][1][v], t[a][2][v], r, [v]);                             \
                for (int b = 0; b < AL; b++) {                                                              \
                    T rt[VMAX];                                                                             \
                    for (int v = 0; v < VMAX; v++)                                                          \
                        rt[v] = (T)r[b][v];                                                                 \
                    T *od = o + (a * AL + b) * ps;                                                          \
                    if (vb == VMAX)                                                                         \
                        memcpy(od, rt, sizeof(rt));                                                         \
                    else                                                                                    \
                        for (int v = 0; v < vb; v++)                                                        \
                            od[v] = rt[v];                                                                  \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
}
#define FC_IMPL "winograd_impl.h"
#include "fc_instantiate.h"

/* The transform, compiled per SIMD level inside winograd_impl.h (fc_wino_transform4/2_<sfx>: outside
 * the target regions its double arithmetic ran 2 lanes wide and took ~20 % of a 128 -> 128 channel
 * forward on 7x7 maps); float64 has the generic copy. */
static void fc_wino_transform_f32(int isa, const float *w, int C, int K, int m, int vb, int flip, float *out,
                                  int threads)
{
    if (m == 4)
        FC_PICK(isa, fc_wino_transform4, w, C, K, vb, flip, out, threads);
    else
        FC_PICK(isa, fc_wino_transform2, w, C, K, vb, flip, out, threads);
}
static void fc_wino_transform_f64(const double *w, int C, int K, int m, int vb, int flip, double *out, int threads)
{
    (m == 4 ? fc_wino_transform4_f64_generic : fc_wino_transform2_f64_generic)(w, C, K, vb, flip, out, threads);
}
#undef FC_WINO_TRANSFORM
#undef FC_WINO_G1
#undef FC_WINO_PARALLEL_FOR

/* dw[ij][c][k] = the sum of the nparts partials of fc_wino_wgrad_tiles (psize elements apart), each
 * already folded by G^T . G into its first 9 positions (P: 9 x sc x kp), summed in part order in T.
 * Input channels c split over `threads` threads (every c writes its own dw entries: the result does
 * not depend on the split). */
#ifdef _OPENMP
#define FC_WINO_FINISH_FOR _Pragma("omp parallel for schedule(static) num_threads(threads) if(threads > 1)")
#else
#define FC_WINO_FINISH_FOR
#endif
#define FC_WINO_FINISH(NAME, T)                                                                             \
static void NAME(const T *parts, ptrdiff_t psize, int nparts, int C, int K, int sc, int kp, T *dw,            \
                 int threads)                                                                                \
{                                                                                                           \
    const ptrdiff_t sps = (ptrdiff_t)sc * kp, tap = (ptrdiff_t)C * K;                                       \
    (void)threads;                                                                                          \
    FC_WINO_FINISH_FOR                                                                                      \
    for (int c = 0; c < C; c++)                                                                             \
        for (int ij = 0; ij < 9; ij++) {                                                                    \
            const T *s0 = parts + ij * sps + (ptrdiff_t)c * kp;                                             \
            T *o = dw + ij * tap + (ptrdiff_t)c * K;                                                        \
            for (int k = 0; k < K; k++)                                                                     \
                o[k] = s0[k];                                                                               \
            for (int q = 1; q < nparts; q++) {                                                              \
                const T *sq = s0 + q * psize;                                                               \
                for (int k = 0; k < K; k++)                                                                 \
                    o[k] = o[k] + sq[k];                                                                    \
            }                                                                                               \
        }                                                                                                   \
}
FC_WINO_FINISH(fc_wino_wgrad_finish_f32, float)
FC_WINO_FINISH(fc_wino_wgrad_finish_f64, double)
#undef FC_WINO_FINISH
#undef FC_WINO_FINISH_FOR

/* ---- float32, SIMD level chosen by `isa` ---- */
static int fc_wino_block_f32(int isa) { return FC_PICK(isa, fc_wino_block); }
static size_t fc_wino_scratch_f32(int isa, const fc_wino *p, int TB) { return FC_PICK(isa, fc_wino_scratch_bytes, p, TB); }
static void fc_wino_tiles_f32(int isa, const fc_wino *p, const float *in, const float *U, const float *bias,
                              float *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    FC_PICK(isa, fc_wino_tiles, p, in, U, bias, out, t0, t1, TB, scratch);
}

static size_t fc_wino_wgrad_scratch_f32(int isa, const fc_wino *p, int TB) { return FC_PICK(isa, fc_wino_wgrad_scratch_bytes, p, TB); }
static ptrdiff_t fc_wino_wgrad_partial_f32(int isa, const fc_wino *p) { return FC_PICK(isa, fc_wino_wgrad_partial, p); }
static void fc_wino_wgrad_tiles_f32(int isa, const fc_wino *p, const float *in, const float *dy, ptrdiff_t t0,
                                    ptrdiff_t t1, int TB, float *S, char *scratch)
{
    FC_PICK(isa, fc_wino_wgrad_tiles, p, in, dy, t0, t1, TB, S, scratch);
}

/* ---- float64 (isa ignored) ---- */
static size_t fc_wino_wgrad_scratch_f64(int isa, const fc_wino *p, int TB) { (void)isa; return fc_wino_wgrad_scratch_bytes_f64_generic(p, TB); }
static ptrdiff_t fc_wino_wgrad_partial_f64(int isa, const fc_wino *p) { (void)isa; return fc_wino_wgrad_partial_f64_generic(p); }
static void fc_wino_wgrad_tiles_f64(int isa, const fc_wino *p, const double *in, const double *dy, ptrdiff_t t0,
                                    ptrdiff_t t1, int TB, double *S, char *scratch)
{
    (void)isa;
    fc_wino_wgrad_tiles_f64_generic(p, in, dy, t0, t1, TB, S, scratch);
}
static int fc_wino_block_f64(int isa) { (void)isa; return fc_wino_block_f64_generic(); }
static size_t fc_wino_scratch_f64(int isa, const fc_wino *p, int TB) { (void)isa; return fc_wino_scratch_bytes_f64_generic(p, TB); }
static void fc_wino_tiles_f64(int isa, const fc_wino *p, const double *in, const double *U, const double *bias,
                              double *out, ptrdiff_t t0, ptrdiff_t t1, int TB, char *scratch)
{
    (void)isa;
    fc_wino_tiles_f64_generic(p, in, U, bias, out, t0, t1, TB, scratch);
}

#endif
