/* Kernels the compiled code calls besides the GEMM-based ones (conv.c):
 * inference BatchNorm, the option-A shortcut, BatchNorm folding and the
 * UNARY ops' (ops.def). Every function writes its whole output. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "runtime.h"

/* Inference BatchNorm as one multiply-add per element. */
typedef struct bn_job {
	int n, c, hw, relu;
	const float *x, *mean, *var, *gamma, *beta;
	float eps;
	const float *res;
	float *y;
	int by_images; /* tasks take images, not channels */
} bn_job;

/* A task's channels image by image, BN_GROUP at a time: each image's
 * planes of them one contiguous run; with few channels and images enough,
 * a task's images, all their channels (see kernels_train.c's BN_GROUP). */
enum { BN_GROUP = 64 };

static void bn_task(void *ctx, int task, int tasks)
{
	const bn_job *j = ctx;
	int c0 = 0, c1 = j->c, relu = j->relu, n0 = 0, n1 = j->n;
	if (j->by_images)
		rt_task_range(j->n, task, tasks, &n0, &n1);
	else
		rt_task_range(j->c, task, tasks, &c0, &c1);
	for (int g0 = c0; g0 < c1; g0 += BN_GROUP) {
		int g1 = c1 - g0 < BN_GROUP ? c1 : g0 + BN_GROUP;
		float scale[BN_GROUP], shift[BN_GROUP];
		for (int ch = g0; ch < g1; ch++) {
			scale[ch - g0] = j->gamma[ch] / sqrtf(j->var[ch] + j->eps);
			shift[ch - g0] = j->beta[ch] - j->mean[ch] * scale[ch - g0];
		}
		for (int i = n0; i < n1; i++)
			for (int ch = g0; ch < g1; ch++) {
				size_t base = ((size_t)i * j->c + ch) * j->hw;
				const float *xp = j->x + base, *rp = j->res ? j->res + base : NULL;
				float *yp = j->y + base, sc = scale[ch - g0], sh = shift[ch - g0];
				for (int k = 0; k < j->hw; k++) {
					float v = xp[k] * sc + sh;
					if (rp)
						v = v + rp[k];
					yp[k] = relu && v <= 0.0f ? 0.0f : v;
				}
			}
	}
}

/* channels split over the pool's threads */
void rt_batchnorm(rt_threads *t, int n, int c, int hw, const float *x, const float *mean,
                  const float *var, const float *gamma, const float *beta, float eps,
                  const float *res, float *y, int relu)
{
	int tasks = rt_threads_count(t) * 2;
	bn_job j = {
	    n, c, hw, relu, x, mean, var, gamma, beta, eps, res, y, c <= BN_GROUP && n >= tasks};
	rt_threads_run(t, bn_task, &j, j.by_images ? tasks : tasks < c ? tasks : c);
}

/* The option-A shortcut in one pass: subsample by stride, zero channels
 * before and after; the images split over the threads. */
typedef struct shortcut_job {
	int n, c, h, w, stride, before, after;
	const float *x;
	float *y;
} shortcut_job;

static void shortcut_task(void *ctx, int task, int tasks)
{
	const shortcut_job *j = ctx;
	int c = j->c, h = j->h, w = j->w, stride = j->stride, i0, i1;
	int oh = (h + stride - 1) / stride, ow = (w + stride - 1) / stride;
	size_t plane = (size_t)oh * ow, oc = (size_t)c + j->before + j->after;
	rt_task_range(j->n, task, tasks, &i0, &i1);
	for (int i = i0; i < i1; i++) {
		float *yi = j->y + (size_t)i * oc * plane;
		memset(yi, 0, (size_t)j->before * plane * sizeof(float));
		memset(yi + (size_t)(j->before + c) * plane, 0,
		       (size_t)j->after * plane * sizeof(float));
		for (int ch = 0; ch < c; ch++) {
			const float *xp = j->x + ((size_t)i * c + ch) * h * w;
			float *yp = yi + (size_t)(j->before + ch) * plane;
			for (int r = 0; r < oh; r++)
				for (int q = 0; q < ow; q++)
					yp[(size_t)r * ow + q] =
					    xp[(size_t)r * stride * w + q * stride];
		}
	}
}

void rt_shortcut_a(rt_threads *t, int n, int c, int h, int w, int stride, int before, int after,
                   const float *x, float *y)
{
	shortcut_job j = {n, c, h, w, stride, before, after, x, y};
	int tasks = rt_threads_count(t) * 2;
	rt_threads_run(t, shortcut_task, &j, tasks < n ? tasks : n);
}

void rt_bn_fold_weight(int oc, int per, const float *w, const float *gamma, const float *var,
                       float eps, float *y)
{
	for (int o = 0; o < oc; o++) {
		float s = gamma[o] / sqrtf(var[o] + eps);
		for (int i = 0; i < per; i++)
			y[(size_t)o * per + i] = w[(size_t)o * per + i] * s;
	}
}

void rt_bn_fold_bias(int oc, const float *gamma, const float *beta, const float *mean,
                     const float *var, const float *b, float eps, float *y)
{
	for (int o = 0; o < oc; o++)
		y[o] = ((b ? b[o] : 0.0f) - mean[o]) * (gamma[o] / sqrtf(var[o] + eps)) + beta[o];
}

void rt_sigmoid(size_t count, const float *x, float *y)
{
	for (size_t i = 0; i < count; i++)
		y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void rt_sigmoid_grad(size_t count, const float *y, const float *dy, float *dx)
{
	for (size_t i = 0; i < count; i++)
		dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
}
