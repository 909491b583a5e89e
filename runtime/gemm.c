/* Single-precision GEMM: C = A . B with a fused epilogue, parallel on an
 * rt_threads, with the same bits whatever the thread count.
 *
 * The GotoBLAS/BLIS structure: for each NC-wide column block of C and each
 * KC-deep block of the sum, B is packed into NR-wide panels (kept in L1 by
 * the micro-kernel, the whole block in L2/L3); for each MC-tall row block
 * A is packed into MR-tall panels (the block stays in L2); an MR x NR
 * micro-kernel then keeps its tile of C in registers for the whole KC
 * block. Compiled once per kernel set (kset.h, the Makefile), the vector
 * width, MR and NR are the set's.
 *
 * Determinism: every element of C is computed the same way wherever it
 * lies: the sum over k is cut into blocks whose size depends on k alone,
 * each block is summed in order by one fused multiply-add per term
 * starting from zero, and the blocks are added onto C in order. Threads
 * only decide who computes which tile, and the kernels for edge tiles
 * keep the same order, so an element has the same bits whether its row
 * and column are computed alone or among others (a batch of one gives
 * what the same sample gives in a batch of many). */
#include <stdbool.h>
#include <stdlib.h>
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
/* A block of MC x KC floats stays in L2 (144 KiB of 512 KiB). */
#ifndef GEMM_MC
#define GEMM_MC 144
#endif
/* A block of KC x NC floats of B stays in L2/L3. */
#ifndef GEMM_NC
#define GEMM_NC 1024
#endif
/* Without reuse, B is packed this many columns at a time. */
#ifndef GEMM_BG
#define GEMM_BG 128
#endif
#ifndef PF_ROWS
#define PF_ROWS 4
#endif
#define MC (GEMM_MC / MR * MR)
#define BG (GEMM_BG / NR * NR)
#define NC (GEMM_NC / NR * NR)

/* Parallel splitting: below PAR_MIN_FLOPS one task (a pool wake-up costs
 * a microsecond or more); tasks of at least TASK_FLOPS, up to
 * TASKS_PER_THREAD per thread so a thread held up by something else on
 * the machine holds the others up less (on an idle machine one task per
 * thread measured a few percent faster: bigger blocks). */
#define PAR_MIN_FLOPS (256.0 * 1024)
#define TASK_FLOPS    (2.0 * 1024 * 1024)
#ifndef TASKS_PER_THREAD
#define TASKS_PER_THREAD 2
#endif
/* The operand every task would pack in full is packed once for all
 * first, in a pool run of its own, when it has at least PREPACK_MIN
 * floats (below, a second wake-up of the pool costs more than packing it
 * again in each task) and at most PREPACK_MAX (64 MiB). */
#ifndef PREPACK_MIN
#define PREPACK_MIN (32.0 * 1024)
#endif
#ifndef PREPACK_MAX
#define PREPACK_MAX (16.0 * 1024 * 1024)
#endif

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

/* The epilogue on one value. The vector version in micro() performs the
 * same operations in the same order, so edge and inner tiles agree. */
static inline float epi1(float v, const float *lc, const float *bias, int f)
{
	if (f & EP_LOAD)
		v = *lc + v;
	if (f & EP_LAST) {
		if (bias)
			v = v + *bias;
		if (f & EP_RELU)
			v = v < 0 ? 0.0f : v; /* NaN passes, as in rt_relu_ref */
	}
	return v;
}

/* Stores a rows x cols tile t (element (r, j) at t[r * trs + j * tcs]);
 * EP_LOAD adds lc's element (C's old one, or the epilogue's add). */
static void store_tile(const float *t, int trs, int tcs, float *c, const float *lc, size_t ldc,
                       int rows, int cols, const float *bias, int f)
{
	for (int r = 0; r < rows; r++)
		for (int j = 0; j < cols; j++)
			c[r * ldc + j] =
			    epi1(t[r * trs + j * tcs], lc + r * ldc + j, bias ? bias + r : NULL, f);
}

/* One rows x nv vectors tile of C from a packed A panel (kc x MR) and B
 * panel (kc rows of NR, ldb apart: NR packed, or B's own row stride where
 * it is read in place); only mr x nr of it is stored. Instantiated for
 * every tile size (see micro) so the edges of C cost what they hold; whole
 * (mr == rows and nr == nv * VW) stores the sums straight from registers. */
static inline __attribute__((always_inline)) void
micro_t(int rows, int nv, bool whole, int kc, const float *restrict ap, const float *restrict bp,
        size_t ldb, float *c, const float *lc, size_t ldc, int mr, int nr, const float *bias, int f)
{
	vf acc[MR][NV];
	for (int r = 0; r < rows; r++)
		for (int v = 0; v < nv; v++)
			acc[r][v] = (vf){0};
	/* The residual's rows are wanted only after the sums, and they come
	 * from memory (the block's input, computed layers ago): fetched now,
	 * they arrive meanwhile (ResNet-50's 64 -> 256 layers with a residual
	 * 2.0 -> 1.7 ms on 2 threads). */
	if (f & EP_LOAD)
		for (int r = 0; r < rows; r++)
			__builtin_prefetch(lc + r * ldc);
	for (int p = 0; p < kc; p++) {
		vf b[NV];
		for (int v = 0; v < nv; v++)
			b[v] = vload(bp + p * ldb + v * VW);
		for (int r = 0; r < rows; r++) {
			vf a = vsplat(ap[p * MR + r]);
			for (int v = 0; v < nv; v++)
				acc[r][v] = vfma(a, b[v], acc[r][v]);
		}
	}
	if (!whole) {
		float t[MR * NR];
		for (int r = 0; r < rows; r++)
			for (int v = 0; v < nv; v++)
				vstore(t + r * NR + v * VW, acc[r][v]);
		store_tile(t, NR, 1, c, lc, ldc, mr, nr, bias, f);
		return;
	}
	/* unrolled, so that the sums are named registers, not an array */
#pragma GCC unroll 16
	for (int r = 0; r < rows; r++) {
		float *cr = c + r * ldc;
#pragma GCC unroll 4
		for (int v = 0; v < nv; v++) {
			vf x = acc[r][v];
			if (f & EP_LOAD)
				x = vload(lc + r * ldc + v * VW) + x;
			if (f & EP_LAST) {
				if (bias)
					x = x + bias[r];
				if (f & EP_RELU)
					x = (vf)((vi)x & ~(x < 0));
			}
			vstore(cr + v * VW, x);
		}
	}
}

#define MICRO(rows, nv)                                                                            \
	micro_t(rows, nv, mr == (rows) && nr == (nv)*VW, kc, ap, bp, ldb, c, lc, ldc, mr, nr,      \
	        bias, f)
#define ROWS(nv)                                                                                   \
	switch (mr) {                                                                              \
	case 1:                                                                                    \
		MICRO(1, nv);                                                                      \
		return;                                                                            \
	case 2:                                                                                    \
		MICRO(2, nv);                                                                      \
		return;                                                                            \
	case 3:                                                                                    \
		MICRO(3 < MR ? 3 : MR, nv);                                                        \
		return;                                                                            \
	case 4:                                                                                    \
		MICRO(4 < MR ? 4 : MR, nv);                                                        \
		return;                                                                            \
	case 8:                                                                                    \
		MICRO(8 < MR ? 8 : MR, nv);                                                        \
		return;                                                                            \
	default:                                                                                   \
		MICRO(MR, nv);                                                                     \
		return;                                                                            \
	}

/* A whole rows x NV tile with its epilogue's flags known: its sums then stay
 * in registers to the store (behind branches on the flags, GCC spilled
 * them all first: a GEMM with K = 16 ran at 55% of the FMA peak). */
#define WHOLE_F(rows, fl)                                                                          \
	do {                                                                                       \
		if (bias)                                                                          \
			micro_t(rows, NV, true, kc, ap, bp, ldb, c, lc, ldc, rows, NR, bias, fl);  \
		else                                                                               \
			micro_t(rows, NV, true, kc, ap, bp, ldb, c, lc, ldc, rows, NR, NULL, fl);  \
		return;                                                                            \
	} while (0)
#define WHOLE(rows)                                                                                \
	switch (f) {                                                                               \
	case 0:                                                                                    \
		WHOLE_F(rows, 0);                                                                  \
	case EP_LOAD:                                                                              \
		WHOLE_F(rows, EP_LOAD);                                                            \
	case EP_LAST:                                                                              \
		WHOLE_F(rows, EP_LAST);                                                            \
	case EP_LOAD | EP_LAST:                                                                    \
		WHOLE_F(rows, EP_LOAD | EP_LAST);                                                  \
	case EP_LAST | EP_RELU:                                                                    \
		WHOLE_F(rows, EP_LAST | EP_RELU);                                                  \
	case EP_LOAD | EP_LAST | EP_RELU:                                                          \
		WHOLE_F(rows, EP_LOAD | EP_LAST | EP_RELU);                                        \
	}

/* A tile of C: the full-size kernel, or for an edge one just big enough
 * (up to 4 rows, or fewer vectors). The same arithmetic per element. */
static void micro(int kc, const float *ap, const float *bp, size_t ldb, float *c, const float *lc,
                  size_t ldc, int mr, int nr, const float *bias, int f)
{
	/* the whole tiles of a GEMM: MR rows, and the last row tile of the
	 * usual channel counts (64 = 10 x 6 + 4, 128 = 21 x 6 + 2, 10 x 12 + 8) */
	if (nr == NR) {
		if (mr == MR)
			WHOLE(MR);
		if (mr == 8)
			WHOLE(8 < MR ? 8 : MR);
		if (mr == 4)
			WHOLE(4 < MR ? 4 : MR);
		if (mr == 2)
			WHOLE(2 < MR ? 2 : MR);
	}
	int nv = (nr + VW - 1) / VW;
#if NV > 2
	if (nv == NV - 2)
		ROWS(NV - 2);
#endif
	if (nv == NV - 1)
		ROWS(NV - 1);
	ROWS(NV);
}

#if MR <= VW
/* The last columns of a block when they are few (nr <= EDGE_N): a vector
 * tile would be mostly padding (n = 49 at batch 1: 3 tiles of 16 and one
 * column). Vectors run along M instead, one A panel per vector (lanes
 * beyond MR hold the next row of the panel and are never stored), over g
 * panels at once so enough sums are in flight. The same arithmetic per
 * element as micro(). Reads up to VW - MR floats past the last panel. */
#define EDGE_N 4
static inline __attribute__((always_inline)) void
edge_t(int g, int nn, int kc, const float *restrict ap, const float *restrict bp, float *c,
       const float *lc, size_t ldc, int rows, const float *bias, int f)
{
	vf acc[12][EDGE_N];
	for (int q = 0; q < g; q++)
		for (int j = 0; j < nn; j++)
			acc[q][j] = (vf){0};
	for (int p = 0; p < kc; p++) {
		vf b[EDGE_N];
		for (int j = 0; j < nn; j++)
			b[j] = vsplat(bp[p * NR + j]);
		for (int q = 0; q < g; q++) {
			vf a = vload(ap + (size_t)q * MR * kc + p * MR);
			for (int j = 0; j < nn; j++)
				acc[q][j] = vfma(a, b[j], acc[q][j]);
		}
	}
	for (int q = 0; q < g; q++) {
		float t[EDGE_N * VW];
		for (int j = 0; j < nn; j++)
			vstore(t + j * VW, acc[q][j]);
		int mr = rows - q * MR < MR ? rows - q * MR : MR;
		store_tile(t, 1, VW, c + (size_t)q * MR * ldc, lc + (size_t)q * MR * ldc, ldc, mr,
		           nn, bias ? bias + q * MR : NULL, f);
	}
}

#define EDGE(g, nn)                                                                                \
	edge_t(g, nn, kc, ap + (size_t)q * MR * kc, bp, c + (size_t)q * MR * ldc,                  \
	       lc + (size_t)q * MR * ldc, ldc, mc - q * MR, bias ? bias + q * MR : NULL, f)
#define EDGE_GROUPS(g, nn)                                                                         \
	for (; q + (g) <= panels; q += (g))                                                        \
		EDGE(g, nn);                                                                       \
	for (; q < panels; q++)                                                                    \
		EDGE(1, nn);

/* The nr <= EDGE_N columns of the mc rows of a packed A block. g * nn
 * accumulators stay within the 16 registers of AVX2. */
static void edge(int kc, const float *ap, const float *bp, float *c, const float *lc, size_t ldc,
                 int mc, int nr, const float *bias, int f)
{
	int panels = (mc + MR - 1) / MR, q = 0;
	switch (nr) {
	case 1:
		EDGE_GROUPS(12, 1);
		break;
	case 2:
		EDGE_GROUPS(6, 2);
		break;
	case 3:
		EDGE_GROUPS(3, 3);
		break;
	default:
		EDGE_GROUPS(2, 4);
		break;
	}
}
#else
#define EDGE_N 0 /* panels taller than a vector: no edge kernel */
#endif

/* The mc rows of a packed A block times one B panel of nr columns (rows
 * ldb apart) into C at c (lc: where EP_LOAD reads). A partial panel runs
 * as its whole vectors, then the rest, by the edge kernel where that is a
 * few columns: at the panel's full width, up to NR - 1 columns' work would
 * be thrown away (N = 48 or 49, a Winograd block or a 7x7 map at batch 1,
 * cost what 64 does). Every element's arithmetic is the same either way. */
static void panel(int kc, const float *ap, const float *bp, size_t ldb, float *c, const float *lc,
                  size_t ldc, int mc, int nr, const float *bias, int f)
{
#if EDGE_N
	if (nr <= EDGE_N) {
		edge(kc, ap, bp, c, lc, ldc, mc, nr, bias, f);
		return;
	}
#endif
	int whole = nr < NR && nr > VW ? nr / VW * VW : nr;
	for (int ir = 0; ir < mc; ir += MR) {
		int mr = mc - ir < MR ? mc - ir : MR;
		size_t off = (size_t)ir * ldc;
		micro(kc, ap + (size_t)ir * kc, bp, ldb, c + off, lc + off, ldc, mr, whole,
		      bias ? bias + ir : NULL, f);
	}
	if (whole < nr)
		panel(kc, ap, bp + whole, ldb, c + whole, lc + whole, ldc, mc, nr - whole, bias, f);
}

/* Shuffle masks of the in-register transpose: stage b swaps the b x b
 * off-diagonal blocks of each 2b x 2b block (rows i and i + b). */
#define LO(j, b) ((j) & (b) ? VW + (j) - (b) : (j))
#define HI(j, b) ((j) & (b) ? VW + (j) : (j) + (b))
#define L4(F, b) F(0, b), F(1, b), F(2, b), F(3, b)
#define L8(F, b) L4(F, b), F(4, b), F(5, b), F(6, b), F(7, b)
#define L16(F, b)                                                                                  \
	L8(F, b), F(8, b), F(9, b), F(10, b), F(11, b), F(12, b), F(13, b), F(14, b), F(15, b)
#if VW == 16
#define LANES(F, b) L16(F, b)
#elif VW == 8
#define LANES(F, b) L8(F, b)
#else
#define LANES(F, b) L4(F, b)
#endif

static inline __attribute__((always_inline)) void transpose_stage(vf *x, int b, vi lo, vi hi)
{
#pragma GCC unroll 16
	for (int i = 0; i < VW; i++)
		if (!(i & b)) {
			vf u = __builtin_shuffle(x[i], x[i + b], lo);
			vf w = __builtin_shuffle(x[i], x[i + b], hi);
			x[i] = u, x[i + b] = w;
		}
}

/* Transposes the VW x VW block x (row i in x[i]) in registers. */
static inline __attribute__((always_inline)) void transpose(vf *x)
{
	transpose_stage(x, 1, (vi){LANES(LO, 1)}, (vi){LANES(HI, 1)});
	transpose_stage(x, 2, (vi){LANES(LO, 2)}, (vi){LANES(HI, 2)});
#if VW >= 8
	transpose_stage(x, 4, (vi){LANES(LO, 4)}, (vi){LANES(HI, 4)});
#endif
#if VW >= 16
	transpose_stage(x, 8, (vi){LANES(LO, 8)}, (vi){LANES(HI, 8)});
#endif
}

/* Transposes h rows of kc floats (row r at s + r * ld; rows from valid on
 * are taken as zero) into d, element (r, p) at d[p * ldd + r], and
 * prefetches the strip at next unless it is NULL. Whole
 * strips (valid == h, a constant once inlined) go a VW x VW block at a
 * time through registers; the rest, edges only, element by element. */
static inline __attribute__((always_inline)) void transpose_strip(const float *s, size_t ld,
                                                                  int valid, int h, int kc,
                                                                  float *d, int ldd,
                                                                  const float *next)
{
	int p = 0;
	if (valid == h)
		for (; p + VW <= kc; p += VW) {
			vf x[VW];
#pragma GCC unroll 16
			for (int r = 0; r < VW; r++)
				x[r] = r < h ? vload(s + r * ld + p) : (vf){0};
			/* The rows are short streams far apart, too short for
			 * the hardware prefetcher to ramp up: fetch the next
			 * strip (same columns, rows next + r * ld) meanwhile. */
			if (next)
#pragma GCC unroll 16
				for (int r = 0; r < h; r++)
					__builtin_prefetch(next + r * ld + p);
			transpose(x);
#pragma GCC unroll 16
			for (int q = 0; q < VW; q++) {
				/* A short row (h < VW) is stored whole when its
				 * spill, VW - h floats into row p + q + 1, is
				 * overwritten later: that row is in this strip
				 * (h == ldd) and exists (rows go in order). */
				if (h == VW || (h == ldd && 2 * h >= VW && p + q + 1 < kc))
					vstore(d + (size_t)(p + q) * ldd, x[q]);
				else
					for (int r = 0; r < h; r++)
						d[(size_t)(p + q) * ldd + r] = x[q][r];
			}
		}
	for (int r = 0; r < h; r++)
		for (int q = p; q < kc; q++)
			d[(size_t)q * ldd + r] = r < valid ? s[r * ld + q] : 0.0f;
}

/* Packs rows i0..i0+mc, depth p0..p0+kc of A into panels mr tall: panel q
 * at dst + q * mr * kc, element (r, p) at [p * mr + r], zero rows beyond mc.
 * Inlined so mr is a constant. */
static inline __attribute__((always_inline)) void
pack_a(const float *a, size_t lda, int trans, int i0, int mc, int p0, int kc, int mr, float *dst)
{
	for (int ir = 0; ir < mc; ir += mr) {
		int rows = mc - ir < mr ? mc - ir : mr;
		float *d = dst + (size_t)ir * kc;
		if (trans) {
			for (int p = 0; p < kc; p++) {
				const float *s = a + (size_t)(p0 + p) * lda + i0 + ir;
				if (rows == mr) {
					memcpy(d + p * mr, s, mr * sizeof(float));
					continue;
				}
				for (int r = 0; r < mr; r++)
					d[p * mr + r] = r < rows ? s[r] : 0.0f;
			}
			continue;
		}
#pragma GCC unroll 4
		for (int r0 = 0; r0 < mr; r0 += VW) {
			int valid = rows - r0 < 0 ? 0 : rows - r0 < VW ? rows - r0 : VW;
			const float *s = a + (size_t)(i0 + ir + r0) * lda + p0;
			transpose_strip(s, lda, valid, mr - r0 < VW ? mr - r0 : VW, kc, d + r0, mr,
			                ir + mr < mc ? s + mr * lda : NULL);
		}
	}
}

int rt_gemm_nr(void)
{
	return NR;
}

int rt_gemm_mr(void)
{
	return MR;
}

static int kc_of(int k);

/* m rows in whole panels of mr: the row stride of a packed A's K blocks */
static size_t mpad_of(int mr, int m)
{
	return (size_t)(m + mr - 1) / mr * mr;
}

/* The packed layout belongs to the set that reads it, which need not be
 * this one (netcc prepares weights for any target): mr is a parameter,
 * and the slack after the panels is the widest set's vector, so every
 * set sizes and places a packed operand alike. */
size_t rt_gemm_packed_a_floats(int mr, int m, int k)
{
	return mpad_of(mr, m) * (size_t)k + RT_KSET_VW_MAX;
}

size_t rt_gemm_packed_a_offset(int mr, int m, int k, int i, int p)
{
	size_t mpad = mpad_of(mr, m);
	int kc = kc_of(k), pc = p / kc * kc, kcb = k - pc < kc ? k - pc : kc, ir = i / mr * mr;
	return pc * mpad + (size_t)ir * kcb + (size_t)(p - pc) * mr + (i - ir);
}

/* Rows r0..r1 of the packed A, row i times scale[i - r0] (r0 a multiple
 * of mr): the float product rt_bn_fold_weight computes, so folding then
 * packing and packing then scaling agree. */
void rt_gemm_packed_a_scale_rows(int mr, int m, int k, int r0, int r1, const float *scale,
                                 float *dst)
{
	size_t mpad = mpad_of(mr, m);
	int kc = kc_of(k);
	for (int pc = 0; pc < k; pc += kc) {
		int kcb = k - pc < kc ? k - pc : kc;
		for (int ir = r0; ir < r1; ir += mr) {
			float *panel = dst + pc * mpad + (size_t)ir * kcb;
			int rows = r1 - ir < mr ? r1 - ir : mr;
			for (int p = 0; p < kcb; p++)
				for (int r = 0; r < rows; r++)
					panel[p * mr + r] *= scale[ir - r0 + r];
		}
	}
}

/* K block pc at dst + pc * mpad, each as pack_a lays out all m rows, and
 * zeros after (the edge kernel reads a little past the last panel). A
 * layout for another set's tile is packed element by element: that is
 * netcc preparing a library's weights, once. */
void rt_gemm_pack_a(int mr, int m, int k, const float *a, int lda, float *dst)
{
	size_t mpad = mpad_of(mr, m);
	int kc = kc_of(k);
	for (int pc = 0; pc < k; pc += kc) {
		int kcb = k - pc < kc ? k - pc : kc;
		float *d = dst + pc * mpad;
		if (mr == MR) {
			pack_a(a, (size_t)lda, 0, 0, m, pc, kcb, MR, d);
			continue;
		}
		for (int ir = 0; ir < m; ir += mr)
			for (int p = 0; p < kcb; p++)
				for (int r = 0; r < mr; r++)
					d[(size_t)ir * kcb + p * mr + r] =
					    ir + r < m ? a[(size_t)(ir + r) * lda + pc + p] : 0.0f;
	}
	memset(dst + mpad * k, 0, RT_KSET_VW_MAX * sizeof(float));
}

void rt_gemm_pack_b(const rt_gemm_b *b, int k0, int kc, int n0, int nc, float *dst)
{
	if (b->pack) {
		b->pack(b->ctx, k0, kc, n0, nc, dst);
		return;
	}
	size_t ld = (size_t)b->ld;
	if (!b->trans) {
		/* Row by row across all the panels: each row of B is read once,
		 * in order, which the prefetchers and the TLB like far better
		 * than a column panel at a time when rows are far apart. */
		for (int p = 0; p < kc; p++) {
			const float *s = b->data + (k0 + p) * ld + n0;
			float *d = dst + (size_t)p * NR;
			int jr = 0;
			for (; jr + NR <= nc; jr += NR) {
				/* rows are far apart: fetch a few rows ahead */
				if (p + PF_ROWS < kc)
					__builtin_prefetch(s + PF_ROWS * ld + jr);
				memcpy(d + (size_t)jr * kc, s + jr, NR * sizeof(float));
			}
			if (jr < nc) {
				memcpy(d + (size_t)jr * kc, s + jr, (nc - jr) * sizeof(float));
				memset(d + (size_t)jr * kc + (nc - jr), 0,
				       (NR - (nc - jr)) * sizeof(float));
			}
		}
		return;
	}
	for (int jr = 0; jr < nc; jr += NR) {
		int cols = nc - jr < NR ? nc - jr : NR;
#pragma GCC unroll 4
		for (int j0 = 0; j0 < NR; j0 += VW) {
			int valid = cols - j0 < 0 ? 0 : cols - j0 < VW ? cols - j0 : VW;
			transpose_strip(b->data + (size_t)(n0 + jr + j0) * ld + k0, ld, valid, VW,
			                kc, dst + (size_t)jr * kc + j0, NR, NULL);
		}
	}
}

typedef struct gemm_job {
	int m, n, k, kc;
	const float *a;
	size_t lda;
	int trans_a;
	const rt_gemm_b *b;
	float *c;
	size_t ldc;
	rt_epilogue ep;
	int by_rows; /* tasks own row ranges (else column ranges) */
	int units;   /* MR-row or NR-column tiles to share out */
	int tasks;
	/* The operand every task would otherwise pack in full (B when tasks
	 * own rows, A when they own columns), packed once for all: K block
	 * pc at pa + pc * mpad (or pb + pc * npad), then as pack_a (or
	 * rt_gemm_pack_b) lays a block out. NULL: each task packs its own. */
	float *pa, *pb;
	size_t mpad, npad;
	rt_threads *pool; /* whose scratch the blocks use */
} gemm_job;

/* The depth of the K blocks: about KC, evened out, a function of k alone. */
static int kc_of(int k)
{
	int blocks = (k + KC - 1) / KC;
	return (k + blocks - 1) / blocks;
}

static int flags_of(const gemm_job *j, int pc, int kcb)
{
	int f = pc > 0 || j->ep.add ? EP_LOAD : 0;
	if (pc + kcb == j->k)
		f |= EP_LAST | (j->ep.relu ? EP_RELU : 0);
	return f;
}

size_t rt_gemm_scratch_floats(void)
{
	/* gemm_block's largest: an MC x KC block of A, VW of slack, and B's
	 * panels (NC, or a group of BG, by KC), bounded over every kernel set
	 * (MC <= GEMM_MC and so on): the pool that lends it may belong to
	 * netcc's process and this GEMM to a JIT-loaded set. A multiple of 16
	 * floats keeps every slot 64-byte aligned. */
	size_t n = (size_t)GEMM_MC * KC + RT_KSET_VW_MAX +
	           (size_t)(GEMM_NC > GEMM_BG ? GEMM_NC : GEMM_BG) * KC;
	return (n + 15) & ~(size_t)15;
}

static float *alloc_floats(size_t count)
{
	/* 64-byte aligned (a cache line, an AVX-512 vector); aligned_alloc
	 * wants the size to be a multiple of the alignment. */
	size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
	return aligned_alloc(64, bytes ? bytes : 64);
}

static void gemm_block_run(const gemm_job *j, int m0, int m1, int n0, int n1, float *ab,
                           size_t asize, int reuse_b, bool direct);

/* One tile of C from blocks on the stack, where there was no memory for
 * them (no thread-local storage: a JIT-loaded set could not have it). Its
 * own function, so that only this last resort takes the stack. */
static __attribute__((noinline)) void gemm_tile_on_stack(const gemm_job *j, int m0, int m1, int n0,
                                                         int n1)
{
	float tile[MR * KC + VW + NR * KC] __attribute__((aligned(64)));
	gemm_block_run(j, m0, m1, n0, n1, tile, j->pa ? 0 : (size_t)MR * j->kc, 0,
	               !j->pb && !j->b->pack && !j->b->trans);
}

/* The rows [m0, m1) x columns [n0, n1) of C, single-threaded. */
static void gemm_block(const gemm_job *j, int m0, int m1, int n0, int n1)
{
	int kc = j->kc, rows = m1 - m0;
	int mcb = rows < MC ? (rows + MR - 1) / MR * MR : MC;
	/* When the rows fit one MC block, B is used once, right after it is
	 * packed (still in cache): a group of panels of buffer is enough. */
	int reuse_b = rows > MC;
	/* Used once, a dense B is read where it lies, whole panels of it
	 * (each row of a panel one contiguous run): packing would copy it
	 * only to read it once. Partial panels are packed (the kernel reads
	 * whole vectors). */
	bool direct = !reuse_b && !j->pb && !j->b->pack && !j->b->trans;
	int ncb = n1 - n0 < NC ? (n1 - n0 + NR - 1) / NR * NR : NC;
	size_t asize = j->pa ? 0 : (size_t)mcb * kc;
	size_t bsize = j->pb ? 0 : (size_t)(reuse_b ? ncb : BG) * kc;
	/* VW floats of slack after A, zero, for the edge kernel's reads. The
	 * pool's scratch first; only a caller beyond its threads allocates. */
	int slot;
	float *ab = rt_threads_scratch_take(j->pool, asize + VW + bsize, &slot);
	bool owned = false;
	if (!ab)
		owned = (ab = alloc_floats(asize + VW + bsize)) != NULL;
	if (!ab) {
		/* No memory for the blocks: one tile at a time from the stack.
		 * Blocking of M and N does not change any element's sum, so
		 * the result is the same, only slower; nothing aborts. */
		for (int i = m0; i < m1; i += MR)
			for (int jj = n0; jj < n1; jj += NR)
				gemm_tile_on_stack(j, i, i + MR < m1 ? i + MR : m1, jj,
				                   jj + NR < n1 ? jj + NR : n1);
		return;
	}
	gemm_block_run(j, m0, m1, n0, n1, ab, asize, reuse_b, direct);
	if (owned)
		free(ab);
	else
		rt_threads_scratch_give(j->pool, slot);
}

/* gemm_block's work on its buffers: A's block at ab (asize floats, none
 * where A is packed once for all), VW floats of slack, then B's panels. */
static void gemm_block_run(const gemm_job *j, int m0, int m1, int n0, int n1, float *ab,
                           size_t asize, int reuse_b, bool direct)
{
	int kc = j->kc;
	memset(ab + asize, 0, VW * sizeof(float));
	float *bb = ab + asize + VW;
	const float *bias = j->ep.bias;

	for (int jc = n0; jc < n1; jc += NC) {
		int nc = n1 - jc < NC ? n1 - jc : NC;
		for (int pc = 0; pc < j->k; pc += kc) {
			int kcb = j->k - pc < kc ? j->k - pc : kc;
			int f = flags_of(j, pc, kcb);
			/* where EP_LOAD reads: the residual on the first K block */
			const float *lbase = pc == 0 && j->ep.add ? j->ep.add : j->c;
			for (int ic = m0; ic < m1; ic += MC) {
				int mc = m1 - ic < MC ? m1 - ic : MC;
				const float *ap = ab;
				if (j->pa)
					ap = j->pa + pc * j->mpad + (size_t)ic * kcb;
				else
					pack_a(j->a, j->lda, j->trans_a, ic, mc, pc, kcb, MR, ab);
				for (int jr = 0; jr < nc; jr += NR) {
					int nr = nc - jr < NR ? nc - jr : NR;
					const float *bp;
					size_t ldb = NR;
					if (j->pb) {
						bp = j->pb + pc * j->npad + (size_t)(jc + jr) * kcb;
					} else if (direct && nr == NR) {
						ldb = (size_t)j->b->ld;
						bp = j->b->data + (size_t)pc * ldb + jc + jr;
					} else if (direct) {
						rt_gemm_pack_b(j->b, pc, kcb, jc + jr, nr, bb);
						bp = bb;
					} else {
						float *bq =
						    bb + (size_t)(reuse_b ? jr : jr % BG) * kcb;
						/* Packed on the first row block, a group
						 * of panels at a time, just before use. */
						if (ic == m0 && jr % BG == 0)
							rt_gemm_pack_b(j->b, pc, kcb, jc + jr,
							               nc - jr < BG ? nc - jr : BG,
							               bq);
						bp = bq;
					}
					size_t off = (size_t)ic * j->ldc + jc + jr;
					panel(kcb, ap, bp, ldb, j->c + off, lbase + off, j->ldc, mc,
					      nr, bias ? bias + ic : NULL, f);
				}
			}
		}
	}
}

/* Task t's share of the tiles: as even as whole tiles allow. */
static void task_range(const gemm_job *j, int t, int *lo, int *hi)
{
	int unit = j->by_rows ? MR : NR, dim = j->by_rows ? j->m : j->n;
	*lo = (int)((long)j->units * t / j->tasks) * unit;
	*hi = (int)((long)j->units * (t + 1) / j->tasks) * unit;
	if (*hi > dim)
		*hi = dim;
}

static void gemm_task(void *ctx, int t, int tasks)
{
	const gemm_job *j = ctx;
	int lo, hi;
	task_range(j, t, &lo, &hi);
	if (j->by_rows)
		gemm_block(j, lo, hi, 0, j->n);
	else
		gemm_block(j, 0, j->m, lo, hi);
}

/* Shared packing: task t packs K block t % kblocks of tile group
 * t / kblocks (PACK_TILES tiles of the shared operand). */
#define PACK_TILES 16
static void pack_task(void *ctx, int t, int tasks)
{
	const gemm_job *j = ctx;
	int kblocks = (j->k + j->kc - 1) / j->kc;
	int pc = t % kblocks * j->kc, kcb = j->k - pc < j->kc ? j->k - pc : j->kc;
	if (j->pb) {
		int n0 = t / kblocks * PACK_TILES * NR;
		int nc = j->n - n0 < PACK_TILES * NR ? j->n - n0 : PACK_TILES * NR;
		rt_gemm_pack_b(j->b, pc, kcb, n0, nc, j->pb + pc * j->npad + (size_t)n0 * kcb);
	} else {
		int i0 = t / kblocks * PACK_TILES * MR;
		int mc = j->m - i0 < PACK_TILES * MR ? j->m - i0 : PACK_TILES * MR;
		pack_a(j->a, j->lda, j->trans_a, i0, mc, pc, kcb, MR,
		       j->pa + pc * j->mpad + (size_t)i0 * kcb);
	}
}

/* k == 0: the product is zero and only the epilogue is left. */
static void gemm_empty(int m, int n, float *c, size_t ldc, const rt_epilogue *ep)
{
	for (int i = 0; i < m; i++)
		for (int jj = 0; jj < n; jj++) {
			float *cp = c + i * ldc + jj;
			float v = ep->add ? ep->add[i * ldc + jj] : 0.0f;
			if (ep->bias)
				v = v + ep->bias[i];
			*cp = ep->relu && v < 0 ? 0.0f : v;
		}
}

/* The estimated time of an m x n product split into tasks along rows
 * (by_rows) or columns, relative to an even share of perfect tiles: the
 * busiest thread's share (whole tiles rarely divide evenly: 64 rows are
 * 11 tiles of 6, 64 columns 4 of 16), times a penalty for small task
 * blocks. A task r rows tall streams each B panel from L2/L3 once for
 * r / MR tiles, and a task c columns wide each A block for c / NR; the
 * weights were fitted on Zen (AVX2) against both splits forced. */
static double split_cost(int m, int n, int by_rows, int tasks, int threads)
{
	int dim = by_rows ? m : n, tile = by_rows ? MR : NR, tiles = (dim + tile - 1) / tile;
	if (tasks > tiles)
		tasks = tiles;
	int largest = (tiles + tasks - 1) / tasks * tile;
	if (largest > dim)
		largest = dim;
	int per_thread = (tasks + threads - 1) / threads;
	double busiest = (double)largest * per_thread;
	if (busiest > dim)
		busiest = dim;
	double r = by_rows ? largest : m, c = by_rows ? n : largest;
	return busiest / ((double)dim / threads) * (1 + 2.5 * (1 / r + 2 / c));
}

static void gemm(rt_threads *p, bool serial, int m, int n, int k, const float *a, int lda,
                 int trans_a, const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep);

void rt_gemm(rt_threads *p, int m, int n, int k, const float *a, int lda, int trans_a,
             const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep)
{
	gemm(p, false, m, n, k, a, lda, trans_a, b, c, ldc, ep);
}

void rt_gemm_serial(rt_threads *p, int m, int n, int k, const float *a, int lda, int trans_a,
                    const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep)
{
	gemm(p, true, m, n, k, a, lda, trans_a, b, c, ldc, ep);
}

static void gemm(rt_threads *p, bool serial, int m, int n, int k, const float *a, int lda,
                 int trans_a, const rt_gemm_b *b, float *c, int ldc, const rt_epilogue *ep)
{
	static const rt_epilogue none = {0};
	if (!ep)
		ep = &none;
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0) {
		gemm_empty(m, n, c, (size_t)ldc, ep);
		return;
	}
	gemm_job j = {
	    .m = m,
	    .n = n,
	    .k = k,
	    .kc = kc_of(k),
	    .a = a,
	    /* already laid out as the shared A is (rt_gemm_pack_a) */
	    .pa = trans_a == RT_GEMM_A_PACKED ? (float *)a : NULL,
	    .mpad = mpad_of(MR, m),
	    .lda = (size_t)lda,
	    .trans_a = trans_a != 0,
	    .b = b,
	    .c = c,
	    .ldc = (size_t)ldc,
	    .ep = *ep,
	    .pool = p,
	};

	/* Who computes which tile. Tasks own row or column ranges of whole
	 * tiles (split_cost picks which). Owning rows, every task would pack
	 * all of B, owning columns all of A: that operand is packed once for
	 * all tasks, in a pool run of its own. */
	int threads = rt_threads_count(p);
	double flops = 2.0 * m * n * k;
	int mt = (m + MR - 1) / MR, nt = (n + NR - 1) / NR;
	j.by_rows = m >= n;
	j.tasks = 1;
	if (threads > 1 && flops >= PAR_MIN_FLOPS && !serial) {
		double per = flops / (threads * TASK_FLOPS);
		int per_thread = per < 1 ? 1 : per > TASKS_PER_THREAD ? TASKS_PER_THREAD : (int)per;
		j.tasks = threads * per_thread;
		j.by_rows =
		    split_cost(m, n, 1, j.tasks, threads) <= split_cost(m, n, 0, j.tasks, threads);
	}
	j.units = j.by_rows ? mt : nt;
	if (j.tasks > j.units)
		j.tasks = j.units;
	float *shared = NULL;
	if (j.tasks > 1 && (j.by_rows || !j.pa)) {
		int kblocks = (k + j.kc - 1) / j.kc;
		int tiles = j.by_rows ? (n + NR - 1) / NR : (m + MR - 1) / MR;
		size_t pad = (size_t)tiles * (j.by_rows ? NR : MR);
		/* + VW: the edge kernel reads a little past the last panel */
		double size = (double)pad * k;
		if (size >= PREPACK_MIN && size <= PREPACK_MAX)
			shared = rt_threads_shared_take(p, pad * k + VW);
		if (shared) {
			memset(shared + pad * k, 0, VW * sizeof(float));
			if (j.by_rows)
				j.pb = shared, j.npad = pad;
			else
				j.pa = shared, j.mpad = pad;
			rt_threads_run(p, pack_task, &j,
			               kblocks * ((tiles + PACK_TILES - 1) / PACK_TILES));
		}
	}
	rt_threads_run(p, gemm_task, &j, j.tasks);
	if (shared)
		rt_threads_shared_give(p);
}
