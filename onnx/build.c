/* The protobuf messages the exporter writes, each made in an arena:
 * protobuf-c's structs hold plain pointers, so the whole model is freed
 * at once with the arena after it is packed. */
#include <string.h>

#include "onnx_impl.h"

/* ONNX stores raw tensor data little-endian: netcc's weights are written
 * as they lie in memory, which is so on every target netcc runs on. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "raw_data must be little-endian");

enum { ONNX_FLOAT = 1, ONNX_INT64 = 7 }; /* TensorProto.DataType */

Onnx__NodeProto *ox_build_node(arena *a, const char *op, const char *name, const char *const *in,
                               int n_in, const char *out)
{
	Onnx__NodeProto *nd = arena_alloc(a, sizeof *nd);
	onnx__node_proto__init(nd);
	nd->op_type = arena_strdup(a, op);
	nd->name = arena_strdup(a, name);
	nd->input = arena_array(a, (size_t)n_in + 1, sizeof *nd->input);
	for (int i = 0; i < n_in; i++)
		nd->input[i] = arena_strdup(a, in[i]);
	nd->n_input = (size_t)n_in;
	nd->output = arena_alloc(a, sizeof *nd->output);
	nd->output[0] = arena_strdup(a, out);
	nd->n_output = 1;
	nd->attribute = arena_array(a, OX_BUILD_MAX_ATTRS, sizeof *nd->attribute);
	return nd;
}

static Onnx__AttributeProto *attr_add(arena *a, Onnx__NodeProto *nd, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
	if (nd->n_attribute >= OX_BUILD_MAX_ATTRS)
		diag_fatal("internal: export: node '%s' has more than %d attributes", nd->name,
		           OX_BUILD_MAX_ATTRS);
	Onnx__AttributeProto *at = arena_alloc(a, sizeof *at);
	onnx__attribute_proto__init(at);
	at->name = arena_strdup(a, name);
	at->has_type = 1;
	at->type = type;
	nd->attribute[nd->n_attribute++] = at;
	return at;
}

void ox_build_attr_int(arena *a, Onnx__NodeProto *nd, const char *name, int64_t v)
{
	Onnx__AttributeProto *at =
	    attr_add(a, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
	at->has_i = 1;
	at->i = v;
}

void ox_build_attr_float(arena *a, Onnx__NodeProto *nd, const char *name, float v)
{
	Onnx__AttributeProto *at =
	    attr_add(a, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
	at->has_f = 1;
	at->f = v;
}

void ox_build_attr_ints(arena *a, Onnx__NodeProto *nd, const char *name, const int64_t *v, int n)
{
	Onnx__AttributeProto *at =
	    attr_add(a, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
	at->ints = arena_array(a, (size_t)n + 1, sizeof *at->ints);
	memcpy(at->ints, v, (size_t)n * sizeof *v);
	at->n_ints = (size_t)n;
}

void ox_build_attr_tensor(arena *a, Onnx__NodeProto *nd, const char *name, Onnx__TensorProto *t)
{
	Onnx__AttributeProto *at =
	    attr_add(a, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
	at->t = t;
}

static Onnx__TensorProto *tensor_new(arena *a, const char *name, int32_t type, const int64_t *dims,
                                     int rank)
{
	Onnx__TensorProto *t = arena_alloc(a, sizeof *t);
	onnx__tensor_proto__init(t);
	t->name = arena_strdup(a, name);
	t->has_data_type = 1;
	t->data_type = type;
	t->dims = arena_array(a, (size_t)rank + 1, sizeof *t->dims);
	memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
	t->n_dims = (size_t)rank;
	return t;
}

Onnx__TensorProto *ox_build_tensor_f32(arena *a, const char *name, const ir_shape *s,
                                       const float *data)
{
	Onnx__TensorProto *t = tensor_new(a, name, ONNX_FLOAT, s->d, s->rank);
	t->has_raw_data = 1;
	t->raw_data.len = (size_t)ir_shape_count(s) * sizeof(float);
	t->raw_data.data = (uint8_t *)data; /* read only, by the packing */
	return t;
}

Onnx__TensorProto *ox_build_tensor_i64(arena *a, const char *name, const int64_t *v, int n)
{
	int64_t dims[1] = {n};
	Onnx__TensorProto *t = tensor_new(a, name, ONNX_INT64, dims, 1);
	t->has_raw_data = 1;
	t->raw_data.len = (size_t)n * sizeof *v;
	t->raw_data.data = arena_alloc(a, t->raw_data.len);
	memcpy(t->raw_data.data, v, t->raw_data.len);
	return t;
}

Onnx__ValueInfoProto *ox_build_value_info(arena *a, const char *name, const ir_shape *s,
                                          const char *batch)
{
	Onnx__TensorShapeProto *shape = arena_alloc(a, sizeof *shape);
	onnx__tensor_shape_proto__init(shape);
	shape->dim = arena_array(a, (size_t)s->rank + 1, sizeof *shape->dim);
	for (int i = 0; i < s->rank; i++) {
		Onnx__TensorShapeProto__Dimension *d = arena_alloc(a, sizeof *d);
		onnx__tensor_shape_proto__dimension__init(d);
		if (i == 0 && batch) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			d->dim_param = arena_strdup(a, batch);
		} else {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = s->d[i];
		}
		shape->dim[shape->n_dim++] = d;
	}
	Onnx__TypeProto__Tensor *tt = arena_alloc(a, sizeof *tt);
	onnx__type_proto__tensor__init(tt);
	tt->has_elem_type = 1;
	tt->elem_type = ONNX_FLOAT;
	tt->shape = shape;
	Onnx__TypeProto *type = arena_alloc(a, sizeof *type);
	onnx__type_proto__init(type);
	type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	type->tensor_type = tt;
	Onnx__ValueInfoProto *vi = arena_alloc(a, sizeof *vi);
	onnx__value_info_proto__init(vi);
	vi->name = arena_strdup(a, name);
	vi->type = type;
	return vi;
}
