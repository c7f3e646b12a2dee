// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "resilience/backoff.h"
#include "resilience/deadline.h"
#include "resilience/retry_policy.h"

#define MS 1000000ull
#define S 1000000000ull
#define T0 (1000 * S)

static struct retry_policy_cfg cfg;

static void setup(void)
{
	retry_policy_cfg_default(&cfg);
}

TestSuite(resilience_retry_policy, .init = setup);

static bool idem(const char *m)
{
	return retry_method_idempotent(m, strlen(m));
}

Test(resilience_retry_policy, defaults_and_checks)
{
	cr_assert_eq(cfg.n_statuses, 1);
	cr_assert_eq(cfg.statuses[0], 503);
	cr_assert_eq(cfg.max_body_bytes, 64 * 1024);
	cr_assert_eq(cfg.max_retries, 2);
	cr_assert_not(cfg.route_retryable);
	cr_assert(cfg.connect_any_method);
	cr_assert_eq(retry_policy_cfg_check(&cfg), 0);
	cfg.statuses[0] = 399;
	cr_assert_eq(retry_policy_cfg_check(&cfg), -EINVAL);
	cfg.statuses[0] = 600;
	cr_assert_eq(retry_policy_cfg_check(&cfg), -EINVAL);
	cfg.statuses[0] = 503;
	cfg.n_statuses = RETRY_MAX_STATUSES + 1;
	cr_assert_eq(retry_policy_cfg_check(&cfg), -EINVAL);
	cfg.n_statuses = 1;
	cr_assert_eq(cfg.grpc_statuses, 1u << 14);
	cfg.grpc_statuses = 1u << 16 | 1u << 1;
	cr_assert_eq(retry_policy_cfg_check(&cfg), 0);
	cfg.grpc_statuses = 1u << 0; /* OK */
	cr_assert_eq(retry_policy_cfg_check(&cfg), -EINVAL);
	cfg.grpc_statuses = 1u << 17;
	cr_assert_eq(retry_policy_cfg_check(&cfg), -EINVAL);
}

Test(resilience_retry_policy, listed_grpc_codes)
{
	cr_assert(retry_grpc_status_listed(&cfg, 14));
	for (int code = -1; code <= 40; code++)
		if (code != 14)
			cr_assert_not(retry_grpc_status_listed(&cfg, code), "code %d", code);
	cfg.grpc_statuses |= 1u << 8;
	cr_assert(retry_grpc_status_listed(&cfg, 8));
}

Test(resilience_retry_policy, rfc9110_idempotent_methods)
{
	static const char *const yes[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
	/* Not idempotent, or wrong case (methods are case-sensitive); then near misses. */
	static const char *const no[] = {"POST", "PATCH", "CONNECT", "PROPFIND", "get", "Get"};
	static const char *const near[] = {"GETS", "GE", "", "PUT ", "DELET"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		cr_assert(idem(yes[i]), "%s", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		cr_assert_not(idem(no[i]), "%s", no[i]);
	for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++)
		cr_assert_not(idem(near[i]), "'%s'", near[i]);
	/* The method is a slice of the request line, not a C string. */
	cr_assert(retry_method_idempotent("GET /x HTTP/1.1", 3));
	cr_assert_not(retry_method_idempotent("GET /x HTTP/1.1", 4));
}

Test(resilience_retry_policy, listed_statuses)
{
	cr_assert(retry_status_listed(&cfg, 503));
	cr_assert_not(retry_status_listed(&cfg, 502));
	cr_assert_not(retry_status_listed(&cfg, 0));
	cfg.statuses[1] = 502;
	cfg.statuses[2] = 429;
	cfg.n_statuses = 3;
	cr_assert(retry_status_listed(&cfg, 502));
	cr_assert(retry_status_listed(&cfg, 429));
	cfg.n_statuses = 0;
	cr_assert_not(retry_status_listed(&cfg, 503));
}

/* A GET that got a 503 and could be retried, before each row changes one fact. */
static struct retry_try base(void)
{
	struct retry_try t = {
	    .method = "GET",
	    .method_len = 3,
	    .failure = RETRY_FAIL_STATUS,
	    .status = 503,
	    .deadline_ns = DEADLINE_NONE,
	};
	return t;
}

Test(resilience_retry_policy, truth_table)
{
	static const struct {
		const char *method;
		bool route_retryable;
		enum retry_failure failure;
		uint16_t status;
		bool has_body, body_buffered;
		uint64_t body_bytes;
		bool started;
		uint32_t retries_done;
		uint64_t deadline;
		enum retry_verdict want;
	} rows[] = {
	/* One aligned row per case: the table is the specification. */
	// clang-format off
#define NONE DEADLINE_NONE
		/* method   route  failure                 status body buf  bytes     started done deadline     verdict */
		{"GET",     false, RETRY_FAIL_STATUS,      503, false, false, 0,        false, 0, NONE,          RETRY_YES},
		{"HEAD",    false, RETRY_FAIL_CONNECT,     0,   false, false, 0,        false, 0, NONE,          RETRY_YES},
		{"PUT",     false, RETRY_FAIL_RESET_EARLY, 0,   true,  true,  100,      false, 0, NONE,          RETRY_YES},
		{"DELETE",  false, RETRY_FAIL_TIMEOUT,     0,   false, false, 0,        false, 1, NONE,          RETRY_YES},
		{"OPTIONS", false, RETRY_FAIL_STATUS,      503, false, false, 0,        false, 0, T0 + 1,        RETRY_YES},
		{"TRACE",   false, RETRY_FAIL_STATUS,      503, false, false, 0,        false, 0, NONE,          RETRY_YES},
		/* POST: never after the request may have reached the backend. */
		{"POST",    false, RETRY_FAIL_STATUS,      503, true,  true,  10,       false, 0, NONE,          RETRY_NO_METHOD},
		{"POST",    false, RETRY_FAIL_RESET_EARLY, 0,   true,  true,  10,       false, 0, NONE,          RETRY_NO_METHOD},
		{"POST",    false, RETRY_FAIL_TIMEOUT,     0,   true,  true,  10,       false, 0, NONE,          RETRY_NO_METHOD},
		{"PATCH",   false, RETRY_FAIL_STATUS,      503, true,  true,  10,       false, 0, NONE,          RETRY_NO_METHOD},
		/* ...but a failed connect sent nothing. */
		{"POST",    false, RETRY_FAIL_CONNECT,     0,   true,  true,  10,       false, 0, NONE,          RETRY_YES},
		/* A route marked retryable vouches for its POSTs. */
		{"POST",    true,  RETRY_FAIL_STATUS,      503, true,  true,  10,       false, 0, NONE,          RETRY_YES},
		{"POST",    true,  RETRY_FAIL_RESET_EARLY, 0,   false, false, 0,        false, 0, NONE,          RETRY_YES},
		/* Failures that are not retried. */
		{"GET",     false, RETRY_FAIL_STATUS,      500, false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"GET",     false, RETRY_FAIL_STATUS,      502, false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"GET",     false, RETRY_FAIL_STATUS,      429, false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"GET",     false, RETRY_FAIL_RESET_LATE,  0,   false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"POST",    true,  RETRY_FAIL_RESET_LATE,  0,   false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		/* Bodies: buffered and at most 64 KiB. */
		{"PUT",     false, RETRY_FAIL_STATUS,      503, true,  true,  65536,    false, 0, NONE,          RETRY_YES},
		{"PUT",     false, RETRY_FAIL_STATUS,      503, true,  true,  65537,    false, 0, NONE,          RETRY_NO_BODY},
		{"PUT",     false, RETRY_FAIL_STATUS,      503, true,  false, 100,      false, 0, NONE,          RETRY_NO_BODY},
		{"PUT",     false, RETRY_FAIL_STATUS,      503, true,  false, 0,        false, 0, NONE,          RETRY_NO_BODY},
		{"POST",    false, RETRY_FAIL_CONNECT,     0,   true,  false, 0,        false, 0, NONE,          RETRY_NO_BODY},
		/* Anything already sent to the client. */
		{"GET",     false, RETRY_FAIL_RESET_EARLY, 0,   false, false, 0,        true,  0, NONE,          RETRY_NO_STARTED},
		{"GET",     false, RETRY_FAIL_STATUS,      503, false, false, 0,        true,  0, NONE,          RETRY_NO_STARTED},
		/* Attempts and deadline. */
		{"GET",     false, RETRY_FAIL_STATUS,      503, false, false, 0,        false, 2, NONE,          RETRY_NO_ATTEMPTS},
		{"GET",     false, RETRY_FAIL_STATUS,      503, false, false, 0,        false, 0, T0,            RETRY_NO_DEADLINE},
		{"GET",     false, RETRY_FAIL_CONNECT,     0,   false, false, 0,        false, 0, T0 - 1,        RETRY_NO_DEADLINE},
		/* HTTP/2 REFUSED_STREAM and above a GOAWAY: unprocessed, any method, body buffered. */
		{"POST",    false, RETRY_FAIL_REFUSED,     0,   true,  true,  10,       false, 0, NONE,          RETRY_YES},
		{"POST",    false, RETRY_FAIL_REFUSED,     0,   true,  false, 70000,    false, 0, NONE,          RETRY_NO_BODY},
		{"POST",    false, RETRY_FAIL_REFUSED,     0,   false, false, 0,        false, 2, NONE,          RETRY_NO_ATTEMPTS},
		{"POST",    false, RETRY_FAIL_REFUSED,     0,   false, false, 0,        false, 0, T0,            RETRY_NO_DEADLINE},
		/* gRPC codes: listed (UNAVAILABLE by default), and only on a route marked retryable. */
		{"POST",    true,  RETRY_FAIL_GRPC_STATUS, 14,  true,  true,  10,       false, 0, NONE,          RETRY_YES},
		{"POST",    false, RETRY_FAIL_GRPC_STATUS, 14,  true,  true,  10,       false, 0, NONE,          RETRY_NO_METHOD},
		{"POST",    true,  RETRY_FAIL_GRPC_STATUS, 13,  true,  true,  10,       false, 0, NONE,          RETRY_NO_FAILURE},
		{"POST",    true,  RETRY_FAIL_GRPC_STATUS, 4,   false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"POST",    true,  RETRY_FAIL_GRPC_STATUS, 0,   false, false, 0,        false, 0, NONE,          RETRY_NO_FAILURE},
		{"POST",    true,  RETRY_FAIL_GRPC_STATUS, 14,  false, false, 0,        true,  0, NONE,          RETRY_NO_STARTED},
		/* The first failing check is the reason given. */
		{"POST",    false, RETRY_FAIL_RESET_LATE,  0,   true,  false, 1 << 20,  true,  9, T0,            RETRY_NO_METHOD},
		{"GET",     false, RETRY_FAIL_RESET_LATE,  0,   true,  false, 1 << 20,  true,  9, T0,            RETRY_NO_FAILURE},
#undef NONE
	    // clang-format on
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct retry_try t = base();
		enum retry_verdict v;

		cfg.route_retryable = rows[i].route_retryable;
		t.method = rows[i].method;
		t.method_len = strlen(rows[i].method);
		t.failure = rows[i].failure;
		t.status = rows[i].status;
		t.has_body = rows[i].has_body;
		t.body_buffered = rows[i].body_buffered;
		t.body_bytes = rows[i].body_bytes;
		t.response_started = rows[i].started;
		t.retries_done = rows[i].retries_done;
		t.deadline_ns = rows[i].deadline;
		v = retry_decide(&cfg, &t, NULL, T0);
		cr_assert_eq(v, rows[i].want, "row %zu (%s): got %s, want %s", i, rows[i].method,
			     retry_verdict_name(v), retry_verdict_name(rows[i].want));
	}
}

Test(resilience_retry_policy, connect_any_method_off)
{
	struct retry_try t = base();

	cfg.connect_any_method = false;
	t.method = "POST";
	t.method_len = 4;
	t.failure = RETRY_FAIL_CONNECT;
	cr_assert_eq(retry_decide(&cfg, &t, NULL, T0), RETRY_NO_METHOD);
	/* A refused stream is the protocol's promise, not the knob's. */
	t.failure = RETRY_FAIL_REFUSED;
	cr_assert_eq(retry_decide(&cfg, &t, NULL, T0), RETRY_YES);
}

Test(resilience_retry_policy, budget_is_checked_last_and_charged_once)
{
	struct retry_budget_cfg bc = {.ratio_milli = 200, .min_per_s = 0, .ttl_ns = 10 * S};
	struct retry_budget b;
	struct retry_try t = base();

	cr_assert_eq(retry_budget_init(&b, &bc), 0);
	for (int i = 0; i < 10; i++)
		retry_budget_deposit(&b, T0);
	/* 10 requests at 0.2: two retries. A refusal for another reason charges nothing. */
	t.response_started = true;
	for (int i = 0; i < 5; i++)
		cr_assert_eq(retry_decide(&cfg, &t, &b, T0), RETRY_NO_STARTED);
	t.response_started = false;
	cr_assert_eq(retry_decide(&cfg, &t, &b, T0), RETRY_YES);
	cr_assert_eq(retry_decide(&cfg, &t, &b, T0), RETRY_YES);
	cr_assert_eq(retry_decide(&cfg, &t, &b, T0), RETRY_NO_BUDGET);
	cr_assert_eq(retry_budget_balance(&b, T0), 0);
	cr_assert_str_eq(retry_verdict_name(RETRY_NO_BUDGET), "budget");
}
