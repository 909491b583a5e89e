/* ONNX import (tests/onnx, made by tools/make_onnx_fixtures.py): every
 * model imports, and netcc's outputs, through the imported .nn with its
 * weights and through the .onnx file directly, are PyTorch's to 1e-4;
 * every malformed file ends in its error, exit status 1 and no output. */
#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx.h"
#include "testutil.h"

static char tmp[256];

static void tmp_make(void)
{
	snprintf(tmp, sizeof tmp, "/tmp/netcc_onnx_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void tmp_remove(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
	ck_assert_int_eq(system(cmd), 0);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* netcc with args (a printf format), from the repository root; its exit
 * status, its standard error in err (malloc'd) when err is not NULL */
static int netcc(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int netcc(char **err, const char *fmt, ...)
{
	char args[4096], cmd[8192], errpath[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmp);
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >/dev/null 2>'%s'",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"), args, errpath);
	int st = system(cmd);
	if (err)
		*err = test_slurp(errpath, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static rt_array npy(const char *path)
{
	rt_array a;
	char err[512];
	ck_assert_msg(rt_npy_read(path, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_msg(rt_array_to_f32(&a, err, sizeof err) == 0, "%s", err);
	return a;
}

/* NAME.x.npy, or NAME.x0.npy, NAME.x1.npy, ...: how many, their paths */
static int arrays(const char *base, char kind, char paths[][600], int max)
{
	char root[300];
	snprintf(root, sizeof root, "%s/%s", test_env("NETCC_ROOT", "."), base);
	snprintf(paths[0], 600, "%s.%c.npy", root, kind);
	if (exists(paths[0]))
		return 1;
	int n = 0;
	for (; n < max; n++) {
		snprintf(paths[n], 600, "%s.%c%d.npy", root, kind, n);
		if (!exists(paths[n]))
			break;
	}
	return n;
}

/* Runs MODEL (with --weights W where given) on the case's inputs; each
 * output against PyTorch's. */
static void run_check(const char *base, const char *model, const char *weights, const char *tag)
{
	char x[4][600], y[4][600], args[4096], out[600];
	int nx = arrays(base, 'x', x, 4), ny = arrays(base, 'y', y, 4);
	ck_assert_msg(nx > 0 && ny > 0, "%s: no arrays", base);
	rt_array x0 = npy(x[0]);
	int o = snprintf(args, sizeof args, "run %s --batch %lld", model, (long long)x0.dims[0]);
	rt_array_free(&x0);
	if (weights)
		o += snprintf(args + o, sizeof args - (size_t)o, " --weights %s", weights);
	for (int i = 0; i < nx; i++)
		o += snprintf(args + o, sizeof args - (size_t)o, " --input %s", x[i]);
	for (int i = 0; i < ny; i++)
		o += snprintf(args + o, sizeof args - (size_t)o, " -o %s/%s.%d.npy", tmp, tag, i);
	char *err;
	int rc = netcc(&err, "%s", args);
	ck_assert_msg(rc == 0, "%s: netcc %s: exit %d\n%s", base, args, rc, err);
	ck_assert_msg(!strstr(err, "warning"), "%s: %s", base, err);
	free(err);
	for (int i = 0; i < ny; i++) {
		snprintf(out, sizeof out, "%s/%s.%d.npy", tmp, tag, i);
		rt_array got = npy(out), want = npy(y[i]);
		ck_assert_msg(got.count == want.count, "%s: %zu values, PyTorch %zu", base,
		              got.count, want.count);
		double e = test_rel_err(got.data, want.data, want.count);
		ck_assert_msg(e < 1e-4, "%s (%s) output %d: relative error %.3g", base, tag, i, e);
		rt_array_free(&got);
		rt_array_free(&want);
	}
}

/* every NAME.onnx in dir (relative to the root), sorted */
static int listing(const char *dir, char names[][128], int max)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", test_env("NETCC_ROOT", "."), dir);
	DIR *d = opendir(path);
	ck_assert_msg(d != NULL, "cannot open %s", path);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		size_t len = strlen(e->d_name);
		if (len > 5 && !strcmp(e->d_name + len - 5, ".onnx"))
			snprintf(names[n++], 128, "%.*s", (int)(len - 5), e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof *names, (int (*)(const void *, const void *))strcmp);
	return n;
}

START_TEST(fixtures_match_pytorch)
{
	static char names[64][128];
	int n = listing("tests/onnx", names, 64);
	ck_assert_int_ge(n, 20);
	tmp_make();
	for (int i = 0; i < n; i++) {
		char base[300], nn[600], w[600];
		snprintf(base, sizeof base, "tests/onnx/%.120s", names[i]);
		snprintf(nn, sizeof nn, "%s/%.120s.nn", tmp, names[i]);
		snprintf(w, sizeof w, "%s/%.120s.safetensors", tmp, names[i]);
		char *err;
		int rc = netcc(&err, "import %s.onnx -o %s", base, nn);
		ck_assert_msg(rc == 0 && exists(nn) && exists(w), "%s: import: exit %d\n%s", base,
		              rc, err);
		free(err);
		run_check(base, nn, w, "nn");
		char onnx[400];
		snprintf(onnx, sizeof onnx, "%s.onnx", base);
		run_check(base, onnx, NULL, "onnx");
	}
	tmp_remove();
}
END_TEST

START_TEST(malformed_files_refused)
{
	static char names[64][128];
	int n = listing("tests/onnx/malformed", names, 64);
	ck_assert_int_ge(n, 15);
	tmp_make();
	for (int i = 0; i < n; i++) {
		char path[400], errfile[600], nn[600], w[600];
		snprintf(path, sizeof path, "tests/onnx/malformed/%.120s.onnx", names[i]);
		snprintf(errfile, sizeof errfile, "%.300s/tests/onnx/malformed/%.120s.err",
		         test_env("NETCC_ROOT", "."), names[i]);
		snprintf(nn, sizeof nn, "%s/out.nn", tmp);
		snprintf(w, sizeof w, "%s/out.safetensors", tmp);
		char *want = test_slurp(errfile, NULL), *got, prefix[1024];
		want[strcspn(want, "\n")] = 0;
		snprintf(prefix, sizeof prefix, "netcc: error: %s: %s", path, want);
		int rc = netcc(&got, "import %s -o %s", path, nn);
		ck_assert_msg(rc == 1, "%s: exit %d", path, rc);
		ck_assert_msg(!strncmp(got, prefix, strlen(prefix)), "%s:\ngot  %swant %s", path,
		              got, prefix);
		ck_assert_msg(!exists(nn) && !exists(w), "%s: left an output behind", path);
		free(got);
		/* compile and run of the file refuse it the same way */
		rc = netcc(&got, "run %s --input examples/data/ankle_boot.npy", path);
		ck_assert_msg(rc == 1 && !strncmp(got, prefix, strlen(prefix)),
		              "%s: run: exit %d\n%s", path, rc, got);
		free(got);
		free(want);
	}
	tmp_remove();
}
END_TEST

/* Parameter names follow the exporter's modules, the same whether
 * BatchNorm was folded or kept; netcc params lists what import wrote. */
START_TEST(names_follow_the_exporter)
{
	onnx_import kept, folded;
	char path[600];
	snprintf(path, sizeof path, "%s/tests/onnx/resnet_kept.onnx", test_env("NETCC_ROOT", "."));
	ck_assert_int_eq(onnx_import_file(path, "kept", &kept, stderr), 0);
	snprintf(path, sizeof path, "%s/tests/onnx/resnet_folded.onnx",
	         test_env("NETCC_ROOT", "."));
	ck_assert_int_eq(onnx_import_file(path, "folded", &folded, stderr), 0);
	ck_assert_ptr_nonnull(
	    strstr(kept.text, "model kept(x: f32[N, 1, 28, 28]) -> (y: f32[N, 10])"));
	ck_assert_ptr_nonnull(strstr(kept.text, "bias = false, name = \"layer1_1_downsample_0\")"));
	ck_assert_ptr_nonnull(strstr(kept.text, "batchnorm(layer1_1_downsample_0, name = "
	                                        "\"layer1_1_downsample_1\")"));
	ck_assert_ptr_nonnull(
	    strstr(kept.text, "y = linear(flatten, 10, bias = true, name = \"fc\")"));
	ck_assert_ptr_null(strstr(folded.text, "batchnorm"));
	ck_assert_ptr_nonnull(
	    strstr(folded.text, "bias = true, name = \"layer1_1_downsample_0\")"));
	ck_assert_str_eq(kept.weights[0].name, "conv1.weight");
	ck_assert_str_eq(folded.weights[0].name, "conv1.weight");
	ck_assert_str_eq(folded.weights[1].name, "conv1.bias");
	ir_graph *g = onnx_import_graph(&kept, "kept.nn", 3);
	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(g->batch, 3);
	ir_graph_free(g);
	onnx_import_free(&kept);
	onnx_import_free(&folded);
}
END_TEST

START_TEST(outputs_all_or_nothing)
{
	tmp_make();
	char *err;
	/* the model cannot be written: its weights do not stay either */
	int rc = netcc(&err,
	               "import tests/onnx/gemm.onnx -o %s/no/such/dir/m.nn --weights-out "
	               "%s/w.safetensors",
	               tmp, tmp);
	ck_assert_int_eq(rc, 1);
	free(err);
	char w[600];
	snprintf(w, sizeof w, "%s/w.safetensors", tmp);
	ck_assert(!exists(w));
	rc = netcc(&err, "import tests/onnx/gemm.onnx -o -");
	ck_assert_int_eq(rc, 2);
	ck_assert_ptr_nonnull(strstr(err, "--weights-out"));
	free(err);
	/* the library embeds the ONNX file's weights: no warning about random ones */
	rc = netcc(&err, "compile tests/onnx/resnet_folded.onnx -Werror -O0 -o %s/libr.so", tmp);
	ck_assert_msg(rc == 0, "%s", err);
	free(err);
	snprintf(w, sizeof w, "%s/libr.so", tmp);
	ck_assert(exists(w));
	tmp_remove();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("onnx");
	TCase *t = tcase_create("import");
	tcase_set_timeout(t, test_sanitized() ? 900 : 300);
	tcase_add_test(t, names_follow_the_exporter);
	tcase_add_test(t, outputs_all_or_nothing);
	tcase_add_test(t, malformed_files_refused);
	tcase_add_test(t, fixtures_match_pytorch);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
