/* rt_gemm against a double-precision reference over many shapes, layouts
 * and epilogues; its results bit for bit across thread counts, pools and
 * sub-problems; and the thread pool on its own (latency, edge cases,
 * several pools at once, create/destroy under ASan). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers --------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

static float rnd_float(void)
{
	return (float)((double)rnd() / 4294967296.0 * 2.0 - 1.0);
}

static float *rnd_floats(size_t count)
{
	float *p = malloc((count ? count : 1) * sizeof *p);
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < count; i++)
		p[i] = rnd_float();
	return p;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* B seen through a custom pack callback: element (k, j) at
 * data[k * ld + j * stride], a strided view no dense rt_gemm_b describes. */
typedef struct strided_b {
	const float *data;
	int ld, stride;
} strided_b;

static void pack_strided(const void *ctx, int k0, int kc, int n0, int nc, float *dst)
{
	const strided_b *s = ctx;
	int nr = rt_gemm_nr();
	for (int jr = 0; jr < nc; jr += nr)
		for (int p = 0; p < kc; p++)
			for (int j = 0; j < nr; j++) {
				int col = n0 + jr + j;
				dst[(size_t)jr * kc + (size_t)p * nr + j] =
				    jr + j < nc ? s->data[(size_t)(k0 + p) * s->ld +
				                          (size_t)col * s->stride]
				                : 0.0f;
			}
}

enum { B_DENSE, B_TRANS, B_CALLBACK, B_MODES };

/* One GEMM problem with its operands, in every layout the API takes. */
typedef struct problem {
	int m, n, k, lda, ldb, ldc, trans_a, bmode;
	int acc;                  /* accumulate onto C's old values */
	float *a, *b, *bias, *c0; /* c0: C before the call (accumulate, padding) */
	strided_b sb;
	rt_gemm_b gb;
	rt_epilogue ep;
} problem;

static float b_at(const problem *q, int p, int j)
{
	switch (q->bmode) {
	case B_DENSE:
		return q->b[(size_t)p * q->ldb + j];
	case B_TRANS:
		return q->b[(size_t)j * q->ldb + p];
	default:
		return q->b[(size_t)p * q->ldb + (size_t)j * q->sb.stride];
	}
}

static float a_at(const problem *q, int i, int p)
{
	return q->trans_a ? q->a[(size_t)p * q->lda + i] : q->a[(size_t)i * q->lda + p];
}

static void problem_make(problem *q, int m, int n, int k, int trans_a, int bmode, int acc, int bias,
                         int relu)
{
	memset(q, 0, sizeof *q);
	q->m = m, q->n = n, q->k = k, q->trans_a = trans_a, q->bmode = bmode;
	/* Leading dimensions with some slack, so a stride mix-up shows. */
	q->lda = (trans_a ? m : k) + (int)(rnd() % 3);
	q->ldc = n + (int)(rnd() % 4);
	q->a = rnd_floats((size_t)(trans_a ? k : m) * q->lda);
	if (bmode == B_TRANS) {
		q->ldb = k + (int)(rnd() % 3);
		q->b = rnd_floats((size_t)n * q->ldb);
	} else {
		int stride = bmode == B_CALLBACK ? 2 : 1;
		q->ldb = n * stride + (int)(rnd() % 3);
		q->b = rnd_floats((size_t)k * q->ldb);
		q->sb = (strided_b){q->b, q->ldb, stride};
	}
	q->gb = (rt_gemm_b){.data = q->b, .ld = q->ldb, .trans = bmode == B_TRANS};
	if (bmode == B_CALLBACK)
		q->gb = (rt_gemm_b){.pack = pack_strided, .ctx = &q->sb};
	q->bias = bias ? rnd_floats((size_t)m) : NULL;
	q->c0 = rnd_floats((size_t)m * q->ldc);
	q->ep = (rt_epilogue){.bias = q->bias, .relu = relu};
	q->acc = acc;
}

static void problem_free(problem *q)
{
	free(q->a);
	free(q->b);
	free(q->bias);
	free(q->c0);
}

/* q's epilogue for a call writing c: accumulating adds c's old values */
static rt_epilogue epilogue_for(const problem *q, float *c)
{
	rt_epilogue ep = q->ep;
	ep.add = q->acc ? c : NULL;
	return ep;
}

static float *run(const problem *q, rt_threads *pool)
{
	float *c = malloc((size_t)q->m * q->ldc * sizeof *c);
	ck_assert_ptr_nonnull(c);
	memcpy(c, q->c0, (size_t)q->m * q->ldc * sizeof *c);
	rt_epilogue ep = epilogue_for(q, c);
	rt_gemm(pool, q->m, q->n, q->k, q->a, q->lda, q->trans_a, &q->gb, c, q->ldc, &ep);
	return c;
}

/* Checks c against the reference in double, and that the columns between
 * n and ldc were left alone. Returns the relative error. */
static double check(const problem *q, const float *c)
{
	size_t mn = (size_t)q->m * q->n;
	float *got = malloc((mn ? mn : 1) * sizeof *got),
	      *ref = malloc((mn ? mn : 1) * sizeof *ref);
	ck_assert(got && ref);
	for (int i = 0; i < q->m; i++) {
		for (int j = 0; j < q->n; j++) {
			double s = q->acc ? q->c0[(size_t)i * q->ldc + j] : 0.0;
			for (int p = 0; p < q->k; p++)
				s += (double)a_at(q, i, p) * b_at(q, p, j);
			if (q->bias)
				s += q->bias[i];
			if (q->ep.relu && s < 0)
				s = 0;
			ref[(size_t)i * q->n + j] = (float)s;
			got[(size_t)i * q->n + j] = c[(size_t)i * q->ldc + j];
		}
		for (int j = q->n; j < q->ldc; j++)
			ck_assert_msg(memcmp(&c[(size_t)i * q->ldc + j],
			                     &q->c0[(size_t)i * q->ldc + j], sizeof(float)) == 0,
			              "m=%d n=%d k=%d: padding column %d of row %d written", q->m,
			              q->n, q->k, j, i);
	}
	double e = test_rel_err(got, ref, mn);
	free(got);
	free(ref);
	return e;
}

/* ---- GEMM correctness ------------------------------------------------ */

/* 1e-5: every element is a sum of k <= ~520 products of values in
 * [-1, 1], accumulated in float with FMA in blocks of at most 256. The
 * rounding error of such a sum grows like sqrt(k) * 2^-24 * (typical
 * product size), about 1e-6 of the largest |c| here, while a wrong index,
 * a lost K block or a misplaced epilogue gives errors of order 1. */
#define TOL 1e-5

static const int dims[] = {1,  2,  3,  4,  5,  6,  7,  8,   11,  12,  13,  15, 16,
                           17, 31, 32, 33, 63, 64, 65, 200, 255, 256, 257, 517};
#define NDIMS ((int)(sizeof dims / sizeof dims[0]))

static void one_case(int m, int n, int k, int trans_a, int bmode, int acc, int bias, int relu,
                     rt_threads *pool)
{
	problem q;
	problem_make(&q, m, n, k, trans_a, bmode, acc, bias, relu);
	float *c = run(&q, pool);
	double e = check(&q, c);
	ck_assert_msg(e < TOL,
	              "m=%d n=%d k=%d trans_a=%d bmode=%d acc=%d bias=%d relu=%d: relative "
	              "error %.3g",
	              m, n, k, trans_a, bmode, acc, bias, relu, e);
	free(c);
	problem_free(&q);
}

/* Every epilogue and layout on a few shapes that have edge tiles in both
 * directions and more than one K block. */
START_TEST(gemm_epilogues)
{
	rt_threads *pool = rt_threads_create(2);
	static const int shapes[][3] = {{13, 37, 300}, {7, 3, 5}, {65, 17, 257}, {1, 1, 1}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int f = 0; f < 8; f++)
			for (int t = 0; t < 2; t++)
				for (int bm = 0; bm < B_MODES; bm++)
					one_case(shapes[s][0], shapes[s][1], shapes[s][2], t, bm,
					         f & 1, f >> 1 & 1, f >> 2 & 1, pool);
	rt_threads_destroy(pool);
}
END_TEST

/* A random subset of the m x n x k grid, every layout and epilogue drawn
 * at random; the big products only where they stay cheap. */
START_TEST(gemm_shapes)
{
	rt_threads *pool = rt_threads_create(3);
	int cases = test_sanitized() ? 60 : 400;
	long budget = test_sanitized() ? 20000000L : 120000000L; /* multiply-adds */
	long used = 0;
	for (int t = 0; t < cases; t++) {
		int m = dims[rnd() % NDIMS], n = dims[rnd() % NDIMS], k = dims[rnd() % NDIMS];
		long work = (long)m * n * k;
		if (work > 4000000L || used + work > budget)
			continue;
		used += work;
		uint32_t r = rnd();
		one_case(m, n, k, r & 1, (int)(r >> 1) % B_MODES, r >> 3 & 1, r >> 4 & 1,
		         r >> 5 & 1, (r >> 6 & 1) ? pool : NULL);
	}
	/* Big enough for several MC, NC and K blocks and many tasks. */
	int big = test_sanitized() ? 150 : 517;
	one_case(big, big, big, 0, B_DENSE, 1, 1, 1, pool);
	one_case(big, 300, 700, 1, B_TRANS, 0, 1, 0, pool);
	one_case(1100, 40, 600, 0, B_CALLBACK, 1, 0, 1, pool);
	one_case(20, 2500, 300, 1, B_DENSE, 0, 1, 1, pool);
	one_case(1000, 1, 2048, 0, B_TRANS, 0, 1, 0, pool);
	rt_threads_destroy(pool);
}
END_TEST

/* A residual added from its own buffer (ep.add) gives the bits of
 * accumulating onto a copy of it, whatever else C held: on edge tiles,
 * the narrow-column kernel, several K blocks, k == 0, and in place. */
START_TEST(gemm_add_epilogue)
{
	rt_threads *pool = rt_threads_create(2);
	static const int shapes[][3] = {{13, 37, 300}, {64, 49, 64},   {7, 3, 5},
	                                {65, 2, 257},  {256, 200, 64}, {5, 9, 0}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int f = 0; f < 4; f++) {
			problem q;
			problem_make(&q, shapes[s][0], shapes[s][1], shapes[s][2], 0, B_DENSE, 1,
			             f & 1, f >> 1 & 1);
			size_t size = (size_t)q.m * q.ldc;
			float *want = run(&q, pool); /* accumulate onto c0 */
			float *res = q.c0, *c = rnd_floats(size);
			rt_epilogue ep = {.bias = q.bias, .add = res, .relu = f >> 1 & 1};
			rt_gemm(pool, q.m, q.n, q.k, q.a, q.lda, 0, &q.gb, c, q.ldc, &ep);
			float *inplace = malloc(size * sizeof *inplace);
			ck_assert_ptr_nonnull(inplace);
			memcpy(inplace, res, size * sizeof *inplace);
			ep.add = inplace;
			rt_gemm(pool, q.m, q.n, q.k, q.a, q.lda, 0, &q.gb, inplace, q.ldc, &ep);
			for (int i = 0; i < q.m; i++)
				for (int j = 0; j < q.n; j++) {
					size_t at = (size_t)i * q.ldc + j;
					ck_assert_msg(
					    memcmp(&c[at], &want[at], sizeof *c) == 0 &&
					        memcmp(&inplace[at], &want[at], sizeof *c) == 0,
					    "m=%d n=%d k=%d f=%d: element (%d, %d) %g / %g, "
					    "want %g",
					    q.m, q.n, q.k, f, i, j, c[at], inplace[at], want[at]);
				}
			free(want);
			free(c);
			free(inplace);
			problem_free(&q);
		}
	rt_threads_destroy(pool);
}
END_TEST

/* k == 0: the product is empty and only the epilogue applies. */
START_TEST(gemm_empty)
{
	for (int f = 0; f < 8; f++)
		one_case(5, 9, 0, 0, B_DENSE, f & 1, f >> 1 & 1, f >> 2 & 1, NULL);
	float c = 42.0f;
	rt_gemm_b b = {.data = &c, .ld = 1};
	rt_gemm(NULL, 0, 5, 5, &c, 5, 0, &b, &c, 5, NULL); /* m == 0: nothing */
	rt_gemm(NULL, 5, 0, 5, &c, 5, 0, &b, &c, 5, NULL); /* n == 0: nothing */
	ck_assert_float_eq(c, 42.0f);
}
END_TEST

/* relu passes NaN through (as torch.relu and rt_relu_ref do). */
START_TEST(gemm_relu_nan)
{
	float a[2] = {NAN, -1.0f}, bv[1] = {1.0f}, c[2];
	rt_gemm_b b = {.data = bv, .ld = 1};
	rt_epilogue ep = {.relu = 1};
	rt_gemm(NULL, 2, 1, 1, a, 1, 0, &b, c, 1, &ep);
	ck_assert(isnan(c[0]));
	ck_assert_float_eq(c[1], 0.0f);
}
END_TEST

/* ---- determinism ----------------------------------------------------- */

static void expect_same(const problem *q, const float *x, const float *y, const char *what)
{
	for (int i = 0; i < q->m; i++)
		ck_assert_msg(memcmp(x + (size_t)i * q->ldc, y + (size_t)i * q->ldc,
		                     (size_t)q->n * sizeof(float)) == 0,
		              "m=%d n=%d k=%d: row %d differs (%s)", q->m, q->n, q->k, i, what);
}

/* The same bits from pools of 1 to 4 threads, a NULL pool and repeats. */
START_TEST(gemm_thread_invariant)
{
	rt_threads *pools[5] = {NULL, rt_threads_create(1), rt_threads_create(2),
	                        rt_threads_create(3), rt_threads_create(4)};
	int s = test_sanitized() ? 2 : 1;
	const int shapes[][3] = {{64, 3136 / s, 576 / s}, {512 / s, 49, 1000}, {200, 200, 517},
	                         {1000 / s, 1, 2048 / s}, {16, 5000 / s, 144}, {37, 41, 1000},
	                         {300 / s, 3, 700}};
	for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
		problem q;
		problem_make(&q, shapes[sh][0], shapes[sh][1], shapes[sh][2], sh & 1,
		             (int)sh % B_MODES, 1, 1, 1);
		float *base = run(&q, NULL);
		ck_assert_double_lt(check(&q, base), TOL);
		for (int rep = 0; rep < 2; rep++)
			for (int pi = 0; pi < 5; pi++) {
				float *c = run(&q, pools[pi]);
				expect_same(&q, base, c, "thread count");
				free(c);
			}
		free(base);
		problem_free(&q);
	}
	for (int pi = 0; pi < 5; pi++)
		rt_threads_destroy(pools[pi]);
}
END_TEST

/* A packed once (rt_gemm_pack_a, as prepared weights are) gives the bits
 * of A packed by the GEMM itself, whatever the split across threads; the
 * offsets rt_gemm_packed_a_offset names are where the packing puts each
 * element, and the padding it leaves is zero, for this set's tile and for
 * every other set's (netcc packs weights for targets it does not run). */
START_TEST(gemm_prepacked_a)
{
	rt_threads *pool = rt_threads_create(3);
	const int shapes[][3] = {{64, 3136, 576}, {512, 49, 1000}, {13, 37, 300}, {7, 1, 5},
	                         {1, 200, 517},   {65, 17, 257},   {300, 3, 700}};
	int nsets;
	const rt_kset *sets = rt_kset_all(&nsets);
	for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
		int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
		if (test_sanitized() && (long)m * n * k > 20000000L)
			continue;
		problem q;
		problem_make(&q, m, n, k, 0, (int)sh % B_MODES, sh & 1, 1, 1);
		for (int si = -1; si < nsets; si++) {
			int mr = si < 0 ? rt_gemm_mr() : sets[si].mr;
			size_t floats = rt_gemm_packed_a_floats(mr, m, k);
			float *packed = malloc(floats * sizeof(float));
			ck_assert_ptr_nonnull(packed);
			for (size_t i = 0; i < floats; i++)
				packed[i] = NAN;
			rt_gemm_pack_a(mr, m, k, q.a, q.lda, packed);
			unsigned char *named = calloc(floats, 1);
			ck_assert_ptr_nonnull(named);
			for (int i = 0; i < m; i++)
				for (int p = 0; p < k; p++) {
					size_t at = rt_gemm_packed_a_offset(mr, m, k, i, p);
					ck_assert_uint_lt(at, floats);
					ck_assert_msg(memcmp(&packed[at],
					                     &q.a[(size_t)i * q.lda + p],
					                     sizeof(float)) == 0,
					              "mr=%d m=%d k=%d: (%d, %d) not at its offset",
					              mr, m, k, i, p);
					named[at] = 1;
				}
			for (size_t i = 0; i < floats; i++)
				ck_assert_msg(named[i] || packed[i] == 0.0f,
				              "mr=%d m=%d k=%d: padding float %zu not zero", mr, m,
				              k, i);
			free(named);
			if (si >= 0) { /* another set's layout: this GEMM cannot read it */
				free(packed);
				continue;
			}
			float *base = run(&q, pool);
			for (int pi = 0; pi < 2; pi++) {
				float *c = malloc((size_t)m * q.ldc * sizeof *c);
				ck_assert_ptr_nonnull(c);
				memcpy(c, q.c0, (size_t)m * q.ldc * sizeof *c);
				rt_epilogue ep = epilogue_for(&q, c);
				rt_gemm(pi ? pool : NULL, m, n, k, packed, 0, RT_GEMM_A_PACKED,
				        &q.gb, c, q.ldc, &ep);
				expect_same(&q, base, c, "prepacked A");
				free(c);
			}
			free(base), free(packed);
		}
		problem_free(&q);
	}
	rt_threads_destroy(pool);
}
END_TEST

/* An element's bits do not depend on the rest of the problem: a block of
 * rows, a single column (the skinny path), a few columns and the widths
 * whose last panel is a vector and a few columns (48 to 52, the tiles
 * three vectors wide where the set has them) give exactly what the full
 * product gives there, so a batch of one matches a batch of many. B is
 * packed (B_TRANS) or read in place (B_DENSE, a block of few rows). */
static void subproblem_invariant(int bmode, int m, int acc, int bias, int relu)
{
	rt_threads *pool = rt_threads_create(2);
	int n = 90, k = 600;
	problem q;
	problem_make(&q, m, n, k, 0, bmode, acc, bias, relu);
	float *full = run(&q, pool);
	/* columns j0..j0+w through B's rows (trans: column j at b + j * ldb) */
	static const int cols[][2] = {{0, 1},  {5, 1},   {89, 1}, {3, 2},   {10, 3},  {20, 4},
	                              {7, 5},  {30, 17}, {3, 18}, {40, 19}, {50, 20}, {33, 57},
	                              {0, 48}, {41, 49}, {2, 50}, {30, 51}, {38, 52}, {1, 49},
	                              {0, 80}, {9, 81},  {13, 64}};
	for (size_t t = 0; t < sizeof cols / sizeof cols[0]; t++) {
		int j0 = cols[t][0], w = cols[t][1];
		for (int i0 = 0; i0 < m; i0 += 23) {
			int h = m - i0 < 31 ? m - i0 : 31;
			float *c = malloc((size_t)h * w * sizeof *c);
			for (int i = 0; i < h; i++)
				memcpy(c + (size_t)i * w, q.c0 + (size_t)(i0 + i) * q.ldc + j0,
				       (size_t)w * sizeof *c);
			rt_gemm_b b = {.data = q.b + (size_t)j0 * q.ldb, .ld = q.ldb, .trans = 1};
			if (bmode == B_DENSE)
				b = (rt_gemm_b){.data = q.b + j0, .ld = q.ldb};
			rt_epilogue ep = epilogue_for(&q, c);
			ep.bias = bias ? q.bias + i0 : NULL;
			rt_gemm(pool, h, w, k, q.a + (size_t)i0 * q.lda, q.lda, 0, &b, c, w, &ep);
			for (int i = 0; i < h; i++)
				ck_assert_msg(
				    memcmp(c + (size_t)i * w, full + (size_t)(i0 + i) * q.ldc + j0,
				           (size_t)w * sizeof *c) == 0,
				    "bmode %d: rows %d+%d cols %d+%d differ from the full "
				    "product",
				    bmode, i0, h, j0, w);
			free(c);
		}
	}
	free(full);
	problem_free(&q);
	rt_threads_destroy(pool);
}

START_TEST(gemm_subproblem_invariant)
{
	subproblem_invariant(B_TRANS, 70, 1, 1, 1);
	subproblem_invariant(B_DENSE, 70, 1, 1, 1);
	/* every epilogue, on rows of whole tiles and a short last one */
	for (int f = 0; f < 8; f++)
		subproblem_invariant(f & 1 ? B_DENSE : B_TRANS, 40, f & 1, f >> 1 & 1, f >> 2 & 1);
}
END_TEST

/* A dense B of few rows' block too large for the caches (over 8 MB) is
 * packed instead of read in place: the same bits as the in-place read of
 * a copy of the same columns. */
START_TEST(gemm_large_b_packed)
{
	rt_threads *pool = rt_threads_create(2);
	int m = 16, k = 64, n = (8 << 20) / (k * (int)sizeof(float)) + 101;
	float *a = rnd_floats((size_t)m * k), *b = rnd_floats((size_t)k * n);
	float *c = malloc((size_t)m * n * sizeof *c);
	ck_assert_ptr_nonnull(c);
	rt_gemm(pool, m, n, k, a, k, 0, &(rt_gemm_b){.data = b, .ld = n}, c, n,
	        &(rt_epilogue){.relu = 1});
	const int cols[][2] = {{0, 64}, {1000, 37}, {n - 50, 50}};
	for (int t = 0; t < 3; t++) {
		int j0 = cols[t][0], w = cols[t][1];
		float *bw = malloc((size_t)k * w * sizeof *bw),
		      *cw = malloc((size_t)m * w * sizeof *cw);
		ck_assert(bw && cw);
		for (int p = 0; p < k; p++)
			memcpy(bw + (size_t)p * w, b + (size_t)p * n + j0, (size_t)w * sizeof *bw);
		rt_gemm(pool, m, w, k, a, k, 0, &(rt_gemm_b){.data = bw, .ld = w}, cw, w,
		        &(rt_epilogue){.relu = 1});
		for (int i = 0; i < m; i++)
			ck_assert_msg(memcmp(cw + (size_t)i * w, c + (size_t)i * n + j0,
			                     (size_t)w * sizeof *cw) == 0,
			              "row %d, columns %d+%d: the packed large B differs", i, j0,
			              w);
		free(bw);
		free(cw);
	}
	free(a);
	free(b);
	free(c);
	rt_threads_destroy(pool);
}
END_TEST

/* The dense packer writes the documented layout (a pack callback's contract). */
START_TEST(gemm_pack_layout)
{
	int nr = rt_gemm_nr(), k = 7, n = nr + 3, ld = n + 2;
	ck_assert_int_ge(nr, 4);
	float *bm = rnd_floats((size_t)k * ld);
	float *dst = malloc((size_t)3 * 2 * nr * sizeof *dst);
	for (int trans = 0; trans < 2; trans++) {
		/* trans: the same matrix stored transposed */
		float *bt = malloc((size_t)n * (k + 1) * sizeof *bt);
		for (int p = 0; p < k; p++)
			for (int j = 0; j < n; j++)
				bt[(size_t)j * (k + 1) + p] = bm[(size_t)p * ld + j];
		rt_gemm_b b = {.data = trans ? bt : bm, .ld = trans ? k + 1 : ld, .trans = trans};
		int k0 = 2, kc = 3, n0 = 1, nc = n - 1; /* two panels, the last padded */
		memset(dst, 0xff, (size_t)3 * 2 * nr * sizeof *dst);
		rt_gemm_pack_b(&b, k0, kc, n0, nc, dst);
		for (int jr = 0; jr < 2 * nr; jr += nr)
			for (int p = 0; p < kc; p++)
				for (int j = 0; j < nr; j++) {
					float want = jr + j < nc
					                 ? bm[(size_t)(k0 + p) * ld + n0 + jr + j]
					                 : 0.0f;
					ck_assert_float_eq(dst[(size_t)jr * kc + p * nr + j], want);
				}
		free(bt);
	}
	free(dst);
	free(bm);
}
END_TEST

/* ---- the pool -------------------------------------------------------- */

typedef struct counts {
	atomic_int *hits;
	int n;
	atomic_int bad;
	pthread_t caller;
	atomic_int on_caller;
} counts;

static void count_task(void *ctx, int task, int tasks)
{
	counts *c = ctx;
	if (task < 0 || task >= c->n || tasks != c->n)
		atomic_fetch_add(&c->bad, 1);
	else
		atomic_fetch_add(&c->hits[task], 1);
	if (pthread_equal(pthread_self(), c->caller))
		atomic_fetch_add(&c->on_caller, 1);
}

/* Runs n counting tasks and checks each ran exactly once. */
static void run_counted(rt_threads *pool, int n)
{
	counts c = {.n = n, .caller = pthread_self()};
	c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof *c.hits);
	ck_assert_ptr_nonnull(c.hits);
	rt_threads_run(pool, count_task, &c, n);
	ck_assert_int_eq(atomic_load(&c.bad), 0);
	for (int i = 0; i < n; i++)
		ck_assert_msg(atomic_load(&c.hits[i]) == 1, "task %d of %d ran %d times", i, n,
		              atomic_load(&c.hits[i]));
	free(c.hits);
}

START_TEST(pool_basics)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	rt_threads *all = rt_threads_create(0);
	ck_assert_int_eq(rt_threads_count(all), cpus < 1 ? 1 : (int)cpus);
	rt_threads_destroy(all);
	ck_assert_int_eq(rt_threads_count(NULL), 1);
	rt_threads_destroy(NULL);

	rt_threads *one = rt_threads_create(1), *four = rt_threads_create(4);
	ck_assert_int_eq(rt_threads_count(one), 1);
	ck_assert_int_eq(rt_threads_count(four), 4);
	rt_threads *pools[] = {NULL, one, four};
	for (int i = 0; i < 3; i++) {
		/* n = 0 runs nothing; n = 1 runs on the caller */
		counts c = {.n = 1, .caller = pthread_self()};
		atomic_int hit = 0;
		c.hits = &hit;
		rt_threads_run(pools[i], count_task, &c, 0);
		ck_assert_int_eq(atomic_load(&hit), 0);
		rt_threads_run(pools[i], count_task, &c, 1);
		ck_assert_int_eq(atomic_load(&hit), 1);
		ck_assert_int_eq(atomic_load(&c.on_caller), 1);
		for (int n = 2; n < 40; n += 3)
			run_counted(pools[i], n);
		run_counted(pools[i], 100000);        /* n >> threads */
		run_counted(pools[i], (1 << 20) + 3); /* more than a job's range word holds */
	}
	rt_threads_destroy(one);
	rt_threads_destroy(four);
}
END_TEST

/* Many tiny runs back to back: the cost a CNN pays per parallel kernel. */
START_TEST(pool_latency)
{
	rt_threads *pool = rt_threads_create(4);
	int runs = test_sanitized() ? 2000 : 20000;
	counts c = {.n = 4, .caller = pthread_self()};
	atomic_int hits[4] = {0};
	c.hits = hits;
	double t0 = now_s();
	for (int r = 0; r < runs; r++)
		rt_threads_run(pool, count_task, &c, 4);
	double dt = now_s() - t0;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(atomic_load(&hits[i]), runs);
	ck_assert_int_eq(atomic_load(&c.bad), 0);
	printf("pool: %.2f us per run of 4 tiny tasks on 4 threads (%d runs)\n", dt / runs * 1e6,
	       runs);
	/* With pauses between runs the workers go to sleep and must be woken. */
	for (int r = 0; r < 20; r++) {
		struct timespec ts = {0, 200 * 1000};
		nanosleep(&ts, NULL);
		run_counted(pool, 7);
	}
	rt_threads_destroy(pool);
}
END_TEST

/* Back-to-back runs alternating between a few and many tasks: a worker
 * that woke late once read the new task count with the old job and ran a
 * task past the old job's end (an extra call, then a hang). */
static void uneven_task(void *ctx, int task, int tasks)
{
	count_task(ctx, task, tasks);
	/* uneven lengths, so the threads drift against each other */
	for (volatile int i = 0; i < task * 37 % 200; i++)
		;
}

START_TEST(pool_alternating)
{
	rt_threads *pool = rt_threads_create(2);
	int runs = test_sanitized() ? 100000 : 1000000;
	for (int r = 0; r < runs; r++) {
		atomic_int hits[8] = {0};
		counts c = {.hits = hits, .n = r & 1 ? 8 : 3, .caller = pthread_self()};
		rt_threads_run(pool, uneven_task, &c, c.n);
		ck_assert_int_eq(atomic_load(&c.bad), 0);
		for (int i = 0; i < c.n; i++)
			ck_assert_msg(atomic_load(&hits[i]) == 1,
			              "run %d: task %d of %d ran %d times", r, i, c.n,
			              atomic_load(&hits[i]));
	}
	rt_threads_destroy(pool);
}
END_TEST

/* A task that itself runs tasks on the same pool (nested): runs inline. */
typedef struct nested {
	rt_threads *pool;
	atomic_int total;
} nested;

static void inner_task(void *ctx, int task, int tasks)
{
	atomic_fetch_add(&((nested *)ctx)->total, 1);
}

static void outer_task(void *ctx, int task, int tasks)
{
	nested *ns = ctx;
	rt_threads_run(ns->pool, inner_task, ns, 10);
}

START_TEST(pool_nested)
{
	nested ns = {.pool = rt_threads_create(3)};
	rt_threads_run(ns.pool, outer_task, &ns, 8);
	ck_assert_int_eq(atomic_load(&ns.total), 80);
	rt_threads_destroy(ns.pool);
}
END_TEST

/* Several pools used at once from different threads, and two threads
 * sharing one pool (one of them then runs inline). */
typedef struct user {
	rt_threads *pool;
	int runs;
	problem q; /* drawn by the main thread: the generator is not thread-safe */
} user;

static void *user_thread(void *arg)
{
	user *u = arg;
	for (int r = 0; r < u->runs; r++)
		run_counted(u->pool, 1 + r % 37);
	/* a GEMM too, checked against a NULL-pool run */
	float *x = run(&u->q, u->pool), *y = run(&u->q, NULL);
	expect_same(&u->q, x, y, "concurrent pools");
	free(x);
	free(y);
	return NULL;
}

START_TEST(pool_concurrent)
{
	enum { USERS = 4 };
	int runs = test_sanitized() ? 300 : 3000;
	rt_threads *shared = rt_threads_create(2);
	user u[USERS + 2];
	pthread_t t[USERS + 2];
	for (int i = 0; i < USERS + 2; i++) {
		u[i].pool = i < USERS ? rt_threads_create(2 + i % 2) : shared;
		u[i].runs = runs;
		problem_make(&u[i].q, 40 + i, 100, 300, i & 1, i % B_MODES, 1, 1, 0);
	}
	for (int i = 0; i < USERS + 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, user_thread, &u[i]), 0);
	for (int i = 0; i < USERS + 2; i++) {
		pthread_join(t[i], NULL);
		problem_free(&u[i].q);
	}
	for (int i = 0; i < USERS; i++)
		rt_threads_destroy(u[i].pool);
	rt_threads_destroy(shared);
}
END_TEST

/* A pool asked for more threads than set_threads allows (NETCC_THREADS=3000
 * started 3000) gets 1024, and works. */
static void add_one(void *ctx, int task, int tasks)
{
	atomic_fetch_add((atomic_int *)ctx, 1);
}

START_TEST(pool_threads_capped)
{
	rt_threads *p = rt_threads_create(3000);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_le(rt_threads_count(p), 1024);
	atomic_int sum = 0;
	rt_threads_run(p, add_one, &sum, 5000);
	ck_assert_int_eq(sum, 5000);
	rt_threads_destroy(p);
}
END_TEST

START_TEST(pool_create_destroy)
{
	int loops = test_sanitized() ? 100 : 500;
	for (int i = 0; i < loops; i++) {
		rt_threads *p = rt_threads_create(1 + i % 5);
		ck_assert_ptr_nonnull(p);
		if (i % 3)
			run_counted(p, 1 + i % 11);
		rt_threads_destroy(p); /* sometimes right after create, workers still starting */
	}
}
END_TEST

/* A library's embedded weights are a read-only mapping of its file: the
 * copy into huge pages must equal them, end in a zero float, and leave
 * the mapping readable with the same values after its pages are handed
 * back; small weights stay where they are. */
START_TEST(weights_copied_into_huge_pages)
{
	size_t floats = (3u << 20) / sizeof(float) + 5;
	char path[] = "/tmp/netcc-weights-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	float *w = malloc(floats * sizeof(float));
	for (size_t i = 0; i < floats; i++)
		w[i] = (float)i * 0.5f - 7.0f;
	ck_assert_int_eq(write(fd, w, floats * sizeof(float)), (ssize_t)(floats * sizeof(float)));
	const float *mapped = mmap(NULL, floats * sizeof(float), PROT_READ, MAP_PRIVATE, fd, 0);
	ck_assert_ptr_ne(mapped, MAP_FAILED);
	close(fd);

	float *copy = rt_weights_to_huge_pages(mapped, floats);
	if (!rt_huge_pages_granted()) {
		ck_assert_ptr_null(copy);
	} else {
		ck_assert_ptr_nonnull(copy);
		ck_assert_int_eq((uintptr_t)copy % 64, 0);
		ck_assert_int_eq(memcmp(copy, w, floats * sizeof(float)), 0);
		ck_assert(copy[floats] == 0.0f);
		ck_assert_int_eq(memcmp(mapped, w, floats * sizeof(float)), 0);
		free(copy);
	}
	ck_assert_ptr_null(rt_weights_to_huge_pages(mapped, 1000));
	munmap((void *)mapped, floats * sizeof(float));
	free(w);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("gemm");
	TCase *tc = tcase_create("gemm");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, gemm_epilogues);
	tcase_add_test(tc, gemm_shapes);
	tcase_add_test(tc, gemm_add_epilogue);
	tcase_add_test(tc, gemm_empty);
	tcase_add_test(tc, gemm_relu_nan);
	tcase_add_test(tc, gemm_thread_invariant);
	tcase_add_test(tc, gemm_prepacked_a);
	tcase_add_test(tc, gemm_subproblem_invariant);
	tcase_add_test(tc, gemm_large_b_packed);
	tcase_add_test(tc, gemm_pack_layout);
	suite_add_tcase(s, tc);
	TCase *tp = tcase_create("pool");
	tcase_set_timeout(tp, 120);
	tcase_add_test(tp, pool_basics);
	tcase_add_test(tp, pool_latency);
	tcase_add_test(tp, pool_alternating);
	tcase_add_test(tp, pool_nested);
	tcase_add_test(tp, pool_concurrent);
	tcase_add_test(tp, pool_create_destroy);
	tcase_add_test(tp, pool_threads_capped);
	tcase_add_test(tp, weights_copied_into_huge_pages);
	suite_add_tcase(s, tp);
	return s;
}

TEST_MAIN(suite)
