// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Kubernetes source against the stand-in API server
 * (tests/k8s/apiserver.py, over TLS with a CA made for the test): list
 * then watch, events applied, the in-stream 410 relist, token rotation
 * after 401, and the last known state kept when the server dies.
 * Skips when python3 or openssl is missing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/curl_api.h"
#include "discovery/discovery.h"
#include "discovery/test_paths.h"
#include "policy/policy.h"

static char dir[64];
static char path[128];
static pid_t server = -1;
static int api_port, ctl_port;
static struct config *running, *got;
static struct discovery *d;
/* kubernetes.proxy_url for the next start(); "" none. */
static char start_proxy[64];

static void sh(const char *fmt, const char *arg)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), fmt, arg);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void write_file(const char *name, const char *text)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* Longest watch the server allows; a test shortens it to force renewals. */
static const char *max_watch = "60";
/* The server serves no AuthorizationPolicy, as a cluster without shoal's CRD. */
static bool no_crd;

static void server_start(void)
{
	char ports[128];
	FILE *f;

	snprintf(ports, sizeof(ports), "%s/ports", dir);
	unlink(ports);
	server = fork();
	cr_assert_neq(server, -1);
	if (server == 0) {
		char cert[128], key[128], tok[128], forb[128];

		/* Dies with the test, even one that ends without its teardown. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);

		snprintf(cert, sizeof(cert), "%s/server.crt", dir);
		snprintf(key, sizeof(key), "%s/server.key", dir);
		snprintf(tok, sizeof(tok), "%s/accepted", dir); /* the client reads "token" */
		snprintf(forb, sizeof(forb), "%s/forbidden", dir);
		char *argv[] = {"python3",
				"" K8S_APISERVER,
				"--cert",
				cert,
				"--key",
				key,
				"--token-file",
				tok,
				"--forbidden-token-file",
				forb,
				"--port-file",
				ports,
				"--bookmark-every",
				"0.5",
				"--max-watch",
				(char *)max_watch,
				"--seed",
				"7",
				"--seed-file",
				K8S_FIXTURES_DIR "/services.watch.ndjson",
				"--seed-file",
				K8S_FIXTURES_DIR "/endpointslices.watch.ndjson",
				no_crd ? "--no-crd" : NULL,
				NULL};

		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execvp("python3", argv);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) {
		f = fopen(ports, "r");
		if (f) {
			int n = fscanf(f, "%d %d", &api_port, &ctl_port);

			fclose(f);
			if (n == 2)
				return;
		}
		usleep(50000);
	}
	cr_assert_fail("the stand-in API server did not start");
}

static void server_kill(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
		server = -1;
	}
}

static void setup(void)
{
	char err[512], yaml[512];

	if (system("command -v python3 >/dev/null && command -v openssl >/dev/null") != 0)
		cr_skip_test("needs python3 and openssl for the stand-in API server");
	snprintf(dir, sizeof(dir), "/tmp/shoal-k8s-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	sh("sh " K8S_MKCERTS " %s", dir);
	write_file("accepted", "good-token\n");
	write_file("token", "good-token\n");
	write_file("forbidden", "forbidden-token\n");
	server_start();
	snprintf(path, sizeof(path), "%s/shoal.yaml", dir);
	snprintf(yaml, sizeof(yaml), "node: {address_v4: 10.0.0.1}\n");
	write_file("shoal.yaml", yaml);
	cr_assert_eq(config_load(path, &running, err, sizeof(err)), 0, "%s", err);
	d = NULL;
	got = NULL;
	start_proxy[0] = '\0';
}

static void teardown(void)
{
	discovery_stop(d);
	d = NULL;
	server_kill();
	config_free(got);
	got = NULL;
	config_free(running);
	running = NULL;
	if (dir[0])
		sh("rm -rf '%s'", dir);
	dir[0] = '\0';
}

TestSuite(discovery_k8s, .init = setup, .fini = teardown, .timeout = 60);

static void start(void)
{
	struct k8s_opts o = {.backoff_min_ms = 50, .backoff_max_ms = 200};

	snprintf(o.proxy_url, sizeof(o.proxy_url), "%s", start_proxy);
	snprintf(o.api_server, sizeof(o.api_server), "https://127.0.0.1:%d", api_port);
	snprintf(o.ca_file, sizeof(o.ca_file), "%s/ca.crt", dir);
	snprintf(o.token_file, sizeof(o.token_file), "%s/token", dir);
	cr_assert_eq(discovery_start(running, &o, &d), 0);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Poll discovery until pred(got) holds or 10 s pass. */
static bool wait_for(bool (*pred)(void))
{
	uint64_t end = ms_now() + 10000;

	while (ms_now() < end) {
		struct pollfd pfd = {.fd = discovery_fd(d), .events = POLLIN};
		struct config *c = NULL;

		poll(&pfd, 1, 100);
		if (discovery_poll(d, &c) == 1) {
			config_free(got);
			got = c;
		}
		if (got && pred())
			return true;
	}
	return false;
}

/*
 * Poll discovery until it has built nothing for quiet_ms (at most 10 s);
 * returns the configs it built meanwhile. The wakeup that ends a list is
 * rung after the list is marked done, so a test that saw "synced" may
 * still have one build to come: counting from before it would blame the
 * next step for it.
 */
static int settle(int quiet_ms)
{
	uint64_t end = ms_now() + 10000, quiet_end = ms_now() + (uint64_t)quiet_ms;
	int built = 0;

	while (ms_now() < end && ms_now() < quiet_end) {
		struct pollfd pfd = {.fd = discovery_fd(d), .events = POLLIN};
		struct config *c = NULL;

		poll(&pfd, 1, 50);
		if (discovery_poll(d, &c) == 1) {
			config_free(got);
			got = c;
			built++;
			quiet_end = ms_now() + (uint64_t)quiet_ms;
		}
	}
	return built;
}

static const struct config_service *find(const char *name)
{
	for (int i = 0; got && i < got->n_services; i++)
		if (!strcmp(got->services[i]->name, name))
			return got->services[i];
	return NULL;
}

/* "a b c" of svc's endpoint addresses, sorted by the caller's expectations. */
static bool has_eps(const char *name, const char *want)
{
	const struct config_service *s = find(name);
	char buf[512] = "", a[ADDR_STR_MAX];

	if (!s)
		return false;
	for (int i = 0; i < s->n_endpoints; i++) {
		strcat(buf, " ");
		strcat(buf, addr_ntop(&s->endpoints[i].addr, a, sizeof(a)));
	}
	strcat(buf, " ");
	/* Every wanted address is present, and the count matches. */
	{
		char w[256];
		int n = 0;

		snprintf(w, sizeof(w), "%s", want);
		for (char *t = strtok(w, " "); t; t = strtok(NULL, " ")) {
			char pat[64];

			snprintf(pat, sizeof(pat), " %s ", t);
			if (!strstr(buf, pat))
				return false;
			n++;
		}
		return n == s->n_endpoints;
	}
}

static bool synced(void)
{
	return discovery_synced(d);
}

static bool web_ready(void)
{
	return has_eps("web", "10.244.2.31 10.244.1.18 fd00:10:244:1::17");
}

/* The test's own HTTP client: the libcurl the agent loads, loaded the same way. */
static CURL *test_client(void)
{
	char err[512];

	cr_assert_eq(curl_api_load("the test's HTTP client", err, sizeof(err)), 0, "%s", err);
	return curl_easy_init();
}

static void control(const char *what, const char *body)
{
	char url[128];
	CURL *c = test_client();
	FILE *null = fopen("/dev/null", "w");
	long code = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", ctl_port, what);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	cr_assert_eq(code, 200, "control %s: HTTP %ld", what, code);
	curl_easy_cleanup(c);
	fclose(null);
}

Test(discovery_k8s, list_then_watch_builds_services)
{
	const struct config_service *web, *api;

	start();
	cr_assert(wait_for(web_ready), "web never got its ready endpoints");
	web = find("web");
	cr_expect_str_eq(web->namespace, "shop");
	cr_expect_eq(web->ports[0].port, 80);
	cr_expect_eq(web->ports[0].target_port, 8080, "named port 'http' resolved");
	cr_expect_eq(web->ports[0].protocol, CONFIG_PROTO_HTTP);
	api = find("api");
	cr_assert_not_null(api);
	cr_expect_eq(api->n_vips, 2, "dual-stack clusterIPs");
	cr_expect_null(find("db-headless"));
	cr_expect(wait_for(synced), "never synced");
}

static bool web_moved(void)
{
	return has_eps("web", "10.244.9.9");
}

static bool web_moved_v6_kept(void)
{
	return has_eps("web", "10.244.9.9 fd00:10:244:1::17");
}

static bool web_gone(void)
{
	return got && !find("web");
}

#define SLICE_WEB_MOVED                                                                            \
	"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":"            \
	"\"discovery.k8s.io/v1\",\"metadata\":{\"name\":\"web-7xq2k\",\"namespace\":\"shop\","     \
	"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\","           \
	"\"endpoints\":[{\"addresses\":[\"10.244.9.9\"]}],\"ports\":[{\"name\":\"http\","          \
	"\"port\":8080}]}}"
#define SLICE_WEB_V6_GONE                                                                          \
	"{\"type\":\"DELETED\",\"object\":{\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":"     \
	"\"web-v6-p2m9d\",\"namespace\":\"shop\"}}}"
#define SVC_WEB_GONE                                                                               \
	"{\"type\":\"DELETED\",\"object\":{\"kind\":\"Service\",\"metadata\":{\"name\":\"web\","   \
	"\"namespace\":\"shop\"}}}"

Test(discovery_k8s, watch_events_change_endpoints_and_services)
{
	start();
	cr_assert(wait_for(web_ready));
	control("apply", "[" SLICE_WEB_MOVED "," SLICE_WEB_V6_GONE "]");
	cr_assert(wait_for(web_moved), "web did not follow its slices");
	control("apply", SVC_WEB_GONE);
	cr_assert(wait_for(web_gone), "web was not removed");
}

/*
 * web's IPv4 slice rewritten with one good endpoint and five that no
 * endpoint can have: loopback, link-local (the cloud metadata server),
 * multicast, unspecified, and the node's own address (node.address_v4 of
 * the running config, 10.0.0.1).
 */
#define SLICE_WEB_HOSTILE                                                                          \
	"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":"            \
	"\"discovery.k8s.io/v1\",\"metadata\":{\"name\":\"web-7xq2k\",\"namespace\":\"shop\","     \
	"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\","           \
	"\"endpoints\":[{\"addresses\":[\"127.0.0.1\"]},{\"addresses\":[\"169.254.169.254\"]},"    \
	"{\"addresses\":[\"10.244.9.9\"]},{\"addresses\":[\"224.0.0.1\"]},"                        \
	"{\"addresses\":[\"0.0.0.0\"]},{\"addresses\":[\"10.0.0.1\"]}],"                           \
	"\"ports\":[{\"name\":\"http\",\"port\":8080}]}}"

static bool five_refused(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.k8s_refused_endpoints == 5;
}

Test(discovery_k8s, slice_addresses_no_endpoint_can_have_are_refused)
{
	struct discovery_stats st;

	start();
	cr_assert(wait_for(web_ready));
	discovery_get_stats(d, &st);
	cr_expect_eq(st.k8s_refused_endpoints, 0, "the fixtures hold no such address");
	control("apply", SLICE_WEB_HOSTILE);
	cr_assert(wait_for(web_moved_v6_kept),
		  "web should keep 10.244.9.9 and its IPv6 slice only");
	cr_expect(wait_for(five_refused), "k8s_refused_endpoints should count the five");
}

/* web's slice with twelve loopback endpoints, 127.0.0.1 .. 127.0.0.12. */
#define LO(n) "{\"addresses\":[\"127.0.0." #n "\"]}"
#define SLICE_WEB_TWELVE_LOOPBACK                                                                  \
	"{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":"            \
	"\"discovery.k8s.io/v1\",\"metadata\":{\"name\":\"web-7xq2k\",\"namespace\":\"shop\","     \
	"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\","           \
	"\"endpoints\":[" LO(1) "," LO(2) "," LO(3) "," LO(4) "," LO(5) "," LO(6) "," LO(          \
	    7) "," LO(8) "," LO(9) "," LO(10) "," LO(11) "," LO(12) ",{\"addresses\":[\"10.244.9." \
								    "9\"]}],"                      \
								    "\"ports\":[{\"name\":"        \
								    "\"http\",\"port\":8080}]}}"

static bool twelve_refused(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.k8s_refused_endpoints == 12;
}

/* Every refused address is counted; the log gets K8S_REFUSED_LOG_BURST
 * lines a window, each naming the slice and the address. */
Test(discovery_k8s, refused_addresses_are_logged_within_the_rate_limit)
{
	char logpath[160], line[512];
	int lines = 0, saved = dup(2), fd;
	FILE *f;

	snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_geq(saved, 0);
	dup2(fd, 2);
	close(fd);
	start();
	cr_assert(wait_for(web_ready));
	control("apply", SLICE_WEB_TWELVE_LOOPBACK);
	cr_assert(wait_for(web_moved_v6_kept));
	cr_expect(wait_for(twelve_refused), "all twelve counted");
	dup2(saved, 2);
	close(saved);
	f = fopen(logpath, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, "refused: loopback address"))
			continue;
		cr_expect(strstr(line, "EndpointSlice shop/web-7xq2k: endpoint 127.0.0.") != NULL,
			  "%s", line);
		lines++;
	}
	fclose(f);
	cr_expect_eq(lines, K8S_REFUSED_LOG_BURST, "%d lines for 12 refused addresses", lines);
}

/*
 * A proxy in shoald's environment is not the config's: with every proxy
 * variable libcurl reads pointing at a closed loopback port, discovery
 * still talks to the API server directly. The port is bound and never
 * listened on, so it stays closed for the whole test.
 */
Test(discovery_k8s, proxy_environment_is_ignored)
{
	static const char *const vars[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
					   "http_proxy",  "ALL_PROXY",	 "all_proxy"};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	char proxy[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%u", ntohs(sin.sin_port));
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		setenv(vars[i], proxy, 1);
	unsetenv("NO_PROXY");
	unsetenv("no_proxy");
	start();
	cr_expect(wait_for(web_ready), "discovery went through %s instead of to the API server",
		  proxy);
	cr_expect(wait_for(synced), "never synced with the proxy variables set");
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	close(fd);
}

static bool failed_once(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.k8s_errors >= 2; /* both kinds */
}

/*
 * The config's proxy is used, and NO_PROXY does not override it: with
 * proxy_url at a closed port, every request fails and nothing syncs.
 */
Test(discovery_k8s, configured_proxy_is_used_whatever_no_proxy_says)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(start_proxy, sizeof(start_proxy), "http://127.0.0.1:%u", ntohs(sin.sin_port));
	setenv("NO_PROXY", "*", 1);
	start();
	/* wait_for needs a config, and none comes: poll the counter. */
	for (int i = 0; i < 100 && !failed_once(); i++)
		usleep(50000);
	cr_expect(failed_once(), "requests did not go to the configured proxy %s", start_proxy);
	cr_expect_not(discovery_synced(d), "synced past a proxy that is closed");
	cr_expect_null(find("web"));
	unsetenv("NO_PROXY");
	close(fd);
}

/* Both kinds listed again after the 410, and the model is right. */
static bool relisted(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.k8s_lists >= 4 && web_moved_v6_kept();
}

Test(discovery_k8s, expired_watch_relists)
{
	struct discovery_stats st;

	start();
	cr_assert(wait_for(web_ready));
	/* Changes, then a compaction: the change is only visible by relisting. */
	control("apply", SLICE_WEB_MOVED);
	control("compact", NULL);
	control("expire", NULL);
	cr_assert(wait_for(relisted), "no relist after the in-stream 410");
	discovery_get_stats(d, &st);
	cr_expect_geq(st.k8s_relists_410, 2, "both watches got the 410");
}

static bool errors_seen(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.k8s_unauthorized >= 2;
}

Test(discovery_k8s, unauthorized_until_the_token_is_rotated)
{
	struct discovery_stats st;

	write_file("token", "stale-token\n");
	start();
	got = NULL;
	{
		uint64_t end = ms_now() + 5000;

		while (!errors_seen() && ms_now() < end)
			usleep(50000);
	}
	cr_assert(errors_seen(), "no 401 seen");
	cr_expect_not(discovery_synced(d));
	/* The kubelet rotates the token: a 401 makes the watcher read it again. */
	write_file("token", "good-token\n");
	cr_assert(wait_for(web_ready), "not synced after the token rotation");
	discovery_get_stats(d, &st);
	cr_expect(discovery_synced(d));
	cr_expect_eq(st.k8s_bad_objects, 0);
}

Test(discovery_k8s, forbidden_is_an_error_not_a_crash)
{
	struct discovery_stats st;
	uint64_t end;

	write_file("token", "forbidden-token\n");
	start();
	end = ms_now() + 5000;
	do {
		usleep(50000);
		discovery_get_stats(d, &st);
	} while (st.k8s_errors < 2 && ms_now() < end);
	cr_expect_geq(st.k8s_errors, 2);
	cr_expect_not(discovery_synced(d));
}

static bool not_synced(void)
{
	return !discovery_synced(d);
}

Test(discovery_k8s, last_known_state_survives_the_server)
{
	start();
	cr_assert(wait_for(web_ready));
	server_kill();
	cr_assert(wait_for(not_synced), "still 'synced' with the server gone");
	/* Nothing new was published: what was known stays. */
	cr_expect(web_ready());
}

/* The server's request counters (GET /stats on the control port). */
static void server_stats(long *lists, long *watches)
{
	char url[128], body[1024] = "";
	CURL *c = test_client();
	FILE *f = fmemopen(body, sizeof(body) - 1, "w");
	const char *p;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats", ctl_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	fclose(f);
	p = strstr(body, "\"list\": ");
	*lists = p ? atol(p + 8) : -1;
	p = strstr(body, "\"watch\": ");
	*watches = p ? atol(p + 9) : -1;
}

/* A watch the server ends (timeoutSeconds) is renewed from the last version: no relist. */
static void setup_short_watch(void)
{
	max_watch = "0.5"; /* each test runs in its own process: no one else sees it */
	setup();
}

Test(discovery_k8s_renew, watch_renewed_without_relisting, .init = setup_short_watch,
     .fini = teardown, .timeout = 60)
{
	long lists, watches;

	start();
	cr_assert(wait_for(web_ready));
	usleep(2000000);
	server_stats(&lists, &watches);
	/* Services, EndpointSlices and AuthorizationPolicies. */
	cr_expect_eq(lists, 3, "one list per kind, no relist (got %ld)", lists);
	cr_expect_geq(watches, 6, "watches renewed (got %ld)", watches);
	control("apply", SLICE_WEB_MOVED);
	cr_expect(wait_for(web_moved_v6_kept), "events still applied after renewals");
	cr_expect(discovery_synced(d));
}

/* ---- other collections (k8s_start_collections): what enrollment watches ---- */

/* A sink that keeps pod names, with the list's mark and sweep. */
struct name_sink {
	pthread_mutex_t mu;
	char names[16][64];
	bool mark[16];
	int n, lists, bad;
};

static struct name_sink ns_sink = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *obj_name(json_object *obj)
{
	json_object *meta, *name;

	if (!json_object_object_get_ex(obj, "metadata", &meta) ||
	    !json_object_object_get_ex(meta, "name", &name))
		return NULL;
	return json_object_get_string(name);
}

static int find_name(const char *name)
{
	for (int i = 0; i < ns_sink.n; i++)
		if (!strcmp(ns_sink.names[i], name))
			return i;
	return -1;
}

static void sink_begin(void *ctx)
{
	(void)ctx;
	for (int i = 0; i < ns_sink.n; i++)
		ns_sink.mark[i] = false;
}

static void sink_end(void *ctx)
{
	(void)ctx;
	for (int i = 0; i < ns_sink.n;) {
		if (ns_sink.mark[i]) {
			i++;
			continue;
		}
		ns_sink.n--;
		memcpy(ns_sink.names[i], ns_sink.names[ns_sink.n], sizeof(ns_sink.names[i]));
		ns_sink.mark[i] = ns_sink.mark[ns_sink.n];
	}
	ns_sink.lists++;
}

static int sink_put(void *ctx, json_object *obj, char *err, size_t errlen)
{
	const char *name = obj_name(obj);
	int i;

	(void)ctx;
	if (!name) {
		ns_sink.bad++;
		snprintf(err, errlen, "no metadata.name");
		return -EINVAL;
	}
	i = find_name(name);
	if (i < 0 && ns_sink.n < 16) {
		i = ns_sink.n++;
		snprintf(ns_sink.names[i], sizeof(ns_sink.names[i]), "%s", name);
	}
	if (i >= 0)
		ns_sink.mark[i] = true;
	return 0;
}

static int sink_del(void *ctx, json_object *obj, char *err, size_t errlen)
{
	const char *name = obj_name(obj);
	int i;

	(void)ctx, (void)err, (void)errlen;
	i = name ? find_name(name) : -1;
	if (i >= 0) {
		ns_sink.n--;
		memcpy(ns_sink.names[i], ns_sink.names[ns_sink.n], sizeof(ns_sink.names[i]));
		ns_sink.mark[i] = ns_sink.mark[ns_sink.n];
	}
	return 0;
}

static struct k8s_watcher *pods_w;

/* Wait (10 s) until the sink holds exactly want (names joined by ' ', any order). */
static bool sink_holds(const char *want)
{
	uint64_t end = ms_now() + 10000;

	while (ms_now() < end) {
		char w[256];
		int n = 0;
		bool ok = true;

		pthread_mutex_lock(&ns_sink.mu);
		snprintf(w, sizeof(w), "%s", want);
		for (char *t = strtok(w, " "); t; t = strtok(NULL, " "), n++)
			ok = ok && find_name(t) >= 0;
		ok = ok && n == ns_sink.n;
		pthread_mutex_unlock(&ns_sink.mu);
		if (ok)
			return true;
		usleep(20000);
	}
	return false;
}

#define POD(type, name, node)                                                                      \
	"{\"type\":\"" type "\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":"  \
	"{\"name\":\"" name "\",\"namespace\":\"shop\",\"uid\":\"uid-" name "\"},"                 \
	"\"spec\":{\"nodeName\":\"" node "\"},\"status\":{\"podIP\":\"10.244.1.5\"}}}"

static void start_pods(void)
{
	struct k8s_opts o = {.backoff_min_ms = 50, .backoff_max_ms = 200};
	struct k8s_collection col = {
	    .what = "pods",
	    .path = "/api/v1/pods",
	    .selector = "fieldSelector=spec.nodeName%3Dnode-a",
	    .sink = {sink_begin, sink_end, sink_put, sink_del, NULL},
	};
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	memset(ns_sink.names, 0, sizeof(ns_sink.names));
	ns_sink.n = ns_sink.lists = ns_sink.bad = 0;
	snprintf(o.api_server, sizeof(o.api_server), "https://127.0.0.1:%d", api_port);
	snprintf(o.ca_file, sizeof(o.ca_file), "%s/ca.crt", dir);
	snprintf(o.token_file, sizeof(o.token_file), "%s/token", dir);
	cr_assert_geq(efd, 0);
	cr_assert_eq(k8s_start_collections(&o, &col, 1, &ns_sink.mu, efd, &pods_w), 0);
}

/*
 * Pods of one node through a field selector: the list and the watch see
 * only node-a's, deletes remove, and a 410 relist drops the pod deleted
 * while the watch was behind (the sink's mark and sweep).
 */
Test(discovery_k8s, pods_collection_by_node_through_a_sink)
{
	struct k8s_stats st;

	control("apply", "[" POD("ADDED", "p1", "node-a") "," POD("ADDED", "p2", "node-b") "]");
	start_pods();
	cr_assert(sink_holds("p1"), "the list did not give node-a's pods only");
	cr_assert(k8s_synced(pods_w) || sink_holds("p1"));
	control("apply", "[" POD("ADDED", "p3", "node-a") "," POD("ADDED", "p4", "node-b") "]");
	cr_assert(sink_holds("p1 p3"), "the watch did not follow node-a's pods");
	control("apply", POD("DELETED", "p1", "node-a"));
	cr_assert(sink_holds("p3"), "a delete was not applied");
	control("apply", "[" POD("DELETED", "p3", "node-a") "," POD("ADDED", "p5", "node-a") "]");
	cr_assert(sink_holds("p5"));
	/* A delete the watch missed (as one lost behind a 410 would be): only
	 * the relist's sweep can drop it. */
	pthread_mutex_lock(&ns_sink.mu);
	snprintf(ns_sink.names[ns_sink.n], sizeof(ns_sink.names[0]), "ghost");
	ns_sink.mark[ns_sink.n++] = true;
	pthread_mutex_unlock(&ns_sink.mu);
	control("compact", NULL);
	control("expire", NULL);
	cr_assert(sink_holds("p5"), "the relist after 410 did not drop the missed delete");
	k8s_get_stats(pods_w, &st);
	cr_expect_geq(st.relists_410, 1);
	cr_expect_geq(ns_sink.lists, 2, "listed %d times", ns_sink.lists);
	cr_expect_eq(ns_sink.bad, 0);
	k8s_stop(pods_w);
	pods_w = NULL;
}

/* ---- the pods behind endpoints: their identities (docs/discovery.md, "Identities") ---- */

#define ID_SVC                                                                                     \
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":" \
	"{\"name\":\"idsvc\",\"namespace\":\"pay\"},\"spec\":{\"clusterIP\":\"10.96.9.9\","        \
	"\"clusterIPs\":[\"10.96.9.9\"],\"ports\":[{\"port\":80,\"targetPort\":8080}]}}}"
#define ID_SLICE                                                                                   \
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":"               \
	"\"discovery.k8s.io/v1\",\"metadata\":{\"name\":\"idsvc-1\",\"namespace\":\"pay\","        \
	"\"labels\":{\"kubernetes.io/service-name\":\"idsvc\"}},\"addressType\":\"IPv4\","         \
	"\"endpoints\":[{\"addresses\":[\"10.244.7.1\"],\"nodeName\":\"node-b\",\"targetRef\":"    \
	"{\"kind\":\"Pod\",\"namespace\":\"pay\",\"name\":\"ledger-0\",\"uid\":\"u-l0\"}}],"       \
	"\"ports\":[{\"port\":8080}]}}"
#define ID_POD(type, sa, phase)                                                                    \
	"{\"type\":\"" type "\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":"  \
	"{\"name\":\"ledger-0\",\"namespace\":\"pay\",\"uid\":\"u-l0\"},\"spec\":{\"nodeName\":"   \
	"\"node-b\",\"serviceAccountName\":\"" sa "\"},\"status\":{\"phase\":\"" phase "\"}}}"

static const char *id_of_idsvc(void)
{
	const struct config_service *s = find("idsvc");

	return s && s->n_endpoints == 1 ? s->endpoints[0].identity : NULL;
}

static bool idsvc_ledger(void)
{
	const char *id = id_of_idsvc();

	return id && !strcmp(id, "pay/ledger");
}

static bool idsvc_audit(void)
{
	const char *id = id_of_idsvc();

	return id && !strcmp(id, "pay/audit");
}

static bool idsvc_none(void)
{
	return find("idsvc") && find("idsvc")->n_endpoints == 1 && !id_of_idsvc();
}

/*
 * With mtls on, discovery lists and watches every Pod: the endpoint gets
 * its pod's identity; a status update of the pod builds no new config;
 * a replaced pod's account follows; a pod deleted around a 410 (the watch
 * ends, the relist lists what is left) is gone, and the endpoint loses it.
 */
Test(discovery_k8s, endpoints_get_their_pods_identity)
{
	char err[512];
	struct discovery_stats st;
	uint64_t snaps;

	config_free(running);
	write_file("shoal.yaml", "node: {address_v4: 10.0.0.1}\n"
				 "identity: {source: files, dir: /nonexistent}\n"
				 "mtls: {mode: permissive, node_name: node-a}\n");
	cr_assert_eq(config_load(path, &running, err, sizeof(err)), 0, "%s", err);
	control("apply", "[" ID_SVC "," ID_SLICE "," ID_POD("ADDED", "ledger", "Running") "]");
	start();
	cr_assert(wait_for(idsvc_ledger), "idsvc's endpoint never got pay/ledger");
	cr_assert(wait_for(synced), "not synced with the pods listed");
	discovery_get_stats(d, &st);
	cr_expect_eq(st.k8s_pods, 1);
	cr_expect_eq(st.endpoints_no_identity, 0);

	/* A status update: applied, and nothing rebuilt. */
	settle(300);
	discovery_get_stats(d, &st);
	snaps = st.snapshots;
	control("apply", ID_POD("MODIFIED", "ledger", "Running"));
	control("apply", ID_POD("MODIFIED", "ledger", "Running"));
	settle(1000);
	discovery_get_stats(d, &st);
	cr_expect_eq(st.snapshots, snaps, "a pod's status update built %" PRIu64 " configs",
		     st.snapshots - snaps);

	/* Replaced (a pod's account cannot change in place): the new one's. */
	control("apply", "[" ID_POD("DELETED", "ledger", "Running") "," ID_POD("ADDED", "audit",
									       "Running") "]");
	cr_assert(wait_for(idsvc_audit), "the replaced pod's account was not followed");

	/* Deleted around a 410: gone after the relist. */
	control("compact", NULL);
	control("apply", ID_POD("DELETED", "audit", "Running"));
	control("expire", NULL);
	cr_assert(wait_for(idsvc_none), "the pod deleted around the 410 kept its identity");
	discovery_get_stats(d, &st);
	cr_expect_eq(st.endpoints_no_identity, 1);
	cr_expect_eq(st.k8s_pods, 0);
}

/* ---- AuthorizationPolicy objects (docs/policy.md, "In Kubernetes") ---- */

#define POLICY_OBJ(type, name, spec)                                                               \
	"{\"type\":\"" type "\",\"object\":{\"kind\":\"AuthorizationPolicy\",\"apiVersion\":"      \
	"\"shoal.io/v1alpha1\",\"metadata\":{\"name\":\"" name "\",\"namespace\":\"shop\"},"       \
	"\"spec\":" spec "}}"

/* What the policy in got decides for a caller of namespace ns calling shop/web:80. */
static int verdict(const char *ns)
{
	char id[128];
	struct policy_caller c = {.authenticated = true,
				  .id = id,
				  .trust_domain = "cluster.local",
				  .ns = ns,
				  .sa = "default"};
	struct policy_decision out;

	if (!got || !got->policy)
		return -1;
	snprintf(id, sizeof(id), "spiffe://cluster.local/ns/%s/sa/default", ns);
	policy_decide(policy_lookup(got->policy, "shop", "web"), "shop", 80, &c, NULL, &out);
	return out.allow;
}

static bool shop_only(void)
{
	return verdict("shop") == 1 && verdict("web") == 0;
}

static bool web_let_in(void)
{
	return verdict("shop") == 1 && verdict("web") == 1 && verdict("ads") == 0;
}

static bool open_again(void)
{
	return verdict("ads") == 1;
}

static uint64_t object_rejects(void)
{
	struct discovery_stats st;

	discovery_get_stats(d, &st);
	return st.policy_object_rejects;
}

static bool one_reject(void)
{
	return object_rejects() == 1;
}

static int want_rules;

static bool rules_are(void)
{
	return got && got->policy && policy_set_rules(got->policy) == want_rules;
}

static bool wait_for_rules(int n)
{
	want_rules = n;
	return wait_for(rules_are);
}

static void setup_no_crd(void)
{
	no_crd = true; /* each test runs in its own process: no one else sees it */
	setup();
}

Test(discovery_k8s, authorization_policies_follow_the_objects)
{
	start();
	cr_assert(wait_for(web_ready));
	/* A namespace default, then a rule on top of it. */
	control("apply", POLICY_OBJ("ADDED", "isolate", "{\"default\":\"same-namespace\"}"));
	cr_assert(wait_for(shop_only), "the namespace default never took effect");
	control("apply", POLICY_OBJ("ADDED", "web-in",
				    "{\"service\":\"web\",\"action\":\"allow\","
				    "\"from\":[{\"namespace\":\"web\"}]}"));
	cr_assert(wait_for(web_let_in), "the allow rule never took effect");
	cr_assert_eq(policy_set_rules(got->policy), 1);

	/* A bad edit of web-in is refused, named, counted; its last good version stays. */
	control("apply", POLICY_OBJ("MODIFIED", "web-in",
				    "{\"service\":\"web\",\"action\":\"allow\","
				    "\"from\":[{\"serviceAccount\":\"nonsense\"}]}"));
	cr_assert(wait_for(one_reject), "the bad edit was not counted");
	/* A later good change of another object still applies, with web-in kept. */
	control("apply", POLICY_OBJ("ADDED", "ads-out",
				    "{\"action\":\"deny\",\"from\":[{\"namespace\":\"ads\"}]}"));
	cr_assert(wait_for(web_let_in));
	cr_assert(wait_for_rules(2), "ads-out not merged, or web-in dropped");

	/* A relist (410) must not drop the object whose current version is bad. */
	control("expire", NULL);
	control("apply", POLICY_OBJ("DELETED", "isolate", "{}"));
	control("apply", POLICY_OBJ("DELETED", "ads-out", "{}"));
	cr_assert(wait_for(open_again), "deleting the default did not open shop again");
	cr_assert_eq(verdict("web"), 1, "web-in was dropped by the relist");
}

/* A cluster without the CRD: discovery goes on, services flow, the file's policy holds. */
/*
 * In a suite of its own: Criterion runs a suite's .init and then the
 * test's, so in discovery_k8s setup would run twice (one config and one
 * stand-in server leaked).
 */
Test(discovery_k8s_no_crd, discovery_is_not_fatal, .init = setup_no_crd, .fini = teardown)
{
	start();
	cr_assert(wait_for(web_ready), "services stopped flowing without the CRD");
	cr_assert(wait_for(synced), "discovery never synced without the CRD");
}
