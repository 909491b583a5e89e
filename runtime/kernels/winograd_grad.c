/* Training's Winograd: the input gradient (the forward kernel on the
 * transposed convolution) and the weight gradient (the transposed
 * algorithm). Apart from the forward driver (winograd.c) because only
 * training runs it, and it has its own blocking (chunks of tiles summed
 * apart, in an order fixed by the tiles alone); it shares the blocks and
 * the input transform with the forward pass. Compiled with the Winograd
 * kernels' flags (KFLAGS_winograd_grad, the same as KFLAGS_winograd). */
#include "winograd_impl.h"
#include "winograd_lanes.h"

/* The transposed convolution an input gradient is: dY's oc channels in,
 * c out, the same geometry (pad 1 keeps it stride 1, 3x3). */
static rt_conv transposed(const rt_conv *p)
{
	return rt_conv_make(p->n, p->oc, p->oh, p->ow, p->c, 3, 1, 3 - 1 - p->pad);
}

bool rt_winograd_grad_fits(const rt_conv *p)
{
	return rt_winograd_fits(p) && p->pad == 1 && p->oh == p->h && p->ow == p->w;
}

size_t rt_winograd_grad_input_scratch_floats(const rt_conv *p)
{
	rt_conv q = transposed(p);
	return rt_winograd_scratch_floats(&q, OUT);
}

void rt_conv2d_grad_input_winograd(rt_threads *t, const rt_conv *p, const float *dy,
                                   const float *ut, float *dx, float *scratch)
{
	rt_conv q = transposed(p);
	rt_conv2d_winograd(t, &q, OUT, dy, ut, NULL, NULL, dx, 0, scratch);
}

/* The weight gradient of y = A^T [(G g G^T) . (B^T d B)] A, summed over
 * tiles, is dg = G^T [sum over tiles of (A dy A^T) . (B^T d B)] G: the same
 * input tiles V, the output gradient's tiles through A, and per position a
 * GEMM whose inner dimension is the tiles,
 *   M[p] += D[p] . V[p]^T     [oc x tiles] . [tiles x c] -> [oc x c]
 * accumulated over blocks; then each (oc, c) pair's 6x6 goes back to 3x3. */

/* Up to 64 channels each way (M up to 576 KB) the tiles go in CHUNKS
 * fixed ranges, each summed into its own M by one thread, block by block,
 * and the partial sums are added in chunk order: the threads work in their
 * own cores' caches, and the result does not depend on how many there are.
 * (Shared blocks cost three handovers between the threads per block: at
 * 64 channels on a 7x7 map, 56 blocks, a training step ran 1.3% slower.)
 * With more channels M would not stay in cache: the threads share each
 * block, split by channels and then by positions. */
enum { CHUNKS = 4, CHUNKED_MAX_FLOATS = POS * 64 * 64 };

static int chunks_of(const rt_conv *p)
{
	return (size_t)POS * p->oc * p->c <= CHUNKED_MAX_FLOATS ? CHUNKS : 1;
}

static int chunk_tiles(const rt_conv *p)
{
	/* Shared blocks twice the forward's: each block's 36 GEMMs sum over
	 * its tiles, and at 64 channels the forward's 48 tiles were too short
	 * a sum for the GEMM (a training step 0.98x with 112; 0.99-1.00x
	 * with four times) */
	if (chunks_of(p) == 1) {
		long total = (total_tiles_max(p, OUT) + 15) / 16 * 16;
		long t = 2L * BLOCK_FLOATS / ((long)POS * (p->c + p->oc)) / 16 * 16;
		return (int)(t < 16 ? 16 : t > total ? total : t);
	}
	int sb = rt_wino_block_tiles(p, OUT) / LANES * LANES;
	return sb < LANES ? LANES : sb;
}

size_t rt_winograd_grad_weight_scratch_floats(const rt_conv *p)
{
	return chunks_of(p) *
	       (rt_wino_block_floats(p, OUT, chunk_tiles(p)) + (size_t)POS * p->oc * p->c);
}

/* A applied to four values (the transpose of AT). */
#define A4(d, r)                                                                                   \
	do {                                                                                       \
		r[0] = d[0];                                                                       \
		r[1] = d[0] + d[1] + d[2] + d[3];                                                  \
		r[2] = d[0] - d[1] + d[2] - d[3];                                                  \
		r[3] = d[0] + 2 * d[1] + 4 * d[2] + 8 * d[3];                                      \
		r[4] = d[0] - 2 * d[1] + 4 * d[2] - 8 * d[3];                                      \
		r[5] = d[3];                                                                       \
	} while (0)

/* D = A dy A^T for the 4x4 output-gradient tiles of the block, zero past
 * the map and past the block's last tile: each row of dy times A^T as it
 * is gathered, then A times each column */
/* A times each column of t (each row of dy times A^T already), stored
 * into D (the block's M) at lanes j.. of channel o */
static inline __attribute__((always_inline)) void dy_columns(const wino *w, v8 t[OUT][TILE], int j,
                                                             int o)
{
	const size_t ms = w->ms; /* a local: the stores may alias *w */
	float *mo = w->m + (size_t)o * w->ld + j;
	for (int s = 0; s < TILE; s++) {
		v8 col[OUT], r[TILE];
		for (int k = 0; k < OUT; k++)
			col[k] = t[k][s];
		A4(col, r);
		float *mk = mo + s * ms;
		for (int k = 0; k < TILE; k++, mk += TILE * ms)
			store8(mk, r[k]);
	}
}

static inline __attribute__((always_inline)) void dy_group(const wino *w, const lane_plan lp[LANES],
                                                           int kind, int j, int o)
{
	const rt_conv *p = w->p;
	v8 t[OUT][TILE];
	for (int k = 0; k < OUT; k++) {
		v8 d[OUT];
		gather_row(lp, w->res + o * (size_t)p->oh * p->ow, p->ow, k, OUT, kind, d);
		A4(d, t[k]);
	}
	dy_columns(w, t, j, o);
}

#if WINO_ROWS
/* The same for a group of rows of tiles in rows mode (wino_rows) */
static inline __attribute__((always_inline)) void dy_group_rows(const wino *w, int kind, int j,
                                                                int o)
{
	const rt_conv *p = w->p;
	v8 t[OUT][TILE];
	for (int k = 0; k < OUT; k++) {
		v8 d[OUT];
		rows_gather(w, kind, j, w->res, p->oc, o, p->oh, p->ow, k, 0, OUT, d);
		A4(d, t[k]);
	}
	dy_columns(w, t, j, o);
}
#endif

static void dy_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int o0, o1;
	rt_task_range(p->oc, task, tasks, &o0, &o1);
#if WINO_ROWS
	int rows = wino_rows(p, OUT);
	if (rows != ROWS_NONE) {
		for (int j = 0; j < w->tb; j += LANES)
			for (int o = o0; o < o1; o++)
				if (rows == ROWS_ONE)
					dy_group_rows(w, ROWS_ONE, j, o);
				else
					dy_group_rows(w, ROWS_TWO, j, o);
		return;
	}
#endif
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		rt_wino_plan_lanes(w, j, 0, 0, p->oh, p->ow, p->oc, OUT, lp);
		int kind = rt_wino_lanes_kind(w, lp, j, OUT);
		for (int o = o0; o < o1; o++)
			if (kind == LANES_WHOLE)
				dy_group(w, lp, LANES_WHOLE, j, o);
			else if (kind == LANES_SAME)
				dy_group(w, lp, LANES_SAME, j, o);
			else
				dy_group(w, lp, LANES_MIXED, j, o);
	}
}

typedef struct wgrad {
	wino w;
	float *acc;   /* CHUNKS partial sums M: [pos][oc][c] each */
	size_t slice; /* scratch floats per chunk */
	int sb;       /* tiles per block */
	long total;
} wgrad;

/* M[pos] (+)= D[pos] . V[pos]^T for the block, into acc's M */
static void wgrad_gemm(const wino *w, int pos, float *acc, int accumulate)
{
	const rt_conv *p = w->p;
	rt_gemm_b b = {.data = w->v + pos * w->vs, .ld = w->ld, .trans = 1};
	rt_gemm_serial(w->pool, p->oc, p->c, w->tb, w->m + pos * w->ms, w->ld, 0, &b,
	               acc + (size_t)pos * p->oc * p->c, p->c,
	               &(rt_epilogue){.add = accumulate ? acc + (size_t)pos * p->oc * p->c : NULL});
}

/* The totals of four vectors, in order: each one's lanes summed
 * ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)) */
static inline __attribute__((always_inline)) q4 totals4(const v8 a[4])
{
#if defined(__AVX__)
	__m256 u = _mm256_hadd_ps(_mm256_hadd_ps((__m256)a[0], (__m256)a[1]),
	                          _mm256_hadd_ps((__m256)a[2], (__m256)a[3]));
	return (q4)_mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
#else
	q4 r;
	for (int e = 0; e < 4; e++)
		r[e] = ((a[e][0] + a[e][1]) + (a[e][2] + a[e][3])) +
		       ((a[e][4] + a[e][5]) + (a[e][6] + a[e][7]));
	return r;
#endif
}

/* out[i][e] (+)= D row i . V row e over kv tiles, for rows x cols of
 * them (at most 3 x 4: the twelve sums and a vector of most of the seven
 * rows fill the sixteen registers; GCC reads the rest into the FMAs),
 * eight tiles to a lane each */
static inline __attribute__((always_inline)) void dot_tile(const float *d, const float *v,
                                                           size_t ld, int kv, int rows, int cols,
                                                           float *out, size_t ldo, int accumulate)
{
	v8 a[3][4] = {{{0}}};
	for (int k = 0; k < kv; k += LANES) {
		v8 ve[4];
		for (int e = 0; e < cols; e++)
			ve[e] = load8(v + e * ld + k);
		for (int i = 0; i < rows; i++) {
			v8 di = load8(d + i * ld + k);
			for (int e = 0; e < cols; e++)
				a[i][e] += di * ve[e];
		}
	}
	for (int i = 0; i < rows; i++) {
		q4 t = totals4(a[i]);
		float *o = out + i * ldo;
		for (int e = 0; e < cols; e++)
			o[e] = accumulate ? o[e] + t[e] : t[e];
	}
}

/* wgrad_gemm's sums as dot products of D's and V's rows where the
 * transforms left them (both run along the tiles), for the chunks' 16
 * and 32 channels: as a GEMM, both operands had to be packed transposed,
 * and with only 16 or 32 rows and columns the packing was half its time
 * (144 -> 86 core cycles per tile and channel at 16 channels, 222 -> 188
 * at 32; at 64 the GEMM is faster). The transforms write whole groups of
 * eight lanes, zeros past the block, so the sums run to a multiple of
 * eight tiles. */
enum { GEMM_MIN_CHANNELS = 64 }; /* from here on the sums are a GEMM */

static void wgrad_dots(const wino *w, int pos, float *acc, int accumulate)
{
	const rt_conv *p = w->p;
	const float *d = w->m + pos * w->ms, *v = w->v + pos * w->vs;
	float *out = acc + (size_t)pos * p->oc * p->c;
	int kv = (w->tb + LANES - 1) / LANES * LANES;
	size_t ld = (size_t)w->ld;
	for (int o = 0; o < p->oc; o += 3) {
		int rows = p->oc - o < 3 ? p->oc - o : 3;
		for (int c = 0; c < p->c; c += 4) {
			const float *dr = d + o * ld, *vr = v + c * ld;
			float *t = out + (size_t)o * p->c + c;
			if (c + 4 > p->c) /* the last columns, one at a time */
				for (int e = 0; c + e < p->c; e++)
					dot_tile(dr, vr + e * ld, ld, kv, rows, 1, t + e, p->c,
					         accumulate);
			else if (rows == 3)
				dot_tile(dr, vr, ld, kv, 3, 4, t, p->c, accumulate);
			else if (rows == 2)
				dot_tile(dr, vr, ld, kv, 2, 4, t, p->c, accumulate);
			else
				dot_tile(dr, vr, ld, kv, 1, 4, t, p->c, accumulate);
		}
	}
}

static void wgrad_gemm_task(void *ctx, int pos, int tasks)
{
	const wgrad *g = ctx;
	wgrad_gemm(&g->w, pos, g->acc, g->w.t0 > 0);
}

/* The chunk's tiles, block by block, into its M */
static void wgrad_chunk_task(void *ctx, int q, int chunks)
{
	const wgrad *g = ctx;
	const rt_conv *p = g->w.p;
	wino w = g->w;
	w.ld = g->sb;
	rt_wino_scratch(&w, w.v + (size_t)q * g->slice);
	size_t per = (size_t)POS * p->oc * p->c;
	float *acc = g->acc + (size_t)q * per;
	long t0 = g->total * q / chunks, t1 = g->total * (q + 1) / chunks;
	if (wino_rows(p, OUT) != ROWS_NONE) { /* whole groups of lanes */
		long groups = (g->total + LANES - 1) / LANES;
		t0 = groups * q / chunks * LANES;
		t1 = q == chunks - 1 ? g->total : groups * (q + 1) / chunks * LANES;
	}
	if (t0 == t1)
		memset(acc, 0, per * sizeof(float));
	for (w.t0 = t0; w.t0 < t1; w.t0 += w.ld) {
		rt_wino_block_start(&w, t1);
		rt_wino_input_task(&w, 0, 1);
		dy_task(&w, 0, 1);
		for (int pos = 0; pos < POS; pos++)
			if (p->c >= GEMM_MIN_CHANNELS)
				wgrad_gemm(&w, pos, acc, w.t0 > t0);
			else
				wgrad_dots(&w, pos, acc, w.t0 > t0);
	}
}

/* dw[o][c] = G^T M G for each pair, M the chunks' sum, in double */
static void wgrad_out_task(void *ctx, int task, int tasks)
{
	const wgrad *g = ctx;
	const rt_conv *p = g->w.p;
	/* tasks own whole groups of four pairs, so which pairs take the
	 * vector path depends on the pairs alone, not on the thread count */
	size_t pairs = (size_t)p->oc * p->c, groups = (pairs + 3) / 4, per = POS * pairs;
	size_t q0 = groups * task / tasks * 4, q1 = groups * (task + 1) / tasks * 4;
	if (q1 > pairs)
		q1 = pairs;
	int chunks = chunks_of(p);
	/* four pairs at a time, one per lane of a double vector: the same
	 * operations on each as below (one pair at a time, this was 1% of a
	 * training step); below, the last pairs past a multiple of four */
	typedef double v4d __attribute__((vector_size(4 * sizeof(double))));
	for (; q0 + 4 <= q1; q0 += 4) {
		v4d m[POS], t[3][TILE];
		for (int k = 0; k < POS; k++) {
			const float *a = g->acc + (size_t)k * pairs + q0;
			for (int l = 0; l < 4; l++)
				m[k][l] = a[l];
			for (int c = 1; c < chunks; c++)
				for (int l = 0; l < 4; l++)
					m[k][l] += a[c * per + l];
		}
		for (int s = 0; s < TILE; s++)
			for (int k = 0; k < 3; k++) {
				v4d acc = {0};
				for (int r = 0; r < TILE; r++)
					acc += G[r][k] * m[r * TILE + s];
				t[k][s] = acc;
			}
		float *dw = g->w.y + q0 * 9;
		for (int k = 0; k < 3; k++)
			for (int l = 0; l < 3; l++) {
				v4d acc = {0};
				for (int s = 0; s < TILE; s++)
					acc += t[k][s] * G[s][l];
				for (int e = 0; e < 4; e++)
					dw[e * 9 + k * 3 + l] = (float)acc[e];
			}
	}
	for (size_t q = q0; q < q1; q++) {
		double m[POS], t[3][TILE];
		for (int k = 0; k < POS; k++) {
			const float *a = g->acc + (size_t)k * pairs + q;
			m[k] = a[0];
			for (int c = 1; c < chunks; c++)
				m[k] += a[c * per];
		}
		for (int s = 0; s < TILE; s++)
			for (int k = 0; k < 3; k++) {
				double acc = 0;
				for (int r = 0; r < TILE; r++)
					acc += G[r][k] * m[r * TILE + s];
				t[k][s] = acc;
			}
		float *dw = g->w.y + q * 9;
		for (int k = 0; k < 3; k++)
			for (int l = 0; l < 3; l++) {
				double acc = 0;
				for (int s = 0; s < TILE; s++)
					acc += t[k][s] * G[s][l];
				dw[k * 3 + l] = (float)acc;
			}
	}
}

void rt_conv2d_grad_weight_winograd(rt_threads *t, const rt_conv *p, const float *x,
                                    const float *dy, float *dw, float *scratch)
{
	wgrad g = {
	    .w =
	        {
	            .p = p,
	            .x = x,
	            .res = dy,
	            .y = dw,
	            .out = OUT,
	            .th = tiles_of(p->oh, OUT),
	            .tw = tiles_across(p, OUT),
	            .v = scratch,
	            .pool = t,
	        },
	    .acc = scratch + chunks_of(p) * rt_wino_block_floats(p, OUT, chunk_tiles(p)),
	    .slice = rt_wino_block_floats(p, OUT, chunk_tiles(p)),
	    .sb = chunk_tiles(p),
	    .total = total_tiles(p, OUT),
	};
	if (g.total == 0) {
		memset(dw, 0, (size_t)p->oc * p->c * 9 * sizeof(float));
		return;
	}
	int threads = rt_threads_count(t);
	if (chunks_of(p) > 1) {
		rt_threads_run(t, wgrad_chunk_task, &g, CHUNKS);
	} else {
		wino *w = &g.w;
		w->ld = g.sb;
		rt_wino_scratch(w, scratch);
		for (w->t0 = 0; w->t0 < g.total; w->t0 += w->ld) {
			rt_wino_block_start(w, g.total);
			rt_threads_run(t, rt_wino_input_task, w,
			               p->c < threads * 4 ? p->c : threads * 4);
			rt_threads_run(t, dy_task, w, p->oc < threads * 4 ? p->oc : threads * 4);
			rt_threads_run(t, wgrad_gemm_task, &g, POS);
		}
	}
	rt_threads_run(t, wgrad_out_task, &g, threads * 4);
}
