// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/http_metrics.h"

#include <criterion/criterion.h>
#include <stdio.h>

#include "common/addr.h"

static struct metrics_http_shard *shards[2];
static struct shoal_addr eps[2][4]; /* [service][endpoint] */

static void setup(void)
{
	char text[32];

	for (int i = 0; i < 2; i++) {
		shards[i] = metrics_http_shard_new();
		cr_assert_not_null(shards[i]);
		for (int j = 0; j < 4; j++) {
			snprintf(text, sizeof(text), "10.0.%d.%d", i, j + 1);
			cr_assert_eq(addr_parse(text, &eps[i][j]), 0);
		}
	}
}

static void teardown(void)
{
	for (int i = 0; i < 2; i++)
		metrics_http_shard_free(shards[i]);
}

static int n_eps;

static bool svc_of(void *ctx, uint32_t svc)
{
	(void)ctx;
	return svc < 2;
}

/* The endpoint's slot among the first n_eps of eps[svc], found by address. */
static uint32_t ep_of(void *ctx, uint32_t svc, const struct shoal_addr *addr, uint32_t hint)
{
	(void)ctx;
	(void)hint;
	for (int i = 0; svc < 2 && i < n_eps; i++)
		if (addr_equal(&eps[svc][i], addr))
			return (uint32_t)i + 1;
	return 0;
}

static const struct metrics_resolver res = {.service = svc_of, .endpoint = ep_of};

static const struct metrics_http_row *find(const struct metrics_http_snapshot *s, uint32_t endpoint,
					   uint32_t status)
{
	for (size_t i = 0; i < s->n_rows; i++)
		if (s->rows[i].key.endpoint == endpoint && s->rows[i].key.status == status)
			return &s->rows[i];
	return NULL;
}

TestSuite(http_metrics, .init = setup, .fini = teardown);

Test(http_metrics, shards_merge_into_requests_responses_and_buckets)
{
	struct metrics_http_key k = {.svc = 1, .route = 2, .backend = 1, .endpoint = 1};
	struct metrics_http_snapshot snap;
	n_eps = 4;

	/* 3 ms and 7 ms on worker 0, 7 ms and no response on worker 1. */
	metrics_http_shard_request(shards[0], &k, &eps[1][0], 200, 3000000);
	metrics_http_shard_request(shards[0], &k, &eps[1][0], 200, 7000000);
	metrics_http_shard_request(shards[1], &k, &eps[1][0], 200, 7000000);
	metrics_http_shard_request(shards[1], &k, &eps[1][0], 0, 1000);
	metrics_http_shard_event(shards[1], &k, METRICS_HTTP_RETRY);
	cr_assert_eq(metrics_http_snapshot(shards, 2, &res, &snap), 0);

	const struct metrics_http_row *rq = find(&snap, 1, 0), *ok = find(&snap, 1, 200);

	cr_assert_not_null(rq);
	cr_assert_not_null(ok);
	cr_assert_eq(rq->count, 4, "requests include the one without a response");
	cr_assert_eq(ok->count, 3);
	cr_assert_eq(ok->buckets[2], 1, "3 ms falls in le=3 (the third bound)");
	cr_assert_eq(ok->buckets[5], 2, "7 ms falls in le=10");
	cr_assert_eq(ok->sum_us, 17000);
	const struct metrics_http_row *ev = find(&snap, 0, 0);

	cr_assert_not_null(ev);
	cr_assert_eq(ev->retries, 1);
	cr_assert_eq(ev->key.route, 2);
	cr_assert_eq(snap.overflow, 0);
	metrics_http_snapshot_free(&snap);
}

Test(http_metrics, gone_endpoints_are_dropped_and_a_reused_slot_restarts)
{
	struct metrics_http_key k = {.svc = 0, .backend = 0, .endpoint = 4};
	struct metrics_http_snapshot snap;
	n_eps = 4;

	metrics_http_shard_request(shards[0], &k, &eps[0][3], 200, 1000);
	n_eps = 3; /* endpoint 4 left the config */
	cr_assert_eq(metrics_http_snapshot(shards, 2, &res, &snap), 0);
	cr_assert_null(find(&snap, 4, 200));
	metrics_http_snapshot_free(&snap);

	/* Slot 4 comes back holding another address: its series starts over. */
	n_eps = 4;
	eps[0][3] = eps[1][3];
	metrics_http_shard_request(shards[0], &k, &eps[0][3], 200, 1000);
	cr_assert_eq(metrics_http_snapshot(shards, 2, &res, &snap), 0);
	cr_assert_not_null(find(&snap, 4, 200));
	cr_assert_eq(find(&snap, 4, 200)->count, 1);
	metrics_http_snapshot_free(&snap);
}

Test(http_metrics, a_full_table_counts_overflow_and_never_grows)
{
	struct metrics_http_snapshot snap;
	n_eps = 4;

	/* 100 routes x 30 statuses: 3100 distinct series, beyond the table. */
	for (uint32_t r = 0; r < 100; r++)
		for (uint32_t st = 200; st < 230; st++) {
			struct metrics_http_key k = {.svc = r / 50, .route = r % 50 + 1};

			metrics_http_shard_request(shards[0], &k, NULL, st, 1000);
		}
	cr_assert_eq(metrics_http_snapshot(shards, 1, &res, &snap), 0);
	cr_assert_leq(snap.series, METRICS_HTTP_MAX_SERIES);
	cr_assert_gt(snap.overflow, 0);
	cr_assert_geq(snap.series + snap.overflow, 3100, "what has no series is counted");
	metrics_http_snapshot_free(&snap);
}

Test(http_metrics, keys_beyond_the_field_widths_overflow)
{
	struct metrics_http_key k = {.svc = 1u << METRICS_KEY_SVC_BITS};
	struct metrics_http_snapshot snap;
	n_eps = 4;

	metrics_http_shard_request(shards[0], &k, NULL, 200, 1000);
	cr_assert_eq(metrics_http_snapshot(shards, 1, &res, &snap), 0);
	cr_assert_eq(snap.overflow, 1);
	cr_assert_eq(snap.n_rows, 0);
	metrics_http_snapshot_free(&snap);
}

Test(http_metrics, grpc_rows_are_apart_bounded_and_merged)
{
	struct metrics_http_snapshot snap;

	n_eps = 4;
	/* Method 3 OK twice (two workers), a code past 16, none, and "other". */
	metrics_grpc_shard_request(shards[0], 1, 3, 0, 2000000);
	metrics_grpc_shard_request(shards[1], 1, 3, 0, 40000000);
	metrics_grpc_shard_request(shards[0], 1, 3, 99, 1000000);
	metrics_grpc_shard_request(shards[0], 1, 3, -1, 1000000);
	metrics_grpc_shard_request(shards[1], 1, 0, 14, 1000000);
	/* A service the resolver does not export. */
	metrics_grpc_shard_request(shards[1], 7, 0, 0, 1000000);
	cr_assert_eq(metrics_http_snapshot(shards, 2, &res, &snap), 0);
	cr_expect_eq(snap.n_rows, 0, "gRPC calls are no HTTP rows");
	cr_assert_eq(snap.n_grpc, 4);
	/* Sorted by service, method, status: other (0) first. */
	cr_expect_eq(snap.grpc[0].key.route, 0);
	cr_expect_str_eq(metrics_grpc_status_label(snap.grpc[0].key.status), "14");
	cr_expect_eq(snap.grpc[1].key.route, 3);
	cr_expect_str_eq(metrics_grpc_status_label(snap.grpc[1].key.status), "0");
	cr_expect_eq(snap.grpc[1].count, 2);
	cr_expect_eq(snap.grpc[1].buckets[1], 1, "2 ms: the 2 ms bucket");
	cr_expect_eq(snap.grpc[1].buckets[8], 1, "40 ms: the 40 ms bucket");
	cr_expect_eq(snap.grpc[1].sum_us, 42000);
	cr_expect_str_eq(metrics_grpc_status_label(snap.grpc[2].key.status), "2",
			 "a code past 16 is UNKNOWN");
	cr_expect_str_eq(metrics_grpc_status_label(snap.grpc[3].key.status), "none");
	cr_expect_eq(snap.series, 6);
	metrics_http_snapshot_free(&snap);
}

Test(http_metrics, grpc_table_full_counts_overflow)
{
	struct metrics_http_snapshot snap;
	int recorded = 0;

	n_eps = 4;
	/* More distinct series than the table holds: the rest are counted. */
	for (uint32_t svc = 1; svc < 200; svc++)
		for (uint32_t m = 0; m < 8; m++)
			metrics_grpc_shard_request(shards[0], svc, m, 0, 1000);
	cr_assert_eq(metrics_http_snapshot(shards, 1, &res, &snap), 0);
	recorded = (int)snap.series;
	cr_expect_leq(recorded, METRICS_GRPC_MAX_SERIES);
	cr_expect_eq((uint64_t)recorded + snap.overflow, 199 * 8);
	cr_expect_gt(snap.overflow, 0);
	metrics_http_snapshot_free(&snap);
}
