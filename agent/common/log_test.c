// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

Test(log, time_formats_exactly)
{
	/* 2026-11-26T16:40:01Z; the nanoseconds are cut, not rounded, to ms. */
	struct timespec ts = { .tv_sec = 1795711201, .tv_nsec = 123999999 };
	char buf[LOG_TIME_MAX];

	cr_assert_eq(log_format_time(&ts, buf, sizeof(buf)), LOG_TIME_MAX - 1);
	cr_assert_str_eq(buf, "2026-11-26T16:40:01.123Z");
	ts = (struct timespec){ .tv_sec = 0, .tv_nsec = 7000000 };
	log_format_time(&ts, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1970-01-01T00:00:00.007Z");
	/* Too small a buffer gives 0, never a cut-off time. */
	cr_assert_eq(log_format_time(&ts, buf, LOG_TIME_MAX - 1), 0);
	cr_assert_str_eq(buf, "");
}

Test(log, time_default_follows_journal_stream)
{
	FILE *f = tmpfile();
	char env[64];
	struct stat st;

	cr_assert_not_null(f);
	cr_assert_eq(fstat(fileno(f), &st), 0);
	/* No journal: stamp the lines. */
	cr_assert(log_time_default(NULL, fileno(f)));
	/* The journal's stream is this fd: it stamps them. */
	snprintf(env, sizeof(env), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	cr_assert_not(log_time_default(env, fileno(f)));
	/* Inherited from a parent whose stderr was the journal, but ours is not. */
	snprintf(env, sizeof(env), "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino + 1);
	cr_assert(log_time_default(env, fileno(f)));
	/* Not DEV:INODE: not the journal as systemd sets it. */
	cr_assert(log_time_default("", fileno(f)));
	cr_assert(log_time_default("journal", fileno(f)));
	fclose(f);
}
