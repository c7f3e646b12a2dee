// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for the AuthorizationPolicy decoder (policy_crd_decode)
 * and what an accepted object goes through next: compiled into a set and
 * decided for a few callers and requests. Besides what ASan and UBSan
 * catch, it checks the decoder's contract: a refusal names the object or
 * the field (a message) and leaves no heap behind; an accepted object
 * compiles (the decoder checks what policy_doc_check checks of one rule);
 * a decision always has a reason, and a deny rule without requests that
 * names every authenticated caller denies them. Any breach aborts, so
 * libFuzzer saves the input. Built by scripts/fuzz-policy.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "policy/policy.h"
#include "policy/policy_crd.h"

#define TD "cluster.local"

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "policy_fuzz: broken invariant: %s\n", what);
		abort();
	}
}

/* A copy of c's rule or default in d (d owns its heap, as k8s_policy.c's merge does). */
static void add(struct policy_doc *d, const struct policy_crd *c)
{
	if (c->is_default) {
		struct policy_default_rule *df = policy_doc_add_default(d);

		check(df != NULL, "one default fits");
		*df = c->def;
		return;
	}
	struct policy_rule *r = policy_doc_add_rule(d);

	check(r != NULL, "one rule fits");
	*r = c->rule;
	r->from = malloc((size_t)c->rule.n_from * sizeof(*r->from));
	r->to = c->rule.n_to ? malloc((size_t)c->rule.n_to * sizeof(*r->to)) : NULL;
	check(r->from && (!c->rule.n_to || r->to), "memory");
	memcpy(r->from, c->rule.from, (size_t)c->rule.n_from * sizeof(*r->from));
	if (c->rule.n_to)
		memcpy(r->to, c->rule.to, (size_t)c->rule.n_to * sizeof(*r->to));
}

static bool names_every_authenticated(const struct policy_rule *r)
{
	for (int i = 0; i < r->n_from; i++) {
		if (r->from[i].kind == POLICY_PEER_AUTHENTICATED)
			return true;
	}
	return false;
}

static void decide_some(const struct policy_set *set, const struct policy_crd *c)
{
	const char *svc = c->is_default ? c->def.service : c->rule.service;
	const char *ns = c->ns;
	const struct policy_table *t = policy_lookup(set, ns, svc[0] ? svc : "any");
	uint16_t port = !c->is_default && c->rule.n_ports ? c->rule.ports[0] : 80;
	const struct policy_caller callers[] = {
	    {.authenticated = false},
	    {true, "spiffe://" TD "/ns/default/sa/client", TD, "default", "client"},
	    {true, "spiffe://partner.example/ns/web/sa/front", "partner.example", "web", "front"},
	};
	char path[64];
	const char *method = "GET";
	struct policy_request rq = {method, 3, path, 0};

	check(t != NULL, "a table for every service");
	/* A path of the rule's first request, so that request matches get walked. */
	snprintf(path, sizeof(path), "%s",
		 !c->is_default && c->rule.n_to && c->rule.to[0].path_kind != POLICY_PATH_ANY
		     ? c->rule.to[0].path
		     : "/");
	rq.path_len = strlen(path);
	if (!c->is_default && c->rule.n_to && c->rule.to[0].n_methods) {
		rq.method = c->rule.to[0].methods[0];
		rq.method_len = strlen(rq.method);
	}
	for (size_t i = 0; i < sizeof(callers) / sizeof(callers[0]); i++) {
		struct policy_decision dc, dr;

		policy_decide(t, ns, port, &callers[i], NULL, &dc);
		policy_decide(t, ns, port, &callers[i], &rq, &dr);
		check(dc.reason && dc.reason[0] && dr.reason && dr.reason[0],
		      "a decision has a reason");
		check(!dc.rule || !strcmp(dc.rule->name, c->name),
		      "the deciding rule is the object's");
		if (!c->is_default && c->rule.action == POLICY_DENY && !c->rule.n_to &&
		    callers[i].authenticated && names_every_authenticated(&c->rule) &&
		    svc[0] != '\0')
			check(!dc.allow && !dr.allow, "a deny of every caller denies");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_tokener *tok = json_tokener_new();
	json_object *obj;
	struct policy_crd c;
	char err[512] = "";

	if (!tok)
		return 0;
	obj =
	    json_tokener_parse_ex(tok, (const char *)data, (int)(size > 1 << 20 ? 1 << 20 : size));
	json_tokener_free(tok);
	if (!obj)
		return 0;
	memset(&c, 0xa5, sizeof(c)); /* the decoder owes every field it reports */
	if (policy_crd_decode(obj, &c, err, sizeof(err)) != 0) {
		check(err[0] != '\0', "a refusal says why");
		json_object_put(obj);
		return 0;
	}
	json_object_put(obj);

	struct policy_doc d = {0};
	struct policy_set *set;

	add(&d, &c);
	set = policy_compile(&d, TD, err, sizeof(err));
	if (!set)
		fprintf(stderr, "policy_fuzz: %s\n", err);
	check(set != NULL, "an accepted object compiles");
	check(policy_set_rules(set) == (c.is_default ? 0 : 1), "one rule compiled");
	decide_some(set, &c);
	policy_set_put(set);
	policy_doc_free(&d);
	policy_crd_clear(&c);
	return 0;
}
