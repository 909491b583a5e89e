/* Softmax cross-entropy as two kernels, so the loss and its gradient are
 * separate values in the graph; each computes the softmax itself with a
 * max-shifted log-sum-exp, which costs nothing next to the network. Labels
 * outside [0, c) contribute nothing (the training step checks them first). */
#include <math.h>

#include "runtime.h"

static double row_lse(int c, const float *z, float *max_out)
{
	float m = z[0];
	for (int j = 1; j < c; j++)
		m = z[j] > m ? z[j] : m;
	double s = 0;
	for (int j = 0; j < c; j++)
		s += exp((double)z[j] - m);
	*max_out = m;
	return log(s);
}

void rt_xent_loss(int n, int c, const float *logits, const int32_t *labels, float *loss)
{
	double total = 0;
	for (int i = 0; i < n; i++) {
		const float *z = logits + (size_t)i * c;
		float m;
		double lse = row_lse(c, z, &m);
		if (labels[i] >= 0 && labels[i] < c)
			total += lse - ((double)z[labels[i]] - m);
	}
	*loss = n ? (float)(total / n) : 0.0f;
}

void rt_xent_grad(int n, int c, const float *logits, const int32_t *labels, float *dlogits)
{
	for (int i = 0; i < n; i++) {
		const float *z = logits + (size_t)i * c;
		float *d = dlogits + (size_t)i * c, m;
		double lse = row_lse(c, z, &m);
		for (int j = 0; j < c; j++)
			d[j] = (float)((exp((double)z[j] - m - lse) - (j == labels[i])) / n);
	}
}
