/* backend.h: executing graphs, and compiling them through LLVM.
 *
 *   passes_run(g, &(passes_options){.opt_level = 2});
 *   backend_options o = {.name = "resnet18", .output = "out/libresnet18.so",
 *                        .emit = BACKEND_EMIT_SO, .embed_weights = true};
 *   if (backend_compile(g, &o) != 0) return 1;    // also writes out/resnet18.h
 *
 *   // or run it now, in memory (ORC JIT):
 *   backend_jit_run(g, inputs, outputs, err, sizeof err);
 *
 *   // or with the plain C reference kernels, one buffer per node:
 *   interp_run(g, inputs, outputs, err, sizeof err);
 */
#ifndef NETCC_BACKEND_H
#define NETCC_BACKEND_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "ir.h"

/* ---- the reference executor ---------------------------------------------- */

/* inputs and outputs in the graph's declared order; params must have data. */
int interp_run(const ir_graph *g, const float *const *inputs, float *const *outputs, char *err,
               size_t errlen);
/* Every node's value after a run (tests look inside): value[id]. */
typedef struct interp_values {
	int n;
	float **value;
	bool *owned;
} interp_values;
int interp_run_all(const ir_graph *g, const float *const *inputs, interp_values *v, char *err,
                   size_t errlen);
void interp_values_free(interp_values *v);
/* Fills the prepared weights of a planned graph (plan.weight_bytes), packed
 * for a register tile of mr rows: the target's kernel set's (kset.h). */
int interp_prepare(const ir_graph *g, int mr, float *prepared, char *err, size_t errlen);

/* ---- targets (backend/target.c; `netcc targets` lists them) --------------
 * What code is generated for: an LLVM triple, CPU and features, the
 * runtime's kernel set that its libraries link, and the CPU features a
 * library checks when it is created. */

typedef struct backend_target {
	const char *name;     /* as --target names it; "native" is resolved to one of these */
	const char *triple;   /* LLVM's */
	const char *cpu;      /* LLVM's CPU: the instructions allowed */
	const char *features; /* LLVM's, beyond the CPU's ("" for none) */
	const char *kset;     /* the kernel set (runtime/kset.h) */
	uint64_t needs;       /* RT_CPU_* a library checks at create */
	const char *cc;       /* the C compiler driver that links its libraries */
	const char *about;
	/* filled in by backend_target_get */
	const char *tune; /* LLVM's CPU to tune for (native: this host's), or NULL */
	bool native;      /* chosen by --target native */
	int mr;           /* the kernel set's GEMM tile rows: packed weights' layout */
} backend_target;

/* The targets netcc knows, native excluded: *n of them. */
const backend_target *backend_targets(int *n);
/* name, or "native" (the best of them that this CPU runs, tuned for it),
 * into *t; nonzero with err set (did-you-mean) for an unknown name. */
int backend_target_get(const char *name, backend_target *t, char *err, size_t errlen);
/* Whether this process can run t's code; if not, why, into why. */
bool backend_target_runs_here(const backend_target *t, char *why, size_t len);
/* Where the kernel sets are: NETCC_RUNTIME, else lib/netcc beside the
 * netcc executable (the build tree), else ../lib/netcc (installed). The
 * set's directory into buf; nonzero with an error in buf if not found. */
int backend_kset_dir(const backend_target *t, char *buf, size_t len);

/* ---- compiling ------------------------------------------------------------- */

typedef enum backend_emit_kind {
	BACKEND_EMIT_SO,
	BACKEND_EMIT_OBJ,
	BACKEND_EMIT_ASM,
	BACKEND_EMIT_LLVM,
} backend_emit_kind;

enum { BACKEND_MAX_PHASES = 16 };

/* Wall time of each phase, for --time-phases. */
typedef struct backend_phases {
	const char *name[BACKEND_MAX_PHASES];
	double seconds[BACKEND_MAX_PHASES];
	int n;
} backend_phases;

double backend_now(void);
void backend_phase(backend_phases *p, const char *name, double since);

typedef struct backend_options {
	const backend_target *target;
	int opt_level;      /* 0 or 2, as passes_options's */
	const char *name;   /* prefix of every exported symbol; a C identifier */
	const char *output; /* the library, or the .o/.s/.ll for other emits */
	backend_emit_kind emit;
	bool embed_weights; /* else load_weights reads a safetensors file */
	const char *source; /* the model file, named in the header */
	backend_phases *phases;
	const ir_graph *train; /* the training step of the same model, or NULL */
	bool archive;          /* BACKEND_EMIT_SO: a static archive (libNAME.a) instead */
} backend_options;

/* A symbol a library named `name` would define that this process already
 * has (the C library, the runtime: --name pthread would define
 * pthread_create), into buf; NULL if none. */
const char *backend_symbol_clash(const char *name, bool trainable, char *buf, size_t len);

/* Compiles a planned graph whose params have data; for a shared object
 * also writes the header beside it (NAME.h). 0, or 1 after reporting. */
int backend_compile(const ir_graph *g, const backend_options *o);
int backend_header_write(const ir_graph *g, const backend_options *o, const char *path);

/* Compiles in memory for t (which must run here) and runs once. */
int backend_jit_run(const ir_graph *g, const backend_target *t, const float *const *inputs,
                    float *const *outputs, char *err, size_t errlen);

/* A planned graph compiled in memory, for repeated calls. */
typedef struct backend_jit backend_jit;
struct rt_threads;
typedef void backend_prepare_fn(const float *raw, float *prepared);
typedef void backend_forward_fn(float *prepared, void *workspace, const void *const *in,
                                float *const *out, struct rt_threads *threads);
/* profile: the forward charges each node's time to the pool it runs on
 * (rt_threads_profile). */
backend_jit *backend_jit_compile(const ir_graph *g, const backend_target *t, int opt_level,
                                 const char *prefix, bool profile, char *err, size_t errlen);
backend_prepare_fn *backend_jit_prepare(const backend_jit *j);
backend_forward_fn *backend_jit_forward(const backend_jit *j);
/* A function of the JIT's kernel set by name (rt_peak_gflops), or NULL. */
void *backend_jit_kernel(const backend_jit *j, const char *name);
void backend_jit_free(backend_jit *j);
/* The planned arena, 64-byte aligned; free() it. */
void *backend_workspace_new(const ir_graph *g);
/* Threads the JIT paths use: NETCC_THREADS, else 0 (one per CPU). */
int backend_threads(void);

/* ---- training ----------------------------------------------------------- */

/* Two graphs of one model, fresh from the frontend with the same weights
 * (the session takes them): one becomes the training step, the other the
 * inference graph used to evaluate. NULL with err set on failure. */
typedef struct train_session train_session;
train_session *train_session_create(ir_graph *train_graph, ir_graph *eval_graph,
                                    const backend_target *t, char *err, size_t errlen);
void train_session_free(train_session *s);
const ir_graph *train_session_graph(const train_session *s);
/* One SGD step on a batch: loss gets its mean loss, logits ([batch,
 * classes]) what the forward computed. Labels are checked first. */
int train_session_step(train_session *s, const float *x, const int32_t *labels, float lr,
                       float *loss, float *logits, char *err, size_t errlen);
/* The live state (weights, statistics, momentum), bytes long, for a
 * caller that overwrites it (rank 0's broadcast). */
float *train_session_state(train_session *s, size_t *bytes);
/* A hash of the weights and momentum buffers: what data-parallel ranks
 * hold identically (BatchNorm statistics are each rank's own). */
uint64_t train_session_weights_hash(const train_session *s);
/* The gradient all-reduce hook of data-parallel training (runtime.h). */
void train_session_set_reduce(train_session *s,
                              void (*fn)(void *ctx, float *grad, int64_t n, int left), void *ctx);
/* Inference with the running statistics, on a batch of the same size. */
int train_session_eval(train_session *s, const float *x, float *logits);
/* Weights, BatchNorm statistics and momentum buffers, with metadata. */
int train_session_save(const train_session *s, const char *path, const char *const *meta_kv,
                       int n_meta, char *err, size_t errlen);
/* From a safetensors file already read; momentum buffers may be absent
 * (zeros) unless need_state. */
struct rt_st_file;
int train_session_load(train_session *s, const struct rt_st_file *f, bool need_state, char *err,
                       size_t errlen);

/* Pieces, for the tests and the JIT. BACKEND_MODULE_LIBRARY: the
 * descriptor and exported API; otherwise NAME__prepare and NAME__forward
 * are external. BACKEND_MODULE_PROFILE: forwards call rt_profile_mark
 * after every node. tg, if not NULL, is g's training step
 * (NAME_train__forward), and embedded then its initial state rather than
 * g's prepared weights. */
enum { BACKEND_MODULE_LIBRARY = 1, BACKEND_MODULE_PROFILE = 2 };
LLVMModuleRef backend_module_build(LLVMContextRef ctx, const ir_graph *g, const ir_graph *tg,
                                   const backend_target *t, const char *prefix,
                                   const float *embedded, unsigned flags);
/* opt_level 0 (-O0): LLVM's O0 pipeline and no code-generation
 * optimisation; else O3 (the generated code is thin: calls, copies and
 * element-wise loops, so compile time is what the level changes) */
LLVMTargetMachineRef backend_target_machine(const backend_target *t, int opt_level);
void backend_module_target(LLVMModuleRef m, LLVMTargetMachineRef tm, const backend_target *t);
void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, int opt_level);
int backend_emit(LLVMModuleRef m, LLVMTargetMachineRef tm, backend_emit_kind kind,
                 const char *path);
/* Links an object file with t's runtime into a shared object at output
 * (written in place: backend_compile gives it a temporary), named soname. */
int backend_link(const char *object, const char *output, const char *soname,
                 const backend_target *t);
/* The same into a static archive: one object holding the model and the
 * runtime it needs, where only name_* symbols are global. */
int backend_archive(const char *object, const char *output, const char *name,
                    const backend_target *t);
/* Packs param data into the raw layout the plan chose (plan.raw_bytes);
 * params without data (momentum buffers) are zeros. */
void backend_raw_weights(const ir_graph *g, float *raw);

/* ---- weights files (weights.c) ----------------------------------------- */

/* g's params from the safetensors file at path: every param by name,
 * float32, shapes checked; each mismatch is named on stderr.
 * allow_nonfinite lets NaN/Inf through (they are errors otherwise).
 * backend_weights_save writes them atomically. 0, or 1 after reporting. */
int backend_weights_load(ir_graph *g, const char *path, bool allow_nonfinite);
int backend_weights_save(const ir_graph *g, const char *path);

#endif
