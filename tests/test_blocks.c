/* Whole ResNet blocks written in the model language (tests/blocks/) must
 * reproduce PyTorch's outputs: the golden cases' y_eval through the
 * reference executor, with each parameter loaded from the golden file
 * named after it (conv1.weight <- conv1_weight.npy). */
#include "backend.h"
#include "frontend.h"
#include "testutil.h"

static ir_graph *load_block(const char *casename, rt_array *x)
{
	*x = test_golden(casename, "x");
	char path[1024];
	snprintf(path, sizeof path, "%s/tests/blocks/%s.nn", test_env("NETCC_ROOT", "."), casename);
	ir_graph *g = frontend_graph_load(path, x->dims[0]);
	ck_assert_msg(g != NULL, "%s does not load", path);
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		char file[256];
		snprintf(file, sizeof file, "%s", p->name);
		for (char *c = file; *c; c++)
			if (*c == '.')
				*c = '_';
		rt_array a = test_golden(casename, file);
		ck_assert_int_eq((int64_t)a.count, ir_shape_count(&p->shape));
		p->data = arena_array(&g->arena, a.count, sizeof(float));
		memcpy(p->data, a.data, a.count * sizeof(float));
		rt_array_free(&a);
	}
	return g;
}

static void check_eval(const char *casename)
{
	rt_array x;
	ir_graph *g = load_block(casename, &x);
	rt_array want = test_golden(casename, "y_eval");
	ck_assert_int_eq((int64_t)want.count, ir_shape_count(&g->nodes[g->outputs[0].node].shape));
	float *y = malloc(want.count * sizeof(float));
	const float *in[1] = {x.data};
	char err[256];
	ck_assert_int_eq(interp_run(g, in, &y, err, sizeof err), 0);
	ck_assert_close(y, want.data, want.count, 1e-5);
	free(y);
	rt_array_free(&want);
	rt_array_free(&x);
	ir_graph_free(g);
}

START_TEST(basic_identity_eval)
{
	check_eval("block_basic_identity");
}
END_TEST

START_TEST(basic_projection_eval)
{
	check_eval("block_basic_projection");
}
END_TEST

START_TEST(bottleneck_projection_eval)
{
	check_eval("block_bottleneck_projection");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("blocks");
	TCase *t = tcase_create("golden");
	tcase_add_test(t, basic_identity_eval);
	tcase_add_test(t, basic_projection_eval);
	tcase_add_test(t, bottleneck_projection_eval);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
