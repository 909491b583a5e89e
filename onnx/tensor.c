/* Initializers and Constant tensors as arrays: float32 for weights, int64
 * for shapes. Everything a tensor claims is checked against the bytes it
 * holds before anything is allocated for it. */
#include <string.h>

#include "onnx_impl.h"

const char *ox_dtype_name(int64_t t)
{
	static const char *const names[] = {
	    "undefined",      "float",    "uint8",        "int8",           "uint16",
	    "int16",          "int32",    "int64",        "string",         "bool",
	    "float16",        "double",   "uint32",       "uint64",         "complex64",
	    "complex128",     "bfloat16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2",
	    "float8e5m2fnuz", "uint4",    "int4"};
	return t >= 0 && t < (int64_t)(sizeof names / sizeof *names) ? names[t] : "an unknown type";
}

static void dims_text(const Onnx__TensorProto *t, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");
	for (size_t i = 0; i < t->n_dims && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
		                      (long long)t->dims[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

/* Little-endian bytes as host values: ONNX's raw_data is little-endian. */
static void copy_le(void *dst, const uint8_t *src, size_t count, size_t size)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	uint8_t *d = dst;
	for (size_t i = 0; i < count; i++)
		for (size_t b = 0; b < size; b++)
			d[i * size + b] = src[i * size + size - 1 - b];
#else
	memcpy(dst, src, count * size);
#endif
}

int ox_tensor_decode(ox_net *n, const Onnx__TensorProto *t, ox_dtype want, const char *what,
                     ox_const *out)
{
	char dims[256];
	dims_text(t, dims, sizeof dims);
	int64_t type = t->has_data_type ? t->data_type : 0;
	if (type != want) {
		if (want == OX_F32)
			return ox_error(n,
			                "%s is %s; netcc's weights are float32 (export the model "
			                "in float32)",
			                what, ox_dtype_name(type));
		return ox_error(n, "%s is %s; a shape must be int64", what, ox_dtype_name(type));
	}
	if (t->n_dims > OX_MAX_RANK)
		return ox_error(n, "%s %s has rank %zu; netcc reads tensors of rank %d at most",
		                what, dims, t->n_dims, OX_MAX_RANK);
	*out = (ox_const){.dtype = want, .rank = (int)t->n_dims, .count = 1};
	for (size_t i = 0; i < t->n_dims; i++) {
		if (t->dims[i] < 0)
			return ox_error(n, "%s %s has a negative dimension", what, dims);
		out->dims[i] = t->dims[i];
		if (t->dims[i] && out->count > (IR_MAX_ELEMS - 1) / t->dims[i])
			return ox_error(n, "%s %s is too large", what, dims);
		out->count *= t->dims[i];
	}
	if ((t->has_data_location &&
	     t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
	    t->n_external_data)
		return ox_error(n,
		                "%s keeps its data in another file; save the model with its "
		                "weights inside (onnx.save(model, path, "
		                "save_as_external_data=False))",
		                what);
	if (t->segment)
		return ox_error(n, "%s is a segment of a larger tensor; netcc reads whole tensors",
		                what);
	size_t size = want == OX_F32 ? sizeof(float) : sizeof(int64_t);
	size_t count = (size_t)out->count, held;
	const void *src = NULL;
	bool raw = t->has_raw_data && t->raw_data.len;
	if (raw) {
		if (t->raw_data.len % size)
			return ox_error(n, "%s %s holds %zu bytes, not whole %s values", what, dims,
			                t->raw_data.len, ox_dtype_name(type));
		held = t->raw_data.len / size;
		src = t->raw_data.data;
	} else {
		held = want == OX_F32 ? t->n_float_data : t->n_int64_data;
		src = want == OX_F32 ? (const void *)t->float_data : (const void *)t->int64_data;
	}
	if (held != count)
		return ox_error(n, "%s %s holds %zu values, its shape needs %zu", what, dims, held,
		                count);
	void *data = arena_array(n->a, count ? count : 1, size);
	if (raw)
		copy_le(data, src, count, size);
	else if (count)
		memcpy(data, src, count * size);
	if (want == OX_F32)
		out->f = data;
	else
		out->i = data;
	return 0;
}

int ox_value_const(ox_net *n, int node, int input, ox_dtype want, ox_const *out)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if ((size_t)input >= nd->n_input || !*nd->input[input])
		return ox_node_error(n, node, "input %d is missing", input + 1);
	int v = ox_value_find(n, nd->input[input]);
	ox_value *val = &n->val[v];
	if (val->kind == OXV_LAZY) {
		char what[300];
		snprintf(what, sizeof what, "initializer '%.256s'", val->name);
		ox_const c;
		if (ox_tensor_decode(n, val->init, want, what, &c) != 0)
			return -1;
		val->kind = OXV_CONST;
		val->c = c;
	}
	if (val->kind != OXV_CONST)
		return ox_node_error(n, node,
		                     "input %d ('%s') must be a constant (an initializer); netcc "
		                     "takes weights and shapes only from the file",
		                     input + 1, val->name);
	if (val->c.dtype != want)
		return ox_node_error(n, node, "input %d ('%s') is %s, expected %s", input + 1,
		                     val->name, ox_dtype_name(val->c.dtype), ox_dtype_name(want));
	*out = val->c;
	return 0;
}
