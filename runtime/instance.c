/* What every generated library does the same way: instances, weights,
 * errors. The generated code supplies a descriptor (names, shapes, sizes,
 * the forward function) and thin exported wrappers around these calls. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kset.h"
#include "runtime.h"

struct rt_instance {
	const rt_model_desc *d;
	float *owned;         /* weights loaded from a file, or the embedded ones copied */
	const float *weights; /* owned, or the embedded ones in place */
	void *workspace;
	char error[512];
	char load_error[512]; /* why the last load_weights failed */

	/* trainable libraries */
	float *state;    /* weights, statistics, momentum: what training changes */
	float *eval_raw; /* the inference graph's raw weights, gathered from state */
	bool stale;      /* state changed since weights were prepared from it */
	bool has_state;  /* state holds real weights (embedded or loaded) */
	void *train_ws;
	float *logits;        /* the step's forward outputs, not returned */
	rt_threads *threads;  /* the instance's own: no state is shared with others */
	rt_reduce_fn *reduce; /* the caller's all-reduce, kept across set_threads */
	void *reduce_ctx;
};

static int fail(rt_instance *m, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof m->error, fmt, ap);
	va_end(ap);
	return code;
}

static int fmt_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Why the calling thread's last create failed: there is no instance to
 * hold it (what errno is to a failed call). */
static _Thread_local char create_error[256];

int rt_model_check_cpu(const rt_model_desc *d, char *err, size_t errlen)
{
	uint64_t missing = (uint64_t)d->cpu_needs & ~rt_cpu_features();
	if (missing) {
		char names[256];
		return fmt_err(err, errlen, RT_ERR_CPU,
		               "this library was compiled for %s, and this CPU lacks %s (netcc "
		               "compile --target picks another)",
		               d->target, rt_cpu_feature_names(missing, names, sizeof names));
	}
	/* the set's code may run now */
	if (d->gemm_mr != rt_gemm_mr())
		return fmt_err(err, errlen, RT_ERR_CPU,
		               "internal: weights packed for %lld-row tiles, kernels of %d",
		               (long long)d->gemm_mr, rt_gemm_mr());
	return 0;
}

rt_instance *rt_instance_create(const rt_model_desc *d)
{
	create_error[0] = 0;
	if (rt_model_check_cpu(d, create_error, sizeof create_error) != 0)
		return NULL;
	rt_instance *m = calloc(1, sizeof *m);
	if (!m) {
		snprintf(create_error, sizeof create_error, "out of memory");
		return NULL;
	}
	m->d = d;
	m->weights = d->embedded;
	/* NETCC_THREADS caps the threads of every instance; default one per CPU */
	const char *env = getenv("NETCC_THREADS");
	m->threads = rt_threads_create(env && *env ? atoi(env) : 0);
	if (!m->threads) {
		free(m);
		snprintf(create_error, sizeof create_error, "cannot start threads");
		return NULL;
	}
	size_t ws = (size_t)d->workspace_bytes;
	bool ok = !ws || (m->workspace = rt_alloc_large(ws));
	if (ok && d->train_step) {
		m->state = calloc((size_t)d->state_floats + 1, sizeof(float));
		m->eval_raw = calloc((size_t)d->raw_floats + 1, sizeof(float));
		m->owned = calloc((size_t)d->weight_floats + 1, sizeof(float));
		m->logits = calloc((size_t)(d->batch * d->classes) + 1, sizeof(float));
		m->train_ws = rt_alloc_large((size_t)d->train_workspace_bytes);
		ok = m->state && m->eval_raw && m->owned && m->logits && m->train_ws;
		m->weights = NULL;
		if (ok && d->embedded) {
			memcpy(m->state, d->embedded, (size_t)d->state_floats * sizeof(float));
			m->has_state = m->stale = true;
		}
	}
	if (ok && !d->train_step && d->embedded) {
		m->owned = rt_weights_to_huge_pages(d->embedded, (size_t)d->weight_floats);
		if (m->owned)
			m->weights = m->owned;
	}
	if (!ok) {
		rt_instance_destroy(m);
		snprintf(create_error, sizeof create_error, "out of memory");
		return NULL;
	}
	return m;
}

void rt_instance_destroy(rt_instance *m)
{
	if (!m)
		return;
	free(m->owned);
	free(m->workspace);
	free(m->state);
	free(m->eval_raw);
	free(m->train_ws);
	free(m->logits);
	rt_threads_destroy(m->threads);
	free(m);
}

int rt_instance_set_threads(rt_instance *m, int threads)
{
	if (!m)
		return RT_ERR_ARG;
	if (threads < 1 || threads > 1024)
		return fail(m, RT_ERR_ARG, "threads = %d is outside [1, 1024]", threads);
	rt_threads *t = rt_threads_create(threads);
	if (!t)
		return fail(m, RT_ERR_NOMEM, "cannot start %d threads", threads);
	rt_threads_destroy(m->threads);
	m->threads = t;
	rt_threads_set_reduce(t, m->reduce, m->reduce_ctx);
	return 0;
}

int rt_instance_set_allreduce(rt_instance *m, rt_reduce_fn *fn, void *ctx)
{
	if (!m)
		return RT_ERR_ARG;
	if (!m->d->train_step)
		return fail(m, RT_ERR_ARG, "set_allreduce needs a library compiled with --train");
	m->reduce = fn;
	m->reduce_ctx = ctx;
	rt_threads_set_reduce(m->threads, fn, ctx);
	return 0;
}

const char *rt_instance_error(const rt_instance *m)
{
	if (!m)
		return create_error[0] ? create_error : "no instance (NULL)";
	return m->error;
}

static int check_tensor(const rt_st_file *f, const rt_param_desc *p, const char *path, char *err,
                        size_t errlen)
{
	const rt_st_tensor *t = rt_st_find(f, p->name);
	if (!t)
		return fmt_err(err, errlen, RT_ERR_WEIGHTS, "%s: missing tensor '%s'", path,
		               p->name);
	if (t->dtype != RT_DTYPE_F32)
		return fmt_err(err, errlen, RT_ERR_WEIGHTS,
		               "%s: tensor '%s' is %s, expected float32", path, p->name,
		               rt_dtype_name(t->dtype));
	bool same = t->rank == p->rank;
	for (int i = 0; same && i < t->rank; i++)
		same = t->dims[i] == p->dims[i];
	if (!same)
		return fmt_err(err, errlen, RT_ERR_WEIGHTS,
		               "%s: tensor '%s' has the wrong shape for this model", path, p->name);
	return 0;
}

/* Every tensor is checked before any is copied, so a bad file leaves the
 * destination as it was. */
static int64_t param_count(const rt_param_desc *p)
{
	int64_t n = 1;
	for (int64_t k = 0; k < p->rank; k++)
		n *= p->dims[k];
	return n;
}

int rt_param_values_check(const char *path, const char *name, const float *v, size_t n, bool finite,
                          char *err, size_t errlen)
{
	size_t len = strlen(name);
	bool variance = len >= 11 && !strcmp(name + len - 11, "running_var");
	for (size_t i = 0; i < n; i++) {
		float x;
		memcpy(&x, v + i, sizeof x); /* the file's data need not be aligned */
		if (finite && !(x - x == 0))
			return fmt_err(err, errlen, RT_ERR_WEIGHTS,
			               "%s: tensor '%s' holds %s at index %zu", path, name,
			               x != x ? "NaN" : "an infinity", i);
		if (variance && x < 0)
			return fmt_err(
			    err, errlen, RT_ERR_WEIGHTS,
			    "%s: tensor '%s' holds %g at index %zu: a variance is not negative",
			    path, name, x, i);
	}
	return 0;
}

/* Reads every param of the model into raw, laid out by the descriptor. */
static int read_raw(const rt_model_desc *d, const char *path, float *raw, char *err, size_t errlen)
{
	if (!path)
		return fmt_err(err, errlen, RT_ERR_ARG, "load_weights: path is NULL");
	rt_st_file f;
	char msg[400];
	if (rt_st_read(path, &f, msg, sizeof msg) != 0)
		return fmt_err(err, errlen, RT_ERR_IO, "%s", msg);
	int rc = 0;
	for (int64_t i = 0; i < d->n_params && !rc; i++)
		rc = check_tensor(&f, &d->params[i], path, err, errlen);
	if (!rc && f.n_tensors != d->n_params)
		rc = fmt_err(err, errlen, RT_ERR_WEIGHTS,
		             "%s: %d tensors, but the model has %lld parameters", path, f.n_tensors,
		             (long long)d->n_params);
	for (int64_t i = 0; i < d->n_params && !rc; i++) {
		const rt_st_tensor *t = rt_st_find(&f, d->params[i].name);
		rc = rt_param_values_check(path, d->params[i].name, t->data, t->count, true, err,
		                           errlen);
		if (!rc)
			memcpy(raw + d->params[i].offset, t->data, t->count * sizeof(float));
	}
	rt_st_free(&f);
	return rc;
}

int rt_model_read_weights(const rt_model_desc *d, const char *path, float *weights, char *err,
                          size_t errlen)
{
	if (!d || !path || !weights)
		return fmt_err(err, errlen, RT_ERR_ARG, "read_weights: NULL argument");
	if (rt_model_check_cpu(d, err, errlen) != 0)
		return RT_ERR_CPU;
	float *raw = calloc((size_t)d->raw_floats + 1, sizeof(float));
	if (!raw)
		return fmt_err(err, errlen, RT_ERR_NOMEM, "out of memory for %lld weights",
		               (long long)d->raw_floats);
	int rc = read_raw(d, path, raw, err, errlen);
	if (!rc)
		d->prepare(raw, weights);
	free(raw);
	return rc;
}

/* A trainable instance loads into its state: weights and statistics from
 * the file, momentum reset, so fine-tuning starts fresh. */
static int load_state(rt_instance *m, const char *path)
{
	const rt_model_desc *d = m->d;
	float *raw = calloc((size_t)d->raw_floats + 1, sizeof(float));
	if (!raw)
		return fail(m, RT_ERR_NOMEM, "out of memory for %lld weights",
		            (long long)d->raw_floats);
	int rc = read_raw(d, path, raw, m->error, sizeof m->error);
	if (rc == 0) {
		memset(m->state, 0, (size_t)d->state_floats * sizeof(float));
		for (int64_t i = 0; i < d->n_params; i++)
			memcpy(m->state + d->eval_from_state[i], raw + d->params[i].offset,
			       (size_t)param_count(&d->params[i]) * sizeof(float));
		m->has_state = m->stale = true;
		m->load_error[0] = 0;
	} else {
		m->has_state = false;
		snprintf(m->load_error, sizeof m->load_error, "%s", m->error);
	}
	free(raw);
	return rc;
}

int rt_instance_load_weights(rt_instance *m, const char *path)
{
	if (!m)
		return RT_ERR_ARG;
	if (m->d->train_step)
		return load_state(m, path);
	/* huge pages where granted, as the embedded ones are copied into */
	float *w = rt_alloc_large_zero(((size_t)m->d->weight_floats + 1) * sizeof(float));
	if (!w)
		return fail(m, RT_ERR_NOMEM, "out of memory for %lld weights",
		            (long long)m->d->weight_floats);
	int rc = rt_model_read_weights(m->d, path, w, m->error, sizeof m->error);
	if (rc) {
		/* No silent fallback to the previous weights: the caller meant
		 * to run with the new ones, so inference now reports this error. */
		free(w);
		free(m->owned);
		m->owned = NULL;
		m->weights = NULL;
		snprintf(m->load_error, sizeof m->load_error, "%s", m->error);
		return rc;
	}
	free(m->owned);
	m->owned = w;
	m->weights = w;
	m->error[0] = 0;
	m->load_error[0] = 0;
	return 0;
}

/* Inference weights of a trainable instance follow its state. */
static void refresh(rt_instance *m)
{
	const rt_model_desc *d = m->d;
	if (!d->train_step || !m->stale || !m->has_state)
		return;
	for (int64_t i = 0; i < d->n_params; i++)
		memcpy(m->eval_raw + d->params[i].offset, m->state + d->eval_from_state[i],
		       (size_t)param_count(&d->params[i]) * sizeof(float));
	d->prepare(m->eval_raw, m->owned);
	m->weights = m->owned;
	m->stale = false;
}

int rt_instance_run(rt_instance *m, const float *const *in, float *const *out)
{
	if (!m)
		return RT_ERR_ARG;
	if (!in || !out)
		return fail(m, RT_ERR_ARG, "inputs or outputs are NULL");
	for (int64_t i = 0; i < m->d->n_inputs; i++)
		if (!in[i])
			return fail(m, RT_ERR_ARG, "input %lld is NULL", (long long)i);
	for (int64_t i = 0; i < m->d->n_outputs; i++)
		if (!out[i])
			return fail(m, RT_ERR_ARG, "output %lld is NULL", (long long)i);
	refresh(m);
	if (m->d->train_step && !m->has_state)
		m->weights = NULL;
	if (!m->weights && m->load_error[0])
		return fail(m, RT_ERR_NO_WEIGHTS, "no weights: the last load_weights failed: %s",
		            m->load_error);
	if (!m->weights)
		return fail(
		    m, RT_ERR_NO_WEIGHTS,
		    "no weights: this library keeps them in a file; call load_weights first");
	m->d->forward(m->weights, m->workspace, in, out, m->threads);
	return 0;
}

int rt_instance_train_step(rt_instance *m, const float *input, const int32_t *labels, float lr,
                           float *loss)
{
	if (!m)
		return RT_ERR_ARG;
	const rt_model_desc *d = m->d;
	if (!d->train_step)
		return fail(m, RT_ERR_ARG, "this library was compiled without --train");
	if (!input || !labels || !loss)
		return fail(m, RT_ERR_ARG, "input, labels or loss is NULL");
	if (!m->has_state)
		return fail(m, RT_ERR_NO_WEIGHTS, "no weights: call load_weights first%s%s",
		            m->load_error[0] ? "; the last load failed: " : "", m->load_error);
	for (int64_t i = 0; i < d->batch; i++)
		if (labels[i] < 0 || labels[i] >= d->classes)
			return fail(m, RT_ERR_ARG, "label %d of example %lld is outside [0, %lld)",
			            labels[i], (long long)i, (long long)d->classes);
	if (!(lr >= 0 && lr - lr == 0)) /* NaN, negative, or an infinity */
		return fail(m, RT_ERR_ARG, "learning rate %g is not a finite, non-negative number",
		            lr);
	const void *in[3] = {input, labels, &lr};
	float *out[2] = {loss, m->logits};
	d->train_step(m->state, m->train_ws, in, out, m->threads);
	m->stale = true;
	return 0;
}

int rt_instance_save_weights(rt_instance *m, const char *path)
{
	if (!m)
		return RT_ERR_ARG;
	const rt_model_desc *d = m->d;
	if (!d->train_step)
		return fail(m, RT_ERR_ARG, "save_weights needs a library compiled with --train");
	if (!path)
		return fail(m, RT_ERR_ARG, "save_weights: path is NULL");
	if (!m->has_state)
		return fail(m, RT_ERR_NO_WEIGHTS, "no weights to save");
	rt_st_entry *e = calloc((size_t)d->n_params + 1, sizeof *e);
	if (!e)
		return fail(m, RT_ERR_NOMEM, "out of memory");
	for (int64_t i = 0; i < d->n_params; i++)
		e[i] = (rt_st_entry){d->params[i].name, RT_DTYPE_F32, (int)d->params[i].rank,
		                     d->params[i].dims, m->state + d->eval_from_state[i]};
	const char *meta[] = {"format", "netcc", "model", d->name};
	int rc = rt_st_write(path, e, (int)d->n_params, meta, 2, m->error, sizeof m->error);
	free(e);
	return rc ? RT_ERR_IO : 0;
}

int rt_instance_infer(rt_instance *m, const float *in, float *out)
{
	const float *ins[1] = {in};
	float *outs[1] = {out};
	if (m && (!in || !out))
		return fail(m, RT_ERR_ARG, "%s is NULL", in ? "output" : "input");
	return rt_instance_run(m, ins, outs);
}

size_t rt_model_static_workspace_bytes(int64_t arena_bytes)
{
	return (((size_t)arena_bytes + 63) & ~(size_t)63) + rt_threads_inline_bytes();
}

int rt_model_run_raw(const rt_model_desc *d, const float *weights, void *workspace, const float *in,
                     float *out)
{
	if (!weights || !in || !out || (!workspace && d->workspace_bytes))
		return RT_ERR_ARG;
	if ((uintptr_t)workspace % 64)
		return RT_ERR_ARG;
	if (rt_model_check_cpu(d, NULL, 0) != 0)
		return RT_ERR_CPU;
	const float *ins[1] = {in};
	float *outs[1] = {out};
	/* one thread, its GEMM scratch after the activations: see
	 * rt_model_static_workspace_bytes */
	size_t arena = ((size_t)d->workspace_bytes + 63) & ~(size_t)63;
	d->forward(weights, workspace, ins, outs, rt_threads_inline((char *)workspace + arena));
	return 0;
}
