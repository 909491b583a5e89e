/* Data-parallel training over Open MPI: the one file that includes mpi.h.
 *
 * A process started by mpirun (OMPI_COMM_WORLD_SIZE in its environment)
 * joins MPI_COMM_WORLD; any other runs alone as rank 0 of 1 and never
 * calls MPI, so netcc needs no launcher. Every reduction is computed in a
 * fixed order and gives the same bits on every rank: a chunk of a bucket
 * is summed by its owner over ranks 0..P-1 and the sums are gathered
 * (reduce-scatter then all-gather, the ring's traffic without MPI's
 * freedom to reorder the additions). */
#include <fcntl.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "driver.h"

typedef struct dist_piece {
	float *p;
	int64_t n;
} dist_piece;

static void dist_fail(const dist *d, const char *what, int code)
{
	char msg[MPI_MAX_ERROR_STRING] = "";
	int len = 0;
	MPI_Error_string(code, msg, &len);
	dprintf(d->err_fd,
	        "netcc: error: rank %d: %s failed: %s (did another rank stop?); ending the job\n",
	        d->rank, what, msg);
	MPI_Abort(MPI_COMM_WORLD, 1);
	_exit(1);
}

/* The watchdog reads when this rank began waiting in a collective. */
static _Atomic double waiting_since;

#define MPI_CHECK(d, call)                                                                         \
	do {                                                                                       \
		waiting_since = backend_now();                                                     \
		int rc_ = (call);                                                                  \
		waiting_since = 0;                                                                 \
		if (rc_ != MPI_SUCCESS)                                                            \
			dist_fail(d, #call, rc_);                                                  \
	} while (0)

/* A rank that is alive but stuck (a deadlock, a hung file system) would
 * hold the others in a collective for ever: past the timeout, this rank
 * leaves, and mpirun ends the job. MPI is not called from this thread
 * (the library runs MPI_THREAD_FUNNELED). */
static void *watchdog(void *arg)
{
	const dist *d = arg;
	for (;;) {
		sleep(1);
		double since = waiting_since;
		if (since > 0 && backend_now() - since > d->timeout) {
			dprintf(d->err_fd,
			        "netcc: error: rank %d: no answer from the other ranks for %d s "
			        "(NETCC_DIST_TIMEOUT): one is stuck or gone; ending the job\n",
			        d->rank, d->timeout);
			_exit(1);
		}
	}
	return NULL;
}

/* Ranks other than 0 are silent: their output would repeat rank 0's. */
static void quiet(dist *d)
{
	d->err_fd = dup(STDERR_FILENO);
	int null = open("/dev/null", O_WRONLY);
	if (null >= 0) {
		fflush(stdout);
		fflush(stderr);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
}

/* One thread per CPU shared among the ranks on this machine, unless told. */
static void threads_share(void)
{
	const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	int n = local ? atoi(local) : 1;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (getenv("NETCC_THREADS") || n < 1 || cpus < 1)
		return;
	char buf[32];
	snprintf(buf, sizeof buf, "%ld", cpus / n > 0 ? cpus / n : 1);
	setenv("NETCC_THREADS", buf, 0);
}

/* NETCC_DIST_FAULT: "kill:RANK:STEP" (that rank dies before that step)
 * or "skip-reduce" (no gradient leaves its rank): the tests' faults. */
static void faults_read(dist *d)
{
	const char *f = getenv("NETCC_DIST_FAULT");
	int rank, step;
	d->kill_step = -1;
	if (!f)
		return;
	if (sscanf(f, "hang:%d:%d", &rank, &step) == 2 && rank == d->rank)
		d->hang_step = step;
	if (!strcmp(f, "skip-reduce"))
		d->skip_reduce = true;
	else if (sscanf(f, "kill:%d:%d", &rank, &step) == 2 && rank == d->rank)
		d->kill_step = step;
}

int dist_init(dist *d, int *argc, char ***argv)
{
	*d = (dist){.size = 1, .err_fd = STDERR_FILENO, .kill_step = -1, .hang_step = -1};
	const char *timeout = getenv("NETCC_DIST_TIMEOUT");
	d->timeout = timeout && atoi(timeout) > 0 ? atoi(timeout) : DIST_TIMEOUT;
	d->verify = getenv("NETCC_DIST_VERIFY") != NULL;
	const char *size = getenv("OMPI_COMM_WORLD_SIZE");
	if (!size || atoi(size) <= 1)
		return 0;
	int provided;
	if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
		fprintf(stderr, "netcc: error: MPI_Init failed under mpirun\n");
		return 1;
	}
	d->mpi = true;
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &d->size);
	threads_share();
	faults_read(d);
	if (d->rank != 0)
		quiet(d);
	static dist seen; /* what the watchdog reads, for the process's lifetime */
	seen = *d;
	pthread_t t;
	if (pthread_create(&t, NULL, watchdog, &seen) == 0)
		pthread_detach(t);
	return 0;
}

void dist_finish(dist *d)
{
	free(d->bucket);
	free(d->scratch);
	free(d->pieces);
	if (d->mpi)
		MPI_Finalize();
	if (d->err_fd != STDERR_FILENO)
		close(d->err_fd);
	*d = (dist){.size = 1, .err_fd = STDERR_FILENO};
}

/* Every rank's status, the worst wins: one rank's failure ends all. */
int dist_status(dist *d, int rc)
{
	if (d->size == 1)
		return rc;
	int worst;
	MPI_CHECK(d, MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
	return worst;
}

void dist_bcast(dist *d, void *buf, size_t bytes)
{
	for (size_t at = 0; d->size > 1 && at < bytes;) {
		size_t n = bytes - at < (1u << 30) ? bytes - at : (1u << 30);
		MPI_CHECK(d, MPI_Bcast((char *)buf + at, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD));
		at += n;
	}
}

void dist_sum(dist *d, double *v, int n)
{
	if (d->size == 1)
		return;
	double *all = malloc((size_t)n * (size_t)d->size * sizeof *all);
	if (!all)
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	MPI_CHECK(d, MPI_Allgather(v, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD));
	for (int k = 0; k < n; k++) {
		v[k] = 0;
		for (int r = 0; r < d->size; r++)
			v[k] += all[r * n + k];
	}
	free(all);
}

bool dist_same(dist *d, uint64_t h)
{
	if (d->size == 1)
		return true;
	uint64_t lo = h, hi = h;
	MPI_CHECK(d, MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD));
	MPI_CHECK(d, MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
	return lo == hi;
}

void dist_step_begin(dist *d, int64_t step)
{
	if (step == d->kill_step)
		raise(SIGKILL);
	while (step == d->hang_step)
		pause();
}

static bool grow(void **p, size_t *cap, size_t bytes)
{
	if (bytes <= *cap)
		return true;
	void *q = realloc(*p, bytes);
	if (!q)
		return false;
	*p = q;
	*cap = bytes;
	return true;
}

/* The average of the bucket over ranks, the same bits everywhere. */
static void bucket_reduce(dist *d, int64_t n)
{
	int P = d->size;
	int64_t chunk = (n + P - 1) / P;
	size_t bytes = (size_t)(chunk * P) * sizeof(float);
	if (!grow((void **)&d->scratch, &d->scratch_cap, bytes))
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	memset(d->bucket + n, 0, (size_t)(chunk * P - n) * sizeof(float));
	MPI_CHECK(d, MPI_Alltoall(d->bucket, (int)chunk, MPI_FLOAT, d->scratch, (int)chunk,
	                          MPI_FLOAT, MPI_COMM_WORLD));
	float *mine = d->bucket + d->rank * chunk;
	for (int64_t i = 0; i < chunk; i++) {
		float s = d->scratch[i];
		for (int r = 1; r < P; r++)
			s += d->scratch[r * chunk + i];
		d->scratch[i] = s / (float)P;
	}
	memcpy(mine, d->scratch, (size_t)chunk * sizeof(float));
	MPI_CHECK(d, MPI_Allgather(MPI_IN_PLACE, (int)chunk, MPI_FLOAT, d->bucket, (int)chunk,
	                           MPI_FLOAT, MPI_COMM_WORLD));
}

static void bucket_flush(dist *d)
{
	double t0 = backend_now();
	int64_t n = 0;
	for (int i = 0; i < d->n_pieces; i++) {
		memcpy(d->bucket + n, d->pieces[i].p, (size_t)d->pieces[i].n * sizeof(float));
		n += d->pieces[i].n;
	}
	bucket_reduce(d, n);
	n = 0;
	for (int i = 0; i < d->n_pieces; i++) {
		memcpy(d->pieces[i].p, d->bucket + n, (size_t)d->pieces[i].n * sizeof(float));
		n += d->pieces[i].n;
	}
	d->reduce_bytes += n * (int64_t)sizeof(float);
	d->n_pieces = 0;
	d->pending = 0;
	d->reduce_seconds += backend_now() - t0;
}

/* rt_reduce_fn: gradients gather into buckets of DIST_BUCKET_BYTES, in the
 * order the step finishes them; each full bucket, and the step's last,
 * is reduced at once. */
void dist_reduce(void *ctx, float *grad, int64_t n, int left)
{
	dist *d = ctx;
	if (d->skip_reduce)
		return;
	int64_t need = d->pending + n;
	size_t padded = (size_t)(need + d->size) * sizeof(float);
	if (!grow((void **)&d->bucket, &d->bucket_cap, padded) ||
	    !grow((void **)&d->pieces, &d->pieces_cap,
	          (size_t)(d->n_pieces + 1) * sizeof *d->pieces))
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	d->pieces[d->n_pieces++] = (dist_piece){grad, n};
	d->pending = need;
	if (left == 0 || d->pending * (int64_t)sizeof(float) >= DIST_BUCKET_BYTES)
		bucket_flush(d);
}
