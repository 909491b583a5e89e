/* A node's convolution or pooling window as the runtime's kernels take
 * it: one place for what the passes, the planner, the reference executor
 * and the code generator all need. */
#include "passes.h"

static int dim(const ir_shape *s, int i)
{
	return i < s->rank ? (int)s->d[i] : 1;
}

rt_conv passes_conv_geometry(const ir_node *nodes, const ir_node *n)
{
	/* the forward input: x, or conv_grad_input's shape reference (dy, w, x) */
	const ir_shape *x = &nodes[n->in[n->op == IR_OP_CONV_GRAD_INPUT ? 2 : 0]].shape;
	return rt_conv_make(dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), (int)n->out, (int)n->kernel,
	                    (int)n->stride, (int)n->pad);
}

rt_pool passes_pool_geometry(const ir_node *nodes, const ir_node *n)
{
	/* the forward input: x, or avgpool_grad's shape reference (dy, x) */
	const ir_shape *x = &nodes[n->in[n->op == IR_OP_AVGPOOL_GRAD ? 1 : 0]].shape;
	return rt_pool_make(dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), (int)n->kernel,
	                    (int)n->stride, (int)n->pad);
}
