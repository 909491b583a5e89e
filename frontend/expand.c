/* Evaluates a parsed model into IR: blocks are expanded at every call,
 * integer expressions and `if`s are decided at compile time (they may read
 * the shapes inferred so far), and each operator call becomes a node whose
 * parameters are named after the call path. */
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "ast.h"

typedef enum vkind { V_INT, V_FLOAT, V_BOOL, V_STRING, V_TENSOR } vkind;

typedef struct value {
	vkind kind;
	int64_t i;
	double f;
	bool b;
	const char *s;
	int node;
} value;

typedef struct binding {
	const char *name;
	value v;
} binding;

typedef struct counter {
	const char *name;
	int64_t n;
} counter;

typedef struct scope {
	binding *vars;
	int n_vars, cap_vars;
	strmap var_index;
	counter *counts;
	int n_counts, cap_counts;
	strmap count_index;
	const char *path;
	const diag_chain *chain;
} scope;

typedef struct expander {
	ir_graph *g;
	const ast_file *f;
	arena *tmp;
	int64_t steps;
	int depth;          /* evaluation's, FE_MAX_EVAL_DEPTH at most */
	uintptr_t stack;    /* the stack where expansion began, and how much of */
	size_t stack_left;  /* it evaluation may use below that */
	size_t graph_bytes; /* the graph's arena when expansion began */
	strmap blocks;      /* name to index in block_list */
	const ast_block **block_list;
	const char **block_names; /* in the graph's arena: diagnostics outlive the AST */
} expander;

static const char *kind_name(vkind k)
{
	static const char *const names[] = {"an integer", "a float", "a boolean", "a string",
	                                    "a tensor"};
	return names[k];
}

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

static binding *lookup(scope *sc, const char *name)
{
	int i = strmap_get(&sc->var_index, name);
	return i < 0 ? NULL : &sc->vars[i];
}

static void bind(expander *ex, scope *sc, const char *name, value v)
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

static void step(expander *ex, const diag_loc *loc)
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
static void enter(expander *ex, const diag_loc *loc)
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

static void leave(expander *ex)
{
	ex->depth--;
}

static diag_loc at(const scope *sc, diag_loc loc)
{
	loc.chain = sc->chain;
	return loc;
}

static const ast_block *find_block(const expander *ex, const char *name)
{
	int i = strmap_get(&ex->blocks, name);
	return i < 0 ? NULL : ex->block_list[i];
}

/* The name of a call inside a scope: explicit, or the callee's name and how
 * many times this scope called it before (conv0, conv1, ...). */
static const char *call_path(expander *ex, scope *sc, const char *callee, const char *explicit)
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

static value eval(expander *ex, scope *sc, const ast_expr *e);
static int eval_call(expander *ex, scope *sc, const ast_expr *e, value *outs);
static void exec(expander *ex, scope *sc, const ast_stmt *s);

static value int_value(int64_t i)
{
	return (value){.kind = V_INT, .i = i};
}

static value bool_value(bool b)
{
	return (value){.kind = V_BOOL, .b = b};
}

static value float_value(double f)
{
	return (value){.kind = V_FLOAT, .f = f};
}

static value tensor_value(int node)
{
	return (value){.kind = V_TENSOR, .node = node};
}

static const ir_node *tensor_of(expander *ex, value v)
{
	return &ex->g->nodes[v.node];
}

static int64_t want_int(const ast_expr *e, value v, const scope *sc, const char *what)
{
	if (v.kind != V_INT) {
		diag_loc l = at(sc, e->loc);
		diag_error_at(&l, "%s must be an integer, got %s", what, kind_name(v.kind));
	}
	return v.i;
}

static bool want_bool(const ast_expr *e, value v, const scope *sc, const char *what)
{
	if (v.kind != V_BOOL) {
		diag_loc l = at(sc, e->loc);
		diag_error_at(&l, "%s must be a boolean, got %s", what, kind_name(v.kind));
	}
	return v.b;
}

static value eval_name(expander *ex, scope *sc, const ast_expr *e)
{
	binding *b = lookup(sc, e->name);
	if (b)
		return b->v;
	const char *cands[256];
	int n = 0;
	for (int i = 0; i < sc->n_vars && n < 256; i++)
		cands[n++] = sc->vars[i].name;
	const char *hint = diag_suggest(e->name, cands, n);
	diag_loc l = at(sc, e->loc);
	if (hint)
		diag_error_at(&l, "unknown name '%s'; did you mean '%s'?", e->name, hint);
	if (find_block(ex, e->name) || ir_op_lookup(e->name) >= 0)
		diag_error_at(&l, "'%s' is called with arguments: %s(...)", e->name, e->name);
	diag_error_at(&l, "unknown name '%s'", e->name);
}

static value eval_member(expander *ex, scope *sc, const ast_expr *e)
{
	value v = eval(ex, sc, e->lhs);
	diag_loc l = at(sc, e->loc);
	if (v.kind != V_TENSOR)
		diag_error_at(&l, "'.%s' needs a tensor, got %s", e->name, kind_name(v.kind));
	static const char *const fields[] = {"n", "c", "h", "w"};
	const ir_shape *s = &tensor_of(ex, v)->shape;
	for (int i = 0; i < 4; i++) {
		if (strcmp(e->name, fields[i]) != 0)
			continue;
		if (i >= s->rank) {
			char b[96];
			diag_error_at(&l, "'.%s' needs a tensor of rank %d or more; this one is %s",
			              e->name, i + 1, ir_shape_str(s, b, sizeof b));
		}
		return int_value(s->d[i]);
	}
	const char *hint = diag_suggest(e->name, fields, 4);
	if (hint)
		diag_error_at(&l, "tensors have no field '.%s'; did you mean '.%s'?", e->name,
		              hint);
	diag_error_at(&l, "tensors have no field '.%s' (they have .n, .c, .h and .w)", e->name);
}

static value eval_unary(expander *ex, scope *sc, const ast_expr *e)
{
	value v = eval(ex, sc, e->lhs);
	diag_loc l = at(sc, e->loc);
	if (e->name[0] == '!')
		return bool_value(!want_bool(e->lhs, v, sc, "the operand of '!'"));
	if (v.kind == V_FLOAT)
		return float_value(-v.f);
	int64_t i = want_int(e->lhs, v, sc, "the operand of '-'");
	if (i == INT64_MIN)
		diag_error_at(&l, "integer overflow");
	return int_value(-i);
}

static int64_t int_arith(const diag_loc *l, const char *op, int64_t a, int64_t b)
{
	int64_t r = 0;
	bool overflow = false;
	switch (op[0]) {
	case '+':
		overflow = __builtin_add_overflow(a, b, &r);
		break;
	case '-':
		overflow = __builtin_sub_overflow(a, b, &r);
		break;
	case '*':
		overflow = __builtin_mul_overflow(a, b, &r);
		break;
	case '/':
	case '%':
		if (b == 0)
			diag_error_at(l, "division by zero");
		if (a == INT64_MIN && b == -1)
			overflow = true;
		else
			r = op[0] == '/' ? a / b : a % b;
		break;
	}
	if (overflow)
		diag_error_at(l, "integer overflow in '%s'", op);
	return r;
}

static value compare(const diag_loc *l, const char *op, value a, value b)
{
	int c;
	if (a.kind == V_BOOL && b.kind == V_BOOL && (op[0] == '=' || op[0] == '!')) {
		c = (int)a.b - (int)b.b;
	} else if (a.kind == V_STRING && b.kind == V_STRING && (op[0] == '=' || op[0] == '!')) {
		c = strcmp(a.s, b.s);
	} else if ((a.kind == V_INT || a.kind == V_FLOAT) &&
	           (b.kind == V_INT || b.kind == V_FLOAT)) {
		if (a.kind == V_INT && b.kind == V_INT) {
			c = (a.i > b.i) - (a.i < b.i);
		} else {
			double x = a.kind == V_INT ? (double)a.i : a.f;
			double y = b.kind == V_INT ? (double)b.i : b.f;
			c = (x > y) - (x < y);
		}
	} else {
		diag_error_at(l, "cannot compare %s with %s", kind_name(a.kind), kind_name(b.kind));
	}
	if (!strcmp(op, "=="))
		return bool_value(c == 0);
	if (!strcmp(op, "!="))
		return bool_value(c != 0);
	if (!strcmp(op, "<"))
		return bool_value(c < 0);
	if (!strcmp(op, "<="))
		return bool_value(c <= 0);
	if (!strcmp(op, ">"))
		return bool_value(c > 0);
	return bool_value(c >= 0);
}

/* a + b on tensors is the add operator, named like a call to add(). */
static value tensor_add(expander *ex, scope *sc, const ast_expr *e, value a, value b)
{
	diag_loc l = at(sc, e->loc);
	ir_node proto = ir_node_proto(IR_OP_ADD, &l);
	int args[2] = {a.node, b.node};
	return tensor_value(ir_op_build(ex->g, &proto, args, call_path(ex, sc, "add", NULL)));
}

static value eval_binary(expander *ex, scope *sc, const ast_expr *e)
{
	const char *op = e->name;
	diag_loc l = at(sc, e->loc);
	if (!strcmp(op, "&&") || !strcmp(op, "||")) {
		bool a = want_bool(e->lhs, eval(ex, sc, e->lhs), sc,
		                   "the left side of a logic operator");
		if (a == (op[0] == '|'))
			return bool_value(a);
		return bool_value(want_bool(e->rhs, eval(ex, sc, e->rhs), sc,
		                            "the right side of a logic operator"));
	}
	value a = eval(ex, sc, e->lhs), b = eval(ex, sc, e->rhs);
	if (strchr("=!<>", op[0]))
		return compare(&l, op, a, b);
	if (a.kind == V_TENSOR || b.kind == V_TENSOR) {
		if (op[0] == '+' && a.kind == V_TENSOR && b.kind == V_TENSOR)
			return tensor_add(ex, sc, e, a, b);
		diag_error_at(&l, "'%s' cannot combine %s with %s%s", op, kind_name(a.kind),
		              kind_name(b.kind), op[0] == '+' ? "" : " (tensors only support '+')");
	}
	if (a.kind == V_INT && b.kind == V_INT)
		return int_value(int_arith(&l, op, a.i, b.i));
	if ((a.kind == V_INT || a.kind == V_FLOAT) && (b.kind == V_INT || b.kind == V_FLOAT)) {
		double x = a.kind == V_INT ? (double)a.i : a.f;
		double y = b.kind == V_INT ? (double)b.i : b.f;
		switch (op[0]) {
		case '+':
			return float_value(x + y);
		case '-':
			return float_value(x - y);
		case '*':
			return float_value(x * y);
		case '/':
			if (y == 0)
				diag_error_at(&l, "division by zero");
			return float_value(x / y);
		default:
			diag_error_at(&l, "'%%' needs integers");
		}
	}
	diag_error_at(&l, "'%s' cannot combine %s with %s", op, kind_name(a.kind),
	              kind_name(b.kind));
}

static value eval_expr(expander *ex, scope *sc, const ast_expr *e);

static value eval(expander *ex, scope *sc, const ast_expr *e)
{
	diag_loc l = at(sc, e->loc);
	enter(ex, &l);
	value v = eval_expr(ex, sc, e);
	leave(ex);
	return v;
}

static value eval_expr(expander *ex, scope *sc, const ast_expr *e)
{
	switch (e->kind) {
	case EX_INT:
		return int_value(e->ival);
	case EX_FLOAT:
		return float_value(e->fval);
	case EX_BOOL:
		return bool_value(e->bval);
	case EX_STRING:
		return (value){.kind = V_STRING, .s = e->str};
	case EX_NAME:
		return eval_name(ex, sc, e);
	case EX_MEMBER:
		return eval_member(ex, sc, e);
	case EX_UNARY:
		return eval_unary(ex, sc, e);
	case EX_BINARY:
		return eval_binary(ex, sc, e);
	case EX_CALL: {
		value outs[IR_MAX_IO];
		int n = eval_call(ex, sc, e, outs);
		if (n != 1) {
			diag_loc l = at(sc, e->loc);
			diag_error_at(&l, "'%s' returns %d values; assign them with a, b = %s(...)",
			              e->name, n, e->name);
		}
		return outs[0];
	}
	}
	diag_fatal("internal: unknown expression kind %d", (int)e->kind);
}

/* ---- calls ---------------------------------------------------------------- */

static const char *explicit_name(expander *ex, scope *sc, const ast_arg *arg)
{
	value v = eval(ex, sc, arg->value);
	diag_loc l = at(sc, arg->value->loc);
	if (v.kind != V_STRING)
		diag_error_at(&l, "name must be a string, got %s", kind_name(v.kind));
	if (!*v.s || strchr(v.s, '.') || strpbrk(v.s, " \t\""))
		diag_error_at(&l, "name \"%s\" must be non-empty, without dots or spaces", v.s);
	return v.s;
}

static _Noreturn void unknown_keyword(const diag_loc *l, const char *callee, const char *key,
                                      const char *const *names, int n)
{
	const char *hint = diag_suggest(key, names, n);
	if (hint)
		diag_error_at(l, "'%s' has no argument '%s'; did you mean '%s'?", callee, key,
		              hint);
	diag_error_at(l, "'%s' has no argument '%s'", callee, key);
}

static void set_attr(ir_node *n, const ir_attr_info *a, value v, const diag_loc *l, const char *op,
                     const char *key)
{
	char *base = (char *)n + a->offset;
	if (a->type == IR_ATTR_INT && v.kind == V_INT) {
		*(int64_t *)base = v.i;
	} else if (a->type == IR_ATTR_BOOL && v.kind == V_BOOL) {
		*(bool *)base = v.b;
	} else if (a->type == IR_ATTR_FLOAT && (v.kind == V_FLOAT || v.kind == V_INT)) {
		*(double *)base = v.kind == V_INT ? (double)v.i : v.f;
	} else {
		static const char *const tn[] = {"an integer", "a boolean", "a number"};
		diag_error_at(l, "%s: '%s' must be %s, got %s", op, key, tn[a->type],
		              kind_name(v.kind));
	}
}

static value call_op(expander *ex, scope *sc, const ast_expr *e, ir_op op)
{
	const ir_op_info *info = &ir_ops[op];
	diag_loc l = at(sc, e->loc);
	ir_node proto = ir_node_proto(op, &l);
	ir_attr_spec specs[IR_MAX_ATTRS];
	int ns = ir_op_attr_specs(op, specs, IR_MAX_ATTRS);
	char keys[IR_MAX_ATTRS][32];
	const char *names[IR_MAX_ATTRS + 1];
	for (int i = 0; i < ns; i++) {
		snprintf(keys[i], sizeof keys[i], "%.*s", specs[i].key_len, specs[i].key);
		names[i] = keys[i];
	}
	names[ns] = "name";

	int args[IR_MAX_INPUTS];
	bool given[IR_MAX_ATTRS] = {0};
	const char *name = NULL;
	int positional = 0;
	for (int i = 0; i < e->n_args; i++) {
		const ast_arg *arg = &e->args[i];
		diag_loc al = at(sc, arg->key ? arg->loc : arg->value->loc);
		if (arg->key && !strcmp(arg->key, "name")) {
			if (name)
				diag_error_at(&al, "argument 'name' given twice");
			name = explicit_name(ex, sc, arg);
			continue;
		}
		int slot;
		if (!arg->key) {
			if (i != positional)
				diag_error_at(&al, "positional argument after a keyword argument");
			slot = positional++;
			if (slot >= info->args + ns)
				diag_error_at(&al, "%s takes %d tensor%s and %d more argument%s",
				              info->name, info->args, info->args == 1 ? "" : "s",
				              ns, ns == 1 ? "" : "s");
		} else {
			slot = -1;
			for (int k = 0; k < ns; k++)
				if (!strcmp(keys[k], arg->key))
					slot = info->args + k;
			if (slot < 0)
				unknown_keyword(&al, info->name, arg->key, names, ns + 1);
		}
		value v = eval(ex, sc, arg->value);
		if (slot < info->args) {
			if (v.kind != V_TENSOR)
				diag_error_at(&al, "%s: argument %d must be a tensor, got %s",
				              info->name, slot + 1, kind_name(v.kind));
			args[slot] = v.node;
			continue;
		}
		int k = slot - info->args;
		if (given[k])
			diag_error_at(&al, "argument '%s' given twice", keys[k]);
		given[k] = true;
		set_attr(&proto, ir_attr_lookup(keys[k]), v, &al, info->name, keys[k]);
	}
	if (positional < info->args)
		diag_error_at(&l, "%s needs %d tensor argument%s, got %d", info->name, info->args,
		              info->args == 1 ? "" : "s", positional);
	for (int k = 0; k < ns; k++) {
		if (given[k])
			continue;
		if (!specs[k].def)
			diag_error_at(&l, "%s: missing argument '%s'", info->name, keys[k]);
		/* A default that names another attribute copies it. */
		char def[32];
		snprintf(def, sizeof def, "%.*s", specs[k].def_len, specs[k].def);
		const ir_attr_info *src = ir_attr_lookup(def);
		if (src) {
			const ir_attr_info *dst = ir_attr_lookup(keys[k]);
			memcpy((char *)&proto + dst->offset, (char *)&proto + src->offset,
			       sizeof(int64_t));
		}
	}
	step(ex, &l);
	return tensor_value(ir_op_build(ex->g, &proto, args, call_path(ex, sc, info->name, name)));
}

static int call_block(expander *ex, scope *sc, const ast_expr *e, const ast_block *b, value *outs)
{
	diag_loc l = at(sc, e->loc);
	int depth = sc->chain ? sc->chain->depth + 1 : 1;
	if (depth > FE_MAX_CALL_DEPTH)
		diag_error_at(&l, "block calls nest deeper than %d (is '%s' recursive?)",
		              FE_MAX_CALL_DEPTH, b->name);
	step(ex, &l);

	value vals[FE_MAX_ARGS];
	bool given[FE_MAX_ARGS] = {0};
	const char *names[FE_MAX_ARGS + 1];
	for (int i = 0; i < b->n_params; i++)
		names[i] = b->params[i].name;
	names[b->n_params] = "name";
	const char *name = NULL;
	int positional = 0;
	for (int i = 0; i < e->n_args; i++) {
		const ast_arg *arg = &e->args[i];
		diag_loc al = at(sc, arg->key ? arg->loc : arg->value->loc);
		if (arg->key && !strcmp(arg->key, "name")) {
			if (name)
				diag_error_at(&al, "argument 'name' given twice");
			name = explicit_name(ex, sc, arg);
			continue;
		}
		int slot = -1;
		if (!arg->key) {
			if (i != positional)
				diag_error_at(&al, "positional argument after a keyword argument");
			slot = positional++;
			if (slot >= b->n_params)
				diag_error_at(&al, "block '%s' takes %d argument%s", b->name,
				              b->n_params, b->n_params == 1 ? "" : "s");
		} else {
			for (int k = 0; k < b->n_params; k++)
				if (!strcmp(b->params[k].name, arg->key))
					slot = k;
			if (slot < 0)
				unknown_keyword(&al, b->name, arg->key, names, b->n_params + 1);
			if (given[slot])
				diag_error_at(&al, "argument '%s' given twice", arg->key);
		}
		given[slot] = true;
		vals[slot] = eval(ex, sc, arg->value);
	}

	diag_chain *chain = arena_alloc(&ex->g->arena, sizeof *chain);
	const char *gname = ex->block_names[strmap_get(&ex->blocks, b->name)];
	*chain = (diag_chain){.call = l, .block = gname, .depth = depth};
	scope inner = {.path = call_path(ex, sc, b->name, name), .chain = chain};
	/* Defaults are evaluated inside the block, so they can use earlier parameters. */
	for (int k = 0; k < b->n_params; k++) {
		if (!given[k]) {
			if (!b->params[k].def)
				diag_error_at(&l, "block '%s': missing argument '%s'", b->name,
				              b->params[k].name);
			vals[k] = eval(ex, &inner, b->params[k].def);
		}
		bind(ex, &inner, b->params[k].name, vals[k]);
	}
	exec(ex, &inner, b->body);
	for (int k = 0; k < b->n_outs; k++) {
		binding *out = lookup(&inner, b->outs[k]);
		if (!out) {
			diag_loc ol = at(&inner, b->out_locs[k]);
			diag_error_at(&ol, "block '%s' never assigns its output '%s'", b->name,
			              b->outs[k]);
		}
		outs[k] = out->v;
	}
	return b->n_outs;
}

static int eval_call(expander *ex, scope *sc, const ast_expr *e, value *outs)
{
	const ast_block *b = find_block(ex, e->name);
	if (b)
		return call_block(ex, sc, e, b, outs);
	int op = ir_op_lookup(e->name);
	if (op >= 0 && (ir_ops[op].flags & OPF_USER)) {
		outs[0] = call_op(ex, sc, e, (ir_op)op);
		return 1;
	}
	const char *cands[IR_OP_COUNT + 256];
	int n = 0;
	for (int i = 0; i < IR_OP_COUNT; i++)
		if (ir_ops[i].flags & OPF_USER)
			cands[n++] = ir_ops[i].name;
	for (const ast_block *bb = ex->f->blocks; bb && n < IR_OP_COUNT + 256; bb = bb->next)
		cands[n++] = bb->name;
	const char *hint = diag_suggest(e->name, cands, n);
	diag_loc l = at(sc, e->loc);
	if (hint)
		diag_error_at(&l, "unknown operator or block '%s'; did you mean '%s'?", e->name,
		              hint);
	if (lookup(sc, e->name))
		diag_error_at(&l, "'%s' is a value, not an operator or block", e->name);
	diag_error_at(&l, "unknown operator or block '%s'", e->name);
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
		n = eval_call(ex, sc, s->expr, vals);
		if (n != s->n_targets) {
			diag_loc l = at(sc, s->expr->loc);
			diag_error_at(&l, "'%s' returns %d value%s, not %d", s->expr->name, n,
			              n == 1 ? "" : "s", s->n_targets);
		}
	} else {
		vals[0] = eval(ex, sc, s->expr);
	}
	for (int i = 0; i < s->n_targets; i++)
		bind(ex, sc, s->targets[i], vals[i]);
}

static void exec_list(expander *ex, scope *sc, const ast_stmt *s);

/* A statement list is a level of evaluation (a body inside an if, a
 * repeat or a block), so nested bodies count towards FE_MAX_EVAL_DEPTH. */
static void exec(expander *ex, scope *sc, const ast_stmt *s)
{
	if (!s)
		return;
	diag_loc l = at(sc, s->loc);
	enter(ex, &l);
	exec_list(ex, sc, s);
	leave(ex);
}

static void exec_list(expander *ex, scope *sc, const ast_stmt *s)
{
	for (; s; s = s->next) {
		diag_loc l = at(sc, s->loc);
		step(ex, &l);
		switch (s->kind) {
		case ST_ASSIGN:
			exec_assign(ex, sc, s);
			break;
		case ST_IF: {
			value c = eval(ex, sc, s->expr);
			if (want_bool(s->expr, c, sc, "an if condition"))
				exec(ex, sc, s->body);
			else
				exec(ex, sc, s->else_body);
			break;
		}
		case ST_REPEAT: {
			int64_t n = want_int(s->expr, eval(ex, sc, s->expr), sc, "a repeat count");
			if (n < 0 || n > FE_MAX_REPEAT) {
				diag_loc el = at(sc, s->expr->loc);
				diag_error_at(&el, "repeat count %lld is outside [0, %d]",
				              (long long)n, FE_MAX_REPEAT);
			}
			/* each pass is a step, body or not: an empty body
			 * nested in another would spin uncounted (the fuzzer's
			 * repeat 100000 { repeat 100000 { } }) */
			for (int64_t i = 0; i < n; i++) {
				step(ex, &l);
				if (s->index)
					bind(ex, sc, s->index, int_value(i));
				exec(ex, sc, s->body);
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
		bind(&ex, &top, t->name,
		     tensor_value(ir_input_add(g, t->name, decl_shape(g, t), &t->loc)));
	}
	exec(&ex, &top, f->graph);
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
