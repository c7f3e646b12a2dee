// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/metrics.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "datapath/env.h"
#include "datapath/kl4.h"
#include "datapath/pins.h"
#include "discovery/discovery.h"
#include "enroll/enroll.h"
#include "identity/identity.h"
#include "proxy/proxy.h"
#include "recording/http_metrics.h"
#include "recording/policy_stats.h"
#include "recording/series_ids.h"
#include "recording/trace.h"
#include "telemetry/kernel_counters.h"
#include "tunnel/tunnel.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "unknown"
#endif

/* First allocation of the output; a scrape of a small node fits. */
#define METRICS_BUF_INITIAL 16384

enum metric_id {
#define METRIC_ID(id, name, type, labels, help) METRIC_##id,
	SHOAL_METRICS(METRIC_ID)
#undef METRIC_ID
	METRIC_COUNT
};

struct metric_family {
	const char *name, *type, *labels, *help;
};

static const struct metric_family families[METRIC_COUNT] = {
#define METRIC_FAMILY(id, name, type, labels, help) [METRIC_##id] = { name, type, labels, help },
	SHOAL_METRICS(METRIC_FAMILY)
#undef METRIC_FAMILY
};

void metrics_buf_free(struct metrics_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void __attribute__((format(printf, 2, 3))) out(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		if (b->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += n;
			return;
		}
		size_t cap = b->cap ? b->cap : METRICS_BUF_INITIAL;

		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *grown = realloc(b->data, cap);

		if (!grown) {
			b->failed = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
}

void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		out(b, "%s", small);
		return;
	}
	char *big = malloc((size_t)n + 1);

	if (!big) {
		b->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	out(b, "%s", big);
	free(big);
}

static void family_header(struct metrics_buf *b, const char *name, const char *type,
			  const char *help)
{
	out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void header(struct metrics_buf *b, enum metric_id id)
{
	family_header(b, families[id].name, families[id].type, families[id].help);
}

/* A label value, escaped as the text format requires. */
static void label_value(struct metrics_buf *b, const char *value)
{
	for (const char *c = value; *c; c++) {
		if (*c == '\\' || *c == '"')
			out(b, "\\%c", *c);
		else if (*c == '\n')
			out(b, "\\n");
		else
			out(b, "%c", *c);
	}
}

/* name{label="value"} v, for a family of one label. */
static void sample_labeled(struct metrics_buf *b, enum metric_id id, const char *value,
			   unsigned long long v)
{
	out(b, "%s{%s=\"", families[id].name, families[id].labels);
	label_value(b, value);
	out(b, "\"} %llu\n", v);
}

/* The names an HTTP row's labels carry, resolved against the config. */
struct http_labels {
	char service[2 * CONFIG_MAX_NAME + 2];
	char backend[2 * CONFIG_MAX_NAME + 2];
	char route[CONFIG_MAX_NAME + 16];
	char endpoint[ADDR_STR_MAX];
};

static void http_labels(const struct metrics_live *lv, const struct metrics_http_row *r,
			struct http_labels *l)
{
	metrics_live_service(lv, r->key.svc, l->service, sizeof(l->service));
	metrics_live_service(lv, r->key.backend, l->backend, sizeof(l->backend));
	series_ids_route(proxy_series_ids(lv->proxy), r->key.svc, r->key.route, l->route,
			 sizeof(l->route));
	l->endpoint[0] = '\0';
	if (r->key.endpoint)
		addr_ntop(&r->ep_addr, l->endpoint, sizeof(l->endpoint));
}

/* service="",route="",backend="",endpoint="" and the rest, without braces. */
static void http_label_set(struct metrics_buf *b, const struct http_labels *l, bool endpoint)
{
	out(b, "service=\"");
	label_value(b, l->service);
	out(b, "\",route=\"");
	label_value(b, l->route);
	if (endpoint) {
		out(b, "\",backend=\"");
		label_value(b, l->backend);
		out(b, "\",endpoint=\"");
		label_value(b, l->endpoint);
	}
	out(b, "\"");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int metrics_live_open(struct proxy *proxy, struct metrics_live *l)
{
	memset(l, 0, sizeof(*l));
	l->now_ns = mono_ns();
	if (!proxy)
		return 0;
	l->proxy = proxy;
	l->snap = proxy_snap_newest(proxy);
	l->cfg = proxy_snap_config(l->snap);
	l->by_id = calloc(SERIES_IDS_MAX_SERVICES + 1, sizeof(*l->by_id));
	if (!l->by_id) {
		metrics_live_close(l);
		return -ENOMEM;
	}
	for (int i = 0; i < l->cfg->n_services; i++) {
		uint32_t id = l->cfg->services[i]->metrics_id;

		if (id && id <= SERIES_IDS_MAX_SERVICES)
			l->by_id[id] = l->cfg->services[i];
	}
	return 0;
}

void metrics_live_close(struct metrics_live *l)
{
	proxy_snap_put(l->snap);
	free(l->by_id);
	memset(l, 0, sizeof(*l));
}

bool metrics_live_service(const struct metrics_live *l, uint32_t svc, char *label, size_t len)
{
	if (label && len)
		label[0] = '\0';
	return l->proxy &&
	       series_ids_service(proxy_series_ids(l->proxy), svc, l->now_ns, label, len);
}

static bool live_exported(void *ctx, uint32_t svc)
{
	return metrics_live_service(ctx, svc, NULL, 0);
}

static uint32_t live_endpoint(void *ctx, uint32_t svc, const struct shoal_addr *addr, uint32_t hint)
{
	const struct metrics_live *l = ctx;
	const struct config_service *s = svc <= SERIES_IDS_MAX_SERVICES ? l->by_id[svc] : NULL;

	if (!s)
		return 0; /* removed: its endpoints are gone with it */
	if (hint && hint <= (uint32_t)s->n_endpoints &&
	    addr_equal(&s->endpoints[hint - 1].addr, addr))
		return hint;
	for (int i = 0; i < s->n_endpoints; i++)
		if (addr_equal(&s->endpoints[i].addr, addr))
			return (uint32_t)i + 1;
	return 0;
}

int metrics_live_series(const struct metrics_live *l, struct metrics_http_snapshot *out)
{
	struct metrics_resolver res = {
	    .service = live_exported, .endpoint = live_endpoint, .ctx = (void *)l};

	/* Without a proxy: the empty snapshot of no shards. */
	return l->proxy ? proxy_series_snapshot(l->proxy, &res, out)
			: metrics_http_snapshot(NULL, 0, &res, out);
}

static const char *status_class(uint32_t status)
{
	static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

	return status >= 100 && status < 600 ? classes[status / 100 - 1] : "other";
}

/*
 * The method label of gRPC row r: the exact path of the route of its
 * service whose series id it has, "other" for 0; NULL when that route is
 * no longer in the newest config (its series is then not exported).
 */
static const char *grpc_method(const struct metrics_live *lv, const struct metrics_http_row *r)
{
	const struct config_service *s =
	    r->key.svc <= SERIES_IDS_MAX_SERVICES ? lv->by_id[r->key.svc] : NULL;

	if (!r->key.route)
		return "other";
	for (int i = 0; s && i < s->n_routes; i++)
		if (s->routes[i].metrics_id == r->key.route &&
		    s->routes[i].path_match == CONFIG_PATH_EXACT)
			return s->routes[i].path;
	return NULL;
}

/* service="",method="" of gRPC row r; false when it is not exported. */
static bool grpc_labels(const struct metrics_live *lv, const struct metrics_http_row *r,
			struct metrics_buf *b, const char *family, const char *suffix)
{
	char service[SERIES_IDS_SERVICE_LABEL_MAX];
	const char *method = grpc_method(lv, r);

	if (!method)
		return false;
	metrics_live_service(lv, r->key.svc, service, sizeof(service));
	out(b, "%s%s{service=\"", family, suffix);
	label_value(b, service);
	out(b, "\",method=\"");
	label_value(b, method);
	out(b, "\"");
	return true;
}

/*
 * The gRPC families: calls per (service, method, grpc_status), and one
 * latency histogram per (service, method), the sum of its statuses' rows
 * (consecutive: rows sort by service, method, status).
 */
static void render_grpc(const struct metrics_live *lv, const struct metrics_http_snapshot *snap,
			struct metrics_buf *b)
{
	const char *name = families[METRIC_GRPC_LATENCY].name;

	header(b, METRIC_GRPC_REQUESTS);
	for (size_t i = 0; i < snap->n_grpc; i++) {
		const struct metrics_http_row *r = &snap->grpc[i];

		if (!grpc_labels(lv, r, b, families[METRIC_GRPC_REQUESTS].name, ""))
			continue;
		out(b, ",grpc_status=\"%s\"} %llu\n", metrics_grpc_status_label(r->key.status),
		    (unsigned long long)r->count);
	}
	header(b, METRIC_GRPC_LATENCY);
	for (size_t i = 0; i < snap->n_grpc;) {
		const struct metrics_http_row *first = &snap->grpc[i];
		uint64_t buckets[METRICS_LATENCY_N + 1] = {0}, sum_us = 0;
		unsigned long long cum = 0;

		for (; i < snap->n_grpc && snap->grpc[i].key.svc == first->key.svc &&
		       snap->grpc[i].key.route == first->key.route;
		     i++) {
			for (int j = 0; j <= METRICS_LATENCY_N; j++)
				buckets[j] += snap->grpc[i].buckets[j];
			sum_us += snap->grpc[i].sum_us;
		}
		if (!grpc_method(lv, first))
			continue;
		for (int j = 0; j <= METRICS_LATENCY_N; j++) {
			cum += buckets[j];
			grpc_labels(lv, first, b, name, "_bucket");
			if (j < METRICS_LATENCY_N)
				out(b, ",le=\"%g\"} %llu\n", metrics_latency_bounds_ms[j] / 1000.0, cum);
			else
				out(b, ",le=\"+Inf\"} %llu\n", cum);
		}
		grpc_labels(lv, first, b, name, "_sum");
		out(b, "} %.6f\n", sum_us / 1e6);
		grpc_labels(lv, first, b, name, "_count");
		out(b, "} %llu\n", cum);
	}
}

/* The golden HTTP and TCP families, from the workers' shards. */
static void render_golden(const struct metrics_live *lv, struct metrics_buf *b)
{
	struct metrics_http_snapshot snap = {};
	struct http_labels l;

	if (metrics_live_series(lv, &snap)) {
		b->failed = true;
		return;
	}
	header(b, METRIC_HTTP_REQUESTS);
	for (size_t i = 0; i < snap.n_rows; i++) {
		const struct metrics_http_row *r = &snap.rows[i];

		if (r->key.status || !r->count)
			continue;
		http_labels(lv, r, &l);
		out(b, "%s{", families[METRIC_HTTP_REQUESTS].name);
		http_label_set(b, &l, true);
		out(b, "} %llu\n", (unsigned long long)r->count);
	}
	header(b, METRIC_HTTP_RESPONSES);
	for (size_t i = 0; i < snap.n_rows; i++) {
		const struct metrics_http_row *r = &snap.rows[i];

		if (!r->key.status)
			continue;
		http_labels(lv, r, &l);
		out(b, "%s{", families[METRIC_HTTP_RESPONSES].name);
		http_label_set(b, &l, true);
		out(b, ",status_code=\"%u\",class=\"%s\"} %llu\n", r->key.status,
		    status_class(r->key.status), (unsigned long long)r->count);
	}
	header(b, METRIC_HTTP_LATENCY);
	for (size_t i = 0; i < snap.n_rows; i++) {
		const struct metrics_http_row *r = &snap.rows[i];
		const char *name = families[METRIC_HTTP_LATENCY].name;
		unsigned long long cum = 0;

		if (!r->key.status)
			continue;
		http_labels(lv, r, &l);
		for (int j = 0; j <= METRICS_LATENCY_N; j++) {
			cum += r->buckets[j];
			out(b, "%s_bucket{", name);
			http_label_set(b, &l, true);
			if (j < METRICS_LATENCY_N)
				out(b, ",status_code=\"%u\",le=\"%g\"} %llu\n", r->key.status,
				    metrics_latency_bounds_ms[j] / 1000.0, cum);
			else
				out(b, ",status_code=\"%u\",le=\"+Inf\"} %llu\n", r->key.status, cum);
		}
		out(b, "%s_sum{", name);
		http_label_set(b, &l, true);
		out(b, ",status_code=\"%u\"} %.6f\n", r->key.status, r->sum_us / 1e6);
		out(b, "%s_count{", name);
		http_label_set(b, &l, true);
		out(b, ",status_code=\"%u\"} %llu\n", r->key.status, cum);
	}
	/* Resilience events: per (service, route), summed over backends and endpoints. */
	static const enum metric_id event_ids[] = { METRIC_HTTP_RETRIES, METRIC_HTTP_RETRIES_REFUSED,
						    METRIC_HTTP_DEADLINE };
	for (size_t e = 0; e < sizeof(event_ids) / sizeof(event_ids[0]); e++) {
		header(b, event_ids[e]);
		for (size_t i = 0; i < snap.n_rows;) {
			const struct metrics_http_row *first = &snap.rows[i];
			unsigned long long v = 0;

			for (; i < snap.n_rows && snap.rows[i].key.svc == first->key.svc &&
			       snap.rows[i].key.route == first->key.route;
			     i++) {
				const struct metrics_http_row *r = &snap.rows[i];

				if (r->key.status)
					continue;
				v += e == 0 ? r->retries
				     : e == 1 ? r->retries_refused
					      : r->deadline_exceeded;
			}
			http_labels(lv, first, &l);
			out(b, "%s{", families[event_ids[e]].name);
			http_label_set(b, &l, false);
			out(b, "} %llu\n", v);
		}
	}
	render_grpc(lv, &snap, b);
	header(b, METRIC_HTTP_SERIES);
	out(b, "%s %llu\n", families[METRIC_HTTP_SERIES].name, (unsigned long long)snap.series);
	header(b, METRIC_HTTP_SERIES_OVERFLOW);
	out(b, "%s %llu\n", families[METRIC_HTTP_SERIES_OVERFLOW].name,
	    (unsigned long long)snap.overflow);
	header(b, METRIC_SERVICE_IDS);
	out(b, "%s %u\n", families[METRIC_SERVICE_IDS].name,
	    lv->proxy ? series_ids_count(proxy_series_ids(lv->proxy)) : 0);
	header(b, METRIC_SERVICE_OVERFLOW);
	out(b, "%s %llu\n", families[METRIC_SERVICE_OVERFLOW].name,
	    (unsigned long long)snap.unkeyed);
	static const enum metric_id tcp_ids[] = { METRIC_TCP_OPEN, METRIC_TCP_CLOSE, METRIC_TCP_READ,
						  METRIC_TCP_WRITE };
	for (size_t e = 0; e < sizeof(tcp_ids) / sizeof(tcp_ids[0]); e++) {
		header(b, tcp_ids[e]);
		for (uint32_t s = 0; s < snap.n_services; s++) {
			const struct metrics_tcp_series *t = &snap.tcp[s];
			uint64_t v = e == 0 ? t->opened
				     : e == 1 ? t->closed
				     : e == 2 ? t->read_bytes
					      : t->write_bytes;
			char name[SERIES_IDS_SERVICE_LABEL_MAX];

			/* Services that never carried opaque TCP stay out of the output. */
			if ((!t->opened && !t->closed) ||
			    !metrics_live_service(lv, s, name, sizeof(name)))
				continue;
			sample_labeled(b, tcp_ids[e], name, v);
		}
	}
	metrics_http_snapshot_free(&snap);
}

/* service="ns/name",endpoint="addr" */
static void endpoint_labels(struct metrics_buf *b, const struct config_service *s,
			    const struct config_endpoint *ep)
{
	char addr[ADDR_STR_MAX];

	out(b, "service=\"");
	label_value(b, s->namespace);
	out(b, "/");
	label_value(b, s->name);
	out(b, "\",endpoint=\"%s\"", addr_ntop(&ep->addr, addr, sizeof(addr)));
}

/* The balancer's and breakers' state per endpoint, from the proxy's endpoint table. */
static void render_endpoint_state(const struct metrics_live *lv, struct metrics_buf *b)
{
	static const enum metric_id ids[] = { METRIC_EP_EJECTED,     METRIC_EP_EJECTIONS,
					      METRIC_EP_EXPLORATIONS, METRIC_EP_IN_FLIGHT,
					      METRIC_EP_ESTIMATE,    METRIC_EP_OUTCOMES };
	const struct config *cfg = lv->cfg;
	uint64_t now = lv->now_ns;

	/* Families must not interleave: one pass over the endpoints per family. */
	for (size_t f = 0; f < sizeof(ids) / sizeof(ids[0]); f++) {
		header(b, ids[f]);
		for (int i = 0; cfg && i < cfg->n_services; i++) {
			const struct config_service *s = cfg->services[i];
			struct proxy_endpoint_stats st;

			/* Endpoints the snapshot holds no state for have no series. */
			for (int j = 0;
			     j < s->n_endpoints &&
			     proxy_snap_endpoint_stats(lv->snap, s, (uint32_t)j, now, &st);
			     j++) {
				if (ids[f] == METRIC_EP_OUTCOMES) {
					out(b, "%s{", families[ids[f]].name);
					endpoint_labels(b, s, &s->endpoints[j]);
					out(b, ",outcome=\"success\"} %llu\n",
					    (unsigned long long)st.succeeded);
					out(b, "%s{", families[ids[f]].name);
					endpoint_labels(b, s, &s->endpoints[j]);
					out(b, ",outcome=\"failure\"} %llu\n",
					    (unsigned long long)st.failed);
					continue;
				}
				out(b, "%s{", families[ids[f]].name);
				endpoint_labels(b, s, &s->endpoints[j]);
				if (ids[f] == METRIC_EP_EJECTED)
					out(b, "} %d\n", st.breaker.state != BREAKER_CLOSED);
				else if (ids[f] == METRIC_EP_EJECTIONS)
					out(b, "} %llu\n", (unsigned long long)st.breaker.ejections);
				else if (ids[f] == METRIC_EP_EXPLORATIONS)
					out(b, "} %llu\n", (unsigned long long)st.explorations);
				else if (ids[f] == METRIC_EP_IN_FLIGHT)
					out(b, "} %u\n", st.pending);
				else
					out(b, "} %.6f\n", st.estimate_ns / 1e9);
			}
		}
	}
}

/*
 * Kernel mode, per endpoint, from shoal_kl4_costs (and the ejections in
 * shoal_kl4_sets). The map holds only endpoints of the config's
 * kernel-mode sets, so the label is bounded by the config.
 */
static void render_kl4(const struct metrics_sources *src, struct metrics_buf *b)
{
	static const enum metric_id ids[] = { METRIC_KL4_CONNECTS, METRIC_KL4_FAILURES,
					      METRIC_KL4_RTT, METRIC_KL4_EJECTED };
	int costs_fd = src->pin_root ? pins_open_map(src->pin_root, "shoal_kl4_costs") : -1;
	int sets_fd = src->pin_root ? pins_open_map(src->pin_root, "shoal_kl4_sets") : -1;
	uint64_t now = env_boot_ns();
	struct kl4_ejected ejected = {};

	if (sets_fd >= 0)
		kl4_ejected_read(sets_fd, now, &ejected);
	for (size_t f = 0; f < sizeof(ids) / sizeof(ids[0]); f++) {
		struct shoal_kl4_cost_key k, next;
		bool walking = false;

		header(b, ids[f]);
		while (costs_fd >= 0 &&
		       bpf_map_get_next_key(costs_fd, walking ? &k : NULL, &next) == 0) {
			struct shoal_kl4_cost c;
			char ep[ADDR_STR_MAX];

			k = next;
			walking = true;
			if (bpf_map_lookup_elem(costs_fd, &next, &c) < 0)
				continue;
			addr_format(&next.ip, next.port, ep, sizeof(ep));
			out(b, "%s{endpoint=\"%s\"} ", families[ids[f]].name, ep);
			if (ids[f] == METRIC_KL4_CONNECTS)
				out(b, "%llu\n", (unsigned long long)c.connects);
			else if (ids[f] == METRIC_KL4_FAILURES)
				out(b, "%llu\n", (unsigned long long)c.failures);
			else if (ids[f] == METRIC_KL4_RTT)
				out(b, "%.6f\n", (double)kl4_cost_now(&c, now) / 1e6);
			else
				out(b, "%d\n", kl4_is_ejected(&ejected, &next));
		}
	}
	kl4_ejected_free(&ejected);
	if (costs_fd >= 0)
		close(costs_fd);
	if (sets_fd >= 0)
		close(sets_fd);
}

/* The kernel's totals, and per service from shoal_svc_stats. */
static bool render_kernel(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct shoal_counters sum;
	bool up = src->pin_root && pins_read_counters(src->pin_root, &sum) == 0;

#define KERNEL_COUNTER(field, help)                                                                \
	family_header(b, "shoal_datapath_" #field "_total", "counter", help);                      \
	if (up)                                                                                     \
		out(b, "shoal_datapath_" #field "_total %llu\n", (unsigned long long)sum.field);
	SHOAL_KERNEL_COUNTERS(KERNEL_COUNTER)
#undef KERNEL_COUNTER

	header(b, METRIC_SVC_INTERCEPTED);
	header(b, METRIC_SVC_FAILED_OPEN);
	if (!up)
		return false;
	/* Families must not interleave: collect, then print one after the other. */
	struct metrics_buf failed_open = {};
	int names_fd = pins_open_map(src->pin_root, "shoal_svc_names");
	int stats_fd = pins_open_map(src->pin_root, "shoal_svc_stats");
	__u32 id, next;
	bool walking = false;

	while (names_fd >= 0 && stats_fd >= 0 &&
	       bpf_map_get_next_key(names_fd, walking ? &id : NULL, &next) == 0) {
		struct shoal_svc_name name = {};
		struct shoal_svc_stats st;

		id = next;
		walking = true;
		if (bpf_map_lookup_elem(names_fd, &id, &name) < 0 ||
		    pins_read_svc_stats(stats_fd, id, &st) < 0)
			continue;
		name.name[sizeof(name.name) - 1] = '\0';
		sample_labeled(b, METRIC_SVC_INTERCEPTED, name.name, st.intercepted);
		sample_labeled(&failed_open, METRIC_SVC_FAILED_OPEN, name.name, st.failed_open);
	}
	if (failed_open.len)
		out(b, "%.*s", (int)failed_open.len, failed_open.data);
	b->failed |= failed_open.failed;
	metrics_buf_free(&failed_open);
	if (names_fd >= 0)
		close(names_fd);
	if (stats_fd >= 0)
		close(stats_fd);
	return true;
}

/*
 * A component's counters come from its own X(field, kind, help) table
 * (PROXY_STATS, TRACE_STATS, DISCOVERY_STATS, ENROLL_STATS, IDENTITY_STATS): each row is one family
 * named prefix + field, with "_total" for counters, and a sample only
 * when the component runs.
 */
static const char *stat_suffix(const char *kind)
{
	return !strcmp(kind, "counter") ? "_total" : "";
}

static void render_stat(struct metrics_buf *b, const char *prefix, const char *field,
			const char *kind, const char *help, bool present, unsigned long long v)
{
	const char *suffix = stat_suffix(kind);

	out(b, "# HELP %s%s%s %s\n# TYPE %s%s%s %s\n", prefix, field, suffix, help, prefix, field,
	    suffix, kind);
	if (present)
		out(b, "%s%s%s %llu\n", prefix, field, suffix, v);
}

static void doc_stat(const char *prefix, const char *field, const char *kind, const char *help)
{
	printf("| `%s%s%s` | %s | | %s |\n", prefix, field, stat_suffix(kind), kind, help);
}

static void render_proxy(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct proxy_stats st = {};

	if (src->proxy)
		proxy_stats(src->proxy, &st);
#define PROXY_FAMILY(field, kind, help)                                                            \
	render_stat(b, "shoal_proxy_", #field, #kind, help, src->proxy, st.field);
	PROXY_STATS(PROXY_FAMILY)
#undef PROXY_FAMILY
	/* Every cap of the table, zero included, so a rate() has its series. */
	header(b, METRIC_PROXY_REFUSED);
	for (int i = 0; src->proxy && i < PROXY_CAP__COUNT; i++)
		sample_labeled(b, METRIC_PROXY_REFUSED, proxy_cap_name(i), st.refused[i]);
}

/*
 * shoal_policy_decisions_total: the workers' series merged
 * (recording/policy_stats.h), then the overflow bucket when it counted.
 */
static void render_policy(const struct metrics_sources *src, struct metrics_buf *b)
{
	static const char *const decision[2] = { "deny", "allow" };
	const char *name = families[METRIC_POLICY_DECISIONS].name;
	struct policy_stats_snapshot snap;

	header(b, METRIC_POLICY_DECISIONS);
	if (!src->proxy)
		return;
	if (proxy_policy_snapshot(src->proxy, &snap)) {
		b->failed = true;
		return;
	}
	for (size_t i = 0; i < snap.n_rows; i++) {
		const struct policy_stats_row *r = &snap.rows[i];

		out(b, "%s{namespace=\"", name);
		label_value(b, r->ns);
		out(b, "\",service=\"");
		label_value(b, r->service);
		out(b, "\",policy=\"");
		label_value(b, r->policy);
		out(b, "\",decision=\"%s\"} %llu\n", decision[r->allow], (unsigned long long)r->count);
	}
	for (int a = 0; a < 2; a++)
		if (snap.overflow[a])
			out(b,
			    "%s{namespace=\"" POLICY_STATS_OTHER "\",service=\"" POLICY_STATS_OTHER
			    "\",policy=\"" POLICY_STATS_OTHER "\",decision=\"%s\"} %llu\n",
			    name, decision[a], (unsigned long long)snap.overflow[a]);
	policy_stats_snapshot_free(&snap);
}

/* The tracer's counters (zero families when tracing is off). */
static void render_trace(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct trace_stats st = {};

	if (src->tracer)
		trace_stats(src->tracer, &st);
#define TRACE_FAMILY(field, kind, help)                                                            \
	render_stat(b, "shoal_trace_", #field, #kind, help, src->tracer, st.field);
	TRACE_STATS(TRACE_FAMILY)
#undef TRACE_FAMILY
}

/* Discovery's counters (zero families when it does not run). */
static void render_discovery(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct discovery_stats st = {};

	if (src->discovery)
		discovery_get_stats(src->discovery, &st);
#define DISCOVERY_FAMILY(field, kind, help)                                                        \
	render_stat(b, "shoal_discovery_", #field, #kind, help, src->discovery, st.field);
	DISCOVERY_STATS(DISCOVERY_FAMILY)
#undef DISCOVERY_FAMILY
}

/* Enrollment's counters and pod states (zero families when it does not run). */
static void render_enroll(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct enroll_stats st = {};

	if (src->enroll)
		enroll_get_stats(src->enroll, &st);
#define ENROLL_FAMILY(field, kind, help)                                                           \
	render_stat(b, "shoal_enroll_", #field, #kind, help, src->enroll, st.field);
	ENROLL_STATS(ENROLL_FAMILY)
#undef ENROLL_FAMILY
}

/* The identity controller's counters and requests by outcome (zero families when off). */
static void render_identity(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct identity_stats st = {};

	if (src->identity)
		identity_get_stats(src->identity, &st);
#define IDENTITY_FAMILY(field, kind, help)                                                         \
	render_stat(b, "shoal_identity_", #field, #kind, help, src->identity, st.field);
	IDENTITY_STATS(IDENTITY_FAMILY)
#undef IDENTITY_FAMILY
	header(b, METRIC_IDENTITY_REQUESTS);
	for (int i = 0; src->identity && i < ID_OUTCOME__COUNT; i++)
		sample_labeled(b, METRIC_IDENTITY_REQUESTS, id_outcome_name(i), st.requests[i]);
}

/* The encrypted hop's counters (docs/mtls.md; zero families when mtls is off). */
static void render_tunnel(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct tunnel_stats st = {};

	if (src->tunnel)
		tunnel_get_stats(src->tunnel, &st);
#define TUNNEL_FAMILY(field, kind, help)                                                           \
	render_stat(b, "shoal_tunnel_", #field, #kind, help, src->tunnel, st.field);
	TUNNEL_STATS(TUNNEL_FAMILY)
#undef TUNNEL_FAMILY
}

/*
 * shoal_tunnel_inbound_*: the destination's callers by proven identity
 * (tunnel_peer_rows; bounded at TUNNEL_PEERS_MAX pairs plus "other").
 */
static void render_tunnel_peers(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct tunnel_peer_row *rows = NULL;
	size_t n = 0;

	if (src->tunnel) {
		rows = malloc((TUNNEL_PEERS_MAX + 1) * sizeof(*rows));
		if (!rows) {
			b->failed = true;
			return;
		}
		n = tunnel_peer_rows(src->tunnel, rows, TUNNEL_PEERS_MAX + 1);
	}
#define TUNNEL_PEER_FAMILY(field, suffix, help)                                                    \
	family_header(b, "shoal_tunnel_" suffix, "counter", help);                                 \
	for (size_t i = 0; i < n; i++) {                                                           \
		out(b, "shoal_tunnel_" suffix "{source_identity=\"");                              \
		label_value(b, rows[i].source);                                                    \
		out(b, "\",destination_identity=\"");                                              \
		label_value(b, rows[i].destination);                                               \
		out(b, "\"} %llu\n", rows[i].field);                                               \
	}
	TUNNEL_PEER_STATS(TUNNEL_PEER_FAMILY)
#undef TUNNEL_PEER_FAMILY
	free(rows);
}

static unsigned long count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned long n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own fd */
}

static unsigned long long resident_bytes(void)
{
	unsigned long long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f) {
		if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (unsigned long long)sysconf(_SC_PAGESIZE);
}

int metrics_render(const struct metrics_sources *src, struct metrics_buf *b)
{
	bool up = render_kernel(src, b);
	struct metrics_live lv;

	render_kl4(src, b);

	if (metrics_live_open(src->proxy, &lv))
		b->failed = true;
	else {
		render_golden(&lv, b);
		render_endpoint_state(&lv, b);
	}
	metrics_live_close(&lv);
	header(b, METRIC_DATAPATH_UP);
	out(b, "%s %d\n", families[METRIC_DATAPATH_UP].name, up);
	render_proxy(src, b);
	render_policy(src, b);
	render_trace(src, b);
	render_discovery(src, b);
	render_enroll(src, b);
	render_identity(src, b);
	render_tunnel(src, b);
	render_tunnel_peers(src, b);
	header(b, METRIC_PROCESS_OPEN_FDS);
	out(b, "%s %lu\n", families[METRIC_PROCESS_OPEN_FDS].name, count_open_fds());
	header(b, METRIC_PROCESS_RSS);
	out(b, "%s %llu\n", families[METRIC_PROCESS_RSS].name, resident_bytes());
	header(b, METRIC_PROCESS_START);
	out(b, "%s %.3f\n", families[METRIC_PROCESS_START].name, src->start_time);
	header(b, METRIC_BUILD_INFO);
	sample_labeled(b, METRIC_BUILD_INFO, SHOAL_VERSION, 1);
	return b->failed ? -ENOMEM : 0;
}

void metrics_print_docs(void)
{
	printf("| metric | type | labels | meaning |\n|---|---|---|---|\n");
#define DOC_KERNEL(field, help)                                                                    \
	printf("| `shoal_datapath_" #field "_total` | counter | | %s (BPF map `shoal_counters`, " \
	       "field `" #field "`) |\n",                                                          \
	       help);
	SHOAL_KERNEL_COUNTERS(DOC_KERNEL)
#undef DOC_KERNEL
#define DOC_PROXY(field, kind, help) doc_stat("shoal_proxy_", #field, #kind, help);
	PROXY_STATS(DOC_PROXY)
#undef DOC_PROXY
#define DOC_TRACE(field, kind, help) doc_stat("shoal_trace_", #field, #kind, help);
	TRACE_STATS(DOC_TRACE)
#undef DOC_TRACE
#define DOC_DISCOVERY(field, kind, help) doc_stat("shoal_discovery_", #field, #kind, help);
	DISCOVERY_STATS(DOC_DISCOVERY)
#undef DOC_DISCOVERY
#define DOC_ENROLL(field, kind, help) doc_stat("shoal_enroll_", #field, #kind, help);
	ENROLL_STATS(DOC_ENROLL)
#undef DOC_ENROLL
#define DOC_IDENTITY(field, kind, help) doc_stat("shoal_identity_", #field, #kind, help);
	IDENTITY_STATS(DOC_IDENTITY)
#undef DOC_IDENTITY
#define DOC_TUNNEL(field, kind, help) doc_stat("shoal_tunnel_", #field, #kind, help);
	TUNNEL_STATS(DOC_TUNNEL)
#undef DOC_TUNNEL
#define DOC_TUNNEL_PEER(field, suffix, help)                                                       \
	printf("| `shoal_tunnel_" suffix "` | counter | source_identity,destination_identity | "  \
	       "%s |\n",                                                                           \
	       help);
	TUNNEL_PEER_STATS(DOC_TUNNEL_PEER)
#undef DOC_TUNNEL_PEER
	for (int i = 0; i < METRIC_COUNT; i++)
		printf("| `%s` | %s | %s | %s |\n", families[i].name, families[i].type,
		       families[i].labels[0] ? families[i].labels : "", families[i].help);
}
