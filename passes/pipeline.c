/* The compile pipeline, as a table of passes (QBE style): each rewrites the
 * graph in place, is verified, and can be dumped. One table serves every
 * command: a training step is the inference pipeline with autodiff first,
 * so that fusion, the Winograd choice and memory planning see the whole
 * step as one graph. */
#include <string.h>

#include "passes.h"

typedef struct pass {
	const char *name;
	void (*run)(ir_graph *g);
	bool training_only; /* autodiff: only where the step is trained */
	bool optimising;    /* skipped at -O0 */
	bool winograd;      /* skipped with no_winograd */
} pass;

static const pass pipeline[] = {
    {"autodiff", autodiff_training_graph, true, false, false},
    {"fold_batchnorm", fold_batchnorm, false, true, false},
    {"fuse_epilogue", fuse_epilogue, false, true, false},
    {"winograd", select_winograd, false, true, true},
    {"prepack", prepack_weights, false, true, false},
    {"simplify", simplify_graph, false, true, false},
    {"plan", plan_memory, false, true, false},
    {"plan", plan_naive, false, false, false}, /* -O0's planner */
};
enum { N_PASSES = sizeof pipeline / sizeof pipeline[0] };

const char *const passes_names[] = {"autodiff", "fold_batchnorm", "fuse_epilogue", "winograd",
                                    "prepack",  "simplify",       "plan",          NULL};

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
	if (p->training_only)
		return o->mode == PASSES_MODE_TRAINING;
	if (p->run == plan_naive)
		return o->opt_level == 0;
	return o->opt_level > 0 && p->optimising;
}

void passes_run(ir_graph *g, const passes_options *o)
{
	for (int i = 0; i < N_PASSES; i++) {
		const pass *p = &pipeline[i];
		if (!pass_runs(p, o))
			continue;
		/* a skipped Winograd choice still shows where it would be */
		if (!(p->winograd && o->no_winograd))
			p->run(g);
		after(g, o, p->name);
	}
}
