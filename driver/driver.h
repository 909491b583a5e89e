/* driver.h: the netcc command line, one file per command.
 *
 *   opts o;
 *   int rc = opts_parse(&o, argc, argv, "run"); // the options commands.c lists
 *   if (rc)
 *           return rc < 0 ? 0 : rc;             // --help printed, or bad usage
 *   int64_t batch = opts_int(&o, "batch", 1, 1, 65536, &ok);
 *
 * Commands return the process exit status: 0 success, 1 an error in the
 * input (already reported), 2 bad usage.
 */
#ifndef NETCC_DRIVER_H
#define NETCC_DRIVER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdio.h>

#include "ir.h"
#include "train.h"

enum { OPTS_MAX = 32 };

typedef struct opts {
	const char *cmd;
	const char *pos[OPTS_MAX]; /* positional arguments */
	int n_pos;
	char key[OPTS_MAX][32];
	const char *val[OPTS_MAX];
	int n;
} opts;

/* ---- commands and their options (commands.c) ------------------------------ */

typedef struct opt_doc {
	const char *name; /* --name, or -name ("-O0", "-Werror") */
	const char *arg;  /* the value's placeholder; NULL for a flag */
	char kind;        /* 0 a flag, '=' a value, '*' a value that may repeat */
	const char *def;  /* the default, as --help shows it; NULL if none */
	const char *help;
} opt_doc;

typedef struct cmd_doc {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis; /* after "netcc NAME" */
	const char *summary;
	const opt_doc *opts; /* ends with a NULL name */
	const char *examples[2];
} cmd_doc;

const cmd_doc *driver_commands(int *n);
/* how an option is spelt: -o, -O0 and -Werror with one dash, the rest two */
const char *opt_dashes(const char *name);
const cmd_doc *driver_command(const char *name);
/* --help's text (help.c); the man page, roff, for all commands */
void help_command_print(FILE *f, const cmd_doc *c);
void help_usage_print(FILE *f);
void help_man_print(FILE *f);
void help_version_print(FILE *f);
/* VERSION's text ("0.9.0"), as --version prints it */
const char *driver_version(void);

/* Parses cmd's options (commands.c): --key value, --key=value, flags,
 * '--' ending them. 0; -1 after printing --help; 2 after reporting bad
 * usage, with a did-you-mean and where to look. */
int opts_parse(opts *o, int argc, char **argv, const char *cmd);
const char *opts_str(const opts *o, const char *key, const char *fallback);
int opts_all(const opts *o, const char *key, const char **out, int max);
bool opts_flag(const opts *o, const char *key);
/* A bad value is reported and sets *ok = false. */
int64_t opts_int(const opts *o, const char *key, int64_t fallback, int64_t lo, int64_t hi,
                 bool *ok);

int cmd_ir(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_params(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_targets(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_weights(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* --target (default native) into *t; run_here: the command runs the code
 * in this process, so the target must suit this CPU. 0, or 2 after
 * reporting. */
struct backend_target;
int driver_target(const opts *o, struct backend_target *t, bool run_here);

/* Runs fn(ctx) with compiler errors (diag_error_at, diag_fatal) unwinding
 * back here: fn's result, or 1 after an error was reported. */
int driver_guarded(int (*fn)(void *ctx), void *ctx);

/* Loads the model in pos[0] with --batch; NULL after reporting an error,
 * with *status the exit status it deserves (2 bad usage, 1 bad model). */
ir_graph *driver_model_load(const opts *o, int64_t batch_default, int *status);
/* The model is an ONNX file (MODEL.onnx): driver_model_load imports it,
 * weights and all, so it needs no --weights. */
bool driver_model_onnx(const opts *o);
/* Warns that without --weights `what` random weights, or that --seed does
 * nothing with them. */
void driver_weights_warn(const opts *o, const char *what);
/* 1 (after saying so) when -Werror was given and a warning was reported */
int driver_warnings_fatal(const opts *o);

/* A classifier: one input [N, C, H, W] and one output [N, classes], with
 * classes >= 2; its image shape into chw. 0, or 1 after reporting (the
 * command is named: what it needs is what train and eval need). */
int driver_classifier_check(const ir_graph *g, const char *cmd, const char *path, int64_t chw[3],
                            int64_t *classes);

/* ---- netcc eval's metrics (metrics.c) --------------------------------------
 * A confusion-matrix accumulator over batches of logits. The predicted
 * class is the first index of a row's maximum; top-k counts a row when
 * fewer than k classes rank above its label, a tie ranking the lower index
 * first, so top-1 is the prediction. A row holding a NaN predicts nothing:
 * it is wrong for every measure, stays out of the matrix, and makes the
 * loss NaN (as the trainer's test error and loss count it). */
typedef struct metrics {
	int64_t classes, k;                 /* k = min(5, classes) */
	int64_t n, correct, top_k, invalid; /* invalid: rows with a NaN */
	double loss_sum;
	int64_t *confusion; /* [true][predicted], classes x classes */
	int64_t *class_n;   /* examples of each true class, invalid rows included */
} metrics;

/* 0, or -1 out of memory. */
int metrics_init(metrics *m, int64_t classes);
void metrics_free(metrics *m);
/* n rows of logits [n, classes] and their labels, each in [0, classes). */
void metrics_batch_add(metrics *m, const float *logits, const int32_t *labels, int64_t n);
/* Softmax cross-entropy of one row, stable for any finite logits; where
 * the maximum is infinite, the limit (a uniform choice among the entries
 * equal to it). */
double metrics_row_loss(const float *row, int64_t classes, int32_t label);
/* Means over the examples added (NaN before any). */
double metrics_loss(const metrics *m);
double metrics_accuracy(const metrics *m);
double metrics_top_k_accuracy(const metrics *m);
/* NaN for a class with no examples. */
double metrics_class_accuracy(const metrics *m, int64_t c);

/* What netcc eval measured, and how (eval_report.c prints it). */
typedef struct eval_summary {
	const char *model, *split, *data, *weights, *target;
	int64_t batch;
	double seconds;         /* the batches: pixels to floats, and the forwards */
	double compile_seconds; /* passes and LLVM, before the first batch */
	const metrics *m;
} eval_summary;

void eval_report_text(const eval_summary *s, FILE *f);
/* One JSON object and a newline; 0, or 1 after reporting. */
int eval_report_json(const eval_summary *s, FILE *f);
#endif
