// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The config parser: services, their ports, endpoints, routes and
 * resilience, and the checks across services.
 */
#include "config/config_test.h"

Test(config, vip_port_claimed_twice)
{
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips: [10.96.0.10, \"fd00:96::10\"]\n"
			    "    ports: [{port: 80}, {port: 443}]\n"
			    "  - name: web2\n"
			    "    vips: [\"fd00:96::10\"]\n"
			    "    ports:\n"
			    "      - port: 8080\n"
			    "      - port: 443\n",
		       "t.yaml:11: services[1].ports[1].port: [fd00:96::10]:443 is already claimed "
		       "by services[0] (default/web, line 4)");
	/* Within one service: the same port twice, the same VIP twice. */
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips: [10.96.0.10]\n"
			    "    ports:\n"
			    "      - port: 80\n"
			    "      - port: 80\n"
			    "        target_port: 81\n",
		       "t.yaml:8: services[0].ports[1].port: duplicate port 80 (also ports[0] at "
		       "line 7)");
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips:\n"
			    "      - 10.96.0.10\n"
			    "      - 10.96.0.10\n",
		       "t.yaml:7: services[0].vips[1]: duplicate VIP (also vips[0])");
}

Test(config, same_port_on_other_vips_is_fine)
{
	cr_assert_eq(
	    parse(NODE
		  "services:\n"
		  "  - {name: a, vips: [10.96.0.10], ports: [{port: 80}]}\n"
		  "  - {name: b, vips: [10.96.0.11], ports: [{port: 80}]}\n"
		  "  - {name: a, namespace: other, vips: [10.96.0.12], ports: [{port: 80}]}\n"),
	    0, "%s", err);
	cr_assert_eq(cfg->services[2]->id, 2);
}

Test(config, unspecified_vip)
{
	assert_refused(NODE "services:\n  - name: web\n    vips: [0.0.0.0]\n",
		       "t.yaml:5: services[0].vips[0]: must not be the unspecified address, got "
		       "0.0.0.0");
	assert_refused(
	    NODE "services:\n  - name: web\n    vips: [\"::\"]\n",
	    "t.yaml:5: services[0].vips[0]: must not be the unspecified address, got ::");
	assert_refused(NODE
		       "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports: [{port: 80}]\n"
		       "    endpoints:\n      - address: 0.0.0.0\n",
		       "t.yaml:8: services[0].endpoints[0].address: must not be the unspecified");
}

/* Addresses no endpoint can have are refused, naming the line. */
Test(config, endpoint_address_unroutable)
{
	static const struct {
		const char *addr, *why;
	} cases[] = {
	    {"127.0.0.1", "loopback"},	       {"\"::1\"", "loopback"},
	    {"169.254.169.254", "link-local"}, {"\"fe80::1\"", "link-local"},
	    {"224.0.0.1", "multicast"},	       {"\"ff02::1\"", "multicast"},
	    {"0.1.2.3", "unspecified"},	       {"255.255.255.255", "broadcast"},
	};
	char yaml[512], want[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(yaml, sizeof(yaml),
			 NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			      "    ports: [{port: 80}]\n    endpoints:\n      - address: 10.0.0.5\n"
			      "      - address: %s\n",
			 cases[i].addr);
		snprintf(want, sizeof(want),
			 "t.yaml:9: services[0].endpoints[1].address: must not be %s %s address",
			 cases[i].why[0] == 'u' ? "an" : "a", cases[i].why);
		assert_refused(yaml, want);
	}
	/* The node's own address is the operator's choice in a file. */
	cr_assert_eq(parse(NODE
			   "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			   "    ports: [{port: 80}]\n    endpoints:\n      - address: 10.0.1.1\n"),
		     0, "%s", err);
}

Test(config, duplicate_service_name)
{
	assert_refused(
	    NODE "services:\n"
		 "  - {name: web, vips: [10.96.0.10], ports: [{port: 80}]}\n"
		 "  - {name: db, vips: [10.96.0.11], ports: [{port: 80}]}\n"
		 "  - {name: web, namespace: default, vips: [10.96.0.12], ports: [{port: 80}]}\n",
	    "t.yaml:6: services[2].name: duplicate service default/web (also services[0] "
	    "at line 4)");
}

/* Appends to buf, growing it; the fixture frees it. */
static void append(size_t *len, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	buf = realloc(buf, *len + n + 1);
	cr_assert_not_null(buf);
	memcpy(buf + *len, line, n + 1);
	*len += n;
}

Test(config, count_limits)
{
	size_t len = 0;
	int i;

	append(&len, NODE "services:\n  - name: web\n    vips: [1.0.0.1, 1.0.0.2, 1.0.0.3, "
			  "1.0.0.4, 1.0.0.5]\n");
	assert_refused(buf, "t.yaml:5: services[0].vips[4]: too many VIPs, at most 4");

	free(buf);
	buf = NULL;
	len = 0;
	append(&len, NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports:\n");
	for (i = 0; i < CONFIG_MAX_PORTS + 1; i++)
		append(&len, "      - port: %d\n", i + 1);
	assert_refused(buf, "t.yaml:39: services[0].ports[32]: too many ports, at most 32");

	free(buf);
	buf = NULL;
	len = 0;
	append(&len, NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			  "    ports: [{port: 80}]\n    endpoints:\n");
	for (i = 0; i < CONFIG_MAX_ENDPOINTS + 1; i++)
		append(&len, "      - address: 10.1.%d.%d\n", i / 250, i % 250 + 1);
	assert_refused(buf, "t.yaml:1032: services[0].endpoints[1024]: too many endpoints, at "
			    "most 1024");
}

Test(config, max_endpoints_fit)
{
	size_t len = 0;
	int i;

	append(&len, NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			  "    ports: [{port: 80}]\n    endpoints:\n");
	for (i = 0; i < CONFIG_MAX_ENDPOINTS; i++)
		append(&len, "      - address: 10.1.%d.%d\n", i / 250, i % 250 + 1);
	cr_assert_eq(parse(buf), 0, "%s", err);
	cr_assert_eq(cfg->services[0]->n_endpoints, CONFIG_MAX_ENDPOINTS);
	cr_assert_eq(cfg->services[0]->endpoints[CONFIG_MAX_ENDPOINTS - 1].line,
		     8 + CONFIG_MAX_ENDPOINTS - 1);
}

Test(config, too_many_service_keys)
{
	size_t len = 0;
	int i, j;

	/* 129 services x 4 VIPs x 32 ports = 16512 pairs, one service too many. */
	append(&len, NODE "services:\n");
	for (i = 0; i <= SHOAL_MAX_SERVICE_KEYS / (4 * 32); i++) {
		append(&len,
		       "  - name: s%d\n    vips: [10.1.%d.1, 10.1.%d.2, 10.1.%d.3, 10.1.%d.4]\n"
		       "    ports: [",
		       i, i, i, i, i);
		for (j = 0; j < 32; j++)
			append(&len, "{port: %d}%s", j + 1, j < 31 ? ", " : "]\n");
	}
	assert_refused(buf, "t.yaml:388: services[128]: the file claims more than 16384 (VIP, "
			    "port) pairs in all");
}

Test(config, protocols_and_opaque_ports)
{
	const struct config_service *s;

	cr_assert_eq(parse(NODE "services:\n"
				"  - name: mixed\n"
				"    vips: [10.96.0.10]\n"
				"    ports:\n"
				"      - {port: 80}\n"
				"      - {port: 3306}\n"
				"      - {port: 8080, target_port: 6379}\n"
				"      - {port: 5432, protocol: http}\n"
				"      - {port: 81, protocol: kubernetes.io/h2c}\n"
				"      - {port: 82, protocol: kubernetes.io/ws}\n"
				"      - {port: 83, protocol: kubernetes.io/wss}\n"
				"      - {port: 84, protocol: tcp}\n"),
		     0, "%s", err);
	s = cfg->services[0];
	cr_assert_eq(s->ports[0].protocol, CONFIG_PROTO_DETECT);
	cr_assert_eq(s->ports[0].declared, false);
	/* Undeclared opaque ports, by port or by target_port, are TCP. */
	cr_assert_eq(s->ports[1].protocol, CONFIG_PROTO_TCP);
	cr_assert_eq(s->ports[1].declared, false);
	cr_assert_eq(s->ports[2].protocol, CONFIG_PROTO_TCP);
	/* A declared protocol wins over the opaque list. */
	cr_assert_eq(s->ports[3].protocol, CONFIG_PROTO_HTTP);
	cr_assert_eq(s->ports[3].declared, true);
	cr_assert_eq(s->ports[4].protocol, CONFIG_PROTO_H2C);
	cr_assert_eq(s->ports[5].protocol, CONFIG_PROTO_HTTP);
	cr_assert_eq(s->ports[6].protocol, CONFIG_PROTO_TCP);
	cr_assert_eq(s->ports[7].protocol, CONFIG_PROTO_TCP);
	cr_assert_eq(s->ports[7].declared, true);
	/* The opaque list is applied after the whole file, wherever proxy: is. */
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "services:\n  - name: a\n    vips: [10.96.0.10]\n"
				"    ports: [{port: 9000}]\n"
				"proxy:\n  opaque_ports: [9000]\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->services[0]->ports[0].protocol, CONFIG_PROTO_TCP);
	config_free(cfg);
	cfg = NULL;
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: detect}]\n",
		       "t.yaml:6: services[0].ports[0].protocol: must be tcp, http, h2c, http2 or grpc, got "
		       "\"detect\"");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: HTTP}]\n",
		       "t.yaml:6: services[0].ports[0].protocol: must be tcp, http, h2c, http2 or grpc, got "
		       "\"HTTP\"");
}

Test(config, port_mode_kernel_or_proxy)
{
	const struct config_service *s;

	cr_assert_eq(parse(NODE "services:\n"
				"  - name: db\n"
				"    vips: [10.96.0.10]\n"
				"    ports:\n"
				"      - {port: 84, protocol: tcp, mode: kernel}\n"
				"      - {port: 3306, mode: kernel}\n"
				"      - {port: 85, protocol: tcp, mode: proxy}\n"
				"      - {port: 86, protocol: tcp}\n"
				"      - {port: 87, protocol: http, mode: proxy}\n"),
		     0, "%s", err);
	s = cfg->services[0];
	cr_assert_eq(s->ports[0].mode, CONFIG_MODE_KERNEL);
	/* An undeclared opaque port is TCP, so it may be kernel-mode. */
	cr_assert_eq(s->ports[1].mode, CONFIG_MODE_KERNEL);
	cr_assert_eq(s->ports[1].protocol, CONFIG_PROTO_TCP);
	cr_assert_eq(s->ports[2].mode, CONFIG_MODE_PROXY);
	/* The default, opaque ports included, is the proxy. */
	cr_assert_eq(s->ports[3].mode, CONFIG_MODE_PROXY);
	cr_assert_eq(s->ports[4].mode, CONFIG_MODE_PROXY);

	/* Kernel mode is refused wherever the port may carry HTTP. */
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports:\n      - port: 80\n        protocol: http\n"
			    "        mode: kernel\n",
		       "t.yaml:9: services[0].ports[0].mode: kernel mode needs an opaque TCP port "
		       "(protocol: tcp, or a port in proxy.opaque_ports), but port 80 is http: the "
		       "kernel picks the endpoint at connect time and never sees a request, so HTTP "
		       "stays in the proxy");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, mode: kernel}]\n",
		       "t.yaml:6: services[0].ports[0].mode: kernel mode needs an opaque TCP port "
		       "(protocol: tcp, or a port in proxy.opaque_ports), but port 80 is undeclared "
		       "(detected): the kernel picks the endpoint at connect time and never sees a "
		       "request, so HTTP stays in the proxy");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: h2c, mode: kernel}]\n",
		       "t.yaml:6: services[0].ports[0].mode: kernel mode needs an opaque TCP port "
		       "(protocol: tcp, or a port in proxy.opaque_ports), but port 80 is h2c (HTTP/2): the "
		       "kernel picks the endpoint at connect time and never sees a request, so HTTP "
		       "stays in the proxy");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: tcp, mode: Kernel}]\n",
		       "t.yaml:6: services[0].ports[0].mode: must be kernel or proxy, got "
		       "\"Kernel\"");
}

Test(config, port_upstream_protocol)
{
	const struct config_service *s;

	cr_assert_eq(parse(NODE "services:\n"
				"  - name: api\n"
				"    vips: [10.96.0.10]\n"
				"    ports:\n"
				"      - {port: 80, protocol: h2c, upstream_protocol: http1}\n"
				"      - {port: 81, protocol: grpc, upstream_protocol: h2}\n"
				"      - {port: 82, upstream_protocol: http1}\n"
				"      - {port: 83, protocol: http2}\n"),
		     0, "%s", err);
	s = cfg->services[0];
	cr_assert_eq(s->ports[0].upstream, CONFIG_UPSTREAM_HTTP1);
	cr_assert_eq(s->ports[0].upstream_line, 7);
	cr_assert_eq(s->ports[1].upstream, CONFIG_UPSTREAM_SAME);
	/* Undeclared (detected): its HTTP/2 clients are translated. */
	cr_assert_eq(s->ports[2].upstream, CONFIG_UPSTREAM_HTTP1);
	cr_assert_eq(s->ports[3].upstream, CONFIG_UPSTREAM_SAME);

	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports:\n      - port: 80\n        protocol: http\n"
			    "        upstream_protocol: http1\n",
		       "t.yaml:9: services[0].ports[0].upstream_protocol: http1 translates HTTP/2 "
		       "streams, so port 80 must carry HTTP/2 (protocol h2c, http2 or grpc, or "
		       "undeclared), but it is http: its requests are HTTP/1.1 already");
	assert_refused(NODE "services:\n  - name: db\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: tcp, upstream_protocol: http1}]\n",
		       "t.yaml:6: services[0].ports[0].upstream_protocol: http1 translates HTTP/2 "
		       "streams, so port 80 must carry HTTP/2 (protocol h2c, http2 or grpc, or "
		       "undeclared), but it is tcp (opaque): there is no request to translate");
	/* An undeclared port in proxy.opaque_ports is tcp. */
	assert_refused(NODE "services:\n  - name: db\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 3306, upstream_protocol: http1}]\n",
		       "t.yaml:6: services[0].ports[0].upstream_protocol: http1 translates HTTP/2 "
		       "streams, so port 3306 must carry HTTP/2 (protocol h2c, http2 or grpc, or "
		       "undeclared), but it is tcp (opaque): there is no request to translate");
	assert_refused(NODE "services:\n  - name: api\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, protocol: h2c, upstream_protocol: HTTP/1.1}]\n",
		       "t.yaml:6: services[0].ports[0].upstream_protocol: must be http1 or h2, got "
		       "\"HTTP/1.1\"");
}

/* ---- routes ---- */

#define SVC_WEB_V1                                                                                 \
	"  - name: web-v1\n"                                                                       \
	"    vips: [10.96.0.21]\n"                                                                 \
	"    ports: [{port: 80}]\n"
#define SVC_WEB_V2                                                                                 \
	"  - name: web-v2\n"                                                                       \
	"    namespace: canary\n"                                                                  \
	"    vips: [10.96.0.22]\n"                                                                 \
	"    ports: [{port: 80}]\n"

static const char routes_file[] = NODE /* lines 1-2 */
    "services:\n"
    "  - name: web\n" /* line 4 */
    "    vips: [10.96.0.10]\n"
    "    ports: [{port: 80, protocol: http}]\n"
    "    routes:\n"
    "      - name: api\n" /* line 8: routes[0] */
    "        match:\n"
    "          hosts: [API.Example.com, \"*.example.org\", \"[FD00::1]\"]\n"
    "          path: {prefix: /api/}\n"
    "          methods: [GET, POST]\n"
    "          headers:\n"
    "            X-Canary: \"yes\"\n"
    "            x-user: Alice Smith\n"
    "        backends:\n"
    "          - service: web-v1\n" /* line 17 */
    "            weight: 90\n"
    "          - {service: canary/web-v2, weight: 10}\n" /* line 19 */
    "          - {service: web-v1, weight: 0}\n"
    "        timeout_ms: 2000\n"
    "        per_try_timeout_ms: 500\n"
    "        retryable: true\n"
    "        retry_statuses: [502, 503, 429]\n"
    "      - match: {path: {exact: /healthz}}\n" /* line 25: routes[1] */
    "      - backends: [{service: web-v1}]\n"	 /* line 26: routes[2] */
    "      - match: {path: {prefix: /}}\n"	 /* line 27: routes[3] */
    "        retry_statuses: []\n"
    "        retry_grpc_statuses: [UNAVAILABLE, resource_exhausted, 13]\n" SVC_WEB_V1 SVC_WEB_V2;

Test(config, routes_every_field)
{
	const struct config_service *s;
	const struct config_route *r;

	cr_assert_eq(parse(routes_file), 0, "%s", err);
	s = cfg->services[0];
	cr_assert_eq(s->n_routes, 4);

	r = &s->routes[0];
	cr_assert_str_eq(r->name, "api");
	cr_assert_eq(r->line, 8);
	cr_assert_eq(r->n_hosts, 3);
	cr_assert_str_eq(r->hosts[0].name, "api.example.com");
	cr_assert_eq(r->hosts[0].len, strlen("api.example.com"));
	cr_assert_not(r->hosts[0].suffix);
	cr_assert_str_eq(r->hosts[1].name, ".example.org");
	cr_assert_eq(r->hosts[1].len, strlen(".example.org"));
	cr_assert(r->hosts[1].suffix);
	cr_assert_str_eq(r->hosts[2].name, "[fd00::1]");
	cr_assert_eq(r->path_match, CONFIG_PATH_PREFIX);
	cr_assert_str_eq(r->path, "/api"); /* the trailing '/' goes */
	cr_assert_eq(r->path_len, 4);
	cr_assert_eq(r->n_methods, 2);
	cr_assert_str_eq(r->methods[0], "GET");
	cr_assert_str_eq(r->methods[1], "POST");
	cr_assert_eq(r->n_headers, 2);
	cr_assert_str_eq(r->headers[0].name, "x-canary");
	cr_assert_eq(r->headers[0].name_len, 8);
	cr_assert_str_eq(r->headers[0].value, "yes");
	cr_assert_eq(r->headers[0].value_len, 3);
	cr_assert_str_eq(r->headers[1].name, "x-user");
	cr_assert_str_eq(r->headers[1].value, "Alice Smith");
	cr_assert_eq(r->n_backends, 3);
	cr_assert_eq(r->backends[0].svc_index, 1);
	cr_assert_str_eq(r->backends[0].namespace, "default");
	cr_assert_str_eq(r->backends[0].name, "web-v1");
	cr_assert_eq(r->backends[0].weight, 90);
	cr_assert_eq(r->backends[0].cum_weight, 90);
	cr_assert_eq(r->backends[0].line, 17);
	cr_assert_eq(r->backends[1].svc_index, 2);
	cr_assert_str_eq(r->backends[1].namespace, "canary");
	cr_assert_eq(r->backends[1].weight, 10);
	cr_assert_eq(r->backends[1].cum_weight, 100);
	cr_assert_eq(r->backends[1].line, 19);
	cr_assert_eq(r->backends[2].weight, 0);
	cr_assert_eq(r->backends[2].cum_weight, 100);
	cr_assert_eq(r->total_weight, 100);
	cr_assert_eq(r->timeout_ms, 2000);
	cr_assert_eq(r->per_try_timeout_ms, 500);
	cr_assert(r->retryable);
	cr_assert_eq(r->n_retry_statuses, 3);
	cr_assert_eq(r->retry_statuses[0], 502);
	cr_assert_eq(r->retry_statuses[1], 503);
	cr_assert_eq(r->retry_statuses[2], 429);

	/* Defaults: no name, any host and method, the service itself, retry on 503. */
	r = &s->routes[1];
	cr_assert_str_eq(r->name, "");
	cr_assert_eq(r->line, 25);
	cr_assert_eq(r->n_hosts, 0);
	cr_assert_eq(r->n_methods, 0);
	cr_assert_eq(r->n_headers, 0);
	cr_assert_eq(r->path_match, CONFIG_PATH_EXACT);
	cr_assert_str_eq(r->path, "/healthz");
	cr_assert_eq(r->n_backends, 1);
	cr_assert_eq(r->backends[0].svc_index, 0);
	cr_assert_eq(r->backends[0].weight, 1);
	cr_assert_eq(r->backends[0].cum_weight, 1);
	cr_assert_eq(r->backends[0].line, 25);
	cr_assert_eq(r->total_weight, 1);
	cr_assert_eq(r->timeout_ms, 0);
	cr_assert_eq(r->per_try_timeout_ms, 0);
	cr_assert_not(r->retryable);
	cr_assert_eq(r->n_retry_statuses, 1);
	cr_assert_eq(r->retry_statuses[0], CONFIG_DEFAULT_RETRY_STATUS);
	cr_assert_eq(r->n_retry_grpc_statuses, 1);
	cr_assert_eq(r->retry_grpc_statuses[0], CONFIG_DEFAULT_RETRY_GRPC_STATUS);
	cr_assert_eq(CONFIG_DEFAULT_RETRY_GRPC_STATUS, 14); /* UNAVAILABLE */

	r = &s->routes[2];
	cr_assert_eq(r->path_match, CONFIG_PATH_ANY);
	cr_assert_null(r->path);
	cr_assert_eq(r->n_backends, 1);
	cr_assert_eq(r->backends[0].svc_index, 1);
	cr_assert_eq(r->backends[0].weight, 1); /* the default weight */

	r = &s->routes[3];
	cr_assert_str_eq(r->path, "/"); /* "/" keeps its only '/' */
	cr_assert_eq(r->n_retry_statuses, 0);
	/* Names in any case, and numbers. */
	cr_assert_eq(r->n_retry_grpc_statuses, 3);
	cr_assert_eq(r->retry_grpc_statuses[0], 14);
	cr_assert_eq(r->retry_grpc_statuses[1], 8);
	cr_assert_eq(r->retry_grpc_statuses[2], 13);

	cr_assert_eq(cfg->services[1]->n_routes, 0);
	cr_assert_null(cfg->services[1]->routes);
}

/* One service "web" at line 4 with the given route lines from line 7, then web-v1. */
#define ROUTES(text)                                                                               \
	NODE "services:\n"                                                                         \
	     "  - name: web\n"                                                                     \
	     "    vips: [10.96.0.10]\n"                                                            \
	     "    ports: [{port: 80}]\n"                                                           \
	     "    routes:\n" text SVC_WEB_V1

Test(config, route_backend_errors)
{
	/* A reference to a service further down is fine; a missing one is not. */
	assert_refused(ROUTES("      - backends:\n"
			      "          - {service: web-v1, weight: 1}\n"
			      "          - {service: web-v3, weight: 1}\n"),
		       "t.yaml:10: services[0].routes[0].backends[1].service: no service "
		       "default/web-v3 in the file");
	assert_refused(ROUTES("      - backends:\n"
			      "          - service: canary/web-v1\n"),
		       "t.yaml:9: services[0].routes[0].backends[0].service: no service "
		       "canary/web-v1 in the file");
	assert_refused(ROUTES("      - backends:\n"
			      "          - {service: web-v1, weight: 0}\n"
			      "          - {service: web, weight: 0}\n"),
		       "t.yaml:8: services[0].routes[0].backends: weights add up to 0");
	assert_refused(ROUTES("      - backends: []\n"),
		       "t.yaml:8: services[0].routes[0].backends: must list 1..16 backends, got "
		       "none");
	assert_refused(ROUTES("      - backends: [{service: web-v1, weight: 10001}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].weight: must be 0..10000, got "
		       "10001");
	assert_refused(ROUTES("      - backends: [{weight: 1}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].service: is required");
	assert_refused(ROUTES("      - backends: [{service: Web-V1}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].service: must be NAME or "
		       "NAMESPACE/NAME (RFC 1123 labels), got \"Web-V1\"");
	assert_refused(ROUTES("      - backends: [{service: a/b/c}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].service: must be NAME or "
		       "NAMESPACE/NAME");
	assert_refused(ROUTES("      - backends: [{service: /web}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].service: must be NAME or "
		       "NAMESPACE/NAME");
	/* Routed requests keep their port: web-v1 lacks 81, an HTTP-capable port of web. */
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80}, {port: 81, protocol: http}, {port: 3306}]\n"
			    "    routes: [{backends: [{service: web-v1}]}]\n" SVC_WEB_V1,
		       "t.yaml:7: services[0].routes[0].backends[0].service: default/web-v1 has no "
		       "port 81, which requests routed from services[0].ports[1] (line 6) arrive "
		       "on");
	assert_refused(ROUTES("      - backends: [{service: web-v1, port: 80}]\n"),
		       "t.yaml:8: services[0].routes[0].backends[0].port: unknown field");
}

Test(config, route_match_errors)
{
	assert_refused(ROUTES("      - match: {path: {prefix: api}}\n"),
		       "t.yaml:8: services[0].routes[0].match.path.prefix: must start with \"/\"");
	assert_refused(ROUTES("      - match: {path: {exact: \"/a?b=1\"}}\n"),
		       "t.yaml:8: services[0].routes[0].match.path.exact: must start with \"/\" "
		       "and hold no spaces, '?' or '#', got \"/a?b=1\"");
	assert_refused(ROUTES("      - match:\n"
			      "          path:\n"
			      "            exact: /a\n"
			      "            prefix: /b\n"),
		       "t.yaml:11: services[0].routes[0].match.path.prefix: exact and prefix "
		       "exclude each other");
	assert_refused(ROUTES("      - match:\n          path: {}\n"),
		       "t.yaml:9: services[0].routes[0].match.path: exact or prefix is required");
	assert_refused(ROUTES("      - match:\n          path: /a\n"),
		       "t.yaml:9: services[0].routes[0].match.path: must be a mapping, got a "
		       "scalar");
	assert_refused(ROUTES("      - match: {hosts: [\"example.com:80\"]}\n"),
		       "t.yaml:8: services[0].routes[0].match.hosts[0]: must be a host name "
		       "without port");
	assert_refused(ROUTES("      - match: {hosts: [\"a.*.com\"]}\n"),
		       "t.yaml:8: services[0].routes[0].match.hosts[0]: must be a host name");
	assert_refused(ROUTES("      - match: {hosts: [\"*\"]}\n"),
		       "t.yaml:8: services[0].routes[0].match.hosts[0]: must be a host name");
	assert_refused(ROUTES("      - match: {hosts: [a..com]}\n"),
		       "t.yaml:8: services[0].routes[0].match.hosts[0]: must be a host name");
	assert_refused(ROUTES("      - match:\n"
			      "          hosts:\n"
			      "            - A.com\n"
			      "            - a.COM\n"),
		       "t.yaml:11: services[0].routes[0].match.hosts[1]: duplicate host (also "
		       "hosts[0])");
	assert_refused(ROUTES("      - match: {methods: [get]}\n"),
		       "t.yaml:8: services[0].routes[0].match.methods[0]: must be an upper-case "
		       "method token, got \"get\"");
	assert_refused(ROUTES("      - match: {methods: [\"GE T\"]}\n"),
		       "t.yaml:8: services[0].routes[0].match.methods[0]: must be an upper-case "
		       "method token");
	assert_refused(ROUTES("      - match: {methods: [GET, PUT, GET]}\n"),
		       "t.yaml:8: services[0].routes[0].match.methods[2]: duplicate method (also "
		       "methods[0])");
	assert_refused(ROUTES("      - match:\n"
			      "          headers:\n"
			      "            x-a: \"1\"\n"
			      "            X-A: \"2\"\n"),
		       "t.yaml:11: services[0].routes[0].match.headers.X-A: duplicate header "
		       "(first at line 10)");
	assert_refused(ROUTES("      - match: {headers: {\"bad name\": x}}\n"),
		       "t.yaml:8: services[0].routes[0].match.headers.bad name: must be a header "
		       "name");
	assert_refused(ROUTES("      - match: {headers: {x-a: \" padded\"}}\n"),
		       "t.yaml:8: services[0].routes[0].match.headers.x-a: must be a header value "
		       "without control characters or surrounding spaces");
	assert_refused(ROUTES("      - match: {headers: {x-a: [1]}}\n"),
		       "t.yaml:8: services[0].routes[0].match.headers.x-a: must be a header "
		       "value, got a sequence");
	assert_refused(ROUTES("      - match: {headers: {x-a: }}\n"),
		       "t.yaml:8: services[0].routes[0].match.headers.x-a: must be a header "
		       "value, got nothing");
	assert_refused(ROUTES("      - match: {paths: {exact: /}}\n"),
		       "t.yaml:8: services[0].routes[0].match.paths: unknown field");
}

Test(config, route_policy_and_name_errors)
{
	assert_refused(ROUTES("      - timeout_ms: 100\n        per_try_timeout_ms: 200\n"),
		       "t.yaml:9: services[0].routes[0].per_try_timeout_ms: must be <= timeout_ms "
		       "(100), got 200");
	assert_refused(ROUTES("      - timeout_ms: 600001\n"),
		       "t.yaml:8: services[0].routes[0].timeout_ms: must be 0..600000, got 600001");
	assert_refused(ROUTES("      - retry_statuses: [503, 200]\n"),
		       "t.yaml:8: services[0].routes[0].retry_statuses[1]: must be 400..599, got "
		       "200");
	assert_refused(ROUTES("      - retry_statuses: [503, 503]\n"),
		       "t.yaml:8: services[0].routes[0].retry_statuses[1]: duplicate status (also "
		       "retry_statuses[0])");
	assert_refused(ROUTES("      - retry_grpc_statuses: [UNAVAILABLE, 0]\n"),
		       "t.yaml:8: services[0].routes[0].retry_grpc_statuses[1]: must be 1..16, got "
		       "0");
	assert_refused(ROUTES("      - retry_grpc_statuses: [17]\n"),
		       "t.yaml:8: services[0].routes[0].retry_grpc_statuses[0]: must be 1..16, got "
		       "17");
	assert_refused(ROUTES("      - retry_grpc_statuses: [OK]\n"),
		       "t.yaml:8: services[0].routes[0].retry_grpc_statuses[0]: must be a gRPC "
		       "status code, 1..16 or its name (UNAVAILABLE, RESOURCE_EXHAUSTED, ...), got "
		       "\"OK\"");
	assert_refused(ROUTES("      - retry_grpc_statuses: [UNAVAILABLE, 14]\n"),
		       "t.yaml:8: services[0].routes[0].retry_grpc_statuses[1]: duplicate code "
		       "UNAVAILABLE (also retry_grpc_statuses[0])");
	assert_refused(ROUTES("      - retry_grpc_statuses: UNAVAILABLE\n"),
		       "t.yaml:8: services[0].routes[0].retry_grpc_statuses: must be a sequence, got a scalar");
	assert_refused(ROUTES("      - retryable: maybe\n"),
		       "t.yaml:8: services[0].routes[0].retryable: must be true or false");
	assert_refused(ROUTES("      - name: Api\n"),
		       "t.yaml:8: services[0].routes[0].name: must be an RFC 1123 label");
	assert_refused(ROUTES("      - name: api\n      - name: api\n"),
		       "t.yaml:9: services[0].routes[1].name: duplicate route name api (also "
		       "routes[0] at line 8)");
	assert_refused(ROUTES("      - name: api\n        name: b\n"),
		       "t.yaml:9: services[0].routes[0].name: duplicate field (first at line 8)");
	assert_refused(ROUTES("      - weight: 3\n"),
		       "t.yaml:8: services[0].routes[0].weight: unknown field");
	assert_refused(ROUTES("      - x\n"),
		       "t.yaml:8: services[0].routes[0]: must be a mapping, got a scalar");
}

/* Build "routes:" with n entries of item into buf. */
static const char *many(const char *head, const char *item, int n, const char *tail)
{
	size_t len = strlen(head) + (size_t)n * strlen(item) + strlen(tail) + 1;
	int i;

	buf = malloc(len);
	cr_assert_not_null(buf);
	strcpy(buf, head);
	for (i = 0; i < n; i++)
		strcat(buf, item);
	strcat(buf, tail);
	return buf;
}

#define ROUTES_HEAD                                                                                \
	NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports: [{port: 80}]\n"         \
	     "    routes:\n"

Test(config, route_limits)
{
	/* 64 routes fit; the 65th is refused at its own line (7 + 65). */
	cr_assert_eq(parse(many(ROUTES_HEAD, "      - {}\n", CONFIG_MAX_ROUTES, SVC_WEB_V1)), 0,
		     "%s", err);
	cr_assert_eq(cfg->services[0]->n_routes, CONFIG_MAX_ROUTES);
	config_free(cfg);
	cfg = NULL;
	free(buf);
	assert_refused(many(ROUTES_HEAD, "      - {}\n", CONFIG_MAX_ROUTES + 1, SVC_WEB_V1),
		       "t.yaml:72: services[0].routes[64]: too many routes, at most 64");
	free(buf);
	assert_refused(many(ROUTES_HEAD "      - backends:\n", "          - service: web\n",
			    CONFIG_MAX_ROUTE_BACKENDS + 1, SVC_WEB_V1),
		       "t.yaml:25: services[0].routes[0].backends[16]: too many backends, at most "
		       "16");
}

Test(config, routes_free_on_error)
{
	/* Strings allocated before the error are freed (ASan's leak check sees this). */
	assert_refused(ROUTES("      - match:\n"
			      "          hosts: [a.com, b.com]\n"
			      "          path: {prefix: /x}\n"
			      "          headers: {x-a: b}\n"
			      "        backends: [{service: nope}]\n"),
		       "t.yaml:12: services[0].routes[0].backends[0].service: no service "
		       "default/nope in the file");
}

/* ---- resilience: ---- */

#define SVC_RES(block)                                                                             \
	NODE "services:\n"                                                                         \
	     "  - name: web\n"                                                                     \
	     "    vips: [10.96.0.10]\n"                                                            \
	     "    ports: [{port: 80}]\n"                                                           \
	     "    resilience:\n" block

Test(config, resilience_defaults_without_the_block)
{
	struct config_resilience def;

	cr_assert_eq(parse(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
				"    ports: [{port: 80}]\n"),
		     0, "%s", err);
	config_resilience_default(&def);
	cr_assert(!memcmp(&cfg->services[0]->resilience, &def, sizeof(def)));
	cr_assert_eq(def.decay_ms, 10000);
	cr_assert_eq(def.failure_penalty_ms, 5000);
	cr_assert_eq(def.penalty_ms, 1000);
	cr_assert_eq(def.explore_after_ms, 1000);
	cr_assert_eq(def.budget_ratio_pct, 20);
	cr_assert_eq(def.budget_min_per_s, 10);
	cr_assert_eq(def.max_retries, 2);
	cr_assert_eq(def.consecutive_failures, 7);
	cr_assert_eq(def.breaker_backoff_min_ms, 1000);
	cr_assert_eq(def.breaker_backoff_max_ms, 60000);
	cr_assert_eq(def.jitter_pct, 50);
	cr_assert_eq(def.success_rate_pct, 80);
	cr_assert_eq(def.max_ejection_pct, 50);
	cr_assert(def.connect_any_method);
}

Test(config, resilience_block_sets_every_field)
{
	const struct config_resilience *r;

	cr_assert_eq(
	    parse(SVC_RES("      balancer: {default_rtt_ms: 5, decay_ms: 2000, "
			  "failure_penalty_ms: 1000, retry_after_cap_ms: 9000, penalty_ms: 300, "
			  "explore_after_ms: 250}\n"
			  "      retry_budget: {ratio_pct: 50, min_per_second: 3, "
			  "window_ms: 5000}\n"
			  "      retries: {max_retries: 4, max_body_bytes: 1024, "
			  "backoff_base_ms: 10, backoff_max_ms: 100, "
			  "connect_any_method: false}\n"
			  "      breaker: {consecutive_failures: 3, backoff_min_ms: 500, "
			  "backoff_max_ms: 5000, jitter_pct: 10, success_rate_pct: 0, "
			  "success_rate_window_ms: 2000, success_rate_min_requests: 9, "
			  "max_ejection_pct: 100}\n"
			  "      fail_fast_ms: 250\n"
			  "      timeouts: {connect_ms: 300, request_ms: 2000, per_try_ms: 500, "
			  "idle_ms: 7000}\n")),
	    0, "%s", err);
	r = &cfg->services[0]->resilience;
	cr_assert_eq(r->default_rtt_ms, 5);
	cr_assert_eq(r->decay_ms, 2000);
	cr_assert_eq(r->failure_penalty_ms, 1000);
	cr_assert_eq(r->retry_after_cap_ms, 9000);
	cr_assert_eq(r->penalty_ms, 300);
	cr_assert_eq(r->explore_after_ms, 250);
	cr_assert_eq(r->budget_ratio_pct, 50);
	cr_assert_eq(r->budget_min_per_s, 3);
	cr_assert_eq(r->budget_window_ms, 5000);
	cr_assert_eq(r->max_retries, 4);
	cr_assert_eq(r->max_body_bytes, 1024);
	cr_assert_eq(r->backoff_base_ms, 10);
	cr_assert_eq(r->backoff_max_ms, 100);
	cr_assert(!r->connect_any_method);
	cr_assert_eq(r->consecutive_failures, 3);
	cr_assert_eq(r->breaker_backoff_min_ms, 500);
	cr_assert_eq(r->breaker_backoff_max_ms, 5000);
	cr_assert_eq(r->jitter_pct, 10);
	cr_assert_eq(r->success_rate_pct, 0);
	cr_assert_eq(r->success_rate_window_ms, 2000);
	cr_assert_eq(r->success_rate_min_requests, 9);
	cr_assert_eq(r->max_ejection_pct, 100);
	cr_assert_eq(r->fail_fast_ms, 250);
	cr_assert_eq(r->connect_timeout_ms, 300);
	cr_assert_eq(r->request_timeout_ms, 2000);
	cr_assert_eq(r->per_try_timeout_ms, 500);
	cr_assert_eq(r->idle_timeout_ms, 7000);
}

Test(config, resilience_response_head_timeout)
{
	cr_assert_eq(parse(SVC_RES("      timeouts: {response_head_ms: 250000}\n")), 0, "%s", err);
	cr_assert_eq(cfg->services[0]->resilience.response_head_timeout_ms, 250000);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(SVC_RES("      timeouts: {idle_ms: 1}\n")), 0, "%s", err);
	cr_assert_eq(cfg->services[0]->resilience.response_head_timeout_ms, 0,
		     "not set: proxy.http.response_head_timeout_ms holds");
	assert_refused(SVC_RES("      timeouts: {response_head_ms: 600001}\n"),
		       "t.yaml:8: services[0].resilience.timeouts.response_head_ms: must be "
		       "0..600000, got 600001");
}

Test(config, resilience_errors)
{
	assert_refused(SVC_RES("      balancer: {explore_after_ms: 600001}\n"),
		       "t.yaml:8: services[0].resilience.balancer.explore_after_ms: must be "
		       "0..600000, got 600001");
	assert_refused(SVC_RES("      balancer: {penalty_ms: 3600001}\n"),
		       "t.yaml:8: services[0].resilience.balancer.penalty_ms: must be "
		       "0..3600000, got 3600001");
	assert_refused(
	    SVC_RES("      balancer: {decay_ms: 0}\n"),
	    "t.yaml:8: services[0].resilience.balancer.decay_ms: must be 1..600000, got 0");
	assert_refused(
	    SVC_RES("      breaker: {jitter_pct: 101}\n"),
	    "t.yaml:8: services[0].resilience.breaker.jitter_pct: must be 0..100, got 101");
	assert_refused(SVC_RES("      breaker: {backoff_min_ms: 5000, backoff_max_ms: 1000}\n"),
		       "t.yaml:8: services[0].resilience.breaker.backoff_min_ms: must be <= "
		       "backoff_max_ms (1000), got 5000");
	assert_refused(SVC_RES("      retries: {backoff_base_ms: 300}\n"),
		       "t.yaml:8: services[0].resilience.retries.backoff_base_ms: must be <= "
		       "backoff_max_ms (250), got 300");
	assert_refused(
	    SVC_RES("      retries: {max_retries: 11}\n"),
	    "t.yaml:8: services[0].resilience.retries.max_retries: must be 0..10, got 11");
	assert_refused(SVC_RES("      timeouts: {request_ms: 100, per_try_ms: 200}\n"),
		       "t.yaml:8: services[0].resilience.timeouts.per_try_ms: must be <= "
		       "request_ms (100), got 200");
	assert_refused(SVC_RES("      retry_budget: {window_ms: 50}\n"),
		       "t.yaml:8: services[0].resilience.retry_budget.window_ms: must be "
		       "100..600000, got 50");
	assert_refused(SVC_RES("      retry_budget: {min_per_second: 100000, window_ms: 600000}\n"),
		       "t.yaml:8: services[0].resilience.retry_budget.min_per_second: "
		       "min_per_second x window_ms must be <=");
	assert_refused(SVC_RES("      brakes: {}\n"),
		       "t.yaml:8: services[0].resilience.brakes: unknown field");
}

Test(config, route_grpc_head_hold_overrides_the_proxys_only_when_present)
{
	cr_assert_eq(parse(ROUTES("      - grpc_head_hold_ms: 0\n      - name: b\n")), 0, "%s", err);
	/* 0 is a value (never held), not "unset". */
	cr_assert(cfg->services[0]->routes[0].grpc_head_hold_set);
	cr_assert_eq(cfg->services[0]->routes[0].grpc_head_hold_ms, 0);
	cr_assert_not(cfg->services[0]->routes[1].grpc_head_hold_set);
	config_free(cfg);
	cfg = NULL;
	assert_refused(ROUTES("      - grpc_head_hold_ms: 10001\n"),
		       "t.yaml:8: services[0].routes[0].grpc_head_hold_ms: must be 0..10000, got "
		       "10001");
}

Test(config, route_connect_and_idle_timeouts)
{
	cr_assert_eq(
	    parse(ROUTES("      - connect_timeout_ms: 250\n        idle_timeout_ms: 4000\n")), 0,
	    "%s", err);
	cr_assert_eq(cfg->services[0]->routes[0].connect_timeout_ms, 250);
	cr_assert_eq(cfg->services[0]->routes[0].idle_timeout_ms, 4000);
	config_free(cfg);
	cfg = NULL;
	assert_refused(
	    ROUTES("      - idle_timeout_ms: 600001\n"),
	    "t.yaml:8: services[0].routes[0].idle_timeout_ms: must be 0..600000, got 600001");
}

/* head, then "[item(0), ..., item(n - 1)]" with item a printf format of the index, then tail. */
static const char *flow(const char *head, const char *item, int n, const char *tail)
{
	size_t len = strlen(head) + (size_t)n * (strlen(item) + 16) + strlen(tail) + 4;
	size_t at;
	int i;

	buf = malloc(len);
	cr_assert_not_null(buf);
	at = (size_t)snprintf(buf, len, "%s[", head);
	for (i = 0; i < n; i++) {
		at += (size_t)snprintf(buf + at, len - at, i ? ", " : "");
		at += (size_t)snprintf(buf + at, len - at, item, i);
	}
	snprintf(buf + at, len - at, "]\n%s", tail);
	return buf;
}

Test(config, every_list_has_its_bound)
{
	/* Each list takes its limit and refuses one more, at the element past it. */
	cr_assert_eq(parse(flow(ROUTES_HEAD "      - match:\n          hosts: ", "h%d.example",
				CONFIG_MAX_ROUTE_HOSTS, "")),
		     0, "%s", err);
	cr_assert_eq(cfg->services[0]->routes[0].n_hosts, CONFIG_MAX_ROUTE_HOSTS);
	config_free(cfg);
	cfg = NULL;
	free(buf);
	assert_refused(
	    flow(ROUTES_HEAD "      - match:\n          hosts: ", "h%d.example",
		 CONFIG_MAX_ROUTE_HOSTS + 1, ""),
	    "t.yaml:9: services[0].routes[0].match.hosts[16]: too many hosts, at most 16");
	free(buf);
	assert_refused(flow(ROUTES_HEAD "      - match:\n          methods: ", "M%d",
			    CONFIG_MAX_ROUTE_METHODS + 1, ""),
		       "t.yaml:9: services[0].routes[0].match.methods[16]: too many methods, at "
		       "most 16");
	free(buf);
	assert_refused(flow(ROUTES_HEAD "      - retry_statuses: ", "5%02d",
			    CONFIG_MAX_RETRY_STATUSES + 1, ""),
		       "t.yaml:8: services[0].routes[0].retry_statuses[16]: too many statuses, at "
		       "most 16");
	free(buf);
	assert_refused(
	    flow(NODE "proxy:\n  opaque_ports: ", "1%d", CONFIG_MAX_OPAQUE_PORTS + 1, ""),
	    "t.yaml:4: proxy.opaque_ports[64]: too many ports, at most 64");
	free(buf);
	buf = NULL;
}

Test(config, an_empty_list_is_reported_where_it_was_written)
{
	/* ports and vips point at the empty value; backends at its key. */
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports:\n"
			    "      []\n",
		       "t.yaml:7: services[0].ports: must list 1..32 ports, got none");
	assert_refused(ROUTES("      - backends:\n          []\n"),
		       "t.yaml:8: services[0].routes[0].backends: must list 1..16 backends, got "
		       "none");
}

/* ---- services shared between configs (docs/discovery.md, "Snapshots") ---- */

#define TWO_SERVICES                                                                               \
	NODE "services:\n"                                                                         \
	     "  - name: web\n"                                                                     \
	     "    vips: [10.96.0.10]\n"                                                            \
	     "    ports: [{port: 80, protocol: http}]\n"                                           \
	     "    endpoints: [{address: 10.1.0.1}, {address: 10.1.0.2}]\n"                         \
	     "    routes:\n"                                                                       \
	     "      - match: {path: {prefix: /api}, headers: {x-env: canary}}\n"                   \
	     "  - name: db\n"                                                                      \
	     "    vips: [10.96.0.20]\n"                                                            \
	     "    ports: [{port: 5432}]\n"                                                         \
	     "    endpoints: [{address: 10.2.0.1}]\n"

Test(config, copy_shares_services_and_the_last_reference_frees)
{
	struct config *copy;

	cr_assert_eq(parse(TWO_SERVICES), 0, "%s", err);
	cr_assert_eq(config_copy(cfg, 3, &copy), 0);
	cr_expect_eq(copy->n_services, 3);
	cr_expect_eq(copy->services[0], cfg->services[0], "web is shared, not copied");
	cr_expect_eq(copy->services[1], cfg->services[1], "db is shared, not copied");
	cr_expect_eq(atomic_load(&cfg->services[0]->refs), 2);
	cr_assert_not_null(copy->services[2], "the extra id is a vacant service, not NULL");
	cr_expect_eq(copy->services[2]->id, 2);
	cr_expect_eq(copy->services[2]->n_vips, 0);
	cr_expect_str_eq(copy->services[2]->name, "");
	/* The original goes first: the copy's services stay whole (ASan checks the reads). */
	config_free(cfg);
	cfg = copy;
	cr_expect_eq(atomic_load(&cfg->services[0]->refs), 1);
	cr_expect_str_eq(cfg->services[0]->name, "web");
	cr_expect_eq(cfg->services[0]->n_endpoints, 2);
	cr_expect_str_eq(cfg->services[0]->routes[0].path, "/api");
	cr_expect_str_eq(cfg->services[0]->routes[0].headers[0].value, "canary");
	cr_expect_eq(cfg->services[1]->n_endpoints, 1);
}

Test(config, a_shared_service_is_copied_before_it_is_changed)
{
	struct config *copy;
	struct config_service *mine, *web;
	struct shoal_addr a;

	cr_assert_eq(parse(TWO_SERVICES), 0, "%s", err);
	web = cfg->services[0];
	cr_assert_eq(config_copy(cfg, cfg->n_services, &copy), 0);
	mine = config_service_mut(copy, 0);
	cr_assert_not_null(mine);
	cr_expect_neq(mine, web, "a service two configs hold is copied");
	cr_expect_eq(copy->services[0], mine);
	cr_expect_eq(copy->services[1], cfg->services[1], "the other service stays shared");
	cr_expect_eq(atomic_load(&web->refs), 1, "the copy dropped its reference to web");
	cr_expect_eq(config_service_mut(copy, 0), mine,
		     "a service only one config holds is its own");
	cr_assert_eq(addr_parse("10.1.0.9", &mine->endpoints[0].addr), 0);
	mine->routes[0].path[1] = 'x';
	/* The original did not move: endpoints and routes are the copy's own. */
	cr_assert_eq(addr_parse("10.1.0.1", &a), 0);
	cr_expect(addr_equal(&web->endpoints[0].addr, &a));
	cr_expect_str_eq(web->routes[0].path, "/api");
	cr_expect_str_eq(mine->routes[0].path, "/xpi");
	cr_expect_str_eq(mine->routes[0].headers[0].value, "canary");
	cr_expect_eq(mine->id, 0);
	config_free(copy);
}

Test(config, service_references_outlive_their_configs)
{
	const struct config_service *db;

	cr_assert_eq(parse(TWO_SERVICES), 0, "%s", err);
	db = cfg->services[1];
	config_service_get(db);
	config_free(cfg);
	cfg = NULL;
	/* Only the reference taken above holds it now (ASan checks the reads). */
	cr_expect_str_eq(db->name, "db");
	cr_expect_eq(db->n_endpoints, 1);
	cr_expect_eq(atomic_load(&db->refs), 1);
	config_service_put(db);
	config_service_put(NULL);
}
