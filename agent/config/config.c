// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The config's entry points: defaults, config_parse and config_load (the
 * walk of config_walk.c over the schema of config_node.c and
 * config_services.c, then the checks of config_checks.c), free, copy and
 * lookup.
 */
#include "config/config.h"
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "balance/p2c.h"
#include "balance/peak_ewma.h"
#include "common/addr.h"
#include "config/config_int.h"
#include "resilience/backoff.h"
#include "resilience/breaker.h"
#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

/* One place for every resilience default: the modules' own constants. */
void config_resilience_default(struct config_resilience *r)
{
	memset(r, 0, sizeof(*r));
	r->default_rtt_ms = PEAK_EWMA_DEFAULT_RTT_NS / 1000000;
	r->decay_ms = PEAK_EWMA_DEFAULT_TAU_NS / 1000000;
	r->failure_penalty_ms = PEAK_EWMA_DEFAULT_FAILURE_PENALTY_NS / 1000000;
	r->retry_after_cap_ms = PEAK_EWMA_DEFAULT_RETRY_AFTER_CAP_NS / 1000000;
	r->penalty_ms = PEAK_EWMA_DEFAULT_PENALTY_DURATION_NS / 1000000;
	r->explore_after_ms = P2C_DEFAULT_EXPLORE_AFTER_NS / 1000000;
	r->budget_ratio_pct = RETRY_BUDGET_DEFAULT_RATIO_MILLI / 10;
	r->budget_min_per_s = RETRY_BUDGET_DEFAULT_MIN_PER_S;
	r->budget_window_ms = RETRY_BUDGET_DEFAULT_TTL_NS / 1000000;
	r->max_retries = RETRY_DEFAULT_MAX_RETRIES;
	r->max_body_bytes = RETRY_DEFAULT_MAX_BODY_BYTES;
	r->backoff_base_ms = BACKOFF_RETRY_BASE_NS / 1000000;
	r->backoff_max_ms = BACKOFF_RETRY_MAX_NS / 1000000;
	r->connect_any_method = true;
	r->consecutive_failures = BREAKER_DEFAULT_CONSECUTIVE_FAILURES;
	r->breaker_backoff_min_ms = BREAKER_DEFAULT_BACKOFF_MIN_NS / 1000000;
	r->breaker_backoff_max_ms = BREAKER_DEFAULT_BACKOFF_MAX_NS / 1000000;
	r->jitter_pct = (uint32_t)(BREAKER_DEFAULT_JITTER * 100);
	r->success_rate_pct = BREAKER_DEFAULT_SUCCESS_RATE_PCT;
	r->success_rate_window_ms = BREAKER_DEFAULT_SUCCESS_RATE_WINDOW_NS / 1000000;
	r->success_rate_min_requests = BREAKER_DEFAULT_SUCCESS_RATE_MIN_REQUESTS;
	r->max_ejection_pct = BREAKER_DEFAULT_MAX_EJECTION_PCT;
	r->fail_fast_ms = CONFIG_DEFAULT_FAIL_FAST_MS;
}

static void config_set_defaults(struct config *cfg)
{
	static const uint16_t default_opaque_ports[] = CONFIG_DEFAULT_OPAQUE_PORTS;

	cfg->proxy_port = SHOAL_DEFAULT_PROXY_PORT;
	snprintf(cfg->pin_root, sizeof(cfg->pin_root), "%s", SHOAL_DEFAULT_PIN_ROOT);
	snprintf(cfg->cgroup, sizeof(cfg->cgroup), "%s", CONFIG_DEFAULT_CGROUP);
	cfg->shortcut = true;
	cfg->socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg->failopen_after_ms = CONFIG_DEFAULT_FAILOPEN_AFTER_MS;
	cfg->workers = 0;
	cfg->connect_timeout_ms = CONFIG_DEFAULT_CONNECT_TIMEOUT_MS;
	cfg->connect_deadline_ms = CONFIG_DEFAULT_CONNECT_DEADLINE_MS;
	cfg->buffer_bytes = CONFIG_DEFAULT_BUFFER_BYTES;
	cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
	cfg->max_buffer_memory_mib = CONFIG_DEFAULT_MAX_BUFFER_MEMORY_MIB;
	cfg->max_connections_per_client = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
	cfg->detect_timeout_ms = CONFIG_DEFAULT_DETECT_TIMEOUT_MS;
	cfg->n_opaque_ports = ARRAY_SIZE(default_opaque_ports);
	memcpy(cfg->opaque_ports, default_opaque_ports, sizeof(default_opaque_ports));
	cfg->idle_timeout_ms = CONFIG_DEFAULT_IDLE_TIMEOUT_MS;
	cfg->drain_timeout_ms = CONFIG_DEFAULT_DRAIN_TIMEOUT_MS;
	cfg->http_max_request_line = CONFIG_DEFAULT_HTTP_MAX_REQUEST_LINE;
	cfg->http_max_head_bytes = CONFIG_DEFAULT_HTTP_MAX_HEAD_BYTES;
	cfg->http_max_headers = CONFIG_DEFAULT_HTTP_MAX_HEADERS;
	cfg->http_pool_idle_timeout_ms = CONFIG_DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS;
	cfg->http_pool_max_idle_per_endpoint = CONFIG_DEFAULT_HTTP_POOL_MAX_IDLE;
	cfg->http_request_body_timeout_ms = CONFIG_DEFAULT_HTTP_BODY_TIMEOUT_MS;
	cfg->http_response_head_timeout_ms = CONFIG_DEFAULT_HTTP_HEAD_TIMEOUT_MS;
	cfg->http_forwarded_for = true;
	cfg->http_forwarded_proto = true;
	cfg->http_request_id = true;
	cfg->http_timeout_header = true;
	snprintf(cfg->http_upgrades[0], sizeof(cfg->http_upgrades[0]), "%s",
		 CONFIG_DEFAULT_HTTP_UPGRADE);
	cfg->n_http_upgrades = 1;
	cfg->http2.max_concurrent_streams = CONFIG_DEFAULT_H2_MAX_STREAMS;
	cfg->http2.max_header_list_bytes = CONFIG_DEFAULT_H2_MAX_HEADER_LIST;
	cfg->http2.hpack_table_bytes = CONFIG_DEFAULT_H2_HPACK_TABLE;
	cfg->http2.stream_window_bytes = CONFIG_DEFAULT_H2_STREAM_WINDOW;
	cfg->http2.session_window_bytes = CONFIG_DEFAULT_H2_SESSION_WINDOW;
	cfg->http2.max_pending_acks = CONFIG_DEFAULT_H2_MAX_PENDING_ACKS;
	cfg->http2.reset_burst = CONFIG_DEFAULT_H2_RESET_BURST;
	cfg->http2.reset_rate = CONFIG_DEFAULT_H2_RESET_RATE;
	cfg->http2.max_continuations = CONFIG_DEFAULT_H2_MAX_CONTINUATIONS;
	cfg->http2.max_sent_resets = CONFIG_DEFAULT_H2_MAX_SENT_RESETS;
	cfg->http2.stall_timeout_ms = CONFIG_DEFAULT_H2_STALL_TIMEOUT_MS;
	cfg->http2.grpc_head_hold_ms = CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS;
	cfg->k8s_backoff_max_ms = CONFIG_DEFAULT_K8S_BACKOFF_MAX_MS;
	cfg->k8s_policies = true;
	snprintf(cfg->k8s_enroll_cgroup_root, sizeof(cfg->k8s_enroll_cgroup_root), "%s",
		 CONFIG_DEFAULT_ENROLL_CGROUP_ROOT);
	snprintf(cfg->k8s_enroll_cni_socket, sizeof(cfg->k8s_enroll_cni_socket), "%s",
		 CONFIG_DEFAULT_CNI_SOCKET);
	cfg->k8s_enroll_resync_ms = CONFIG_DEFAULT_ENROLL_RESYNC_MS;
	snprintf(cfg->k8s_enroll_netns_dir, sizeof(cfg->k8s_enroll_netns_dir), "%s",
		 CONFIG_DEFAULT_ENROLL_NETNS_DIR);
	/* tracing: the defaults the tracer and exporter apply too (docs/tracing.md). */
	cfg->tracing.enabled = false;
	snprintf(cfg->tracing.collector_url, sizeof(cfg->tracing.collector_url), "%s",
		 CONFIG_DEFAULT_TRACE_URL);
	cfg->tracing.sample_rate = CONFIG_DEFAULT_TRACE_SAMPLE_RATE;
	cfg->tracing.span_kind = CONFIG_SPAN_KIND_CLIENT;
	snprintf(cfg->tracing.service_name, sizeof(cfg->tracing.service_name), "%s",
		 CONFIG_DEFAULT_TRACE_SERVICE_NAME);
	cfg->tracing.ring_size = CONFIG_DEFAULT_TRACE_RING;
	cfg->tracing.batch_size = CONFIG_DEFAULT_TRACE_BATCH;
	cfg->tracing.batch_delay_ms = CONFIG_DEFAULT_TRACE_BATCH_DELAY_MS;
	cfg->tracing.timeout_ms = CONFIG_DEFAULT_TRACE_TIMEOUT_MS;
	snprintf(cfg->admin.listen, sizeof(cfg->admin.listen), "%s", CONFIG_DEFAULT_ADMIN_LISTEN);
	/* identity: off until the section is written (docs/identity.md). */
	snprintf(cfg->identity.trust_domain, sizeof(cfg->identity.trust_domain), "%s",
		 CONFIG_DEFAULT_TRUST_DOMAIN);
	snprintf(cfg->identity.server_url, sizeof(cfg->identity.server_url), "%s",
		 CONFIG_DEFAULT_ID_SERVER_URL);
	snprintf(cfg->identity.token_file, sizeof(cfg->identity.token_file), "%s",
		 CONFIG_DEFAULT_ID_TOKEN_FILE);
	snprintf(cfg->identity.anchors_file, sizeof(cfg->identity.anchors_file), "%s",
		 CONFIG_DEFAULT_ID_ANCHORS_FILE);
	cfg->identity.lifetime_s = CONFIG_DEFAULT_ID_LIFETIME_S;
	cfg->identity.renew_fraction = CONFIG_DEFAULT_ID_RENEW_FRACTION;
	cfg->identity.renew_jitter = CONFIG_DEFAULT_ID_RENEW_JITTER;
	cfg->identity.backoff_min_ms = CONFIG_DEFAULT_ID_BACKOFF_MIN_MS;
	cfg->identity.backoff_max_ms = CONFIG_DEFAULT_ID_BACKOFF_MAX_MS;
	cfg->identity.drop_grace_ms = CONFIG_DEFAULT_ID_DROP_GRACE_MS;
	cfg->identity.poll_ms = CONFIG_DEFAULT_ID_POLL_MS;
	cfg->identity.timeout_ms = CONFIG_DEFAULT_ID_TIMEOUT_MS;
	config_mtls_defaults(&cfg->mtls);
}

/*
 * Parse len bytes of text (not necessarily NUL-terminated). On success 0
 * and a new *out; on failure *out is NULL, err holds one line and the
 * result is -EINVAL (bad file) or -ENOMEM.
 */
int config_parse(const char *name, const char *text, size_t len, struct config **out, char *err,
		 size_t errlen)
{
	struct cfg_parser p = {
	    .name = name, .text = text, .len = len, .err = err, .errlen = errlen};
	const char *nul;
	struct config *cfg;
	int ret;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		text = "";
		p.text = text;
		len = 0;
	}
	if (len > CONFIG_MAX_FILE_BYTES)
		return cp_fail(&p, 1, "file is larger than %u bytes", CONFIG_MAX_FILE_BYTES);
	/* libyaml would stop at a NUL with a vaguer message; a NUL means a binary or truncated
	 * file. */
	nul = memchr(text, '\0', len);
	if (nul) {
		int line = 1;

		for (; text < nul && line < INT_MAX; text++)
			line += *text == '\n';
		return cp_fail(&p, line, "NUL byte in input");
	}

	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return cp_oom(&p);
	snprintf(cfg->path, sizeof(cfg->path), "%s", name);
	config_set_defaults(cfg);
	p.cfg = cfg;
	if (!yaml_parser_initialize(&p.yaml)) {
		free(cfg);
		return cp_oom(&p);
	}
	yaml_parser_set_input_string(&p.yaml, (const unsigned char *)p.text, len);

	ret = cp_document(&p);
	if (!ret)
		ret = check_config(&p);
	if (!ret)
		ret = config_policy_compile(&p);
	policy_doc_free(&p.policy);

	if (p.have_ev)
		yaml_event_delete(&p.ev);
	yaml_parser_delete(&p.yaml);
	if (ret) {
		config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}

/*
 * Read the file at path (at most CONFIG_MAX_FILE_BYTES + 1 bytes, enough
 * for config_parse to refuse a larger one) and parse it. Returns 0 and
 * *out, or -errno with "path: cannot read: reason" or config_parse's message.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	const size_t limit = (size_t)CONFIG_MAX_FILE_BYTES + 1;
	size_t len = 0, cap = 0;
	char *buf = NULL, *nbuf;
	ssize_t n;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto err_read;
	}
	while (len < limit) {
		if (len == cap) {
			cap = cap ? 2 * cap : 65536;
			if (cap > limit)
				cap = limit;
			nbuf = realloc(buf, cap);
			if (!nbuf) {
				ret = -ENOMEM;
				goto err_close;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto err_close;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	ret = config_parse(path, buf, len, out, err, errlen);
	free(buf);
	return ret;

err_close:
	close(fd);
	free(buf);
err_read:
	if (err && errlen)
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-ret));
	return ret;
}

/* The strings a service's routes own, then the routes. */
static void free_routes(struct config_service *svc)
{
	int r, k;

	for (r = 0; r < svc->n_routes; r++) {
		struct config_route *route = &svc->routes[r];

		for (k = 0; k < route->n_hosts; k++)
			free(route->hosts[k].name);
		for (k = 0; k < route->n_headers; k++) {
			free(route->headers[k].name);
			free(route->headers[k].value);
		}
		free(route->path);
	}
	free(svc->routes);
}

uint64_t config_service_serial(void)
{
	static atomic_uint_fast64_t last;

	return atomic_fetch_add_explicit(&last, 1, memory_order_relaxed) + 1;
}

struct config_service *config_service_new(uint32_t id)
{
	struct config_service *s = calloc(1, sizeof(*s));

	if (s) {
		s->id = id;
		s->serial = config_service_serial();
		atomic_init(&s->refs, 1);
	}
	return s;
}

void config_service_get(const struct config_service *s)
{
	/* refs is the one field a shared service changes: cast it writable. */
	atomic_fetch_add_explicit(&((struct config_service *)s)->refs, 1, memory_order_relaxed);
}

void config_service_put(const struct config_service *cs)
{
	struct config_service *s = (struct config_service *)cs;

	/* acq_rel: the freeing thread sees every other holder's last read. */
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(s->endpoints);
	free_routes(s);
	free(s->strings);
	free(s);
}

/* Drops cfg's references to its services, then cfg; NULL is fine. */
void config_free(struct config *cfg)
{
	int i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n_services; i++)
		config_service_put(cfg->services[i]);
	free(cfg->services);
	policy_set_put(cfg->policy);
	policy_set_put(cfg->policy_file);
	config_nodes_put(cfg->nodes_learned);
	free(cfg);
}

char *config_dup_bytes(const char *s, size_t n)
{
	char *d;

	if (!s)
		return NULL;
	d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* dst = src's routes, every string duplicated. 0 or -ENOMEM (dst then
 * owns what was copied, for free_routes). */
static int copy_routes(struct config_service *dst, const struct config_service *src)
{
	dst->routes = NULL;
	dst->n_routes = 0;
	if (!src->n_routes)
		return 0;
	dst->routes = calloc((size_t)src->n_routes, sizeof(*dst->routes));
	if (!dst->routes)
		return -ENOMEM;
	for (int r = 0; r < src->n_routes; r++) {
		const struct config_route *s = &src->routes[r];
		struct config_route *d = &dst->routes[r];

		*d = *s;
		d->n_hosts = d->n_headers = 0;
		d->path = NULL;
		dst->n_routes = r + 1;
		if (s->path && !(d->path = config_dup_bytes(s->path, s->path_len)))
			return -ENOMEM;
		for (int k = 0; k < s->n_hosts; k++) {
			d->hosts[k].name = config_dup_bytes(s->hosts[k].name, s->hosts[k].len);
			if (!d->hosts[k].name)
				return -ENOMEM;
			d->n_hosts = k + 1;
		}
		for (int k = 0; k < s->n_headers; k++) {
			d->headers[k].name = config_dup_bytes(s->headers[k].name, s->headers[k].name_len);
			d->headers[k].value =
			    config_dup_bytes(s->headers[k].value, s->headers[k].value_len);
			d->n_headers = k + 1;
			if (!d->headers[k].name || !d->headers[k].value)
				return -ENOMEM;
		}
	}
	return 0;
}

/* p, a pointer into src's string table, moved into dst's. */
static const char *rebase(const char *p, const struct config_service *src,
			  const struct config_service *dst)
{
	return p ? dst->strings + (p - src->strings) : NULL;
}

struct config_service *config_service_dup(const struct config_service *src)
{
	struct config_service *d = malloc(sizeof(*d));

	if (!d)
		return NULL;
	*d = *src;
	atomic_init(&d->refs, 1);
	d->serial = config_service_serial();
	d->endpoints = NULL;
	d->strings = NULL;
	d->routes = NULL;
	d->n_routes = 0;
	if (src->strings && !(d->strings = config_dup_bytes(src->strings, src->strings_len)))
		goto oom;
	if (src->n_endpoints) {
		d->endpoints = malloc((size_t)src->n_endpoints * sizeof(*d->endpoints));
		if (!d->endpoints)
			goto oom;
		for (int e = 0; e < src->n_endpoints; e++) {
			d->endpoints[e] = src->endpoints[e];
			d->endpoints[e].zone = rebase(src->endpoints[e].zone, src, d);
			d->endpoints[e].node = rebase(src->endpoints[e].node, src, d);
			d->endpoints[e].identity = rebase(src->endpoints[e].identity, src, d);
		}
	}
	if (copy_routes(d, src))
		goto oom;
	return d;
oom:
	config_service_put(d);
	return NULL;
}

struct config_service *config_service_mut(struct config *cfg, int i)
{
	struct config_service *s = cfg->services[i];

	/* acquire: pairs with put's release, so a copy sees the last writer's fields. */
	if (atomic_load_explicit(&s->refs, memory_order_acquire) == 1) {
		/* Its own, but maybe cached by what it was (a view): now it is not. */
		s->serial = config_service_serial();
		return s;
	}
	s = config_service_dup(s);
	if (s)
		config_service_set(cfg, i, s);
	return s;
}

void config_service_set(struct config *cfg, int i, struct config_service *s)
{
	config_service_put(cfg->services[i]);
	cfg->services[i] = s;
}

int config_copy(const struct config *src, int n_services, struct config **out)
{
	struct config *cfg;
	int i;

	if (n_services < src->n_services)
		return -EINVAL;
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	*cfg = *src;
	policy_set_get(cfg->policy); /* immutable: shared, as the services are */
	policy_set_get(cfg->policy_file);
	config_nodes_get(cfg->nodes_learned);
	cfg->n_services = 0;
	cfg->services = n_services ? calloc((size_t)n_services, sizeof(*cfg->services)) : NULL;
	if (n_services && !cfg->services)
		goto oom;
	/* Shared, not copied: a service is immutable once in a config. */
	for (i = 0; i < src->n_services; i++) {
		config_service_get(src->services[i]);
		cfg->services[cfg->n_services++] = src->services[i];
	}
	for (; i < n_services; i++) {
		cfg->services[i] = config_service_new((uint32_t)i);
		if (!cfg->services[i])
			goto oom;
		cfg->n_services = i + 1; /* so that config_free drops what it got */
	}
	*out = cfg;
	return 0;
oom:
	config_free(cfg);
	return -ENOMEM;
}

/*
 * The service claiming (vip, port_be), or NULL. A linear scan: it runs when
 * the proxy accepts, and the datapath already resolved the service, so
 * this is off the per-packet path.
 */
const struct config_service *config_find_service(const struct config *cfg,
						 const struct shoal_addr *vip, uint16_t port_be,
						 const struct config_port **port_out)
{
	uint16_t port = ntohs(port_be);
	int i, v, j;

	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *svc = cfg->services[i];

		for (v = 0; v < svc->n_vips; v++) {
			if (!addr_equal(&svc->vips[v], vip))
				continue;
			for (j = 0; j < svc->n_ports; j++) {
				if (svc->ports[j].port != port)
					continue;
				if (port_out)
					*port_out = &svc->ports[j];
				return svc;
			}
		}
	}
	return NULL;
}
