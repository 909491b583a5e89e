/* Training kernels the compiled code calls: convolution and linear backward
 * passes as GEMMs (runtime/kernels/gemm.c), the reductions as lane-split loops the
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
typedef float lanes __attribute__((vector_size(LANES * sizeof(float))));
typedef int lanes_i __attribute__((vector_size(LANES * sizeof(float))));

static double lanes_total(const float *acc, float tail)
{
	double s = tail;
	for (int j = 0; j < LANES; j++)
		s += acc[j];
	return s;
}

/* The lanes are explicit vectors in these loops: written as arrays, GCC
 * 12 vectorised across the outer loop instead, into shuffles and scalar
 * adds (bn_stats ran at 3-5 GB/s, a quarter of bn_train's speed). */
static double sum_f(const float *restrict x, size_t n)
{
	double total = 0;
	for (size_t i = 0; i < n;) {
		size_t end = n - i < CHUNK ? n : i + CHUNK;
		float acc[LANES], tail = 0;
		lanes va = {0};
		for (; i + LANES <= end; i += LANES) {
			lanes vx;
			memcpy(&vx, x + i, sizeof vx);
			va += vx;
		}
		memcpy(acc, &va, sizeof acc);
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
		float a1[LANES], a2[LANES], r1 = 0, r2 = 0;
		lanes va1 = {0}, va2 = {0};
		for (; i + LANES <= end; i += LANES) {
			lanes d;
			memcpy(&d, x + i, sizeof d);
			d -= m;
			va1 += d;
			va2 += d * d;
		}
		memcpy(a1, &va1, sizeof a1);
		memcpy(a2, &va2, sizeof a2);
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

/* dy[i], or where a relu's gradient was fused in (y, its result, given)
 * rt_relu_grad_ref's dy[i] where y[i] > 0, else 0: the same values, so the
 * same sums, as from the relu's gradient stored first. Inlined with y
 * NULL or not, so each version vectorises on its own. dy is loaded
 * whatever y holds, then selected: written as a load under the condition,
 * GCC 12 at -O3 -march=znver1 made of bn_dx_plane's loop masked loads
 * that gave wrong values (test_kernels_train's golden_batchnorm_train
 * caught it). */
static inline __attribute__((always_inline)) float grad_at(const float *restrict y,
                                                           const float *restrict dy, size_t i)
{
	float d = dy[i];
	return !y || y[i] > 0 ? d : 0.0f;
}

/* Sums of dy and of dy * (x - m) (dy through grad_at). */
static inline __attribute__((always_inline)) void sum_dy_dyx(const float *restrict x,
                                                             const float *restrict dy,
                                                             const float *restrict y, size_t n,
                                                             float m, double *sdy, double *sdyx)
{
	double t1 = 0, t2 = 0;
	for (size_t i = 0; i < n;) {
		size_t end = n - i < CHUNK ? n : i + CHUNK;
		float a1[LANES], a2[LANES], r1 = 0, r2 = 0;
		/* the lanes as explicit vectors: GCC left the masked form of
		 * the loop scalar (4x the pass's time), and the plain one ran
		 * 1.25x slower than this */
		lanes va1 = {0}, va2 = {0};
		for (; i + LANES <= end; i += LANES) {
			lanes vx, d;
			memcpy(&vx, x + i, sizeof vx);
			memcpy(&d, dy + i, sizeof d);
			if (y) {
				lanes vy;
				memcpy(&vy, y + i, sizeof vy);
				d = (lanes)((lanes_i)d & (vy > 0));
			}
			va1 += d;
			va2 += d * (vx - m);
		}
		memcpy(a1, &va1, sizeof a1);
		memcpy(a2, &va2, sizeof a2);
		for (; i < end; i++) {
			float d = grad_at(y, dy, i);
			r1 += d;
			r2 += d * (x[i] - m);
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

/* The BatchNorm kernels split a batch's images over the pool's threads
 * where the channels are few (at most BN_GROUP) and the images many: each
 * task reads whole images, one contiguous run of every plane of them (split
 * by channels instead, a task read runs of a few 3 KB planes, c * hw
 * floats apart, and each run started cold: bn_train, which took images
 * first, ran 10% faster). The sums are then BN_CHUNKS fixed ranges of
 * images' partial sums, merged in order, so they do not depend on the
 * thread count. Otherwise the threads split the channels, a channel's sums
 * one thread's; a thread walks its channels image by image, BN_GROUP at a
 * time, each image's planes one contiguous run. */
enum { BN_GROUP = 64, BN_CHUNKS = 8 };
typedef struct bn_job bn_job;
/* channels [c0, c1) (at most BN_GROUP of them) of images [i0, i1); part:
 * where a range of images leaves its partial sums ([3][c]), or NULL where
 * the range is every image and the results are final */
typedef void bn_range_fn(const bn_job *j, int c0, int c1, int i0, int i1, double *part);
struct bn_job {
	bn_range_fn *fn;
	int n, c, hw;
	const float *x, *dy, *relu_y, *stats, *gamma, *dparams;
	float eps;
	float *out;
	bool by_images; /* tasks take images, not channels */
	double *part;   /* [BN_CHUNKS][3][c] partial sums, where the job sums */
};

static void bn_task(void *ctx, int task, int tasks)
{
	const bn_job *j = ctx;
	if (j->by_images) {
		int i0, i1;
		rt_task_range(j->n, task, tasks, &i0, &i1);
		j->fn(j, 0, j->c, i0, i1, j->part ? j->part + (size_t)task * 3 * j->c : NULL);
		return;
	}
	int c0, c1;
	rt_task_range(j->c, task, tasks, &c0, &c1);
	for (int g0 = c0; g0 < c1; g0 += BN_GROUP)
		j->fn(j, g0, c1 - g0 < BN_GROUP ? c1 : g0 + BN_GROUP, 0, j->n, NULL);
}

/* part: room for BN_CHUNKS partial sums where the job sums, NULL where it
 * does not; returns whether the tasks took images (and, given part, left
 * their sums there for the caller to merge) */
static bool bn_run(rt_threads *t, bn_job *j, bn_range_fn *fn, double *part)
{
	int tasks = rt_threads_count(t) * 2;
	j->fn = fn;
	j->by_images = j->c <= BN_GROUP && j->n >= (part ? BN_CHUNKS : tasks);
	j->part = j->by_images ? part : NULL;
	if (j->by_images)
		rt_threads_run(t, bn_task, j, part ? BN_CHUNKS : tasks);
	else
		rt_threads_run(t, bn_task, j, tasks < j->c ? tasks : j->c);
	return j->by_images;
}

/* Rounding can leave a constant channel a residue of either sign; a
 * negative variance would reach a square root. */
static void stats_out(const bn_job *j, int c0, int c1, const double *mean, const double *m2)
{
	for (int ch = c0; ch < c1; ch++) {
		j->out[ch] = (float)mean[ch - c0];
		j->out[j->c + ch] =
		    (float)(m2[ch - c0] > 0 ? m2[ch - c0] / ((double)j->n * j->hw) : 0.0);
	}
}

/* Chan et al.'s pairwise update: (mean, m2, cnt) merged with another
 * set's (pmean, pm2, pcnt) */
static void chan_merge(double *mean, double *m2, double *cnt, double pmean, double pm2, double pcnt)
{
	double tot = *cnt + pcnt, delta = pmean - *mean;
	*mean += delta * pcnt / tot;
	*m2 += pm2 + delta * delta * *cnt * pcnt / tot;
	*cnt = tot;
}

/* Each plane is summed twice while it is in cache (its mean, then the
 * squared deviations from it), and the planes are merged with Chan et al.'s
 * pairwise update: as stable as a two-pass over the whole channel, with one
 * pass over memory. The plane's deviations are taken from its mean rounded
 * to float, the sum of d correcting for that rounding. */
static void bn_stats_range(const bn_job *j, int c0, int c1, int i0, int i1, double *part)
{
	int c = j->c, hw = j->hw;
	double mean[BN_GROUP] = {0}, m2[BN_GROUP] = {0}, cnt[BN_GROUP] = {0};
	for (int i = i0; i < i1; i++)
		for (int ch = c0; ch < c1; ch++) {
			const float *xp = j->x + ((size_t)i * c + ch) * hw;
			float pm = (float)(sum_f(xp, (size_t)hw) / hw);
			double sd, sdd;
			sum_dev(xp, (size_t)hw, pm, &sd, &sdd);
			int q = ch - c0;
			chan_merge(&mean[q], &m2[q], &cnt[q], pm + sd / hw, sdd - sd * sd / hw, hw);
		}
	if (!part) {
		stats_out(j, c0, c1, mean, m2);
		return;
	}
	for (int ch = c0; ch < c1; ch++) {
		part[ch] = mean[ch - c0];
		part[c + ch] = m2[ch - c0];
		part[2 * c + ch] = cnt[ch - c0];
	}
}

void rt_bn_stats(rt_threads *t, int n, int c, int hw, const float *x, float *stats)
{
	bn_job j = {.n = n, .c = c, .hw = hw, .x = x, .out = stats};
	double part[BN_CHUNKS * 3 * BN_GROUP];
	if (!bn_run(t, &j, bn_stats_range, part))
		return;
	double mean[BN_GROUP] = {0}, m2[BN_GROUP] = {0}, cnt[BN_GROUP] = {0};
	for (int q = 0; q < BN_CHUNKS; q++)
		for (int ch = 0; ch < c; ch++) {
			const double *pq = part + (size_t)q * 3 * c;
			chan_merge(&mean[ch], &m2[ch], &cnt[ch], pq[ch], pq[c + ch],
			           pq[2 * c + ch]);
		}
	stats_out(&j, 0, c, mean, m2);
}

static void params_out(const bn_job *j, int c0, int c1, const double *sdy, const double *sdyx)
{
	for (int ch = c0; ch < c1; ch++) {
		j->out[ch] = (float)(sdyx[ch - c0] / sqrt((double)j->stats[j->c + ch] + j->eps));
		j->out[j->c + ch] = (float)sdy[ch - c0];
	}
}

static void bn_grad_params_range(const bn_job *j, int c0, int c1, int i0, int i1, double *part)
{
	int c = j->c, hw = j->hw;
	double sdy[BN_GROUP] = {0}, sdyx[BN_GROUP] = {0};
	for (int i = i0; i < i1; i++)
		for (int ch = c0; ch < c1; ch++) {
			size_t base = ((size_t)i * c + ch) * hw;
			double a, b;
			if (j->relu_y)
				sum_dy_dyx(j->x + base, j->dy + base, j->relu_y + base, (size_t)hw,
				           j->stats[ch], &a, &b);
			else
				sum_dy_dyx(j->x + base, j->dy + base, NULL, (size_t)hw,
				           j->stats[ch], &a, &b);
			sdy[ch - c0] += a;
			sdyx[ch - c0] += b;
		}
	if (!part) {
		params_out(j, c0, c1, sdy, sdyx);
		return;
	}
	for (int ch = c0; ch < c1; ch++) {
		part[ch] = sdy[ch - c0];
		part[c + ch] = sdyx[ch - c0];
	}
}

void rt_bn_grad_params(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                       const float *relu_y, const float *stats, float eps, float *dparams)
{
	bn_job j = {.n = n,
	            .c = c,
	            .hw = hw,
	            .x = x,
	            .dy = dy,
	            .relu_y = relu_y,
	            .stats = stats,
	            .eps = eps,
	            .out = dparams};
	double part[BN_CHUNKS * 3 * BN_GROUP];
	if (!bn_run(t, &j, bn_grad_params_range, part))
		return;
	double sdy[BN_GROUP] = {0}, sdyx[BN_GROUP] = {0};
	for (int q = 0; q < BN_CHUNKS; q++)
		for (int ch = 0; ch < c; ch++) {
			sdy[ch] += part[(size_t)q * 3 * c + ch];
			sdyx[ch] += part[(size_t)q * 3 * c + c + ch];
		}
	params_out(&j, 0, c, sdy, sdyx);
}

/* The reference's float arithmetic element for element (so the two agree
 * to the bit), in blocks of LANES: GCC's -O2 cost model vectorises only
 * loops that need no scalar epilogue or overlap checks. */
static inline __attribute__((always_inline)) void
bn_dx_plane(size_t len, const float *restrict x, const float *restrict dy, const float *restrict y,
            float mean, float is, float k, float mdb, float mdg, float *restrict dx)
{
	size_t j = 0;
	for (; j + LANES <= len; j += LANES)
		for (int l = 0; l < LANES; l++) {
			float xhat = (x[j + l] - mean) * is;
			dx[j + l] = k * (grad_at(y, dy, j + l) - mdb - xhat * mdg);
		}
	for (; j < len; j++) {
		float xhat = (x[j] - mean) * is;
		dx[j] = k * (grad_at(y, dy, j) - mdb - xhat * mdg);
	}
}

static void bn_grad_input_range(const bn_job *j, int c0, int c1, int i0, int i1, double *part)
{
	(void)part; /* no sums */
	int n = j->n, c = j->c, hw = j->hw;
	double m = (double)n * hw;
	float is[BN_GROUP], k[BN_GROUP], mdb[BN_GROUP], mdg[BN_GROUP];
	for (int ch = c0; ch < c1; ch++) {
		int q = ch - c0;
		double invstd = 1.0 / sqrt((double)j->stats[c + ch] + j->eps);
		is[q] = (float)invstd;
		k[q] = (float)(j->gamma[ch] * invstd);
		mdb[q] = (float)(j->dparams[c + ch] / m);
		mdg[q] = (float)(j->dparams[ch] / m);
	}
	for (int i = i0; i < i1; i++)
		for (int ch = c0; ch < c1; ch++) {
			size_t base = ((size_t)i * c + ch) * hw;
			int q = ch - c0;
			if (j->relu_y)
				bn_dx_plane((size_t)hw, j->x + base, j->dy + base, j->relu_y + base,
				            j->stats[ch], is[q], k[q], mdb[q], mdg[q],
				            j->out + base);
			else
				bn_dx_plane((size_t)hw, j->x + base, j->dy + base, NULL,
				            j->stats[ch], is[q], k[q], mdb[q], mdg[q],
				            j->out + base);
		}
}

void rt_bn_grad_input(rt_threads *t, int n, int c, int hw, const float *x, const float *dy,
                      const float *relu_y, const float *stats, const float *gamma,
                      const float *dparams, float eps, float *dx)
{
	bn_job j = {.n = n,
	            .c = c,
	            .hw = hw,
	            .x = x,
	            .dy = dy,
	            .relu_y = relu_y,
	            .stats = stats,
	            .gamma = gamma,
	            .dparams = dparams,
	            .eps = eps,
	            .out = dx};
	bn_run(t, &j, bn_grad_input_range, NULL);
}

/* A relu's gradient over the threads, in ranges of whole cache lines: at
 * a training batch this is a pass over memory (6.4 MB a tensor in
 * ResNet-20's first stage), which one core alone does not saturate. */
typedef struct relu_grad_job {
	int64_t count;
	const float *y, *dy, *dres;
	float *dx;
} relu_grad_job;

enum { RELU_GRAD_LINE = 16, RELU_GRAD_MIN_TASK = 16 * 1024 };

static void relu_grad_task(void *ctx, int task, int tasks)
{
	const relu_grad_job *j = ctx;
	int64_t lines = (j->count + RELU_GRAD_LINE - 1) / RELU_GRAD_LINE;
	int64_t i0 = lines * task / tasks * RELU_GRAD_LINE;
	int64_t i1 = lines * (task + 1) / tasks * RELU_GRAD_LINE;
	i1 = i1 < j->count ? i1 : j->count;
	const float *y = j->y, *dy = j->dy, *dres = j->dres;
	float *dx = j->dx;
	int64_t i = i0;
	/* Explicit lanes: GCC 12 left the dres loop scalar, with a branch on
	 * y that mispredicts half the time. dx may be dy or dres itself, so
	 * each vector is loaded whole before it is stored. */
	for (; i + LANES <= i1; i += LANES) {
		lanes vy, d, r;
		memcpy(&vy, y + i, sizeof vy);
		memcpy(&d, dy + i, sizeof d);
		if (dres) {
			memcpy(&r, dres + i, sizeof r);
			d += r;
		}
		d = (lanes)((lanes_i)d & (vy > 0));
		memcpy(dx + i, &d, sizeof d);
	}
	for (; i < i1; i++) {
		float d = dres ? dy[i] + dres[i] : dy[i];
		dx[i] = y[i] > 0 ? d : 0.0f;
	}
}

void rt_relu_grad(rt_threads *t, int64_t count, const float *relu_y, const float *dy,
                  const float *dres, float *dx)
{
	relu_grad_job j = {.count = count, .y = relu_y, .dy = dy, .dres = dres, .dx = dx};
	int64_t most = count / RELU_GRAD_MIN_TASK;
	int tasks = 4 * rt_threads_count(t); /* a late thread takes fewer */
	tasks = most < tasks ? (int)most : tasks;
	rt_threads_run(t, relu_grad_task, &j, tasks < 1 ? 1 : tasks);
}

/* rt_subsample_grad_ref's result in one pass, each row zeroed and then
 * given dy's values while it is in cache, instead of a memset of the
 * whole tensor and then a pass that rewrites every s-th row: at 6.4 MB
 * (ResNet-20's first option-A shortcut) both passes came from memory.
 * Planes are split over the threads. */
typedef struct subsample_job {
	int planes, h, w, s;
	const float *dy;
	float *dx;
} subsample_job;

static void subsample_grad_task(void *ctx, int task, int tasks)
{
	const subsample_job *j = ctx;
	int h = j->h, w = j->w, s = j->s, oh = (h + s - 1) / s, ow = (w + s - 1) / s, p0, p1;
	rt_task_range(j->planes, task, tasks, &p0, &p1);
	for (size_t pl = (size_t)p0; pl < (size_t)p1; pl++)
		for (int y = 0; y < h; y++) {
			float *xr = j->dx + (pl * h + y) * w;
			memset(xr, 0, (size_t)w * sizeof *xr);
			if (y % s)
				continue;
			const float *yr = j->dy + (pl * oh + y / s) * ow;
			for (int x = 0; x < ow; x++)
				xr[(size_t)x * s] = yr[x];
		}
}

void rt_subsample_grad(rt_threads *t, int n, int c, int h, int w, int s, const float *dy, float *dx)
{
	subsample_job j = {.planes = n * c, .h = h, .w = w, .s = s, .dy = dy, .dx = dx};
	int tasks = rt_threads_count(t) * 2;
	rt_threads_run(t, subsample_grad_task, &j, tasks < j.planes ? tasks : j.planes);
}
