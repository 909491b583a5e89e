/* safetensors writing: the tensors checked as the reader (safetensors.c)
 * will check them, the JSON header, and the file written atomically.
 * Apart from the reader because nothing here reads a file: it is the
 * other direction, and shares with the reader only what safetensors_impl.h
 * holds. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "safetensors_impl.h"

/* Byte size of an entry that entry_bytes has accepted. */
static size_t entry_size(const rt_st_entry *e)
{
	int ok;
	return shape_count(e->rank, e->dims, &ok) * rt_dtype_size(e->dtype);
}

static int entry_bytes(const char *path, const rt_st_entry *e, size_t *bytes, char *err,
                       size_t errlen)
{
	const char *name = e->name;
	if (!name) {
		snprintf(err, errlen, "%s: a tensor has no name", path);
		return -1;
	}
	/* our reader, like the reference one, refuses a header that is not UTF-8 */
	if (!rt_json_utf8_valid(name, strlen(name))) {
		snprintf(err, errlen, "%s: tensor name '%s' is not valid UTF-8", path, name);
		return -1;
	}
	if (strcmp(name, ST_META) == 0) {
		snprintf(err, errlen, "%s: tensor name '%s' is reserved", path, name);
		return -1;
	}
	if (!st_dtype_name(e->dtype)) {
		snprintf(err, errlen, "%s: tensor '%s': unsupported dtype %d", path, name,
		         (int)e->dtype);
		return -1;
	}
	if (e->rank < 0 || e->rank > RT_MAX_RANK || (e->rank > 0 && !e->dims)) {
		snprintf(err, errlen, "%s: tensor '%s': bad rank %d (0..%d, with dims)", path, name,
		         e->rank, RT_MAX_RANK);
		return -1;
	}
	int ok;
	size_t count = shape_count(e->rank, e->dims, &ok);
	for (int i = 0; i < e->rank; i++)
		if (e->dims[i] > ST_MAX_INT)
			ok = 0; /* our reader, like any using doubles, could not read it back */
	if (!ok || __builtin_mul_overflow(count, rt_dtype_size(e->dtype), bytes)) {
		char s[256];
		format_shape(s, sizeof s, e->rank, e->dims);
		snprintf(err, errlen, "%s: tensor '%s': shape %s is negative or too large", path,
		         name, s);
		return -1;
	}
	/* an empty tensor has nothing to point at */
	if (!e->data && *bytes > 0) {
		snprintf(err, errlen, "%s: tensor '%s': data is NULL", path, name);
		return -1;
	}
	return 0;
}

static int check_write_args(const char *path, const rt_st_entry *entries, int n,
                            const char *const *meta_kv, int n_meta, size_t *data_size, char *err,
                            size_t errlen)
{
	if (n < 0 || n_meta < 0 || n_meta > INT_MAX / 2 || (n > 0 && !entries) ||
	    (n_meta > 0 && !meta_kv)) {
		snprintf(err, errlen, "%s: bad arguments (%d tensors, %d metadata pairs)", path, n,
		         n_meta);
		return -1;
	}
	*data_size = 0;
	for (int i = 0; i < n; i++) {
		size_t bytes;
		if (entry_bytes(path, &entries[i], &bytes, err, errlen) != 0)
			return -1;
		if (__builtin_add_overflow(*data_size, bytes, data_size)) {
			snprintf(err, errlen, "%s: tensors are too large in total", path);
			return -1;
		}
	}
	for (int i = 0; i < 2 * n_meta; i++) {
		if (!meta_kv[i]) {
			snprintf(err, errlen, "%s: __metadata__ pair %d has a NULL %s", path, i / 2,
			         i % 2 ? "value" : "key");
			return -1;
		}
		if (!rt_json_utf8_valid(meta_kv[i], strlen(meta_kv[i]))) {
			snprintf(err, errlen, "%s: __metadata__ pair %d: the %s is not valid UTF-8",
			         path, i / 2, i % 2 ? "value" : "key");
			return -1;
		}
	}
	return 0;
}

/* A writer that allowed duplicates would produce files its own reader rejects. */
static int check_write_names(const char *path, const rt_st_entry *entries, int n,
                             const char *const *meta_kv, int n_meta, char *err, size_t errlen)
{
	int big = n > n_meta ? n : n_meta;
	const char **names = malloc((size_t)(big ? big : 1) * sizeof *names);
	if (!names) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	for (int i = 0; i < n; i++)
		names[i] = entries[i].name;
	const char *dup = find_duplicate(names, (size_t)n);
	if (dup) {
		snprintf(err, errlen, "%s: duplicate tensor name '%s'", path, dup);
	} else {
		for (int i = 0; i < n_meta; i++)
			names[i] = meta_kv[2 * i];
		dup = find_duplicate(names, (size_t)n_meta);
		if (dup)
			snprintf(err, errlen, "%s: duplicate __metadata__ key '%s'", path, dup);
	}
	free(names);
	return dup ? -1 : 0;
}

/* Integers are written as integers whatever their size (a double would
 * print 1e+15, which strict readers refuse). */
static rt_json *json_int_array(rt_json_doc *d, const int64_t *v, int n)
{
	rt_json *a = rt_json_value_new(d, RT_JSON_ARRAY);
	for (int i = 0; i < n; i++)
		rt_json_array_add(d, a, rt_json_int_new(d, v[i]));
	return a;
}

static rt_json *json_entry(rt_json_doc *d, const rt_st_entry *e, size_t begin, size_t end)
{
	int64_t offs[2] = {(int64_t)begin, (int64_t)end};
	rt_json *o = rt_json_value_new(d, RT_JSON_OBJECT);
	rt_json_object_add(d, o, "dtype", rt_json_string_new(d, st_dtype_name(e->dtype)));
	rt_json_object_add(d, o, "shape", json_int_array(d, e->dims, e->rank));
	rt_json_object_add(d, o, "data_offsets", json_int_array(d, offs, 2));
	return o;
}

/* The header's JSON, malloc'd; NULL out of memory. Builders pass failures
 * on, so rt_json_doc_write's one check covers every step. */
static char *json_header(const rt_st_entry *entries, int n, const char *const *meta_kv, int n_meta)
{
	rt_json_doc d = {0};
	rt_json *root = d.root = rt_json_value_new(&d, RT_JSON_OBJECT);
	if (n_meta > 0) {
		rt_json *meta =
		    rt_json_object_add(&d, root, ST_META, rt_json_value_new(&d, RT_JSON_OBJECT));
		for (int i = 0; i < n_meta; i++)
			rt_json_object_add(&d, meta, meta_kv[2 * i],
			                   rt_json_string_new(&d, meta_kv[2 * i + 1]));
	}
	size_t offset = 0;
	for (int i = 0; i < n; i++) {
		size_t bytes = entry_size(&entries[i]);
		rt_json_object_add(&d, root, entries[i].name,
		                   json_entry(&d, &entries[i], offset, offset + bytes));
		offset += bytes;
	}
	char *json = rt_json_doc_write(&d, NULL);
	rt_json_doc_free(&d);
	return json;
}

/* The whole image: length, header padded with spaces so the data starts on
 * an 8-byte boundary (readers can then use the data in place), data. */
static unsigned char *build_image(const char *json, const rt_st_entry *entries, int n,
                                  size_t data_size, size_t *size)
{
	size_t jlen = strlen(json);
	size_t hlen = (jlen + 7) & ~(size_t)7;
	if (hlen < jlen || __builtin_add_overflow(8 + hlen, data_size, size))
		return NULL;
	unsigned char *img = malloc(*size ? *size : 1);
	if (!img)
		return NULL;
	for (int i = 0; i < 8; i++)
		img[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	memcpy(img + 8, json, jlen);
	memset(img + 8 + jlen, ' ', hlen - jlen);
	unsigned char *p = img + 8 + hlen;
	for (int i = 0; i < n; i++) {
		size_t bytes = entry_size(&entries[i]);
		if (bytes)
			memcpy(p, entries[i].data, bytes);
		p += bytes;
	}
	return img;
}

int rt_st_encode(const char *path, const rt_st_entry *entries, int n, const char *const *meta_kv,
                 int n_meta, void **image, size_t *size, char *err, size_t errlen)
{
	size_t data_size;
	*image = NULL;
	*size = 0;
	if (check_write_args(path, entries, n, meta_kv, n_meta, &data_size, err, errlen) != 0 ||
	    check_write_names(path, entries, n, meta_kv, n_meta, err, errlen) != 0)
		return -1;
	char *json = json_header(entries, n, meta_kv, n_meta);
	unsigned char *img = json ? build_image(json, entries, n, data_size, size) : NULL;
	free(json);
	if (!img) {
		snprintf(err, errlen, "%s: out of memory building the file", path);
		return -1;
	}
	*image = img;
	return 0;
}

int rt_st_write(const char *path, const rt_st_entry *entries, int n, const char *const *meta_kv,
                int n_meta, char *err, size_t errlen)
{
	void *img;
	size_t size;
	if (rt_st_encode(path, entries, n, meta_kv, n_meta, &img, &size, err, errlen) != 0)
		return -1;
	int rc = rt_file_write_atomic(path, img, size, err, errlen);
	free(img);
	return rc;
}
