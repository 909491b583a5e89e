/* Built by test_compile against a generated library named "na": counts the
 * allocations NAME_infer_static makes (the header promises none) by
 * interposing the allocator around glibc's own entry points. */
#include <stddef.h>
#include <stdio.h>

#include "na.h"

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);
void __libc_free(void *p);

static int counting, calls;

void *malloc(size_t n)
{
	calls += counting;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	calls += counting;
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	calls += counting;
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	calls += counting;
	return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
	calls += counting;
	return __libc_memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
	calls += counting;
	*p = __libc_memalign(align, n);
	return *p ? 0 : 12;
}

void free(void *p)
{
	__libc_free(p);
}

static float in[NA_INPUT_SIZE], out[NA_OUTPUT_SIZE];

int main(void)
{
	void *ws = __libc_memalign(NA_WORKSPACE_ALIGN, NA_WORKSPACE_SIZE);
	const float *w = na_embedded_weights();
	if (!ws || !w)
		return 20;
	for (int i = 0; i < NA_INPUT_SIZE; i++)
		in[i] = (float)(i % 7) * 0.25f;
	int rc = 0;
	for (int r = 0; r < 2 && rc == 0; r++) {
		counting = 1;
		rc = na_infer_static(w, ws, in, out);
		counting = 0;
	}
	/* creating an instance allocates, and is counted: the interposition
	 * works (whether its first call allocates depends on the model) */
	int before = calls;
	counting = 1;
	na *m = na_create();
	counting = 0;
	if (m)
		na_infer(m, in, out);
	na_destroy(m);
	printf("rc %d, allocations in infer_static %d, in na_create %d\n", rc, before,
	       calls - before);
	return rc != 0 || before != 0;
}
