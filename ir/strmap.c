/* String keys to int values, open addressing in an arena: names in model
 * files are looked up millions of times, so no lookup may be linear. */
#include <string.h>

#include "ir.h"

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static strmap_entry *find(const strmap *m, const char *key)
{
	uint32_t mask = (uint32_t)m->cap - 1;
	for (uint32_t i = hash(key) & mask;; i = (i + 1) & mask) {
		strmap_entry *e = &m->slots[i];
		if (!e->key || strcmp(e->key, key) == 0)
			return e;
	}
}

int strmap_get(const strmap *m, const char *key)
{
	if (!m->cap)
		return -1;
	const strmap_entry *e = find(m, key);
	return e->key ? e->value : -1;
}

void strmap_put(strmap *m, arena *a, const char *key, int value)
{
	if (2 * (m->n + 1) > m->cap) {
		strmap old = *m;
		m->cap = old.cap ? old.cap * 2 : 64;
		m->slots = arena_array(a, (size_t)m->cap, sizeof *m->slots);
		m->n = 0;
		for (int i = 0; i < old.cap; i++)
			if (old.slots[i].key)
				strmap_put(m, a, old.slots[i].key, old.slots[i].value);
	}
	strmap_entry *e = find(m, key);
	if (!e->key) {
		e->key = key;
		m->n++;
	}
	e->value = value;
}
