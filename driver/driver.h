/* driver.h: the netcc command line, one file per command.
 *
 *   opts o;
 *   if (opts_parse(&o, argc, argv, "batch= weights= input* o* reference") != 0)
 *           return 2;
 *   int64_t batch = opts_int(&o, "batch", 1, 1, 65536, &ok);
 *
 * Commands return the process exit status: 0 success, 1 an error in the
 * input (already reported), 2 bad usage.
 */
#ifndef NETCC_DRIVER_H
#define NETCC_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

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

/* spec lists the options, separated by spaces: "batch=" takes a value,
 * "input*" takes a value and may repeat, "reference" alone is a flag. */
int opts_parse(opts *o, int argc, char **argv, const char *spec);
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

/* Runs fn(ctx) with compiler errors (diag_error_at, diag_fatal) unwinding
 * back here: fn's result, or 1 after an error was reported. */
int driver_guarded(int (*fn)(void *ctx), void *ctx);

/* Loads the model in pos[0] with --batch; NULL after reporting an error,
 * with *status the exit status it deserves (2 bad usage, 1 bad model). */
ir_graph *driver_model_load(const opts *o, int64_t batch_default, int *status);

/* Weights: every param by name, float32, shapes checked; each mismatch is
 * named. allow_nonfinite lets NaN/Inf through (they are errors otherwise). */
int weights_load(ir_graph *g, const char *path, bool allow_nonfinite);
int weights_save(const ir_graph *g, const char *path);

#endif
