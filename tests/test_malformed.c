/* Every malformed weights file and array in tests/malformed is refused by
 * the command line with its expected message and exit status 1. */
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* Runs netcc with FILE in the place %s marks; compares its first error line. */
static int check_dir(const char *sub, const char *ext, const char *args)
{
	char dir[1024];
	const char *root = test_env("NETCC_ROOT", ".");
	snprintf(dir, sizeof dir, "%s/tests/malformed/%s", root, sub);
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name), el = strlen(ext);
		if (len <= el || strcmp(e->d_name + len - el, ext) != 0)
			continue;
		char rel[512], cmd[4096], errpath[2048], out[256];
		snprintf(rel, sizeof rel, "tests/malformed/%s/%s", sub, e->d_name);
		snprintf(errpath, sizeof errpath, "%s/%.*s.err", dir, (int)(len - el), e->d_name);
		snprintf(out, sizeof out, "/tmp/netcc_malformed_%d.txt", (int)getpid());
		int k = snprintf(cmd, sizeof cmd, "cd '%s' && '%s' ", root,
		                 test_env("NETCC_BIN", "build/netcc"));
		k += snprintf(cmd + k, sizeof cmd - (size_t)k, args, rel);
		snprintf(cmd + k, sizeof cmd - (size_t)k, " >/dev/null 2>'%s'", out);
		int st = system(cmd);
		char *got = test_slurp(out, NULL), *want = test_slurp(errpath, NULL);
		unlink(out);
		char prefix[600];
		snprintf(prefix, sizeof prefix, "netcc: error: %s: %s", rel, want);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: exit %d", rel, st);
		/* warnings may come first (random weights for the arrays' runs) */
		const char *first = strstr(got, "netcc: error: ");
		ck_assert_msg(first && strncmp(first, prefix, strlen(prefix)) == 0,
		              "%s:\ngot  %swant %s", rel, got, prefix);
		free(got);
		free(want);
		n++;
	}
	closedir(d);
	return n;
}

START_TEST(weights_files)
{
	ck_assert_int_ge(check_dir("weights", ".safetensors",
	                           "run models/resnet20.nn --weights %s --input "
	                           "examples/data/ankle_boot.npy"),
	                 8);
}
END_TEST

START_TEST(arrays)
{
	ck_assert_int_ge(check_dir("npy", ".npy", "run models/resnet20.nn --input %s"), 6);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("malformed");
	TCase *t = tcase_create("files");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, weights_files);
	tcase_add_test(t, arrays);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
