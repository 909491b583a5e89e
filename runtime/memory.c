/* The runtime's large buffers: the arenas the generated code plans every
 * activation into (a library's workspaces, the JIT's), and the memory
 * bandwidth that profiles report beside the FMA peak. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

/* ---- the bandwidth profiles report ----------------------------------------- */

/* Far past any last-level cache here (32 MB on the EPYC), so the reads
 * come from memory. */
enum { READ_BYTES = 256 << 20, READ_THREADS_MAX = 64 };

typedef float f4 __attribute__((vector_size(16)));

typedef struct reader {
	const f4 *p;
	size_t n; /* vectors */
	double seconds;
	float sink;
} reader;

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* four independent sums: one would wait on the add, not on memory */
static void *read_run(void *arg)
{
	reader *r = arg;
	f4 a = {0}, b = {0}, c = {0}, d = {0};
	double t = seconds_now();
	for (size_t i = 0; i + 4 <= r->n; i += 4) {
		a += r->p[i];
		b += r->p[i + 1];
		c += r->p[i + 2];
		d += r->p[i + 3];
	}
	r->seconds = seconds_now() - t;
	f4 s = a + b + c + d;
	r->sink = s[0];
	return NULL;
}

double rt_read_gbs(int threads)
{
	if (threads < 1)
		threads = 1;
	if (threads > READ_THREADS_MAX)
		threads = READ_THREADS_MAX;
	f4 *buf = rt_alloc_large(READ_BYTES);
	if (!buf)
		return 0;
	memset(buf, 0, READ_BYTES); /* every page present before the clock starts */
	size_t per = READ_BYTES / sizeof(f4) / (size_t)threads;
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		reader rd[READ_THREADS_MAX];
		pthread_t tid[READ_THREADS_MAX];
		int started = 0;
		for (int i = 0; i < threads; i++)
			rd[i] = (reader){.p = buf + (size_t)i * per, .n = per};
		for (int i = 1; i < threads && pthread_create(&tid[i], NULL, read_run, &rd[i]) == 0;
		     i++)
			started = i;
		read_run(&rd[0]);
		double slowest = rd[0].seconds;
		for (int i = 1; i <= started; i++) {
			pthread_join(tid[i], NULL);
			slowest = rd[i].seconds > slowest ? rd[i].seconds : slowest;
		}
		double gbs = (double)per * sizeof(f4) * (started + 1) / slowest * 1e-9;
		best = gbs > best ? gbs : best;
	}
	free(buf);
	return best;
}
