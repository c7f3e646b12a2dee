// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/policy_stats.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct policy_stats_row *find(const struct policy_stats_snapshot *s, const char *ns,
					   const char *svc, const char *policy, bool allow)
{
	for (size_t i = 0; i < s->n_rows; i++)
		if (!strcmp(s->rows[i].ns, ns) && !strcmp(s->rows[i].service, svc) &&
		    !strcmp(s->rows[i].policy, policy) && s->rows[i].allow == allow)
			return &s->rows[i];
	return NULL;
}

static uint64_t count(const struct policy_stats_snapshot *s, const char *ns, const char *svc,
		      const char *policy, bool allow)
{
	const struct policy_stats_row *r = find(s, ns, svc, policy, allow);

	return r ? r->count : 0;
}

static void rec(struct policy_stats *t, uint64_t serial, uint32_t svc, const char *name,
		const char *reason, bool allow)
{
	policy_stats_record(t, &(struct policy_stats_decision){.serial = serial,
							       .svc = svc,
							       .ns = "default",
							       .service = name,
							       .reason = reason,
							       .allow = allow,
							       .caller = "spiffe://td/ns/a/sa/b",
							       .port = 80});
}

Test(policy_stats, counts_per_series_and_merges_workers)
{
	struct policy_stats *t[2] = {policy_stats_new(), policy_stats_new()};
	struct policy_stats_snapshot s;

	cr_assert(t[0] && t[1]);
	for (int i = 0; i < 5; i++)
		rec(t[0], 1, 7, "api", "no-deletes", false);
	rec(t[0], 1, 7, "api", "default-allow", true);
	rec(t[1], 1, 7, "api", "no-deletes", false);
	rec(t[1], 1, 8, "web", "default-deny", false);
	cr_assert_eq(policy_stats_snapshot(t, 2, &s), 0);
	cr_assert_eq(s.n_rows, 3, "one row per series, workers merged: %zu", s.n_rows);
	cr_assert_eq(count(&s, "default", "api", "no-deletes", false), 6);
	cr_assert_eq(count(&s, "default", "api", "default-allow", true), 1);
	cr_assert_eq(count(&s, "default", "web", "default-deny", false), 1);
	cr_assert_eq(s.overflow[0] + s.overflow[1], 0);
	policy_stats_snapshot_free(&s);
	policy_stats_free(t[0]);
	policy_stats_free(t[1]);
}

/*
 * A reload frees the compiled set: the reason pointers of the next set may
 * be the old addresses with other names. Series are keyed by strings and
 * the cache by serial, so the counts follow the names.
 */
Test(policy_stats, a_reload_keeps_counts_and_reused_pointers_do_not_confuse)
{
	struct policy_stats *t = policy_stats_new();
	struct policy_stats_snapshot s;
	char *reason = strdup("rule-a");

	rec(t, 1, 7, "api", reason, false);
	rec(t, 1, 7, "api", reason, false);
	/* The next set: same address, another rule's name. */
	strcpy(reason, "rule-b");
	rec(t, 2, 7, "api", reason, false);
	/* And the set after it names rule-a again. */
	strcpy(reason, "rule-a");
	rec(t, 3, 7, "api", reason, false);
	cr_assert_eq(policy_stats_snapshot(&t, 1, &s), 0);
	cr_assert_eq(count(&s, "default", "api", "rule-a", false), 3,
		     "rule-a's series continues across reloads");
	cr_assert_eq(count(&s, "default", "api", "rule-b", false), 1,
		     "a reused pointer of a new set is not taken for the old rule");
	policy_stats_snapshot_free(&s);
	free(reason);
	policy_stats_free(t);
}

Test(policy_stats, past_the_bound_decisions_count_as_other)
{
	struct policy_stats *t = policy_stats_new();
	struct policy_stats_snapshot s;
	char name[32];
	uint64_t total = 0;
	int n = POLICY_STATS_MAX_SERIES + 100;

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "rule-%d", i);
		rec(t, 1, 0, "api", name, true); /* svc 0: no cache, the string path */
		rec(t, 1, 0, "api", name, true);
	}
	cr_assert_eq(policy_stats_snapshot(&t, 1, &s), 0);
	cr_assert_leq(s.n_rows, POLICY_STATS_MAX_SERIES);
	cr_assert_geq(s.n_rows, POLICY_STATS_MAX_SERIES / 2,
		      "the probe should fill most of the table: %zu", s.n_rows);
	for (size_t i = 0; i < s.n_rows; i++) {
		cr_assert_eq(s.rows[i].count, 2, "%s: %llu", s.rows[i].policy,
			     (unsigned long long)s.rows[i].count);
		total += s.rows[i].count;
	}
	cr_assert_gt(s.overflow[1], 0);
	cr_assert_eq(s.overflow[0], 0);
	cr_assert_eq(total + s.overflow[1], 2 * (uint64_t)n, "every decision is counted once");
	policy_stats_snapshot_free(&s);

	/* A series already in the table still counts there once it is full. */
	rec(t, 1, 0, "api", "rule-0", true);
	cr_assert_eq(policy_stats_snapshot(&t, 1, &s), 0);
	cr_assert(count(&s, "default", "api", "rule-0", true) == 3 ||
		  !find(&s, "default", "api", "rule-0", true));
	policy_stats_snapshot_free(&s);
	policy_stats_free(t);
}

Test(policy_stats, the_ring_keeps_denials_and_samples_allows)
{
	struct policy_stats *t = policy_stats_new();
	struct policy_stats_snapshot s;
	int allows = 0;

	/* The first allow of a series is kept, then 1 in POLICY_EVENTS_ALLOW_EVERY. */
	for (int i = 0; i < 2 * POLICY_EVENTS_ALLOW_EVERY; i++)
		rec(t, 1, 7, "api", "default-allow", true);
	policy_stats_record(t, &(struct policy_stats_decision){.serial = 1,
							       .svc = 7,
							       .ns = "default",
							       .service = "api",
							       .reason = "no-deletes",
							       .allow = false,
							       .port = 80,
							       .method = "DELETEX",
							       .method_len = 6,
							       .path = "/items/3",
							       .path_len = 8});
	cr_assert_eq(policy_stats_snapshot(&t, 1, &s), 0);
	cr_assert_eq(s.n_events, 3, "first allow, one sampled, one denial: %zu", s.n_events);
	cr_assert_eq(s.events[0].allow, false, "newest first");
	cr_assert_str_eq(s.events[0].method, "DELETE");
	cr_assert_str_eq(s.events[0].path, "/items/3");
	cr_assert_str_eq(s.events[0].reason, "no-deletes");
	cr_assert_str_eq(s.events[0].caller, "", "NULL caller: unauthenticated");
	for (size_t i = 0; i < s.n_events; i++)
		allows += s.events[i].allow;
	cr_assert_eq(allows, 2);
	policy_stats_snapshot_free(&s);

	/* Bounded: a flood of denials keeps the newest POLICY_EVENTS_MAX. */
	for (int i = 0; i < 3 * POLICY_EVENTS_MAX; i++)
		rec(t, 1, 7, "api", "no-deletes", false);
	cr_assert_eq(policy_stats_snapshot(&t, 1, &s), 0);
	cr_assert_eq(s.n_events, POLICY_EVENTS_MAX);
	for (size_t i = 1; i < s.n_events; i++)
		cr_assert(s.events[i - 1].time_ms > s.events[i].time_ms ||
			  (s.events[i - 1].time_ms == s.events[i].time_ms &&
			   s.events[i - 1].seq > s.events[i].seq));
	policy_stats_snapshot_free(&s);
	policy_stats_free(t);
}
