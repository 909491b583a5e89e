/* BatchNorm folding (inference): bn(conv(x, w, b)) with the convolution
 * used only there becomes conv(x, w', b'), with
 *   w' = w * gamma / sqrt(var + eps),  b' = (b - mean) * gamma / sqrt(var + eps) + beta.
 * w' and b' are nodes computed from params alone, so they run when weights
 * are prepared: at compile time for embedded weights, at load time for a
 * weights file. BatchNorm after linear folds the same way. */
#include <stdlib.h>

#include "passes.h"

typedef struct fold {
	const ir_node *old;
	bool *absorbed; /* producers rebuilt where their BatchNorm was */
} fold;

static int fold_into(ir_rewriter *rw, const ir_node *bn, const ir_node *p)
{
	const ir_graph *g = ir_rewrite_graph(rw);
	int gamma = ir_rewrite_map(rw, bn->in[1]), beta = ir_rewrite_map(rw, bn->in[2]);
	int mean = ir_rewrite_map(rw, bn->in[3]), var = ir_rewrite_map(rw, bn->in[4]);

	ir_node w = ir_node_proto(IR_OP_BN_FOLD_WEIGHT, &bn->loc);
	w.eps = bn->eps;
	w.name = p->name;
	w.n_in = 3;
	w.in[0] = ir_rewrite_map(rw, p->in[1]);
	w.in[1] = gamma;
	w.in[2] = var;
	ir_shape_infer(g, &w);

	ir_node b = ir_node_proto(IR_OP_BN_FOLD_BIAS, &bn->loc);
	b.eps = bn->eps;
	b.name = p->name;
	b.n_in = 4;
	b.in[0] = gamma;
	b.in[1] = beta;
	b.in[2] = mean;
	b.in[3] = var;
	if (p->bias)
		b.in[b.n_in++] = ir_rewrite_map(rw, p->in[2]);
	ir_shape_infer(g, &b);

	ir_node q = *p;
	q.in[0] = ir_rewrite_map(rw, p->in[0]);
	q.in[1] = ir_rewrite_emit(rw, &w);
	q.in[2] = ir_rewrite_emit(rw, &b);
	q.n_in = 3;
	q.bias = true;
	return ir_rewrite_emit(rw, &q);
}

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	fold *f = ctx;
	if (f->absorbed[id])
		return -1;
	if (old->op == IR_OP_BATCHNORM && f->absorbed[old->in[0]])
		return fold_into(rw, old, &f->old[old->in[0]]);
	return ir_rewrite_copy(rw, old);
}

void fold_batchnorm(ir_graph *g)
{
	int *uses = ir_use_counts(g);
	fold f = {.old = g->nodes, .absorbed = calloc((size_t)g->n_nodes + 1, sizeof(bool))};
	if (!f.absorbed)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_BATCHNORM)
			continue;
		const ir_node *p = &g->nodes[n->in[0]];
		bool producer = p->op == IR_OP_CONV || p->op == IR_OP_LINEAR;
		/* a producer read elsewhere too must keep its unfolded result */
		if (producer && uses[n->in[0]] == 1 && !p->relu && !p->residual)
			f.absorbed[n->in[0]] = true;
	}
	free(uses);
	ir_rewrite(g, rewrite, &f);
	free(f.absorbed);
}
