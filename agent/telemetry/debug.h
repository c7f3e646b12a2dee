/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The admin endpoint's /debug pages, as JSON (docs/metrics.md, "Debug
 * pages"): the running config, every service with its live HTTP and TCP
 * figures and resilience state, every endpoint with its latency
 * estimate, requests in flight and breaker state. shoalctl reads them.
 *
 * Rendered on the admin thread from the same sources as /metrics: the
 * workers' metric shards (merged) and the proxy's endpoint table. Nothing
 * here touches the request path.
 */
#ifndef SHOAL_TELEMETRY_DEBUG_H
#define SHOAL_TELEMETRY_DEBUG_H

#include "telemetry/metrics.h"

/*
 * Render the page at path ("/debug/config", "/debug/services",
 * "/debug/endpoints", "/debug/policy", "/debug/policy/check", ...) into b;
 * query (after '?', or NULL) is read by /debug/policy/check only. Returns
 * 0, -ENOENT for another path, -EINVAL for a bad query (b holds the
 * reason, as text), or -ENOMEM (b->failed).
 */
int debug_render(const char *path, const char *query, const struct metrics_sources *src,
		 struct metrics_buf *b);

#endif
