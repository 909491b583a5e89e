/* gemm_impl.h: what the GEMM's files (gemm.c, the driver; gemm_micro.c,
 * the micro-kernels; gemm_pack.c, the packed layouts) must agree on: the
 * tile shape and the depth of the K blocks, which fix every element's
 * summation order, the vector type and its fused multiply-add, and the
 * epilogue flags a tile is stored with. One definition of each, so that
 * the files cannot drift apart in what decides the bits. Each file is
 * compiled with the GEMM's flags (KFLAGS_gemm in the Makefile). */
#ifndef NETCC_RUNTIME_GEMM_IMPL_H
#define NETCC_RUNTIME_GEMM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "kset.h"
#include "runtime.h"

/* VW floats per vector; tiles MR x NV vectors: the kernel set's (kset.h),
 * chosen by the flags this file is compiled with. GEMM_VW, GEMM_MR and
 * GEMM_NV override, to test another ISA's shapes on this one. */
#if defined(GEMM_VW)
#define VW GEMM_VW
#elif defined(RT_KSET_THIS)
#define VW RT_KSET_THIS_VW
#else
#define VW 4 /* SSE2 on x86-64; GCC lowers the vectors on any other target */
#endif
#if defined(GEMM_MR)
#define MR GEMM_MR
#define NV GEMM_NV
#elif defined(RT_KSET_THIS)
#define MR RT_KSET_THIS_MR
#define NV RT_KSET_THIS_NV
#else
#define MR 6
#define NV 2
#endif
#define NR (VW * NV) /* columns of a tile */

/* KC is part of the result (it fixes the summation order), so it is the
 * same on every ISA: an AVX2 and an AVX-512 machine give the same bits.
 * 256 rows of an NR-wide B panel are 16 KiB (AVX2), half of a 32 KiB L1. */
#define KC 256

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int vi __attribute__((vector_size(VW * sizeof(float))));

static inline vf vload(const float *p)
{
	vf v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline void vstore(float *p, vf v)
{
	memcpy(p, &v, sizeof v);
}

static inline vf vsplat(float x)
{
	return __builtin_shuffle((vf){x}, (vi){0}); /* a broadcast */
}

/* acc + a * b, rounded once where the ISA has FMA. Spelt out rather than
 * left to -ffp-contract: GCC keeps some accumulator chains as a multiply
 * and an add when tuning for CPUs with slow FMA chains (-march=znver2
 * does, for a one-accumulator loop), which would make an edge tile's bits
 * differ from an inner tile's and results depend on the task split. */
static inline vf vfma(vf a, vf b, vf acc)
{
#if VW == 16 && defined(__AVX512F__)
	return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif VW == 8 && defined(__FMA__)
	return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#elif VW == 4 && defined(__FMA__)
	return (vf)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)acc);
#elif VW == 4 && defined(__ARM_NEON)
	return (vf)vfmaq_f32((float32x4_t)acc, (float32x4_t)a, (float32x4_t)b);
#else
	return acc + a * b; /* no FMA (SSE2, or a GEMM_VW override for tests) */
#endif
}

/* Epilogue flags for a tile: add the epilogue's add (after the first K
 * block, C's partial sums instead), and on the last K block bias and relu. */
enum { EP_LOAD = 1, EP_LAST = 2, EP_RELU = 4 };

/* The depth of the K blocks: about KC, evened out, a function of k alone. */
static inline int kc_of(int k)
{
	int blocks = (k + KC - 1) / KC;
	return (k + blocks - 1) / blocks;
}

/* m rows in whole panels of mr: the row stride of a packed A's K blocks */
static inline size_t mpad_of(int mr, int m)
{
	return (size_t)(m + mr - 1) / mr * mr;
}

/* gemm_micro.c: the mc rows of a packed A block times one B panel */
void rt_gemm_panel(int kc, const float *ap, const float *bp, size_t ldb, float *c, const float *lc,
                   size_t ldc, int mc, int nr, const float *bias, int f);

/* Columns the edge kernel takes (vectors along M, gemm_micro.c's edge):
 * only where a panel's rows fit a vector */
#if MR <= VW
#define EDGE_N 4
#endif /* else none: panels taller than a vector (NEON) */

/* Whether a whole panel and a last one of a vector and up to EDGE_N columns
 * run as tiles three vectors wide (rt_gemm_panel_wide): with AVX-512's 32
 * registers and 12-row panels, split 8 + 4 */
#if VW >= 16 && MR == 12 && NV == 2
#define GEMM_WIDE 1
void rt_gemm_panel_wide(int kc, const float *ap, const float *bp, const float *b1, size_t ldb,
                        float *c, const float *lc, size_t ldc, int mc, int nr1, const float *bias,
                        int f);
#else
#define GEMM_WIDE 0
#endif

#endif
