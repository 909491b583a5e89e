/* netcc's graph as an ONNX model (netcc export). Each node of the graph
 * the front end makes becomes the ONNX operator that computes the same
 * thing, so that ONNX Runtime gives netcc's outputs and netcc import
 * reads the file back to the same layers:
 *
 *   conv          Conv (kernel_shape, strides, pads; bias optional)
 *   batchnorm     BatchNormalization (inference: running statistics)
 *   relu, add     Relu, Add
 *   maxpool       MaxPool
 *   avgpool       AveragePool, count_include_pad = 1 (netcc averages the zeros)
 *   global_avgpool GlobalAveragePool
 *   flatten       Flatten, axis 1
 *   linear        Gemm, transB = 1 (netcc's weight is [out, in], as PyTorch's)
 *   softmax       Softmax, axis 1
 *   subsample     Slice of H and W with steps (x[:, :, ::s, ::s])
 *   pad_channels  Pad of the channels with zeros
 *
 * Parameters become initializers under their own names; the constants
 * Slice and Pad read are Constant nodes, so the initializers are exactly
 * the parameters `netcc params` lists. */
#include <string.h>

#include "onnx_impl.h"

typedef struct exporter {
	arena *a;
	const ir_graph *g;
	const char **value; /* per node: the ONNX name of its result */
	strmap used;        /* every ONNX name given so far */
	Onnx__GraphProto *graph;
	int cap_nodes;
} exporter;

/* ---- names ------------------------------------------------------------------ */

/* base, or base_2, base_3, ...: the first not used yet */
static const char *name_unique(exporter *e, const char *base)
{
	const char *name = base;
	for (int k = 2; strmap_get(&e->used, name) >= 0; k++)
		name = arena_printf(e->a, "%s_%d", base, k);
	name = arena_strdup(e->a, name);
	strmap_put(&e->used, e->a, name, 1);
	return name;
}

/* A name nothing else may take; an error where one already has it. */
static void name_reserve(exporter *e, const char *name, const diag_loc *loc)
{
	if (strmap_get(&e->used, name) >= 0)
		diag_error_at(loc,
		              "'%s' names two values of the graph; an ONNX graph needs one name "
		              "for one value (rename one)",
		              name);
	strmap_put(&e->used, e->a, arena_strdup(e->a, name), 1);
}

/* Inputs, outputs and parameters keep the names the model gives them;
 * every other result is named after its node's call path
 * ("stage1.basic0.cbr0.conv0"), which is also the ONNX node's name. */
static void names_assign(exporter *e)
{
	const ir_graph *g = e->g;
	e->value = arena_array(e->a, (size_t)g->n_nodes + 1, sizeof *e->value);
	for (int i = 0; i < g->n_inputs; i++) {
		name_reserve(e, g->inputs[i].name, &g->inputs[i].loc);
		e->value[g->inputs[i].node] = g->inputs[i].name;
	}
	/* an output whose value is an input, a parameter or another output's
	 * is copied by an Identity node (outputs_finish) */
	for (int i = 0; i < g->n_outputs; i++) {
		int id = g->outputs[i].node;
		name_reserve(e, g->outputs[i].name, &g->outputs[i].loc);
		if (!e->value[id] && g->nodes[id].op != IR_OP_PARAM)
			e->value[id] = g->outputs[i].name;
	}
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM && !e->value[i])
			e->value[i] = name_unique(e, g->nodes[i].name);
	for (int i = 0; i < g->n_nodes; i++)
		if (!e->value[i])
			e->value[i] = name_unique(
			    e, g->nodes[i].name ? g->nodes[i].name : ir_ops[g->nodes[i].op].name);
}

/* ---- nodes ------------------------------------------------------------------ */

static void node_append(exporter *e, Onnx__NodeProto *nd)
{
	Onnx__GraphProto *gp = e->graph;
	if ((int)gp->n_node == e->cap_nodes) {
		int cap = e->cap_nodes ? 2 * e->cap_nodes : 64;
		Onnx__NodeProto **nodes = arena_array(e->a, (size_t)cap, sizeof *nodes);
		if (gp->n_node)
			memcpy(nodes, gp->node, gp->n_node * sizeof *nodes);
		gp->node = nodes, e->cap_nodes = cap;
	}
	gp->node[gp->n_node++] = nd;
}

/* The node for ir node id: op of its first n_in inputs, writing its value. */
static Onnx__NodeProto *node_add(exporter *e, int id, const char *op, int n_in)
{
	const ir_node *n = &e->g->nodes[id];
	if (n->n_in < n_in)
		diag_error_at(&n->loc, "internal: export: %s has %d inputs, %s reads %d",
		              ir_ops[n->op].name, n->n_in, op, n_in);
	const char *in[IR_MAX_INPUTS];
	for (int i = 0; i < n_in; i++)
		in[i] = e->value[n->in[i]];
	Onnx__NodeProto *nd =
	    ox_build_node(e->a, op, n->name ? n->name : e->value[id], in, n_in, e->value[id]);
	node_append(e, nd);
	return nd;
}

/* A Constant node holding v[0..n) as int64; its output's name. */
static const char *constant_add(exporter *e, const char *base, const int64_t *v, int n)
{
	const char *name = name_unique(e, base);
	Onnx__NodeProto *nd = ox_build_node(e->a, "Constant", name, NULL, 0, name);
	ox_build_attr_tensor(e->a, nd, "value", ox_build_tensor_i64(e->a, name, v, n));
	node_append(e, nd);
	return name;
}

static void window_attrs(exporter *e, Onnx__NodeProto *nd, const ir_node *n)
{
	int64_t k[2] = {n->kernel, n->kernel}, s[2] = {n->stride, n->stride};
	int64_t p[4] = {n->pad, n->pad, n->pad, n->pad};
	ox_build_attr_ints(e->a, nd, "kernel_shape", k, 2);
	ox_build_attr_ints(e->a, nd, "strides", s, 2);
	ox_build_attr_ints(e->a, nd, "pads", p, 4);
}

/* x[:, :, ::s, ::s] of value x, into out: ONNX's Slice, as PyTorch
 * exports the indexing, ends past any extent; base names the node. */
static void slice_add(exporter *e, const char *base, const char *x, int64_t s, const char *out)
{
	int64_t starts[2] = {0, 0}, ends[2] = {INT64_MAX, INT64_MAX}, axes[2] = {2, 3};
	int64_t steps[2] = {s, s};
	const char *in[5] = {x, constant_add(e, arena_printf(e->a, "%s.starts", base), starts, 2),
	                     constant_add(e, arena_printf(e->a, "%s.ends", base), ends, 2),
	                     constant_add(e, arena_printf(e->a, "%s.axes", base), axes, 2),
	                     constant_add(e, arena_printf(e->a, "%s.steps", base), steps, 2)};
	node_append(e, ox_build_node(e->a, "Slice", base, in, 5, out));
}

static void export_subsample(exporter *e, int id)
{
	const ir_node *n = &e->g->nodes[id];
	slice_add(e, n->name ? n->name : "subsample", e->value[n->in[0]], n->stride, e->value[id]);
}

/* Zeros before and after the channels; a fused subsample (the option-A
 * shortcut after netcc's passes) is sliced first. */
static void export_pad_channels(exporter *e, int id)
{
	const ir_node *n = &e->g->nodes[id];
	const char *base = n->name ? n->name : "pad_channels";
	const char *x = e->value[n->in[0]];
	if (n->stride > 1) {
		const char *sub = name_unique(e, arena_printf(e->a, "%s.subsample", base));
		slice_add(e, sub, x, n->stride, sub);
		x = sub;
	}
	int64_t pads[8] = {0, n->before, 0, 0, 0, n->after, 0, 0};
	const char *in[2] = {x, constant_add(e, arena_printf(e->a, "%s.pads", base), pads, 8)};
	/* mode "constant" and the value 0 are Pad's defaults */
	node_append(e, ox_build_node(e->a, "Pad", base, in, 2, e->value[id]));
}

static void export_param(exporter *e, int id)
{
	const ir_node *p = &e->g->nodes[id];
	if (!p->data)
		diag_error_at(&p->loc, "internal: export: parameter '%s' has no weights", p->name);
	Onnx__GraphProto *gp = e->graph;
	gp->initializer[gp->n_initializer++] =
	    ox_build_tensor_f32(e->a, e->value[id], &p->shape, p->data);
}

/* Flags only netcc's passes set: the ONNX operators compute the node as
 * the model wrote it, not a fused variant. */
static void unfused_check(const ir_node *n)
{
	if (n->relu || n->residual || n->algo != IR_ALGO_GEMM || n->flat)
		diag_error_at(&n->loc,
		              "internal: export: %s was rewritten by a compiler pass; export takes "
		              "the graph as the front end makes it",
		              ir_ops[n->op].name);
}

static const char exportable[] = "conv, batchnorm, relu, add, maxpool, avgpool, "
                                 "global_avgpool, flatten, linear, softmax, subsample, "
                                 "pad_channels"
#define UNARY(e, name, onnx) ", " #name
#include "ops.def"
    ;

/* ops.def's UNARY ops: the ONNX operator of each */
static const char *const unary_onnx[IR_OP_COUNT] = {
#define UNARY(e, name, onnx) [IR_OP_##e] = onnx,
#include "ops.def"
};

static void export_node(exporter *e, int id)
{
	const ir_node *n = &e->g->nodes[id];
	Onnx__NodeProto *nd;
	unfused_check(n);
	switch (n->op) {
	case IR_OP_INPUT:
		break;
	case IR_OP_PARAM:
		export_param(e, id);
		break;
	case IR_OP_CONV:
		window_attrs(e, node_add(e, id, "Conv", n->bias ? 3 : 2), n);
		break;
	case IR_OP_BATCHNORM:
		nd = node_add(e, id, "BatchNormalization", 5);
		/* netcc computes with eps as a float, as ONNX stores it */
		ox_build_attr_float(e->a, nd, "epsilon", (float)n->eps);
		break;
	case IR_OP_RELU:
		node_add(e, id, "Relu", 1);
		break;
	case IR_OP_ADD:
		node_add(e, id, "Add", 2);
		break;
	case IR_OP_MAXPOOL:
		window_attrs(e, node_add(e, id, "MaxPool", 1), n);
		break;
	case IR_OP_AVGPOOL:
		nd = node_add(e, id, "AveragePool", 1);
		window_attrs(e, nd, n);
		ox_build_attr_int(e->a, nd, "count_include_pad", 1);
		break;
	case IR_OP_GLOBAL_AVGPOOL:
		node_add(e, id, "GlobalAveragePool", 1);
		break;
	case IR_OP_FLATTEN:
		ox_build_attr_int(e->a, node_add(e, id, "Flatten", 1), "axis", 1);
		break;
	case IR_OP_LINEAR:
		ox_build_attr_int(e->a, node_add(e, id, "Gemm", n->bias ? 3 : 2), "transB", 1);
		break;
	case IR_OP_SOFTMAX:
		ox_build_attr_int(e->a, node_add(e, id, "Softmax", 1), "axis", 1);
		break;
	case IR_OP_SUBSAMPLE:
		export_subsample(e, id);
		break;
	case IR_OP_PAD_CHANNELS:
		export_pad_channels(e, id);
		break;
	default:
		if (unary_onnx[n->op]) {
			node_add(e, id, unary_onnx[n->op], 1);
			break;
		}
		diag_error_at(&n->loc,
		              "%s cannot be exported to ONNX: netcc exports the operators of model "
		              "files (%s), before its compiler passes",
		              ir_ops[n->op].name, exportable);
	}
}

/* ---- the graph and the model ------------------------------------------------ */

static Onnx__ValueInfoProto **io_list(exporter *e, const ir_io *io, int n, size_t *count,
                                      bool dynamic)
{
	Onnx__ValueInfoProto **v = arena_array(e->a, (size_t)n + 1, sizeof *v);
	for (int i = 0; i < n; i++)
		v[i] = ox_build_value_info(e->a, io[i].name, &e->g->nodes[io[i].node].shape,
		                           dynamic ? "N" : NULL);
	*count = (size_t)n;
	return v;
}

/* Outputs whose value has another name (an input, a parameter, another
 * output's value) are copies of it. */
static void outputs_finish(exporter *e)
{
	const ir_graph *g = e->g;
	for (int i = 0; i < g->n_outputs; i++) {
		const char *from = e->value[g->outputs[i].node], *to = g->outputs[i].name;
		if (strcmp(from, to))
			node_append(e, ox_build_node(e->a, "Identity", to, &from, 1, to));
	}
}

static Onnx__GraphProto *graph_build(exporter *e, bool dynamic)
{
	const ir_graph *g = e->g;
	Onnx__GraphProto *gp = arena_alloc(e->a, sizeof *gp);
	onnx__graph_proto__init(gp);
	e->graph = gp;
	gp->name = arena_strdup(e->a, g->name ? g->name : "model");
	gp->initializer = arena_array(e->a, (size_t)g->n_nodes + 1, sizeof *gp->initializer);
	for (int i = 0; i < g->n_nodes; i++)
		export_node(e, i);
	outputs_finish(e);
	gp->input = io_list(e, g->inputs, g->n_inputs, &gp->n_input, dynamic);
	gp->output = io_list(e, g->outputs, g->n_outputs, &gp->n_output, dynamic);
	return gp;
}

static Onnx__ModelProto *model_build(exporter *e, const onnx_export_options *o)
{
	Onnx__ModelProto *m = arena_alloc(e->a, sizeof *m);
	onnx__model_proto__init(m);
	m->has_ir_version = 1;
	m->ir_version = ONNX_EXPORT_IR_VERSION;
	Onnx__OperatorSetIdProto *op = arena_alloc(e->a, sizeof *op);
	onnx__operator_set_id_proto__init(op);
	op->domain = arena_strdup(e->a, "");
	op->has_version = 1;
	op->version = ONNX_EXPORT_OPSET;
	m->opset_import = arena_alloc(e->a, sizeof *m->opset_import);
	m->opset_import[0] = op;
	m->n_opset_import = 1;
	m->producer_name = arena_strdup(e->a, "netcc");
	if (o->producer_version)
		m->producer_version = arena_strdup(e->a, o->producer_version);
	if (o->doc)
		m->doc_string = arena_strdup(e->a, o->doc);
	m->graph = graph_build(e, o->dynamic_batch);
	return m;
}

void onnx_export_graph(const ir_graph *g, const onnx_export_options *o, onnx_export *ex)
{
	*ex = (onnx_export){0};
	exporter e = {.a = &ex->arena, .g = g};
	names_assign(&e);
	Onnx__ModelProto *m = model_build(&e, o);
	size_t len = onnx__model_proto__get_packed_size(m);
	/* protobuf's messages, and so ONNX files, stop at 2 GiB */
	if (len > (size_t)INT32_MAX)
		diag_fatal("%s: the ONNX file would take %.2f GiB; ONNX files stop at 2 GiB "
		           "(protobuf's limit), and netcc writes no external weights",
		           g->name, (double)len / (1 << 30));
	ex->data = arena_alloc(&ex->arena, len);
	ex->len = onnx__model_proto__pack(m, ex->data);
	ex->n_nodes = (int)m->graph->n_node;
	ex->n_initializers = (int)m->graph->n_initializer;
	if (ex->len != len)
		diag_fatal("internal: export: packed %zu bytes of %zu", ex->len, len);
}

void onnx_export_free(onnx_export *ex)
{
	arena_free(&ex->arena);
	*ex = (onnx_export){0};
}
