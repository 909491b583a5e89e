/* expand_impl.h: what the expander's files share: the values and scopes
 * evaluation works on, the small helpers every part uses (static inline),
 * and each part's entry points. Evaluation recurses through all three
 * files: an expression (expand_expr.c) may call a block (expand_call.c),
 * whose body is statements (expand.c), which evaluate expressions. */
#ifndef NETCC_FRONTEND_EXPAND_IMPL_H
#define NETCC_FRONTEND_EXPAND_IMPL_H

#include <stdint.h>
#include <string.h>

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

static inline const char *kind_name(vkind k)
{
	static const char *const names[] = {"an integer", "a float", "a boolean", "a string",
	                                    "a tensor"};
	return names[k];
}

static inline binding *lookup(scope *sc, const char *name)
{
	int i = strmap_get(&sc->var_index, name);
	return i < 0 ? NULL : &sc->vars[i];
}

static inline void leave(expander *ex)
{
	ex->depth--;
}

static inline diag_loc at(const scope *sc, diag_loc loc)
{
	loc.chain = sc->chain;
	return loc;
}

static inline const ast_block *find_block(const expander *ex, const char *name)
{
	int i = strmap_get(&ex->blocks, name);
	return i < 0 ? NULL : ex->block_list[i];
}

static inline value int_value(int64_t i)
{
	return (value){.kind = V_INT, .i = i};
}

static inline value bool_value(bool b)
{
	return (value){.kind = V_BOOL, .b = b};
}

static inline value float_value(double f)
{
	return (value){.kind = V_FLOAT, .f = f};
}

static inline value tensor_value(int node)
{
	return (value){.kind = V_TENSOR, .node = node};
}

static inline int64_t want_int(const ast_expr *e, value v, const scope *sc, const char *what)
{
	if (v.kind != V_INT) {
		diag_loc l = at(sc, e->loc);
		diag_error_at(&l, "%s must be an integer, got %s", what, kind_name(v.kind));
	}
	return v.i;
}

static inline bool want_bool(const ast_expr *e, value v, const scope *sc, const char *what)
{
	if (v.kind != V_BOOL) {
		diag_loc l = at(sc, e->loc);
		diag_error_at(&l, "%s must be a boolean, got %s", what, kind_name(v.kind));
	}
	return v.b;
}

/* expand.c: scopes, the limits on evaluation, and statements */
void expand_bind(expander *ex, scope *sc, const char *name, value v);
void expand_step(expander *ex, const diag_loc *loc);
void expand_enter(expander *ex, const diag_loc *loc);
const char *expand_call_path(expander *ex, scope *sc, const char *callee, const char *explicit);
void expand_exec(expander *ex, scope *sc, const ast_stmt *s);

/* expand_expr.c: an expression's value */
value expand_eval(expander *ex, scope *sc, const ast_expr *e);

/* expand_call.c: a call of a block or an operator; its values in outs, their count returned */
int expand_eval_call(expander *ex, scope *sc, const ast_expr *e, value *outs);

#endif
