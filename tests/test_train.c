/* Training: the autodiff pass's gradients against PyTorch's (the golden
 * blocks) and against finite differences, the compiled training step
 * against the reference executor, and whole runs that must learn,
 * deterministically, and resume exactly. */
#include <unistd.h>

#include "backend.h"
#include "frontend.h"
#include "passes.h"
#include "testutil.h"

static ir_graph *parse(const char *text, int64_t batch)
{
	ir_graph *g = frontend_graph_parse("t.nn", text, strlen(text), batch);
	ck_assert_msg(g != NULL, "does not parse:\n%s", text);
	return g;
}

static ir_graph *load_block(const char *casename, int64_t batch)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/tests/blocks/%s.nn", test_env("NETCC_ROOT", "."), casename);
	ir_graph *g = frontend_graph_load(path, batch);
	ck_assert_msg(g != NULL, "%s does not load", path);
	return g;
}

/* Golden files are named after the param with '.' as '_'. */
static void golden_name(const char *param, char *out, size_t len)
{
	snprintf(out, len, "%s", param);
	for (char *c = out; *c; c++)
		if (*c == '.')
			*c = '_';
}

static void attach_golden(ir_graph *g, const char *casename)
{
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		char file[256];
		golden_name(p->name, file, sizeof file);
		rt_array a = test_golden(casename, file);
		ck_assert_int_eq((int64_t)a.count, ir_shape_count(&p->shape));
		p->data = arena_array(&g->arena, a.count, sizeof(float));
		memcpy(p->data, a.data, a.count * sizeof(float));
		rt_array_free(&a);
	}
}

/* ---- golden blocks ----------------------------------------------------------- */

static void check_block_train(const char *casename)
{
	rt_array x = test_golden(casename, "x"), dy = test_golden(casename, "dy");
	ir_graph *g = load_block(casename, x.dims[0]);
	attach_golden(g, casename);
	int *gn;
	int64_t *go;
	autodiff_gradients(g, &gn, &go);
	ir_graph_verify(g);
	const float *in[2] = {x.data, dy.data};
	interp_values v;
	char err[256];
	ck_assert_msg(interp_run_all(g, in, &v, err, sizeof err) == 0, "%s", err);

	rt_array want = test_golden(casename, "y_train");
	ck_assert_close(v.value[g->outputs[0].node], want.data, want.count, 1e-5);
	rt_array_free(&want);

	want = test_golden(casename, "dx");
	int xid = g->inputs[0].node;
	ck_assert_int_ge(gn[xid], 0);
	ck_assert_close(v.value[gn[xid]], want.data, want.count, 1e-4);
	rt_array_free(&want);

	int checked = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		char file[300], base[256];
		golden_name(p->name, base, sizeof base);
		if (p->pkind != IR_PARAM_WEIGHT)
			continue;
		snprintf(file, sizeof file, "d_%s", base);
		want = test_golden(casename, file);
		ck_assert_msg(gn[i] >= 0, "no gradient for %s", p->name);
		ck_assert_close(v.value[gn[i]] + go[i], want.data, want.count, 1e-4);
		rt_array_free(&want);
		checked++;
	}
	ck_assert_int_ge(checked, 6);
	interp_values_free(&v);
	free(gn);
	free(go);
	rt_array_free(&x);
	rt_array_free(&dy);
	ir_graph_free(g);
}

START_TEST(basic_identity_train)
{
	check_block_train("block_basic_identity");
}
END_TEST

START_TEST(basic_projection_train)
{
	check_block_train("block_basic_projection");
}
END_TEST

START_TEST(bottleneck_projection_train)
{
	check_block_train("block_bottleneck_projection");
}
END_TEST

/* One BatchNorm in training mode through the graph: output, gradients, and
 * the running statistics it moved (PyTorch's momentum and unbiased variance). */
START_TEST(batchnorm_train_step)
{
	const char *c = "batchnorm_train";
	rt_array x = test_golden(c, "x"), dy = test_golden(c, "dy");
	char text[256];
	snprintf(
	    text, sizeof text,
	    "version 1\nmodel m(x: f32[N, %lld, %lld, %lld]) -> (y: f32[N, %lld, %lld, %lld])\n"
	    "graph { y = batchnorm(x) }\n",
	    (long long)x.dims[1], (long long)x.dims[2], (long long)x.dims[3], (long long)x.dims[1],
	    (long long)x.dims[2], (long long)x.dims[3]);
	ir_graph *g = parse(text, x.dims[0]);
	static const char *const files[] = {"gamma", "beta", "running_mean", "running_var"};
	int k = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM) {
			rt_array a = test_golden(c, files[k++]);
			g->nodes[i].data = arena_array(&g->arena, a.count, sizeof(float));
			memcpy(g->nodes[i].data, a.data, a.count * sizeof(float));
			rt_array_free(&a);
		}
	int *gn;
	int64_t *go;
	autodiff_gradients(g, &gn, &go);
	const float *in[2] = {x.data, dy.data};
	interp_values v;
	char err[256];
	ck_assert_msg(interp_run_all(g, in, &v, err, sizeof err) == 0, "%s", err);
	static const char *const want_files[] = {"dgamma", "dbeta", "running_mean_after",
	                                         "running_var_after"};
	k = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i].op != IR_OP_PARAM)
			continue;
		rt_array want = test_golden(c, want_files[k]);
		const float *got = k < 2 ? v.value[gn[i]] + go[i] : g->nodes[i].data;
		ck_assert_close(got, want.data, want.count, k < 2 ? 1e-4 : 1e-5);
		rt_array_free(&want);
		k++;
	}
	ck_assert_int_eq(k, 4);
	rt_array want = test_golden(c, "y");
	ck_assert_close(v.value[g->outputs[0].node], want.data, want.count, 1e-5);
	rt_array_free(&want);
	want = test_golden(c, "dx");
	ck_assert_close(v.value[gn[g->inputs[0].node]], want.data, want.count, 1e-4);
	rt_array_free(&want);
	interp_values_free(&v);
	free(gn), free(go);
	rt_array_free(&x), rt_array_free(&dy);
	ir_graph_free(g);
}
END_TEST

/* ---- finite differences --------------------------------------------------- */

/* A model using every operator, small enough for central differences on
 * every parameter in float32. Inputs avoid relu and maxpool kinks by
 * construction only statistically; the tolerance is set for that. */
static const char *const every_op = "version 1\nmodel m(x: f32[N, 3, 6, 6]) -> (y: f32[N, 5])\n"
                                    "graph {\n"
                                    "  a = relu(batchnorm(conv(x, 4, 3, 1, 1)))\n"
                                    "  b = conv(a, 4, 3, 1, 1, bias = false) + a\n"
                                    "  c = pad_channels(subsample(b, 2), 2, 2)\n"
                                    "  d = conv(b, 8, 1, 2) + c\n"
                                    "  e = maxpool(d, 2, 1)\n"
                                    "  f = avgpool(e, 2, 1)\n"
                                    "  g = flatten(global_avgpool(f)) + flatten(avgpool(f, 1, 2))\n"
                                    "  h = batchnorm(linear(g, 6))\n"
                                    "  y = linear(softmax(h), 5)\n"
                                    "}\n";

static double objective(const ir_graph *g, const float *const *in, const float *r, size_t n)
{
	interp_values v;
	char err[256];
	ck_assert_msg(interp_run_all(g, in, &v, err, sizeof err) == 0, "%s", err);
	const float *y = v.value[g->outputs[0].node];
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)y[i] * r[i];
	interp_values_free(&v);
	return s;
}

static double central(const ir_graph *g, const float *const *in, const float *r, size_t ny,
                      float *v, float h)
{
	float keep = *v;
	*v = keep + h;
	double up = objective(g, in, r, ny);
	*v = keep - h;
	double down = objective(g, in, r, ny);
	*v = keep;
	return (up - down) / (2 * h);
}

START_TEST(finite_differences_every_operator)
{
	ir_graph *g = parse(every_op, 3);
	ck_assert_int_eq(g->nodes[g->outputs[0].node].shape.d[1], 5);
	ir_graph_init_he(g, 7);
	int *gn;
	int64_t *go;
	autodiff_gradients(g, &gn, &go);
	size_t ny = (size_t)ir_shape_count(&g->nodes[g->outputs[0].node].shape);
	size_t nx = (size_t)ir_shape_count(&g->nodes[g->inputs[0].node].shape);
	float *x = malloc(nx * sizeof(float)), *r = malloc(ny * sizeof(float));
	rt_rng rng;
	rt_rng_seed(&rng, 3);
	for (size_t i = 0; i < nx; i++)
		x[i] = rt_rng_normal(&rng);
	for (size_t i = 0; i < ny; i++)
		r[i] = rt_rng_normal(&rng);
	const float *in[2] = {x, r};
	interp_values v;
	char err[256];
	ck_assert_msg(interp_run_all(g, in, &v, err, sizeof err) == 0, "%s", err);

	/* every trained param and the input, a few coordinates each */
	int checked = 0;
	for (int id = 0; id < g->n_nodes; id++) {
		ir_node *p = &g->nodes[id];
		float *data = p->op == IR_OP_INPUT && id == g->inputs[0].node       ? x
		              : p->op == IR_OP_PARAM && p->pkind == IR_PARAM_WEIGHT ? p->data
		                                                                    : NULL;
		if (!data)
			continue;
		ck_assert_msg(gn[id] >= 0, "no gradient for %s", p->name);
		const float *grad = v.value[gn[id]] + go[id];
		int64_t count = ir_shape_count(&p->shape);
		for (int t = 0; t < 6; t++) {
			int64_t k = (int64_t)(rt_rng_next(&rng) % (uint64_t)count);
			/* Small steps: a bias moves a whole channel, so larger ones cross
			 * relu and maxpool kinks. Where differences still disagree between
			 * step sizes a kink is inside the step: nothing to compare there. */
			double fd = central(g, in, r, ny, data + k, 1e-3f);
			if (fabs(fd - central(g, in, r, ny, data + k, 5e-4f)) >
			    1e-2 * fmax(1.0, fabs(fd)))
				continue;
			double an = grad[k], tol = 2e-2 * fmax(1.0, fabs(fd));
			ck_assert_msg(fabs(fd - an) < tol,
			              "%s[%lld]: finite difference %g, autodiff %g", p->name,
			              (long long)k, fd, an);
			checked++;
		}
	}
	ck_assert_int_ge(checked, 4 * 12); /* of 6 * 13 tried */
	interp_values_free(&v);
	free(x), free(r), free(gn), free(go);
	ir_graph_free(g);
}
END_TEST

/* ---- the compiled training step -------------------------------------------- */

static const char *const tiny =
    "version 1\nmodel tiny(x: f32[N, 1, 8, 8]) -> (y: f32[N, 3])\n"
    "block cbr(x, c, s = 1) -> y { y = relu(batchnorm(conv(x, c, 3, s, 1, bias = false))) }\n"
    "graph {\n"
    "  h = cbr(x, 16)\n"
    "  h = relu(cbr(h, 16) + h)\n"
    "  h = cbr(h, 16, 2)\n"
    "  y = linear(flatten(global_avgpool(h)), 3)\n"
    "}\n";

/* tiny with two basic blocks whose residual is added after the BatchNorm
 * (conv, bn, relu, conv, bn, + x, relu), as ResNet's: the compiled step
 * adds it in bn_train, takes the inner relu's gradient into BatchNorm's,
 * and the first block's output relu adds its two gradients as it reads
 * them (fuse_epilogue). */
static const char *const tiny_block =
    "version 1\nmodel tiny(x: f32[N, 1, 8, 8]) -> (y: f32[N, 3])\n"
    "block cbr(x, c, s = 1) -> y { y = relu(batchnorm(conv(x, c, 3, s, 1, bias = false))) }\n"
    "block basic(x, c) -> y {\n"
    "  y = relu(batchnorm(conv(cbr(x, c), c, 3, 1, 1, bias = false)) + x)\n"
    "}\n"
    "graph {\n"
    "  h = basic(basic(cbr(x, 16), 16), 16)\n"
    "  h = cbr(h, 16, 2)\n"
    "  y = linear(flatten(global_avgpool(h)), 3)\n"
    "}\n";

/* A learnable toy problem: the class is which third of the image is bright. */
static void toy_batch(rt_rng *r, int n, float *x, int32_t *labels)
{
	for (int i = 0; i < n; i++) {
		int c = (int)(rt_rng_next(r) % 3);
		labels[i] = c;
		for (int p = 0; p < 64; p++) {
			int col = p % 8;
			float bright = col / 3 == c ? 1.0f : 0.0f;
			x[i * 64 + p] = bright + 0.3f * rt_rng_normal(r);
		}
	}
}

static train_session *model_session(const char *text, uint64_t seed, int batch)
{
	ir_graph *t = parse(text, batch), *e = parse(text, batch);
	ir_graph_init_he(t, seed);
	ir_graph_init_he(e, seed);
	char err[256];
	backend_target native;
	ck_assert_msg(backend_target_get("native", &native, err, sizeof err) == 0, "%s", err);
	train_session *s = train_session_create(t, e, &native, err, sizeof err);
	ck_assert_msg(s != NULL, "%s", err);
	return s;
}

static train_session *session(uint64_t seed, int batch)
{
	return model_session(tiny, seed, batch);
}

START_TEST(compiled_step_matches_reference)
{
	int batch = 4;
	const char *text = _i ? tiny_block : tiny;
	/* the reference: the same training graph through the reference executor */
	ir_graph *ref = parse(text, batch);
	ir_graph_init_he(ref, 5);
	autodiff_training_graph(ref);
	train_session *s = model_session(text, 5, batch);
	rt_rng r;
	rt_rng_seed(&r, 9);
	float x[4 * 64], logits[4 * 3], ref_logits[4 * 3], loss, ref_loss, lr = 0.05f;
	int32_t labels[4];
	char err[256];
	for (int step = 0; step < 3; step++) {
		toy_batch(&r, batch, x, labels);
		ck_assert_int_eq(
		    train_session_step(s, x, labels, lr, &loss, logits, err, sizeof err), 0);
		const float *in[3] = {x, (const float *)labels, &lr};
		float *out[2] = {&ref_loss, ref_logits};
		ck_assert_msg(interp_run(ref, in, out, err, sizeof err) == 0, "%s", err);
		ck_assert_close(logits, ref_logits, 12, 1e-4);
		ck_assert_float_eq_tol(loss, ref_loss, 1e-4f * fabsf(ref_loss) + 1e-6f);
	}
	/* after three updates the weights still agree */
	const ir_graph *tg = train_session_graph(s);
	char path[] = "/tmp/netcc_train_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(train_session_save(s, path, NULL, 0, err, sizeof err), 0);
	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, err, sizeof err) == 0, "%s", err);
	int compared = 0;
	for (int i = 0; i < ref->n_nodes; i++) {
		const ir_node *p = &ref->nodes[i];
		if (p->op != IR_OP_PARAM || !p->data)
			continue;
		const rt_st_tensor *t = rt_st_find(&f, p->name);
		ck_assert_msg(t != NULL, "%s not saved", p->name);
		ck_assert_close((const float *)t->data, p->data, t->count, 1e-4);
		compared++;
	}
	ck_assert_int_ge(compared, 15);
	/* the compiled step ran its 16-channel layers by Winograd, all three
	 * ways; tiny_block's residuals joined their BatchNorms, and one relu's
	 * gradient its sum */
	int wino = 0, bn_residual = 0, grad_sums = 0;
	for (int i = 0; i < tg->n_nodes; i++) {
		wino += tg->nodes[i].algo == IR_ALGO_WINOGRAD;
		bn_residual += tg->nodes[i].op == IR_OP_BN_TRAIN && tg->nodes[i].residual;
		grad_sums += tg->nodes[i].op == IR_OP_RELU_GRAD && tg->nodes[i].residual;
	}
	ck_assert_int_eq(wino, _i ? 12 : 3);
	ck_assert_int_eq(bn_residual, _i ? 2 : 0);
	ck_assert_int_eq(grad_sums, _i ? 1 : 0);
	rt_st_free(&f);
	unlink(path);
	train_session_free(s);
	ir_graph_free(ref);
}
END_TEST

START_TEST(loss_goes_down_deterministically)
{
	float first[2] = {0}, last[2] = {0};
	float final_logits[2][8 * 3];
	for (int run = 0; run < 2; run++) {
		train_session *s = session(11, 8);
		rt_rng r;
		rt_rng_seed(&r, 21);
		float x[8 * 64], logits[8 * 3], loss;
		int32_t labels[8];
		char err[256];
		for (int step = 0; step < 60; step++) {
			toy_batch(&r, 8, x, labels);
			ck_assert_int_eq(
			    train_session_step(s, x, labels, 0.05f, &loss, logits, err, sizeof err),
			    0);
			if (step < 5)
				first[run] += loss / 5;
			if (step >= 55)
				last[run] += loss / 5;
		}
		/* evaluation on fresh examples: the running statistics work */
		toy_batch(&r, 8, x, labels);
		train_session_eval(s, x, final_logits[run]);
		int right = 0;
		for (int i = 0; i < 8; i++) {
			int best = 0;
			for (int c = 1; c < 3; c++)
				if (final_logits[run][i * 3 + c] > final_logits[run][i * 3 + best])
					best = c;
			right += best == labels[i];
		}
		ck_assert_int_ge(right, 6);
		train_session_free(s);
	}
	ck_assert_float_lt(last[0], 0.5f * first[0]);
	ck_assert(memcmp(&first[0], &first[1], sizeof(float)) == 0);
	ck_assert(memcmp(&last[0], &last[1], sizeof(float)) == 0);
	ck_assert(memcmp(final_logits[0], final_logits[1], sizeof final_logits[0]) == 0);
}
END_TEST

START_TEST(resume_is_exact)
{
	char path[] = "/tmp/netcc_resume_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	char err[256];
	float x[8 * 64], logits[8 * 3], loss, a[8 * 3], b[8 * 3];
	int32_t labels[8];
	/* straight through: 20 steps */
	train_session *s = session(13, 8);
	rt_rng r;
	rt_rng_seed(&r, 5);
	for (int step = 0; step < 20; step++) {
		toy_batch(&r, 8, x, labels);
		train_session_step(s, x, labels, 0.05f, &loss, logits, err, sizeof err);
		if (step == 9)
			ck_assert_int_eq(train_session_save(s, path, NULL, 0, err, sizeof err), 0);
	}
	rt_rng probe;
	rt_rng_seed(&probe, 77);
	toy_batch(&probe, 8, x, labels);
	train_session_eval(s, x, a);
	train_session_free(s);
	/* from the checkpoint after step 10, into a session with other weights */
	s = session(99, 8);
	rt_st_file f;
	ck_assert_int_eq(rt_st_read(path, &f, err, sizeof err), 0);
	ck_assert_msg(train_session_load(s, &f, true, err, sizeof err) == 0, "%s", err);
	rt_st_free(&f);
	rt_rng_seed(&r, 5);
	for (int step = 0; step < 20; step++) {
		toy_batch(&r, 8, x, labels);
		if (step >= 10)
			train_session_step(s, x, labels, 0.05f, &loss, logits, err, sizeof err);
	}
	rt_rng_seed(&probe, 77);
	toy_batch(&probe, 8, x, labels);
	train_session_eval(s, x, b);
	ck_assert(memcmp(a, b, sizeof a) == 0);
	train_session_free(s);
	unlink(path);
}
END_TEST

START_TEST(bad_labels_and_checkpoints_refused)
{
	train_session *s = session(1, 4);
	float x[4 * 64] = {0}, logits[12], loss;
	int32_t labels[4] = {0, 1, 3, 2};
	char err[256];
	ck_assert_int_ne(train_session_step(s, x, labels, 0.1f, &loss, logits, err, sizeof err), 0);
	ck_assert_ptr_nonnull(strstr(err, "label 3 of example 2"));
	/* a checkpoint of another model */
	char path[] = "/tmp/netcc_badck_XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	float w = 1;
	int64_t dims[1] = {1};
	rt_st_entry e = {"cbr0.conv0.weight", RT_DTYPE_F32, 1, dims, &w};
	ck_assert_int_eq(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err), 0);
	rt_st_file f;
	ck_assert_int_eq(rt_st_read(path, &f, err, sizeof err), 0);
	ck_assert_int_ne(train_session_load(s, &f, false, err, sizeof err), 0);
	ck_assert_ptr_nonnull(strstr(err, "cbr0.conv0.weight"));
	rt_st_free(&f);
	unlink(path);
	train_session_free(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("train");
	TCase *t = tcase_create("train");
	tcase_set_timeout(t, 300);
	tcase_add_test(t, basic_identity_train);
	tcase_add_test(t, basic_projection_train);
	tcase_add_test(t, bottleneck_projection_train);
	tcase_add_test(t, batchnorm_train_step);
	tcase_add_test(t, finite_differences_every_operator);
	tcase_add_loop_test(t, compiled_step_matches_reference, 0, 2);
	tcase_add_test(t, loss_goes_down_deterministically);
	tcase_add_test(t, resume_is_exact);
	tcase_add_test(t, bad_labels_and_checkpoints_refused);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
