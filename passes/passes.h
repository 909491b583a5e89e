/* passes.h: graph transformations, run as one pipeline.
 *
 *   passes_options o = {.opt_level = 2, .dump_after = "fold_batchnorm"};
 *   // .mode = PASSES_MODE_TRAINING: autodiff first, g becomes a training step
 *   passes_run(g, &o);        // g is rewritten in place and memory-planned
 *   printf("arena %lld\n", (long long)g->plan.arena_bytes);
 *
 * Every pass keeps the graph valid (ir_graph_verify runs after each) and
 * can print it afterwards: --dump-after=PASS, or "all".
 */
#ifndef NETCC_PASSES_H
#define NETCC_PASSES_H

#include "ir.h"
#include "runtime.h"

typedef enum passes_mode {
	PASSES_MODE_INFERENCE, /* the model as written: a forward */
	PASSES_MODE_TRAINING,  /* autodiff first: one SGD step (backward and update) */
} passes_mode;

typedef struct passes_options {
	passes_mode mode;
	int opt_level;          /* 0: plan only; 2: everything */
	const char *dump_after; /* a pass name, "all", or NULL */
	FILE *dump;             /* where dumps go; stdout if NULL */
	bool no_winograd;       /* keep every convolution on the plain kernel */
} passes_options;

void passes_run(ir_graph *g, const passes_options *o);
/* Names of the passes, in pipeline order, NULL-terminated (for --help and
 * did-you-mean on --dump-after). */
extern const char *const passes_names[];

/* Each intermediate its own buffer: what -O0 runs, and the baseline the
 * planner's figures are compared with. */
void plan_naive(ir_graph *g);

/* The passes, in pipeline order. */
void fold_batchnorm(ir_graph *g);
void fuse_epilogue(ir_graph *g);
/* How each conv, conv gradient and linear layer runs (node->algo), from
 * an ordered table (passes/algorithm.c); the weight transforms that
 * algorithm reads become nodes (winograd_weight, gemm_weight, ...). */
void choose_algorithms(ir_graph *g, const passes_options *o);
/* for the algorithm pass: op(old->in[k]), or op(w, gamma, var) straight
 * from BatchNorm-folded weights, into *out (tile: Winograd's m, or 0);
 * false where it would be over the per-tensor limit, and the caller then
 * keeps old as the model wrote it */
bool passes_weight_node(ir_rewriter *rw, const ir_node *nodes, const ir_node *old, int k, ir_op op,
                        int tile, ir_node *out);
void simplify_graph(ir_graph *g);
/* Liveness, in-place reuse, and greedy-by-size offsets in one arena. */
void plan_memory(ir_graph *g);

/* Rewrites an inference graph into one training step: inputs (x, labels,
 * lr), outputs (loss, logits), SGD updates of every trained parameter. */
void autodiff_training_graph(ir_graph *g);
/* For tests: the same forward with batch statistics and the backward from
 * a seed gradient, a new input "dy" of the output's shape. grad_node[id]
 * (grad_off[id]) give the gradient of every forward node id: its node and
 * where it starts in that node; -1 where none. Both malloc'd. */
void autodiff_gradients(ir_graph *g, int **grad_node, int64_t **grad_off);

/* Decides which nodes run at weight preparation, lays out the raw and
 * prepared weights, and binds inputs and outputs to the caller's buffers. */
void plan_roles(ir_graph *g);

/* A conv or conv gradient node's geometry, and a pooling node's window,
 * as the runtime's kernels take them (passes/geometry.c). */
rt_conv passes_conv_geometry(const ir_node *nodes, const ir_node *n);
rt_pool passes_pool_geometry(const ir_node *nodes, const ir_node *n);

/* Bytes of scratch a node's kernel needs while it runs: its algorithm's. */
int64_t plan_scratch_bytes(const ir_graph *g, const ir_node *n);

#endif
