/* netcc eval: the metrics on rows worked out by hand (ties, top-k, NaN,
 * extreme logits), then the command as a user runs it, against what
 * netcc train logged for the same weights and test images. */
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "driver.h"

#include "testutil.h"

#define MODEL "tests/models/tiny28.nn"

/* ---- metrics.c ---------------------------------------------------------------- */

/* Three classes, four rows: a clear win, an all-way tie, a two-way tie
 * above the label, a clear win again. Ties go to the lower index. */
START_TEST(three_classes_by_hand)
{
	const float logits[] = {2, 1, 0, 0, 0, 0, 1, 3, 3, 0, 5, 1};
	const int32_t labels[] = {0, 2, 2, 1};
	metrics m;
	ck_assert_int_eq(metrics_init(&m, 3), 0);
	metrics_batch_add(&m, logits, labels, 2);
	metrics_batch_add(&m, logits + 6, labels + 2, 2);
	ck_assert_int_eq(m.n, 4);
	ck_assert_int_eq(m.k, 3);
	/* predictions 0, 0, 1, 1 */
	const int64_t want[9] = {1, 0, 0, 0, 1, 0, 1, 1, 0};
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(m.confusion[i], want[i]);
	ck_assert_double_eq(metrics_accuracy(&m), 0.5);
	ck_assert_double_eq(metrics_top_k_accuracy(&m), 1.0);
	ck_assert_double_eq(metrics_class_accuracy(&m, 0), 1.0);
	ck_assert_double_eq(metrics_class_accuracy(&m, 1), 1.0);
	ck_assert_double_eq(metrics_class_accuracy(&m, 2), 0.0);
	ck_assert_int_eq(m.class_n[2], 2);
	/* -log softmax: log(1 + e^-1 + e^-2), log 3, log(2 + e^-2), log(1 + e^-4 + e^-5) */
	double loss =
	    (log(1 + exp(-1) + exp(-2)) + log(3) + log(2 + exp(-2)) + log(1 + exp(-4) + exp(-5))) /
	    4;
	ck_assert_double_eq_tol(metrics_loss(&m), loss, 1e-12);
	ck_assert_double_eq_tol(metrics_loss(&m), 0.5723967047327067, 1e-12);
	metrics_free(&m);
}
END_TEST

/* Top-5 of 7 classes: a label ranks after every higher logit and every
 * equal one of a lower index. */
START_TEST(top_k_ties_rank_the_lower_index_first)
{
	const float zeros[7] = {0};
	const float row[7] = {0, 4, 4, 1, 2, 3, 4};
	metrics m;
	ck_assert_int_eq(metrics_init(&m, 7), 0);
	ck_assert_int_eq(m.k, 5);
	/* all equal: label 4 ranks 4th (in), label 5 5th (out) */
	metrics_batch_add(&m, zeros, (int32_t[]){4}, 1);
	ck_assert_int_eq(m.top_k, 1);
	metrics_batch_add(&m, zeros, (int32_t[]){5}, 1);
	ck_assert_int_eq(m.top_k, 1);
	ck_assert_int_eq(m.confusion[5 * 7 + 0], 1);
	/* 4, 4, 4 at 1, 2, 6, then 3, 2: label 6 ranks 2 (in, not top-1);
	 * label 3 (logit 1) ranks 5 (out); label 1 wins */
	metrics_batch_add(&m, row, (int32_t[]){6}, 1);
	metrics_batch_add(&m, row, (int32_t[]){3}, 1);
	metrics_batch_add(&m, row, (int32_t[]){1}, 1);
	ck_assert_int_eq(m.top_k, 3);
	ck_assert_int_eq(m.correct, 1);
	ck_assert_int_eq(m.confusion[6 * 7 + 1], 1);
	ck_assert_int_eq(m.confusion[1 * 7 + 1], 1);
	ck_assert_double_eq(metrics_top_k_accuracy(&m), 3.0 / 5);
	/* a class never seen has no accuracy, and says so */
	ck_assert(isnan(metrics_class_accuracy(&m, 2)));
	metrics_free(&m);

	/* two classes: k is 2, every row is in */
	ck_assert_int_eq(metrics_init(&m, 2), 0);
	ck_assert_int_eq(m.k, 2);
	metrics_batch_add(&m, (float[]){1, 0}, (int32_t[]){1}, 1);
	ck_assert_double_eq(metrics_top_k_accuracy(&m), 1.0);
	ck_assert_double_eq(metrics_accuracy(&m), 0.0);
	metrics_free(&m);
}
END_TEST

/* exp(1e30) overflows a double; the shifted sum never computes it. */
START_TEST(extreme_logits_stay_finite)
{
	const float row[3] = {1e30f, 0, -1e30f};
	ck_assert_double_eq(metrics_row_loss(row, 3, 0), 0.0);
	ck_assert_double_eq_tol(metrics_row_loss(row, 3, 1), 1e30, 1e30 * 1e-6);
	ck_assert_double_eq_tol(metrics_row_loss(row, 3, 2), 2e30, 2e30 * 1e-6);
	const float tie[3] = {1e30f, 1e30f, 0};
	ck_assert_double_eq_tol(metrics_row_loss(tie, 3, 1), log(2), 1e-15);
	const float span[2] = {3.4e38f, -3.4e38f};
	ck_assert(isfinite(metrics_row_loss(span, 2, 1)));
	/* infinite logits: the softmax's limit */
	const float inf[3] = {INFINITY, INFINITY, 0};
	ck_assert_double_eq_tol(metrics_row_loss(inf, 3, 0), log(2), 1e-15);
	ck_assert(isinf(metrics_row_loss(inf, 3, 2)));
	const float ninf[2] = {-INFINITY, -INFINITY};
	ck_assert_double_eq_tol(metrics_row_loss(ninf, 2, 0), log(2), 1e-15);

	metrics m;
	ck_assert_int_eq(metrics_init(&m, 3), 0);
	metrics_batch_add(&m, row, (int32_t[]){1}, 1);
	metrics_batch_add(&m, tie, (int32_t[]){0}, 1);
	ck_assert(isfinite(metrics_loss(&m)));
	ck_assert_double_eq_tol(metrics_loss(&m), (1e30 + log(2)) / 2, 1e24);
	ck_assert_double_eq(metrics_accuracy(&m), 0.5);
	metrics_free(&m);
}
END_TEST

/* A NaN anywhere in a row: wrong, outside the matrix, and a NaN loss
 * (the trainer's test pass counts it the same way). */
START_TEST(nan_rows_are_wrong_and_unplaced)
{
	const float rows[6] = {NAN, 5, 0, 0, 5, 0};
	metrics m;
	ck_assert_int_eq(metrics_init(&m, 3), 0);
	ck_assert(isnan(metrics_loss(&m)) && isnan(metrics_accuracy(&m)));
	metrics_batch_add(&m, rows, (int32_t[]){1, 1}, 2);
	ck_assert_int_eq(m.n, 2);
	ck_assert_int_eq(m.invalid, 1);
	ck_assert_int_eq(m.correct, 1);
	ck_assert_int_eq(m.top_k, 1);
	ck_assert_int_eq(m.class_n[1], 2);
	int64_t placed = 0;
	for (int i = 0; i < 9; i++)
		placed += m.confusion[i];
	ck_assert_int_eq(placed, 1);
	ck_assert_double_eq(metrics_class_accuracy(&m, 1), 0.5);
	ck_assert(isnan(metrics_loss(&m)));
	metrics_free(&m);
}
END_TEST

/* ---- the command ----------------------------------------------------------------- */

static char root[256];
enum { N_TRAIN = 128, N_TEST = 100 }; /* 100 = 3 batches of 32 and 4 in a padded one */

static char *file_read(const char *path)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "%s", path);
	char *buf = NULL;
	size_t len = 0, cap = 0, got;
	do {
		if (len + 4096 + 1 > cap)
			ck_assert_ptr_nonnull(buf = realloc(buf, cap = 2 * cap + 4096 + 1));
		got = fread(buf + len, 1, 4096, f);
		len += got;
	} while (got > 0);
	fclose(f);
	buf[len] = 0;
	return buf;
}

/* netcc ARGS from the repository root: its exit status; stdout and stderr
 * into *out and *err when asked for (free them). */
static int netcc(char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int netcc(char **out, char **err, const char *fmt, ...)
{
	char args[2048], cmd[4096], path[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s/out' 2>'%s/err'",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"), args, root,
	         root);
	int st = system(cmd);
	ck_assert_msg(WIFEXITED(st), "%s", cmd);
	if (out)
		snprintf(path, sizeof path, "%s/out", root), *out = file_read(path);
	if (err)
		snprintf(path, sizeof path, "%s/err", root), *err = file_read(path);
	return WEXITSTATUS(st);
}

static void be32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* An uncompressed IDX file of uint8: 00 00 08 rank, then big-endian dims. */
static void idx_put(const char *path, int rank, const uint32_t *dims, const uint8_t *data)
{
	uint8_t head[16] = {0, 0, 0x08, (uint8_t)rank};
	size_t count = 1;
	for (int i = 0; i < rank; i++)
		be32_put(head + 4 + 4 * i, dims[i]), count *= dims[i];
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(head, 1, 4 + 4 * (size_t)rank, f), 4 + 4 * (size_t)rank);
	ck_assert_uint_eq(fwrite(data, 1, count, f), count);
	ck_assert_int_eq(fclose(f), 0);
}

/* Images whose brightness and band position follow the label, with noise:
 * a few SGD steps learn something, which is all the comparison needs. */
static void split_put(const char *split, uint32_t n, uint32_t seed)
{
	uint8_t *img = malloc((size_t)n * 784), *lab = malloc(n);
	ck_assert(img && lab);
	for (uint32_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		lab[i] = (uint8_t)((seed >> 16) % 10);
		for (int p = 0; p < 784; p++) {
			seed = seed * 1664525u + 1013904223u;
			int band = (p / 28) / 3 == lab[i];
			img[(size_t)i * 784 + (size_t)p] = (uint8_t)(band * 200 + (seed >> 26));
		}
	}
	char path[512];
	snprintf(path, sizeof path, "%s/data/%s-images-idx3-ubyte", root, split);
	idx_put(path, 3, (uint32_t[]){n, 28, 28}, img);
	snprintf(path, sizeof path, "%s/data/%s-labels-idx1-ubyte", root, split);
	idx_put(path, 1, (uint32_t[]){n}, lab);
	free(img);
	free(lab);
}

/* The data, and one epoch of training that logs the test split. */
static void cli_setup(void)
{
	snprintf(root, sizeof root, "%s/netcc_eval_XXXXXX", test_env("TMPDIR", "/tmp"));
	ck_assert_ptr_nonnull(mkdtemp(root));
	char dir[512];
	snprintf(dir, sizeof dir, "%s/data", root);
	ck_assert_int_eq(mkdir(dir, 0777), 0);
	split_put("train", N_TRAIN, 1);
	split_put("t10k", N_TEST, 2);
	char *err;
	int rc =
	    netcc(NULL, &err, "train " MODEL " --data %s/data --epochs 1 --out %s/run", root, root);
	ck_assert_msg(rc == 0, "netcc train: exit %d\n%s", rc, err);
	free(err);
}

static void cli_teardown(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

static rt_json_doc *json_parse(const char *out)
{
	rt_json_doc *d = malloc(sizeof *d);
	rt_json_error e;
	ck_assert_ptr_nonnull(d);
	ck_assert_msg(rt_json_doc_parse(d, out, strlen(out), &e) == 0, "not JSON (%s):\n%s", e.what,
	              out);
	ck_assert_int_eq(d->root->kind, RT_JSON_OBJECT);
	return d;
}

static void json_free(rt_json_doc *d)
{
	rt_json_doc_free(d);
	free(d);
}

static const rt_json *eval_json(rt_json_doc **doc, const char *extra)
{
	char *out, *err;
	int rc = netcc(&out, &err,
	               "eval " MODEL " --weights %s/run/model.safetensors --data %s/data "
	               "--json %s",
	               root, root, extra);
	ck_assert_msg(rc == 0, "netcc eval %s: exit %d\n%s", extra, rc, err);
	*doc = json_parse(out);
	free(out);
	free(err);
	return (*doc)->root;
}

static double num(const rt_json *j, const char *key)
{
	const rt_json *v = rt_json_object_get(j, key);
	ck_assert_msg(v && v->kind == RT_JSON_NUMBER, "no number '%s'", key);
	return v->num;
}

static const char *str(const rt_json *j, const char *key)
{
	const rt_json *v = rt_json_object_get(j, key);
	ck_assert_msg(v && v->kind == RT_JSON_STRING, "no string '%s'", key);
	return v->str;
}

static const rt_json *item(const rt_json *a, int i)
{
	ck_assert(a && a->kind == RT_JSON_ARRAY && (size_t)i < a->n);
	const rt_json *v = a->first;
	while (i-- > 0)
		v = v->next;
	return v;
}

/* The matrix holds every example once; its diagonal is what is correct. */
static void confusion_consistent(const rt_json *j, int64_t n)
{
	const rt_json *c = rt_json_object_get(j, "confusion");
	const rt_json *pc = rt_json_object_get(j, "per_class");
	ck_assert(c && c->kind == RT_JSON_ARRAY && pc && pc->kind == RT_JSON_ARRAY);
	ck_assert_int_eq(c->n, 10);
	ck_assert_int_eq(pc->n, 10);
	double sum = 0, diag = 0, examples = 0;
	for (int r = 0; r < 10; r++) {
		const rt_json *row = item(c, r), *cls = item(pc, r);
		ck_assert_int_eq(row->n, 10);
		double row_sum = 0;
		for (int k = 0; k < 10; k++)
			row_sum += item(row, k)->num;
		diag += item(row, r)->num;
		sum += row_sum;
		examples += num(cls, "examples");
		ck_assert_double_eq(num(cls, "examples"), row_sum);
		ck_assert_double_eq(num(cls, "correct"), item(row, r)->num);
	}
	ck_assert_double_eq(sum, (double)n);
	ck_assert_double_eq(examples, (double)n);
	ck_assert_double_eq(num(j, "examples"), (double)n);
	ck_assert_double_eq(diag, num(j, "correct"));
	ck_assert_double_eq_tol(diag / (double)n, num(j, "accuracy"), 1e-15);
	ck_assert(num(j, "top_k_accuracy") >= num(j, "accuracy"));
}

/* The trainer's test pass and eval run the same inference graph on the
 * same weights and batches: log.csv's test error (a fraction, %.6f, exact
 * for k/100) is 1 - accuracy, and its test loss agrees to its rounding. */
START_TEST(matches_the_trainers_test_pass)
{
	char path[512];
	snprintf(path, sizeof path, "%s/run/log.csv", root);
	char *log = file_read(path);
	long long epoch;
	double tl, te, vl, ve;
	const char *row = strchr(log, '\n');
	ck_assert_ptr_nonnull(row);
	ck_assert_int_eq(sscanf(row + 1, "%lld,%lf,%lf,%lf,%lf", &epoch, &tl, &te, &vl, &ve), 5);
	free(log);
	rt_json_doc *d;
	const rt_json *j = eval_json(&d, "");
	ck_assert_double_eq(num(j, "batch"), 32);
	ck_assert_double_eq_tol(1 - num(j, "accuracy"), ve, 1e-6 * ve + 1e-12);
	ck_assert_double_eq_tol(num(j, "correct"), (1 - ve) * N_TEST, 1e-6);
	ck_assert_double_eq_tol(num(j, "loss"), vl, 5e-7 + 1e-6 * vl);
	ck_assert_double_eq(num(j, "top_k"), 5);
	ck_assert_str_eq(str(j, "split"), "t10k");
	confusion_consistent(j, N_TEST);
	json_free(d);
}
END_TEST

/* Another batch (a graph of 7, a remainder of 1), a limit and the other
 * split: whatever the batching, each example counts once. */
START_TEST(batches_limits_and_splits)
{
	rt_json_doc *d;
	const rt_json *j = eval_json(&d, "--batch 7 --limit 50");
	ck_assert_double_eq(num(j, "batch"), 7);
	confusion_consistent(j, 50);
	json_free(d);
	j = eval_json(&d, "--split train --limit 64");
	ck_assert_str_eq(str(j, "split"), "train");
	confusion_consistent(j, 64);
	json_free(d);

	/* the text report says the same */
	char *out;
	ck_assert_int_eq(netcc(&out, NULL,
	                       "eval " MODEL " --weights %s/run/model.safetensors --data %s/data",
	                       root, root),
	                 0);
	ck_assert_msg(strstr(out, "examples    100 (batch 32)") && strstr(out, "accuracy    ") &&
	                  strstr(out, "top-5       ") && strstr(out, "images/s") &&
	                  strstr(out, "class  examples  correct  accuracy") &&
	                  strstr(out, "confusion matrix (rows: true class, columns: predicted)"),
	              "%s", out);
	free(out);
}
END_TEST

/* Without a train section the batch is 100, not the frontend's 128. */
START_TEST(default_batch_without_a_train_section)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "sed '/^train {/,$d' '%s/" MODEL "' > '%s/plain.nn'",
	         test_env("NETCC_ROOT", "."), root);
	ck_assert_int_eq(system(cmd), 0);
	char *out, *err;
	int rc = netcc(&out, &err,
	               "eval %s/plain.nn --weights %s/run/model.safetensors --data %s/data --json",
	               root, root, root);
	ck_assert_msg(rc == 0, "%s", err);
	rt_json_doc *d = json_parse(out);
	const rt_json *j = d->root;
	ck_assert_double_eq(num(j, "batch"), 100);
	confusion_consistent(j, N_TEST);
	json_free(d);
	free(out);
	free(err);
}
END_TEST

static void fails(int status, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fails(int status, const char *want, const char *fmt, ...)
{
	char args[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	char *err;
	int rc = netcc(NULL, &err, "eval %s", args);
	ck_assert_msg(rc == status && strstr(err, want),
	              "eval %s: exit %d, wanted %d and '%s':\n%s", args, rc, status, want, err);
	free(err);
}

START_TEST(errors_name_the_file_and_exit_1_or_2)
{
	char want[1024];
	fails(2, "eval needs --weights", MODEL " --data %s/data", root);
	fails(2, "eval needs --data", MODEL " --weights %s/run/model.safetensors", root);
	fails(2, "eval expects one model file", "--weights w --data d");
	fails(2, "--split val: expected t10k or train", MODEL " --weights w --data d --split val");
	fails(2, "--limit 0: expected an integer", MODEL " --weights w --data d --limit 0");
	fails(2, "did you mean '--json'", MODEL " --weights w --data d --jsn");
	snprintf(want, sizeof want, "%s/none.safetensors: cannot open", root);
	fails(1, want, MODEL " --weights %s/none.safetensors --data %s/data", root, root);
	snprintf(want, sizeof want, "--data %s/nodata: No such file or directory", root);
	fails(1, want, MODEL " --weights %s/run/model.safetensors --data %s/nodata", root, root);
	/* the other split's files are missing */
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "mkdir '%s/half' && cp '%s'/data/train-* '%s/half'", root, root,
	         root);
	ck_assert_int_eq(system(cmd), 0);
	fails(1, "found neither t10k-images-idx3-ubyte nor t10k-images-idx3-ubyte.gz",
	      MODEL " --weights %s/run/model.safetensors --data %s/half", root, root);
	/* not a classifier of images */
	snprintf(cmd, sizeof cmd,
	         "printf 'version 1\\nmodel mlp(x: f32[N, 4]) -> (y: f32[N, 3])\\ngraph {\\n"
	         "    y = linear(x, 3)\\n}\\n' > '%s/mlp.nn'",
	         root);
	ck_assert_int_eq(system(cmd), 0);
	fails(1, "eval needs a model with one input [N, C, H, W] and one output [N, classes]",
	      "%s/mlp.nn --weights w --data d", root);
	/* weights of another model */
	ck_assert_int_eq(netcc(NULL, NULL, "init models/resnet20.nn -o %s/r20.safetensors", root),
	                 0);
	fails(1, "was written for model 'resnet20', not 'tiny28'",
	      MODEL " --weights %s/r20.safetensors --data %s/data", root, root);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("eval");
	TCase *u = tcase_create("metrics");
	tcase_add_test(u, three_classes_by_hand);
	tcase_add_test(u, top_k_ties_rank_the_lower_index_first);
	tcase_add_test(u, extreme_logits_stay_finite);
	tcase_add_test(u, nan_rows_are_wrong_and_unplaced);
	suite_add_tcase(s, u);
	TCase *c = tcase_create("cli");
	tcase_add_unchecked_fixture(c, cli_setup, cli_teardown);
	tcase_set_timeout(c, 120);
	tcase_add_test(c, matches_the_trainers_test_pass);
	tcase_add_test(c, batches_limits_and_splits);
	tcase_add_test(c, default_batch_without_a_train_section);
	tcase_add_test(c, errors_name_the_file_and_exit_1_or_2);
	suite_add_tcase(s, c);
	return s;
}

TEST_MAIN(suite)
