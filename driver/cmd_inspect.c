/* netcc ir / summary / params: looking at a model without running it. */
#include <stdio.h>
#include <string.h>

#include "driver.h"

int cmd_ir(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "ir");
	if (rc)
		return rc < 0 ? 0 : rc;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	ir_graph_print(g, stdout);
	ir_graph_free(g);
	return 0;
}

int cmd_summary(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "summary");
	if (rc)
		return rc < 0 ? 0 : rc;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	printf("model %s, batch %lld\n", g->name, (long long)g->batch);
	printf("%-40s %-15s %-18s %12s %14s\n", "layer", "op", "output", "params", "MACs");
	int64_t params = 0, buffers = 0, macs = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_PARAM) {
			if (n->pkind == IR_PARAM_BUFFER)
				buffers += ir_shape_count(&n->shape);
			continue;
		}
		char sb[96];
		int64_t p = ir_node_param_count(g, n), m = ir_node_macs(g, n);
		printf("%-40s %-15s %-18s %12lld %14lld\n", n->name ? n->name : "",
		       ir_ops[n->op].name, ir_shape_str(&n->shape, sb, sizeof sb), (long long)p,
		       (long long)m);
		params += p;
		macs += m;
	}
	printf("buffers: %lld (BatchNorm running statistics, not trained)\n", (long long)buffers);
	printf("params: %lld\n", (long long)params);
	printf("macs: %lld\n", (long long)macs);
	ir_graph_free(g);
	return 0;
}

int cmd_params(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "params");
	if (rc)
		return rc < 0 ? 0 : rc;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_PARAM)
			continue;
		char sb[96];
		printf("%s %s\n", n->name, ir_shape_str(&n->shape, sb, sizeof sb));
	}
	ir_graph_free(g);
	return 0;
}
