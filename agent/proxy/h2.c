// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The HTTP/2 kind (h2.h). Three objects:
 * - struct h2_down: the nghttp2 server session of one client connection;
 * - struct h2_up: one pooled nghttp2 client session to an endpoint, a
 *   connection of its own (kind h2_upstream_ops) on the worker's lists;
 * - struct h2_stream: one request, a stream of an h2_down and, once
 *   sent, one of an h2_up. Each links the other; whichever side closes
 *   first unlinks, so that no pointer outlives its object.
 *
 * Nothing is sent from inside an nghttp2 callback, and no session is
 * freed in one: a session another one's callback touched is flushed on
 * its connection's deferred turn (worker_conn_defer), and a session
 * found dead is closed once its own nghttp2 call has returned.
 */
#include "proxy/h2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/h2_grpc.h"
#include "proxy/http_error.h"
#include "proxy/http_routes.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "proxy/worker.h"
#include "recording/http_metrics.h"
#include "resilience/deadline.h"
#include "resilience/retry_budget.h"

struct h2_up;
struct h2_down;

/* Bytes of one stream waiting to go on, one way: at most its window. */
struct h2_bytes {
	uint8_t *data;
	size_t off, len, cap;
};

/* Header fields kept by reference (nghttp2_rcbuf), in arrival order. */
struct h2_fields {
	nghttp2_nv *nv;
	nghttp2_rcbuf **rc; /* 2 per field: name, value */
	uint32_t n, cap;
	size_t bytes; /* RFC 9113 6.5.2: name + value + 32 per field */
};

struct h2_stream {
	struct h2_down *d;
	int32_t id; /* on d's session */
	struct h2_up *up;
	int32_t up_id; /* on up's session, once submitted */
	struct h2_stream *prev, *next;	     /* d's streams */
	struct h2_stream *up_prev, *up_next; /* up's streams, while linked */

	struct h2_fields rq;	  /* the request head */
	struct h2_fields rs;	  /* the final response head */
	struct h2_fields tr;	  /* the response trailers */
	struct h2_bytes to_up;	  /* request body bytes not yet framed upstream */
	struct h2_bytes to_down;  /* response body bytes not yet framed to the client */
	bool rq_end;		  /* the client ended its half */
	bool rs_end;		  /* the endpoint ended its half */
	bool rs_submitted;	  /* a response head went to the client */
	bool up_deferred;	  /* the upstream data source waits for bytes */
	bool down_deferred;	  /* the downstream data source waits for bytes */
	bool answered;		  /* outcome recorded; nothing more goes upstream */
	bool grpc;		  /* content-type application/grpc */
	int status;		  /* :status of the final response; 0: none yet */
	int grpc_status;	  /* GRPC_STATUS_NONE until read */

	/* The request's route, target and try (one pick per request). */
	const struct config_route *route;
	const struct config_service *target;
	const struct es_svc_view *sv;
	struct pick_ticket bt;
	uint64_t start_ns;
	uint64_t deadline_ns; /* 0: none */
};

struct h2_down {
	struct conn *c;
	struct worker *w;
	nghttp2_session *s;
	const uint8_t *out; /* framed bytes not yet written (nghttp2's buffer) */
	size_t out_len;
	struct h2_stream *streams;
	uint32_t n_streams;
	bool dead; /* close once the current nghttp2 call returns */
	bool more; /* reading stopped at the turn's bound: resume reads on */
	bool refused; /* a GOAWAY with an error went out (counted once) */
};

struct h2_up {
	struct conn *c;
	struct worker *w;
	nghttp2_session *s;
	const uint8_t *out;
	size_t out_len;
	struct shoal_addr addr;
	uint16_t port_be;
	uint32_t n_streams;	  /* open streams we submitted, linked or not */
	struct h2_stream *linked; /* streams whose request is ours to answer */
	bool connected;
	bool draining; /* GOAWAY received or sent: no new stream */
	bool dead;
	bool more; /* reading stopped at the turn's bound */
	uint64_t idle_since_ns;
	struct h2_up *prev, *next; /* the worker's upstream sessions */
};

/*
 * The upstream sessions of the worker running on this thread. One worker
 * runs per thread, and the list holds each session's worker, so a test
 * that runs two workers on one thread still gets each its own.
 */
static __thread struct h2_up *h2_ups;

/* A request head larger than this many fields is refused like a large one. */
#define H2_MAX_FIELDS 256
#define H2_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static bool h2_debug(void)
{
	return log_get_level() >= LOG_LEVEL_DEBUG;
}

/* ---- small pieces ------------------------------------------------------- */

static int h2_bytes_put(struct h2_bytes *b, const uint8_t *p, size_t n)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		uint8_t *d;

		while (cap < b->len + n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static void h2_bytes_free(struct h2_bytes *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int h2_fields_add(struct h2_fields *f, nghttp2_rcbuf *name, nghttp2_rcbuf *value)
{
	nghttp2_vec nm = nghttp2_rcbuf_get_buf(name), vl = nghttp2_rcbuf_get_buf(value);

	if (f->n == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : 16;
		nghttp2_nv *nv;
		nghttp2_rcbuf **rc;

		if (cap > H2_MAX_FIELDS)
			return -E2BIG;
		nv = realloc(f->nv, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		f->nv = nv;
		rc = realloc(f->rc, 2 * cap * sizeof(*rc));
		if (!rc)
			return -ENOMEM;
		f->rc = rc;
		f->cap = cap;
	}
	nghttp2_rcbuf_incref(name);
	nghttp2_rcbuf_incref(value);
	f->rc[2 * f->n] = name;
	f->rc[2 * f->n + 1] = value;
	f->nv[f->n] = (nghttp2_nv){
	    .name = nm.base,
	    .namelen = nm.len,
	    .value = vl.base,
	    .valuelen = vl.len,
	    /* The names are in nghttp2's buffers until we let go of them. */
	    .flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE,
	};
	f->n++;
	f->bytes += nm.len + vl.len + 32;
	return 0;
}

static void h2_fields_free(struct h2_fields *f)
{
	for (uint32_t i = 0; i < 2 * f->n; i++)
		nghttp2_rcbuf_decref(f->rc[i]);
	free(f->nv);
	free(f->rc);
	memset(f, 0, sizeof(*f));
}

/* The value of the first field named name (lower case) in f, or NULL. */
static const nghttp2_nv *h2_field(const struct h2_fields *f, const char *name)
{
	size_t n = strlen(name);

	for (uint32_t i = 0; i < f->n; i++)
		if (f->nv[i].namelen == n && !memcmp(f->nv[i].name, name, n))
			return &f->nv[i];
	return NULL;
}

/* Options both kinds of session share: the limits of proxy.http2. */
static nghttp2_option *h2_options(const struct config *cfg)
{
	nghttp2_option *o;

	if (nghttp2_option_new(&o))
		return NULL;
	/* Flow control is ours: nghttp2_session_consume once a byte went on. */
	nghttp2_option_set_no_auto_window_update(o, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(o, cfg->http2.hpack_table_bytes);
	nghttp2_option_set_max_outbound_ack(o, cfg->http2.max_pending_acks);
	nghttp2_option_set_max_send_header_block_length(o, cfg->http2.max_header_list_bytes + 4096);
	nghttp2_option_set_stream_reset_rate_limit(o, cfg->http2.reset_burst, cfg->http2.reset_rate);
	nghttp2_option_set_max_continuations(o, cfg->http2.max_continuations);
	return o;
}

/* Our SETTINGS and the session's receive window, from proxy.http2. */
static int h2_settings(nghttp2_session *s, const struct config *cfg, bool server)
{
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->http2.max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->http2.stream_window_bytes},
	    {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cfg->http2.hpack_table_bytes},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->http2.max_header_list_bytes},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int rv;

	/* A client has no push to refuse, and ENABLE_PUSH from a server is an error. */
	rv = nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, H2_ARRAY_SIZE(iv) - (server ? 1 : 0));
	if (rv)
		return -EIO;
	rv = nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0,
						   (int32_t)cfg->http2.session_window_bytes);
	return rv ? -EIO : 0;
}

/*
 * Write what session s has framed to side sd while it takes bytes. The
 * framed bytes stay in nghttp2's buffer (*out) until written: no more is
 * framed meanwhile, so a slow peer holds one chunk at most. Returns 0 or
 * -errno (a socket error, or nghttp2's).
 */
static int h2_send(struct conn_side *sd, nghttp2_session *s, const uint8_t **out, size_t *len)
{
	for (;;) {
		ssize_t n;

		if (*len) {
			uint32_t pos = 0;
			int err = conn_side_send(sd, (const char *)*out, &pos, (uint32_t)*len);

			*out += pos;
			*len -= pos;
			if (err)
				return err;
			if (*len)
				return 0; /* EAGAIN: EPOLLOUT resumes */
		}
		n = nghttp2_session_mem_send(s, out);
		if (n < 0)
			return -EIO;
		if (n == 0)
			return 0;
		*len = (size_t)n;
	}
}

/* ---- outcomes ----------------------------------------------------------- */

/* The series key of st (recording/http_metrics.h), false when unkeyed. */
static bool h2_key(struct worker *w, const struct h2_stream *st, struct metrics_http_key *k,
		   const struct shoal_addr **ep)
{
	const struct conn *c = st->d->c;
	const struct config_service *t = st->target ? st->target : c->svc;

	memset(k, 0, sizeof(*k));
	*ep = NULL;
	if (st->target && st->bt.idx != PICK_NONE && st->bt.idx < (uint32_t)t->n_endpoints) {
		k->endpoint = st->bt.idx + 1;
		*ep = &t->endpoints[st->bt.idx].addr;
	}
	if (!c->svc || !c->svc->metrics_id || !t->metrics_id) {
		metrics_http_shard_unkeyed(w->metrics);
		return false;
	}
	k->svc = c->svc->metrics_id;
	k->backend = t->metrics_id;
	if (st->route && st->route >= c->svc->routes && st->route < c->svc->routes + c->svc->n_routes)
		k->route = st->route->metrics_id;
	return true;
}

/*
 * The status a request is recorded with: its HTTP status, or for gRPC a
 * failing grpc-status as the HTTP status a client would see for it
 * (UNAVAILABLE 503, DEADLINE_EXCEEDED 504, other failures 500), so that
 * the golden metrics' success rate is gRPC's and not HTTP's 200.
 */
static unsigned int h2_recorded_status(const struct h2_stream *st)
{
	if (st->grpc && st->grpc_status > 0) {
		if (st->grpc_status == GRPC_STATUS_UNAVAILABLE)
			return 503;
		if (st->grpc_status == GRPC_STATUS_DEADLINE_EXCEEDED)
			return 504;
		if (grpc_status_is_failure(st->grpc_status))
			return 500;
	}
	return (unsigned int)st->status;
}

/*
 * st ended (once): its outcome to the balancer and the breaker (when an
 * endpoint was tried; failed says the endpoint failed), and to the
 * metrics with status (0: reset).
 */
static void h2_done(struct worker *w, struct h2_stream *st, bool tried, bool failed,
		    unsigned int status, const char *what)
{
	struct metrics_http_key k;
	const struct shoal_addr *ep;
	uint64_t now = timer_now_ns();

	if (st->answered)
		return;
	st->answered = true;
	if (st->bt.active) {
		if (tried)
			pick_outcome(st->sv, &st->bt, !failed, PEAK_EWMA_NO_RETRY_AFTER, now, what);
		else
			pick_cancel(st->sv, &st->bt, now);
	}
	if (st->start_ns && h2_key(w, st, &k, &ep))
		metrics_http_shard_request(w->metrics, &k, ep, status, now - st->start_ns);
}

/* ---- downstream: the client's session ---------------------------------- */

static void h2_down_arm(struct worker *w, struct h2_down *d);
static void h2_up_unlink(struct h2_stream *st, uint32_t error_code);

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
		int code = timeout ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE;
		char gs[4];
		int ml = snprintf(msg, sizeof(msg), "shoal: %s", stage);
		int gl = snprintf(gs, sizeof(gs), "%d", code);
		nghttp2_nv nv[] = {
		    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
		     NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-status", (uint8_t *)gs, 11, (size_t)gl, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, (size_t)ml, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-error", (uint8_t *)stage, 13, strlen(stage),
		     NGHTTP2_NV_FLAG_NONE},
		};

		st->status = 200;
		st->grpc_status = code;
		nghttp2_submit_response(s, st->id, nv, H2_ARRAY_SIZE(nv), NULL);
	} else {
		int sl = snprintf(status, sizeof(status), "%d", http_error_status(err));
		nghttp2_nv nv[] = {
		    {(uint8_t *)":status", (uint8_t *)status, 7, (size_t)sl, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-length", (uint8_t *)"0", 14, 1, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"x-shoal-error", (uint8_t *)stage, 13, strlen(stage),
		     NGHTTP2_NV_FLAG_NONE},
		};

		st->status = http_error_status(err);
		nghttp2_submit_response(s, st->id, nv, H2_ARRAY_SIZE(nv), NULL);
	}
	worker_conn_defer(w, st->d->c);
}

static void h2_stream_free(struct h2_stream *st)
{
	h2_fields_free(&st->rq);
	h2_fields_free(&st->rs);
	h2_fields_free(&st->tr);
	h2_bytes_free(&st->to_up);
	h2_bytes_free(&st->to_down);
	free(st);
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

static struct h2_up *h2_up_get(struct worker *w, struct conn *dc, const struct shoal_addr *addr,
			       uint16_t port_be, int *err);
static int h2_up_submit(struct worker *w, struct h2_up *up, struct h2_stream *st);

/*
 * The request head of st is complete: route it (the HTTP routes of the
 * connection's service, the newest config), give it its deadline (the
 * route's or service's, and a shorter grpc-timeout), pick one endpoint
 * for it and send it on a pooled session to that endpoint.
 */
static void h2_dispatch(struct worker *w, struct h2_stream *st)
{
	struct conn *c = st->d->c;
	const struct config *cfg;
	const nghttp2_nv *m = h2_field(&st->rq, ":method"), *a = h2_field(&st->rq, ":authority"),
			 *p = h2_field(&st->rq, ":path"), *ct = h2_field(&st->rq, "content-type"),
			 *gt = h2_field(&st->rq, "grpc-timeout");
	struct route_request req = {0};
	const struct config_route *r = NULL;
	uint64_t now = timer_now_ns(), timeout = 0, gns;
	uint16_t port_be = c->port_be;
	struct h2_up *up;
	uint32_t idx;
	int err;

	st->start_ns = now;
	st->bt.idx = PICK_NONE;
	st->grpc = ct && grpc_is_content_type((const char *)ct->value, ct->valuelen);
	WORKER_STAT_INC(w, http_requests);
	if (worker_conn_follow(w, c) < 0) {
		h2_stream_error(w, st, HTTP_ERR_SERVICE_GONE);
		h2_done(w, st, false, false, 503, "gone");
		return;
	}
	cfg = worker_conn_config(w, c);
	st->target = c->svc;
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
	st->sv = worker_es_service(w, c, cfg, st->target);
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
	idx = pick_endpoint(st->sv, (uint32_t)st->target->n_endpoints, now, NULL, 0, &st->bt);
	if (idx == PICK_NONE) {
		h2_stream_error(w, st, HTTP_ERR_NO_CANDIDATE);
		h2_done(w, st, false, false, 503, "no candidate");
		return;
	}
	pick_start(st->sv, &st->bt, now);
	up = h2_up_get(w, c, &st->target->endpoints[idx].addr, port_be, &err);
	if (!up) {
		bool local = sock_err_local(-err);

		worker_warn_ratelimited(w, "proxy worker %d: %s/%s: cannot connect to endpoint %u: %s",
					w->id, st->target->namespace, st->target->name, idx,
					strerror(-err));
		h2_stream_error(w, st, local ? HTTP_ERR_LOCAL_RESOURCES : HTTP_ERR_CONNECT_FAILURE);
		h2_done(w, st, !local, true, 503, "connect failure");
		return;
	}
	err = h2_up_submit(w, up, st);
	if (err) {
		h2_stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
		h2_done(w, st, false, false, 503, "submit");
		return;
	}
	h2_down_arm(w, st->d);
}

static int h2_down_on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
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

	(void)flags;
	/* Request trailers are not forwarded in this version (docs/proxy.md). */
	if (!st || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (h2_fields_add(&st->rq, name, value) ||
	    st->rq.bytes > worker_conn_config(d->w, d->c)->http2.max_header_list_bytes)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static void h2_up_wake(struct worker *w, struct h2_stream *st)
{
	if (!st->up)
		return;
	if (st->up_deferred) {
		st->up_deferred = false;
		nghttp2_session_resume_data(st->up->s, st->up_id);
	}
	worker_conn_defer(w, st->up->c);
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
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
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
	if (!st || st->answered || !st->up) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	/* Within the stream's window, which only grows once these went on. */
	if (h2_bytes_put(&st->to_up, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	h2_up_wake(d->w, st);
	return 0;
}

static int h2_down_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct h2_down *d = ud;
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)error_code;
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
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
	memcpy(buf, st->to_down.data + st->to_down.off, n);
	st->to_down.off += n;
	if (n && st->up) {
		nghttp2_session_consume(st->up->s, st->up_id, n);
		worker_conn_defer(d->w, st->up->c);
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

	(void)s;
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
	    !d->refused) {
		d->refused = true;
		WORKER_STAT_INC(d->w, h2_protocol_errors);
		if (h2_debug())
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
		free(d);
		c->h2 = NULL;
	}
	conn_buf_release_empty(w, &c->to_upstream);
	conn_side_close(w, &c->client, reset);
	worker_conn_release(w, c);
}

/* The next deadline of the client connection: its streams', else idle. */
static void h2_down_arm(struct worker *w, struct h2_down *d)
{
	struct conn *c = d->c;
	uint64_t next = 0, idle = conn_idle_ns(w, c);

	for (struct h2_stream *st = d->streams; st; st = st->next)
		if (st->deadline_ns && !st->answered && (!next || st->deadline_ns < next))
			next = st->deadline_ns;
	if (!d->n_streams && idle && (!next || c->last_active_ns + idle < next))
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
	err = h2_send(&c->client, d->s, &d->out, &d->out_len);
	if (err) {
		if (h2_debug())
			pr_debug("proxy worker %d: h2 client write failed: %s", w->id,
				 strerror(-err));
		h2_down_close(w, c, true);
		return;
	}
	if (d->dead || (!d->out_len && !nghttp2_session_want_read(d->s) &&
			!nghttp2_session_want_write(d->s))) {
		h2_down_close(w, c, false);
		return;
	}
	if (c->client.eof && !d->n_streams && !d->out_len) {
		h2_down_close(w, c, false);
		return;
	}
	h2_down_arm(w, d);
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
			/* A protocol error or flood: nghttp2 queued the GOAWAY it owes. */
			if (h2_debug())
				pr_debug("proxy worker %d: h2 client: %s; closing", w->id,
					 nghttp2_strerror((int)rv));
			d->dead = true;
			nghttp2_session_terminate_session(d->s, NGHTTP2_PROTOCOL_ERROR);
			h2_send(&c->client, d->s, &d->out, &d->out_len);
			h2_down_close(w, c, false);
			return;
		}
	}
	conn_buf_release_empty(w, b);
	h2_down_flush(w, c);
}

/* ---- upstream: pooled client sessions ---------------------------------- */

/* Take st off up's list of linked streams. */
static void h2_up_list_del(struct h2_up *up, struct h2_stream *st)
{
	if (st->up_prev)
		st->up_prev->up_next = st->up_next;
	else
		up->linked = st->up_next;
	if (st->up_next)
		st->up_next->up_prev = st->up_prev;
	st->up_prev = st->up_next = NULL;
	st->up = NULL;
}

/* st leaves its upstream stream (reset with error_code when still open). */
static void h2_up_unlink(struct h2_stream *st, uint32_t error_code)
{
	struct h2_up *up = st->up;

	if (!up)
		return;
	h2_up_list_del(up, st);
	if (!up->s)
		return; /* the session is closing */
	nghttp2_session_set_stream_user_data(up->s, st->up_id, NULL);
	/*
	 * Still linked means nghttp2 has not closed it: open, or its HEADERS
	 * still queued (the reset then cancels them, nothing goes out).
	 */
	if (error_code != NGHTTP2_NO_ERROR)
		nghttp2_submit_rst_stream(up->s, NGHTTP2_FLAG_NONE, st->up_id, error_code);
	worker_conn_defer(up->w, up->c);
}

/*
 * The request whose stream id is on up's session, or NULL. Found by the
 * stream's user data, but only trusted when it is still on up's linked
 * list: a stream unlinked before its HEADERS went out may keep its old
 * user data inside nghttp2 (set_stream_user_data cannot reach a request
 * still queued), and the pointer is compared, never followed, until found.
 */
static struct h2_stream *h2_up_stream(struct h2_up *up, nghttp2_session *s, int32_t id)
{
	void *p = nghttp2_session_get_stream_user_data(s, id);

	if (!p)
		return NULL;
	for (struct h2_stream *st = up->linked; st; st = st->up_next)
		if (st == p)
			return st->up_id == id ? st : NULL;
	return NULL;
}

/* The request body source of an upstream stream; see h2_down_read. */
static ssize_t h2_up_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			  uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);
	size_t n;

	(void)src;
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = st->to_up.len - st->to_up.off;
	if (n > length)
		n = length;
	memcpy(buf, st->to_up.data + st->to_up.off, n);
	st->to_up.off += n;
	if (n) {
		nghttp2_session_consume(st->d->s, st->id, n);
		worker_conn_defer(up->w, st->d->c);
	}
	if (st->to_up.off < st->to_up.len)
		return (ssize_t)n;
	if (!st->rq_end) {
		if (n)
			return (ssize_t)n;
		st->up_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

int h2_up_submit(struct worker *w, struct h2_up *up, struct h2_stream *st)
{
	nghttp2_data_provider dp = {.read_callback = h2_up_read};
	int32_t id;

	(void)w;
	id = nghttp2_submit_request(up->s, NULL, st->rq.nv, st->rq.n, st->rq_end ? NULL : &dp, st);
	if (id < 0)
		return -EIO;
	st->up = up;
	st->up_id = id;
	st->up_prev = NULL;
	st->up_next = up->linked;
	if (up->linked)
		up->linked->up_prev = st;
	up->linked = st;
	up->n_streams++;
	worker_conn_defer(w, up->c);
	return 0;
}

static int h2_up_on_header(nghttp2_session *s, const nghttp2_frame *frame, nghttp2_rcbuf *name,
			   nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
	struct h2_stream *st = h2_up_stream(ud, s, frame->hd.stream_id);
	struct h2_fields *f;
	nghttp2_vec nm;

	(void)flags;
	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	f = frame->headers.cat == NGHTTP2_HCAT_HEADERS && st->status >= 200 ? &st->tr : &st->rs;
	nm = nghttp2_rcbuf_get_buf(name);
	if (nm.len == 11 && !memcmp(nm.base, "grpc-status", 11)) {
		nghttp2_vec v = nghttp2_rcbuf_get_buf(value);

		st->grpc_status = grpc_status_parse((const char *)v.base, v.len);
	}
	if (h2_fields_add(f, name, value))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static void h2_down_wake(struct worker *w, struct h2_stream *st)
{
	if (st->down_deferred) {
		st->down_deferred = false;
		nghttp2_session_resume_data(st->d->s, st->id);
	}
	worker_conn_defer(w, st->d->c);
}

/* The final response head of st: on to the client, its body to follow. */
static void h2_up_response(struct worker *w, struct h2_stream *st, bool end)
{
	nghttp2_data_provider dp = {.read_callback = h2_down_read};
	const nghttp2_nv *status = h2_field(&st->rs, ":status");

	st->status = status ? atoi((const char *)status->value) : 502;
	if (st->status < 200) {
		/* 1xx: not forwarded in this version; the final head follows. */
		h2_fields_free(&st->rs);
		st->status = 0;
		return;
	}
	if (end)
		st->rs_end = true;
	st->rs_submitted = true;
	if (nghttp2_submit_response(st->d->s, st->id, st->rs.nv, st->rs.n, end ? NULL : &dp))
		nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
	worker_conn_defer(w, st->d->c);
}

static int h2_up_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (frame->hd.type == NGHTTP2_GOAWAY) {
		/* Streams above last_stream_id close with REFUSED_STREAM; the rest finish. */
		up->draining = true;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	st = h2_up_stream(up, s, frame->hd.stream_id);
	if (!st)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !st->rs_submitted && st->status == 0) {
		h2_up_response(up->w, st, end);
		return 0;
	}
	if (end) {
		st->rs_end = true;
		h2_down_wake(up->w, st);
	}
	return 0;
}

static int h2_up_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);

	(void)flags;
	if (!st || !st->rs_submitted) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	if (h2_bytes_put(&st->to_down, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	h2_down_wake(up->w, st);
	return 0;
}

static int h2_up_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);
	bool failed;

	up->n_streams--;
	if (!up->n_streams)
		up->idle_since_ns = timer_now_ns();
	if (!st)
		return 0;
	h2_up_list_del(up, st);
	nghttp2_session_set_stream_user_data(s, id, NULL);
	if (error_code != NGHTTP2_NO_ERROR || !st->rs_end) {
		/* Reset by the endpoint (REFUSED_STREAM above a GOAWAY included). */
		if (!st->rs_submitted) {
			h2_done(up->w, st, true, true, 502, "reset");
			h2_stream_error(up->w, st, HTTP_ERR_UPSTREAM_RESET);
		} else {
			h2_done(up->w, st, true, true, 0, "reset");
			nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
						  NGHTTP2_INTERNAL_ERROR);
			worker_conn_defer(up->w, st->d->c);
		}
		return 0;
	}
	failed = st->status >= 500 || st->status == 429 ||
		 (st->grpc && grpc_status_is_failure(st->grpc_status));
	h2_done(up->w, st, true, failed, h2_recorded_status(st), failed ? "failure" : "ok");
	h2_down_wake(up->w, st);
	return 0;
}

static void h2_up_free(struct h2_up *up)
{
	if (up->prev)
		up->prev->next = up->next;
	else
		h2_ups = up->next;
	if (up->next)
		up->next->prev = up->prev;
	free(up);
}

/*
 * Close up: each of its streams still open fails (its client gets an
 * error or a reset), its socket closes, its connection is released.
 */
static void h2_up_close(struct worker *w, struct conn *c, bool reset)
{
	struct h2_up *up = c->h2;

	if (up) {
		up->draining = true;
		/* nghttp2_session_del calls no stream callback: fail the streams here. */
		nghttp2_session_del(up->s);
		up->s = NULL;
		while (up->linked) {
			struct h2_stream *st = up->linked;
			bool connected = up->connected;

			h2_up_list_del(up, st);
			h2_done(w, st, true, true, st->rs_submitted ? 0 : 502, "connection lost");
			if (st->rs_submitted) {
				nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
							  NGHTTP2_INTERNAL_ERROR);
				worker_conn_defer(w, st->d->c);
			} else {
				h2_stream_error(w, st, connected ? HTTP_ERR_UPSTREAM_RESET
								 : HTTP_ERR_CONNECT_FAILURE);
			}
		}
		h2_up_free(up);
		c->h2 = NULL;
	}
	conn_side_close(w, &c->upstream, reset);
	worker_conn_release(w, c);
}

static ssize_t h2_up_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
			     void *ud)
{
	(void)s, (void)data, (void)len, (void)flags, (void)ud;
	return NGHTTP2_ERR_CALLBACK_FAILURE; /* mem_send only */
}

/* The streams up may take: the peer's MAX_CONCURRENT_STREAMS, and ours. */
static uint32_t h2_up_room(const struct h2_up *up, const struct config *cfg)
{
	uint32_t peer = nghttp2_session_get_remote_settings(up->s,
							    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	uint32_t lim = peer < cfg->http2.max_concurrent_streams ? peer
								 : cfg->http2.max_concurrent_streams;

	return up->n_streams < lim ? lim - up->n_streams : 0;
}

static void h2_up_arm(struct worker *w, struct h2_up *up)
{
	struct conn *c = up->c;
	uint64_t idle = (uint64_t)w->cfg->http_pool_idle_timeout_ms * 1000000;

	if (!up->connected)
		return; /* the connect timer is armed */
	if (up->n_streams) {
		timer_heap_del(&w->timers, &c->timer);
		return;
	}
	if (timer_heap_add(&w->timers, &c->timer, up->idle_since_ns + idle))
		up->dead = true;
}

static void h2_up_flush(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;
	int err;

	if (!up || !up->connected)
		return;
	err = h2_send(&c->upstream, up->s, &up->out, &up->out_len);
	if (err) {
		h2_up_close(w, c, true);
		return;
	}
	if (up->dead || c->upstream.eof || (up->draining && !up->n_streams) ||
	    (!up->out_len && !nghttp2_session_want_read(up->s) &&
	     !nghttp2_session_want_write(up->s))) {
		h2_up_close(w, c, false);
		return;
	}
	h2_up_arm(w, up);
}

static void h2_up_io(struct worker *w, struct conn *c, uint32_t events)
{
	struct h2_up *up = c->h2;
	struct conn_buf *b = &c->to_client;

	if (!up->connected) {
		int err;

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		err = attempt_connect_result(w, c->upstream.pl.fd, events);
		if (err) {
			worker_warn_ratelimited(w, "proxy worker %d: h2: connect to an endpoint "
						   "failed: %s", w->id, strerror(err));
			h2_up_close(w, c, false);
			return;
		}
		up->connected = true;
		timer_heap_del(&w->timers, &c->timer);
		/* Latency samples are the endpoint's answers, not this connect. */
		for (struct h2_stream *st = up->linked; st; st = st->up_next)
			st->bt.start_ns = timer_now_ns();
		c->upstream.plain_tcp = worker_plain_tcp(w, c->upstream.pl.fd);
		c->upstream.readable = c->upstream.writable = true;
	} else if (events & EPOLLERR) {
		if (sock_error(c->upstream.pl.fd)) {
			h2_up_close(w, c, true);
			return;
		}
	}
	for (int round = 0; c->upstream.readable && !c->upstream.eof && !up->dead; round++) {
		uint32_t got;
		int err;
		ssize_t rv;

		if (round == CONN_PUMP_ROUNDS) {
			up->more = true;
			worker_conn_defer(w, c);
			break;
		}
		err = conn_side_read(w, &c->upstream, b, w->cfg->buffer_bytes, &got);
		if (err) {
			h2_up_close(w, c, true);
			return;
		}
		if (!b->tail)
			break;
		rv = nghttp2_session_mem_recv(up->s, (const uint8_t *)b->data + b->head,
					      b->tail - b->head);
		b->head = b->tail = 0;
		if (rv < 0) {
			worker_warn_ratelimited(w, "proxy worker %d: h2: an endpoint broke the "
						   "protocol: %s", w->id, nghttp2_strerror((int)rv));
			up->dead = true;
		}
	}
	conn_buf_release_empty(w, b);
	h2_up_flush(w, c);
}

/*
 * A session to addr:port_be with room for one more stream: a pooled one
 * of this worker, else a new one (connecting; the request waits in it).
 * NULL with *err set when no connection could be started.
 */
static struct h2_up *h2_up_get(struct worker *w, struct conn *dc, const struct shoal_addr *addr,
			       uint16_t port_be, int *err)
{
	const struct config_port *port = NULL;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	struct h2_up *up;
	struct conn *c;
	bool connected;
	int fd;

	for (up = h2_ups; up; up = up->next)
		if (up->w == w && !up->draining && !up->dead && up->port_be == port_be &&
		    addr_equal(&up->addr, addr) && h2_up_room(up, w->cfg))
			return up;
	*err = -ENOMEM;
	up = calloc(1, sizeof(*up));
	if (!up)
		return NULL;
	if (nghttp2_session_callbacks_new(&cb)) {
		free(up);
		return NULL;
	}
	nghttp2_session_callbacks_set_send_callback(cb, h2_up_send_cb);
	nghttp2_session_callbacks_set_on_header_callback2(cb, h2_up_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_up_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_up_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_up_on_stream_close);
	opt = h2_options(w->cfg);
	if (!opt || nghttp2_session_client_new2(&up->s, cb, up, opt)) {
		nghttp2_session_callbacks_del(cb);
		nghttp2_option_del(opt);
		free(up);
		return NULL;
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (h2_settings(up->s, w->cfg, false)) {
		nghttp2_session_del(up->s);
		free(up);
		return NULL;
	}
	c = worker_conn_get(w);
	if (!c) {
		nghttp2_session_del(up->s);
		free(up);
		return NULL;
	}
	WORKER_STAT_INC(w, h2_sessions_opened);
	conn_init(c);
	c->kind = CONN_KIND_H2;
	c->ops = &h2_upstream_ops;
	/*
	 * Its service, to follow newer snapshots by (worker_conn_follow), as
	 * its own snapshot has it: dc's may be an older one, freed before
	 * this session closes.
	 */
	c->orig = dc->orig;
	c->svc = service_lookup(worker_conn_config(w, c), &c->orig, &port);
	c->svc_port = port ? port->port : dc->svc_port;
	c->port_be = port_be;
	c->sv = c->svc ? worker_es_service(w, c, worker_conn_config(w, c), c->svc) : NULL;
	c->accepted_ns = timer_now_ns();
	c->h2 = up;
	up->c = c;
	up->w = w;
	up->addr = *addr;
	up->port_be = port_be;
	up->idle_since_ns = c->accepted_ns;
	up->next = h2_ups;
	if (h2_ups)
		h2_ups->prev = up;
	h2_ups = up;

	fd = attempt_connect(w, addr, port_be, &connected);
	if (fd < 0) {
		*err = fd;
		h2_up_close(w, c, false);
		return NULL;
	}
	c->upstream.pl.fd = fd;
	*err = worker_watch(w, &c->upstream.pl);
	if (*err) {
		sock_close_reset(fd);
		c->upstream.pl.fd = -1;
		h2_up_close(w, c, false);
		return NULL;
	}
	if (connected) {
		up->connected = true;
		c->upstream.plain_tcp = worker_plain_tcp(w, fd);
		c->upstream.readable = c->upstream.writable = true;
	} else {
		uint64_t t = c->sv && c->sv->connect_timeout_ns
				 ? c->sv->connect_timeout_ns
				 : (uint64_t)w->cfg->connect_timeout_ms * 1000000;

		if (timer_heap_add(&w->timers, &c->timer, c->accepted_ns + t)) {
			*err = -ENOMEM;
			h2_up_close(w, c, true);
			return NULL;
		}
	}
	return up;
}

/* ---- the two kinds ------------------------------------------------------ */

static void h2_start(struct worker *w, struct conn *c)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	struct h2_down *d;
	struct conn_buf *b = &c->to_upstream;

	c->kind = CONN_KIND_H2;
	c->ops = &h2_ops;
	c->last_active_ns = timer_now_ns();
	d = calloc(1, sizeof(*d));
	if (!d || nghttp2_session_callbacks_new(&cb)) {
		free(d);
		worker_warn_ratelimited(w, "proxy worker %d: out of memory; resetting an HTTP/2 "
					   "connection", w->id);
		conn_buf_release_empty(w, b);
		conn_side_close(w, &c->client, true);
		worker_conn_release(w, c);
		return;
	}
	nghttp2_session_callbacks_set_send_callback(cb, h2_down_send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_down_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback2(cb, h2_down_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_down_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_down_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_down_on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2_down_on_frame_send);
	opt = h2_options(w->cfg);
	if (opt)
		nghttp2_option_set_max_settings(opt, 32);
	d->c = c;
	d->w = w;
	c->h2 = d;
	if (!opt || nghttp2_session_server_new2(&d->s, cb, d, opt) ||
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
	/* What detection read (the preface, maybe more) is the first input. */
	if (b->tail > b->head) {
		ssize_t rv = nghttp2_session_mem_recv(d->s, (const uint8_t *)b->data + b->head,
						      b->tail - b->head);

		b->head = b->tail = 0;
		if (rv < 0)
			d->dead = true;
	}
	conn_buf_release_empty(w, b);
	c->client.readable = c->client.writable = true;
	h2_down_io(w, c, 0);
}

static void h2_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (s == &c->client)
		h2_down_io(w, c, events);
}

/* Deadlines of c's streams: DEADLINE_EXCEEDED (gRPC) or 504, the upstream stream reset. */
static void h2_timeout(struct worker *w, struct conn *c)
{
	struct h2_down *d = c->h2;
	uint64_t now = timer_now_ns(), idle = conn_idle_ns(w, c);

	for (struct h2_stream *st = d->streams; st; st = st->next) {
		struct metrics_http_key k;
		const struct shoal_addr *ep;

		if (st->answered || !st->deadline_ns || now < st->deadline_ns)
			continue;
		if (h2_key(w, st, &k, &ep))
			metrics_http_shard_event(w->metrics, &k, METRICS_HTTP_DEADLINE);
		h2_done(w, st, st->bt.active, true, 504, "timeout");
		h2_stream_error(w, st, HTTP_ERR_TIMEOUT);
	}
	if (!d->n_streams && idle && now >= c->last_active_ns + idle) {
		nghttp2_session_terminate_session(d->s, NGHTTP2_NO_ERROR);
		d->dead = true;
	}
	h2_down_flush(w, c);
}

static void h2_resume(struct worker *w, struct conn *c)
{
	struct h2_down *d = c->h2;

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

/* Between requests nothing of c but its service depends on its snapshot. */
static bool h2_settled(const struct conn *c)
{
	const struct h2_down *d = c->h2;

	return d && !d->n_streams;
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

static void h2_up_start(struct worker *w, struct conn *c)
{
	(void)w, (void)c; /* created by h2_up_get, never accepted */
}

static void h2_up_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (s == &c->upstream)
		h2_up_io(w, c, events);
}

static void h2_up_timeout(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;

	if (!up->connected) {
		worker_warn_ratelimited(w, "proxy worker %d: h2: connect to an endpoint timed out",
					w->id);
		h2_up_close(w, c, false);
		return;
	}
	if (!up->n_streams &&
	    timer_now_ns() >= up->idle_since_ns + (uint64_t)w->cfg->http_pool_idle_timeout_ms * 1000000) {
		nghttp2_session_terminate_session(up->s, NGHTTP2_NO_ERROR);
		up->dead = true;
	}
	h2_up_flush(w, c);
}

static void h2_up_resume(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;

	if (up && up->more) {
		up->more = false;
		h2_up_io(w, c, 0);
		return;
	}
	h2_up_flush(w, c);
}

static void h2_up_abort(struct worker *w, struct conn *c)
{
	h2_up_close(w, c, true);
}

/* A pooled session keeps nothing of its config but its endpoint's address. */
static bool h2_up_settled(const struct conn *c)
{
	(void)c;
	return true;
}

static bool h2_up_drain_idle(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns)
{
	struct h2_up *up = c->h2;

	(void)now, (void)idle_ns;
	if (up->n_streams)
		return false;
	h2_up_close(w, c, false);
	return true;
}

const struct conn_ops h2_upstream_ops = {
    .name = "h2-upstream",
    .start = h2_up_start,
    .event = h2_up_event,
    .timeout = h2_up_timeout,
    .resume = h2_up_resume,
    .abort = h2_up_abort,
    .settled = h2_up_settled,
    .drain_idle = h2_up_drain_idle,
};
