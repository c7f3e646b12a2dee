// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/http1_response.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proxy/endpoint_pick.h"
#include "proxy/http1.h"
#include "proxy/http1_retry.h"
#include "proxy/opaque.h"
#include "proxy/pool.h"
#include "proxy/worker.h"

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

/* Frame response body bytes in [rs_fwd, tail). 0 or a parse error. */
int http1_rs_frame(struct conn *c)
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
bool http1_rs_head(struct worker *w, struct conn *c)
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
