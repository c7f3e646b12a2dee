// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/endpoint_pick.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance/p2c.h"
#include "common/addr.h"
#include "common/log.h"

struct rng *pick_rng(void)
{
	static __thread struct rng r;
	static __thread bool seeded;

	if (!seeded) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		/* Workers start within a microsecond: mix in the thread too. */
		rng_seed(&r, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
				 ((uint64_t)pthread_self() * 0x9e3779b97f4a7c15ull));
		seeded = true;
	}
	return &r;
}

/* p2c cost: the endpoint's PeakEWMA cost at the time in the context. */
struct pick_cost_ctx {
	const struct es_svc_view *sv;
	uint64_t now_ns;
	double peer_ns;
};

/* p2c_cost_fn over struct pick_cost_ctx. */
static double pick_cost(void *ctx, uint32_t idx)
{
	struct pick_cost_ctx *c = ctx;

	return peak_ewma_cost(&c->sv->ep[idx]->ewma, &c->sv->ewma_cfg, c->now_ns, c->peer_ns);
}

/* qsort order of doubles, ascending. */
static int pick_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double pick_peer_ns(const struct es_svc_view *sv, uint64_t now_ns)
{
	struct es_service *s = sv->state;
	uint64_t at = atomic_load_explicit(&s->peer_at_ns, memory_order_relaxed);
	uint64_t peer = atomic_load_explicit(&s->peer_ns, memory_order_relaxed);
	/* On the stack like pick_endpoint()'s candidates: 8 KiB at most. */
	double est[CONFIG_MAX_ENDPOINTS];
	uint32_t n = 0;

	/* Fresh, or another worker (maybe with a newer clock) refreshed it. */
	if (at && now_ns < at + PICK_PEER_REFRESH_NS)
		return (double)peer;
	if (sv->n_endpoints > CONFIG_MAX_ENDPOINTS ||
	    !atomic_compare_exchange_strong_explicit(&s->peer_at_ns, &at, now_ns ? now_ns : 1,
						     memory_order_relaxed, memory_order_relaxed))
		return (double)peer;
	/* Guesses (endpoints never sampled) are no evidence of anything. */
	for (uint32_t i = 0; i < sv->n_endpoints; i++)
		if (peak_ewma_measured(&sv->ep[i]->ewma))
			est[n++] = peak_ewma_estimate(&sv->ep[i]->ewma, &sv->ewma_cfg, now_ns,
						      (double)peer);
	if (!n)
		return (double)peer;
	qsort(est, n, sizeof(est[0]), pick_cmp_double);
	/*
	 * The lower median: one slow endpoint of three, or half of them, does
	 * not drag the reference up, so estimates age towards what most of
	 * the service delivers, and with two endpoints, towards the faster.
	 */
	peer = (uint64_t)est[(n - 1) / 2];
	if (!peer)
		peer = 1; /* 0 means "not computed yet" to the sync */
	atomic_store_explicit(&s->peer_ns, peer, memory_order_relaxed);
	atomic_store_explicit(&s->peer_measured, true, memory_order_relaxed);
	return (double)peer;
}

/* Is idx among avoid[0..n)? */
static bool pick_avoided(const uint32_t *avoid, uint32_t n, uint32_t idx)
{
	for (uint32_t i = 0; i < n; i++)
		if (avoid[i] == idx)
			return true;
	return false;
}

/*
 * May endpoint e be explored at now: healthy (breaker closed, no failure
 * penalty), idle (nothing in flight: a request there is a measurement
 * under way already) and sent nothing for explore_after_ns?
 */
static bool pick_explorable(const struct es_svc_view *sv, const struct es_endpoint *e,
			       uint64_t now)
{
	uint64_t last = atomic_load_explicit(&e->last_pick_ns, memory_order_relaxed);

	return breaker_state(&e->breaker) == BREAKER_CLOSED &&
	       !peak_ewma_penalised(&e->ewma, now) && !peak_ewma_pending(&e->ewma) &&
	       (!last || (now > last && now - last >= sv->explore_after_ns));
}

/*
 * Fill cand with the candidates of sv at now (breaker closed or probe
 * due), those in avoid left out when keep_avoided is false. Returns how
 * many; sets *probe to a candidate whose probe is due, or PICK_NONE,
 * and, when explore, *stale to the explorable candidate picked longest
 * ago, or PICK_NONE.
 */
static uint32_t pick_candidates(const struct es_svc_view *sv, uint64_t now,
				   const uint32_t *avoid, uint32_t n_avoid, bool keep_avoided,
				   bool explore, uint32_t *cand, uint32_t *probe, uint32_t *stale)
{
	uint64_t stale_at = UINT64_MAX;
	uint32_t n = 0;

	*probe = *stale = PICK_NONE;
	for (uint32_t i = 0; i < sv->n_endpoints; i++) {
		const struct es_endpoint *e = sv->ep[i];
		const struct breaker *br = &e->breaker;

		if (!breaker_is_candidate(br, now))
			continue;
		if (!keep_avoided && pick_avoided(avoid, n_avoid, i))
			continue;
		if (*probe == PICK_NONE && breaker_probe_due(br, now))
			*probe = i;
		if (explore && pick_explorable(sv, e, now)) {
			uint64_t last =
			    atomic_load_explicit(&e->last_pick_ns, memory_order_relaxed);

			if (last < stale_at) {
				stale_at = last;
				*stale = i;
			}
		}
		cand[n++] = i;
	}
	return n;
}

/*
 * Claim the exploration of endpoint idx, picked last at what
 * pick_candidates() saw: one worker wins it, so an endpoint gets one
 * exploration per interval however many workers pick at that moment.
 */
static bool pick_claim_explore(const struct es_svc_view *sv, uint32_t idx, uint64_t now)
{
	struct es_endpoint *e = sv->ep[idx];
	uint64_t last = atomic_load_explicit(&e->last_pick_ns, memory_order_relaxed);

	if (!pick_explorable(sv, e, now) ||
	    !atomic_compare_exchange_strong_explicit(&e->last_pick_ns, &last, now,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	atomic_fetch_add_explicit(&e->explorations, 1, memory_order_relaxed);
	return true;
}

uint32_t pick_endpoint(const struct es_svc_view *sv, uint32_t n_endpoints, uint64_t now_ns,
		      const uint32_t *avoid, uint32_t n_avoid, struct pick_ticket *t)
{
	/* On the stack, not the heap: no allocation per request. 4 KiB. */
	uint32_t cand[CONFIG_MAX_ENDPOINTS];
	struct pick_cost_ctx ctx = {.sv = sv, .now_ns = now_ns};
	uint32_t n, probe, stale;
	/* Only first tries explore: a retry goes to the best we know. */
	bool explore;

	memset(t, 0, sizeof(*t));
	t->idx = PICK_NONE;
	if (!n_endpoints)
		return PICK_NONE;
	if (!sv || sv->n_endpoints != n_endpoints || n_endpoints > CONFIG_MAX_ENDPOINTS) {
		t->idx = (uint32_t)rng_below(pick_rng(), n_endpoints);
		t->ticket = BREAKER_PASS;
		return t->idx;
	}
	explore = sv->explore_after_ns && !n_avoid;
	n = pick_candidates(sv, now_ns, avoid, n_avoid, false, explore, cand, &probe, &stale);
	if (!n)
		n = pick_candidates(sv, now_ns, avoid, n_avoid, true, explore, cand, &probe,
				       &stale);
	/* A due probe goes first: P2C might not pick it for a while (its
	 * last failures' penalties), and without a probe it is never readmitted. */
	if (probe != PICK_NONE &&
	    breaker_admit(&sv->ep[probe]->breaker, now_ns) == BREAKER_PROBE) {
		t->idx = probe;
		t->ticket = BREAKER_PROBE;
		atomic_store_explicit(&sv->ep[probe]->last_pick_ns, now_ns, memory_order_relaxed);
		return probe;
	}
	/* A healthy endpoint nobody sent anything for a while: measure it,
	 * or P2C may never pick it again (it never takes the dearest of 3). */
	if (stale != PICK_NONE && pick_claim_explore(sv, stale, now_ns) &&
	    breaker_admit(&sv->ep[stale]->breaker, now_ns) == BREAKER_PASS) {
		t->idx = stale;
		t->ticket = BREAKER_PASS;
		t->explore = true;
		return stale;
	}
	ctx.peer_ns = pick_peer_ns(sv, now_ns);
	while (n) {
		uint32_t idx = p2c_pick(pick_rng(), cand, n, pick_cost, &ctx);
		enum breaker_ticket tk = breaker_admit(&sv->ep[idx]->breaker, now_ns);

		if (tk != BREAKER_DENY) {
			t->idx = idx;
			t->ticket = tk;
			atomic_store_explicit(&sv->ep[idx]->last_pick_ns, now_ns,
					      memory_order_relaxed);
			return idx;
		}
		/* Another worker took the probe, or it just opened: drop it. */
		for (uint32_t i = 0; i < n; i++) {
			if (cand[i] == idx) {
				cand[i] = cand[--n];
				break;
			}
		}
	}
	return PICK_NONE;
}

void pick_start(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns)
{
	t->start_ns = now_ns;
	t->active = true;
	t->pending = sv && t->idx < sv->n_endpoints;
	if (t->pending)
		peak_ewma_start(&sv->ep[t->idx]->ewma);
}

/* Log what an outcome did to a breaker; count it on the service. */
static void pick_log_event(const struct es_svc_view *sv, const struct es_endpoint *e,
			      enum breaker_event ev, uint64_t now_ns, const char *what)
{
	struct es_service *s = sv->state;
	char addr[ADDR_STR_MAX];
	struct breaker_snapshot snap;

	if (ev == BREAKER_EV_NONE)
		return;
	addr_ntop(&e->addr, addr, sizeof(addr));
	switch (ev) {
	case BREAKER_EV_EJECTED:
	case BREAKER_EV_REOPENED:
		atomic_fetch_add_explicit(&s->ejections, 1, memory_order_relaxed);
		breaker_snapshot((struct breaker *)&e->breaker, now_ns, &snap);
		pr_info(
		    "proxy: %s/%s: endpoint %s ejected%s after %s (ejection %llu); probing "
		    "again in %llu ms",
		    s->namespace, s->name, addr, ev == BREAKER_EV_REOPENED ? " again" : "", what,
		    (unsigned long long)snap.ejections,
		    (unsigned long long)((snap.open_until_ns > now_ns ? snap.open_until_ns - now_ns
								      : 0) /
					 1000000));
		break;
	case BREAKER_EV_RECOVERED:
		atomic_fetch_add_explicit(&s->readmissions, 1, memory_order_relaxed);
		pr_info("proxy: %s/%s: endpoint %s readmitted: its probe succeeded", s->namespace,
			s->name, addr);
		break;
	case BREAKER_EV_EJECT_REFUSED:
		pr_debug("proxy: %s/%s: endpoint %s not ejected: %u of %u endpoints are out "
			 "already (the ejection cap)",
			 s->namespace, s->name, addr, atomic_load(&s->group.ejected),
			 atomic_load(&s->group.n_endpoints));
		break;
	default:
		break;
	}
}

/* The outcome of t; pending is dropped unless hold. */
static void pick_report(const struct es_svc_view *sv, struct pick_ticket *t, bool success,
			   uint64_t retry_after_ns, uint64_t now_ns, const char *what, bool hold)
{
	struct es_endpoint *e;
	enum breaker_event ev;
	uint64_t lat, peer;

	if (!t->active)
		return;
	t->active = false;
	if (!sv || t->idx >= sv->n_endpoints)
		return;
	e = sv->ep[t->idx];
	lat = now_ns > t->start_ns ? now_ns - t->start_ns : 0;
	if (t->pending && !hold) {
		peak_ewma_end(&e->ewma);
		t->pending = false;
	}
	atomic_fetch_add_explicit(success ? &e->succeeded : &e->failed, 1, memory_order_relaxed);
	peer = atomic_load_explicit(&sv->state->peer_ns, memory_order_relaxed);
	/* An exploration's answer is the fresh measurement it was sent for:
	 * the estimate it finds is stale (a second or more unsampled), and
	 * averaged in at that age's weight, one 300 ms answer among peers at
	 * 1 ms would keep the endpoint the dearest for a minute. */
	if (success && t->explore)
		peak_ewma_remeasure(&e->ewma, lat, now_ns);
	else if (success)
		peak_ewma_observe(&e->ewma, &sv->ewma_cfg, lat, now_ns, (double)peer);
	else
		peak_ewma_observe_failure(&e->ewma, &sv->ewma_cfg, retry_after_ns, now_ns);
	ev = breaker_record(&e->breaker, &sv->breaker_cfg, pick_rng(), t->ticket, success,
			    now_ns);
	/* Readmitted: from the peers' estimate, not one cold probe's latency
	 * (a new connection's handshake, a cold cache) nor its old record. */
	if (ev == BREAKER_EV_RECOVERED)
		peak_ewma_reset(&e->ewma, peer, now_ns);
	pick_log_event(sv, e, ev, now_ns, what);
}

void pick_outcome(const struct es_svc_view *sv, struct pick_ticket *t, bool success,
		     uint64_t retry_after_ns, uint64_t now_ns, const char *what)
{
	pick_report(sv, t, success, retry_after_ns, now_ns, what, false);
}

void pick_connected(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns)
{
	pick_report(sv, t, true, PEAK_EWMA_NO_RETRY_AFTER, now_ns, "a connect", true);
}

void pick_cancel(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns)
{
	struct es_endpoint *e;
	bool active = t->active, pending = t->pending;

	t->active = t->pending = false;
	if (!sv || t->idx >= sv->n_endpoints)
		return;
	e = sv->ep[t->idx];
	if (pending)
		peak_ewma_end(&e->ewma);
	if (active && t->ticket == BREAKER_PROBE)
		breaker_probe_cancel(&e->breaker, now_ns);
}
