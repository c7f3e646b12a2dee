/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Waiting between tries. Pure functions of their arguments:
 * the time and the random source are passed in, so tests are exact.
 * Docs: docs/resilience.md.
 */
#ifndef SHOAL_RESILIENCE_BACKOFF_H
#define SHOAL_RESILIENCE_BACKOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance/rng.h"

#define BACKOFF_NS_PER_MS 1000000ull
#define BACKOFF_NS_PER_S 1000000000ull

/*
 * Retry backoff (Envoy's and Linkerd's defaults): the ceiling starts at
 * 25 ms and doubles per retry up to 250 ms; the wait is drawn uniformly
 * below it (full jitter), so retries of many requests failing together
 * spread out instead of arriving in waves.
 */
#define BACKOFF_RETRY_BASE_NS (25 * BACKOFF_NS_PER_MS)
#define BACKOFF_RETRY_MAX_NS (250 * BACKOFF_NS_PER_MS)

/*
 * The ceiling of retry number attempt (0 = the first retry):
 * min(max_ns, base_ns * 2^attempt), without overflow for any attempt.
 */
uint64_t backoff_ceiling(uint64_t base_ns, uint64_t max_ns, uint32_t attempt);

/*
 * Full jitter: the wait before retry number attempt, uniform in
 * [0, backoff_ceiling(base_ns, max_ns, attempt)]. rng is the caller's.
 */
uint64_t backoff_full_jitter(struct rng *rng, uint64_t base_ns, uint64_t max_ns, uint32_t attempt);

/*
 * base_ns scaled by a factor uniform in [1 - jitter, 1 + jitter), jitter
 * in [0, 1] (clamped): the breaker's ejection time, so endpoints ejected
 * together do not all come back in the same instant.
 */
uint64_t backoff_jitter(struct rng *rng, uint64_t base_ns, double jitter);

/* cur_ns doubled, but at most max_ns (and never overflowing). */
uint64_t backoff_double(uint64_t cur_ns, uint64_t max_ns);

#endif
