// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The h2 kind through the real proxy (proxy_fixture.h) over loopback
 * sockets: an nghttp2 client on one connection, HTTP/2 endpoints from
 * h2_test_backend.h mapped onto two endpoint addresses.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>

#include "proxy/h2_test_backend.h"
#include "proxy/proxy_fixture.h"
#include "telemetry/metrics.h"

/* A blocking nghttp2 client of the proxy and what its streams got. */
struct h2_client {
	int fd;
	nghttp2_session *s;
	int closed;	 /* streams closed */
	int ok;		 /* :status 200 */
	int by[2];	 /* x-backend a, b */
	size_t body;	 /* DATA bytes, all streams */
	int resets;	 /* streams closed with an error code */
	bool body_is_ok; /* every 2-byte body was "ok" */
	int grpc_ok;	 /* grpc-status 0 */
	int grpc_unavailable; /* grpc-status 14 */
	int not_200;	      /* final heads of another :status (an endpoint's 503, 400) */
};

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct h2_client *c = ud;

	(void)s, (void)frame, (void)flags;
	if (namelen == 7 && !memcmp(name, ":status", 7) && valuelen == 3 &&
	    !memcmp(value, "200", 3))
		c->ok++;
	else if (namelen == 7 && !memcmp(name, ":status", 7) && valuelen == 3 && value[0] != '1')
		c->not_200++;
	if (namelen == 9 && !memcmp(name, "x-backend", 9) && valuelen == 1 &&
	    (value[0] == 'a' || value[0] == 'b'))
		c->by[value[0] - 'a']++;
	if (namelen == 11 && !memcmp(name, "grpc-status", 11) && valuelen == 1 && value[0] == '0')
		c->grpc_ok++;
	if (namelen == 11 && !memcmp(name, "grpc-status", 11) && valuelen == 2 &&
	    !memcmp(value, "14", 2))
		c->grpc_unavailable++;
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	struct h2_client *c = ud;

	(void)s, (void)flags, (void)id;
	if (len == 2 && memcmp(data, "ok", 2))
		c->body_is_ok = false;
	c->body += len;
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2_client *c = ud;

	(void)s, (void)id;
	c->closed++;
	if (code != NGHTTP2_NO_ERROR)
		c->resets++;
	return 0;
}

static void client_open(struct h2_client *c)
{
	nghttp2_session_callbacks *cb;

	memset(c, 0, sizeof(*c));
	c->body_is_ok = true;
	c->fd = client_connect();
	cr_assert_eq(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	cr_assert_eq(nghttp2_session_client_new(&c->s, cb, c), 0);
	nghttp2_session_callbacks_del(cb);
	cr_assert_eq(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static void client_get(struct h2_client *c, const char *path)
{
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
	};

	cr_assert_gt(nghttp2_submit_request(c->s, NULL, nv, 4, NULL, NULL), 0);
}

#define H2_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A gRPC request message: a 5-byte prefix and "hi", sent as the body. */
static ssize_t grpc_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			      uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	static const uint8_t msg[] = {0, 0, 0, 0, 2, 'h', 'i'};

	(void)s, (void)id, (void)src, (void)ud;
	cr_assert_geq(length, sizeof(msg));
	memcpy(buf, msg, sizeof(msg));
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return sizeof(msg);
}

/* A unary gRPC call of path (a POST with a body). */
static void client_grpc_call(struct h2_client *c, const char *path)
{
	nghttp2_data_provider body = {.read_callback = grpc_body_read};
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE},
	};

	cr_assert_gt(nghttp2_submit_request(c->s, NULL, nv, H2_ARRAY_LEN(nv), &body, NULL), 0);
}

static void client_grpc(struct h2_client *c)
{
	client_grpc_call(c, H2TB_GRPC_FLAKY);
}

/* Send what the session has, read what comes, until want streams closed and body bytes came. */
static void client_pump(struct h2_client *c, int want, size_t body)
{
	uint64_t deadline = test_now_ms() + IO_TIMEOUT_MS;
	uint8_t buf[16384];

	while ((c->closed < want || c->body < body) && test_now_ms() < deadline) {
		const uint8_t *out;
		ssize_t n;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

		while ((n = nghttp2_session_mem_send(c->s, &out)) > 0)
			write_full(c->fd, out, (size_t)n);
		cr_assert_geq(n, 0, "mem_send: %s", nghttp2_strerror((int)n));
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(c->fd, buf, sizeof(buf));
		cr_assert_gt(n, 0, "read from the proxy: %zd (%s)", n, n ? strerror(errno) : "EOF");
		cr_assert_geq(nghttp2_session_mem_recv(c->s, buf, (size_t)n), 0);
	}
	cr_assert_eq(c->closed, want, "%d of %d streams closed in %d ms", c->closed, want,
		     IO_TIMEOUT_MS);
	cr_assert_geq(c->body, body, "%zu of %zu body bytes in %d ms", c->body, body,
		      IO_TIMEOUT_MS);
}

/* Send what the session has, read what comes, until want streams closed. */
static void client_run(struct h2_client *c, int want)
{
	client_pump(c, want, 0);
}

static void client_close(struct h2_client *c)
{
	nghttp2_session_del(c->s);
	close(c->fd);
}

static struct h2tb ends[2];

/* proxy.http2.grpc_head_hold_ms of the next start_h2. */
static uint32_t hold_ms = CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS;

/* Two HTTP/2 endpoints, 192.0.2.1 (a) and .2 (b), on an h2c port of svc. */
static void start_h2(void)
{
	uint16_t ports[2];

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(h2tb_start(&ends[i], (char)('a' + i)), 0);
		ports[i] = ends[i].port;
	}
	set_mapped_endpoints(ports, 2);
	svc.ports[0].protocol = CONFIG_PROTO_H2C;
	cfg.http2 = (struct config_http2){
	    .max_concurrent_streams = CONFIG_DEFAULT_H2_MAX_STREAMS,
	    .max_header_list_bytes = CONFIG_DEFAULT_H2_MAX_HEADER_LIST,
	    .hpack_table_bytes = CONFIG_DEFAULT_H2_HPACK_TABLE,
	    .stream_window_bytes = CONFIG_DEFAULT_H2_STREAM_WINDOW,
	    .session_window_bytes = CONFIG_DEFAULT_H2_SESSION_WINDOW,
	    .max_pending_acks = CONFIG_DEFAULT_H2_MAX_PENDING_ACKS,
	    .reset_burst = CONFIG_DEFAULT_H2_RESET_BURST,
	    .reset_rate = CONFIG_DEFAULT_H2_RESET_RATE,
	    .max_continuations = CONFIG_DEFAULT_H2_MAX_CONTINUATIONS,
	    .max_sent_resets = CONFIG_DEFAULT_H2_MAX_SENT_RESETS,
	    .stall_timeout_ms = CONFIG_DEFAULT_H2_STALL_TIMEOUT_MS,
	    .grpc_head_hold_ms = hold_ms,
	};
	cfg.http_pool_idle_timeout_ms = 30000;
	cfg.idle_timeout_ms = 30000;
	start_proxy();
}

static void stop_h2(void)
{
	proxy_stop(px);
	px = NULL;
	for (int i = 0; i < 2; i++)
		h2tb_stop(&ends[i]);
}

Test(proxy, h2_streams_picked_one_by_one)
{
	struct h2_client c;
	struct proxy_stats st;
	const int n = 40;

	start_h2();
	client_open(&c);
	for (int i = 0; i < n; i++)
		client_get(&c, "/");
	client_run(&c, n);
	st = stats_now();
	cr_expect_eq(c.ok, n, "%d of %d streams got 200", c.ok, n);
	cr_expect_eq(c.resets, 0);
	cr_expect_eq(c.body, 2 * (size_t)n);
	cr_expect(c.body_is_ok);
	cr_log_info("40 streams on one connection: endpoint a %d, b %d", c.by[0], c.by[1]);
	/* One pick per stream: both endpoints served some of one connection's streams. */
	cr_expect_eq(c.by[0] + c.by[1], n, "x-backend a %d, b %d", c.by[0], c.by[1]);
	cr_expect_gt(c.by[0], 0, "endpoint a got none of %d streams (b %d)", n, c.by[1]);
	cr_expect_gt(c.by[1], 0, "endpoint b got none of %d streams (a %d)", n, c.by[0]);
	cr_expect_eq(atomic_load(&ends[0].requests) + atomic_load(&ends[1].requests), n);
	cr_expect_eq(st.accepted, 1);
	cr_expect_eq(st.http_requests, (uint64_t)n);
	/* Pooled: one session per endpoint, one connection each. */
	cr_expect_eq(st.h2_sessions_opened, 2);
	cr_expect_eq(atomic_load(&ends[0].conns), 1);
	cr_expect_eq(atomic_load(&ends[1].conns), 1);
	/* A second round on the same connection reuses both sessions. */
	for (int i = 0; i < n; i++)
		client_get(&c, "/");
	client_run(&c, 2 * n);
	cr_expect_eq(c.ok, 2 * n);
	cr_expect_eq(stats_now().h2_sessions_opened, 2);
	client_close(&c);
	stop_h2();
	end_test();
}

Test(proxy, h2_body_through_flow_control)
{
	struct h2_client c;

	start_h2();
	client_open(&c);
	/* 1 MiB each: four times the stream window, so windows must be given back. */
	client_get(&c, "/big");
	client_get(&c, "/big");
	client_run(&c, 2);
	cr_expect_eq(c.ok, 2);
	cr_expect_eq(c.resets, 0);
	cr_expect_eq(c.body, 2 * (size_t)H2TB_BIG_BYTES, "got %zu bytes", c.body);
	client_close(&c);
	stop_h2();
	end_test();
}

/* A route over every path of svc to svc itself; retryable marks its calls idempotent. */
static void route_all(struct config_route *route, bool retryable)
{
	memset(route, 0, sizeof(*route));
	route->path_match = CONFIG_PATH_ANY;
	route->n_backends = 1;
	route->backends[0].svc_index = 0;
	route->backends[0].weight = 1;
	route->backends[0].cum_weight = 1;
	route->total_weight = 1;
	route->retryable = retryable;
	route->retry_grpc_statuses[0] = 14;
	route->n_retry_grpc_statuses = 1;
	svc.routes = route;
	svc.n_routes = 1;
}

/*
 * gRPC calls that endpoint a answers with a head and then trailers
 * UNAVAILABLE (no trailers-only answer) on a retryable route: n calls
 * with hold_ms set on one connection. Returns the client's tally.
 */
static struct h2_client grpc_flaky_calls_route(int n, bool retryable, uint32_t hold,
						const uint32_t *route_hold)
{
	static struct config_route route;
	struct h2_client c;

	route_all(&route, retryable);
	if (route_hold) {
		route.grpc_head_hold_ms = *route_hold;
		route.grpc_head_hold_set = true;
	}
	hold_ms = hold;
	start_h2();
	client_open(&c);
	for (int i = 0; i < n; i++)
		client_grpc(&c);
	client_run(&c, n);
	client_close(&c);
	return c;
}

static struct h2_client grpc_flaky_calls(int n, bool retryable, uint32_t hold)
{
	return grpc_flaky_calls_route(n, retryable, hold, NULL);
}

static void grpc_flaky_done(void)
{
	stop_h2();
	svc.routes = NULL;
	svc.n_routes = 0;
	hold_ms = CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS;
	end_test();
}

Test(proxy, h2_grpc_head_then_unavailable_is_retried_while_the_head_is_held)
{
	const int n = 40;
	struct h2_client c = grpc_flaky_calls(n, true, CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS);
	int failed = atomic_load(&ends[0].requests);
	struct proxy_stats st = stats_now();

	cr_log_info("held heads: endpoint a failed %d calls, b answered %d; %llu retries", failed,
		    atomic_load(&ends[1].requests), (unsigned long long)st.http_retries);
	cr_expect_eq(c.grpc_ok, n, "%d of %d calls OK (%d UNAVAILABLE)", c.grpc_ok, n,
		     c.grpc_unavailable);
	cr_expect_eq(c.grpc_unavailable, 0);
	/* One head per call: the failed tries' heads never reached the client. */
	cr_expect_eq(c.ok, n, "%d heads for %d calls", c.ok, n);
	cr_expect_eq(c.resets, 0);
	cr_expect_eq(c.body, 2 * (size_t)n);
	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(st.http_retries, (uint64_t)failed, "%llu retries for %d failures",
		     (unsigned long long)st.http_retries, failed);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_head_then_unavailable_reaches_the_client_without_the_hold)
{
	const int n = 40;
	struct h2_client c = grpc_flaky_calls(n, true, 0);
	int failed = atomic_load(&ends[0].requests);

	/* Hold off: the head went on at once, so the trailers could only follow it. */
	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(c.grpc_unavailable, failed, "%d UNAVAILABLE for %d failures",
		     c.grpc_unavailable, failed);
	cr_expect_eq(c.grpc_ok, n - failed);
	cr_expect_eq(stats_now().http_retries, 0);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_route_hold_of_0_overrides_the_proxys)
{
	const int n = 40;
	const uint32_t never = 0;
	/* The proxy holds (100 ms); this route says never. */
	struct h2_client c =
	    grpc_flaky_calls_route(n, true, CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS, &never);
	int failed = atomic_load(&ends[0].requests);

	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(c.grpc_unavailable, failed, "%d UNAVAILABLE for %d failures",
		     c.grpc_unavailable, failed);
	cr_expect_eq(stats_now().http_retries, 0);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_head_not_held_when_the_route_retries_nothing)
{
	const int n = 40;
	struct h2_client c = grpc_flaky_calls(n, false, CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS);
	int failed = atomic_load(&ends[0].requests);

	/* POSTs on a route not marked retryable: nothing to hold for. */
	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(c.grpc_unavailable, failed);
	cr_expect_eq(c.grpc_ok, n - failed);
	cr_expect_eq(stats_now().http_retries, 0);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_reset_after_a_held_head_gets_the_proxys_own_error)
{
	static struct config_route route;
	struct h2_client c;
	const int n = 10;

	route_all(&route, true);
	start_h2();
	client_open(&c);
	for (int i = 0; i < n; i++)
		client_grpc_call(&c, H2TB_GRPC_RESET);
	client_run(&c, n);
	client_close(&c);
	/*
	 * Every try sends a head, then a reset: each reset comes while the
	 * head is held, so it is retried as one before a head, and once the
	 * retries are spent the client gets the proxy's trailers-only
	 * UNAVAILABLE, never an endpoint's head cut short.
	 */
	cr_expect_eq(c.grpc_unavailable, n, "%d of %d calls UNAVAILABLE", c.grpc_unavailable, n);
	cr_expect_eq(c.ok, n, "%d heads for %d calls", c.ok, n);
	cr_expect_eq(c.resets, 0, "%d streams reset", c.resets);
	cr_expect_gt(stats_now().http_retries, 0);
	grpc_flaky_done();
}

/* ---- a gRPC call answered with an HTTP status and no grpc-status ---- */

static void expect_metric_has(const char *prefix, const char *has, unsigned long long want)
{
	test_expect_metric(px, prefix, has, want);
}

static void expect_metric(const char *prefix, unsigned long long want)
{
	test_expect_metric(px, prefix, NULL, want);
}

#define GRPC_CALLS "shoal_grpc_requests_total{service=\"default/web\",method=\"other\","

/*
 * n calls of path (one of H2TB_GRPC_503...: endpoint a answers with a
 * bare HTTP status) on one connection, on a route retrying UNAVAILABLE,
 * retryable or not. Returns the client's tally.
 */
static struct h2_client grpc_http_calls(int n, const char *path, bool retryable)
{
	static struct config_route route;
	struct h2_client c;

	route_all(&route, retryable);
	start_h2();
	client_open(&c);
	for (int i = 0; i < n; i++)
		client_grpc_call(&c, path);
	client_run(&c, n);
	client_close(&c);
	return c;
}

/*
 * A route retrying UNAVAILABLE, and endpoint a answering :status 503
 * without grpc-status (path: on the head alone, or with an HTML body):
 * a gRPC client reads that as UNAVAILABLE, so it is retried as a
 * trailers-only UNAVAILABLE is; every call succeeds on b and the client
 * never sees a 503, nor a byte of its body.
 */
static void expect_http_503_retried(const char *path)
{
	const int n = 40;
	struct h2_client c = grpc_http_calls(n, path, true);
	int failed = atomic_load(&ends[0].requests);
	struct proxy_stats st = stats_now();

	cr_log_info("%s: endpoint a answered %d calls 503, b %d; %llu retries", path, failed,
		    atomic_load(&ends[1].requests), (unsigned long long)st.http_retries);
	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(c.grpc_ok, n, "%d of %d calls OK", c.grpc_ok, n);
	cr_expect_eq(c.not_200, 0, "the client saw %d heads of endpoint a's 503", c.not_200);
	cr_expect_eq(c.ok, n, "%d heads for %d calls", c.ok, n);
	cr_expect_eq(c.resets, 0);
	cr_expect_eq(c.body, 2 * (size_t)n, "%zu body bytes: the 503's went on", c.body);
	cr_expect(c.body_is_ok);
	cr_expect_eq(st.http_retries, (uint64_t)failed, "%llu retries for %d 503s",
		     (unsigned long long)st.http_retries, failed);
	/* Each call recorded once, by its last try: OK. */
	expect_metric(GRPC_CALLS "grpc_status=\"0\"}", (unsigned long long)n);
	expect_metric("shoal_endpoint_outcomes_total{service=\"default/web\",endpoint=\"192.0.2.1",
		      (unsigned long long)failed);
}

Test(proxy, h2_grpc_http_503_ending_the_stream_is_retried_as_unavailable)
{
	expect_http_503_retried(H2TB_GRPC_503);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_http_503_with_a_body_is_retried_as_unavailable)
{
	expect_http_503_retried(H2TB_GRPC_503_BODY);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_http_503_not_retried_reaches_the_client_recorded_unavailable)
{
	const int n = 40;
	/* POSTs on a route not marked retryable: no retry. */
	struct h2_client c = grpc_http_calls(n, H2TB_GRPC_503_BODY, false);
	int failed = atomic_load(&ends[0].requests);

	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	/* What the endpoint sent, as it sent it: the 503, its body, no grpc-status added. */
	cr_expect_eq(c.not_200, failed, "%d 503s for %d failures", c.not_200, failed);
	cr_expect_eq(c.grpc_unavailable, 0);
	cr_expect_eq(c.grpc_ok, n - failed);
	cr_expect_eq(c.body, 2 * (size_t)(n - failed) + (size_t)failed * strlen(H2TB_HTML));
	cr_expect_eq(stats_now().http_retries, 0);
	/* Recorded as a gRPC client reads it: UNAVAILABLE, never "none". */
	expect_metric(GRPC_CALLS "grpc_status=\"14\"}", (unsigned long long)failed);
	expect_metric(GRPC_CALLS "grpc_status=\"0\"}", (unsigned long long)(n - failed));
	cr_expect_eq(test_metric_sum(px, GRPC_CALLS "grpc_status=\"none\"}", NULL), 0);
	/* The HTTP families keep the status the client got. */
	expect_metric_has("shoal_http_responses_total{service=\"default/web\"",
			  "status_code=\"503\"", (unsigned long long)failed);
	grpc_flaky_done();
}

Test(proxy, h2_grpc_http_400_is_internal_a_failure_the_route_does_not_retry)
{
	const int n = 40;
	/* The route retries UNAVAILABLE only: a 400 reads INTERNAL, not retried. */
	struct h2_client c = grpc_http_calls(n, H2TB_GRPC_400, true);
	int failed = atomic_load(&ends[0].requests);

	cr_expect_gt(failed, 0, "endpoint a took none of %d calls", n);
	cr_expect_eq(c.not_200, failed, "%d 400s for %d calls of endpoint a", c.not_200, failed);
	cr_expect_eq(stats_now().http_retries, 0);
	expect_metric(GRPC_CALLS "grpc_status=\"13\"}", (unsigned long long)failed);
	/* INTERNAL is a failure of the endpoint for the balancer and the breaker. */
	expect_metric("shoal_endpoint_outcomes_total{service=\"default/web\",endpoint=\"192.0.2.1"
		      "\",outcome=\"failure\"}",
		      (unsigned long long)failed);
	grpc_flaky_done();
}

/* ---- an answer that ends before its request does ---- */

/* The rest of an early-answered request's body: "hi", then END_STREAM. */
static ssize_t rest_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)s, (void)id, (void)src, (void)ud;
	cr_assert_geq(length, 2);
	memcpy(buf, "hi", 2);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return 2;
}

Test(proxy, h2_answer_ending_before_its_request_is_recorded_as_the_endpoints)
{
	struct h2_client c;
	nghttp2_data_provider rest = {.read_callback = rest_read};
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)"/", 5, 1, NGHTTP2_NV_FLAG_NONE},
	};
	int32_t id;

	start_h2();
	client_open(&c);
	/*
	 * The endpoints answer at the request head: the whole response (200,
	 * "ok", END_STREAM) comes while the request's body is still to come,
	 * so its upstream stream stays open (half closed) after its answer.
	 */
	id = nghttp2_submit_headers(c.s, NGHTTP2_FLAG_NONE, -1, NULL, nv, H2_ARRAY_LEN(nv), NULL);
	cr_assert_gt(id, 0);
	client_pump(&c, 0, 2);
	cr_assert_eq(c.ok, 1);
	/* The request ends now: the client's stream closes before the upstream one. */
	cr_assert_eq(nghttp2_submit_data(c.s, NGHTTP2_FLAG_END_STREAM, id, &rest), 0);
	client_run(&c, 1);
	cr_expect_eq(c.resets, 0);
	/* The endpoint's complete answer, not a reset: its status, its outcome. */
	expect_metric_has("shoal_http_responses_total{service=\"default/web\"",
			  "status_code=\"200\"", 1);
	expect_metric_has("shoal_endpoint_outcomes_total{service=\"default/web\"",
			  "outcome=\"success\"", 1);
	client_close(&c);
	stop_h2();
	end_test();
}

/* A GET of / that claims an identity of its own, and another x-shoal-* field. */
static void client_get_forged(struct h2_client *c)
{
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)"/", 5, 1, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-shoal-peer-identity", (uint8_t *)"spiffe://evil/ns/kube-system/sa/admin",
	     21, 37, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-shoal-timeout-ms", (uint8_t *)"5", 18, 1, NGHTTP2_NV_FLAG_NONE},
	};

	cr_assert_gt(nghttp2_submit_request(c->s, NULL, nv, H2_ARRAY_LEN(nv), NULL, NULL), 0);
}

/*
 * n forged GETs on one connection of caller default/client, with
 * mtls.peer_identity_header as given: what the endpoints saw, summed.
 */
static void forged_gets(int n, bool header, int *peer_ids, int *shoal_fields)
{
	struct h2_client c;

	test_src_ident = "default/client";
	cfg.mtls.peer_identity_header = header;
	strcpy(cfg.identity.trust_domain, "cluster.local");
	start_h2();
	client_open(&c);
	for (int i = 0; i < n; i++)
		client_get_forged(&c);
	client_run(&c, n);
	cr_expect_eq(c.ok, n, "%d of %d streams got 200", c.ok, n);
	client_close(&c);
	*peer_ids = atomic_load(&ends[0].peer_ids) + atomic_load(&ends[1].peer_ids);
	*shoal_fields = atomic_load(&ends[0].shoal_fields) + atomic_load(&ends[1].shoal_fields);
	cr_expect_eq(atomic_load(&ends[0].requests) + atomic_load(&ends[1].requests), n);
}

Test(proxy, h2_request_carries_the_callers_identity_once_and_never_the_clients)
{
	const int n = 20;
	int peer_ids, shoal_fields;

	forged_gets(n, true, &peer_ids, &shoal_fields);
	/* One x-shoal-peer-identity per request, the proxy's: the forged one was dropped. */
	cr_expect_eq(peer_ids, n, "%d x-shoal-peer-identity fields for %d requests", peer_ids, n);
	for (int i = 0; i < 2; i++)
		if (atomic_load(&ends[i].peer_ids))
			cr_expect_str_eq(ends[i].peer_id, "spiffe://cluster.local/ns/default/sa/client");
	cr_expect_eq(shoal_fields, 0, "%d client x-shoal-* fields reached an endpoint",
		     shoal_fields);
	stop_h2();
	end_test();
}

Test(proxy, h2_client_shoal_fields_dropped_without_the_identity_header)
{
	const int n = 10;
	int peer_ids, shoal_fields;

	forged_gets(n, false, &peer_ids, &shoal_fields);
	cr_expect_eq(peer_ids, 0, "%d x-shoal-peer-identity fields reached an endpoint", peer_ids);
	cr_expect_eq(shoal_fields, 0);
	stop_h2();
	end_test();
}
