/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Prometheus text exposition of everything shoald measures. Every metric
 * family is declared once, in SHOAL_METRICS below (name, type, help,
 * labels); the /metrics output and docs/metrics.md (shoald
 * --list-metrics) are both rendered from it.
 *
 * Values are read at scrape time: the kernel's counters from the pinned
 * BPF maps, the proxy's from its per-worker atomics. Nothing is copied on
 * the request path.
 */
#ifndef SHOAL_TELEMETRY_METRICS_H
#define SHOAL_TELEMETRY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy;

/*
 * X(id, name, type, labels, help). Kernel and proxy counters are families
 * generated from their own tables (SHOAL_KERNEL_COUNTERS, PROXY_STATS);
 * the names are shoal_datapath_<field>_total and shoal_proxy_<field>[_total].
 * Labels never carry an unbounded value: "service" is a configured
 * namespace/name, bounded by the config's service limit.
 */
#define SHOAL_METRICS(X)                                                                           \
	X(SVC_INTERCEPTED, "shoal_datapath_service_intercepted_total", "counter", "service",      \
	  "Connects to the service rewritten to the node proxy, per service.")                    \
	X(SVC_FAILED_OPEN, "shoal_datapath_service_failed_open_total", "counter", "service",      \
	  "Connects to the service left to their original path because the proxy was not alive.") \
	X(DATAPATH_UP, "shoal_datapath_up", "gauge", "",                                           \
	  "1 when the pinned BPF maps could be read at this scrape, else 0.")                      \
	X(PROCESS_OPEN_FDS, "shoal_process_open_fds", "gauge", "",                                 \
	  "File descriptors the agent holds open.")                                                \
	X(PROCESS_RSS, "shoal_process_resident_memory_bytes", "gauge", "",                         \
	  "Resident memory of the agent.")                                                         \
	X(PROCESS_START, "shoal_process_start_time_seconds", "gauge", "",                          \
	  "When the agent started, in seconds since the epoch.")                                   \
	X(BUILD_INFO, "shoal_build_info", "gauge", "version", "Always 1; the agent's version.")

/* Where the values come from; any may be NULL/absent. */
struct metrics_sources {
	const char *pin_root; /* pinned maps of the datapath */
	struct proxy *proxy;
	double start_time;    /* epoch seconds */
};

/* A growable text buffer; metrics_render appends to it. */
struct metrics_buf {
	char *data;
	size_t len, cap;
	bool failed; /* an allocation failed: the output is incomplete */
};

void metrics_buf_free(struct metrics_buf *b);

/* Render every family in the Prometheus text format (version 0.0.4).
 * Returns 0, or -ENOMEM (b->failed). */
int metrics_render(const struct metrics_sources *src, struct metrics_buf *b);

/* Print docs/metrics.md's table of every family to stdout. */
void metrics_print_docs(void);

#endif
