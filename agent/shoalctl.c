// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoalctl: inspect and steer a node's datapath through its pinned maps,
 * and read the agent's live state through its admin endpoint (services,
 * endpoints, top). The map commands work whether shoald runs or not, so
 * it can also clean up after a crashed agent. Tables for people, --json
 * for scripts.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "config/config.h"
#include "datapath/env.h"
#include "datapath/datapath.h"
#include "datapath/kl4.h"
#include "datapath/pins.h"
#include "recording/http_metrics.h"
#include "telemetry/admin.h"
#include "telemetry/admin_client.h"
#include "telemetry/kernel_counters.h"

/* --json: machine-readable output instead of tables. */
static bool json_out;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shoalctl [--pin-root DIR | -c FILE] [--admin ADDR:PORT] [--json] COMMAND\n"
		"\n"
		"commands:\n"
		"  status               layout, proxy liveness, shortcut, counts\n"
		"  counters             datapath counters, then per-service counters\n"
		"  bpf                  pinned links with their programs, maps with entry counts\n"
		"  services             services with their HTTP and TCP totals (admin endpoint)\n"
		"  endpoints            endpoints with latency estimate, in-flight, breaker;\n"
		"                       then kernel-mode ones: connects, failures, RTT estimate\n"
		"                       (from the pins, so also with shoald dead)\n"
		"  top [--interval S] [--count N]\n"
		"                       live requests/s, success rate and p99 per service and\n"
		"                       endpoint, refreshed every S seconds (default 2)\n"
		"  dashboard            the web dashboard's URL, once the admin endpoint answers,\n"
		"                       and how to reach it from a workstation\n"
		"  pods                 pods on this node: enrollment state, service account,\n"
		"                       netns cookie (admin endpoint; docs/enrollment.md)\n"
		"  identity             the node's workload certificates: service account,\n"
		"                       SPIFFE ID, expiry, next renewal, last error\n"
		"                       (admin endpoint; docs/identity.md)\n"
		"  policy               the authorization policy in force (rules, defaults)\n"
		"                       and its recent decisions (admin endpoint; docs/policy.md)\n"
		"  policy check SRC DST[:PORT] [METHOD PATH]\n"
		"                       what the policy decides: SRC is ns/sa, a SPIFFE ID or\n"
		"                       unauthenticated, DST ns/service; exit 0 allow, 1 deny,\n"
		"                       2 error\n"
		"  enroll NETNS         mesh a pod: NETNS is a path (/run/netns/NAME) or a PID\n"
		"  unenroll NETNS       stop meshing it\n"
		"  shortcut on|off      the sockmap kill switch, for new connections\n"
		"  uninstall [--force]  remove every link, map and pin shoal made\n"
		"\n"
		"The pin root defaults to " SHOAL_DEFAULT_PIN_ROOT
		"; -c FILE reads bpf.pin_root (and admin.listen)\n"
		"from a config. The admin endpoint defaults to " CONFIG_DEFAULT_ADMIN_LISTEN ".\n"
		"--json prints status, counters, bpf, services, endpoints, pods, identity and policy as\n"
		"JSON.\n");
}

static int open_map_or_explain(const char *pin_root, const char *name)
{
	int fd = pins_open_map(pin_root, name);

	if (fd < 0)
		fprintf(stderr, "shoalctl: cannot open %s/maps/%s: %s%s\n", pin_root, name,
			strerror(-fd),
			fd == -ENOENT ? " (is shoal installed there? see --pin-root)" : "");
	return fd;
}

/* Read shoal_config[0]. */
static int read_config(const char *pin_root, struct shoal_config *out)
{
	__u32 zero = 0;
	int fd = open_map_or_explain(pin_root, "shoal_config"), err = 0;

	if (fd < 0)
		return fd;
	if (bpf_map_lookup_elem(fd, &zero, out) < 0)
		err = -errno;
	close(fd);
	return err;
}

static bool proxy_alive(const struct shoal_config *c)
{
	return c->heartbeat_boot_ns && env_boot_ns() - c->heartbeat_boot_ns < c->failopen_after_ns;
}

static int count_keys(int fd, size_t key_size)
{
	char key[64], next[64];
	int n = 0;

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, n ? key : NULL, next) == 0) {
		memcpy(key, next, key_size);
		n++;
	}
	return n;
}

static int cmd_status(const char *pin_root)
{
	struct shoal_meta meta = {};
	struct shoal_config c;
	__u32 zero = 0;
	int fd, err;

	fd = open_map_or_explain(pin_root, "shoal_meta");
	if (fd < 0)
		return 1;
	bpf_map_lookup_elem(fd, &zero, &meta);
	close(fd);
	int enrolled, services;

	err = read_config(pin_root, &c);
	if (err)
		return 1;
	fd = open_map_or_explain(pin_root, "shoal_enrolled");
	if (fd < 0)
		return 1;
	enrolled = count_keys(fd, sizeof(struct shoal_enroll_key));
	close(fd);
	fd = open_map_or_explain(pin_root, "shoal_svc_names");
	if (fd < 0)
		return 1;
	services = count_keys(fd, sizeof(__u32));
	close(fd);
	if (json_out) {
		printf("{\"layout_version\":%u,\"proxy\":\"%s\",\"shortcut\":\"%s\","
		       "\"enrolled\":%d,\"services\":%d}\n",
		       meta.layout_version, proxy_alive(&c) ? "alive" : "stale",
		       c.flags & SHOAL_CFG_SHORTCUT ? "on" : "off", enrolled, services);
		return 0;
	}
	printf("layout_version %u\n", meta.layout_version);
	printf("proxy %s\n", proxy_alive(&c) ? "alive" : "stale");
	printf("shortcut %s\n", c.flags & SHOAL_CFG_SHORTCUT ? "on" : "off");
	printf("enrolled %d\n", enrolled);
	printf("services %d\n", services);
	return 0;
}

static int cmd_counters(const char *pin_root)
{
	struct shoal_counters sum;
	int names_fd, stats_fd, err, n_svc = 0;
	__u32 id, next;
	bool walking = false;

	err = pins_read_counters(pin_root, &sum);
	if (err) {
		fprintf(stderr, "shoalctl: cannot read %s/maps/shoal_counters: %s\n", pin_root,
			strerror(-err));
		return 1;
	}
	if (json_out) {
		const char *sep = "";

		printf("{\"datapath\":{");
#define JSON_COUNTER(field, help)                                                                  \
	printf("%s\"" #field "\":%llu", sep, (unsigned long long)sum.field);                         \
	sep = ",";
		SHOAL_KERNEL_COUNTERS(JSON_COUNTER)
#undef JSON_COUNTER
		printf("},\"services\":[");
	} else {
#define PRINT_COUNTER(field, help) printf(#field " %llu\n", (unsigned long long)sum.field);
		SHOAL_KERNEL_COUNTERS(PRINT_COUNTER)
#undef PRINT_COUNTER
	}

	names_fd = open_map_or_explain(pin_root, "shoal_svc_names");
	stats_fd = open_map_or_explain(pin_root, "shoal_svc_stats");
	if (names_fd < 0 || stats_fd < 0)
		return 1;
	while (bpf_map_get_next_key(names_fd, walking ? &id : NULL, &next) == 0) {
		struct shoal_svc_name name = {};
		struct shoal_svc_stats st = {};

		id = next;
		walking = true;
		if (bpf_map_lookup_elem(names_fd, &id, &name) < 0 ||
		    pins_read_svc_stats(stats_fd, id, &st) < 0)
			continue;
		name.name[sizeof(name.name) - 1] = '\0';
		if (json_out) {
			json_object *o = json_object_new_string(name.name);

			/* Service names are labels, but quote them properly anyway. */
			printf("%s{\"id\":%u,\"name\":%s,\"intercepted\":%llu,\"failed_open\":%llu}",
			       n_svc++ ? "," : "", id, json_object_to_json_string(o),
			       (unsigned long long)st.intercepted, (unsigned long long)st.failed_open);
			json_object_put(o);
			continue;
		}
		printf("service %u %s intercepted %llu failed_open %llu\n", id, name.name,
		       (unsigned long long)st.intercepted, (unsigned long long)st.failed_open);
	}
	if (json_out)
		printf("]}\n");
	close(names_fd);
	close(stats_fd);
	return 0;
}

/* enum bpf_link_type's BPF_LINK_TYPE_SOCKMAP (Linux 6.10), newer than the
 * uapi headers this builds against. */
#define SHOAL_LINK_TYPE_SOCKMAP 14

/* Entries in a map, by walking its keys; -1 when the type cannot be walked
 * (socket storage). Bounded by max_entries, so a map that changes under
 * the walk cannot keep it going. */
static long map_entries(int fd, const struct bpf_map_info *info)
{
	char key[256], next[256];
	long n = 0;

	if (info->key_size > sizeof(key))
		return -1;
	while (n <= (long)info->max_entries &&
	       bpf_map_get_next_key(fd, n ? key : NULL, next) == 0) {
		memcpy(key, next, info->key_size);
		n++;
	}
	if (n == 0 && errno != ENOENT)
		return -1;
	return n;
}

/* What is loaded, attached and pinned: the links with their programs, and
 * the maps with their sizes. The bpftool commands for each are in docs/bpf.md. */
static int cmd_bpf(const char *pin_root)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (snprintf(dir, sizeof(dir), "%s/%s", pin_root, SHOAL_PIN_LINKS_DIR) >= (int)sizeof(dir)) {
		fprintf(stderr, "shoalctl: pin root too long\n");
		return 1;
	}
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "shoalctl: cannot open %s: %s (is shoal installed there?)\n", dir,
			strerror(errno));
		return 1;
	}
	int n_json = 0;

	if (json_out)
		printf("{\"links\":[");
	else
		printf("%-14s %-6s %-12s %-22s %-8s %s\n", "LINK", "ID", "TYPE", "PROGRAM",
		       "PROG_ID", "ATTACHED");
	while ((de = readdir(d))) {
		struct bpf_link_info li = {};
		struct bpf_prog_info pi = {};
		__u32 len = sizeof(li);
		int fd, pfd;
		char where[64] = "-";

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &li, &len) < 0) {
			if (json_out)
				printf("%s{\"name\":\"%s\",\"error\":\"%s\"}", n_json++ ? "," : "",
				       de->d_name, strerror(errno));
			else
				printf("%-14s unreadable: %s\n", de->d_name, strerror(errno));
			rc = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		pfd = bpf_prog_get_fd_by_id(li.prog_id);
		len = sizeof(pi);
		if (pfd >= 0)
			bpf_obj_get_info_by_fd(pfd, &pi, &len);
		if (li.type == BPF_LINK_TYPE_CGROUP)
			snprintf(where, sizeof(where), "cgroup id %llu",
				 (unsigned long long)li.cgroup.cgroup_id);
		else
			snprintf(where, sizeof(where), "map shoal_shortcut");
		/* libbpf 1.1 predates sockmap links (Linux 6.10): name that type here. */
		const char *type = libbpf_bpf_link_type_str(li.type);

		if (!type)
			type = li.type == SHOAL_LINK_TYPE_SOCKMAP ? "sockmap" : "?";
		if (json_out)
			printf("%s{\"name\":\"%s\",\"id\":%u,\"type\":\"%s\",\"program\":\"%s\","
			       "\"prog_id\":%u,\"attached\":\"%s\"}",
			       n_json++ ? "," : "", de->d_name, li.id, type, pi.name[0] ? pi.name : "?",
			       li.prog_id, where);
		else
			printf("%-14s %-6u %-12s %-22s %-8u %s\n", de->d_name, li.id, type,
			       pi.name[0] ? pi.name : "?", li.prog_id, where);
		if (pfd >= 0)
			close(pfd);
		close(fd);
	}
	closedir(d);

	n_json = 0;
	if (json_out)
		printf("],\"maps\":[");
	else
		printf("\n%-20s %-6s %-16s %-10s %s\n", "MAP", "ID", "TYPE", "ENTRIES", "MAX");
	for (int i = 0; i < pins_n_map_names; i++) {
		struct bpf_map_info mi = {};
		__u32 len = sizeof(mi);
		int fd = pins_open_map(pin_root, pins_map_names[i]);
		long n;

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) {
			if (json_out)
				printf("%s{\"name\":\"%s\",\"error\":\"%s\"}", n_json++ ? "," : "",
				       pins_map_names[i], strerror(fd < 0 ? -fd : errno));
			else
				printf("%-20s missing: %s\n", pins_map_names[i],
				       strerror(fd < 0 ? -fd : errno));
			rc = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		n = map_entries(fd, &mi);
		if (json_out)
			printf("%s{\"name\":\"%s\",\"id\":%u,\"type\":\"%s\",\"entries\":%ld,"
			       "\"max_entries\":%u}",
			       n_json++ ? "," : "", pins_map_names[i], mi.id,
			       libbpf_bpf_map_type_str(mi.type), n, mi.max_entries);
		else if (n >= 0)
			printf("%-20s %-6u %-16s %-10ld %u\n", pins_map_names[i], mi.id,
			       libbpf_bpf_map_type_str(mi.type), n, mi.max_entries);
		else
			printf("%-20s %-6u %-16s %-10s %u\n", pins_map_names[i], mi.id,
			       libbpf_bpf_map_type_str(mi.type), "-", mi.max_entries);
		close(fd);
	}
	if (json_out)
		printf("]}\n");
	return rc;
}

static int cmd_enroll(const char *pin_root, const char *netns, bool enroll)
{
	uint64_t cookie;
	int err;

	if (pins_netns_cookie(netns, &cookie))
		return 1;
	err = pins_enroll(pin_root, cookie, enroll);
	if (err) {
		fprintf(stderr, "shoalctl: cannot %s netns %s (cookie %llu): %s\n",
			enroll ? "enroll" : "unenroll", netns, (unsigned long long)cookie,
			err == -ENOENT && !enroll ? "not enrolled" : strerror(-err));
		return 1;
	}
	printf("%s netns cookie %llu (%s)\n", enroll ? "enrolled" : "unenrolled",
	       (unsigned long long)cookie, netns);
	return 0;
}

static int cmd_shortcut(const char *pin_root, const char *state)
{
	struct shoal_config *c;
	bool on;
	int fd;

	if (!strcmp(state, "on"))
		on = true;
	else if (!strcmp(state, "off"))
		on = false;
	else {
		fprintf(stderr, "shoalctl: shortcut takes on or off, not '%s'\n", state);
		return 2;
	}
	fd = open_map_or_explain(pin_root, "shoal_config");
	if (fd < 0)
		return 1;
	c = pins_config_map(fd);
	close(fd);
	if (!c) {
		fprintf(stderr, "shoalctl: cannot mmap shoal_config: %s\n", strerror(errno));
		return 1;
	}
	/* A single atomic store: the heartbeat written next to it is untouched. */
	if (on)
		__atomic_fetch_or(&c->flags, SHOAL_CFG_SHORTCUT, __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&c->flags, ~SHOAL_CFG_SHORTCUT, __ATOMIC_RELEASE);
	pins_config_unmap(c);
	printf("shortcut %s for new connections (established ones keep their path, so no byte "
	       "is reordered)\n",
	       on ? "on" : "off");
	return 0;
}

static int cmd_uninstall(const char *pin_root, bool force)
{
	struct shoal_config c;

	if (read_config(pin_root, &c) == 0 && proxy_alive(&c) && !force) {
		fprintf(stderr, "shoalctl: shoald is still running on %s (heartbeat fresh); stop it "
				"first, or pass --force\n",
			pin_root);
		return 1;
	}
	return datapath_uninstall(pin_root) ? 1 : 0;
}

/* ---- the admin endpoint: services, endpoints, top ----------------------- */

/* GET path from the agent as JSON; NULL after a message. *raw keeps the text. */
static json_object *admin_json(const char *admin, const char *path, char **raw)
{
	char err[512], *body;
	size_t len;
	json_object *o;

	if (admin_client_get(admin, path, &body, &len, err, sizeof(err))) {
		fprintf(stderr, "shoalctl: %s\n", err);
		return NULL;
	}
	o = json_tokener_parse(body);
	if (!o)
		fprintf(stderr, "shoalctl: %s%s did not answer JSON\n", admin, path);
	if (raw && o)
		*raw = body;
	else
		free(body);
	return o;
}

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static uint64_t jget_u64(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v ? json_object_get_uint64(v) : 0;
}

static const char *jget_str(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v ? json_object_get_string(v) : "";
}

/* HTTP totals of one row of /debug/services or /debug/endpoints. */
struct http_totals {
	uint64_t requests, responses, failures; /* failures: 5xx */
	uint64_t buckets[METRICS_LATENCY_N + 1];
};

static void http_totals(json_object *row, struct http_totals *t)
{
	json_object *http = jget(row, "http"), *resp = jget(http, "responses");
	json_object *b = jget(http, "latency_buckets");
	static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

	memset(t, 0, sizeof(*t));
	t->requests = jget_u64(http, "requests");
	for (int i = 0; i < 5; i++)
		t->responses += jget_u64(resp, classes[i]);
	t->failures = jget_u64(resp, "5xx");
	for (int i = 0; b && i <= METRICS_LATENCY_N && i < (int)json_object_array_length(b); i++)
		t->buckets[i] = json_object_get_uint64(json_object_array_get_idx(b, (size_t)i));
}

/* "99.5%" of responses that were not 5xx, or "-" without responses. */
static const char *success_rate(uint64_t responses, uint64_t failures, char *buf, size_t len)
{
	if (!responses)
		return "-";
	snprintf(buf, len, "%.1f%%", 100.0 * (double)(responses - failures) / (double)responses);
	return buf;
}

/*
 * The q quantile of a latency histogram (bucket counts, not cumulative),
 * interpolated linearly inside its bucket as Prometheus'
 * histogram_quantile does; "-" when empty, ">50000" past the last bound.
 */
static const char *quantile_ms(const uint64_t *buckets, double q, char *buf, size_t len)
{
	uint64_t total = 0, cum = 0;

	for (int i = 0; i <= METRICS_LATENCY_N; i++)
		total += buckets[i];
	if (!total)
		return "-";
	double rank = q * (double)total;

	for (int i = 0; i <= METRICS_LATENCY_N; i++) {
		if (!buckets[i] || (double)(cum + buckets[i]) < rank) {
			cum += buckets[i];
			continue;
		}
		if (i == METRICS_LATENCY_N) {
			snprintf(buf, len, ">%u", metrics_latency_bounds_ms[METRICS_LATENCY_N - 1]);
			return buf;
		}
		double lo = i ? metrics_latency_bounds_ms[i - 1] : 0, hi = metrics_latency_bounds_ms[i];

		snprintf(buf, len, "%.1f", lo + (hi - lo) * (rank - (double)cum) / (double)buckets[i]);
		return buf;
	}
	return "-";
}

static void service_key(json_object *row, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", jget_str(row, "namespace"),
		 jget(row, "service") ? jget_str(row, "service") : jget_str(row, "name"));
}

/* The pods enrollment knows on this node (/debug/pods). */
static int cmd_pods(const char *admin)
{
	char *raw = NULL, name[320], ips[128];
	json_object *o = admin_json(admin, "/debug/pods", &raw), *list;

	if (!o)
		return 1;
	if (json_out) {
		fputs(raw, stdout);
		goto out;
	}
	if (!json_object_get_boolean(jget(o, "enrollment"))) {
		printf("enrollment is off (kubernetes.enrollment, docs/enrollment.md)\n");
		goto out;
	}
	if (!json_object_get_boolean(jget(o, "synced")))
		printf("# not in sync with the API server: the last state known\n");
	list = jget(o, "pods");
	printf("%-40s %-13s %-24s %-20s %s\n", "POD", "STATE", "SERVICE_ACCOUNT", "NETNS_COOKIE",
	       "IPS");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *p = json_object_array_get_idx(list, i), *a = jget(p, "ips");
		size_t len = 0;

		snprintf(name, sizeof(name), "%s/%s", jget_str(p, "namespace"),
			 jget_str(p, "name"));
		ips[0] = '\0';
		for (size_t k = 0; a && k < json_object_array_length(a) && len < sizeof(ips); k++)
			len += (size_t)snprintf(
			    ips + len, sizeof(ips) - len, "%s%s", k ? "," : "",
			    json_object_get_string(json_object_array_get_idx(a, k)));
		printf("%-40s %-13s %-24s %-20llu %s\n", name, jget_str(p, "state"),
		       jget_str(p, "service_account"),
		       (unsigned long long)jget_u64(p, "netns_cookie"), ips[0] ? ips : "-");
	}
out:
	free(raw);
	json_object_put(o);
	return 0;
}

/* "in 11h59m", "in 7s", "expired" for a time t (Unix s) from now. */
static const char *rel_time(int64_t t, int64_t now, char *buf, size_t len)
{
	int64_t d = t - now;

	if (!t)
		snprintf(buf, len, "-");
	else if (d <= 0)
		snprintf(buf, len, "now");
	else if (d < 120)
		snprintf(buf, len, "in %llds", (long long)d);
	else if (d < 7200)
		snprintf(buf, len, "in %lldm%02llds", (long long)(d / 60), (long long)(d % 60));
	else
		snprintf(buf, len, "in %lldh%02lldm", (long long)(d / 3600),
			 (long long)(d / 60 % 60));
	return buf;
}

/* The node's workload certificates (/debug/identity, docs/identity.md). */
static int cmd_identity(const char *admin)
{
	char *raw = NULL, exp[32], next[32];
	json_object *o = admin_json(admin, "/debug/identity", &raw), *list;
	int64_t now;

	if (!o)
		return 1;
	if (json_out) {
		fputs(raw, stdout);
		goto out;
	}
	if (!json_object_get_boolean(jget(o, "identity"))) {
		printf("identity is off (the identity: section, docs/identity.md)\n");
		goto out;
	}
	now = (int64_t)jget_u64(o, "now");
	printf("# source %s, trust domain %s, %llu trust anchor%s%s%s\n", jget_str(o, "source"),
	       jget_str(o, "trust_domain"), (unsigned long long)jget_u64(o, "anchors"),
	       jget_u64(o, "anchors") == 1 ? "" : "s", jget_str(o, "anchors_error")[0] ? ": " : "",
	       jget_str(o, "anchors_error"));
	list = jget(o, "accounts");
	printf("%-40s %-56s %-10s %-10s %-8s %s\n", "SERVICE_ACCOUNT", "SPIFFE_ID", "EXPIRES",
	       "RENEWS", "FAILURES", "LAST_ERROR");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *a = json_object_array_get_idx(list, i);
		char name[320];
		const char *err = jget_str(a, "last_error");

		snprintf(name, sizeof(name), "%s/%s%s", jget_str(a, "namespace"),
			 jget_str(a, "service_account"),
			 json_object_get_boolean(jget(a, "wanted")) ? "" : " (no pod)");
		rel_time((int64_t)jget_u64(a, "not_after"), now, exp, sizeof(exp));
		rel_time((int64_t)(jget_u64(a, "next_ms") / 1000), now, next, sizeof(next));
		printf("%-40s %-56s %-10s %-10s %-8llu %s\n", name, jget_str(a, "spiffe_id"),
		       jget_u64(a, "not_after") ? exp : "none", next,
		       (unsigned long long)jget_u64(a, "failures"), err[0] ? err : "-");
	}
out:
	free(raw);
	json_object_put(o);
	return 0;
}

static int cmd_services(const char *admin)
{
	char *raw = NULL, name[160], rate[16];
	json_object *o = admin_json(admin, "/debug/services", &raw), *list;

	if (!o)
		return 1;
	if (json_out) {
		fputs(raw, stdout);
		goto out;
	}
	list = jget(o, "services");
	printf("%-32s %-18s %-9s %-10s %-9s %-9s %s\n", "SERVICE", "VIP", "ENDPOINTS", "REQUESTS",
	       "SUCCESS", "P99_MS", "TCP_OPEN");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *s = json_object_array_get_idx(list, i), *vips = jget(s, "vips");
		struct http_totals t;
		char p99[24];

		http_totals(s, &t);
		service_key(s, name, sizeof(name));
		printf("%-32s %-18s %-9llu %-10llu %-9s %-9s %llu\n", name,
		       vips && json_object_array_length(vips)
			   ? json_object_get_string(json_object_array_get_idx(vips, 0))
			   : "-",
		       (unsigned long long)jget_u64(s, "endpoints"), (unsigned long long)t.requests,
		       success_rate(t.responses, t.failures, rate, sizeof(rate)),
		       quantile_ms(t.buckets, 0.99, p99, sizeof(p99)),
		       (unsigned long long)jget_u64(jget(s, "tcp"), "opened"));
	}
out:
	free(raw);
	json_object_put(o);
	return 0;
}

/*
 * Kernel-mode endpoints, straight from the pins (so it works with shoald
 * dead): a table, or with json_out an array for the "kernel_endpoints"
 * key. Returns the number of rows, or -errno when the map cannot be
 * opened (no pins, or pins older than kernel mode).
 */
static int kernel_endpoints(const char *pin_root, json_object *json)
{
	int costs_fd = pins_open_map(pin_root, "shoal_kl4_costs");
	int sets_fd = pins_open_map(pin_root, "shoal_kl4_sets");
	struct shoal_kl4_cost_key k, next;
	uint64_t now = env_boot_ns();
	struct kl4_ejected out = {};
	bool walking = false;
	int rows = 0;

	if (costs_fd < 0) {
		if (sets_fd >= 0)
			close(sets_fd);
		return costs_fd;
	}
	if (sets_fd >= 0)
		kl4_ejected_read(sets_fd, now, &out);
	if (!json)
		printf("\n%-24s %-10s %-12s %-9s %-11s %-12s %s\n", "KERNEL-MODE ENDPOINT",
		       "CONNECTS", "ESTABLISHED", "FAILURES", "RTT_EST_MS", "LAST_RTT_MS",
		       "EJECTED");
	while (bpf_map_get_next_key(costs_fd, walking ? &k : NULL, &next) == 0) {
		struct shoal_kl4_cost c;
		char ep[ADDR_STR_MAX];
		bool ejected;

		k = next;
		walking = true;
		if (bpf_map_lookup_elem(costs_fd, &next, &c) < 0)
			continue;
		addr_format(&next.ip, next.port, ep, sizeof(ep));
		ejected = kl4_is_ejected(&out, &next);
		rows++;
		if (json) {
			json_object *r = json_object_new_object();

			json_object_object_add(r, "address", json_object_new_string(ep));
			json_object_object_add(r, "connects", json_object_new_uint64(c.connects));
			json_object_object_add(r, "established",
					       json_object_new_uint64(c.established));
			json_object_object_add(r, "failures", json_object_new_uint64(c.failures));
			json_object_object_add(r, "consecutive_failures",
					       json_object_new_uint64(c.consecutive_failures));
			json_object_object_add(r, "rtt_estimate_ms",
					       json_object_new_double(kl4_cost_now(&c, now) / 1e3));
			json_object_object_add(r, "last_rtt_ms",
					       json_object_new_double(c.last_rtt_us / 1e3));
			json_object_object_add(r, "ejected", json_object_new_boolean(ejected));
			json_object_array_add(json, r);
			continue;
		}
		printf("%-24s %-10llu %-12llu %-9llu %-11.3f %-12.3f %s\n", ep,
		       (unsigned long long)c.connects, (unsigned long long)c.established,
		       (unsigned long long)c.failures, kl4_cost_now(&c, now) / 1e3,
		       c.last_rtt_us / 1e3, ejected ? "yes" : "no");
	}
	kl4_ejected_free(&out);
	close(costs_fd);
	if (sets_fd >= 0)
		close(sets_fd);
	return rows;
}

/*
 * The proxy's endpoints (admin endpoint), then the kernel-mode ones (the
 * pins). Fails only when neither can be read.
 */
static int cmd_endpoints(const char *admin, const char *pin_root)
{
	char *raw = NULL, name[160], rate[16];
	json_object *o = admin_json(admin, "/debug/endpoints", &raw), *list;
	int kernel_rows, rc;

	if (json_out) {
		json_object *kl = json_object_new_array();

		kernel_rows = kernel_endpoints(pin_root, kl);
		if (!o)
			o = json_object_new_object();
		json_object_object_add(o, "kernel_endpoints", kl);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		goto out;
	}
	if (o) {
		list = jget(o, "endpoints");
		printf("%-32s %-24s %-10s %-9s %-11s %-9s %-9s %s\n", "SERVICE", "ENDPOINT",
		       "REQUESTS", "SUCCESS", "ESTIMATE_MS", "IN_FLIGHT", "BREAKER", "EJECTIONS");
		for (size_t i = 0; list && i < json_object_array_length(list); i++) {
			json_object *e = json_object_array_get_idx(list, i),
				    *est = jget(e, "estimate_ms");
			struct http_totals t;
			char estimate[24] = "-";

			http_totals(e, &t);
			service_key(e, name, sizeof(name));
			if (est)
				snprintf(estimate, sizeof(estimate), "%.1f",
					 json_object_get_double(est));
			printf("%-32s %-24s %-10llu %-9s %-11s %-9llu %-9s %llu\n", name,
			       jget_str(e, "address"), (unsigned long long)t.requests,
			       success_rate(t.responses, t.failures, rate, sizeof(rate)), estimate,
			       (unsigned long long)jget_u64(e, "in_flight"),
			       jget(e, "breaker") ? jget_str(e, "breaker") : "-",
			       (unsigned long long)jget_u64(e, "ejections"));
		}
	}
	kernel_rows = kernel_endpoints(pin_root, NULL);
out:
	rc = o || kernel_rows >= 0 ? 0 : 1;
	free(raw);
	json_object_put(o);
	return rc;
}

/* The row of list whose key (service key, plus address) matches row's, or NULL. */
static json_object *find_row(json_object *list, json_object *row)
{
	char want[160], have[160];

	service_key(row, want, sizeof(want));
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *r = json_object_array_get_idx(list, i);

		service_key(r, have, sizeof(have));
		if (!strcmp(want, have) && !strcmp(jget_str(row, "address"), jget_str(r, "address")))
			return r;
	}
	return NULL;
}

/* One table of top: rows of now, as rates against the same rows of before. */
static void top_table(json_object *before, json_object *now, const char *key, double secs,
		      bool endpoints)
{
	json_object *list = jget(now, key), *old = jget(before, key);
	char name[160], rate[16], p99[24];

	if (endpoints)
		printf("\n%-32s %-24s %-10s %-9s %s\n", "SERVICE", "ENDPOINT", "REQ/S", "SUCCESS",
		       "P99_MS");
	else
		printf("%-32s %-10s %-9s %s\n", "SERVICE", "REQ/S", "SUCCESS", "P99_MS");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *r = json_object_array_get_idx(list, i), *p = find_row(old, r);
		struct http_totals a, b = {};

		http_totals(r, &a);
		if (p)
			http_totals(p, &b);
		/* A restart (or a slot that changed endpoint) resets totals: count from zero. */
		if (a.requests < b.requests || a.responses < b.responses)
			memset(&b, 0, sizeof(b));
		for (int j = 0; j <= METRICS_LATENCY_N; j++)
			a.buckets[j] = a.buckets[j] >= b.buckets[j] ? a.buckets[j] - b.buckets[j] : 0;
		service_key(r, name, sizeof(name));
		if (endpoints)
			printf("%-32s %-24s ", name, jget_str(r, "address"));
		else
			printf("%-32s ", name);
		printf("%-10.1f %-9s %s\n", (double)(a.requests - b.requests) / secs,
		       success_rate(a.responses - b.responses, a.failures - b.failures, rate,
				    sizeof(rate)),
		       quantile_ms(a.buckets, 0.99, p99, sizeof(p99)));
	}
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Refresh every interval seconds: requests/s, success rate and p99 over
 * the last interval, per service and per endpoint; count frames (0:
 * until interrupted). On a terminal each frame replaces the last.
 */
/*
 * The dashboard's URL on the admin endpoint at admin (a wildcard bind is
 * reached on loopback), once /dashboard answers; then how to reach that
 * loopback address from elsewhere. Returns 0, or 1 when it does not answer.
 */
/* A comma list of the strings of JSON array a into buf ("-" when empty). */
static const char *jlist(json_object *a, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; a && i < json_object_array_length(a) && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "," : "",
				      json_object_get_string(json_object_array_get_idx(a, i)));
	if (!buf[0])
		snprintf(buf, len, "-");
	return buf;
}

/* The policy in force and what it decided recently (/debug/policy, docs/policy.md). */
static int cmd_policy(const char *admin)
{
	char *raw = NULL;
	json_object *o = admin_json(admin, "/debug/policy", &raw), *list;

	if (!o)
		return 1;
	if (json_out) {
		fputs(raw, stdout);
		goto out;
	}
	if (!json_object_get_boolean(jget(o, "policy"))) {
		printf("no policy is written: every call is allowed (docs/policy.md)\n");
		goto recent;
	}
	list = jget(o, "rules");
	printf("# trust domain %s, mesh default %s, %zu rule%s\n", jget_str(o, "trust_domain"),
	       jget_str(o, "mesh_default"), list ? json_object_array_length(list) : 0,
	       list && json_object_array_length(list) == 1 ? "" : "s");
	printf("%-24s %-16s %-16s %-12s %-6s %-32s %-24s %s\n", "RULE", "NAMESPACE", "SERVICE",
	       "PORTS", "ACTION", "FROM", "REQUESTS", "ORIGIN");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *r = json_object_array_get_idx(list, i), *to = jget(r, "requests");
		char ports[96], from[512], req[512];
		size_t n = 0;

		jlist(jget(r, "ports"), ports, sizeof(ports));
		req[0] = '\0';
		for (size_t k = 0; to && k < json_object_array_length(to) && n < sizeof(req); k++) {
			json_object *m = json_object_array_get_idx(to, k);
			char methods[256];

			if (!strcmp(jlist(jget(m, "methods"), methods, sizeof(methods)), "-"))
				snprintf(methods, sizeof(methods), "*");
			n += (size_t)snprintf(req + n, sizeof(req) - n, "%s%s %s%s", k ? "; " : "",
					      methods, jget_str(m, "path")[0] ? jget_str(m, "path") : "*",
					      !strcmp(jget_str(m, "path_match"), "prefix") ? "*" : "");
		}
		printf("%-24s %-16s %-16s %-12s %-6s %-32s %-24s %s\n", jget_str(r, "name"),
		       jget_str(r, "namespace"),
		       jget_str(r, "service")[0] ? jget_str(r, "service") : "*",
		       !strcmp(ports, "-") ? "*" : ports, jget_str(r, "action"),
		       jlist(jget(r, "from"), from, sizeof(from)), req[0] ? req : "*",
		       jget_str(r, "origin"));
	}
	list = jget(o, "defaults");
	printf("\n%-16s %-16s %-16s %s\n", "DEFAULT_OF", "SERVICE", "DEFAULT", "ORIGIN");
	printf("%-16s %-16s %-16s %s\n", "(mesh)", "*", jget_str(o, "mesh_default"), "-");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *d = json_object_array_get_idx(list, i);

		printf("%-16s %-16s %-16s %s\n", jget_str(d, "namespace"),
		       jget_str(d, "service")[0] ? jget_str(d, "service") : "*",
		       jget_str(d, "default"), jget_str(d, "origin"));
	}
recent:
	list = jget(o, "recent");
	printf("\n# recent decisions, newest first (denials, and a sample of allows)\n");
	printf("%-23s %-8s %-24s %-48s %-24s %s\n", "TIME", "DECISION", "REASON", "CALLER",
	       "SERVICE", "REQUEST");
	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i);
		int64_t ms = (int64_t)jget_u64(e, "time_ms");
		time_t secs = (time_t)(ms / 1000);
		struct tm tm;
		char when[32], svc[160];

		gmtime_r(&secs, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(svc, sizeof(svc), "%s/%s:%llu", jget_str(e, "namespace"),
			 jget_str(e, "service"), (unsigned long long)jget_u64(e, "port"));
		printf("%s.%03dZ %-8s %-24s %-48s %-24s %s%s%s\n", when, (int)(ms % 1000),
		       jget_str(e, "decision"), jget_str(e, "reason"), jget_str(e, "caller"), svc,
		       jget_str(e, "method")[0] ? jget_str(e, "method") : "(connection)",
		       jget_str(e, "method")[0] ? " " : "", jget_str(e, "path"));
	}
out:
	free(raw);
	json_object_put(o);
	return 0;
}

/* Append s percent-encoded (all but RFC 3986's unreserved characters) to buf. */
static void url_encode(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);

	for (; *s && n + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, len - n, "%%%02X", c);
	}
	buf[n] = '\0';
}

/*
 * What the policy in force decides for SRC calling DST[:PORT] [METHOD PATH]
 * (/debug/policy/check). Exit status 0 allow, 1 deny, 2 error.
 */
static int cmd_policy_check(const char *admin, int argc, char **argv)
{
	char path[8192] = "/debug/policy/check?src=", *raw = NULL;
	json_object *o;
	int rc;

	url_encode(path, sizeof(path), argv[0]);
	strncat(path, "&dst=", sizeof(path) - strlen(path) - 1);
	url_encode(path, sizeof(path), argv[1]);
	if (argc == 4) {
		strncat(path, "&method=", sizeof(path) - strlen(path) - 1);
		url_encode(path, sizeof(path), argv[2]);
		strncat(path, "&path=", sizeof(path) - strlen(path) - 1);
		url_encode(path, sizeof(path), argv[3]);
	}
	o = admin_json(admin, path, &raw);
	if (!o)
		return 2;
	rc = !strcmp(jget_str(o, "decision"), "allow") ? 0 : 1;
	if (json_out) {
		fputs(raw, stdout);
	} else {
		printf("%s by %s: %s\n", jget_str(o, "decision"), jget_str(o, "reason"),
		       jget_str(o, "why"));
		printf("# %s -> %s/%s:%llu%s%s%s%s\n", jget_str(o, "caller"),
		       jget_str(o, "namespace"), jget_str(o, "service"),
		       (unsigned long long)jget_u64(o, "port"),
		       jget(o, "request") && jget(jget(o, "request"), "method") ? " " : "",
		       jget_str(jget(o, "request"), "method"),
		       jget(jget(o, "request"), "path") ? " " : "",
		       jget_str(jget(o, "request"), "path"));
		if (jget_str(o, "note")[0])
			printf("# %s\n", jget_str(o, "note"));
	}
	free(raw);
	json_object_put(o);
	return rc;
}

static int cmd_dashboard(const char *admin)
{
	char host[CONFIG_MAX_LISTEN + 1], err[512], *body = NULL;
	const char *port = strrchr(admin, ':');
	size_t len;

	if (!port || port == admin) {
		fprintf(stderr, "shoalctl: admin address '%s': expected ADDR:PORT\n", admin);
		return 2;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(port - admin), admin);
	port++;
	if (!strcmp(host, "0.0.0.0"))
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (!strcmp(host, "[::]"))
		snprintf(host, sizeof(host), "[::1]");
	if (admin_client_get(admin, "/dashboard", &body, &len, err, sizeof(err))) {
		fprintf(stderr, "shoalctl: the dashboard is not reachable: %s\n", err);
		return 1;
	}
	free(body);
	printf("http://%s:%s/dashboard\n", host, port);
	fprintf(stderr,
		"The admin endpoint listens on %s only. From a workstation, forward a port to it:\n"
		"  ssh -L %s:%s:%s NODE            then open http://localhost:%s/dashboard\n"
		"  kubectl -n shoal-system port-forward pod/SHOALD_POD_ON_NODE %s:%s\n"
		"(shoald runs with hostNetwork, so the pod's loopback is the node's.)\n",
		admin, port, host, port, port, port, port);
	return 0;
}

static int cmd_top(const char *admin, double interval, long count)
{
	json_object *svc0 = admin_json(admin, "/debug/services", NULL);
	json_object *ep0 = svc0 ? admin_json(admin, "/debug/endpoints", NULL) : NULL;
	double t0 = mono_s();
	bool tty = isatty(STDOUT_FILENO);

	if (!ep0) {
		json_object_put(svc0);
		return 1;
	}
	for (long frame = 0; !count || frame < count; frame++) {
		struct timespec nap = { (time_t)interval,
					(long)((interval - (double)(time_t)interval) * 1e9) };
		json_object *svc1, *ep1;
		char clock[16];
		time_t wall;

		nanosleep(&nap, NULL);
		svc1 = admin_json(admin, "/debug/services", NULL);
		ep1 = svc1 ? admin_json(admin, "/debug/endpoints", NULL) : NULL;
		if (!ep1) {
			json_object_put(svc1);
			break;
		}
		double t1 = mono_s();

		wall = time(NULL);
		strftime(clock, sizeof(clock), "%H:%M:%S", localtime(&wall));
		if (tty)
			printf("\033[H\033[2J");
		printf("shoal top  %s  %s  last %.1f s\n\n", admin, clock, t1 - t0);
		top_table(svc0, svc1, "services", t1 - t0, false);
		top_table(ep0, ep1, "endpoints", t1 - t0, true);
		if (!tty)
			printf("\n");
		fflush(stdout);
		json_object_put(svc0);
		json_object_put(ep0);
		svc0 = svc1;
		ep0 = ep1;
		t0 = t1;
	}
	json_object_put(svc0);
	json_object_put(ep0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pin-root", required_argument, NULL, 'P' },
		{ "config", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "admin", required_argument, NULL, 'A' },
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *pin_root = SHOAL_DEFAULT_PIN_ROOT, *config_path = NULL, *cmd;
	const char *admin = NULL;
	struct config *cfg = NULL;
	char pin_buf[4096], err_msg[1024], admin_buf[CONFIG_MAX_LISTEN + 1];
	double interval = 2.0;
	long count = 0;
	char *end;
	bool force = false;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'P':
			pin_root = optarg;
			break;
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'j':
			json_out = true;
			break;
		case 'A':
			admin = optarg;
			break;
		case 'i':
			interval = strtod(optarg, &end);
			if (*end || !(interval >= 0.1 && interval <= 3600)) {
				fprintf(stderr, "shoalctl: --interval: '%s' is not 0.1 to 3600 seconds\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end || count < 1) {
				fprintf(stderr, "shoalctl: --count: '%s' is not a positive number\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (config_path) {
		if (config_load(config_path, &cfg, err_msg, sizeof(err_msg))) {
			fprintf(stderr, "shoalctl: %s\n", err_msg);
			return 2;
		}
		snprintf(pin_buf, sizeof(pin_buf), "%s", cfg->pin_root);
		pin_root = pin_buf;
		snprintf(admin_buf, sizeof(admin_buf), "%s", cfg->admin.listen);
		if (!admin && strcmp(admin_buf, "off"))
			admin = admin_buf;
		config_free(cfg);
	}
	if (!admin)
		admin = CONFIG_DEFAULT_ADMIN_LISTEN;
	log_route_libbpf();
	cmd = argv[optind++];
	/* getopt_long permuted argv: options may follow the command (top --count 2). */
	if (!strcmp(cmd, "status") && optind == argc)
		rc = cmd_status(pin_root);
	else if (!strcmp(cmd, "counters") && optind == argc)
		rc = cmd_counters(pin_root);
	else if (!strcmp(cmd, "bpf") && optind == argc)
		rc = cmd_bpf(pin_root);
	else if (!strcmp(cmd, "dashboard") && optind == argc)
		rc = cmd_dashboard(admin);
	else if (!strcmp(cmd, "pods") && optind == argc)
		rc = cmd_pods(admin);
	else if (!strcmp(cmd, "identity") && optind == argc)
		rc = cmd_identity(admin);
	else if (!strcmp(cmd, "policy") && optind == argc)
		rc = cmd_policy(admin);
	else if (!strcmp(cmd, "policy") && !strcmp(argv[optind], "check") &&
		 (argc - optind - 1 == 2 || argc - optind - 1 == 4))
		rc = cmd_policy_check(admin, argc - optind - 1, argv + optind + 1);
	else if (!strcmp(cmd, "services") && optind == argc)
		rc = cmd_services(admin);
	else if (!strcmp(cmd, "endpoints") && optind == argc)
		rc = cmd_endpoints(admin, pin_root);
	else if (!strcmp(cmd, "top") && optind == argc)
		rc = cmd_top(admin, interval, count);
	else if (!strcmp(cmd, "enroll") && optind + 1 == argc)
		rc = cmd_enroll(pin_root, argv[optind], true);
	else if (!strcmp(cmd, "unenroll") && optind + 1 == argc)
		rc = cmd_enroll(pin_root, argv[optind], false);
	else if (!strcmp(cmd, "shortcut") && optind + 1 == argc)
		rc = cmd_shortcut(pin_root, argv[optind]);
	else if (!strcmp(cmd, "uninstall") &&
		 (optind == argc || (optind + 1 == argc && !strcmp(argv[optind], "--force"))))
		rc = cmd_uninstall(pin_root, force || optind + 1 == argc);
	else {
		fprintf(stderr, "shoalctl: unknown command or wrong arguments: %s\n", cmd);
		usage(stderr);
		rc = 2;
	}
	return rc;
}
