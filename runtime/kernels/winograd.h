/* winograd.h: what the Winograd kernels (winograd.c and the files it
 * calls) and the weight transforms (winograd_weight.c) share: F(m x m,
 * 3x3)'s sizes and its weight transform G.
 *
 *   u[r][s] = sum over i, j of G[r][i] * g[i][j] * G[s][j]   // U = G g G^T
 */
#ifndef NETCC_RUNTIME_WINOGRAD_H
#define NETCC_RUNTIME_WINOGRAD_H

/* TILE, OUT, POS: F(4x4, 3x3)'s, the largest (array sizes); the forward
 * kernel also runs F(2x2, 3x3), 4x4 tiles and 16 positions, where output
 * tiles are few (a 7x7 map at batch 1: 4 tiles of 4x4, whose 36 GEMMs
 * would each be 4 columns wide, against 16 of 2x2) and U smaller (16 / 36
 * the size). Training runs F(4x4) only. */
enum { TILE = 6, OUT = 4, POS = 36 };

static inline int winograd_pos_of(int m)
{
	return (m + 2) * (m + 2);
}

/* F(2x2, 3x3): the interpolation points 0, +-1 and infinity */
static const double G2[4][3] = {
    {1, 0, 0},
    {0.5, 0.5, 0.5},
    {0.5, -0.5, 0.5},
    {0, 0, 1},
};

/* F(4x4, 3x3): 0, +-1, +-2 and infinity */
static const double G[TILE][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

#endif
