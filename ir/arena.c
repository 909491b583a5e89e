/* Bump allocation in chunks; everything goes at once when the phase ends. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

struct arena_chunk {
	arena_chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char mem[];
};

enum { ARENA_CHUNK = 64 * 1024 };

void *arena_alloc(arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	if (size == 0)
		size = 16;
	arena_chunk *c = a->head;
	if (!c || c->cap - c->used < size) {
		/* Big requests get a chunk of their own, behind the current one,
		 * so the current chunk's free tail stays usable. */
		size_t cap = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
		if (cap > SIZE_MAX - sizeof(arena_chunk))
			diag_fatal("out of memory (arena request of %zu bytes)", size);
		arena_chunk *n = malloc(sizeof(arena_chunk) + cap);
		if (!n)
			diag_fatal("out of memory (arena request of %zu bytes)", size);
		n->used = 0;
		n->cap = cap;
		if (c && cap != ARENA_CHUNK) {
			n->next = c->next;
			c->next = n;
		} else {
			n->next = c;
			a->head = n;
		}
		c = n;
	}
	void *p = c->mem + c->used;
	c->used += size;
	a->bytes += size;
	memset(p, 0, size);
	return p;
}

void *arena_array(arena *a, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		diag_fatal("out of memory (array of %zu x %zu bytes)", count, size);
	return arena_alloc(a, count * size);
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *arena_strdup(arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

char *arena_printf(arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void arena_free(arena *a)
{
	arena_chunk *c = a->head;
	while (c) {
		arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->bytes = 0;
}
