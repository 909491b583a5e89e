/* IDX: hand-built images through rt_idx_parse, the gzip path of rt_idx_read
 * (including corrupt and explosive streams), and the real Fashion-MNIST
 * test set when it is installed. */
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- temporary directories ----------------------------------------------- */

static char tmp_root[1024];

static void tmp_setup(void)
{
	snprintf(tmp_root, sizeof tmp_root, "%s/netcc_idx_XXXXXX", test_env("TMPDIR", "/tmp"));
	ck_assert_msg(mkdtemp(tmp_root) != NULL, "mkdtemp %s", tmp_root);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void tmp_teardown(void)
{
	nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tmp_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tmp_root, name);
	ck_assert(n > 0 && (size_t)n < len);
	return buf;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "create %s", path);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t len)
{
	gzFile g = gzopen(path, "wb");
	ck_assert_msg(g != NULL, "gzopen %s", path);
	ck_assert_int_eq(gzwrite(g, data, (unsigned)len), (int)len);
	ck_assert_int_eq(gzclose(g), Z_OK);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(n ? (size_t)n : 1);
	ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* ---- building images -------------------------------------------------------- */

static size_t put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	return 4;
}

/* Header for type/dims into p; returns its length. */
static size_t put_header(unsigned char *p, unsigned type, int rank, const uint32_t *dims)
{
	p[0] = 0;
	p[1] = 0;
	p[2] = (unsigned char)type;
	p[3] = (unsigned char)rank;
	size_t n = 4;
	for (int i = 0; i < rank; i++)
		n += put_be32(p + n, dims[i]);
	return n;
}

/* 2x3 float32 image with known values, big-endian as the format wants */
static const float f32_vals[6] = {1.5f, -2.0f, 0.0f, 3.25e-3f, -1e30f, 65504.0f};

static size_t make_f32_image(unsigned char *p)
{
	uint32_t dims[2] = {2, 3};
	size_t n = put_header(p, 0x0D, 2, dims);
	for (int i = 0; i < 6; i++) {
		uint32_t bits;
		memcpy(&bits, &f32_vals[i], 4);
		n += put_be32(p + n, bits);
	}
	return n;
}

static void expect_reject(const void *buf, size_t len, const char *phrase, const char *phrase2)
{
	rt_array a;
	char err[512] = "";
	ck_assert_msg(rt_idx_parse(buf, len, &a, err, sizeof err) != 0, "accepted, expected '%s'",
	              phrase);
	ck_assert_ptr_null(a.data);
	ck_assert_msg(strstr(err, "<memory>") != NULL, "no source in: %s", err);
	ck_assert_msg(strstr(err, phrase) != NULL, "'%s' not in: %s", phrase, err);
	if (phrase2)
		ck_assert_msg(strstr(err, phrase2) != NULL, "'%s' not in: %s", phrase2, err);
	rt_array_free(&a);
}

static void expect_read_reject(const char *path, const char *phrase)
{
	rt_array a;
	char err[512] = "";
	ck_assert_msg(rt_idx_read(path, &a, err, sizeof err) != 0, "accepted, expected '%s'",
	              phrase);
	ck_assert_ptr_null(a.data);
	ck_assert_msg(strstr(err, path) != NULL, "no path in: %s", err);
	ck_assert_msg(strstr(err, phrase) != NULL, "'%s' not in: %s", phrase, err);
}

/* ---- parsing ------------------------------------------------------------------ */

START_TEST(test_parse_u8)
{
	unsigned char img[64];
	uint32_t dims[3] = {2, 2, 3};
	size_t n = put_header(img, 0x08, 3, dims);
	for (int i = 0; i < 12; i++)
		img[n + i] = (unsigned char)(250 + i); /* wraps past 255 */
	rt_array a;
	char err[512];
	ck_assert_msg(rt_idx_parse(img, n + 12, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(a.dtype, RT_DTYPE_U8);
	ck_assert_int_eq(a.rank, 3);
	ck_assert_int_eq(a.dims[0], 2);
	ck_assert_int_eq(a.dims[1], 2);
	ck_assert_int_eq(a.dims[2], 3);
	ck_assert_uint_eq(a.count, 12);
	ck_assert_int_eq(memcmp(a.data, img + n, 12), 0);
	rt_array_free(&a);

	/* one dimension, as label files have */
	uint32_t one[1] = {5};
	n = put_header(img, 0x08, 1, one);
	memcpy(img + n, "\x00\x09\x03\x07\x01", 5);
	ck_assert_msg(rt_idx_parse(img, n + 5, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(a.rank, 1);
	ck_assert_uint_eq(a.count, 5);
	ck_assert_int_eq(((uint8_t *)a.data)[1], 9);
	rt_array_free(&a);
}
END_TEST

START_TEST(test_parse_f32_and_i32)
{
	unsigned char img[64];
	size_t n = make_f32_image(img);
	rt_array a;
	char err[512];
	/* from an odd address, so the reader cannot rely on alignment */
	unsigned char shifted[65];
	memcpy(shifted + 1, img, n);
	ck_assert_msg(rt_idx_parse(shifted + 1, n, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(a.dtype, RT_DTYPE_F32);
	ck_assert_int_eq(a.rank, 2);
	ck_assert_uint_eq(a.count, 6);
	for (int i = 0; i < 6; i++)
		ck_assert_float_eq(((float *)a.data)[i], f32_vals[i]);
	rt_array_free(&a);

	uint32_t dims[1] = {3};
	n = put_header(img, 0x0C, 1, dims);
	n += put_be32(img + n, 1);
	n += put_be32(img + n, (uint32_t)-2);
	n += put_be32(img + n, 0x7fffffff);
	ck_assert_msg(rt_idx_parse(img, n, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(a.dtype, RT_DTYPE_I32);
	ck_assert_int_eq(((int32_t *)a.data)[0], 1);
	ck_assert_int_eq(((int32_t *)a.data)[1], -2);
	ck_assert_int_eq(((int32_t *)a.data)[2], INT32_MAX);
	rt_array_free(&a);
}
END_TEST

START_TEST(test_parse_empty_dim)
{
	unsigned char img[16];
	uint32_t dims[2] = {0, 28};
	size_t n = put_header(img, 0x0D, 2, dims);
	rt_array a;
	char err[512];
	ck_assert_msg(rt_idx_parse(img, n, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_uint_eq(a.count, 0);
	ck_assert_int_eq(a.dims[1], 28);
	rt_array_free(&a);
}
END_TEST

START_TEST(test_reject_header)
{
	unsigned char img[64];
	uint32_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	size_t n = put_header(img, 0x08, 1, dims);
	img[n] = 0;

	img[0] = 1;
	expect_reject(img, n + 1, "bad magic 01 00", NULL);
	img[0] = 0;
	img[1] = 0x08;
	expect_reject(img, n + 1, "bad magic", NULL);
	img[1] = 0;

	unsigned bad_types[] = {0x00, 0x09, 0x0B, 0x0E, 0xFF};
	for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
		char code[8];
		snprintf(code, sizeof code, "0x%02x", bad_types[i]);
		img[2] = (unsigned char)bad_types[i];
		expect_reject(img, n + 1, "unsupported element type", code);
	}
	img[2] = 0x08;

	img[3] = 0;
	expect_reject(img, n + 1, "0 dimensions", NULL);
	n = put_header(img, 0x08, 9, dims);
	expect_reject(img, sizeof img, "9 dimensions", NULL);
	img[3] = 255;
	expect_reject(img, sizeof img, "255 dimensions", NULL);

	for (size_t len = 0; len < 4; len++)
		expect_reject(img, len, "truncated header", NULL);
	n = put_header(img, 0x08, 3, dims);
	expect_reject(img, n - 1, "truncated header", NULL);

	/* u32 dims that multiply past size_t */
	uint32_t big[8] = {0xffffffff, 0xffffffff, 0xffffffff, 2, 1, 1, 1, 1};
	n = put_header(img, 0x0D, 8, big);
	expect_reject(img, n, "too large", NULL);
	uint32_t big2[2] = {0xffffffff, 0x40000001};
	n = put_header(img, 0x0D, 2, big2); /* the count fits, its bytes do not */
	expect_reject(img, n, "too large", NULL);
}
END_TEST

START_TEST(test_reject_size)
{
	unsigned char img[64];
	size_t n = make_f32_image(img);
	expect_reject(img, n - 1, "truncated", "needs 24 data bytes, the file has 23");
	expect_reject(img, n - 24, "truncated", "2x3 float32 needs 24 data bytes, the file has 0");
	img[n] = 0;
	expect_reject(img, n + 1, "trailing bytes", "needs 24 data bytes, the file has 25");

	/* huge dims on a tiny buffer: refused, not allocated */
	uint32_t dims[3] = {60000, 60000, 60000};
	n = put_header(img, 0x08, 3, dims);
	expect_reject(img, n + 4, "truncated", "60000x60000x60000");
}
END_TEST

/* ---- files -------------------------------------------------------------------- */

START_TEST(test_read_plain_and_gzip)
{
	unsigned char img[64];
	size_t n = make_f32_image(img);
	char plain[2048], gz[2048], err[512];
	tmp_path(plain, sizeof plain, "x-idx2-float");
	tmp_path(gz, sizeof gz, "x-idx2-float.gz");
	write_bytes(plain, img, n);
	write_gz(gz, img, n);
	const char *paths[2] = {plain, gz};
	for (int k = 0; k < 2; k++) {
		rt_array a;
		ck_assert_msg(rt_idx_read(paths[k], &a, err, sizeof err) == 0, "%s", err);
		ck_assert_int_eq(a.dtype, RT_DTYPE_F32);
		ck_assert_int_eq(a.rank, 2);
		ck_assert_int_eq(a.dims[0], 2);
		ck_assert_int_eq(a.dims[1], 3);
		for (int i = 0; i < 6; i++)
			ck_assert_float_eq(((float *)a.data)[i], f32_vals[i]);
		rt_array_free(&a);
	}

	/* concatenated gzip members are one stream, as gunzip reads them */
	size_t len;
	unsigned char *one = slurp(gz, &len);
	gzFile g = gzopen(gz, "wb");
	ck_assert_int_eq(gzwrite(g, img, 10), 10);
	ck_assert_int_eq(gzclose(g), Z_OK);
	size_t len_a;
	unsigned char *part_a = slurp(gz, &len_a);
	g = gzopen(gz, "wb");
	ck_assert_int_eq(gzwrite(g, img + 10, (unsigned)(n - 10)), (int)(n - 10));
	ck_assert_int_eq(gzclose(g), Z_OK);
	size_t len_b;
	unsigned char *part_b = slurp(gz, &len_b);
	unsigned char *both = malloc(len_a + len_b);
	memcpy(both, part_a, len_a);
	memcpy(both + len_a, part_b, len_b);
	write_bytes(gz, both, len_a + len_b);
	rt_array a;
	ck_assert_msg(rt_idx_read(gz, &a, err, sizeof err) == 0, "%s", err);
	ck_assert_float_eq(((float *)a.data)[5], f32_vals[5]);
	rt_array_free(&a);
	free(one);
	free(part_a);
	free(part_b);
	free(both);
}
END_TEST

START_TEST(test_read_errors)
{
	char path[2048];
	unsigned char img[64];
	size_t n = make_f32_image(img);

	tmp_path(path, sizeof path, "absent.gz");
	expect_read_reject(path, "cannot open");

	tmp_path(path, sizeof path, "short");
	write_bytes(path, img, n - 2);
	expect_read_reject(path, "truncated");

	/* errors inside a gzip file name the file too */
	tmp_path(path, sizeof path, "bad-type.gz");
	img[2] = 0x0B;
	write_gz(path, img, n);
	expect_read_reject(path, "0x0b");
	img[2] = 0x0D;

	tmp_path(path, sizeof path, "trailing.gz");
	unsigned char longer[65];
	memcpy(longer, img, n);
	longer[n] = 7;
	write_gz(path, longer, n + 1);
	expect_read_reject(path, "trailing bytes");

	tmp_path(path, sizeof path, "short.gz");
	write_gz(path, img, n - 1);
	expect_read_reject(path, "truncated");
}
END_TEST

START_TEST(test_read_corrupt_gzip)
{
	/* incompressible-ish data so the deflate stream is long */
	size_t n = 4 + 4 + 4096;
	unsigned char *img = malloc(n);
	uint32_t dims[1] = {4096};
	put_header(img, 0x08, 1, dims);
	rt_rng rng;
	rt_rng_seed(&rng, 7);
	for (size_t i = 8; i < n; i++)
		img[i] = (unsigned char)rt_rng_next(&rng);
	char path[2048];
	tmp_path(path, sizeof path, "c.gz");
	write_gz(path, img, n);
	size_t len;
	unsigned char *gz = slurp(path, &len);

	/* cut short: in the middle, and just before the trailer's last byte */
	write_bytes(path, gz, len / 2);
	expect_read_reject(path, "truncated gzip stream");
	write_bytes(path, gz, len - 1);
	expect_read_reject(path, "truncated gzip stream");
	write_bytes(path, gz, 2);
	expect_read_reject(path, "truncated gzip stream");

	/* a damaged CRC (the trailer's first byte) */
	unsigned char *bad = malloc(len);
	memcpy(bad, gz, len);
	bad[len - 8] ^= 0xff;
	write_bytes(path, bad, len);
	expect_read_reject(path, "corrupt gzip data");

	/* damaged header flags / method */
	memcpy(bad, gz, len);
	bad[2] = 7;
	write_bytes(path, bad, len);
	expect_read_reject(path, "corrupt gzip data");

	/* junk after the last member */
	unsigned char *junk = malloc(len + 3);
	memcpy(junk, gz, len);
	memcpy(junk + len, "abc", 3);
	write_bytes(path, junk, len + 3);
	expect_read_reject(path, "3 bytes of garbage after the gzip stream");

	/* random damage in the deflate data must fail cleanly or decode to the
	 * right size; never crash */
	for (int it = 0; it < 200; it++) {
		memcpy(bad, gz, len);
		size_t at = 10 + rt_rng_next(&rng) % (len - 18);
		bad[at] ^= (unsigned char)(1 + rt_rng_next(&rng) % 255);
		write_bytes(path, bad, len);
		rt_array a;
		char err[512];
		if (rt_idx_read(path, &a, err, sizeof err) == 0)
			ck_assert_uint_eq(a.count, 4096);
		else
			ck_assert_msg(strstr(err, path) != NULL, "%s", err);
		rt_array_free(&a);
	}
	free(img);
	free(gz);
	free(bad);
	free(junk);
}
END_TEST

/* Zip bombs: a stream longer than its header says stops at the header's
 * size, and a header claiming more than the cap is refused before inflating. */
START_TEST(test_read_gzip_bomb)
{
	size_t n = 64u << 20; /* 64 MiB that compresses to ~64 KiB */
	unsigned char *img = calloc(1, n);
	uint32_t dims[1] = {10};
	put_header(img, 0x08, 1, dims);
	char path[2048];
	tmp_path(path, sizeof path, "bomb.gz");
	write_gz(path, img, n);
	expect_read_reject(path, "longer than the 18 bytes its header declares");

	uint32_t huge[3] = {65536, 65536, 4}; /* 16 GiB of u8 */
	size_t h = put_header(img, 0x08, 3, huge);
	write_gz(path, img, h + 1000);
	expect_read_reject(path, "over the 1073741824-byte limit");

	/* just over the cap after a header: refused, though plain it would fit */
	uint32_t over[2] = {1u << 15, (1u << 15) + 1};
	h = put_header(img, 0x08, 2, over);
	write_gz(path, img, h);
	expect_read_reject(path, "limit");
	free(img);
}
END_TEST

/* ---- the real data --------------------------------------------------------------- */

START_TEST(test_fashion_mnist_t10k)
{
	if (access(FASHION_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
		fprintf(stderr, "skipping: %s not installed\n", FASHION_DIR);
		return;
	}
	rt_array img, lab;
	char err[512];
	ck_assert_msg(
	    rt_idx_read(FASHION_DIR "/t10k-images-idx3-ubyte.gz", &img, err, sizeof err) == 0, "%s",
	    err);
	ck_assert_int_eq(img.dtype, RT_DTYPE_U8);
	ck_assert_int_eq(img.rank, 3);
	ck_assert_int_eq(img.dims[0], 10000);
	ck_assert_int_eq(img.dims[1], 28);
	ck_assert_int_eq(img.dims[2], 28);
	ck_assert_uint_eq(img.count, 10000u * 28 * 28);
	/* real pictures, not a zeroed buffer */
	size_t nonzero = 0;
	for (size_t i = 0; i < img.count; i++)
		nonzero += ((uint8_t *)img.data)[i] != 0;
	ck_assert_uint_gt(nonzero, img.count / 4);
	rt_array_free(&img);

	ck_assert_msg(
	    rt_idx_read(FASHION_DIR "/t10k-labels-idx1-ubyte.gz", &lab, err, sizeof err) == 0, "%s",
	    err);
	ck_assert_int_eq(lab.dtype, RT_DTYPE_U8);
	ck_assert_int_eq(lab.rank, 1);
	ck_assert_int_eq(lab.dims[0], 10000);
	int seen[10] = {0};
	for (size_t i = 0; i < lab.count; i++) {
		uint8_t l = ((uint8_t *)lab.data)[i];
		ck_assert_uint_le(l, 9);
		seen[l]++;
	}
	for (int c = 0; c < 10; c++)
		ck_assert_int_eq(seen[c], 1000); /* the test set is balanced */
	rt_array_free(&lab);
}
END_TEST

/* ---- robustness ------------------------------------------------------------------ */

START_TEST(test_parse_mutations)
{
	unsigned char good[64];
	size_t n = make_f32_image(good);
	unsigned char *m = malloc(n + 8);
	rt_rng rng;
	rt_rng_seed(&rng, 99);
	for (int it = 0; it < 20000; it++) {
		memcpy(m, good, n);
		size_t len = n - 4 + rt_rng_next(&rng) % 9;
		for (size_t i = n; i < len; i++)
			m[i] = 0;
		int flips = 1 + (int)(rt_rng_next(&rng) % 3);
		for (int k = 0; k < flips; k++)
			m[rt_rng_next(&rng) % 12] = (unsigned char)rt_rng_next(&rng);
		/* an exact-size copy, so ASan sees any read past the end */
		unsigned char *exact = malloc(len);
		memcpy(exact, m, len);
		rt_array a;
		char err[256];
		if (rt_idx_parse(exact, len, &a, err, sizeof err) == 0)
			ck_assert_uint_eq(a.count * rt_dtype_size(a.dtype) + 4 + 4 * (size_t)a.rank,
			                  len);
		rt_array_free(&a);
		free(exact);
	}
	free(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("idx");
	TCase *p = tcase_create("parse");
	tcase_add_test(p, test_parse_u8);
	tcase_add_test(p, test_parse_f32_and_i32);
	tcase_add_test(p, test_parse_empty_dim);
	tcase_add_test(p, test_reject_header);
	tcase_add_test(p, test_reject_size);
	tcase_add_test(p, test_parse_mutations);
	suite_add_tcase(s, p);

	TCase *f = tcase_create("files");
	tcase_add_checked_fixture(f, tmp_setup, tmp_teardown);
	tcase_set_timeout(f, 60);
	tcase_add_test(f, test_read_plain_and_gzip);
	tcase_add_test(f, test_read_errors);
	tcase_add_test(f, test_read_corrupt_gzip);
	tcase_add_test(f, test_read_gzip_bomb);
	tcase_add_test(f, test_fashion_mnist_t10k);
	suite_add_tcase(s, f);
	return s;
}

TEST_MAIN(suite)
