/* One optimizer step over a run of n elements of one weight (float32 and float64).
 *
 * fastconv/optimizers/__init__.py keeps the NumPy update of every optimizer as the reference; these
 * loops do the same arithmetic, in the same order and in the weight's dtype, element by element: the
 * gradient clipped (scaled by `scale`, or clamped to [-clipvalue, clipvalue]), the decoupled weight
 * decay `p -= p * wd`, then the optimizer's update of its slots and of p.  The scalars (learning rate,
 * bias corrections, 1 - beta, ...) are computed once per step in Python in double and rounded to the
 * weight's dtype here, as NumPy rounds a Python float combined with a float32 array.  Nothing here
 * allocates, raises or reads outside [0, n); the caller (src/optim.pyx) cuts the weights into chunks.
 * Counts are ptrdiff_t (docs/kernels.md: never long).
 */
#ifndef FC_OPTIM_IMPL_H
#define FC_OPTIM_IMPL_H

#include <math.h>
#include <stddef.h>

enum { FC_OPT_SGD = 0, FC_OPT_RMSPROP, FC_OPT_ADAM, FC_OPT_ADAGRAD, FC_OPT_ADADELTA, FC_OPT_ADAMAX,
       FC_OPT_NADAM, FC_OPT_NKINDS };
/* flags */
enum { FC_OPT_MOMENTUM = 1, FC_OPT_NESTEROV = 2, FC_OPT_CENTERED = 4, FC_OPT_AMSGRAD = 8 };
/* gradient clipping: none, multiply by the weight's scale (clipnorm, global_clipnorm), clamp */
enum { FC_CLIP_NONE = 0, FC_CLIP_SCALE = 1, FC_CLIP_VALUE = 2 };

typedef struct {
    int kind, flags, clip;
    double clipvalue;
    double wd;      /* weight_decay * lr; 0: none */
    double c[8];    /* the optimizer's scalars, see each case below */
} fc_opt_args;

/* NumPy's maximum: NaN wins */
#define FC_OPT_MAX(a, b) (((a) >= (b) || (a) != (a)) ? (a) : (b))
/* The gradient clip every update applies first (sc, cv, ncv: the chunk's scale and clip bounds) */
#define FC_OPT_CLIP(g) \
    do { if (clip == FC_CLIP_SCALE) (g) = (g) * sc; \
         else if (clip == FC_CLIP_VALUE) (g) = (g) < ncv ? ncv : ((g) > cv ? cv : (g)); } while (0)

#define FC_OPT_DEFINE(SUF, T, SQRT, FABS)                                                             \
static void fc_opt_update_##SUF(const fc_opt_args *a, T *p, const T *gr, T *s0, T *s1, T *s2,          \
                                ptrdiff_t n, double scale, int wd_on)                                  \
{                                                                                                      \
    const T sc = (T)scale, cv = (T)a->clipvalue, ncv = -(T)a->clipvalue, wd = (T)a->wd;               \
    const T c0 = (T)a->c[0], c1 = (T)a->c[1], c2 = (T)a->c[2], c3 = (T)a->c[3];                       \
    const T c4 = (T)a->c[4], c5 = (T)a->c[5], c6 = (T)a->c[6];                                        \
    const int clip = a->clip, flags = a->flags, decay = wd_on && a->wd != 0.0;                         \
    ptrdiff_t i;                                                                                       \
    if (decay)                                                                                         \
        for (i = 0; i < n; i++) p[i] = p[i] - p[i] * wd;                                               \
    switch (a->kind) {                                                                                 \
    case FC_OPT_SGD: /* c0 lr, c1 momentum; s0 momentum */                                           \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T t = g * c0;                                                                              \
            if (!(flags & FC_OPT_MOMENTUM)) { p[i] = p[i] - t; continue; }                             \
            T m = s0[i] * c1 - t;                                                                      \
            s0[i] = m;                                                                                 \
            if (flags & FC_OPT_NESTEROV) p[i] = (p[i] - t) + m * c1;                                   \
            else p[i] = p[i] + m;                                                                      \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_RMSPROP: /* c0 lr, c1 rho, c2 1-rho, c3 eps, c4 momentum; s0 velocity,               \
                            s1 momentum, s2 average_gradient */                                        \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T v = s0[i] * c1 + (g * g) * c2;                                                           \
            s0[i] = v;                                                                                 \
            T d;                                                                                       \
            if (flags & FC_OPT_CENTERED) {                                                             \
                T av = s2[i] * c1 + c2 * g;                                                            \
                s2[i] = av;                                                                            \
                d = (v - av * av) + c3;                                                                \
            } else {                                                                                   \
                d = v + c3;                                                                            \
            }                                                                                          \
            T inc = (c0 * g) / SQRT(d);                                                                \
            if (flags & FC_OPT_MOMENTUM) {                                                             \
                T m = s1[i] * c4 + inc;                                                                \
                s1[i] = m;                                                                             \
                p[i] = p[i] - m;                                                                       \
            } else {                                                                                   \
                p[i] = p[i] - inc;                                                                     \
            }                                                                                          \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_ADAM: /* c0 1-b1, c1 1-b2, c2 alpha, c3 eps; s0 momentum, s1 velocity,               \
                         s2 velocity_hat */                                                            \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T m = s0[i] + (g - s0[i]) * c0;                                                            \
            s0[i] = m;                                                                                 \
            T v = s1[i] + (g * g - s1[i]) * c1;                                                        \
            s1[i] = v;                                                                                 \
            if (flags & FC_OPT_AMSGRAD) {                                                              \
                v = FC_OPT_MAX(s2[i], v);                                                              \
                s2[i] = v;                                                                             \
            }                                                                                          \
            p[i] = p[i] - (m * c2) / (SQRT(v) + c3);                                                   \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_ADAGRAD: /* c0 lr, c1 eps; s0 accumulator */                                          \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T acc = s0[i] + g * g;                                                                     \
            s0[i] = acc;                                                                               \
            p[i] = p[i] - (c0 * g) / SQRT(acc + c1);                                                   \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_ADADELTA: /* c0 rho, c1 1-rho, c2 eps, c3 lr; s0 accumulated_grad,                    \
                             s1 accumulated_delta_var */                                               \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T ag = s0[i] * c0 + c1 * (g * g);                                                          \
            s0[i] = ag;                                                                                \
            T d = -(SQRT(s1[i] + c2) * g) / SQRT(ag + c2);                                             \
            s1[i] = s1[i] * c0 + c1 * (d * d);                                                         \
            p[i] = p[i] + d * c3;                                                                      \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_ADAMAX: /* c0 1-b1, c1 b2, c2 lr, c3 1-b1^t, c4 eps; s0 momentum, s1 norm */         \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T m = s0[i] + (g - s0[i]) * c0;                                                            \
            s0[i] = m;                                                                                 \
            T ub = s1[i] * c1, ag = FABS(g);                                                           \
            T u = FC_OPT_MAX(ub, ag);                                                                  \
            s1[i] = u;                                                                                 \
            p[i] = p[i] - (c2 * m) / (c3 * (u + c4));                                                  \
        }                                                                                              \
        break;                                                                                         \
    case FC_OPT_NADAM: /* c0 1-b1, c1 1-b2, c2 c_m, c3 c_g, c4 v_corr, c5 eps, c6 lr;                \
                          s0 momentum, s1 velocity */                                                  \
        for (i = 0; i < n; i++) {                                                                      \
            T g = gr[i];                                                                               \
            FC_OPT_CLIP(g);                                                                            \
            T m = s0[i] + (g - s0[i]) * c0;                                                            \
            s0[i] = m;                                                                                 \
            T v = s1[i] + (g * g - s1[i]) * c1;                                                        \
            s1[i] = v;                                                                                 \
            T mh = m * c2 + g * c3;                                                                    \
            p[i] = p[i] - (mh * c6) / (SQRT(v * c4) + c5);                                             \
        }                                                                                              \
        break;                                                                                         \
    default:                                                                                           \
        break;                                                                                         \
    }                                                                                                  \
}                                                                                                      \
                                                                                                       \
/* sum of squares in double, four partial sums (a fixed order whatever the thread) */                 \
static double fc_opt_sumsq_##SUF(const T *g, ptrdiff_t n)                                              \
{                                                                                                      \
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                             \
    ptrdiff_t i = 0;                                                                                   \
    for (; i + 4 <= n; i += 4) {                                                                       \
        double a = (double)g[i], b = (double)g[i + 1], c = (double)g[i + 2], d = (double)g[i + 3];     \
        s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d;                                            \
    }                                                                                                  \
    for (; i < n; i++) s0 += (double)g[i] * (double)g[i];                                              \
    return (s0 + s1) + (s2 + s3);                                                                      \
}

FC_OPT_DEFINE(f32, float, sqrtf, fabsf)
FC_OPT_DEFINE(f64, double, sqrt, fabs)

#endif
