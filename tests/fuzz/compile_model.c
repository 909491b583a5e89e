/* compile_model(): bytes steer a generator of small valid models, which go
 * through the front end, every pass, autodiff (when the output is
 * [N, classes]) and code generation for x86-64-v3 at -O0, to machine code
 * in memory. The front end's errors are fuzz_frontend's business; past it,
 * a model it accepted must compile, or fail with an error about the
 * user's model (a parameter that does not affect the loss), never one
 * naming an internal op or saying "internal". Included by fuzz_compile.c
 * and by tests/test_fuzz_corpus.c, which replays the regressions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "frontend.h"
#include "passes.h"

typedef struct bytes {
	const unsigned char *p;
	size_t n;
} bytes;

/* The next byte mod m; zeros once the input runs out. */
static int take(bytes *b, int m)
{
	if (!b->n)
		return 0;
	b->n--;
	return *b->p++ % m;
}

enum { MAX_VALUES = 24 };

typedef struct value {
	int rank;
	int64_t d[4]; /* d[0] is the batch */
} value;

typedef struct gen {
	bytes in;
	char *text;
	size_t len, cap;
	value v[MAX_VALUES];
	int n;
} gen;

static void emit(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(gen *g, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(g->text + g->len, g->cap - g->len, fmt, ap);
	va_end(ap);
	if (k > 0 && (size_t)k < g->cap - g->len)
		g->len += (size_t)k;
}

static void value_name(int i, char *buf)
{
	if (i == 0)
		strcpy(buf, "x");
	else
		sprintf(buf, "v%d", i);
}

/* Mostly the latest value, sometimes an earlier one (a branch, dead code
 * when nothing joins it again; add() joins same-shaped values). */
static int pick(gen *g)
{
	return take(&g->in, 8) ? g->n - 1 : take(&g->in, g->n);
}

static int same_shape(gen *g, int a)
{
	int start = take(&g->in, g->n);
	for (int k = 0; k < g->n; k++) {
		int i = (start + k) % g->n;
		if (g->v[i].rank == g->v[a].rank && !memcmp(g->v[i].d, g->v[a].d, sizeof g->v[a].d))
			return i;
	}
	return a;
}

static int64_t window_out(int64_t x, int k, int s, int p)
{
	return (x + 2 * p - k) / s + 1;
}

/* One statement `vN = ...` whose operands have the shapes it needs; false
 * if the chosen op does not fit the chosen operand. */
static bool step(gen *g)
{
	int a = pick(g);
	value x = g->v[a], y = x;
	char an[16], bn[16];
	value_name(a, an);
	char stmt[160];
	bool r4 = x.rank == 4;
	switch (take(&g->in, 12)) {
	case 0:
	case 1: {
		static const int ks[] = {1, 3, 3, 5, 2, 7};
		int k = ks[take(&g->in, 6)], s = 1 + take(&g->in, 2), p = take(&g->in, k / 2 + 1);
		int out = 1 + take(&g->in, 20);
		if (!r4 || k > x.d[2] + 2 * p || k > x.d[3] + 2 * p)
			return false;
		y.d[1] = out;
		y.d[2] = window_out(x.d[2], k, s, p);
		y.d[3] = window_out(x.d[3], k, s, p);
		snprintf(stmt, sizeof stmt, "conv(%s, %d, %d, %d, %d, bias = %s)", an, out, k, s, p,
		         take(&g->in, 2) ? "true" : "false");
		break;
	}
	case 2:
		snprintf(stmt, sizeof stmt, "batchnorm(%s)", an);
		break;
	case 3:
		snprintf(stmt, sizeof stmt, "relu(%s)", an);
		break;
	case 4:
		value_name(same_shape(g, a), bn);
		snprintf(stmt, sizeof stmt, "%s + %s", an, bn);
		break;
	case 5: {
		int k = 1 + take(&g->in, 3), s = 1 + take(&g->in, k), p = take(&g->in, k / 2 + 1);
		if (!r4 || k > x.d[2] + 2 * p || k > x.d[3] + 2 * p)
			return false;
		y.d[2] = window_out(x.d[2], k, s, p);
		y.d[3] = window_out(x.d[3], k, s, p);
		snprintf(stmt, sizeof stmt, "%s(%s, kernel = %d, stride = %d, pad = %d)",
		         take(&g->in, 2) ? "maxpool" : "avgpool", an, k, s, p);
		break;
	}
	case 6:
		if (!r4)
			return false;
		y.d[2] = y.d[3] = 1;
		snprintf(stmt, sizeof stmt, "global_avgpool(%s)", an);
		break;
	case 7:
		y.rank = 2;
		for (int i = 2; i < x.rank; i++)
			y.d[1] *= x.d[i];
		y.d[2] = y.d[3] = 0;
		snprintf(stmt, sizeof stmt, "flatten(%s)", an);
		break;
	case 8: {
		int out = 1 + take(&g->in, 12);
		if (x.rank != 2)
			return false;
		y.d[1] = out;
		snprintf(stmt, sizeof stmt, "linear(%s, %d, bias = %s)", an, out,
		         take(&g->in, 4) ? "true" : "false");
		break;
	}
	case 9:
		if (x.rank != 2)
			return false;
		snprintf(stmt, sizeof stmt, "softmax(%s)", an);
		break;
	case 10: {
		int s = 1 + take(&g->in, 3);
		if (!r4)
			return false;
		y.d[2] = (x.d[2] + s - 1) / s;
		y.d[3] = (x.d[3] + s - 1) / s;
		snprintf(stmt, sizeof stmt, "subsample(%s, %d)", an, s);
		break;
	}
	default: {
		int before = take(&g->in, 5), after = take(&g->in, 5);
		if (!r4)
			return false;
		y.d[1] += before + after;
		snprintf(stmt, sizeof stmt, "pad_channels(%s, %d, %d)", an, before, after);
		break;
	}
	}
	emit(g, "    v%d = %s\n", g->n, stmt);
	g->v[g->n++] = y;
	return true;
}

/* The model text into g->text; whether to train it. */
static bool generate(gen *g, int64_t *batch)
{
	/* decided first: the input runs out in the loop below */
	bool want_train = take(&g->in, 2);
	int classes = 2 + take(&g->in, 9);
	*batch = 1 + take(&g->in, 3);
	int c = 1 + take(&g->in, 6), h = 1 + take(&g->in, 12);
	int w = take(&g->in, 2) ? h : 1 + take(&g->in, 12);
	g->v[0] = (value){4, {*batch, c, h, w}};
	g->n = 1;
	char body[4096] = "";
	size_t saved_len = g->len, saved_cap = g->cap;
	char *saved = g->text;
	g->text = body, g->len = 0, g->cap = sizeof body;
	int tries = 0;
	while (g->in.n && g->n < MAX_VALUES - 1 && tries++ < 64)
		step(g);
	if (want_train) { /* logits: [N, classes] */
		value last = g->v[g->n - 1];
		const char *pre = last.rank == 4 ? "flatten(global_avgpool(" : "(";
		const char *post = last.rank == 4 ? "))" : ")";
		char ln[16];
		value_name(g->n - 1, ln);
		emit(g, "    v%d = linear(%s%s%s, %d)\n", g->n, pre, ln, post, classes);
		g->v[g->n++] = (value){2, {*batch, classes}};
	}
	value out = g->v[g->n - 1];
	bool train = want_train;
	g->text = saved, g->len = saved_len, g->cap = saved_cap;

	emit(g, "version 1\nmodel fuzz(x: f32[N, %d, %d, %d]) -> (y: f32[N", c, h, w);
	for (int i = 1; i < out.rank; i++)
		emit(g, ", %lld", (long long)out.d[i]);
	emit(g, "])\ngraph {\n%s    y = ", body);
	if (g->n == 1)
		emit(g, "x\n}\n");
	else
		emit(g, "v%d\n}\n", g->n - 1);
	return train;
}

/* What a failure past the front end may say: about the user's model. */
static bool acceptable(const char *diag)
{
	if (strstr(diag, "internal"))
		return false;
	for (int i = 0; i < IR_OP_COUNT; i++)
		if (!(ir_ops[i].flags & OPF_USER) && i != IR_OP_INPUT && i != IR_OP_PARAM) {
			char quoted[64];
			snprintf(quoted, sizeof quoted, "through %s", ir_ops[i].name);
			if (strstr(diag, quoted) ||
			    !strncmp(diag, ir_ops[i].name, strlen(ir_ops[i].name)))
				return false;
		}
	return strstr(diag, "does not affect the loss") || strstr(diag, "cannot train through");
}

/* false (after a diagnostic) if LLVM cannot emit what codegen built */
static bool codegen(const ir_graph *g, const ir_graph *tg, const backend_target *t)
{
	bool failed = false;
	LLVMContextRef ctx = LLVMContextCreate();
	LLVMModuleRef m = backend_module_build(ctx, g, tg, t, "fuzz", NULL, BACKEND_MODULE_LIBRARY);
	LLVMTargetMachineRef tm = backend_target_machine(t, 0);
	backend_module_target(m, tm, t);
	backend_optimize(m, tm, 0);
	char *msg = NULL;
	LLVMMemoryBufferRef obj = NULL;
	if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &obj)) {
		fprintf(diag_output(), "internal: LLVM could not emit the module: %s\n", msg);
		LLVMDisposeMessage(msg);
		failed = true;
	} else {
		LLVMDisposeMemoryBuffer(obj);
	}
	LLVMDisposeModule(m);
	LLVMDisposeTargetMachine(tm);
	LLVMContextDispose(ctx);
	return !failed;
}

/* 0: compiled, or refused for a reason about the model; 1: a failure past
 * the front end that is netcc's bug, described in *report (free it). */
static int compile_model(const unsigned char *data, size_t size, char **report)
{
	static backend_target t;
	static bool ready;
	if (!ready) {
		char err[256];
		if (backend_target_get("x86-64-v3", &t, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			abort();
		}
		ready = true;
	}
	char text[8192];
	gen gn = {.in = {data, size}, .text = text, .cap = sizeof text};
	int64_t batch;
	bool train = generate(&gn, &batch);

	char *diag = NULL;
	size_t dlen = 0;
	FILE *out = open_memstream(&diag, &dlen);
	FILE *was = diag_output();
	diag_set_output(out);
	ir_graph *g = frontend_graph_parse("fuzz.nn", text, gn.len, batch);
	ir_graph *tg = train && g ? frontend_graph_parse("fuzz.nn", text, gn.len, batch) : NULL;
	bool accepted = g != NULL;
	bool failed = false;
	if (g) {
		diag_trap trap;
		diag_trap_push(&trap);
		if (setjmp(trap.jb) == 0) {
			passes_run(g, &(passes_options){.opt_level = 2});
			if (tg) {
				autodiff_training_graph(tg);
				passes_run(tg, &(passes_options){.opt_level = 2});
			}
			failed = !codegen(g, tg, &t);
			diag_trap_pop(&trap);
		} else {
			failed = true;
		}
	}
	fclose(out);
	diag_set_output(was);
	ir_graph_free(g);
	ir_graph_free(tg);
	if (getenv("FUZZ_COMPILE_SHOW"))
		fprintf(stderr, "-- %s\n%s%s",
		        !accepted ? "rejected by the front end"
		        : failed  ? "refused past it"
		        : tg      ? "compiled, training step too"
		                  : "compiled",
		        text, diag);
	int bad = failed && !acceptable(diag);
	*report = NULL;
	if (bad && asprintf(report, "a model the front end accepted failed past it:\n%s\n%s", text,
	                    diag) < 0)
		*report = NULL;
	free(diag);
	return bad;
}
