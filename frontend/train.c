/* The train section: settings with constant values, checked by name. */
#include <string.h>

#include "ast.h"

static const char *const settings[] = {"loss",  "optimizer", "schedule", "warmup",
                                       "batch", "epochs",    "init"};
enum { N_SETTINGS = sizeof settings / sizeof *settings };

static double number(const ast_expr *e, const char *what)
{
	double sign = 1;
	while (e->kind == EX_UNARY && e->name[0] == '-') {
		sign = -sign;
		e = e->lhs;
	}
	if (e->kind == EX_INT)
		return sign * (double)e->ival;
	if (e->kind == EX_FLOAT)
		return sign * e->fval;
	diag_error_at(&e->loc, "%s must be a number", what);
}

static int64_t integer(const ast_expr *e, const char *what, int64_t lo, int64_t hi)
{
	if (e->kind != EX_INT)
		diag_error_at(&e->loc, "%s must be an integer", what);
	if (e->ival < lo || e->ival > hi)
		diag_error_at(&e->loc, "%s = %lld is outside [%lld, %lld]", what,
		              (long long)e->ival, (long long)lo, (long long)hi);
	return e->ival;
}

static const char *symbol(const ast_expr *e, const char *what, const char *const *allowed, int n)
{
	if (e->kind != EX_NAME && e->kind != EX_CALL)
		diag_error_at(&e->loc, "%s must be one of the names listed in docs/language.md",
		              what);
	for (int i = 0; i < n; i++)
		if (!strcmp(e->name, allowed[i]))
			return allowed[i];
	const char *hint = diag_suggest(e->name, allowed, n);
	if (hint)
		diag_error_at(&e->loc, "unknown %s '%s'; did you mean '%s'?", what, e->name, hint);
	diag_error_at(&e->loc, "unknown %s '%s'", what, e->name);
}

/* Keyword arguments of a call like sgd(lr = 0.1, momentum = 0.9). */
static const ast_arg *kwarg(const ast_expr *call, const char *const *keys, int nkeys, int want)
{
	const ast_arg *found = NULL;
	for (int i = 0; i < call->n_args; i++) {
		const ast_arg *a = &call->args[i];
		const char *key = a->key ? a->key : (i < nkeys ? keys[i] : NULL);
		if (!key)
			diag_error_at(&a->value->loc, "%s takes at most %d arguments", call->name,
			              nkeys);
		int k = -1;
		for (int j = 0; j < nkeys; j++)
			if (!strcmp(key, keys[j]))
				k = j;
		if (k < 0) {
			const char *hint = diag_suggest(key, keys, nkeys);
			if (hint)
				diag_error_at(&a->loc,
				              "'%s' has no argument '%s'; did you mean '%s'?",
				              call->name, key, hint);
			diag_error_at(&a->loc, "'%s' has no argument '%s'", call->name, key);
		}
		if (k == want) {
			if (found)
				diag_error_at(&a->loc, "argument '%s' given twice", key);
			found = a;
		}
	}
	return found;
}

static void optimizer(ir_train *t, const ast_expr *e)
{
	static const char *const opts[] = {"sgd"};
	symbol(e, "optimizer", opts, 1);
	if (e->kind != EX_CALL)
		return;
	static const char *const keys[] = {"lr", "momentum", "weight_decay"};
	double *dst[] = {&t->lr, &t->momentum, &t->weight_decay};
	for (int k = 0; k < 3; k++) {
		const ast_arg *a = kwarg(e, keys, 3, k);
		if (!a)
			continue;
		*dst[k] = number(a->value, keys[k]);
		if (*dst[k] < 0 || (k == 0 && *dst[k] <= 0) || (k == 1 && *dst[k] >= 1))
			diag_error_at(&a->value->loc, "%s = %g is out of range", keys[k], *dst[k]);
	}
}

static void schedule(ir_train *t, const ast_expr *e)
{
	static const char *const kinds[] = {"none", "steps", "plateau"};
	const char *k = symbol(e, "schedule", kinds, 3);
	t->sched = !strcmp(k, "none")    ? IR_SCHED_NONE
	           : !strcmp(k, "steps") ? IR_SCHED_STEPS
	                                 : IR_SCHED_PLATEAU;
	if (e->kind != EX_CALL)
		return;
	t->n_steps = 0;
	for (int i = 0; i < e->n_args; i++) {
		const ast_arg *a = &e->args[i];
		if (!a->key && t->sched == IR_SCHED_STEPS) {
			if (t->n_steps == IR_MAX_STEPS)
				diag_error_at(&a->value->loc, "at most %d steps", IR_MAX_STEPS);
			int64_t ep = integer(a->value, "a step epoch", 1, 1000000);
			if (t->n_steps && ep <= t->steps[t->n_steps - 1])
				diag_error_at(&a->value->loc, "step epochs must increase");
			t->steps[t->n_steps++] = ep;
			continue;
		}
		const char *key = a->key ? a->key : "";
		if (!strcmp(key, "factor")) {
			t->factor = number(a->value, "factor");
			if (!(t->factor > 0 && t->factor < 1))
				diag_error_at(&a->value->loc, "factor must be in (0, 1)");
		} else if (!strcmp(key, "patience") && t->sched == IR_SCHED_PLATEAU) {
			t->patience = integer(a->value, "patience", 1, 1000000);
		} else {
			diag_error_at(&a->loc, "%s(...) takes %s", k,
			              t->sched == IR_SCHED_STEPS
			                  ? "epochs and factor = ..."
			                  : "factor = ... and patience = ...");
		}
	}
}

void expand_train(ir_graph *g, const ast_file *f)
{
	ir_train *t = &g->train;
	t->present = f->has_train;
	bool seen[N_SETTINGS] = {0};
	for (const ast_setting *s = f->train; s; s = s->next) {
		int k = -1;
		for (int i = 0; i < N_SETTINGS; i++)
			if (!strcmp(s->key, settings[i]))
				k = i;
		if (k < 0) {
			const char *hint = diag_suggest(s->key, settings, N_SETTINGS);
			if (hint)
				diag_error_at(&s->loc,
				              "unknown training setting '%s'; did you mean '%s'?",
				              s->key, hint);
			diag_error_at(&s->loc, "unknown training setting '%s'", s->key);
		}
		if (seen[k])
			diag_error_at(&s->loc, "'%s' is set twice", s->key);
		seen[k] = true;
		const ast_expr *v = s->value;
		static const char *const losses[] = {"softmax_cross_entropy"};
		static const char *const inits[] = {"he"};
		switch (k) {
		case 0:
			t->loss = symbol(v, "loss", losses, 1);
			break;
		case 1:
			optimizer(t, v);
			break;
		case 2:
			schedule(t, v);
			break;
		case 3:
			t->warmup = integer(v, "warmup", 0, 1000);
			break;
		case 4:
			t->batch = integer(v, "batch", 1, 65536);
			break;
		case 5:
			t->epochs = integer(v, "epochs", 1, 100000);
			break;
		case 6:
			t->init = symbol(v, "init", inits, 1);
			break;
		}
	}
}
