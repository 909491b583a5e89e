/* Winograd's weight transforms, U = G g G^T for every filter, into the
 * packed layout of whichever kernel set will read them (mr, kset.h): at
 * weight preparation, in netcc (embedded weights) or in the library (a
 * weights file), and in every training step. The arithmetic is double,
 * and this file is compiled without contracting multiply-adds (the
 * Makefile), so every set and netcc itself compute the same bits. */
#include <math.h>
#include <string.h>

#include "runtime.h"
#include "winograd.h"

/* U[pos] is the A operand of position pos's GEMM, [m x k] (oc x c, or c x
 * oc for the input gradient), kept in the GEMM's packed layout for a
 * register tile of mr rows (rt_gemm_pack_a) at u + pos *
 * rt_gemm_packed_a_floats(mr, m, k): the GEMMs of every tile block read it
 * as it is, instead of packing it again. */
size_t rt_winograd_weight_floats(int mr, int tile, int m, int k)
{
	return winograd_pos_of(tile) * rt_gemm_packed_a_floats(mr, m, k);
}

/* Row `row` of every U[pos] (m x k): element (row, j) = (G g_j G^T)[pos]
 * for the k 3x3 filters g_j = w + j * step (in floats) times scale (a
 * float product, as BatchNorm folding computes it), taps reversed if flip. */
static void weights_row(int mr, int out, const float *w, size_t step, float scale, int m, int k,
                        int row, int j0, int j1, int flip, float *u)
{
	size_t stride = rt_gemm_packed_a_floats(mr, m, k);
	const double(*g3)[3] = out == 2 ? G2 : G;
	int tile = out + 2;
	/* four filters at a time, one per lane (scalar, a filter took 180
	 * core cycles); lanes past j1 compute zeros and are not stored */
	typedef double v4d __attribute__((vector_size(4 * sizeof(double))));
	typedef float v4f __attribute__((vector_size(4 * sizeof(float))));
	for (int j = j0; j < j1; j += 4) {
		int lanes = j1 - j < 4 ? j1 - j : 4;
		v4d gv[9] = {{0}}, t[TILE][3];
		for (int e = 0; e < 9; e++)
			for (int l = 0; l < lanes; l++)
				gv[e][l] = (double)(w[(size_t)(j + l) * step + (flip ? 8 - e : e)] *
				                    scale);
		for (int r = 0; r < tile; r++)
			for (int q = 0; q < 3; q++) {
				v4d acc = {0};
				for (int i = 0; i < 3; i++)
					acc += g3[r][i] * gv[i * 3 + q];
				t[r][q] = acc;
			}
		float *at[4];
		for (int l = 0; l < lanes; l++)
			at[l] = u + rt_gemm_packed_a_offset(mr, m, k, row, j + l);
		for (int r = 0; r < tile; r++)
			for (int s = 0; s < tile; s++) {
				v4d v =
				    t[r][0] * g3[s][0] + t[r][1] * g3[s][1] + t[r][2] * g3[s][2];
				v4f f = __builtin_convertvector(v, v4f);
				for (int l = 0; l < lanes; l++)
					at[l][(size_t)(r * tile + s) * stride] = f[l];
			}
	}
}

/* U's columns, split over the threads in runs of 16 (a packed panel holds
 * several rows' values for a column in one cache line: split by rows, the
 * threads wrote the same lines, 1.3x faster than one thread). Each value
 * is its own, so the split changes no bits. Single-threaded, a training
 * step's 32 transforms took 1.4% of it. */
enum { WEIGHTS_RUN = 16 };
typedef struct weights_job {
	int mr, out, m, k, flip;
	size_t step, row_step;
	const float *w, *gamma, *var;
	float eps;
	float *u;
} weights_job;

static void weights_task(void *ctx, int task, int tasks)
{
	const weights_job *j = ctx;
	int b0, b1;
	rt_task_range((j->k + WEIGHTS_RUN - 1) / WEIGHTS_RUN, task, tasks, &b0, &b1);
	int j0 = b0 * WEIGHTS_RUN, j1 = b1 * WEIGHTS_RUN < j->k ? b1 * WEIGHTS_RUN : j->k;
	for (int r = 0; r < j->m; r++)
		weights_row(j->mr, j->out, j->w + (size_t)r * j->row_step, j->step,
		            j->gamma ? j->gamma[r] / sqrtf(j->var[r] + j->eps) : 1.0f, j->m, j->k,
		            r, j0, j1, j->flip, j->u);
}

static void weights_run(rt_threads *t, weights_job *j)
{
	memset(j->u, 0,
	       rt_winograd_weight_floats(j->mr, j->out, j->m, j->k) *
	           sizeof(float)); /* the padding */
	int tasks = rt_threads_count(t) * 2, runs = (j->k + WEIGHTS_RUN - 1) / WEIGHTS_RUN;
	rt_threads_run(t, weights_task, j, tasks < runs ? tasks : runs);
}

/* U[pos]: oc x c, a row one output channel's filters */
void rt_winograd_weight(rt_threads *t, int mr, int tile, int oc, int c, const float *w,
                        const float *gamma, const float *var, float eps, float *u)
{
	weights_job j = {.mr = mr,
	                 .out = tile,
	                 .m = oc,
	                 .k = c,
	                 .step = 9,
	                 .row_step = (size_t)c * 9,
	                 .w = w,
	                 .gamma = gamma,
	                 .var = var,
	                 .eps = eps,
	                 .u = u};
	weights_run(t, &j);
}

/* The input gradient of a 3x3 stride-1 pad-1 convolution is the convolution
 * of dY with the weights' channels swapped and taps flipped: U[pos] is
 * c x oc, a row one input channel's filters. */
void rt_winograd_weight_t(rt_threads *t, int mr, int oc, int c, const float *w, float *u)
{
	weights_job j = {.mr = mr,
	                 .out = OUT,
	                 .m = c,
	                 .k = oc,
	                 .flip = 1,
	                 .step = (size_t)c * 9,
	                 .row_step = 9,
	                 .w = w,
	                 .u = u};
	weights_run(t, &j);
}
