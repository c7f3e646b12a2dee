// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench-discovery: discovery at scale against the stand-in API server.
 * Driven by scripts/bench-discovery, which seeds the server and prepares
 * a cgroup and a pin root. Real code all the way: the Kubernetes watcher,
 * the model, the config build, and datapath_update_services on the real
 * BPF maps (loaded and attached to an empty cgroup). Prints a table:
 *
 *   - time to the first full sync (list both kinds, build, maps written)
 *     and the agent's resident memory then;
 *   - event -> map applied, p50 and p99: one EndpointSlice change at a
 *     time, from just before the control request that makes the server
 *     emit it to the return of datapath_update_services;
 *   - a full relist (the server forgets its history and expires the
 *     watches), to the maps written again;
 *   - the latency of requests through the real proxy (1 worker, echo
 *     backend on loopback), idle and while endpoint updates stream in at
 *     UPDATES_PER_S, each applied with proxy_update and
 *     datapath_update_services: an update must never stall a worker.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "config/config.h"
#include "discovery/discovery.h"
#include "datapath/datapath.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#include "bench_util.h"

/* Give up on a phase after this long: something is broken, not slow. */
#define BENCH_PHASE_TIMEOUT_MS 300000
/* The figure: endpoint updates per second streamed in. */
#define BENCH_UPDATES_PER_S 1000
/* Events per control request: 10 per 10 ms makes the rate. */
#define BENCH_UPDATE_BATCH 10
/* How long each latency phase runs. */
#define BENCH_IDLE_S 2
#define BENCH_STREAM_S 5
/* Request size of the latency probe, and the most samples kept. */
#define BENCH_PROBE_BYTES 64
#define BENCH_MAX_SAMPLES 2000000
/* A new connection every this many requests, so the probe also routes. */
#define BENCH_REQS_PER_CONN 20

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
	(void)p, (void)u;
	return s * n;
}

static int control(int port, const char *what, const char *body)
{
	static CURL *c;
	char url[128];
	long code = 0;

	if (!c)
		c = curl_easy_init();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", port, what);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	if (curl_easy_perform(c) != CURLE_OK)
		return -EIO;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	return code == 200 ? 0 : -EIO;
}

struct bench {
	struct discovery *d;
	struct datapath *dp;
	struct config *live; /* the last config applied */
	uint64_t build_us, apply_us;
	int builds;
};

/*
 * Wait for discovery's next config and apply it to the maps. Returns 1
 * when one was applied, 0 on timeout_ms without one.
 */
static int step(struct bench *b, int timeout_ms)
{
	struct pollfd pfd = {.fd = discovery_fd(b->d), .events = POLLIN};
	struct config *next = NULL;
	uint64_t t0, t1;

	if (poll(&pfd, 1, timeout_ms) != 1)
		return 0;
	t0 = now_us();
	if (discovery_poll(b->d, &next) != 1)
		return 0;
	t1 = now_us();
	if (datapath_update_services(b->dp, next)) {
		fprintf(stderr, "bench: datapath_update_services failed\n");
		exit(1);
	}
	b->apply_us += now_us() - t1;
	b->build_us += t1 - t0;
	b->builds++;
	config_free(b->live);
	b->live = next;
	return 1;
}

/* Index of service "svc-<k>" in the live config, or -1. */
static int find_svc(const struct config *cfg, int k)
{
	char name[32];

	snprintf(name, sizeof(name), "svc-%d", k);
	for (int i = 0; i < cfg->n_services; i++)
		if (!strcmp(cfg->services[i]->name, name))
			return i;
	return -1;
}

static bool has_ep(const struct config_service *s, const struct shoal_addr *a)
{
	for (int i = 0; i < s->n_endpoints; i++)
		if (addr_equal(&s->endpoints[i].addr, a))
			return true;
	return false;
}

/* ---- the proxy latency probe ---- */

static struct shoal_orig_dst probe_orig; /* where every probe connection "was going" */
static uint16_t echo_port, proxy_port;
static atomic_bool probe_run, probe_phase_b;
static uint64_t *samples[2];
static atomic_size_t n_samples[2];

static int probe_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
			  struct shoal_orig_dst *orig)
{
	(void)ctx, (void)peer, (void)local;
	*orig = probe_orig;
	return 0;
}

/* Every endpoint is the local echo backend. */
static socklen_t probe_ep(const struct shoal_addr *ep, uint16_t port_be,
			  struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;

	(void)ep, (void)port_be;
	memset(out, 0, sizeof(*out));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(echo_port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*sin);
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			break;
	close(fd);
	return NULL;
}

static void *echo_main(void *arg)
{
	int lfd = (int)(intptr_t)arg, fd;

	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		pthread_t t;

		if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
	return NULL;
}

static int dial_proxy(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(proxy_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Request/response round trips through the proxy until probe_run drops. */
static void *probe_main(void *arg)
{
	char req[BENCH_PROBE_BYTES], resp[BENCH_PROBE_BYTES];
	int fd = -1, reqs = 0;

	(void)arg;
	memset(req, 'p', sizeof(req));
	while (atomic_load(&probe_run)) {
		int phase = atomic_load(&probe_phase_b);
		uint64_t t0 = now_us();
		size_t got = 0;
		size_t i;

		if (fd < 0 || reqs++ == BENCH_REQS_PER_CONN) {
			if (fd >= 0)
				close(fd);
			fd = dial_proxy();
			reqs = 0;
			if (fd < 0) {
				usleep(1000);
				continue;
			}
		}
		if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req)) {
			close(fd);
			fd = -1;
			continue;
		}
		while (got < sizeof(resp)) {
			ssize_t n = read(fd, resp + got, sizeof(resp) - got);

			if (n <= 0)
				break;
			got += (size_t)n;
		}
		if (got < sizeof(resp)) {
			close(fd);
			fd = -1;
			continue;
		}
		i = atomic_fetch_add(&n_samples[phase], 1);
		if (i < BENCH_MAX_SAMPLES)
			samples[phase][i] = now_us() - t0;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void percentiles(int phase, double *p50, double *p99, size_t *n)
{
	*n = atomic_load(&n_samples[phase]);
	if (*n > BENCH_MAX_SAMPLES)
		*n = BENCH_MAX_SAMPLES;
	qsort(samples[phase], *n, sizeof(uint64_t), cmp_u64);
	*p50 = *n ? samples[phase][*n / 2] / 1e3 : 0;
	*p99 = *n ? samples[phase][(*n * 99) / 100] / 1e3 : 0;
}

static uint64_t proxy_update_us, proxy_updates;

/* Apply every config discovery has ready to the proxy and the maps. */
static int drain_configs(struct bench *b, struct proxy *px, int timeout_ms)
{
	int applied = 0;

	for (;;) {
		struct pollfd pfd = {.fd = discovery_fd(b->d), .events = POLLIN};
		struct config *next = NULL;

		if (poll(&pfd, 1, timeout_ms) != 1 || discovery_poll(b->d, &next) != 1)
			return applied;
		timeout_ms = 0;
		uint64_t t0 = now_us();

		if (proxy_update(px, next)) {
			config_free(next);
			continue;
		}
		proxy_update_us += now_us() - t0;
		proxy_updates++;
		datapath_update_services(b->dp, next);
		applied++;
	}
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	struct config *cfg;
	struct k8s_opts ko = {0};
	struct discovery_stats st;
	char err[1024];
	int n_services, n_eps, n_events, ctl_port, *ids;
	uint64_t t0, *lat;
	long rss;

	if (argc != 7) {
		fprintf(stderr, "usage: bench_discovery CONFIG SERVICES ENDPOINTS_PER_SERVICE "
				"EVENTS CONTROL_PORT API_URL\n");
		return 2;
	}
	n_services = atoi(argv[2]);
	n_eps = atoi(argv[3]);
	n_events = atoi(argv[4]);
	ctl_port = atoi(argv[5]);
	log_set_level(LOG_LEVEL_WARN);
	log_route_libbpf();
	if (config_load(argv[1], &cfg, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	snprintf(ko.api_server, sizeof(ko.api_server), "%s", argv[6]);
	snprintf(ko.ca_file, sizeof(ko.ca_file), "%s", cfg->k8s_ca_file);
	snprintf(ko.token_file, sizeof(ko.token_file), "%s", cfg->k8s_token_file);
	ko.backoff_max_ms = 1000;
	if (datapath_open(cfg, false, &b.dp))
		return 1;

	/* 1. The first full sync. */
	t0 = now_us();
	if (discovery_start(cfg, &ko, &b.d))
		return 1;
	while (!(discovery_synced(b.d) && b.live && b.live->n_services >= n_services)) {
		if (!step(&b, 1000) && now_us() - t0 > BENCH_PHASE_TIMEOUT_MS * 1000ull) {
			fprintf(stderr, "bench: no full sync after %d s\n",
				BENCH_PHASE_TIMEOUT_MS / 1000);
			return 1;
		}
	}
	uint64_t sync_us = now_us() - t0;
	int first_builds = b.builds;
	uint64_t first_build_us = b.build_us, first_apply_us = b.apply_us;

	rss = rss_kib();
	discovery_get_stats(b.d, &st);

	/* 2. Event -> map applied, one at a time. */
	lat = calloc((size_t)n_events, sizeof(*lat));
	ids = calloc((size_t)n_events, sizeof(*ids));
	b.build_us = b.apply_us = 0;
	b.builds = 0;
	for (int i = 0; i < n_events; i++) {
		char body[1024], ip[32];
		int k = rand() % n_services, id;
		struct shoal_addr a;

		snprintf(ip, sizeof(ip), "10.250.%d.%d", (i / 250) % 250, i % 250 + 1);
		addr_parse(ip, &a);
		snprintf(
		    body, sizeof(body),
		    "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"EndpointSlice\",\"apiVersion\":"
		    "\"discovery.k8s.io/v1\",\"metadata\":{\"name\":\"svc-%d-1\",\"namespace\":"
		    "\"bench\",\"labels\":{\"kubernetes.io/service-name\":\"svc-%d\"}},"
		    "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"%s\"],"
		    "\"nodeName\":\"node-1\",\"zone\":\"zone-a\"}],\"ports\":[{\"name\":\"http\","
		    "\"port\":8080}]}}",
		    k, k, ip);
		id = find_svc(b.live, k);
		t0 = now_us();
		if (control(ctl_port, "apply", body)) {
			fprintf(stderr, "bench: control apply failed\n");
			return 1;
		}
		while (!(id >= 0 && has_ep(b.live->services[id], &a))) {
			if (!step(&b, 5000)) {
				fprintf(stderr, "bench: event %d not applied within 5 s\n", i);
				return 1;
			}
		}
		lat[i] = now_us() - t0;
		ids[i] = id;
	}
	qsort(lat, (size_t)n_events, sizeof(*lat), cmp_u64);
	uint64_t ev_build = b.builds ? b.build_us / (uint64_t)b.builds : 0;
	uint64_t ev_apply = b.builds ? b.apply_us / (uint64_t)b.builds : 0;

	/* 3. A full relist: history gone, every watch expired. */
	struct discovery_stats before;

	discovery_get_stats(b.d, &before);
	t0 = now_us();
	if (control(ctl_port, "compact", NULL) || control(ctl_port, "expire", NULL))
		return 1;
	for (;;) {
		discovery_get_stats(b.d, &st);
		if (st.k8s_lists >= before.k8s_lists + 2 && st.synced)
			break;
		step(&b, 100);
		if (now_us() - t0 > BENCH_PHASE_TIMEOUT_MS * 1000ull) {
			fprintf(stderr, "bench: no relist\n");
			return 1;
		}
	}
	while (step(&b, 50)) /* the rebuild that follows the relist */
		;
	uint64_t relist_us = now_us() - t0;

	/* 4. Proxy latency, idle and under an update stream. */
	struct proxy_opts po = {.endpoint_sockaddr = probe_ep};
	struct proxy *px = NULL;
	struct config *pcfg;
	pthread_t echo_t, probe_t;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	double idle50, idle99, up50, up99;
	size_t idle_n, up_n;
	int sent = 0, applied = 0, id0 = find_svc(b.live, 0);

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 128) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) || id0 < 0)
		return 1;
	echo_port = ntohs(sin.sin_port);
	pthread_create(&echo_t, NULL, echo_main, (void *)(intptr_t)lfd);
	proxy_port = cfg->proxy_port;
	probe_orig.ip = b.live->services[id0]->vips[0];
	probe_orig.port = htons(b.live->services[id0]->ports[0].port);
	probe_orig.svc_id = b.live->services[id0]->id;
	if (config_copy(b.live, b.live->n_services, &pcfg) ||
	    proxy_start_opts(pcfg, probe_orig_dst, NULL, NULL, &po, &px, err, sizeof(err))) {
		fprintf(stderr, "bench: cannot start the proxy: %s\n", err);
		return 1;
	}
	samples[0] = calloc(BENCH_MAX_SAMPLES, sizeof(uint64_t));
	samples[1] = calloc(BENCH_MAX_SAMPLES, sizeof(uint64_t));
	atomic_store(&probe_run, true);
	pthread_create(&probe_t, NULL, probe_main, NULL);
	sleep(BENCH_IDLE_S);
	atomic_store(&probe_phase_b, true);
	t0 = now_us();
	for (int tick = 0; now_us() - t0 < BENCH_STREAM_S * 1000000ull; tick++) {
		char body[16384];
		size_t off = 0;

		off += (size_t)snprintf(body + off, sizeof(body) - off, "[");
		for (int j = 0; j < BENCH_UPDATE_BATCH; j++, sent++) {
			int k = 1 + rand() % (n_services - 1); /* never svc-0: the probe's */

			off += (size_t)snprintf(
			    body + off, sizeof(body) - off,
			    "%s{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"EndpointSlice\","
			    "\"metadata\":{\"name\":\"svc-%d-1\",\"namespace\":\"bench\","
			    "\"labels\":"
			    "{\"kubernetes.io/service-name\":\"svc-%d\"}},\"addressType\":\"IPv4\","
			    "\"endpoints\":[{\"addresses\":[\"10.251.%d.%d\"]}],\"ports\":[{"
			    "\"name\":"
			    "\"http\",\"port\":8080}]}}",
			    j ? "," : "", k, k, (sent / 250) % 250, sent % 250 + 1);
		}
		snprintf(body + off, sizeof(body) - off, "]");
		if (control(ctl_port, "apply", body))
			return 1;
		/* Apply what is ready, until the next batch is due. */
		while (now_us() - t0 <
		       (uint64_t)(tick + 1) * 1000000ull * BENCH_UPDATE_BATCH / BENCH_UPDATES_PER_S)
			applied += drain_configs(&b, px, 1);
	}
	atomic_store(&probe_run, false);
	pthread_join(probe_t, NULL);
	percentiles(0, &idle50, &idle99, &idle_n);
	percentiles(1, &up50, &up99, &up_n);
	proxy_stop(px);
	config_free(pcfg);
	shutdown(lfd, SHUT_RDWR);
	close(lfd);
	pthread_join(echo_t, NULL);

	printf("\n| discovery at scale (stand-in API server over TLS, loopback) | value |\n");
	printf("|---|---|\n");
	printf("| services / endpoints in the model | %d / %d |\n", n_services, n_services * n_eps);
	printf("| services / endpoints published (after the events) | %llu / %llu |\n",
	       (unsigned long long)before.services, (unsigned long long)before.endpoints);
	printf("| first full sync (list both kinds, build, maps written) | %.2f s |\n",
	       sync_us / 1e6);
	printf("| of which: %d config builds / map updates | %.1f ms / %.1f ms avg |\n",
	       first_builds, first_builds ? first_build_us / 1e3 / first_builds : 0,
	       first_builds ? first_apply_us / 1e3 / first_builds : 0);
	printf("| agent resident memory after sync | %.1f MiB |\n", rss / 1024.0);
	printf("| event -> map applied, p50 / p99 (%d events, one at a time) | %.2f ms / %.2f ms "
	       "|\n",
	       n_events, lat[n_events / 2] / 1e3, lat[(n_events * 99) / 100] / 1e3);
	printf("| per event: config build / map update | %.2f ms / %.2f ms |\n", ev_build / 1e3,
	       ev_apply / 1e3);
	printf("| full relist (410 -> both kinds listed, maps written) | %.2f s |\n",
	       relist_us / 1e6);
	printf("| agent resident memory at the end | %.1f MiB |\n", rss_kib() / 1024.0);
	printf("| proxied request p50 / p99, idle (%zu requests) | %.3f ms / %.3f ms |\n", idle_n,
	       idle50, idle99);
	printf("| proxied request p50 / p99, %d endpoint updates/s streaming in (%zu requests; "
	       "%d updates sent, %d configs applied in %d s) | %.3f ms / %.3f ms |\n",
	       BENCH_UPDATES_PER_S, up_n, sent, applied, BENCH_STREAM_S, up50, up99);
	printf("| proxy_update (snapshot + endpoint-state sync), avg | %.2f ms |\n",
	       proxy_updates ? proxy_update_us / 1e3 / proxy_updates : 0);

	discovery_stop(b.d);
	config_free(b.live);
	datapath_close(b.dp);
	datapath_uninstall(cfg->pin_root);
	config_free(cfg);
	free(lat);
	free(ids);
	free(samples[0]);
	free(samples[1]);
	return 0;
}
