// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "proxy/http_routes.h"

/* Each test parses a config into cfg; the fixture frees it. */
static struct config *cfg;
static char err[512];

static void setup(void)
{
	cfg = NULL;
	err[0] = '\0';
}

static void teardown(void)
{
	config_free(cfg);
	cfg = NULL;
}

TestSuite(routes, .init = setup, .fini = teardown);

#define HEAD                                                                                       \
	"node: {address_v4: 10.0.1.1}\n"                                                           \
	"services:\n"                                                                              \
	"  - name: web\n"                                                                          \
	"    vips: [10.96.0.10]\n"                                                                 \
	"    ports: [{port: 80, protocol: http}]\n"                                                \
	"    routes:\n"
#define TAIL                                                                                       \
	"  - {name: web-v1, vips: [10.96.0.21], ports: [{port: 80}]}\n"                            \
	"  - {name: web-v2, vips: [10.96.0.22], ports: [{port: 80}]}\n"

/* The first service of text (HEAD routes TAIL), parsed. */
static const struct config_service *load(const char *routes)
{
	char text[4096];

	snprintf(text, sizeof(text), HEAD "%s" TAIL, routes);
	cr_assert_eq(config_parse("t.yaml", text, strlen(text), &cfg, err, sizeof(err)), 0, "%s",
		     err);
	return cfg->services[0];
}

/* Headers of a test request: "name: value" pairs, looked up case-insensitively. */
struct hdrs {
	const char *pairs[8][2];
	int n;
	int calls;
};

static int hdr_lookup(void *ctx, const char *name, size_t name_len, const char **value,
		      size_t *value_len)
{
	struct hdrs *h = ctx;
	int i;

	h->calls++;
	for (i = 0; i < h->n; i++) {
		if (strlen(h->pairs[i][0]) == name_len &&
		    !strncasecmp(h->pairs[i][0], name, name_len)) {
			*value = h->pairs[i][1];
			*value_len = strlen(h->pairs[i][1]);
			return 1;
		}
	}
	return 0;
}

static struct hdrs no_hdrs;

/* A request; host may be NULL. */
static struct route_request req(const char *method, const char *host, const char *path,
				struct hdrs *h)
{
	struct route_request r = {
	    .method = method,
	    .method_len = strlen(method),
	    .host = host,
	    .host_len = host ? strlen(host) : 0,
	    .path = path,
	    .path_len = strlen(path),
	    .header = hdr_lookup,
	    .ctx = h ? h : &no_hdrs,
	};
	return r;
}

/* Index of the route req matches, or -1. */
static int match(const struct config_service *svc, struct route_request r)
{
	const struct config_route *route = http_routes_match(svc, &r);

	return route ? (int)(route - svc->routes) : -1;
}

Test(routes, no_routes_no_match)
{
	const struct config_service *svc = load("");

	cr_assert_eq(svc->n_routes, 0);
	cr_assert_eq(match(svc, req("GET", "a.com", "/", NULL)), -1);
}

Test(routes, empty_match_takes_everything)
{
	const struct config_service *svc = load("      - {}\n");

	cr_assert_eq(match(svc, req("GET", NULL, "*", NULL)), 0);
	cr_assert_eq(match(svc, req("BREW", "x", "/coffee?x", NULL)), 0);
}

Test(routes, host_exact_case_and_port)
{
	const struct config_service *svc =
	    load("      - match: {hosts: [Api.Example.com, \"[fd00::1]\", 10.0.0.1]}\n");

	cr_assert_eq(match(svc, req("GET", "api.example.com", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "API.EXAMPLE.COM", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "api.example.com:8080", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "api.example.com:", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "[FD00::1]:80", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "[fd00::1]", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "10.0.0.1:80", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "x.api.example.com", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "api.example.co", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "api.example.com.evil", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "[fd00::2]", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", NULL, "/", NULL)), -1);
}

Test(routes, host_suffix)
{
	const struct config_service *svc = load("      - match: {hosts: [\"*.Example.org\"]}\n");

	cr_assert_eq(match(svc, req("GET", "a.example.org", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a.b.EXAMPLE.org:443", "/", NULL)), 0);
	/* The bare domain is not a subdomain of itself, nor is a look-alike. */
	cr_assert_eq(match(svc, req("GET", "example.org", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", ".example.org", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "badexample.org", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "a.example.org.x", "/", NULL)), -1);
}

Test(routes, path_exact_and_query)
{
	const struct config_service *svc = load("      - match: {path: {exact: /healthz}}\n");

	cr_assert_eq(match(svc, req("GET", "a", "/healthz", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/healthz?full=1", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/healthz?", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/healthz/", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/Healthz", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/health", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/healthzz", NULL)), -1);
	/* Not a path: absolute-form, asterisk-form, empty. */
	cr_assert_eq(match(svc, req("GET", "a", "http://a/healthz", NULL)), -1);
	cr_assert_eq(match(svc, req("OPTIONS", "a", "*", NULL)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "", NULL)), -1);
}

Test(routes, path_prefix_segments)
{
	const struct config_service *svc = load("      - match: {path: {prefix: /api/}}\n"
						"      - match: {path: {prefix: /}}\n");

	cr_assert_eq(match(svc, req("GET", "a", "/api", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/api/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/api/v1/x", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/api?x=/y", NULL)), 0);
	/* "/apis" is another segment; the "/" route catches it. */
	cr_assert_eq(match(svc, req("GET", "a", "/apis", NULL)), 1);
	cr_assert_eq(match(svc, req("GET", "a", "/ap", NULL)), 1);
	cr_assert_eq(match(svc, req("GET", "a", "/?api/", NULL)), 1);
	cr_assert_eq(match(svc, req("GET", "a", "/", NULL)), 1);
	cr_assert_eq(match(svc, req("CONNECT", "a", "a:443", NULL)), -1);
}

Test(routes, methods_case_sensitive)
{
	const struct config_service *svc = load("      - match: {methods: [GET, HEAD]}\n");

	cr_assert_eq(match(svc, req("GET", "a", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("HEAD", "a", "/", NULL)), 0);
	cr_assert_eq(match(svc, req("get", "a", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GE", "a", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("GETX", "a", "/", NULL)), -1);
	cr_assert_eq(match(svc, req("POST", "a", "/", NULL)), -1);
}

Test(routes, headers_all_must_match)
{
	const struct config_service *svc =
	    load("      - match: {headers: {X-Canary: \"true\", x-tenant: Acme}}\n");
	struct hdrs both = {{{"x-canary", "true"}, {"X-TENANT", "Acme"}}, 2, 0};
	struct hdrs one = {{{"x-canary", "true"}}, 1, 0};
	struct hdrs wrong_case = {{{"x-canary", "TRUE"}, {"x-tenant", "Acme"}}, 2, 0};
	struct hdrs longer = {{{"x-canary", "true "}, {"x-tenant", "Acme"}}, 2, 0};
	struct hdrs empty = {{{"x-canary", ""}, {"x-tenant", "Acme"}}, 2, 0};
	struct route_request r;

	cr_assert_eq(match(svc, req("GET", "a", "/", &both)), 0);
	cr_assert_eq(both.calls, 2);
	cr_assert_eq(match(svc, req("GET", "a", "/", &one)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/", &wrong_case)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/", &longer)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/", &empty)), -1);
	cr_assert_eq(match(svc, req("GET", "a", "/", NULL)), -1);
	/* No lookup function: no headers to match. */
	r = req("GET", "a", "/", &both);
	r.header = NULL;
	cr_assert_null(http_routes_match(svc, &r));
}

Test(routes, first_match_wins_and_criteria_combine)
{
	const struct config_service *svc =
	    load("      - match: {hosts: [a.com], path: {prefix: /admin}, methods: [POST]}\n"
		 "      - match: {hosts: [a.com], headers: {x-canary: \"1\"}}\n"
		 "      - match: {hosts: [a.com]}\n"
		 "      - match: {hosts: [a.com], path: {exact: /never}}\n");
	struct hdrs canary = {{{"x-canary", "1"}}, 1, 0};

	cr_assert_eq(match(svc, req("POST", "a.com", "/admin/x", &canary)), 0);
	cr_assert_eq(match(svc, req("GET", "a.com", "/admin/x", &canary)), 1);
	cr_assert_eq(match(svc, req("POST", "a.com", "/x", NULL)), 2);
	/* Shadowed by the catch-all for a.com above it. */
	cr_assert_eq(match(svc, req("GET", "a.com", "/never", NULL)), 2);
	cr_assert_eq(match(svc, req("POST", "b.com", "/admin", &canary)), -1);
	/* Headers are looked at only once the cheaper criteria hold. */
	canary.calls = 0;
	cr_assert_eq(match(svc, req("GET", "b.com", "/", &canary)), -1);
	cr_assert_eq(canary.calls, 0);
}

Test(routes, pick_single_and_implicit_backend)
{
	const struct config_service *svc = load("      - match: {path: {exact: /a}}\n"
						"      - backends: [{service: web-v2}]\n");

	/* Without backends: the service itself (index 0), whatever rnd says. */
	cr_assert_eq(http_routes_pick_backend(&svc->routes[0], 0), 0);
	cr_assert_eq(http_routes_pick_backend(&svc->routes[0], UINT32_MAX), 0);
	cr_assert_eq(http_routes_pick_backend(&svc->routes[1], 0), 2);
	cr_assert_eq(http_routes_pick_backend(&svc->routes[1], UINT32_MAX), 2);
}

Test(routes, pick_edges_and_zero_weight)
{
	const struct config_service *svc = load("      - backends:\n"
						"          - {service: web-v1, weight: 0}\n"
						"          - {service: web-v2, weight: 1}\n"
						"          - {service: web, weight: 1}\n"
						"          - {service: web-v1, weight: 0}\n");
	const struct config_route *r = &svc->routes[0];

	/* Two equal halves of the rnd space; weight 0 never picked, even at the ends. */
	cr_assert_eq(http_routes_pick_backend(r, 0), 2);
	cr_assert_eq(http_routes_pick_backend(r, 0x7fffffffu), 2);
	cr_assert_eq(http_routes_pick_backend(r, 0x80000000u), 0);
	cr_assert_eq(http_routes_pick_backend(r, UINT32_MAX), 0);
}

Test(routes, weighted_split_90_10)
{
	const struct config_service *svc = load("      - backends:\n"
						"          - {service: web-v1, weight: 90}\n"
						"          - {service: web-v2, weight: 10}\n");
	const struct config_route *r = &svc->routes[0];
	const uint32_t n = 100000;
	uint32_t i, count[3] = {0};

	for (i = 0; i < n; i++) {
		uint32_t rnd = (uint32_t)(((uint64_t)i << 32) / n);
		uint32_t idx = http_routes_pick_backend(r, rnd);

		cr_assert(idx == 1 || idx == 2, "picked services[%u]", idx);
		count[idx]++;
	}
	/* Within +-1 % of the requests: 90 000 +- 1 000. */
	cr_assert(count[1] >= 89000 && count[1] <= 91000, "web-v1 got %u", count[1]);
	cr_assert(count[2] >= 9000 && count[2] <= 11000, "web-v2 got %u", count[2]);
	cr_assert_eq(count[1] + count[2], n);
}

Test(routes, weighted_split_many_backends)
{
	const struct config_service *svc = load("      - backends:\n"
						"          - {service: web-v1, weight: 1}\n"
						"          - {service: web-v2, weight: 2}\n"
						"          - {service: web, weight: 7}\n");
	const struct config_route *r = &svc->routes[0];
	const uint32_t n = 100000;
	uint32_t i, count[3] = {0};

	for (i = 0; i < n; i++)
		count[http_routes_pick_backend(r, (uint32_t)(((uint64_t)i << 32) / n))]++;
	cr_assert(count[1] >= 9000 && count[1] <= 11000, "web-v1 got %u", count[1]);
	cr_assert(count[2] >= 19000 && count[2] <= 21000, "web-v2 got %u", count[2]);
	cr_assert(count[0] >= 69000 && count[0] <= 71000, "web got %u", count[0]);
}

/* RFC 3986 6.2.2: unreserved escapes decoded, other escapes upper-cased, dot-segments removed. */
Test(routes, normalize_path)
{
	static const char *cases[][2] = {
	    {"/", "/"},
	    {"/a/b", "/a/b"},
	    {"/a/./b", "/a/b"},
	    {"/a/b/../c", "/a/c"},
	    {"/a/b/..", "/a/"},
	    {"/a/.", "/a/"},
	    {"/..", "/"},
	    {"/../../a", "/a"},
	    {"/a/../../b/", "/b/"},
	    {"/%61%70%69/v1", "/api/v1"},
	    {"/%7Euser%2d%2E%5f", "/~user-._"},
	    {"/a/%2e%2e/b", "/b"},
	    {"/a/%2E/b", "/a/b"},
	    {"/a%2fb", "/a%2Fb"},
	    {"/a%2Fb", "/a%2Fb"},
	    {"/a%20b", "/a%20b"},
	    {"/a%zz", "/a%zz"},
	    {"/a%4", "/a%4"},
	    {"//a//b", "//a//b"},
	    {"/a/..b/.c", "/a/..b/.c"},
	    {"/api?x=/../y", "/api"},
	};
	char out[ROUTES_MAX_PATH];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n =
		    http_routes_normalize_path(cases[i][0], strlen(cases[i][0]), out, sizeof(out));

		cr_assert_neq(n, ROUTES_NO_PATH, "%s", cases[i][0]);
		cr_assert(n == strlen(cases[i][1]) && !memcmp(out, cases[i][1], n),
			  "%s: got '%.*s', want '%s'", cases[i][0], (int)n, out, cases[i][1]);
	}
	cr_assert_eq(http_routes_normalize_path("*", 1, out, sizeof(out)), ROUTES_NO_PATH);
	cr_assert_eq(http_routes_normalize_path("a/b", 3, out, sizeof(out)), ROUTES_NO_PATH);
	cr_assert_eq(http_routes_normalize_path("", 0, out, sizeof(out)), ROUTES_NO_PATH);
}

/* Routes match the normalised path: an encoded or dotted path cannot dodge one. */
Test(routes, paths_match_normalised)
{
	const struct config_service *svc = load("      - match: {path: {prefix: /admin}}\n"
						"      - match: {path: {exact: /~me}}\n");
	static char longpath[ROUTES_MAX_PATH + 16];

	cr_assert_eq(match(svc, req("GET", "a", "/admin/x", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/%61dmin/x", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/public/../admin", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/./admin", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/x/%2e%2e/admin/", NULL)), 0);
	cr_assert_eq(match(svc, req("GET", "a", "/%7Eme", NULL)), 1);
	cr_assert_eq(match(svc, req("GET", "a", "/%7eme?q", NULL)), 1);
	cr_assert_eq(match(svc, req("GET", "a", "/admin/../public", NULL)), -1);
	/* An encoded '/' is not a separator. */
	cr_assert_eq(match(svc, req("GET", "a", "/admin%2Fx", NULL)), -1);
	/* Too long to normalise: no path criterion holds. */
	memset(longpath, 'a', sizeof(longpath) - 1);
	memcpy(longpath, "/admin/", 7);
	cr_assert_eq(match(svc, req("GET", "a", longpath, NULL)), -1);
}
