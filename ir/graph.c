/* Graph construction: nodes, inputs, outputs, and the parameters operators own. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define OP(e, nm, a, at, fl, grad) [IR_OP_##e] = {.name = #nm, .args = a, .attrs = at, .flags = fl},
#include "ops.def"
};

const char *const ir_algo_names[] = {"gemm", "packed", "direct", "winograd"};

const ir_attr_info ir_attrs[] = {
#define ATTR(field, type) {#field, offsetof(ir_node, field), IR_ATTR_##type},
#include "ops.def"
    {NULL, 0, 0},
};

int ir_op_lookup(const char *name)
{
	for (int i = 0; i < IR_OP_COUNT; i++)
		if (strcmp(ir_ops[i].name, name) == 0)
			return i;
	return -1;
}

const ir_attr_info *ir_attr_lookup(const char *name)
{
	for (const ir_attr_info *a = ir_attrs; a->name; a++)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

const ir_attr_info *ir_attr_spec_info(const ir_attr_spec *s)
{
	for (const ir_attr_info *a = ir_attrs; a->name; a++)
		if ((int)strlen(a->name) == s->key_len && !strncmp(a->name, s->key, s->key_len))
			return a;
	return NULL;
}

int ir_op_attr_specs(ir_op op, ir_attr_spec *out, int max)
{
	const char *p = ir_ops[op].attrs;
	int n = 0;
	while (*p && n < max) {
		while (*p == ' ')
			p++;
		const char *key = p;
		while (*p && *p != ' ' && *p != '=')
			p++;
		ir_attr_spec *s = &out[n++];
		s->key_len = (int)(p - key);
		s->key = key;
		s->def = NULL;
		s->def_len = 0;
		if (*p == '=') {
			s->def = ++p;
			while (*p && *p != ' ')
				p++;
			s->def_len = (int)(p - s->def);
		}
		while (*p == ' ')
			p++;
	}
	return n;
}

/* Literal defaults only; a default naming another attribute is the
 * frontend's to resolve, since it knows which were given. */
ir_node ir_node_proto(ir_op op, const diag_loc *loc)
{
	ir_node n = {.op = op};
	if (loc)
		n.loc = *loc;
	ir_attr_spec specs[IR_MAX_ATTRS];
	int ns = ir_op_attr_specs(op, specs, IR_MAX_ATTRS);
	for (int i = 0; i < ns; i++) {
		if (!specs[i].def)
			continue;
		char def[32];
		snprintf(def, sizeof def, "%.*s", specs[i].def_len, specs[i].def);
		const ir_attr_info *a = ir_attr_spec_info(&specs[i]);
		if (!a)
			continue;
		char *base = (char *)&n + a->offset;
		switch (a->type) {
		case IR_ATTR_INT:
			if (def[0] >= '0' && def[0] <= '9')
				*(int64_t *)base = strtoll(def, NULL, 10);
			break;
		case IR_ATTR_BOOL:
			*(bool *)base = strcmp(def, "true") == 0;
			break;
		case IR_ATTR_FLOAT:
			*(double *)base = strtod(def, NULL);
			break;
		}
	}
	return n;
}

ir_graph *ir_graph_new(const char *name, int64_t batch)
{
	ir_graph *g = calloc(1, sizeof *g);
	if (!g)
		diag_fatal("out of memory");
	g->name = arena_strdup(&g->arena, name ? name : "model");
	g->batch = batch;
	ir_train_defaults(&g->train);
	return g;
}

void ir_graph_free(ir_graph *g)
{
	if (!g)
		return;
	free(g->nodes);
	arena_free(&g->arena);
	free(g);
}

int ir_node_append(ir_graph *g, const ir_node *n)
{
	if (g->n_nodes >= IR_MAX_NODES)
		diag_error_at(&n->loc, "the graph exceeds %d nodes", IR_MAX_NODES);
	if (g->n_nodes == g->cap_nodes) {
		int cap = g->cap_nodes ? g->cap_nodes * 2 : 256;
		ir_node *p = realloc(g->nodes, (size_t)cap * sizeof *p);
		if (!p)
			diag_fatal("out of memory (%d nodes)", cap);
		g->nodes = p;
		g->cap_nodes = cap;
	}
	g->nodes[g->n_nodes] = *n;
	return g->n_nodes++;
}

int ir_input_add(ir_graph *g, const char *name, ir_shape shape, const diag_loc *loc)
{
	if (g->n_inputs >= IR_MAX_IO)
		diag_error_at(loc, "more than %d model inputs", IR_MAX_IO);
	ir_node n = ir_node_proto(IR_OP_INPUT, loc);
	n.name = arena_strdup(&g->arena, name);
	n.shape = shape;
	int id = ir_node_append(g, &n);
	g->inputs[g->n_inputs++] = (ir_io){.name = n.name, .node = id, .loc = n.loc};
	return id;
}

int ir_param_find(const ir_graph *g, const char *name)
{
	return strmap_get(&g->params, name);
}

int ir_param_add(ir_graph *g, const char *name, ir_param_kind kind, ir_shape shape,
                 const diag_loc *loc)
{
	int prev = ir_param_find(g, name);
	if (prev >= 0) {
		diag_note_next(&g->nodes[prev].loc, "'%s' was first defined here", name);
		diag_error_at(
		    loc, "parameter '%s' is defined twice (give one call another name = \"...\")",
		    name);
	}
	if (ir_shape_count(&shape) >= IR_MAX_ELEMS)
		diag_error_at(loc, "parameter '%s' has more than %lld elements", name,
		              (long long)IR_MAX_ELEMS);
	ir_node n = ir_node_proto(IR_OP_PARAM, loc);
	n.name = arena_strdup(&g->arena, name);
	n.shape = shape;
	n.pkind = kind;
	int id = ir_node_append(g, &n);
	strmap_put(&g->params, &g->arena, n.name, id);
	return id;
}

void ir_output_add(ir_graph *g, const char *name, int node, const diag_loc *loc)
{
	if (g->n_outputs >= IR_MAX_IO)
		diag_error_at(loc, "more than %d model outputs", IR_MAX_IO);
	g->outputs[g->n_outputs++] =
	    (ir_io){.name = arena_strdup(&g->arena, name), .node = node, .loc = *loc};
}

/* ops.def's PARAM rules: each one's when and shape as functions */
#define PARAM(o, leaf, k, in, when, shape)                                                         \
	static bool param_when_##o##_##leaf(const ir_node *n)                                      \
	{                                                                                          \
		(void)n;                                                                           \
		return (when);                                                                     \
	}                                                                                          \
	static ir_shape param_shape_##o##_##leaf(const ir_node *n, const ir_shape *x)              \
	{                                                                                          \
		(void)n, (void)x;                                                                  \
		return (shape);                                                                    \
	}
#include "ops.def"

static const ir_param_rule param_rules[] = {
#define PARAM(o, leaf, k, in, when, shape)                                                         \
	{IR_OP_##o,                                                                                \
	 #leaf,                                                                                    \
	 IR_PARAM_##k,                                                                             \
	 IR_INIT_##in,                                                                             \
	 param_when_##o##_##leaf,                                                                  \
	 param_shape_##o##_##leaf},
#include "ops.def"
};

const ir_param_rule *ir_param_rule_of(const ir_node *n, int k)
{
	for (size_t i = 0; i < sizeof param_rules / sizeof *param_rules; i++)
		if (param_rules[i].op == n->op && param_rules[i].when(n) && k-- == 0)
			return &param_rules[i];
	return NULL;
}

/* The parameters follow PyTorch's module layout and names, so weights move
 * between netcc and torchvision by name order. */
static void create_params(ir_graph *g, ir_node *n, const char *path)
{
	/* by value: adding params may move g->nodes */
	const ir_shape x = g->nodes[n->in[0]].shape;
	const ir_param_rule *r;
	for (int k = 0; (r = ir_param_rule_of(n, k)); k++) {
		const char *name =
		    path && *path ? arena_printf(&g->arena, "%s.%s", path, r->leaf) : r->leaf;
		n->in[n->n_in++] = ir_param_add(g, name, r->kind, r->shape(n, &x), &n->loc);
	}
}

int ir_op_build(ir_graph *g, const ir_node *proto, const int *args, const char *path)
{
	ir_node n = *proto;
	n.n_in = ir_ops[n.op].args;
	for (int i = 0; i < n.n_in; i++)
		n.in[i] = args[i];
	n.name = path ? arena_strdup(&g->arena, path) : NULL;
	/* Shape rules read only the tensor arguments, so they can vet the
	 * attributes before params are made from them. */
	ir_shape_infer(g, &n);
	create_params(g, &n, path);
	return ir_node_append(g, &n);
}

void ir_train_defaults(ir_train *t)
{
	*t = (ir_train){
	    .loss = "softmax_cross_entropy",
	    .lr = 0.1,
	    .momentum = 0.9,
	    .weight_decay = 1e-4,
	    .sched = IR_SCHED_PLATEAU,
	    .factor = 0.1,
	    .patience = 2,
	    .warmup = 0,
	    .batch = 128,
	    .epochs = 10,
	    .init = "he",
	};
}
