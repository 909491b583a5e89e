/* safetensors: round trips through rt_st_write/rt_st_read, and every
 * validation rule of the reader against images built by hand in memory. */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ---- temporary directories ----------------------------------------------- */

static char tmp_root[4096];

static void tmp_setup(void)
{
	snprintf(tmp_root, sizeof tmp_root, "%s/netcc_st_XXXXXX", test_env("TMPDIR", "/tmp"));
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

static int count_dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
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

/* ---- in-memory images --------------------------------------------------- */

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* length, the hlen header bytes, data_len bytes counting up from 0 */
static unsigned char *make_image(const char *hdr, size_t hlen, size_t data_len, size_t *size)
{
	*size = 8 + hlen + data_len;
	unsigned char *img = malloc(*size);
	put_le64(img, hlen);
	memcpy(img + 8, hdr, hlen);
	for (size_t i = 0; i < data_len; i++)
		img[8 + hlen + i] = (unsigned char)i;
	return img;
}

/* Parses an image that must be rejected; the message must name the source,
 * contain phrase, and (when given) quote the tensor's name. */
static void expect_reject(unsigned char *img, size_t size, const char *phrase, const char *tensor)
{
	rt_st_file f;
	char err[512] = "";
	int rc = rt_st_parse(img, size, &f, err, sizeof err);
	ck_assert_msg(rc != 0, "accepted, expected '%s'", phrase);
	ck_assert_msg(strstr(err, "<memory>") != NULL, "no source in: %s", err);
	ck_assert_msg(strstr(err, phrase) != NULL, "'%s' not in: %s", phrase, err);
	if (tensor) {
		char quoted[256];
		snprintf(quoted, sizeof quoted, "'%s'", tensor);
		ck_assert_msg(strstr(err, quoted) != NULL, "%s not in: %s", quoted, err);
	}
	/* ownership passed even on failure: nothing is left to free */
	ck_assert_ptr_null(f.image);
	ck_assert_ptr_null(f.tensors);
	ck_assert_int_eq(f.n_tensors, 0);
	rt_st_free(&f);
}

static void expect_json_reject(const char *json, size_t data_len, const char *phrase,
                               const char *tensor)
{
	size_t size;
	unsigned char *img = make_image(json, strlen(json), data_len, &size);
	expect_reject(img, size, phrase, tensor);
}

/* ---- round trip --------------------------------------------------------- */

START_TEST(test_round_trip)
{
	float w[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
	double m[4] = {0.1, -0.2, 1e300, -1e-300};
	int32_t step = -7;
	int64_t idx[3] = {INT64_MIN, 0, INT64_MAX};
	uint8_t mask[5] = {0, 1, 127, 128, 255};
	float bias[2] = {42.0f, -42.0f};
	int64_t wd[2] = {2, 3}, md[2] = {2, 2}, id[1] = {3}, kd[1] = {5}, ed[2] = {0, 3},
	        bd[1] = {2};
	rt_st_entry e[] = {
	    {"conv0.weight", RT_DTYPE_F32, 2, wd, w}, {"bn.mean", RT_DTYPE_F64, 2, md, m},
	    {"step", RT_DTYPE_I32, 0, NULL, &step},   {"idx", RT_DTYPE_I64, 1, id, idx},
	    {"mask", RT_DTYPE_U8, 1, kd, mask},       {"empty", RT_DTYPE_F32, 2, ed, NULL},
	    {"fc.bias", RT_DTYPE_F32, 1, bd, bias},
	};
	const void *want[] = {w, m, &step, idx, mask, NULL, bias};
	size_t bytes[] = {sizeof w, sizeof m, sizeof step, sizeof idx, sizeof mask, 0, sizeof bias};
	const char *meta[] = {"format", "pt", "note", "a \"quoted\" \xc3\xbc value\n", "empty", ""};
	int n = (int)(sizeof e / sizeof e[0]);
	char path[4096], err[512];
	tmp_path(path, sizeof path, "w.safetensors");
	ck_assert_msg(rt_st_write(path, e, n, meta, 3, err, sizeof err) == 0, "%s", err);

	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, n);
	for (int i = 0; i < n; i++) {
		const rt_st_tensor *t = &f.tensors[i];
		ck_assert_str_eq(t->name, e[i].name);
		ck_assert_ptr_eq(rt_st_find(&f, e[i].name), t);
		ck_assert_int_eq(t->dtype, e[i].dtype);
		ck_assert_int_eq(t->rank, e[i].rank);
		size_t count = 1;
		for (int d = 0; d < t->rank; d++) {
			ck_assert_int_eq(t->dims[d], e[i].dims[d]);
			count *= (size_t)e[i].dims[d];
		}
		ck_assert_uint_eq(t->count, count);
		ck_assert_uint_eq(t->count * rt_dtype_size(t->dtype), bytes[i]);
		if (bytes[i])
			ck_assert_int_eq(memcmp(t->data, want[i], bytes[i]), 0);
	}
	ck_assert_ptr_null(rt_st_find(&f, "missing"));

	/* the padded header puts the data, and so the first float, on 8 bytes */
	const unsigned char *img = f.image;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | img[i];
	ck_assert_uint_eq(hlen % 8, 0);
	ck_assert_ptr_eq(f.tensors[0].data, img + 8 + hlen);
	ck_assert_uint_eq((uintptr_t)f.tensors[0].data % 8, 0);
	ck_assert_uint_eq(8 + hlen + sizeof w + sizeof m + 4 + sizeof idx + 5 + sizeof bias,
	                  f.size);

	ck_assert_int_eq(f.n_meta, 3);
	for (int i = 0; i < 3; i++)
		ck_assert_str_eq(rt_st_meta(&f, meta[2 * i]), meta[2 * i + 1]);
	ck_assert_ptr_null(rt_st_meta(&f, "missing"));
	rt_st_free(&f);
	ck_assert_ptr_null(f.image);
	rt_st_free(&f); /* twice is harmless */
}
END_TEST

START_TEST(test_write_no_tensors)
{
	char path[4096], err[512];
	tmp_path(path, sizeof path, "empty.safetensors");
	ck_assert_msg(rt_st_write(path, NULL, 0, NULL, 0, err, sizeof err) == 0, "%s", err);
	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, 0);
	ck_assert_int_eq(f.n_meta, 0);
	ck_assert_uint_eq(f.size % 8, 0);
	rt_st_free(&f);
}
END_TEST

/* Names and metadata are any UTF-8 without NUL: quotes, backslashes and
 * control characters are escaped on the way out and decoded on the way in. */
START_TEST(test_round_trip_odd_names)
{
	const char *names[] = {"q\"\\/\n\t\x01\x1f\x7f",
	                       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", ""};
	uint8_t u[3] = {1, 2, 3};
	int64_t d[1] = {1};
	rt_st_entry e[3];
	for (int i = 0; i < 3; i++)
		e[i] = (rt_st_entry){names[i], RT_DTYPE_U8, 1, d, &u[i]};
	const char *meta[] = {"k\"ey\x02", "line\none\r\n\\", "", ""};
	char path[4096], err[512];
	tmp_path(path, sizeof path, "odd.safetensors");
	ck_assert_msg(rt_st_write(path, e, 3, meta, 2, err, sizeof err) == 0, "%s", err);
	rt_st_file f;
	ck_assert_msg(rt_st_read(path, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(f.tensors[i].name, names[i]);
		ck_assert_int_eq(*(const uint8_t *)f.tensors[i].data, u[i]);
	}
	ck_assert_str_eq(rt_st_meta(&f, meta[0]), meta[1]);
	ck_assert_str_eq(rt_st_meta(&f, ""), "");
	rt_st_free(&f);
}
END_TEST

/* The writer is checked against another reader's expectations byte for byte. */
START_TEST(test_write_exact_bytes)
{
	float v[2] = {1, 2};
	int64_t d[1] = {2};
	rt_st_entry e = {"x", RT_DTYPE_F32, 1, d, v};
	char path[4096], err[512];
	tmp_path(path, sizeof path, "x.safetensors");
	ck_assert_msg(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) == 0, "%s", err);
	size_t len;
	unsigned char *b = slurp(path, &len);
	const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
	ck_assert_uint_eq(len, 8 + hl + 8);
	ck_assert_uint_eq(b[0], hl);
	ck_assert_int_eq(memcmp(b + 8, json, jl), 0);
	for (size_t i = jl; i < hl; i++)
		ck_assert_int_eq(b[8 + i], ' ');
	ck_assert_int_eq(memcmp(b + 8 + hl, v, 8), 0);
	free(b);
}
END_TEST

/* ---- writer failures ------------------------------------------------------ */

static void expect_write_reject(const rt_st_entry *e, int n, const char *const *meta, int n_meta,
                                const char *phrase)
{
	char path[4096], err[512] = "";
	tmp_path(path, sizeof path, "bad.safetensors");
	ck_assert_msg(rt_st_write(path, e, n, meta, n_meta, err, sizeof err) != 0,
	              "accepted, expected '%s'", phrase);
	ck_assert_msg(strstr(err, path) != NULL, "no path in: %s", err);
	ck_assert_msg(strstr(err, phrase) != NULL, "'%s' not in: %s", phrase, err);
	ck_assert(!file_exists(path));
	ck_assert_int_eq(count_dir_entries(tmp_root), 0);
}

START_TEST(test_write_rejects)
{
	float v[4] = {0};
	int64_t d1[1] = {4}, neg[1] = {-1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	int64_t huge[2] = {INT64_MAX, INT64_MAX};
	rt_st_entry dup[2] = {{"a", RT_DTYPE_F32, 1, d1, v}, {"a", RT_DTYPE_F32, 1, d1, v}};
	expect_write_reject(dup, 2, NULL, 0, "duplicate tensor name 'a'");
	rt_st_entry ok0 = {"ok", RT_DTYPE_F32, 1, d1, v};
	rt_st_entry null_data = {"w", RT_DTYPE_F32, 1, d1, NULL};
	expect_write_reject(&null_data, 1, NULL, 0, "'w': data is NULL");
	rt_st_entry no_name = {NULL, RT_DTYPE_F32, 1, d1, v};
	expect_write_reject(&no_name, 1, NULL, 0, "no name");
	rt_st_entry reserved = {"__metadata__", RT_DTYPE_F32, 1, d1, v};
	expect_write_reject(&reserved, 1, NULL, 0, "reserved");
	rt_st_entry negative = {"n", RT_DTYPE_F32, 1, neg, v};
	expect_write_reject(&negative, 1, NULL, 0, "'n': shape [-1]");
	rt_st_entry too_big = {"b", RT_DTYPE_F32, 2, huge, v};
	expect_write_reject(&too_big, 1, NULL, 0, "too large");
	rt_st_entry rank9 = {"r", RT_DTYPE_F32, 9, nine, v};
	expect_write_reject(&rank9, 1, NULL, 0, "rank 9");
	rt_st_entry no_dims = {"r", RT_DTYPE_F32, 1, NULL, v};
	expect_write_reject(&no_dims, 1, NULL, 0, "rank 1");
	int64_t past53[2] = {9007199254740993, 0};
	rt_st_entry inexact = {"i", RT_DTYPE_F32, 2, past53, NULL};
	expect_write_reject(&inexact, 1, NULL, 0, "too large");
	rt_st_entry latin1 = {"caf\xe9", RT_DTYPE_F32, 1, d1, v};
	expect_write_reject(&latin1, 1, NULL, 0, "not valid UTF-8");
	const char *bad_meta[] = {"k", "\xc3("};
	expect_write_reject(&ok0, 1, bad_meta, 1, "pair 0: the value is not valid UTF-8");
	rt_st_entry bad_dtype = {"t", (rt_dtype)99, 1, d1, v};
	expect_write_reject(&bad_dtype, 1, NULL, 0, "unsupported dtype 99");
	rt_st_entry ok = {"ok", RT_DTYPE_F32, 1, d1, v};
	const char *dup_meta[] = {"k", "1", "k", "2"};
	expect_write_reject(&ok, 1, dup_meta, 2, "duplicate __metadata__ key 'k'");
	const char *null_meta[] = {"k", NULL};
	expect_write_reject(&ok, 1, null_meta, 1, "NULL value");
	expect_write_reject(&ok, -1, NULL, 0, "bad arguments");
}
END_TEST

/* A failed write must leave neither a partial output nor its temporary. */
START_TEST(test_write_never_partial)
{
	float v[2] = {1, 2};
	int64_t d[1] = {2};
	rt_st_entry e = {"x", RT_DTYPE_F32, 1, d, v};
	char path[4096], err[512];

	tmp_path(path, sizeof path, "no/such/dir/x.safetensors");
	ck_assert(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) != 0);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	ck_assert_int_eq(count_dir_entries(tmp_root), 0);

	/* the rename fails when the destination is a directory */
	tmp_path(path, sizeof path, "sub");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) != 0);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	ck_assert_int_eq(count_dir_entries(tmp_root), 1);
	ck_assert_int_eq(count_dir_entries(path), 0);

	/* a rejected rewrite leaves the old file exactly as it was */
	tmp_path(path, sizeof path, "keep.safetensors");
	ck_assert_msg(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) == 0, "%s", err);
	size_t len0, len1;
	unsigned char *before = slurp(path, &len0);
	rt_st_entry bad[2] = {e, e};
	ck_assert(rt_st_write(path, bad, 2, NULL, 0, err, sizeof err) != 0);
	unsigned char *after = slurp(path, &len1);
	ck_assert_uint_eq(len0, len1);
	ck_assert_int_eq(memcmp(before, after, len0), 0);
	ck_assert_int_eq(count_dir_entries(tmp_root), 2);
	free(before);
	free(after);
}
END_TEST

/* ---- reader: accepted oddities ------------------------------------------ */

START_TEST(test_parse_padding_and_extras)
{
	/* trailing spaces, an unknown field, an empty tensor inside another's
	 * bytes and one at the very end, and an unaligned data start */
	const char *json =
	    "{\"b\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [4, 7], \"x\": 1},"
	    " \"a\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	    " \"e\": {\"dtype\": \"F64\", \"shape\": [0, 5], \"data_offsets\": [2, 2]},"
	    " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [7, 7]}}   \n ";
	size_t size;
	unsigned char *img = make_image(json, strlen(json), 7, &size);
	rt_st_file f;
	char err[512];
	ck_assert_msg(rt_st_parse(img, size, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, 4);
	ck_assert_str_eq(f.tensors[0].name, "b");
	ck_assert_str_eq(f.tensors[1].name, "a");
	const unsigned char *data = (const unsigned char *)f.image + 8 + strlen(json);
	ck_assert_ptr_eq(rt_st_find(&f, "b")->data, data + 4);
	ck_assert_int_eq(((const unsigned char *)rt_st_find(&f, "b")->data)[2], 6);
	ck_assert_uint_eq(rt_st_find(&f, "e")->count, 0);
	ck_assert_int_eq(f.n_meta, 0);
	rt_st_free(&f);
}
END_TEST

START_TEST(test_parse_empty_object)
{
	size_t size;
	unsigned char *img = make_image("{}", 2, 0, &size);
	rt_st_file f;
	char err[512];
	ck_assert_msg(rt_st_parse(img, size, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, 0);
	rt_st_free(&f);
}
END_TEST

/* ---- reader: framing ------------------------------------------------------ */

START_TEST(test_reject_short_file)
{
	for (size_t n = 0; n < 8; n++) {
		unsigned char *img = calloc(1, n ? n : 1);
		expect_reject(img, n, "too short for the 8-byte header length", NULL);
	}
}
END_TEST

START_TEST(test_reject_header_length)
{
	size_t size;
	unsigned char *img = make_image("{}", 2, 0, &size);
	put_le64(img, 3);
	expect_reject(img, size, "header length 3 exceeds the 2 bytes after it", NULL);

	img = make_image("{}", 2, 0, &size);
	put_le64(img, (uint64_t)1 << 40);
	expect_reject(img, size, "absurdly large", NULL);

	img = make_image("{}", 2, 0, &size);
	put_le64(img, UINT64_MAX);
	expect_reject(img, size, "absurdly large", NULL);

	/* a header length that cuts the JSON short */
	img = make_image("{\"a\": 1}", 8, 0, &size);
	put_le64(img, 4);
	expect_reject(img, size, "not valid JSON", NULL);
}
END_TEST

START_TEST(test_reject_header_bytes)
{
	expect_json_reject("", 0, "not valid JSON", NULL);
	expect_json_reject("{", 0, "not valid JSON", NULL);
	expect_json_reject("{\"a\": }", 0, "not valid JSON", NULL);
	expect_json_reject("[1, 2]", 0, "not a JSON object", NULL);
	expect_json_reject("\"s\"", 0, "not a JSON object", NULL);
	expect_json_reject("null", 0, "not a JSON object", NULL);
	expect_json_reject("{} x", 0, "stray bytes after the JSON", NULL);
	expect_json_reject("{}{}", 0, "stray bytes after the JSON", NULL);

	/* a NUL must not hide junk after it from the padding check */
	size_t size;
	unsigned char *img = make_image("{}  \0 ", 6, 0, &size);
	expect_reject(img, size, "stray bytes", NULL);
	img = make_image("{\"a\0\": 1}", 9, 0, &size);
	expect_reject(img, size, "not valid JSON", NULL);
}
END_TEST

/* ---- reader: tensor entries ------------------------------------------------ */

#define ENTRY(fields) "{\"t\": {" fields "}}"

START_TEST(test_reject_entry)
{
	expect_json_reject("{\"t\": 5}", 0, "entry is not an object", "t");
	expect_json_reject("{\"t\": [1]}", 0, "entry is not an object", "t");
	expect_json_reject("{\"ok\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 1]},"
	                   " \"t\": \"x\"}",
	                   1, "entry is not an object", "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"dtype\": \"U8\", \"shape\": [1], "
	                         "\"data_offsets\": [0, 1]"),
	                   1, "duplicate field 'dtype'", "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"shape\": [1], "
	                         "\"data_offsets\": [0, 1]"),
	                   1, "duplicate field 'shape'", "t");
}
END_TEST

START_TEST(test_reject_dtype)
{
	expect_json_reject(
	    ENTRY("\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]"), 1,
	    "unknown dtype 'F8_E4M3'", "t");
	expect_json_reject(ENTRY("\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]"), 4,
	                   "unknown dtype 'f32'", "t");
	expect_json_reject(ENTRY("\"dtype\": \"\", \"shape\": [1], \"data_offsets\": [0, 4]"), 4,
	                   "unknown dtype", "t");
	expect_json_reject(ENTRY("\"shape\": [1], \"data_offsets\": [0, 4]"), 4,
	                   "dtype is missing or not a string", "t");
	expect_json_reject(ENTRY("\"dtype\": 1, \"shape\": [1], \"data_offsets\": [0, 4]"), 4,
	                   "dtype is missing or not a string", "t");
}
END_TEST

START_TEST(test_reject_shape)
{
	const char *not_ints = "shape is not an array of non-negative integers";
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"data_offsets\": [0, 1]"), 1,
	                   "shape is missing or not an array", "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": 1, \"data_offsets\": [0, 1]"), 1,
	                   "shape is missing or not an array", "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [-1], \"data_offsets\": [0, 1]"), 1,
	                   not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1.5], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [\"1\"], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [[1]], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1e300], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(
	    ENTRY("\"dtype\": \"U8\", \"shape\": [1e20, 0], \"data_offsets\": [0, 0]"), 0, not_ints,
	    "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], "
	                         "\"data_offsets\": [0, 1]"),
	                   1, "rank 9 exceeds the maximum 8", "t");
	/* integers written as integers only, as the format's reference reader
	 * reads them; 2^53 + 1 would read as 2^53 in a double */
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1.0], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1e0], \"data_offsets\": [0, 1]"),
	                   1, not_ints, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [9007199254740993, 0], "
	                         "\"data_offsets\": [0, 0]"),
	                   0, not_ints, "t");
	/* each dim is exact in a double; their product is not in a size_t */
	expect_json_reject(
	    ENTRY("\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296, 4294967296], "
	          "\"data_offsets\": [0, 1]"),
	    1, "shape [4294967296, 4294967296, 4294967296] is too large", "t");
	/* the count fits but its byte size does not */
	expect_json_reject(ENTRY("\"dtype\": \"F64\", \"shape\": [9007199254740992, 256], "
	                         "\"data_offsets\": [0, 8]"),
	                   8, "needs more than", "t");
}
END_TEST

START_TEST(test_reject_offsets)
{
	const char *not_pair = "data_offsets is not a pair of non-negative integers";
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1]"), 1, not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0]"), 1,
	                   not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1, 2]"),
	                   2, not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]"), 1,
	                   not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 0.5]"),
	                   1, not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1.0]"),
	                   1, not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": {\"a\": 0}"),
	                   1, not_pair, "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [8, 4]"), 8,
	                   "data_offsets [8, 4] begin after they end", "t");
	expect_json_reject("{\"conv0.weight\": {\"dtype\": \"F32\", \"shape\": [25], "
	                   "\"data_offsets\": [0, 100]}}",
	                   64, "data_offsets [0, 100] exceed the data size 64", "conv0.weight");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [1], "
	                         "\"data_offsets\": [9007199254740991, 9007199254740992]"),
	                   4, "exceed the data size 4", "t");
	expect_json_reject(
	    ENTRY("\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]"), 16,
	    "data_offsets [0, 12] hold 12 bytes but F32 shape [2, 2] needs 16", "t");
	expect_json_reject(ENTRY("\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [0, 0]"), 0,
	                   "hold 0 bytes", "t");
}
END_TEST

START_TEST(test_reject_overlap_and_duplicates)
{
	expect_json_reject(
	    "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
	    " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
	    24, "tensors 'a' [0, 16] and 'b' [8, 24] overlap", NULL);
	/* overlap found whatever the header order */
	expect_json_reject(
	    "{\"late\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [12, 16]},"
	    " \"mid\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]},"
	    " \"big\": {\"dtype\": \"U8\", \"shape\": [10], \"data_offsets\": [3, 13]}}",
	    16, "overlap", "big");
	expect_json_reject(
	    "{\"same\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
	    " \"other\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
	    4, "overlap", "other");
	expect_json_reject(
	    "{\"w\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
	    " \"v\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]},"
	    " \"w\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [8, 12]}}",
	    12, "duplicate tensor name", "w");
	/* an escape spelling the same name is still the same name */
	expect_json_reject(
	    "{\"w\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
	    " \"\\u0077\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
	    8, "duplicate tensor name", "w");
}
END_TEST

START_TEST(test_reject_metadata)
{
	expect_json_reject("{\"__metadata__\": [\"a\"]}", 0, "__metadata__ is not an object", NULL);
	expect_json_reject("{\"__metadata__\": \"a\"}", 0, "__metadata__ is not an object", NULL);
	expect_json_reject("{\"__metadata__\": {\"ok\": \"1\", \"k\": 1}}", 0,
	                   "__metadata__ value for 'k' is not a string", NULL);
	expect_json_reject("{\"__metadata__\": {\"k\": null}}", 0, "not a string", "k");
	expect_json_reject("{\"__metadata__\": {\"k\": {}}}", 0, "not a string", "k");
	expect_json_reject("{\"__metadata__\": {\"k\": \"a\", \"k\": \"b\"}}", 0,
	                   "__metadata__: duplicate key 'k'", NULL);
	expect_json_reject("{\"__metadata__\": {}, \"__metadata__\": {}}", 0,
	                   "duplicate __metadata__", NULL);
}
END_TEST

START_TEST(test_parse_metadata)
{
	const char *json = "{\"__metadata__\": {\"format\": \"pt\", \"e\": \"\"},"
	                   " \"t\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}";
	size_t size;
	unsigned char *img = make_image(json, strlen(json), 2, &size);
	rt_st_file f;
	char err[512];
	ck_assert_msg(rt_st_parse(img, size, &f, err, sizeof err) == 0, "%s", err);
	ck_assert_int_eq(f.n_tensors, 1);
	ck_assert_int_eq(f.n_meta, 2);
	ck_assert_str_eq(rt_st_meta(&f, "format"), "pt");
	ck_assert_str_eq(rt_st_meta(&f, "e"), "");
	rt_st_free(&f);
}
END_TEST

/* ---- reader: files ---------------------------------------------------------- */

START_TEST(test_read_errors_name_the_file)
{
	char path[4096], err[512];
	rt_st_file f;
	tmp_path(path, sizeof path, "absent.safetensors");
	ck_assert(rt_st_read(path, &f, err, sizeof err) != 0);
	ck_assert_msg(strstr(err, path) && strstr(err, "cannot open"), "%s", err);
	ck_assert_ptr_null(f.image);

	ck_assert(rt_st_read(tmp_root, &f, err, sizeof err) != 0); /* a directory */
	ck_assert_msg(strstr(err, tmp_root) != NULL, "%s", err);

	float v[4] = {1, 2, 3, 4};
	int64_t d[1] = {4};
	rt_st_entry e = {"layer.w", RT_DTYPE_F32, 1, d, v};
	tmp_path(path, sizeof path, "cut.safetensors");
	ck_assert_msg(rt_st_write(path, &e, 1, NULL, 0, err, sizeof err) == 0, "%s", err);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(truncate(path, st.st_size - 3), 0);
	ck_assert(rt_st_read(path, &f, err, sizeof err) != 0);
	ck_assert_msg(strstr(err, path) && strstr(err, "'layer.w'") &&
	                  strstr(err, "exceed the data size 13"),
	              "%s", err);
}
END_TEST

/* ---- robustness ------------------------------------------------------------- */

/* An accepted image must describe only bytes inside itself. */
static void check_in_bounds(const rt_st_file *f)
{
	const unsigned char *lo = f->image, *hi = lo + f->size;
	for (int i = 0; i < f->n_tensors; i++) {
		const rt_st_tensor *t = &f->tensors[i];
		const unsigned char *p = t->data;
		ck_assert(p >= lo && p <= hi);
		ck_assert_uint_le(t->count * rt_dtype_size(t->dtype), (size_t)(hi - p));
	}
}

static void parse_copy(const unsigned char *src, size_t len)
{
	unsigned char *img = malloc(len ? len : 1);
	if (len)
		memcpy(img, src, len);
	rt_st_file f;
	char err[256];
	if (rt_st_parse(img, len, &f, err, sizeof err) == 0)
		check_in_bounds(&f);
	else
		ck_assert(strstr(err, "<memory>") != NULL);
	rt_st_free(&f);
}

START_TEST(test_truncations_and_mutations)
{
	float w[6] = {1, 2, 3, 4, 5, 6};
	uint8_t u[3] = {7, 8, 9};
	int64_t wd[2] = {2, 3}, ud[1] = {3};
	rt_st_entry e[2] = {{"w", RT_DTYPE_F32, 2, wd, w}, {"u", RT_DTYPE_U8, 1, ud, u}};
	const char *meta[] = {"k", "v"};
	char path[4096], err[512];
	tmp_path(path, sizeof path, "m.safetensors");
	ck_assert_msg(rt_st_write(path, e, 2, meta, 1, err, sizeof err) == 0, "%s", err);
	size_t len;
	unsigned char *good = slurp(path, &len);

	for (size_t n = 0; n < len; n++)
		parse_copy(good, n);

	rt_rng rng;
	rt_rng_seed(&rng, 1234);
	unsigned char *m = malloc(len);
	int iters = test_sanitized() ? 3000 : 20000;
	for (int it = 0; it < iters; it++) {
		memcpy(m, good, len);
		int flips = 1 + (int)(rt_rng_next(&rng) % 4);
		for (int k = 0; k < flips; k++) {
			size_t at = rt_rng_next(&rng) % len;
			/* mostly the header, where the structure is */
			if (rt_rng_next(&rng) % 4 && at > 8 + 60)
				at = 8 + at % 60;
			m[at] = (unsigned char)rt_rng_next(&rng);
		}
		parse_copy(m, len);
	}
	free(m);
	free(good);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("safetensors");
	TCase *rt = tcase_create("round_trip");
	tcase_add_checked_fixture(rt, tmp_setup, tmp_teardown);
	tcase_add_test(rt, test_round_trip);
	tcase_add_test(rt, test_write_no_tensors);
	tcase_add_test(rt, test_round_trip_odd_names);
	tcase_add_test(rt, test_write_exact_bytes);
	tcase_add_test(rt, test_write_rejects);
	tcase_add_test(rt, test_write_never_partial);
	tcase_add_test(rt, test_read_errors_name_the_file);
	suite_add_tcase(s, rt);

	TCase *rd = tcase_create("reader");
	tcase_add_test(rd, test_parse_padding_and_extras);
	tcase_add_test(rd, test_parse_empty_object);
	tcase_add_test(rd, test_parse_metadata);
	tcase_add_test(rd, test_reject_short_file);
	tcase_add_test(rd, test_reject_header_length);
	tcase_add_test(rd, test_reject_header_bytes);
	tcase_add_test(rd, test_reject_entry);
	tcase_add_test(rd, test_reject_dtype);
	tcase_add_test(rd, test_reject_shape);
	tcase_add_test(rd, test_reject_offsets);
	tcase_add_test(rd, test_reject_overlap_and_duplicates);
	tcase_add_test(rd, test_reject_metadata);
	suite_add_tcase(s, rd);

	TCase *fz = tcase_create("robustness");
	tcase_add_checked_fixture(fz, tmp_setup, tmp_teardown);
	tcase_set_timeout(fz, 60);
	tcase_add_test(fz, test_truncations_and_mutations);
	suite_add_tcase(s, fz);
	return s;
}

TEST_MAIN(suite)
