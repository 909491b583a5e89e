/* Training kernels the compiled code calls: convolution and linear backward
 * passes as GEMMs (runtime/gemm.c), the reductions as lane-split loops the
 * compiler vectorises. Every function writes its whole output, and every
 * summation order depends on the shapes alone, so a training run repeats
 * bit for bit. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "runtime.h"

/* ---- reductions ---------------------------------------------------------- */

/* Sums are split over LANES float accumulators, which the compiler keeps in
 * vector registers (a single accumulator would serialise the loop, and
 * without -ffast-math GCC may not reorder it itself). Every CHUNK elements
 * the lanes are flushed into a double, so the float error stays that of a
 * CHUNK / LANES term sum however long the plane is. */
enum { LANES = 8, CHUNK = 512 };

static double lanes_total(const float *acc, float tail)
{
	double s = tail;
	for (int j = 0; j < LANES; j++)
		s += acc[j];
	return s;
}

static double sum_f(const float *restrict x, size_t n)
{
	double total = 0;
	for (size_t i = 0; i < n;) {
		size_t end = n - i < CHUNK ? n : i + CHUNK;
		float acc[LANES] = {0}, tail = 0;
		for (; i + LANES <= end; i += LANES)
			for (int j = 0; j < LANES; j++)
				acc[j] += x[i + j];
		for (; i < end; i++)
			tail += x[i];
		total += lanes_total(acc, tail);
	}
	return total;
}

/* Sums of d = x - m and of d * d. */
static void sum_dev(const float *restrict x, size_t n, float m, double *sd, double *sdd)
{
	double t1 = 0, t2 = 0;
	for (size_t i = 0; i < n;) {
		size_t end = n - i < CHUNK ? n : i + CHUNK;
		float a1[LANES] = {0}, a2[LANES] = {0}, r1 = 0, r2 = 0;
		for (; i + LANES <= end; i += LANES)
			for (int j = 0; j < LANES; j++) {
				float d = x[i + j] - m;
				a1[j] += d;
				a2[j] += d * d;
			}
		for (; i < end; i++) {
			float d = x[i] - m;
			r1 += d;
			r2 += d * d;
		}
		t1 += lanes_total(a1, r1);
		t2 += lanes_total(a2, r2);
	}
	*sd = t1;
	*sdd = t2;
}

/* Sums of dy and of dy * (x - m). */
static void sum_dy_dyx(const float *restrict x, const float *restrict dy, size_t n, float m,
                       double *sdy, double *sdyx)
{
	double t1 = 0, t2 = 0;
	for (size_t i = 0; i < n;) {
		size_t end = n - i < CHUNK ? n : i + CHUNK;
		float a1[LANES] = {0}, a2[LANES] = {0}, r1 = 0, r2 = 0;
		for (; i + LANES <= end; i += LANES)
			for (int j = 0; j < LANES; j++) {
				a1[j] += dy[i + j];
				a2[j] += dy[i + j] * (x[i + j] - m);
			}
		for (; i < end; i++) {
			r1 += dy[i];
			r2 += dy[i] * (x[i] - m);
		}
		t1 += lanes_total(a1, r1);
		t2 += lanes_total(a2, r2);
	}
	*sdy = t1;
	*sdyx = t2;
}

/* ---- bias and BatchNorm -------------------------------------------------- */

/* Linear biases (hw = 1) go row by row with one double per channel, in
 * stack-sized groups of channels: per-channel planes of one element would
 * leave nothing to vectorise. */
enum { BIAS_GROUP = 256 };

void rt_bias_grad(int n, int c, int hw, const float *dy, float *db)
{
	if (hw == 1) {
		for (int c0 = 0; c0 < c; c0 += BIAS_GROUP) {
			int nc = c - c0 < BIAS_GROUP ? c - c0 : BIAS_GROUP;
			double acc[BIAS_GROUP] = {0};
			for (int i = 0; i < n; i++) {
				const float *row = dy + (size_t)i * c + c0;
				for (int j = 0; j < nc; j++)
					acc[j] += row[j];
			}
			for (int j = 0; j < nc; j++)
				db[c0 + j] = (float)acc[j];
		}
		return;
	}
	for (int ch = 0; ch < c; ch++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			s += sum_f(dy + ((size_t)i * c + ch) * hw, (size_t)hw);
		db[ch] = (float)s;
	}
}

/* The BatchNorm kernels split channels over the pool's threads: a channel's
 * sums are one thread's, in the same order on any thread count. */
typedef struct bn_job bn_job;
typedef void bn_range_fn(const bn_job *j, int c0, int c1);
struct bn_job {
	bn_range_fn *fn;
	int n, c, hw;
	const float *x, *dy, *stats, *gamma, *dparams;
	float eps;
	float *out;
};

static void bn_task(void *ctx, int task, int tasks)
{
	const bn_job *j = ctx;
	int c0, c1;
	rt_task_range(j->c, task, tasks, &c0, &c1);
	j->fn(j, c0, c1);
}

static void bn_run(rt_threads *t, bn_job *j, bn_range_fn *fn)
{
	int tasks = rt_threads_count(t) * 2;
	j->fn = fn;
	rt_threads_run(t, bn_task, j, tasks < j->c ? tasks : j->c);
}

/* Each plane is summed twice while it is in cache (its mean, then the
 * squared deviations from it), and the planes are merged with Chan et al.'s
 * pairwise update: as stable as a two-pass over the whole channel, with one
 * pass over memory. The plane's deviations are taken from its mean rounded
 * to float, the sum of d correcting for that rounding. */
static void bn_stats_range(const bn_job *j, int c0, int c1)
{
	int n = j->n, c = j->c, hw = j->hw;
	for (int ch = c0; ch < c1; ch++) {
		double mean = 0, m2 = 0, cnt = 0;
		for (int i = 0; i < n; i++) {
			const float *xp = j->x + ((size_t)i * c + ch) * hw;
			float pm = (float)(sum_f(xp, (size_t)hw) / hw);
			double sd, sdd;
			sum_dev(xp, (size_t)hw, pm, &sd, &sdd);
			double pmean = pm + sd / hw, pm2 = sdd - sd * sd / hw;
			double tot = cnt + hw, delta = pmean - mean;
			mean += delta * hw / tot;
			m2 += pm2 + delta * delta * cnt * hw / tot;
			cnt = tot;
		}
		/* Rounding can leave a constant channel a residue of either sign;
		 * a negative variance would reach a square root. */
		j->out[ch] = (float)mean;
		j->out[c + ch] = (float)(m2 > 0 ? m2 / ((double)n * hw) : 0.0);
	}
}

void rt_bn_stats(rt_threads *t, int n, int c, int hw, const float *x, float *stats)
{
	bn_job j = {.n = n, .c = c, .hw = hw, .x = x, .out = stats};
	bn_run(t, &j, bn_stats_range);
}

static void bn_grad_params_range(const bn_job *j, int c0, int c1)
{
	int n = j->n, c = j->c, hw = j->hw;
	for (int ch = c0; ch < c1; ch++) {
		double sdy = 0, sdyx = 0;
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			double a, b;
			sum_dy_dyx(j->x + base, j->dy + base, (size_t)hw, j->stats[ch], &a, &b);
			sdy += a;
			sdyx += b;
		}
		j->out[ch] = (float)(sdyx / sqrt((double)j->stats[c + ch] + j->eps));
		j->out[c + ch] = (float)sdy;
	}
}

void rt_bn_grad_params(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                       const float *stats, float eps, float *dparams)
{
	bn_job j = {
	    .n = n, .c = c, .hw = hw, .x = x, .dy = dy, .stats = stats, .eps = eps, .out = dparams};
	bn_run(t, &j, bn_grad_params_range);
}

/* The reference's float arithmetic element for element (so the two agree
 * to the bit), in blocks of LANES: GCC's -O2 cost model vectorises only
 * loops that need no scalar epilogue or overlap checks. */
static void bn_dx_plane(size_t len, const float *restrict x, const float *restrict dy, float mean,
                        float is, float k, float mdb, float mdg, float *restrict dx)
{
	size_t j = 0;
	for (; j + LANES <= len; j += LANES)
		for (int l = 0; l < LANES; l++) {
			float xhat = (x[j + l] - mean) * is;
			dx[j + l] = k * (dy[j + l] - mdb - xhat * mdg);
		}
	for (; j < len; j++) {
		float xhat = (x[j] - mean) * is;
		dx[j] = k * (dy[j] - mdb - xhat * mdg);
	}
}

static void bn_grad_input_range(const bn_job *j, int c0, int c1)
{
	int n = j->n, c = j->c, hw = j->hw;
	double m = (double)n * hw;
	for (int ch = c0; ch < c1; ch++) {
		double invstd = 1.0 / sqrt((double)j->stats[c + ch] + j->eps);
		float k = (float)(j->gamma[ch] * invstd);
		float mdb = (float)(j->dparams[c + ch] / m), mdg = (float)(j->dparams[ch] / m);
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			bn_dx_plane((size_t)hw, j->x + base, j->dy + base, j->stats[ch],
			            (float)invstd, k, mdb, mdg, j->out + base);
		}
	}
}

void rt_bn_grad_input(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                      const float *stats, const float *gamma, const float *dparams, float eps,
                      float *dx)
{
	bn_job j = {.n = n,
	            .c = c,
	            .hw = hw,
	            .x = x,
	            .dy = dy,
	            .stats = stats,
	            .gamma = gamma,
	            .dparams = dparams,
	            .eps = eps,
	            .out = dx};
	bn_run(t, &j, bn_grad_input_range);
}
