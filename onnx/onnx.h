/* onnx.h: ONNX models brought into netcc (netcc import; compile and run of
 * a .onnx file).
 *
 *   onnx_import im;
 *   if (onnx_import_file("m.onnx", "m", &im, stderr) != 0)
 *           return 1;                       // every error printed, exit 1
 *   fwrite(im.text, 1, im.len, out);        // the model as a .nn file
 *   ir_graph *g = onnx_import_graph(&im, "m.onnx", 1); // parsed, weights attached
 *   onnx_import_free(&im);
 *
 * The importer reads the file with protobuf-c, checks what netcc can run
 * (opset, operators and their attributes, float32, static shapes but the
 * batch) and translates the graph into the model language; the weights
 * come from the initializers, under the names the .nn file gives its
 * parameters. Errors name the node, its operator and the closest thing
 * netcc supports, as "netcc: error: PATH: ..." lines on errs (NULL: silent).
 */
#ifndef NETCC_ONNX_H
#define NETCC_ONNX_H

#include <stddef.h>
#include <stdio.h>

#include "ir.h"

typedef struct onnx_weight {
	const char *name; /* a parameter of the .nn file: "conv1.weight" */
	ir_shape shape;
	const float *data;
} onnx_weight;

typedef struct onnx_import {
	arena arena; /* owns everything below */
	char *text;  /* the .nn file, NUL-terminated */
	size_t len;
	int n_weights;
	onnx_weight *weights; /* in the order the .nn creates its parameters */
} onnx_import;

/* The largest .onnx file read: protobuf's own limit. */
#define ONNX_MAX_FILE_BYTES ((size_t)2 << 30)

/* The largest .nn text netcc reads (docs/language.md's limits). */
#define ONNX_MAX_TEXT ((size_t)16 << 20)

/* model names the .nn model (a C identifier; made one if it is not).
 * 0, or 1 after reporting every problem found; im is then empty. */
int onnx_import_bytes(const void *data, size_t len, const char *path, const char *model,
                      onnx_import *im, FILE *errs);
/* path "-" reads standard input. */
int onnx_import_file(const char *path, const char *model, onnx_import *im, FILE *errs);
/* The .nn text parsed at this batch, with the weights attached; NULL after
 * the front end reported an error (a bug of the importer's). */
ir_graph *onnx_import_graph(const onnx_import *im, const char *path, int64_t batch);
void onnx_import_free(onnx_import *im);

/* A model name from a path: its file name without the extension, made a
 * C identifier ("models/tiny-resnet.onnx" -> "tiny_resnet"), into buf. */
const char *onnx_model_name(const char *path, char *buf, size_t len);

#endif
