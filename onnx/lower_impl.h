/* lower_impl.h: what the lowering's files share. lower.c dispatches each
 * node to the lowering of its operator, in lower_window.c (Conv, pooling,
 * Pad, Slice), lower_pointwise.c (BatchNormalization, Relu, Add,
 * Identity, Dropout) or lower_linear.c (Flatten, Reshape, Gemm, MatMul,
 * Softmax); all of them read their node and make their layer through
 * lower_node.c, so every operator checks inputs and attributes the same
 * way and reports what it refuses in the same words. */
#ifndef NETCC_ONNX_LOWER_IMPL_H
#define NETCC_ONNX_LOWER_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "onnx_impl.h"

enum { MAX_WINDOW = 1 << 12, MAX_CHANNELS = 1 << 20 };

/* lower_node.c: a node's attributes, each reported where it has another
 * type; ox_attrs_allow: every attribute present is one of known's */
int ox_attr_float(ox_net *n, int node, const char *name, double def, double *out);
int ox_attr_ints(ox_net *n, int node, const char *name, const int64_t **v, size_t *count);
int ox_attr_string(ox_net *n, int node, const char *name, char *buf, size_t len);
int ox_attrs_allow(ox_net *n, int node, const char *known);

/* lower_node.c: a node's inputs and outputs, and the layer it becomes */
int ox_in_tensor(ox_net *n, int node, int i, bool pad_ok, ox_value **out);
int ox_inputs_count(ox_net *n, int node, size_t lo, size_t hi);
int ox_extra_outputs_unused(ox_net *n, int node);
ox_layer *ox_layer_new(ox_net *n, ir_op op, int node);
int ox_layer_result(ox_net *n, ox_layer *l, ox_value *out, ir_shape s);
int ox_lower_simple(ox_net *n, int node, ir_op op, ir_shape s, ox_value *x);

static inline ox_value *in_value(ox_net *n, int node, int i)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if ((size_t)i >= nd->n_input || !*nd->input[i])
		return NULL;
	return &n->val[ox_value_find(n, nd->input[i])];
}

static inline ox_value *out_value(ox_net *n, int node)
{
	return &n->val[ox_value_find(n, n->g->node[node]->output[0])];
}

static inline void layer_param(ox_layer *l, const float *data, ir_shape s)
{
	l->param[l->n_params] = data;
	l->pshape[l->n_params++] = s;
}

static inline const ir_shape *shape_of(ox_net *n, const ox_value *v)
{
	return &n->vars[v->var].shape;
}

static inline void alias(ox_value *out, const ox_value *in)
{
	out->kind = in->kind, out->var = in->var, out->pad = in->pad;
	out->c = in->c, out->init = in->init;
}

/* lower_window.c */
int ox_lower_conv(ox_net *n, int node);
int ox_lower_maxpool(ox_net *n, int node);
int ox_lower_avgpool(ox_net *n, int node);
int ox_lower_global_avgpool(ox_net *n, int node);
int ox_lower_pad(ox_net *n, int node);
int ox_lower_slice(ox_net *n, int node);

/* lower_pointwise.c */
int ox_lower_batchnorm(ox_net *n, int node);
int ox_lower_relu(ox_net *n, int node);
/* ops.def's UNARY ops, by their ONNX names */
int ox_lower_unary(ox_net *n, int node);
int ox_lower_add(ox_net *n, int node);
int ox_lower_identity(ox_net *n, int node);
int ox_lower_dropout(ox_net *n, int node);

/* lower_linear.c */
int ox_lower_flatten(ox_net *n, int node);
int ox_lower_reshape(ox_net *n, int node);
int ox_lower_gemm(ox_net *n, int node);
int ox_lower_matmul(ox_net *n, int node);
int ox_lower_softmax(ox_net *n, int node);

#endif
