/* libFuzzer: any bytes as an ONNX file end in a model or in errors; a
 * model the importer accepts must be one the front end parses, with a
 * weight for every parameter (anything else aborts, showing the model). */
#include <stdio.h>
#include <stdlib.h>

#include "frontend.h"
#include "onnx.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static FILE *sink;
	if (!sink)
		sink = fopen("/dev/null", "w");
	diag_set_output(sink);
	onnx_import im;
	if (onnx_import_bytes(data, size, "fuzz.onnx", "fuzz", &im, NULL) != 0)
		return 0;
	ir_graph *g = onnx_import_graph(&im, "fuzz.onnx", 1);
	if (!g) {
		diag_set_output(stderr);
		fprintf(stderr, "the importer wrote a model the front end refuses:\n%s", im.text);
		ir_graph_free(onnx_import_graph(&im, "fuzz.onnx", 1));
		abort();
	}
	ir_graph_free(g);
	onnx_import_free(&im);
	return 0;
}
