/* A training session: the training step (the autodiff pass's graph) and
 * the model's inference graph, both compiled in memory. The training
 * graph's prepared weights are the live state (weights, BatchNorm
 * statistics, momentum); evaluation prepares the inference graph's weights
 * (BatchNorm folded) from that state whenever a step has changed it. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "passes.h"
#include "runtime.h"

struct train_session {
	backend_target target;
	ir_graph *tg, *eg;
	backend_jit *tj, *ej;
	float *state;    /* tg's prepared weights: what training changes */
	float *eval_raw; /* eg's raw weights, gathered from state */
	float *eval_w;   /* eg's prepared weights */
	void *tws, *ews;
	bool eval_stale;
	int64_t classes;
	int *eval_src; /* per eg node: the tg param it reads from state, or -1 */
	rt_threads *threads;
};

void train_session_free(train_session *s)
{
	if (!s)
		return;
	backend_jit_free(s->tj);
	backend_jit_free(s->ej);
	ir_graph_free(s->tg);
	ir_graph_free(s->eg);
	free(s->state);
	free(s->eval_raw);
	free(s->eval_w);
	free(s->tws);
	free(s->ews);
	free(s->eval_src);
	rt_threads_destroy(s->threads);
	free(s);
}

typedef struct build {
	train_session *s;
	char *err;
	size_t errlen;
} build;

static int build_graphs(void *ctx)
{
	build *b = ctx;
	train_session *s = b->s;
	passes_run(s->tg, &(passes_options){.mode = PASSES_MODE_TRAINING, .opt_level = 2});
	passes_run(s->eg, &(passes_options){.opt_level = 2});
	s->tj = backend_jit_compile(s->tg, &s->target, 2, "netcc_train", false, b->err, b->errlen);
	s->ej = s->tj ? backend_jit_compile(s->eg, &s->target, 2, "netcc_eval", false, b->err,
	                                    b->errlen)
	              : NULL;
	return s->ej ? 0 : 1;
}

/* Runs fn with compiler errors unwinding back here. */
static int guarded(int (*fn)(void *), void *ctx)
{
	diag_trap t;
	diag_trap_push(&t);
	if (setjmp(t.jb) == 0) {
		int rc = fn(ctx);
		diag_trap_pop(&t);
		return rc;
	}
	return 1;
}

train_session *train_session_create(ir_graph *train_graph, ir_graph *eval_graph,
                                    const backend_target *t, char *err, size_t errlen)
{
	train_session *s = calloc(1, sizeof *s);
	if (!s) {
		ir_graph_free(train_graph);
		ir_graph_free(eval_graph);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->target = *t;
	s->tg = train_graph;
	s->eg = eval_graph;
	err[0] = 0;
	build b = {s, err, errlen};
	if (guarded(build_graphs, &b) != 0) {
		if (!err[0])
			snprintf(err, errlen, "the training step does not compile (see above)");
		train_session_free(s);
		return NULL;
	}
	const ir_graph *tg = s->tg, *eg = s->eg;
	s->classes = tg->nodes[tg->outputs[1].node].shape.d[1];
	float *raw = calloc((size_t)tg->plan.raw_bytes / 4 + 1, sizeof(float));
	s->state = calloc((size_t)tg->plan.weight_bytes / 4 + 1, sizeof(float));
	s->eval_raw = calloc((size_t)eg->plan.raw_bytes / 4 + 1, sizeof(float));
	s->eval_w = calloc((size_t)eg->plan.weight_bytes / 4 + 1, sizeof(float));
	s->eval_src = malloc(((size_t)eg->n_nodes + 1) * sizeof(int));
	s->tws = backend_workspace_new(tg);
	s->ews = backend_workspace_new(eg);
	s->threads = rt_threads_create(backend_threads());
	if (!raw || !s->state || !s->eval_raw || !s->eval_w || !s->eval_src || !s->tws || !s->ews ||
	    !s->threads) {
		free(raw);
		train_session_free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	backend_raw_weights(tg, raw);
	backend_jit_prepare(s->tj)(raw, s->state);
	free(raw);
	for (int i = 0; i < eg->n_nodes; i++) {
		s->eval_src[i] = -1;
		if (eg->nodes[i].op == IR_OP_PARAM)
			s->eval_src[i] = ir_param_find(tg, eg->nodes[i].name);
	}
	s->eval_stale = true;
	return s;
}

const ir_graph *train_session_graph(const train_session *s)
{
	return s->tg;
}

float *train_session_state(train_session *s, size_t *bytes)
{
	*bytes = (size_t)s->tg->plan.weight_bytes;
	s->eval_stale = true;
	return s->state;
}

uint64_t train_session_weights_hash(const train_session *s)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */
	for (int i = 0; i < s->tg->n_nodes; i++) {
		const ir_node *p = &s->tg->nodes[i];
		size_t len = p->name ? strlen(p->name) : 0;
		bool momentum = len > 9 && !strcmp(p->name + len - 9, ".momentum");
		if (p->op != IR_OP_PARAM || p->mem != IR_MEM_WEIGHTS ||
		    !(p->pkind == IR_PARAM_WEIGHT || momentum))
			continue;
		const unsigned char *b = (const unsigned char *)s->state + p->offset;
		for (size_t k = 0; k < (size_t)ir_shape_count(&p->shape) * sizeof(float); k++)
			h = (h ^ b[k]) * 1099511628211u;
	}
	return h;
}

void train_session_set_reduce(train_session *s,
                              void (*fn)(void *ctx, float *grad, int64_t n, int left), void *ctx)
{
	rt_threads_set_reduce(s->threads, fn, ctx);
}

int train_session_step(train_session *s, const float *x, const int32_t *labels, float lr,
                       float *loss, float *logits, char *err, size_t errlen)
{
	for (int64_t i = 0; i < s->tg->batch; i++)
		if (labels[i] < 0 || labels[i] >= s->classes) {
			snprintf(err, errlen, "label %d of example %lld is outside [0, %lld)",
			         labels[i], (long long)i, (long long)s->classes);
			return -1;
		}
	const void *in[3] = {x, labels, &lr};
	float *out[2] = {loss, logits};
	backend_jit_forward(s->tj)(s->state, s->tws, in, out, s->threads);
	s->eval_stale = true;
	return 0;
}

int train_session_eval(train_session *s, const float *x, float *logits)
{
	if (s->eval_stale) {
		for (int i = 0; i < s->eg->n_nodes; i++)
			if (s->eval_src[i] >= 0) {
				const ir_node *e = &s->eg->nodes[i],
				              *t = &s->tg->nodes[s->eval_src[i]];
				memcpy((char *)s->eval_raw + e->raw_offset,
				       (char *)s->state + t->offset,
				       (size_t)ir_shape_count(&e->shape) * sizeof(float));
			}
		backend_jit_prepare(s->ej)(s->eval_raw, s->eval_w);
		s->eval_stale = false;
	}
	const void *in[1] = {x};
	float *out[1] = {logits};
	backend_jit_forward(s->ej)(s->eval_w, s->ews, in, out, s->threads);
	return 0;
}

/* Every param of the training graph: weights, BatchNorm statistics and the
 * momentum buffers, under the names `netcc params` prints (momentum buffers
 * add ".momentum"). */
int train_session_save(const train_session *s, const char *path, const char *const *meta_kv,
                       int n_meta, char *err, size_t errlen)
{
	const ir_graph *g = s->tg;
	rt_st_entry *e = calloc((size_t)g->n_nodes + 1, sizeof *e);
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *p = &g->nodes[i];
		if (p->op == IR_OP_PARAM && p->mem == IR_MEM_WEIGHTS)
			e[n++] = (rt_st_entry){p->name, RT_DTYPE_F32, p->shape.rank, p->shape.d,
			                       (char *)s->state + p->offset};
	}
	int rc = rt_st_write(path, e, n, meta_kv, n_meta, err, errlen);
	free(e);
	return rc;
}

int train_session_load(train_session *s, const rt_st_file *f, bool need_state, char *err,
                       size_t errlen)
{
	const ir_graph *g = s->tg;
	/* check everything first: a bad file leaves the session as it was */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < g->n_nodes; i++) {
			const ir_node *p = &g->nodes[i];
			if (p->op != IR_OP_PARAM || p->mem != IR_MEM_WEIGHTS)
				continue;
			const rt_st_tensor *t = rt_st_find(f, p->name);
			bool optional = p->pkind == IR_PARAM_STATE && !need_state;
			if (pass == 0) {
				if (!t && optional)
					continue;
				bool ok = t && t->dtype == RT_DTYPE_F32 && t->rank == p->shape.rank;
				for (int k = 0; ok && k < t->rank; k++)
					ok = t->dims[k] == p->shape.d[k];
				if (!ok) {
					snprintf(err, errlen, "tensor '%s' is %s", p->name,
					         t ? "not float32 of the model's shape"
					           : "missing");
					return -1;
				}
			} else {
				void *dst = (char *)s->state + p->offset;
				size_t bytes = (size_t)ir_shape_count(&p->shape) * sizeof(float);
				if (t)
					memcpy(dst, t->data, bytes);
				else
					memset(dst, 0, bytes);
			}
		}
	s->eval_stale = true;
	return 0;
}
