/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The clock and the RSS reading that the discovery benchmarks share. */
#ifndef SHOAL_TESTS_BENCH_UTIL_H
#define SHOAL_TESTS_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* This process's resident set in KiB (VmRSS), or -1 when unreadable. */
static inline long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

#endif
