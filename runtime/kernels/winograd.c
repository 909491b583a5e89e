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
 * and the weight gradient (the transposed algorithm), winograd_grad.c.
 *
 * This file is the forward driver: the blocks' sizes and tiles, and who
 * runs what; the transforms are winograd_transform.c. */
#include <limits.h>
#include <stdatomic.h>

#include "winograd_impl.h"

static int pos_of(int m)
{
	return winograd_pos_of(m);
}

/* Tiles per block: V and M (pos x (c + oc) floats a tile) in BLOCK_FLOATS,
 * at least 16 (a GEMM panel), never more than there are. Every block reads
 * all of U, so where U is larger than the blocks and all the tiles would
 * fit in as much as U (up to BLOCK_MAX), they go in one block, U read once
 * (128 channels on a 28x28 map at batch 1: one block of 49 tiles instead
 * of four of 16, 1.8 -> 1.5 ms on 2 threads). Not more generally: at
 * batch 8, blocks per thread that large fell out of L2 (ResNet-50 7% slower).
 * In rows mode (wino_rows) blocks are at most ROWS_BLOCK_TILES: V and M
 * then stay in L2 beside the input rows being read (ResNet-20's first
 * stage, 224 tiles before, ran 10-25% faster, its second, 128 before,
 * 5-10%). The kernel set decides it, so the scratch netcc plans holds
 * either kind of block (rt_winograd_scratch_floats). */
static int block_tiles(const rt_conv *p, int m, bool rows)
{
	long total = total_tiles_max(p, m);
	long per_tile = pos_of(m) * (long)(p->c + p->oc);
	long fit = BLOCK_FLOATS / per_tile;
	long u_tiles = (long)pos_of(m) * p->c * p->oc / per_tile;
	/* the nearest whole number of GEMM panels (32 columns with AVX-512,
	 * two panels of AVX2's 16): 48 tiles cost what 64 do */
	fit = fit < PANEL ? PANEL : (fit + PANEL / 2) / PANEL * PANEL;
	if (rows && fit > ROWS_BLOCK_TILES)
		fit = ROWS_BLOCK_TILES;
	/* a whole number of vectors: the last one's spare lanes are written too */
	total = (total + 7) / 8 * 8;
	if (u_tiles > fit && total <= u_tiles && total <= BLOCK_MAX / per_tile)
		fit = total;
	return (int)(total < fit ? total : fit);
}

int rt_wino_block_tiles(const rt_conv *p, int m)
{
	return block_tiles(p, m, wino_rows(p, m) != ROWS_NONE);
}

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
size_t rt_wino_block_floats(const rt_conv *p, int m, int tiles)
{
	size_t n = (size_t)pos_of(m) * (pos_stride(p->c, tiles) + pos_stride(p->oc, tiles)) +
	           sizeof(tile_at) / sizeof(float) * tiles;
	return (n + 15) / 16 * 16; /* the next block's V starts on a cache line */
}

/* Room for two blocks: one used alone when the threads share blocks, or
 * shared out among the threads when each takes blocks of its own (best
 * measured on the EPYC: a megabyte for one thread, two for two), and
 * SLICE_GAP floats more, which keep the threads' slices apart. Where one
 * block holds every tile the threads always share it: room for one.
 *
 * With two slices end to end, whichever thread had the upper one ran its
 * transforms and GEMMs markedly slower than the other, on the same work,
 * wherever the pair lay; the slowdown faded as the slices moved apart,
 * and was gone short of this gap (docs/performance.md). */
enum { SLICE_GAP = 256 * 1024 };

static size_t scratch_floats(const rt_conv *p, int m, bool rows)
{
	long total = total_tiles_max(p, m);
	int ld = block_tiles(p, m, rows);
	size_t block = rt_wino_block_floats(p, m, ld);
	return total <= ld ? block : 2 * block + SLICE_GAP;
}

/* The larger of what either kind of block needs, whichever the kernel set
 * runs: netcc plans it with its own set, the library runs another, and
 * the threads' slices are spread over all of it (a set with smaller rows
 * blocks can need the gap where the other needs one block). */
size_t rt_winograd_scratch_floats(const rt_conv *p, int m)
{
	size_t plain = scratch_floats(p, m, false);
	size_t rows = wino_rows_fit(p, m) != ROWS_NONE ? scratch_floats(p, m, true) : 0;
	return plain > rows ? plain : rows;
}

bool rt_winograd_fits(const rt_conv *p)
{
	return p->k == 3 && p->stride == 1 && p->oh >= 1 && p->ow >= 1;
}

/* ---- one block of tiles ----------------------------------------------------- */

/* Scratch: V [36][c][ld], M [36][oc][ld] (positions vs and ms apart),
 * the tile table [ld] */
void rt_wino_scratch(wino *w, float *scratch)
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
 * thread count. In rows mode (wino_rows) every tile takes one key, so
 * they stay in the images' order: a group of lanes is a row of them. */
void rt_wino_block_start(wino *w, long total)
{
	w->tb = (int)(total - w->t0 < w->ld ? total - w->t0 : w->ld);
	int per = w->th * w->tw, img0 = (int)(w->t0 / per), r0 = (int)(w->t0 % per);
	bool rows = wino_rows(w->p, w->out) != ROWS_NONE;
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
			unsigned key = rows ? keys[0] : tile_key(w, y, x);
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

static void gemm_task(void *ctx, int pos, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	rt_gemm_b b = {.data = w->v + pos * w->vs, .ld = w->ld};
	rt_gemm_serial(w->pool, p->oc, w->tb, p->c,
	               w->u + (size_t)pos * rt_gemm_packed_a_floats(rt_gemm_mr(), p->oc, p->c), 0,
	               RT_GEMM_A_PACKED, &b, w->m + pos * w->ms, w->ld, NULL);
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
	size_t apart; /* floats from one thread's slice to the next's */
	int sb;       /* tiles per thread block */
	long total;
	int shares;       /* tasks: ranges of whole GEMM panels */
	bool claim;       /* more shares than threads: tasks claim slices */
	atomic_uint used; /* the slices claimed, a bit each */
} wsplit;

/* Where shares outnumber the threads, a task takes a free slice of the
 * scratch (there are as many as threads, and never more tasks running at
 * once), up to as many threads as a slot mask holds */
enum { MAX_SLICES = 32 };

/* Share `task` of the tiles, cut at whole GEMM panels, in blocks of up to
 * sb. With few blocks a share is a thread's (whole blocks round-robin
 * left one thread a block more: 196 tiles in four of 48 and one of 4);
 * with many, a share is a block, and the threads take them as they come:
 * a thread that runs late or slowly (a virtual CPU woken from a long
 * sleep ran the first training step after a pause 1.2x slower, waited
 * for) takes fewer. Which thread runs a share changes no sums. */
static void thread_blocks_task(void *ctx, int task, int tasks)
{
	wsplit *s = ctx;
	wino w = *s->proto;
	w.ld = s->sb;
	int slot = s->claim ? rt_slot_take(&s->used, MAX_SLICES) : task;
	rt_wino_scratch(&w, s->scratch + (size_t)slot * s->apart);
	long panels = (s->total + PANEL - 1) / PANEL;
	long lo = panels * task / tasks * PANEL, hi = panels * (task + 1) / tasks * PANEL;
	hi = hi < s->total ? hi : s->total;
	for (w.t0 = lo; w.t0 < hi; w.t0 += w.ld) {
		rt_wino_block_start(&w, hi);
		rt_wino_input_task(&w, 0, 1);
		for (int pos = 0; pos < pos_of(w.out); pos++)
			gemm_task(&w, pos, pos_of(w.out));
		rt_wino_output_task(&w, 0, 1);
	}
	if (s->claim)
		rt_slot_give(&s->used, slot);
}

/* Shares of the tiles (thread_blocks_task): a block each where that makes
 * four or more a thread, else one a thread */
static int shares_of(long total, int sb, int threads)
{
	long panels = (total + PANEL - 1) / PANEL, per = sb / PANEL;
	long blocks = per > 0 ? (panels + per - 1) / per : 0;
	return threads <= MAX_SLICES && blocks >= 4L * threads && blocks <= INT_MAX ? (int)blocks
	                                                                            : threads;
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
	    .tw = tiles_across(p, m),
	    .ld = rt_wino_block_tiles(p, m),
	    .pool = t,
	};
	long total = total_tiles(p, m);
	int threads = rt_threads_count(t);
	int sb = 2 * w.ld / threads / LANES * LANES;
	size_t slice = rt_wino_block_floats(p, m, sb), room = rt_winograd_scratch_floats(p, m);
	if (threads > 1 && sb >= MIN_THREAD_BLOCK && total > w.ld && total >= (long)threads * sb &&
	    threads * slice <= room) {
		wsplit s = {
		    .proto = &w,
		    .scratch = scratch,
		    /* spread over the room, each on a cache line */
		    .apart = (room - slice) / (threads - 1) / 16 * 16,
		    .sb = sb,
		    .total = total,
		    .shares = shares_of(total, sb, threads),
		};
		s.claim = s.shares > threads;
		rt_threads_run(t, thread_blocks_task, &s, s.shares);
		return;
	}
	rt_wino_scratch(&w, scratch);
	for (w.t0 = 0; w.t0 < total; w.t0 += w.ld) {
		rt_wino_block_start(&w, total);
		rt_threads_run(t, rt_wino_input_task, &w, p->c < threads * 4 ? p->c : threads * 4);
		rt_threads_run(t, gemm_task, &w, pos_of(m));
		rt_threads_run(t, rt_wino_output_task, &w,
		               p->oc < threads * 4 ? p->oc : threads * 4);
	}
}
