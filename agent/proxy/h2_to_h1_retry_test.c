// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/2 streams to an HTTP/1.1-only service (h2_to_h1.c) through the
 * proxy on 127.0.0.1, with the scripted backend of http1_fixture.h behind
 * two endpoint addresses: their failures are retried on the other
 * endpoint as an upstream stream's are (h2.c, h2_retry), and a route's
 * idle_timeout_ms times out one silent stream while the connection's
 * others go on. And the caller's identity (x-shoal-peer-identity) goes
 * on once per request, translated or not, with the clients' x-shoal-*
 * fields dropped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "common/addr.h"
#include "proxy/http1_fixture.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"

#define MAX_STREAMS 8

/* A blocking nghttp2 client of the proxy and what its streams got. */
struct h2c {
	int fd;
	nghttp2_session *s;
	int closed;
	struct {
		int32_t id;
		int status;
		uint32_t code;	/* RST_STREAM error code at close */
		bool has_error; /* an x-shoal-error field */
	} st[MAX_STREAMS];
	int n;
};

static int h2c_slot(struct h2c *c, int32_t id)
{
	for (int i = 0; i < c->n; i++)
		if (c->st[i].id == id)
			return i;
	return -1;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct h2c *c = ud;
	int i = h2c_slot(c, frame->hd.stream_id);

	(void)s, (void)flags;
	if (i < 0)
		return 0;
	if (namelen == 7 && !memcmp(name, ":status", 7) && valuelen == 3)
		c->st[i].status = atoi((const char *)value);
	if (namelen == 13 && !memcmp(name, "x-shoal-error", 13))
		c->st[i].has_error = true;
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2c *c = ud;
	int i = h2c_slot(c, id);

	(void)s;
	c->closed++;
	if (i >= 0)
		c->st[i].code = code;
	return 0;
}

static void h2c_open(struct h2c *c)
{
	nghttp2_session_callbacks *cb;

	memset(c, 0, sizeof(*c));
	c->fd = client_connect();
	cr_assert_eq(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	cr_assert_eq(nghttp2_session_client_new(&c->s, cb, c), 0);
	nghttp2_session_callbacks_del(cb);
	cr_assert_eq(nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

/* The body source of a request: len bytes of body_byte, then the end. */
struct h2c_body {
	size_t len, off;
};

static char body_byte(size_t i)
{
	return (char)('a' + i % 26);
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2c_body *b = src->ptr;
	size_t n = b->len - b->off < length ? b->len - b->off : length;

	(void)s, (void)id, (void)ud;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)body_byte(b->off + i);
	b->off += n;
	if (b->off == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* A request for path; with body (not NULL) a PUT of body->len bytes. Its slot. */
static int h2c_request(struct h2c *c, const char *path, struct h2c_body *body)
{
	char cl[24];
	int cll = snprintf(cl, sizeof(cl), "%zu", body ? body->len : 0);
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)(body ? "PUT" : "GET"), 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-length", (uint8_t *)cl, 14, (size_t)cll, NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider dp = {.source.ptr = body, .read_callback = body_read};
	int32_t id = nghttp2_submit_request(c->s, NULL, nv, body ? 5 : 4, body ? &dp : NULL, NULL);

	cr_assert_gt(id, 0);
	cr_assert_lt(c->n, MAX_STREAMS);
	c->st[c->n].id = id;
	return c->n++;
}

/* Send what the session has, read what comes, until want streams closed. */
static void h2c_run(struct h2c *c, int want)
{
	uint64_t deadline = test_now_ms() + IO_TIMEOUT_MS;
	uint8_t buf[16384];

	while (c->closed < want && test_now_ms() < deadline) {
		const uint8_t *out;
		ssize_t n;
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

		while ((n = nghttp2_session_mem_send(c->s, &out)) > 0)
			cr_assert_eq(send(c->fd, out, (size_t)n, MSG_NOSIGNAL), n);
		cr_assert_geq(n, 0, "mem_send: %s", nghttp2_strerror((int)n));
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		n = read(c->fd, buf, sizeof(buf));
		cr_assert_gt(n, 0, "read from the proxy: %zd (%s)", n, n ? strerror(errno) : "EOF");
		cr_assert_geq(nghttp2_session_mem_recv(c->s, buf, (size_t)n), 0);
	}
	cr_assert_eq(c->closed, want, "%d of %d streams closed in %d ms", c->closed, want,
		     IO_TIMEOUT_MS);
}

static void h2c_close(struct h2c *c)
{
	nghttp2_session_del(c->s);
	close(c->fd);
}

/* svc as an h2c port in front of HTTP/1.1-only endpoints, with the proxy's HTTP/2 limits. */
static void h2_to_http1_service(void)
{
	svc.ports[0].protocol = CONFIG_PROTO_H2C;
	svc.ports[0].upstream = CONFIG_UPSTREAM_HTTP1;
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
	};
}

/*
 * Reads each request with its Content-Length body and checks its bytes;
 * answers 503 to the first request of the run, 200 "ok" to the rest
 * (400 to a body that did not arrive as sent).
 */
static void script_first_503_checks_body(int fd, int index)
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
		if (n == 0)
			send_str(fd,
				 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
		else
			send_str(fd,
				 intact ? OK2 : "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
	}
}

Test(http1, h2_to_http1_a_503_is_retried_on_the_other_endpoint_with_its_body)
{
	struct h2c c;
	struct h2c_body body = {.len = 20000};
	int i;

	h2_to_http1_service();
	start_two_endpoints(script_first_503_checks_body);
	h2c_open(&c);
	i = h2c_request(&c, "/up", &body);
	h2c_run(&c, 1);
	cr_expect_eq(c.st[i].status, 200, "got %d", c.st[i].status);
	cr_expect_eq(c.st[i].code, NGHTTP2_NO_ERROR);
	cr_expect_eq(atomic_load(&rs_requests), 2, "the 503 was retried once");
	cr_expect_eq(atomic_load(&rs_intact), 2, "both tries carried the body byte for byte");
	cr_expect_neq(atomic_load(&rs_dials[0]), atomic_load(&rs_dials[1]),
		      "the retry went to the other endpoint");
	cr_expect_eq(stats_now().http_retries, 1);
	cr_expect_eq(stats_now().h2_to_h1_requests, 2);
	h2c_close(&c);
	end_test();
}

static uint16_t refused;

/* 192.0.2.1 refuses connections (a closed port); 192.0.2.2 is the backend. */
static socklen_t first_refuses_sockaddr(const struct shoal_addr *e, uint16_t port_be,
					struct sockaddr_storage *out)
{
	socklen_t len = two_eps_sockaddr(e, port_be, out);
	char a[64];

	addr_ntop(e, a, sizeof(a));
	if (!strcmp(a, "192.0.2.1"))
		((struct sockaddr_in *)out)->sin_port = htons(refused);
	return len;
}

/* A free port nothing listens on: a connect to it is refused. */
static uint16_t closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

Test(http1, h2_to_http1_a_refused_connect_is_retried_on_the_other_endpoint)
{
	struct h2c c;
	int n = 6;

	h2_to_http1_service();
	refused = closed_port();
	start_two_endpoints(script_keepalive);
	/* The fixture sets its own endpoint seam: started again with ours, which wraps it. */
	proxy_stop(px);
	px = NULL;
	{
		char err[256] = "";
		struct proxy_opts opts = {.endpoint_sockaddr = first_refuses_sockaddr};
		int ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, NULL, &opts, &px,
					   err, sizeof(err));

		cr_assert_eq(ret, 0, "proxy_start: %s (%s)", strerror(-ret), err);
	}
	h2c_open(&c);
	for (int k = 0; k < n; k++)
		h2c_request(&c, "/", NULL);
	h2c_run(&c, n);
	for (int k = 0; k < n; k++)
		cr_expect_eq(c.st[k].status, 200, "stream %d got %d", k, c.st[k].status);
	/* Every try that met the refusing endpoint went on to the other one. */
	cr_expect_eq(stats_now().http_errors, 0);
	cr_expect_eq(stats_now().http_retries, stats_now().h2_to_h1_requests - (uint64_t)n);
	/* The picks spread the streams over both endpoints: some met the refusal. */
	cr_expect_gt(stats_now().http_retries, 0);
	h2c_close(&c);
	end_test();
}

/* Answers /stall never (holds the connection until the proxy closes it), the rest with OK2. */
static void script_stall_one(int fd, int index)
{
	char head[4096], rest[64];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		if (strstr(head, "GET /stall ")) {
			while (read(fd, rest, sizeof(rest)) > 0)
				;
			return;
		}
		send_str(fd, OK2);
	}
}

Test(http1, h2_route_idle_timeout_times_out_a_silent_stream_and_not_the_others)
{
	static struct config_route route;
	struct h2c c;
	uint64_t t0;
	int stalled, ok1, ok2;

	h2_to_http1_service();
	memset(&route, 0, sizeof(route));
	route.path_match = CONFIG_PATH_ANY;
	route.n_backends = 1;
	route.backends[0].svc_index = 0;
	route.backends[0].weight = 1;
	route.backends[0].cum_weight = 1;
	route.total_weight = 1;
	route.idle_timeout_ms = 300;
	svc.routes = &route;
	svc.n_routes = 1;
	start_two_endpoints(script_stall_one);
	h2c_open(&c);
	t0 = test_now_ms();
	stalled = h2c_request(&c, "/stall", NULL);
	ok1 = h2c_request(&c, "/", NULL);
	h2c_run(&c, 2);
	cr_expect_eq(c.st[ok1].status, 200, "the other stream got %d", c.st[ok1].status);
	cr_expect_eq(c.st[stalled].status, 504, "the silent stream got %d", c.st[stalled].status);
	cr_expect(c.st[stalled].has_error, "the 504 is the proxy's (x-shoal-error)");
	cr_expect_geq(test_now_ms() - t0, 250, "timed out after %llu ms",
		      (unsigned long long)(test_now_ms() - t0));
	/* The connection goes on. */
	ok2 = h2c_request(&c, "/", NULL);
	h2c_run(&c, 3);
	cr_expect_eq(c.st[ok2].status, 200);
	h2c_close(&c);
	svc.routes = NULL;
	svc.n_routes = 0;
	end_test();
}

/* ---- the caller's identity (docs/mtls.md) ---- */

/* The src_ident seam: every client is default/client. */
static const char *caller_client(const struct shoal_addr *addr)
{
	(void)addr;
	return "default/client";
}

/* The last request head the backend read (script_record_shoal_fields). */
static char shoal_seen[4096];
static atomic_int peer_lines, shoal_lines;

/* Keep-alive: counts each head's x-shoal-peer-identity and other x-shoal-* lines, answers OK2. */
static void script_record_shoal_fields(int fd, int index)
{
	char head[4096];

	(void)index;
	while (read_head(fd, head, sizeof(head))) {
		for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
			if (!strncasecmp(p + 2, "x-shoal-peer-identity:", 22))
				atomic_fetch_add(&peer_lines, 1);
			else if (!strncasecmp(p + 2, "x-shoal-", 8))
				atomic_fetch_add(&shoal_lines, 1);
		}
		memcpy(shoal_seen, head, sizeof(head));
		atomic_fetch_add(&rs_requests, 1);
		send_str(fd, OK2);
	}
}

Test(http1, h2_to_http1_request_carries_the_callers_identity_once_and_never_the_clients)
{
	const struct proxy_opts seams = {.src_ident = caller_client};
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"web", 10, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)"/who", 5, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-shoal-peer-identity", (uint8_t *)"spiffe://evil/ns/kube-system/sa/admin",
	     21, 37, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-shoal-timeout-ms", (uint8_t *)"5", 18, 1, NGHTTP2_NV_FLAG_NONE},
	};
	const int n = 4;
	struct h2c c;

	atomic_store(&peer_lines, 0);
	atomic_store(&shoal_lines, 0);
	cfg.mtls.peer_identity_header = true;
	strcpy(cfg.identity.trust_domain, "cluster.local");
	h2_to_http1_service();
	start_two_endpoints_opts(script_record_shoal_fields, &seams);
	h2c_open(&c);
	for (int i = 0; i < n; i++) {
		int32_t id = nghttp2_submit_request(c.s, NULL, nv, 6, NULL, NULL);

		cr_assert_gt(id, 0);
		c.st[c.n++].id = id;
	}
	h2c_run(&c, n);
	for (int i = 0; i < n; i++)
		cr_expect_eq(c.st[i].status, 200, "stream %d got %d", i, c.st[i].status);
	cr_expect_eq(atomic_load(&rs_requests), n);
	/* Exactly one line each, the proxy's (h2.c adds it; the translation adds none). */
	cr_expect_eq(atomic_load(&peer_lines), n, "%d x-shoal-peer-identity lines for %d requests",
		     atomic_load(&peer_lines), n);
	cr_expect_eq(atomic_load(&shoal_lines), 0, "a client x-shoal-* field went on: %s",
		     shoal_seen);
	cr_expect_not_null(
	    strstr(shoal_seen, "\r\nx-shoal-peer-identity: spiffe://cluster.local/ns/default/sa/client\r\n"),
	    "%s", shoal_seen);
	h2c_close(&c);
	end_test();
}

Test(http1, request_carries_the_callers_identity_once_and_never_the_clients)
{
	const struct proxy_opts seams = {.src_ident = caller_client};
	char resp[1024];
	int fd;

	atomic_store(&peer_lines, 0);
	atomic_store(&shoal_lines, 0);
	cfg.mtls.peer_identity_header = true;
	strcpy(cfg.identity.trust_domain, "cluster.local");
	start_two_endpoints_opts(script_record_shoal_fields, &seams);
	fd = client_connect();
	one_request(fd,
		    "GET /who HTTP/1.1\r\nHost: web\r\n"
		    "X-Shoal-Peer-Identity: spiffe://evil/ns/kube-system/sa/admin\r\n"
		    "x-shoal-timeout-ms: 5000\r\n\r\n",
		    resp, sizeof(resp), "ok");
	cr_expect_not_null(strstr(resp, " 200 "), "%s", resp);
	cr_expect_eq(atomic_load(&peer_lines), 1, "%s", shoal_seen);
	cr_expect_eq(atomic_load(&shoal_lines), 0, "%s", shoal_seen);
	cr_expect_not_null(
	    strstr(shoal_seen, "\r\nx-shoal-peer-identity: spiffe://cluster.local/ns/default/sa/client\r\n"),
	    "%s", shoal_seen);
	close(fd);
	end_test();
}
