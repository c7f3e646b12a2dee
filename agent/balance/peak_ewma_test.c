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
	peak_ewma_init(&pe, &cfg, T0);
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
	cr_assert_eq(cfg.retry_after_cap_ns, 300 * S);
	cr_assert_eq(peak_ewma_cfg_check(&cfg), 0);
	cfg.tau_ns = 0;
	cr_assert_eq(peak_ewma_cfg_check(&cfg), -EINVAL);
}

Test(balance_peak_ewma, new_endpoint_costs_default_rtt)
{
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0), 30e6);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0), 30e6);
}

Test(balance_peak_ewma, estimate_decays_with_tau)
{
	/* One tau later: 30 ms / e. Two: / e^2. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * S), 30e6 * exp(-1));
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 20 * S), 30e6 * exp(-2));
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1500 * MS), 30e6 * exp(-0.15));
	/* Reading never changes the state. */
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0), 30e6);
}

Test(balance_peak_ewma, peak_wins_at_once)
{
	peak_ewma_observe(&pe, &cfg, 50 * MS, T0 + 1 * MS);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS), 50e6);
	/* Even with no time elapsed since the last update. */
	peak_ewma_observe(&pe, &cfg, 80 * MS, T0 + 1 * MS);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS), 80e6);
}

Test(balance_peak_ewma, lower_sample_is_averaged_over_time)
{
	double w = exp(-0.1); /* 1 s elapsed, tau 10 s */

	peak_ewma_observe(&pe, &cfg, 10 * MS, T0 + 1 * S);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S), 30e6 * w + 10e6 * (1 - w));
	/* A second lower sample in the same instant does not move it. */
	peak_ewma_observe(&pe, &cfg, 1 * MS, T0 + 1 * S);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S), 30e6 * w + 10e6 * (1 - w));
}

Test(balance_peak_ewma, exact_sequence)
{
	double est = 30e6, w;

	/* 100 ms, then 20 ms after 2 s, then 40 ms after 5 s more. */
	peak_ewma_observe(&pe, &cfg, 100 * MS, T0);
	est = 100e6;
	assert_near(peak_ewma_estimate(&pe, &cfg, T0), est);
	peak_ewma_observe(&pe, &cfg, 20 * MS, T0 + 2 * S);
	w = exp(-0.2);
	est = est * w + 20e6 * (1 - w);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 2 * S), est);
	peak_ewma_observe(&pe, &cfg, 40 * MS, T0 + 7 * S);
	/* 40 ms is below the stored (undecayed) estimate: averaged, not a peak. */
	cr_assert_lt(40e6, est);
	w = exp(-0.5);
	est = est * w + 40e6 * (1 - w);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 7 * S), est);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 17 * S), est * exp(-1));
}

Test(balance_peak_ewma, cost_counts_pending)
{
	peak_ewma_start(&pe);
	peak_ewma_start(&pe);
	cr_assert_eq(peak_ewma_pending(&pe), 2);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0), 90e6);
	peak_ewma_end(&pe);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0), 60e6);
	peak_ewma_end(&pe);
	/* An unpaired end does not wrap. */
	peak_ewma_end(&pe);
	cr_assert_eq(peak_ewma_pending(&pe), 0);
	cr_assert_eq(peak_ewma_cost(&pe, &cfg, T0), 30e6);
}

Test(balance_peak_ewma, failure_penalty)
{
	cr_assert_eq(peak_ewma_failure_sample(&cfg, PEAK_EWMA_NO_RETRY_AFTER), 5 * S);
	/* Retry-After lengthens the penalty, up to the cap; never shortens it. */
	cr_assert_eq(peak_ewma_failure_sample(&cfg, 1 * S), 5 * S);
	cr_assert_eq(peak_ewma_failure_sample(&cfg, 120 * S), 120 * S);
	cr_assert_eq(peak_ewma_failure_sample(&cfg, 3600 * S), 300 * S);

	/* A fast failure (1 ms) now costs far more than a healthy 30 ms. */
	peak_ewma_observe_failure(&pe, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0 + 1 * MS);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * MS), 5e9);
	peak_ewma_observe_failure(&pe, &cfg, 3600 * S, T0 + 2 * MS);
	/* 300 s is not a float exactly: within rounding. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 2 * MS), 300e9);
	/* And decays back: after 60 s, 300 s * e^-6. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 2 * MS + 60 * S), 300e9 * exp(-6));
}

Test(balance_peak_ewma, reset_after_recovery)
{
	peak_ewma_start(&pe);
	peak_ewma_observe_failure(&pe, &cfg, PEAK_EWMA_NO_RETRY_AFTER, T0);
	/* The probe succeeded in 12 ms a second later: back to that at once. */
	peak_ewma_reset(&pe, 12 * MS, T0 + 1 * S);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 1 * S), 12e6);
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 11 * S), 12e6 * exp(-1));
	cr_assert_eq(peak_ewma_pending(&pe), 1);
}

Test(balance_peak_ewma, clock_skew_between_workers)
{
	peak_ewma_observe(&pe, &cfg, 50 * MS, T0 + 10 * MS);
	/* A worker whose clock read is 3 ms older sees no negative time. */
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 7 * MS), 50e6);
	peak_ewma_observe(&pe, &cfg, 10 * MS, T0 + 7 * MS);
	cr_assert_eq(peak_ewma_estimate(&pe, &cfg, T0 + 10 * MS), 50e6);
	/* The update time stayed at the newer clock. */
	assert_near(peak_ewma_estimate(&pe, &cfg, T0 + 10 * MS + 10 * S), 50e6 * exp(-1));
}

Test(balance_peak_ewma, custom_cfg)
{
	struct peak_ewma_cfg c = cfg;
	struct peak_ewma e;

	c.default_rtt_ns = 2 * MS;
	c.tau_ns = 1 * S;
	c.failure_penalty_ns = 1 * S;
	peak_ewma_init(&e, &c, T0);
	assert_near(peak_ewma_estimate(&e, &c, T0 + 1 * S), 2e6 * exp(-1));
	peak_ewma_observe_failure(&e, &c, PEAK_EWMA_NO_RETRY_AFTER, T0);
	cr_assert_eq(peak_ewma_estimate(&e, &c, T0), 1e9);
}

enum { THREADS = 4, ROUNDS = 100000 };

static void *hammer(void *arg)
{
	uint64_t id = (uintptr_t)arg;

	for (uint64_t i = 0; i < ROUNDS; i++) {
		peak_ewma_start(&pe);
		(void)peak_ewma_cost(&pe, &cfg, T0 + i * 10000);
		/* Samples between 10 and 40 ms. */
		peak_ewma_observe(&pe, &cfg, (10 + (i + id) % 31) * MS, T0 + i * 10000);
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
	est = peak_ewma_estimate(&pe, &cfg, T0 + ROUNDS * 10000ull);
	cr_assert(est >= 10e6 && est <= 40e6, "estimate %.0f ns", est);
}
