// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pod and namespace tables: decoding real API shapes, and the rules. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/addr.h"
#include "discovery/k8s_decode.h"
#include "discovery/test_paths.h"
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

/* Every line of the fixtures (the API's shapes) through the watch path:
 * the event decoder for the type, enrollment's decoder for the object. */
static int apply_fixture(const char *file, int *decoded)
{
	char path[512], *line = NULL, err[256];
	size_t cap = 0;
	int lines = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", K8S_FIXTURES_DIR, file);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	*decoded = 0;
	while (getline(&line, &cap, f) > 0) {
		json_object *o = json_tokener_parse(line), *obj;
		struct k8s_event ev;

		cr_assert_not_null(o);
		cr_assert_eq(k8s_decode_event(o, K8S_KIND_RAW, &ev, err, sizeof(err)), 0, "%s", err);
		lines++;
		obj = json_object_object_get(o, "object");
		if (ev.type <= K8S_EV_DELETED) {
			const char *kind = json_object_get_string(json_object_object_get(obj, "kind"));

			if (!strcmp(kind, "Namespace")) {
				struct enroll_ns n;

				cr_assert_eq(enroll_decode_ns(obj, &n, err, sizeof(err)), 0, "%s", err);
				if (ev.type == K8S_EV_DELETED)
					enroll_del_ns(&t, n.name);
				else
					enroll_put_ns(&t, &n);
			} else {
				struct enroll_pod p;

				cr_assert_eq(enroll_decode_pod(obj, &p, err, sizeof(err)), 0, "%s", err);
				if (ev.type == K8S_EV_DELETED)
					enroll_del_pod(&t, p.uid, NULL);
				else
					cr_assert_not_null(enroll_put_pod(&t, &p));
			}
			(*decoded)++;
		}
		json_object_put(o);
	}
	free(line);
	fclose(f);
	return lines;
}

Test(enroll_pods, fixtures_in_the_apis_shapes)
{
	const struct enroll_pod *p;
	int decoded;

	cr_assert_eq(apply_fixture("namespaces.watch.ndjson", &decoded), 4);
	cr_assert_eq(decoded, 3);
	cr_assert_eq(enroll_ns_label(&t, "shop"), ENROLL_LABEL_ENABLED);
	cr_assert_eq(enroll_ns_label(&t, "legacy"), ENROLL_LABEL_ABSENT, "deleted: left the selector");
	cr_assert_eq(apply_fixture("pods.watch.ndjson", &decoded), 8);
	cr_assert_eq(decoded, 6);
	cr_assert_eq(t.n_pods, 4, "web-x2k4q was deleted");
	cr_assert_null(enroll_find_pod(&t, "3f5c2b9e-8f0a-4d2e-9c1b-6a7d8e9f0a1b"));
	p = enroll_find_pod_name(&t, "shop", "web-7d9f8-p9w2m");
	cr_assert_not_null(p);
	cr_expect_eq(p->n_ips, 0, "pending: no IP yet");
	cr_expect(enroll_wanted(&t, p), "meshed by its namespace, waiting for a netns");
	cr_expect_str_eq(p->service_account, "web");
	p = enroll_find_pod_name(&t, "kube-system", "kube-proxy-8xk2z");
	cr_expect(p->host_network);
	cr_expect_not(enroll_wanted(&t, p));
	p = enroll_find_pod_name(&t, "kube-system", "etcd-node-1");
	cr_expect_str_eq(p->uid, "6a7f0c3b9d2e4f5a8b1c0d9e8f7a6b5c");
	cr_expect_str_eq(p->service_account, "default");
	p = enroll_find_pod_name(&t, "shop", "batch-1");
	cr_expect_eq(p->label, ENROLL_LABEL_DISABLED);
	cr_expect_str_eq(p->phase, "Succeeded");
	cr_expect_not(enroll_wanted(&t, p));
}
