// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The HTTP proxy tests' fixture (http1_fixture.h). */
#include "proxy/http1_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "common/addr.h"
#include "proxy/detect.h"
#include "proxy/http1.h"
#include "proxy/http_error.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"

#define MAX_CONNS 16

struct backend_conn {
	int fd;
	int index;
	pthread_t thread;
};

struct config cfg;
struct config_service svc;
static struct config_service *svc_list[1] = {&svc}; /* cfg.services */
struct config_endpoint ep;
struct proxy *px;
static int lfd = -1;
static pthread_t accept_thread;
static bool accepting;
static script_fn script;
atomic_int accepted;
static struct backend_conn conns[MAX_CONNS];
static atomic_int n_conns;

/* ---- the proxy on loopback -------------------------------------------- */

static int listen_any(uint16_t *port)
{
	int fd = test_bound_socket(64);

	*port = test_bound_port(fd);
	return fd;
}

void send_str(int fd, const char *s)
{
	size_t len = strlen(s), done = 0;

	while (done < len) {
		ssize_t n = send(fd, s + done, len - done, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		done += n;
	}
}

/* Read up to the end of a head ("\r\n\r\n") into buf; returns its length, 0 on EOF. */
size_t read_head(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, 1);

		if (n <= 0)
			break;
		got++;
		buf[got] = '\0';
		if (got >= 4 && !memcmp(buf + got - 4, "\r\n\r\n", 4))
			return got;
	}
	buf[got] = '\0';
	return 0;
}

/* Read everything until EOF or the timeout; NUL-terminated. */
size_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) > 0)
		got += n;
	buf[got] = '\0';
	return got;
}

/* Read until buf holds want (or EOF/timeout); NUL-terminated. */
bool read_until(int fd, char *buf, size_t cap, const char *want)
{
	size_t got = 0;
	ssize_t n;

	buf[0] = '\0';
	while (!strstr(buf, want) && got < cap - 1 &&
	       (n = read(fd, buf + got, cap - 1 - got)) > 0) {
		got += n;
		buf[got] = '\0';
	}
	return strstr(buf, want) != NULL;
}

static void *backend_conn_main(void *arg)
{
	struct backend_conn *bc = arg;

	script(bc->fd, bc->index);
	close(bc->fd);
	return NULL;
}

static void *backend_accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		int i;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		i = atomic_fetch_add(&accepted, 1);
		if (i >= MAX_CONNS) {
			close(fd);
			continue;
		}
		conns[i].fd = fd;
		conns[i].index = i;
		if (pthread_create(&conns[i].thread, NULL, backend_conn_main, &conns[i]) != 0) {
			close(fd);
			continue;
		}
		atomic_fetch_add(&n_conns, 1);
	}
}

void backend_start(script_fn fn)
{
	uint16_t port;

	script = fn;
	lfd = listen_any(&port);
	svc.ports[0].target_port = port;
	addr_parse("127.0.0.1", &ep.addr);
	svc.n_endpoints = 1;
	cr_assert_eq(pthread_create(&accept_thread, NULL, backend_accept_main, NULL), 0);
	accepting = true;
}

int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
			 struct shoal_orig_dst *orig)
{
	(void)ctx;
	(void)peer;
	(void)local;
	orig->ip = svc.vips[0];
	orig->port = htons(SVC_PORT);
	orig->svc_id = 0;
	return 0;
}

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("SO_MARK needs CAP_NET_ADMIN; run the proxy tests as root");
	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	memset(&ep, 0, sizeof(ep));
	memset(conns, 0, sizeof(conns));
	atomic_store(&accepted, 0);
	atomic_store(&n_conns, 0);
	px = NULL;
	lfd = -1;
	accepting = false;

	addr_parse("127.0.0.1", &cfg.proxy_v4);
	cfg.proxy_port = test_free_port();
	cfg.socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg.workers = 1; /* one worker: one pool, so reuse is deterministic */
	cfg.connect_timeout_ms = 1000;
	cfg.connect_deadline_ms = 3000;
	cfg.buffer_bytes = 16384;
	cfg.max_connections = 1024;
	cfg.detect_timeout_ms = 100;
	cfg.idle_timeout_ms = 0;
	cfg.http_max_request_line = 8192;
	cfg.http_max_head_bytes = 32768;
	cfg.http_max_headers = 100;
	cfg.http_pool_idle_timeout_ms = 30000;
	cfg.http_pool_max_idle_per_endpoint = 8;
	cfg.http_timeout_header = true;
	strcpy(cfg.http_upgrades[0], "websocket");
	cfg.n_http_upgrades = 1;

	strcpy(svc.name, "web");
	strcpy(svc.namespace, "default");
	addr_parse(VIP, &svc.vips[0]);
	svc.n_vips = 1;
	svc.ports[0].port = SVC_PORT;
	svc.ports[0].protocol = CONFIG_PROTO_HTTP;
	svc.n_ports = 1;
	svc.endpoints = &ep;
	cfg.services = svc_list;
	cfg.n_services = 1;
}

static void teardown(void)
{
	proxy_stop(px);
	px = NULL;
	if (lfd >= 0) {
		shutdown(lfd, SHUT_RDWR);
		if (accepting)
			pthread_join(accept_thread, NULL);
		for (int i = 0; i < atomic_load(&n_conns); i++)
			pthread_join(conns[i].thread, NULL);
		close(lfd);
		lfd = -1;
	}
}

void end_test(void)
{
	teardown();
#if defined(__SANITIZE_ADDRESS__)
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks: see the report above");
#endif
}

TestSuite(http1, .init = setup, .fini = teardown, .timeout = 30);

void start_proxy(void)
{
	char err[256] = "";
	int ret = proxy_start(&cfg, test_orig_dst, test_plain_tcp, NULL, &px, err, sizeof(err));

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

/* Keep-alive server: answers every request head with OK2. */
void script_keepalive(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head)))
		send_str(fd, OK2);
}

/* One request on a fresh client connection; returns the response text. */
void one_request(int cfd, const char *req, char *resp, size_t cap, const char *until)
{
	send_str(cfd, req);
	cr_assert(read_until(cfd, resp, cap, until), "response: '%s'", resp);
}

atomic_int rs_requests;

struct config_endpoint two_eps[2]; /* 192.0.2.1 and .2, both onto the backend */
uint16_t two_eps_port;		  /* the backend's loopback port */
atomic_int rs_dials[2];		  /* N of 192.0.2.N of the first two connects */
atomic_int n_dials;
atomic_int rs_intact; /* requests whose body arrived as sent */

/* The proxy's endpoint seam: 192.0.2.N goes to the backend; N is noted. */
socklen_t two_eps_sockaddr(const struct shoal_addr *e, uint16_t port_be,
				  struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	int k = atomic_fetch_add(&n_dials, 1);

	(void)port_be;
	if (k < 2)
		atomic_store(&rs_dials[k], (int)(ntohl(e->ip6[3]) & 0xff));
	memset(out, 0, sizeof(*out));
	*sin = test_loopback(two_eps_port);
	return sizeof(*sin);
}

/*
 * A service of two endpoints, 192.0.2.1 and 192.0.2.2 (TEST-NET-1, never
 * dialled): the seam sends both to one loopback backend running fn, and
 * notes which one each connect was for. Then the proxy starts.
 */
void start_two_endpoints(script_fn fn)
{
	start_two_endpoints_opts(fn, NULL);
}

void start_two_endpoints_opts(script_fn fn, const struct proxy_opts *seams)
{
	struct proxy_opts opts = {0};
	char err[256] = "";
	int ret;

	atomic_store(&rs_requests, 0);
	atomic_store(&rs_intact, 0);
	atomic_store(&n_dials, 0);
	atomic_store(&rs_dials[0], 0);
	atomic_store(&rs_dials[1], 0);
	backend_start(fn);
	two_eps_port = svc.ports[0].target_port;
	memset(two_eps, 0, sizeof(two_eps));
	addr_parse("192.0.2.1", &two_eps[0].addr);
	addr_parse("192.0.2.2", &two_eps[1].addr);
	svc.endpoints = two_eps;
	svc.n_endpoints = 2;
	if (seams)
		opts = *seams;
	opts.endpoint_sockaddr = two_eps_sockaddr;
	ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, NULL, &opts, &px, err, sizeof(err));
	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
}
