/* One emitter per operator (ops.def: cg_<name>): the calls of the
 * runtime's kernels on planned addresses, and element-wise work as loops
 * LLVM vectorises. */
#include <llvm-c/DebugInfo.h>

#include "cg.h"

static int dim(const ir_shape *s, int i)
{
	return i < s->rank ? (int)s->d[i] : 1;
}

/* Kernel parameter structs of ints (rt_conv, rt_pool: bytes of them)
 * become private constants. */
static LLVMValueRef int_struct(cg *c, const void *s, size_t bytes)
{
	int v[16];
	LLVMValueRef vals[16];
	unsigned n = (unsigned)(bytes / sizeof(int));
	memcpy(v, s, bytes);
	for (unsigned i = 0; i < n; i++)
		vals[i] = i32c(c, v[i]);
	LLVMValueRef g = private_const(c, LLVMConstArray2(c->i32, vals, n), "kparams");
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
	return g;
}

_Static_assert(sizeof(rt_conv) <= 16 * sizeof(int) && sizeof(rt_pool) <= 16 * sizeof(int),
               "int_struct holds the kernels' parameter structs");

/* the node's rt_conv, a private constant */
static LLVMValueRef conv_params(cg *c, const ir_node *n)
{
	rt_conv p = passes_conv_geometry(c->g->nodes, n);
	return int_struct(c, &p, sizeof p);
}

/* the node's rt_pool, a private constant */
static LLVMValueRef pool_params(cg *c, const ir_node *n)
{
	rt_pool p = passes_pool_geometry(c->g->nodes, n);
	return int_struct(c, &p, sizeof p);
}

/* Loop metadata that keeps a loop a loop: vectorised, not unrolled. An
 * element-wise node on a small map unrolled whole, and a chain of them
 * became one basic block whose scheduling took time quadratic in its
 * length (1000 chained ReLUs: 2 s of instruction scheduling). */
static LLVMValueRef no_unroll(cg *c)
{
	LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);
	LLVMMetadataRef what = LLVMMDStringInContext2(c->ctx, "llvm.loop.unroll.disable", 24);
	LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(c->ctx, &what, 1)};
	LLVMMetadataRef loop = LLVMMDNodeInContext2(c->ctx, ops, 2);
	LLVMMetadataReplaceAllUsesWith(self, loop);
	return LLVMMetadataAsValue(c->ctx, loop);
}

typedef LLVMValueRef ewise_fn(cg *c, LLVMValueRef *v);

/* y[i] = f(x0[i], x1[i], ...) for i < count, as a counted loop the loop
 * vectoriser widens to the host's vector width. */
static void ewise(cg *c, int n_in, LLVMValueRef *ins, LLVMValueRef y, int64_t count, ewise_fn *f)
{
	if (count <= 0)
		return;
	LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
	LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ewise");
	LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ewise.done");
	LLVMBuildBr(c->b, loop);
	LLVMPositionBuilderAtEnd(c->b, loop);
	LLVMValueRef i = LLVMBuildPhi(c->b, c->i64, "i");
	LLVMValueRef v[IR_MAX_INPUTS];
	for (int k = 0; k < n_in; k++) {
		LLVMValueRef p = LLVMBuildInBoundsGEP2(c->b, c->f32, ins[k], &i, 1, "");
		v[k] = LLVMBuildLoad2(c->b, c->f32, p, "");
	}
	LLVMValueRef r = f(c, v);
	LLVMBuildStore(c->b, r, LLVMBuildInBoundsGEP2(c->b, c->f32, y, &i, 1, ""));
	LLVMValueRef next = LLVMBuildNUWAdd(c->b, i, i64c(c, 1), "");
	LLVMValueRef more = LLVMBuildICmp(c->b, LLVMIntULT, next, i64c(c, count), "");
	LLVMValueRef br = LLVMBuildCondBr(c->b, more, loop, done);
	LLVMSetMetadata(br, LLVMGetMDKindID("llvm.loop", 9), no_unroll(c));
	LLVMValueRef in_vals[2] = {i64c(c, 0), next};
	LLVMBasicBlockRef in_blocks[2] = {pre, loop};
	LLVMAddIncoming(i, in_vals, in_blocks, 2);
	LLVMPositionBuilderAtEnd(c->b, done);
}

/* relu keeps NaN, as torch.relu does: x > 0 unordered. */
static LLVMValueRef relu_body(cg *c, LLVMValueRef *v)
{
	LLVMValueRef pos = LLVMBuildFCmp(c->b, LLVMRealUGT, v[0], f32c(c, 0), "");
	return LLVMBuildSelect(c->b, pos, v[0], f32c(c, 0), "");
}

static LLVMValueRef add_body(cg *c, LLVMValueRef *v)
{
	return LLVMBuildFAdd(c->b, v[0], v[1], "");
}

static LLVMValueRef add_relu_body(cg *c, LLVMValueRef *v)
{
	LLVMValueRef s = add_body(c, v);
	return relu_body(c, &s);
}

static void cg_input(cg *c, const ir_node *n, LLVMValueRef y) {}

static void cg_param(cg *c, const ir_node *n, LLVMValueRef y) {}

static LLVMValueRef scratch_of(cg *c, const ir_node *n);

/* the fused residual, or NULL */
static LLVMValueRef residual(cg *c, const ir_node *n)
{
	return n->residual ? arg(c, n, n->residual) : LLVMConstNull(c->ptr);
}

static LLVMValueRef rt_algo(cg *c, const ir_node *n)
{
	return i32c(c, n->algo == IR_ALGO_DIRECT ? RT_CONV_ALGO_DIRECT : RT_CONV_ALGO_GEMM);
}

static void cg_conv(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef t = c->threads, p = conv_params(c, n), x = arg(c, n, 0), w = arg(c, n, 1);
	LLVMValueRef b = n->bias ? arg(c, n, 2) : LLVMConstNull(c->ptr), relu = i32c(c, n->relu);
	if (n->algo == IR_ALGO_WINOGRAD) {
		LLVMValueRef args[] = {t, p,    i32c(c, n->tile), x, w, b, residual(c, n),
		                       y, relu, scratch_of(c, n)};
		kernel(c, RT_KERNEL_CONV2D_WINOGRAD, args, countof(args));
	} else if (n->algo == IR_ALGO_PACKED) {
		LLVMValueRef args[] = {t, p, x, w, b, residual(c, n), y, relu};
		kernel(c, RT_KERNEL_CONV2D_PACKED, args, countof(args));
	} else if (c->g->nodes[n->in[1]].op == IR_OP_DIRECT_WEIGHT) { /* never a residual */
		LLVMValueRef args[] = {t, p, x, w, b, y, relu};
		kernel(c, RT_KERNEL_CONV2D_DIRECT_PREPARED, args, countof(args));
	} else {
		LLVMValueRef args[] = {t, p, x, w, b, residual(c, n), y, relu, rt_algo(c, n)};
		kernel(c, RT_KERNEL_CONV2D, args, countof(args));
	}
}

static void cg_batchnorm(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {
	    c->threads,      i32c(c, dim(x, 0)), i32c(c, dim(x, 1)), i32c(c, dim(x, 2) * dim(x, 3)),
	    arg(c, n, 0),    arg(c, n, 3),       arg(c, n, 4),       arg(c, n, 1),
	    arg(c, n, 2),    f32c(c, n->eps),    residual(c, n),     y,
	    i32c(c, n->relu)};
	kernel(c, RT_KERNEL_BATCHNORM, args, countof(args));
}

static void cg_relu(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef x = arg(c, n, 0);
	ewise(c, 1, &x, y, ir_shape_count(&n->shape), relu_body);
}

static void cg_add(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef xs[2] = {arg(c, n, 0), arg(c, n, 1)};
	ewise(c, 2, xs, y, ir_shape_count(&n->shape), n->relu ? add_relu_body : add_body);
}

static void cg_maxpool(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads, pool_params(c, n), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_MAXPOOL, args, countof(args));
}

static void cg_avgpool(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {pool_params(c, n), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_AVGPOOL_REF, args, countof(args));
}

static void cg_global_avgpool(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {i32c(c, dim(x, 0)), i32c(c, dim(x, 1)),
	                       i32c(c, dim(x, 2) * dim(x, 3)), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_GLOBAL_AVGPOOL_REF, args, countof(args));
}

static void cg_flatten(cg *c, const ir_node *n, LLVMValueRef y)
{
	copy(c, y, arg(c, n, 0), node_bytes(n));
}

static void cg_linear(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {c->threads,
	                       i32c(c, dim(x, 0)),
	                       i32c(c, dim(x, 1)),
	                       i32c(c, n->out),
	                       arg(c, n, 0),
	                       arg(c, n, 1),
	                       n->bias ? arg(c, n, 2) : LLVMConstNull(c->ptr),
	                       y,
	                       i32c(c, n->relu)};
	kernel(c, n->algo == IR_ALGO_PACKED ? RT_KERNEL_LINEAR_PACKED : RT_KERNEL_LINEAR, args,
	       countof(args));
}

static void cg_softmax(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {i32c(c, dim(&n->shape, 0)), i32c(c, dim(&n->shape, 1)), arg(c, n, 0),
	                       y};
	kernel(c, RT_KERNEL_SOFTMAX_REF, args, countof(args));
}

static void cg_subsample(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {i32c(c, dim(x, 0)),
	                       i32c(c, dim(x, 1)),
	                       i32c(c, dim(x, 2)),
	                       i32c(c, dim(x, 3)),
	                       i32c(c, n->stride),
	                       arg(c, n, 0),
	                       y};
	kernel(c, RT_KERNEL_SUBSAMPLE_REF, args, countof(args));
}

static void cg_pad_channels(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	if (n->stride > 1) {
		LLVMValueRef args[] = {c->threads,         i32c(c, dim(x, 0)),
		                       i32c(c, dim(x, 1)), i32c(c, dim(x, 2)),
		                       i32c(c, dim(x, 3)), i32c(c, n->stride),
		                       i32c(c, n->before), i32c(c, n->after),
		                       arg(c, n, 0),       y};
		kernel(c, RT_KERNEL_SHORTCUT_A, args, countof(args));
		return;
	}
	LLVMValueRef args[] = {i32c(c, dim(x, 0)),
	                       i32c(c, dim(x, 1)),
	                       i32c(c, dim(x, 2) * dim(x, 3)),
	                       i32c(c, n->before),
	                       i32c(c, n->after),
	                       arg(c, n, 0),
	                       y};
	kernel(c, RT_KERNEL_PAD_CHANNELS_REF, args, countof(args));
}

static void cg_bn_fold_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	int64_t oc = n->shape.d[0];
	LLVMValueRef args[] = {i32c(c, oc),
	                       i32c(c, ir_shape_count(&n->shape) / oc),
	                       arg(c, n, 0),
	                       arg(c, n, 1),
	                       arg(c, n, 2),
	                       f32c(c, n->eps),
	                       y};
	kernel(c, RT_KERNEL_BN_FOLD_WEIGHT, args, countof(args));
}

/* fn([threads,] [mr,] [tile,] rows, cols, w, gamma, var, eps, y): a
 * weight transform, into the packed layout of the target's register tile
 * (mr) but for direct_weight's, that folds BatchNorm itself when the node
 * has gamma and var (in[1], in[2]); Winograd's takes the pool first and
 * its tile size after mr */
static void weight_transform(cg *c, const ir_node *n, int64_t cols, LLVMValueRef y, rt_kernel fn)
{
	bool fold = n->n_in == 3, tile = n->op == IR_OP_WINOGRAD_WEIGHT;
	LLVMValueRef rest[] = {i32c(c, arg_shape(c, n, 0)->d[0]),
	                       i32c(c, cols),
	                       arg(c, n, 0),
	                       fold ? arg(c, n, 1) : LLVMConstNull(c->ptr),
	                       fold ? arg(c, n, 2) : LLVMConstNull(c->ptr),
	                       f32c(c, n->eps),
	                       y};
	LLVMValueRef args[10] = {c->threads, i32c(c, c->t->mr), i32c(c, n->tile)};
	if (tile) {
		memcpy(args + 3, rest, sizeof rest);
		kernel(c, fn, args, countof(args));
	} else if (n->op == IR_OP_DIRECT_WEIGHT) { /* a layout of its own: no tile */
		memcpy(args + 2, rest, sizeof rest);
		kernel(c, fn, args + 2, 7);
	} else {
		memcpy(args + 2, rest, sizeof rest);
		kernel(c, fn, args + 1, 8);
	}
}

static void cg_winograd_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	weight_transform(c, n, arg_shape(c, n, 0)->d[1], y, RT_KERNEL_WINOGRAD_WEIGHT);
}

static void cg_winograd_weight_t(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *w = arg_shape(c, n, 0);
	LLVMValueRef args[] = {c->threads,       i32c(c, c->t->mr), i32c(c, w->d[0]),
	                       i32c(c, w->d[1]), arg(c, n, 0),      y};
	kernel(c, RT_KERNEL_WINOGRAD_WEIGHT_T, args, countof(args));
}

static void cg_gemm_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	weight_transform(c, n, ir_shape_row(arg_shape(c, n, 0)), y, RT_KERNEL_CONV_WEIGHT_PACK);
}

static void cg_direct_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	weight_transform(c, n, ir_shape_row(arg_shape(c, n, 0)), y, RT_KERNEL_DIRECT_WEIGHT);
}

static void cg_bn_fold_bias(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {
	    i32c(c, n->shape.d[0]), arg(c, n, 0),
	    arg(c, n, 1),           arg(c, n, 2),
	    arg(c, n, 3),           n->n_in > 4 ? arg(c, n, 4) : LLVMConstNull(c->ptr),
	    f32c(c, n->eps),        y};
	kernel(c, RT_KERNEL_BN_FOLD_BIAS, args, countof(args));
}

/* ---- training ------------------------------------------------------------ */

static LLVMValueRef nchw(cg *c, const ir_shape *s, int i)
{
	return i32c(c, i == 2 ? dim(s, 2) * dim(s, 3) : dim(s, i));
}

static LLVMValueRef scratch_of(cg *c, const ir_node *n)
{
	return n->scratch_bytes ? byte_offset(c, c->ws, n->scratch) : LLVMConstNull(c->ptr);
}

static void cg_bn_stats(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {c->threads,    nchw(c, x, 0), nchw(c, x, 1),
	                       nchw(c, x, 2), arg(c, n, 0),  y};
	kernel(c, RT_KERNEL_BN_STATS, args, countof(args));
}

static void cg_bn_train(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef stats = arg(c, n, 1);
	LLVMValueRef args[] = {c->threads,
	                       nchw(c, x, 0),
	                       nchw(c, x, 1),
	                       nchw(c, x, 2),
	                       arg(c, n, 0),
	                       stats,
	                       byte_offset(c, stats, (int64_t)dim(x, 1) * 4),
	                       arg(c, n, 2),
	                       arg(c, n, 3),
	                       f32c(c, n->eps),
	                       residual(c, n),
	                       y,
	                       i32c(c, n->relu)};
	kernel(c, RT_KERNEL_BATCHNORM, args, countof(args));
}

static void cg_bn_update(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {i32c(c, arg_shape(c, n, 0)->d[1]),
	                       i32c(c, n->out),
	                       f32c(c, n->momentum),
	                       arg(c, n, 0),
	                       arg(c, n, 1),
	                       arg(c, n, 2)};
	kernel(c, RT_KERNEL_BN_RUNNING_UPDATE_REF, args, countof(args));
}

/* in[k], a fused relu's result, or NULL */
static LLVMValueRef relu_mask(cg *c, const ir_node *n, int k)
{
	return n->n_in > k ? arg(c, n, k) : LLVMConstNull(c->ptr);
}

static void cg_bn_grad_params(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {
	    c->threads,   nchw(c, x, 0),      nchw(c, x, 1), nchw(c, x, 2),   arg(c, n, 0),
	    arg(c, n, 1), relu_mask(c, n, 3), arg(c, n, 2),  f32c(c, n->eps), y};
	kernel(c, RT_KERNEL_BN_GRAD_PARAMS, args, countof(args));
}

static void cg_bn_grad_input(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {c->threads,   nchw(c, x, 0), nchw(c, x, 1),      nchw(c, x, 2),
	                       arg(c, n, 0), arg(c, n, 1),  relu_mask(c, n, 5), arg(c, n, 2),
	                       arg(c, n, 3), arg(c, n, 4),  f32c(c, n->eps),    y};
	kernel(c, RT_KERNEL_BN_GRAD_INPUT, args, countof(args));
}

static void cg_conv_grad_input(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads, conv_params(c, n), arg(c, n, 0), arg(c, n, 1),
	                       y,          scratch_of(c, n),  rt_algo(c, n)};
	bool wino = n->algo == IR_ALGO_WINOGRAD;
	kernel(c, wino ? RT_KERNEL_CONV2D_GRAD_INPUT_WINOGRAD : RT_KERNEL_CONV2D_GRAD_INPUT, args,
	       countof(args) - wino);
}

static void cg_conv_grad_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads, conv_params(c, n), arg(c, n, 0), arg(c, n, 1),
	                       y,          scratch_of(c, n),  rt_algo(c, n)};
	bool wino = n->algo == IR_ALGO_WINOGRAD;
	kernel(c, wino ? RT_KERNEL_CONV2D_GRAD_WEIGHT_WINOGRAD : RT_KERNEL_CONV2D_GRAD_WEIGHT, args,
	       countof(args) - wino);
}

static void cg_bias_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *s = arg_shape(c, n, 0);
	LLVMValueRef args[] = {nchw(c, s, 0), nchw(c, s, 1), nchw(c, s, 2), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_BIAS_GRAD, args, countof(args));
}

/* dx = y > 0 ? dy (+ the fused add's other gradient) : 0, over the
 * threads: a pass over memory at a training batch */
static void cg_relu_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads,     i64c(c, ir_shape_count(&n->shape)),
	                       arg(c, n, 0),   arg(c, n, 1),
	                       residual(c, n), y};
	kernel(c, RT_KERNEL_RELU_GRAD, args, countof(args));
}

static void cg_maxpool_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {pool_params(c, n), arg(c, n, 0), arg(c, n, 1), y};
	kernel(c, RT_KERNEL_MAXPOOL_GRAD_REF, args, countof(args));
}

static void cg_avgpool_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {pool_params(c, n), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_AVGPOOL_GRAD_REF, args, countof(args));
}

static void cg_global_avgpool_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 1);
	LLVMValueRef args[] = {nchw(c, x, 0), nchw(c, x, 1), nchw(c, x, 2), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_GLOBAL_AVGPOOL_GRAD_REF, args, countof(args));
}

static void cg_reshape(cg *c, const ir_node *n, LLVMValueRef y)
{
	copy(c, y, arg(c, n, 0), node_bytes(n));
}

static void cg_linear_grad_input(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *w = arg_shape(c, n, 1);
	LLVMValueRef args[] = {c->threads,
	                       i32c(c, dim(&n->shape, 0)),
	                       i32c(c, dim(w, 1)),
	                       i32c(c, dim(w, 0)),
	                       arg(c, n, 0),
	                       arg(c, n, 1),
	                       y};
	kernel(c, RT_KERNEL_LINEAR_GRAD_INPUT, args, countof(args));
}

static void cg_linear_grad_weight(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 0);
	LLVMValueRef args[] = {c->threads,
	                       i32c(c, dim(x, 0)),
	                       i32c(c, dim(x, 1)),
	                       i32c(c, dim(&n->shape, 0)),
	                       arg(c, n, 0),
	                       arg(c, n, 1),
	                       y};
	kernel(c, RT_KERNEL_LINEAR_GRAD_WEIGHT, args, countof(args));
}

static void cg_softmax_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {i32c(c, dim(&n->shape, 0)), i32c(c, dim(&n->shape, 1)), arg(c, n, 0),
	                       arg(c, n, 1), y};
	kernel(c, RT_KERNEL_SOFTMAX_GRAD_REF, args, countof(args));
}

static void cg_subsample_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *x = arg_shape(c, n, 1);
	LLVMValueRef args[] = {
	    c->threads,         i32c(c, dim(x, 0)), i32c(c, dim(x, 1)), i32c(c, dim(x, 2)),
	    i32c(c, dim(x, 3)), i32c(c, n->stride), arg(c, n, 0),       y};
	kernel(c, RT_KERNEL_SUBSAMPLE_GRAD, args, countof(args));
}

static void cg_pad_channels_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *s = &n->shape;
	LLVMValueRef args[] = {nchw(c, s, 0),
	                       nchw(c, s, 1),
	                       nchw(c, s, 2),
	                       i32c(c, n->before),
	                       i32c(c, n->after),
	                       arg(c, n, 0),
	                       y};
	kernel(c, RT_KERNEL_PAD_CHANNELS_GRAD_REF, args, countof(args));
}

static void cg_xent_loss(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *z = arg_shape(c, n, 0);
	LLVMValueRef args[] = {i32c(c, dim(z, 0)), i32c(c, dim(z, 1)), arg(c, n, 0), arg(c, n, 1),
	                       y};
	kernel(c, RT_KERNEL_XENT_LOSS, args, countof(args));
}

static void cg_xent_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	const ir_shape *z = arg_shape(c, n, 0);
	LLVMValueRef args[] = {i32c(c, dim(z, 0)), i32c(c, dim(z, 1)), arg(c, n, 0), arg(c, n, 1),
	                       y};
	kernel(c, RT_KERNEL_XENT_GRAD, args, countof(args));
}

static void cg_allreduce(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads, i64c(c, ir_shape_count(&n->shape)), arg(c, n, 0), y,
	                       i32c(c, n->reduce_left)};
	kernel(c, RT_KERNEL_GRAD_ALLREDUCE, args, countof(args));
}

static void cg_bn_stats_sync(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {c->threads, i32c(c, n->shape.d[1]), arg(c, n, 0), y};
	kernel(c, RT_KERNEL_BN_STATS_ALLREDUCE, args, countof(args));
}

static void cg_sgd(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {i64c(c, ir_shape_count(arg_shape(c, n, 0))),
	                       arg(c, n, 0),
	                       byte_offset(c, arg(c, n, 1), n->goff * 4),
	                       arg(c, n, 2),
	                       arg(c, n, 3),
	                       f32c(c, n->momentum),
	                       f32c(c, n->weight_decay)};
	kernel(c, RT_KERNEL_SGD_STEP, args, countof(args));
}

/* ops.def's UNARY ops: a call of their runtime kernel (count, inputs, y) */
static const rt_kernel unary_kernels[IR_OP_COUNT] = {
#define UNARY(e, name, onnx) [IR_OP_##e] = RT_KERNEL_##e, [IR_OP_##e##_GRAD] = RT_KERNEL_##e##_GRAD,
#include "ops.def"
};

static void cg_unary(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef args[] = {i64c(c, ir_shape_count(&n->shape)), arg(c, n, 0),
	                       n->n_in > 1 ? arg(c, n, 1) : y, y};
	kernel(c, unary_kernels[n->op], args, (unsigned)n->n_in + 2);
}

typedef void cg_fn(cg *c, const ir_node *n, LLVMValueRef y);

static cg_fn *const emitters[IR_OP_COUNT] = {
#define OP(e, name, args, attrs, flags, grad) [IR_OP_##e] = cg_##name,
#define UNARY(e, name, onnx)                  [IR_OP_##e] = cg_unary, [IR_OP_##e##_GRAD] = cg_unary,
#include "ops.def"
};

void cg_node(cg *c, const ir_node *n, LLVMValueRef y)
{
	emitters[n->op](c, n, y);
}
