/* netcc eval: a trained model's loss and accuracy on a split of an IDX
 * dataset, with the code netcc compile would generate (compiled in memory
 * by the ORC JIT) and BatchNorm's running statistics from the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "driver.h"
#include "frontend.h"
#include "passes.h"
#include "runtime.h"

/* without a train section to give one: the test split divides by it */
enum { EVAL_BATCH_DEFAULT = 100 };

typedef struct evaluator {
	ir_graph *g;
	backend_target target;
	backend_jit *jit;
	dataset d;
	metrics m;
	int64_t classes;
	float *raw, *w, *x, *logits;
	void *ws;
	int32_t *labels;
	int64_t *idx;
	rt_threads *pool;
	char err[512];
} evaluator;

static void evaluator_free(evaluator *e)
{
	backend_jit_free(e->jit);
	ir_graph_free(e->g);
	dataset_free(&e->d);
	metrics_free(&e->m);
	free(e->raw);
	free(e->w);
	free(e->x);
	free(e->logits);
	free(e->ws);
	free(e->labels);
	free(e->idx);
	rt_threads_destroy(e->pool);
}

/* The train section's batch, else EVAL_BATCH_DEFAULT: the frontend falls
 * back to its own default without one, so such a model is read again. */
static ir_graph *model_load(const opts *o, int *status)
{
	ir_graph *g = driver_model_load(o, FRONTEND_BATCH_TRAIN, status);
	if (g && !opts_str(o, "batch", NULL) && !g->train.present) {
		ir_graph_free(g);
		g = driver_model_load(o, EVAL_BATCH_DEFAULT, status);
	}
	return g;
}

static int eval_build(void *ctx)
{
	evaluator *e = ctx;
	passes_run(e->g, &(passes_options){.opt_level = 2});
	e->jit =
	    backend_jit_compile(e->g, &e->target, 2, "netcc_eval", false, e->err, sizeof e->err);
	return e->jit ? 0 : 1;
}

/* The compiled code with its prepared weights, and a batch's buffers. */
static int eval_prepare(evaluator *e)
{
	const ir_graph *g = e->g;
	size_t b = (size_t)g->batch;
	e->raw = calloc((size_t)g->plan.raw_bytes / 4 + 1, sizeof(float));
	e->w = calloc((size_t)g->plan.weight_bytes / 4 + 1, sizeof(float));
	e->ws = backend_workspace_new(g);
	e->pool = rt_threads_create(backend_threads());
	e->x = malloc(b * e->d.image_bytes * sizeof *e->x);
	e->logits = malloc(b * (size_t)e->classes * sizeof *e->logits);
	e->labels = malloc(b * sizeof *e->labels);
	e->idx = malloc(b * sizeof *e->idx);
	if (!e->raw || !e->w || !e->ws || !e->pool || !e->x || !e->logits || !e->labels ||
	    !e->idx || metrics_init(&e->m, e->classes) != 0) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	backend_raw_weights(g, e->raw);
	backend_jit_prepare(e->jit)(e->raw, e->w);
	return 0;
}

/* The split in batches of the compiled size, as the trainer's test pass
 * takes it: the last batch is padded with copies of its last image, whose
 * rows are not counted. */
static void eval_batches(evaluator *e)
{
	int64_t n = e->d.n, b = e->g->batch;
	backend_forward_fn *forward = backend_jit_forward(e->jit);
	const void *in[1] = {e->x};
	float *out[1] = {e->logits};
	for (int64_t at = 0; at < n; at += b) {
		int64_t real = n - at < b ? n - at : b;
		for (int64_t i = 0; i < b; i++)
			e->idx[i] = at + (i < real ? i : real - 1);
		dataset_batch(&e->d, e->idx, b, e->x, e->labels);
		forward(e->w, e->ws, in, out, e->pool);
		metrics_batch_add(&e->m, e->logits, e->labels, real);
	}
}

static int usage_check(const opts *o, const char **split)
{
	*split = opts_str(o, "split", "t10k");
	if (strcmp(*split, "t10k") != 0 && strcmp(*split, "train") != 0) {
		fprintf(stderr, "netcc: error: --split %s: expected t10k or train\n", *split);
		return 2;
	}
	if (!opts_str(o, "weights", NULL) && !driver_model_onnx(o)) {
		fprintf(stderr, "netcc: error: eval needs --weights W.safetensors (netcc train "
		                "writes model.safetensors)\n");
		return 2;
	}
	if (!opts_str(o, "data", NULL)) {
		fprintf(stderr, "netcc: error: eval needs --data fashion-mnist or --data DIR\n");
		return 2;
	}
	return 0;
}

static int eval_main(evaluator *e, const opts *o)
{
	const char *split;
	int status = usage_check(o, &split);
	bool ok = true;
	int64_t limit = opts_int(o, "limit", 0, 1, INT64_MAX, &ok);
	if (status || !ok)
		return 2;
	if (!(e->g = model_load(o, &status)))
		return status;
	const char *weights = opts_str(o, "weights", NULL), *data = opts_str(o, "data", NULL);
	int64_t chw[3];
	if (driver_classifier_check(e->g, "eval", o->pos[0], chw, &e->classes) != 0 ||
	    (weights && backend_weights_load(e->g, weights, false) != 0) ||
	    dataset_load(&e->d, data, split, chw, e->classes, limit) != 0)
		return 1;
	double t0 = backend_now();
	if (driver_guarded(eval_build, e) != 0) {
		if (e->err[0])
			fprintf(stderr, "netcc: error: %s\n", e->err);
		return 1;
	}
	if (eval_prepare(e) != 0)
		return 1;
	double t1 = backend_now();
	eval_batches(e);
	eval_summary s = {.model = e->g->name,
	                  .split = split,
	                  .data = data,
	                  .weights = weights ? weights : o->pos[0],
	                  .target = e->target.name,
	                  .batch = e->g->batch,
	                  .seconds = backend_now() - t1,
	                  .compile_seconds = t1 - t0,
	                  .m = &e->m};
	if (opts_flag(o, "json"))
		return eval_report_json(&s, stdout);
	eval_report_text(&s, stdout);
	return 0;
}

int cmd_eval(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "eval");
	if (rc)
		return rc < 0 ? 0 : rc;
	evaluator e = {0};
	if (driver_target(&o, &e.target, true) != 0)
		return 2;
	rc = eval_main(&e, &o);
	evaluator_free(&e);
	return rc;
}
