/* The FMA peak that profiles compare against: independent multiply-adds on
 * registers only, as many chains as hide the FMA latency, built with the
 * GEMM's flags in each kernel set, so it uses the widest vectors the
 * set's GEMM does. */
#include <pthread.h>
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

double rt_peak_gflops(int threads)
{
	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	probe pr[64] = {{0}};
	pthread_t tid[64];
	int started = 0;
	for (int i = 1; i < threads; i++)
		if (pthread_create(&tid[i], NULL, run, &pr[i]) == 0)
			started = i;
		else
			break;
	run(&pr[0]);
	double total = pr[0].gflops;
	for (int i = 1; i <= started; i++) {
		pthread_join(tid[i], NULL);
		total += pr[i].gflops;
	}
	return total;
}
