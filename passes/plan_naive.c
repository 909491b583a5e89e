/* Naive memory planning: every intermediate gets its own bytes of the
 * arena. The real planner (plan.c) reuses memory; this is -O0, and the
 * baseline its report compares against. */
#include <stdlib.h>

#include "passes.h"
#include "runtime.h"

enum { ALIGN = 64 };

static int64_t align(int64_t x)
{
	return (x + ALIGN - 1) / ALIGN * ALIGN;
}

static int64_t bytes(const ir_node *n)
{
	return ir_shape_count(&n->shape) * (int64_t)sizeof(float);
}

int64_t plan_scratch_bytes(const ir_graph *g, const ir_node *n)
{
	rt_conv p = {0};
	if (n->op == IR_OP_CONV || n->op == IR_OP_CONV_GRAD_INPUT ||
	    n->op == IR_OP_CONV_GRAD_WEIGHT)
		p = passes_conv_geometry(g->nodes, n);
	bool wino = n->algo == IR_ALGO_WINOGRAD;
	size_t floats = 0;
	/* the direct kernels take panels of their own, or fall back on the
	 * GEMM, whose scratch they are given */
	switch (n->op) {
	case IR_OP_CONV:
		floats = wino ? rt_winograd_scratch_floats(&p, (int)n->tile)
		              : rt_conv2d_scratch_floats(&p);
		break;
	case IR_OP_CONV_GRAD_INPUT:
		floats = wino ? rt_winograd_grad_input_scratch_floats(&p)
		              : rt_conv2d_grad_scratch_floats(&p);
		break;
	case IR_OP_CONV_GRAD_WEIGHT:
		floats = wino ? rt_winograd_grad_weight_scratch_floats(&p)
		              : rt_conv2d_grad_weight_scratch_floats(&p);
		break;
	default:
		break;
	}
	return (int64_t)floats * (int64_t)sizeof(float);
}

/* Which nodes the compiled code reads or computes, which run at weight
 * preparation, and where params and outputs go: shared by both planners. */
void plan_roles(ir_graph *g)
{
	bool *used = calloc((size_t)g->n_nodes, sizeof(bool));
	if (!used)
		diag_fatal("out of memory");
	/* A graph that writes its params (a training step) changes them every
	 * run: what it computes from them cannot be prepared once. */
	bool params_change = false;
	for (int i = 0; i < g->n_nodes; i++)
		params_change |= (ir_ops[g->nodes[i].op].flags & OPF_EFFECT) != 0;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *n = &g->nodes[i];
		n->mem = IR_MEM_NONE;
		n->prep = n->op == IR_OP_PARAM;
		if (n->op != IR_OP_PARAM && n->op != IR_OP_INPUT && !params_change) {
			n->prep = true;
			for (int k = 0; k < n->n_in; k++)
				n->prep &= g->nodes[n->in[k]].prep;
		}
	}
	g->plan.raw_bytes = 0;
	g->plan.weight_bytes = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_PARAM) {
			n->raw_offset = g->plan.raw_bytes;
			g->plan.raw_bytes += align(bytes(n));
		}
		/* what the forward reads, and what a prepared value reads
		 * besides raw params (a folded weight that is then transformed) */
		for (int k = 0; k < n->n_in; k++)
			if (!n->prep || g->nodes[n->in[k]].op != IR_OP_PARAM)
				used[n->in[k]] = true;
	}
	for (int i = 0; i < g->n_outputs; i++)
		used[g->outputs[i].node] = true;
	/* The prepared weights hold what the forward code reads from params. */
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *n = &g->nodes[i];
		if (n->prep && used[i]) {
			n->mem = IR_MEM_WEIGHTS;
			n->offset = g->plan.weight_bytes;
			g->plan.weight_bytes += align(bytes(n));
		}
	}
	for (int i = 0; i < g->n_inputs; i++) {
		ir_node *n = &g->nodes[g->inputs[i].node];
		n->mem = IR_MEM_INPUT;
		n->io = i;
	}
	/* A computed output is written straight into the caller's buffer. */
	for (int i = g->n_outputs - 1; i >= 0; i--) {
		ir_node *n = &g->nodes[g->outputs[i].node];
		if (n->mem == IR_MEM_NONE || (n->mem == IR_MEM_OUTPUT && n->io > i)) {
			n->mem = IR_MEM_OUTPUT;
			n->io = i;
		}
	}
	free(used);
}

void plan_naive(ir_graph *g)
{
	plan_roles(g);
	int64_t top = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *n = &g->nodes[i];
		if (n->prep || n->op == IR_OP_INPUT || (ir_ops[n->op].flags & OPF_EFFECT))
			continue;
		if (n->mem == IR_MEM_NONE) {
			n->mem = IR_MEM_ARENA;
			n->offset = top;
			top += align(bytes(n));
		}
	}
	g->plan.naive_bytes = top;
	/* Kernels run one at a time: they share one scratch region. */
	int64_t scratch = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *n = &g->nodes[i];
		n->scratch_bytes = n->prep ? 0 : plan_scratch_bytes(g, n);
		n->scratch = top;
		if (n->scratch_bytes > scratch)
			scratch = n->scratch_bytes;
	}
	g->plan.arena_bytes = top + align(scratch);
	g->plan.lower_bound_bytes = 0;
	g->plan.done = true;
}
