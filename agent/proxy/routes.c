// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Route matching and weighted backend choice. The parser did the work
 * that can be done once (lower-cased hosts and header names, prefixes
 * without a trailing '/', cumulative weights), so each request costs only
 * byte comparisons here.
 */
#include "proxy/routes.h"

#include <string.h>
#include <strings.h>

/* The host without ":port": "[v6]:80" keeps its brackets, "name:80" loses ":80". */
static size_t host_strip_port(const char *host, size_t len)
{
	const char *end;

	if (len && host[0] == '[') {
		end = memchr(host, ']', len);
		return end ? (size_t)(end - host) + 1 : len;
	}
	end = memchr(host, ':', len);
	return end ? (size_t)(end - host) : len;
}

static bool route_host_ok(const struct config_route *r, const struct route_request *req)
{
	size_t len;
	int i;

	if (!r->n_hosts)
		return true;
	if (!req->host)
		return false;
	len = host_strip_port(req->host, req->host_len);
	for (i = 0; i < r->n_hosts; i++) {
		const struct config_route_host *h = &r->hosts[i];

		/* A suffix (".example.com") needs at least one byte of label before it. */
		if (h->suffix && len > h->len &&
		    !strncasecmp(req->host + len - h->len, h->name, h->len))
			return true;
		if (!h->suffix && len == h->len && !strncasecmp(req->host, h->name, len))
			return true;
	}
	return false;
}

static bool route_path_ok(const struct config_route *r, const struct route_request *req)
{
	const char *q;
	size_t len;

	if (r->path_match == CONFIG_PATH_ANY)
		return true;
	if (!req->path || !req->path_len || req->path[0] != '/')
		return false;
	q = memchr(req->path, '?', req->path_len);
	len = q ? (size_t)(q - req->path) : req->path_len;
	if (r->path_match == CONFIG_PATH_EXACT)
		return len == r->path_len && !memcmp(req->path, r->path, len);
	/* Prefix: whole segments. "/" (length 1) is the only prefix ending in '/'. */
	if (r->path_len == 1)
		return true;
	return len >= r->path_len && !memcmp(req->path, r->path, r->path_len) &&
	       (len == r->path_len || req->path[r->path_len] == '/');
}

static bool route_method_ok(const struct config_route *r, const struct route_request *req)
{
	int i;

	if (!r->n_methods)
		return true;
	for (i = 0; i < r->n_methods; i++) {
		if (strlen(r->methods[i]) == req->method_len &&
		    !memcmp(r->methods[i], req->method, req->method_len))
			return true;
	}
	return false;
}

static bool route_headers_ok(const struct config_route *r, const struct route_request *req)
{
	const char *value;
	size_t value_len;
	int i;

	if (!r->n_headers)
		return true;
	if (!req->header)
		return false;
	for (i = 0; i < r->n_headers; i++) {
		const struct config_route_header *h = &r->headers[i];

		value = NULL;
		value_len = 0;
		if (!req->header(req->ctx, h->name, h->name_len, &value, &value_len))
			return false;
		if (value_len != h->value_len || (value_len && memcmp(value, h->value, value_len)))
			return false;
	}
	return true;
}

/* Contract in routes.h. Cheap criteria first; headers may call out to the caller. */
const struct config_route *routes_match(const struct config_service *svc,
					const struct route_request *req)
{
	int i;

	for (i = 0; i < svc->n_routes; i++) {
		const struct config_route *r = &svc->routes[i];

		if (route_method_ok(r, req) && route_path_ok(r, req) && route_host_ok(r, req) &&
		    route_headers_ok(r, req))
			return r;
	}
	return NULL;
}

/*
 * Contract in routes.h. rnd is scaled to [0, total_weight) by its high
 * bits (multiply and shift) rather than by "%", which would favour the
 * first backends and lean on the low bits a weak generator gets wrong.
 * The pick is the first backend whose cumulative weight exceeds it.
 */
uint32_t routes_pick_backend(const struct config_route *r, uint32_t rnd)
{
	uint32_t x, lo = 0, hi;

	if (r->n_backends <= 1 || !r->total_weight)
		return r->backends[0].svc_index;
	x = (uint32_t)(((uint64_t)rnd * r->total_weight) >> 32);
	hi = (uint32_t)r->n_backends - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (r->backends[mid].cum_weight > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return r->backends[lo].svc_index;
}
