/* What every lowering reads from its node and makes of it: attributes
 * of the type ONNX defines, present only where the lowering reads them;
 * inputs as computed tensors, optional ones left out at the end; outputs
 * nothing else may read; and the layer with its result's variable. Apart
 * from the operators (lower_window.c, lower_pointwise.c, lower_linear.c)
 * because it is theirs in common: one place says what is refused and
 * how. */
#include <string.h>

#include "lower_impl.h"

/* ---- attributes ------------------------------------------------------------ */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *nd, const char *name)
{
	for (size_t i = 0; i < nd->n_attribute; i++)
		if (nd->attribute[i]->name && !strcmp(nd->attribute[i]->name, name))
			return nd->attribute[i];
	return NULL;
}

static int attr_type_error(ox_net *n, int node, const char *name, const char *want)
{
	return ox_node_error(n, node, "attribute '%s' must be %s", name, want);
}

int ox_attr_int(ox_net *n, int node, const char *name, int64_t def, int64_t *out)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*out = def;
	if (!a)
		return 0;
	if (!a->has_i)
		return attr_type_error(n, node, name, "an integer");
	*out = a->i;
	return 0;
}

int ox_attr_float(ox_net *n, int node, const char *name, double def, double *out)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*out = def;
	if (!a)
		return 0;
	if (!a->has_f)
		return attr_type_error(n, node, name, "a float");
	*out = a->f;
	return 0;
}

/* The attribute's integers; *count 0 where it is absent. */
int ox_attr_ints(ox_net *n, int node, const char *name, const int64_t **v, size_t *count)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*v = NULL, *count = 0;
	if (!a)
		return 0;
	if (a->has_i || a->n_floats || a->has_f || a->has_s || a->t)
		return attr_type_error(n, node, name, "a list of integers");
	*v = a->ints, *count = a->n_ints;
	return 0;
}

/* "" where absent */
int ox_attr_string(ox_net *n, int node, const char *name, char *buf, size_t len)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	buf[0] = 0;
	if (!a)
		return 0;
	if (!a->has_s)
		return attr_type_error(n, node, name, "a string");
	snprintf(buf, len, "%.*s", (int)(a->s.len < len ? a->s.len : len - 1), a->s.data);
	return 0;
}

/* Every attribute the node has must be one that its lowering reads. */
int ox_attrs_allow(ox_net *n, int node, const char *known)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	for (size_t i = 0; i < nd->n_attribute; i++) {
		const char *name = nd->attribute[i]->name ? nd->attribute[i]->name : "";
		size_t len = strlen(name);
		const char *p = known;
		bool ok = false;
		while (*p && !ok) {
			size_t w = strcspn(p, " ");
			ok = w == len && !strncmp(p, name, len);
			p += w + (p[w] == ' ');
		}
		if (!ok)
			return ox_node_error(n, node,
			                     "attribute '%s' is not supported (netcc reads %s)",
			                     name, *known ? known : "none");
	}
	return 0;
}

/* ---- values and layers -------------------------------------------------------- */

/* Input i as a computed tensor; pad_ok: a pending zero Pad may come with it. */
int ox_in_tensor(ox_net *n, int node, int i, bool pad_ok, ox_value **out)
{
	ox_value *v = in_value(n, node, i);
	if (!v)
		return ox_node_error(n, node, "input %d is missing", i + 1);
	if (v->kind != OXV_TENSOR)
		return ox_node_error(n, node,
		                     "input %d ('%s') is a constant; netcc computes layers of "
		                     "inputs (export with do_constant_folding=True)",
		                     i + 1, v->name);
	if (v->pad && !pad_ok)
		return ox_node_error(n, node,
		                     "reads '%s', a Pad's result; netcc folds a zero Pad only into "
		                     "the Conv or AveragePool that reads it",
		                     v->name);
	*out = v;
	return 0;
}

int ox_inputs_count(ox_net *n, int node, size_t lo, size_t hi)
{
	size_t k = n->g->node[node]->n_input;
	while (k > 0 && !*n->g->node[node]->input[k - 1])
		k--; /* optional inputs left out at the end */
	if (k < lo || k > hi)
		return ox_node_error(n, node, "has %zu inputs; the operator takes %zu to %zu", k,
		                     lo, hi);
	return 0;
}

/* Outputs past the first (BatchNorm's statistics, MaxPool's indices,
 * Dropout's mask) are training or debugging results nothing may read. */
int ox_extra_outputs_unused(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (nd->n_output < 1 || !*nd->output[0])
		return ox_node_error(n, node, "has no output");
	for (size_t o = 1; o < nd->n_output; o++) {
		if (!*nd->output[o])
			continue;
		const ox_value *v = &n->val[ox_value_find(n, nd->output[o])];
		if (v->uses)
			return ox_node_error(
			    n, node,
			    "its output %zu ('%s') is used; netcc computes only the "
			    "first (export in eval mode)",
			    o + 1, v->name);
	}
	return 0;
}

static int var_new(ox_net *n, int node, ox_value *out, ir_shape s)
{
	if (ir_shape_count(&s) >= IR_MAX_ELEMS) {
		char b[96];
		return ox_node_error(n, node,
		                     "its result %s has more than %lld elements per example",
		                     ir_shape_str(&s, b, sizeof b), (long long)IR_MAX_ELEMS);
	}
	if (n->n_vars == n->cap_vars) {
		int cap = n->cap_vars ? 2 * n->cap_vars : 64;
		ox_var *v = arena_array(n->a, (size_t)cap, sizeof *v);
		memcpy(v, n->vars, (size_t)n->n_vars * sizeof *v);
		n->vars = v, n->cap_vars = cap;
	}
	n->vars[n->n_vars] = (ox_var){.shape = s, .node = node, .input = -1};
	out->kind = OXV_TENSOR;
	out->var = n->n_vars++;
	out->pad = 0;
	return out->var;
}

ox_layer *ox_layer_new(ox_net *n, ir_op op, int node)
{
	if (n->n_layers == n->cap_layers) {
		int cap = n->cap_layers ? 2 * n->cap_layers : 64;
		ox_layer *l = arena_array(n->a, (size_t)cap, sizeof *l);
		if (n->n_layers)
			memcpy(l, n->layers, (size_t)n->n_layers * sizeof *l);
		n->layers = l, n->cap_layers = cap;
	}
	ox_layer *l = &n->layers[n->n_layers++];
	*l = (ox_layer){.op = op, .node = node, .out = -1};
	return l;
}

/* Finishes l: its result, a new variable of shape s for out. */
int ox_layer_result(ox_net *n, ox_layer *l, ox_value *out, ir_shape s)
{
	int v = var_new(n, l->node, out, s);
	if (v < 0) {
		n->n_layers--;
		return -1;
	}
	l->out = v;
	return 0;
}

/* Relu, GlobalAveragePool, Softmax: one tensor in, no weights. */
int ox_lower_simple(ox_net *n, int node, ir_op op, ir_shape s, ox_value *x)
{
	ox_layer *l = ox_layer_new(n, op, node);
	l->in[0] = x->var, l->n_in = 1;
	return ox_layer_result(n, l, out_value(n, node), s);
}
