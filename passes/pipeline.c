/* The compile pipeline, as a table of passes (QBE style): each rewrites the
 * graph in place, is verified, and can be dumped. One table serves every
 * command: a training step is the inference pipeline with autodiff first,
 * so that fusion, the Winograd choice and memory planning see the whole
 * step as one graph. */
#include <string.h>

#include "passes.h"

typedef enum pass_when {
	PASS_WHEN_TRAINING,   /* autodiff: only where the step is trained */
	PASS_WHEN_OPTIMISING, /* -O2 */
	PASS_WHEN_ALWAYS,
	PASS_WHEN_O0, /* -O0's planner */
} pass_when;

typedef struct pass {
	const char *name;
	void (*run)(ir_graph *g);
	void (*run_with)(ir_graph *g, const passes_options *o); /* or this */
	pass_when when;
} pass;

static const pass pipeline[] = {
    {"autodiff", autodiff_training_graph, NULL, PASS_WHEN_TRAINING},
    {"fold_batchnorm", fold_batchnorm, NULL, PASS_WHEN_OPTIMISING},
    {"fuse_epilogue", fuse_epilogue, NULL, PASS_WHEN_OPTIMISING},
    {"algorithm", NULL, choose_algorithms, PASS_WHEN_ALWAYS},
    {"simplify", simplify_graph, NULL, PASS_WHEN_OPTIMISING},
    {"plan", plan_memory, NULL, PASS_WHEN_OPTIMISING},
    {"plan", plan_naive, NULL, PASS_WHEN_O0},
};
enum { N_PASSES = sizeof pipeline / sizeof pipeline[0] };

const char *const passes_names[] = {
    "autodiff", "fold_batchnorm", "fuse_epilogue", "algorithm", "simplify", "plan", NULL};

static void after(ir_graph *g, const passes_options *o, const char *name)
{
	ir_graph_verify(g);
	if (o->dump_after && (!strcmp(o->dump_after, "all") || !strcmp(o->dump_after, name))) {
		FILE *f = o->dump ? o->dump : stdout;
		fprintf(f, "# after %s\n", name);
		ir_graph_print(g, f);
	}
}

static bool pass_runs(const pass *p, const passes_options *o)
{
	switch (p->when) {
	case PASS_WHEN_TRAINING:
		return o->mode == PASSES_MODE_TRAINING;
	case PASS_WHEN_OPTIMISING:
		return o->opt_level > 0;
	case PASS_WHEN_ALWAYS:
		return true;
	case PASS_WHEN_O0:
		return o->opt_level == 0;
	}
	return false;
}

void passes_run(ir_graph *g, const passes_options *o)
{
	for (int i = 0; i < N_PASSES; i++) {
		const pass *p = &pipeline[i];
		if (!pass_runs(p, o))
			continue;
		if (p->run)
			p->run(g);
		else
			p->run_with(g, o);
		after(g, o, p->name);
	}
}
