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
 * what the same sample gives in a batch of many).
 *
 * This file is the driver (blocks, tasks, the operand packed once for all
 * tasks); the micro-kernels are gemm_micro.c, the packed layouts
 * gemm_pack.c. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_impl.h"
#include "gemm_pack.h"

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
#define MC (GEMM_MC / MR * MR)
#define BG (GEMM_BG / NR * NR)
#define NC (GEMM_NC / NR * NR)

/* Parallel splitting: below PAR_MIN_FLOPS one task (a pool wake-up costs
 * a microsecond or more); tasks of at least TASK_FLOPS, up to
 * TASKS_PER_THREAD per thread. One each: bigger blocks, and tasks owning
 * rows are then often short enough to read B in place (below), where two
 * each would have had B packed for them first. Two each let a thread held
 * up by something else on the machine hold the others up less, which
 * measured as less than the first. */
#define PAR_MIN_FLOPS (256.0 * 1024)
#define TASK_FLOPS    (2.0 * 1024 * 1024)
#ifndef TASKS_PER_THREAD
#define TASKS_PER_THREAD 1
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
/* Up to this many columns, a dense B is read in place by more tasks
 * rather than packed once for all (gemm) */
#ifndef IN_PLACE_MAX_N
#define IN_PLACE_MAX_N 256
#endif

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

/* Whether a block of that many rows reads a dense B where it lies: used
 * once (the rows fit one MC block), packing would copy it only to read it
 * once. Whole panels of it (each row of a panel one contiguous run), so
 * a panel reads k rows ld apart: from the caches (a layer's input, just
 * written) that is cheap, but a B larger than they are comes from memory
 * as k streams at once, which the prefetchers do not follow, where
 * packing reads its rows in order (docs/performance.md). */
enum { IN_PLACE_MAX_BYTES = 8 << 20 };

static bool b_in_place(const rt_gemm_b *b, int rows, int k)
{
	return rows <= MC && !b->pack && !b->trans &&
	       (double)k * b->ld * sizeof(float) <= IN_PLACE_MAX_BYTES;
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
	               !j->pb && b_in_place(j->b, m1 - m0, j->k));
}

/* The rows [m0, m1) x columns [n0, n1) of C, single-threaded. */
static void gemm_block(const gemm_job *j, int m0, int m1, int n0, int n1)
{
	int kc = j->kc, rows = m1 - m0;
	int mcb = rows < MC ? (rows + MR - 1) / MR * MR : MC;
	/* When the rows fit one MC block, B is used once, right after it is
	 * packed (still in cache): a group of panels of buffer is enough. */
	int reuse_b = rows > MC;
	/* Partial panels are packed (the kernel reads whole vectors). */
	bool direct = !j->pb && b_in_place(j->b, rows, j->k);
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
#if GEMM_WIDE
					/* a whole panel before a last one of a vector
					 * and a few columns: the two at once, where
					 * the last is in memory already */
					int rest = nc - jr - nr, jn = jr + NR;
					const float *b1 = NULL;
					if (nr == NR && rest >= VW && rest <= VW + EDGE_N) {
						if (j->pb)
							b1 = bp + (size_t)NR * kcb;
						else if (direct)
							b1 = bp + NR;
						else if (jn % BG || (reuse_b && ic > m0))
							b1 = bb +
							     (size_t)(reuse_b ? jn : jn % BG) * kcb;
					}
					if (b1) {
						rt_gemm_panel_wide(kcb, ap, bp, b1, ldb, j->c + off,
						                   lbase + off, j->ldc, mc, rest,
						                   bias ? bias + ic : NULL, f);
						break;
					}
#endif
					rt_gemm_panel(kcb, ap, bp, ldb, j->c + off, lbase + off,
					              j->ldc, mc, nr, bias ? bias + ic : NULL, f);
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
		/* A dense B of few columns (a 7x7 or 14x14 map at batch 1) is
		 * read in place by tasks of at most MC rows, as many a thread
		 * as that takes, rather than packed for all in a pool run of
		 * its own: there the packing, its wake-up and its lines going
		 * to the other thread cost more than the tasks' own reading.
		 * Where the wide tiles read a last partial panel in place too
		 * (GEMM_WIDE); with AVX2's tiles N = 49 ran slower so. */
		int fit = (m + threads * MC - 1) / (threads * MC);
		if (GEMM_WIDE && n >= VW && n <= IN_PLACE_MAX_N && m >= n && !b->pack &&
		    !b->trans && fit > per_thread)
			j.tasks = threads * fit; /* by rows, as m >= n says */
		else
			j.by_rows = split_cost(m, n, 1, j.tasks, threads) <=
			            split_cost(m, n, 0, j.tasks, threads);
	}
	j.units = j.by_rows ? mt : nt;
	if (j.tasks > j.units)
		j.tasks = j.units;
	/* Tasks owning rows, each no taller than a row block, read a dense B
	 * where it lies (gemm_block's direct): nothing to pack for them. */
	bool direct = j.by_rows && b_in_place(b, (j.units + j.tasks - 1) / j.tasks * MR, k);
	float *shared = NULL;
	if (j.tasks > 1 && !direct && (j.by_rows || !j.pa)) {
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
