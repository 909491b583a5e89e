/* ast.h: tokens and syntax trees shared by the lexer, parser and expander
 * (internal to frontend/; the public interface is frontend.h). Everything
 * here lives in one arena that is freed once the graph is built. */
#ifndef NETCC_AST_H
#define NETCC_AST_H

#include "ir.h"

/* Limits that keep hostile model files from exhausting the compiler; the
 * numbers are documented in docs/language.md. The fuzz build lowers the
 * evaluation limit (Makefile): under sanitizers ten million steps take
 * half a minute, past libFuzzer's timeout, through the same code path. */
#ifndef FE_STEP_LIMIT
#define FE_STEP_LIMIT 10000000
#endif
enum {
	FE_MAX_SOURCE = 16 << 20,     /* bytes in a model file */
	FE_MAX_NESTING = 200,         /* nested expressions and statements */
	FE_MAX_CALL_DEPTH = 64,       /* nested block calls */
	FE_MAX_REPEAT = 100000,       /* one repeat's count */
	FE_MAX_STEPS = FE_STEP_LIMIT, /* statements and calls evaluated in all */
	FE_MAX_ARGS = 64,             /* arguments of one call, parameters of one block */
	/* expressions, statements and block calls being evaluated at once:
	 * evaluation recurses (a chain a + b + ... parsed in a loop is a deep
	 * tree), a few KB of stack a level */
	FE_MAX_EVAL_DEPTH = 256,
	/* bytes the front end may allocate for one file (tokens, syntax,
	 * scopes, the graph): peak memory stays well under 512 MB */
	FE_MAX_BYTES = 256 << 20,
};

typedef enum tok_kind {
	TK_IDENT,
	TK_INT,
	TK_FLOAT,
	TK_STRING,
	TK_PUNCT,
	TK_EOF,
} tok_kind;

typedef struct token token;
struct token {
	tok_kind kind;
	token *next;
	const char *text; /* into the source; len bytes */
	int len;
	int64_t ival;
	double fval;
	const char *str; /* TK_STRING: contents, NUL-terminated */
	diag_loc loc;
};

token *lex_source(arena *a, const diag_src *src);
bool tok_is(const token *t, const char *s); /* punctuator or identifier spelled s */

typedef enum ex_kind {
	EX_INT,
	EX_FLOAT,
	EX_BOOL,
	EX_STRING,
	EX_NAME,
	EX_CALL,
	EX_BINARY,
	EX_UNARY,
	EX_MEMBER,
} ex_kind;

typedef struct ast_expr ast_expr;

typedef struct ast_arg {
	const char *key; /* NULL: positional */
	diag_loc loc;
	ast_expr *value;
} ast_arg;

struct ast_expr {
	ex_kind kind;
	diag_loc loc;
	const char *name; /* NAME, CALL: identifier; BINARY, UNARY: operator; MEMBER: field */
	int64_t ival;
	double fval;
	bool bval;
	const char *str;
	ast_expr *lhs, *rhs; /* MEMBER and UNARY use lhs */
	ast_arg *args;
	int n_args;
};

typedef enum st_kind { ST_ASSIGN, ST_IF, ST_REPEAT } st_kind;

typedef struct ast_stmt ast_stmt;
struct ast_stmt {
	st_kind kind;
	diag_loc loc;
	const char **targets; /* ASSIGN */
	diag_loc *target_locs;
	int n_targets;
	ast_expr *expr; /* ASSIGN: value; IF: condition; REPEAT: count */
	ast_stmt *body, *else_body;
	const char *index; /* REPEAT ... as i */
	diag_loc index_loc;
	ast_stmt *next;
};

typedef struct ast_param {
	const char *name;
	diag_loc loc;
	ast_expr *def; /* NULL: required */
} ast_param;

typedef struct ast_block ast_block;
struct ast_block {
	const char *name;
	diag_loc loc;
	ast_param *params;
	int n_params;
	const char **outs;
	diag_loc *out_locs;
	int n_outs;
	ast_stmt *body;
	ast_block *next;
};

typedef struct ast_tensor {
	const char *name;
	diag_loc loc;
	int rank;
	ast_expr *dims[IR_MAX_RANK]; /* EX_INT, or EX_NAME for the batch */
} ast_tensor;

typedef struct ast_setting {
	const char *key;
	diag_loc loc;
	ast_expr *value;
	struct ast_setting *next;
} ast_setting;

typedef struct ast_file {
	const char *model;
	diag_loc model_loc;
	ast_tensor *inputs, *outputs;
	int n_inputs, n_outputs;
	ast_block *blocks;
	ast_stmt *graph;
	bool has_graph;
	ast_setting *train;
	bool has_train;
	diag_loc eof_loc;
} ast_file;

ast_file *parse_tokens(arena *a, token *tok);

/* Evaluates the file into g: blocks expanded, shapes inferred. */
void expand_file(ir_graph *g, const ast_file *f, arena *tmp);
/* The train section into g->train. */
void expand_train(ir_graph *g, const ast_file *f);

#endif
