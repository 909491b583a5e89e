/* The optimisation passes: what each folds or fuses and what it must leave
 * alone, that the numbers never change, and that the memory plan never
 * lets two live values share bytes. */
#include "backend.h"
#include "frontend.h"
#include "passes.h"
#include "testutil.h"

/* Winograd's output tile where a node runs by it, else 0 */
static int wino(const ir_node *n)
{
	return n->algo == IR_ALGO_WINOGRAD ? (int)n->tile : 0;
}

static ir_graph *parse(const char *text, int64_t batch)
{
	ir_graph *g = frontend_graph_parse("t.nn", text, strlen(text), batch);
	ck_assert_msg(g != NULL, "does not parse:\n%s", text);
	return g;
}

static ir_graph *load_model(const char *name, int64_t batch)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/models/%s.nn", test_env("NETCC_ROOT", "."), name);
	ir_graph *g = frontend_graph_load(path, batch);
	ck_assert_msg(g != NULL, "%s does not load", path);
	return g;
}

static int count(const ir_graph *g, ir_op op)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == op;
	return n;
}

/* Executed nodes: what the compiled forward function runs. */
static int executed(const ir_graph *g)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += !g->nodes[i].prep && g->nodes[i].op != IR_OP_INPUT;
	return n;
}

/* He weights, then BatchNorm made non-trivial so folding changes numbers. */
static void random_weights(ir_graph *g, uint64_t seed)
{
	ir_graph_init_he(g, seed);
	rt_rng r;
	rt_rng_seed(&r, seed + 1);
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_BATCHNORM)
			continue;
		int64_t c = g->nodes[n->in[1]].shape.d[0];
		for (int64_t k = 0; k < c; k++) {
			g->nodes[n->in[1]].data[k] = 0.5f + rt_rng_uniform(&r);
			g->nodes[n->in[2]].data[k] = 0.2f * rt_rng_normal(&r);
			g->nodes[n->in[3]].data[k] = 0.5f * rt_rng_normal(&r);
			g->nodes[n->in[4]].data[k] = 0.5f + 1.5f * rt_rng_uniform(&r);
		}
	}
}

static float *random_input(const ir_graph *g, uint64_t seed)
{
	const ir_node *x = &g->nodes[g->inputs[0].node];
	size_t n = (size_t)ir_shape_count(&x->shape);
	float *v = malloc(n * sizeof(float));
	rt_rng r;
	rt_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++)
		v[i] = rt_rng_normal(&r);
	return v;
}

static float *interp_output(const ir_graph *g, const float *x)
{
	size_t n = (size_t)ir_shape_count(&g->nodes[g->outputs[0].node].shape);
	float *y = malloc(n * sizeof(float));
	char err[256];
	ck_assert_msg(interp_run(g, &x, &y, err, sizeof err) == 0, "%s", err);
	return y;
}

/* ---- the plan's invariant --------------------------------------------------- */

typedef struct live {
	int64_t off, size;
	int from, to; /* steps, inclusive */
	int node;     /* value, or -1 - node for a node's scratch */
} live;

static bool declared_inplace(const ir_node *n, int input)
{
	switch (n->op) {
	case IR_OP_RELU:
	case IR_OP_BATCHNORM:
	case IR_OP_FLATTEN:
	case IR_OP_ALLREDUCE:
		return n->in[0] == input;
	case IR_OP_ADD:
		return n->in[0] == input || n->in[1] == input;
	case IR_OP_CONV:
		return n->residual && n->in[n->residual] == input;
	default:
		return false;
	}
}

/* No two values (or scratch regions) live at the same step share a byte,
 * except a node overwriting an input that dies at it, which it may. */
static void check_plan(const ir_graph *g)
{
	int n = g->n_nodes, k = 0;
	live *v = calloc((size_t)(2 * n + 1), sizeof *v);
	for (int i = 0; i < n; i++) {
		const ir_node *x = &g->nodes[i];
		if (x->prep || x->op == IR_OP_INPUT)
			continue;
		if (x->scratch_bytes)
			v[k++] = (live){x->scratch, x->scratch_bytes, i, i, -1 - i};
		if (x->mem != IR_MEM_ARENA)
			continue;
		ck_assert_int_ge(x->offset, 0);
		ck_assert_int_le(x->offset + ir_shape_count(&x->shape) * 4, g->plan.arena_bytes);
		int last = i;
		for (int j = i + 1; j < n; j++)
			for (int q = 0; q < g->nodes[j].n_in; q++)
				if (g->nodes[j].in[q] == i && !g->nodes[j].prep)
					last = j;
		v[k++] = (live){x->offset, ir_shape_count(&x->shape) * 4, i, last, i};
	}
	for (int a = 0; a < k; a++) {
		ck_assert_int_le(v[a].off + v[a].size, g->plan.arena_bytes);
		for (int b = a + 1; b < k; b++) {
			bool time = v[a].from <= v[b].to && v[b].from <= v[a].to;
			bool space =
			    v[a].off < v[b].off + v[b].size && v[b].off < v[a].off + v[a].size;
			if (!time || !space)
				continue;
			/* the one allowed overlap: b made at a's last use, in place over a */
			bool ok = v[a].node >= 0 && v[b].node >= 0 && v[a].to == v[b].from &&
			          declared_inplace(&g->nodes[v[b].node], v[a].node) &&
			          v[a].off == v[b].off;
			ck_assert_msg(
			    ok,
			    "%%%d [%lld,+%lld) steps %d-%d overlaps %%%d [%lld,+%lld) steps %d-%d",
			    v[a].node, (long long)v[a].off, (long long)v[a].size, v[a].from,
			    v[a].to, v[b].node, (long long)v[b].off, (long long)v[b].size,
			    v[b].from, v[b].to);
		}
	}
	free(v);
}

/* ---- folding -------------------------------------------------------------- */

#define SMALL "version 1\nmodel m(x: f32[N, 4, 8, 8]) -> (y: f32[N, 6, 8, 8])\n"

START_TEST(fold_conv_batchnorm)
{
	ir_graph *g =
	    parse(SMALL "graph { y = batchnorm(conv(x, 6, 3, pad = 1, bias = false)) }\n", 2);
	random_weights(g, 1);
	float *x = random_input(g, 2), *want = interp_output(g, x);
	fold_batchnorm(g);
	ir_graph_verify(g);
	ck_assert_int_eq(count(g, IR_OP_BATCHNORM), 0);
	ck_assert_int_eq(count(g, IR_OP_BN_FOLD_WEIGHT), 1);
	ck_assert_int_eq(count(g, IR_OP_BN_FOLD_BIAS), 1);
	const ir_node *y = &g->nodes[g->outputs[0].node];
	ck_assert_int_eq(y->op, IR_OP_CONV);
	ck_assert(y->bias);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 2 * 6 * 8 * 8, 1e-5);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

START_TEST(fold_keeps_conv_bias)
{
	ir_graph *g = parse(SMALL "graph { y = relu(batchnorm(conv(x, 6, 3, pad = 1))) }\n", 1);
	random_weights(g, 3);
	/* a non-zero bias, so b' really depends on it */
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM && strstr(g->nodes[i].name, "conv0.bias"))
			for (int k = 0; k < 6; k++)
				g->nodes[i].data[k] = 0.3f * (float)k - 0.7f;
	float *x = random_input(g, 4), *want = interp_output(g, x);
	passes_run(g, &(passes_options){.opt_level = 2});
	ck_assert_int_eq(executed(g), 1);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 6 * 8 * 8, 1e-5);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

START_TEST(fold_leaves_shared_conv)
{
	/* the conv's raw result is also read by the add: it must stay unfolded */
	ir_graph *g =
	    parse(SMALL "graph { h = conv(x, 6, 3, pad = 1)\n y = batchnorm(h) + h }\n", 1);
	random_weights(g, 5);
	float *x = random_input(g, 6), *want = interp_output(g, x);
	fold_batchnorm(g);
	ir_graph_verify(g);
	ck_assert_int_eq(count(g, IR_OP_BATCHNORM), 1);
	ck_assert_int_eq(count(g, IR_OP_BN_FOLD_WEIGHT), 0);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 6 * 8 * 8, 1e-6);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

START_TEST(fold_linear_batchnorm)
{
	ir_graph *g = parse("version 1\nmodel m(x: f32[N, 12]) -> (y: f32[N, 5])\n"
	                    "graph { y = batchnorm(linear(x, 5)) }\n",
	                    3);
	random_weights(g, 7);
	float *x = random_input(g, 8), *want = interp_output(g, x);
	passes_run(g, &(passes_options){.opt_level = 2});
	ck_assert_int_eq(count(g, IR_OP_BATCHNORM), 0);
	ck_assert_int_eq(executed(g), 1);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 15, 1e-5);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

/* ---- fusion --------------------------------------------------------------- */

START_TEST(fuse_residual_and_relu)
{
	ir_graph *g = parse("version 1\nmodel m(x: f32[N, 6, 8, 8]) -> (y: f32[N, 6, 8, 8])\n"
	                    "graph { h = relu(conv(x, 6, 3, pad = 1))\n"
	                    "        y = relu(conv(h, 6, 3, pad = 1) + x) }\n",
	                    2);
	random_weights(g, 9);
	float *x = random_input(g, 10), *want = interp_output(g, x);
	fuse_epilogue(g);
	ir_graph_verify(g);
	ck_assert_int_eq(count(g, IR_OP_RELU), 0);
	ck_assert_int_eq(count(g, IR_OP_ADD), 0);
	const ir_node *y = &g->nodes[g->outputs[0].node];
	ck_assert_int_eq(y->op, IR_OP_CONV);
	ck_assert(y->relu);
	ck_assert_int_gt(y->residual, 0);
	ck_assert_int_eq(g->nodes[y->in[y->residual]].op, IR_OP_INPUT);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 2 * 6 * 8 * 8, 1e-6);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

START_TEST(fuse_leaves_shared_producers)
{
	/* c is read twice: relu cannot join it, nor can the add */
	ir_graph *g = parse("version 1\nmodel m(x: f32[N, 6, 8, 8]) -> (y: f32[N, 6, 8, 8])\n"
	                    "graph { c = conv(x, 6, 3, pad = 1)\n y = relu(c) + c }\n",
	                    1);
	random_weights(g, 11);
	float *x = random_input(g, 12), *want = interp_output(g, x);
	fuse_epilogue(g);
	ir_graph_verify(g);
	ck_assert_int_eq(count(g, IR_OP_RELU), 1);
	ck_assert_int_eq(count(g, IR_OP_ADD), 1);
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_CONV)
			ck_assert(!g->nodes[i].relu && !g->nodes[i].residual);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 6 * 8 * 8, 1e-6);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

/* Winograd where it pays: 3x3 stride 1 with 32+ channels each way, by
 * F(4x4, 3x3) with 16+ output tiles of 4x4, else F(2x2, 3x3) with 16+ of
 * 2x2 (the 7x7 stage at batch 1); 16 channels each way with 192+ tiles;
 * never strided layers. */
START_TEST(winograd_selects_layers)
{
	ir_graph *g = load_model("resnet18", 1);
	random_weights(g, 21);
	float *x = random_input(g, 22), *want = interp_output(g, x);
	passes_run(g, &(passes_options){.opt_level = 2});
	int selected = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_CONV)
			continue;
		int want = n->kernel != 3 || n->stride != 1 ? 0 : n->shape.d[2] >= 13 ? 4 : 2;
		ck_assert_msg(wino(n) == want, "%s: winograd %d", n->name, wino(n));
		if (wino(n)) {
			const ir_node *u = &g->nodes[n->in[1]];
			ck_assert_int_eq(u->op, IR_OP_WINOGRAD_WEIGHT);
			ck_assert(u->prep && u->mem == IR_MEM_WEIGHTS);
			ck_assert_int_eq(u->tile, want);
			ck_assert_int_eq(u->shape.d[0], want == 4 ? 36 : 16);
			/* BatchNorm folded in the same step: from the raw weight,
			 * gamma and var, with no folded copy kept */
			ck_assert_int_eq(u->n_in, 3);
			ck_assert_int_eq(g->nodes[u->in[0]].op, IR_OP_PARAM);
			selected++;
		}
	}
	ck_assert_int_eq(selected, 13); /* stages 1-3 of ResNet-18 by 4x4, stage 4 by 2x2 */
	/* every other convolution reads its weights prepared once, when they
	 * are prepared (prepack): transposed for the direct kernel where it
	 * has a window and 100 or more output pixels (the 7x7 first layer, the
	 * strided 3x3s into 28x28 and 14x14), else packed for the GEMM */
	int packed = 0, direct = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_CONV)
			continue;
		ck_assert_msg(
		    (n->algo == IR_ALGO_PACKED) + (n->algo == IR_ALGO_DIRECT) + !!wino(n) == 1,
		    "%s: packed %d direct %d winograd %d", n->name, (n->algo == IR_ALGO_PACKED),
		    (n->algo == IR_ALGO_DIRECT), wino(n));
		bool want_direct =
		    !wino(n) && n->kernel > 1 && n->shape.d[2] * n->shape.d[3] >= 100;
		ck_assert_msg((n->algo == IR_ALGO_DIRECT) == want_direct, "%s: direct %d", n->name,
		              (n->algo == IR_ALGO_DIRECT));
		if (wino(n))
			continue;
		const ir_node *u = &g->nodes[n->in[1]];
		ck_assert_int_eq(u->op, (n->algo == IR_ALGO_DIRECT) ? IR_OP_DIRECT_WEIGHT
		                                                    : IR_OP_GEMM_WEIGHT);
		ck_assert(u->prep && u->mem == IR_MEM_WEIGHTS);
		ck_assert_int_eq(u->n_in, 3);
		packed += (n->algo == IR_ALGO_PACKED);
		direct += (n->algo == IR_ALGO_DIRECT);
	}
	ck_assert_int_eq(packed, 4); /* the three projections and the last strided 3x3 */
	ck_assert_int_eq(direct, 3);
	ck_assert_int_eq(count(g, IR_OP_BN_FOLD_WEIGHT), 0);
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 1000, 1e-4);
	check_plan(g);
	free(x), free(want), free(got);
	ir_graph_free(g);

	g = load_model("resnet18", 1);
	passes_run(g, &(passes_options){.opt_level = 2, .no_winograd = true});
	ck_assert_int_eq(count(g, IR_OP_WINOGRAD_WEIGHT), 0);
	ir_graph_free(g);

	/* ResNet-20 at inference: its 16-channel convolutions stay plain
	 * below 192 output tiles (batch 2: 98 a layer), and go by 4x4 tiles
	 * from there (batch 4: 196), the six of the first stage */
	for (int batch = 1; batch <= 4; batch *= 2) {
		g = load_model("resnet20", batch);
		random_weights(g, 23);
		x = random_input(g, 24), want = interp_output(g, x);
		passes_run(g, &(passes_options){.opt_level = 2});
		int thin = 0;
		for (int i = 0; i < g->n_nodes; i++) {
			const ir_node *n = &g->nodes[i];
			if (n->op != IR_OP_CONV || n->out != 16 || n->kernel != 3 ||
			    g->nodes[n->in[0]].shape.d[1] != 16)
				continue;
			ck_assert_msg(wino(n) == (batch == 4 ? 4 : 0),
			              "%s at batch %d: winograd %d", n->name, batch, wino(n));
			thin++;
		}
		ck_assert_int_eq(thin, 6);
		got = interp_output(g, x);
		ck_assert_close(got, want, 10 * batch, 1e-4);
		free(x), free(want), free(got);
		ir_graph_free(g);
	}
}

/* In a training step: the forward, input gradient and weight gradient of
 * every 3x3 stride-1 pad-1 layer with 16+ channels each way, the weight
 * transforms computed every step (the params change), not prepared; the
 * strided layers and the 1-channel stem keep the plain kernels. */
/* Winograd's weights are four times the 3x3 weights they come from, a
 * packed copy a little larger: a layer whose weights are within the limit
 * but whose transform would not be keeps the plain kernel instead of
 * failing with an error about a node the model never wrote. */
START_TEST(transforms_over_the_limit_are_skipped)
{
	static const char *const texts[2] = {
	    "version 1\n"
	    "model big(x: f32[N, 8000, 8, 8]) -> (y: f32[N, 8000, 8, 8])\n"
	    "graph { y = relu(batchnorm(conv(x, 8000, 3, 1, 1, bias = false))) }\n",
	    "version 1\n"
	    "model big(x: f32[N, 8000, 8, 8]) -> (y: f32[N, 10])\n"
	    "graph { y = linear(flatten(global_avgpool(relu(batchnorm(conv(x, 8000, 3, 1, 1, "
	    "bias = false))))), 10) }\n",
	};
	/* at batch 8 the layer has the tiles for F(4x4, 3x3): [36, 8000, 8000] */
	for (int training = 0; training < 2; training++) {
		ir_graph *g = parse(texts[training], 8);
		if (training)
			autodiff_training_graph(g);
		passes_run(g, &(passes_options){.opt_level = 2});
		int convs = 0;
		for (int i = 0; i < g->n_nodes; i++) {
			const ir_node *n = &g->nodes[i];
			ck_assert(ir_shape_count(&n->shape) < IR_MAX_ELEMS);
			ck_assert_msg(n->op != IR_OP_WINOGRAD_WEIGHT &&
			                  n->op != IR_OP_WINOGRAD_WEIGHT_T,
			              "%s: a transform over the limit", n->name);
			convs += n->op == IR_OP_CONV;
			if (n->op == IR_OP_CONV)
				ck_assert_int_eq(wino(n), 0);
		}
		ck_assert_int_eq(convs, 1);
		ir_graph_free(g);
	}
	/* far below the limit, the same layer runs by Winograd */
	ir_graph *g = parse("version 1\n"
	                    "model ok(x: f32[N, 64, 16, 16]) -> (y: f32[N, 64, 16, 16])\n"
	                    "graph { y = conv(x, 64, 3, 1, 1) }\n",
	                    8);
	passes_run(g, &(passes_options){.opt_level = 2});
	ck_assert_int_eq(count(g, IR_OP_WINOGRAD_WEIGHT), 1);
	ir_graph_free(g);
}
END_TEST

START_TEST(winograd_in_training)
{
	ir_graph *g = load_model("resnet20", 128);
	autodiff_training_graph(g);
	passes_run(g, &(passes_options){.opt_level = 2});
	int fwd = 0, gin = 0, gw = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		ck_assert_msg(!n->prep || n->op == IR_OP_PARAM,
		              "%s: %s prepared in a training step", n->name, ir_ops[n->op].name);
		bool conv = n->op == IR_OP_CONV || n->op == IR_OP_CONV_GRAD_INPUT ||
		            n->op == IR_OP_CONV_GRAD_WEIGHT;
		if (!conv)
			continue;
		const ir_shape *x = &g->nodes[n->in[n->op == IR_OP_CONV_GRAD_INPUT ? 2 : 0]].shape;
		bool eligible = n->kernel == 3 && n->stride == 1 && x->d[1] >= 16;
		ck_assert_msg(wino(n) == (eligible ? 4 : 0), "%s %s: winograd %d", n->name,
		              ir_ops[n->op].name, wino(n));
		if (!wino(n))
			continue;
		fwd += n->op == IR_OP_CONV;
		gin += n->op == IR_OP_CONV_GRAD_INPUT;
		gw += n->op == IR_OP_CONV_GRAD_WEIGHT;
		if (n->op != IR_OP_CONV_GRAD_WEIGHT) {
			const ir_node *u = &g->nodes[n->in[1]];
			ck_assert_int_eq(u->op, n->op == IR_OP_CONV ? IR_OP_WINOGRAD_WEIGHT
			                                            : IR_OP_WINOGRAD_WEIGHT_T);
			ck_assert_int_eq(g->nodes[u->in[0]].op, IR_OP_PARAM);
			ck_assert(u->mem == IR_MEM_ARENA);
		}
	}
	/* 19 convolutions: the stem and the two strided ones stay plain */
	ck_assert_int_eq(fwd, 16);
	ck_assert_int_eq(gin, 16);
	ck_assert_int_eq(gw, 16);
	check_plan(g);
	ir_graph_free(g);

	g = load_model("resnet20", 128);
	autodiff_training_graph(g);
	passes_run(g, &(passes_options){.opt_level = 2, .no_winograd = true});
	ck_assert_int_eq(count(g, IR_OP_WINOGRAD_WEIGHT) + count(g, IR_OP_WINOGRAD_WEIGHT_T), 0);
	ck_assert_int_eq(count(g, IR_OP_GEMM_WEIGHT),
	                 0); /* weights that change are not prepacked */
	ir_graph_free(g);
}
END_TEST

/* In a training step, conv -> batchnorm -> relu: the relu joins bn_train,
 * and its gradient joins BatchNorm's two gradients, which read the relu's
 * result and mask dy themselves, except where the gradient is also read
 * elsewhere (the block's last relu: its gradient also reaches the
 * shortcut). The numbers: test_train's compiled_step_matches_reference
 * runs this fusion against the unfused step, and test_kernels_train's
 * golden_batchnorm_train the masked kernels against the relu's gradient
 * stored first, to the bit. */
START_TEST(fuse_relu_gradient_into_batchnorm)
{
	ir_graph *g =
	    parse("version 1\nmodel m(x: f32[N, 1, 8, 8]) -> (y: f32[N, 3])\n"
	          "block cbr(x, c, s = 1) -> y { y = relu(batchnorm(conv(x, c, 3, s, 1, bias = "
	          "false))) }\n"
	          "graph {\n  h = cbr(x, 16)\n  h = relu(cbr(h, 16) + h)\n  h = cbr(h, 16, 2)\n"
	          "  y = linear(flatten(global_avgpool(h)), 3)\n}\n",
	          4);
	ir_graph_init_he(g, 3);
	autodiff_training_graph(g);
	ck_assert_int_eq(count(g, IR_OP_RELU_GRAD), 4);
	passes_run(g, &(passes_options){.opt_level = 2});
	ck_assert_int_eq(count(g, IR_OP_RELU), 0);
	ck_assert_int_eq(count(g, IR_OP_RELU_GRAD), 1);
	int params = 0, inputs = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		int mask = n->op == IR_OP_BN_GRAD_PARAMS  ? 3
		           : n->op == IR_OP_BN_GRAD_INPUT ? 5
		                                          : -1;
		if (mask < 0 || n->n_in <= mask)
			continue;
		const ir_node *y = &g->nodes[n->in[mask]];
		ck_assert_int_eq(y->op, IR_OP_BN_TRAIN);
		ck_assert(y->relu);
		params += n->op == IR_OP_BN_GRAD_PARAMS;
		inputs += n->op == IR_OP_BN_GRAD_INPUT;
	}
	ck_assert_int_eq(params, 3);
	ck_assert_int_eq(inputs, 3);
	check_plan(g);
	ir_graph_free(g);
}
END_TEST

START_TEST(fuse_option_a_hoists_shortcut)
{
	ir_graph *g = load_model("resnet20", 2);
	random_weights(g, 13);
	float *x = random_input(g, 14), *want = interp_output(g, x);
	passes_run(g, &(passes_options){.opt_level = 2});
	ck_assert_int_eq(count(g, IR_OP_SUBSAMPLE), 0);
	ck_assert_int_eq(count(g, IR_OP_ADD), 0);
	ck_assert_int_eq(count(g, IR_OP_FLATTEN), 0);
	ck_assert_int_eq(count(g, IR_OP_PAD_CHANNELS), 2);
	/* each shortcut runs right before the conv that accumulates onto it */
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PAD_CHANNELS) {
			ck_assert_int_gt(g->nodes[i].stride, 1);
			/* the next node the forward runs: prepared values
			 * (a Winograd weight transform) run at load time */
			int j = i + 1;
			while (g->nodes[j].prep)
				j++;
			const ir_node *next = &g->nodes[j];
			ck_assert_int_eq(next->op, IR_OP_CONV);
			ck_assert_int_eq(next->in[next->residual], i);
			ck_assert_int_eq(next->offset, g->nodes[i].offset); /* in place */
		}
	ck_assert_int_eq(executed(g), 19 + 2 + 2); /* convs, shortcuts, pool, linear */
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 2 * 10, 1e-4);
	check_plan(g);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

START_TEST(resnet50_executed_graph)
{
	ir_graph *g = load_model("resnet50", 1);
	ir_graph_init_he(g, 1);
	passes_run(g, &(passes_options){.opt_level = 2});
	int convs = 0, other = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->prep || n->op == IR_OP_INPUT)
			continue;
		if (n->op == IR_OP_CONV)
			convs++;
		else
			ck_assert_msg(n->op == IR_OP_MAXPOOL || n->op == IR_OP_GLOBAL_AVGPOOL ||
			                  n->op == IR_OP_LINEAR,
			              "%s left standing", ir_ops[n->op].name);
		other += n->op != IR_OP_CONV;
	}
	ck_assert_int_eq(convs, 53);
	ck_assert_int_eq(other, 3);
	/* Identity bottlenecks accumulate in place: the last conv writes over
	 * the block's input, so input, branch and output are not three buffers. */
	int inplace = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_CONV && n->residual && n->mem == IR_MEM_ARENA)
			inplace += n->offset == g->nodes[n->in[n->residual]].offset;
	}
	ck_assert_int_eq(inplace, 16); /* every block: 3 + 4 + 6 + 3 */
	check_plan(g);
	ck_assert(g->plan.arena_bytes <= 1.02 * (double)g->plan.lower_bound_bytes);
	ir_graph_free(g);
}
END_TEST

/* ---- the planner ---------------------------------------------------------- */

START_TEST(plan_every_model)
{
	static const char *const models[] = {"resnet18",  "resnet34", "resnet50", "resnet101",
	                                     "resnet152", "plain18",  "plain34",  "resnet20",
	                                     "resnet32",  "resnet44", "resnet56", "resnet110",
	                                     "plain20",   "plain32",  "plain44",  "plain56"};
	for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
		ir_graph *g = load_model(models[m], m < 7 ? 1 : 8);
		passes_run(g, &(passes_options){.opt_level = 2});
		check_plan(g);
		ck_assert_msg(g->plan.arena_bytes <= 1.02 * (double)g->plan.lower_bound_bytes,
		              "%s: arena %lld, bound %lld", models[m],
		              (long long)g->plan.arena_bytes, (long long)g->plan.lower_bound_bytes);
		ck_assert_int_lt(g->plan.arena_bytes, g->plan.naive_bytes);
		ir_graph_free(g);
	}
}
END_TEST

START_TEST(shortcut_needed_later_is_not_overwritten)
{
	/* x feeds the residual add and a later conv: accumulating in place
	 * would corrupt that conv's input. */
	ir_graph *g = parse("version 1\nmodel m(x: f32[N, 6, 8, 8]) -> (y: f32[N, 6, 8, 8])\n"
	                    "graph { a = relu(x)\n h = conv(a, 6, 3, pad = 1) + a\n"
	                    "        y = conv(a, 6, 3, pad = 1) + h }\n",
	                    1);
	random_weights(g, 15);
	float *x = random_input(g, 16), *want = interp_output(g, x);
	passes_run(g, &(passes_options){.opt_level = 2});
	check_plan(g);
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_CONV && n->residual &&
		    g->nodes[n->in[n->residual]].op == IR_OP_RELU)
			ck_assert_int_ne(n->offset, g->nodes[n->in[n->residual]].offset);
	}
	float *got = interp_output(g, x);
	ck_assert_close(got, want, 6 * 8 * 8, 1e-5);
	free(x), free(want), free(got);
	ir_graph_free(g);
}
END_TEST

/* Random networks: chains of convs, relus, BatchNorms, pools and residual
 * adds over a random mix of earlier values; the plan must hold and -O2
 * must compute what the unoptimised graph computes. */
static char *random_model(rt_rng *r)
{
	size_t cap = 8192, len = 0;
	char *s = malloc(cap);
	len +=
	    (size_t)snprintf(s + len, cap - len,
	                     "version 1\nmodel m(x: f32[N, 4, 12, 12]) -> (y: f32[N, 4, 12, 12])\n"
	                     "graph {\n v0 = x\n");
	int nv = 1, steps = 4 + (int)(rt_rng_next(r) % 12);
	for (int i = 0; i < steps; i++) {
		int a = (int)(rt_rng_next(r) % (uint64_t)nv),
		    b = (int)(rt_rng_next(r) % (uint64_t)nv);
		const char *fmt;
		switch (rt_rng_next(r) % 7) {
		case 0:
			fmt = " v%d = conv(v%d, 4, 3, pad = 1)\n";
			break;
		case 1:
			fmt = " v%d = relu(v%d)\n";
			break;
		case 2:
			fmt = " v%d = batchnorm(conv(v%d, 4, 1, bias = false))\n";
			break;
		case 3:
			fmt = " v%d = maxpool(v%d, 3, 1, 1)\n";
			break;
		case 4:
			fmt = " v%d = relu(conv(v%d, 4, 3, pad = 1) + v%d)\n";
			break;
		case 5:
			fmt = " v%d = v%d + v%d\n";
			break;
		default:
			fmt = " v%d = relu(batchnorm(v%d))\n";
			break;
		}
		len += (size_t)snprintf(s + len, cap - len, fmt, nv, a, b);
		nv++;
	}
	snprintf(s + len, cap - len, " y = v%d\n}\n", nv - 1);
	return s;
}

START_TEST(plan_random_graphs)
{
	rt_rng r;
	rt_rng_seed(&r, 42);
	int rounds = test_sanitized() ? 40 : 200;
	for (int t = 0; t < rounds; t++) {
		char *text = random_model(&r);
		ir_graph *g = parse(text, 1 + t % 2), *o = parse(text, 1 + t % 2);
		random_weights(g, (uint64_t)t);
		random_weights(o, (uint64_t)t);
		float *x = random_input(g, (uint64_t)t + 1000), *want = interp_output(g, x);
		passes_run(o, &(passes_options){.opt_level = 2});
		check_plan(o);
		ck_assert(o->plan.arena_bytes <= o->plan.naive_bytes);
		float *got = interp_output(o, x);
		size_t n = (size_t)ir_shape_count(&o->nodes[o->outputs[0].node].shape);
		ck_assert_msg(test_rel_err(got, want, n) < 1e-4, "model %d:\n%s", t, text);
		free(x), free(want), free(got), free(text);
		ir_graph_free(g);
		ir_graph_free(o);
	}
}
END_TEST

START_TEST(dump_after_prints_graph)
{
	ir_graph *g = parse(SMALL "graph { y = relu(batchnorm(conv(x, 6, 3, pad = 1))) }\n", 1);
	ir_graph_init_he(g, 1);
	char *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	passes_run(g, &(passes_options){.opt_level = 2, .dump_after = "all", .dump = f});
	fclose(f);
	for (int i = 0; passes_names[i]; i++) {
		char head[64];
		snprintf(head, sizeof head, "# after %s\n", passes_names[i]);
		bool training_only = !strcmp(passes_names[i], "autodiff");
		ck_assert_msg((strstr(buf, head) != NULL) != training_only, "%s dump after %s",
		              training_only ? "a" : "no", passes_names[i]);
	}
	ck_assert_ptr_nonnull(strstr(buf, "bn_fold_weight"));
	ck_assert_ptr_nonnull(strstr(buf, "algo=packed"));
	ck_assert_ptr_nonnull(strstr(buf, "@output0"));
	ck_assert_ptr_nonnull(strstr(buf, "plan: arena_bytes"));
	free(buf);
	ir_graph_free(g);
}
END_TEST

START_TEST(training_mode_dumps_autodiff_first)
{
	ir_graph *g = load_model("resnet20", 2);
	char *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	passes_run(
	    g, &(passes_options){
	           .opt_level = 2, .mode = PASSES_MODE_TRAINING, .dump_after = "all", .dump = f});
	fclose(f);
	const char *ad = strstr(buf, "# after autodiff\n");
	const char *wg = strstr(buf, "# after algorithm\n");
	ck_assert_ptr_nonnull(ad);
	ck_assert_ptr_nonnull(wg);
	ck_assert(ad < wg);
	ck_assert_ptr_nonnull(strstr(ad, "conv_grad_weight"));
	const char *fold = strstr(buf, "# after fold_batchnorm\n");
	ck_assert(fold && ad < fold);
	free(buf);
	ir_graph_free(g);
}
END_TEST

/* Every conv, conv gradient and linear node says how it runs, and where
 * no weight transform is involved that is the runtime's own answer of
 * what fits; at -O0 too, which transforms nothing. */
START_TEST(algorithm_recorded_for_every_node)
{
	for (int opt = 0; opt <= 2; opt += 2) {
		ir_graph *g = load_model("resnet20", 128);
		passes_run(g, &(passes_options){.opt_level = opt, .mode = PASSES_MODE_TRAINING});
		int direct = 0, wino = 0, checked = 0;
		for (int i = 0; i < g->n_nodes; i++) {
			const ir_node *n = &g->nodes[i];
			if (!(ir_ops[n->op].flags & OPF_ALGO))
				ck_assert_int_eq(n->algo, IR_ALGO_GEMM);
			if (n->op == IR_OP_LINEAR || !(ir_ops[n->op].flags & OPF_ALGO))
				continue;
			ck_assert_msg(opt || n->algo != IR_ALGO_WINOGRAD, "%s: winograd at -O0",
			              n->name);
			wino += n->algo == IR_ALGO_WINOGRAD;
			if (n->algo == IR_ALGO_WINOGRAD)
				continue;
			rt_conv p = passes_conv_geometry(g->nodes, n);
			rt_conv_algo want =
			    n->op == IR_OP_CONV              ? rt_conv2d_algo(&p, n->residual != 0)
			    : n->op == IR_OP_CONV_GRAD_INPUT ? rt_conv2d_grad_input_algo(&p)
			                                     : rt_conv2d_grad_weight_algo(&p);
			ck_assert_msg(n->algo == (want == RT_CONV_ALGO_DIRECT ? IR_ALGO_DIRECT
			                                                      : IR_ALGO_GEMM),
			              "%s %s: %s", n->name, ir_ops[n->op].name,
			              ir_algo_names[n->algo]);
			direct += n->algo == IR_ALGO_DIRECT;
			checked++;
		}
		ck_assert_int_gt(direct, 0);
		ck_assert_int_gt(checked, direct); /* the 1x1 projections stay GEMMs */
		ck_assert(opt ? wino > 0 : wino == 0);
		ir_graph_free(g);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("passes");
	TCase *t = tcase_create("passes");
	tcase_set_timeout(t, 300);
	tcase_add_test(t, fold_conv_batchnorm);
	tcase_add_test(t, fold_keeps_conv_bias);
	tcase_add_test(t, fold_leaves_shared_conv);
	tcase_add_test(t, fold_linear_batchnorm);
	tcase_add_test(t, fuse_residual_and_relu);
	tcase_add_test(t, fuse_leaves_shared_producers);
	tcase_add_test(t, fuse_option_a_hoists_shortcut);
	tcase_add_test(t, fuse_relu_gradient_into_batchnorm);
	tcase_add_test(t, winograd_selects_layers);
	tcase_add_test(t, transforms_over_the_limit_are_skipped);
	tcase_add_test(t, winograd_in_training);
	tcase_add_test(t, resnet50_executed_graph);
	tcase_add_test(t, plan_every_model);
	tcase_add_test(t, shortcut_needed_later_is_not_overwritten);
	tcase_add_test(t, plan_random_graphs);
	tcase_add_test(t, dump_after_prints_graph);
	tcase_add_test(t, training_mode_dumps_autodiff_first);
	tcase_add_test(t, algorithm_recorded_for_every_node);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
