/* The reference executor: every node runs its plain C kernel into its own
 * buffer. Slow and obvious on purpose; it is the oracle that compiled code
 * and every optimisation pass are tested against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "passes.h"
#include "runtime.h"

typedef struct interp {
	const ir_graph *g;
	float **buf; /* per node */
	int mr;      /* the register tile whose layout packed weights take */
} interp;

static const ir_shape *shape(const interp *it, const ir_node *n, int i)
{
	return &it->g->nodes[n->in[i]].shape;
}

static const float *in(const interp *it, const ir_node *n, int i)
{
	return it->buf[n->in[i]];
}

static int dim(const ir_shape *s, int i)
{
	return i < s->rank ? (int)s->d[i] : 1;
}

static void interp_input(const interp *it, const ir_node *n, float *y) {}

static void interp_param(const interp *it, const ir_node *n, float *y) {}

/* Fused epilogues, applied the plain way: add the residual, then relu. */
static void epilogue(const interp *it, const ir_node *n, float *y)
{
	size_t count = (size_t)ir_shape_count(&n->shape);
	if (n->residual)
		rt_add_ref(count, y, in(it, n, n->residual), y);
	if (n->relu)
		rt_relu_ref(count, y, y);
}

static void interp_conv(const interp *it, const ir_node *n, float *y)
{
	rt_conv p = passes_conv_geometry(it->g->nodes, n);
	const float *b = n->bias ? in(it, n, 2) : NULL;
	const float *res = n->residual ? in(it, n, n->residual) : NULL;
	switch (n->algo) {
	case IR_ALGO_WINOGRAD: {
		/* only the transformed weights are left: the runtime's kernel,
		 * checked against rt_conv2d_ref by tests/test_kernels.c */
		float *scratch =
		    malloc(rt_winograd_scratch_floats(&p, (int)n->tile) * sizeof(float));
		if (scratch)
			rt_conv2d_winograd(NULL, &p, (int)n->tile, in(it, n, 0), in(it, n, 1), b,
			                   res, y, n->relu, scratch);
		free(scratch);
		return;
	}
	case IR_ALGO_PACKED:
		rt_conv2d_packed(NULL, &p, in(it, n, 0), in(it, n, 1), b, res, y, n->relu);
		return;
	case IR_ALGO_DIRECT:
		if (it->g->nodes[n->in[1]].op == IR_OP_DIRECT_WEIGHT) {
			rt_conv2d_direct_prepared(NULL, &p, in(it, n, 0), in(it, n, 1), b, y,
			                          n->relu);
			return;
		}
		break; /* the weights as they are: the reference is the oracle */
	case IR_ALGO_GEMM:
		break;
	}
	rt_conv2d_ref(&p, in(it, n, 0), in(it, n, 1), b, y);
	epilogue(it, n, y);
}

static void interp_batchnorm(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	rt_batchnorm_ref(dim(x, 0), dim(x, 1), dim(x, 2) * dim(x, 3), in(it, n, 0), in(it, n, 3),
	                 in(it, n, 4), in(it, n, 1), in(it, n, 2), (float)n->eps, y);
	epilogue(it, n, y);
}

static void interp_relu(const interp *it, const ir_node *n, float *y)
{
	rt_relu_ref((size_t)ir_shape_count(&n->shape), in(it, n, 0), y);
}

static void interp_add(const interp *it, const ir_node *n, float *y)
{
	rt_add_ref((size_t)ir_shape_count(&n->shape), in(it, n, 0), in(it, n, 1), y);
	epilogue(it, n, y);
}

static rt_pool pool_of(const interp *it, const ir_node *n)
{
	return passes_pool_geometry(it->g->nodes, n);
}

static void interp_maxpool(const interp *it, const ir_node *n, float *y)
{
	rt_pool p = pool_of(it, n);
	rt_maxpool_ref(&p, in(it, n, 0), y);
}

static void interp_avgpool(const interp *it, const ir_node *n, float *y)
{
	rt_pool p = pool_of(it, n);
	rt_avgpool_ref(&p, in(it, n, 0), y);
}

static void interp_global_avgpool(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	rt_global_avgpool_ref(dim(x, 0), dim(x, 1), dim(x, 2) * dim(x, 3), in(it, n, 0), y);
}

static void interp_flatten(const interp *it, const ir_node *n, float *y)
{
	memcpy(y, in(it, n, 0), (size_t)ir_shape_count(&n->shape) * sizeof(float));
}

static void interp_linear(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	if (n->algo == IR_ALGO_PACKED) {
		rt_linear_packed(NULL, dim(x, 0), dim(x, 1), (int)n->out, in(it, n, 0),
		                 in(it, n, 1), n->bias ? in(it, n, 2) : NULL, y, n->relu);
		return;
	}
	rt_linear_ref(dim(x, 0), dim(x, 1), (int)n->out, in(it, n, 0), in(it, n, 1),
	              n->bias ? in(it, n, 2) : NULL, y);
	epilogue(it, n, y);
}

static void interp_softmax(const interp *it, const ir_node *n, float *y)
{
	rt_softmax_ref(dim(&n->shape, 0), dim(&n->shape, 1), in(it, n, 0), y);
}

static void interp_subsample(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	rt_subsample_ref(dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), (int)n->stride, in(it, n, 0),
	                 y);
}

static void interp_pad_channels(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	const float *src = in(it, n, 0);
	float *sub = NULL;
	int h = dim(x, 2), w = dim(x, 3);
	if (n->stride > 1) { /* a fused subsample: do it first, into a temporary */
		int s = (int)n->stride;
		sub = malloc((size_t)dim(x, 0) * dim(x, 1) * ((h + s - 1) / s) * ((w + s - 1) / s) *
		             sizeof(float));
		if (!sub)
			return;
		rt_subsample_ref(dim(x, 0), dim(x, 1), h, w, s, src, sub);
		src = sub;
		h = (h + s - 1) / s;
		w = (w + s - 1) / s;
	}
	rt_pad_channels_ref(dim(x, 0), dim(x, 1), h * w, (int)n->before, (int)n->after, src, y);
	free(sub);
}

/* Folding runs the runtime's own kernels: embedded weights (prepared here
 * at compile time) are then the very bits load_weights prepares. */
static void interp_bn_fold_weight(const interp *it, const ir_node *n, float *y)
{
	int64_t oc = n->shape.d[0];
	rt_bn_fold_weight((int)oc, (int)(ir_shape_count(&n->shape) / oc), in(it, n, 0),
	                  in(it, n, 1), in(it, n, 2), (float)n->eps, y);
}

static void interp_winograd_weight(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *w = shape(it, n, 0);
	rt_winograd_weight(NULL, it->mr, (int)n->tile, dim(w, 0), dim(w, 1), in(it, n, 0),
	                   n->n_in == 3 ? in(it, n, 1) : NULL, n->n_in == 3 ? in(it, n, 2) : NULL,
	                   (float)n->eps, y);
}

static void interp_winograd_weight_t(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *w = shape(it, n, 0);
	rt_winograd_weight_t(NULL, it->mr, dim(w, 0), dim(w, 1), in(it, n, 0), y);
}

static void interp_gemm_weight(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *w = shape(it, n, 0);
	int kdim = (int)ir_shape_row(w);
	rt_conv_weight_pack(it->mr, dim(w, 0), kdim, in(it, n, 0),
	                    n->n_in == 3 ? in(it, n, 1) : NULL, n->n_in == 3 ? in(it, n, 2) : NULL,
	                    (float)n->eps, y);
}

static void interp_direct_weight(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *w = shape(it, n, 0);
	rt_direct_weight(dim(w, 0), (int)ir_shape_row(w), in(it, n, 0),
	                 n->n_in == 3 ? in(it, n, 1) : NULL, n->n_in == 3 ? in(it, n, 2) : NULL,
	                 (float)n->eps, y);
}

static void interp_bn_fold_bias(const interp *it, const ir_node *n, float *y)
{
	rt_bn_fold_bias((int)n->shape.d[0], in(it, n, 0), in(it, n, 1), in(it, n, 2), in(it, n, 3),
	                n->n_in > 4 ? in(it, n, 4) : NULL, (float)n->eps, y);
}

/* ---- training ------------------------------------------------------------ */

static int hw_of(const ir_shape *s)
{
	return dim(s, 2) * dim(s, 3);
}

/* Effects write into params, which the executor binds to their data. */
static float *mut(const interp *it, const ir_node *n, int i)
{
	return it->buf[n->in[i]];
}

static void interp_bn_stats(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	rt_bn_stats_ref(dim(x, 0), dim(x, 1), hw_of(x), in(it, n, 0), y);
}

static void interp_bn_train(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	int c = dim(x, 1);
	const float *stats = in(it, n, 1);
	rt_batchnorm_ref(dim(x, 0), c, hw_of(x), in(it, n, 0), stats, stats + c, in(it, n, 2),
	                 in(it, n, 3), (float)n->eps, y);
	epilogue(it, n, y);
}

static void interp_bn_update(const interp *it, const ir_node *n, float *y)
{
	rt_bn_running_update_ref((int)shape(it, n, 0)->d[1], (int)n->out, (float)n->momentum,
	                         in(it, n, 0), mut(it, n, 1), mut(it, n, 2));
}

/* dy, in[1], through the relu gradient fused in as in[k] if there is one:
 * the unfused graph's values, in a buffer the caller frees (NULL if out
 * of memory) */
static float *grad_in(const interp *it, const ir_node *n, int k, float **owned)
{
	*owned = NULL;
	if (n->n_in <= k)
		return (float *)in(it, n, 1);
	size_t count = (size_t)ir_shape_count(shape(it, n, 1));
	if ((*owned = malloc(count * sizeof(float))))
		rt_relu_grad_ref(count, in(it, n, k), in(it, n, 1), *owned);
	return *owned;
}

static void interp_bn_grad_params(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	float *owned, *dy = grad_in(it, n, 3, &owned);
	if (dy)
		rt_bn_grad_params_ref(dim(x, 0), dim(x, 1), hw_of(x), in(it, n, 0), dy,
		                      in(it, n, 2), (float)n->eps, y);
	free(owned);
}

static void interp_bn_grad_input(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	float *owned, *dy = grad_in(it, n, 5, &owned);
	if (dy)
		rt_bn_grad_input_ref(dim(x, 0), dim(x, 1), hw_of(x), in(it, n, 0), dy, in(it, n, 2),
		                     in(it, n, 3), in(it, n, 4), (float)n->eps, y);
	free(owned);
}

/* Winograd nodes have only the transformed weights (or, for the weight
 * gradient, a different order of sums): the runtime's kernels, checked
 * against the reference ones by tests/test_kernels_train.c. */
static void interp_conv_grad_input(const interp *it, const ir_node *n, float *y)
{
	rt_conv p = passes_conv_geometry(it->g->nodes, n);
	if (n->algo != IR_ALGO_WINOGRAD) {
		rt_conv2d_grad_input_ref(&p, in(it, n, 0), in(it, n, 1), y);
		return;
	}
	float *scratch = malloc(rt_winograd_grad_input_scratch_floats(&p) * sizeof(float));
	if (scratch)
		rt_conv2d_grad_input_winograd(NULL, &p, in(it, n, 0), in(it, n, 1), y, scratch);
	free(scratch);
}

static void interp_conv_grad_weight(const interp *it, const ir_node *n, float *y)
{
	rt_conv p = passes_conv_geometry(it->g->nodes, n);
	if (n->algo != IR_ALGO_WINOGRAD) {
		rt_conv2d_grad_weight_ref(&p, in(it, n, 0), in(it, n, 1), y, NULL);
		return;
	}
	float *scratch = malloc(rt_winograd_grad_weight_scratch_floats(&p) * sizeof(float));
	if (scratch)
		rt_conv2d_grad_weight_winograd(NULL, &p, in(it, n, 0), in(it, n, 1), y, scratch);
	free(scratch);
}

static void interp_bias_grad(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *s = shape(it, n, 0);
	int batch = dim(s, 0), c = dim(s, 1), hw = hw_of(s);
	const float *dy = in(it, n, 0);
	for (int ch = 0; ch < c; ch++) {
		double sum = 0;
		for (int i = 0; i < batch; i++)
			for (int k = 0; k < hw; k++)
				sum += dy[((size_t)i * c + ch) * hw + k];
		y[ch] = (float)sum;
	}
}

static void interp_relu_grad(const interp *it, const ir_node *n, float *y)
{
	size_t count = (size_t)ir_shape_count(&n->shape);
	if (!n->residual) {
		rt_relu_grad_ref(count, in(it, n, 0), in(it, n, 1), y);
		return;
	}
	/* dy the sum of in[1] and the residual (a fused add): summed first */
	rt_add_ref(count, in(it, n, 1), in(it, n, n->residual), y);
	rt_relu_grad_ref(count, in(it, n, 0), y, y);
}

static void interp_maxpool_grad(const interp *it, const ir_node *n, float *y)
{
	rt_pool p = pool_of(it, n);
	rt_maxpool_grad_ref(&p, in(it, n, 0), in(it, n, 1), y);
}

static void interp_avgpool_grad(const interp *it, const ir_node *n, float *y)
{
	rt_pool p = pool_of(it, n);
	rt_avgpool_grad_ref(&p, in(it, n, 0), y);
}

static void interp_global_avgpool_grad(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 1);
	rt_global_avgpool_grad_ref(dim(x, 0), dim(x, 1), hw_of(x), in(it, n, 0), y);
}

static void interp_reshape(const interp *it, const ir_node *n, float *y)
{
	memcpy(y, in(it, n, 0), (size_t)ir_shape_count(&n->shape) * sizeof(float));
}

static void interp_linear_grad_input(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *w = shape(it, n, 1);
	rt_linear_grad_input_ref(dim(&n->shape, 0), dim(w, 1), dim(w, 0), in(it, n, 0),
	                         in(it, n, 1), y);
}

static void interp_linear_grad_weight(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 0);
	rt_linear_grad_weight_ref(dim(x, 0), dim(x, 1), dim(&n->shape, 0), in(it, n, 0),
	                          in(it, n, 1), y, NULL);
}

static void interp_softmax_grad(const interp *it, const ir_node *n, float *y)
{
	rt_softmax_grad_ref(dim(&n->shape, 0), dim(&n->shape, 1), in(it, n, 0), in(it, n, 1), y);
}

static void interp_subsample_grad(const interp *it, const ir_node *n, float *y)
{
	const ir_shape *x = shape(it, n, 1);
	rt_subsample_grad_ref(dim(x, 0), dim(x, 1), dim(x, 2), dim(x, 3), (int)n->stride,
	                      in(it, n, 0), y);
}

static void interp_pad_channels_grad(const interp *it, const ir_node *n, float *y)
{
	rt_pad_channels_grad_ref(dim(&n->shape, 0), dim(&n->shape, 1), hw_of(&n->shape),
	                         (int)n->before, (int)n->after, in(it, n, 0), y);
}

/* The reference computes loss and gradient together; each node keeps its half. */
static void xent(const interp *it, const ir_node *n, float *loss, float *dlogits)
{
	const ir_shape *z = shape(it, n, 0);
	rt_softmax_xent_ref(dim(z, 0), dim(z, 1), in(it, n, 0), (const int32_t *)in(it, n, 1), loss,
	                    dlogits);
}

static void interp_xent_loss(const interp *it, const ir_node *n, float *y)
{
	float *d = malloc((size_t)ir_shape_count(shape(it, n, 0)) * sizeof(float) + 1);
	if (d)
		xent(it, n, y, d);
	free(d);
}

static void interp_xent_grad(const interp *it, const ir_node *n, float *y)
{
	float loss;
	xent(it, n, &loss, y);
}

/* one process: the average over processes is the gradient itself */
static void interp_allreduce(const interp *it, const ir_node *n, float *y)
{
	if (y != in(it, n, 0))
		memcpy(y, in(it, n, 0), (size_t)ir_shape_count(&n->shape) * sizeof(float));
}

static void interp_bn_stats_sync(const interp *it, const ir_node *n, float *y)
{
	interp_allreduce(it, n, y);
}

static void interp_sgd(const interp *it, const ir_node *n, float *y)
{
	rt_sgd_momentum_ref((size_t)ir_shape_count(shape(it, n, 0)), mut(it, n, 0),
	                    in(it, n, 1) + n->goff, mut(it, n, 2), in(it, n, 3)[0],
	                    (float)n->momentum, (float)n->weight_decay);
}

/* ops.def's UNARY ops: their runtime kernels, forward and gradient */
static void (*const unary_kernels[IR_OP_COUNT])(size_t, const float *, float *) = {
#define UNARY(e, name, onnx) [IR_OP_##e] = rt_##name,
#include "ops.def"
};
static void (*const unary_grad_kernels[IR_OP_COUNT])(size_t, const float *, const float *,
                                                     float *) = {
#define UNARY(e, name, onnx) [IR_OP_##e##_GRAD] = rt_##name##_grad,
#include "ops.def"
};

static void interp_unary(const interp *it, const ir_node *n, float *y)
{
	size_t count = (size_t)ir_shape_count(&n->shape);
	if (unary_kernels[n->op])
		unary_kernels[n->op](count, in(it, n, 0), y);
	else
		unary_grad_kernels[n->op](count, in(it, n, 0), in(it, n, 1), y);
}

typedef void interp_fn(const interp *it, const ir_node *n, float *y);

static interp_fn *const kernels[IR_OP_COUNT] = {
#define OP(e, name, args, attrs, flags, grad) [IR_OP_##e] = interp_##name,
#define UNARY(e, name, onnx)                  [IR_OP_##e] = interp_unary, [IR_OP_##e##_GRAD] = interp_unary,
#include "ops.def"
};

/* Runs the nodes for which want() holds, each into a fresh buffer; inputs
 * and params are bound to their data. The caller frees with release(). */
static int run_nodes(interp *it, bool *owned, const float *const *inputs,
                     bool (*want)(const ir_node *n), char *err, size_t errlen)
{
	const ir_graph *g = it->g;
	for (int i = 0; inputs && i < g->n_inputs; i++)
		it->buf[g->inputs[i].node] = (float *)inputs[i];
	for (int id = 0; id < g->n_nodes; id++) {
		const ir_node *n = &g->nodes[id];
		if (n->op == IR_OP_PARAM) {
			if (!n->data) {
				snprintf(err, errlen, "parameter '%s' has no data", n->name);
				return -1;
			}
			it->buf[id] = n->data;
			continue;
		}
		if (n->op == IR_OP_INPUT || !want(n))
			continue;
		size_t count = (size_t)ir_shape_count(&n->shape);
		/* zeroed: a packed layout leaves padding that prepared weights
		 * carry into a library, which must not depend on the heap */
		it->buf[id] = calloc(count ? count : 1, sizeof(float));
		if (!it->buf[id]) {
			snprintf(err, errlen, "out of memory for node %%%d (%zu floats)", id,
			         count);
			return -1;
		}
		owned[id] = true;
		kernels[n->op](it, n, it->buf[id]);
	}
	return 0;
}

static void release(interp *it, bool *owned)
{
	for (int id = 0; it->buf && owned && id < it->g->n_nodes; id++)
		if (owned[id])
			free(it->buf[id]);
	free(it->buf);
	free(owned);
}

static bool every(const ir_node *n)
{
	return true;
}

static bool prep_only(const ir_node *n)
{
	return n->prep;
}

/* Graphs run here lay packed weights out for netcc's own kernel set, which
 * runs them; interp_prepare lays them out for the target's. */
int interp_run(const ir_graph *g, const float *const *inputs, float *const *outputs, char *err,
               size_t errlen)
{
	interp it = {
	    .g = g, .buf = calloc((size_t)g->n_nodes, sizeof(float *)), .mr = rt_gemm_mr()};
	bool *owned = calloc((size_t)g->n_nodes, sizeof(bool));
	int rc = -1;
	if (!it.buf || !owned)
		snprintf(err, errlen, "out of memory");
	else
		rc = run_nodes(&it, owned, inputs, every, err, errlen);
	for (int i = 0; rc == 0 && i < g->n_outputs; i++) {
		const ir_node *o = &g->nodes[g->outputs[i].node];
		memcpy(outputs[i], it.buf[g->outputs[i].node],
		       (size_t)ir_shape_count(&o->shape) * sizeof(float));
	}
	release(&it, owned);
	return rc;
}

int interp_run_all(const ir_graph *g, const float *const *inputs, interp_values *v, char *err,
                   size_t errlen)
{
	interp it = {
	    .g = g, .buf = calloc((size_t)g->n_nodes, sizeof(float *)), .mr = rt_gemm_mr()};
	bool *owned = calloc((size_t)g->n_nodes, sizeof(bool));
	int rc = -1;
	if (!it.buf || !owned)
		snprintf(err, errlen, "out of memory");
	else
		rc = run_nodes(&it, owned, inputs, every, err, errlen);
	if (rc != 0) {
		release(&it, owned);
		return rc;
	}
	*v = (interp_values){.n = g->n_nodes, .value = it.buf, .owned = owned};
	return 0;
}

void interp_values_free(interp_values *v)
{
	interp it = {.buf = v->value, .g = &(ir_graph){.n_nodes = v->n}};
	release(&it, v->owned);
	*v = (interp_values){0};
}

int interp_prepare(const ir_graph *g, int mr, float *prepared, char *err, size_t errlen)
{
	interp it = {.g = g, .buf = calloc((size_t)g->n_nodes, sizeof(float *)), .mr = mr};
	bool *owned = calloc((size_t)g->n_nodes, sizeof(bool));
	int rc = -1;
	if (!it.buf || !owned)
		snprintf(err, errlen, "out of memory");
	else
		rc = run_nodes(&it, owned, NULL, prep_only, err, errlen);
	for (int id = 0; rc == 0 && id < g->n_nodes; id++) {
		const ir_node *n = &g->nodes[id];
		if (n->prep && n->mem == IR_MEM_WEIGHTS)
			memcpy((char *)prepared + n->offset, it.buf[id],
			       (size_t)ir_shape_count(&n->shape) * sizeof(float));
	}
	release(&it, owned);
	return rc;
}
