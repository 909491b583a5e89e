/* Weight prepacking (inference): a convolution that runs as a GEMM reads
 * its weights as the GEMM's A operand, which the GEMM otherwise packs into
 * its register-tile layout on every call: all of the weights, every run
 * (measured: a tenth of ResNet-18's time on one thread). conv(x, w) becomes
 * conv(x, gemm_weight(w)) with the packed flag, and so does a linear layer
 * at batch 1 (ResNet-50's classifier transposed its 8 MB of weights on
 * every run: 0.7 ms on 2 threads); gemm_weight depends on
 * params alone, so it runs when the weights are prepared, after BatchNorm
 * folding. Not in training graphs, whose weights change every step, nor
 * for Winograd's layers, which read their transformed weights instead. */
#include "passes.h"
#include "runtime.h"

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

/* A linear layer at batch 1 is a GEMM of the weights (as A, packed) by
 * one column; at a larger batch it keeps the weights as B, packed on
 * each call but read once for all the rows of x: as A, they would be read
 * once per sample. */
static bool packs(const ir_node *nodes, const ir_node *old)
{
	if (old->op == IR_OP_LINEAR)
		return nodes[old->in[0]].shape.d[0] == 1 && nodes[old->in[1]].op == IR_OP_PARAM;
	ir_op w = old->op == IR_OP_CONV ? nodes[old->in[1]].op : IR_OP_INPUT;
	return !old->winograd && (w == IR_OP_PARAM || w == IR_OP_BN_FOLD_WEIGHT);
}

/* A convolution with a window (3x3 and larger) and no residual to add is
 * computed directly where its kernel takes it: its input broadcast from a
 * padded copy of each image, its weights transposed once, when they are
 * prepared, so that a tap's output channels are whole vectors. As a GEMM,
 * a strided window's columns had to be gathered first (ResNet-18's
 * strided 3x3 layers at 38-53% of the FMA peak; its 7x7 first layer 54%). */
static bool direct(const ir_node *nodes, const ir_node *old)
{
	if (old->op != IR_OP_CONV || old->winograd || old->residual || old->kernel < 2)
		return false;
	const ir_shape *x = &nodes[old->in[0]].shape;
	rt_conv p = rt_conv_make((int)x->d[0], (int)x->d[1], (int)x->d[2], (int)x->d[3],
	                         (int)old->out, (int)old->kernel, (int)old->stride, (int)old->pad);
	return rt_conv2d_direct_prepared_fits(&p);
}

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	const ir_node *nodes = old - id;
	if (!packs(nodes, old))
		return ir_rewrite_copy(rw, old);
	bool d = direct(nodes, old);
	ir_node u;
	if (!passes_weight_node(rw, nodes, old, 1, d ? IR_OP_DIRECT_WEIGHT : IR_OP_GEMM_WEIGHT, 0,
	                        &u))
		return ir_rewrite_copy(rw, old);
	ir_node q = *old;
	for (int k = 0; k < q.n_in; k++)
		q.in[k] = ir_rewrite_map(rw, old->in[k]);
	q.in[1] = ir_rewrite_emit(rw, &u);
	q.packed = !d;
	q.direct = d;
	return ir_rewrite_emit(rw, &q);
}

void prepack_weights(ir_graph *g)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (ir_ops[g->nodes[i].op].flags & OPF_EFFECT)
			return;
	ir_rewrite(g, rewrite, NULL);
}
