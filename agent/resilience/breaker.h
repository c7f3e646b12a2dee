/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Circuit breaker, one per endpoint, and the ejection cap, one per
 * service. Docs: docs/resilience.md.
 *
 *   CLOSED --(7 consecutive failures, or success rate < 80 % over 10 s
 *             with >= 5 requests; and the service's ejection cap allows)--> OPEN
 *   OPEN --(backoff elapsed; the next admit() is the probe)--> HALF_OPEN
 *   HALF_OPEN --(probe succeeds)--> CLOSED, backoff back to its minimum
 *   HALF_OPEN --(probe fails)--> OPEN, backoff doubled (at most 60 s)
 *
 * The backoff an endpoint stays out is jittered by +-50 %, so endpoints
 * ejected together are not all probed in the same instant.
 *
 * Threads: admission of a closed breaker is one atomic load. Outcomes and
 * transitions take the breaker's mutex (once per response, tens of ns;
 * the success-rate window is too much state for one atomic word). The
 * group is lock-free. Time and randomness are arguments, so tests are
 * exact; rng is the calling worker's own.
 */
#ifndef SHOAL_RESILIENCE_BREAKER_H
#define SHOAL_RESILIENCE_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "balance/rng.h"

/* Linkerd's consecutive-failure accrual defaults. */
#define BREAKER_DEFAULT_CONSECUTIVE_FAILURES 7
#define BREAKER_DEFAULT_BACKOFF_MIN_NS (1 * 1000000000ull)
#define BREAKER_DEFAULT_BACKOFF_MAX_NS (60 * 1000000000ull)
#define BREAKER_DEFAULT_JITTER 0.5
/*
 * Success-rate trip: catches an endpoint failing often but not seven
 * times in a row (say, one request in three). Needs a few requests so one
 * early failure on a quiet endpoint does not eject it.
 */
#define BREAKER_DEFAULT_SUCCESS_RATE_PCT 80
#define BREAKER_DEFAULT_SUCCESS_RATE_WINDOW_NS (10 * 1000000000ull)
#define BREAKER_DEFAULT_SUCCESS_RATE_MIN_REQUESTS 5
/*
 * At most half of a service's endpoints out at once: when failures are
 * everywhere, the service is the problem, and ejecting more would only
 * pile its load on fewer endpoints (Envoy's max_ejection_percent idea).
 */
#define BREAKER_DEFAULT_MAX_EJECTION_PCT 50
/* The success-rate window slides in steps of window / 10 (1 s by default). */
#define BREAKER_WINDOW_BUCKETS 10

/* Knobs, per service. Fill with breaker_cfg_default(). */
struct breaker_cfg {
	uint32_t consecutive_failures;	    /* eject after this many in a row; 0: never */
	uint64_t backoff_min_ns;	    /* first ejection time, before jitter */
	uint64_t backoff_max_ns;	    /* doubling stops here */
	double jitter;			    /* ejection time x [1 - jitter, 1 + jitter) */
	uint32_t success_rate_pct;	    /* eject below this success rate; 0: never */
	uint64_t success_rate_window_ns;    /* over this window */
	uint32_t success_rate_min_requests; /* with at least this many outcomes in it */
	uint32_t max_ejection_pct;	    /* share of the service's endpoints out at once */
};

enum breaker_state {
	BREAKER_CLOSED,	   /* traffic flows */
	BREAKER_OPEN,	   /* ejected until open_until_ns */
	BREAKER_HALF_OPEN, /* one probe in flight; nothing else admitted */
};

/* What admit() decided for one request; keep it with the request. */
enum breaker_ticket {
	BREAKER_DENY,  /* not admitted: pick another endpoint */
	BREAKER_PASS,  /* admitted, breaker closed */
	BREAKER_PROBE, /* admitted as the one probe of a half-open breaker */
};

/* What an outcome did to the breaker, for logs and metrics. */
enum breaker_event {
	BREAKER_EV_NONE,
	BREAKER_EV_EJECTED,	  /* closed -> open */
	BREAKER_EV_EJECT_REFUSED, /* would have opened; the service's cap said no */
	BREAKER_EV_RECOVERED,	  /* half-open -> closed */
	BREAKER_EV_REOPENED,	  /* half-open -> open, backoff doubled */
};

/* Per service: how many of its endpoints are ejected (open or half-open). */
struct breaker_group {
	_Atomic uint32_t n_endpoints;
	_Atomic uint32_t ejected;
	_Atomic uint32_t max_ejection_pct;
	_Atomic uint64_t refused; /* ejections refused by the cap, ever */
};

/* One slot of the success-rate window. */
struct breaker_bucket {
	uint64_t gen; /* now / bucket_ns when these counts started */
	uint32_t ok, fail;
};

struct breaker {
	pthread_mutex_t lock;		/* guards every non-atomic field */
	_Atomic int state;		/* enum breaker_state; read without the lock */
	_Atomic uint64_t open_until_ns; /* OPEN: when the probe may go */
	struct breaker_group *group;
	uint32_t consecutive; /* failures in a row while closed */
	uint64_t backoff_ns;  /* current ejection time, before jitter */
	uint64_t ejections;   /* times ejected (closed -> open), ever */
	uint64_t bucket_ns;   /* success_rate_window_ns / BREAKER_WINDOW_BUCKETS */
	struct breaker_bucket window[BREAKER_WINDOW_BUCKETS];
};

/* For debug output and metrics; a consistent copy taken under the lock. */
struct breaker_snapshot {
	enum breaker_state state;
	uint32_t consecutive;
	uint32_t window_ok, window_fail; /* outcomes in the success-rate window */
	uint64_t backoff_ns;
	uint64_t open_until_ns;
	uint64_t ejections;
};

/* The defaults above. */
void breaker_cfg_default(struct breaker_cfg *cfg);

/*
 * 0, or -EINVAL when: backoff_min is 0 or above backoff_max, jitter is
 * outside [0, 1], a percentage is above 100, or the window is shorter
 * than BREAKER_WINDOW_BUCKETS ns.
 */
int breaker_cfg_check(const struct breaker_cfg *cfg);

/* A group of n_endpoints, none ejected, with cfg's cap. */
void breaker_group_init(struct breaker_group *g, const struct breaker_cfg *cfg,
			uint32_t n_endpoints);

/* The service now has n_endpoints (discovery changed it). */
void breaker_group_resize(struct breaker_group *g, uint32_t n_endpoints);

/* How many endpoints of the group may be out at once: floor(n * pct / 100). */
uint32_t breaker_group_cap(const struct breaker_group *g);

/*
 * A closed breaker of an endpoint in group g (counted in its
 * n_endpoints by the caller). Returns 0, -EINVAL for a cfg that
 * breaker_cfg_check() refuses, or -errno from the mutex.
 */
int breaker_init(struct breaker *br, const struct breaker_cfg *cfg, struct breaker_group *g);

/* The endpoint is gone: release its ejection slot if it held one. */
void breaker_fini(struct breaker *br);

/* The stored state (an OPEN breaker may be due for its probe: see below). */
enum breaker_state breaker_state(const struct breaker *br);

/*
 * May the endpoint be a balancing candidate at now_ns? True when closed,
 * or open with its backoff elapsed (the probe is due). Lock-free and
 * without side effects: a P2C filter calls it on every endpoint.
 */
bool breaker_is_candidate(const struct breaker *br, uint64_t now_ns);

/* True when open with its backoff elapsed: the next admit() is the probe. */
bool breaker_probe_due(const struct breaker *br, uint64_t now_ns);

/*
 * Admit one request to the endpoint at now_ns, after the balancer picked
 * it. PASS when closed. PROBE for exactly one caller once the backoff
 * has elapsed: the breaker goes half-open and denies everyone else until
 * that request's outcome is recorded. DENY otherwise.
 */
enum breaker_ticket breaker_admit(struct breaker *br, uint64_t now_ns);

/*
 * The outcome of a request admitted with ticket (PASS or PROBE). A
 * failure is what the balancer penalises: 5xx, 429, reset, connect
 * failure or timeout. Outcomes of PASS requests that finish after the
 * breaker opened are ignored (they were sent before the ejection); only
 * the probe decides a half-open breaker. rng jitters a new backoff.
 */
enum breaker_event breaker_record(struct breaker *br, const struct breaker_cfg *cfg,
				  struct rng *rng, enum breaker_ticket ticket, bool success,
				  uint64_t now_ns);

/*
 * The probe ended with no outcome (the client left, the proxy stopped):
 * the breaker is open again with its backoff elapsed, so the next
 * admit() probes at once. A no-op unless half-open.
 */
void breaker_probe_cancel(struct breaker *br, uint64_t now_ns);

/* A consistent copy of br at now_ns (the window counts only live buckets). */
void breaker_snapshot(struct breaker *br, uint64_t now_ns, struct breaker_snapshot *out);

/* "closed", "open", "half-open". */
const char *breaker_state_name(enum breaker_state s);

#endif
