/* Max pooling for compiled code: rt_maxpool_ref's results (the first NaN of
 * a window wins, else the maximum; padding never wins), computed a row of
 * outputs at a time so the compiler vectorises across it, with planes
 * shared over the pool's threads. */
#include <math.h>

#include "runtime.h"

typedef struct maxpool {
	const rt_pool *p;
	const float *x;
	float *y;
} maxpool;

/* Which output columns have their whole window inside the row. */
static void interior(const rt_pool *p, int *lo, int *hi)
{
	*lo = (p->pad + p->stride - 1) / p->stride;
	*hi = p->w - p->k + p->pad < 0 ? 0 : (p->w - p->k + p->pad) / p->stride + 1;
	if (*hi > p->ow)
		*hi = p->ow;
	if (*lo > *hi)
		*lo = *hi;
}

static float take(float v, float m)
{
	return v > m || isnan(v) ? v : m;
}

static void planes(void *ctx, int task, int tasks)
{
	const maxpool *mp = ctx;
	const rt_pool *p = mp->p;
	long n = (long)p->n * p->c;
	long pl0 = n * task / tasks, pl1 = n * (task + 1) / tasks;
	int lo, hi;
	interior(p, &lo, &hi);
	for (long pl = pl0; pl < pl1; pl++) {
		const float *xp = mp->x + pl * p->h * p->w;
		for (int oy = 0; oy < p->oh; oy++) {
			float *yr = mp->y + (pl * p->oh + oy) * p->ow;
			int y0 = oy * p->stride - p->pad;
			int ky0 = y0 < 0 ? -y0 : 0, ky1 = p->h - y0 < p->k ? p->h - y0 : p->k;
			for (int ox = 0; ox < p->ow; ox++)
				yr[ox] = -INFINITY;
			/* window rows in order, and within a row columns in order:
			 * the reference's scan order, so the same NaN wins */
			for (int ky = ky0; ky < ky1; ky++) {
				const float *xr = xp + (long)(y0 + ky) * p->w;
				for (int kx = 0; kx < p->k; kx++) {
					const float *xk = xr + kx - p->pad;
					for (int ox = lo; ox < hi; ox++)
						yr[ox] = take(xk[(long)ox * p->stride], yr[ox]);
				}
				/* the edge columns, clipped */
				for (int ox = 0; ox < p->ow; ox = ox + 1 == lo ? hi : ox + 1) {
					if (ox >= lo && ox < hi)
						continue;
					int x0 = ox * p->stride - p->pad;
					for (int kx = x0 < 0 ? -x0 : 0; kx < p->k && x0 + kx < p->w;
					     kx++)
						yr[ox] = take(xr[x0 + kx], yr[ox]);
				}
			}
		}
	}
}

void rt_maxpool(rt_threads *t, const rt_pool *p, const float *x, float *y)
{
	maxpool mp = {p, x, y};
	long n = (long)p->n * p->c;
	int threads = rt_threads_count(t);
	rt_threads_run(t, planes, &mp, (int)(n < threads * 4 ? n : threads * 4));
}
