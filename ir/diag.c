/* One way to report errors, for every phase: chibicc's error_at, plus the
 * chain of block calls that led to the offending expression. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static diag_trap *trap_top;
static FILE *diag_out;
/* A note that belongs after the next error ("first defined here"). */
static diag_loc pending_loc;
static char pending_msg[256];

FILE *diag_output(void)
{
	return diag_out ? diag_out : stderr;
}

void diag_set_output(FILE *f)
{
	diag_out = f;
}

void diag_trap_push(diag_trap *t)
{
	t->prev = trap_top;
	trap_top = t;
}

void diag_trap_pop(diag_trap *t)
{
	if (trap_top == t)
		trap_top = t->prev;
}

static _Noreturn void unwind(void)
{
	fflush(diag_output());
	diag_trap *t = trap_top;
	if (!t)
		exit(1);
	trap_top = t->prev;
	longjmp(t->jb, 1);
}

/* The source line with a caret under the column; tabs are copied so the
 * caret lines up however the terminal renders them. */
static void print_caret(const diag_loc *loc)
{
	FILE *f = diag_output();
	const diag_src *s = loc->src;
	if (!s || loc->line_off > s->len)
		return;
	const char *line = s->text + loc->line_off;
	size_t n = 0;
	while (loc->line_off + n < s->len && line[n] != '\n' && line[n] != '\r')
		n++;
	/* Long lines show a window around the column. */
	enum { WIDTH = 120 };
	size_t col = loc->col > 0 ? (size_t)loc->col - 1 : 0, from = 0, to = n;
	if (n > WIDTH) {
		from = col > WIDTH / 2 ? col - WIDTH / 2 : 0;
		to = from + WIDTH < n ? from + WIDTH : n;
	}
	fputs(from ? "    ..." : "    ", f);
	for (size_t i = from; i < to; i++)
		fputc((unsigned char)line[i] < 32 && line[i] != '\t' ? ' ' : line[i], f);
	fputs(to < n ? "...\n    " : "\n    ", f);
	if (from)
		fputs("   ", f);
	for (size_t i = from; i < col && i < to; i++)
		fputc(line[i] == '\t' ? '\t' : ' ', f);
	fputs("^\n", f);
}

static void vreport(const diag_loc *loc, const char *kind, const char *fmt, va_list ap)
{
	FILE *f = diag_output();
	if (loc && loc->src)
		fprintf(f, "%s:%d:%d: %s: ", loc->src->name, loc->line, loc->col, kind);
	else
		fprintf(f, "netcc: %s: ", kind);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	if (loc && loc->src)
		print_caret(loc);
}

/* Deep chains (a recursive block) show their innermost and outermost calls. */
static void print_chain(const diag_loc *loc)
{
	if (!loc)
		return;
	enum { SHOWN = 4 };
	int i = 0;
	for (const diag_chain *c = loc->chain; c; c = c->call.chain, i++) {
		int depth = c->depth;
		if (i >= SHOWN && depth > SHOWN) {
			if (i == SHOWN)
				fprintf(diag_output(), "note: ... %d more block calls ...\n",
				        depth - SHOWN);
			continue;
		}
		diag_note_at(&c->call, "in block '%s' called from here", c->block);
	}
}

void diag_note_next(const diag_loc *loc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pending_msg, sizeof pending_msg, fmt, ap);
	va_end(ap);
	pending_loc = *loc;
}

void diag_error_at(const diag_loc *loc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(loc, "error", fmt, ap);
	va_end(ap);
	if (pending_msg[0]) {
		diag_note_at(&pending_loc, "%s", pending_msg);
		pending_msg[0] = 0;
	}
	print_chain(loc);
	unwind();
}

void diag_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(NULL, "error", fmt, ap);
	va_end(ap);
	unwind();
}

void diag_note_at(const diag_loc *loc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(loc, "note", fmt, ap);
	va_end(ap);
}

static int warnings;

void diag_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(NULL, "warning", fmt, ap);
	va_end(ap);
	warnings++;
}

void diag_warn_at(const diag_loc *loc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(loc, "warning", fmt, ap);
	va_end(ap);
	print_chain(loc);
	warnings++;
}

int diag_warning_count(void)
{
	return warnings;
}

static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return 1 << 20;
	int row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *diag_suggest(const char *name, const char *const *cands, int n)
{
	const char *best = NULL;
	int best_d = 1 << 20;
	int limit = (int)strlen(name) / 3 + 1;
	if (limit > 3)
		limit = 3;
	for (int i = 0; i < n; i++) {
		if (!cands[i] || strcmp(cands[i], name) == 0)
			continue;
		int d = edit_distance(name, cands[i]);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	if (best_d <= limit)
		return best;
	/* "fuse" for "fuse_epilogue": a unique candidate the name begins */
	const char *prefixed = NULL;
	size_t len = strlen(name);
	for (int i = 0; i < n; i++)
		if (cands[i] && len >= 3 && strncmp(cands[i], name, len) == 0) {
			if (prefixed)
				return NULL;
			prefixed = cands[i];
		}
	return prefixed;
}
