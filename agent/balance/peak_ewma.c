// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "balance/peak_ewma.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void peak_ewma_cfg_default(struct peak_ewma_cfg *cfg)
{
	cfg->default_rtt_ns = PEAK_EWMA_DEFAULT_RTT_NS;
	cfg->tau_ns = PEAK_EWMA_DEFAULT_TAU_NS;
	cfg->failure_penalty_ns = PEAK_EWMA_DEFAULT_FAILURE_PENALTY_NS;
	cfg->penalty_duration_ns = PEAK_EWMA_DEFAULT_PENALTY_DURATION_NS;
	cfg->retry_after_cap_ns = PEAK_EWMA_DEFAULT_RETRY_AFTER_CAP_NS;
}

int peak_ewma_cfg_check(const struct peak_ewma_cfg *cfg)
{
	return cfg->tau_ns < PEAK_EWMA_TICK_NS ? -EINVAL : 0;
}

/* now_ns in 1 ms ticks, truncated to the 32 bits the state holds. */
static uint32_t tick_of(uint64_t now_ns)
{
	return (uint32_t)(now_ns / PEAK_EWMA_TICK_NS);
}

/* The state word of an estimate and its update tick. */
static uint64_t pack(float est_ns, uint32_t tick)
{
	uint32_t bits;

	memcpy(&bits, &est_ns, sizeof(bits));
	return (uint64_t)bits << 32 | tick;
}

/* The estimate in a state word, as stored (not decayed). */
static float packed_est(uint64_t state)
{
	uint32_t bits = (uint32_t)(state >> 32);
	float est;

	memcpy(&est, &bits, sizeof(est));
	return est;
}

/* The update tick in a state word. */
static uint32_t packed_tick(uint64_t state)
{
	return (uint32_t)state;
}

/* ns between the update in state and now_ns; a small negative gap is 0. */
static double elapsed_ns(uint64_t state, uint64_t now_ns)
{
	uint32_t ticks = tick_of(now_ns) - packed_tick(state);

	if (ticks > UINT32_MAX - PEAK_EWMA_MAX_SKEW_TICKS)
		return 0;
	return (double)ticks * PEAK_EWMA_TICK_NS;
}

/*
 * exp(-dt / tau): how much of an estimate survives dt ns. No time is
 * exactly 1, which also keeps a tau of 0 (refused by the check, but
 * possible) from making 0/0 a NaN that would poison the estimate.
 */
static double decay(double dt, uint64_t tau_ns)
{
	return dt == 0 ? 1 : exp(-dt / (double)tau_ns);
}

void peak_ewma_init_at(struct peak_ewma *pe, uint64_t est_ns, uint64_t now_ns)
{
	atomic_init(&pe->state, pack((float)est_ns, tick_of(now_ns)));
	atomic_init(&pe->penalty_until_ns, 0);
	atomic_init(&pe->pending, 0);
	atomic_init(&pe->measured, true);
}

void peak_ewma_init(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns)
{
	peak_ewma_init_at(pe, cfg->default_rtt_ns, now_ns);
	atomic_store_explicit(&pe->measured, false, memory_order_relaxed);
}

bool peak_ewma_measured(const struct peak_ewma *pe)
{
	return atomic_load_explicit(&pe->measured, memory_order_relaxed);
}

void peak_ewma_start(struct peak_ewma *pe)
{
	atomic_fetch_add_explicit(&pe->pending, 1, memory_order_relaxed);
}

void peak_ewma_end(struct peak_ewma *pe)
{
	uint32_t old = atomic_load_explicit(&pe->pending, memory_order_relaxed);

	/* An unpaired end must not wrap pending to 4 billion and starve it. */
	while (old && !atomic_compare_exchange_weak_explicit(
			  &pe->pending, &old, old - 1, memory_order_relaxed, memory_order_relaxed))
		;
}

uint32_t peak_ewma_pending(const struct peak_ewma *pe)
{
	return atomic_load_explicit(&pe->pending, memory_order_relaxed);
}

/* The stored estimate est, w of it surviving, aged towards peer. */
static double aged(double est, double w, double peer)
{
	return peer + (est - peer) * w;
}

void peak_ewma_observe(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t sample_ns,
		       uint64_t now_ns, double peer_ns)
{
	uint64_t old = atomic_load_explicit(&pe->state, memory_order_relaxed), new;
	double sample = (double)sample_ns, est, a, dt, w;
	/* Two first samples at once: each replaces the guess, one wins. */
	bool guess = !atomic_load_explicit(&pe->measured, memory_order_relaxed);

	/*
	 * Relaxed is enough: the state word is self-contained, nothing else
	 * is published with it. A lost CAS recomputes from the winner's
	 * state, so each sample is applied once, in some order.
	 */
	do {
		est = packed_est(old);
		dt = elapsed_ns(old, now_ns);
		w = decay(dt, cfg->tau_ns);
		a = aged(est, w, peer_ns);
		if (guess || sample > a) {
			est = sample;
		} else {
			/* The sample informs the whole elapsed time (tower's
			 * rule); capped at a, so a sample at or below the cost
			 * the balancer saw never raises it. */
			est = est * w + sample * (1 - w);
			if (est > a)
				est = a;
		}
		/* dt 0 may mean another worker's newer clock: keep its time. */
		new = pack((float)est, dt == 0 ? packed_tick(old) : tick_of(now_ns));
	} while (!atomic_compare_exchange_weak_explicit(&pe->state, &old, new, memory_order_relaxed,
							memory_order_relaxed));
	if (guess)
		atomic_store_explicit(&pe->measured, true, memory_order_relaxed);
}

void peak_ewma_reset(struct peak_ewma *pe, uint64_t est_ns, uint64_t now_ns)
{
	atomic_store_explicit(&pe->state, pack((float)est_ns, tick_of(now_ns)),
			      memory_order_relaxed);
	atomic_store_explicit(&pe->penalty_until_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&pe->measured, true, memory_order_relaxed);
}

void peak_ewma_remeasure(struct peak_ewma *pe, uint64_t sample_ns, uint64_t now_ns)
{
	atomic_store_explicit(&pe->state, pack((float)sample_ns, tick_of(now_ns)),
			      memory_order_relaxed);
	atomic_store_explicit(&pe->measured, true, memory_order_relaxed);
}

uint64_t peak_ewma_penalty_duration(const struct peak_ewma_cfg *cfg, uint64_t retry_after_ns)
{
	uint64_t d = cfg->penalty_duration_ns;

	if (retry_after_ns > cfg->retry_after_cap_ns)
		retry_after_ns = cfg->retry_after_cap_ns;
	if (retry_after_ns > d)
		d = retry_after_ns;
	return d;
}

void peak_ewma_observe_failure(struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			       uint64_t retry_after_ns, uint64_t now_ns)
{
	uint64_t until = now_ns + peak_ewma_penalty_duration(cfg, retry_after_ns);
	uint64_t old = atomic_load_explicit(&pe->penalty_until_ns, memory_order_relaxed);

	if (!cfg->failure_penalty_ns)
		return;
	/* Only ever later: a short penalty must not cut a Retry-After one. */
	while (old < until &&
	       !atomic_compare_exchange_weak_explicit(&pe->penalty_until_ns, &old, until,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

bool peak_ewma_penalised(const struct peak_ewma *pe, uint64_t now_ns)
{
	return now_ns < atomic_load_explicit(&pe->penalty_until_ns, memory_order_relaxed);
}

double peak_ewma_estimate(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg,
			  uint64_t now_ns, double peer_ns)
{
	uint64_t state = atomic_load_explicit(&pe->state, memory_order_relaxed);

	return aged(packed_est(state), decay(elapsed_ns(state, now_ns), cfg->tau_ns), peer_ns);
}

double peak_ewma_cost(const struct peak_ewma *pe, const struct peak_ewma_cfg *cfg, uint64_t now_ns,
		      double peer_ns)
{
	double cost =
	    peak_ewma_estimate(pe, cfg, now_ns, peer_ns) * ((double)peak_ewma_pending(pe) + 1);

	if (cfg->failure_penalty_ns && peak_ewma_penalised(pe, now_ns))
		cost += (double)cfg->failure_penalty_ns;
	return cost;
}
