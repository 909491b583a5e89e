/* cg.h: what the code generator's files share: the state of one module
 * being built and the helpers every emitter uses to reach values and call
 * the runtime's kernels. Internal to backend/.
 *
 *   LLVMValueRef args[] = {c->threads, conv_params(c, n), arg(c, n, 0), ...};
 *   kernel(c, RT_KERNEL_CONV2D, args, countof(args));
 */
#ifndef NETCC_CG_H
#define NETCC_CG_H

#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

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

static inline LLVMValueRef i64c(cg *c, int64_t v)
{
	return LLVMConstInt(c->i64, (unsigned long long)v, 1);
}

static inline LLVMValueRef i32c(cg *c, int64_t v)
{
	return LLVMConstInt(c->i32, (unsigned long long)v, 1);
}

static inline LLVMValueRef f32c(cg *c, double v)
{
	return LLVMConstReal(c->f32, v);
}

static inline LLVMValueRef declare(cg *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *params,
                                   unsigned n)
{
	LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
	if (!f)
		f = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, params, n, 0));
	return f;
}

static inline LLVMValueRef call(cg *c, LLVMValueRef f, LLVMValueRef *args, unsigned n)
{
	return LLVMBuildCall2(c->b, LLVMGlobalGetValueType(f), f, args, n, "");
}

/* A call to runtime kernel k (runtime/kernels.def) with n arguments. */
static inline void kernel(cg *c, rt_kernel k, LLVMValueRef *args, unsigned n)
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

static inline LLVMValueRef byte_offset(cg *c, LLVMValueRef base, int64_t off)
{
	LLVMValueRef idx = i64c(c, off);
	return LLVMBuildInBoundsGEP2(c->b, LLVMInt8TypeInContext(c->ctx), base, &idx, 1, "");
}

static inline LLVMValueRef io_ptr(cg *c, LLVMValueRef table, int io)
{
	LLVMValueRef slot = byte_offset(c, table, (int64_t)io * 8);
	return LLVMBuildLoad2(c->b, c->ptr, slot, "");
}

/* Where node id's value is, in the function being built. */
static inline LLVMValueRef at(cg *c, int id)
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

static inline LLVMValueRef arg(cg *c, const ir_node *n, int i)
{
	return at(c, n->in[i]);
}

static inline const ir_shape *arg_shape(cg *c, const ir_node *n, int i)
{
	return &c->g->nodes[n->in[i]].shape;
}

static inline void copy(cg *c, LLVMValueRef dst, LLVMValueRef src, int64_t bytes)
{
	if (bytes > 0)
		LLVMBuildMemCpy(c->b, dst, 4, src, 4, i64c(c, bytes));
}

static inline int64_t node_bytes(const ir_node *n)
{
	return ir_shape_count(&n->shape) * (int64_t)sizeof(float);
}

/* A constant global private to the module, named name */
static inline LLVMValueRef private_const(cg *c, LLVMValueRef init, const char *name)
{
	LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(g, init);
	LLVMSetGlobalConstant(g, 1);
	LLVMSetLinkage(g, LLVMPrivateLinkage);
	return g;
}

/* One node's code at the builder's position (backend/cg_ops.c): y is where
 * its value goes, NULL for an op with an effect only. */
void cg_node(cg *c, const ir_node *n, LLVMValueRef y);

#endif
