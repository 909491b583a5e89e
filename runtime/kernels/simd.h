/* simd.h: vectors of eight floats, and of sixteen where the kernel set
 * has AVX-512 (kset.h), for the runtime's hand-vectorised kernels (the
 * Winograd transforms, conv_direct.c), moved to and from memory by
 * intrinsics where the target has them. Not memcpy: GCC 12 spilled a
 * vector copied that way and moved it through the stack in 16-byte halves
 * (a half reloaded from a wider store waits for it to retire), or kept a
 * kernel's sums on the stack, stored after every FMA. One header for both
 * widths: a kernel written for both (conv_direct.c) finds them side by
 * side, under the same rule.
 *
 *   v8 a = load8(p), b = splat(q);
 *   store8(p, a * b);
 *   v16 c = load16(p), d = splat16(q);   // AVX-512 only
 *   store16(p, c * d);
 */
#ifndef NETCC_RUNTIME_SIMD_H
#define NETCC_RUNTIME_SIMD_H

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

#if defined(__AVX512F__)
/* Sixteen floats, for kernels compiled for a kernel set with AVX-512 */
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

#endif
