/* Kernels the compiled code calls: convolution and linear layers as GEMMs
 * on OpenBLAS, the rest as tight loops. Every function writes its whole
 * output; scratch is caller-provided (planned into the instance's arena). */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "runtime.h"

/* im2col works on blocks of output pixels so its buffer stays small (and
 * in cache) whatever the layer: at most this many floats, or one column. */
enum { COLS_FLOATS = 1 << 16 };

static int cols_block(const rt_conv *p)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	int blk = COLS_FLOATS / kdim;
	return blk < 1 ? 1 : blk > opix ? opix : blk;
}

size_t rt_conv2d_scratch_floats(const rt_conv *p)
{
	if (p->k == 1 && p->stride == 1 && p->pad == 0)
		return 0;
	return (size_t)p->c * p->k * p->k * cols_block(p);
}

/* Unrolls every k x k window into a column: rows are (c, kh, kw), columns
 * output positions, so the convolution becomes W[oc, c*k*k] x cols. */
/* Unrolls the k x k windows of output pixels [p0, p0 + np) into columns:
 * rows are (c, kh, kw), so the convolution becomes W[oc, c*k*k] x cols. */
static void im2col(const rt_conv *p, const float *x, float *cols, int p0, int np)
{
	for (int c = 0; c < p->c; c++) {
		const float *xp = x + (size_t)c * p->h * p->w;
		for (int kh = 0; kh < p->k; kh++)
			for (int kw = 0; kw < p->k; kw++) {
				float *row = cols + ((size_t)(c * p->k + kh) * p->k + kw) * np;
				for (int j = 0; j < np; j++) {
					int oy = (p0 + j) / p->ow, ox = (p0 + j) % p->ow;
					int iy = oy * p->stride + kh - p->pad;
					int ix = ox * p->stride + kw - p->pad;
					row[j] = iy >= 0 && iy < p->h && ix >= 0 && ix < p->w
							 ? xp[(size_t)iy * p->w + ix]
							 : 0.0f;
				}
			}
	}
}

/* y[c][i] = relu?(y[c][i] + b[c]) over planes of len floats. */
static void bias_relu(float *y, const float *b, int planes, int len, int relu)
{
	if (!b && !relu)
		return;
	for (int c = 0; c < planes; c++) {
		float bc = b ? b[c] : 0.0f, *yp = y + (size_t)c * len;
		if (relu)
			for (int i = 0; i < len; i++)
				yp[i] = yp[i] + bc > 0.0f || yp[i] != yp[i] ? yp[i] + bc : 0.0f;
		else
			for (int i = 0; i < len; i++)
				yp[i] += bc;
	}
}

/* With a residual, the GEMM accumulates onto it (beta = 1): in place when
 * the planner gave the output the residual's own buffer. */
/* With a residual, the GEMM accumulates onto it (beta = 1): in place when
 * the planner gave the output the residual's own buffer. */
void rt_conv2d(const rt_conv *p, const float *x, const float *w, const float *b, const float *res,
	       float *y, float *scratch, int relu)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	size_t out_floats = (size_t)p->oc * opix;
	bool direct = !rt_conv2d_scratch_floats(p);
	int blk = direct ? opix : cols_block(p);
	for (int n = 0; n < p->n; n++) {
		const float *xn = x + (size_t)n * p->c * p->h * p->w;
		float *yn = y + (size_t)n * out_floats;
		float beta = 0.0f;
		if (res) {
			const float *rn = res + (size_t)n * out_floats;
			if (rn != yn)
				memcpy(yn, rn, out_floats * sizeof(float));
			beta = 1.0f;
		}
		for (int p0 = 0; p0 < opix; p0 += blk) {
			int np = opix - p0 < blk ? opix - p0 : blk;
			const float *cols = xn + p0;
			int ldb = opix;
			if (!direct) {
				im2col(p, xn, scratch, p0, np);
				cols = scratch;
				ldb = np;
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->oc, np, kdim, 1.0f,
				    w, kdim, cols, ldb, beta, yn + p0, opix);
		}
		bias_relu(yn, b, p->oc, opix, relu);
	}
}

void rt_linear(int n, int in, int out, const float *x, const float *w, const float *b, float *y,
	       int relu)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f,
		    y, out);
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++) {
			float v = y[(size_t)i * out + o] + (b ? b[o] : 0.0f);
			y[(size_t)i * out + o] = relu && v <= 0.0f ? 0.0f : v;
		}
}

/* Inference BatchNorm as one multiply-add per element. */
void rt_batchnorm(int n, int c, int hw, const float *x, const float *mean, const float *var,
		  const float *gamma, const float *beta, float eps, float *y, int relu)
{
	for (int ch = 0; ch < c; ch++) {
		float scale = gamma[ch] / sqrtf(var[ch] + eps);
		float shift = beta[ch] - mean[ch] * scale;
		for (int i = 0; i < n; i++) {
			const float *xp = x + ((size_t)i * c + ch) * hw;
			float *yp = y + ((size_t)i * c + ch) * hw;
			for (int k = 0; k < hw; k++) {
				float v = xp[k] * scale + shift;
				yp[k] = relu && v <= 0.0f ? 0.0f : v;
			}
		}
	}
}

/* The option-A shortcut in one pass: subsample by stride, zero channels
 * before and after. */
void rt_shortcut_a(int n, int c, int h, int w, int stride, int before, int after,
		   const float *x, float *y)
{
	int oh = (h + stride - 1) / stride, ow = (w + stride - 1) / stride, oc = c + before + after;
	size_t plane = (size_t)oh * ow;
	for (int i = 0; i < n; i++) {
		float *yi = y + (size_t)i * oc * plane;
		memset(yi, 0, (size_t)before * plane * sizeof(float));
		memset(yi + (size_t)(before + c) * plane, 0, (size_t)after * plane * sizeof(float));
		for (int ch = 0; ch < c; ch++) {
			const float *xp = x + ((size_t)i * c + ch) * h * w;
			float *yp = yi + (size_t)(before + ch) * plane;
			for (int r = 0; r < oh; r++)
				for (int q = 0; q < ow; q++)
					yp[(size_t)r * ow + q] = xp[(size_t)r * stride * w + q * stride];
		}
	}
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
