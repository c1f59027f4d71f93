/* fc_common.h: build facts shared by every kernel module.
 *
 * - OpenMP: kernels are parallelised with Cython's prange; this header only reports whether the
 *   build has OpenMP, so a serial build still compiles and runs.
 * - SIMD levels: every micro-kernel is compiled once per level (generic, AVX2+FMA, AVX-512) by
 *   fc_instantiate.h, and the Python side picks one per call (fastconv/_dispatch.py); FC_PICK turns
 *   that choice into a call.  fc_cpu_isa() says what the CPU has.
 */
#ifndef FC_COMMON_H
#define FC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define FC_HAVE_OPENMP 1
#else
#define FC_HAVE_OPENMP 0
#endif

enum { FC_ISA_GENERIC = 0, FC_ISA_AVX2 = 1, FC_ISA_AVX512 = 2 };

/* Whether the x86 multi-versioned paths are compiled at all (GCC or clang on x86-64). */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define FC_X86 1
#else
#define FC_X86 0
#endif

/* FC_PICK(isa, name, args...): call name_f32_<level>(args...) for the level `isa` names; off x86
 * only the generic level exists.  (float64 has the generic level alone; its entries call it directly.) */
#if FC_X86
#define FC_PICK(isa, name, ...)                                                        \
    ((isa) == FC_ISA_AVX512 ? name##_f32_avx512(__VA_ARGS__)                           \
     : (isa) == FC_ISA_AVX2 ? name##_f32_avx2(__VA_ARGS__) : name##_f32_generic(__VA_ARGS__))
#else
#define FC_PICK(isa, name, ...) name##_f32_generic(__VA_ARGS__)
#endif

/* Vector width in bytes of a level (the alignment non-temporal stores need). */
static inline int fc_vector_bytes(int isa) { return isa == FC_ISA_AVX512 ? 64 : isa == FC_ISA_AVX2 ? 32 : 16; }

/* Orders the non-temporal stores (FC_NT, fc_instantiate.h) before whatever follows them. */
#if FC_X86
#define FC_SFENCE() __builtin_ia32_sfence()
#else
#define FC_SFENCE() ((void)0)
#endif

/* Best SIMD level this CPU (and OS) supports among the ones compiled in. */
static inline int fc_cpu_isa(void)
{
#if FC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return FC_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FC_ISA_AVX2;
#endif
    return FC_ISA_GENERIC;
}

static inline int fc_have_openmp(void) { return FC_HAVE_OPENMP; }

static inline int fc_num_procs(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

#ifndef __VERSION__
#define __VERSION__ "unknown"
#endif
static inline const char *fc_compiler_version(void)
{
#if defined(__clang__)
    return "clang " __VERSION__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return __VERSION__;
#endif
}

/* Floor division for possibly negative numerators (C's / truncates toward zero). */
static inline int fc_floordiv(int a, int b) { return (a >= 0) ? a / b : -((-a + b - 1) / b); }
static inline int fc_ceildiv(int a, int b) { return -fc_floordiv(-a, b); }
static inline int fc_min(int a, int b) { return a < b ? a : b; }
static inline int fc_max(int a, int b) { return a > b ? a : b; }

#endif /* FC_COMMON_H */
