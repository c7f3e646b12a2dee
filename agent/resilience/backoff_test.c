// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "resilience/backoff.h"

#define MS BACKOFF_NS_PER_MS
#define S BACKOFF_NS_PER_S

TestSuite(resilience_backoff);

Test(resilience_backoff, ceiling_doubles_to_the_cap)
{
	static const uint64_t want[] = {25 * MS, 50 * MS, 100 * MS, 200 * MS, 250 * MS, 250 * MS};

	for (uint32_t a = 0; a < sizeof(want) / sizeof(want[0]); a++)
		cr_assert_eq(backoff_ceiling(BACKOFF_RETRY_BASE_NS, BACKOFF_RETRY_MAX_NS, a),
			     want[a]);
	/* Huge attempt counts neither loop long nor overflow. */
	cr_assert_eq(backoff_ceiling(25 * MS, 250 * MS, UINT32_MAX), 250 * MS);
	cr_assert_eq(backoff_ceiling(1, UINT64_MAX, 200), UINT64_MAX);
	cr_assert_eq(backoff_ceiling(3, UINT64_MAX, 64), UINT64_MAX);
}

Test(resilience_backoff, full_jitter_bounds_over_many_seeds)
{
	for (uint64_t seed = 0; seed < 1000; seed++) {
		struct rng rng;

		rng_seed(&rng, seed);
		for (uint32_t a = 0; a < 8; a++) {
			uint64_t c = backoff_ceiling(25 * MS, 250 * MS, a);
			uint64_t d = backoff_full_jitter(&rng, 25 * MS, 250 * MS, a);

			cr_assert_leq(d, c, "seed %lu attempt %u: %lu > %lu", seed, a, d, c);
		}
	}
}

Test(resilience_backoff, full_jitter_spreads_over_the_range)
{
	uint32_t hist[10] = {0};
	uint64_t sum = 0;
	struct rng rng;

	rng_seed(&rng, 1);
	for (int i = 0; i < 100000; i++) {
		uint64_t d = backoff_full_jitter(&rng, 25 * MS, 250 * MS, 10);

		hist[d * 10 / (250 * MS + 1)]++;
		sum += d;
	}
	/* Uniform over [0, 250 ms]: each tenth about 10 %, mean about 125 ms. */
	for (int i = 0; i < 10; i++)
		cr_assert(hist[i] > 9400 && hist[i] < 10600, "tenth %d: %u", i, hist[i]);
	cr_assert(sum / 100000 > 123 * MS && sum / 100000 < 127 * MS);
}

Test(resilience_backoff, breaker_jitter_stays_within_half)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	for (uint64_t seed = 0; seed < 1000; seed++) {
		struct rng rng;

		rng_seed(&rng, seed);
		for (int i = 0; i < 10; i++) {
			uint64_t d = backoff_jitter(&rng, 1 * S, 0.5);

			cr_assert(d >= 500 * MS && d < 1500 * MS, "%lu", d);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
	}
	/* And it uses the range, not a sliver of it. */
	cr_assert_lt(lo, 510 * MS);
	cr_assert_gt(hi, 1490 * MS);
}

Test(resilience_backoff, breaker_jitter_edges)
{
	struct rng rng;

	rng_seed(&rng, 3);
	/* No jitter is exact; out-of-range jitter is clamped to [0, 1]. */
	cr_assert_eq(backoff_jitter(&rng, 7 * S, 0), 7 * S);
	cr_assert_eq(backoff_jitter(&rng, 7 * S, -2), 7 * S);
	for (int i = 0; i < 1000; i++)
		cr_assert_lt(backoff_jitter(&rng, 1 * S, 5), 2 * S);
	cr_assert_eq(backoff_jitter(&rng, UINT64_MAX, 0.5) >= UINT64_MAX / 4, 1);
}

Test(resilience_backoff, doubling_is_capped)
{
	cr_assert_eq(backoff_double(1 * S, 60 * S), 2 * S);
	cr_assert_eq(backoff_double(32 * S, 60 * S), 60 * S);
	cr_assert_eq(backoff_double(60 * S, 60 * S), 60 * S);
	cr_assert_eq(backoff_double(UINT64_MAX, UINT64_MAX), UINT64_MAX);
}
