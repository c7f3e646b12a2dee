// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The services schema: services[] and what each one holds (vips, ports,
 * endpoints, routes, resilience), as field tables for the walker
 * (config_walk.c) and the parse functions of their fields. Checks that
 * need every service are in config_checks.c.
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/addr.h"
#include "resilience/retry_budget.h"

/* ---- services[i].endpoints ---- */

/*
 * An address an endpoint can have: never loopback, link-local, multicast,
 * broadcast or unspecified (addr_endpoint_refusal), which from the node's
 * own netns, where the proxy dials, reach the node itself or nothing. The
 * node's own address is allowed here, unlike in an EndpointSlice: the
 * file is the node operator's, who may mean a host-network server
 * (docs/discovery.md, "Addresses no endpoint can have").
 */
static int parse_endpoint_address(struct cfg_parser *p, void *obj)
{
	struct config_endpoint *ep = obj;
	char text[INET6_ADDRSTRLEN];
	const char *why;
	int err = cp_addr(p, FIELD_IP, &ep->addr);

	if (err)
		return err;
	why = addr_endpoint_refusal(&ep->addr);
	if (why)
		return cp_fail(p, cp_line(p),
			       "must not be %s %s address, got %s (the proxy dials endpoints from "
			       "the node's own network namespace)",
			       strchr("aeiou", why[0]) ? "an" : "a", why,
			       addr_ntop(&ep->addr, text, sizeof(text)));
	return 0;
}

/*
 * The endpoint's node and identity are read into these, then kept in its
 * service's string table once the mapping is read (parse_endpoint).
 */
struct endpoint_text {
	struct config_endpoint *ep;
	char node[CONFIG_MAX_NODE_NAME];
	char identity[CONFIG_MAX_IDENTITY];
};

static int parse_endpoint_addr_field(struct cfg_parser *p, void *obj)
{
	return parse_endpoint_address(p, ((struct endpoint_text *)obj)->ep);
}

/* node: the node name the endpoint runs on (docs/mtls.md). */
static int parse_endpoint_node(struct cfg_parser *p, void *obj)
{
	struct endpoint_text *t = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a node name", t->node, sizeof(t->node));
	size_t n = strlen(t->node);

	if (err)
		return err;
	if (!n || strspn(t->node, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n ||
	    t->node[0] == '-' || t->node[0] == '.')
		return cp_fail(p, cp_line(p),
			       "must be a node name (lower-case letters, digits, '-' and '.'), "
			       "got \"%s\"",
			       cp_echo(t->node, n, buf));
	return 0;
}

/* identity: "<namespace>/<service account>" (docs/mtls.md). */
static int parse_endpoint_identity(struct cfg_parser *p, void *obj)
{
	struct endpoint_text *t = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "an identity <namespace>/<service account>", t->identity,
			    sizeof(t->identity));

	if (err)
		return err;
	if (!config_identity_valid(t->identity))
		return cp_fail(p, cp_line(p),
			       "must be <namespace>/<service account> (a DNS label, '/', a DNS "
			       "subdomain), got \"%s\"",
			       cp_echo(t->identity, strlen(t->identity), buf));
	return 0;
}

static const struct field endpoint_fields[] = {
    {"address", FIELD_FUNC, .parse = parse_endpoint_addr_field, .required = true},
    {"node", FIELD_FUNC, .parse = parse_endpoint_node},
    {"identity", FIELD_FUNC, .parse = parse_endpoint_identity},
};

static int parse_endpoint(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_endpoint *ep;
	struct endpoint_text *t;
	struct map_seen seen;
	int err;

	(void)i;
	if (cp_grow(p, (void **)&svc->endpoints, (size_t)svc->n_endpoints, sizeof(*ep)))
		return -ENOMEM;
	ep = &svc->endpoints[svc->n_endpoints++];
	memset(ep, 0, sizeof(*ep));
	ep->ready = ep->serving = true; /* the file lists endpoints to use */
	ep->line = cp_line(p);
	/* ~600 bytes: off the stack of a recursive walk. */
	t = calloc(1, sizeof(*t));
	if (!t)
		return cp_oom(p);
	t->ep = ep;
	err = cp_map(p, endpoint_fields, ARRAY_SIZE(endpoint_fields), t, &seen);
	if (!err && t->node[0] && !(ep->node = config_svc_strings_add(svc, t->node)))
		err = cp_oom(p);
	if (!err && t->identity[0] && !(ep->identity = config_svc_strings_add(svc, t->identity)))
		err = cp_oom(p);
	free(t);
	return err;
}

static const struct seq_spec endpoints_seq = {parse_endpoint, CONFIG_MAX_ENDPOINTS, "endpoints"};

/* ---- services[i].ports ---- */

enum { PORT_F_PORT, PORT_F_TARGET, PORT_F_PROTOCOL, PORT_F_MODE, PORT_F_UPSTREAM };

/* mode: kernel | proxy. Whether the port allows kernel is check_config's. */
static int parse_port_mode(struct cfg_parser *p, void *obj)
{
	static const struct cp_word modes[] = {{"kernel", CONFIG_MODE_KERNEL},
					       {"proxy", CONFIG_MODE_PROXY}};
	struct config_port *port = obj;
	int v, err = cp_word(p, modes, ARRAY_SIZE(modes), &v);

	if (err)
		return err;
	port->mode = v;
	port->mode_line = cp_line(p);
	return 0;
}

/*
 * upstream_protocol: http1 | h2. Whether the port can carry HTTP/2 is
 * check_config's (the opaque ports are known only then).
 */
static int parse_port_upstream(struct cfg_parser *p, void *obj)
{
	static const struct cp_word upstreams[] = {{"http1", CONFIG_UPSTREAM_HTTP1},
						   {"h2", CONFIG_UPSTREAM_SAME}};
	struct config_port *port = obj;
	int v, err = cp_word(p, upstreams, ARRAY_SIZE(upstreams), &v);

	if (err)
		return err;
	port->upstream = v;
	port->upstream_line = cp_line(p);
	return 0;
}

static const struct field port_fields[] = {
    [PORT_F_PORT] = {"port", FIELD_U16, offsetof(struct config_port, port), 1, 65535,
		     .required = true},
    [PORT_F_TARGET] = {"target_port", FIELD_U16, offsetof(struct config_port, target_port), 1,
		       65535},
    [PORT_F_PROTOCOL] = {"protocol", FIELD_PROTO, offsetof(struct config_port, protocol)},
    [PORT_F_MODE] = {"mode", FIELD_FUNC, .parse = parse_port_mode},
    [PORT_F_UPSTREAM] = {"upstream_protocol", FIELD_FUNC, .parse = parse_port_upstream},
};

static int parse_port(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_port *port;
	struct map_seen seen;
	int j, err;

	(void)i;
	port = &svc->ports[svc->n_ports];
	memset(port, 0, sizeof(*port));
	/* Opaque ports turn this into TCP once the whole file is read. */
	port->protocol = CONFIG_PROTO_DETECT;
	port->mode = CONFIG_DEFAULT_PORT_MODE;
	port->line = cp_line(p);
	err = cp_map(p, port_fields, ARRAY_SIZE(port_fields), port, &seen);
	if (err)
		return err;
	if (!(seen.mask & (1u << PORT_F_TARGET)))
		port->target_port = port->port;
	port->declared = seen.mask & (1u << PORT_F_PROTOCOL);
	for (j = 0; j < svc->n_ports; j++) {
		if (svc->ports[j].port == port->port) {
			cp_path_push_key(p, "port");
			return cp_fail(p, seen.line[PORT_F_PORT],
				       "duplicate port %u (also ports[%d] at line %d)", port->port,
				       j, svc->ports[j].line);
		}
	}
	svc->n_ports++;
	return 0;
}

static const struct seq_spec ports_seq = {parse_port, CONFIG_MAX_PORTS, "ports", .none = "ports"};

/* ---- services[i].vips ---- */

static int parse_vip(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct shoal_addr vip;
	int j, err;

	(void)i;
	err = cp_addr(p, FIELD_IP, &vip);
	if (err)
		return err;
	for (j = 0; j < svc->n_vips; j++) {
		if (addr_equal(&svc->vips[j], &vip))
			return cp_fail(p, cp_line(p), "duplicate VIP (also vips[%d])", j);
	}
	svc->vips[svc->n_vips++] = vip;
	return 0;
}

static const struct seq_spec vips_seq = {parse_vip, CONFIG_MAX_VIPS, "VIPs", .none = "addresses"};

/* ---- services[i].routes ---- */

/* A heap copy of n bytes plus a NUL, for strings the config keeps. */
static char *cp_strndup(struct cfg_parser *p, const char *s, size_t n, int *err)
{
	char *d = config_dup_bytes(s, n);

	*err = d ? 0 : cp_oom(p);
	return d;
}

/* RFC 9110 tchar: what methods and header names are made of. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/*
 * A host as a route matches it: a DNS-style name ([a-z0-9._-], no empty
 * label), optionally "*." in front for a suffix, or a bracketed IPv6
 * literal. Lower-cased in place. No port: requests are compared without
 * theirs, so a port here could never match.
 */
static bool host_valid(char *h, bool *suffix)
{
	size_t i, n = strlen(h);
	char *name = h;

	*suffix = false;
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		for (i = 1; i + 1 < n; i++) {
			h[i] = ascii_lower(h[i]);
			if (!strchr("0123456789abcdef:.", h[i]))
				return false;
		}
		return n > 2;
	}
	if (n > 2 && h[0] == '*' && h[1] == '.') {
		*suffix = true;
		name = h + 2;
	}
	n = strlen(name);
	if (n == 0 || name[0] == '.' || name[n - 1] == '.' || strstr(name, ".."))
		return false;
	for (i = 0; i < n; i++) {
		name[i] = ascii_lower(name[i]);
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '-' || name[i] == '.' || name[i] == '_'))
			return false;
	}
	return true;
}

static int parse_host(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	char h[CONFIG_MAX_HOST + 1], buf[CONFIG_ECHO_MAX + 4];
	const char *stored;
	bool suffix;
	int j, err;

	err = cp_string(p, "a host name", h, sizeof(h));
	if (err)
		return err;
	if (!host_valid(h, &suffix))
		return cp_fail(p, cp_line(p),
			       "must be a host name without port, \"*.\" and a name, or [IPv6], "
			       "got \"%s\"",
			       cp_echo(h, strlen(h), buf));
	/* The suffix keeps its dot: "*.a.com" matches "x.a.com", never "xa.com". */
	stored = suffix ? h + 1 : h;
	for (j = 0; j < r->n_hosts; j++) {
		if (r->hosts[j].suffix == suffix && !strcmp(r->hosts[j].name, stored))
			return cp_fail(p, cp_line(p), "duplicate host (also hosts[%d])", j);
	}
	r->hosts[i].name = cp_strndup(p, stored, strlen(stored), &err);
	if (err)
		return err;
	r->hosts[i].len = strlen(stored);
	r->hosts[i].suffix = suffix;
	r->n_hosts++;
	return 0;
}

static const struct seq_spec hosts_seq = {parse_host, CONFIG_MAX_ROUTE_HOSTS, "hosts"};

/*
 * A path criterion: absolute, visible ASCII, no query or fragment (the
 * matcher compares the path alone). A prefix loses its trailing '/', so
 * "/api/" and "/api" both mean "/api" and everything under it.
 */
static int parse_path_value(struct cfg_parser *p, struct config_route *r,
			    enum config_path_match how)
{
	char path[CONFIG_MAX_ROUTE_PATH + 1], buf[CONFIG_ECHO_MAX + 4];
	size_t i, n;
	int err;

	err = cp_string(p, "a path", path, sizeof(path));
	if (err)
		return err;
	n = strlen(path);
	for (i = 0; i < n; i++) {
		if (path[i] <= 0x20 || path[i] >= 0x7f || path[i] == '?' || path[i] == '#')
			break;
	}
	if (path[0] != '/' || i < n)
		return cp_fail(p, cp_line(p),
			       "must start with \"/\" and hold no spaces, '?' or '#', got \"%s\"",
			       cp_echo(path, n, buf));
	if (r->path_match != CONFIG_PATH_ANY)
		return cp_fail(p, cp_line(p), "exact and prefix exclude each other");
	if (how == CONFIG_PATH_PREFIX) {
		while (n > 1 && path[n - 1] == '/')
			n--;
	}
	r->path = cp_strndup(p, path, n, &err);
	if (err)
		return err;
	r->path_len = n;
	r->path_match = how;
	return 0;
}

static int parse_path_exact(struct cfg_parser *p, void *obj)
{
	return parse_path_value(p, obj, CONFIG_PATH_EXACT);
}

static int parse_path_prefix(struct cfg_parser *p, void *obj)
{
	return parse_path_value(p, obj, CONFIG_PATH_PREFIX);
}

static const struct field path_fields[] = {
    {"exact", FIELD_FUNC, .parse = parse_path_exact},
    {"prefix", FIELD_FUNC, .parse = parse_path_prefix},
};

static int check_path(struct cfg_parser *p, void *obj, const struct map_seen *seen)
{
	const struct config_route *r = obj;

	if (r->path_match == CONFIG_PATH_ANY)
		return cp_fail(p, seen->start_line, "exact or prefix is required");
	return 0;
}

/* Upper-case tokens only: methods are case-sensitive, so "get" would never match. */
static int parse_method(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	char m[CONFIG_MAX_METHOD + 1], buf[CONFIG_ECHO_MAX + 4];
	size_t k, n;
	int j, err;

	(void)i;
	err = cp_string(p, "a method", m, sizeof(m));
	if (err)
		return err;
	n = strlen(m);
	for (k = 0; k < n; k++) {
		if (!is_tchar(m[k]) || (m[k] >= 'a' && m[k] <= 'z'))
			break;
	}
	if (n == 0 || k < n)
		return cp_fail(p, cp_line(p), "must be an upper-case method token, got \"%s\"",
			       cp_echo(m, n, buf));
	for (j = 0; j < r->n_methods; j++) {
		if (!strcmp(r->methods[j], m))
			return cp_fail(p, cp_line(p), "duplicate method (also methods[%d])", j);
	}
	memcpy(r->methods[r->n_methods++], m, n + 1);
	return 0;
}

static const struct seq_spec methods_seq = {parse_method, CONFIG_MAX_ROUTE_METHODS, "methods"};

/* match.headers being read: the route, and the line of each header's key. */
struct headers_walk {
	struct config_route *r;
	int lines[CONFIG_MAX_ROUTE_HEADERS];
};

/*
 * One "name: value" of match.headers (a cp_map_walk entry): the field name
 * and the exact value it must have. Names are lower-cased, and two that
 * differ only in case clash.
 */
static int parse_header(struct cfg_parser *p, void *ctx, const char *key, size_t klen, int line)
{
	struct headers_walk *w = ctx;
	struct config_route *r = w->r;
	char val[CONFIG_MAX_HEADER_VALUE + 1], buf[CONFIG_ECHO_MAX + 4];
	struct config_route_header *h;
	size_t k, n, old;
	int j, err;

	old = cp_path_push_key(p, klen ? cp_echo(key, klen, buf) : "\"\"");
	for (k = 0; k < klen && is_tchar(key[k]); k++)
		;
	if (klen == 0 || k < klen || klen > CONFIG_MAX_HEADER_NAME)
		return cp_fail(p, line, "must be a header name (a token of at most %d)",
			       CONFIG_MAX_HEADER_NAME);
	for (j = 0; j < r->n_headers; j++) {
		if (r->headers[j].name_len == klen && !strncasecmp(r->headers[j].name, key, klen))
			return cp_fail(p, line, "duplicate header (first at line %d)", w->lines[j]);
	}
	if (r->n_headers >= CONFIG_MAX_ROUTE_HEADERS)
		return cp_fail(p, line, "too many headers, at most %d", CONFIG_MAX_ROUTE_HEADERS);
	h = &r->headers[r->n_headers];
	h->name = cp_strndup(p, key, klen, &err);
	if (err)
		return err;
	for (k = 0; k < klen; k++)
		h->name[k] = ascii_lower(h->name[k]);
	h->name_len = klen;
	w->lines[r->n_headers++] = line;

	err = cp_next(p);
	if (err)
		return err;
	err = cp_string(p, "a header value", val, sizeof(val));
	if (err)
		return err;
	n = strlen(val);
	for (k = 0; k < n; k++) {
		if ((unsigned char)val[k] < 0x20 && val[k] != '\t')
			break;
		if (val[k] == 0x7f)
			break;
	}
	/* The proxy trims a field's surrounding whitespace, so such a value never matches. */
	if (k < n ||
	    (n && (val[0] == ' ' || val[0] == '\t' || val[n - 1] == ' ' || val[n - 1] == '\t')))
		return cp_fail(p, cp_line(p),
			       "must be a header value without control characters or "
			       "surrounding spaces, got \"%s\"",
			       cp_echo(val, n, buf));
	h->value = cp_strndup(p, val, n, &err);
	if (err)
		return err;
	h->value_len = n;
	cp_path_pop(p, old);
	return 0;
}

/* match.headers: the keys are free, so it has no field table. */
static int parse_headers(struct cfg_parser *p, void *obj)
{
	struct headers_walk w = {.r = obj};

	return cp_map_walk(p, parse_header, &w);
}

static const struct field match_fields[] = {
    {"hosts", FIELD_SEQ, .seq = &hosts_seq},
    {"path", FIELD_MAP, FIELD_MAP_OF(path_fields), .check = check_path},
    {"methods", FIELD_SEQ, .seq = &methods_seq},
    {"headers", FIELD_FUNC, .parse = parse_headers},
};

/* "name" (in the route's own namespace) or "namespace/name"; resolved in check_backends. */
static int parse_backend_service(struct cfg_parser *p, void *obj)
{
	struct config_route_backend *b = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s, *slash, *name;
	size_t n, ns_len, name_len;
	int err;

	err = cp_scalar(p, "a service name", &s, &n);
	if (err)
		return err;
	slash = memchr(s, '/', n);
	name = slash ? slash + 1 : s;
	name_len = n - (size_t)(name - s);
	ns_len = slash ? (size_t)(slash - s) : 0;
	if (memchr(s, '\0', n) || ns_len > CONFIG_MAX_NAME || name_len > CONFIG_MAX_NAME)
		goto bad;
	if (slash) {
		memcpy(b->namespace, s, ns_len);
		b->namespace[ns_len] = '\0';
	} else {
		strcpy(b->namespace, p->svc->namespace);
	}
	memcpy(b->name, name, name_len);
	b->name[name_len] = '\0';
	if (!cp_is_label(b->namespace) || !cp_is_label(b->name))
		goto bad;
	b->line = cp_line(p);
	return 0;
bad:
	return cp_fail(p, cp_line(p),
		       "must be NAME or NAMESPACE/NAME (RFC 1123 labels), got \"%s\"",
		       cp_echo(s, n, buf));
}

enum { BACKEND_F_SERVICE, BACKEND_F_WEIGHT };

static const struct field backend_fields[] = {
    [BACKEND_F_SERVICE] = {"service", FIELD_FUNC, .required = true, .parse = parse_backend_service},
    [BACKEND_F_WEIGHT] = {"weight", FIELD_U32, offsetof(struct config_route_backend, weight), 0,
			  CONFIG_MAX_BACKEND_WEIGHT},
};

static int parse_backend(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	struct config_route_backend *b;
	struct map_seen seen;
	int err;

	(void)i;
	b = &r->backends[r->n_backends];
	memset(b, 0, sizeof(*b));
	b->weight = 1;
	err = cp_map(p, backend_fields, ARRAY_SIZE(backend_fields), b, &seen);
	if (err)
		return err;
	r->total_weight += b->weight;
	b->cum_weight = r->total_weight;
	r->n_backends++;
	return 0;
}

static const struct seq_spec backends_seq = {parse_backend, CONFIG_MAX_ROUTE_BACKENDS, "backends",
					     .none = "backends", .at_key = true};

static int parse_backends(struct cfg_parser *p, void *obj)
{
	struct config_route *r = obj;
	int line = p->key_line, err;

	err = cp_seq(p, &backends_seq, r);
	if (err)
		return err;
	if (r->total_weight == 0)
		return cp_fail(p, line, "weights add up to 0; at least one must be above 0");
	return 0;
}

static int parse_retry_status(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	uint64_t v;
	int j, err;

	(void)i;
	err = cp_uint(p, CONFIG_MIN_RETRY_STATUS, CONFIG_MAX_RETRY_STATUS, &v);
	if (err)
		return err;
	for (j = 0; j < r->n_retry_statuses; j++) {
		if (r->retry_statuses[j] == v)
			return cp_fail(p, cp_line(p), "duplicate status (also retry_statuses[%d])",
				       j);
	}
	r->retry_statuses[r->n_retry_statuses++] = (uint16_t)v;
	return 0;
}

/* Replaces the default {503}; an empty list retries on no status at all. */
static const struct seq_spec retry_statuses_seq = {
    parse_retry_status, CONFIG_MAX_RETRY_STATUSES, "statuses",
    SEQ_REPLACES_DEFAULT(struct config_route, n_retry_statuses)};

/*
 * gRPC's status code names (grpc/doc/statuscodes.md), by code; OK (0) is
 * no failure and is not accepted.
 */
static const char *const grpc_code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* A gRPC code: its number (1..16) or its name, any case. */
static int parse_retry_grpc_status(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n;
	uint64_t v = 0;
	int j, err;

	(void)i;
	err = cp_scalar(p, "a gRPC status code", &s, &n);
	if (err)
		return err;
	if (n && s[0] >= '0' && s[0] <= '9') {
		err = cp_uint(p, 1, ARRAY_SIZE(grpc_code_names) - 1, &v);
		if (err)
			return err;
	} else {
		for (v = 1; v < ARRAY_SIZE(grpc_code_names); v++)
			if (strlen(grpc_code_names[v]) == n &&
			    !strncasecmp(grpc_code_names[v], s, n))
				break;
		if (v == ARRAY_SIZE(grpc_code_names))
			return cp_fail(p, cp_line(p),
				       "must be a gRPC status code, 1..16 or its name "
				       "(UNAVAILABLE, RESOURCE_EXHAUSTED, ...), got \"%s\"",
				       cp_echo(s, n, buf));
	}
	for (j = 0; j < r->n_retry_grpc_statuses; j++) {
		if (r->retry_grpc_statuses[j] == v)
			return cp_fail(p, cp_line(p),
				       "duplicate code %s (also retry_grpc_statuses[%d])",
				       grpc_code_names[v], j);
	}
	r->retry_grpc_statuses[r->n_retry_grpc_statuses++] = (uint8_t)v;
	return 0;
}

/* Replaces the default {UNAVAILABLE}; an empty list retries on no gRPC code. */
static const struct seq_spec retry_grpc_statuses_seq = {
    parse_retry_grpc_status, CONFIG_MAX_RETRY_GRPC_STATUSES, "codes",
    SEQ_REPLACES_DEFAULT(struct config_route, n_retry_grpc_statuses)};

enum {
	ROUTE_F_NAME,
	ROUTE_F_MATCH,
	ROUTE_F_BACKENDS,
	ROUTE_F_TIMEOUT,
	ROUTE_F_PER_TRY,
	ROUTE_F_RETRYABLE,
	ROUTE_F_STATUSES,
	ROUTE_F_GRPC_STATUSES,
	ROUTE_F_CONNECT,
	ROUTE_F_IDLE,
	ROUTE_F_HOLD
};

static const struct field route_fields[] = {
    [ROUTE_F_NAME] = {"name", FIELD_LABEL, offsetof(struct config_route, name)},
    [ROUTE_F_MATCH] = {"match", FIELD_MAP, FIELD_MAP_OF(match_fields)},
    [ROUTE_F_BACKENDS] = {"backends", FIELD_FUNC, .parse = parse_backends},
    [ROUTE_F_TIMEOUT] = {"timeout_ms", FIELD_U32, offsetof(struct config_route, timeout_ms), 0,
			 CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_PER_TRY] = {"per_try_timeout_ms", FIELD_U32,
			 offsetof(struct config_route, per_try_timeout_ms), 0,
			 CONFIG_MAX_TIMEOUT_MS, .at_most = "timeout_ms", .unless_zero = true},
    [ROUTE_F_RETRYABLE] = {"retryable", FIELD_BOOL, offsetof(struct config_route, retryable)},
    [ROUTE_F_STATUSES] = {"retry_statuses", FIELD_SEQ, .seq = &retry_statuses_seq},
    [ROUTE_F_GRPC_STATUSES] = {"retry_grpc_statuses", FIELD_SEQ, .seq = &retry_grpc_statuses_seq},
    [ROUTE_F_CONNECT] = {"connect_timeout_ms", FIELD_U32,
			 offsetof(struct config_route, connect_timeout_ms), 0,
			 CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_IDLE] = {"idle_timeout_ms", FIELD_U32, offsetof(struct config_route, idle_timeout_ms),
		      0, CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_HOLD] = {"grpc_head_hold_ms", FIELD_U32,
		      offsetof(struct config_route, grpc_head_hold_ms), 0,
		      CONFIG_MAX_H2_GRPC_HEAD_HOLD_MS},
};

static int parse_route(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_route *r;
	struct map_seen seen;
	int j, err;

	if (p->n_routes_total >= CONFIG_MAX_ROUTES_TOTAL)
		return cp_fail(p, cp_line(p), "too many routes in the file, at most %d",
			       CONFIG_MAX_ROUTES_TOTAL);
	if (cp_grow(p, (void **)&svc->routes, (size_t)svc->n_routes, sizeof(*r)))
		return -ENOMEM;
	/* Counted before it is filled, so config_free sees its strings on error. */
	r = &svc->routes[svc->n_routes++];
	memset(r, 0, sizeof(*r));
	p->n_routes_total++;
	r->line = cp_line(p);
	r->retry_statuses[0] = CONFIG_DEFAULT_RETRY_STATUS;
	r->n_retry_statuses = 1;
	r->retry_grpc_statuses[0] = CONFIG_DEFAULT_RETRY_GRPC_STATUS;
	r->n_retry_grpc_statuses = 1;
	err = cp_map(p, route_fields, ARRAY_SIZE(route_fields), r, &seen);
	if (err)
		return err;
	/* 0 is a value here (never held): only a key that is there overrides the proxy's. */
	r->grpc_head_hold_set = seen.mask & (1u << ROUTE_F_HOLD);
	if (r->name[0]) {
		for (j = 0; j < i; j++) {
			if (!strcmp(svc->routes[j].name, r->name)) {
				cp_path_push_key(p, "name");
				return cp_fail(
				    p, seen.line[ROUTE_F_NAME],
				    "duplicate route name %s (also routes[%d] at line %d)", r->name,
				    j, svc->routes[j].line);
			}
		}
	}
	if (!(seen.mask & (1u << ROUTE_F_BACKENDS))) {
		/* No split: the service's own endpoints; svc_index is set in check_backends. */
		struct config_route_backend *b = &r->backends[0];

		strcpy(b->namespace, svc->namespace);
		strcpy(b->name, svc->name);
		b->weight = 1;
		b->cum_weight = 1;
		b->line = r->line;
		r->n_backends = 1;
		r->total_weight = 1;
	}
	return 0;
}

static const struct seq_spec routes_seq = {parse_route, CONFIG_MAX_ROUTES, "routes"};

/* ---- a service's resilience: block (docs/config.md, docs/resilience.md) ---- */

/*
 * Limits of the resilience knobs. Each bounds a value past which it stops
 * meaning anything (docs/config.md lists them); the modules' own checks
 * (peak_ewma_cfg_check, breaker_cfg_check, retry_budget_cfg_check) accept
 * everything inside them.
 */
#define CONFIG_MAX_RTT_MS 60000	      /* a "typical" latency above 1 min is no estimate */
#define CONFIG_MAX_PENALTY_MS 3600000 /* Retry-After cap and failure penalty: 1 h */
#define CONFIG_MAX_BUDGET_RATIO_PCT (RETRY_BUDGET_MAX_RATIO_MILLI / 10)
#define CONFIG_MAX_BUDGET_MIN_PER_S 100000
#define CONFIG_MIN_BUDGET_WINDOW_MS (RETRY_BUDGET_MIN_TTL_NS / 1000000)
#define CONFIG_MAX_RETRIES 10		 /* beyond this a budget bounds nothing per request */
#define CONFIG_MAX_RETRY_BODY (1u << 20) /* replay is from the connection buffer anyway */
#define CONFIG_MAX_CONSECUTIVE 100000
#define CONFIG_MAX_BREAKER_BACKOFF_MS 3600000 /* an hour out is a removal, not a backoff */
#define CONFIG_MAX_MIN_REQUESTS 1000000

static const struct field balancer_fields[] = {
    {"default_rtt_ms", FIELD_U32, offsetof(struct config_resilience, default_rtt_ms), 1,
     CONFIG_MAX_RTT_MS},
    {"decay_ms", FIELD_U32, offsetof(struct config_resilience, decay_ms), 1, CONFIG_MAX_TIMEOUT_MS},
    {"failure_penalty_ms", FIELD_U32, offsetof(struct config_resilience, failure_penalty_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"retry_after_cap_ms", FIELD_U32, offsetof(struct config_resilience, retry_after_cap_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"penalty_ms", FIELD_U32, offsetof(struct config_resilience, penalty_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"explore_after_ms", FIELD_U32, offsetof(struct config_resilience, explore_after_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
};

static const struct field budget_fields[] = {
    {"ratio_pct", FIELD_U32, offsetof(struct config_resilience, budget_ratio_pct), 0,
     CONFIG_MAX_BUDGET_RATIO_PCT},
    {"min_per_second", FIELD_U32, offsetof(struct config_resilience, budget_min_per_s), 0,
     CONFIG_MAX_BUDGET_MIN_PER_S},
    {"window_ms", FIELD_U32, offsetof(struct config_resilience, budget_window_ms),
     CONFIG_MIN_BUDGET_WINDOW_MS, CONFIG_MAX_TIMEOUT_MS},
};

static const struct field retries_fields[] = {
    {"max_retries", FIELD_U32, offsetof(struct config_resilience, max_retries), 0,
     CONFIG_MAX_RETRIES},
    {"max_body_bytes", FIELD_U32, offsetof(struct config_resilience, max_body_bytes), 0,
     CONFIG_MAX_RETRY_BODY},
    {"backoff_base_ms", FIELD_U32, offsetof(struct config_resilience, backoff_base_ms), 0,
     CONFIG_MAX_TIMEOUT_MS, .at_most = "backoff_max_ms"},
    {"backoff_max_ms", FIELD_U32, offsetof(struct config_resilience, backoff_max_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"connect_any_method", FIELD_BOOL, offsetof(struct config_resilience, connect_any_method)},
};

static const struct field breaker_fields[] = {
    {"consecutive_failures", FIELD_U32, offsetof(struct config_resilience, consecutive_failures), 0,
     CONFIG_MAX_CONSECUTIVE},
    {"backoff_min_ms", FIELD_U32, offsetof(struct config_resilience, breaker_backoff_min_ms), 1,
     CONFIG_MAX_BREAKER_BACKOFF_MS, .at_most = "backoff_max_ms"},
    {"backoff_max_ms", FIELD_U32, offsetof(struct config_resilience, breaker_backoff_max_ms), 1,
     CONFIG_MAX_BREAKER_BACKOFF_MS},
    {"jitter_pct", FIELD_U32, offsetof(struct config_resilience, jitter_pct), 0, 100},
    {"success_rate_pct", FIELD_U32, offsetof(struct config_resilience, success_rate_pct), 0, 100},
    {"success_rate_window_ms", FIELD_U32,
     offsetof(struct config_resilience, success_rate_window_ms), 10, CONFIG_MAX_TIMEOUT_MS},
    {"success_rate_min_requests", FIELD_U32,
     offsetof(struct config_resilience, success_rate_min_requests), 0, CONFIG_MAX_MIN_REQUESTS},
    {"max_ejection_pct", FIELD_U32, offsetof(struct config_resilience, max_ejection_pct), 0, 100},
};

static const struct field timeouts_fields[] = {
    {"connect_ms", FIELD_U32, offsetof(struct config_resilience, connect_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"request_ms", FIELD_U32, offsetof(struct config_resilience, request_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"per_try_ms", FIELD_U32, offsetof(struct config_resilience, per_try_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS, .at_most = "request_ms", .unless_zero = true},
    {"idle_ms", FIELD_U32, offsetof(struct config_resilience, idle_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"response_head_ms", FIELD_U32, offsetof(struct config_resilience, response_head_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
};

static int check_budget(struct cfg_parser *p, void *obj, const struct map_seen *seen)
{
	const struct config_resilience *r = obj;

	(void)seen;
	/* The budget's reserve, min_per_second x window in milli-retries, fits 31 bits. */
	if ((uint64_t)r->budget_min_per_s * r->budget_window_ms > RETRY_BUDGET_MAX_RESERVE_MILLI) {
		cp_path_push_key(p, "min_per_second");
		return cp_fail(p, cp_line(p), "min_per_second x window_ms must be <= %d, got %llu",
			       RETRY_BUDGET_MAX_RESERVE_MILLI,
			       (unsigned long long)r->budget_min_per_s * r->budget_window_ms);
	}
	return 0;
}

static const struct field resilience_fields[] = {
    {"balancer", FIELD_MAP, FIELD_MAP_OF(balancer_fields)},
    {"retry_budget", FIELD_MAP, FIELD_MAP_OF(budget_fields), .check = check_budget},
    {"retries", FIELD_MAP, FIELD_MAP_OF(retries_fields)},
    {"breaker", FIELD_MAP, FIELD_MAP_OF(breaker_fields)},
    {"fail_fast_ms", FIELD_U32, offsetof(struct config_resilience, fail_fast_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"timeouts", FIELD_MAP, FIELD_MAP_OF(timeouts_fields)},
};

/* ---- services ---- */

static const struct field service_fields[] = {
    {"name", FIELD_LABEL, offsetof(struct config_service, name), .required = true},
    {"namespace", FIELD_LABEL, offsetof(struct config_service, namespace)},
    {"vips", FIELD_SEQ, .required = true, .seq = &vips_seq},
    {"ports", FIELD_SEQ, .required = true, .seq = &ports_seq},
    {"endpoints", FIELD_SEQ, .seq = &endpoints_seq},
    {"routes", FIELD_SEQ, .seq = &routes_seq},
    {"resilience", FIELD_MAP, offsetof(struct config_service, resilience),
     FIELD_MAP_OF(resilience_fields)},
};

static int parse_service(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	struct config_service *svc;
	struct map_seen seen;

	if (cp_grow(p, (void **)&cfg->services, (size_t)cfg->n_services, sizeof(*cfg->services)))
		return -ENOMEM;
	svc = config_service_new((uint32_t)i);
	if (!svc)
		return cp_oom(p);
	/* Counted before it is filled, so config_free sees its endpoints on error. */
	cfg->services[cfg->n_services++] = svc;
	strcpy(svc->namespace, "default");
	svc->line = cp_line(p);
	config_resilience_default(&svc->resilience);
	p->svc = svc;
	return cp_map(p, service_fields, ARRAY_SIZE(service_fields), svc, &seen);
}

const struct seq_spec services_seq = {parse_service, CONFIG_MAX_SERVICES, "services"};
