/* Recursive descent from tokens to syntax trees. The grammar is in
 * docs/language.md; statements need no separators because no statement
 * can start where an expression may continue. */
#include <string.h>

#include "ast.h"

typedef struct parser {
	arena *a;
	token *tok;
	int depth;
} parser;

static const char *const keywords[] = {"version", "model",  "block", "graph", "train", "if",
                                       "else",    "repeat", "as",    "true",  "false", "f32"};

static bool is_keyword(const token *t)
{
	for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
		if (tok_is(t, keywords[i]))
			return true;
	return false;
}

static const char *describe(const token *t)
{
	switch (t->kind) {
	case TK_EOF:
		return "end of file";
	case TK_INT:
	case TK_FLOAT:
		return "a number";
	case TK_STRING:
		return "a string";
	default:
		return NULL;
	}
}

static _Noreturn void expected(const token *t, const char *what)
{
	const char *d = describe(t);
	if (d)
		diag_error_at(&t->loc, "expected %s, found %s", what, d);
	diag_error_at(&t->loc, "expected %s, found '%.*s'", what, t->len, t->text);
}

static bool accept(parser *ps, const char *s)
{
	if (tok_is(ps->tok, s)) {
		ps->tok = ps->tok->next;
		return true;
	}
	return false;
}

static token *expect(parser *ps, const char *s)
{
	token *t = ps->tok;
	if (!tok_is(t, s)) {
		char what[16];
		snprintf(what, sizeof what, "'%s'", s);
		expected(t, what);
	}
	ps->tok = t->next;
	return t;
}

static const char *expect_ident(parser *ps, diag_loc *loc, const char *what)
{
	token *t = ps->tok;
	if (t->kind == TK_IDENT && is_keyword(t))
		diag_error_at(&t->loc, "expected %s, found the keyword '%.*s'", what, t->len,
		              t->text);
	if (t->kind != TK_IDENT)
		expected(t, what);
	ps->tok = t->next;
	if (loc)
		*loc = t->loc;
	return arena_strndup(ps->a, t->text, (size_t)t->len);
}

static void enter(parser *ps)
{
	if (++ps->depth > FE_MAX_NESTING)
		diag_error_at(&ps->tok->loc, "nesting is deeper than %d levels", FE_MAX_NESTING);
}

static ast_expr *new_expr(parser *ps, ex_kind kind, diag_loc loc)
{
	ast_expr *e = arena_alloc(ps->a, sizeof *e);
	e->kind = kind;
	e->loc = loc;
	return e;
}

static ast_expr *expr(parser *ps);

static void call_args(parser *ps, ast_expr *call)
{
	ast_arg args[FE_MAX_ARGS];
	int n = 0;
	if (!tok_is(ps->tok, ")")) {
		do {
			if (n == FE_MAX_ARGS)
				diag_error_at(&ps->tok->loc, "more than %d arguments", FE_MAX_ARGS);
			ast_arg *arg = &args[n++];
			*arg = (ast_arg){.loc = ps->tok->loc};
			if (ps->tok->kind == TK_IDENT && tok_is(ps->tok->next, "=") &&
			    !is_keyword(ps->tok)) {
				arg->key = expect_ident(ps, &arg->loc, "an argument name");
				ps->tok = ps->tok->next;
			}
			arg->value = expr(ps);
		} while (accept(ps, ","));
	}
	expect(ps, ")");
	call->n_args = n;
	call->args = arena_array(ps->a, (size_t)n, sizeof *args);
	memcpy(call->args, args, (size_t)n * sizeof *args);
}

static ast_expr *primary(parser *ps)
{
	token *t = ps->tok;
	ast_expr *e;
	switch (t->kind) {
	case TK_INT:
		e = new_expr(ps, EX_INT, t->loc);
		e->ival = t->ival;
		ps->tok = t->next;
		return e;
	case TK_FLOAT:
		e = new_expr(ps, EX_FLOAT, t->loc);
		e->fval = t->fval;
		ps->tok = t->next;
		return e;
	case TK_STRING:
		e = new_expr(ps, EX_STRING, t->loc);
		e->str = t->str;
		ps->tok = t->next;
		return e;
	default:
		break;
	}
	if (tok_is(t, "true") || tok_is(t, "false")) {
		e = new_expr(ps, EX_BOOL, t->loc);
		e->bval = tok_is(t, "true");
		ps->tok = t->next;
		return e;
	}
	if (accept(ps, "(")) {
		e = expr(ps);
		expect(ps, ")");
		return e;
	}
	if (t->kind == TK_IDENT && !is_keyword(t)) {
		e = new_expr(ps, EX_NAME, t->loc);
		e->name = expect_ident(ps, NULL, "a name");
		if (accept(ps, "(")) {
			e->kind = EX_CALL;
			call_args(ps, e);
		}
		return e;
	}
	expected(t, "an expression");
}

static ast_expr *postfix(parser *ps)
{
	ast_expr *e = primary(ps);
	while (tok_is(ps->tok, ".")) {
		ast_expr *m = new_expr(ps, EX_MEMBER, ps->tok->next->loc);
		ps->tok = ps->tok->next;
		m->name = expect_ident(ps, NULL, "a field name after '.'");
		m->lhs = e;
		e = m;
	}
	return e;
}

static ast_expr *unary(parser *ps)
{
	if (tok_is(ps->tok, "-") || tok_is(ps->tok, "!")) {
		enter(ps);
		ast_expr *e = new_expr(ps, EX_UNARY, ps->tok->loc);
		e->name = tok_is(ps->tok, "-") ? "-" : "!";
		ps->tok = ps->tok->next;
		e->lhs = unary(ps);
		ps->depth--;
		return e;
	}
	return postfix(ps);
}

/* Binary operators by precedence, loosest first. */
static const char *const levels[][6] = {
    {"||"}, {"&&"}, {"==", "!=", "<", "<=", ">", ">="}, {"+", "-"}, {"*", "/", "%"},
};
enum { N_LEVELS = sizeof levels / sizeof *levels };

static const char *match_level(const token *t, int level)
{
	for (int i = 0; i < 6 && levels[level][i]; i++)
		if (t->kind == TK_PUNCT && tok_is(t, levels[level][i]))
			return levels[level][i];
	return NULL;
}

static ast_expr *binary(parser *ps, int level)
{
	if (level == N_LEVELS)
		return unary(ps);
	enter(ps);
	ast_expr *lhs = binary(ps, level + 1);
	const char *op;
	while ((op = match_level(ps->tok, level))) {
		ast_expr *e = new_expr(ps, EX_BINARY, ps->tok->loc);
		ps->tok = ps->tok->next;
		e->name = op;
		e->lhs = lhs;
		e->rhs = binary(ps, level + 1);
		lhs = e;
		/* comparisons do not chain: a < b < c is almost always a mistake */
		if (level == 2 && match_level(ps->tok, level))
			diag_error_at(&ps->tok->loc, "comparisons cannot be chained; use &&");
	}
	ps->depth--;
	return lhs;
}

static ast_expr *expr(parser *ps)
{
	return binary(ps, 0);
}

static ast_stmt *stmts(parser *ps);

static ast_stmt *braced(parser *ps)
{
	expect(ps, "{");
	ast_stmt *body = stmts(ps);
	expect(ps, "}");
	return body;
}

static ast_stmt *stmt(parser *ps)
{
	ast_stmt *s = arena_alloc(ps->a, sizeof *s);
	s->loc = ps->tok->loc;
	if (ps->a->bytes > FE_MAX_BYTES)
		diag_error_at(&s->loc, "model file has too many statements (over %d MiB of them)",
		              FE_MAX_BYTES >> 20);
	enter(ps);
	if (accept(ps, "if")) {
		s->kind = ST_IF;
		s->expr = expr(ps);
		s->body = braced(ps);
		if (accept(ps, "else"))
			s->else_body = tok_is(ps->tok, "if") ? stmt(ps) : braced(ps);
	} else if (accept(ps, "repeat")) {
		s->kind = ST_REPEAT;
		s->expr = expr(ps);
		if (accept(ps, "as"))
			s->index = expect_ident(ps, &s->index_loc, "a loop variable name");
		s->body = braced(ps);
	} else {
		s->kind = ST_ASSIGN;
		const char *names[FE_MAX_ARGS];
		diag_loc locs[FE_MAX_ARGS];
		int n = 0;
		do {
			if (n == FE_MAX_ARGS)
				diag_error_at(&ps->tok->loc, "too many assignment targets");
			names[n] = expect_ident(ps, &locs[n], "a statement");
			n++;
		} while (accept(ps, ","));
		if (!tok_is(ps->tok, "="))
			expected(ps->tok, n > 1 ? "'='" : "'=' after the name");
		s->loc = ps->tok->loc;
		ps->tok = ps->tok->next;
		s->expr = expr(ps);
		s->n_targets = n;
		s->targets = arena_array(ps->a, (size_t)n, sizeof *names);
		s->target_locs = arena_array(ps->a, (size_t)n, sizeof *locs);
		memcpy(s->targets, names, (size_t)n * sizeof *names);
		memcpy(s->target_locs, locs, (size_t)n * sizeof *locs);
	}
	ps->depth--;
	return s;
}

static ast_stmt *stmts(parser *ps)
{
	ast_stmt head = {0}, *cur = &head;
	for (;;) {
		while (accept(ps, ";"))
			;
		if (tok_is(ps->tok, "}") || ps->tok->kind == TK_EOF)
			return head.next;
		cur = cur->next = stmt(ps);
	}
}

/* name: f32[N, 3, 224, 224] */
static void tensor_decl(parser *ps, ast_tensor *t)
{
	t->name = expect_ident(ps, &t->loc, "a tensor name");
	expect(ps, ":");
	if (!tok_is(ps->tok, "f32"))
		expected(ps->tok, "the element type f32");
	ps->tok = ps->tok->next;
	expect(ps, "[");
	do {
		if (t->rank == IR_MAX_RANK)
			diag_error_at(&ps->tok->loc, "tensors have at most %d dimensions",
			              IR_MAX_RANK);
		token *d = ps->tok;
		ast_expr *e;
		if (d->kind == TK_INT) {
			e = new_expr(ps, EX_INT, d->loc);
			e->ival = d->ival;
			ps->tok = d->next;
		} else {
			e = new_expr(ps, EX_NAME, d->loc);
			e->name =
			    expect_ident(ps, NULL, "a dimension (a number, or N for the batch)");
		}
		t->dims[t->rank++] = e;
	} while (accept(ps, ","));
	expect(ps, "]");
}

static int tensor_list(parser *ps, ast_tensor **out)
{
	ast_tensor items[IR_MAX_IO];
	int n = 0;
	expect(ps, "(");
	do {
		if (n == IR_MAX_IO)
			diag_error_at(&ps->tok->loc, "more than %d model inputs or outputs",
			              IR_MAX_IO);
		items[n] = (ast_tensor){0};
		tensor_decl(ps, &items[n++]);
	} while (accept(ps, ","));
	expect(ps, ")");
	*out = arena_array(ps->a, (size_t)n, sizeof *items);
	memcpy(*out, items, (size_t)n * sizeof *items);
	return n;
}

static void model_decl(parser *ps, ast_file *f)
{
	if (f->model)
		diag_error_at(&ps->tok->loc, "a file holds one model; '%s' was declared already",
		              f->model);
	ps->tok = ps->tok->next;
	f->model = expect_ident(ps, &f->model_loc, "the model's name");
	f->n_inputs = tensor_list(ps, &f->inputs);
	expect(ps, "->");
	f->n_outputs = tensor_list(ps, &f->outputs);
}

static ast_block *block_decl(parser *ps)
{
	ps->tok = ps->tok->next;
	ast_block *b = arena_alloc(ps->a, sizeof *b);
	b->name = expect_ident(ps, &b->loc, "the block's name");
	ast_param params[FE_MAX_ARGS];
	expect(ps, "(");
	if (!tok_is(ps->tok, ")")) {
		do {
			if (b->n_params == FE_MAX_ARGS)
				diag_error_at(&ps->tok->loc, "more than %d parameters",
				              FE_MAX_ARGS);
			ast_param *p = &params[b->n_params++];
			*p = (ast_param){0};
			p->name = expect_ident(ps, &p->loc, "a parameter name");
			if (accept(ps, "="))
				p->def = expr(ps);
			else if (b->n_params > 1 && params[b->n_params - 2].def)
				diag_error_at(
				    &p->loc,
				    "parameter '%s' needs a default: it follows one that has one",
				    p->name);
		} while (accept(ps, ","));
	}
	expect(ps, ")");
	b->params = arena_array(ps->a, (size_t)b->n_params, sizeof *params);
	memcpy(b->params, params, (size_t)b->n_params * sizeof *params);

	expect(ps, "->");
	const char *outs[IR_MAX_IO];
	diag_loc locs[IR_MAX_IO];
	if (accept(ps, "(")) {
		do {
			if (b->n_outs == IR_MAX_IO)
				diag_error_at(&ps->tok->loc, "more than %d block outputs",
				              IR_MAX_IO);
			outs[b->n_outs] = expect_ident(ps, &locs[b->n_outs], "an output name");
			b->n_outs++;
		} while (accept(ps, ","));
		expect(ps, ")");
	} else {
		outs[0] = expect_ident(ps, &locs[0], "the block's output name");
		b->n_outs = 1;
	}
	b->outs = arena_array(ps->a, (size_t)b->n_outs, sizeof *outs);
	b->out_locs = arena_array(ps->a, (size_t)b->n_outs, sizeof *locs);
	memcpy(b->outs, outs, (size_t)b->n_outs * sizeof *outs);
	memcpy(b->out_locs, locs, (size_t)b->n_outs * sizeof *locs);
	b->body = braced(ps);
	return b;
}

static ast_setting *train_decl(parser *ps)
{
	ps->tok = ps->tok->next;
	expect(ps, "{");
	ast_setting head = {0}, *cur = &head;
	while (!accept(ps, "}")) {
		if (accept(ps, ";"))
			continue;
		ast_setting *s = arena_alloc(ps->a, sizeof *s);
		s->key = expect_ident(ps, &s->loc, "a training setting or '}'");
		expect(ps, "=");
		s->value = expr(ps);
		cur = cur->next = s;
	}
	return head.next;
}

ast_file *parse_tokens(arena *a, token *tok)
{
	parser ps = {.a = a, .tok = tok};
	ast_file *f = arena_alloc(a, sizeof *f);
	if (!tok_is(ps.tok, "version"))
		expected(ps.tok, "'version 1' as the first line");
	ps.tok = ps.tok->next;
	if (ps.tok->kind != TK_INT)
		expected(ps.tok, "a version number");
	if (ps.tok->ival != 1)
		diag_error_at(&ps.tok->loc, "unsupported version %lld (this netcc reads version 1)",
		              (long long)ps.tok->ival);
	ps.tok = ps.tok->next;

	ast_block bhead = {0}, *bcur = &bhead;
	while (ps.tok->kind != TK_EOF) {
		token *t = ps.tok;
		if (tok_is(t, "model")) {
			model_decl(&ps, f);
		} else if (tok_is(t, "block")) {
			bcur = bcur->next = block_decl(&ps);
		} else if (tok_is(t, "graph")) {
			if (f->has_graph)
				diag_error_at(&t->loc, "a model has one graph section");
			ps.tok = t->next;
			f->graph = braced(&ps);
			f->has_graph = true;
		} else if (tok_is(t, "train")) {
			if (f->has_train)
				diag_error_at(&t->loc, "a model has one train section");
			f->train = train_decl(&ps);
			f->has_train = true;
		} else if (!accept(&ps, ";")) {
			expected(t, "'model', 'block', 'graph' or 'train'");
		}
	}
	f->blocks = bhead.next;
	f->eof_loc = ps.tok->loc;
	if (!f->model)
		diag_error_at(
		    &f->eof_loc,
		    "the file declares no model (model NAME(x: f32[...]) -> (y: f32[...]))");
	if (!f->has_graph)
		diag_error_at(&f->model_loc, "model '%s' has no graph { ... } section", f->model);
	return f;
}
