// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The model's rules: stable slots, relist by mark and sweep, endpoint
 * selection (ready, else serving+terminating), named target ports,
 * headless services, (VIP, port) conflicts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "discovery/model.h"

static struct model *m;
static struct config *base, *out;

static void setup(void)
{
	static const char yaml[] = "node: {address_v4: 10.0.0.1}\n"
				   "services:\n"
				   "  - name: static\n"
				   "    vips: [10.96.0.1]\n"
				   "    ports: [{port: 80}]\n"
				   "    endpoints: [{address: 10.1.0.1}]\n";
	char err[256];

	m = model_new();
	cr_assert_not_null(m);
	out = NULL;
	cr_assert_eq(config_parse("base", yaml, strlen(yaml), &base, err, sizeof(err)), 0, "%s",
		     err);
}

static void teardown(void)
{
	config_free(out);
	config_free(base);
	model_free(m);
}

TestSuite(model, .init = setup, .fini = teardown);

static void put_svc(const char *name, const char *vip, uint16_t port, uint16_t target,
		    const char *target_name)
{
	struct model_service s = {0};

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "%s", name);
	if (vip) {
		cr_assert_eq(addr_parse(vip, &s.vips[0]), 0);
		s.n_vips = 1;
	} else {
		s.headless = true;
	}
	s.n_ports = 1;
	s.ports[0].port = port;
	s.ports[0].target_port = target;
	snprintf(s.ports[0].target_name, sizeof(s.ports[0].target_name), "%s",
		 target_name ? target_name : "");
	cr_assert_eq(model_put_service(m, &s), 0);
}

struct ep_spec {
	const char *addr;
	bool ready, serving, terminating;
};

static void put_slice(const char *name, const char *svc, const char *port_name, uint16_t port,
		      const struct ep_spec *eps, int n)
{
	struct model_slice s = {0};

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "%s", name);
	snprintf(s.service, sizeof(s.service), "%s", svc);
	s.n_ports = 1;
	snprintf(s.ports[0].name, sizeof(s.ports[0].name), "%s", port_name);
	s.ports[0].port = port;
	s.eps = calloc((size_t)n + 1, sizeof(*s.eps));
	for (int i = 0; i < n; i++) {
		cr_assert_eq(addr_parse(eps[i].addr, &s.eps[i].addr), 0);
		s.eps[i].ready = eps[i].ready;
		s.eps[i].serving = eps[i].serving;
		s.eps[i].terminating = eps[i].terminating;
		s.eps[i].node = strdup("node-a");
	}
	s.n_eps = n;
	cr_assert_eq(model_put_slice(m, &s), 0);
	cr_assert_null(s.eps, "the model takes the endpoints");
}

static void build(struct model_build_stats *st)
{
	config_free(out);
	out = NULL;
	cr_assert_eq(model_build(m, base, &out, st), 0);
}

static const struct config_service *find(const char *name)
{
	for (int i = 0; i < out->n_services; i++)
		if (!strcmp(out->services[i]->name, name))
			return out->services[i];
	return NULL;
}

static void expect_eps(const struct config_service *svc, const char *want)
{
	char got[256] = "", a[ADDR_STR_MAX];

	for (int i = 0; i < svc->n_endpoints; i++) {
		if (i)
			strcat(got, " ");
		strcat(got, addr_ntop(&svc->endpoints[i].addr, a, sizeof(a)));
	}
	cr_expect_str_eq(got, want);
}

Test(model, base_services_come_first_model_services_get_stable_ids)
{
	const struct config_service *web, *api;

	put_svc("web", "10.96.0.10", 80, 8080, NULL);
	put_svc("api", "10.96.0.11", 80, 8080, NULL);
	build(NULL);
	cr_assert_eq(out->n_services, 3);
	cr_expect_str_eq(out->services[0]->name, "static");
	cr_expect_eq(out->services[0]->n_endpoints, 1);
	web = find("web");
	api = find("api");
	cr_assert(web && api);
	cr_expect_eq(web->id, 1);
	cr_expect_eq(api->id, 2);
	for (int i = 0; i < out->n_services; i++)
		cr_expect_eq(out->services[i]->id, (uint32_t)i, "services[id] is that service");

	/* web leaves: api keeps its id, web's becomes vacant, then reused. */
	cr_assert_eq(model_del_service(m, "shop", "web"), 0);
	build(NULL);
	cr_assert_eq(out->n_services, 3);
	cr_expect_eq(out->services[1]->n_vips, 0, "vacant");
	cr_expect_str_eq(out->services[1]->name, "");
	cr_expect_eq(find("api")->id, 2);
	put_svc("cart", "10.96.0.12", 80, 8080, NULL);
	build(NULL);
	cr_expect_eq(find("cart")->id, 1);
	cr_expect_eq(model_del_service(m, "shop", "nope"), -ENOENT);
}

Test(model, ready_endpoints_else_serving_terminating)
{
	const struct ep_spec eps[] = {
	    {"10.2.0.1", true, true, false},
	    {"10.2.0.2", false, true, true},
	    {"10.2.0.3", false, false, false},
	};
	const struct ep_spec draining[] = {
	    {"10.2.0.2", false, true, true},
	    {"10.2.0.4", false, false, true},
	};
	struct model_build_stats st;

	put_svc("web", "10.96.0.10", 80, 8080, NULL);
	put_slice("web-1", "web", "http", 8080, eps, 3);
	build(&st);
	expect_eps(find("web"), "10.2.0.1");
	/* Conditions and topology reach the config, strings in its own table. */
	cr_expect(find("web")->endpoints[0].ready);
	cr_expect_not(find("web")->endpoints[0].terminating);
	cr_expect_str_eq(find("web")->endpoints[0].node, "node-a");
	cr_expect_null(find("web")->endpoints[0].zone);
	cr_expect(find("static")->endpoints[0].ready, "file endpoints are ready");
	cr_expect_eq(st.services, 1); /* model services only */
	cr_expect_eq(st.endpoints, 1);

	/* No ready endpoint left: serving and terminating ones carry on. */
	put_slice("web-1", "web", "http", 8080, draining, 2);
	build(NULL);
	expect_eps(find("web"), "10.2.0.2");
	cr_expect(find("web")->endpoints[0].terminating);

	/* Slices of the same service add up; a slice without its service waits. */
	put_slice("web-2", "web", "http", 8080, eps, 1);
	put_slice("other-1", "other", "http", 8080, eps, 1);
	build(NULL);
	expect_eps(find("web"), "10.2.0.1");
}

Test(model, named_target_port_resolves_from_slices)
{
	const struct ep_spec a[] = {{"10.2.0.1", true, true, false}};
	const struct ep_spec b[] = {{"10.2.0.2", true, true, false}};
	struct model_build_stats st;
	const struct config_service *web;

	put_svc("web", "10.96.0.10", 80, 0, "http");
	put_slice("web-1", "web", "http", 8080, a, 1);
	build(&st);
	web = find("web");
	cr_expect_eq(web->ports[0].target_port, 8080);
	expect_eps(web, "10.2.0.1");

	/* A slice that maps the name elsewhere cannot share the port: left out. */
	put_slice("web-2", "web", "http", 9090, b, 1);
	build(&st);
	web = find("web");
	cr_expect_eq(web->n_endpoints, 1);
	cr_expect_eq(st.endpoints_unresolved, 1);
}

Test(model, headless_and_conflicts_are_not_published)
{
	struct model_build_stats st;

	put_svc("db-headless", NULL, 5432, 5432, NULL);
	put_svc("clash", "10.96.0.1", 80, 80, NULL); /* the file's "static" has it */
	build(&st);
	cr_expect_null(find("db-headless"));
	cr_expect_null(find("clash"));
	cr_expect_eq(st.skipped_headless, 1);
	cr_expect_eq(st.skipped_conflict, 1);
	cr_expect_eq(st.services, 0);
}

Test(model, relist_mark_sweep_keeps_survivors_slots)
{
	put_svc("a", "10.96.0.10", 80, 80, NULL);
	put_svc("b", "10.96.0.11", 80, 80, NULL);
	put_slice("a-1", "a", "", 80, NULL, 0);
	model_mark(m, 0);
	model_mark(m, 1);
	put_svc("b", "10.96.0.11", 80, 80, NULL); /* b survives the relist */
	cr_expect_eq(model_sweep(m, 0), 1);
	cr_expect_eq(model_sweep(m, 1), 1);
	cr_expect_eq(model_n_services(m), 1);
	cr_expect_eq(model_n_slices(m), 0);
	build(NULL);
	cr_expect_eq(find("b")->id, 2, "b kept its slot");
}

Test(model, copy_keeps_strings_and_routes)
{
	static const char yaml[] =
	    "node: {address_v4: 10.0.0.1}\n"
	    "services:\n"
	    "  - name: web\n"
	    "    vips: [10.96.0.10]\n"
	    "    ports: [{port: 80, protocol: http}]\n"
	    "    routes:\n"
	    "      - match: {hosts: [\"*.example.com\"], path: {prefix: /api},\n"
	    "                headers: {x-env: canary}}\n";
	const struct ep_spec eps[] = {{"10.2.0.1", true, true, false}};
	const struct config_service *api;
	struct config *routed, *copy;
	char err[256];

	cr_assert_eq(config_parse("r", yaml, strlen(yaml), &routed, err, sizeof(err)), 0, "%s",
		     err);
	put_svc("api", "10.96.0.11", 80, 8080, NULL);
	put_slice("api-1", "api", "http", 8080, eps, 1);
	cr_assert_eq(model_build(m, routed, &out, NULL), 0);
	cr_assert_eq(config_copy(out, out->n_services + 3, &copy), 0);
	config_free(out);
	out = copy; /* the copy must stand alone: out is gone */
	cr_assert_eq(out->n_services, 5);
	cr_assert_eq(out->services[0]->n_routes, 1);
	cr_expect_str_eq(out->services[0]->routes[0].path, "/api");
	cr_expect_str_eq(out->services[0]->routes[0].headers[0].value, "canary");
	cr_expect_str_eq(find("api")->endpoints[0].node, "node-a");
	api = find("api");
	cr_expect(api->endpoints[0].node >= api->strings &&
		      api->endpoints[0].node < api->strings + api->strings_len,
		  "an endpoint's strings live with its service");
	cr_expect_eq(config_copy(out, 1, &copy), -EINVAL);
	config_free(routed);
}

/* A port without a protocol is detected, except on proxy.opaque_ports (port or target). */
Test(model, undeclared_ports_detect_except_opaque_ports)
{
	struct model_service s = {0};
	const struct config_service *svc;
	/* kernel: named by shoal.io/kernel-ports; kernel mode only where the
	 * port turns out opaque TCP, as the file's parser rules. */
	static const struct {
		uint16_t port, target;
		enum config_protocol app, want;
		bool kernel;
		enum config_port_mode mode;
	} ports[] = {
	    {8080, 8080, CONFIG_PROTO_DETECT, CONFIG_PROTO_DETECT, true, CONFIG_MODE_PROXY},
	    {5432, 5432, CONFIG_PROTO_DETECT, CONFIG_PROTO_TCP, true, CONFIG_MODE_KERNEL}, /* opaque port */
	    {7000, 6379, CONFIG_PROTO_DETECT, CONFIG_PROTO_TCP, false, CONFIG_MODE_PROXY}, /* opaque target */
	    {3306, 3306, CONFIG_PROTO_HTTP, CONFIG_PROTO_HTTP, true, CONFIG_MODE_PROXY},	/* declared wins */
	    {9090, 9090, CONFIG_PROTO_H2C, CONFIG_PROTO_H2C, false, CONFIG_MODE_PROXY},
	};

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "mixed");
	cr_assert_eq(addr_parse("10.96.0.9", &s.vips[0]), 0);
	s.n_vips = 1;
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		s.ports[i].port = ports[i].port;
		s.ports[i].target_port = ports[i].target;
		s.ports[i].app = ports[i].app;
		s.ports[i].kernel = ports[i].kernel;
	}
	s.n_ports = (int)(sizeof(ports) / sizeof(ports[0]));
	cr_assert_eq(model_put_service(m, &s), 0);
	build(NULL);
	svc = find("mixed");
	cr_assert_not_null(svc);
	cr_assert_eq(svc->n_ports, s.n_ports);
	for (int i = 0; i < svc->n_ports; i++) {
		cr_expect_eq(svc->ports[i].protocol, ports[i].want, "port %u: %d, want %d",
			     ports[i].port, svc->ports[i].protocol, ports[i].want);
		cr_expect_eq(svc->ports[i].declared, ports[i].app != CONFIG_PROTO_DETECT, "port %u",
			     ports[i].port);
		cr_expect_eq(svc->ports[i].mode, ports[i].mode, "port %u: mode %d, want %d",
			     ports[i].port, svc->ports[i].mode, ports[i].mode);
	}
}

/*
 * shoal.io/upstream-protocol: http1 reaches the config only on ports that
 * carry HTTP/2 (h2c, or detected), as the file's parser rules.
 */
Test(model, http1_upstream_only_on_http2_ports)
{
	struct model_service s = {0};
	const struct config_service *svc;
	static const struct {
		uint16_t port;
		enum config_protocol app;
		enum config_upstream_protocol want;
	} ports[] = {
	    {80, CONFIG_PROTO_H2C, CONFIG_UPSTREAM_HTTP1},
	    {8080, CONFIG_PROTO_DETECT, CONFIG_UPSTREAM_HTTP1},
	    {5432, CONFIG_PROTO_DETECT, CONFIG_UPSTREAM_SAME}, /* opaque port: tcp */
	    {81, CONFIG_PROTO_HTTP, CONFIG_UPSTREAM_SAME},
	};

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "h1");
	cr_assert_eq(addr_parse("10.96.0.9", &s.vips[0]), 0);
	s.n_vips = 1;
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		s.ports[i].port = s.ports[i].target_port = ports[i].port;
		s.ports[i].app = ports[i].app;
		s.ports[i].http1_upstream = true;
	}
	s.n_ports = (int)(sizeof(ports) / sizeof(ports[0]));
	cr_assert_eq(model_put_service(m, &s), 0);
	build(NULL);
	svc = find("h1");
	cr_assert_not_null(svc);
	for (int i = 0; i < svc->n_ports; i++)
		cr_expect_eq(svc->ports[i].upstream, ports[i].want, "port %u: %d, want %d",
			     ports[i].port, svc->ports[i].upstream, ports[i].want);
}

/* What model_slice_refuse told its callback, "addr why;" each. */
static char refused_log[512];

static void note_refused(void *ctx, const struct model_slice *s, const struct model_endpoint *ep,
			 const char *why)
{
	char a[ADDR_STR_MAX];
	size_t n = strlen(refused_log);

	(void)ctx;
	cr_expect_str_eq(s->name, "mixed");
	snprintf(refused_log + n, sizeof(refused_log) - n, "%s %s;",
		 addr_ntop(&ep->addr, a, sizeof(a)), why);
}

/* Loopback, link-local, unspecified, multicast and the node's own go;
 * the rest stay, in order, with their strings. */
Test(model, slice_refuses_addresses_no_endpoint_can_have)
{
	static const char *const addrs[] = {
	    "10.244.1.5", "127.0.0.1",	"169.254.169.254", "10.0.0.1", "224.0.0.251",
	    "0.0.0.0",	  "10.244.1.6", "fe80::1",	   "::1",      "fd00::1",
	};
	struct model_slice s = {.ns = "shop", .name = "mixed"};
	struct shoal_addr own[2] = {0};
	int n = (int)(sizeof(addrs) / sizeof(addrs[0]));
	char a[ADDR_STR_MAX];

	s.eps = calloc((size_t)n, sizeof(*s.eps));
	cr_assert_not_null(s.eps);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(addr_parse(addrs[i], &s.eps[i].addr), 0);
		s.eps[i].node = strdup(addrs[i]); /* freed with the endpoint, or kept */
	}
	s.n_eps = n;
	addr_parse("10.0.0.1", &own[0]);
	addr_parse("fd00::1", &own[1]);
	refused_log[0] = '\0';

	cr_assert_eq(model_slice_refuse(&s, own, 2, note_refused, NULL), 8);
	cr_expect_str_eq(refused_log,
			 "127.0.0.1 loopback;169.254.169.254 link-local;10.0.0.1 the node's own;"
			 "224.0.0.251 multicast;0.0.0.0 unspecified;fe80::1 link-local;::1 "
			 "loopback;fd00::1 the node's own;");
	cr_assert_eq(s.n_eps, 2);
	cr_expect_str_eq(addr_ntop(&s.eps[0].addr, a, sizeof(a)), "10.244.1.5");
	cr_expect_str_eq(s.eps[0].node, "10.244.1.5");
	cr_expect_str_eq(addr_ntop(&s.eps[1].addr, a, sizeof(a)), "10.244.1.6");
	cr_expect_str_eq(s.eps[1].node, "10.244.1.6");
	/* A zero own address (no IPv6 on the node) matches nothing. */
	memset(&own[1], 0, sizeof(own[1]));
	cr_expect_eq(model_slice_refuse(&s, own, 2, NULL, NULL), 0);
	model_slice_clear(&s);
}

/*
 * Consecutive builds share what did not change (docs/discovery.md,
 * "Snapshots"): the base's services, unchanged model services and vacant
 * ids are the same objects; a changed service is a new one.
 */
Test(model, builds_share_the_services_that_did_not_change)
{
	const struct ep_spec eps1[] = {{"10.2.0.1", true, true, false}};
	const struct ep_spec eps2[] = {{"10.2.0.2", true, true, false}};
	const struct config_service *web, *api, *vacant;
	struct config *prev;

	put_svc("web", "10.96.0.10", 80, 8080, NULL);
	put_svc("gone", "10.96.0.12", 80, 8080, NULL);
	put_svc("api", "10.96.0.11", 80, 8080, NULL);
	put_slice("web-1", "web", "", 8080, eps1, 1);
	put_slice("api-1", "api", "", 8080, eps1, 1);
	build(NULL);
	cr_assert_eq(model_del_service(m, "shop", "gone"), 0);
	build(NULL); /* "gone"'s id is vacant from here on */
	prev = out;
	out = NULL;
	cr_assert_eq(model_build(m, base, &out, NULL), 0);
	cr_expect_eq(out->services[0], base->services[0], "the base's service is shared with it");
	for (int i = 0; i < out->n_services; i++)
		cr_expect_eq(out->services[i], prev->services[i], "services[%d] was rebuilt", i);

	/* api's endpoint moves: only api is new. */
	web = find("web");
	api = find("api");
	vacant = prev->services[2];
	cr_assert_str_eq(vacant->name, "", "id 2 was gone's");
	put_slice("api-1", "api", "", 8080, eps2, 1);
	config_free(out);
	out = NULL;
	cr_assert_eq(model_build(m, base, &out, NULL), 0);
	cr_expect_eq(find("web"), web, "web did not change");
	cr_expect_eq(out->services[2], vacant, "the vacant id is shared too");
	cr_expect_neq(find("api"), api, "api changed");
	expect_eps(find("api"), "10.2.0.2");
	expect_eps(api, "10.2.0.1"); /* the old config still holds the old api, whole */
	cr_expect_eq(find("api")->id, api->id);
	/* Held by the model (its last build), prev and out: a reference each. */
	cr_expect_eq(atomic_load(&web->refs), 3, "web refs %u", atomic_load(&web->refs));
	config_free(prev);
	cr_expect_eq(atomic_load(&web->refs), 2);
	cr_expect_str_eq(find("web")->name, "web");
}

/* A service's zone and node names live with it: its first config may go first. */
Test(model, shared_services_keep_their_strings)
{
	const struct ep_spec eps[] = {{"10.2.0.1", true, true, false}};
	struct config *first;

	put_svc("api", "10.96.0.11", 80, 8080, NULL);
	put_slice("api-1", "api", "", 8080, eps, 1);
	build(NULL);
	first = out;
	out = NULL;
	put_svc("web", "10.96.0.10", 80, 8080, NULL);
	cr_assert_eq(model_build(m, base, &out, NULL), 0);
	cr_assert_eq(find("api"), first->services[1], "api is shared");
	config_free(first);
	model_free(m); /* the model's slices (and their strings) go too */
	m = model_new();
	cr_assert_not_null(m);
	cr_expect_str_eq(find("api")->endpoints[0].node, "node-a");
}

static void put_pod(const char *name, const char *uid, const char *sa, int want)
{
	struct model_pod p = {0};

	snprintf(p.ns, sizeof(p.ns), "shop");
	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.uid, sizeof(p.uid), "%s", uid);
	snprintf(p.service_account, sizeof(p.service_account), "%s", sa);
	cr_assert_eq(model_put_pod(m, &p), want, "put pod %s (%s, %s)", name, uid, sa);
}

/* A slice of web whose endpoints are the pods named (uid "" for none). */
static void put_pod_slice(const char *const *pods, const char *const *uids, int n)
{
	struct model_slice s = {0};

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "web-1");
	snprintf(s.service, sizeof(s.service), "web");
	s.n_ports = 1;
	s.ports[0].port = 8080;
	s.eps = calloc((size_t)n, sizeof(*s.eps));
	for (int i = 0; i < n; i++) {
		char a[32], key[128];

		snprintf(a, sizeof(a), "10.2.0.%d", i + 1);
		cr_assert_eq(addr_parse(a, &s.eps[i].addr), 0);
		s.eps[i].ready = s.eps[i].serving = true;
		s.eps[i].node = strdup("node-b");
		if (pods[i]) {
			snprintf(key, sizeof(key), "shop/%s", pods[i]);
			s.eps[i].pod = strdup(key);
		}
		if (uids[i][0])
			s.eps[i].pod_uid = strdup(uids[i]);
	}
	s.n_eps = n;
	cr_assert_eq(model_put_slice(m, &s), 0);
}

static const char *ident(int i)
{
	const struct config_service *w = find("web");

	cr_assert_not_null(w);
	cr_assert(i < w->n_endpoints);
	return w->endpoints[i].identity;
}

/*
 * Endpoints get "<ns>/<service account>" of the pod their targetRef names
 * (docs/discovery.md, "Identities"): not when the pod is unknown or is
 * another one (uid), and again when it is replaced.
 */
Test(model, endpoints_take_the_identity_of_their_pod)
{
	const char *const pods[] = {"web-0", "web-1", "web-2", NULL};
	const char *const uids[] = {"u0", "", "u2", ""};
	struct model_build_stats st;
	const struct config_service *before;

	put_svc("web", "10.96.0.10", 80, 8080, NULL);
	put_pod_slice(pods, uids, 4);
	put_pod("web-0", "u0", "web", 0);
	put_pod("web-1", "u1", "web", 0);
	put_pod("web-2", "u2-old", "web", 0);
	build(&st);
	cr_expect_str_eq(ident(0), "shop/web");
	cr_expect_str_eq(ident(1), "shop/web", "the reference names no uid: by name");
	cr_expect_null(ident(2), "web-2 is another pod than the slice's");
	cr_expect_null(ident(3), "no targetRef");
	cr_expect_eq(st.endpoints_no_identity, 1, "%u", st.endpoints_no_identity);
	cr_expect_eq(model_n_pods(m), 3);

	/* A status update changes nothing: no rebuild is asked, and the build shares web. */
	before = find("web");
	put_pod("web-0", "u0", "web", 1);
	config_free(out);
	out = NULL;
	cr_assert_eq(model_build(m, base, &out, &st), 0);
	cr_expect_eq(find("web"), before, "same identities: the service is shared");

	/* web-2 replaced by the one the slice names; web-0 replaced, with another account. */
	put_pod("web-2", "u2", "web", 0);
	put_pod("web-0", "u0", "admin", 0);
	build(&st);
	cr_expect_str_eq(ident(0), "shop/admin");
	cr_expect_str_eq(ident(2), "shop/web");
	cr_expect_eq(st.endpoints_no_identity, 0);

	/* Deleted, or finished: no identity. */
	cr_assert_eq(model_del_pod(m, "shop", "web-0"), 0);
	cr_expect_eq(model_del_pod(m, "shop", "web-0"), -ENOENT);
	{
		struct model_pod p = {.finished = true};

		snprintf(p.ns, sizeof(p.ns), "shop");
		snprintf(p.name, sizeof(p.name), "web-1");
		snprintf(p.service_account, sizeof(p.service_account), "web");
		cr_expect_eq(model_put_pod(m, &p), 0, "a finished pod is removed");
		cr_expect_eq(model_put_pod(m, &p), 1, "and is not there to remove again");
	}
	build(&st);
	cr_expect_null(ident(0));
	cr_expect_null(ident(1));
	cr_expect_str_eq(ident(2), "shop/web");
	cr_expect_eq(st.endpoints_no_identity, 2);

	/* A relist drops the pods it did not see. */
	model_mark(m, 2);
	put_pod("web-2", "u2", "web", 1);
	put_pod("web-0", "u0", "web", 0);
	cr_expect_eq(model_sweep(m, 2), 0, "every pod kept was seen");
	model_mark(m, 2);
	put_pod("web-0", "u0", "web", 1);
	cr_expect_eq(model_sweep(m, 2), 1, "web-2 was not in the list");
	build(&st);
	cr_expect_str_eq(ident(0), "shop/web");
	cr_expect_null(ident(2));
}

/* The annotation's mode reaches the published service, and a change of it rebuilds it. */
Test(model, mtls_mode_annotation_is_published)
{
	struct model_service s = {0};
	const struct config_service *before;
	struct config *prev;

	snprintf(s.ns, sizeof(s.ns), "shop");
	snprintf(s.name, sizeof(s.name), "web");
	cr_assert_eq(addr_parse("10.96.0.10", &s.vips[0]), 0);
	s.n_vips = 1;
	s.n_ports = 1;
	s.ports[0].port = 80;
	s.ports[0].target_port = 8080;
	s.mtls_mode = 1 + CONFIG_MTLS_STRICT;
	cr_assert_eq(model_put_service(m, &s), 0);
	build(NULL);
	before = find("web");
	cr_assert_not_null(before);
	cr_expect_eq(before->mtls_mode, 1 + CONFIG_MTLS_STRICT);
	s.mtls_mode = 0;
	cr_assert_eq(model_put_service(m, &s), 0);
	prev = out; /* holds before, so that no new service can take its address */
	out = NULL;
	cr_assert_eq(model_build(m, base, &out, NULL), 0);
	cr_expect_neq(find("web"), before, "the mode changed: a new service");
	cr_expect_eq(find("web")->mtls_mode, 0);
	config_free(prev);

	/* A namespace's annotation: the stricter of the two is published. */
	cr_expect_eq(model_put_ns_mode(m, "shop", 1 + CONFIG_MTLS_PERMISSIVE), 0);
	cr_expect_eq(model_put_ns_mode(m, "shop", 1 + CONFIG_MTLS_PERMISSIVE), 1, "unchanged");
	build(NULL);
	cr_expect_eq(find("web")->mtls_mode, 1 + CONFIG_MTLS_PERMISSIVE);
	s.mtls_mode = 1 + CONFIG_MTLS_STRICT;
	cr_assert_eq(model_put_service(m, &s), 0);
	build(NULL);
	cr_expect_eq(find("web")->mtls_mode, 1 + CONFIG_MTLS_STRICT, "the service's is stricter");
	s.mtls_mode = 1 + CONFIG_MTLS_OFF;
	cr_assert_eq(model_put_service(m, &s), 0);
	build(NULL);
	cr_expect_eq(find("web")->mtls_mode, 1 + CONFIG_MTLS_PERMISSIVE, "the namespace's is");
	/* Relisted without it, or its annotation gone: none. */
	model_mark(m, 3);
	cr_expect_eq(model_sweep(m, 3), 1);
	build(NULL);
	cr_expect_eq(find("web")->mtls_mode, 1 + CONFIG_MTLS_OFF);
	cr_expect_eq(model_put_ns_mode(m, "shop", 1 + CONFIG_MTLS_STRICT), 0);
	cr_expect_eq(model_put_ns_mode(m, "shop", 0), 0, "no annotation: forgotten");
	cr_expect_eq(model_del_ns(m, "shop"), 1, "not kept any more");
}

/* Pod name in shop with account web on node (NULL: not scheduled) at ip and ip2 (NULL: none). */
static void put_host_pod(const char *name, const char *node, const char *ip, const char *ip2,
			 int want)
{
	struct model_pod p = {0};

	snprintf(p.ns, sizeof(p.ns), "shop");
	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.uid, sizeof(p.uid), "u-%s", name);
	snprintf(p.service_account, sizeof(p.service_account), "web");
	snprintf(p.node, sizeof(p.node), "%s", node ? node : "");
	if (ip)
		cr_assert_eq(addr_parse(ip, &p.host[p.n_host++]), 0);
	if (ip2)
		cr_assert_eq(addr_parse(ip2, &p.host[p.n_host++]), 0);
	cr_assert_eq(model_put_pod(m, &p), want, "put pod %s (%s, %s)", name, node, ip);
}

/* The address out publishes for node, "" when none. */
static const char *node_addr(const char *node)
{
	static char buf[INET6_ADDRSTRLEN];
	const struct config_mtls_node *n = config_mtls_node(out, node);

	return n ? addr_ntop(&n->addr, buf, sizeof(buf)) : "";
}

/*
 * Nodes' addresses come from their pods (docs/mtls.md, "Node
 * addresses"): learned with the first pod that reports one, kept while
 * one does, forgotten with the last; mtls.nodes wins over them.
 */
Test(model, pods_teach_their_nodes_address)
{
	static const char yaml[] = "node: {address_v4: 10.0.0.1}\n"
				   "mtls:\n"
				   "  node_name: node-a\n"
				   "  nodes: [{name: node-c, address: 10.9.9.9}]\n"
				   "services: []\n";
	struct config *explicit_base;
	const struct config_nodes *set;
	char err[256];

	put_host_pod("b-0", "node-b", "10.0.2.1", NULL, 0);
	put_host_pod("b-1", "node-b", "10.0.2.1", NULL, 0);
	put_host_pod("c-0", "node-c", "10.0.3.1", NULL, 0);
	put_host_pod("d-0", "node-d", NULL, NULL, 0); /* Pending: no hostIP yet */
	put_host_pod("x-0", NULL, NULL, NULL, 0);     /* not scheduled */
	cr_expect_eq(model_n_nodes(m), 2);
	build(NULL);
	cr_expect_str_eq(node_addr("node-b"), "10.0.2.1");
	cr_expect_str_eq(node_addr("node-c"), "10.0.3.1");
	cr_expect_str_eq(node_addr("node-d"), "", "no pod of node-d reports an address");
	cr_expect_str_eq(node_addr("node-z"), "");

	/* A status update that says the same asks for no build; the set is shared. */
	set = out->nodes_learned;
	put_host_pod("b-1", "node-b", "10.0.2.1", NULL, 1);
	build(NULL);
	cr_expect_eq(out->nodes_learned, set, "nothing changed: the same set");

	/* The kubelet reports d-0's host: a change. */
	put_host_pod("d-0", "node-d", "10.0.4.1", NULL, 0);
	build(NULL);
	cr_expect_str_eq(node_addr("node-d"), "10.0.4.1");

	/* The node moved (the last pod put wins), and back. */
	put_host_pod("b-1", "node-b", "10.0.2.9", NULL, 0);
	build(NULL);
	cr_expect_str_eq(node_addr("node-b"), "10.0.2.9");
	put_host_pod("b-1", "node-b", "10.0.2.1", NULL, 0);

	/* Kept while one pod reports it; forgotten with the last. */
	cr_assert_eq(model_del_pod(m, "shop", "b-0"), 0);
	build(NULL);
	cr_expect_str_eq(node_addr("node-b"), "10.0.2.1", "b-1 is still there");
	{
		struct model_pod done = {.finished = true};

		snprintf(done.ns, sizeof(done.ns), "shop");
		snprintf(done.name, sizeof(done.name), "b-1");
		cr_expect_eq(model_put_pod(m, &done), 0, "finished: removed");
	}
	build(NULL);
	cr_expect_str_eq(node_addr("node-b"), "", "its last pod finished: forgotten");
	cr_expect_eq(model_n_nodes(m), 2);

	/* A pod rescheduled elsewhere (same pod, other node) moves its share. */
	put_host_pod("c-0", "node-e", "10.0.5.1", NULL, 0);
	build(NULL);
	cr_expect_str_eq(node_addr("node-c"), "");
	cr_expect_str_eq(node_addr("node-e"), "10.0.5.1");
	put_host_pod("c-0", "node-c", "10.0.3.1", NULL, 0);

	/* mtls.nodes wins: the operator's word (a dedicated underlay, say). */
	cr_assert_eq(config_parse("explicit", yaml, strlen(yaml), &explicit_base, err, sizeof(err)),
		     0, "%s", err);
	config_free(out);
	out = NULL;
	cr_assert_eq(model_build(m, explicit_base, &out, NULL), 0);
	cr_expect_str_eq(node_addr("node-c"), "10.9.9.9", "mtls.nodes, not the pods' 10.0.3.1");
	cr_expect_str_eq(node_addr("node-d"), "10.0.4.1", "the rest still learned");
	config_free(explicit_base);

	/* Dual stack: this node listens on IPv4 only, so a v6-primary node's IPv4 address. */
	put_host_pod("f-0", "node-f", "fd00::6", "10.0.6.1", 0);
	put_host_pod("g-0", "node-g", "fd00::7", NULL, 0);
	build(NULL);
	cr_expect_str_eq(node_addr("node-f"), "10.0.6.1");
	cr_expect_str_eq(node_addr("node-g"), "fd00::7", "only one: the primary");

	/* A relist that no longer has them forgets their nodes. */
	model_mark(m, 2);
	put_host_pod("c-0", "node-c", "10.0.3.1", NULL, 1);
	cr_expect_eq(model_sweep(m, 2), 4, "d-0, x-0, f-0, g-0");
	cr_expect_eq(model_n_nodes(m), 1);
	build(NULL);
	cr_expect_str_eq(node_addr("node-c"), "10.0.3.1");
	cr_expect_str_eq(node_addr("node-d"), "");
	cr_expect_str_eq(node_addr("node-f"), "");

	/* No pod left: no set at all. */
	cr_assert_eq(model_del_pod(m, "shop", "c-0"), 0);
	build(NULL);
	cr_expect_null(out->nodes_learned);
}
