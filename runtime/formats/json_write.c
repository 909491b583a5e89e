/* Writing a document (runtime.h) as compact JSON.
 *
 * The safetensors writer's bytes are compared across builds (reproducible
 * libraries, checkpoints), so the output is fixed down to the byte: no
 * whitespace, members in insertion order, and strings escaped as cJSON,
 * which wrote these headers before, escaped them: the two-character forms
 * for quote, backslash, \b \f \n \r \t, \u00xx (lowercase) for the other
 * control characters, every other byte as it is. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

typedef struct json_out {
	char *buf;
	size_t len, cap;
	bool failed;
} json_out;

static void json_put(json_out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (n > o->cap - o->len) {
		size_t cap = o->cap ? o->cap : 256;
		while (cap - o->len < n && cap <= SIZE_MAX / 2)
			cap *= 2;
		char *b = cap - o->len >= n ? realloc(o->buf, cap) : NULL;
		if (!b) {
			o->failed = true;
			return;
		}
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void json_put_string(json_out *o, const char *s)
{
	json_put(o, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *two = c == '"'    ? "\\\""
		                  : c == '\\' ? "\\\\"
		                  : c == '\b' ? "\\b"
		                  : c == '\f' ? "\\f"
		                  : c == '\n' ? "\\n"
		                  : c == '\r' ? "\\r"
		                  : c == '\t' ? "\\t"
		                              : NULL;
		if (!two && c >= 0x20)
			continue;
		json_put(o, run, (size_t)(s - run));
		run = s + 1;
		char u[8];
		if (!two)
			snprintf(u, sizeof u, "\\u%04x", c);
		json_put(o, two ? two : u, strlen(two ? two : u));
	}
	json_put(o, run, (size_t)(s - run));
	json_put(o, "\"", 1);
}

/* The shortest of %.15g to %.17g that reads back as the same double (17
 * always does); the program's locale may have put another decimal point
 * in it, of any length, which becomes '.'. */
static void json_put_number(json_out *o, const rt_json *v)
{
	char s[64];
	if (v->is_int) {
		snprintf(s, sizeof s, "%" PRId64, v->i);
		json_put(o, s, strlen(s));
		return;
	}
	if (!isfinite(v->num)) {
		o->failed = true; /* JSON has no spelling for it */
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(s, sizeof s, "%.*g", prec, v->num);
		if (strtod(s, NULL) == v->num)
			break;
	}
	bool point = false;
	for (const char *c = s; *c; c++) {
		if (strchr("0123456789+-eE", *c)) {
			json_put(o, c, 1);
			point = false;
		} else if (!point) {
			json_put(o, ".", 1);
			point = true;
		}
	}
}

static void json_put_value(json_out *o, const rt_json *v)
{
	switch (v->kind) {
	case RT_JSON_NULL:
		json_put(o, "null", 4);
		break;
	case RT_JSON_FALSE:
		json_put(o, "false", 5);
		break;
	case RT_JSON_TRUE:
		json_put(o, "true", 4);
		break;
	case RT_JSON_NUMBER:
		json_put_number(o, v);
		break;
	case RT_JSON_STRING:
		json_put_string(o, v->str);
		break;
	case RT_JSON_ARRAY:
	case RT_JSON_OBJECT: {
		bool obj = v->kind == RT_JSON_OBJECT;
		json_put(o, obj ? "{" : "[", 1);
		for (const rt_json *m = v->first; m; m = m->next) {
			if (m != v->first)
				json_put(o, ",", 1);
			if (obj) {
				json_put_string(o, m->key);
				json_put(o, ":", 1);
			}
			json_put_value(o, m);
		}
		json_put(o, obj ? "}" : "]", 1);
		break;
	}
	}
}

char *rt_json_doc_write(const rt_json_doc *d, size_t *len)
{
	if (!d || d->failed || !d->root)
		return NULL;
	json_out o = {0};
	json_put_value(&o, d->root);
	json_put(&o, "", 1);
	if (o.failed) {
		free(o.buf);
		return NULL;
	}
	if (len)
		*len = o.len - 1;
	return o.buf;
}
