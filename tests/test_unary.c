/* Every UNARY operator of ops.def against PyTorch (tests/unary/NAME.npz,
 * made by tests/unary/gen.py): y = NAME(x) through the reference executor
 * and through the compiled code (ORC JIT), the gradient autodiff derives
 * against PyTorch's and against central differences, and the model through
 * ONNX export and import. Nothing here
 * names an operator: a new UNARY op is tested once its vectors exist. */
#include <math.h>

#include "backend.h"
#include "frontend.h"
#include "onnx.h"
#include "passes.h"
#include "testutil.h"

static const char *const names[] = {
#define UNARY(e, name, onnx) #name,
#include "ops.def"
};
enum { N_UNARY = sizeof names / sizeof *names };
static const ir_op ops[] = {
#define UNARY(e, name, onnx) IR_OP_##e,
#include "ops.def"
};

typedef struct golden {
	rt_npz_file f;
	const rt_array *x, *y, *dy, *dx;
} golden;

static void golden_load(const char *name, golden *g)
{
	char path[1024], err[256];
	snprintf(path, sizeof path, "%s/tests/unary/%s.npz", test_env("NETCC_ROOT", "."), name);
	ck_assert_msg(rt_npz_read(path, &g->f, err, sizeof err) == 0, "%s: %s", name, err);
	const rt_array **slot[] = {&g->x, &g->y, &g->dy, &g->dx};
	const char *keys[] = {"x", "y", "dy", "dx"};
	for (int i = 0; i < 4; i++) {
		*slot[i] = rt_npz_find(&g->f, keys[i]);
		ck_assert_msg(*slot[i] && (*slot[i])->dtype == RT_DTYPE_F32 &&
		                  (*slot[i])->count == g->f.arrays[0].count,
		              "%s: %s is missing or of another shape", path, keys[i]);
	}
	ck_assert_int_eq(g->x->rank, 4);
}

/* y = name(x) for x of the golden's shape */
static ir_graph *model(const char *name, const golden *gd)
{
	const int64_t *d = gd->x->dims;
	char text[512];
	snprintf(
	    text, sizeof text,
	    "version 1\nmodel m(x: f32[N, %lld, %lld, %lld]) -> (y: f32[N, %lld, %lld, %lld])\n"
	    "graph { y = %s(x) }\n",
	    (long long)d[1], (long long)d[2], (long long)d[3], (long long)d[1], (long long)d[2],
	    (long long)d[3], name);
	ir_graph *g = frontend_graph_parse("t.nn", text, strlen(text), d[0]);
	ck_assert_msg(g != NULL, "does not parse:\n%s", text);
	return g;
}

static double objective(const ir_graph *g, const float *x, const float *dy, size_t n)
{
	float *y = malloc(n * sizeof(float));
	const float *in[1] = {x};
	char err[256];
	ck_assert_msg(interp_run(g, in, &y, err, sizeof err) == 0, "%s", err);
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)y[i] * dy[i];
	free(y);
	return s;
}

START_TEST(forward_matches_pytorch)
{
	const char *name = names[_i];
	golden gd;
	golden_load(name, &gd);
	size_t n = gd.x->count;
	ir_graph *g = model(name, &gd);
	const float *in[1] = {gd.x->data};
	float *ref = malloc(n * sizeof(float)), *jit = malloc(n * sizeof(float));
	char err[256];
	ck_assert_msg(interp_run(g, in, &ref, err, sizeof err) == 0, "%s", err);
	ck_assert_close(ref, gd.y->data, n, 1e-5);

	passes_run(g, &(passes_options){.opt_level = 2});
	backend_target t;
	ck_assert_msg(backend_target_get("native", &t, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(backend_jit_run(g, &t, in, &jit, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(memcmp(jit, ref, n * sizeof(float)) == 0,
	              "%s: the compiled code's bits are not the reference's", name);
	free(ref), free(jit);
	ir_graph_free(g);
	rt_npz_free(&gd.f);
}
END_TEST

START_TEST(gradient_matches_pytorch_and_differences)
{
	const char *name = names[_i];
	golden gd;
	golden_load(name, &gd);
	size_t n = gd.x->count;
	ir_graph *g = model(name, &gd);
	ir_graph *fwd = model(name, &gd);
	int *gn;
	int64_t *go;
	autodiff_gradients(g, &gn, &go);
	int xid = g->inputs[0].node;
	ck_assert_msg(gn[xid] >= 0, "%s: no gradient for x", name);
	const float *in[2] = {gd.x->data, gd.dy->data};
	interp_values v;
	char err[256];
	ck_assert_msg(interp_run_all(g, in, &v, err, sizeof err) == 0, "%s", err);
	const float *dx = v.value[gn[xid]] + go[xid];
	ck_assert_close(dx, gd.dx->data, n, 1e-4);

	/* central differences where the function is smooth at float32's
	 * resolution (away from the saturated tails) */
	float *x = malloc(n * sizeof(float));
	memcpy(x, gd.x->data, n * sizeof(float));
	int checked = 0;
	for (size_t i = 0; i < n; i += 7) {
		if (fabsf(x[i]) > 4)
			continue;
		float keep = x[i], h = 1e-2f;
		x[i] = keep + h;
		double up = objective(fwd, x, gd.dy->data, n);
		x[i] = keep - h;
		double down = objective(fwd, x, gd.dy->data, n);
		x[i] = keep;
		double fd = (up - down) / (2 * (double)h);
		ck_assert_msg(fabs(fd - dx[i]) < 2e-3 * fmax(1.0, fabs(fd)),
		              "%s: x[%zu] = %g: finite difference %g, autodiff %g", name, i, keep,
		              fd, dx[i]);
		checked++;
	}
	ck_assert_int_ge(checked, 10);
	free(x);
	interp_values_free(&v);
	free(gn), free(go);
	ir_graph_free(fwd);
	ir_graph_free(g);
	rt_npz_free(&gd.f);
}
END_TEST

/* y = name(x) exported to ONNX and imported back: the same op, the same bits */
START_TEST(onnx_round_trip)
{
	const char *name = names[_i];
	golden gd;
	golden_load(name, &gd);
	size_t n = gd.x->count;
	ir_graph *g = model(name, &gd);
	onnx_export ex = {0};
	onnx_export_graph(g, &(onnx_export_options){0}, &ex);
	onnx_import im;
	ck_assert_int_eq(onnx_import_bytes(ex.data, ex.len, "u.onnx", "m", &im, stderr), 0);
	ir_graph *back = onnx_import_graph(&im, "u.onnx", gd.x->dims[0]);
	ck_assert_ptr_nonnull(back);
	int found = 0;
	for (int i = 0; i < back->n_nodes; i++)
		found += back->nodes[i].op == ops[_i];
	ck_assert_msg(found == 1, "%s: %d such nodes after the round trip", name, found);
	const float *in[1] = {gd.x->data};
	float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
	char err[256];
	ck_assert_msg(interp_run(g, in, &want, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(interp_run(back, in, &got, err, sizeof err) == 0, "%s", err);
	ck_assert(memcmp(want, got, n * sizeof(float)) == 0);
	free(want), free(got);
	ir_graph_free(back);
	onnx_import_free(&im);
	onnx_export_free(&ex);
	ir_graph_free(g);
	rt_npz_free(&gd.f);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("unary");
	TCase *t = tcase_create("golden");
	tcase_set_timeout(t, 120);
	tcase_add_loop_test(t, forward_matches_pytorch, 0, N_UNARY);
	tcase_add_loop_test(t, gradient_matches_pytorch_and_differences, 0, N_UNARY);
	tcase_add_loop_test(t, onnx_round_trip, 0, N_UNARY);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
