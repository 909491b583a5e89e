/* A small getopt for subcommands: --key value, --key=value and flags,
 * checked against the command's table (commands.c), with did-you-mean
 * for unknown options. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

const char *opt_dashes(const char *name)
{
	return !name[1] || (name[0] >= 'A' && name[0] <= 'Z') ? "-" : "--";
}

static const opt_doc *doc_find(const cmd_doc *c, const char *key)
{
	for (const opt_doc *d = c->opts; d->name; d++)
		if (!strcmp(d->name, key))
			return d;
	return NULL;
}

/* as typed: -O3 stays -O3, --bach stays --bach */
static void unknown(const cmd_doc *c, const char *typed, const char *key)
{
	const char *cands[OPTS_MAX * 2];
	int n = 0;
	for (const opt_doc *d = c->opts; d->name && n < OPTS_MAX * 2; d++)
		cands[n++] = d->name;
	const char *hint = diag_suggest(key, cands, n);
	fprintf(stderr, "netcc: error: unknown option '%s'", typed);
	if (hint)
		fprintf(stderr, "; did you mean '%s%s'?", opt_dashes(hint), hint);
	fprintf(stderr, " (see 'netcc %s --help')\n", c->name);
}

int opts_parse(opts *o, int argc, char **argv, const char *cmd)
{
	const cmd_doc *c = driver_command(cmd);
	*o = (opts){.cmd = cmd};
	bool options_end = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (options_end || a[0] != '-' || !a[1]) { /* "-": standard input or output */
			if (o->n_pos == OPTS_MAX)
				return fprintf(stderr, "netcc: error: too many arguments\n"), 2;
			o->pos[o->n_pos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			options_end = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			help_command_print(stdout, c);
			return -1;
		}
		const char *arg = a + (a[1] == '-' ? 2 : 1);
		char key[32];
		const char *val = NULL;
		const char *eq = strchr(arg, '=');
		snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (eq)
			val = eq + 1;
		const opt_doc *d = doc_find(c, key);
		if (!d) {
			char typed[64];
			snprintf(typed, sizeof typed, "%.*s", eq ? (int)(eq - a) : (int)strlen(a),
			         a);
			unknown(c, typed, key);
			return 2;
		}
		char kind = d->kind;
		if (kind && !val) {
			if (i + 1 >= argc) {
				fprintf(stderr,
				        "netcc: error: option '--%s' needs a value (see 'netcc %s "
				        "--help')\n",
				        key, cmd);
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
