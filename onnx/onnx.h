/* onnx.h: ONNX models brought into netcc (netcc import; compile and run of
 * a .onnx file), and netcc's models written as ONNX (netcc export).
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
 *
 *   onnx_export ex;
 *   onnx_export_graph(g, &(onnx_export_options){.dynamic_batch = true}, &ex);
 *   fwrite(ex.data, 1, ex.len, out);        // an ONNX model, opset 13
 *   onnx_export_free(&ex);
 *
 * The exporter takes the graph as the front end makes it (user operators,
 * BatchNorm unfolded, weights attached) and writes each node as the ONNX
 * operator that computes it, the parameters as initializers under their
 * own names.
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

/* The name netcc import gives the parameter PyTorch calls torch_name: its
 * module path as one identifier, the leaf kept ("layer1.0.conv1.weight" ->
 * "layer1_0_conv1.weight"), in a. Where two layers would get one name,
 * import numbers the second (_2), which this cannot know. */
const char *onnx_param_name(arena *a, const char *torch_name);

/* ---- export --------------------------------------------------------------- */

typedef struct onnx_export_options {
	bool dynamic_batch; /* dimension 0 of inputs and outputs is "N", not the graph's batch */
	const char *producer_version; /* the model's producer_version, or NULL */
	const char *doc;              /* its doc_string, or NULL */
} onnx_export_options;

typedef struct onnx_export {
	arena arena;   /* owns data, and all the export built */
	uint8_t *data; /* the serialised ModelProto */
	size_t len;
	int n_nodes, n_initializers;
} onnx_export;

/* The opset and IR version export writes (ONNX 1.8's pair). */
enum { ONNX_EXPORT_OPSET = 13, ONNX_EXPORT_IR_VERSION = 7 };

/* g as an ONNX model into ex. A node ONNX cannot express is an error at
 * its source position (diag_error_at: it unwinds to the caller's
 * diag_trap); onnx_export_free is then still the caller's to call. */
void onnx_export_graph(const ir_graph *g, const onnx_export_options *o, onnx_export *ex);
void onnx_export_free(onnx_export *ex);

#endif
