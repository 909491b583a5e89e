/* netcc profile: where a compiled forward (or training step) spends its
 * time, node by node, against the FMA peak measured on this machine. The
 * code is what `netcc compile` would put in a library, compiled in memory
 * with a clock read after every node (rt_profile_mark). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "driver.h"
#include "passes.h"
#include "runtime.h"

typedef struct prof_job {
	ir_graph *g;
	const backend_target *t;
	bool train;
	int opt_level;
	bool no_winograd;
	backend_jit *jit;
	char err[512];
} prof_job;

static int prof_build(void *ctx)
{
	prof_job *j = ctx;
	passes_run(
	    j->g, &(passes_options){.mode = j->train ? PASSES_MODE_TRAINING : PASSES_MODE_INFERENCE,
	                            .opt_level = j->opt_level,
	                            .no_winograd = j->no_winograd});
	j->jit = backend_jit_compile(j->g, j->t, j->opt_level, "netcc_profile", true, j->err,
	                             sizeof j->err);
	return j->jit ? 0 : 1;
}

/* One row of the per-operator summary. */
typedef struct op_total {
	int count;
	double seconds, flops;
} op_total;

static void print_row(const char *what, const char *op, const char *shape, double flops, double sec,
                      double runs, double total, double peak)
{
	double ms = sec / runs * 1e3, gf = sec > 0 ? flops * runs / sec * 1e-9 : 0;
	printf("%-40s %-18s %-18s %8.4f %9.3f", what, op, shape, flops * 1e-9, ms);
	if (flops > 0)
		printf(" %8.1f %5.0f%%", gf, 100 * gf / peak);
	else
		printf(" %8s %6s", "-", "-");
	printf(" %5.1f%%\n", 100 * sec / total);
}

static const char *tail_name(const char *name)
{
	size_t len = strlen(name);
	return len > 40 ? name + len - 40 : name;
}

int cmd_profile(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "profile");
	if (rc)
		return rc < 0 ? 0 : rc;
	backend_target target;
	if (driver_target(&o, &target, true) != 0)
		return 2;
	bool ok = true;
	int64_t runs = opts_int(&o, "runs", 20, 1, 100000, &ok);
	int64_t threads = opts_int(&o, "threads", backend_threads(), 0, 256, &ok);
	int64_t seed = opts_int(&o, "seed", 0, 0, INT64_MAX, &ok);
	int64_t gap_ms = opts_int(&o, "gap", 0, 0, 60000, &ok);
	if (!ok)
		return 2;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	if (!driver_model_onnx(&o)) /* an ONNX file brings its weights */
		ir_graph_init_he(g, (uint64_t)seed);
	prof_job j = {.g = g,
	              .t = &target,
	              .train = opts_flag(&o, "train"),
	              .opt_level = opts_flag(&o, "O0") ? 0 : 2,
	              .no_winograd = opts_flag(&o, "no-winograd")};
	rc = 1;
	float *raw = NULL, *w = NULL, *in[IR_MAX_IO] = {0}, *out[IR_MAX_IO] = {0};
	double *node_s = NULL;
	void *ws = NULL;
	rt_threads *pool = NULL;
	if (driver_guarded(prof_build, &j) != 0) {
		if (j.err[0])
			fprintf(stderr, "netcc: error: %s\n", j.err);
		goto done;
	}
	raw = calloc((size_t)g->plan.raw_bytes / 4 + 1, sizeof(float));
	/* in huge pages, as a library's instance keeps them */
	w = rt_alloc_large_zero(((size_t)g->plan.weight_bytes / 4 + 1) * sizeof(float));
	node_s = calloc((size_t)g->n_nodes, sizeof(double));
	ws = backend_workspace_new(g);
	pool = rt_threads_create((int)threads);
	bool mem = raw && w && node_s && ws && pool;
	rt_rng rng;
	rt_rng_seed(&rng, (uint64_t)seed + 1);
	for (int i = 0; mem && i < g->n_inputs; i++) {
		const ir_node *n = &g->nodes[g->inputs[i].node];
		size_t count = (size_t)ir_shape_count(&n->shape);
		/* labels 0 are valid for any class count; lr (a training input
		 * of one value) 0 keeps the weights where they are between runs */
		if ((mem = (in[i] = calloc(count, sizeof(float))) != NULL) && !n->i32 && count > 1)
			rt_rng_normal_fill(&rng, in[i], count, 1);
	}
	for (int i = 0; mem && i < g->n_outputs; i++)
		mem = (out[i] = malloc((size_t)ir_shape_count(&g->nodes[g->outputs[i].node].shape) *
		                       sizeof(float))) != NULL;
	if (!mem) {
		fprintf(stderr, "netcc: error: out of memory\n");
		goto done;
	}
	backend_raw_weights(g, raw);
	backend_jit_prepare(j.jit)(raw, w);
	backend_forward_fn *fwd = backend_jit_forward(j.jit);
	for (int r = 0; r < 3; r++) /* warm-up: caches, pages, the pool's threads */
		fwd(w, ws, (const void *const *)in, out, pool);
	rt_threads_profile(pool, node_s, g->n_nodes);
	double wall = 0;
	for (int64_t r = 0; r < runs; r++) {
		if (gap_ms)
			nanosleep(&(struct timespec){gap_ms / 1000, gap_ms % 1000 * 1000000}, NULL);
		double t0 = backend_now();
		fwd(w, ws, (const void *const *)in, out, pool);
		wall += backend_now() - t0;
	}
	rt_threads_profile(pool, NULL, 0);
	int nt = rt_threads_count(pool);
	/* the peak of the target's kernel set: the widest vectors its code uses */
	double (*peak_of)(int) = (double (*)(int))backend_jit_kernel(j.jit, "rt_peak_gflops");
	double peak = peak_of ? peak_of(nt) : rt_peak_gflops(nt), gbs = rt_read_gbs(nt);

	double total = 0, flops = 0;
	op_total ops[IR_OP_COUNT] = {{0}};
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		double f = 2.0 * (double)ir_node_macs(g, n);
		total += node_s[i];
		flops += f;
		ops[n->op].count += node_s[i] > 0 || f > 0;
		ops[n->op].seconds += node_s[i];
		ops[n->op].flops += f;
	}
	if (total <= 0)
		total = 1e-12;
	printf("netcc profile: %s, batch %lld, %s, %d thread%s, -O%d, target %s; %lld runs after "
	       "3 warm-up",
	       g->name, (long long)g->batch, j.train ? "training step" : "inference", nt,
	       nt == 1 ? "" : "s", j.opt_level, target.name, (long long)runs);
	if (gap_ms)
		printf(", each after a %lld ms pause", (long long)gap_ms);
	printf("\n");
	printf("peak: %.1f GFLOP/s (FMA loop on %d thread%s, measured now)\n", peak, nt,
	       nt == 1 ? "" : "s");
	printf("memory: %.1f GB/s (reading on %d thread%s, measured now)\n\n", gbs, nt,
	       nt == 1 ? "" : "s");
	printf("%-40s %-18s %-18s %8s %9s %8s %6s %6s\n", "node", "op", "shape", "GFLOP", "ms/run",
	       "GFLOP/s", "%peak", "%time");
	/* Every node that costs a measurable share, or all with --all. */
	bool all = opts_flag(&o, "all");
	int hidden = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (node_s[i] <= 0 && n->op != IR_OP_CONV)
			continue;
		if (!all && node_s[i] < 0.005 * total) {
			hidden++;
			continue;
		}
		char sb[96];
		print_row(tail_name(n->name), ir_ops[n->op].name,
		          ir_shape_str(&n->shape, sb, sizeof sb), 2.0 * (double)ir_node_macs(g, n),
		          node_s[i], (double)runs, total, peak);
	}
	if (hidden)
		printf("(%d nodes under 0.5%% of the time each not shown; --all shows them)\n",
		       hidden);
	printf("\nby operator:\n");
	for (int op = 0; op < IR_OP_COUNT; op++) {
		if (!ops[op].count)
			continue;
		char what[48];
		snprintf(what, sizeof what, "%d node%s", ops[op].count,
		         ops[op].count == 1 ? "" : "s");
		print_row(what, ir_ops[op].name, "", ops[op].flops, ops[op].seconds, (double)runs,
		          total, peak);
	}
	double ms = wall / (double)runs * 1e3, gf = flops * (double)runs / wall * 1e-9;
	printf("\ntotal: %.4f GFLOP in %.3f ms/run (%.3f ms in the nodes): %.1f GFLOP/s, %.0f%% "
	       "of peak\n",
	       flops * 1e-9, ms, total / (double)runs * 1e3, gf, 100 * gf / peak);
	rc = 0;
done:
	for (int i = 0; i < IR_MAX_IO; i++) {
		free(in[i]);
		free(out[i]);
	}
	rt_threads_destroy(pool);
	backend_jit_free(j.jit);
	free(raw);
	free(w);
	free(ws);
	free(node_s);
	ir_graph_free(g);
	return rc;
}
