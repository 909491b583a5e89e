/* Values the outputs never read: a typo in a model (h = relu(x) where
 * h = relu(h) was meant) leaves layers computed for nothing, and netcc
 * says so instead of compiling them silently. */
#include <stdlib.h>

#include "ir.h"

enum { UNUSED_MAX_REPORTED = 10 };

static bool same_place(const diag_loc *a, const diag_loc *b)
{
	return a->src == b->src && a->line == b->line && a->col == b->col;
}

int ir_graph_warn_unused(const ir_graph *g)
{
	bool *live = calloc((size_t)g->n_nodes + 1, sizeof *live);
	bool *read = calloc((size_t)g->n_nodes + 1, sizeof *read);
	if (!live || !read)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_outputs; i++)
		live[g->outputs[i].node] = true;
	/* operands come before the nodes that read them */
	for (int id = g->n_nodes - 1; id >= 0; id--)
		for (int k = 0; k < g->nodes[id].n_in; k++) {
			read[g->nodes[id].in[k]] = true;
			if (live[id])
				live[g->nodes[id].in[k]] = true;
		}
	int n = 0, more = 0;
	diag_loc seen[UNUSED_MAX_REPORTED];
	for (int id = 0; id < g->n_nodes; id++) {
		const ir_node *v = &g->nodes[id];
		/* a dead chain is reported once, at its end; a block repeated
		 * reports its line once */
		if (live[id] || read[id] || !(ir_ops[v->op].flags & OPF_USER))
			continue;
		bool dup = false;
		for (int k = 0; k < n && !dup; k++)
			dup = same_place(&seen[k], &v->loc);
		if (dup)
			continue;
		if (n == UNUSED_MAX_REPORTED) {
			more++;
			continue;
		}
		seen[n++] = v->loc;
		diag_warn_at(&v->loc, "this %s is computed but no output uses it",
		             ir_ops[v->op].name);
	}
	if (more)
		diag_warn("%d more values are computed but unused", more);
	for (int i = 0; i < g->n_inputs; i++)
		if (!live[g->inputs[i].node]) {
			diag_warn_at(&g->inputs[i].loc, "input '%s' is not used by any output",
			             g->inputs[i].name);
			n++;
		}
	free(live);
	free(read);
	return n + more;
}
