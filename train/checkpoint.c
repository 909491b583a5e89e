/* netcc train's checkpoints: the weights, the optimizer's state and the
 * run_state in one safetensors file, written atomically by rank 0; read
 * back, every field is checked before a run resumes from it. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend.h"
#include "train.h"

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

int trainer_checkpoint_read(const rt_st_file *f, const char *path, ckpt_info *c)
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

void trainer_nan_report(const trainer *t, const char *what)
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
		trainer_nan_report(t, what);
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
int trainer_checkpoint_write(trainer *t, const rt_rng *rng, bool weights)
{
	int rc = t->d->rank == 0 ? checkpoint_write_here(t, rng, weights) : 0;
	return dist_status(t->d, rc);
}
