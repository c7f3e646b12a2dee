// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* AuthorizationPolicy objects: what they decode to, and what is refused, naming the field. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "discovery/test_paths.h"
#include "policy/policy_crd.h"

static char err[512];

static int decode(const char *json, struct policy_crd *out)
{
	json_object *obj = json_tokener_parse(json);
	int ret;

	cr_assert_not_null(obj, "bad test JSON: %s", json);
	err[0] = '\0';
	ret = policy_crd_decode(obj, out, err, sizeof(err));
	json_object_put(obj);
	return ret;
}

#define META                                                                                       \
	"\"apiVersion\":\"shoal.io/v1alpha1\",\"kind\":\"AuthorizationPolicy\","                   \
	"\"metadata\":{\"namespace\":\"shop\",\"name\":\"web-in\",\"resourceVersion\":\"7\"}"

Test(policy_crd, rule_decodes)
{
	struct policy_crd c;

	cr_assert_eq(
	    decode("{" META ",\"spec\":{\"service\":\"cart\",\"ports\":[8080,9090],"
		   "\"action\":\"deny\",\"from\":[\"*\",\"unauthenticated\","
		   "{\"namespace\":\"web\"},{\"serviceAccount\":\"ops/admin\"},"
		   "{\"identity\":\"spiffe://p.example/ns/a/sa/b\"}],"
		   "\"to\":[{\"methods\":[\"GET\",\"HEAD\"],\"path\":{\"prefix\":\"/items/\"}},"
		   "{\"grpc\":{\"service\":\"shop.Cart\",\"method\":\"Get\"}},"
		   "{\"grpc\":{\"service\":\"shop.Admin\"}}]}}",
		   &c),
	    0, "%s", err);
	cr_assert_not(c.is_default);
	cr_assert_str_eq(c.rule.name, "web-in");
	cr_assert_str_eq(c.rule.namespace, "shop");
	cr_assert_str_eq(c.rule.service, "cart");
	cr_assert_str_eq(c.resource_version, "7");
	cr_assert_eq(c.rule.action, POLICY_DENY);
	cr_assert_eq(c.rule.n_ports, 2);
	cr_assert_eq(c.rule.ports[1], 9090);
	cr_assert_eq(c.rule.n_from, 5);
	cr_assert_eq(c.rule.from[0].kind, POLICY_PEER_AUTHENTICATED);
	cr_assert_eq(c.rule.from[1].kind, POLICY_PEER_UNAUTHENTICATED);
	cr_assert_eq(c.rule.from[2].kind, POLICY_PEER_NAMESPACE);
	cr_assert_str_eq(c.rule.from[2].ns, "web");
	cr_assert_eq(c.rule.from[3].kind, POLICY_PEER_SERVICE_ACCOUNT);
	cr_assert_str_eq(c.rule.from[3].ns, "ops");
	cr_assert_str_eq(c.rule.from[3].sa, "admin");
	cr_assert_eq(c.rule.from[4].kind, POLICY_PEER_ID);
	cr_assert_eq(c.rule.n_to, 3);
	cr_assert_eq(c.rule.to[0].n_methods, 2);
	cr_assert_eq(c.rule.to[0].path_kind, POLICY_PATH_PREFIX);
	cr_assert_str_eq(c.rule.to[0].path, "/items");
	cr_assert_eq(c.rule.to[1].path_kind, POLICY_PATH_EXACT);
	cr_assert_str_eq(c.rule.to[1].path, "/shop.Cart/Get");
	cr_assert_eq(c.rule.to[2].path_kind, POLICY_PATH_PREFIX);
	cr_assert_str_eq(c.rule.to[2].path, "/shop.Admin");
	cr_assert_str_eq(c.rule.origin, "AuthorizationPolicy shop/web-in");
	policy_crd_clear(&c);
}

Test(policy_crd, default_decodes)
{
	struct policy_crd c;

	cr_assert_eq(decode("{" META ",\"spec\":{\"default\":\"same-namespace\"}}", &c), 0, "%s",
		     err);
	cr_assert(c.is_default);
	cr_assert_str_eq(c.def.namespace, "shop");
	cr_assert_str_eq(c.def.service, "");
	cr_assert_eq(c.def.def, POLICY_DEFAULT_SAME_NAMESPACE);
	cr_assert_eq(decode("{" META ",\"spec\":{\"service\":\"pub\",\"default\":\"allow\"}}", &c),
		     0, "%s", err);
	cr_assert_str_eq(c.def.service, "pub");
	cr_assert_eq(c.def.def, POLICY_DEFAULT_ALLOW);
}

static void refused(const char *spec, const char *want)
{
	struct policy_crd c;
	char json[2048];

	snprintf(json, sizeof(json), "{" META ",\"spec\":%s}", spec);
	cr_assert_eq(decode(json, &c), -EINVAL, "accepted %s", spec);
	cr_assert(strstr(err, want), "for %s\n got \"%s\"\nwant \"%s\"", spec, err, want);
	cr_assert(!strncmp(err, "AuthorizationPolicy shop/web-in: ", 33), "no object named: %s",
		  err);
}

Test(policy_crd, refusals_name_object_and_field)
{
	refused("{\"action\":\"allow\"}", "from must list 1..32 callers");
	refused("{\"from\":[\"*\"]}", "spec.action is required");
	refused("{\"action\":\"permit\",\"from\":[\"*\"]}", "spec.action: must be allow or deny");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"colour\":1}",
		"spec.colour: unknown field");
	refused("{\"action\":\"allow\",\"from\":[\"everyone\"]}", "spec.from[0]: must be \"*\"");
	refused(
	    "{\"action\":\"allow\",\"from\":[{\"namespace\":\"a\",\"identity\":\"spiffe://t/x\"}]}",
	    "spec.from[0]: must name exactly one");
	refused("{\"action\":\"allow\",\"from\":[{\"team\":\"a\"}]}",
		"spec.from[0].team: unknown field");
	refused("{\"action\":\"allow\",\"from\":[{\"serviceAccount\":\"front\"}]}",
		"spec.from[0].serviceAccount: must be namespace/service-account");
	refused("{\"action\":\"allow\",\"from\":[{\"namespace\":7}]}",
		"spec.from[0].namespace: must be a string, got int");
	refused("{\"action\":\"allow\",\"from\":[{\"serviceAccount\":\"web/Front\"}]}",
		"from[0]: service account \"Front\"");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"ports\":[0]}",
		"spec.ports[0]: must be a port");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"ports\":[\"80\"]}",
		"spec.ports[0]: must be a port");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"ports\":[80,80]}",
		"ports[1]: 80 is listed twice");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{}]}", "spec.to[0]: names neither");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{\"methods\":[\"get\"]}]}",
		"spec.to[0].methods[0]: must be an upper-case method token");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{\"path\":{\"exact\":\"/"
		"a\",\"prefix\":\"/b\"}}]}",
		"spec.to[0].path: must name exactly one of exact, prefix");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{\"path\":{\"exact\":\"a\"}}]}",
		"to[0]: path \"a\" must start with '/'");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{\"path\":{\"exact\":\"/"
		"a\"},\"grpc\":{\"service\":\"x\"}}]}",
		"spec.to[0]: path and grpc exclude each other");
	refused("{\"action\":\"allow\",\"from\":[\"*\"],\"to\":[{\"grpc\":{\"service\":\"a/b\"}}]}",
		"spec.to[0].grpc: service and method must be gRPC names");
	refused("{\"default\":\"deny\",\"action\":\"allow\"}", "spec.default stands alone");
	refused("{\"default\":\"maybe\"}", "spec.default: must be allow, deny or same-namespace");
	refused("{\"service\":\"Cart\",\"default\":\"deny\"}",
		"service \"Cart\" is not a DNS label");
	refused("[]", "spec is required");
	/* More callers than the bound, refused before any is read. */
	char many[1024] = "{\"action\":\"allow\",\"from\":[";

	for (int i = 0; i <= POLICY_MAX_FROM; i++)
		strcat(many, i ? ",\"*\"" : "\"*\"");
	strcat(many, "]}");
	refused(many, "spec.from: at most 32 entries, got 33");
}

Test(policy_crd, metadata_is_required)
{
	struct policy_crd c;

	cr_assert_eq(decode("{\"spec\":{}}", &c), -EINVAL);
	cr_assert(strstr(err, "metadata is required"), "%s", err);
	cr_assert_eq(decode("{\"metadata\":{\"name\":\"x\"},\"spec\":{}}", &c), -EINVAL);
	cr_assert(strstr(err, "namespace: is required"), "%s", err);
}

/*
 * The fixtures the CRD's schema is checked against (scripts/validate-
 * manifests.sh): the agent accepts the good ones and refuses the bad ones,
 * so that the API server and the agent agree on what a mistake is.
 */
static int decode_fixtures(const char *file, bool want_ok)
{
	char cmd[1024], line[8192];
	int n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import json,sys,yaml\n"
		 "for d in yaml.safe_load_all(open(sys.argv[1])): print(json.dumps(d))' %s",
		 file);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct policy_crd c;
		int ret = decode(line, &c);

		cr_expect_eq(ret == 0, want_ok, "%s: %.80s: %s", file, line, ret ? err : "accepted");
		if (!ret)
			policy_crd_clear(&c);
		n++;
	}
	cr_assert_eq(pclose(f), 0, "python3 with yaml could not read %s", file);
	return n;
}

Test(policy_crd, fixtures_agree_with_the_schema)
{
	if (system("python3 -c 'import yaml' 2>/dev/null") != 0)
		cr_skip_test("needs python3-yaml to read the YAML fixtures");
	cr_expect_geq(decode_fixtures(K8S_FIXTURES_DIR "/authorizationpolicies.good.yaml", true), 4);
	cr_expect_geq(decode_fixtures(K8S_FIXTURES_DIR "/authorizationpolicies.bad.yaml", false), 8);
}
