/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * PeakEWMA: a latency estimate per endpoint that jumps up at once on a slow
 * response and ages back slowly towards its peers' estimate, times the
 * requests in flight, plus a failure penalty that expires on its own. It
 * is the cost that P2C compares (p2c.h). Docs: docs/resilience.md.
 *
 * One estimator per endpoint, shared by every worker thread: all functions
 * are lock-free and take the time as an argument (CLOCK_MONOTONIC ns in
 * the proxy, anything monotonic in tests), so they are deterministic.
 */
#ifndef SHOAL_BALANCE_PEAK_EWMA_H
#define SHOAL_BALANCE_PEAK_EWMA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PEAK_EWMA_NS_PER_MS 1000000ull
#define PEAK_EWMA_NS_PER_S 1000000000ull

/* A new endpoint's estimate: Linkerd's default, a typical in-cluster RTT. */
#define PEAK_EWMA_DEFAULT_RTT_NS (30 * PEAK_EWMA_NS_PER_MS)
/* Decay time constant: a peak fades to 1/e in 10 s (Linkerd, tower). */
#define PEAK_EWMA_DEFAULT_TAU_NS (10 * PEAK_EWMA_NS_PER_S)
/*
 * The cost a failed response adds while its penalty holds. Far above any
 * real latency, so a fast-failing endpoint stops looking cheap (linkerd2
 * #11669). It is a term of its own, not a sample: it never enters the
 * latency estimate, so it cannot outlive its duration.
 */
#define PEAK_EWMA_DEFAULT_FAILURE_PENALTY_NS (5 * PEAK_EWMA_NS_PER_S)
/*
 * How long a failure without Retry-After keeps its penalty: one breaker
 * backoff (1 s, Linkerd's). Long enough that a flaky endpoint gets about
 * one request per second, short enough that one 503 from a healthy
 * endpoint costs it a second of traffic, not a minute.
 */
#define PEAK_EWMA_DEFAULT_PENALTY_DURATION_NS (1 * PEAK_EWMA_NS_PER_S)
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
	uint64_t default_rtt_ns;      /* estimate of an endpoint with no samples */
	uint64_t tau_ns;	      /* decay time constant, > 0 */
	uint64_t failure_penalty_ns;  /* cost added while penalised; 0: no penalty */
	uint64_t penalty_duration_ns; /* how long a failure without Retry-After is penalised */
	uint64_t retry_after_cap_ns;  /* Retry-After above this counts as this */
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
	_Atomic uint64_t state;		   /* float est_ns << 32 | uint32 tick of t_upd */
	_Atomic uint64_t penalty_until_ns; /* penalised while now < this */
	_Atomic uint32_t pending;	   /* requests in flight: start() minus end() */
	_Atomic bool measured;		   /* the estimate is not a guess (init() sets false) */
};

/* The defaults above. */
void peak_ewma_cfg_default(struct peak_ewma_cfg *cfg);

/* Check cfg: 0, or -EINVAL when tau is 0 or below one tick. */
int peak_ewma_cfg_check(const struct peak_ewma_cfg *cfg);

/*
 * A new endpoint with nothing to go by (no measured peers either):
 * estimate cfg->default_rtt_ns as of now_ns, none pending, not measured,
 * so its first sample replaces the guess whatever it is. Averaged in like
 * any other, a first sample within milliseconds of the guess would count
 * for almost nothing (its weight is 1 - exp(-elapsed / tau)), and a new
 * service would balance on the default's noise for tens of seconds.
 */
void peak_ewma_init(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns);

/*
 * A new endpoint that starts from est_ns, its measured peers' estimate
 * (so that it is neither flooded as the cheapest nor starved as the
 * dearest), as of now_ns, none pending, no penalty. That counts as
 * measured: its first sample, maybe a cold connection's, is averaged in
 * (or is a peak) like any other.
 */
void peak_ewma_init_at(struct peak_ewma *pe, uint64_t est_ns, uint64_t now_ns);

/*
 * A sample that replaces the estimate, up or down, as of now_ns: the
 * answer to an exploration (agent/proxy/balance.c), a request sent to
 * re-measure an endpoint nothing was heard from for a while. Penalty and
 * pending are left alone.
 */
void peak_ewma_remeasure(struct peak_ewma *pe, uint64_t sample_ns, uint64_t now_ns);

/* Has the estimate been measured (a sample, init_at(), reset())? */
bool peak_ewma_measured(const struct peak_ewma *pe);

/* A request was sent to the endpoint. Pair each call with peak_ewma_end(). */
void peak_ewma_start(struct peak_ewma *pe);

/* A request started with peak_ewma_start() finished, however it ended. */
void peak_ewma_end(struct peak_ewma *pe);

/* Requests in flight right now. */
uint32_t peak_ewma_pending(const struct peak_ewma *pe);

/*
 * A response took sample_ns; peer_ns is the peers' estimate the stored one
 * ages towards (peak_ewma_estimate()). Let a be the estimate aged to now.
 * Peak rule: a sample above a replaces the estimate at once. Otherwise
 * the stored estimate moves towards the sample with weight
 * 1 - exp(-elapsed / tau), elapsed being the time since the last update
 * (an average over time, not over responses), and never above a: a sample
 * at or below the current cost cannot raise it. A now_ns older than the
 * last update counts as no time elapsed. Lock-free; concurrent observers
 * each land exactly once.
 */
void peak_ewma_observe(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t sample_ns,
		       uint64_t now_ns, double peer_ns);

/*
 * A failed response (5xx, 429, reset, connect failure): the endpoint is
 * penalised (its cost carries failure_penalty_ns) until now_ns plus
 * peak_ewma_penalty_duration(), or longer if an earlier penalty runs
 * longer. The estimate is left alone, so the penalty ends exactly when
 * it expires. A no-op when failure_penalty_ns is 0 (penalty off).
 */
void peak_ewma_observe_failure(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			       uint64_t retry_after_ns, uint64_t now_ns);

/*
 * How long a failure with retry_after_ns (PEAK_EWMA_NO_RETRY_AFTER: none)
 * is penalised: penalty_duration_ns, or the Retry-After when it asks for
 * longer, capped at retry_after_cap_ns. Retry-After can only lengthen the
 * penalty: a "Retry-After: 0" must not make a failing endpoint look cheap.
 */
uint64_t peak_ewma_penalty_duration(const struct peak_ewma_cfg *cfg, uint64_t retry_after_ns);

/* Is the endpoint penalised at now_ns? */
bool peak_ewma_penalised(const struct peak_ewma *pe, uint64_t now_ns);

/*
 * Replace the estimate with est_ns as of now_ns, whatever it was, and
 * lift any penalty: for an endpoint whose breaker just closed on a
 * successful probe, which starts again from its peers' estimate. Pending
 * is left alone.
 */
void peak_ewma_reset(struct peak_ewma *pe, uint64_t est_ns, uint64_t now_ns);

/*
 * The estimate aged to now_ns, in ns: peer + (est - peer) * w with
 * w = exp(-(now - t_upd) / tau). An endpoint nobody has sampled for a
 * while drifts towards its peers' estimate peer_ns, from above (a peak
 * is forgiven) or from below (a fast record goes stale), never towards
 * zero. peer_ns 0 gives the plain decay of Linkerd and tower.
 */
double peak_ewma_estimate(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			  uint64_t now_ns, double peer_ns);

/*
 * What P2C compares: the aged estimate times (pending + 1), plus
 * failure_penalty_ns while penalised.
 */
double peak_ewma_cost(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns,
		      double peer_ns);

#endif
