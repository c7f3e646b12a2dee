// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>

#include "resilience/retry_budget.h"

#define MS 1000000ull
#define S 1000000000ull
/* Away from 0, and in the middle of a bucket. */
#define T0 (1000 * S + 500 * MS)

static struct retry_budget_cfg cfg;
static struct retry_budget b;

static void setup(void)
{
	retry_budget_cfg_default(&cfg);
	cr_assert_eq(retry_budget_init(&b, &cfg), 0);
}

TestSuite(resilience_retry_budget, .init = setup);

/* Withdraw until refused; how many were allowed. */
static int drain(uint64_t now)
{
	int n = 0;

	while (retry_budget_withdraw(&b, now))
		n++;
	return n;
}

Test(resilience_retry_budget, defaults_and_checks)
{
	struct retry_budget_cfg c = cfg;
	struct retry_budget x;

	cr_assert_eq(cfg.ratio_milli, 200);
	cr_assert_eq(cfg.min_per_s, 10);
	cr_assert_eq(cfg.ttl_ns, 10 * S);
	c.ratio_milli = RETRY_BUDGET_MAX_RATIO_MILLI + 1;
	cr_assert_eq(retry_budget_init(&x, &c), -EINVAL);
	c = cfg;
	c.ttl_ns = 99 * MS;
	cr_assert_eq(retry_budget_cfg_check(&c), -EINVAL);
	c = cfg;
	c.min_per_s = UINT32_MAX;
	cr_assert_eq(retry_budget_cfg_check(&c), -EINVAL);
}

Test(resilience_retry_budget, floor_alone_allows_min_per_s_times_ttl)
{
	/* No traffic: 10/s over a 10 s window is 100 retries. */
	cr_assert_eq(retry_budget_balance(&b, T0), 100);
	cr_assert_eq(drain(T0), 100);
	cr_assert_eq(retry_budget_balance(&b, T0), 0);
	cr_assert_eq(retry_budget_balance_milli(&b, T0), 0);
	/* Still spent 9 s later: the withdrawals are in the window. */
	cr_assert_not(retry_budget_withdraw(&b, T0 + 9 * S));
	/* 10 s later they have expired and the floor is back. */
	cr_assert_eq(drain(T0 + 10 * S), 100);
}

Test(resilience_retry_budget, ratio_of_original_requests)
{
	/* 1000 requests at 0.2 add 200 retries to the 100 of the floor. */
	for (int i = 0; i < 1000; i++)
		retry_budget_deposit(&b, T0);
	cr_assert_eq(retry_budget_balance(&b, T0), 300);
	cr_assert_eq(drain(T0 + 1 * S), 300);
}

Test(resilience_retry_budget, fractional_deposits_add_up)
{
	/* Four requests are 0.8 retries: nothing beyond the floor yet. */
	for (int i = 0; i < 4; i++)
		retry_budget_deposit(&b, T0);
	cr_assert_eq(retry_budget_balance_milli(&b, T0), 100800);
	cr_assert_eq(drain(T0), 100);
	cr_assert_eq(retry_budget_balance_milli(&b, T0), 800);
	retry_budget_deposit(&b, T0);
	cr_assert_eq(drain(T0), 1);
}

Test(resilience_retry_budget, window_slides_bucket_by_bucket)
{
	/* 50 requests per second for 10 s: 10 retries per second of deposits. */
	for (int s = 0; s < 10; s++)
		for (int i = 0; i < 50; i++)
			retry_budget_deposit(&b, T0 + s * S);
	cr_assert_eq(retry_budget_balance(&b, T0 + 9 * S), 200);
	/* One second on, the first second's deposits have expired. */
	cr_assert_eq(retry_budget_balance(&b, T0 + 10 * S), 190);
	cr_assert_eq(retry_budget_balance(&b, T0 + 15 * S), 140);
	cr_assert_eq(retry_budget_balance(&b, T0 + 18 * S), 110);
	cr_assert_eq(retry_budget_balance(&b, T0 + 19 * S), 100);
	cr_assert_eq(retry_budget_balance(&b, T0 + 1000 * S), 100);
}

Test(resilience_retry_budget, storm_is_bounded)
{
	int sent = 0, retried = 0;

	/*
	 * Every request fails and wants a retry, 100 requests per second for
	 * 60 s: retries stay within 20 % plus 10/s, the figure of e2e test 3.
	 */
	for (int s = 0; s < 60; s++) {
		for (int i = 0; i < 100; i++) {
			uint64_t now = T0 + s * S + i * 10 * MS;

			retry_budget_deposit(&b, now);
			sent++;
			if (retry_budget_withdraw(&b, now))
				retried++;
		}
	}
	/* Per 10 s window: 0.2 * 1000 + 100 = 300 retries, so about 30/s. */
	cr_assert_leq(retried, 60 * 30 + 100, "%d retries for %d requests", retried, sent);
	cr_assert_geq(retried, 60 * 30 * 9 / 10, "%d retries for %d requests", retried, sent);
}

Test(resilience_retry_budget, zero_ratio_and_zero_floor)
{
	struct retry_budget_cfg c = {.ratio_milli = 0, .min_per_s = 0, .ttl_ns = 10 * S};

	cr_assert_eq(retry_budget_init(&b, &c), 0);
	for (int i = 0; i < 100; i++)
		retry_budget_deposit(&b, T0);
	cr_assert_eq(drain(T0), 0);

	c.ratio_milli = 1000; /* one retry per request, no floor */
	cr_assert_eq(retry_budget_init(&b, &c), 0);
	for (int i = 0; i < 7; i++)
		retry_budget_deposit(&b, T0);
	cr_assert_eq(drain(T0), 7);
}

Test(resilience_retry_budget, short_ttl)
{
	struct retry_budget_cfg c = {.ratio_milli = 500, .min_per_s = 20, .ttl_ns = 1 * S};

	/* Floor: 20/s over 1 s = 20; 10 requests at 0.5 add 5. */
	cr_assert_eq(retry_budget_init(&b, &c), 0);
	for (int i = 0; i < 10; i++)
		retry_budget_deposit(&b, T0);
	cr_assert_eq(drain(T0), 25);
	cr_assert_eq(drain(T0 + 1 * S), 20);
}

Test(resilience_retry_budget, slightly_stale_clock_counts_in_the_window)
{
	retry_budget_deposit(&b, T0 + 1 * S);
	/* A worker whose clock read is a bucket behind still sees it. */
	cr_assert_eq(retry_budget_balance_milli(&b, T0 + 100 * MS), 100200);
	/* And its own deposit into the older bucket is not lost. */
	for (int i = 0; i < 5; i++)
		retry_budget_deposit(&b, T0 + 100 * MS);
	cr_assert_eq(retry_budget_balance_milli(&b, T0 + 1 * S), 101200);
}

enum { THREADS = 4, ROUNDS = 50000 };

static _Atomic int allowed;

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		/* All in one second: the window never slides. */
		uint64_t now = T0 + (uint64_t)i * 10000;

		retry_budget_deposit(&b, now);
		if (retry_budget_withdraw(&b, now))
			atomic_fetch_add(&allowed, 1);
	}
	return NULL;
}

Test(resilience_retry_budget, concurrent_smoke)
{
	pthread_t th[THREADS];
	int want = THREADS * ROUNDS / 5 + 100;

	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/*
	 * 200 k requests: 40 k + 100 retries. Racing workers may each
	 * overdraw by one retry on the last token, so allow that much.
	 */
	cr_assert(allowed >= want - THREADS && allowed <= want + THREADS, "%d allowed, want %d",
		  allowed, want);
	cr_assert_leq(retry_budget_balance(&b, T0), THREADS);
}
