// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "common/log.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
/* Set once at start-up, before any worker thread logs. */
static bool with_time;

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

void log_set_time(bool on)
{
	with_time = on;
}

bool log_time_default(const char *journal_stream, int fd)
{
	uintmax_t dev, ino;
	struct stat st;
	int used = 0;

	if (!journal_stream)
		return true;
	if (sscanf(journal_stream, "%ju:%ju%n", &dev, &ino, &used) != 2 ||
	    journal_stream[used] != '\0')
		return true;
	if (fstat(fd, &st))
		return true;
	return !(st.st_dev == dev && st.st_ino == ino);
}

size_t log_format_time(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;
	size_t n;
	int m;

	if (!len || !gmtime_r(&ts->tv_sec, &tm))
		goto cut;
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!n)
		goto cut;
	m = snprintf(buf + n, len - n, ".%03ldZ", ts->tv_nsec / 1000000);
	if (m < 0 || (size_t)m >= len - n)
		goto cut;
	return n + m;
cut:
	/* An empty string rather than a time cut short. */
	if (len)
		buf[0] = '\0';
	return 0;
}

static const char *const level_names[] = { "warn", "info", "debug" };

static void log_vprint(enum log_level level, const char *fmt, va_list ap)
{
	char msg[1024], line[LOG_TIME_MAX + sizeof(msg) + 32];
	char stamp[LOG_TIME_MAX] = "";
	struct timespec now;
	size_t n, off;
	ssize_t w;
	int len, saved_errno;

	if (level > current_level)
		return;
	/* Callers may log between a failing call and their look at errno. */
	saved_errno = errno;
	if (with_time && !clock_gettime(CLOCK_REALTIME, &now))
		log_format_time(&now, stamp, sizeof(stamp));
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	if (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	len = snprintf(line, sizeof(line), "%s%sshoal %s: %s\n", stamp, *stamp ? " " : "",
		       level_names[level], msg);
	if (len < 0)
		goto out;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	/*
	 * The whole line in one write(2): worker threads log concurrently, and
	 * a line this short (under PIPE_BUF) reaches a pipe in one piece, so
	 * lines never interleave. Only a signal or a short write splits it.
	 */
	for (off = 0; off < (size_t)len; off += w) {
		w = write(STDERR_FILENO, line + off, len - off);
		if (w < 0 && errno == EINTR)
			w = 0;
		else if (w <= 0)
			break;
	}
out:
	errno = saved_errno;
}

void log_print(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(level, fmt, ap);
	va_end(ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	log_vprint(level == LIBBPF_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, fmt, ap);
	return 0;
}

void log_route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}

void log_errbuf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
