/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the authorization policy decided (docs/policy.md, "Observability"):
 * per proxy worker, a counter per (destination namespace, service, policy,
 * decision) for shoal_policy_decisions_total, and a ring of recent
 * decisions for /debug/policy.
 *
 * Counters are keyed by strings (the rule's name or the default's reason),
 * copied into the table when a series is first seen and never freed or
 * rewritten, so a policy reload (which frees the compiled set the names
 * came from) keeps every series and its count: they stay monotonic. A
 * worker holds at most POLICY_STATS_MAX_SERIES series; a decision of any
 * further series counts in the worker's overflow bucket, exported as the
 * series policy="other".
 *
 * The hot path does not hash strings: a small direct-mapped cache maps
 * (policy set serial, service series id, reason pointer, decision) to the
 * series' slot. Within one compiled set (one serial; serials are never
 * reused) a reason pointer names one rule or default, and a series id one
 * service for the agent's life (series_ids.h), so a hit is exact; a new set
 * misses once per series and takes the string path (a hash and a compare).
 *
 * Like callers.h, a table is allocated once, its counters written by its
 * worker only (relaxed stores), keys published with release, read by any
 * thread without a lock. The ring of recent decisions is the exception: a
 * mutex per worker, taken by the worker only for a denial or a sampled
 * allow (1 in POLICY_EVENTS_ALLOW_EVERY, and the first of each series), and
 * by a reader for its copy, so an ordinary allowed call takes no lock.
 */
#ifndef SHOAL_RECORDING_POLICY_STATS_H
#define SHOAL_RECORDING_POLICY_STATS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Series per worker: a node's services times the rules and defaults that
 * decide for them are tens to hundreds; renamed rules add series (they are
 * never evicted, to stay monotonic). 424 bytes each.
 */
#define POLICY_STATS_MAX_SERIES 512
/* Slots probed before a new series counts as overflow. */
#define POLICY_STATS_MAX_PROBE 32
/* Direct-mapped cache entries of the hot path (power of two). */
#define POLICY_STATS_CACHE 64
/* The policy label of the overflow bucket. */
#define POLICY_STATS_OTHER "other"
/* Label room: a DNS label (namespace, service) and a rule name (DNS subdomain). */
#define POLICY_STATS_LABEL_MAX 64
#define POLICY_STATS_NAME_MAX 254

/* Recent decisions a worker keeps (/debug/policy shows the newest of all workers). */
#define POLICY_EVENTS_MAX 64
/* One allowed call in this many is kept in the ring (with the first of each series). */
#define POLICY_EVENTS_ALLOW_EVERY 128
/* Room of a recent decision's caller (a SPIFFE ID, POLICY_MAX_ID) and path (truncated). */
#define POLICY_EVENTS_CALLER_MAX 513
#define POLICY_EVENTS_METHOD_MAX 33
#define POLICY_EVENTS_PATH_MAX 129

struct policy_stats_series {
	uint64_t key; /* hash | 1; 0: free (release once the strings are in) */
	uint64_t count;
	bool allow;
	char ns[POLICY_STATS_LABEL_MAX];
	char service[POLICY_STATS_LABEL_MAX];
	char policy[POLICY_STATS_NAME_MAX];
};

struct policy_stats_cache {
	uint64_t serial; /* 0: empty */
	const char *reason;
	uint32_t svc;
	uint32_t slot; /* index into series, or POLICY_STATS_MAX_SERIES: overflow */
	bool allow;
};

struct policy_event {
	int64_t time_ms; /* CLOCK_REALTIME */
	uint64_t seq;	 /* the worker's decision count, to order equal times */
	char caller[POLICY_EVENTS_CALLER_MAX]; /* SPIFFE ID, or "" unauthenticated */
	char ns[POLICY_STATS_LABEL_MAX];
	char service[POLICY_STATS_LABEL_MAX];
	uint16_t port;
	char method[POLICY_EVENTS_METHOD_MAX]; /* "": a connection */
	char path[POLICY_EVENTS_PATH_MAX];
	bool allow;
	char reason[POLICY_STATS_NAME_MAX];
};

struct policy_stats {
	uint64_t overflow[2]; /* [allow]: decisions of series past the bound */
	struct policy_stats_series series[POLICY_STATS_MAX_SERIES];
	/* Worker only. */
	struct policy_stats_cache cache[POLICY_STATS_CACHE];
	uint64_t decisions;
	uint64_t allows_unsampled;
	/* The ring of recent decisions, under lock. */
	pthread_mutex_t lock;
	struct policy_event events[POLICY_EVENTS_MAX];
	uint64_t n_events; /* ever written; events[n % MAX] is the next */
};

/* A table (the only allocation), NULL when memory is short. */
struct policy_stats *policy_stats_new(void);
void policy_stats_free(struct policy_stats *t);

/* One decision, as the proxy made it. Strings need not outlive the call. */
struct policy_stats_decision {
	uint64_t serial; /* the compiled set's (policy_set_serial); 0: do not cache */
	uint32_t svc;	 /* the service's series id; 0: none (do not cache) */
	const char *ns, *service;
	const char *reason; /* rule name or default-...; stable while serial is */
	bool allow;
	/* For the ring: */
	const char *caller; /* SPIFFE ID, NULL: unauthenticated */
	uint16_t port;
	const char *method, *path; /* NULL: a connection */
	size_t method_len, path_len;
};

/*
 * Count d in t (the worker's own table; NULL is ignored), and keep it in
 * the ring when it is a denial or a sampled allow. No allocation; no lock
 * unless kept in the ring.
 */
void policy_stats_record(struct policy_stats *t, const struct policy_stats_decision *d);

/* ---- read side ---------------------------------------------------------- */

struct policy_stats_row {
	char ns[POLICY_STATS_LABEL_MAX];
	char service[POLICY_STATS_LABEL_MAX];
	char policy[POLICY_STATS_NAME_MAX];
	bool allow;
	uint64_t count;
};

struct policy_stats_snapshot {
	struct policy_stats_row *rows; /* sorted by ns, service, policy, decision; merged */
	size_t n_rows;
	uint64_t overflow[2];	     /* [allow], summed */
	struct policy_event *events; /* newest first, at most POLICY_EVENTS_MAX */
	size_t n_events;
};

/*
 * Merge n tables (NULL entries skipped): one series counted by several
 * workers is one row; the rings' newest POLICY_EVENTS_MAX decisions. Any
 * thread; allocates. 0 or -ENOMEM.
 */
int policy_stats_snapshot(struct policy_stats *const *t, size_t n,
			  struct policy_stats_snapshot *out);
void policy_stats_snapshot_free(struct policy_stats_snapshot *s);

#endif
