/* The model language: lexer, parser, block expansion, shape inference,
 * parameter naming, the shipped models, and every error class. */
#include <dirent.h>

#include "ast.h"
#include "frontend.h"
#include "testutil.h"

static char *captured;
static size_t captured_len;
static FILE *capture;

static void capture_start(void)
{
	capture = open_memstream(&captured, &captured_len);
	diag_set_output(capture);
}

static const char *capture_end(void)
{
	fclose(capture);
	capture = NULL;
	diag_set_output(NULL);
	return captured;
}

static ir_graph *parse(const char *text)
{
	return frontend_graph_parse("t.nn", text, strlen(text), 1);
}

/* Parses text that must fail; returns the diagnostics (free()). */
static char *parse_error(const char *text)
{
	capture_start();
	ir_graph *g = parse(text);
	ck_assert_ptr_null(g);
	return (char *)capture_end();
}

static int count_op(const ir_graph *g, ir_op op)
{
	int n = 0;
	for (int i = 0; i < g->n_nodes; i++)
		n += g->nodes[i].op == op;
	return n;
}

static const ir_node *output_node(const ir_graph *g, int i)
{
	return &g->nodes[g->outputs[i].node];
}

#define HEADER "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 4, 8, 8])\n"

/* ---- lexer ---------------------------------------------------------------- */

START_TEST(lexer_tokens_and_locations)
{
	const char *text = "version 1 # comment\r\n  conv(x, 1e-4, 0.5, \"s\") -> <= &&\n";
	diag_src src = {"t.nn", text, strlen(text)};
	arena a = {0};
	token *t = lex_source(&a, &src);
	ck_assert(tok_is(t, "version") && t->loc.line == 1 && t->loc.col == 1);
	t = t->next;
	ck_assert_int_eq(t->kind, TK_INT);
	ck_assert_int_eq(t->ival, 1);
	t = t->next;
	ck_assert(tok_is(t, "conv"));
	ck_assert_int_eq(t->loc.line, 2);
	ck_assert_int_eq(t->loc.col, 3);
	t = t->next->next->next->next; /* ( x , */
	ck_assert_int_eq(t->kind, TK_FLOAT);
	ck_assert_double_eq_tol(t->fval, 1e-4, 1e-12);
	t = t->next->next;
	ck_assert_double_eq_tol(t->fval, 0.5, 1e-12);
	t = t->next->next;
	ck_assert_int_eq(t->kind, TK_STRING);
	ck_assert_str_eq(t->str, "s");
	t = t->next->next;
	ck_assert(tok_is(t, "->"));
	ck_assert(tok_is(t->next, "<="));
	ck_assert(tok_is(t->next->next, "&&"));
	ck_assert_int_eq(t->next->next->next->kind, TK_EOF);
	arena_free(&a);
}
END_TEST

START_TEST(crlf_reads_like_lf)
{
	const char *lf = HEADER "graph {\n  y = conv(x, 4, 3, pad = 1)\n}\n";
	const char *crlf = "version 1\r\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 4, 8, 8])\r\n"
	                   "graph {\r\n  y = conv(x, 4, 3, pad = 1)\r\n}\r\n";
	ir_graph *a = parse(lf), *b = parse(crlf);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(a->n_nodes, b->n_nodes);
	ck_assert_int_eq(b->nodes[2].loc.line, 4);
	ck_assert_int_eq(b->nodes[2].loc.col, 7);
	ir_graph_free(a);
	ir_graph_free(b);
}
END_TEST

/* ---- parser and expansion ------------------------------------------------- */

START_TEST(parser_builds_blocks_with_defaults)
{
	const char *text = HEADER "block f(x, c, k = 3, s = k - 2) -> (a, b) { a = x; b = x }\n"
	                          "graph { p, q = f(x, 4)\n y = conv(p, 4, 3, pad = 1) }\n";
	diag_src src = {"t.nn", text, strlen(text)};
	arena a = {0};
	ast_file *f = parse_tokens(&a, lex_source(&a, &src));
	ck_assert_str_eq(f->model, "m");
	ck_assert_int_eq(f->n_inputs, 1);
	ck_assert_int_eq(f->inputs[0].rank, 4);
	ck_assert_ptr_nonnull(f->blocks);
	ck_assert_str_eq(f->blocks->name, "f");
	ck_assert_int_eq(f->blocks->n_params, 4);
	ck_assert_ptr_null(f->blocks->params[1].def);
	ck_assert_ptr_nonnull(f->blocks->params[3].def);
	ck_assert_int_eq(f->blocks->params[3].def->kind, EX_BINARY);
	ck_assert_int_eq(f->blocks->n_outs, 2);
	ck_assert_int_eq(f->graph->kind, ST_ASSIGN);
	ck_assert_int_eq(f->graph->n_targets, 2);
	arena_free(&a);
}
END_TEST

START_TEST(expansion_if_reads_shapes)
{
	/* The shortcut projection appears only where the channels change. */
	const char *text = "version 1\nmodel m(x: f32[N, 8, 8, 8]) -> (y: f32[N, 16, 4, 4])\n"
	                   "block b(x, c, s = 1) -> y {\n"
	                   "  h = conv(x, c, 3, s, 1, bias = false)\n"
	                   "  sc = x\n"
	                   "  if s != 1 || x.c != c { sc = conv(x, c, 1, s, bias = false) }\n"
	                   "  y = relu(h + sc)\n"
	                   "}\n"
	                   "graph { y = b(b(x, 8), 16, 2) }\n";
	ir_graph *g = parse(text);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(count_op(g, IR_OP_CONV), 3);
	ck_assert_int_eq(count_op(g, IR_OP_ADD), 2);
	ck_assert_int_eq(count_op(g, IR_OP_RELU), 2);
	ck_assert_int_ge(ir_param_find(g, "b1.conv1.weight"), 0);
	ck_assert_int_lt(ir_param_find(g, "b0.conv1.weight"), 0);
	ir_graph_free(g);
}
END_TEST

START_TEST(repeat_and_index)
{
	const char *text = HEADER "graph {\n  h = x\n  k = 0\n"
	                          "  repeat 3 as i { h = relu(h)\n k = k + i }\n"
	                          "  repeat 0 { h = relu(h) }\n"
	                          "  y = conv(h, 4 + k - 3, 3, pad = 1)\n}\n";
	ir_graph *g = parse(text);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(count_op(g, IR_OP_RELU), 3);
	ck_assert_int_eq(output_node(g, 0)->shape.d[1], 4);
	ir_graph_free(g);
}
END_TEST

START_TEST(parameter_names_follow_call_path)
{
	const char *text = HEADER "block cb(x, c) -> y { y = batchnorm(conv(x, c, 3, pad = 1)) }\n"
	                          "graph {\n  h = cb(x, 4)\n  h = cb(h, 4, name = \"second\")\n"
	                          "  y = conv(h, 4, 1, bias = false, name = \"head\")\n}\n";
	ir_graph *g = parse(text);
	ck_assert_ptr_nonnull(g);
	const char *want[] = {"cb0.conv0.weight",
	                      "cb0.conv0.bias",
	                      "cb0.batchnorm0.weight",
	                      "cb0.batchnorm0.bias",
	                      "cb0.batchnorm0.running_mean",
	                      "cb0.batchnorm0.running_var",
	                      "second.conv0.weight",
	                      "second.conv0.bias",
	                      "second.batchnorm0.weight",
	                      "second.batchnorm0.bias",
	                      "second.batchnorm0.running_mean",
	                      "second.batchnorm0.running_var",
	                      "head.weight"};
	int k = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_PARAM)
			continue;
		ck_assert_int_lt(k, 13);
		ck_assert_str_eq(n->name, want[k]);
		ck_assert_int_eq(n->pkind,
		                 k % 6 >= 4 && k < 12 ? IR_PARAM_BUFFER : IR_PARAM_WEIGHT);
		k++;
	}
	ck_assert_int_eq(k, 13);
	ir_graph_free(g);
}
END_TEST

START_TEST(keyword_and_default_attributes)
{
	const char *text = "version 1\nmodel m(x: f32[N, 2, 9, 9]) -> (y: f32[N, 2, 3, 3])\n"
	                   "graph { y = maxpool(x, kernel = 3) }\n";
	ir_graph *g = parse(text);
	ck_assert_ptr_nonnull(g);
	const ir_node *p = output_node(g, 0);
	ck_assert_int_eq(p->op, IR_OP_MAXPOOL);
	ck_assert_int_eq(p->stride, 3); /* stride defaults to the kernel */
	ck_assert_int_eq(p->pad, 0);
	ir_graph_free(g);
}
END_TEST

START_TEST(integer_arithmetic)
{
	const char *text = HEADER "graph {\n  a = 7 / 2 * 2 + 7 % 3 - -1\n"
	                          "  b = (a == 8) && !(a < 0) || false\n"
	                          "  c = 4\n  if b { c = a - 4 } else { c = 100 }\n"
	                          "  y = conv(x, c, 3, pad = 1)\n}\n";
	ir_graph *g = parse(text);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(output_node(g, 0)->shape.d[1], 4);
	ir_graph_free(g);
}
END_TEST

START_TEST(batch_binds_named_dimension)
{
	const char *text = HEADER "graph { y = conv(x, 4, 3, pad = 1) }\n";
	ir_graph *g = frontend_graph_parse("t.nn", text, strlen(text), 7);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(g->nodes[g->inputs[0].node].shape.d[0], 7);
	ck_assert_int_eq(output_node(g, 0)->shape.d[0], 7);
	ir_graph_free(g);
}
END_TEST

/* ---- shapes --------------------------------------------------------------- */

/* The shape of one operator's result, read from the error that a
 * deliberately wrong output declaration produces. */
static ir_shape one_op_shape(const char *model_in, const char *call)
{
	char text[512];
	snprintf(text, sizeof text,
	         "version 1\nmodel m(x: f32[%s]) -> (y: f32[1])\ngraph { y = %s }\n", model_in,
	         call);
	capture_start();
	ir_graph *g = parse(text);
	const char *msg = capture_end();
	ck_assert_ptr_null(g);
	const char *p = strstr(msg, "the graph makes [");
	ck_assert_msg(p != NULL, "%s", msg);
	p += strlen("the graph makes [");
	ir_shape s = {0};
	while (*p && *p != ']' && s.rank < IR_MAX_RANK) {
		s.d[s.rank++] = strtoll(p, (char **)&p, 10);
		if (*p == ',')
			p++;
	}
	free(captured);
	return s;
}

static void assert_shape(ir_shape s, int rank, int64_t a, int64_t b, int64_t c, int64_t d)
{
	ir_shape want = {.rank = rank, .d = {a, b, c, d}};
	char x[96], y[96];
	ck_assert_msg(ir_shape_eq(&s, &want), "got %s, want %s", ir_shape_str(&s, x, sizeof x),
	              ir_shape_str(&want, y, sizeof y));
}

START_TEST(shape_rules)
{
	assert_shape(one_op_shape("1, 3, 224, 224", "conv(x, 64, 7, 2, 3)"), 4, 1, 64, 112, 112);
	assert_shape(one_op_shape("1, 64, 56, 56", "conv(x, 128, 1, 2)"), 4, 1, 128, 28, 28);
	assert_shape(one_op_shape("1, 64, 112, 112", "maxpool(x, 3, 2, 1)"), 4, 1, 64, 56, 56);
	assert_shape(one_op_shape("2, 5, 7, 7", "avgpool(x, 2)"), 4, 2, 5, 3, 3);
	assert_shape(one_op_shape("2, 8, 7, 7", "subsample(x)"), 4, 2, 8, 4, 4);
	assert_shape(one_op_shape("2, 8, 7, 7", "pad_channels(x, 4, 4)"), 4, 2, 16, 7, 7);
	assert_shape(one_op_shape("2, 8, 7, 7", "global_avgpool(x)"), 4, 2, 8, 1, 1);
	assert_shape(one_op_shape("2, 8, 7, 7", "flatten(x)"), 2, 2, 392, 0, 0);
	assert_shape(one_op_shape("2, 8", "linear(x, 3)"), 2, 2, 3, 0, 0);
	assert_shape(one_op_shape("2, 8", "softmax(batchnorm(x))"), 2, 2, 8, 0, 0);
}
END_TEST

/* ---- shipped models -------------------------------------------------------- */

static ir_graph *load_model(const char *name, int64_t batch)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/models/%s.nn", test_env("NETCC_ROOT", "."), name);
	ir_graph *g = frontend_graph_load(path, batch);
	ck_assert_msg(g != NULL, "%s does not load", path);
	return g;
}

static int64_t total_params(const ir_graph *g)
{
	int64_t t = 0;
	for (int i = 0; i < g->n_nodes; i++)
		t += ir_node_param_count(g, &g->nodes[i]);
	return t;
}

static int64_t total_macs(const ir_graph *g)
{
	int64_t t = 0;
	for (int i = 0; i < g->n_nodes; i++)
		t += ir_node_macs(g, &g->nodes[i]);
	return t;
}

START_TEST(torchvision_parameter_totals)
{
	static const struct {
		const char *name;
		int64_t params;
	} want[] = {{"resnet18", 11689512},
	            {"resnet34", 21797672},
	            {"resnet50", 25557032},
	            {"resnet101", 44549160},
	            {"resnet152", 60192808}};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		ir_graph *g = load_model(want[i].name, 1);
		ck_assert_msg(total_params(g) == want[i].params,
		              "%s: %lld params, torchvision %lld", want[i].name,
		              (long long)total_params(g), (long long)want[i].params);
		ir_graph_free(g);
	}
}
END_TEST

START_TEST(resnet50_macs)
{
	ir_graph *g = load_model("resnet50", 1);
	double macs = (double)total_macs(g);
	ck_assert_msg(fabs(macs / 4.09e9 - 1) < 0.01, "ResNet-50 MACs %.4g", macs);
	ir_graph_free(g);
	g = load_model("resnet50", 4);
	ck_assert_double_eq_tol((double)total_macs(g), 4 * macs, 1);
	ir_graph_free(g);
}
END_TEST

START_TEST(cifar_models_structure)
{
	/* 6n+2 weighted layers; option A adds no parameters, so the plain twin
	 * has exactly as many. */
	static const struct {
		const char *name;
		int convs;
	} want[] = {{"resnet20", 19}, {"resnet32", 31},   {"resnet44", 43},
	            {"resnet56", 55}, {"resnet110", 109}, {"plain20", 19},
	            {"plain32", 31},  {"plain44", 43},    {"plain56", 55}};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		ir_graph *g = load_model(want[i].name, 2);
		ck_assert_int_eq(count_op(g, IR_OP_CONV), want[i].convs);
		ck_assert_int_eq(count_op(g, IR_OP_LINEAR), 1);
		bool plain = want[i].name[0] == 'p';
		ck_assert_int_eq(count_op(g, IR_OP_ADD), plain ? 0 : (want[i].convs - 1) / 2);
		ck_assert_int_eq(count_op(g, IR_OP_PAD_CHANNELS), plain ? 0 : 2);
		ck_assert_int_eq(output_node(g, 0)->shape.d[1], 10);
		ck_assert(g->train.present);
		ir_graph_free(g);
	}
	ir_graph *r = load_model("resnet20", 1), *p = load_model("plain20", 1);
	ck_assert_int_eq(total_params(r), total_params(p));
	/* The paper's 0.27M: 269722 with CIFAR's 3 input channels; one grey
	 * channel saves 2 * 16 * 3 * 3 = 288 weights of the first convolution. */
	ck_assert_int_eq(total_params(r), 269722 - 288);
	ir_graph_free(r);
	ir_graph_free(p);
}
END_TEST

START_TEST(resnet152_is_concise)
{
	char path[1024], line[512];
	snprintf(path, sizeof path, "%s/models/resnet152.nn", test_env("NETCC_ROOT", "."));
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		n += *p && *p != '\n' && *p != '#';
	}
	fclose(f);
	ck_assert_int_lt(n, 45);
}
END_TEST

START_TEST(train_section)
{
	const char *text =
	    HEADER "graph { y = conv(x, 4, 3, pad = 1) }\n"
	           "train {\n  optimizer = sgd(lr = 0.05, weight_decay = 5e-4)\n"
	           "  schedule = steps(3, 6, factor = 0.2)\n  warmup = 1\n  epochs = 9\n"
	           "  batch = 64\n}\n";
	ir_graph *g = frontend_graph_parse("t.nn", text, strlen(text), FRONTEND_BATCH_TRAIN);
	ck_assert_ptr_nonnull(g);
	ck_assert(g->train.present);
	ck_assert_double_eq_tol(g->train.lr, 0.05, 1e-12);
	ck_assert_double_eq_tol(g->train.momentum, 0.9, 1e-12);
	ck_assert_double_eq_tol(g->train.weight_decay, 5e-4, 1e-12);
	ck_assert_int_eq(g->train.sched, IR_SCHED_STEPS);
	ck_assert_int_eq(g->train.n_steps, 2);
	ck_assert_int_eq(g->train.steps[1], 6);
	ck_assert_double_eq_tol(g->train.factor, 0.2, 1e-12);
	ck_assert_int_eq(g->train.warmup, 1);
	ck_assert_int_eq(g->train.epochs, 9);
	ck_assert_int_eq(g->batch, 64); /* the named batch comes from the section */
	ir_graph_free(g);
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

START_TEST(error_has_caret_and_chain)
{
	char *msg = parse_error(HEADER "block b(x) -> y { y = x + conv(x, 5, 1) }\n"
	                               "graph {\n  y = b(x)\n}\n");
	ck_assert_msg(strstr(msg, "t.nn:3:25: error: add: shapes differ") != NULL, "%s", msg);
	ck_assert_msg(strstr(msg, "    block b(x) -> y { y = x + conv(x, 5, 1) }\n"
	                          "                            ^\n") != NULL,
	              "%s", msg);
	ck_assert_msg(strstr(msg, "t.nn:5:7: note: in block 'b' called from here") != NULL, "%s",
	              msg);
	free(msg);
}
END_TEST

START_TEST(errors_do_not_leak_state)
{
	/* An error unwinds through the expander; the next parse must be clean. */
	for (int i = 0; i < 3; i++)
		free(parse_error(HEADER "graph { y = conv(x, 4, 99) }\n"));
	ir_graph *g = parse(HEADER "graph { y = conv(x, 4, 3, pad = 1) }\n");
	ck_assert_ptr_nonnull(g);
	ir_graph_free(g);
}
END_TEST

/* Each tests/errors/NAME.nn must fail with exactly NAME.err. */
START_TEST(error_fixtures)
{
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/tests/errors", test_env("NETCC_ROOT", "."));
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".nn") != 0)
			continue;
		char path[2048], errpath[2048];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		snprintf(errpath, sizeof errpath, "%s/%.*s.err", dir, (int)(len - 3), e->d_name);
		char *text = test_slurp(path, NULL), *want = test_slurp(errpath, NULL);
		capture_start();
		ir_graph *g = frontend_graph_parse(e->d_name, text, strlen(text), 1);
		const char *got = capture_end();
		ck_assert_msg(g == NULL, "%s: parsed without error", e->d_name);
		ck_assert_msg(strcmp(got, want) == 0, "%s:\n--- got\n%s--- want\n%s", e->d_name,
		              got, want);
		free(captured);
		free(text);
		free(want);
		n++;
	}
	closedir(d);
	ck_assert_int_ge(n, 40);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("frontend");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, lexer_tokens_and_locations);
	tcase_add_test(t, crlf_reads_like_lf);
	tcase_add_test(t, parser_builds_blocks_with_defaults);
	tcase_add_test(t, expansion_if_reads_shapes);
	tcase_add_test(t, repeat_and_index);
	tcase_add_test(t, parameter_names_follow_call_path);
	tcase_add_test(t, keyword_and_default_attributes);
	tcase_add_test(t, integer_arithmetic);
	tcase_add_test(t, batch_binds_named_dimension);
	tcase_add_test(t, shape_rules);
	tcase_add_test(t, torchvision_parameter_totals);
	tcase_add_test(t, resnet50_macs);
	tcase_add_test(t, cifar_models_structure);
	tcase_add_test(t, resnet152_is_concise);
	tcase_add_test(t, train_section);
	tcase_add_test(t, error_has_caret_and_chain);
	tcase_add_test(t, errors_do_not_leak_state);
	tcase_add_test(t, error_fixtures);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
