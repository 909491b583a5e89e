/* IDX, the format MNIST and Fashion-MNIST ship in:
 *   0x00 0x00 <type> <ndims>, ndims big-endian u32 dims, then the values,
 *   big-endian, row-major.
 * Usually gzip-compressed. A compressed file is the easy attack (a few KB
 * that inflate to terabytes), so decompression stops at whatever the IDX
 * header says the output should hold, and never goes past a hard cap. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "runtime.h"

/* Fashion-MNIST's training images are 47 MB inflated; nothing legitimate
 * comes near this. */
#define IDX_GZ_LIMIT ((size_t)1 << 30)

typedef struct idx_header {
	rt_dtype dtype;
	int rank;
	int64_t dims[RT_MAX_RANK];
	size_t count;
	size_t header_bytes; /* 4 + 4 * rank */
	size_t data_bytes;   /* count * element size */
} idx_header;

enum { IDX_OK, IDX_SHORT, IDX_BAD };

static uint32_t load_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int idx_type(unsigned char code, rt_dtype *out)
{
	switch (code) {
	case 0x08:
		*out = RT_DTYPE_U8;
		return 0;
	case 0x0C:
		*out = RT_DTYPE_I32;
		return 0;
	case 0x0D:
		*out = RT_DTYPE_F32;
		return 0;
	}
	return -1;
}

/* Decodes the header from a prefix of the file. IDX_SHORT means the prefix
 * ends inside the header: an error for a whole file, a reason to keep
 * inflating for a compressed one. Messages lack the file name, which the
 * callers prepend. */
static int idx_header_parse(const unsigned char *p, size_t len, idx_header *h, char *err,
                            size_t errlen)
{
	if (len < 4)
		return IDX_SHORT;
	if (p[0] != 0 || p[1] != 0) {
		snprintf(err, errlen, "bad magic %02x %02x (an IDX file starts with 00 00)", p[0],
		         p[1]);
		return IDX_BAD;
	}
	if (idx_type(p[2], &h->dtype) != 0) {
		snprintf(err, errlen,
		         "unsupported element type 0x%02x (expected 0x08 ubyte, 0x0c int32 or "
		         "0x0d float32)",
		         p[2]);
		return IDX_BAD;
	}
	h->rank = p[3];
	if (h->rank < 1 || h->rank > RT_MAX_RANK) {
		snprintf(err, errlen, "%d dimensions (expected 1..%d)", h->rank, RT_MAX_RANK);
		return IDX_BAD;
	}
	h->header_bytes = 4 + 4 * (size_t)h->rank;
	if (len < h->header_bytes)
		return IDX_SHORT;
	/* u32 dims: the product can overflow size_t only on a 32-bit host or
	 * with several large dims; either way it is refused before any use. */
	size_t count = 1;
	int overflow = 0;
	for (int i = 0; i < h->rank; i++) {
		uint32_t d = load_be32(p + 4 + 4 * i);
		h->dims[i] = d;
		overflow |= __builtin_mul_overflow(count, (size_t)d, &count);
	}
	if (overflow || __builtin_mul_overflow(count, rt_dtype_size(h->dtype), &h->data_bytes) ||
	    h->data_bytes > SIZE_MAX - h->header_bytes) {
		snprintf(err, errlen, "dimensions are too large (the size overflows)");
		return IDX_BAD;
	}
	h->count = count;
	return IDX_OK;
}

static void format_dims(char *buf, size_t len, const idx_header *h)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < h->rank && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "x" : "",
		                         (long long)h->dims[i]);
}

/* Copies the values out, converting big-endian words to host order; memcpy
 * because neither side need be aligned. */
static void idx_decode(const unsigned char *src, const idx_header *h, void *dst)
{
	if (h->dtype == RT_DTYPE_U8) {
		if (h->count)
			memcpy(dst, src, h->count);
		return;
	}
	unsigned char *out = dst;
	for (size_t i = 0; i < h->count; i++) {
		uint32_t v = load_be32(src + 4 * i);
		memcpy(out + 4 * i, &v, 4);
	}
}

static int size_error(const char *label, const idx_header *h, uint64_t have, int at_least,
                      char *err, size_t errlen)
{
	char dims[128];
	format_dims(dims, sizeof dims, h);
	snprintf(err, errlen, "%s: %s: %s %s needs %zu data bytes, the file has %s%llu", label,
	         have < h->data_bytes ? "truncated" : "trailing bytes", dims,
	         rt_dtype_name(h->dtype), h->data_bytes, at_least ? "at least " : "",
	         (unsigned long long)have);
	return -1;
}

static int idx_parse(const char *label, const unsigned char *p, size_t len, rt_array *out,
                     char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	idx_header h;
	char msg[256];
	int st = idx_header_parse(p, len, &h, msg, sizeof msg);
	if (st == IDX_SHORT) {
		snprintf(err, errlen, "%s: truncated header (%zu bytes)", label, len);
		return -1;
	}
	if (st == IDX_BAD) {
		snprintf(err, errlen, "%s: %s", label, msg);
		return -1;
	}
	size_t have = len - h.header_bytes;
	if (have != h.data_bytes)
		return size_error(label, &h, have, 0, err, errlen);
	void *data = malloc(h.data_bytes ? h.data_bytes : 1);
	if (!data) {
		snprintf(err, errlen, "%s: out of memory for %zu bytes", label, h.data_bytes);
		return -1;
	}
	idx_decode(p + h.header_bytes, &h, data);
	out->dtype = h.dtype;
	out->rank = h.rank;
	memcpy(out->dims, h.dims, sizeof h.dims);
	out->count = h.count;
	out->data = data;
	return 0;
}

int rt_idx_parse(const void *buf, size_t len, rt_array *out, char *err, size_t errlen)
{
	return idx_parse("<memory>", buf, len, out, err, errlen);
}

/* ---- files -------------------------------------------------------------- */

/* Inflation state: the output grows by doubling up to limit + 1 bytes, the
 * extra byte being how a stream longer than its header says is noticed. */
typedef struct gz_out {
	unsigned char *buf;
	size_t cap, have, limit;
	int header_known;
} gz_out;

static int gz_grow(gz_out *o)
{
	size_t want = o->cap ? o->cap * 2 : (size_t)1 << 16;
	if (want > o->limit + 1 || want < o->cap)
		want = o->limit + 1;
	unsigned char *nb = realloc(o->buf, want);
	if (!nb)
		return -1;
	o->buf = nb;
	o->cap = want;
	return 0;
}

/* Once the header has been inflated, the output may not outgrow it. */
static int gz_check_size(const char *path, gz_out *o, char *err, size_t errlen)
{
	if (!o->header_known) {
		idx_header h;
		char msg[256];
		int st = idx_header_parse(o->buf, o->have, &h, msg, sizeof msg);
		if (st == IDX_BAD) {
			snprintf(err, errlen, "%s: %s", path, msg);
			return -1;
		}
		if (st == IDX_OK) {
			if (h.data_bytes > IDX_GZ_LIMIT - h.header_bytes) {
				snprintf(err, errlen,
				         "%s: header declares %zu data bytes, over the %zu-byte "
				         "limit for compressed files",
				         path, h.data_bytes, IDX_GZ_LIMIT);
				return -1;
			}
			o->limit = h.header_bytes + h.data_bytes;
			o->header_known = 1;
		}
	}
	if (o->have > o->limit) {
		snprintf(err, errlen,
		         o->header_known ? "%s: trailing bytes: decompressed data is longer than "
		                           "the %zu bytes its header declares"
		                         : "%s: decompressed data exceeds the %zu-byte limit",
		         path, o->limit);
		return -1;
	}
	return 0;
}

static int is_gzip(const unsigned char *p, size_t len)
{
	return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* Compressed input, pulled from the file a chunk at a time: a large
 * compressed file costs its output, never its whole input as well. */
typedef struct gz_in {
	rt_reader *r;
	unsigned char buf[1 << 16];
	size_t len, pos;
	int eof;
} gz_in;

/* Makes at least want bytes available unless the file ends first. */
static int gz_fill(gz_in *in, size_t want, char *err, size_t errlen)
{
	if (in->len - in->pos >= want || in->eof)
		return 0;
	memmove(in->buf, in->buf + in->pos, in->len - in->pos);
	in->len -= in->pos;
	in->pos = 0;
	while (in->len < want && !in->eof) {
		size_t got;
		if (rt_reader_read(in->r, in->buf + in->len, sizeof in->buf - in->len, &got, err,
		                   errlen) != 0)
			return -1;
		in->len += got;
		in->eof = got == 0;
	}
	return 0;
}

/* Runs one inflate step; both sides are well under zlib's uInt. */
static int gz_step(z_stream *z, gz_in *in, gz_out *o)
{
	size_t out_left = o->cap - o->have;
	z->next_in = in->buf + in->pos;
	z->avail_in = (uInt)(in->len - in->pos);
	z->next_out = o->buf + o->have;
	z->avail_out = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
	uInt avail_in = z->avail_in, avail_out = z->avail_out;
	int ret = inflate(z, Z_NO_FLUSH);
	in->pos += avail_in - z->avail_in;
	o->have += avail_out - z->avail_out;
	return ret;
}

/* Inflates a whole gzip file; concatenated members are one stream, as gunzip
 * treats them, but bytes after the last member that are not another member
 * are an error. */
static int gz_inflate(const char *path, gz_in *in, gz_out *o, char *err, size_t errlen)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 15 + 16) != Z_OK) {
		snprintf(err, errlen, "%s: cannot initialise zlib", path);
		return -1;
	}
	int rc = -1;
	for (;;) {
		if (o->have == o->cap && gz_grow(o) != 0) {
			snprintf(err, errlen, "%s: out of memory decompressing", path);
			break;
		}
		if (gz_fill(in, 1, err, errlen) != 0)
			break;
		int ret = gz_step(&z, in, o);
		if (gz_check_size(path, o, err, errlen) != 0)
			break;
		if (ret == Z_STREAM_END) {
			if (gz_fill(in, 2, err, errlen) != 0)
				break;
			if (in->pos == in->len) {
				rc = 0;
				break;
			}
			if (!is_gzip(in->buf + in->pos, in->len - in->pos)) {
				int at_least;
				uint64_t more =
				    in->len - in->pos + rt_reader_rest(in->r, &at_least);
				snprintf(err, errlen,
				         "%s: %s%llu bytes of garbage after the gzip stream", path,
				         at_least ? "at least " : "", (unsigned long long)more);
				break;
			}
			inflateReset(&z);
			continue;
		}
		if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT || ret == Z_MEM_ERROR ||
		    ret == Z_STREAM_ERROR) {
			snprintf(err, errlen, "%s: corrupt gzip data: %s", path,
			         z.msg ? z.msg : "inflate failed");
			break;
		}
		/* all input consumed, room left for output, and no end: cut short */
		if (in->eof && in->pos == in->len && o->have < o->cap) {
			snprintf(err, errlen, "%s: truncated gzip stream", path);
			break;
		}
	}
	inflateEnd(&z);
	return rc;
}

/* An uncompressed file: the header first, its claim checked against the
 * file's size, then exactly the data it declares. */
static int raw_read(rt_reader *r, unsigned char **buf, size_t *len, rt_array *out, char *err,
                    size_t errlen)
{
	const char *path = r->path;
	idx_header h;
	char msg[256];
	if (rt_reader_take(r, buf, len, 4 - *len, err, errlen) != 0)
		return -1;
	int st = idx_header_parse(*buf, *len, &h, msg, sizeof msg);
	if (st == IDX_SHORT && *len == 4) {
		if (rt_reader_take(r, buf, len, h.header_bytes - 4, err, errlen) != 0)
			return -1;
		st = idx_header_parse(*buf, *len, &h, msg, sizeof msg);
	}
	if (st == IDX_SHORT) {
		snprintf(err, errlen, "%s: truncated header (%zu bytes)", path, *len);
		return -1;
	}
	if (st == IDX_BAD) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return -1;
	}
	if (r->sized && r->size - h.header_bytes != h.data_bytes)
		return size_error(path, &h, r->size - h.header_bytes, 0, err, errlen);
	if (rt_reader_take(r, buf, len, h.data_bytes, err, errlen) != 0)
		return -1;
	int at_least = 0;
	uint64_t more = rt_reader_rest(r, &at_least);
	uint64_t have = *len - h.header_bytes + more;
	if (have != h.data_bytes)
		return size_error(path, &h, have, at_least, err, errlen);
	return idx_parse(path, *buf, *len, out, err, errlen);
}

int rt_idx_read(const char *path, rt_array *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	rt_reader r;
	if (rt_reader_open(&r, path, err, errlen) != 0)
		return -1;
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = rt_reader_take(&r, &buf, &len, 2, err, errlen);
	if (rc == 0 && !is_gzip(buf, len)) {
		rc = raw_read(&r, &buf, &len, out, err, errlen);
	} else if (rc == 0) {
		gz_in *in = malloc(sizeof *in);
		gz_out o = {.limit = IDX_GZ_LIMIT};
		rc = -1;
		if (!in) {
			snprintf(err, errlen, "%s: out of memory", path);
		} else {
			memcpy(in->buf, buf, len);
			in->r = &r;
			in->len = len;
			in->pos = 0;
			in->eof = 0;
			rc = gz_inflate(path, in, &o, err, errlen);
		}
		free(in);
		if (rc == 0)
			rc = idx_parse(path, o.buf, o.have, out, err, errlen);
		free(o.buf);
	}
	rt_reader_close(&r);
	free(buf);
	return rc;
}
