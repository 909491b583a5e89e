/* From a planned graph to an LLVM module: a prepare function (raw weights
 * to prepared), a forward function that calls the runtime's kernels on
 * planned addresses and emits elementwise work as loops LLVM vectorises,
 * the model's descriptor, and the exported API wrappers. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>

#include "abi.h"
#include "backend.h"
#include "passes.h"
#include "runtime.h"

#define countof(a) (sizeof(a) / sizeof *(a))

typedef struct cg {
	LLVMContextRef ctx;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	const ir_graph *g;
	const char *prefix;
	LLVMTypeRef ptr, i32, i64, f32, void_t;
	LLVMValueRef fn;
	/* the function being built: forward (w, ws, in, out, threads) or prepare (raw, w) */
	LLVMValueRef raw, w, ws, in, out, threads;
	bool profile; /* rt_profile_mark after every node of a forward */
	const backend_target *t;
} cg;

static LLVMValueRef i64c(cg *c, int64_t v)
{
	return LLVMConstInt(c->i64, (unsigned long long)v, 1);
}

static LLVMValueRef i32c(cg *c, int64_t v)
{
	return LLVMConstInt(c->i32, (unsigned long long)v, 1);
}

static LLVMValueRef f32c(cg *c, double v)
{
	return LLVMConstReal(c->f32, v);
}

static LLVMValueRef declare(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                            unsigned n)
{
	LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
	if (!f)
		f = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, params, n, 0));
	return f;
}

static LLVMValueRef call(cg *c, LLVMValueRef f, LLVMValueRef *args, unsigned n)
{
	return LLVMBuildCall2(c->b, LLVMGlobalGetValueType(f), f, args, n, "");
}

/* A call to runtime kernel k (runtime/kernels.def) with n arguments. */
static void kernel(cg *c, rt_kernel k, LLVMValueRef *args, unsigned n)
{
	const rt_kernel_info *info = &rt_kernels[k];
	LLVMTypeRef params[RT_KERNEL_MAX_PARAMS];
	unsigned want = (unsigned)strlen(info->types);
	if (n != want)
		diag_fatal("internal: %s called with %u arguments, not %u", info->name, n, want);
	for (unsigned i = 0; i < n; i++)
		switch ((rt_kernel_type)info->types[i]) {
		case RT_KERNEL_TYPE_I32:
			params[i] = c->i32;
			break;
		case RT_KERNEL_TYPE_I64:
			params[i] = c->i64;
			break;
		case RT_KERNEL_TYPE_F32:
			params[i] = c->f32;
			break;
		case RT_KERNEL_TYPE_PTR:
			params[i] = c->ptr;
			break;
		}
	call(c, declare(c, info->name, c->void_t, params, n), args, n);
}

static LLVMValueRef byte_offset(cg *c, LLVMValueRef base, int64_t off)
{
	LLVMValueRef idx = i64c(c, off);
	return LLVMBuildInBoundsGEP2(c->b, LLVMInt8TypeInContext(c->ctx), base, &idx, 1, "");
}

static LLVMValueRef io_ptr(cg *c, LLVMValueRef table, int io)
{
	LLVMValueRef slot = byte_offset(c, table, (int64_t)io * 8);
	return LLVMBuildLoad2(c->b, c->ptr, slot, "");
}

/* Where node id's value is, in the function being built. */
static LLVMValueRef at(cg *c, int id)
{
	const ir_node *n = &c->g->nodes[id];
	if (n->op == IR_OP_PARAM && c->raw)
		return byte_offset(c, c->raw, n->raw_offset);
	switch (n->mem) {
	case IR_MEM_ARENA:
		return byte_offset(c, c->ws, n->offset);
	case IR_MEM_WEIGHTS:
		return byte_offset(c, c->w, n->offset);
	case IR_MEM_INPUT:
		return io_ptr(c, c->in, n->io);
	case IR_MEM_OUTPUT:
		return io_ptr(c, c->out, n->io);
	case IR_MEM_NONE:
		break;
	}
	diag_error_at(&n->loc, "internal: %s node %%%d has no memory", ir_ops[n->op].name, id);
}

static LLVMValueRef arg(cg *c, const ir_node *n, int i)
{
	return at(c, n->in[i]);
}

static const ir_shape *arg_shape(cg *c, const ir_node *n, int i)
{
	return &c->g->nodes[n->in[i]].shape;
}

static int dim(const ir_shape *s, int i)
{
	return i < s->rank ? (int)s->d[i] : 1;
}

/* Kernel parameter structs of ints become private constants. */
static LLVMValueRef int_struct(cg *c, const int *v, unsigned n)
{
	LLVMValueRef vals[16];
	for (unsigned i = 0; i < n; i++)
		vals[i] = i32c(c, v[i]);
	LLVMValueRef init = LLVMConstArray2(c->i32, vals, n);
	LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), "kparams");
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
	return g;
}

/* the node's rt_conv, a private constant */
static LLVMValueRef conv_params(cg *c, const ir_node *n)
{
	rt_conv p = passes_conv_geometry(c->g->nodes, n);
	int v[sizeof p / sizeof(int)];
	memcpy(v, &p, sizeof p);
	return int_struct(c, v, sizeof v / sizeof *v);
}

/* the node's rt_pool, a private constant */
static LLVMValueRef pool_params(cg *c, const ir_node *n)
{
	rt_pool p = passes_pool_geometry(c->g->nodes, n);
	int v[sizeof p / sizeof(int)];
	memcpy(v, &p, sizeof p);
	return int_struct(c, v, sizeof v / sizeof *v);
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

static void copy(cg *c, LLVMValueRef dst, LLVMValueRef src, int64_t bytes)
{
	if (bytes > 0)
		LLVMBuildMemCpy(c->b, dst, 4, src, 4, i64c(c, bytes));
}

static int64_t node_bytes(const ir_node *n)
{
	return ir_shape_count(&n->shape) * (int64_t)sizeof(float);
}

/* ---- one emitter per operator (ops.def: cg_<name>) ------------------------ */

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

/* dx = y > 0 ? dy : 0, as rt_relu_grad_ref; a select in a vector loop:
 * the C kernel's branch on the sign mispredicts half the time. */
static LLVMValueRef relu_grad_body(cg *c, LLVMValueRef *v)
{
	LLVMValueRef pos = LLVMBuildFCmp(c->b, LLVMRealOGT, v[0], f32c(c, 0), "");
	return LLVMBuildSelect(c->b, pos, v[1], f32c(c, 0), "");
}

/* dy the sum of two gradients (a fused add): added, then as above */
static LLVMValueRef relu_grad_sum_body(cg *c, LLVMValueRef *v)
{
	LLVMValueRef sum[2] = {v[0], LLVMBuildFAdd(c->b, v[1], v[2], "")};
	return relu_grad_body(c, sum);
}

static void cg_relu_grad(cg *c, const ir_node *n, LLVMValueRef y)
{
	LLVMValueRef ins[3] = {arg(c, n, 0), arg(c, n, 1), n->residual ? residual(c, n) : NULL};
	ewise(c, n->residual ? 3 : 2, ins, y, ir_shape_count(&n->shape),
	      n->residual ? relu_grad_sum_body : relu_grad_body);
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
#define UNARY(e, name) [IR_OP_##e] = RT_KERNEL_##e, [IR_OP_##e##_GRAD] = RT_KERNEL_##e##_GRAD,
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
#define UNARY(e, name)                        [IR_OP_##e] = cg_unary, [IR_OP_##e##_GRAD] = cg_unary,
#include "ops.def"
};

/* ---- functions ------------------------------------------------------------- */

static LLVMValueRef begin(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                          bool exported)
{
	LLVMValueRef f = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, params, n, 0));
	if (!exported)
		LLVMSetLinkage(f, LLVMInternalLinkage);
	c->fn = f;
	LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, f, "entry"));
	return f;
}

static const char *sym(cg *c, const char *suffix)
{
	static char buf[512];
	snprintf(buf, sizeof buf, "%s_%s", c->prefix, suffix);
	return buf;
}

/* prepare(raw, prepared): copy the params the code reads, then compute
 * the values that depend on params alone. */
static LLVMValueRef build_prepare(cg *c, bool exported)
{
	LLVMTypeRef params[2] = {c->ptr, c->ptr};
	LLVMValueRef f = begin(c, sym(c, "_prepare"), c->void_t, params, 2, exported);
	c->raw = LLVMGetParam(f, 0);
	c->w = LLVMGetParam(f, 1);
	c->ws = c->in = c->out = NULL;
	c->threads = LLVMConstNull(c->ptr);
	for (int id = 0; id < c->g->n_nodes; id++) {
		const ir_node *n = &c->g->nodes[id];
		if (!n->prep || n->mem != IR_MEM_WEIGHTS)
			continue;
		LLVMValueRef y = byte_offset(c, c->w, n->offset);
		if (n->op == IR_OP_PARAM)
			copy(c, y, at(c, id), node_bytes(n));
		else
			emitters[n->op](c, n, y);
	}
	LLVMBuildRetVoid(c->b);
	c->raw = NULL;
	return f;
}

/* A forward's signature (w, ws, in, out, threads), its four tables
 * noalias; c's values become f's parameters. */
static LLVMValueRef forward_fn(cg *c, const char *name, bool exported)
{
	LLVMTypeRef params[5] = {c->ptr, c->ptr, c->ptr, c->ptr, c->ptr};
	LLVMValueRef f = begin(c, name, c->void_t, params, 5, exported);
	c->w = LLVMGetParam(f, 0);
	c->ws = LLVMGetParam(f, 1);
	c->in = LLVMGetParam(f, 2);
	c->out = LLVMGetParam(f, 3);
	c->threads = LLVMGetParam(f, 4);
	for (unsigned i = 0; i < 4; i++)
		LLVMAddAttributeAtIndex(
		    f, i + 1,
		    LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("noalias", 7),
		                            0));
	return f;
}

/* Nodes a chunk of the forward holds: LLVM's optimiser and code generator
 * take time that grows faster than linearly with a function's length (a
 * chain of 4000 ReLUs in one function: 130 s), so the forward calls
 * chunks of this many nodes, each its own function, kept out of line. */
enum { CHUNK_NODES = 32 };

/* How many executed nodes from id on are one unary element-wise op
 * applied again and again in place (h = relu(h), repeated): 1 if none.
 * Such a run becomes one loop around the op's loop, not straight-line
 * code per node (repeat 20000 { h = relu(h) }). */
static int run_length(const ir_graph *g, int id)
{
	const ir_node *n = &g->nodes[id];
	if (!(ir_ops[n->op].flags & OPF_EWISE) || n->n_in != 1 || n->mem != IR_MEM_ARENA)
		return 1;
	int len = 1, last = id;
	for (int j = id + 1; j < g->n_nodes; j++) {
		const ir_node *m = &g->nodes[j];
		if (m->prep)
			continue;
		if (m->op != n->op || m->n_in != 1 || m->in[0] != last || m->relu != n->relu ||
		    m->mem != IR_MEM_ARENA || m->offset != n->offset)
			break;
		len++, last = j;
	}
	return len;
}

/* The node's code `times` times over: its input is its own result after
 * the first (run_length). */
static void emit_repeated(cg *c, const ir_node *n, LLVMValueRef y, int64_t times)
{
	LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
	LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "again");
	LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "again.done");
	LLVMBuildBr(c->b, head);
	LLVMPositionBuilderAtEnd(c->b, head);
	LLVMValueRef r = LLVMBuildPhi(c->b, c->i64, "r");
	emitters[n->op](c, n, y);
	LLVMValueRef next = LLVMBuildNUWAdd(c->b, r, i64c(c, 1), "");
	LLVMValueRef more = LLVMBuildICmp(c->b, LLVMIntULT, next, i64c(c, times), "");
	LLVMBasicBlockRef latch = LLVMGetInsertBlock(c->b);
	LLVMBuildCondBr(c->b, more, head, done);
	LLVMValueRef vals[2] = {i64c(c, 0), next};
	LLVMBasicBlockRef from[2] = {pre, latch};
	LLVMAddIncoming(r, vals, from, 2);
	LLVMPositionBuilderAtEnd(c->b, done);
}

static LLVMValueRef build_forward(cg *c, bool exported)
{
	LLVMValueRef f = forward_fn(c, sym(c, "_forward"), exported);
	LLVMBasicBlockRef body = LLVMGetInsertBlock(c->b);
	LLVMValueRef args[5];
	for (unsigned i = 0; i < 5; i++)
		args[i] = LLVMGetParam(f, i);
	const ir_graph *g = c->g;
	bool mark = c->profile;
	if (mark)
		kernel(c, RT_KERNEL_PROFILE_MARK, (LLVMValueRef[]){c->threads, i32c(c, -1)}, 2);
	LLVMAttributeRef noinline =
	    LLVMCreateEnumAttribute(c->ctx, LLVMGetEnumAttributeKindForName("noinline", 8), 0);
	for (int id = 0, chunk = 0; id < g->n_nodes; chunk++) {
		char name[600];
		snprintf(name, sizeof name, "%s__forward.%d", c->prefix, chunk);
		LLVMValueRef part = forward_fn(c, name, false);
		LLVMAddAttributeAtIndex(part, LLVMAttributeFunctionIndex, noinline);
		for (int k = 0; id < g->n_nodes && k < CHUNK_NODES; id++) {
			const ir_node *n = &g->nodes[id];
			if (n->prep || n->op == IR_OP_INPUT)
				continue;
			LLVMValueRef y = ir_ops[n->op].flags & OPF_EFFECT ? NULL : at(c, id);
			emitters[n->op](c, n, y);
			if (mark)
				kernel(c, RT_KERNEL_PROFILE_MARK,
				       (LLVMValueRef[]){c->threads, i32c(c, id)}, 2);
			k++;
			/* the rest of a run of the same op in place, in a loop (a
			 * profile times every node, so it keeps them apart) */
			int len = mark ? 1 : run_length(g, id);
			if (len > 2) {
				const ir_node *second = n;
				for (int j = id + 1; second == n; j++)
					if (!g->nodes[j].prep)
						second = &g->nodes[j];
				emit_repeated(c, second, y, len - 1);
				for (int seen = 1; seen < len;)
					seen += !g->nodes[++id].prep;
			}
		}
		LLVMBuildRetVoid(c->b);
		c->fn = f;
		LLVMPositionBuilderAtEnd(c->b, body);
		call(c, part, args, 5);
	}
	c->w = args[0], c->ws = args[1], c->in = args[2], c->out = args[3], c->threads = args[4];
	/* Outputs that are not computed in place: an input, a weight, or a value
	 * that is also an earlier output. */
	for (int i = 0; i < g->n_outputs; i++) {
		const ir_node *n = &g->nodes[g->outputs[i].node];
		if (n->mem != IR_MEM_OUTPUT || n->io != i)
			copy(c, io_ptr(c, c->out, i), at(c, g->outputs[i].node), node_bytes(n));
	}
	LLVMBuildRetVoid(c->b);
	return f;
}

static LLVMValueRef cstring(cg *c, const char *s)
{
	LLVMValueRef init = LLVMConstStringInContext(c->ctx, s, (unsigned)strlen(s), 0);
	LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), "str");
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
	return g;
}

static LLVMValueRef private_const(cg *c, LLVMValueRef init, const char *name)
{
	LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	return g;
}

/* A table of rt_param_desc for the params of g that pass keep(): names,
 * shapes, and offsets in floats (raw, or into the training state). */
static LLVMValueRef param_table(cg *c, const ir_graph *g, bool state, int *count)
{
	LLVMTypeRef dims_t = LLVMArrayType2(c->i64, 4);
	LLVMTypeRef pfields[] = {c->ptr, c->i64, dims_t, c->i64};
	LLVMTypeRef param_t = LLVMStructTypeInContext(c->ctx, pfields, 4, 0);
	LLVMValueRef *rows = calloc((size_t)g->n_nodes + 1, sizeof *rows);
	if (!rows)
		diag_fatal("out of memory");
	int np = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_PARAM || (state && n->mem != IR_MEM_WEIGHTS))
			continue;
		LLVMValueRef d[4];
		for (int k = 0; k < 4; k++)
			d[k] = i64c(c, k < n->shape.rank ? n->shape.d[k] : 0);
		LLVMValueRef f[] = {cstring(c, n->name), i64c(c, n->shape.rank),
		                    LLVMConstArray2(c->i64, d, 4),
		                    i64c(c, (state ? n->offset : n->raw_offset) / 4)};
		rows[np++] = LLVMConstStructInContext(c->ctx, f, 4, 0);
	}
	LLVMValueRef table =
	    private_const(c, LLVMConstArray2(param_t, rows, (uint64_t)np), "params");
	free(rows);
	*count = np;
	return table;
}

/* Where each inference param lives in the training state, in floats. */
static LLVMValueRef eval_from_state(cg *c, const ir_graph *eg, const ir_graph *tg)
{
	LLVMValueRef *v = calloc((size_t)eg->n_nodes + 1, sizeof *v);
	if (!v)
		diag_fatal("out of memory");
	int n = 0;
	for (int i = 0; i < eg->n_nodes; i++) {
		if (eg->nodes[i].op != IR_OP_PARAM)
			continue;
		int t = ir_param_find(tg, eg->nodes[i].name);
		if (t < 0 || tg->nodes[t].mem != IR_MEM_WEIGHTS)
			diag_fatal("internal: '%s' is not in the training state",
			           eg->nodes[i].name);
		v[n++] = i64c(c, tg->nodes[t].offset / 4);
	}
	LLVMValueRef g =
	    private_const(c, LLVMConstArray2(c->i64, v, (uint64_t)n), "eval_from_state");
	free(v);
	return g;
}

/* The descriptor, laid out like rt_model_desc: every field 8 bytes, at
 * 8 * its index in runtime/desc.def (backend/abi.c checks the struct). */
static LLVMValueRef build_desc(cg *c, const ir_graph *tg, LLVMValueRef prepare,
                               LLVMValueRef forward, LLVMValueRef train, LLVMValueRef embedded)
{
	const ir_graph *g = c->g;
	int np, ns = 0;
	LLVMValueRef params = param_table(c, g, false, &np);
	LLVMValueRef null = LLVMConstNull(c->ptr), zero = i64c(c, 0);
	LLVMValueRef state = tg ? param_table(c, tg, true, &ns) : null;
	LLVMValueRef fields[RT_DESC_COUNT] = {
	    [RT_DESC_NAME] = cstring(c, g->name),
	    [RT_DESC_N_PARAMS] = i64c(c, np),
	    [RT_DESC_PARAMS] = params,
	    [RT_DESC_RAW_FLOATS] = i64c(c, g->plan.raw_bytes / 4),
	    [RT_DESC_WEIGHT_FLOATS] = i64c(c, g->plan.weight_bytes / 4),
	    [RT_DESC_EMBEDDED] = embedded ? embedded : null,
	    [RT_DESC_WORKSPACE_BYTES] = i64c(c, g->plan.arena_bytes),
	    [RT_DESC_N_INPUTS] = i64c(c, g->n_inputs),
	    [RT_DESC_N_OUTPUTS] = i64c(c, g->n_outputs),
	    [RT_DESC_PREPARE] = prepare,
	    [RT_DESC_FORWARD] = forward,
	    [RT_DESC_STATE_FLOATS] = tg ? i64c(c, tg->plan.weight_bytes / 4) : zero,
	    [RT_DESC_N_STATE_PARAMS] = i64c(c, ns),
	    [RT_DESC_STATE_PARAMS] = state,
	    [RT_DESC_EVAL_FROM_STATE] = tg ? eval_from_state(c, g, tg) : null,
	    [RT_DESC_TRAIN_WORKSPACE_BYTES] = tg ? i64c(c, tg->plan.arena_bytes) : zero,
	    [RT_DESC_TRAIN_STEP] = tg ? train : null,
	    [RT_DESC_BATCH] = i64c(c, g->batch),
	    [RT_DESC_CLASSES] = tg ? i64c(c, tg->nodes[tg->outputs[1].node].shape.d[1]) : zero,
	    [RT_DESC_TARGET] = cstring(c, c->t->name),
	    [RT_DESC_CPU_NEEDS] = i64c(c, (int64_t)c->t->needs),
	    [RT_DESC_GEMM_MR] = i64c(c, c->t->mr),
	};
	/* every field set: a desc.def entry with no value here is a hole */
	for (int i = 0; i < RT_DESC_COUNT; i++)
		if (!fields[i])
			diag_fatal("internal: descriptor field %d has no value", i);
	LLVMValueRef init =
	    LLVMConstStructInContext(c->ctx, fields, sizeof fields / sizeof *fields, 0);
	return private_const(c, init, "desc");
}

/* An exported function that forwards its arguments to a runtime call,
 * with the descriptor first when with_desc. */
static void wrapper(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                    const char *target, LLVMValueRef desc)
{
	LLVMValueRef f = begin(c, sym(c, name), ret, params, n, true);
	LLVMValueRef args[8];
	LLVMTypeRef types[8];
	unsigned k = 0;
	if (desc) {
		args[k] = desc;
		types[k++] = c->ptr;
	}
	for (unsigned i = 0; i < n; i++) {
		args[k] = LLVMGetParam(f, i);
		types[k++] = params[i];
	}
	LLVMValueRef r = call(c, declare(c, target, ret, types, k), args, k);
	if (LLVMGetTypeKind(ret) == LLVMVoidTypeKind)
		LLVMBuildRetVoid(c->b);
	else
		LLVMBuildRet(c->b, r);
}

const char *backend_symbol_clash(const char *name, bool trainable, char *buf, size_t len)
{
	/* every symbol a library defines under its name (build_api and the
	 * functions above) */
	static const char *const suffixes[] = {
	    "_create",       "_destroy",          "_load_weights",   "_run",
	    "_infer",        "_infer_static",     "_error",          "_set_threads",
	    "_read_weights", "_embedded_weights", "__prepare",       "__forward",
	    "_train_step",   "_save_weights",     "_train__forward", "_train_set_allreduce"};
	int n = (int)(sizeof suffixes / sizeof *suffixes) - (trainable ? 0 : 4);
	for (int i = 0; i < n; i++) {
		snprintf(buf, len, "%s%s", name, suffixes[i]);
		if (dlsym(RTLD_DEFAULT, buf))
			return buf;
	}
	return NULL;
}

static void build_api(cg *c, LLVMValueRef desc, bool trainable)
{
	LLVMTypeRef p = c->ptr, i = c->i32, none[1];
	LLVMTypeRef p1[] = {p}, p2[] = {p, p}, p3[] = {p, p, p}, p4[] = {p, p, p, p};
	wrapper(c, "create", p, none, 0, "rt_instance_create", desc);
	wrapper(c, "destroy", c->void_t, p1, 1, "rt_instance_destroy", NULL);
	wrapper(c, "load_weights", i, p2, 2, "rt_instance_load_weights", NULL);
	wrapper(c, "run", i, p3, 3, "rt_instance_run", NULL);
	if (c->g->n_inputs == 1 && c->g->n_outputs == 1) {
		wrapper(c, "infer", i, p3, 3, "rt_instance_infer", NULL);
		wrapper(c, "infer_static", i, p4, 4, "rt_model_run_raw", desc);
	}
	wrapper(c, "error", p, p1, 1, "rt_instance_error", NULL);
	LLVMTypeRef pi[] = {p, i};
	wrapper(c, "set_threads", i, pi, 2, "rt_instance_set_threads", NULL);
	if (trainable) {
		LLVMTypeRef step[] = {p, p, p, c->f32, p};
		wrapper(c, "train_step", i, step, 5, "rt_instance_train_step", NULL);
		wrapper(c, "save_weights", i, p2, 2, "rt_instance_save_weights", NULL);
		wrapper(c, "train_set_allreduce", i, p3, 3, "rt_instance_set_allreduce", NULL);
	}

	/* read_weights(path, prepared) and embedded_weights() for callers that
	 * own their memory. */
	LLVMValueRef f = begin(c, sym(c, "read_weights"), i, p2, 2, true);
	LLVMTypeRef rw[] = {p, p, p, p, c->i64};
	LLVMValueRef args[] = {desc, LLVMGetParam(f, 0), LLVMGetParam(f, 1), LLVMConstNull(p),
	                       i64c(c, 0)};
	LLVMBuildRet(c->b, call(c, declare(c, "rt_model_read_weights", i, rw, 5), args, 5));
	/* a trainable library embeds its training state, not prepared weights */
	f = begin(c, sym(c, "embedded_weights"), p, none, 0, true);
	LLVMValueRef field = LLVMBuildStructGEP2(c->b, LLVMGlobalGetValueType(desc), desc, 5, "");
	LLVMBuildRet(c->b, trainable ? LLVMConstNull(p) : LLVMBuildLoad2(c->b, p, field, ""));
}

LLVMModuleRef backend_module_build(LLVMContextRef ctx, const ir_graph *g, const ir_graph *tg,
                                   const backend_target *t, const char *prefix,
                                   const float *embedded, unsigned flags)
{
	bool library = flags & BACKEND_MODULE_LIBRARY;
	cg c = {.ctx = ctx,
	        .g = g,
	        .prefix = prefix,
	        .profile = flags & BACKEND_MODULE_PROFILE,
	        .t = t};
	c.mod = LLVMModuleCreateWithNameInContext(prefix, ctx);
	c.b = LLVMCreateBuilderInContext(ctx);
	c.ptr = LLVMPointerTypeInContext(ctx, 0);
	c.i32 = LLVMInt32TypeInContext(ctx);
	c.i64 = LLVMInt64TypeInContext(ctx);
	c.f32 = LLVMFloatTypeInContext(ctx);
	c.void_t = LLVMVoidTypeInContext(ctx);

	LLVMValueRef prepare = build_prepare(&c, !library);
	LLVMValueRef forward = build_forward(&c, !library);
	LLVMValueRef train = NULL;
	if (tg) {
		/* the training step's functions, under their own prefix */
		char tp[256];
		snprintf(tp, sizeof tp, "%s_train", prefix);
		c.g = tg;
		c.prefix = tp;
		train = build_forward(&c, !library);
		c.g = g;
		c.prefix = prefix;
	}
	if (library) {
		LLVMValueRef weights = NULL;
		if (embedded) {
			int64_t bytes = tg ? tg->plan.weight_bytes : g->plan.weight_bytes;
			LLVMValueRef data = LLVMConstStringInContext(ctx, (const char *)embedded,
			                                             (unsigned)bytes, 1);
			weights = private_const(&c, data, "weights");
			LLVMSetAlignment(weights, 64);
		}
		LLVMValueRef desc = build_desc(&c, tg, prepare, forward, train, weights);
		build_api(&c, desc, tg != NULL);
	}
	LLVMDisposeBuilder(c.b);
	return c.mod;
}
