/* One member of an .npz: its local header, name and flags checked, its
 * sizes checked against what the file holds before anything is allocated
 * for it, its bytes inflated and their CRC-32 checked, and the .npy
 * inside parsed. Apart from the archive's framing (npz.c) because this
 * is where a member's lies are caught, and the framing only needs to know
 * that a member was read and where. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "npz_impl.h"
#include "runtime.h"

/* ---- names and fields ------------------------------------------------------ */

/* A member's name: printable, and NAME.npy. A zip that holds a pickle is
 * most likely PyTorch's own checkpoint, which deserves the way out. */
static int name_check(npz_in *in, int index, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch < 0x20 || ch == 0x7f)
			return rt_npz_fail(in, "member %d's name holds the control byte 0x%02x",
			                   index + 1, ch);
	}
	if (len > 4 && !strcmp(name + len - 4, ".pkl"))
		return rt_npz_fail(
		    in,
		    "member '%s' is a pickle: this is a PyTorch checkpoint (torch.save), "
		    "not an .npz; save the state dict with numpy's np.savez (see "
		    "docs/interop.md)",
		    name);
	if (len <= 4 || strcmp(name + len - 4, ".npy") != 0 || name[len - 5] == '/')
		return rt_npz_fail(
		    in, "member '%s' is not a .npy array (an .npz holds only NAME.npy)", name);
	return 0;
}

static int flags_check(npz_in *in, const char *name, unsigned flags, unsigned method)
{
	if (flags & 1)
		return rt_npz_fail(in, "member '%s' is encrypted", name);
	if (flags & 8)
		return rt_npz_fail(in,
		                   "member '%s' keeps its sizes after its data (flag bit 3, a zip "
		                   "written to a pipe), which netcc does not read; save to a file "
		                   "with np.savez",
		                   name);
	if (flags & ~(unsigned)FLAGS_ALLOWED)
		return rt_npz_fail(in,
		                   "member '%s' has general-purpose flags 0x%04x, which netcc does "
		                   "not read",
		                   name, flags);
	if (method != METHOD_STORED && method != METHOD_DEFLATE)
		return rt_npz_fail(
		    in,
		    "member '%s' is compressed with method %u; netcc reads stored (0) "
		    "and deflated (8) members, as np.savez and np.savez_compressed write",
		    name, method);
	return 0;
}

/* The zip64 extra field (id 1) of a header: its 8-byte values in order,
 * those the header marks with all ones. *vals gets where they begin and
 * *n how many 8-byte values it holds; 0 where there is none. */
int rt_npz_zip64_field(npz_in *in, const char *name, const unsigned char *extra, size_t len,
                       const unsigned char **vals, size_t *n)
{
	*vals = NULL;
	*n = 0;
	size_t at = 0;
	while (at < len) {
		if (len - at < 4)
			return rt_npz_fail(in, "member '%s': its extra field is malformed", name);
		unsigned id = le16(extra + at), size = le16(extra + at + 2);
		if (size > len - at - 4)
			return rt_npz_fail(in, "member '%s': its extra field is malformed", name);
		if (id == 1 && !*vals) {
			*vals = extra + at + 4;
			*n = size / 8;
		}
		at += 4 + size;
	}
	return 0;
}

/* The next zip64 value where the 32-bit field is all ones. */
int rt_npz_zip64_take(npz_in *in, const char *name, uint64_t *v, uint32_t v32, bool wide,
                      const unsigned char *vals, size_t n, size_t *used)
{
	*v = v32;
	if (!wide)
		return 0;
	if (*used >= n)
		return rt_npz_fail(
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
		return rt_npz_fail(in, "member '%s': cannot initialise zlib", name);
	size_t cap = usize < ((size_t)1 << 20) ? (size_t)usize : (size_t)1 << 20, have = 0;
	unsigned char *buf = malloc(cap ? cap : 1);
	unsigned char spill;
	uint64_t fed = 0;
	int rc = -1, zr = Z_OK;
	if (!buf) {
		rt_npz_fail(in, "member '%s': out of memory", name);
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
				rt_npz_fail(in, "member '%s': out of memory for %zu bytes", name,
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
			rt_npz_fail(
			    in, "member '%s' inflates to more than the %llu bytes its header gives",
			    name, (unsigned long long)usize);
			goto done;
		}
		have += room - (room ? z.avail_out : 0);
		if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
			rt_npz_fail(in, "member '%s': corrupt deflate data (%s)", name,
			            z.msg ? z.msg : "invalid");
			goto done;
		}
		if (zr == Z_MEM_ERROR) {
			rt_npz_fail(in, "member '%s': out of memory inflating it", name);
			goto done;
		}
		if (zr == Z_BUF_ERROR && !z.avail_in && fed == csize) {
			rt_npz_fail(
			    in,
			    "member '%s': its %llu compressed bytes end inside the deflate stream "
			    "(truncated or corrupt)",
			    name, (unsigned long long)csize);
			goto done;
		}
	}
	if (have != usize) {
		rt_npz_fail(in, "member '%s' inflates to %zu bytes, its header says %llu", name,
		            have, (unsigned long long)usize);
		goto done;
	}
	if (z.avail_in || fed < csize) {
		rt_npz_fail(in,
		            "member '%s': its deflate stream ends %llu bytes before its data does",
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
	uint64_t left = rt_npz_in_left(in);
	if (csize > left)
		return rt_npz_fail(
		    in,
		    "member '%s' claims %llu bytes of data, the file holds %llu more "
		    "(truncated?)",
		    name, (unsigned long long)csize, (unsigned long long)left);
	/* deflate's output is never much longer than its input (stored
	 * blocks, codes of at most 15 bits a byte): a longer claim is a lie */
	if (method == METHOD_DEFLATE && csize / 2 > usize + 1024)
		return rt_npz_fail(in,
		                   "member '%s' claims %llu compressed bytes for %llu, more than "
		                   "deflate writes",
		                   name, (unsigned long long)csize, (unsigned long long)usize);
	if (method == METHOD_STORED && usize != csize)
		return rt_npz_fail(in,
		                   "member '%s' is stored, yet its sizes differ (%llu and %llu)",
		                   name, (unsigned long long)csize, (unsigned long long)usize);
	if (usize > RT_NPZ_MAX_MEMBER_BYTES)
		return rt_npz_fail(
		    in, "member '%s' claims %llu bytes, more than the %llu netcc reads", name,
		    (unsigned long long)usize, (unsigned long long)RT_NPZ_MAX_MEMBER_BYTES);
	if (usize / DEFLATE_MAX_RATIO > csize + 1)
		return rt_npz_fail(in,
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
	if (rt_npz_in_take(in, &data, (size_t)m->csize, &got) != 0)
		goto fail;
	if (got < m->csize) {
		rt_npz_fail(in, "member '%s': truncated: the file ends after %zu of its %llu bytes",
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
		rt_npz_fail(in,
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
		return rt_npz_fail(s->in, "more than %d members", RT_NPZ_MAX_MEMBERS);
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
		return rt_npz_fail(s->in, "out of memory for %d members", cap);
	s->cap = cap;
	return 0;
}

/* The fixed fields after a local header's signature, then its name and
 * extra field (*var, malloc'd: name, NUL, extra). */
static int local_header(npz_in *in, npz_member *m, unsigned *flags, char **var, size_t *xlen)
{
	unsigned char h[LOCAL_LEN - 4];
	if (rt_npz_in_read(in, h, sizeof h, "a member's header") != 0)
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
		return rt_npz_fail(in, "out of memory");
	if (rt_npz_in_read(in, *var, nlen, "a member's name") != 0)
		return -1;
	(*var)[nlen] = 0;
	if (memchr(*var, 0, nlen))
		return rt_npz_fail(in, "a member's name holds a NUL byte");
	return rt_npz_in_read(in, *var + nlen + 1, *xlen, "a member's extra field");
}

/* One member, from just after its signature (at offset). */
int rt_npz_member_read(npz_state *s, uint64_t offset)
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
	if (rt_npz_zip64_field(in, var, (unsigned char *)var + nlen + 1, xlen, &vals, &nvals) != 0)
		goto done;
	/* a local header's zip64 field holds both sizes where either is marked */
	bool wide = m.usize == U32_MAX || m.csize == U32_MAX;
	if (rt_npz_zip64_take(in, var, &m.usize, (uint32_t)m.usize, wide, vals, nvals, &used) !=
	        0 ||
	    rt_npz_zip64_take(in, var, &m.csize, (uint32_t)m.csize, wide, vals, nvals, &used) !=
	        0 ||
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
