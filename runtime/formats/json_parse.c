/* Parsing JSON text into a document (runtime.h), strictly.
 *
 * The text is a safetensors header, so every byte is hostile: the parser
 * reads only inside len, needs no terminator, bounds its recursion, and
 * refuses what RFC 8259 refuses (bad UTF-8, lone surrogates, raw control
 * characters, leading zeros) instead of guessing, because a header that
 * means one thing here and another to PyTorch's reader is worse than one
 * we refuse. NUL is refused too: names are C strings downstream, and
 * "w\u0000junk" would load as "w". */
#include <locale.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

typedef struct json_parser {
	const unsigned char *s;
	size_t len, pos;
	rt_json_doc *doc;
	rt_json_error *err;
	/* strtod follows the program's locale, which is not ours to assume
	 * (a library runs inside other people's programs): made once needed */
	locale_t c_locale;
} json_parser;

static rt_json *json_fail(json_parser *p, rt_json_status code, size_t at, const char *what)
{
	if (p->err->code == RT_JSON_OK)
		*p->err = (rt_json_error){code, at, what};
	return NULL;
}

/* A failure at the current byte, where running out of text is the reason
 * more often than the byte itself. */
static rt_json *json_fail_here(json_parser *p, const char *what)
{
	if (p->pos >= p->len)
		return json_fail(p, RT_JSON_ERR_SYNTAX, p->len, "unexpected end of input");
	return json_fail(p, RT_JSON_ERR_SYNTAX, p->pos, what);
}

static rt_json *json_node(json_parser *p, rt_json_kind kind)
{
	rt_json *v = rt_json_value_new(p->doc, kind);
	return v ? v : json_fail(p, RT_JSON_ERR_MEMORY, p->pos, "out of memory");
}

static void json_skip_ws(json_parser *p)
{
	for (; p->pos < p->len; p->pos++) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
	}
}

static int json_peek(const json_parser *p)
{
	return p->pos < p->len ? p->s[p->pos] : -1;
}

static bool json_digit(const json_parser *p, size_t i)
{
	return i < p->len && p->s[i] >= '0' && p->s[i] <= '9';
}

/* Length of the UTF-8 sequence at s (RFC 3629: shortest form, no
 * surrogates, nothing past U+10FFFF), or 0 where it is not one. */
static size_t json_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t k;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		k = 2;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4;
	else
		return 0;
	/* the second byte carries the limits on overlong forms and range */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < k || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return k;
}

bool rt_json_utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0, k; i < len; i += k)
		if ((k = json_utf8_seq(u + i, len - i)) == 0)
			return false;
	return true;
}

static size_t json_utf8_put(unsigned char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The four hex digits of a \u escape whose backslash is at i. */
static bool json_hex4(const json_parser *p, size_t i, uint32_t *cp)
{
	if (i + 6 > p->len || p->s[i] != '\\' || p->s[i + 1] != 'u')
		return false;
	*cp = 0;
	for (size_t k = i + 2; k < i + 6; k++) {
		unsigned char c = p->s[k];
		int v = c >= '0' && c <= '9'   ? c - '0'
		        : c >= 'a' && c <= 'f' ? c - 'a' + 10
		        : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                               : -1;
		if (v < 0)
			return false;
		*cp = *cp << 4 | (uint32_t)v;
	}
	return true;
}

/* A \u escape at i (one, or a surrogate pair) into out at *o; *took: the
 * bytes of text it spans. */
static bool json_unicode_escape(json_parser *p, size_t i, unsigned char *out, size_t *o,
                                size_t *took)
{
	uint32_t cp, lo;
	const char *bad = NULL;
	*took = 6;
	if (!json_hex4(p, i, &cp))
		bad = "bad \\u escape";
	else if (cp >= 0xdc00 && cp <= 0xdfff)
		bad = "low surrogate without a high one";
	else if (cp >= 0xd800 && cp <= 0xdbff &&
	         (!json_hex4(p, i + 6, &lo) || lo < 0xdc00 || lo > 0xdfff))
		bad = "high surrogate without a low one";
	if (bad) {
		json_fail(p, RT_JSON_ERR_SYNTAX, i, bad);
		return false;
	}
	if (cp == 0) {
		json_fail(p, RT_JSON_ERR_NUL, i, "NUL character (\\u0000) in a string");
		return false;
	}
	if (cp >= 0xd800 && cp <= 0xdbff) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		*took = 12;
	}
	*o += json_utf8_put(out + *o, cp);
	return true;
}

/* What a one-letter escape stands for, or -1. */
static int json_escape_char(unsigned char c)
{
	switch (c) {
	case '"':
	case '\\':
	case '/':
		return c;
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return -1;
	}
}

/* The string whose opening quote is at p->pos, decoded and terminated in
 * the arena. Decoding only shrinks text, so the bytes up to the closing
 * quote bound the copy. */
static const char *json_string(json_parser *p)
{
	size_t start = p->pos, end = start + 1;
	while (end < p->len && p->s[end] != '"')
		end += p->s[end] == '\\' ? 2 : 1;
	size_t cap = (end < p->len ? end : p->len) - start;
	unsigned char *out = rt_json_doc_alloc(p->doc, cap, 1);
	if (!out) {
		json_fail(p, RT_JSON_ERR_MEMORY, start, "out of memory");
		return NULL;
	}
	size_t i = start + 1, o = 0, k;
	const char *bad = NULL;
	while (!bad) {
		/* a backslash ending the text leaves the string open too */
		if (i >= p->len || (p->s[i] == '\\' && i + 1 >= p->len)) {
			json_fail(p, RT_JSON_ERR_SYNTAX, p->len, "unterminated string");
			return NULL;
		}
		unsigned char c = p->s[i], next = p->s[i + (c == '\\')];
		if (c == '"') {
			out[o] = '\0';
			p->pos = i + 1;
			return (const char *)out;
		} else if (c < 0x20) {
			bad = "control character in a string";
		} else if (c == '\\' && next == 'u') {
			if (!json_unicode_escape(p, i, out, &o, &k))
				return NULL;
			i += k;
		} else if (c == '\\' && json_escape_char(next) < 0) {
			bad = "bad escape";
		} else if (c == '\\') {
			out[o++] = (unsigned char)json_escape_char(next);
			i += 2;
		} else if ((k = json_utf8_seq(p->s + i, p->len - i)) == 0) {
			bad = "bad UTF-8";
		} else {
			memcpy(out + o, p->s + i, k);
			o += k;
			i += k;
		}
	}
	json_fail(p, RT_JSON_ERR_SYNTAX, i, bad);
	return NULL;
}

/* Fractions and exponents go to strtod, in the C locale whatever the
 * program's, on a terminated copy. */
static double json_strtod(json_parser *p, size_t at, size_t end, bool *ok)
{
	*ok = false;
	if (!p->c_locale)
		p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	char small[64], *buf = end - at < sizeof small ? small : malloc(end - at + 1);
	if (!p->c_locale || !buf) {
		json_fail(p, RT_JSON_ERR_MEMORY, at, "out of memory");
		return 0;
	}
	memcpy(buf, p->s + at, end - at);
	buf[end - at] = '\0';
	double d = strtod_l(buf, NULL, p->c_locale);
	if (buf != small)
		free(buf);
	*ok = true;
	return d;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; integers that fit int64
 * are read exactly, here, where a double would round above 2^53. */
static rt_json *json_number(json_parser *p)
{
	size_t at = p->pos, i = at;
	bool neg = p->s[i] == '-', fits = true, plain = true;
	i += neg;
	if (!json_digit(p, i))
		return json_fail(p, RT_JSON_ERR_SYNTAX, i, "bad number");
	uint64_t mag = 0;
	if (p->s[i] == '0') {
		i++;
	} else {
		for (; json_digit(p, i); i++) {
			unsigned dig = p->s[i] - '0';
			if (mag > (UINT64_MAX - dig) / 10)
				fits = false;
			else
				mag = mag * 10 + dig;
		}
	}
	if (i < p->len && p->s[i] == '.') {
		plain = false;
		if (!json_digit(p, ++i))
			return json_fail(p, RT_JSON_ERR_SYNTAX, i, "bad number");
		while (json_digit(p, i))
			i++;
	}
	if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
		plain = false;
		i++;
		if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
			i++;
		if (!json_digit(p, i))
			return json_fail(p, RT_JSON_ERR_SYNTAX, i, "bad number");
		while (json_digit(p, i))
			i++;
	}
	rt_json *v = json_node(p, RT_JSON_NUMBER);
	if (!v)
		return NULL;
	uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (plain && fits && mag <= limit) {
		v->is_int = true;
		v->i = neg && mag ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
		v->num = neg && !mag ? -0.0 : (double)v->i;
	} else {
		bool ok;
		v->num = json_strtod(p, at, i, &ok);
		if (!ok)
			return NULL;
		if (!isfinite(v->num))
			return json_fail(p, RT_JSON_ERR_SYNTAX, at, "number out of range");
	}
	p->pos = i;
	return v;
}

static rt_json *json_literal(json_parser *p)
{
	static const struct {
		const char *text;
		rt_json_kind kind;
	} lits[] = {{"null", RT_JSON_NULL}, {"true", RT_JSON_TRUE}, {"false", RT_JSON_FALSE}};
	for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
		size_t n = strlen(lits[k].text);
		if (p->len - p->pos >= n && memcmp(p->s + p->pos, lits[k].text, n) == 0) {
			rt_json *v = json_node(p, lits[k].kind);
			p->pos += v ? n : 0;
			return v;
		}
	}
	return json_fail_here(p, "expected a value");
}

static rt_json *json_value(json_parser *p, int depth);

static void json_link(rt_json *c, rt_json *v)
{
	if (c->last)
		c->last->next = v;
	else
		c->first = v;
	c->last = v;
	c->n++;
}

/* An array or an object, its opening bracket at p->pos. */
static rt_json *json_container(json_parser *p, int depth)
{
	bool obj = p->s[p->pos] == '{';
	char close = obj ? '}' : ']';
	if (depth >= RT_JSON_MAX_DEPTH)
		return json_fail(p, RT_JSON_ERR_DEPTH, p->pos, "nested too deeply");
	rt_json *c = json_node(p, obj ? RT_JSON_OBJECT : RT_JSON_ARRAY);
	if (!c)
		return NULL;
	p->pos++;
	json_skip_ws(p);
	if (json_peek(p) == close) {
		p->pos++;
		return c;
	}
	for (;;) {
		const char *key = NULL;
		if (obj) {
			if (json_peek(p) != '"')
				return json_fail_here(p, "expected a string key");
			if (!(key = json_string(p)))
				return NULL;
			json_skip_ws(p);
			if (json_peek(p) != ':')
				return json_fail_here(p, "expected ':'");
			p->pos++;
		}
		rt_json *v = json_value(p, depth + 1);
		if (!v)
			return NULL;
		v->key = key;
		json_link(c, v);
		json_skip_ws(p);
		int next = json_peek(p);
		if (next == close) {
			p->pos++;
			return c;
		}
		if (next != ',')
			return json_fail_here(p,
			                      obj ? "expected ',' or '}'" : "expected ',' or ']'");
		p->pos++;
		json_skip_ws(p);
	}
}

/* depth: how many arrays and objects enclose the value */
static rt_json *json_value(json_parser *p, int depth)
{
	json_skip_ws(p);
	switch (json_peek(p)) {
	case '{':
	case '[':
		return json_container(p, depth);
	case '"': {
		const char *s = json_string(p);
		rt_json *v = s ? json_node(p, RT_JSON_STRING) : NULL;
		if (v)
			v->str = s;
		return v;
	}
	default:
		if (json_peek(p) == '-' || json_digit(p, p->pos))
			return json_number(p);
		return json_literal(p);
	}
}

int rt_json_doc_parse(rt_json_doc *d, const char *text, size_t len, rt_json_error *e)
{
	rt_json_error local;
	memset(d, 0, sizeof *d);
	json_parser p = {
	    .s = (const unsigned char *)text, .len = len, .doc = d, .err = e ? e : &local};
	*p.err = (rt_json_error){RT_JSON_OK, 0, ""};
	d->root = json_value(&p, 0);
	if (d->root) {
		json_skip_ws(&p);
		if (p.pos < len)
			json_fail(&p, RT_JSON_ERR_TRAILING, p.pos,
			          "more than whitespace after the value");
	}
	if (p.c_locale)
		freelocale(p.c_locale);
	if (p.err->code == RT_JSON_OK)
		return 0;
	rt_json_doc_free(d);
	return -1;
}
