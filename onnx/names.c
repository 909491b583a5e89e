/* Names for the .nn file. Exporters name nodes after the module that ran
 * them (PyTorch: "/layer1/layer1.0/conv1/Conv") and weights after its
 * parameters ("layer1.0.conv1.weight"), so the imported file reads like
 * the model's source: the variable and the layer above become
 * layer1_0_conv1 (the language keeps dots for its own call paths). Where
 * an exporter says nothing useful, the operator's name does. */
#include <ctype.h>
#include <string.h>

#include "onnx_impl.h"

enum { NAME_MAX_LEN = 64 };

char *ox_identifier(arena *a, const char *s)
{
	size_t n = strlen(s);
	char *out = arena_alloc(a, NAME_MAX_LEN + 2);
	size_t o = 0;
	for (size_t i = 0; i < n && o < NAME_MAX_LEN; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalnum(c) && c < 128) {
			if (!o && isdigit(c))
				out[o++] = 'v';
			out[o++] = (char)c;
		} else if (o && out[o - 1] != '_') {
			out[o++] = '_';
		}
	}
	while (o && out[o - 1] == '_')
		o--;
	out[o] = 0;
	return out;
}

/* "/layer1/layer1.1/downsample/downsample.0/Conv" -> "layer1.1.downsample.0":
 * the scopes but the last part (the operator), each nested one written
 * as PyTorch's module path, which repeats its parent's name. */
static const char *module_path(arena *a, const char *node)
{
	if (!node || node[0] != '/')
		return "";
	char *path = arena_alloc(a, strlen(node) + 1);
	size_t o = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	const char *p = node + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break; /* the last part names the operator */
		size_t len = (size_t)(slash - p);
		const char *part = p;
		if (prev && len > prev_len && !strncmp(part, prev, prev_len) &&
		    part[prev_len] == '.')
			part += prev_len + 1, len -= prev_len + 1;
		if (len) {
			if (o)
				path[o++] = '.';
			memcpy(path + o, part, len);
			o += len;
		}
		prev = p, prev_len = (size_t)(slash - p);
		p = slash + 1;
	}
	path[o] = 0;
	return path;
}

bool ox_reserved(const char *s)
{
	static const char *const words[] = {"version", "model", "block",  "graph", "train",
	                                    "if",      "else",  "repeat", "as",    "true",
	                                    "false",   "f32",   "N",      NULL};
	for (int i = 0; words[i]; i++)
		if (!strcmp(s, words[i]))
			return true;
	return false;
}

/* base, or base_2, base_3, ...: the first not in used (then added to
 * it). A name's value in used is the suffix to try next for it, so a
 * thousand unnamed convolutions cost a thousand tries, not half a million. */
static const char *unique(ox_net *n, strmap *used, const char *base)
{
	if (ox_reserved(base))
		base = arena_printf(n->a, "%s_", base);
	int k = strmap_get(used, base);
	if (k < 0) {
		strmap_put(used, n->a, base, 2);
		return base;
	}
	const char *name;
	do
		name = arena_printf(n->a, "%s_%d", base, k++);
	while (strmap_get(used, name) >= 0);
	strmap_put(used, n->a, base, k);
	strmap_put(used, n->a, name, 2);
	return name;
}

static const char *op_name(ox_net *n, int node)
{
	const char *op = n->g->node[node]->op_type;
	char *s = ox_identifier(n->a, op ? op : "");
	for (char *c = s; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return *s ? s : "value";
}

/* What the node is called where it has a name: its module path, else its
 * own name; "" where it has neither. */
static const char *node_base(ox_net *n, int node)
{
	const char *name = n->g->node[node]->name;
	const char *path = module_path(n->a, name);
	if (*path)
		return ox_identifier(n->a, path);
	if (name && *name && name[0] != '/')
		return ox_identifier(n->a, name);
	return "";
}

static const char *var_name(ox_net *n, strmap *used, const ox_var *v)
{
	const char *base = node_base(n, v->node);
	if (*base && strmap_get(used, base) < 0 && !ox_reserved(base))
		return unique(n, used, base);
	const char *op = op_name(n, v->node);
	return unique(n, used, *base ? arena_printf(n->a, "%s_%s", base, op) : op);
}

/* Weights named "<module>.weight" name the layer; "onnx::Conv_63", what a
 * folding exporter writes, does not. */
static const char *layer_base(ox_net *n, const ox_layer *l)
{
	if (l->hint) {
		size_t len = strlen(l->hint);
		if (len > 7 && !strcmp(l->hint + len - 7, ".weight") && !strchr(l->hint, ':')) {
			char *s = ox_identifier(n->a, arena_strndup(n->a, l->hint, len - 7));
			if (*s)
				return s;
		}
	}
	const char *base = node_base(n, l->node);
	return *base ? base : ir_ops[l->op].name;
}

void ox_names_assign(ox_net *n)
{
	strmap used = {0}, layers = {0};
	/* inputs and outputs keep their names where they can */
	for (int i = 0; i < n->n_vars; i++) {
		ox_var *v = &n->vars[i];
		if (v->input < 0)
			continue;
		const char *s = ox_identifier(n->a, v->input_name);
		v->name = unique(n, &used, *s ? s : "x");
	}
	for (int o = 0; o < n->n_outputs; o++) {
		ox_var *v = &n->vars[n->val[n->outputs[o]].var];
		const char *s = ox_identifier(n->a, n->val[n->outputs[o]].name);
		v->name = unique(n, &used, *s ? s : "y");
	}
	for (int i = 0; i < n->n_vars; i++)
		if (!n->vars[i].name)
			n->vars[i].name = var_name(n, &used, &n->vars[i]);
	for (int i = 0; i < n->n_layers; i++) {
		ox_layer *l = &n->layers[i];
		if (l->n_params)
			l->name = unique(n, &layers, layer_base(n, l));
	}
}

const char *onnx_param_name(arena *a, const char *torch_name)
{
	const char *dot = strrchr(torch_name, '.');
	if (!dot || dot == torch_name)
		return torch_name;
	const char *layer =
	    ox_identifier(a, arena_strndup(a, torch_name, (size_t)(dot - torch_name)));
	if (!*layer)
		return torch_name;
	return arena_printf(a, "%s%s%s", layer, ox_reserved(layer) ? "_" : "", dot);
}
