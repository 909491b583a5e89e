/* The Winograd convolution's transforms: the input tiles into the tile
 * domain (V = B^T d B) and the GEMMs' products out of it (y = A^T M A,
 * then bias, residual and relu), eight tiles at a time in vector lanes.
 * Apart from the driver (winograd.c) because this is the forward pass's
 * arithmetic outside the GEMMs, and the training gradients
 * (winograd_grad.c) run the input transform too. Compiled with the
 * Winograd kernels' flags (KFLAGS_winograd_transform, the same as
 * KFLAGS_winograd): they decide how these sums are contracted. */
#include "winograd_impl.h"
#include "winograd_lanes.h"

/* B^T applied to m + 2 values (a column, then a row, of the tile). */
static inline __attribute__((always_inline)) void b_t(int m, const v8 *d, v8 *r)
{
	if (m == 2) {
		r[0] = d[0] - d[2];
		r[1] = d[1] + d[2];
		r[2] = d[2] - d[1];
		r[3] = d[1] - d[3];
		return;
	}
	r[0] = 4 * d[0] - 5 * d[2] + d[4];
	r[1] = -4 * d[1] - 4 * d[2] + d[3] + d[4];
	r[2] = 4 * d[1] - 4 * d[2] - d[3] + d[4];
	r[3] = -2 * d[1] - d[2] + 2 * d[3] + d[4];
	r[4] = 2 * d[1] - d[2] - 2 * d[3] + d[4];
	r[5] = 4 * d[1] - 5 * d[3] + d[5];
}

/* A^T applied to m + 2 values, m out. */
static inline __attribute__((always_inline)) void a_t(int m, const v8 *d, v8 *r)
{
	if (m == 2) {
		r[0] = d[0] + d[1] + d[2];
		r[1] = d[1] - d[2] - d[3];
		return;
	}
	r[0] = d[0] + d[1] + d[2] + d[3] + d[4];
	r[1] = d[1] - d[2] + 2 * d[3] - 2 * d[4];
	r[2] = d[1] + d[2] + 4 * d[3] + 4 * d[4];
	r[3] = d[1] - d[2] + 8 * d[3] - 8 * d[4] + d[5];
}

/* Plans for lanes j.. of the block, for tiles width wide whose corners
 * lie dy, dx from the tiles' own (minus the padding for input tiles), on
 * h x wd maps of `channels` channels. */
void rt_wino_plan_lanes(const wino *w, int j, int dy, int dx, int h, int wd, int channels,
                        int width, lane_plan lp[LANES])
{
	for (int l = 0; l < LANES; l++) {
		lane_plan *q = &lp[l];
		q->rows = 0;
		q->edge = q->shifted = false;
		if (j + l >= w->tb)
			continue;
		const tile_at *a = &w->at[j + l];
		int y0 = a->y + dy, x0 = a->x + dx;
		for (int r = 0; r < width; r++)
			if (y0 + r >= 0 && y0 + r < h)
				q->rows |= 1 << r;
		q->off = (long)a->img * channels * h * wd + (long)y0 * wd + x0;
		q->x0 = x0;
		/* rows are read four floats at a time */
		if (x0 >= 0 && x0 + (width > 4 ? width : 4) <= wd)
			continue;
		q->edge = true;
		int in[TILE];
		for (int s = 0; s < TILE; s++) {
			int x = x0 + s;
			in[s] = s < width && x >= 0 && x < wd ? -1 : 0;
			q->col[s] = x < 0 ? 0 : x >= wd ? wd - 1 : x;
		}
		q->mlo = (qi4){in[0], in[1], in[2], in[3]};
		q->mhi = (qi4){in[2], in[3], in[4], in[5]};
#if defined(__SSSE3__)
		/* a window of four floats inside the row for columns 0-3 and
		 * one for 2-5, each float moved to its lane or zeroed: two
		 * loads and two byte shuffles instead of six loads and
		 * inserts (a row needs four floats) */
		q->shifted = wd >= 4;
		for (int half = 0; half < 2 && q->shifted; half++) {
			int first = x0 + 2 * half, at = first < 0        ? 0
			                                : first > wd - 4 ? wd - 4
			                                                 : first;
			qb16 ctl;
			for (int e = 0; e < 4; e++)
				for (int b = 0; b < 4; b++)
					ctl[4 * e + b] = in[2 * half + e]
					                     ? (char)(4 * (first + e - at) + b)
					                     : (char)0x80;
			if (half)
				q->hi_at = q->off - x0 + at, q->hi_ctl = ctl;
			else
				q->lo_at = q->off - x0 + at, q->lo_ctl = ctl;
		}
#endif
	}
}

int rt_wino_lanes_kind(const wino *w, const lane_plan lp[LANES], int j, int width)
{
	if (j + LANES > w->tb)
		return LANES_MIXED;
	const lane_plan *a = &lp[0];
	bool whole = true, same = !a->edge || a->shifted;
	for (int l = 0; l < LANES; l++) {
		const lane_plan *q = &lp[l];
		whole = whole && !q->edge && q->rows == (1 << width) - 1;
		same = same && q->rows == a->rows && q->edge == a->edge && q->shifted == a->shifted;
		if (same && q->edge)
			same = q->lo_at - q->off == a->lo_at - a->off &&
			       q->hi_at - q->off == a->hi_at - a->off &&
			       !memcmp(&q->lo_ctl, &a->lo_ctl, sizeof q->lo_ctl) &&
			       !memcmp(&q->hi_ctl, &a->hi_ctl, sizeof q->hi_ctl);
	}
	return whole ? LANES_WHOLE : same ? LANES_SAME : LANES_MIXED;
}

/* Lanes into rows, the inverse for four columns: row l gets in[s][l]. */
static inline __attribute__((always_inline)) void lanes_out(const v8 *in, q4 row[LANES])
{
#if defined(__AVX__)
	__m256 t0 = _mm256_unpacklo_ps((__m256)in[0], (__m256)in[1]);
	__m256 t1 = _mm256_unpackhi_ps((__m256)in[0], (__m256)in[1]);
	__m256 t2 = _mm256_unpacklo_ps((__m256)in[2], (__m256)in[3]);
	__m256 t3 = _mm256_unpackhi_ps((__m256)in[2], (__m256)in[3]);
	__m256 r[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),
	               _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};
	for (int l = 0; l < 4; l++) {
		row[l] = (q4)_mm256_castps256_ps128(r[l]);
		row[l + 4] = (q4)_mm256_extractf128_ps(r[l], 1);
	}
#else
	for (int l = 0; l < LANES; l++)
		row[l] = (q4){in[0][l], in[1][l], in[2][l], in[3][l]};
#endif
}

/* B^T times each column of t (each row of d times B already), stored
 * straight into V at lanes j.. of channel ci */
static inline __attribute__((always_inline)) void input_columns(const wino *w, int m,
                                                                v8 t[TILE][TILE], int j, int ci)
{
	int tile = m + 2;
	/* the stride in a local: the stores may alias anything, *w included */
	const size_t vs = w->vs;
	float *v = w->v + (size_t)ci * w->ld + j;
	for (int s = 0; s < tile; s++) {
		v8 col[TILE], r[TILE];
		for (int k = 0; k < tile; k++)
			col[k] = t[k][s];
		b_t(m, col, r);
		float *vk = v + s * vs;
		for (int k = 0; k < tile; k++, vk += tile * vs)
			store8(vk, r[k]);
	}
}

/* V = B^T d B for channels [c0, c1), a group of eight tiles at a time:
 * each row of d times B as it is gathered, then B^T times each column,
 * stored straight into V (the other order kept all 36 values of d and of
 * B^T d on the stack: three times the stores, and this CPU stores a
 * vector in two cycles). */
static inline __attribute__((always_inline)) void
input_group(const wino *w, int m, const lane_plan lp[LANES], int kind, int j, int ci)
{
	const rt_conv *p = w->p;
	int tile = m + 2;
	const float *base = w->x + ci * (size_t)p->h * p->w;
	v8 t[TILE][TILE];
	for (int r = 0; r < tile; r++) {
		v8 d[TILE];
		gather_row(lp, base, p->w, r, tile, kind, d);
		b_t(m, d, t[r]);
	}
	input_columns(w, m, t, j, ci);
}

#if WINO_ROWS
/* The same for a group of rows of tiles in rows mode (wino_rows): F(4x4),
 * pad 1 */
static inline __attribute__((always_inline)) void input_group_rows(const wino *w, int kind, int j,
                                                                   int ci)
{
	const rt_conv *p = w->p;
	v8 t[TILE][TILE];
	for (int r = 0; r < TILE; r++) {
		v8 d[TILE];
		rows_gather(w, kind, j, w->x, p->c, ci, p->h, p->w, r - 1, 1, TILE, d);
		b_t(OUT, d, t[r]);
	}
	input_columns(w, OUT, t, j, ci);
}
#endif

static inline __attribute__((always_inline)) void input_tiles(const wino *w, int m, int c0, int c1)
{
	const rt_conv *p = w->p;
#if WINO_ROWS
	int rows = wino_rows(p, m);
	if (rows != ROWS_NONE) {
		for (int j = 0; j < w->tb; j += LANES)
			for (int ci = c0; ci < c1; ci++)
				if (rows == ROWS_ONE)
					input_group_rows(w, ROWS_ONE, j, ci);
				else
					input_group_rows(w, ROWS_TWO, j, ci);
		return;
	}
#endif
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		rt_wino_plan_lanes(w, j, -p->pad, -p->pad, p->h, p->w, p->c, m + 2, lp);
		int kind = rt_wino_lanes_kind(w, lp, j, m + 2);
		for (int ci = c0; ci < c1; ci++)
			if (kind == LANES_WHOLE)
				input_group(w, m, lp, LANES_WHOLE, j, ci);
			else if (kind == LANES_SAME)
				input_group(w, m, lp, LANES_SAME, j, ci);
			else
				input_group(w, m, lp, LANES_MIXED, j, ci);
	}
}

void rt_wino_input_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int c0, c1;
	rt_task_range(p->c, task, tasks, &c0, &c1);
	if (w->out == 2)
		input_tiles(w, 2, c0, c1);
	else
		input_tiles(w, OUT, c0, c1);
}

/* The m x m output tiles of lanes j.. (y[k][s] in lanes) into a channel's
 * plane: whole rows of four where a tile lies inside the map, else the
 * outputs that do */
static inline __attribute__((always_inline)) void store_tiles(const wino *w,
                                                              const lane_plan lp[LANES], int j,
                                                              int m, int kind, v8 y[OUT][OUT],
                                                              float *plane)
{
	/* ow in a register: the stores could alias it */
	const long ow = w->p->ow;
	if (m == OUT && kind != LANES_MIXED) {
		/* straight-line stores, every lane's rows the same (the tests per
		 * lane and row below were half the output transform) */
		int cols = kind == LANES_WHOLE || !lp[0].edge ? m : (int)ow - lp[0].x0;
		for (int k = 0; k < m; k++) {
			if (kind == LANES_SAME && !(lp[0].rows >> k & 1))
				continue;
			q4 rows[LANES];
			lanes_out(y[k], rows);
			for (int l = 0; l < LANES; l++) {
				float *yo = plane + lp[l].off + k * ow;
				if (cols == m)
					memcpy(yo, &rows[l], sizeof rows[l]);
				else
					for (int s = 0; s < cols; s++)
						yo[s] = rows[l][s];
			}
		}
		return;
	}
	for (int k = 0; k < m; k++) {
		q4 rows[LANES];
		if (m == OUT)
			lanes_out(y[k], rows);
		for (int l = 0; l < LANES && j + l < w->tb; l++) {
			const lane_plan *q = &lp[l];
			if (!(q->rows >> k & 1))
				continue;
			float *yo = plane + q->off + k * ow;
			if (m == OUT && !q->edge) {
				memcpy(yo, &rows[l], sizeof rows[l]);
				continue;
			}
			for (int s = 0; s < m && q->x0 + s < ow; s++)
				yo[s] = y[k][s][l];
		}
	}
}

/* y = A^T M A for lanes j.. of output channel o: each row of M's tile
 * times A, then A^T times each column */
static inline __attribute__((always_inline)) void output_y(const wino *w, int m, int j, int o,
                                                           v8 y[OUT][OUT])
{
	int tile = m + 2;
	const size_t ms = w->ms; /* a local: the stores below may alias *w */
	const float *mo = w->m + (size_t)o * w->ld + j;
	v8 t[TILE][OUT];
	for (int k = 0; k < tile; k++) {
		v8 row[TILE];
		for (int s = 0; s < tile; s++)
			row[s] = load8(mo + (k * tile + s) * ms);
		a_t(m, row, t[k]);
	}
	for (int s = 0; s < m; s++) {
		v8 col[TILE], r[OUT];
		for (int k = 0; k < tile; k++)
			col[k] = t[k][s];
		a_t(m, col, r);
		for (int k = 0; k < m; k++)
			y[k][s] = r[k];
	}
}

static inline __attribute__((always_inline)) void
output_group(const wino *w, int m, const lane_plan lp[LANES], int kind, int j, int o)
{
	const rt_conv *p = w->p;
	size_t plane = (size_t)p->oh * p->ow;
	float bias = w->b ? w->b[o] : 0.0f;
	v8 y[OUT][OUT];
	output_y(w, m, j, o, y);
	/* the plain kernels' epilogue order: conv + bias, + residual, then
	 * relu (NaN kept), on whole vectors (a relu decided per value was a
	 * branch mispredicted half the time: 1.5x the layer's time); lanes
	 * off the map compute on zeros and are not stored */
	for (int k = 0; k < m; k++)
		for (int s = 0; s < m; s++)
			y[k][s] += bias;
	if (w->res)
		for (int k = 0; k < m; k++) {
			v8 rv[OUT];
			gather_row(lp, w->res + o * plane, p->ow, k, m, kind, rv);
			for (int s = 0; s < m; s++)
				y[k][s] += rv[s];
		}
	if (w->relu)
		for (int k = 0; k < m; k++)
			for (int s = 0; s < m; s++) {
				vi keep = (y[k][s] > 0) | (y[k][s] != y[k][s]);
				y[k][s] = (v8)((vi)y[k][s] & keep);
			}
	store_tiles(w, lp, j, m, kind, y, w->y + o * plane);
}

#if WINO_ROWS
/* relu on 16 floats, NaN kept (output_group's) */
static inline __m512 relu16(__m512 v)
{
	return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ), v);
}

/* Up to 16 floats of an output row (the lanes of m): output_group's
 * epilogue, then stored */
static inline void row_store(const wino *w, float bias, const float *row_res, float *row_y,
                             __m512 v, __mmask16 m)
{
	v = _mm512_add_ps(v, _mm512_set1_ps(bias));
	if (row_res)
		v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, row_res));
	if (w->relu)
		v = relu16(v);
	_mm512_mask_storeu_ps(row_y, m, v);
}

/* The same for a group of rows of tiles in rows mode: each output row's
 * tiles side by side (row_out), then the epilogue on the row as it lies in
 * the map, the residual read the same way */
static inline __attribute__((always_inline)) void output_group_rows(const wino *w, int kind, int j,
                                                                    int o)
{
	const rt_conv *p = w->p;
	float bias = w->b ? w->b[o] : 0.0f;
	int wd = p->ow;
	/* ROWS_ONE: columns 0-15 then 16 to the map's edge; ROWS_TWO: a row
	 * of each half */
	__mmask16 lo_m = (__mmask16)((1u << (wd < 16 ? wd : 16)) - 1),
	          hi_m = kind == ROWS_ONE ? (__mmask16)((1u << (wd - 16)) - 1) : lo_m;
	v8 y[OUT][OUT];
	output_y(w, OUT, j, o, y);
	for (int k = 0; k < OUT; k++) {
		__m512 lo, hi;
		row_out(y[k], &lo, &hi);
		float *a = (float *)rows_row(w, j, w->y, p->oc, o, p->oh, wd, k);
		const float *ra = w->res ? rows_row(w, j, w->res, p->oc, o, p->oh, wd, k) : NULL;
		if (kind == ROWS_ONE) {
			if (!a)
				break;
			row_store(w, bias, ra, a, lo, lo_m);
			row_store(w, bias, ra ? ra + 16 : NULL, a + 16, hi, hi_m);
			continue;
		}
		float *b = (float *)rows_row(w, j + 4, w->y, p->oc, o, p->oh, wd, k);
		const float *rb =
		    w->res ? rows_row(w, j + 4, w->res, p->oc, o, p->oh, wd, k) : NULL;
		if (a)
			row_store(w, bias, ra, a, lo, lo_m);
		if (b)
			row_store(w, bias, rb, b, hi, hi_m);
	}
}
#endif

/* y = A^T M A for output channels [o0, o1), then the epilogue: each row
 * of M's tile times A, then A^T times each column; each kind of group
 * (rt_wino_lanes_kind) compiled apart */
static inline __attribute__((always_inline)) void output_tiles(const wino *w, int m, int o0, int o1)
{
	const rt_conv *p = w->p;
#if WINO_ROWS
	int rows = wino_rows(p, m);
	if (rows != ROWS_NONE) {
		for (int j = 0; j < w->tb; j += LANES)
			for (int o = o0; o < o1; o++)
				if (rows == ROWS_ONE)
					output_group_rows(w, ROWS_ONE, j, o);
				else
					output_group_rows(w, ROWS_TWO, j, o);
		return;
	}
#endif
	for (int j = 0; j < w->tb; j += LANES) {
		lane_plan lp[LANES];
		rt_wino_plan_lanes(w, j, 0, 0, p->oh, p->ow, p->oc, m, lp);
		int kind = rt_wino_lanes_kind(w, lp, j, m);
		for (int o = o0; o < o1; o++)
			if (kind == LANES_WHOLE)
				output_group(w, m, lp, LANES_WHOLE, j, o);
			else if (kind == LANES_SAME)
				output_group(w, m, lp, LANES_SAME, j, o);
			else
				output_group(w, m, lp, LANES_MIXED, j, o);
	}
}

void rt_wino_output_task(void *ctx, int task, int tasks)
{
	const wino *w = ctx;
	const rt_conv *p = w->p;
	int o0, o1;
	rt_task_range(p->oc, task, tasks, &o0, &o1);
	if (w->out == 2)
		output_tiles(w, 2, o0, o1);
	else
		output_tiles(w, OUT, o0, o1);
}
