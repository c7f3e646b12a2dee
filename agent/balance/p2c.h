/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Power of two choices: pick two distinct candidates at random and take
 * the cheaper. Near-best choices at O(1), and no herd on a single "best"
 * endpoint when many workers pick at once. The cost is the caller's
 * (peak_ewma_cost() for HTTP and for opaque TCP's connect latency), so
 * this module holds no endpoint state at all. Docs: docs/resilience.md.
 *
 * Candidates are a filtered index list the caller builds: only endpoints
 * that are ready and whose breaker lets traffic through belong in it.
 */
#ifndef SHOAL_BALANCE_P2C_H
#define SHOAL_BALANCE_P2C_H

#include <stdint.h>

#include "balance/rng.h"

/*
 * Exploration (done by the caller, agent/proxy/balance.c): a healthy
 * endpoint that has been sent nothing for this long gets the next
 * request, so that P2C, which never picks the dearest of three, cannot
 * starve it of the samples that would bring its cost back. One request
 * per endpoint per interval bounds the share this takes.
 */
#define P2C_DEFAULT_EXPLORE_AFTER_NS 1000000000ull

/* The pick of an empty candidate list. */
#define P2C_NONE UINT32_MAX

/* The cost of endpoint idx (an element of the candidate list). */
typedef double (*p2c_cost_fn)(void *ctx, uint32_t idx);

/*
 * One of cand[0..n): none (P2C_NONE) when n == 0, cand[0] when n == 1,
 * otherwise the cheaper of two distinct positions drawn uniformly from
 * rng (a tie goes to the first drawn). Returns the element, not its
 * position. cand must not hold duplicates. Thread-safe when each thread
 * passes its own rng and cost() is thread-safe.
 */
uint32_t p2c_pick(struct rng *rng, const uint32_t *cand, uint32_t n, p2c_cost_fn cost, void *ctx);

/*
 * As p2c_pick(), but avoiding the element avoid (the endpoint a retry
 * just failed on) whenever cand holds any other element: the pick is then
 * made among the others. avoid itself is returned only when it is the
 * sole candidate; P2C_NONE as avoid avoids nothing.
 */
uint32_t p2c_pick_avoid(struct rng *rng, const uint32_t *cand, uint32_t n, uint32_t avoid,
			p2c_cost_fn cost, void *ctx);

#endif
