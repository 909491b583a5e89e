/* Winograd selection (inference): a 3x3 stride-1 convolution becomes
 * conv(x, winograd_weight(w)) with the winograd flag, run by
 * rt_conv2d_winograd, which does a quarter of the multiplications. The
 * weight transform depends on params alone, so it runs when weights are
 * prepared, as BatchNorm folding does (and after it: the transform reads
 * the folded weights).
 *
 * Where it pays, by measurement on the ResNets: enough channels for the 36
 * GEMMs to run well (32 each way), and enough 4x4 output tiles (16: a 14x14
 * map at batch 1) to amortise U, which is four times the size of the 3x3
 * weights and is read once per run. Below that (the 7x7 stage of ResNet-18
 * and -50 at batch 1) reading U costs more than the multiplications it
 * saves, and the plain kernel stays. Not in training graphs: there the
 * weights change every step, and prepared values are computed once. */
#include "passes.h"
#include "runtime.h"

enum { MIN_CHANNELS = 32, MIN_TILES = 16 };

/* old: the node array being rebuilt, which n's inputs index */
static bool pays(const ir_node *old, const ir_node *n)
{
	if (n->op != IR_OP_CONV || n->kernel != 3 || n->stride != 1)
		return false;
	const ir_shape *x = &old[n->in[0]].shape;
	int64_t tiles = n->shape.d[0] * ((n->shape.d[2] + 3) / 4) * ((n->shape.d[3] + 3) / 4);
	ir_op w = old[n->in[1]].op;
	return x->d[1] >= MIN_CHANNELS && n->out >= MIN_CHANNELS && tiles >= MIN_TILES &&
	       (w == IR_OP_PARAM || w == IR_OP_BN_FOLD_WEIGHT);
}

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	if (!pays(old - id, old))
		return ir_rewrite_copy(rw, old);
	ir_node u = ir_node_proto(IR_OP_WINOGRAD_WEIGHT, &old->loc);
	u.name = old->name;
	u.n_in = 1;
	u.in[0] = ir_rewrite_map(rw, old->in[1]);
	ir_shape_infer(ir_rewrite_graph(rw), &u);
	ir_node q = *old;
	for (int k = 0; k < q.n_in; k++)
		q.in[k] = ir_rewrite_map(rw, old->in[k]);
	q.in[1] = ir_rewrite_emit(rw, &u);
	q.winograd = true;
	return ir_rewrite_emit(rw, &q);
}

void select_winograd(ir_graph *g)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_SGD)
			return;
	ir_rewrite(g, rewrite, NULL);
}
