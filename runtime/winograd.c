/* 3x3 convolutions with stride 1 by Winograd's minimal filtering, F(4x4, 3x3)
 * (Lavin and Gray 2015): each 4x4 block of output comes from a 6x6 tile of
 * input, and the 9 x 16 = 144 multiplications per tile and channel pair
 * become 36, done as 36 GEMMs, one per tile position:
 *
 *   U[p] = (G g G^T)[p]    [oc x c]  weights, once, when they are prepared
 *   V[p] = (B^T d B)[p]    [c x tiles]  input tiles
 *   M[p] = U[p] . V[p]     [oc x tiles]
 *   y    = A^T M A         4x4 outputs per tile, then bias, residual, relu
 *
 * with the interpolation points 0, +-1, +-2 and infinity. U is kept in the
 * GEMM's packed layout. Tiles go in blocks whose V and M stay in cache for
 * the GEMMs; each thread takes whole blocks of its own where there are
 * tiles enough, else the threads share a block (transforms split over
 * channels, GEMMs over the 36 positions). Every output's sums are the same
 * either way, so the results do not depend on the thread count. Training
 * adds the input gradient (the same kernel on flipped, transposed weights)
 * and the weight gradient (the transposed algorithm, below). */
#include <math.h>
#include <string.h>
#if defined(__AVX__) || defined(__SSSE3__)
#include <immintrin.h>
#endif

#include "runtime.h"
#include "vec8.h"
#include "winograd.h"

enum { BLOCK_FLOATS = 256 * 1024, BLOCK_MAX = 1024 * 1024, PANEL = 32 };

static int pos_of(int m)
{
	return winograd_pos_of(m);
}

static int tiles_of(int size, int m)
{
	return (size + m - 1) / m;
}

/* m x m output tiles in all the images */
static long total_tiles(const rt_conv *p, int m)
{
	return (long)p->n * tiles_of(p->oh, m) * tiles_of(p->ow, m);
}

/* Tiles per block: V and M (pos x (c + oc) floats a tile) in BLOCK_FLOATS,
 * at least 16 (a GEMM panel), never more than there are. Every block reads
 * all of U, so where U is larger than the blocks and all the tiles would
 * fit in as much as U (up to BLOCK_MAX), they go in one block, U read once
 * (128 channels on a 28x28 map at batch 1: one block of 49 tiles instead
 * of four of 16, 1.8 -> 1.5 ms on 2 threads). Not more generally: at
 * batch 8, blocks per thread that large fell out of L2 (ResNet-50 7% slower). */
static int block_tiles(const rt_conv *p, int m)
{
	long total = total_tiles(p, m);
	long per_tile = pos_of(m) * (long)(p->c + p->oc);
	long fit = BLOCK_FLOATS / per_tile;
	long u_tiles = (long)pos_of(m) * p->c * p->oc / per_tile;
	/* the nearest whole number of GEMM panels (32 columns with AVX-512,
	 * two panels of AVX2's 16): 48 tiles cost what 64 do */
	fit = fit < PANEL ? PANEL : (fit + PANEL / 2) / PANEL * PANEL;
	/* a whole number of vectors: the last one's spare lanes are written too */
	total = (total + 7) / 8 * 8;
	if (u_tiles > fit && total <= u_tiles && total <= BLOCK_MAX / per_tile)
		fit = total;
	return (int)(total < fit ? total : fit);
}

/* Where a block's tiles are: image, and output row and column of the
 * tile's corner; found once per block, not per channel. */
typedef struct tile_at {
	int img, y, x;
} tile_at;

/* The distance between two positions' matrices in V or M: rows x ld
 * floats rounded up to an odd number of cache lines. At an even number
 * the 36 matrices a tile's transform writes fall in few of L1's 64 sets
 * (16 channels of 224 tiles: 224 lines apart, two sets; 64 of 48: one);
 * odd, most layers' transforms ran 2-6% faster. */
static size_t pos_stride(int rows, int ld)
{
	size_t lines = ((size_t)rows * ld + 15) / 16;
	return (lines | 1) * 16;
}

/* V, M and the tile table of a block of that many tiles */
static size_t block_floats(const rt_conv *p, int m, int tiles)
{
	size_t n = (size_t)pos_of(m) * (pos_stride(p->c, tiles) + pos_stride(p->oc, tiles)) +
	           sizeof(tile_at) / sizeof(float) * tiles;
	return (n + 15) / 16 * 16; /* the next block's V starts on a cache line */
}

/* Room for two blocks: one used alone when the threads share blocks, or
 * shared out among the threads when each takes blocks of its own (best
 * measured on the EPYC: a megabyte for one thread, two for two). Where one
 * block holds every tile the threads always share it: room for one. */
size_t rt_winograd_scratch_floats(const rt_conv *p, int m)
{
	long total = total_tiles(p, m);
	int ld = block_tiles(p, m);
	return (total <= ld ? 1 : 2) * block_floats(p, m, ld);
}

bool rt_winograd_fits(const rt_conv *p)
{
	return p->k == 3 && p->stride == 1 && p->oh >= 1 && p->ow >= 1;
}

/* ---- one block of tiles ----------------------------------------------------- */

typedef struct wino {
	const rt_conv *p;
	const float *x, *u, *b, *res;
	float *y, *v, *m;
	int relu;
	int out;       /* F(out x out, 3x3): 4 or 2 */
	int th, tw;    /* tiles per image, down and across */
	long t0;       /* the block's first tile */
	int tb, ld;    /* tiles in the block; the row stride of V and M */
	size_t vs, ms; /* V's and M's position strides (pos_stride) */
	tile_at *at;   /* the block's tiles */
	rt_threads *pool;
} wino;

/* Scratch: V [36][c][ld], M [36][oc][ld] (positions vs and ms apart),
 * the tile table [ld] */
static void wino_scratch(wino *w, float *scratch)
{
	const rt_conv *p = w->p;
	w->vs = pos_stride(p->c, w->ld);
	w->ms = pos_stride(p->oc, w->ld);
	w->v = scratch;
	w->m = w->v + pos_of(w->out) * w->vs;
	w->at = (tile_at *)(w->m + pos_of(w->out) * w->ms);
}

/* Bits [lo, hi) of n, clamped: the offsets of a tile's rows or columns
 * that lie inside the map */
static unsigned span_bits(int lo, int hi, int n)
{
	lo = lo < 0 ? 0 : lo;
	hi = hi > n ? n : hi;
	return hi > lo ? ((1u << hi) - 1) & ~((1u << lo) - 1) : 0;
}

/* Which of a tile's rows and columns lie inside the maps, as bits: its
 * input tile's (m + 2 square, corner pad up and left) rows and columns,
 * then its output tile's */
static unsigned tile_key(const wino *w, int y, int x)
{
	const rt_conv *p = w->p;
	int m = w->out;
	return span_bits(p->pad - y, p->h + p->pad - y, m + 2) |
	       span_bits(p->pad - x, p->w + p->pad - x, m + 2) << TILE |
	       span_bits(-y, p->oh - y, m) << 2 * TILE |
	       span_bits(-x, p->ow - x, m) << (2 * TILE + OUT);
}

enum { KEYS = 32 };

/* keys[0..*nk) ends with key, added if it was not there; past KEYS keys,
 * the last holds the rest */
static int key_slot(unsigned *keys, int *nk, unsigned key)
{
	for (int i = 0; i < *nk; i++)
		if (keys[i] == key)
			return i;
	if (*nk < KEYS)
		keys[(*nk)++] = key;
	return *nk - 1;
}

/* The block's tiles grouped by key (tile_key), tiles wholly inside the
 * maps first, each key's tiles in the images' order (a counting sort): a
 * group of eight tiles of one key reads and writes every lane's rows the
 * same way, with no test per lane (in the images' order a 28x28 map has
 * an edge tile in almost every group of eight, a 7x7 map in every one).
 * The order is the block's alone, so the results do not depend on the
 * thread count. */
static void block_start(wino *w, long total)
{
	w->tb = (int)(total - w->t0 < w->ld ? total - w->t0 : w->ld);
	int per = w->th * w->tw, img0 = (int)(w->t0 / per), r0 = (int)(w->t0 % per);
	unsigned keys[KEYS];
	int nk = 1, start[KEYS + 1] = {0};
	/* a tile wholly inside the maps: every row and column's bit */
	int m = w->out;
	keys[0] = span_bits(0, m + 2, m + 2) * (1u | 1u << TILE) |
	          span_bits(0, m, m) * (1u << 2 * TILE | 1u << (2 * TILE + OUT));
	for (int pass = 0; pass < 2; pass++) {
		int img = img0, ty = r0 / w->tw, tx = r0 % w->tw, slot = 0;
		unsigned last = ~0u;
		for (int i = 0; i < w->tb; i++) {
			int y = ty * w->out, x = tx * w->out;
			unsigned key = tile_key(w, y, x);
			if (key != last)
				slot = key_slot(keys, &nk, key), last = key;
			if (pass == 0)
				start[slot + 1]++;
			else
				w->at[start[slot]++] = (tile_at){img, y, x};
			if (++tx == w->tw) {
				tx = 0;
				if (++ty == w->th)
					ty = 0, img++;
			}
		}
		for (int k = 0; pass == 0 && k < nk; k++)
			start[k + 1] += start[k];
	}
}

/* Eight tiles at a time, one per vector lane: the transforms' arithmetic
 * runs on whole vectors, and V and M, tile-contiguous, load and store
 * whole vectors. Every lane does the same arithmetic as a tile alone
 * would, so the lane a tile lands in changes no bits. The functions below
 * take the output tile size m as a constant once inlined (4 or 2). */
typedef int vi __attribute__((vector_size(32)));
enum { LANES = 8 };

/* B^T applied to m + 2 values (a column, then a row, of the tile). */
static inline __attribute__((always_inline)) void b_t(int m, const v8 *d, v8 *r)
{
	if (m == 2) {
		r[0] = d[0] - d[2];
		r[1] = d[1] + d[2];
		r[2] = d[2] - d[1];
		r[3] = d[1] - d[3];
		return;
	}
	r[0] = 4 * d[0] - 5 * d[2] + d[4];
	r[1] = -4 * d[1] - 4 * d[2] + d[3] + d[4];
	r[2] = 4 * d[1] - 4 * d[2] - d[3] + d[4];
	r[3] = -2 * d[1] - d[2] + 2 * d[3] + d[4];
	r[4] = 2 * d[1] - d[2] - 2 * d[3] + d[4];
	r[5] = 4 * d[1] - 5 * d[3] + d[5];
}

/* A^T applied to m + 2 values, m out. */
static inline __attribute__((always_inline)) void a_t(int m, const v8 *d, v8 *r)
{
	if (m == 2) {
		r[0] = d[0] + d[1] + d[2];
		r[1] = d[1] - d[2] - d[3];
		return;
	}
	r[0] = d[0] + d[1] + d[2] + d[3] + d[4];
	r[1] = d[1] - d[2] + 2 * d[3] - 2 * d[4];
	r[2] = d[1] + d[2] + 4 * d[3] + 4 * d[4];
	r[3] = d[1] - d[2] + 8 * d[3] - 8 * d[4] + d[5];
}

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

/* Plans for lanes j.. of the block, for tiles width wide whose corners
 * lie dy, dx from the tiles' own (minus the padding for input tiles), on
 * h x wd maps of `channels` channels. */
static void plan_lanes(const wino *w, int j, int dy, int dx, int h, int wd, int channels, int width,
                       lane_plan lp[LANES])
{
	for (int l = 0; l < LANES; l++) {
		lane_plan *q = &lp[l];
		q->rows = 0;
		q->edge = q->shifted = false;
		if (j + l >= w->tb)
			continue;
		const tile_at *a = &w->at[j + l];
		int y0 = a->y + dy, x0 = a->x + dx;
		for (int r = 0; r < width; r++)
			if (y0 + r >= 0 && y0 + r < h)
				q->rows |= 1 << r;
		q->off = (long)a->img * channels * h * wd + (long)y0 * wd + x0;
		q->x0 = x0;
		/* rows are read four floats at a time */
		if (x0 >= 0 && x0 + (width > 4 ? width : 4) <= wd)
			continue;
		q->edge = true;
		int in[TILE];
		for (int s = 0; s < TILE; s++) {
			int x = x0 + s;
			in[s] = s < width && x >= 0 && x < wd ? -1 : 0;
			q->col[s] = x < 0 ? 0 : x >= wd ? wd - 1 : x;
		}
		q->mlo = (qi4){in[0], in[1], in[2], in[3]};
		q->mhi = (qi4){in[2], in[3], in[4], in[5]};
#if defined(__SSSE3__)
		/* a window of four floats inside the row for columns 0-3 and
		 * one for 2-5, each float moved to its lane or zeroed: two
		 * loads and two byte shuffles instead of six loads and
		 * inserts (a row needs four floats) */
		q->shifted = wd >= 4;
		for (int half = 0; half < 2 && q->shifted; half++) {
			int first = x0 + 2 * half, at = first < 0        ? 0
			                                : first > wd - 4 ? wd - 4
			                                                 : first;
			qb16 ctl;
			for (int e = 0; e < 4; e++)
				for (int b = 0; b < 4; b++)
					ctl[4 * e + b] = in[2 * half + e]
					                     ? (char)(4 * (first + e - at) + b)
					                     : (char)0x80;
			if (half)
				q->hi_at = q->off - x0 + at, q->hi_ctl = ctl;
			else
				q->lo_at = q->off - x0 + at, q->lo_ctl = ctl;
		}
#endif
	}
}

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
 * map the same byte shuffles (tiles of one key: block_start puts them
 * together); or each lane its own way, tested per lane and row. */
enum { LANES_WHOLE, LANES_SAME, LANES_MIXED };

static int lanes_kind(const wino *w, const lane_plan lp[LANES], int j, int width)
{
	if (j + LANES > w->tb)
		return LANES_MIXED;
	const lane_plan *a = &lp[0];
	bool whole = true, same = !a->edge || a->shifted;
	for (int l = 0; l < LANES; l++) {
		const lane_plan *q = &lp[l];
		whole = whole && !q->edge && q->rows == (1 << width) - 1;
		same = same && q->rows == a->rows && q->edge == a->edge && q->shifted == a->shifted;
		if (same && q->edge)
			same = q->lo_at - q->off == a->lo_at - a->off &&
			       q->hi_at - q->off == a->hi_at - a->off &&
			       !memcmp(&q->lo_ctl, &a->lo_ctl, sizeof q->lo_ctl) &&
			       !memcmp(&q->hi_ctl, &a->hi_ctl, sizeof q->hi_ctl);
	}
	return whole ? LANES_WHOLE : same ? LANES_SAME : LANES_MIXED;
}

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

/* Lanes into rows, the inverse for four columns: row l gets in[s][l]. */
static inline __attribute__((always_inline)) void lanes_out(const v8 *in, q4 row[LANES])
{
#if defined(__AVX__)
	__m256 t0 = _mm256_unpacklo_ps((__m256)in[0], (__m256)in[1]);
	__m256 t1 = _mm256_unpackhi_ps((__m256)in[0], (__m256)in[1]);
	__m256 t2 = _mm256_unpacklo_ps((__m256)in[2], (__m256)in[3]);
	__m256 t3 = _mm256_unpackhi_ps((__m256)in[2], (__m256)in[3]);
	__m256 r[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),
	               _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};
	for (int l = 0; l < 4; l++) {
		row[l] = (q4)_mm256_castps256_ps128(r[l]);
		row[l + 4] = (q4)_mm256_extractf128_ps(r[l], 1);
	}
#else
	for (int l = 0; l < LANES; l++)
		row[l] = (q4){in[0][l], in[1][l], in[2][l], in[3][l]};
#endif
}

/* V = B^T d B for channels [c0, c1), a group of eight tiles at a time:
 * each row of d times B as it is gathered, then B^T times each column,
 * stored straight into V (the other order kept all 36 values of d and of
 * B^T d on the stack: three times the stores, and this CPU stores a
 * vector in two cycles). */
static inline __attribute__((always_inline)) void
input_group(const wino *w, int m, const lane_plan lp[LANES], int kind, int j, int ci)
{
	const rt_conv *p = w->p;
	int tile = m + 2;
	const float *base = w->x + ci * (size_t)p->h * p->w;
	v8 t[TILE][TILE];
	for (int r = 0; r < tile; r++) {
		v8 d[TILE];
		gather_row(lp, base, p->w, r, tile, kind, d);
		b_t(m, d, t[r]);
	}
	float *v = w->v + (size_t)ci * w->ld + j;
	for (int s = 0; s < tile; s++) {
		v8 col[TILE], r[TILE];
		for (int k = 0; k < tile; k++)
			col[k] = t[k][s];
		b_t(m, col, r);
		for (int k = 0; k < tile; k++)
			store8(v + (k * tile + s) * w->vs, r[k]);
	}
}

static inline __attribute__((always_inline)) void input_tiles(const wino *w, int m, int c0, int c1)
{
	const rt_conv *p = w->p;
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		plan_lanes(w, j, -p->pad, -p->pad, p->h, p->w, p->c, m + 2, lp);
		int kind = lanes_kind(w, lp, j, m + 2);
		for (int ci = c0; ci < c1; ci++)
			if (kind == LANES_WHOLE)
				input_group(w, m, lp, LANES_WHOLE, j, ci);
			else if (kind == LANES_SAME)
				input_group(w, m, lp, LANES_SAME, j, ci);
			else
				input_group(w, m, lp, LANES_MIXED, j, ci);
	}
}

static void input_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int c0, c1;
	rt_task_range(p->c, task, tasks, &c0, &c1);
	if (w->out == 2)
		input_tiles(w, 2, c0, c1);
	else
		input_tiles(w, OUT, c0, c1);
}

static void gemm_task(void *ctx, int pos, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	rt_gemm_b b = {.data = w->v + pos * w->vs, .ld = w->ld};
	rt_gemm_serial(w->pool, p->oc, w->tb, p->c,
	               w->u + (size_t)pos * rt_gemm_packed_a_floats(rt_gemm_mr(), p->oc, p->c), 0,
	               RT_GEMM_A_PACKED, &b, w->m + pos * w->ms, w->ld, NULL);
}

/* The m x m output tiles of lanes j.. (y[k][s] in lanes) into a channel's
 * plane: whole rows of four where a tile lies inside the map, else the
 * outputs that do */
static inline __attribute__((always_inline)) void store_tiles(const wino *w,
                                                              const lane_plan lp[LANES], int j,
                                                              int m, int kind, v8 y[OUT][OUT],
                                                              float *plane)
{
	/* ow in a register: the stores could alias it */
	const long ow = w->p->ow;
	if (m == OUT && kind != LANES_MIXED) {
		/* straight-line stores, every lane's rows the same (the tests per
		 * lane and row below were half the output transform) */
		int cols = kind == LANES_WHOLE || !lp[0].edge ? m : (int)ow - lp[0].x0;
		for (int k = 0; k < m; k++) {
			if (kind == LANES_SAME && !(lp[0].rows >> k & 1))
				continue;
			q4 rows[LANES];
			lanes_out(y[k], rows);
			for (int l = 0; l < LANES; l++) {
				float *yo = plane + lp[l].off + k * ow;
				if (cols == m)
					memcpy(yo, &rows[l], sizeof rows[l]);
				else
					for (int s = 0; s < cols; s++)
						yo[s] = rows[l][s];
			}
		}
		return;
	}
	for (int k = 0; k < m; k++) {
		q4 rows[LANES];
		if (m == OUT)
			lanes_out(y[k], rows);
		for (int l = 0; l < LANES && j + l < w->tb; l++) {
			const lane_plan *q = &lp[l];
			if (!(q->rows >> k & 1))
				continue;
			float *yo = plane + q->off + k * ow;
			if (m == OUT && !q->edge) {
				memcpy(yo, &rows[l], sizeof rows[l]);
				continue;
			}
			for (int s = 0; s < m && q->x0 + s < ow; s++)
				yo[s] = y[k][s][l];
		}
	}
}

static inline __attribute__((always_inline)) void
output_group(const wino *w, int m, const lane_plan lp[LANES], int kind, int j, int o)
{
	const rt_conv *p = w->p;
	int tile = m + 2;
	size_t plane = (size_t)p->oh * p->ow;
	float bias = w->b ? w->b[o] : 0.0f;
	const float *mo = w->m + (size_t)o * w->ld + j;
	v8 t[TILE][OUT], y[OUT][OUT];
	for (int k = 0; k < tile; k++) {
		v8 row[TILE];
		for (int s = 0; s < tile; s++)
			row[s] = load8(mo + (k * tile + s) * w->ms);
		a_t(m, row, t[k]);
	}
	for (int s = 0; s < m; s++) {
		v8 col[TILE], r[OUT];
		for (int k = 0; k < tile; k++)
			col[k] = t[k][s];
		a_t(m, col, r);
		for (int k = 0; k < m; k++)
			y[k][s] = r[k];
	}
	/* the plain kernels' epilogue order: conv + bias, + residual, then
	 * relu (NaN kept), on whole vectors (a relu decided per value was a
	 * branch mispredicted half the time: 1.5x the layer's time); lanes
	 * off the map compute on zeros and are not stored */
	for (int k = 0; k < m; k++)
		for (int s = 0; s < m; s++)
			y[k][s] += bias;
	if (w->res)
		for (int k = 0; k < m; k++) {
			v8 rv[OUT];
			gather_row(lp, w->res + o * plane, p->ow, k, m, kind, rv);
			for (int s = 0; s < m; s++)
				y[k][s] += rv[s];
		}
	if (w->relu)
		for (int k = 0; k < m; k++)
			for (int s = 0; s < m; s++) {
				vi keep = (y[k][s] > 0) | (y[k][s] != y[k][s]);
				y[k][s] = (v8)((vi)y[k][s] & keep);
			}
	store_tiles(w, lp, j, m, kind, y, w->y + o * plane);
}

/* y = A^T M A for output channels [o0, o1), then the epilogue: each row
 * of M's tile times A, then A^T times each column; each kind of group
 * (lanes_kind) compiled apart */
static inline __attribute__((always_inline)) void output_tiles(const wino *w, int m, int o0, int o1)
{
	const rt_conv *p = w->p;
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		plan_lanes(w, j, 0, 0, p->oh, p->ow, p->oc, m, lp);
		int kind = lanes_kind(w, lp, j, m);
		for (int o = o0; o < o1; o++)
			if (kind == LANES_WHOLE)
				output_group(w, m, lp, LANES_WHOLE, j, o);
			else if (kind == LANES_SAME)
				output_group(w, m, lp, LANES_SAME, j, o);
			else
				output_group(w, m, lp, LANES_MIXED, j, o);
	}
}

static void output_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int o0, o1;
	rt_task_range(p->oc, task, tasks, &o0, &o1);
	if (w->out == 2)
		output_tiles(w, 2, o0, o1);
	else
		output_tiles(w, OUT, o0, o1);
}

/* With tiles enough, each thread takes whole blocks of its own (a slice of
 * the scratch each): the transforms and GEMMs of a block run on one core,
 * where its V and M stay in cache, with no handover between threads. With
 * few tiles (batch 1, small maps) the threads share each block instead,
 * split by channels and positions, so that U is not read once per thread. */
enum { MIN_THREAD_BLOCK = 16 };

typedef struct wsplit {
	const wino *proto;
	float *scratch;
	size_t slice; /* floats per thread */
	int sb;       /* tiles per thread block */
	long total;
} wsplit;

/* Each thread its share of the tiles, cut at whole GEMM panels, in
 * blocks of up to sb (whole blocks round-robin left one thread a block
 * more: 196 tiles in four of 48 and one of 4) */
static void thread_blocks_task(void *ctx, int task, int tasks)
{
	const wsplit *s = ctx;
	wino w = *s->proto;
	w.ld = s->sb;
	wino_scratch(&w, s->scratch + (size_t)task * s->slice);
	long panels = (s->total + PANEL - 1) / PANEL;
	long lo = panels * task / tasks * PANEL, hi = panels * (task + 1) / tasks * PANEL;
	hi = hi < s->total ? hi : s->total;
	for (w.t0 = lo; w.t0 < hi; w.t0 += w.ld) {
		block_start(&w, hi);
		input_task(&w, 0, 1);
		for (int pos = 0; pos < pos_of(w.out); pos++)
			gemm_task(&w, pos, pos_of(w.out));
		output_task(&w, 0, 1);
	}
}

void rt_conv2d_winograd(rt_threads *t, const rt_conv *p, int m, const float *x, const float *u,
                        const float *b, const float *res, float *y, int relu, float *scratch)
{
	wino w = {
	    .p = p,
	    .x = x,
	    .u = u,
	    .b = b,
	    .res = res,
	    .y = y,
	    .relu = relu,
	    .out = m,
	    .th = tiles_of(p->oh, m),
	    .tw = tiles_of(p->ow, m),
	    .ld = block_tiles(p, m),
	    .pool = t,
	};
	long total = total_tiles(p, m);
	int threads = rt_threads_count(t);
	int sb = 2 * w.ld / threads / LANES * LANES;
	size_t slice = block_floats(p, m, sb);
	if (threads > 1 && sb >= MIN_THREAD_BLOCK && total > w.ld && total >= (long)threads * sb &&
	    threads * slice <= rt_winograd_scratch_floats(p, m)) {
		wsplit s = {
		    .proto = &w,
		    .scratch = scratch,
		    .slice = slice,
		    .sb = sb,
		    .total = total,
		};
		rt_threads_run(t, thread_blocks_task, &s, threads);
		return;
	}
	wino_scratch(&w, scratch);
	for (w.t0 = 0; w.t0 < total; w.t0 += w.ld) {
		block_start(&w, total);
		rt_threads_run(t, input_task, &w, p->c < threads * 4 ? p->c : threads * 4);
		rt_threads_run(t, gemm_task, &w, pos_of(m));
		rt_threads_run(t, output_task, &w, p->oc < threads * 4 ? p->oc : threads * 4);
	}
}

/* ---- training: the input and weight gradients --------------------------- */

/* The transposed convolution an input gradient is: dY's oc channels in,
 * c out, the same geometry (pad 1 keeps it stride 1, 3x3). */
static rt_conv transposed(const rt_conv *p)
{
	return rt_conv_make(p->n, p->oc, p->oh, p->ow, p->c, 3, 1, 3 - 1 - p->pad);
}

bool rt_winograd_grad_fits(const rt_conv *p)
{
	return rt_winograd_fits(p) && p->pad == 1 && p->oh == p->h && p->ow == p->w;
}

size_t rt_winograd_grad_input_scratch_floats(const rt_conv *p)
{
	rt_conv q = transposed(p);
	return rt_winograd_scratch_floats(&q, OUT);
}

void rt_conv2d_grad_input_winograd(rt_threads *t, const rt_conv *p, const float *dy,
                                   const float *ut, float *dx, float *scratch)
{
	rt_conv q = transposed(p);
	rt_conv2d_winograd(t, &q, OUT, dy, ut, NULL, NULL, dx, 0, scratch);
}

/* The weight gradient of y = A^T [(G g G^T) . (B^T d B)] A, summed over
 * tiles, is dg = G^T [sum over tiles of (A dy A^T) . (B^T d B)] G: the same
 * input tiles V, the output gradient's tiles through A, and per position a
 * GEMM whose inner dimension is the tiles,
 *   M[p] += D[p] . V[p]^T     [oc x tiles] . [tiles x c] -> [oc x c]
 * accumulated over blocks; then each (oc, c) pair's 6x6 goes back to 3x3. */

/* With few channels (M small) the tiles go in CHUNKS fixed ranges, each
 * summed into its own M by one thread, block by block,
 * and the partial sums are added in chunk order: the threads work in their
 * own cores' caches, and the result does not depend on how many there are.
 * With more channels a second and third M would not stay in cache: the
 * threads share each block, split by channels and then by positions. */
enum { CHUNKS = 4, CHUNKED_MAX_FLOATS = 64 * 1024 };

static int chunks_of(const rt_conv *p)
{
	return (size_t)POS * p->oc * p->c <= CHUNKED_MAX_FLOATS ? CHUNKS : 1;
}

static int chunk_tiles(const rt_conv *p)
{
	/* Shared blocks twice the forward's: each block's 36 GEMMs sum over
	 * its tiles, and at 64 channels the forward's 48 tiles were too short
	 * a sum for the GEMM (a training step 0.98x with 112; 0.99-1.00x
	 * with four times) */
	if (chunks_of(p) == 1) {
		long total = (total_tiles(p, OUT) + 15) / 16 * 16;
		long t = 2L * BLOCK_FLOATS / ((long)POS * (p->c + p->oc)) / 16 * 16;
		return (int)(t < 16 ? 16 : t > total ? total : t);
	}
	int sb = block_tiles(p, OUT) / LANES * LANES;
	return sb < LANES ? LANES : sb;
}

size_t rt_winograd_grad_weight_scratch_floats(const rt_conv *p)
{
	return chunks_of(p) * (block_floats(p, OUT, chunk_tiles(p)) + (size_t)POS * p->oc * p->c);
}

/* A applied to four values (the transpose of AT). */
#define A4(d, r)                                                                                   \
	do {                                                                                       \
		r[0] = d[0];                                                                       \
		r[1] = d[0] + d[1] + d[2] + d[3];                                                  \
		r[2] = d[0] - d[1] + d[2] - d[3];                                                  \
		r[3] = d[0] + 2 * d[1] + 4 * d[2] + 8 * d[3];                                      \
		r[4] = d[0] - 2 * d[1] + 4 * d[2] - 8 * d[3];                                      \
		r[5] = d[3];                                                                       \
	} while (0)

/* D = A dy A^T for the 4x4 output-gradient tiles of the block, zero past
 * the map and past the block's last tile: each row of dy times A^T as it
 * is gathered, then A times each column */
static inline __attribute__((always_inline)) void dy_group(const wino *w, const lane_plan lp[LANES],
                                                           int kind, int j, int o)
{
	const rt_conv *p = w->p;
	v8 t[OUT][TILE];
	for (int k = 0; k < OUT; k++) {
		v8 d[OUT];
		gather_row(lp, w->res + o * (size_t)p->oh * p->ow, p->ow, k, OUT, kind, d);
		A4(d, t[k]);
	}
	float *mo = w->m + (size_t)o * w->ld + j;
	for (int s = 0; s < TILE; s++) {
		v8 col[OUT], r[TILE];
		for (int k = 0; k < OUT; k++)
			col[k] = t[k][s];
		A4(col, r);
		for (int k = 0; k < TILE; k++)
			store8(mo + (k * TILE + s) * w->ms, r[k]);
	}
}

static void dy_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int o0, o1;
	rt_task_range(p->oc, task, tasks, &o0, &o1);
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		plan_lanes(w, j, 0, 0, p->oh, p->ow, p->oc, OUT, lp);
		int kind = lanes_kind(w, lp, j, OUT);
		for (int o = o0; o < o1; o++)
			if (kind == LANES_WHOLE)
				dy_group(w, lp, LANES_WHOLE, j, o);
			else if (kind == LANES_SAME)
				dy_group(w, lp, LANES_SAME, j, o);
			else
				dy_group(w, lp, LANES_MIXED, j, o);
	}
}

typedef struct wgrad {
	wino w;
	float *acc;   /* CHUNKS partial sums M: [pos][oc][c] each */
	size_t slice; /* scratch floats per chunk */
	int sb;       /* tiles per block */
	long total;
} wgrad;

/* M[pos] (+)= D[pos] . V[pos]^T for the block, into acc's M */
static void wgrad_gemm(const wino *w, int pos, float *acc, int accumulate)
{
	const rt_conv *p = w->p;
	rt_gemm_b b = {.data = w->v + pos * w->vs, .ld = w->ld, .trans = 1};
	rt_gemm_serial(w->pool, p->oc, p->c, w->tb, w->m + pos * w->ms, w->ld, 0, &b,
	               acc + (size_t)pos * p->oc * p->c, p->c,
	               &(rt_epilogue){.add = accumulate ? acc + (size_t)pos * p->oc * p->c : NULL});
}

/* The totals of four vectors, in order: each one's lanes summed
 * ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)) */
static inline __attribute__((always_inline)) q4 totals4(const v8 a[4])
{
#if defined(__AVX__)
	__m256 u = _mm256_hadd_ps(_mm256_hadd_ps((__m256)a[0], (__m256)a[1]),
	                          _mm256_hadd_ps((__m256)a[2], (__m256)a[3]));
	return (q4)_mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
#else
	q4 r;
	for (int e = 0; e < 4; e++)
		r[e] = ((a[e][0] + a[e][1]) + (a[e][2] + a[e][3])) +
		       ((a[e][4] + a[e][5]) + (a[e][6] + a[e][7]));
	return r;
#endif
}

/* out[i][e] (+)= D row i . V row e over kv tiles, for rows x cols of
 * them (at most 3 x 4: the twelve sums and a vector of most of the seven
 * rows fill the sixteen registers; GCC reads the rest into the FMAs),
 * eight tiles to a lane each */
static inline __attribute__((always_inline)) void dot_tile(const float *d, const float *v,
                                                           size_t ld, int kv, int rows, int cols,
                                                           float *out, size_t ldo, int accumulate)
{
	v8 a[3][4] = {{{0}}};
	for (int k = 0; k < kv; k += LANES) {
		v8 ve[4];
		for (int e = 0; e < cols; e++)
			ve[e] = load8(v + e * ld + k);
		for (int i = 0; i < rows; i++) {
			v8 di = load8(d + i * ld + k);
			for (int e = 0; e < cols; e++)
				a[i][e] += di * ve[e];
		}
	}
	for (int i = 0; i < rows; i++) {
		q4 t = totals4(a[i]);
		float *o = out + i * ldo;
		for (int e = 0; e < cols; e++)
			o[e] = accumulate ? o[e] + t[e] : t[e];
	}
}

/* wgrad_gemm's sums as dot products of D's and V's rows where the
 * transforms left them (both run along the tiles), for the chunks' 16
 * and 32 channels: as a GEMM, both operands had to be packed transposed,
 * and with only 16 or 32 rows and columns the packing was half its time
 * (144 -> 86 core cycles per tile and channel at 16 channels, 222 -> 188
 * at 32; at 64 the GEMM is faster). The transforms write whole groups of
 * eight lanes, zeros past the block, so the sums run to a multiple of
 * eight tiles. */
static void wgrad_dots(const wino *w, int pos, float *acc, int accumulate)
{
	const rt_conv *p = w->p;
	const float *d = w->m + pos * w->ms, *v = w->v + pos * w->vs;
	float *out = acc + (size_t)pos * p->oc * p->c;
	int kv = (w->tb + LANES - 1) / LANES * LANES;
	size_t ld = (size_t)w->ld;
	for (int o = 0; o < p->oc; o += 3) {
		int rows = p->oc - o < 3 ? p->oc - o : 3;
		for (int c = 0; c < p->c; c += 4) {
			const float *dr = d + o * ld, *vr = v + c * ld;
			float *t = out + (size_t)o * p->c + c;
			if (c + 4 > p->c) /* the last columns, one at a time */
				for (int e = 0; c + e < p->c; e++)
					dot_tile(dr, vr + e * ld, ld, kv, rows, 1, t + e, p->c,
					         accumulate);
			else if (rows == 3)
				dot_tile(dr, vr, ld, kv, 3, 4, t, p->c, accumulate);
			else if (rows == 2)
				dot_tile(dr, vr, ld, kv, 2, 4, t, p->c, accumulate);
			else
				dot_tile(dr, vr, ld, kv, 1, 4, t, p->c, accumulate);
		}
	}
}

static void wgrad_gemm_task(void *ctx, int pos, int tasks)
{
	const wgrad *g = ctx;
	wgrad_gemm(&g->w, pos, g->acc, g->w.t0 > 0);
}

/* The chunk's tiles, block by block, into its M */
static void wgrad_chunk_task(void *ctx, int q, int chunks)
{
	const wgrad *g = ctx;
	const rt_conv *p = g->w.p;
	wino w = g->w;
	w.ld = g->sb;
	wino_scratch(&w, w.v + (size_t)q * g->slice);
	size_t per = (size_t)POS * p->oc * p->c;
	float *acc = g->acc + (size_t)q * per;
	long t0 = g->total * q / chunks, t1 = g->total * (q + 1) / chunks;
	if (t0 == t1)
		memset(acc, 0, per * sizeof(float));
	for (w.t0 = t0; w.t0 < t1; w.t0 += w.ld) {
		block_start(&w, t1);
		input_task(&w, 0, 1);
		dy_task(&w, 0, 1);
		for (int pos = 0; pos < POS; pos++)
			wgrad_dots(&w, pos, acc, w.t0 > t0);
	}
}

/* dw[o][c] = G^T M G for each pair, M the chunks' sum, in double */
static void wgrad_out_task(void *ctx, int task, int tasks)
{
	const wgrad *g = ctx;
	const rt_conv *p = g->w.p;
	/* tasks own whole groups of four pairs, so which pairs take the
	 * vector path depends on the pairs alone, not on the thread count */
	size_t pairs = (size_t)p->oc * p->c, groups = (pairs + 3) / 4, per = POS * pairs;
	size_t q0 = groups * task / tasks * 4, q1 = groups * (task + 1) / tasks * 4;
	if (q1 > pairs)
		q1 = pairs;
	int chunks = chunks_of(p);
	/* four pairs at a time, one per lane of a double vector: the same
	 * operations on each as below (one pair at a time, this was 1% of a
	 * training step); below, the last pairs past a multiple of four */
	typedef double v4d __attribute__((vector_size(4 * sizeof(double))));
	for (; q0 + 4 <= q1; q0 += 4) {
		v4d m[POS], t[3][TILE];
		for (int k = 0; k < POS; k++) {
			const float *a = g->acc + (size_t)k * pairs + q0;
			for (int l = 0; l < 4; l++)
				m[k][l] = a[l];
			for (int c = 1; c < chunks; c++)
				for (int l = 0; l < 4; l++)
					m[k][l] += a[c * per + l];
		}
		for (int s = 0; s < TILE; s++)
			for (int k = 0; k < 3; k++) {
				v4d acc = {0};
				for (int r = 0; r < TILE; r++)
					acc += G[r][k] * m[r * TILE + s];
				t[k][s] = acc;
			}
		float *dw = g->w.y + q0 * 9;
		for (int k = 0; k < 3; k++)
			for (int l = 0; l < 3; l++) {
				v4d acc = {0};
				for (int s = 0; s < TILE; s++)
					acc += t[k][s] * G[s][l];
				for (int e = 0; e < 4; e++)
					dw[e * 9 + k * 3 + l] = (float)acc[e];
			}
	}
	for (size_t q = q0; q < q1; q++) {
		double m[POS], t[3][TILE];
		for (int k = 0; k < POS; k++) {
			const float *a = g->acc + (size_t)k * pairs + q;
			m[k] = a[0];
			for (int c = 1; c < chunks; c++)
				m[k] += a[c * per];
		}
		for (int s = 0; s < TILE; s++)
			for (int k = 0; k < 3; k++) {
				double acc = 0;
				for (int r = 0; r < TILE; r++)
					acc += G[r][k] * m[r * TILE + s];
				t[k][s] = acc;
			}
		float *dw = g->w.y + q * 9;
		for (int k = 0; k < 3; k++)
			for (int l = 0; l < 3; l++) {
				double acc = 0;
				for (int s = 0; s < TILE; s++)
					acc += t[k][s] * G[s][l];
				dw[k * 3 + l] = (float)acc;
			}
	}
}

void rt_conv2d_grad_weight_winograd(rt_threads *t, const rt_conv *p, const float *x,
                                    const float *dy, float *dw, float *scratch)
{
	wgrad g = {
	    .w =
	        {
	            .p = p,
	            .x = x,
	            .res = dy,
	            .y = dw,
	            .out = OUT,
	            .th = tiles_of(p->oh, OUT),
	            .tw = tiles_of(p->ow, OUT),
	            .v = scratch,
	            .pool = t,
	        },
	    .acc = scratch + chunks_of(p) * block_floats(p, OUT, chunk_tiles(p)),
	    .slice = block_floats(p, OUT, chunk_tiles(p)),
	    .sb = chunk_tiles(p),
	    .total = total_tiles(p, OUT),
	};
	if (g.total == 0) {
		memset(dw, 0, (size_t)p->oc * p->c * 9 * sizeof(float));
		return;
	}
	int threads = rt_threads_count(t);
	if (chunks_of(p) > 1) {
		rt_threads_run(t, wgrad_chunk_task, &g, CHUNKS);
	} else {
		wino *w = &g.w;
		w->ld = g.sb;
		wino_scratch(w, scratch);
		for (w->t0 = 0; w->t0 < g.total; w->t0 += w->ld) {
			block_start(w, g.total);
			rt_threads_run(t, input_task, w, p->c < threads * 4 ? p->c : threads * 4);
			rt_threads_run(t, dy_task, w, p->oc < threads * 4 ? p->oc : threads * 4);
			rt_threads_run(t, wgrad_gemm_task, &g, POS);
		}
	}
	rt_threads_run(t, wgrad_out_task, &g, threads * 4);
}
