// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/http1.h"
#include "proxy/http1_retry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/endpoint_pick.h"
#include "proxy/opaque.h"
#include "proxy/pool.h"
#include "proxy/service_lookup.h"
#include "proxy/http_routes.h"
#include "proxy/sock.h"
#include "resilience/deadline.h"

static void http1_run(struct worker *w, struct conn *c);

/* ---- closing ---------------------------------------------------------- */

bool http1_between_requests(const struct conn *c)
{
	const struct http1_conn *h = c->http;

	return c->kind == CONN_KIND_HTTP && c->state != CONN_CLOSED && h && !h->lingering &&
	       h->rq == HTTP1_REQ_HEAD && h->rs == HTTP1_RESP_NONE;
}

bool http1_drain_idle(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns)
{
	if (!http1_between_requests(c) || c->to_upstream.tail || c->to_client.tail ||
	    now - c->http->last_active_ns < idle_ns)
		return false;
	http1_close(w, c, false);
	return true;
}

/* ---- the request ------------------------------------------------------ */

/* Frame body bytes of the request in [rq_fwd, tail). 0 or a parse error. */
static int http1_rq_frame(struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	uint32_t from = h->rq_fwd;

	while (h->rq == HTTP1_REQ_BODY && h->rq_fwd < b->tail) {
		uint32_t avail = b->tail - h->rq_fwd;

		if (h->rq_body == HTTP1_BODY_LENGTH) {
			uint32_t n = h->rq_left < avail ? (uint32_t)h->rq_left : avail;

			h->rq_fwd += n;
			h->rq_left -= n;
			if (!h->rq_left)
				h->rq = HTTP1_REQ_DONE;
		} else {
			struct http1_chunk_step step;
			int r =
			    http1_chunked_feed(&h->rq_chunked, b->data + h->rq_fwd, avail, &step);

			h->rq_fwd += step.len;
			if (r < 0)
				return r;
			if (r == HTTP1_DONE)
				h->rq = HTTP1_REQ_DONE;
		}
	}
	http1_slab_append(c, from, h->rq_fwd);
	return 0;
}

/*
 * The config c's services come from: the snapshot c holds a reference to
 * (proxy_update), so c's service pointers and the indices of its routes'
 * backends always belong to one live config, however many updates land
 * while c is open. http1_dispatch moves c to the newest one before each
 * request (worker_conn_follow), never during one. Sizes (buffers, header
 * arrays) stay the worker's: they shaped the connection's allocation.
 */
static const struct config *http1_svc_cfg(const struct worker *w, const struct conn *c)
{
	return worker_conn_config(w, c);
}

/*
 * A uniform 32-bit number for weighted picks: xorshift64*, one state per
 * worker thread, seeded from the clock. Splits need uniformity, not
 * unpredictability.
 */
static uint32_t http1_random(void)
{
	static __thread uint64_t state;

	if (!state)
		state =
		    timer_now_ns() ^ ((uint64_t)(uintptr_t)&state << 17) ^ 0x9e3779b97f4a7c15ull;
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return (uint32_t)((state * 2685821657736338717ull) >> 32);
}

/* The endpoint port of svc for service port svc_port, or 0 when it has none. */
static uint16_t http1_port_be(const struct config_service *svc, uint16_t svc_port)
{
	for (int i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == svc_port)
			return service_target_port_be(&svc->ports[i]);
	return 0;
}

/*
 * The service and endpoint port that serve the parsed request: the first
 * matching route's weighted backend (on the port with the number the
 * request arrived on), else c's own service.
 */
static void http1_route(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	const struct http1_head *hd = &h->rq_head;
	const char *buf = c->to_upstream.data;
	const struct config_route *r;
	struct route_request req = {
	    .method = buf + hd->method_tok.off,
	    .method_len = hd->method_tok.len,
	    .host = hd->has_host ? buf + hd->host.off : NULL,
	    .host_len = hd->has_host ? hd->host.len : 0,
	    /* Origin form once rewritten (http1_rq_rewrite): the target is the path. */
	    .path = buf + hd->path.off,
	    .path_len = hd->path.len,
	    .header = http1_route_header,
	    .ctx = c,
	};
	const struct config_service *t;
	uint32_t idx;
	uint16_t port_be;

	h->target = c->svc;
	h->target_port_be = c->port_be;
	h->route = NULL;
	if (!c->svc->n_routes)
		return;
	r = http_routes_match(c->svc, &req);
	if (!r)
		return;
	h->route = r;
	idx = http_routes_pick_backend(r, http1_random());
	if (idx >= (uint32_t)http1_svc_cfg(w, c)->n_services)
		return;
	t = http1_svc_cfg(w, c)->services[idx];
	/* The parser guarantees the port; a stale or hand-built config may not. */
	port_be = http1_port_be(t, c->svc_port);
	if (!port_be)
		return;
	h->target = t;
	h->target_port_be = port_be;
}

/*
 * At the final response head: make this exchange c's last when its request
 * was the proxy.http.max_requests_per_connection-th, or c is older than
 * proxy.http.max_connection_age_ms. c closes after the response, whose
 * head tells the client so (http1_rs_drain_close).
 */
static void http1_limit_requests(struct worker *w, struct conn *c, uint64_t now)
{
	struct http1_conn *h = c->http;
	uint32_t max = w->cfg->http_max_requests_per_connection;
	uint64_t age = (uint64_t)w->cfg->http_max_connection_age_ms * 1000000;

	if (h->closing || !h->rq_head.keep_alive)
		return;
	if ((max && h->n_requests >= max) || (age && now - c->accepted_ns >= age)) {
		h->closing = true;
		h->close_announce = true;
	}
}

/* Start serving a parsed request: pick where it goes and get a connection. */
static void http1_dispatch(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	uint64_t now = timer_now_ns();

	WORKER_STAT_INC(w, http_requests);
	/* Each request is routed with the newest config (docs/discovery.md). */
	if (worker_conn_follow(w, c) < 0) {
		char svc[2 * CONFIG_MAX_NAME + 16];

		worker_warn_ratelimited(w,
					"proxy worker %d: %s no longer exists; answering 503 to a "
					"request on a connection opened before",
					w->id, http1_svc_name(c, svc, sizeof(svc)));
		http1_error(w, c, HTTP_ERR_SERVICE_GONE);
		return;
	}
	http1_route(w, c);
	/* Its tries go to the target's endpoints, timed from now (attempt.h). */
	attempt_begin(&c->at, worker_es_service(w, c, http1_svc_cfg(w, c), h->target), w->cfg, now);
	h->deadline_ns = http1_request_deadline(c, w->cfg->http_request_timeout_ms, now);
	h->n_requests++;
	if (h->deadline_ns && !http1_arm_idle(w, c))
		return;
	h->retries = 0;
	h->retry_at_ns = 0;
	if (c->at.sv) {
		retry_budget_deposit(c->at.sv->budget, now);
		atomic_fetch_add_explicit(&c->at.sv->state->requests, 1, memory_order_relaxed);
	}
	if (h->target->n_endpoints <= 0) {
		worker_warn_ratelimited(w, "proxy worker %d: %s/%s has no endpoints; answering 503",
					w->id, h->target->namespace, h->target->name);
		http1_error(w, c, HTTP_ERR_NO_ENDPOINTS);
		return;
	}
	h->rs = HTTP1_RESP_HEAD;
	http1_connect_next(w, c);
}

/*
 * A 128-bit request id in hex, for x-request-id: two draws of the
 * per-thread xorshift. Unique enough to join logs, not a secret.
 */
static void http1_request_id(char out[33])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 4; i++) {
		uint32_t v = http1_random();

		for (int k = 0; k < 8; k++)
			out[i * 8 + k] = hex[(v >> (28 - 4 * k)) & 0xf];
	}
	out[32] = '\0';
}

/*
 * Rewrite the parsed request head [rq_parser.start, *consumed) of the
 * client buffer as it goes upstream (http1_rewrite_head; docs/proxy.md,
 * "What the proxy changes in a head"), then parse it again so that every
 * span points into the new head. The client's x-shoal-timeout-ms is read
 * first, since the rewrite strips it. The head is built in the (empty)
 * response buffer and copied back; HTTP1_HEAD_RESERVE keeps room for it
 * to grow. Returns 0, -ENOMEM (no response buffer), or a parse error.
 */
static int http1_rq_rewrite(struct worker *w, struct conn *c, size_t *consumed)
{
	struct http1_conn *h = c->http;
	const struct config *cfg = w->cfg;
	struct conn_buf *b = &c->to_upstream, *scratch = &c->to_client;
	const char *upgrades[CONFIG_MAX_HTTP_UPGRADES];
	char rid[33];
	struct http1_rewrite rw = {
	    .upgrades = upgrades,
	    .n_upgrades = (uint32_t)cfg->n_http_upgrades,
	    .strip_shoal = true,
	    .forwarded_for = cfg->http_forwarded_for && h->client_ip[0] ? h->client_ip : NULL,
	    .forwarded_proto = cfg->http_forwarded_proto,
	    .request_id = cfg->http_request_id ? rid : NULL,
	};
	uint32_t start = h->rq_parser.start, end = (uint32_t)*consumed;
	struct http1_limits lim = h->rq_parser.limits;
	const char *val;
	size_t vlen, n = 0;
	uint64_t ns;
	int r;

	h->client_timeout_ns = 0;
	for (uint32_t i = 0; cfg->http_timeout_header && i < h->rq_head.n_headers; i++) {
		const struct http1_header *f = &h->rq_head.headers[i];

		if (f->name.len != sizeof(DEADLINE_HEADER) - 1 ||
		    strncasecmp(b->data + f->name.off, DEADLINE_HEADER, f->name.len))
			continue;
		val = b->data + f->value.off;
		vlen = f->value.len;
		if (deadline_parse_header(val, vlen, &ns) == 0)
			h->client_timeout_ns = ns;
		break;
	}
	for (int i = 0; i < cfg->n_http_upgrades; i++)
		upgrades[i] = cfg->http_upgrades[i];
	if (rw.request_id)
		http1_request_id(rid);
	if (scratch->tail || !conn_buf_hold(w, scratch))
		return -ENOMEM; /* a response before the request is no state to be in */
	r = http1_rewrite_head(b->data, &h->rq_head, start, end, &rw, scratch->data,
			       cfg->buffer_bytes, &n);
	if (r < 0)
		return r;
	if ((size_t)start + n + (b->tail - end) > cfg->buffer_bytes)
		return HTTP1_E_HEAD_TOO_LARGE;
	memmove(b->data + start + n, b->data + end, b->tail - end);
	memcpy(b->data + start, scratch->data, n);
	b->tail = (uint32_t)(start + n + (b->tail - end));
	/* The new head may hold the added fields and bytes beyond the client's limits. */
	lim.max_headers += HTTP1_REWRITE_ADDED_FIELDS;
	lim.max_head += HTTP1_REWRITE_GROWTH_MAX;
	http1_parser_init(&h->rq_parser, HTTP1_REQUEST, &lim);
	r = http1_parse_head(&h->rq_parser, b->data, b->tail, &h->rq_head, consumed);
	if (r != HTTP1_DONE)
		return r < 0 ? r : HTTP1_E_BAD_REQUEST;
	return 0;
}

/* Parse the request head in the client buffer; dispatch it once complete. */
static void http1_rq_head(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	size_t consumed = 0;
	int r;

	if (b->tail == 0)
		return;
	if (!http1_headers_hold(w, h)) {
		pr_debug("proxy worker %d: no memory for header slots; resetting the client", w->id);
		http1_abort(w, c);
		return;
	}
	if (!h->rq_head_start_ns) {
		h->rq_head_start_ns = timer_now_ns();
		http1_arm_idle(w, c);
		if (c->state == CONN_CLOSED)
			return;
	}
	r = http1_parse_head(&h->rq_parser, b->data, b->tail, &h->rq_head, &consumed);
	if (r == HTTP1_NEED_MORE) {
		/* The head must fit the buffer, which bounds it below max_head_bytes. */
		if (b->tail >= w->cfg->buffer_bytes - HTTP1_HEAD_RESERVE)
			http1_error(w, c, HTTP_ERR_HEAD_TOO_LARGE);
		return;
	}
	if (r < 0) {
		http1_error(w, c, http_error_from_parse(r));
		return;
	}
	r = http1_rq_rewrite(w, c, &consumed);
	if (r == -ENOMEM) {
		http1_abort(w, c);
		return;
	}
	if (r < 0) {
		http1_error(w, c, http_error_from_parse(r));
		return;
	}
	r = tele_trace_head(w, c, &consumed);
	if (r < 0) {
		http1_error(w, c, http_error_from_parse(r));
		return;
	}
	h->rq_progress_ns = timer_now_ns(); /* the body timeout counts from the head */
	h->rq_begin = h->rq_parser.start;
	b->head = h->rq_begin; /* stray CRLFs before the request line are dropped */
	h->rq_fwd = (uint32_t)consumed;
	h->rq_head_len = h->rq_fwd - h->rq_begin;
	h->rq_replayable = true;
	h->rq_body = http1_request_body(&h->rq_head);
	h->rq_left = h->rq_head.content_length;
	http1_chunked_init(&h->rq_chunked);
	h->rq = h->rq_body == HTTP1_BODY_NONE ? HTTP1_REQ_DONE : HTTP1_REQ_BODY;
	/*
	 * Frame what is here before anything is sent, so that a malformed
	 * chunked body already in the buffer is refused with nothing sent.
	 */
	r = http1_rq_frame(c);
	if (r < 0) {
		http1_error(w, c, http_error_from_parse(r));
		return;
	}
	http1_dispatch(w, c);
}

/* ---- the upstream connection ----------------------------------------- */

/* Events of c's upstream connection pc (a pooled one: pool.c hands them on). */
static void http1_upstream_event(struct worker *w, struct conn *c, struct pool_conn *pc,
				 uint32_t events)
{
	struct http1_conn *h = c->http;
	int err;

	if (h->up != pc)
		return;
	if (!pc->connected) {
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		err = attempt_connect_result(w, pc->side.pl.fd, events);
		if (err) {
			/* A new attempt uses a new object: this turn's events cannot mix. */
			timer_heap_del(&w->timers, &c->timer);
			pool_close(w, pc, false);
			h->up = NULL;
			h->up_reused = false;
			http1_connect_failed(w, c, err);
			if (c->state != CONN_CLOSED)
				http1_run(w, c);
			return;
		}
		pc->connected = true;
		pc->side.writable = true;
		pc->side.readable = true;
		pc->side.plain_tcp = worker_plain_tcp(w, pc->side.pl.fd);
		if (!http1_arm_idle(w, c))
			return;
	}
	if (events & EPOLLERR) {
		err = sock_error(pc->side.pl.fd);
		if (err) {
			http1_up_failed(w, c, err);
			if (c->state != CONN_CLOSED)
				http1_run(w, c);
			return;
		}
	}
	http1_run(w, c);
}

/* ---- the response ------------------------------------------------------ */

/* Frame response body bytes in [rs_fwd, tail). 0 or a parse error. */
static int http1_rs_frame(struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;

	while (h->rs == HTTP1_RESP_BODY && h->rs_fwd < b->tail) {
		uint32_t avail = b->tail - h->rs_fwd;

		if (h->rs_body == HTTP1_BODY_UNTIL_CLOSE) {
			h->rs_fwd = b->tail;
		} else if (h->rs_body == HTTP1_BODY_LENGTH) {
			uint32_t n = h->rs_left < avail ? (uint32_t)h->rs_left : avail;

			h->rs_fwd += n;
			h->rs_left -= n;
			if (!h->rs_left)
				h->rs = HTTP1_RESP_DONE;
		} else {
			struct http1_chunk_step step;
			int r =
			    http1_chunked_feed(&h->rs_chunked, b->data + h->rs_fwd, avail, &step);

			h->rs_fwd += step.len;
			if (r < 0)
				return r;
			if (r == HTTP1_DONE)
				h->rs = HTTP1_RESP_DONE;
		}
	}
	return 0;
}

/*
 * The upstream said 101 (or 2xx to CONNECT): from here on both directions
 * are opaque bytes. The socket moves from the pool object to c->upstream
 * and opaque.c copies what is buffered and everything after it.
 */
static void http1_tunnel(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	bool eof = h->up->side.eof, plain_tcp = h->up->side.plain_tcp, rdhup = h->up->side.rdhup;
	int fd = pool_detach(w, h->up);

	h->up = NULL;
	http1_slab_release(w, h);
	c->upstream.pl.fd = fd;
	c->upstream.eof = eof;
	c->upstream.plain_tcp = plain_tcp;
	c->upstream.rdhup = rdhup;
	if (worker_rewatch(w, &c->upstream.pl) < 0) {
		http1_abort(w, c);
		return;
	}
	WORKER_STAT_INC(w, http_upgrades);
	metrics_http_done(w, c, h->rs_head.status);
	http1_headers_release(w, h); /* the tunnel parses no more heads */
	opaque_tunnel(w, c);
}

/*
 * Rewrite the response head just parsed at rs_start (its parser's start
 * to *consumed) in place, as it goes to the client (http1_rewrite_head:
 * the hop-by-hop fields; a 101 keeps its Upgrade), and parse it again.
 * The bytes after it move up by HTTP1_REWRITE_RESPONSE_SLACK first, the
 * room the rewrite may need (kept free by HTTP1_RESP_RESERVE), then down
 * to the new head's end. Returns 0 or a parse error.
 */
static int http1_rs_rewrite(struct worker *w, struct conn *c, size_t *consumed)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	char *base = b->data + h->rs_start;
	uint32_t start = h->rs_parser.start, end = (uint32_t)*consumed;
	uint32_t rest = b->tail - h->rs_start - end;
	struct http1_rewrite rw = {.keep_upgrade = h->rs_head.status == 101};
	struct http1_limits lim = h->rs_parser.limits;
	size_t n = 0;
	int r;

	/* Past the reserve only after earlier interim heads grew: refuse, not overflow. */
	if (b->tail + HTTP1_REWRITE_RESPONSE_SLACK > w->cfg->buffer_bytes)
		return HTTP1_E_HEAD_TOO_LARGE;
	memmove(base + end + HTTP1_REWRITE_RESPONSE_SLACK, base + end, rest);
	r = http1_rewrite_head(base, &h->rs_head, start, end, &rw, base + start,
			       end + HTTP1_REWRITE_RESPONSE_SLACK - start, &n);
	if (r < 0)
		return r;
	memmove(base + start + n, base + end + HTTP1_REWRITE_RESPONSE_SLACK, rest);
	b->tail = (uint32_t)(h->rs_start + start + n + rest);
	lim.max_head += HTTP1_REWRITE_RESPONSE_SLACK;
	http1_parser_init(&h->rs_parser, HTTP1_RESPONSE, &lim);
	r = http1_parse_head(&h->rs_parser, base, b->tail - h->rs_start, &h->rs_head, consumed);
	if (r != HTTP1_DONE)
		return r < 0 ? r : HTTP1_E_BAD_REQUEST;
	return 0;
}

/*
 * This exchange is the connection's last (the proxy is draining, or the
 * connection reached proxy.http.max_requests_per_connection or
 * max_connection_age_ms): the final response head just parsed (ending at
 * rs_fwd) tells the client to close, by a `connection: close` line added
 * before its blank line, and the client connection closes after it. A
 * close token wins over any keep-alive one (RFC 9112 9.6). Without room
 * in the buffer the line is left out: the close after the response
 * still holds.
 */
static void http1_rs_drain_close(struct worker *w, struct conn *c)
{
	static const char line[] = "connection: close\r\n";
	const uint32_t len = sizeof(line) - 1;
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	uint32_t at = h->rs_fwd - 2; /* the blank line's CRLF */

	h->closing = true;
	if (h->rs_fwd < h->rs_start + 4 || memcmp(b->data + at, "\r\n", 2) != 0 ||
	    b->tail + len > w->cfg->buffer_bytes || b->head > at)
		return;
	memmove(b->data + at + len, b->data + at, b->tail - at);
	memcpy(b->data + at, line, len);
	b->tail += len;
	h->rs_fwd += len;
}

/*
 * Parse response heads; 1xx heads are cleared for the client one by one.
 * Returns false when c closed or turned into a tunnel.
 */
static bool http1_rs_head(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	uint32_t cap = w->cfg->buffer_bytes;

	/* Held since the request's head; a response never comes first. */
	if (h->rs == HTTP1_RESP_HEAD && b->tail > h->rs_start && !http1_headers_hold(w, h)) {
		http1_abort(w, c);
		return false;
	}
	while (h->rs == HTTP1_RESP_HEAD && b->tail > h->rs_start) {
		size_t consumed = 0;
		int r = http1_parse_head(&h->rs_parser, b->data + h->rs_start,
					 b->tail - h->rs_start, &h->rs_head, &consumed);

		if (r == HTTP1_NEED_MORE) {
			if (b->tail < cap - HTTP1_RESP_RESERVE)
				return true;
			if (h->rs_start > 0 && b->head >= h->rs_start) {
				/* Interim heads are out: make room for the final one. */
				memmove(b->data, b->data + h->rs_start, b->tail - h->rs_start);
				b->tail -= h->rs_start;
				b->head = h->rs_fwd = 0;
				h->rs_start = 0;
				return true;
			}
			if (h->rs_start > 0)
				return true; /* wait for the interim heads to drain */
			r = HTTP1_E_HEAD_TOO_LARGE;
		}
		if (r >= 0)
			r = http1_rs_rewrite(w, c, &consumed);
		/* More interim heads than any server needs is no response either. */
		if (r >= 0 && h->rs_head.status / 100 == 1 && h->rs_head.status != 101 &&
		    ++h->rs_interim > HTTP1_MAX_INTERIM)
			r = HTTP1_E_BAD_REQUEST;
		if (r < 0) {
			pick_outcome(c->at.sv, &c->at.bt, false, PEAK_EWMA_NO_RETRY_AFTER,
					timer_now_ns(), "a malformed response");
			worker_warn_ratelimited(w,
						"proxy worker %d: %s/%s: malformed response head "
						"(%d); answering 502",
						w->id, h->target->namespace, h->target->name,
						http1_error_status(r));
			http1_error(w, c, HTTP_ERR_BAD_RESPONSE);
			return c->state != CONN_CLOSED;
		}
		h->rs_fwd = h->rs_start + (uint32_t)consumed;
		if (h->rs_head.status / 100 == 1 && h->rs_head.status != 101) {
			/*
			 * Interim (100 Continue, 103): forward it, read the next
			 * head. Never to an HTTP/1.0 client (RFC 9110 15.2),
			 * which cannot tell it from the response: dropped.
			 */
			if (h->rq_head.version_minor == 0) {
				memmove(b->data + h->rs_start, b->data + h->rs_fwd,
					b->tail - h->rs_fwd);
				b->tail -= h->rs_fwd - h->rs_start;
				h->rs_fwd = h->rs_start;
			} else {
				h->rs_start = h->rs_fwd;
			}
			http1_parser_init(&h->rs_parser, HTTP1_RESPONSE, NULL);
			continue;
		}
		if (!http1_rs_outcome(w, c))
			return c->state != CONN_CLOSED; /* retried: a new try reads a new head */
		h->final_started = true;
		h->rs_body = http1_response_body(h->rq_head.method, &h->rs_head);
		if (h->rs_body != HTTP1_BODY_TUNNEL) {
			http1_limit_requests(w, c, timer_now_ns());
			if (atomic_load_explicit(&w->p->draining, memory_order_relaxed) ||
			    (h->close_announce && h->rs_head.keep_alive))
				http1_rs_drain_close(w, c);
		}
		switch (h->rs_body) {
		case HTTP1_BODY_TUNNEL:
			if (h->rs_head.status == 101 && !h->rq_head.upgrade) {
				/* Not one byte of the 101 goes to the client: only its 502. */
				h->final_started = false;
				h->rs_fwd = h->rs_start;
				http1_error(w, c, HTTP_ERR_BAD_RESPONSE);
				return c->state != CONN_CLOSED;
			}
			http1_tunnel(w, c);
			return false;
		case HTTP1_BODY_NONE:
			h->rs = HTTP1_RESP_DONE;
			break;
		case HTTP1_BODY_LENGTH:
			h->rs_left = h->rs_head.content_length;
			h->rs = HTTP1_RESP_BODY;
			break;
		case HTTP1_BODY_CHUNKED:
			http1_chunked_init(&h->rs_chunked);
			h->rs = HTTP1_RESP_BODY;
			break;
		case HTTP1_BODY_UNTIL_CLOSE:
			h->rs_until_close = true;
			h->closing = true;
			h->rs = HTTP1_RESP_BODY;
			break;
		}
	}
	return true;
}

/* ---- moving bytes -------------------------------------------------------- */

/*
 * Read from the client while there is room. Bytes beyond the current
 * request (pipelined ones) wait in the buffer. Returns -errno on a hard
 * error.
 */
static int http1_client_read(struct worker *w, struct conn *c, uint32_t cap, bool *progress)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	struct conn_side *s = &c->client;
	bool was_eof;
	uint32_t got;
	int err;

	/*
	 * A body larger than the buffer: drop what went upstream already.
	 * (A rewritten head may have taken the tail past cap, into the
	 * reserve.)
	 */
	if (b->tail >= cap && h->rq == HTTP1_REQ_BODY && b->head > 0) {
		if (h->rq_replayable)
			http1_slab_take(w, c);
		memmove(b->data, b->data + b->head, b->tail - b->head);
		b->tail -= b->head;
		h->rq_fwd -= b->head;
		b->head = 0;
		h->rq_replayable = false;
	}
	was_eof = s->eof;
	err = conn_side_read(w, s, b, cap, &got);
	if (got || s->eof != was_eof)
		*progress = true;
	if (got && h->rq == HTTP1_REQ_BODY)
		h->rq_progress_ns = timer_now_ns();
	if (err)
		return err;
	/* Nothing at all (parsed tokens point into the buffer otherwise):
	 * an idle keep-alive connection holds no buffer. */
	if (b->tail == 0)
		conn_buf_release_empty(w, b);
	return 0;
}

/* Is every framed byte of the request sent on the try in flight? */
static bool http1_rq_sent(const struct conn *c)
{
	const struct http1_conn *h = c->http;

	return c->to_upstream.head == h->rq_fwd &&
	       (!h->rq_slab_replay || h->rq_slab_sent == h->rq_slab_len);
}

/* Send the framed request bytes upstream: a replay's slab first, then the buffer's. */
static int http1_up_send(struct conn *c, bool *progress)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	struct pool_conn *pc = h->up;
	uint32_t before;
	int err;

	if (!pc || !pc->connected)
		return 0;
	if (h->rq_slab_replay) {
		before = h->rq_slab_sent;
		err = conn_side_send(&pc->side, h->rq_slab, &h->rq_slab_sent, h->rq_slab_len);
		if (h->rq_slab_sent != before)
			*progress = true;
		if (err || h->rq_slab_sent < h->rq_slab_len)
			return err;
	}
	before = b->head;
	err = conn_side_send(&pc->side, b->data, &b->head, h->rq_fwd);
	if (b->head != before)
		*progress = true;
	return err;
}

/* Read the response while there is room. */
static int http1_up_read(struct worker *w, struct conn *c, uint32_t cap, bool *progress)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	struct pool_conn *pc = h->up;
	bool was_eof;
	uint32_t got;
	int err;

	if (!pc || !pc->connected || h->rs == HTTP1_RESP_DONE)
		return 0;
	/* Room for the head's rewrite stays free while it is read. */
	if (h->rs == HTTP1_RESP_HEAD)
		cap -= HTTP1_RESP_RESERVE;
	/* A body larger than the buffer: drop what the client has already. */
	if (b->tail >= cap && h->rs == HTTP1_RESP_BODY && b->head > 0) {
		memmove(b->data, b->data + b->head, b->tail - b->head);
		b->tail -= b->head;
		h->rs_fwd -= b->head;
		b->head = 0;
	}
	was_eof = pc->side.eof;
	err = conn_side_read(w, &pc->side, b, cap, &got);
	if (got)
		h->rs_got_bytes = true;
	if (got || pc->side.eof != was_eof)
		*progress = true;
	if (err)
		return err;
	if (b->tail == 0)
		conn_buf_release_empty(w, b);
	return 0;
}

/* Send the cleared response bytes to the client. */
static int http1_client_send(struct conn *c, bool *progress)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	uint32_t before = b->head;
	int err = conn_side_send(&c->client, b->data, &b->head, h->rs_fwd);

	if (b->head != before)
		*progress = true;
	return err;
}

/* ---- the exchange ------------------------------------------------------ */

/* Ready c for the next request: pipelined bytes move to the buffer's start. */
static void http1_next_request(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *in = &c->to_upstream;
	struct conn_buf *out = &c->to_client;
	struct http1_limits lim = {
	    .max_line = w->cfg->http_max_request_line,
	    .max_head = w->cfg->http_max_head_bytes,
	    .max_headers = http1_max_headers(w->cfg),
	};
	struct http1_limits rlim;
	uint32_t left = in->tail - h->rq_fwd;

	if (left && h->rq_fwd)
		memmove(in->data, in->data + h->rq_fwd, left);
	in->head = 0;
	in->tail = left;
	out->head = out->tail = 0;
	/* Between exchanges a connection holds no buffer or header slot it
	 * does not need. */
	conn_buf_release_empty(w, in);
	conn_buf_release_empty(w, out);
	http1_headers_release(w, h);

	h->rq = HTTP1_REQ_HEAD;
	h->rs = HTTP1_RESP_NONE;
	http1_slab_release(w, h);
	h->final_started = h->retried = h->rq_replayable = false;
	h->up_reused = h->rs_got_bytes = h->rs_until_close = false;
	h->rq_fwd = h->rq_begin = 0;
	h->rq_head_start_ns = 0;
	h->rs_start = h->rs_fwd = 0;
	h->rs_interim = 0;
	h->client_timeout_ns = 0;
	h->target = NULL;
	h->route = NULL;
	h->deadline_ns = 0;
	pick_cancel(c->at.sv, &c->at.bt, timer_now_ns()); /* reported at its head already */
	c->at.sv = NULL;
	c->at.n_avoid = h->retries = 0;
	h->try_deadline_ns = h->retry_at_ns = 0;

	if (!lim.max_line)
		lim.max_line = HTTP1_MAX_LINE_DEFAULT;
	if (!lim.max_head)
		lim.max_head = HTTP1_MAX_HEAD_DEFAULT;
	http1_parser_init(&h->rq_parser, HTTP1_REQUEST, &lim);
	http1_limits_default(&rlim);
	rlim.max_headers = lim.max_headers;
	http1_parser_init(&h->rs_parser, HTTP1_RESPONSE, &rlim);
}

/*
 * Discard the client's input until its FIN; then close. At most
 * HTTP1_LINGER_ROUNDS reads per turn: past that, the rest waits for a
 * deferred turn, so a client writing faster than we read cannot hold the
 * worker (the linger deadline ends it).
 */
static void http1_linger_read(struct worker *w, struct conn *c)
{
	char sink[HTTP1_LINGER_SINK_BYTES];

	for (int round = 0; c->client.readable; round++) {
		struct conn_buf b = {.data = sink};
		uint32_t got;

		if (round == HTTP1_LINGER_ROUNDS) {
			worker_conn_defer(w, c);
			return;
		}
		/* Its FIN, or an error: done either way. */
		if (conn_side_read(w, &c->client, &b, sizeof(sink), &got) || c->client.eof) {
			http1_close(w, c, false);
			return;
		}
	}
}

/* Half-close the client after the last response and wait for its FIN. */
static void http1_linger(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;

	http1_up_release(w, h, false);
	if (shutdown(c->client.pl.fd, SHUT_WR) < 0) {
		http1_close(w, c, true);
		return;
	}
	c->client.shut_wr = true;
	h->lingering = true;
	if (c->client.eof) {
		http1_close(w, c, false);
		return;
	}
	if (http1_arm(w, c, timer_now_ns() + (uint64_t)HTTP1_LINGER_MS * 1000000))
		http1_linger_read(w, c);
}

/*
 * The response is out. Returns true when c moved on to the next request
 * (and should be run again), false when it is closing or closed.
 */
static bool http1_exchange_done(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	bool up_reusable = h->rq == HTTP1_REQ_DONE && h->rq_head.keep_alive &&
			   h->rs_head.keep_alive && !h->rs_until_close &&
			   h->rs_fwd == c->to_client.tail && http1_rq_sent(c);
	bool client_keep = !h->closing && h->rq == HTTP1_REQ_DONE && h->rq_head.keep_alive &&
			   h->rs_head.keep_alive;

	metrics_http_done(w, c, h->rs_head.status);
	http1_up_release(w, h, up_reusable);
	if (!client_keep) {
		http1_linger(w, c);
		return false;
	}
	http1_next_request(w, c);
	return http1_arm_idle(w, c);
}

/* One pass of everything c can do; sets *progress. False: c closed or tunnelled. */
static bool http1_step(struct worker *w, struct conn *c, bool *progress)
{
	struct http1_conn *h = c->http;
	uint32_t cap = w->cfg->buffer_bytes;
	int err;

	if (h->lingering) {
		http1_linger_read(w, c);
		return false;
	}
	/* Room for the head's rewrite stays free (HTTP1_HEAD_RESERVE). */
	err = http1_client_read(w, c, cap - HTTP1_HEAD_RESERVE, progress);
	if (err) {
		http1_abort(w, c);
		return false;
	}
	if (h->rq == HTTP1_REQ_HEAD) {
		if (c->client.eof && c->to_upstream.tail == 0) {
			/* The client is done and nothing is in flight. */
			http1_close(w, c, false);
			return false;
		}
		http1_rq_head(w, c);
		if (c->state == CONN_CLOSED)
			return false;
		if (h->rq == HTTP1_REQ_HEAD && c->client.eof) {
			/* A partial request, then FIN: nothing to answer. */
			http1_close(w, c, false);
			return false;
		}
	} else if (h->rq == HTTP1_REQ_BODY) {
		err = http1_rq_frame(c);
		if (err < 0) {
			/* Malformed body after part of it went upstream: 400 if still possible. */
			http1_error(w, c, http_error_from_parse(err));
			if (c->state == CONN_CLOSED)
				return false;
		} else if (h->rq == HTTP1_REQ_BODY && c->client.eof) {
			http1_abort(w, c); /* truncated request */
			return false;
		}
	}
	err = http1_up_send(c, progress);
	if (err) {
		http1_up_failed(w, c, -err);
		if (c->state == CONN_CLOSED)
			return false;
	}
	err = http1_up_read(w, c, cap, progress);
	if (err) {
		http1_up_failed(w, c, -err);
		if (c->state == CONN_CLOSED)
			return false;
	}
	if (h->rs == HTTP1_RESP_HEAD && !http1_rs_head(w, c))
		return false;
	if (h->rs == HTTP1_RESP_BODY) {
		err = http1_rs_frame(c);
		if (err < 0) {
			http1_abort(w, c); /* a final head went out: only a reset says it */
			return false;
		}
	}
	if (h->up && h->up->side.eof && h->rs != HTTP1_RESP_DONE) {
		if (h->rs == HTTP1_RESP_BODY && h->rs_until_close &&
		    h->rs_fwd == c->to_client.tail) {
			h->rs = HTTP1_RESP_DONE;
		} else if (h->rs == HTTP1_RESP_HEAD) {
			http1_up_failed(w, c, ECONNRESET);
			if (c->state == CONN_CLOSED)
				return false;
		} else if (h->rs == HTTP1_RESP_BODY) {
			http1_abort(w, c); /* truncated response */
			return false;
		}
	}
	err = http1_client_send(c, progress);
	if (err) {
		http1_abort(w, c);
		return false;
	}
	if (h->rs == HTTP1_RESP_DONE && c->to_client.head == h->rs_fwd) {
		/* Answered before the whole request went out: the rest is not read. */
		if (h->rq != HTTP1_REQ_DONE || !http1_rq_sent(c))
			h->closing = true;
		if (!http1_exchange_done(w, c))
			return false;
		*progress = true;
	}
	return true;
}

/* Run c until nothing moves, up to CONN_PUMP_ROUNDS passes. */
static void http1_run(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	bool any = false;

	for (int round = 0;; round++) {
		bool progress = false;

		if (round == CONN_PUMP_ROUNDS) {
			worker_conn_defer(w, c);
			break;
		}
		if (!http1_step(w, c, &progress))
			return;
		if (!progress)
			break;
		any = true;
	}
	if (any)
		h->last_active_ns = timer_now_ns();
}

void http1_resume(struct worker *w, struct conn *c)
{
	http1_run(w, c);
}

void http1_timeout(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	uint64_t now = timer_now_ns();
	uint64_t d;

	if (h->lingering) {
		http1_close(w, c, false);
		return;
	}
	if (h->retry_at_ns &&
	    (now >= h->retry_at_ns || (h->deadline_ns && now >= h->deadline_ns))) {
		/* A retry's backoff, or the wait for a candidate, is over. */
		h->retry_at_ns = 0;
		http1_connect_next(w, c);
		if (c->state != CONN_CLOSED)
			http1_run(w, c);
		return;
	}
	if (h->up && !h->up->connected) {
		/* The connect attempt's deadline (or the request's). */
		pool_close(w, h->up, true);
		h->up = NULL;
		h->up_reused = false;
		http1_connect_failed(w, c, ETIMEDOUT);
		if (c->state != CONN_CLOSED)
			http1_run(w, c);
		return;
	}
	if (h->try_deadline_ns && now >= h->try_deadline_ns && h->rs == HTTP1_RESP_HEAD && h->up &&
	    !(h->deadline_ns && now >= h->deadline_ns)) {
		/* The per-try timeout, before any response head. */
		h->try_deadline_ns = 0;
		http1_try_timed_out(w, c, now, "a per-try timeout");
		if (c->state != CONN_CLOSED)
			http1_run(w, c);
		return;
	}
	d = http1_head_deadline(w, h);
	if (d && now >= d && !(h->deadline_ns && now >= h->deadline_ns)) {
		/* proxy.http.response_head_timeout_ms: a try like a per-try timeout. */
		h->try_start_ns = 0;
		http1_try_timed_out(w, c, now, "a response head timeout");
		if (c->state != CONN_CLOSED)
			http1_run(w, c);
		return;
	}
	if (h->rq == HTTP1_REQ_BODY && w->cfg->http_request_body_timeout_ms &&
	    now >= http1_body_deadline(w, h) && http1_rq_backpressured(w, c)) {
		/* The proxy is not reading: the endpoint is slow, not the client. */
		h->rq_progress_ns = now;
	} else if (h->rq == HTTP1_REQ_BODY && w->cfg->http_request_body_timeout_ms &&
		   now >= http1_body_deadline(w, h) && !(h->deadline_ns && now >= h->deadline_ns)) {
		/* The client stopped sending its body: not the endpoint's fault. */
		if (h->final_started) {
			http1_abort(w, c);
			return;
		}
		http1_error(w, c, HTTP_ERR_BODY_TIMEOUT);
		if (c->state != CONN_CLOSED)
			http1_run(w, c);
		return;
	}
	d = http1_idle_deadline(w, c);
	if (d > now) {
		http1_arm(w, c, d);
		return;
	}
	if (!d)
		return;
	if (h->rq == HTTP1_REQ_HEAD) {
		if (c->to_upstream.tail == 0) {
			http1_close(w, c, false); /* an idle keep-alive connection */
			return;
		}
		http1_error(w, c, HTTP_ERR_REQUEST_TIMEOUT);
	} else if (h->rs == HTTP1_RESP_HEAD || h->rs == HTTP1_RESP_NONE) {
		http1_deadline_passed(w, c);
	} else {
		http1_abort(w, c); /* stalled mid-body */
		return;
	}
	if (c->state != CONN_CLOSED)
		http1_run(w, c);
}

static void http1_client_event(struct worker *w, struct conn *c, uint32_t events)
{
	if (events & EPOLLERR) {
		int err = sock_error(c->client.pl.fd);

		if (err) {
			pr_debug("proxy worker %d: HTTP client failed: %s", w->id, strerror(err));
			http1_abort(w, c);
			return;
		}
	}
	http1_run(w, c);
}

/* The client's address as text, for X-Forwarded-For: once per connection. */
static void http1_client_ip(const struct conn *c, struct http1_conn *h)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct shoal_addr a;

	h->client_ip[0] = '\0';
	if (getpeername(c->client.pl.fd, (struct sockaddr *)&ss, &len) < 0 ||
	    addr_from_sockaddr((struct sockaddr *)&ss, &a, NULL) < 0)
		return;
	addr_ntop(&a, h->client_ip, sizeof(h->client_ip));
}

void http1_start(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http ? c->http : worker_http_get(w);
	uint32_t keep_tail = c->to_upstream.tail;

	if (!h) {
		pr_debug("proxy worker %d: no memory for HTTP state; resetting the client", w->id);
		timer_heap_del(&w->timers, &c->timer);
		conn_side_close(w, &c->client, true);
		worker_conn_release(w, c);
		return;
	}
	c->http = h;

	memset(h, 0, sizeof(*h));
	http1_client_ip(c, h);
	c->kind = CONN_KIND_HTTP;
	c->state = CONN_ESTABLISHED;
	c->ops = &http1_ops;
	c->client.readable = true;
	c->client.writable = true;
	/* Bytes read while detecting are the start of the first request. */
	h->rq_fwd = 0;
	c->to_upstream.tail = keep_tail;
	http1_next_request(w, c);
	c->to_upstream.tail = keep_tail;
	h->last_active_ns = timer_now_ns();
	if (!http1_arm_idle(w, c))
		return;
	http1_run(w, c);
}

/* Side s of c: its client, or the pooled upstream connection it uses. */
static void http1_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (s == &c->client)
		http1_client_event(w, c, events);
	else if (s != &c->upstream) /* unused until a tunnel, which is opaque */
		http1_upstream_event(w, c, container_of(s, struct pool_conn, side), events);
}

const struct conn_ops http1_ops = {
    .name = "http1",
    .start = http1_start,
    .event = http1_event,
    .timeout = http1_timeout,
    .resume = http1_resume,
    .abort = http1_abort,
    .settled = http1_between_requests,
    .drain_idle = http1_drain_idle,
};
