/* A graph's weights as a safetensors file: every param by name, float32,
 * shapes checked, each mismatch named. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "runtime.h"

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

int backend_weights_load(ir_graph *g, const char *path, bool allow_nonfinite)
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

int backend_weights_save(const ir_graph *g, const char *path)
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
