/* The expander's calls: an operator call becomes a node, its arguments
 * checked against the operator's attributes, and a block call expands
 * the block's body in a scope of its own, named after the call path.
 * Apart from expressions and statements because calls are where the
 * model's graph and its names are made. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "expand_impl.h"

/* ---- calls ---------------------------------------------------------------- */

static const char *explicit_name(expander *ex, scope *sc, const ast_arg *arg)
{
	value v = expand_eval(ex, sc, arg->value);
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
		value v = expand_eval(ex, sc, arg->value);
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
	expand_step(ex, &l);
	return tensor_value(
	    ir_op_build(ex->g, &proto, args, expand_call_path(ex, sc, info->name, name)));
}

static int call_block(expander *ex, scope *sc, const ast_expr *e, const ast_block *b, value *outs)
{
	diag_loc l = at(sc, e->loc);
	int depth = sc->chain ? sc->chain->depth + 1 : 1;
	if (depth > FE_MAX_CALL_DEPTH)
		diag_error_at(&l, "block calls nest deeper than %d (is '%s' recursive?)",
		              FE_MAX_CALL_DEPTH, b->name);
	expand_step(ex, &l);

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
		vals[slot] = expand_eval(ex, sc, arg->value);
	}

	diag_chain *chain = arena_alloc(&ex->g->arena, sizeof *chain);
	const char *gname = ex->block_names[strmap_get(&ex->blocks, b->name)];
	*chain = (diag_chain){.call = l, .block = gname, .depth = depth};
	scope inner = {.path = expand_call_path(ex, sc, b->name, name), .chain = chain};
	/* Defaults are evaluated inside the block, so they can use earlier parameters. */
	for (int k = 0; k < b->n_params; k++) {
		if (!given[k]) {
			if (!b->params[k].def)
				diag_error_at(&l, "block '%s': missing argument '%s'", b->name,
				              b->params[k].name);
			vals[k] = expand_eval(ex, &inner, b->params[k].def);
		}
		expand_bind(ex, &inner, b->params[k].name, vals[k]);
	}
	expand_exec(ex, &inner, b->body);
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

int expand_eval_call(expander *ex, scope *sc, const ast_expr *e, value *outs)
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
