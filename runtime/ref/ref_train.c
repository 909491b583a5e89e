/* Reference training kernels: gradients with PyTorch's conventions, the
 * oracle for the optimised backward passes. Reductions whose length grows
 * with the batch (BatchNorm statistics, weight gradients) sum in double, since
 * float sums over a batch of large images drift visibly; everything else stays
 * in float like the forward kernels. */
#include <math.h>
#include <string.h>

#include "ref_impl.h"
#include "runtime.h"

/* Dot product of a[0..n) with b[0], b[stride], ...; partial sums let the
 * contiguous case vectorise and keep the order deterministic. */
static float rt_dot_strided(const float *a, const float *b, int n, int stride)
{
	float acc[8] = {0};
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			acc[j] += a[i + j] * b[(size_t)(i + j) * stride];
	float s = 0;
	for (; i < n; i++)
		s += a[i] * b[(size_t)i * stride];
	for (int j = 0; j < 8; j++)
		s += acc[j];
	return s;
}

/* ---- BatchNorm ---------------------------------------------------------- */

void rt_bn_stats_ref(int n, int c, int hw, const float *x, float *stats)
{
	double m = (double)n * hw;
	for (int ch = 0; ch < c; ch++) {
		/* Two passes: the one-pass E[x^2] - E[x]^2 loses the variance
		 * when the mean is large. */
		double s = 0;
		for (int i = 0; i < n; i++) {
			const float *xp = x + ((size_t)i * c + ch) * hw;
			for (int j = 0; j < hw; j++)
				s += xp[j];
		}
		double mean = s / m, v = 0;
		for (int i = 0; i < n; i++) {
			const float *xp = x + ((size_t)i * c + ch) * hw;
			for (int j = 0; j < hw; j++) {
				double d = xp[j] - mean;
				v += d * d;
			}
		}
		stats[ch] = (float)mean;
		stats[c + ch] = (float)(v / m);
	}
}

void rt_bn_running_update_ref(int c, int m, float momentum, const float *stats, float *run_mean,
                              float *run_var)
{
	/* PyTorch refuses m == 1 in training; keep the biased value rather
	 * than divide by zero. */
	double unbias = m > 1 ? (double)m / (m - 1) : 1.0;
	for (int ch = 0; ch < c; ch++) {
		run_mean[ch] =
		    (float)((1.0 - momentum) * run_mean[ch] + (double)momentum * stats[ch]);
		run_var[ch] = (float)((1.0 - momentum) * run_var[ch] +
		                      (double)momentum * stats[c + ch] * unbias);
	}
}

void rt_bn_grad_params_ref(int n, int c, int hw, const float *x, const float *dy,
                           const float *stats, float eps, float *dparams)
{
	for (int ch = 0; ch < c; ch++) {
		double mean = stats[ch], sdy = 0, sdyx = 0;
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			for (int j = 0; j < hw; j++) {
				sdy += dy[base + j];
				sdyx += dy[base + j] * (x[base + j] - mean);
			}
		}
		dparams[ch] = (float)(sdyx / sqrt((double)stats[c + ch] + eps));
		dparams[c + ch] = (float)sdy;
	}
}

/* With xhat = (x - mean) * invstd and m = n * hw values per channel,
 *   dx = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m),
 * the batch statistics' own dependence on x folded in through dparams. */
void rt_bn_grad_input_ref(int n, int c, int hw, const float *x, const float *dy, const float *stats,
                          const float *gamma, const float *dparams, float eps, float *dx)
{
	double m = (double)n * hw;
	for (int ch = 0; ch < c; ch++) {
		double invstd = 1.0 / sqrt((double)stats[c + ch] + eps);
		float mean = stats[ch], is = (float)invstd;
		float k = (float)(gamma[ch] * invstd);
		float mdb = (float)(dparams[c + ch] / m), mdg = (float)(dparams[ch] / m);
		for (int i = 0; i < n; i++) {
			size_t base = ((size_t)i * c + ch) * hw;
			for (int j = 0; j < hw; j++) {
				float xhat = (x[base + j] - mean) * is;
				dx[base + j] = k * (dy[base + j] - mdb - xhat * mdg);
			}
		}
	}
}

/* ---- convolution -------------------------------------------------------- */

/* Adds one output-gradient plane, spread back through one k x k filter, into
 * an input-gradient plane: the transpose of the forward's plane loop. */
static void rt_conv_plane_scatter(const rt_conv *p, const float *dyp, const float *wk, float *dxp)
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
				float *xr = dxp + (size_t)(oy * s + kh - p->pad) * p->w;
				const float *yr = dyp + (size_t)oy * p->ow;
				if (s == 1) {
					rt_axpy(xhi - xlo, wv, yr + xlo, xr + xlo + off);
				} else {
					for (int ox = xlo; ox < xhi; ox++)
						xr[ox * s + off] += wv * yr[ox];
				}
			}
		}
	}
}

void rt_conv2d_grad_input_ref(const rt_conv *p, const float *dy, const float *w, float *dx)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	size_t kk = (size_t)p->k * p->k;
	memset(dx, 0, (size_t)p->n * p->c * in_plane * sizeof *dx);
	for (int n = 0; n < p->n; n++)
		for (int c = 0; c < p->c; c++) {
			float *dxp = dx + ((size_t)n * p->c + c) * in_plane;
			for (int o = 0; o < p->oc; o++)
				rt_conv_plane_scatter(p, dy + ((size_t)n * p->oc + o) * out_plane,
				                      w + ((size_t)o * p->c + c) * kk, dxp);
		}
}

/* sum over (oy, ox) of dy[oy, ox] * x[oy * s + kh - pad, ox * s + kw - pad] */
static double rt_conv_plane_corr(const rt_conv *p, const float *xp, const float *dyp, int kh,
                                 int kw)
{
	int s = p->stride, ylo, yhi, xlo, xhi, off = kw - p->pad;
	rt_tap_range(p->oh, p->h, s, kh - p->pad, &ylo, &yhi);
	rt_tap_range(p->ow, p->w, s, off, &xlo, &xhi);
	if (xlo >= xhi)
		return 0;
	double sum = 0;
	for (int oy = ylo; oy < yhi; oy++) {
		const float *xr = xp + (size_t)(oy * s + kh - p->pad) * p->w;
		sum += rt_dot_strided(dyp + (size_t)oy * p->ow + xlo, xr + (size_t)xlo * s + off,
		                      xhi - xlo, s);
	}
	return sum;
}

void rt_conv2d_grad_weight_ref(const rt_conv *p, const float *x, const float *dy, float *dw,
                               float *db)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	size_t kk = (size_t)p->k * p->k;
	memset(dw, 0, (size_t)p->oc * p->c * kk * sizeof *dw);
	/* The batch loop sits inside (o, c) so the two planes stay in cache
	 * for all k * k taps. */
	for (int o = 0; o < p->oc; o++)
		for (int c = 0; c < p->c; c++) {
			float *dwk = dw + ((size_t)o * p->c + c) * kk;
			for (int n = 0; n < p->n; n++) {
				const float *xp = x + ((size_t)n * p->c + c) * in_plane;
				const float *dyp = dy + ((size_t)n * p->oc + o) * out_plane;
				for (int kh = 0; kh < p->k; kh++)
					for (int kw = 0; kw < p->k; kw++)
						dwk[kh * p->k + kw] +=
						    (float)rt_conv_plane_corr(p, xp, dyp, kh, kw);
			}
		}
	if (!db)
		return;
	for (int o = 0; o < p->oc; o++) {
		double s = 0;
		for (int n = 0; n < p->n; n++) {
			const float *dyp = dy + ((size_t)n * p->oc + o) * out_plane;
			for (size_t j = 0; j < out_plane; j++)
				s += dyp[j];
		}
		db[o] = (float)s;
	}
}

/* ---- elementwise and pooling ------------------------------------------ */

void rt_relu_grad_ref(size_t count, const float *y, const float *dy, float *dx)
{
	for (size_t i = 0; i < count; i++)
		dx[i] = y[i] > 0 ? dy[i] : 0.0f;
}

/* Index in the plane of the window's first maximum in scan order, or -1 if
 * the window lies wholly in the padding. Like PyTorch, the first in-bounds
 * element is the answer when nothing beats -inf, and a NaN wins (the first
 * NaN here; PyTorch takes the last, which only matters for NaN inputs). */
static long rt_pool_argmax(const rt_pool *p, const float *xp, int oy, int ox)
{
	int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
	int ky0 = y0 < 0 ? -y0 : 0, ky1 = p->h - y0 < p->k ? p->h - y0 : p->k;
	int kx0 = x0 < 0 ? -x0 : 0, kx1 = p->w - x0 < p->k ? p->w - x0 : p->k;
	if (ky0 >= ky1 || kx0 >= kx1)
		return -1;
	long best = (long)(y0 + ky0) * p->w + x0 + kx0;
	float m = -INFINITY;
	for (int ky = ky0; ky < ky1; ky++)
		for (int kx = kx0; kx < kx1; kx++) {
			long i = (long)(y0 + ky) * p->w + x0 + kx;
			if (isnan(xp[i]))
				return i;
			if (xp[i] > m) {
				m = xp[i];
				best = i;
			}
		}
	return best;
}

void rt_maxpool_grad_ref(const rt_pool *p, const float *x, const float *dy, float *dx)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	memset(dx, 0, (size_t)p->n * p->c * in_plane * sizeof *dx);
	for (size_t pl = 0; pl < (size_t)p->n * p->c; pl++) {
		const float *xp = x + pl * in_plane, *dyp = dy + pl * out_plane;
		float *dxp = dx + pl * in_plane;
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				long i = rt_pool_argmax(p, xp, oy, ox);
				if (i >= 0)
					dxp[i] += dyp[(size_t)oy * p->ow + ox];
			}
	}
}

void rt_avgpool_grad_ref(const rt_pool *p, const float *dy, float *dx)
{
	size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->oh * p->ow;
	float inv = 1.0f / (float)(p->k * p->k);
	memset(dx, 0, (size_t)p->n * p->c * in_plane * sizeof *dx);
	for (size_t pl = 0; pl < (size_t)p->n * p->c; pl++) {
		float *dxp = dx + pl * in_plane;
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				float g = dy[pl * out_plane + (size_t)oy * p->ow + ox] * inv;
				int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
				int ky0 = y0 < 0 ? -y0 : 0;
				int ky1 = p->h - y0 < p->k ? p->h - y0 : p->k;
				int kx0 = x0 < 0 ? -x0 : 0;
				int kx1 = p->w - x0 < p->k ? p->w - x0 : p->k;
				for (int ky = ky0; ky < ky1; ky++) {
					float *xr = dxp + (size_t)(y0 + ky) * p->w;
					for (int kx = kx0; kx < kx1; kx++)
						xr[x0 + kx] += g;
				}
			}
	}
}

void rt_global_avgpool_grad_ref(int n, int c, int hw, const float *dy, float *dx)
{
	for (size_t pl = 0; pl < (size_t)n * c; pl++) {
		float g = dy[pl] / (float)hw;
		for (int j = 0; j < hw; j++)
			dx[pl * hw + j] = g;
	}
}

/* ---- linear, softmax, reshaping ----------------------------------------- */

void rt_linear_grad_input_ref(int n, int in, int out, const float *dy, const float *w, float *dx)
{
	memset(dx, 0, (size_t)n * in * sizeof *dx);
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++)
			rt_axpy(in, dy[(size_t)i * out + o], w + (size_t)o * in,
			        dx + (size_t)i * in);
}

void rt_linear_grad_weight_ref(int n, int in, int out, const float *x, const float *dy, float *dw,
                               float *db)
{
	memset(dw, 0, (size_t)out * in * sizeof *dw);
	for (int i = 0; i < n; i++)
		for (int o = 0; o < out; o++)
			rt_axpy(in, dy[(size_t)i * out + o], x + (size_t)i * in,
			        dw + (size_t)o * in);
	if (!db)
		return;
	for (int o = 0; o < out; o++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			s += dy[(size_t)i * out + o];
		db[o] = (float)s;
	}
}

void rt_softmax_grad_ref(int n, int c, const float *y, const float *dy, float *dx)
{
	for (int i = 0; i < n; i++) {
		const float *yr = y + (size_t)i * c, *gr = dy + (size_t)i * c;
		float dot = 0;
		for (int j = 0; j < c; j++)
			dot += yr[j] * gr[j];
		for (int j = 0; j < c; j++)
			dx[(size_t)i * c + j] = yr[j] * (gr[j] - dot);
	}
}

void rt_subsample_grad_ref(int n, int c, int h, int w, int s, const float *dy, float *dx)
{
	int oh = (h + s - 1) / s, ow = (w + s - 1) / s;
	memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
	for (size_t pl = 0; pl < (size_t)n * c; pl++)
		for (int oy = 0; oy < oh; oy++) {
			float *xr = dx + (pl * h + (size_t)oy * s) * w;
			const float *yr = dy + (pl * oh + oy) * ow;
			for (int ox = 0; ox < ow; ox++)
				xr[(size_t)ox * s] = yr[ox];
		}
}

void rt_pad_channels_grad_ref(int n, int c, int hw, int before, int after, const float *dy,
                              float *dx)
{
	size_t oc = (size_t)c + before + after;
	for (int i = 0; i < n; i++)
		memcpy(dx + (size_t)i * c * hw, dy + (i * oc + before) * hw,
		       (size_t)c * hw * sizeof *dx);
}

/* ---- loss and optimiser ------------------------------------------------- */

int rt_softmax_xent_ref(int n, int c, const float *logits, const int32_t *labels, float *loss,
                        float *dlogits)
{
	for (int i = 0; i < n; i++)
		if (labels[i] < 0 || labels[i] >= c)
			return -1;
	double total = 0;
	for (int i = 0; i < n; i++) {
		const float *xr = logits + (size_t)i * c;
		float *gr = dlogits + (size_t)i * c;
		/* log-sum-exp around the row maximum, in double: the loss is a
		 * small difference of large terms when the logits are big. */
		double m = -INFINITY, s = 0;
		for (int j = 0; j < c; j++)
			if (xr[j] > m)
				m = xr[j];
		for (int j = 0; j < c; j++)
			s += exp(xr[j] - m);
		total += m + log(s) - xr[labels[i]];
		for (int j = 0; j < c; j++)
			gr[j] = (float)((exp(xr[j] - m) / s - (j == labels[i])) / n);
	}
	*loss = n > 0 ? (float)(total / n) : 0.0f;
	return 0;
}

void rt_sgd_momentum_ref(size_t count, float *w, const float *g, float *v, float lr, float momentum,
                         float weight_decay)
{
	for (size_t i = 0; i < count; i++) {
		v[i] = momentum * v[i] + (g[i] + weight_decay * w[i]);
		w[i] -= lr * v[i];
	}
}
