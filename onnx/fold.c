/* Shape arithmetic, done now. PyTorch writes x.view(x.size(0), -1) as
 * Shape -> Gather -> Unsqueeze -> Concat -> Reshape; with static shapes
 * every one of those is known at import but the batch, which stays a
 * symbol (OX_BATCH) for Reshape to recognise. */
#include <string.h>

#include "onnx_impl.h"

static int result(ox_net *n, int node, const ox_const *c)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (nd->n_output < 1 || !*nd->output[0])
		return ox_node_error(n, node, "has no output");
	ox_value *v = &n->val[ox_value_find(n, nd->output[0])];
	v->kind = OXV_CONST;
	v->c = *c;
	return 0;
}

static int inputs_need(ox_net *n, int node, size_t lo, size_t hi)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (nd->n_input < lo || nd->n_input > hi || !*nd->input[0])
		return ox_node_error(n, node, "takes %zu to %zu inputs, has %zu", lo, hi,
		                     nd->n_input);
	return 0;
}

static int fold_shape(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (inputs_need(n, node, 1, 1) != 0)
		return -1;
	ox_value *x = &n->val[ox_value_find(n, nd->input[0])];
	int64_t dims[OX_MAX_RANK];
	int rank;
	if (x->kind == OXV_TENSOR) {
		const ir_shape *s = &n->vars[x->var].shape;
		rank = s->rank;
		for (int i = 0; i < rank; i++)
			dims[i] = s->d[i];
		dims[0] = n->batch ? n->batch : OX_BATCH;
	} else {
		ox_const c;
		ox_dtype want = x->kind == OXV_CONST                                  ? x->c.dtype
		                : x->kind == OXV_LAZY && x->init->data_type == OX_I64 ? OX_I64
		                                                                      : OX_F32;
		if (ox_value_const(n, node, 0, want, &c) != 0)
			return -1;
		rank = c.rank;
		memcpy(dims, c.dims, sizeof dims);
	}
	int64_t start = 0, end = rank;
	if (ox_attr_int(n, node, "start", 0, &start) != 0 ||
	    ox_attr_int(n, node, "end", rank, &end) != 0)
		return -1;
	start = start < 0 ? start + rank : start;
	end = end < 0 ? end + rank : end;
	start = start < 0 ? 0 : start > rank ? rank : start;
	end = end < start ? start : end > rank ? rank : end;
	int64_t *d = arena_array(n->a, (size_t)rank + 1, sizeof *d);
	memcpy(d, dims + start, (size_t)(end - start) * sizeof *d);
	ox_const c = {
	    .dtype = OX_I64, .rank = 1, .dims = {end - start}, .count = end - start, .i = d};
	return result(n, node, &c);
}

static int fold_gather(ox_net *n, int node)
{
	ox_const data, idx;
	int64_t axis = 0;
	if (inputs_need(n, node, 2, 2) != 0 || ox_attr_int(n, node, "axis", 0, &axis) != 0)
		return -1;
	int v = ox_value_find(n, n->g->node[node]->input[0]);
	if (n->val[v].kind == OXV_TENSOR)
		return ox_node_error(n, node,
		                     "gathers from a computed tensor; netcc imports Gather only "
		                     "in shape arithmetic (Shape -> Gather -> Reshape)");
	if (ox_value_const(n, node, 0, OX_I64, &data) != 0 ||
	    ox_value_const(n, node, 1, OX_I64, &idx) != 0)
		return -1;
	if (data.rank != 1 || (axis != 0 && axis != -1) || idx.rank > 1)
		return ox_node_error(n, node,
		                     "netcc folds Gather only on a 1-D shape with scalar or 1-D "
		                     "indices");
	int64_t *d = arena_array(n->a, (size_t)idx.count + 1, sizeof *d);
	for (int64_t k = 0; k < idx.count; k++) {
		int64_t i = idx.i[k] < 0 ? idx.i[k] + data.count : idx.i[k];
		if (i < 0 || i >= data.count)
			return ox_node_error(n, node, "index %lld is outside [0, %lld)",
			                     (long long)idx.i[k], (long long)data.count);
		d[k] = data.i[i];
	}
	ox_const c = {
	    .dtype = OX_I64, .rank = idx.rank, .dims = {idx.count}, .count = idx.count, .i = d};
	return result(n, node, &c);
}

/* Unsqueeze and Squeeze: the same numbers, in another shape. */
static int fold_squeeze(ox_net *n, int node, bool un)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (inputs_need(n, node, 1, 2) != 0)
		return -1;
	int v = ox_value_find(n, nd->input[0]);
	if (n->val[v].kind == OXV_TENSOR)
		return ox_node_error(n, node,
		                     "reshapes a computed tensor; netcc imports %s only in shape "
		                     "arithmetic (use Flatten or Reshape to [N, -1])",
		                     un ? "Unsqueeze" : "Squeeze");
	ox_const data, axes = {.rank = 1};
	if (ox_value_const(n, node, 0, OX_I64, &data) != 0)
		return -1;
	const Onnx__AttributeProto *a = ox_attr(nd, "axes");
	if (nd->n_input > 1 && *nd->input[1]) {
		if (ox_value_const(n, node, 1, OX_I64, &axes) != 0)
			return -1;
	} else if (a) {
		axes.count = (int64_t)a->n_ints, axes.i = a->ints;
	} else if (un) {
		return ox_node_error(n, node, "has no axes");
	}
	int out_rank = un ? data.rank + (int)axes.count : data.rank;
	if (axes.count > OX_MAX_RANK || out_rank > OX_MAX_RANK || axes.rank > 1)
		return ox_node_error(n, node, "the result would have rank %d; at most %d", out_rank,
		                     OX_MAX_RANK);
	bool at[OX_MAX_RANK] = {0};
	int span = un ? out_rank : data.rank;
	for (int64_t k = 0; k < axes.count; k++) {
		int64_t ax = axes.i[k] < 0 ? axes.i[k] + span : axes.i[k];
		if (ax < 0 || ax >= span || at[ax])
			return ox_node_error(n, node, "axis %lld is out of range or repeated",
			                     (long long)axes.i[k]);
		at[ax] = true;
	}
	ox_const c = data;
	c.rank = 0;
	if (un) {
		for (int i = 0, j = 0; i < out_rank; i++)
			c.dims[c.rank++] = at[i] ? 1 : data.dims[j++];
	} else {
		for (int i = 0; i < data.rank; i++) {
			bool drop = axes.count ? at[i] : data.dims[i] == 1;
			if (drop && data.dims[i] != 1)
				return ox_node_error(n, node, "squeezes axis %d of size %lld", i,
				                     (long long)data.dims[i]);
			if (!drop)
				c.dims[c.rank++] = data.dims[i];
		}
	}
	return result(n, node, &c);
}

static int fold_concat(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	int64_t axis = 0;
	if (ox_attr_int(n, node, "axis", 0, &axis) != 0)
		return -1;
	if (axis != 0 && axis != -1)
		return ox_node_error(n, node, "netcc folds Concat only of 1-D shapes (axis 0)");
	int64_t total = 0;
	for (size_t i = 0; i < nd->n_input; i++) {
		int v = *nd->input[i] ? ox_value_find(n, nd->input[i]) : -1;
		if (v < 0)
			return ox_node_error(n, node, "input %zu is empty", i + 1);
		if (n->val[v].kind == OXV_TENSOR)
			return ox_node_error(
			    n, node,
			    "concatenates computed tensors; netcc imports Concat only "
			    "in shape arithmetic");
		ox_const c;
		if (ox_value_const(n, node, (int)i, OX_I64, &c) != 0)
			return -1;
		if (c.rank != 1)
			return ox_node_error(n, node, "netcc folds Concat only of 1-D shapes");
		total += c.count;
	}
	if (total > 64)
		return ox_node_error(n, node, "a shape of %lld values", (long long)total);
	int64_t *d = arena_array(n->a, (size_t)total + 1, sizeof *d), o = 0;
	for (size_t i = 0; i < nd->n_input; i++) {
		ox_const c;
		ox_value_const(n, node, (int)i, OX_I64, &c);
		memcpy(d + o, c.i, (size_t)c.count * sizeof *d);
		o += c.count;
	}
	ox_const c = {.dtype = OX_I64, .rank = 1, .dims = {total}, .count = total, .i = d};
	return result(n, node, &c);
}

static int fold_constant(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (nd->n_attribute != 1)
		return ox_node_error(n, node, "needs exactly one attribute, has %zu",
		                     nd->n_attribute);
	const Onnx__AttributeProto *a = nd->attribute[0];
	const char *key = a->name ? a->name : "";
	ox_const c = {.rank = 0, .count = 1};
	if (!strcmp(key, "value") && a->t) {
		return ox_tensor_decode(n, a->t,
		                        a->t->has_data_type && a->t->data_type == OX_I64 ? OX_I64
		                                                                         : OX_F32,
		                        arena_printf(n->a, "node '%s' (Constant): its value",
		                                     ox_node_label(n, node)),
		                        &c) != 0
		           ? -1
		           : result(n, node, &c);
	} else if (!strcmp(key, "value_float") && a->has_f) {
		float *f = arena_alloc(n->a, sizeof *f);
		*f = a->f;
		c.dtype = OX_F32, c.f = f;
	} else if (!strcmp(key, "value_int") && a->has_i) {
		int64_t *i = arena_alloc(n->a, sizeof *i);
		*i = a->i;
		c.dtype = OX_I64, c.i = i;
	} else if (!strcmp(key, "value_floats")) {
		/* copied: the model's memory goes before the weights do */
		c.dtype = OX_F32, c.rank = 1, c.dims[0] = c.count = (int64_t)a->n_floats;
		float *f = arena_array(n->a, a->n_floats + 1, sizeof *f);
		memcpy(f, a->floats, a->n_floats * sizeof *f);
		c.f = f;
	} else if (!strcmp(key, "value_ints")) {
		c.dtype = OX_I64, c.rank = 1, c.dims[0] = c.count = (int64_t)a->n_ints;
		int64_t *i = arena_array(n->a, a->n_ints + 1, sizeof *i);
		memcpy(i, a->ints, a->n_ints * sizeof *i);
		c.i = i;
	} else {
		return ox_node_error(n, node,
		                     "attribute '%s' is not supported; netcc reads value, "
		                     "value_float(s) and value_int(s)",
		                     key);
	}
	return result(n, node, &c);
}

int ox_fold_node(ox_net *n, int node)
{
	const char *op = n->g->node[node]->op_type;
	if (!strcmp(op, "Shape"))
		return fold_shape(n, node);
	if (!strcmp(op, "Gather"))
		return fold_gather(n, node);
	if (!strcmp(op, "Unsqueeze"))
		return fold_squeeze(n, node, true);
	if (!strcmp(op, "Squeeze"))
		return fold_squeeze(n, node, false);
	if (!strcmp(op, "Concat"))
		return fold_concat(n, node);
	if (!strcmp(op, "Constant"))
		return fold_constant(n, node);
	return 1;
}
