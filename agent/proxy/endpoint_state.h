/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's mutable state per service and per endpoint: latency
 * estimate (PeakEWMA), requests in flight, circuit breaker, retry budget
 * and counters. Config snapshots are immutable and may be swapped, so this
 * lives beside them, in a table keyed by (namespace/name, endpoint
 * address) that survives a swap for the services and endpoints that
 * remain. Docs: docs/resilience.md ("Wiring").
 *
 * Two layers:
 *  - the table (struct es_table) owns every es_service and es_endpoint;
 *    each counts the views' entries that list it, and is freed only when
 *    none does and the newest config no longer has it, so a worker still
 *    holding an older view never touches freed memory, and pod churn
 *    (new addresses every rolling update) does not grow the table for
 *    good;
 *  - a view (struct es_view) maps one config's service and endpoint
 *    indices onto them, with the knobs of that config converted to the
 *    modules' cfg structs. Views are immutable; es_table_sync() builds one
 *    per config and the table keeps it until es_table_free().
 *
 * Threads: workers read views and update the shared state through the
 * modules' own lock-free (or per-breaker mutex) calls. es_table_sync()
 * may run on any thread, one at a time (it takes the table's lock).
 */
#ifndef SHOAL_PROXY_ENDPOINT_STATE_H
#define SHOAL_PROXY_ENDPOINT_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "balance/peak_ewma.h"
#include "config/config.h"
#include "proxy/proxy.h"
#include "resilience/breaker.h"
#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

struct es_service;

/*
 * Budgets replaced by a knob change are kept until the table is freed (a
 * worker may still withdraw from one); past this many changes, a change
 * of budget knobs is logged and ignored rather than growing memory.
 */
#define ES_MAX_OLD_BUDGETS 64
/*
 * The sync finds services by namespace/name and endpoints by address in
 * hash tables (chained, power-of-two sizes, doubled when the entries
 * outnumber the buckets): proxy_update syncs on every config change, and
 * a linear lookup made that quadratic (about 250 ms at 10k services).
 * Initial sizes: a small cluster never resizes, one endpoint list rarely.
 */
#define ES_SVC_BUCKETS_MIN 256
#define ES_EP_BUCKETS_MIN 4

/* One endpoint of one service, for as long as the table lives. */
struct es_endpoint {
	struct shoal_addr addr;
	struct es_service *svc;
	struct peak_ewma ewma;
	struct breaker breaker;
	/* Every outcome the balancer and breaker were told of: each HTTP
	 * attempt (first tries and retries alike) and each opaque connect. */
	_Atomic uint64_t succeeded, failed;
	_Atomic uint64_t last_pick_ns; /* when a pick last chose it; 0: never */
	_Atomic uint64_t explorations; /* picks made by exploration (balance.c) */
	_Atomic bool live;	       /* in the latest synced config */
	bool was_live;		       /* live before the sync in progress (table lock) */
	/* Entries of es_svc_views that point at it (table lock): freed at
	 * 0 unless live, so only a view's own sync or free can drop it. */
	uint32_t sv_refs;
	struct es_endpoint *next;      /* the service's list, live and removed */
	struct es_endpoint *hash_next; /* the service's address hash chain (table lock) */
};

/*
 * One service, by namespace/name. Counters are atomics, written by any
 * worker, read by telemetry (es_service_read).
 */
struct es_service {
	char namespace[CONFIG_MAX_NAME + 1];
	char name[CONFIG_MAX_NAME + 1];
	struct breaker_group group;
	/* The live budget; replaced (the old one kept) when its knobs change. */
	struct retry_budget *_Atomic budget;
	struct retry_budget_cfg budget_cfg;
	struct es_endpoint *endpoints;
	struct es_endpoint **ep_buckets; /* endpoints by address (table lock) */
	uint32_t n_ep_buckets;		 /* a power of two */
	uint32_t n_endpoints;		 /* in the list, live and removed */
	uint32_t n_live;
	_Atomic uint64_t requests;	    /* original requests (budget deposits) */
	_Atomic uint64_t retries;	    /* retries sent (budget withdrawals) */
	_Atomic uint64_t retries_refused;   /* retries the budget refused */
	_Atomic uint64_t deadline_exceeded; /* requests answered 504 at their deadline */
	_Atomic uint64_t no_candidate;	    /* requests that found no endpoint (503) */
	_Atomic uint64_t ejections;	    /* breakers opened (incl. re-opened after a probe) */
	_Atomic uint64_t readmissions;	    /* breakers closed after a good probe */
	/*
	 * The peers' estimate: the lower median of the endpoints' estimates,
	 * refreshed by pick_endpoint() at most every PICK_PEER_REFRESH_NS.
	 * Unsampled estimates age towards it; new and readmitted endpoints
	 * start from it. ns, rounded; default_rtt until first computed.
	 * Only measured estimates count (peak_ewma_measured()); until one is,
	 * peer_measured is false and new endpoints start as guesses.
	 */
	_Atomic uint64_t peer_ns;
	_Atomic bool peer_measured;
	_Atomic uint64_t peer_at_ns; /* when peer_ns was last computed */
	struct es_service *next;
	struct es_service *hash_next; /* the table's name hash chain (table lock) */
	uint64_t hash;		      /* of namespace/name */
	/* The newest es_svc_view built for it, reused by the next config
	 * while the service is unchanged; NULL once freed (table lock). */
	struct es_svc_view *last_sv;
	/* es_svc_views of it (table lock): at 0 no view, not even the
	 * newest, has it, and it is freed with its endpoints. */
	uint32_t n_sv;
};

/* A service as one config sees it. Immutable once built. */
struct es_svc_view {
	struct es_service *state;
	struct retry_budget *budget;
	struct peak_ewma_cfg ewma_cfg;
	struct breaker_cfg breaker_cfg;
	struct retry_policy_cfg retry_cfg; /* the service's; routes override per request */
	uint64_t backoff_base_ns, backoff_max_ns;
	uint64_t fail_fast_ns;
	uint64_t explore_after_ns;   /* exploration interval; 0: off */
	uint64_t connect_timeout_ns; /* 0: the proxy's */
	uint64_t request_timeout_ns; /* 0: none */
	uint64_t per_try_timeout_ns; /* 0: none */
	uint64_t idle_timeout_ns;    /* 0: the proxy's */
	uint32_t n_endpoints;
	struct es_endpoint **ep; /* by the config's endpoint index */
	/* Sharing between views (table lock): the chunks holding it, and
	 * the knobs it was built from, to tell whether the next config
	 * changed the service. */
	uint32_t refs;
	struct config_resilience res;
	/* The serial of the config_service it describes (config.h); 0: unknown. */
	uint64_t from_serial;
};

/*
 * Services of a view, ES_VIEW_CHUNK at a time. Consecutive views share
 * the chunks (and chunks the es_svc_views) of services that did not
 * change, so that a view costs its chunk pointers plus what changed,
 * not 250 bytes per service: one view is built per config change and
 * each is kept ES_VIEW_GRACE_NS after its snapshot (docs/discovery.md,
 * "Snapshots").
 */
#define ES_VIEW_CHUNK 64
struct es_view_chunk {
	uint32_t refs; /* views holding it (table lock) */
	struct es_svc_view *svc[ES_VIEW_CHUNK]; /* NULL: not built (a failed sync) */
};

struct es_view {
	const struct config *cfg;
	uint32_t n_services;
	uint32_t n_chunks;		/* ceil(n_services / ES_VIEW_CHUNK) */
	struct es_view_chunk **chunks;	/* by service index / ES_VIEW_CHUNK */
	struct es_view *older;		/* the table's list of views, or of retired ones */
	uint64_t retired_ns;		/* when es_view_retire() was called */
};

/* Service i of v, or NULL (none, or not built). */
static inline struct es_svc_view *es_view_at(const struct es_view *v, uint32_t i)
{
	const struct es_view_chunk *ch;

	if (!v || i >= v->n_services)
		return NULL;
	ch = v->chunks[i / ES_VIEW_CHUNK];
	return ch ? ch->svc[i % ES_VIEW_CHUNK] : NULL;
}

struct es_table {
	pthread_mutex_t lock; /* serialises es_table_sync */
	struct es_service *services;
	struct es_service **svc_buckets; /* services by namespace/name */
	uint32_t n_svc_buckets;		 /* a power of two; 0 until the first sync */
	uint32_t n_services;
	struct retry_budget *old_budgets[ES_MAX_OLD_BUDGETS];
	uint32_t n_old_budgets;
	struct es_view *views;	 /* newest first */
	struct es_view *retired; /* retired, freed ES_VIEW_GRACE_NS later */
};

/*
 * A retired view (its config snapshot is gone) is freed this long after,
 * at a later sync: a metrics scrape or a debug page that loaded it just
 * before is done by then. Views cost about 200 bytes per service, so 30 s
 * of discovery updates is little next to the configs themselves.
 */
#define ES_VIEW_GRACE_NS (30 * 1000000000ull)

/* An empty table. 0 or -errno. */
int es_table_init(struct es_table *t);

/* Free the table, its views and all state; no worker may use them. */
void es_table_free(struct es_table *t);

/*
 * A view of cfg: services and endpoints found by namespace/name and
 * address keep their state, new ones and ones that come back start from
 * the service's peer estimate (default_rtt for a new service; breaker
 * closed), ones cfg no longer has are marked removed (their
 * breaker no longer counts towards the ejection cap's service size).
 * Returns the view (owned by the table) or NULL with errno set (ENOMEM,
 * or EINVAL for knobs the modules refuse, with a warning logged). Cost:
 * O(services + endpoints) expected (hash lookups), plus each service's
 * removed endpoints, which stay listed.
 */
struct es_view *es_table_sync(struct es_table *t, const struct config *cfg);

/*
 * v's config is gone (its snapshot freed): v is freed ES_VIEW_GRACE_NS
 * from now_ns, by a later es_table_sync() or es_table_free(). Any thread.
 */
void es_view_retire(struct es_table *t, struct es_view *v, uint64_t now_ns);

/*
 * The view of service svc of cfg, or NULL when v is not cfg's view (a
 * config swapped without a sync) or svc is not in it. Callers then
 * balance without state (es_view_service never fails for a synced view).
 */
const struct es_svc_view *es_view_service(const struct es_view *v, const struct config *cfg,
					  const struct config_service *svc);

/* Stats of endpoint idx of sv at now_ns (proxy.h; zeroed past its endpoints). */
void es_endpoint_read(const struct es_svc_view *sv, uint32_t idx, uint64_t now_ns,
		      struct proxy_endpoint_stats *out);

/* Stats of the service of sv at now_ns (proxy.h). */
void es_service_read(const struct es_svc_view *sv, uint64_t now_ns,
		     struct proxy_service_stats *out);

/*
 * Log at info the state of every service of v at now_ns: budget balance,
 * ejected endpoints and counters, then each endpoint's estimate, pending
 * requests and breaker. For debugging by hand (a signal, an admin call).
 */
void es_view_log(const struct es_view *v, uint64_t now_ns);

/* Convert a config_resilience (zeroed: defaults) into sv's cfg fields. 0 or -EINVAL. */
int es_svc_view_cfg(struct es_svc_view *sv, const struct config_resilience *r);

#endif
