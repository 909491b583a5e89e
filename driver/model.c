/* Loading the model named on the command line, and its weights. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "driver.h"
#include "frontend.h"
#include "onnx.h"
#include "runtime.h"

bool driver_model_onnx(const opts *o)
{
	if (o->n_pos != 1)
		return false;
	size_t n = strlen(o->pos[0]);
	return n > 5 && !strcasecmp(o->pos[0] + n - 5, ".onnx");
}

/* An ONNX model imported in memory, its weights attached: the graph
 * netcc import's .nn and .safetensors would give. */
static ir_graph *onnx_load(const opts *o, int64_t batch)
{
	if (!strcmp(o->cmd, "train")) {
		fprintf(stderr,
		        "netcc: error: %s: train takes a .nn model; import it first (netcc import "
		        "%s -o MODEL.nn) and train that with --weights MODEL.safetensors\n",
		        o->pos[0], o->pos[0]);
		return NULL;
	}
	char name[80];
	onnx_import im;
	if (onnx_import_file(o->pos[0], onnx_model_name(o->pos[0], name, sizeof name), &im,
	                     stderr) != 0)
		return NULL;
	ir_graph *g = onnx_import_graph(&im, o->pos[0], batch);
	onnx_import_free(&im);
	return g;
}

ir_graph *driver_model_load(const opts *o, int64_t batch_default, int *status)
{
	*status = 2;
	if (o->n_pos != 1) {
		fprintf(stderr, "netcc: error: %s expects one model file (see netcc help)\n",
		        o->cmd);
		return NULL;
	}
	bool ok = true;
	int64_t batch = opts_int(o, "batch", batch_default, 1, FRONTEND_MAX_BATCH, &ok);
	if (!ok)
		return NULL;
	*status = 1;
	ir_graph *g =
	    driver_model_onnx(o) ? onnx_load(o, batch) : frontend_graph_load(o->pos[0], batch);
	/* commands load a model twice (a training step beside inference):
	 * one set of warnings */
	static bool warned;
	if (g && !warned) {
		warned = true;
		ir_graph_warn_unused(g);
	}
	if (g && driver_warnings_fatal(o)) {
		ir_graph_free(g);
		return NULL;
	}
	return g;
}

void driver_weights_warn(const opts *o, const char *what)
{
	if (driver_model_onnx(o) && !opts_flag(o, "weights")) {
		if (opts_flag(o, "seed"))
			diag_warn("--seed has no effect: the weights come from %s", o->pos[0]);
		return;
	}
	if (opts_flag(o, "weights")) {
		if (opts_flag(o, "seed"))
			diag_warn("--seed has no effect with --weights: the weights come from %s",
			          opts_str(o, "weights", ""));
		return;
	}
	diag_warn("no --weights: %s random He-initialised weights (seed %s), so its outputs "
	          "mean nothing; give --weights W.safetensors (netcc train writes one)",
	          what, opts_str(o, "seed", "0"));
}

int driver_warnings_fatal(const opts *o)
{
	static bool said;
	if (!opts_flag(o, "Werror") || !diag_warning_count())
		return 0;
	if (!said)
		fprintf(stderr, "netcc: error: -Werror: %d warning%s above\n", diag_warning_count(),
		        diag_warning_count() == 1 ? "" : "s");
	said = true;
	return 1;
}

int driver_classifier_check(const ir_graph *g, const char *cmd, const char *path, int64_t chw[3],
                            int64_t *classes)
{
	const ir_shape *in = g->n_inputs == 1 ? &g->nodes[g->inputs[0].node].shape : NULL;
	const ir_shape *out = g->n_outputs == 1 ? &g->nodes[g->outputs[0].node].shape : NULL;
	if (!in || in->rank != 4 || !out || out->rank != 2 || out->d[1] < 2) {
		fprintf(stderr,
		        "netcc: error: %s: %s needs a model with one input [N, C, H, W] and one "
		        "output [N, classes]\n",
		        path, cmd);
		return 1;
	}
	chw[0] = in->d[1], chw[1] = in->d[2], chw[2] = in->d[3];
	*classes = out->d[1];
	return 0;
}

static void shape_text(int rank, const int64_t *d, char *buf, size_t len)
{
	ir_shape s = {.rank = rank > IR_MAX_RANK ? IR_MAX_RANK : rank};
	for (int i = 0; i < s.rank; i++)
		s.d[i] = d[i];
	ir_shape_str(&s, buf, len);
	if (rank > IR_MAX_RANK)
		snprintf(buf, len, "(rank %d)", rank);
}

static void report(FILE *out, const char *fmt, ...)
{
	if (!out)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
}

/* Every problem is reported, not just the first: a mismatched file usually
 * has several, and seeing them all says which model it belongs to. */
static int check_tensor(const ir_node *p, const rt_st_tensor *t, const char *path,
                        bool allow_nonfinite, bool say)
{
	FILE *out = say ? stderr : NULL;
	char want[96], got[96];
	ir_shape_str(&p->shape, want, sizeof want);
	if (!t) {
		report(out, "netcc: error: %s: missing tensor '%s' %s\n", path, p->name, want);
		return 1;
	}
	if (t->dtype != RT_DTYPE_F32) {
		report(out, "netcc: error: %s: tensor '%s' is %s, expected float32\n", path,
		       p->name, rt_dtype_name(t->dtype));
		return 1;
	}
	bool same = t->rank == p->shape.rank;
	for (int i = 0; same && i < t->rank; i++)
		same = t->dims[i] == p->shape.d[i];
	if (!same) {
		shape_text(t->rank, t->dims, got, sizeof got);
		report(out, "netcc: error: %s: tensor '%s' has shape %s, the model needs %s\n",
		       path, p->name, got, want);
		return 1;
	}
	char err[512];
	if (rt_param_values_check(path, p->name, t->data, t->count, !allow_nonfinite, err,
	                          sizeof err) != 0) {
		report(out, "netcc: error: %s%s\n", err,
		       strstr(err, "variance") ? "" : " (--allow-nonfinite accepts it)");
		return 1;
	}
	return 0;
}

int weights_load(ir_graph *g, const char *path, bool allow_nonfinite)
{
	rt_st_file f;
	char err[512];
	if (rt_st_read(path, &f, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	/* A file for another model mismatches everywhere; the first few say enough. */
	enum { SHOWN = 10 };
	int bad = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *p = &g->nodes[i];
		if (p->op == IR_OP_PARAM)
			bad += check_tensor(p, rt_st_find(&f, p->name), path, allow_nonfinite,
			                    bad < SHOWN);
	}
	for (int k = 0; k < f.n_tensors; k++) {
		if (ir_param_find(g, f.tensors[k].name) < 0) {
			if (bad < SHOWN)
				fprintf(stderr,
				        "netcc: error: %s: tensor '%s' is not a parameter of model "
				        "'%s'\n",
				        path, f.tensors[k].name, g->name);
			bad++;
		}
	}
	if (bad > SHOWN)
		fprintf(stderr, "netcc: error: %s: %d more mismatched tensors\n", path,
		        bad - SHOWN);
	const char *owner = rt_st_meta(&f, "model");
	if (bad && owner && strcmp(owner, g->name) != 0)
		fprintf(stderr, "netcc: note: %s was written for model '%s', not '%s'\n", path,
		        owner, g->name);
	if (!bad) {
		for (int i = 0; i < g->n_nodes; i++) {
			ir_node *p = &g->nodes[i];
			if (p->op != IR_OP_PARAM)
				continue;
			const rt_st_tensor *t = rt_st_find(&f, p->name);
			if (!p->data)
				p->data = arena_array(&g->arena, t->count, sizeof(float));
			memcpy(p->data, t->data, t->count * sizeof(float));
		}
	}
	rt_st_free(&f);
	return bad ? 1 : 0;
}

int weights_save(const ir_graph *g, const char *path)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == IR_OP_PARAM;
	rt_st_entry *e = calloc((size_t)n + 1, sizeof *e);
	if (!e) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	n = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *p = &g->nodes[i];
		if (p->op == IR_OP_PARAM)
			e[n++] = (rt_st_entry){.name = p->name,
			                       .dtype = RT_DTYPE_F32,
			                       .rank = p->shape.rank,
			                       .dims = p->shape.d,
			                       .data = p->data};
	}
	const char *meta[] = {"format", "netcc", "model", g->name};
	char err[512];
	int rc = rt_st_write(path, e, n, meta, 2, err, sizeof err);
	if (rc != 0)
		fprintf(stderr, "netcc: error: %s\n", err);
	free(e);
	return rc ? 1 : 0;
}

int driver_guarded(int (*fn)(void *ctx), void *ctx)
{
	diag_trap t;
	diag_trap_push(&t);
	if (setjmp(t.jb) == 0) {
		int rc = fn(ctx);
		diag_trap_pop(&t);
		return rc;
	}
	return 1;
}
