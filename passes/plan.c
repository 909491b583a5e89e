/* Memory planning: every intermediate gets bytes of one arena.
 *   1. liveness: a value lives from the node that makes it to its last reader;
 *   2. in place: a node that may overwrite an input dying at it (relu, add,
 *      batchnorm, a conv's residual) takes that input's buffer, so the two
 *      are one buffer with the union of their lifetimes;
 *   3. scratch: a kernel's temporary lives only while that node runs;
 *   4. offsets: buffers by decreasing size, each at the best-fitting gap
 *      among the already placed buffers whose lifetimes overlap it (TFLite's
 *      arena planner; Pisarchyk and Lee, 2020).
 * The lower bound is the most bytes live at any one step; naive is every
 * buffer on its own. */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

enum { ALIGN = 64 };

typedef struct buffer {
	int64_t size, offset;
	int start, end; /* node indices, inclusive */
	int first;      /* the node that made it: ordering ties */
} buffer;

static int64_t align(int64_t x)
{
	return (x + ALIGN - 1) / ALIGN * ALIGN;
}

static int64_t bytes(const ir_node *n)
{
	return align(ir_shape_count(&n->shape) * (int64_t)sizeof(float));
}

/* Inputs a node may overwrite with its result, element for element: its
 * tensor args where ops.def says so, and a convolution's fused residual. */
static int inplace_slots(const ir_node *n, int *slots)
{
	if (n->op == IR_OP_CONV) {
		if (!n->residual)
			return 0;
		slots[0] = n->residual;
		return 1;
	}
	if (!(ir_ops[n->op].flags & OPF_INPLACE))
		return 0;
	for (int i = 0; i < ir_ops[n->op].args; i++)
		slots[i] = i;
	return ir_ops[n->op].args;
}

static int by_size(const void *a, const void *b)
{
	const buffer *x = *(buffer *const *)a, *y = *(buffer *const *)b;
	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return (x->first > y->first) - (x->first < y->first);
}

static int by_offset(const void *a, const void *b)
{
	const buffer *x = *(buffer *const *)a, *y = *(buffer *const *)b;
	return (x->offset > y->offset) - (x->offset < y->offset);
}

static bool overlap(const buffer *a, const buffer *b)
{
	return a->start <= b->end && b->start <= a->end;
}

/* Larger (bytes times steps alive) first */
static int by_area(const void *a, const void *b)
{
	const buffer *x = *(buffer *const *)a, *y = *(buffer *const *)b;
	int64_t ax = x->size * (x->end - x->start + 1), ay = y->size * (y->end - y->start + 1);
	if (ax != ay)
		return ax < ay ? 1 : -1;
	return by_size(a, b);
}

/* Greedy in the given order, best fit: the smallest gap that holds the
 * buffer among those that live at the same time, else the first offset
 * above them all. */
static int64_t place_in_order(buffer *bufs, int n, int (*cmp)(const void *, const void *))
{
	buffer **order = malloc((size_t)(n + 1) * sizeof *order);
	buffer **near = malloc((size_t)(n + 1) * sizeof *near);
	if (!order || !near)
		diag_fatal("out of memory");
	for (int i = 0; i < n; i++)
		order[i] = &bufs[i];
	qsort(order, (size_t)n, sizeof *order, cmp);
	int64_t arena = 0;
	for (int i = 0; i < n; i++) {
		buffer *b = order[i];
		int k = 0;
		for (int j = 0; j < i; j++)
			if (overlap(order[j], b))
				near[k++] = order[j];
		qsort(near, (size_t)k, sizeof *near, by_offset);
		int64_t top = 0, best = -1, best_gap = INT64_MAX;
		for (int j = 0; j < k; j++) {
			int64_t gap = near[j]->offset - top;
			if (gap >= b->size && gap < best_gap) {
				best = top;
				best_gap = gap;
			}
			if (near[j]->offset + near[j]->size > top)
				top = near[j]->offset + near[j]->size;
		}
		b->offset = best >= 0 ? best : top;
		if (b->offset + b->size > arena)
			arena = b->offset + b->size;
	}
	free(order);
	free(near);
	return arena;
}

/* Greedy by size (TFLite's order) and greedy by size times lifetime, the
 * smaller of the two plans: neither is best on every graph (a training
 * step whose weight gradients took larger scratch came out 2.1% over the
 * lower bound by size alone) */
static int64_t place(buffer *bufs, int n)
{
	int64_t by_bytes = place_in_order(bufs, n, by_size);
	int64_t *offset = malloc((size_t)(n + 1) * sizeof *offset);
	if (!offset)
		diag_fatal("out of memory");
	for (int i = 0; i < n; i++)
		offset[i] = bufs[i].offset;
	int64_t by_bytes_steps = place_in_order(bufs, n, by_area);
	if (by_bytes_steps >= by_bytes)
		for (int i = 0; i < n; i++)
			bufs[i].offset = offset[i];
	free(offset);
	return by_bytes_steps < by_bytes ? by_bytes_steps : by_bytes;
}

static int64_t lower_bound(const buffer *bufs, int n, int steps)
{
	int64_t *live = calloc((size_t)steps + 1, sizeof(int64_t)), best = 0;
	if (!live)
		diag_fatal("out of memory");
	for (int i = 0; i < n; i++)
		for (int s = bufs[i].start; s <= bufs[i].end; s++)
			live[s] += bufs[i].size;
	for (int s = 0; s < steps; s++)
		if (live[s] > best)
			best = live[s];
	free(live);
	return best;
}

void plan_memory(ir_graph *g)
{
	plan_roles(g);
	int n = g->n_nodes;
	size_t sz = (size_t)n + 1;
	int *last = malloc(sz * sizeof(int)), *group = malloc(sz * sizeof(int));
	int *scratch_buf = malloc(sz * sizeof(int));
	buffer *bufs = calloc(2 * sz, sizeof(buffer));
	if (!last || !group || !scratch_buf || !bufs)
		diag_fatal("out of memory");
	for (int i = 0; i < n; i++) {
		last[i] = i;
		group[i] = scratch_buf[i] = -1;
	}
	for (int i = 0; i < n; i++)
		for (int k = 0; k < g->nodes[i].n_in; k++)
			if (!g->nodes[i].prep && last[g->nodes[i].in[k]] < i)
				last[g->nodes[i].in[k]] = i;

	int nb = 0;
	int64_t naive = 0;
	for (int i = 0; i < n; i++) {
		ir_node *v = &g->nodes[i];
		v->scratch_bytes = 0;
		if (v->prep || v->op == IR_OP_INPUT)
			continue;
		bool effect = ir_ops[v->op].flags & OPF_EFFECT;
		int64_t scratch = plan_scratch_bytes(g, v);
		if (scratch) {
			v->scratch_bytes = scratch;
			bufs[nb] =
			    (buffer){.size = align(scratch), .start = i, .end = i, .first = i};
			naive += bufs[nb].size;
			scratch_buf[i] = nb++;
		}
		if (v->mem != IR_MEM_NONE || effect)
			continue; /* a caller's output, or no value at all */
		v->mem = IR_MEM_ARENA;
		naive += bytes(v);
		int slots[IR_MAX_INPUTS], ns = inplace_slots(v, slots);
		int join = -1;
		for (int s = 0; s < ns && join < 0; s++) {
			int u = v->in[slots[s]];
			int gu = u < n ? group[u] : -1;
			if (gu >= 0 && bufs[gu].end == i && bufs[gu].size == bytes(v))
				join = gu;
		}
		if (join < 0) {
			join = nb++;
			bufs[join] = (buffer){.size = bytes(v), .start = i, .end = i, .first = i};
		}
		if (last[i] > bufs[join].end)
			bufs[join].end = last[i];
		group[i] = join;
	}
	g->plan.arena_bytes = place(bufs, nb);
	g->plan.lower_bound_bytes = lower_bound(bufs, nb, n);
	g->plan.naive_bytes = naive;
	for (int i = 0; i < n; i++) {
		ir_node *v = &g->nodes[i];
		if (v->mem == IR_MEM_ARENA)
			v->offset = bufs[group[i]].offset;
		if (scratch_buf[i] >= 0)
			v->scratch = bufs[scratch_buf[i]].offset;
	}
	g->plan.done = true;
	free(last);
	free(group);
	free(scratch_buf);
	free(bufs);
}
