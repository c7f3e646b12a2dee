// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "balance/p2c.h"

/*
 * The element at position pos of cand with position skip removed: the
 * list as if skip were not there, without copying it.
 */
static uint32_t nth_skipping(const uint32_t *cand, uint32_t pos, uint32_t skip)
{
	return cand[pos >= skip ? pos + 1 : pos];
}

/* P2C over cand minus position skip (skip >= n: nothing removed), m left. */
static uint32_t pick_among(struct rng *rng, const uint32_t *cand, uint32_t m, uint32_t skip,
			   p2c_cost_fn cost, void *ctx)
{
	uint32_t i, j, a, b;

	if (m == 0)
		return P2C_NONE;
	if (m == 1)
		return nth_skipping(cand, 0, skip);
	/* Two distinct positions: j is drawn from the m - 1 that are not i. */
	i = (uint32_t)rng_below(rng, m);
	j = (uint32_t)rng_below(rng, m - 1);
	if (j >= i)
		j++;
	a = nth_skipping(cand, i, skip);
	b = nth_skipping(cand, j, skip);
	return cost(ctx, b) < cost(ctx, a) ? b : a;
}

uint32_t p2c_pick(struct rng *rng, const uint32_t *cand, uint32_t n, p2c_cost_fn cost, void *ctx)
{
	return pick_among(rng, cand, n, n, cost, ctx);
}

uint32_t p2c_pick_avoid(struct rng *rng, const uint32_t *cand, uint32_t n, uint32_t avoid,
			p2c_cost_fn cost, void *ctx)
{
	uint32_t k;

	if (avoid != P2C_NONE && n > 1) {
		for (k = 0; k < n; k++)
			if (cand[k] == avoid)
				return pick_among(rng, cand, n - 1, k, cost, ctx);
	}
	return pick_among(rng, cand, n, n, cost, ctx);
}
