/* netcc train's setting up and tearing down: the session compiled from
 * the model, the data, the buffers, the output directory, and the ranks
 * joined on rank 0's starting state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend.h"
#include "train.h"

/* ---- setting up -------------------------------------------------------------- */

int trainer_dir_make(const char *path)
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

int trainer_buffers_alloc(trainer *t)
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
int trainer_session_make(trainer *t, ir_graph *g)
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
		else if (backend_weights_load(w, t->cfg.weights, false) != 0)
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

int trainer_data_load(trainer *t, const int64_t chw[3], const ckpt_info *ck)
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
void trainer_free(trainer *t)
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

void trainer_start_print(const trainer *t)
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

void trainer_end_print(const trainer *t)
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
ir_graph *trainer_batch_split(trainer *t, ir_graph *g)
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
void trainer_ranks_join(trainer *t, const ckpt_info *ck)
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
