// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The h2 kind (h2.h, h2_int.h): a client connection's nghttp2 server
 * session; each stream one request, routed, balanced and timed here, and
 * sent on a pooled upstream session (h2_upstream.c).
 */
#include "proxy/h2_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "proxy/attempt.h"
#include "policy/policy.h"
#include "proxy/authz.h"
#include "proxy/conn_io.h"
#include "proxy/h2_grpc.h"
#include "proxy/h2_to_h1.h"
#include "proxy/http_routes.h"
#include "proxy/observe.h"
#include "proxy/proxy_int.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "proxy/worker.h"
#include "recording/http_metrics.h"
#include "resilience/backoff.h"
#include "resilience/deadline.h"
#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

/* ---- downstream: the client's session ---------------------------------- */

static void h2_down_arm(struct worker *w, struct h2_down *d);

/* st's times (deadline, next try, per-try timeout, idle) into its session's timer. */
static void h2_stream_due(struct h2_down *d, const struct h2_stream *st)
{
	if (st->answered)
		return;
	h2_down_by(d, st->deadline_ns);
	h2_down_by(d, st->retry_at_ns);
	if (!st->rs_submitted) {
		h2_down_by(d, st->try_deadline_ns);
		h2_down_by(d, st->hold_until_ns);
	}
	if (st->idle_ns)
		h2_down_by(d, st->active_ns + st->idle_ns);
}

/*
 * Answer st with the proxy's own error err when no response head went to
 * the client yet (gRPC: a trailers-only response, UNAVAILABLE or, for a
 * timeout, DEADLINE_EXCEEDED, with grpc-message naming the cause), else
 * reset the stream. The upstream stream, if any, is reset.
 */
static void h2_stream_error(struct worker *w, struct h2_stream *st, enum http_error err)
{
	char status[8], msg[96];
	const char *stage = http_error_stage(err);
	bool timeout = err == HTTP_ERR_TIMEOUT;
	bool denied = err == HTTP_ERR_POLICY_DENIED && st->deny_reason;
	nghttp2_session *s = st->d->s;

	h2_up_unlink(st, NGHTTP2_CANCEL);
	if (st->rs_submitted) {
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	st->rs_submitted = true;
	st->rs_end = true;
	WORKER_STAT_INC(w, http_errors);
	if (st->grpc) {
		int code = denied    ? GRPC_STATUS_PERMISSION_DENIED
			   : timeout ? GRPC_STATUS_DEADLINE_EXCEEDED
				     : GRPC_STATUS_UNAVAILABLE;
		char gs[4];
		int ml = snprintf(msg, sizeof(msg), "shoal: %s%s%.64s", stage, denied ? " by " : "",
				  denied ? st->deny_reason : "");
		int gl = snprintf(gs, sizeof(gs), "%d", code);
		nghttp2_nv nv[] = {
		    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
		     NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-status", (uint8_t *)gs, 11, (size_t)gl, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, (size_t)ml,
		     NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-error", (uint8_t *)stage, 13, strlen(stage),
		     NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-policy", (uint8_t *)(denied ? st->deny_reason : ""), 14,
		     denied ? strlen(st->deny_reason) : 0, NGHTTP2_NV_FLAG_NONE},
		};

		st->status = 200;
		st->grpc_status = code;
		nghttp2_submit_response(s, st->id, nv, H2_ARRAY_SIZE(nv) - !denied, NULL);
	} else {
		int sl = snprintf(status, sizeof(status), "%d", http_error_status(err));
		nghttp2_nv nv[] = {
		    {(uint8_t *)":status", (uint8_t *)status, 7, (size_t)sl, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-length", (uint8_t *)"0", 14, 1, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-error", (uint8_t *)stage, 13, strlen(stage),
		     NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-policy", (uint8_t *)(denied ? st->deny_reason : ""), 14,
		     denied ? strlen(st->deny_reason) : 0, NGHTTP2_NV_FLAG_NONE},
		};

		st->status = http_error_status(err);
		nghttp2_submit_response(s, st->id, nv, H2_ARRAY_SIZE(nv) - !denied, NULL);
	}
	worker_conn_defer(w, st->d->c);
}

static void h2_stream_free(struct h2_stream *st)
{
	h2_fields_free(&st->rq);
	h2_fields_free(&st->rs);
	h2_fields_free(&st->tr);
	h2_fields_free(&st->rq_tr);
	h2_bytes_free(&st->to_up);
	h2_bytes_free(&st->to_down);
	free(st->tele);
	proxy_snap_put(st->snap);
	h2_mem_free(st);
}

/* Remove st from its client session's list and free it. */
static void h2_stream_drop(struct worker *w, struct h2_stream *st)
{
	struct h2_down *d = st->d;

	h2_up_unlink(st, NGHTTP2_CANCEL);
	h2_done(w, st, false, false, 0, "reset");
	if (st->prev)
		st->prev->next = st->next;
	else
		d->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	d->n_streams--;
	h2_stream_free(st);
}

/* route_request.header over a stream's request fields. */
static int h2_route_header(void *ctx, const char *name, size_t name_len, const char **value,
			   size_t *value_len)
{
	const struct h2_fields *f = ctx;

	for (uint32_t i = 0; i < f->n; i++) {
		if (f->nv[i].namelen == name_len &&
		    !strncasecmp((const char *)f->nv[i].name, name, name_len)) {
			*value = (const char *)f->nv[i].value;
			*value_len = f->nv[i].valuelen;
			return 1;
		}
	}
	return 0;
}

static uint16_t h2_port_be(const struct config_service *svc, uint16_t svc_port)
{
	for (int i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == svc_port)
			return service_target_port_be(&svc->ports[i]);
	return 0;
}

/*
 * The retry policy of st (docs/proxy.md, "Retries"): its target service's
 * knobs with its route's overrides, as HTTP/1's (http1_retry.c), and the
 * route's gRPC codes. A request without a route retries no gRPC code:
 * gRPC calls are POSTs, which only a route marked retryable vouches for.
 */
static void h2_retry_cfg(const struct h2_stream *st, struct retry_policy_cfg *out)
{
	const struct config_route *r = st->route;

	if (st->sv)
		*out = st->sv->retry_cfg;
	else
		retry_policy_cfg_default(out);
	if (!r)
		return;
	out->route_retryable = r->retryable;
	if (r->n_retry_statuses > 0 && r->n_retry_statuses <= RETRY_MAX_STATUSES) {
		out->n_statuses = (uint8_t)r->n_retry_statuses;
		memcpy(out->statuses, r->retry_statuses,
		       out->n_statuses * sizeof(out->statuses[0]));
	}
	out->grpc_statuses = 0;
	for (int i = 0; i < r->n_retry_grpc_statuses && i < CONFIG_MAX_RETRY_GRPC_STATUSES; i++)
		if (r->retry_grpc_statuses[i] <= RETRY_GRPC_MAX_CODE)
			out->grpc_statuses |= 1u << r->retry_grpc_statuses[i];
}

/* A request-row event of st's series (retry, refusal, deadline). */
static void h2_stream_event(struct worker *w, const struct h2_stream *st,
			    enum metrics_http_event ev)
{
	struct metrics_http_key k;
	const struct shoal_addr *ep;

	if (h2_key(w, st, &k, &ep))
		metrics_http_shard_event(w->metrics, &k, ev);
}

/* What retry_decide() is told of st's failed try (how: f; code: status or grpc-status). */
static struct retry_try h2_retry_try(const struct h2_stream *st, enum retry_failure f, int code)
{
	const nghttp2_nv *m = h2_field(&st->rq, ":method");

	return (struct retry_try){
	    .method = m ? (const char *)m->value : "",
	    .method_len = m ? m->valuelen : 0,
	    .failure = f,
	    .status = code > 0 && code < 1000 ? (uint16_t)code : 0,
	    .has_body = st->rq_bytes > 0 || !st->rq_end,
	    /* Every byte so far is held, and the rest will be as it comes. */
	    .body_buffered = !st->replay_lost,
	    .body_bytes = st->rq_bytes,
	    .response_started = st->rs_submitted,
	    .retries_done = st->retries,
	    .deadline_ns = st->deadline_ns ? st->deadline_ns : DEADLINE_NONE,
	};
}

/*
 * May st's failed try (how: f; code: status or grpc-status) be retried?
 * retry_decide() asks method, failure, body, response started, attempts,
 * deadline and last the budget, which a yes is charged to. Counts the
 * retry, or the budget's refusal.
 */
static bool h2_may_retry(struct worker *w, struct h2_stream *st, enum retry_failure f, int code)
{
	struct retry_policy_cfg rc;
	struct retry_try t = h2_retry_try(st, f, code);
	enum retry_verdict v;

	if (st->answered)
		return false;
	h2_retry_cfg(st, &rc);
	v = retry_decide(&rc, &t, st->sv ? st->sv->budget : NULL, timer_now_ns());
	if (v == RETRY_YES) {
		st->retries++;
		WORKER_STAT_INC(w, http_retries);
		h2_stream_event(w, st, METRICS_HTTP_RETRY);
		if (st->sv)
			atomic_fetch_add_explicit(&st->sv->state->retries, 1, memory_order_relaxed);
	} else if (v == RETRY_NO_BUDGET && st->sv) {
		atomic_fetch_add_explicit(&st->sv->state->retries_refused, 1, memory_order_relaxed);
		h2_stream_event(w, st, METRICS_HTTP_RETRY_REFUSED);
	}
	if (log_debug_on())
		pr_debug("proxy worker %d: h2 stream %d of %s/%s: retry after try %u? %s", w->id,
			 st->id, st->target->namespace, st->target->name,
			 st->retries + (v != RETRY_YES), retry_verdict_name(v));
	return v == RETRY_YES;
}

/*
 * Could st's try, failing now with one of its route's gRPC codes, be
 * retried? h2_may_retry's questions, the budget's only asked (nothing
 * withdrawn, nothing counted): the answer may be no once the code comes.
 */
static bool h2_could_retry_grpc(const struct h2_stream *st, uint64_t now)
{
	struct retry_policy_cfg rc;
	struct retry_try t;

	if (st->answered || st->rs_submitted)
		return false;
	h2_retry_cfg(st, &rc);
	if (!rc.grpc_statuses)
		return false;
	/* Any code of the route's: whether it is retried is the same for each. */
	t = h2_retry_try(st, RETRY_FAIL_GRPC_STATUS, __builtin_ctz(rc.grpc_statuses));
	if (retry_decide(&rc, &t, NULL, now) != RETRY_YES)
		return false;
	return !st->sv || !st->sv->budget || retry_budget_has_room(st->sv->budget, now);
}

/* h2_down_ops.hold (h2_int.h). */
static bool h2_hold(struct worker *w, struct h2_stream *st)
{
	const struct config *cfg = worker_conn_config(w, st->d->c);
	uint32_t hold_ms = st->route && st->route->grpc_head_hold_set
			       ? st->route->grpc_head_hold_ms
			       : cfg->http2.grpc_head_hold_ms;
	uint64_t hold = (uint64_t)hold_ms * 1000000, now = timer_now_ns();

	if (!hold)
		return false;
	if (!h2_could_retry_grpc(st, now))
		return false;
	st->hold_until_ns = now + hold;
	h2_stream_due(st->d, st);
	/* The session's timer is armed on its flush. */
	worker_conn_defer(w, st->d->c);
	return true;
}

/* st's deadline passed before its answer: DEADLINE_EXCEEDED (gRPC) or 504. */
static void h2_stream_expired(struct worker *w, struct h2_stream *st)
{
	h2_stream_event(w, st, METRICS_HTTP_DEADLINE);
	if (st->sv)
		atomic_fetch_add_explicit(&st->sv->state->deadline_exceeded, 1,
					  memory_order_relaxed);
	h2_done(w, st, st->bt.active, true, 504, "timeout");
	h2_stream_error(w, st, HTTP_ERR_TIMEOUT);
}

/*
 * The end of a try started at now: the route's per_try_timeout_ms, else
 * the service's timeouts.per_try_ms, never past the request's deadline;
 * 0 without a per-try timeout.
 */
static uint64_t h2_try_deadline(const struct h2_stream *st, uint64_t now)
{
	uint64_t per_try = st->sv ? st->sv->per_try_timeout_ns : 0, end;

	if (st->route && st->route->per_try_timeout_ms)
		per_try = (uint64_t)st->route->per_try_timeout_ms * 1000000;
	if (!per_try)
		return 0;
	end = deadline_try(st->deadline_ns ? st->deadline_ns : DEADLINE_NONE, per_try, now);
	return end == DEADLINE_NONE ? 0 : end;
}

/*
 * Start the next try of st now: a pick among the endpoints of its target
 * not tried yet when there are any, a pooled session to it (or a new
 * one) and st's request on it, its body from the first byte. A connect
 * failing at once fails over at once when the retry policy allows. With
 * no candidate endpoint st waits, polling as the attempt loop does
 * (attempt.c), up to the service's fail-fast time or its deadline, then
 * gets a 503 / UNAVAILABLE no-candidate.
 */
static void h2_try(struct worker *w, struct h2_stream *st)
{
	struct h2_down *d = st->d;
	uint32_t n = (uint32_t)st->target->n_endpoints;

	st->retry_at_ns = 0;
	for (;;) {
		uint64_t now = timer_now_ns();
		struct h2_up *up;
		uint32_t idx;
		int err;

		if (st->deadline_ns && now >= st->deadline_ns) {
			h2_stream_expired(w, st);
			return;
		}
		idx = pick_endpoint(st->sv, n, now, st->avoid, st->n_avoid, &st->bt);
		if (idx == PICK_NONE) {
			uint64_t until = st->fail_fast_ns,
				 poll = now + ATTEMPT_NO_CANDIDATE_POLL_NS;

			if (st->deadline_ns && st->deadline_ns < until)
				until = st->deadline_ns;
			if (now < until) {
				st->retry_at_ns = poll < until ? poll : until;
				h2_stream_due(d, st);
				h2_down_arm(w, d);
				return;
			}
			if (st->sv)
				atomic_fetch_add_explicit(&st->sv->state->no_candidate, 1,
							  memory_order_relaxed);
			worker_warn_ratelimited(
			    w,
			    "proxy worker %d: every endpoint of %s/%s is ejected "
			    "or busy probing; answering %s",
			    w->id, st->target->namespace, st->target->name,
			    st->grpc ? "UNAVAILABLE" : "503");
			h2_stream_error(w, st, HTTP_ERR_NO_CANDIDATE);
			h2_done(w, st, false, false, 503, "no candidate");
			return;
		}
		if (st->n_avoid < PICK_MAX_AVOID)
			st->avoid[st->n_avoid++] = idx;
		pick_start(st->sv, &st->bt, now);
		st->up_tunneled = false; /* until this try has its connection */
		if (h2h1_declared(st->target, d->c->svc_port)) {
			/*
			 * One HTTP/1.1 exchange (h2_to_h1.c); its failures come back
			 * through h2_retry as an upstream stream's do, and a start
			 * that fails at once has scheduled its retry already.
			 */
			st->try_deadline_ns = 0;
			if (h2h1_start(w, st, &st->target->endpoints[idx], st->port_be) == 0)
				st->try_deadline_ns = h2_try_deadline(st, now);
			h2_stream_due(d, st);
			h2_down_arm(w, d);
			return;
		}
		up = h2_up_get(w, d->c, st->target, &st->target->endpoints[idx], st->port_be, &err);
		if (!up) {
			bool local = sock_err_local(-err);

			worker_warn_ratelimited(
			    w, "proxy worker %d: %s/%s: cannot connect to endpoint %u: %s", w->id,
			    st->target->namespace, st->target->name, idx, strerror(-err));
			if (local) {
				h2_stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
				h2_done(w, st, false, false, 503, "connect failure");
				return;
			}
			pick_outcome(st->sv, &st->bt, false, PEAK_EWMA_NO_RETRY_AFTER, now,
				     "a failed connect");
			if (h2_may_retry(w, st, RETRY_FAIL_CONNECT, 0))
				continue;
			h2_stream_error(w, st, HTTP_ERR_CONNECT_FAILURE);
			h2_done(w, st, true, true, 503, "connect failure");
			return;
		}
		/* The request again from its first byte, kept for this (h2_down_on_data). */
		st->to_up.off = 0;
		st->rq_framed = 0;
		st->up_deferred = false;
		if (h2_up_submit(w, up, st)) {
			h2_stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
			h2_done(w, st, false, false, 503, "submit");
			return;
		}
		st->try_deadline_ns = h2_try_deadline(st, now);
		h2_stream_due(d, st);
		h2_down_arm(w, d);
		return;
	}
}

/* What a failed try is called in the balancer's log lines. */
static const char *h2_failure_what(enum retry_failure f)
{
	switch (f) {
	case RETRY_FAIL_CONNECT:
		return "a failed connect";
	case RETRY_FAIL_STATUS:
		return "a retried status";
	case RETRY_FAIL_GRPC_STATUS:
		return "a retried grpc-status";
	case RETRY_FAIL_TIMEOUT:
		return "a per-try timeout";
	default:
		return "a reset before the response";
	}
}

/* h2_down_ops.retry (h2_int.h). */
static bool h2_retry(struct worker *w, struct h2_stream *st, enum retry_failure f, int code)
{
	uint64_t now = timer_now_ns(), wait = 0;

	if (st->rs_submitted || !h2_may_retry(w, st, f, code))
		return false;
	/*
	 * A refused stream was never processed, and a GOAWAY is how an
	 * endpoint drains (max_connection_age, a rolling update): no failure
	 * of it, or draining endpoints would be ejected.
	 */
	if (f == RETRY_FAIL_REFUSED)
		pick_cancel(st->sv, &st->bt, now);
	else
		pick_outcome(st->sv, &st->bt, false, PEAK_EWMA_NO_RETRY_AFTER, now,
			     h2_failure_what(f));
	h2_fields_free(&st->rs);
	h2_fields_free(&st->tr);
	st->to_down.off = st->to_down.len = 0;
	st->status = 0;
	st->grpc_status = GRPC_STATUS_NONE;
	st->rs_end = false;
	st->try_deadline_ns = 0;
	st->hold_until_ns = 0;
	/* Rewound now: kept bytes are never compacted away at off == len. */
	st->to_up.off = 0;
	st->rq_framed = 0;
	/* Nothing was processed: at once elsewhere; an answer: after a backoff. */
	if (f != RETRY_FAIL_REFUSED && f != RETRY_FAIL_CONNECT && st->sv)
		wait = backoff_full_jitter(pick_rng(), st->sv->backoff_base_ns,
					   st->sv->backoff_max_ns, st->retries - 1);
	st->retry_at_ns = now + wait;
	h2_stream_due(st->d, st);
	/* Not from inside the upstream session's callback: on c's deferred turn. */
	worker_conn_defer(w, st->d->c);
	return true;
}

/*
 * st's try had no response head by its per-try timeout: the endpoint's
 * failure, and the request is retried where the policy and the budget
 * allow (RETRY_FAIL_TIMEOUT: idempotent methods or a retryable route, as
 * for HTTP/1), else answered DEADLINE_EXCEEDED / 504.
 */
static void h2_try_timed_out(struct worker *w, struct h2_stream *st)
{
	st->try_deadline_ns = 0;
	if (h2_retry(w, st, RETRY_FAIL_TIMEOUT, 0)) {
		h2_up_unlink(st, NGHTTP2_CANCEL);
		return;
	}
	h2_done(w, st, st->bt.active, true, 504, "per-try timeout");
	h2_stream_error(w, st, HTTP_ERR_TIMEOUT);
}

/* Start the tries of d's streams that are due (a backoff or a poll ended). */
static void h2_down_due(struct worker *w, struct h2_down *d)
{
	uint64_t now = timer_now_ns();

	for (struct h2_stream *st = d->streams; st; st = st->next)
		if (st->retry_at_ns && !st->answered && now >= st->retry_at_ns)
			h2_try(w, st);
}

/*
 * The request head of st is complete: route it (the HTTP routes of the
 * connection's service, the newest config, whose snapshot st holds from
 * now on), give it its deadline (the route's or service's, and a shorter
 * grpc-timeout) and start its first try (h2_try).
 */
/*
 * The policy's answer for st, routed (docs/policy.md, "Enforcement"): the
 * service that serves it, its :method and normalised :path (a gRPC
 * /package.Service/Method). A denial sets st->deny_reason; false then.
 */
static bool h2_authorized(struct worker *w, struct h2_stream *st, const nghttp2_nv *m,
			  const nghttp2_nv *p)
{
	const struct policy_table *tb = authz_table(w, st->target);
	char path[ROUTES_MAX_PATH + 1];
	/* Normalised only for a policy that looks at requests. */
	size_t n = p && policy_table_has_requests(tb)
		       ? http_routes_normalize_path((const char *)p->value, p->valuelen, path,
						    sizeof(path))
		       : ROUTES_NO_PATH;
	struct policy_request rq = {
	    .method = m ? (const char *)m->value : "",
	    .method_len = m ? m->valuelen : 0,
	    .path = path,
	    .path_len = n == ROUTES_NO_PATH ? 0 : n,
	};

	return authz_allow(w, st->d->c, tb, st->target, st->d->c->svc_port, &rq,
			   &st->deny_reason);
}

/* A field of the proxy's own namespace (x-shoal-*), never taken from a client. */
static bool h2_is_shoal_field(const char *name, size_t len)
{
	/* nghttp2 refuses upper-case names in HTTP/2: comparing bytes suffices. */
	return len >= 8 && !memcmp(name, "x-shoal-", 8);
}

/*
 * The proxy's own fields of st's request, as HTTP/1's head rewrite makes
 * them (docs/mtls.md, "The caller's identity at the destination"): every
 * x-shoal-* field the client sent dropped, then, with
 * mtls.peer_identity_header and a known caller, x-shoal-peer-identity
 * added. Both an HTTP/2 endpoint (h2_upstream.c submits st->rq) and an
 * HTTP/1.1 one (h2_to_h1.c formats its head from st->rq) get exactly
 * that one. Its value is the session's (d->peer_identity), so a request
 * allocates nothing for it beyond a field slot. It counts in st->rq as a
 * client's field does (H2_MAX_FIELDS, its bytes), and a request that
 * leaves no room for it is answered 431 (one that finds no memory, 503):
 * a request whose caller is known never goes on without it. Returns 0,
 * or -1 when st was answered.
 */
static int h2_own_fields(struct worker *w, struct h2_stream *st, const struct config *cfg)
{
	struct h2_down *d = st->d;
	const char *ident = d->c->src_ident;
	char peer[PEER_IDENTITY_MAX];
	int err = 0;

	h2_fields_drop(&st->rq, h2_is_shoal_field);
	if (!cfg->mtls.peer_identity_header || !ident)
		return 0;
	if (!d->peer_identity) {
		size_t n = attempt_peer_identity(cfg->identity.trust_domain, ident, peer,
						 sizeof(peer));

		d->peer_identity = malloc(n);
		if (d->peer_identity) {
			memcpy(d->peer_identity, peer, n);
			d->peer_identity_len = n;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err)
		err = h2_fields_add_own(&st->rq, PEER_IDENTITY_FIELD,
					sizeof(PEER_IDENTITY_FIELD) - 1, d->peer_identity,
					d->peer_identity_len);
	if (!err)
		return 0;
	if (err == -E2BIG) {
		h2_stream_error(w, st, HTTP_ERR_HEAD_TOO_LARGE);
		h2_done(w, st, false, false, 431, "head too large");
	} else {
		h2_stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
		h2_done(w, st, false, false, 503, "proxy resources");
	}
	return -1;
}

static void h2_dispatch(struct worker *w, struct h2_stream *st)
{
	struct conn *c = st->d->c;
	const struct config *cfg;
	const nghttp2_nv *m = h2_field(&st->rq, ":method"), *a = h2_field(&st->rq, ":authority"),
			 *p = h2_field(&st->rq, ":path"), *ct = h2_field(&st->rq, "content-type"),
			 *gt = h2_field(&st->rq, "grpc-timeout");
	struct route_request req = {0};
	const struct config_route *r = NULL;
	struct retry_policy_cfg rc;
	uint64_t now = timer_now_ns(), timeout = 0, gns;
	uint16_t port_be;

	st->start_ns = now;
	st->bt.idx = PICK_NONE;
	st->grpc = ct && grpc_is_content_type((const char *)ct->value, ct->valuelen);
	WORKER_STAT_INC(w, http_requests);
	/*
	 * Each stream is routed with the newest config: it holds its own
	 * reference to that snapshot (its target, route and balancer view
	 * point into it), so c may move on under the streams still open.
	 */
	if (worker_conn_follow(w, c) < 0) {
		h2_stream_error(w, st, HTTP_ERR_SERVICE_GONE);
		h2_done(w, st, false, false, 503, "gone");
		return;
	}
	st->snap = c->snap;
	if (st->snap)
		proxy_snap_get(st->snap);
	cfg = worker_conn_config(w, c);
	st->svc = c->svc;
	st->target = c->svc;
	/* Before tracing adds its fields: the identity is never the one left out. */
	if (h2_own_fields(w, st, cfg) < 0)
		return;
	tele_h2_start(w, st);
	port_be = c->port_be;
	if (m && p && c->svc->n_routes) {
		req.method = (const char *)m->value;
		req.method_len = m->valuelen;
		req.host = a ? (const char *)a->value : NULL;
		req.host_len = a ? a->valuelen : 0;
		req.path = (const char *)p->value;
		req.path_len = p->valuelen;
		req.header = h2_route_header;
		req.ctx = &st->rq;
		r = http_routes_match(c->svc, &req);
	}
	if (r) {
		uint32_t b = http_routes_pick_backend(r, (uint32_t)(rng_next(pick_rng()) >> 32));

		st->route = r;
		if (b < (uint32_t)cfg->n_services) {
			uint16_t pb = h2_port_be(cfg->services[b], c->svc_port);

			if (pb) {
				st->target = cfg->services[b];
				port_be = pb;
			}
		}
	}
	st->port_be = port_be;
	st->sv = worker_es_service(w, c, cfg, st->target);
	if (cfg->policy && !h2_authorized(w, st, m, p)) {
		h2_stream_error(w, st, HTTP_ERR_POLICY_DENIED);
		h2_done(w, st, false, false, 403, "denied");
		return;
	}
	if (r && r->timeout_ms)
		timeout = (uint64_t)r->timeout_ms * 1000000;
	else if (st->sv && st->sv->request_timeout_ns)
		timeout = st->sv->request_timeout_ns;
	else
		timeout = (uint64_t)cfg->http_request_timeout_ms * 1000000;
	if (gt && grpc_timeout_parse((const char *)gt->value, gt->valuelen, &gns) == 0 &&
	    (!timeout || gns < timeout))
		timeout = gns ? gns : 1;
	st->deadline_ns = timeout ? deadline_after(now, timeout) : 0;
	/* The route's idle timeout, per stream: the connection's is for silence on all of them. */
	st->idle_ns = r && r->idle_timeout_ms ? (uint64_t)r->idle_timeout_ms * 1000000 : 0;
	st->active_ns = now;
	st->fail_fast_ns = now + (st->sv ? st->sv->fail_fast_ns : 0);
	/* The body is kept for a replay up to the policy's limit (h2_down_on_data). */
	h2_retry_cfg(st, &rc);
	st->replay_max = rc.max_body_bytes;
	st->to_up.keep = true;
	if (st->sv) {
		retry_budget_deposit(st->sv->budget, now);
		atomic_fetch_add_explicit(&st->sv->state->requests, 1, memory_order_relaxed);
	}
	if (st->target->n_endpoints <= 0) {
		worker_warn_ratelimited(w, "proxy worker %d: %s/%s has no endpoints; answering %s",
					w->id, st->target->namespace, st->target->name,
					st->grpc ? "UNAVAILABLE" : "503");
		h2_stream_error(w, st, HTTP_ERR_NO_ENDPOINTS);
		h2_done(w, st, false, false, 503, "no endpoints");
		return;
	}
	h2_try(w, st);
}

/* The client opened stream id (nghttp2 checked it is new): note the ids it skipped. */
static void h2_down_opened(struct h2_down *d, int32_t id)
{
	int32_t next = d->last_id ? d->last_id + 2 : 1;

	if (id > next) {
		if (d->n_skipped == H2_SKIPPED_RANGES) {
			memmove(d->skipped, d->skipped + 1,
				sizeof(d->skipped) - sizeof(d->skipped[0]));
			d->n_skipped--;
		}
		d->skipped[d->n_skipped++] = (struct h2_id_run){next, id - 2};
	}
	if (id > d->last_id)
		d->last_id = id;
}

/*
 * Before each frame: a HEADERS on a stream id the client skipped is a
 * connection error (RFC 9113 5.1.1), which nghttp2 would ignore. Failing
 * the callback fails nghttp2_session_mem_recv: h2_down_io sends the GOAWAY.
 */
static int h2_down_on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
	struct h2_down *d = ud;

	(void)s;
	if (hd->type != NGHTTP2_HEADERS || hd->stream_id > d->last_id)
		return 0;
	for (uint32_t i = 0; i < d->n_skipped; i++)
		if (hd->stream_id >= d->skipped[i].lo && hd->stream_id <= d->skipped[i].hi) {
			if (log_debug_on())
				pr_debug("proxy worker %d: h2 client: HEADERS on stream %d, "
					 "skipped before %d",
					 d->w->id, hd->stream_id, d->last_id);
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
	return 0;
}

/* Stream id of d refused for the buffer budget: REFUSED_STREAM, counted. */
static void h2_refuse_mem(struct h2_down *d, int32_t id)
{
	nghttp2_submit_rst_stream(d->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
	worker_refused(d->w, PROXY_CAP_memory, "an HTTP/2 stream");
}

static int h2_down_on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	h2_down_opened(d, frame->hd.stream_id);
	/*
	 * The buffer budget is spent: refused before any of it is kept
	 * (docs/proxy.md). The stream's own state is charged too, from the
	 * worker's cache (h2_mem_zalloc).
	 */
	st = h2_mem_out(d->w) ? NULL : h2_mem_zalloc(d->w, sizeof(*st));
	if (!st) {
		h2_refuse_mem(d, frame->hd.stream_id);
		return 0;
	}
	st->d = d;
	st->id = frame->hd.stream_id;
	st->grpc_status = GRPC_STATUS_NONE;
	st->bt.idx = PICK_NONE;
	st->next = d->streams;
	if (d->streams)
		d->streams->prev = st;
	d->streams = st;
	d->n_streams++;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

static int h2_down_on_header(nghttp2_session *s, const nghttp2_frame *frame, nghttp2_rcbuf *name,
			     nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	struct h2_fields *f;
	int err;

	(void)flags;
	if (!st || st->mem_refused)
		return 0;
	/* After the head, a HEADERS frame is the request's trailers: kept to go on. */
	f = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? &st->rq : &st->rq_tr;
	err = h2_mem_out(d->w) ? -ENOMEM : h2_fields_add(f, name, value);
	/* Out of budget mid-head: keep nothing more, refuse it at its end. */
	if (err == -ENOMEM && f == &st->rq) {
		st->mem_refused = true;
		h2_fields_free(&st->rq);
		return 0;
	}
	if (err == -ENOMEM)
		worker_refused(d->w, PROXY_CAP_memory, "HTTP/2 request trailers");
	if (err || st->rq.bytes + st->rq_tr.bytes >
		       worker_conn_config(d->w, d->c)->http2.max_header_list_bytes)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static int h2_down_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	if (!st)
		return 0;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		st->rq_end = true;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    st->mem_refused)
		h2_refuse_mem(d, st->id);
	else if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		h2_dispatch(d->w, st);
	else if (st->rq_end)
		h2_up_wake(d->w, st);
	return 0;
}

static int h2_down_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
			   size_t len, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	/* Nowhere to go (answered, or no such request): the window is ours to give back. */
	if (!st || st->answered) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	/*
	 * Within the stream's window, which only grows once these went on;
	 * kept while no upstream stream takes them (a try to come), and for
	 * a replay while the whole body is within the retry policy's limit.
	 * No room (the buffer budget): the request is answered with 503 /
	 * UNAVAILABLE (a reset once a response went out), counted; its
	 * bytes go back to the windows, as any unwanted ones.
	 */
	if (h2_bytes_put(&st->to_up, data, len)) {
		nghttp2_session_consume(s, id, len);
		worker_refused(d->w, PROXY_CAP_memory, "an HTTP/2 request body");
		h2_done(d->w, st, false, false, 503, "buffer budget");
		h2_stream_error(d->w, st, HTTP_ERR_LOCAL_RESOURCES);
		return 0;
	}
	st->rq_bytes += len;
	h2_stream_active(d->w, st);
	if (!st->replay_lost && st->rq_bytes > st->replay_max) {
		st->replay_lost = true;
		st->to_up.keep = false;
	}
	h2_up_wake(d->w, st);
	return 0;
}

static int h2_down_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	/*
	 * Closed cleanly with the endpoint's whole answer sent, while its
	 * upstream stream waits for the rest of the request (an endpoint may
	 * answer before it read the body; that stream closes later, or never):
	 * the endpoint's answer, not a reset of the client's.
	 */
	if (error_code == NGHTTP2_NO_ERROR && st->up && st->rs_submitted && st->rs_end &&
	    st->to_down.off == st->to_down.len)
		h2_up_answered(d->w, st);
	h2_stream_drop(d->w, st);
	return 0;
}

/*
 * The response body source of a client stream: the bytes the endpoint
 * sent, each given back to the endpoint's window once framed here; at
 * the end, the trailers (gRPC's status) or END_STREAM.
 */
static ssize_t h2_down_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
	size_t n;

	(void)src;
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = st->to_down.len - st->to_down.off;
	if (n > length)
		n = length;
	if (n) /* nothing buffered yet: data is NULL, and memcpy wants a valid pointer */
		memcpy(buf, st->to_down.data + st->to_down.off, n);
	st->to_down.off += n;
	if (n) {
		/* Progress: a stall clock starts again for what is left. */
		st->stall_ns = 0;
		h2_stream_active(d->w, st);
		h2_stream_waits(d->w, st);
	}
	/* The connection's window was given back on receipt (h2_upstream.c). */
	if (n && st->up) {
		nghttp2_session_consume_stream(st->up->s, st->up_id, n);
		worker_conn_defer(d->w, st->up->c);
	} else if (n) {
		h2h1_wake(d->w, st); /* an HTTP/1.1 endpoint's socket is read again */
	}
	if (st->to_down.off < st->to_down.len)
		return (ssize_t)n;
	if (!st->rs_end) {
		if (n)
			return (ssize_t)n;
		st->down_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	if (st->tr.n) {
		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(s, id, st->tr.nv, st->tr.n))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

/*
 * A GOAWAY with an error code went to the client: nghttp2's own verdict
 * on a flood (a rapid reset gets INTERNAL_ERROR from the rate limit,
 * without mem_recv failing) or ours on a protocol error. Counted once.
 */
static int h2_down_on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_down *d = ud;

	/*
	 * Bytes go to the client (framed once the ones before were written):
	 * not idle. The turn's clock: one read of the clock per frame showed
	 * in profiles (__vdso_clock_gettime 1 %).
	 */
	d->c->last_active_ns = h2_turn_ns(d->w);
	if (frame->hd.type == NGHTTP2_RST_STREAM) {
		/*
		 * MadeYouReset (CVE-2025-8671): frames that make us reset streams
		 * (an overflowing WINDOW_UPDATE, DATA on a closed stream, heads
		 * past our limits) cost the endpoints as much as the client's
		 * own resets, which nghttp2 limits; ours are limited here.
		 */
		WORKER_STAT_INC(d->w, h2_resets_sent);
		if (!h2_reset_take(d, worker_conn_config(d->w, d->c), timer_now_ns())) {
			worker_warn_ratelimited(
			    d->w,
			    "proxy worker %d: h2 client made the proxy reset "
			    "more than proxy.http2.max_sent_resets (%u) streams; "
			    "GOAWAY",
			    d->w->id, worker_conn_config(d->w, d->c)->http2.max_sent_resets);
			nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
		}
		return 0;
	}
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
	    !d->refused) {
		d->refused = true;
		WORKER_STAT_INC(d->w, h2_protocol_errors);
		if (log_debug_on())
			pr_debug("proxy worker %d: h2 client: GOAWAY %s", d->w->id,
				 nghttp2_http2_strerror(frame->goaway.error_code));
	}
	return 0;
}

static ssize_t h2_down_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
			       void *ud)
{
	(void)s, (void)data, (void)len, (void)flags, (void)ud;
	return NGHTTP2_ERR_CALLBACK_FAILURE; /* mem_send only */
}

static void h2_down_close(struct worker *w, struct conn *c, bool reset)
{
	struct h2_down *d = c->h2;

	if (d) {
		/* Drops each stream (h2_down_on_stream_close) and unlinks its upstream one. */
		nghttp2_session_del(d->s);
		while (d->streams)
			h2_stream_drop(w, d->streams);
		free(d->peer_identity); /* after the streams, whose fields refer to it */
		free(d);
		c->h2 = NULL;
	}
	conn_buf_release_empty(w, &c->to_upstream);
	conn_side_close(w, &c->client, reset);
	worker_conn_release(w, c);
}

/*
 * d->due_ns made exact: the next of its streams' deadlines, tries and
 * stall clocks (a stream whose bytes wait and whose clock is not running
 * starts it now). A walk of the streams: only when the timer fired.
 */
static void h2_down_recompute(struct worker *w, struct h2_down *d)
{
	struct conn *c = d->c;
	uint64_t next = 0, now = 0;
	uint64_t stall = (uint64_t)worker_conn_config(w, c)->http2.stall_timeout_ms * 1000000;

	for (struct h2_stream *st = d->streams; st; st = st->next) {
		if (!st->answered) {
			if (st->deadline_ns && (!next || st->deadline_ns < next))
				next = st->deadline_ns;
			if (st->retry_at_ns && (!next || st->retry_at_ns < next))
				next = st->retry_at_ns;
			if (st->try_deadline_ns && !st->rs_submitted &&
			    (!next || st->try_deadline_ns < next))
				next = st->try_deadline_ns;
			if (st->hold_until_ns && !st->rs_submitted &&
			    (!next || st->hold_until_ns < next))
				next = st->hold_until_ns;
			if (st->idle_ns && (!next || st->active_ns + st->idle_ns < next))
				next = st->active_ns + st->idle_ns;
		}
		if (!stall || st->to_down.off == st->to_down.len) {
			st->stall_ns = 0;
			continue;
		}
		/* Bytes wait for the client's window: the stall clock runs. */
		if (!st->stall_ns)
			st->stall_ns = now ? now : (now = timer_now_ns());
		if (!next || st->stall_ns + stall < next)
			next = st->stall_ns + stall;
	}
	d->due_ns = next;
}

/*
 * The next deadline of the client connection: its streams' (d->due_ns,
 * maybe early), else idle; no walk of the streams.
 */
static void h2_down_arm(struct worker *w, struct h2_down *d)
{
	struct conn *c = d->c;
	uint64_t next = d->due_ns, idle = conn_idle_ns(w, c);

	/* Idle with streams open too: a stream whose request never ends holds nothing for ever. */
	if (idle && (!next || c->last_active_ns + idle < next))
		next = c->last_active_ns + idle;
	if (!next) {
		timer_heap_del(&w->timers, &c->timer);
		return;
	}
	if (timer_heap_add(&w->timers, &c->timer, next))
		d->dead = true; /* no timer, no deadline: refuse to hang */
}

/* Flush the client session, and close the connection when it is done. */
static void h2_down_flush(struct worker *w, struct conn *c)
{
	struct h2_down *d = c->h2;
	int err;

	if (!d)
		return;
	err = h2_send(w, &c->client, d->s, &c->to_client, &d->out, &d->out_len);
	if (err) {
		if (log_debug_on())
			pr_debug("proxy worker %d: h2 client write failed: %s", w->id,
				 strerror(-err));
		h2_down_close(w, c, true);
		return;
	}
	if (d->dead || (!h2_unsent(&c->to_client, d->out_len) && !nghttp2_session_want_read(d->s) &&
			!nghttp2_session_want_write(d->s))) {
		h2_down_close(w, c, false);
		return;
	}
	if (c->client.eof && !d->n_streams && !h2_unsent(&c->to_client, d->out_len)) {
		h2_down_close(w, c, false);
		return;
	}
	h2_down_arm(w, d);
}

/*
 * nghttp2_session_mem_recv failed with rv (a protocol error or flood):
 * GOAWAY (what the client gets if it still reads), counted, and close.
 */
static void h2_down_refuse(struct worker *w, struct conn *c, ssize_t rv)
{
	struct h2_down *d = c->h2;

	if (log_debug_on())
		pr_debug("proxy worker %d: h2 client: %s; closing", w->id,
			 nghttp2_strerror((int)rv));
	d->dead = true;
	/* Counted here too: a flooder that does not read never gets the GOAWAY. */
	if (!d->refused) {
		d->refused = true;
		WORKER_STAT_INC(w, h2_protocol_errors);
	}
	/*
	 * A flood of acks owed (SETTINGS, PING) is no malformed frame, nor is
	 * nghttp2 finding no memory within the buffer budget and its slack
	 * (h2_mem): both are ENHANCE_YOUR_CALM.
	 */
	if (rv == NGHTTP2_ERR_NOMEM)
		worker_refused(w, PROXY_CAP_memory, "an HTTP/2 connection");
	nghttp2_session_terminate_session(d->s, rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_NOMEM
						    ? NGHTTP2_ENHANCE_YOUR_CALM
						    : NGHTTP2_PROTOCOL_ERROR);
	h2_send(w, &c->client, d->s, &c->to_client, &d->out, &d->out_len);
	h2_down_close(w, c, false);
}

/* Read what the client sent into the session, then flush. */
static void h2_down_io(struct worker *w, struct conn *c, uint32_t events)
{
	struct h2_down *d = c->h2;
	struct conn_buf *b = &c->to_upstream;

	if (events & EPOLLERR) {
		int err = sock_error(c->client.pl.fd);

		if (err) {
			h2_down_close(w, c, true);
			return;
		}
	}
	for (int round = 0; c->client.readable && !c->client.eof && !d->dead; round++) {
		uint32_t got;
		int err;
		ssize_t rv;

		/* A bounded turn (conn.h): the rest waits for the deferred one. */
		if (round == CONN_PUMP_ROUNDS) {
			d->more = true;
			worker_conn_defer(w, c);
			break;
		}
		err = conn_side_read(w, &c->client, b, w->cfg->buffer_bytes, &got);
		if (err) {
			h2_down_close(w, c, true);
			return;
		}
		if (!b->tail)
			break;
		c->last_active_ns = timer_now_ns();
		rv = nghttp2_session_mem_recv(d->s, (const uint8_t *)b->data + b->head,
					      b->tail - b->head);
		b->head = b->tail = 0;
		if (rv < 0) {
			h2_down_refuse(w, c, rv);
			return;
		}
	}
	conn_buf_release_empty(w, b);
	h2_down_flush(w, c);
}

/* ---- the two kinds ------------------------------------------------------ */

/* What this side's upstream sessions call back (h2_int.h). */
static const struct h2_down_ops h2_down_ops = {
    .stream_error = h2_stream_error,
    .retry = h2_retry,
    .hold = h2_hold,
    .read = h2_down_read,
};

static void h2_start(struct worker *w, struct conn *c)
{
	nghttp2_session_callbacks *cb;
	nghttp2_mem mem;
	nghttp2_option *opt;
	struct h2_down *d;
	struct conn_buf *b = &c->to_upstream;

	c->kind = CONN_KIND_H2;
	c->ops = &h2_ops;
	c->last_active_ns = timer_now_ns();
	d = calloc(1, sizeof(*d));
	if (!d || nghttp2_session_callbacks_new(&cb)) {
		free(d);
		worker_warn_ratelimited(w,
					"proxy worker %d: out of memory; resetting an HTTP/2 "
					"connection",
					w->id);
		conn_buf_release_empty(w, b);
		conn_side_close(w, &c->client, true);
		worker_conn_release(w, c);
		return;
	}
	nghttp2_session_callbacks_set_send_callback(cb, h2_down_send_cb);
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb, h2_down_on_begin_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_down_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback2(cb, h2_down_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_down_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_down_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_down_on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_down_on_frame_send);
	opt = h2_options(w->cfg);
	if (opt)
		nghttp2_option_set_max_settings(opt, 32);
	d->ops = &h2_down_ops;
	d->c = c;
	d->w = w;
	c->h2 = d;
	h2_mem_bind(w);
	mem = h2_mem(w);
	if (!opt || nghttp2_session_server_new3(&d->s, cb, d, opt, &mem) ||
	    h2_settings(d->s, w->cfg, true)) {
		nghttp2_session_callbacks_del(cb);
		nghttp2_option_del(opt);
		if (d->s)
			nghttp2_session_del(d->s);
		free(d);
		c->h2 = NULL;
		conn_buf_release_empty(w, b);
		conn_side_close(w, &c->client, true);
		worker_conn_release(w, c);
		return;
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	c->client.readable = c->client.writable = true;
	/* What detection read (the preface, maybe more) is the first input. */
	if (b->tail > b->head) {
		ssize_t rv = nghttp2_session_mem_recv(d->s, (const uint8_t *)b->data + b->head,
						      b->tail - b->head);

		b->head = b->tail = 0;
		if (rv < 0) {
			/* As any later read's: a GOAWAY, counted (detected ports get here). */
			h2_down_refuse(w, c, rv);
			return;
		}
	}
	conn_buf_release_empty(w, b);
	h2_down_io(w, c, 0);
}

static void h2_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (s == &c->client)
		h2_down_io(w, c, events);
}

/*
 * Streams whose response bytes waited stall_timeout_ms on the client's
 * window with none framed: reset (CANCEL), their upstream streams too, so
 * that a window kept at zero holds nothing for ever. The client's other
 * streams go on; with none left, the idle timeout ends the connection.
 */
static void h2_down_stalls(struct worker *w, struct h2_down *d, uint64_t now)
{
	uint64_t stall = (uint64_t)worker_conn_config(w, d->c)->http2.stall_timeout_ms * 1000000;

	if (!stall)
		return;
	for (struct h2_stream *st = d->streams; st; st = st->next) {
		if (st->to_down.off == st->to_down.len)
			st->stall_ns = 0; /* nothing waits (dropped for a retry, say) */
		if (!st->stall_ns || now < st->stall_ns + stall)
			continue;
		if (log_debug_on())
			pr_debug("proxy worker %d: h2 client: stream %d stalled %zu bytes for "
				 "%u ms; reset",
				 w->id, st->id, st->to_down.len - st->to_down.off,
				 worker_conn_config(w, d->c)->http2.stall_timeout_ms);
		WORKER_STAT_INC(w, h2_stalled);
		st->stall_ns = 0;
		/* Its bytes are no longer wanted: the stream closes when the RST goes out. */
		st->to_down.off = st->to_down.len;
		h2_up_unlink(st, NGHTTP2_CANCEL);
		nghttp2_submit_rst_stream(d->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	}
}

/*
 * No byte of st moved either way for its route's idle_timeout_ms: what
 * HTTP/1.1 does with a silent request (http1.c, http1_timeout), per
 * stream: before a response head a timeout like the deadline's
 * (DEADLINE_EXCEEDED for gRPC, else 504 timeout, counted as a deadline
 * and the endpoint's failure), after one a reset; the upstream stream is
 * reset and the connection's other streams go on.
 */
static void h2_stream_idle(struct worker *w, struct h2_stream *st)
{
	if (log_debug_on())
		pr_debug("proxy worker %d: h2 stream %d of %s/%s: silent for the route's "
			 "idle_timeout_ms (%llu ms)",
			 w->id, st->id, st->target->namespace, st->target->name,
			 (unsigned long long)(st->idle_ns / 1000000));
	st->idle_ns = 0;
	h2_stream_expired(w, st);
}

/*
 * Deadlines of c's streams: DEADLINE_EXCEEDED (gRPC) or 504, the upstream
 * stream reset; idle streams (the same); per-try timeouts (retried or
 * answered); held gRPC heads whose hold ran out (released); then the
 * tries due (a backoff or a poll for a candidate ended).
 */
static void h2_timeout(struct worker *w, struct conn *c)
{
	struct h2_down *d = c->h2;
	uint64_t now = timer_now_ns(), idle = conn_idle_ns(w, c);

	for (struct h2_stream *st = d->streams; st; st = st->next) {
		if (st->answered)
			continue;
		if (st->deadline_ns && now >= st->deadline_ns)
			h2_stream_expired(w, st);
		else if (st->idle_ns && now >= st->active_ns + st->idle_ns)
			h2_stream_idle(w, st);
		else if (st->try_deadline_ns && !st->rs_submitted && now >= st->try_deadline_ns)
			h2_try_timed_out(w, st);
		else if (st->hold_until_ns && !st->rs_submitted && now >= st->hold_until_ns)
			h2_up_release(w, st); /* no message yet: a call that streams later */
	}
	h2_down_stalls(w, d, now);
	h2_down_due(w, d);
	h2_down_recompute(w, d);
	if (idle && now >= c->last_active_ns + idle) {
		nghttp2_session_terminate_session(d->s, NGHTTP2_NO_ERROR);
		d->dead = true;
	}
	h2_down_flush(w, c);
}

static void h2_resume(struct worker *w, struct conn *c)
{
	struct h2_down *d = c->h2;

	if (d)
		h2_down_due(w, d);
	if (d && d->more) {
		d->more = false;
		h2_down_io(w, c, 0);
		return;
	}
	h2_down_flush(w, c);
}

static void h2_abort(struct worker *w, struct conn *c)
{
	h2_down_close(w, c, true);
}

/*
 * Nothing of c but its service depends on its snapshot: each stream
 * holds the one it was routed with (h2_dispatch), so c follows at once.
 */
static bool h2_settled(const struct conn *c)
{
	return c->h2 != NULL;
}

static bool h2_drain_idle(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns)
{
	struct h2_down *d = c->h2;

	if (d->n_streams || now < c->last_active_ns + idle_ns)
		return false;
	h2_down_close(w, c, false);
	return true;
}

const struct conn_ops h2_ops = {
    .name = "h2",
    .start = h2_start,
    .event = h2_event,
    .timeout = h2_timeout,
    .resume = h2_resume,
    .abort = h2_abort,
    .settled = h2_settled,
    .drain_idle = h2_drain_idle,
};
