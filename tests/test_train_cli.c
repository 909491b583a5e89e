/* netcc train, run as a user would, on a small synthetic IDX dataset the
 * suite writes: it learns, logs, resumes bit for bit (after a clean stop
 * and after SIGINT mid-epoch), stops on a diverged loss without touching
 * the last good checkpoint, and names the file and the fault for bad data.
 * The schedules are checked directly, through driver.h. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "driver.h"
#include <time.h>

#include "testutil.h"

#define MODEL "tests/models/tiny28.nn"

static char root[256];      /* the suite's temporary directory */
static long ref_us;         /* how long the reference run took */
static int n_train, n_test; /* fewer under the sanitizers */

/* The reference run every resume is compared with. */
static const char *const ref_flags =
    "--epochs 3 --schedule steps:2 --factor 0.5 --warmup 1 --seed 7";

/* ---- files ------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
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
	*len = got;
	return buf;
}

static char *text_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *text_of(const char *fmt, ...)
{
	char path[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof path, fmt, ap);
	va_end(ap);
	size_t len;
	return slurp(path, &len);
}

static bool same_bytes(const char *a, const char *b)
{
	size_t la, lb;
	char *x = slurp(a, &la), *y = slurp(b, &lb);
	bool same = la > 0 && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return same;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	ck_assert_msg(system(cmd) == 0, "%s", cmd);
}

/* Runs `netcc ARGS` from the repository root; the exit status, and stdout
 * and stderr (free them; NULL pointers skip them). */
static int netcc(char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int netcc(char **out, char **err, const char *fmt, ...)
{
	char args[2048], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s/stdout' 2>'%s/stderr'",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"), args, root,
	         root);
	int st = system(cmd);
	ck_assert(WIFEXITED(st));
	char *o = text_of("%s/stdout", root), *e = text_of("%s/stderr", root);
	if (out)
		*out = o;
	else
		free(o);
	if (err)
		*err = e;
	else
		free(e);
	return WEXITSTATUS(st);
}

/* ---- the synthetic dataset ------------------------------------------------------
 * Ten classes of 28x28 textures a small conv net tells apart in a couple of
 * epochs: five stripe orientations, each bright or dim, with a random phase
 * and pixel noise so that no two images are alike. */

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static bool texture_on(int kind, int i, int j, int phase)
{
	switch (kind) {
	case 0:
		return (i + phase) % 4 < 2;
	case 1:
		return (j + phase) % 4 < 2;
	case 2:
		return (i + j + phase) % 4 < 2;
	case 3:
		return (i - j + 28 + phase) % 4 < 2;
	default:
		return ((i + phase) % 6 < 3) == ((j + phase) % 6 < 3);
	}
}

static void image_make(uint8_t *img, int h, int w, int label, uint32_t *s)
{
	int phase = (int)(lcg(s) % 4), level = label / 5 ? 250 : 110;
	for (int i = 0; i < h; i++)
		for (int j = 0; j < w; j++) {
			int v = (texture_on(label % 5, i, j, phase) ? level : 10) +
			        (int)(lcg(s) % 41) - 20;
			img[i * w + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
	p[3] = (uint8_t)v;
}

/* An IDX file of uint8 values: magic 00 00 08 rank, big-endian dims. */
static void idx_write(const char *path, int rank, const uint32_t *dims, const uint8_t *data,
                      bool gz)
{
	uint8_t head[4 + 4 * 4] = {0, 0, 0x08, (uint8_t)rank};
	size_t count = 1;
	for (int i = 0; i < rank; i++) {
		be32(head + 4 + 4 * i, dims[i]);
		count *= dims[i];
	}
	size_t hl = 4 + 4 * (size_t)rank;
	if (gz) {
		gzFile g = gzopen(path, "wb");
		ck_assert_ptr_nonnull(g);
		ck_assert_int_eq(gzwrite(g, head, (unsigned)hl), (int)hl);
		ck_assert_int_eq(gzwrite(g, data, (unsigned)count), (int)count);
		ck_assert_int_eq(gzclose(g), Z_OK);
		return;
	}
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(head, 1, hl, f), hl);
	ck_assert_uint_eq(fwrite(data, 1, count, f), count);
	ck_assert_int_eq(fclose(f), 0);
}

typedef struct split_spec {
	int n, h, w;
	int n_labels;  /* labels written (n normally) */
	int bad_label; /* >= 0: example 5 gets this label */
	bool gz;       /* the labels compressed, to go through the .gz fallback */
	bool rank4;    /* images as [N, 1, H, W] */
} split_spec;

static void split_write(const char *dir, const char *split, const split_spec *sp, uint32_t seed)
{
	uint8_t *img = malloc((size_t)sp->n * (size_t)(sp->h * sp->w));
	uint8_t *lab = malloc((size_t)sp->n + 1);
	for (int i = 0; i < sp->n; i++) {
		lab[i] = (uint8_t)(lcg(&seed) % 10);
		image_make(img + (size_t)i * (size_t)(sp->h * sp->w), sp->h, sp->w, lab[i], &seed);
	}
	if (sp->bad_label >= 0)
		lab[5] = (uint8_t)sp->bad_label;
	char path[1024];
	uint32_t idims[4] = {(uint32_t)sp->n, 1, (uint32_t)sp->h, (uint32_t)sp->w};
	snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
	if (sp->rank4)
		idx_write(path, 4, idims, img, false);
	else
		idx_write(path, 3, (uint32_t[]){idims[0], idims[2], idims[3]}, img, false);
	uint32_t ldims[1] = {(uint32_t)sp->n_labels};
	snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, split, sp->gz ? ".gz" : "");
	idx_write(path, 1, ldims, lab, sp->gz);
	free(img);
	free(lab);
}

static split_spec spec_good(int n)
{
	return (split_spec){.n = n, .h = 28, .w = 28, .n_labels = n, .bad_label = -1, .gz = true};
}

/* root/NAME with good training and test splits. */
static void data_write(const char *name)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/%s", root, name);
	ck_assert_int_eq(mkdir(dir, 0777), 0);
	split_spec tr = spec_good(n_train), te = spec_good(n_test);
	split_write(dir, "train", &tr, 1);
	split_write(dir, "t10k", &te, 2);
}

static void train_ok(const char *out, const char *extra)
{
	char *err;
	int rc = netcc(NULL, &err, "train " MODEL " --data %s/data --limit-test %d --out %s/%s %s",
	               root, n_test, root, out, extra);
	ck_assert_msg(rc == 0, "netcc train %s: exit %d:\n%s", extra, rc, err);
	free(err);
}

/* Once for the suite: the data and the uninterrupted reference run. */
static void suite_setup(void)
{
	n_train = test_sanitized() ? 256 : 512;
	n_test = test_sanitized() ? 64 : 128;
	snprintf(root, sizeof root, "%s/netcc_train_XXXXXX", test_env("TMPDIR", "/tmp"));
	ck_assert_ptr_nonnull(mkdtemp(root));
	data_write("data");
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	train_ok("ref", ref_flags);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ref_us = (b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000;
}

static void suite_teardown(void)
{
	sh("rm -rf '%s'", root);
}

/* ---- checkpoints and logs ----------------------------------------------------- */

static rt_st_file st_read(const char *fmt, const char *name)
{
	char path[1024], e[1024];
	snprintf(path, sizeof path, fmt, root, name);
	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, e, sizeof e) == 0, "%s", e);
	return f;
}

static int64_t meta_int(const rt_st_file *f, const char *key)
{
	const char *v = rt_st_meta(f, key);
	ck_assert_msg(v != NULL, "no %s in the checkpoint", key);
	return strtoll(v, NULL, 10);
}

/* log.csv without its seconds column, which timing makes differ. */
static char *log_untimed(const char *run)
{
	char *text = text_of("%s/%s/log.csv", root, run);
	char *out = malloc(strlen(text) + 1), *o = out;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *comma = strrchr(line, ',');
		ck_assert_ptr_nonnull(comma);
		o += sprintf(o, "%.*s\n", (int)(comma - line), line);
	}
	*o = 0;
	free(text);
	return out;
}

static void same_as_reference(const char *run)
{
	char a[1024], b[1024];
	snprintf(a, sizeof a, "%s/ref/model.safetensors", root);
	snprintf(b, sizeof b, "%s/%s/model.safetensors", root, run);
	ck_assert_msg(same_bytes(a, b), "%s differs from the uninterrupted run's", b);
	char *x = log_untimed("ref"), *y = log_untimed(run);
	ck_assert_str_eq(y, x);
	free(x);
	free(y);
}

START_TEST(learns_and_logs)
{
	char *log = text_of("%s/ref/log.csv", root);
	size_t hl = strlen(train_log_header);
	ck_assert_str_eq(train_log_header,
	                 "epoch,train_loss,train_error,test_loss,test_error,lr,seconds\n");
	ck_assert_msg(!strncmp(log, train_log_header, hl), "%s", log);
	double last_test_error = 1, last_loss = INFINITY, lr[4] = {0};
	int rows = 0;
	for (char *line = strtok(log + hl, "\n"); line; line = strtok(NULL, "\n")) {
		long long epoch;
		double tl, te, vl, ve, rate, sec;
		int n = sscanf(line, "%lld,%lf,%lf,%lf,%lf,%lf,%lf", &epoch, &tl, &te, &vl, &ve,
		               &rate, &sec);
		ck_assert_msg(n == 7, "row '%s'", line);
		ck_assert_int_eq(epoch, ++rows);
		ck_assert(tl > 0 && te >= 0 && te <= 1 && vl > 0 && ve >= 0 && ve <= 1 && sec > 0);
		ck_assert_msg(tl < last_loss, "the training loss rose in epoch %lld", epoch);
		last_test_error = ve;
		last_loss = tl;
		lr[rows] = rate;
	}
	ck_assert_int_eq(rows, 3);
	/* warm-up ends at the rate; steps:2 halves it after epoch 2 */
	ck_assert_double_eq_tol(lr[1], 0.1, 1e-9);
	ck_assert_double_eq_tol(lr[2], 0.1, 1e-9);
	ck_assert_double_eq_tol(lr[3], 0.05, 1e-9);
	/* chance is 90% */
	ck_assert_msg(last_test_error < 0.5, "test error %g after 3 epochs", last_test_error);
	free(log);

	/* curves.svg beside it: each curve through the three epochs, the
	 * rate's step before epoch 3 marked in both panels */
	char *svg = text_of("%s/ref/curves.svg", root);
	ck_assert_msg(strstr(svg, "<svg ") && strstr(svg, "</svg>\n"), "curves.svg: %.200s", svg);
	int curves = 0;
	for (char *c = strstr(svg, "<polyline "); c; c = strstr(c + 1, "<polyline ")) {
		char *pts = strstr(c, "points=\"") + 8;
		int points = 1;
		for (; *pts != '"'; pts++)
			points += *pts == ' ';
		ck_assert_int_eq(points, 3);
		curves++;
	}
	ck_assert_int_eq(curves, 4);
	ck_assert_ptr_nonnull(strstr(svg, ">ref</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">lr 0.05</text>"));
	free(svg);

	/* model.safetensors: exactly `netcc params`, in order, and what run loads */
	char *params;
	ck_assert_int_eq(netcc(&params, NULL, "params " MODEL), 0);
	rt_st_file w = st_read("%s/%s/model.safetensors", "ref");
	ck_assert_str_eq(rt_st_meta(&w, "format"), "netcc");
	ck_assert_str_eq(rt_st_meta(&w, "model"), "tiny28");
	char *p = params;
	for (int i = 0; i < w.n_tensors; i++) {
		size_t nl = strlen(w.tensors[i].name);
		ck_assert_msg(!strncmp(p, w.tensors[i].name, nl) && p[nl] == ' ', "tensor %d: %s",
		              i, w.tensors[i].name);
		p = strchr(p, '\n') + 1;
	}
	ck_assert_str_eq(p, "");
	rt_st_free(&w);
	free(params);
	char *out, *err;
	float x[28 * 28] = {0.5f};
	char xp[1024], e[512];
	snprintf(xp, sizeof xp, "%s/x.npy", root);
	int64_t dims[4] = {1, 1, 28, 28};
	ck_assert_int_eq(rt_npy_write(xp, RT_DTYPE_F32, 4, dims, x, e, sizeof e), 0);
	ck_assert_int_eq(netcc(&out, &err,
	                       "run " MODEL " --weights %s/ref/model.safetensors "
	                       "--input %s",
	                       root, xp),
	                 0);
	ck_assert_ptr_nonnull(strstr(out, "row 0: class"));
	free(out), free(err);

	rt_st_file c = st_read("%s/%s/checkpoint.safetensors", "ref");
	ck_assert_str_eq(rt_st_meta(&c, "format"), "netcc-checkpoint");
	ck_assert_int_eq(meta_int(&c, "epoch"), 3);
	ck_assert_int_eq(meta_int(&c, "epoch_batches"), 0);
	ck_assert_int_eq(meta_int(&c, "step"), 3 * (n_train / 32));
	ck_assert_ptr_nonnull(rt_st_find(&c, "linear0.weight.momentum"));
	rt_st_free(&c);
}
END_TEST

/* Also: [N, C, H, W] images, a padded last test batch, and --weights. */
START_TEST(stdout_shows_the_compile_command)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/rank4", root);
	ck_assert_int_eq(mkdir(dir, 0777), 0);
	split_spec tr = spec_good(64), te = spec_good(40);
	tr.rank4 = te.rank4 = true;
	split_write(dir, "train", &tr, 3);
	split_write(dir, "t10k", &te, 4);
	char *out, *err;
	int rc = netcc(&out, &err,
	               "train " MODEL " --data %s --epochs 1 --out %s/small "
	               "--weights %s/ref/model.safetensors",
	               dir, root, root);
	ck_assert_msg(rc == 0, "%s", err);
	char want[1024];
	snprintf(want, sizeof want,
	         "netcc compile " MODEL " --weights %s/small/model.safetensors -o "
	         "%s/small/libtiny28.so\n",
	         root, root);
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	snprintf(
	    want, sizeof want,
	    "loss and error by epoch in %s/small/curves.svg (the numbers in %s/small/log.csv)\n",
	    root, root);
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "epoch 1/1  train loss "));
	/* not a terminal: plain lines, no carriage returns */
	ck_assert_ptr_null(strchr(err, '\r'));
	ck_assert_ptr_nonnull(strstr(err, "64 training images in 2 batches of 32"));
	ck_assert_ptr_nonnull(strstr(err, "40 test images"));
	free(out), free(err);
}
END_TEST

START_TEST(resume_is_exact)
{
	train_ok("split", "--epochs 1 --schedule steps:2 --factor 0.5 --warmup 1 --seed 7");
	rt_st_file c = st_read("%s/%s/checkpoint.safetensors", "split");
	ck_assert_int_eq(meta_int(&c, "epoch"), 1);
	rt_st_free(&c);
	/* --out defaults to the checkpoint's directory; settings come from it */
	char *err;
	int rc = netcc(NULL, &err,
	               "train " MODEL " --data %s/data --limit-test %d --epochs 3 "
	               "--resume %s/split/checkpoint.safetensors",
	               root, n_test, root);
	ck_assert_msg(rc == 0, "%s", err);
	free(err);
	same_as_reference("split");
}
END_TEST

/* Starts netcc with stderr on a pipe and interrupts it once the first
 * progress line of epoch 1 appears: most of the epoch is still ahead. */
static int train_interrupted(const char *out)
{
	char dir[512], data[512], limit[32];
	snprintf(dir, sizeof dir, "%s/%s", root, out);
	snprintf(data, sizeof data, "%s/data", root);
	snprintf(limit, sizeof limit, "%d", n_test);
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		if (!freopen("/dev/null", "w", stdout) || chdir(test_env("NETCC_ROOT", ".")) != 0)
			_exit(99);
		const char *bin = test_env("NETCC_BIN", "build/netcc");
		execl(bin, bin, "train", MODEL, "--data", data, "--limit-test", limit, "--out", dir,
		      "--epochs", "3", "--schedule", "steps:2", "--factor", "0.5", "--warmup", "1",
		      "--seed", "7", (char *)NULL);
		_exit(98);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[512];
	bool sent = false;
	while (fgets(line, sizeof line, f))
		if (!sent && !strncmp(line, "epoch 1/3  batch ", 17)) {
			ck_assert_int_eq(kill(pid, SIGINT), 0);
			sent = true;
		}
	fclose(f);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(sent, "no progress line came");
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

START_TEST(sigint_checkpoints_mid_epoch_and_resumes_exactly)
{
	ck_assert_int_eq(train_interrupted("int"), 130);
	rt_st_file c = st_read("%s/%s/checkpoint.safetensors", "int");
	int64_t done = meta_int(&c, "epoch_batches");
	ck_assert_int_eq(meta_int(&c, "epoch"), 0);
	ck_assert_msg(done > 0 && done < n_train / 32, "stopped after batch %lld", (long long)done);
	ck_assert_int_eq(meta_int(&c, "step"), done);
	rt_st_free(&c);
	char *err;
	int rc = netcc(NULL, &err,
	               "train " MODEL " --data %s/data --limit-test %d --resume "
	               "%s/int/checkpoint.safetensors",
	               root, n_test, root);
	ck_assert_msg(rc == 0, "%s", err);
	free(err);
	same_as_reference("int");
}
END_TEST

/* Starts `netcc train` (resuming when a checkpoint exists) and SIGKILLs it
 * after delay_us, unless it finishes first: returns whether it finished. */
static bool train_killed_after(const char *out, long delay_us)
{
	char dir[512], data[512], limit[32], ck[600];
	snprintf(dir, sizeof dir, "%s/%s", root, out);
	snprintf(data, sizeof data, "%s/data", root);
	snprintf(limit, sizeof limit, "%d", n_test);
	snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", dir);
	bool resume = access(ck, F_OK) == 0;
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr) ||
		    chdir(test_env("NETCC_ROOT", ".")) != 0)
			_exit(99);
		const char *bin = test_env("NETCC_BIN", "build/netcc");
		if (resume)
			execl(bin, bin, "train", MODEL, "--data", data, "--limit-test", limit,
			      "--resume", ck, (char *)NULL);
		else
			execl(bin, bin, "train", MODEL, "--data", data, "--limit-test", limit,
			      "--out", dir, "--epochs", "3", "--schedule", "steps:2", "--factor",
			      "0.5", "--warmup", "1", "--seed", "7", (char *)NULL);
		_exit(98);
	}
	int st;
	for (long waited = 0; waited < delay_us; waited += 10000) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "train failed: %d",
			              st);
			return true;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* SIGKILL at arbitrary points, even mid-write: each restart resumes from
 * the last complete checkpoint, and the end result is the uninterrupted
 * run's, bit for bit. */
START_TEST(sigkill_anywhere_then_resume_is_exact)
{
	rt_rng r;
	rt_rng_seed(&r, (uint64_t)time(NULL));
	bool done = false;
	int kills = 0;
	/* anywhere in the first 60% of a run: each restart makes some progress */
	for (; kills < 6 && !done; kills++)
		done = train_killed_after(
		    "kill", (long)(rt_rng_next(&r) % (uint64_t)(ref_us * 6 / 10 + 1)));
	ck_assert_int_ge(kills, 2);
	while (!done)
		done = train_killed_after("kill", 600L * 1000000);
	same_as_reference("kill");
}
END_TEST

START_TEST(nan_stops_and_keeps_the_last_good_checkpoint)
{
	sh("cp -r '%s/ref' '%s/nan'", root, root);
	char *err;
	int rc = netcc(NULL, &err,
	               "train " MODEL " --data %s/data --limit-test %d --epochs 4 --lr 1e30 "
	               "--resume %s/nan/checkpoint.safetensors",
	               root, n_test, root);
	ck_assert_int_eq(rc, 1);
	char want[1024];
	snprintf(want, sizeof want, "at epoch 4, step %d; the last good checkpoint is %s/nan/",
	         3 * (n_train / 32) + 2, root);
	ck_assert_msg(strstr(err, "loss became NaN") && strstr(err, want), "%s", err);
	free(err);
	const char *files[] = {"checkpoint.safetensors", "model.safetensors", "log.csv",
	                       "curves.svg"};
	for (int i = 0; i < 4; i++) {
		char a[1024], b[1024];
		snprintf(a, sizeof a, "%s/ref/%s", root, files[i]);
		snprintf(b, sizeof b, "%s/nan/%s", root, files[i]);
		ck_assert_msg(same_bytes(a, b), "%s changed", b);
	}
	/* from scratch: nothing to keep, and it says so */
	rc = netcc(NULL, &err,
	           "train " MODEL " --data %s/data --limit-test %d --lr 1e30 --out %s/nan2", root,
	           n_test, root);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(err, "at epoch 1, step 2; no checkpoint was written"), "%s", err);
	free(err);
	char path[1024];
	struct stat st;
	snprintf(path, sizeof path, "%s/nan2/checkpoint.safetensors", root);
	ck_assert_int_ne(stat(path, &st), 0);
	/* one step an epoch: the loss of that step is finite, but the state
	 * it leaves is not (or answers NaN), and is not saved */
	rc = netcc(NULL, &err,
	           "train " MODEL " --data %s/data --limit-train 32 --lr 1e30 --out %s/nan3", root,
	           root);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(err, "became") && strstr(err, "after epoch 1") &&
	                  strstr(err, "no checkpoint was written"),
	              "%s", err);
	free(err);
	snprintf(path, sizeof path, "%s/nan3/checkpoint.safetensors", root);
	ck_assert_int_ne(stat(path, &st), 0);
}
END_TEST

/* ---- bad data ------------------------------------------------------------------ */

/* root/NAME with the good test split and a training split from sp. */
static void bad_data(const char *name, const split_spec *sp, const char *want)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/%s", root, name);
	ck_assert_int_eq(mkdir(dir, 0777), 0);
	split_spec te = spec_good(n_test);
	split_write(dir, "train", sp, 1);
	split_write(dir, "t10k", &te, 2);
	char *err;
	ck_assert_int_eq(netcc(NULL, &err, "train " MODEL " --data %s --out %s/o", dir, root), 1);
	ck_assert_msg(strstr(err, want) != NULL, "wanted '%s' in:\n%s", want, err);
	free(err);
}

START_TEST(bad_data_is_named)
{
	char want[1024];
	split_spec sp = spec_good(64);
	sp.bad_label = 12;
	snprintf(want, sizeof want,
	         "%s/badlabel/train-labels-idx1-ubyte.gz: label 12 of example 5 is outside [0, "
	         "10)",
	         root);
	bad_data("badlabel", &sp, want);

	sp = spec_good(64);
	sp.n_labels = 63;
	snprintf(want, sizeof want,
	         "%s/count/train-labels-idx1-ubyte.gz: 63 labels, but %s/count/"
	         "train-images-idx3-ubyte holds 64 images",
	         root, root);
	bad_data("count", &sp, want);

	sp = spec_good(64);
	sp.h = sp.w = 32;
	snprintf(want, sizeof want,
	         "%s/size/train-images-idx3-ubyte: images are 1x32x32 (C x H x W, from [64, 32, "
	         "32]), but the model takes 1x28x28",
	         root);
	bad_data("size", &sp, want);

	/* wrong magic: the images file of a good set, its first byte changed */
	data_write("magic");
	sh("printf '\\001' | dd of='%s/magic/t10k-images-idx3-ubyte' bs=1 count=1 conv=notrunc "
	   "2>/dev/null",
	   root);
	char *err;
	ck_assert_int_eq(netcc(NULL, &err, "train " MODEL " --data %s/magic", root), 1);
	snprintf(want, sizeof want, "%s/magic/t10k-images-idx3-ubyte: bad magic 01 00", root);
	ck_assert_msg(strstr(err, want) != NULL, "%s", err);
	free(err);

	ck_assert_int_eq(netcc(NULL, &err, "train " MODEL " --data %s/none", root), 1);
	ck_assert_msg(strstr(err, "none: No such file or directory"), "%s", err);
	free(err);
	sh("mkdir '%s/empty'", root);
	ck_assert_int_eq(netcc(NULL, &err, "train " MODEL " --data %s/empty", root), 1);
	ck_assert_msg(strstr(err, "found neither train-images-idx3-ubyte nor "
	                          "train-images-idx3-ubyte.gz"),
	              "%s", err);
	free(err);
	ck_assert_int_eq(netcc(NULL, &err,
	                       "train " MODEL " --data %s/data --limit-train 31 --out %s/o", root,
	                       root),
	                 1);
	ck_assert_msg(strstr(err, "31 training images make no whole batch of 32"), "%s", err);
	free(err);
}
END_TEST

/* ---- bad usage and bad checkpoints ---------------------------------------------- */

static void usage_fails(int status, const char *args, const char *want)
{
	char *err;
	ck_assert_int_eq(netcc(NULL, &err, "train %s", args), status);
	ck_assert_msg(strstr(err, want) != NULL, "%s: wanted '%s' in:\n%s", args, want, err);
	free(err);
}

START_TEST(usage_errors_exit_2)
{
	usage_fails(2, MODEL " --data x --epoch 3",
	            "unknown option '--epoch'; did you mean "
	            "'--epochs'?");
	usage_fails(2, MODEL, "train needs --data fashion-mnist or --data DIR");
	usage_fails(2, "--data x", "train expects one model file");
	usage_fails(2, MODEL " --data x --lr fast", "--lr fast: expected a number");
	usage_fails(2, MODEL " --data x --lr -1", "--lr -1: expected a number");
	usage_fails(2, MODEL " --data x --factor 2", "--factor 2: expected a number in (0, 1)");
	usage_fails(2, MODEL " --data x --epochs 0", "--epochs 0: expected an integer");
	usage_fails(2, MODEL " --data x --schedule cosine",
	            "--schedule 'cosine': expected steps:E1,E2,..., plateau or none");
	usage_fails(2, MODEL " --data x --schedule steps:5,3", "step epochs must increase");
	usage_fails(2, MODEL " --data x --resume a --weights b", "give one of them");
	char args[1024];
	snprintf(args, sizeof args,
	         MODEL " --data %s/data --batch 16 --resume %s/ref/checkpoint.safetensors", root,
	         root);
	usage_fails(2, args, "was trained at batch 32, and a resumed run keeps it");
}
END_TEST

/* The checkpoint of run ref with one metadata value replaced, at path. */
static void tampered(const char *path, const char *key, const char *value)
{
	rt_st_file f = st_read("%s/%s/checkpoint.safetensors", "ref");
	rt_st_entry *e = calloc((size_t)f.n_tensors, sizeof *e);
	const char **kv = calloc((size_t)f.n_meta * 2, sizeof *kv);
	ck_assert(e && kv);
	for (int i = 0; i < f.n_tensors; i++)
		e[i] = (rt_st_entry){f.tensors[i].name, f.tensors[i].dtype, f.tensors[i].rank,
		                     f.tensors[i].dims, f.tensors[i].data};
	bool found = false;
	for (int i = 0; i < f.n_meta; i++) {
		kv[2 * i] = f.meta_keys[i];
		found |= !strcmp(f.meta_keys[i], key);
		kv[2 * i + 1] = strcmp(f.meta_keys[i], key) ? f.meta_values[i] : value;
	}
	ck_assert_msg(found, "no %s in the checkpoint", key);
	char err[512];
	ck_assert_msg(rt_st_write(path, e, f.n_tensors, kv, f.n_meta, err, sizeof err) == 0, "%s",
	              err);
	free(e), free(kv);
	rt_st_free(&f);
}

START_TEST(bad_checkpoints_exit_1)
{
	/* metadata out of range, each on its own (values that overflowed or
	 * were taken at face value) */
	static const char *const bad[][2] = {
	    {"step", "9223372036854775807"},
	    {"warmup", "4611686018427387904"},
	    {"epoch_wrong", "9223372036854775807"},
	    {"epoch_loss_sum", "inf"},
	    {"epoch_seconds", "inf"},
	    {"epoch_loss_sum", "-1"},
	    {"lr", "inf"},
	    {"epoch", "100001"},
	    {"epoch_batches", "1000000"},
	    {"plateau_best", "nan"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char path[1024], args[2048], want[256];
		snprintf(path, sizeof path, "%s/tampered.safetensors", root);
		tampered(path, bad[i][0], bad[i][1]);
		snprintf(args, sizeof args, MODEL " --data %s/data --resume %s", root, path);
		snprintf(want, sizeof want, "checkpoint metadata %s = '%s' is not valid", bad[i][0],
		         bad[i][1]);
		usage_fails(1, args, want);
	}

	char args[1024], want[1024];
	sh("head -c 300 '%s/ref/checkpoint.safetensors' > '%s/cut.safetensors'", root, root);
	snprintf(args, sizeof args, MODEL " --data %s/data --resume %s/cut.safetensors", root,
	         root);
	snprintf(want, sizeof want, "%s/cut.safetensors", root);
	usage_fails(1, args, want);

	snprintf(args, sizeof args, MODEL " --data %s/data --resume %s/ref/model.safetensors", root,
	         root);
	usage_fails(1, args,
	            "holds weights, not a checkpoint: start a new run from it with "
	            "--weights");

	/* the same network under another name */
	sh("sed 's/model tiny28/model other28/' '%s/" MODEL "' > '%s/other28.nn'",
	   test_env("NETCC_ROOT", "."), root);
	snprintf(args, sizeof args,
	         "%s/other28.nn --data %s/data --resume %s/ref/checkpoint.safetensors", root, root,
	         root);
	usage_fails(1, args, "is a checkpoint of model 'tiny28', not 'other28'");

	snprintf(args, sizeof args,
	         MODEL " --data %s/data --limit-train 64 --resume %s/ref/checkpoint.safetensors",
	         root, root);
	usage_fails(1, args, "resume with the same --data and --limit-train");
}
END_TEST

/* ---- schedules ------------------------------------------------------------------ */

static lr_schedule sched_of(const char *text, double factor, int64_t patience, int64_t warmup)
{
	ir_train t;
	ir_train_defaults(&t);
	lr_schedule s;
	schedule_from_train(&s, &t);
	char err[256];
	ck_assert_msg(schedule_parse(&s, text, err, sizeof err) == 0, "%s", err);
	s.factor = factor, s.patience = patience, s.warmup = warmup;
	return s;
}

START_TEST(steps_multiply_after_the_listed_epochs)
{
	lr_schedule s = sched_of("steps:5,8", 0.1, 2, 0);
	double want[] = {1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01};
	for (int e = 1; e <= 10; e++) {
		ck_assert_double_eq_tol(schedule_step_lr(&s, 0, 10), 0.1 * want[e - 1], 1e-12);
		schedule_epoch_end(&s, e, 1.0);
	}
	char text[64];
	schedule_text(&s, text, sizeof text);
	ck_assert_str_eq(text, "steps:5,8");
	char err[256];
	ck_assert_int_ne(schedule_parse(&s, "steps:", err, sizeof err), 0);
	ck_assert_int_ne(schedule_parse(&s, "steps:3,x", err, sizeof err), 0);
	ck_assert_int_ne(schedule_parse(&s, "steps:0", err, sizeof err), 0);
}
END_TEST

START_TEST(plateau_waits_patience_epochs)
{
	lr_schedule s = sched_of("plateau", 0.5, 2, 0);
	/* falls, stalls twice (drop), stalls once, improves, stalls twice (drop) */
	double loss[] = {1.0, 0.8, 0.8, 0.79999, 0.9, 0.5, 0.6, 0.5};
	bool dropped[] = {0, 0, 0, 1, 0, 0, 0, 1};
	for (int e = 0; e < 8; e++)
		ck_assert_msg(schedule_epoch_end(&s, e + 1, loss[e]) == dropped[e], "epoch %d",
		              e + 1);
	ck_assert_double_eq_tol(s.lr, 0.1 * 0.25, 1e-12);
	ck_assert(s.best == 0.5);
}
END_TEST

START_TEST(warmup_ramps_per_step)
{
	lr_schedule s = sched_of("none", 0.1, 2, 2);
	/* two epochs of 5 steps: lr / 10, 2 lr / 10, ..., lr, then lr */
	for (int step = 0; step < 10; step++)
		ck_assert_double_eq_tol(schedule_step_lr(&s, step, 5), 0.1 * (step + 1) / 10,
		                        1e-12);
	ck_assert_double_eq_tol(schedule_step_lr(&s, 10, 5), 0.1, 1e-12);
	ck_assert_int_eq(schedule_epoch_end(&s, 1, 0.5), false);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("train_cli");
	TCase *t = tcase_create("cli");
	tcase_add_unchecked_fixture(t, suite_setup, suite_teardown);
	tcase_set_timeout(t, 300);
	tcase_add_test(t, learns_and_logs);
	tcase_add_test(t, stdout_shows_the_compile_command);
	tcase_add_test(t, resume_is_exact);
	tcase_add_test(t, sigint_checkpoints_mid_epoch_and_resumes_exactly);
	tcase_add_test(t, sigkill_anywhere_then_resume_is_exact);
	tcase_add_test(t, nan_stops_and_keeps_the_last_good_checkpoint);
	tcase_add_test(t, bad_data_is_named);
	tcase_add_test(t, usage_errors_exit_2);
	tcase_add_test(t, bad_checkpoints_exit_1);
	suite_add_tcase(s, t);
	TCase *u = tcase_create("schedule");
	tcase_add_test(u, steps_multiply_after_the_listed_epochs);
	tcase_add_test(u, plateau_waits_patience_epochs);
	tcase_add_test(u, warmup_ramps_per_step);
	suite_add_tcase(s, u);
	return s;
}

TEST_MAIN(suite)
