/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The admin endpoint: a tiny HTTP/1.x server on its own thread, bound to
 * localhost by default, serving /healthz, /readyz, /metrics and the JSON
 * /debug/config, /debug/services and /debug/endpoints (debug.h). It is for
 * probes and scrapers, not for traffic: one request per connection, a
 * bounded request, a short timeout, and it never blocks the proxy.
 */
#ifndef SHOAL_TELEMETRY_ADMIN_H
#define SHOAL_TELEMETRY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

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
};

struct admin;

/* Bind and start serving. Returns 0, or -errno with a message in err. */
int admin_start(const struct admin_opts *opts, struct admin **out, char *err, size_t errlen);

/* Stop the thread and close the listener. NULL is fine. */
void admin_stop(struct admin *a);

#endif
