/* netcc train: SGD with momentum on an IDX image dataset, evaluating on the
 * test set after every epoch, with checkpoints that resume bit for bit.
 *
 * Everything that decides the next step lives in run_state and goes into
 * every checkpoint: the epoch and step, the shuffling RNG as the epoch
 * began (the permutation is regenerated from it), the batches of the
 * epoch already taken with their running sums, and the schedule. A run
 * stopped anywhere and resumed therefore takes exactly the steps an
 * uninterrupted run takes. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "driver.h"
#include "frontend.h"
#include "runtime.h"

#define CHECKPOINT_FORMAT "netcc-checkpoint"

typedef struct train_cfg {
	const char *model, *data, *resume, *weights;
	char *out; /* --out, or the default paths_make chose */
	int64_t epochs, batch, seed, limit_train, limit_test;
	int64_t global_batch; /* --global-batch: --batch under another name */
} train_cfg;

/* Where a run stands: all a checkpoint needs besides the tensors. */
typedef struct run_state {
	int64_t epoch;   /* epochs completed */
	int64_t step;    /* SGD steps taken in all */
	int64_t done;    /* batches of the next epoch already taken */
	rt_rng rng;      /* as the next epoch begins, before its shuffle */
	double loss_sum; /* of the next epoch's steps so far */
	int64_t wrong;
	double seconds;
	lr_schedule sched;
	train_log log;
} run_state;

typedef struct trainer {
	train_cfg cfg;
	backend_target target;
	run_state st;
	dist *d;
	char *name;     /* the model's */
	int64_t batch;  /* this process's share of a step: the compiled batch */
	int64_t gbatch; /* a step's batch over all ranks */
	int64_t classes, nb, n_train;
	bool stop;           /* every rank saw the stop signal (SIGINT, SIGTERM) */
	double step_seconds; /* in steps, the all-reduce included */
	int64_t steps_here;  /* steps this process took (not those resumed past) */
	train_session *s;
	dataset train, test;
	char **params; /* the inference graph's params: model.safetensors holds these */
	int n_params;
	int64_t *perm, *idx;
	float *x, *logits;
	int32_t *labels;
	char ckpt[1024], ckpt_new[1024], weights[1024], log[1024], plot[1024];
	const char *last_good; /* the checkpoint a failure leaves to resume from */
} trainer;

static volatile sig_atomic_t train_signal;

/* ---- options -------------------------------------------------------------- */

static double opt_double(const opts *o, const char *key, double fallback, double lo, double hi,
                         bool *ok)
{
	const char *v = opts_str(o, key, NULL);
	if (!v)
		return fallback;
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (!*v || *end || errno || !(x > lo && x < hi)) {
		fprintf(stderr, "netcc: error: --%s %s: expected a number in (%g, %g)\n", key, v,
		        lo, hi);
		*ok = false;
		return fallback;
	}
	return x;
}

static int cfg_parse(const opts *o, train_cfg *c)
{
	bool ok = true;
	*c = (train_cfg){
	    .model = o->n_pos ? o->pos[0] : NULL,
	    .data = opts_str(o, "data", NULL),
	    .resume = opts_str(o, "resume", NULL),
	    .weights = opts_str(o, "weights", NULL),
	    .epochs = opts_int(o, "epochs", 0, 1, 100000, &ok),
	    .batch = opts_int(o, "batch", 0, 1, FRONTEND_MAX_BATCH, &ok),
	    .global_batch = opts_int(o, "global-batch", 0, 1, FRONTEND_MAX_BATCH, &ok),
	    .seed = opts_int(o, "seed", 0, 0, INT64_MAX, &ok),
	    .limit_train = opts_int(o, "limit-train", 0, 1, INT64_MAX, &ok),
	    .limit_test = opts_int(o, "limit-test", 0, 1, INT64_MAX, &ok),
	};
	opts_int(o, "patience", 0, 1, 1000000, &ok);
	opts_int(o, "warmup", 0, 0, 1000, &ok);
	opt_double(o, "lr", 0, 0, INFINITY, &ok);
	opt_double(o, "factor", 0, 0, 1, &ok);
	if (!ok)
		return 2;
	if (o->n_pos != 1) {
		fprintf(stderr, "netcc: error: train expects one model file (see netcc help)\n");
		return 2;
	}
	if (!c->data) {
		fprintf(stderr, "netcc: error: train needs --data fashion-mnist or --data DIR\n");
		return 2;
	}
	if (c->batch && c->global_batch) {
		fprintf(stderr, "netcc: error: --batch and --global-batch name the same thing: "
		                "give one of them\n");
		return 2;
	}
	if (c->global_batch)
		c->batch = c->global_batch;
	if (c->resume && c->weights) {
		fprintf(stderr, "netcc: error: --resume continues a run with its own weights; "
		                "--weights starts a new one: give one of them\n");
		return 2;
	}
	return 0;
}

/* Flags override the train section, or on --resume the checkpoint: --lr
 * then sets the rate from the next step on. */
static int cfg_schedule(const opts *o, lr_schedule *s)
{
	bool ok = true;
	const char *text = opts_str(o, "schedule", NULL);
	char err[256];
	if (text && schedule_parse(s, text, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: --schedule %s\n", err);
		return 2;
	}
	s->factor = opt_double(o, "factor", s->factor, 0, 1, &ok);
	s->patience = opts_int(o, "patience", s->patience, 1, 1000000, &ok);
	s->warmup = opts_int(o, "warmup", s->warmup, 0, 1000, &ok);
	s->lr = opt_double(o, "lr", s->lr, 0, INFINITY, &ok);
	return ok ? 0 : 2;
}

/* ---- checkpoints --------------------------------------------------------- */

enum { META_MAX = 32 };

typedef struct meta_out {
	const char *kv[2 * META_MAX];
	char val[META_MAX][128];
	int n;
} meta_out;

static void meta_str(meta_out *m, const char *key, const char *value)
{
	m->kv[2 * m->n] = key;
	m->kv[2 * m->n + 1] = value;
	m->n++;
}

static void meta_put(meta_out *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void meta_put(meta_out *m, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->val[m->n], sizeof m->val[m->n], fmt, ap);
	va_end(ap);
	meta_str(m, key, m->val[m->n]);
}

/* Doubles as %.17g: they read back to the same bits, which exact resume
 * needs (the plateau's best loss, the running sums, the rate). */
static void meta_build(const trainer *t, const rt_rng *rng, meta_out *m)
{
	const run_state *st = &t->st;
	const lr_schedule *s = &st->sched;
	char sched[256];
	schedule_text(s, sched, sizeof sched);
	m->n = 0;
	meta_str(m, "format", CHECKPOINT_FORMAT);
	meta_str(m, "model", t->name);
	meta_put(m, "batch", "%lld", (long long)t->gbatch);
	meta_put(m, "ranks", "%d", t->d->size);
	meta_put(m, "seed", "%lld", (long long)t->cfg.seed);
	meta_put(m, "epochs", "%lld", (long long)t->cfg.epochs);
	meta_put(m, "train_examples", "%lld", (long long)t->n_train);
	meta_put(m, "epoch", "%lld", (long long)st->epoch);
	meta_put(m, "step", "%lld", (long long)st->step);
	meta_put(m, "epoch_batches", "%lld", (long long)st->done);
	meta_put(m, "rng", "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64, rng->s[0],
	         rng->s[1], rng->s[2], rng->s[3]);
	meta_put(m, "epoch_loss_sum", "%.17g", st->loss_sum);
	meta_put(m, "epoch_wrong", "%lld", (long long)st->wrong);
	meta_put(m, "epoch_seconds", "%.17g", st->seconds);
	meta_put(m, "lr", "%.17g", s->lr);
	meta_put(m, "schedule", "%s", sched);
	meta_put(m, "factor", "%.17g", s->factor);
	meta_put(m, "patience", "%lld", (long long)s->patience);
	meta_put(m, "warmup", "%lld", (long long)s->warmup);
	meta_put(m, "plateau_best", "%.17g", s->best);
	meta_put(m, "plateau_bad", "%lld", (long long)s->bad);
	meta_str(m, "data", t->cfg.data);
	meta_str(m, "log", st->log.text ? st->log.text : "");
}

typedef struct ckpt_info {
	const char *path, *model;
	int64_t batch, seed, epochs, n_train;
	int64_t ranks; /* of the run that wrote it (1 before data-parallel runs) */
	run_state st;
} ckpt_info;

static const char *meta_need(const rt_st_file *f, const char *path, const char *key)
{
	const char *v = rt_st_meta(f, key);
	if (!v)
		fprintf(stderr, "netcc: error: %s: the checkpoint has no '%s' in its metadata\n",
		        path, key);
	return v;
}

static int meta_bad(const char *path, const char *key, const char *v)
{
	fprintf(stderr, "netcc: error: %s: checkpoint metadata %s = '%s' is not valid\n", path, key,
	        v);
	return 1;
}

/* Every number is range-checked: a checkpoint is a file like any other
 * (step = INT64_MAX overflowed into a false "loss became NaN"). */
static int meta_int(const rt_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                    int64_t *out)
{
	const char *v = meta_need(f, path, key);
	if (!v)
		return 1;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < lo || x > hi)
		return meta_bad(path, key, v);
	*out = x;
	return 0;
}

/* finite and at least 0; +infinity too where inf (a plateau's best so far) */
static int meta_double(const rt_st_file *f, const char *path, const char *key, bool inf,
                       double *out)
{
	const char *v = meta_need(f, path, key);
	if (!v)
		return 1;
	char *end;
	errno = 0;
	*out = strtod(v, &end);
	if (!*v || *end || errno || !(*out >= 0) || (!inf && !isfinite(*out)))
		return meta_bad(path, key, v);
	return 0;
}

static int meta_rng(const rt_st_file *f, const char *path, rt_rng *r)
{
	const char *v = meta_need(f, path, "rng");
	if (!v)
		return 1;
	const char *p = v;
	for (int i = 0; i < 4; i++) {
		char *end;
		errno = 0;
		r->s[i] = strtoull(p, &end, 16);
		if (end == p || errno || *end != (i < 3 ? ',' : 0))
			return meta_bad(path, "rng", v);
		p = end + 1;
	}
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		return meta_bad(path, "rng", v);
	return 0;
}

static int meta_schedule(const rt_st_file *f, const char *path, lr_schedule *s)
{
	const char *text = meta_need(f, path, "schedule");
	char err[256];
	*s = (lr_schedule){0};
	if (!text)
		return 1;
	if (schedule_parse(s, text, err, sizeof err) != 0)
		return meta_bad(path, "schedule", text);
	if (meta_double(f, path, "lr", false, &s->lr) ||
	    meta_double(f, path, "factor", false, &s->factor) ||
	    meta_int(f, path, "patience", 1, 1000000, &s->patience) ||
	    meta_int(f, path, "warmup", 0, 1000, &s->warmup) ||
	    meta_double(f, path, "plateau_best", true, &s->best) ||
	    meta_int(f, path, "plateau_bad", 0, 1000000, &s->bad))
		return 1;
	if (!(s->lr > 0) || !(s->factor > 0 && s->factor < 1))
		return meta_bad(path, "lr", rt_st_meta(f, "lr"));
	return 0;
}

static int ckpt_read(const rt_st_file *f, const char *path, ckpt_info *c)
{
	*c = (ckpt_info){.path = path};
	const char *format = rt_st_meta(f, "format");
	if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0) {
		if (format && !strcmp(format, "netcc"))
			fprintf(stderr,
			        "netcc: error: %s holds weights, not a checkpoint: start a new run "
			        "from it with --weights %s\n",
			        path, path);
		else
			fprintf(stderr,
			        "netcc: error: %s is not a netcc checkpoint (no format = %s "
			        "in its metadata)\n",
			        path, CHECKPOINT_FORMAT);
		return 1;
	}
	run_state *st = &c->st;
	const char *log;
	/* each bound from those before it: an epoch has at most nb batches,
	 * a run at most epochs of them */
	int64_t nb;
	if (!(c->model = meta_need(f, path, "model")) || !(log = meta_need(f, path, "log")) ||
	    meta_int(f, path, "batch", 1, FRONTEND_MAX_BATCH, &c->batch) ||
	    meta_int(f, path, "seed", 0, INT64_MAX, &c->seed) ||
	    meta_int(f, path, "epochs", 1, 100000, &c->epochs) ||
	    meta_int(f, path, "train_examples", 1, INT32_MAX, &c->n_train) ||
	    (nb = c->n_train / c->batch + 1, 0) ||
	    meta_int(f, path, "epoch", 0, c->epochs, &st->epoch) ||
	    meta_int(f, path, "step", 0, (st->epoch + 1) * nb, &st->step) ||
	    meta_int(f, path, "epoch_batches", 0, nb, &st->done) || meta_rng(f, path, &st->rng) ||
	    meta_double(f, path, "epoch_loss_sum", false, &st->loss_sum) ||
	    meta_int(f, path, "epoch_wrong", 0, st->done * c->batch, &st->wrong) ||
	    meta_double(f, path, "epoch_seconds", false, &st->seconds) ||
	    meta_schedule(f, path, &st->sched))
		return 1;
	c->ranks = 1;
	if (rt_st_meta(f, "ranks") && meta_int(f, path, "ranks", 1, 1 << 20, &c->ranks))
		return 1;
	if (train_log_set(&st->log, log) != 0) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	return 0;
}

/* A state with a NaN or an infinity anywhere (a weight, a statistic, a
 * momentum) is no checkpoint: training from it only makes more. */
static const char *tensors_nonfinite(const rt_st_file *f)
{
	for (int i = 0; i < f->n_tensors; i++) {
		const rt_st_tensor *t = &f->tensors[i];
		for (size_t k = 0; k < t->count; k++) {
			float v;
			memcpy(&v, (const char *)t->data + k * sizeof v, sizeof v);
			if (!isfinite(v))
				return t->name;
		}
	}
	return NULL;
}

/* model.safetensors: the inference graph's params from the checkpoint
 * just written, which is what netcc compile --weights reads. */
static int weights_write(const trainer *t, const rt_st_file *f, char *err, size_t errlen)
{
	rt_st_entry *e = calloc((size_t)t->n_params + 1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = -1;
	for (int i = 0; i < t->n_params; i++) {
		const rt_st_tensor *p = rt_st_find(f, t->params[i]);
		if (!p) {
			snprintf(err, errlen, "%s: the training state has no '%s'", t->ckpt_new,
			         t->params[i]);
			goto done;
		}
		e[i] = (rt_st_entry){p->name, p->dtype, p->rank, p->dims, p->data};
	}
	const char *meta[] = {"format", "netcc", "model", t->name};
	rc = rt_st_write(t->weights, e, t->n_params, meta, 2, err, errlen);
done:
	free(e);
	return rc;
}

static void nan_report(const trainer *t, const char *what)
{
	fprintf(stderr, "netcc: error: %s; ", what);
	if (t->last_good)
		fprintf(stderr, "the last good checkpoint is %s\n", t->last_good);
	else
		fprintf(stderr, "no checkpoint was written\n");
	fprintf(stderr, "netcc: note: a smaller --lr (or --warmup) usually cures this\n");
}

/* The state goes to checkpoint.safetensors.new, is read back and checked,
 * and only then replaces the checkpoint: a crash or a diverged state
 * leaves the last good one in place. At the end of an epoch the weights
 * file is cut from the same bytes. */
static int checkpoint_write_here(trainer *t, const rt_rng *rng, bool weights)
{
	meta_out m;
	char err[2048];
	rt_st_file f;
	meta_build(t, rng, &m);
	if (train_session_save(t->s, t->ckpt_new, m.kv, m.n, err, sizeof err) != 0 ||
	    rt_st_read(t->ckpt_new, &f, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	int rc = 1;
	const char *bad = tensors_nonfinite(&f);
	if (bad) {
		char what[512];
		snprintf(what, sizeof what, "'%s' became NaN or infinite %s epoch %lld (step %lld)",
		         bad, t->st.done ? "in" : "after",
		         (long long)t->st.epoch + (t->st.done ? 1 : 0), (long long)t->st.step);
		nan_report(t, what);
		unlink(t->ckpt_new);
		goto done;
	}
	if (weights && weights_write(t, &f, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		goto done;
	}
	if (rename(t->ckpt_new, t->ckpt) != 0) {
		fprintf(stderr, "netcc: error: %s: cannot rename into place: %s\n", t->ckpt,
		        strerror(errno));
		goto done;
	}
	t->last_good = t->ckpt;
	rc = 0;
done:
	rt_st_free(&f);
	return rc;
}

/* Rank 0 writes, every rank learns how it went. */
static int checkpoint_write(trainer *t, const rt_rng *rng, bool weights)
{
	int rc = t->d->rank == 0 ? checkpoint_write_here(t, rng, weights) : 0;
	return dist_status(t->d, rc);
}

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
static void signals_catch(bool on)
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
		nan_report(t, what);
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
		nan_report(t, what);
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
	if (checkpoint_write(t, &st->rng, true) != 0)
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
static int epoch_run(trainer *t, int64_t epoch)
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
			if (checkpoint_write(t, &start, false) != 0)
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

/* ---- setting up -------------------------------------------------------------- */

static int dir_make(const char *path)
{
	char buf[1024];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(buf, 0777);
		*p = '/';
	}
	struct stat st;
	if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "netcc: error: --out %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "netcc: error: --out %s: not a directory\n", path);
		return 1;
	}
	return 0;
}

static int params_record(trainer *t, const ir_graph *g)
{
	t->params = calloc((size_t)g->n_nodes + 1, sizeof *t->params);
	if (!t->params)
		return 1;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM &&
		    !(t->params[t->n_params++] = strdup(g->nodes[i].name)))
			return 1;
	return 0;
}

static int buffers_alloc(trainer *t)
{
	size_t b = (size_t)t->batch;
	t->perm = malloc((size_t)t->n_train * sizeof *t->perm);
	t->idx = malloc(b * sizeof *t->idx);
	t->x = malloc(b * t->train.image_bytes * sizeof *t->x);
	t->logits = malloc(b * (size_t)t->classes * sizeof *t->logits);
	t->labels = malloc(b * sizeof *t->labels);
	if (t->perm && t->idx && t->x && t->logits && t->labels)
		return 0;
	fprintf(stderr, "netcc: error: out of memory\n");
	return 1;
}

/* The two graphs at the training batch with the same starting weights;
 * the session takes them. */
static int session_make(trainer *t, ir_graph *g)
{
	char err[1024];
	ir_graph *e = frontend_graph_load(t->cfg.model, t->batch);
	if (!e) {
		ir_graph_free(g);
		return 1;
	}
	for (ir_graph *w = g; w; w = w == g ? e : NULL) {
		if (!t->cfg.weights)
			ir_graph_init_he(w, (uint64_t)t->cfg.seed);
		else if (weights_load(w, t->cfg.weights, false) != 0)
			goto fail;
	}
	if (params_record(t, e) != 0) {
		fprintf(stderr, "netcc: error: out of memory\n");
		goto fail;
	}
	fprintf(stderr, "netcc: compiling %s's training step at batch %lld\n", t->name,
	        (long long)t->batch);
	t->s = train_session_create(g, e, &t->target, err, sizeof err);
	if (!t->s) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	return 0;
fail:
	ir_graph_free(g);
	ir_graph_free(e);
	return 1;
}

static int data_load(trainer *t, const int64_t chw[3], const ckpt_info *ck)
{
	if (dataset_load(&t->train, t->cfg.data, "train", chw, t->classes, t->cfg.limit_train) ||
	    dataset_load(&t->test, t->cfg.data, "t10k", chw, t->classes, t->cfg.limit_test))
		return 1;
	t->n_train = t->train.n;
	t->nb = t->n_train / t->gbatch;
	if (t->nb == 0) {
		fprintf(stderr,
		        "netcc: error: %lld training images make no whole batch of %lld: lower "
		        "--batch\n",
		        (long long)t->n_train, (long long)t->gbatch);
		return 1;
	}
	if (ck && ck->n_train != t->n_train) {
		fprintf(stderr,
		        "netcc: error: %s trained on %lld images an epoch, this data has %lld: "
		        "resume with the same --data and --limit-train\n",
		        ck->path, (long long)ck->n_train, (long long)t->n_train);
		return 1;
	}
	if (ck && ck->st.done >= t->nb) {
		fprintf(stderr,
		        "netcc: error: %s: checkpoint metadata epoch_batches = %lld, but an epoch "
		        "has %lld batches\n",
		        ck->path, (long long)ck->st.done, (long long)t->nb);
		return 1;
	}
	return 0;
}

/* Settings a resumed run cannot change: the permutations depend on them. */
static int resume_conflicts(const train_cfg *c, const opts *o, const ckpt_info *ck)
{
	if (opts_str(o, "batch", NULL) && c->batch != ck->batch) {
		fprintf(stderr,
		        "netcc: error: --batch %lld: %s was trained at batch %lld, and a "
		        "resumed run keeps it\n",
		        (long long)c->batch, ck->path, (long long)ck->batch);
		return 2;
	}
	if (opts_str(o, "seed", NULL) && c->seed != ck->seed) {
		fprintf(stderr, "netcc: error: --seed %lld: %s continues the run of seed %lld\n",
		        (long long)c->seed, ck->path, (long long)ck->seed);
		return 2;
	}
	return 0;
}

/* Out defaults to run/, or on --resume to the checkpoint's directory. */
static int paths_make(trainer *t, const opts *o)
{
	char dir[1024] = "run";
	if (t->cfg.resume) {
		const char *slash = strrchr(t->cfg.resume, '/');
		if (slash && slash - t->cfg.resume >= (long)sizeof dir) {
			fprintf(stderr, "netcc: error: --resume %s: the path is too long\n",
			        t->cfg.resume);
			return 1;
		}
		snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - t->cfg.resume) : 1,
		         slash ? t->cfg.resume : ".");
		if (!dir[0])
			snprintf(dir, sizeof dir, "/");
	}
	const char *out = opts_str(o, "out", dir);
	if (strlen(out) > sizeof t->ckpt - 40) {
		fprintf(stderr, "netcc: error: --out %s: the path is too long\n", out);
		return 1;
	}
	snprintf(t->ckpt, sizeof t->ckpt, "%s/checkpoint.safetensors", out);
	snprintf(t->ckpt_new, sizeof t->ckpt_new, "%s/checkpoint.safetensors.new", out);
	snprintf(t->weights, sizeof t->weights, "%s/model.safetensors", out);
	snprintf(t->log, sizeof t->log, "%s/log.csv", out);
	snprintf(t->plot, sizeof t->plot, "%s/curves.svg", out);
	t->cfg.out = strdup(out);
	if (!t->cfg.out)
		fprintf(stderr, "netcc: error: out of memory\n");
	return t->cfg.out ? 0 : 1;
}

static void trainer_free(trainer *t)
{
	train_session_free(t->s);
	dataset_free(&t->train);
	dataset_free(&t->test);
	for (int i = 0; i < t->n_params; i++)
		free(t->params[i]);
	free(t->params);
	free(t->perm);
	free(t->idx);
	free(t->x);
	free(t->logits);
	free(t->labels);
	train_log_free(&t->st.log);
	free(t->cfg.out);
	free(t->name);
}

static void start_print(const trainer *t)
{
	char sched[256];
	schedule_text(&t->st.sched, sched, sizeof sched);
	fprintf(stderr,
	        "netcc: %s: %lld training images in %lld batch%s of %lld (%lld left out each "
	        "epoch), %lld test images\n",
	        t->name, (long long)t->n_train, (long long)t->nb, t->nb == 1 ? "" : "es",
	        (long long)t->gbatch, (long long)(t->n_train - t->nb * t->gbatch),
	        (long long)t->test.n);
	if (t->d->size > 1)
		fprintf(stderr, "netcc: data-parallel over %d ranks, %lld examples each a step\n",
		        t->d->size, (long long)t->batch);
	if (t->st.epoch >= t->cfg.epochs) {
		fprintf(stderr,
		        "netcc: the checkpoint has done %lld of %lld epochs: nothing to do "
		        "(--epochs sets the total)\n",
		        (long long)t->st.epoch, (long long)t->cfg.epochs);
		return;
	}
	fprintf(stderr,
	        "netcc: epochs %lld to %lld, lr %g, schedule %s, warm-up %lld epochs; "
	        "writing %s/\n",
	        (long long)t->st.epoch + 1, (long long)t->cfg.epochs, t->st.sched.lr, sched,
	        (long long)t->st.sched.warmup, t->cfg.out);
	if (t->st.done)
		fprintf(stderr, "netcc: epoch %lld resumes after batch %lld of %lld\n",
		        (long long)t->st.epoch + 1, (long long)t->st.done, (long long)t->nb);
}

static void end_print(const trainer *t)
{
	if (t->steps_here > 0 && t->step_seconds > 0)
		fprintf(stderr, "netcc: %lld steps took %.2f s: %.0f images/s over %d rank%s\n",
		        (long long)t->steps_here, t->step_seconds,
		        (double)(t->steps_here * t->gbatch) / t->step_seconds, t->d->size,
		        t->d->size == 1 ? "" : "s");
	if (t->d->size > 1 && t->step_seconds > 0)
		fprintf(stderr,
		        "netcc: the all-reduce took %.2f s of them (%.1f%%), %.2f MB a step\n",
		        t->d->reduce_seconds, 100 * t->d->reduce_seconds / t->step_seconds,
		        (double)t->d->reduce_bytes / 1e6 / (double)t->steps_here);
	printf("trained %s for %lld epoch%s; weights and BatchNorm statistics in %s\n", t->name,
	       (long long)t->st.epoch, t->st.epoch == 1 ? "" : "s", t->weights);
	printf("loss and error by epoch in %s (the numbers in %s)\n", t->plot, t->log);
	printf("compile it with:\n  netcc compile %s --weights %s -o %s/lib%s.so\n", t->cfg.model,
	       t->weights, t->cfg.out, t->name);
}

/* Each rank compiles its share of the global batch. */
static ir_graph *batch_split(trainer *t, ir_graph *g)
{
	int P = t->d->size;
	ir_graph_free(g);
	if (t->gbatch % P != 0) {
		fprintf(stderr,
		        "netcc: error: a global batch of %lld does not split evenly over %d ranks: "
		        "set --global-batch to a multiple of %d\n",
		        (long long)t->gbatch, P, P);
		return NULL;
	}
	if (!strcmp(t->cfg.model, "-")) {
		fprintf(stderr, "netcc: error: ranks cannot share standard input: give the model "
		                "as a file\n");
		return NULL;
	}
	return frontend_graph_load(t->cfg.model, t->gbatch / P);
}

/* Rank 0's starting state (initialised, loaded or resumed) on every rank,
 * and the gradients averaged over ranks from the first step. */
static void ranks_join(trainer *t, const ckpt_info *ck)
{
	if (ck && ck->ranks != t->d->size)
		diag_warn(
		    "%s was written by a run on %lld rank%s, this one has %d: the data order "
		    "is the same, but BatchNorm's statistics (each rank's own) differ from an "
		    "uninterrupted run's",
		    ck->path, (long long)ck->ranks, ck->ranks == 1 ? "" : "s", t->d->size);
	if (t->d->size == 1)
		return;
	size_t bytes;
	float *state = train_session_state(t->s, &bytes);
	dist_bcast(t->d, state, bytes);
	train_session_set_reduce(t->s, dist_reduce, t->d);
}

/* Everything before the first step; the checkpoint f (on --resume) is read. */
static int trainer_setup(trainer *t, const opts *o, const rt_st_file *f, ckpt_info *ck)
{
	int status;
	int64_t batch = t->cfg.global_batch ? t->cfg.global_batch
	                : ck                ? ck->batch
	                                    : FRONTEND_BATCH_TRAIN;
	ir_graph *g = driver_model_load(o, batch, &status);
	if (!g)
		return status;
	int64_t chw[3];
	t->name = strdup(g->name);
	t->gbatch = g->batch;
	if (t->d->size > 1 && (g = batch_split(t, g)) == NULL)
		return 1;
	if (opts_flag(o, "sync-bn") && t->d->size == 1)
		diag_warn("--sync-bn has no effect in one process (start netcc under mpirun)");
	g->train.sync_ranks = opts_flag(o, "sync-bn") ? t->d->size : 1;
	t->batch = g->batch;
	bool other = ck && strcmp(ck->model, g->name) != 0;
	if (other)
		fprintf(stderr, "netcc: error: %s is a checkpoint of model '%s', not '%s'\n",
		        ck->path, ck->model, g->name);
	if (!t->name || other ||
	    driver_classifier_check(g, "train", t->cfg.model, chw, &t->classes) != 0) {
		ir_graph_free(g);
		return 1;
	}
	if (ck) {
		t->st = ck->st;
		ck->st.log = (train_log){0}; /* t->st owns it now */
		t->cfg.seed = ck->seed;
		if (!opts_str(o, "epochs", NULL))
			t->cfg.epochs = ck->epochs;
	} else {
		schedule_from_train(&t->st.sched, &g->train);
		rt_rng_seed(&t->st.rng, (uint64_t)t->cfg.seed);
		if (!t->cfg.epochs)
			t->cfg.epochs = g->train.epochs;
	}
	status = cfg_schedule(o, &t->st.sched);
	if (status || data_load(t, chw, ck) != 0 || buffers_alloc(t) != 0) {
		ir_graph_free(g);
		return status ? status : 1;
	}
	if (session_make(t, g) != 0)
		return 1;
	char err[1024];
	if (f && train_session_load(t->s, f, true, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s: %s\n", ck->path, err);
		return 1;
	}
	t->last_good = ck ? ck->path : NULL;
	ranks_join(t, ck);
	return dir_make(t->cfg.out);
}

static int train_main(trainer *t, const opts *o)
{
	rt_st_file f = {0};
	ckpt_info ck;
	char err[1024];
	int rc = 1;
	if (t->cfg.resume) {
		if (rt_st_read(t->cfg.resume, &f, err, sizeof err) != 0) {
			fprintf(stderr, "netcc: error: %s\n", err);
			return 1;
		}
		if (ckpt_read(&f, t->cfg.resume, &ck) != 0)
			goto done;
		if ((rc = resume_conflicts(&t->cfg, o, &ck)) != 0)
			goto done;
	}
	rc = 1;
	if (paths_make(t, o) != 0)
		goto done;
	rc = trainer_setup(t, o, t->cfg.resume ? &f : NULL, t->cfg.resume ? &ck : NULL);
	rc = dist_status(t->d, rc);
	if (rc != 0)
		goto done;
	start_print(t);
	signals_catch(true);
	for (int64_t e = t->st.epoch + 1; e <= t->cfg.epochs && rc == 0; e++)
		rc = epoch_run(t, e);
	signals_catch(false);
	if (rc == 0)
		end_print(t);
done:
	if (t->cfg.resume)
		train_log_free(&ck.st.log);
	rt_st_free(&f);
	return rc;
}

int cmd_train(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "train");
	if (rc)
		return rc < 0 ? 0 : rc;
	dist d;
	trainer t = {.d = &d};
	if (dist_init(&d, NULL, NULL) != 0)
		return 1;
	if (driver_target(&o, &t.target, true) != 0)
		rc = 2;
	else
		rc = cfg_parse(&o, &t.cfg);
	if (rc == 0)
		rc = train_main(&t, &o);
	rc = dist_status(&d, rc);
	trainer_free(&t);
	dist_finish(&d);
	return rc;
}
