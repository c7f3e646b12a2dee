// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Route matching and weighted backend choice. The parser did the work
 * that can be done once (lower-cased hosts and header names, prefixes
 * without a trailing '/', cumulative weights), so each request costs only
 * byte comparisons here.
 */
#include "proxy/http_routes.h"

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

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 3986 2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
static bool is_unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * Append segment [seg, seg+len) of a decoded path to out (*n bytes):
 * RFC 3986 5.2.4 on one segment. "." adds nothing, ".." drops the last
 * segment; either, last in the path, leaves the path ending in '/'.
 */
static void path_push(char *out, size_t *n, const char *seg, size_t len, bool last)
{
	if (len == 1 && seg[0] == '.') {
		if (last)
			out[(*n)++] = '/';
		return;
	}
	if (len == 2 && seg[0] == '.' && seg[1] == '.') {
		while (*n > 0 && out[*n - 1] != '/')
			(*n)--;
		if (*n > 0)
			(*n)--; /* and its '/' */
		if (last)
			out[(*n)++] = '/';
		return;
	}
	out[(*n)++] = '/';
	memcpy(out + *n, seg, len);
	*n += len;
}

/* Contract in routes.h. */
size_t http_routes_normalize_path(const char *path, size_t len, char *out, size_t cap)
{
	char dec[ROUTES_MAX_PATH];
	size_t d = 0, n = 0, i;
	const char *q = memchr(path, '?', len);

	if (q)
		len = (size_t)(q - path);
	if (!len || path[0] != '/' || len > ROUTES_MAX_PATH || cap < len + 1)
		return ROUTES_NO_PATH;
	/* Percent-encoded unreserved bytes decoded, other escapes upper-cased. */
	for (i = 0; i < len; i++) {
		int hi, lo;

		if (path[i] != '%' || i + 2 >= len || (hi = hex_digit(path[i + 1])) < 0 ||
		    (lo = hex_digit(path[i + 2])) < 0) {
			dec[d++] = path[i];
			continue;
		}
		if (is_unreserved((unsigned char)(hi << 4 | lo))) {
			dec[d++] = (char)(hi << 4 | lo);
		} else {
			dec[d++] = '%';
			dec[d++] = "0123456789ABCDEF"[hi];
			dec[d++] = "0123456789ABCDEF"[lo];
		}
		i += 2;
	}
	/* Dot-segments removed: dec starts with '/', each segment after one. */
	for (i = 0; i < d;) {
		size_t b = i + 1, e = b;

		while (e < d && dec[e] != '/')
			e++;
		path_push(out, &n, dec + b, e - b, e == d);
		i = e;
	}
	if (!n)
		out[n++] = '/';
	return n;
}

/* Path criteria on the normalised path (npath, nlen; ROUTES_NO_PATH: none). */
static bool route_path_ok(const struct config_route *r, const char *npath, size_t nlen)
{
	if (r->path_match == CONFIG_PATH_ANY)
		return true;
	if (nlen == ROUTES_NO_PATH)
		return false;
	if (r->path_match == CONFIG_PATH_EXACT)
		return nlen == r->path_len && !memcmp(npath, r->path, nlen);
	/* Prefix: whole segments. "/" (length 1) is the only prefix ending in '/'. */
	if (r->path_len == 1)
		return true;
	return nlen >= r->path_len && !memcmp(npath, r->path, r->path_len) &&
	       (nlen == r->path_len || npath[r->path_len] == '/');
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
const struct config_route *http_routes_match(const struct config_service *svc,
					const struct route_request *req)
{
	char npath[ROUTES_MAX_PATH];
	size_t nlen = ROUTES_NO_PATH;
	int i;

	if (req->path && svc->n_routes)
		nlen = http_routes_normalize_path(req->path, req->path_len, npath, sizeof(npath));
	for (i = 0; i < svc->n_routes; i++) {
		const struct config_route *r = &svc->routes[i];

		if (route_method_ok(r, req) && route_path_ok(r, npath, nlen) &&
		    route_host_ok(r, req) && route_headers_ok(r, req))
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
uint32_t http_routes_pick_backend(const struct config_route *r, uint32_t rnd)
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
