/* The GEMM's micro-kernels: one tile of C from a packed A panel and a B
 * panel, kept in registers for a whole K block, instantiated for every
 * edge size, and the edge kernel that runs vectors along M for the last
 * few columns. Apart from the driver (gemm.c) because they are where the
 * arithmetic is, and nothing else is: this file decides every element's
 * sums and their order, and is compiled with the GEMM's flags
 * (KFLAGS_gemm_micro, the same as KFLAGS_gemm). */
#include "gemm_impl.h"

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

/* epi1 on a vector of one row's sums (lc: where EP_LOAD reads, bias: the
 * row's): micro_t's and wide_t's whole tiles store through it */
static inline __attribute__((always_inline)) vf epiv(vf x, const float *lc, const float *bias,
                                                     int f)
{
	if (f & EP_LOAD)
		x = vload(lc) + x;
	if (f & EP_LAST) {
		if (bias)
			x = x + *bias;
		if (f & EP_RELU)
			x = (vf)((vi)x & ~(x < 0));
	}
	return x;
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

/* How far ahead, in steps of k, the micro-kernel prefetches its A panel
 * (and past its end, the next panel's). A is the weights, prepared once
 * and read once a call, from memory: a ResNet's do not fit the caches
 * (ResNet-18's Winograd U are 90 MB), and the hardware prefetcher alone
 * left the FMAs waiting. On AVX2, 24 to 96 steps measured the same and 12
 * half of it. AVX-512's panels are twice as tall, so a step reads twice
 * the bytes, and a tile one vector wide (the Winograd GEMMs of a 7x7 or
 * 14x14 map at batch 1: 16 tiles) spends half the time on a step that a
 * full one does: there the prefetch runs further ahead, the same time
 * ahead of the FMAs for every tile width (docs/performance.md). */
#ifndef APF
#define APF (VW >= 16 ? 64 : 32)
#endif
#define APF_STEPS(nv) (VW >= 16 ? APF * NV / (nv) : APF)

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
		__builtin_prefetch(ap + (p + APF_STEPS(nv)) * MR);
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
		for (int v = 0; v < nv; v++)
			vstore(cr + v * VW,
			       epiv(acc[r][v], lc + r * ldc + v * VW, bias ? bias + r : NULL, f));
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

#ifdef EDGE_N
/* The last columns of a block when they are few (nr <= EDGE_N): a vector
 * tile would be mostly padding (n = 49 at batch 1: 3 tiles of 16 and one
 * column). Vectors run along M instead, one A panel per vector (lanes
 * beyond MR hold the next row of the panel and are never stored), over g
 * panels at once so enough sums are in flight. The same arithmetic per
 * element as micro(). Reads up to VW - MR floats past the last panel. */
static inline __attribute__((always_inline)) void
edge_t(int g, int nn, int kc, const float *restrict ap, const float *restrict bp, size_t ldb,
       float *c, const float *lc, size_t ldc, int rows, const float *bias, int f)
{
	vf acc[12][EDGE_N];
	for (int q = 0; q < g; q++)
		for (int j = 0; j < nn; j++)
			acc[q][j] = (vf){0};
	for (int p = 0; p < kc; p++) {
		vf b[EDGE_N];
		for (int j = 0; j < nn; j++)
			b[j] = vsplat(bp[p * ldb + j]);
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
	edge_t(g, nn, kc, ap + (size_t)q * MR * kc, bp, ldb, c + (size_t)q * MR * ldc,             \
	       lc + (size_t)q * MR * ldc, ldc, mc - q * MR, bias ? bias + q * MR : NULL, f)
#define EDGE_GROUPS(g, nn)                                                                         \
	for (; q + (g) <= panels; q += (g))                                                        \
		EDGE(g, nn);                                                                       \
	for (; q < panels; q++)                                                                    \
		EDGE(1, nn);

/* The nr <= EDGE_N columns of the mc rows of a packed A block. g * nn
 * accumulators stay within the 16 registers of AVX2. */
static void edge(int kc, const float *ap, const float *bp, size_t ldb, float *c, const float *lc,
                 size_t ldc, int mc, int nr, const float *bias, int f)
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
#endif

/* The mc rows of a packed A block times one B panel of nr columns (rows
 * ldb apart) into C at c (lc: where EP_LOAD reads). A partial panel runs
 * as its whole vectors, then the rest, by the edge kernel where that is a
 * few columns: at the panel's full width, up to NR - 1 columns' work would
 * be thrown away (N = 48 or 49, a Winograd block or a 7x7 map at batch 1,
 * cost what 64 does). Every element's arithmetic is the same either way. */
void rt_gemm_panel(int kc, const float *ap, const float *bp, size_t ldb, float *c, const float *lc,
                   size_t ldc, int mc, int nr, const float *bias, int f)
{
#ifdef EDGE_N
	if (nr <= EDGE_N) {
		edge(kc, ap, bp, ldb, c, lc, ldc, mc, nr, bias, f);
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
		rt_gemm_panel(kc, ap, bp + whole, ldb, c + whole, lc + whole, ldc, mc, nr - whole,
		              bias, f);
}

#if GEMM_WIDE
/* Rows r0.. (rows of them) of an MR-row A panel times three vectors of B:
 * a whole panel's two at b0 and the next panel's first at b1 (rows ldb
 * apart in both), into 3 * VW contiguous columns of C; with xn (0 or 1, a
 * constant where it is instantiated), the one column after them too, as
 * edge_t computes it, from the A panel the tile has in L1. Where the last
 * panel of a block is a vector and a few columns (N = 49 at batch 1:
 * 32 + 17), a tile of it alone holds MR sums of one B vector, a broadcast
 * each, and the edge kernel then reads the A block from L2 again for the
 * last column; three vectors wide, the panel's rows go as 8 and 4 (MR =
 * 12: 24 sums, then 12), each broadcast feeding three. The same
 * arithmetic per element, and the same epilogue, as micro_t. */
static inline __attribute__((always_inline)) void
wide_t(int rows, int r0, int xn, int kc, const float *restrict ap, const float *restrict b0,
       const float *restrict b1, size_t ldb, float *c, const float *lc, size_t ldc,
       const float *bias, int f)
{
	vf acc[8][3], accx = {0};
	for (int r = 0; r < rows; r++)
		for (int v = 0; v < 3; v++)
			acc[r][v] = (vf){0};
	if (f & EP_LOAD)
		for (int r = 0; r < rows; r++)
			__builtin_prefetch(lc + (r0 + r) * ldc);
	for (int p = 0; p < kc; p++) {
		__builtin_prefetch(ap + (p + APF_STEPS(3)) * MR);
		vf b[3] = {vload(b0 + p * ldb), vload(b0 + p * ldb + VW), vload(b1 + p * ldb)};
		for (int r = 0; r < rows; r++) {
			vf a = vsplat(ap[p * MR + r0 + r]);
			for (int v = 0; v < 3; v++)
				acc[r][v] = vfma(a, b[v], acc[r][v]);
		}
		/* the column past the third vector, as edge_t computes it: a
		 * vector along M, from the panel's rows at p, in L1 now */
		if (xn)
			accx = vfma(vload(ap + p * MR), vsplat(b1[p * ldb + VW]), accx);
	}
	if (xn) {
		float t[VW];
		vstore(t, accx);
		store_tile(t, 1, VW, c + 3 * VW, lc + 3 * VW, ldc, MR, 1, bias, f);
	}
#pragma GCC unroll 8
	for (int r = 0; r < rows; r++) {
		float *cr = c + (r0 + r) * ldc;
#pragma GCC unroll 3
		for (int v = 0; v < 3; v++)
			vstore(cr + v * VW, epiv(acc[r][v], lc + (r0 + r) * ldc + v * VW,
			                         bias ? bias + r0 + r : NULL, f));
	}
}

#define WIDE_F(fl)                                                                                 \
	do {                                                                                       \
		if (bias)                                                                          \
			wide_t(8, 0, 0, kc, ap, b0, b1, ldb, c, lc, ldc, bias, fl);                \
		else                                                                               \
			wide_t(8, 0, 0, kc, ap, b0, b1, ldb, c, lc, ldc, NULL, fl);                \
		if (xn && bias)                                                                    \
			wide_t(MR - 8, 8, 1, kc, ap, b0, b1, ldb, c, lc, ldc, bias, fl);           \
		else if (xn)                                                                       \
			wide_t(MR - 8, 8, 1, kc, ap, b0, b1, ldb, c, lc, ldc, NULL, fl);           \
		else if (bias)                                                                     \
			wide_t(MR - 8, 8, 0, kc, ap, b0, b1, ldb, c, lc, ldc, bias, fl);           \
		else                                                                               \
			wide_t(MR - 8, 8, 0, kc, ap, b0, b1, ldb, c, lc, ldc, NULL, fl);           \
		return;                                                                            \
	} while (0)

/* One MR-row tile three vectors wide, dispatched on its flags as WHOLE */
static void wide(int kc, const float *ap, const float *b0, const float *b1, size_t ldb, int xn,
                 float *c, const float *lc, size_t ldc, const float *bias, int f)
{
	switch (f) {
	case 0:
		WIDE_F(0);
	case EP_LOAD:
		WIDE_F(EP_LOAD);
	case EP_LAST:
		WIDE_F(EP_LAST);
	case EP_LOAD | EP_LAST:
		WIDE_F(EP_LOAD | EP_LAST);
	case EP_LAST | EP_RELU:
		WIDE_F(EP_LAST | EP_RELU);
	case EP_LOAD | EP_LAST | EP_RELU:
		WIDE_F(EP_LOAD | EP_LAST | EP_RELU);
	}
}

void rt_gemm_panel_wide(int kc, const float *ap, const float *bp, const float *b1, size_t ldb,
                        float *c, const float *lc, size_t ldc, int mc, int nr1, const float *bias,
                        int f)
{
	for (int ir = 0; ir < mc; ir += MR) {
		int mr = mc - ir < MR ? mc - ir : MR;
		size_t off = (size_t)ir * ldc;
		const float *air = ap + (size_t)ir * kc, *bir = bias ? bias + ir : NULL;
		if (mr == MR) {
			wide(kc, air, bp, b1, ldb, nr1 - VW == 1, c + off, lc + off, ldc, bir, f);
			continue;
		}
		micro(kc, air, bp, ldb, c + off, lc + off, ldc, mr, NR, bir, f);
		micro(kc, air, b1, ldb, c + off + NR, lc + off + NR, ldc, mr, VW, bir, f);
		if (nr1 > VW) /* the last row tile, when short */
			edge(kc, air, b1 + VW, ldb, c + off + NR + VW, lc + off + NR + VW, ldc, mr,
			     nr1 - VW, bir, f);
	}
	/* more than one column past the third vector: the edge kernel, over
	 * the whole rows */
	if (nr1 > VW + 1 && mc >= MR)
		edge(kc, ap, b1 + VW, ldb, c + NR + VW, lc + NR + VW, ldc, mc / MR * MR, nr1 - VW,
		     bias, f);
}
#endif
