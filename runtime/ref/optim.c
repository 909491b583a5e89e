/* The optimiser step as compiled code calls it: the learning rate is an
 * input of the training step (read through a pointer), so a schedule
 * changes it without recompiling. */
#include <string.h>

#include "runtime.h"

void rt_sgd_step(size_t count, float *w, const float *g, float *v, const float *lr, float momentum,
                 float weight_decay)
{
	rt_sgd_momentum_ref(count, w, g, v, *lr, momentum, weight_decay);
}

void rt_grad_allreduce(rt_threads *p, int64_t n, const float *g, float *out, int left)
{
	if (out != g)
		memcpy(out, g, (size_t)n * sizeof *out);
	rt_threads_reduce(p, out, n, left);
}

/* The law of total variance: the whole batch's variance is the mean of
 * the shares' variances plus the variance of their means. */
void rt_bn_stats_allreduce(rt_threads *p, int c, const float *stats, float *out)
{
	memcpy(out, stats, (size_t)c * sizeof *out);
	rt_threads_reduce(p, out, c, 0);
	for (int i = 0; i < c; i++) {
		float d = stats[i] - out[i];
		out[c + i] = stats[c + i] + d * d;
	}
	rt_threads_reduce(p, out + c, c, 0);
}
