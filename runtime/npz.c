/* NumPy .npz files: a zip archive of .npy members, stored by np.savez and
 * deflated by np.savez_compressed.
 *
 * The archive is read front to back, one member at a time, through the
 * checked reader, so a pipe serves as well as a file and only one member's
 * bytes are held beside the arrays already parsed. Each local header's
 * sizes are checked against what the file still holds before anything is
 * allocated for its member; a deflated member's output buffer grows only
 * as bytes inflate, never past the size its header declared nor past what
 * deflate can give from its compressed bytes (1032 to 1), so a lie costs
 * what the file holds, not what it claims. The CRC-32 and the length of
 * every member's bytes are checked, and the .npy inside goes to the .npy
 * parser. At the end the central directory must list exactly the members
 * read, from the offsets they were read at, with the same sizes and CRCs;
 * the end record must agree with it, and nothing may follow. What numpy
 * does not write is refused, saying what it is: encryption, methods other
 * than stored and deflate, sizes after the data (flag bit 3, a zip written
 * to a pipe), archives split over disks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "runtime.h"

enum {
	SIG_LOCAL = 0x04034b50,
	SIG_CENTRAL = 0x02014b50,
	SIG_END = 0x06054b50,
	SIG_END64 = 0x06064b50,
	SIG_LOCATOR64 = 0x07064b50,
	LOCAL_LEN = 30,   /* a local header, signature included */
	CENTRAL_LEN = 46, /* a central directory entry, signature included */
	END_LEN = 22,
	END64_LEN = 56,
	LOCATOR64_LEN = 20,
	METHOD_STORED = 0,
	METHOD_DEFLATE = 8,
	/* deflate's options (bits 1, 2) and UTF-8 names (bit 11) change nothing here */
	FLAGS_ALLOWED = 0x0806,
};

#define U32_MAX 0xffffffffu
/* deflate never gives more than 1032 bytes for one */
#define DEFLATE_MAX_RATIO 1032

/* One member as it was read: what the central directory must repeat. */
typedef struct npz_member {
	uint64_t offset, csize, usize;
	uint32_t crc;
	uint16_t method;
} npz_member;

/* Where the bytes come from: a file through the checked reader, or an
 * image in memory (the fuzzers). */
typedef struct npz_in {
	rt_reader *r;
	const unsigned char *mem;
	size_t len;
	uint64_t pos;
	const char *label;
	char *err;
	size_t errlen;
} npz_in;

/* What has been read: the arrays, and each member's record. */
typedef struct npz_state {
	npz_in *in;
	rt_npz_file *out;
	npz_member *members;
	int cap;
} npz_state;

static int npz_fail(npz_in *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int npz_fail(npz_in *in, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (in->err && in->errlen)
		snprintf(in->err, in->errlen, "%s: %s", in->label, msg);
	return -1;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ---- input ----------------------------------------------------------------- */

/* Bytes left: exact for a file or an image, UINT64_MAX for a stream. */
static uint64_t in_left(const npz_in *in)
{
	if (!in->r)
		return in->len - in->pos;
	return in->r->sized ? (in->r->size > in->r->pos ? in->r->size - in->r->pos : 0)
	                    : UINT64_MAX;
}

/* Up to n bytes into *buf (replacing what it held); *got fewer only at
 * the end of the input. */
static int in_take(npz_in *in, unsigned char **buf, size_t n, size_t *got)
{
	*got = 0;
	if (in->r) {
		size_t len = 0;
		if (rt_reader_take(in->r, buf, &len, n, in->err, in->errlen) != 0)
			return -1;
		*got = len;
	} else {
		size_t have = in->len - (size_t)in->pos;
		*got = n < have ? n : have;
		unsigned char *b = realloc(*buf, *got ? *got : 1);
		if (!b)
			return npz_fail(in, "out of memory for %zu bytes", n);
		*buf = b;
		memcpy(b, in->mem + in->pos, *got);
	}
	in->pos += *got;
	return 0;
}

/* Up to n (small) bytes into dst; *got fewer only at the end of the input. */
static int in_bytes(npz_in *in, void *dst, size_t n, size_t *got)
{
	if (in->r) {
		if (rt_reader_read(in->r, dst, n, got, in->err, in->errlen) != 0)
			return -1;
	} else {
		*got = n < in->len - in->pos ? n : in->len - (size_t)in->pos;
		memcpy(dst, in->mem + in->pos, *got);
	}
	in->pos += *got;
	return 0;
}

/* Exactly n (small) bytes into dst, or an error saying what was cut short. */
static int in_read(npz_in *in, void *dst, size_t n, const char *what)
{
	size_t got;
	uint64_t at = in->pos;
	if (in_bytes(in, dst, n, &got) != 0)
		return -1;
	if (got < n)
		return npz_fail(in,
		                "truncated: the file ends at byte %llu, inside %s (at byte %llu)",
		                (unsigned long long)in->pos, what, (unsigned long long)at);
	return 0;
}

/* A signature, or 0 where the input ends before it. */
static int in_signature(npz_in *in, uint32_t *sig, bool *end)
{
	unsigned char b[4];
	size_t got;
	*end = false;
	if (in_bytes(in, b, 4, &got) != 0)
		return -1;
	if (got == 0) {
		*end = true;
		return 0;
	}
	if (got < 4 && in->pos == got)
		return npz_fail(in, "not an .npz (a zip archive): the file is %zu bytes long", got);
	if (got < 4)
		return npz_fail(
		    in, "truncated: the file ends at byte %llu, inside a record's signature",
		    (unsigned long long)in->pos);
	*sig = le32(b);
	return 0;
}

/* Bytes after the archive: none are allowed. */
static uint64_t in_rest(npz_in *in, int *at_least)
{
	*at_least = 0;
	if (in->r)
		return rt_reader_rest(in->r, at_least);
	return in->len - in->pos;
}

/* ---- names and fields ------------------------------------------------------ */

/* A member's name: printable, and NAME.npy. A zip that holds a pickle is
 * most likely PyTorch's own checkpoint, which deserves the way out. */
static int name_check(npz_in *in, int index, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch < 0x20 || ch == 0x7f)
			return npz_fail(in, "member %d's name holds the control byte 0x%02x",
			                index + 1, ch);
	}
	if (len > 4 && !strcmp(name + len - 4, ".pkl"))
		return npz_fail(
		    in,
		    "member '%s' is a pickle: this is a PyTorch checkpoint (torch.save), "
		    "not an .npz; save the state dict with numpy's np.savez (see "
		    "docs/interop.md)",
		    name);
	if (len <= 4 || strcmp(name + len - 4, ".npy") != 0 || name[len - 5] == '/')
		return npz_fail(in, "member '%s' is not a .npy array (an .npz holds only NAME.npy)",
		                name);
	return 0;
}

static int flags_check(npz_in *in, const char *name, unsigned flags, unsigned method)
{
	if (flags & 1)
		return npz_fail(in, "member '%s' is encrypted", name);
	if (flags & 8)
		return npz_fail(in,
		                "member '%s' keeps its sizes after its data (flag bit 3, a zip "
		                "written to a pipe), which netcc does not read; save to a file "
		                "with np.savez",
		                name);
	if (flags & ~(unsigned)FLAGS_ALLOWED)
		return npz_fail(in,
		                "member '%s' has general-purpose flags 0x%04x, which netcc does "
		                "not read",
		                name, flags);
	if (method != METHOD_STORED && method != METHOD_DEFLATE)
		return npz_fail(
		    in,
		    "member '%s' is compressed with method %u; netcc reads stored (0) "
		    "and deflated (8) members, as np.savez and np.savez_compressed write",
		    name, method);
	return 0;
}

/* The zip64 extra field (id 1) of a header: its 8-byte values in order,
 * those the header marks with all ones. *vals gets where they begin and
 * *n how many 8-byte values it holds; 0 where there is none. */
static int zip64_field(npz_in *in, const char *name, const unsigned char *extra, size_t len,
                       const unsigned char **vals, size_t *n)
{
	*vals = NULL;
	*n = 0;
	size_t at = 0;
	while (at < len) {
		if (len - at < 4)
			return npz_fail(in, "member '%s': its extra field is malformed", name);
		unsigned id = le16(extra + at), size = le16(extra + at + 2);
		if (size > len - at - 4)
			return npz_fail(in, "member '%s': its extra field is malformed", name);
		if (id == 1 && !*vals) {
			*vals = extra + at + 4;
			*n = size / 8;
		}
		at += 4 + size;
	}
	return 0;
}

/* The next zip64 value where the 32-bit field is all ones. */
static int zip64_take(npz_in *in, const char *name, uint64_t *v, uint32_t v32, bool wide,
                      const unsigned char *vals, size_t n, size_t *used)
{
	*v = v32;
	if (!wide)
		return 0;
	if (*used >= n)
		return npz_fail(
		    in, "member '%s': a size is marked zip64 but its extra field lacks it", name);
	*v = le64(vals + 8 * (*used)++);
	return 0;
}

/* ---- one member ---------------------------------------------------------- */

/* Inflates csize bytes at src into exactly usize bytes (*out, malloc'd);
 * the buffer grows as output arrives. */
static int member_inflate(npz_in *in, const char *name, const unsigned char *src, uint64_t csize,
                          uint64_t usize, unsigned char **out)
{
	z_stream z = {0};
	if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
		return npz_fail(in, "member '%s': cannot initialise zlib", name);
	size_t cap = usize < ((size_t)1 << 20) ? (size_t)usize : (size_t)1 << 20, have = 0;
	unsigned char *buf = malloc(cap ? cap : 1);
	unsigned char spill;
	uint64_t fed = 0;
	int rc = -1, zr = Z_OK;
	if (!buf) {
		npz_fail(in, "member '%s': out of memory", name);
		goto done;
	}
	while (zr != Z_STREAM_END) {
		if (!z.avail_in && fed < csize) {
			uInt step =
			    csize - fed < ((uInt)1 << 30) ? (uInt)(csize - fed) : (uInt)1 << 30;
			z.next_in = (unsigned char *)src + fed, z.avail_in = step, fed += step;
		}
		if (have == cap && cap < usize) {
			size_t grow = cap > usize - cap ? (size_t)(usize - cap) : cap;
			unsigned char *b = realloc(buf, cap + grow);
			if (!b) {
				npz_fail(in, "member '%s': out of memory for %zu bytes", name,
				         cap + grow);
				goto done;
			}
			buf = b, cap += grow;
		}
		/* at the declared size, one spare byte catches a stream that goes on */
		size_t room = cap - have < ((size_t)1 << 30) ? cap - have : (size_t)1 << 30;
		z.next_out = room ? buf + have : &spill, z.avail_out = room ? (uInt)room : 1;
		zr = inflate(&z, Z_NO_FLUSH);
		if (!room && z.avail_out == 0) {
			npz_fail(
			    in, "member '%s' inflates to more than the %llu bytes its header gives",
			    name, (unsigned long long)usize);
			goto done;
		}
		have += room - (room ? z.avail_out : 0);
		if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
			npz_fail(in, "member '%s': corrupt deflate data (%s)", name,
			         z.msg ? z.msg : "invalid");
			goto done;
		}
		if (zr == Z_MEM_ERROR) {
			npz_fail(in, "member '%s': out of memory inflating it", name);
			goto done;
		}
		if (zr == Z_BUF_ERROR && !z.avail_in && fed == csize) {
			npz_fail(
			    in,
			    "member '%s': its %llu compressed bytes end inside the deflate stream "
			    "(truncated or corrupt)",
			    name, (unsigned long long)csize);
			goto done;
		}
	}
	if (have != usize) {
		npz_fail(in, "member '%s' inflates to %zu bytes, its header says %llu", name, have,
		         (unsigned long long)usize);
		goto done;
	}
	if (z.avail_in || fed < csize) {
		npz_fail(in, "member '%s': its deflate stream ends %llu bytes before its data does",
		         name, (unsigned long long)(csize - fed + z.avail_in));
		goto done;
	}
	*out = buf;
	buf = NULL;
	rc = 0;
done:
	inflateEnd(&z);
	free(buf);
	return rc;
}

/* The sizes a local header gives, checked against what the file holds. */
static int sizes_check(npz_in *in, const char *name, unsigned method, uint64_t csize,
                       uint64_t usize)
{
	uint64_t left = in_left(in);
	if (csize > left)
		return npz_fail(in,
		                "member '%s' claims %llu bytes of data, the file holds %llu more "
		                "(truncated?)",
		                name, (unsigned long long)csize, (unsigned long long)left);
	/* deflate's output is never much longer than its input (stored
	 * blocks, codes of at most 15 bits a byte): a longer claim is a lie */
	if (method == METHOD_DEFLATE && csize / 2 > usize + 1024)
		return npz_fail(in,
		                "member '%s' claims %llu compressed bytes for %llu, more than "
		                "deflate writes",
		                name, (unsigned long long)csize, (unsigned long long)usize);
	if (method == METHOD_STORED && usize != csize)
		return npz_fail(in, "member '%s' is stored, yet its sizes differ (%llu and %llu)",
		                name, (unsigned long long)csize, (unsigned long long)usize);
	if (usize > RT_NPZ_MAX_MEMBER_BYTES)
		return npz_fail(in, "member '%s' claims %llu bytes, more than the %llu netcc reads",
		                name, (unsigned long long)usize,
		                (unsigned long long)RT_NPZ_MAX_MEMBER_BYTES);
	if (usize / DEFLATE_MAX_RATIO > csize + 1)
		return npz_fail(in,
		                "member '%s' claims %llu bytes from %llu compressed, more than "
		                "deflate can give",
		                name, (unsigned long long)usize, (unsigned long long)csize);
	return 0;
}

/* The member's bytes, inflated where deflated, and their CRC-32. */
static int member_bytes(npz_in *in, const char *name, const npz_member *m, unsigned char **image)
{
	unsigned char *data = NULL;
	size_t got;
	*image = NULL;
	if (in_take(in, &data, (size_t)m->csize, &got) != 0)
		goto fail;
	if (got < m->csize) {
		npz_fail(in, "member '%s': truncated: the file ends after %zu of its %llu bytes",
		         name, got, (unsigned long long)m->csize);
		goto fail;
	}
	if (m->method == METHOD_DEFLATE) {
		if (member_inflate(in, name, data, m->csize, m->usize, image) != 0)
			goto fail;
		free(data);
	} else {
		*image = data;
	}
	uint32_t crc = (uint32_t)crc32_z(0, *image, (size_t)m->usize);
	if (crc != m->crc) {
		npz_fail(in,
		         "member '%s': CRC-32 0x%08x of its data is not the 0x%08x its header "
		         "records (corrupt)",
		         name, crc, m->crc);
		free(*image);
		*image = NULL;
		return -1;
	}
	return 0;
fail:
	free(data);
	return -1;
}

static int state_grow(npz_state *s)
{
	rt_npz_file *f = s->out;
	if (f->n < s->cap)
		return 0;
	if (f->n >= RT_NPZ_MAX_MEMBERS)
		return npz_fail(s->in, "more than %d members", RT_NPZ_MAX_MEMBERS);
	int cap = s->cap ? 2 * s->cap : 16;
	char **names = realloc(f->names, (size_t)cap * sizeof *names);
	if (names)
		f->names = names;
	rt_array *arrays = realloc(f->arrays, (size_t)cap * sizeof *arrays);
	if (arrays)
		f->arrays = arrays;
	npz_member *members = realloc(s->members, (size_t)cap * sizeof *members);
	if (members)
		s->members = members;
	if (!names || !arrays || !members)
		return npz_fail(s->in, "out of memory for %d members", cap);
	s->cap = cap;
	return 0;
}

/* The fixed fields after a local header's signature, then its name and
 * extra field (*var, malloc'd: name, NUL, extra). */
static int local_header(npz_in *in, npz_member *m, unsigned *flags, char **var, size_t *xlen)
{
	unsigned char h[LOCAL_LEN - 4];
	if (in_read(in, h, sizeof h, "a member's header") != 0)
		return -1;
	*flags = le16(h + 2);
	m->method = le16(h + 4);
	m->crc = le32(h + 10);
	m->csize = le32(h + 14);
	m->usize = le32(h + 18);
	size_t nlen = le16(h + 22);
	*xlen = le16(h + 24);
	*var = malloc(nlen + 1 + *xlen);
	if (!*var)
		return npz_fail(in, "out of memory");
	if (in_read(in, *var, nlen, "a member's name") != 0)
		return -1;
	(*var)[nlen] = 0;
	if (memchr(*var, 0, nlen))
		return npz_fail(in, "a member's name holds a NUL byte");
	return in_read(in, *var + nlen + 1, *xlen, "a member's extra field");
}

/* One member, from just after its signature (at offset). */
static int member_read(npz_state *s, uint64_t offset)
{
	npz_in *in = s->in;
	npz_member m = {.offset = offset};
	unsigned flags;
	char *var = NULL;
	size_t xlen;
	unsigned char *image = NULL;
	int rc = -1;
	if (local_header(in, &m, &flags, &var, &xlen) != 0)
		goto done;
	size_t nlen = strlen(var);
	if (name_check(in, s->out->n, var, nlen) != 0 || flags_check(in, var, flags, m.method) != 0)
		goto done;
	const unsigned char *vals;
	size_t nvals, used = 0;
	if (zip64_field(in, var, (unsigned char *)var + nlen + 1, xlen, &vals, &nvals) != 0)
		goto done;
	/* a local header's zip64 field holds both sizes where either is marked */
	bool wide = m.usize == U32_MAX || m.csize == U32_MAX;
	if (zip64_take(in, var, &m.usize, (uint32_t)m.usize, wide, vals, nvals, &used) != 0 ||
	    zip64_take(in, var, &m.csize, (uint32_t)m.csize, wide, vals, nvals, &used) != 0 ||
	    sizes_check(in, var, m.method, m.csize, m.usize) != 0 || state_grow(s) != 0)
		goto done;
	if (member_bytes(in, var, &m, &image) != 0)
		goto done;
	char label[600];
	snprintf(label, sizeof label, "%s: member '%.500s'", in->label, var);
	rt_npz_file *f = s->out;
	if (rt_npy_parse_named(label, image, (size_t)m.usize, &f->arrays[f->n], in->err,
	                       in->errlen) != 0)
		goto done;
	var[nlen - 4] = 0; /* the array's name: less ".npy" */
	f->names[f->n] = var;
	s->members[f->n++] = m;
	var = NULL;
	rc = 0;
done:
	free(image);
	free(var);
	return rc;
}

/* ---- the central directory and the end records --------------------------- */

/* Entry i of the central directory (after its signature) against member i. */
static int central_entry(npz_state *s, int i)
{
	npz_in *in = s->in;
	const rt_npz_file *f = s->out;
	unsigned char h[CENTRAL_LEN - 4];
	if (in_read(in, h, sizeof h, "a central directory entry") != 0)
		return -1;
	if (i >= f->n)
		return npz_fail(in,
		                "the central directory lists more members than the %d the file "
		                "holds",
		                f->n);
	const npz_member *m = &s->members[i];
	size_t nlen = le16(h + 24), xlen = le16(h + 26), clen = le16(h + 28);
	unsigned char *var = NULL;
	size_t got;
	if (in_take(in, &var, nlen + xlen + clen, &got) != 0)
		return -1;
	int rc = -1;
	if (got < nlen + xlen + clen) {
		npz_fail(in, "truncated: the file ends inside central directory entry %d", i + 1);
		goto done;
	}
	const char *name = f->names[i]; /* less ".npy" */
	size_t base = strlen(name);
	if (nlen != base + 4 || memcmp(var, name, base) || memcmp(var + base, ".npy", 4)) {
		npz_fail(in, "central directory entry %d is not member %d, '%s.npy'", i + 1, i + 1,
		         name);
		goto done;
	}
	uint64_t csize, usize, offset;
	uint32_t c32 = le32(h + 16), u32 = le32(h + 20), o32 = le32(h + 38);
	const unsigned char *vals;
	size_t nvals, used = 0;
	if (zip64_field(in, name, var + nlen, xlen, &vals, &nvals) != 0 ||
	    zip64_take(in, name, &usize, u32, u32 == U32_MAX, vals, nvals, &used) != 0 ||
	    zip64_take(in, name, &csize, c32, c32 == U32_MAX, vals, nvals, &used) != 0 ||
	    zip64_take(in, name, &offset, o32, o32 == U32_MAX, vals, nvals, &used) != 0)
		goto done;
	if (le16(h + 30) != 0 && le16(h + 30) != 0xffff) {
		npz_fail(in,
		         "member '%s.npy' is on disk %u: archives split over disks are not read",
		         name, le16(h + 30));
		goto done;
	}
	if (le16(h + 6) != m->method || le32(h + 12) != m->crc || csize != m->csize ||
	    usize != m->usize || offset != m->offset) {
		npz_fail(in,
		         "member '%s.npy': the central directory disagrees with its local header "
		         "(method, CRC, sizes or offset)",
		         name);
		goto done;
	}
	rc = 0;
done:
	free(var);
	return rc;
}

/* What the end records say, against what was read. */
typedef struct npz_end {
	uint64_t entries, cd_size, cd_offset;
	bool zip64;
} npz_end;

static int end_value(npz_in *in, const char *what, uint64_t v, uint64_t actual, uint64_t marker,
                     bool zip64)
{
	if (v == actual || (zip64 && v == marker))
		return 0;
	return npz_fail(in, "the end of the archive gives %s %llu, the archive has %llu", what,
	                (unsigned long long)v, (unsigned long long)actual);
}

/* The zip64 end record and its locator (after the record's signature). */
static int end64_read(npz_in *in, const npz_end *actual, uint64_t at)
{
	unsigned char h[END64_LEN - 4];
	if (in_read(in, h, sizeof h, "the zip64 end record") != 0)
		return -1;
	uint64_t size = le64(h);
	if (size < END64_LEN - 12 || size - (END64_LEN - 12) > in_left(in))
		return npz_fail(in, "the zip64 end record's size %llu is wrong",
		                (unsigned long long)size);
	unsigned char *skip = NULL;
	size_t got;
	int rc = in_take(in, &skip, (size_t)(size - (END64_LEN - 12)), &got);
	free(skip);
	if (rc != 0)
		return -1;
	if (le32(h + 12) || le32(h + 16))
		return npz_fail(in, "archives split over disks are not read");
	if (end_value(in, "member count", le64(h + 20), actual->entries, 0, false) ||
	    end_value(in, "member count", le64(h + 28), actual->entries, 0, false) ||
	    end_value(in, "a central directory size", le64(h + 36), actual->cd_size, 0, false) ||
	    end_value(in, "a central directory offset", le64(h + 44), actual->cd_offset, 0, false))
		return -1;
	uint32_t sig;
	bool end;
	unsigned char l[LOCATOR64_LEN - 4];
	if (in_signature(in, &sig, &end) != 0)
		return -1;
	if (end || sig != SIG_LOCATOR64)
		return npz_fail(in, "the zip64 end record is not followed by its locator");
	if (in_read(in, l, sizeof l, "the zip64 end locator") != 0)
		return -1;
	if (le32(l) != 0 || le64(l + 4) != at || le32(l + 12) > 1)
		return npz_fail(in, "the zip64 end locator does not point at the zip64 end record");
	return 0;
}

/* The end record (after its signature), its comment, and nothing after. */
static int end_read(npz_in *in, const npz_end *actual)
{
	unsigned char h[END_LEN - 4];
	if (in_read(in, h, sizeof h, "the end record") != 0)
		return -1;
	bool z = actual->zip64;
	for (int k = 0; k < 4; k += 2)
		if (le16(h + k) && !(z && le16(h + k) == 0xffff))
			return npz_fail(in, "archives split over disks are not read");
	if (end_value(in, "member count", le16(h + 4), actual->entries, 0xffff, z) ||
	    end_value(in, "member count", le16(h + 6), actual->entries, 0xffff, z) ||
	    end_value(in, "a central directory size", le32(h + 8), actual->cd_size, U32_MAX, z) ||
	    end_value(in, "a central directory offset", le32(h + 12), actual->cd_offset, U32_MAX,
	              z))
		return -1;
	size_t clen = le16(h + 16), got;
	unsigned char *comment = NULL;
	int rc = in_take(in, &comment, clen, &got);
	free(comment);
	if (rc != 0)
		return -1;
	if (got < clen)
		return npz_fail(in, "truncated: the file ends inside the archive's comment");
	int at_least;
	uint64_t more = in_rest(in, &at_least);
	if (more)
		return npz_fail(in, "%s%llu bytes after the end of the archive",
		                at_least ? "at least " : "", (unsigned long long)more);
	return 0;
}

/* After the members: the directory, the end records, then nothing. */
static int npz_tail(npz_state *s, uint32_t sig, uint64_t at)
{
	npz_in *in = s->in;
	npz_end e = {.cd_offset = at};
	bool end = false;
	int i = 0;
	for (; !end && sig == SIG_CENTRAL; i++) {
		if (central_entry(s, i) != 0)
			return -1;
		at = in->pos;
		if (in_signature(in, &sig, &end) != 0)
			return -1;
	}
	if (i < s->out->n)
		return npz_fail(in, "the central directory lists %d of the %d members", i,
		                s->out->n);
	e.entries = (uint64_t)i;
	e.cd_size = at - e.cd_offset;
	if (!end && sig == SIG_END64) {
		e.zip64 = true;
		if (end64_read(in, &e, at) != 0 || in_signature(in, &sig, &end) != 0)
			return -1;
	}
	if (end || sig != SIG_END)
		return npz_fail(in,
		                "truncated or corrupt: no end record after the central directory");
	return end_read(in, &e);
}

static int npz_run(npz_in *in, rt_npz_file *out)
{
	npz_state s = {.in = in, .out = out};
	memset(out, 0, sizeof *out);
	int rc = -1;
	for (;;) {
		uint64_t at = in->pos;
		uint32_t sig;
		bool end;
		if (in_signature(in, &sig, &end) != 0)
			break;
		if (end && !at)
			npz_fail(in, "empty file, not an .npz (a zip archive)");
		else if (end)
			npz_fail(
			    in,
			    "truncated: the file ends at byte %llu, before the archive's central "
			    "directory",
			    (unsigned long long)at);
		if (end)
			break;
		if (sig == SIG_LOCAL) {
			if (member_read(&s, at) != 0)
				break;
			continue;
		}
		if (sig == SIG_CENTRAL || sig == SIG_END) {
			rc = npz_tail(&s, sig, at);
			break;
		}
		if (at)
			npz_fail(
			    in,
			    "corrupt: byte %llu starts neither a member nor the central directory",
			    (unsigned long long)at);
		else
			npz_fail(in,
			         "not an .npz (a zip archive): it begins with neither a member nor "
			         "an end record");
		break;
	}
	free(s.members);
	if (rc != 0)
		rt_npz_free(out);
	return rc;
}

/* A name twice means two arrays for one key; which wins differs between
 * readers, so neither does here. */
static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int npz_unique(npz_in *in, rt_npz_file *f)
{
	if (f->n < 2)
		return 0;
	const char **names = malloc((size_t)f->n * sizeof *names);
	if (!names)
		return npz_fail(in, "out of memory");
	memcpy(names, f->names, (size_t)f->n * sizeof *names);
	qsort(names, (size_t)f->n, sizeof *names, cmp_str_ptr);
	int rc = 0;
	for (int i = 1; i < f->n && !rc; i++)
		if (!strcmp(names[i - 1], names[i]))
			rc = npz_fail(in, "member '%s.npy' appears twice", names[i]);
	free(names);
	if (rc)
		rt_npz_free(f);
	return rc;
}

int rt_npz_parse(const void *buf, size_t len, rt_npz_file *out, char *err, size_t errlen)
{
	npz_in in = {.mem = buf, .len = len, .label = ".npz image", .err = err, .errlen = errlen};
	if (npz_run(&in, out) != 0)
		return -1;
	return npz_unique(&in, out);
}

int rt_npz_read(const char *path, rt_npz_file *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	rt_reader r;
	if (rt_reader_open(&r, path, err, errlen) != 0)
		return -1;
	npz_in in = {.r = &r, .label = path, .err = err, .errlen = errlen};
	int rc = npz_run(&in, out);
	rt_reader_close(&r);
	return rc ? rc : npz_unique(&in, out);
}

const rt_array *rt_npz_find(const rt_npz_file *f, const char *name)
{
	for (int i = 0; f && name && i < f->n; i++)
		if (!strcmp(f->names[i], name))
			return &f->arrays[i];
	return NULL;
}

void rt_npz_free(rt_npz_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n; i++) {
		free(f->names[i]);
		rt_array_free(&f->arrays[i]);
	}
	free(f->names);
	free(f->arrays);
	memset(f, 0, sizeof *f);
}
