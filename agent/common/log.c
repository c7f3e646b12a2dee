// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "common/log.h"

#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum log_level current_level = LOG_LEVEL_INFO;

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

static const char *const level_names[] = { "warn", "info", "debug" };

static void log_vprint(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n;

	if (level > current_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One write per line, so lines from worker threads never interleave. */
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	fprintf(stderr, "shoal %s: %s\n", level_names[level], line);
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
