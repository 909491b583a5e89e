/* The compile pipeline, as a list of passes (QBE style): each rewrites the
 * graph in place, is verified, and can be dumped. */
#include <string.h>

#include "passes.h"

const char *const passes_names[] = {"plan", NULL};

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
	plan_naive(g);
	after(g, o, "plan");
}
