/* libFuzzer: any bytes as a safetensors file are parsed or refused. */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	void *image = malloc(size ? size : 1);
	if (!image)
		return 0;
	memcpy(image, data, size);
	rt_st_file f;
	char err[256];
	if (rt_st_parse(image, size, &f, err, sizeof err) == 0) {
		/* every accepted tensor lies inside the image */
		for (int i = 0; i < f.n_tensors; i++) {
			const char *p = f.tensors[i].data;
			size_t bytes = f.tensors[i].count * rt_dtype_size(f.tensors[i].dtype);
			if (bytes && (p < (const char *)f.image ||
			              p + bytes > (const char *)f.image + f.size))
				abort();
			volatile unsigned char sum = 0;
			for (size_t k = 0; k < bytes; k++)
				sum ^= (unsigned char)p[k];
		}
		rt_st_free(&f);
	}
	return 0;
}
