/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The web dashboard of the admin endpoint (docs/dashboards.md, "The web
 * dashboard"): its HTML, CSS and JS, embedded at build time from
 * agent/telemetry/dashboard/ (embed.py), and the JSON state its pages
 * draw, sent once a second over /dashboard/events (admin.c streams it).
 */
#ifndef SHOAL_TELEMETRY_DASHBOARD_H
#define SHOAL_TELEMETRY_DASHBOARD_H

#include <stddef.h>

#include "telemetry/metrics.h"

struct dashboard_asset {
	const char *path; /* "/dashboard", "/dashboard/app.js", ... */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
};

/* Every embedded file, ended by an entry with a NULL path (generated). */
extern const struct dashboard_asset dashboard_assets[];

/* The asset served at path, or NULL. */
const struct dashboard_asset *dashboard_asset_find(const char *path);

/*
 * The dashboard's state as one line of JSON (no newline inside, so it
 * fits one SSE data: field): /debug/services, /debug/endpoints,
 * /debug/config and /debug/pods as they are, the kernel's counters, the
 * call graph's edges and the latency buckets' bounds; cumulative
 * counters, which the page diffs for rates. Returns 0 or -ENOMEM.
 */
int dashboard_render_state(const struct metrics_sources *src, struct metrics_buf *b);

#endif
