// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The proxy's tracing hook without sockets: a parsed request head in a
 * connection's buffer is rewritten with the outgoing context (incoming
 * propagation headers out, ours in, the body and pipelined bytes moved
 * along), or left alone when a limit would break; the span is recorded
 * once when the request ends, with the call's identities and hop (HTTP/1
 * and HTTP/2).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/observe.h"
#include "proxy/h2_int.h"
#include "proxy/http1.h"
#include "proxy/opaque.h"
#include "proxy/worker.h"
#include "recording/http_metrics.h"
#include "recording/trace.h"

#define BUF 1024
#define MAX_HEADERS 16

static struct config cfg;
static struct config_service svc;
static struct config_service *svc_list[1] = {&svc}; /* cfg.services */
static struct config_endpoint ep;
static struct tracer *tracer;
static struct worker w;
static struct conn *c;
static char bufs[2 * BUF];
static struct http1_header slots[2 * MAX_HEADERS];

static void setup(void)
{
	struct trace_config tc = {.sample_rate = 1.0, .seed = 42};
	char err[256];

	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	memset(&w, 0, sizeof(w));
	strcpy(svc.name, "api");
	strcpy(svc.namespace, "default");
	addr_parse("10.0.0.5", &ep.addr);
	svc.endpoints = &ep;
	svc.n_endpoints = 1;
	cfg.services = svc_list;
	cfg.n_services = 1;
	cfg.buffer_bytes = BUF;
	cr_assert_eq(tracer_create(&tc, 1, &tracer, err, sizeof(err)), 0, "%s", err);
	w.cfg = &cfg;
	w.trace = tracer_worker(tracer, 0);
	w.metrics = metrics_http_shard_new();
	c = calloc(1, sizeof(*c) + sizeof(struct http1_conn));
	c->http = (struct http1_conn *)(c + 1);
	c->http->headers = slots;
	c->svc = &svc;
	c->to_upstream.data = bufs;
	c->to_client.data = bufs + BUF;
	c->http->rq_head.headers = c->http->headers;
	c->http->rq_head.cap = MAX_HEADERS;
}

static void teardown(void)
{
	tracer_destroy(tracer);
	metrics_http_shard_free(w.metrics);
	free(c);
}

TestSuite(trace_hook, .init = setup, .fini = teardown);

/* Put text in the client buffer, parse its head, run the hook; the head's new length. */
static size_t hook(const char *text, size_t len, uint32_t max_headers)
{
	struct http1_conn *h = c->http;
	struct http1_limits lim = {8192, 8192, max_headers};
	size_t consumed = 0;

	memcpy(bufs, text, len);
	c->to_upstream.tail = (uint32_t)len;
	http1_parser_init(&h->rq_parser, HTTP1_REQUEST, &lim);
	cr_assert_eq(http1_parse_head(&h->rq_parser, bufs, len, &h->rq_head, &consumed),
		     HTTP1_DONE);
	h->rq_head_start_ns = 1000;
	cr_assert_eq(tele_trace_head(&w, c, &consumed), 0);
	return consumed;
}

static const char *find(const char *hay, size_t len, const char *needle)
{
	return memmem(hay, len, needle, strlen(needle));
}

Test(trace_hook, w3c_in_child_out_body_and_pipelined_bytes_kept)
{
	static const char req[] =
	    "POST /x HTTP/1.1\r\n"
	    "Host: api\r\n"
	    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
	    "X-Other: 1\r\n"
	    "TraceState: a=b\r\n"
	    "Content-Length: 4\r\n"
	    "\r\n"
	    "BODYGET /next HTTP/1.1\r\n\r\n";
	size_t head = hook(req, sizeof(req) - 1, MAX_HEADERS);
	const char *b = bufs;
	size_t tail = c->to_upstream.tail;

	cr_assert(
	    !memcmp(
		b, "POST /x HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-",
		strlen("POST /x HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-")),
	    "%.*s", (int)tail, b);
	cr_assert_null(find(b + 30, head - 30, "00f067aa0ba902b7-01"),
		       "the incoming span id is gone");
	cr_assert_not_null(find(b, head, "\r\ntracestate: a=b\r\n"), "tracestate carried");
	cr_assert_null(find(b, head, "TraceState:"), "the incoming tracestate line is gone");
	cr_assert_not_null(find(b, head, "\r\nX-Other: 1\r\n"));
	cr_assert_eq(c->http->rq_head.n_headers, 5, "Host, X-Other, Content-Length + 2 injected");
	cr_assert(!memcmp(b + head - 4, "\r\n\r\n", 4));
	cr_assert_eq(tail - head, strlen("BODYGET /next HTTP/1.1\r\n\r\n"));
	cr_assert(!memcmp(b + head, "BODYGET /next HTTP/1.1\r\n\r\n", tail - head));
	cr_assert_eq(c->http->rq_head.content_length, 4);
}

Test(trace_hook, b3_multi_in_w3c_and_b3_out)
{
	static const char req[] = "GET / HTTP/1.1\r\n"
				  "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n"
				  "X-B3-SpanId: e457b5a2e4d86bd1\r\n"
				  "X-B3-Sampled: 1\r\n"
				  "Host: api\r\n\r\n";
	size_t head = hook(req, sizeof(req) - 1, MAX_HEADERS);

	cr_assert_not_null(find(bufs, head, "traceparent: 00-80f198ee56343ba864fe8b2a57d3eff7-"));
	cr_assert_not_null(find(bufs, head, "X-B3-ParentSpanId: e457b5a2e4d86bd1"), "%.*s",
			   (int)head, bufs);
	cr_assert_null(find(bufs, head, "X-B3-SpanId: e457b5a2e4d86bd1"),
		       "the old span id is gone");
	cr_assert_eq(c->to_upstream.tail, head);
}

Test(trace_hook, a_head_that_would_break_a_limit_goes_on_untouched)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: api\r\nX-A: 1\r\n\r\n";
	size_t head = hook(req, sizeof(req) - 1, 2); /* max_headers 2: no room for ours */

	cr_assert_eq(head, sizeof(req) - 1);
	cr_assert(!memcmp(bufs, req, sizeof(req) - 1), "untouched");

	/* A buffer too full for the injected lines. */
	char big[BUF];

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nHost: api\r\n\r\n", 29);
	head = hook(big, BUF - 10, MAX_HEADERS);
	cr_assert_eq(head, 29);
	cr_assert(!memcmp(bufs, big, BUF - 10), "untouched");
}

Test(trace_hook, no_tracer_no_change)
{
	static const char req[] = "GET / HTTP/1.1\r\nb3: 1\r\nHost: api\r\n\r\n";

	w.trace = NULL;
	cr_assert_eq(hook(req, sizeof(req) - 1, MAX_HEADERS), sizeof(req) - 1);
	cr_assert(!memcmp(bufs, req, sizeof(req) - 1));
}

Test(trace_hook, the_span_is_recorded_once_when_the_request_ends)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: api\r\n\r\n";
	struct trace_span out[4];

	hook(req, sizeof(req) - 1, MAX_HEADERS);
	c->http->target = &svc;
	c->at.tried = 1;
	c->at.last_idx = 0;
	c->http->target_port_be = htons(8080);
	metrics_http_done(&w, c, 503);
	metrics_http_done(&w, c, 503); /* the same request again: nothing */
	cr_assert_eq(trace_worker_drain(w.trace, out, 4), 1);
	cr_assert_str_eq(out[0].service, "default/api");
	cr_assert_str_eq(out[0].method, "GET");
	cr_assert_str_eq(out[0].endpoint, "10.0.0.5:8080");
	cr_assert_eq(out[0].status_code, 503);
	cr_assert(out[0].error);
}

/*
 * The call's identities: the caller's from the connection, and, when the
 * last try's connection went through the mTLS tunnel, the endpoint's
 * configured identity and mtls (docs/tracing.md).
 */
Test(trace_hook, a_tunneled_call_carries_both_identities)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: api\r\n\r\n";
	struct trace_span out[2];

	c->src_ident = "default/client";
	ep.identity = "shop/web";
	hook(req, sizeof(req) - 1, MAX_HEADERS);
	c->http->target = &svc;
	c->at.tried = 1;
	c->at.last_idx = 0;
	c->http->up_tunneled = true;
	metrics_http_done(&w, c, 200);
	cr_assert_eq(trace_worker_drain(w.trace, out, 2), 1);
	cr_expect_str_eq(out[0].source_identity, "default/client");
	cr_expect_str_eq(out[0].destination_identity, "shop/web");
	cr_expect(out[0].mtls);
}

Test(trace_hook, a_direct_call_has_no_destination_identity)
{
	static const char req1[] = "GET /a HTTP/1.1\r\nHost: api\r\n\r\n";
	struct trace_span out[2];

	/* The endpoint has an identity, but this try's connection was direct
	 * (a pooled plaintext one, say): nothing was proven. */
	ep.identity = "shop/web";
	c->src_ident = "default/client";
	hook(req1, sizeof(req1) - 1, MAX_HEADERS);
	c->http->target = &svc;
	c->at.tried = 1;
	c->http->up_tunneled = false;
	metrics_http_done(&w, c, 200);
	cr_assert_eq(trace_worker_drain(w.trace, out, 2), 1);
	cr_expect_str_eq(out[0].source_identity, "default/client");
	cr_expect_str_eq(out[0].destination_identity, "");
	cr_expect_not(out[0].mtls);

	/* The next request on the connection, from a caller now unknown, and
	 * refused before any try: nothing of the first one stays. */
	c->src_ident = NULL;
	c->at.tried = 0;
	c->http->up_tunneled = true;
	hook(req1, sizeof(req1) - 1, MAX_HEADERS);
	c->http->rq_head_start_ns = 2000;
	c->http->tele.traced_start_ns = 2000;
	metrics_http_done(&w, c, 403);
	cr_assert_eq(trace_worker_drain(w.trace, out, 2), 1);
	cr_expect_str_eq(out[0].source_identity, "");
	cr_expect_str_eq(out[0].destination_identity, "");
	cr_expect_not(out[0].mtls, "no try, no hop");
}

/* The same for an HTTP/2 stream (tele_h2_start, tele_h2_finish). */
Test(trace_hook, an_h2_stream_through_the_tunnel)
{
	nghttp2_nv nv[16] = {{(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0}};
	nghttp2_rcbuf *rc[32] = {NULL};
	struct h2_down d = {.c = c};
	struct h2_stream st = {.d = &d, .rq = {nv, rc, 1, 16, 0}};
	struct trace_span out[2];

	c->src_ident = "default/client";
	ep.identity = "shop/grpc";
	tele_h2_start(&w, &st);
	cr_assert_not_null(st.tele);
	st.target = &svc;
	st.bt.idx = 0;
	st.status = 200;
	st.up_tunneled = true;
	tele_h2_finish(&w, &st, 200, -1, &ep.addr);
	cr_assert_eq(trace_worker_drain(w.trace, out, 2), 1);
	cr_expect_str_eq(out[0].method, "POST");
	cr_expect_str_eq(out[0].source_identity, "default/client");
	cr_expect_str_eq(out[0].destination_identity, "shop/grpc");
	cr_expect(out[0].mtls);
	free(st.tele);
}
