/* From a planned graph to an LLVM module: a prepare function (raw weights
 * to prepared), a forward function that runs every node's code
 * (backend/cg_ops.c) on planned addresses, the model's descriptor, and
 * the exported API wrappers. */
#include <dlfcn.h>

#include <llvm-c/DebugInfo.h>

#include "cg.h"

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
			cg_node(c, n, y);
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
	cg_node(c, n, y);
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
			cg_node(c, n, y);
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
	LLVMValueRef g = private_const(c, init, "str");
	LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
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
