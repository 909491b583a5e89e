/* netcc export (onnx/export.c, driver/cmd_export.c). Models exported and
 * read back by netcc's importer run on the reference executor to the same
 * outputs, bit for bit (the same operators in the same order); the file
 * says what ONNX Runtime needs (opset 13, the inputs' and outputs' names
 * and shapes, one initializer per parameter, under its name); a node ONNX
 * cannot express is refused at its source position; a failed export
 * leaves no file. That ONNX Runtime runs the files to netcc's outputs is
 * tools/onnx_export_check.py's job (it needs npm's onnxruntime-node). */
#include "backend.h"
#include "frontend.h"
#include "onnx.h"
#include "onnx.pb-c.h"
#include "testcli.h"

/* ---- graphs, weights and runs ------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

/* uniform in [lo, hi) */
static float rng_float(uint64_t *s, float lo, float hi)
{
	return lo + (hi - lo) * (float)(rng_next(s) >> 40) / (float)(1 << 24);
}

/* He weights, and BatchNorm statistics made far from the identity He
 * leaves them at, so that exporting them wrongly shows. */
static ir_graph *model_load(const char *rel, int64_t batch)
{
	ir_graph *g = frontend_graph_load(cli_root_path(rel), batch);
	ck_assert_msg(g != NULL, "%s does not load", rel);
	ir_graph_init_he(g, 7);
	uint64_t s = 0x9e3779b97f4a7c15u;
	static const float lo[4] = {0.5f, -0.5f, -0.5f, 0.5f}, hi[4] = {1.5f, 0.5f, 0.5f, 2.0f};
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_BATCHNORM)
			continue;
		for (int k = 0; k < 4; k++) {
			ir_node *p = &g->nodes[n->in[k + 1]];
			for (int64_t j = 0; j < ir_shape_count(&p->shape); j++)
				p->data[j] = rng_float(&s, lo[k], hi[k]);
		}
	}
	return g;
}

typedef struct run {
	int n;
	float *out[IR_MAX_IO];
	size_t count[IR_MAX_IO];
} run;

/* The one input, x, through g on the reference executor. */
static run model_run(const ir_graph *g, const float *x)
{
	run r = {.n = g->n_outputs};
	for (int i = 0; i < r.n; i++) {
		r.count[i] = (size_t)ir_shape_count(&g->nodes[g->outputs[i].node].shape);
		r.out[i] = malloc(r.count[i] * sizeof(float));
	}
	char err[512] = "";
	ck_assert_msg(interp_run(g, &x, r.out, err, sizeof err) == 0, "%s", err);
	return r;
}

static void run_free(run *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->out[i]);
}

static float *input_random(const ir_graph *g, uint64_t seed)
{
	ck_assert_int_eq(g->n_inputs, 1);
	size_t n = (size_t)ir_shape_count(&g->nodes[g->inputs[0].node].shape);
	float *x = malloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = rng_float(&seed, -1, 1);
	return x;
}

static void runs_equal(const run *got, const run *want, const char *what)
{
	ck_assert_int_eq(got->n, want->n);
	for (int i = 0; i < want->n; i++) {
		ck_assert_uint_eq(got->count[i], want->count[i]);
		double e = test_rel_err(got->out[i], want->out[i], want->count[i]);
		ck_assert_msg(e < 1e-5, "%s: output %d: relative error %.3g", what, i, e);
		ck_assert_msg(!memcmp(got->out[i], want->out[i], want->count[i] * sizeof(float)),
		              "%s: output %d differs (relative error %.3g), not bit-equal", what, i,
		              e);
	}
}

/* ---- the export and its structure ------------------------------------------- */

typedef struct export_job {
	const ir_graph *g;
	bool dynamic;
	onnx_export *ex;
} export_job;

/* 0, or 1 after the exporter reported an error */
static int export_graph(const ir_graph *g, bool dynamic, onnx_export *ex)
{
	*ex = (onnx_export){0};
	onnx_export_options o = {.dynamic_batch = dynamic, .producer_version = "test"};
	diag_trap t;
	diag_trap_push(&t);
	if (setjmp(t.jb) == 0) {
		onnx_export_graph(g, &o, ex);
		diag_trap_pop(&t);
		return 0;
	}
	return 1;
}

static void dims_check(const Onnx__ValueInfoProto *v, const char *name, const ir_shape *s,
                       int64_t batch)
{
	ck_assert_str_eq(v->name, name);
	ck_assert_int_eq(v->type->value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
	const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
	ck_assert_int_eq(t->elem_type, 1); /* float */
	ck_assert_uint_eq(t->shape->n_dim, (size_t)s->rank);
	for (int d = 0; d < s->rank; d++) {
		const Onnx__TensorShapeProto__Dimension *dim = t->shape->dim[d];
		if (d == 0 && batch == 0) {
			ck_assert_int_eq(dim->value_case,
			                 ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
			ck_assert_str_eq(dim->dim_param, "N");
		} else {
			ck_assert_int_eq(dim->value_case,
			                 ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE);
			ck_assert_int_eq(dim->dim_value, d ? s->d[d] : batch);
		}
	}
}

/* Opset 13; the graph's inputs and outputs as g declares them, dimension
 * 0 the batch (0: "N"); one initializer per parameter, in order, under
 * its name; operators of the default domain that ORT runs. */
static void structure_check(const onnx_export *ex, const ir_graph *g, int64_t batch)
{
	Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, ex->len, ex->data);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->ir_version, 7);
	ck_assert_uint_eq(m->n_opset_import, 1);
	ck_assert_int_eq(m->opset_import[0]->version, 13);
	ck_assert(!m->opset_import[0]->domain || !*m->opset_import[0]->domain);
	ck_assert_str_eq(m->producer_name, "netcc");
	const Onnx__GraphProto *gp = m->graph;
	ck_assert_uint_eq(gp->n_input, (size_t)g->n_inputs);
	for (int i = 0; i < g->n_inputs; i++)
		dims_check(gp->input[i], g->inputs[i].name, &g->nodes[g->inputs[i].node].shape,
		           batch);
	ck_assert_uint_eq(gp->n_output, (size_t)g->n_outputs);
	for (int i = 0; i < g->n_outputs; i++)
		dims_check(gp->output[i], g->outputs[i].name, &g->nodes[g->outputs[i].node].shape,
		           batch);
	size_t k = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		ck_assert_uint_lt(k, gp->n_initializer);
		const Onnx__TensorProto *t = gp->initializer[k++];
		ck_assert_str_eq(t->name, p->name);
		ck_assert_uint_eq(t->n_dims, (size_t)p->shape.rank);
		for (int d = 0; d < p->shape.rank; d++)
			ck_assert_int_eq(t->dims[d], p->shape.d[d]);
		ck_assert_uint_eq(t->raw_data.len, (size_t)ir_shape_count(&p->shape) * 4);
		ck_assert(!memcmp(t->raw_data.data, p->data, t->raw_data.len));
	}
	ck_assert_uint_eq(gp->n_initializer, k);
	static const char ops[] = " Conv BatchNormalization Relu Add MaxPool AveragePool "
	                          "GlobalAveragePool Flatten Gemm Softmax Slice Pad Constant "
	                          "Identity ";
	for (size_t i = 0; i < gp->n_node; i++) {
		char word[64];
		snprintf(word, sizeof word, " %s ", gp->node[i]->op_type);
		ck_assert_msg(strstr(ops, word), "operator %s", gp->node[i]->op_type);
		ck_assert(!gp->node[i]->domain || !*gp->node[i]->domain);
	}
	onnx__model_proto__free_unpacked(m, NULL);
}

/* The export imported by netcc, at batch. */
static ir_graph *import_back(const onnx_export *ex, const char *model, int64_t batch)
{
	onnx_import im;
	ck_assert_int_eq(onnx_import_bytes(ex->data, ex->len, "export.onnx", model, &im, stderr),
	                 0);
	ir_graph *g = onnx_import_graph(&im, "export.onnx", batch);
	ck_assert_ptr_nonnull(g);
	onnx_import_free(&im);
	return g;
}

/* Batch 2 fixed, and the batch left open and bound to 3 at import: the
 * model's outputs each time. */
static void round_trip(const char *rel)
{
	ir_graph *g = model_load(rel, 2);
	float *x = input_random(g, 11);
	run want = model_run(g, x);
	onnx_export ex;
	ck_assert_int_eq(export_graph(g, false, &ex), 0);
	structure_check(&ex, g, 2);
	ir_graph *back = import_back(&ex, g->name, 2);
	run got = model_run(back, x);
	runs_equal(&got, &want, rel);
	run_free(&got), run_free(&want), free(x);
	ir_graph_free(back);
	onnx_export_free(&ex);

	ck_assert_int_eq(export_graph(g, true, &ex), 0);
	structure_check(&ex, g, 0);
	ir_graph *g3 = model_load(rel, 3);
	back = import_back(&ex, g->name, 3);
	x = input_random(g3, 12);
	want = model_run(g3, x), got = model_run(back, x);
	runs_equal(&got, &want, rel);
	run_free(&got), run_free(&want), free(x);
	ir_graph_free(back);
	ir_graph_free(g3);
	onnx_export_free(&ex);
	ir_graph_free(g);
}

START_TEST(tiny_models_round_trip)
{
	round_trip("tests/models/tiny28.nn");
	round_trip("tests/export/ops.nn");
	round_trip("tests/export/proj28.nn");
}
END_TEST

/* Option-A shortcuts (Slice and channel Pad) and projections (ResNet-18,
 * 224x224: left to the plain build, a minute under the sanitizers). */
START_TEST(resnets_round_trip)
{
	round_trip("models/resnet20.nn");
	if (!test_sanitized())
		round_trip("models/resnet18.nn");
}
END_TEST

/* An operator made by a pass has no ONNX form: an error at the node's
 * source position, and no bytes. */
START_TEST(internal_operator_refused)
{
	ir_graph *g = model_load("tests/export/ops.nn", 1);
	int relu = -1;
	for (int i = 0; i < g->n_nodes && relu < 0; i++)
		if (g->nodes[i].op == IR_OP_RELU)
			relu = i;
	ck_assert_int_ge(relu, 0);
	g->nodes[relu].op = IR_OP_BN_STATS;
	FILE *errs = tmpfile();
	diag_set_output(errs);
	onnx_export ex;
	int rc = export_graph(g, false, &ex);
	diag_set_output(stderr);
	ck_assert_int_eq(rc, 1);
	ck_assert_ptr_null(ex.data);
	onnx_export_free(&ex);
	char msg[4096] = "";
	rewind(errs);
	size_t n = fread(msg, 1, sizeof msg - 1, errs);
	msg[n] = 0;
	fclose(errs);
	ck_assert_msg(strstr(msg, "tests/export/ops.nn:9:9: error: bn_stats cannot be exported "
	                          "to ONNX"),
	              "%s", msg);
	ir_graph_free(g);
}
END_TEST

/* The command: the file, standard output, the batch, and nothing left
 * behind when it fails. */
START_TEST(command_writes_or_leaves_nothing)
{
	cli_tmp_make("export");
	char *err, path[600], w[600], y1[600], y2[600];
	snprintf(w, sizeof w, "%s/w.safetensors", cli_tmp);
	snprintf(path, sizeof path, "%s/t.onnx", cli_tmp);
	ck_assert_int_eq(cli_netcc(&err, "init tests/models/tiny28.nn -o %s --seed 4", w), 0);
	free(err);
	ck_assert_int_eq(
	    cli_netcc(&err, "export tests/models/tiny28.nn --weights %s -o %s -Werror", w, path),
	    0);
	ck_assert_msg(strstr(err, "wrote") && strstr(err, "batch 1)"), "%s", err);
	free(err);
	/* the file runs to the model's outputs, as netcc runs the .onnx */
	snprintf(y1, sizeof y1, "%s/y1.npy", cli_tmp);
	snprintf(y2, sizeof y2, "%s/y2.npy", cli_tmp);
	ck_assert_int_eq(cli_netcc(&err,
	                           "run %s --reference --input examples/data/ankle_boot.npy "
	                           "-o %s -Werror",
	                           path, y1),
	                 0);
	free(err);
	ck_assert_int_eq(cli_netcc(&err,
	                           "run tests/models/tiny28.nn --weights %s --reference --input "
	                           "examples/data/ankle_boot.npy -o %s",
	                           w, y2),
	                 0);
	free(err);
	size_t n1, n2;
	char *a = test_slurp(y1, &n1), *b = test_slurp(y2, &n2);
	ck_assert(n1 == n2 && !memcmp(a, b, n1));
	free(a), free(b);
	/* -o - writes the same bytes */
	ck_assert_int_eq(cli_netcc(&err, "export tests/models/tiny28.nn --weights %s -o -", w), 0);
	free(err);
	char out[600];
	snprintf(out, sizeof out, "%s/stdout", cli_tmp);
	a = test_slurp(path, &n1), b = test_slurp(out, &n2);
	ck_assert(n1 == n2 && !memcmp(a, b, n1));
	free(a), free(b);
	/* one initializer per parameter netcc params lists */
	ck_assert_int_eq(cli_netcc(&err, "params tests/models/tiny28.nn"), 0);
	free(err);
	a = test_slurp(out, NULL);
	int lines = 0;
	for (char *c = a; *c; c++)
		lines += *c == '\n';
	free(a);
	a = test_slurp(path, &n1);
	Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n1, (const uint8_t *)a);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq((int)m->graph->n_initializer, lines);
	onnx__model_proto__free_unpacked(m, NULL);
	free(a);
	/* --batch fixes another batch */
	ck_assert_int_eq(
	    cli_netcc(&err, "export tests/models/tiny28.nn --weights %s --batch 4 -o %s", w, path),
	    0);
	free(err);
	a = test_slurp(path, &n1);
	m = onnx__model_proto__unpack(NULL, n1, (const uint8_t *)a);
	ck_assert_int_eq(m->graph->input[0]->type->tensor_type->shape->dim[0]->dim_value, 4);
	onnx__model_proto__free_unpacked(m, NULL);
	free(a);
	ck_assert_int_eq(cli_netcc(&err,
	                           "export tests/models/tiny28.nn --batch 4 --dynamic-batch -o "
	                           "%s/b.onnx",
	                           cli_tmp),
	                 2);
	free(err);

	/* failures: the file that was there stays as it was */
	ck_assert_int_eq(cli_netcc(&err, "export models/resnet20.nn --weights %s -o %s", w, path),
	                 1);
	ck_assert_ptr_nonnull(strstr(err, "was written for model 'tiny28', not 'resnet20'"));
	free(err);
	a = test_slurp(path, &n2);
	ck_assert_uint_eq(n1, n2);
	free(a);
	snprintf(out, sizeof out, "%s/new.onnx", cli_tmp);
	ck_assert_int_eq(cli_netcc(&err, "export tests/models/tiny28.nn -Werror -o %s", out), 1);
	ck_assert_ptr_nonnull(strstr(err, "warning: no --weights"));
	free(err);
	ck_assert(!cli_exists(out));
	ck_assert_int_eq(
	    cli_netcc(&err, "export tests/models/tiny28.nn -o %s/no/such/dir/m.onnx", cli_tmp), 1);
	ck_assert_msg(strstr(err, "there is no directory"), "%s", err);
	free(err);
	snprintf(out, sizeof out, "%s/no", cli_tmp);
	ck_assert(!cli_exists(out));
	/* without --weights: He's, and a warning saying so */
	ck_assert_int_eq(cli_netcc(&err, "export tests/models/tiny28.nn -o %s/he.onnx", cli_tmp),
	                 0);
	ck_assert_ptr_nonnull(strstr(err, "warning: no --weights"));
	free(err);
	cli_tmp_remove();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("export");
	TCase *t = tcase_create("export");
	tcase_set_timeout(t, test_sanitized() ? 900 : 300);
	tcase_add_test(t, internal_operator_refused);
	tcase_add_test(t, tiny_models_round_trip);
	tcase_add_test(t, resnets_round_trip);
	tcase_add_test(t, command_writes_or_leaves_nothing);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
