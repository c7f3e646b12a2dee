/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP routes: which route of a service a request takes, and which
 * backend service of that route gets it. Pure functions over the parsed
 * config (services[].routes[], docs/config.md): no I/O, no allocation, no
 * locks, so any worker may call them on a config it holds.
 */
#ifndef SHOAL_PROXY_HTTP_ROUTES_H
#define SHOAL_PROXY_HTTP_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/*
 * The parts of a request that routes look at. The pointers are the
 * caller's (typically into its request buffer) and need no NUL; the
 * matcher only reads them during the call.
 */
struct route_request {
	const char *method; /* as received; compared case-sensitively */
	size_t method_len;
	const char *host; /* raw Host or authority, ":port" included; NULL: none */
	size_t host_len;
	const char *path; /* the request target; a "?query" is ignored by the matcher */
	size_t path_len;
	/*
	 * Look up a header field by name (name is lower-case; compare
	 * case-insensitively). Returns nonzero with *value and *value_len set to
	 * the first field of that name, whitespace trimmed, or 0 if the
	 * request has none. NULL: the request has no headers to match.
	 */
	int (*header)(void *ctx, const char *name, size_t name_len, const char **value,
		      size_t *value_len);
	void *ctx; /* passed to header */
};

/*
 * The first of svc's routes that req matches, in file order, or NULL when
 * none does (the request then goes to svc's own endpoints). A route
 * matches when every criterion it has holds:
 * - hosts: req->host without its port equals a host case-insensitively,
 *   or ends in a "*." host's suffix;
 * - path: the target's path (up to '?'), normalised (http_routes_normalize_path),
 *   equals an exact path, or equals a prefix or continues it with '/'; a
 *   target that does not start with '/' (authority, "*", absolute-form: the
 *   proxy rewrites that one to origin form first) or whose path is longer
 *   than ROUTES_MAX_PATH matches no path criterion;
 * - methods: req->method is one of them, byte for byte;
 * - headers: each one is present (first field) with exactly its value.
 * O(routes x criteria); calls req->header at most once per header criterion.
 */
const struct config_route *http_routes_match(const struct config_service *svc,
					const struct route_request *req);

/*
 * Longest path routes normalise (bytes, query excluded): the default
 * request line limit. A longer path matches no path criterion, never a
 * route it would not match normalised.
 */
#define ROUTES_MAX_PATH 8192
/* http_routes_normalize_path's "no path": not '/'-rooted, or too long. */
#define ROUTES_NO_PATH ((size_t)-1)

/*
 * The path of @path (@len bytes; a "?query" and what follows is cut) as
 * routes compare it, RFC 3986 6.2.2: percent-encoded unreserved
 * characters decoded ("%7E" is "~", "%2e" is "."), other escapes
 * upper-cased ("%2f" is "%2F", never '/'), then dot-segments removed
 * ("/a/./b/../c" is "/a/c"; ".." never climbs above "/"). Written to @out
 * (@cap bytes, at least @len + 1); returns its length, or ROUTES_NO_PATH
 * when the path does not start with '/' or is longer than ROUTES_MAX_PATH.
 */
size_t http_routes_normalize_path(const char *path, size_t len, char *out, size_t cap);

/*
 * The svc_index (into config.services) of the backend of r that a request
 * goes to, given rnd, a uniformly distributed 32-bit random number (the
 * caller's source, injectable for tests). Each backend gets a share of
 * the rnd space equal to weight / total_weight; weight 0 gets none.
 * O(log n) over r's CONFIG_MAX_ROUTE_BACKENDS at most. r must come from a
 * parsed config (at least one backend, total weight above 0).
 */
uint32_t http_routes_pick_backend(const struct config_route *r, uint32_t rnd);

#endif
