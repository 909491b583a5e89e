/* testutil.h: shared helpers for the Check suites.
 *
 *   static Suite *suite(void) { ... }
 *   TEST_MAIN(suite)
 *
 * Each tests/test_*.c is its own executable; the Makefile runs them all,
 * once plain and once under ASan+UBSan (NETCC_SANITIZED=1 is set then, so a
 * suite can shrink work that would be too slow under the sanitizers). */
#ifndef NETCC_TESTUTIL_H
#define NETCC_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kset.h"
#include "runtime.h"

/* A kernel test built against another kernel set (the Makefile's
 * test_X@SET, with NETCC_TEST_KSET) runs only where the CPU has what the
 * set needs, and says so where it does not. */
static inline int test_kset_unsupported(void)
{
#ifdef NETCC_TEST_KSET
	const rt_kset *k = rt_kset_find(NETCC_TEST_KSET);
	uint64_t missing = k ? k->needs & ~rt_cpu_features() : 0;
	if (missing) {
		char names[256];
		printf("skipped: the %s kernel set needs %s, which this CPU lacks\n",
		       NETCC_TEST_KSET, rt_cpu_feature_names(missing, names, sizeof names));
		return 1;
	}
	printf("kernel set %s\n", NETCC_TEST_KSET);
#endif
	return 0;
}

#define TEST_MAIN(suite_fn)                                                                        \
	int main(void)                                                                             \
	{                                                                                          \
		if (test_kset_unsupported())                                                       \
			return EXIT_SUCCESS;                                                       \
		SRunner *sr = srunner_create(suite_fn());                                          \
		srunner_run_all(sr, CK_NORMAL);                                                    \
		int failed = srunner_ntests_failed(sr);                                            \
		srunner_free(sr);                                                                  \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;                                       \
	}

/* The file's bytes (malloc'd, NUL-terminated) and, where len is not NULL,
 * their count; fails the test if the file cannot be opened. */
static inline char *test_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static inline const char *test_env(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

static inline int test_sanitized(void)
{
	return getenv("NETCC_SANITIZED") != NULL;
}

/* Relative error as the golden README defines it: max |a - b| / max |b|. */
static inline double test_rel_err(const float *a, const float *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)ref[i]);
		if (d > num || isnan(d))
			num = isnan(d) ? INFINITY : d;
		if (fabs((double)ref[i]) > den)
			den = fabs((double)ref[i]);
	}
	return den > 0 ? num / den : num;
}

/* Loads ../shared/golden/<case>/<name>.npy as float32; fails the test if absent. */
static inline rt_array test_golden(const char *casename, const char *name)
{
	char path[1024], err[512];
	snprintf(path, sizeof path, "%s/%s/%s.npy", test_env("NETCC_GOLDEN", "../shared/golden"),
	         casename, name);
	rt_array a;
	int rc = rt_npy_read(path, &a, err, sizeof err);
	ck_assert_msg(rc == 0, "golden %s: %s", path, err);
	if (a.dtype != RT_DTYPE_I64 && a.dtype != RT_DTYPE_I32)
		ck_assert_msg(rt_array_to_f32(&a, err, sizeof err) == 0, "%s", err);
	return a;
}

/* Reads an integer attribute from a golden case's meta.txt (`key = value`). */
static inline long test_golden_meta(const char *casename, const char *key, long fallback)
{
	char path[1024], line[256];
	snprintf(path, sizeof path, "%s/%s/meta.txt", test_env("NETCC_GOLDEN", "../shared/golden"),
	         casename);
	FILE *f = fopen(path, "r");
	if (!f)
		return fallback;
	long v = fallback;
	size_t kl = strlen(key);
	while (fgets(line, sizeof line, f)) {
		char *p = line;
		while (*p == ' ')
			p++;
		if (strncmp(p, key, kl) == 0) {
			char *q = p + kl;
			while (*q == ' ')
				q++;
			if (*q == '=')
				v = strtol(q + 1, NULL, 10);
		}
	}
	fclose(f);
	return v;
}

#define ck_assert_close(got, ref, n, tol)                                                          \
	do {                                                                                       \
		double e_ = test_rel_err((got), (ref), (n));                                       \
		ck_assert_msg(e_ < (tol), "relative error %.3g exceeds %.1g", e_, (double)(tol));  \
	} while (0)

#endif
