// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/addr.h"
#include "proxy/h2_int.h"
#include "proxy/http1.h"
#include "proxy/conn.h"
#include "proxy/worker.h"
#include "proxy/proxy_int.h"
#include "proxy/service_lookup.h"
#include "recording/callers.h"
#include "recording/http_metrics.h"

/*
 * The series key of the request on c, and the endpoint of its last
 * attempt (NULL when none was tried). Keys are series ids
 * (series_ids.h), valid in whichever snapshot c holds. False when c's
 * service or backend has no id (counted as unkeyed).
 */
static bool http_key(const struct worker *w, const struct conn *c, bool with_endpoint,
		     struct metrics_http_key *k, const struct config_endpoint **ep)
{
	const struct http1_conn *h = c->http;
	const struct config_service *t = h->target ? h->target : c->svc;

	memset(k, 0, sizeof(*k));
	*ep = NULL;
	/* The latest try's endpoint (struct attempt, conn.h). */
	if (with_endpoint && h->target && c->at.tried && c->at.last_idx < (uint32_t)t->n_endpoints) {
		uint32_t slot = c->at.last_idx;

		k->endpoint = slot + 1;
		*ep = &t->endpoints[slot];
	}
	if (!c->svc || !c->svc->metrics_id || !t->metrics_id) {
		metrics_http_shard_unkeyed(w->metrics);
		return false;
	}
	k->svc = c->svc->metrics_id;
	k->backend = t->metrics_id;
	if (h->route && h->route >= c->svc->routes && h->route < c->svc->routes + c->svc->n_routes)
		k->route = h->route->metrics_id;
	return true;
}

/* The series id of c's service, 0 (counted) when it has none. */
static uint32_t tcp_id(struct worker *w, const struct conn *c, bool count)
{
	uint32_t id = c->svc ? c->svc->metrics_id : 0;

	if (!id && count)
		metrics_http_shard_unkeyed(w->metrics);
	return id;
}

/* ---- tracing ------------------------------------------------------------ */

static struct trace_worker *worker_tracer(const struct worker *w)
{
	return __atomic_load_n(&w->trace, __ATOMIC_ACQUIRE);
}

/*
 * How the last attempt of a span's request reached endpoint ep (NULL:
 * none tried): through the mTLS tunnel when tunneled, and then to the
 * identity ep is configured with, which the tunnel made it prove.
 */
static void span_hop(struct trace_span *sp, const struct config_endpoint *ep, bool tunneled)
{
	sp->mtls = ep && tunneled;
	if (sp->mtls && ep->identity)
		trace_span_set(sp, destination_identity, ep->identity, strlen(ep->identity));
}

/* The span's caller: the workload identity of c's client, when known. */
static void span_source(struct trace_span *sp, const struct conn *c)
{
	if (c->src_ident)
		trace_span_set(sp, source_identity, c->src_ident, strlen(c->src_ident));
	else
		sp->source_identity[0] = '\0';
	sp->destination_identity[0] = '\0';
	sp->mtls = false;
}

/* Finish and record the span of the request on c, if it has one. */
static void trace_finish(struct worker *w, struct conn *c, unsigned int status,
			 const struct config_endpoint *ep)
{
	struct http1_conn *h = c->http;
	struct trace_span *sp = &h->tele.span;
	struct trace_worker *tw = worker_tracer(w);
	char addr[ADDR_STR_MAX];

	if (!tw || !h->tele.traced_start_ns || h->tele.traced_start_ns != h->rq_head_start_ns)
		return;
	h->tele.traced_start_ns = 0;
	if (!sp->sampled)
		return;
	if (h->route)
		trace_span_set(sp, route, h->route->name, strlen(h->route->name));
	if (ep) {
		addr_format(&ep->addr, h->target_port_be, addr, sizeof(addr));
		trace_span_set(sp, endpoint, addr, strlen(addr));
	}
	span_hop(sp, ep, h->up_tunneled);
	sp->status_code = (uint16_t)status;
	sp->retries = (uint16_t)(h->retries > UINT16_MAX ? UINT16_MAX : h->retries);
	sp->error = status == 0 || status >= 500;
	trace_record(tw, sp);
}

/* The span's service, "namespace/name" of svc: two copies, no format. */
static void span_service(struct trace_span *sp, const struct config_service *svc)
{
	size_t ns = strlen(svc->namespace), n = strlen(svc->name);

	_Static_assert(sizeof(svc->namespace) + sizeof(svc->name) <= sizeof(sp->service),
		       "namespace/name fits a span's service");
	memcpy(sp->service, svc->namespace, ns);
	sp->service[ns] = '/';
	memcpy(sp->service + ns + 1, svc->name, n + 1);
}

/* trace_header_fn over the parsed request head of c. */
static bool trace_head_get(void *arg, const char *name, unsigned int nth, const char **val,
			   size_t *len)
{
	const struct conn *c = arg;
	const struct http1_head *hd = &c->http->rq_head;
	const char *buf = c->to_upstream.data;
	size_t name_len = strlen(name);

	for (uint32_t i = 0; i < hd->n_headers; i++) {
		const struct http1_header *f = &hd->headers[i];

		if (f->name.len != name_len || strncasecmp(buf + f->name.off, name, name_len))
			continue;
		if (nth--)
			continue;
		*val = buf + f->value.off;
		*len = f->value.len;
		return true;
	}
	return false;
}

/* Header lines in text (one per LF). */
static uint32_t count_lines(const char *text, size_t len)
{
	uint32_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += text[i] == '\n';
	return n;
}

/*
 * Rewrite c's request head [start, *end) in place: drop every incoming
 * propagation header line, insert add (len bytes of whole header lines)
 * after the request line, move what follows the head (body, pipelined
 * bytes) along, and parse the new head. 0 without touching anything when
 * a limit would be broken; a parse error (< 0) when the new head fails.
 */
static int head_rewrite(struct worker *w, struct conn *c, size_t *end, const char *add, size_t len)
{
	struct http1_conn *h = c->http;
	struct conn_buf *b = &c->to_upstream;
	struct http1_limits lim = h->rq_parser.limits;
	uint32_t start = h->rq_parser.start, drop_lines = 0;
	size_t drop = 0, tail = b->tail, done;
	char *buf = b->data;
	const char *nl = memchr(buf + start, '\n', *end - start);
	uint32_t cut_from[HTTP1_MAX_HEADERS_DEFAULT], cut_to[HTTP1_MAX_HEADERS_DEFAULT];
	int r;

	if (!nl)
		return 0;
	for (uint32_t i = 0; i < h->rq_head.n_headers; i++) {
		const struct http1_header *f = &h->rq_head.headers[i];
		uint32_t vend = f->value.off + f->value.len;
		const char *eol;

		if (!trace_is_propagation_header(buf + f->name.off, f->name.len))
			continue;
		eol = memchr(buf + vend, '\n', *end - vend);
		/* Beyond HTTP1_MAX_HEADERS_DEFAULT of them: leave the head alone. */
		if (!eol || drop_lines == HTTP1_MAX_HEADERS_DEFAULT)
			return 0;
		cut_from[drop_lines] = f->name.off;
		cut_to[drop_lines] = (uint32_t)(eol + 1 - buf);
		drop += cut_to[drop_lines] - cut_from[drop_lines];
		drop_lines++;
	}
	uint32_t n_headers = h->rq_head.n_headers - drop_lines + count_lines(add, len);

	/* The parser must take the new head as it took the old one. */
	if (tail - drop + len > w->cfg->buffer_bytes ||
	    (lim.max_head && *end - start - drop + len > lim.max_head) ||
	    (lim.max_headers && n_headers > lim.max_headers) || n_headers > h->rq_head.cap)
		return 0;
	/* Last cut first, so earlier offsets stay valid. */
	for (uint32_t i = drop_lines; i-- > 0;) {
		memmove(buf + cut_from[i], buf + cut_to[i], tail - cut_to[i]);
		tail -= cut_to[i] - cut_from[i];
	}
	size_t at = (size_t)(nl + 1 - buf);

	memmove(buf + at + len, buf + at, tail - at);
	memcpy(buf + at, add, len);
	b->tail = (uint32_t)(tail + len);
	http1_parser_init(&h->rq_parser, HTTP1_REQUEST, &lim);
	r = http1_parse_head(&h->rq_parser, buf, b->tail, &h->rq_head, &done);
	if (r != HTTP1_DONE)
		return r < 0 ? r : HTTP1_E_BAD_REQUEST;
	*end = done;
	return 0;
}

int tele_trace_head(struct worker *w, struct conn *c, size_t *consumed)
{
	struct http1_conn *h = c->http;
	struct trace_worker *tw = worker_tracer(w);
	const char *buf = c->to_upstream.data;
	struct trace_ctx in, out;
	char add[TRACE_INJECT_MAX];
	struct trace_span *sp = &h->tele.span;
	int n;

	if (!tw)
		return 0;
	trace_extract(trace_head_get, c, &in);
	trace_start(tw, &in, &out, sp);
	h->tele.traced_start_ns = h->rq_head_start_ns;
	/* What the span needs of the head: it may be gone from the buffer by the end. */
	span_service(sp, c->svc);
	span_source(sp, c);
	trace_span_set(sp, method, buf + h->rq_head.method_tok.off, h->rq_head.method_tok.len);
	sp->route[0] = sp->endpoint[0] = '\0';
	n = trace_inject(&out, add, sizeof(add));
	if (n < 0)
		return 0;
	return head_rewrite(w, c, consumed, add, (size_t)n);
}

/* ---- HTTP/2 tracing ------------------------------------------------------ */

/* trace_header_fn over an HTTP/2 request's fields (names are lower case). */
static bool trace_h2_get(void *arg, const char *name, unsigned int nth, const char **val,
			 size_t *len)
{
	const struct h2_fields *f = arg;
	size_t name_len = strlen(name);

	for (uint32_t i = 0; i < f->n; i++) {
		const nghttp2_nv *nv = &f->nv[i];
		const char *v = (const char *)nv->value;
		size_t l = nv->valuelen;

		if (nv->namelen != name_len || strncasecmp((const char *)nv->name, name, name_len))
			continue;
		if (nth--)
			continue;
		while (l && (*v == ' ' || *v == '\t'))
			v++, l--;
		while (l && (v[l - 1] == ' ' || v[l - 1] == '\t'))
			l--;
		*val = v;
		*len = l;
		return true;
	}
	return false;
}

/*
 * Add trace_inject's lines in t->out (n bytes of "Name: value\r\n") to
 * the request's fields, names in lower case as HTTP/2 wants them.
 */
static void h2_add_injected(struct h2_stream *st, struct h2_tele *t, size_t n)
{
	char *p = t->out, *end = t->out + n;

	while (p < end) {
		char *colon = memchr(p, ':', (size_t)(end - p)), *eol, *v;

		if (!colon)
			return;
		eol = memchr(colon, '\r', (size_t)(end - colon));
		if (!eol)
			return;
		for (char *q = p; q < colon; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		v = colon + 1;
		while (v < eol && *v == ' ')
			v++;
		if (h2_fields_add_own(&st->rq, p, (size_t)(colon - p), v, (size_t)(eol - v)))
			return; /* no room: the request goes on without the rest */
		p = eol + 2;
	}
}

void tele_h2_start(struct worker *w, struct h2_stream *st)
{
	struct trace_worker *tw = worker_tracer(w);
	const nghttp2_nv *m;
	struct trace_ctx in, out;
	struct h2_tele *t;
	int n;

	if (!tw || st->tele)
		return;
	t = malloc(sizeof(*t));
	if (!t)
		return;
	st->tele = t;
	trace_extract(trace_h2_get, &st->rq, &in);
	trace_start(tw, &in, &out, &t->span);
	span_service(&t->span, st->d->c->svc);
	span_source(&t->span, st->d->c);
	m = h2_field(&st->rq, ":method");
	if (m)
		trace_span_set(&t->span, method, (const char *)m->value, m->valuelen);
	n = trace_inject(&out, t->out, sizeof(t->out));
	h2_fields_drop(&st->rq, trace_is_propagation_header);
	if (n > 0)
		h2_add_injected(st, t, (size_t)n);
}

/* The endpoint port of st's target: its port of the addressed one's number. */
static uint16_t h2_target_port_be(const struct h2_stream *st)
{
	const struct conn *c = st->d->c;

	for (int i = 0; st->target && i < st->target->n_ports; i++)
		if (st->target->ports[i].port == c->svc_port)
			return service_target_port_be(&st->target->ports[i]);
	return c->port_be;
}

void tele_h2_finish(struct worker *w, struct h2_stream *st, unsigned int status, int grpc_code,
		    const struct shoal_addr *ep)
{
	struct trace_worker *tw = worker_tracer(w);
	struct trace_span *sp;
	char addr[ADDR_STR_MAX];

	if (!tw || !st->tele || !st->tele->span.sampled)
		return;
	sp = &st->tele->span;
	if (st->route)
		trace_span_set(sp, route, st->route->name, strlen(st->route->name));
	if (ep) {
		addr_format(ep, h2_target_port_be(st), addr, sizeof(addr));
		trace_span_set(sp, endpoint, addr, strlen(addr));
	}
	/* ep is h2_key's: the address of the try's endpoint, when there was one. */
	span_hop(sp,
		 ep && st->target && st->bt.idx < (uint32_t)st->target->n_endpoints
		     ? &st->target->endpoints[st->bt.idx]
		     : NULL,
		 st->up_tunneled);
	sp->status_code = (uint16_t)st->status;
	sp->retries = (uint16_t)(st->retries > UINT16_MAX ? UINT16_MAX : st->retries);
	sp->error = status == 0 || status >= 500;
	if (st->grpc) {
		sp->grpc = true;
		sp->grpc_status = grpc_code < 0 || grpc_code > 254 ? TRACE_GRPC_NONE
								    : (uint8_t)grpc_code;
	}
	trace_record(tw, sp);
	sp->sampled = false; /* once */
}

void metrics_http_done(struct worker *w, struct conn *c, unsigned int status)
{
	struct http1_conn *h = c->http;
	struct metrics_http_key k;
	const struct config_endpoint *ep;
	uint64_t start = h->rq_head_start_ns;

	/* A head that never completed is no request unless the proxy refused it. */
	if (!start || h->tele.recorded_start_ns == start || (!status && h->rq == HTTP1_REQ_HEAD))
		return;
	h->tele.recorded_start_ns = start;
	if (http_key(w, c, true, &k, &ep)) {
		metrics_http_shard_request(w->metrics, &k, ep ? &ep->addr : NULL, status,
					   timer_now_ns() - start);
		callers_record(w->callers, c->caller, k.svc, status);
	}
	trace_finish(w, c, status, ep);
}

static void http_event(struct worker *w, struct conn *c, enum metrics_http_event ev)
{
	struct metrics_http_key k;
	const struct config_endpoint *ep;

	if (c->http && http_key(w, c, false, &k, &ep))
		metrics_http_shard_event(w->metrics, &k, ev);
}

void metrics_http_retry(struct worker *w, struct conn *c)
{
	http_event(w, c, METRICS_HTTP_RETRY);
}

void metrics_http_retry_refused(struct worker *w, struct conn *c)
{
	http_event(w, c, METRICS_HTTP_RETRY_REFUSED);
}

void metrics_http_deadline(struct worker *w, struct conn *c)
{
	http_event(w, c, METRICS_HTTP_DEADLINE);
}

void callers_conn_accept(struct worker *w, struct conn *c, const struct sockaddr *peer,
			 const struct shoal_addr *peer_addr)
{
	struct proxy *p = w->p;
	proxy_caller_fn fn = __atomic_load_n(&p->caller_fn, __ATOMIC_ACQUIRE);
	char name[CALLERS_NAME_MAX];

	if (!w->callers) {
		c->caller = CALLERS_OTHER;
		return;
	}
	if (!fn || fn(__atomic_load_n(&p->caller_ctx, __ATOMIC_RELAXED), peer, name, sizeof(name)))
		addr_ntop(peer_addr, name, sizeof(name));
	c->caller = callers_intern(w->callers, name);
}

void metrics_tcp_open(struct worker *w, struct conn *c)
{
	uint32_t svc = tcp_id(w, c, true);

	if (svc)
		metrics_tcp_shard_open(w->metrics, svc);
}

void metrics_tcp_flush(struct worker *w, struct conn *c)
{
	uint32_t svc = tcp_id(w, c, false);

	if (svc && (c->to_upstream.unreported || c->to_client.unreported))
		metrics_tcp_shard_bytes(w->metrics, svc, c->to_upstream.unreported,
					c->to_client.unreported);
	c->to_upstream.unreported = c->to_client.unreported = 0;
}

void metrics_tcp_close(struct worker *w, struct conn *c)
{
	uint32_t svc = tcp_id(w, c, false);

	metrics_tcp_flush(w, c);
	/* Only opaque connections that metrics_tcp_open counted. */
	if (svc && c->kind == CONN_KIND_OPAQUE && c->state == CONN_ESTABLISHED)
		metrics_tcp_shard_close(w->metrics, svc);
}
