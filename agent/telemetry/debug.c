// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/debug.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/addr.h"
#include "enroll/enroll.h"
#include "identity/identity.h"
#include "proxy/proxy.h"
#include "policy/policy.h"
#include "policy/policy_check.h"
#include "proxy/http_routes.h"
#include "recording/http_metrics.h"
#include "recording/policy_stats.h"

#define P metrics_buf_printf

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void json_str(struct metrics_buf *b, const char *s)
{
	P(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			P(b, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			P(b, "\\u%04x", c);
		else
			P(b, "%c", c);
	}
	P(b, "\"");
}

static void json_addr(struct metrics_buf *b, const struct shoal_addr *a)
{
	char text[ADDR_STR_MAX];

	json_str(b, addr_ntop(a, text, sizeof(text)));
}

static const char *proto_name(enum config_protocol p)
{
	switch (p) {
	case CONFIG_PROTO_TCP:
		return "tcp";
	case CONFIG_PROTO_HTTP:
		return "http";
	case CONFIG_PROTO_H2C:
		return "h2c";
	case CONFIG_PROTO_DETECT:
		return "detect";
	}
	return "?";
}

/* "vips":[...],"ports":[...] of service s, as /debug/services and /debug/config show them. */
static void json_vips_ports(struct metrics_buf *b, const struct config_service *s)
{
	P(b, "\"vips\":[");
	for (int j = 0; j < s->n_vips; j++) {
		P(b, "%s", j ? "," : "");
		json_addr(b, &s->vips[j]);
	}
	P(b, "],\"ports\":[");
	for (int j = 0; j < s->n_ports; j++)
		P(b, "%s{\"port\":%u,\"target_port\":%u,\"protocol\":\"%s\"}", j ? "," : "",
		  s->ports[j].port, s->ports[j].target_port, proto_name(s->ports[j].protocol));
	P(b, "]");
}

/* HTTP figures of a service or endpoint, summed from snapshot rows. */
struct http_sum {
	uint64_t requests;
	uint64_t classes[5]; /* responses 1xx .. 5xx */
	uint64_t buckets[METRICS_LATENCY_N + 1];
};

static void http_sum_add(struct http_sum *s, const struct metrics_http_row *r)
{
	if (!r->key.status) {
		s->requests += r->count;
		return;
	}
	if (r->key.status >= 100 && r->key.status < 600)
		s->classes[r->key.status / 100 - 1] += r->count;
	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		s->buckets[i] += r->buckets[i];
}

/* "http": {...}; cumulative totals, so a reader diffs two reads for rates. */
static void json_http(struct metrics_buf *b, const struct http_sum *s)
{
	P(b, "\"http\":{\"requests\":%llu,\"responses\":{", (unsigned long long)s->requests);
	for (int i = 0; i < 5; i++)
		P(b, "%s\"%dxx\":%llu", i ? "," : "", i + 1, (unsigned long long)s->classes[i]);
	P(b, "},\"latency_buckets\":[");
	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		P(b, "%s%llu", i ? "," : "", (unsigned long long)s->buckets[i]);
	P(b, "]}");
}

/* The first row of series id svc (rows are sorted by service first). */
static size_t rows_of(const struct metrics_http_snapshot *snap, uint32_t svc)
{
	size_t lo = 0, hi = snap->n_rows;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (snap->rows[mid].key.svc < svc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void render_services(const struct metrics_live *lv, struct metrics_buf *b)
{
	const struct config *cfg = lv->cfg;
	struct metrics_http_snapshot snap = {};
	bool first = true;

	P(b, "{\"services\":[");
	if (!cfg || metrics_live_series(lv, &snap)) {
		P(b, "]}\n");
		return;
	}
	for (int i = 0; i < cfg->n_services; i++) {
		const struct config_service *s = cfg->services[i];
		static const struct metrics_tcp_series none;
		const struct metrics_tcp_series *t =
		    s->metrics_id < snap.n_services ? &snap.tcp[s->metrics_id] : &none;
		struct http_sum h = {};

		if (!s->name[0])
			continue; /* a vacant id of discovery's config */
		for (size_t r = rows_of(&snap, s->metrics_id);
		     s->metrics_id && r < snap.n_rows && snap.rows[r].key.svc == s->metrics_id; r++)
			http_sum_add(&h, &snap.rows[r]);
		P(b, "%s{\"namespace\":", first ? "" : ",");
		first = false;
		json_str(b, s->namespace);
		P(b, ",\"name\":");
		json_str(b, s->name);
		P(b, ",\"id\":%u,", s->id);
		json_vips_ports(b, s);
		P(b, ",\"endpoints\":%d,\"routes\":[", s->n_endpoints);
		for (int j = 0; j < s->n_routes; j++) {
			P(b, "%s", j ? "," : "");
			json_str(b, s->routes[j].name);
		}
		P(b, "],");
		json_http(b, &h);
		P(b,
		  ",\"tcp\":{\"opened\":%llu,\"closed\":%llu,\"read_bytes\":%llu,\"write_bytes\":%"
		  "llu}",
		  (unsigned long long)t->opened, (unsigned long long)t->closed,
		  (unsigned long long)t->read_bytes, (unsigned long long)t->write_bytes);
		struct proxy_service_stats st;

		if (proxy_snap_service_stats(lv->snap, s, lv->now_ns, &st))
			P(b,
			  ",\"resilience\":{\"budget_balance\":%llu,\"ejected\":%u,\"ejection_"
			  "cap\":%u,"
			  "\"retries\":%llu,\"retries_refused\":%llu,\"deadline_exceeded\":%llu,"
			  "\"no_candidate\":%llu,\"ejections\":%llu,\"readmissions\":%llu}",
			  (unsigned long long)st.budget_balance, st.ejected, st.ejection_cap,
			  (unsigned long long)st.retries, (unsigned long long)st.retries_refused,
			  (unsigned long long)st.deadline_exceeded,
			  (unsigned long long)st.no_candidate, (unsigned long long)st.ejections,
			  (unsigned long long)st.readmissions);
		P(b, "}");
	}
	P(b, "]}\n");
	metrics_http_snapshot_free(&snap);
}

static void render_endpoints(const struct metrics_live *lv, struct metrics_buf *b)
{
	const struct config *cfg = lv->cfg;
	struct metrics_http_snapshot snap = {};
	struct http_sum *sums = NULL;
	bool first = true;
	size_t total = 0;

	P(b, "{\"endpoints\":[");
	if (!cfg || metrics_live_series(lv, &snap)) {
		P(b, "]}\n");
		return;
	}
	/* One sum per (backend service, endpoint): offsets into one array. */
	size_t *base = calloc((size_t)cfg->n_services + 1, sizeof(*base));

	for (int i = 0; base && i < cfg->n_services; i++)
		base[i + 1] = base[i] + (size_t)cfg->services[i]->n_endpoints;
	if (base)
		total = base[cfg->n_services];
	sums = calloc(total ? total : 1, sizeof(*sums));
	if (!base || !sums) {
		b->failed = true;
		goto out;
	}
	for (size_t r = 0; r < snap.n_rows; r++) {
		const struct metrics_http_row *row = &snap.rows[r];
		const struct config_service *t = row->key.backend <= SERIES_IDS_MAX_SERVICES
						     ? lv->by_id[row->key.backend]
						     : NULL;

		/* Endpoints are numbered in the live config by metrics_live_series. */
		if (row->key.endpoint && t && t->id < (uint32_t)cfg->n_services &&
		    row->key.endpoint <= (uint32_t)t->n_endpoints)
			http_sum_add(&sums[base[t->id] + row->key.endpoint - 1], row);
	}
	for (int i = 0; i < cfg->n_services; i++) {
		const struct config_service *s = cfg->services[i];
		for (int j = 0; j < s->n_endpoints; j++) {
			struct proxy_endpoint_stats st;

			P(b, "%s{\"namespace\":", first ? "" : ",");
			first = false;
			json_str(b, s->namespace);
			P(b, ",\"service\":");
			json_str(b, s->name);
			P(b, ",\"address\":");
			json_addr(b, &s->endpoints[j].addr);
			P(b, ",");
			json_http(b, &sums[base[i] + (size_t)j]);
			if (proxy_snap_endpoint_stats(lv->snap, s, (uint32_t)j, lv->now_ns, &st))
				P(b,
				  ",\"estimate_ms\":%.3f,\"in_flight\":%u,\"breaker\":\"%s\","
				  "\"consecutive_failures\":%u,\"ejections\":%llu,"
				  "\"outcomes_succeeded\":%llu,\"outcomes_failed\":%llu,"
				  "\"penalised\":%s,\"explorations\":%llu",
				  st.estimate_ns / 1e6, st.pending,
				  breaker_state_name(st.breaker.state), st.breaker.consecutive,
				  (unsigned long long)st.breaker.ejections,
				  (unsigned long long)st.succeeded, (unsigned long long)st.failed,
				  st.penalised ? "true" : "false",
				  (unsigned long long)st.explorations);
			P(b, "}");
		}
	}
out:
	P(b, "]}\n");
	free(base);
	free(sums);
	metrics_http_snapshot_free(&snap);
}

static void render_config(const struct metrics_live *lv, struct metrics_buf *b)
{
	const struct config *cfg = lv->cfg;

	if (!cfg) {
		P(b, "{}\n");
		return;
	}
	P(b, "{\"path\":");
	json_str(b, cfg->path);
	P(b, ",\"node\":{\"address_v4\":");
	json_addr(b, &cfg->proxy_v4);
	P(b, ",\"address_v6\":");
	json_addr(b, &cfg->proxy_v6);
	P(b, ",\"proxy_port\":%u},\"bpf\":{\"pin_root\":", cfg->proxy_port);
	json_str(b, cfg->pin_root);
	P(b, ",\"cgroup\":");
	json_str(b, cfg->cgroup);
	P(b, ",\"shortcut\":%s,\"socket_mark\":%u,\"failopen_after_ms\":%u}",
	  cfg->shortcut ? "true" : "false", cfg->socket_mark, cfg->failopen_after_ms);
	P(b,
	  ",\"proxy\":{\"workers\":%d,\"connect_timeout_ms\":%u,\"connect_deadline_ms\":%u,"
	  "\"buffer_bytes\":%u,\"max_connections\":%u,\"max_buffer_memory_mib\":%u,"
	  "\"max_connections_per_client\":%u,\"detect_timeout_ms\":%u,"
	  "\"idle_timeout_ms\":%u,\"opaque_ports\":[",
	  cfg->workers, cfg->connect_timeout_ms, cfg->connect_deadline_ms, cfg->buffer_bytes,
	  cfg->max_connections, cfg->max_buffer_memory_mib, cfg->max_connections_per_client,
	  cfg->detect_timeout_ms, cfg->idle_timeout_ms);
	for (int i = 0; i < cfg->n_opaque_ports; i++)
		P(b, "%s%u", i ? "," : "", cfg->opaque_ports[i]);
	P(b,
	  "],\"http\":{\"max_request_line\":%u,\"max_head_bytes\":%u,\"max_headers\":%u,"
	  "\"pool_idle_timeout_ms\":%u,\"pool_max_idle_per_endpoint\":%u,"
	  "\"request_body_timeout_ms\":%u,\"response_head_timeout_ms\":%u,"
	  "\"request_timeout_ms\":%u,\"max_requests_per_connection\":%u,"
	  "\"max_connection_age_ms\":%u}}",
	  cfg->http_max_request_line, cfg->http_max_head_bytes, cfg->http_max_headers,
	  cfg->http_pool_idle_timeout_ms, cfg->http_pool_max_idle_per_endpoint,
	  cfg->http_request_body_timeout_ms, cfg->http_response_head_timeout_ms,
	  cfg->http_request_timeout_ms, cfg->http_max_requests_per_connection,
	  cfg->http_max_connection_age_ms);
	P(b, ",\"tracing\":{\"enabled\":%s,\"collector_url\":",
	  cfg->tracing.enabled ? "true" : "false");
	json_str(b, cfg->tracing.collector_url);
	P(b, ",\"sample_rate\":%g,\"span_kind\":\"%s\",\"service_name\":", cfg->tracing.sample_rate,
	  cfg->tracing.span_kind == 2 ? "server" : "client");
	json_str(b, cfg->tracing.service_name);
	P(b, ",\"ring_size\":%u,\"batch_size\":%u,\"batch_delay_ms\":%u,\"timeout_ms\":%u}",
	  cfg->tracing.ring_size, cfg->tracing.batch_size, cfg->tracing.batch_delay_ms,
	  cfg->tracing.timeout_ms);
	P(b, ",\"admin\":{\"listen\":");
	json_str(b, cfg->admin.listen);
	P(b, "},\"services\":[");
	for (int i = 0; i < cfg->n_services; i++) {
		const struct config_service *s = cfg->services[i];

		P(b, "%s{\"namespace\":", i ? "," : "");
		json_str(b, s->namespace);
		P(b, ",\"name\":");
		json_str(b, s->name);
		P(b, ",");
		json_vips_ports(b, s);
		P(b, ",\"endpoints\":[");
		for (int j = 0; j < s->n_endpoints; j++) {
			P(b, "%s", j ? "," : "");
			json_addr(b, &s->endpoints[j].addr);
		}
		P(b, "],\"routes\":[");
		for (int j = 0; j < s->n_routes; j++) {
			const struct config_route *r = &s->routes[j];

			P(b, "%s{\"name\":", j ? "," : "");
			json_str(b, r->name);
			P(b, ",\"timeout_ms\":%u,\"per_try_timeout_ms\":%u,\"backends\":[",
			  r->timeout_ms, r->per_try_timeout_ms);
			for (int k = 0; k < r->n_backends; k++) {
				char name[2 * CONFIG_MAX_NAME + 2];

				snprintf(name, sizeof(name), "%s/%s", r->backends[k].namespace,
					 r->backends[k].name);
				P(b, "%s{\"service\":", k ? "," : "");
				json_str(b, name);
				P(b, ",\"weight\":%u}", r->backends[k].weight);
			}
			P(b, "]}");
		}
		P(b, "]}");
	}
	P(b, "]}\n");
}

/*
 * /debug/pods: the pods on this node as enrollment sees them, with the
 * service account (the pod -> identity map) and the enrolled netns.
 */
static void render_pods(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct enroll_pod *pods = NULL;
	int n = src->enroll ? enroll_pods_copy(src->enroll, &pods) : 0;

	if (n < 0) {
		b->failed = true;
		return;
	}
	P(b, "{\"enrollment\":%s,\"synced\":%s,\"pods\":[", src->enroll ? "true" : "false",
	  src->enroll && enroll_synced(src->enroll) ? "true" : "false");
	for (int i = 0; i < n; i++) {
		const struct enroll_pod *p = &pods[i];

		P(b, "%s{\"namespace\":", i ? "," : "");
		json_str(b, p->ns);
		P(b, ",\"name\":");
		json_str(b, p->name);
		P(b, ",\"uid\":");
		json_str(b, p->uid);
		P(b, ",\"service_account\":");
		json_str(b, p->service_account);
		P(b, ",\"state\":\"%s\",\"host_network\":%s,\"netns_cookie\":%llu,\"ips\":[",
		  enroll_state_name(p->state), p->host_network ? "true" : "false",
		  (unsigned long long)p->cookie);
		for (int k = 0; k < p->n_ips; k++) {
			P(b, "%s", k ? "," : "");
			json_addr(b, &p->ips[k]);
		}
		P(b, "]}");
	}
	P(b, "]}\n");
	free(pods);
}

/*
 * /debug/identity: the identity source, the anchors' state, and per
 * service account its SPIFFE ID, the held certificate's expiry, the next
 * request and the last error.
 */
static void render_identity(const struct metrics_sources *src, struct metrics_buf *b)
{
	struct id_status *st = NULL;
	struct identity_stats stats;
	char aerr[ID_MAX_ERROR];
	int n;

	if (!src->identity) {
		P(b, "{\"identity\":false,\"accounts\":[]}\n");
		return;
	}
	n = identity_status(src->identity, &st);
	if (n < 0) {
		b->failed = true;
		return;
	}
	identity_get_stats(src->identity, &stats);
	identity_anchors_error(src->identity, aerr, sizeof(aerr));
	P(b, "{\"identity\":true,\"source\":\"%s\",\"trust_domain\":",
	  identity_source_name(src->identity));
	json_str(b, id_store_trust_domain(identity_store(src->identity)));
	P(b, ",\"anchors\":%llu,\"anchors_error\":", (unsigned long long)stats.anchors);
	json_str(b, aerr);
	P(b, ",\"now\":%lld,\"accounts\":[", (long long)time(NULL));
	for (int i = 0; i < n; i++) {
		const struct id_status *a = &st[i];

		P(b, "%s{\"namespace\":", i ? "," : "");
		json_str(b, a->ns);
		P(b, ",\"service_account\":");
		json_str(b, a->sa);
		P(b, ",\"spiffe_id\":");
		json_str(b, a->spiffe_id);
		P(b, ",\"wanted\":%s,\"not_after\":%lld,\"next_ms\":%lld,\"failures\":%u,"
		     "\"last_ok\":%lld,\"last_error\":",
		  a->wanted ? "true" : "false", (long long)a->not_after, (long long)a->next_ms,
		  a->failures, (long long)a->last_ok);
		json_str(b, a->last_error);
		P(b, "}");
	}
	P(b, "]}\n");
	free(st);
}

static void json_rule(struct metrics_buf *b, const struct policy_rule *r)
{
	P(b, "{\"name\":");
	json_str(b, r->name);
	P(b, ",\"namespace\":");
	json_str(b, r->namespace);
	P(b, ",\"service\":");
	json_str(b, r->service);
	P(b, ",\"ports\":[");
	for (int i = 0; i < r->n_ports; i++)
		P(b, "%s%u", i ? "," : "", r->ports[i]);
	P(b, "],\"action\":\"%s\",\"from\":[", r->action == POLICY_DENY ? "deny" : "allow");
	for (int i = 0; i < r->n_from; i++) {
		const struct policy_peer *pe = &r->from[i];
		char who[POLICY_MAX_ID + 2 * POLICY_MAX_LABEL + 16];

		switch (pe->kind) {
		case POLICY_PEER_AUTHENTICATED:
			snprintf(who, sizeof(who), "*");
			break;
		case POLICY_PEER_UNAUTHENTICATED:
			snprintf(who, sizeof(who), "unauthenticated");
			break;
		case POLICY_PEER_NAMESPACE:
			snprintf(who, sizeof(who), "namespace:%s", pe->ns);
			break;
		case POLICY_PEER_SERVICE_ACCOUNT:
			snprintf(who, sizeof(who), "%s/%s", pe->ns, pe->sa);
			break;
		default:
			snprintf(who, sizeof(who), "%s", pe->id);
			break;
		}
		P(b, "%s", i ? "," : "");
		json_str(b, who);
	}
	P(b, "],\"requests\":[");
	for (int i = 0; i < r->n_to; i++) {
		const struct policy_request_match *m = &r->to[i];

		P(b, "%s{\"methods\":[", i ? "," : "");
		for (int k = 0; k < m->n_methods; k++) {
			P(b, "%s", k ? "," : "");
			json_str(b, m->methods[k]);
		}
		P(b, "],\"path\":");
		json_str(b, m->path_kind == POLICY_PATH_ANY ? "" : m->path);
		P(b, ",\"path_match\":\"%s\"}",
		  m->path_kind == POLICY_PATH_EXACT	 ? "exact"
		  : m->path_kind == POLICY_PATH_PREFIX ? "prefix"
						       : "any");
	}
	P(b, "],\"origin\":");
	json_str(b, r->origin);
	P(b, "}");
}

/* The written form of the policy in force (a copy), or an empty one; 0 or -ENOMEM. */
static int policy_written(const struct config *cfg, struct policy_doc *doc)
{
	memset(doc, 0, sizeof(*doc));
	if (!cfg || !cfg->policy)
		return 0;
	return policy_set_written(cfg->policy, doc) == -ENOMEM ? -ENOMEM : 0;
}

/*
 * /debug/policy: the rules and defaults in force, the decisions per series
 * and the newest decisions of every worker (recording/policy_stats.h).
 */
static void render_policy(const struct metrics_live *lv, struct metrics_buf *b)
{
	const struct config *cfg = lv->cfg;
	struct policy_stats_snapshot snap;
	struct policy_doc doc;

	if (policy_written(cfg, &doc) || proxy_policy_snapshot(lv->proxy, &snap)) {
		policy_doc_free(&doc);
		b->failed = true;
		return;
	}
	P(b, "{\"policy\":%s,\"trust_domain\":", cfg && cfg->policy ? "true" : "false");
	json_str(b, cfg && cfg->policy ? policy_set_trust_domain(cfg->policy) : "");
	P(b, ",\"mesh_default\":\"%s\",\"rules\":[",
	  policy_default_name(doc.mesh_default ? doc.mesh_default : POLICY_DEFAULT_ALLOW));
	for (int i = 0; i < doc.n_rules; i++) {
		P(b, "%s", i ? "," : "");
		json_rule(b, &doc.rules[i]);
	}
	P(b, "],\"defaults\":[");
	for (int i = 0; i < doc.n_defaults; i++) {
		const struct policy_default_rule *df = &doc.defaults[i];

		P(b, "%s{\"namespace\":", i ? "," : "");
		json_str(b, df->namespace);
		P(b, ",\"service\":");
		json_str(b, df->service);
		P(b, ",\"default\":\"%s\",\"origin\":", policy_default_name(df->def));
		json_str(b, df->origin);
		P(b, "}");
	}
	P(b, "],\"decisions\":[");
	for (size_t i = 0; i < snap.n_rows; i++) {
		const struct policy_stats_row *r = &snap.rows[i];

		P(b, "%s{\"namespace\":", i ? "," : "");
		json_str(b, r->ns);
		P(b, ",\"service\":");
		json_str(b, r->service);
		P(b, ",\"policy\":");
		json_str(b, r->policy);
		P(b, ",\"decision\":\"%s\",\"count\":%llu}", r->allow ? "allow" : "deny",
		  (unsigned long long)r->count);
	}
	P(b, "],\"overflow\":{\"allow\":%llu,\"deny\":%llu},\"recent\":[",
	  (unsigned long long)snap.overflow[1], (unsigned long long)snap.overflow[0]);
	for (size_t i = 0; i < snap.n_events; i++) {
		const struct policy_event *e = &snap.events[i];

		P(b, "%s{\"time_ms\":%lld,\"caller\":", i ? "," : "", (long long)e->time_ms);
		json_str(b, e->caller[0] ? e->caller : "unauthenticated");
		P(b, ",\"namespace\":");
		json_str(b, e->ns);
		P(b, ",\"service\":");
		json_str(b, e->service);
		P(b, ",\"port\":%u,\"method\":", e->port);
		json_str(b, e->method);
		P(b, ",\"path\":");
		json_str(b, e->path);
		P(b, ",\"decision\":\"%s\",\"reason\":", e->allow ? "allow" : "deny");
		json_str(b, e->reason);
		P(b, "}");
	}
	P(b, "]}\n");
	policy_stats_snapshot_free(&snap);
	policy_doc_free(&doc);
}

/* The written default that decides for ns/svc, and where it is written. */
static const char *default_source(const struct policy_doc *doc, const char *ns, const char *svc,
				  char *buf, size_t len)
{
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < doc->n_defaults; i++) {
			const struct policy_default_rule *df = &doc->defaults[i];

			if (!strcmp(df->namespace, ns) && !strcmp(df->service, pass ? "" : svc)) {
				snprintf(buf, len, "the default of %s%s%s (%s)", ns, pass ? "" : "/",
					 pass ? "" : svc, df->origin);
				return buf;
			}
		}
	snprintf(buf, len, "the mesh's default%s", doc->mesh_default ? "" : " (nothing written: allow)");
	return buf;
}

/*
 * /debug/policy/check?src=..&dst=..[&port=..][&method=..&path=..]: what
 * the policy in force decides for that call (policy_check.h). -EINVAL with
 * the reason in b for a bad query.
 */
static int render_policy_check(const struct metrics_live *lv, const char *query,
			       struct metrics_buf *b)
{
	const struct config *cfg = lv->cfg;
	const char *td = cfg && cfg->policy ? policy_set_trust_domain(cfg->policy)
			 : cfg			? cfg->identity.trust_domain
						: "";
	const struct config_service *svc = NULL;
	char err[256], why[POLICY_MAX_ORIGIN + 3 * POLICY_MAX_LABEL + 128], npath[POLICY_MAX_PATH + 1];
	struct policy_check c;
	struct policy_caller caller;
	struct policy_request rq;
	struct policy_decision d;
	struct policy_doc doc;
	const char *note = "";

	if (policy_check_parse(query, td, &c, err, sizeof(err))) {
		P(b, "%s\n", err);
		return -EINVAL;
	}
	for (int i = 0; cfg && i < cfg->n_services && !svc; i++)
		if (!strcmp(cfg->services[i]->namespace, c.dst_ns) &&
		    !strcmp(cfg->services[i]->name, c.dst_service))
			svc = cfg->services[i];
	if (!c.port) {
		if (!svc || svc->n_ports != 1) {
			P(b, "dst: give a port (%s/%s:PORT): %s\n", c.dst_ns, c.dst_service,
			  svc ? "the service has several" : "the service is not in the config");
			return -EINVAL;
		}
		c.port = svc->ports[0].port;
	} else if (svc) {
		bool found = false;

		for (int i = 0; i < svc->n_ports; i++)
			found |= svc->ports[i].port == c.port;
		if (!found) {
			P(b, "dst: %s/%s has no port %u\n", c.dst_ns, c.dst_service, c.port);
			return -EINVAL;
		}
	}
	if (!svc)
		note = "the service is not in the config: decided by name";
	policy_check_caller(&c, &caller);
	if (c.request) {
		size_t n = http_routes_normalize_path(c.path, strlen(c.path), npath, sizeof(npath));

		if (!n) {
			P(b, "path: \"%.80s\" does not normalise (docs/proxy.md, \"Routes\")\n",
			  c.path);
			return -EINVAL;
		}
		rq = (struct policy_request){.method = c.method,
					     .method_len = strlen(c.method),
					     .path = npath,
					     .path_len = n};
	}
	if (policy_written(cfg, &doc)) {
		b->failed = true;
		return -ENOMEM;
	}
	if (!cfg || !cfg->policy) {
		d = (struct policy_decision){.allow = true, .reason = "default-allow"};
		snprintf(why, sizeof(why), "no policy is written: every call is allowed");
	} else if (!caller.authenticated &&
		   config_mtls_mode_for(&cfg->mtls, c.dst_ns, c.dst_service,
					svc ? svc->mtls_mode : 0) == CONFIG_MTLS_STRICT) {
		d = (struct policy_decision){.allow = false, .reason = "mtls-strict"};
		snprintf(why, sizeof(why), "mtls strict refuses unauthenticated callers");
	} else {
		policy_decide(policy_lookup(cfg->policy, c.dst_ns, c.dst_service), c.dst_ns, c.port,
			      &caller, c.request ? &rq : NULL, &d);
		if (d.rule)
			snprintf(why, sizeof(why), "%s rule %s (%s) matches", 
				 d.rule->action == POLICY_DENY ? "deny" : "allow", d.rule->name,
				 d.rule->origin);
		else {
			char src[POLICY_MAX_ORIGIN + 2 * POLICY_MAX_LABEL + 64];

			snprintf(why, sizeof(why), "no rule matches; %s is %s",
				 default_source(&doc, c.dst_ns, c.dst_service, src, sizeof(src)),
				 policy_default_name(d.def));
		}
	}
	P(b, "{\"decision\":\"%s\",\"reason\":", d.allow ? "allow" : "deny");
	json_str(b, d.reason);
	P(b, ",\"rule\":");
	if (d.rule)
		json_rule(b, d.rule);
	else
		P(b, "null");
	P(b, ",\"why\":");
	json_str(b, why);
	P(b, ",\"caller\":");
	json_str(b, c.authenticated ? c.id : "unauthenticated");
	P(b, ",\"namespace\":");
	json_str(b, c.dst_ns);
	P(b, ",\"service\":");
	json_str(b, c.dst_service);
	P(b, ",\"port\":%u,\"request\":", c.port);
	if (c.request) {
		P(b, "{\"method\":");
		json_str(b, c.method);
		P(b, ",\"path\":");
		json_str(b, npath);
		P(b, "}");
	} else {
		P(b, "null");
	}
	P(b, ",\"note\":");
	json_str(b, note[0] ? note
		     : c.request ? ""
				 : "no request given: decided as a connection (an allow rule "
				   "that lists requests does not match one)");
	P(b, "}\n");
	policy_doc_free(&doc);
	return b->failed ? -ENOMEM : 0;
}

int debug_render(const char *path, const char *query, const struct metrics_sources *src,
		 struct metrics_buf *b)
{
	void (*render)(const struct metrics_live *, struct metrics_buf *);
	struct metrics_live lv;

	if (!strcmp(path, "/debug/policy/check")) {
		int err;

		if (metrics_live_open(src->proxy, &lv))
			return -ENOMEM;
		err = render_policy_check(&lv, query ? query : "", b);
		metrics_live_close(&lv);
		return err;
	}

	if (!strcmp(path, "/debug/identity")) {
		render_identity(src, b);
		return b->failed ? -ENOMEM : 0;
	}
	if (!strcmp(path, "/debug/pods")) {
		render_pods(src, b);
		return b->failed ? -ENOMEM : 0;
	}
	if (!strcmp(path, "/debug/services"))
		render = render_services;
	else if (!strcmp(path, "/debug/endpoints"))
		render = render_endpoints;
	else if (!strcmp(path, "/debug/config"))
		render = render_config;
	else if (!strcmp(path, "/debug/policy"))
		render = render_policy;
	else
		return -ENOENT;
	if (metrics_live_open(src->proxy, &lv))
		b->failed = true;
	else
		render(&lv, b);
	metrics_live_close(&lv);
	return b->failed ? -ENOMEM : 0;
}
