// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The state of one HTTP/1 connection that the exchange (http1.c) and
 * the tries of its requests (http1_retry.c) both use, below both: the
 * header slots, closing and aborting, the connection's timer and its
 * deadlines (idle, head, body, the try's response head, the request's),
 * the proxy's own answers (http1_error), and reading the request head
 * back (http1_rq_at, from the buffer or the replay slab).
 */
#include "proxy/http1_conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "proxy/conn_io.h"
#include "proxy/endpoint_pick.h"
#include "proxy/pool.h"

uint32_t http1_max_headers(const struct config *cfg)
{
	return cfg->http_max_headers ? cfg->http_max_headers : HTTP1_MAX_HEADERS_DEFAULT;
}

/* Request header slots: the client's limit, plus the fields a rewrite adds. */
static uint32_t http1_rq_slots(const struct config *cfg)
{
	return http1_max_headers(cfg) + HTTP1_REWRITE_ADDED_FIELDS;
}

size_t http1_headers_size(const struct config *cfg)
{
	return ((size_t)http1_rq_slots(cfg) + http1_max_headers(cfg)) * sizeof(struct http1_header);
}

/* h holds its header slots (a head is about to be parsed); false: no memory. */
bool http1_headers_hold(struct worker *w, struct http1_conn *h)
{
	uint32_t n = http1_max_headers(w->cfg);

	if (h->headers)
		return true;
	h->headers = worker_slots_get(w);
	if (!h->headers)
		return false;
	h->rq_head.headers = h->headers;
	h->rq_head.cap = http1_rq_slots(w->cfg);
	h->rs_head.headers = h->headers + h->rq_head.cap;
	h->rs_head.cap = n;
	return true;
}

/* Between exchanges: no parsed header is used any more. */
void http1_headers_release(struct worker *w, struct http1_conn *h)
{
	worker_slots_put(w, h->headers);
	h->headers = NULL;
	h->rq_head.headers = h->rs_head.headers = NULL;
	h->rq_head.n_headers = h->rs_head.n_headers = 0;
}

/* Give up the upstream connection, keeping it for reuse when reusable. */
void http1_up_release(struct worker *w, struct http1_conn *h, bool reusable)
{
	if (!h->up)
		return;
	if (reusable)
		pool_put(w, h->up);
	else
		pool_close(w, h->up, true);
	h->up = NULL;
}

/* Close everything; reset: the peers see RST (the exchange did not complete). */
void http1_close(struct worker *w, struct conn *c, bool reset)
{
	pick_cancel(c->at.sv, &c->at.bt, timer_now_ns());
	metrics_http_done(w, c, 0); /* a request still in flight got no response */
	http1_up_release(w, c->http, false);
	http1_slab_release(w, c->http);
	http1_headers_release(w, c->http);
	conn_side_close(w, &c->client, reset);
	worker_conn_release(w, c);
}

void http1_abort(struct worker *w, struct conn *c)
{
	http1_close(w, c, true);
}

/* Arm c's timer at deadline; without a timer the connection could hang,
 * so failing to queue one closes it. Returns false when c was closed. */
bool http1_arm(struct worker *w, struct conn *c, uint64_t deadline)
{
	if (timer_heap_add(&w->timers, &c->timer, deadline) == 0)
		return true;
	http1_abort(w, c);
	return false;
}

/*
 * The client buffer is full of request bytes the endpoint has not taken:
 * the proxy stopped reading the client, so a client that sends nothing
 * is waiting for the endpoint, not stalling.
 */
bool http1_rq_backpressured(const struct worker *w, const struct conn *c)
{
	const struct conn_buf *b = &c->to_upstream;

	/* The reads stop at the buffer less the head's reserve (http1_step). */
	return b->data && b->tail - b->head >= w->cfg->buffer_bytes - HTTP1_HEAD_RESERVE;
}

/* When the request body, started, times out for want of a byte. */
uint64_t http1_body_deadline(const struct worker *w, const struct http1_conn *h)
{
	return h->rq_progress_ns + (uint64_t)w->cfg->http_request_body_timeout_ms * 1000000;
}

/*
 * The next idle or head deadline of c, or 0 for none. The idle timeout is
 * the route's idle_timeout_ms while one of its requests is in flight,
 * else the service's (conn_idle_ns).
 */
uint64_t http1_idle_deadline(const struct worker *w, const struct conn *c)
{
	const struct http1_conn *h = c->http;
	uint64_t idle = h->route && h->route->idle_timeout_ms
			    ? (uint64_t)h->route->idle_timeout_ms * 1000000
			    : conn_idle_ns(w, c);
	uint64_t d = idle ? h->last_active_ns + idle : 0;

	if (h->rq == HTTP1_REQ_HEAD && c->to_upstream.tail > 0) {
		uint64_t ht = (uint64_t)HTTP1_HEAD_TIMEOUT_MS * 1000000;
		uint64_t hd = h->rq_head_start_ns + (idle && idle < ht ? idle : ht);

		if (!d || hd < d)
			d = hd;
	}
	if (h->rq == HTTP1_REQ_HEAD && c->to_upstream.tail == 0 &&
	    w->cfg->http_max_connection_age_ms) {
		/* Idle past its maximum age: closed now, not after one more request. */
		uint64_t ad =
		    c->accepted_ns + (uint64_t)w->cfg->http_max_connection_age_ms * 1000000;

		if (!d || ad < d)
			d = ad;
	}
	if (h->rq == HTTP1_REQ_BODY && w->cfg->http_request_body_timeout_ms) {
		uint64_t bd = http1_body_deadline(w, h);

		if (!d || bd < d)
			d = bd;
	}
	if (http1_head_deadline(w, h) && (!d || http1_head_deadline(w, h) < d))
		d = http1_head_deadline(w, h);
	if (h->deadline_ns && h->rs != HTTP1_RESP_DONE && (!d || h->deadline_ns < d))
		d = h->deadline_ns;
	if (h->try_deadline_ns && h->rs == HTTP1_RESP_HEAD && (!d || h->try_deadline_ns < d))
		d = h->try_deadline_ns;
	if (h->retry_at_ns && (!d || h->retry_at_ns < d))
		d = h->retry_at_ns;
	return d;
}

/* Queue c's idle/head deadline (the timer is not in use otherwise). */
bool http1_arm_idle(struct worker *w, struct conn *c)
{
	uint64_t d = http1_idle_deadline(w, c);

	if (!d) {
		timer_heap_del(&w->timers, &c->timer);
		return true;
	}
	return http1_arm(w, c, d);
}

/*
 * The proxy answers err itself. Anything of the upstream exchange is
 * dropped, except interim (1xx) heads already cleared for the client; the
 * client is closed once the answer is out. When a final response has
 * started already there is no clean way to say it: reset the client.
 */
void http1_error(struct worker *w, struct conn *c, enum http_error err)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_client;
	uint32_t cap = w->cfg->buffer_bytes;
	size_t n;

	if (h->final_started || !conn_buf_hold(w, b)) {
		http1_abort(w, c);
		return;
	}
	WORKER_STAT_INC(w, http_errors);
	metrics_http_done(w, c, (unsigned int)http_error_status(err));
	if (log_debug_on()) {
		char svc[2 * CONFIG_MAX_NAME + 16];

		pr_debug("proxy worker %d: %s: answering %d (%s)", w->id,
			 conn_svc_name(c, svc, sizeof(svc)), http_error_status(err),
			 http_error_stage(err));
	}
	pick_cancel(c->at.sv, &c->at.bt, timer_now_ns());
	h->retry_at_ns = 0;
	http1_up_release(w, h, false);
	http1_slab_release(w, h);
	b->tail = h->rs_fwd;
	if (cap - b->tail < HTTP_ERROR_MAX_BYTES && b->head > 0) {
		memmove(b->data, b->data + b->head, b->tail - b->head);
		b->tail -= b->head;
		b->head = 0;
	}
	n = err == HTTP_ERR_POLICY_DENIED
		? http_error_format_with(err, "x-shoal-policy", h->deny_reason, b->data + b->tail,
					 cap - b->tail)
		: http_error_format(err, b->data + b->tail, cap - b->tail);
	b->tail += n;
	h->rs_fwd = b->tail;
	h->final_started = true;
	h->rs = HTTP1_RESP_DONE;
	h->rq = HTTP1_REQ_DONE;
	h->closing = true;
	/* The request's unread bytes are not forwarded anywhere. */
	c->to_upstream.head = c->to_upstream.tail = 0;
	h->rq_fwd = 0;
}

/*
 * The request head's byte at client buffer offset off (a token's
 * http1_span offset): in the buffer until its first bytes are dropped for
 * a large body, then in the replay slab, which starts at rq_begin. NULL
 * when neither holds it any more.
 */
const char *http1_rq_at(const struct conn *c, uint32_t off)
{
	const struct http1_conn *h = c->http;

	if (h->rq_replayable)
		return c->to_upstream.data + off;
	if (h->rq_slab && off >= h->rq_begin && off - h->rq_begin < h->rq_slab_len)
		return h->rq_slab + (off - h->rq_begin);
	return NULL;
}

/* routes.h header lookup over the parsed request head. */
int http1_route_header(void *ctx, const char *name, size_t name_len, const char **value,
			      size_t *value_len)
{
	struct conn *c = ctx;
	const struct http1_head *hd = &c->http->rq_head;

	for (uint32_t i = 0; i < hd->n_headers; i++) {
		const struct http1_header *f = &hd->headers[i];
		const char *n = http1_rq_at(c, f->name.off);

		if (!n)
			return 0; /* the head went upstream and was not kept */
		if (f->name.len == name_len && !strncasecmp(n, name, name_len)) {
			*value = http1_rq_at(c, f->value.off);
			*value_len = f->value.len;
			return *value != NULL;
		}
	}
	return 0;
}

/* Give the request's replay slab (if any) back to the worker. */
void http1_slab_release(struct worker *w, struct http1_conn *h)
{
	worker_replay_put(w, h->rq_slab);
	h->rq_slab = NULL;
	h->rq_slab_len = h->rq_slab_cap = h->rq_slab_sent = 0;
	h->rq_slab_whole = h->rq_slab_replay = false;
}

/*
 * When the try in flight times out for want of a response head (0: it
 * does not, now): the target service's resilience.timeouts.response_head_ms,
 * else proxy.http.response_head_timeout_ms, from the later of
 * the try's start and the request's last byte, once the whole request is
 * read and the upstream connected.
 */
uint64_t http1_head_deadline(const struct worker *w, const struct http1_conn *h)
{
	uint64_t from = h->try_start_ns > h->rq_progress_ns ? h->try_start_ns : h->rq_progress_ns;
	uint32_t ms = w->cfg->http_response_head_timeout_ms;

	if (h->target && h->target->resilience.response_head_timeout_ms)
		ms = h->target->resilience.response_head_timeout_ms;
	if (!ms || h->rq != HTTP1_REQ_DONE || h->rs != HTTP1_RESP_HEAD || !h->up ||
	    !h->up->connected || !h->try_start_ns)
		return 0;
	return from + (uint64_t)ms * 1000000;
}
