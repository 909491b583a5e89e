/* netcc train's loop: an epoch of shuffled batches, each one step of the
 * compiled training session, then the test set, log.csv, curves.svg and
 * a checkpoint. Ctrl-C stops every rank after the same step. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

static volatile sig_atomic_t train_signal;

/* ---- the loop ---------------------------------------------------------------- */

static void on_signal(int sig)
{
	static const char msg[] =
	    "\nnetcc: stopping after this step to write a checkpoint (again to quit now)\n";
	if (!train_signal) {
		train_signal = sig;
		ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
		(void)w;
	}
}

/* Once: a second Ctrl-C kills as usual, for a checkpoint write that hangs. */
void trainer_signals_catch(bool on)
{
	struct sigaction sa = {0};
	sa.sa_handler = on ? on_signal : SIG_DFL;
	sa.sa_flags = on ? SA_RESETHAND | SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Uniform in [0, bound): rejection, not a biased modulo. */
static uint64_t rng_below(rt_rng *r, uint64_t bound)
{
	uint64_t reject = -bound % bound; /* 2^64 mod bound: the incomplete last block */
	for (;;) {
		uint64_t x = rt_rng_next(r);
		if (x >= reject)
			return x % bound;
	}
}

/* Fisher-Yates from the identity, so the epoch's RNG state alone
 * regenerates its permutation. */
static void perm_shuffle(int64_t *p, int64_t n, rt_rng *r)
{
	for (int64_t i = 0; i < n; i++)
		p[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)rng_below(r, (uint64_t)i + 1);
		int64_t tmp = p[i];
		p[i] = p[j];
		p[j] = tmp;
	}
}

/* A row with a NaN counts as wrong whatever its largest entry. */
static bool row_wrong(const float *row, int64_t c, int32_t label)
{
	int64_t best = 0;
	for (int64_t k = 0; k < c; k++) {
		if (isnan(row[k]))
			return true;
		if (row[k] > row[best])
			best = k;
	}
	return best != label;
}

/* Softmax cross-entropy of one row, log-sum-exp shifted by the maximum. */
static double row_xent(const float *row, int64_t c, int32_t label)
{
	double m = row[0], sum = 0;
	for (int64_t k = 1; k < c; k++)
		m = row[k] > m ? row[k] : m;
	for (int64_t k = 0; k < c; k++)
		sum += exp((double)row[k] - m);
	return m + log(sum) - (double)row[label];
}

/* The test set in batches of the compiled size; the last batch is padded
 * with copies of its last image, which are not counted. */
static void test_run(trainer *t, double *loss, double *error)
{
	double sum = 0;
	int64_t wrong = 0, n = t->test.n, b = t->batch;
	for (int64_t at = 0; at < n; at += b) {
		int64_t real = n - at < b ? n - at : b;
		for (int64_t i = 0; i < b; i++)
			t->idx[i] = at + (i < real ? i : real - 1);
		dataset_batch(&t->test, t->idx, b, t->x, t->labels);
		train_session_eval(t->s, t->x, t->logits);
		for (int64_t i = 0; i < real; i++) {
			const float *row = t->logits + i * t->classes;
			sum += row_xent(row, t->classes, t->labels[i]);
			wrong += row_wrong(row, t->classes, t->labels[i]);
		}
	}
	*loss = sum / (double)n;
	*error = (double)wrong / (double)n;
}

/* This rank's share of the step: its mean loss, wrong answers, and
 * whether it was told to stop, summed over ranks in rank order, so every
 * rank holds the same sums and stops after the same step. */
static int step_agree(trainer *t, float local_loss, double *loss)
{
	double v[3] = {local_loss, 0, train_signal != 0};
	for (int64_t i = 0; i < t->batch; i++)
		v[1] += row_wrong(t->logits + i * t->classes, t->classes, t->labels[i]);
	dist_sum(t->d, v, 3);
	*loss = v[0] / t->d->size;
	t->stop = v[2] > 0;
	if (t->d->verify && !dist_same(t->d, train_session_weights_hash(t->s))) {
		fprintf(stderr, "netcc: error: the ranks' weights differ after step %lld\n",
		        (long long)t->st.step + 1);
		return -1;
	}
	return (int)v[1];
}

/* One SGD step on batch b of the epoch's permutation; 0, or 1 after reporting. */
static int step_take(trainer *t, int64_t b)
{
	run_state *st = &t->st;
	char err[512];
	float local;
	double lr = schedule_step_lr(&st->sched, st->step, t->nb);
	dist_step_begin(t->d, st->step);
	dataset_batch(&t->train, t->perm + b * t->gbatch + t->d->rank * t->batch, t->batch, t->x,
	              t->labels);
	double t0 = backend_now();
	if (train_session_step(t->s, t->x, t->labels, (float)lr, &local, t->logits, err,
	                       sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	t->step_seconds += backend_now() - t0;
	t->steps_here++;
	double loss;
	int wrong = step_agree(t, local, &loss);
	if (wrong < 0)
		return 1;
	if (!isfinite(loss)) {
		char what[256];
		snprintf(what, sizeof what, "the loss became %s at epoch %lld, step %lld",
		         isnan(loss) ? "NaN" : "infinite", (long long)st->epoch + 1,
		         (long long)st->step + 1);
		trainer_nan_report(t, what);
		return 1;
	}
	st->loss_sum += loss;
	st->wrong += wrong;
	st->step++;
	st->done = b + 1;
	return 0;
}

static void summary_print(const trainer *t, const epoch_row *r, bool dropped)
{
	printf("epoch %lld/%lld  train loss %.4f error %.2f%%  test loss %.4f error %.2f%%  lr "
	       "%.4g",
	       (long long)r->epoch, (long long)t->cfg.epochs, r->train_loss, 100 * r->train_error,
	       r->test_loss, 100 * r->test_error, r->lr);
	if (dropped)
		printf(" (next %.4g)", t->st.sched.lr);
	printf("  %.1f s\n", r->seconds);
	fflush(stdout);
}

/* The end of an epoch: evaluate, move the schedule, save everything. */
static int epoch_finish(trainer *t, int64_t epoch, double t0, progress *p)
{
	run_state *st = &t->st;
	epoch_row r = {.epoch = epoch,
	               .train_loss = st->loss_sum / (double)t->nb,
	               .train_error = (double)st->wrong / (double)(t->nb * t->gbatch),
	               .lr = schedule_step_lr(&st->sched, st->step - 1, t->nb)};
	/* rank 0's BatchNorm statistics are the ones saved: it evaluates them */
	double test[2] = {0, 0};
	if (t->d->rank == 0)
		test_run(t, &test[0], &test[1]);
	dist_bcast(t->d, test, sizeof test);
	r.test_loss = test[0];
	r.test_error = test[1];
	progress_clear(p);
	r.seconds = backend_now() - t0;
	/* finite weights can still be absurd: a model that answers NaN is no
	 * better than NaN weights, so its state is not saved either */
	if (!isfinite(r.test_loss)) {
		char what[256];
		summary_print(t, &r, false);
		snprintf(what, sizeof what, "the test loss became %s after epoch %lld (step %lld)",
		         isnan(r.test_loss) ? "NaN" : "infinite", (long long)epoch,
		         (long long)st->step);
		trainer_nan_report(t, what);
		return 1;
	}
	bool dropped = schedule_epoch_end(&st->sched, epoch, r.train_loss);
	st->epoch = epoch;
	st->done = 0;
	st->loss_sum = st->seconds = 0;
	st->wrong = 0;
	char err[1024];
	if (train_log_add(&st->log, &r) != 0) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	if (trainer_checkpoint_write(t, &st->rng, true) != 0)
		return 1;
	const char *logs[] = {t->log};
	int rc = 0;
	if (t->d->rank == 0 && (train_log_write(&st->log, t->log, err, sizeof err) != 0 ||
	                        plot_svg_write(t->plot, logs, NULL, 1, err, sizeof err) != 0)) {
		fprintf(stderr, "netcc: error: %s\n", err);
		rc = 1;
	}
	if (dist_status(t->d, rc) != 0)
		return 1;
	summary_print(t, &r, dropped);
	return 0;
}

/* One epoch, or what is left of it. 0 to go on, else the exit status. */
int trainer_epoch_run(trainer *t, int64_t epoch)
{
	run_state *st = &t->st;
	double t0 = backend_now() - st->seconds;
	rt_rng start = st->rng;
	perm_shuffle(t->perm, t->n_train, &st->rng);
	progress p;
	progress_begin(&p, epoch, t->cfg.epochs, t->nb, st->done);
	for (int64_t b = st->done; b < t->nb; b++) {
		if (step_take(t, b) != 0) {
			progress_clear(&p);
			return 1;
		}
		progress_step(&p, b + 1, t->gbatch, st->loss_sum / (double)(b + 1),
		              (double)st->wrong / (double)((b + 1) * t->gbatch));
		if (t->stop && b + 1 < t->nb) {
			progress_clear(&p);
			st->seconds = backend_now() - t0;
			if (trainer_checkpoint_write(t, &start, false) != 0)
				return 1;
			fprintf(stderr,
			        "netcc: stopped in epoch %lld after batch %lld of %lld; continue "
			        "with --resume %s\n",
			        (long long)epoch, (long long)(b + 1), (long long)t->nb, t->ckpt);
			return 128 + (train_signal ? train_signal : SIGTERM);
		}
	}
	progress_testing(&p, t->test.n);
	if (epoch_finish(t, epoch, t0, &p) != 0)
		return 1;
	if (t->stop && epoch < t->cfg.epochs) {
		fprintf(stderr, "netcc: stopped after epoch %lld; continue with --resume %s\n",
		        (long long)epoch, t->ckpt);
		return 128 + (train_signal ? train_signal : SIGTERM);
	}
	return 0;
}
