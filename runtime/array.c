/* Dtypes and the owned-array helpers shared by the file readers. */
#include <stdlib.h>
#include <stdio.h>

#include "runtime.h"

const char *rt_dtype_name(rt_dtype t)
{
	switch (t) {
	case RT_DTYPE_F32:
		return "float32";
	case RT_DTYPE_F64:
		return "float64";
	case RT_DTYPE_I32:
		return "int32";
	case RT_DTYPE_I64:
		return "int64";
	case RT_DTYPE_U8:
		return "uint8";
	}
	return "?";
}

size_t rt_dtype_size(rt_dtype t)
{
	switch (t) {
	case RT_DTYPE_F64:
	case RT_DTYPE_I64:
		return 8;
	case RT_DTYPE_F32:
	case RT_DTYPE_I32:
		return 4;
	case RT_DTYPE_U8:
		return 1;
	}
	return 0;
}

void rt_array_free(rt_array *a)
{
	if (!a)
		return;
	free(a->data);
	a->data = NULL;
	a->count = 0;
}

int rt_array_to_f32(rt_array *a, char *err, size_t errlen)
{
	if (a->dtype == RT_DTYPE_F32)
		return 0;
	float *out = malloc(a->count ? a->count * sizeof(float) : 1);
	if (!out) {
		snprintf(err, errlen, "out of memory converting %zu values to float32", a->count);
		return -1;
	}
	for (size_t i = 0; i < a->count; i++) {
		switch (a->dtype) {
		case RT_DTYPE_F64:
			out[i] = (float)((const double *)a->data)[i];
			break;
		case RT_DTYPE_I32:
			out[i] = (float)((const int32_t *)a->data)[i];
			break;
		case RT_DTYPE_I64:
			out[i] = (float)((const int64_t *)a->data)[i];
			break;
		case RT_DTYPE_U8:
			out[i] = (float)((const uint8_t *)a->data)[i];
			break;
		case RT_DTYPE_F32:
			break;
		}
	}
	free(a->data);
	a->data = out;
	a->dtype = RT_DTYPE_F32;
	return 0;
}
