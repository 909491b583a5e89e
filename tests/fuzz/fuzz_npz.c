/* libFuzzer: any bytes as an .npz archive are parsed or refused. */
#include "runtime.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	rt_npz_file f;
	char err[256];
	if (rt_npz_parse(data, size, &f, err, sizeof err) == 0) {
		volatile unsigned char sum = 0;
		for (int i = 0; i < f.n; i++) {
			const rt_array *a = &f.arrays[i];
			sum ^= (unsigned char)f.names[i][0];
			for (size_t k = 0; k < a->count * rt_dtype_size(a->dtype); k++)
				sum ^= ((const unsigned char *)a->data)[k];
		}
		rt_npz_free(&f);
	}
	return 0;
}
