/* Tokens with their source positions. Newlines are ordinary white space
 * (CR too, so CRLF files read the same); `#` starts a comment. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

typedef struct lexer {
	arena *a;
	const diag_src *src;
	const char *p, *end;
	int line;
	const char *line_start;
} lexer;

static diag_loc here(const lexer *lx, const char *at)
{
	return (diag_loc){.src = lx->src,
	                  .line = lx->line,
	                  .col = (int)(at - lx->line_start) + 1,
	                  .line_off = (uint32_t)(lx->line_start - lx->src->text)};
}

bool tok_is(const token *t, const char *s)
{
	size_t n = strlen(s);
	return (t->kind == TK_PUNCT || t->kind == TK_IDENT) && (size_t)t->len == n &&
	       memcmp(t->text, s, n) == 0;
}

static bool is_ident_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static void skip_space(lexer *lx)
{
	while (lx->p < lx->end) {
		char c = *lx->p;
		if (c == '\n') {
			lx->p++;
			lx->line++;
			lx->line_start = lx->p;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
			lx->p++;
		} else if (c == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else {
			break;
		}
	}
}

/* Digits, an optional fraction and exponent: integers stay exact, anything
 * with '.' or 'e' is a float. */
static void lex_number(lexer *lx, token *t)
{
	const char *s = lx->p;
	while (lx->p < lx->end && is_digit(*lx->p))
		lx->p++;
	bool is_float = false;
	if (lx->p + 1 < lx->end && *lx->p == '.' && is_digit(lx->p[1])) {
		is_float = true;
		lx->p++;
		while (lx->p < lx->end && is_digit(*lx->p))
			lx->p++;
	}
	if (lx->p < lx->end && (*lx->p == 'e' || *lx->p == 'E')) {
		const char *q = lx->p + 1;
		if (q < lx->end && (*q == '+' || *q == '-'))
			q++;
		if (q < lx->end && is_digit(*q)) {
			is_float = true;
			lx->p = q;
			while (lx->p < lx->end && is_digit(*lx->p))
				lx->p++;
		}
	}
	if (lx->p < lx->end && (is_ident_start(*lx->p) || is_digit(*lx->p)))
		diag_error_at(&t->loc, "malformed number");
	t->len = (int)(lx->p - s);
	char buf[64];
	if (t->len >= (int)sizeof buf)
		diag_error_at(&t->loc, "number is too long");
	memcpy(buf, s, (size_t)t->len);
	buf[t->len] = 0;
	errno = 0;
	if (is_float) {
		t->kind = TK_FLOAT;
		t->fval = strtod(buf, NULL);
		if (errno == ERANGE || !isfinite(t->fval))
			diag_error_at(&t->loc, "number %s is out of range", buf);
	} else {
		t->kind = TK_INT;
		unsigned long long v = strtoull(buf, NULL, 10);
		if (errno == ERANGE || v > (unsigned long long)INT64_MAX)
			diag_error_at(&t->loc, "integer %s is out of range", buf);
		t->ival = (int64_t)v;
	}
}

static void lex_string(lexer *lx, token *t)
{
	const char *s = ++lx->p;
	while (lx->p < lx->end && *lx->p != '"') {
		if (*lx->p == '\n' || *lx->p == '\\')
			diag_error_at(&t->loc, *lx->p == '\n'
			                           ? "unterminated string"
			                           : "escapes are not supported in strings");
		lx->p++;
	}
	if (lx->p >= lx->end)
		diag_error_at(&t->loc, "unterminated string");
	t->str = arena_strndup(lx->a, s, (size_t)(lx->p - s));
	lx->p++;
	t->kind = TK_STRING;
	t->len = (int)(lx->p - t->text);
}

static const char *const puncts[] = {"->", "==", "!=", "<=", ">=", "&&", "||", "(", ")",
                                     "[",  "]",  "{",  "}",  ",",  ":",  "=",  ".", "+",
                                     "-",  "*",  "/",  "%",  "<",  ">",  "!",  ";"};

static int punct_len(const char *p, const char *end)
{
	for (size_t i = 0; i < sizeof puncts / sizeof *puncts; i++) {
		size_t n = strlen(puncts[i]);
		if ((size_t)(end - p) >= n && memcmp(p, puncts[i], n) == 0)
			return (int)n;
	}
	return 0;
}

token *lex_source(arena *a, const diag_src *src)
{
	lexer lx = {.a = a, .src = src, .p = src->text, .end = src->text + src->len, .line = 1};
	lx.line_start = lx.p;
	if (src->len > FE_MAX_SOURCE) {
		diag_loc top = here(&lx, lx.p);
		diag_error_at(&top, "model file is larger than %d bytes", FE_MAX_SOURCE);
	}
	token head = {0}, *cur = &head;
	for (;;) {
		skip_space(&lx);
		token *t = arena_alloc(a, sizeof *t);
		t->text = lx.p;
		t->loc = here(&lx, lx.p);
		/* 16 MiB of ';' are 16 million tokens, 1.5 GB of them */
		if (a->bytes > FE_MAX_BYTES / 2)
			diag_error_at(&t->loc,
			              "model file has too many tokens (over %d MiB of them)",
			              FE_MAX_BYTES / 2 >> 20);
		cur = cur->next = t;
		if (lx.p >= lx.end) {
			t->kind = TK_EOF;
			return head.next;
		}
		unsigned char c = (unsigned char)*lx.p;
		if (is_ident_start(c)) {
			while (lx.p < lx.end && (is_ident_start(*lx.p) || is_digit(*lx.p)))
				lx.p++;
			t->kind = TK_IDENT;
			t->len = (int)(lx.p - t->text);
			if (t->len > 256)
				diag_error_at(&t->loc, "identifier is longer than 256 characters");
		} else if (is_digit(c)) {
			lex_number(&lx, t);
		} else if (c == '"') {
			lex_string(&lx, t);
		} else if ((t->len = punct_len(lx.p, lx.end)) > 0) {
			t->kind = TK_PUNCT;
			lx.p += t->len;
		} else if (c == 0) {
			diag_error_at(&t->loc, "NUL byte in model file");
		} else if (c >= 0x80) {
			diag_error_at(&t->loc, "non-ASCII character outside a string or comment");
		} else {
			diag_error_at(&t->loc, "unexpected character '%c'", c);
		}
	}
}
