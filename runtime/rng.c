/* xoshiro256** seeded through splitmix64: small, fast, and the same stream
 * on every platform, which checkpoints and --seed rely on. */
#include <math.h>

#include "runtime.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rt_rng_seed(rt_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_next(rt_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

float rt_rng_uniform(rt_rng *r)
{
	return (float)(rt_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Box-Muller on doubles; one draw per call keeps the stream position simple. */
float rt_rng_normal(rt_rng *r)
{
	double u1 = ((double)(rt_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
	double u2 = (double)(rt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Both values of each Box-Muller pair, for filling large arrays (He
 * initialisation of a ResNet draws tens of millions). */
void rt_rng_normal_fill(rt_rng *r, float *out, size_t n, float scale)
{
	size_t i = 0;
	for (; i + 1 < n; i += 2) {
		double u1 = ((double)(rt_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
		double u2 = (double)(rt_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
		double rad = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
		out[i] = scale * (float)(rad * cos(a));
		out[i + 1] = scale * (float)(rad * sin(a));
	}
	if (i < n)
		out[i] = scale * rt_rng_normal(r);
}
