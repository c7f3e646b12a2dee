/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Who calls which service (docs/dashboards.md, "Callers"): per proxy
 * worker, requests and 5xx responses per (caller, addressed service),
 * for the dashboard's call graph. Not a /metrics family.
 *
 * A caller is a name the proxy resolves once per connection, at accept:
 * the client pod's "namespace/name" when enrollment knows its address,
 * else the client's address. Only pods on this node are redirected to
 * the node's proxy, so the names are few; still, a worker names at most
 * CALLERS_MAX of them, and a connection from any further caller counts
 * as CALLERS_OTHER_NAME. Like http_metrics.h, a table is allocated once,
 * written by its worker only (relaxed stores, keys and names published
 * with release, never rewritten), read by any thread without a lock.
 */
#ifndef SHOAL_RECORDING_CALLERS_H
#define SHOAL_RECORDING_CALLERS_H

#include <stddef.h>
#include <stdint.h>

/* Distinct callers a worker names; a node runs ~100 pods at most (kubelet's max-pods 110). */
#define CALLERS_MAX 128
/* Room for "namespace/name" (63 + 1 + 63, DNS labels) or an address. */
#define CALLERS_NAME_MAX 128
/* (caller, service) pairs a worker holds (power of two); 24 bytes each. */
#define CALLERS_MAX_EDGES 2048
/* Slots probed before a new pair counts as overflow. */
#define CALLERS_MAX_PROBE 32
/* Index and name of the caller every caller past CALLERS_MAX counts as. */
#define CALLERS_OTHER 0
#define CALLERS_OTHER_NAME "other"

struct callers_edge {
	uint64_t key; /* (caller << 32 | svc) + 1; 0: free */
	uint64_t requests, errors;
};

struct callers_table {
	uint32_t n_names;     /* names[0 .. n_names) are set (release) */
	uint64_t overflow;    /* requests not counted: no free slot for their pair */
	uint64_t other_conns; /* connections counted as CALLERS_OTHER_NAME: names full */
	char names[CALLERS_MAX + 1][CALLERS_NAME_MAX]; /* [CALLERS_OTHER] is "other" */
	struct callers_edge edges[CALLERS_MAX_EDGES];
};

/* A table (the only allocation), NULL when memory is short. */
struct callers_table *callers_table_new(void);
void callers_table_free(struct callers_table *t);

/*
 * Worker side (the table's own thread only). callers_intern: the index
 * of caller name (truncated to CALLERS_NAME_MAX - 1 bytes), added when
 * new; CALLERS_OTHER when CALLERS_MAX names are taken, or t is NULL.
 * A linear search: once per connection, never per request.
 */
uint32_t callers_intern(struct callers_table *t, const char *name);
/* A request from caller to service svc (a series id) ended with status (0: none). */
void callers_record(struct callers_table *t, uint32_t caller, uint32_t svc, unsigned int status);

/* ---- read side ---------------------------------------------------------- */

struct callers_row {
	char caller[CALLERS_NAME_MAX];
	uint32_t svc;		   /* series id of the addressed service */
	uint64_t requests, errors; /* errors: 5xx responses */
};

struct callers_snapshot {
	struct callers_row *rows; /* sorted by caller, then svc; one row per pair */
	size_t n_rows;
	uint64_t overflow, other_conns; /* summed over the tables */
};

/*
 * Merge n tables (NULL entries skipped) by (caller name, svc): one caller
 * named by several workers is one row. Any thread; allocates. 0 or -ENOMEM.
 */
int callers_snapshot(struct callers_table *const *t, size_t n, struct callers_snapshot *out);
void callers_snapshot_free(struct callers_snapshot *s);

#endif
