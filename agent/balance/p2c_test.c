// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>

#include "balance/p2c.h"
#include "balance/peak_ewma.h"

#define MS PEAK_EWMA_NS_PER_MS
#define S PEAK_EWMA_NS_PER_S

static struct rng rng;

static void setup(void)
{
	rng_seed(&rng, 42);
}

TestSuite(balance_p2c, .init = setup);

/* Fixed costs, indexed by endpoint. */
static double table_cost(void *ctx, uint32_t idx)
{
	return ((const double *)ctx)[idx];
}

Test(balance_p2c, rng_is_seeded_and_bounded)
{
	struct rng a, b;
	uint32_t hist[7] = {0};

	rng_seed(&a, 7);
	rng_seed(&b, 7);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(rng_next(&a), rng_next(&b));
	cr_assert_eq(rng_below(&a, 0), 0);
	cr_assert_eq(rng_below(&a, 1), 0);
	for (int i = 0; i < 70000; i++)
		hist[rng_below(&a, 7)]++;
	for (int i = 0; i < 7; i++)
		cr_assert(hist[i] > 9500 && hist[i] < 10500, "%d: %u of 70000", i, hist[i]);
	for (int i = 0; i < 10000; i++) {
		double u = rng_unit(&a);

		cr_assert(u >= 0 && u < 1);
	}
}

Test(balance_p2c, none_and_one)
{
	double costs[4] = {1, 2, 3, 4};
	uint32_t one = 3;

	cr_assert_eq(p2c_pick(&rng, NULL, 0, table_cost, costs), P2C_NONE);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(p2c_pick(&rng, &one, 1, table_cost, costs), 3);
}

Test(balance_p2c, two_always_takes_the_cheaper)
{
	double costs[4] = {5, 9, 1, 9};
	uint32_t cand[2] = {1, 2};

	for (int i = 0; i < 100; i++)
		cr_assert_eq(p2c_pick(&rng, cand, 2, table_cost, costs), 2);
}

Test(balance_p2c, never_picks_the_most_expensive_of_many)
{
	double costs[5] = {4, 3, 2, 1, 100};
	uint32_t cand[5] = {0, 1, 2, 3, 4}, hist[5] = {0};

	for (int i = 0; i < 10000; i++)
		hist[p2c_pick(&rng, cand, 5, table_cost, costs)]++;
	/*
	 * P2C picks endpoint k when it is in the pair and the other one is
	 * dearer: k of rank r (0 = cheapest) wins 2 * (n - 1 - r) of the
	 * n * (n - 1) ordered pairs: 8/20, 6/20, 4/20, 2/20, 0.
	 */
	cr_assert_eq(hist[4], 0);
	cr_assert(hist[3] > 3700 && hist[3] < 4300, "%u", hist[3]);
	cr_assert(hist[2] > 2700 && hist[2] < 3300, "%u", hist[2]);
	cr_assert(hist[1] > 1700 && hist[1] < 2300, "%u", hist[1]);
	cr_assert(hist[0] > 750 && hist[0] < 1250, "%u", hist[0]);
}

Test(balance_p2c, only_candidates_are_picked)
{
	double costs[6] = {1, 1, 1, 1, 1, 1};
	uint32_t cand[3] = {1, 4, 5}, hist[6] = {0};

	for (int i = 0; i < 3000; i++)
		hist[p2c_pick(&rng, cand, 3, table_cost, costs)]++;
	cr_assert_eq(hist[0] + hist[2] + hist[3], 0);
	/* Equal costs: the first drawn wins, which is uniform. */
	for (int i = 0; i < 3; i++)
		cr_assert(hist[cand[i]] > 850 && hist[cand[i]] < 1150, "%u", hist[cand[i]]);
}

Test(balance_p2c, avoid_picks_another_when_there_is_one)
{
	double costs[4] = {1, 50, 50, 50};
	uint32_t cand[4] = {0, 1, 2, 3}, hist[4] = {0};

	/* The cheapest endpoint just failed: the retry goes elsewhere. */
	for (int i = 0; i < 3000; i++)
		hist[p2c_pick_avoid(&rng, cand, 4, 0, table_cost, costs)]++;
	cr_assert_eq(hist[0], 0);
	for (int i = 1; i < 4; i++)
		cr_assert(hist[i] > 850 && hist[i] < 1150, "%d: %u", i, hist[i]);

	/* Two candidates, one avoided: always the other, however dear. */
	for (int i = 0; i < 100; i++)
		cr_assert_eq(p2c_pick_avoid(&rng, cand, 2, 0, table_cost, costs), 1);
	/* The avoided one is the sole candidate: it is all there is. */
	cr_assert_eq(p2c_pick_avoid(&rng, cand, 1, 0, table_cost, costs), 0);
	/* Avoiding something that is not a candidate, or nothing. */
	cr_assert_eq(p2c_pick_avoid(&rng, cand + 1, 1, 0, table_cost, costs), 1);
	cr_assert_eq(p2c_pick_avoid(&rng, cand, 0, 0, table_cost, costs), P2C_NONE);
	/* P2C_NONE avoids nothing: the same picks as p2c_pick() from the same seed. */
	{
		struct rng a, b;

		rng_seed(&a, 9);
		rng_seed(&b, 9);
		for (int i = 0; i < 100; i++)
			cr_assert_eq(p2c_pick_avoid(&a, cand, 4, P2C_NONE, table_cost, costs),
				     p2c_pick(&b, cand, 4, table_cost, costs));
	}
}

/* The end-to-end figure 1 in miniature: PeakEWMA + P2C on a simulated clock. */
struct sim {
	struct peak_ewma ep[3];
	struct peak_ewma_cfg cfg;
	uint64_t now;
	double peer;	  /* the peers' estimate, as agent/proxy/balance.c keeps it */
	uint64_t last[3]; /* when each was last picked, for the exploration */
	bool explored[3]; /* its request in flight is an exploration */
};

static double sim_cost(void *ctx, uint32_t idx)
{
	struct sim *s = ctx;

	return peak_ewma_cost(&s->ep[idx], &s->cfg, s->now, s->peer);
}

/* The lower median of the three estimates, like pick_peer_ns(). */
static void sim_peer(struct sim *s)
{
	double e[3], t;

	for (int i = 0; i < 3; i++)
		e[i] = peak_ewma_estimate(&s->ep[i], &s->cfg, s->now, s->peer);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2 - i; j++)
			if (e[j] > e[j + 1]) {
				t = e[j];
				e[j] = e[j + 1];
				e[j + 1] = t;
			}
	s->peer = e[1];
}

/*
 * One pick as agent/proxy/balance.c makes it (tested there on its own):
 * the peers' estimate refreshed, then an idle healthy endpoint not
 * picked for P2C_DEFAULT_EXPLORE_AFTER_NS first, else P2C.
 */
static uint32_t sim_pick(struct sim *s, const uint32_t *cand)
{
	uint32_t k = P2C_NONE;

	sim_peer(s);
	for (uint32_t i = 0; i < 3 && k == P2C_NONE; i++)
		if (!peak_ewma_pending(&s->ep[i]) && !peak_ewma_penalised(&s->ep[i], s->now) &&
		    s->now - s->last[i] >= P2C_DEFAULT_EXPLORE_AFTER_NS)
			k = i;
	if (k == P2C_NONE)
		k = p2c_pick(&rng, cand, 3, sim_cost, s);
	else
		s->explored[k] = true;
	s->last[k] = s->now;
	return k;
}

/* Endpoint k answered in lat: an exploration's answer re-measures it. */
static void sim_answer(struct sim *s, uint32_t k, uint64_t lat)
{
	if (s->explored[k])
		peak_ewma_remeasure(&s->ep[k], lat, s->now);
	else
		peak_ewma_observe(&s->ep[k], &s->cfg, lat, s->now, s->peer);
	s->explored[k] = false;
}

Test(balance_p2c, slow_endpoint_is_avoided)
{
	static const uint64_t latency[3] = {5 * MS, 5 * MS, 25 * MS};
	uint32_t cand[3] = {0, 1, 2}, hist[3] = {0}, k;
	struct sim s;

	peak_ewma_cfg_default(&s.cfg);
	s.now = 1000 * S;
	s.peer = (double)s.cfg.default_rtt_ns;
	for (int i = 0; i < 3; i++) {
		s.last[i] = s.now;
		s.explored[i] = false;
	}
	for (int i = 0; i < 3; i++)
		peak_ewma_init(&s.ep[i], &s.cfg, s.now);
	/* 3000 sequential requests, one every 2 ms, each answered in full. */
	for (int i = 0; i < 3000; i++) {
		k = sim_pick(&s, cand);
		hist[k]++;
		peak_ewma_start(&s.ep[k]);
		s.now += 2 * MS;
		sim_answer(&s, k, latency[k]);
		peak_ewma_end(&s.ep[k]);
	}
	cr_assert_lt(hist[2], 600, "slow endpoint got %u of 3000", hist[2]);
	cr_assert_gt(hist[0], 1000);
	cr_assert_gt(hist[1], 1000);
}

/*
 * The same with requests overlapping: one arrives every millisecond and
 * completes after its endpoint's latency, so pending counts in the cost.
 */
Test(balance_p2c, slow_endpoint_is_avoided_under_load)
{
	enum { N = 3000, MAX_LAT_MS = 25 };
	static const uint64_t latency_ms[3] = {5, 5, 25};
	/* Completions due at each future millisecond, by endpoint. */
	static uint32_t due[N + MAX_LAT_MS + 1][3];
	uint32_t cand[3] = {0, 1, 2}, hist[3] = {0}, k;
	struct sim s;

	peak_ewma_cfg_default(&s.cfg);
	s.now = 1000 * S;
	s.peer = (double)s.cfg.default_rtt_ns;
	for (int i = 0; i < 3; i++) {
		s.last[i] = s.now;
		s.explored[i] = false;
	}
	for (int i = 0; i < 3; i++)
		peak_ewma_init(&s.ep[i], &s.cfg, s.now);
	for (int t = 0; t < N + MAX_LAT_MS; t++, s.now += MS) {
		for (int e = 0; e < 3; e++)
			for (; due[t][e]; due[t][e]--) {
				sim_answer(&s, (uint32_t)e, latency_ms[e] * MS);
				peak_ewma_end(&s.ep[e]);
			}
		if (t >= N)
			continue;
		k = sim_pick(&s, cand);
		hist[k]++;
		peak_ewma_start(&s.ep[k]);
		due[t + latency_ms[k]][k]++;
	}
	for (int e = 0; e < 3; e++)
		cr_assert_eq(peak_ewma_pending(&s.ep[e]), 0);
	cr_assert_lt(hist[2], N / 5, "slow endpoint got %u of %d", hist[2], N);
}

Test(balance_p2c, fast_failing_endpoint_is_avoided)
{
	uint32_t cand[3] = {0, 1, 2}, hist[3] = {0}, k;
	struct sim s;

	peak_ewma_cfg_default(&s.cfg);
	s.now = 1000 * S;
	s.peer = (double)s.cfg.default_rtt_ns;
	for (int i = 0; i < 3; i++) {
		s.last[i] = s.now;
		s.explored[i] = false;
	}
	for (int i = 0; i < 3; i++)
		peak_ewma_init(&s.ep[i], &s.cfg, s.now);
	/* Endpoint 2 fails every request in 1 ms; the others answer in 20 ms. */
	for (int i = 0; i < 3000; i++) {
		k = sim_pick(&s, cand);
		hist[k]++;
		s.now += 2 * MS;
		if (k == 2)
			peak_ewma_observe_failure(&s.ep[k], &s.cfg, PEAK_EWMA_NO_RETRY_AFTER,
						  s.now);
		else
			sim_answer(&s, k, 20 * MS);
	}
	/*
	 * Without the penalty it would look cheapest and take most requests.
	 * While penalised (1 s) P2C never takes it (the other of any pair is
	 * cheaper), and each failure renews the penalty: over the 6 s run at
	 * most 1 + 6 requests. But it expires, so the endpoint is tried again
	 * every second or so (the old penalty, a 5 s sample decaying with
	 * tau, kept it out for a minute: 1 request).
	 */
	cr_assert_leq(hist[2], 7, "failing endpoint got %u of 3000", hist[2]);
	cr_assert_geq(hist[2], 4, "failing endpoint tried only %u times in 6 s", hist[2]);
}
