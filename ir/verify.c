/* The graph's invariants, checked after construction and after every pass:
 * a pass that breaks one is caught where it broke it. */
#include "ir.h"

void ir_graph_verify(const ir_graph *g)
{
	for (int id = 0; id < g->n_nodes; id++) {
		const ir_node *n = &g->nodes[id];
		if ((unsigned)n->op >= IR_OP_COUNT)
			diag_error_at(&n->loc, "internal: node %%%d has no valid op", id);
		if (n->n_in < ir_ops[n->op].args || n->n_in > IR_MAX_INPUTS)
			diag_error_at(&n->loc, "internal: %s node %%%d has %d inputs",
			              ir_ops[n->op].name, id, n->n_in);
		for (int i = 0; i < n->n_in; i++)
			if (n->in[i] < 0 || n->in[i] >= id)
				diag_error_at(&n->loc,
				              "internal: node %%%d input %d (%%%d) breaks "
				              "topological order",
				              id, i, n->in[i]);
		ir_node copy = *n;
		ir_shape_infer(g, &copy);
		if (!ir_shape_eq(&copy.shape, &n->shape)) {
			char a[96], b[96];
			diag_error_at(&n->loc, "internal: node %%%d has shape %s, its rule says %s",
			              id, ir_shape_str(&n->shape, a, sizeof a),
			              ir_shape_str(&copy.shape, b, sizeof b));
		}
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].node < 0 || g->outputs[i].node >= g->n_nodes)
			diag_error_at(&g->outputs[i].loc, "internal: output '%s' refers to no node",
			              g->outputs[i].name);
}
