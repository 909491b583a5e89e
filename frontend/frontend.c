/* The frontend's pipeline: read, lex, parse, expand, verify. Syntax trees
 * live in an arena that goes away once the graph exists. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "frontend.h"

static void build(ir_graph *g, const diag_src *src, arena *tmp)
{
	token *toks = lex_source(tmp, src);
	ast_file *f = parse_tokens(tmp, toks);
	expand_train(g, f);
	if (g->batch == FRONTEND_BATCH_TRAIN)
		g->batch = g->train.batch;
	expand_file(g, f, tmp);
	ir_graph_verify(g);
}

ir_graph *frontend_graph_parse(const char *name, const char *text, size_t len, int64_t batch)
{
	if (batch < 0 || batch > FRONTEND_MAX_BATCH) {
		diag_warn("batch %lld is outside [1, %d]", (long long)batch, FRONTEND_MAX_BATCH);
		return NULL;
	}
	ir_graph *g = ir_graph_new(NULL, batch);
	diag_src *src = arena_alloc(&g->arena, sizeof *src);
	src->name = arena_strdup(&g->arena, name);
	src->text = arena_strndup(&g->arena, text, len);
	src->len = len;
	arena tmp = {0};
	diag_trap t;
	diag_trap_push(&t);
	if (setjmp(t.jb) == 0) {
		build(g, src, &tmp);
		diag_trap_pop(&t);
		arena_free(&tmp);
		return g;
	}
	arena_free(&tmp);
	ir_graph_free(g);
	return NULL;
}

ir_graph *frontend_graph_load(const char *path, int64_t batch)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(diag_output(), "netcc: error: cannot open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (len < cap)
			break;
		if (cap > (size_t)FE_MAX_SOURCE) {
			fprintf(diag_output(), "netcc: error: %s is larger than %d bytes\n", path,
			        FE_MAX_SOURCE);
			free(buf);
			fclose(f);
			return NULL;
		}
		char *nb = realloc(buf, cap * 2);
		if (!nb)
			free(buf);
		buf = nb;
		cap *= 2;
	}
	bool bad = ferror(f) || !buf;
	fclose(f);
	if (bad) {
		fprintf(diag_output(), "netcc: error: cannot read %s\n", path);
		free(buf);
		return NULL;
	}
	ir_graph *g = frontend_graph_parse(path, buf, len, batch);
	free(buf);
	return g;
}
