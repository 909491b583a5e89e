/* NumPy .npy files: reading versions 1.0 to 3.0, writing 1.0.
 *
 * The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * This parser accepts exactly that grammar (quoted keys, the three keys NumPy
 * writes, a tuple of non-negative integers) and nothing looser, because the
 * input may be hostile: every read is bounds-checked against the image, and
 * the data size implied by the shape must match what the file holds.
 * Data is taken as little-endian, which is what every supported host is. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime.h"

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static const struct {
	const char *descr;
	rt_dtype dtype;
} npy_dtypes[] = {
    {"<f4", RT_DTYPE_F32}, {"<f8", RT_DTYPE_F64}, {"<f2", RT_DTYPE_F16}, {"<i4", RT_DTYPE_I32},
    {"<i8", RT_DTYPE_I64}, {"|u1", RT_DTYPE_U8},  {"<u1", RT_DTYPE_U8},  {">u1", RT_DTYPE_U8},
};

/* What the header says and where the data lies in the image. */
typedef struct npy_header {
	rt_dtype dtype;
	int rank;
	int64_t dims[RT_MAX_RANK];
	size_t count, data_off, data_len;
} npy_header;

/* A read position inside the header text; p never passes end. */
typedef struct npy_cursor {
	const char *p, *end;
	const char *start; /* for offsets in messages */
} npy_cursor;

/* Every failure goes through here so messages all read "<name>: <problem>". */
static int npy_fail(char *err, size_t errlen, const char *name, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", name, msg);
	return -1;
}

static void npy_shape_format(const int64_t *dims, int rank, char *buf, size_t len)
{
	size_t used = (size_t)snprintf(buf, len, "(");
	for (int i = 0; i < rank && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "",
		                         (long long)dims[i]);
	if (used < len)
		snprintf(buf + used, len - used, rank == 1 ? ",)" : ")");
}

/* ---- header text ------------------------------------------------------- */

static void npy_skip_ws(npy_cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int npy_peek(const npy_cursor *c)
{
	return c->p < c->end ? (unsigned char)*c->p : -1;
}

static int npy_accept(npy_cursor *c, char ch)
{
	if (npy_peek(c) != (unsigned char)ch)
		return 0;
	c->p++;
	return 1;
}

static long npy_offset(const npy_cursor *c)
{
	return (long)(c->p - c->start);
}

/* A quoted Python string without escapes; *s and *n span its contents. */
static int npy_string(npy_cursor *c, const char **s, size_t *n)
{
	int q = npy_peek(c);
	if (q != '\'' && q != '"')
		return -1;
	const char *b = ++c->p;
	while (c->p < c->end && *c->p != q && *c->p != '\\')
		c->p++;
	if (c->p >= c->end || *c->p != q)
		return -1;
	*s = b;
	*n = (size_t)(c->p - b);
	c->p++;
	return 0;
}

static int npy_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int npy_parse_descr(npy_cursor *c, npy_header *h, const char *name, char *err, size_t errlen)
{
	const char *s;
	size_t n;
	if (npy_string(c, &s, &n) != 0)
		return npy_fail(err, errlen, name,
		                "malformed header: 'descr' is not a plain string "
		                "at offset %ld (structured dtypes are not supported)",
		                npy_offset(c));
	for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
		if (npy_is(s, n, npy_dtypes[i].descr)) {
			h->dtype = npy_dtypes[i].dtype;
			return 0;
		}
	int shown = n > 32 ? 32 : (int)n;
	if (n > 0 && s[0] == '>')
		return npy_fail(err, errlen, name, "big-endian dtype '%.*s' is not supported",
		                shown, s);
	return npy_fail(err, errlen, name,
	                "unsupported dtype '%.*s' (expected <f4, <f8, <f2, <i4, <i8 or |u1)", shown,
	                s);
}

static int npy_parse_fortran(npy_cursor *c, const char *name, char *err, size_t errlen)
{
	size_t left = (size_t)(c->end - c->p);
	if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
		c->p += 5;
		return 0;
	}
	if (left >= 4 && memcmp(c->p, "True", 4) == 0)
		return npy_fail(err, errlen, name,
		                "Fortran-order arrays are not supported (fortran_order is True)");
	return npy_fail(err, errlen, name,
	                "malformed header: fortran_order is not True or False at offset %ld",
	                npy_offset(c));
}

/* One non-negative decimal dimension, with Python 2's optional L suffix. */
static int npy_parse_dim(npy_cursor *c, int64_t *out, const char *name, char *err, size_t errlen)
{
	if (npy_peek(c) == '-')
		return npy_fail(err, errlen, name, "negative dimension in shape at offset %ld",
		                npy_offset(c));
	int d = npy_peek(c);
	if (d < '0' || d > '9')
		return npy_fail(err, errlen, name,
		                "malformed shape: expected a dimension at offset %ld",
		                npy_offset(c));
	int64_t v = 0;
	while ((d = npy_peek(c)) >= '0' && d <= '9') {
		if (v > (INT64_MAX - (d - '0')) / 10)
			return npy_fail(err, errlen, name,
			                "absurd shape: dimension at offset %ld overflows int64",
			                npy_offset(c));
		v = v * 10 + (d - '0');
		c->p++;
	}
	npy_accept(c, 'L');
	*out = v;
	return 0;
}

static int npy_parse_shape(npy_cursor *c, npy_header *h, const char *name, char *err, size_t errlen)
{
	if (!npy_accept(c, '('))
		return npy_fail(err, errlen, name, "malformed header: shape is not a tuple");
	int commas = 0;
	h->rank = 0;
	npy_skip_ws(c);
	while (!npy_accept(c, ')')) {
		if (h->rank == RT_MAX_RANK)
			return npy_fail(err, errlen, name, "absurd shape: more than %d dimensions",
			                RT_MAX_RANK);
		if (npy_parse_dim(c, &h->dims[h->rank], name, err, errlen) != 0)
			return -1;
		h->rank++;
		npy_skip_ws(c);
		if (npy_accept(c, ',')) {
			commas++;
			npy_skip_ws(c);
		} else if (npy_peek(c) != ')') {
			return npy_fail(err, errlen, name,
			                "malformed shape: expected ',' or ')' at offset %ld",
			                npy_offset(c));
		}
	}
	/* (5) is an int in Python, not a one-element tuple. */
	if (h->rank == 1 && commas == 0)
		return npy_fail(err, errlen, name, "malformed header: shape (%lld) is not a tuple",
		                (long long)h->dims[0]);
	return 0;
}

enum { NPY_DESCR = 1, NPY_FORTRAN = 2, NPY_SHAPE = 4 };

static int npy_parse_entry(npy_cursor *c, npy_header *h, int *seen, const char *name, char *err,
                           size_t errlen)
{
	const char *k;
	size_t kn;
	if (npy_string(c, &k, &kn) != 0)
		return npy_fail(err, errlen, name,
		                "malformed header: expected a quoted key at offset %ld",
		                npy_offset(c));
	int which = npy_is(k, kn, "descr")           ? NPY_DESCR
	            : npy_is(k, kn, "fortran_order") ? NPY_FORTRAN
	            : npy_is(k, kn, "shape")         ? NPY_SHAPE
	                                             : 0;
	if (!which)
		return npy_fail(err, errlen, name, "malformed header: unexpected key '%.*s'",
		                kn > 32 ? 32 : (int)kn, k);
	if (*seen & which)
		return npy_fail(err, errlen, name, "malformed header: duplicate key '%.*s'",
		                (int)kn, k);
	*seen |= which;
	npy_skip_ws(c);
	if (!npy_accept(c, ':'))
		return npy_fail(err, errlen, name,
		                "malformed header: expected ':' after '%.*s' at offset %ld",
		                (int)kn, k, npy_offset(c));
	npy_skip_ws(c);
	if (which == NPY_DESCR)
		return npy_parse_descr(c, h, name, err, errlen);
	if (which == NPY_FORTRAN)
		return npy_parse_fortran(c, name, err, errlen);
	return npy_parse_shape(c, h, name, err, errlen);
}

/* The header dict: exactly the three keys, optional trailing comma, then
 * only padding. */
static int npy_parse_dict(const char *text, size_t len, npy_header *h, const char *name, char *err,
                          size_t errlen)
{
	/* Only printable ASCII can appear in the headers we accept; refusing
	 * the rest up front keeps control bytes out of error messages. */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if ((ch < 0x20 || ch > 0x7e) && ch != '\n' && ch != '\r' && ch != '\t')
			return npy_fail(err, errlen, name,
			                "malformed header: byte 0x%02x at offset %zu is not "
			                "printable ASCII",
			                ch, i);
	}
	npy_cursor c = {text, text + len, text};
	npy_skip_ws(&c);
	if (!npy_accept(&c, '{'))
		return npy_fail(err, errlen, name, "malformed header: header is not a dict");
	int seen = 0;
	for (;;) {
		npy_skip_ws(&c);
		if (npy_accept(&c, '}'))
			break;
		if (npy_parse_entry(&c, h, &seen, name, err, errlen) != 0)
			return -1;
		npy_skip_ws(&c);
		if (npy_accept(&c, '}'))
			break;
		if (!npy_accept(&c, ','))
			return npy_fail(err, errlen, name,
			                "malformed header: expected ',' or '}' at offset %ld",
			                npy_offset(&c));
	}
	npy_skip_ws(&c);
	if (c.p != c.end)
		return npy_fail(err, errlen, name,
		                "malformed header: unexpected text after the dict at offset %ld",
		                npy_offset(&c));
	if (seen != (NPY_DESCR | NPY_FORTRAN | NPY_SHAPE))
		return npy_fail(err, errlen, name, "malformed header: missing key '%s'",
		                !(seen & NPY_DESCR)     ? "descr"
		                : !(seen & NPY_FORTRAN) ? "fortran_order"
		                                        : "shape");
	return 0;
}

/* ---- whole image --------------------------------------------------------- */

/* The magic, version and header from a prefix of the file that holds them
 * (len counts what is in buf); the data is not looked at. */
static int npy_decode_header(const unsigned char *buf, size_t len, npy_header *h, const char *name,
                             char *err, size_t errlen)
{
	if (len < 10)
		return npy_fail(err, errlen, name, "truncated: %zu bytes is too short for .npy",
		                len);
	if (memcmp(buf, npy_magic, sizeof npy_magic) != 0)
		return npy_fail(err, errlen, name, "bad magic: not a NumPy .npy file");
	int major = buf[6], minor = buf[7];
	if (major < 1 || major > 3 || minor != 0)
		return npy_fail(err, errlen, name, "unsupported .npy version %d.%d", major, minor);
	size_t pre = major == 1 ? 10 : 12, hlen;
	if (len < pre)
		return npy_fail(err, errlen, name, "truncated: %zu bytes is too short for .npy",
		                len);
	if (major == 1)
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
	else
		hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
		       (size_t)buf[11] << 24;
	if (hlen > len - pre)
		return npy_fail(err, errlen, name,
		                "truncated header: it claims %zu bytes but only %zu follow", hlen,
		                len - pre);
	if (npy_parse_dict((const char *)buf + pre, hlen, h, name, err, errlen) != 0)
		return -1;

	char shape[256];
	npy_shape_format(h->dims, h->rank, shape, sizeof shape);
	/* Zero dimensions are left out of the overflow check so that (0, 2**62,
	 * 2**62) is refused too: callers multiply dims to get strides. */
	size_t esize = rt_dtype_size(h->dtype), nonzero = 1;
	int empty = 0;
	for (int i = 0; i < h->rank; i++) {
		uint64_t d = (uint64_t)h->dims[i];
		if (d == 0) {
			empty = 1;
			continue;
		}
		if (nonzero > SIZE_MAX / esize / d)
			return npy_fail(err, errlen, name,
			                "absurd shape %s: the byte count overflows", shape);
		nonzero *= (size_t)d;
	}
	size_t count = empty ? 0 : nonzero;
	h->count = count;
	h->data_off = pre + hlen;
	h->data_len = count * esize;
	return 0;
}

/* avail: the bytes after the header, at least that many where at_least. */
static int npy_check_data(const npy_header *h, uint64_t avail, int at_least, const char *name,
                          char *err, size_t errlen)
{
	char shape[256];
	npy_shape_format(h->dims, h->rank, shape, sizeof shape);
	if (avail < h->data_len)
		return npy_fail(
		    err, errlen, name,
		    "truncated data: shape %s of %s needs %zu bytes but %llu follow the "
		    "header",
		    shape, rt_dtype_name(h->dtype), h->data_len, (unsigned long long)avail);
	if (avail > h->data_len)
		return npy_fail(
		    err, errlen, name, "%s%llu trailing bytes after the data of shape %s of %s",
		    at_least ? "at least " : "", (unsigned long long)(avail - h->data_len), shape,
		    rt_dtype_name(h->dtype));
	return 0;
}

/* The magic, version and header of a whole image, then its data's length. */
static int npy_decode(const unsigned char *buf, size_t len, npy_header *h, const char *name,
                      char *err, size_t errlen)
{
	if (npy_decode_header(buf, len, h, name, err, errlen) != 0)
		return -1;
	return npy_check_data(h, len - h->data_off, 0, name, err, errlen);
}

static void npy_fill(rt_array *out, const npy_header *h, void *data)
{
	out->dtype = h->dtype;
	out->rank = h->rank;
	for (int i = 0; i < RT_MAX_RANK; i++)
		out->dims[i] = i < h->rank ? h->dims[i] : 0;
	out->count = h->count;
	out->data = data;
}

int rt_npy_parse(const void *buf, size_t len, rt_array *out, char *err, size_t errlen)
{
	return rt_npy_parse_named(".npy image", buf, len, out, err, errlen);
}

int rt_npy_parse_named(const char *name, const void *buf, size_t len, rt_array *out, char *err,
                       size_t errlen)
{
	npy_header h;
	memset(out, 0, sizeof *out);
	if (npy_decode(buf, len, &h, name, err, errlen) != 0)
		return -1;
	void *data = malloc(h.data_len ? h.data_len : 1);
	if (!data)
		return npy_fail(err, errlen, name, "out of memory for %zu bytes of data",
		                h.data_len);
	if (h.data_len)
		memcpy(data, (const unsigned char *)buf + h.data_off, h.data_len);
	npy_fill(out, &h, data);
	return 0;
}

/* The header first, from a file or a stream; the data only once the header
 * is good and the file's size agrees with it. */
int rt_npy_read(const char *path, rt_array *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	rt_reader r;
	if (rt_reader_open(&r, path, err, errlen) != 0)
		return -1;
	unsigned char *buf = NULL;
	size_t len = 0;
	npy_header h;
	int rc = -1;
	if (rt_reader_take(&r, &buf, &len, 12, err, errlen) != 0)
		goto done;
	/* the prefix's length fields name how much header follows */
	size_t pre = len >= 7 && buf[6] == 1 ? 10 : 12, hlen = 0;
	if (len >= pre)
		hlen = pre == 10 ? (size_t)buf[8] | (size_t)buf[9] << 8
		                 : (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
		                       (size_t)buf[11] << 24;
	/* seen: what the header is checked against; the file's size where the
	 * header claims more than it holds, so that the message says so */
	size_t seen = len;
	if (len >= pre && r.sized && hlen > r.size - pre)
		seen = (size_t)r.size;
	else if (len >= pre && pre + hlen > len &&
	         rt_reader_take(&r, &buf, &len, pre + hlen - len, err, errlen) != 0)
		goto done;
	else
		seen = len;
	if (npy_decode_header(buf, seen, &h, path, err, errlen) != 0)
		goto done;
	uint64_t avail = r.sized ? r.size - h.data_off : h.data_len;
	if (npy_check_data(&h, avail, 0, path, err, errlen) != 0)
		goto done;
	if (rt_reader_take(&r, &buf, &len, h.data_len, err, errlen) != 0)
		goto done;
	int at_least;
	avail = len - h.data_off + rt_reader_rest(&r, &at_least);
	if (npy_check_data(&h, avail, at_least, path, err, errlen) != 0)
		goto done;
	/* Slide the data to the front and keep the block: no second copy of a
	 * possibly large array. */
	memmove(buf, buf + h.data_off, h.data_len);
	void *shrunk = realloc(buf, h.data_len ? h.data_len : 1);
	npy_fill(out, &h, shrunk ? shrunk : buf);
	buf = NULL;
	rc = 0;
done:
	rt_reader_close(&r);
	free(buf);
	return rc;
}

/* ---- writing ------------------------------------------------------------- */

static const char *npy_descr_of(rt_dtype t)
{
	for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
		if (npy_dtypes[i].dtype == t)
			return npy_dtypes[i].descr;
	return NULL;
}

int rt_npy_encode(const char *path, rt_dtype dtype, int rank, const int64_t *dims, const void *data,
                  void **image, size_t *len, char *err, size_t errlen)
{
	const char *descr = npy_descr_of(dtype);
	if (!descr)
		return npy_fail(err, errlen, path, "cannot write unknown dtype %d", (int)dtype);
	if (rank < 0 || rank > RT_MAX_RANK)
		return npy_fail(err, errlen, path, "cannot write rank %d (at most %d)", rank,
		                RT_MAX_RANK);
	size_t esize = rt_dtype_size(dtype), count = 1;
	for (int i = 0; i < rank; i++) {
		if (dims[i] < 0)
			return npy_fail(err, errlen, path, "negative dimension %lld",
			                (long long)dims[i]);
		uint64_t d = (uint64_t)dims[i];
		if (d && count > SIZE_MAX / esize / d)
			return npy_fail(err, errlen, path, "shape too large: byte count overflows");
		count *= (size_t)d;
	}
	size_t nbytes = count * esize;

	char shape[256], dict[384];
	npy_shape_format(dims, rank, shape, sizeof shape);
	int dlen = snprintf(dict, sizeof dict,
	                    "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
	/* NumPy pads the header with spaces and a newline so the data starts
	 * on a 64-byte boundary, which lets readers map it aligned. */
	size_t hlen = ((10 + (size_t)dlen + 1 + 63) / 64) * 64 - 10;
	if (nbytes > SIZE_MAX - 10 - hlen)
		return npy_fail(err, errlen, path, "shape too large: byte count overflows");
	unsigned char *buf = malloc(10 + hlen + nbytes);
	if (!buf)
		return npy_fail(err, errlen, path, "out of memory for %zu bytes",
		                10 + hlen + nbytes);
	memcpy(buf, npy_magic, sizeof npy_magic);
	buf[6] = 1;
	buf[7] = 0;
	buf[8] = (unsigned char)(hlen & 0xff);
	buf[9] = (unsigned char)(hlen >> 8);
	memcpy(buf + 10, dict, (size_t)dlen);
	memset(buf + 10 + dlen, ' ', hlen - (size_t)dlen - 1);
	buf[10 + hlen - 1] = '\n';
	if (nbytes)
		memcpy(buf + 10 + hlen, data, nbytes);
	*image = buf;
	*len = 10 + hlen + nbytes;
	return 0;
}

int rt_npy_write(const char *path, rt_dtype dtype, int rank, const int64_t *dims, const void *data,
                 char *err, size_t errlen)
{
	void *buf;
	size_t len;
	if (rt_npy_encode(path, dtype, rank, dims, data, &buf, &len, err, errlen) != 0)
		return -1;
	int rc = rt_file_write_atomic(path, buf, len, err, errlen);
	free(buf);
	return rc;
}
