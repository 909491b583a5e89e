/* The GEMM's packed layouts: the tile shape a packer must know, where an
 * element of a packed A lies, and packing A and B whole. Apart from the
 * driver (gemm.c) because the layout has callers that never run a GEMM
 * here: netcc packs a library's weights ahead of time, for this kernel
 * set or another. The inlined panel packing these share with the driver
 * is gemm_pack.h. */
#include <string.h>

#include "gemm_impl.h"
#include "gemm_pack.h"

#ifndef PF_ROWS
#define PF_ROWS 4
#endif

int rt_gemm_nr(void)
{
	return NR;
}

int rt_gemm_mr(void)
{
	return MR;
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
