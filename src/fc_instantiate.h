/* fc_instantiate.h: compiles one kernel family at every element type and SIMD level.
 *
 * Each src/<family>_kernels.h defines FC_IMPL (its impl header, e.g. "conv_impl.h") and includes
 * this file once; the levels, their order and their per-level facts are written here only.
 *
 *   float32: generic (4-wide: SSE2 on x86-64, NEON on aarch64), AVX2+FMA (8-wide), AVX-512 (16-wide)
 *   float64: generic (2-wide) only; it serves gradient checks, not speed
 *   FC_WITH_SCALAR (optional, 1): also a 1-lane level below each generic one (pooling's tiny C)
 *
 * What the impl header sees at each level:
 *   FC_T, FC_IT     element type and the signed integer of its size (lane type of a comparison mask)
 *   FC_IS_F32       1 for float, 0 for double
 *   FC_VLEN, FC_SFX elements per vector; the suffix of every function name (_f32_avx2, ...)
 *   FC_NARROW(name) the same function one level narrower, for inputs thinner than a vector;
 *                   undefined at the narrowest level (the impl then falls back to scalar code).
 *                   DW_NARROW and PL_NARROW are the names depthwise_impl.h and pool_impl.h read.
 *   FC_NT(p, v)     non-temporal store of one vector (x86 only; undefined where there is none)
 *   FC_MAXV(a, b)   vector max, FC_UNORDV(a, b) "either is NaN" mask (x86 only, where they exist)
 *   FC_LD_TAIL(p, n), FC_ST_TAIL(p, n, v)  load / store the first n (< VLEN) lanes at p as one masked
 *                   instruction, the other lanes neither read nor written (AVX2 and AVX-512 float32;
 *                   undefined elsewhere: the impl then goes lane by lane)
 * The x86 levels sit inside `#pragma GCC target` regions so one build runs on any x86-64;
 * fc_common.h's FC_PICK chooses among them per call.
 *
 * Level order matters: a level may call its FC_NARROW neighbour, so that one comes first.
 * No include guard: included once per family translation unit, on purpose.
 */
#ifndef FC_IMPL
#error "define FC_IMPL (the family's impl header) before including fc_instantiate.h"
#endif
#ifndef FC_WITH_SCALAR
#define FC_WITH_SCALAR 0
#endif

/* ---------------- float32 ---------------- */
#define FC_T float
#define FC_IT int32_t
#define FC_IS_F32 1

#if FC_WITH_SCALAR
#define FC_VLEN 1
#define FC_SFX _f32_scalar
#include FC_IMPL
#undef FC_VLEN
#undef FC_SFX
#endif

#define FC_VLEN 4
#define FC_SFX _f32_generic
#if FC_WITH_SCALAR
#define FC_NARROW(name) name##_f32_scalar
#define DW_NARROW FC_NARROW
#define PL_NARROW FC_NARROW
#endif
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntps((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpunordps((a), (b))
#endif
#include FC_IMPL
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#undef FC_NARROW
#undef DW_NARROW
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX

#if FC_X86
/* the masked tail loads' operand types (one definition per translation unit) */
typedef int fc_v8si_ __attribute__((vector_size(32)));
typedef float fc_v8sf_ __attribute__((vector_size(32)));
typedef float fc_v16sf_ __attribute__((vector_size(64)));
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FC_VLEN 8
#define FC_SFX _f32_avx2
#define FC_NARROW(name) name##_f32_generic
#define DW_NARROW FC_NARROW
#define PL_NARROW FC_NARROW
#define FC_NT(p, v) __builtin_ia32_movntps256((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps256((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpps256((a), (b), 3 /* _CMP_UNORD_Q */)
#define FC_TAIL_MASK8(n) ((fc_v8si_){0, 1, 2, 3, 4, 5, 6, 7} < (n))
#define FC_LD_TAIL(p, n) __builtin_ia32_maskloadps256((const fc_v8sf_ *)(p), FC_TAIL_MASK8(n))
#define FC_ST_TAIL(p, n, v) __builtin_ia32_maskstoreps256((fc_v8sf_ *)(p), FC_TAIL_MASK8(n), (fc_v8sf_)(v))
#include FC_IMPL
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#undef FC_TAIL_MASK8
#undef FC_LD_TAIL
#undef FC_ST_TAIL
#undef FC_NARROW
#undef DW_NARROW
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define FC_VLEN 16
#define FC_SFX _f32_avx512
#define FC_NARROW(name) name##_f32_avx2
#define DW_NARROW FC_NARROW
#define PL_NARROW FC_NARROW
#define FC_NT(p, v) __builtin_ia32_movntps512((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxps512_mask((a), (b), (a), (unsigned short)0xFFFF, 4)
/* no FC_UNORDV: AVX-512 compares give a mask register, not a vector; the impl's portable form is used */
#define FC_LD_TAIL(p, n) __builtin_ia32_loadups512_mask((p), (fc_v16sf_){0}, (unsigned short)((1u << (n)) - 1))
#define FC_ST_TAIL(p, n, v) __builtin_ia32_storeups512_mask((p), (fc_v16sf_)(v), (unsigned short)((1u << (n)) - 1))
#include FC_IMPL
#undef FC_NT
#undef FC_MAXV
#undef FC_LD_TAIL
#undef FC_ST_TAIL
#undef FC_NARROW
#undef DW_NARROW
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX
#pragma GCC pop_options
#endif /* FC_X86 */

#undef FC_T
#undef FC_IT
#undef FC_IS_F32

/* ---------------- float64 ---------------- */
#define FC_T double
#define FC_IT int64_t
#define FC_IS_F32 0

#if FC_WITH_SCALAR
#define FC_VLEN 1
#define FC_SFX _f64_scalar
#include FC_IMPL
#undef FC_VLEN
#undef FC_SFX
#endif

#define FC_VLEN 2
#define FC_SFX _f64_generic
#if FC_WITH_SCALAR
#define FC_NARROW(name) name##_f64_scalar
#define DW_NARROW FC_NARROW
#define PL_NARROW FC_NARROW
#endif
#if FC_X86
#define FC_NT(p, v) __builtin_ia32_movntpd((p), (v))
#define FC_MAXV(a, b) __builtin_ia32_maxpd((a), (b))
#define FC_UNORDV(a, b) __builtin_ia32_cmpunordpd((a), (b))
#endif
#include FC_IMPL
#undef FC_NT
#undef FC_MAXV
#undef FC_UNORDV
#undef FC_NARROW
#undef DW_NARROW
#undef PL_NARROW
#undef FC_VLEN
#undef FC_SFX

#undef FC_T
#undef FC_IT
#undef FC_IS_F32
#undef FC_WITH_SCALAR
#undef FC_IMPL
