// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "resilience/deadline.h"

#define MS 1000000ull
#define S 1000000000ull

TestSuite(resilience_deadline);

Test(resilience_deadline, deadlines)
{
	uint64_t d = deadline_after(10 * S, 200 * MS);

	cr_assert_eq(d, 10 * S + 200 * MS);
	cr_assert_eq(deadline_after(10 * S, 0), DEADLINE_NONE);
	cr_assert_eq(deadline_after(UINT64_MAX - 5, 10), DEADLINE_NONE);
	cr_assert_not(deadline_expired(d, 10 * S + 199 * MS));
	cr_assert(deadline_expired(d, 10 * S + 200 * MS));
	cr_assert_not(deadline_expired(DEADLINE_NONE, UINT64_MAX - 1));
	cr_assert_eq(deadline_remaining(d, 10 * S + 50 * MS), 150 * MS);
	cr_assert_eq(deadline_remaining(d, 11 * S), 0);
	cr_assert_eq(deadline_remaining(DEADLINE_NONE, 11 * S), UINT64_MAX);
	cr_assert_eq(deadline_min(d, DEADLINE_NONE), d);
	cr_assert_eq(deadline_min(DEADLINE_NONE, d), d);
	/* A try ends at its own timeout or the request's deadline, whichever first. */
	cr_assert_eq(deadline_try(d, 50 * MS, 10 * S), 10 * S + 50 * MS);
	cr_assert_eq(deadline_try(d, 1 * S, 10 * S), d);
	cr_assert_eq(deadline_try(d, 0, 10 * S), d);
	cr_assert_eq(deadline_try(DEADLINE_NONE, 0, 10 * S), DEADLINE_NONE);
}

static int parse(const char *s, uint64_t *ns)
{
	return deadline_parse_header(s, strlen(s), ns);
}

Test(resilience_deadline, timeout_header)
{
	uint64_t ns = 0;

	cr_assert_str_eq(DEADLINE_HEADER, "x-shoal-timeout-ms");
	cr_assert_eq(parse("200", &ns), 0);
	cr_assert_eq(ns, 200 * MS);
	cr_assert_eq(parse(" \t1500 ", &ns), 0);
	cr_assert_eq(ns, 1500 * MS);
	cr_assert_eq(parse("86400000", &ns), 0);
	cr_assert_eq(ns, 86400 * S);
	ns = 7;
	cr_assert_eq(parse("86400001", &ns), -EINVAL);
	cr_assert_eq(parse("0", &ns), -EINVAL);
	cr_assert_eq(parse("", &ns), -EINVAL);
	cr_assert_eq(parse("  ", &ns), -EINVAL);
	cr_assert_eq(parse("-5", &ns), -EINVAL);
	cr_assert_eq(parse("1.5", &ns), -EINVAL);
	cr_assert_eq(parse("10s", &ns), -EINVAL);
	cr_assert_eq(parse("1 0", &ns), -EINVAL);
	cr_assert_eq(parse("99999999999999999999999", &ns), -EINVAL);
	cr_assert_eq(ns, 7, "a rejected value leaves the output alone");
}
