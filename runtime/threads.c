/* A small thread pool for the runtime's parallel kernels.
 *
 * Workers are created once per pool and wait between calls: first spinning
 * for a short while (a CNN calls rt_threads_run hundreds of times per
 * inference, with only short serial kernels in between, and a spinning
 * worker starts in well under a microsecond), then asleep on a futex so an
 * idle pool costs no CPU. The caller takes tasks too.
 *
 * Each thread (the caller is thread 0) has a home range of every job's
 * tasks, the same share of every job: it takes its own from the front,
 * then takes what is left of the others' from their backs. A layer's
 * share of the map is then mostly made by the thread that made it in the
 * layer before, so it is still in that core's cache (the two CPUs of the
 * EPYC hosts hand a cache line over in hundreds of nanoseconds: ResNet-18
 * at batch 1 on two threads ran 6% faster than with tasks handed out
 * through one counter), and a worker that is late (descheduled, or still
 * waking up) or on a slower CPU simply finds less to do.
 *
 * A job is identified by a generation number. Each range word carries the
 * generation beside its bounds, and a task is claimed by a compare-and-swap
 * on the whole word, so a worker that wakes late can never claim a task of
 * a newer job with the function of an older one: the caller therefore waits
 * only for the tasks to be done, never for every worker to check in. The
 * job's description alternates between two slots: the next job is written
 * into the other slot while a late worker may still read this one, and it
 * must find this job's task count there, or it could claim a task past its
 * end (that happened, with one counter: an extra call, and a count of done tasks that never
 * matched again).
 *
 * One caller at a time per pool: rt_threads_run from a second thread while the
 * pool is busy, or from inside one of its own tasks, runs that call's tasks
 * on the calling thread instead of waiting (the results are the same; only
 * the parallelism is lost). Pools are independent: all state is in the
 * struct, none is global. Linux only (futex). */
#include <limits.h>
#include <stdbool.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

/* How long an idle worker spins before it sleeps: long enough to bridge
 * the serial kernels between two jobs of a network, short enough that an
 * idle pool gives its CPUs back almost at once. On a virtual machine a
 * sleeping thread's CPU sleeps too, and the first inference after a pause
 * woke it again and again at a cost: at 50 us, ResNet-18 at batch 1 on two
 * threads took 18-20 ms a run 0.25 s apart, 10 back to back; at 500 us
 * (and the caller's 2 ms) 10.5-11.8. The caller waits for its own job's
 * last tasks longer, WAIT_NS: they are running, and a caller put to sleep
 * was often woken on its worker's CPU. */
enum { SPIN_NS = 500 * 1000, WAIT_NS = 2000 * 1000 };

struct rt_threads {
	int threads; /* the caller included */
	int workers; /* threads actually started */
	pthread_t *tid;

	/* Job g is described in job[g & 1]. Its fields are atomics only
	 * because a worker that is two jobs late may read them while they
	 * are rewritten; it then fails to claim a task (the generation in
	 * next has moved on) and never uses what it read. */
	struct {
		_Atomic(rt_task_fn *) fn;
		_Atomic(void *) ctx;
		atomic_int n;    /* tasks of the whole run: fn's third argument */
		atomic_int base; /* the first of them this job holds */
	} job[2];
	/* Per slot and thread, a cache line each: what is left of the
	 * thread's home range, as a range word */
	struct range {
		_Atomic uint64_t w;
		char pad[64 - sizeof(uint64_t)];
	} * range;
	rt_reduce_fn *reduce; /* a data-parallel caller's, for rt_grad_allreduce */
	void *reduce_ctx;
	/* tasks of the current job finished, of want; the caller sleeps on it */
	_Atomic uint32_t done;
	_Atomic uint32_t want;
	atomic_int caller_asleep;
	atomic_int caller_cpu; /* where the caller ran as it published its last job */
	/* futex word the workers sleep on: the generation of the latest job */
	_Atomic uint32_t gen;
	atomic_int asleep; /* workers asleep on gen, so the caller knows whether to wake */
	atomic_int stop;
	atomic_flag busy; /* a run is in progress: another concurrent one runs inline */
	atomic_int ids;   /* workers numbered so far: their ids are 1, 2, ... */

	/* Scratch for the GEMM's packed blocks, allocated with the pool so an
	 * inference allocates nothing: one slot per thread, a bit each in
	 * slot_used. The shared packed operand of a GEMM is kept between calls
	 * and only grows. */
	float *scratch;
	size_t slot_floats;
	int slots;
	atomic_uint slot_used;
	float *shared;
	size_t shared_floats;
	atomic_flag shared_busy;
	bool in_caller_memory; /* rt_threads_inline: nothing to free */

	/* netcc profile: seconds per node, added to by rt_profile_mark */
	double *prof;
	int prof_n;
	double prof_last;
};

static long futex(_Atomic uint32_t *word, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins while *word == val for up to limit_ns; returns whether it changed.
 * The clock is read only every 64 pauses: a pause costs from a few to a
 * hundred cycles depending on the CPU, so a count alone would not say how
 * long we spun. */
static int spin_while(_Atomic uint32_t *word, uint32_t val, int64_t limit_ns)
{
	int64_t t0 = 0;
	for (int i = 0;; i++) {
		if (atomic_load_explicit(word, memory_order_acquire) != val)
			return 1;
		cpu_relax();
		if ((i & 63) == 63) {
			int64_t t = now_ns();
			if (!t0)
				t0 = t;
			else if (t - t0 > limit_ns)
				return 0;
		}
	}
}

/* A range word: the job's generation (its low GEN_BITS) and the bounds
 * [lo, hi) of a home range's tasks still unclaimed; a job holds at most
 * JOB_MAX tasks, and rt_threads_run runs more as several jobs. */
enum { GEN_BITS = 24, TASK_BITS = 20, JOB_MAX = (1 << TASK_BITS) - 1 };

static uint64_t range_word(uint32_t g, int lo, int hi)
{
	return ((uint64_t)g & ((1u << GEN_BITS) - 1)) << 2 * TASK_BITS | (uint64_t)lo << TASK_BITS |
	       (uint64_t)hi;
}

/* Claims a task of job g from a home range: from its front (the range's
 * owner) or its back (another thread); -1 when it is empty or no longer
 * job g's. A late worker's g was read (acquire) after the caller wrote
 * job g's slot, and the slot is rewritten only for job g + 2, with that
 * generation in every range word: so if the exchange succeeds, fn, ctx
 * and n were job g's and the task exists. */
static int claim(_Atomic uint64_t *r, uint32_t g, bool front)
{
	uint64_t w = atomic_load_explicit(r, memory_order_acquire);
	for (;;) {
		int lo = (int)(w >> TASK_BITS & JOB_MAX), hi = (int)(w & JOB_MAX);
		if (w >> 2 * TASK_BITS != range_word(g, 0, 0) >> 2 * TASK_BITS || lo >= hi)
			return -1;
		uint64_t to = front ? range_word(g, lo + 1, hi) : range_word(g, lo, hi - 1);
		if (atomic_compare_exchange_weak_explicit(r, &w, to, memory_order_acq_rel,
		                                          memory_order_acquire))
			return front ? lo : hi - 1;
	}
}

/* Runs tasks of job generation g as thread id: its home range, then what
 * is left of the others'. */
static void work(rt_threads *tp, uint32_t g, int id)
{
	rt_task_fn *fn = atomic_load_explicit(&tp->job[g & 1].fn, memory_order_relaxed);
	void *ctx = atomic_load_explicit(&tp->job[g & 1].ctx, memory_order_relaxed);
	int n = atomic_load_explicit(&tp->job[g & 1].n, memory_order_relaxed);
	int base = atomic_load_explicit(&tp->job[g & 1].base, memory_order_relaxed);
	struct range *home = tp->range + (size_t)(g & 1) * tp->threads;
	for (int k = 0; k < tp->threads; k++) {
		int i;
		while ((i = claim(&home[(id + k) % tp->threads].w, g, k == 0)) >= 0) {
			fn(ctx, base + i, n);
			uint32_t d =
			    atomic_fetch_add_explicit(&tp->done, 1, memory_order_seq_cst) + 1;
			if (d == atomic_load_explicit(&tp->want, memory_order_relaxed) &&
			    atomic_load_explicit(&tp->caller_asleep, memory_order_seq_cst))
				futex(&tp->done, FUTEX_WAKE, INT_MAX);
		}
	}
}

/* A worker that finds a job while on the CPU its caller runs on moves to
 * another. The scheduler often puts them together (a thread woken goes to
 * the CPU that woke it, or another stays busy for a moment), and does not
 * move either while both are cache-hot: the two then shared one core for
 * the whole of a run. They did for an inference started after a pause
 * (ResNet-18 at batch 1 on two threads, 0.25 s between runs: median 20
 * ms, the one thread's time, 10 back to back), which is how an
 * application calls a library. Moving costs two system calls, only when
 * it is needed. */
static void step_aside(rt_threads *tp)
{
	int me = sched_getcpu();
	if (me < 0 || me != atomic_load_explicit(&tp->caller_cpu, memory_order_relaxed))
		return;
	cpu_set_t all, others;
	if (pthread_getaffinity_np(pthread_self(), sizeof all, &all) != 0)
		return;
	others = all;
	CPU_CLR(me, &others);
	if (CPU_COUNT(&others) == 0)
		return;
	/* moved off this CPU now; the mask given back leaves it where it is */
	if (pthread_setaffinity_np(pthread_self(), sizeof others, &others) == 0)
		pthread_setaffinity_np(pthread_self(), sizeof all, &all);
}

static void *worker(void *arg)
{
	rt_threads *tp = arg;
	/* Generation 0 is the pool's initial state: no run can start before
	 * rt_threads_create has returned, so the first job is never missed. */
	uint32_t seen = 0;
	int id = atomic_fetch_add_explicit(&tp->ids, 1, memory_order_relaxed) + 1;
	for (;;) {
		if (!spin_while(&tp->gen, seen, SPIN_NS)) {
			/* Announce the sleep before re-checking, so a caller that
			 * publishes in between either sees us asleep and wakes us,
			 * or we see its generation (both sides are seq_cst). */
			atomic_fetch_add_explicit(&tp->asleep, 1, memory_order_seq_cst);
			while (atomic_load_explicit(&tp->gen, memory_order_seq_cst) == seen)
				futex(&tp->gen, FUTEX_WAIT, seen);
			atomic_fetch_sub_explicit(&tp->asleep, 1, memory_order_relaxed);
		}
		step_aside(tp);
		if (atomic_load_explicit(&tp->stop, memory_order_acquire))
			return NULL;
		seen = atomic_load_explicit(&tp->gen, memory_order_acquire);
		work(tp, seen, id);
	}
}

rt_threads *rt_threads_create(int threads)
{
	if (threads <= 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		threads = cpus < 1 ? 1 : cpus > 1024 ? 1024 : (int)cpus;
	}
	/* NETCC_THREADS=3000 asked for 3000; set_threads refuses past 1024 */
	if (threads > 1024)
		threads = 1024;
	rt_threads *tp = calloc(1, sizeof *tp);
	if (!tp)
		return NULL;
	tp->threads = threads;
	atomic_flag_clear(&tp->busy);
	atomic_flag_clear(&tp->shared_busy);
	/* Without its scratch the pool still works: the GEMM then allocates. */
	tp->slot_floats = rt_gemm_scratch_floats();
	tp->slots = threads < 32 ? threads : 32;
	tp->scratch = aligned_alloc(64, (size_t)tp->slots * tp->slot_floats * sizeof(float));
	if (!tp->scratch)
		tp->slots = 0;
	if (threads > 1) {
		tp->tid = calloc((size_t)threads - 1, sizeof *tp->tid);
		tp->range = aligned_alloc(64, 2 * (size_t)threads * sizeof *tp->range);
		if (!tp->tid || !tp->range) {
			free(tp->tid);
			free(tp->range);
			free(tp->scratch);
			free(tp);
			return NULL;
		}
	}
	/* Workers block every signal, so signals meant for the process (a
	 * Ctrl-C that netcc train turns into a checkpoint) reach the
	 * application's own threads. They inherit the mask from here. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < threads - 1; i++) {
		if (pthread_create(&tp->tid[i], NULL, worker, tp) != 0)
			break;
		tp->workers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* With fewer workers than asked for the pool still works, only slower;
	 * results do not depend on the thread count. */
	tp->threads = tp->workers + 1;
	return (rt_threads *)(void *)tp;
}

void rt_threads_destroy(rt_threads *p)
{
	rt_threads *tp = p;
	if (!tp)
		return;
	atomic_store_explicit(&tp->stop, 1, memory_order_release);
	atomic_fetch_add_explicit(&tp->gen, 1, memory_order_seq_cst);
	futex(&tp->gen, FUTEX_WAKE, INT_MAX);
	for (int i = 0; i < tp->workers; i++)
		pthread_join(tp->tid[i], NULL);
	if (tp->in_caller_memory)
		return;
	free(tp->tid);
	free(tp->range);
	free(tp->scratch);
	free(tp->shared);
	free(tp);
}

/* ---- scratch ---------------------------------------------------------------- */

int rt_slot_take(_Atomic unsigned *used, int slots)
{
	unsigned u = atomic_load_explicit(used, memory_order_relaxed);
	for (;;) {
		int i = 0;
		while (i < slots && (u >> i & 1))
			i++;
		if (i == slots)
			return -1;
		if (atomic_compare_exchange_weak_explicit(
		        used, &u, u | 1u << i, memory_order_acquire, memory_order_relaxed))
			return i;
	}
}

void rt_slot_give(_Atomic unsigned *used, int slot)
{
	if (slot >= 0)
		atomic_fetch_and_explicit(used, ~(1u << slot), memory_order_release);
}

float *rt_threads_scratch_take(rt_threads *p, size_t floats, int *slot)
{
	*slot = -1;
	if (!p || floats > p->slot_floats)
		return NULL;
	/* more concurrent users than threads (a second caller running
	 * inline): that one allocates */
	*slot = rt_slot_take(&p->slot_used, p->slots);
	return *slot < 0 ? NULL : p->scratch + (size_t)*slot * p->slot_floats;
}

void rt_threads_scratch_give(rt_threads *p, int slot)
{
	if (p)
		rt_slot_give(&p->slot_used, slot);
}

float *rt_threads_shared_take(rt_threads *p, size_t floats)
{
	if (!p || p->in_caller_memory ||
	    atomic_flag_test_and_set_explicit(&p->shared_busy, memory_order_acquire))
		return NULL;
	if (floats > p->shared_floats) {
		/* grows to the largest operand the model has, on its first run */
		size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
		float *bigger = aligned_alloc(64, bytes);
		if (!bigger) {
			atomic_flag_clear_explicit(&p->shared_busy, memory_order_release);
			return NULL;
		}
		free(p->shared);
		p->shared = bigger;
		p->shared_floats = floats;
	}
	return p->shared;
}

void rt_threads_shared_give(rt_threads *p)
{
	if (p)
		atomic_flag_clear_explicit(&p->shared_busy, memory_order_release);
}

/* The one-thread pool of NAME_infer_static: its struct and one scratch slot
 * in the caller's workspace, after the activations. */
enum { INLINE_HEADER = 512 };
_Static_assert(sizeof(rt_threads) <= INLINE_HEADER, "the pool outgrew its inline header");

/* A fixed size: netcc writes NAME_WORKSPACE_SIZE into headers for targets
 * whose struct layout it cannot ask (another architecture). */
static size_t inline_header(void)
{
	return INLINE_HEADER;
}

size_t rt_threads_inline_bytes(void)
{
	return inline_header() + rt_gemm_scratch_floats() * sizeof(float);
}

rt_threads *rt_threads_inline(void *mem)
{
	rt_threads *tp = mem;
	memset(tp, 0, sizeof *tp);
	tp->threads = 1;
	tp->in_caller_memory = true;
	atomic_flag_clear(&tp->busy);
	atomic_flag_clear(&tp->shared_busy);
	tp->scratch = (float *)((char *)mem + inline_header());
	tp->slot_floats = rt_gemm_scratch_floats();
	tp->slots = 1;
	return tp;
}

int rt_threads_count(const rt_threads *p)
{
	return p ? p->threads : 1;
}

static void run_inline(rt_task_fn *fn, void *ctx, int n)
{
	for (int i = 0; i < n; i++)
		fn(ctx, i, n);
}

/* Tasks [base, base + count) of n as one job: each thread's home range
 * is its even share of them. */
static void run_job(rt_threads *tp, rt_task_fn *fn, void *ctx, int n, int base, int count)
{
	uint32_t g = atomic_load_explicit(&tp->gen, memory_order_relaxed) + 1;
	atomic_store_explicit(&tp->caller_cpu, sched_getcpu(), memory_order_relaxed);
	atomic_store_explicit(&tp->job[g & 1].fn, fn, memory_order_relaxed);
	atomic_store_explicit(&tp->job[g & 1].ctx, ctx, memory_order_relaxed);
	atomic_store_explicit(&tp->job[g & 1].n, n, memory_order_relaxed);
	atomic_store_explicit(&tp->job[g & 1].base, base, memory_order_relaxed);
	struct range *home = tp->range + (size_t)(g & 1) * tp->threads;
	for (int t = 0; t < tp->threads; t++) {
		int lo, hi;
		rt_task_range(count, t, tp->threads, &lo, &hi);
		atomic_store_explicit(&home[t].w, range_word(g, lo, hi), memory_order_relaxed);
	}
	atomic_store_explicit(&tp->want, (uint32_t)count, memory_order_relaxed);
	atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
	atomic_store_explicit(&tp->gen, g, memory_order_seq_cst);
	int sleeping = atomic_load_explicit(&tp->asleep, memory_order_seq_cst);
	if (sleeping) {
		/* Wake no more workers than there are tasks for besides ours. */
		int want = count - 1 < sleeping ? count - 1 : sleeping;
		futex(&tp->gen, FUTEX_WAKE, (uint32_t)want);
	}

	work(tp, g, 0);

	/* Wait for the tasks the workers still run: spin first (they are
	 * usually nearly done), then sleep until the last one wakes us. */
	uint32_t d = atomic_load_explicit(&tp->done, memory_order_acquire);
	while ((int)d != count) {
		if (!spin_while(&tp->done, d, WAIT_NS)) {
			atomic_store_explicit(&tp->caller_asleep, 1, memory_order_seq_cst);
			d = atomic_load_explicit(&tp->done, memory_order_seq_cst);
			if ((int)d != count)
				futex(&tp->done, FUTEX_WAIT, d);
			atomic_store_explicit(&tp->caller_asleep, 0, memory_order_relaxed);
		}
		d = atomic_load_explicit(&tp->done, memory_order_acquire);
	}
}

void rt_threads_run(rt_threads *p, rt_task_fn *fn, void *ctx, int n)
{
	rt_threads *tp = p;
	if (n <= 0)
		return;
	if (!tp || tp->workers == 0 || n == 1 ||
	    atomic_flag_test_and_set_explicit(&tp->busy, memory_order_acquire)) {
		run_inline(fn, ctx, n);
		return;
	}
	for (int base = 0; base < n; base += JOB_MAX)
		run_job(tp, fn, ctx, n, base, n - base < JOB_MAX ? n - base : JOB_MAX);
	atomic_flag_clear_explicit(&tp->busy, memory_order_release);
}

void rt_task_range(int n, int task, int tasks, int *lo, int *hi)
{
	*lo = (int)((long)n * task / tasks);
	*hi = (int)((long)n * (task + 1) / tasks);
}

/* ---- profiling -------------------------------------------------------------
 * Code compiled for profiling calls rt_profile_mark(pool, -1) as a forward
 * begins and rt_profile_mark(pool, id) after node id: each node is charged
 * the time since the previous mark. The pool carries the accumulators
 * because it is the one per-instance object every forward is given. */

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void rt_threads_profile(rt_threads *p, double *seconds, int n)
{
	if (!p)
		return;
	p->prof = seconds;
	p->prof_n = seconds ? n : 0;
}

void rt_profile_mark(rt_threads *p, int id)
{
	if (!p || !p->prof)
		return;
	double t = seconds_now();
	if (id >= 0 && id < p->prof_n)
		p->prof[id] += t - p->prof_last;
	p->prof_last = t;
}

void rt_threads_set_reduce(rt_threads *p, rt_reduce_fn *fn, void *ctx)
{
	if (p) {
		p->reduce = fn;
		p->reduce_ctx = ctx;
	}
}

void rt_threads_reduce(rt_threads *p, float *grad, int64_t n, int left)
{
	if (p && p->reduce)
		p->reduce(p->reduce_ctx, grad, n, left);
}
