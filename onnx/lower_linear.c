/* The lowerings of the operators on rows of features: Flatten and
 * Reshape (to [N, rest] only), Gemm and MatMul (a linear layer, with the
 * bias PyTorch writes as an Add after a MatMul), and Softmax. Together
 * because netcc's linear layer takes [N, features]: these bring a tensor
 * there and compute on it. */
#include <string.h>

#include "lower_impl.h"

/* [N, ...] to [N, rest]: a flatten, or nothing where x is [N, C] already. */
static int lower_to_rows(ox_net *n, int node, ox_value *x)
{
	const ir_shape *s = shape_of(n, x);
	if (s->rank == 2) {
		alias(out_value(n, node), x);
		return 0;
	}
	return ox_lower_simple(n, node, IR_OP_FLATTEN, ir_shape2(s->d[0], ir_shape_row(s)), x);
}

int ox_lower_flatten(ox_net *n, int node)
{
	ox_value *x;
	int64_t axis;
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "axis") != 0 ||
	    ox_attr_int(n, node, "axis", 1, &axis) != 0 || ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	int rank = shape_of(n, x)->rank;
	if ((axis < 0 ? axis + rank : axis) != 1 || rank < 2)
		return ox_node_error(n, node,
		                     "axis = %lld of a rank-%d tensor; netcc flattens to [N, rest] "
		                     "(axis = 1)",
		                     (long long)axis, rank);
	return lower_to_rows(n, node, x);
}

int ox_lower_reshape(ox_net *n, int node)
{
	ox_value *x;
	ox_const t;
	int64_t allowzero;
	if (ox_inputs_count(n, node, 2, 2) != 0 || ox_attrs_allow(n, node, "allowzero") != 0 ||
	    ox_attr_int(n, node, "allowzero", 0, &allowzero) != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0 || ox_value_const(n, node, 1, OX_I64, &t) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	int64_t rest = ir_shape_row(s);
	bool ok = t.rank == 1 && t.count == 2 && s->rank >= 2;
	if (ok) {
		int64_t a = t.i[0], b = t.i[1];
		bool batch = (a == 0 && !allowzero) || a == OX_BATCH ||
		             (n->batch && a == n->batch) || (a == -1 && b == rest);
		bool row = b == -1 || b == rest || (b == 0 && !allowzero && s->rank == 2);
		ok = batch && row && !(a == -1 && b == -1);
	}
	if (!ok) {
		char want[256] = "a computed shape";
		if (t.rank == 1) {
			size_t o = (size_t)snprintf(want, sizeof want, "[");
			for (int64_t i = 0; i < t.count && i < 8 && o < sizeof want; i++)
				o += (size_t)snprintf(
				    want + o, sizeof want - o, "%s%s", i ? "," : "",
				    t.i[i] == OX_BATCH
				        ? "N"
				        : arena_printf(n->a, "%lld", (long long)t.i[i]));
			if (o < sizeof want)
				snprintf(want + o, sizeof want - o, "%s]",
				         t.count > 8 ? ",..." : "");
		}
		return ox_node_error(n, node,
		                     "reshapes to %s; netcc imports only a reshape to [N, -1] (a "
		                     "flatten)",
		                     want);
	}
	return lower_to_rows(n, node, x);
}

/* Gemm's B, or MatMul's: [out, in] as linear keeps it, transposed from
 * [in, out] where trans is false. */
static const float *linear_weight(ox_net *n, const ox_const *b, bool trans)
{
	if (trans)
		return b->f;
	int64_t in = b->dims[0], out = b->dims[1];
	float *w = arena_array(n->a, (size_t)(in * out) + 1, sizeof *w);
	for (int64_t i = 0; i < in; i++)
		for (int64_t o = 0; o < out; o++)
			w[o * in + i] = b->f[i * out + o];
	return w;
}

/* A bias for out features: [out], [1, out], or one value for all. */
static const float *linear_bias(ox_net *n, int node, int input, int64_t out)
{
	ox_const c;
	if (ox_value_const(n, node, input, OX_F32, &c) != 0)
		return NULL;
	bool row = (c.rank == 1 && c.dims[0] == out) ||
	           (c.rank == 2 && c.dims[0] == 1 && c.dims[1] == out);
	if (row)
		return c.f;
	if (c.count == 1) {
		float *b = arena_array(n->a, (size_t)out, sizeof *b);
		for (int64_t i = 0; i < out; i++)
			b[i] = c.f[0];
		return b;
	}
	ox_node_error(n, node,
	              "a bias of %lld values for %lld features; netcc's linear adds one "
	              "per feature",
	              (long long)c.count, (long long)out);
	return NULL;
}

static int linear_layer(ox_net *n, int node, ox_value *x, const float *w, int64_t out, int64_t in,
                        const float *bias, const char *hint, ox_value *result)
{
	if (out < 1 || out > MAX_CHANNELS)
		return ox_node_error(n, node, "%lld output features; netcc's linear takes 1 to %d",
		                     (long long)out, MAX_CHANNELS);
	ox_layer *l = ox_layer_new(n, IR_OP_LINEAR, node);
	l->in[0] = x->var, l->n_in = 1;
	l->out_ch = out, l->bias = bias != NULL, l->hint = hint;
	layer_param(l, w, ir_shape2(out, in));
	if (bias)
		layer_param(l, bias, ir_shape1(out));
	return ox_layer_result(n, l, result, ir_shape2(shape_of(n, x)->d[0], out));
}

static int linear_input(ox_net *n, int node, ox_value **x)
{
	if (ox_in_tensor(n, node, 0, false, x) != 0)
		return -1;
	if (shape_of(n, *x)->rank != 2)
		return ox_node_error(n, node,
		                     "multiplies a tensor of rank %d; netcc's linear takes "
		                     "[N, features] (Flatten first)",
		                     shape_of(n, *x)->rank);
	return 0;
}

int ox_lower_gemm(ox_net *n, int node)
{
	ox_value *x;
	ox_const b;
	int64_t ta, tb;
	double alpha, beta;
	if (ox_inputs_count(n, node, 2, 3) != 0 ||
	    ox_attrs_allow(n, node, "alpha beta transA transB") != 0 ||
	    ox_attr_int(n, node, "transA", 0, &ta) != 0 ||
	    ox_attr_int(n, node, "transB", 0, &tb) != 0 ||
	    ox_attr_float(n, node, "alpha", 1, &alpha) != 0 ||
	    ox_attr_float(n, node, "beta", 1, &beta) != 0 || linear_input(n, node, &x) != 0 ||
	    ox_value_const(n, node, 1, OX_F32, &b) != 0)
		return -1;
	bool bias = in_value(n, node, 2) != NULL;
	if (ta)
		return ox_node_error(n, node,
		                     "transA = 1; netcc's linear multiplies [N, in] rows "
		                     "(transA = 0)");
	if (alpha != 1 || (bias && beta != 1))
		return ox_node_error(n, node, "alpha = %g, beta = %g; netcc's linear takes 1 and 1",
		                     alpha, beta);
	int64_t in = shape_of(n, x)->d[1];
	if (b.rank != 2 || b.dims[tb ? 1 : 0] != in)
		return ox_node_error(n, node,
		                     "B does not take %lld features to others (transB = %lld)",
		                     (long long)in, (long long)tb);
	int64_t out = b.dims[tb ? 0 : 1];
	const float *c = NULL;
	if (bias && !(c = linear_bias(n, node, 2, out)))
		return -1;
	return linear_layer(n, node, x, linear_weight(n, &b, tb != 0), out, in, c,
	                    in_value(n, node, 1)->name, out_value(n, node));
}

/* MatMul by a constant, and the Add of a constant right after it that
 * PyTorch writes for a bias, as one linear layer. */
int ox_lower_matmul(ox_net *n, int node)
{
	ox_value *x;
	ox_const b;
	if (ox_inputs_count(n, node, 2, 2) != 0 || ox_attrs_allow(n, node, "") != 0 ||
	    linear_input(n, node, &x) != 0)
		return -1;
	if (in_value(n, node, 1)->kind == OXV_TENSOR)
		return ox_node_error(n, node,
		                     "multiplies two computed tensors; netcc's linear "
		                     "multiplies by a constant weight");
	if (ox_value_const(n, node, 1, OX_F32, &b) != 0)
		return -1;
	int64_t in = shape_of(n, x)->d[1];
	if (b.rank != 2 || b.dims[0] != in)
		return ox_node_error(n, node, "B does not take %lld features to others",
		                     (long long)in);
	int64_t out = b.dims[1];
	ox_value *result = out_value(n, node);
	const float *bias = NULL;
	int add = result->consumer;
	if (result->uses == 1 && !result->output && add >= 0 &&
	    !strcmp(n->g->node[add]->op_type, "Add") && n->g->node[add]->n_input == 2 &&
	    n->g->node[add]->n_attribute == 0) {
		int other = strcmp(n->g->node[add]->input[0], n->g->node[node]->output[0]) ? 0 : 1;
		ox_value *c = in_value(n, add, other);
		if (c && (c->kind == OXV_CONST || c->kind == OXV_LAZY)) {
			if (!(bias = linear_bias(n, add, other, out)))
				return -1;
			n->done[add] = true;
			result = out_value(n, add);
		}
	}
	return linear_layer(n, node, x, linear_weight(n, &b, false), out, in, bias,
	                    in_value(n, node, 1)->name, result);
}

int ox_lower_softmax(ox_net *n, int node)
{
	ox_value *x;
	int64_t axis;
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "axis") != 0 ||
	    ox_attr_int(n, node, "axis", n->opset < 13 ? 1 : -1, &axis) != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 2 || (axis < 0 ? axis + 2 : axis) != 1)
		return ox_node_error(n, node,
		                     "axis = %lld of a rank-%d tensor; netcc's softmax takes "
		                     "[N, classes] over the classes (axis 1)",
		                     (long long)axis, s->rank);
	return ox_lower_simple(n, node, IR_OP_SOFTMAX, *s, x);
}
