/* The FMA peak that profiles compare against: independent multiply-adds on
 * registers only, as many chains as hide the FMA latency, built with the
 * GEMM's flags in each kernel set, so it uses the widest vectors the
 * set's GEMM does; and beside it the memory's read bandwidth, on the same
 * threads. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kset.h"
#include "runtime.h"

#if defined(RT_KSET_THIS)
#define PEAK_VW RT_KSET_THIS_VW
#else
#define PEAK_VW 4
#endif
/* a vector register operand, read and written */
#if defined(__aarch64__)
#define R(v) "+w"(v)
#else
#define R(v) "+v"(v)
#endif
typedef float pv __attribute__((vector_size(PEAK_VW * sizeof(float))));
enum { CHAINS = 12, ROUNDS = 1 << 22 }; /* about 20 ms a round at 2 FMAs a cycle */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct probe {
	double gflops;
	float sink;
} probe;

/* Twelve chains in named variables: an array would live on the stack. */
#define CHAIN(v) v = v * a + b
static void *run(void *arg)
{
	probe *p = arg;
	pv a, b;
	for (int i = 0; i < PEAK_VW; i++)
		a[i] = 0.999f, b[i] = 1e-4f;
	pv c0 = b, c1 = b * 2, c2 = b * 3, c3 = b * 4, c4 = b * 5, c5 = b * 6, c6 = b * 7,
	   c7 = b * 8, c8 = b * 9, c9 = b * 10, c10 = b * 11, c11 = b * 12;
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		double t = now();
		for (int r = 0; r < ROUNDS; r++) {
			CHAIN(c0), CHAIN(c1), CHAIN(c2), CHAIN(c3), CHAIN(c4), CHAIN(c5);
			CHAIN(c6), CHAIN(c7), CHAIN(c8), CHAIN(c9), CHAIN(c10), CHAIN(c11);
			/* an empty asm that "changes" them: no folding across rounds */
			__asm__(""
			        : R(c0), R(c1), R(c2), R(c3), R(c4), R(c5), R(c6), R(c7), R(c8),
			          R(c9), R(c10), R(c11));
		}
		t = now() - t;
		double g = 2.0 * PEAK_VW * CHAINS * ROUNDS / t * 1e-9;
		best = g > best ? g : best;
	}
	pv s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
	p->sink = s[0];
	p->gflops = best;
	return NULL;
}

/* fn(&args[i]) for i < threads (at most PROBE_THREADS), the first on the
 * caller, the others each on a thread of its own, started together and
 * joined; returns how many ran (a thread that could not start is left
 * out) */
enum { PROBE_THREADS = 64 };

static int on_threads(int threads, void *(*fn)(void *), void *args, size_t size)
{
	threads = threads < 1 ? 1 : threads > PROBE_THREADS ? PROBE_THREADS : threads;
	pthread_t tid[PROBE_THREADS];
	int started = 0;
	for (int i = 1;
	     i < threads && pthread_create(&tid[i], NULL, fn, (char *)args + i * size) == 0; i++)
		started = i;
	fn(args);
	for (int i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
	return started + 1;
}

double rt_peak_gflops(int threads)
{
	probe pr[PROBE_THREADS] = {{0}};
	int ran = on_threads(threads, run, pr, sizeof *pr);
	double total = 0;
	for (int i = 0; i < ran; i++)
		total += pr[i].gflops;
	return total;
}

/* ---- the memory's read bandwidth, reported beside the peak ----------------- */

/* Far past any last-level cache here (32 MB on the EPYC), so the reads
 * come from memory. */
enum { READ_BYTES = 256 << 20 };

typedef float f4 __attribute__((vector_size(16)));

typedef struct reader {
	const f4 *p;
	size_t n; /* vectors */
	double seconds;
	float sink;
} reader;

/* four independent sums: one would wait on the add, not on memory */
static void *read_run(void *arg)
{
	reader *r = arg;
	f4 a = {0}, b = {0}, c = {0}, d = {0};
	double t = now();
	for (size_t i = 0; i + 4 <= r->n; i += 4) {
		a += r->p[i];
		b += r->p[i + 1];
		c += r->p[i + 2];
		d += r->p[i + 3];
	}
	r->seconds = now() - t;
	f4 s = a + b + c + d;
	r->sink = s[0];
	return NULL;
}

double rt_read_gbs(int threads)
{
	threads = threads < 1 ? 1 : threads > PROBE_THREADS ? PROBE_THREADS : threads;
	f4 *buf = rt_alloc_large(READ_BYTES);
	if (!buf)
		return 0;
	memset(buf, 0, READ_BYTES); /* every page present before the clock starts */
	size_t per = READ_BYTES / sizeof(f4) / (size_t)threads;
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		reader rd[PROBE_THREADS];
		for (int i = 0; i < threads; i++)
			rd[i] = (reader){.p = buf + (size_t)i * per, .n = per};
		int ran = on_threads(threads, read_run, rd, sizeof *rd);
		double slowest = 0;
		for (int i = 0; i < ran; i++)
			slowest = rd[i].seconds > slowest ? rd[i].seconds : slowest;
		double gbs = (double)per * sizeof(f4) * ran / slowest * 1e-9;
		best = gbs > best ? gbs : best;
	}
	free(buf);
	return best;
}
