/* libFuzzer: any bytes as a .npy file are parsed or refused. */
#include "runtime.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	rt_array a;
	char err[256];
	if (rt_npy_parse(data, size, &a, err, sizeof err) == 0) {
		volatile unsigned char sum = 0;
		for (size_t k = 0; k < a.count * rt_dtype_size(a.dtype); k++)
			sum ^= ((const unsigned char *)a.data)[k];
		if (rt_array_to_f32(&a, err, sizeof err) == 0 && a.count)
			sum ^= *(const unsigned char *)((float *)a.data + a.count - 1);
		rt_array_free(&a);
	}
	return 0;
}
