// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* policy: in the config file: what it compiles to, and what it refuses. */
#include "config/config_test.h"
#include "policy/policy.h"

static struct policy_decision decide_as(const char *ns, const char *sa, const char *dst_ns,
					const char *dst, uint16_t port, const char *method,
					const char *path)
{
	static char id[POLICY_MAX_ID + 1];
	struct policy_caller c = {.authenticated = ns != NULL};
	struct policy_request rq = {method, method ? strlen(method) : 0, path,
				    path ? strlen(path) : 0};
	struct policy_decision d;

	if (ns) {
		snprintf(id, sizeof(id), "spiffe://%s/ns/%s/sa/%s", cfg->identity.trust_domain, ns,
			 sa);
		c.id = id;
		c.trust_domain = cfg->identity.trust_domain;
		c.ns = ns;
		c.sa = sa;
	}
	cr_assert_not_null(cfg->policy);
	policy_decide(policy_lookup(cfg->policy, dst_ns, dst), dst_ns, port, &c,
		      method ? &rq : NULL, &d);
	return d;
}

Test(config, policy_absent_is_no_policy)
{
	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_assert_null(cfg->policy);
	cr_assert_null(cfg->policy_file);
}

Test(config, policy_section_compiles_and_decides)
{
	static const char text[] = NODE "policy:\n"
					"  default: deny\n"
					"  defaults:\n"
					"    - {namespace: shop, default: same-namespace}\n"
					"    - {namespace: shop, service: public, default: allow}\n"
					"  rules:\n"
					"    - name: web-reads-cart\n"
					"      namespace: shop\n"
					"      service: cart\n"
					"      ports: [8080]\n"
					"      action: allow\n"
					"      from:\n"
					"        - namespace: web\n"
					"        - service_account: ops/admin\n"
					"        - identity: spiffe://partner.example/ns/a/sa/b\n"
					"      to:\n"
					"        - methods: [GET, HEAD]\n"
					"          path: {prefix: /items/}\n"
					"        - grpc: {service: shop.Cart, method: Get}\n"
					"    - name: no-plaintext\n"
					"      namespace: shop\n"
					"      action: deny\n"
					"      from: [unauthenticated]\n"
					"    - name: admin-svc\n"
					"      namespace: shop\n"
					"      service: cart\n"
					"      action: deny\n"
					"      from: ['*']\n"
					"      to:\n"
					"        - grpc: {service: shop.Admin}\n";

	cr_assert_eq(parse(text), 0, "%s", err);
	cr_assert_not_null(cfg->policy_file);
	cr_assert_eq(cfg->policy, cfg->policy_file);
	cr_assert_eq(policy_set_rules(cfg->policy), 3);

	cr_assert(decide_as("web", "front", "shop", "cart", 8080, "GET", "/items/3").allow);
	/* The prefix was written with a trailing '/': it still matches /items itself. */
	cr_assert(decide_as("web", "front", "shop", "cart", 8080, "HEAD", "/items").allow);
	cr_assert(decide_as("ops", "admin", "shop", "cart", 8080, "POST", "/shop.Cart/Get").allow);
	cr_assert_not(decide_as("ops", "other", "shop", "cart", 8080, "GET", "/items").allow);
	/* Another port of cart: the namespace default, same-namespace. */
	cr_assert_str_eq(decide_as("web", "front", "shop", "cart", 9090, "GET", "/items").reason,
			 "default-same-namespace");
	cr_assert(decide_as("shop", "checkout", "shop", "cart", 9090, "GET", "/items").allow);
	/* The gRPC service deny, a prefix of /shop.Admin. */
	cr_assert_str_eq(
	    decide_as("shop", "checkout", "shop", "cart", 8080, "POST", "/shop.Admin/Drop").reason,
	    "admin-svc");
	/* Plaintext callers are denied in shop, even to public; another namespace: the mesh's deny.
	 */
	cr_assert_str_eq(decide_as(NULL, NULL, "shop", "public", 80, NULL, NULL).reason,
			 "no-plaintext");
	cr_assert(decide_as("x", "y", "shop", "public", 80, NULL, NULL).allow);
	cr_assert_str_eq(decide_as("x", "y", "web", "home", 80, NULL, NULL).reason, "default-deny");
}

/* The compiled policy is shared by copies, and outlives the config it came from. */
Test(config, policy_shared_by_copies)
{
	struct config *copy = NULL;

	cr_assert_eq(parse(NODE "policy:\n  default: deny\n"), 0, "%s", err);
	cr_assert_eq(config_copy(cfg, cfg->n_services, &copy), 0);
	cr_assert_eq(copy->policy, cfg->policy);
	config_free(cfg);
	cfg = copy;
	cr_assert_not(decide_as("a", "b", "c", "d", 1, NULL, NULL).allow);
}

Test(config, policy_refusals_name_the_field)
{
	assert_refused(
	    NODE "policy:\n  default: maybe\n",
	    "t.yaml:4: policy.default: must be allow, deny or same-namespace, got \"maybe\"");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow}\n",
		       "t.yaml:5: policy.rules[0].from: is required");
	assert_refused(
	    NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, from: []}\n",
	    "t.yaml:5: policy.rules[0].from: must list 1..32 callers");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: permit, "
			    "from: ['*']}\n",
		       "t.yaml:5: policy.rules[0].action: must be allow or deny, got \"permit\"");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: [everyone]}\n",
		       "t.yaml:5: policy.rules[0].from[0]: must be \"*\", \"unauthenticated\" or a "
		       "mapping");
	assert_refused(
	    NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
		 "from: [{namespace: a, identity: 'spiffe://t/x'}]}\n",
	    "t.yaml:5: policy.rules[0].from[0]: a caller is \"*\", \"unauthenticated\", or "
	    "a mapping of exactly one");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: [{service_account: front}]}\n",
		       "t.yaml:5: policy.rules[0].from[0].service_account: must be "
		       "namespace/service-account, got \"front\"");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: ['*'], ports: [80, 80]}\n",
		       "t.yaml:5: policy.rules[0].ports[1]: 80 is listed twice");
	assert_refused(
	    NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
		 "from: ['*'], to: [{methods: [get]}]}\n",
	    "t.yaml:5: policy.rules[0].to[0].methods[0]: must be an upper-case method token");
	assert_refused(
	    NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
		 "from: ['*'], to: [{path: {exact: /a, prefix: /b}}]}\n",
	    "t.yaml:5: policy.rules[0].to[0].path.prefix: exact, prefix and grpc exclude");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: ['*'], to: [{path: {exact: /a}, grpc: {service: x.Y}}]}\n",
		       "t.yaml:5: policy.rules[0].to[0].grpc: path and grpc exclude each other");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: ['*'], to: [{}]}\n",
		       "t.yaml:5: policy.rules[0].to[0]: a request names methods");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: Shop, action: allow, "
			    "from: ['*']}\n",
		       "t.yaml:5: policy.rules[0].namespace:");
	/* What only the whole policy shows: the rule's path and line, and the other one. */
	assert_refused(
	    NODE "policy:\n  rules:\n"
		 "    - {name: a, namespace: shop, action: allow, from: ['*']}\n"
		 "    - {name: a, namespace: shop, service: b, action: deny, from: ['*']}\n",
	    "t.yaml: policy.rules[1] (line 6): a rule named \"a\" is already in namespace "
	    "shop (policy.rules[0] (line 5))");
	assert_refused(NODE "policy:\n  rules:\n"
			    "    - {name: a, namespace: shop, action: allow, "
			    "from: [{identity: 'spiffe://td/ns/../sa/x'}]}\n",
		       "t.yaml: policy.rules[0] (line 5): from[0]: identity");
	assert_refused(NODE "policy:\n  defaults:\n"
			    "    - {namespace: shop, default: deny}\n"
			    "    - {namespace: shop, default: allow}\n",
		       "t.yaml: policy.defaults[1] (line 6): shop already has a default");
	assert_refused(NODE "policy:\n  rules:\n    - {name: a, namespace: shop, action: allow, "
			    "from: ['*'], colour: blue}\n",
		       "t.yaml:5: policy.rules[0].colour: unknown field");
}
