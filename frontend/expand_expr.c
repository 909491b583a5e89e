/* The expander's expressions: names, tensor fields, arithmetic on
 * integers and floats (checked for overflow), comparisons and logic, and
 * a + b on tensors as the add operator. Apart from the statements and
 * calls because this is the part of the language that computes values at
 * compile time; a call inside an expression goes to expand_call.c. */
#include <stdint.h>
#include <string.h>

#include "expand_impl.h"

static const ir_node *tensor_of(expander *ex, value v)
{
	return &ex->g->nodes[v.node];
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
	value v = expand_eval(ex, sc, e->lhs);
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
	value v = expand_eval(ex, sc, e->lhs);
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
	return tensor_value(
	    ir_op_build(ex->g, &proto, args, expand_call_path(ex, sc, "add", NULL)));
}

static value eval_binary(expander *ex, scope *sc, const ast_expr *e)
{
	const char *op = e->name;
	diag_loc l = at(sc, e->loc);
	if (!strcmp(op, "&&") || !strcmp(op, "||")) {
		bool a = want_bool(e->lhs, expand_eval(ex, sc, e->lhs), sc,
		                   "the left side of a logic operator");
		if (a == (op[0] == '|'))
			return bool_value(a);
		return bool_value(want_bool(e->rhs, expand_eval(ex, sc, e->rhs), sc,
		                            "the right side of a logic operator"));
	}
	value a = expand_eval(ex, sc, e->lhs), b = expand_eval(ex, sc, e->rhs);
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

value expand_eval(expander *ex, scope *sc, const ast_expr *e)
{
	diag_loc l = at(sc, e->loc);
	expand_enter(ex, &l);
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
		int n = expand_eval_call(ex, sc, e, outs);
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
