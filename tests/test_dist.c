/* Data-parallel netcc train under Open MPI's mpirun, two ranks of one
 * thread on this machine: every rank holds the same weights after every
 * step (and the check that says so can fail), runs repeat bit for bit, one
 * rank is exactly the plain run, two ranks average gradients like one
 * process on the whole batch, a resumed run is the uninterrupted one, and
 * a rank that dies or hangs ends the job instead of hanging it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "runtime.h"
#include "testutil.h"

#define MODEL "tests/models/tiny28.nn"
#define DATA  "--data fashion-mnist --limit-train 256 --limit-test 64 --seed 3"

static char root[256];

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	*len = 0;
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = 0;
	fclose(f);
	return buf;
}

static bool same_file(const char *a, const char *b)
{
	char pa[512], pb[512];
	snprintf(pa, sizeof pa, "%s/%s", root, a);
	snprintf(pb, sizeof pb, "%s/%s", root, b);
	size_t la, lb;
	char *x = slurp(pa, &la), *y = slurp(pb, &lb);
	bool same = la > 0 && la == lb && !memcmp(x, y, la);
	free(x);
	free(y);
	return same;
}

/* netcc train ARGS on ranks processes (0: without mpirun); its exit
 * status, with stderr in *err. */
static int train(int ranks, const char *env, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int train(int ranks, const char *env, char **err, const char *fmt, ...)
{
	char args[1024], launcher[256] = "", cmd[2048], path[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	if (ranks)
		snprintf(launcher, sizeof launcher,
		         "timeout 300 mpirun --allow-run-as-root --oversubscribe -np %d ", ranks);
	snprintf(path, sizeof path, "%s/stderr.txt", root);
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && %s NETCC_THREADS=1 %s '%s' train %s > /dev/null 2> '%s'",
	         test_env("NETCC_ROOT", "."), env ? env : "", launcher,
	         test_env("NETCC_BIN", "build/netcc"), args, path);
	int rc = system(cmd);
	size_t len;
	char *e = slurp(path, &len);
	if (err)
		*err = e;
	else
		free(e);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static void train_ok(int ranks, const char *env, const char *out, const char *extra)
{
	char *err;
	int rc = train(ranks, env, &err, MODEL " " DATA " --out %s/%s %s", root, out, extra);
	ck_assert_msg(rc == 0, "%d ranks, %s: exit %d\n%s", ranks, extra, rc, err);
	free(err);
}

static void setup(void)
{
	snprintf(root, sizeof root, "/tmp/netcc_dist_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	/* containers often forbid the cross-memory attach of Open MPI's
	 * shared-memory transport; copying through the segment always works */
	setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
}

static void teardown(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(ranks_agree_every_step_and_runs_repeat)
{
	train_ok(2, "NETCC_DIST_VERIFY=1", "a", "--epochs 2 --batch 32");
	train_ok(2, "NETCC_DIST_VERIFY=1", "b", "--epochs 2 --batch 32");
	ck_assert(same_file("a/model.safetensors", "b/model.safetensors"));
	/* each element is summed over ranks in rank order whatever the
	 * buckets: 2 KB buckets (many, started while backward goes on) give
	 * the bits one bucket gives */
	train_ok(2, "NETCC_DIST_VERIFY=1 NETCC_DIST_BUCKET_BYTES=2048", "c",
	         "--epochs 2 --batch 32");
	ck_assert(same_file("a/model.safetensors", "c/model.safetensors"));
}
END_TEST

/* The check above is no formality: without the all-reduce it fails. */
START_TEST(the_agreement_check_can_fail)
{
	char *err;
	int rc = train(2, "NETCC_DIST_VERIFY=1 NETCC_DIST_FAULT=skip-reduce", &err,
	               MODEL " " DATA " --out %s/c --epochs 1 --batch 32", root);
	ck_assert_int_ne(rc, 0);
	ck_assert_msg(strstr(err, "the ranks' weights differ after step 1"), "%s", err);
	free(err);
}
END_TEST

START_TEST(one_rank_is_the_plain_run)
{
	train_ok(0, NULL, "plain", "--epochs 1 --batch 32");
	train_ok(1, NULL, "one", "--epochs 1 --batch 32");
	ck_assert(same_file("plain/model.safetensors", "one/model.safetensors"));
}
END_TEST

/* The largest relative difference (max-norm) between the tensors of two
 * runs' model.safetensors; *bitwise: all equal. */
static double max_rel(const char *ra, const char *rb, bool *bitwise)
{
	char a[512], b[512], e[256];
	rt_st_file fa, fb;
	snprintf(a, sizeof a, "%s/%s/model.safetensors", root, ra);
	snprintf(b, sizeof b, "%s/%s/model.safetensors", root, rb);
	ck_assert_msg(rt_st_read(a, &fa, e, sizeof e) == 0, "%s", e);
	ck_assert_msg(rt_st_read(b, &fb, e, sizeof e) == 0, "%s", e);
	ck_assert_int_eq(fa.n_tensors, fb.n_tensors);
	double worst = 0;
	*bitwise = true;
	for (int i = 0; i < fa.n_tensors; i++) {
		const rt_st_tensor *x = &fa.tensors[i], *y = rt_st_find(&fb, x->name);
		ck_assert_ptr_nonnull(y);
		ck_assert_uint_eq(x->count, y->count);
		double rel = test_rel_err(y->data, x->data, x->count);
		worst = rel > worst ? rel : worst;
		*bitwise &= !memcmp(x->data, y->data, x->count * sizeof(float));
	}
	rt_st_free(&fa);
	rt_st_free(&fb);
	return worst;
}

/* Without BatchNorm nothing depends on how a batch is split: two ranks of
 * 16 take the steps one process takes on 32, to rounding. */
START_TEST(two_ranks_average_like_one_process)
{
	char model[512], cmd[1024];
	snprintf(model, sizeof model, "%s/nobn.nn", root);
	snprintf(cmd, sizeof cmd,
	         "sed 's/y = batchnorm(conv(x, c, 3, s, 1, bias = false))/"
	         "y = conv(x, c, 3, s, 1)/' '%s/" MODEL "' > '%s'",
	         test_env("NETCC_ROOT", "."), model);
	ck_assert_int_eq(system(cmd), 0);
	for (int ranks = 1; ranks <= 2; ranks++) {
		char *err;
		int rc = train(ranks == 1 ? 0 : 2, NULL, &err,
		               "%s " DATA " --out %s/r%d --epochs 1 --global-batch 32 --lr 0.05",
		               model, root, ranks);
		ck_assert_msg(rc == 0, "%s", err);
		free(err);
	}
	bool bitwise;
	ck_assert_double_lt(max_rel("r1", "r2", &bitwise), 1e-4);
	/* and not trivially: the sums were taken in another order */
	ck_assert(!bitwise);
}
END_TEST

/* With --sync-bn, BatchNorm too sees the whole batch: two ranks of 16
 * match one process of 32 over five steps, running statistics included;
 * each rank's own statistics (the default) do not. */
START_TEST(sync_bn_matches_one_process)
{
	static const char *const runs[][2] = {{"one", ""}, {"sync", "--sync-bn"}, {"local", ""}};
	for (int i = 0; i < 3; i++) {
		char *err;
		int rc = train(i ? 2 : 0, NULL, &err,
		               MODEL " --data fashion-mnist --limit-train 160 --limit-test 64 "
		                     "--seed 3 --epochs 1 --global-batch 32 --out %s/%s %s",
		               root, runs[i][0], runs[i][1]);
		ck_assert_msg(rc == 0, "%s: %s", runs[i][0], err);
		free(err);
	}
	bool bitwise;
	ck_assert_double_lt(max_rel("one", "sync", &bitwise), 1e-4);
	ck_assert_double_gt(max_rel("one", "local", &bitwise), 1e-2);
}
END_TEST

START_TEST(a_resumed_run_is_the_uninterrupted_one)
{
	train_ok(2, NULL, "full", "--epochs 2 --batch 32");
	train_ok(2, NULL, "part", "--epochs 1 --batch 32");
	char extra[512];
	snprintf(extra, sizeof extra, "--epochs 2 --resume %s/part/checkpoint.safetensors", root);
	train_ok(2, NULL, "part", extra);
	ck_assert(same_file("full/model.safetensors", "part/model.safetensors"));

	/* on another number of ranks: the same data order, and a warning */
	char *err;
	int rc = train(0, NULL, &err,
	               MODEL " " DATA " --out %s/part --epochs 3 --resume "
	                     "%s/part/checkpoint.safetensors",
	               root, root);
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_msg(strstr(err, "was written by a run on 2 ranks, this one has 1"), "%s", err);
	free(err);
}
END_TEST

START_TEST(a_dead_rank_ends_the_job)
{
	char *err;
	int rc = train(2, "NETCC_DIST_FAULT=kill:1:3", &err,
	               MODEL " " DATA " --out %s/k --epochs 2 --batch 32", root);
	ck_assert_msg(rc != 0 && rc != 124, "exit %d (124: it hung)\n%s", rc, err);
	ck_assert_msg(strstr(err, "rank 1"), "%s", err);
	free(err);
}
END_TEST

/* One that is alive but stuck: the others stop waiting after the timeout. */
START_TEST(a_stuck_rank_times_out)
{
	char *err;
	int rc = train(2, "NETCC_DIST_TIMEOUT=3 NETCC_DIST_FAULT=hang:1:3", &err,
	               MODEL " " DATA " --out %s/h --epochs 2 --batch 32", root);
	ck_assert_msg(rc != 0 && rc != 124, "exit %d (124: it hung)\n%s", rc, err);
	ck_assert_msg(strstr(err, "rank 0: no answer from the other ranks for 3 s"), "%s", err);
	free(err);
}
END_TEST

START_TEST(a_global_batch_must_split_evenly)
{
	char *err;
	int rc = train(2, NULL, &err, MODEL " " DATA " --out %s/u --global-batch 33", root);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(err, "a global batch of 33 does not split evenly over 2 ranks"), "%s",
	              err);
	free(err);
	rc = train(0, NULL, &err, MODEL " " DATA " --out %s/u --global-batch 32 --batch 32", root);
	ck_assert_int_eq(rc, 2);
	ck_assert_msg(strstr(err, "--batch and --global-batch name the same thing"), "%s", err);
	free(err);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("dist");
	TCase *t = tcase_create("mpirun");
	tcase_set_timeout(t, 900);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, ranks_agree_every_step_and_runs_repeat);
	tcase_add_test(t, the_agreement_check_can_fail);
	tcase_add_test(t, one_rank_is_the_plain_run);
	tcase_add_test(t, two_ranks_average_like_one_process);
	tcase_add_test(t, sync_bn_matches_one_process);
	tcase_add_test(t, a_resumed_run_is_the_uninterrupted_one);
	tcase_add_test(t, a_dead_rank_ends_the_job);
	tcase_add_test(t, a_stuck_rank_times_out);
	tcase_add_test(t, a_global_batch_must_split_evenly);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
