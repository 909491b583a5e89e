/* Each node as netcc layers. Shapes are followed through the graph so
 * that a node netcc cannot run the way ONNX defines it is refused here,
 * named, rather than computed differently. */
#include <math.h>
#include <string.h>

#include "onnx_impl.h"

enum { MAX_WINDOW = 1 << 12, MAX_CHANNELS = 1 << 20 };

/* ---- attributes ------------------------------------------------------------ */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *nd, const char *name)
{
	for (size_t i = 0; i < nd->n_attribute; i++)
		if (nd->attribute[i]->name && !strcmp(nd->attribute[i]->name, name))
			return nd->attribute[i];
	return NULL;
}

static int attr_type_error(ox_net *n, int node, const char *name, const char *want)
{
	return ox_node_error(n, node, "attribute '%s' must be %s", name, want);
}

int ox_attr_int(ox_net *n, int node, const char *name, int64_t def, int64_t *out)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*out = def;
	if (!a)
		return 0;
	if (!a->has_i)
		return attr_type_error(n, node, name, "an integer");
	*out = a->i;
	return 0;
}

static int attr_float(ox_net *n, int node, const char *name, double def, double *out)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*out = def;
	if (!a)
		return 0;
	if (!a->has_f)
		return attr_type_error(n, node, name, "a float");
	*out = a->f;
	return 0;
}

/* The attribute's integers; *count 0 where it is absent. */
static int attr_ints(ox_net *n, int node, const char *name, const int64_t **v, size_t *count)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	*v = NULL, *count = 0;
	if (!a)
		return 0;
	if (a->has_i || a->n_floats || a->has_f || a->has_s || a->t)
		return attr_type_error(n, node, name, "a list of integers");
	*v = a->ints, *count = a->n_ints;
	return 0;
}

/* "" where absent */
static int attr_string(ox_net *n, int node, const char *name, char *buf, size_t len)
{
	const Onnx__AttributeProto *a = ox_attr(n->g->node[node], name);
	buf[0] = 0;
	if (!a)
		return 0;
	if (!a->has_s)
		return attr_type_error(n, node, name, "a string");
	snprintf(buf, len, "%.*s", (int)(a->s.len < len ? a->s.len : len - 1), a->s.data);
	return 0;
}

/* Every attribute the node has must be one that its lowering reads. */
static int attrs_allow(ox_net *n, int node, const char *known)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	for (size_t i = 0; i < nd->n_attribute; i++) {
		const char *name = nd->attribute[i]->name ? nd->attribute[i]->name : "";
		size_t len = strlen(name);
		const char *p = known;
		bool ok = false;
		while (*p && !ok) {
			size_t w = strcspn(p, " ");
			ok = w == len && !strncmp(p, name, len);
			p += w + (p[w] == ' ');
		}
		if (!ok)
			return ox_node_error(n, node,
			                     "attribute '%s' is not supported (netcc reads %s)",
			                     name, *known ? known : "none");
	}
	return 0;
}

/* ---- values and layers -------------------------------------------------------- */

static ox_value *in_value(ox_net *n, int node, int i)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if ((size_t)i >= nd->n_input || !*nd->input[i])
		return NULL;
	return &n->val[ox_value_find(n, nd->input[i])];
}

/* Input i as a computed tensor; pad_ok: a pending zero Pad may come with it. */
static int in_tensor(ox_net *n, int node, int i, bool pad_ok, ox_value **out)
{
	ox_value *v = in_value(n, node, i);
	if (!v)
		return ox_node_error(n, node, "input %d is missing", i + 1);
	if (v->kind != OXV_TENSOR)
		return ox_node_error(n, node,
		                     "input %d ('%s') is a constant; netcc computes layers of "
		                     "inputs (export with do_constant_folding=True)",
		                     i + 1, v->name);
	if (v->pad && !pad_ok)
		return ox_node_error(n, node,
		                     "reads '%s', a Pad's result; netcc folds a zero Pad only into "
		                     "the Conv or AveragePool that reads it",
		                     v->name);
	*out = v;
	return 0;
}

static int inputs_count(ox_net *n, int node, size_t lo, size_t hi)
{
	size_t k = n->g->node[node]->n_input;
	while (k > 0 && !*n->g->node[node]->input[k - 1])
		k--; /* optional inputs left out at the end */
	if (k < lo || k > hi)
		return ox_node_error(n, node, "has %zu inputs; the operator takes %zu to %zu", k,
		                     lo, hi);
	return 0;
}

/* Outputs past the first (BatchNorm's statistics, MaxPool's indices,
 * Dropout's mask) are training or debugging results nothing may read. */
static int extra_outputs_unused(ox_net *n, int node)
{
	const Onnx__NodeProto *nd = n->g->node[node];
	if (nd->n_output < 1 || !*nd->output[0])
		return ox_node_error(n, node, "has no output");
	for (size_t o = 1; o < nd->n_output; o++) {
		if (!*nd->output[o])
			continue;
		const ox_value *v = &n->val[ox_value_find(n, nd->output[o])];
		if (v->uses)
			return ox_node_error(
			    n, node,
			    "its output %zu ('%s') is used; netcc computes only the "
			    "first (export in eval mode)",
			    o + 1, v->name);
	}
	return 0;
}

static ox_value *out_value(ox_net *n, int node)
{
	return &n->val[ox_value_find(n, n->g->node[node]->output[0])];
}

static int var_new(ox_net *n, int node, ox_value *out, ir_shape s)
{
	if (ir_shape_count(&s) >= IR_MAX_ELEMS) {
		char b[96];
		return ox_node_error(n, node,
		                     "its result %s has more than %lld elements per example",
		                     ir_shape_str(&s, b, sizeof b), (long long)IR_MAX_ELEMS);
	}
	if (n->n_vars == n->cap_vars) {
		int cap = n->cap_vars ? 2 * n->cap_vars : 64;
		ox_var *v = arena_array(n->a, (size_t)cap, sizeof *v);
		memcpy(v, n->vars, (size_t)n->n_vars * sizeof *v);
		n->vars = v, n->cap_vars = cap;
	}
	n->vars[n->n_vars] = (ox_var){.shape = s, .node = node, .input = -1};
	out->kind = OXV_TENSOR;
	out->var = n->n_vars++;
	out->pad = 0;
	return out->var;
}

static ox_layer *layer_new(ox_net *n, ir_op op, int node)
{
	if (n->n_layers == n->cap_layers) {
		int cap = n->cap_layers ? 2 * n->cap_layers : 64;
		ox_layer *l = arena_array(n->a, (size_t)cap, sizeof *l);
		if (n->n_layers)
			memcpy(l, n->layers, (size_t)n->n_layers * sizeof *l);
		n->layers = l, n->cap_layers = cap;
	}
	ox_layer *l = &n->layers[n->n_layers++];
	*l = (ox_layer){.op = op, .node = node, .out = -1};
	return l;
}

static void layer_param(ox_layer *l, const float *data, ir_shape s)
{
	l->param[l->n_params] = data;
	l->pshape[l->n_params++] = s;
}

/* Finishes l: its result, a new variable of shape s for out. */
static int layer_result(ox_net *n, ox_layer *l, ox_value *out, ir_shape s)
{
	int v = var_new(n, l->node, out, s);
	if (v < 0) {
		n->n_layers--;
		return -1;
	}
	l->out = v;
	return 0;
}

static const ir_shape *shape_of(ox_net *n, const ox_value *v)
{
	return &n->vars[v->var].shape;
}

static void alias(ox_value *out, const ox_value *in)
{
	out->kind = in->kind, out->var = in->var, out->pad = in->pad;
	out->c = in->c, out->init = in->init;
}

/* ---- windows: Conv, MaxPool, AveragePool -------------------------------------- */

typedef struct window {
	int64_t kernel, stride, pad, oh, ow;
} window;

static void ints_text(const int64_t *v, size_t count, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "[");
	for (size_t i = 0; i < count && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)v[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

static bool all_equal(const int64_t *v, size_t count)
{
	for (size_t i = 1; i < count; i++)
		if (v[i] != v[0])
			return false;
	return true;
}

/* The padding SAME_UPPER and SAME_LOWER ask for along one axis. */
static int64_t same_pad(int64_t in, int64_t k, int64_t s)
{
	int64_t out = (in + s - 1) / s;
	int64_t total = (out - 1) * s + k - in;
	return total > 0 ? total : 0;
}

/* kernel: the weight's (Conv), or 0 where kernel_shape gives it (pools).
 * extra: padding a Pad before it added. */
static int window_read(ox_net *n, int node, const ir_shape *x, int64_t kernel, int64_t extra,
                       const char *what, window *w)
{
	const int64_t *ks, *st, *dl, *pd;
	size_t nk, ns, nd, np;
	char t[128], mode[32];
	if (attr_ints(n, node, "kernel_shape", &ks, &nk) != 0 ||
	    attr_ints(n, node, "strides", &st, &ns) != 0 ||
	    attr_ints(n, node, "dilations", &dl, &nd) != 0 ||
	    attr_ints(n, node, "pads", &pd, &np) != 0 ||
	    attr_string(n, node, "auto_pad", mode, sizeof mode) != 0)
		return -1;
	if (nk && nk != 2) {
		ints_text(ks, nk, t, sizeof t);
		return ox_node_error(n, node, "kernel_shape %s: netcc's %s is two-dimensional", t,
		                     what);
	}
	if (nk && !all_equal(ks, nk)) {
		ints_text(ks, nk, t, sizeof t);
		return ox_node_error(
		    n, node, "kernel_shape %s is not square; netcc's %s kernels are", t, what);
	}
	if (nk && kernel && ks[0] != kernel)
		return ox_node_error(n, node, "kernel_shape %lld disagrees with the weight's %lld",
		                     (long long)ks[0], (long long)kernel);
	if (!nk && !kernel)
		return ox_node_error(n, node, "has no kernel_shape");
	w->kernel = nk ? ks[0] : kernel;
	if ((ns && ns != 2) || (ns && !all_equal(st, ns))) {
		ints_text(st, ns, t, sizeof t);
		return ox_node_error(
		    n, node, "strides %s differ; netcc's %s strides both axes alike", t, what);
	}
	w->stride = ns ? st[0] : 1;
	for (size_t i = 0; i < nd; i++)
		if (dl[i] != 1) {
			ints_text(dl, nd, t, sizeof t);
			return ox_node_error(n, node, "dilations %s: netcc's %s is not dilated", t,
			                     what);
		}
	if (w->kernel < 1 || w->kernel > MAX_WINDOW || w->stride < 1 || w->stride > MAX_WINDOW)
		return ox_node_error(n, node, "kernel %lld, stride %lld: netcc takes 1 to %d",
		                     (long long)w->kernel, (long long)w->stride, MAX_WINDOW);
	int64_t p = 0;
	if (!*mode || !strcmp(mode, "NOTSET")) {
		if (np && (np != 4 || !all_equal(pd, np))) {
			ints_text(pd, np, t, sizeof t);
			return ox_node_error(
			    n, node,
			    "pads %s are not symmetric; netcc's %s pads every side "
			    "alike",
			    t, what);
		}
		p = np ? pd[0] : 0;
	} else if (!strcmp(mode, "VALID")) {
		p = 0;
	} else if (!strcmp(mode, "SAME_UPPER") || !strcmp(mode, "SAME_LOWER")) {
		int64_t ph = same_pad(x->d[2], w->kernel, w->stride);
		int64_t pw = same_pad(x->d[3], w->kernel, w->stride);
		if (ph != pw || ph % 2)
			return ox_node_error(n, node,
			                     "auto_pad %s pads %lld and %lld here, not the same on "
			                     "every side; netcc's %s pads every side alike",
			                     mode, (long long)ph, (long long)pw, what);
		p = ph / 2;
	} else {
		return ox_node_error(n, node, "auto_pad '%s' is not an ONNX mode", mode);
	}
	if (p < 0 || p > MAX_WINDOW)
		return ox_node_error(n, node, "pad %lld: netcc takes 0 to %d", (long long)p,
		                     MAX_WINDOW);
	w->pad = p + extra;
	int64_t ph = x->d[2] + 2 * w->pad, pw = x->d[3] + 2 * w->pad;
	if (w->kernel > ph || w->kernel > pw)
		return ox_node_error(n, node,
		                     "kernel %lld is larger than the padded input %lldx%lld",
		                     (long long)w->kernel, (long long)ph, (long long)pw);
	w->oh = (ph - w->kernel) / w->stride + 1;
	w->ow = (pw - w->kernel) / w->stride + 1;
	return 0;
}

/* ceil_mode = 1 rounds the output up; where that adds a window, netcc,
 * which rounds down as PyTorch's default does, would compute another shape. */
static int pool_ceil_check(ox_net *n, int node, const ir_shape *x, const window *w)
{
	int64_t ceil_mode;
	if (ox_attr_int(n, node, "ceil_mode", 0, &ceil_mode) != 0)
		return -1;
	if (!ceil_mode)
		return 0;
	for (int i = 2; i < 4; i++) {
		int64_t span = x->d[i] + 2 * w->pad - w->kernel;
		if (span % w->stride)
			return ox_node_error(
			    n, node,
			    "ceil_mode = 1 adds a partial window here; netcc's pooling "
			    "rounds down (ceil_mode = 0)");
	}
	return 0;
}

static int pool_pad_check(ox_net *n, int node, const window *w)
{
	if (w->pad > w->kernel / 2)
		return ox_node_error(n, node,
		                     "pad %lld is more than half the kernel %lld; netcc's pooling "
		                     "(as PyTorch's) takes at most half",
		                     (long long)w->pad, (long long)w->kernel);
	return 0;
}

/* ---- the operators ------------------------------------------------------------ */

static int lower_conv(ox_net *n, int node)
{
	ox_value *x;
	ox_const wt, b = {0};
	int64_t group;
	if (inputs_count(n, node, 2, 3) != 0 ||
	    attrs_allow(n, node, "auto_pad dilations group kernel_shape pads strides") != 0 ||
	    ox_attr_int(n, node, "group", 1, &group) != 0 || in_tensor(n, node, 0, true, &x) != 0)
		return -1;
	if (group != 1)
		return ox_node_error(n, node,
		                     "group = %lld is not supported (grouped or depthwise "
		                     "convolution); netcc's conv takes group = 1",
		                     (long long)group);
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 4)
		return ox_node_error(
		    n, node, "reads a tensor of rank %d; netcc's conv is 2-D (NCHW)", s->rank);
	if (ox_value_const(n, node, 1, OX_F32, &wt) != 0)
		return -1;
	if (wt.rank != 4 || wt.dims[2] != wt.dims[3] || wt.dims[1] != s->d[1] || wt.dims[0] < 1 ||
	    wt.dims[0] > MAX_CHANNELS) {
		char t[128];
		ints_text(wt.dims, (size_t)wt.rank, t, sizeof t);
		return ox_node_error(n, node,
		                     "weight %s: netcc's conv takes [out, %lld, k, k], square "
		                     "kernels, out at most %d",
		                     t, (long long)s->d[1], MAX_CHANNELS);
	}
	bool bias = in_value(n, node, 2) != NULL;
	if (bias && ox_value_const(n, node, 2, OX_F32, &b) != 0)
		return -1;
	if (bias && (b.rank != 1 || b.dims[0] != wt.dims[0]))
		return ox_node_error(n, node, "bias of %lld values for %lld channels",
		                     (long long)b.count, (long long)wt.dims[0]);
	window w;
	if (window_read(n, node, s, wt.dims[2], x->pad, "conv", &w) != 0)
		return -1;
	ox_layer *l = layer_new(n, IR_OP_CONV, node);
	l->in[0] = x->var, l->n_in = 1;
	l->out_ch = wt.dims[0], l->kernel = w.kernel, l->stride = w.stride, l->pad = w.pad;
	l->bias = bias;
	l->hint = in_value(n, node, 1)->name;
	layer_param(l, wt.f, ir_shape4(wt.dims[0], wt.dims[1], wt.dims[2], wt.dims[3]));
	if (bias)
		layer_param(l, b.f, ir_shape1(b.dims[0]));
	return layer_result(n, l, out_value(n, node), ir_shape4(s->d[0], l->out_ch, w.oh, w.ow));
}

static int lower_batchnorm(ox_net *n, int node)
{
	ox_value *x;
	ox_const p[4];
	double eps;
	int64_t spatial, training;
	if (inputs_count(n, node, 5, 5) != 0 ||
	    attrs_allow(n, node, "epsilon momentum spatial training_mode") != 0 ||
	    attr_float(n, node, "epsilon", 1e-5, &eps) != 0 ||
	    ox_attr_int(n, node, "spatial", 1, &spatial) != 0 ||
	    ox_attr_int(n, node, "training_mode", 0, &training) != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0 || extra_outputs_unused(n, node) != 0)
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
	ox_layer *l = layer_new(n, IR_OP_BATCHNORM, node);
	l->in[0] = x->var, l->n_in = 1;
	l->eps = eps;
	l->hint = in_value(n, node, 1)->name;
	for (int i = 0; i < 4; i++)
		layer_param(l, p[i].f, ir_shape1(s->d[1]));
	return layer_result(n, l, out_value(n, node), *s);
}

/* Relu, GlobalAveragePool, Softmax: one tensor in, no weights. */
static int lower_simple(ox_net *n, int node, ir_op op, ir_shape s, ox_value *x)
{
	ox_layer *l = layer_new(n, op, node);
	l->in[0] = x->var, l->n_in = 1;
	return layer_result(n, l, out_value(n, node), s);
}

static int lower_relu(ox_net *n, int node)
{
	ox_value *x;
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, "") != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	return lower_simple(n, node, IR_OP_RELU, *shape_of(n, x), x);
}

static int lower_add(ox_net *n, int node)
{
	if (inputs_count(n, node, 2, 2) != 0 || attrs_allow(n, node, "") != 0)
		return -1;
	ox_value *a = in_value(n, node, 0), *b = in_value(n, node, 1);
	if (!a || !b)
		return ox_node_error(n, node, "has an input missing");
	if (a->kind != OXV_TENSOR || b->kind != OXV_TENSOR)
		return ox_node_error(n, node,
		                     "adds a constant; netcc imports that only as the bias right "
		                     "after a MatMul (a linear layer) or Gemm");
	if (in_tensor(n, node, 0, false, &a) != 0 || in_tensor(n, node, 1, false, &b) != 0)
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
	ox_layer *l = layer_new(n, IR_OP_ADD, node);
	l->in[0] = a->var, l->in[1] = b->var, l->n_in = 2;
	return layer_result(n, l, out_value(n, node), *sa);
}

static int lower_pool(ox_net *n, int node, bool max)
{
	ox_value *x;
	const char *known = max ? "auto_pad ceil_mode dilations kernel_shape pads storage_order "
	                          "strides"
	                        : "auto_pad ceil_mode count_include_pad dilations kernel_shape "
	                          "pads strides";
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, known) != 0 ||
	    in_tensor(n, node, 0, !max, &x) != 0 || extra_outputs_unused(n, node) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	const char *what = max ? "maxpool" : "avgpool";
	if (s->rank != 4)
		return ox_node_error(n, node, "pools a tensor of rank %d; netcc's %s is 2-D (NCHW)",
		                     s->rank, what);
	window w;
	if (window_read(n, node, s, 0, x->pad, what, &w) != 0 ||
	    pool_ceil_check(n, node, s, &w) != 0 || pool_pad_check(n, node, &w) != 0)
		return -1;
	int64_t include;
	if (!max) {
		if (ox_attr_int(n, node, "count_include_pad", 0, &include) != 0)
			return -1;
		if (w.pad > x->pad && !include)
			return ox_node_error(
			    n, node,
			    "count_include_pad = 0 with padding; netcc's avgpool "
			    "counts the padding as zeros in the average (PyTorch's "
			    "count_include_pad=True)");
	}
	ox_layer *l = layer_new(n, max ? IR_OP_MAXPOOL : IR_OP_AVGPOOL, node);
	l->in[0] = x->var, l->n_in = 1;
	l->kernel = w.kernel, l->stride = w.stride, l->pad = w.pad;
	return layer_result(n, l, out_value(n, node), ir_shape4(s->d[0], s->d[1], w.oh, w.ow));
}

static int lower_maxpool(ox_net *n, int node)
{
	return lower_pool(n, node, true);
}

static int lower_avgpool(ox_net *n, int node)
{
	return lower_pool(n, node, false);
}

static int lower_global_avgpool(ox_net *n, int node)
{
	ox_value *x;
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, "") != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 4)
		return ox_node_error(n, node,
		                     "pools a tensor of rank %d; netcc's global_avgpool takes "
		                     "[N, C, H, W]",
		                     s->rank);
	return lower_simple(n, node, IR_OP_GLOBAL_AVGPOOL, ir_shape4(s->d[0], s->d[1], 1, 1), x);
}

/* [N, ...] to [N, rest]: a flatten, or nothing where x is [N, C] already. */
static int lower_to_rows(ox_net *n, int node, ox_value *x)
{
	const ir_shape *s = shape_of(n, x);
	if (s->rank == 2) {
		alias(out_value(n, node), x);
		return 0;
	}
	return lower_simple(n, node, IR_OP_FLATTEN, ir_shape2(s->d[0], ir_shape_row(s)), x);
}

static int lower_flatten(ox_net *n, int node)
{
	ox_value *x;
	int64_t axis;
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, "axis") != 0 ||
	    ox_attr_int(n, node, "axis", 1, &axis) != 0 || in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	int rank = shape_of(n, x)->rank;
	if ((axis < 0 ? axis + rank : axis) != 1 || rank < 2)
		return ox_node_error(n, node,
		                     "axis = %lld of a rank-%d tensor; netcc flattens to [N, rest] "
		                     "(axis = 1)",
		                     (long long)axis, rank);
	return lower_to_rows(n, node, x);
}

static int lower_reshape(ox_net *n, int node)
{
	ox_value *x;
	ox_const t;
	int64_t allowzero;
	if (inputs_count(n, node, 2, 2) != 0 || attrs_allow(n, node, "allowzero") != 0 ||
	    ox_attr_int(n, node, "allowzero", 0, &allowzero) != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0 || ox_value_const(n, node, 1, OX_I64, &t) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	int64_t rest = ir_shape_row(s);
	bool ok = t.rank == 1 && t.count == 2 && s->rank >= 2;
	if (ok) {
		int64_t a = t.i[0], b = t.i[1];
		bool batch = (a == 0 && !allowzero) || a == OX_BATCH ||
		             (n->batch && a == n->batch) || (a == -1 && b == rest);
		bool row = b == -1 || b == rest || (b == 0 && !allowzero && s->rank == 2);
		ok = batch && row && !(a == -1 && b == -1);
	}
	if (!ok) {
		char want[256] = "a computed shape";
		if (t.rank == 1) {
			size_t o = (size_t)snprintf(want, sizeof want, "[");
			for (int64_t i = 0; i < t.count && i < 8 && o < sizeof want; i++)
				o += (size_t)snprintf(
				    want + o, sizeof want - o, "%s%s", i ? "," : "",
				    t.i[i] == OX_BATCH
				        ? "N"
				        : arena_printf(n->a, "%lld", (long long)t.i[i]));
			if (o < sizeof want)
				snprintf(want + o, sizeof want - o, "%s]",
				         t.count > 8 ? ",..." : "");
		}
		return ox_node_error(n, node,
		                     "reshapes to %s; netcc imports only a reshape to [N, -1] (a "
		                     "flatten)",
		                     want);
	}
	return lower_to_rows(n, node, x);
}

/* Gemm's B, or MatMul's: [out, in] as linear keeps it, transposed from
 * [in, out] where trans is false. */
static const float *linear_weight(ox_net *n, const ox_const *b, bool trans)
{
	if (trans)
		return b->f;
	int64_t in = b->dims[0], out = b->dims[1];
	float *w = arena_array(n->a, (size_t)(in * out) + 1, sizeof *w);
	for (int64_t i = 0; i < in; i++)
		for (int64_t o = 0; o < out; o++)
			w[o * in + i] = b->f[i * out + o];
	return w;
}

/* A bias for out features: [out], [1, out], or one value for all. */
static const float *linear_bias(ox_net *n, int node, int input, int64_t out)
{
	ox_const c;
	if (ox_value_const(n, node, input, OX_F32, &c) != 0)
		return NULL;
	bool row = (c.rank == 1 && c.dims[0] == out) ||
	           (c.rank == 2 && c.dims[0] == 1 && c.dims[1] == out);
	if (row)
		return c.f;
	if (c.count == 1) {
		float *b = arena_array(n->a, (size_t)out, sizeof *b);
		for (int64_t i = 0; i < out; i++)
			b[i] = c.f[0];
		return b;
	}
	ox_node_error(n, node,
	              "a bias of %lld values for %lld features; netcc's linear adds one "
	              "per feature",
	              (long long)c.count, (long long)out);
	return NULL;
}

static int linear_layer(ox_net *n, int node, ox_value *x, const float *w, int64_t out, int64_t in,
                        const float *bias, const char *hint, ox_value *result)
{
	if (out < 1 || out > MAX_CHANNELS)
		return ox_node_error(n, node, "%lld output features; netcc's linear takes 1 to %d",
		                     (long long)out, MAX_CHANNELS);
	ox_layer *l = layer_new(n, IR_OP_LINEAR, node);
	l->in[0] = x->var, l->n_in = 1;
	l->out_ch = out, l->bias = bias != NULL, l->hint = hint;
	layer_param(l, w, ir_shape2(out, in));
	if (bias)
		layer_param(l, bias, ir_shape1(out));
	return layer_result(n, l, result, ir_shape2(shape_of(n, x)->d[0], out));
}

static int linear_input(ox_net *n, int node, ox_value **x)
{
	if (in_tensor(n, node, 0, false, x) != 0)
		return -1;
	if (shape_of(n, *x)->rank != 2)
		return ox_node_error(n, node,
		                     "multiplies a tensor of rank %d; netcc's linear takes "
		                     "[N, features] (Flatten first)",
		                     shape_of(n, *x)->rank);
	return 0;
}

static int lower_gemm(ox_net *n, int node)
{
	ox_value *x;
	ox_const b;
	int64_t ta, tb;
	double alpha, beta;
	if (inputs_count(n, node, 2, 3) != 0 ||
	    attrs_allow(n, node, "alpha beta transA transB") != 0 ||
	    ox_attr_int(n, node, "transA", 0, &ta) != 0 ||
	    ox_attr_int(n, node, "transB", 0, &tb) != 0 ||
	    attr_float(n, node, "alpha", 1, &alpha) != 0 ||
	    attr_float(n, node, "beta", 1, &beta) != 0 || linear_input(n, node, &x) != 0 ||
	    ox_value_const(n, node, 1, OX_F32, &b) != 0)
		return -1;
	bool bias = in_value(n, node, 2) != NULL;
	if (ta)
		return ox_node_error(n, node,
		                     "transA = 1; netcc's linear multiplies [N, in] rows "
		                     "(transA = 0)");
	if (alpha != 1 || (bias && beta != 1))
		return ox_node_error(n, node, "alpha = %g, beta = %g; netcc's linear takes 1 and 1",
		                     alpha, beta);
	int64_t in = shape_of(n, x)->d[1];
	if (b.rank != 2 || b.dims[tb ? 1 : 0] != in)
		return ox_node_error(n, node,
		                     "B does not take %lld features to others (transB = %lld)",
		                     (long long)in, (long long)tb);
	int64_t out = b.dims[tb ? 0 : 1];
	const float *c = NULL;
	if (bias && !(c = linear_bias(n, node, 2, out)))
		return -1;
	return linear_layer(n, node, x, linear_weight(n, &b, tb != 0), out, in, c,
	                    in_value(n, node, 1)->name, out_value(n, node));
}

/* MatMul by a constant, and the Add of a constant right after it that
 * PyTorch writes for a bias, as one linear layer. */
static int lower_matmul(ox_net *n, int node)
{
	ox_value *x;
	ox_const b;
	if (inputs_count(n, node, 2, 2) != 0 || attrs_allow(n, node, "") != 0 ||
	    linear_input(n, node, &x) != 0)
		return -1;
	if (in_value(n, node, 1)->kind == OXV_TENSOR)
		return ox_node_error(n, node,
		                     "multiplies two computed tensors; netcc's linear "
		                     "multiplies by a constant weight");
	if (ox_value_const(n, node, 1, OX_F32, &b) != 0)
		return -1;
	int64_t in = shape_of(n, x)->d[1];
	if (b.rank != 2 || b.dims[0] != in)
		return ox_node_error(n, node, "B does not take %lld features to others",
		                     (long long)in);
	int64_t out = b.dims[1];
	ox_value *result = out_value(n, node);
	const float *bias = NULL;
	int add = result->consumer;
	if (result->uses == 1 && !result->output && add >= 0 &&
	    !strcmp(n->g->node[add]->op_type, "Add") && n->g->node[add]->n_input == 2 &&
	    n->g->node[add]->n_attribute == 0) {
		int other = strcmp(n->g->node[add]->input[0], n->g->node[node]->output[0]) ? 0 : 1;
		ox_value *c = in_value(n, add, other);
		if (c && (c->kind == OXV_CONST || c->kind == OXV_LAZY)) {
			if (!(bias = linear_bias(n, add, other, out)))
				return -1;
			n->done[add] = true;
			result = out_value(n, add);
		}
	}
	return linear_layer(n, node, x, linear_weight(n, &b, false), out, in, bias,
	                    in_value(n, node, 1)->name, result);
}

static int lower_softmax(ox_net *n, int node)
{
	ox_value *x;
	int64_t axis;
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, "axis") != 0 ||
	    ox_attr_int(n, node, "axis", n->opset < 13 ? 1 : -1, &axis) != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 2 || (axis < 0 ? axis + 2 : axis) != 1)
		return ox_node_error(n, node,
		                     "axis = %lld of a rank-%d tensor; netcc's softmax takes "
		                     "[N, classes] over the classes (axis 1)",
		                     (long long)axis, s->rank);
	return lower_simple(n, node, IR_OP_SOFTMAX, *s, x);
}

static int lower_identity(ox_net *n, int node)
{
	if (inputs_count(n, node, 1, 1) != 0 || attrs_allow(n, node, "") != 0)
		return -1;
	alias(out_value(n, node), in_value(n, node, 0));
	return 0;
}

/* Inference's Dropout passes its input through. */
static int lower_dropout(ox_net *n, int node)
{
	ox_value *x;
	if (inputs_count(n, node, 1, 3) != 0 || attrs_allow(n, node, "ratio seed is_test") != 0 ||
	    extra_outputs_unused(n, node) != 0 || in_tensor(n, node, 0, false, &x) != 0)
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

/* Zeros before and after the channels: netcc's pad_channels (the zero
 * padding of an option-A shortcut, as netcc export writes it). */
static int lower_pad_channels(ox_net *n, int node, ox_value *x, const int64_t *pads)
{
	if (x->pad)
		return ox_node_error(n, node,
		                     "pads the channels of '%s', a Pad's result; netcc pads "
		                     "either the channels or H and W",
		                     x->name);
	if (pads[1] > MAX_CHANNELS || pads[5] > MAX_CHANNELS)
		return ox_node_error(n, node, "pads %lld and %lld channels; netcc takes 0 to %d",
		                     (long long)pads[1], (long long)pads[5], MAX_CHANNELS);
	const ir_shape *s = shape_of(n, x);
	ox_layer *l = layer_new(n, IR_OP_PAD_CHANNELS, node);
	l->in[0] = x->var, l->n_in = 1;
	l->before = pads[1], l->after = pads[5];
	return layer_result(n, l, out_value(n, node),
	                    ir_shape4(s->d[0], s->d[1] + pads[1] + pads[5], s->d[2], s->d[3]));
}

/* pads of a 4-D tensor, [begin N, C, H, W, end N, C, H, W]: of the
 * channels only (1), of H and W alike only (2), or neither (0) */
static int pad_kind(const int64_t *pads, size_t np)
{
	if (np != 8)
		return 0;
	bool channels = pads[1] >= 0 && pads[5] >= 0, spatial = pads[2] >= 0;
	for (int i = 0; i < 8; i++) {
		channels = channels && (i % 4 == 1 || pads[i] == 0);
		spatial = spatial && (i % 4 < 2 ? pads[i] == 0 : pads[i] == pads[2]);
	}
	return spatial ? 2 : channels ? 1 : 0;
}

/* A zero Pad of H and W only: kept on its result for the Conv or
 * AveragePool that reads it to add to its own padding. A zero Pad of the
 * channels only: pad_channels. */
static int lower_pad(ox_net *n, int node)
{
	ox_value *x;
	char mode[32];
	const int64_t *pads = NULL;
	size_t np = 0;
	double value = 0;
	if (inputs_count(n, node, 1, 3) != 0 || attrs_allow(n, node, "mode pads value") != 0 ||
	    attr_string(n, node, "mode", mode, sizeof mode) != 0 ||
	    attr_float(n, node, "value", 0, &value) != 0 || in_tensor(n, node, 0, true, &x) != 0)
		return -1;
	if (*mode && strcmp(mode, "constant"))
		return ox_node_error(n, node, "mode '%s'; netcc pads with zeros only (constant)",
		                     mode);
	if (n->opset < 11) {
		if (attr_ints(n, node, "pads", &pads, &np) != 0)
			return -1;
	} else {
		ox_const c, v;
		if (ox_value_const(n, node, 1, OX_I64, &c) != 0)
			return -1;
		pads = c.i, np = (size_t)c.count;
		if (in_value(n, node, 2)) {
			if (ox_value_const(n, node, 2, OX_F32, &v) != 0)
				return -1;
			value = v.count ? v.f[0] : 0;
		}
	}
	int kind = shape_of(n, x)->rank == 4 && value == 0 ? pad_kind(pads, np) : 0;
	if (kind == 1)
		return lower_pad_channels(n, node, x, pads);
	if (!kind || pads[2] > MAX_WINDOW) {
		char t[160] = "";
		ints_text(pads, np, t, sizeof t);
		return ox_node_error(n, node,
		                     "pads %s with %g; netcc takes zeros alike on every side of H "
		                     "and W, folded into the Conv or AveragePool after, or zeros "
		                     "before and after the channels only",
		                     t, value);
	}
	ox_value *out = out_value(n, node);
	alias(out, x);
	out->pad = x->pad + pads[2];
	return 0;
}

/* One axis of a Slice, ONNX's rules: negative positions count from the
 * end, and positions past it clamp to it. */
typedef struct slice_axis {
	int64_t start, end, step;
	bool given;
} slice_axis;

static bool slice_whole(const slice_axis *a, int64_t dim)
{
	int64_t start = a->start < 0 ? a->start + dim : a->start;
	int64_t end = a->end < 0 ? a->end + dim : a->end;
	return start <= 0 && end >= dim && a->step >= 1;
}

/* Slice's starts, ends, axes and steps: inputs from opset 10, attributes before. */
static int slice_read(ox_net *n, int node, int rank, slice_axis *ax)
{
	ox_const c[4] = {0};
	const int64_t *v[4] = {0};
	size_t count[4] = {0};
	if (n->opset < 10) {
		static const char *const names[3] = {"starts", "ends", "axes"};
		for (int i = 0; i < 3; i++)
			if (attr_ints(n, node, names[i], &v[i], &count[i]) != 0)
				return -1;
	} else {
		for (int i = 0; i < 4; i++) {
			if (!in_value(n, node, i + 1))
				continue;
			if (ox_value_const(n, node, i + 1, OX_I64, &c[i]) != 0)
				return -1;
			v[i] = c[i].i, count[i] = (size_t)c[i].count;
		}
	}
	if (count[0] != count[1] || (v[2] && count[2] != count[0]) ||
	    (v[3] && count[3] != count[0]) || count[0] > (size_t)rank)
		return ox_node_error(n, node, "its starts, ends, axes and steps differ in length");
	for (int i = 0; i < rank; i++)
		ax[i] = (slice_axis){.start = 0, .end = INT64_MAX, .step = 1};
	for (size_t k = 0; k < count[0]; k++) {
		int64_t a = v[2] ? v[2][k] : (int64_t)k;
		a = a < 0 ? a + rank : a;
		if (a < 0 || a >= rank || ax[a].given)
			return ox_node_error(n, node, "axis %lld is out of range or repeated",
			                     (long long)(v[2] ? v[2][k] : (int64_t)k));
		ax[a] = (slice_axis){v[0][k], v[1][k], v[3] ? v[3][k] : 1, true};
		if (ax[a].start == OX_BATCH || ax[a].end == OX_BATCH || ax[a].step == 0)
			return ox_node_error(n, node,
			                     "slices axis %lld with a step of 0 or up to the batch",
			                     (long long)a);
	}
	return 0;
}

/* x[:, :, ::s, ::s]: netcc's subsample (the option-A shortcut's, as
 * netcc export writes it); a Slice that keeps everything is nothing. */
static int lower_slice(ox_net *n, int node)
{
	ox_value *x;
	slice_axis ax[4];
	if (inputs_count(n, node, n->opset < 10 ? 1 : 3, n->opset < 10 ? 1 : 5) != 0 ||
	    attrs_allow(n, node, n->opset < 10 ? "axes ends starts" : "") != 0 ||
	    in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 4)
		return ox_node_error(
		    n, node,
		    "slices a tensor of rank %d; netcc's subsample takes [N, C, H, "
		    "W]",
		    s->rank);
	if (slice_read(n, node, 4, ax) != 0)
		return -1;
	bool batch = ax[0].start == 0 && ax[0].step == 1 &&
	             (ax[0].end >= OX_MAX_DIM || (n->batch && ax[0].end >= n->batch));
	bool ok = batch && slice_whole(&ax[1], s->d[1]) && ax[1].step == 1 &&
	          slice_whole(&ax[2], s->d[2]) && slice_whole(&ax[3], s->d[3]) &&
	          ax[2].step == ax[3].step && ax[2].step <= MAX_WINDOW;
	if (!ok)
		return ox_node_error(n, node,
		                     "netcc imports a Slice only as x[:, :, ::s, ::s] (subsample: "
		                     "all of H and W with one step, all of N and C)");
	if (ax[2].step == 1) {
		alias(out_value(n, node), x);
		return 0;
	}
	int64_t st = ax[2].step;
	ox_layer *l = layer_new(n, IR_OP_SUBSAMPLE, node);
	l->in[0] = x->var, l->n_in = 1;
	l->stride = st;
	return layer_result(
	    n, l, out_value(n, node),
	    ir_shape4(s->d[0], s->d[1], (s->d[2] + st - 1) / st, (s->d[3] + st - 1) / st));
}

typedef int lower_fn(ox_net *n, int node);

static const struct {
	const char *op;
	lower_fn *fn;
} lowerings[] = {
    {"Add", lower_add},
    {"AveragePool", lower_avgpool},
    {"BatchNormalization", lower_batchnorm},
    {"Conv", lower_conv},
    {"Dropout", lower_dropout},
    {"Flatten", lower_flatten},
    {"Gemm", lower_gemm},
    {"GlobalAveragePool", lower_global_avgpool},
    {"Identity", lower_identity},
    {"MatMul", lower_matmul},
    {"MaxPool", lower_maxpool},
    {"Pad", lower_pad},
    {"Relu", lower_relu},
    {"Reshape", lower_reshape},
    {"Slice", lower_slice},
    {"Softmax", lower_softmax},
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
    {"Sigmoid", "Relu"},
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
