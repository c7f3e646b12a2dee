// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for config_parse. Besides what ASan and UBSan catch,
 * it checks the parser's contract on every input: a refusal leaves no
 * config and a "name:line: " message; an accepted config keeps the
 * invariants the loader and the proxy rely on. Any breach aborts, so
 * libFuzzer saves the input. Built by scripts/fuzz-config.sh.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "config/config.h"

#define NAME "fuzz.yaml"

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "config_fuzz: broken invariant: %s\n", what);
		abort();
	}
}

/* A port or target port listed in proxy.opaque_ports. */
static int is_opaque(const struct config *cfg, const struct config_port *port)
{
	for (int k = 0; k < cfg->n_opaque_ports; k++) {
		if (cfg->opaque_ports[k] == port->port || cfg->opaque_ports[k] == port->target_port)
			return 1;
	}
	return 0;
}

/* The proxy's knobs: the bounds and orders the parser promises. */
static void check_proxy(const struct config *cfg)
{
	const struct config_tracing *t = &cfg->tracing;

	check(cfg->http_max_request_line <= cfg->http_max_head_bytes, "request line <= head");
	check(cfg->n_opaque_ports >= 0 && cfg->n_opaque_ports <= CONFIG_MAX_OPAQUE_PORTS,
	      "opaque port count");
	for (int k = 0; k < cfg->n_opaque_ports; k++)
		check(cfg->opaque_ports[k] != 0, "opaque port nonzero");
	check(cfg->n_http_upgrades >= 0 && cfg->n_http_upgrades <= CONFIG_MAX_HTTP_UPGRADES,
	      "upgrade count");
	for (int k = 0; k < cfg->n_http_upgrades; k++) {
		const char *u = cfg->http_upgrades[k];

		check(u[0] && strlen(u) <= CONFIG_MAX_HTTP_UPGRADE_NAME, "upgrade name length");
		for (; *u; u++)
			check(!(*u >= 'A' && *u <= 'Z') && *u != '/' && *u > ' ' && *u < 0x7f,
			      "upgrade name a lowercase token");
	}
	check(t->ring_size >= CONFIG_MIN_TRACE_RING && t->ring_size <= CONFIG_MAX_TRACE_RING &&
		  !(t->ring_size & (t->ring_size - 1)),
	      "trace ring a power of two in bounds");
	check(t->span_kind == CONFIG_SPAN_KIND_CLIENT || t->span_kind == CONFIG_SPAN_KIND_SERVER,
	      "span kind");
	check(t->batch_size >= 1 && t->batch_size <= CONFIG_MAX_TRACE_BATCH, "trace batch");
	check(t->sample_rate >= 0.0 && t->sample_rate <= 1.0, "sample rate");
	check(!cfg->k8s_proxy_url[0] || strstr(cfg->k8s_proxy_url, "://"), "proxy URL scheme");
	check(!cfg->k8s_api_server[0] || !strncmp(cfg->k8s_api_server, "https://", 8),
	      "API server is https");
}

/* identity: the bounds and rules the parser promises (docs/config.md). */
static void check_identity(const struct config *cfg)
{
	const struct config_identity *id = &cfg->identity;

	check(id->source == CONFIG_ID_SOURCE_ISSUED || id->source == CONFIG_ID_SOURCE_FILES,
	      "identity source");
	check(id->trust_domain[0] && !strchr(id->trust_domain, '/'), "trust domain a name");
	check(!strncmp(id->server_url, "https://", 8), "identity server is https");
	check(id->lifetime_s >= CONFIG_MIN_ID_LIFETIME_S && id->lifetime_s <= CONFIG_MAX_ID_LIFETIME_S,
	      "identity lifetime");
	check(id->renew_fraction >= CONFIG_MIN_ID_RENEW_FRACTION &&
		  id->renew_fraction <= CONFIG_MAX_ID_RENEW_FRACTION,
	      "renew fraction");
	check(id->renew_jitter >= 0.0 && id->renew_jitter <= CONFIG_MAX_ID_RENEW_JITTER,
	      "renew jitter");
	check(id->backoff_min_ms <= id->backoff_max_ms, "identity backoff min <= max");
	check(!id->enabled || id->source != CONFIG_ID_SOURCE_FILES || id->dir[0] == '/',
	      "files source has a dir");
	check(!id->enabled || id->source != CONFIG_ID_SOURCE_ISSUED || cfg->k8s_enroll,
	      "issued source has enrollment");
}

/* One service's resilience block and routes. */
static void check_policy(const struct config *cfg, const struct config_service *s)
{
	const struct config_resilience *r = &s->resilience;

	check(r->backoff_base_ms <= r->backoff_max_ms, "retry backoff base <= max");
	check(r->breaker_backoff_min_ms <= r->breaker_backoff_max_ms, "breaker backoff min <= max");
	check(!r->request_timeout_ms || r->per_try_timeout_ms <= r->request_timeout_ms,
	      "per try <= request");
	check(s->n_routes >= 0 && s->n_routes <= CONFIG_MAX_ROUTES, "route count");
	for (int k = 0; k < s->n_routes; k++) {
		const struct config_route *rt = &s->routes[k];

		check(!rt->timeout_ms || rt->per_try_timeout_ms <= rt->timeout_ms,
		      "route per try <= timeout");
		check(rt->n_backends >= 1 && rt->n_backends <= CONFIG_MAX_ROUTE_BACKENDS,
		      "backend count");
		check(rt->total_weight > 0 &&
			  rt->total_weight == rt->backends[rt->n_backends - 1].cum_weight,
		      "weights add up");
		for (int b = 0; b < rt->n_backends; b++) {
			const struct config_route_backend *be = &rt->backends[b];

			check(be->svc_index < (uint32_t)cfg->n_services &&
				  !strcmp(cfg->services[be->svc_index]->name, be->name) &&
				  !strcmp(cfg->services[be->svc_index]->namespace, be->namespace),
			      "backend resolved to its service");
		}
		check(rt->n_retry_statuses >= 0 &&
			  rt->n_retry_statuses <= CONFIG_MAX_RETRY_STATUSES,
		      "retry status count");
		for (int j = 0; j < rt->n_retry_statuses; j++)
			check(rt->retry_statuses[j] >= 400 && rt->retry_statuses[j] <= 599,
			      "retry status a 4xx or 5xx");
	}
}

static void check_config(const struct config *cfg)
{
	int i, v, j;

	check(!addr_is_zero(&cfg->proxy_v4) || !addr_is_zero(&cfg->proxy_v6), "a node address");
	check(addr_is_zero(&cfg->proxy_v4) || addr_is_v4(&cfg->proxy_v4), "proxy_v4 is v4");
	check(addr_is_zero(&cfg->proxy_v6) || !addr_is_v4(&cfg->proxy_v6), "proxy_v6 is v6");
	check(cfg->proxy_port != 0 && cfg->socket_mark != 0, "nonzero port and mark");
	check(cfg->pin_root[0] == '/' && cfg->cgroup[0] == '/', "absolute paths");
	check(cfg->connect_deadline_ms >= cfg->connect_timeout_ms, "deadline >= timeout");
	check(cfg->n_services >= 0 && cfg->n_services <= CONFIG_MAX_SERVICES, "service count");
	check_proxy(cfg);
	check_identity(cfg);
	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *s = cfg->services[i];

		check(s->id == (uint32_t)i, "ids in file order");
		check(s->name[0] && strlen(s->name) <= CONFIG_MAX_NAME, "name set");
		check(s->namespace[0] && strlen(s->namespace) <= CONFIG_MAX_NAME, "namespace set");
		check(s->n_vips >= 1 && s->n_vips <= CONFIG_MAX_VIPS, "vip count");
		check(s->n_ports >= 1 && s->n_ports <= CONFIG_MAX_PORTS, "port count");
		check(s->n_endpoints >= 0 && s->n_endpoints <= CONFIG_MAX_ENDPOINTS,
		      "endpoint count");
		check(s->line >= 1, "service line");
		check_policy(cfg, s);
		for (j = 0; j < s->n_ports; j++)
			check(s->ports[j].declared || !is_opaque(cfg, &s->ports[j]) ||
				  s->ports[j].protocol == CONFIG_PROTO_TCP,
			      "an undeclared opaque port is TCP");
		for (j = 0; j < s->n_endpoints; j++)
			check(s->endpoints[j].line >= 1 && !addr_is_zero(&s->endpoints[j].addr),
			      "endpoint");
		for (v = 0; v < s->n_vips; v++) {
			for (j = 0; j < s->n_ports; j++) {
				const struct config_port *port = NULL;

				check(s->ports[j].port && s->ports[j].target_port, "ports nonzero");
				check(s->ports[j].mode != CONFIG_MODE_KERNEL ||
					      s->ports[j].protocol == CONFIG_PROTO_TCP,
				      "kernel mode only on opaque TCP ports");
				/* (VIP, port) is unique, so the lookup finds this very one. */
				check(config_find_service(cfg, &s->vips[v], htons(s->ports[j].port),
							  &port) == s &&
					  port == &s->ports[j],
				      "find_service round trip");
			}
		}
	}
}

/*
 * Variables for ${NAME} references to find, so the fuzzer reaches the
 * substitution's every branch: a node address, a port, an empty value
 * (defaults) and one long enough that two of them pass the bound.
 */
static void set_fuzz_env(void)
{
	static char big[3001];

	memset(big, 'a', sizeof(big) - 1);
	setenv("SHOAL_FUZZ_V4", "10.0.0.1", 1);
	setenv("SHOAL_FUZZ_PORT", "80", 1);
	setenv("SHOAL_FUZZ_EMPTY", "", 1);
	setenv("SHOAL_FUZZ_BIG", big, 1);
	unsetenv("SHOAL_FUZZ_UNSET");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	set_fuzz_env();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = (struct config *)1;
	char err[256];
	int ret;

	memset(err, 'X', sizeof(err));
	ret = config_parse(NAME, (const char *)data, size, &cfg, err, sizeof(err));
	if (ret == 0) {
		check(cfg != NULL, "config on success");
		check_config(cfg);
		config_free(cfg);
		return 0;
	}
	check(ret == -EINVAL || ret == -ENOMEM, "-EINVAL or -ENOMEM");
	check(cfg == NULL, "no config on failure");
	check(memchr(err, '\0', sizeof(err)) != NULL, "message terminated");
	if (ret == -EINVAL)
		check(!strncmp(err, NAME ":", strlen(NAME ":")) && strstr(err, ": ") != NULL,
		      "message is name:line: field: problem");
	return 0;
}
