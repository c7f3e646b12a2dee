/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Golden metrics of the proxy (docs/metrics.md): HTTP requests, responses
 * by status, latency histograms and resilience events per service, route,
 * backend and endpoint; opaque TCP connections and bytes per service.
 *
 * Recording: each proxy worker owns one shard and is its only writer. A
 * shard is a fixed-size open-addressed table of series allocated once at
 * worker start: recording is a hash probe and a few relaxed stores, no
 * lock, no allocation. A series is identified by small integers (the
 * service's and route's ids from series_ids.h, the same in every config
 * snapshot; the endpoint's slot in the snapshot the request used, with
 * the endpoint's address; the status), never by a string, so the number
 * of series is bounded by construction and capped per shard
 * (METRICS_HTTP_MAX_SERIES); what does not fit is counted (overflow),
 * never allocated.
 *
 * Reading: the scraper (any thread) copies every shard's series, maps
 * each endpoint onto its slot in the newest config by address, merges
 * them by key and resolves ids to names (series_ids.h); series whose
 * endpoint is no longer in the newest config are not exported.
 */
#ifndef SHOAL_RECORDING_HTTP_METRICS_H
#define SHOAL_RECORDING_HTTP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/abi.h"
#include "recording/series_ids.h"

/*
 * Series a worker can hold (power of two). Each costs 264 bytes, so
 * 2048 is ~540 KiB a worker; a node with 100 services of 10 endpoints
 * and 4 status codes each needs ~1000 (request rows + status rows).
 */
#define METRICS_HTTP_MAX_SERIES 2048
/* Slots probed before a new series counts as overflow: bounds the
 * hot-path cost of a nearly full table. */
#define METRICS_HTTP_MAX_PROBE 32
/*
 * gRPC series a worker can hold (power of two), in a table of their own
 * so that the HTTP families and their readers never see them: one per
 * (service, method, grpc_status). A method is one a route of the service
 * names by its exact path, else "other" (CONFIG_MAX_ROUTES + 1 per
 * service), a status one of METRICS_GRPC_STATUSES: a node with 10 gRPC
 * services of 5 methods seeing 4 codes each needs ~240.
 */
#define METRICS_GRPC_MAX_SERIES 1024
/* grpc_status label values: the 17 codes (0 - 16) and "none". */
#define METRICS_GRPC_CODES 17
#define METRICS_GRPC_STATUS_NONE METRICS_GRPC_CODES
#define METRICS_GRPC_STATUSES (METRICS_GRPC_CODES + 1)

/* Linkerd's response_latency_ms buckets, in milliseconds (DESIGN.md). */
#define METRICS_LATENCY_BUCKETS_MS                                                                 \
	1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000,  \
	    10000, 20000, 30000, 40000, 50000
#define METRICS_LATENCY_N 25

/* Key fields: 0 means "none" for route and endpoint (index + 1 otherwise);
 * status 0 is the request row of its (service, route, backend, endpoint). */
#define METRICS_KEY_NONE 0
#define METRICS_KEY_SVC_BITS 15	   /* service ids: 1 .. SERIES_IDS_MAX_SERVICES (16384) */
#define METRICS_KEY_ROUTE_BITS 7   /* routes + 1: CONFIG_MAX_ROUTES (64) */
#define METRICS_KEY_EP_BITS 11	   /* endpoints + 1: CONFIG_MAX_ENDPOINTS (1024) */
#define METRICS_KEY_STATUS_BITS 10 /* HTTP status codes, 100 - 599 */

struct metrics_http_key {
	uint32_t svc;	   /* series id of the addressed service (config_service.metrics_id) */
	uint32_t route;	   /* series id of the matched route (config_route.metrics_id), or 0 */
	uint32_t backend;  /* series id of the service whose endpoint served it */
	uint32_t endpoint; /* endpoint index + 1 in backend (newest config in a snapshot), or 0 */
	uint32_t status;   /* HTTP status, or 0: the request row */
};

/* One series. Written by its worker only (relaxed atomic stores), read by
 * the scraper (relaxed loads); key is published last, with release. */
struct metrics_http_series {
	uint64_t key;		    /* packed metrics_http_key | METRICS_KEY_USED; 0 = free */
	struct shoal_addr ep_addr;  /* the endpoint's address when the series began */
	uint64_t count;		    /* request row: requests; status row: responses */
	uint64_t retries;	    /* request row: attempts after the first */
	uint64_t retries_refused;   /* request row: retries the budget refused */
	uint64_t deadline_exceeded; /* request row: requests that ran out of time */
	uint64_t buckets[METRICS_LATENCY_N + 1]; /* status row; the last is +Inf; not cumulative */
	uint64_t sum_us;			 /* status row: latency sum, microseconds */
};

/* Opaque TCP counters of one service (by series id). */
struct metrics_tcp_series {
	uint64_t opened, closed;
	uint64_t read_bytes;  /* from the application, sent on to the endpoint */
	uint64_t write_bytes; /* from the endpoint, written to the application */
};

struct metrics_http_shard {
	uint64_t overflow; /* series that did not fit (HTTP and gRPC) */
	uint64_t unkeyed;  /* requests and connections of services without a series id */
	struct metrics_tcp_series *tcp; /* by series id: SERIES_IDS_MAX_SERVICES + 1 */
	struct metrics_http_series series[METRICS_HTTP_MAX_SERIES];
	/* gRPC rows: key.route is the method (a route's id, 0 "other"),
	 * key.status the grpc_status index; count, buckets and sum_us used. */
	struct metrics_http_series grpc[METRICS_GRPC_MAX_SERIES];
};

/*
 * A shard for one worker. The only allocation; NULL when memory is short
 * (the worker then records nothing). The TCP counters cover every
 * possible service id (32 bytes each, 512 KiB), but pages of ids never
 * used are never touched, so they cost no memory.
 */
struct metrics_http_shard *metrics_http_shard_new(void);
void metrics_http_shard_free(struct metrics_http_shard *s);

/*
 * Worker side (the shard's own thread only). @ep_addr is the endpoint's
 * address (NULL when key->endpoint is 0); a series whose endpoint slot now
 * holds another address starts again from zero. @s may be NULL.
 */
void metrics_http_shard_request(struct metrics_http_shard *s, const struct metrics_http_key *key,
				const struct shoal_addr *ep_addr, unsigned int status,
				uint64_t latency_ns);

enum metrics_http_event {
	METRICS_HTTP_RETRY,	    /* an attempt after the first went out */
	METRICS_HTTP_RETRY_REFUSED, /* a retry was allowed by policy but not by the budget */
	METRICS_HTTP_DEADLINE,	    /* the request's deadline expired */
};
void metrics_http_shard_event(struct metrics_http_shard *s, const struct metrics_http_key *key,
			      enum metrics_http_event ev);

/*
 * A gRPC call to service svc ended: method is the series id of the route
 * naming its :path exactly (0: "other"), grpc_status its code (codes
 * past 16 count as 2, UNKNOWN, as gRPC clients read them; negative:
 * none was sent), latency as for HTTP. @s may be NULL.
 */
void metrics_grpc_shard_request(struct metrics_http_shard *s, uint32_t svc, uint32_t method,
				int grpc_status, uint64_t latency_ns);

/* An observation of a service without a series id (id 0): counted only. */
void metrics_http_shard_unkeyed(struct metrics_http_shard *s);

void metrics_tcp_shard_open(struct metrics_http_shard *s, uint32_t svc);
void metrics_tcp_shard_close(struct metrics_http_shard *s, uint32_t svc);
void metrics_tcp_shard_bytes(struct metrics_http_shard *s, uint32_t svc, uint64_t read,
			     uint64_t written);

/* ---- scrape side ------------------------------------------------------- */

/* A merged series: the sum over every shard. */
struct metrics_http_row {
	struct metrics_http_key key;
	struct shoal_addr ep_addr;
	uint64_t count, retries, retries_refused, deadline_exceeded;
	uint64_t buckets[METRICS_LATENCY_N + 1];
	uint64_t sum_us;
};

struct metrics_http_snapshot {
	struct metrics_http_row
	    *rows; /* sorted by key: service, route, backend, endpoint, status */
	size_t n_rows;
	/* gRPC rows, sorted by service, method (key.route), grpc_status (key.status). */
	struct metrics_http_row *grpc;
	size_t n_grpc;
	struct metrics_tcp_series *tcp; /* by series id, n_services entries */
	uint32_t n_services;
	uint64_t overflow;
	uint64_t unkeyed; /* observations without a series id */
	uint64_t series;  /* series held by all shards */
};

/*
 * Which series a scrape exports, and where their endpoints are now.
 * service: whether series id svc is exported. endpoint: the index + 1 of
 * address addr among the endpoints of service svc in the newest config,
 * or 0 when it is not there (the series is dropped); hint is the index +
 * 1 the series was recorded with, right unless the endpoints moved.
 */
struct metrics_resolver {
	bool (*service)(void *ctx, uint32_t svc);
	uint32_t (*endpoint)(void *ctx, uint32_t svc, const struct shoal_addr *addr, uint32_t hint);
	void *ctx;
};

/*
 * Merge @n shards (NULL entries skipped) into @out: series of services
 * @res does not export are dropped, endpoints are renumbered to the
 * newest config's slots (dropped when gone), and copies of one series
 * (shards, or slots of older snapshots) are summed. Any thread;
 * allocates. Returns 0 or -ENOMEM.
 */
int metrics_http_snapshot(struct metrics_http_shard *const *shards, size_t n,
			  const struct metrics_resolver *res, struct metrics_http_snapshot *out);
void metrics_http_snapshot_free(struct metrics_http_snapshot *snap);

/* The grpc_status label of index i (< METRICS_GRPC_STATUSES): "0" .. "16", "none". */
const char *metrics_grpc_status_label(uint32_t i);

/* The upper bounds of the latency buckets, in ms (METRICS_LATENCY_N). */
extern const uint32_t metrics_latency_bounds_ms[METRICS_LATENCY_N];

#endif
