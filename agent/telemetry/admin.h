/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The admin endpoint: a tiny HTTP/1.x server on its own thread, bound to
 * localhost by default, serving /healthz, /readyz, /metrics, the JSON
 * /debug/config, /debug/services and /debug/endpoints (debug.h), and the
 * web dashboard with its event stream (dashboard.h). It is for
 * probes and scrapers, not for traffic: one request per connection, a
 * bounded request, a short timeout, and it never blocks the proxy.
 */
#ifndef SHOAL_TELEMETRY_ADMIN_H
#define SHOAL_TELEMETRY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "telemetry/metrics.h"

/* The default address is the config's: CONFIG_DEFAULT_ADMIN_LISTEN. */

/*
 * Whether the agent is ready to serve: fills why with the reasons when it
 * is not. Called from the admin thread.
 */
typedef bool (*admin_ready_fn)(void *ctx, char *why, size_t len);

struct admin_opts {
	const char *listen; /* "127.0.0.1:15020" or "[::1]:15020" */
	struct metrics_sources sources;
	admin_ready_fn ready;
	void *ready_ctx;
	/* Dashboard frames' period; 0: ADMIN_STREAM_INTERVAL_MS (1 s). Tests set it. */
	unsigned int stream_interval_ms;
};

/* The dashboard streams' counters since start (docs/dashboards.md). */
struct admin_stream_stats {
	uint64_t opened;  /* streams accepted */
	uint64_t refused; /* streams answered 503: ADMIN_MAX_STREAMS were open */
	uint64_t frames;  /* frames written whole */
	uint64_t dropped; /* frames not queued: the stream's last was still unsent */
	uint64_t cut;	  /* streams closed because a frame stayed unsent too long */
};

struct admin;

/* Bind and start serving. Returns 0, or -errno with a message in err. */
int admin_start(const struct admin_opts *opts, struct admin **out, char *err, size_t errlen);

/* A snapshot of a's stream counters; any thread. */
void admin_get_stream_stats(struct admin *a, struct admin_stream_stats *out);

/* Stop the thread and close the listener. NULL is fine. */
void admin_stop(struct admin *a);

#endif
