/* Vectors of eight floats for the runtime's hand-vectorised kernels
 * (winograd.c, conv_direct.c), moved to and from memory by intrinsics where
 * the target has AVX. Not memcpy: GCC 12 spilled a vector copied that
 * way and moved it through the stack in 16-byte halves (a half reloaded
 * from a wider store waits for it to retire), or kept a kernel's sums on
 * the stack, stored after every FMA.
 *
 *   v8 a = load8(p), b = splat(q);
 *   store8(p, a * b);
 */
#ifndef NETCC_RUNTIME_VEC8_H
#define NETCC_RUNTIME_VEC8_H

#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p)
{
#if defined(__AVX__)
	return (v8)_mm256_loadu_ps(p);
#else
	v8 v;
	memcpy(&v, p, sizeof v);
	return v;
#endif
}

static inline void store8(float *p, v8 v)
{
#if defined(__AVX__)
	_mm256_storeu_ps(p, (__m256)v);
#else
	memcpy(p, &v, sizeof v);
#endif
}

/* *p in every lane */
static inline v8 splat(const float *p)
{
#if defined(__AVX__)
	return (v8)_mm256_broadcast_ss(p);
#else
	return (v8){*p, *p, *p, *p, *p, *p, *p, *p};
#endif
}

#endif
