// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>

#include "balance/peak_ewma.h"

#define MS PEAK_EWMA_NS_PER_MS
#define S PEAK_EWMA_NS_PER_S
/* The clock starts away from 0 so nothing depends on a zero time. */
#define T0 (1000 * S)

static struct peak_ewma_cfg cfg;
static struct peak_ewma pe;

static void setup(void)
{
	peak_ewma_cfg_default(&cfg);
	/* A measured 30 ms (the guess of init() has its own test). */
	peak_ewma_init_at(&pe, 30 * MS, T0);
}

TestSuite(balance_peak_ewma, .init = setup);

/* Within float rounding of the expected value. */
static void assert_near(double got, double want)
{
	cr_assert(fabs(got - want) <= fabs(want) * 1e-6 + 1e-3, "got %.3f, want %.3f", got, want);
}

Test(balance_peak_ewma, defaults)
{
	cr_assert_eq(cfg.default_rtt_ns, 30 * MS);
	cr_assert_eq(cfg.tau_ns, 10 * S);
	cr_assert_eq(cfg.failure_penalty_ns, 5 * S);
	cr_assert_eq(cfg.penalty_duration_ns, 1 * S);
	cr_assert_eq(cfg.retry_after_cap_ns, 300 * S);
	cr_assert_eq(peak_ewma_cfg_check(&cfg), 0);
	cfg.tau_ns = 0;
	cr_assert_eq(peak_ewma_cfg_check(&cfg), -EINVAL);
}

Test(balance_peak_ewma, new_endpoint_costs_default_rtt)
{
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0, 0), 30e6);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0, 0), 30e6);
}

/*
 * Rule 4, for a service with nothing measured yet: init()'s 30 ms is a
 * guess, and the first sample replaces it. Averaged in, a 1 ms answer a
 * millisecond after start-up would count 1e-4 and the endpoint would be
 * balanced on the guess for tens of seconds.
 */
Test(balance_peak_ewma, first_sample_replaces_a_guess)
{
	struct peak_ewma g;

	peak_ewma_init(&g, &cfg, T0);
	cr_assert(!peak_ewma_measured(&g));
	cr_assert(peak_ewma_measured(&pe), "init_at() starts measured");
	peak_ewma_observe(&g, &cfg, 1 * MS, T0 + 1 * MS, 30e6);
	cr_assert(peak_ewma_measured(&g));
	cr_assert_eq(peak_ewma_estimate(&g, &cfg, T0 + 1 * MS, 30e6), 1e6);
	/* From then on, averaged: a 0.5 ms sample at once does not move it. */
	peak_ewma_observe(&g, &cfg, 500000, T0 + 1 * MS, 30e6);
	cr_assert_eq(peak_ewma_estimate(&g, &cfg, T0 + 1 * MS, 30e6), 1e6);
	/* A measured start averages its first sample like any other. */
	peak_ewma_observe(&pe, &cfg, 1 * MS, T0 + 1 * MS, 30e6);
	cr_assert_gt(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS, 30e6), 29e6);
	/* A failure is no sample: still a guess. */
	peak_ewma_init(&g, &cfg, T0);
	peak_ewma_observe_failure(&g, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0);
	cr_assert(!peak_ewma_measured(&g));
}

Test(balance_peak_ewma, estimate_decays_with_tau)
{
	/* One tau later: 30 ms / e. Two: / e^2. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S, 0), 30e6 * exp(-1));
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 20 * S, 0), 30e6 * exp(-2));
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1500 * MS, 0), 30e6 * exp(-0.15));
	/* Reading never changes the state. */
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0, 0), 30e6);
}

Test(balance_peak_ewma, peak_wins_at_once)
{
	peak_ewma_observe(&pe, &cfg, 50 * MS, T0 + 1 * MS, 0);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS, 0), 50e6);
	/* Even with no time elapsed since the last update. */
	peak_ewma_observe(&pe, &cfg, 80 * MS, T0 + 1 * MS, 0);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS, 0), 80e6);
}

Test(balance_peak_ewma, lower_sample_is_averaged_over_time)
{
	double w = exp(-0.1); /* 1 s elapsed, tau 10 s */
	double peer = 20e6, want = 30e6 * w + 10e6 * (1 - w);

	/* Peers at 20 ms: 30 ms would have aged to 29.05 ms; a 10 ms sample
	 * pulls the stored estimate towards it (tower's rule). */
	peak_ewma_observe(&pe, &cfg, 10 * MS, T0 + 1 * S, peer);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S, peer), want);
	/* A second lower sample in the same instant does not move it. */
	peak_ewma_observe(&pe, &cfg, 1 * MS, T0 + 1 * S, peer);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S, peer), want);
}

Test(balance_peak_ewma, a_lower_sample_never_raises_the_cost)
{
	double peer = 2e6, a;

	/* A slow sample, then 10 s unsampled: aged to 2 + 98/e ms. */
	peak_ewma_observe(&pe, &cfg, 100 * MS, T0, peer);
	a = peer + (100e6 - peer) * exp(-1);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S, peer), a);
	/* 30 ms is below that: tower's average (100/e + 30(1 - 1/e) = 55.7)
	 * would raise it; it stays at the aged 38.1 ms instead. */
	peak_ewma_observe(&pe, &cfg, 30 * MS, T0 + 10 * S, peer);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S, peer), a);
	/* 50 ms is above it: a peak. */
	peak_ewma_observe(&pe, &cfg, 50 * MS, T0 + 10 * S, peer);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S, peer), 50e6);
}

Test(balance_peak_ewma, exact_sequence)
{
	double peer = 10e6, est = 30e6, w, a;

	/* 100 ms; 5 ms after 2 s; 60 ms after 5 s more; peers at 10 ms. */
	peak_ewma_observe(&pe, &cfg, 100 * MS, T0, peer);
	est = 100e6;
	assert_near(peak_ewma_estimate(&pe, &cfg, T0, peer), est);
	peak_ewma_observe(&pe, &cfg, 5 * MS, T0 + 2 * S, peer);
	w = exp(-0.2);
	a = peer + (est - peer) * w;
	est = est * w + 5e6 * (1 - w);
	cr_assert_lt(est, a, "5 ms is below the peers: averaged, below the aged estimate");
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 2 * S, peer), est);
	peak_ewma_observe(&pe, &cfg, 60 * MS, T0 + 7 * S, peer);
	/* 60 ms is below the stored estimate but above the aged one: a peak
	 * against the cost the balancer sees. */
	w = exp(-0.5);
	cr_assert_lt(60e6, est);
	cr_assert_gt(60e6, peer + (est - peer) * w);
	est = 60e6;
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 7 * S, peer), est);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 17 * S, peer),
		    peer + (est - peer) * exp(-1));
}

Test(balance_peak_ewma, cost_counts_pending)
{
	peak_ewma_start(&pe);
	peak_ewma_start(&pe);
	cr_assert_eq(peak_ewma_pending(&pe), 2);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0, 0), 90e6);
	peak_ewma_end(&pe);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0, 0), 60e6);
	peak_ewma_end(&pe);
	/* An unpaired end does not wrap. */
	peak_ewma_end(&pe);
	cr_assert_eq(peak_ewma_pending(&pe), 0);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0, 0), 30e6);
}

Test(balance_peak_ewma, failure_penalty)
{
	cr_assert_eq(peak_ewma_penalty_duration(&cfg, PEAK_EWMA_NO_RETRY_AFTER), 1 * S);
	/* Retry-After lengthens the penalty, up to the cap; never shortens it. */
	cr_assert_eq(peak_ewma_penalty_duration(&cfg, 500 * MS), 1 * S);
	cr_assert_eq(peak_ewma_penalty_duration(&cfg, 120 * S), 120 * S);
	cr_assert_eq(peak_ewma_penalty_duration(&cfg, 3600 * S), 300 * S);

	/* A fast failure now costs far more than a healthy 30 ms. */
	peak_ewma_observe_failure(&pe, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0 + 1 * MS);
	cr_assert(peak_ewma_penalised(&pe, T0 + 1 * MS));
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0 + 1 * MS, 30e6), 5e9 + 30e6);
	/* The estimate itself is untouched: the penalty is a term of its own. */
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS, 30e6), 30e6);
	/* A longer Retry-After extends it; a shorter failure after does not cut it. */
	peak_ewma_observe_failure(&pe, &cfg, 120 * S, T0 + 2 * MS);
	peak_ewma_observe_failure(&pe, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0 + 3 * MS);
	cr_assert(peak_ewma_penalised(&pe, T0 + 2 * MS + 120 * S - 1));
	cr_assert(!peak_ewma_penalised(&pe, T0 + 2 * MS + 120 * S));
	/* Off: no penalty at all. */
	{
		struct peak_ewma_cfg off = cfg;
		struct peak_ewma e;

		off.failure_penalty_ns = 0;
		peak_ewma_init(&e, &off, T0);
		peak_ewma_observe_failure(&e, &off, PEAK_EWMA_NO_RETRY_AFTER, T0);
		cr_assert(!peak_ewma_penalised(&e, T0));
		cr_assert_eq(peak_ewma_cost(&e, &off, T0, 30e6), 30e6);
	}
}

/*
 * Rule 1: a failure's penalty expires in bounded time. One 503 from an
 * endpoint whose peers answer in 2 ms: the old code fed it as a 5 s
 * sample that decayed with tau and was still about 650 ms (300 x the
 * peers) 20 s later; now its cost is back to exactly its latency once
 * the penalty duration (1 s) has passed.
 */
Test(balance_peak_ewma, one_failure_costs_nothing_after_its_penalty)
{
	double peer = 2e6;

	peak_ewma_init_at(&pe, 2 * MS, T0);
	peak_ewma_observe(&pe, &cfg, 2 * MS, T0 + 10 * MS, peer);
	peak_ewma_observe_failure(&pe, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0 + 20 * MS);
	cr_assert_gt(peak_ewma_cost(&pe, &cfg, T0 + 20 * MS + 999 * MS, peer), 1e9);
	assert_near(peak_ewma_cost(&pe, &cfg, T0 + 20 * MS + 1 * S, peer), 2e6);
	/* Retry-After: 3600 is honoured, but only up to the 300 s cap. */
	peak_ewma_observe_failure(&pe, &cfg, 3600 * S, T0 + 2 * S);
	cr_assert_gt(peak_ewma_cost(&pe, &cfg, T0 + 2 * S + 299 * S, peer), 1e9);
	cr_assert_lt(peak_ewma_cost(&pe, &cfg, T0 + 2 * S + 300 * S, peer), 3e6);
}

/*
 * Rule 2: an unsampled estimate ages towards its peers', from above and
 * from below, never towards zero. The old code decayed it to zero, so a
 * 650 ms peak stayed above peers at 2 ms for about a minute and a fast
 * endpoint's record (1 ms against peers now at 50 ms) stayed cheapest
 * for ever.
 */
Test(balance_peak_ewma, unsampled_estimate_ages_towards_its_peers)
{
	struct peak_ewma fast;
	double peer = 2e6;

	peak_ewma_observe(&pe, &cfg, 650 * MS, T0, peer);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S, peer), 2e6 + 648e6 * exp(-1));
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 60 * S, peer), 2e6 + 648e6 * exp(-6));
	/* Long unsampled: the peers' estimate, not zero. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 600 * S, peer), 2e6);

	peak_ewma_init_at(&fast, 1 * MS, T0);
	assert_near(peak_ewma_estimate(&fast, &cfg, T0 + 10 * S, 50e6), 50e6 - 49e6 * exp(-1));
	assert_near(peak_ewma_estimate(&fast, &cfg, T0 + 600 * S, 50e6), 50e6);
	/* A sample brings it back to what it measures. */
	peak_ewma_observe(&fast, &cfg, 1 * MS, T0 + 600 * S, 50e6);
	assert_near(peak_ewma_estimate(&fast, &cfg, T0 + 600 * S, 50e6), 1e6);
}

/* Rule 3's sample: an exploration's answer replaces a stale estimate. */
Test(balance_peak_ewma, remeasure_replaces_up_and_down)
{
	peak_ewma_observe(&pe, &cfg, 650 * MS, T0, 2e6);
	peak_ewma_start(&pe);
	peak_ewma_observe_failure(&pe, &cfg, 120 * S, T0);
	peak_ewma_remeasure(&pe, 2 * MS, T0 + 1 * S);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S, 2e6), 2e6);
	peak_ewma_remeasure(&pe, 40 * MS, T0 + 2 * S);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 2 * S, 2e6), 40e6);
	/* Penalty and pending are not its business. */
	cr_assert(peak_ewma_penalised(&pe, T0 + 2 * S));
	cr_assert_eq(peak_ewma_pending(&pe), 1);
}

Test(balance_peak_ewma, reset_after_recovery)
{
	peak_ewma_start(&pe);
	peak_ewma_observe_failure(&pe, &cfg, 120 * S, T0);
	/* Readmitted a second later at the peers' 12 ms: penalty lifted. */
	peak_ewma_reset(&pe, 12 * MS, T0 + 1 * S);
	cr_assert(!peak_ewma_penalised(&pe, T0 + 1 * S));
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S, 0), 12e6);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 11 * S, 0), 12e6 * exp(-1));
	cr_assert_eq(peak_ewma_pending(&pe), 1);
}

Test(balance_peak_ewma, clock_skew_between_workers)
{
	peak_ewma_observe(&pe, &cfg, 50 * MS, T0 + 10 * MS, 0);
	/* A worker whose clock read is 3 ms older sees no negative time. */
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 7 * MS, 0), 50e6);
	peak_ewma_observe(&pe, &cfg, 10 * MS, T0 + 7 * MS, 0);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 10 * MS, 0), 50e6);
	/* The update time stayed at the newer clock. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * MS + 10 * S, 0), 50e6 * exp(-1));
}

Test(balance_peak_ewma, custom_cfg)
{
	struct peak_ewma_cfg c = cfg;
	struct peak_ewma e;

	c.default_rtt_ns = 2 * MS;
	c.tau_ns = 1 * S;
	c.failure_penalty_ns = 1 * S;
	c.penalty_duration_ns = 200 * MS;
	peak_ewma_init(&e, &c, T0);
	assert_near(peak_ewma_estimate(&e, &c, T0 + 1 * S, 0), 2e6 * exp(-1));
	peak_ewma_observe_failure(&e, &c, PEAK_EWMA_NO_RETRY_AFTER, T0);
	cr_assert_eq(peak_ewma_cost(&e, &c, T0, 2e6), 1e9 + 2e6);
	cr_assert_eq(peak_ewma_cost(&e, &c, T0 + 200 * MS, 2e6), 2e6);
}

enum { THREADS = 4, ROUNDS = 100000 };

static void *hammer(void *arg)
{
	uint64_t id = (uintptr_t)arg;

	for (uint64_t i = 0; i < ROUNDS; i++) {
		peak_ewma_start(&pe);
		(void)peak_ewma_cost(&pe, &cfg, T0 + i * 10000, 0);
		/* Samples between 10 and 40 ms. */
		peak_ewma_observe(&pe, &cfg, (10 + (i + id) % 31) * MS, T0 + i * 10000, 0);
		peak_ewma_end(&pe);
	}
	return NULL;
}

Test(balance_peak_ewma, concurrent_smoke)
{
	pthread_t th[THREADS];
	double est;

	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hammer, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(peak_ewma_pending(&pe), 0);
	/* Every sample was 10..40 ms and a peak can only be a sample. */
	est = peak_ewma_estimate(&pe, &cfg, T0 + ROUNDS * 10000ull, 0);
	cr_assert(est >= 10e6 && est <= 40e6, "estimate %.0f ns", est);
}
