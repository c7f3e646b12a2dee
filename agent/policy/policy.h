/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Authorization: who may call what, by identity (docs/policy.md).
 *
 * Two halves:
 * - the policy as written (struct policy_doc): rules and defaults, filled
 *   by a source (the config file's policy: section, the AuthorizationPolicy
 *   CRD) and checked by policy_doc_check, which names the object and field
 *   of anything wrong;
 * - the policy compiled (struct policy_set): immutable and refcounted, one
 *   table per destination service with its rules in evaluation order and its
 *   default resolved, so that a decision is a walk over that service's rules
 *   only, with no allocation, no lock and no string building.
 *
 * The evaluation order (docs/policy.md has examples):
 *   1. a deny rule that matches: deny;
 *   2. an allow rule that matches: allow;
 *   3. otherwise the default: the service's, else its namespace's, else the
 *      mesh's (policy.default; allow when nothing is written, which is what
 *      the mesh did before it had policy).
 * A rule matches when its destination (namespace, service or every service
 * of the namespace, ports) is the call's, one of its callers (from) is the
 * caller, and, if it lists requests (to), one of them is the request.
 * A connection decision (no request: opaque TCP) cannot see requests, so a
 * rule that lists requests is taken in the safe direction: an allow rule
 * with requests does not match a connection, and a deny rule with requests
 * does, as Istio does for TCP.
 */
#ifndef SHOAL_POLICY_POLICY_H
#define SHOAL_POLICY_POLICY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Bounds of the written policy. A cluster's policy is tens to hundreds of
 * rules; these stop a typo or a hostile object from costing memory and
 * decision time, and each is named in its error.
 */
#define POLICY_MAX_RULES 4096	 /* rules in force, all sources together */
#define POLICY_MAX_DEFAULTS 4096 /* namespace and service defaults */
#define POLICY_MAX_FROM 32	 /* callers of one rule */
#define POLICY_MAX_TO 32	 /* requests of one rule */
#define POLICY_MAX_PORTS 16	 /* ports of one rule */
#define POLICY_MAX_METHODS 16	 /* methods of one request match */
#define POLICY_MAX_NAME 253	 /* a Kubernetes object name (DNS subdomain) */
#define POLICY_MAX_LABEL 63	 /* a namespace, service or service account */
#define POLICY_MAX_METHOD 32	 /* an HTTP method token */
#define POLICY_MAX_PATH 1024	 /* a path match, gRPC's /pkg.Service/Method included */
#define POLICY_MAX_ID 512 /* a SPIFFE ID (the SPIFFE spec's URI bound is 2048; ours are short) */
#define POLICY_MAX_ORIGIN 128 /* where a rule came from, for messages */

enum policy_action {
	POLICY_ALLOW,
	POLICY_DENY,
};

/* A namespace's, a service's or the mesh's answer when no rule matches. */
enum policy_default {
	POLICY_DEFAULT_UNSET = 0,      /* inherit: service -> namespace -> mesh */
	POLICY_DEFAULT_ALLOW,	       /* anyone, authenticated or not */
	POLICY_DEFAULT_DENY,	       /* no one */
	POLICY_DEFAULT_SAME_NAMESPACE, /* authenticated callers of the destination's namespace */
};

/* One form of caller a rule names. */
enum policy_peer_kind {
	POLICY_PEER_AUTHENTICATED,   /* "*": any authenticated caller, any trust domain */
	POLICY_PEER_UNAUTHENTICATED, /* a plaintext caller (permissive mode) */
	POLICY_PEER_NAMESPACE,	     /* every service account of ns, in the mesh's trust domain */
	POLICY_PEER_SERVICE_ACCOUNT, /* ns/sa, in the mesh's trust domain */
	POLICY_PEER_ID,		     /* one exact SPIFFE ID, any trust domain */
};

struct policy_peer {
	enum policy_peer_kind kind;
	char ns[POLICY_MAX_LABEL + 1]; /* NAMESPACE, SERVICE_ACCOUNT */
	char sa[POLICY_MAX_LABEL + 1]; /* SERVICE_ACCOUNT */
	char id[POLICY_MAX_ID + 1];    /* ID */
};

enum policy_path_kind {
	POLICY_PATH_ANY = 0,
	POLICY_PATH_EXACT,  /* the path, byte for byte */
	POLICY_PATH_PREFIX, /* the path, or it followed by '/' and more ("/" is every path) */
};

/*
 * One request form of a rule: every criterion present must hold. A gRPC
 * match is a path: service S is the prefix "/S", service S method M the
 * exact "/S/M" (the source writes it so; gRPC puts nothing else in :path).
 */
struct policy_request_match {
	char methods[POLICY_MAX_METHODS][POLICY_MAX_METHOD + 1]; /* case-sensitive */
	int n_methods;						 /* 0: any */
	enum policy_path_kind path_kind;
	char path[POLICY_MAX_PATH + 1];
};

struct policy_rule {
	char name[POLICY_MAX_NAME + 1];	      /* reason header and metrics label */
	char namespace[POLICY_MAX_LABEL + 1]; /* the destination's (the policy object's) */
	char service[POLICY_MAX_LABEL + 1];   /* "": every service of namespace */
	uint16_t ports[POLICY_MAX_PORTS];     /* service ports; none: every port */
	int n_ports;
	enum policy_action action;
	struct policy_peer *from; /* heap, n_from entries, 1..POLICY_MAX_FROM */
	int n_from;
	struct policy_request_match
	    *to; /* heap, n_to entries; none: every request and connections */
	int n_to;
	char origin[POLICY_MAX_ORIGIN + 1]; /* "file line 12", "AuthorizationPolicy shop/x" */
};

struct policy_default_rule {
	char namespace[POLICY_MAX_LABEL + 1];
	char service[POLICY_MAX_LABEL + 1]; /* "": the namespace's default */
	enum policy_default def;
	char origin[POLICY_MAX_ORIGIN + 1];
};

/* The policy as written, from all sources together. */
struct policy_doc {
	enum policy_default mesh_default; /* UNSET: allow */
	struct policy_rule *rules;	  /* heap */
	int n_rules;
	struct policy_default_rule *defaults; /* heap */
	int n_defaults;
};

/*
 * What both sources (the file, the CRD) build request forms with, so that
 * they accept the same ones:
 * - a method as a rule names it: an upper-case token ('-' and '_' too),
 *   1..POLICY_MAX_METHOD characters (methods are case-sensitive, and every
 *   standard one is upper case);
 * - m's path (already in m->path) matched as kind: a prefix is compared
 *   without its trailing '/' ("/a/" and "/a" are one prefix);
 * - a gRPC service (the prefix "/service") or its method (the exact
 *   "/service/method"): -EINVAL unless both are gRPC names (letters,
 *   digits, '_', '.').
 */
bool policy_method_valid(const char *method);
void policy_match_path_kind(struct policy_request_match *m, enum policy_path_kind kind);
int policy_match_grpc(struct policy_request_match *m, const char *service, const char *method);

/* Grow d by one zeroed rule / default; NULL past the bounds or without memory. */
struct policy_rule *policy_doc_add_rule(struct policy_doc *d);
struct policy_default_rule *policy_doc_add_default(struct policy_doc *d);
/* A zeroed peer / request of r; NULL past the bounds or without memory. */
struct policy_peer *policy_rule_add_from(struct policy_rule *r);
struct policy_request_match *policy_rule_add_to(struct policy_rule *r);
void policy_doc_free(struct policy_doc *d);

/*
 * Check what no source's parser can see alone: every rule has callers,
 * names and labels are well formed, no two defaults for one destination,
 * no two rules of one name for one namespace. 0, or -EINVAL with err
 * naming the rule's origin and field.
 */
int policy_doc_check(const struct policy_doc *d, char *err, size_t errlen);
/* The checks of one rule / one default alone (a source checks each object as it comes). */
int policy_rule_check(const struct policy_rule *r, char *err, size_t errlen);
int policy_default_check(const struct policy_default_rule *df, char *err, size_t errlen);

/* ---- compiled ---- */

struct policy_set;
struct policy_table;

/*
 * Compile d (checked first) for a mesh whose trust domain is trust_domain
 * (namespace and service-account callers are of it). NULL with err set on
 * a bad policy or without memory. The set does not refer to d.
 */
struct policy_set *policy_compile(const struct policy_doc *d, const char *trust_domain, char *err,
				  size_t errlen);
struct policy_set *policy_set_get(struct policy_set *s);
void policy_set_put(struct policy_set *s);
/*
 * Append what s was compiled from to out (a merge of sources: the file's
 * set and the Kubernetes objects). s's mesh default replaces out's when
 * set. 0, -E2BIG past out's bounds, or -ENOMEM.
 */
int policy_set_written(const struct policy_set *s, struct policy_doc *out);
/* Rules compiled into s (for "shoalctl policy" and tests). */
int policy_set_rules(const struct policy_set *s);
/*
 * A number of s unique for the process's life (never reused, unlike its
 * address once freed): within one serial a rule's name pointer names that
 * rule, so telemetry may key a cache by it (recording/policy_stats.h).
 */
uint64_t policy_set_serial(const struct policy_set *s);
/* The trust domain s was compiled for. */
const char *policy_set_trust_domain(const struct policy_set *s);

/*
 * The table of service ns/name: its rules in evaluation order and its
 * default. Never NULL: a service nothing names has the mesh default's
 * table. O(log services named). Valid as long as s is; a connection
 * looks it up once and keeps it.
 */
const struct policy_table *policy_lookup(const struct policy_set *s, const char *ns,
					 const char *name);
/*
 * A cache of policy_lookup for one thread (a proxy worker), keyed by the
 * set's serial and the service's series id (config_service.metrics_id,
 * which names one service for the agent's life, series_ids.h): a hit is
 * two integer compares and no string work. Serials are never reused, so
 * an entry of another set (a policy change) misses, and an entry whose
 * serial is s's points into s, which the caller holds. Zeroed: empty.
 */
#define POLICY_TABLE_CACHE 64 /* entries, a power of two */
struct policy_table_cache {
	struct {
		uint64_t serial; /* 0: empty */
		uint32_t id;
		const struct policy_table *t;
	} e[POLICY_TABLE_CACHE];
};
/* policy_lookup(s, ns, name) through c; id 0 (no series) is looked up uncached. */
const struct policy_table *policy_lookup_cached(struct policy_table_cache *c,
						const struct policy_set *s, uint32_t id,
						const char *ns, const char *name);
/* Whether t has a rule that looks at requests: if not, one decision per connection holds for all of
 * its requests. */
bool policy_table_has_requests(const struct policy_table *t);

/* Who the call comes from, as the destination knows it. */
struct policy_caller {
	bool authenticated; /* false: plaintext, no identity */
	/* When authenticated: the caller's SPIFFE ID, and its parts. */
	const char *id; /* spiffe://<trust_domain>/ns/<ns>/sa/<sa> */
	const char *trust_domain;
	const char *ns;
	const char *sa;
};

/* What an HTTP or gRPC request shows policy. */
struct policy_request {
	const char *method; /* as received; need not be NUL-terminated */
	size_t method_len;
	const char *path; /* the normalised path, no query */
	size_t path_len;
};

struct policy_decision {
	bool allow;
	/* The rule that decided, or NULL: the default did (def says which). */
	const struct policy_rule *rule;
	enum policy_default def;
	/*
	 * For the reason header and the logs: the rule's name, or
	 * "default-allow", "default-deny", "default-same-namespace".
	 */
	const char *reason;
};

/*
 * Decide a call to port of t's service, of namespace dest_ns (t's, or any
 * when t is the mesh's), by caller: rq is the request, or NULL for a
 * connection (see the order at the top of this file). No allocation, no
 * lock: O(t's rules x their callers and requests).
 */
void policy_decide(const struct policy_table *t, const char *dest_ns, uint16_t port,
		   const struct policy_caller *caller, const struct policy_request *rq,
		   struct policy_decision *out);

/*
 * Decide whether caller may call port of t's service at all: as a
 * connection decision, except that a rule listing requests is taken in
 * the other direction (an allow rule with requests matches, some request
 * may be allowed; a deny rule with requests does not, some may escape
 * it). For a table without request rules (policy_table_has_requests) it
 * is policy_decide's connection decision. What the destination node of a
 * tunneled call decides: it sees the call as a connection, and the
 * source node, which saw each request, decided those (docs/policy.md,
 * "Cross-node calls").
 */
void policy_decide_caller(const struct policy_table *t, const char *dest_ns, uint16_t port,
			  const struct policy_caller *caller, struct policy_decision *out);

/* The name of a default ("allow", "deny", "same-namespace"), for messages. */
const char *policy_default_name(enum policy_default d);

#endif
