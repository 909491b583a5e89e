/* Autodiff: turns an inference graph into one training step, as ordinary
 * IR that the other passes, the planner and the code generator handle like
 * any graph.
 *   forward   BatchNorm uses the batch's statistics (bn_stats, bn_train)
 *             and moves its running statistics (bn_update, PyTorch's rule);
 *   loss      softmax cross-entropy against int32 labels;
 *   backward  each node's gradient rule (listed beside the op in ops.def)
 *             emits the nodes for its inputs' gradients, visiting nodes in
 *             reverse; gradients reaching a value along several paths are
 *             summed with add nodes;
 *   update    SGD with momentum and weight decay per trained parameter,
 *             its momentum buffer a new state parameter, the learning rate
 *             an input, so schedules need no recompile.
 * Inputs become (x, labels, lr), outputs (loss, logits). */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

typedef struct grad {
	int node;     /* the gradient's node, or -1 */
	int64_t goff; /* where a param's gradient starts in it (BatchNorm's [2, C]) */
} grad;

typedef struct ad {
	ir_graph *g;
	grad *grads; /* per forward node */
	bool *needs; /* per forward node: depends on a trained param */
	int n_fwd;
	/* data-parallel: per forward node, its first reader (a param's
	 * gradient is whole once backward has passed it) and a trained
	 * param's allreduce node; the allreduce nodes in the order made */
	int *first_use, *reduced, *reduces, n_reduces;
} ad;

static const ir_node *fwd(const ad *a, int id)
{
	return &a->g->nodes[id];
}

/* A new node with the forward node's location and name, and of the
 * attributes its op declares in ops.def, the forward node's values: an
 * attribute added there reaches the backward with no line here. */
static int node(ad *a, ir_op op, int from, const int *ins, int n_in)
{
	ir_node n = a->g->nodes[from];
	ir_node proto = ir_node_proto(op, &n.loc);
	proto.name = n.name;
	ir_attr_spec spec[IR_MAX_ATTRS];
	int ns = ir_op_attr_specs(op, spec, IR_MAX_ATTRS);
	for (int i = 0; i < ns; i++) {
		const ir_attr_info *at = ir_attr_spec_info(&spec[i]);
		if (!at)
			diag_fatal("internal: %s has an attribute ir_node lacks", ir_ops[op].name);
		size_t size = at->type == IR_ATTR_INT    ? sizeof(int64_t)
		              : at->type == IR_ATTR_BOOL ? sizeof(bool)
		                                         : sizeof(double);
		memcpy((char *)&proto + at->offset, (const char *)&n + at->offset, size);
	}
	proto.n_in = n_in;
	for (int i = 0; i < n_in; i++)
		proto.in[i] = ins[i];
	ir_shape_infer(a->g, &proto);
	return ir_node_append(a->g, &proto);
}

/* Adds a gradient contribution to value id. */
static void acc(ad *a, int id, int g)
{
	if (!a->needs[id])
		return;
	int have = a->grads[id].node;
	if (have < 0) {
		a->grads[id] = (grad){g, 0};
		return;
	}
	if (a->grads[id].goff)
		diag_error_at(&fwd(a, id)->loc,
		              "internal: cannot sum a parameter's gradient slice");
	int ins[2] = {have, g};
	a->grads[id] = (grad){node(a, IR_OP_ADD, id, ins, 2), 0};
}

static void acc_param(ad *a, int id, int g, int64_t goff)
{
	if (a->grads[id].node < 0)
		a->grads[id] = (grad){g, goff};
	else if (goff)
		diag_error_at(&fwd(a, id)->loc,
		              "netcc cannot train a BatchNorm parameter used twice");
	else
		acc(a, id, g);
}

/* ---- gradient rules (ops.def's grad column) -------------------------------- */

static void grad_conv(ad *a, int id, int dy)
{
	ir_node n = *fwd(a, id);
	int x = n.in[0], w = n.in[1];
	if (a->needs[x])
		acc(a, x, node(a, IR_OP_CONV_GRAD_INPUT, id, (int[]){dy, w, x}, 3));
	acc_param(a, w, node(a, IR_OP_CONV_GRAD_WEIGHT, id, (int[]){x, dy}, 2), 0);
	if (n.bias)
		acc_param(a, n.in[2], node(a, IR_OP_BIAS_GRAD, id, &dy, 1), 0);
}

static void grad_bn_train(ad *a, int id, int dy)
{
	ir_node n = *fwd(a, id);
	int x = n.in[0], stats = n.in[1], gamma = n.in[2], beta = n.in[3];
	int dp = node(a, IR_OP_BN_GRAD_PARAMS, id, (int[]){x, dy, stats}, 3);
	acc_param(a, gamma, dp, 0);
	acc_param(a, beta, dp, fwd(a, gamma)->shape.d[0]);
	/* sync BatchNorm: dx needs the sums over the whole batch; the
	 * parameters' own gradients are averaged with the others */
	int dps = a->g->train.sync_ranks > 1 ? node(a, IR_OP_ALLREDUCE, id, &dp, 1) : dp;
	if (a->needs[x])
		acc(a, x, node(a, IR_OP_BN_GRAD_INPUT, id, (int[]){x, dy, stats, gamma, dps}, 5));
}

static void grad_relu(ad *a, int id, int dy)
{
	acc(a, fwd(a, id)->in[0], node(a, IR_OP_RELU_GRAD, id, (int[]){id, dy}, 2));
}

static void grad_add(ad *a, int id, int dy)
{
	ir_node n = *fwd(a, id);
	acc(a, n.in[0], dy);
	acc(a, n.in[1], dy);
}

static void grad_maxpool(ad *a, int id, int dy)
{
	int x = fwd(a, id)->in[0];
	acc(a, x, node(a, IR_OP_MAXPOOL_GRAD, id, (int[]){x, dy}, 2));
}

static void grad_avgpool(ad *a, int id, int dy)
{
	int x = fwd(a, id)->in[0];
	acc(a, x, node(a, IR_OP_AVGPOOL_GRAD, id, (int[]){dy, x}, 2));
}

static void grad_global_avgpool(ad *a, int id, int dy)
{
	int x = fwd(a, id)->in[0];
	acc(a, x, node(a, IR_OP_GLOBAL_AVGPOOL_GRAD, id, (int[]){dy, x}, 2));
}

static void grad_flatten(ad *a, int id, int dy)
{
	int x = fwd(a, id)->in[0];
	acc(a, x, node(a, IR_OP_RESHAPE, id, (int[]){dy, x}, 2));
}

static void grad_linear(ad *a, int id, int dy)
{
	ir_node n = *fwd(a, id);
	int x = n.in[0], w = n.in[1];
	if (a->needs[x])
		acc(a, x, node(a, IR_OP_LINEAR_GRAD_INPUT, id, (int[]){dy, w}, 2));
	acc_param(a, w, node(a, IR_OP_LINEAR_GRAD_WEIGHT, id, (int[]){x, dy}, 2), 0);
	if (n.bias)
		acc_param(a, n.in[2], node(a, IR_OP_BIAS_GRAD, id, &dy, 1), 0);
}

static void grad_softmax(ad *a, int id, int dy)
{
	acc(a, fwd(a, id)->in[0], node(a, IR_OP_SOFTMAX_GRAD, id, (int[]){id, dy}, 2));
}

static void grad_subsample(ad *a, int id, int dy)
{
	int x = fwd(a, id)->in[0];
	acc(a, x, node(a, IR_OP_SUBSAMPLE_GRAD, id, (int[]){dy, x}, 2));
}

static void grad_pad_channels(ad *a, int id, int dy)
{
	acc(a, fwd(a, id)->in[0], node(a, IR_OP_PAD_CHANNELS_GRAD, id, &dy, 1));
}

/* ops.def's UNARY ops: dx = name_grad(y, dy), from the result */
static const ir_op unary_grads[IR_OP_COUNT] = {
#define UNARY(e, name, onnx) [IR_OP_##e] = IR_OP_##e##_GRAD,
#include "ops.def"
};

static void grad_unary(ad *a, int id, int dy)
{
	acc(a, fwd(a, id)->in[0], node(a, unary_grads[fwd(a, id)->op], id, (int[]){id, dy}, 2));
}

typedef void grad_fn(ad *a, int id, int dy);

static grad_fn *const rules[IR_OP_COUNT] = {
#define OP(e, name, args, attrs, flags, grad) [IR_OP_##e] = grad,
#include "ops.def"
};

/* ---- the training step ------------------------------------------------------ */

/* BatchNorm with the batch's statistics, and the running-statistics update. */
static int batch_norm(ir_rewriter *rw, const ir_node *old, int id, void *ctx)
{
	if (old->op != IR_OP_BATCHNORM)
		return ir_rewrite_copy(rw, old);
	const ir_graph *g = ir_rewrite_graph(rw);
	int x = ir_rewrite_map(rw, old->in[0]);
	const ir_shape *xs = &g->nodes[x].shape;

	ir_node st = ir_node_proto(IR_OP_BN_STATS, &old->loc);
	st.name = old->name;
	st.n_in = 1;
	st.in[0] = x;
	ir_shape_infer(g, &st);
	int stats = ir_rewrite_emit(rw, &st);
	int ranks = g->train.sync_ranks;
	if (ranks > 1) {
		ir_node sy = ir_node_proto(IR_OP_BN_STATS_SYNC, &old->loc);
		sy.name = old->name;
		sy.n_in = 1;
		sy.in[0] = stats;
		ir_shape_infer(g, &sy);
		stats = ir_rewrite_emit(rw, &sy);
	}

	ir_node up = ir_node_proto(IR_OP_BN_UPDATE, &old->loc);
	up.name = old->name;
	up.momentum = old->momentum;
	up.out = ir_shape_count(xs) / xs->d[1] * (ranks > 1 ? ranks : 1);
	up.n_in = 3;
	up.in[0] = stats;
	up.in[1] = ir_rewrite_map(rw, old->in[3]);
	up.in[2] = ir_rewrite_map(rw, old->in[4]);
	ir_shape_infer(g, &up);
	ir_rewrite_emit(rw, &up);

	ir_node y = ir_node_proto(IR_OP_BN_TRAIN, &old->loc);
	y.name = old->name;
	y.eps = old->eps;
	y.n_in = 4;
	y.in[0] = x;
	y.in[1] = stats;
	y.in[2] = ir_rewrite_map(rw, old->in[1]);
	y.in[3] = ir_rewrite_map(rw, old->in[2]);
	ir_shape_infer(g, &y);
	return ir_rewrite_emit(rw, &y);
}

static void find_needs(ad *a)
{
	for (int i = 0; i < a->n_fwd; i++) {
		const ir_node *n = fwd(a, i);
		if (n->op == IR_OP_PARAM) {
			a->needs[i] = n->pkind == IR_PARAM_WEIGHT;
			continue;
		}
		if (ir_ops[n->op].flags & OPF_EFFECT)
			continue;
		for (int k = 0; k < n->n_in; k++)
			a->needs[i] |= a->needs[n->in[k]];
	}
}

/* Each trained parameter's gradient passes through an allreduce before
 * its update, made as soon as backward has finished the gradient (the
 * last layer's first), so a data-parallel caller can average it while
 * backward goes on. One node per gradient node: BatchNorm's [2, C] serves
 * two parameters. */
static void reduce_ready(ad *a, int i)
{
	for (int k = 0; k < a->g->nodes[i].n_in; k++) {
		int p = a->g->nodes[i].in[k], gn = a->grads[p].node;
		const ir_node *pn = fwd(a, p);
		if (pn->op != IR_OP_PARAM || pn->pkind != IR_PARAM_WEIGHT || gn < 0 ||
		    a->first_use[p] != i || a->reduced[p] >= 0)
			continue;
		int r = -1;
		for (int j = 0; j < a->n_reduces && r < 0; j++)
			if (a->g->nodes[a->reduces[j]].in[0] == gn)
				r = a->reduces[j];
		if (r < 0) {
			ir_node x = ir_node_proto(IR_OP_ALLREDUCE, &pn->loc);
			x.name = a->g->nodes[gn].name;
			x.n_in = 1;
			x.in[0] = gn;
			ir_shape_infer(a->g, &x);
			r = a->reduces[a->n_reduces++] = ir_node_append(a->g, &x);
		}
		a->reduced[p] = r;
	}
}

static void backward(ad *a, int dlogits, int logits)
{
	a->grads[logits] = (grad){dlogits, 0};
	for (int i = a->n_fwd - 1; i >= 0; i--) {
		int dy = a->grads[i].node;
		const ir_node *n = fwd(a, i);
		if (dy < 0 || n->op == IR_OP_PARAM || n->op == IR_OP_INPUT)
			continue;
		if (!rules[n->op])
			diag_error_at(&n->loc, "netcc cannot train through %s", ir_ops[n->op].name);
		rules[n->op](a, i, dy);
		reduce_ready(a, i);
	}
	for (int j = 0; j < a->n_reduces; j++)
		a->g->nodes[a->reduces[j]].reduce_left = a->n_reduces - 1 - j;
}

static void sgd(ad *a, int lr)
{
	for (int i = 0; i < a->n_fwd; i++) {
		ir_node p = *fwd(a, i);
		if (p.op != IR_OP_PARAM || p.pkind != IR_PARAM_WEIGHT)
			continue;
		if (a->grads[i].node < 0)
			diag_error_at(&p.loc, "parameter '%s' does not affect the loss", p.name);
		const char *name = arena_printf(&a->g->arena, "%s.momentum", p.name);
		int v = ir_param_add(a->g, name, IR_PARAM_STATE, p.shape, &p.loc);
		/* momentum starts at zero */
		a->g->nodes[v].data =
		    arena_array(&a->g->arena, (size_t)ir_shape_count(&p.shape), sizeof(float));
		ir_node s = ir_node_proto(IR_OP_SGD, &p.loc);
		s.name = p.name;
		s.momentum = a->g->train.momentum;
		s.weight_decay = a->g->train.weight_decay;
		s.goff = a->grads[i].goff;
		s.n_in = 4;
		s.in[0] = i;
		s.in[1] = a->reduced[i];
		s.in[2] = v;
		s.in[3] = lr;
		ir_shape_infer(a->g, &s);
		ir_node_append(a->g, &s);
	}
}

static void one_input_one_output(const ir_graph *g)
{
	if (g->n_inputs != 1 || g->n_outputs != 1)
		diag_error_at(g->n_outputs ? &g->outputs[0].loc : NULL,
		              "training needs a model with one input and one output");
}

static ad start(ir_graph *g)
{
	ir_rewrite(g, batch_norm, NULL);
	ad a = {.g = g, .n_fwd = g->n_nodes};
	/* the graph's arena: an error in a rule unwinds past any free() */
	a.grads = arena_alloc(&g->arena, (size_t)a.n_fwd * sizeof *a.grads);
	a.needs = arena_alloc(&g->arena, (size_t)a.n_fwd * sizeof *a.needs);
	size_t ints = (size_t)a.n_fwd * sizeof(int);
	a.first_use = arena_alloc(&g->arena, ints);
	a.reduced = arena_alloc(&g->arena, ints);
	a.reduces = arena_alloc(&g->arena, ints);
	for (int i = 0; i < a.n_fwd; i++) {
		a.grads[i] = (grad){-1, 0};
		a.first_use[i] = a.reduced[i] = -1;
	}
	for (int i = 0; i < a.n_fwd; i++)
		for (int k = 0; k < g->nodes[i].n_in; k++)
			if (a.first_use[g->nodes[i].in[k]] < 0)
				a.first_use[g->nodes[i].in[k]] = i;
	return a;
}

void autodiff_gradients(ir_graph *g, int **grad_node, int64_t **grad_off)
{
	one_input_one_output(g);
	ad a = start(g);
	find_needs(&a);
	int x = g->inputs[0].node;
	a.needs[x] = true;
	for (int i = x + 1; i < a.n_fwd; i++)
		for (int k = 0; k < g->nodes[i].n_in; k++)
			a.needs[i] |= a.needs[g->nodes[i].in[k]] &&
			              !(ir_ops[g->nodes[i].op].flags & OPF_EFFECT);
	ir_io out = g->outputs[0];
	int dy = ir_input_add(g, "dy", g->nodes[out.node].shape, &out.loc);
	a.grads[out.node] = (grad){dy, 0};
	for (int i = a.n_fwd - 1; i >= 0; i--) {
		int d = a.grads[i].node;
		const ir_node *n = fwd(&a, i);
		if (d < 0 || n->op == IR_OP_PARAM || n->op == IR_OP_INPUT || i == dy)
			continue;
		if (!rules[n->op])
			diag_error_at(&n->loc, "netcc cannot train through %s", ir_ops[n->op].name);
		rules[n->op](&a, i, d);
	}
	*grad_node = malloc((size_t)a.n_fwd * sizeof(int));
	*grad_off = malloc((size_t)a.n_fwd * sizeof(int64_t));
	if (!*grad_node || !*grad_off)
		diag_fatal("out of memory");
	for (int i = 0; i < a.n_fwd; i++) {
		(*grad_node)[i] = a.grads[i].node;
		(*grad_off)[i] = a.grads[i].goff;
	}
}

void autodiff_training_graph(ir_graph *g)
{
	one_input_one_output(g);
	ir_io out = g->outputs[0];
	if (g->nodes[out.node].shape.rank != 2)
		diag_error_at(&out.loc, "training needs the output to be [N, classes] logits");
	ad a = start(g);
	find_needs(&a);

	int logits = g->outputs[0].node;
	diag_loc loc = g->outputs[0].loc;
	int labels = ir_input_add(g, "labels", ir_shape1(g->batch), &loc);
	g->nodes[labels].i32 = true;
	int lr = ir_input_add(g, "lr", ir_shape1(1), &loc);
	int pair[2] = {logits, labels};
	int loss = node(&a, IR_OP_XENT_LOSS, logits, pair, 2);
	int dlogits = node(&a, IR_OP_XENT_GRAD, logits, pair, 2);
	g->nodes[loss].name = g->nodes[dlogits].name = "loss";

	backward(&a, dlogits, logits);
	sgd(&a, lr);

	g->n_outputs = 0;
	ir_output_add(g, "loss", loss, &loc);
	ir_output_add(g, out.name, logits, &out.loc);
}
