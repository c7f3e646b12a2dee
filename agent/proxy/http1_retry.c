// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tries of one HTTP/1 request (docs/resilience.md, "Per HTTP
 * request"): its kind of the proxy's attempt loop (attempt.h: a pooled
 * connection or a new connect, failover by the retry policy, 503 and
 * 504); the per-try and response head deadlines; the retry decision, its
 * backoff and the outcome each response reports to the balancer and
 * breaker; replay slabs, and the resend after a pooled connection the
 * server closed.
 */
#include "proxy/http1_retry.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/endpoint_pick.h"
#include "proxy/opaque.h"
#include "proxy/pool.h"
#include "proxy/sock.h"
#include "resilience/backoff.h"
#include "resilience/deadline.h"

/*
 * Copy the request bytes [from, to) of the client buffer, just framed,
 * into the replay slab while it holds the whole request. A (chunked) body
 * outgrowing rq_slab_cap leaves the slab incomplete: not retried.
 */
void http1_slab_append(struct conn *c, uint32_t from, uint32_t to)
{
	struct http1_conn *h = c->http;
	uint32_t n = to - from;

	if (!h->rq_slab_whole || !n)
		return;
	if (h->rq_slab_cap - h->rq_slab_len < n) {
		h->rq_slab_whole = false;
		return;
	}
	memcpy(h->rq_slab + h->rq_slab_len, c->to_upstream.data + from, n);
	h->rq_slab_len += n;
}

/*
 * The request's deadline as of now (0: none): the route's timeout_ms, else
 * the service's request_timeout_ms, else default_ms
 * (proxy.http.request_timeout_ms), shortened (never lengthened) by the
 * client's DEADLINE_HEADER (read before the head was rewritten without
 * it, http1_rq_rewrite).
 */
uint64_t http1_request_deadline(struct conn *c, uint32_t default_ms, uint64_t now)
{
	const struct http1_conn *h = c->http;
	uint64_t timeout = 0, d = DEADLINE_NONE;

	if (h->route && h->route->timeout_ms)
		timeout = (uint64_t)h->route->timeout_ms * 1000000;
	else if (c->at.sv)
		timeout = c->at.sv->request_timeout_ns;
	if (!timeout)
		timeout = (uint64_t)default_ms * 1000000;
	if (timeout)
		d = deadline_after(now, timeout);
	if (h->client_timeout_ns)
		d = deadline_min(d, deadline_after(now, h->client_timeout_ns));
	return d == DEADLINE_NONE ? 0 : d;
}

/*
 * attempt_kind.refuse: the proxy could not open an upstream socket for
 * lack of its own resources (err, sock_err_local), and the try was
 * cancelled (no endpoint's failure, no retry): 503 proxy-resources.
 */
static void http1_local_refused(struct worker *w, struct conn *c, int err)
{
	struct http1_conn *h = c->http;
	char svc[2 * CONFIG_MAX_NAME + 16];

	worker_warn_ratelimited(w,
				"proxy worker %d: %s: cannot open a connection to an endpoint of "
				"%s/%s: %s (the proxy's own limit, not the endpoint's); answering "
				"503",
				w->id, conn_svc_name(c, svc, sizeof(svc)), h->target->namespace,
				h->target->name, strerror(err));
	http1_error(w, c, HTTP_ERR_LOCAL_RESOURCES);
}

/* An upstream connection is ready for the request: note its history and its hop. */
static void http1_up_ready(struct conn *c)
{
	struct http1_conn *h = c->http;

	h->up_reused = h->up->requests > 0;
	/*
	 * The connection's own word, not attempt_tunnels again: a pooled
	 * one may be direct where a new one would tunnel (pool_take).
	 */
	h->up_tunneled = h->up->tunnel_src != NULL;
	h->up->requests++;
}

/* The retry policy of the request: the service's, with its route's overrides. */
static void http1_retry_cfg(const struct conn *c, struct retry_policy_cfg *out)
{
	const struct http1_conn *h = c->http;

	if (c->at.sv)
		*out = c->at.sv->retry_cfg;
	else
		retry_policy_cfg_default(out);
	if (!h->route)
		return;
	out->route_retryable = h->route->retryable;
	if (h->route->n_retry_statuses > 0 && h->route->n_retry_statuses <= RETRY_MAX_STATUSES) {
		out->n_statuses = (uint8_t)h->route->n_retry_statuses;
		memcpy(out->statuses, h->route->retry_statuses,
		       out->n_statuses * sizeof(out->statuses[0]));
	}
}

/*
 * May the try that just failed (how: f, with status for RETRY_FAIL_STATUS)
 * be retried? retry_decide() asks, in order: method, failure, body,
 * response started, attempts, deadline, and last the budget, which a yes
 * is charged to. Counts the retry (or the budget's refusal).
 */
static bool http1_may_retry(struct worker *w, struct conn *c, enum retry_failure f, uint16_t status)
{
	struct http1_conn *h = c->http;
	const char *method = http1_rq_at(c, h->rq_head.method_tok.off);
	struct retry_policy_cfg cfg;
	/* The whole request is in the slab once it is framed to its end. */
	bool in_slab = h->rq_slab_whole && h->rq == HTTP1_REQ_DONE;
	struct retry_try t = {
	    .method = method ? method : "",
	    .method_len = method ? h->rq_head.method_tok.len : 0,
	    .failure = f,
	    .status = status,
	    .has_body = h->rq_body != HTTP1_BODY_NONE,
	    /* Nothing was sent on a connect failure: what arrived is all still here. */
	    .body_buffered = in_slab || (h->rq_replayable &&
					 (h->rq == HTTP1_REQ_DONE || f == RETRY_FAIL_CONNECT)),
	    .body_bytes = in_slab	     ? h->rq_slab_len - h->rq_head_len
			  : h->rq_replayable ? h->rq_fwd - h->rq_begin - h->rq_head_len
					     : 0,
	    .response_started = h->rs_start > 0 || c->to_client.head > 0,
	    .retries_done = h->retries,
	    .deadline_ns = h->deadline_ns ? h->deadline_ns : DEADLINE_NONE,
	};
	enum retry_verdict v;

	/* Neither whole in the buffer nor in a slab (a body larger than both): no resend. */
	if (!h->rq_replayable && !in_slab)
		t.body_buffered = false, t.has_body = true;
	http1_retry_cfg(c, &cfg);
	v = retry_decide(&cfg, &t, c->at.sv ? c->at.sv->budget : NULL, timer_now_ns());
	if (v == RETRY_YES) {
		h->retries++;
		WORKER_STAT_INC(w, http_retries);
		metrics_http_retry(w, c);
		if (c->at.sv)
			atomic_fetch_add_explicit(&c->at.sv->state->retries, 1,
						  memory_order_relaxed);
	} else if (v == RETRY_NO_BUDGET && c->at.sv) {
		atomic_fetch_add_explicit(&c->at.sv->state->retries_refused, 1,
					  memory_order_relaxed);
		metrics_http_retry_refused(w, c);
	}
	if (log_debug_on()) {
		char svc[2 * CONFIG_MAX_NAME + 16];

		pr_debug("proxy worker %d: %s: retry after try %u? %s", w->id,
			 conn_svc_name(c, svc, sizeof(svc)), h->retries + (v != RETRY_YES),
			 retry_verdict_name(v));
	}
	return v == RETRY_YES;
}

/*
 * Connect timeout of one attempt: the route's connect_timeout_ms, else
 * the target service's timeouts.connect_ms, else proxy.connect_timeout_ms.
 */
static uint64_t http1_connect_timeout_ns(const struct worker *w, const struct conn *c)
{
	const struct http1_conn *h = c->http;

	if (h->route && h->route->connect_timeout_ms)
		return (uint64_t)h->route->connect_timeout_ms * 1000000;
	if (c->at.sv && c->at.sv->connect_timeout_ns)
		return c->at.sv->connect_timeout_ns;
	return (uint64_t)w->cfg->connect_timeout_ms * 1000000;
}

/* The per-try timeout: the route's per_try_timeout_ms, else the service's. */
static uint64_t http1_per_try_ns(const struct conn *c)
{
	const struct http1_conn *h = c->http;

	if (h->route && h->route->per_try_timeout_ms)
		return (uint64_t)h->route->per_try_timeout_ms * 1000000;
	return c->at.sv ? c->at.sv->per_try_timeout_ns : 0;
}

/*
 * attempt_kind.open: a connection to endpoint idx of the target for the
 * try in flight: an idle pooled one (1), else a new connect (1, or 0 in
 * progress with its timer armed at the earliest of the attempt's end,
 * connect_deadline and the request's deadline), or -errno.
 */
static int http1_open(struct worker *w, struct conn *c, uint32_t idx, uint64_t now,
		      uint64_t connect_deadline)
{
	struct http1_conn *h = c->http;
	const struct config_endpoint *ep = &h->target->endpoints[idx];
	uint64_t end = now + http1_connect_timeout_ns(w, c);
	uint64_t per_try = http1_per_try_ns(c);
	struct pool_conn *pc;
	const char *tunnel_src;
	int ret;

	h->try_start_ns = now;
	h->up_tunneled = false; /* until this try has its connection */
	h->try_deadline_ns =
	    per_try ? deadline_try(h->deadline_ns ?: DEADLINE_NONE, per_try, now) : 0;
	if (h->try_deadline_ns == DEADLINE_NONE)
		h->try_deadline_ns = 0;
	if (!h->retried && attempt_pool_key(w, c, h->target, ep, &tunnel_src)) {
		pc = pool_take(w, &ep->addr, h->target_port_be, tunnel_src, c);
		if (pc) {
			h->up = pc;
			http1_up_ready(c);
			http1_arm_idle(w, c);
			return 1;
		}
	}
	ret = pool_connect_ep(w, h->target, ep, h->target_port_be, c, &pc);
	if (ret < 0)
		return ret;
	h->up = pc;
	http1_up_ready(c);
	if (ret == 1) {
		http1_arm_idle(w, c);
		return 1;
	}
	if (connect_deadline < end)
		end = connect_deadline;
	if (h->deadline_ns && h->deadline_ns < end)
		end = h->deadline_ns;
	http1_arm(w, c, end);
	return 0;
}

/* The request's deadline passed before a response head: 504 at once. */
void http1_deadline_passed(struct worker *w, struct conn *c)
{
	pick_outcome(c->at.sv, &c->at.bt, false, PEAK_EWMA_NO_RETRY_AFTER, timer_now_ns(),
			"the request deadline");
	if (c->at.sv)
		atomic_fetch_add_explicit(&c->at.sv->state->deadline_exceeded, 1,
					  memory_order_relaxed);
	metrics_http_deadline(w, c);
	http1_error(w, c, HTTP_ERR_TIMEOUT);
}

/*
 * attempt_kind.give_up: every endpoint of the target is ejected or busy
 * probing (ATTEMPT_NO_CANDIDATE), or no endpoint accepted a connection
 * and no retry is allowed: 503.
 */
static void http1_give_up(struct worker *w, struct conn *c, enum attempt_end why)
{
	struct http1_conn *h = c->http;
	char svc[2 * CONFIG_MAX_NAME + 16];

	if (why == ATTEMPT_NO_CANDIDATE) {
		worker_warn_ratelimited(w,
					"proxy worker %d: %s: every endpoint of %s/%s is "
					"ejected or busy probing; answering 503",
					w->id, conn_svc_name(c, svc, sizeof(svc)),
					h->target->namespace, h->target->name);
		http1_error(w, c, HTTP_ERR_NO_CANDIDATE);
		return;
	}
	WORKER_STAT_INC(w, gave_up);
	worker_warn_ratelimited(w,
				"proxy worker %d: %s: no endpoint of %s/%s accepted a connection "
				"(%u attempts, %d endpoints); last error: %s; answering 503",
				w->id, conn_svc_name(c, svc, sizeof(svc)), h->target->namespace,
				h->target->name, c->at.tried, h->target->n_endpoints,
				strerror(c->at.last_err ? c->at.last_err : ETIMEDOUT));
	http1_error(w, c, HTTP_ERR_CONNECT_FAILURE);
}

/* attempt_kind.target: the service the request was routed to. */
static const struct config_service *http1_target(const struct conn *c, uint16_t *port_be)
{
	*port_be = c->http->target_port_be;
	return c->http->target;
}

/* attempt_kind.expired: past the request's deadline, 504. */
static bool http1_expired(struct worker *w, struct conn *c, uint64_t now)
{
	struct http1_conn *h = c->http;

	if (!h->deadline_ns || now < h->deadline_ns)
		return false;
	http1_deadline_passed(w, c);
	return true;
}

/*
 * attempt_kind.fail_over: nothing was sent, so a connect failure is
 * retried on the policy's terms (connect_any_method, attempts, deadline,
 * budget).
 */
static bool http1_fail_over(struct worker *w, struct conn *c)
{
	return http1_may_retry(w, c, RETRY_FAIL_CONNECT, 0);
}

/* attempt_kind.wait: http1_timeout starts the next try at until. */
static bool http1_wait(struct worker *w, struct conn *c, uint64_t until)
{
	c->http->retry_at_ns = until;
	http1_arm_idle(w, c); /* closes c when it cannot */
	return true;
}

/*
 * An HTTP request in the attempt loop (attempt.h): a pooled connection
 * when there is one; a connect failure fails over at once when the retry
 * policy allows; giving up is a 503, the request's deadline a 504.
 */
static const struct attempt_kind http1_attempts = {
    .target = http1_target,
    .expired = http1_expired,
    .open = http1_open,
    .fail_over = http1_fail_over,
    .wait = http1_wait,
    .give_up = http1_give_up,
    .refuse = http1_local_refused,
};

/*
 * Start the next try of the request: the balancer's pick among the
 * endpoints not tried yet when there are any (P2C over PeakEWMA, breakers
 * admitting, a due probe first), a pooled connection or a new connect. A
 * connect failing at once fails over at once if the retry policy and the
 * budget allow. No candidate: wait (polling) up to the service's
 * fail-fast time, then 503. Past the request's deadline: 504.
 */
void http1_connect_next(struct worker *w, struct conn *c)
{
	c->http->retry_at_ns = 0;
	attempt_next(w, c, &http1_attempts);
}

void http1_connect_failed(struct worker *w, struct conn *c, int err)
{
	if (attempt_failed(w, c, &http1_attempts, err))
		http1_connect_next(w, c);
}

/*
 * Make the next send start at the request's first byte: in the client
 * buffer while it is whole there, else in the replay slab. Contract: the
 * caller checked it can be sent again (rq_replayable, or the slab whole
 * and the request framed to its end).
 */
static void http1_rq_rewind(struct conn *c)
{
	struct http1_conn *h = c->http;

	if (h->rq_replayable) {
		c->to_upstream.head = h->rq_begin;
		h->rq_slab_replay = false;
		return;
	}
	/* Every framed byte of the buffer is in the slab too. */
	c->to_upstream.head = h->rq_fwd;
	h->rq_slab_replay = true;
	h->rq_slab_sent = 0;
}

/*
 * Send the request again after a failed try (its outcome recorded and
 * the retry granted): the try's upstream is closed, so nothing more goes
 * to it; the response state is reset; the next try starts after a
 * full-jitter backoff (never past the deadline), on an endpoint not tried
 * yet when there is one.
 */
static void http1_retry(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	struct http1_limits rlim;
	uint64_t now = timer_now_ns(), wait = 0;

	timer_heap_del(&w->timers, &c->timer);
	http1_up_release(w, h, false);
	http1_rq_rewind(c);
	c->to_client.head = c->to_client.tail = 0;
	h->rs_start = h->rs_fwd = 0;
	h->rs_interim = 0;
	h->rs_got_bytes = h->rs_until_close = h->up_reused = false;
	http1_limits_default(&rlim);
	rlim.max_headers = http1_max_headers(w->cfg);
	http1_parser_init(&h->rs_parser, HTTP1_RESPONSE, &rlim);
	h->rs = HTTP1_RESP_HEAD;
	h->try_deadline_ns = 0;
	/* Its connects have a deadline of their own; fail-fast still counts from dispatch. */
	c->at.deadline_ns = now + (uint64_t)w->cfg->connect_deadline_ms * 1000000;
	if (c->at.sv && h->retries)
		wait = backoff_full_jitter(pick_rng(), c->at.sv->backoff_base_ns,
					   c->at.sv->backoff_max_ns, h->retries - 1);
	if (!wait) {
		http1_connect_next(w, c);
		return;
	}
	h->retry_at_ns = now + wait;
	http1_arm_idle(w, c);
}

/*
 * May the request go out a second time? The proxy cannot tell a server
 * that closed an idle connection just before the request arrived (nothing
 * was processed) from one that read it and then failed: both look like
 * EOF or RST before the response. So only requests that are safe to
 * repeat are sent again (Go's net/http rule, and DESIGN.md section 3):
 * idempotent methods (RFC 9110 9.2.2), a route marked retryable, or an
 * Idempotency-Key header.
 */
static bool http1_replay_safe(struct conn *c)
{
	struct http1_conn *h = c->http;
	const char *v;
	size_t vlen;

	switch (h->rq_head.method) {
	case HTTP1_METHOD_GET:
	case HTTP1_METHOD_HEAD:
	case HTTP1_METHOD_OPTIONS:
	case HTTP1_METHOD_TRACE:
	case HTTP1_METHOD_PUT:
	case HTTP1_METHOD_DELETE:
		return true;
	default:
		break;
	}
	if (h->route && h->route->retryable)
		return true;
	return http1_route_header(c, "idempotency-key", 15, &v, &vlen);
}

/*
 * The upstream connection failed (reset, send error, FIN before the
 * response). A reused connection that failed before any response byte
 * was most likely closed by the server while idle (when the failure looks
 * like a close: see idle_close): a request that is safe to repeat goes out
 * again, once, on a fresh connection, if it is still whole in the buffer
 * (or, framed to its end, in its replay slab).
 * Anything else counts as the endpoint's failure.
 */
void http1_up_failed(struct worker *w, struct conn *c, int err)
{
	struct http1_conn *h = c->http;
	char svc[2 * CONFIG_MAX_NAME + 16];

	if (log_debug_on())
		pr_debug("proxy worker %d: %s: upstream failed: %s", w->id,
			 conn_svc_name(c, svc, sizeof(svc)), strerror(err));
	/*
	 * An idle close shows as a FIN (EOF) before the response, or as EPIPE:
	 * the kernel's error for a reset that follows the FIN (our request hit
	 * a socket the server had closed). A reset out of an established
	 * connection (ECONNRESET, no FIN) is the server failing the request:
	 * the endpoint's failure, for the retry policy and the breaker.
	 */
	bool idle_close = err == EPIPE || (h->up && h->up->side.eof);
	bool resendable = h->rq_replayable || (h->rq_slab_whole && h->rq == HTTP1_REQ_DONE);
	int ret;

	if (idle_close && h->up_reused && !h->rs_got_bytes && resendable && !h->retried &&
	    http1_replay_safe(c) && h->rs == HTTP1_RESP_HEAD) {
		uint64_t now = timer_now_ns();

		/* Not the endpoint's failure: the same try, on a fresh connection. */
		WORKER_STAT_INC(w, http_retries);
		http1_up_release(w, h, false);
		h->retried = true;
		http1_rq_rewind(c);
		ret = http1_open(w, c, c->at.bt.idx, now,
				 now + (uint64_t)w->cfg->connect_deadline_ms * 1000000);
		if (ret < 0)
			http1_connect_failed(w, c, -ret);
		return;
	}
	if (h->rs == HTTP1_RESP_HEAD) {
		pick_outcome(c->at.sv, &c->at.bt, false, PEAK_EWMA_NO_RETRY_AFTER, timer_now_ns(),
				"a reset before the response");
		if (http1_may_retry(w, c, RETRY_FAIL_RESET_EARLY, 0))
			http1_retry(w, c);
		else
			http1_error(w, c, HTTP_ERR_UPSTREAM_RESET);
	} else {
		http1_abort(w, c);
	}
}

/*
 * Retry-After of the response head, as delta-seconds in ns (an HTTP-date
 * counts as none): the balancer's penalty for a failure asking for a wait.
 */
static uint64_t http1_rs_retry_after(const struct conn *c)
{
	const struct http1_conn *h = c->http;
	const char *base = c->to_client.data + h->rs_start;
	static const char name[] = "retry-after";

	for (uint32_t i = 0; i < h->rs_head.n_headers; i++) {
		const struct http1_header *f = &h->rs_head.headers[i];
		uint64_t v = 0;

		if (f->name.len != sizeof(name) - 1 ||
		    strncasecmp(base + f->name.off, name, sizeof(name) - 1))
			continue;
		for (uint32_t k = 0; k < f->value.len; k++) {
			char ch = base[f->value.off + k];

			if (ch < '0' || ch > '9' || v > 86400)
				return PEAK_EWMA_NO_RETRY_AFTER;
			v = v * 10 + (uint64_t)(ch - '0');
		}
		return v * 1000000000ull;
	}
	return PEAK_EWMA_NO_RETRY_AFTER;
}

/*
 * A final response head arrived for the try in flight: its outcome goes to
 * the balancer and the breaker (5xx and 429 are failures), and a status
 * the retry policy lists is retried when allowed, before any of it
 * reaches the client. Returns false when the request was retried (or c
 * closed).
 */
bool http1_rs_outcome(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	uint16_t status = (uint16_t)h->rs_head.status;
	bool failed = status >= 500 || status == 429;
	char what[24];

	snprintf(what, sizeof(what), "status %u", status);
	pick_outcome(c->at.sv, &c->at.bt, !failed, failed ? http1_rs_retry_after(c) : 0,
			timer_now_ns(), what);
	if (status < 400 || !http1_may_retry(w, c, RETRY_FAIL_STATUS, status))
		return true;
	http1_retry(w, c);
	return false;
}

/*
 * The body is about to outgrow the client buffer (its first bytes are
 * dropped next): keep the request in a replay slab when a retry could
 * send it again: the method is idempotent or the route retryable, and
 * the body (Content-Length, or chunked as it arrives) is within the
 * retry policy's max_body_bytes capped at WORKER_REPLAY_BODY_BYTES.
 * Contract: every byte of the request, rq_begin to rq_fwd, is still in
 * the buffer. No slab free: counted, and the request is not retryable.
 */
void http1_slab_take(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	const char *method = c->to_upstream.data + h->rq_head.method_tok.off;
	struct retry_policy_cfg rc;
	uint32_t limit;

	if (h->rq_slab)
		return;
	http1_retry_cfg(c, &rc);
	if (!rc.route_retryable && !retry_method_idempotent(method, h->rq_head.method_tok.len))
		return;
	limit = rc.max_body_bytes < WORKER_REPLAY_BODY_BYTES ? rc.max_body_bytes
							     : WORKER_REPLAY_BODY_BYTES;
	if (h->rq_body == HTTP1_BODY_LENGTH ? h->rq_head.content_length > limit
					    : h->rq_body != HTTP1_BODY_CHUNKED)
		return;
	h->rq_slab = worker_replay_get(w);
	if (!h->rq_slab) {
		WORKER_STAT_INC(w, http_replay_no_slab);
		return;
	}
	h->rq_slab_cap = h->rq_head_len + limit; /* within replay_slab_bytes: head <= buffer */
	h->rq_slab_len = 0;
	h->rq_slab_whole = true;
	http1_slab_append(c, h->rq_begin, h->rq_fwd);
}

/*
 * The try in flight timed out before its response head (what names the
 * timeout in the endpoint's log line): the endpoint is charged a failure,
 * and the request is retried where the policy and budget allow, else
 * answered 504. c may be closed on return.
 */
void http1_try_timed_out(struct worker *w, struct conn *c, uint64_t now, const char *what)
{
	pick_outcome(c->at.sv, &c->at.bt, false, PEAK_EWMA_NO_RETRY_AFTER, now, what);
	if (http1_may_retry(w, c, RETRY_FAIL_TIMEOUT, 0))
		http1_retry(w, c);
	else
		http1_error(w, c, HTTP_ERR_TIMEOUT);
}
