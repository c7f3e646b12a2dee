// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/http1_request.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "policy/policy.h"
#include "proxy/attempt.h"
#include "proxy/authz.h"
#include "proxy/conn_io.h"
#include "proxy/endpoint_pick.h"
#include "proxy/http1.h"
#include "proxy/http1_retry.h"
#include "proxy/http_routes.h"
#include "proxy/service_lookup.h"
#include "proxy/worker.h"
#include "resilience/deadline.h"

/* Frame body bytes of the request in [rq_fwd, tail). 0 or a parse error. */
int http1_rq_frame(struct conn *c)
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
 * The policy's answer for the parsed request, routed (docs/policy.md,
 * "Enforcement"): it is asked about the service that serves the request
 * (a route's backend included), with the method and the normalised path.
 * A denial is answered 403 with x-shoal-policy; false then.
 */
static bool http1_authorized(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	const struct http1_head *hd = &h->rq_head;
	const char *buf = c->to_upstream.data;
	const struct policy_table *tb = authz_table(w, h->target);
	char path[ROUTES_MAX_PATH + 1];
	/* Normalised only for a policy that looks at requests. */
	size_t n =
	    policy_table_has_requests(tb)
		? http_routes_normalize_path(buf + hd->path.off, hd->path.len, path, sizeof(path))
		: 0;
	struct policy_request rq = {
	    .method = buf + hd->method_tok.off,
	    .method_len = hd->method_tok.len,
	    .path = path,
	    /* Not a path policy can match ('*', authority form, too long): an empty one. */
	    .path_len = n == ROUTES_NO_PATH ? 0 : n,
	};
	const char *reason;

	if (authz_allow(w, c, tb, h->target, c->svc_port, &rq, &reason))
		return true;
	h->deny_reason = reason;
	http1_error(w, c, HTTP_ERR_POLICY_DENIED);
	return false;
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
					w->id, conn_svc_name(c, svc, sizeof(svc)));
		http1_error(w, c, HTTP_ERR_SERVICE_GONE);
		return;
	}
	http1_route(w, c);
	if (w->cfg->policy && !http1_authorized(w, c))
		return;
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
	char rid[33], peer[PEER_IDENTITY_MAX];
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
	/* The caller's identity, for every request where configured (docs/mtls.md). */
	if (cfg->mtls.peer_identity_header && c->src_ident) {
		attempt_peer_identity(cfg->identity.trust_domain, c->src_ident, peer, sizeof(peer));
		rw.peer_identity = peer;
	}
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
void http1_rq_head(struct worker *w, struct conn *c)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	size_t consumed = 0;
	int r;

	if (b->tail == 0)
		return;
	if (!http1_headers_hold(w, h)) {
		pr_debug("proxy worker %d: no memory for header slots; resetting the client",
			 w->id);
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
