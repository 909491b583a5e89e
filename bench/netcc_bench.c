/* netcc_bench: the netcc side of `make bench`, built against one generated library.
 *
 *   cc -std=c11 -O2 -Ibuild/bench -DMODEL_HEADER='"resnet50_b1.h"' -DMODEL=resnet50_b1 \
 *      -DMODEL_UPPER=RESNET50_B1 [-DTRAIN] bench/netcc_bench.c -Lbuild/bench -lresnet50_b1 \
 *      -ldl -lm -Wl,-rpath,'$ORIGIN' -o build/bench/netcc_bench-resnet50_b1
 *
 *   netcc_bench --input X.npy [--labels L.npy] [--threads N] [--output Y.npy | --save W]
 *   netcc_bench --input X.npy [--labels L.npy] [--threads N] --serve
 *
 * Without --serve it runs once and writes the output (inference), or takes one training
 * step, prints the loss and writes the weights and then the inference output (-DTRAIN: the library was compiled with --train; the
 * step is NAME_train_step with labels from L.npy, int32, and lr 0.1). With --serve it prints
 * one line "ready KEY=VALUE ..." and then answers each "run K" on stdin with one line of K
 * latencies in milliseconds, until "quit" or end of input: the orchestrator keeps this
 * process alive and interleaves it with the other engines.
 *
 * Threads: a library that declares its thread API (NAME_HAS_THREADS defined to 1, with int
 * NAME_set_threads(NAME *, int)) is told --threads directly; an older one reads
 * NETCC_THREADS, which the orchestrator also sets. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if !defined(MODEL_HEADER) || !defined(MODEL) || !defined(MODEL_UPPER)
#error "compile with -DMODEL_HEADER='\"NAME.h\"' -DMODEL=NAME -DMODEL_UPPER=UPPERCASE_NAME"
#endif
#include MODEL_HEADER

/* FN(_create) is resnet50_b1_create, UP(_BATCH) is RESNET50_B1_BATCH. */
#define PASTE_(a, b) a##b
#define PASTE(a, b)  PASTE_(a, b)
#define FN(s)        PASTE(MODEL, s)
#define UP(s)        PASTE(MODEL_UPPER, s)

/* In #if, a name that is not a macro reads as 0: NAME_HAS_THREADS undefined means no API. */
#if UP(_HAS_THREADS)
#define HAS_THREADS 1
#else
#define HAS_THREADS 0
#endif

#define LR 0.1f /* models/resnet20.nn's train section, as PyTorch's side uses */

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fflush(stdout);
	fputs("netcc_bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xalloc(size_t bytes)
{
	/* 64-byte aligned, as the library prefers for its buffers; the size rounded up. */
	void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
	if (!p)
		die("out of memory");
	return p;
}

/* A .npy file's data (format 1-3, C order) of dtype descr ('<f4' or '<i4') and exactly
 * count elements of 4 bytes, read into a new buffer. */
static void *read_npy(const char *path, const char *descr, long count)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("%s: %s", path, strerror(errno));
	unsigned char pre[12];
	if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
		die("%s: not a .npy file", path);
	size_t hlen = pre[8] | (size_t)pre[9] << 8;
	if (pre[6] >= 2) {
		if (fread(pre + 10, 1, 2, f) != 2)
			die("%s: truncated", path);
		hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
	}
	char *h = xalloc(hlen + 1);
	if (fread(h, 1, hlen, f) != hlen)
		die("%s: truncated header", path);
	h[hlen] = 0;
	if (!strstr(h, descr) || strstr(h, "'fortran_order': True"))
		die("%s: expected a C-order array of dtype %s: %s", path, descr, h);
	/* The element count from the shape tuple. */
	const char *s = strstr(h, "'shape': (");
	if (!s)
		die("%s: no shape in the header", path);
	long n = 1;
	for (char *p = (char *)s + 10, *end;; p = end + strspn(end, ", ")) {
		long d = strtol(p, &end, 10);
		if (end == p)
			break;
		n *= d;
	}
	if (n != count)
		die("%s: %ld elements, but the model takes %ld", path, n, count);
	void *data = xalloc((size_t)count * 4);
	if (fread(data, 4, (size_t)count, f) != (size_t)count)
		die("%s: truncated data", path);
	fclose(f);
	free(h);
	return data;
}

/* A float32 .npy file of shape (batch, count / batch). */
static void write_npy(const char *path, const float *data, long batch, long count)
{
	char h[256];
	int n = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (%ld, %ld), }",
	                 batch, count / batch);
	/* Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes. */
	int total = (10 + n + 1 + 63) / 64 * 64;
	memset(h + n, ' ', (size_t)(total - 10 - n - 1));
	h[total - 10 - 1] = '\n';
	FILE *f = fopen(path, "wb");
	if (!f)
		die("%s: %s", path, strerror(errno));
	unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(total - 10),
	                         (unsigned char)((total - 10) >> 8)};
	if (fwrite(pre, 1, 10, f) != 10 || fwrite(h, 1, (size_t)(total - 10), f) != (size_t)(total - 10) ||
	    fwrite(data, 4, (size_t)count, f) != (size_t)count || fclose(f) != 0)
		die("%s: write failed", path);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* What OpenBLAS says about itself, if it is loaded at all: "none" shows that a library
 * runs on netcc's own kernels alone (looked up, not linked). */
static const char *blas_core(void)
{
	char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
	return corename ? corename() : "none";
}

static int blas_threads(void)
{
	int (*threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
	return threads ? threads() : 0;
}

typedef struct bench {
	MODEL *m;
	float *input, *output;
	int32_t *labels;
	float loss;
} bench;

static void step(bench *b)
{
#ifdef TRAIN
	int rc = FN(_train_step)(b->m, b->input, b->labels, LR, &b->loss);
#else
	int rc = FN(_infer)(b->m, b->input, b->output);
#endif
	if (rc != 0)
		die("%s", FN(_error)(b->m));
}

/* "run K" -> K latencies; anything else ends the loop. */
static void serve(bench *b)
{
	char line[64];
	double *ms = NULL;
	while (fgets(line, sizeof line, stdin)) {
		long k;
		if (sscanf(line, "run %ld", &k) != 1 || k < 1 || k > 100000)
			break;
		double *nm = realloc(ms, (size_t)k * sizeof *ms);
		if (!nm)
			die("out of memory");
		ms = nm;
		for (long i = 0; i < k; i++) {
			double t0 = now_ms();
			step(b);
			ms[i] = now_ms() - t0;
		}
		for (long i = 0; i < k; i++)
			printf("%.4f%c", ms[i], i + 1 < k ? ' ' : '\n');
		fflush(stdout);
	}
	free(ms);
}

int main(int argc, char **argv)
{
	const char *input = NULL, *labels = NULL, *output = NULL, *save = NULL;
	int threads = 0, serving = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--serve")) {
			serving = 1;
			continue;
		}
		if (!v)
			die("usage: see the comment at the top of bench/netcc_bench.c");
		if (!strcmp(a, "--input"))
			input = v;
		else if (!strcmp(a, "--labels"))
			labels = v;
		else if (!strcmp(a, "--output"))
			output = v;
		else if (!strcmp(a, "--save"))
			save = v;
		else if (!strcmp(a, "--threads"))
			threads = atoi(v);
		else
			die("unknown option %s", a);
		i++;
	}
	if (!input)
		die("--input is required");

	bench b = {0};
	if (!(b.m = FN(_create)()))
		die("cannot create the model: out of memory");
#if HAS_THREADS
	if (threads > 0 && FN(_set_threads)(b.m, threads) != 0)
		die("set_threads(%d): %s", threads, FN(_error)(b.m));
#else
	(void)threads; /* NETCC_THREADS, set by the caller */
#endif
	b.input = read_npy(input, "'<f4'", UP(_INPUT_SIZE));
	b.output = xalloc(UP(_OUTPUT_SIZE) * sizeof(float));
#ifdef TRAIN
	if (!labels)
		die("a training library needs --labels");
	b.labels = read_npy(labels, "'<i4'", UP(_BATCH));
#else
	(void)labels;
#endif

	if (serving) {
		printf("ready blas=%s blas_threads=%d threads_api=%d\n", blas_core(), blas_threads(),
		       HAS_THREADS);
		fflush(stdout);
		serve(&b);
	} else {
		step(&b);
#ifdef TRAIN
		printf("loss %.9g\n", b.loss);
		if (save && FN(_save_weights)(b.m, save) != 0)
			die("%s", FN(_error)(b.m));
		/* The output, after the step, uses the running statistics it moved. */
		if (output && FN(_infer)(b.m, b.input, b.output) != 0)
			die("%s", FN(_error)(b.m));
#else
		if (save)
			die("--save is for training libraries");
#endif
		if (output)
			write_npy(output, b.output, UP(_BATCH), UP(_OUTPUT_SIZE));
	}
	FN(_destroy)(b.m);
	free(b.input);
	free(b.output);
	free(b.labels);
	return 0;
}
