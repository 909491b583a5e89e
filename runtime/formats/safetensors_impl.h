/* safetensors_impl.h: what the safetensors reader (safetensors.c) and
 * writer (safetensors_write.c) must agree on, so that the writer never
 * produces a file its own reader refuses: the dtype names, the reserved
 * metadata key, the largest integer either side accepts, and how a shape
 * is counted, printed and checked for duplicate names. */
#ifndef NETCC_RUNTIME_SAFETENSORS_IMPL_H
#define NETCC_RUNTIME_SAFETENSORS_IMPL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Tensor data is handed out as it lies in the file, which is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors files assume a little-endian host"
#endif

/* Readers that keep numbers as doubles (JavaScript's, cJSON's) cannot tell
 * integers above 2^53 apart: neither written nor read. */
#define ST_MAX_INT ((int64_t)1 << 53)

#define ST_META "__metadata__"

static const struct {
	const char *name;
	rt_dtype dtype;
} st_dtypes[] = {
    {"F32", RT_DTYPE_F32}, {"F64", RT_DTYPE_F64}, {"F16", RT_DTYPE_F16}, {"BF16", RT_DTYPE_BF16},
    {"I32", RT_DTYPE_I32}, {"I64", RT_DTYPE_I64}, {"U8", RT_DTYPE_U8},
};

static inline const char *st_dtype_name(rt_dtype t)
{
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
		if (st_dtypes[i].dtype == t)
			return st_dtypes[i].name;
	return NULL;
}

static inline int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns a name that occurs twice, or NULL. Sorting keeps this O(n log n):
 * a hostile header can hold millions of names. names is reordered. */
static inline const char *find_duplicate(const char **names, size_t n)
{
	if (n < 2)
		return NULL;
	qsort(names, n, sizeof *names, cmp_str_ptr);
	for (size_t i = 1; i < n; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			return names[i];
	return NULL;
}

/* Product of dims; *ok is cleared for a negative dim or an overflowing
 * product. A zero dim makes the tensor empty however large the others are. */
static inline size_t shape_count(int rank, const int64_t *dims, int *ok)
{
	size_t count = 1;
	int zero = 0, overflow = 0;
	for (int i = 0; i < rank; i++) {
		if (dims[i] < 0 || (uint64_t)dims[i] > SIZE_MAX) {
			*ok = 0;
			return 0;
		}
		if (dims[i] == 0)
			zero = 1;
		else if (__builtin_mul_overflow(count, (size_t)dims[i], &count))
			overflow = 1;
	}
	*ok = zero || !overflow;
	return zero || overflow ? 0 : count;
}

static inline void format_shape(char *buf, size_t len, int rank, const int64_t *dims)
{
	size_t used = (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < rank && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "",
		                         (long long)dims[i]);
	if (used < len)
		snprintf(buf + used, len - used, "]");
}

#endif
