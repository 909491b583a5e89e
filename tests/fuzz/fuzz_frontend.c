/* libFuzzer: any bytes as a model file end in a graph or a diagnostic. */
#include <stdio.h>

#include "frontend.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static FILE *sink;
	if (!sink)
		sink = fopen("/dev/null", "w");
	diag_set_output(sink);
	ir_graph *g = frontend_graph_parse("fuzz.nn", (const char *)data, size, 2);
	ir_graph_free(g);
	return 0;
}
