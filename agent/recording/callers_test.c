// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/callers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static const struct callers_row *find(const struct callers_snapshot *s, const char *caller,
				      uint32_t svc)
{
	for (size_t i = 0; i < s->n_rows; i++)
		if (!strcmp(s->rows[i].caller, caller) && s->rows[i].svc == svc)
			return &s->rows[i];
	return NULL;
}

Test(callers, intern_is_stable_and_records_requests_and_5xx)
{
	struct callers_table *t = callers_table_new();
	struct callers_snapshot s;
	uint32_t a, b;

	cr_assert_not_null(t);
	a = callers_intern(t, "default/a1");
	b = callers_intern(t, "10.77.1.9");
	cr_assert_neq(a, CALLERS_OTHER);
	cr_assert_neq(a, b);
	cr_assert_eq(callers_intern(t, "default/a1"), a, "one caller, one index");
	callers_record(t, a, 7, 200);
	callers_record(t, a, 7, 503);
	callers_record(t, a, 7, 404);
	callers_record(t, a, 8, 0);
	callers_record(t, b, 7, 500);
	cr_assert_eq(callers_snapshot(&t, 1, &s), 0);
	cr_assert_eq(s.n_rows, 3);
	cr_assert_eq(find(&s, "default/a1", 7)->requests, 3);
	cr_assert_eq(find(&s, "default/a1", 7)->errors, 1, "only 5xx are errors");
	cr_assert_eq(find(&s, "default/a1", 8)->requests, 1);
	cr_assert_eq(find(&s, "default/a1", 8)->errors, 0);
	cr_assert_eq(find(&s, "10.77.1.9", 7)->errors, 1);
	cr_assert_eq(s.overflow, 0);
	callers_snapshot_free(&s);
	callers_table_free(t);
}

Test(callers, callers_past_the_cap_count_as_other)
{
	struct callers_table *t = callers_table_new();
	struct callers_snapshot s;
	char name[32];
	uint32_t idx;

	for (int i = 0; i < CALLERS_MAX; i++) {
		snprintf(name, sizeof(name), "ns/pod-%d", i);
		idx = callers_intern(t, name);
		cr_assert_neq(idx, CALLERS_OTHER, "caller %d of %d is named", i, CALLERS_MAX);
		callers_record(t, idx, 1, 200);
	}
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "ns/late-%d", i);
		idx = callers_intern(t, name);
		cr_assert_eq(idx, CALLERS_OTHER, "caller past the cap: %u", idx);
		callers_record(t, idx, 1, 502);
	}
	/* A named caller keeps its index once the names are full. */
	cr_assert_neq(callers_intern(t, "ns/pod-0"), CALLERS_OTHER);
	cr_assert_eq(callers_snapshot(&t, 1, &s), 0);
	cr_assert_eq(s.n_rows, CALLERS_MAX + 1);
	cr_assert_eq(find(&s, CALLERS_OTHER_NAME, 1)->requests, 3);
	cr_assert_eq(find(&s, CALLERS_OTHER_NAME, 1)->errors, 3);
	cr_assert_null(find(&s, "ns/late-0", 1));
	cr_assert_eq(s.other_conns, 3);
	callers_snapshot_free(&s);
	callers_table_free(t);
}

Test(callers, full_edge_table_counts_overflow)
{
	struct callers_table *t = callers_table_new();
	struct callers_snapshot s;
	uint32_t a = callers_intern(t, "default/a1");
	uint64_t recorded = 0;

	for (uint32_t svc = 1; svc <= 2 * CALLERS_MAX_EDGES; svc++)
		callers_record(t, a, svc, 200);
	cr_assert_eq(callers_snapshot(&t, 1, &s), 0);
	for (size_t i = 0; i < s.n_rows; i++)
		recorded += s.rows[i].requests;
	cr_assert_leq(s.n_rows, CALLERS_MAX_EDGES);
	cr_assert_geq(s.overflow, CALLERS_MAX_EDGES, "overflow %llu",
		      (unsigned long long)s.overflow);
	cr_assert_eq(recorded + s.overflow, 2 * CALLERS_MAX_EDGES, "every request counted once");
	callers_snapshot_free(&s);
	callers_table_free(t);
}

Test(callers, workers_merge_by_caller_name)
{
	struct callers_table *t[3] = {callers_table_new(), NULL, callers_table_new()};
	struct callers_snapshot s;

	/* The same caller gets different indexes on two workers. */
	callers_intern(t[2], "default/zz");
	callers_record(t[0], callers_intern(t[0], "default/a1"), 5, 200);
	callers_record(t[2], callers_intern(t[2], "default/a1"), 5, 500);
	callers_record(t[2], callers_intern(t[2], "default/a1"), 5, 200);
	callers_record(t[2], callers_intern(t[2], "default/zz"), 5, 200);
	cr_assert_eq(callers_snapshot(t, 3, &s), 0);
	cr_assert_eq(s.n_rows, 2);
	cr_assert_str_eq(s.rows[0].caller, "default/a1", "sorted by caller");
	cr_assert_eq(s.rows[0].requests, 3);
	cr_assert_eq(s.rows[0].errors, 1);
	cr_assert_eq(s.rows[1].requests, 1);
	callers_snapshot_free(&s);
	callers_table_free(t[0]);
	callers_table_free(t[2]);
}
