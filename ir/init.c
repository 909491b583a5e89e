/* He initialisation (He et al., 2015): weights ~ N(0, 2 / fan_in), biases 0,
 * BatchNorm scale 1, shift 0, running mean 0, running variance 1. */
#include <math.h>
#include <stdlib.h>

#include "ir.h"
#include "runtime.h"

/* Each parameter draws from a stream seeded by its own name, so its values
 * do not shift when another layer of the model changes. */
static uint64_t name_seed(uint64_t seed, const char *name)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return seed * 0x9e3779b97f4a7c15ull ^ h;
}

/* Which op owns a param, and in which input slot, decides its initial
 * values; one pass over the graph finds every owner. */
typedef struct owner {
	const ir_node *node;
	int slot;
} owner;

static owner *find_owners(const ir_graph *g)
{
	owner *o = calloc((size_t)g->n_nodes, sizeof *o);
	if (!o)
		diag_fatal("out of memory");
	for (int i = 0; i < g->n_nodes; i++)
		for (int j = ir_ops[g->nodes[i].op].args; j < g->nodes[i].n_in; j++)
			o[g->nodes[i].in[j]] = (owner){&g->nodes[i], j};
	return o;
}

void ir_graph_init_he(ir_graph *g, uint64_t seed)
{
	owner *owners = find_owners(g);
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		int64_t count = ir_shape_count(&p->shape);
		if (!p->data)
			p->data = arena_array(&g->arena, (size_t)count, sizeof(float));
		const ir_node *o = owners[i].node;
		const ir_param_rule *r =
		    o ? ir_param_rule_of(o, owners[i].slot - ir_ops[o->op].args) : NULL;
		if (r && r->init == IR_INIT_HE) {
			int64_t fan_in = count / p->shape.d[0];
			float std = (float)sqrt(2.0 / (double)fan_in);
			rt_rng r;
			rt_rng_seed(&r, name_seed(seed, p->name));
			rt_rng_normal_fill(&r, p->data, (size_t)count, std);
		} else {
			bool one = r && r->init == IR_INIT_ONE;
			for (int64_t k = 0; k < count; k++)
				p->data[k] = one ? 1.0f : 0.0f;
		}
	}
	free(owners);
}
