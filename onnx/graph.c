/* The model's own checks (opset, a graph, its inputs) and the values of
 * its graph: every name defined once, every read defined somewhere, the
 * nodes in an order where each follows what it reads, and which nodes the
 * outputs need at all. */
#include <string.h>

#include "onnx_impl.h"

static const char *str(const char *s)
{
	return s ? s : "";
}

int ox_value_find(ox_net *n, const char *name)
{
	return strmap_get(&n->values, name);
}

static int value_add(ox_net *n, const char *name, ox_kind kind, int producer)
{
	if (n->n_val == n->cap_val) {
		int cap = n->cap_val ? 2 * n->cap_val : 64;
		ox_value *v = arena_array(n->a, (size_t)cap, sizeof *v);
		if (n->n_val)
			memcpy(v, n->val, (size_t)n->n_val * sizeof *v);
		n->val = v, n->cap_val = cap;
	}
	int id = n->n_val++;
	n->val[id] =
	    (ox_value){.name = name, .kind = kind, .producer = producer, .consumer = -1, .var = -1};
	strmap_put(&n->values, n->a, name, id);
	return id;
}

static int opset_check(ox_net *n)
{
	const Onnx__ModelProto *m = n->model;
	bool found = false;
	for (size_t i = 0; i < m->n_opset_import; i++) {
		const char *d = str(m->opset_import[i]->domain);
		if (*d && strcmp(d, "ai.onnx") != 0)
			continue;
		found = true;
		n->opset = m->opset_import[i]->version;
	}
	if (!found)
		return ox_error(n, "no opset for the default domain (ai.onnx): not an ONNX model?");
	if (n->opset < OX_OPSET_MIN || n->opset > OX_OPSET_MAX)
		return ox_error(n,
		                "opset %lld of the default domain; netcc imports opsets %d to %d",
		                (long long)n->opset, OX_OPSET_MIN, OX_OPSET_MAX);
	return 0;
}

/* A model input: float32, rank 1 to 4, static but for the first
 * dimension (the batch). */
static int input_add(ox_net *n, const Onnx__ValueInfoProto *vi, int index)
{
	const char *name = str(vi->name);
	const Onnx__TypeProto *t = vi->type;
	if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
		return ox_error(n, "input '%s' is not a tensor; netcc's inputs are float32 tensors",
		                name);
	const Onnx__TypeProto__Tensor *tt = t->tensor_type;
	int64_t et = tt->has_elem_type ? tt->elem_type : 0;
	if (et != OX_F32)
		return ox_error(n,
		                "input '%s' is %s; netcc computes in float32 (export the model in "
		                "float32)",
		                name, ox_dtype_name(et));
	if (!tt->shape)
		return ox_error(n,
		                "input '%s' has no shape; netcc needs static shapes except the "
		                "batch (export with an example input)",
		                name);
	size_t rank = tt->shape->n_dim;
	if (rank < 1 || rank > IR_MAX_RANK)
		return ox_error(n, "input '%s' has rank %zu; netcc's tensors have rank 1 to %d",
		                name, rank, IR_MAX_RANK);
	ir_shape s = {.rank = (int)rank};
	for (size_t i = 0; i < rank; i++) {
		const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
		bool fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		if (i == 0) {
			int64_t b = fixed ? d->dim_value : 0;
			if (fixed && (b < 1 || b > OX_MAX_DIM))
				return ox_error(
				    n, "input '%s': the batch is %lld; netcc's limit is %d", name,
				    (long long)b, OX_MAX_DIM);
			if (index > 0 && b != n->batch)
				n->batch = 0; /* batches that differ: the .nn binds one N */
			else
				n->batch = b;
			s.d[0] = 1;
			continue;
		}
		if (!fixed)
			return ox_error(n,
			                "input '%s': dimension %zu is symbolic ('%s'); netcc needs "
			                "static shapes except the batch (export with a fixed image "
			                "size)",
			                name, i,
			                d->value_case ==
			                        ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
			                    ? str(d->dim_param)
			                    : "");
		if (d->dim_value < 1 || d->dim_value > OX_MAX_DIM)
			return ox_error(n, "input '%s': dimension %zu is %lld; netcc's limit is %d",
			                name, i, (long long)d->dim_value, OX_MAX_DIM);
		s.d[i] = d->dim_value;
	}
	if (ir_shape_count(&s) >= IR_MAX_ELEMS)
		return ox_error(n, "input '%s' has more than %lld elements per example", name,
		                (long long)IR_MAX_ELEMS);
	if (n->n_vars == n->cap_vars) {
		int cap = n->cap_vars ? 2 * n->cap_vars : 64;
		ox_var *v = arena_array(n->a, (size_t)cap, sizeof *v);
		if (n->n_vars)
			memcpy(v, n->vars, (size_t)n->n_vars * sizeof *v);
		n->vars = v, n->cap_vars = cap;
	}
	int var = n->n_vars++;
	n->vars[var] = (ox_var){.shape = s, .node = -1, .input = index, .input_name = name};
	int v = value_add(n, name, OXV_TENSOR, -1);
	n->val[v].var = var;
	return 0;
}

static int values_define(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	if (g->n_sparse_initializer)
		return ox_error(n, "sparse initializers are not supported; store them dense");
	for (size_t i = 0; i < g->n_initializer; i++) {
		const char *name = str(g->initializer[i]->name);
		if (!*name)
			return ox_error(n, "initializer %zu has no name", i);
		if (ox_value_find(n, name) >= 0)
			return ox_error(n, "initializer '%s' is defined twice", name);
		int v = value_add(n, name, OXV_LAZY, -1);
		n->val[v].init = g->initializer[i];
	}
	int inputs = 0;
	for (size_t i = 0; i < g->n_input; i++) {
		const char *name = str(g->input[i]->name);
		int v = ox_value_find(n, name);
		if (v >= 0 && n->val[v].kind == OXV_LAZY)
			continue; /* an initializer listed as an input too (IR version 3) */
		if (!*name)
			return ox_error(n, "input %zu has no name", i);
		if (v >= 0)
			return ox_error(n, "input '%s' is declared twice", name);
		if (inputs == IR_MAX_IO)
			return ox_error(n, "more than %d inputs; netcc models take %d at most",
			                IR_MAX_IO, IR_MAX_IO);
		if (input_add(n, g->input[i], inputs++) != 0)
			return -1;
	}
	if (!inputs)
		return ox_error(n, "the graph has no inputs; netcc compiles models of inputs");
	for (size_t k = 0; k < g->n_node; k++) {
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t o = 0; o < nd->n_output; o++) {
			const char *name = nd->output[o];
			if (!*name)
				continue; /* an optional output left out */
			int v = ox_value_find(n, name);
			if (v >= 0) {
				int p = n->val[v].producer;
				if (p < 0)
					return ox_node_error(
					    n, (int)k,
					    "defines '%s', an input or initializer of the "
					    "graph already",
					    name);
				return ox_node_error(n, (int)k,
				                     "defines '%s', which node '%s' defines too",
				                     name, ox_node_label(n, p));
			}
			value_add(n, name, OXV_UNDEF, (int)k);
		}
	}
	return 0;
}

static int reads_check(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	for (size_t k = 0; k < g->n_node; k++) {
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++)
			if (*nd->input[i] && ox_value_find(n, nd->input[i]) < 0)
				return ox_node_error(
				    n, (int)k,
				    "reads '%s', which no initializer, graph input or "
				    "node defines",
				    nd->input[i]);
	}
	if (!g->n_output)
		return ox_error(n, "the graph has no outputs");
	if (g->n_output > IR_MAX_IO)
		return ox_error(n, "%zu outputs; netcc models give %d at most", g->n_output,
		                IR_MAX_IO);
	n->n_outputs = (int)g->n_output;
	n->outputs = arena_array(n->a, g->n_output, sizeof *n->outputs);
	for (size_t i = 0; i < g->n_output; i++) {
		const char *name = str(g->output[i]->name);
		int v = ox_value_find(n, name);
		if (v < 0)
			return ox_error(n, "output '%s' is not defined by any node", name);
		for (size_t j = 0; j < i; j++)
			if (n->outputs[j] == v)
				return ox_error(n, "output '%s' is listed twice", name);
		n->outputs[i] = v;
		n->val[v].output = true;
	}
	return 0;
}

/* ONNX asks for nodes in an order where each follows what it reads: then
 * that order stays, the one the .nn file reads best in. */
static bool order_given(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	for (size_t k = 0; k < g->n_node; k++) {
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++)
			if (*nd->input[i] &&
			    n->val[ox_value_find(n, nd->input[i])].producer >= (int)k)
				return false;
	}
	for (size_t k = 0; k < g->n_node; k++)
		n->order[k] = (int)k;
	return true;
}

/* Otherwise Kahn's algorithm: a node is ready once every value it reads
 * is. What is left over sits on a cycle or after one; following unready
 * producers from the first of them must come back to a node: that one is
 * on it. */
static int order_nodes(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	int nn = (int)g->n_node;
	n->order = arena_array(n->a, (size_t)nn + 1, sizeof *n->order);
	if (order_given(n))
		return 0;
	int *waiting = arena_array(n->a, (size_t)nn + 1, sizeof *waiting);
	bool *placed = arena_array(n->a, (size_t)nn + 1, sizeof *placed);
	/* readers of each value, as lists through one array */
	int total = 0;
	for (int k = 0; k < nn; k++)
		total += (int)g->node[k]->n_input;
	int *head = arena_array(n->a, (size_t)n->n_val, sizeof *head);
	int *next = arena_array(n->a, (size_t)total + 1, sizeof *next);
	int *reader = arena_array(n->a, (size_t)total + 1, sizeof *reader);
	for (int v = 0; v < n->n_val; v++)
		head[v] = -1;
	int e = 0;
	for (int k = 0; k < nn; k++) {
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++) {
			if (!*nd->input[i])
				continue;
			int v = ox_value_find(n, nd->input[i]);
			if (n->val[v].producer < 0)
				continue;
			waiting[k]++;
			reader[e] = k, next[e] = head[v], head[v] = e++;
		}
	}
	int done = 0;
	for (int k = 0; k < nn; k++)
		if (!waiting[k])
			n->order[done++] = k, placed[k] = true;
	for (int q = 0; q < done; q++) {
		const Onnx__NodeProto *nd = g->node[n->order[q]];
		for (size_t o = 0; o < nd->n_output; o++) {
			if (!*nd->output[o])
				continue;
			for (int r = head[ox_value_find(n, nd->output[o])]; r >= 0; r = next[r])
				if (--waiting[reader[r]] == 0)
					n->order[done++] = reader[r], placed[reader[r]] = true;
		}
	}
	if (done == nn)
		return 0;
	int k = 0;
	while (placed[k])
		k++;
	bool *seen = arena_array(n->a, (size_t)nn, sizeof *seen);
	while (!seen[k]) {
		seen[k] = true;
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++) {
			int v = *nd->input[i] ? ox_value_find(n, nd->input[i]) : -1;
			if (v >= 0 && n->val[v].producer >= 0 && !placed[n->val[v].producer]) {
				k = n->val[v].producer;
				break;
			}
		}
	}
	return ox_node_error(n, k, "the graph has a cycle through this node");
}

/* Nodes no output depends on are left out (and so are not checked). */
static void mark_live(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	n->live = arena_array(n->a, g->n_node + 1, sizeof *n->live);
	n->done = arena_array(n->a, g->n_node + 1, sizeof *n->done);
	for (int i = 0; i < n->n_outputs; i++) {
		int p = n->val[n->outputs[i]].producer;
		if (p >= 0)
			n->live[p] = true;
		n->val[n->outputs[i]].uses++;
	}
	for (int q = (int)g->n_node - 1; q >= 0; q--) {
		int k = n->order[q];
		if (!n->live[k])
			continue;
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++) {
			if (!*nd->input[i])
				continue;
			ox_value *v = &n->val[ox_value_find(n, nd->input[i])];
			if (v->producer >= 0)
				n->live[v->producer] = true;
		}
	}
	for (int q = 0; q < (int)g->n_node; q++) {
		int k = n->order[q];
		if (!n->live[k])
			continue;
		const Onnx__NodeProto *nd = g->node[k];
		for (size_t i = 0; i < nd->n_input; i++) {
			if (!*nd->input[i])
				continue;
			ox_value *v = &n->val[ox_value_find(n, nd->input[i])];
			v->uses++;
			if (v->consumer < 0)
				v->consumer = k;
		}
	}
}

int ox_graph_build(ox_net *n)
{
	if (!n->model->graph)
		return ox_error(n, "no graph: not an ONNX model");
	if (opset_check(n) != 0)
		return -1;
	n->g = n->model->graph;
	if (values_define(n) != 0 || reads_check(n) != 0 || order_nodes(n) != 0)
		return -1;
	mark_live(n);
	return 0;
}
