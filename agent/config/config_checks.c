// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Checks that need the whole file, run once the walk is done: unique
 * service names, unique (VIP, port) claims, route backends that name a
 * service of the file with the right ports, and the node address.
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

/* ---- checks across services ---- */

/* One (VIP, port) a service claims, for finding two claims of the same one. */
struct claim {
	struct shoal_addr vip;
	uint16_t port;
	int svc, port_idx; /* file order, so the later claim is the one reported */
};

static bool claim_same(const struct claim *a, const struct claim *b)
{
	return addr_equal(&a->vip, &b->vip) && a->port == b->port;
}

static int claim_cmp(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	int c = memcmp(&x->vip, &y->vip, sizeof(x->vip));

	if (c)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->svc != y->svc)
		return x->svc < y->svc ? -1 : 1;
	return (x->port_idx > y->port_idx) - (x->port_idx < y->port_idx);
}

/*
 * No two services may claim the same (VIP, port): the BPF service map has
 * one entry per pair. Also bounds the pairs by that map's size. Sorting
 * keeps this O(n log n) for CONFIG_MAX_SERVICES services.
 */
static int check_claims(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct claim *dup = NULL, *first = NULL;
	struct claim *claims;
	size_t n = 0, total = 0, k, end;
	char text[ADDR_STR_MAX];
	int i, v, j, err = 0;

	for (i = 0; i < cfg->n_services; i++) {
		total += (size_t)cfg->services[i]->n_vips * cfg->services[i]->n_ports;
		if (total > SHOAL_MAX_SERVICE_KEYS) {
			cp_path_set(p, "services[%d]", i);
			return cp_fail(p, cfg->services[i]->line,
				       "the file claims more than %d (VIP, port) pairs in all",
				       SHOAL_MAX_SERVICE_KEYS);
		}
	}
	if (total < 2)
		return 0;
	claims = calloc(total, sizeof(*claims));
	if (!claims)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *svc = cfg->services[i];

		for (v = 0; v < svc->n_vips; v++) {
			for (j = 0; j < svc->n_ports; j++) {
				claims[n].vip = svc->vips[v];
				claims[n].port = svc->ports[j].port;
				claims[n].svc = i;
				claims[n].port_idx = j;
				n++;
			}
		}
	}
	qsort(claims, n, sizeof(*claims), claim_cmp);
	/*
	 * Each run of equal (VIP, port) is in file order: its head is the
	 * first claim, the next one the conflict. Report the conflict that
	 * comes first in the file.
	 */
	for (k = 0; k < n; k = end) {
		for (end = k + 1; end < n && claim_same(&claims[k], &claims[end]); end++)
			;
		if (end - k < 2)
			continue;
		if (!dup || claims[k + 1].svc < dup->svc ||
		    (claims[k + 1].svc == dup->svc && claims[k + 1].port_idx < dup->port_idx)) {
			first = &claims[k];
			dup = &claims[k + 1];
		}
	}
	if (dup) {
		const struct config_service *s = cfg->services[dup->svc];
		const struct config_service *o = cfg->services[first->svc];

		cp_path_set(p, "services[%d].ports[%d].port", dup->svc, dup->port_idx);
		err = cp_fail(p, s->ports[dup->port_idx].line,
			      "%s is already claimed by services[%d] (%s/%s, line %d)",
			      addr_format(&dup->vip, htons(dup->port), text, sizeof(text)),
			      first->svc, o->namespace, o->name, o->line);
	}
	free(claims);
	return err;
}

static bool svc_same_name(const struct config_service *a, const struct config_service *b)
{
	return !strcmp(a->namespace, b->namespace) && !strcmp(a->name, b->name);
}

static int svc_name_cmp(const void *a, const void *b)
{
	const struct config_service *x = *(const struct config_service *const *)a;
	const struct config_service *y = *(const struct config_service *const *)b;
	int c = strcmp(x->namespace, y->namespace);

	if (!c)
		c = strcmp(x->name, y->name);
	if (!c)
		c = (x->id > y->id) - (x->id < y->id);
	return c;
}

/* namespace/name identifies a service to users and metrics: it must be unique. */
static int check_names(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct config_service **order, *dup = NULL, *first = NULL;
	int i, end, err = 0;

	if (cfg->n_services < 2)
		return 0;
	order = calloc(cfg->n_services, sizeof(*order));
	if (!order)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++)
		order[i] = cfg->services[i];
	qsort(order, cfg->n_services, sizeof(*order), svc_name_cmp);
	/* As in check_claims: runs are in file order, report the earliest conflict. */
	for (i = 0; i < cfg->n_services; i = end) {
		for (end = i + 1; end < cfg->n_services && svc_same_name(order[i], order[end]);
		     end++)
			;
		if (end - i >= 2 && (!dup || order[i + 1]->id < dup->id)) {
			first = order[i];
			dup = order[i + 1];
		}
	}
	if (dup) {
		cp_path_set(p, "services[%u].name", dup->id);
		err =
		    cp_fail(p, dup->line, "duplicate service %s/%s (also services[%u] at line %d)",
			    dup->namespace, dup->name, first->id, first->line);
	}
	free(order);
	return err;
}

static int svc_ref_cmp(const void *key, const void *elem)
{
	const struct config_route_backend *b = key;
	const struct config_service *s = *(const struct config_service *const *)elem;
	int c = strcmp(b->namespace, s->namespace);

	return c ? c : strcmp(b->name, s->name);
}

/* The service's port numbered port, or NULL. */
static const struct config_port *svc_port(const struct config_service *svc, uint16_t port)
{
	int j;

	for (j = 0; j < svc->n_ports; j++) {
		if (svc->ports[j].port == port)
			return &svc->ports[j];
	}
	return NULL;
}

/*
 * A routed request keeps its port number: the backend service must have
 * every port of svc that can carry HTTP, or part of a split would fail at
 * request time instead of at load. Returns 0 or -EINVAL with err set.
 */
static int check_backend_ports(struct cfg_parser *p, const struct config_service *svc,
			       const struct config_route_backend *be, int i, int r, int b)
{
	const struct config_service *to = p->cfg->services[be->svc_index];
	int j;

	for (j = 0; j < svc->n_ports; j++) {
		const struct config_port *port = &svc->ports[j];

		if (port->protocol != CONFIG_PROTO_HTTP && port->protocol != CONFIG_PROTO_DETECT)
			continue;
		if (svc_port(to, port->port))
			continue;
		cp_path_set(p, "services[%d].routes[%d].backends[%d].service", i, r, b);
		return cp_fail(p, be->line,
			       "%s/%s has no port %u, which requests routed from "
			       "services[%d].ports[%d] (line %d) arrive on",
			       to->namespace, to->name, port->port, i, j, port->line);
	}
	return 0;
}

/*
 * Resolve every backend to its service's index, now that all services are
 * known (a route may name one further down), and check its ports. Names
 * are unique by now, so a binary search over them keeps this
 * O(backends log services). Runs after resolve_opaque_ports.
 */
static int check_backends(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct config_service **order, *const *hit;
	int i, r, b, err = 0;

	if (!p->n_routes_total || cfg->n_services <= 0)
		return 0;
	order = calloc((size_t)cfg->n_services, sizeof(*order));
	if (!order)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++)
		order[i] = cfg->services[i];
	qsort(order, (size_t)cfg->n_services, sizeof(*order), svc_name_cmp);
	for (i = 0; i < cfg->n_services && !err; i++) {
		struct config_service *svc = cfg->services[i];

		for (r = 0; r < svc->n_routes && !err; r++) {
			struct config_route *route = &svc->routes[r];

			for (b = 0; b < route->n_backends && !err; b++) {
				struct config_route_backend *be = &route->backends[b];

				hit = bsearch(be, order, (size_t)cfg->n_services, sizeof(*order),
					      svc_ref_cmp);
				if (hit) {
					be->svc_index = (*hit)->id;
					err = check_backend_ports(p, svc, be, i, r, b);
					continue;
				}
				cp_path_set(p, "services[%d].routes[%d].backends[%d].service", i, r,
					    b);
				err = cp_fail(p, be->line, "no service %s/%s in the file",
					      be->namespace, be->name);
			}
		}
	}
	free(order);
	return err;
}

/* An undeclared port listed in proxy.opaque_ports skips detection. Cannot fail. */
static void resolve_opaque_ports(struct config *cfg)
{
	int i, j, k;

	for (i = 0; i < cfg->n_services; i++) {
		for (j = 0; j < cfg->services[i]->n_ports; j++) {
			struct config_port *port = &cfg->services[i]->ports[j];

			if (port->declared)
				continue;
			for (k = 0; k < cfg->n_opaque_ports; k++) {
				if (cfg->opaque_ports[k] == port->port ||
				    cfg->opaque_ports[k] == port->target_port)
					port->protocol = CONFIG_PROTO_TCP;
			}
		}
	}
}

/*
 * mode: kernel only on opaque TCP ports (declared tcp, or undeclared and in
 * proxy.opaque_ports): the kernel picks at connect time and never sees a
 * byte, so HTTP (routes, retries, per-request balancing), a port whose
 * protocol must be detected, and h2c (to be proxied as HTTP/2) stay in
 * the proxy. The same rule will keep ports that need mTLS or
 * authorization by identity in the proxy (docs/config.md, "mode").
 * Runs after resolve_opaque_ports. Returns 0 or -EINVAL with err set.
 */
static int check_kernel_modes(struct cfg_parser *p)
{
	static const char *const proto_names[] = {
		[CONFIG_PROTO_TCP] = "tcp",
		[CONFIG_PROTO_HTTP] = "http",
		[CONFIG_PROTO_H2C] = "h2c (HTTP/2)",
		[CONFIG_PROTO_DETECT] = "undeclared (detected)",
	};

	for (int i = 0; i < p->cfg->n_services; i++) {
		const struct config_service *svc = p->cfg->services[i];

		for (int j = 0; j < svc->n_ports; j++) {
			const struct config_port *port = &svc->ports[j];

			if (port->mode != CONFIG_MODE_KERNEL || port->protocol == CONFIG_PROTO_TCP)
				continue;
			cp_path_set(p, "services[%d].ports[%d].mode", i, j);
			return cp_fail(p, port->mode_line ? port->mode_line : port->line,
				       "kernel mode needs an opaque TCP port (protocol: tcp, or a port "
				       "in proxy.opaque_ports), but port %u is %s: the kernel picks "
				       "the endpoint at connect time and never sees a request, so "
				       "HTTP stays in the proxy",
				       port->port,
				       (size_t)port->protocol < ARRAY_SIZE(proto_names)
					   ? proto_names[port->protocol]
					   : "not tcp");
		}
	}
	return 0;
}

/*
 * upstream_protocol: http1 only where clients can speak HTTP/2 to the
 * proxy: an h2c port, or an undeclared one (detected; its HTTP/1 clients
 * go to HTTP/1 endpoints anyway). On tcp there is no request to
 * translate, and an http port's requests are HTTP/1.1 already. Runs
 * after resolve_opaque_ports. Returns 0 or -EINVAL with err set.
 */
static int check_upstream_protocols(struct cfg_parser *p)
{
	for (int i = 0; i < p->cfg->n_services; i++) {
		const struct config_service *svc = p->cfg->services[i];

		for (int j = 0; j < svc->n_ports; j++) {
			const struct config_port *port = &svc->ports[j];

			if (port->upstream != CONFIG_UPSTREAM_HTTP1 ||
			    port->protocol == CONFIG_PROTO_H2C ||
			    port->protocol == CONFIG_PROTO_DETECT)
				continue;
			cp_path_set(p, "services[%d].ports[%d].upstream_protocol", i, j);
			return cp_fail(
			    p, port->upstream_line,
			    "http1 translates HTTP/2 streams, so port %u must carry "
			    "HTTP/2 (protocol h2c, http2 or grpc, or undeclared), but it "
			    "is %s",
			    port->port,
			    port->protocol == CONFIG_PROTO_HTTP
				? "http: its requests are HTTP/1.1 already"
				: "tcp (opaque): there is no request to translate");
		}
	}
	return 0;
}

/* Checks that need the whole file, in the order a reader meets the fields. */
int check_config(struct cfg_parser *p)
{
	int err;

	if (addr_is_zero(&p->cfg->proxy_v4) && addr_is_zero(&p->cfg->proxy_v6)) {
		cp_path_set(p, "node");
		return cp_fail(p, p->node_line ? p->node_line : 1,
			       "address_v4 or address_v6 is required");
	}
	err = check_names(p);
	if (err)
		return err;
	err = check_claims(p);
	if (err)
		return err;
	resolve_opaque_ports(p->cfg);
	err = check_kernel_modes(p);
	if (err)
		return err;
	err = check_upstream_protocols(p);
	if (err)
		return err;
	err = check_backends(p);
	if (err)
		return err;
	/* The issued source holds certificates for the accounts of the node's
	 * meshed pods: enrollment is what knows them. */
	if (p->cfg->identity.enabled && p->cfg->identity.source == CONFIG_ID_SOURCE_ISSUED &&
	    !p->cfg->k8s_enroll) {
		cp_path_set(p, "identity.source");
		return cp_fail(p, p->identity_line ? p->identity_line : 1,
			       "issued needs kubernetes.enrollment: the node's meshed pods say "
			       "which service accounts to hold certificates for (or use source: "
			       "files)");
	}
	/* The encrypted hop presents and verifies the identity section's certificates. */
	if (p->cfg->mtls.on && !p->cfg->identity.enabled) {
		const struct config_mtls *m = &p->cfg->mtls;
		bool by_ns = false;

		for (int i = 0; i < m->n_namespaces; i++)
			by_ns |= m->namespaces[i].mode != CONFIG_MTLS_OFF;
		cp_path_set(p, "%s",
			    m->mode != CONFIG_MTLS_OFF ? "mtls.mode"
			    : by_ns		       ? "mtls.namespaces"
						       : "mtls.services");
		return cp_fail(p, p->mtls_line ? p->mtls_line : 1,
			       "needs the identity section: the hop presents and verifies the "
			       "workloads' certificates (docs/mtls.md)");
	}
	return 0;
}
