/* ir.h: netcc's graph, its operators, and the shared diagnostics and arenas.
 *
 *   ir_graph *g = ir_graph_new("tiny", 1);
 *   ir_node proto = ir_node_proto(IR_OP_CONV, &loc);
 *   proto.out = 16, proto.kernel = 3, proto.pad = 1;
 *   int x = ir_input_add(g, "x", ir_shape4(1, 3, 32, 32), &loc);
 *   int y = ir_op_build(g, &proto, &x, "conv0");   // creates conv0.weight, conv0.bias
 *   ir_output_add(g, "y", y);
 *   ir_graph_verify(g);
 *   ir_graph_print(g, stdout);
 *   ir_graph_free(g);
 *
 * Nodes are flat structs in one array, in topological order, referring to
 * each other by index. Errors anywhere in the compiler go through
 * diag_error_at(), which prints `file:line:col: error: ...`, the source line
 * and a caret, then unwinds to the innermost diag_trap (or exits with 1).
 */
#ifndef NETCC_IR_H
#define NETCC_IR_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- arenas: allocations with a phase's lifetime ------------------------ */

typedef struct arena_chunk arena_chunk;
typedef struct arena {
	arena_chunk *head;
	size_t bytes; /* allocated so far, for limits and reports */
} arena;

void *arena_alloc(arena *a, size_t size); /* zeroed, 16-byte aligned; diag_fatal on OOM */
void *arena_array(arena *a, size_t count, size_t size); /* overflow-checked */
char *arena_strdup(arena *a, const char *s);
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(arena *a);

/* String keys (not copied: they must outlive the map) to non-negative ints. */
typedef struct strmap_entry {
	const char *key;
	int value;
} strmap_entry;

typedef struct strmap {
	strmap_entry *slots;
	int cap, n;
} strmap;

int strmap_get(const strmap *m, const char *key); /* -1 if absent */
void strmap_put(strmap *m, arena *a, const char *key, int value);

/* ---- diagnostics --------------------------------------------------------- */

typedef struct diag_src {
	const char *name; /* as given on the command line */
	const char *text;
	size_t len;
} diag_src;

typedef struct diag_chain diag_chain;

typedef struct diag_loc {
	const diag_src *src;     /* NULL: no source position */
	int line, col;           /* 1-based; col counts bytes */
	uint32_t line_off;       /* offset of the line's first byte */
	const diag_chain *chain; /* block calls that led here, innermost first */
} diag_loc;

struct diag_chain {
	diag_loc call; /* where the block was called */
	const char *block;
	int depth;
};

typedef struct diag_trap {
	jmp_buf jb;
	struct diag_trap *prev;
} diag_trap;

/* Errors unwind to the innermost trap; without one they exit(1). Use as
 *   diag_trap t; diag_trap_push(&t);
 *   if (setjmp(t.jb) == 0) { ...; diag_trap_pop(&t); } else { failed: trap is popped } */
void diag_trap_push(diag_trap *t);
void diag_trap_pop(diag_trap *t);
void diag_set_output(FILE *f); /* default stderr */
FILE *diag_output(void);

_Noreturn void diag_error_at(const diag_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
_Noreturn void diag_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_note_at(const diag_loc *loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A note printed right after the next error, such as "first defined here". */
void diag_note_next(const diag_loc *loc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void diag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* file:line:col: warning: ..., the line, a caret and the block calls */
void diag_warn_at(const diag_loc *loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int diag_warning_count(void); /* warnings reported so far (for -Werror) */
/* The closest candidate by edit distance, or NULL if none is close enough. */
const char *diag_suggest(const char *name, const char *const *cands, int n);

/* ---- shapes -------------------------------------------------------------- */

/* The fuzz build lowers the node limit as it does FE_STEP_LIMIT. */
#ifndef IR_NODE_LIMIT
#define IR_NODE_LIMIT (1 << 20)
#endif
enum { IR_MAX_RANK = 4, IR_MAX_INPUTS = 8, IR_MAX_IO = 16, IR_MAX_NODES = IR_NODE_LIMIT };
#define IR_MAX_ELEMS ((int64_t)1 << 31) /* per tensor; see docs/language.md */

typedef struct ir_shape {
	int rank;
	int64_t d[IR_MAX_RANK];
} ir_shape;

ir_shape ir_shape4(int64_t n, int64_t c, int64_t h, int64_t w);
ir_shape ir_shape2(int64_t n, int64_t c);
ir_shape ir_shape1(int64_t n);
int64_t ir_shape_count(const ir_shape *s);
/* Elements per index of the first dimension (a weight's fan-in: c * k * k
 * of [oc, c, k, k], in of [out, in]); as ir_shape_count on the rest */
int64_t ir_shape_row(const ir_shape *s);
bool ir_shape_eq(const ir_shape *a, const ir_shape *b);
/* "[1,64,56,56]" into buf, returns buf */
char *ir_shape_str(const ir_shape *s, char *buf, size_t len);
/* rank dimensions as "[2,3]", of any rank (a file's tensor may exceed IR_MAX_RANK) */
char *ir_dims_str(const int64_t *d, int rank, char *buf, size_t len);

/* ---- operators ----------------------------------------------------------- */

enum { OPF_USER = 1, OPF_EFFECT = 2, OPF_EWISE = 4, OPF_ALGO = 8, OPF_INPLACE = 16 };

typedef enum ir_op {
#define OP(e, name, args, attrs, flags, grad) IR_OP_##e,
#include "ops.def"
	IR_OP_COUNT
} ir_op;

typedef struct ir_op_info {
	const char *name;
	int args;
	const char *attrs;
	int flags;
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];
int ir_op_lookup(const char *name); /* -1 if unknown */

typedef enum ir_attr_type { IR_ATTR_INT, IR_ATTR_BOOL, IR_ATTR_FLOAT } ir_attr_type;

typedef struct ir_attr_info {
	const char *name;
	size_t offset; /* of the field in ir_node: int64_t, bool or double by type */
	ir_attr_type type;
} ir_attr_info;

extern const ir_attr_info ir_attrs[]; /* NULL-terminated */
const ir_attr_info *ir_attr_lookup(const char *name);

/* One entry of an op's attribute list, pointing into ops.def's string. */
typedef struct ir_attr_spec {
	const char *key, *def; /* def NULL: required */
	int key_len, def_len;
} ir_attr_spec;

enum { IR_MAX_ATTRS = 16 };
int ir_op_attr_specs(ir_op op, ir_attr_spec *out, int max);
/* The field of ir_node an op's attribute spec names; NULL if none. */
const ir_attr_info *ir_attr_spec_info(const ir_attr_spec *s);

/* Where a value lives once memory is planned (passes/plan.c). Params are
 * read from the raw weights; what the compiled code reads lives in the
 * prepared weights (params it uses, and values computed from params alone). */
typedef enum ir_mem {
	IR_MEM_NONE,
	IR_MEM_ARENA,   /* offset bytes into the instance's workspace */
	IR_MEM_WEIGHTS, /* offset bytes into the prepared weights */
	IR_MEM_INPUT,   /* the caller's input io */
	IR_MEM_OUTPUT,  /* the caller's output io */
} ir_mem;

typedef enum ir_param_kind {
	IR_PARAM_WEIGHT, /* trained */
	IR_PARAM_BUFFER, /* carried state, e.g. BatchNorm running statistics */
	IR_PARAM_STATE,  /* the optimiser's: momentum buffers */
} ir_param_kind;

/* How a parameter starts (ir_graph_init_he). */
typedef enum ir_init {
	IR_INIT_HE, /* N(0, 2 / fan_in), fan_in = the count per output row */
	IR_INIT_ZERO,
	IR_INIT_ONE,
} ir_init;

struct ir_node;

/* A parameter an op creates (ops.def's PARAM). */
typedef struct ir_param_rule {
	ir_op op;
	const char *leaf; /* PATH.leaf */
	ir_param_kind kind;
	ir_init init;
	bool (*when)(const struct ir_node *n);
	ir_shape (*shape)(const struct ir_node *n, const ir_shape *x);
} ir_param_rule;

/* The algorithm a conv, conv_grad_input, conv_grad_weight or linear node
 * runs by, chosen by the algorithm pass and passed to the kernel, which
 * never chooses for itself. */
typedef enum ir_algo {
	IR_ALGO_GEMM,     /* the GEMM on the weights as they are (linear: as B) */
	IR_ALGO_PACKED,   /* the GEMM on weights packed once: in[1] a gemm_weight */
	IR_ALGO_DIRECT,   /* runtime/kernels/conv_direct.c: in[1] a direct_weight, or as they are */
	IR_ALGO_WINOGRAD, /* F(tile x tile, 3x3): in[1] a winograd_weight(_t) */
} ir_algo;
extern const char *const ir_algo_names[]; /* "gemm", "packed", "direct", "winograd" */

typedef struct ir_node {
	ir_op op;
	int n_in;
	int in[IR_MAX_INPUTS];
	ir_shape shape;
	const char *name; /* params: the full hierarchical name; ops: the call path */
	diag_loc loc;

	/* attributes (ops.def's ATTR list) */
	int64_t out, kernel, stride, pad, before, after, tile;
	bool bias;
	double eps, momentum;

	/* set by passes: fused epilogues and variants */
	bool relu;    /* conv, linear, add, batchnorm: relu on the result */
	int residual; /* conv: in[residual] is added before the relu; 0 = none */
	bool flat;    /* global_avgpool: [N, C] instead of [N, C, 1, 1] */
	/* how a conv, its gradients or a linear layer runs (passes/algorithm.c);
	 * IR_ALGO_WINOGRAD's output tile is in tile */
	ir_algo algo;

	/* training */
	bool i32;            /* an input of int32 values (labels) */
	double weight_decay; /* sgd */
	int64_t goff;        /* sgd: where this param's gradient starts in g */
	int reduce_left;     /* allreduce: allreduce nodes after this one */

	/* params */
	ir_param_kind pkind;
	float *data;        /* NULL until weights are attached */
	int64_t raw_offset; /* bytes into the raw weights */

	/* memory plan */
	bool prep; /* computed from params alone: runs when weights load */
	ir_mem mem;
	int io;
	int64_t offset;
	int64_t scratch, scratch_bytes; /* arena bytes the kernel needs while it runs */
} ir_node;

/* The k-th parameter (from 0, after its tensor args) that op node n
 * creates, by ops.def's PARAM rules; NULL past the last. */
const ir_param_rule *ir_param_rule_of(const ir_node *n, int k);

/* ---- training configuration (the model file's train section) ------------- */

typedef enum ir_sched {
	IR_SCHED_NONE,
	IR_SCHED_STEPS,   /* multiply by factor at the listed epochs */
	IR_SCHED_PLATEAU, /* multiply by factor when the training loss stalls */
} ir_sched;

enum { IR_MAX_STEPS = 16 };

typedef struct ir_train {
	bool present;
	const char *loss; /* "softmax_cross_entropy" */
	double lr, momentum, weight_decay;
	ir_sched sched;
	int n_steps;
	int64_t steps[IR_MAX_STEPS];
	double factor;
	int64_t patience, warmup, batch, epochs;
	const char *init; /* "he" */
	int sync_ranks;   /* > 1: BatchNorm's statistics span that many processes */
} ir_train;

void ir_train_defaults(ir_train *t);

/* ---- graphs -------------------------------------------------------------- */

typedef struct ir_io {
	const char *name;
	int node;
	diag_loc loc;
} ir_io;

typedef struct ir_plan {
	bool done;
	int64_t arena_bytes, raw_bytes, weight_bytes;
	int64_t lower_bound_bytes, naive_bytes;
} ir_plan;

typedef struct ir_graph {
	arena arena; /* names, chains, weight data: everything the graph owns */
	ir_node *nodes;
	int n_nodes, cap_nodes;
	ir_io inputs[IR_MAX_IO], outputs[IR_MAX_IO];
	int n_inputs, n_outputs;
	const char *name;
	int64_t batch;
	ir_train train;
	strmap params; /* param names to node ids */
	ir_plan plan;
} ir_graph;

ir_graph *ir_graph_new(const char *name, int64_t batch);
void ir_graph_free(ir_graph *g);

/* A node with op and location set and the op's attribute defaults filled in. */
ir_node ir_node_proto(ir_op op, const diag_loc *loc);
/* Appends a copy of n (no shape inference); returns its index. */
int ir_node_append(ir_graph *g, const ir_node *n);
int ir_input_add(ir_graph *g, const char *name, ir_shape shape, const diag_loc *loc);
int ir_param_add(ir_graph *g, const char *name, ir_param_kind kind, ir_shape shape,
                 const diag_loc *loc);
void ir_output_add(ir_graph *g, const char *name, int node, const diag_loc *loc);
int ir_param_find(const ir_graph *g, const char *name); /* node id, or -1 */
/* Builds a user operator: checks the attributes and the inputs' shapes
 * (errors at proto->loc), creates the parameters the op owns named
 * "<path>.weight" and so on, infers the shape, appends. */
int ir_op_build(ir_graph *g, const ir_node *proto, const int *args, const char *path);
/* Runs the op's shape rule on n (inputs already in g); diag_error_at on misuse. */
void ir_shape_infer(const ir_graph *g, ir_node *n);
/* The shape, as ir_shape_infer, but false instead of an error where it has
 * IR_MAX_ELEMS elements or more: for passes choosing between a transform
 * whose result may be larger than its input (Winograd's weights) and
 * leaving the node as the model wrote it. */
bool ir_shape_fits(const ir_graph *g, ir_node *n);

int64_t ir_node_macs(const ir_graph *g, const ir_node *n);
int64_t ir_node_param_count(const ir_graph *g, const ir_node *n); /* trainable, owned */

/* Attaches a float array to every param (He initialisation, see ir/init.c). */
void ir_graph_init_he(ir_graph *g, uint64_t seed);
/* Total bytes of params; count_only_weights: skip buffers. */
int64_t ir_graph_param_bytes(const ir_graph *g);

void ir_graph_verify(const ir_graph *g); /* diag_error_at on the first broken invariant */
/* Warns (diag_warn_at) where a value no output reads is computed, and of
 * inputs no output reads; how many warnings. */
int ir_graph_warn_unused(const ir_graph *g);

/* Rebuilds g's node array: fn is called for every old node in order and
 * returns the new id the old one maps to, emitting nodes with
 * ir_rewrite_emit (inputs already mapped) or reusing earlier ones; -1
 * drops the node (nothing may use it). Outputs and param names follow. */
typedef struct ir_rewriter ir_rewriter;
typedef int ir_rewrite_fn(ir_rewriter *rw, const ir_node *old, int old_id, void *ctx);
void ir_rewrite(ir_graph *g, ir_rewrite_fn *fn, void *ctx);
int ir_rewrite_emit(ir_rewriter *rw, const ir_node *n);   /* n's inputs are new ids */
int ir_rewrite_map(const ir_rewriter *rw, int old_id);    /* new id of an old node */
int ir_rewrite_copy(ir_rewriter *rw, const ir_node *old); /* old node, inputs mapped */
const ir_graph *ir_rewrite_graph(const ir_rewriter *rw);  /* the graph being built */

/* Users of each node: counts[i] is how many inputs (and outputs) read i. */
int *ir_use_counts(const ir_graph *g);
void ir_graph_print(const ir_graph *g, FILE *out);
void ir_node_print(const ir_graph *g, int id, FILE *out);

#endif
