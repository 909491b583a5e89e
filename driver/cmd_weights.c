/* netcc weights: a PyTorch state dict, saved as .npz or .safetensors, as
 * the weights file of a .nn model.
 *
 * The tensors are matched to the parameters `netcc params` lists, by
 * order (the state dict's order is the order its modules were made, which
 * is what a .nn written after the PyTorch model follows) or by name (a
 * .nn that netcc import wrote names its parameters after PyTorch's, '_'
 * for '.' in the module path). BatchNorm's num_batches_tracked, which
 * netcc does not keep, is skipped either way. Every pairing is shown, so
 * that a match by order can be read over before the weights are used. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "driver.h"
#include "onnx.h"
#include "runtime.h"

enum { SHOWN = 10, CONTEXT = 3 };

typedef enum map_mode { MAP_AUTO, MAP_ORDER, MAP_NAMES } map_mode;

/* One tensor of the state dict, as the file holds it. */
typedef struct src_tensor {
	const char *name;
	rt_dtype dtype;
	int rank;
	const int64_t *dims;
	size_t count;
	const void *data;
} src_tensor;

typedef struct state_dict {
	const char *path;
	rt_npz_file npz;
	rt_st_file st;
	int n;
	src_tensor *t; /* in the file's order, num_batches_tracked included */
	int n_kept;
	int *kept; /* indices into t of the tensors to match */
	int skipped;
} state_dict;

/* What is being matched: the model's parameters, and for each the tensor
 * (an index into sd->t) it takes, or -1. */
typedef struct weights_job {
	const char *model_path;
	ir_graph *g;
	int n_params;
	const ir_node **params;
	state_dict sd;
	int *match;
	arena a;
} weights_job;

/* ---- the state dict ---------------------------------------------------------- */

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n >= t && !strcasecmp(s + n - t, tail);
}

static bool is_step_count(const char *name)
{
	size_t n = strlen(name);
	return ends_with(name, "num_batches_tracked") &&
	       (n == 19 || name[n - 20] == '.' || name[n - 20] == '_');
}

static int npz_load(state_dict *sd, char *err, size_t errlen)
{
	if (rt_npz_read(sd->path, &sd->npz, err, errlen) != 0)
		return -1;
	sd->n = sd->npz.n;
	sd->t = calloc((size_t)sd->n + 1, sizeof *sd->t);
	if (!sd->t)
		return snprintf(err, errlen, "out of memory"), -1;
	for (int i = 0; i < sd->n; i++) {
		const rt_array *a = &sd->npz.arrays[i];
		sd->t[i] =
		    (src_tensor){sd->npz.names[i], a->dtype, a->rank, a->dims, a->count, a->data};
	}
	return 0;
}

static const rt_st_file *st_sorting;

/* data order, which is the order a writer went through the tensors */
static int cmp_offset(const void *a, const void *b)
{
	const rt_st_tensor *x = &st_sorting->tensors[*(const int *)a];
	const rt_st_tensor *y = &st_sorting->tensors[*(const int *)b];
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return *(const int *)a - *(const int *)b;
}

static int st_load(state_dict *sd, char *err, size_t errlen)
{
	if (rt_st_read(sd->path, &sd->st, err, errlen) != 0)
		return -1;
	sd->n = sd->st.n_tensors;
	int *order = calloc((size_t)sd->n + 1, sizeof *order);
	sd->t = calloc((size_t)sd->n + 1, sizeof *sd->t);
	if (!order || !sd->t) {
		free(order);
		return snprintf(err, errlen, "out of memory"), -1;
	}
	for (int i = 0; i < sd->n; i++)
		order[i] = i;
	st_sorting = &sd->st;
	qsort(order, (size_t)sd->n, sizeof *order, cmp_offset);
	for (int i = 0; i < sd->n; i++) {
		const rt_st_tensor *t = &sd->st.tensors[order[i]];
		sd->t[i] = (src_tensor){t->name, t->dtype, t->rank, t->dims, t->count, t->data};
	}
	free(order);
	return 0;
}

static void state_free(state_dict *sd)
{
	rt_npz_free(&sd->npz);
	rt_st_free(&sd->st);
	free(sd->t);
	free(sd->kept);
}

static bool is_float(rt_dtype t)
{
	return t == RT_DTYPE_F32 || t == RT_DTYPE_F64 || t == RT_DTYPE_F16 || t == RT_DTYPE_BF16;
}

/* The tensors to match: all but num_batches_tracked, each a float. */
static int state_keep(state_dict *sd)
{
	sd->kept = calloc((size_t)sd->n + 1, sizeof *sd->kept);
	if (!sd->kept) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	int bad = 0;
	for (int i = 0; i < sd->n; i++) {
		const src_tensor *t = &sd->t[i];
		if (is_step_count(t->name)) {
			sd->skipped++;
			continue;
		}
		if (!is_float(t->dtype) && bad++ < SHOWN)
			fprintf(
			    stderr,
			    "netcc: error: %s: tensor '%s' is %s; netcc's weights are float32 "
			    "(float64, float16 and bfloat16 are converted); of the integers only "
			    "num_batches_tracked is expected, and skipped\n",
			    sd->path, t->name, rt_dtype_name(t->dtype));
		sd->kept[sd->n_kept++] = i;
	}
	return bad ? 1 : 0;
}

static int state_load(state_dict *sd, const char *path)
{
	sd->path = path;
	if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".ckpt") ||
	    ends_with(path, ".bin")) {
		fprintf(stderr,
		        "netcc: error: %s: a PyTorch checkpoint (torch.save) is Python's pickle, "
		        "which netcc does not read; save its state dict with np.savez first (see "
		        "docs/interop.md, \"PyTorch weights without ONNX\")\n",
		        path);
		return 1;
	}
	char err[1024];
	FILE *f = fopen(path, "rb");
	unsigned char magic[2] = {0};
	bool zip = f && fread(magic, 1, 2, f) == 2 && magic[0] == 'P' && magic[1] == 'K';
	if (f)
		fclose(f);
	/* by extension, else by the zip magic: a pipe has no name to go by */
	bool npz = ends_with(path, ".npz") || (!ends_with(path, ".safetensors") && zip);
	if ((npz ? npz_load(sd, err, sizeof err) : st_load(sd, err, sizeof err)) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	return state_keep(sd);
}

/* ---- the table ----------------------------------------------------------------- */

static bool same_shape(const ir_node *p, const src_tensor *t)
{
	if (p->shape.rank != t->rank)
		return false;
	for (int i = 0; i < t->rank; i++)
		if (p->shape.d[i] != t->dims[i])
			return false;
	return true;
}

/* One row: parameter i (or none, i < 0) beside tensor s (or none); the
 * tensor's shape and dtype only where they differ from the parameter's
 * and float32. */
static void row_print(const weights_job *j, char mark, int i, int s)
{
	char pshape[96] = "", sshape[128] = "", note[160] = "";
	const ir_node *p = i >= 0 ? j->params[i] : NULL;
	const src_tensor *t = s >= 0 ? &j->sd.t[s] : NULL;
	if (p)
		ir_shape_str(&p->shape, pshape, sizeof pshape);
	if (t && (!p || !same_shape(p, t)))
		ir_dims_str(t->dims, t->rank, sshape, sizeof sshape);
	if (t && t->dtype != RT_DTYPE_F32)
		snprintf(note, sizeof note, " (%s)", rt_dtype_name(t->dtype));
	char num[16] = "";
	if (i >= 0)
		snprintf(num, sizeof num, "%d", i + 1);
	fprintf(stderr, "%c %4s  %-44s %-16s %s%s%s%s\n", mark, num, p ? p->name : "-", pshape,
	        t ? t->name : "-", *sshape ? " " : "", sshape, note);
}

static void table_head(void)
{
	fprintf(stderr, "  %4s  %-44s %-16s %s\n", "#", "parameter", "shape", "tensor");
}

static void table_print(const weights_job *j)
{
	table_head();
	for (int i = 0; i < j->n_params; i++)
		row_print(j, ' ', i, j->match[i]);
}

/* ---- matching by order ------------------------------------------------------------ */

/* PyTorch registers a layer's weight before its bias: a bias first means
 * the file does not keep the state dict's order (safetensors' save_file
 * sorts the names), and matching by order would pair the wrong tensors,
 * often of the same shape. */
static int order_check(weights_job *j)
{
	const state_dict *sd = &j->sd;
	strmap at = {0};
	for (int k = 0; k < sd->n_kept; k++)
		strmap_put(&at, &j->a, sd->t[sd->kept[k]].name, k);
	for (int k = 0; k < sd->n_kept; k++) {
		const char *b = sd->t[sd->kept[k]].name;
		size_t n = strlen(b);
		if (n < 5 || strcmp(b + n - 5, ".bias"))
			continue;
		const char *w = arena_printf(&j->a, "%.*sweight", (int)(n - 4), b);
		if (strmap_get(&at, w) > k) {
			fprintf(
			    stderr,
			    "netcc: error: %s: '%s' comes before '%s', so the tensors are not in "
			    "the state dict's order (PyTorch makes a weight before its bias; "
			    "safetensors' save_file sorts names) and cannot be matched by order; "
			    "use --map names, or save the state dict with np.savez (see "
			    "docs/interop.md)\n",
			    sd->path, b, w);
			return 1;
		}
	}
	return 0;
}

static void order_context(const weights_job *j, int at)
{
	int n = j->n_params > j->sd.n_kept ? j->n_params : j->sd.n_kept;
	int lo = at - CONTEXT < 0 ? 0 : at - CONTEXT,
	    hi = at + CONTEXT + 1 > n ? n : at + CONTEXT + 1;
	table_head();
	for (int k = lo; k < hi; k++)
		row_print(j, k == at ? '>' : ' ', k < j->n_params ? k : -1,
		          k < j->sd.n_kept ? j->sd.kept[k] : -1);
}

static int order_match(weights_job *j)
{
	const state_dict *sd = &j->sd;
	if (order_check(j) != 0)
		return 1;
	int n = j->n_params < sd->n_kept ? j->n_params : sd->n_kept, at = -1;
	for (int k = 0; k < n && at < 0; k++)
		if (!same_shape(j->params[k], &sd->t[sd->kept[k]]))
			at = k;
	if (at < 0 && j->n_params == sd->n_kept) {
		for (int k = 0; k < n; k++)
			j->match[k] = sd->kept[k];
		return 0;
	}
	if (j->n_params != sd->n_kept)
		fprintf(stderr,
		        "netcc: error: %s: %d tensors (less %d num_batches_tracked) for the %d "
		        "parameters of model '%s'; their shapes first differ at row %d\n",
		        sd->path, sd->n_kept, sd->skipped, j->n_params, j->g->name,
		        (at < 0 ? n : at) + 1);
	else {
		char want[96], got[128];
		ir_shape_str(&j->params[at]->shape, want, sizeof want);
		const src_tensor *t = &sd->t[sd->kept[at]];
		ir_dims_str(t->dims, t->rank, got, sizeof got);
		fprintf(stderr,
		        "netcc: error: %s: tensor %d, '%s' %s, does not fit parameter %d of model "
		        "'%s', '%s' %s\n",
		        sd->path, at + 1, t->name, got, at + 1, j->g->name, j->params[at]->name,
		        want);
	}
	order_context(j, at < 0 ? n : at);
	return 1;
}

/* ---- matching by name ------------------------------------------------------------- */

/* Exact names first, then the importer's spelling of PyTorch's; each
 * tensor serves one parameter. The number of parameters matched. */
static int names_pair(weights_job *j, bool *used)
{
	const state_dict *sd = &j->sd;
	strmap exact = {0}, spelt = {0};
	for (int k = 0; k < sd->n_kept; k++) {
		const char *name = sd->t[sd->kept[k]].name;
		strmap_put(&exact, &j->a, name, k);
		const char *key = onnx_param_name(&j->a, name);
		strmap_put(&spelt, &j->a, key, strmap_get(&spelt, key) >= 0 ? INT32_MAX : k);
	}
	int found = 0;
	for (int i = 0; i < j->n_params; i++) {
		int k = strmap_get(&exact, j->params[i]->name);
		if (k < 0)
			k = strmap_get(&spelt, j->params[i]->name);
		if (k < 0 || k == INT32_MAX || used[k])
			continue;
		used[k] = true;
		j->match[i] = sd->kept[k];
		found++;
	}
	return found;
}

static void names_missing(weights_job *j, const bool *used)
{
	const state_dict *sd = &j->sd;
	const char **cands = arena_array(&j->a, (size_t)sd->n_kept + 1, sizeof *cands);
	for (int k = 0; k < sd->n_kept; k++)
		cands[k] = used[k] ? NULL : sd->t[sd->kept[k]].name;
	int shown = 0, missing = 0;
	for (int i = 0; i < j->n_params; i++) {
		if (j->match[i] >= 0 || missing++ >= SHOWN)
			continue;
		char shape[96];
		ir_shape_str(&j->params[i]->shape, shape, sizeof shape);
		const char *hint = diag_suggest(j->params[i]->name, cands, sd->n_kept);
		fprintf(stderr, "netcc: error: %s: no tensor for parameter '%s' %s%s%s%s\n",
		        sd->path, j->params[i]->name, shape, hint ? "; did you mean '" : "",
		        hint ? hint : "", hint ? "'?" : "");
		shown++;
	}
	if (missing > shown)
		fprintf(stderr, "netcc: error: %s: %d more parameters without a tensor\n", sd->path,
		        missing - shown);
}

static void names_extra(weights_job *j, const bool *used)
{
	const state_dict *sd = &j->sd;
	const char **cands = arena_array(&j->a, (size_t)j->n_params + 1, sizeof *cands);
	for (int i = 0; i < j->n_params; i++)
		cands[i] = j->match[i] >= 0 ? NULL : j->params[i]->name;
	int extra = 0;
	for (int k = 0; k < sd->n_kept; k++) {
		if (used[k] || extra++ >= SHOWN)
			continue;
		const char *name = sd->t[sd->kept[k]].name;
		const char *hint = diag_suggest(onnx_param_name(&j->a, name), cands, j->n_params);
		fprintf(stderr,
		        "netcc: error: %s: tensor '%s' is not a parameter of model '%s'%s%s%s\n",
		        sd->path, name, j->g->name, hint ? "; did you mean '" : "",
		        hint ? hint : "", hint ? "'?" : "");
	}
	if (extra > SHOWN)
		fprintf(stderr, "netcc: error: %s: %d more tensors the model does not have\n",
		        sd->path, extra - SHOWN);
}

static int names_shapes(const weights_job *j)
{
	int bad = 0;
	for (int i = 0; i < j->n_params; i++) {
		const src_tensor *t = &j->sd.t[j->match[i]];
		if (same_shape(j->params[i], t) || bad++ >= SHOWN)
			continue;
		char want[96], got[128];
		ir_shape_str(&j->params[i]->shape, want, sizeof want);
		ir_dims_str(t->dims, t->rank, got, sizeof got);
		fprintf(stderr,
		        "netcc: error: %s: tensor '%s' %s does not fit parameter '%s' %s of model "
		        "'%s'\n",
		        j->sd.path, t->name, got, j->params[i]->name, want, j->g->name);
	}
	return bad ? 1 : 0;
}

static int names_match(weights_job *j, bool *used, int found)
{
	if (found < j->n_params)
		names_missing(j, used);
	if (found < j->sd.n_kept)
		names_extra(j, used);
	if (found < j->n_params || found < j->sd.n_kept)
		return 1;
	return names_shapes(j);
}

/* ---- the command ---------------------------------------------------------------- */

static int map_parse(const opts *o, map_mode *m)
{
	const char *v = opts_str(o, "map", "auto");
	if (!strcmp(v, "auto"))
		*m = MAP_AUTO;
	else if (!strcmp(v, "order"))
		*m = MAP_ORDER;
	else if (!strcmp(v, "names"))
		*m = MAP_NAMES;
	else {
		fprintf(stderr, "netcc: error: --map %s: expected auto, order or names\n", v);
		return 2;
	}
	return 0;
}

/* auto: by name where most parameters find a tensor of their name (a .nn
 * from netcc import), its errors then naming what is missing; else by
 * order (a .nn written after the PyTorch model, in names of its own). */
static int match(weights_job *j, map_mode mode, const char **how)
{
	for (int i = 0; i < j->n_params; i++)
		j->match[i] = -1;
	bool *used = arena_array(&j->a, (size_t)j->sd.n_kept + 1, sizeof *used);
	int found = mode == MAP_ORDER ? 0 : names_pair(j, used);
	if (mode == MAP_NAMES || (mode == MAP_AUTO && found > j->n_params / 2)) {
		*how = "by name";
		int rc = names_match(j, used, found);
		if (rc && !found)
			fprintf(stderr, "netcc: note: no parameter has a tensor of its name; --map "
			                "order pairs them by position\n");
		return rc;
	}
	*how = "by order";
	for (int i = 0; i < j->n_params; i++)
		j->match[i] = -1;
	int rc = order_match(j);
	if (rc && mode == MAP_AUTO && found)
		fprintf(stderr,
		        "netcc: note: --map auto matched by order, as only %d of the %d parameters "
		        "have a tensor of their name\n",
		        found, j->n_params);
	return rc;
}

/* The matched tensors as float32, each checked as a weights file's values
 * are. */
static int convert(weights_job *j, bool allow_nonfinite, rt_st_entry *e)
{
	int bad = 0;
	for (int i = 0; i < j->n_params; i++) {
		const ir_node *p = j->params[i];
		const src_tensor *t = &j->sd.t[j->match[i]];
		float *v = malloc(t->count ? t->count * sizeof *v : 1);
		if (!v) {
			fprintf(stderr, "netcc: error: out of memory for '%s'\n", t->name);
			return 1;
		}
		rt_values_to_f32(t->dtype, t->data, t->count, v);
		e[i] = (rt_st_entry){p->name, RT_DTYPE_F32, p->shape.rank, p->shape.d, v};
		char err[512];
		if (rt_param_values_check(j->sd.path, t->name, v, t->count, !allow_nonfinite, err,
		                          sizeof err) != 0 &&
		    bad++ < SHOWN)
			fprintf(stderr, "netcc: error: %s%s\n", err,
			        strstr(err, "variance") ? "" : " (--allow-nonfinite accepts it)");
	}
	return bad ? 1 : 0;
}

static int write_out(const weights_job *j, const char *out, const rt_st_entry *e)
{
	const char *meta[] = {"format", "netcc", "model", j->g->name};
	char err[1024];
	bool std = !strcmp(out, "-");
	void *img = NULL;
	size_t size = 0;
	int rc = std ? rt_st_encode(out, e, j->n_params, meta, 2, &img, &size, err, sizeof err)
	             : rt_st_write(out, e, j->n_params, meta, 2, err, sizeof err);
	if (rc == 0 && std && (fwrite(img, 1, size, stdout) != size || fflush(stdout) != 0)) {
		snprintf(err, sizeof err, "-o -: cannot write standard output");
		rc = -1;
	}
	free(img);
	if (rc != 0)
		fprintf(stderr, "netcc: error: %s\n", err);
	return rc ? 1 : 0;
}

static void summary_print(const weights_job *j, const char *out, const char *how)
{
	int converted[RT_DTYPE_BF16 + 1] = {0};
	int64_t values = 0;
	for (int i = 0; i < j->n_params; i++) {
		const src_tensor *t = &j->sd.t[j->match[i]];
		converted[t->dtype]++;
		values += (int64_t)t->count;
	}
	for (int d = 0; d <= RT_DTYPE_BF16; d++)
		if (d != RT_DTYPE_F32 && converted[d])
			fprintf(stderr, "netcc: note: %d tensor%s converted to float32 from %s\n",
			        converted[d], converted[d] == 1 ? "" : "s",
			        rt_dtype_name((rt_dtype)d));
	fprintf(stderr,
	        "netcc: wrote %s: %d tensors of model '%s', %lld values, matched %s from %s "
	        "(%d num_batches_tracked skipped)\n",
	        strcmp(out, "-") ? out : "standard output", j->n_params, j->g->name,
	        (long long)values, how, j->sd.path, j->sd.skipped);
}

static int job_params(weights_job *j)
{
	for (int i = 0; i < j->g->n_nodes; i++)
		j->n_params += j->g->nodes[i].op == IR_OP_PARAM;
	j->params = arena_array(&j->a, (size_t)j->n_params + 1, sizeof *j->params);
	j->match = arena_array(&j->a, (size_t)j->n_params + 1, sizeof *j->match);
	int n = 0;
	for (int i = 0; i < j->g->n_nodes; i++)
		if (j->g->nodes[i].op == IR_OP_PARAM)
			j->params[n++] = &j->g->nodes[i];
	return 0;
}

static int job_run(weights_job *j, const opts *o, map_mode mode)
{
	const char *out = opts_str(o, "o", NULL), *how;
	if (state_load(&j->sd, opts_str(o, "from", NULL)) != 0)
		return 1;
	job_params(j);
	if (match(j, mode, &how) != 0)
		return 1;
	fprintf(stderr, "netcc: model '%s' from %s, %s:\n", j->g->name, j->sd.path, how);
	table_print(j);
	rt_st_entry *e = arena_array(&j->a, (size_t)j->n_params + 1, sizeof *e);
	int rc = convert(j, opts_flag(o, "allow-nonfinite"), e);
	if (rc == 0)
		rc = write_out(j, out, e);
	if (rc == 0)
		summary_print(j, out, how);
	for (int i = 0; i < j->n_params; i++)
		free((void *)e[i].data);
	return rc;
}

int cmd_weights(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "weights");
	if (rc)
		return rc < 0 ? 0 : rc;
	if (o.n_pos != 1 || !opts_flag(&o, "from") || !opts_flag(&o, "o")) {
		fprintf(stderr, "netcc: error: weights needs one MODEL.nn, --from STATE.npz and -o "
		                "W.safetensors (see netcc help weights)\n");
		return 2;
	}
	map_mode mode;
	if (map_parse(&o, &mode) != 0)
		return 2;
	weights_job j = {.model_path = o.pos[0]};
	j.g = driver_model_load(&o, 1, &rc);
	if (!j.g)
		return rc;
	rc = job_run(&j, &o, mode);
	state_free(&j.sd);
	arena_free(&j.a);
	ir_graph_free(j.g);
	return rc;
}
