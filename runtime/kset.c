/* The kernel sets' table and this CPU's features. Compiled for the
 * architecture's baseline, never a set's flags: a library calls this
 * before any of its set's code runs, to refuse a CPU that lacks what the
 * set needs instead of dying on an illegal instruction. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#endif

#include "kset.h"

/* IR shapes of packed weights are sized by these bounds (ir/shape.c) */
#define X(e, name, needs)                                                                          \
	_Static_assert(RT_KSET_##e##_MR <= RT_KSET_MR_MAX && RT_KSET_##e##_VW <= RT_KSET_VW_MAX,   \
	               "a kernel set outgrows the bounds packed weights are sized by");
RT_KSETS(X)
#undef X

static const rt_kset ksets[] = {
#define X(e, name, needs) {name, RT_KSET_##e##_VW, RT_KSET_##e##_MR, RT_KSET_##e##_NV, needs},
    RT_KSETS(X)
#undef X
};

const rt_kset *rt_kset_all(int *n)
{
	*n = (int)(sizeof ksets / sizeof ksets[0]);
	return ksets;
}

const rt_kset *rt_kset_find(const char *name)
{
	for (size_t i = 0; i < sizeof ksets / sizeof ksets[0]; i++)
		if (!strcmp(ksets[i].name, name))
			return &ksets[i];
	return NULL;
}

#if defined(__x86_64__)
static uint64_t xcr0(void)
{
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (uint64_t)hi << 32 | lo;
}

static uint64_t x86_features(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	uint64_t f = 0;
	unsigned c1 = c;
	/* the OS must save the registers too: XCR0's SSE and AVX state (bits
	 * 1, 2), AVX-512's opmask and upper registers (5, 6, 7), AMX's tile
	 * configuration and data (17, 18) */
	uint64_t os = (c1 & 1u << 27) ? xcr0() : 0;
	bool avx_os = (os & 0x6) == 0x6, avx512_os = avx_os && (os & 0xe0) == 0xe0;
	bool amx_os = (os & 0x60000) == 0x60000;
	if (c1 & 1u << 22)
		f |= RT_CPU_MOVBE;
	if (avx_os) {
		f |= (c1 & 1u << 28) ? RT_CPU_AVX : 0;
		f |= (c1 & 1u << 12) ? RT_CPU_FMA : 0;
		f |= (c1 & 1u << 29) ? RT_CPU_F16C : 0;
	}
	unsigned max = __get_cpuid_max(0, NULL);
	if (max >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		f |= (b & 1u << 3) ? RT_CPU_BMI1 : 0;
		f |= (b & 1u << 8) ? RT_CPU_BMI2 : 0;
		if (avx_os)
			f |= (b & 1u << 5) ? RT_CPU_AVX2 : 0;
		if (avx512_os) {
			f |= (b & 1u << 16) ? RT_CPU_AVX512F : 0;
			f |= (b & 1u << 17) ? RT_CPU_AVX512DQ : 0;
			f |= (b & 1u << 28) ? RT_CPU_AVX512CD : 0;
			f |= (b & 1u << 30) ? RT_CPU_AVX512BW : 0;
			f |= (b & 1u << 31) ? RT_CPU_AVX512VL : 0;
			f |= (d & 1u << 23) ? RT_CPU_AVX512FP16 : 0;
		}
		if (amx_os) {
			f |= (d & 1u << 24) ? RT_CPU_AMX_TILE : 0;
			f |= (d & 1u << 22) ? RT_CPU_AMX_BF16 : 0;
		}
		unsigned sub = a;
		if (sub >= 1 && avx512_os) {
			__cpuid_count(7, 1, a, b, c, d);
			f |= (a & 1u << 5) ? RT_CPU_AVX512BF16 : 0;
		}
	}
	if (__get_cpuid(0x80000001, &a, &b, &c, &d))
		f |= (c & 1u << 5) ? RT_CPU_LZCNT : 0;
	return f;
}
#endif

uint64_t rt_cpu_features(void)
{
#if defined(__x86_64__)
	return x86_features();
#elif defined(__aarch64__)
	return (getauxval(AT_HWCAP) & HWCAP_ASIMD) ? RT_CPU_NEON : 0;
#else
	return 0;
#endif
}

char *rt_cpu_feature_names(uint64_t mask, char *buf, size_t len)
{
	static const char *const names[] = {
#define X(e, name) name,
	    RT_CPU_FEATURES(X)
#undef X
	};
	size_t at = 0;
	if (len)
		buf[0] = 0;
	for (int i = 0; i < RT_CPU_BIT_COUNT; i++)
		if (mask & 1ull << i) {
			int w = snprintf(buf + at, at < len ? len - at : 0, "%s%s", at ? " " : "",
			                 names[i]);
			at += w > 0 ? (size_t)w : 0;
		}
	return buf;
}
