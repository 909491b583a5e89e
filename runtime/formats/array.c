/* Dtypes and the owned-array helpers shared by the file readers. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

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
	case RT_DTYPE_F16:
		return "float16";
	case RT_DTYPE_BF16:
		return "bfloat16";
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
	case RT_DTYPE_F16:
	case RT_DTYPE_BF16:
		return 2;
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

/* Bit by bit rather than by F16C: the portable runtime assumes no ISA
 * extension, and every half (subnormals, infinities, NaNs) has an exact
 * float32. */
static float half_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0x1f)
		bits = sign | 0x7f800000u | man << 13;
	else if (exp)
		bits = sign | (exp + 112) << 23 | man << 13;
	else {
		float f = (float)man * 0x1p-24f; /* zero or subnormal: exact */
		return sign ? -f : f;
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

static float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* One value at p, read with memcpy: safetensors data lies wherever the
 * file put it, not necessarily aligned for its type. */
static float value_to_f32(rt_dtype t, const unsigned char *p)
{
	union {
		double f64;
		float f32;
		int32_t i32;
		int64_t i64;
		uint16_t u16;
	} v;
	memcpy(&v, p, rt_dtype_size(t));
	switch (t) {
	case RT_DTYPE_F64:
		return (float)v.f64;
	case RT_DTYPE_F32:
		return v.f32;
	case RT_DTYPE_I32:
		return (float)v.i32;
	case RT_DTYPE_I64:
		return (float)v.i64;
	case RT_DTYPE_U8:
		return (float)*p;
	case RT_DTYPE_F16:
		return half_to_f32(v.u16);
	case RT_DTYPE_BF16:
		return bf16_to_f32(v.u16);
	}
	return 0;
}

void rt_values_to_f32(rt_dtype t, const void *src, size_t count, float *dst)
{
	size_t size = rt_dtype_size(t);
	for (size_t i = 0; i < count; i++)
		dst[i] = value_to_f32(t, (const unsigned char *)src + i * size);
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
	rt_values_to_f32(a->dtype, a->data, a->count, out);
	free(a->data);
	a->data = out;
	a->dtype = RT_DTYPE_F32;
	return 0;
}
