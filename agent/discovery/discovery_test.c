// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The file source: edits in place, by rename (editors) and by symlink
 * swap (ConfigMap volumes) are seen; a bad edit is refused and counted,
 * and the last good services stay; fields outside services keep their
 * running values.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "discovery/discovery.h"
#include "policy/policy.h"

static char dir[64];
static char path[128];
static struct config *running, *got;
static struct discovery *d;

#define GOOD(svc)                                                                                  \
	"node: {address_v4: 10.0.0.1}\n"                                                           \
	"services:\n"                                                                              \
	"  - name: " svc "\n"                                                                      \
	"    vips: [10.96.0.10]\n"                                                                 \
	"    ports: [{port: 80}]\n"                                                                \
	"    endpoints: [{address: 10.1.0.1}]\n"

static void write_at(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	cr_assert_not_null(f, "%s: %s", p, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Write text to a temp file in dir and rename it over path (an editor). */
static void write_rename(const char *text)
{
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s/.shoal.yaml.swp", dir);
	write_at(tmp, text);
	cr_assert_eq(rename(tmp, path), 0);
}

static void setup(void)
{
	char err[512];

	snprintf(dir, sizeof(dir), "/tmp/shoal-disc-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/shoal.yaml", dir);
	write_at(path, GOOD("web"));
	cr_assert_eq(config_load(path, &running, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(discovery_start(running, NULL, &d), 0);
	got = NULL;
}

static void teardown(void)
{
	char cmd[128];

	discovery_stop(d);
	config_free(got);
	config_free(running);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

TestSuite(discovery_file, .init = setup, .fini = teardown);

/* Wait (2 s) for the fd, then poll: the result of discovery_poll. */
static int wait_poll(void)
{
	struct pollfd pfd = {.fd = discovery_fd(d), .events = POLLIN};

	config_free(got);
	got = NULL;
	if (poll(&pfd, 1, 2000) != 1)
		return -ETIMEDOUT;
	return discovery_poll(d, &got);
}

Test(discovery_file, rename_edit_is_seen)
{
	struct discovery_stats st;

	write_rename(GOOD("api"));
	cr_assert_eq(wait_poll(), 1);
	cr_assert_eq(got->n_services, 1);
	cr_expect_str_eq(got->services[0]->name, "api");
	discovery_get_stats(d, &st);
	cr_expect_eq(st.file_reloads, 1);
	cr_expect_eq(st.snapshots, 1);
	cr_expect_eq(st.synced, 1);
}

Test(discovery_file, in_place_edit_is_seen)
{
	write_at(path, GOOD("cart"));
	cr_assert_eq(wait_poll(), 1);
	cr_expect_str_eq(got->services[0]->name, "cart");
}

Test(discovery_file, bad_edit_is_refused_and_counted)
{
	struct discovery_stats st;

	write_rename("node: {address_v4: 10.0.0.1}\nservices:\n  - name: Bad_Name\n");
	cr_assert_eq(wait_poll(), 0, "a refused edit publishes nothing");
	cr_expect_null(got);
	discovery_get_stats(d, &st);
	cr_expect_eq(st.file_rejects, 1);
	/* The same bad bytes again (a touch) are not counted twice. */
	write_rename("node: {address_v4: 10.0.0.1}\nservices:\n  - name: Bad_Name\n");
	cr_expect_eq(wait_poll(), 0);
	discovery_get_stats(d, &st);
	cr_expect_eq(st.file_rejects, 1);
	/* A good edit after it applies. */
	write_rename(GOOD("fixed"));
	cr_assert_eq(wait_poll(), 1);
	cr_expect_str_eq(got->services[0]->name, "fixed");
}

Test(discovery_file, configmap_symlink_swap_is_seen)
{
	char data1[96], data2[96], link[96], tmp[192];

	/* ConfigMap layout: shoal.yaml -> ..data/shoal.yaml, ..data -> ..v1 */
	snprintf(data1, sizeof(data1), "%s/..v1", dir);
	snprintf(data2, sizeof(data2), "%s/..v2", dir);
	cr_assert_eq(mkdir(data1, 0700), 0);
	cr_assert_eq(mkdir(data2, 0700), 0);
	snprintf(tmp, sizeof(tmp), "%s/shoal.yaml", data1);
	write_at(tmp, GOOD("web"));
	snprintf(tmp, sizeof(tmp), "%s/shoal.yaml", data2);
	write_at(tmp, GOOD("swapped"));
	snprintf(link, sizeof(link), "%s/..data", dir);
	cr_assert_eq(symlink("..v1", link), 0);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(symlink("..data/shoal.yaml", path), 0);
	/* Same bytes as before: nothing to publish. */
	cr_expect_eq(wait_poll(), -ETIMEDOUT);

	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", dir);
	cr_assert_eq(symlink("..v2", tmp), 0);
	cr_assert_eq(rename(tmp, link), 0);
	cr_assert_eq(wait_poll(), 1);
	cr_expect_str_eq(got->services[0]->name, "swapped");
}

Test(discovery_file, fields_outside_services_keep_running_values)
{
	struct discovery_stats st;

	write_rename("node: {address_v4: 10.0.0.2, proxy_port: 15999}\n"
		     "services:\n"
		     "  - name: api\n"
		     "    vips: [10.96.0.10]\n"
		     "    ports: [{port: 80}]\n");
	cr_assert_eq(wait_poll(), 1);
	cr_expect_str_eq(got->services[0]->name, "api");
	cr_expect_eq(got->proxy_port, running->proxy_port);
	cr_expect_eq(memcmp(&got->proxy_v4, &running->proxy_v4, sizeof(got->proxy_v4)), 0);
	discovery_get_stats(d, &st);
	cr_expect_eq(st.file_restart_fields, 1);
}

/* The kubernetes: section (docs/config.md). */
Test(discovery_file, kubernetes_section)
{
	static const char ok[] = "node: {address_v4: 10.0.0.1}\n"
				 "kubernetes:\n"
				 "  api_server: https://[fd00::1]:6443\n"
				 "  ca_file: /etc/k8s/ca.crt\n"
				 "  token_file: /etc/k8s/token\n"
				 "  backoff_max_ms: 1000\n";
	static const char empty[] = "node: {address_v4: 10.0.0.1}\nkubernetes:\n";
	static const char none[] = "node: {address_v4: 10.0.0.1}\n";
	static const char http[] = "node: {address_v4: 10.0.0.1}\n"
				   "kubernetes:\n"
				   "  api_server: http://10.0.0.1:8080\n";
	struct config *c;
	char err[512];

	cr_assert_eq(config_parse("k", ok, strlen(ok), &c, err, sizeof(err)), 0, "%s", err);
	cr_expect(c->k8s_enabled);
	cr_expect_str_eq(c->k8s_api_server, "https://[fd00::1]:6443");
	cr_expect_str_eq(c->k8s_ca_file, "/etc/k8s/ca.crt");
	cr_expect_str_eq(c->k8s_token_file, "/etc/k8s/token");
	cr_expect_eq(c->k8s_backoff_max_ms, 1000);
	config_free(c);
	cr_assert_eq(config_parse("k", empty, strlen(empty), &c, err, sizeof(err)), 0, "%s", err);
	cr_expect(c->k8s_enabled, "an empty section means in-cluster");
	cr_expect_str_eq(c->k8s_api_server, "");
	cr_expect_eq(c->k8s_backoff_max_ms, CONFIG_DEFAULT_K8S_BACKOFF_MAX_MS);
	config_free(c);
	cr_assert_eq(config_parse("k", none, strlen(none), &c, err, sizeof(err)), 0, "%s", err);
	cr_expect_not(c->k8s_enabled);
	config_free(c);
	cr_expect_eq(config_parse("k", http, strlen(http), &c, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "k:3: kubernetes.api_server: must be https://") != NULL, "%s", err);
}

/* The policy: section applies live, as services do, and is no restart field. */
Test(discovery_file, policy_edit_applies_live)
{
	struct discovery_stats st;
	struct policy_caller anyone = {.authenticated = false};
	struct policy_decision out;

	write_rename(GOOD("api") "policy:\n  default: deny\n");
	cr_assert_eq(wait_poll(), 1);
	cr_assert_not_null(got->policy, "the edit's policy is not in the new config");
	policy_decide(policy_lookup(got->policy, "default", "api"), "default", 80, &anyone, NULL,
		      &out);
	cr_expect_not(out.allow);
	write_rename(GOOD("api") "policy:\n  default: allow\n");
	cr_assert_eq(wait_poll(), 1);
	policy_decide(policy_lookup(got->policy, "default", "api"), "default", 80, &anyone, NULL,
		      &out);
	cr_expect(out.allow, "the second edit did not replace the policy");
	discovery_get_stats(d, &st);
	cr_expect_eq(st.file_restart_fields, 0, "a policy edit was taken for a restart field");
	cr_expect_eq(st.file_reloads, 2);
}
