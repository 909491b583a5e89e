/* gemm_pack.h: the transposes and the packing of A into MR-tall panels,
 * inlined where they are called: the driver (gemm.c) packs A's blocks as
 * it goes and gemm_pack.c packs whole operands once, and both need mr and
 * the strip height to be constants at the call, which only inlining makes
 * them (the whole-strip path runs a VW x VW block through registers). */
#ifndef NETCC_RUNTIME_GEMM_PACK_H
#define NETCC_RUNTIME_GEMM_PACK_H

#include "gemm_impl.h"

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

#endif
