// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The HTTP side of the proxy on 127.0.0.1: detection, request-at-a-time
 * HTTP/1.1 with pooled upstream connections, the proxy's own errors. A
 * scripted backend (one thread per connection, each running the test's
 * script with the connection's index) plays the server, so that races a
 * real server only hits by chance (closing a pooled connection just as a
 * request arrives) happen every time.
 */
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
#include "telemetry/metrics.h"

#define VIP "10.96.0.10"
#define SVC_PORT 80
/* Long enough for a slow sanitizer build, short enough to catch a hang. */
#define IO_TIMEOUT_MS 5000
#define MAX_CONNS 16

typedef void (*script_fn)(int fd, int index);

struct backend_conn {
	int fd;
	int index;
	pthread_t thread;
};

static struct config cfg;
static struct config_service svc;
static struct config_endpoint ep;
static struct proxy *px;
static int lfd = -1;
static pthread_t accept_thread;
static bool accepting;
static script_fn script;
static atomic_int accepted;
static struct backend_conn conns[MAX_CONNS];
static atomic_int n_conns;

/* ---- pure parts -------------------------------------------------------- */

Test(detect, classifies_first_bytes)
{
	static const struct {
		const char *bytes;
		enum detect_result want;
	} cases[] = {
	    {"", DETECT_NEED_MORE},
	    {"G", DETECT_NEED_MORE},
	    {"GET", DETECT_NEED_MORE},
	    {"GET ", DETECT_HTTP1},
	    {"GET / HTTP/1.1\r\n", DETECT_HTTP1},
	    {"M-SEARCH * HTTP/1.1\r\n", DETECT_HTTP1},
	    {"P", DETECT_NEED_MORE}, /* a prefix of both POST and PRI */
	    {"PRI", DETECT_NEED_MORE},
	    {"PRI * HTTP/2.0\r\n", DETECT_NEED_MORE},
	    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", DETECT_HTTP2},
	    {"PRI * HTTP/1.1\r\n", DETECT_HTTP1}, /* not the preface: a method named PRI */
	    {" GET", DETECT_OPAQUE},
	    {"\x16\x03\x01\x02\x00", DETECT_OPAQUE}, /* a TLS ClientHello */
	    {"SSH-2.0-OpenSSH_9.2p1 Debian", DETECT_OPAQUE},
	    {"get / HTTP/1.1\r\n", DETECT_OPAQUE}, /* methods are case-sensitive */
	    {"BASELINE-CONTROL /x HTTP/1.1\r\n", DETECT_HTTP1},
	    {"*1\r\n$4\r\nPING\r\n", DETECT_OPAQUE},	  /* Redis */
	    {"ABCDEFGHIJKLMNOPQRSTUVWXY", DETECT_OPAQUE}, /* token longer than any method */
	    {"ABCDEFGHIJKLMNOPQRSTUVWX", DETECT_NEED_MORE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(detect_classify(cases[i].bytes, strlen(cases[i].bytes)), cases[i].want,
			     "detect_classify(\"%s\")", cases[i].bytes);
}

Test(http_error, formats_a_complete_response)
{
	char buf[HTTP_ERROR_MAX_BYTES];

	for (int e = 0; e < HTTP_ERR__COUNT; e++) {
		size_t n = http_error_format(e, buf, sizeof(buf));
		char want[64], *body;

		cr_assert_gt(n, 0, "error %d does not fit HTTP_ERROR_MAX_BYTES", e);
		buf[n] = '\0';
		snprintf(want, sizeof(want), "HTTP/1.1 %d ", http_error_status(e));
		cr_expect_eq(strncmp(buf, want, strlen(want)), 0, "%s", buf);
		snprintf(want, sizeof(want), "\r\nx-shoal-error: %s\r\n", http_error_stage(e));
		cr_expect_not_null(strstr(buf, want), "%s", buf);
		cr_expect_not_null(strstr(buf, "\r\nconnection: close\r\n"));
		body = strstr(buf, "\r\n\r\n");
		cr_assert_not_null(body);
		snprintf(want, sizeof(want), "content-length: %zu\r\n", strlen(body + 4));
		cr_expect_not_null(strstr(buf, want), "%s", buf);
	}
	cr_expect_eq(http_error_format(HTTP_ERR_NO_ENDPOINTS, buf, 10), 0);
	cr_expect_eq(http_error_from_parse(-431), HTTP_ERR_HEAD_TOO_LARGE);
	cr_expect_eq(http_error_from_parse(-414), HTTP_ERR_URI_TOO_LONG);
	cr_expect_eq(http_error_from_parse(-400), HTTP_ERR_BAD_REQUEST);
}

/* ---- the proxy on loopback -------------------------------------------- */

static int listen_any(uint16_t *port)
{
	int fd = test_bound_socket(64);

	*port = test_bound_port(fd);
	return fd;
}

static void send_str(int fd, const char *s)
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
static size_t read_head(int fd, char *buf, size_t cap)
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
static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap - 1 && (n = read(fd, buf + got, cap - 1 - got)) > 0)
		got += n;
	buf[got] = '\0';
	return got;
}

/* Read until buf holds want (or EOF/timeout); NUL-terminated. */
static bool read_until(int fd, char *buf, size_t cap, const char *want)
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

static void backend_start(script_fn fn)
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

static int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
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
	cfg.services = &svc;
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

static void end_test(void)
{
	teardown();
#if defined(__SANITIZE_ADDRESS__)
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks: see the report above");
#endif
}

TestSuite(http1, .init = setup, .fini = teardown, .timeout = 30);

static void start_proxy(void)
{
	char err[256] = "";
	int ret = proxy_start(&cfg, test_orig_dst, test_plain_tcp, NULL, &px, err, sizeof(err));

	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
}

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

#define GET(path) "GET " path " HTTP/1.1\r\nHost: web\r\n\r\n"
#define OK2 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* Keep-alive server: answers every request head with OK2. */
static void script_keepalive(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head)))
		send_str(fd, OK2);
}

/* One request on a fresh client connection; returns the response text. */
static void one_request(int cfd, const char *req, char *resp, size_t cap, const char *until)
{
	send_str(cfd, req);
	cr_assert(read_until(cfd, resp, cap, until), "response: '%s'", resp);
}

Test(http1, keep_alive_reuses_one_upstream_connection)
{
	char resp[4096];
	int c1, c2;

	backend_start(script_keepalive);
	start_proxy();
	c1 = client_connect();
	for (int i = 0; i < 3; i++) {
		one_request(c1, GET("/a"), resp, sizeof(resp), "\r\n\r\nok");
		cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0);
	}
	/* A second client connection takes the pooled upstream connection. */
	c2 = client_connect();
	one_request(c2, GET("/b"), resp, sizeof(resp), "\r\n\r\nok");
	cr_expect_eq(atomic_load(&accepted), 1, "the backend accepted %d connections",
		     atomic_load(&accepted));
	cr_expect_eq(stats_now().pool_reused, 3);
	cr_expect_eq(stats_now().http_requests, 4);
	/* Both client connections are open and idle between requests: they
	 * hold no buffer (the worker may still be finishing the last turn). */
	for (uint64_t until = test_now_ms() + 2000; stats_now().buffers && test_now_ms() < until;)
		usleep(1000);
	cr_expect_eq(stats_now().buffers, 0, "idle keep-alive connections hold %llu buffers",
		     (unsigned long long)stats_now().buffers);
	cr_expect_eq(stats_now().header_slots, 0,
		     "idle keep-alive connections hold %llu header slot arrays",
		     (unsigned long long)stats_now().header_slots);
	close(c1);
	close(c2);
	end_test();
}

/* First connection: answers one request, then reads the next and closes. */
static void script_close_after_one(int fd, int index)
{
	char head[4096];

	if (!read_head(fd, head, sizeof(head)))
		return;
	send_str(fd, OK2);
	if (index == 0) {
		/* The server's idle close, racing the proxy's next request. */
		read_head(fd, head, sizeof(head));
		return;
	}
	while (read_head(fd, head, sizeof(head)))
		send_str(fd, OK2);
}

Test(http1, request_on_a_stale_pooled_connection_goes_out_again)
{
	char resp[4096];
	int c;

	backend_start(script_close_after_one);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	one_request(c, GET("/2"), resp, sizeof(resp), "\r\n\r\nok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	cr_expect_eq(atomic_load(&accepted), 2);
	cr_expect_eq(stats_now().http_retries, 1);
	close(c);
	end_test();
}

/* A body delimited by the server's close; HTTP/1.1 allows it. */
static void script_until_close(int fd, int index)
{
	char head[4096];

	(void)index;
	if (read_head(fd, head, sizeof(head)))
		send_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of this, then FIN");
}

Test(http1, body_until_close_reaches_the_client_then_eof)
{
	char resp[4096];
	int c;

	backend_start(script_until_close);
	start_proxy();
	c = client_connect();
	send_str(c, GET("/"));
	read_all(c, resp, sizeof(resp));
	cr_expect_not_null(strstr(resp, "\r\n\r\nall of this, then FIN"), "%s", resp);
	close(c);
	end_test();
}

/* A chunked response written in small pieces, with a 100 and a 103 first. */
static void script_chunked_pieces(int fd, int index)
{
	static const char *pieces[] = {
	    "HTTP/1.1 100 Continue\r\n\r\n",
	    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-",
	    "Encoding: chunked\r\n\r\n5\r",
	    "\nhello\r\n6;ext=1\r\n world\r\n0\r\n",
	    "X-Trailer: t\r\n\r\n",
	};
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
			send_str(fd, pieces[i]);
			usleep(2000);
		}
	}
}

Test(http1, interim_heads_and_a_split_chunked_body)
{
	char resp[8192];
	int c;

	backend_start(script_chunked_pieces);
	start_proxy();
	c = client_connect();
	for (int i = 0; i < 2; i++) {
		one_request(c, GET("/c"), resp, sizeof(resp), "X-Trailer: t\r\n\r\n");
		cr_expect_eq(strncmp(resp, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103", 36), 0,
			     "%s", resp);
		cr_expect_not_null(strstr(resp, "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"));
	}
	cr_expect_eq(atomic_load(&accepted), 1);
	close(c);
	end_test();
}

Test(http1, no_endpoints_is_a_503)
{
	char resp[4096];
	int c;

	start_proxy();
	c = client_connect();
	send_str(c, GET("/"));
	read_all(c, resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: no-endpoints\r\n"), "%s", resp);
	cr_expect_eq(stats_now().http_errors, 1);
	close(c);
	end_test();
}

Test(http1, refused_endpoint_is_a_503_connect_failure)
{
	char resp[4096];
	int c;

	addr_parse("127.0.0.1", &ep.addr);
	svc.n_endpoints = 1;
	svc.ports[0].target_port = test_free_port();
	start_proxy();
	c = client_connect();
	send_str(c, GET("/"));
	read_all(c, resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: connect-failure\r\n"), "%s", resp);
	close(c);
	end_test();
}

Test(http1, malformed_request_is_a_400_and_nothing_is_sent)
{
	char resp[4096];
	int c;

	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	send_str(c, "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: "
		    "chunked\r\n\r\n0\r\n\r\n");
	read_all(c, resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 400", 12), 0, "%s", resp);
	cr_expect_eq(atomic_load(&accepted), 0);
	close(c);
	end_test();
}

Test(http1, idle_pooled_connections_expire)
{
	char resp[4096];
	int c;

	cfg.http_pool_idle_timeout_ms = 100;
	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	usleep(400 * 1000);
	one_request(c, GET("/2"), resp, sizeof(resp), "\r\n\r\nok");
	cr_expect_eq(atomic_load(&accepted), 2);
	cr_expect_eq(stats_now().pool_reused, 0);
	close(c);
	end_test();
}

/* Server speaks first: a banner, then echo. */
static void script_banner(int fd, int index)
{
	char buf[256];
	ssize_t n;

	(void)index;
	send_str(fd, "220 banner\r\n");
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		send(fd, buf, n, MSG_NOSIGNAL);
}

Test(http1, detection_gives_a_silent_client_the_banner_quickly)
{
	char resp[256];
	uint64_t t0;
	int c;

	svc.ports[0].protocol = CONFIG_PROTO_DETECT;
	cfg.detect_timeout_ms = 50;
	backend_start(script_banner);
	start_proxy();
	t0 = test_now_ms();
	c = client_connect();
	cr_assert(read_until(c, resp, sizeof(resp), "220 banner\r\n"), "got '%s'", resp);
	cr_expect_lt(test_now_ms() - t0, 1000);
	send_str(c, "echo me");
	cr_expect(read_until(c, resp, sizeof(resp), "echo me"));
	cr_expect_eq(stats_now().detect_opaque, 1);
	close(c);
	end_test();
}

Test(http1, detection_keeps_the_peeked_bytes_of_a_request)
{
	char resp[4096];
	int c;

	svc.ports[0].protocol = CONFIG_PROTO_DETECT;
	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	send_str(c, "GE");
	usleep(20 * 1000);
	one_request(c, "T / HTTP/1.1\r\nHost: web\r\n\r\n", resp, sizeof(resp), "\r\n\r\nok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	cr_expect_eq(stats_now().detect_http, 1);
	close(c);
	end_test();
}

Test(http1, opaque_bytes_on_an_undeclared_port_are_kept)
{
	char resp[256];
	int c;

	svc.ports[0].protocol = CONFIG_PROTO_DETECT;
	backend_start(script_banner);
	start_proxy();
	c = client_connect();
	send_str(c, "\x16\x03\x01 not http");
	cr_assert(read_until(c, resp, sizeof(resp), "\x16\x03\x01 not http"), "got '%s'", resp);
	cr_expect_eq(strncmp(resp, "220 banner\r\n", 12), 0);
	close(c);
	end_test();
}

Test(http1, idle_opaque_connection_is_closed_and_a_busy_one_is_not)
{
	char resp[256];
	int c;

	svc.ports[0].protocol = CONFIG_PROTO_TCP;
	cfg.idle_timeout_ms = 200;
	backend_start(script_banner);
	start_proxy();
	c = client_connect();
	cr_assert(read_until(c, resp, sizeof(resp), "220 banner\r\n"));
	for (int i = 0; i < 6; i++) {
		usleep(100 * 1000);
		send_str(c, "x");
		cr_assert(read_until(c, resp, sizeof(resp), "x"), "busy connection closed");
	}
	usleep(500 * 1000);
	cr_expect_eq(read(c, resp, sizeof(resp)), 0, "an idle connection should see EOF");
	close(c);
	end_test();
}

/* ---- resilience glue (docs/resilience.md, "Wiring") -------------------- */

static atomic_int rs_requests;

/* The first request of the run gets a 503, every later one a 200. */
static void script_first_503(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		if (atomic_fetch_add(&rs_requests, 1) == 0)
			send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
		else if (!strncmp(head, "POST", 4))
			send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
		else
			send_str(fd, OK2);
	}
}

Test(http1, a_503_is_retried_for_a_get_and_never_for_a_post)
{
	char resp[4096];
	int c;

	atomic_store(&rs_requests, 0);
	backend_start(script_first_503);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/a"), resp, sizeof(resp), "ok");
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 2, "the 503 was retried once");
	cr_assert_eq(stats_now().http_retries, 1);
	one_request(c, "POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi", resp,
		    sizeof(resp), "\r\n\r\n");
	cr_assert(!strncmp(resp, "HTTP/1.1 503", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 3, "the POST reached the backend once");
	cr_assert_eq(stats_now().http_retries, 1);
	close(c);
	end_test();
}

/* Reads one head, then answers nothing until the proxy gives up on it. */
static void script_silent(int fd, int index)
{
	char head[4096];
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	(void)index;
	if (read_head(fd, head, sizeof(head)))
		poll(&pfd, 1, 3000);
}

Test(http1, the_client_deadline_header_is_a_504_at_once)
{
	char resp[4096];
	uint64_t t0, ms;
	int c;

	backend_start(script_silent);
	start_proxy();
	c = client_connect();
	t0 = test_now_ms();
	one_request(c, "GET /slow HTTP/1.1\r\nHost: web\r\nx-shoal-timeout-ms: 150\r\n\r\n", resp,
		    sizeof(resp), "\r\n\r\n");
	ms = test_now_ms() - t0;
	cr_assert(!strncmp(resp, "HTTP/1.1 504", 12), "got '%s'", resp);
	cr_assert(strstr(resp, "x-shoal-error: timeout"), "got '%s'", resp);
	cr_assert(ms >= 140 && ms < 400, "504 after %llu ms, want about 150",
		  (unsigned long long)ms);
	close(c);
	end_test();
}

/* A client that may not shorten its deadline: the header is stripped and ignored. */
Test(http1, the_client_deadline_header_is_ignored_when_not_honoured)
{
	char resp[4096];
	uint64_t t0, ms;
	int c;

	cfg.http_timeout_header = false;
	config_resilience_default(&svc.resilience);
	svc.resilience.request_timeout_ms = 600;
	backend_start(script_silent);
	start_proxy();
	c = client_connect();
	t0 = test_now_ms();
	one_request(c, "GET /slow HTTP/1.1\r\nHost: web\r\nx-shoal-timeout-ms: 150\r\n\r\n", resp,
		    sizeof(resp), "\r\n\r\n");
	ms = test_now_ms() - t0;
	cr_assert(!strncmp(resp, "HTTP/1.1 504", 12), "got '%s'", resp);
	cr_assert(ms >= 550, "504 after %llu ms, want the service's 600", (unsigned long long)ms);
	close(c);
	end_test();
}

/* What the backend saw of each request: head and body, up to the next head. */
static char seen[4][4096];
static size_t seen_len[4];

/* Records request heads (and a Content-Length body) then answers OK2, @index-th connection only. */
static void script_record(int fd, int index)
{
	char head[4096];
	int k = 0;

	(void)index;
	while (k < 4 && read_head(fd, head, sizeof(head))) {
		const char *cl = strcasestr(head, "\r\ncontent-length: ");
		size_t n = strlen(head), body = cl ? strtoul(cl + 18, NULL, 10) : 0;

		memcpy(seen[k], head, n + 1);
		while (body > 0 && n < sizeof(seen[k]) - 1) {
			ssize_t r = read(fd, seen[k] + n, 1);

			if (r <= 0)
				break;
			n++;
			body--;
		}
		seen[k][n] = '\0';
		seen_len[k] = n;
		k++;
		send_str(fd, "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, "
			     "X-A\r\nX-A: 1\r\nContent-Length: 2\r\nUpgrade: h2c\r\n\r\nok");
	}
}

/*
 * Hop-by-hop fields go neither way, the forwarding fields are added, an
 * absolute-form target goes as origin form with its authority as Host,
 * x-shoal-* fields are stripped; the body and a pipelined request behind
 * the head are intact.
 */
Test(http1, heads_are_forwarded_rewritten_both_ways)
{
	char resp[8192], *rid;
	int c;

	cfg.http_forwarded_for = true;
	cfg.http_forwarded_proto = true;
	cfg.http_request_id = true;
	memset(seen, 0, sizeof(seen));
	backend_start(script_record);
	start_proxy();
	c = client_connect();
	send_str(c, "POST http://web.example:8080/p?q=1 HTTP/1.1\r\nHost: web\r\n"
		    "Connection: keep-alive, X-Hop, TE\r\nX-Hop: 1\r\nKeep-Alive: 300\r\n"
		    "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\n"
		    "X-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\n"
		    "x-shoal-timeout-ms: 5000\r\nContent-Length: 5\r\n\r\nhello"
		    "GET /two HTTP/1.1\r\nHost: web\r\nX-Request-Id: mine\r\n\r\n");
	read_until(c, resp, sizeof(resp),
		   "okHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
		   "Connection: keep-alive\r\n\r\nok");
	cr_assert_str_eq(resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
			       "\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
			       "Connection: keep-alive\r\n\r\nok");
	rid = strstr(seen[0], "x-request-id: ");
	cr_assert_not_null(rid, "%s", seen[0]);
	cr_assert_eq(strspn(rid + 14, "0123456789abcdef"), 32, "%s", seen[0]);
	memcpy(rid + 14, "<id>", 4);
	memmove(rid + 18, rid + 46, strlen(rid + 46) + 1);
	cr_assert_str_eq(seen[0], "POST /p?q=1 HTTP/1.1\r\nHost: web.example:8080\r\n"
				  "Content-Length: 5\r\nConnection: keep-alive\r\nTE: trailers\r\n"
				  "X-Forwarded-For: 192.0.2.9, 127.0.0.1\r\n"
				  "X-Forwarded-Proto: http\r\nx-request-id: <id>\r\n\r\nhello");
	cr_assert_str_eq(seen[1], "GET /two HTTP/1.1\r\nHost: web\r\nX-Request-Id: mine\r\n"
				  "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n");
	cr_expect_eq(atomic_load(&accepted), 1);
	close(c);
	end_test();
}

/* Records the head, then switches protocols whatever was asked. */
static void script_always_101(int fd, int index)
{
	char head[4096];

	(void)index;
	if (!read_head(fd, head, sizeof(head)))
		return;
	memcpy(seen[0], head, strlen(head) + 1);
	send_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
		     "Connection: Upgrade\r\n\r\n");
	usleep(200 * 1000);
}

/* h2c is not allowed: the server never sees the upgrade, and a 101 anyway is a 502. */
Test(http1, an_upgrade_that_is_not_allowed_is_removed)
{
	char resp[4096];
	int c;

	memset(seen, 0, sizeof(seen));
	backend_start(script_always_101);
	start_proxy();
	c = client_connect();
	send_str(c, "GET / HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\n"
		    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
	read_all(c, resp, sizeof(resp));
	cr_assert_str_eq(seen[0], "GET / HTTP/1.1\r\nHost: web\r\n\r\n");
	cr_assert(!strncmp(resp, "HTTP/1.1 502", 12), "got '%s'", resp);
	cr_assert_not_null(strstr(resp, "x-shoal-error: bad-response"), "%s", resp);
	close(c);
	end_test();
}

/* Sends @n 103s, then OK2, for each request. */
static int n_interim;

static void script_interims(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		for (int i = 0; i < n_interim; i++)
			send_str(fd, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
		send_str(fd, OK2);
	}
}

static int count(const char *s, const char *what)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, what)); p++)
		n++;
	return n;
}

Test(http1, interim_heads_are_not_sent_to_http10_clients)
{
	char resp[8192];
	int c;

	n_interim = 2;
	backend_start(script_interims);
	start_proxy();
	c = client_connect();
	one_request(c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n", resp, sizeof(resp), "ok");
	cr_assert_eq(count(resp, "HTTP/1.1 103"), 2, "%s", resp);
	close(c);
	c = client_connect();
	send_str(c, "GET / HTTP/1.0\r\n\r\n");
	read_all(c, resp, sizeof(resp));
	cr_assert_str_eq(resp, OK2);
	close(c);
	end_test();
}

Test(http1, interim_heads_are_capped)
{
	char resp[16384];
	int c;

	n_interim = HTTP1_MAX_INTERIM + 1;
	backend_start(script_interims);
	start_proxy();
	c = client_connect();
	send_str(c, "GET / HTTP/1.1\r\nHost: web\r\n\r\n");
	read_all(c, resp, sizeof(resp));
	cr_assert_eq(count(resp, "HTTP/1.1 103"), HTTP1_MAX_INTERIM, "%s", resp);
	cr_assert_not_null(strstr(resp, "HTTP/1.1 502"), "%s", resp);
	cr_assert_not_null(strstr(resp, "x-shoal-error: bad-response"), "%s", resp);
	close(c);
	end_test();
}

/* Reads each request head and closes without an answer. */
static void script_hang_up(int fd, int index)
{
	char head[4096];

	(void)index;
	read_head(fd, head, sizeof(head));
}

Test(http1, every_endpoint_ejected_waits_fail_fast_then_503)
{
	struct config_resilience *r = &svc.resilience;
	char resp[4096];
	uint64_t t0, ms;
	int c;

	config_resilience_default(r);
	r->consecutive_failures = 3; /* the first request's three tries */
	r->max_ejection_pct = 100; /* a lone endpoint may go */
	r->fail_fast_ms = 200;
	backend_start(script_hang_up);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/a"), resp, sizeof(resp), "\r\n\r\n");
	cr_assert(!strncmp(resp, "HTTP/1.1 502", 12), "got '%s'", resp);
	close(c);
	/* Its three failed tries (two retries) ejected it for about 1 s. */
	c = client_connect();
	t0 = test_now_ms();
	one_request(c, GET("/b"), resp, sizeof(resp), "\r\n\r\n");
	ms = test_now_ms() - t0;
	cr_assert(!strncmp(resp, "HTTP/1.1 503", 12), "got '%s'", resp);
	cr_assert(strstr(resp, "x-shoal-error: no-candidate"), "got '%s'", resp);
	cr_assert(ms >= 180 && ms < 600, "503 after %llu ms, want about 200",
		  (unsigned long long)ms);
	close(c);
	end_test();
}

/* ---- replay slabs (docs/resilience.md, "Replay buffers") ----------------- */

#define BODY_40K (40 * 1024)
#define BODY_100K (100 * 1024)

static struct config_endpoint two_eps[2]; /* 192.0.2.1 and .2, both onto the backend */
static uint16_t two_eps_port;		  /* the backend's loopback port */
static atomic_int rs_dials[2];		  /* N of 192.0.2.N of the first two connects */
static atomic_int n_dials;
static atomic_int rs_intact; /* requests whose body arrived as sent */

/* The proxy's endpoint seam: 192.0.2.N goes to the backend; N is noted. */
static socklen_t two_eps_sockaddr(const struct shoal_addr *e, uint16_t port_be,
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

/* Byte i of a test body: varied enough that a shifted or repeated block shows. */
static char body_byte(size_t i)
{
	return (char)('a' + (i * 7 + i / 251) % 26);
}

static char *body_make(size_t len)
{
	char *b = malloc(len + 1);

	cr_assert_not_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = body_byte(i);
	b[len] = '\0';
	return b;
}

/*
 * Reads each request with its Content-Length body, checks the body's
 * bytes, notes which endpoint address served it; answers 503 to the
 * first request of the run and to every POST, 200 to the rest.
 */
static void script_body_first_503(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		const char *cl = strcasestr(head, "content-length:");
		size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0, got = 0;
		char *body = malloc(want + 1);
		bool intact = true;
		int n;

		if (!body)
			return;
		while (got < want) {
			ssize_t r = read(fd, body + got, want - got);

			if (r <= 0)
				break;
			got += r;
		}
		for (size_t i = 0; i < want && intact; i++)
			intact = got == want && body[i] == body_byte(i);
		free(body);
		if (got < want)
			return;
		n = atomic_fetch_add(&rs_requests, 1);
		if (intact)
			atomic_fetch_add(&rs_intact, 1);
		if (n == 0 || !strncmp(head, "POST", 4))
			send_str(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
		else
			send_str(fd, intact ? OK2 : "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
	}
}

/*
 * A service of two endpoints, 192.0.2.1 and 192.0.2.2 (TEST-NET-1, never
 * dialled): the seam sends both to one loopback backend running fn, and
 * notes which one each connect was for. Then the proxy starts.
 */
static void start_two_endpoints(script_fn fn)
{
	struct proxy_opts opts = {.endpoint_sockaddr = two_eps_sockaddr};
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
	ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, NULL, &opts, &px, err, sizeof(err));
	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
}

/* Send method with a body of len bytes on a fresh connection; the response head in resp. */
static void body_request(const char *method, size_t len, char *resp, size_t cap)
{
	char head[256];
	char *body = body_make(len);
	int c = client_connect();

	snprintf(head, sizeof(head), "%s /up HTTP/1.1\r\nHost: web\r\nContent-Length: %zu\r\n\r\n",
		 method, len);
	send_str(c, head);
	send_str(c, body);
	free(body);
	cr_assert(read_until(c, resp, cap, "\r\n\r\n"), "response: '%s'", resp);
	close(c);
}

Test(http1, a_40k_put_is_replayed_from_a_slab_on_the_other_endpoint)
{
	char resp[4096];

	start_two_endpoints(script_body_first_503);
	/* 40 KiB does not fit the 16 KiB connection buffer: only a slab can replay it. */
	body_request("PUT", BODY_40K, resp, sizeof(resp));
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 2, "the 503 was retried once");
	cr_assert_eq(atomic_load(&rs_intact), 2, "both tries carried the body byte for byte");
	cr_assert_neq(atomic_load(&rs_dials[0]), atomic_load(&rs_dials[1]),
		      "the retry went to the other endpoint");
	cr_assert_eq(stats_now().http_retries, 1);
	cr_assert_eq(stats_now().http_replay_no_slab, 0);
	end_test();
}

/*
 * A head that grows when rewritten (forwarding fields), read in one go
 * with a body that fills the buffer: the body still streams through, and
 * the replay from the slab carries the rewritten head.
 */
Test(http1, a_rewritten_head_with_a_buffer_full_of_body_streams_and_replays)
{
	char resp[4096], head[256];
	char *body = body_make(BODY_40K), *all;
	size_t hl;
	int c;

	cfg.http_forwarded_for = true;
	cfg.http_forwarded_proto = true;
	cfg.http_request_id = true;
	start_two_endpoints(script_body_first_503);
	hl = (size_t)snprintf(head, sizeof(head),
			      "PUT /up HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n",
			      BODY_40K);
	all = malloc(hl + BODY_40K + 1);
	cr_assert_not_null(all);
	memcpy(all, head, hl);
	memcpy(all + hl, body, BODY_40K + 1);
	c = client_connect();
	send_str(c, all);
	free(all);
	free(body);
	cr_assert(read_until(c, resp, sizeof(resp), "\r\n\r\n"), "response: '%s'", resp);
	close(c);
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 2, "the 503 was retried once");
	cr_assert_eq(atomic_load(&rs_intact), 2, "both tries carried the body byte for byte");
	end_test();
}

Test(http1, a_100k_put_is_not_retried)
{
	char resp[4096];

	start_two_endpoints(script_body_first_503);
	body_request("PUT", BODY_100K, resp, sizeof(resp));
	cr_assert(!strncmp(resp, "HTTP/1.1 503", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 1, "past the 64 KiB limit: sent once");
	cr_assert_eq(atomic_load(&rs_intact), 1);
	cr_assert_eq(stats_now().http_retries, 0);
	end_test();
}

Test(http1, a_40k_post_is_never_retried)
{
	char resp[4096];

	start_two_endpoints(script_body_first_503);
	body_request("POST", BODY_40K, resp, sizeof(resp));
	cr_assert(!strncmp(resp, "HTTP/1.1 503", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&rs_requests), 1, "the POST reached the backend once");
	cr_assert_eq(stats_now().http_retries, 0);
	cr_assert_eq(stats_now().http_replay_no_slab, 0, "a POST does not even ask for a slab");
	end_test();
}

/* ---- one connection cannot hold the worker ---------------------------- */

#define FLOODERS 3 /* threads writing into one socket: faster than one reader */

static atomic_bool flood_stop;
static atomic_llong flood_cut_ns; /* when the proxy cut the flooder; 0: not yet */

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Write bytes into fd as fast as the socket takes them, until stopped or cut. */
static void *flood_main(void *arg)
{
	static char junk[1 << 20];
	int fd = *(int *)arg;

	memset(junk, 'x', sizeof(junk));
	while (!atomic_load(&flood_stop)) {
		ssize_t n = send(fd, junk, sizeof(junk), MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			long long zero = 0;

			atomic_compare_exchange_strong(&flood_cut_ns, &zero, mono_ns());
			break;
		}
	}
	return NULL;
}

/*
 * A client that keeps writing after the proxy answered it with an error
 * (and half-closed, lingering for its FIN) must not stall the worker: with
 * one worker, another client's requests still complete at once while the
 * flood runs, and the flooder is cut at the linger deadline. Before the
 * linger read was bounded, it drained the flood until EAGAIN, which
 * writers faster than the reader do not let come (seconds, on this test).
 */
Test(http1, a_client_flooding_after_an_error_does_not_stall_the_worker)
{
	char resp[4096];
	pthread_t flooders[FLOODERS];
	long long t400, worst_ms = 0, cut;
	int a, b, sndbuf = 64 << 20, n_req = 0;

	backend_start(script_keepalive);
	start_proxy();
	a = client_connect();
	send_str(a, "GET / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: "
		    "chunked\r\n\r\n");
	cr_assert(read_until(a, resp, sizeof(resp), "\r\n\r\n"), "no 400: '%s'", resp);
	cr_assert_eq(strncmp(resp, "HTTP/1.1 400", 12), 0, "%s", resp);
	t400 = mono_ns();
	/* A deep send queue, so the proxy's reads find it full (root only). */
	setsockopt(a, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
	atomic_store(&flood_stop, false);
	atomic_store(&flood_cut_ns, 0);
	for (int i = 0; i < FLOODERS; i++)
		cr_assert_eq(pthread_create(&flooders[i], NULL, flood_main, &a), 0);

	b = client_connect();
	/* Requests while the flood runs: HTTP1_LINGER_MS (1 s) after the 400. */
	while ((mono_ns() - t400) / 1000000 < HTTP1_LINGER_MS * 7 / 10) {
		long long start = mono_ns(), ms;

		one_request(b, GET("/"), resp, sizeof(resp), "\r\n\r\nok");
		ms = (mono_ns() - start) / 1000000;
		if (ms > worst_ms)
			worst_ms = ms;
		n_req++;
		usleep(10 * 1000);
	}
	/* A turn of the worker is microseconds; 300 ms leaves a loaded machine room. */
	cr_expect_lt(worst_ms, 300,
		     "a request took %lld ms (worst of %d) while another client flooded", worst_ms,
		     n_req);

	/* The flooder is cut at the linger deadline, not kept. */
	for (int i = 0; i < 100 && !atomic_load(&flood_cut_ns); i++)
		usleep(50 * 1000);
	atomic_store(&flood_stop, true);
	shutdown(a, SHUT_RDWR); /* unblock a send stuck on a full window */
	for (int i = 0; i < FLOODERS; i++)
		pthread_join(flooders[i], NULL);
	cut = atomic_load(&flood_cut_ns);
	cr_expect_neq(cut, 0, "the flooding client was never cut");
	if (cut)
		cr_expect_lt((cut - t400) / 1000000, HTTP1_LINGER_MS + 2000,
			     "the flooder was cut %lld ms after its 400", (cut - t400) / 1000000);
	close(a);
	close(b);
	end_test();
}

/* ---- budgets (docs/proxy.md, "Budgets") ------------------------------- */

/* A request on a fresh connection from src; the whole answer in resp. */
static void request_from(const char *src, char *resp, size_t cap)
{
	int c = test_client_connect_from(src, cfg.proxy_port, IO_TIMEOUT_MS);

	send_str(c, "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
	read_all(c, resp, cap);
	close(c);
}

Test(http1, a_client_past_its_connection_cap_gets_a_503_and_others_are_served)
{
	char resp[4096];
	int a, b;

	cfg.max_connections_per_client = 2;
	backend_start(script_keepalive);
	start_proxy();
	a = client_connect();
	b = client_connect();
	one_request(a, GET("/a"), resp, sizeof(resp), "ok");
	one_request(b, GET("/b"), resp, sizeof(resp), "ok");

	/* A third from the same address: refused, saying which cap. */
	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: limit-client\r\n"), "%s", resp);
	cr_expect_not_null(strstr(resp, "proxy.max_connections_per_client"), "%s", resp);
	cr_expect_eq(stats_now().refused[PROXY_CAP_client], 1);
	cr_expect_eq(stats_now().refused[PROXY_CAP_memory], 0);

	/* Another client is served, and so are the two open connections. */
	request_from("127.0.0.2", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "other client: %s", resp);
	one_request(a, GET("/a2"), resp, sizeof(resp), "ok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);

	/* Once one of them closes, the client has room again. */
	close(b);
	for (int i = 0; i < 100 && limits_client_conns(&px->clients, &(struct shoal_addr){
					   .ip6 = {0, 0, htonl(0xffff), htonl(0x7f000001)}}) > 1;
	     i++)
		usleep(10000);
	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "after a close: %s", resp);
	cr_expect_eq(stats_now().refused[PROXY_CAP_client], 1);
	close(a);
	end_test();
}

/*
 * At proxy.max_connections an HTTP client gets a 503 naming the knob at
 * once, not a wait in the accept queue; after a close, it is served.
 */
Test(http1, a_connection_past_max_connections_gets_a_503_then_service_resumes)
{
	char resp[4096];
	int a;

	cfg.max_connections = 1;
	backend_start(script_keepalive);
	start_proxy();
	a = client_connect();
	one_request(a, GET("/a"), resp, sizeof(resp), "ok");

	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: limit-connections\r\n"), "%s", resp);
	cr_expect_not_null(strstr(resp, "proxy.max_connections)"), "%s", resp);
	cr_expect_eq(stats_now().refused[PROXY_CAP_connections], 1);
	cr_expect_eq(stats_now().refused[PROXY_CAP_client], 0);

	/* The open connection is still served; once it closes, a new one is. */
	one_request(a, GET("/a2"), resp, sizeof(resp), "ok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	close(a);
	for (int i = 0; i < 100 && stats_now().active > 0; i++)
		usleep(10000);
	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "after a close: %s", resp);
	cr_expect_eq(stats_now().refused[PROXY_CAP_connections], 1);
	end_test();
}

Test(http1, a_connection_past_the_memory_budget_gets_a_503_then_service_resumes)
{
	char resp[4096];

	cfg.max_buffer_memory_mib = 1;
	backend_start(script_keepalive);
	start_proxy();
	/* Another worker's connections (simulated) hold the whole budget. */
	cr_assert(limits_mem_charge(&px->mem, 1u << 20));
	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: limit-memory\r\n"), "%s", resp);
	cr_expect_not_null(strstr(resp, "proxy.max_buffer_memory_mib"), "%s", resp);
	cr_expect_eq(stats_now().refused[PROXY_CAP_memory], 1);
	cr_expect_eq(stats_now().buffer_memory_bytes, 0, "the refusal allocated nothing");

	/* Memory given back: served again, and what it took is counted. */
	limits_mem_uncharge(&px->mem, 1u << 20);
	request_from("127.0.0.1", resp, sizeof(resp));
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	cr_expect_geq(stats_now().buffer_memory_bytes, cfg.buffer_bytes);
	cr_expect_eq(atomic_load(&px->mem.used), stats_now().buffer_memory_bytes);
	end_test();
}

Test(http1, idle_pooled_connections_count_toward_max_connections)
{
	char resp[4096];
	int a, b;

	/* One client connection and its pooled upstream fill max_connections 2. */
	cfg.max_connections = 2;
	backend_start(script_keepalive);
	start_proxy();
	a = client_connect();
	one_request(a, GET("/a"), resp, sizeof(resp), "ok");
	cr_expect_eq(atomic_load(&accepted), 1);
	/*
	 * A second client makes three sockets past the cap: the idle pooled
	 * one goes, so b's request dials anew (a reuse would keep 1), and
	 * b's upstream is not pooled after it (a, b: the cap).
	 */
	b = client_connect();
	one_request(b, GET("/b"), resp, sizeof(resp), "ok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	cr_expect_eq(atomic_load(&accepted), 2, "the pooled connection was reused past the cap");
	one_request(a, GET("/a2"), resp, sizeof(resp), "ok");
	cr_expect_eq(atomic_load(&accepted), 3, "b's upstream was pooled past the cap");
	close(a);
	close(b);
	end_test();
}

/* ---- the proxy's own shortages are not the endpoints' ---------------- */

static atomic_int sockets_to_fail; /* upstream socket() calls still to fail */
static atomic_int fail_errno;

static int failing_socket(int domain, int type, int protocol)
{
	if (atomic_fetch_sub(&sockets_to_fail, 1) > 0) {
		errno = atomic_load(&fail_errno);
		return -1;
	}
	return socket(domain, type, protocol);
}

/* Outcomes recorded for both endpoints, ejected count, budget and retries. */
static void svc_state(struct proxy_service_stats *ss, uint64_t *failed)
{
	const struct es_svc_view *sv = es_view_service(proxy_es_view(px), &cfg, &svc);
	uint64_t now = (uint64_t)test_now_ms() * 1000000;

	cr_assert_not_null(sv);
	es_service_read(sv, now, ss);
	*failed = 0;
	for (uint32_t i = 0; i < 2; i++) {
		struct proxy_endpoint_stats es;

		es_endpoint_read(sv, i, now, &es);
		*failed += es.failed;
	}
}

/*
 * Requests while each of errs in turn is the proxy's own shortage, from
 * socket() or, late, from SO_ERROR once the non-blocking connect ended
 * (the connect_error seam): each gets 503 proxy-resources at once,
 * counted, with no failure recorded against an endpoint (one would eject
 * it here), no retry (one socket or connect asked for) and no budget
 * spent; once the shortage is over, requests go through.
 */
static void expect_local_errors_blame_no_endpoint(const int *errs, size_t n_errs, bool late)
{
	struct config_resilience *r = &svc.resilience;
	struct proxy_opts opts = {.endpoint_sockaddr = two_eps_sockaddr,
				  .open_socket = failing_socket,
				  .connect_error = test_failing_connect_error};
	int sockets_left = late ? 0 : 1000; /* socket() calls to fail */
	struct proxy_service_stats before, after;
	uint64_t failed;
	char resp[4096], err[256] = "";
	int ret;

	config_resilience_default(r);
	r->consecutive_failures = 1; /* one failure recorded would eject */
	r->max_ejection_pct = 100;
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);
	backend_start(script_keepalive);
	two_eps_port = svc.ports[0].target_port;
	memset(two_eps, 0, sizeof(two_eps));
	addr_parse("192.0.2.1", &two_eps[0].addr);
	addr_parse("192.0.2.2", &two_eps[1].addr);
	svc.endpoints = two_eps;
	svc.n_endpoints = 2;
	ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, NULL, &opts, &px, err,
			       sizeof(err));
	cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
	svc_state(&before, &failed);

	for (size_t i = 0; i < n_errs; i++) {
		int c = client_connect();

		atomic_store(&fail_errno, errs[i]);
		atomic_store(&test_connect_errno, errs[i]);
		atomic_store(&sockets_to_fail, sockets_left);
		atomic_store(&test_connects_to_fail, late ? 1 : 0);
		send_str(c, GET("/"));
		read_all(c, resp, sizeof(resp));
		cr_expect_eq(strncmp(resp, "HTTP/1.1 503", 12), 0, "%s: %s", strerror(errs[i]),
			     resp);
		cr_expect_not_null(strstr(resp, "x-shoal-error: proxy-resources\r\n"), "%s: %s",
				   strerror(errs[i]), resp);
		close(c);
		/* Each request tried one socket: no failover, no retry. */
		cr_expect_eq(sockets_left - atomic_load(&sockets_to_fail), 1,
			     "%s: the request tried %d sockets", strerror(errs[i]),
			     sockets_left - atomic_load(&sockets_to_fail));
	}
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);
	svc_state(&after, &failed);
	cr_expect_eq(failed, 0, "%llu failures recorded against the endpoints",
		     (unsigned long long)failed);
	cr_expect_eq(after.ejected, 0, "%u endpoints ejected", after.ejected);
	cr_expect_eq(after.ejections, before.ejections);
	cr_expect_eq(after.retries, before.retries, "retries %llu -> %llu",
		     (unsigned long long)before.retries, (unsigned long long)after.retries);
	/* Requests deposit into the budget; nothing withdrew from it. */
	cr_expect_geq(after.budget_balance, before.budget_balance, "budget %llu -> %llu",
		     (unsigned long long)before.budget_balance,
		     (unsigned long long)after.budget_balance);
	cr_expect_eq(stats_now().local_refused, n_errs);
	cr_expect_eq(stats_now().connect_failures, 0);

	/* The shortage is over: both endpoints still serve. */
	for (int i = 0; i < 4; i++) {
		int c = client_connect();

		one_request(c, GET("/"), resp, sizeof(resp), "\r\n\r\nok");
		close(c);
	}
	end_test();
}

/* EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL from socket(). */
Test(http1, local_socket_errors_are_a_503_and_never_blame_an_endpoint)
{
	static const int errs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), false);
}

/*
 * The same shortages reported late, by SO_ERROR once a non-blocking
 * connect ended (ENOBUFS, EADDRNOTAVAIL, ENOMEM): still the proxy's. The
 * code before charged the endpoint a failure (ejecting it here) and
 * retried on the other endpoint, which answered 200.
 */
Test(http1, local_errors_reported_by_so_error_are_a_503_and_never_blame_an_endpoint)
{
	static const int errs[] = {ENOBUFS, EADDRNOTAVAIL, ENOMEM};

	expect_local_errors_blame_no_endpoint(errs, sizeof(errs) / sizeof(errs[0]), true);
}

/*
 * A keep-alive client across two config changes: after every endpoint of
 * its service is replaced, its next request goes to the new endpoint (a
 * new dial, not the pooled connection to the removed one); after the
 * service is gone, its next request is answered 503 service-gone and the
 * connection closed, never left hanging.
 */
Test(http1, a_keep_alive_connection_follows_config_changes)
{
	struct config *next = NULL;
	char resp[4096];
	int c;

	start_two_endpoints(script_keepalive);
	/* Only 192.0.2.1 at first. */
	svc.n_endpoints = 1;
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&n_dials), 1);
	cr_assert_eq(atomic_load(&rs_dials[0]), 1, "the first request went to 192.0.2.1");

	/* Every endpoint replaced: 192.0.2.1 is gone, 192.0.2.2 is new. */
	svc.n_endpoints = 1;
	svc.endpoints = &two_eps[1];
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	one_request(c, GET("/2"), resp, sizeof(resp), "\r\n\r\nok");
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&n_dials), 2,
		     "the request after the change took the pooled connection to the removed "
		     "endpoint");
	cr_assert_eq(atomic_load(&rs_dials[1]), 2, "the request went to 192.0.2.%d, not .2",
		     atomic_load(&rs_dials[1]));

	/* The service is deleted: its VIP now belongs to nothing. */
	addr_parse("10.96.0.99", &svc.vips[0]);
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	addr_parse(VIP, &svc.vips[0]); /* test_orig_dst still says VIP */
	cr_assert_eq(proxy_update(px, next), 0);
	send_str(c, GET("/3"));
	read_all(c, resp, sizeof(resp)); /* to EOF: the connection is closed */
	cr_assert(!strncmp(resp, "HTTP/1.1 503", 12), "got '%s'", resp);
	cr_assert(strstr(resp, "x-shoal-error: service-gone"), "got '%s'", resp);
	cr_assert_eq(atomic_load(&n_dials), 2, "nothing was sent for the deleted service");
	close(c);
	end_test();
}

/*
 * Draining (SIGTERM): a keep-alive connection is served, its next
 * response says `connection: close` and the connection closes after it,
 * so the client reconnects instead of being cut.
 */
Test(http1, draining_closes_keep_alive_connections_after_their_response)
{
	char resp[4096];
	int c;

	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/a"), resp, sizeof(resp), "\r\n\r\nok");
	cr_expect_null(strcasestr(resp, "connection: close"), "%s", resp);
	proxy_drain(px);
	send_str(c, GET("/b"));
	read_all(c, resp, sizeof(resp)); /* to EOF: the proxy closes */
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "\r\nconnection: close\r\n\r\nok"), "%s", resp);
	cr_expect_eq(strlen(resp), strlen(OK2) + strlen("connection: close\r\n"), "%s", resp);
	close(c);
	/* A new connection is served too, and closed after its response. */
	c = client_connect();
	send_str(c, GET("/c"));
	read_all(c, resp, sizeof(resp));
	cr_expect_not_null(strstr(resp, "\r\nconnection: close\r\n\r\nok"), "%s", resp);
	close(c);
	end_test();
}

/* ---- timeouts and connection limits (docs/proxy.md, "Timeouts") ------- */

/* Reads one head, waits 400 ms, answers OK2 (keep-alive); then the next. */
static void script_slow_ok(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		usleep(400 * 1000);
		send_str(fd, OK2);
	}
}

/* Reads whatever comes and never answers, until the proxy closes. */
static void script_mute(int fd, int index)
{
	char buf[4096];

	(void)index;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* ms from t0 to the client's EOF (read 0) after resp was read; -1: none. */
static long eof_after(int fd, uint64_t t0)
{
	char c;

	if (read(fd, &c, 1) != 0)
		return -1;
	return (long)(test_now_ms() - t0);
}

Test(http1, a_body_that_stops_arriving_is_a_408_then_the_connection_closes)
{
	char resp[4096];
	uint64_t t0;
	long ms;
	int c;

	cfg.http_request_body_timeout_ms = 200;
	backend_start(script_mute);
	start_proxy();
	c = client_connect();
	send_str(c, "POST /up HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabc");
	t0 = test_now_ms();
	read_all(c, resp, sizeof(resp)); /* up to the close */
	ms = (long)(test_now_ms() - t0);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 408", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: body-timeout\r\n"), "%s", resp);
	cr_expect_geq(ms, 150, "408 after %ld ms, timeout 200", ms);
	cr_expect_lt(ms, 2500, "408 and close after %ld ms, timeout 200", ms);
	close(c);
	end_test();
}

Test(http1, a_silent_endpoint_is_a_504_after_the_response_head_timeout_and_a_get_is_retried)
{
	char resp[4096];
	uint64_t t0;
	long ms;
	int c;

	cfg.http_response_head_timeout_ms = 200;
	backend_start(script_mute);
	start_proxy();

	/* POST: not idempotent, one try, then 504. */
	c = client_connect();
	send_str(c, "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi");
	t0 = test_now_ms();
	cr_assert(read_until(c, resp, sizeof(resp), "\r\n\r\n"), "%s", resp);
	ms = (long)(test_now_ms() - t0);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 504", 12), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "x-shoal-error: timeout\r\n"), "%s", resp);
	cr_expect_geq(ms, 150, "504 after %ld ms, head timeout 200", ms);
	cr_expect_lt(ms, 1500, "504 after %ld ms, head timeout 200", ms);
	cr_expect_eq(atomic_load(&accepted), 1, "the POST was sent again");
	cr_expect_eq(stats_now().http_retries, 0);
	close(c);

	/* GET: idempotent, so a head timeout is retried within the budget. */
	c = client_connect();
	send_str(c, GET("/"));
	cr_assert(read_until(c, resp, sizeof(resp), "\r\n\r\n"), "%s", resp);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 504", 12), 0, "%s", resp);
	cr_expect_geq(stats_now().http_retries, 1, "the GET was not retried");
	cr_expect_eq(atomic_load(&accepted), 1 + 1 + (int)stats_now().http_retries);
	close(c);
	end_test();
}

Test(http1, a_route_without_a_timeout_gets_the_default_request_timeout)
{
	char resp[4096];
	uint64_t t0;
	long ms;
	int c;

	cfg.http_request_timeout_ms = 300;
	backend_start(script_mute);
	start_proxy();
	c = client_connect();
	send_str(c, GET("/"));
	t0 = test_now_ms();
	cr_assert(read_until(c, resp, sizeof(resp), "\r\n\r\n"), "%s", resp);
	ms = (long)(test_now_ms() - t0);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 504", 12), 0, "%s", resp);
	cr_expect_geq(ms, 250, "504 after %ld ms, request timeout 300", ms);
	cr_expect_lt(ms, 1500, "504 after %ld ms, request timeout 300", ms);
	close(c);
	end_test();
}

Test(http1, the_last_allowed_request_gets_connection_close_then_eof)
{
	char resp[4096];
	int c;

	cfg.http_max_requests_per_connection = 2;
	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "ok");
	cr_expect_null(strstr(resp, "connection: close"), "first of two: %s", resp);
	one_request(c, GET("/2"), resp, sizeof(resp), "ok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", resp);
	cr_expect_not_null(strstr(resp, "\r\nconnection: close\r\n\r\nok"), "second of two: %s",
			   resp);
	cr_expect_neq(eof_after(c, test_now_ms()), -1, "no EOF after the last response");
	close(c);
	end_test();
}

Test(http1, a_connection_past_its_maximum_age_closes_after_its_response_or_when_idle)
{
	char resp[4096];
	uint64_t t0;
	long ms;
	int c;

	cfg.http_max_connection_age_ms = 300;
	backend_start(script_slow_ok);
	start_proxy();
	/* A response that ends past the age carries connection: close. */
	c = client_connect();
	one_request(c, GET("/slow"), resp, sizeof(resp), "ok");
	cr_expect_not_null(strstr(resp, "\r\nconnection: close\r\n\r\nok"), "%s", resp);
	cr_expect_neq(eof_after(c, test_now_ms()), -1, "no EOF after the last response");
	close(c);

	/* An idle connection is closed at its age, without a request. */
	t0 = test_now_ms();
	c = client_connect();
	ms = eof_after(c, t0);
	cr_expect_geq(ms, 250, "idle connection closed after %ld ms, age 300", ms);
	cr_expect_lt(ms, 1500, "idle connection closed after %ld ms, age 300", ms);
	close(c);
	end_test();
}

/*
 * An idle keep-alive connection does not pin the config of its last
 * request: as soon as its worker takes a newer snapshot, the connection
 * holds that one (refs: the proxy, the worker, the connection), so the
 * old config is freed without waiting for another request.
 */
Test(http1, an_idle_keep_alive_connection_moves_to_the_newest_snapshot_at_once)
{
	struct config *next = NULL;
	unsigned int refs = 0;
	char resp[4096];
	int c;

	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	cr_assert_eq(config_copy(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	for (uint64_t until = test_now_ms() + 2000; test_now_ms() < until; usleep(1000)) {
		refs = atomic_load(&px->snap->refs);
		if (refs == 3)
			break;
	}
	cr_assert_eq(refs, 3, "the newest snapshot has %u references, not 3 (proxy, worker, "
		     "the idle connection)", refs);
	one_request(c, GET("/2"), resp, sizeof(resp), "\r\n\r\nok");
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	close(c);
	end_test();
}

#define SLOW_READER_BODY (4u << 20) /* far more than the sockets and buffer hold */

/* Reads a head, takes 600 ms before reading its body, then answers OK2. */
static void script_slow_reader(int fd, int index)
{
	char head[4096], buf[65536];
	size_t left = SLOW_READER_BODY;

	(void)index;
	if (!read_head(fd, head, sizeof(head)))
		return;
	usleep(600 * 1000);
	while (left) {
		ssize_t n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));

		if (n <= 0)
			return;
		left -= (size_t)n;
	}
	send_str(fd, OK2);
}

Test(http1, a_body_held_back_by_a_slow_endpoint_is_not_a_body_timeout)
{
	char resp[4096], head[128];
	char *body = malloc(SLOW_READER_BODY + 1);
	int c;

	cr_assert_not_null(body);
	memset(body, 'b', SLOW_READER_BODY);
	body[SLOW_READER_BODY] = '\0';
	cfg.http_request_body_timeout_ms = 200;
	backend_start(script_slow_reader);
	start_proxy();
	c = client_connect();
	snprintf(head, sizeof(head), "PUT /up HTTP/1.1\r\nHost: web\r\nContent-Length: %u\r\n\r\n",
		 SLOW_READER_BODY);
	send_str(c, head);
	send_str(c, body); /* blocks while the endpoint does not read */
	free(body);
	cr_assert(read_until(c, resp, sizeof(resp), "ok"), "%s", resp);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	close(c);
	end_test();
}

Test(http1, a_service_sets_its_own_response_head_timeout)
{
	char resp[4096];
	uint64_t t0;
	long ms;
	int c;

	cfg.http_response_head_timeout_ms = 10000;
	svc.resilience.response_head_timeout_ms = 200;
	backend_start(script_mute);
	start_proxy();
	c = client_connect();
	send_str(c, "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi");
	t0 = test_now_ms();
	cr_assert(read_until(c, resp, sizeof(resp), "\r\n\r\n"), "%s", resp);
	ms = (long)(test_now_ms() - t0);
	cr_expect_eq(strncmp(resp, "HTTP/1.1 504", 12), 0, "%s", resp);
	cr_expect_geq(ms, 150, "504 after %ld ms, the service's head timeout 200", ms);
	cr_expect_lt(ms, 1500, "504 after %ld ms, the service's head timeout 200", ms);
	close(c);
	end_test();
}

/* ---- golden metrics follow the live config (docs/metrics.md, "Series identity") ---- */

/*
 * The next config: a new service "default/other" first, then web, so web
 * changes position; ids stay by index (config.h). Published with
 * proxy_update.
 */
static void publish_reordered(void)
{
	struct config *next = NULL;
	struct config_service tmp;

	cr_assert_eq(config_copy(&cfg, 2, &next), 0);
	tmp = next->services[0];
	next->services[0] = next->services[1];
	next->services[1] = tmp;
	strcpy(next->services[0].name, "other");
	strcpy(next->services[0].namespace, "default");
	addr_parse("10.96.9.9", &next->services[0].vips[0]);
	next->services[0].n_vips = 1;
	next->services[0].ports[0].port = SVC_PORT;
	next->services[0].ports[0].protocol = CONFIG_PROTO_HTTP;
	next->services[0].n_ports = 1;
	for (int i = 0; i < 2; i++)
		next->services[i].id = (uint32_t)i;
	cr_assert_eq(proxy_update(px, next), 0);
}

/* The sum of every /metrics sample whose line starts with prefix. */
static unsigned long long metric_sum(const char *prefix)
{
	struct metrics_sources src = {.proxy = px};
	struct metrics_buf b = {};
	unsigned long long sum = 0;

	cr_assert_eq(metrics_render(&src, &b), 0);
	for (char *line = b.data; line && line < b.data + b.len;) {
		char *nl = memchr(line, '\n', b.data + b.len - line);
		char *sp;

		if (!nl)
			break;
		*nl = '\0';
		sp = strrchr(line, ' ');
		if (!strncmp(line, prefix, strlen(prefix)) && sp)
			sum += strtoull(sp + 1, NULL, 10);
		line = nl + 1;
	}
	metrics_buf_free(&b);
	return sum;
}

/* Within 2 s, metric_sum(prefix) reaches want (a request is recorded once it ended). */
static void expect_metric(const char *prefix, unsigned long long want)
{
	uint64_t until = test_now_ms() + 2000;
	unsigned long long got;

	while ((got = metric_sum(prefix)) != want && test_now_ms() < until)
		usleep(5000);
	cr_expect_eq(got, want, "%s: %llu, want %llu", prefix, got, want);
}

Test(http1, requests_are_counted_by_service_across_a_reorder)
{
	char resp[4096];
	int c1, c2;

	backend_start(script_keepalive);
	start_proxy();
	c1 = client_connect();
	one_request(c1, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	publish_reordered();
	/* The keep-alive connection opened on the first config, and a new one. */
	one_request(c1, GET("/2"), resp, sizeof(resp), "\r\n\r\nok");
	c2 = client_connect();
	one_request(c2, GET("/3"), resp, sizeof(resp), "\r\n\r\nok");
	expect_metric("shoal_http_requests_total{service=\"default/web\",route=\"\","
		      "backend=\"default/web\"",
		      3);
	expect_metric("shoal_http_responses_total{service=\"default/web\"", 3);
	cr_expect_eq(metric_sum("shoal_http_requests_total{service=\"default/other\""), 0);
	close(c1);
	close(c2);
	end_test();
}

Test(http1, an_opaque_connection_on_an_older_config_is_counted_under_its_service)
{
	char resp[256];
	int c;

	svc.ports[0].protocol = CONFIG_PROTO_TCP;
	backend_start(script_banner);
	start_proxy();
	c = client_connect();
	cr_assert(read_until(c, resp, sizeof(resp), "220 banner\r\n"), "got '%s'", resp);
	/* The connection keeps the first config for its life; web moves to index 1. */
	publish_reordered();
	send_str(c, "echo me");
	cr_assert(read_until(c, resp, sizeof(resp), "echo me"), "got '%s'", resp);
	close(c);
	expect_metric("shoal_tcp_close_total{service=\"default/web\"}", 1);
	expect_metric("shoal_tcp_open_total{service=\"default/web\"}", 1);
	expect_metric("shoal_tcp_read_bytes_total{service=\"default/web\"}", 7);
	end_test();
}

Test(http1, an_open_connection_needing_a_buffer_past_the_budget_is_reset_and_no_endpoint_blamed)
{
	char resp[4096];
	uint64_t before;
	ssize_t n;
	int c;

	cfg.max_buffer_memory_mib = 1;
	backend_start(script_keepalive);
	start_proxy();
	/* A head in progress holds the one buffer the worker ever allocated. */
	c = client_connect();
	send_str(c, "GET /a HTTP/1.1\r\nHost: web\r\n");
	for (int i = 0; i < 500 && stats_now().buffers != 1; i++)
		usleep(1000);
	cr_assert_eq(stats_now().buffers, 1);
	/* The rest of the budget goes elsewhere (other workers, simulated). */
	before = atomic_load(&px->mem.used);
	cr_assert(limits_mem_charge(&px->mem, (1u << 20) - before));
	/* Complete: its rewrite (and then the response) needs a second buffer. */
	send_str(c, "\r\n");
	n = read(c, resp, sizeof(resp));
	cr_expect(n == 0 || (n < 0 && errno == ECONNRESET), "read %zd (%s): the connection was served",
		  n, n < 0 ? strerror(errno) : "");
	cr_expect_eq(stats_now().refused[PROXY_CAP_memory], 1);
	cr_expect_eq(stats_now().buffer_memory_bytes, before, "the proxy grew past its budget");
	cr_expect_eq(stats_now().http_retries, 0, "the proxy's shortage was retried");
	{
		const struct es_svc_view *sv = es_view_service(proxy_es_view(px), &cfg, &svc);
		struct proxy_endpoint_stats es;

		cr_assert_not_null(sv);
		es_endpoint_read(sv, 0, (uint64_t)test_now_ms() * 1000000, &es);
		cr_expect_eq(es.failed, 0, "the endpoint was blamed for the proxy's shortage");
	}
	close(c);
	/* Memory back: served again, and the endpoint was not penalised for it. */
	limits_mem_uncharge(&px->mem, (1u << 20) - before);
	c = client_connect();
	one_request(c, GET("/b"), resp, sizeof(resp), "ok");
	cr_expect_eq(strncmp(resp, "HTTP/1.1 200", 12), 0, "%s", resp);
	close(c);
	end_test();
}

/*
 * Draining: a keep-alive connection idle between requests is closed with
 * a FIN once it has been quiet for WORKER_DRAIN_IDLE_MS, so the drain ends
 * when the work does; one in use is not cut.
 */
Test(http1, draining_closes_idle_keep_alive_connections_with_a_fin)
{
	char resp[4096], byte;
	uint64_t t0, ms;
	ssize_t n;
	int c;

	backend_start(script_keepalive);
	start_proxy();
	c = client_connect();
	one_request(c, GET("/a"), resp, sizeof(resp), "\r\n\r\nok");
	t0 = test_now_ms();
	proxy_drain(px);
	n = read(c, &byte, 1);
	ms = test_now_ms() - t0;
	cr_expect_eq(n, 0, "read gave %zd (%s), want EOF", n, n < 0 ? strerror(errno) : "");
	cr_expect(ms >= 800 && ms < 2500, "closed %llu ms into the drain, want about %d",
		  (unsigned long long)ms, 1000);
	close(c);
	end_test();
}
