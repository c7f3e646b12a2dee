// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The evaluation order of policy.h: defaults, allow, deny, caller forms, requests. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

#define TD "cluster.local"

static struct policy_caller who(const char *td, const char *ns, const char *sa)
{
	static char ids[8][POLICY_MAX_ID + 1];
	static int next;
	char *id = ids[next++ % 8];

	snprintf(id, POLICY_MAX_ID + 1, "spiffe://%s/ns/%s/sa/%s", td, ns, sa);
	return (struct policy_caller){
	    .authenticated = true, .id = id, .trust_domain = td, .ns = ns, .sa = sa};
}

static const struct policy_caller plaintext = {.authenticated = false};

static struct policy_rule *rule(struct policy_doc *d, const char *name, const char *ns,
				const char *svc, enum policy_action a)
{
	struct policy_rule *r = policy_doc_add_rule(d);

	cr_assert_not_null(r);
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->namespace, sizeof(r->namespace), "%s", ns);
	snprintf(r->service, sizeof(r->service), "%s", svc);
	snprintf(r->origin, sizeof(r->origin), "test rule %s", name);
	r->action = a;
	return r;
}

static void from_sa(struct policy_rule *r, const char *ns, const char *sa)
{
	struct policy_peer *p = policy_rule_add_from(r);

	p->kind = sa ? POLICY_PEER_SERVICE_ACCOUNT : POLICY_PEER_NAMESPACE;
	snprintf(p->ns, sizeof(p->ns), "%s", ns);
	if (sa)
		snprintf(p->sa, sizeof(p->sa), "%s", sa);
}

static void from_kind(struct policy_rule *r, enum policy_peer_kind k, const char *id)
{
	struct policy_peer *p = policy_rule_add_from(r);

	p->kind = k;
	if (id)
		snprintf(p->id, sizeof(p->id), "%s", id);
}

static void set_default(struct policy_doc *d, const char *ns, const char *svc,
			enum policy_default v)
{
	struct policy_default_rule *df = policy_doc_add_default(d);

	snprintf(df->namespace, sizeof(df->namespace), "%s", ns);
	snprintf(df->service, sizeof(df->service), "%s", svc);
	snprintf(df->origin, sizeof(df->origin), "test default %s/%s", ns, svc);
	df->def = v;
}

static struct policy_set *compile(const struct policy_doc *d)
{
	char err[256] = "";
	struct policy_set *s = policy_compile(d, TD, err, sizeof(err));

	cr_assert_not_null(s, "compile: %s", err);
	return s;
}

static struct policy_decision decide(const struct policy_set *s, const char *ns, const char *svc,
				     uint16_t port, struct policy_caller c, const char *method,
				     const char *path)
{
	struct policy_decision out;
	struct policy_request rq = {method, method ? strlen(method) : 0, path,
				    path ? strlen(path) : 0};

	policy_decide(policy_lookup(s, ns, svc), ns, port, &c, method ? &rq : NULL, &out);
	return out;
}

Test(policy, nothing_written_allows_everyone)
{
	struct policy_doc d = {0};
	struct policy_set *s = compile(&d);
	struct policy_decision r = decide(s, "shop", "cart", 80, plaintext, NULL, NULL);

	cr_assert(r.allow);
	cr_assert_null(r.rule);
	cr_assert_str_eq(r.reason, "default-allow");
	cr_assert(decide(s, "shop", "cart", 80, who(TD, "x", "y"), "GET", "/").allow);
	policy_set_put(s);
}

/*
 * Every combination of a destination default (mesh, namespace, service), a
 * matching or non-matching allow rule and a matching or non-matching deny
 * rule, for an authenticated caller of the same and of another namespace
 * and a plaintext one: deny wins, then allow, then the default.
 */
Test(policy, defaults_allow_deny_every_combination)
{
	const enum policy_default defs[] = {POLICY_DEFAULT_UNSET, POLICY_DEFAULT_ALLOW,
					    POLICY_DEFAULT_DENY, POLICY_DEFAULT_SAME_NAMESPACE};
	struct policy_caller callers[] = {who(TD, "shop", "web"), who(TD, "ads", "bot"), plaintext};
	int checked = 0;

	for (int level = 0; level < 3; level++)	  /* mesh, namespace, service default */
		for (size_t di = 0; di < 4; di++) /* the default's value */
			for (int allow = 0; allow < 3; allow++) /* none, matching, not matching */
				for (int deny = 0; deny < 3; deny++)
					for (size_t ci = 0; ci < 3; ci++) {
						struct policy_doc d = {0};
						const struct policy_caller c = callers[ci];
						bool same_ns =
						    c.authenticated && !strcmp(c.ns, "shop");
						enum policy_default def = defs[di];

						if (level == 0)
							d.mesh_default = def;
						else if (def != POLICY_DEFAULT_UNSET)
							set_default(&d, "shop",
								    level == 2 ? "cart" : "", def);
						/* A rule "matches" this caller when it names it;
						 * else it names someone else. */
						if (allow) {
							struct policy_rule *r =
							    rule(&d, "let-in", "shop", "cart",
								 POLICY_ALLOW);

							if (allow == 1 && c.authenticated)
								from_sa(r, c.ns, c.sa);
							else if (allow == 1)
								from_kind(
								    r, POLICY_PEER_UNAUTHENTICATED,
								    NULL);
							else
								from_sa(r, "nobody", "nobody");
						}
						if (deny) {
							struct policy_rule *r =
							    rule(&d, "keep-out", "shop", "",
								 POLICY_DENY);

							if (deny == 1 && c.authenticated)
								from_sa(r, c.ns, NULL);
							else if (deny == 1)
								from_kind(
								    r, POLICY_PEER_UNAUTHENTICATED,
								    NULL);
							else
								from_sa(r, "nobody", NULL);
						}
						struct policy_set *s = compile(&d);
						struct policy_decision r =
						    decide(s, "shop", "cart", 8080, c, NULL, NULL);
						bool want;
						const char *reason;

						if (deny == 1) {
							want = false;
							reason = "keep-out";
						} else if (allow == 1) {
							want = true;
							reason = "let-in";
						} else {
							enum policy_default eff =
							    def ? def : POLICY_DEFAULT_ALLOW;

							want =
							    eff == POLICY_DEFAULT_ALLOW ||
							    (eff == POLICY_DEFAULT_SAME_NAMESPACE &&
							     same_ns);
							reason =
							    eff == POLICY_DEFAULT_DENY
								? "default-deny"
							    : eff == POLICY_DEFAULT_SAME_NAMESPACE
								? "default-same-namespace"
								: "default-allow";
						}
						cr_assert_eq(r.allow, want,
							     "level %d default %s allow %d deny %d "
							     "caller %zu: got %d",
							     level, policy_default_name(def), allow,
							     deny, ci, r.allow);
						cr_assert_str_eq(r.reason, reason,
								 "level %d default %zu allow %d "
								 "deny %d caller %zu",
								 level, di, allow, deny, ci);
						cr_assert_eq(r.rule == NULL,
							     deny != 1 && allow != 1);
						policy_set_put(s);
						policy_doc_free(&d);
						checked++;
					}
	cr_assert_eq(checked, 3 * 4 * 3 * 3 * 3);
}

Test(policy, service_default_overrides_namespace_default_and_mesh)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_set *s;

	set_default(&d, "shop", "", POLICY_DEFAULT_SAME_NAMESPACE);
	set_default(&d, "shop", "public", POLICY_DEFAULT_ALLOW);
	s = compile(&d);
	cr_assert(decide(s, "shop", "public", 80, plaintext, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "cart", 80, plaintext, NULL, NULL).allow);
	cr_assert(decide(s, "shop", "cart", 80, who(TD, "shop", "a"), NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "cart", 80, who(TD, "web", "a"), NULL, NULL).allow);
	/* Another namespace has the mesh's default. */
	cr_assert_not(decide(s, "web", "home", 80, who(TD, "web", "a"), NULL, NULL).allow);
	cr_assert_str_eq(decide(s, "web", "home", 80, plaintext, NULL, NULL).reason,
			 "default-deny");
	policy_set_put(s);
	policy_doc_free(&d);
}

Test(policy, mesh_same_namespace_uses_the_destination_namespace)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_SAME_NAMESPACE};
	struct policy_set *s = compile(&d);

	cr_assert(decide(s, "web", "home", 80, who(TD, "web", "a"), NULL, NULL).allow);
	cr_assert_not(decide(s, "web", "home", 80, who(TD, "shop", "a"), NULL, NULL).allow);
	/* Same namespace name, another trust domain: not the same namespace. */
	cr_assert_not(
	    decide(s, "web", "home", 80, who("evil.example", "web", "a"), NULL, NULL).allow);
	cr_assert_not(decide(s, "web", "home", 80, plaintext, NULL, NULL).allow);
	policy_set_put(s);
}

Test(policy, caller_forms)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r;
	struct policy_set *s;

	r = rule(&d, "any-authenticated", "shop", "a", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	r = rule(&d, "plaintext", "shop", "b", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_UNAUTHENTICATED, NULL);
	r = rule(&d, "namespace", "shop", "c", POLICY_ALLOW);
	from_sa(r, "web", NULL);
	r = rule(&d, "service-account", "shop", "e", POLICY_ALLOW);
	from_sa(r, "web", "front");
	r = rule(&d, "exact-id", "shop", "f", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_ID, "spiffe://partner.example/ns/web/sa/front");
	s = compile(&d);

	struct policy_caller front = who(TD, "web", "front"), other = who(TD, "web", "other"),
			     foreign = who("partner.example", "web", "front");

	/* "*": any authenticated caller, of any trust domain; not a plaintext one. */
	cr_assert(decide(s, "shop", "a", 1, front, NULL, NULL).allow);
	cr_assert(decide(s, "shop", "a", 1, foreign, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "a", 1, plaintext, NULL, NULL).allow);
	/* unauthenticated: plaintext callers only. */
	cr_assert(decide(s, "shop", "b", 1, plaintext, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "b", 1, front, NULL, NULL).allow);
	/* A namespace: any of its accounts, in the mesh's trust domain only. */
	cr_assert(decide(s, "shop", "c", 1, front, NULL, NULL).allow);
	cr_assert(decide(s, "shop", "c", 1, other, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "c", 1, foreign, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "c", 1, who(TD, "webx", "front"), NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "c", 1, plaintext, NULL, NULL).allow);
	/* A service account: that one. */
	cr_assert(decide(s, "shop", "e", 1, front, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "e", 1, other, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "e", 1, foreign, NULL, NULL).allow);
	/* An exact ID: the whole ID, trust domain included. */
	cr_assert(decide(s, "shop", "f", 1, foreign, NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "f", 1, front, NULL, NULL).allow);
	policy_set_put(s);
	policy_doc_free(&d);
}

Test(policy, ports_limit_a_rule)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r = rule(&d, "admin-port", "shop", "cart", POLICY_ALLOW);
	struct policy_set *s;

	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	r->ports[r->n_ports++] = 9090;
	r->ports[r->n_ports++] = 9091;
	s = compile(&d);
	cr_assert(decide(s, "shop", "cart", 9090, who(TD, "a", "b"), NULL, NULL).allow);
	cr_assert(decide(s, "shop", "cart", 9091, who(TD, "a", "b"), NULL, NULL).allow);
	cr_assert_not(decide(s, "shop", "cart", 80, who(TD, "a", "b"), NULL, NULL).allow);
	policy_set_put(s);
	policy_doc_free(&d);
}

static void to_match(struct policy_rule *r, const char *method, enum policy_path_kind k,
		     const char *path)
{
	struct policy_request_match *m = policy_rule_add_to(r);

	if (method)
		snprintf(m->methods[m->n_methods++], POLICY_MAX_METHOD + 1, "%s", method);
	m->path_kind = k;
	if (path)
		snprintf(m->path, sizeof(m->path), "%s", path);
}

Test(policy, http_matches)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r;
	struct policy_set *s;
	struct policy_caller c = who(TD, "web", "front");

	r = rule(&d, "reads", "shop", "cart", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, "GET", POLICY_PATH_PREFIX, "/items");
	to_match(r, "HEAD", POLICY_PATH_ANY, NULL);
	r = rule(&d, "grpc-get", "shop", "cart", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, "POST", POLICY_PATH_EXACT, "/shop.Cart/Get");
	r = rule(&d, "grpc-admin", "shop", "cart", POLICY_ALLOW);
	from_sa(r, "ops", "admin");
	to_match(r, NULL, POLICY_PATH_PREFIX, "/shop.Admin");
	r = rule(&d, "no-secrets", "shop", "cart", POLICY_DENY);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, NULL, POLICY_PATH_PREFIX, "/items/secret");
	s = compile(&d);
	cr_assert(policy_table_has_requests(policy_lookup(s, "shop", "cart")));

	/* Prefix: the path itself or below it at a '/', never a longer name. */
	cr_assert(decide(s, "shop", "cart", 80, c, "GET", "/items").allow);
	cr_assert(decide(s, "shop", "cart", 80, c, "GET", "/items/3").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "GET", "/itemsX").allow);
	/* Methods are case-sensitive and every criterion must hold. */
	cr_assert_not(decide(s, "shop", "cart", 80, c, "get", "/items").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "DELETE", "/items/3").allow);
	/* A second request form of the same rule. */
	cr_assert(decide(s, "shop", "cart", 80, c, "HEAD", "/anything").allow);
	/* The deny wins over the allow for the same request. */
	struct policy_decision dd = decide(s, "shop", "cart", 80, c, "GET", "/items/secret/k");

	cr_assert_not(dd.allow);
	cr_assert_str_eq(dd.reason, "no-secrets");
	/* gRPC: a method is an exact path, a service a prefix. */
	cr_assert(decide(s, "shop", "cart", 80, c, "POST", "/shop.Cart/Get").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "POST", "/shop.Cart/Delete").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "POST", "/shop.Cart/GetX").allow);
	cr_assert(decide(s, "shop", "cart", 80, who(TD, "ops", "admin"), "POST", "/shop.Admin/Drop")
		      .allow);
	cr_assert_not(
	    decide(s, "shop", "cart", 80, who(TD, "ops", "admin"), "POST", "/shop.AdminX/Drop")
		.allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "POST", "/shop.Admin/Drop").allow);
	policy_set_put(s);
	policy_doc_free(&d);
}

/*
 * The compiled form compares the standard methods as bits and the others
 * as strings: a form may mix both, a request's method may be neither, and
 * a method that is a prefix or an extension of another is another.
 */
Test(policy, methods_standard_and_others)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r = rule(&d, "mixed", "shop", "cart", POLICY_ALLOW);
	struct policy_request_match *m;
	struct policy_set *s;
	struct policy_caller c = who(TD, "web", "front");

	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	m = policy_rule_add_to(r);
	snprintf(m->methods[m->n_methods++], POLICY_MAX_METHOD + 1, "PURGE");
	snprintf(m->methods[m->n_methods++], POLICY_MAX_METHOD + 1, "GET");
	snprintf(m->methods[m->n_methods++], POLICY_MAX_METHOD + 1, "X-PATCH");
	m->path_kind = POLICY_PATH_PREFIX;
	snprintf(m->path, sizeof(m->path), "/c");
	r = rule(&d, "no-purge-secret", "shop", "cart", POLICY_DENY);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, "PURGE", POLICY_PATH_EXACT, "/c/secret");
	s = compile(&d);
	cr_assert(decide(s, "shop", "cart", 80, c, "GET", "/c/1").allow);
	cr_assert(decide(s, "shop", "cart", 80, c, "PURGE", "/c/1").allow);
	cr_assert(decide(s, "shop", "cart", 80, c, "X-PATCH", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "PATCH", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "GE", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "GETX", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "PURG", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "HEAD", "/c").allow);
	cr_assert_not(decide(s, "shop", "cart", 80, c, "GET", "/cx").allow);
	cr_assert_str_eq(decide(s, "shop", "cart", 80, c, "PURGE", "/c/secret").reason,
			 "no-purge-secret");
	cr_assert(decide(s, "shop", "cart", 80, c, "GET", "/c/secret").allow);
	/* A method token that is not NUL-terminated (as received). */
	struct policy_request rq = {"GETTING", 3, "/c", 2};
	struct policy_decision out;

	policy_decide(policy_lookup(s, "shop", "cart"), "shop", 80, &c, &rq, &out);
	cr_assert(out.allow);
	rq = (struct policy_request){"PURGED", 4, "/c", 2}; /* "PURG" */
	policy_decide(policy_lookup(s, "shop", "cart"), "shop", 80, &c, &rq, &out);
	cr_assert_not(out.allow);
	policy_set_put(s);
	policy_doc_free(&d);
}

/* An authenticated caller without some of its parts is matched by what it has. */
Test(policy, caller_parts_missing)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r = rule(&d, "by-ns", "shop", "cart", POLICY_ALLOW);
	struct policy_set *s;
	struct policy_caller only_id = {.authenticated = true,
					.id = "spiffe://" TD "/ns/web/sa/front"};

	from_sa(r, "web", NULL);
	r = rule(&d, "by-id", "shop", "cart", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_ID, "spiffe://" TD "/ns/ops/sa/admin");
	s = compile(&d);
	cr_assert_not(decide(s, "shop", "cart", 80, only_id, NULL, NULL).allow);
	only_id.id = "spiffe://" TD "/ns/ops/sa/admin";
	cr_assert_str_eq(decide(s, "shop", "cart", 80, only_id, NULL, NULL).reason, "by-id");
	policy_set_put(s);
	policy_doc_free(&d);
}

/* A connection cannot be matched on requests: allow rules with them do not match, deny rules do. */
Test(policy, connection_decision_takes_request_rules_the_safe_way)
{
	struct policy_doc d = {0};
	struct policy_rule *r;
	struct policy_set *s;
	struct policy_caller c = who(TD, "web", "front");

	r = rule(&d, "deny-deletes", "shop", "db", POLICY_DENY);
	from_sa(r, "web", NULL);
	to_match(r, "DELETE", POLICY_PATH_ANY, NULL);
	d.mesh_default = POLICY_DEFAULT_ALLOW;
	s = compile(&d);
	cr_assert_not(decide(s, "shop", "db", 5432, c, NULL, NULL).allow);
	cr_assert(decide(s, "shop", "db", 5432, who(TD, "other", "x"), NULL, NULL).allow);
	cr_assert(decide(s, "shop", "db", 5432, c, "GET", "/").allow);
	policy_set_put(s);
	policy_doc_free(&d);

	memset(&d, 0, sizeof(d));
	d.mesh_default = POLICY_DEFAULT_DENY;
	r = rule(&d, "allow-gets", "shop", "db", POLICY_ALLOW);
	from_sa(r, "web", NULL);
	to_match(r, "GET", POLICY_PATH_ANY, NULL);
	s = compile(&d);
	cr_assert_not(decide(s, "shop", "db", 5432, c, NULL, NULL).allow);
	cr_assert(decide(s, "shop", "db", 5432, c, "GET", "/").allow);
	cr_assert_not(policy_table_has_requests(policy_lookup(s, "shop", "other")));
	policy_set_put(s);
	policy_doc_free(&d);
}

static struct policy_decision decide_caller(const struct policy_set *s, const char *ns,
					    const char *svc, uint16_t port, struct policy_caller c)
{
	struct policy_decision out;

	policy_decide_caller(policy_lookup(s, ns, svc), ns, port, &c, &out);
	return out;
}

/*
 * The destination node's question (a tunneled call, seen as a connection):
 * may this caller make some call? Request rules are taken the other way
 * round from a connection's: an allow with requests may allow, a deny
 * with requests may not deny; a deny of every request still denies.
 */
Test(policy, caller_decision_takes_request_rules_the_permissive_way)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_DENY};
	struct policy_rule *r;
	struct policy_set *s;
	struct policy_caller front = who(TD, "web", "front"), ads = who(TD, "ads", "bot");
	struct policy_decision out;

	r = rule(&d, "front-reads", "shop", "cart", POLICY_ALLOW);
	from_sa(r, "web", "front");
	to_match(r, "GET", POLICY_PATH_PREFIX, "/items");
	r = rule(&d, "no-deletes", "shop", "cart", POLICY_DENY);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, "DELETE", POLICY_PATH_ANY, NULL);
	r = rule(&d, "no-ads", "shop", "cart", POLICY_DENY);
	from_sa(r, "ads", NULL);
	r = rule(&d, "ads-reads", "shop", "cart", POLICY_ALLOW);
	from_sa(r, "ads", NULL);
	to_match(r, "GET", POLICY_PATH_ANY, NULL);
	r = rule(&d, "ops-on-9090", "shop", "cart", POLICY_ALLOW);
	from_sa(r, "ops", NULL);
	r->ports[r->n_ports++] = 9090;
	s = compile(&d);

	/* front may GET /items: its connection to cart may pass; opaque, it may not. */
	out = decide_caller(s, "shop", "cart", 80, front);
	cr_assert(out.allow);
	cr_assert_str_eq(out.reason, "front-reads");
	cr_assert_not(decide(s, "shop", "cart", 80, front, NULL, NULL).allow);
	/* A deny of every request wins over an allow of some. */
	out = decide_caller(s, "shop", "cart", 80, ads);
	cr_assert_not(out.allow);
	cr_assert_str_eq(out.reason, "no-ads");
	/* No rule for the caller: the default. */
	out = decide_caller(s, "shop", "cart", 80, who(TD, "else", "x"));
	cr_assert_not(out.allow);
	cr_assert_str_eq(out.reason, "default-deny");
	cr_assert_not(decide_caller(s, "shop", "cart", 80, plaintext).allow);
	/* Ports still limit a rule. */
	cr_assert(decide_caller(s, "shop", "cart", 9090, who(TD, "ops", "x")).allow);
	cr_assert_not(decide_caller(s, "shop", "cart", 80, who(TD, "ops", "x")).allow);
	policy_set_put(s);
	policy_doc_free(&d);

	/* Without request rules it is the connection decision, for every caller. */
	memset(&d, 0, sizeof(d));
	d.mesh_default = POLICY_DEFAULT_SAME_NAMESPACE;
	r = rule(&d, "no-ads", "shop", "db", POLICY_DENY);
	from_sa(r, "ads", NULL);
	r = rule(&d, "web-in", "shop", "db", POLICY_ALLOW);
	from_sa(r, "web", NULL);
	s = compile(&d);
	cr_assert_not(policy_table_has_requests(policy_lookup(s, "shop", "db")));
	struct policy_caller callers[] = {front, ads, who(TD, "shop", "x"), who(TD, "else", "x"),
					  who("other.td", "shop", "x"), plaintext};

	for (size_t i = 0; i < sizeof(callers) / sizeof(callers[0]); i++) {
		struct policy_decision a = decide_caller(s, "shop", "db", 5432, callers[i]);
		struct policy_decision b = decide(s, "shop", "db", 5432, callers[i], NULL, NULL);

		cr_assert_eq(a.allow, b.allow, "caller %zu", i);
		cr_assert_str_eq(a.reason, b.reason, "caller %zu", i);
	}
	policy_set_put(s);
	policy_doc_free(&d);
}

Test(policy, namespace_rules_reach_every_service_of_it_only)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_ALLOW};
	struct policy_rule *r = rule(&d, "no-plaintext", "shop", "", POLICY_DENY);
	struct policy_set *s;

	from_kind(r, POLICY_PEER_UNAUTHENTICATED, NULL);
	r = rule(&d, "cart-only", "shop", "cart", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_UNAUTHENTICATED, NULL);
	s = compile(&d);
	/* The namespace's deny reaches cart, and wins over cart's own allow. */
	cr_assert_str_eq(decide(s, "shop", "cart", 80, plaintext, NULL, NULL).reason,
			 "no-plaintext");
	cr_assert_not(decide(s, "shop", "pay", 80, plaintext, NULL, NULL).allow);
	cr_assert(decide(s, "web", "cart", 80, plaintext, NULL, NULL).allow);
	cr_assert_eq(policy_set_rules(s), 2);
	policy_set_put(s);
	policy_doc_free(&d);
}

static void expect_refused(struct policy_doc *d, const char *needle)
{
	char err[256] = "";

	cr_assert_null(policy_compile(d, TD, err, sizeof(err)), "accepted, wanted \"%s\"", needle);
	cr_assert(strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
	cr_assert(strstr(err, "test "), "error \"%s\" does not name the origin", err);
	policy_doc_free(d);
	memset(d, 0, sizeof(*d));
}

Test(policy, bad_policies_are_refused_naming_origin_and_field)
{
	struct policy_doc d = {0};
	struct policy_rule *r;

	rule(&d, "no-callers", "shop", "", POLICY_ALLOW);
	expect_refused(&d, "from must list");

	r = rule(&d, "Bad_Name", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	expect_refused(&d, "name \"Bad_Name\"");

	r = rule(&d, "ok", "Shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	expect_refused(&d, "namespace \"Shop\"");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_ID, "spiffe://td/ns/../sa/x");
	expect_refused(&d, "from[0]: identity");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_ID, "http://td/ns/a/sa/x");
	expect_refused(&d, "is not a SPIFFE ID");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	from_sa(r, "web", "Front");
	expect_refused(&d, "from[1]: service account \"Front\"");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, "GE T", POLICY_PATH_ANY, NULL);
	expect_refused(&d, "to[0].methods[0]");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, NULL, POLICY_PATH_EXACT, "/a?b=1");
	expect_refused(&d, "has a query");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	to_match(r, NULL, POLICY_PATH_PREFIX, "items");
	expect_refused(&d, "must start with '/'");

	r = rule(&d, "ok", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	r->ports[r->n_ports++] = 80;
	r->ports[r->n_ports++] = 80;
	expect_refused(&d, "ports[1]: 80 is listed twice");

	r = rule(&d, "twin", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	r = rule(&d, "twin", "shop", "cart", POLICY_DENY);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	expect_refused(&d, "already in namespace shop");

	set_default(&d, "shop", "cart", POLICY_DEFAULT_DENY);
	set_default(&d, "shop", "cart", POLICY_DEFAULT_ALLOW);
	expect_refused(&d, "already has a default");

	/* The same name in two namespaces is two rules. */
	r = rule(&d, "twin", "shop", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	r = rule(&d, "twin", "web", "", POLICY_ALLOW);
	from_kind(r, POLICY_PEER_AUTHENTICATED, NULL);
	struct policy_set *s = compile(&d);

	policy_set_put(s);
	policy_doc_free(&d);
}

Test(policy, bounds_refuse_more)
{
	struct policy_doc d = {0};
	struct policy_rule *r = rule(&d, "many", "shop", "", POLICY_ALLOW);

	for (int i = 0; i < POLICY_MAX_FROM; i++)
		cr_assert_not_null(policy_rule_add_from(r));
	cr_assert_null(policy_rule_add_from(r));
	for (int i = 0; i < POLICY_MAX_TO; i++)
		cr_assert_not_null(policy_rule_add_to(r));
	cr_assert_null(policy_rule_add_to(r));
	policy_doc_free(&d);
	for (int i = 0; i < POLICY_MAX_RULES; i++)
		cr_assert_not_null(policy_doc_add_rule(&d));
	cr_assert_null(policy_doc_add_rule(&d));
	policy_doc_free(&d);
}

/* The set does not refer to the written form: freeing it first changes nothing. */
Test(policy, compiled_set_outlives_the_written_policy)
{
	struct policy_doc d = {0};
	struct policy_rule *r = rule(&d, "web-in", "shop", "cart", POLICY_ALLOW);
	struct policy_set *s;

	from_sa(r, "web", NULL);
	set_default(&d, "shop", "cart", POLICY_DEFAULT_DENY);
	s = compile(&d);
	policy_doc_free(&d);
	cr_assert(decide(s, "shop", "cart", 1, who(TD, "web", "x"), NULL, NULL).allow);
	cr_assert_str_eq(decide(s, "shop", "cart", 1, plaintext, NULL, NULL).reason,
			 "default-deny");
	policy_set_get(s);
	policy_set_put(s);
	cr_assert(decide(s, "shop", "cart", 1, who(TD, "web", "x"), NULL, NULL).allow);
	policy_set_put(s);
}

/*
 * The table cache answers what policy_lookup does, per service id, and a
 * new set (a policy change: a new serial) misses even where the old one's
 * memory is reused.
 */
Test(policy, table_cache_follows_the_set)
{
	struct policy_doc d = {.mesh_default = POLICY_DEFAULT_ALLOW};
	struct policy_table_cache *c = calloc(1, sizeof(*c));
	struct policy_set *s;
	struct policy_decision out;
	uint32_t other = 0;

	cr_assert_not_null(c);
	set_default(&d, "shop", "cart", POLICY_DEFAULT_DENY);
	s = compile(&d);
	/* An id that shares id 7's entry, so that each evicts the other. */
	for (uint32_t id = 8; !other && id < 100000; id++) {
		int i7 = -1, iid = -1;

		memset(c, 0, sizeof(*c));
		policy_lookup_cached(c, s, 7, "shop", "cart");
		policy_lookup_cached(c, s, id, "shop", "other");
		for (int i = 0; i < POLICY_TABLE_CACHE; i++) {
			i7 = c->e[i].id == 7 ? i : i7;
			iid = c->e[i].id == id ? i : iid;
		}
		other = i7 < 0 ? id : 0; /* id took 7's entry */
		cr_assert(iid >= 0);
	}
	cr_assert_neq(other, 0);
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(policy_lookup_cached(c, s, 7, "shop", "cart"),
			     policy_lookup(s, "shop", "cart"));
		cr_assert_eq(policy_lookup_cached(c, s, other, "shop", "other"),
			     policy_lookup(s, "shop", "other"));
		cr_assert_eq(policy_lookup_cached(c, s, 0, "shop", "cart"),
			     policy_lookup(s, "shop", "cart"));
		cr_assert_eq(policy_lookup_cached(NULL, s, 7, "shop", "cart"),
			     policy_lookup(s, "shop", "cart"));
	}
	policy_decide(policy_lookup_cached(c, s, 7, "shop", "cart"), "shop", 80, &plaintext, NULL,
		      &out);
	cr_assert_not(out.allow);

	/* The policy changes: cart is open now. The old set is freed first. */
	policy_set_put(s);
	policy_doc_free(&d);
	d = (struct policy_doc){.mesh_default = POLICY_DEFAULT_DENY};
	set_default(&d, "shop", "cart", POLICY_DEFAULT_ALLOW);
	s = compile(&d);
	policy_decide(policy_lookup_cached(c, s, 7, "shop", "cart"), "shop", 80, &plaintext, NULL,
		      &out);
	cr_assert(out.allow);
	cr_assert_str_eq(out.reason, "default-allow");
	cr_assert_eq(policy_lookup_cached(c, s, 7, "shop", "cart"),
		     policy_lookup(s, "shop", "cart"));
	policy_decide(policy_lookup_cached(c, s, other, "shop", "other"), "shop", 80, &plaintext,
		      NULL, &out);
	cr_assert_not(out.allow);
	policy_set_put(s);
	policy_doc_free(&d);
	free(c);
}
