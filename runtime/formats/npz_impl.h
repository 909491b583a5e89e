/* npz_impl.h: what the .npz reader's two files share: the archive's
 * framing, with the checked input and the central directory (npz.c),
 * and its members, each from local header to parsed array
 * (npz_member.c). The record layouts and limits are zip's and numpy's;
 * they are written down once, here, so both files check a member the
 * same way. */
#ifndef NETCC_RUNTIME_NPZ_IMPL_H
#define NETCC_RUNTIME_NPZ_IMPL_H

#include <stdbool.h>
#include <stdint.h>

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

/* npz.c: the error, "label: message", into in->err; returns -1 */
int rt_npz_fail(npz_in *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* npz.c: the input */
uint64_t rt_npz_in_left(const npz_in *in);
int rt_npz_in_take(npz_in *in, unsigned char **buf, size_t n, size_t *got);
int rt_npz_in_read(npz_in *in, void *dst, size_t n, const char *what);

/* npz_member.c: a header's zip64 values, and one member */
int rt_npz_zip64_field(npz_in *in, const char *name, const unsigned char *extra, size_t len,
                       const unsigned char **vals, size_t *n);
int rt_npz_zip64_take(npz_in *in, const char *name, uint64_t *v, uint32_t v32, bool wide,
                      const unsigned char *vals, size_t n, size_t *used);
int rt_npz_member_read(npz_state *s, uint64_t offset);

#endif
