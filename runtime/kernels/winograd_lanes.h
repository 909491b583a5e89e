/* winograd_lanes.h: tiles in and out of vector lanes, eight tiles to a
 * vector, as the forward transforms (winograd_transform.c) and the weight
 * gradient's (winograd_grad.c) both read and write them. The movers are
 * always inlined, so that the tile width and the lanes' kind are
 * constants where they are called: each kind of group compiles apart. */
#ifndef NETCC_RUNTIME_WINOGRAD_LANES_H
#define NETCC_RUNTIME_WINOGRAD_LANES_H

#include "winograd_impl.h"

/* Eight tiles at a time, one per vector lane: the transforms' arithmetic
 * runs on whole vectors, and V and M, tile-contiguous, load and store
 * whole vectors. Every lane does the same arithmetic as a tile alone
 * would, so the lane a tile lands in changes no bits. The functions below
 * take the output tile size m as a constant once inlined (4 or 2). */
typedef int vi __attribute__((vector_size(32)));

/* ---- moving tiles in and out of vector lanes ------------------------------ */

/* Four floats of a tile row, and a mask of them */
typedef float q4 __attribute__((vector_size(16)));
typedef int qi4 __attribute__((vector_size(16)));
typedef char qb16 __attribute__((vector_size(16)));

static inline q4 load4(const float *p)
{
	q4 v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* How one lane's tile reads its rows: worked out once per group of eight
 * tiles and used for every channel and row. */
typedef struct lane_plan {
	long off;     /* channel 0's element at the tile's top row and first
	                 column; may lie off the map */
	int x0;       /* the tile's first column */
	int rows;     /* bit r: the tile's row r lies in the map (0: past the block) */
	bool edge;    /* some columns lie off the map */
	bool shifted; /* edge, read as four floats inside the row at lo_at and
	                 hi_at, whose bytes lo_ctl and hi_ctl move into place
	                 (or zero); else gathered by col and masked */
	long lo_at, hi_at;
	qb16 lo_ctl, hi_ctl;
	int col[TILE]; /* the columns, clamped into the row */
	qi4 mlo, mhi;  /* all ones where columns 0-3, 2-5 lie in the map */
} lane_plan;

/* Row r of lane q's tile in a channel whose plane 0 starts at base:
 * columns 0-3 in lo, 2-5 in hi (hi only where width is 6); zeros off the
 * map. */
static inline __attribute__((always_inline)) void
fetch_row(const lane_plan *q, const float *base, int wd, int r, int width, q4 *lo, q4 *hi)
{
	if (!(q->rows >> r & 1)) {
		*lo = *hi = (q4){0};
		return;
	}
	if (!q->edge) {
		const float *row = base + q->off + (long)r * wd;
		*lo = load4(row);
		*hi = width > 4 ? load4(row + 2) : (q4){0};
		return;
	}
#if defined(__SSSE3__)
	if (q->shifted) {
		*lo = (q4)_mm_shuffle_epi8((__m128i)load4(base + q->lo_at + (long)r * wd),
		                           (__m128i)q->lo_ctl);
		*hi = width > 4
		          ? (q4)_mm_shuffle_epi8((__m128i)load4(base + q->hi_at + (long)r * wd),
		                                 (__m128i)q->hi_ctl)
		          : (q4){0};
		return;
	}
#endif
	const float *row = base + (q->off - q->x0) + (long)r * wd;
	const int *c = q->col;
	*lo = (q4)((qi4)(q4){row[c[0]], row[c[1]], row[c[2]], row[c[3]]} & q->mlo);
	*hi = width > 4 ? (q4)((qi4)(q4){row[c[2]], row[c[3]], row[c[4]], row[c[5]]} & q->mhi)
	                : (q4){0};
}

/* Rows into lanes: out[s] (s < 4, or 6 where width is 6) gets lane l's lo[l][s] and hi[l][s - 2]
 * for s = 4, 5. With AVX, in-lane 4x4 transposes of pairs of rows, lanes
 * 0-3 in the low half and 4-7 in the high (on the EPYC a fifth of a
 * ResNet-20 training step went to copying tiles into lanes one float at a
 * time, each vector reloaded behind eight stores). */
static inline __attribute__((always_inline)) void lanes_in(const q4 lo[LANES], const q4 hi[LANES],
                                                           int width, v8 *out)
{
#if defined(__AVX__)
	__m256 a[4];
	for (int l = 0; l < 4; l++)
		a[l] = _mm256_insertf128_ps(_mm256_castps128_ps256((__m128)lo[l]),
		                            (__m128)lo[l + 4], 1);
	__m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
	__m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
	out[0] = (v8)_mm256_shuffle_ps(t0, t2, 0x44);
	out[1] = (v8)_mm256_shuffle_ps(t0, t2, 0xee);
	out[2] = (v8)_mm256_shuffle_ps(t1, t3, 0x44);
	out[3] = (v8)_mm256_shuffle_ps(t1, t3, 0xee);
	if (width > 4) {
		for (int l = 0; l < 4; l++)
			a[l] = _mm256_insertf128_ps(_mm256_castps128_ps256((__m128)hi[l]),
			                            (__m128)hi[l + 4], 1);
		t1 = _mm256_unpackhi_ps(a[0], a[1]);
		t3 = _mm256_unpackhi_ps(a[2], a[3]);
		out[4] = (v8)_mm256_shuffle_ps(t1, t3, 0x44);
		out[5] = (v8)_mm256_shuffle_ps(t1, t3, 0xee);
	}
#else
	for (int l = 0; l < LANES; l++) {
		for (int s = 0; s < 4; s++)
			out[s][l] = lo[l][s];
		for (int s = 4; s < width; s++)
			out[s][l] = hi[l][s - 2];
	}
#endif
}

/* How a group of eight tiles reads and writes its rows: every lane's
 * rows whole; every lane the same rows, and where columns lie off the
 * map the same byte shuffles (tiles of one key: rt_wino_block_start puts them
 * together); or each lane its own way, tested per lane and row. */
enum { LANES_WHOLE, LANES_SAME, LANES_MIXED };

/* Row r (width wide) of the tiles of the plans, into lanes: out[0..3],
 * and out[4..5] where width is 6; kind is lanes_kind's */
static inline __attribute__((always_inline)) void gather_row(const lane_plan lp[LANES],
                                                             const float *base, int wd, int r,
                                                             int width, int kind, v8 *out)
{
	if (kind == LANES_SAME && !(lp[0].rows >> r & 1)) {
		for (int s = 0; s < width; s++)
			out[s] = (v8){0};
		return;
	}
	q4 lo[LANES], hi[LANES];
	for (int l = 0; l < LANES; l++) {
		if (kind == LANES_WHOLE || (kind == LANES_SAME && !lp[0].edge)) {
			const float *row = base + lp[l].off + (long)r * wd;
			lo[l] = load4(row);
			hi[l] = width > 4 ? load4(row + 2) : (q4){0};
		} else if (kind == LANES_SAME) {
#if defined(__SSSE3__)
			/* the same shuffles for every lane: lp[0]'s */
			lo[l] =
			    (q4)_mm_shuffle_epi8((__m128i)load4(base + lp[l].lo_at + (long)r * wd),
			                         (__m128i)lp[0].lo_ctl);
			hi[l] = width > 4 ? (q4)_mm_shuffle_epi8(
			                        (__m128i)load4(base + lp[l].hi_at + (long)r * wd),
			                        (__m128i)lp[0].hi_ctl)
			                  : (q4){0};
#else
			fetch_row(&lp[l], base, wd, r, width, &lo[l], &hi[l]);
#endif
		} else {
			fetch_row(&lp[l], base, wd, r, width, &lo[l], &hi[l]);
		}
	}
	lanes_in(lo, hi, width, out);
}

#if WINO_ROWS
/* ---- rows mode: rows of tiles in the lanes (wino_rows) -------------------- */

/* 16 floats of a map's row (wd wide) from its column `first`, zero off the
 * map, read masked (nothing outside the row is touched); zeros where the
 * row lies outside the map (NULL) */
static inline __attribute__((always_inline)) __m512 row16(const float *row, int wd, int first)
{
	if (!row)
		return _mm512_setzero_ps();
	int lo = first < 0 ? -first : 0, hi = wd - first < 16 ? wd - first : 16;
	__mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
	return _mm512_maskz_loadu_ps(m, row + first);
}

/* Lane t's value s (s < count): float 4t + s of lo and hi side by side,
 * each value's lanes picked by one permute; ROWS_ONE's lane 7 zero */
static inline __attribute__((always_inline)) void rows_in(int kind, __m512 lo, __m512 hi, int count,
                                                          v8 *out)
{
	const __m512i four_t =
	    _mm512_set_epi32(60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
	__mmask16 keep = kind == ROWS_ONE ? 0x7f : 0xff;
	for (int s = 0; s < count; s++) {
		__m512 v = _mm512_maskz_permutex2var_ps(
		    keep, lo, _mm512_add_epi32(four_t, _mm512_set1_epi32(s)), hi);
		out[s] = (v8)_mm512_castps512_ps256(v);
	}
}

/* The inverse for output rows: y[s] (lane t) goes to float 4t + s of *lo
 * and *hi side by side (ROWS_ONE: a row's columns 0-15 and 16-31, 28 and
 * up lane 7's and not stored; ROWS_TWO: columns 0-15 of the two rows) */
static inline __attribute__((always_inline)) void row_out(const v8 y[OUT], __m512 *lo, __m512 *hi)
{
	__m512 a = _mm512_insertf32x8(_mm512_castps256_ps512((__m256)y[0]), (__m256)y[1], 1),
	       b = _mm512_insertf32x8(_mm512_castps256_ps512((__m256)y[2]), (__m256)y[3], 1);
	/* float 4t + s: y[s] lane t, at 8s + t in a and b side by side */
	const __m512i at =
	    _mm512_set_epi32(27, 19, 11, 3, 26, 18, 10, 2, 25, 17, 9, 1, 24, 16, 8, 0);
	*lo = _mm512_permutex2var_ps(a, at, b);
	*hi = _mm512_permutex2var_ps(a, _mm512_add_epi32(at, _mm512_set1_epi32(4)), b);
}

/* Row dy of the tiles whose first is lane l's, in channel ch of maps h x
 * wd with `channels` of them at map: NULL outside the map or past the
 * block */
static inline __attribute__((always_inline)) const float *
rows_row(const wino *w, int l, const float *map, int channels, int ch, int h, int wd, int dy)
{
	if (l >= w->tb)
		return NULL;
	const tile_at *a = &w->at[l];
	int y = a->y + dy;
	if (y < 0 || y >= h)
		return NULL;
	return map + (((size_t)a->img * channels + ch) * h + y) * wd;
}

/* Lane t's value s (s < count) of the group of tiles at lanes j..: column
 * 4u + s - pad of row dy of its tiles (u its place in their row), zero off
 * the map. ROWS_ONE: one row of tiles, read as 32 floats from column -pad;
 * ROWS_TWO: two, 16 floats each (tiles 0-3, then 4-7). */
static inline __attribute__((always_inline)) void rows_gather(const wino *w, int kind, int j,
                                                              const float *map, int channels,
                                                              int ch, int h, int wd, int dy,
                                                              int pad, int count, v8 *out)
{
	const float *a = rows_row(w, j, map, channels, ch, h, wd, dy);
	__m512 lo = row16(a, wd, -pad),
	       hi = kind == ROWS_ONE
	                ? row16(a, wd, 16 - pad)
	                : row16(rows_row(w, j + 4, map, channels, ch, h, wd, dy), wd, -pad);
	rows_in(kind, lo, hi, count, out);
}
#endif

/* winograd_transform.c: how lanes j.. of the block read their rows */
void rt_wino_plan_lanes(const wino *w, int j, int dy, int dx, int h, int wd, int channels,
                        int width, lane_plan lp[LANES]);
int rt_wino_lanes_kind(const wino *w, const lane_plan lp[LANES], int j, int width);

#endif
