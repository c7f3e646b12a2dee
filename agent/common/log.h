/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Logging for shoald and shoalctl: one line per message on stderr,
 * prefixed with the level and, when log_set_time is on, an RFC 3339 UTC
 * timestamp before it:
 *
 *   2026-11-26T16:40:01.123Z shoal warn: ...
 *
 * libbpf's own messages are routed in here too (log_route_libbpf), so a
 * user sees one consistent stream.
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum log_level { LOG_LEVEL_WARN = 0, LOG_LEVEL_INFO = 1, LOG_LEVEL_DEBUG = 2 };

/* Messages above this level are dropped. Default: LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Whether debug lines are printed: for code that builds a message's
 * arguments (addresses, names) only when it will be printed. */
static inline bool log_debug_on(void)
{
	return log_get_level() >= LOG_LEVEL_DEBUG;
}

/* Timestamps on each line. Default: off (shoald turns them on, see below). */
void log_set_time(bool on);

/*
 * shoald's default for log_set_time: on, unless fd is the journal's own
 * stream, which stamps each line itself. systemd says so by setting
 * JOURNAL_STREAM (passed here, NULL when unset) to "DEV:INODE" of that
 * stream; a child that inherited the variable but writes elsewhere does
 * not match, so it keeps its timestamps.
 */
bool log_time_default(const char *journal_stream, int fd);

/* Longest timestamp log_format_time writes, with its NUL. */
#define LOG_TIME_MAX sizeof("YYYY-MM-DDTHH:MM:SS.mmmZ")

/* ts as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf; the length, or 0 if it does not fit. */
size_t log_format_time(const struct timespec *ts, char *buf, size_t len);

void log_print(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pr_warn(...) log_print(LOG_LEVEL_WARN, __VA_ARGS__)
#define pr_info(...) log_print(LOG_LEVEL_INFO, __VA_ARGS__)
#define pr_debug(...) log_print(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * A failure's message for the caller's err buffer, in the "-errno with a
 * message in err" convention: printf into err, truncated to errlen;
 * nothing when err is NULL or errlen is 0. Logs nothing.
 */
void log_errbuf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Send libbpf's messages through log_print (warnings always, the rest at debug). */
void log_route_libbpf(void);

#endif
