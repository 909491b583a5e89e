/* Kernels the compiled code calls: convolution and linear layers as GEMMs
 * on OpenBLAS, the rest as tight loops. Every function writes its whole
 * output; scratch is caller-provided (planned into the instance's arena). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "runtime.h"

size_t rt_conv2d_scratch_floats(const rt_conv *p)
{
	if (p->k == 1 && p->stride == 1 && p->pad == 0)
		return 0;
	return (size_t)p->c * p->k * p->k * p->oh * p->ow;
}

/* Unrolls every k x k window into a column: rows are (c, kh, kw), columns
 * output positions, so the convolution becomes W[oc, c*k*k] x cols. */
static void im2col(const rt_conv *p, const float *x, float *cols)
{
	size_t opix = (size_t)p->oh * p->ow;
	for (int c = 0; c < p->c; c++) {
		const float *xp = x + (size_t)c * p->h * p->w;
		for (int kh = 0; kh < p->k; kh++)
			for (int kw = 0; kw < p->k; kw++) {
				float *row = cols + ((size_t)(c * p->k + kh) * p->k + kw) * opix;
				for (int oy = 0; oy < p->oh; oy++) {
					int iy = oy * p->stride + kh - p->pad;
					float *r = row + (size_t)oy * p->ow;
					if (iy < 0 || iy >= p->h) {
						memset(r, 0, (size_t)p->ow * sizeof(float));
						continue;
					}
					const float *xr = xp + (size_t)iy * p->w;
					for (int ox = 0; ox < p->ow; ox++) {
						int ix = ox * p->stride + kw - p->pad;
						r[ox] = ix >= 0 && ix < p->w ? xr[ix] : 0.0f;
					}
				}
			}
	}
}

void rt_conv2d(const rt_conv *p, const float *x, const float *w, const float *b, float *y,
	       float *scratch)
{
	int kdim = p->c * p->k * p->k, opix = p->oh * p->ow;
	for (int n = 0; n < p->n; n++) {
		const float *xn = x + (size_t)n * p->c * p->h * p->w;
		float *yn = y + (size_t)n * p->oc * opix;
		const float *cols = xn;
		if (rt_conv2d_scratch_floats(p)) {
			im2col(p, xn, scratch);
			cols = scratch;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->oc, opix, kdim, 1.0f, w,
			    kdim, cols, opix, 0.0f, yn, opix);
		if (b)
			for (int o = 0; o < p->oc; o++)
				for (int i = 0; i < opix; i++)
					yn[(size_t)o * opix + i] += b[o];
	}
}

void rt_linear(int n, int in, int out, const float *x, const float *w, const float *b, float *y)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f,
		    y, out);
	if (b)
		for (int i = 0; i < n; i++)
			for (int o = 0; o < out; o++)
				y[(size_t)i * out + o] += b[o];
}

/* Inference BatchNorm as one multiply-add per element. */
void rt_batchnorm(int n, int c, int hw, const float *x, const float *mean, const float *var,
		  const float *gamma, const float *beta, float eps, float *y)
{
	for (int ch = 0; ch < c; ch++) {
		float scale = gamma[ch] / sqrtf(var[ch] + eps);
		float shift = beta[ch] - mean[ch] * scale;
		for (int i = 0; i < n; i++) {
			const float *xp = x + ((size_t)i * c + ch) * hw;
			float *yp = y + ((size_t)i * c + ch) * hw;
			for (int k = 0; k < hw; k++)
				yp[k] = xp[k] * scale + shift;
		}
	}
}
