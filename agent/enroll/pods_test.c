// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pod and namespace tables: decoding real API shapes, and the rules. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/addr.h"
#include "enroll/pods.h"

static struct enroll_table t;

static void setup(void)
{
	cr_assert_eq(enroll_table_init(&t), 0);
}

static void teardown(void)
{
	enroll_table_fini(&t);
}

TestSuite(enroll_pods, .init = setup, .fini = teardown);

/* A pod as the API server sends it (trimmed), with label value lab ("" none). */
static json_object *pod_json(const char *name, const char *ns, const char *lab, bool host)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s\","
		 "\"namespace\":\"%s\",\"uid\":\"0f3c2c4e-1b7a-4f53-9a51-%012d\","
		 "\"resourceVersion\":\"77\",\"labels\":{\"app\":\"web\"%s%s%s}},"
		 "\"spec\":{\"nodeName\":\"node-1\",\"serviceAccountName\":\"web-sa\","
		 "\"hostNetwork\":%s,\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]},"
		 "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.244.1.7\","
		 "\"podIPs\":[{\"ip\":\"10.244.1.7\"},{\"ip\":\"fd00:10:244:1::7\"}]}}",
		 name, ns, (int)strlen(name) * 1000 + name[0], *lab ? ",\"shoal.io/mesh\":\"" : "",
		 lab, *lab ? "\"" : "", host ? "true" : "false");
	return json_tokener_parse(text);
}

static struct enroll_pod *put(const char *name, const char *ns, const char *lab, bool host)
{
	json_object *o = pod_json(name, ns, lab, host);
	struct enroll_pod p;
	char err[256];

	cr_assert_not_null(o);
	cr_assert_eq(enroll_decode_pod(o, &p, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	return enroll_put_pod(&t, &p);
}

static void put_ns(const char *name, const char *lab)
{
	char text[512], err[256];
	struct enroll_ns n;
	json_object *o;

	snprintf(text, sizeof(text),
		 "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\",\"labels\":{"
		 "\"shoal.io/mesh\":\"%s\"}},\"status\":{\"phase\":\"Active\"}}",
		 name, lab);
	o = json_tokener_parse(text);
	cr_assert_eq(enroll_decode_ns(o, &n, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_eq(enroll_put_ns(&t, &n), 0);
}

Test(enroll_pods, decodes_a_pod)
{
	struct enroll_pod *p = put("web-1", "shop", "enabled", false);
	struct shoal_addr a;

	cr_assert_str_eq(p->ns, "shop");
	cr_assert_str_eq(p->name, "web-1");
	cr_assert_str_eq(p->uid, "0f3c2c4e-1b7a-4f53-9a51-000000005119");
	cr_assert_str_eq(p->service_account, "web-sa");
	cr_assert_str_eq(p->phase, "Running");
	cr_assert_eq(p->label, ENROLL_LABEL_ENABLED);
	cr_assert_eq(p->n_ips, 2, "podIP repeats podIPs[0]: counted once");
	addr_parse("fd00:10:244:1::7", &a);
	cr_assert(enroll_pod_has_ip(p, &a));
	addr_parse("10.244.1.8", &a);
	cr_assert_not(enroll_pod_has_ip(p, &a));
}

Test(enroll_pods, refuses_bad_objects)
{
	const char *bad[] = {
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"}}",	     /* no uid */
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\",\"uid\":7}}", /* wrong type */
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\",\"uid\":\"u\"},"
	    "\"spec\":{\"hostNetwork\":\"yes\"}}",
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\",\"uid\":\"u\"},"
	    "\"status\":{\"podIPs\":[{\"ip\":\"10.1.1\"}]}}",
	    "[]",
	};
	struct enroll_pod p;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_object *o = json_tokener_parse(bad[i]);

		cr_expect_eq(enroll_decode_pod(o, &p, err, sizeof(err)), -EINVAL, "%s", bad[i]);
		json_object_put(o);
	}
}

Test(enroll_pods, service_account_defaults_and_nulls)
{
	json_object *o = json_tokener_parse(
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\",\"uid\":\"u\",\"labels\":null},"
	    "\"spec\":{\"hostNetwork\":null},\"status\":{\"podIPs\":null}}");
	struct enroll_pod p;
	char err[256];

	cr_assert_eq(enroll_decode_pod(o, &p, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_str_eq(p.service_account, "default");
	cr_assert_eq(p.n_ips, 0);
	cr_assert_eq(p.label, ENROLL_LABEL_ABSENT);
}

Test(enroll_pods, the_rules)
{
	put_ns("meshed", "enabled");
	put_ns("off", "disabled");
	/* namespace label, no pod label */
	cr_assert(enroll_wanted(&t, put("a", "meshed", "", false)));
	cr_assert_not(enroll_wanted(&t, put("b", "plain", "", false)));
	cr_assert_not(enroll_wanted(&t, put("c", "off", "", false)));
	/* the pod's label overrides, both ways */
	cr_assert_not(enroll_wanted(&t, put("d", "meshed", "disabled", false)));
	cr_assert(enroll_wanted(&t, put("e", "plain", "enabled", false)));
	cr_assert(enroll_wanted(&t, put("f", "off", "enabled", false)));
	/* another value is no label */
	cr_assert(enroll_wanted(&t, put("g", "meshed", "maybe", false)));
	/* host network: never */
	cr_assert_not(enroll_wanted(&t, put("h", "meshed", "", true)));
	cr_assert_not(enroll_wanted(&t, put("i", "plain", "enabled", true)));
	/* the namespace loses its label (the watch sends DELETED: it left the selector) */
	cr_assert(enroll_del_ns(&t, "meshed"));
	cr_assert_not(enroll_wanted(&t, enroll_find_pod_name(&t, "meshed", "a")));
}

Test(enroll_pods, updates_keep_the_controllers_fields)
{
	struct enroll_pod *p = put("a", "ns", "", false);

	p->cookie = 42;
	p->state = ENROLL_STATE_ENROLLED;
	p = put("a", "ns", "disabled", false);
	cr_assert_eq(t.n_pods, 1);
	cr_assert_eq(p->cookie, 42);
	cr_assert_eq(p->state, ENROLL_STATE_ENROLLED);
	cr_assert_eq(p->label, ENROLL_LABEL_DISABLED);
}

Test(enroll_pods, sweep_drops_what_the_list_missed)
{
	struct enroll_pod gone[4];

	put("a", "ns", "", false);
	put("bb", "ns", "", false);
	put("ccc", "ns", "", false);
	enroll_mark(&t, true);
	put("bb", "ns", "", false);
	cr_assert_eq(enroll_sweep(&t, true, gone, 4), 2);
	cr_assert_eq(t.n_pods, 1);
	cr_assert_str_eq(t.pods[0].name, "bb");
	cr_assert(!strcmp(gone[0].name, "a") || !strcmp(gone[1].name, "a"));
}
