/* JSON documents: the arena every value lives in, and the builders.
 *
 * A safetensors header of millions of small values would cost millions of
 * mallocs and frees; the arena takes them in blocks and a document goes in
 * one pass over its blocks. The parser (json_parse.c) and the writer
 * (json_write.c) work on what is built here. */
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* Blocks grow to amortise malloc on large headers, up to a size where
 * the unused tail of the last block no longer matters. */
#define JSON_BLOCK_MIN ((size_t)4 << 10)
#define JSON_BLOCK_MAX ((size_t)1 << 20)

struct rt_json_block {
	struct rt_json_block *prev;
	size_t used, cap;
	max_align_t data[];
};

void *rt_json_doc_alloc(rt_json_doc *d, size_t size, size_t align)
{
	struct rt_json_block *b = d->arena;
	if (b) {
		size_t at = (b->used + align - 1) & ~(align - 1);
		if (at <= b->cap && size <= b->cap - at) {
			b->used = at + size;
			return (unsigned char *)b->data + at;
		}
	}
	size_t cap = b ? b->cap * 2 : JSON_BLOCK_MIN;
	if (cap > JSON_BLOCK_MAX)
		cap = JSON_BLOCK_MAX;
	if (cap < size)
		cap = size;
	struct rt_json_block *nb = NULL;
	if (cap <= SIZE_MAX - sizeof *nb)
		nb = malloc(sizeof *nb + cap);
	if (!nb) {
		d->failed = true;
		return NULL;
	}
	nb->prev = b;
	nb->cap = cap;
	nb->used = size;
	d->arena = nb;
	return nb->data;
}

void rt_json_doc_free(rt_json_doc *d)
{
	if (!d)
		return;
	for (struct rt_json_block *b = d->arena, *prev; b; b = prev) {
		prev = b->prev;
		free(b);
	}
	memset(d, 0, sizeof *d);
}

rt_json *rt_json_value_new(rt_json_doc *d, rt_json_kind kind)
{
	rt_json *v = rt_json_doc_alloc(d, sizeof *v, alignof(rt_json));
	if (v) {
		memset(v, 0, sizeof *v);
		v->kind = kind;
	}
	return v;
}

static const char *json_strdup(rt_json_doc *d, const char *s)
{
	if (!s) {
		d->failed = true;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *c = rt_json_doc_alloc(d, n, 1);
	if (c)
		memcpy(c, s, n);
	return c;
}

rt_json *rt_json_string_new(rt_json_doc *d, const char *s)
{
	const char *c = json_strdup(d, s);
	rt_json *v = c ? rt_json_value_new(d, RT_JSON_STRING) : NULL;
	if (v)
		v->str = c;
	return v;
}

rt_json *rt_json_int_new(rt_json_doc *d, int64_t i)
{
	rt_json *v = rt_json_value_new(d, RT_JSON_NUMBER);
	if (v) {
		v->is_int = true;
		v->i = i;
		v->num = (double)i;
	}
	return v;
}

rt_json *rt_json_number_new(rt_json_doc *d, double x)
{
	if (!isfinite(x))
		return rt_json_value_new(d, RT_JSON_NULL);
	rt_json *v = rt_json_value_new(d, RT_JSON_NUMBER);
	if (v)
		v->num = x;
	return v;
}

static rt_json *json_append(rt_json *c, rt_json *v)
{
	if (c->last)
		c->last->next = v;
	else
		c->first = v;
	c->last = v;
	c->n++;
	return v;
}

rt_json *rt_json_array_add(rt_json_doc *d, rt_json *a, rt_json *v)
{
	if (!a || !v || a->kind != RT_JSON_ARRAY) {
		d->failed = true;
		return NULL;
	}
	return json_append(a, v);
}

rt_json *rt_json_object_add(rt_json_doc *d, rt_json *o, const char *key, rt_json *v)
{
	if (!o || !v || o->kind != RT_JSON_OBJECT) {
		d->failed = true;
		return NULL;
	}
	v->key = json_strdup(d, key);
	return v->key ? json_append(o, v) : NULL;
}

const rt_json *rt_json_object_get(const rt_json *o, const char *key)
{
	if (!o || o->kind != RT_JSON_OBJECT || !key)
		return NULL;
	for (const rt_json *m = o->first; m; m = m->next)
		if (strcmp(m->key, key) == 0)
			return m;
	return NULL;
}
