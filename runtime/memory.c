/* The runtime's large buffers: the arenas the generated code plans every
 * activation into (a library's workspaces, the JIT's). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime.h"

enum { HUGE_PAGE = 2 << 20 };

/* In 4 KB pages a training batch's tensors span thousands of pages, more
 * than the TLBs hold, and the kernels walk 16 or more channel planes at
 * once, a page or so apart. Where the system hands out
 * huge pages on request (Linux's transparent huge pages in "madvise"
 * mode, Debian's default), a buffer of 2 MB or more is asked for in them;
 * where not, it is an ordinary buffer. */
void *rt_alloc_large(size_t bytes)
{
	if (bytes < HUGE_PAGE)
		return aligned_alloc(64, bytes ? (bytes + 63) & ~(size_t)63 : 64);
	size_t n = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
	void *p = aligned_alloc(HUGE_PAGE, n);
#ifdef MADV_HUGEPAGE
	if (p)
		madvise(p, n, MADV_HUGEPAGE);
#endif
	return p;
}

void *rt_alloc_large_zero(size_t bytes)
{
	void *p = rt_alloc_large(bytes);
	if (p)
		memset(p, 0, bytes);
	return p;
}

bool rt_huge_pages_granted(void)
{
#ifdef MADV_HUGEPAGE
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	char mode[128] = "";
	bool got = fgets(mode, sizeof mode, f) != NULL;
	fclose(f);
	return got && !strstr(mode, "[never]");
#else
	return false;
#endif
}

/* Copy the weights a library embeds (a read-only mapping of its file, in
 * 4 KB pages) into huge pages. Streamed once per run from memory, they
 * span tens of thousands of 4 KB pages; under a hypervisor each TLB miss
 * is a nested page walk, and after the host has run something else on
 * the CPU (any pause between inferences) those walks start cold, and
 * they were most of the first run after a pause (docs/performance.md,
 * Zen 5). In huge pages the walks are a few hundred. The source's
 * pages are then handed back to the kernel (MADV_PAGEOUT keeps their
 * contents: a file's pages are read again from it, and the JIT's
 * anonymous ones are kept where there is no swap), so the weights are
 * resident once. NULL where huge pages are not granted or the
 * weights are too small to need them: the caller keeps the embedded ones. */
float *rt_weights_to_huge_pages(const float *embedded, size_t floats)
{
	size_t bytes = floats * sizeof(float);
	if (bytes < HUGE_PAGE || !rt_huge_pages_granted())
		return NULL;
	float *w = rt_alloc_large(bytes + sizeof(float));
	if (!w)
		return NULL;
	memcpy(w, embedded, bytes);
	w[floats] = 0;
#ifdef MADV_PAGEOUT
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t lo = ((uintptr_t)embedded + page - 1) & ~(page - 1);
	uintptr_t hi = ((uintptr_t)embedded + bytes) & ~(page - 1);
	if (hi > lo)
		madvise((void *)lo, hi - lo, MADV_PAGEOUT);
#endif
	return w;
}
