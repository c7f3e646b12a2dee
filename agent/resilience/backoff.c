// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/backoff.h"

#include <errno.h>

uint64_t backoff_ceiling(uint64_t base_ns, uint64_t max_ns, uint32_t attempt)
{
	uint64_t c = base_ns;

	/* Stops doubling at max_ns, so the loop is short and cannot overflow. */
	while (attempt-- && c < max_ns)
		c = c > UINT64_MAX / 2 ? UINT64_MAX : c * 2;
	return c < max_ns ? c : max_ns;
}

uint64_t backoff_full_jitter(struct rng *rng, uint64_t base_ns, uint64_t max_ns, uint32_t attempt)
{
	uint64_t c = backoff_ceiling(base_ns, max_ns, attempt);

	return c == UINT64_MAX ? rng_next(rng) : rng_below(rng, c + 1);
}

uint64_t backoff_jitter(struct rng *rng, uint64_t base_ns, double jitter)
{
	double f;

	if (jitter < 0)
		jitter = 0;
	if (jitter > 1)
		jitter = 1;
	f = 1 + jitter * (2 * rng_unit(rng) - 1);
	/* Converting a double of 2^64 or more is undefined: clamp instead. */
	if ((double)base_ns * f >= 0x1.0p64)
		return UINT64_MAX;
	return (uint64_t)((double)base_ns * f);
}

uint64_t backoff_double(uint64_t cur_ns, uint64_t max_ns)
{
	if (cur_ns >= max_ns / 2)
		return max_ns;
	return cur_ns * 2;
}
