// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "telemetry/proxy_hooks.h"

#include "proxy/http1.h"
#include "proxy/l4.h"
#include "proxy/worker.h"
#include "telemetry/http_metrics.h"

/* Index of svc in cfg, or -1 when it is not one of cfg's services. */
static int64_t svc_index(const struct config *cfg, const struct config_service *svc)
{
	if (!svc || svc < cfg->services || svc >= cfg->services + cfg->n_services)
		return -1;
	return svc - cfg->services;
}

/*
 * The series key of the request on c, and the address of the endpoint of
 * its last attempt (NULL when none was tried). False when c's service is
 * not in the worker's config.
 */
static bool http_key(const struct worker *w, const struct l4_conn *c, bool with_endpoint,
		     struct metrics_http_key *k, const struct shoal_addr **ep_addr)
{
	const struct http1_conn *h = c->http;
	const struct config_service *t = h->target ? h->target : c->svc;
	int64_t svc = svc_index(w->cfg, c->svc), backend = svc_index(w->cfg, t);

	if (svc < 0 || backend < 0)
		return false;
	k->svc = (uint32_t)svc;
	k->backend = (uint32_t)backend;
	k->route = 0;
	if (h->route && h->route >= c->svc->routes && h->route < c->svc->routes + c->svc->n_routes)
		k->route = (uint32_t)(h->route - c->svc->routes) + 1;
	k->endpoint = METRICS_KEY_NONE;
	k->status = 0;
	*ep_addr = NULL;
	/* Attempt k went to endpoint (first + k) % n (http1_connect_next). */
	if (with_endpoint && h->target && h->tried && t->n_endpoints > 0) {
		uint32_t slot = (h->first + h->tried - 1) % (uint32_t)t->n_endpoints;

		k->endpoint = slot + 1;
		*ep_addr = &t->endpoints[slot].addr;
	}
	return true;
}

void metrics_http_done(struct worker *w, struct l4_conn *c, unsigned int status)
{
	struct http1_conn *h = c->http;
	struct metrics_http_key k;
	const struct shoal_addr *ep;
	uint64_t start = h->rq_head_start_ns;

	/* A head that never completed is no request unless the proxy refused it. */
	if (!start || h->tele.recorded_start_ns == start || (!status && h->rq == HTTP1_REQ_HEAD) ||
	    !http_key(w, c, true, &k, &ep))
		return;
	h->tele.recorded_start_ns = start;
	metrics_http_shard_request(w->metrics, &k, ep, status, timer_now_ns() - start);
}

void metrics_http_error(struct worker *w, struct l4_conn *c, unsigned int status, bool deadline)
{
	if (deadline)
		metrics_http_deadline(w, c);
	metrics_http_done(w, c, status);
}

static void http_event(struct worker *w, struct l4_conn *c, enum metrics_http_event ev)
{
	struct metrics_http_key k;
	const struct shoal_addr *ep;

	if (c->http && http_key(w, c, false, &k, &ep))
		metrics_http_shard_event(w->metrics, &k, ev);
}

void metrics_http_retry(struct worker *w, struct l4_conn *c)
{
	http_event(w, c, METRICS_HTTP_RETRY);
}

void metrics_http_retry_refused(struct worker *w, struct l4_conn *c)
{
	http_event(w, c, METRICS_HTTP_RETRY_REFUSED);
}

void metrics_http_deadline(struct worker *w, struct l4_conn *c)
{
	http_event(w, c, METRICS_HTTP_DEADLINE);
}

void metrics_tcp_open(struct worker *w, struct l4_conn *c)
{
	int64_t svc = svc_index(w->cfg, c->svc);

	if (svc >= 0)
		metrics_tcp_shard_open(w->metrics, (uint32_t)svc);
}

void metrics_tcp_flush(struct worker *w, struct l4_conn *c)
{
	int64_t svc = svc_index(w->cfg, c->svc);

	if (svc >= 0 && (c->to_upstream.unreported || c->to_client.unreported))
		metrics_tcp_shard_bytes(w->metrics, (uint32_t)svc, c->to_upstream.unreported,
					c->to_client.unreported);
	c->to_upstream.unreported = c->to_client.unreported = 0;
}

void metrics_tcp_close(struct worker *w, struct l4_conn *c)
{
	int64_t svc = svc_index(w->cfg, c->svc);

	metrics_tcp_flush(w, c);
	/* Only opaque connections that metrics_tcp_open counted. */
	if (svc >= 0 && c->mode == L4_MODE_OPAQUE && c->state == L4_ESTABLISHED)
		metrics_tcp_shard_close(w->metrics, (uint32_t)svc);
}
