/* Epilogue fusion: work that would read and write a whole activation
 * again joins the node that produces it.
 *   relu(conv(x) + r)          one conv that adds r and applies relu (or a
 *                              BatchNorm: a training step's basic block)
 *   relu(conv(x)), relu(linear / add / batchnorm / bn_train)   the relu joins
 *   pad_channels(subsample(x)) one option-A shortcut pass
 *   flatten(global_avgpool(x)) the pooling writes [N, C] directly
 *   relu_grad(y, dy) read only as the dy of BatchNorm's gradients: they
 *                              take y and dy and mask dy themselves
 *   relu_grad(y, a + b)        the relu's gradient adds a and b as it reads
 * A producer absorbs a consumer only when the consumer is its one user.
 * The conv that takes a residual is the later of the add's operands, so the
 * other is already computed where the conv runs; when only the earlier one
 * is a conv (an option-A shortcut is computed after the branch), the
 * shortcut is hoisted to just before that conv if its inputs allow. */
#include <stdlib.h>

#include "passes.h"

typedef struct fuse {
	const ir_node *old;
	int *uses;
	int *into;     /* old id -> old id of the node that absorbs it, or -1 */
	int *residual; /* conv old id -> old id of the residual it adds, or -1 */
	bool *relu;    /* producer old id -> gets a relu */
	int *stride;   /* pad_channels old id -> stride of the subsample it absorbs */
	bool *flat;    /* global_avgpool old id -> absorbs a flatten */
	int *hoist;    /* conv old id -> old id of a node emitted just before it */
	int *emitted;  /* hoisted old id -> its new id */
	int *mask;     /* BatchNorm gradient old id -> old id of the relu_grad it takes in */
	int *sum;      /* relu_grad old id -> old id of the add it reads as dy + residual */
} fuse;

static bool single(const fuse *f, int id)
{
	return f->uses[id] == 1;
}

static bool takes_relu(const ir_node *n)
{
	return n->op == IR_OP_CONV || n->op == IR_OP_LINEAR || n->op == IR_OP_ADD ||
	       n->op == IR_OP_BATCHNORM || n->op == IR_OP_BN_TRAIN;
}

/* The node an old id now stands for, after absorptions. */
static int root(const fuse *f, int id)
{
	while (f->into[id] >= 0)
		id = f->into[id];
	return id;
}

/* Whether node id can add a residual as it stores: a conv (in the GEMM's
 * or Winograd's epilogue) or a BatchNorm (a training step's bn_train: the
 * add of a basic block) */
static bool residual_ok(const fuse *f, int id)
{
	const ir_node *p = &f->old[id];
	bool takes = p->op == IR_OP_CONV || p->op == IR_OP_BN_TRAIN || p->op == IR_OP_BATCHNORM;
	return takes && single(f, id) && !p->residual && f->residual[id] < 0 && !f->relu[id] &&
	       f->into[id] < 0 && f->hoist[id] < 0;
}

/* Whether node id can run before node at: every input it reads (through a
 * subsample it absorbs) comes earlier, and nothing was hoisted for it. */
static bool hoistable(const fuse *f, int id, int at)
{
	const ir_node *n = &f->old[id];
	if (f->hoist[id] >= 0 || f->residual[id] >= 0 || f->into[id] >= 0)
		return false;
	for (int k = 0; k < n->n_in; k++) {
		int src = n->in[k];
		if (f->into[src] == id && f->old[src].op == IR_OP_SUBSAMPLE)
			src = f->old[src].in[0];
		if (src >= at)
			return false;
	}
	return true;
}

static void plan_add(fuse *f, int id)
{
	const ir_node *n = &f->old[id];
	int a = n->in[0], b = n->in[1];
	int later = a > b ? a : b, other = a > b ? b : a;
	if (a == b)
		return;
	if (residual_ok(f, later)) {
		f->residual[later] = other;
		f->into[id] = later;
	} else if (residual_ok(f, other) && hoistable(f, later, other)) {
		f->hoist[other] = later;
		f->residual[other] = later;
		f->into[id] = other;
	}
}

static void plan_relu(fuse *f, int id)
{
	int src = root(f, f->old[id].in[0]);
	const ir_node *p = &f->old[src];
	/* the relu's input must be read only by it (through absorptions) */
	if (!single(f, f->old[id].in[0]) || !takes_relu(p) || p->relu || f->relu[src])
		return;
	f->relu[src] = true;
	f->into[id] = src;
}

/* A relu's gradient whose every reader is a BatchNorm gradient taking it
 * as dy (in[1]) joins them: each reads the relu's result and dy instead,
 * and no pass writes the masked gradient and reads it back (the cbr0
 * blocks of a training step). */
static void plan_relu_grad(fuse *f, int id, int n)
{
	int users = 0, first = -1;
	for (int u = id + 1; u < n; u++) {
		const ir_node *x = &f->old[u];
		for (int k = 0; k < x->n_in; k++) {
			if (x->in[k] != id)
				continue;
			if (k != 1 || x->n_in != ir_ops[x->op].args || f->mask[u] >= 0 ||
			    (x->op != IR_OP_BN_GRAD_PARAMS && x->op != IR_OP_BN_GRAD_INPUT))
				return;
			users++;
			first = first < 0 ? u : first;
		}
	}
	if (users == 0 || users != f->uses[id])
		return;
	for (int u = id + 1; u < n; u++)
		if (f->old[u].n_in > 1 && f->old[u].in[1] == id)
			f->mask[u] = id;
	f->into[id] = first;
}

/* A relu's gradient whose dy is a sum read by nothing else (two paths'
 * gradients meeting at a block's output) adds the two as it reads them:
 * the sum is not written and read back. */
static void plan_grad_sum(fuse *f, int id)
{
	int sum = f->old[id].in[1];
	const ir_node *a = &f->old[sum];
	if (f->into[id] >= 0 || a->op != IR_OP_ADD || !single(f, sum) || f->into[sum] >= 0 ||
	    a->relu || a->residual || f->relu[sum] || f->residual[sum] >= 0)
		return;
	f->into[sum] = id;
	f->sum[id] = sum;
}

static void plan(fuse *f, int n)
{
	for (int id = 0; id < n; id++) {
		const ir_node *x = &f->old[id];
		switch (x->op) {
		case IR_OP_ADD:
			plan_add(f, id);
			break;
		case IR_OP_RELU:
			plan_relu(f, id);
			break;
		case IR_OP_RELU_GRAD:
			plan_relu_grad(f, id, n);
			plan_grad_sum(f, id);
			break;
		case IR_OP_PAD_CHANNELS: {
			int s = x->in[0];
			if (f->old[s].op == IR_OP_SUBSAMPLE && single(f, s) && x->stride <= 1) {
				f->stride[id] = (int)f->old[s].stride;
				f->into[s] = id; /* dropped: pad_channels reads its input */
			}
			break;
		}
		case IR_OP_FLATTEN: {
			int s = x->in[0];
			if (f->old[s].op == IR_OP_GLOBAL_AVGPOOL && single(f, s) &&
			    !f->old[s].flat) {
				f->flat[s] = true;
				f->into[id] = s;
			}
			break;
		}
		default:
			break;
		}
	}
}

static int emit(ir_rewriter *rw, fuse *f, int id)
{
	const ir_node *old = &f->old[id];
	if (f->hoist[id] >= 0)
		f->emitted[f->hoist[id]] = emit(rw, f, f->hoist[id]);
	ir_node n = *old;
	for (int k = 0; k < n.n_in; k++) {
		int src = n.in[k];
		/* a fused subsample: read what it read */
		if (f->into[src] == id && f->old[src].op == IR_OP_SUBSAMPLE)
			src = f->old[src].in[0];
		/* a fused relu gradient: its dy, and its y as one more input */
		if (f->mask[id] == src)
			src = f->old[src].in[1];
		/* relu_grad(y, a + b): a as dy, b as the residual (below) */
		if (f->sum[id] == src)
			src = f->old[src].in[0];
		n.in[k] = ir_rewrite_map(rw, src);
	}
	if (f->mask[id] >= 0)
		n.in[n.n_in++] = ir_rewrite_map(rw, f->old[f->mask[id]].in[0]);
	if (f->sum[id] >= 0) {
		n.residual = n.n_in;
		n.in[n.n_in++] = ir_rewrite_map(rw, f->old[f->sum[id]].in[1]);
	}
	if (f->residual[id] >= 0) {
		int r = f->residual[id];
		n.residual = n.n_in;
		n.in[n.n_in++] = f->emitted[r] >= 0 ? f->emitted[r] : ir_rewrite_map(rw, r);
	}
	n.relu |= f->relu[id];
	n.flat |= f->flat[id];
	if (f->stride[id] > 1)
		n.stride = f->stride[id];
	ir_shape_infer(ir_rewrite_graph(rw), &n);
	return ir_rewrite_emit(rw, &n);
}

static int rewrite(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	fuse *f = ctx;
	if (f->emitted[id] >= 0)
		return f->emitted[id];
	if (f->into[id] >= 0) {
		/* absorbed into a later node: dropped, nothing else reads it */
		if (f->into[id] > id)
			return -1;
		return ir_rewrite_map(rw, f->into[id]);
	}
	return emit(rw, f, id);
}

void fuse_epilogue(ir_graph *g)
{
	size_t n = (size_t)g->n_nodes + 1;
	fuse f = {.old = g->nodes,
	          .uses = ir_use_counts(g),
	          .into = malloc(n * sizeof(int)),
	          .residual = malloc(n * sizeof(int)),
	          .relu = calloc(n, sizeof(bool)),
	          .stride = calloc(n, sizeof(int)),
	          .flat = calloc(n, sizeof(bool)),
	          .hoist = malloc(n * sizeof(int)),
	          .emitted = malloc(n * sizeof(int)),
	          .mask = malloc(n * sizeof(int)),
	          .sum = malloc(n * sizeof(int))};
	if (!f.into || !f.residual || !f.relu || !f.stride || !f.flat || !f.hoist || !f.emitted ||
	    !f.mask || !f.sum)
		diag_fatal("out of memory");
	for (size_t i = 0; i < n; i++)
		f.into[i] = f.residual[i] = f.hoist[i] = f.emitted[i] = f.mask[i] = f.sum[i] = -1;
	plan(&f, g->n_nodes);
	ir_rewrite(g, rewrite, &f);
	free(f.uses);
	free(f.into);
	free(f.residual);
	free(f.relu);
	free(f.stride);
	free(f.flat);
	free(f.hoist);
	free(f.emitted);
	free(f.mask);
	free(f.sum);
}
