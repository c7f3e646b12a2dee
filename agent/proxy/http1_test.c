// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The HTTP side of the proxy on 127.0.0.1: detection, request-at-a-time
 * HTTP/1.1 with pooled upstream connections, the proxy's own errors. A
 * scripted backend (one thread per connection, each running the test's
 * script with the connection's index) plays the server, so that races a
 * real server only hits by chance (closing a pooled connection just as a
 * request arrives) happen every time. The fixture is http1_fixture.h;
 * the tries of a request (retries, replays, the proxy's own shortages)
 * are tested in http1_retry_test.c, a connection's budgets and timeouts
 * in http1_limits_test.c, all in one binary (proxy_http1).
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
#include "proxy/http1_fixture.h"
#include "telemetry/metrics.h"

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
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
	cr_assert_eq(proxy_update(px, next), 0);
	c = client_connect();
	one_request(c, GET("/1"), resp, sizeof(resp), "\r\n\r\nok");
	cr_assert(!strncmp(resp, "HTTP/1.1 200", 12), "got '%s'", resp);
	cr_assert_eq(atomic_load(&n_dials), 1);
	cr_assert_eq(atomic_load(&rs_dials[0]), 1, "the first request went to 192.0.2.1");

	/* Every endpoint replaced: 192.0.2.1 is gone, 192.0.2.2 is new. */
	svc.n_endpoints = 1;
	svc.endpoints = &two_eps[1];
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
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
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
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

/* ---- golden metrics follow the live config (docs/metrics.md, "Series identity") ---- */

/*
 * The next config: a new service "default/other" first, then web, so web
 * changes position; ids stay by index (config.h). Published with
 * proxy_update.
 */
static void publish_reordered(void)
{
	struct config *next = NULL;
	struct config_service *tmp;

	cr_assert_eq(test_config_snapshot(&cfg, 2, &next), 0);
	tmp = next->services[0];
	next->services[0] = next->services[1];
	next->services[1] = tmp;
	strcpy(next->services[0]->name, "other");
	strcpy(next->services[0]->namespace, "default");
	addr_parse("10.96.9.9", &next->services[0]->vips[0]);
	next->services[0]->n_vips = 1;
	next->services[0]->ports[0].port = SVC_PORT;
	next->services[0]->ports[0].protocol = CONFIG_PROTO_HTTP;
	next->services[0]->n_ports = 1;
	for (int i = 0; i < 2; i++)
		next->services[i]->id = (uint32_t)i;
	cr_assert_eq(proxy_update(px, next), 0);
}

static void expect_metric(const char *prefix, unsigned long long want)
{
	test_expect_metric(px, prefix, NULL, want);
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
	cr_expect_eq(test_metric_sum(px, "shoal_http_requests_total{service=\"default/other\"", NULL), 0);
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
