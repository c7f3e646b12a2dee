// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench-snapshots: what live config snapshots cost (docs/discovery.md,
 * "Snapshots"). Driven by `scripts/bench-discovery --snapshots`. The real
 * proxy (2 workers), started without services as in Kubernetes mode,
 * gets SERVICES services in its first update; CONNS long-lived keep-alive
 * HTTP connections, spread over the services, each send a request about
 * every half second to a local backend; meanwhile RATE config changes
 * per second, each a new config (config_copy: the services shared) with
 * one service's endpoint moved (that service copied first, as discovery
 * publishes a changed service), are applied with proxy_update for
 * SECONDS seconds. Prints the resident memory as it goes (and malloc's bytes in
 * use, to tell what is kept from what malloc keeps) and its growth from
 * the first change to the end; exits 1 when the growth passes LIMIT MiB
 * or a request failed.
 *
 *   bench_snapshots [SERVICES [CONNS [RATE [SECONDS [LIMIT_MIB]]]]]
 *
 * Defaults: the 10 000 services, 1000 connections, 100 changes/s
 * for 60 s, 20 MiB. Needs root (the proxy's sockets carry SO_MARK); exits
 * 77 without it. The suite runs a 10 s version with 200 connections and
 * a bound of 12 MiB (test snapshots-memory): about 3 MiB grow with
 * shared services, 35 MiB and more with full copies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "config/config.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#include "bench_util.h"

/* Endpoints per service: enough that a copy is not all names. */
#define BENCH_EPS_PER_SVC 4
/* Pause between two requests of the client thread: 1000 connections
 * then each see a request about every half second. */
#define BENCH_REQ_GAP_US 300
#define BENCH_IO_TIMEOUT_MS 5000

static const char bench_yaml[] = "node: {address_v4: 127.0.0.1, proxy_port: 1}\n"
				 "proxy: {workers: 2}\n"
				 "services: []\n";

static uint16_t backend_port;
static int n_services;
static atomic_bool run = true;
static atomic_ullong requests, failures;

static void svc_vip(int k, struct shoal_addr *a)
{
	char s[32];

	snprintf(s, sizeof(s), "10.%d.%d.%d", 96 + k / 65536, (k / 256) % 256, k % 256);
	addr_parse(s, a);
}

/* Service k of a client connection, by its source port. */
static int bench_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
			  struct shoal_orig_dst *orig)
{
	int k = ntohs(((const struct sockaddr_in *)peer)->sin_port) % n_services;

	(void)ctx, (void)local;
	memset(orig, 0, sizeof(*orig));
	svc_vip(k, &orig->ip);
	orig->port = htons(80);
	orig->svc_id = (uint32_t)k;
	return 0;
}

/* Every endpoint is the local backend. */
static socklen_t bench_ep(const struct shoal_addr *ep, uint16_t port_be,
			  struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;

	(void)ep, (void)port_be;
	memset(out, 0, sizeof(*out));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(backend_port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*sin);
}

/*
 * The backend: one thread, epoll, one 200 per request head (a read holds
 * whole heads here: one request at a time per connection). One thread,
 * not one per connection: the proxy's pool grows to an upstream
 * connection per endpoint, and as many thread stacks in this process
 * would be counted in the growth that is measured here.
 */
static void *backend_main(void *arg)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct epoll_event ev = {.events = EPOLLIN}, evs[64];
	int lfd = (int)(intptr_t)arg, ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[8192];

	ev.data.fd = lfd;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
		return NULL;
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t got;

			if (fd == lfd) {
				fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				ev.data.fd = fd;
				if (fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
					close(fd);
				continue;
			}
			got = read(fd, buf, sizeof(buf) - 1);
			if (got <= 0) {
				close(fd); /* leaves the epoll set with it */
				continue;
			}
			buf[got] = '\0';
			for (char *p = buf; (p = strstr(p, "\r\n\r\n")); p += 4)
				if (write(fd, ok, sizeof(ok) - 1) != (ssize_t)sizeof(ok) - 1)
					break;
		}
	}
	return NULL;
}

static int dial(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = BENCH_IO_TIMEOUT_MS / 1000};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One keep-alive request on fd; false when it failed. */
static bool one_request(int fd)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
	char buf[512];
	size_t got = 0;

	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		return false;
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			return false;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\nok"))
			return !strncmp(buf, "HTTP/1.1 200", 12);
	}
	return false;
}

struct clients {
	int *fds;
	int n;
};

/* Round-robin requests over every connection until run drops. */
static void *client_main(void *arg)
{
	struct clients *cl = arg;

	while (atomic_load(&run)) {
		for (int i = 0; i < cl->n && atomic_load(&run); i++) {
			if (cl->fds[i] < 0)
				continue;
			if (one_request(cl->fds[i])) {
				atomic_fetch_add(&requests, 1);
			} else {
				atomic_fetch_add(&failures, 1);
				close(cl->fds[i]);
				cl->fds[i] = -1;
			}
			usleep(BENCH_REQ_GAP_US);
		}
	}
	return NULL;
}

/* base with n services of BENCH_EPS_PER_SVC endpoints each, on the heap. */
static struct config *bench_config(const struct config *base, int n, uint16_t proxy_port)
{
	struct config *cfg;

	if (config_copy(base, n, &cfg))
		return NULL;
	cfg->proxy_port = proxy_port;
	for (int k = 0; k < n; k++) {
		struct config_service *s = cfg->services[k];

		snprintf(s->name, sizeof(s->name), "svc-%d", k);
		snprintf(s->namespace, sizeof(s->namespace), "bench");
		s->id = (uint32_t)k;
		svc_vip(k, &s->vips[0]);
		s->n_vips = 1;
		s->ports[0].port = 80;
		s->ports[0].target_port = 8080;
		s->ports[0].protocol = CONFIG_PROTO_HTTP;
		s->n_ports = 1;
		config_resilience_default(&s->resilience);
		s->endpoints = calloc(BENCH_EPS_PER_SVC, sizeof(*s->endpoints));
		if (!s->endpoints) {
			config_free(cfg);
			return NULL;
		}
		for (int e = 0; e < BENCH_EPS_PER_SVC; e++) {
			char a[32];

			snprintf(a, sizeof(a), "10.%d.%d.%d", 1 + e, (k / 256) % 256, k % 256);
			addr_parse(a, &s->endpoints[e].addr);
		}
		s->n_endpoints = BENCH_EPS_PER_SVC;
	}
	cfg->n_services = n;
	return cfg;
}

/* Bytes malloc has handed out and not had back: what the proxy keeps,
 * without the free memory malloc holds on to (RSS counts both). */
static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sin, sizeof(sin)) &&
	    !getsockname(fd, (struct sockaddr *)&sin, &len))
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

int main(int argc, char **argv)
{
	int conns = argc > 2 ? atoi(argv[2]) : 1000;
	int rate = argc > 3 ? atoi(argv[3]) : 100;
	int seconds = argc > 4 ? atoi(argv[4]) : 60;
	double limit_mib = argc > 5 ? atof(argv[5]) : 20;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct proxy_opts po = {.endpoint_sockaddr = bench_ep};
	struct config *base = NULL, *start, *last;
	struct clients cl = {0};
	socklen_t slen = sizeof(sin);
	uint64_t t0, next_change, next_print, applied = 0, update_us = 0;
	long rss0, rss_start, rss_max = 0, rss_end;
	size_t heap_start;
	pthread_t backend_t, client_t;
	struct proxy *px = NULL;
	char err[512] = "";
	int lfd, port, ret = 0;

	if (geteuid() != 0) {
		printf("bench-snapshots: skipped: the proxy's sockets need SO_MARK (root)\n");
		return 77;
	}
	n_services = argc > 1 ? atoi(argv[1]) : 10000;
	if (n_services <= 0 || conns <= 0 || rate <= 0 || seconds <= 0) {
		fprintf(stderr, "usage: %s [SERVICES [CONNS [RATE [SECONDS [LIMIT_MIB]]]]]\n",
			argv[0]);
		return 2;
	}
	struct rlimit rl;

	log_set_level(LOG_LEVEL_WARN);
	/* Four fds per connection (client, proxy side, upstream, backend). */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 1024) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen)) {
		perror("bench: backend listener");
		return 1;
	}
	backend_port = ntohs(sin.sin_port);
	pthread_create(&backend_t, NULL, backend_main, (void *)(intptr_t)lfd);

	port = free_port();
	if (port < 0 ||
	    config_parse("bench", bench_yaml, sizeof(bench_yaml) - 1, &base, err, sizeof(err))) {
		fprintf(stderr, "bench: base config: %s\n", err);
		return 1;
	}
	rss0 = rss_kib();
	/*
	 * As shoald in Kubernetes mode: the proxy starts with the node's
	 * config (no services) and gets every service from discovery's
	 * configs, which it owns. (A start-up config with the services would
	 * keep each service it started with for the proxy's life: a second
	 * copy of every service changed since.)
	 */
	if (config_copy(base, 0, &start)) {
		fprintf(stderr, "bench: out of memory copying the base config\n");
		return 1;
	}
	start->proxy_port = (uint16_t)port;
	last = bench_config(base, n_services, (uint16_t)port);
	if (!last ||
	    proxy_start_opts(start, bench_orig_dst, NULL, NULL, &po, &px, err, sizeof(err)) ||
	    proxy_update(px, last)) {
		fprintf(stderr, "bench: cannot start the proxy: %s\n", err);
		return 1;
	}
	printf("| services | %d (x %d endpoints) |\n", n_services, BENCH_EPS_PER_SVC);
	printf("| resident memory, the config and the proxy started | %.1f MiB (+%.1f) |\n",
	       rss_kib() / 1024.0, (rss_kib() - rss0) / 1024.0);

	cl.fds = calloc((size_t)conns, sizeof(int));
	cl.n = conns;
	for (int i = 0; i < conns; i++) {
		cl.fds[i] = dial((uint16_t)port);
		if (cl.fds[i] < 0 || !one_request(cl.fds[i])) {
			fprintf(stderr, "bench: connection %d: cannot reach the proxy: %s\n", i,
				strerror(errno));
			return 1;
		}
	}
	pthread_create(&client_t, NULL, client_main, &cl);
	sleep(1);
	rss_start = rss_kib();
	heap_start = heap_in_use();
	printf("| resident memory, %d keep-alive connections open | %.1f MiB |\n", conns,
	       rss_start / 1024.0);

	t0 = now_us();
	next_change = t0;
	next_print = t0 + 10000000;
	while (now_us() - t0 < (uint64_t)seconds * 1000000) {
		struct config *next;
		uint64_t u0;
		int k = (int)(applied % (uint64_t)n_services);

		if (now_us() < next_change) {
			usleep((useconds_t)(next_change - now_us()));
			continue;
		}
		next_change += 1000000 / (uint64_t)rate;
		/* What discovery hands over: a whole new config, one endpoint moved. */
		u0 = now_us();
		if (config_copy(last, last->n_services, &next)) {
			fprintf(stderr, "bench: out of memory copying the config\n");
			return 1;
		}
		if (!config_service_mut(next, k)) {
			fprintf(stderr, "bench: out of memory copying service %d\n", k);
			return 1;
		}
		next->services[k]->endpoints[0].addr.ip6[3] ^= htonl(0x00010000);
		if (proxy_update(px, next)) {
			fprintf(stderr, "bench: proxy_update refused a config\n");
			config_free(next);
			return 1;
		}
		/* The proxy keeps it while it is the newest: until our next call. */
		last = next;
		update_us += now_us() - u0;
		applied++;
		if (rss_kib() > rss_max)
			rss_max = rss_kib();
		if (now_us() >= next_print) {
			printf("| resident memory after %2llu s of changes | %.1f MiB (+%.1f; heap "
			       "in use +%.1f) |\n",
			       (unsigned long long)((now_us() - t0) / 1000000), rss_kib() / 1024.0,
			       (rss_kib() - rss_start) / 1024.0,
			       ((double)heap_in_use() - (double)heap_start) / (1 << 20));
			fflush(stdout);
			next_print += 10000000;
		}
	}
	rss_end = rss_kib();
	atomic_store(&run, false);
	pthread_join(client_t, NULL);
	printf("| config changes applied | %llu in %d s (%.0f/s; copy + proxy_update %.2f ms "
	       "each) |\n",
	       (unsigned long long)applied, seconds, applied / (double)seconds,
	       applied ? update_us / 1e3 / applied : 0);
	printf("| requests on the keep-alive connections | %llu (%llu failed) |\n",
	       (unsigned long long)atomic_load(&requests),
	       (unsigned long long)atomic_load(&failures));
	printf("| resident memory growth, end / peak (limit %.0f MiB) | %.1f / %.1f MiB |\n",
	       limit_mib, (rss_end - rss_start) / 1024.0, (rss_max - rss_start) / 1024.0);
	/* Limit 0: report only (an ASan build, whose quarantine holds freed
	 * memory on purpose, so RSS says nothing of what the proxy keeps). */
	if ((limit_mib > 0 && (rss_max - rss_start) / 1024.0 > limit_mib) || atomic_load(&failures))
		ret = 1;
	for (int i = 0; i < conns; i++)
		if (cl.fds[i] >= 0)
			close(cl.fds[i]);
	proxy_stop(px);
	config_free(start);
	config_free(base);
	free(cl.fds);
	return ret;
}
