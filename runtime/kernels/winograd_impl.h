/* winograd_impl.h: what the Winograd convolution's files share: the
 * forward driver (winograd.c), the transforms in and out of the tile
 * domain (winograd_transform.c) and the training gradients
 * (winograd_grad.c). A block of tiles (wino) is the unit all of them work
 * on, and its size decides the weight gradient's summation order, so the
 * block's layout and sizes are defined once, here and in winograd.c. Each
 * file is compiled with the Winograd kernels' flags (KFLAGS_winograd). */
#ifndef NETCC_RUNTIME_WINOGRAD_IMPL_H
#define NETCC_RUNTIME_WINOGRAD_IMPL_H

#include <stdbool.h>
#include <string.h>
#if defined(__AVX__) || defined(__SSSE3__)
#include <immintrin.h>
#endif

#include "runtime.h"
#include "simd.h"
#include "winograd.h"

enum {
	BLOCK_FLOATS = 256 * 1024,
	BLOCK_ROWS_FLOATS = 64 * 1024,
	BLOCK_MAX = 1024 * 1024,
	PANEL = 32
};

/* Tiles to a vector: the transforms run eight tiles at once, one per
 * lane (winograd_lanes.h), and blocks are cut at whole groups of eight. */
enum { LANES = 8 };

static inline int tiles_of(int size, int m)
{
	return (size + m - 1) / m;
}

/* Rows of tiles as groups of lanes: F(4x4) on maps 25 to 28 wide (ResNet-20's
 * first stage on 28x28 images), pad 1, with few channels. A row of seven
 * tiles reads 30 floats of each input row, which two 16-float vectors
 * hold, so with AVX-512 a group of lanes is one row of tiles, an eighth
 * tile past the map in the last lane (zeros in V, never stored), and each
 * row goes into the lanes by two loads and a permute per column of the
 * tile, instead of eight tiles' rows transposed four floats at a time
 * (winograd_lanes.h). The eighth lane's GEMM columns cost an eighth more
 * there, which only pays where the transforms are most of the time: up to
 * 32 channels each way. rows_fit is the shape's test, for every kernel
 * set: the scratch is sized for the larger count of tiles (total_tiles_max)
 * wherever netcc plans it. */
static inline bool wino_rows_fit(const rt_conv *p, int m)
{
	return m == OUT && p->pad == 1 && p->ow == p->w && p->ow > 6 * OUT && p->ow <= 7 * OUT &&
	       p->c <= 32 && p->oc <= 32;
}

#if defined(__AVX512F__)
#define WINO_ROWS 1
#else
#define WINO_ROWS 0
#endif

static inline bool wino_rows(const rt_conv *p, int m)
{
	return WINO_ROWS && wino_rows_fit(p, m);
}

/* tiles in a row of the enumeration: a group of lanes in rows mode */
static inline int tiles_across(const rt_conv *p, int m)
{
	return wino_rows(p, m) ? LANES : tiles_of(p->ow, m);
}

/* m x m output tiles in all the images, as this kernel set enumerates
 * them */
static inline long total_tiles(const rt_conv *p, int m)
{
	return (long)p->n * tiles_of(p->oh, m) * tiles_across(p, m);
}

/* the most any kernel set enumerates: what scratch is sized for */
static inline long total_tiles_max(const rt_conv *p, int m)
{
	return (long)p->n * tiles_of(p->oh, m) * (wino_rows_fit(p, m) ? LANES : tiles_of(p->ow, m));
}

/* Where a block's tiles are: image, and output row and column of the
 * tile's corner; found once per block, not per channel. */
typedef struct tile_at {
	int img, y, x;
} tile_at;

typedef struct wino {
	const rt_conv *p;
	const float *x, *u, *b, *res;
	float *y, *v, *m;
	int relu;
	int out;       /* F(out x out, 3x3): 4 or 2 */
	int th, tw;    /* tiles per image, down and across */
	long t0;       /* the block's first tile */
	int tb, ld;    /* tiles in the block; the row stride of V and M */
	size_t vs, ms; /* V's and M's position strides (pos_stride) */
	tile_at *at;   /* the block's tiles */
	rt_threads *pool;
} wino;

/* winograd.c: a block's size, scratch and tiles */
int rt_wino_block_tiles(const rt_conv *p, int m);
size_t rt_wino_block_floats(const rt_conv *p, int m, int tiles);
void rt_wino_scratch(wino *w, float *scratch);
void rt_wino_block_start(wino *w, long total);

/* winograd_transform.c: the block's input tiles into V, and M's out of
 * the tile domain into y (rt_threads tasks over channels) */
void rt_wino_input_task(void *ctx, int task, int tasks);
void rt_wino_output_task(void *ctx, int task, int tasks);

#endif
