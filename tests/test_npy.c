/* The .npy reader and writer: round trips for every dtype, and malformed
 * images that must be refused with a message saying what is wrong. */
#include <stdint.h>
#include <unistd.h>

#include "testutil.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/netcc_test_npy_XXXXXX");
	ck_assert_msg(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

/* rmdir only succeeds once the test removed its files: a leftover means a
 * temporary file escaped the atomic writer. */
static void remove_tmpdir(void)
{
	ck_assert_msg(rmdir(tmpdir) == 0, "%s is not empty", tmpdir);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static unsigned char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc(n ? (size_t)n : 1);
	ck_assert(buf != NULL);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void write_whole(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "cannot create %s", path);
	ck_assert_int_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
}

/* Distinct, sign-mixed values whose bytes differ in every position. */
static void fill_pattern(rt_dtype t, void *data, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		double v = ((double)i - (double)count / 2) * 1.25 + 0.5;
		switch (t) {
		case RT_DTYPE_F32:
			((float *)data)[i] = (float)v;
			break;
		case RT_DTYPE_F64:
			((double *)data)[i] = v / 3;
			break;
		case RT_DTYPE_I32:
			((int32_t *)data)[i] = (int32_t)(i * 2654435761u);
			break;
		case RT_DTYPE_I64:
			((int64_t *)data)[i] = (int64_t)(i * 0x9e3779b97f4a7c15ull);
			break;
		case RT_DTYPE_U8:
			((uint8_t *)data)[i] = (uint8_t)(i * 37 + 11);
			break;
		case RT_DTYPE_F16:
		case RT_DTYPE_BF16:
			((uint16_t *)data)[i] = (uint16_t)(i * 40503u + 7);
			break;
		}
	}
}

static void check_array(const rt_array *a, rt_dtype t, int rank, const int64_t *dims,
                        const void *data)
{
	size_t count = 1;
	for (int i = 0; i < rank; i++)
		count *= (size_t)dims[i];
	ck_assert_int_eq(a->dtype, t);
	ck_assert_int_eq(a->rank, rank);
	for (int i = 0; i < rank; i++)
		ck_assert_int_eq(a->dims[i], dims[i]);
	ck_assert_uint_eq(a->count, count);
	ck_assert(a->data != NULL);
	ck_assert(memcmp(a->data, data, count * rt_dtype_size(t)) == 0);
}

static const rt_dtype all_dtypes[] = {RT_DTYPE_F32, RT_DTYPE_F64, RT_DTYPE_I32,
                                      RT_DTYPE_I64, RT_DTYPE_U8,  RT_DTYPE_F16};

START_TEST(round_trip_each_dtype)
{
	static const struct {
		int rank;
		int64_t dims[4];
	} shapes[] = {{3, {2, 3, 4}}, {1, {7}}, {0, {0}}, {2, {0, 5}}, {4, {1, 2, 1, 3}}};
	rt_dtype t = all_dtypes[_i];
	char path[512], err[512];
	make_tmpdir();
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		size_t count = 1;
		for (int i = 0; i < shapes[s].rank; i++)
			count *= (size_t)shapes[s].dims[i];
		void *data = calloc(count ? count : 1, rt_dtype_size(t));
		fill_pattern(t, data, count);
		tmp_path(path, sizeof path, "a.npy");
		ck_assert_msg(rt_npy_write(path, t, shapes[s].rank, shapes[s].dims, data, err,
		                           sizeof err) == 0,
		              "%s", err);

		rt_array a;
		ck_assert_msg(rt_npy_read(path, &a, err, sizeof err) == 0, "%s", err);
		check_array(&a, t, shapes[s].rank, shapes[s].dims, data);
		rt_array_free(&a);

		/* NumPy's layout: data on a 64-byte boundary, header ending in
		 * a newline; the in-memory parser agrees with the file reader. */
		size_t len;
		unsigned char *img = read_whole(path, &len);
		size_t nbytes = count * rt_dtype_size(t);
		ck_assert_uint_eq((len - nbytes) % 64, 0);
		ck_assert_int_eq(img[6], 1);
		ck_assert_int_eq(img[len - nbytes - 1], '\n');
		ck_assert_msg(rt_npy_parse(img, len, &a, err, sizeof err) == 0, "%s", err);
		check_array(&a, t, shapes[s].rank, shapes[s].dims, data);
		rt_array_free(&a);
		free(img);
		free(data);
		unlink(path);
	}
	remove_tmpdir();
}
END_TEST

START_TEST(writer_header_is_numpys)
{
	char path[512], err[512];
	int64_t dims[] = {2, 3};
	float data[6] = {0};
	make_tmpdir();
	tmp_path(path, sizeof path, "h.npy");
	ck_assert_msg(rt_npy_write(path, RT_DTYPE_U8, 1, dims, data, err, sizeof err) == 0, "%s",
	              err);
	size_t len;
	unsigned char *img = read_whole(path, &len);
	const char *want = "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }";
	ck_assert_uint_eq(len, 128 + 2);
	ck_assert(memcmp(img, "\x93NUMPY\x01\x00", 8) == 0);
	ck_assert_int_eq(img[8] | img[9] << 8, 128 - 10);
	ck_assert(memcmp(img + 10, want, strlen(want)) == 0);
	free(img);
	unlink(path);

	ck_assert_msg(rt_npy_write(path, RT_DTYPE_F32, 2, dims, data, err, sizeof err) == 0, "%s",
	              err);
	img = read_whole(path, &len);
	want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
	ck_assert(memcmp(img + 10, want, strlen(want)) == 0);
	free(img);
	unlink(path);
	remove_tmpdir();
}
END_TEST

START_TEST(writer_refuses_bad_arguments)
{
	char path[512], err[512];
	int64_t dims[RT_MAX_RANK + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	float v = 0;
	make_tmpdir();
	tmp_path(path, sizeof path, "w.npy");
	ck_assert_int_ne(
	    rt_npy_write(path, RT_DTYPE_F32, RT_MAX_RANK + 1, dims, &v, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "rank") != NULL, "%s", err);
	int64_t neg[] = {2, -1};
	ck_assert_int_ne(rt_npy_write(path, RT_DTYPE_F32, 2, neg, &v, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "negative") != NULL, "%s", err);
	int64_t huge[] = {INT64_MAX, INT64_MAX};
	ck_assert_int_ne(rt_npy_write(path, RT_DTYPE_F32, 2, huge, &v, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "too large") != NULL, "%s", err);
	ck_assert_int_ne(access(path, F_OK), 0);
	remove_tmpdir();

	ck_assert_int_ne(
	    rt_npy_write("/nonexistent-dir/x.npy", RT_DTYPE_F32, 1, dims, &v, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "/nonexistent-dir/x.npy") != NULL, "%s", err);
}
END_TEST

/* ---- malformed images ------------------------------------------------------ */

/* An image with the given version, header text (padded NumPy's way) and
 * data_len bytes of data; *len receives its size. */
static unsigned char *make_npy(int major, const char *header, size_t data_len, size_t *len)
{
	size_t pre = major == 1 ? 10 : 12, hl = strlen(header);
	size_t hlen = ((pre + hl + 1 + 63) / 64) * 64 - pre;
	*len = pre + hlen + data_len;
	unsigned char *img = calloc(*len ? *len : 1, 1);
	ck_assert(img != NULL);
	memcpy(img, "\x93NUMPY", 6);
	img[6] = (unsigned char)major;
	img[7] = 0;
	img[8] = (unsigned char)hlen;
	img[9] = (unsigned char)(hlen >> 8);
	if (major > 1)
		img[10] = img[11] = 0;
	memcpy(img + pre, header, hl);
	memset(img + pre + hl, ' ', hlen - hl - 1);
	img[pre + hlen - 1] = '\n';
	for (size_t i = 0; i < data_len; i++)
		img[pre + hlen + i] = (unsigned char)i;
	return img;
}

/* Parses a copy in an exactly sized block, so ASan sees any overread. */
static int parse_exact(const unsigned char *img, size_t len, rt_array *a, char *err, size_t errlen)
{
	unsigned char *copy = malloc(len ? len : 1);
	ck_assert(copy != NULL);
	memcpy(copy, img, len);
	int rc = rt_npy_parse(copy, len, a, err, errlen);
	free(copy);
	return rc;
}

static void expect_refused(const unsigned char *img, size_t len, const char *phrase)
{
	char err[512] = "";
	rt_array a;
	int rc = parse_exact(img, len, &a, err, sizeof err);
	ck_assert_msg(rc != 0, "accepted an image that should fail with '%s'", phrase);
	ck_assert_msg(strstr(err, phrase) != NULL, "message '%s' lacks '%s'", err, phrase);
	ck_assert_ptr_null(a.data);
}

static void expect_header_refused(const char *header, size_t data_len, const char *phrase)
{
	size_t len;
	unsigned char *img = make_npy(1, header, data_len, &len);
	expect_refused(img, len, phrase);
	free(img);
}

#define F4 "{'descr': '<f4', 'fortran_order': False, "

START_TEST(builder_makes_valid_images)
{
	/* The malformed cases below are this builder plus one defect, so the
	 * builder itself must produce images the parser accepts. */
	static const char *ok[] = {
	    F4 "'shape': (2, 3), }",
	    "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
	    F4 "'shape': (2L, 3L), }",
	    "  {'shape':(2,3),'fortran_order':False,'descr':'<f4'}",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		for (int major = 1; major <= 3; major++) {
			size_t len;
			unsigned char *img = make_npy(major, ok[i], 24, &len);
			char err[512];
			rt_array a;
			ck_assert_msg(parse_exact(img, len, &a, err, sizeof err) == 0,
			              "v%d '%s': %s", major, ok[i], err);
			int64_t dims[] = {2, 3};
			float want[6];
			memcpy(want, img + len - 24, 24);
			check_array(&a, RT_DTYPE_F32, 2, dims, want);
			rt_array_free(&a);
			free(img);
		}
}
END_TEST

START_TEST(refuses_bad_magic_and_version)
{
	size_t len;
	unsigned char *img = make_npy(1, F4 "'shape': (2,), }", 8, &len);
	img[5] = 'Z';
	expect_refused(img, len, "bad magic");
	img[5] = 'Y';
	img[6] = 4;
	expect_refused(img, len, "unsupported .npy version 4.0");
	img[6] = 1;
	img[7] = 1;
	expect_refused(img, len, "unsupported .npy version 1.1");
	free(img);
}
END_TEST

START_TEST(refuses_truncation)
{
	size_t len;
	unsigned char *img = make_npy(1, F4 "'shape': (2, 3), }", 24, &len);
	expect_refused(img, 5, "truncated");
	expect_refused(img, 40, "truncated header");
	expect_refused(img, len - 1, "truncated data");
	/* Every proper prefix must fail cleanly, whatever it cuts. */
	for (size_t cut = 0; cut < len; cut++)
		expect_refused(img, cut, "truncated");
	free(img);

	img = make_npy(2, F4 "'shape': (2, 3), }", 24, &len);
	img[11] = 0x7f; /* a 2 GiB header in a small file */
	expect_refused(img, len, "truncated header");
	free(img);
}
END_TEST

START_TEST(refuses_trailing_data)
{
	expect_header_refused(F4 "'shape': (2, 3), }", 25, "trailing bytes");
}
END_TEST

START_TEST(refuses_layouts_and_dtypes)
{
	expect_header_refused("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
	                      "Fortran-order");
	expect_header_refused("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24,
	                      "big-endian");
	expect_header_refused("{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", 24,
	                      "big-endian");
	expect_header_refused("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", 24,
	                      "unsupported dtype '<c8'");
	expect_header_refused("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
	                      24, "structured dtypes");
}
END_TEST

START_TEST(refuses_absurd_shapes)
{
	expect_header_refused(F4 "'shape': (-1, 3), }", 24, "negative dimension");
	expect_header_refused(F4 "'shape': (99999999999999999999, 3), }", 24, "absurd shape");
	expect_header_refused(F4 "'shape': (4611686018427387904, 4611686018427387904), }", 24,
	                      "absurd shape");
	expect_header_refused(F4 "'shape': (4611686018427387904,), }", 24, "absurd shape");
	expect_header_refused(F4 "'shape': (0, 4611686018427387904, 4611686018427387904), }", 0,
	                      "absurd shape");
	expect_header_refused(F4 "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4,
	                      "more than 8 dimensions");
	expect_header_refused(F4 "'shape': (6), }", 24, "is not a tuple");
	expect_header_refused(F4 "'shape': [2, 3], }", 24, "is not a tuple");
	expect_header_refused(F4 "'shape': (2, x), }", 24, "malformed shape");
	expect_header_refused(F4 "'shape': (2 3), }", 24, "malformed shape");
	expect_header_refused(F4 "'shape': (2,, 3), }", 24, "malformed shape");
}
END_TEST

START_TEST(refuses_malformed_dicts)
{
	expect_header_refused("[('descr', '<f4'), ('shape', (6,))]", 24, "not a dict");
	expect_header_refused("'descr'", 24, "not a dict");
	expect_header_refused("", 24, "not a dict");
	expect_header_refused("{'descr': '<f4', 'fortran_order': False}", 24,
	                      "missing key 'shape'");
	expect_header_refused(F4 "'shape': (6,), 'extra': 1}", 24, "unexpected key 'extra'");
	expect_header_refused(F4 "'shape': (6,), 'shape': (6,)}", 24, "duplicate key 'shape'");
	expect_header_refused(F4 "'shape': (6,) 'x'}", 24, "expected ',' or '}'");
	expect_header_refused(F4 "'shape': (6,)}}", 24, "unexpected text after the dict");
	expect_header_refused(F4 "'shape': (6,)", 24, "expected ',' or '}'");
	expect_header_refused("{'descr: '<f4'}", 24, "malformed header");
	expect_header_refused("{descr: '<f4'}", 24, "expected a quoted key");
	expect_header_refused("{'descr' '<f4'}", 24, "expected ':'");
	expect_header_refused("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}", 24,
	                      "not True or False");
	expect_header_refused("{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': (6,)}", 24,
	                      "malformed header");
	expect_header_refused(F4 "'shape': (6,), }\x01", 24, "not printable ASCII");
	expect_header_refused(F4 "'shape': (6,), }\xc3\xa9", 24, "not printable ASCII");
}
END_TEST

START_TEST(read_names_the_file)
{
	char path[512], err[512];
	rt_array a;
	make_tmpdir();
	tmp_path(path, sizeof path, "missing.npy");
	ck_assert_int_ne(rt_npy_read(path, &a, err, sizeof err), 0);
	ck_assert_msg(strstr(err, path) && strstr(err, "cannot open"), "%s", err);

	size_t len;
	unsigned char *img =
	    make_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", 8, &len);
	tmp_path(path, sizeof path, "fortran.npy");
	write_whole(path, img, len);
	ck_assert_int_ne(rt_npy_read(path, &a, err, sizeof err), 0);
	ck_assert_msg(strstr(err, path) && strstr(err, "Fortran-order"), "%s", err);
	ck_assert_ptr_null(a.data);
	unlink(path);

	free(img);
	img = make_npy(1, F4 "'shape': (2,)}", 8, &len);
	write_whole(path, img, len - 4);
	ck_assert_int_ne(rt_npy_read(path, &a, err, sizeof err), 0);
	ck_assert_msg(strstr(err, path) && strstr(err, "truncated data"), "%s", err);
	unlink(path);
	free(img);

	ck_assert_int_ne(rt_npy_read(tmpdir, &a, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "is a directory"), "%s", err);
	remove_tmpdir();
}
END_TEST

START_TEST(tiny_error_buffers_are_respected)
{
	char err[8];
	memset(err, 'x', sizeof err);
	rt_array a;
	ck_assert_int_ne(rt_npy_parse("nonsense-not-npy", 16, &a, err, 4), 0);
	ck_assert_int_eq(err[3], '\0');
	ck_assert_int_eq(err[4], 'x');
	ck_assert_int_ne(rt_npy_parse("nonsense-not-npy", 16, &a, NULL, 0), 0);
}
END_TEST

/* A small in-suite fuzzer: random byte changes to valid images must be
 * either refused or parsed into an array consistent with the image size. */
START_TEST(random_mutations_never_crash)
{
	rt_rng r;
	rt_rng_seed(&r, 1234);
	static const char *headers[] = {F4 "'shape': (2, 3), }",
	                                "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
	                                "{'descr': '|u1', 'fortran_order': False, 'shape': (), }"};
	static const size_t sizes[] = {24, 24, 1};
	int rounds = test_sanitized() ? 3000 : 20000, accepted = 0;
	for (int it = 0; it < rounds; it++) {
		size_t h = rt_rng_next(&r) % 3, len;
		unsigned char *img =
		    make_npy(1 + (int)(rt_rng_next(&r) % 3), headers[h], sizes[h], &len);
		int edits = 1 + (int)(rt_rng_next(&r) % 4);
		for (int e = 0; e < edits; e++) {
			size_t at = rt_rng_next(&r) % len;
			/* Bias towards the preamble and the header text. */
			if (rt_rng_next(&r) % 2)
				at %= 80 < len ? 80 : len;
			img[at] = (unsigned char)rt_rng_next(&r);
		}
		if (rt_rng_next(&r) % 4 == 0)
			len = rt_rng_next(&r) % (len + 1);
		char err[256];
		rt_array a;
		if (parse_exact(img, len, &a, err, sizeof err) == 0) {
			accepted++;
			size_t count = 1;
			for (int i = 0; i < a.rank; i++)
				count *= (size_t)a.dims[i];
			ck_assert_uint_eq(a.count, count);
			ck_assert_uint_le(a.count * rt_dtype_size(a.dtype), len);
			rt_array_free(&a);
		} else {
			ck_assert_msg(strlen(err) > 0, "refused without a message");
		}
		free(img);
	}
	ck_assert_int_gt(accepted, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("npy");
	TCase *tc = tcase_create("write");
	tcase_add_loop_test(tc, round_trip_each_dtype, 0,
	                    (int)(sizeof all_dtypes / sizeof all_dtypes[0]));
	tcase_add_test(tc, writer_header_is_numpys);
	tcase_add_test(tc, writer_refuses_bad_arguments);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, builder_makes_valid_images);
	tcase_add_test(tc, refuses_bad_magic_and_version);
	tcase_add_test(tc, refuses_truncation);
	tcase_add_test(tc, refuses_trailing_data);
	tcase_add_test(tc, refuses_layouts_and_dtypes);
	tcase_add_test(tc, refuses_absurd_shapes);
	tcase_add_test(tc, refuses_malformed_dicts);
	tcase_add_test(tc, read_names_the_file);
	tcase_add_test(tc, tiny_error_buffers_are_respected);
	tcase_add_test(tc, random_mutations_never_crash);
	suite_add_tcase(s, tc);
	return s;
}

TEST_MAIN(suite)
