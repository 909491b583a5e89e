/* Output sizes of windowed operators, in PyTorch's floor mode: a window that
 * would start in the padding past the end is dropped, not clipped. */
#include "runtime.h"

/* Window positions along one axis; 0 when even the padded input is smaller
 * than the window, so callers never see a negative size. */
static int rt_window_count(int in, int k, int stride, int pad)
{
	long span = (long)in + 2L * pad - k;
	if (stride <= 0 || span < 0)
		return 0;
	return (int)(span / stride + 1);
}

rt_conv rt_conv_make(int n, int c, int h, int w, int oc, int k, int stride, int pad)
{
	rt_conv p = {
	    .n = n,
	    .c = c,
	    .h = h,
	    .w = w,
	    .oc = oc,
	    .k = k,
	    .stride = stride,
	    .pad = pad,
	};
	p.oh = rt_window_count(h, k, stride, pad);
	p.ow = rt_window_count(w, k, stride, pad);
	return p;
}

rt_pool rt_pool_make(int n, int c, int h, int w, int k, int stride, int pad)
{
	rt_pool p = {
	    .n = n,
	    .c = c,
	    .h = h,
	    .w = w,
	    .k = k,
	    .stride = stride,
	    .pad = pad,
	};
	p.oh = rt_window_count(h, k, stride, pad);
	p.ow = rt_window_count(w, k, stride, pad);
	return p;
}
