/* Training kernels the compiled code calls: convolution and linear backward
 * passes as GEMMs on OpenBLAS, the reductions as lane-split loops the
 * compiler vectorises. Every function writes its whole output, and every
 * summation order depends on the shapes alone, so a training run repeats
 * bit for bit. */
#include <cblas.h>
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

/* Each plane is summed twice while it is in cache (its mean, then the
 * squared deviations from it), and the planes are merged with Chan et al.'s
 * pairwise update: as stable as a two-pass over the whole channel, with one
 * pass over memory. The plane's deviations are taken from its mean rounded
 * to float, the sum of d correcting for that rounding. */
void rt_bn_stats(int n, int c, int hw, const float *x, float *stats)
{
	for (int ch = 0; ch < c; ch++) {
		double mean = 0, m2 = 0, cnt = 0;
		for (int i = 0; i < n; i++) {
			const float *xp = x + ((size_t)i * c + ch) * hw;
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
		stats[ch] = (float)mean;
		stats[c + ch] = (float)(m2 > 0 ? m2 / ((double)n * hw) : 0.0);
	}
}

void rt_bn_grad_params(int n, int c, int hw, const float *x, const float *dy, const float *stats,
                       float eps, float *dparams)
{
	for (int ch = 0; ch < c; ch++) {
		double sdy = 0, sdyx = 0;
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			double a, b;
			sum_dy_dyx(x + base, dy + base, (size_t)hw, stats[ch], &a, &b);
			sdy += a;
			sdyx += b;
		}
		dparams[ch] = (float)(sdyx / sqrt((double)stats[c + ch] + eps));
		dparams[c + ch] = (float)sdy;
	}
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

void rt_bn_grad_input(int n, int c, int hw, const float *x, const float *dy, const float *stats,
                      const float *gamma, const float *dparams, float eps, float *dx)
{
	double m = (double)n * hw;
	for (int ch = 0; ch < c; ch++) {
		double invstd = 1.0 / sqrt((double)stats[c + ch] + eps);
		float k = (float)(gamma[ch] * invstd);
		float mdb = (float)(dparams[c + ch] / m), mdg = (float)(dparams[ch] / m);
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			bn_dx_plane((size_t)hw, x + base, dy + base, stats[ch], (float)invstd, k,
			            mdb, mdg, dx + base);
		}
	}
}

/* ---- linear -------------------------------------------------------------- */

void rt_linear_grad_input(int n, int in, int out, const float *dy, const float *w, float *dx)
{
	if (n <= 0 || in <= 0)
		return;
	/* An empty inner dimension is a zero product, which not every BLAS
	 * writes when k = 0. */
	if (out <= 0) {
		memset(dx, 0, (size_t)n * in * sizeof *dx);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
	            0.0f, dx, in);
}

void rt_linear_grad_weight(int n, int in, int out, const float *x, const float *dy, float *dw)
{
	if (out <= 0 || in <= 0)
		return;
	if (n <= 0) {
		memset(dw, 0, (size_t)out * in * sizeof *dw);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 0.0f,
	            dw, in);
}

/* ---- convolution --------------------------------------------------------- */

/* Columns cover blocks of output pixels so the buffer stays small (and in
 * cache) whatever the layer: at most this many floats, or one column. The
 * same bound as the forward pass, so the planner's scratch sizes agree. */
enum { GRAD_COLS_FLOATS = 1 << 16 };

static bool conv_direct(const rt_conv *p)
{
	return p->k == 1 && p->stride == 1 && p->pad == 0;
}

static int grad_cols_block(const rt_conv *p)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	int blk = GRAD_COLS_FLOATS / kdim;
	return blk < 1 ? 1 : blk > opix ? opix : blk;
}

size_t rt_conv2d_grad_scratch_floats(const rt_conv *p)
{
	if (conv_direct(p))
		return 0;
	return (size_t)p->c * p->k * p->k * grad_cols_block(p);
}

/* Output columns ox in [*lo, *hi) whose tap ox * stride + off lies inside
 * [0, in): the rest of a row reads or writes padding. */
static void valid_taps(int out, int in, int stride, int off, int *lo, int *hi)
{
	int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
	int b = in - off <= 0 ? 0 : (in - off - 1) / stride + 1;
	*lo = a < out ? a : out;
	*hi = b < out ? b : out;
	if (*hi < *lo)
		*hi = *lo;
}

/* A block of output pixels cut at the output rows: im2col and col2im walk
 * segments, so there is one division per segment rather than per pixel.
 * j is the segment's first pixel within the block, oy its output row,
 * [ox0, ox1) its output columns. */
typedef struct seg {
	int j, oy, ox0, ox1;
} seg;

static int block_segments(const rt_conv *p, int p0, int np, seg *out, int cap)
{
	int n = 0;
	for (int j = 0, q = p0; j < np && n < cap; n++) {
		int oy = q / p->ow, ox0 = q % p->ow;
		int len = p->ow - ox0 < np - j ? p->ow - ox0 : np - j;
		out[n] = (seg){j, oy, ox0, ox0 + len};
		j += len;
		q += len;
	}
	return n;
}

/* A block of blk pixels spans at most this many output-row segments: the
 * whole rows, plus the partial rows at either end. */
static int max_segments(const rt_conv *p, int blk)
{
	return blk / p->ow + 2;
}

/* Unrolls the k x k windows of output pixels [p0, p0 + np) of one image
 * into cols[c * k * k][np], padding as zeros. */
static void im2col_block(const rt_conv *p, const float *restrict x, float *restrict cols,
                         const seg *segs, int nseg, int np)
{
	int k = p->k, s = p->stride;
	for (int c = 0; c < p->c; c++) {
		const float *xc = x + (size_t)c * p->h * p->w;
		for (int kh = 0; kh < k; kh++)
			for (int kw = 0; kw < k; kw++) {
				float *row = cols + ((size_t)(c * k + kh) * k + kw) * np;
				int off = kw - p->pad, lo, hi;
				valid_taps(p->ow, p->w, s, off, &lo, &hi);
				for (int g = 0; g < nseg; g++) {
					const seg *sg = &segs[g];
					float *dst = row + sg->j;
					int len = sg->ox1 - sg->ox0, iy = sg->oy * s + kh - p->pad;
					int a = sg->ox0 > lo ? sg->ox0 : lo;
					int b = sg->ox1 < hi ? sg->ox1 : hi;
					if (iy < 0 || iy >= p->h || a >= b) {
						memset(dst, 0, (size_t)len * sizeof *dst);
						continue;
					}
					const float *src = xc + (size_t)iy * p->w + a * s + off;
					int before = a - sg->ox0, nv = b - a;
					memset(dst, 0, (size_t)before * sizeof *dst);
					if (s == 1)
						memcpy(dst + before, src, (size_t)nv * sizeof *dst);
					else
						for (int t = 0; t < nv; t++)
							dst[before + t] = src[(size_t)t * s];
					memset(dst + before + nv, 0,
					       (size_t)(len - before - nv) * sizeof *dst);
				}
			}
	}
}

/* y[0..n) += x[0..n), in blocks of LANES so that GCC vectorises it. */
static void add_row(int n, const float *restrict x, float *restrict y)
{
	int i = 0;
	for (; i + LANES <= n; i += LANES)
		for (int j = 0; j < LANES; j++)
			y[i + j] += x[i + j];
	for (; i < n; i++)
		y[i] += x[i];
}

/* The transpose of im2col_block: adds every column entry back onto the
 * input pixel it was read from, skipping the padding. */
static void col2im_block(const rt_conv *p, const float *restrict cols, float *restrict dx,
                         const seg *segs, int nseg, int np)
{
	int k = p->k, s = p->stride;
	for (int c = 0; c < p->c; c++) {
		float *dxc = dx + (size_t)c * p->h * p->w;
		for (int kh = 0; kh < k; kh++)
			for (int kw = 0; kw < k; kw++) {
				const float *row = cols + ((size_t)(c * k + kh) * k + kw) * np;
				int off = kw - p->pad, lo, hi;
				valid_taps(p->ow, p->w, s, off, &lo, &hi);
				for (int g = 0; g < nseg; g++) {
					const seg *sg = &segs[g];
					int iy = sg->oy * s + kh - p->pad;
					int a = sg->ox0 > lo ? sg->ox0 : lo;
					int b = sg->ox1 < hi ? sg->ox1 : hi;
					if (iy < 0 || iy >= p->h || a >= b)
						continue;
					const float *src = row + sg->j + (a - sg->ox0);
					float *dst = dxc + (size_t)iy * p->w + a * s + off;
					if (s == 1)
						add_row(b - a, src, dst);
					else
						for (int t = 0; t < b - a; t++)
							dst[(size_t)t * s] += src[t];
				}
			}
	}
}

/* Segment lists live on the stack up to this many; wider blocks (narrow
 * images with few channels) are cut into sub-blocks that fit. */
enum { SEG_CAP = 256 };

/* Calls fn on every block of output pixels of one image in order, with the
 * block's segments; the sub-blocks keep the order deterministic too. */
typedef void block_fn(void *ctx, int p0, int np, const seg *segs, int nseg);

static void for_blocks(const rt_conv *p, int blk, block_fn *fn, void *ctx)
{
	int opix = p->oh * p->ow;
	seg segs[SEG_CAP];
	if (max_segments(p, blk) > SEG_CAP)
		blk = (SEG_CAP - 2) * p->ow;
	for (int p0 = 0; p0 < opix; p0 += blk) {
		int np = opix - p0 < blk ? opix - p0 : blk;
		fn(ctx, p0, np, segs, block_segments(p, p0, np, segs, SEG_CAP));
	}
}

typedef struct grad_ctx {
	const rt_conv *p;
	const float *x, *dy, *w; /* this image's x and dy */
	float *out;              /* dx of this image, or dw */
	float *scratch;
	bool first; /* dw: the first block overwrites */
} grad_ctx;

/* cols[kdim x np] = W^T[kdim x oc] . dY[oc x np], then scattered into dx. */
static void grad_input_block(void *ctx, int p0, int np, const seg *segs, int nseg)
{
	grad_ctx *g = ctx;
	const rt_conv *p = g->p;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, np, p->oc, 1.0f, g->w, kdim,
	            g->dy + p0, opix, 0.0f, g->scratch, np);
	col2im_block(p, g->scratch, g->out, segs, nseg, np);
}

/* dW[oc x kdim] (+)= dY[oc x np] . cols[kdim x np]^T */
static void grad_weight_block(void *ctx, int p0, int np, const seg *segs, int nseg)
{
	grad_ctx *g = ctx;
	const rt_conv *p = g->p;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	im2col_block(p, g->x, g->scratch, segs, nseg, np);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->oc, kdim, np, 1.0f, g->dy + p0,
	            opix, g->scratch, np, g->first ? 0.0f : 1.0f, g->out, kdim);
	g->first = false;
}

void rt_conv2d_grad_input(const rt_conv *p, const float *dy, const float *w, float *dx,
                          float *scratch)
{
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * p->oh * p->ow;
	int opix = p->oh * p->ow;
	if (in_floats == 0)
		return;
	if (p->oc == 0 || opix == 0) {
		memset(dx, 0, (size_t)p->n * in_floats * sizeof *dx);
		return;
	}
	for (int n = 0; n < p->n; n++) {
		const float *dyn = dy + (size_t)n * out_floats;
		float *dxn = dx + (size_t)n * in_floats;
		if (conv_direct(p)) {
			/* dX[c x hw] = W^T[c x oc] . dY[oc x hw]: no scatter needed. */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->c, opix, p->oc,
			            1.0f, w, p->c, dyn, opix, 0.0f, dxn, opix);
			continue;
		}
		memset(dxn, 0, in_floats * sizeof *dxn);
		grad_ctx g = {.p = p, .dy = dyn, .w = w, .out = dxn, .scratch = scratch};
		for_blocks(p, grad_cols_block(p), grad_input_block, &g);
	}
}

void rt_conv2d_grad_weight(const rt_conv *p, const float *x, const float *dy, float *dw,
                           float *scratch)
{
	size_t in_floats = (size_t)p->c * p->h * p->w, out_floats = (size_t)p->oc * p->oh * p->ow;
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	if (p->oc == 0 || kdim == 0)
		return;
	if (p->n == 0 || opix == 0) {
		memset(dw, 0, (size_t)p->oc * kdim * sizeof *dw);
		return;
	}
	grad_ctx g = {.p = p, .out = dw, .scratch = scratch, .first = true};
	for (int n = 0; n < p->n; n++) {
		g.x = x + (size_t)n * in_floats;
		g.dy = dy + (size_t)n * out_floats;
		if (conv_direct(p)) {
			/* dW[oc x c] (+)= dY[oc x hw] . X[c x hw]^T on the planes as they are. */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->oc, p->c, opix,
			            1.0f, g.dy, opix, g.x, opix, n ? 1.0f : 0.0f, dw, p->c);
			continue;
		}
		for_blocks(p, grad_cols_block(p), grad_weight_block, &g);
	}
}
