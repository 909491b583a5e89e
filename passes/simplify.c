/* Clean-ups: a flatten of an already-flat tensor is the tensor itself, and
 * nodes nothing reads (nor the outputs) are dropped. Params stay: they are
 * the weights file's interface even when the code no longer reads them. */
#include <stdlib.h>

#include "passes.h"

typedef struct simplify {
	const ir_node *old;
	bool *live;
} simplify;

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	simplify *s = ctx;
	if (!s->live[id])
		return -1;
	if (old->op == IR_OP_FLATTEN && ir_shape_eq(&s->old[old->in[0]].shape, &old->shape))
		return ir_rewrite_map(rw, old->in[0]);
	return ir_rewrite_copy(rw, old);
}

void simplify_graph(ir_graph *g)
{
	simplify s = {.old = g->nodes, .live = calloc((size_t)g->n_nodes + 1, sizeof(bool))};
	if (!s.live)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_outputs; i++)
		s.live[g->outputs[i].node] = true;
	for (int i = g->n_nodes - 1; i >= 0; i--) {
		const ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_PARAM || n->op == IR_OP_INPUT ||
		    (ir_ops[n->op].flags & OPF_EFFECT))
			s.live[i] = true;
		if (!s.live[i])
			continue;
		for (int k = 0; k < n->n_in; k++)
			s.live[n->in[k]] = true;
	}
	ir_rewrite(g, rewrite, &s);
	free(s.live);
}
