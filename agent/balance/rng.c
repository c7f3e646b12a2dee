// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "balance/rng.h"

/*
 * splitmix64: a Weyl sequence (add an odd constant, the golden ratio in
 * fixed point) passed through a 64-bit finaliser. Every state is valid and
 * the period is 2^64, so seeding is a plain assignment.
 */
#define RNG_GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

void rng_seed(struct rng *r, uint64_t seed)
{
	r->state = seed;
}

uint64_t rng_next(struct rng *r)
{
	uint64_t z;

	r->state += RNG_GOLDEN_GAMMA;
	z = r->state;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t rng_below(struct rng *r, uint64_t n)
{
	uint64_t x, limit;

	if (n == 0)
		return 0;
	/*
	 * Reject the top partial copy of [0, n) so every residue is equally
	 * likely; limit is the largest multiple of n that fits, minus one.
	 * At most half the draws can be rejected, usually almost none.
	 */
	limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;
	do
		x = rng_next(r);
	while (x > limit);
	return x % n;
}

double rng_unit(struct rng *r)
{
	/* The top 53 bits fill a double's mantissa exactly. */
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}
