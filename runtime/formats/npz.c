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
 * to a pipe), archives split over disks.
 *
 * This file is the archive's framing: the input, the central directory
 * and the end records; the members are npz_member.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npz_impl.h"
#include "runtime.h"

int rt_npz_fail(npz_in *in, const char *fmt, ...)
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

/* ---- input ----------------------------------------------------------------- */

/* Bytes left: exact for a file or an image, UINT64_MAX for a stream. */
uint64_t rt_npz_in_left(const npz_in *in)
{
	if (!in->r)
		return in->len - in->pos;
	return in->r->sized ? (in->r->size > in->r->pos ? in->r->size - in->r->pos : 0)
	                    : UINT64_MAX;
}

/* Up to n bytes into *buf (replacing what it held); *got fewer only at
 * the end of the input. */
int rt_npz_in_take(npz_in *in, unsigned char **buf, size_t n, size_t *got)
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
			return rt_npz_fail(in, "out of memory for %zu bytes", n);
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
int rt_npz_in_read(npz_in *in, void *dst, size_t n, const char *what)
{
	size_t got;
	uint64_t at = in->pos;
	if (in_bytes(in, dst, n, &got) != 0)
		return -1;
	if (got < n)
		return rt_npz_fail(
		    in, "truncated: the file ends at byte %llu, inside %s (at byte %llu)",
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
		return rt_npz_fail(in, "not an .npz (a zip archive): the file is %zu bytes long",
		                   got);
	if (got < 4)
		return rt_npz_fail(
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

/* ---- the central directory and the end records --------------------------- */

/* Entry i of the central directory (after its signature) against member i. */
static int central_entry(npz_state *s, int i)
{
	npz_in *in = s->in;
	const rt_npz_file *f = s->out;
	unsigned char h[CENTRAL_LEN - 4];
	if (rt_npz_in_read(in, h, sizeof h, "a central directory entry") != 0)
		return -1;
	if (i >= f->n)
		return rt_npz_fail(in,
		                   "the central directory lists more members than the %d the file "
		                   "holds",
		                   f->n);
	const npz_member *m = &s->members[i];
	size_t nlen = le16(h + 24), xlen = le16(h + 26), clen = le16(h + 28);
	unsigned char *var = NULL;
	size_t got;
	if (rt_npz_in_take(in, &var, nlen + xlen + clen, &got) != 0)
		return -1;
	int rc = -1;
	if (got < nlen + xlen + clen) {
		rt_npz_fail(in, "truncated: the file ends inside central directory entry %d",
		            i + 1);
		goto done;
	}
	const char *name = f->names[i]; /* less ".npy" */
	size_t base = strlen(name);
	if (nlen != base + 4 || memcmp(var, name, base) || memcmp(var + base, ".npy", 4)) {
		rt_npz_fail(in, "central directory entry %d is not member %d, '%s.npy'", i + 1,
		            i + 1, name);
		goto done;
	}
	uint64_t csize, usize, offset;
	uint32_t c32 = le32(h + 16), u32 = le32(h + 20), o32 = le32(h + 38);
	const unsigned char *vals;
	size_t nvals, used = 0;
	if (rt_npz_zip64_field(in, name, var + nlen, xlen, &vals, &nvals) != 0 ||
	    rt_npz_zip64_take(in, name, &usize, u32, u32 == U32_MAX, vals, nvals, &used) != 0 ||
	    rt_npz_zip64_take(in, name, &csize, c32, c32 == U32_MAX, vals, nvals, &used) != 0 ||
	    rt_npz_zip64_take(in, name, &offset, o32, o32 == U32_MAX, vals, nvals, &used) != 0)
		goto done;
	if (le16(h + 30) != 0 && le16(h + 30) != 0xffff) {
		rt_npz_fail(in,
		            "member '%s.npy' is on disk %u: archives split over disks are not read",
		            name, le16(h + 30));
		goto done;
	}
	if (le16(h + 6) != m->method || le32(h + 12) != m->crc || csize != m->csize ||
	    usize != m->usize || offset != m->offset) {
		rt_npz_fail(
		    in,
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
	return rt_npz_fail(in, "the end of the archive gives %s %llu, the archive has %llu", what,
	                   (unsigned long long)v, (unsigned long long)actual);
}

/* The zip64 end record and its locator (after the record's signature). */
static int end64_read(npz_in *in, const npz_end *actual, uint64_t at)
{
	unsigned char h[END64_LEN - 4];
	if (rt_npz_in_read(in, h, sizeof h, "the zip64 end record") != 0)
		return -1;
	uint64_t size = le64(h);
	if (size < END64_LEN - 12 || size - (END64_LEN - 12) > rt_npz_in_left(in))
		return rt_npz_fail(in, "the zip64 end record's size %llu is wrong",
		                   (unsigned long long)size);
	unsigned char *skip = NULL;
	size_t got;
	int rc = rt_npz_in_take(in, &skip, (size_t)(size - (END64_LEN - 12)), &got);
	free(skip);
	if (rc != 0)
		return -1;
	if (le32(h + 12) || le32(h + 16))
		return rt_npz_fail(in, "archives split over disks are not read");
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
		return rt_npz_fail(in, "the zip64 end record is not followed by its locator");
	if (rt_npz_in_read(in, l, sizeof l, "the zip64 end locator") != 0)
		return -1;
	if (le32(l) != 0 || le64(l + 4) != at || le32(l + 12) > 1)
		return rt_npz_fail(in,
		                   "the zip64 end locator does not point at the zip64 end record");
	return 0;
}

/* The end record (after its signature), its comment, and nothing after. */
static int end_read(npz_in *in, const npz_end *actual)
{
	unsigned char h[END_LEN - 4];
	if (rt_npz_in_read(in, h, sizeof h, "the end record") != 0)
		return -1;
	bool z = actual->zip64;
	for (int k = 0; k < 4; k += 2)
		if (le16(h + k) && !(z && le16(h + k) == 0xffff))
			return rt_npz_fail(in, "archives split over disks are not read");
	if (end_value(in, "member count", le16(h + 4), actual->entries, 0xffff, z) ||
	    end_value(in, "member count", le16(h + 6), actual->entries, 0xffff, z) ||
	    end_value(in, "a central directory size", le32(h + 8), actual->cd_size, U32_MAX, z) ||
	    end_value(in, "a central directory offset", le32(h + 12), actual->cd_offset, U32_MAX,
	              z))
		return -1;
	size_t clen = le16(h + 16), got;
	unsigned char *comment = NULL;
	int rc = rt_npz_in_take(in, &comment, clen, &got);
	free(comment);
	if (rc != 0)
		return -1;
	if (got < clen)
		return rt_npz_fail(in, "truncated: the file ends inside the archive's comment");
	int at_least;
	uint64_t more = in_rest(in, &at_least);
	if (more)
		return rt_npz_fail(in, "%s%llu bytes after the end of the archive",
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
		return rt_npz_fail(in, "the central directory lists %d of the %d members", i,
		                   s->out->n);
	e.entries = (uint64_t)i;
	e.cd_size = at - e.cd_offset;
	if (!end && sig == SIG_END64) {
		e.zip64 = true;
		if (end64_read(in, &e, at) != 0 || in_signature(in, &sig, &end) != 0)
			return -1;
	}
	if (end || sig != SIG_END)
		return rt_npz_fail(
		    in, "truncated or corrupt: no end record after the central directory");
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
			rt_npz_fail(in, "empty file, not an .npz (a zip archive)");
		else if (end)
			rt_npz_fail(
			    in,
			    "truncated: the file ends at byte %llu, before the archive's central "
			    "directory",
			    (unsigned long long)at);
		if (end)
			break;
		if (sig == SIG_LOCAL) {
			if (rt_npz_member_read(&s, at) != 0)
				break;
			continue;
		}
		if (sig == SIG_CENTRAL || sig == SIG_END) {
			rc = npz_tail(&s, sig, at);
			break;
		}
		if (at)
			rt_npz_fail(
			    in,
			    "corrupt: byte %llu starts neither a member nor the central directory",
			    (unsigned long long)at);
		else
			rt_npz_fail(
			    in, "not an .npz (a zip archive): it begins with neither a member nor "
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
		return rt_npz_fail(in, "out of memory");
	memcpy(names, f->names, (size_t)f->n * sizeof *names);
	qsort(names, (size_t)f->n, sizeof *names, cmp_str_ptr);
	int rc = 0;
	for (int i = 1; i < f->n && !rc; i++)
		if (!strcmp(names[i - 1], names[i]))
			rc = rt_npz_fail(in, "member '%s.npy' appears twice", names[i]);
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
