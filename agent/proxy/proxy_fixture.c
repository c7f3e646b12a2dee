// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The opaque proxy tests' fixture (proxy_fixture.h). */
#include "proxy/proxy_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "common/addr.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"
#include "proxy/timer.h"
#include "recording/http_metrics.h"
#include "recording/series_ids.h"
#include "recording/trace.h"

struct config cfg;
struct config_service svc;
static struct config_service *svc_list[1] = {&svc}; /* cfg.services */
struct config_endpoint eps[MAX_EPS];
struct test_dp dp;
struct proxy *px;
struct backend backends[MAX_BACKENDS];
int n_backends;
int spare_fds[8];
int n_spare_fds;
atomic_int sockets_to_fail; /* upstream socket() calls still to fail */
atomic_int fail_errno;
uint16_t ep_port[MAX_EPS + 1]; /* 192.0.2.N -> 127.0.0.1:ep_port[N] */
const char *test_src_ident;

/* The src_ident seam: every client is the caller test_src_ident names. */
static const char *fixture_src_ident(const struct shoal_addr *addr)
{
	(void)addr;
	return test_src_ident;
}

uint16_t refused_port(void)
{
	int fd = test_bound_socket(-1);

	spare_fds[n_spare_fds++] = fd;
	return test_bound_port(fd);
}

uint16_t blackhole_port(void)
{
	int lfd = test_bound_socket(0);
	uint16_t port = test_bound_port(lfd);
	struct sockaddr_in sin = test_loopback(port);
	int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	spare_fds[n_spare_fds++] = lfd;
	cr_assert_eq(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	spare_fds[n_spare_fds++] = cfd;
	return port;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got ? (ssize_t)got : n;
		got += n;
	}
	return got;
}

void write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		done += n;
	}
}

static void backend_serve(struct backend *b, int fd)
{
	char buf[65536];
	ssize_t n;

	switch (b->mode) {
	case BACKEND_ECHO:
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (send(fd, buf, n, MSG_NOSIGNAL) != n)
				return;
		shutdown(fd, SHUT_WR);
		return;
	case BACKEND_PINGPONG: {
		char req[8];
		ssize_t got = read_full(fd, req, 4);

		/* The reply only goes out after the client's FIN came through. */
		if (got == 4 && memcmp(req, "ping", 4) == 0 && read(fd, buf, 1) == 0)
			atomic_store(&b->saw_eof_before_reply, true);
		send(fd, "pong", 4, MSG_NOSIGNAL);
		return;
	}
	case BACKEND_ID:
		send(fd, &b->id, 1, MSG_NOSIGNAL);
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		return;
	case BACKEND_RESET: {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		read(fd, buf, 1);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		return;
	}
	}
}

static void *backend_conn_main(void *arg)
{
	struct backend_conn *bc = arg;

	backend_serve(bc->b, bc->fd);
	close(bc->fd);
	return NULL;
}

static void *backend_main(void *arg)
{
	struct backend *b = arg;

	for (;;) {
		int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* teardown shut the listener down */
		}
		atomic_fetch_add(&b->accepted, 1);
		if (b->concurrent && b->n_conns < MAX_BACKEND_CONNS) {
			struct backend_conn *bc = &b->conns[b->n_conns];

			bc->b = b;
			bc->fd = fd;
			if (pthread_create(&bc->thread, NULL, backend_conn_main, bc) == 0) {
				b->n_conns++;
				continue;
			}
		}
		backend_serve(b, fd);
		close(fd);
	}
}

uint16_t backend_start(enum backend_mode mode, char id)
{
	struct backend *b = &backends[n_backends++];

	b->mode = mode;
	b->id = id;
	b->lfd = test_bound_socket(64);
	b->port = test_bound_port(b->lfd);
	cr_assert_eq(pthread_create(&b->thread, NULL, backend_main, b), 0);
	b->running = true;
	return b->port;
}

int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		  struct shoal_orig_dst *orig)
{
	struct test_dp *d = ctx;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;

	(void)local;
	atomic_fetch_add(&d->calls, 1);
	/* 127.0.0.1 is the application; 127.0.0.2 another one (budgets). */
	if (d->enoent || peer->sa_family != AF_INET ||
	    (sin->sin_addr.s_addr != htonl(INADDR_LOOPBACK) &&
	     sin->sin_addr.s_addr != htonl(INADDR_LOOPBACK + 1)))
		return -ENOENT;
	*orig = d->orig;
	return 0;
}

socklen_t test_endpoint_sockaddr(const struct shoal_addr *ep, uint16_t port_be,
				 struct sockaddr_storage *out)
{
	struct shoal_addr net;
	uint32_t n;

	addr_parse("192.0.2.0", &net);
	n = ntohl(ep->ip6[3]) - ntohl(net.ip6[3]);
	if (addr_is_v4(ep) && (ntohl(ep->ip6[3]) & ~0xffu) == ntohl(net.ip6[3]) && n >= 1 &&
	    n <= MAX_EPS) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		memset(out, 0, sizeof(*out));
		*sin = test_loopback(ep_port[n]);
		return sizeof(*sin);
	}
	return addr_to_sockaddr(ep, port_be, out);
}

void set_mapped_endpoints(const uint16_t *ports, int n)
{
	char ip[32];

	for (int i = 0; i < n; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
		cr_assert_eq(addr_parse(ip, &eps[i].addr), 0);
		ep_port[i + 1] = ports[i];
	}
	svc.n_endpoints = n;
}

void set_loopback_endpoint(uint16_t port)
{
	addr_parse("127.0.0.1", &eps[0].addr);
	svc.ports[0].target_port = port;
	svc.n_endpoints = 1;
}

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("SO_MARK needs CAP_NET_ADMIN; run the proxy tests as root");
	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	memset(eps, 0, sizeof(eps));
	memset(backends, 0, sizeof(backends));
	memset(&dp, 0, sizeof(dp));
	n_backends = 0;
	n_spare_fds = 0;
	px = NULL;
	test_src_ident = NULL;
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);

	addr_parse("127.0.0.1", &cfg.proxy_v4);
	cfg.proxy_port = test_free_port();
	cfg.socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg.workers = 2;
	cfg.connect_timeout_ms = 1000;
	cfg.connect_deadline_ms = 3000;
	cfg.buffer_bytes = 16384;
	cfg.max_connections = 1024;

	strcpy(svc.name, "web");
	strcpy(svc.namespace, "default");
	addr_parse(VIP, &svc.vips[0]);
	svc.n_vips = 1;
	svc.ports[0].port = SVC_PORT;
	svc.ports[0].target_port = 8080;
	svc.n_ports = 1;
	svc.endpoints = eps;
	cfg.services = svc_list;
	cfg.n_services = 1;

	dp.orig.ip = svc.vips[0];
	dp.orig.port = htons(SVC_PORT);
	dp.orig.svc_id = 0;
}

/* Stop everything the test started; safe to call twice. */
static void teardown(void)
{
	proxy_stop(px);
	px = NULL;
	for (int i = 0; i < n_backends; i++) {
		struct backend *b = &backends[i];

		/* Wakes the blocked accept() with an error. */
		shutdown(b->lfd, SHUT_RDWR);
		if (b->running)
			pthread_join(b->thread, NULL);
		/* The proxy is gone, so every connection has ended. */
		for (int k = 0; k < b->n_conns; k++)
			pthread_join(b->conns[k].thread, NULL);
		close(b->lfd);
	}
	n_backends = 0;
	for (int i = 0; i < n_spare_fds; i++)
		close(spare_fds[i]);
	n_spare_fds = 0;
}

void end_test(void)
{
	teardown();
#if defined(__SANITIZE_ADDRESS__)
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks: see the report above");
#endif
}

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 30);

int failing_socket(int domain, int type, int protocol)
{
	if (atomic_fetch_sub(&sockets_to_fail, 1) > 0) {
		errno = atomic_load(&fail_errno);
		return -1;
	}
	return socket(domain, type, protocol);
}

void start_proxy(void)
{
	struct proxy_opts opts = {.endpoint_sockaddr = test_endpoint_sockaddr,
				  .open_socket = failing_socket,
				  .connect_error = test_failing_connect_error,
				  .src_ident = fixture_src_ident};
	char err[256] = "";
	int ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, &dp, &opts, &px, err,
				   sizeof(err));

	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
}

int client_connect(void)
{
	return test_client_connect(cfg.proxy_port, IO_TIMEOUT_MS);
}

struct proxy_stats stats_now(void)
{
	struct proxy_stats s;

	proxy_stats(px, &s);
	return s;
}

void expect_reset(int fd)
{
	char c;
	ssize_t n = read(fd, &c, 1);

	cr_assert_eq(n, -1, "read returned %zd, want a reset", n);
	cr_assert_eq(errno, ECONNRESET, "read: %s, want ECONNRESET", strerror(errno));
}
