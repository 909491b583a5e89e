/* The layers as a .nn file, and their weights under the names that file
 * gives its parameters (<layer name>.weight, .bias, .running_mean, ...). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_impl.h"

typedef struct text {
	char *buf;
	size_t len, cap;
	bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int need = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (t->failed || need < 0)
		return;
	if (t->len + (size_t)need + 1 > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		while (cap < t->len + (size_t)need + 1)
			cap *= 2;
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->failed = true;
			return;
		}
		t->buf = b, t->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	t->len += (size_t)need;
}

/* Text from the file for a comment: printable ASCII, one line. */
static const char *printable(arena *a, const char *s, size_t max)
{
	char *out = arena_alloc(a, max + 1);
	size_t o = 0;
	for (; s && *s && o < max; s++)
		out[o++] = *s >= 32 && *s < 127 ? *s : '?';
	return out;
}

static void shape_decl(text *t, const ir_shape *s)
{
	put(t, "f32[N");
	for (int i = 1; i < s->rank; i++)
		put(t, ", %lld", (long long)s->d[i]);
	put(t, "]");
}

static void header(ox_net *n, text *t, const char *model)
{
	const Onnx__ModelProto *m = n->model;
	const char *path = strrchr(n->path, '/');
	put(t, "version 1\n");
	put(t, "# Imported by netcc import from %s",
	    printable(n->a, path ? path + 1 : n->path, 80));
	if (m->producer_name && *m->producer_name) {
		put(t, " (%s", printable(n->a, m->producer_name, 40));
		if (m->producer_version && *m->producer_version)
			put(t, " %s", printable(n->a, m->producer_version, 20));
		put(t, ")");
	}
	put(t, ", ONNX opset %lld:\n", (long long)n->opset);
	put(t, "# %zu nodes became %d layers. Parameters are named after the exporter's\n",
	    n->g->n_node, n->n_layers);
	put(t, "# modules where it names them, with '_' for '.'; the weights are in the\n");
	put(t, "# .safetensors file netcc import wrote beside this one.\n");
	put(t, "model %s(", model);
	bool first = true;
	for (int i = 0; i < n->n_vars; i++) {
		if (n->vars[i].input < 0)
			continue;
		put(t, "%s%s: ", first ? "" : ", ", n->vars[i].name);
		shape_decl(t, &n->vars[i].shape);
		first = false;
	}
	put(t, ") -> (");
	for (int i = 0; i < n->n_outputs; i++) {
		const ox_var *v = &n->vars[n->val[n->outputs[i]].var];
		put(t, "%s%s: ", i ? ", " : "", v->name);
		shape_decl(t, &v->shape);
	}
	put(t, ")\n\ngraph {\n");
}

static void layer_line(ox_net *n, text *t, const ox_layer *l)
{
	const char *out = n->vars[l->out].name, *x = n->vars[l->in[0]].name;
	const char *op = ir_ops[l->op].name;
	put(t, "    %s = ", out);
	switch (l->op) {
	case IR_OP_CONV:
		put(t, "conv(%s, %lld, %lld, %lld, %lld, bias = %s, name = \"%s\")", x,
		    (long long)l->out_ch, (long long)l->kernel, (long long)l->stride,
		    (long long)l->pad, l->bias ? "true" : "false", l->name);
		break;
	case IR_OP_BATCHNORM:
		/* PyTorch's 1e-5, as a float32 attribute, is 1e-5 to netcc */
		if (fabs(l->eps - 1e-5) < 1e-12)
			put(t, "batchnorm(%s, name = \"%s\")", x, l->name);
		else
			put(t, "batchnorm(%s, eps = %.9g, name = \"%s\")", x, l->eps, l->name);
		break;
	case IR_OP_LINEAR:
		put(t, "linear(%s, %lld, bias = %s, name = \"%s\")", x, (long long)l->out_ch,
		    l->bias ? "true" : "false", l->name);
		break;
	case IR_OP_ADD:
		put(t, "%s + %s", x, n->vars[l->in[1]].name);
		break;
	case IR_OP_MAXPOOL:
	case IR_OP_AVGPOOL:
		put(t, "%s(%s, kernel = %lld, stride = %lld, pad = %lld)", op, x,
		    (long long)l->kernel, (long long)l->stride, (long long)l->pad);
		break;
	case IR_OP_SUBSAMPLE:
		put(t, "subsample(%s, stride = %lld)", x, (long long)l->stride);
		break;
	case IR_OP_PAD_CHANNELS:
		put(t, "pad_channels(%s, before = %lld, after = %lld)", x, (long long)l->before,
		    (long long)l->after);
		break;
	default:
		put(t, "%s(%s)", op, x);
		break;
	}
	put(t, "\n");
}

/* The values a weights file may give netcc: finite, a variance not negative. */
static int values_check(ox_net *n, const ox_layer *l, int p, const char *name)
{
	size_t count = (size_t)ir_shape_count(&l->pshape[p]);
	for (size_t i = 0; i < count; i++) {
		float v = l->param[p][i];
		if (!isfinite(v))
			return ox_node_error(n, l->node, "weight '%s' holds %g at index %zu", name,
			                     v, i);
		if (l->op == IR_OP_BATCHNORM && p == 3 && v < 0)
			return ox_node_error(n, l->node, "its running variance is %g at index %zu",
			                     v, i);
	}
	return 0;
}

int ox_emit(ox_net *n, const char *model, onnx_import *im)
{
	static const char *const leaves[4] = {"weight", "bias", "running_mean", "running_var"};
	int params = 0;
	for (int i = 0; i < n->n_layers; i++)
		params += n->layers[i].n_params;
	/* the front end's limits, said here in the file's terms */
	if ((int64_t)n->n_vars + params >= IR_MAX_NODES)
		return ox_error(n, "%d layers and %d weights: more than netcc's %d graph nodes",
		                n->n_layers, params, IR_MAX_NODES);
	text t = {0};
	header(n, &t, model);
	for (int i = 0; i < n->n_layers; i++)
		layer_line(n, &t, &n->layers[i]);
	put(&t, "}\n");
	if (!t.failed && t.len >= ONNX_MAX_TEXT) {
		free(t.buf);
		return ox_error(n,
		                "the model would take %zu bytes as a .nn file, more than netcc "
		                "reads (16 MiB)",
		                t.len);
	}
	if (t.failed) {
		free(t.buf);
		return ox_error(n, "out of memory");
	}
	im->text = arena_strndup(n->a, t.buf, t.len);
	im->len = t.len;
	free(t.buf);
	im->weights = arena_array(n->a, (size_t)params + 1, sizeof *im->weights);
	for (int i = 0; i < n->n_layers; i++) {
		const ox_layer *l = &n->layers[i];
		for (int p = 0; p < l->n_params; p++) {
			const char *name = arena_printf(n->a, "%s.%s", l->name, leaves[p]);
			if (values_check(n, l, p, name) != 0)
				return -1;
			im->weights[im->n_weights++] =
			    (onnx_weight){.name = name, .shape = l->pshape[p], .data = l->param[p]};
		}
	}
	return 0;
}
