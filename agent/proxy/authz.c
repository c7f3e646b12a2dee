// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Authorization decisions of the proxy's connections and requests (authz.h). */
#include "proxy/authz.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "policy/policy.h"
#include "proxy/conn.h"
#include "proxy/worker.h"
#include "recording/policy_stats.h"

/*
 * The caller's SPIFFE ID, built once per worker thread for the last
 * identity seen (compared by content, a few bytes: an interned pointer
 * could be reused by another identity once freed), so that a request pays
 * no string building.
 */
static __thread char id_for[2 * POLICY_MAX_LABEL + 2];
static __thread char id_buf[POLICY_MAX_ID + 1];
static __thread char id_ns[POLICY_MAX_LABEL + 1];
static __thread char id_sa[POLICY_MAX_LABEL + 1];
static __thread char id_td[CONFIG_MAX_TRUST_DOMAIN + 1];

static void caller_of(const struct worker *w, const struct conn *c, struct policy_caller *out)
{
	const char *ident = c->src_ident, *slash;

	memset(out, 0, sizeof(*out));
	if (!ident || !(slash = strchr(ident, '/')))
		return; /* unauthenticated */
	if (strcmp(ident, id_for) != 0 || strcmp(w->cfg->identity.trust_domain, id_td) != 0) {
		size_t nl = (size_t)(slash - ident);

		if (nl > POLICY_MAX_LABEL || strlen(slash + 1) > POLICY_MAX_LABEL)
			return;
		memcpy(id_ns, ident, nl);
		id_ns[nl] = '\0';
		snprintf(id_sa, sizeof(id_sa), "%s", slash + 1);
		snprintf(id_buf, sizeof(id_buf), "spiffe://%s/ns/%s/sa/%s",
			 w->cfg->identity.trust_domain, id_ns, id_sa);
		snprintf(id_for, sizeof(id_for), "%s", ident);
		snprintf(id_td, sizeof(id_td), "%s", w->cfg->identity.trust_domain);
	}
	out->authenticated = true;
	out->id = id_buf;
	out->trust_domain = w->cfg->identity.trust_domain;
	out->ns = id_ns;
	out->sa = id_sa;
}

/*
 * The service tables this thread looked up last (policy.h): a request's
 * lookup is then two integer compares, not a binary search over names.
 */
static __thread struct policy_table_cache tables;

const struct policy_table *authz_table(const struct worker *w, const struct config_service *t)
{
	const struct policy_set *s = w->cfg->policy;

	return s ? policy_lookup_cached(&tables, s, t->metrics_id, t->namespace, t->name) : NULL;
}

bool authz_allow(struct worker *w, const struct conn *c, const struct policy_table *tb,
		 const struct config_service *t, uint16_t port, const struct policy_request *rq,
		 const char **reason)
{
	const struct policy_set *s = w->cfg->policy;
	struct policy_caller caller;
	struct policy_decision d;

	*reason = NULL;
	if (!s)
		return true;
	if (!tb)
		tb = policy_lookup_cached(&tables, s, t->metrics_id, t->namespace, t->name);
	caller_of(w, c, &caller);
	if (!caller.authenticated && config_mtls_mode_of(&w->cfg->mtls, t) == CONFIG_MTLS_STRICT) {
		/*
		 * strict refuses plaintext callers (docs/mtls.md, "Modes"): no
		 * rule naming unauthenticated callers opens a service to them.
		 */
		d.allow = false;
		d.reason = "mtls-strict";
	} else {
		policy_decide(tb, t->namespace, port, &caller, rq, &d);
	}
	/*
	 * Per series (recording/policy_stats.h): the set's serial, the
	 * service's series id and the reason's pointer key a cache, so an
	 * allowed call adds no hashing of strings and no lock.
	 */
	policy_stats_record(w->authz, &(struct policy_stats_decision){
					  .serial = policy_set_serial(s),
					  .svc = t->metrics_id,
					  .ns = t->namespace,
					  .service = t->name,
					  .reason = d.reason,
					  .allow = d.allow,
					  .caller = caller.authenticated ? caller.id : NULL,
					  .port = port,
					  .method = rq ? rq->method : NULL,
					  .method_len = rq ? rq->method_len : 0,
					  .path = rq ? rq->path : NULL,
					  .path_len = rq ? rq->path_len : 0,
				      });
	if (d.allow) {
		WORKER_STAT_INC(w, policy_allowed);
		return true;
	}
	WORKER_STAT_INC(w, policy_denied);
	*reason = d.reason;
	worker_warn_ratelimited(w, "policy: denied %s%s%.*s%s to %s/%s:%u by %s",
				caller.authenticated ? caller.id : "an unauthenticated caller",
				rq ? " (" : "", rq ? (int)rq->method_len : 0, rq ? rq->method : "",
				rq ? ")" : "", t->namespace, t->name, port, d.reason);
	return false;
}
