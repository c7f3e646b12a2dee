// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "resilience/breaker.h"

#include <errno.h>
#include <string.h>

#include "resilience/backoff.h"
#include "resilience/deadline.h"

void breaker_cfg_default(struct breaker_cfg *cfg)
{
	cfg->consecutive_failures = BREAKER_DEFAULT_CONSECUTIVE_FAILURES;
	cfg->backoff_min_ns = BREAKER_DEFAULT_BACKOFF_MIN_NS;
	cfg->backoff_max_ns = BREAKER_DEFAULT_BACKOFF_MAX_NS;
	cfg->jitter = BREAKER_DEFAULT_JITTER;
	cfg->success_rate_pct = BREAKER_DEFAULT_SUCCESS_RATE_PCT;
	cfg->success_rate_window_ns = BREAKER_DEFAULT_SUCCESS_RATE_WINDOW_NS;
	cfg->success_rate_min_requests = BREAKER_DEFAULT_SUCCESS_RATE_MIN_REQUESTS;
	cfg->max_ejection_pct = BREAKER_DEFAULT_MAX_EJECTION_PCT;
}

int breaker_cfg_check(const struct breaker_cfg *cfg)
{
	if (!cfg->backoff_min_ns || cfg->backoff_min_ns > cfg->backoff_max_ns)
		return -EINVAL;
	if (!(cfg->jitter >= 0 && cfg->jitter <= 1))
		return -EINVAL;
	if (cfg->success_rate_pct > 100 || cfg->max_ejection_pct > 100)
		return -EINVAL;
	if (cfg->success_rate_window_ns < BREAKER_WINDOW_BUCKETS)
		return -EINVAL;
	return 0;
}

void breaker_group_init(struct breaker_group *g, const struct breaker_cfg *cfg,
			uint32_t n_endpoints)
{
	atomic_init(&g->n_endpoints, n_endpoints);
	atomic_init(&g->ejected, 0);
	atomic_init(&g->max_ejection_pct, cfg->max_ejection_pct);
	atomic_init(&g->refused, 0);
}

void breaker_group_resize(struct breaker_group *g, uint32_t n_endpoints)
{
	atomic_store_explicit(&g->n_endpoints, n_endpoints, memory_order_relaxed);
}

uint32_t breaker_group_cap(const struct breaker_group *g)
{
	uint64_t n = atomic_load_explicit(&g->n_endpoints, memory_order_relaxed);

	return (uint32_t)(n * atomic_load_explicit(&g->max_ejection_pct, memory_order_relaxed) /
			  100);
}

/* Take an ejection slot if the cap leaves one; count the refusal if not. */
static bool group_try_eject(struct breaker_group *g)
{
	uint32_t cap = breaker_group_cap(g);
	uint32_t n = atomic_load_explicit(&g->ejected, memory_order_relaxed);

	do {
		if (n >= cap) {
			atomic_fetch_add_explicit(&g->refused, 1, memory_order_relaxed);
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(
	    &g->ejected, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Give back an ejection slot; never below 0. */
static void group_release(struct breaker_group *g)
{
	uint32_t n = atomic_load_explicit(&g->ejected, memory_order_relaxed);

	while (n && !atomic_compare_exchange_weak_explicit(
			&g->ejected, &n, n - 1, memory_order_relaxed, memory_order_relaxed))
		;
}

/* Forget every outcome of the success-rate window. Lock held (or init). */
static void window_clear(struct breaker *br)
{
	memset(br->window, 0, sizeof(br->window));
}

int breaker_init(struct breaker *br, const struct breaker_cfg *cfg, struct breaker_group *g)
{
	int err = breaker_cfg_check(cfg);

	if (err)
		return err;
	err = pthread_mutex_init(&br->lock, NULL);
	if (err)
		return -err;
	atomic_init(&br->state, BREAKER_CLOSED);
	atomic_init(&br->open_until_ns, 0);
	br->group = g;
	br->consecutive = 0;
	br->backoff_ns = cfg->backoff_min_ns;
	br->ejections = 0;
	br->bucket_ns = cfg->success_rate_window_ns / BREAKER_WINDOW_BUCKETS;
	window_clear(br);
	return 0;
}

void breaker_fini(struct breaker *br)
{
	if (atomic_load_explicit(&br->state, memory_order_relaxed) != BREAKER_CLOSED)
		group_release(br->group);
	pthread_mutex_destroy(&br->lock);
}

enum breaker_state breaker_state(const struct breaker *br)
{
	return atomic_load_explicit(&br->state, memory_order_acquire);
}

bool breaker_probe_due(const struct breaker *br, uint64_t now_ns)
{
	return breaker_state(br) == BREAKER_OPEN &&
	       now_ns >= atomic_load_explicit(&br->open_until_ns, memory_order_relaxed);
}

bool breaker_is_candidate(const struct breaker *br, uint64_t now_ns)
{
	return breaker_state(br) == BREAKER_CLOSED || breaker_probe_due(br, now_ns);
}

enum breaker_ticket breaker_admit(struct breaker *br, uint64_t now_ns)
{
	enum breaker_ticket t = BREAKER_DENY;

	if (breaker_state(br) == BREAKER_CLOSED)
		return BREAKER_PASS;
	if (!breaker_probe_due(br, now_ns))
		return BREAKER_DENY;
	/* Several workers may see the probe due; the lock lets one through. */
	pthread_mutex_lock(&br->lock);
	if (breaker_state(br) == BREAKER_CLOSED) {
		t = BREAKER_PASS;
	} else if (breaker_probe_due(br, now_ns)) {
		atomic_store_explicit(&br->state, BREAKER_HALF_OPEN, memory_order_release);
		t = BREAKER_PROBE;
	}
	pthread_mutex_unlock(&br->lock);
	return t;
}

/* The window bucket for now_ns, reset first if it holds an older slot. */
static void window_add(struct breaker *br, bool success, uint64_t now_ns)
{
	uint64_t gen = now_ns / br->bucket_ns;
	struct breaker_bucket *b = &br->window[gen % BREAKER_WINDOW_BUCKETS];

	if (b->gen != gen) {
		b->gen = gen;
		b->ok = b->fail = 0;
	}
	if (success)
		b->ok++;
	else
		b->fail++;
}

/* Outcomes of the last BREAKER_WINDOW_BUCKETS bucket slots up to now_ns. */
static void window_sum(const struct breaker *br, uint64_t now_ns, uint32_t *ok, uint32_t *fail)
{
	uint64_t gen = now_ns / br->bucket_ns;

	*ok = *fail = 0;
	for (int i = 0; i < BREAKER_WINDOW_BUCKETS; i++) {
		const struct breaker_bucket *b = &br->window[i];

		/* gen <= now's: an outcome from a later clock read counts too. */
		if (b->gen + BREAKER_WINDOW_BUCKETS > gen) {
			*ok += b->ok;
			*fail += b->fail;
		}
	}
}

/* Should a closed breaker trip after a failure at now_ns? Lock held. */
static bool should_trip(struct breaker *br, const struct breaker_cfg *cfg, uint64_t now_ns)
{
	uint32_t ok, fail;

	if (cfg->consecutive_failures && br->consecutive >= cfg->consecutive_failures)
		return true;
	if (!cfg->success_rate_pct)
		return false;
	window_sum(br, now_ns, &ok, &fail);
	if (ok + fail < cfg->success_rate_min_requests || ok + fail == 0)
		return false;
	/* ok / total < pct / 100, in integers. */
	return (uint64_t)ok * 100 < (uint64_t)cfg->success_rate_pct * (ok + fail);
}

/* Go open for the current backoff, jittered. Lock held. */
static void open_for_backoff(struct breaker *br, const struct breaker_cfg *cfg, struct rng *rng,
			     uint64_t now_ns)
{
	uint64_t wait = backoff_jitter(rng, br->backoff_ns, cfg->jitter);

	atomic_store_explicit(&br->open_until_ns, deadline_after(now_ns, wait ? wait : 1),
			      memory_order_relaxed);
	atomic_store_explicit(&br->state, BREAKER_OPEN, memory_order_release);
}

/* Back to closed with a clean slate. Lock held. */
static void close_clean(struct breaker *br, const struct breaker_cfg *cfg)
{
	br->consecutive = 0;
	br->backoff_ns = cfg->backoff_min_ns;
	window_clear(br);
	atomic_store_explicit(&br->state, BREAKER_CLOSED, memory_order_release);
}

enum breaker_event breaker_record(struct breaker *br, const struct breaker_cfg *cfg,
				  struct rng *rng, enum breaker_ticket ticket, bool success,
				  uint64_t now_ns)
{
	enum breaker_event ev = BREAKER_EV_NONE;
	enum breaker_state s;

	if (ticket == BREAKER_DENY)
		return BREAKER_EV_NONE;
	pthread_mutex_lock(&br->lock);
	s = breaker_state(br);
	if (ticket == BREAKER_PROBE && s == BREAKER_HALF_OPEN) {
		if (success) {
			close_clean(br, cfg);
			group_release(br->group);
			ev = BREAKER_EV_RECOVERED;
		} else {
			/* Still ejected: it keeps its slot in the group. */
			br->backoff_ns = backoff_double(br->backoff_ns, cfg->backoff_max_ns);
			open_for_backoff(br, cfg, rng, now_ns);
			ev = BREAKER_EV_REOPENED;
		}
	} else if (ticket == BREAKER_PASS && s == BREAKER_CLOSED) {
		window_add(br, success, now_ns);
		if (success) {
			br->consecutive = 0;
		} else {
			br->consecutive++;
			if (should_trip(br, cfg, now_ns)) {
				if (group_try_eject(br->group)) {
					/* The evidence is spent: a fresh start after the probe. */
					br->consecutive = 0;
					window_clear(br);
					br->backoff_ns = cfg->backoff_min_ns;
					br->ejections++;
					open_for_backoff(br, cfg, rng, now_ns);
					ev = BREAKER_EV_EJECTED;
				} else {
					ev = BREAKER_EV_EJECT_REFUSED;
				}
			}
		}
	}
	/* Anything else is a request sent before the ejection: ignored. */
	pthread_mutex_unlock(&br->lock);
	return ev;
}

void breaker_probe_cancel(struct breaker *br, uint64_t now_ns)
{
	pthread_mutex_lock(&br->lock);
	if (breaker_state(br) == BREAKER_HALF_OPEN) {
		atomic_store_explicit(&br->open_until_ns, now_ns, memory_order_relaxed);
		atomic_store_explicit(&br->state, BREAKER_OPEN, memory_order_release);
	}
	pthread_mutex_unlock(&br->lock);
}

void breaker_snapshot(struct breaker *br, uint64_t now_ns, struct breaker_snapshot *out)
{
	pthread_mutex_lock(&br->lock);
	out->state = breaker_state(br);
	out->consecutive = br->consecutive;
	window_sum(br, now_ns, &out->window_ok, &out->window_fail);
	out->backoff_ns = br->backoff_ns;
	out->open_until_ns = atomic_load_explicit(&br->open_until_ns, memory_order_relaxed);
	out->ejections = br->ejections;
	pthread_mutex_unlock(&br->lock);
}

const char *breaker_state_name(enum breaker_state s)
{
	switch (s) {
	case BREAKER_CLOSED:
		return "closed";
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half-open";
	}
	return "unknown";
}
