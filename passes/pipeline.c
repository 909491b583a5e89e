/* The compile pipeline, as a list of passes (QBE style): each rewrites the
 * graph in place, is verified, and can be dumped. */
#include <string.h>

#include "passes.h"

const char *const passes_names[] = {"fold_batchnorm", "fuse_epilogue", "winograd", "prepack",
                                    "simplify",       "plan",          NULL};

static void after(ir_graph *g, const passes_options *o, const char *name)
{
	ir_graph_verify(g);
	if (o->dump_after && (!strcmp(o->dump_after, "all") || !strcmp(o->dump_after, name))) {
		FILE *f = o->dump ? o->dump : stdout;
		fprintf(f, "# after %s\n", name);
		ir_graph_print(g, f);
	}
}

void passes_run(ir_graph *g, const passes_options *o)
{
	if (o->opt_level == 0) {
		plan_naive(g);
		after(g, o, "plan");
		return;
	}
	fold_batchnorm(g);
	after(g, o, "fold_batchnorm");
	fuse_epilogue(g);
	after(g, o, "fuse_epilogue");
	if (!o->no_winograd)
		select_winograd(g);
	after(g, o, "winograd");
	prepack_weights(g);
	after(g, o, "prepack");
	simplify_graph(g);
	after(g, o, "simplify");
	plan_memory(g);
	after(g, o, "plan");
}
