/* The textual form of a graph: what `netcc ir` and --dump-after print. */
#include "ir.h"

static void print_attrs(const ir_node *n, FILE *out)
{
	ir_attr_spec specs[IR_MAX_ATTRS];
	int ns = ir_op_attr_specs(n->op, specs, IR_MAX_ATTRS);
	if (ns == 0)
		return;
	fputs(" {", out);
	for (int i = 0; i < ns; i++) {
		const ir_attr_info *a = ir_attr_spec_info(&specs[i]);
		const char *base = (const char *)n + a->offset;
		fprintf(out, "%s%s=", i ? " " : "", a->name);
		switch (a->type) {
		case IR_ATTR_INT:
			fprintf(out, "%lld", (long long)*(const int64_t *)base);
			break;
		case IR_ATTR_BOOL:
			fputs(*(const bool *)base ? "true" : "false", out);
			break;
		case IR_ATTR_FLOAT:
			fprintf(out, "%g", *(const double *)base);
			break;
		}
	}
	fputc('}', out);
}

/* Where the planner put the value (and the kernel's scratch). */
static void print_mem(const ir_node *n, FILE *out)
{
	switch (n->mem) {
	case IR_MEM_ARENA:
		fprintf(out, " @arena+%lld", (long long)n->offset);
		break;
	case IR_MEM_WEIGHTS:
		fprintf(out, " @weights+%lld", (long long)n->offset);
		break;
	case IR_MEM_OUTPUT:
		fprintf(out, " @output%d", n->io);
		break;
	default:
		break;
	}
	if (n->scratch_bytes)
		fprintf(out, " scratch@arena+%lld:%lld", (long long)n->scratch,
		        (long long)n->scratch_bytes);
}

void ir_node_print(const ir_graph *g, int id, FILE *out)
{
	const ir_node *n = &g->nodes[id];
	char sb[128];
	fprintf(out, "  %%%d = %s", id, ir_ops[n->op].name);
	if (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) {
		fprintf(out, " %s%s : %s\n", n->name,
		        n->op == IR_OP_PARAM && n->pkind == IR_PARAM_BUFFER ? " (buffer)" : "",
		        ir_shape_str(&n->shape, sb, sizeof sb));
		return;
	}
	for (int i = 0; i < n->n_in; i++)
		fprintf(out, "%s%%%d", i ? ", " : " ", n->in[i]);
	print_attrs(n, out);
	if (n->residual)
		fprintf(out, " +%%%d", n->in[n->residual]);
	if (ir_ops[n->op].flags & OPF_ALGO) {
		fprintf(out, " algo=%s", ir_algo_names[n->algo]);
		if (n->algo == IR_ALGO_WINOGRAD)
			fprintf(out, " tile=%lld", (long long)n->tile);
	}
	if (n->relu)
		fputs(" relu", out);
	if (n->flat)
		fputs(" flat", out);
	if (n->op == IR_OP_PAD_CHANNELS && n->stride > 1)
		fprintf(out, " stride=%lld", (long long)n->stride);
	fprintf(out, " : %s", ir_shape_str(&n->shape, sb, sizeof sb));
	print_mem(n, out);
	if (n->name && *n->name)
		fprintf(out, "  # %s", n->name);
	fputc('\n', out);
}

void ir_graph_print(const ir_graph *g, FILE *out)
{
	fprintf(out, "model %s (batch %lld, %d nodes)\n", g->name, (long long)g->batch, g->n_nodes);
	for (int i = 0; i < g->n_nodes; i++)
		ir_node_print(g, i, out);
	for (int i = 0; i < g->n_outputs; i++)
		fprintf(out, "  output %s = %%%d\n", g->outputs[i].name, g->outputs[i].node);
	if (g->plan.done)
		fprintf(out,
		        "  plan: arena_bytes %lld, lower_bound_bytes %lld, naive_bytes %lld, "
		        "weight_bytes %lld, raw_bytes %lld\n",
		        (long long)g->plan.arena_bytes, (long long)g->plan.lower_bound_bytes,
		        (long long)g->plan.naive_bytes, (long long)g->plan.weight_bytes,
		        (long long)g->plan.raw_bytes);
}
