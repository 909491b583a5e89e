/* Each node as netcc layers. Shapes are followed through the graph so
 * that a node netcc cannot run the way ONNX defines it is refused here,
 * named, rather than computed differently.
 *
 * This file dispatches each node to its operator's lowering and checks
 * the graph's outputs; the lowerings are lower_window.c,
 * lower_pointwise.c and lower_linear.c, what they share lower_node.c. */
#include <string.h>

#include "lower_impl.h"

typedef int lower_fn(ox_net *n, int node);

static const struct {
	const char *op;
	lower_fn *fn;
} lowerings[] = {
    {"Add", ox_lower_add},
    {"AveragePool", ox_lower_avgpool},
    {"BatchNormalization", ox_lower_batchnorm},
    {"Conv", ox_lower_conv},
    {"Dropout", ox_lower_dropout},
    {"Flatten", ox_lower_flatten},
    {"Gemm", ox_lower_gemm},
    {"GlobalAveragePool", ox_lower_global_avgpool},
    {"Identity", ox_lower_identity},
    {"MatMul", ox_lower_matmul},
    {"MaxPool", ox_lower_maxpool},
    {"Pad", ox_lower_pad},
    {"Relu", ox_lower_relu},
    {"Reshape", ox_lower_reshape},
    {"Slice", ox_lower_slice},
    {"Softmax", ox_lower_softmax},
#define UNARY(e, name, onnx) {onnx, ox_lower_unary},
#include "ops.def"
};
enum { N_LOWERINGS = sizeof lowerings / sizeof *lowerings };

static const char *const folded[] = {"Concat", "Constant", "Gather",
                                     "Shape",  "Squeeze",  "Unsqueeze"};
enum { N_FOLDED = sizeof folded / sizeof *folded };

/* What to use instead, for operators people meet in exported models. */
static const struct {
	const char *op, *instead;
} closest[] = {
    {"LeakyRelu", "Relu"},
    {"PRelu", "Relu"},
    {"Elu", "Relu"},
    {"Selu", "Relu"},
    {"Celu", "Relu"},
    {"Gelu", "Relu"},
    {"Clip", "Relu (ReLU6 is Clip)"},
    {"HardSigmoid", "Relu"},
    {"HardSwish", "Relu"},
    {"Tanh", "Relu"},
    {"Softplus", "Relu"},
    {"Mish", "Relu"},
    {"ConvTranspose", "Conv"},
    {"ConvInteger", "Conv"},
    {"QLinearConv", "Conv"},
    {"Sub", "Add (of two tensors of the same shape)"},
    {"Mul", "Add (of two tensors of the same shape)"},
    {"Div", "Add (of two tensors of the same shape)"},
    {"Sum", "Add (of two tensors of the same shape)"},
    {"ReduceMean", "GlobalAveragePool (a mean over H and W)"},
    {"GlobalMaxPool", "MaxPool"},
    {"LpPool", "AveragePool"},
    {"GlobalLpPool", "GlobalAveragePool"},
    {"LogSoftmax", "Softmax"},
    {"InstanceNormalization", "BatchNormalization"},
    {"LayerNormalization", "BatchNormalization"},
    {"GroupNormalization", "BatchNormalization"},
    {"LRN", "BatchNormalization"},
    {"Transpose", "Flatten"},
    {"Expand", "Reshape to [N, -1]"},
    {"Cast", "nothing: netcc computes in float32 throughout"},
    {"MatMulInteger", "MatMul"},
    {"Einsum", "MatMul"},
};

static int unsupported(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	const char *op = nd->op_type ? nd->op_type : "";
	if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
		return ox_node_error(n, node,
		                     "operator of domain '%s' not supported; netcc imports the "
		                     "default domain's (ai.onnx)",
		                     nd->domain);
	for (size_t i = 0; i < sizeof closest / sizeof *closest; i++)
		if (!strcmp(op, closest[i].op))
			return ox_node_error(
			    n, node, "operator not supported; the closest netcc supports is %s",
			    closest[i].instead);
	const char *names[N_LOWERINGS];
	for (int i = 0; i < N_LOWERINGS; i++)
		names[i] = lowerings[i].op;
	const char *hint = diag_suggest(op, names, N_LOWERINGS);
	if (hint)
		return ox_node_error(
		    n, node, "operator not supported; the closest netcc supports is %s", hint);
	char list[512];
	size_t o = 0;
	for (int i = 0; i < N_LOWERINGS && o < sizeof list; i++)
		o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", names[i]);
	return ox_node_error(n, node, "operator not supported (netcc imports %s)", list);
}

static lower_fn *lowering(const Onnx__NodeProto *nd)
{
	if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
		return NULL;
	for (int i = 0; i < N_LOWERINGS; i++)
		if (nd->op_type && !strcmp(nd->op_type, lowerings[i].op))
			return lowerings[i].fn;
	return NULL;
}

static bool foldable(const Onnx__NodeProto *nd)
{
	if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
		return false;
	for (int i = 0; i < N_FOLDED; i++)
		if (nd->op_type && !strcmp(nd->op_type, folded[i]))
			return true;
	return false;
}

/* The graph's outputs: computed, distinct, and as the file declares them. */
static int outputs_check(ox_net *n)
{
	for (int i = 0; i < n->n_outputs; i++) {
		ox_value *v = &n->val[n->outputs[i]];
		if (v->kind != OXV_TENSOR)
			return ox_error(
			    n, "output '%s' is a constant; netcc computes outputs from inputs",
			    v->name);
		if (v->pad)
			return ox_error(n,
			                "output '%s' is a Pad's result; netcc folds Pad into the "
			                "layer after it",
			                v->name);
		if (n->vars[v->var].input >= 0)
			return ox_error(n, "output '%s' is the input '%s' unchanged", v->name,
			                n->vars[v->var].input_name);
		for (int j = 0; j < i; j++)
			if (n->val[n->outputs[j]].var == v->var)
				return ox_error(
				    n,
				    "outputs '%s' and '%s' are the same value; netcc needs "
				    "distinct outputs",
				    n->val[n->outputs[j]].name, v->name);
		const Onnx__TypeProto *t = n->g->output[i]->type;
		if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
			continue;
		const Onnx__TypeProto__Tensor *tt = t->tensor_type;
		if (tt->has_elem_type && tt->elem_type != OX_F32)
			return ox_error(n, "output '%s' is declared %s; netcc computes float32",
			                v->name, ox_dtype_name(tt->elem_type));
		const ir_shape *s = &n->vars[v->var].shape;
		if (!tt->shape)
			continue;
		bool same = tt->shape->n_dim == (size_t)s->rank;
		for (int d = 1; same && d < s->rank; d++) {
			const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
			same = dim->value_case !=
			           ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
			       dim->dim_value == s->d[d];
		}
		if (!same) {
			char b[96];
			return ox_error(n,
			                "output '%s' is declared with another shape than the %s "
			                "(N first) its graph computes",
			                v->name, ir_shape_str(s, b, sizeof b));
		}
	}
	return 0;
}

int ox_lower(ox_net *n)
{
	const Onnx__GraphProto *g = n->g;
	int bad = 0;
	for (size_t q = 0; q < g->n_node; q++) {
		int k = n->order[q];
		if (n->live[k] && !lowering(g->node[k]) && !foldable(g->node[k]))
			bad += unsupported(n, k) != 0;
	}
	if (bad)
		return -1;
	for (size_t q = 0; q < g->n_node; q++) {
		int k = n->order[q];
		if (!n->live[k] || n->done[k])
			continue;
		n->done[k] = true;
		const Onnx__NodeProto *nd = g->node[k];
		if (nd->n_output < 1 || !*nd->output[0])
			return ox_node_error(n, k, "has no output");
		lower_fn *fn = lowering(nd);
		if ((fn ? fn(n, k) : ox_fold_node(n, k)) != 0)
			return -1;
		/* results past the first: none computed, so none may be read */
		for (size_t o = 1; o < nd->n_output; o++) {
			const ox_value *v =
			    *nd->output[o] ? &n->val[ox_value_find(n, nd->output[o])] : NULL;
			if (v && v->uses && v->kind == OXV_UNDEF)
				return ox_node_error(
				    n, k,
				    "its output %zu ('%s') is used; netcc computes only "
				    "the first",
				    o + 1, v->name);
		}
	}
	if (!n->n_layers)
		return ox_error(n, "the graph computes nothing netcc can compile");
	return outputs_check(n);
}
