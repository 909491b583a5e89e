/* Winograd selection: 3x3 stride-1 convolutions run by F(4x4, 3x3), which
 * does a quarter of the multiplications, or F(2x2, 3x3) (four ninths).
 *
 * Inference: conv(x, w) becomes conv(x, winograd_weight(w)) with the
 * winograd flag. The weight transform depends on params alone, so it runs
 * when weights are prepared; it folds BatchNorm itself where the weights
 * were to be folded (winograd_weight(w, gamma, var)). Where it pays, by measurement on the
 * ResNets: enough channels for the GEMMs to run well (32 each way), and
 * enough output tiles for their columns (16: a 14x14 map at batch 1 in 4x4
 * tiles). With fewer 4x4 tiles but 16 of 2x2 (the 7x7 stage of ResNet-18
 * and -50 at batch 1) F(2x2, 3x3) runs: 16 GEMMs 16 columns wide beat both
 * 36 GEMMs 4 wide and the plain kernel, and its U is 16/9 the size of the
 * 3x3 weights, not 4 times.
 *
 * Training: the weights change every step, so the transforms are graph
 * nodes computed every step (microseconds to a millisecond) before the
 * convolutions that read them; the input gradient of a pad-1 layer is a
 * Winograd convolution of dY with winograd_weight_t(w), and the weight
 * gradient runs the transposed algorithm (runtime/winograd.c). At a
 * training batch there are tiles enough for every layer, and 16 channels
 * each way already halve the time (ResNet-20's first stage, measured). */
#include "passes.h"
#include "runtime.h"

enum { MIN_CHANNELS = 32, MIN_CHANNELS_TRAINING = 16, MIN_TILES = 16 };

static rt_conv conv_of(const ir_shape *x, const ir_node *n)
{
	return rt_conv_make((int)x->d[0], (int)x->d[1], (int)x->d[2], (int)x->d[3], (int)n->out,
	                    (int)n->kernel, (int)n->stride, (int)n->pad);
}

static int64_t tiles(const rt_conv *p, int m)
{
	return (int64_t)p->n * ((p->oh + m - 1) / m) * ((p->ow + m - 1) / m);
}

/* The output tile size m of F(m x m, 3x3) that runs n, or 0 for the plain
 * kernel. x: the shape of the forward convolution's input */
static int tile_for(const ir_node *n, const ir_shape *x, bool training)
{
	if (n->kernel != 3 || n->stride != 1)
		return 0;
	rt_conv p = conv_of(x, n);
	int min = training ? MIN_CHANNELS_TRAINING : MIN_CHANNELS;
	if (p.c < min || p.oc < min)
		return 0;
	if (tiles(&p, 4) >= MIN_TILES)
		return n->op == IR_OP_CONV || rt_winograd_grad_fits(&p) ? 4 : 0;
	/* the training kernels are F(4x4, 3x3)'s */
	return n->op == IR_OP_CONV && !training && tiles(&p, 2) >= MIN_TILES ? 2 : 0;
}

/* q reading weights t(w), by F(m x m, 3x3) */
static int emit_with(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, ir_op t, int w,
                     int m)
{
	ir_node u;
	if (!passes_weight_node(rw, nodes, old, w, t, t == IR_OP_WINOGRAD_WEIGHT ? m : 0, &u))
		return ir_rewrite_copy(rw, old);
	ir_node q = *old;
	for (int k = 0; k < q.n_in; k++)
		q.in[k] = ir_rewrite_map(rw, old->in[k]);
	q.in[w] = ir_rewrite_emit(rw, &u);
	q.winograd = m;
	return ir_rewrite_emit(rw, &q);
}

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	const bool *training = ctx;
	const ir_node *nodes = old - id;
	switch (old->op) {
	case IR_OP_CONV: {
		ir_op w = nodes[old->in[1]].op;
		bool weights =
		    *training ? w == IR_OP_PARAM : w == IR_OP_PARAM || w == IR_OP_BN_FOLD_WEIGHT;
		int m = weights ? tile_for(old, &nodes[old->in[0]].shape, *training) : 0;
		if (m)
			return emit_with(rw, nodes, old, IR_OP_WINOGRAD_WEIGHT, 1, m);
		break;
	}
	case IR_OP_CONV_GRAD_INPUT: /* dy, w, x */
		if (nodes[old->in[1]].op == IR_OP_PARAM &&
		    tile_for(old, &nodes[old->in[2]].shape, true))
			return emit_with(rw, nodes, old, IR_OP_WINOGRAD_WEIGHT_T, 1, 4);
		break;
	case IR_OP_CONV_GRAD_WEIGHT: /* x, dy */
		if (tile_for(old, &nodes[old->in[0]].shape, true)) {
			ir_node q = *old;
			for (int k = 0; k < q.n_in; k++)
				q.in[k] = ir_rewrite_map(rw, old->in[k]);
			q.winograd = 4;
			return ir_rewrite_emit(rw, &q);
		}
		break;
	default:
		break;
	}
	return ir_rewrite_copy(rw, old);
}

void select_winograd(ir_graph *g)
{
	bool training = false;
	for (int i = 0; i < g->n_nodes; i++)
		training |= g->nodes[i].op == IR_OP_SGD;
	ir_rewrite(g, rewrite, &training);
}
