/* train.h: netcc train's trainer, out of the command line: data, learning-
 * rate schedules, progress, log.csv and curves, checkpoints, the loop, and
 * data-parallel ranks over Open MPI. driver/cmd_train.c reads the options
 * into a train_cfg and drives it:
 *
 *   dist d;
 *   trainer t = {.d = &d};
 *   dist_init(&d, NULL, NULL);
 *   // t.cfg from the options; the session, data and buffers:
 *   trainer_session_make(&t, g); trainer_data_load(&t, chw, NULL); ...
 *   trainer_signals_catch(true);
 *   for (int64_t e = t.st.epoch + 1; e <= t.cfg.epochs && rc == 0; e++)
 *           rc = trainer_epoch_run(&t, e); // steps, test, log, checkpoint
 *   trainer_free(&t);
 *   dist_finish(&d);
 *
 * Functions return 0, or 1 after reporting (on stderr, as "netcc: error:").
 */
#ifndef NETCC_TRAIN_H
#define NETCC_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "ir.h"
#include "runtime.h"

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

/* ---- curves (plot.c) ------------------------------------------------------ */

/* The log.csv files logs[0..n_logs) as one SVG at out, written atomically:
 * loss and error (%) by epoch, train solid, test dashed, a dotted line where
 * the rate changed. labels[i] names log i in the legend, where labels and
 * labels[i] are not NULL; else its directory's name does. 0, or -1 with
 * err naming the file (and line) and what is wrong. */
int plot_svg_write(const char *out, const char *const *logs, const char *const *labels, int n_logs,
                   char *err, size_t errlen);

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

/* ---- the trainer (checkpoint.c, loop.c, setup.c) ------------------------- */

#define CHECKPOINT_FORMAT "netcc-checkpoint"

typedef struct train_cfg {
	const char *model, *data, *resume, *weights;
	char *out; /* --out, or the default paths_make chose */
	int64_t epochs, batch, seed, limit_train, limit_test;
	int64_t global_batch; /* --global-batch: --batch under another name */
} train_cfg;

/* Where a run stands: all a checkpoint needs besides the tensors. */
typedef struct run_state {
	int64_t epoch;   /* epochs completed */
	int64_t step;    /* SGD steps taken in all */
	int64_t done;    /* batches of the next epoch already taken */
	rt_rng rng;      /* as the next epoch begins, before its shuffle */
	double loss_sum; /* of the next epoch's steps so far */
	int64_t wrong;
	double seconds;
	lr_schedule sched;
	train_log log;
} run_state;

typedef struct trainer {
	train_cfg cfg;
	backend_target target;
	run_state st;
	dist *d;
	char *name;     /* the model's */
	int64_t batch;  /* this process's share of a step: the compiled batch */
	int64_t gbatch; /* a step's batch over all ranks */
	int64_t classes, nb, n_train;
	bool stop;           /* every rank saw the stop signal (SIGINT, SIGTERM) */
	double step_seconds; /* in steps, the all-reduce included */
	int64_t steps_here;  /* steps this process took (not those resumed past) */
	train_session *s;
	dataset train, test;
	char **params; /* the inference graph's params: model.safetensors holds these */
	int n_params;
	int64_t *perm, *idx;
	float *x, *logits;
	int32_t *labels;
	char ckpt[1024], ckpt_new[1024], weights[1024], log[1024], plot[1024];
	const char *last_good; /* the checkpoint a failure leaves to resume from */
} trainer;

typedef struct ckpt_info {
	const char *path, *model;
	int64_t batch, seed, epochs, n_train;
	int64_t ranks; /* of the run that wrote it (1 before data-parallel runs) */
	run_state st;
} ckpt_info;

/* checkpoint.c */
int trainer_checkpoint_read(const rt_st_file *f, const char *path, ckpt_info *c);
void trainer_nan_report(const trainer *t, const char *what);
int trainer_checkpoint_write(trainer *t, const rt_rng *rng, bool weights);

/* loop.c */
void trainer_signals_catch(bool on);
int trainer_epoch_run(trainer *t, int64_t epoch);

/* setup.c */
int trainer_dir_make(const char *path);
int trainer_buffers_alloc(trainer *t);
int trainer_session_make(trainer *t, ir_graph *g);
int trainer_data_load(trainer *t, const int64_t chw[3], const ckpt_info *ck);
void trainer_free(trainer *t);
void trainer_start_print(const trainer *t);
void trainer_end_print(const trainer *t);
ir_graph *trainer_batch_split(trainer *t, ir_graph *g);
void trainer_ranks_join(trainer *t, const ckpt_info *ck);

#endif
