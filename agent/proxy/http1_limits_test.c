// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The limits of an HTTP connection through the proxy on 127.0.0.1
 * (docs/proxy.md, "Budgets" and "Timeouts"): the per-client, connection
 * and memory caps, the body, response head and request timeouts,
 * max_requests_per_connection and max_connection_age_ms. The fixture is
 * http1_fixture.h.
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
	cr_assert_eq(test_config_snapshot(&cfg, 1, &next), 0);
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
