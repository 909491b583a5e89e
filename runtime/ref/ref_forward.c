/* Reference forward kernels: the oracle every optimised path is tested
 * against, and fast enough to run whole ResNets in the test suite. Inner loops
 * run along contiguous output rows (or contiguous dot products) so the
 * compiler can vectorise them; windows are clipped to the input once per row
 * rather than tested per element. */
#include <math.h>
#include <string.h>

#include "ref_impl.h"
#include "runtime.h"

/* Eight partial sums break the serial dependency so the loop vectorises
 * without -ffast-math, and the summation order stays deterministic. */
static float rt_dot(const float *a, const float *b, int n)
{
	float acc[8] = {0};
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += a[i + j] * b[i + j];
	float s = 0;
	for (; i < n; i++)
		s += a[i] * b[i];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

/* Adds one input plane correlated with one k x k filter into an output plane. */
static void rt_conv_plane_acc(const rt_conv *p, const float *xp, const float *wk, float *yp)
{
	int s = p->stride;
	for (int kh = 0; kh < p->k; kh++) {
		int ylo, yhi;
		rt_tap_range(p->oh, p->h, s, kh - p->pad, &ylo, &yhi);
		for (int kw = 0; kw < p->k; kw++) {
			int xlo, xhi, off = kw - p->pad;
			rt_tap_range(p->ow, p->w, s, off, &xlo, &xhi);
			float wv = wk[kh * p->k + kw];
			for (int oy = ylo; oy < yhi; oy++) {
				const float *xr = xp + (size_t)(oy * s + kh - p->pad) * p->w;
				float *yr = yp + (size_t)oy * p->ow;
				if (s == 1) {
					rt_axpy(xhi - xlo, wv, xr + xlo + off, yr + xlo);
				} else {
					for (int ox = xlo; ox < xhi; ox++)
						yr[ox] += wv * xr[ox * s + off];
				}
			}
		}
	}
}

void rt_conv2d_ref(const rt_conv *p, const float *x, const float *w, const float *b, float *y)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	size_t kk = (size_t)p->k * p->k;
	for (int n = 0; n < p->n; n++) {
		for (int o = 0; o < p->oc; o++) {
			float *yp = y + ((size_t)n * p->oc + o) * out_plane;
			float bias = b ? b[o] : 0.0f;
			for (size_t i = 0; i < out_plane; i++)
				yp[i] = bias;
			for (int c = 0; c < p->c; c++)
				rt_conv_plane_acc(p, x + ((size_t)n * p->c + c) * in_plane,
				                  w + ((size_t)o * p->c + c) * kk, yp);
		}
	}
}

void rt_batchnorm_ref(int n, int c, int hw, const float *x, const float *mean, const float *var,
                      const float *gamma, const float *beta, float eps, float *y)
{
	for (int ch = 0; ch < c; ch++) {
		/* (x - mean) * scale rather than x * scale + shift: the folded form
		 * cancels badly when the mean is large next to the spread. */
		float scale = (float)(gamma[ch] / sqrt((double)var[ch] + eps));
		float m = mean[ch], bt = beta[ch];
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			for (int j = 0; j < hw; j++)
				y[base + j] = (x[base + j] - m) * scale + bt;
		}
	}
}

void rt_relu_ref(size_t count, const float *x, float *y)
{
	/* Written so a NaN passes through, as torch.relu lets it. */
	for (size_t i = 0; i < count; i++)
		y[i] = x[i] < 0 ? 0.0f : x[i];
}

void rt_add_ref(size_t count, const float *a, const float *b, float *y)
{
	for (size_t i = 0; i < count; i++)
		y[i] = a[i] + b[i];
}

/* Maximum over one window; padding is -inf, so it never wins, and a NaN in
 * the window wins as it does in PyTorch. */
static float rt_pool_max(const rt_pool *p, const float *xp, int oy, int ox)
{
	int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
	int ky0 = y0 < 0 ? -y0 : 0, ky1 = p->h - y0 < p->k ? p->h - y0 : p->k;
	int kx0 = x0 < 0 ? -x0 : 0, kx1 = p->w - x0 < p->k ? p->w - x0 : p->k;
	float m = -INFINITY;
	for (int ky = ky0; ky < ky1; ky++) {
		const float *xr = xp + (size_t)(y0 + ky) * p->w;
		for (int kx = kx0; kx < kx1; kx++)
			if (xr[x0 + kx] > m || isnan(xr[x0 + kx]))
				m = xr[x0 + kx];
	}
	return m;
}

void rt_maxpool_ref(const rt_pool *p, const float *x, float *y)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	for (size_t pl = 0; pl < (size_t)p->n * p->c; pl++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				y[pl * out_plane + (size_t)oy * p->ow + ox] =
				    rt_pool_max(p, x + pl * in_plane, oy, ox);
}

/* Sum over one window's in-bounds part; the divisor is always k * k
 * (count_include_pad=True), and floor mode never lets a window pass the
 * padded edge, so k * k is also PyTorch's clipped window size. */
static float rt_pool_sum(const rt_pool *p, const float *xp, int oy, int ox)
{
	int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
	int ky0 = y0 < 0 ? -y0 : 0, ky1 = p->h - y0 < p->k ? p->h - y0 : p->k;
	int kx0 = x0 < 0 ? -x0 : 0, kx1 = p->w - x0 < p->k ? p->w - x0 : p->k;
	float s = 0;
	for (int ky = ky0; ky < ky1; ky++) {
		const float *xr = xp + (size_t)(y0 + ky) * p->w;
		for (int kx = kx0; kx < kx1; kx++)
			s += xr[x0 + kx];
	}
	return s;
}

void rt_avgpool_ref(const rt_pool *p, const float *x, float *y)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	float inv = 1.0f / (float)(p->k * p->k);
	for (size_t pl = 0; pl < (size_t)p->n * p->c; pl++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				y[pl * out_plane + (size_t)oy * p->ow + ox] =
				    rt_pool_sum(p, x + pl * in_plane, oy, ox) * inv;
}

void rt_global_avgpool_ref(int n, int c, int hw, const float *x, float *y)
{
	for (size_t pl = 0; pl < (size_t)n * c; pl++) {
		const float *xp = x + pl * hw;
		float s = 0;
		for (int j = 0; j < hw; j++)
			s += xp[j];
		y[pl] = s / (float)hw;
	}
}

void rt_linear_ref(int n, int in, int out, const float *x, const float *w, const float *b, float *y)
{
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++)
			y[(size_t)i * out + o] =
			    rt_dot(x + (size_t)i * in, w + (size_t)o * in, in) + (b ? b[o] : 0.0f);
}

void rt_softmax_ref(int n, int c, const float *x, float *y)
{
	for (int i = 0; i < n; i++) {
		const float *xr = x + (size_t)i * c;
		float *yr = y + (size_t)i * c;
		/* Shifting by the row maximum keeps expf from overflowing. */
		float m = -INFINITY;
		for (int j = 0; j < c; j++)
			if (xr[j] > m)
				m = xr[j];
		float s = 0;
		for (int j = 0; j < c; j++) {
			yr[j] = expf(xr[j] - m);
			s += yr[j];
		}
		for (int j = 0; j < c; j++)
			yr[j] /= s;
	}
}

void rt_subsample_ref(int n, int c, int h, int w, int s, const float *x, float *y)
{
	int oh = (h + s - 1) / s, ow = (w + s - 1) / s;
	for (size_t pl = 0; pl < (size_t)n * c; pl++)
		for (int oy = 0; oy < oh; oy++) {
			const float *xr = x + (pl * h + (size_t)oy * s) * w;
			float *yr = y + (pl * oh + oy) * ow;
			for (int ox = 0; ox < ow; ox++)
				yr[ox] = xr[(size_t)ox * s];
		}
}

void rt_pad_channels_ref(int n, int c, int hw, int before, int after, const float *x, float *y)
{
	size_t oc = (size_t)c + before + after;
	for (int i = 0; i < n; i++) {
		float *yb = y + i * oc * hw;
		memset(yb, 0, (size_t)before * hw * sizeof *yb);
		memcpy(yb + (size_t)before * hw, x + (size_t)i * c * hw,
		       (size_t)c * hw * sizeof *yb);
		memset(yb + ((size_t)before + c) * hw, 0, (size_t)after * hw * sizeof *yb);
	}
}
