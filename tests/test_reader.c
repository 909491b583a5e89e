/* Checked reading, for the three formats (safetensors, .npy, IDX plain and
 * gzip): a pipe reads as the same file does; a stream that ends early or
 * goes on is refused without being read forever; /dev/zero is refused at its
 * header; a 1 GiB sparse file whose header is bad, or disagrees with its
 * size, is refused without its data being read. */
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

enum { FMT_ST, FMT_NPY, FMT_IDX, FMT_IDX_GZ, FMT_COUNT };
static const char *fmt_names[FMT_COUNT] = {"safetensors", "npy", "idx", "idx.gz"};

static char tmp_root[1024];

static void tmp_setup(void)
{
	snprintf(tmp_root, sizeof tmp_root, "%s/netcc_reader_XXXXXX", test_env("TMPDIR", "/tmp"));
	ck_assert_msg(mkdtemp(tmp_root) != NULL, "mkdtemp %s", tmp_root);
	signal(SIGPIPE, SIG_IGN);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static void tmp_teardown(void)
{
	nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tmp_root, name);
	ck_assert(n > 0 && (size_t)n < len);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "open %s", path);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	unsigned char *b = malloc(*len + 1);
	ck_assert(fread(b, 1, *len, f) == *len);
	fclose(f);
	return b;
}

static const float values[6] = {1, -2, 3.5f, 0, 1e-3f, 42};

/* A good file of each format holding values as 2x3 (IDX: float32). */
static void write_good(int fmt, char *path, size_t len)
{
	char err[512], name[64];
	snprintf(name, sizeof name, "good.%s", fmt_names[fmt]);
	tmp_path(path, len, name);
	int64_t dims[2] = {2, 3};
	if (fmt == FMT_ST) {
		rt_st_entry e = {
		    .name = "w", .dtype = RT_DTYPE_F32, .rank = 2, .dims = dims, .data = values};
		ck_assert_msg(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) == 0, "%s", err);
	} else if (fmt == FMT_NPY) {
		ck_assert_msg(rt_npy_write(path, RT_DTYPE_F32, 2, dims, values, err, sizeof err) ==
		                  0,
		              "%s", err);
	} else {
		unsigned char img[12 + sizeof values] = {0, 0, 0x0D, 2, 0, 0, 0, 2, 0, 0, 0, 3};
		for (int i = 0; i < 6; i++) {
			uint32_t u;
			memcpy(&u, &values[i], 4);
			for (int b = 0; b < 4; b++)
				img[12 + 4 * i + b] = (unsigned char)(u >> (24 - 8 * b));
		}
		if (fmt == FMT_IDX) {
			FILE *f = fopen(path, "wb");
			ck_assert(f && fwrite(img, 1, sizeof img, f) == sizeof img);
			fclose(f);
		} else {
			gzFile g = gzopen(path, "wb");
			ck_assert(g && gzwrite(g, img, sizeof img) == (int)sizeof img);
			gzclose(g);
		}
	}
}

/* Reads path in the format; the values it holds (as floats) into out. */
static int read_fmt(int fmt, const char *path, float *out, size_t *count, char *err, size_t errlen)
{
	*count = 0;
	if (fmt == FMT_ST) {
		rt_st_file f;
		if (rt_st_read(path, &f, err, errlen) != 0)
			return -1;
		ck_assert_int_eq(f.n_tensors, 1);
		*count = f.tensors[0].count;
		memcpy(out, f.tensors[0].data, *count * sizeof(float));
		rt_st_free(&f);
		return 0;
	}
	rt_array a;
	int rc = fmt == FMT_NPY ? rt_npy_read(path, &a, err, errlen)
	                        : rt_idx_read(path, &a, err, errlen);
	if (rc != 0)
		return -1;
	*count = a.count;
	memcpy(out, a.data, a.count * sizeof(float));
	rt_array_free(&a);
	return 0;
}

/* A pipe whose far end a child fills with bytes, then (tail > 0) that many
 * more bytes, or (tail < 0) zeros until the reader goes away; the reader
 * opens /dev/fd/N, as a shell's <(...) would hand it. */
static pid_t feed(const unsigned char *bytes, size_t len, long tail, char *path, size_t plen)
{
	int fds[2];
	ck_assert(pipe(fds) == 0);
	pid_t pid = fork();
	ck_assert(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		signal(SIGPIPE, SIG_DFL);
		if (write(fds[1], bytes, len) != (ssize_t)len)
			_exit(1);
		static const unsigned char zeros[4096];
		for (long sent = 0; tail < 0 || sent < tail; sent += (long)sizeof zeros) {
			size_t n = tail < 0 || tail - sent > (long)sizeof zeros
			               ? sizeof zeros
			               : (size_t)(tail - sent);
			if (write(fds[1], zeros, n) < 0)
				_exit(0);
		}
		_exit(0);
	}
	close(fds[1]);
	snprintf(path, plen, "/dev/fd/%d", fds[0]);
	return pid;
}

static void unfeed(pid_t pid, const char *path)
{
	close(atoi(path + strlen("/dev/fd/")));
	int status;
	waitpid(pid, &status, 0);
}

START_TEST(streams_read_as_files_do)
{
	int fmt = _i;
	char path[1024], pipe_path[64], err[512];
	write_good(fmt, path, sizeof path);
	size_t len;
	unsigned char *img = slurp(path, &len);
	float got[16];
	size_t n;
	ck_assert_msg(read_fmt(fmt, path, got, &n, err, sizeof err) == 0, "%s", err);
	ck_assert_uint_eq(n, 6);
	ck_assert(memcmp(got, values, sizeof values) == 0);

	pid_t pid = feed(img, len, 0, pipe_path, sizeof pipe_path);
	memset(got, 0, sizeof got);
	ck_assert_msg(read_fmt(fmt, pipe_path, got, &n, err, sizeof err) == 0, "%s: %s",
	              fmt_names[fmt], err);
	unfeed(pid, pipe_path);
	ck_assert_uint_eq(n, 6);
	ck_assert(memcmp(got, values, sizeof values) == 0);

	/* cut short: the stream ends inside the data */
	pid = feed(img, len - 3, 0, pipe_path, sizeof pipe_path);
	ck_assert_int_ne(read_fmt(fmt, pipe_path, got, &n, err, sizeof err), 0);
	unfeed(pid, pipe_path);
	ck_assert_msg(strstr(err, pipe_path) && strstr(err, "truncated"), "%s: %s", fmt_names[fmt],
	              err);

	/* five bytes too many */
	pid = feed(img, len, 5, pipe_path, sizeof pipe_path);
	ck_assert_int_ne(read_fmt(fmt, pipe_path, got, &n, err, sizeof err), 0);
	unfeed(pid, pipe_path);
	ck_assert_msg(strstr(err, pipe_path) && (strstr(err, "trailing") || strstr(err, "after")),
	              "%s: %s", fmt_names[fmt], err);

	/* a good file, then zeros that never end: refused, not read forever */
	pid = feed(img, len, -1, pipe_path, sizeof pipe_path);
	ck_assert_int_ne(read_fmt(fmt, pipe_path, got, &n, err, sizeof err), 0);
	unfeed(pid, pipe_path);
	ck_assert_msg(strstr(err, pipe_path) && (strstr(err, "at least") ||
	                                         strstr(err, "garbage") || strstr(err, "trailing")),
	              "%s: %s", fmt_names[fmt], err);
	free(img);
}
END_TEST

static long max_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

START_TEST(dev_zero_is_refused_at_its_header)
{
	int fmt = _i;
	char err[512];
	float got[16];
	size_t n;
	ck_assert_int_ne(read_fmt(fmt, "/dev/zero", got, &n, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "/dev/zero"), "%s", err);
	ck_assert_msg(max_rss_kb() < 256 * 1024, "%s: peak RSS %ld KB reading /dev/zero",
	              fmt_names[fmt], max_rss_kb());
}
END_TEST

/* A 1 GiB sparse file that starts as the good file does, with one byte
 * changed (at: from the end of the good file's header when negative), reads
 * as an error without a gigabyte of reading. */
static void sparse_case(int fmt, long at, unsigned char byte, const char *expect)
{
	char path[1024], big[1100], err[512];
	write_good(fmt, path, sizeof path);
	size_t len;
	unsigned char *img = slurp(path, &len);
	if (at >= 0)
		img[at] = byte;
	snprintf(big, sizeof big, "%s.big", path);
	int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert(fd >= 0);
	ck_assert(write(fd, img, len) == (ssize_t)len);
	ck_assert(ftruncate(fd, (off_t)1 << 30) == 0);
	close(fd);
	float got[16];
	size_t n;
	ck_assert_int_ne(read_fmt(fmt, big, got, &n, err, sizeof err), 0);
	ck_assert_msg(strstr(err, big) && strstr(err, expect), "%s: expected '%s' in: %s",
	              fmt_names[fmt], expect, err);
	ck_assert_msg(max_rss_kb() < 256 * 1024, "%s: peak RSS %ld KB for a 1 GiB file",
	              fmt_names[fmt], max_rss_kb());
	free(img);
}

START_TEST(sparse_gigabyte_costs_its_header)
{
	/* the header itself bad */
	sparse_case(FMT_ST, 8, 'x', "not valid JSON");
	sparse_case(FMT_NPY, 0, 'x', "bad magic");
	sparse_case(FMT_IDX, 2, 0x42, "unsupported element type");
	sparse_case(FMT_IDX_GZ, 3, 0xff, "gzip");
	/* a good header that the size does not agree with */
	sparse_case(FMT_ST, -1, 0, "after the last tensor");
	sparse_case(FMT_NPY, -1, 0, "trailing bytes");
	sparse_case(FMT_IDX, -1, 0, "trailing bytes");
	sparse_case(FMT_IDX_GZ, -1, 0, "garbage after the gzip stream");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("reader");
	TCase *t = tcase_create("formats");
	tcase_add_checked_fixture(t, tmp_setup, tmp_teardown);
	tcase_set_timeout(t, 60);
	tcase_add_loop_test(t, streams_read_as_files_do, 0, FMT_COUNT);
	tcase_add_loop_test(t, dev_zero_is_refused_at_its_header, 0, FMT_COUNT);
	tcase_add_test(t, sparse_gigabyte_costs_its_header);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)
