// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/http_metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

_Static_assert((METRICS_HTTP_MAX_SERIES & (METRICS_HTTP_MAX_SERIES - 1)) == 0,
	       "METRICS_HTTP_MAX_SERIES must be a power of two (index masking)");
_Static_assert((1u << METRICS_KEY_SVC_BITS) > SERIES_IDS_MAX_SERVICES,
	       "a service id must fit its key field");
_Static_assert((1u << METRICS_KEY_ROUTE_BITS) > SERIES_IDS_MAX_ROUTES,
	       "a route id must fit its key field");
_Static_assert((METRICS_GRPC_MAX_SERIES & (METRICS_GRPC_MAX_SERIES - 1)) == 0,
	       "METRICS_GRPC_MAX_SERIES must be a power of two (index masking)");

/* TCP counters: one per possible service id, 0 (none) included. */
#define METRICS_TCP_SERIES (SERIES_IDS_MAX_SERVICES + 1)

const uint32_t metrics_latency_bounds_ms[METRICS_LATENCY_N] = {METRICS_LATENCY_BUCKETS_MS};

/* Bit 63 marks a used slot, so a key of all-zero fields is still not 0. */
#define METRICS_KEY_USED (1ull << 63)

#define KEY_STATUS_SHIFT 0
#define KEY_EP_SHIFT (KEY_STATUS_SHIFT + METRICS_KEY_STATUS_BITS)
#define KEY_BACKEND_SHIFT (KEY_EP_SHIFT + METRICS_KEY_EP_BITS)
#define KEY_ROUTE_SHIFT (KEY_BACKEND_SHIFT + METRICS_KEY_SVC_BITS)
#define KEY_SVC_SHIFT (KEY_ROUTE_SHIFT + METRICS_KEY_ROUTE_BITS)
_Static_assert(KEY_SVC_SHIFT + METRICS_KEY_SVC_BITS <= 63, "the packed key fits 63 bits");

#define FIELD_MASK(bits) ((1ull << (bits)) - 1)

/* Pack k; false when a field does not fit (a config beyond the limits). */
static bool key_pack(const struct metrics_http_key *k, unsigned int status, uint64_t *out)
{
	if (k->svc > FIELD_MASK(METRICS_KEY_SVC_BITS) ||
	    k->backend > FIELD_MASK(METRICS_KEY_SVC_BITS) ||
	    k->route > FIELD_MASK(METRICS_KEY_ROUTE_BITS) ||
	    k->endpoint > FIELD_MASK(METRICS_KEY_EP_BITS) ||
	    status > FIELD_MASK(METRICS_KEY_STATUS_BITS))
		return false;
	*out = METRICS_KEY_USED | (uint64_t)k->svc << KEY_SVC_SHIFT |
	       (uint64_t)k->route << KEY_ROUTE_SHIFT | (uint64_t)k->backend << KEY_BACKEND_SHIFT |
	       (uint64_t)k->endpoint << KEY_EP_SHIFT | (uint64_t)status << KEY_STATUS_SHIFT;
	return true;
}

static void key_unpack(uint64_t v, struct metrics_http_key *k)
{
	k->svc = (v >> KEY_SVC_SHIFT) & FIELD_MASK(METRICS_KEY_SVC_BITS);
	k->route = (v >> KEY_ROUTE_SHIFT) & FIELD_MASK(METRICS_KEY_ROUTE_BITS);
	k->backend = (v >> KEY_BACKEND_SHIFT) & FIELD_MASK(METRICS_KEY_SVC_BITS);
	k->endpoint = (v >> KEY_EP_SHIFT) & FIELD_MASK(METRICS_KEY_EP_BITS);
	k->status = (v >> KEY_STATUS_SHIFT) & FIELD_MASK(METRICS_KEY_STATUS_BITS);
}

struct metrics_http_shard *metrics_http_shard_new(void)
{
	struct metrics_http_shard *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->tcp = calloc(METRICS_TCP_SERIES, sizeof(*s->tcp));
	if (!s->tcp) {
		free(s);
		return NULL;
	}
	return s;
}

void metrics_http_shard_free(struct metrics_http_shard *s)
{
	if (!s)
		return;
	free(s->tcp);
	free(s);
}

/* Single writer: a load and a relaxed store is an increment no reader tears. */
#define BUMP(field, v) __atomic_store_n(&(field), (field) + (v), __ATOMIC_RELAXED)

/* Zero a series' values before it is (re)published under a key. */
static void series_clear(struct metrics_http_series *e)
{
	__atomic_store_n(&e->count, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&e->retries, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&e->retries_refused, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&e->deadline_exceeded, 0, __ATOMIC_RELAXED);
	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		__atomic_store_n(&e->buckets[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&e->sum_us, 0, __ATOMIC_RELAXED);
}

/*
 * The series of key in table (size slots, a power of two) of s, created
 * when new; NULL (counted) when it does not fit within
 * METRICS_HTTP_MAX_PROBE slots. A series found under the
 * same endpoint slot but another address restarts from zero: the slot
 * now names a different endpoint.
 */
static struct metrics_http_series *series_find(struct metrics_http_shard *s,
					       struct metrics_http_series *table, uint32_t size,
					       uint64_t key, const struct shoal_addr *ep_addr)
{
	uint32_t mask = size - 1;
	uint32_t i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 40) & mask;
	struct shoal_addr none = {};

	if (!ep_addr)
		ep_addr = &none;
	for (int probe = 0; probe < METRICS_HTTP_MAX_PROBE; probe++, i = (i + 1) & mask) {
		struct metrics_http_series *e = &table[i];

		if (e->key == key) {
			if (!addr_equal(&e->ep_addr, ep_addr)) {
				/* Unpublish while the values restart, so a scrape skips it. */
				__atomic_store_n(&e->key, METRICS_KEY_USED, __ATOMIC_RELEASE);
				series_clear(e);
				e->ep_addr = *ep_addr;
				__atomic_store_n(&e->key, key, __ATOMIC_RELEASE);
			}
			return e;
		}
		if (!e->key) {
			e->ep_addr = *ep_addr;
			__atomic_store_n(&e->key, key, __ATOMIC_RELEASE);
			return e;
		}
	}
	BUMP(s->overflow, 1);
	return NULL;
}

static struct metrics_http_series *series_get(struct metrics_http_shard *s, uint64_t key,
					      const struct shoal_addr *ep_addr)
{
	return series_find(s, s->series, METRICS_HTTP_MAX_SERIES, key, ep_addr);
}

/* Count one latency sample into e's buckets. */
static void series_latency(struct metrics_http_series *e, uint64_t latency_ns)
{
	uint64_t us = latency_ns / 1000;
	int b = 0;

	while (b < METRICS_LATENCY_N && us > (uint64_t)metrics_latency_bounds_ms[b] * 1000)
		b++;
	BUMP(e->count, 1);
	BUMP(e->buckets[b], 1);
	BUMP(e->sum_us, us);
}

void metrics_http_shard_request(struct metrics_http_shard *s, const struct metrics_http_key *key,
				const struct shoal_addr *ep_addr, unsigned int status,
				uint64_t latency_ns)
{
	struct metrics_http_series *e;
	uint64_t packed;

	if (!s)
		return;
	if (!key_pack(key, 0, &packed)) {
		BUMP(s->overflow, 1);
		return;
	}
	e = series_get(s, packed, ep_addr);
	if (e)
		BUMP(e->count, 1);
	if (!status)
		return; /* no response: a request, no latency */
	if (!key_pack(key, status, &packed)) {
		BUMP(s->overflow, 1);
		return;
	}
	e = series_get(s, packed, ep_addr);
	if (e)
		series_latency(e, latency_ns);
}

void metrics_grpc_shard_request(struct metrics_http_shard *s, uint32_t svc, uint32_t method,
				int grpc_status, uint64_t latency_ns)
{
	struct metrics_http_key k = {.svc = svc, .route = method};
	struct metrics_http_series *e;
	uint64_t packed;
	unsigned int st = grpc_status < 0		      ? METRICS_GRPC_STATUS_NONE
			  : grpc_status >= METRICS_GRPC_CODES ? 2 /* UNKNOWN */
							      : (unsigned int)grpc_status;

	if (!s)
		return;
	if (!key_pack(&k, st, &packed)) {
		BUMP(s->overflow, 1);
		return;
	}
	e = series_find(s, s->grpc, METRICS_GRPC_MAX_SERIES, packed, NULL);
	if (e)
		series_latency(e, latency_ns);
}

const char *metrics_grpc_status_label(uint32_t i)
{
	static const char *const labels[METRICS_GRPC_STATUSES] = {
	    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
	    "none"};

	return i < METRICS_GRPC_STATUSES ? labels[i] : "none";
}

void metrics_http_shard_event(struct metrics_http_shard *s, const struct metrics_http_key *key,
			      enum metrics_http_event ev)
{
	struct metrics_http_key k = *key;
	struct metrics_http_series *e;
	uint64_t packed;

	if (!s)
		return;
	/* Events are per route: their rows carry no endpoint. */
	k.endpoint = METRICS_KEY_NONE;
	if (!key_pack(&k, 0, &packed)) {
		BUMP(s->overflow, 1);
		return;
	}
	e = series_get(s, packed, NULL);
	if (!e)
		return;
	switch (ev) {
	case METRICS_HTTP_RETRY:
		BUMP(e->retries, 1);
		break;
	case METRICS_HTTP_RETRY_REFUSED:
		BUMP(e->retries_refused, 1);
		break;
	case METRICS_HTTP_DEADLINE:
		BUMP(e->deadline_exceeded, 1);
		break;
	}
}

void metrics_http_shard_unkeyed(struct metrics_http_shard *s)
{
	if (s)
		BUMP(s->unkeyed, 1);
}

void metrics_tcp_shard_open(struct metrics_http_shard *s, uint32_t svc)
{
	if (s && svc && svc < METRICS_TCP_SERIES)
		BUMP(s->tcp[svc].opened, 1);
}

void metrics_tcp_shard_close(struct metrics_http_shard *s, uint32_t svc)
{
	if (s && svc && svc < METRICS_TCP_SERIES)
		BUMP(s->tcp[svc].closed, 1);
}

void metrics_tcp_shard_bytes(struct metrics_http_shard *s, uint32_t svc, uint64_t read,
			     uint64_t written)
{
	if (!s || !svc || svc >= METRICS_TCP_SERIES)
		return;
	if (read)
		BUMP(s->tcp[svc].read_bytes, read);
	if (written)
		BUMP(s->tcp[svc].write_bytes, written);
}

/* ---- scrape side ------------------------------------------------------- */

static int u32_cmp(uint32_t a, uint32_t b)
{
	return a < b ? -1 : a > b;
}

/* Rows sort by service, route, backend, endpoint, then status. */
static int row_cmp(const void *a, const void *b)
{
	const struct metrics_http_key *x = &((const struct metrics_http_row *)a)->key;
	const struct metrics_http_key *y = &((const struct metrics_http_row *)b)->key;
	int d;

	if ((d = u32_cmp(x->svc, y->svc)) || (d = u32_cmp(x->route, y->route)) ||
	    (d = u32_cmp(x->backend, y->backend)) || (d = u32_cmp(x->endpoint, y->endpoint)))
		return d;
	return u32_cmp(x->status, y->status);
}

#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Copy one published series into r; false when it changed under us. */
static bool series_copy(const struct metrics_http_series *e, struct metrics_http_row *r)
{
	uint64_t key = __atomic_load_n(&e->key, __ATOMIC_ACQUIRE);

	if (!key || key == METRICS_KEY_USED)
		return false;
	key_unpack(key, &r->key);
	r->ep_addr = e->ep_addr;
	r->count = LOAD(e->count);
	r->retries = LOAD(e->retries);
	r->retries_refused = LOAD(e->retries_refused);
	r->deadline_exceeded = LOAD(e->deadline_exceeded);
	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		r->buckets[i] = LOAD(e->buckets[i]);
	r->sum_us = LOAD(e->sum_us);
	/* A restart (new endpoint in the slot) in between: skip it this time. */
	return __atomic_load_n(&e->key, __ATOMIC_ACQUIRE) == key;
}

static void row_add(struct metrics_http_row *into, const struct metrics_http_row *r)
{
	into->count += r->count;
	into->retries += r->retries;
	into->retries_refused += r->retries_refused;
	into->deadline_exceeded += r->deadline_exceeded;
	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		into->buckets[i] += r->buckets[i];
	into->sum_us += r->sum_us;
}

/* Sort rows[0..n) and merge the shards' copies of one series; the rows left. */
static size_t rows_merge(struct metrics_http_row *rows, size_t n)
{
	size_t m = 0;

	qsort(rows, n, sizeof(*rows), row_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m && !row_cmp(&rows[m - 1], &rows[i]))
			row_add(&rows[m - 1], &rows[i]);
		else
			rows[m++] = rows[i];
	}
	return m;
}

int metrics_http_snapshot(struct metrics_http_shard *const *shards, size_t n,
			  const struct metrics_resolver *res, struct metrics_http_snapshot *out)
{
	size_t cap = 0, len = 0;

	size_t n_grpc = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		if (shards[i])
			cap += METRICS_HTTP_MAX_SERIES;
	out->rows = calloc(cap ? cap : 1, sizeof(*out->rows));
	out->grpc = calloc(cap ? cap / METRICS_HTTP_MAX_SERIES * METRICS_GRPC_MAX_SERIES : 1,
			   sizeof(*out->grpc));
	out->tcp = calloc(METRICS_TCP_SERIES, sizeof(*out->tcp));
	if (!out->rows || !out->grpc || !out->tcp) {
		metrics_http_snapshot_free(out);
		return -ENOMEM;
	}
	out->n_services = METRICS_TCP_SERIES;
	for (size_t i = 0; i < n; i++) {
		const struct metrics_http_shard *s = shards[i];

		if (!s)
			continue;
		out->overflow += LOAD(s->overflow);
		out->unkeyed += LOAD(s->unkeyed);
		for (uint32_t j = 1; j < METRICS_TCP_SERIES; j++) {
			out->tcp[j].opened += LOAD(s->tcp[j].opened);
			out->tcp[j].closed += LOAD(s->tcp[j].closed);
			out->tcp[j].read_bytes += LOAD(s->tcp[j].read_bytes);
			out->tcp[j].write_bytes += LOAD(s->tcp[j].write_bytes);
		}
		for (uint32_t j = 0; j < METRICS_HTTP_MAX_SERIES; j++) {
			struct metrics_http_row *r = &out->rows[len];

			if (!series_copy(&s->series[j], r))
				continue;
			out->series++;
			if (!res->service(res->ctx, r->key.svc) ||
			    !res->service(res->ctx, r->key.backend))
				continue;
			/* The endpoint is gone: its series is dropped. */
			if (r->key.endpoint &&
			    !(r->key.endpoint = res->endpoint(res->ctx, r->key.backend, &r->ep_addr,
							      r->key.endpoint)))
				continue;
			len++;
		}
		for (uint32_t j = 0; j < METRICS_GRPC_MAX_SERIES; j++) {
			struct metrics_http_row *r = &out->grpc[n_grpc];

			if (!series_copy(&s->grpc[j], r))
				continue;
			out->series++;
			if (res->service(res->ctx, r->key.svc))
				n_grpc++;
		}
	}
	/* TCP series of services no longer exported are not either. */
	for (uint32_t j = 1; j < METRICS_TCP_SERIES; j++)
		if ((out->tcp[j].opened || out->tcp[j].closed) && !res->service(res->ctx, j))
			memset(&out->tcp[j], 0, sizeof(out->tcp[j]));
	out->n_rows = rows_merge(out->rows, len);
	out->n_grpc = rows_merge(out->grpc, n_grpc);
	return 0;
}

void metrics_http_snapshot_free(struct metrics_http_snapshot *snap)
{
	free(snap->rows);
	free(snap->grpc);
	free(snap->tcp);
	memset(snap, 0, sizeof(*snap));
}
