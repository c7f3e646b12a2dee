// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The proxy end to end on 127.0.0.1: a hand-built config, an orig_dst
 * stand-in for the datapath, real backends on loopback ports.
 *
 * Config endpoints carry no port, so tests that need several distinct
 * endpoints name them 192.0.2.N (TEST-NET-1, never dialled) and map
 * them onto 127.0.0.1:ep_port[N] through the proxy's endpoint seam.
 */
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

#define MAX_BACKENDS 4
#define MAX_EPS 4
#define VIP "10.96.0.10"
#define SVC_PORT 80
/* Long enough for a slow sanitizer build, short enough to catch a hang. */
#define IO_TIMEOUT_MS 5000
/* Connections a concurrent backend serves at once, one thread each. */
#define MAX_BACKEND_CONNS 64

enum backend_mode {
	BACKEND_ECHO,	  /* echo until EOF, then close */
	BACKEND_PINGPONG, /* read "ping" up to EOF, answer "pong", close */
	BACKEND_ID,	  /* send the id byte, then wait for EOF */
	BACKEND_RESET,	  /* read one byte, then close with RST */
};

struct backend;

/* One connection of a concurrent backend, served by its own thread. */
struct backend_conn {
	struct backend *b;
	int fd;
	pthread_t thread;
};

struct backend {
	int lfd;
	uint16_t port;
	pthread_t thread;
	bool running;
	enum backend_mode mode;
	char id;
	atomic_int accepted;
	atomic_bool saw_eof_before_reply;
	bool concurrent; /* a thread per connection, else one at a time */
	struct backend_conn conns[MAX_BACKEND_CONNS];
	int n_conns;
};

struct test_dp {
	bool enoent;
	struct shoal_orig_dst orig;
	atomic_int calls;
};

static struct config cfg;
static struct config_service svc;
static struct config_endpoint eps[MAX_EPS];
static struct test_dp dp;
static struct proxy *px;
static struct backend backends[MAX_BACKENDS];
static int n_backends;
static int spare_fds[8];
static int n_spare_fds;
static atomic_int sockets_to_fail; /* upstream socket() calls still to fail */
static atomic_int fail_errno;
static uint16_t ep_port[MAX_EPS + 1]; /* 192.0.2.N -> 127.0.0.1:ep_port[N] */

/* A port nobody listens on; it stays bound until teardown so nothing else
 * takes it, and every connect to it is refused. */
static uint16_t refused_port(void)
{
	int fd = test_bound_socket(-1);

	spare_fds[n_spare_fds++] = fd;
	return test_bound_port(fd);
}

/*
 * A port that never completes a handshake: a listener that never accepts,
 * its one-slot backlog already taken, so the kernel drops further SYNs.
 */
static uint16_t blackhole_port(void)
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

static ssize_t read_full(int fd, void *buf, size_t len)
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

static void write_full(int fd, const void *buf, size_t len)
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

/* Start a backend thread; returns its port. */
static uint16_t backend_start(enum backend_mode mode, char id)
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

static int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
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

static socklen_t test_endpoint_sockaddr(const struct shoal_addr *ep, uint16_t port_be,
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

/* Endpoints 192.0.2.1..n, mapped onto the given loopback ports. */
static void set_mapped_endpoints(const uint16_t *ports, int n)
{
	char ip[32];

	for (int i = 0; i < n; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
		cr_assert_eq(addr_parse(ip, &eps[i].addr), 0);
		ep_port[i + 1] = ports[i];
	}
	svc.n_endpoints = n;
}

/* One endpoint, 127.0.0.1:port, dialled for real (no seam). */
static void set_loopback_endpoint(uint16_t port)
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
	cfg.services = &svc;
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

/*
 * The last step of every test: tear down, then, under ASan, check that
 * the proxy freed everything. Criterion's test processes end without
 * LeakSanitizer's exit-time check, and a failure in .fini is not
 * reported, so the check runs here, in the test body.
 */
static void end_test(void)
{
	teardown();
#if defined(__SANITIZE_ADDRESS__)
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks: see the report above");
#endif
}

TestSuite(proxy, .init = setup, .fini = teardown, .timeout = 30);


/* The open_socket seam: fails while sockets_to_fail lasts. */
static int failing_socket(int domain, int type, int protocol)
{
	if (atomic_fetch_sub(&sockets_to_fail, 1) > 0) {
		errno = atomic_load(&fail_errno);
		return -1;
	}
	return socket(domain, type, protocol);
}

static void start_proxy(void)
{
	struct proxy_opts opts = {.endpoint_sockaddr = test_endpoint_sockaddr,
				  .open_socket = failing_socket,
				  .connect_error = test_failing_connect_error};
	char err[256] = "";
	int ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, &dp, &opts, &px, err, sizeof(err));

	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
}

/* A blocking client connected to the proxy, with I/O timeouts. */
static int client_connect(void)
{
	return test_client_connect(cfg.proxy_port, IO_TIMEOUT_MS);
}

static struct proxy_stats stats_now(void)
{
	struct proxy_stats s;

	proxy_stats(px, &s);
	return s;
}

/* Stats move on the workers' threads: poll until field reaches want. */
#define expect_stat(field, want)                                                                   \
	do {                                                                                       \
		uint64_t deadline_ = test_now_ms() + IO_TIMEOUT_MS;                                     \
		while (stats_now().field != (want) && test_now_ms() < deadline_)                        \
			usleep(1000);                                                              \
		cr_expect_eq(stats_now().field, (want), #field " is %llu, not %llu",               \
			     (unsigned long long)stats_now().field, (unsigned long long)(want));   \
	} while (0)

struct bulk_writer {
	int fd;
	const unsigned char *data;
	size_t len;
};

static void *bulk_write(void *arg)
{
	struct bulk_writer *bw = arg;

	write_full(bw->fd, bw->data, bw->len);
	shutdown(bw->fd, SHUT_WR);
	return NULL;
}

static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

Test(proxy, copies_8mib_both_ways_intact)
{
	enum { LEN = 8 << 20 };
	unsigned char *out = malloc(LEN), *in = malloc(LEN);
	uint64_t seed = 0x2545f4914f6cdd1dull;
	struct bulk_writer bw;
	pthread_t th;
	char tail;
	int fd;

	cr_assert(out && in);
	for (size_t i = 0; i < LEN; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		out[i] = (unsigned char)seed;
	}
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();

	fd = client_connect();
	bw = (struct bulk_writer){.fd = fd, .data = out, .len = LEN};
	cr_assert_eq(pthread_create(&th, NULL, bulk_write, &bw), 0);
	cr_assert_eq(read_full(fd, in, LEN), LEN, "short echo: %s", strerror(errno));
	pthread_join(th, NULL);
	/* The echo's FIN comes after the data, once our own FIN reached it. */
	cr_assert_eq(read(fd, &tail, 1), 0);
	cr_assert_eq(fnv1a(in, LEN), fnv1a(out, LEN));
	cr_assert_eq(memcmp(in, out, LEN), 0);
	close(fd);
	free(out);
	free(in);
	expect_stat(active, 0);
	expect_stat(accepted, 1);
	end_test();
}

struct echo_client {
	unsigned char *out, *in;
	size_t len;
	bool ok;
};

/* One client of the concurrency test: echo len bytes, check them, EOF. */
static void *echo_client_main(void *arg)
{
	struct echo_client *ec = arg;
	struct bulk_writer bw;
	pthread_t th;
	char tail;
	int fd = client_connect();

	bw = (struct bulk_writer){.fd = fd, .data = ec->out, .len = ec->len};
	if (pthread_create(&th, NULL, bulk_write, &bw) != 0) {
		close(fd);
		return NULL;
	}
	ec->ok = read_full(fd, ec->in, ec->len) == (ssize_t)ec->len &&
		 memcmp(ec->in, ec->out, ec->len) == 0;
	pthread_join(th, NULL);
	ec->ok = ec->ok && read(fd, &tail, 1) == 0;
	close(fd);
	return NULL;
}

Test(proxy, many_concurrent_connections_stay_intact)
{
	enum { N = 32, LEN = 256 << 10 };
	static struct echo_client clients[N];
	pthread_t th[N];

	/* Small buffers: many turns per connection, and deferred ones. */
	cfg.buffer_bytes = 4096;
	backends[0].concurrent = true;
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();
	for (int i = 0; i < N; i++) {
		clients[i].len = LEN;
		clients[i].out = malloc(LEN);
		clients[i].in = malloc(LEN);
		cr_assert(clients[i].out && clients[i].in);
		for (size_t k = 0; k < LEN; k++)
			clients[i].out[k] = (unsigned char)(k * 31 + i);
		cr_assert_eq(pthread_create(&th[i], NULL, echo_client_main, &clients[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N; i++) {
		cr_expect(clients[i].ok, "client %d: echo broken", i);
		free(clients[i].out);
		free(clients[i].in);
	}
	expect_stat(accepted, N);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, idle_connections_hold_no_buffers)
{
	enum { N = 40 };
	int fds[N];
	char c;

	backends[0].concurrent = true;
	set_loopback_endpoint(backend_start(BACKEND_ECHO, 'E'));
	start_proxy();
	expect_stat(buffers, 0);
	for (int i = 0; i < N; i++) {
		fds[i] = client_connect();
		write_full(fds[i], "x", 1);
		cr_assert_eq(read_full(fds[i], &c, 1), 1, "connection %d: no echo", i);
	}
	expect_stat(active, N);
	/* Each carried a byte both ways, then went quiet: buffers went back. */
	expect_stat(buffers, 0);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	expect_stat(active, 0);
	expect_stat(buffers, 0);
	end_test();
}

Test(proxy, half_close_keeps_the_other_direction)
{
	char buf[8];
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_PINGPONG, 'P'));
	start_proxy();
	fd = client_connect();
	write_full(fd, "ping", 4);
	cr_assert_eq(shutdown(fd, SHUT_WR), 0);
	cr_assert_eq(read_full(fd, buf, 4), 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);
	cr_assert_eq(read(fd, buf, 1), 0, "want EOF after the reply");
	cr_assert(atomic_load(&backends[0].saw_eof_before_reply));
	close(fd);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, refused_endpoint_fails_over_to_the_next)
{
	uint16_t ports[2] = {refused_port(), backend_start(BACKEND_ID, 'B')};
	char id = 0;
	int fd;

	set_mapped_endpoints(ports, 2);
	start_proxy();
	/*
	 * P2C may try the refused endpoint first; its failure penalty then
	 * keeps it out of every later pick. Either way each connection is
	 * served, and the refused one costs at most one failed connect.
	 */
	for (int i = 0; i < 10; i++) {
		fd = client_connect();
		cr_assert_eq(read(fd, &id, 1), 1);
		cr_assert_eq(id, 'B');
		close(fd);
	}
	expect_stat(accepted, 10);
	cr_expect_leq(stats_now().connect_failures, 1, "connect_failures is %llu",
		      (unsigned long long)stats_now().connect_failures);
	expect_stat(gave_up, 0);
	end_test();
}

Test(proxy, connect_timeout_fails_over_to_the_next)
{
	uint16_t ports[2] = {blackhole_port(), backend_start(BACKEND_ID, 'B')};
	uint64_t t0, ms;
	char id = 0;
	int fd;

	cfg.connect_timeout_ms = 200;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1);
	ms = test_now_ms() - t0;
	cr_assert_eq(id, 'B');
	/* P2C picks the black hole first or not at all: then B at once. */
	if (stats_now().connect_failures)
		cr_assert_geq(ms, 150, "failed over after %llu ms, before the timeout",
			      (unsigned long long)ms);
	cr_assert_lt(ms, 2000, "failed over after %llu ms", (unsigned long long)ms);
	close(fd);
	cr_expect_leq(stats_now().connect_failures, 1);
	end_test();
}

/* The client must see a reset: read fails with ECONNRESET. */
static void expect_reset(int fd)
{
	char c;
	ssize_t n = read(fd, &c, 1);

	cr_assert_eq(n, -1, "read returned %zd, want a reset", n);
	cr_assert_eq(errno, ECONNRESET, "read: %s, want ECONNRESET", strerror(errno));
}

Test(proxy, all_endpoints_refused_resets_the_client_quickly)
{
	uint16_t ports[2] = {refused_port(), refused_port()};
	uint64_t t0, ms;
	int fd;

	set_mapped_endpoints(ports, 2);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	expect_reset(fd);
	ms = test_now_ms() - t0;
	cr_assert_lt(ms, 1000, "reset after %llu ms (deadline %u ms)", (unsigned long long)ms,
		     cfg.connect_deadline_ms);
	close(fd);
	expect_stat(connect_failures, 2);
	expect_stat(gave_up, 1);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, connect_deadline_bounds_all_attempts)
{
	uint16_t hole = blackhole_port();
	uint16_t ports[3] = {hole, hole, hole};
	uint64_t t0, ms;
	int fd;

	cfg.connect_timeout_ms = 1000;
	cfg.connect_deadline_ms = 300;
	set_mapped_endpoints(ports, 3);
	start_proxy();
	t0 = test_now_ms();
	fd = client_connect();
	expect_reset(fd);
	ms = test_now_ms() - t0;
	cr_assert_geq(ms, 250, "reset after %llu ms", (unsigned long long)ms);
	cr_assert_lt(ms, 900, "reset after %llu ms, deadline 300", (unsigned long long)ms);
	close(fd);
	expect_stat(gave_up, 1);
	expect_stat(connect_failures, 1);
	end_test();
}

Test(proxy, no_endpoints_resets_at_once)
{
	int fd;

	svc.n_endpoints = 0;
	start_proxy();
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(gave_up, 1);
	expect_stat(connect_failures, 0);
	end_test();
}

Test(proxy, not_redirected_is_closed)
{
	char c;
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'B'));
	dp.enoent = true;
	start_proxy();
	fd = client_connect();
	cr_assert_eq(read(fd, &c, 1), 0, "want EOF");
	close(fd);
	expect_stat(no_orig_dst, 1);
	cr_assert_eq(atomic_load(&dp.calls), 1);
	cr_assert_eq(atomic_load(&backends[0].accepted), 0);
	end_test();
}

Test(proxy, unknown_service_is_reset)
{
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'B'));
	dp.orig.port = htons(SVC_PORT + 1); /* svc 0 has no such port, nor anyone */
	start_proxy();
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(no_service, 1);
	cr_assert_eq(atomic_load(&backends[0].accepted), 0);
	end_test();
}

/*
 * Open connections count as pending in the balancer's cost (opaque TCP
 * balances on connect latency times open connections): 20 connections
 * held open spread over both healthy endpoints.
 */
Test(proxy, p2c_spreads_concurrent_connections)
{
	uint16_t ports[2] = {backend_start(BACKEND_ID, 'A'), backend_start(BACKEND_ID, 'B')};
	int fds[20], seen_a = 0, seen_b = 0;

	backends[0].concurrent = true;
	backends[1].concurrent = true;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	for (int i = 0; i < 20; i++) {
		char id = 0;

		fds[i] = client_connect();
		cr_assert_eq(read(fds[i], &id, 1), 1);
		seen_a += id == 'A';
		seen_b += id == 'B';
	}
	for (int i = 0; i < 20; i++)
		close(fds[i]);
	cr_expect_gt(seen_a, 2, "A served %d of 20", seen_a);
	cr_expect_gt(seen_b, 2, "B served %d of 20", seen_b);
	expect_stat(accepted, 20);
	end_test();
}

Test(proxy, backend_reset_reaches_the_client)
{
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_RESET, 'R'));
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	expect_reset(fd);
	close(fd);
	expect_stat(active, 0);
	end_test();
}

/*
 * At max_connections a new client is refused at once with a reset
 * (docs/proxy.md, "Budgets"), not left waiting unanswered in the accept
 * queue, and it is counted; once a connection closes, the next client
 * is served.
 */
Test(proxy, max_connections_resets_a_client_past_it_and_serves_one_after_a_close)
{
	char id;
	int a, b;

	cfg.workers = 1;
	cfg.max_connections = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	a = client_connect();
	cr_assert_eq(read(a, &id, 1), 1);
	b = client_connect();
	expect_reset(b);
	close(b);
	expect_stat(refused[PROXY_CAP_connections], 1);
	expect_stat(active, 1);
	close(a);
	expect_stat(active, 0);
	b = client_connect();
	cr_assert_eq(read(b, &id, 1), 1, "a connection was not served after the first closed");
	cr_assert_eq(id, 'A');
	close(b);
	expect_stat(refused[PROXY_CAP_connections], 1);
	expect_stat(refused[PROXY_CAP_client], 0);
	end_test();
}

/*
 * Out of fds, accept4 fails with EMFILE: that is no cap the worker can
 * answer (it has no fd to answer with), so it backs off and tries again
 * (WORKER_ACCEPT_RETRY_MS), refusing nobody; once fds are back, the
 * waiting client is served.
 */
Test(proxy, emfile_on_accept_backs_off_then_serves)
{
	static int fill[4096];
	struct rlimit old, rl;
	int n = 0, a, fd;
	char id;

	cfg.workers = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	rl = old;
	rl.rlim_cur = 1024;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (n < (int)(sizeof(fill) / sizeof(fill[0])) && (fd = dup(2)) >= 0)
		fill[n++] = fd;
	cr_assert_eq(errno, EMFILE, "filling the fd table: %s", strerror(errno));
	close(fill[--n]); /* the client's own socket */
	a = client_connect();
	usleep(300 * 1000); /* three back-off rounds */
	expect_stat(accepted, 0);
	while (n > 0)
		close(fill[--n]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_eq(read(a, &id, 1), 1, "the waiting client was not served once fds were back");
	cr_assert_eq(id, 'A');
	close(a);
	expect_stat(accepted, 1);
	for (int i = 0; i < PROXY_CAP__COUNT; i++)
		cr_expect_eq(stats_now().refused[i], 0, "refused at cap %s", proxy_cap_name(i));
	end_test();
}

Test(proxy, bind_conflict_is_reported)
{
	struct sockaddr_in sin = test_loopback(cfg.proxy_port);
	char err[256] = "", want[128];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ret;

	/* No SO_REUSEPORT: the proxy cannot share the port. */
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	spare_fds[n_spare_fds++] = fd;
	ret = proxy_start(&cfg, test_orig_dst, test_plain_tcp, &dp, &px, err, sizeof(err));
	cr_assert_eq(ret, -EADDRINUSE);
	snprintf(want, sizeof(want), "cannot bind 127.0.0.1:%u: %s", cfg.proxy_port,
		 strerror(EADDRINUSE));
	cr_assert_str_eq(err, want);
	px = NULL;
	end_test();
}

Test(proxy, stop_resets_open_connections)
{
	char id;
	int fd;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1);
	expect_stat(active, 1);
	proxy_stop(px);
	px = NULL;
	expect_reset(fd);
	close(fd);
	end_test();
}

Test(proxy, rejects_a_config_it_cannot_run)
{
	char err[256] = "";

	cfg.buffer_bytes = 0;
	cr_assert_eq(proxy_start(&cfg, test_orig_dst, test_plain_tcp, &dp, &px, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "buffer_bytes"), "message: %s", err);
	px = NULL;
	end_test();
}

/* ---- budgets (docs/proxy.md, "Budgets") ------------------------------- */

Test(proxy, an_opaque_client_past_its_connection_cap_is_reset_and_others_are_served)
{
	char id;
	int a, b, c, d;

	cfg.max_connections_per_client = 2;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	backends[0].concurrent = true;
	start_proxy();
	a = client_connect();
	b = client_connect();
	cr_assert_eq(read(a, &id, 1), 1);
	cr_assert_eq(read(b, &id, 1), 1);
	c = client_connect();
	expect_reset(c);
	close(c);
	expect_stat(refused[PROXY_CAP_client], 1);
	/* Another address is served; the capped one again after a close. */
	d = test_client_connect_from("127.0.0.2", cfg.proxy_port, IO_TIMEOUT_MS);
	cr_assert_eq(read(d, &id, 1), 1, "another client was not served");
	close(d);
	close(a);
	expect_stat(active, 1);
	c = client_connect();
	cr_assert_eq(read(c, &id, 1), 1, "not served after one of its connections closed");
	cr_assert_eq(id, 'A');
	close(c);
	close(b);
	expect_stat(refused[PROXY_CAP_client], 1);
	expect_stat(active, 0);
	end_test();
}

Test(proxy, an_opaque_connection_past_the_memory_budget_is_reset)
{
	char id;
	int fd;

	cfg.max_buffer_memory_mib = 1;
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	cr_assert(limits_mem_charge(&px->mem, 1u << 20));
	fd = client_connect();
	expect_reset(fd);
	close(fd);
	expect_stat(refused[PROXY_CAP_memory], 1);
	limits_mem_uncharge(&px->mem, 1u << 20);
	fd = client_connect();
	cr_assert_eq(read(fd, &id, 1), 1, "not served once memory was given back");
	close(fd);
	end_test();
}

/*
 * Connections while each of errs in turn is the proxy's own shortage,
 * from socket() or, late, from SO_ERROR once the non-blocking connect
 * ended (the connect_error seam): each client is reset at once, counted
 * as local_refused, and the balancer hears nothing: no failure against
 * either endpoint (one would eject it here), no failover (one socket
 * asked for), no retry from the budget. Once the shortage is over, both
 * endpoints serve.
 */
static void expect_local_errors_blame_no_endpoint(const int *errs, size_t n_errs, bool late)
{
	uint16_t ports[2] = {backend_start(BACKEND_ID, 'A'), backend_start(BACKEND_ID, 'B')};
	int sockets_left = late ? 0 : 1000; /* socket() calls to fail */
	struct proxy_service_stats ss;
	const struct es_svc_view *sv;
	uint64_t failed = 0, now;
	char id;
	int fd;

	config_resilience_default(&svc.resilience);
	svc.resilience.consecutive_failures = 1;
	svc.resilience.max_ejection_pct = 100;
	cfg.workers = 1;
	set_mapped_endpoints(ports, 2);
	start_proxy();
	for (size_t i = 0; i < n_errs; i++) {
		atomic_store(&fail_errno, errs[i]);
		atomic_store(&test_connect_errno, errs[i]);
		atomic_store(&sockets_to_fail, sockets_left);
		atomic_store(&test_connects_to_fail, late ? 1 : 0);
		fd = client_connect();
		expect_reset(fd);
		close(fd);
		cr_expect_eq(sockets_left - atomic_load(&sockets_to_fail), 1,
			     "%s: %d sockets tried, want 1 (no failover)", strerror(errs[i]),
			     sockets_left - atomic_load(&sockets_to_fail));
	}
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);
	expect_stat(local_refused, n_errs);
	expect_stat(active, 0);
	cr_expect_eq(stats_now().connect_failures, 0);
	sv = es_view_service(proxy_es_view(px), &cfg, &svc);
	cr_assert_not_null(sv);
	now = test_now_ms() * 1000000;
	es_service_read(sv, now, &ss);
	for (uint32_t i = 0; i < 2; i++) {
		struct proxy_endpoint_stats es;

		es_endpoint_read(sv, i, now, &es);
		failed += es.failed;
	}
	cr_expect_eq(failed, 0, "%llu failures recorded against the endpoints",
		     (unsigned long long)failed);
	cr_expect_eq(ss.ejected, 0, "%u endpoints ejected", ss.ejected);
	cr_expect_eq(ss.retries, 0, "%llu retries", (unsigned long long)ss.retries);
	cr_expect_eq(ss.retries_refused, 0);
	for (int i = 0; i < 6; i++) {
		fd = client_connect();
		cr_assert_eq(read(fd, &id, 1), 1, "connection %d after the shortage", i);
		cr_expect(id == 'A' || id == 'B');
		close(fd);
	}
	end_test();
}

/* Out of fds or buffers (EMFILE, ENFILE, ENOBUFS from socket()). */
Test(proxy, local_socket_errors_reset_the_client_and_never_blame_an_endpoint)
{
	static const int errs[] = {EMFILE, ENFILE, ENOBUFS};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), false);
}

/*
 * The same shortages reported late, by SO_ERROR once a non-blocking
 * connect ended (ENOBUFS, EADDRNOTAVAIL, ENOMEM): still the proxy's. The
 * code before charged the endpoint a failure (ejecting it here) and
 * failed over to the other one, which served the client.
 */
Test(proxy, local_errors_reported_by_so_error_reset_the_client_and_never_blame_an_endpoint)
{
	static const int errs[] = {ENOBUFS, EADDRNOTAVAIL, ENOMEM};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), true);
}

/*
 * A worker whose loop stops turning is reported (shoald then stops the
 * fail-open heartbeat), idle workers are not, and a worker that turns
 * again is no longer reported.
 */
Test(proxy, a_stalled_worker_is_reported_and_idle_ones_are_not)
{
	uint64_t ms = 0, t0, seen_ms = 0;
	int id = -1;

	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	usleep(300 * 1000); /* idle: both workers wait in epoll_wait */
	cr_assert_eq(proxy_stalled_worker(px, 100, &ms), -1, "an idle worker was reported");
	proxy_test_stall(px, 1, 1500);
	t0 = test_now_ms();
	while (test_now_ms() - t0 < 1400 && (id = proxy_stalled_worker(px, 300, &ms)) < 0)
		usleep(10 * 1000);
	seen_ms = test_now_ms() - t0;
	cr_assert_eq(id, 1, "the stalled worker was not reported (got %d)", id);
	cr_expect(seen_ms >= 250 && ms >= 300, "reported after %llu ms (stalled %llu ms)",
		  (unsigned long long)seen_ms, (unsigned long long)ms);
	/* The stall ends: reported no more. */
	while (test_now_ms() - t0 < 4000 && proxy_stalled_worker(px, 300, &ms) >= 0)
		usleep(10 * 1000);
	cr_expect_eq(proxy_stalled_worker(px, 300, &ms), -1, "still reported after the stall");
	end_test();
}

/*
 * An opaque connection that is copying does not pin the config of its
 * accept: once its worker takes a newer snapshot the connection holds
 * that one (refs: the proxy, the worker, the connection), and it keeps
 * its endpoint even though the new config no longer lists it.
 */
Test(proxy, a_copying_opaque_connection_moves_to_the_newest_snapshot_and_keeps_its_endpoint)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct config *next = NULL;
	unsigned int refs = 0;
	char c;
	int fd;

	cfg.workers = 1;
	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");
	/* Its only endpoint is replaced by one that refuses. */
	ep_port[2] = refused_port();
	cr_assert_eq(addr_parse("192.0.2.2", &eps[0].addr), 0);
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000)) {
		refs = atomic_load(&px->snap->refs);
		if (refs == 3)
			break;
	}
	cr_assert_eq(refs, 3, "the newest snapshot has %u references, not 3 (proxy, worker, "
		     "the opaque connection)", refs);
	write_full(fd, "y", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "the connection broke after the change");
	cr_assert_eq(c, 'y');
	close(fd);
	expect_stat(active, 0);
	end_test();
}

/* Pending requests of endpoint idx of the newest config's service 0. */
static uint32_t newest_pending(uint32_t idx)
{
	const struct config *c = px->snap->cfg;
	const struct es_svc_view *sv = es_view_service(px->snap->es_view, c, &c->services[0]);
	struct proxy_endpoint_stats st;

	cr_assert_not_null(sv);
	es_endpoint_read(sv, idx, timer_now_ns(), &st);
	return st.pending;
}

/*
 * A copying opaque connection counts in its endpoint's load for its whole
 * life; when it moves to a config that lists that endpoint at another
 * index, the load moves with it, and its close takes it off that one.
 */
Test(proxy, a_moved_opaque_connection_keeps_counting_on_its_endpoint)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct config *next = NULL;
	uint32_t pending = 0;
	char c;
	int fd;

	cfg.workers = 1;
	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");
	cr_assert_eq(newest_pending(0), 1);
	/* 192.0.2.1 is now the second endpoint, after 192.0.2.2. */
	ep_port[2] = refused_port();
	eps[1] = eps[0];
	cr_assert_eq(addr_parse("192.0.2.2", &eps[0].addr), 0);
	svc.n_endpoints = 2;
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000))
		if (atomic_load(&px->snap->refs) == 3)
			break;
	cr_assert_eq(atomic_load(&px->snap->refs), 3, "the connection did not move");
	cr_assert_eq(newest_pending(1), 1, "192.0.2.1 lost the connection's load");
	cr_assert_eq(newest_pending(0), 0);
	close(fd);
	expect_stat(active, 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000))
		if (!(pending = newest_pending(1)))
			break;
	cr_assert_eq(pending, 0, "the close did not take the load off 192.0.2.1");
	cr_assert_eq(newest_pending(0), 0, "the close took it off another endpoint");
	end_test();
}

static bool export_all(void *ctx, uint32_t id)
{
	(void)ctx;
	(void)id;
	return true;
}

static uint32_t endpoint_as_recorded(void *ctx, uint32_t id, const struct shoal_addr *addr,
				     uint32_t hint)
{
	(void)ctx;
	(void)id;
	(void)addr;
	return hint;
}

/*
 * The read side of proxy.h, all that telemetry/ sees of a running proxy:
 * the newest config, the balancer state of its endpoints (none past the
 * last), the workers' series merged, the series ids and the tracer's
 * rings, one a worker.
 */
Test(proxy, the_read_side_shows_the_live_config_its_endpoint_state_and_series)
{
	uint16_t port = backend_start(BACKEND_ECHO, 'E');
	struct metrics_resolver res = {.service = export_all, .endpoint = endpoint_as_recorded};
	struct trace_config tc = {.sample_rate = 1.0, .seed = 7};
	struct metrics_http_snapshot series = {};
	struct proxy_endpoint_stats es;
	struct proxy_service_stats ss;
	struct tracer *one = NULL, *two = NULL;
	const struct config *live;
	struct proxy_snap *snap;
	uint32_t id;
	char err[256], c;
	int fd;

	set_mapped_endpoints(&port, 1);
	start_proxy();
	fd = client_connect();
	write_full(fd, "x", 1);
	cr_assert_eq(read_full(fd, &c, 1), 1, "no echo");

	snap = proxy_snap_newest(px);
	live = proxy_snap_config(snap);
	cr_assert_eq(live->n_services, 1);
	cr_assert_str_eq(live->services[0].name, "web");
	cr_assert(proxy_snap_service_stats(snap, &live->services[0], timer_now_ns(), &ss));
	cr_assert(proxy_snap_endpoint_stats(snap, &live->services[0], 0, timer_now_ns(), &es));
	cr_expect_eq(es.pending, 1, "the open connection is in flight on its endpoint");
	cr_expect_eq(es.breaker.state, BREAKER_CLOSED);
	cr_expect_not(proxy_snap_endpoint_stats(snap, &live->services[0], 1, timer_now_ns(), &es),
		      "no endpoint past the last");
	cr_expect_eq(es.pending, 0, "zeroed when there is none");

	id = live->services[0].metrics_id;
	cr_assert_neq(id, 0, "the published service has a series id");
	cr_expect_eq(series_ids_count(proxy_series_ids(px)), 1);
	cr_assert_eq(proxy_series_snapshot(px, &res, &series), 0);
	cr_assert_lt(id, series.n_services);
	cr_expect_eq(series.tcp[id].opened, 1, "the opaque connection's open, from its worker");
	metrics_http_snapshot_free(&series);
	proxy_snap_put(snap);

	cr_assert_eq(proxy_workers(px), 2);
	cr_assert_eq(tracer_create(&tc, 1, &one, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tracer_create(&tc, 2, &two, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(proxy_attach_tracer(px, one), -EINVAL, "one ring for two workers");
	cr_expect_eq(proxy_attach_tracer(px, two), 0);
	cr_expect_eq(proxy_attach_tracer(px, NULL), 0);
	close(fd);
	expect_stat(active, 0);
	end_test();
	tracer_destroy(one);
	tracer_destroy(two);
}
