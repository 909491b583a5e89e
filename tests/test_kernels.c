/* Reference kernels against PyTorch's golden vectors, against finite
 * differences of their own forward passes, and against naive loops where no
 * golden case exists. Golden gradients are of sum(y * dy); the finite
 * differences use the same objective with a random r in place of dy. */
#include <stdint.h>

#include "testutil.h"

enum { GOLDEN_MAX = 24 };

/* One golden case's arrays, loaded on demand and freed together. */
typedef struct golden {
	const char *name;
	int n;
	rt_array arr[GOLDEN_MAX];
} golden;

static const rt_array *gold(golden *g, const char *name)
{
	ck_assert_int_lt(g->n, GOLDEN_MAX);
	g->arr[g->n] = test_golden(g->name, name);
	return &g->arr[g->n++];
}

static const float *goldf(golden *g, const char *name)
{
	const rt_array *a = gold(g, name);
	ck_assert_int_eq(a->dtype, RT_DTYPE_F32);
	return a->data;
}

static void golden_free(golden *g)
{
	for (int i = 0; i < g->n; i++)
		rt_array_free(&g->arr[i]);
	g->n = 0;
}

/* Compares got with the golden array of that name, size first. */
static void expect_golden(golden *g, const char *name, const float *got, size_t count, double tol)
{
	const rt_array *a = gold(g, name);
	ck_assert_msg(a->count == count, "%s/%s: %zu values, kernel made %zu", g->name, name,
	              a->count, count);
	double e = test_rel_err(got, a->data, count);
	ck_assert_msg(e < tol, "%s/%s: relative error %.3g exceeds %.1g", g->name, name, e, tol);
}

static void expect_dims4(const rt_array *a, int64_t n, int64_t c, int64_t h, int64_t w)
{
	ck_assert_int_eq(a->rank, 4);
	ck_assert_msg(a->dims[0] == n && a->dims[1] == c && a->dims[2] == h && a->dims[3] == w,
	              "golden shape (%lld, %lld, %lld, %lld), kernel (%lld, %lld, %lld, %lld)",
	              (long long)a->dims[0], (long long)a->dims[1], (long long)a->dims[2],
	              (long long)a->dims[3], (long long)n, (long long)c, (long long)h,
	              (long long)w);
}

/* meta.txt values that are not integers (eps, lr, ...); test_golden_meta
 * would truncate them. */
static double meta_double(const char *casename, const char *key)
{
	char path[1024], line[256];
	snprintf(path, sizeof path, "%s/%s/meta.txt", test_env("NETCC_GOLDEN", "../shared/golden"),
	         casename);
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	size_t kl = strlen(key);
	double v = NAN;
	while (fgets(line, sizeof line, f)) {
		char *p = line + strspn(line, " ");
		if (strncmp(p, key, kl) == 0) {
			p += kl;
			p += strspn(p, " ");
			if (*p == '=')
				v = strtod(p + 1, NULL);
		}
	}
	fclose(f);
	ck_assert_msg(!isnan(v), "%s: no '%s'", path, key);
	return v;
}

static long meta_int(const char *casename, const char *key)
{
	long v = test_golden_meta(casename, key, -1);
	ck_assert_msg(v >= 0, "%s/meta.txt: no '%s'", casename, key);
	return v;
}

static float *fbuf(size_t n)
{
	float *p = calloc(n ? n : 1, sizeof *p);
	ck_assert(p != NULL);
	return p;
}

static float *fcopy(const float *src, size_t n)
{
	float *p = fbuf(n);
	memcpy(p, src, n * sizeof *p);
	return p;
}

/* ---- golden cases -------------------------------------------------------- */

static const char *conv_cases[] = {"conv_3x3_s1_p1", "conv_3x3_s2_p1", "conv_1x1_s1_bias",
                                   "conv_1x1_s2_projection", "conv_7x7_s2_p3_stem"};

START_TEST(golden_conv)
{
	golden g = {.name = conv_cases[_i]};
	const rt_array *x = gold(&g, "x"), *w = gold(&g, "w");
	ck_assert_int_eq(w->dims[1], x->dims[1]);
	ck_assert_int_eq(w->dims[2], w->dims[3]);
	ck_assert_int_eq(w->dims[2], meta_int(g.name, "kernel"));
	ck_assert_int_eq(w->dims[0], meta_int(g.name, "out_channels"));
	rt_conv p = rt_conv_make((int)x->dims[0], (int)x->dims[1], (int)x->dims[2], (int)x->dims[3],
	                         (int)w->dims[0], (int)w->dims[2], (int)meta_int(g.name, "stride"),
	                         (int)meta_int(g.name, "pad"));
	const float *b = meta_int(g.name, "bias") ? goldf(&g, "b") : NULL;
	size_t ny = (size_t)p.n * p.oc * p.oh * p.ow;
	float *y = fbuf(ny), *dx = fbuf(x->count), *dw = fbuf(w->count), *db = fbuf(p.oc);

	expect_dims4(gold(&g, "y"), p.n, p.oc, p.oh, p.ow);
	rt_conv2d_ref(&p, x->data, w->data, b, y);
	expect_golden(&g, "y", y, ny, 1e-5);

	const float *dy = goldf(&g, "dy");
	rt_conv2d_grad_input_ref(&p, dy, w->data, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	rt_conv2d_grad_weight_ref(&p, x->data, dy, dw, b ? db : NULL);
	expect_golden(&g, "dw", dw, w->count, 1e-4);
	if (b)
		expect_golden(&g, "db", db, (size_t)p.oc, 1e-4);
	free(y);
	free(dx);
	free(dw);
	free(db);
	golden_free(&g);
}
END_TEST

START_TEST(golden_batchnorm_train)
{
	golden g = {.name = "batchnorm_train"};
	ck_assert_int_eq(meta_int(g.name, "training"), 1);
	const rt_array *x = gold(&g, "x");
	int n = (int)x->dims[0], c = (int)x->dims[1], hw = (int)(x->dims[2] * x->dims[3]);
	const float *gamma = goldf(&g, "gamma"), *beta = goldf(&g, "beta");
	float eps = (float)meta_double(g.name, "eps");
	float momentum = (float)meta_double(g.name, "momentum");
	float *stats = fbuf(2 * (size_t)c), *y = fbuf(x->count), *dx = fbuf(x->count);
	float *dparams = fbuf(2 * (size_t)c);

	rt_bn_stats_ref(n, c, hw, x->data, stats);
	rt_batchnorm_ref(n, c, hw, x->data, stats, stats + c, gamma, beta, eps, y);
	expect_golden(&g, "y", y, x->count, 1e-5);

	float *rm = fcopy(goldf(&g, "running_mean"), c), *rv = fcopy(goldf(&g, "running_var"), c);
	rt_bn_running_update_ref(c, n * hw, momentum, stats, rm, rv);
	expect_golden(&g, "running_mean_after", rm, c, 1e-5);
	expect_golden(&g, "running_var_after", rv, c, 1e-5);

	const float *dy = goldf(&g, "dy");
	rt_bn_grad_params_ref(n, c, hw, x->data, dy, stats, eps, dparams);
	expect_golden(&g, "dgamma", dparams, c, 1e-4);
	expect_golden(&g, "dbeta", dparams + c, c, 1e-4);
	rt_bn_grad_input_ref(n, c, hw, x->data, dy, stats, gamma, dparams, eps, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(stats);
	free(y);
	free(dx);
	free(dparams);
	free(rm);
	free(rv);
	golden_free(&g);
}
END_TEST

/* Inference mode: the running statistics are constants, so dx is dy scaled
 * per channel (rt_batchnorm_ref with zero mean and shift computes exactly
 * that) and the parameter gradients use the running statistics. */
START_TEST(golden_batchnorm_eval)
{
	golden g = {.name = "batchnorm_eval"};
	ck_assert_int_eq(meta_int(g.name, "training"), 0);
	const rt_array *x = gold(&g, "x");
	int n = (int)x->dims[0], c = (int)x->dims[1], hw = (int)(x->dims[2] * x->dims[3]);
	const float *gamma = goldf(&g, "gamma"), *beta = goldf(&g, "beta");
	const float *rm = goldf(&g, "running_mean"), *rv = goldf(&g, "running_var");
	float eps = (float)meta_double(g.name, "eps");
	float *y = fbuf(x->count), *dx = fbuf(x->count), *zero = fbuf(c);
	float *stats = fbuf(2 * (size_t)c), *dparams = fbuf(2 * (size_t)c);

	rt_batchnorm_ref(n, c, hw, x->data, rm, rv, gamma, beta, eps, y);
	expect_golden(&g, "y", y, x->count, 1e-5);
	expect_golden(&g, "running_mean_after", rm, c, 1e-7);
	expect_golden(&g, "running_var_after", rv, c, 1e-7);

	const float *dy = goldf(&g, "dy");
	memcpy(stats, rm, c * sizeof *stats);
	memcpy(stats + c, rv, c * sizeof *stats);
	rt_bn_grad_params_ref(n, c, hw, x->data, dy, stats, eps, dparams);
	expect_golden(&g, "dgamma", dparams, c, 1e-4);
	expect_golden(&g, "dbeta", dparams + c, c, 1e-4);
	rt_batchnorm_ref(n, c, hw, dy, zero, rv, gamma, zero, eps, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(y);
	free(dx);
	free(zero);
	free(stats);
	free(dparams);
	golden_free(&g);
}
END_TEST

START_TEST(golden_relu)
{
	golden g = {.name = "relu"};
	const rt_array *x = gold(&g, "x");
	float *y = fbuf(x->count), *dx = fbuf(x->count);
	rt_relu_ref(x->count, x->data, y);
	expect_golden(&g, "y", y, x->count, 1e-5);
	rt_relu_grad_ref(x->count, y, goldf(&g, "dy"), dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(y);
	free(dx);
	golden_free(&g);
}
END_TEST

START_TEST(golden_maxpool)
{
	golden g = {.name = "maxpool_3x3_s2_p1"};
	const rt_array *x = gold(&g, "x");
	rt_pool p = rt_pool_make((int)x->dims[0], (int)x->dims[1], (int)x->dims[2], (int)x->dims[3],
	                         (int)meta_int(g.name, "kernel"), (int)meta_int(g.name, "stride"),
	                         (int)meta_int(g.name, "pad"));
	size_t ny = (size_t)p.n * p.c * p.oh * p.ow;
	float *y = fbuf(ny), *dx = fbuf(x->count);
	expect_dims4(gold(&g, "y"), p.n, p.c, p.oh, p.ow);
	rt_maxpool_ref(&p, x->data, y);
	expect_golden(&g, "y", y, ny, 1e-5);
	rt_maxpool_grad_ref(&p, x->data, goldf(&g, "dy"), dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(y);
	free(dx);
	golden_free(&g);
}
END_TEST

START_TEST(golden_global_avgpool)
{
	golden g = {.name = "global_avgpool"};
	const rt_array *x = gold(&g, "x");
	int n = (int)x->dims[0], c = (int)x->dims[1], hw = (int)(x->dims[2] * x->dims[3]);
	float *y = fbuf((size_t)n * c), *dx = fbuf(x->count);
	expect_dims4(gold(&g, "y"), n, c, 1, 1);
	rt_global_avgpool_ref(n, c, hw, x->data, y);
	expect_golden(&g, "y", y, (size_t)n * c, 1e-5);
	rt_global_avgpool_grad_ref(n, c, hw, goldf(&g, "dy"), dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(y);
	free(dx);
	golden_free(&g);
}
END_TEST

/* add has no backward kernel: both gradients are dy itself. */
START_TEST(golden_add)
{
	golden g = {.name = "add"};
	const rt_array *a = gold(&g, "a");
	float *y = fbuf(a->count);
	rt_add_ref(a->count, a->data, goldf(&g, "b"), y);
	expect_golden(&g, "y", y, a->count, 1e-5);
	const float *dy = goldf(&g, "dy");
	expect_golden(&g, "da", dy, a->count, 1e-4);
	expect_golden(&g, "db", dy, a->count, 1e-4);
	free(y);
	golden_free(&g);
}
END_TEST

START_TEST(golden_dense)
{
	golden g = {.name = "dense"};
	const rt_array *x = gold(&g, "x"), *w = gold(&g, "w");
	int n = (int)x->dims[0], in = (int)x->dims[1], out = (int)w->dims[0];
	ck_assert_int_eq(w->dims[1], in);
	float *y = fbuf((size_t)n * out), *dx = fbuf(x->count), *dw = fbuf(w->count);
	float *db = fbuf(out);
	rt_linear_ref(n, in, out, x->data, w->data, goldf(&g, "b"), y);
	expect_golden(&g, "y", y, (size_t)n * out, 1e-5);
	const float *dy = goldf(&g, "dy");
	rt_linear_grad_input_ref(n, in, out, dy, w->data, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	rt_linear_grad_weight_ref(n, in, out, x->data, dy, dw, db);
	expect_golden(&g, "dw", dw, w->count, 1e-4);
	expect_golden(&g, "db", db, out, 1e-4);
	free(y);
	free(dx);
	free(dw);
	free(db);
	golden_free(&g);
}
END_TEST

START_TEST(golden_shortcut_option_a)
{
	golden g = {.name = "shortcut_option_a"};
	const rt_array *x = gold(&g, "x");
	int n = (int)x->dims[0], c = (int)x->dims[1], h = (int)x->dims[2], w = (int)x->dims[3];
	int s = (int)meta_int(g.name, "stride"), oc = (int)meta_int(g.name, "out_channels");
	int oh = (h + s - 1) / s, ow = (w + s - 1) / s, before = (oc - c) / 2;
	int after = oc - c - before;
	size_t nsub = (size_t)n * c * oh * ow, ny = (size_t)n * oc * oh * ow;
	float *sub = fbuf(nsub), *y = fbuf(ny), *dsub = fbuf(nsub), *dx = fbuf(x->count);

	expect_dims4(gold(&g, "y"), n, oc, oh, ow);
	rt_subsample_ref(n, c, h, w, s, x->data, sub);
	rt_pad_channels_ref(n, c, oh * ow, before, after, sub, y);
	expect_golden(&g, "y", y, ny, 1e-5);
	rt_pad_channels_grad_ref(n, c, oh * ow, before, after, goldf(&g, "dy"), dsub);
	rt_subsample_grad_ref(n, c, h, w, s, dsub, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	free(sub);
	free(y);
	free(dsub);
	free(dx);
	golden_free(&g);
}
END_TEST

START_TEST(golden_softmax_cross_entropy)
{
	golden g = {.name = "softmax_cross_entropy"};
	const rt_array *logits = gold(&g, "logits"), *lab = gold(&g, "labels");
	int n = (int)logits->dims[0], c = (int)logits->dims[1];
	ck_assert_int_eq(lab->dtype, RT_DTYPE_I64);
	ck_assert_uint_eq(lab->count, (size_t)n);
	int32_t *labels = calloc(n, sizeof *labels);
	ck_assert(labels != NULL);
	for (int i = 0; i < n; i++)
		labels[i] = (int32_t)((const int64_t *)lab->data)[i];
	float loss, *dlogits = fbuf(logits->count);
	ck_assert_int_eq(rt_softmax_xent_ref(n, c, logits->data, labels, &loss, dlogits), 0);
	expect_golden(&g, "loss", &loss, 1, 1e-5);
	expect_golden(&g, "dlogits", dlogits, logits->count, 1e-4);
	free(labels);
	free(dlogits);
	golden_free(&g);
}
END_TEST

START_TEST(golden_sgd_momentum)
{
	golden g = {.name = "sgd_momentum"};
	const rt_array *w0 = gold(&g, "w");
	float lr = (float)meta_double(g.name, "lr");
	float momentum = (float)meta_double(g.name, "momentum");
	float wd = (float)meta_double(g.name, "weight_decay");
	long steps = meta_int(g.name, "steps");
	float *w = fcopy(w0->data, w0->count), *v = fbuf(w0->count);
	for (long t = 0; t < steps; t++) {
		char name[32];
		snprintf(name, sizeof name, "g%ld", t);
		const rt_array *gr = gold(&g, name);
		ck_assert_uint_eq(gr->count, w0->count);
		rt_sgd_momentum_ref(w0->count, w, gr->data, v, lr, momentum, wd);
	}
	expect_golden(&g, "w_after", w, w0->count, 1e-5);
	free(w);
	free(v);
	golden_free(&g);
}
END_TEST

/* ---- finite differences ------------------------------------------------- */

/* A forward pass writing ny outputs from inputs held in ctx. */
typedef void (*fd_forward)(void *ctx, float *y);

/* sum(y * r), in double so the differences below see float's rounding of y
 * and nothing more. */
static double fd_objective(fd_forward fwd, void *ctx, float *y, const float *r, size_t ny)
{
	fwd(ctx, y);
	double s = 0;
	for (size_t i = 0; i < ny; i++)
		s += (double)y[i] * r[i];
	return s;
}

/* Central differences of the objective with respect to each element of
 * param (an input of fwd), compared with the analytic gradient. */
static void fd_check(const char *what, fd_forward fwd, void *ctx, size_t ny, const float *r,
                     float *param, size_t np, const float *analytic, float step, double tol)
{
	float *y = fbuf(ny), *num = fbuf(np);
	for (size_t i = 0; i < np; i++) {
		float save = param[i];
		param[i] = save + step;
		float up = param[i];
		double lp = fd_objective(fwd, ctx, y, r, ny);
		param[i] = save - step;
		float down = param[i];
		double lm = fd_objective(fwd, ctx, y, r, ny);
		param[i] = save;
		num[i] = (float)((lp - lm) / ((double)up - down));
	}
	double e = test_rel_err(analytic, num, np);
	ck_assert_msg(e < tol, "%s: analytic vs finite-difference relative error %.3g exceeds %.1g",
	              what, e, tol);
	free(y);
	free(num);
}

static float *randn(rt_rng *rng, size_t n, float scale)
{
	float *p = fbuf(n);
	for (size_t i = 0; i < n; i++)
		p[i] = rt_rng_normal(rng) * scale;
	return p;
}

/* Values at least 0.1 from zero: relu's kink stays out of reach of the step. */
static float *randn_off_zero(rt_rng *rng, size_t n)
{
	float *p = fbuf(n);
	for (size_t i = 0; i < n; i++) {
		float v = rt_rng_normal(rng);
		p[i] = v < 0 ? v - 0.1f : v + 0.1f;
	}
	return p;
}

/* A shuffled ramp with gaps of 0.05: no two values within the step of each
 * other, so no perturbation changes which element is a window's maximum. */
static float *shuffled_ramp(rt_rng *rng, size_t n)
{
	float *p = fbuf(n);
	for (size_t i = 0; i < n; i++)
		p[i] = 0.05f * (float)i - 0.025f * (float)n;
	for (size_t i = n; i > 1; i--) {
		size_t j = rt_rng_next(rng) % i;
		float t = p[i - 1];
		p[i - 1] = p[j];
		p[j] = t;
	}
	return p;
}

/* Step and tolerance for float kernels: linear maps are exact up to the
 * rounding of y (about 1e-6 of the gradient at this step); smooth non-linear
 * ones add an O(step^2) truncation error. */
#define FD_STEP       1e-2f
#define FD_TOL        1e-3
#define FD_TOL_SMOOTH 5e-3

typedef struct conv_ctx {
	rt_conv p;
	float *x, *w, *b;
} conv_ctx;

static void conv_fwd(void *ctx, float *y)
{
	conv_ctx *c = ctx;
	rt_conv2d_ref(&c->p, c->x, c->w, c->b, y);
}

static const struct {
	int h, w, k, stride, pad;
} conv_geoms[] = {{7, 6, 3, 1, 1}, {7, 6, 3, 2, 1}, {6, 7, 1, 2, 0},
                  {9, 8, 5, 2, 2}, {5, 5, 3, 3, 0}, {6, 5, 2, 1, 0}};

START_TEST(fd_conv)
{
	rt_rng rng;
	rt_rng_seed(&rng, 100 + _i);
	conv_ctx c;
	c.p = rt_conv_make(2, 3, conv_geoms[_i].h, conv_geoms[_i].w, 4, conv_geoms[_i].k,
	                   conv_geoms[_i].stride, conv_geoms[_i].pad);
	size_t nx = (size_t)2 * 3 * c.p.h * c.p.w, nw = (size_t)4 * 3 * c.p.k * c.p.k;
	size_t ny = (size_t)2 * 4 * c.p.oh * c.p.ow;
	c.x = randn(&rng, nx, 1);
	c.w = randn(&rng, nw, 0.5f);
	c.b = randn(&rng, 4, 1);
	float *r = randn(&rng, ny, 1), *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf(4);
	rt_conv2d_grad_input_ref(&c.p, r, c.w, dx);
	rt_conv2d_grad_weight_ref(&c.p, c.x, r, dw, db);
	fd_check("conv dx", conv_fwd, &c, ny, r, c.x, nx, dx, FD_STEP, FD_TOL);
	fd_check("conv dw", conv_fwd, &c, ny, r, c.w, nw, dw, FD_STEP, FD_TOL);
	fd_check("conv db", conv_fwd, &c, ny, r, c.b, 4, db, FD_STEP, FD_TOL);
	/* db is optional: NULL must leave dw unchanged. */
	float *dw2 = fbuf(nw);
	rt_conv2d_grad_weight_ref(&c.p, c.x, r, dw2, NULL);
	ck_assert(memcmp(dw, dw2, nw * sizeof *dw) == 0);
	free(c.x);
	free(c.w);
	free(c.b);
	free(r);
	free(dx);
	free(dw);
	free(db);
	free(dw2);
}
END_TEST

typedef struct bn_ctx {
	int n, c, hw;
	float *x, *gamma, *beta, *stats;
	float eps;
} bn_ctx;

/* Training mode end to end: batch statistics, then normalisation. */
static void bn_fwd(void *ctx, float *y)
{
	bn_ctx *b = ctx;
	rt_bn_stats_ref(b->n, b->c, b->hw, b->x, b->stats);
	rt_batchnorm_ref(b->n, b->c, b->hw, b->x, b->stats, b->stats + b->c, b->gamma, b->beta,
	                 b->eps, y);
}

START_TEST(fd_batchnorm_train)
{
	rt_rng rng;
	rt_rng_seed(&rng, 7);
	bn_ctx b = {.n = 3, .c = 4, .hw = 5, .eps = 1e-5f};
	size_t nx = (size_t)b.n * b.c * b.hw;
	b.x = randn(&rng, nx, 1);
	for (size_t i = 0; i < nx; i++)
		b.x[i] += (float)(i / b.hw % b.c); /* channels with different means */
	b.gamma = randn(&rng, b.c, 1);
	b.beta = randn(&rng, b.c, 1);
	b.stats = fbuf(2 * (size_t)b.c);
	float *r = randn(&rng, nx, 1), *dx = fbuf(nx), *dparams = fbuf(2 * (size_t)b.c);
	rt_bn_stats_ref(b.n, b.c, b.hw, b.x, b.stats);
	rt_bn_grad_params_ref(b.n, b.c, b.hw, b.x, r, b.stats, b.eps, dparams);
	rt_bn_grad_input_ref(b.n, b.c, b.hw, b.x, r, b.stats, b.gamma, dparams, b.eps, dx);
	fd_check("bn dx", bn_fwd, &b, nx, r, b.x, nx, dx, FD_STEP, FD_TOL_SMOOTH);
	fd_check("bn dgamma", bn_fwd, &b, nx, r, b.gamma, b.c, dparams, FD_STEP, FD_TOL);
	fd_check("bn dbeta", bn_fwd, &b, nx, r, b.beta, b.c, dparams + b.c, FD_STEP, FD_TOL);
	free(b.x);
	free(b.gamma);
	free(b.beta);
	free(b.stats);
	free(r);
	free(dx);
	free(dparams);
}
END_TEST

typedef struct unary_ctx {
	size_t n;
	float *x;
} unary_ctx;

static void relu_fwd(void *ctx, float *y)
{
	unary_ctx *u = ctx;
	rt_relu_ref(u->n, u->x, y);
}

START_TEST(fd_relu)
{
	rt_rng rng;
	rt_rng_seed(&rng, 8);
	unary_ctx u = {.n = 50};
	u.x = randn_off_zero(&rng, u.n);
	float *y = fbuf(u.n), *r = randn(&rng, u.n, 1), *dx = fbuf(u.n);
	rt_relu_ref(u.n, u.x, y);
	rt_relu_grad_ref(u.n, y, r, dx);
	fd_check("relu dx", relu_fwd, &u, u.n, r, u.x, u.n, dx, FD_STEP, FD_TOL);
	free(u.x);
	free(y);
	free(r);
	free(dx);
}
END_TEST

typedef struct pool_ctx {
	rt_pool p;
	float *x;
} pool_ctx;

static void maxpool_fwd(void *ctx, float *y)
{
	pool_ctx *c = ctx;
	rt_maxpool_ref(&c->p, c->x, y);
}

static void avgpool_fwd(void *ctx, float *y)
{
	pool_ctx *c = ctx;
	rt_avgpool_ref(&c->p, c->x, y);
}

static const struct {
	int h, w, k, stride, pad;
} pool_geoms[] = {{7, 6, 3, 2, 1}, {6, 7, 2, 2, 0}, {7, 5, 3, 1, 1}, {8, 8, 3, 3, 1}};

START_TEST(fd_maxpool)
{
	rt_rng rng;
	rt_rng_seed(&rng, 200 + _i);
	pool_ctx c;
	c.p = rt_pool_make(2, 3, pool_geoms[_i].h, pool_geoms[_i].w, pool_geoms[_i].k,
	                   pool_geoms[_i].stride, pool_geoms[_i].pad);
	size_t nx = (size_t)2 * 3 * c.p.h * c.p.w, ny = (size_t)2 * 3 * c.p.oh * c.p.ow;
	c.x = shuffled_ramp(&rng, nx);
	float *r = randn(&rng, ny, 1), *dx = fbuf(nx);
	rt_maxpool_grad_ref(&c.p, c.x, r, dx);
	fd_check("maxpool dx", maxpool_fwd, &c, ny, r, c.x, nx, dx, FD_STEP, FD_TOL);
	free(c.x);
	free(r);
	free(dx);
}
END_TEST

START_TEST(fd_avgpool)
{
	rt_rng rng;
	rt_rng_seed(&rng, 300 + _i);
	pool_ctx c;
	c.p = rt_pool_make(2, 3, pool_geoms[_i].h, pool_geoms[_i].w, pool_geoms[_i].k,
	                   pool_geoms[_i].stride, pool_geoms[_i].pad);
	size_t nx = (size_t)2 * 3 * c.p.h * c.p.w, ny = (size_t)2 * 3 * c.p.oh * c.p.ow;
	c.x = randn(&rng, nx, 1);
	float *r = randn(&rng, ny, 1), *dx = fbuf(nx);
	rt_avgpool_grad_ref(&c.p, r, dx);
	fd_check("avgpool dx", avgpool_fwd, &c, ny, r, c.x, nx, dx, FD_STEP, FD_TOL);
	free(c.x);
	free(r);
	free(dx);
}
END_TEST

typedef struct gap_ctx {
	int n, c, hw;
	float *x;
} gap_ctx;

static void gap_fwd(void *ctx, float *y)
{
	gap_ctx *g = ctx;
	rt_global_avgpool_ref(g->n, g->c, g->hw, g->x, y);
}

START_TEST(fd_global_avgpool)
{
	rt_rng rng;
	rt_rng_seed(&rng, 9);
	gap_ctx g = {.n = 2, .c = 3, .hw = 10};
	size_t nx = (size_t)g.n * g.c * g.hw, ny = (size_t)g.n * g.c;
	g.x = randn(&rng, nx, 1);
	float *r = randn(&rng, ny, 1), *dx = fbuf(nx);
	rt_global_avgpool_grad_ref(g.n, g.c, g.hw, r, dx);
	fd_check("global_avgpool dx", gap_fwd, &g, ny, r, g.x, nx, dx, FD_STEP, FD_TOL);
	free(g.x);
	free(r);
	free(dx);
}
END_TEST

typedef struct linear_ctx {
	int n, in, out;
	float *x, *w, *b;
} linear_ctx;

static void linear_fwd(void *ctx, float *y)
{
	linear_ctx *l = ctx;
	rt_linear_ref(l->n, l->in, l->out, l->x, l->w, l->b, y);
}

START_TEST(fd_linear)
{
	rt_rng rng;
	rt_rng_seed(&rng, 10);
	/* in = 19 covers the vector body and the scalar tail of the dot. */
	linear_ctx l = {.n = 3, .in = 19, .out = 4};
	size_t nx = (size_t)l.n * l.in, nw = (size_t)l.out * l.in, ny = (size_t)l.n * l.out;
	l.x = randn(&rng, nx, 1);
	l.w = randn(&rng, nw, 0.5f);
	l.b = randn(&rng, l.out, 1);
	float *r = randn(&rng, ny, 1), *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf(l.out);
	rt_linear_grad_input_ref(l.n, l.in, l.out, r, l.w, dx);
	rt_linear_grad_weight_ref(l.n, l.in, l.out, l.x, r, dw, db);
	fd_check("linear dx", linear_fwd, &l, ny, r, l.x, nx, dx, FD_STEP, FD_TOL);
	fd_check("linear dw", linear_fwd, &l, ny, r, l.w, nw, dw, FD_STEP, FD_TOL);
	fd_check("linear db", linear_fwd, &l, ny, r, l.b, l.out, db, FD_STEP, FD_TOL);
	float *dw2 = fbuf(nw);
	rt_linear_grad_weight_ref(l.n, l.in, l.out, l.x, r, dw2, NULL);
	ck_assert(memcmp(dw, dw2, nw * sizeof *dw) == 0);
	free(l.x);
	free(l.w);
	free(l.b);
	free(r);
	free(dx);
	free(dw);
	free(db);
	free(dw2);
}
END_TEST

typedef struct rows_ctx {
	int n, c;
	float *x;
} rows_ctx;

static void softmax_fwd(void *ctx, float *y)
{
	rows_ctx *s = ctx;
	rt_softmax_ref(s->n, s->c, s->x, y);
}

START_TEST(fd_softmax)
{
	rt_rng rng;
	rt_rng_seed(&rng, 11);
	rows_ctx s = {.n = 3, .c = 6};
	size_t nx = (size_t)s.n * s.c;
	s.x = randn(&rng, nx, 1.5f);
	float *y = fbuf(nx), *r = randn(&rng, nx, 1), *dx = fbuf(nx);
	rt_softmax_ref(s.n, s.c, s.x, y);
	rt_softmax_grad_ref(s.n, s.c, y, r, dx);
	fd_check("softmax dx", softmax_fwd, &s, nx, r, s.x, nx, dx, FD_STEP, FD_TOL_SMOOTH);
	free(s.x);
	free(y);
	free(r);
	free(dx);
}
END_TEST

typedef struct xent_ctx {
	int n, c;
	float *logits, *scratch;
	int32_t *labels;
} xent_ctx;

/* The loss itself is the objective: one output, weighted by r = 1. */
static void xent_fwd(void *ctx, float *y)
{
	xent_ctx *x = ctx;
	ck_assert_int_eq(rt_softmax_xent_ref(x->n, x->c, x->logits, x->labels, y, x->scratch), 0);
}

START_TEST(fd_softmax_xent)
{
	rt_rng rng;
	rt_rng_seed(&rng, 12);
	xent_ctx x = {.n = 4, .c = 7};
	size_t nl = (size_t)x.n * x.c;
	x.logits = randn(&rng, nl, 2);
	x.scratch = fbuf(nl);
	x.labels = calloc(x.n, sizeof *x.labels);
	for (int i = 0; i < x.n; i++)
		x.labels[i] = (int32_t)(rt_rng_next(&rng) % (uint64_t)x.c);
	float loss, one = 1, *dlogits = fbuf(nl);
	ck_assert_int_eq(rt_softmax_xent_ref(x.n, x.c, x.logits, x.labels, &loss, dlogits), 0);
	fd_check("softmax_xent dlogits", xent_fwd, &x, 1, &one, x.logits, nl, dlogits, FD_STEP,
	         FD_TOL_SMOOTH);
	free(x.logits);
	free(x.scratch);
	free(x.labels);
	free(dlogits);
}
END_TEST

typedef struct reshape_ctx {
	int n, c, h, w, s, before, after;
	float *x;
} reshape_ctx;

static void subsample_fwd(void *ctx, float *y)
{
	reshape_ctx *r = ctx;
	rt_subsample_ref(r->n, r->c, r->h, r->w, r->s, r->x, y);
}

static void pad_fwd(void *ctx, float *y)
{
	reshape_ctx *r = ctx;
	rt_pad_channels_ref(r->n, r->c, r->h * r->w, r->before, r->after, r->x, y);
}

START_TEST(fd_subsample_and_pad)
{
	rt_rng rng;
	rt_rng_seed(&rng, 13);
	reshape_ctx c = {.n = 2, .c = 3, .h = 7, .w = 5, .s = 2, .before = 2, .after = 1};
	size_t nx = (size_t)c.n * c.c * c.h * c.w;
	size_t nsub = (size_t)c.n * c.c * ((c.h + 1) / 2) * ((c.w + 1) / 2);
	size_t npad = (size_t)c.n * (c.c + 3) * c.h * c.w;
	c.x = randn(&rng, nx, 1);
	float *r = randn(&rng, npad, 1), *dx = fbuf(nx);
	rt_subsample_grad_ref(c.n, c.c, c.h, c.w, c.s, r, dx);
	fd_check("subsample dx", subsample_fwd, &c, nsub, r, c.x, nx, dx, FD_STEP, FD_TOL);
	rt_pad_channels_grad_ref(c.n, c.c, c.h * c.w, c.before, c.after, r, dx);
	fd_check("pad_channels dx", pad_fwd, &c, npad, r, c.x, nx, dx, FD_STEP, FD_TOL);
	free(c.x);
	free(r);
	free(dx);
}
END_TEST

/* ---- forward kernels against naive loops --------------------------------- */

/* Per-element bounds tests in double: a different formulation from the
 * kernels' clipped row loops, on non-square inputs the golden cases lack. */
static double naive_conv_at(const rt_conv *p, const float *x, const float *w, int n, int o, int oy,
                            int ox)
{
	double s = 0;
	for (int c = 0; c < p->c; c++)
		for (int ky = 0; ky < p->k; ky++)
			for (int kx = 0; kx < p->k; kx++) {
				int iy = oy * p->stride - p->pad + ky;
				int ix = ox * p->stride - p->pad + kx;
				if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w)
					continue;
				s += (double)x[(((size_t)n * p->c + c) * p->h + iy) * p->w + ix] *
				     w[(((size_t)o * p->c + c) * p->k + ky) * p->k + kx];
			}
	return s;
}

START_TEST(conv_matches_naive)
{
	rt_rng rng;
	rt_rng_seed(&rng, 400 + _i);
	rt_conv p = rt_conv_make(2, 3, conv_geoms[_i].h, conv_geoms[_i].w, 5, conv_geoms[_i].k,
	                         conv_geoms[_i].stride, conv_geoms[_i].pad);
	size_t nx = (size_t)p.n * p.c * p.h * p.w, nw = (size_t)p.oc * p.c * p.k * p.k;
	size_t ny = (size_t)p.n * p.oc * p.oh * p.ow;
	float *x = randn(&rng, nx, 1), *w = randn(&rng, nw, 1), *b = randn(&rng, p.oc, 1);
	float *y = fbuf(ny), *ref = fbuf(ny);
	for (int n = 0; n < p.n; n++)
		for (int o = 0; o < p.oc; o++)
			for (int oy = 0; oy < p.oh; oy++)
				for (int ox = 0; ox < p.ow; ox++)
					ref[(((size_t)n * p.oc + o) * p.oh + oy) * p.ow + ox] =
					    (float)(naive_conv_at(&p, x, w, n, o, oy, ox) + b[o]);
	rt_conv2d_ref(&p, x, w, b, y);
	ck_assert_close(y, ref, ny, 1e-5);
	free(x);
	free(w);
	free(b);
	free(y);
	free(ref);
}
END_TEST

/* Max and average over a window with explicit padding values. */
static void naive_pool(const rt_pool *p, const float *x, int avg, float *y)
{
	for (int pl = 0; pl < p->n * p->c; pl++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				double m = -INFINITY, s = 0;
				for (int ky = 0; ky < p->k; ky++)
					for (int kx = 0; kx < p->k; kx++) {
						int iy = oy * p->stride - p->pad + ky;
						int ix = ox * p->stride - p->pad + kx;
						int in =
						    iy >= 0 && iy < p->h && ix >= 0 && ix < p->w;
						double v =
						    in ? x[((size_t)pl * p->h + iy) * p->w + ix]
						       : 0;
						s += v;
						if (in && v > m)
							m = v;
					}
				y[((size_t)pl * p->oh + oy) * p->ow + ox] =
				    (float)(avg ? s / (p->k * p->k) : m);
			}
}

START_TEST(pools_match_naive)
{
	rt_rng rng;
	rt_rng_seed(&rng, 500 + _i);
	rt_pool p = rt_pool_make(2, 3, pool_geoms[_i].h, pool_geoms[_i].w, pool_geoms[_i].k,
	                         pool_geoms[_i].stride, pool_geoms[_i].pad);
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.c * p.oh * p.ow;
	/* All negative: padding read as zero would win every edge window. */
	float *x = randn(&rng, nx, 1), *y = fbuf(ny), *ref = fbuf(ny);
	for (size_t i = 0; i < nx; i++)
		x[i] = -1 - fabsf(x[i]);
	naive_pool(&p, x, 0, ref);
	rt_maxpool_ref(&p, x, y);
	ck_assert_close(y, ref, ny, 1e-6);
	naive_pool(&p, x, 1, ref);
	rt_avgpool_ref(&p, x, y);
	ck_assert_close(y, ref, ny, 1e-6);
	free(x);
	free(y);
	free(ref);
}
END_TEST

START_TEST(maxpool_gradient_goes_to_first_maximum)
{
	/* 2x4 plane, 2x2 windows: the left window ties three ways at 3, the
	 * right one four ways at -1; each gradient lands on the first. */
	float x[] = {3, 3, -1, -1, 2, 3, -1, -1}, dy[] = {5, 7}, dx[8];
	float want[] = {5, 0, 7, 0, 0, 0, 0, 0};
	rt_pool p = rt_pool_make(1, 1, 2, 4, 2, 2, 0);
	ck_assert_int_eq(p.oh * p.ow, 2);
	rt_maxpool_grad_ref(&p, x, dy, dx);
	for (int i = 0; i < 8; i++)
		ck_assert_msg(dx[i] == want[i], "dx[%d] = %g, want %g", i, dx[i], want[i]);
}
END_TEST

START_TEST(softmax_and_reshapes_match_definitions)
{
	rt_rng rng;
	rt_rng_seed(&rng, 14);
	int n = 3, c = 5;
	float *x = randn(&rng, (size_t)n * c, 3), *y = fbuf((size_t)n * c);
	float *ref = fbuf((size_t)n * c);
	x[0] = 80; /* expf(80) alone overflows nothing but the naive sum's accuracy */
	for (int i = 0; i < n; i++) {
		double s = 0;
		for (int j = 0; j < c; j++)
			s += exp((double)x[i * c + j]);
		for (int j = 0; j < c; j++)
			ref[i * c + j] = (float)(exp((double)x[i * c + j]) / s);
	}
	rt_softmax_ref(n, c, x, y);
	ck_assert_close(y, ref, (size_t)n * c, 1e-6);

	/* subsample keeps x[:, :, ::s, ::s], padding puts zeros around. */
	int h = 5, w = 5, s = 2, oh = 3, ow = 3;
	float *img = randn(&rng, (size_t)2 * h * w, 1), *sub = fbuf((size_t)2 * oh * ow);
	rt_subsample_ref(1, 2, h, w, s, img, sub);
	for (int ch = 0; ch < 2; ch++)
		for (int oy = 0; oy < oh; oy++)
			for (int ox = 0; ox < ow; ox++)
				ck_assert_float_eq(sub[(ch * oh + oy) * ow + ox],
				                   img[(ch * h + oy * s) * w + ox * s]);
	float *pad = fbuf((size_t)2 * 5 * oh * ow);
	rt_pad_channels_ref(2, 1, oh * ow, 1, 3, sub, pad);
	for (int i = 0; i < 2; i++)
		for (int ch = 0; ch < 5; ch++)
			for (int j = 0; j < oh * ow; j++)
				ck_assert_float_eq(pad[(i * 5 + ch) * oh * ow + j],
				                   ch == 1 ? sub[i * oh * ow + j] : 0.0f);
	free(x);
	free(y);
	free(ref);
	free(img);
	free(sub);
	free(pad);
}
END_TEST

START_TEST(output_sizes_use_floor_mode)
{
	static const int cases[][5] = {
	    /* in, k, stride, pad, out */
	    {32, 3, 1, 1, 32},   {32, 3, 2, 1, 16},  {7, 3, 2, 1, 4}, {8, 3, 2, 1, 4},
	    {224, 7, 2, 3, 112}, {112, 3, 2, 1, 56}, {8, 1, 2, 0, 4}, {9, 1, 2, 0, 5},
	    {2, 5, 1, 0, 0},     {6, 2, 2, 0, 3},    {7, 2, 2, 0, 3},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const int *t = cases[i];
		rt_conv c = rt_conv_make(2, 3, t[0], t[0] + 1, 4, t[1], t[2], t[3]);
		ck_assert_msg(c.oh == t[4], "conv in %d k %d s %d p %d: oh %d, want %d", t[0], t[1],
		              t[2], t[3], c.oh, t[4]);
		ck_assert_int_eq(c.ow, rt_conv_make(1, 1, 1, t[0] + 1, 1, t[1], t[2], t[3]).ow);
		ck_assert_int_eq(c.n, 2);
		ck_assert_int_eq(c.c, 3);
		ck_assert_int_eq(c.oc, 4);
		rt_pool p = rt_pool_make(2, 3, t[0], t[0], t[1], t[2], t[3]);
		ck_assert_int_eq(p.oh, t[4]);
		ck_assert_int_eq(p.ow, t[4]);
	}
}
END_TEST

START_TEST(bn_running_update_uses_unbiased_variance)
{
	/* stats for m = 4 values: mean 1, biased var 3 -> unbiased 4. */
	float stats[] = {1, 3}, rm = 10, rv = 20;
	rt_bn_running_update_ref(1, 4, 0.25f, stats, &rm, &rv);
	ck_assert_float_eq_tol(rm, 0.75f * 10 + 0.25f * 1, 1e-6);
	ck_assert_float_eq_tol(rv, 0.75f * 20 + 0.25f * 4, 1e-6);
}
END_TEST

START_TEST(xent_refuses_bad_labels)
{
	float logits[6] = {1, 2, 3, 4, 5, 6}, loss = -7, d[6];
	for (int i = 0; i < 6; i++)
		d[i] = -7;
	int32_t bad_hi[2] = {0, 3}, bad_lo[2] = {-1, 0};
	ck_assert_int_eq(rt_softmax_xent_ref(2, 3, logits, bad_hi, &loss, d), -1);
	ck_assert_int_eq(rt_softmax_xent_ref(2, 3, logits, bad_lo, &loss, d), -1);
	ck_assert_float_eq(loss, -7);
	for (int i = 0; i < 6; i++)
		ck_assert_float_eq(d[i], -7);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kernels");
	TCase *tc = tcase_create("golden");
	tcase_add_loop_test(tc, golden_conv, 0, (int)(sizeof conv_cases / sizeof conv_cases[0]));
	tcase_add_test(tc, golden_batchnorm_train);
	tcase_add_test(tc, golden_batchnorm_eval);
	tcase_add_test(tc, golden_relu);
	tcase_add_test(tc, golden_maxpool);
	tcase_add_test(tc, golden_global_avgpool);
	tcase_add_test(tc, golden_add);
	tcase_add_test(tc, golden_dense);
	tcase_add_test(tc, golden_shortcut_option_a);
	tcase_add_test(tc, golden_softmax_cross_entropy);
	tcase_add_test(tc, golden_sgd_momentum);
	suite_add_tcase(s, tc);

	int nconv = (int)(sizeof conv_geoms / sizeof conv_geoms[0]);
	int npool = (int)(sizeof pool_geoms / sizeof pool_geoms[0]);
	tc = tcase_create("finite_differences");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, fd_conv, 0, nconv);
	tcase_add_test(tc, fd_batchnorm_train);
	tcase_add_test(tc, fd_relu);
	tcase_add_loop_test(tc, fd_maxpool, 0, npool);
	tcase_add_loop_test(tc, fd_avgpool, 0, npool);
	tcase_add_test(tc, fd_global_avgpool);
	tcase_add_test(tc, fd_linear);
	tcase_add_test(tc, fd_softmax);
	tcase_add_test(tc, fd_softmax_xent);
	tcase_add_test(tc, fd_subsample_and_pad);
	suite_add_tcase(s, tc);

	tc = tcase_create("definitions");
	tcase_add_loop_test(tc, conv_matches_naive, 0, nconv);
	tcase_add_loop_test(tc, pools_match_naive, 0, npool);
	tcase_add_test(tc, maxpool_gradient_goes_to_first_maximum);
	tcase_add_test(tc, softmax_and_reshapes_match_definitions);
	tcase_add_test(tc, output_sizes_use_floor_mode);
	tcase_add_test(tc, bn_running_update_uses_unbiased_variance);
	tcase_add_test(tc, xent_refuses_bad_labels);
	suite_add_tcase(s, tc);
	return s;
}

TEST_MAIN(suite)
