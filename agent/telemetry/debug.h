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
 * "/debug/endpoints") into b. Returns 0, -ENOENT for another path, or
 * -ENOMEM (b->failed).
 */
int debug_render(const char *path, const struct metrics_sources *src, struct metrics_buf *b);

#endif
