/* backend.h: executing graphs.
 *
 *   float *in[1] = {x}, *out[1] = {y};
 *   if (interp_run(g, (const float *const *)in, out, err, sizeof err) != 0)
 *           fprintf(stderr, "%s\n", err);
 *
 * interp_run is the reference executor: plain C kernels, one buffer per
 * node, inference semantics (BatchNorm uses its running statistics).
 */
#ifndef NETCC_BACKEND_H
#define NETCC_BACKEND_H

#include "ir.h"

/* inputs and outputs in the graph's declared order; params must have data. */
int interp_run(const ir_graph *g, const float *const *inputs, float *const *outputs, char *err,
               size_t errlen);

#endif
