/* Evaluates a parsed model into IR: blocks are expanded at every call,
 * integer expressions and `if`s are decided at compile time (they may read
 * the shapes inferred so far), and each operator call becomes a node whose
 * parameters are named after the call path.
 *
 * This file holds the scopes, the limits on evaluation, the statements
 * and the model; expressions are expand_expr.c, calls expand_call.c. */
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "expand_impl.h"

static void grow(arena *a, void **items, int *cap, int n, size_t size)
{
	if (n < *cap)
		return;
	int ncap = *cap ? *cap * 2 : 16;
	void *p = arena_array(a, (size_t)ncap, size);
	if (n)
		memcpy(p, *items, (size_t)n * size);
	*items = p;
	*cap = ncap;
}

void expand_bind(expander *ex, scope *sc, const char *name, value v)
{
	binding *b = lookup(sc, name);
	if (b) {
		b->v = v;
		return;
	}
	grow(ex->tmp, (void **)&sc->vars, &sc->cap_vars, sc->n_vars, sizeof *sc->vars);
	strmap_put(&sc->var_index, ex->tmp, name, sc->n_vars);
	sc->vars[sc->n_vars++] = (binding){.name = name, .v = v};
}

void expand_step(expander *ex, const diag_loc *loc)
{
	if (++ex->steps > FE_MAX_STEPS)
		diag_error_at(loc,
		              "evaluation takes more than %d steps (is a repeat count too large?)",
		              FE_MAX_STEPS);
	/* the steps bound time; memory per step can be large (a call path of
	 * long block names in every node's name) */
	if (ex->tmp->bytes + (ex->g->arena.bytes - ex->graph_bytes) > FE_MAX_BYTES)
		diag_error_at(loc,
		              "evaluation takes more than %d MiB of memory (are blocks "
		              "called too many times?)",
		              FE_MAX_BYTES >> 20);
}

/* One more level of evaluation at loc; leave() undoes it. */
void expand_enter(expander *ex, const diag_loc *loc)
{
	if (++ex->depth > FE_MAX_EVAL_DEPTH)
		diag_error_at(loc,
		              "evaluation nests more than %d levels deep (expressions, statements "
		              "and block calls together)",
		              FE_MAX_EVAL_DEPTH);
	/* and a stack smaller than those levels take (ulimit -s) is an error
	 * too, not a crash */
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);
	if (here < ex->stack && ex->stack - here > ex->stack_left)
		diag_error_at(
		    loc,
		    "evaluation nests too deeply for the stack (%zu KiB; ulimit -s raises "
		    "it)",
		    ex->stack_left * 2 >> 10);
}

/* Half the stack's limit for evaluation, of at most 8 MiB: the rest is
 * for what runs above and beside it. */
static size_t stack_budget(void)
{
	struct rlimit r;
	size_t lim = 8 << 20;
	if (getrlimit(RLIMIT_STACK, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_cur < lim)
		lim = (size_t)r.rlim_cur;
	return lim / 2;
}

/* The name of a call inside a scope: explicit, or the callee's name and how
 * many times this scope called it before (conv0, conv1, ...). */
const char *expand_call_path(expander *ex, scope *sc, const char *callee, const char *explicit)
{
	const char *leaf = explicit;
	if (!leaf) {
		int i = strmap_get(&sc->count_index, callee);
		if (i < 0) {
			grow(ex->tmp, (void **)&sc->counts, &sc->cap_counts, sc->n_counts,
			     sizeof *sc->counts);
			i = sc->n_counts++;
			sc->counts[i] = (counter){.name = callee};
			strmap_put(&sc->count_index, ex->tmp, callee, i);
		}
		counter *c = &sc->counts[i];
		leaf = arena_printf(ex->tmp, "%s%lld", callee, (long long)c->n++);
	}
	if (!*sc->path)
		return arena_strdup(&ex->g->arena, leaf);
	return arena_printf(&ex->g->arena, "%s.%s", sc->path, leaf);
}

/* ---- statements ----------------------------------------------------------- */

static void exec_assign(expander *ex, scope *sc, const ast_stmt *s)
{
	value vals[IR_MAX_IO];
	int n;
	if (s->n_targets > 1) {
		if (s->expr->kind != EX_CALL) {
			diag_loc l = at(sc, s->expr->loc);
			diag_error_at(
			    &l, "assigning %d names needs a block call that returns %d values",
			    s->n_targets, s->n_targets);
		}
		n = expand_eval_call(ex, sc, s->expr, vals);
		if (n != s->n_targets) {
			diag_loc l = at(sc, s->expr->loc);
			diag_error_at(&l, "'%s' returns %d value%s, not %d", s->expr->name, n,
			              n == 1 ? "" : "s", s->n_targets);
		}
	} else {
		vals[0] = expand_eval(ex, sc, s->expr);
	}
	for (int i = 0; i < s->n_targets; i++)
		expand_bind(ex, sc, s->targets[i], vals[i]);
}

static void exec_list(expander *ex, scope *sc, const ast_stmt *s);

/* A statement list is a level of evaluation (a body inside an if, a
 * repeat or a block), so nested bodies count towards FE_MAX_EVAL_DEPTH. */
void expand_exec(expander *ex, scope *sc, const ast_stmt *s)
{
	if (!s)
		return;
	diag_loc l = at(sc, s->loc);
	expand_enter(ex, &l);
	exec_list(ex, sc, s);
	leave(ex);
}

static void exec_list(expander *ex, scope *sc, const ast_stmt *s)
{
	for (; s; s = s->next) {
		diag_loc l = at(sc, s->loc);
		expand_step(ex, &l);
		switch (s->kind) {
		case ST_ASSIGN:
			exec_assign(ex, sc, s);
			break;
		case ST_IF: {
			value c = expand_eval(ex, sc, s->expr);
			if (want_bool(s->expr, c, sc, "an if condition"))
				expand_exec(ex, sc, s->body);
			else
				expand_exec(ex, sc, s->else_body);
			break;
		}
		case ST_REPEAT: {
			int64_t n =
			    want_int(s->expr, expand_eval(ex, sc, s->expr), sc, "a repeat count");
			if (n < 0 || n > FE_MAX_REPEAT) {
				diag_loc el = at(sc, s->expr->loc);
				diag_error_at(&el, "repeat count %lld is outside [0, %d]",
				              (long long)n, FE_MAX_REPEAT);
			}
			/* each pass is a step, body or not: an empty body
			 * nested in another would spin uncounted (the fuzzer's
			 * repeat 100000 { repeat 100000 { } }) */
			for (int64_t i = 0; i < n; i++) {
				expand_step(ex, &l);
				if (s->index)
					expand_bind(ex, sc, s->index, int_value(i));
				expand_exec(ex, sc, s->body);
			}
			break;
		}
		}
	}
}

/* ---- the model ------------------------------------------------------------ */

static void index_blocks(expander *ex)
{
	int n = 0;
	for (const ast_block *b = ex->f->blocks; b; b = b->next)
		n++;
	ex->block_list = arena_array(ex->tmp, (size_t)n, sizeof *ex->block_list);
	ex->block_names = arena_array(ex->tmp, (size_t)n, sizeof *ex->block_names);
	n = 0;
	for (const ast_block *b = ex->f->blocks; b; b = b->next) {
		const ast_block *o = find_block(ex, b->name);
		if (o) {
			diag_note_next(&o->loc, "'%s' was first defined here", o->name);
			diag_error_at(&b->loc, "block '%s' is defined twice", b->name);
		}
		ex->block_list[n] = b;
		ex->block_names[n] = arena_strdup(&ex->g->arena, b->name);
		strmap_put(&ex->blocks, ex->tmp, b->name, n++);
	}
}

static void check_blocks(const ast_file *f)
{
	for (const ast_block *b = f->blocks; b; b = b->next) {
		int op = ir_op_lookup(b->name);
		if (op >= 0 && (ir_ops[op].flags & OPF_USER))
			diag_error_at(&b->loc, "block '%s' has the name of an operator", b->name);
		for (int i = 0; i < b->n_params; i++) {
			if (!strcmp(b->params[i].name, "name"))
				diag_error_at(
				    &b->params[i].loc,
				    "'name' is reserved: every call takes name = \"...\"");
			for (int j = 0; j < i; j++)
				if (!strcmp(b->params[i].name, b->params[j].name))
					diag_error_at(&b->params[i].loc,
					              "parameter '%s' is listed twice",
					              b->params[i].name);
		}
	}
}

static ir_shape decl_shape(const ir_graph *g, const ast_tensor *t)
{
	ir_shape s = {.rank = t->rank};
	for (int i = 0; i < t->rank; i++) {
		const ast_expr *d = t->dims[i];
		if (d->kind == EX_NAME) {
			if (i != 0)
				diag_error_at(&d->loc,
				              "only the batch (the first dimension) may be named");
			s.d[i] = g->batch;
		} else if (d->ival < 1 || d->ival > (1 << 24)) {
			diag_error_at(&d->loc, "dimension %lld is outside [1, %d]",
			              (long long)d->ival, 1 << 24);
		} else {
			s.d[i] = d->ival;
		}
	}
	if (ir_shape_count(&s) >= IR_MAX_ELEMS)
		diag_error_at(&t->loc, "'%s' has more than %lld elements", t->name,
		              (long long)IR_MAX_ELEMS);
	return s;
}

void expand_file(ir_graph *g, const ast_file *f, arena *tmp)
{
	g->name = arena_strdup(&g->arena, f->model);
	check_blocks(f);
	expander ex = {.g = g,
	               .f = f,
	               .tmp = tmp,
	               .graph_bytes = g->arena.bytes,
	               .stack = (uintptr_t)__builtin_frame_address(0),
	               .stack_left = stack_budget()};
	index_blocks(&ex);
	scope top = {.path = ""};
	for (int i = 0; i < f->n_inputs; i++) {
		const ast_tensor *t = &f->inputs[i];
		for (int j = 0; j < i; j++)
			if (!strcmp(f->inputs[j].name, t->name))
				diag_error_at(&t->loc, "input '%s' is declared twice", t->name);
		expand_bind(&ex, &top, t->name,
		            tensor_value(ir_input_add(g, t->name, decl_shape(g, t), &t->loc)));
	}
	expand_exec(&ex, &top, f->graph);
	for (int i = 0; i < f->n_outputs; i++) {
		const ast_tensor *t = &f->outputs[i];
		binding *b = lookup(&top, t->name);
		if (!b)
			diag_error_at(&t->loc, "the graph never assigns the output '%s'", t->name);
		if (b->v.kind != V_TENSOR)
			diag_error_at(&t->loc, "output '%s' is %s, not a tensor", t->name,
			              kind_name(b->v.kind));
		ir_shape want = decl_shape(g, t);
		const ir_shape *got = &g->nodes[b->v.node].shape;
		if (!ir_shape_eq(&want, got)) {
			char a[96], c[96];
			diag_error_at(&t->loc, "output '%s' is declared %s but the graph makes %s",
			              t->name, ir_shape_str(&want, a, sizeof a),
			              ir_shape_str(got, c, sizeof c));
		}
		ir_output_add(g, t->name, b->v.node, &t->loc);
	}
}
