/* 3x3 convolutions with stride 1 by Winograd's minimal filtering, F(4x4, 3x3)
 * (Lavin and Gray 2015): each 4x4 block of output comes from a 6x6 tile of
 * input, and the 9 x 16 = 144 multiplications per tile and channel pair
 * become 36, done as 36 GEMMs, one per tile position:
 *
 *   U[p] = (G g G^T)[p]    [oc x c]  weights, once, when they are prepared
 *   V[p] = (B^T d B)[p]    [c x tiles]  input tiles
 *   M[p] = U[p] . V[p]     [oc x tiles]
 *   y    = A^T M A         4x4 outputs per tile, then bias, residual, relu
 *
 * with the interpolation points 0, +-1, +-2 and infinity. Tiles go in blocks
 * whose V and M fit in about a megabyte, so the GEMMs read them from cache;
 * within a block the transforms split over channels and the GEMMs over the
 * 36 positions, each on one thread: the sums, and so the results, do not
 * depend on the thread count. */
#include <string.h>

#include "runtime.h"

enum { TILE = 6, OUT = 4, POS = 36, BLOCK_FLOATS = 256 * 1024 };

static int tiles_of(int size)
{
	return (size + OUT - 1) / OUT;
}

/* Tiles per block: V and M (36 x (c + oc) floats a tile) in BLOCK_FLOATS,
 * at least 16 (a GEMM panel), never more than there are. */
static int block_tiles(const rt_conv *p)
{
	long total = (long)p->n * tiles_of(p->oh) * tiles_of(p->ow);
	long fit = BLOCK_FLOATS / (POS * (long)(p->c + p->oc));
	fit = fit < 16 ? 16 : fit / 16 * 16;
	/* a whole number of vectors: the last one's spare lanes are written too */
	total = (total + 7) / 8 * 8;
	return (int)(total < fit ? total : fit);
}

size_t rt_winograd_scratch_floats(const rt_conv *p)
{
	return (size_t)POS * (size_t)(p->c + p->oc) * (size_t)block_tiles(p);
}

bool rt_winograd_fits(const rt_conv *p)
{
	return p->k == 3 && p->stride == 1 && p->oh >= 1 && p->ow >= 1;
}

/* ---- weights: U = G g G^T, in double, for every (oc, c) pair ------------ */

void rt_winograd_weight(int oc, int c, const float *w, float *u)
{
	static const double G[TILE][3] = {
	    {1.0 / 4, 0, 0},
	    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
	    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
	    {1.0 / 24, 1.0 / 12, 1.0 / 6},
	    {1.0 / 24, -1.0 / 12, 1.0 / 6},
	    {0, 0, 1},
	};
	for (int o = 0; o < oc; o++)
		for (int i = 0; i < c; i++) {
			const float *g = w + ((size_t)o * c + i) * 9;
			double t[TILE][3];
			for (int r = 0; r < TILE; r++)
				for (int k = 0; k < 3; k++)
					t[r][k] = G[r][0] * g[k] + G[r][1] * g[3 + k] +
					          G[r][2] * g[6 + k];
			for (int r = 0; r < TILE; r++)
				for (int s = 0; s < TILE; s++)
					u[((size_t)(r * TILE + s) * oc + o) * c + i] =
					    (float)(t[r][0] * G[s][0] + t[r][1] * G[s][1] +
					            t[r][2] * G[s][2]);
		}
}

/* ---- one block of tiles ----------------------------------------------------- */

typedef struct wino {
	const rt_conv *p;
	const float *x, *u, *b, *res;
	float *y, *v, *m;
	int relu;
	int th, tw; /* tiles per image, down and across */
	long t0;    /* the block's first tile */
	int tb, ld; /* tiles in the block; the row stride of V and M */
	rt_threads *pool;
} wino;

/* Eight tiles at a time, one per vector lane: the transforms' arithmetic
 * runs on whole vectors, and V and M, tile-contiguous, load and store
 * whole vectors. Every lane does the same arithmetic as a tile alone
 * would, so the lane a tile lands in changes no bits. */
typedef float v8 __attribute__((vector_size(32)));
enum { LANES = 8 };

/* B^T applied to six values (a column, then a row, of the tile). */
#define BT(d, r)                                                                                   \
	do {                                                                                       \
		r[0] = 4 * d[0] - 5 * d[2] + d[4];                                                 \
		r[1] = -4 * d[1] - 4 * d[2] + d[3] + d[4];                                         \
		r[2] = 4 * d[1] - 4 * d[2] - d[3] + d[4];                                          \
		r[3] = -2 * d[1] - d[2] + 2 * d[3] + d[4];                                         \
		r[4] = 2 * d[1] - d[2] - 2 * d[3] + d[4];                                          \
		r[5] = 4 * d[1] - 5 * d[3] + d[5];                                                 \
	} while (0)

static void tile_pos(const wino *w, long t, int *img, int *ty, int *tx)
{
	int per = w->th * w->tw;
	*img = (int)(t / per);
	int r = (int)(t % per);
	*ty = r / w->tw;
	*tx = r % w->tw;
}

/* The 6x6 input tiles of lanes j.. of the block, channel ci, padding 0. */
static void load_tiles(const wino *w, int ci, int j, v8 d[TILE][TILE])
{
	const rt_conv *p = w->p;
	memset(d, 0, sizeof(v8) * TILE * TILE);
	for (int k = 0; k < LANES && j + k < w->tb; k++) {
		int img, ty, tx;
		tile_pos(w, w->t0 + j + k, &img, &ty, &tx);
		int y0 = ty * OUT - p->pad, x0 = tx * OUT - p->pad;
		const float *plane = w->x + ((size_t)img * p->c + ci) * p->h * p->w;
		if (y0 >= 0 && x0 >= 0 && y0 + TILE <= p->h && x0 + TILE <= p->w) {
			const float *row = plane + (size_t)y0 * p->w + x0;
			for (int r = 0; r < TILE; r++, row += p->w)
				for (int s = 0; s < TILE; s++)
					d[r][s][k] = row[s];
			continue;
		}
		for (int r = 0; r < TILE; r++) {
			int yy = y0 + r;
			if (yy < 0 || yy >= p->h)
				continue;
			for (int s = 0; s < TILE; s++) {
				int xx = x0 + s;
				if (xx >= 0 && xx < p->w)
					d[r][s][k] = plane[(size_t)yy * p->w + xx];
			}
		}
	}
}

static void input_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int c0 = (int)((long)p->c * task / tasks), c1 = (int)((long)p->c * (task + 1) / tasks);
	for (int ci = c0; ci < c1; ci++)
		for (int j = 0; j < w->tb; j += LANES) {
			v8 d[TILE][TILE], t[TILE][TILE];
			load_tiles(w, ci, j, d);
			/* t = B^T d, column by column; then each row of t times B */
			for (int s = 0; s < TILE; s++) {
				v8 col[TILE], r[TILE];
				for (int k = 0; k < TILE; k++)
					col[k] = d[k][s];
				BT(col, r);
				for (int k = 0; k < TILE; k++)
					t[k][s] = r[k];
			}
			for (int k = 0; k < TILE; k++) {
				v8 r[TILE];
				BT(t[k], r);
				for (int s = 0; s < TILE; s++)
					memcpy(w->v + ((size_t)(k * TILE + s) * p->c + ci) * w->ld +
					           j,
					       &r[s], sizeof(v8));
			}
		}
}

static void gemm_task(void *ctx, int pos, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	rt_gemm_b b = {.data = w->v + (size_t)pos * p->c * w->ld, .ld = w->ld};
	rt_gemm_serial(w->pool, p->oc, w->tb, p->c, w->u + (size_t)pos * p->oc * p->c, p->c, 0, &b,
	               w->m + (size_t)pos * p->oc * w->ld, w->ld, NULL);
}

/* A^T applied to six values. */
#define AT(m, r)                                                                                   \
	do {                                                                                       \
		r[0] = m[0] + m[1] + m[2] + m[3] + m[4];                                           \
		r[1] = m[1] - m[2] + 2 * m[3] - 2 * m[4];                                          \
		r[2] = m[1] + m[2] + 4 * m[3] + 4 * m[4];                                          \
		r[3] = m[1] - m[2] + 8 * m[3] - 8 * m[4] + m[5];                                   \
	} while (0)

static void output_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int o0 = (int)((long)p->oc * task / tasks), o1 = (int)((long)p->oc * (task + 1) / tasks);
	size_t plane = (size_t)p->oh * p->ow;
	for (int o = o0; o < o1; o++) {
		float bias = w->b ? w->b[o] : 0.0f;
		for (int j = 0; j < w->tb; j += LANES) {
			v8 m[TILE][TILE], t[OUT][TILE], y[OUT][OUT];
			for (int k = 0; k < POS; k++)
				memcpy(&m[k / TILE][k % TILE],
				       w->m + ((size_t)k * p->oc + o) * w->ld + j, sizeof(v8));
			/* t = A^T m, column by column; then each row of t times A */
			for (int s = 0; s < TILE; s++) {
				v8 col[TILE], r[OUT];
				for (int k = 0; k < TILE; k++)
					col[k] = m[k][s];
				AT(col, r);
				for (int k = 0; k < OUT; k++)
					t[k][s] = r[k];
			}
			for (int k = 0; k < OUT; k++)
				AT(t[k], y[k]);
			for (int l = 0; l < LANES && j + l < w->tb; l++) {
				int img, ty, tx;
				tile_pos(w, w->t0 + j + l, &img, &ty, &tx);
				size_t base = ((size_t)img * p->oc + o) * plane;
				for (int k = 0; k < OUT && ty * OUT + k < p->oh; k++)
					for (int s = 0; s < OUT && tx * OUT + s < p->ow; s++) {
						size_t at = base + (size_t)(ty * OUT + k) * p->ow +
						            tx * OUT + s;
						/* the plain kernels' epilogue order: conv +
						 * bias, + residual, then relu (NaN kept) */
						float v = y[k][s][l] + bias;
						if (w->res)
							v += w->res[at];
						if (w->relu && !(v > 0) && v == v)
							v = 0.0f;
						w->y[at] = v;
					}
			}
		}
	}
}

void rt_conv2d_winograd(rt_threads *t, const rt_conv *p, const float *x, const float *u,
                        const float *b, const float *res, float *y, int relu, float *scratch)
{
	wino w = {
	    .p = p,
	    .x = x,
	    .u = u,
	    .b = b,
	    .res = res,
	    .y = y,
	    .relu = relu,
	    .th = tiles_of(p->oh),
	    .tw = tiles_of(p->ow),
	    .ld = block_tiles(p),
	    .pool = t,
	};
	w.v = scratch;
	w.m = scratch + (size_t)POS * p->c * w.ld;
	long total = (long)p->n * w.th * w.tw;
	int threads = rt_threads_count(t);
	for (w.t0 = 0; w.t0 < total; w.t0 += w.ld) {
		w.tb = (int)(total - w.t0 < w.ld ? total - w.t0 : w.ld);
		rt_threads_run(t, input_task, &w, p->c < threads * 4 ? p->c : threads * 4);
		rt_threads_run(t, gemm_task, &w, POS);
		rt_threads_run(t, output_task, &w, p->oc < threads * 4 ? p->oc : threads * 4);
	}
}
