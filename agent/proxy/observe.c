// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/observe.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/addr.h"
#include "proxy/http1.h"
#include "proxy/conn.h"
#include "proxy/worker.h"
#include "proxy/proxy_int.h"
#include "recording/callers.h"
#include "recording/http_metrics.h"

/*
 * The series key of the request on c, and the address of the endpoint of
 * its last attempt (NULL when none was tried). Keys are series ids
 * (series_ids.h), valid in whichever snapshot c holds. False when c's
 * service or backend has no id (counted as unkeyed).
 */
static bool http_key(const struct worker *w, const struct conn *c, bool with_endpoint,
		     struct metrics_http_key *k, const struct shoal_addr **ep_addr)
{
	const struct http1_conn *h = c->http;
	const struct config_service *t = h->target ? h->target : c->svc;

	memset(k, 0, sizeof(*k));
	*ep_addr = NULL;
	/* The latest try's endpoint (struct attempt, conn.h). */
	if (with_endpoint && h->target && c->at.tried && c->at.last_idx < (uint32_t)t->n_endpoints) {
		uint32_t slot = c->at.last_idx;

		k->endpoint = slot + 1;
		*ep_addr = &t->endpoints[slot].addr;
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

/* Finish and record the span of the request on c, if it has one. */
static void trace_finish(struct worker *w, struct conn *c, unsigned int status,
			 const struct shoal_addr *ep)
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
		addr_format(ep, h->target_port_be, addr, sizeof(addr));
		trace_span_set(sp, endpoint, addr, strlen(addr));
	}
	sp->status_code = (uint16_t)status;
	sp->retries = (uint16_t)(h->retries > UINT16_MAX ? UINT16_MAX : h->retries);
	sp->error = status == 0 || status >= 500;
	trace_record(tw, sp);
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
	char svc[TRACE_SERVICE_MAX];
	int n;

	if (!tw)
		return 0;
	trace_extract(trace_head_get, c, &in);
	trace_start(tw, &in, &out, sp);
	h->tele.traced_start_ns = h->rq_head_start_ns;
	/* What the span needs of the head: it may be gone from the buffer by the end. */
	snprintf(svc, sizeof(svc), "%s/%s", c->svc->namespace, c->svc->name);
	trace_span_set(sp, service, svc, strlen(svc));
	trace_span_set(sp, method, buf + h->rq_head.method_tok.off, h->rq_head.method_tok.len);
	sp->route[0] = sp->endpoint[0] = '\0';
	n = trace_inject(&out, add, sizeof(add));
	if (n < 0)
		return 0;
	return head_rewrite(w, c, consumed, add, (size_t)n);
}

void metrics_http_done(struct worker *w, struct conn *c, unsigned int status)
{
	struct http1_conn *h = c->http;
	struct metrics_http_key k;
	const struct shoal_addr *ep;
	uint64_t start = h->rq_head_start_ns;

	/* A head that never completed is no request unless the proxy refused it. */
	if (!start || h->tele.recorded_start_ns == start || (!status && h->rq == HTTP1_REQ_HEAD))
		return;
	h->tele.recorded_start_ns = start;
	if (http_key(w, c, true, &k, &ep)) {
		metrics_http_shard_request(w->metrics, &k, ep, status, timer_now_ns() - start);
		callers_record(w->callers, c->caller, k.svc, status);
	}
	trace_finish(w, c, status, ep);
}

static void http_event(struct worker *w, struct conn *c, enum metrics_http_event ev)
{
	struct metrics_http_key k;
	const struct shoal_addr *ep;

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
