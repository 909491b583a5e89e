/* Convolutions and linear layers on rt_gemm, forward and backward.
 *
 * A convolution is a GEMM whose B operand (the unrolled input windows,
 * "im2col") is never built: the GEMM asks for it panel by panel and
 * pack_windows gathers each panel straight from the image, so no scratch
 * buffer exists and every value is read while the panel is in cache.
 *   forward       y[oc x pix]  = W[oc x c*k*k] . windows(x)[c*k*k x pix]
 *   weight grad   dW[oc x c*k*k] += dY[oc x pix] . windows(x)^T, per image
 *   input grad    stride 1: a forward convolution of dY with W transposed
 *                 and flipped; strided: W^T . dY into columns, scattered
 * Bias, the residual and relu happen in the GEMM's epilogue. */
#include <math.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <stdbool.h>
#include <string.h>

#include "runtime.h"

/* What the pack callbacks read: one image's planes and the geometry.
 * (c, h, w, k, stride, pad) describe x; oh, ow the windows. */
typedef struct windows {
	const float *x;
	int c, h, w, k, stride, pad, oh, ow;
} windows;

static windows windows_of(const rt_conv *p, const float *x)
{
	return (windows){x, p->c, p->h, p->w, p->k, p->stride, p->pad, p->oh, p->ow};
}

/* out[t] = row[ix + 2 t] for t < run, every index inside the row [0, w):
 * eight at a time from two vectors' even lanes where sixteen floats from
 * the index are inside the row (the stem's 7x7 and the downsampling
 * layers: a scalar gather was a third of the stem's time). */
typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

static int gather_stride2(const float *row, int ix, int w, float *out, int run)
{
	int t = 0;
	for (; t + 8 <= run && ix + 2 * t + 16 <= w; t += 8) {
		v8 a, b;
		memcpy(&a, row + ix + 2 * t, sizeof a);
		memcpy(&b, row + ix + 2 * t + 8, sizeof b);
#if defined(__AVX2__)
		/* in-lane pairs, then the 64-bit halves in order: two cheap
		 * shuffles where the generic one compiles to two vpermd and a
		 * blend (slow on Zen) */
		__m256 q = _mm256_shuffle_ps((__m256)a, (__m256)b, 0x88);
		v8 even = (v8)_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(q), 0xd8));
#else
		v8 even = __builtin_shuffle(a, b, (v8i){0, 2, 4, 6, 8, 10, 12, 14});
#endif
		memcpy(out + t, &even, sizeof even);
	}
	return t;
}

/* out[q] = x[tap of window pix0 + q] for q < count, for the tap (ci, kh, kw). */
static void gather(const windows *v, int ci, int kh, int kw, int pix0, int count, float *out)
{
	const float *plane = v->x + (size_t)ci * v->h * v->w;
	int oy = pix0 / v->ow, ox = pix0 % v->ow;
	for (int q = 0; q < count;) {
		int run = v->ow - ox < count - q ? v->ow - ox : count - q;
		int iy = oy * v->stride + kh - v->pad;
		if (iy < 0 || iy >= v->h) {
			memset(out + q, 0, (size_t)run * sizeof(float));
		} else {
			const float *row = plane + (size_t)iy * v->w;
			int ix = ox * v->stride + kw - v->pad;
			if (v->stride == 1 && ix >= 0 && ix + run <= v->w) {
				memcpy(out + q, row + ix, (size_t)run * sizeof(float));
			} else {
				int t = 0, s = v->stride;
				/* the padding's zeros on the left, then whole vectors,
				 * the rest of the row, and the padding on the right;
				 * no test per value (short rows are most of a small
				 * map's windows: a third of a strided layer's time) */
				for (; t < run && ix < 0; t++, ix += s)
					out[q + t] = 0.0f;
				if (s == 2) {
					int done =
					    gather_stride2(row, ix, v->w, out + q + t, run - t);
					t += done;
					ix += 2 * done;
				}
				int inside = ix < v->w ? (v->w - 1 - ix) / s + 1 : 0;
				if (inside > run - t)
					inside = run - t;
				for (int e = 0; e < inside; e++)
					out[q + t + e] = row[ix + s * e];
				for (t += inside; t < run; t++)
					out[q + t] = 0.0f;
			}
		}
		q += run;
		ox = 0;
		oy++;
	}
}

/* Small strided maps: where each column's pixel reads its tap from (an
 * offset in the plane, or -1 in the padding), a table per tap made once
 * per call and used for every input channel: rows of a few values each
 * made the row-wise gather all loop overhead (a 14x14 -> 7x7 layer spent
 * 37% of its time packing). */
enum { TABLE_COLS = 256, TABLE_MAX_OW = 16 };

static void pack_windows_table(const windows *v, int k0, int kc, int n0, int nc, float *dst)
{
	int nr = rt_gemm_nr(), kk = v->k * v->k;
	int off[7 * 7 * TABLE_COLS]; /* kk <= 49: callers check */
	for (int c0 = 0; c0 < nc; c0 += TABLE_COLS) {
		int cn = nc - c0 < TABLE_COLS ? nc - c0 : TABLE_COLS;
		for (int q = 0; q < cn; q++) {
			int pix = n0 + c0 + q, oy = pix / v->ow, ox = pix % v->ow;
			for (int t = 0; t < kk; t++) {
				int iy = oy * v->stride + t / v->k - v->pad;
				int ix = ox * v->stride + t % v->k - v->pad;
				bool in = iy >= 0 && iy < v->h && ix >= 0 && ix < v->w;
				off[t * TABLE_COLS + q] = in ? iy * v->w + ix : -1;
			}
		}
		for (int r = 0; r < kc; r++) {
			int k = k0 + r, ci = k / kk, t = k % kk;
			const float *plane = v->x + (size_t)ci * v->h * v->w;
			const int *o = off + t * TABLE_COLS;
			for (int j0 = 0; j0 < cn; j0 += nr) {
				int cols = cn - j0 < nr ? cn - j0 : nr;
				float *d = dst + (size_t)(c0 + j0) * kc + (size_t)r * nr;
				/* a load from the plane's start for the padding, then
				 * zero: no branch on a pattern the predictor misses */
				for (int q = 0; q < cols; q++) {
					int at = o[j0 + q];
					float x = plane[at < 0 ? 0 : at];
					d[q] = at < 0 ? 0.0f : x;
				}
				for (int q = cols; q < nr; q++)
					d[q] = 0.0f;
			}
		}
	}
}

/* B = windows(x): rows (ci, kh, kw), columns output pixels. Each row is
 * gathered whole (runs along output rows, copies where stride 1 allows),
 * then dealt out to the panels nr floats at a time. */
static void pack_windows(const void *ctx, int k0, int kc, int n0, int nc, float *dst)
{
	const windows *v = ctx;
	int nr = rt_gemm_nr(), kk = v->k * v->k;
	if (v->stride > 1 && v->ow <= TABLE_MAX_OW && v->k <= 7 && TABLE_COLS % nr == 0) {
		pack_windows_table(v, k0, kc, n0, nc, dst);
		return;
	}
	enum { CHUNK = 1024 };
	float row[CHUNK];
	for (int c0 = 0; c0 < nc; c0 += CHUNK) {
		int cn = nc - c0 < CHUNK ? nc - c0 : CHUNK; /* a multiple of nr unless last */
		for (int r = 0; r < kc; r++) {
			int k = k0 + r, ci = k / kk, kh = k % kk / v->k, kw = k % v->k;
			gather(v, ci, kh, kw, n0 + c0, cn, row);
			for (int j0 = 0; j0 < cn; j0 += nr) {
				int cols = cn - j0 < nr ? cn - j0 : nr;
				float *d = dst + (size_t)(c0 + j0) * kc + (size_t)r * nr;
				/* a constant size is copied inline, not by a call */
				if (cols == 16)
					memcpy(d, row + j0, 16 * sizeof(float));
				else if (cols == 32)
					memcpy(d, row + j0, 32 * sizeof(float));
				else
					memcpy(d, row + j0, (size_t)cols * sizeof(float));
				for (int q = cols; q < nr; q++)
					d[q] = 0.0f;
			}
		}
	}
}

/* B = windows(x)^T: rows output pixels, columns (ci, kh, kw). */
/* B = windows(x)^T: rows output pixels, columns (ci, kh, kw). A column's
 * plane offset and tap are looked up, not divided out, per element; windows
 * clear of the padding skip the bounds checks. */
static void pack_windows_t(const void *ctx, int p0, int pc, int n0, int nc, float *dst)
{
	const windows *v = ctx;
	int nr = rt_gemm_nr(), kk = v->k * v->k;
	enum { CHUNK = 512 };
	int off[CHUNK];
	short kh[CHUNK], kw[CHUNK];
	for (int c0 = 0; c0 < nc; c0 += CHUNK) {
		int cn = nc - c0 < CHUNK ? nc - c0 : CHUNK;
		for (int q = 0; q < cn; q++) {
			int col = n0 + c0 + q, ci = col / kk;
			kh[q] = (short)(col % kk / v->k);
			kw[q] = (short)(col % v->k);
			off[q] = (ci * v->h + kh[q]) * v->w + kw[q];
		}
		for (int r = 0; r < pc; r++) {
			int pix = p0 + r, oy = pix / v->ow, ox = pix % v->ow;
			int iy0 = oy * v->stride - v->pad, ix0 = ox * v->stride - v->pad;
			int base = iy0 * v->w + ix0;
			bool inside =
			    iy0 >= 0 && ix0 >= 0 && iy0 + v->k <= v->h && ix0 + v->k <= v->w;
			for (int j0 = 0; j0 < cn; j0 += nr) {
				int cols = cn - j0 < nr ? cn - j0 : nr;
				float *d = dst + (size_t)(c0 + j0) * pc + (size_t)r * nr;
				if (inside) {
					for (int q = 0; q < cols; q++)
						d[q] = v->x[off[j0 + q] + base];
				} else {
					for (int q = 0; q < cols; q++) {
						int iy = iy0 + kh[j0 + q], ix = ix0 + kw[j0 + q];
						d[q] = iy >= 0 && iy < v->h && ix >= 0 && ix < v->w
						           ? v->x[off[j0 + q] + base]
						           : 0.0f;
					}
				}
				for (int q = cols; q < nr; q++)
					d[q] = 0.0f;
			}
		}
	}
}

static bool pointwise(const rt_conv *p)
{
	return p->k == 1 && p->stride == 1 && p->pad == 0;
}

size_t rt_conv2d_scratch_floats(const rt_conv *p)
{
	(void)p;
	return 0;
}

rt_conv_algo rt_conv2d_algo(const rt_conv *p, bool residual)
{
	/* no residual: with no memory for its panels, the GEMM does the
	 * whole convolution over again, and y may be the residual */
	return !residual && rt_conv2d_direct_fits(p) ? RT_CONV_ALGO_DIRECT : RT_CONV_ALGO_GEMM;
}

/* w as rt_gemm wants A: row-major, or packed (rt_conv_weight_pack) */
static void conv2d(rt_threads *t, const rt_conv *p, const float *x, const float *w, int a_layout,
                   const float *b, const float *res, float *y, int relu);

void rt_conv2d(rt_threads *t, const rt_conv *p, const float *x, const float *w, const float *b,
               const float *res, float *y, int relu, int algo)
{
	if (algo == RT_CONV_ALGO_DIRECT && rt_conv2d_algo(p, res != NULL) == RT_CONV_ALGO_DIRECT &&
	    rt_conv2d_direct(t, p, x, w, b, y, relu))
		return;
	conv2d(t, p, x, w, RT_GEMM_A_ROWS, b, res, y, relu);
}

void rt_conv_weight_pack(int mr, int oc, int kdim, const float *w, const float *gamma,
                         const float *var, float eps, float *dst)
{
	rt_gemm_pack_a(mr, oc, kdim, w, kdim, dst);
	if (!gamma)
		return;
	/* the scales a group of whole register tiles at a time, on the stack */
	enum { GROUP_MAX = 240 };
	float scale[GROUP_MAX];
	int group = GROUP_MAX / mr * mr;
	for (int r0 = 0; r0 < oc; r0 += group) {
		int r1 = oc - r0 < group ? oc : r0 + group;
		for (int o = r0; o < r1; o++)
			scale[o - r0] = gamma[o] / sqrtf(var[o] + eps);
		rt_gemm_packed_a_scale_rows(mr, oc, kdim, r0, r1, scale, dst);
	}
}

void rt_conv2d_direct_prepared(rt_threads *t, const rt_conv *p, const float *x, const float *wt,
                               const float *b, float *y, int relu)
{
	if (!rt_conv2d_direct_try(t, p, x, wt, b, y, relu))
		rt_conv2d_direct_prepared_serial(p, x, wt, b, y, relu);
}

void rt_conv2d_packed(rt_threads *t, const rt_conv *p, const float *x, const float *wp,
                      const float *b, const float *res, float *y, int relu)
{
	conv2d(t, p, x, wp, RT_GEMM_A_PACKED, b, res, y, relu);
}

typedef struct conv_job {
	const rt_conv *p;
	const float *x, *w, *b, *res;
	int a_layout, relu;
	float *y;
	rt_threads *pool;
	bool serial; /* each image's GEMM on one thread (images are the tasks) */
} conv_job;

static void conv_image(const conv_job *j, int n)
{
	const rt_conv *p = j->p;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * opix;
	const float *xn = j->x + n * in_floats;
	float *yn = j->y + n * out_floats;
	windows v = windows_of(p, xn);
	rt_gemm_b bm = pointwise(p) ? (rt_gemm_b){.data = xn, .ld = opix}
	                            : (rt_gemm_b){.pack = pack_windows, .ctx = &v};
	/* the residual is added as the GEMM stores (it may be y itself) */
	rt_epilogue ep = {
	    .bias = j->b, .add = j->res ? j->res + n * out_floats : NULL, .relu = j->relu};
	(j->serial ? rt_gemm_serial : rt_gemm)(j->pool, p->oc, opix, kdim, j->w, kdim, j->a_layout,
	                                       &bm, yn, opix, &ep);
}

static void conv_images_task(void *ctx, int task, int tasks)
{
	const conv_job *j = ctx;
	int n0, n1;
	rt_task_range(j->p->n, task, tasks, &n0, &n1);
	for (int n = n0; n < n1; n++)
		conv_image(j, n);
}

/* Below this many flops an image's gradient GEMM is split over the
 * threads at a cost (a pool run per image, small tasks): with images
 * enough, fixed chunks of whole images are the tasks instead (ResNet-20's
 * strided layers at a training batch). */
#define IMAGE_TASK_FLOPS (16.0 * 1024 * 1024)

/* With images enough (two a thread), whole images are the tasks, each
 * image's GEMM on one thread: no pool run per image, no tiles shared out,
 * and every task's GEMM sized as the image (ResNet-20's strided layers at
 * a training batch, whose GEMMs split over the threads cost more than
 * their work; ResNet-50's 1x1 layers at batch 8, 14x14 maps 4.5-4.9 ->
 * 4.1 ms a layer on two threads). Fewer, each image's GEMM is split. */
static void conv2d(rt_threads *t, const rt_conv *p, const float *x, const float *w, int a_layout,
                   const float *b, const float *res, float *y, int relu)
{
	conv_job j = {p, x, w, b, res, a_layout, relu, y, t, false};
	int threads = rt_threads_count(t);
	if (threads > 1 && p->n >= 2 * threads) {
		j.serial = true;
		rt_threads_run(t, conv_images_task, &j, p->n < 4 * threads ? p->n : 4 * threads);
		return;
	}
	for (int n = 0; n < p->n; n++)
		conv_image(&j, n);
}

/* The weight gradient sums over the images. With IMAGE_CHUNKS or more, in
 * that many fixed ranges of images, each summed into its own dW (the first
 * into dw, the others into the scratch) and added in order at the end: the
 * chunks can run on different threads, and the sums, so the bits, are the
 * same on any number of threads. A run per image of a small GEMM split
 * over the threads cost more than its work (ResNet-20's strided layers at
 * a training batch). */
enum { IMAGE_CHUNKS = 4 };

size_t rt_conv2d_grad_weight_scratch_floats(const rt_conv *p)
{
	return p->n >= IMAGE_CHUNKS ? (size_t)(IMAGE_CHUNKS - 1) * p->oc * p->c * p->k * p->k : 0;
}

typedef struct wgrad_job {
	const rt_conv *p;
	const float *x, *dy;
	float *dw, *scratch;
	rt_threads *pool;
	bool serial;
	bool direct; /* chunks by rt_conv2d_grad_weight_direct */
} wgrad_job;

/* dw (+)= the images [n0, n1)'s dY . windows^T */
static void wgrad_images(const wgrad_job *j, int n0, int n1, float *dw)
{
	const rt_conv *p = j->p;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * opix;
	if (n0 == n1)
		memset(dw, 0, (size_t)p->oc * kdim * sizeof(float));
	for (int n = n0; n < n1; n++) {
		const float *xn = j->x + n * in_floats;
		windows v = windows_of(p, xn);
		/* dW[oc x c] = dY[oc x pix] . X[c x pix]^T for 1x1, else windows^T */
		rt_gemm_b bm = pointwise(p) ? (rt_gemm_b){.data = xn, .ld = opix, .trans = 1}
		                            : (rt_gemm_b){.pack = pack_windows_t, .ctx = &v};
		rt_epilogue ep = {.add = n > n0 ? dw : NULL};
		(j->serial ? rt_gemm_serial : rt_gemm)(j->pool, p->oc, kdim, opix,
		                                       j->dy + n * out_floats, opix, 0, &bm, dw,
		                                       kdim, &ep);
	}
}

static void wgrad_chunk_task(void *ctx, int q, int chunks)
{
	const wgrad_job *j = ctx;
	size_t per = (size_t)j->p->oc * j->p->c * j->p->k * j->p->k;
	int n0, n1;
	rt_task_range(j->p->n, q, chunks, &n0, &n1);
	float *dw = q == 0 ? j->dw : j->scratch + (q - 1) * per;
	if (j->direct && rt_conv2d_grad_weight_direct(j->pool, j->p, j->x, j->dy, n0, n1, dw))
		return;
	wgrad_images(j, n0, n1, dw);
}

rt_conv_algo rt_conv2d_grad_weight_algo(const rt_conv *p)
{
	return rt_conv2d_grad_weight_direct_fits(p) ? RT_CONV_ALGO_DIRECT : RT_CONV_ALGO_GEMM;
}

void rt_conv2d_grad_weight(rt_threads *t, const rt_conv *p, const float *x, const float *dy,
                           float *dw, float *scratch, int algo)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	size_t per = (size_t)p->oc * kdim;
	if (p->n == 0 || opix == 0) {
		memset(dw, 0, per * sizeof(float));
		return;
	}
	wgrad_job j = {
	    p,       x, dy,    dw,
	    scratch, t, false, algo == RT_CONV_ALGO_DIRECT && rt_conv2d_grad_weight_direct_fits(p)};
	if (p->n < IMAGE_CHUNKS) {
		if (!j.direct || !rt_conv2d_grad_weight_direct(t, p, x, dy, 0, p->n, dw))
			wgrad_images(&j, 0, p->n, dw);
		return;
	}
	double flops = 2.0 * per * opix;
	if (rt_threads_count(t) > 1 && (flops < IMAGE_TASK_FLOPS || j.direct)) {
		j.serial = true;
		rt_threads_run(t, wgrad_chunk_task, &j, IMAGE_CHUNKS);
	} else {
		for (int q = 0; q < IMAGE_CHUNKS; q++)
			wgrad_chunk_task(&j, q, IMAGE_CHUNKS);
	}
	for (size_t i = 0; i < per; i++) {
		float s = dw[i];
		for (int q = 1; q < IMAGE_CHUNKS; q++)
			s += scratch[(q - 1) * per + i];
		dw[i] = s;
	}
}

/* ---- the input gradient --------------------------------------------------- */

/* A stride-1 convolution's input gradient is itself a stride-1 convolution:
 * of dY, with W's in and out channels swapped and its taps flipped, padded
 * k - 1 - pad. That needs oc * c * k * k floats for the flipped weights. */
static bool as_convolution(const rt_conv *p)
{
	return p->stride == 1 && p->k - 1 - p->pad >= 0 && p->oh + p->k - 1 - 2 * p->pad == p->h &&
	       p->ow + p->k - 1 - 2 * p->pad == p->w;
}

/* Strided: columns of W^T . dY for blocks of output pixels, each scattered
 * into dx; the block keeps the columns at most COLS floats. */
enum { COLS = 1 << 16 };

static int cols_block(const rt_conv *p)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	int blk = COLS / (kdim ? kdim : 1);
	return blk < 1 ? 1 : blk > opix ? opix : blk;
}

/* With IMAGE_CHUNKS images or more, a strided input gradient's images go
 * in as many fixed chunks, each with its own columns, so that chunks can
 * run on different threads (the bits do not change: each image's sums are
 * made the same way). */
size_t rt_conv2d_grad_scratch_floats(const rt_conv *p)
{
	if (pointwise(p))
		return 0;
	if (as_convolution(p))
		return (size_t)p->oc * p->c * p->k * p->k;
	return (size_t)(p->n >= IMAGE_CHUNKS ? IMAGE_CHUNKS : 1) * p->c * p->k * p->k *
	       cols_block(p);
}

/* dx += the columns [kdim x np] of pixels p0.. scattered to their taps.
 * Tasks own whole input channels (rows ci * k * k ..), so they write
 * disjoint planes and the sums keep their order on any thread count. */
typedef struct col2im_job {
	const rt_conv *p;
	const float *cols;
	int p0, np;
	float *dx;
} col2im_job;

static void col2im_task(void *ctx, int task, int tasks)
{
	const col2im_job *j = ctx;
	const rt_conv *p = j->p;
	int kk = p->k * p->k;
	int c0, c1;
	rt_task_range(p->c, task, tasks, &c0, &c1);
	for (int row = c0 * kk; row < c1 * kk; row++) {
		int ci = row / kk, kh = row % kk / p->k, kw = row % p->k;
		float *plane = j->dx + (size_t)ci * p->h * p->w;
		const float *cr = j->cols + (size_t)row * j->np;
		int oy = j->p0 / p->ow, ox = j->p0 % p->ow;
		for (int q = 0; q < j->np;) {
			int run = p->ow - ox < j->np - q ? p->ow - ox : j->np - q;
			int iy = oy * p->stride + kh - p->pad;
			if (iy >= 0 && iy < p->h) {
				float *row_out = plane + (size_t)iy * p->w;
				int ix = ox * p->stride + kw - p->pad;
				for (int t = 0; t < run; t++, ix += p->stride)
					if (ix >= 0 && ix < p->w)
						row_out[ix] += cr[q + t];
			}
			q += run;
			ox = 0;
			oy++;
		}
	}
}

static void col2im(rt_threads *t, const rt_conv *p, const float *cols, int p0, int np, float *dx)
{
	col2im_job j = {p, cols, p0, np, dx};
	int tasks = rt_threads_count(t);
	rt_threads_run(t, col2im_task, &j, tasks < p->c ? tasks : p->c);
}

/* A strided input gradient, image by image: for each block of pixels the
 * columns W^T . dY, then scattered into dx. serial: on this thread alone. */
typedef struct gin_job {
	const rt_conv *p;
	const float *dy, *w;
	float *dx, *scratch;
	rt_threads *pool;
} gin_job;

static void grad_input_images(const gin_job *j, int n0, int n1, float *cols, bool serial)
{
	const rt_conv *p = j->p;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow, blk = cols_block(p);
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * opix;
	for (int n = n0; n < n1; n++) {
		float *dxn = j->dx + n * in_floats;
		memset(dxn, 0, in_floats * sizeof(float));
		for (int p0 = 0; p0 < opix; p0 += blk) {
			int np = opix - p0 < blk ? opix - p0 : blk;
			rt_gemm_b bm = {.data = j->dy + n * out_floats + p0, .ld = opix};
			(serial ? rt_gemm_serial : rt_gemm)(j->pool, kdim, np, p->oc, j->w, kdim, 1,
			                                    &bm, cols, np, &(rt_epilogue){0});
			if (serial)
				col2im_task(&(col2im_job){p, cols, p0, np, dxn}, 0, 1);
			else
				col2im(j->pool, p, cols, p0, np, dxn);
		}
	}
}

static void grad_input_chunk_task(void *ctx, int q, int chunks)
{
	const gin_job *j = ctx;
	const rt_conv *p = j->p;
	int n0, n1;
	rt_task_range(p->n, q, chunks, &n0, &n1);
	size_t cols = (size_t)p->c * p->k * p->k * cols_block(p);
	grad_input_images(j, n0, n1, j->scratch + q * cols, true);
}

/* the input gradient of a stride-1 convolution as a convolution of dy */
static rt_conv flipped(const rt_conv *p)
{
	return rt_conv_make(p->n, p->oc, p->oh, p->ow, p->c, p->k, 1, p->k - 1 - p->pad);
}

rt_conv_algo rt_conv2d_grad_input_algo(const rt_conv *p)
{
	if (pointwise(p))
		return RT_CONV_ALGO_GEMM;
	if (as_convolution(p)) {
		rt_conv q = flipped(p);
		return rt_conv2d_algo(&q, false);
	}
	return rt_conv2d_grad_input_direct_fits(p) ? RT_CONV_ALGO_DIRECT : RT_CONV_ALGO_GEMM;
}

void rt_conv2d_grad_input(rt_threads *t, const rt_conv *p, const float *dy, const float *w,
                          float *dx, float *scratch, int algo)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow, kk = p->k * p->k;
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * opix;
	if (p->oc == 0 || opix == 0) {
		memset(dx, 0, p->n * in_floats * sizeof(float));
		return;
	}
	if (pointwise(p)) {
		/* dX[c x pix] = W^T[c x oc] . dY[oc x pix] */
		for (int n = 0; n < p->n; n++) {
			rt_gemm_b bm = {.data = dy + n * out_floats, .ld = opix};
			rt_gemm(t, p->c, opix, p->oc, w, p->c, 1, &bm, dx + n * in_floats, opix,
			        &(rt_epilogue){0});
		}
		return;
	}
	if (as_convolution(p)) {
		/* wt[ci][co][kh][kw] = w[co][ci][k-1-kh][k-1-kw] */
		for (int co = 0; co < p->oc; co++)
			for (int ci = 0; ci < p->c; ci++)
				for (int tap = 0; tap < kk; tap++)
					scratch[((size_t)ci * p->oc + co) * kk + tap] =
					    w[((size_t)co * p->c + ci) * kk + kk - 1 - tap];
		rt_conv q = flipped(p);
		rt_conv2d(t, &q, dy, scratch, NULL, NULL, dx, 0, algo);
		return;
	}
	/* with no memory for it, the columns below overwrite what it wrote */
	if (algo == RT_CONV_ALGO_DIRECT && rt_conv2d_grad_input_direct_fits(p) &&
	    rt_conv2d_grad_input_direct(t, p, dy, w, dx))
		return;
	gin_job j = {p, dy, w, dx, scratch, t};
	double flops = 2.0 * kdim * opix * p->oc;
	if (p->n >= IMAGE_CHUNKS && rt_threads_count(t) > 1 && flops < IMAGE_TASK_FLOPS)
		rt_threads_run(t, grad_input_chunk_task, &j, IMAGE_CHUNKS);
	else
		grad_input_images(&j, 0, p->n, scratch, false);
}

/* ---- linear layers ------------------------------------------------------- */

/* y[n x out] = x[n x in] . W^T; the bias is per column here, so it joins
 * after the GEMM (a layer of a few thousand values). */
void rt_linear(rt_threads *t, int n, int in, int out, const float *x, const float *w,
               const float *b, float *y, int relu)
{
	rt_gemm_b bm = {.data = w, .ld = in, .trans = 1};
	rt_gemm(t, n, out, in, x, in, 0, &bm, y, out, &(rt_epilogue){0});
	if (!b && !relu)
		return;
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++) {
			float v = y[(size_t)i * out + o] + (b ? b[o] : 0.0f);
			y[(size_t)i * out + o] = relu && v < 0.0f ? 0.0f : v;
		}
}

/* y[i] = Wp . x[i], a column at a time: the packed weights as A, one
 * column of B, so bias and relu are per row and join the GEMM's epilogue */
void rt_linear_packed(rt_threads *t, int n, int in, int out, const float *x, const float *wp,
                      const float *b, float *y, int relu)
{
	rt_epilogue ep = {.bias = b, .relu = relu};
	for (int i = 0; i < n; i++) {
		rt_gemm_b bm = {.data = x + (size_t)i * in, .ld = 1};
		rt_gemm(t, out, 1, in, wp, in, RT_GEMM_A_PACKED, &bm, y + (size_t)i * out, 1, &ep);
	}
}

void rt_linear_grad_input(rt_threads *t, int n, int in, int out, const float *dy, const float *w,
                          float *dx)
{
	rt_gemm_b bm = {.data = w, .ld = in};
	rt_gemm(t, n, in, out, dy, out, 0, &bm, dx, in, &(rt_epilogue){0});
}

void rt_linear_grad_weight(rt_threads *t, int n, int in, int out, const float *x, const float *dy,
                           float *dw)
{
	rt_gemm_b bm = {.data = x, .ld = in};
	rt_gemm(t, out, in, n, dy, out, 1, &bm, dw, in, &(rt_epilogue){0});
}
