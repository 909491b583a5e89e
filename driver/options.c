/* A small getopt for subcommands: --key value, --key=value and flags,
 * with did-you-mean for unknown options. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

static int spec_find(const char *spec, const char *key, char *kind)
{
	const char *p = spec;
	size_t kl = strlen(key);
	while (*p) {
		while (*p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ' ' && *p != '=' && *p != '*')
			p++;
		char k = (*p == '=' || *p == '*') ? *p++ : 0;
		if ((size_t)(p - s - (k ? 1 : 0)) == kl && !strncmp(s, key, kl)) {
			*kind = k;
			return 1;
		}
		while (*p && *p != ' ')
			p++;
	}
	return 0;
}

static int spec_names(const char *spec, char names[][32], int max)
{
	int n = 0;
	const char *p = spec;
	while (*p && n < max) {
		while (*p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ' ' && *p != '=' && *p != '*')
			p++;
		if (p > s)
			snprintf(names[n++], 32, "%.*s", (int)(p - s), s);
		while (*p && *p != ' ')
			p++;
	}
	return n;
}

static void unknown(const char *spec, const char *key)
{
	char names[OPTS_MAX][32];
	const char *cands[OPTS_MAX];
	int n = spec_names(spec, names, OPTS_MAX);
	for (int i = 0; i < n; i++)
		cands[i] = names[i];
	const char *hint = diag_suggest(key, cands, n);
	if (hint)
		fprintf(stderr, "netcc: error: unknown option '--%s'; did you mean '--%s'?\n", key,
		        hint);
	else
		fprintf(stderr, "netcc: error: unknown option '--%s'\n", key);
}

int opts_parse(opts *o, int argc, char **argv, const char *spec)
{
	*o = (opts){.cmd = argv[0]};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || !a[1]) {
			if (o->n_pos == OPTS_MAX)
				return fprintf(stderr, "netcc: error: too many arguments\n"), 2;
			o->pos[o->n_pos++] = a;
			continue;
		}
		const char *arg = a + (a[1] == '-' ? 2 : 1);
		char key[32];
		const char *val = NULL;
		const char *eq = strchr(arg, '=');
		snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (eq)
			val = eq + 1;
		char kind;
		if (!spec_find(spec, key, &kind)) {
			unknown(spec, key);
			return 2;
		}
		if (kind && !val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "netcc: error: option '--%s' needs a value\n", key);
				return 2;
			}
			val = argv[++i];
		} else if (!kind && val) {
			fprintf(stderr, "netcc: error: option '--%s' takes no value\n", key);
			return 2;
		}
		if (kind != '*')
			for (int j = 0; j < o->n; j++)
				if (!strcmp(o->key[j], key)) {
					fprintf(stderr, "netcc: error: option '--%s' given twice\n",
					        key);
					return 2;
				}
		if (o->n == OPTS_MAX)
			return fprintf(stderr, "netcc: error: too many options\n"), 2;
		snprintf(o->key[o->n], sizeof o->key[o->n], "%s", key);
		o->val[o->n++] = val ? val : "";
	}
	return 0;
}

const char *opts_str(const opts *o, const char *key, const char *fallback)
{
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->key[i], key))
			return o->val[i];
	return fallback;
}

int opts_all(const opts *o, const char *key, const char **out, int max)
{
	int n = 0;
	for (int i = 0; i < o->n && n < max; i++)
		if (!strcmp(o->key[i], key))
			out[n++] = o->val[i];
	return n;
}

bool opts_flag(const opts *o, const char *key)
{
	return opts_str(o, key, NULL) != NULL;
}

int64_t opts_int(const opts *o, const char *key, int64_t fallback, int64_t lo, int64_t hi, bool *ok)
{
	const char *v = opts_str(o, key, NULL);
	if (!v)
		return fallback;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < lo || x > hi) {
		fprintf(stderr, "netcc: error: --%s %s: expected an integer in [%lld, %lld]\n", key,
		        v, (long long)lo, (long long)hi);
		*ok = false;
		return fallback;
	}
	return x;
}
