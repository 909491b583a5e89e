/* onnx_impl.h: the pieces of the importer, shared by the files of onnx/ only.
 *
 *   wire.c    bounds the protobuf's nesting before protobuf-c recurses into it
 *   graph.c   the model's checks and its values: inputs, constants, node order
 *   tensor.c  initializers and Constant tensors as float32 or int64 arrays
 *   fold.c    shape arithmetic on constants (Shape, Gather, Unsqueeze, Concat)
 *   lower.c   each node as netcc layers, with shapes (the operators in
 *             lower_window.c, lower_pointwise.c and lower_linear.c, what
 *             they share in lower_node.c and lower_impl.h)
 *   names.c   identifiers for variables and layers
 *   emit.c    the .nn text and the weights list
 *   import.c  the public functions (onnx.h)
 *
 * and of the exporter:
 *   build.c   protobuf messages, in an arena
 *   export.c  each node as ONNX operators; the model and its bytes
 */
#ifndef NETCC_ONNX_IMPL_H
#define NETCC_ONNX_IMPL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "ir.h"
#include "onnx.h"
#include "onnx.pb-c.h"

enum {
	OX_MAX_RANK = 8,      /* of a constant */
	OX_MAX_DIM = 1 << 24, /* a model input's dimension, as the .nn language allows */
	OX_MAX_ERRORS = 10,   /* reported before the rest are only counted */
	OX_OPSET_MIN = 7,
	OX_OPSET_MAX = 22,
};

/* The batch in shape arithmetic: Shape(x)[0] when the batch is symbolic. */
#define OX_BATCH INT64_MIN

typedef enum ox_dtype { OX_F32 = 1, OX_I64 = 7 } ox_dtype; /* ONNX's numbers */

typedef struct ox_const {
	ox_dtype dtype;
	int rank;
	int64_t dims[OX_MAX_RANK];
	int64_t count;
	const float *f;   /* OX_F32 */
	const int64_t *i; /* OX_I64; may hold OX_BATCH */
} ox_const;

typedef enum ox_kind {
	OXV_UNDEF,  /* not computed yet */
	OXV_TENSOR, /* a .nn variable */
	OXV_CONST,  /* known now: an initializer, a Constant, folded arithmetic */
	OXV_LAZY,   /* an initializer not yet decoded */
} ox_kind;

typedef struct ox_value {
	const char *name; /* ONNX's */
	ox_kind kind;
	int producer; /* node index, or -1: graph input, initializer */
	int uses;     /* live nodes reading it, and graph outputs */
	int consumer; /* the first live node reading it, or -1 */
	bool output;  /* a graph output */
	int var;      /* OXV_TENSOR: the .nn variable */
	int64_t pad;  /* OXV_TENSOR: a zero Pad waiting for the Conv or pool that reads it */
	ox_const c;   /* OXV_CONST */
	const Onnx__TensorProto *init; /* OXV_LAZY */
} ox_value;

/* A .nn variable: an input, or a layer's result. Shapes have the batch
 * first; shape.d[0] is 1 there while importing. */
typedef struct ox_var {
	ir_shape shape;
	int node;               /* the node it comes from (names it), -1 an input */
	int input;              /* which model input, or -1 */
	const char *input_name; /* ONNX's name of the input */
	const char *name;
} ox_var;

typedef struct ox_layer {
	ir_op op; /* a user operator of ops.def */
	int in[2], n_in;
	int out;  /* variable */
	int node; /* the node it comes from */
	int64_t out_ch, kernel, stride, pad;
	int64_t before, after; /* pad_channels */
	bool bias;
	double eps;
	const char *hint; /* the exporter's name of its weight ("conv1.weight"), or NULL */
	const char *name; /* names.c: the parameters' prefix */
	int n_params;
	const float *param[4];
	ir_shape pshape[4];
} ox_layer;

typedef struct ox_net {
	arena *a;
	const char *path;
	FILE *errs;
	int n_errors;

	const Onnx__ModelProto *model;
	const Onnx__GraphProto *g;
	int64_t opset;
	int64_t batch; /* the inputs' static batch, or 0 where symbolic */
	strmap values; /* ONNX name -> index into val */
	ox_value *val;
	int n_val, cap_val;
	int *order;   /* node indices, topologically sorted */
	bool *live;   /* per node: an output depends on it */
	bool *done;   /* per node: lowered already (fused into an earlier one) */
	int *outputs; /* graph output i -> its value */
	int n_outputs;

	ox_var *vars;
	int n_vars, cap_vars;
	ox_layer *layers;
	int n_layers, cap_layers;
} ox_net;

/* ---- errors: "netcc: error: PATH: ..." on net->errs; -1 ------------------- */
int ox_error(ox_net *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "node 'NAME' (OP): ..." */
int ox_node_error(ox_net *n, int node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The node as errors name it: its name, or #index where it has none. */
const char *ox_node_label(ox_net *n, int node);

/* ---- wire.c -------------------------------------------------------------- */
int ox_wire_check(ox_net *n, const uint8_t *data, size_t len);

/* ---- graph.c ------------------------------------------------------------- */
/* Model checks, inputs as variables, initializers, node order, liveness. */
int ox_graph_build(ox_net *n);
int ox_value_find(ox_net *n, const char *name); /* -1 absent */

/* ---- tensor.c ------------------------------------------------------------ */
/* t decoded as float32 (want OX_F32) or int64; what names t in errors. */
int ox_tensor_decode(ox_net *n, const Onnx__TensorProto *t, ox_dtype want, const char *what,
                     ox_const *out);
/* A value as a constant of dtype want (decoding an initializer the first
 * time); node names the reader in errors. -1 after reporting. */
int ox_value_const(ox_net *n, int node, int input, ox_dtype want, ox_const *out);
const char *ox_dtype_name(int64_t onnx_type);

/* ---- fold.c -------------------------------------------------------------- */
/* Shape, Gather, Unsqueeze, Squeeze, Concat, Constant: the node's output
 * as a constant. 1 when op is not one of them. */
int ox_fold_node(ox_net *n, int node);

/* ---- lower.c, lower_node.c ---------------------------------------------- */
int ox_lower(ox_net *n);
/* Attributes: the named one, or NULL. */
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *nd, const char *name);
/* An int attribute (default def); -1 reported when it has another type. */
int ox_attr_int(ox_net *n, int node, const char *name, int64_t def, int64_t *out);

/* ---- names.c ------------------------------------------------------------- */
/* Names every variable and layer, unique, as the .nn file can spell them. */
void ox_names_assign(ox_net *n);
/* A keyword of the language, or the batch's name. */
bool ox_reserved(const char *s);
/* s as an identifier ([A-Za-z_][A-Za-z0-9_]*), or "" when nothing is left. */
char *ox_identifier(arena *a, const char *s);

/* ---- emit.c -------------------------------------------------------------- */
int ox_emit(ox_net *n, const char *model, onnx_import *im);

/* ---- build.c: messages for the exporter, all in arena a ------------------- */
/* A node with room for OX_BUILD_MAX_ATTRS attributes; names are copied. */
enum { OX_BUILD_MAX_ATTRS = 8 };
Onnx__NodeProto *ox_build_node(arena *a, const char *op, const char *name, const char *const *in,
                               int n_in, const char *out);
void ox_build_attr_int(arena *a, Onnx__NodeProto *nd, const char *name, int64_t v);
void ox_build_attr_float(arena *a, Onnx__NodeProto *nd, const char *name, float v);
void ox_build_attr_ints(arena *a, Onnx__NodeProto *nd, const char *name, const int64_t *v, int n);
void ox_build_attr_tensor(arena *a, Onnx__NodeProto *nd, const char *name, Onnx__TensorProto *t);
/* float32 of shape s; data is not copied (it must outlive the packing) */
Onnx__TensorProto *ox_build_tensor_f32(arena *a, const char *name, const ir_shape *s,
                                       const float *data);
/* a 1-D int64 tensor of n values, copied */
Onnx__TensorProto *ox_build_tensor_i64(arena *a, const char *name, const int64_t *v, int n);
/* A float32 tensor of shape s; batch names dimension 0 where not NULL. */
Onnx__ValueInfoProto *ox_build_value_info(arena *a, const char *name, const ir_shape *s,
                                          const char *batch);

#endif
