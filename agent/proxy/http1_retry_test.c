// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tries of an HTTP request through the proxy on 127.0.0.1
 * (http1_retry.c, attempt.c; docs/resilience.md, "Wiring"): the resend
 * after a stale pooled connection, retries of a 503 (never of a POST),
 * the client's deadline header, fail-fast with every endpoint ejected,
 * replay slabs, and the proxy's own shortages, which are no endpoint's
 * failure. The fixture is http1_fixture.h.
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

/* ---- resilience glue (docs/resilience.md, "Wiring") -------------------- */

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
	struct proxy_opts opts = {.open_socket = failing_socket,
				  .connect_error = test_failing_connect_error};
	int sockets_left = late ? 0 : 1000; /* socket() calls to fail */
	struct proxy_service_stats before, after;
	uint64_t failed;
	char resp[4096];

	config_resilience_default(r);
	r->consecutive_failures = 1; /* one failure recorded would eject */
	r->max_ejection_pct = 100;
	atomic_store(&sockets_to_fail, 0);
	atomic_store(&test_connects_to_fail, 0);
	start_two_endpoints_opts(script_keepalive, &opts);
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
