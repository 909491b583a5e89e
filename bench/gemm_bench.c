/* gemm_bench: netcc's SGEMM (runtime/kernels/gemm.c) against OpenBLAS's cblas_sgemm on the
 * shapes convolutions make in the models netcc compiles, at 1 and 2 threads.
 *
 *   build/bench/gemm_bench-SET [REPS]    (make bench runs the bench target's kernel
 *                                         set's; REPS default 30)
 *
 * Each line: the shape (M x N x K: output channels, output pixels, input channels times
 * the kernel area), each engine's median GFLOP/s, and netcc's time over OpenBLAS's (below
 * 1, netcc is faster). OpenBLAS runs as a stock Debian install gives it: whatever core it
 * detects (printed), with OPENBLAS_CORETYPE honoured if the caller sets it. This is why
 * netcc has its own GEMM: OpenBLAS 0.3.21 does not recognise some current CPUs and falls
 * back to old kernels; the figures here say what each choice costs on this machine. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

char *openblas_get_corename(void);
void openblas_set_num_threads(int);

typedef struct shape {
	const char *what;
	int m, n, k;
} shape;

static const shape shapes[] = {
    {"resnet50 conv1 7x7/2", 64, 12544, 147},
    {"resnet50 1x1 64->256", 256, 3136, 64},
    {"resnet50 1x1 1024->256", 256, 196, 1024},
    {"resnet50 1x1 2048->512", 512, 49, 2048},
    {"resnet18 3x3 64", 64, 3136, 576},
    {"resnet18 3x3 128", 128, 784, 1152},
    {"resnet18 3x3 256", 256, 196, 2304},
    {"resnet18 3x3 512", 512, 49, 4608},
    {"resnet20 3x3 16, batch 128", 16, 100352, 144},
    {"resnet20 3x3 64, batch 128", 64, 6272, 576},
    {"resnet20 dW 3x3 16, batch 128", 16, 144, 100352},
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *t, int n)
{
	qsort(t, n, sizeof *t, by_value);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 30;
	if (reps < 1 || reps > 100000) {
		fprintf(stderr, "usage: gemm_bench [REPS]\n");
		return 2;
	}
	double *t = malloc(sizeof(double) * reps);
	if (!t)
		return 1;
	printf("netcc's kernel set: %s (MR %d, NR %d); OpenBLAS core: %s; medians of %d runs; "
	       "GFLOP/s, and netcc's time over OpenBLAS's\n",
	       GEMM_BENCH_KSET, rt_gemm_mr(), rt_gemm_nr(), openblas_get_corename(), reps);
	printf("%-32s %5s %6s %6s %3s %9s %9s %6s\n", "shape", "M", "N", "K", "thr", "netcc",
	       "OpenBLAS", "ratio");
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		const shape *sh = &shapes[s];
		size_t na = (size_t)sh->m * sh->k, nb = (size_t)sh->k * sh->n,
		       nc = (size_t)sh->m * sh->n;
		float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b),
		      *c = malloc(nc * sizeof *c);
		if (!a || !b || !c)
			return 1;
		rt_rng r;
		rt_rng_seed(&r, s + 1);
		rt_rng_normal_fill(&r, a, na, 1);
		rt_rng_normal_fill(&r, b, nb, 1);
		double flops = 2.0 * sh->m * sh->n * sh->k;
		for (int threads = 1; threads <= 2; threads++) {
			rt_threads *pool = rt_threads_create(threads);
			openblas_set_num_threads(threads);
			rt_gemm_b bd = {.data = b, .ld = sh->n};
			rt_epilogue ep = {0};
			double med[2];
			for (int e = 0; e < 2; e++) {
				/* the other engine's idle threads spin a while after
				 * its last call: let them go to sleep first */
				usleep(250 * 1000);
				for (int i = -2; i < reps; i++) { /* two warm-up runs */
					double t0 = now();
					if (e == 0)
						rt_gemm(pool, sh->m, sh->n, sh->k, a, sh->k, 0, &bd,
						        c, sh->n, &ep);
					else
						cblas_sgemm(CblasRowMajor, CblasNoTrans,
						            CblasNoTrans, sh->m, sh->n, sh->k, 1, a,
						            sh->k, b, sh->n, 0, c, sh->n);
					if (i >= 0)
						t[i] = now() - t0;
				}
				med[e] = median(t, reps);
			}
			printf("%-32s %5d %6d %6d %3d %9.1f %9.1f %6.2f\n", sh->what, sh->m, sh->n,
			       sh->k, threads, flops / med[0] * 1e-9, flops / med[1] * 1e-9,
			       med[0] / med[1]);
			fflush(stdout);
			rt_threads_destroy(pool);
		}
		free(a);
		free(b);
		free(c);
	}
	free(t);
	return 0;
}
