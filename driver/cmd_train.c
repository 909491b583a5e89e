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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "frontend.h"
#include "train.h"

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
	if (t->d->size > 1 && (g = trainer_batch_split(t, g)) == NULL)
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
	if (status || trainer_data_load(t, chw, ck) != 0 || trainer_buffers_alloc(t) != 0) {
		ir_graph_free(g);
		return status ? status : 1;
	}
	if (trainer_session_make(t, g) != 0)
		return 1;
	char err[1024];
	if (f && train_session_load(t->s, f, true, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s: %s\n", ck->path, err);
		return 1;
	}
	t->last_good = ck ? ck->path : NULL;
	trainer_ranks_join(t, ck);
	return trainer_dir_make(t->cfg.out);
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
		if (trainer_checkpoint_read(&f, t->cfg.resume, &ck) != 0)
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
	trainer_start_print(t);
	trainer_signals_catch(true);
	for (int64_t e = t->st.epoch + 1; e <= t->cfg.epochs && rc == 0; e++)
		rc = trainer_epoch_run(t, e);
	trainer_signals_catch(false);
	if (rc == 0)
		trainer_end_print(t);
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
