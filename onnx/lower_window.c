/* The lowerings of the operators that slide a window over H and W or
 * pad or subsample them: Conv, MaxPool, AveragePool, GlobalAveragePool,
 * Pad (a zero Pad folded into the Conv or AveragePool after it, or the
 * channels' padding) and Slice (a subsample). Together because they read
 * kernel, stride and padding the same way (window_read), with the same
 * limits and the same messages. */
#include <string.h>

#include "lower_impl.h"

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
	if (ox_attr_ints(n, node, "kernel_shape", &ks, &nk) != 0 ||
	    ox_attr_ints(n, node, "strides", &st, &ns) != 0 ||
	    ox_attr_ints(n, node, "dilations", &dl, &nd) != 0 ||
	    ox_attr_ints(n, node, "pads", &pd, &np) != 0 ||
	    ox_attr_string(n, node, "auto_pad", mode, sizeof mode) != 0)
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

int ox_lower_conv(ox_net *n, int node)
{
	ox_value *x;
	ox_const wt, b = {0};
	int64_t group;
	if (ox_inputs_count(n, node, 2, 3) != 0 ||
	    ox_attrs_allow(n, node, "auto_pad dilations group kernel_shape pads strides") != 0 ||
	    ox_attr_int(n, node, "group", 1, &group) != 0 ||
	    ox_in_tensor(n, node, 0, true, &x) != 0)
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
	ox_layer *l = ox_layer_new(n, IR_OP_CONV, node);
	l->in[0] = x->var, l->n_in = 1;
	l->out_ch = wt.dims[0], l->kernel = w.kernel, l->stride = w.stride, l->pad = w.pad;
	l->bias = bias;
	l->hint = in_value(n, node, 1)->name;
	layer_param(l, wt.f, ir_shape4(wt.dims[0], wt.dims[1], wt.dims[2], wt.dims[3]));
	if (bias)
		layer_param(l, b.f, ir_shape1(b.dims[0]));
	return ox_layer_result(n, l, out_value(n, node), ir_shape4(s->d[0], l->out_ch, w.oh, w.ow));
}

static int lower_pool(ox_net *n, int node, bool max)
{
	ox_value *x;
	const char *known = max ? "auto_pad ceil_mode dilations kernel_shape pads storage_order "
	                          "strides"
	                        : "auto_pad ceil_mode count_include_pad dilations kernel_shape "
	                          "pads strides";
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, known) != 0 ||
	    ox_in_tensor(n, node, 0, !max, &x) != 0 || ox_extra_outputs_unused(n, node) != 0)
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
	ox_layer *l = ox_layer_new(n, max ? IR_OP_MAXPOOL : IR_OP_AVGPOOL, node);
	l->in[0] = x->var, l->n_in = 1;
	l->kernel = w.kernel, l->stride = w.stride, l->pad = w.pad;
	return ox_layer_result(n, l, out_value(n, node), ir_shape4(s->d[0], s->d[1], w.oh, w.ow));
}

int ox_lower_maxpool(ox_net *n, int node)
{
	return lower_pool(n, node, true);
}

int ox_lower_avgpool(ox_net *n, int node)
{
	return lower_pool(n, node, false);
}

int ox_lower_global_avgpool(ox_net *n, int node)
{
	ox_value *x;
	if (ox_inputs_count(n, node, 1, 1) != 0 || ox_attrs_allow(n, node, "") != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0)
		return -1;
	const ir_shape *s = shape_of(n, x);
	if (s->rank != 4)
		return ox_node_error(n, node,
		                     "pools a tensor of rank %d; netcc's global_avgpool takes "
		                     "[N, C, H, W]",
		                     s->rank);
	return ox_lower_simple(n, node, IR_OP_GLOBAL_AVGPOOL, ir_shape4(s->d[0], s->d[1], 1, 1), x);
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
	ox_layer *l = ox_layer_new(n, IR_OP_PAD_CHANNELS, node);
	l->in[0] = x->var, l->n_in = 1;
	l->before = pads[1], l->after = pads[5];
	return ox_layer_result(n, l, out_value(n, node),
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
int ox_lower_pad(ox_net *n, int node)
{
	ox_value *x;
	char mode[32];
	const int64_t *pads = NULL;
	size_t np = 0;
	double value = 0;
	if (ox_inputs_count(n, node, 1, 3) != 0 ||
	    ox_attrs_allow(n, node, "mode pads value") != 0 ||
	    ox_attr_string(n, node, "mode", mode, sizeof mode) != 0 ||
	    ox_attr_float(n, node, "value", 0, &value) != 0 ||
	    ox_in_tensor(n, node, 0, true, &x) != 0)
		return -1;
	if (*mode && strcmp(mode, "constant"))
		return ox_node_error(n, node, "mode '%s'; netcc pads with zeros only (constant)",
		                     mode);
	if (n->opset < 11) {
		if (ox_attr_ints(n, node, "pads", &pads, &np) != 0)
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
			if (ox_attr_ints(n, node, names[i], &v[i], &count[i]) != 0)
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
int ox_lower_slice(ox_net *n, int node)
{
	ox_value *x;
	slice_axis ax[4];
	if (ox_inputs_count(n, node, n->opset < 10 ? 1 : 3, n->opset < 10 ? 1 : 5) != 0 ||
	    ox_attrs_allow(n, node, n->opset < 10 ? "axes ends starts" : "") != 0 ||
	    ox_in_tensor(n, node, 0, false, &x) != 0)
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
	ox_layer *l = ox_layer_new(n, IR_OP_SUBSAMPLE, node);
	l->in[0] = x->var, l->n_in = 1;
	l->stride = st;
	return ox_layer_result(
	    n, l, out_value(n, node),
	    ir_shape4(s->d[0], s->d[1], (s->d[2] + st - 1) / st, (s->d[3] + st - 1) / st));
}
