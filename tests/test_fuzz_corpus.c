/* Every fuzzing seed and every input that once crashed a harness
 * (tests/fuzz/regressions) goes through its reader again, under the
 * sanitizers in the san build: a fixed bug stays fixed. */
#include <dirent.h>
#include <sys/stat.h>

#include "frontend.h"
#include "onnx.h"
#include "fuzz/compile_model.c"
#include "testutil.h"

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc((size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void feed(const char *harness, const char *path, const unsigned char *data, size_t len)
{
	char err[256];
	if (!strcmp(harness, "frontend")) {
		ir_graph_free(frontend_graph_parse(path, (const char *)data, len, 2));
	} else if (!strcmp(harness, "safetensors")) {
		void *image = malloc(len ? len : 1);
		memcpy(image, data, len);
		rt_st_file f;
		if (rt_st_parse(image, len, &f, err, sizeof err) == 0)
			rt_st_free(&f);
	} else if (!strcmp(harness, "npy")) {
		rt_array a;
		if (rt_npy_parse(data, len, &a, err, sizeof err) == 0)
			rt_array_free(&a);
	} else if (!strcmp(harness, "npz")) {
		rt_npz_file z;
		if (rt_npz_parse(data, len, &z, err, sizeof err) == 0)
			rt_npz_free(&z);
	} else if (!strcmp(harness, "onnx")) {
		onnx_import im;
		if (onnx_import_bytes(data, len, path, "fuzz", &im, NULL) == 0) {
			ir_graph *g = onnx_import_graph(&im, path, 1);
			ck_assert_msg(g != NULL, "%s: the imported model does not parse:\n%s", path,
			              im.text);
			ir_graph_free(g);
			onnx_import_free(&im);
		}
	} else if (!strcmp(harness, "compile")) {
		char *report;
		int bad = compile_model(data, len, &report);
		ck_assert_msg(!bad, "%s: %s", path, report ? report : "");
		free(report);
	} else {
		rt_array a;
		if (rt_idx_read(path, &a, err, sizeof err) == 0)
			rt_array_free(&a);
	}
}

/* every file in sub (under the repository), or in tests/fuzz/KIND/HARNESS */
static int feed_dir(const char *harness, const char *kind, const char *sub)
{
	char dir[1024];
	if (sub)
		snprintf(dir, sizeof dir, "%s/%s", test_env("NETCC_ROOT", "."), sub);
	else
		snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", test_env("NETCC_ROOT", "."), kind,
		         harness);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t nl = strlen(e->d_name);
		if (e->d_name[0] == '.' || (sub && (nl < 5 || strcmp(e->d_name + nl - 5, ".onnx"))))
			continue;
		char path[2048];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		size_t len;
		unsigned char *data = slurp(path, &len);
		feed(harness, path, data, len);
		free(data);
		n++;
	}
	closedir(d);
	return n;
}

START_TEST(seeds_and_regressions)
{
	static const char *const harnesses[] = {"frontend", "safetensors", "npy", "npz",
	                                        "idx",      "compile",     "onnx"};
	FILE *sink = fopen("/dev/null", "w");
	diag_set_output(sink);
	int seeds = 0;
	for (int i = 0; i < 7; i++) {
		seeds += feed_dir(harnesses[i], "seeds", NULL);
		feed_dir(harnesses[i], "regressions", NULL);
	}
	/* the ONNX harness's seeds are the import fixtures */
	seeds += feed_dir("onnx", NULL, "tests/onnx");
	seeds += feed_dir("onnx", NULL, "tests/onnx/malformed");
	diag_set_output(NULL);
	fclose(sink);
	ck_assert_int_ge(seeds, 5);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("fuzz corpus");
	TCase *t = tcase_create("corpus");
	/* one regression builds a graph up to the million-node limit: a
	 * second plainly, several under the sanitizers */
	tcase_set_timeout(t, 120);
	tcase_add_test(t, seeds_and_regressions);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
