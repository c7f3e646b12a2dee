// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/dashboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "datapath/pins.h"
#include "proxy/proxy.h"
#include "recording/callers.h"
#include "recording/http_metrics.h"
#include "telemetry/debug.h"
#include "telemetry/kernel_counters.h"

#define P metrics_buf_printf

const struct dashboard_asset *dashboard_asset_find(const char *path)
{
	for (const struct dashboard_asset *a = dashboard_assets; a->path; a++)
		if (!strcmp(a->path, path))
			return a;
	return NULL;
}

/* "key":<the debug page at path>, its trailing newline dropped. */
static void embed_page(const struct metrics_sources *src, struct metrics_buf *b, const char *key,
		       const char *path)
{
	struct metrics_buf page = {};

	if (debug_render(path, NULL, src, &page) || !page.len) {
		b->failed = true;
		metrics_buf_free(&page);
		return;
	}
	while (page.len && page.data[page.len - 1] == '\n')
		page.len--;
	P(b, ",\"%s\":%.*s", key, (int)page.len, page.data);
	metrics_buf_free(&page);
}

/* "kernel":{...}: the datapath's totals (null when the pins cannot be read). */
static void render_kernel(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct shoal_counters sum;

	if (!src->pin_root || pins_read_counters(src->pin_root, &sum)) {
		P(b, ",\"kernel\":null");
		return;
	}
	P(b, ",\"kernel\":{\"up\":true");
#define KERNEL_FIELD(field, help) P(b, ",\"" #field "\":%llu", (unsigned long long)sum.field);
	SHOAL_KERNEL_COUNTERS(KERNEL_FIELD)
#undef KERNEL_FIELD
	P(b, "}");
}

/* Label of series id, or "?" when the live config does not export it. */
static void edge_label(const struct metrics_live *lv, uint32_t id, char *out, size_t len)
{
	if (!metrics_live_service(lv, id, out, len))
		snprintf(out, len, "?");
}

/*
 * "edges":[...]: the call graph, one edge per (addressed service, serving
 * service) with its requests and 5xx responses so far. Bounded as the
 * series are (http_metrics.h): at most one edge per pair of configured
 * services that carried a request. Who called (the client pod) is not in
 * the series: docs/dashboards.md says what the graph shows instead.
 */
static void render_edges(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct metrics_http_snapshot snap = {};
	struct metrics_live lv;
	bool first = true;

	P(b, ",\"edges\":[");
	if (metrics_live_open(src->proxy, &lv) || !lv.cfg || metrics_live_series(&lv, &snap)) {
		metrics_live_close(&lv);
		P(b, "]");
		return;
	}
	/*
	 * Rows are sorted by service first: sum each service's run by serving
	 * service. A run names few backends (a route's split), so a short
	 * list searched linearly does; it grows as the run needs.
	 */
	struct edge {
		uint32_t backend;
		uint64_t requests, errors;
	} *edges = NULL;
	size_t cap = 0;

	for (size_t r = 0; r < snap.n_rows && !b->failed;) {
		uint32_t svc = snap.rows[r].key.svc;
		size_t n = 0;

		for (; r < snap.n_rows && snap.rows[r].key.svc == svc; r++) {
			const struct metrics_http_row *row = &snap.rows[r];
			size_t k = 0;

			while (k < n && edges[k].backend != row->key.backend)
				k++;
			if (k == n) {
				if (n == cap) {
					size_t ncap = cap ? 2 * cap : 8;
					struct edge *grown = realloc(edges, ncap * sizeof(*edges));

					if (!grown) {
						b->failed = true;
						break;
					}
					edges = grown;
					cap = ncap;
				}
				edges[n++] = (struct edge){.backend = row->key.backend};
			}
			if (!row->key.status)
				edges[k].requests += row->count;
			else if (row->key.status >= 500)
				edges[k].errors += row->count;
		}
		for (size_t k = 0; k < n && svc; k++) {
			char from[2 * CONFIG_MAX_NAME + 2], to[2 * CONFIG_MAX_NAME + 2];

			if (!edges[k].backend)
				continue;
			edge_label(&lv, svc, from, sizeof(from));
			edge_label(&lv, edges[k].backend, to, sizeof(to));
			/* Labels are configured names: no quote or control byte in them. */
			P(b,
			  "%s{\"service\":\"%s\",\"backend\":\"%s\",\"requests\":%llu,"
			  "\"errors\":%llu}",
			  first ? "" : ",", from, to, (unsigned long long)edges[k].requests,
			  (unsigned long long)edges[k].errors);
			first = false;
		}
	}
	free(edges);
	P(b, "]");
	metrics_http_snapshot_free(&snap);
	metrics_live_close(&lv);
}

/*
 * "caller_edges":[...]: who called which addressed service, with its
 * requests and 5xx responses so far (recording/callers.h): bounded by the
 * callers a worker names (CALLERS_MAX, the rest "other") times the
 * services. A caller is a pod's "namespace/name" or an address; any byte
 * outside those names' alphabet is written as '?', so it needs no escape.
 */
static void render_caller_edges(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct callers_snapshot cs = {};
	struct metrics_live lv;
	bool first = true;

	P(b, ",\"caller_edges\":[");
	if (!src->proxy || metrics_live_open(src->proxy, &lv)) {
		P(b, "]");
		return;
	}
	if (lv.cfg && !proxy_callers_snapshot(src->proxy, &cs)) {
		for (size_t i = 0; i < cs.n_rows; i++) {
			const struct callers_row *r = &cs.rows[i];
			char to[2 * CONFIG_MAX_NAME + 2], from[CALLERS_NAME_MAX];

			if (!metrics_live_service(&lv, r->svc, to, sizeof(to)))
				continue;
			for (size_t k = 0; k < sizeof(from); k++) {
				char ch = r->caller[k];

				if (!ch) {
					from[k] = '\0';
					break;
				}
				from[k] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
						  (ch >= '0' && ch <= '9') || strchr("./:-_[]", ch)
					      ? ch
					      : '?';
			}
			from[sizeof(from) - 1] = '\0';
			P(b,
			  "%s{\"caller\":\"%s\",\"service\":\"%s\",\"requests\":%llu,"
			  "\"errors\":%llu}",
			  first ? "" : ",", from, to, (unsigned long long)r->requests,
			  (unsigned long long)r->errors);
			first = false;
		}
	} else if (lv.cfg) {
		b->failed = true;
	}
	callers_snapshot_free(&cs);
	metrics_live_close(&lv);
	P(b, "]");
}

int dashboard_render_state(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	P(b, "{\"time_ms\":%llu,\"latency_bounds_ms\":[",
	  (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000);
	for (int i = 0; i < METRICS_LATENCY_N; i++)
		P(b, "%s%u", i ? "," : "", metrics_latency_bounds_ms[i]);
	P(b, "]");
	embed_page(src, b, "services", "/debug/services");
	embed_page(src, b, "endpoints", "/debug/endpoints");
	embed_page(src, b, "config", "/debug/config");
	embed_page(src, b, "pods", "/debug/pods");
	render_kernel(src, b);
	render_edges(src, b);
	render_caller_edges(src, b);
	P(b, "}");
	return b->failed ? -ENOMEM : 0;
}
