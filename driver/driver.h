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

/* ---- data-parallel training (dist.c) ---------------------------------------
 * Under mpirun each process is a rank of MPI_COMM_WORLD; without it, rank 0
 * of 1 and no MPI call is made. Collectives give identical bits on every
 * rank; an MPI failure (a rank that died) ends the job with a message.
 *
 *   dist d;
 *   dist_init(&d, &argc, &argv);
 *   rt_threads_set_reduce(pool, dist_reduce, &d); // gradients averaged
 *   dist_bcast(&d, weights, bytes);               // rank 0's to all
 *   dist_finish(&d);
 */
enum { DIST_BUCKET_BYTES = 25 << 20 }; /* PyTorch DDP's default bucket */
enum { DIST_TIMEOUT = 1800 };          /* s in one collective; PyTorch's default */

struct dist_buckets;
typedef struct dist {
	int rank, size;
	bool mpi;    /* MPI_Init was called */
	int err_fd;  /* stderr as it was: ranks other than 0 are silenced */
	bool verify; /* NETCC_DIST_VERIFY: ranks compare their weights every step */
	bool skip_reduce;
	int64_t kill_step, hang_step;
	int timeout;                  /* s: NETCC_DIST_TIMEOUT, else DIST_TIMEOUT */
	int64_t bucket_bytes;         /* NETCC_DIST_BUCKET_BYTES, else DIST_BUCKET_BYTES */
	struct dist_buckets *buckets; /* this step's gradients on their way */
	double reduce_seconds;
	int64_t reduce_bytes;
} dist;

int dist_init(dist *d, int *argc, char ***argv);
void dist_finish(dist *d);
int dist_status(dist *d, int rc); /* the largest rc of all ranks */
void dist_bcast(dist *d, void *buf, size_t bytes);
void dist_sum(dist *d, double *v, int n); /* in rank order */
bool dist_same(dist *d, uint64_t h);      /* h equal on every rank */
void dist_step_begin(dist *d, int64_t step);
void dist_reduce(void *ctx, float *grad, int64_t n, int left); /* an rt_reduce_fn */

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

/* Weights: every param by name, float32, shapes checked; each mismatch is
 * named. allow_nonfinite lets NaN/Inf through (they are errors otherwise). */
int weights_load(ir_graph *g, const char *path, bool allow_nonfinite);
int weights_save(const ir_graph *g, const char *path);

/* ---- netcc train's pieces ------------------------------------------------ */

/* One split of an IDX image dataset, checked against the model: pixels
 * stay uint8 (a quarter of the memory) and become x / 255 per batch. */
typedef struct dataset {
	int64_t n, c, h, w;
	size_t image_bytes; /* c * h * w */
	uint8_t *pixels;    /* n images */
	uint8_t *labels;    /* n, each in [0, classes) */
} dataset;

/* split is "train" or "t10k"; data is "fashion-mnist" (Debian's
 * dataset-fashion-mnist) or a directory holding SPLIT-images-idx3-ubyte and
 * SPLIT-labels-idx1-ubyte, each plain or .gz. limit > 0 keeps the first
 * limit examples. 0, or 1 after reporting the file and what is wrong. */
int dataset_load(dataset *d, const char *data, const char *split, const int64_t chw[3],
                 int64_t classes, int64_t limit);
void dataset_free(dataset *d);
/* Images idx[0..n) as floats in [0, 1] into x, their labels into labels. */
void dataset_batch(const dataset *d, const int64_t *idx, int64_t n, float *x, int32_t *labels);

/* Learning-rate schedules: the train section's, or --schedule's. */
typedef struct lr_schedule {
	ir_sched kind;
	int n_steps;
	int64_t steps[IR_MAX_STEPS]; /* epochs after which the rate drops */
	double factor;
	int64_t patience, warmup; /* warmup in epochs */
	double lr;                /* the rate of the coming epoch, before warm-up */
	double best;              /* plateau: lowest training loss so far */
	int64_t bad;              /* plateau: epochs since it last improved */
} lr_schedule;

void schedule_from_train(lr_schedule *s, const ir_train *t);
/* "steps:5,8", "steps" (the model's epochs), "plateau" or "none". */
int schedule_parse(lr_schedule *s, const char *text, char *err, size_t errlen);
/* The rate for global step `step` (0-based), with warm-up applied. */
double schedule_step_lr(const lr_schedule *s, int64_t step, int64_t steps_per_epoch);
/* After epoch `epoch` (1-based) ended with mean training loss `loss`:
 * moves to the next epoch's rate. true when the rate dropped. */
bool schedule_epoch_end(lr_schedule *s, int64_t epoch, double loss);
/* The schedule as --schedule writes it ("steps:5,8"), for checkpoints. */
void schedule_text(const lr_schedule *s, char *buf, size_t len);

/* Progress of an epoch on stderr: a bar redrawn in place on a terminal,
 * otherwise a plain line every tenth of the epoch. */
typedef struct progress {
	bool tty, drawn;
	int64_t epoch, epochs, nb, batch, first, next_line;
	double start, last_draw;
} progress;

void progress_begin(progress *p, int64_t epoch, int64_t epochs, int64_t nb, int64_t first);
/* After batch b (1-based) of the epoch; loss and error are its running means. */
void progress_step(progress *p, int64_t b, int64_t batch, double loss, double error);
/* On a terminal, says the test set is running (it can take a while). */
void progress_testing(progress *p, int64_t images);
/* Erases the bar so that a summary line can take its place. */
void progress_clear(progress *p);

/* One epoch's row of log.csv. */
typedef struct epoch_row {
	int64_t epoch;
	double train_loss, train_error, test_loss, test_error, lr, seconds;
} epoch_row;

/* log.csv's rows after the header, as text (checkpoints carry it). */
typedef struct train_log {
	char *text;
	size_t len;
} train_log;

extern const char train_log_header[];
int train_log_add(train_log *l, const epoch_row *r);
int train_log_set(train_log *l, const char *text);
/* Header and rows, written atomically. */
int train_log_write(const train_log *l, const char *path, char *err, size_t errlen);
void train_log_free(train_log *l);

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
/* ---- curves (plot.c) ------------------------------------------------------ */

/* The log.csv files logs[0..n_logs) as one SVG at out, written atomically:
 * loss and error (%) by epoch, train solid, test dashed, a dotted line where
 * the rate changed. labels[i] names log i in the legend, where labels and
 * labels[i] are not NULL; else its directory's name does. 0, or -1 with
 * err naming the file (and line) and what is wrong. */
int plot_svg_write(const char *out, const char *const *logs, const char *const *labels, int n_logs,
                   char *err, size_t errlen);

#endif
