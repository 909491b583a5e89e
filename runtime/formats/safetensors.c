/* safetensors reading; writing is safetensors_write.c.
 *
 * The reader treats every byte of the file as hostile: the header is checked
 * against the real file size before anything is allocated from it, every
 * tensor's byte range must lie inside the data buffer and match its shape, and
 * no two tensors may share bytes or a name. The JSON DOM keeps duplicate keys
 * instead of rejecting them, so duplicates are found here; different readers
 * pick different duplicates, and a file that means one thing to us and another
 * to PyTorch is worse than a file we refuse. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "safetensors_impl.h"

/* The reference implementation refuses headers over 100 MB; a larger one is
 * an attack on our memory, not a model. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

static int st_dtype_parse(const char *s, rt_dtype *out)
{
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
		if (strcmp(st_dtypes[i].name, s) == 0) {
			*out = st_dtypes[i].dtype;
			return 0;
		}
	}
	return -1;
}

/* ---- reading ----------------------------------------------------------- */

/* What the parser needs besides the output: where the messages point and
 * where the data buffer lies. */
typedef struct st_ctx {
	const char *label; /* path, or "<memory>" */
	const unsigned char *data;
	size_t data_size;
	char *err;
	size_t errlen;
} st_ctx;

/* A JSON integer in [0, 2^53], written as one: 2.0 and 1e3 are refused,
 * as the format's reference reader refuses them. */
static int json_uint(const rt_json *j, uint64_t *out)
{
	if (!j || j->kind != RT_JSON_NUMBER || !j->is_int || j->i < 0 || j->i > ST_MAX_INT)
		return -1;
	*out = (uint64_t)j->i;
	return 0;
}

static int parse_shape(st_ctx *c, const char *name, const rt_json *shape, rt_st_tensor *t)
{
	if (!shape || shape->kind != RT_JSON_ARRAY) {
		snprintf(c->err, c->errlen, "%s: tensor '%s': shape is missing or not an array",
		         c->label, name);
		return -1;
	}
	if (shape->n > RT_MAX_RANK) {
		snprintf(c->err, c->errlen, "%s: tensor '%s': rank %zu exceeds the maximum %d",
		         c->label, name, shape->n, RT_MAX_RANK);
		return -1;
	}
	t->rank = 0;
	for (const rt_json *d = shape->first; d; d = d->next) {
		uint64_t v;
		if (json_uint(d, &v) != 0) {
			snprintf(c->err, c->errlen,
			         "%s: tensor '%s': shape is not an array of non-negative integers",
			         c->label, name);
			return -1;
		}
		t->dims[t->rank++] = (int64_t)v;
	}
	int ok;
	t->count = shape_count(t->rank, t->dims, &ok);
	if (!ok) {
		char s[256];
		format_shape(s, sizeof s, t->rank, t->dims);
		snprintf(c->err, c->errlen, "%s: tensor '%s': shape %s is too large", c->label,
		         name, s);
		return -1;
	}
	return 0;
}

/* Checks data_offsets against the data buffer and the shape, then points the
 * tensor at its bytes. */
static int parse_offsets(st_ctx *c, const char *name, const rt_json *offs, rt_st_tensor *t)
{
	uint64_t b, e;
	if (!offs || offs->kind != RT_JSON_ARRAY || offs->n != 2 ||
	    json_uint(offs->first, &b) != 0 || json_uint(offs->first->next, &e) != 0) {
		snprintf(c->err, c->errlen,
		         "%s: tensor '%s': data_offsets is not a pair of non-negative integers",
		         c->label, name);
		return -1;
	}
	if (b > e) {
		snprintf(c->err, c->errlen,
		         "%s: tensor '%s': data_offsets [%llu, %llu] begin after they end",
		         c->label, name, (unsigned long long)b, (unsigned long long)e);
		return -1;
	}
	if (e > c->data_size) {
		snprintf(c->err, c->errlen,
		         "%s: tensor '%s': data_offsets [%llu, %llu] exceed the data size %zu",
		         c->label, name, (unsigned long long)b, (unsigned long long)e,
		         c->data_size);
		return -1;
	}
	size_t need;
	int overflow = __builtin_mul_overflow(t->count, rt_dtype_size(t->dtype), &need);
	if (overflow || need != e - b) {
		char s[256], needs[64];
		format_shape(s, sizeof s, t->rank, t->dims);
		if (overflow)
			snprintf(needs, sizeof needs, "more than %zu", SIZE_MAX);
		else
			snprintf(needs, sizeof needs, "%zu", need);
		snprintf(c->err, c->errlen,
		         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s "
		         "shape %s needs %s",
		         c->label, name, (unsigned long long)b, (unsigned long long)e,
		         (unsigned long long)(e - b), st_dtype_name(t->dtype), s, needs);
		return -1;
	}
	t->offset = b;
	t->data = c->data ? c->data + b : NULL;
	return 0;
}

/* Picks the fields out of one entry; a repeated field is an error because
 * which copy wins differs between parsers. Unknown fields are ignored. */
static int entry_fields(st_ctx *c, const char *name, const rt_json *entry, const rt_json **dtype,
                        const rt_json **shape, const rt_json **offs)
{
	*dtype = *shape = *offs = NULL;
	for (const rt_json *f = entry->first; f; f = f->next) {
		const rt_json **slot = NULL;
		if (strcmp(f->key, "dtype") == 0)
			slot = dtype;
		else if (strcmp(f->key, "shape") == 0)
			slot = shape;
		else if (strcmp(f->key, "data_offsets") == 0)
			slot = offs;
		if (!slot)
			continue;
		if (*slot) {
			snprintf(c->err, c->errlen, "%s: tensor '%s': duplicate field '%s'",
			         c->label, name, f->key);
			return -1;
		}
		*slot = f;
	}
	return 0;
}

static int parse_tensor(st_ctx *c, const rt_json *entry, rt_st_tensor *t)
{
	const char *name = entry->key;
	if (entry->kind != RT_JSON_OBJECT) {
		snprintf(c->err, c->errlen, "%s: tensor '%s': entry is not an object", c->label,
		         name);
		return -1;
	}
	const rt_json *dtype, *shape, *offs;
	if (entry_fields(c, name, entry, &dtype, &shape, &offs) != 0)
		return -1;
	if (!dtype || dtype->kind != RT_JSON_STRING) {
		snprintf(c->err, c->errlen, "%s: tensor '%s': dtype is missing or not a string",
		         c->label, name);
		return -1;
	}
	if (st_dtype_parse(dtype->str, &t->dtype) != 0) {
		snprintf(c->err, c->errlen,
		         "%s: tensor '%s': unknown dtype '%s' (expected F32, F64, F16, BF16, I32, "
		         "I64 or U8)",
		         c->label, name, dtype->str);
		return -1;
	}
	if (parse_shape(c, name, shape, t) != 0 || parse_offsets(c, name, offs, t) != 0)
		return -1;
	t->name = strdup(name);
	if (!t->name) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	return 0;
}

static int parse_metadata(st_ctx *c, const rt_json *meta, rt_st_file *out)
{
	if (meta->kind != RT_JSON_OBJECT) {
		snprintf(c->err, c->errlen, "%s: __metadata__ is not an object", c->label);
		return -1;
	}
	int n = (int)meta->n; /* a 100 MB header holds fewer than 2^31 values */
	out->meta_keys = calloc(n ? (size_t)n : 1, sizeof *out->meta_keys);
	out->meta_values = calloc(n ? (size_t)n : 1, sizeof *out->meta_values);
	if (!out->meta_keys || !out->meta_values) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	for (const rt_json *kv = meta->first; kv; kv = kv->next) {
		if (kv->kind != RT_JSON_STRING) {
			snprintf(c->err, c->errlen,
			         "%s: __metadata__ value for '%s' is not a string", c->label,
			         kv->key);
			return -1;
		}
		/* counted before the copies so rt_st_free sees every allocation */
		int i = out->n_meta++;
		out->meta_keys[i] = strdup(kv->key);
		out->meta_values[i] = strdup(kv->str);
		if (!out->meta_keys[i] || !out->meta_values[i]) {
			snprintf(c->err, c->errlen, "%s: out of memory", c->label);
			return -1;
		}
	}
	const char **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
	if (!keys) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	memcpy(keys, out->meta_keys, (size_t)n * sizeof *keys);
	const char *dup = find_duplicate(keys, (size_t)n);
	if (dup)
		snprintf(c->err, c->errlen, "%s: __metadata__: duplicate key '%s'", c->label, dup);
	free(keys);
	return dup ? -1 : 0;
}

static int check_unique_names(st_ctx *c, const rt_st_file *f)
{
	size_t n = (size_t)f->n_tensors;
	const char **names = malloc((n ? n : 1) * sizeof *names);
	if (!names) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = f->tensors[i].name;
	const char *dup = find_duplicate(names, n);
	if (dup)
		snprintf(c->err, c->errlen, "%s: duplicate tensor name '%s'", c->label, dup);
	free(names);
	return dup ? -1 : 0;
}

static size_t tensor_bytes(const rt_st_tensor *t)
{
	return t->count * rt_dtype_size(t->dtype);
}

static int cmp_tensor_begin(const void *a, const void *b)
{
	const rt_st_tensor *x = *(const rt_st_tensor *const *)a;
	const rt_st_tensor *y = *(const rt_st_tensor *const *)b;
	return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Two tensors sharing bytes would let a write through one corrupt the other
 * and is never produced by a correct writer. Empty tensors own no bytes, so
 * they may sit anywhere. */
static int check_no_overlap(st_ctx *c, const rt_st_file *f)
{
	size_t n = 0;
	const rt_st_tensor **order =
	    malloc((f->n_tensors ? (size_t)f->n_tensors : 1) * sizeof *order);
	if (!order) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	for (int i = 0; i < f->n_tensors; i++)
		if (f->tensors[i].count > 0)
			order[n++] = &f->tensors[i];
	qsort(order, n, sizeof *order, cmp_tensor_begin);
	int rc = 0;
	for (size_t i = 1; i < n && rc == 0; i++) {
		const rt_st_tensor *a = order[i - 1], *b = order[i];
		size_t a_begin = (size_t)a->offset, a_end = a_begin + tensor_bytes(a);
		size_t b_begin = (size_t)b->offset, b_end = b_begin + tensor_bytes(b);
		if (a_end > b_begin) {
			snprintf(c->err, c->errlen,
			         "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
			         c->label, a->name, a_begin, a_end, b->name, b_begin, b_end);
			rc = -1;
		}
	}
	free(order);
	return rc;
}

static int parse_entries(st_ctx *c, const rt_json *root, rt_st_file *out)
{
	size_t n = root->n;
	out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
	if (!out->tensors) {
		snprintf(c->err, c->errlen, "%s: out of memory", c->label);
		return -1;
	}
	const rt_json *meta = NULL;
	for (const rt_json *entry = root->first; entry; entry = entry->next) {
		if (strcmp(entry->key, ST_META) != 0) {
			/* counted first so rt_st_free sees a partial name */
			if (parse_tensor(c, entry, &out->tensors[out->n_tensors++]) != 0)
				return -1;
			continue;
		}
		if (meta) {
			snprintf(c->err, c->errlen, "%s: duplicate __metadata__", c->label);
			return -1;
		}
		meta = entry;
	}
	if (meta && parse_metadata(c, meta, out) != 0)
		return -1;
	return check_unique_names(c, out) != 0 || check_no_overlap(c, out) != 0 ? -1 : 0;
}

/* The header is JSON padded with whitespace up to its stated length; anything
 * else after the JSON means the length or the JSON is wrong. */
static int parse_header(st_ctx *c, const unsigned char *hdr, size_t len, rt_json_doc *doc)
{
	rt_json_error e;
	if (rt_json_doc_parse(doc, (const char *)hdr, len, &e) != 0) {
		if (e.code == RT_JSON_ERR_NUL) /* linear0.bias\u0000junk is no name */
			snprintf(c->err, c->errlen,
			         "%s: header holds a NUL character (\\u0000, at byte %zu)",
			         c->label, e.offset);
		else if (e.code == RT_JSON_ERR_TRAILING)
			snprintf(c->err, c->errlen,
			         "%s: header has stray bytes after the JSON (at byte %zu of %zu)",
			         c->label, e.offset, len);
		else if (e.code == RT_JSON_ERR_MEMORY)
			snprintf(c->err, c->errlen, "%s: out of memory for a %zu-byte header",
			         c->label, len);
		else
			snprintf(c->err, c->errlen,
			         "%s: header is not valid JSON (error near byte %zu)", c->label,
			         e.offset);
		return -1;
	}
	if (doc->root->kind != RT_JSON_OBJECT) {
		snprintf(c->err, c->errlen, "%s: header is not a JSON object", c->label);
		rt_json_doc_free(doc);
		return -1;
	}
	return 0;
}

/* Where the data section ends: the last byte any tensor uses. */
static uint64_t data_used(const rt_st_file *f)
{
	uint64_t used = 0;
	for (int i = 0; i < f->n_tensors; i++) {
		uint64_t end = f->tensors[i].offset + tensor_bytes(&f->tensors[i]);
		used = end > used ? end : used;
	}
	return used;
}

static int header_length(const char *label, const unsigned char *p, uint64_t after, uint64_t *hlen,
                         char *err, size_t errlen)
{
	*hlen = 0;
	for (int i = 7; i >= 0; i--)
		*hlen = *hlen << 8 | p[i];
	if (*hlen > ST_MAX_HEADER) {
		snprintf(err, errlen, "%s: header length %llu is absurdly large (limit %llu)",
		         label, (unsigned long long)*hlen, (unsigned long long)ST_MAX_HEADER);
		return -1;
	}
	if (*hlen > after) {
		snprintf(err, errlen, "%s: header length %llu exceeds the %llu bytes after it",
		         label, (unsigned long long)*hlen, (unsigned long long)after);
		return -1;
	}
	return 0;
}

/* The header against a data section of c->data_size bytes; c->data may be
 * NULL (only the header is in memory yet), and then no tensor points at
 * anything. */
static int parse_header_entries(st_ctx *c, const unsigned char *hdr, size_t hlen, rt_st_file *out)
{
	rt_json_doc doc;
	if (parse_header(c, hdr, hlen, &doc) != 0)
		return -1;
	int rc = parse_entries(c, doc.root, out);
	rt_json_doc_free(&doc);
	return rc;
}

/* The data ends where the last tensor does, as the format's reference reader
 * requires: more bytes mean a truncated header or another file appended. */
static int check_trailing(st_ctx *c, uint64_t more, int at_least)
{
	if (more == 0)
		return 0;
	snprintf(c->err, c->errlen, "%s: %s%llu bytes after the last tensor's data", c->label,
	         at_least ? "at least " : "", (unsigned long long)more);
	return -1;
}

static int st_parse(const char *label, void *image, size_t size, rt_st_file *out, char *err,
                    size_t errlen)
{
	memset(out, 0, sizeof *out);
	out->image = image;
	out->size = size;
	st_ctx c = {.label = label, .err = err, .errlen = errlen};
	if (size < 8) {
		snprintf(err, errlen,
		         "%s: file is %zu bytes, too short for the 8-byte header length", label,
		         size);
		goto fail;
	}
	const unsigned char *p = image;
	uint64_t hlen;
	if (header_length(label, p, size - 8, &hlen, err, errlen) != 0)
		goto fail;
	c.data = p + 8 + hlen;
	c.data_size = size - 8 - (size_t)hlen;
	if (parse_header_entries(&c, p + 8, (size_t)hlen, out) != 0)
		goto fail;
	uint64_t used = data_used(out);
	if (check_trailing(&c, c.data_size - used, 0) != 0)
		goto fail;
	return 0;
fail:
	rt_st_free(out);
	return -1;
}

/* Ownership: image passes to the parser whether or not parsing succeeds. On
 * success rt_st_free releases it with everything else; on failure it is
 * already freed and *out is zeroed. One rule for both outcomes means no caller
 * has to remember which path it took, and rt_st_free(out) is safe either way. */
int rt_st_parse(void *image, size_t size, rt_st_file *out, char *err, size_t errlen)
{
	return st_parse("<memory>", image, size, out, err, errlen);
}

/* The header is read and checked against the file's size before the data:
 * a bad header on a large file costs the header, and a stream (a pipe,
 * /dev/zero) is read only as far as its header places data. */
static int read_image(const char *path, unsigned char **image, size_t *size, char *err,
                      size_t errlen)
{
	rt_reader r;
	if (rt_reader_open(&r, path, err, errlen) != 0)
		return -1;
	unsigned char *buf = NULL;
	size_t len = 0;
	rt_st_file probe = {0};
	st_ctx c = {.label = path, .err = err, .errlen = errlen};
	if (rt_reader_take(&r, &buf, &len, 8, err, errlen) != 0)
		goto fail;
	if (len < 8) {
		snprintf(err, errlen,
		         "%s: file is %zu bytes, too short for the 8-byte header length", path,
		         len);
		goto fail;
	}
	uint64_t hlen, after = r.sized ? r.size - 8 : ST_MAX_HEADER;
	if (header_length(path, buf, after, &hlen, err, errlen) != 0)
		goto fail;
	if (rt_reader_take(&r, &buf, &len, (size_t)hlen, err, errlen) != 0)
		goto fail;
	if (len < 8 + hlen) {
		snprintf(err, errlen, "%s: header length %llu exceeds the %zu bytes after it", path,
		         (unsigned long long)hlen, len - 8);
		goto fail;
	}
	c.data_size = r.sized ? r.size - 8 - hlen : (size_t)ST_MAX_INT;
	if (parse_header_entries(&c, buf + 8, (size_t)hlen, &probe) != 0)
		goto fail;
	uint64_t used = data_used(&probe);
	rt_st_free(&probe);
	if (r.sized && check_trailing(&c, c.data_size - used, 0) != 0)
		goto fail;
	if (rt_reader_take(&r, &buf, &len, (size_t)used, err, errlen) != 0)
		goto fail;
	if (len < 8 + hlen + used) {
		snprintf(err, errlen,
		         "%s: truncated: the header places tensor data up to byte %llu, the file "
		         "ends at %zu",
		         path, (unsigned long long)(8 + hlen + used), len);
		goto fail;
	}
	int at_least;
	uint64_t more = rt_reader_rest(&r, &at_least);
	if (check_trailing(&c, more, at_least) != 0)
		goto fail;
	rt_reader_close(&r);
	*image = buf;
	*size = len;
	return 0;
fail:
	rt_st_free(&probe);
	rt_reader_close(&r);
	free(buf);
	return -1;
}

int rt_st_read(const char *path, rt_st_file *out, char *err, size_t errlen)
{
	unsigned char *image;
	size_t size;
	if (read_image(path, &image, &size, err, errlen) != 0) {
		memset(out, 0, sizeof *out);
		return -1;
	}
	return st_parse(path, image, size, out, err, errlen);
}

const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name)
{
	for (int i = 0; f && name && i < f->n_tensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}

const char *rt_st_meta(const rt_st_file *f, const char *key)
{
	for (int i = 0; f && key && i < f->n_meta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_values[i];
	return NULL;
}

/* Also frees what a failed parse left half built: counts cover every slot
 * that may hold an allocation, and unfilled slots are NULL. */
void rt_st_free(rt_st_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n_tensors; i++)
		free((char *)f->tensors[i].name);
	for (int i = 0; i < f->n_meta; i++) {
		free((char *)f->meta_keys[i]);
		free((char *)f->meta_values[i]);
	}
	free(f->tensors);
	free(f->meta_keys);
	free(f->meta_values);
	free(f->image);
	memset(f, 0, sizeof *f);
}
