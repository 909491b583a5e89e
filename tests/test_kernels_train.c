/* The compiled-code training kernels against the reference kernels on random
 * shapes, and against PyTorch's golden vectors with the tolerances the
 * reference kernels meet there.
 *
 * Tolerance: a relative error (max |diff| / max |ref|) under 1e-4 for the
 * gradients. A weight gradient sums N = n * oh * ow products and an input
 * gradient oc * k * k of them; the reference sums planes in double, the
 * kernels in float through blocked GEMMs, where rounding errors
 * of random sign grow like u * sqrt(N) relative to the result (u = 6e-8):
 * at most about 1e-5 for the largest case here (N = 3136; the errors seen
 * are below 1e-6). 1e-4 leaves a margin for less favourable data, is the
 * golden README's gradient tolerance, and still catches any misplaced term,
 * which costs a whole product. BatchNorm statistics and bias gradients
 * reduce in double after short float partial sums, as the reference does in
 * double throughout, so they are held to 1e-5, as forward results are. */
#include <stdint.h>

#include "testutil.h"

/* Kernels run on a pool of three threads, and again with none: the
 * results must be the same bits. */
static rt_threads *threads(void)
{
	static rt_threads *t;
	if (!t)
		t = rt_threads_create(3);
	return t;
}

static float *fbuf(size_t n)
{
	float *p = calloc(n ? n : 1, sizeof *p);
	ck_assert(p != NULL);
	return p;
}

static float *randn(rt_rng *rng, size_t n, float scale, float offset)
{
	float *p = fbuf(n);
	for (size_t i = 0; i < n; i++)
		p[i] = offset + rt_rng_normal(rng) * scale;
	return p;
}

/* Outputs start as NaN so a value the kernel fails to write shows. */
static float *nanbuf(size_t n)
{
	float *p = fbuf(n);
	for (size_t i = 0; i < n; i++)
		p[i] = NAN;
	return p;
}

static void expect_close(const char *what, const float *got, const float *ref, size_t n, double tol)
{
	double e = test_rel_err(got, ref, n);
	ck_assert_msg(e < tol, "%s: relative error %.3g exceeds %.1g", what, e, tol);
}

static void expect_same(const char *what, const float *a, const float *b, size_t n)
{
	ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "%s: two calls differ", what);
}

/* ---- scratch with a guard ------------------------------------------------ */

enum { GUARD = 4096 };
static const uint32_t GUARD_BITS = 0x7fc0dead; /* a NaN no kernel computes */

/* Scratch of exactly the advertised size, followed by a guard region that
 * must come back untouched, and filled with NaN so that a kernel relying on
 * the scratch's previous contents fails. */
typedef struct scratch {
	float *buf;
	size_t n;
} scratch;

static scratch scratch_make(size_t n)
{
	scratch s = {fbuf(n + GUARD), n};
	for (size_t i = 0; i < n; i++)
		s.buf[i] = NAN;
	for (size_t i = 0; i < GUARD; i++)
		memcpy(&s.buf[n + i], &GUARD_BITS, sizeof GUARD_BITS);
	return s;
}

static void scratch_check(const scratch *s, const char *what)
{
	for (size_t i = 0; i < GUARD; i++) {
		uint32_t v;
		memcpy(&v, &s->buf[s->n + i], sizeof v);
		ck_assert_msg(v == GUARD_BITS, "%s wrote %zu floats past its %zu of scratch", what,
		              i + 1, s->n);
	}
}

/* ---- convolution against the reference ------------------------------------ */

typedef struct geom {
	int n, c, h, w, oc, k, stride, pad;
	int big; /* skipped under the sanitizers */
} geom;

static const geom conv_geoms[] = {
    {2, 3, 9, 7, 5, 3, 1, 1, 0},   /* non-square, odd channels */
    {3, 5, 11, 8, 6, 3, 2, 1, 0},  /* stride 2, odd height */
    {3, 4, 8, 8, 5, 3, 1, 0, 0},   /* no padding */
    {2, 3, 15, 13, 4, 7, 2, 3, 0}, /* the stem's geometry */
    {2, 3, 3, 2, 4, 7, 1, 3, 0},   /* kernel wider than the image */
    {1, 12, 10, 9, 7, 1, 1, 0, 0}, /* 1x1: the direct GEMMs */
    {3, 12, 10, 9, 20, 1, 1, 0, 0},
    {2, 12, 10, 9, 20, 1, 2, 0, 0}, /* 1x1 stride 2: the projection shortcut */
    {1, 3, 10, 11, 2, 3, 3, 1, 0},  /* stride 3 */
    /* Several blocks of columns, the last partial, blocks cut mid-row: */
    {2, 37, 40, 36, 24, 3, 1, 1, 0}, /* kdim 333: 7 blocks of 196, last 68 */
    {2, 5, 40, 34, 6, 7, 1, 3, 0},   /* kdim 245: 6 blocks of 267 */
    {2, 19, 33, 30, 11, 3, 2, 1, 0}, /* kdim 171: 2 blocks of 383 */
    /* One column per block: kdim 68600 exceeds the block bound. */
    {1, 1400, 5, 4, 3, 7, 2, 3, 0},
    /* Narrow and tall: more output-row segments per block than the stack
     * holds, so blocks are cut to fit. */
    {1, 1, 700, 3, 2, 3, 1, 1, 0},
    /* A ResNet-50 stage-1 layer: 28 blocks of 113, last 85. */
    {1, 64, 56, 56, 64, 3, 1, 1, 1},
    /* Batches of small GEMMs: whole images are the tasks (a strided small
     * map read through the tap table; 1x1 with an odd image count). */
    {8, 16, 14, 14, 32, 3, 2, 1, 0},
    {7, 6, 9, 9, 5, 1, 1, 0, 0},
    /* A strided map too wide for the table: rows gathered by vectors. */
    {2, 4, 40, 40, 6, 3, 2, 1, 0},
};

START_TEST(conv_vs_ref)
{
	geom g = conv_geoms[_i];
	if (g.big && test_sanitized()) {
		/* The same block structure with fewer output channels. */
		g.oc = 8;
	}
	rt_conv p = rt_conv_make(g.n, g.c, g.h, g.w, g.oc, g.k, g.stride, g.pad);
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.oc * p.oh * p.ow;
	size_t nw = (size_t)p.oc * p.c * p.k * p.k;
	rt_rng rng;
	rt_rng_seed(&rng, 1000 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.5f, 0);
	float *dy = randn(&rng, ny, 1, 0);
	float *dx_ref = fbuf(nx), *dw_ref = fbuf(nw);
	rt_conv2d_grad_input_ref(&p, dy, w, dx_ref);
	rt_conv2d_grad_weight_ref(&p, x, dy, dw_ref, NULL);

	scratch s = scratch_make(rt_conv2d_grad_scratch_floats(&p));
	scratch sw = scratch_make(rt_conv2d_grad_weight_scratch_floats(&p));
	float *dx = nanbuf(nx), *dw = nanbuf(nw);
	rt_conv2d_grad_input(threads(), &p, dy, w, dx, s.buf, rt_conv2d_grad_input_algo(&p));
	scratch_check(&s, "grad_input");
	expect_close("grad_input", dx, dx_ref, nx, 1e-4);
	rt_conv2d_grad_weight(threads(), &p, x, dy, dw, sw.buf, rt_conv2d_grad_weight_algo(&p));
	scratch_check(&sw, "grad_weight");
	expect_close("grad_weight", dw, dw_ref, nw, 1e-4);

	/* The forward convolution on the same GEMM: bias, a residual added in
	 * place (the output is the residual's buffer) and relu. */
	float *b = randn(&rng, (size_t)p.oc, 0.3f, 0), *res = randn(&rng, ny, 1, 0);
	float *y_ref = fbuf(ny), *y = fbuf(ny);
	rt_conv2d_ref(&p, x, w, b, y_ref);
	for (size_t i = 0; i < ny; i++) {
		y_ref[i] += res[i];
		y_ref[i] = y_ref[i] < 0 ? 0 : y_ref[i];
	}
	memcpy(y, res, ny * sizeof(float));
	rt_conv2d(threads(), &p, x, w, b, y, y, 1, rt_conv2d_algo(&p, true));
	expect_close("forward", y, y_ref, ny, 1e-5);
	float *y1 = nanbuf(ny);
	rt_conv2d(NULL, &p, x, w, b, res, y1, 1, rt_conv2d_algo(&p, true));
	ck_assert_msg(memcmp(y, y1, ny * sizeof(float)) == 0, "forward depends on the threads");
	free(b), free(res), free(y_ref), free(y), free(y1);

	/* Again, with the scratch holding the last call's leftovers and the
	 * outputs garbage: the results must not change by a bit. */
	float *dx2 = randn(&rng, nx, 1, 0), *dw2 = randn(&rng, nw, 1, 0);
	rt_conv2d_grad_weight(NULL, &p, x, dy, dw2, sw.buf, rt_conv2d_grad_weight_algo(&p));
	rt_conv2d_grad_input(NULL, &p, dy, w, dx2, s.buf, rt_conv2d_grad_input_algo(&p));
	scratch_check(&s, "second call");
	scratch_check(&sw, "second call");
	expect_same("grad_input", dx, dx2, nx);
	expect_same("grad_weight", dw, dw2, nw);

	free(x);
	free(w);
	free(dy);
	free(dx_ref);
	free(dw_ref);
	free(s.buf);
	free(sw.buf);
	free(dx);
	free(dw);
	free(dx2);
	free(dw2);
}
END_TEST

/* Inference's direct convolution on weights prepared once (the direct
 * flag of a conv node): square kernels of 3, 5 and 7, strides 1 and 2,
 * output channels in whole blocks of 32 (AVX-512's sixteen-float kernel)
 * and of 16 (the eight-float one) and both mixed, a ragged last block of
 * pixels, one image split over the threads and several, and with AVX-512
 * the stem's kernel (up to 4 input channels, output rows of whole
 * vectors: the last three shapes); against the reference, BatchNorm
 * folded while preparing as folding first gives, and bit for bit the same
 * on any number of threads and as the GEMM where its sums are one block
 * of K (the same FMAs in the same order). Which shapes take it: output
 * channels a multiple of 16, and 100 output pixels or more. */
static const struct {
	int n, c, h, w, oc, k, stride;
} prepared_shapes[] = {
    {1, 3, 40, 36, 64, 7, 2},   {2, 16, 28, 28, 32, 3, 2}, {1, 5, 25, 21, 48, 5, 2},
    {3, 8, 23, 27, 16, 3, 1},   {1, 32, 30, 30, 96, 3, 2}, {2, 3, 21, 22, 16, 7, 2},
    {1, 64, 22, 22, 128, 3, 2}, {1, 3, 63, 64, 64, 7, 2},  {3, 2, 30, 32, 32, 5, 2},
    {2, 4, 16, 16, 16, 3, 1},
};

START_TEST(conv_direct_prepared_vs_ref)
{
	int k = prepared_shapes[_i].k;
	rt_conv p = rt_conv_make(prepared_shapes[_i].n, prepared_shapes[_i].c,
	                         prepared_shapes[_i].h, prepared_shapes[_i].w,
	                         prepared_shapes[_i].oc, k, prepared_shapes[_i].stride, k / 2);
	ck_assert(rt_conv2d_direct_prepared_fits(&p));
	int kdim = p.c * k * k;
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.oc * p.oh * p.ow;
	size_t nw = (size_t)p.oc * kdim;
	rt_rng rng;
	rt_rng_seed(&rng, 2700 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.3f, 0);
	float *b = randn(&rng, (size_t)p.oc, 0.3f, 0), *gamma = randn(&rng, (size_t)p.oc, 1, 0);
	float *var = randn(&rng, (size_t)p.oc, 1, 0), *folded = fbuf(nw);
	for (int o = 0; o < p.oc; o++)
		var[o] = var[o] * var[o];
	rt_bn_fold_weight(p.oc, kdim, w, gamma, var, 1e-5f, folded);
	float *wt = nanbuf(nw), *wt2 = nanbuf(nw);
	rt_direct_weight(p.oc, kdim, folded, NULL, NULL, 0, wt);
	rt_direct_weight(p.oc, kdim, w, gamma, var, 1e-5f, wt2);
	ck_assert_msg(memcmp(wt, wt2, nw * sizeof(float)) == 0, "folding while preparing differs");
	for (int with = 0; with < 2; with++) {
		float *y_ref = fbuf(ny), *y = nanbuf(ny), *y1 = nanbuf(ny);
		rt_conv2d_ref(&p, x, folded, with ? b : NULL, y_ref);
		for (size_t i = 0; with && i < ny; i++)
			y_ref[i] = y_ref[i] < 0 ? 0 : y_ref[i];
		rt_conv2d_direct_prepared(threads(), &p, x, wt, with ? b : NULL, y, with);
		expect_close("direct forward, prepared", y, y_ref, ny, 1e-5);
		ck_assert(rt_conv2d_direct_try(NULL, &p, x, wt, with ? b : NULL, y1, with));
		ck_assert_msg(memcmp(y, y1, ny * sizeof(float)) == 0,
		              "direct forward depends on the threads");
		if (kdim <= 256) {
			rt_conv2d(threads(), &p, x, folded, with ? b : NULL, NULL, y1, with,
			          RT_CONV_ALGO_GEMM);
			ck_assert_msg(memcmp(y, y1, ny * sizeof(float)) == 0,
			              "direct forward differs from the GEMM's sums");
		}
		/* what runs where no scratch was to be had */
		rt_conv2d_direct_prepared_serial(&p, x, wt, with ? b : NULL, y1, with);
		expect_close("direct forward, prepared, serial", y1, y_ref, ny, 1e-5);
		free(y_ref), free(y), free(y1);
	}
	/* not taken: channels not in blocks of 16, or a 7x7 map out */
	rt_conv q = rt_conv_make(1, 8, 20, 20, 24, 3, 2, 1);
	ck_assert(!rt_conv2d_direct_prepared_fits(&q));
	q = rt_conv_make(1, 64, 14, 14, 128, 3, 2, 1);
	ck_assert(!rt_conv2d_direct_prepared_fits(&q));
	free(x), free(w), free(b), free(gamma), free(var), free(folded), free(wt), free(wt2);
}
END_TEST

/* 3x3 convolutions with stride 2 or 1 computed directly (rt_conv2d takes
 * that path where there is no residual and the output channels are a
 * multiple of 16, at stride 1 with more than one input channel; the last
 * two shapes take AVX-512's kernel for few input channels, its weights
 * laid out per call;
 * rt_conv2d_grad_weight where the output channels are, rt_conv2d_grad_input
 * where the input channels are) against the reference: odd sizes,
 * padding 0 to 2, fewer images than threads (each image's pixels split
 * among them) and more, fewer images than the weight gradient's chunks
 * and more, bias and relu or neither; bit for bit the same on any number
 * of threads and with leftovers in the scratch. A shape it does not fit
 * goes to the GEMM and still matches. */
static const struct {
	int n, c, h, w, oc, pad, stride;
} direct_shapes[] = {
    {3, 5, 9, 11, 16, 1, 2},  {2, 16, 28, 28, 32, 1, 2}, {1, 3, 8, 7, 32, 0, 2},
    {1, 4, 13, 13, 16, 2, 2}, {5, 2, 6, 6, 48, 1, 2},    {1, 7, 5, 9, 24, 1, 2},
    {5, 32, 7, 9, 16, 1, 2},  {1, 16, 9, 7, 32, 2, 2},   {5, 1, 28, 28, 16, 1, 1},
    {2, 16, 9, 11, 32, 1, 1}, {1, 3, 7, 6, 16, 0, 1},    {6, 32, 5, 5, 16, 2, 1},
    {2, 3, 16, 16, 16, 1, 1}, {1, 2, 32, 32, 32, 1, 2},
};

START_TEST(conv_direct_vs_ref)
{
	rt_conv p = rt_conv_make(direct_shapes[_i].n, direct_shapes[_i].c, direct_shapes[_i].h,
	                         direct_shapes[_i].w, direct_shapes[_i].oc, 3,
	                         direct_shapes[_i].stride, direct_shapes[_i].pad);
	ck_assert(rt_conv2d_direct_fits(&p) == (p.oc % 16 == 0 && (p.stride == 2 || p.c > 1)));
	ck_assert(rt_conv2d_grad_weight_direct_fits(&p) == (p.oc % 16 == 0));
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.oc * p.oh * p.ow;
	rt_rng rng;
	rt_rng_seed(&rng, 2200 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, (size_t)p.oc * p.c * 9, 0.5f, 0);
	float *b = randn(&rng, (size_t)p.oc, 0.3f, 0);
	for (int with = 0; with < 2; with++) {
		float *y_ref = fbuf(ny), *y = nanbuf(ny), *y1 = nanbuf(ny);
		rt_conv2d_ref(&p, x, w, with ? b : NULL, y_ref);
		for (size_t i = 0; with && i < ny; i++)
			y_ref[i] = y_ref[i] < 0 ? 0 : y_ref[i];
		rt_conv2d(threads(), &p, x, w, with ? b : NULL, NULL, y, with,
		          rt_conv2d_algo(&p, false));
		expect_close("direct forward", y, y_ref, ny, 1e-5);
		rt_conv2d(NULL, &p, x, w, with ? b : NULL, NULL, y1, with,
		          rt_conv2d_algo(&p, false));
		ck_assert_msg(memcmp(y, y1, ny * sizeof(float)) == 0,
		              "direct forward depends on the threads");
		/* the algorithm is the caller's: asked for the GEMM, it runs it */
		rt_conv2d(threads(), &p, x, w, with ? b : NULL, NULL, y1, with, RT_CONV_ALGO_GEMM);
		expect_close("the GEMM forward where the direct one fits", y1, y_ref, ny, 1e-5);
		free(y_ref), free(y), free(y1);
	}
	size_t nw = (size_t)p.oc * p.c * 9;
	float *dy = randn(&rng, ny, 1, 0), *dw_ref = fbuf(nw), *dw = nanbuf(nw), *dw1 = nanbuf(nw);
	rt_conv2d_grad_weight_ref(&p, x, dy, dw_ref, NULL);
	scratch sw = scratch_make(rt_conv2d_grad_weight_scratch_floats(&p));
	rt_conv2d_grad_weight(threads(), &p, x, dy, dw, sw.buf, rt_conv2d_grad_weight_algo(&p));
	scratch_check(&sw, "direct grad_weight");
	expect_close("direct grad_weight", dw, dw_ref, nw, 1e-4);
	rt_conv2d_grad_weight(NULL, &p, x, dy, dw1, sw.buf, rt_conv2d_grad_weight_algo(&p));
	ck_assert_msg(memcmp(dw, dw1, nw * sizeof(float)) == 0,
	              "direct grad_weight depends on the threads or on its scratch's leftovers");
	ck_assert(rt_conv2d_grad_input_direct_fits(&p) == (p.c % 16 == 0));
	float *dx_ref = fbuf(nx), *dx = nanbuf(nx), *dx1 = nanbuf(nx);
	rt_conv2d_grad_input_ref(&p, dy, w, dx_ref);
	scratch si = scratch_make(rt_conv2d_grad_scratch_floats(&p));
	rt_conv2d_grad_input(threads(), &p, dy, w, dx, si.buf, rt_conv2d_grad_input_algo(&p));
	scratch_check(&si, "direct grad_input");
	expect_close("direct grad_input", dx, dx_ref, nx, 1e-4);
	rt_conv2d_grad_input(NULL, &p, dy, w, dx1, si.buf, rt_conv2d_grad_input_algo(&p));
	ck_assert_msg(memcmp(dx, dx1, nx * sizeof(float)) == 0,
	              "direct grad_input depends on the threads");
	rt_conv2d_grad_input(threads(), &p, dy, w, dx1, si.buf, RT_CONV_ALGO_GEMM);
	expect_close("the GEMM grad_input where the direct one fits", dx1, dx_ref, nx, 1e-4);
	rt_conv2d_grad_weight(threads(), &p, x, dy, dw1, sw.buf, RT_CONV_ALGO_GEMM);
	expect_close("the GEMM grad_weight where the direct one fits", dw1, dw_ref, nw, 1e-4);
	free(x), free(w), free(b), free(dy), free(dw_ref), free(dw), free(dw1), free(sw.buf);
	free(dx_ref), free(dx), free(dx1), free(si.buf);
}
END_TEST

/* Winograd F(4x4, 3x3) against the reference convolution: partial tiles,
 * padding 0 to 2, several images, several tile blocks (the 40x40 case),
 * bias, a residual accumulated in place and relu; bit for bit the same on
 * any number of threads and with leftovers in its scratch. Maps 25 to 28
 * and 13 or 14 wide with up to 32 and 64 channels run in rows of tiles
 * where the kernel set has AVX-512 (wino_rows): a last row of tiles partly
 * past the map (13 and 27 high), the narrowest and widest such maps, and
 * a group of two rows of tiles from two images (9 high: three rows). */
static const struct {
	int n, c, h, w, oc, pad;
} wino_shapes[] = {
    {1, 3, 4, 4, 2, 0},     {2, 5, 9, 11, 7, 1},    {1, 8, 13, 6, 16, 2},  {3, 16, 7, 7, 8, 1},
    {2, 32, 40, 40, 32, 1}, {1, 64, 56, 56, 64, 1}, {1, 96, 7, 7, 80, 1},  {3, 16, 28, 28, 16, 1},
    {2, 5, 13, 25, 7, 1},   {1, 32, 27, 27, 24, 1}, {3, 16, 9, 14, 24, 1}, {2, 64, 14, 14, 48, 1},
    {1, 5, 13, 13, 7, 1},
};

START_TEST(winograd_vs_ref)
{
	int n = wino_shapes[_i].n, oc = wino_shapes[_i].oc;
	if (test_sanitized() && wino_shapes[_i].h > 50)
		oc = 8;
	rt_conv p = rt_conv_make(n, wino_shapes[_i].c, wino_shapes[_i].h, wino_shapes[_i].w, oc, 3,
	                         1, wino_shapes[_i].pad);
	ck_assert(rt_winograd_fits(&p));
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.oc * p.oh * p.ow;
	size_t nw = (size_t)p.oc * p.c * 9;
	rt_rng rng;
	rt_rng_seed(&rng, 2000 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.5f, 0);
	float *b = randn(&rng, (size_t)p.oc, 0.3f, 0), *res = randn(&rng, ny, 1, 0);
	float *y_ref = fbuf(ny), *y_conv = fbuf(ny);
	rt_conv2d_ref(&p, x, w, NULL, y_conv);
	rt_conv2d_ref(&p, x, w, b, y_ref);
	for (size_t i = 0; i < ny; i++) {
		y_ref[i] += res[i];
		y_ref[i] = y_ref[i] < 0 ? 0 : y_ref[i];
	}
	for (int m = 4; m >= 2; m -= 2) { /* F(4x4, 3x3), F(2x2, 3x3) */
		float *u = nanbuf(rt_winograd_weight_floats(rt_gemm_mr(), m, p.oc, p.c));
		rt_winograd_weight(threads(), rt_gemm_mr(), m, p.oc, p.c, w, NULL, NULL, 0, u);
		scratch s = scratch_make(rt_winograd_scratch_floats(&p, m));
		float *y = fbuf(ny), *y1 = nanbuf(ny);
		memcpy(y, res, ny * sizeof(float));
		rt_conv2d_winograd(threads(), &p, m, x, u, b, y, y, 1, s.buf);
		scratch_check(&s, "winograd");
		expect_close(m == 4 ? "winograd 4x4" : "winograd 2x2", y, y_ref, ny, 1e-4);
		rt_conv2d_winograd(NULL, &p, m, x, u, b, res, y1, 1, s.buf);
		scratch_check(&s, "winograd, second call");
		ck_assert_msg(memcmp(y, y1, ny * sizeof(float)) == 0,
		              "winograd %dx%d depends on the threads or on its scratch's leftovers",
		              m, m);
		/* without the epilogue: the convolution alone */
		rt_conv2d_winograd(threads(), &p, m, x, u, NULL, NULL, y1, 0, s.buf);
		expect_close("winograd, no epilogue", y1, y_conv, ny, 1e-4);
		free(u), free(s.buf), free(y), free(y1);
	}
	free(x), free(w), free(b), free(res), free(y_ref), free(y_conv);
}
END_TEST

/* Transforms that fold BatchNorm themselves (gemm_weight, winograd_weight
 * with gamma and var) give the bits of folding first (rt_bn_fold_weight)
 * and transforming the folded copy, in the layout of every kernel set. */
START_TEST(weights_folded_in_one_step)
{
	const int oc = 500, c = 7, kdim = c * 9; /* rows in three groups */
	size_t nw = (size_t)oc * kdim;
	rt_rng rng;
	rt_rng_seed(&rng, 2300);
	float *w = randn(&rng, nw, 0.5f, 0), *gamma = randn(&rng, oc, 1, 0);
	float *var = randn(&rng, oc, 1, 0), *folded = fbuf(nw);
	for (int o = 0; o < oc; o++)
		var[o] = var[o] * var[o];
	rt_bn_fold_weight(oc, kdim, w, gamma, var, 1e-5f, folded);
	int nsets;
	const rt_kset *sets = rt_kset_all(&nsets);
	for (int si = 0; si < nsets; si++) {
		int mr = sets[si].mr;
		size_t np = rt_gemm_packed_a_floats(mr, oc, kdim),
		       nu = rt_winograd_weight_floats(mr, 4, oc, c);
		float *a = nanbuf(np), *b = nanbuf(np), *u = nanbuf(nu), *v = nanbuf(nu);
		rt_conv_weight_pack(mr, oc, kdim, folded, NULL, NULL, 0, a);
		rt_conv_weight_pack(mr, oc, kdim, w, gamma, var, 1e-5f, b);
		ck_assert_msg(memcmp(a, b, np * sizeof(float)) == 0,
		              "folding while packing differs (mr %d)", mr);
		for (int m = 4; m >= 2; m -= 2) {
			rt_winograd_weight(NULL, mr, m, oc, c, folded, NULL, NULL, 0, u);
			rt_winograd_weight(threads(), mr, m, oc, c, w, gamma, var, 1e-5f, v);
			ck_assert_msg(
			    memcmp(u, v, rt_winograd_weight_floats(mr, m, oc, c) * sizeof(float)) ==
			        0,
			    "folding while transforming differs (F(%dx%d, 3x3), mr %d)", m, m, mr);
		}
		free(a), free(b), free(u), free(v);
	}
	free(w), free(gamma), free(var), free(folded);
}
END_TEST

/* Training by Winograd (pad 1 only): the input gradient through the
 * transposed, flipped transform and the weight gradient by the transposed
 * algorithm, against the reference gradients; several images and tile
 * blocks (the 128-image case: a block per thread), the weight gradient
 * in chunks summed by dot products (up to 48 channels) and by the GEMM
 * (64 -> 48, two blocks a chunk), and in shared blocks (128 -> 64, two of
 * them), bit for bit the same on any thread count; and in rows of tiles
 * (28, 26, 14 and 13 wide, wino_rows), five images' rows cut into chunks,
 * one group of lanes two images' rows. */
static const struct {
	int n, c, h, w, oc;
} wgrad_shapes[] = {
    {1, 3, 4, 4, 2},       {2, 5, 9, 11, 7},   {3, 16, 7, 7, 8},     {2, 16, 6, 5, 19},
    {128, 16, 14, 14, 16}, {3, 48, 9, 9, 40},  {12, 64, 24, 24, 48}, {8, 128, 10, 10, 64},
    {5, 16, 28, 28, 16},   {2, 8, 13, 26, 24}, {5, 16, 9, 13, 8},    {4, 64, 14, 14, 64},
};

START_TEST(winograd_grads_vs_ref)
{
	rt_conv p = rt_conv_make(wgrad_shapes[_i].n, wgrad_shapes[_i].c, wgrad_shapes[_i].h,
	                         wgrad_shapes[_i].w, wgrad_shapes[_i].oc, 3, 1, 1);
	ck_assert(rt_winograd_grad_fits(&p));
	rt_conv strided = rt_conv_make(2, 4, 8, 8, 4, 3, 2, 1),
	        pad0 = rt_conv_make(2, 4, 8, 8, 4, 3, 1, 0);
	ck_assert(!rt_winograd_grad_fits(&strided) && !rt_winograd_grad_fits(&pad0));
	size_t nx = (size_t)p.n * p.c * p.h * p.w, ny = (size_t)p.n * p.oc * p.oh * p.ow;
	size_t nw = (size_t)p.oc * p.c * 9;
	rt_rng rng;
	rt_rng_seed(&rng, 2100 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.5f, 0),
	      *dy = randn(&rng, ny, 1, 0);
	float *dx_ref = fbuf(nx), *dw_ref = fbuf(nw),
	      *ut = nanbuf(rt_winograd_weight_floats(rt_gemm_mr(), 4, p.c, p.oc));
	rt_conv2d_grad_input_ref(&p, dy, w, dx_ref);
	rt_conv2d_grad_weight_ref(&p, x, dy, dw_ref, NULL);

	rt_winograd_weight_t(threads(), rt_gemm_mr(), p.oc, p.c, w, ut);
	scratch si = scratch_make(rt_winograd_grad_input_scratch_floats(&p));
	float *dx = nanbuf(nx), *dx1 = nanbuf(nx);
	rt_conv2d_grad_input_winograd(threads(), &p, dy, ut, dx, si.buf);
	scratch_check(&si, "winograd input gradient");
	expect_close("winograd input gradient", dx, dx_ref, nx, 1e-4);
	rt_conv2d_grad_input_winograd(NULL, &p, dy, ut, dx1, si.buf);
	ck_assert_msg(memcmp(dx, dx1, nx * sizeof(float)) == 0,
	              "winograd input gradient depends on the threads");

	scratch sw = scratch_make(rt_winograd_grad_weight_scratch_floats(&p));
	float *dw = nanbuf(nw), *dw1 = nanbuf(nw);
	rt_conv2d_grad_weight_winograd(threads(), &p, x, dy, dw, sw.buf);
	scratch_check(&sw, "winograd weight gradient");
	expect_close("winograd weight gradient", dw, dw_ref, nw, 1e-4);
	rt_conv2d_grad_weight_winograd(NULL, &p, x, dy, dw1, sw.buf);
	ck_assert_msg(
	    memcmp(dw, dw1, nw * sizeof(float)) == 0,
	    "winograd weight gradient depends on the threads or on its scratch's leftovers");
	free(x), free(w), free(dy), free(dx_ref), free(dw_ref), free(ut), free(si.buf), free(dx);
	free(dx1), free(sw.buf), free(dw), free(dw1);
}
END_TEST

/* The compiled max pool gives the reference's bits, NaNs included (the
 * last in scan order wins) and zeros of both signs (the first wins), on
 * any thread count: odd sizes, padding up to
 * half the window, strides 1 to 3, windows past every edge. */
START_TEST(maxpool_vs_ref)
{
	static const int shapes[][6] = {
	    /* n, c, h, w, k, stride, pad below */
	    {1, 64, 112, 112, 3, 2}, {2, 3, 7, 9, 3, 1}, {1, 5, 5, 5, 2, 2},
	    {3, 2, 11, 6, 3, 3},     {1, 1, 4, 4, 4, 1}, {2, 4, 13, 13, 5, 2},
	};
	for (int s = 0; s < 6; s++)
		for (int pad = 0; pad <= shapes[s][4] / 2; pad++) {
			rt_pool p = rt_pool_make(shapes[s][0], shapes[s][1], shapes[s][2],
			                         shapes[s][3], shapes[s][4], shapes[s][5], pad);
			size_t nx = (size_t)p.n * p.c * p.h * p.w,
			       ny = (size_t)p.n * p.c * p.oh * p.ow;
			rt_rng rng;
			rt_rng_seed(&rng, 3000 + s * 10 + pad);
			float *x = randn(&rng, nx, 1, 0), *ref = fbuf(ny), *y = nanbuf(ny),
			      *y1 = nanbuf(ny);
			for (int ties = 0; ties < 2; ties++) {
				if (ties) /* windows whose maximum is a zero of either
				           * sign, and some with two NaNs */
					for (size_t i = 0; i < nx; i++)
						x[i] = i % 7 == 0    ? 0.0f
						       : i % 7 == 3  ? -0.0f
						       : i % 11 == 0 ? (i % 22 ? NAN : -NAN)
						                     : -1 - fabsf(x[i]);
				else /* NaNs of two payloads, far apart */
					for (size_t i = 0; i < nx; i += 97)
						x[i] = i % 2 ? NAN : -NAN;
				rt_maxpool_ref(&p, x, ref);
				rt_maxpool(threads(), &p, x, y);
				rt_maxpool(NULL, &p, x, y1);
				ck_assert_msg(memcmp(y, ref, ny * sizeof(float)) == 0,
				              "maxpool differs from the reference (shape %d, pad "
				              "%d, ties %d)",
				              s, pad, ties);
				ck_assert(memcmp(y1, ref, ny * sizeof(float)) == 0);
			}
			free(x), free(ref), free(y), free(y1);
		}
}
END_TEST

/* The scratch bound follows the forward's: one block of at most 64K floats,
 * or a single column; none for 1x1 stride-1 convolutions. */
START_TEST(conv_scratch_size)
{
	rt_conv p = rt_conv_make(128, 64, 56, 56, 64, 3, 1, 1);
	ck_assert_uint_le(rt_conv2d_grad_scratch_floats(&p), 1u << 16);
	ck_assert_uint_gt(rt_conv2d_grad_scratch_floats(&p), 0);
	p = rt_conv_make(1, 1400, 5, 4, 3, 7, 2, 3);
	ck_assert_uint_eq(rt_conv2d_grad_scratch_floats(&p), 1400 * 49);
	p = rt_conv_make(2, 12, 10, 9, 20, 1, 1, 0);
	ck_assert_uint_eq(rt_conv2d_grad_scratch_floats(&p), 0);
	p = rt_conv_make(1, 3, 2, 2, 4, 3, 1, 1); /* smaller than a block */
	ck_assert_uint_eq(rt_conv2d_grad_scratch_floats(&p), 27 * 4);
}
END_TEST

/* ---- BatchNorm, bias, linear against the reference ------------------------- */

static const struct {
	int n, c, hw;
	float offset; /* the mean; a large one tests the variance's cancellation */
} bn_shapes[] = {
    {1, 3, 49, 0},     {4, 5, 37, 0},  {2, 16, 3136, 0}, {3, 7, 1300, 100},
    {16, 10, 1, 0},    {8, 9, 5, -20}, {2, 400, 6, 0}, /* more channels per task than one group
                                                          (BN_GROUP) */
    {37, 16, 196, 50}, /* images split among the tasks, sums in chunks of them */
};

START_TEST(bn_vs_ref)
{
	int n = bn_shapes[_i].n, c = bn_shapes[_i].c, hw = bn_shapes[_i].hw;
	size_t nx = (size_t)n * c * hw;
	float eps = 1e-5f;
	rt_rng rng;
	rt_rng_seed(&rng, 2000 + _i);
	float *x = randn(&rng, nx, 2, bn_shapes[_i].offset), *dy = randn(&rng, nx, 1, 0.3f);
	float *gamma = randn(&rng, c, 1, 0);
	float *stats_ref = fbuf(2 * (size_t)c), *dp_ref = fbuf(2 * (size_t)c), *dx_ref = fbuf(nx);
	rt_bn_stats_ref(n, c, hw, x, stats_ref);
	rt_bn_grad_params_ref(n, c, hw, x, dy, stats_ref, eps, dp_ref);
	rt_bn_grad_input_ref(n, c, hw, x, dy, stats_ref, gamma, dp_ref, eps, dx_ref);

	float *stats = nanbuf(2 * (size_t)c), *dp = nanbuf(2 * (size_t)c), *dx = nanbuf(nx);
	rt_bn_stats(threads(), n, c, hw, x, stats);
	expect_close("bn mean", stats, stats_ref, c, 1e-5);
	expect_close("bn var", stats + c, stats_ref + c, c, 1e-5);
	/* The gradients from the reference's statistics, so each kernel is
	 * judged on its own. */
	rt_bn_grad_params(threads(), n, c, hw, x, dy, NULL, stats_ref, eps, dp);
	expect_close("bn dgamma", dp, dp_ref, c, 1e-4);
	expect_close("bn dbeta", dp + c, dp_ref + c, c, 1e-4);
	rt_bn_grad_input(threads(), n, c, hw, x, dy, NULL, stats_ref, gamma, dp_ref, eps, dx);
	expect_close("bn dx", dx, dx_ref, nx, 1e-4);

	/* the same bits again, and on the caller's thread alone */
	float *stats2 = nanbuf(2 * (size_t)c), *dp2 = nanbuf(2 * (size_t)c), *dx2 = nanbuf(nx);
	for (int t = 0; t < 2; t++) {
		rt_threads *pool = t ? NULL : threads();
		rt_bn_stats(pool, n, c, hw, x, stats2);
		rt_bn_grad_params(pool, n, c, hw, x, dy, NULL, stats_ref, eps, dp2);
		rt_bn_grad_input(pool, n, c, hw, x, dy, NULL, stats_ref, gamma, dp_ref, eps, dx2);
		expect_same("bn stats", stats, stats2, 2 * (size_t)c);
		expect_same("bn dparams", dp, dp2, 2 * (size_t)c);
		expect_same("bn dx", dx, dx2, nx);
	}

	free(x);
	free(dy);
	free(gamma);
	free(stats_ref);
	free(dp_ref);
	free(dx_ref);
	free(stats);
	free(dp);
	free(dx);
	free(stats2);
	free(dp2);
	free(dx2);
}
END_TEST

/* A channel whose values are all equal (a dead ReLU's, or a constant
 * input) has a variance of zero up to rounding, and never a negative one. */
START_TEST(bn_stats_constant)
{
	int n = 3, c = 3, hw = 50;
	float *x = fbuf((size_t)n * c * hw), stats[6];
	for (size_t i = 0; i < (size_t)n * c * hw; i++)
		x[i] = (float)((i / hw) % c) * 1.1f;
	rt_bn_stats(threads(), n, c, hw, x, stats);
	for (int ch = 0; ch < c; ch++) {
		ck_assert_float_eq_tol(stats[ch], ch * 1.1f, 1e-6f);
		ck_assert_float_ge(stats[c + ch], 0.0f);
		ck_assert_float_le(stats[c + ch], 1e-12f);
	}
	ck_assert_float_eq(stats[0], 0.0f);
	ck_assert_float_eq(stats[c], 0.0f);
	free(x);
}
END_TEST

/* hw = 1 is the linear layers' bias, 700 channels more than one group. */
static const struct {
	int n, c, hw;
} bias_shapes[] = {{1, 3, 49}, {4, 5, 37}, {2, 16, 3136}, {128, 10, 1}, {3, 700, 1}};

START_TEST(bias_vs_ref)
{
	int n = bias_shapes[_i].n, c = bias_shapes[_i].c, hw = bias_shapes[_i].hw;
	size_t ny = (size_t)n * c * hw;
	rt_rng rng;
	rt_rng_seed(&rng, 3000 + _i);
	float *dy = randn(&rng, ny, 1, 0.2f), *ref = fbuf(c), *db = nanbuf(c), *db2 = nanbuf(c);
	if (hw == 1) {
		/* The linear reference's bias: dy is [n, out]. */
		float *x = fbuf(n), *dw = fbuf(c);
		rt_linear_grad_weight_ref(n, 1, c, x, dy, dw, ref);
		free(x);
		free(dw);
	} else {
		rt_conv p = rt_conv_make(n, 1, hw, 1, c, 1, 1, 0);
		float *x = fbuf((size_t)n * hw), *dw = fbuf(c);
		rt_conv2d_grad_weight_ref(&p, x, dy, dw, ref);
		free(x);
		free(dw);
	}
	rt_bias_grad(n, c, hw, dy, db);
	expect_close("bias", db, ref, c, 1e-5);
	rt_bias_grad(n, c, hw, dy, db2);
	expect_same("bias", db, db2, c);
	free(dy);
	free(ref);
	free(db);
	free(db2);
}
END_TEST

/* The threaded option-A shortcut (subsample, then zero channels around)
 * writes the reference's bits, every element of y (it starts as NaN). */
START_TEST(shortcut_a_vs_ref)
{
	static const int shapes[][7] = {
	    /* n, c, h, w, s, before, after */
	    {128, 16, 28, 28, 2, 8, 8},
	    {1, 3, 7, 5, 2, 1, 2},
	    {5, 4, 9, 11, 3, 0, 4},
	    {3, 2, 6, 6, 2, 2, 0},
	};
	for (int i = 0; i < 4; i++) {
		int n = shapes[i][0], c = shapes[i][1], h = shapes[i][2], w = shapes[i][3],
		    s = shapes[i][4], before = shapes[i][5], after = shapes[i][6];
		int oh = (h + s - 1) / s, ow = (w + s - 1) / s;
		size_t nx = (size_t)n * c * h * w, nsub = (size_t)n * c * oh * ow,
		       ny = (size_t)n * (c + before + after) * oh * ow;
		rt_rng rng;
		rt_rng_seed(&rng, 3200 + i);
		float *x = randn(&rng, nx, 1, 0), *sub = fbuf(nsub), *ref = nanbuf(ny),
		      *y = nanbuf(ny);
		rt_subsample_ref(n, c, h, w, s, x, sub);
		rt_pad_channels_ref(n, c, oh * ow, before, after, sub, ref);
		rt_shortcut_a(threads(), n, c, h, w, s, before, after, x, y);
		ck_assert_msg(memcmp(y, ref, ny * sizeof *y) == 0,
		              "option-A shortcut: not the reference's bits (shape %d)", i);
		free(x), free(sub), free(ref), free(y);
	}
}
END_TEST

/* The threaded option-A shortcut gradient writes the reference's bits,
 * every element of dx (it starts as NaN): odd sizes, strides 1 to 3,
 * fewer planes than threads and more. */
START_TEST(subsample_grad_vs_ref)
{
	static const int shapes[][5] = {
	    /* n, c, h, w, s */
	    {128, 16, 28, 28, 2}, {1, 1, 7, 5, 2}, {3, 5, 9, 11, 3},
	    {2, 3, 4, 6, 1},      {1, 7, 1, 9, 2},
	};
	for (int i = 0; i < 5; i++) {
		int n = shapes[i][0], c = shapes[i][1], h = shapes[i][2], w = shapes[i][3],
		    s = shapes[i][4];
		size_t nx = (size_t)n * c * h * w,
		       ny = (size_t)n * c * ((h + s - 1) / s) * ((w + s - 1) / s);
		rt_rng rng;
		rt_rng_seed(&rng, 3100 + i);
		float *dy = randn(&rng, ny, 1, 0), *ref = nanbuf(nx), *dx = nanbuf(nx);
		rt_subsample_grad_ref(n, c, h, w, s, dy, ref);
		rt_subsample_grad(threads(), n, c, h, w, s, dy, dx);
		ck_assert_msg(memcmp(dx, ref, nx * sizeof *dx) == 0,
		              "subsample gradient: not the reference's bits (shape %d)", i);
		free(dy), free(ref), free(dx);
	}
}
END_TEST

/* A relu's gradient, alone and adding the residual's (dres), against the
 * reference on the sum: the same bits, on counts that leave a tail after
 * the vectors and the threads' ranges, with both signs of zero and NaNs
 * in y, and in place (dx the same buffer as dy). */
START_TEST(relu_grad_vs_ref)
{
	static const int64_t counts[] = {1, 7, 8, 33, 16 * 1024 * 5 + 3, 128 * 16 * 28 * 28};
	for (int i = 0; i < 6; i++) {
		size_t n = (size_t)counts[i];
		rt_rng rng;
		rt_rng_seed(&rng, 3200 + i);
		float *y = randn(&rng, n, 1, 0), *dy = randn(&rng, n, 1, 0);
		float *dres = randn(&rng, n, 1, 0), *sum = fbuf(n);
		float *ref = nanbuf(n), *dx = nanbuf(n), *inplace = fbuf(n);
		for (size_t k = 0; k < n; k++) {
			y[k] = k % 11 == 3 ? -0.0f : k % 11 == 5 ? 0.0f : k % 13 == 7 ? NAN : y[k];
			sum[k] = dy[k] + dres[k];
		}
		rt_relu_grad_ref(n, y, dy, ref);
		rt_relu_grad(threads(), counts[i], y, dy, NULL, dx);
		expect_same("relu gradient", dx, ref, n);
		rt_relu_grad_ref(n, y, sum, ref);
		rt_relu_grad(threads(), counts[i], y, dy, dres, dx);
		expect_same("relu gradient with the residual's", dx, ref, n);
		memcpy(inplace, dy, n * sizeof *inplace);
		rt_relu_grad(threads(), counts[i], y, inplace, dres, inplace);
		expect_same("relu gradient in place", inplace, ref, n);
		free(y), free(dy), free(dres), free(sum), free(ref), free(dx), free(inplace);
	}
}
END_TEST

static const struct {
	int n, in, out;
} linear_shapes[] = {{1, 7, 3},   {128, 64, 10},   {5, 300, 129},
                     {33, 1, 17}, {1, 2048, 1000}, {1, 513, 20}};

/* The forward, with bias and relu: rt_linear and, from weights packed as
 * a convolution's are, rt_linear_packed, the same bits on any pool. */
START_TEST(linear_forward_vs_ref)
{
	int n = linear_shapes[_i].n, in = linear_shapes[_i].in, out = linear_shapes[_i].out;
	size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
	rt_rng rng;
	rt_rng_seed(&rng, 4100 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.5f, 0),
	      *b = randn(&rng, out, 1, 0);
	float *ref = fbuf(ny), *y = nanbuf(ny), *yp = nanbuf(ny), *yp1 = nanbuf(ny);
	float *wp = nanbuf(rt_gemm_packed_a_floats(rt_gemm_mr(), out, in));
	rt_linear_ref(n, in, out, x, w, b, ref);
	for (size_t i = 0; i < ny; i++)
		ref[i] = ref[i] < 0 ? 0.0f : ref[i];
	rt_conv_weight_pack(rt_gemm_mr(), out, in, w, NULL, NULL, 0, wp);
	rt_linear(threads(), n, in, out, x, w, b, y, 1);
	rt_linear_packed(threads(), n, in, out, x, wp, b, yp, 1);
	rt_linear_packed(NULL, n, in, out, x, wp, b, yp1, 1);
	expect_close("linear", y, ref, ny, 1e-4);
	expect_close("linear, packed weights", yp, ref, ny, 1e-4);
	expect_same("linear, packed weights, on the pool and alone", yp, yp1, ny);
	free(x), free(w), free(b), free(ref), free(y), free(yp), free(yp1), free(wp);
}
END_TEST

START_TEST(linear_vs_ref)
{
	int n = linear_shapes[_i].n, in = linear_shapes[_i].in, out = linear_shapes[_i].out;
	size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
	rt_rng rng;
	rt_rng_seed(&rng, 4000 + _i);
	float *x = randn(&rng, nx, 1, 0), *w = randn(&rng, nw, 0.5f, 0);
	float *dy = randn(&rng, ny, 1, 0);
	float *dx_ref = fbuf(nx), *dw_ref = fbuf(nw);
	rt_linear_grad_input_ref(n, in, out, dy, w, dx_ref);
	rt_linear_grad_weight_ref(n, in, out, x, dy, dw_ref, NULL);
	float *dx = nanbuf(nx), *dw = nanbuf(nw), *dx2 = nanbuf(nx), *dw2 = nanbuf(nw);
	rt_linear_grad_input(threads(), n, in, out, dy, w, dx);
	rt_linear_grad_weight(threads(), n, in, out, x, dy, dw);
	expect_close("linear dx", dx, dx_ref, nx, 1e-4);
	expect_close("linear dw", dw, dw_ref, nw, 1e-4);
	rt_linear_grad_input(NULL, n, in, out, dy, w, dx2);
	rt_linear_grad_weight(NULL, n, in, out, x, dy, dw2);
	expect_same("linear dx", dx, dx2, nx);
	expect_same("linear dw", dw, dw2, nw);
	free(x);
	free(w);
	free(dy);
	free(dx_ref);
	free(dw_ref);
	free(dx);
	free(dw);
	free(dx2);
	free(dw2);
}
END_TEST

/* ---- golden vectors ------------------------------------------------------- */

enum { GOLDEN_MAX = 16 };

typedef struct golden {
	const char *name;
	int n;
	rt_array arr[GOLDEN_MAX];
} golden;

static const rt_array *gold(golden *g, const char *name)
{
	ck_assert_int_lt(g->n, GOLDEN_MAX);
	g->arr[g->n] = test_golden(g->name, name);
	ck_assert_int_eq(g->arr[g->n].dtype, RT_DTYPE_F32);
	return &g->arr[g->n++];
}

static const float *goldf(golden *g, const char *name)
{
	return gold(g, name)->data;
}

static void golden_free(golden *g)
{
	for (int i = 0; i < g->n; i++)
		rt_array_free(&g->arr[i]);
	g->n = 0;
}

static void expect_golden(golden *g, const char *name, const float *got, size_t count, double tol)
{
	const rt_array *a = gold(g, name);
	ck_assert_msg(a->count == count, "%s/%s: %zu values, kernel made %zu", g->name, name,
	              a->count, count);
	double e = test_rel_err(got, a->data, count);
	ck_assert_msg(e < tol, "%s/%s: relative error %.3g exceeds %.1g", g->name, name, e, tol);
}

static long meta_int(const char *casename, const char *key)
{
	long v = test_golden_meta(casename, key, -1);
	ck_assert_msg(v >= 0, "%s/meta.txt: no '%s'", casename, key);
	return v;
}

/* meta.txt values that are not integers (eps, momentum), which
 * test_golden_meta would truncate. */
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
		char *q = line + strspn(line, " ");
		if (strncmp(q, key, kl) != 0)
			continue;
		q += kl;
		q += strspn(q, " ");
		if (*q == '=')
			v = strtod(q + 1, NULL);
	}
	fclose(f);
	ck_assert_msg(!isnan(v), "%s: no '%s'", path, key);
	return v;
}

static const char *conv_cases[] = {"conv_3x3_s1_p1", "conv_3x3_s2_p1", "conv_1x1_s1_bias",
                                   "conv_1x1_s2_projection", "conv_7x7_s2_p3_stem"};

START_TEST(golden_conv)
{
	golden g = {.name = conv_cases[_i]};
	const rt_array *x = gold(&g, "x"), *w = gold(&g, "w");
	ck_assert_int_eq(x->rank, 4);
	ck_assert_int_eq(w->rank, 4);
	ck_assert_int_eq(w->dims[1], x->dims[1]);
	ck_assert_int_eq(w->dims[2], meta_int(g.name, "kernel"));
	rt_conv p = rt_conv_make((int)x->dims[0], (int)x->dims[1], (int)x->dims[2], (int)x->dims[3],
	                         (int)w->dims[0], (int)w->dims[2], (int)meta_int(g.name, "stride"),
	                         (int)meta_int(g.name, "pad"));
	const rt_array *dy = gold(&g, "dy");
	ck_assert_uint_eq(dy->count, (size_t)p.n * p.oc * p.oh * p.ow);
	scratch s = scratch_make(rt_conv2d_grad_scratch_floats(&p));
	float *dx = nanbuf(x->count), *dw = nanbuf(w->count), *db = nanbuf(p.oc);

	rt_conv2d_grad_input(threads(), &p, dy->data, w->data, dx, s.buf,
	                     rt_conv2d_grad_input_algo(&p));
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	scratch sw = scratch_make(rt_conv2d_grad_weight_scratch_floats(&p));
	rt_conv2d_grad_weight(threads(), &p, x->data, dy->data, dw, sw.buf,
	                      rt_conv2d_grad_weight_algo(&p));
	scratch_check(&sw, g.name);
	expect_golden(&g, "dw", dw, w->count, 1e-4);
	scratch_check(&s, g.name);
	if (meta_int(g.name, "bias")) {
		rt_bias_grad(p.n, p.oc, p.oh * p.ow, dy->data, db);
		expect_golden(&g, "db", db, (size_t)p.oc, 1e-4);
	}
	free(s.buf);
	free(sw.buf);
	free(dx);
	free(dw);
	free(db);
	golden_free(&g);
}
END_TEST

START_TEST(golden_batchnorm_train)
{
	golden g = {.name = "batchnorm_train"};
	const rt_array *x = gold(&g, "x");
	ck_assert_int_eq(x->rank, 4);
	int n = (int)x->dims[0], c = (int)x->dims[1], hw = (int)(x->dims[2] * x->dims[3]);
	const float *gamma = goldf(&g, "gamma"), *beta = goldf(&g, "beta");
	ck_assert_int_eq(meta_int(g.name, "training"), 1);
	float eps = (float)meta_double(g.name, "eps");
	float momentum = (float)meta_double(g.name, "momentum");
	float *stats = nanbuf(2 * (size_t)c), *y = nanbuf(x->count), *dx = nanbuf(x->count);
	float *dparams = nanbuf(2 * (size_t)c);

	/* The statistics have no golden file of their own: they are judged
	 * through the forward output and the running buffers they produce. */
	rt_bn_stats(threads(), n, c, hw, x->data, stats);
	rt_batchnorm_ref(n, c, hw, x->data, stats, stats + c, gamma, beta, eps, y);
	expect_golden(&g, "y", y, x->count, 1e-5);
	float *rm = fbuf(c), *rv = fbuf(c);
	memcpy(rm, goldf(&g, "running_mean"), (size_t)c * sizeof *rm);
	memcpy(rv, goldf(&g, "running_var"), (size_t)c * sizeof *rv);
	rt_bn_running_update_ref(c, n * hw, momentum, stats, rm, rv);
	expect_golden(&g, "running_mean_after", rm, c, 1e-5);
	expect_golden(&g, "running_var_after", rv, c, 1e-5);

	const float *dy = goldf(&g, "dy");
	rt_bn_grad_params(threads(), n, c, hw, x->data, dy, NULL, stats, eps, dparams);
	expect_golden(&g, "dgamma", dparams, c, 1e-4);
	expect_golden(&g, "dbeta", dparams + c, c, 1e-4);
	rt_bn_grad_input(threads(), n, c, hw, x->data, dy, NULL, stats, gamma, dparams, eps, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);

	/* A relu's gradient fused in (relu_y): the bits of the gradient
	 * stored first (rt_relu_grad_ref) and passed as dy, on a relu_y that
	 * holds both signs of zero and NaNs. */
	float *ry = nanbuf(x->count), *dz = nanbuf(x->count), *dx1 = nanbuf(x->count);
	float *dp1 = nanbuf(2 * (size_t)c);
	for (size_t i = 0; i < x->count; i++)
		ry[i] = i % 11 == 3 ? -0.0f : i % 11 == 5 ? 0.0f : i % 13 == 7 ? NAN : y[i];
	rt_relu_grad_ref(x->count, ry, dy, dz);
	rt_bn_grad_params(threads(), n, c, hw, x->data, dz, NULL, stats, eps, dparams);
	rt_bn_grad_params(threads(), n, c, hw, x->data, dy, ry, stats, eps, dp1);
	ck_assert_msg(memcmp(dparams, dp1, 2 * (size_t)c * sizeof(float)) == 0,
	              "bn_grad_params with a relu fused in differs from the relu's gradient first");
	rt_bn_grad_input(threads(), n, c, hw, x->data, dz, NULL, stats, gamma, dparams, eps, dx);
	rt_bn_grad_input(threads(), n, c, hw, x->data, dy, ry, stats, gamma, dparams, eps, dx1);
	ck_assert_msg(memcmp(dx, dx1, x->count * sizeof(float)) == 0,
	              "bn_grad_input with a relu fused in differs from the relu's gradient first");
	free(ry);
	free(dz);
	free(dx1);
	free(dp1);
	free(stats);
	free(y);
	free(dx);
	free(dparams);
	free(rm);
	free(rv);
	golden_free(&g);
}
END_TEST

START_TEST(golden_dense)
{
	golden g = {.name = "dense"};
	const rt_array *x = gold(&g, "x"), *w = gold(&g, "w");
	ck_assert_int_eq(x->rank, 2);
	int n = (int)x->dims[0], in = (int)x->dims[1], out = (int)w->dims[0];
	ck_assert_int_eq(w->dims[1], in);
	const float *dy = goldf(&g, "dy");
	float *dx = nanbuf(x->count), *dw = nanbuf(w->count), *db = nanbuf(out);
	rt_linear_grad_input(threads(), n, in, out, dy, w->data, dx);
	expect_golden(&g, "dx", dx, x->count, 1e-4);
	rt_linear_grad_weight(threads(), n, in, out, x->data, dy, dw);
	expect_golden(&g, "dw", dw, w->count, 1e-4);
	rt_bias_grad(n, out, 1, dy, db);
	expect_golden(&g, "db", db, out, 1e-4);
	free(dx);
	free(dw);
	free(db);
	golden_free(&g);
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *suite(void)
{
	Suite *s = suite_create("kernels_train");
	TCase *tc = tcase_create("vs_reference");
	/* The 56x56 layer's reference passes take a few seconds. */
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, conv_vs_ref, 0, COUNT(conv_geoms));
	tcase_add_test(tc, conv_scratch_size);
	tcase_add_loop_test(tc, conv_direct_vs_ref, 0, COUNT(direct_shapes));
	tcase_add_loop_test(tc, conv_direct_prepared_vs_ref, 0, COUNT(prepared_shapes));
	tcase_add_loop_test(tc, winograd_vs_ref, 0, COUNT(wino_shapes));
	tcase_add_loop_test(tc, winograd_grads_vs_ref, 0, COUNT(wgrad_shapes));
	tcase_add_test(tc, weights_folded_in_one_step);
	tcase_add_test(tc, maxpool_vs_ref);
	tcase_add_loop_test(tc, bn_vs_ref, 0, COUNT(bn_shapes));
	tcase_add_test(tc, bn_stats_constant);
	tcase_add_loop_test(tc, bias_vs_ref, 0, COUNT(bias_shapes));
	tcase_add_test(tc, subsample_grad_vs_ref);
	tcase_add_test(tc, relu_grad_vs_ref);
	tcase_add_test(tc, shortcut_a_vs_ref);
	tcase_add_loop_test(tc, linear_vs_ref, 0, COUNT(linear_shapes));
	tcase_add_loop_test(tc, linear_forward_vs_ref, 0, COUNT(linear_shapes));
	suite_add_tcase(s, tc);

	tc = tcase_create("golden");
	tcase_add_loop_test(tc, golden_conv, 0, COUNT(conv_cases));
	tcase_add_test(tc, golden_batchnorm_train);
	tcase_add_test(tc, golden_dense);
	suite_add_tcase(s, tc);
	return s;
}

TEST_MAIN(suite)
