/* The graph's invariants, checked after construction and after every pass:
 * a pass that breaks one is caught where it broke it. */
#include "ir.h"

/* The weight layout an algorithm reads (in[1]): IR_OP_COUNT where it takes
 * the weights as they are. */
static ir_op algo_weight(const ir_node *n)
{
	switch (n->algo) {
	case IR_ALGO_PACKED:
		return IR_OP_GEMM_WEIGHT;
	case IR_ALGO_WINOGRAD:
		return n->op == IR_OP_CONV_GRAD_INPUT ? IR_OP_WINOGRAD_WEIGHT_T
		                                      : IR_OP_WINOGRAD_WEIGHT;
	default:
		return IR_OP_COUNT;
	}
}

static bool transformed(ir_op op)
{
	return op == IR_OP_GEMM_WEIGHT || op == IR_OP_WINOGRAD_WEIGHT ||
	       op == IR_OP_WINOGRAD_WEIGHT_T || op == IR_OP_DIRECT_WEIGHT;
}

static void verify_algo(const ir_graph *g, const ir_node *n, int id)
{
	if (!(ir_ops[n->op].flags & OPF_ALGO)) {
		if (n->algo != IR_ALGO_GEMM)
			diag_error_at(&n->loc, "internal: %s node %%%d has an algorithm",
			              ir_ops[n->op].name, id);
		return;
	}
	if ((unsigned)n->algo > IR_ALGO_WINOGRAD ||
	    (n->algo == IR_ALGO_WINOGRAD && n->tile != 2 && n->tile != 4))
		diag_error_at(&n->loc, "internal: %s node %%%d has no valid algorithm",
		              ir_ops[n->op].name, id);
	if (n->op == IR_OP_CONV_GRAD_WEIGHT) /* reads x and dy, no weights */
		return;
	ir_op w = g->nodes[n->in[1]].op, want = algo_weight(n);
	bool ok = want != IR_OP_COUNT
	              ? w == want
	              : !transformed(w) || (w == IR_OP_DIRECT_WEIGHT && n->algo == IR_ALGO_DIRECT);
	if (!ok)
		diag_error_at(&n->loc, "internal: %s node %%%d runs by %s on %s weights",
		              ir_ops[n->op].name, id, ir_algo_names[n->algo], ir_ops[w].name);
}

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
		verify_algo(g, n, id);
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i].node < 0 || g->outputs[i].node >= g->n_nodes)
			diag_error_at(&g->outputs[i].loc, "internal: output '%s' refers to no node",
			              g->outputs[i].name);
}
