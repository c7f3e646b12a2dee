/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A small seeded random source (splitmix64) for the balancer and the
 * resilience modules. Not thread-safe by design: each worker owns one, so
 * picks never contend on a shared generator, and a test that seeds it gets
 * the same sequence every run. Not for anything that needs secrecy.
 */
#ifndef SHOAL_BALANCE_RNG_H
#define SHOAL_BALANCE_RNG_H

#include <stdint.h>

struct rng {
	uint64_t state; /* any value is a valid state, including 0 */
};

/* Start the sequence at seed. The same seed gives the same sequence. */
void rng_seed(struct rng *r, uint64_t seed);

/* The next 64 uniformly distributed bits. */
uint64_t rng_next(struct rng *r);

/* Uniform in [0, n); n == 0 returns 0. Unbiased (rejection sampling). */
uint64_t rng_below(struct rng *r, uint64_t n);

/* Uniform in [0, 1), with 53 bits of precision. */
double rng_unit(struct rng *r);

#endif
