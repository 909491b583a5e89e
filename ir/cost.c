/* What a node costs: parameters it owns and multiply-accumulates it does,
 * counted the way torchvision and the ResNet paper count them. */
#include "ir.h"

int64_t ir_node_macs(const ir_graph *g, const ir_node *n)
{
	switch (n->op) {
	case IR_OP_CONV: {
		const ir_shape *x = &g->nodes[n->in[0]].shape;
		return ir_shape_count(&n->shape) * x->d[1] * n->kernel * n->kernel;
	}
	case IR_OP_LINEAR:
		return ir_shape_count(&n->shape) * g->nodes[n->in[0]].shape.d[1];
	/* A gradient does the forward's products once more, in another order. */
	case IR_OP_CONV_GRAD_INPUT: /* dy, w, x -> dx */
		return ir_shape_count(&g->nodes[n->in[0]].shape) * n->shape.d[1] * n->kernel *
		       n->kernel;
	case IR_OP_CONV_GRAD_WEIGHT: /* x, dy -> dw */
		return ir_shape_count(&g->nodes[n->in[1]].shape) * n->shape.d[1] * n->kernel *
		       n->kernel;
	case IR_OP_LINEAR_GRAD_INPUT: /* dy, w -> dx */
		return ir_shape_count(&n->shape) * g->nodes[n->in[0]].shape.d[1];
	case IR_OP_LINEAR_GRAD_WEIGHT: /* x, dy -> dw */
		return ir_shape_count(&n->shape) * g->nodes[n->in[0]].shape.d[0];
	default:
		return 0;
	}
}

int64_t ir_node_param_count(const ir_graph *g, const ir_node *n)
{
	int64_t total = 0;
	for (int i = ir_ops[n->op].args; i < n->n_in; i++) {
		const ir_node *p = &g->nodes[n->in[i]];
		if (p->op == IR_OP_PARAM && p->pkind == IR_PARAM_WEIGHT)
			total += ir_shape_count(&p->shape);
	}
	return total;
}

int64_t ir_graph_param_bytes(const ir_graph *g)
{
	int64_t total = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM)
			total += ir_shape_count(&g->nodes[i].shape) * (int64_t)sizeof(float);
	return total;
}
