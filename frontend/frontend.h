/* frontend.h: from a model file to a verified IR graph.
 *
 *   ir_graph *g = frontend_graph_load("models/resnet50.nn", 1);  // batch 1
 *   if (!g) return 1;          // the error was printed: file:line:col, line, caret
 *   ir_graph_print(g, stdout);
 *   ir_graph_free(g);
 *
 * The graph owns a copy of the source text, so diagnostics from later
 * phases can still point into it.
 */
#ifndef NETCC_FRONTEND_H
#define NETCC_FRONTEND_H

#include "ir.h"

/* batch binds the named first dimension (N); FRONTEND_BATCH_TRAIN takes it
 * from the model's train section (128 if it has none). */
enum { FRONTEND_BATCH_TRAIN = 0, FRONTEND_MAX_BATCH = 65536 };

ir_graph *frontend_graph_load(const char *path, int64_t batch);
ir_graph *frontend_graph_parse(const char *name, const char *text, size_t len, int64_t batch);

#endif
