/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's one "pick an endpoint" function, for HTTP and opaque TCP
 * alike, and the outcome reports that feed it: P2C over PeakEWMA costs
 * among the endpoints whose breaker admits traffic, a due probe first.
 * Docs: docs/resilience.md ("Wiring", steps 3 to 7).
 *
 * Everything runs on the calling worker's thread with that thread's own
 * random source; the state it reads and updates (endpoint_state.h) is
 * shared and lock-free except a breaker's mutex on outcomes.
 */
#ifndef SHOAL_PROXY_ENDPOINT_PICK_H
#define SHOAL_PROXY_ENDPOINT_PICK_H

#include <stdbool.h>
#include <stdint.h>

#include "balance/rng.h"
#include "proxy/endpoint_state.h"
#include "resilience/breaker.h"

/* No endpoint: the service has none, or none is a candidate right now. */
#define PICK_NONE UINT32_MAX

/*
 * Endpoints a request remembers as tried, to send each retry elsewhere:
 * beyond 8 tries of one request its deadline or budget has long decided.
 */
#define PICK_MAX_AVOID 8

/*
 * How often the service's peer estimate (es_service.peer_ns) is
 * recomputed: a sort of its endpoints' estimates, which move over
 * seconds (tau), so ten times a second is fresh and costs nothing.
 */
#define PICK_PEER_REFRESH_NS 100000000ull

/* What a pick gave one try; keep it with the try until its outcome. */
struct pick_ticket {
	uint32_t idx;		    /* endpoint index in the config; PICK_NONE: none */
	enum breaker_ticket ticket; /* the breaker's admission */
	uint64_t start_ns;	    /* when the try started (its latency's origin) */
	bool active;		    /* started and its outcome not yet reported */
	bool pending;		    /* counted in its endpoint's pending requests */
	bool explore;		    /* an exploration: its sample re-measures the endpoint */
};

/* The calling thread's random source, seeded on first use. */
struct rng *pick_rng(void);

/*
 * The peers' estimate of sv's service at now_ns (es_service.peer_ns),
 * recomputed first when older than PICK_PEER_REFRESH_NS (by one
 * caller; the others read the stored one). Any thread.
 */
double pick_peer_ns(const struct es_svc_view *sv, uint64_t now_ns);

/*
 * Pick an endpoint of sv at now_ns for one try, avoiding the n_avoid
 * indices in avoid (earlier tries of the request) whenever any other
 * endpoint is a candidate. A breaker due for its probe gets this try
 * first; then, for a first try (n_avoid 0), the healthy idle endpoint
 * sent nothing for the longest once that is at least explore_after_ns
 * (exploration, one per endpoint per interval; its successful sample
 * replaces the estimate, peak_ewma_remeasure()); otherwise P2C over
 * peak_ewma_cost() with pick_peer_ns(), each pick admitted by its
 * breaker (a DENY drops it and picks again). On success fills *t (not yet
 * started) and returns its index; PICK_NONE when no endpoint may take
 * the try now. sv NULL (no state for this config): a uniform pick among
 * n_endpoints, every ticket PASS.
 */
uint32_t pick_endpoint(const struct es_svc_view *sv, uint32_t n_endpoints, uint64_t now_ns,
		      const uint32_t *avoid, uint32_t n_avoid, struct pick_ticket *t);

/* The try of t is being sent (its endpoint's pending count grows). */
void pick_start(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns);

/*
 * The try of t ended: success with latency now - start, or a failure
 * (5xx, 429, reset, connect failure, timeout) with retry_after_ns from
 * its Retry-After (PEAK_EWMA_NO_RETRY_AFTER: none). Updates the estimate
 * and the breaker, and logs an ejection or readmission at info. A no-op
 * for a ticket not active. what: how it ended, for the log ("503").
 */
void pick_outcome(const struct es_svc_view *sv, struct pick_ticket *t, bool success,
		     uint64_t retry_after_ns, uint64_t now_ns, const char *what);

/*
 * Opaque TCP: the connect of t succeeded. Its latency is the endpoint's
 * sample and the breaker's success, but the connection stays counted as
 * pending until pick_cancel() at its close, so long-lived connections
 * spread like least-connections.
 */
void pick_connected(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns);

/*
 * The try of t ended without an outcome (the client left, the proxy
 * stopped), or an opaque connection closed: pending drops, an
 * unanswered probe is handed back. A no-op once done.
 */
void pick_cancel(const struct es_svc_view *sv, struct pick_ticket *t, uint64_t now_ns);

#endif
