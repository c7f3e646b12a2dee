/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * PeakEWMA: a latency estimate per endpoint that jumps up at once on a slow
 * response and decays back slowly, times the requests in flight. It is the
 * cost that P2C compares (p2c.h). Docs: docs/resilience.md.
 *
 * One estimator per endpoint, shared by every worker thread: all functions
 * are lock-free and take the time as an argument (CLOCK_MONOTONIC ns in
 * the proxy, anything monotonic in tests), so they are deterministic.
 */
#ifndef SHOAL_BALANCE_PEAK_EWMA_H
#define SHOAL_BALANCE_PEAK_EWMA_H

#include <stdatomic.h>
#include <stdint.h>

#define PEAK_EWMA_NS_PER_MS 1000000ull
#define PEAK_EWMA_NS_PER_S 1000000000ull

/* A new endpoint's estimate: Linkerd's default, a typical in-cluster RTT. */
#define PEAK_EWMA_DEFAULT_RTT_NS (30 * PEAK_EWMA_NS_PER_MS)
/* Decay time constant: a peak fades to 1/e in 10 s (Linkerd, tower). */
#define PEAK_EWMA_DEFAULT_TAU_NS (10 * PEAK_EWMA_NS_PER_S)
/*
 * The fake sample a failed response feeds in. Far above any real latency,
 * so a fast-failing endpoint stops looking cheap (linkerd2 #11669), yet it
 * decays back to a normal estimate within about a minute.
 */
#define PEAK_EWMA_DEFAULT_FAILURE_PENALTY_NS (5 * PEAK_EWMA_NS_PER_S)
/* Retry-After is honoured up to 5 minutes; longer is a misconfiguration. */
#define PEAK_EWMA_DEFAULT_RETRY_AFTER_CAP_NS (300 * PEAK_EWMA_NS_PER_S)
/* retry_after_ns of a failed response that had no Retry-After. */
#define PEAK_EWMA_NO_RETRY_AFTER 0

/*
 * Time is kept in ticks of 1 ms inside the packed state. 1 ms moves a
 * decay factor by 1e-4 at tau = 10 s, well below the noise of latencies.
 */
#define PEAK_EWMA_TICK_NS PEAK_EWMA_NS_PER_MS
/*
 * How far ahead of a caller's clock another worker's update may be and
 * still count as "now" rather than as a wrap: workers read the clock
 * microseconds apart, 65 s is slack for a descheduled thread.
 */
#define PEAK_EWMA_MAX_SKEW_TICKS (1u << 16)

/* Knobs, per service. Fill with peak_ewma_cfg_default(). */
struct peak_ewma_cfg {
	uint64_t default_rtt_ns;     /* estimate of an endpoint with no samples */
	uint64_t tau_ns;	     /* decay time constant, > 0 */
	uint64_t failure_penalty_ns; /* fake sample of a failure without Retry-After */
	uint64_t retry_after_cap_ns; /* Retry-After above this counts as this */
};

/*
 * One endpoint's estimator.
 *
 * state packs the estimate (a float of ns, high 32 bits) and the tick of
 * its last update (low 32 bits), so one 64-bit CAS updates both and a
 * reader never pairs an estimate with another update's time. A float has
 * 24 bits of mantissa (6e-8 relative), plenty for a latency, and reaches
 * the 300 s cap with room to spare. The tick wraps after 49.7 days: an
 * endpoint nobody has answered for that long may decay as if updated
 * (elapsed mod 49.7 days) ago, which only delays its first pick a little.
 * An update time up to PEAK_EWMA_MAX_SKEW_TICKS ahead of a caller's now
 * (another worker read the clock a moment later) counts as no time elapsed.
 */
struct peak_ewma {
	_Atomic uint64_t state;	  /* float est_ns << 32 | uint32 tick of t_upd */
	_Atomic uint32_t pending; /* requests in flight: start() minus end() */
};

/* The defaults above. */
void peak_ewma_cfg_default(struct peak_ewma_cfg *cfg);

/* Check cfg: 0, or -EINVAL when tau is 0 or below one tick. */
int peak_ewma_cfg_check(const struct peak_ewma_cfg *cfg);

/* A new endpoint: estimate cfg->default_rtt_ns as of now_ns, none pending. */
void peak_ewma_init(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns);

/* A request was sent to the endpoint. Pair each call with peak_ewma_end(). */
void peak_ewma_start(struct peak_ewma *pe);

/* A request started with peak_ewma_start() finished, however it ended. */
void peak_ewma_end(struct peak_ewma *pe);

/* Requests in flight right now. */
uint32_t peak_ewma_pending(const struct peak_ewma *pe);

/*
 * A response took sample_ns. Peak rule: a sample above the stored estimate
 * replaces it at once. Otherwise the estimate moves towards the sample
 * with weight 1 - exp(-elapsed / tau), elapsed being the time since the
 * last update, so the estimate is an average over time, not over
 * responses. A now_ns older than the last update counts as no time
 * elapsed. Lock-free; concurrent observers each land exactly once.
 */
void peak_ewma_observe(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t sample_ns,
		       uint64_t now_ns);

/*
 * A failed response (5xx, 429, reset, connect failure): observe a fake
 * sample of failure_penalty_ns, or of retry_after_ns when the response
 * asked for a longer wait (capped at retry_after_cap_ns). Retry-After can
 * only lengthen the penalty: a "Retry-After: 0" must not make a failing
 * endpoint look cheap. retry_after_ns is PEAK_EWMA_NO_RETRY_AFTER when the
 * response had none.
 */
void peak_ewma_observe_failure(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			       uint64_t retry_after_ns, uint64_t now_ns);

/*
 * Replace the estimate with est_ns as of now_ns, whatever it was: for an
 * endpoint whose breaker just closed on a successful probe, so the
 * failure penalties that got it ejected do not keep it starved for the
 * minute they take to decay. Pending is left alone.
 */
void peak_ewma_reset(struct peak_ewma *pe, uint64_t est_ns, uint64_t now_ns);

/* The fake sample peak_ewma_observe_failure() feeds for retry_after_ns. */
uint64_t peak_ewma_failure_sample(const struct peak_ewma_cfg *cfg, uint64_t retry_after_ns);

/* The estimate decayed to now_ns, in ns: exp(-(now - t_upd) / tau) * est. */
double peak_ewma_estimate(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			  uint64_t now_ns);

/* What P2C compares: the decayed estimate times (pending + 1). */
double peak_ewma_cost(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns);

#endif
