/* 3x3 convolutions with stride 1 or 2, computed directly: each output
 * pixel's input values broadcast from a zero-padded copy of its image,
 * times the weights transposed so that 16 output channels are two
 * vectors, into six pixels by 16 channels of sums held in registers. As a
 * GEMM the windows were packed first, by a table lookup per value (a
 * stride-2 row is every other float): in ResNet-20's strided layers at a
 * training batch that packing was 30-50% of the time, and the GEMM's 32
 * or 64 rows reused each packed panel only five or ten times. With stride
 * 1 (layers Winograd does not take, weights not prepacked) the forward
 * and both gradients took half the GEMM's time at 16 and 32 channels; the
 * forward of a single input channel, whose 16 sums per pixel are stored
 * one by one, is the GEMM's. The sums run over (channel, kh, kw) in
 * order, one FMA each, as the GEMM's do within a block of K. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "simd.h"
#if defined(__AVX512F__)
#define HAVE_V16 1
#elif defined(__AVX2__)
#define HAVE_VEC8 1
#endif

enum { PIX = 6, OCB = 16 };

/* The padded image: rows and columns from -pad, enough for every window */
static int padded_h(const rt_conv *p)
{
	int h = p->h + 2 * p->pad, need = p->stride * (p->oh - 1) + p->k;
	return h > need ? h : need;
}

static int padded_w(const rt_conv *p)
{
	int w = p->w + 2 * p->pad, need = p->stride * (p->ow - 1) + p->k;
	return w > need ? w : need;
}

/* The weights' floats: c * k * k by oc */
static size_t weight_floats(const rt_conv *p)
{
	return (size_t)p->c * p->k * p->k * p->oc;
}

/* Rows of the padded image a task of the forward holds at a time: all of
 * them, or as many as a GEMM's scratch has room for beside the weights
 * transposed, unless they were prepared so (0: not even one output row's
 * windows fit) */
static int band_rows(const rt_conv *p, bool prepared)
{
	size_t w = prepared ? 0 : weight_floats(p);
	size_t row = (size_t)p->c * padded_w(p), room = rt_gemm_scratch_floats();
	if (w + row * p->k > room)
		return 0;
	size_t rows = (room - w) / row;
	return rows < (size_t)padded_h(p) ? (int)rows : padded_h(p);
}

/* Floats of scratch a task of the forward takes: the weights transposed,
 * unless they were prepared so, and a band of the padded image */
static size_t direct_floats(const rt_conv *p, bool prepared)
{
	return (prepared ? 0 : weight_floats(p)) +
	       (size_t)band_rows(p, prepared) * p->c * padded_w(p);
}

/* one input channel: the GEMM was 1.1x faster (the stores dominate) */
bool rt_conv2d_direct_fits(const rt_conv *p)
{
	return p->k == 3 && (p->stride == 2 || (p->stride == 1 && p->c > 1)) && p->oc % OCB == 0 &&
	       p->oh > 0 && p->ow > 0 && band_rows(p, false) > 0;
}

/* Where the maps are small (7x7 out) the GEMM reuses its weights better
 * (ResNet-18's last strided layer: 1.0 ms direct, 0.75 as a GEMM on one
 * thread); at 14x14 and up the direct kernel was 10-25% faster on two. */
enum { PREPARED_MIN_PIXELS = 100 };

bool rt_conv2d_direct_prepared_fits(const rt_conv *p)
{
	return p->k >= 2 && (p->stride >= 2 || p->c > 1) && p->oc % OCB == 0 && p->oh > 0 &&
	       p->ow > 0 && p->oh * p->ow >= PREPARED_MIN_PIXELS && band_rows(p, true) > 0;
}

/* Blocks of 16 output channels, [kdim][16] each: a block's weights are one
 * stream that the sums read front to back, 64 bytes a tap (laid out
 * [kdim][oc], a 32-channel block's taps were 128 bytes every oc * 4).
 * Output channel o's first weight; its next taps follow OCB floats apart. */
static inline size_t block_at(size_t kdim, int o)
{
	return (size_t)(o / OCB) * kdim * OCB + o % OCB;
}

void rt_direct_weight(int oc, int kdim, const float *w, const float *gamma, const float *var,
                      float eps, float *dst)
{
	for (int o = 0; o < oc; o++) {
		/* the float product rt_bn_fold_weight computes */
		float scale = gamma ? gamma[o] / sqrtf(var[o] + eps) : 1.0f;
		float *d = dst + block_at((size_t)kdim, o);
		for (int k = 0; k < kdim; k++)
			d[(size_t)k * OCB] =
			    gamma ? w[(size_t)o * kdim + k] * scale : w[(size_t)o * kdim + k];
	}
}

/* Scratch from the pool's slot, else allocated (*own, to free); NULL with
 * neither */
static float *scratch_take(rt_threads *t, size_t floats, int *slot, float **own)
{
	float *mem = floats <= rt_gemm_scratch_floats() ? rt_threads_scratch_take(t, floats, slot)
	                                                : (*slot = -1, NULL);
	*own = mem ? NULL : malloc(floats * sizeof(float));
	return mem ? mem : *own;
}

static void scratch_give(rt_threads *t, int slot, float *own)
{
	free(own);
	rt_threads_scratch_give(t, slot);
}

/* Rows [r0, r1) of image n's padded copy into xp, whose planes are rows
 * rows tall (a band, or the whole copy), their zero borders included: a
 * task writes only the rows its pixels' windows read, and zeroes only the
 * borders, where clearing and filling the whole copy cost every task a
 * pass over all of an image it computes part of */
static void pad_rows(const rt_conv *p, const float *x, int n, float *xp, int rows, int r0, int r1)
{
	int wp = padded_w(p), right = wp - p->pad - p->w;
	for (int ci = 0; ci < p->c; ci++) {
		const float *xc = x + ((size_t)n * p->c + ci) * p->h * p->w;
		for (int r = r0; r < r1; r++) {
			float *d = xp + ((size_t)ci * rows + r - r0) * wp;
			int ir = r - p->pad;
			if (ir < 0 || ir >= p->h) {
				memset(d, 0, (size_t)wp * sizeof(float));
				continue;
			}
			for (int c = 0; c < p->pad; c++)
				d[c] = 0.0f;
			memcpy(d + p->pad, xc + (size_t)ir * p->w, (size_t)p->w * sizeof(float));
			for (int c = 0; c < right; c++)
				d[p->pad + p->w + c] = 0.0f;
		}
	}
}

/* Six rows of 16 sums out of registers, by whole rows: read up to a
 * run-time count of rows instead, GCC kept all twelve in memory */
static inline void sums_out(v8 a[PIX][2], float s[PIX][OCB])
{
	for (int i = 0; i < PIX; i++) {
		store8(s[i], a[i][0]);
		store8(s[i] + 8, a[i][1]);
	}
}

/* The forward's sums for NP output pixels (their windows at at[i]) by two
 * vectors of W output channels from o0, over (channel, kh, kw) in order,
 * one FMA each, into s: instantiated for six pixels by eight floats and,
 * where the kernel set has AVX-512's 32 registers, twelve by sixteen. */
/* Weights past this many floats come from memory, not the caches: the
 * sums prefetch each tap's vectors 16 taps ahead (a 256-channel strided
 * layer, 2.4 MB of weights, 4% faster; the stem's 37 KB, slower) */
enum { FAR_WEIGHTS = 64 * 1024 };

#define DIRECT_SUMS(NAME, VT, W, NP, LOAD, SPLAT, STORE)                                           \
	static inline __attribute__((always_inline)) void NAME(                                    \
	    const rt_conv *p, const float *const at[NP], size_t plane, int wp, const float *wt,    \
	    int o0, float s[NP][2 * W])                                                            \
	{                                                                                          \
		VT a[NP][2] = {{{0}}};                                                             \
		size_t kdim = (size_t)p->c * p->k * p->k;                                          \
		const float *wk = wt + block_at(kdim, o0);                                         \
		size_t hi = W == OCB ? kdim * OCB : W;                                             \
		bool far = weight_floats(p) > FAR_WEIGHTS;                                         \
		for (int ci = 0; ci < p->c; ci++)                                                  \
			for (int kh = 0; kh < p->k; kh++)                                          \
				for (int kw = 0; kw < p->k; kw++, wk += OCB) {                     \
					size_t off = ci * plane + (size_t)kh * wp + kw;            \
					if (far) {                                                 \
						__builtin_prefetch(wk + 16 * OCB);                 \
						__builtin_prefetch(wk + 16 * OCB + hi);            \
					}                                                          \
					VT w0 = LOAD(wk), w1 = LOAD(wk + hi);                      \
					for (int i = 0; i < NP; i++) {                             \
						VT v = SPLAT(at[i] + off);                         \
						a[i][0] += v * w0;                                 \
						a[i][1] += v * w1;                                 \
					}                                                          \
				}                                                                  \
		for (int i = 0; i < NP; i++) {                                                     \
			STORE(s[i], a[i][0]);                                                      \
			STORE(s[i] + W, a[i][1]);                                                  \
		}                                                                                  \
	}
DIRECT_SUMS(sums8, v8, 8, PIX, load8, splat, store8)
#if defined(HAVE_V16)
enum { PIX16 = 12 };
DIRECT_SUMS(sums16, v16, 16, PIX16, load16, splat16, store16)
#endif

typedef struct direct_job {
	const rt_conv *p;
	const float *x, *w, *b;
	float *y;
	int relu;
	bool prepared; /* w is in rt_direct_weight's blocks already */
	int split;     /* tasks per image (1: tasks take ranges of images) */
	bool by_oc;    /* an image's tasks take ranges of output channels */
	rt_threads *pool;
	int failed; /* a task found no memory (atomic) */
} direct_job;

/* The sums s of o-block o0 (ob channels) for np pixels from p0, with the
 * GEMM's epilogue: + bias, then relu (NaN kept), without a branch on the
 * values: the sign of a sum is a coin toss to the branch predictor (a 7x7
 * layer on real inputs ran 2.5 times slower than on a ramp) */
static void direct_store(const direct_job *j, float *yn, int o0, int ob, int p0, int np,
                         const float *s, int ld)
{
	int opix = j->p->oh * j->p->ow;
	for (int e = 0; e < ob; e++) {
		size_t row = (size_t)(o0 + e) * opix + p0;
		float bias = j->b ? j->b[o0 + e] : 0.0f;
		for (int i = 0; i < np; i++) {
			float v = j->b ? s[i * ld + e] + bias : s[i * ld + e];
			yn[row + i] = j->relu && v < 0 ? 0.0f : v;
		}
	}
}

#if defined(HAVE_V16)
/* r[i][j] -> r[j][i] for a 16 x 16 block, in registers: pairs of rows
 * interleaved by floats, then by pairs, then 128-bit lanes twice */
static inline void transpose16(__m512 r[16])
{
	__m512 t[16];
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {
		__m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
		__m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
		r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
		r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
		r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
		r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
	}
	for (int i = 0; i < 4; i++) {
		t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
		t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
		t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
		t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
	}
	for (int i = 0; i < 4; i++) {
		r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
		r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
		r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
		r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
	}
}
/* direct_store for sums16's tile, whose np pixels are consecutive in y:
 * transposed in registers, each channel's pixels are one vector, stored
 * under a mask, bias and relu done as vector operations in the same order.
 * Element by element the stores had cost the stem and the training's
 * 16-channel layers (144 taps a tile) a sixth of the FMAs' time. */
static void store16_tile(const direct_job *j, float *yn, int o0, int p0, int np, float s[PIX16][32])
{
	size_t opix = (size_t)j->p->oh * j->p->ow;
	__mmask16 m = (__mmask16)((1u << np) - 1);
	__m512 zero = _mm512_setzero_ps();
	for (int h = 0; h < 2; h++) {
		__m512 r[16];
		for (int i = 0; i < 16; i++)
			r[i] = i < PIX16 ? _mm512_loadu_ps(s[i] + 16 * h) : zero;
		transpose16(r);
		for (int e = 0; e < 16; e++) {
			int o = o0 + 16 * h + e;
			__m512 v = r[e];
			if (j->b)
				v = _mm512_add_ps(v, _mm512_set1_ps(j->b[o]));
			/* zero > v ? zero : v: NaN and -0 pass */
			if (j->relu)
				v = _mm512_max_ps(zero, v);
			_mm512_mask_storeu_ps(yn + o * opix + p0, m, v);
		}
	}
}
#endif

/* The windows of pixels [p0, p0 + np) in the padded image xp, past np the
 * first's again (its sums not kept) */
static void windows_at(const rt_conv *p, const float *xp, int wp, int r0, int p0, int np, int n,
                       const float **at)
{
	for (int i = 0; i < n; i++) {
		int q = p0 + (i < np ? i : 0);
		at[i] = xp + (size_t)(p->stride * (q / p->ow) - r0) * wp + p->stride * (q % p->ow);
	}
}

/* Output channels per block of sums: 32 where the kernel set has sums16
 * and they divide oc, else OCB */
static int oc_block(const rt_conv *p)
{
#if defined(HAVE_V16)
	if (p->oc % 32 == 0)
		return 32;
#endif
	(void)p;
	return OCB;
}

/* Whether an image's split tasks should take ranges of output channels
 * rather than of pixels: where that gives the busiest task fewer tiles of
 * sums. A 14x14 map's 196 pixels are 16 and 17 tiles of six, 96 and 102
 * pixels, which the 12-pixel tiles take in 8 and 9; 256 channels are 4
 * and 4 blocks of 32 (a 256-channel strided layer 4% faster, each weight
 * read by one thread; 28x28 maps and the stem come out even either way,
 * and measured no better). */
static bool by_channels(const rt_conv *p, int split)
{
	int ob = oc_block(p), blocks = p->oc / ob, opix = p->oh * p->ow;
	int pt = PIX;
#if defined(HAVE_V16)
	if (ob == 32)
		pt = PIX16;
#endif
	int busiest_pix = ((opix + PIX - 1) / PIX + split - 1) / split * PIX;
	long by_pix = (long)(busiest_pix + pt - 1) / pt * blocks;
	long by_oc = (long)(blocks + split - 1) / split * ((opix + pt - 1) / pt);
	return by_oc < by_pix;
}

/* Output pixels [q0, q1), channels [o0, o1) of image n, xp its padded
 * copy, wt the weights:
 * a block of output channels over all the pixels before the next, so that
 * its weights (kdim x 32 floats) stay in cache for every pixel */
static void direct_pixels(const direct_job *j, int n, int q0, int q1, int o0, int o1,
                          const float *xp, int rows, int r0, const float *wt)
{
	const rt_conv *p = j->p;
	int wp = padded_w(p), opix = p->oh * p->ow, oc = p->oc;
	size_t plane = (size_t)rows * wp;
	float *yn = j->y + (size_t)n * oc * opix;
#if defined(HAVE_V16)
	for (; oc_block(p) == 32 && o0 < o1; o0 += 32)
		for (int p0 = q0; p0 < q1; p0 += PIX16) {
			int np = q1 - p0 < PIX16 ? q1 - p0 : PIX16;
			const float *at[PIX16];
			windows_at(p, xp, wp, r0, p0, np, PIX16, at);
			float s[PIX16][32];
			sums16(p, at, plane, wp, wt, o0, s);
			store16_tile(j, yn, o0, p0, np, s);
		}
#endif
	for (; o0 < o1; o0 += OCB)
		for (int p0 = q0; p0 < q1; p0 += PIX) {
			int np = q1 - p0 < PIX ? q1 - p0 : PIX;
			const float *at[PIX];
			windows_at(p, xp, wp, r0, p0, np, PIX, at);
			float s[PIX][OCB];
			sums8(p, at, plane, wp, wt, o0, s);
			direct_store(j, yn, o0, OCB, p0, np, &s[0][0], OCB);
		}
}

/* A task's scratch, floats of it (0: none fits): the weights laid out at
 * its front unless they were prepared so (*wt: where they are either
 * way), and what follows them returned; NULL, the job marked failed,
 * where there is none */
static float *task_scratch(const direct_job *j, size_t floats, int *slot, float **own,
                           const float **wt)
{
	const rt_conv *p = j->p;
	float *mem = floats ? scratch_take(j->pool, floats, slot, own) : NULL;
	if (!mem) {
		__atomic_store_n(&((direct_job *)j)->failed, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	*wt = j->w;
	if (j->prepared)
		return mem;
	rt_direct_weight(p->oc, p->c * p->k * p->k, j->w, NULL, NULL, 0, mem);
	*wt = mem;
	return mem + weight_floats(p);
}

/* A task's images: a range of them, or the one whose pixels it shares */
static void task_images(const direct_job *j, int task, int tasks, int *n0, int *n1)
{
	if (j->split == 1)
		rt_task_range(j->p->n, task, tasks, n0, n1);
	else
		*n0 = task / j->split, *n1 = *n0 + 1;
}

static void direct_task(void *ctx, int task, int tasks)
{
	const direct_job *j = ctx;
	const rt_conv *p = j->p;
	int opix = p->oh * p->ow, slot, n0, n1;
	/* padded rows a band holds, and the output rows whose windows they
	 * are: bands of the map go one after another where it is too big */
	int rows = band_rows(p, j->prepared), band = (rows - p->k) / p->stride + 1;
	float *own;
	const float *wt;
	float *xp = task_scratch(j, rows ? direct_floats(p, j->prepared) : 0, &slot, &own, &wt);
	if (!xp)
		return;
	task_images(j, task, tasks, &n0, &n1);
	for (int n = n0; n < n1; n++) {
		int q0 = 0, q1 = opix, o0 = 0, o1 = p->oc;
		if (j->by_oc) {
			int ob = oc_block(p), b0, b1;
			rt_task_range(p->oc / ob, task % j->split, j->split, &b0, &b1);
			o0 = b0 * ob, o1 = b1 * ob;
		} else if (j->split > 1) {
			int tiles = (opix + PIX - 1) / PIX, t0, t1;
			rt_task_range(tiles, task % j->split, j->split, &t0, &t1);
			q0 = t0 * PIX;
			q1 = t1 * PIX < opix ? t1 * PIX : opix;
		}
		/* output rows y to ye in a band: the padded rows under them */
		for (int y = q0 / p->ow; q0 < q1 && y <= (q1 - 1) / p->ow; y += band) {
			int ye = y + band - 1 < (q1 - 1) / p->ow ? y + band - 1 : (q1 - 1) / p->ow;
			int r0 = p->stride * y, r1 = p->stride * ye + p->k;
			pad_rows(p, j->x, n, xp, rows, r0, r1 < padded_h(p) ? r1 : padded_h(p));
			int b0 = y * p->ow > q0 ? y * p->ow : q0;
			int b1 = (ye + 1) * p->ow < q1 ? (ye + 1) * p->ow : q1;
			direct_pixels(j, n, b0, b1, o0, o1, xp, rows, r0, wt);
		}
	}
	scratch_give(j->pool, slot, own);
}

/* ---- few input channels: pixels in vectors ----------------------------------
 * The stem (3 input channels, 7x7, stride 2) has 147 taps and 64 outputs a
 * pixel. Above, its sums are pixels by channels, stored through a
 * transpose in registers; here they are channels by vectors of pixels
 * along an output row, each input vector one load: the padded image is
 * split into its stride's phases (rows and columns even and odd), in which
 * a tap's pixels along a row are contiguous. Per tap, a group of channels'
 * weights are broadcast, and each sum is stored as a whole vector of
 * pixels. The same taps in the same order, one FMA each, from zero: the
 * same bits. AVX-512's 32 registers hold eight channels by three
 * vectors; AVX2's 16, four channels by three. NEON keeps the kernel above
 * (not measured). */
#if defined(HAVE_V16)
typedef v16 vv;
enum { VOB = 8 };
#define vv_load  load16
#define vv_splat splat16
#define vv_store store16
#elif defined(HAVE_VEC8)
typedef v8 vv;
enum { VOB = 4 };
#define vv_load  load8
#define vv_splat splat
#define vv_store store8
#endif
#if defined(HAVE_V16) || defined(HAVE_VEC8)
#define HAVE_PHASES 1
#endif
#if defined(HAVE_PHASES)
enum { VPX = sizeof(vv) / sizeof(float), VNV = 3, VEC_MAX_C = 4 };
typedef int vvi __attribute__((vector_size(sizeof(vv))));

/* A phase plane's row stride: the columns its windows read, in whole
 * vectors */
static int phase_w(const rt_conv *p)
{
	return (p->ow + (p->k - 1) / p->stride + VPX - 1) / VPX * VPX;
}

/* phase rows for output rows [y0, y1) */
static int phase_rows(const rt_conv *p, int y0, int y1)
{
	return y1 - y0 + (p->k - 1) / p->stride;
}

/* A task's scratch: the weights, unless they were prepared so, and the
 * phases of a whole image (a task with fewer rows uses their front) */
static size_t vec_floats(const rt_conv *p, bool prepared)
{
	return (prepared ? 0 : weight_floats(p)) +
	       (size_t)p->c * p->stride * p->stride * phase_rows(p, 0, p->oh) * phase_w(p);
}

/* Few input channels, output rows of whole vectors, and a task's scratch
 * within the pool's slot */
static bool vec_fits(const rt_conv *p, bool prepared)
{
	return (p->stride == 1 || p->stride == 2) && p->c <= VEC_MAX_C && p->k <= 7 &&
	       p->ow % VPX == 0 && p->oc % OCB == 0 &&
	       vec_floats(p, prepared) <= rt_gemm_scratch_floats();
}

/* Image n's phases for output rows [y0, y1): plane (ci, a, b) row i,
 * column j is the padded image's row s i + a, column s j + b, from row
 * s y0 */
static void phases_fill(const rt_conv *p, const float *x, int n, int y0, int y1, float *ph)
{
	int s = p->stride, pw = phase_w(p), rows = phase_rows(p, y0, y1);
	for (int ci = 0; ci < p->c; ci++) {
		const float *xc = x + ((size_t)n * p->c + ci) * p->h * p->w;
		for (int a = 0; a < s; a++)
			for (int b = 0; b < s; b++) {
				float *d = ph + ((size_t)(ci * s + a) * s + b) * rows * pw;
				/* the columns j whose image column s j + b - pad is inside */
				int lo = (p->pad - b + s - 1) / s,
				    hi = (p->w + p->pad - b + s - 1) / s;
				lo = lo < 0 ? 0 : lo > pw ? pw : lo;
				hi = hi > pw ? pw : hi < lo ? lo : hi;
				for (int i = 0; i < rows; i++, d += pw) {
					int iy = s * (y0 + i) + a - p->pad;
					if (iy < 0 || iy >= p->h) {
						memset(d, 0, (size_t)pw * sizeof(float));
						continue;
					}
					const float *row = xc + (size_t)iy * p->w + b - p->pad;
					for (int j = 0; j < lo; j++)
						d[j] = 0.0f;
					/* a constant stride: GCC's loads and permutes */
					if (s == 2)
						for (int j = lo; j < hi; j++)
							d[j] = row[2 * j];
					else
						for (int j = lo; j < hi; j++)
							d[j] = row[j];
					for (int j = hi; j < pw; j++)
						d[j] = 0.0f;
				}
			}
	}
}

/* Output rows [y0, y1) of image n, channels in groups of VOB, VNV vectors
 * of pixels at a time (along rows, a group of them may start a row) */
static void vec_rows(const direct_job *j, int n, int y0, int y1, const float *ph, const float *wt)
{
	const rt_conv *p = j->p;
	int s = p->stride, k = p->k, pw = phase_w(p), rows = phase_rows(p, y0, y1);
	int per_row = p->ow / VPX, nvec = (y1 - y0) * per_row, kdim = p->c * k * k;
	size_t opix = (size_t)p->oh * p->ow, plane = (size_t)rows * pw;
	float *yn = j->y + (size_t)n * p->oc * opix;
	/* each tap's offset in the phases from its pixel's */
	size_t off[VEC_MAX_C * 7 * 7];
	for (int t = 0; t < kdim; t++) {
		int ci = t / (k * k), kh = t % (k * k) / k, kw = t % k;
		off[t] = ((size_t)(ci * s + kh % s) * s + kw % s) * plane + (size_t)(kh / s) * pw +
		         kw / s;
	}
	for (int o0 = 0; o0 < p->oc; o0 += VOB) {
		const float *wk0 = wt + block_at((size_t)kdim, o0);
		for (int v0 = 0; v0 < nvec; v0 += VNV) {
			int nv = nvec - v0 < VNV ? nvec - v0 : VNV;
			const float *at[VNV];
			size_t out[VNV];
			for (int i = 0; i < VNV; i++) {
				int v = v0 + (i < nv ? i : 0), oy = v / per_row,
				    ox = v % per_row * VPX;
				at[i] = ph + (size_t)oy * pw + ox;
				out[i] = (size_t)(y0 + oy) * p->ow + ox;
			}
			vv acc[VOB][VNV] = {{{0}}};
			const float *wk = wk0;
			for (int t = 0; t < kdim; t++, wk += OCB) {
				vv xv[VNV];
				for (int i = 0; i < VNV; i++)
					xv[i] = vv_load(at[i] + off[t]);
				for (int e = 0; e < VOB; e++) {
					vv w = vv_splat(wk + e);
					for (int i = 0; i < VNV; i++)
						acc[e][i] += w * xv[i];
				}
			}
			/* constant bounds, unrolled: with a run-time count of
			 * vectors GCC kept AVX2's sums on the stack, stored
			 * after every FMA */
#pragma GCC unroll 8
			for (int e = 0; e < VOB; e++) {
				float *yo = yn + (size_t)(o0 + e) * opix;
#pragma GCC unroll 3
				for (int i = 0; i < VNV; i++) {
					if (i >= nv)
						break;
					vv v = acc[e][i];
					if (j->b)
						v = v + j->b[o0 + e];
					/* v < 0 ? 0 : v; NaN and -0 pass */
					if (j->relu)
						v = (vv)((vvi)v & ~(vvi)(v < 0));
					vv_store(yo + out[i], v);
				}
			}
		}
	}
}

/* Task `task`'s images, or its rows of one image, in phases */
static void vec_task(void *ctx, int task, int tasks)
{
	const direct_job *j = ctx;
	const rt_conv *p = j->p;
	int slot, n0, n1, y0 = 0, y1 = p->oh;
	float *own;
	const float *wt;
	float *ph = task_scratch(j, vec_floats(p, j->prepared), &slot, &own, &wt);
	if (!ph)
		return;
	task_images(j, task, tasks, &n0, &n1);
	if (j->split > 1)
		rt_task_range(p->oh, task % j->split, j->split, &y0, &y1);
	for (int n = n0; n < n1 && y0 < y1; n++) {
		phases_fill(p, j->x, n, y0, y1, ph);
		vec_rows(j, n, y0, y1, ph, wt);
	}
	scratch_give(j->pool, slot, own);
}
#endif

/* Tasks over n images: four a thread where there are images enough, so
 * that a thread that runs late or slowly (a virtual CPU woken from a
 * sleep) takes fewer; else one a thread, or an image each. Each image's
 * sums are the same whichever task has it. */
static int image_tasks(int n, int threads)
{
	return n >= 4 * threads ? 4 * threads : n < threads ? n : threads;
}

static bool direct_run(rt_threads *t, const rt_conv *p, const float *x, const float *w,
                       bool prepared, const float *b, float *y, int relu)
{
	int threads = rt_threads_count(t);
	direct_job j = {p, x, w, b, y, relu, prepared, 1, false, t, 0};
	int tasks = image_tasks(p->n, threads);
	/* fewer images than threads: each image's pixels split among them
	 * (the same sums for each pixel either way) */
	if (p->n < threads) {
		j.split = (threads + p->n - 1) / p->n;
		tasks = p->n * j.split;
		j.by_oc = by_channels(p, j.split);
	}
	rt_task_fn *fn = direct_task;
#if defined(HAVE_PHASES)
	if (vec_fits(p, prepared))
		fn = vec_task;
#endif
	rt_threads_run(t, fn, &j, tasks);
	return !__atomic_load_n(&j.failed, __ATOMIC_RELAXED);
}

bool rt_conv2d_direct(rt_threads *t, const rt_conv *p, const float *x, const float *w,
                      const float *b, float *y, int relu)
{
	return direct_run(t, p, x, w, false, b, y, relu);
}

bool rt_conv2d_direct_try(rt_threads *t, const rt_conv *p, const float *x, const float *wt,
                          const float *b, float *y, int relu)
{
	return direct_run(t, p, x, wt, true, b, y, relu);
}

/* Output pixel (oy, ox)'s sum over the taps of image xn; wk is its output
 * channel's first weight in the blocks */
static float serial_sum(const rt_conv *p, const float *xn, const float *wk, int oy, int ox)
{
	float s = 0;
	for (int ci = 0; ci < p->c; ci++) {
		const float *xc = xn + (size_t)ci * p->h * p->w;
		for (int kh = 0; kh < p->k; kh++) {
			int iy = oy * p->stride - p->pad + kh;
			for (int kw = 0; kw < p->k; kw++, wk += OCB) {
				int ix = ox * p->stride - p->pad + kw;
				if (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w)
					s += xc[(size_t)iy * p->w + ix] * *wk;
			}
		}
	}
	return s;
}

/* Where no scratch was to be had: the same sums on the calling thread,
 * value by value, reading the blocks of the prepared weights in place
 * (slow, but it needs no memory) */
void rt_conv2d_direct_prepared_serial(const rt_conv *p, const float *x, const float *wt,
                                      const float *b, float *y, int relu)
{
	size_t kdim = (size_t)p->c * p->k * p->k;
	for (int n = 0; n < p->n; n++) {
		const float *xn = x + (size_t)n * p->c * p->h * p->w;
		for (int o = 0; o < p->oc; o++) {
			float *yo = y + ((size_t)n * p->oc + o) * p->oh * p->ow;
			for (int oy = 0; oy < p->oh; oy++)
				for (int ox = 0; ox < p->ow; ox++) {
					float s = serial_sum(p, xn, wt + block_at(kdim, o), oy, ox);
					s += b ? b[o] : 0;
					yo[oy * p->ow + ox] = relu && s < 0 ? 0 : s;
				}
		}
	}
}

/* ---- the weight gradient ---------------------------------------------------- */

/* dw[oc][c * 9] (+)= the images [n0, n1)'s sums of dy times the input
 * under each tap: six taps by 16 output channels of sums in registers
 * over an image's pixels, each pixel's input values broadcast from the
 * padded copy and its dy a row of dy transposed ([pixel][oc]), then added
 * to dw image by image. The scratch: one padded image and its dy
 * transposed. */
static size_t wgrad_floats(const rt_conv *p)
{
	return (size_t)p->c * padded_h(p) * padded_w(p) + (size_t)p->oh * p->ow * p->oc;
}

bool rt_conv2d_grad_weight_direct_fits(const rt_conv *p)
{
	return p->k == 3 && (p->stride == 1 || p->stride == 2) && p->oc % OCB == 0 && p->oh > 0 &&
	       p->ow > 0 && wgrad_floats(p) <= rt_gemm_scratch_floats();
}

bool rt_conv2d_grad_weight_direct(rt_threads *t, const rt_conv *p, const float *x, const float *dy,
                                  int n0, int n1, float *dw)
{
	int kdim = p->c * 9, hp = padded_h(p), wp = padded_w(p), opix = p->oh * p->ow, oc = p->oc;
	size_t plane = (size_t)hp * wp;
	int slot;
	float *own, *mem = scratch_take(t, wgrad_floats(p), &slot, &own);
	if (!mem)
		return false;
	float *xp = mem, *dyt = mem + (size_t)p->c * plane;
	memset(dw, 0, (size_t)oc * kdim * sizeof(float));
	for (int n = n0; n < n1; n++) {
		pad_rows(p, x, n, xp, hp, 0, hp);
		const float *dyn = dy + (size_t)n * oc * opix;
		for (int o = 0; o < oc; o++)
			for (int q = 0; q < opix; q++)
				dyt[(size_t)q * oc + o] = dyn[(size_t)o * opix + q];
		for (int k0 = 0; k0 < kdim; k0 += PIX) {
			/* the taps' offsets in the padded image; past kdim, the
			 * last tap again, its sums not kept */
			size_t off[PIX];
			for (int i = 0; i < PIX; i++) {
				int k = k0 + i < kdim ? k0 + i : kdim - 1;
				off[i] = k / 9 * plane + (size_t)(k % 9 / 3) * wp + k % 3;
			}
			for (int o0 = 0; o0 < oc; o0 += OCB) {
				v8 a[PIX][2] = {{{0}}};
				const float *d = dyt + o0;
				for (int oy = 0; oy < p->oh; oy++) {
					const float *row = xp + (size_t)(p->stride * oy) * wp;
					for (int ox = 0; ox < p->ow; ox++, d += oc) {
						v8 d0 = load8(d), d1 = load8(d + 8);
						for (int i = 0; i < PIX; i++) {
							v8 v = splat(row + off[i] + p->stride * ox);
							a[i][0] += v * d0;
							a[i][1] += v * d1;
						}
					}
				}
				float s[PIX][OCB];
				sums_out(a, s);
				for (int i = 0; i < PIX && k0 + i < kdim; i++)
					for (int e = 0; e < OCB; e++)
						dw[(size_t)(o0 + e) * kdim + k0 + i] += s[i][e];
			}
		}
	}
	scratch_give(t, slot, own);
	return true;
}

/* ---- the input gradient ----------------------------------------------------- */

/* dx = the transposed convolution of dy, six output pixels at a time under
 * one tap: their dy values broadcast, times the tap's weights as rows of
 * input channels (16 a vector), summed over the output channels in
 * registers, then added where those pixels' tap falls in a padded
 * gradient laid out [row][column][channel] (an input channel's vector is
 * contiguous there); at the end that goes back to dx's layout. Each
 * image on one thread: each value's sums are in the same order (tap,
 * pixel, output channel) on any number of threads. The scratch: the
 * weights as [tap][oc][c] and the padded gradient. */
static size_t gin_floats(const rt_conv *p)
{
	return (size_t)9 * p->oc * p->c + (size_t)padded_h(p) * padded_w(p) * p->c;
}

bool rt_conv2d_grad_input_direct_fits(const rt_conv *p)
{
	return p->k == 3 && (p->stride == 1 || p->stride == 2) && p->c % OCB == 0 && p->oh > 0 &&
	       p->ow > 0 && gin_floats(p) <= rt_gemm_scratch_floats();
}

typedef struct gin_direct_job {
	const rt_conv *p;
	const float *dy, *w;
	float *dx;
	rt_threads *pool;
	int failed; /* a task found no memory (atomic) */
} gin_direct_job;

static void gin_direct_task(void *ctx, int task, int tasks)
{
	gin_direct_job *j = ctx;
	const rt_conv *p = j->p;
	int hp = padded_h(p), wp = padded_w(p), opix = p->oh * p->ow, oc = p->oc, c = p->c;
	int slot;
	float *own, *mem = scratch_take(j->pool, gin_floats(p), &slot, &own);
	if (!mem) {
		__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	float *wt = mem, *g = mem + (size_t)9 * oc * c;
	for (int o = 0; o < oc; o++)
		for (int ci = 0; ci < c; ci++)
			for (int tap = 0; tap < 9; tap++)
				wt[((size_t)tap * oc + o) * c + ci] =
				    j->w[((size_t)o * c + ci) * 9 + tap];
	int n0, n1;
	rt_task_range(p->n, task, tasks, &n0, &n1);
	for (int n = n0; n < n1; n++) {
		const float *dyn = j->dy + (size_t)n * oc * opix;
		memset(g, 0, (size_t)hp * wp * c * sizeof(float));
		for (int tap = 0; tap < 9; tap++)
			for (int p0 = 0; p0 < opix; p0 += PIX) {
				int np = opix - p0 < PIX ? opix - p0 : PIX;
				float *at[PIX];
				int di[PIX]; /* the pixels' dy, past np the first's again */
				for (int i = 0; i < PIX; i++) {
					int q = p0 + (i < np ? i : 0);
					di[i] = q - p0;
					at[i] =
					    g + ((size_t)(p->stride * (q / p->ow) + tap / 3) * wp +
					         p->stride * (q % p->ow) + tap % 3) *
					            c;
				}
				for (int c0 = 0; c0 < c; c0 += OCB) {
					v8 a[PIX][2] = {{{0}}};
					const float *wk = wt + (size_t)tap * oc * c + c0;
					for (int o = 0; o < oc; o++, wk += c) {
						v8 w0 = load8(wk), w1 = load8(wk + 8);
						const float *d = dyn + (size_t)o * opix + p0;
						for (int i = 0; i < PIX; i++) {
							v8 v = splat(d + di[i]);
							a[i][0] += v * w0;
							a[i][1] += v * w1;
						}
					}
					float s[PIX][OCB];
					sums_out(a, s);
					for (int i = 0; i < np; i++) {
						store8(at[i] + c0, load8(at[i] + c0) + load8(s[i]));
						store8(at[i] + c0 + 8,
						       load8(at[i] + c0 + 8) + load8(s[i] + 8));
					}
				}
			}
		float *dxn = j->dx + (size_t)n * c * p->h * p->w;
		for (int ci = 0; ci < c; ci++)
			for (int r = 0; r < p->h; r++)
				for (int x = 0; x < p->w; x++)
					dxn[((size_t)ci * p->h + r) * p->w + x] =
					    g[((size_t)(r + p->pad) * wp + x + p->pad) * c + ci];
	}
	scratch_give(j->pool, slot, own);
}

bool rt_conv2d_grad_input_direct(rt_threads *t, const rt_conv *p, const float *dy, const float *w,
                                 float *dx)
{
	int threads = rt_threads_count(t);
	gin_direct_job j = {p, dy, w, dx, t, 0};
	rt_threads_run(t, gin_direct_task, &j, image_tasks(p->n, threads));
	return !__atomic_load_n(&j.failed, __ATOMIC_RELAXED);
}
