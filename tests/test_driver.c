/* The netcc command line, run as a user would: outputs, exit statuses and
 * the messages for bad input. */
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"
#include "testutil.h"

static char tmpdir[256];

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/netcc_driver_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = 0;
	fclose(f);
	return buf;
}

/* Runs `netcc ARGS` from the repository root; returns the exit status and
 * the captured stdout and stderr (free them). */
static int netcc(char **out, char **err, const char *fmt, ...)
{
	char args[2048], cmd[4096], op[512], ep[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(op, sizeof op, "%s/stdout", tmpdir);
	snprintf(ep, sizeof ep, "%s/stderr", tmpdir);
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s' 2>'%s'", test_env("NETCC_ROOT", "."),
	         test_env("NETCC_BIN", "build/netcc"), args, op, ep);
	int st = system(cmd);
	ck_assert(WIFEXITED(st));
	*out = slurp(op);
	*err = slurp(ep);
	return WEXITSTATUS(st);
}

static const char *last_line(char *text, int from_end)
{
	size_t n = strlen(text);
	while (n && text[n - 1] == '\n')
		text[--n] = 0;
	for (int k = 0; k < from_end; k++) {
		char *nl = memrchr(text, '\n', n);
		if (!nl)
			return text;
		if (k == from_end - 1)
			return nl + 1;
		n = (size_t)(nl - text);
		*nl = 0;
	}
	return text;
}

START_TEST(summary_ends_with_totals)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "summary models/resnet18.nn"), 0);
	char *copy = strdup(out);
	ck_assert_str_eq(last_line(copy, 1), "macs: 1814073344");
	free(copy);
	copy = strdup(out);
	ck_assert_str_eq(last_line(copy, 2), "params: 11689512");
	free(copy);
	ck_assert_ptr_nonnull(strstr(out, "cbr0.conv0"));
	free(out);
	free(err);
	ck_assert_int_eq(netcc(&out, &err, "summary models/resnet18.nn --batch 4"), 0);
	ck_assert_ptr_nonnull(strstr(out, "macs: 7256293376\n"));
	free(out);
	free(err);
}
END_TEST

START_TEST(params_lists_buffers_in_order)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "params models/resnet20.nn"), 0);
	ck_assert(strncmp(out, "cbr0.conv0.weight [16,1,3,3]\ncbr0.batchnorm0.weight [16]\n", 56) ==
	          0);
	ck_assert_ptr_nonnull(strstr(out, "cbr0.batchnorm0.running_var [16]\n"));
	ck_assert_ptr_nonnull(strstr(out, "linear0.weight [10,64]\nlinear0.bias [10]\n"));
	int lines = 0;
	for (char *p = out; *p; p++)
		lines += *p == '\n';
	ck_assert_int_eq(lines, 19 * 5 + 2); /* conv + 4 BN tensors per layer, linear */
	free(out);
	free(err);
}
END_TEST

static rt_st_file read_weights(const char *name)
{
	char path[512], e[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, e, sizeof e) == 0, "%s", e);
	return f;
}

START_TEST(init_is_he_and_deterministic)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/a.st --seed 3", tmpdir),
	                 0);
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/b.st --seed 3", tmpdir),
	                 0);
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/c.st --seed 4", tmpdir),
	                 0);
	free(out), free(err);
	rt_st_file a = read_weights("a.st"), b = read_weights("b.st"), c = read_weights("c.st");
	ck_assert_int_eq(a.size, b.size);
	ck_assert(memcmp(a.image, b.image, a.size) == 0);
	ck_assert(memcmp(a.image, c.image, a.size) != 0);
	ck_assert_str_eq(rt_st_meta(&a, "model"), "resnet20");

	/* 64x64x3x3: std sqrt(2 / 576); BatchNorm starts as the identity. */
	const rt_st_tensor *w = rt_st_find(&a, "stage2.basic1.cbr0.conv0.weight");
	ck_assert_ptr_nonnull(w);
	double sum = 0, sq = 0;
	for (size_t i = 0; i < w->count; i++) {
		double v = ((const float *)w->data)[i];
		sum += v;
		sq += v * v;
	}
	double mean = sum / (double)w->count, std = sqrt(sq / (double)w->count - mean * mean);
	ck_assert_double_lt(fabs(mean), 0.01);
	ck_assert_double_lt(fabs(std / sqrt(2.0 / 576) - 1), 0.03);
	const char *ones[] = {"cbr0.batchnorm0.weight", "cbr0.batchnorm0.running_var"};
	const char *zeros[] = {"cbr0.batchnorm0.bias", "cbr0.batchnorm0.running_mean",
	                       "linear0.bias"};
	for (int k = 0; k < 2; k++)
		ck_assert_float_eq(((const float *)rt_st_find(&a, ones[k])->data)[5], 1.0f);
	for (int k = 0; k < 3; k++)
		ck_assert_float_eq(((const float *)rt_st_find(&a, zeros[k])->data)[3], 0.0f);
	rt_st_free(&a);
	rt_st_free(&b);
	rt_st_free(&c);
}
END_TEST

START_TEST(run_writes_output)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/w.st", tmpdir), 0);
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/resnet20.nn --weights %s/w.st --input "
	                       "examples/data/ankle_boot.npy -o %s/y.npy --reference",
	                       tmpdir, tmpdir),
	                 0);
	free(out), free(err);
	char path[512], e[256];
	snprintf(path, sizeof path, "%s/y.npy", tmpdir);
	rt_array y;
	ck_assert_msg(rt_npy_read(path, &y, e, sizeof e) == 0, "%s", e);
	ck_assert_int_eq(y.rank, 2);
	ck_assert_int_eq(y.dims[0], 1);
	ck_assert_int_eq(y.dims[1], 10);
	/* Printing instead of -o shows the same numbers. */
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/resnet20.nn --weights %s/w.st --input "
	                       "examples/data/ankle_boot.npy",
	                       tmpdir),
	                 0);
	char first[32];
	snprintf(first, sizeof first, "y [1,10]: %.6g ", ((float *)y.data)[0]);
	ck_assert_msg(strncmp(out, first, strlen(first)) == 0, "%s vs %s", out, first);
	free(out), free(err);
	rt_array_free(&y);
}
END_TEST

START_TEST(model_errors_exit_1_with_location)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "ir tests/errors/unknown_keyword.nn"), 1);
	ck_assert_ptr_nonnull(strstr(err, "tests/errors/unknown_keyword.nn:4:23: error: "));
	ck_assert_ptr_nonnull(strstr(err, "did you mean 'stride'?"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "summary %s/missing.nn", tmpdir), 1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "summary models"), 1);
	ck_assert_ptr_nonnull(strstr(err, "cannot read models"));
	free(out), free(err);
}
END_TEST

START_TEST(usage_errors_exit_2)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "sumary models/resnet20.nn"), 2);
	ck_assert_ptr_nonnull(strstr(err, "did you mean 'summary'?"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "summary models/resnet20.nn --bach 2"), 2);
	ck_assert_ptr_nonnull(strstr(err, "did you mean '--batch'?"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "summary models/resnet20.nn --batch 0"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--batch 0"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "help"), 0);
	ck_assert_ptr_nonnull(strstr(out, "  summary   layer table"));
	free(out), free(err);
	/* names whose symbols are the C library's or the runtime's */
	static const char *const taken[] = {"pthread", "rt_instance", "rt_model", "rt_threads"};
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(netcc(&out, &err,
		                       "compile models/resnet20.nn --name %s -o %s/x.so", taken[i],
		                       tmpdir),
		                 2);
		ck_assert_msg(strstr(err, "would define") && strstr(err, taken[i]), "%s", err);
		free(out), free(err);
	}
}
END_TEST

START_TEST(bad_weights_are_named)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "init models/plain20.nn -o %s/w.st", tmpdir), 0);
	free(out), free(err);
	/* plain20 and resnet20 share names and shapes; resnet32 does not. */
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/resnet32.nn --weights %s/w.st --input "
	                       "examples/data/ankle_boot.npy",
	                       tmpdir),
	                 1);
	ck_assert_ptr_nonnull(strstr(err, "missing tensor 'stage0.basic3.cbr0.conv0.weight'"));
	ck_assert_ptr_nonnull(strstr(err, "written for model 'plain20'"));
	free(out), free(err);

	/* Truncate the file: the reader says what is wrong. */
	char path[512];
	snprintf(path, sizeof path, "%s/w.st", tmpdir);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(truncate(path, st.st_size - 100), 0);
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/plain20.nn --weights %s/w.st --input "
	                       "examples/data/ankle_boot.npy",
	                       tmpdir),
	                 1);
	ck_assert_ptr_nonnull(strstr(err, "w.st"));
	ck_assert_ptr_nonnull(strstr(err, "linear0"));
	free(out), free(err);
}
END_TEST

START_TEST(nonfinite_weights_refused)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/w.st", tmpdir), 0);
	free(out), free(err);
	rt_st_file f = read_weights("w.st");
	rt_st_entry *e = calloc((size_t)f.n_tensors, sizeof *e);
	for (int i = 0; i < f.n_tensors; i++)
		e[i] = (rt_st_entry){f.tensors[i].name, f.tensors[i].dtype, f.tensors[i].rank,
		                     f.tensors[i].dims, f.tensors[i].data};
	float *bad = malloc(f.tensors[0].count * sizeof(float));
	memcpy(bad, f.tensors[0].data, f.tensors[0].count * sizeof(float));
	bad[7] = NAN;
	e[0].data = bad;
	char path[512], msg[256];
	snprintf(path, sizeof path, "%s/nan.st", tmpdir);
	ck_assert_int_eq(rt_st_write(path, e, f.n_tensors, NULL, 0, msg, sizeof msg), 0);
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/resnet20.nn --weights %s/nan.st --input "
	                       "examples/data/ankle_boot.npy",
	                       tmpdir),
	                 1);
	ck_assert_ptr_nonnull(strstr(err, "tensor 'cbr0.conv0.weight' holds NaN at index 7"));
	free(out), free(err);
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "run models/resnet20.nn --weights %s/nan.st --allow-nonfinite --input "
	          "examples/data/ankle_boot.npy",
	          tmpdir),
	    0);
	free(out), free(err);
	free(bad);
	free(e);
	rt_st_free(&f);
}
END_TEST

START_TEST(bad_inputs_and_outputs)
{
	char *out, *err;
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "run models/resnet20.nn --input examples/data/ankle_boot.npy --batch 2"),
	    1);
	ck_assert_ptr_nonnull(
	    strstr(err, "array of shape [1,1,28,28], but input 'x' is [2,1,28,28]"));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "run models/resnet20.nn --input models/resnet20.nn"), 1);
	ck_assert_ptr_nonnull(strstr(err, "models/resnet20.nn"));
	free(out), free(err);
	/* A failed write leaves nothing behind. */
	ck_assert_int_eq(netcc(&out, &err,
	                       "run models/resnet20.nn --input examples/data/ankle_boot.npy -o "
	                       "%s/nodir/y.npy",
	                       tmpdir),
	                 1);
	free(out), free(err);
	char path[512];
	snprintf(path, sizeof path, "%s/nodir", tmpdir);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* Evaluation that nests deep ends in an error with a location, also on a
 * stack far smaller than the default (ulimit -s 512 KiB), never in a
 * crash: the fixtures that pass every other limit, and a model just
 * inside the depth limit, which the default stack evaluates. */
START_TEST(deep_evaluation_never_crashes)
{
	if (test_sanitized()) /* ASan's frames are larger: its own run covers the default stack */
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/deep.nn", tmpdir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 10])\n"
	           "block b(x, n) -> y {\n    k = ");
	for (int i = 0; i < 64; i++)
		fputc('-', f);
	fprintf(f,
	        "1\n    y = x\n    if n > 0 { y = b(x, n - 1) }\n}\n"
	        "graph {\n    h = b(x, 62)\n    y = linear(flatten(global_avgpool(h)), 10)\n}\n");
	ck_assert_int_eq(fclose(f), 0);
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "ir %s", path), 0);
	free(out), free(err);
	const char *const files[] = {"tests/errors/eval_chain_too_deep.nn",
	                             "tests/errors/eval_member_chain_too_deep.nn",
	                             "tests/errors/eval_recursion_too_deep.nn", path};
	for (int i = 0; i < 4; i++) {
		char cmd[2048];
		snprintf(cmd, sizeof cmd,
		         "cd '%s' && ulimit -s 512 && '%s' ir '%s' >/dev/null 2>'%s/deep.txt'",
		         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"),
		         files[i], tmpdir);
		int st = system(cmd);
		snprintf(cmd, sizeof cmd, "%s/deep.txt", tmpdir);
		char *msg = slurp(cmd);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(msg, ": error: ") &&
		                  strstr(msg, "evaluation nests"),
		              "%s on a 512 KiB stack: status %d:\n%s", files[i], st, msg);
		free(msg);
	}
}
END_TEST

/* netcc ir on path: its exit status and peak resident memory in KiB */
static int ir_rss(const char *path, long *kib)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(99);
		execl(test_env("NETCC_BIN", "build/netcc"), "netcc", "ir", path, (char *)NULL);
		_exit(98);
	}
	int st;
	struct rusage ru;
	ck_assert_int_eq(wait4(pid, &st, 0, &ru), pid);
	*kib = ru.ru_maxrss;
	ck_assert_msg(WIFEXITED(st), "netcc ir %s: killed by signal %d", path, WTERMSIG(st));
	return WEXITSTATUS(st);
}

/* Files inside every limit that used to exhaust memory end in an error
 * with peak memory under 512 MB: blocks calling each other twice per level
 * (2^29 calls), with 250-character names, and 16 MiB of ';'. */
START_TEST(hostile_files_stay_under_512_mb)
{
	if (test_sanitized()) /* ASan's shadow memory is not the compiler's */
		return;
	char path[512];
	long kib;
	snprintf(path, sizeof path, "%s/tests/errors/evaluation_too_much_memory.nn",
	         test_env("NETCC_ROOT", "."));
	ck_assert_int_eq(ir_rss(path, &kib), 1);
	ck_assert_msg(kib < 512 * 1024, "%ld KiB", kib);
	snprintf(path, sizeof path, "%s/long.nn", tmpdir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	char name[251];
	memset(name, 'B', 250);
	name[250] = 0;
	fprintf(f, "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 10])\n");
	for (int i = 0; i < 24; i++)
		fprintf(f, "block %s%d(x) -> y { y = %s%d(%s%d(x)) }\n", name, i, name, i + 1, name,
		        i + 1);
	fprintf(f,
	        "block %s24(x) -> y { y = x }\ngraph {\n    h = %s0(x)\n"
	        "    y = linear(flatten(global_avgpool(h)), 10)\n}\n",
	        name, name);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(ir_rss(path, &kib), 1);
	ck_assert_msg(kib < 512 * 1024, "long names: %ld KiB", kib);
	snprintf(path, sizeof path, "%s/semis.nn", tmpdir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "version 1\nmodel m(x: f32[N, 3, 8, 8]) -> (y: f32[N, 10])\ngraph {\n");
	for (int i = 0; i < (16 << 20) - 200; i++)
		fputc(';', f);
	fprintf(f, "\n    y = linear(flatten(global_avgpool(x)), 10)\n}\n");
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(ir_rss(path, &kib), 1);
	ck_assert_msg(kib < 512 * 1024, "16 MiB of ';': %ld KiB", kib);
}
END_TEST

/* Files in dir whose name holds ".tmp.": a writer's temporaries */
static int temporaries(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".tmp.") != NULL;
	closedir(d);
	return n;
}

/* `netcc compile` of ResNet-50 into dir, killed by sig after ms */
static void compile_killed(const char *dir, int sig, int ms)
{
	char out[1024];
	snprintf(out, sizeof out, "%s/libr50.so", dir);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr) ||
		    chdir(test_env("NETCC_ROOT", ".")) != 0)
			_exit(99);
		execl(test_env("NETCC_BIN", "build/netcc"), "netcc", "compile",
		      "models/resnet50.nn", "-o", out, (char *)NULL);
		_exit(98);
	}
	usleep((useconds_t)ms * 1000);
	kill(pid, sig);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
}

/* Outputs that are not regular files are refused, not replaced (-o
 * /dev/null replaced the device, as root); an output named like its own
 * header or weights file is refused; an interrupted compile (SIGINT,
 * SIGTERM, at any moment) leaves no temporary, and what a SIGKILL leaves
 * the next compile of that output removes; the outputs are always whole. */
START_TEST(outputs_are_never_clobbered_or_left_half)
{
	char *out, *err, path[1024];
	snprintf(path, sizeof path, "%s/link.so", tmpdir);
	ck_assert_int_eq(symlink("/etc/hostname", path), 0);
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet20.nn -o %s", path), 1);
	ck_assert_msg(strstr(err, "is a symbolic link, not a regular file"), "%s", err);
	free(out), free(err);
	snprintf(path, sizeof path, "%s/fifo.so", tmpdir);
	ck_assert_int_eq(mkfifo(path, 0644), 0);
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet20.nn --emit=llvm -o %s", path),
	                 1);
	ck_assert_msg(strstr(err, "is a FIFO"), "%s", err);
	free(out), free(err);
	struct stat st;
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet20.nn -o /dev/null"), 1);
	ck_assert_msg(strstr(err, "/dev/null is a character device"), "%s", err);
	ck_assert(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet20.nn -o %s/resnet20.h", tmpdir),
	                 1);
	ck_assert_msg(strstr(err, "is where the header resnet20.h goes"), "%s", err);
	free(out), free(err);
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "compile models/resnet20.nn --weights-file -o %s/resnet20.safetensors", tmpdir),
	    1);
	ck_assert_msg(strstr(err, "--weights-file writes the weights there"), "%s", err);
	free(out), free(err);
	ck_assert_int_eq(temporaries(tmpdir), 0);

	char dir[512];
	snprintf(dir, sizeof dir, "%s/kill", tmpdir);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	static const int sigs[] = {SIGINT, SIGTERM};
	for (int i = 0; i < 8 && !test_sanitized(); i++) {
		compile_killed(dir, sigs[i % 2], 300 + 400 * i);
		ck_assert_msg(temporaries(dir) == 0, "signal %d after %d ms left temporaries",
		              sigs[i % 2], 300 + 400 * i);
	}
	compile_killed(dir, SIGKILL, test_sanitized() ? 3000 : 1500);
	/* and one that a writer now gone surely left */
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(gone, NULL, 0), gone);
	snprintf(path, sizeof path, "%s/libr50.so.tmp.%d.AbCdEf", dir, (int)gone);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_ge(temporaries(dir), 1);
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet50.nn -o %s/libr50.so", dir), 0);
	free(out), free(err);
	ck_assert_int_eq(temporaries(dir), 0);
}
END_TEST

/* One model through the driver under memcheck: no invalid access, no leak.
 * (The sanitizer build runs ASan instead, which cannot share the process.)
 * Valgrind 3.19 has no AVX-512: the code it runs is built for x86-64-v3. */
START_TEST(valgrind_clean)
{
	if (test_sanitized())
		return;
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "init models/resnet20.nn -o %s/w.st", tmpdir), 0);
	free(out), free(err);
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && valgrind -q --error-exitcode=99 --leak-check=full "
	         "--errors-for-leak-kinds=definite,indirect '%s' run models/resnet20.nn --weights "
	         "%s/w.st --input examples/data/ankle_boot.npy -o %s/y.npy --target x86-64-v3 "
	         "2>%s/vg.txt",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"), tmpdir, tmpdir,
	         tmpdir);
	int st = system(cmd);
	char path[512];
	snprintf(path, sizeof path, "%s/vg.txt", tmpdir);
	char *report = slurp(path);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "valgrind: %s", report);
	free(report);
	/* and an error path: a model error unwinds through the expander */
	snprintf(cmd, sizeof cmd,
	         "cd '%s' && valgrind -q --error-exitcode=99 --leak-check=full "
	         "--errors-for-leak-kinds=definite,indirect '%s' ir tests/errors/cyclic_blocks.nn "
	         ">/dev/null 2>&1",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"));
	st = system(cmd);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}
END_TEST

static long long report_value(const char *out, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "\n%s: ", key);
	const char *s =
	    out[0] == key[0] && !strncmp(out, key, strlen(key)) ? out - 1 : strstr(out, k);
	ck_assert_msg(s != NULL, "no %s in:\n%s", key, out);
	return strtoll(s + strlen(k), NULL, 10);
}

/* --report: the plan's four figures, for the training step too. */
START_TEST(report_gives_plan_figures)
{
	char *out, *err;
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "compile models/resnet50.nn --report --weights-file --emit=llvm -o %s/r50.ll",
	          tmpdir),
	    0);
	ck_assert_int_eq(report_value(out, "nodes"), 56);
	long long arena = report_value(out, "arena_bytes"),
	          bound = report_value(out, "lower_bound_bytes");
	ck_assert(arena >= bound && arena <= 1.02 * bound);
	ck_assert_int_gt(report_value(out, "naive_bytes"), 5 * arena);
	ck_assert_ptr_null(strstr(out, "train_"));
	/* the weights are left out of the module; the warning says so */
	ck_assert_msg(strstr(err, "--weights-file with --emit=llvm: the weights stay out"), "%s",
	              err);
	ck_assert_ptr_null(strstr(err, "embeds"));
	free(out);
	free(err);
	ck_assert_int_eq(netcc(&out, &err,
	                       "compile models/resnet20.nn --train --batch 128 --report "
	                       "--weights-file --emit=llvm -o "
	                       "%s/r20.ll",
	                       tmpdir),
	                 0);
	long long tn = report_value(out, "train_nodes"),
	          ta = report_value(out, "train_arena_bytes");
	long long tb = report_value(out, "train_lower_bound_bytes");
	ck_assert_int_gt(tn, 3 * report_value(out, "nodes")); /* forward, backward, updates */
	ck_assert(ta >= tb && ta <= 1.02 * tb);
	ck_assert_int_gt(report_value(out, "train_naive_bytes"), ta);
	free(out);
	free(err);
}
END_TEST

/* The GFLOP a row of `netcc profile`'s per-operator table gives for op. */
static double profile_gflop(const char *out, const char *op)
{
	const char *s = strstr(out, "by operator:");
	ck_assert_ptr_nonnull(s);
	char key[64];
	snprintf(key, sizeof key, " %s ", op);
	for (s = strchr(s, '\n'); s && s[1] && s[1] != '\n'; s = strchr(s + 1, '\n')) {
		const char *end = strchr(s + 1, '\n'), *at = strstr(s + 1, key);
		double gflop;
		if (at && (!end || at < end) && sscanf(at + strlen(key), "%lf", &gflop) == 1)
			return gflop;
	}
	ck_abort_msg("no row for %s in:\n%s", op, out);
	return 0;
}

START_TEST(profile_accounts_for_every_flop)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "summary models/resnet20.nn"), 0);
	const char *m = strstr(out, "macs: ");
	ck_assert_ptr_nonnull(m);
	double gflop = 2e-9 * strtod(m + 6, NULL);
	free(out);
	free(err);
	ck_assert_int_eq(netcc(&out, &err, "profile models/resnet20.nn --runs 2 --threads 1 --all"),
	                 0);
	/* every multiply-add of the model is charged to a conv or the linear */
	double conv = profile_gflop(out, "conv"), linear = profile_gflop(out, "linear");
	ck_assert_double_eq_tol(conv + linear, gflop, 2e-4);
	const char *t = strstr(out, "\ntotal: ");
	ck_assert_ptr_nonnull(t);
	ck_assert_double_eq_tol(strtod(t + 8, NULL), gflop, 1e-4);
	ck_assert_ptr_nonnull(strstr(out, "peak: "));
	/* the memory bandwidth beside the peak: a measured figure, not zero */
	const char *mem = strstr(out, "\nmemory: ");
	ck_assert_ptr_nonnull(mem);
	ck_assert_double_gt(strtod(mem + 9, NULL), 0.1);
	ck_assert_ptr_nonnull(strstr(out, "stage2.basic2.cbr1.conv0"));
	free(out);
	free(err);

	/* a training step: each weight gradient costs what its convolution does */
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "profile tests/models/tiny28.nn --train --batch 8 --runs 2 --gap 200"),
	    0);
	ck_assert_ptr_nonnull(strstr(out, "training step"));
	/* the pauses before the runs are said, and not timed: a step of this
	 * model takes milliseconds */
	ck_assert_ptr_nonnull(strstr(out, "each after a 200 ms pause"));
	const char *run = strstr(out, " GFLOP in ");
	ck_assert_ptr_nonnull(run);
	ck_assert_double_lt(strtod(run + 10, NULL), 100);
	ck_assert_double_eq_tol(profile_gflop(out, "conv_grad_weight"), profile_gflop(out, "conv"),
	                        1e-4);
	ck_assert_double_gt(profile_gflop(out, "conv_grad_input"), 0);
	ck_assert_double_lt(profile_gflop(out, "conv_grad_input"), profile_gflop(out, "conv"));
	free(out);
	free(err);

	ck_assert_int_eq(netcc(&out, &err, "profile models/resnet20.nn --runs 0"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--runs"));
	free(out);
	free(err);
	ck_assert_int_eq(netcc(&out, &err, "profile models/resnet20.nn --gap -5"), 2);
	ck_assert_ptr_nonnull(strstr(err, "--gap"));
	free(out);
	free(err);
}
END_TEST

/* Every command's --help names every option its parser accepts (both read
 * commands.c; this checks the binary), `netcc help CMD` prints the same,
 * and every option --help shows is accepted. */
START_TEST(help_lists_every_option)
{
	int n;
	const cmd_doc *c = driver_commands(&n);
	ck_assert_int_ge(n, 9);
	for (int i = 0; i < n; i++) {
		char *out, *err, *out2, *err2;
		ck_assert_int_eq(netcc(&out, &err, "%s --help", c[i].name), 0);
		char head[64];
		snprintf(head, sizeof head, "usage: netcc %s ", c[i].name);
		ck_assert_msg(!strncmp(out, head, strlen(head)), "%s", out);
		ck_assert_ptr_nonnull(strstr(out, "examples:\n  netcc "));
		ck_assert_int_eq(netcc(&out2, &err2, "help %s", c[i].name), 0);
		ck_assert_str_eq(out, out2);
		free(out2), free(err2);
		/* the help's option lines, "  -x" or "  --xyz", each accepted */
		int shown = 0;
		for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
			if (strncmp(line, "  -", 3) || !strncmp(line, "  -h, --help", 12))
				continue;
			char opt[64];
			sscanf(line + 2, "%63s", opt);
			bool takes = line[2 + strlen(opt)] == ' ' && line[3 + strlen(opt)] != ' ';
			const opt_doc *d = c[i].opts;
			while (d->name && strcmp(opt + strlen(opt_dashes(d->name)), d->name))
				d++;
			ck_assert_msg(d->name != NULL, "%s --help shows %s, not in the table",
			              c[i].name, opt);
			ck_assert_int_eq(takes, d->arg != NULL);
			char *o2, *e2;
			netcc(&o2, &e2, "%s %s%s </dev/null", c[i].name, opt, takes ? " 1" : "");
			ck_assert_msg(!strstr(e2, "unknown option"), "%s %s: %s", c[i].name, opt,
			              e2);
			free(o2), free(e2);
			shown++;
		}
		int listed = 0;
		for (const opt_doc *d = c[i].opts; d->name; d++)
			listed++;
		ck_assert_msg(shown == listed, "%s: --help shows %d options, the parser takes %d",
		              c[i].name, shown, listed);
		free(out), free(err);
	}
}
END_TEST

START_TEST(version_man_page_and_option_conventions)
{
	char *out, *err;
	ck_assert_int_eq(netcc(&out, &err, "--version"), 0);
	ck_assert_msg(!strncmp(out, "netcc ", 6) && strstr(out, "(git ") && strstr(out, "LLVM 19."),
	              "%s", out);
	free(out), free(err);
	/* the committed man page is what the tables say */
	ck_assert_int_eq(netcc(&out, &err, "help --man"), 0);
	char path[512];
	snprintf(path, sizeof path, "%s/docs/netcc.1", test_env("NETCC_ROOT", "."));
	char *man = slurp(path);
	ck_assert_msg(!strcmp(out, man), "docs/netcc.1 is stale: make man");
	ck_assert_ptr_nonnull(strstr(man, ".B \\-\\-weights\\-file"));
	free(man), free(out), free(err);
	/* one dash as typed, the closest option, where to look */
	ck_assert_int_eq(netcc(&out, &err, "compile models/resnet20.nn -O3"), 2);
	ck_assert_msg(strstr(err, "unknown option '-O3'; did you mean '-O2'? (see 'netcc compile "
	                          "--help')"),
	              "%s", err);
	free(out), free(err);
	/* -- ends options: a file named like one */
	ck_assert_int_eq(netcc(&out, &err, "ir -- --batch"), 1);
	ck_assert_msg(strstr(err, "cannot open --batch"), "%s", err);
	free(out), free(err);
	/* - is standard output for text emits, not for a library */
	ck_assert_int_eq(netcc(&out, &err, "compile tests/models/tiny28.nn --emit llvm -o -"), 0);
	ck_assert_ptr_nonnull(strstr(out, "define "));
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "compile tests/models/tiny28.nn -o -"), 2);
	ck_assert_ptr_nonnull(strstr(err, "standard output"));
	free(out), free(err);
	/* a model from standard input */
	ck_assert_int_eq(netcc(&out, &err, "summary - <tests/models/tiny28.nn"), 0);
	ck_assert_ptr_nonnull(strstr(out, "params: 2626"));
	free(out), free(err);
	/* and standard input and output for run */
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "run tests/models/tiny28.nn --input - -o - <examples/data/ankle_boot.npy"),
	    0);
	ck_assert_msg(!memcmp(out, "\x93NUMPY", 6), "%s", err);
	free(out), free(err);
	ck_assert_int_eq(netcc(&out, &err, "run tests/models/tiny28.nn --input - --input - -o -"),
	                 2);
	free(out), free(err);
}
END_TEST

/* Warnings go to stderr with exit 0; -Werror makes them errors. The
 * fixtures in tests/warnings hold the exact text. */
START_TEST(warnings_and_werror)
{
	char *out, *err;
	const char *root = test_env("NETCC_ROOT", ".");
	char path[512];
	snprintf(path, sizeof path, "%s/tests/warnings/unused_values.err", root);
	char *want = slurp(path);
	ck_assert_int_eq(netcc(&out, &err, "ir tests/warnings/unused_values.nn"), 0);
	ck_assert_str_eq(err, want);
	free(out), free(err), free(want);
	ck_assert_int_eq(netcc(&out, &err, "ir tests/warnings/unused_values.nn -Werror"), 1);
	ck_assert_ptr_nonnull(strstr(err, "-Werror: 2 warnings above"));
	free(out), free(err);
	/* the repository's models are clean */
	ck_assert_int_eq(netcc(&out, &err, "ir models/resnet50.nn -Werror"), 0);
	ck_assert_str_eq(err, "");
	free(out), free(err);
	/* random weights, and options that do nothing together */
	ck_assert_int_eq(netcc(&out, &err, "compile tests/models/tiny28.nn -o %s/libt.so", tmpdir),
	                 0);
	ck_assert_ptr_nonnull(strstr(err, "warning: no --weights"));
	free(out), free(err);
	ck_assert_int_eq(
	    netcc(&out, &err, "compile tests/models/tiny28.nn -o %s/libt2.so -Werror", tmpdir), 1);
	ck_assert_ptr_nonnull(strstr(err, "-Werror: 1 warning above"));
	snprintf(path, sizeof path, "%s/libt2.so", tmpdir);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(out), free(err);
	ck_assert_int_eq(
	    netcc(&out, &err, "init tests/models/tiny28.nn -o %s/w.safetensors", tmpdir), 0);
	free(out), free(err);
	ck_assert_int_eq(
	    netcc(&out, &err,
	          "run tests/models/tiny28.nn --weights %s/w.safetensors --seed 3 "
	          "--reference --target x86-64-v3 --input examples/data/ankle_boot.npy",
	          tmpdir),
	    0);
	ck_assert_msg(strstr(err, "--seed has no effect with --weights") &&
	                  strstr(err, "--target has no effect with --reference"),
	              "%s", err);
	free(out), free(err);
}
END_TEST

/* make install into a temporary prefix: the installed netcc finds its
 * runtime by the layout, and examples/classify.c builds against a
 * library it compiled with pkg-config's flags alone, shared and static. */
START_TEST(install_and_embed)
{
	if (test_sanitized()) /* the same install as the plain run's */
		return;
	const char *root = test_env("NETCC_ROOT", ".");
	char cmd[4096], path[512];
	snprintf(cmd, sizeof cmd, "'%s/tests/install_embed.sh' '%s' '%s'", root, root, tmpdir);
	ck_assert_msg(system(cmd) == 0, "%s failed (%s/make.log)", cmd, tmpdir);
	static const char *const files[] = {"bin/netcc", "lib/netcc/avx2/libnetcc_rt.a",
	                                    "include/netcc/runtime.h", "share/man/man1/netcc.1",
	                                    "lib/pkgconfig/netcc.pc"};
	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof path, "%s/inst/%s", tmpdir, files[i]);
		ck_assert_msg(access(path, R_OK) == 0, "%s not installed", files[i]);
	}

	snprintf(path, sizeof path, "%s/app/shared.txt", tmpdir);
	char *shared = slurp(path);
	snprintf(path, sizeof path, "%s/app/static.txt", tmpdir);
	char *stat_out = slurp(path);
	ck_assert_msg(strstr(shared, "class") != NULL, "%s", shared);
	/* the same model and weights: the same top 5, whatever the linking */
	char *t1 = strstr(shared, "top 5"), *t2 = strstr(stat_out, "top 5");
	ck_assert_ptr_nonnull(t1);
	ck_assert_ptr_nonnull(t2);
	ck_assert_str_eq(t1, t2);
	/* the same pixels as a PNG (lossless: the same top 5) and a JPEG */
	snprintf(path, sizeof path, "%s/app/png.txt", tmpdir);
	char *png = slurp(path);
	ck_assert_ptr_nonnull(strstr(png, "28x28 grey PNG"));
	ck_assert_str_eq(strstr(png, "top 5"), t1);
	snprintf(path, sizeof path, "%s/app/jpeg.txt", tmpdir);
	char *jpeg = slurp(path);
	ck_assert_ptr_nonnull(strstr(jpeg, "28x28 grey JPEG"));
	ck_assert_ptr_nonnull(strstr(jpeg, "1. 0.18"));
	free(png), free(jpeg);
	snprintf(path, sizeof path, "%s/app/dynamic.txt", tmpdir);
	char *dyn = slurp(path);
	ck_assert_msg(strstr(dyn, "Library soname: [libtiny28.so]"), "%s", dyn);
	/* a library needs nothing a minimal system lacks: no JSON, no zlib */
	snprintf(path, sizeof path, "%s/app/ldd.txt", tmpdir);
	char *ldd = slurp(path);
	static const char *const allowed[] = {"linux-vdso.so",  "libc.so.",        "libm.so.",
	                                      "libpthread.so.", "/lib64/ld-linux", "ld-linux"};
	for (char *line = strtok(ldd, "\n"); line; line = strtok(NULL, "\n")) {
		line += strspn(line, " \t");
		bool ok = false;
		for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
			ok |= strncmp(line, allowed[i], strlen(allowed[i])) == 0;
		ck_assert_msg(ok, "the library needs %s", line);
	}
	free(shared), free(stat_out), free(dyn), free(ldd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("driver");
	TCase *t = tcase_create("cli");
	tcase_add_checked_fixture(t, setup, teardown);
	/* valgrind_clean JIT-compiles a model under memcheck: a minute on a
	 * quiet 2-core machine, more when it is busy */
	tcase_set_timeout(t, 300);
	tcase_add_test(t, summary_ends_with_totals);
	tcase_add_test(t, params_lists_buffers_in_order);
	tcase_add_test(t, init_is_he_and_deterministic);
	tcase_add_test(t, run_writes_output);
	tcase_add_test(t, model_errors_exit_1_with_location);
	tcase_add_test(t, usage_errors_exit_2);
	tcase_add_test(t, help_lists_every_option);
	tcase_add_test(t, version_man_page_and_option_conventions);
	tcase_add_test(t, warnings_and_werror);
	tcase_add_test(t, install_and_embed);
	tcase_add_test(t, bad_weights_are_named);
	tcase_add_test(t, nonfinite_weights_refused);
	tcase_add_test(t, bad_inputs_and_outputs);
	tcase_add_test(t, valgrind_clean);
	tcase_add_test(t, deep_evaluation_never_crashes);
	tcase_add_test(t, hostile_files_stay_under_512_mb);
	tcase_add_test(t, outputs_are_never_clobbered_or_left_half);
	tcase_add_test(t, profile_accounts_for_every_flop);
	tcase_add_test(t, report_gives_plan_figures);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
