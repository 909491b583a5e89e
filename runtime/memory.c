/* The runtime's large buffers: the arenas the generated code plans every
 * activation into (a library's workspaces, the JIT's). */
#include <stdlib.h>
#include <sys/mman.h>

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
