/* The lowerings of the operators that work element by element or pass
 * their input through: BatchNormalization (inference's, per channel),
 * Relu, Add (of two computed tensors of one shape), Identity and
 * Dropout. Apart from the windows and the linear layers because they
 * change no shape: what they check is what they read, not a geometry. */
#include <string.h>

#include "lower_impl.h"

int ox_lower_batchnorm(ox_net *n, int node)
{
	ox_value *x;
	ox_const p[4];
	double eps;
	int64_t spatial, training;
	if (ox_inputs_count(n, node, 5, 5) != 0 ||
	    ox_attrs_allow(n, node, "epsilon momentum spatial training_mode") != 0 ||
	    ox_attr_float(n, node, "epsilon", 1e-5, &eps) != 0 ||
	    ox_attr_int(n, node, "spatial", 1, &spatial) != 0 ||
	    ox_attr_int(n, node, "training_mode", 0, &training) != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0 || ox_extra_outputs_unused(n, node) != 0)
		return -1;
	if (spatial != 1)
		return ox_node_error(n, node,
		                     "spatial = 0 (statistics per position); netcc's "
		                     "batchnorm keeps them per channel (spatial = 1)");
	if (training)
		return ox_node_error(n, node,
		                     "training_mode = 1; netcc imports inference graphs "
		                     "(export in eval mode)");
	if (!(eps > 0 && eps < 1))
		return ox_node_error(n, node, "epsilon = %g; netcc takes one in (0, 1)", eps);
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 4 && s->rank != 2)
		return ox_node_error(n, node,
		                     "normalises a tensor of rank %d; netcc's batchnorm takes "
		                     "[N, C, H, W] or [N, C]",
		                     s->rank);
	static const char *const what[4] = {"scale", "bias", "mean", "variance"};
	for (int i = 0; i < 4; i++) {
		if (ox_value_const(n, node, i + 1, OX_F32, &p[i]) != 0)
			return -1;
		if (p[i].rank != 1 || p[i].dims[0] != s->d[1])
			return ox_node_error(n, node, "its %s has %lld values for %lld channels",
			                     what[i], (long long)p[i].count, (long long)s->d[1]);
	}
	ox_layer *l = ox_layer_new(n, IR_OP_BATCHNORM, node);
	l->in[0] = x->var, l->n_in = 1;
	l->eps = eps;
	l->hint = in_value(n, node, 1)->name;
	for (int i = 0; i < 4; i++)
		layer_param(l, p[i].f, ir_shape1(s->d[1]));
	return ox_layer_result(n, l, out_value(n, node), *s);
}

int ox_lower_relu(ox_net *n, int node)
{
	ox_value *x;
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "") != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	return ox_lower_simple(n, node, IR_OP_RELU, *shape_of(n, x), x);
}

int ox_lower_unary(ox_net *n, int node)
{
	static const struct {
		const char *onnx;
		ir_op op;
	} unary[] = {
#define UNARY(e, name, onnx) {onnx, IR_OP_##e},
#include "ops.def"
	};
	const char *type = n->g->node[node]->op_type;
	ox_value *x;
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "") != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	for (size_t i = 0; i < sizeof unary / sizeof *unary; i++)
		if (!strcmp(type, unary[i].onnx))
			return ox_lower_simple(n, node, unary[i].op, *shape_of(n, x), x);
	return ox_node_error(n, node, "internal: no UNARY op is %s", type);
}

int ox_lower_add(ox_net *n, int node)
{
	if (ox_inputs_count(n, node, 2, 2) != 0 || ox_attrs_allow(n, node, "") != 0)
		return -1;
	ox_value *a = in_value(n, node, 0), *b = in_value(n, node, 1);
	if (!a || !b)
		return ox_node_error(n, node, "has an input missing");
	if (a->kind != OXV_TENSOR || b->kind != OXV_TENSOR)
		return ox_node_error(n, node,
		                     "adds a constant; netcc imports that only as the bias right "
		                     "after a MatMul (a linear layer) or Gemm");
	if (ox_in_tensor(n, node, 0, false, &a) != 0 || ox_in_tensor(n, node, 1, false, &b) != 0)
		return -1;
	const ir_shape *sa = shape_of(n, a), *sb = shape_of(n, b);
	if (!ir_shape_eq(sa, sb)) {
		char ta[96], tb[96];
		return ox_node_error(n, node,
		                     "adds %s and %s; netcc adds tensors of the same shape (no "
		                     "broadcasting)",
		                     ir_shape_str(sa, ta, sizeof ta),
		                     ir_shape_str(sb, tb, sizeof tb));
	}
	ox_layer *l = ox_layer_new(n, IR_OP_ADD, node);
	l->in[0] = a->var, l->in[1] = b->var, l->n_in = 2;
	return ox_layer_result(n, l, out_value(n, node), *sa);
}

int ox_lower_identity(ox_net *n, int node)
{
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "") != 0)
		return -1;
	alias(out_value(n, node), in_value(n, node, 0));
	return 0;
}

/* Inference's Dropout passes its input through. */
int ox_lower_dropout(ox_net *n, int node)
{
	ox_value *x;
	if (ox_inputs_count(n, node, 1, 3) != 0 ||
	    ox_attrs_allow(n, node, "ratio seed is_test") != 0 ||
	    ox_extra_outputs_unused(n, node) != 0 || ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	/* training_mode, where given, must be a false bool initializer */
	const ox_value *t = in_value(n, node, 2);
	const Onnx__TensorProto *init = t && t->kind == OXV_LAZY ? t->init : NULL;
	bool off = init && init->has_data_type && init->data_type == 9 &&
	           ((init->raw_data.len == 1 && !init->raw_data.data[0]) ||
	            (init->n_int32_data == 1 && !init->int32_data[0]));
	if (t && !off)
		return ox_node_error(n, node,
		                     "may run in training mode; netcc imports inference "
		                     "graphs (export in eval mode)");
	alias(out_value(n, node), x);
	return 0;
}
