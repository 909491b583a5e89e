/* Shape rules, one per operator: each checks its attributes and arguments
 * and reports misuse at the node's source location. */
#include <string.h>

#include "ir.h"
#include "kset.h"

ir_shape ir_shape4(int64_t n, int64_t c, int64_t h, int64_t w)
{
	return (ir_shape){.rank = 4, .d = {n, c, h, w}};
}

ir_shape ir_shape2(int64_t n, int64_t c)
{
	return (ir_shape){.rank = 2, .d = {n, c}};
}

ir_shape ir_shape1(int64_t n)
{
	return (ir_shape){.rank = 1, .d = {n}};
}

/* Saturates instead of overflowing: anything past IR_MAX_ELEMS is an error anyway. */
int64_t ir_shape_count(const ir_shape *s)
{
	int64_t c = 1;
	for (int i = 0; i < s->rank; i++) {
		if (s->d[i] < 0)
			return -1;
		if (s->d[i] && c > INT64_MAX / s->d[i])
			return INT64_MAX;
		c *= s->d[i];
	}
	return c;
}

int64_t ir_shape_row(const ir_shape *s)
{
	ir_shape rest = {.rank = s->rank > 0 ? s->rank - 1 : 0};
	for (int i = 0; i < rest.rank; i++)
		rest.d[i] = s->d[i + 1];
	return ir_shape_count(&rest);
}

bool ir_shape_eq(const ir_shape *a, const ir_shape *b)
{
	if (a->rank != b->rank)
		return false;
	for (int i = 0; i < a->rank; i++)
		if (a->d[i] != b->d[i])
			return false;
	return true;
}

char *ir_dims_str(const int64_t *d, int rank, char *buf, size_t len)
{
	size_t o = 0;
	o += (size_t)snprintf(buf + o, len - o, "[");
	for (int i = 0; i < rank && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)d[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
	return buf;
}

char *ir_shape_str(const ir_shape *s, char *buf, size_t len)
{
	return ir_dims_str(s->d, s->rank, buf, len);
}

static const ir_shape *arg(const ir_graph *g, const ir_node *n, int i)
{
	return &g->nodes[n->in[i]].shape;
}

static void need_rank(const ir_graph *g, const ir_node *n, int i, int rank, const char *what)
{
	const ir_shape *s = arg(g, n, i);
	if (s->rank != rank) {
		char b[96];
		diag_error_at(&n->loc, "%s expects %s, got a tensor of shape %s",
		              ir_ops[n->op].name, what, ir_shape_str(s, b, sizeof b));
	}
}

static void need_range(const ir_node *n, const char *attr, int64_t v, int64_t lo, int64_t hi)
{
	if (v < lo || v > hi)
		diag_error_at(&n->loc, "%s: %s = %lld is out of range [%lld, %lld]",
		              ir_ops[n->op].name, attr, (long long)v, (long long)lo, (long long)hi);
}

enum { MAX_WINDOW = 1 << 12, MAX_CHANNELS = 1 << 20 };

/* A sliding window over h x w: the output extent, or an error when the
 * window does not fit inside the padded input. */
static void window(ir_node *n, const ir_shape *x, int64_t oc)
{
	need_range(n, "kernel", n->kernel, 1, MAX_WINDOW);
	need_range(n, "stride", n->stride, 1, MAX_WINDOW);
	need_range(n, "pad", n->pad, 0, MAX_WINDOW);
	int64_t ph = x->d[2] + 2 * n->pad, pw = x->d[3] + 2 * n->pad;
	if (n->kernel > ph || n->kernel > pw)
		diag_error_at(&n->loc,
		              "%s: kernel %lld is larger than the padded input %lldx%lld "
		              "(%lldx%lld with pad %lld)",
		              ir_ops[n->op].name, (long long)n->kernel, (long long)ph,
		              (long long)pw, (long long)x->d[2], (long long)x->d[3],
		              (long long)n->pad);
	n->shape = ir_shape4(x->d[0], oc, (ph - n->kernel) / n->stride + 1,
	                     (pw - n->kernel) / n->stride + 1);
}

static void shape_input(const ir_graph *g, ir_node *n) {}

static void shape_param(const ir_graph *g, ir_node *n) {}

/* A fused residual must have the shape of the result it is added to. */
static void check_residual(const ir_graph *g, const ir_node *n)
{
	if (!n->residual)
		return;
	const ir_shape *r = arg(g, n, n->residual);
	if (n->residual >= n->n_in || !ir_shape_eq(r, &n->shape)) {
		char a[96], b[96];
		diag_error_at(&n->loc, "internal: residual %s does not match the result %s",
		              ir_shape_str(r, a, sizeof a), ir_shape_str(&n->shape, b, sizeof b));
	}
}

static void shape_conv(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 4, "an [N, C, H, W] tensor");
	need_range(n, "out", n->out, 1, MAX_CHANNELS);
	window(n, arg(g, n, 0), n->out);
	check_residual(g, n);
}

static void shape_batchnorm(const ir_graph *g, ir_node *n)
{
	const ir_shape *x = arg(g, n, 0);
	if (x->rank != 4 && x->rank != 2)
		need_rank(g, n, 0, 4, "an [N, C, H, W] or [N, C] tensor");
	if (!(n->eps > 0 && n->eps < 1))
		diag_error_at(&n->loc, "batchnorm: eps = %g must be in (0, 1)", n->eps);
	if (!(n->momentum >= 0 && n->momentum <= 1))
		diag_error_at(&n->loc, "batchnorm: momentum = %g must be in [0, 1]", n->momentum);
	n->shape = *x;
}

static void shape_relu(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_add(const ir_graph *g, ir_node *n)
{
	const ir_shape *a = arg(g, n, 0), *b = arg(g, n, 1);
	if (!ir_shape_eq(a, b)) {
		char ba[96], bb[96];
		const char *what = a->rank == 4 && b->rank == 4 && a->d[1] != b->d[1]
		                       ? " (the channels differ: a shortcut needs a projection "
		                         "or padding)"
		                       : "";
		diag_error_at(&n->loc, "add: shapes differ: %s and %s%s",
		              ir_shape_str(a, ba, sizeof ba), ir_shape_str(b, bb, sizeof bb), what);
	}
	n->shape = *a;
}

static void pool(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 4, "an [N, C, H, W] tensor");
	/* PyTorch's rule: padding beyond half the window would make windows of pure padding. */
	if (n->pad > n->kernel / 2)
		diag_error_at(&n->loc, "%s: pad = %lld must be at most half the kernel (%lld)",
		              ir_ops[n->op].name, (long long)n->pad, (long long)n->kernel);
	window(n, arg(g, n, 0), arg(g, n, 0)->d[1]);
}

static void shape_maxpool(const ir_graph *g, ir_node *n)
{
	pool(g, n);
}

static void shape_avgpool(const ir_graph *g, ir_node *n)
{
	pool(g, n);
}

static void shape_global_avgpool(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 4, "an [N, C, H, W] tensor");
	const ir_shape *x = arg(g, n, 0);
	n->shape = n->flat ? ir_shape2(x->d[0], x->d[1]) : ir_shape4(x->d[0], x->d[1], 1, 1);
}

static void shape_flatten(const ir_graph *g, ir_node *n)
{
	const ir_shape *x = arg(g, n, 0);
	if (x->rank < 2)
		need_rank(g, n, 0, 2, "a tensor of rank 2 or more");
	int64_t f = 1;
	for (int i = 1; i < x->rank; i++)
		f *= x->d[i];
	n->shape = ir_shape2(x->d[0], f);
}

static void shape_linear(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 2, "an [N, features] tensor (flatten first)");
	need_range(n, "out", n->out, 1, MAX_CHANNELS);
	n->shape = ir_shape2(arg(g, n, 0)->d[0], n->out);
}

static void shape_softmax(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 2, "an [N, classes] tensor");
	n->shape = *arg(g, n, 0);
}

static void shape_subsample(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 4, "an [N, C, H, W] tensor");
	need_range(n, "stride", n->stride, 1, MAX_WINDOW);
	const ir_shape *x = arg(g, n, 0);
	n->shape = ir_shape4(x->d[0], x->d[1], (x->d[2] + n->stride - 1) / n->stride,
	                     (x->d[3] + n->stride - 1) / n->stride);
}

static void shape_pad_channels(const ir_graph *g, ir_node *n)
{
	need_rank(g, n, 0, 4, "an [N, C, H, W] tensor");
	need_range(n, "before", n->before, 0, MAX_CHANNELS);
	need_range(n, "after", n->after, 0, MAX_CHANNELS);
	const ir_shape *x = arg(g, n, 0);
	/* a stride comes from a fused subsample (option-A shortcut) */
	int64_t s = n->stride > 1 ? n->stride : 1;
	n->shape = ir_shape4(x->d[0], x->d[1] + n->before + n->after, (x->d[2] + s - 1) / s,
	                     (x->d[3] + s - 1) / s);
}

/* Per-channel vectors of BatchNorm folding match the weight's first dim. */
static void need_channels(const ir_graph *g, const ir_node *n, int from, int to, int64_t c)
{
	for (int i = from; i < to && i < n->n_in; i++) {
		const ir_shape *v = arg(g, n, i);
		if (v->rank != 1 || v->d[0] != c)
			diag_error_at(&n->loc, "internal: %s input %d is not [%lld]",
			              ir_ops[n->op].name, i, (long long)c);
	}
}

static void shape_bn_fold_weight(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
	need_channels(g, n, 1, 3, n->shape.d[0]);
}

static void shape_winograd_weight(const ir_graph *g, ir_node *n)
{
	const ir_shape *w = arg(g, n, 0);
	if (w->rank != 4 || w->d[2] != 3 || w->d[3] != 3)
		diag_error_at(&n->loc, "winograd_weight: needs [oc, c, 3, 3] weights");
	/* (tile + 2)^2 matrices oc x c in the GEMM's packed layout: rows padded to
	 * the target's register tile and a vector of slack after, sized for the
	 * largest of any kernel set (kset.h) so the IR needs no target */
	int64_t t = n->tile + 2;
	n->shape =
	    (ir_shape){.rank = 3, .d = {t * t, w->d[0] + RT_KSET_MR_MAX + RT_KSET_VW_MAX, w->d[1]}};
}

/* the same for the input gradient: c x oc each */
static void shape_winograd_weight_t(const ir_graph *g, ir_node *n)
{
	shape_winograd_weight(g, n);
	const ir_shape *w = arg(g, n, 0);
	n->shape.d[0] = 36; /* F(4x4, 3x3) always */
	n->shape.d[1] = w->d[1] + RT_KSET_MR_MAX + RT_KSET_VW_MAX;
	n->shape.d[2] = w->d[0];
}

/* The GEMM's layout pads the oc rows to the target's register tile and
 * keeps a vector of slack: sized for the largest of any kernel set
 * (kset.h), so the IR needs no target. */
static void shape_gemm_weight(const ir_graph *g, ir_node *n)
{
	const ir_shape *w = arg(g, n, 0);
	if (w->rank != 4 && w->rank != 2)
		diag_error_at(&n->loc, "gemm_weight: needs [oc, c, k, k] or [out, in] weights");
	int64_t kdim = ir_shape_row(w);
	n->shape =
	    (ir_shape){.rank = 1, .d = {(w->d[0] + RT_KSET_MR_MAX - 1) * kdim + RT_KSET_VW_MAX}};
}

static void shape_direct_weight(const ir_graph *g, ir_node *n)
{
	const ir_shape *w = arg(g, n, 0);
	if (w->rank != 4)
		diag_error_at(&n->loc, "direct_weight: needs [oc, c, k, k] weights");
	n->shape = ir_shape2(ir_shape_row(w), w->d[0]);
}

static void shape_bn_fold_bias(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
	need_channels(g, n, 1, n->n_in, n->shape.d[0]);
}

/* ---- training ops: their results mirror forward shapes ---------------- */

static void shape_bn_stats(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape2(2, arg(g, n, 0)->d[1]);
}

static void shape_bn_train(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

/* Effects produce nothing: a rank-1 shape of zero elements. */
static void shape_bn_update(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape1(0);
}

static void shape_bn_grad_params(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape2(2, arg(g, n, 0)->d[1]);
}

static void shape_bn_grad_input(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_conv_grad_input(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 2);
}

static void shape_conv_grad_weight(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape4(n->out, arg(g, n, 0)->d[1], n->kernel, n->kernel);
}

static void shape_bias_grad(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape1(arg(g, n, 0)->d[1]);
}

static void shape_relu_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_maxpool_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_avgpool_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 1);
}

static void shape_global_avgpool_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 1);
}

static void shape_reshape(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 1);
	if (ir_shape_count(&n->shape) != ir_shape_count(arg(g, n, 0)))
		diag_error_at(&n->loc, "internal: reshape changes the element count");
}

static void shape_linear_grad_input(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape2(arg(g, n, 0)->d[0], arg(g, n, 1)->d[1]);
}

static void shape_linear_grad_weight(const ir_graph *g, ir_node *n)
{
	n->shape = ir_shape2(arg(g, n, 1)->d[1], arg(g, n, 0)->d[1]);
}

static void shape_softmax_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_subsample_grad(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 1);
}

static void shape_pad_channels_grad(const ir_graph *g, ir_node *n)
{
	const ir_shape *dy = arg(g, n, 0);
	n->shape = ir_shape4(dy->d[0], dy->d[1] - n->before - n->after, dy->d[2], dy->d[3]);
}

static void need_labels(const ir_graph *g, const ir_node *n)
{
	const ir_node *l = &g->nodes[n->in[1]];
	const ir_shape *x = arg(g, n, 0);
	if (!l->i32 || l->shape.rank != 1 || l->shape.d[0] != x->d[0] || x->rank != 2)
		diag_error_at(&n->loc, "the loss needs [N, classes] logits and N int32 labels");
}

static void shape_xent_loss(const ir_graph *g, ir_node *n)
{
	need_labels(g, n);
	n->shape = ir_shape1(1);
}

static void shape_xent_grad(const ir_graph *g, ir_node *n)
{
	need_labels(g, n);
	n->shape = *arg(g, n, 0);
}

static void shape_allreduce(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_bn_stats_sync(const ir_graph *g, ir_node *n)
{
	n->shape = *arg(g, n, 0);
}

static void shape_sgd(const ir_graph *g, ir_node *n)
{
	int64_t w = ir_shape_count(arg(g, n, 0));
	if (ir_shape_count(arg(g, n, 2)) != w || n->goff < 0 ||
	    n->goff + w > ir_shape_count(arg(g, n, 1)))
		diag_error_at(&n->loc, "internal: sgd operands do not match");
	n->shape = ir_shape1(0);
}

/* ops.def's UNARY ops and their gradients (y, dy -> dx) */
static void shape_unary(const ir_graph *g, ir_node *n)
{
	const ir_shape *x = arg(g, n, 0);
	if (n->n_in > 1 && !ir_shape_eq(x, arg(g, n, 1)))
		diag_error_at(&n->loc, "internal: %s operands do not match", ir_ops[n->op].name);
	n->shape = *x;
}

typedef void shape_fn(const ir_graph *g, ir_node *n);

static shape_fn *const shape_rules[IR_OP_COUNT] = {
#define OP(e, name, args, attrs, flags, grad) [IR_OP_##e] = shape_##name,
#define UNARY(e, name, onnx)                  [IR_OP_##e] = shape_unary, [IR_OP_##e##_GRAD] = shape_unary,
#include "ops.def"
};

bool ir_shape_fits(const ir_graph *g, ir_node *n)
{
	for (int i = 0; i < ir_ops[n->op].args; i++)
		if (n->in[i] < 0 || n->in[i] >= g->n_nodes)
			diag_error_at(&n->loc, "%s: input %d refers to no node", ir_ops[n->op].name,
			              i);
	shape_rules[n->op](g, n);
	return ir_shape_count(&n->shape) < IR_MAX_ELEMS;
}

void ir_shape_infer(const ir_graph *g, ir_node *n)
{
	if (!ir_shape_fits(g, n)) {
		char b[96];
		diag_error_at(&n->loc, "%s: result %s has more than %lld elements",
		              ir_ops[n->op].name, ir_shape_str(&n->shape, b, sizeof b),
		              (long long)IR_MAX_ELEMS);
	}
}
