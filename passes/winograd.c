/* Winograd selection: 3x3 stride-1 convolutions run by F(4x4, 3x3), which
 * does a quarter of the multiplications.
 *
 * Inference: conv(x, w) becomes conv(x, winograd_weight(w)) with the
 * winograd flag. The weight transform depends on params alone, so it runs
 * when weights are prepared; it folds BatchNorm itself where the weights
 * were to be folded (winograd_weight(w, gamma, var)). Where it pays, by measurement on the
 * ResNets: enough channels for the 36 GEMMs to run well (32 each way), and
 * enough 4x4 output tiles (16: a 14x14 map at batch 1) to amortise U, which
 * is four times the size of the 3x3 weights and is read once per run. Below
 * that (the 7x7 stage of ResNet-18 and -50 at batch 1) reading U costs more
 * than the multiplications it saves, and the plain kernel stays.
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

/* x: the shape of the forward convolution's input */
static bool pays(const ir_node *n, const ir_shape *x, bool training)
{
	if (n->kernel != 3 || n->stride != 1)
		return false;
	rt_conv p = conv_of(x, n);
	int64_t tiles = (int64_t)p.n * ((p.oh + 3) / 4) * ((p.ow + 3) / 4);
	int min = training ? MIN_CHANNELS_TRAINING : MIN_CHANNELS;
	if (p.c < min || p.oc < min || tiles < MIN_TILES)
		return false;
	return n->op == IR_OP_CONV || rt_winograd_grad_fits(&p);
}

/* q reading weights t(w), with the winograd flag */
static int emit_with(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, ir_op t, int w)
{
	ir_node u = passes_weight_node(rw, nodes, old, w, t);
	ir_node q = *old;
	for (int k = 0; k < q.n_in; k++)
		q.in[k] = ir_rewrite_map(rw, old->in[k]);
	q.in[w] = ir_rewrite_emit(rw, &u);
	q.winograd = true;
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
		if (weights && pays(old, &nodes[old->in[0]].shape, *training))
			return emit_with(rw, nodes, old, IR_OP_WINOGRAD_WEIGHT, 1);
		break;
	}
	case IR_OP_CONV_GRAD_INPUT: /* dy, w, x */
		if (nodes[old->in[1]].op == IR_OP_PARAM &&
		    pays(old, &nodes[old->in[2]].shape, true))
			return emit_with(rw, nodes, old, IR_OP_WINOGRAD_WEIGHT_T, 1);
		break;
	case IR_OP_CONV_GRAD_WEIGHT: /* x, dy */
		if (pays(old, &nodes[old->in[0]].shape, true)) {
			ir_node q = *old;
			for (int k = 0; k < q.n_in; k++)
				q.in[k] = ir_rewrite_map(rw, old->in[k]);
			q.winograd = true;
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
