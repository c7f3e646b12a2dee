/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Authorization in the proxy (docs/policy.md, "Enforcement"): the policy in
 * force (config.policy) asked about one call, with the caller's identity of
 * the connection (conn.src_ident: the enrolled pod's service account, which
 * needs mtls mode permissive or strict; otherwise the caller is
 * unauthenticated). Allowed calls cost a pointer test when no policy is
 * written, else a table lookup and a walk of one service's rules.
 */
#ifndef SHOAL_PROXY_AUTHZ_H
#define SHOAL_PROXY_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct conn;
struct config_service;
struct policy_request;

/*
 * Whether a call of c to service t (port: the service port it arrived on)
 * is allowed: rq is the request, or NULL for a connection. *reason (not
 * NULL on a denial) names the rule or default that decided, for the
 * x-shoal-policy header; it stays valid as long as c's config. A denial is
 * counted and logged (at most once per WORKER_WARN_INTERVAL_NS per worker).
 */
bool authz_allow(struct worker *w, const struct conn *c, const struct config_service *t,
		 uint16_t port, const struct policy_request *rq, const char **reason);

/*
 * Whether t's policy needs each request: false when nothing in it looks at
 * requests, so one decision at accept holds for the whole connection.
 */
bool authz_per_request(const struct worker *w, const struct config_service *t);

#endif
