/* Max pooling for compiled code: rt_maxpool_ref's results (the last NaN of
 * a window wins, else the first maximum; padding never wins), computed a
 * row of outputs at a time so the compiler vectorises across it, with
 * planes shared over the pool's threads. */
#include <math.h>
#include <stdbool.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

#if defined(__AVX2__)
/* take() on eight lanes: v where v > m or v is NaN, else m */
static inline __m256 take8(__m256 v, __m256 m)
{
	__m256 pick =
	    _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
	return _mm256_blendv_ps(m, v, pick);
}

/* The even (odd) lanes of a then b, in order: two in-lane shuffles, not
 * the generic shuffle GCC makes of it (vpermd and a blend, slow on Zen) */
static inline __m256 lanes8(__m256 a, __m256 b, int odd)
{
	__m256 q = odd ? _mm256_shuffle_ps(a, b, 0xdd) : _mm256_shuffle_ps(a, b, 0x88);
	return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(q), 0xd8));
}
#endif

/* The 3x3 stride-2 pool (ResNet's, after the stem) in two passes: each
 * input row's window maximum across (h), then down three of those. The
 * scan order becomes row by row, which gives the reference's result: a
 * window's maximum is the first of its row maxima to exceed the ones
 * before (the first in scan order, as ties keep the earlier value), and a
 * NaN is the last row's last NaN either way. A row's across pass serves
 * two output rows, and whole vectors of it are even and odd lanes: eight
 * outputs from four loads, where the strided loop loaded every value. */
enum { ACROSS_MAX_OW = 512 };

static bool across_applies(const rt_pool *p)
{
#if defined(__AVX2__)
	return p->k == 3 && p->stride == 2 && p->ow <= ACROSS_MAX_OW;
#else
	(void)p;
	return false;
#endif
}

/* The window maximum across input row xr for output column ox, clipped */
static float across1(const rt_pool *p, const float *xr, int ox)
{
	int x0 = 2 * ox - p->pad;
	float m = -INFINITY;
	for (int kx = x0 < 0 ? -x0 : 0; kx < 3 && x0 + kx < p->w; kx++)
		m = take(xr[x0 + kx], m);
	return m;
}

/* h[ox] = the window maximum across input row xr for output column ox */
static void across(const rt_pool *p, const float *xr, float *h)
{
	int ox = 0;
#if defined(__AVX2__)
	int first = (p->pad + 1) / 2;
	for (ox = 0; ox < first && ox < p->ow; ox++)
		h[ox] = across1(p, xr, ox);
	/* eight outputs read the 17 floats from 2 ox - pad; the last eight
	 * again where the row ends inside a group (recomputed, the same) */
	int last = p->ow - 8;
	for (;; ox += 8) {
		if (ox + 8 > p->ow && ox < p->ow && last >= first)
			ox = last;
		if (ox + 8 > p->ow || 2 * ox - p->pad + 17 > p->w)
			break;
		const float *b = xr + 2 * ox - p->pad;
		__m256 l0 = _mm256_loadu_ps(b), l1 = _mm256_loadu_ps(b + 8);
		__m256 l2 = _mm256_loadu_ps(b + 1), l3 = _mm256_loadu_ps(b + 9);
		__m256 m = lanes8(l0, l1, 0);
		m = take8(lanes8(l0, l1, 1), m);
		m = take8(lanes8(l2, l3, 1), m);
		_mm256_storeu_ps(h + ox, m);
	}
#endif
	for (; ox < p->ow; ox++)
		h[ox] = across1(p, xr, ox);
}

static void plane_across(const rt_pool *p, const float *xp, float *yp)
{
	/* the across maxima of the last three input rows, by row mod 3 */
	float h[3][ACROSS_MAX_OW];
	int held[3] = {-1, -1, -1};
	for (int oy = 0; oy < p->oh; oy++) {
		float *yr = yp + (long)oy * p->ow;
		int y0 = 2 * oy - p->pad;
		int ky0 = y0 < 0 ? -y0 : 0, ky1 = p->h - y0 < 3 ? p->h - y0 : 3;
		const float *rows[3];
		for (int ky = ky0; ky < ky1; ky++) {
			int r = y0 + ky, slot = r % 3;
			if (held[slot] != r) {
				across(p, xp + (long)r * p->w, h[slot]);
				held[slot] = r;
			}
			rows[ky - ky0] = h[slot];
		}
		int n = ky1 - ky0, ox = 0;
		if (n <= 0) {
			for (ox = 0; ox < p->ow; ox++)
				yr[ox] = -INFINITY;
			continue;
		}
#if defined(__AVX2__)
		for (; ox + 8 <= p->ow; ox += 8) {
			__m256 m = _mm256_loadu_ps(rows[0] + ox);
			for (int i = 1; i < n; i++)
				m = take8(_mm256_loadu_ps(rows[i] + ox), m);
			_mm256_storeu_ps(yr + ox, m);
		}
#endif
		for (; ox < p->ow; ox++) {
			float m = rows[0][ox];
			for (int i = 1; i < n; i++)
				m = take(rows[i][ox], m);
			yr[ox] = m;
		}
	}
}

static void planes(void *ctx, int task, int tasks)
{
	const maxpool *mp = ctx;
	const rt_pool *p = mp->p;
	long n = (long)p->n * p->c;
	long pl0 = n * task / tasks, pl1 = n * (task + 1) / tasks;
	int lo, hi;
	interior(p, &lo, &hi);
	if (across_applies(p)) {
		for (long pl = pl0; pl < pl1; pl++)
			plane_across(p, mp->x + pl * p->h * p->w, mp->y + pl * p->oh * p->ow);
		return;
	}
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
