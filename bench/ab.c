/* ab: two builds of one model, timed against each other in one process.
 *
 *   build/netcc compile models/resnet50.nn -o /tmp/a.so      # before a change
 *   build/netcc compile models/resnet50.nn -o /tmp/b.so      # after it
 *   build/bench/ab resnet50 /tmp/a.so /tmp/b.so [--pairs 40] [--threads 2]
 *   build/bench/ab resnet20 /tmp/a.so /tmp/b.so --train --batch 128 --input 784
 *
 * Loads both libraries (dlopen, RTLD_LOCAL: the same exported names twice),
 * makes an instance of each, and runs them in alternation, A then B, then B
 * then A, for --pairs pairs after three warm-up runs each, inference
 * (NAME_infer) or, with --train, training steps (NAME_train_step, lr 0.01,
 * labels i % 10). Prints each side's median and minimum and B's time over
 * A's: the ratio of medians and the median of the per-pair ratios. This
 * host's speed drifts by 10-30% from minute to minute (two cores of a
 * shared machine), so a change is judged by such a ratio, not by two times
 * taken minutes apart; run it with A twice for the noise (A/A). --input and
 * --output are the floats of one sample in and out (defaults 3x224x224 and
 * 4096: the generated header's NAME_INPUT_SIZE and NAME_OUTPUT_SIZE over
 * the batch); the batch is --batch (default 1). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_LOCAL, clock_gettime */
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void *(*create_fn)(void);
typedef void (*destroy_fn)(void *);
typedef int (*threads_fn)(void *, int);
typedef int (*infer_fn)(void *, const float *, float *);
typedef int (*step_fn)(void *, const float *, const int32_t *, float, float *);
typedef const char *(*error_fn)(const void *);

typedef struct side {
	void *lib, *m;
	destroy_fn destroy;
	infer_fn infer;
	step_fn step;
	error_fn error;
	double *t;
} side;

static void die(const char *msg, const char *arg)
{
	fprintf(stderr, "ab: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(1);
}

static void *sym(const side *s, const char *name, const char *suffix, int needed)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s_%s", name, suffix);
	void *f = dlsym(s->lib, buf);
	if (!f && needed)
		die("the library has no", buf);
	return f;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run(side *s, int train, const float *x, const int32_t *labels, float *y)
{
	float loss;
	int rc = train ? s->step(s->m, x, labels, 0.01f, &loss) : s->infer(s->m, x, y);
	if (rc != 0)
		die("a run failed", s->error ? s->error(s->m) : NULL);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		die("usage: ab NAME LIB_A LIB_B [--pairs N] [--threads N] [--train] [--batch N] "
		    "[--input FLOATS] [--output FLOATS] [--gap MS]",
		    NULL);
	const char *name = argv[1];
	double gap_ms = 2;
	int pairs = 40, threads = 2, train = 0, batch = 1;
	long input = 3 * 224 * 224, output = 4096;
	for (int i = 4; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--train"))
			train = 1;
		else if (!strcmp(argv[i], "--pairs") && v)
			pairs = atoi(v), i++;
		else if (!strcmp(argv[i], "--threads") && v)
			threads = atoi(v), i++;
		else if (!strcmp(argv[i], "--batch") && v)
			batch = atoi(v), i++;
		else if (!strcmp(argv[i], "--input") && v)
			input = atol(v), i++;
		else if (!strcmp(argv[i], "--gap") && v)
			gap_ms = atof(v), i++;
		else if (!strcmp(argv[i], "--output") && v)
			output = atol(v), i++;
		else
			die("unknown option", argv[i]);
	}
	if (pairs < 1 || threads < 1 || batch < 1 || input < 1 || output < 1)
		die("--pairs, --threads, --batch, --input and --output must be positive", NULL);

	side s[2] = {{0}, {0}};
	for (int k = 0; k < 2; k++) {
		if (!(s[k].lib = dlopen(argv[2 + k], RTLD_NOW | RTLD_LOCAL)))
			die("cannot load", dlerror());
		create_fn create = (create_fn)sym(&s[k], name, "create", 1);
		s[k].destroy = (destroy_fn)sym(&s[k], name, "destroy", 1);
		s[k].error = (error_fn)sym(&s[k], name, "error", 0);
		s[k].infer = (infer_fn)sym(&s[k], name, "infer", !train);
		s[k].step = (step_fn)sym(&s[k], name, "train_step", train);
		threads_fn set = (threads_fn)sym(&s[k], name, "set_threads", 1);
		if (!(s[k].m = create()))
			die("cannot create an instance of", argv[2 + k]);
		if (set(s[k].m, threads) != 0)
			die("set_threads failed", NULL);
		if (!(s[k].t = malloc((size_t)pairs * sizeof(double))))
			die("out of memory", NULL);
	}
	size_t nx = (size_t)input * batch;
	float *x = malloc(nx * sizeof(float)), *y = malloc((size_t)output * batch * sizeof(float));
	int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
	double *ratio = malloc((size_t)pairs * sizeof(double));
	if (!x || !y || !labels || !ratio)
		die("out of memory", NULL);
	srand(1);
	for (size_t i = 0; i < nx; i++)
		x[i] = (float)rand() / RAND_MAX;
	for (int i = 0; i < batch; i++)
		labels[i] = i % 10;

	for (int w = 0; w < 3; w++)
		for (int k = 0; k < 2; k++)
			run(&s[k], train, x, labels, y);
	for (int i = 0; i < pairs; i++) {
		for (int j = 0; j < 2; j++) {
			int k = j ^ (i & 1); /* A first on even pairs, B first on odd */
			/* Each library has its own pool, whose workers spin for a
			 * while after a run (runtime/threads.c, SPIN_NS) before they
			 * sleep: timed at once, a side shared the two cores with the
			 * other's spinning worker. --gap 250: each run after a
			 * pause, as bench.py times them. */
			long gap_ns = (long)(gap_ms * 1e6);
			nanosleep(&(struct timespec){gap_ns / 1000000000, gap_ns % 1000000000},
			          NULL);
			double t0 = now();
			run(&s[k], train, x, labels, y);
			s[k].t[i] = now() - t0;
		}
		ratio[i] = s[1].t[i] / s[0].t[i];
	}
	qsort(s[0].t, pairs, sizeof(double), cmp);
	qsort(s[1].t, pairs, sizeof(double), cmp);
	qsort(ratio, pairs, sizeof(double), cmp);
	printf("A %s: median %.2f ms, min %.2f\n", argv[2], s[0].t[pairs / 2] * 1e3,
	       s[0].t[0] * 1e3);
	printf("B %s: median %.2f ms, min %.2f\n", argv[3], s[1].t[pairs / 2] * 1e3,
	       s[1].t[0] * 1e3);
	printf("B/A: %.3f (medians), %.3f (median of %d pairs)\n",
	       s[1].t[pairs / 2] / s[0].t[pairs / 2], ratio[pairs / 2], pairs);
	for (int k = 0; k < 2; k++) {
		s[k].destroy(s[k].m);
		free(s[k].t);
	}
	free(x), free(y), free(labels), free(ratio);
	return 0;
}
