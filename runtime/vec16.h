/* Vectors of sixteen floats, for kernels compiled for a kernel set with
 * AVX-512 (kset.h), moved by intrinsics as vec8.h's are.
 *
 *   v16 a = load16(p), b = splat16(q);
 *   store16(p, a * b);
 */
#ifndef NETCC_RUNTIME_VEC16_H
#define NETCC_RUNTIME_VEC16_H

#include <immintrin.h>

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p)
{
	return (v16)_mm512_loadu_ps(p);
}

static inline void store16(float *p, v16 v)
{
	_mm512_storeu_ps(p, (__m512)v);
}

/* *p in every lane */
static inline v16 splat16(const float *p)
{
	return (v16)_mm512_set1_ps(*p);
}

#endif
