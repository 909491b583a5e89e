/* The algorithm pass: how each convolution, convolution gradient and
 * linear layer runs. One ordered table of rules; the first that takes a
 * node decides, records it in node->algo (dumps print algo=...), and
 * rewrites the node's weights into the layout that algorithm reads. The
 * kernels then run what the graph says and never choose for themselves,
 * and the planner sizes each node's scratch from its algorithm.
 *
 * Winograd: 3x3 stride-1 convolutions run by F(4x4, 3x3), which does a
 * quarter of the multiplications, or F(2x2, 3x3) (four ninths). In
 * inference conv(x, w) becomes conv(x, winograd_weight(w)), computed when
 * weights are prepared, folding BatchNorm itself where the weights were to
 * be folded (winograd_weight(w, gamma, var)). Where it pays, by
 * measurement on the ResNets: enough channels for the GEMMs to run well
 * (32 each way), and enough output tiles for their columns (16: a 14x14
 * map at batch 1 in 4x4 tiles). With fewer 4x4 tiles but 16 of 2x2 (the
 * 7x7 stage of ResNet-18 and -50 at batch 1) F(2x2, 3x3) runs: 16 GEMMs 16
 * columns wide beat both 36 GEMMs 4 wide and the plain kernel, and its U
 * is 16/9 the size of the 3x3 weights, not 4 times. In training the
 * weights change every step, so the transforms are nodes computed every
 * step before the convolutions that read them; the input gradient of a
 * pad-1 layer is a Winograd convolution of dY with winograd_weight_t(w),
 * and the weight gradient runs the transposed algorithm. At a training
 * batch there are tiles enough for every layer, and 16 channels each way
 * already halve the time (ResNet-20's first stage, measured); so they do
 * in inference with 192 tiles or more (ResNet-20 on two threads: 0.87 of
 * the direct and packed kernels' time at batch 4, 196 tiles a layer, 0.85
 * at 8, 0.76 at 32; 1.22 at batch 2, 98 tiles).
 *
 * Prepared weights (inference only, after BatchNorm folding): a
 * convolution with a window (3x3 and larger) and no residual is computed
 * directly where its kernel takes it, its weights laid out once so that
 * a tap's output channels are whole vectors (as a GEMM, a strided
 * window's columns had to be gathered first: ResNet-18's strided 3x3
 * layers at 38-53% of the FMA peak); the others run the GEMM on weights
 * packed once into its register-tile layout, which it otherwise packs on
 * every call (a tenth of ResNet-18's time on one thread), and so does a
 * linear layer at batch 1 (ResNet-50's classifier transposed its 8 MB of
 * weights on every run).
 *
 * The rest run the runtime's direct kernels where those fit
 * (rt_conv2d_algo and the gradients'), the GEMM otherwise. These need no
 * weight transform, so they are chosen at -O0 too, as the kernels chose
 * for themselves before the choice was made here. */
#include "passes.h"

enum { MIN_CHANNELS = 32, MIN_CHANNELS_FEW = 16, MANY_TILES = 192, MIN_TILES = 16 };

/* op(w) for the weights old->in[k] of old; BatchNorm-folded weights become
 * op(w, gamma, var), folding and transforming in one step, so that no
 * folded copy needs keeping in the prepared weights beside the result.
 * False where the result would be over the per-tensor limit: the node then
 * stays as the model wrote it, which the front end has checked. */
bool passes_weight_node(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, int k, ir_op op,
                        int tile, ir_node *out)
{
	ir_node u = ir_node_proto(op, &old->loc);
	const ir_node *w = &nodes[old->in[k]];
	u.name = old->name;
	if (w->op == IR_OP_BN_FOLD_WEIGHT) {
		u.n_in = 3;
		for (int i = 0; i < 3; i++)
			u.in[i] = ir_rewrite_map(rw, w->in[i]);
		u.eps = w->eps;
	} else {
		u.n_in = 1;
		u.in[0] = ir_rewrite_map(rw, old->in[k]);
	}
	if (tile)
		u.tile = tile;
	*out = u;
	return ir_shape_fits(ir_rewrite_graph(rw), out);
}

typedef struct algo_ctx {
	bool training;      /* a training step (sgd nodes) */
	bool params_change; /* something writes the params: nothing is prepared */
	bool optimise;      /* -O2: the rules that transform weights */
	bool winograd;
} algo_ctx;

static int64_t tiles(const rt_conv *p, int m)
{
	return (int64_t)p->n * ((p->oh + m - 1) / m) * ((p->ow + m - 1) / m);
}

/* The output tile size m of F(m x m, 3x3) that runs n, or 0 for none. */
static int tile_for(const ir_node *nodes, const ir_node *n, bool training)
{
	if (n->kernel != 3 || n->stride != 1)
		return 0;
	rt_conv p = passes_conv_geometry(nodes, n);
	int min = training || tiles(&p, 4) >= MANY_TILES ? MIN_CHANNELS_FEW : MIN_CHANNELS;
	if (p.c < min || p.oc < min)
		return 0;
	if (tiles(&p, 4) >= MIN_TILES)
		return n->op == IR_OP_CONV || rt_winograd_grad_fits(&p) ? 4 : 0;
	/* the training kernels are F(4x4, 3x3)'s */
	return n->op == IR_OP_CONV && !training && tiles(&p, 2) >= MIN_TILES ? 2 : 0;
}

/* old, running by algo, reading weights t(in[1]) where t is an op (not
 * IR_OP_COUNT); -1 where the transformed weights would be over the
 * per-tensor limit (the next rule decides then) */
static int emit(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, ir_algo algo, ir_op t,
                int tile)
{
	ir_node u;
	if (t != IR_OP_COUNT &&
	    !passes_weight_node(rw, nodes, old, 1, t, t == IR_OP_WINOGRAD_WEIGHT ? tile : 0, &u))
		return -1;
	ir_node q = *old;
	for (int k = 0; k < q.n_in; k++)
		q.in[k] = ir_rewrite_map(rw, old->in[k]);
	if (t != IR_OP_COUNT)
		q.in[1] = ir_rewrite_emit(rw, &u);
	q.algo = algo;
	if (algo == IR_ALGO_WINOGRAD)
		q.tile = tile;
	return ir_rewrite_emit(rw, &q);
}

static int winograd(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, const algo_ctx *a)
{
	if (!a->winograd)
		return -1;
	switch (old->op) {
	case IR_OP_CONV: {
		ir_op w = nodes[old->in[1]].op;
		bool weights =
		    a->training ? w == IR_OP_PARAM : w == IR_OP_PARAM || w == IR_OP_BN_FOLD_WEIGHT;
		int m = weights ? tile_for(nodes, old, a->training) : 0;
		return m ? emit(rw, nodes, old, IR_ALGO_WINOGRAD, IR_OP_WINOGRAD_WEIGHT, m) : -1;
	}
	case IR_OP_CONV_GRAD_INPUT: /* dy, w, x */
		if (nodes[old->in[1]].op == IR_OP_PARAM && tile_for(nodes, old, true))
			return emit(rw, nodes, old, IR_ALGO_WINOGRAD, IR_OP_WINOGRAD_WEIGHT_T, 4);
		return -1;
	case IR_OP_CONV_GRAD_WEIGHT: /* x, dy */
		return tile_for(nodes, old, true)
		           ? emit(rw, nodes, old, IR_ALGO_WINOGRAD, IR_OP_COUNT, 4)
		           : -1;
	default:
		return -1;
	}
}

/* A linear layer at batch 1 is a GEMM of the weights (as A, packed) by
 * one column; at a larger batch it keeps the weights as B, packed on
 * each call but read once for all the rows of x: as A, they would be read
 * once per sample. */
static bool prepares(const ir_node *nodes, const ir_node *old, const algo_ctx *a)
{
	if (a->params_change)
		return false;
	if (old->op == IR_OP_LINEAR)
		return nodes[old->in[0]].shape.d[0] == 1 && nodes[old->in[1]].op == IR_OP_PARAM;
	ir_op w = old->op == IR_OP_CONV ? nodes[old->in[1]].op : IR_OP_INPUT;
	return w == IR_OP_PARAM || w == IR_OP_BN_FOLD_WEIGHT;
}

static int direct_prepared(ir_rewriter *rw, const ir_node *nodes, const ir_node *old,
                           const algo_ctx *a)
{
	if (old->op != IR_OP_CONV || old->residual || old->kernel < 2 || !prepares(nodes, old, a))
		return -1;
	rt_conv p = passes_conv_geometry(nodes, old);
	if (!rt_conv2d_direct_prepared_fits(&p))
		return -1;
	return emit(rw, nodes, old, IR_ALGO_DIRECT, IR_OP_DIRECT_WEIGHT, 0);
}

static int packed(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, const algo_ctx *a)
{
	if (!prepares(nodes, old, a))
		return -1;
	return emit(rw, nodes, old, IR_ALGO_PACKED, IR_OP_GEMM_WEIGHT, 0);
}

/* the runtime's direct kernels, on the weights as they are */
static int direct(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, const algo_ctx *a)
{
	(void)a;
	if (old->op == IR_OP_LINEAR)
		return -1;
	rt_conv p = passes_conv_geometry(nodes, old);
	rt_conv_algo r = old->op == IR_OP_CONV              ? rt_conv2d_algo(&p, old->residual != 0)
	                 : old->op == IR_OP_CONV_GRAD_INPUT ? rt_conv2d_grad_input_algo(&p)
	                                                    : rt_conv2d_grad_weight_algo(&p);
	return r == RT_CONV_ALGO_DIRECT ? emit(rw, nodes, old, IR_ALGO_DIRECT, IR_OP_COUNT, 0) : -1;
}

static int gemm(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, const algo_ctx *a)
{
	(void)a;
	return emit(rw, nodes, old, IR_ALGO_GEMM, IR_OP_COUNT, 0);
}

typedef int algo_rule_fn(ir_rewriter *rw, const ir_node *nodes, const ir_node *old,
                         const algo_ctx *a);

/* In order: the first rule that takes a node decides. */
static const struct algo_rule {
	bool optimising; /* transforms weights: -O2 only */
	algo_rule_fn *take;
} rules[] = {
    {true, winograd},        /* F(4x4) or F(2x2, 3x3), on transformed weights */
    {true, direct_prepared}, /* the direct kernel on weights laid out once */
    {true, packed},          /* the GEMM on weights packed once */
    {false, direct},         /* the direct kernel on the weights as they are */
    {false, gemm},           /* the GEMM on the weights as they are */
};

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	const algo_ctx *a = ctx;
	if (!(ir_ops[old->op].flags & OPF_ALGO))
		return ir_rewrite_copy(rw, old);
	const ir_node *nodes = old - id;
	for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
		if (rules[i].optimising && !a->optimise)
			continue;
		int r = rules[i].take(rw, nodes, old, a);
		if (r >= 0)
			return r;
	}
	diag_error_at(&old->loc, "internal: no algorithm takes %s", ir_ops[old->op].name);
}

void choose_algorithms(ir_graph *g, const passes_options *o)
{
	algo_ctx a = {.optimise = o->opt_level > 0, .winograd = !o->no_winograd};
	for (int i = 0; i < g->n_nodes; i++) {
		a.training |= g->nodes[i].op == IR_OP_SGD;
		a.params_change |= (ir_ops[g->nodes[i].op].flags & OPF_EFFECT) != 0;
	}
	ir_rewrite(g, rewrite, &a);
}
