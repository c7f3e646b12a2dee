// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/http1.h"
#include "proxy/http1_request.h"
#include "proxy/http1_response.h"
#include "proxy/http1_retry.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/endpoint_pick.h"
#include "proxy/pool.h"
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
	h->up_reused = h->up_tunneled = h->rs_got_bytes = h->rs_until_close = false;
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
	struct http1_conn *h = c->http ? c->http : worker_state_get(w);
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
