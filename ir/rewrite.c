/* Graph rewriting by rebuilding: passes that replace, fuse or drop nodes
 * emit a new array in topological order, so no pass patches indices. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

struct ir_rewriter {
	ir_graph *g; /* the new nodes go here */
	const ir_node *old;
	int n_old;
	int *map;
};

const ir_graph *ir_rewrite_graph(const ir_rewriter *rw)
{
	return rw->g;
}

int ir_rewrite_map(const ir_rewriter *rw, int old_id)
{
	if (old_id < 0 || old_id >= rw->n_old || rw->map[old_id] < 0)
		diag_fatal("internal: rewrite reads node %%%d before it was mapped", old_id);
	return rw->map[old_id];
}

int ir_rewrite_emit(ir_rewriter *rw, const ir_node *n)
{
	int id = ir_node_append(rw->g, n);
	if (n->op == IR_OP_PARAM)
		strmap_put(&rw->g->params, &rw->g->arena, n->name, id);
	return id;
}

int ir_rewrite_copy(ir_rewriter *rw, const ir_node *old)
{
	ir_node n = *old;
	for (int k = 0; k < n.n_in; k++)
		n.in[k] = ir_rewrite_map(rw, old->in[k]);
	return ir_rewrite_emit(rw, &n);
}

void ir_rewrite(ir_graph *g, ir_rewrite_fn *fn, void *ctx)
{
	ir_rewriter rw = {.g = g, .old = g->nodes, .n_old = g->n_nodes};
	rw.map = malloc((size_t)g->n_nodes * sizeof(int) + 1);
	if (!rw.map)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_nodes; i++)
		rw.map[i] = -1;
	ir_node *old = g->nodes;
	int n_old = g->n_nodes;
	g->nodes = NULL;
	g->n_nodes = g->cap_nodes = 0;
	g->params = (strmap){0};
	for (int i = 0; i < n_old; i++)
		rw.map[i] = fn(&rw, &old[i], i, ctx);
	for (int i = 0; i < g->n_inputs; i++)
		g->inputs[i].node = ir_rewrite_map(&rw, g->inputs[i].node);
	for (int i = 0; i < g->n_outputs; i++)
		g->outputs[i].node = ir_rewrite_map(&rw, g->outputs[i].node);
	free(rw.map);
	free(old);
}

int *ir_use_counts(const ir_graph *g)
{
	int *uses = calloc((size_t)g->n_nodes + 1, sizeof(int));
	if (!uses)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_in; k++)
			uses[g->nodes[i].in[k]]++;
	for (int i = 0; i < g->n_outputs; i++)
		uses[g->outputs[i].node]++;
	return uses;
}
