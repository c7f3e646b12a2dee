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
struct policy_table;

/*
 * t's table in the policy in force, or NULL when no policy is written.
 * A request's caller looks it up once, to tell (policy_table_has_requests)
 * whether the request's path is worth normalising for it.
 */
const struct policy_table *authz_table(const struct worker *w, const struct config_service *t);

/*
 * Whether a call of c to service t (port: the service port it arrived on)
 * is allowed: rq is the request, or NULL for a connection; tb is t's table
 * (authz_table), or NULL to look it up. *reason (not NULL on a denial)
 * names the rule or default that decided, for the x-shoal-policy header;
 * it stays valid as long as c's config. Counted per policy and service; a
 * denial is logged (at most once per WORKER_WARN_INTERVAL_NS per worker).
 */
bool authz_allow(struct worker *w, const struct conn *c, const struct policy_table *tb,
		 const struct config_service *t, uint16_t port, const struct policy_request *rq,
		 const char **reason);

#endif
