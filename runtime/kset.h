/* kset.h: the kernel sets. The runtime's compute kernels (the GEMM,
 * Winograd, the direct convolutions, pooling, the element-wise and
 * training kernels) are compiled once per set, each for one vector ISA
 * (the Makefile's kernel-set rules); a target names the set its code
 * links. What the compiler must know of a set it may not be running on
 * is here, the one place both sides read: the GEMM's register tile,
 * which fixes the layout of packed weights, and the CPU features the
 * set's code needs.
 *
 *   const rt_kset *k = rt_kset_find("avx512");
 *   size_t floats = rt_gemm_packed_a_floats_mr(k->mr, oc, c * 9);
 *   uint64_t missing = k->needs & ~rt_cpu_features();   // RT_CPU_* bits
 */
#ifndef NETCC_RUNTIME_KSET_H
#define NETCC_RUNTIME_KSET_H

#include <stddef.h>
#include <stdint.h>

/* CPU features a kernel set or a target needs, as bits (runtime/cpu.c
 * reads them from CPUID and the OS's enabled register state). */
#define RT_CPU_FEATURES(X)                                                                         \
	X(AVX, "avx")                                                                              \
	X(AVX2, "avx2")                                                                            \
	X(FMA, "fma")                                                                              \
	X(F16C, "f16c")                                                                            \
	X(BMI1, "bmi")                                                                             \
	X(BMI2, "bmi2")                                                                            \
	X(LZCNT, "lzcnt")                                                                          \
	X(MOVBE, "movbe")                                                                          \
	X(AVX512F, "avx512f")                                                                      \
	X(AVX512BW, "avx512bw")                                                                    \
	X(AVX512CD, "avx512cd")                                                                    \
	X(AVX512DQ, "avx512dq")                                                                    \
	X(AVX512VL, "avx512vl")                                                                    \
	X(AVX512BF16, "avx512bf16")                                                                \
	X(AVX512FP16, "avx512fp16")                                                                \
	X(AMX_TILE, "amx-tile")                                                                    \
	X(AMX_BF16, "amx-bf16")                                                                    \
	X(NEON, "neon")

enum {
#define X(e, name) RT_CPU_BIT_##e,
	RT_CPU_FEATURES(X)
#undef X
	    RT_CPU_BIT_COUNT
};
#define X(e, name) static const uint64_t RT_CPU_##e = 1ull << RT_CPU_BIT_##e;
RT_CPU_FEATURES(X)
#undef X

/* x86-64-v3 and x86-64-v4 as the psABI defines the levels (what LLVM and
 * GCC assume of -march=x86-64-v3/v4), less what compilers never emit for
 * float kernels (it is still checked: the levels are the promise). */
#define RT_CPU_X86_64_V3                                                                           \
	(RT_CPU_AVX | RT_CPU_AVX2 | RT_CPU_FMA | RT_CPU_F16C | RT_CPU_BMI1 | RT_CPU_BMI2 |         \
	 RT_CPU_LZCNT | RT_CPU_MOVBE)
#define RT_CPU_X86_64_V4                                                                           \
	(RT_CPU_X86_64_V3 | RT_CPU_AVX512F | RT_CPU_AVX512BW | RT_CPU_AVX512CD | RT_CPU_AVX512DQ | \
	 RT_CPU_AVX512VL)

/* The sets: vector width in floats, the GEMM's register tile (MR rows by
 * NV vectors), and what their code needs. A row here and the set's
 * compile flags in the Makefile make a set; the GEMM (gemm_impl.h) takes MR
 * and NV from here for the set it is compiled as. */
#define RT_KSET_AVX2_VW   8
#define RT_KSET_AVX2_MR   6
#define RT_KSET_AVX2_NV   2
#define RT_KSET_AVX512_VW 16
#define RT_KSET_AVX512_MR 12
#define RT_KSET_AVX512_NV 2
#define RT_KSET_NEON_VW   4
#define RT_KSET_NEON_MR   8
#define RT_KSET_NEON_NV   3

#define RT_KSETS(X)                                                                                \
	X(AVX2, "avx2", RT_CPU_X86_64_V3)                                                          \
	X(AVX512, "avx512", RT_CPU_X86_64_V4)                                                      \
	X(NEON, "neon", RT_CPU_NEON)

/* Bounds over every set, for sizes the compiler fixes without knowing
 * the set (IR shapes, scratch): rows of a register tile, floats of a
 * vector. */
enum { RT_KSET_MR_MAX = 16, RT_KSET_VW_MAX = 16 };

/* Which set this file is being compiled as, from the compiler's ISA
 * macros (the Makefile's flags decide). */
#if defined(__AVX512F__)
#define RT_KSET_THIS AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define RT_KSET_THIS AVX2
#elif defined(__ARM_NEON)
#define RT_KSET_THIS NEON
#endif
#define RT_KSET_GET2_(set, what) RT_KSET_##set##_##what
#define RT_KSET_GET_(set, what)  RT_KSET_GET2_(set, what)
#ifdef RT_KSET_THIS
#define RT_KSET_THIS_VW RT_KSET_GET_(RT_KSET_THIS, VW)
#define RT_KSET_THIS_MR RT_KSET_GET_(RT_KSET_THIS, MR)
#define RT_KSET_THIS_NV RT_KSET_GET_(RT_KSET_THIS, NV)
#endif

typedef struct rt_kset {
	const char *name;
	int vw, mr, nv;
	uint64_t needs; /* RT_CPU_* */
} rt_kset;

/* NULL when there is no such set */
const rt_kset *rt_kset_find(const char *name);
/* the sets, in the order above; *n of them */
const rt_kset *rt_kset_all(int *n);

/* This CPU's features as RT_CPU_* bits (and the OS saves the registers
 * they use). */
uint64_t rt_cpu_features(void);
/* The names of the bits of mask, space-separated, into buf; buf. */
char *rt_cpu_feature_names(uint64_t mask, char *buf, size_t len);

#endif
