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
#include "train.h"

typedef struct dist_piece {
	float *p;
	int64_t n;
} dist_piece;

/* A bucket: gradients packed in the order the step finished them, its
 * reduce-scatter started without waiting, so backward goes on meanwhile. */
typedef struct dist_bucket {
	dist_piece *pieces;
	int n_pieces;
	size_t pieces_cap, buf_cap, scratch_cap;
	int64_t n, chunk; /* floats, and each rank's share of them */
	float *buf, *scratch;
	MPI_Request req;
} dist_bucket;

struct dist_buckets {
	dist_bucket *b;
	int n, cap; /* in use this step (the last one open), allocated */
};

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
	const char *bucket = getenv("NETCC_DIST_BUCKET_BYTES");
	d->bucket_bytes = bucket && atoll(bucket) > 0 ? atoll(bucket) : DIST_BUCKET_BYTES;
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
	for (int i = 0; d->buckets && i < d->buckets->cap; i++) {
		free(d->buckets->b[i].pieces);
		free(d->buckets->b[i].buf);
		free(d->buckets->b[i].scratch);
	}
	if (d->buckets)
		free(d->buckets->b);
	free(d->buckets);
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

static dist_bucket *bucket_open(dist *d)
{
	struct dist_buckets *q = d->buckets;
	if (!q && !(q = d->buckets = calloc(1, sizeof *q)))
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	if (q->n == q->cap) {
		int cap = q->cap ? 2 * q->cap : 4;
		dist_bucket *b = realloc(q->b, (size_t)cap * sizeof *b);
		if (!b)
			dist_fail(d, "malloc", MPI_ERR_NO_MEM);
		memset(b + q->cap, 0, (size_t)(cap - q->cap) * sizeof *b);
		q->b = b;
		q->cap = cap;
	}
	dist_bucket *b = &q->b[q->n++];
	b->n_pieces = 0;
	b->n = 0;
	return b;
}

/* Packs the bucket and starts its all-to-all: each rank receives every
 * rank's copy of its own chunk. */
static void bucket_start(dist *d, dist_bucket *b)
{
	int P = d->size;
	b->chunk = (b->n + P - 1) / P;
	size_t bytes = (size_t)(b->chunk * P) * sizeof(float);
	if (!grow((void **)&b->buf, &b->buf_cap, bytes) ||
	    !grow((void **)&b->scratch, &b->scratch_cap, bytes))
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	int64_t at = 0;
	for (int i = 0; i < b->n_pieces; i++) {
		memcpy(b->buf + at, b->pieces[i].p, (size_t)b->pieces[i].n * sizeof(float));
		at += b->pieces[i].n;
	}
	memset(b->buf + at, 0, bytes - (size_t)at * sizeof(float));
	MPI_CHECK(d, MPI_Ialltoall(b->buf, (int)b->chunk, MPI_FLOAT, b->scratch, (int)b->chunk,
	                           MPI_FLOAT, MPI_COMM_WORLD, &b->req));
}

/* Sums its chunk over ranks 0..P-1 in order, gathers every chunk and
 * unpacks: the average of the bucket, the same bits on every rank. */
static void bucket_finish(dist *d, dist_bucket *b)
{
	int P = d->size;
	int64_t c = b->chunk;
	MPI_CHECK(d, MPI_Wait(&b->req, MPI_STATUS_IGNORE));
	for (int64_t i = 0; i < c; i++) {
		float s = b->scratch[i];
		for (int r = 1; r < P; r++)
			s += b->scratch[r * c + i];
		b->buf[d->rank * c + i] = s / (float)P;
	}
	MPI_CHECK(d, MPI_Allgather(MPI_IN_PLACE, (int)c, MPI_FLOAT, b->buf, (int)c, MPI_FLOAT,
	                           MPI_COMM_WORLD));
	int64_t at = 0;
	for (int i = 0; i < b->n_pieces; i++) {
		memcpy(b->pieces[i].p, b->buf + at, (size_t)b->pieces[i].n * sizeof(float));
		at += b->pieces[i].n;
	}
	d->reduce_bytes += b->n * (int64_t)sizeof(float);
}

/* Started buckets move while backward computes only when MPI is called:
 * every gradient that arrives gives them a turn. */
static void buckets_progress(dist *d)
{
	struct dist_buckets *q = d->buckets;
	for (int i = 0; i + 1 < q->n; i++) {
		int done;
		MPI_CHECK(d, MPI_Test(&q->b[i].req, &done, MPI_STATUS_IGNORE));
		if (done)
			q->b[i].req = MPI_REQUEST_NULL; /* MPI_Wait returns at once */
	}
}

/* rt_reduce_fn: gradients gather into buckets of DIST_BUCKET_BYTES in the
 * order the step finishes them (last layer first); a full bucket starts
 * at once, and the step's last gradient completes them all in order. */
void dist_reduce(void *ctx, float *grad, int64_t n, int left)
{
	dist *d = ctx;
	if (d->skip_reduce)
		return;
	double t0 = backend_now();
	struct dist_buckets *q = d->buckets;
	dist_bucket *b = q && q->n ? &q->b[q->n - 1] : bucket_open(d);
	q = d->buckets;
	if (!grow((void **)&b->pieces, &b->pieces_cap,
	          (size_t)(b->n_pieces + 1) * sizeof *b->pieces))
		dist_fail(d, "malloc", MPI_ERR_NO_MEM);
	b->pieces[b->n_pieces++] = (dist_piece){grad, n};
	b->n += n;
	buckets_progress(d);
	if (left == 0 || b->n * (int64_t)sizeof(float) >= d->bucket_bytes) {
		bucket_start(d, b);
		if (left != 0)
			bucket_open(d);
	}
	if (left == 0) {
		for (int i = 0; i < q->n; i++)
			bucket_finish(d, &q->b[i]);
		q->n = 0;
	}
	d->reduce_seconds += backend_now() - t0;
}
