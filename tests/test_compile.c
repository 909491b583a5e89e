/* `netcc compile` end to end: every model's shared library against the
 * reference executor, the golden blocks through a library, the generated
 * header in C and C++ programs, two libraries in one program, instances in
 * threads, the library's error codes, the other emit kinds, the JIT, and
 * code for every target, run natively or under qemu.
 *
 * Weights are He-initialised, then every BatchNorm gets random running
 * statistics and affine parameters: with the identity BatchNorm that
 * initialisation leaves, folding it into the convolutions would change
 * nothing and a broken fold would go unseen. */
#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "driver.h"
#include "frontend.h"
#include "testutil.h"

/* Each test works in its own directory under one per test case: a failed
 * test ends without its checked teardown, so the case's unchecked teardown,
 * which runs in the parent process whatever happened, removes the rest. */
static char casedir[128], tmpdir[256];

static void remove_tree(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void case_setup(void)
{
	snprintf(casedir, sizeof casedir, "/tmp/netcc_compile_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(casedir));
}

static void case_teardown(void)
{
	remove_tree(casedir);
}

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/t_XXXXXX", casedir);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	remove_tree(tmpdir);
}

/* tmpdir/name, in a rotating set of buffers so several can be arguments of
 * one call; a path kept longer is copied with TMP_PATH. */
static const char *tmp(const char *fmt, ...)
{
	static char bufs[8][1024];
	static int next;
	char name[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	char *b = bufs[next++ % 8];
	snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
	return b;
}

#define TMP_PATH(var, ...)                                                                         \
	char var[1024];                                                                            \
	snprintf(var, sizeof var, "%s", tmp(__VA_ARGS__))

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (len)
			*len = 0;
		return strdup("");
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = 0;
	fclose(f);
	if (len)
		*len = got;
	return buf;
}

/* Runs a shell command from the repository root with stdout and stderr
 * captured together into *log (free it); returns the exit status. */
static int sh(char **log, const char *fmt, ...)
{
	char cmd[8192], line[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	const char *lp = tmp("log.txt");
	snprintf(cmd, sizeof cmd, "cd '%s' && { %s ; } >'%s' 2>&1", test_env("NETCC_ROOT", "."),
	         line, lp);
	int st = system(cmd);
	ck_assert_msg(WIFEXITED(st), "%s: killed by a signal", line);
	*log = slurp(lp, NULL);
	return WEXITSTATUS(st);
}

static const char *netcc_bin(void)
{
	return test_env("NETCC_BIN", "build/netcc");
}

/* ---- models, weights, references ---------------------------------------- */

static ir_graph *load(const char *path, int64_t batch)
{
	char full[1024];
	snprintf(full, sizeof full, "%s/%s", test_env("NETCC_ROOT", "."), path);
	ir_graph *g = frontend_graph_load(full, batch);
	ck_assert_msg(g != NULL, "%s does not load", full);
	return g;
}

/* He weights, then BatchNorm statistics and affine parameters, and any
 * conv or linear bias, drawn at random. */
static void randomise(ir_graph *g, uint64_t seed)
{
	ir_graph_init_he(g, seed);
	rt_rng r;
	rt_rng_seed(&r, seed ^ 0x5bd1e995u);
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op == IR_OP_BATCHNORM) {
			float *gamma = g->nodes[n->in[1]].data, *beta = g->nodes[n->in[2]].data;
			float *mean = g->nodes[n->in[3]].data, *var = g->nodes[n->in[4]].data;
			int64_t c = g->nodes[n->in[1]].shape.d[0];
			for (int64_t k = 0; k < c; k++) {
				gamma[k] = 0.5f + rt_rng_uniform(&r);
				beta[k] = 0.2f * rt_rng_normal(&r);
				mean[k] = 0.5f * rt_rng_normal(&r);
				var[k] = 0.5f + 1.5f * rt_rng_uniform(&r);
			}
		} else if ((n->op == IR_OP_CONV || n->op == IR_OP_LINEAR) && n->bias) {
			const ir_node *b = &g->nodes[n->in[2]];
			for (int64_t k = 0; k < ir_shape_count(&b->shape); k++)
				b->data[k] = 0.2f * rt_rng_normal(&r);
		}
	}
}

static size_t input_count(const ir_graph *g)
{
	return (size_t)ir_shape_count(&g->nodes[g->inputs[0].node].shape);
}

static size_t output_count(const ir_graph *g)
{
	return (size_t)ir_shape_count(&g->nodes[g->outputs[0].node].shape);
}

static float *random_input(size_t count, uint64_t seed)
{
	rt_rng r;
	rt_rng_seed(&r, seed);
	float *x = malloc(count * sizeof(float));
	for (size_t i = 0; i < count; i++)
		x[i] = rt_rng_normal(&r);
	return x;
}

static float *reference(const ir_graph *g, const float *x)
{
	float *y = malloc(output_count(g) * sizeof(float));
	const float *in[1] = {x};
	char err[256];
	ck_assert_msg(interp_run(g, in, &y, err, sizeof err) == 0, "reference: %s", err);
	return y;
}

static void save_weights(const ir_graph *g, const char *path)
{
	ck_assert_msg(backend_weights_save(g, path) == 0, "cannot write %s", path);
}

static void write_floats(const char *path, const float *x, size_t n)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(x, sizeof(float), n, f), n);
	ck_assert_int_eq(fclose(f), 0);
}

static float *read_floats(const char *path, size_t n)
{
	size_t len;
	char *b = slurp(path, &len);
	ck_assert_msg(len == n * sizeof(float), "%s: %zu bytes, expected %zu", path, len,
	              n * sizeof(float));
	return (float *)b;
}

/* `netcc compile MODEL --batch B --weights W -o tmpdir/libNAME.so --name NAME EXTRA`;
 * fails the test with netcc's output if it does not succeed. */
static void compile(const char *model, int64_t batch, const char *weights, const char *name,
                    const char *extra)
{
	char *log;
	int rc = sh(&log, "'%s' compile %s --batch %lld --weights '%s' -o '%s' --name %s %s",
	            netcc_bin(), model, (long long)batch, weights, tmp("lib%s.so", name), name,
	            extra ? extra : "");
	ck_assert_msg(rc == 0, "netcc compile %s exited %d:\n%s", model, rc, log);
	free(log);
}

/* ---- a generated library, opened in this process --------------------------- */

typedef struct lib {
	void *so;
	void *(*create)(void);
	void (*destroy)(void *m);
	int (*load_weights)(void *m, const char *path);
	int (*infer)(void *m, const float *in, float *out);
	int (*run)(void *m, const float *const *in, float *const *out);
	const char *(*error)(const void *m);
	const float *(*embedded_weights)(void);
	int (*read_weights)(const char *path, float *weights);
	int (*infer_static)(const float *weights, void *workspace, const float *in, float *out);
} lib;

static void *sym(void *so, const char *name, const char *suffix)
{
	char s[256];
	snprintf(s, sizeof s, "%s_%s", name, suffix);
	void *p = dlsym(so, s);
	ck_assert_msg(p != NULL, "the library does not export %s", s);
	return p;
}

static lib lib_open(const char *name)
{
	lib l;
	const char *path = tmp("lib%s.so", name);
	l.so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(l.so != NULL, "dlopen %s: %s", path, dlerror());
	l.create = (void *(*)(void))sym(l.so, name, "create");
	l.destroy = (void (*)(void *))sym(l.so, name, "destroy");
	l.load_weights = (int (*)(void *, const char *))sym(l.so, name, "load_weights");
	l.infer = (int (*)(void *, const float *, float *))sym(l.so, name, "infer");
	l.run = (int (*)(void *, const float *const *, float *const *))sym(l.so, name, "run");
	l.error = (const char *(*)(const void *))sym(l.so, name, "error");
	l.embedded_weights = (const float *(*)(void))sym(l.so, name, "embedded_weights");
	l.read_weights = (int (*)(const char *, float *))sym(l.so, name, "read_weights");
	l.infer_static =
	    (int (*)(const float *, void *, const float *, float *))sym(l.so, name, "infer_static");
	return l;
}

static void lib_close(lib *l)
{
	ck_assert_int_eq(dlclose(l->so), 0);
}

static void infer_ok(const lib *l, void *m, const float *x, float *y)
{
	int rc = l->infer(m, x, y);
	ck_assert_msg(rc == RT_OK, "infer: %d: %s", rc, l->error(m));
}

static void load_ok(const lib *l, void *m, const char *path)
{
	int rc = l->load_weights(m, path);
	ck_assert_msg(rc == RT_OK, "load_weights %s: %d: %s", path, rc, l->error(m));
}

/* ---- 1. every model: library == reference executor ----------------------- */

static const struct model_case {
	const char *name;
	int64_t batch;
	bool big; /* 224x224: weights in a file, not embedded */
} models[] = {
    {"resnet20", 2, false},  {"resnet32", 2, false}, {"resnet44", 2, false}, {"resnet56", 2, false},
    {"resnet110", 2, false}, {"plain20", 2, false},  {"plain32", 2, false},  {"plain44", 2, false},
    {"plain56", 2, false},   {"resnet18", 1, true},  {"resnet34", 1, true},  {"resnet50", 1, true},
    {"resnet101", 1, true},  {"resnet152", 1, true}, {"plain18", 1, true},   {"plain34", 1, true},
};

START_TEST(model_matches_reference)
{
	const struct model_case *mc = &models[_i];
	/* The reference executor's plain loops run the 224x224 models for
	 * minutes under ASan; resnet18 alone covers that family there (the
	 * plain build checks them all). */
	if (test_sanitized() && mc->big && strcmp(mc->name, "resnet18") != 0)
		return;
	char path[256];
	snprintf(path, sizeof path, "models/%s.nn", mc->name);
	ir_graph *g = load(path, mc->batch);
	randomise(g, 1000 + (uint64_t)_i);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g), ny = output_count(g);
	float *x = random_input(nx, 77 + (uint64_t)_i);
	float *want = reference(g, x);
	ir_graph_free(g);

	compile(path, mc->batch, w, mc->name, mc->big ? "--weights-file" : NULL);
	lib l = lib_open(mc->name);
	void *m = l.create();
	ck_assert_ptr_nonnull(m);
	float *y = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
	if (mc->big) {
		ck_assert_ptr_null(l.embedded_weights());
		/* The file the compiler wrote beside the library, then the one
		 * the model was compiled from: the same numbers either way. */
		load_ok(&l, m, tmp("%s.safetensors", mc->name));
		infer_ok(&l, m, x, y);
		load_ok(&l, m, w);
		infer_ok(&l, m, x, y2);
		ck_assert_msg(memcmp(y, y2, ny * sizeof(float)) == 0,
		              "the two weights files give different outputs");
	} else {
		ck_assert_ptr_nonnull(l.embedded_weights());
		infer_ok(&l, m, x, y);
		/* Loading the same weights prepares them in the library (float
		 * folding) rather than at compile time (the reference executor
		 * folds in double): they agree to rounding, measured below 1e-6. */
		load_ok(&l, m, w);
		infer_ok(&l, m, x, y2);
		ck_assert_close(y2, y, ny, 1e-5);
	}
	double e = test_rel_err(y, want, ny);
	ck_assert_msg(e < 1e-4, "%s: relative error %.3g against the reference executor", mc->name,
	              e);
	l.destroy(m);
	lib_close(&l);
	free(y);
	free(y2);
	free(x);
	free(want);
}
END_TEST

/* ---- 2. golden blocks through a library ------------------------------------ */

static ir_graph *load_block(const char *casename, rt_array *x)
{
	*x = test_golden(casename, "x");
	char path[256];
	snprintf(path, sizeof path, "tests/blocks/%s.nn", casename);
	ir_graph *g = load(path, x->dims[0]);
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

static const char *const blocks[] = {"block_basic_identity", "block_basic_projection",
                                     "block_bottleneck_projection"};

START_TEST(golden_block_library)
{
	const char *casename = blocks[_i];
	rt_array x;
	ir_graph *g = load_block(casename, &x);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t ny = output_count(g);
	ir_graph_free(g);
	rt_array want = test_golden(casename, "y_eval");
	ck_assert_uint_eq(want.count, ny);

	char model[256];
	snprintf(model, sizeof model, "tests/blocks/%s.nn", casename);
	compile(model, x.dims[0], w, "blk", NULL);
	lib l = lib_open("blk");
	void *m = l.create();
	ck_assert_ptr_nonnull(m);
	float *y = malloc(ny * sizeof(float));
	infer_ok(&l, m, x.data, y);
	/* float32 against PyTorch's float32: the GEMMs sum in another order,
	 * which measures below 1e-6 here. */
	ck_assert_close(y, want.data, ny, 1e-5);
	l.destroy(m);
	lib_close(&l);
	free(y);
	rt_array_free(&want);
	rt_array_free(&x);
}
END_TEST

/* ---- 3. the header, from C99 and C++11 ------------------------------------- */

/* A program in the common subset of C99 and C++11 that uses everything the
 * header declares: argv[1] the weights file, argv[2] the input, argv[3]
 * where the outputs go (embedded weights, then loaded ones). */
static const char use_program[] =
    "#include <stdint.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"hdr.h\"\n"
    "\n"
    "static float in[HDR_INPUT_SIZE], out[HDR_OUTPUT_SIZE], out2[HDR_OUTPUT_SIZE];\n"
    "static float out3[HDR_OUTPUT_SIZE];\n"
    "\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "	const int codes[] = {HDR_OK, HDR_ERR_ARG, HDR_ERR_IO, HDR_ERR_WEIGHTS,\n"
    "			     HDR_ERR_NO_WEIGHTS, HDR_ERR_NOMEM, HDR_ERR_CPU};\n"
    "	size_t i, j;\n"
    "	for (i = 0; i < sizeof codes / sizeof *codes; i++)\n"
    "		for (j = 0; j < i; j++)\n"
    "			if (codes[i] == codes[j] || codes[0] != 0)\n"
    "				return 20;\n"
    "	if (argc != 4 || HDR_BATCH != 2 || HDR_INPUT_N != 2 || HDR_INPUT_C != 1 ||\n"
    "	    HDR_INPUT_H != 28 || HDR_INPUT_W != 28 || HDR_OUTPUT_N != 2 ||\n"
    "	    HDR_OUTPUT_FEATURES != 10 ||\n"
    "	    HDR_INPUT_SIZE != HDR_INPUT_N * HDR_INPUT_C * HDR_INPUT_H * HDR_INPUT_W ||\n"
    "	    HDR_OUTPUT_SIZE != HDR_OUTPUT_N * HDR_OUTPUT_FEATURES)\n"
    "		return 21;\n"
    "	FILE *f = fopen(argv[2], \"rb\");\n"
    "	if (!f || fread(in, sizeof(float), HDR_INPUT_SIZE, f) != HDR_INPUT_SIZE)\n"
    "		return 22;\n"
    "	fclose(f);\n"
    "	hdr *m = hdr_create();\n"
    "	if (!m)\n"
    "		return 23;\n"
    "	if (hdr_infer(m, in, out) != HDR_OK) {\n"
    "		fprintf(stderr, \"infer: %s\\n\", hdr_error(m));\n"
    "		return 24;\n"
    "	}\n"
    "	const float *ins[1];\n"
    "	float *outs[1];\n"
    "	ins[0] = in;\n"
    "	outs[0] = out2;\n"
    "	if (hdr_run(m, ins, outs) != HDR_OK || memcmp(out, out2, sizeof out) != 0)\n"
    "		return 25;\n"
    "	if (hdr_infer(m, NULL, out2) != HDR_ERR_ARG || !hdr_error(m)[0])\n"
    "		return 26;\n"
    "	/* one thread gives the same bits as the default */\n"
    "	if (!HDR_HAS_THREADS || hdr_set_threads(m, 0) != HDR_ERR_ARG ||\n"
    "	    hdr_set_threads(m, 1) != HDR_OK || hdr_infer(m, in, out2) != HDR_OK ||\n"
    "	    memcmp(out, out2, sizeof out) != 0)\n"
    "		return 29;\n"
    "	unsigned char *raw = (unsigned char *)malloc(HDR_WORKSPACE_SIZE + HDR_WORKSPACE_ALIGN);\n"
    "	float *w = (float *)malloc(HDR_WEIGHTS_SIZE);\n"
    "	if (!raw || !w)\n"
    "		return 27;\n"
    "	void *ws = raw + (HDR_WORKSPACE_ALIGN - (uintptr_t)raw % HDR_WORKSPACE_ALIGN);\n"
    "	const float *emb = hdr_embedded_weights();\n"
    "	if (!emb || hdr_infer_static(emb, ws, in, out3) != HDR_OK ||\n"
    "	    memcmp(out, out3, sizeof out) != 0)\n"
    "		return 28;\n"
    "	if (hdr_read_weights(argv[1], w) != HDR_OK ||\n"
    "	    hdr_infer_static(w, ws, in, out3) != HDR_OK)\n"
    "		return 29;\n"
    "	if (hdr_load_weights(m, argv[1]) != HDR_OK || hdr_infer(m, in, out2) != HDR_OK ||\n"
    "	    memcmp(out2, out3, sizeof out2) != 0)\n"
    "		return 30;\n"
    "	if (hdr_load_weights(m, \"/nonexistent/w.safetensors\") != HDR_ERR_IO ||\n"
    "	    hdr_infer(m, in, out2) != HDR_ERR_NO_WEIGHTS)\n"
    "		return 31;\n"
    "	hdr_destroy(m);\n"
    "	hdr_destroy(NULL);\n"
    "	free(raw);\n"
    "	free(w);\n"
    "	f = fopen(argv[3], \"wb\");\n"
    "	if (!f || fwrite(out, sizeof(float), HDR_OUTPUT_SIZE, f) != HDR_OUTPUT_SIZE ||\n"
    "	    fwrite(out3, sizeof(float), HDR_OUTPUT_SIZE, f) != HDR_OUTPUT_SIZE ||\n"
    "	    fclose(f) != 0)\n"
    "		return 32;\n"
    "	printf(\"ok %s\\n\", HDR_TARGET);\n"
    "	return 0;\n"
    "}\n";

/* Every identifier the header declares (hdr_xxx followed by '(' and
 * HDR_XXX) must occur in the program, so a function or macro added to the
 * header without a use here fails this test rather than going unchecked. */
static void check_uses_everything(const char *header, const char *program)
{
	int found = 0;
	for (const char *p = header; *p; p++) {
		bool fn = strncmp(p, "hdr_", 4) == 0, mac = strncmp(p, "HDR_", 4) == 0;
		if ((!fn && !mac) ||
		    (p > header && (isalnum((unsigned char)p[-1]) || p[-1] == '_')))
			continue;
		size_t n = 0;
		while (isalnum((unsigned char)p[n]) || p[n] == '_')
			n++;
		char id[128];
		snprintf(id, sizeof id, "%.*s", (int)n, p);
		p += n - 1;
		if (!strcmp(id, "HDR_H") || (fn && p[1] != '('))
			continue;
		found++;
		const char *q = program;
		bool used = false;
		while (!used && (q = strstr(q, id)) != NULL) {
			used = !isalnum((unsigned char)q[n]) && q[n] != '_';
			q += n;
		}
		ck_assert_msg(used, "the header declares %s, which the test program does not use",
		              id);
	}
	ck_assert_int_ge(found, 20);
}

START_TEST(header_compiles_as_c99_and_cpp11)
{
	char *log;
	ck_assert_msg(sh(&log, "command -v c++") == 0,
	              "no C++ compiler (c++) on PATH: the header's C++ check cannot run; install "
	              "g++");
	free(log);
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 31);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	float *x = random_input(input_count(g), 32);
	float *want = reference(g, x);
	size_t ny = output_count(g);
	write_floats(tmp("x.bin"), x, input_count(g));
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "hdr", NULL);

	char *header = slurp(tmp("hdr.h"), NULL);
	ck_assert_ptr_nonnull(strstr(header, "#ifdef __cplusplus"));
	check_uses_everything(header, use_program);
	free(header);
	FILE *f = fopen(tmp("use.c"), "w");
	ck_assert_ptr_nonnull(f);
	fputs(use_program, f);
	ck_assert_int_eq(fclose(f), 0);

	static const char *const builds[][2] = {
	    {"cc -std=c99 -Wall -Wextra -Werror -pedantic -x c", "use_c"},
	    {"c++ -std=c++11 -Wall -Wextra -Werror -pedantic -x c++", "use_cpp"},
	};
	for (int k = 0; k < 2; k++) {
		int rc =
		    sh(&log, "%s -I'%s' '%s' -x none -o '%s' '%s' -Wl,-rpath,'%s'", builds[k][0],
		       tmpdir, tmp("use.c"), tmp("%s", builds[k][1]), tmp("libhdr.so"), tmpdir);
		ck_assert_msg(rc == 0, "%s rejects the program using hdr.h:\n%s", builds[k][0],
		              log);
		free(log);
		TMP_PATH(yp, "y_%s.bin", builds[k][1]);
		rc = sh(&log, "'%s' '%s' '%s' '%s'", tmp("%s", builds[k][1]), w, tmp("x.bin"), yp);
		ck_assert_msg(rc == 0, "%s exited %d:\n%s", builds[k][1], rc, log);
		char ok[96], err[256];
		backend_target native;
		ck_assert(backend_target_get("native", &native, err, sizeof err) == 0);
		snprintf(ok, sizeof ok, "ok %s\n", native.name);
		ck_assert_str_eq(log, ok);
		free(log);
		float *y = read_floats(yp, 2 * ny);
		ck_assert_close(y, want, ny, 1e-4);
		ck_assert_close(y + ny, want, ny, 1e-4);
		free(y);
	}
	free(x);
	free(want);
}
END_TEST

/* NAME_infer_static runs in the caller's memory: tests/noalloc_main.c counts
 * what it allocates, with the allocator interposed. */
START_TEST(infer_static_allocates_nothing)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 5);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "na", NULL);
	char *log;
	int rc = sh(&log,
	            "cc -std=c11 -Wall -Wextra -Werror -I'%s' tests/noalloc_main.c -o '%s' '%s' "
	            "-Wl,-rpath,'%s'",
	            tmpdir, tmp("noalloc"), tmp("libna.so"), tmpdir);
	ck_assert_msg(rc == 0, "building tests/noalloc_main.c:\n%s", log);
	free(log);
	rc = sh(&log, "'%s'", tmp("noalloc"));
	ck_assert_msg(rc == 0, "noalloc exited %d:\n%s", rc, log);
	ck_assert_ptr_nonnull(strstr(log, "allocations in infer_static 0, in na_create "));
	ck_assert_ptr_null(strstr(log, "in na_create 0\n"));
	free(log);
}
END_TEST

/* ---- 4. two libraries in one program ------------------------------------------ */

static const char two_program[] =
    "#include <stdio.h>\n"
    "#include \"a.h\"\n"
    "#include \"b.h\"\n"
    "\n"
    "static float in[A_INPUT_SIZE], ya[A_OUTPUT_SIZE], yb[B_OUTPUT_SIZE];\n"
    "\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "	FILE *f = fopen(argv[1], \"rb\");\n"
    "	if (argc != 3 || !f || fread(in, sizeof(float), A_INPUT_SIZE, f) != A_INPUT_SIZE)\n"
    "		return 20;\n"
    "	fclose(f);\n"
    "	a *ma = a_create();\n"
    "	b *mb = b_create();\n"
    "	if (!ma || !mb)\n"
    "		return 21;\n"
    "	/* interleaved, so one library's state cannot hide in the other's */\n"
    "	if (a_infer(ma, in, ya) != A_OK || b_infer(mb, in, yb) != B_OK ||\n"
    "	    a_infer(ma, in, ya) != A_OK) {\n"
    "		fprintf(stderr, \"%s%s\\n\", a_error(ma), b_error(mb));\n"
    "		return 22;\n"
    "	}\n"
    "	a_destroy(ma);\n"
    "	b_destroy(mb);\n"
    "	f = fopen(argv[2], \"wb\");\n"
    "	if (!f || fwrite(ya, sizeof(float), A_OUTPUT_SIZE, f) != A_OUTPUT_SIZE ||\n"
    "	    fwrite(yb, sizeof(float), B_OUTPUT_SIZE, f) != B_OUTPUT_SIZE || fclose(f) != 0)\n"
    "		return 23;\n"
    "	return 0;\n"
    "}\n";

START_TEST(two_libraries_in_one_program)
{
	static const char *const names[2] = {"a", "b"};
	static const char *const files[2] = {"models/resnet20.nn", "models/plain20.nn"};
	float *x = random_input(2 * 28 * 28, 41);
	write_floats(tmp("x.bin"), x, 2 * 28 * 28);
	float *want[2];
	size_t ny = 0;
	for (int k = 0; k < 2; k++) {
		ir_graph *g = load(files[k], 2);
		ck_assert_uint_eq(input_count(g), 2 * 28 * 28);
		randomise(g, 42 + (uint64_t)k);
		TMP_PATH(w, "w_%s.safetensors", names[k]);
		save_weights(g, w);
		want[k] = reference(g, x);
		ny = output_count(g);
		ir_graph_free(g);
		compile(files[k], 2, w, names[k], NULL);
	}
	FILE *f = fopen(tmp("two.c"), "w");
	ck_assert_ptr_nonnull(f);
	fputs(two_program, f);
	ck_assert_int_eq(fclose(f), 0);
	char *log;
	int rc = sh(&log,
	            "cc -std=c99 -Wall -Wextra -Werror -pedantic -I'%s' '%s' -o '%s' '%s' '%s' "
	            "-Wl,-rpath,'%s'",
	            tmpdir, tmp("two.c"), tmp("two"), tmp("liba.so"), tmp("libb.so"), tmpdir);
	ck_assert_msg(rc == 0, "linking a and b into one program:\n%s", log);
	free(log);
	/* each library exports its own API and nothing else: the runtime
	 * inside stays private, so the two copies cannot bind to each other */
	for (int k = 0; k < 2; k++) {
		rc = sh(&log, "nm -D --defined-only '%s' | awk '{print $3}' | grep -v '^_'",
		        tmp("lib%s.so", names[k]));
		ck_assert_msg(rc == 0, "nm: %s", log);
		int n = 0;
		for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"), n++)
			ck_assert_msg(line[0] == names[k][0] && line[1] == '_',
			              "lib%s.so exports %s", names[k], line);
		ck_assert_int_ge(n, 9);
		free(log);
	}
	rc = sh(&log, "'%s' '%s' '%s'", tmp("two"), tmp("x.bin"), tmp("y.bin"));
	ck_assert_msg(rc == 0, "the program exited %d:\n%s", rc, log);
	free(log);
	float *y = read_floats(tmp("y.bin"), 2 * ny);
	ck_assert_close(y, want[0], ny, 1e-4);
	ck_assert_close(y + ny, want[1], ny, 1e-4);
	/* different weights: equal outputs would mean one library ran twice */
	ck_assert(test_rel_err(y, y + ny, ny) > 1e-2);
	free(y);
	free(want[0]);
	free(want[1]);
	free(x);
}
END_TEST

/* ---- 5. instances in threads ----------------------------------------------------- */

enum { REPEATS = 4 };

typedef struct worker {
	const lib *l;
	const float *x, *want;
	size_t ny;
	int mismatches, failures;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	void *m = w->l->create();
	float *y = malloc(w->ny * sizeof(float));
	if (!m || !y) {
		w->failures++;
	} else {
		for (int r = 0; r < REPEATS; r++) {
			if (w->l->infer(m, w->x, y) != RT_OK)
				w->failures++;
			else if (memcmp(y, w->want, w->ny * sizeof(float)) != 0)
				w->mismatches++;
		}
	}
	free(y);
	w->l->destroy(m);
	return NULL;
}

START_TEST(instances_in_threads_agree)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 51);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g), ny = output_count(g);
	/* each thread its own input, so outputs crossing over would show */
	float *x[2] = {random_input(nx, 52), random_input(nx, 53)};
	float *want = reference(g, x[0]);
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "thr", NULL);
	lib l = lib_open("thr");

	float *single[2];
	void *m = l.create();
	ck_assert_ptr_nonnull(m);
	for (int k = 0; k < 2; k++) {
		single[k] = malloc(ny * sizeof(float));
		infer_ok(&l, m, x[k], single[k]);
	}
	l.destroy(m);
	ck_assert_close(single[0], want, ny, 1e-4);
	ck_assert(test_rel_err(single[0], single[1], ny) > 1e-3);

	for (int round = 0; round < 3; round++) {
		worker wk[2];
		pthread_t t[2];
		for (int k = 0; k < 2; k++) {
			wk[k] = (worker){.l = &l, .x = x[k], .want = single[k], .ny = ny};
			ck_assert_int_eq(pthread_create(&t[k], NULL, work, &wk[k]), 0);
		}
		for (int k = 0; k < 2; k++) {
			ck_assert_int_eq(pthread_join(t[k], NULL), 0);
			ck_assert_msg(wk[k].failures == 0, "round %d thread %d: infer failed",
			              round, k);
			ck_assert_msg(wk[k].mismatches == 0,
			              "round %d thread %d: %d of %d outputs differ from one "
			              "instance's",
			              round, k, wk[k].mismatches, REPEATS);
		}
	}
	lib_close(&l);
	for (int k = 0; k < 2; k++) {
		free(single[k]);
		free(x[k]);
	}
	free(want);
}
END_TEST

/* ---- 6. the library's errors -------------------------------------------------------- */

static void expect_error(const lib *l, void *m, int rc, int want, const char *what,
                         const char *mention1, const char *mention2)
{
	const char *e = l->error(m);
	ck_assert_ptr_nonnull(e);
	ck_assert_msg(rc == want, "%s: code %d, expected %d (%s)", what, rc, want, e);
	ck_assert_msg(strstr(e, mention1) != NULL, "%s: '%s' does not mention '%s'", what, e,
	              mention1);
	ck_assert_msg(!mention2 || strstr(e, mention2) != NULL, "%s: '%s' does not mention '%s'",
	              what, e, mention2);
}

/* After a failed load the instance has no weights: inference says so and
 * repeats why the load failed. */
static void expect_no_weights(const lib *l, void *m, const float *x, float *y, size_t ny,
                              const char *why)
{
	memset(y, 0x7f, ny * sizeof(float));
	int rc = l->infer(m, x, y);
	expect_error(l, m, rc, RT_ERR_NO_WEIGHTS, "infer after a failed load", "load_weights", why);
	ck_assert_msg(((unsigned char *)y)[0] == 0x7f, "infer wrote an output without weights");
}

START_TEST(library_errors)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 61);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t ny = output_count(g);
	float *x = random_input(input_count(g), 62);
	float *want = reference(g, x);
	/* the same weights with a NaN, and with a negative running variance:
	 * what netcc's own loader refuses, the library refuses too */
	float *first = NULL, *var = NULL;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *p = &g->nodes[i];
		size_t len = p->op == IR_OP_PARAM ? strlen(p->name) : 0;
		if (len && !first)
			first = p->data;
		if (len > 11 && !strcmp(p->name + len - 11, "running_var") && !var)
			var = p->data;
	}
	ck_assert(first && var);
	float keep = first[3];
	first[3] = NAN;
	save_weights(g, tmp("nan.safetensors"));
	first[3] = keep;
	var[1] = -0.5f;
	save_weights(g, tmp("negvar.safetensors"));
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "err", "--weights-file");

	/* weights for other models: resnet32 has every resnet20 tensor and
	 * more; resnet18's first convolution has another shape */
	char *log;
	int rc =
	    sh(&log, "'%s' init models/resnet32.nn -o '%s' && '%s' init models/resnet18.nn -o '%s'",
	       netcc_bin(), tmp("r32.safetensors"), netcc_bin(), tmp("r18.safetensors"));
	ck_assert_msg(rc == 0, "%s", log);
	free(log);
	/* a truncated copy of the right file, and a file that is no safetensors */
	size_t len;
	char *image = slurp(w, &len);
	FILE *f = fopen(tmp("trunc.safetensors"), "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(image, 1, len - 100, f), len - 100);
	ck_assert_int_eq(fclose(f), 0);
	free(image);

	lib l = lib_open("err");
	float *y = malloc(ny * sizeof(float));
	void *m = l.create();
	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_null(l.embedded_weights());
	ck_assert_str_eq(l.error(m), "");
	/* a --weights-file library before any load */
	expect_error(&l, m, l.infer(m, x, y), RT_ERR_NO_WEIGHTS, "infer before load_weights",
	             "load_weights", NULL);

	TMP_PATH(missing, "nonexistent.safetensors");
	expect_error(&l, m, l.load_weights(m, missing), RT_ERR_IO, "missing file", missing, NULL);
	expect_no_weights(&l, m, x, y, ny, missing);

	load_ok(&l, m, w);
	infer_ok(&l, m, x, y);
	ck_assert_close(y, want, ny, 1e-4);

	TMP_PATH(tr, "trunc.safetensors");
	expect_error(&l, m, l.load_weights(m, tr), RT_ERR_IO, "truncated file", tr, "linear0");
	expect_no_weights(&l, m, x, y, ny, tr);

	TMP_PATH(r18, "r18.safetensors");
	expect_error(&l, m, l.load_weights(m, r18), RT_ERR_WEIGHTS, "resnet18's weights", r18,
	             "cbr0.conv0.weight");
	expect_no_weights(&l, m, x, y, ny, "cbr0.conv0.weight");

	TMP_PATH(r32, "r32.safetensors");
	expect_error(&l, m, l.load_weights(m, r32), RT_ERR_WEIGHTS, "resnet32's weights", r32,
	             NULL);
	expect_no_weights(&l, m, x, y, ny, r32);

	const char *npy = "examples/data/ankle_boot.npy";
	char npy_path[1024];
	snprintf(npy_path, sizeof npy_path, "%s/%s", test_env("NETCC_ROOT", "."), npy);
	expect_error(&l, m, l.load_weights(m, npy_path), RT_ERR_IO, "an .npy file", npy, NULL);
	expect_no_weights(&l, m, x, y, ny, npy);

	TMP_PATH(nanw, "nan.safetensors");
	expect_error(&l, m, l.load_weights(m, nanw), RT_ERR_WEIGHTS, "a NaN weight", nanw, "NaN");
	expect_no_weights(&l, m, x, y, ny, "NaN");
	TMP_PATH(negvar, "negvar.safetensors");
	expect_error(&l, m, l.load_weights(m, negvar), RT_ERR_WEIGHTS, "a negative variance",
	             "running_var", "not negative");
	expect_no_weights(&l, m, x, y, ny, "running_var");
	char *msg;
	rc = sh(&msg, "'%s' run models/resnet20.nn --batch 2 --weights '%s' --input /dev/null",
	        netcc_bin(), negvar);
	ck_assert_msg(rc == 1 && strstr(msg, "a variance is not negative"), "netcc run: %s", msg);
	free(msg);

	/* a good load after all that brings the right numbers back */
	load_ok(&l, m, w);
	infer_ok(&l, m, x, y);
	ck_assert_close(y, want, ny, 1e-4);

	/* NULL pointers: the ARG code, no crash, and the weights stay */
	const float *ins[1] = {x}, *no_in[1] = {NULL};
	float *outs[1] = {y}, *no_out[1] = {NULL};
	ck_assert_int_eq(l.infer(NULL, x, y), RT_ERR_ARG);
	expect_error(&l, m, l.infer(m, NULL, y), RT_ERR_ARG, "infer(m, NULL, y)", "input", NULL);
	expect_error(&l, m, l.infer(m, x, NULL), RT_ERR_ARG, "infer(m, x, NULL)", "output", NULL);
	ck_assert_int_eq(l.run(NULL, ins, outs), RT_ERR_ARG);
	expect_error(&l, m, l.run(m, NULL, outs), RT_ERR_ARG, "run(m, NULL, outs)", "NULL", NULL);
	expect_error(&l, m, l.run(m, ins, NULL), RT_ERR_ARG, "run(m, ins, NULL)", "NULL", NULL);
	expect_error(&l, m, l.run(m, no_in, outs), RT_ERR_ARG, "run with a NULL input", "input",
	             NULL);
	expect_error(&l, m, l.run(m, ins, no_out), RT_ERR_ARG, "run with a NULL output", "output",
	             NULL);
	ck_assert_int_eq(l.load_weights(NULL, w), RT_ERR_ARG);
	const char *e = l.error(NULL);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_gt(strlen(e), 0);
	infer_ok(&l, m, x, y);
	ck_assert_close(y, want, ny, 1e-4);
	ck_assert_int_eq(l.run(m, ins, outs), RT_OK);
	ck_assert_close(y, want, ny, 1e-4);

	/* caller-owned memory: NULLs and a misaligned workspace */
	float *ws = aligned_alloc(64, 8 << 20); /* more than resnet20's weights or workspace */
	ck_assert_int_eq(l.read_weights(NULL, ws), RT_ERR_ARG);
	ck_assert_int_eq(l.read_weights(missing, ws), RT_ERR_IO);
	ck_assert_int_eq(l.read_weights(w, NULL), RT_ERR_ARG);
	ck_assert_int_eq(l.read_weights(w, ws), RT_OK);
	ck_assert_int_eq(l.infer_static(NULL, ws, x, y), RT_ERR_ARG);
	ck_assert_int_eq(l.infer_static(ws, (char *)ws + 4, x, y), RT_ERR_ARG);
	ck_assert_int_eq(l.infer_static(ws, NULL, x, y), RT_ERR_ARG);
	ck_assert_int_eq(l.infer_static(ws, (char *)ws + (4 << 20), NULL, y), RT_ERR_ARG);
	ck_assert_int_eq(l.infer_static(ws, (char *)ws + (4 << 20), x, NULL), RT_ERR_ARG);
	memset(y, 0, ny * sizeof(float));
	ck_assert_int_eq(l.infer_static(ws, (char *)ws + (4 << 20), x, y), RT_OK);
	ck_assert_close(y, want, ny, 1e-4);
	free(ws);

	l.destroy(m);
	l.destroy(NULL);
	lib_close(&l);
	free(y);
	free(x);
	free(want);
}
END_TEST

/* ---- 7. other emit kinds, and failed compiles ------------------------------------ */

static int entries(const char *dir)
{
	char *log;
	ck_assert_int_eq(sh(&log, "ls -A '%s' | grep -vx log.txt | wc -l", dir), 0);
	int n = atoi(log);
	free(log);
	return n;
}

START_TEST(emit_kinds)
{
	static const struct {
		const char *emit, *file, *marker;
	} kinds[] = {
	    {"llvm", "r.ll", "define "},
	    {"asm", "r.s", ".text"},
	    {"obj", "r.o", "\177ELF"},
	};
	for (int k = 0; k < 3; k++) {
		char *log;
		int rc = sh(&log, "'%s' compile models/resnet20.nn --emit=%s -o '%s'", netcc_bin(),
		            kinds[k].emit, tmp("%s", kinds[k].file));
		ck_assert_msg(rc == 0, "--emit=%s exited %d:\n%s", kinds[k].emit, rc, log);
		free(log);
		size_t len;
		char *text = slurp(tmp("%s", kinds[k].file), &len);
		ck_assert_msg(len > 1000, "--emit=%s wrote %zu bytes", kinds[k].emit, len);
		if (!strcmp(kinds[k].emit, "obj"))
			ck_assert(memcmp(text, kinds[k].marker, 4) == 0);
		else
			ck_assert_msg(strstr(text, kinds[k].marker) != NULL, "%s has no '%s'",
			              kinds[k].file, kinds[k].marker);
		/* the exported API is in every form */
		ck_assert_msg(memmem(text, len, "resnet20_infer", 14) != NULL,
		              "%s does not define resnet20_infer", kinds[k].file);
		free(text);
	}
}
END_TEST

START_TEST(failed_compile_leaves_nothing)
{
	static const char *const emits[] = {"so", "llvm", "asm", "obj"};
	int before = entries(tmpdir);
	for (int k = 0; k < 4; k++) {
		char *log;
		int rc = sh(&log, "'%s' compile models/resnet20.nn --emit=%s -o '%s'", netcc_bin(),
		            emits[k], tmp("nodir/out"));
		ck_assert_msg(rc == 1, "--emit=%s into a missing directory exited %d:\n%s",
		              emits[k], rc, log);
		ck_assert_msg(strstr(log, "nodir") != NULL, "the error does not name the path: %s",
		              log);
		free(log);
	}
	/* a directory where the library should go */
	ck_assert_int_eq(mkdir(tmp("adir"), 0755), 0);
	char *log;
	int rc =
	    sh(&log, "'%s' compile models/resnet20.nn -o '%s' --name r", netcc_bin(), tmp("adir"));
	ck_assert_msg(rc == 1, "a library over a directory exited %d:\n%s", rc, log);
	free(log);
	ck_assert_int_eq(entries(tmp("adir")), 0);
	ck_assert_int_eq(rmdir(tmp("adir")), 0);
	ck_assert_int_eq(access(tmp("nodir"), F_OK), -1);
	ck_assert_int_eq(entries(tmpdir), before);
}
END_TEST

/* Outputs written before the step that fails: the weights file of
 * --weights-file before the link, the library before its header. */
START_TEST(failed_compile_removes_earlier_outputs)
{
	ck_assert_int_eq(mkdir(tmp("adir"), 0755), 0);
	int before = entries(tmpdir);
	char *log;
	int rc = sh(&log, "'%s' compile models/resnet20.nn --weights-file -o '%s' --name r",
	            netcc_bin(), tmp("adir"));
	ck_assert_msg(rc == 1, "a library over a directory exited %d:\n%s", rc, log);
	free(log);
	ck_assert_msg(access(tmp("r.safetensors"), F_OK) != 0,
	              "the failed compile left its weights file r.safetensors behind");
	ck_assert_int_eq(entries(tmpdir), before);

	ck_assert_int_eq(mkdir(tmp("r2.h"), 0755), 0);
	rc = sh(&log, "'%s' compile models/resnet20.nn -o '%s' --name r2", netcc_bin(),
	        tmp("libr2.so"));
	ck_assert_msg(rc == 1, "a header over a directory exited %d:\n%s", rc, log);
	ck_assert_msg(strstr(log, "r2.h") != NULL, "the error does not name the header: %s", log);
	free(log);
	ck_assert_msg(access(tmp("libr2.so"), F_OK) != 0,
	              "the failed compile left libr2.so behind without its header");
}
END_TEST

/* ---- 8. the JIT against the reference executor ------------------------------------ */

START_TEST(jit_run_matches_reference)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 71);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g), ny = output_count(g);
	float *x = random_input(nx, 72);
	float *want = reference(g, x);
	char e[256];
	const ir_shape *s = &g->nodes[g->inputs[0].node].shape;
	ck_assert_msg(rt_npy_write(tmp("x.npy"), RT_DTYPE_F32, s->rank, s->d, x, e, sizeof e) == 0,
	              "%s", e);
	ir_graph_free(g);

	rt_array y[2];
	for (int k = 0; k < 2; k++) {
		char *log;
		TMP_PATH(yp, "y%d.npy", k);
		int rc = sh(
		    &log,
		    "'%s' run models/resnet20.nn --batch 2 --weights '%s' --input '%s' -o '%s' %s",
		    netcc_bin(), w, tmp("x.npy"), yp, k ? "--reference" : "");
		ck_assert_msg(rc == 0, "netcc run exited %d:\n%s", rc, log);
		free(log);
		ck_assert_msg(rt_npy_read(yp, &y[k], e, sizeof e) == 0, "%s", e);
		ck_assert_int_eq(y[k].dtype, RT_DTYPE_F32);
		ck_assert_uint_eq(y[k].count, ny);
	}
	ck_assert_close(y[0].data, y[1].data, ny, 1e-4);
	/* and the command's reference is this process's: the inputs and weights
	 * really went in */
	ck_assert_close(y[1].data, want, ny, 1e-6);
	rt_array_free(&y[0]);
	rt_array_free(&y[1]);
	free(x);
	free(want);
}
END_TEST

/* A trainable library refuses a step it cannot take (a learning rate that
 * is NaN, negative or infinite: +Inf wrote NaN weights that save_weights
 * then saved), and still steps and saves after. */
START_TEST(train_library_refuses_bad_steps)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 63);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g);
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "tr", "--train");
	void *so = dlopen(tmp("libtr.so"), RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(so != NULL, "%s", dlerror());
	void *(*create)(void) = (void *(*)(void))sym(so, "tr", "create");
	int (*step)(void *, const float *, const int32_t *, float, float *) =
	    (int (*)(void *, const float *, const int32_t *, float, float *))sym(so, "tr",
	                                                                         "train_step");
	int (*save)(void *, const char *) =
	    (int (*)(void *, const char *))sym(so, "tr", "save_weights");
	const char *(*error)(const void *) = (const char *(*)(const void *))sym(so, "tr", "error");
	void (*destroy)(void *) = (void (*)(void *))sym(so, "tr", "destroy");
	void *m = create();
	ck_assert_ptr_nonnull(m);
	float *x = random_input(nx, 64), loss = -1;
	int32_t labels[2] = {3, 7};
	const float bad[] = {INFINITY, -INFINITY, NAN, -0.1f};
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(step(m, x, labels, bad[i], &loss), RT_ERR_ARG);
		ck_assert_msg(strstr(error(m), "learning rate"), "%s", error(m));
	}
	ck_assert_int_eq(step(m, x, labels, 0.05f, &loss), RT_OK);
	ck_assert_msg(loss > 0 && loss - loss == 0, "loss %g", loss);
	ck_assert_int_eq(save(m, tmp("after.safetensors")), RT_OK);
	char *log;
	/* what it saved loads back into netcc: finite, variances not negative */
	int rc =
	    sh(&log, "'%s' compile models/resnet20.nn --batch 2 --weights '%s' --emit=llvm -o '%s'",
	       netcc_bin(), tmp("after.safetensors"), tmp("after.ll"));
	ck_assert_msg(rc == 0, "%s", log);
	free(log);
	destroy(m);
	ck_assert_int_eq(dlclose(so), 0);
	free(x);
}
END_TEST

/* A data-parallel application's all-reduce: every trained parameter's
 * gradient passes through the hook once a step, last layer first (left
 * counting down to 0), before its update; what the hook writes is what the
 * update uses, and an identity hook changes nothing. */
static int hook_calls, hook_left;
static int64_t hook_floats;
static bool hook_zero;

static void hook(void *ctx, float *grad, int64_t n, int left)
{
	(void)ctx;
	if (hook_calls++ > 0)
		ck_assert_int_eq(left, hook_left - 1);
	hook_left = left;
	hook_floats += n;
	if (hook_zero)
		memset(grad, 0, (size_t)n * sizeof *grad);
}

typedef void hook_fn(void *, float *, int64_t, int);

static void step_and_save(void *so, hook_fn *fn, bool zero, const float *x, const char *path)
{
	void *(*create)(void) = (void *(*)(void))sym(so, "tr", "create");
	int (*set)(void *, hook_fn *, void *) =
	    (int (*)(void *, hook_fn *, void *))sym(so, "tr", "train_set_allreduce");
	int (*step)(void *, const float *, const int32_t *, float, float *) =
	    (int (*)(void *, const float *, const int32_t *, float, float *))sym(so, "tr",
	                                                                         "train_step");
	int (*save)(void *, const char *) =
	    (int (*)(void *, const char *))sym(so, "tr", "save_weights");
	void (*destroy)(void *) = (void (*)(void *))sym(so, "tr", "destroy");
	void *m = create();
	ck_assert_ptr_nonnull(m);
	int32_t labels[2] = {3, 7};
	float loss;
	hook_calls = 0;
	hook_floats = 0;
	hook_zero = zero;
	ck_assert_int_eq(set(m, fn, NULL), RT_OK);
	ck_assert_int_eq(step(m, x, labels, 0.05f, &loss), RT_OK);
	ck_assert_int_eq(save(m, path), RT_OK);
	destroy(m);
}

START_TEST(train_library_takes_an_allreduce)
{
	ir_graph *g = load("models/resnet20.nn", 2);
	randomise(g, 64);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g);
	int64_t trained = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == IR_OP_PARAM && g->nodes[i].pkind == IR_PARAM_WEIGHT)
			trained += ir_shape_count(&g->nodes[i].shape);
	ir_graph_free(g);
	compile("models/resnet20.nn", 2, w, "tr", "--train");
	void *so = dlopen(tmp("libtr.so"), RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(so != NULL, "%s", dlerror());
	float *x = random_input(nx, 65);
	step_and_save(so, NULL, false, x, tmp("none.safetensors"));
	step_and_save(so, hook, false, x, tmp("same.safetensors"));
	ck_assert_int_gt(hook_calls, 20);
	ck_assert_int_eq(hook_left, 0);
	ck_assert_int_eq(hook_floats, trained);
	step_and_save(so, hook, true, x, tmp("zero.safetensors"));
	char *log;
	ck_assert_int_eq(
	    sh(&log, "cmp '%s' '%s'", tmp("none.safetensors"), tmp("same.safetensors")), 0);
	free(log);
	ck_assert_int_ne(
	    sh(&log, "cmp -s '%s' '%s'", tmp("none.safetensors"), tmp("zero.safetensors")), 0);
	free(log);
	ck_assert_int_eq(dlclose(so), 0);
	free(x);
}
END_TEST

/* A model path holding a comment's end or start (directories named "x*"
 * and "*z") goes into the header's comment harmlessly: the header still
 * compiles under -Wall -Werror (a raw path ended the comment there). */
START_TEST(header_survives_odd_paths)
{
	char *log;
	TMP_PATH(dir, "x*/y/*z");
	int rc = sh(
	    &log,
	    "mkdir -p '%s' && cp models/resnet20.nn '%s/m.nn' && '%s' compile '%s/m.nn' "
	    "-o '%s' && printf '#include \"resnet20.h\"\\nint main(void) { return 0; "
	    "}\\n' >'%s' && cc -std=c99 -Wall -Wextra -Werror -pedantic -I'%s' '%s' -o '%s'",
	    dir, dir, netcc_bin(), dir, tmp("libm.so"), tmp("t.c"), tmpdir, tmp("t.c"), tmp("t"));
	ck_assert_msg(rc == 0, "%s", log);
	free(log);
}
END_TEST

/* ---- 3b. long graphs ----------------------------------------------------------- */

/* Code generation stays linear in the graph's length: the forward is cut
 * into functions of a few nodes each, element-wise loops stay loops, and a
 * run of one op in place is one loop around it. 20000 chained ReLUs
 * compile in well under 10 s at -O2 (130 s for 4000 before); such a chain,
 * and one broken by other nodes, runs as the reference does, at -O2 and
 * -O0 (which runs LLVM's O0 pipeline). */
START_TEST(long_chains_compile_linearly)
{
	TMP_PATH(model, "chain.nn");
	FILE *f = fopen(model, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 10])\ngraph {\n"
	           "    h = x\n    repeat 20000 { h = relu(h) }\n"
	           "    y = linear(flatten(global_avgpool(h)), 10)\n}\n");
	ck_assert_int_eq(fclose(f), 0);
	char *log;
	double t0 = backend_now();
	int rc = sh(&log, "'%s' compile '%s' -o '%s'", netcc_bin(), model, tmp("libchain.so"));
	double seconds = backend_now() - t0;
	ck_assert_msg(rc == 0, "%s", log);
	free(log);
	if (!test_sanitized())
		ck_assert_msg(seconds < 10, "20000 nodes took %.1f s to compile", seconds);

	f = fopen(model, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 10])\ngraph {\n"
	           "    h = x\n    repeat 40 { h = relu(h) }\n    h = h + x\n"
	           "    repeat 3 { h = relu(h + x) }\n    repeat 25 { h = relu(h) }\n"
	           "    y = linear(flatten(global_avgpool(h)), 10)\n}\n");
	ck_assert_int_eq(fclose(f), 0);
	char e[256];
	float x[3 * 8 * 8];
	rt_rng r;
	rt_rng_seed(&r, 77);
	rt_rng_normal_fill(&r, x, 3 * 8 * 8, 1);
	int64_t dims[4] = {1, 3, 8, 8};
	ck_assert_msg(rt_npy_write(tmp("x.npy"), RT_DTYPE_F32, 4, dims, x, e, sizeof e) == 0, "%s",
	              e);
	rt_array y[3];
	static const char *const how[] = {"--reference", "", ""};
	for (int k = 0; k < 3; k++) {
		TMP_PATH(yp, "y%d.npy", k);
		if (k == 2) /* -O0 through a library: compile, then load it like any */
			rc = sh(
			    &log,
			    "'%s' compile '%s' -O0 -o '%s' && '%s' run '%s' --seed 3 --input '%s' "
			    "-o '%s'",
			    netcc_bin(), model, tmp("libo0.so"), netcc_bin(), model, tmp("x.npy"),
			    yp);
		else
			rc = sh(&log, "'%s' run '%s' --seed 3 --input '%s' -o '%s' %s", netcc_bin(),
			        model, tmp("x.npy"), yp, how[k]);
		ck_assert_msg(rc == 0, "%s", log);
		free(log);
		ck_assert_msg(rt_npy_read(yp, &y[k], e, sizeof e) == 0, "%s", e);
	}
	ck_assert_close(y[1].data, y[0].data, 10, 1e-6);
	ck_assert_close(y[2].data, y[0].data, 10, 1e-6);
	for (int k = 0; k < 3; k++)
		rt_array_free(&y[k]);
}
END_TEST

/* Two identical compiles write identical bytes, library and header: the
 * prepared weights' padding is zero, not whatever the heap held (237-718
 * bytes differed). Embedded weights, a weights file, a training step. */
START_TEST(compiles_are_reproducible)
{
	static const char *const extra[] = {"", "--weights-file", "--train --batch 4"};
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < 2; i++) {
			char *log;
			int rc =
			    sh(&log,
			       "mkdir -p '%s/r%d' && '%s' compile models/resnet20.nn --seed 5 %s "
			       "-o '%s/r%d/libm.so'",
			       tmpdir, i, netcc_bin(), extra[k], tmpdir, i);
			ck_assert_msg(rc == 0, "%s", log);
			free(log);
		}
		static const char *const files[] = {"libm.so", "resnet20.h",
		                                    "resnet20.safetensors"};
		for (int f = 0; f < (k == 1 ? 3 : 2); f++) {
			size_t la, lb;
			char *a = slurp(tmp("r0/%s", files[f]), &la),
			     *b = slurp(tmp("r1/%s", files[f]), &lb);
			ck_assert_msg(la > 0 && la == lb && memcmp(a, b, la) == 0,
			              "%s (%s): two compiles differ", files[f], extra[k]);
			free(a), free(b);
		}
	}
}
END_TEST

/* ---- 4. every target --------------------------------------------------------- */

/* A model compiled for each target (netcc targets) and run by a program
 * built with that target's compiler (tests/target_main.c): natively where
 * this CPU runs the target, and under qemu as another CPU would: an
 * emulated Haswell for x86-64-v3 (what Valgrind and AVX2 machines see),
 * an AArch64 machine for aarch64. Within 1e-5 of the reference executor,
 * the same bits on 1, 2 and 3 threads; code for x86-64-v4 on the Haswell
 * refuses at create, naming what is missing, instead of dying on an
 * illegal instruction. */
static const struct target_case {
	const char *target, *model;
	int64_t batch;
} target_cases[] = {
    {"x86-64-v3", "resnet20", 2}, {"x86-64-v4", "resnet20", 2}, {"aarch64", "resnet20", 2},
    {"x86-64-v3", "resnet18", 1}, {"x86-64-v4", "resnet18", 1}, {"aarch64", "resnet18", 1},
};

/* Runs tmp/tm (target_main) as `runner tm x y` and compares y with want;
 * the exit status if it is not 0. */
static int run_target_main(const char *runner, const float *want, size_t ny, char **log)
{
	TMP_PATH(yp, "y.bin");
	unlink(yp);
	int rc = sh(log, "%s '%s' '%s' '%s'", runner, tmp("tm"), tmp("x.bin"), yp);
	if (rc != 0)
		return rc;
	float *y = read_floats(yp, ny);
	double e = test_rel_err(y, want, ny);
	ck_assert_msg(e < 1e-5, "%s: relative error %.3g against the reference executor",
	              runner[0] ? runner : "native", e);
	free(y);
	return 0;
}

START_TEST(target_matches_reference)
{
	const struct target_case *tc = &target_cases[_i];
	if (test_sanitized() && _i >= 3) /* the reference's loops on 224x224 under ASan */
		return;
	char err[256], why[256], path[256];
	backend_target t;
	ck_assert_msg(backend_target_get(tc->target, &t, err, sizeof err) == 0, "%s", err);
	snprintf(path, sizeof path, "models/%s.nn", tc->model);
	ir_graph *g = load(path, tc->batch);
	randomise(g, 4000 + (uint64_t)_i);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g), ny = output_count(g);
	float *x = random_input(nx, 4100 + (uint64_t)_i);
	float *want = reference(g, x);
	write_floats(tmp("x.bin"), x, nx);
	ir_graph_free(g);
	char extra[64];
	snprintf(extra, sizeof extra, "--target %s", tc->target);
	compile(path, tc->batch, w, "tgt", extra);

	char *log;
	int rc = sh(&log,
	            "%s -std=c11 -O2 -Wall -Wextra -Werror -I'%s' tests/target_main.c -o '%s' "
	            "'%s' -Wl,-rpath,'%s'",
	            t.cc, tmpdir, tmp("tm"), tmp("libtgt.so"), tmpdir);
	ck_assert_msg(rc == 0, "%s cannot build a program for %s:\n%s", t.cc, t.name, log);
	free(log);

	if (backend_target_runs_here(&t, why, sizeof why)) {
		rc = run_target_main("", want, ny, &log);
		ck_assert_msg(rc == 0, "%s code exited %d here:\n%s", t.name, rc, log);
		free(log);
	}
	/* qemu's own warnings about the CPU model go to stderr; stdout is ours */
	if (!test_sanitized() && !strcmp(t.kset, "neon")) {
		rc = run_target_main("qemu-aarch64", want, ny, &log);
		ck_assert_msg(rc == 0, "%s code under qemu-aarch64 exited %d:\n%s", t.name, rc,
		              log);
		free(log);
	} else if (!test_sanitized()) {
		rc = run_target_main("qemu-x86_64 -cpu Haswell", want, ny, &log);
		if ((t.needs & ~RT_CPU_X86_64_V3) == 0) {
			ck_assert_msg(rc == 0, "%s code on an emulated Haswell exited %d:\n%s",
			              t.name, rc, log);
		} else {
			ck_assert_msg(rc == 3 && strstr(log, "lacks avx512f"),
			              "%s code on an emulated Haswell: exit %d, expected 3 and the "
			              "missing features named:\n%s",
			              t.name, rc, log);
		}
		free(log);
	}
	free(x);
	free(want);
}
END_TEST

/* A training step's library (--train) for each target, run where its code
 * runs (natively, on an emulated Haswell, on an emulated AArch64): two SGD
 * steps and then inference, the same bits on 1, 2 and 3 threads (the
 * program checks), and every run within 1e-5 of the first, losses and
 * outputs alike. */
START_TEST(target_training_steps_agree)
{
	static const char *const names[] = {"x86-64-v3", "x86-64-v4", "aarch64"};
	ir_graph *g = load("models/resnet20.nn", 4);
	randomise(g, 4200);
	TMP_PATH(w, "w.safetensors");
	save_weights(g, w);
	size_t nx = input_count(g), ny = output_count(g) + 2; /* the two losses first */
	float *x = random_input(nx, 4201);
	write_floats(tmp("x.bin"), x, nx);
	ir_graph_free(g);
	float *first = NULL;
	int runs = 0;
	for (int i = 0; i < 3; i++) {
		char err[256], why[256], extra[64];
		backend_target t;
		ck_assert_msg(backend_target_get(names[i], &t, err, sizeof err) == 0, "%s", err);
		snprintf(extra, sizeof extra, "--train --target %s", names[i]);
		compile("models/resnet20.nn", 4, w, "tgt", extra);
		char *log;
		int rc = sh(&log,
		            "%s -std=c11 -O2 -Wall -Wextra -Werror -DTRAIN -I'%s' "
		            "tests/target_main.c -o '%s' '%s' -Wl,-rpath,'%s'",
		            t.cc, tmpdir, tmp("tm"), tmp("libtgt.so"), tmpdir);
		ck_assert_msg(rc == 0, "%s cannot build a program for %s:\n%s", t.cc, t.name, log);
		free(log);
		const char *runners[2] = {NULL, NULL};
		if (backend_target_runs_here(&t, why, sizeof why))
			runners[0] = "";
		if (!test_sanitized())
			runners[1] = !strcmp(t.kset, "neon") ? "qemu-aarch64"
			             : (t.needs & ~RT_CPU_X86_64_V3) == 0
			                 ? "qemu-x86_64 -cpu Haswell"
			                 : NULL;
		for (int k = 0; k < 2; k++) {
			if (!runners[k])
				continue;
			TMP_PATH(yp, "y.bin");
			unlink(yp);
			rc = sh(&log, "%s '%s' '%s' '%s'", runners[k], tmp("tm"), tmp("x.bin"), yp);
			ck_assert_msg(rc == 0, "%s training step %s exited %d:\n%s", t.name,
			              runners[k][0] ? runners[k] : "natively", rc, log);
			free(log);
			float *y = read_floats(yp, ny);
			ck_assert_msg(y[0] == y[0] && y[0] > 0 && y[1] == y[1], "%s: losses %g %g",
			              t.name, y[0], y[1]);
			if (!first) {
				first = y;
			} else {
				double e = test_rel_err(y, first, ny);
				ck_assert_msg(e < 1e-5,
				              "%s (%s): relative error %.3g against the first run",
				              t.name, runners[k][0] ? runners[k] : "natively", e);
				free(y);
			}
			runs++;
		}
	}
	ck_assert_int_ge(runs, test_sanitized() ? 1 : 3);
	free(first);
	free(x);
}
END_TEST

/* An unknown target is named, with the closest one; `netcc targets` lists
 * them all, and which run here. */
START_TEST(targets_listed_and_checked)
{
	char *log;
	int rc = sh(&log, "'%s' targets", netcc_bin());
	ck_assert_msg(rc == 0, "netcc targets exited %d:\n%s", rc, log);
	int n;
	const backend_target *ts = backend_targets(&n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(strstr(log, ts[i].name), "netcc targets omits %s", ts[i].name);
	ck_assert_ptr_nonnull(strstr(log, "native"));
	free(log);
	rc = sh(&log, "'%s' compile models/resnet20.nn --target x86-64-v5 -o '%s'", netcc_bin(),
	        tmp("libx.so"));
	ck_assert_int_eq(rc, 2);
	ck_assert_msg(strstr(log, "no such target; did you mean 'x86-64-v"), "%s", log);
	free(log);
	ck_assert_int_eq(access(tmp("libx.so"), F_OK), -1);
	/* run executes here: a target this CPU cannot run is refused up front */
	rc = sh(&log,
	        "'%s' run models/resnet20.nn --input examples/data/ankle_boot.npy --target "
	        "aarch64",
	        netcc_bin());
	ck_assert_int_eq(rc, 2);
	ck_assert_msg(strstr(log, "aarch64 code does not run on this machine"), "%s", log);
	free(log);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("compile");
	/* The sanitizer build runs netcc and the reference executor several
	 * times slower. */
	int scale = test_sanitized() ? 4 : 1;

	TCase *t = tcase_create("models");
	tcase_add_unchecked_fixture(t, case_setup, case_teardown);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 240 * scale);
	tcase_add_loop_test(t, model_matches_reference, 0, (int)(sizeof models / sizeof *models));
	suite_add_tcase(s, t);

	t = tcase_create("library");
	tcase_add_unchecked_fixture(t, case_setup, case_teardown);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 120 * scale);
	tcase_add_loop_test(t, golden_block_library, 0, (int)(sizeof blocks / sizeof *blocks));
	tcase_add_test(t, header_compiles_as_c99_and_cpp11);
	tcase_add_test(t, two_libraries_in_one_program);
	tcase_add_test(t, infer_static_allocates_nothing);
	tcase_add_test(t, instances_in_threads_agree);
	tcase_add_test(t, library_errors);
	tcase_add_test(t, emit_kinds);
	tcase_add_test(t, failed_compile_leaves_nothing);
	tcase_add_test(t, failed_compile_removes_earlier_outputs);
	tcase_add_test(t, jit_run_matches_reference);
	tcase_add_test(t, long_chains_compile_linearly);
	tcase_add_test(t, compiles_are_reproducible);
	tcase_add_test(t, train_library_refuses_bad_steps);
	tcase_add_test(t, train_library_takes_an_allreduce);
	tcase_add_test(t, header_survives_odd_paths);
	suite_add_tcase(s, t);

	t = tcase_create("targets");
	tcase_add_unchecked_fixture(t, case_setup, case_teardown);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 180 * scale);
	tcase_add_loop_test(t, target_matches_reference, 0,
	                    (int)(sizeof target_cases / sizeof *target_cases));
	tcase_add_test(t, target_training_steps_agree);
	tcase_add_test(t, targets_listed_and_checked);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
