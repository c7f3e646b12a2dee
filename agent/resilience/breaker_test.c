// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>

#include "resilience/breaker.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (1000 * S)

static struct breaker_cfg cfg;
static struct breaker_group group;
static struct breaker br;
static struct rng rng;

static void setup(void)
{
	breaker_cfg_default(&cfg);
	breaker_group_init(&group, &cfg, 10);
	cr_assert_eq(breaker_init(&br, &cfg, &group), 0);
	rng_seed(&rng, 1234);
}

static void teardown(void)
{
	breaker_fini(&br);
}

TestSuite(resilience_breaker, .init = setup, .fini = teardown);

/* One request through admit and record; returns what recording did. */
static enum breaker_event request(struct breaker *b, bool success, uint64_t now)
{
	enum breaker_ticket t = breaker_admit(b, now);

	cr_assert_neq(t, BREAKER_DENY, "admit denied at %lu", now);
	return breaker_record(b, &cfg, &rng, t, success, now);
}

/*
 * Fail closed b until it ejects. With no history the success-rate rule
 * trips first, at the 5th failure; either way within 7.
 */
static void eject(struct breaker *b, uint64_t now)
{
	for (uint32_t i = 1; i <= cfg.consecutive_failures; i++)
		if (request(b, false, now) == BREAKER_EV_EJECTED)
			return;
	cr_assert_fail("not ejected after %u failures", cfg.consecutive_failures);
}

Test(resilience_breaker, defaults_and_checks)
{
	struct breaker_cfg c = cfg;

	cr_assert_eq(cfg.consecutive_failures, 7);
	cr_assert_eq(cfg.backoff_min_ns, 1 * S);
	cr_assert_eq(cfg.backoff_max_ns, 60 * S);
	cr_assert_eq(cfg.jitter, 0.5);
	cr_assert_eq(cfg.success_rate_pct, 80);
	cr_assert_eq(cfg.success_rate_window_ns, 10 * S);
	cr_assert_eq(cfg.success_rate_min_requests, 5);
	cr_assert_eq(cfg.max_ejection_pct, 50);
	cr_assert_eq(breaker_cfg_check(&cfg), 0);
	c.backoff_min_ns = 0;
	cr_assert_eq(breaker_cfg_check(&c), -EINVAL);
	c = cfg;
	c.backoff_max_ns = 1;
	cr_assert_eq(breaker_cfg_check(&c), -EINVAL);
	c = cfg;
	c.jitter = 1.5;
	cr_assert_eq(breaker_cfg_check(&c), -EINVAL);
	c = cfg;
	c.max_ejection_pct = 101;
	cr_assert_eq(breaker_cfg_check(&c), -EINVAL);
	c = cfg;
	c.success_rate_window_ns = BREAKER_WINDOW_BUCKETS - 1;
	cr_assert_eq(breaker_cfg_check(&c), -EINVAL);
	{
		struct breaker b;

		/* A window of 0 would divide by 0: init refuses it. */
		cr_assert_eq(breaker_init(&b, &c, &group), -EINVAL);
	}
	cr_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half-open");
}

Test(resilience_breaker, seven_consecutive_failures_open)
{
	struct breaker_snapshot snap;

	/* A history of successes keeps the success rate above 80 % throughout. */
	for (int i = 0; i < 60; i++)
		cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	/* A success resets the count; six more are still not enough. */
	cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
	cr_assert_eq(request(&br, false, T0), BREAKER_EV_EJECTED);
	cr_assert_eq(breaker_state(&br), BREAKER_OPEN);
	cr_assert_eq(atomic_load(&group.ejected), 1);
	breaker_snapshot(&br, T0, &snap);
	cr_assert_eq(snap.ejections, 1);
	cr_assert_eq(snap.consecutive, 0);
	cr_assert_eq(snap.backoff_ns, 1 * S);
	cr_assert(snap.open_until_ns >= T0 + 500 * MS && snap.open_until_ns < T0 + 1500 * MS);
}

Test(resilience_breaker, no_admits_during_backoff_then_exactly_one_probe)
{
	uint64_t until;

	eject(&br, T0);
	until = atomic_load(&br.open_until_ns);
	for (uint64_t t = T0; t < until; t += 10 * MS) {
		cr_assert_eq(breaker_admit(&br, t), BREAKER_DENY);
		cr_assert_not(breaker_is_candidate(&br, t));
	}
	cr_assert_eq(breaker_admit(&br, until - 1), BREAKER_DENY);
	cr_assert(breaker_probe_due(&br, until));
	cr_assert(breaker_is_candidate(&br, until));
	cr_assert_eq(breaker_admit(&br, until), BREAKER_PROBE);
	cr_assert_eq(breaker_state(&br), BREAKER_HALF_OPEN);
	/* While the probe is out, nobody else gets in, however long it takes. */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(breaker_admit(&br, until + i * S), BREAKER_DENY);
	cr_assert_not(breaker_is_candidate(&br, until + 100 * S));
}

Test(resilience_breaker, probe_success_closes)
{
	struct breaker_snapshot snap;
	uint64_t until;

	eject(&br, T0);
	until = atomic_load(&br.open_until_ns);
	cr_assert_eq(request(&br, true, until), BREAKER_EV_RECOVERED);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
	cr_assert_eq(atomic_load(&group.ejected), 0);
	cr_assert_eq(breaker_admit(&br, until), BREAKER_PASS);
	breaker_snapshot(&br, until, &snap);
	cr_assert_eq(snap.backoff_ns, 1 * S);
	cr_assert_eq(snap.window_ok + snap.window_fail, 0, "the window starts afresh");
	/* It takes seven new failures to eject it again. */
	eject(&br, until);
}

Test(resilience_breaker, probe_failure_doubles_up_to_60s)
{
	static const uint64_t want[] = {2, 4, 8, 16, 32, 60, 60, 60};
	uint64_t now = T0, until;

	eject(&br, now);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		now = atomic_load(&br.open_until_ns);
		cr_assert_eq(request(&br, false, now), BREAKER_EV_REOPENED);
		cr_assert_eq(br.backoff_ns, want[i] * S);
		until = atomic_load(&br.open_until_ns);
		/* Out for the backoff, jittered by at most +-50 %. */
		cr_assert(until - now >= want[i] * S / 2 && until - now < want[i] * S * 3 / 2,
			  "backoff %lu s: out for %lu ns", want[i], until - now);
		cr_assert_eq(breaker_admit(&br, until - 1), BREAKER_DENY);
		/* Still one ejection, one slot in the group. */
		cr_assert_eq(atomic_load(&group.ejected), 1);
	}
	cr_assert_eq(request(&br, true, until), BREAKER_EV_RECOVERED);
	cr_assert_eq(br.backoff_ns, 1 * S, "recovery resets the backoff");
}

Test(resilience_breaker, jitter_spreads_ejections)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	for (int i = 0; i < 200; i++) {
		struct breaker b;
		uint64_t out;

		cr_assert_eq(breaker_init(&b, &cfg, &group), 0);
		eject(&b, T0);
		out = atomic_load(&b.open_until_ns) - T0;
		cr_assert(out >= 500 * MS && out < 1500 * MS, "%lu", out);
		lo = out < lo ? out : lo;
		hi = out > hi ? out : hi;
		/* Recover it so the group's cap never interferes. */
		cr_assert_eq(request(&b, true, T0 + out), BREAKER_EV_RECOVERED);
		breaker_fini(&b);
	}
	cr_assert_lt(lo, 600 * MS);
	cr_assert_gt(hi, 1400 * MS);
}

Test(resilience_breaker, success_rate_trip)
{
	/* 3 ok, 2 failed: 60 % of 5 requests, below 80 %, none 7 in a row. */
	cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0 + 1 * S), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, true, T0 + 2 * S), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, true, T0 + 3 * S), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0 + 4 * S), BREAKER_EV_EJECTED);
}

Test(resilience_breaker, fresh_endpoint_trips_on_rate_at_fifth_failure)
{
	/* 0 of 5 is below 80 % with 5 requests: before the 7-in-a-row rule. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0), BREAKER_EV_EJECTED);
}

Test(resilience_breaker, success_rate_needs_min_requests)
{
	/* 1 ok, 3 failed: 25 %, but only 4 requests. */
	cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
}

Test(resilience_breaker, success_rate_at_threshold_does_not_trip)
{
	/* 4 ok, 1 failed: exactly 80 %, not below it. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	/* 8 ok, 2 failed still 80 %; one more failure: 8/11 = 73 %. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(request(&br, true, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, false, T0), BREAKER_EV_EJECTED);
}

Test(resilience_breaker, success_rate_window_slides)
{
	struct breaker_snapshot snap;

	/* Old failures leave the window: 4 fails at 0 s, then 4 ok at 10 s. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&br, true, T0 + 1 * S), BREAKER_EV_NONE);
	breaker_snapshot(&br, T0 + 9 * S, &snap);
	cr_assert_eq(snap.window_fail, 4);
	breaker_snapshot(&br, T0 + 10 * S, &snap);
	cr_assert_eq(snap.window_fail, 0);
	cr_assert_eq(snap.window_ok, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(request(&br, true, T0 + 10 * S), BREAKER_EV_NONE);
	/* 4 ok, 1 failed in the window: 80 %, stays closed. */
	cr_assert_eq(request(&br, false, T0 + 10 * S), BREAKER_EV_NONE);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
}

Test(resilience_breaker, ejection_cap)
{
	struct breaker b[4];

	/* Four endpoints, at most 50 %: two may be out at once. */
	breaker_group_init(&group, &cfg, 4);
	cr_assert_eq(breaker_group_cap(&group), 2);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(breaker_init(&b[i], &cfg, &group), 0);
	eject(&b[0], T0);
	eject(&b[1], T0);
	for (int i = 1; i < 5; i++)
		cr_assert_eq(request(&b[2], false, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&b[2], false, T0), BREAKER_EV_EJECT_REFUSED);
	cr_assert_eq(breaker_state(&b[2]), BREAKER_CLOSED);
	cr_assert_eq(atomic_load(&group.refused), 1);
	/* Each further failure asks again, and is refused and counted again. */
	cr_assert_eq(request(&b[2], false, T0), BREAKER_EV_EJECT_REFUSED);
	cr_assert_eq(atomic_load(&group.refused), 2);
	cr_assert_eq(atomic_load(&group.ejected), 2);
	/* Once one recovers, the next failure of b[2] ejects it. */
	cr_assert_eq(request(&b[0], true, atomic_load(&b[0].open_until_ns)), BREAKER_EV_RECOVERED);
	cr_assert_eq(request(&b[2], false, T0 + 2 * S), BREAKER_EV_EJECTED);
	cr_assert_eq(atomic_load(&group.ejected), 2);
	/* A removed endpoint gives its slot back. */
	breaker_fini(&b[1]);
	cr_assert_eq(atomic_load(&group.ejected), 1);
	breaker_fini(&b[0]);
	breaker_fini(&b[2]);
	breaker_fini(&b[3]);
	cr_assert_eq(atomic_load(&group.ejected), 0);
}

Test(resilience_breaker, single_endpoint_is_never_ejected)
{
	struct breaker_group g;
	struct breaker b;

	/* floor(1 * 50 %) = 0: ejecting the only endpoint would leave nothing. */
	breaker_group_init(&g, &cfg, 1);
	cr_assert_eq(breaker_group_cap(&g), 0);
	cr_assert_eq(breaker_init(&b, &cfg, &g), 0);
	for (int i = 1; i < 5; i++)
		cr_assert_eq(request(&b, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(request(&b, false, T0), BREAKER_EV_EJECT_REFUSED);
	cr_assert_eq(breaker_admit(&b, T0), BREAKER_PASS);
	/* The service grows: now it may go. */
	breaker_group_resize(&g, 2);
	cr_assert_eq(request(&b, false, T0), BREAKER_EV_EJECTED);
	breaker_fini(&b);
}

Test(resilience_breaker, late_outcomes_do_not_decide)
{
	enum breaker_ticket early[3];
	uint64_t until;

	/* Three requests admitted while closed are still in flight at ejection. */
	for (int i = 0; i < 3; i++)
		early[i] = breaker_admit(&br, T0);
	eject(&br, T0);
	until = atomic_load(&br.open_until_ns);
	cr_assert_eq(breaker_record(&br, &cfg, &rng, early[0], true, T0), BREAKER_EV_NONE);
	cr_assert_eq(breaker_admit(&br, until), BREAKER_PROBE);
	/* A success of an old request is not the probe's success. */
	cr_assert_eq(breaker_record(&br, &cfg, &rng, early[1], true, until), BREAKER_EV_NONE);
	cr_assert_eq(breaker_state(&br), BREAKER_HALF_OPEN);
	cr_assert_eq(breaker_record(&br, &cfg, &rng, early[2], false, until), BREAKER_EV_NONE);
	cr_assert_eq(breaker_record(&br, &cfg, &rng, BREAKER_DENY, false, until), BREAKER_EV_NONE);
	cr_assert_eq(breaker_record(&br, &cfg, &rng, BREAKER_PROBE, true, until),
		     BREAKER_EV_RECOVERED);
}

Test(resilience_breaker, cancelled_probe_is_due_again)
{
	uint64_t until;

	eject(&br, T0);
	until = atomic_load(&br.open_until_ns);
	cr_assert_eq(breaker_admit(&br, until), BREAKER_PROBE);
	breaker_probe_cancel(&br, until + 5 * MS);
	cr_assert_eq(breaker_state(&br), BREAKER_OPEN);
	cr_assert_eq(breaker_admit(&br, until + 5 * MS), BREAKER_PROBE);
	cr_assert_eq(breaker_record(&br, &cfg, &rng, BREAKER_PROBE, true, until + 6 * MS),
		     BREAKER_EV_RECOVERED);
	/* A cancel of a breaker that is not half-open changes nothing. */
	breaker_probe_cancel(&br, until + 7 * MS);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
}

Test(resilience_breaker, disabled_rules)
{
	cfg.consecutive_failures = 0;
	cfg.success_rate_pct = 0;
	for (int i = 0; i < 100; i++)
		cr_assert_eq(request(&br, false, T0), BREAKER_EV_NONE);
	cr_assert_eq(breaker_state(&br), BREAKER_CLOSED);
}

enum { THREADS = 4, ROUNDS = 20000 };

static _Atomic int probes_in_flight, probes_max;

static void *hammer(void *arg)
{
	struct rng r;

	rng_seed(&r, (uintptr_t)arg);
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t now = T0 + (uint64_t)i * MS;
		enum breaker_ticket t = breaker_admit(&br, now);
		int n;

		if (t == BREAKER_DENY)
			continue;
		if (t == BREAKER_PROBE) {
			n = atomic_fetch_add(&probes_in_flight, 1) + 1;
			if (n > atomic_load(&probes_max))
				atomic_store(&probes_max, n);
			atomic_fetch_sub(&probes_in_flight, 1);
		}
		/* One request in four fails: trips, probes and recoveries all happen. */
		breaker_record(&br, &cfg, &r, t, rng_below(&r, 4) != 0, now);
	}
	return NULL;
}

Test(resilience_breaker, concurrent_smoke)
{
	pthread_t th[THREADS];
	struct breaker_snapshot snap;

	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hammer, (void *)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	breaker_snapshot(&br, T0 + ROUNDS * MS, &snap);
	cr_assert_gt(snap.ejections, 0);
	cr_assert_leq(atomic_load(&probes_max), 1, "two probes were out at once");
	cr_assert_eq(atomic_load(&group.ejected), snap.state == BREAKER_CLOSED ? 0 : 1);
}
