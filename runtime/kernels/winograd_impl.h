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

enum { BLOCK_FLOATS = 256 * 1024, ROWS_BLOCK_TILES = 64, BLOCK_MAX = 1024 * 1024, PANEL = 32 };

/* Tiles to a vector: the transforms run eight tiles at once, one per
 * lane (winograd_lanes.h), and blocks are cut at whole groups of eight. */
enum { LANES = 8 };

static inline int tiles_of(int size, int m)
{
	return (size + m - 1) / m;
}

/* Rows of tiles as groups of lanes (rows mode), F(4x4) with pad 1 where a
 * row of tiles reads at most 32 floats of an input row. With AVX-512 a
 * group of lanes is then whole rows of tiles, and each input row goes into
 * the lanes by 16-float loads and one permute per column of the tile
 * (winograd_lanes.h), instead of eight tiles' rows transposed four floats
 * at a time:
 * - ROWS_ONE, maps 25 to 28 wide (ResNet-20's first stage on 28x28
 *   images): a row of seven tiles (30 floats) and an eighth tile past the
 *   map in the last lane (zeros in V and D, never stored). Its GEMM
 *   columns cost an eighth more, which only pays where the transforms are
 *   most of the time: up to 32 channels each way.
 * - ROWS_TWO, maps 13 or 14 wide (its second stage): two rows of four
 *   tiles, 16 floats each, no lane spare; up to 64 channels, so that
 *   ResNet-18/50 (256 and more at 14x14) keep their kernels.
 * wino_rows_fit is the shape's test, for every kernel set: the scratch
 * netcc plans holds the larger count of tiles (total_tiles_max). */
enum { ROWS_NONE, ROWS_ONE, ROWS_TWO };

static inline int wino_rows_fit(const rt_conv *p, int m)
{
	if (m != OUT || p->pad != 1 || p->ow != p->w)
		return ROWS_NONE;
	if (p->ow > 6 * OUT && p->ow <= 7 * OUT && p->c <= 32 && p->oc <= 32)
		return ROWS_ONE;
	if (p->ow > 3 * OUT && p->ow <= 4 * OUT - 2 && p->c <= 64 && p->oc <= 64)
		return ROWS_TWO;
	return ROWS_NONE;
}

#if defined(__AVX512F__)
#define WINO_ROWS 1
#else
#define WINO_ROWS 0
#endif

static inline int wino_rows(const rt_conv *p, int m)
{
	return WINO_ROWS ? wino_rows_fit(p, m) : ROWS_NONE;
}

/* tiles in a row of the enumeration in a rows mode: ROWS_ONE's group of
 * lanes */
static inline int across_in(int rows, const rt_conv *p, int m)
{
	return rows == ROWS_ONE ? LANES : tiles_of(p->ow, m);
}

static inline int tiles_across(const rt_conv *p, int m)
{
	return across_in(wino_rows(p, m), p, m);
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
	return (long)p->n * tiles_of(p->oh, m) * across_in(wino_rows_fit(p, m), p, m);
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
