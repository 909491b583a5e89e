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

enum { BLOCK_FLOATS = 256 * 1024, BLOCK_MAX = 1024 * 1024, PANEL = 32 };

static inline int tiles_of(int size, int m)
{
	return (size + m - 1) / m;
}

/* m x m output tiles in all the images */
static inline long total_tiles(const rt_conv *p, int m)
{
	return (long)p->n * tiles_of(p->oh, m) * tiles_of(p->ow, m);
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

/* Tiles to a vector: the transforms run eight tiles at once, one per
 * lane (winograd_lanes.h), and blocks are cut at whole groups of eight. */
enum { LANES = 8 };

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
