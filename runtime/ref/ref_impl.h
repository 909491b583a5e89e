/* ref_impl.h: the loops the reference forward (ref_forward.c) and training
 * (ref_train.c) kernels share. Plain C, compiled with the runtime's
 * portable flags (no contraction), so the oracle's bits are the same in
 * either file. */
#ifndef NETCC_RUNTIME_REF_IMPL_H
#define NETCC_RUNTIME_REF_IMPL_H

/* Output positions o in [*lo, *hi) whose tap o * stride + off lies in [0, in). */
static inline void rt_tap_range(int out, int in, int stride, int off, int *lo, int *hi)
{
	int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
	int b = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
	*lo = a;
	*hi = b < out ? b : out;
	if (*hi < *lo)
		*hi = *lo;
}

/* y[0..n) += a * x[0..n). GCC's -O2 cost model vectorises only loops it
 * needs no runtime checks or scalar epilogue for, so the body works in
 * blocks of 8 on pointers promised not to overlap. */
static inline void rt_axpy(int n, float a, const float *restrict x, float *restrict y)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			y[i + j] += a * x[i + j];
	for (; i < n; i++)
		y[i] += a * x[i];
}

#endif
