// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/attempt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "config/config.h"
#include "proxy/endpoint_pick.h"
#include "proxy/proxy_int.h"
#include "proxy/sock.h"
#include "proxy/worker.h"
#include "proxy/worker_loop.h"
#include "tunnel/tunnel.h"

void attempt_begin(struct attempt *at, const struct es_svc_view *sv, const struct config *cfg,
		   uint64_t now)
{
	at->sv = sv;
	at->n_avoid = 0;
	at->tried = 0;
	at->last_err = 0;
	at->deadline_ns = now + (uint64_t)cfg->connect_deadline_ms * 1000000;
	at->fail_fast_ns = now + (sv ? sv->fail_fast_ns : 0);
}

/*
 * The connect of c->at.bt failed with err, not for want of the proxy's
 * own resources: its endpoint is charged a failure (penalty, breaker).
 */
static void attempt_record(struct worker *w, struct conn *c, const struct attempt_kind *k, int err)
{
	struct attempt *at = &c->at;
	uint32_t idx = at->bt.idx;
	uint16_t port_be = 0;
	const struct config_service *t = k->target(c, &port_be);

	at->last_err = err;
	WORKER_STAT_INC(w, connect_failures);
	pick_outcome(at->sv, &at->bt, false, PEAK_EWMA_NO_RETRY_AFTER, timer_now_ns(),
		     "a failed connect");
	if (log_debug_on() && idx < (uint32_t)t->n_endpoints) {
		char addr[ADDR_STR_MAX];

		pr_debug("proxy worker %d: %s/%s:%u: connect to %s failed: %s", w->id,
			 c->svc->namespace, c->svc->name, c->svc_port,
			 addr_format(&t->endpoints[idx].addr, port_be, addr, sizeof(addr)),
			 strerror(err));
	}
}

/*
 * No connection for want of the proxy's own resources: cancel the try,
 * so that neither the balancer nor the breaker nor the retry budget
 * hears of it, and have the kind refuse the client.
 */
static void attempt_refuse(struct worker *w, struct conn *c, const struct attempt_kind *k, int err)
{
	pick_cancel(c->at.sv, &c->at.bt, timer_now_ns());
	WORKER_STAT_INC(w, local_refused);
	k->refuse(w, c, err);
}

/*
 * After a failed connect, recorded: false when the tries end here (c
 * answered by k->expired, or given up), true when another may start.
 */
static bool attempt_may_go_on(struct worker *w, struct conn *c, const struct attempt_kind *k)
{
	if (k->expired && k->expired(w, c, timer_now_ns()))
		return false;
	if (k->fail_over(w, c))
		return true;
	k->give_up(w, c, ATTEMPT_EXHAUSTED);
	return false;
}

bool attempt_failed(struct worker *w, struct conn *c, const struct attempt_kind *k, int err)
{
	/* A shortage reported late (SO_ERROR) is as much the proxy's as one at once. */
	if (sock_err_local(err)) {
		attempt_refuse(w, c, k, err);
		return false;
	}
	attempt_record(w, c, k, err);
	return attempt_may_go_on(w, c, k);
}

void attempt_next(struct worker *w, struct conn *c, const struct attempt_kind *k)
{
	struct attempt *at = &c->at;
	uint16_t port_be = 0;
	uint32_t n = (uint32_t)k->target(c, &port_be)->n_endpoints;

	for (;;) {
		uint64_t now = timer_now_ns();
		uint32_t idx;
		int ret;

		if (k->expired && k->expired(w, c, now))
			return;
		if (now >= at->deadline_ns) {
			at->last_err = ETIMEDOUT;
			break;
		}
		idx = pick_endpoint(at->sv, n, now, at->avoid, at->n_avoid, &at->bt);
		if (idx == PICK_NONE) {
			/* Wait for a probe's outcome or a penalty's end, within both times. */
			uint64_t until =
			    at->fail_fast_ns < at->deadline_ns ? at->fail_fast_ns : at->deadline_ns;
			uint64_t poll = now + ATTEMPT_NO_CANDIDATE_POLL_NS;

			if (now < until && k->wait(w, c, poll < until ? poll : until))
				return;
			if (at->sv)
				atomic_fetch_add_explicit(&at->sv->state->no_candidate, 1,
							  memory_order_relaxed);
			at->last_err = at->last_err ?: EHOSTUNREACH;
			k->give_up(w, c, ATTEMPT_NO_CANDIDATE);
			return;
		}
		if (at->tried && k->admit && !k->admit(w, c, now))
			break;
		if (at->n_avoid < PICK_MAX_AVOID)
			at->avoid[at->n_avoid++] = idx;
		at->tried++;
		at->last_idx = idx;
		pick_start(at->sv, &at->bt, now);
		ret = k->open(w, c, idx, now, at->deadline_ns);
		if (ret == 0)
			return;
		if (ret > 0) {
			if (k->connected)
				k->connected(w, c);
			return;
		}
		if (sock_err_local(-ret)) {
			attempt_refuse(w, c, k, -ret);
			return;
		}
		/* Recorded before the next pick reuses at->bt. */
		attempt_record(w, c, k, -ret);
		if (!attempt_may_go_on(w, c, k))
			return;
	}
	k->give_up(w, c, ATTEMPT_EXHAUSTED);
}

int attempt_connect(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
		    bool *connected)
{
	struct sockaddr_storage ss;
	socklen_t sslen = w->p->opts.endpoint_sockaddr(addr, port_be, &ss);
	int fd, err;

	*connected = false;
	fd = w->p->opts.open_socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Unmarked, the datapath would send this connect back to us. */
	err = sock_set_mark(fd, w->cfg->socket_mark);
	if (err)
		goto err_close;
	sock_set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&ss, sslen) == 0) {
		*connected = true;
	} else if (errno != EINPROGRESS) {
		err = -errno;
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return err;
}

const char *attempt_src_ident(struct worker *w, const struct shoal_addr *addr)
{
	const struct config_mtls *m = &w->cfg->mtls;
	struct tunnel *t = __atomic_load_n(&w->p->tunnel, __ATOMIC_ACQUIRE);
	proxy_identity_fn fn = __atomic_load_n(&w->p->identity_fn, __ATOMIC_ACQUIRE);
	char id[CONFIG_MAX_IDENTITY];

	if (w->p->opts.src_ident)
		return w->p->opts.src_ident(addr);
	if (!m->on || !t)
		return NULL;
	for (int i = 0; i < m->n_workloads; i++)
		if (addr_equal(&m->workloads[i].addr, addr))
			return tunnel_ident(t, m->workloads[i].identity);
	if (fn && fn(w->p->identity_ctx, addr, id, sizeof(id)) == 0)
		return tunnel_ident(t, id);
	return NULL;
}

size_t attempt_peer_identity(const char *td, const char *src_ident, char *buf, size_t len)
{
	const char *slash = strchr(src_ident, '/');
	int n;

	/* An interned identity is valid (config_identity_valid): it has its slash. */
	n = snprintf(buf, len, "spiffe://%s/ns/%.*s/sa/%s", td, (int)(slash - src_ident), src_ident,
		     slash + 1);
	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

/* How attempt_connect_ep sends a call (the one place that decides it). */
enum hop {
	HOP_DIRECT, /* same node, no node known, mode off, or permissive without a way through */
	HOP_TUNNEL,
	HOP_REFUSED, /* strict, and no way through the tunnel: *why says which part is missing */
};

static enum hop hop_of(struct worker *w, const struct conn *c, const struct config_service *svc,
		       const struct config_endpoint *ep, const struct config_mtls_node **node,
		       const char **why)
{
	const struct config_mtls *m = &w->cfg->mtls;
	enum config_mtls_mode mode;

	*node = NULL;
	/* Same node, or no node known: the bytes never leave this node. */
	if (!ep->node || !strcmp(ep->node, m->node_name))
		return HOP_DIRECT;
	mode = config_mtls_mode_of(m, svc);
	if (mode == CONFIG_MTLS_OFF)
		return HOP_DIRECT;
	*why = !__atomic_load_n(&w->p->tunnel, __ATOMIC_ACQUIRE)
		   ? "this node runs no tunnel (mtls is off here)"
	       : !ep->identity				   ? "the endpoint has no identity"
	       : !(*node = config_mtls_node(w->cfg, ep->node))
		   ? "the node has no address (not in mtls.nodes, and none of its pods reports a hostIP)"
	       : !c || !c->src_ident			   ? "the caller's identity is unknown"
							   : NULL;
	if (!*why)
		return HOP_TUNNEL;
	return mode == CONFIG_MTLS_STRICT ? HOP_REFUSED : HOP_DIRECT;
}

bool attempt_tunnels(struct worker *w, const struct conn *c, const struct config_service *svc,
		     const struct config_endpoint *ep)
{
	const struct config_mtls_node *node;
	const char *why;

	/* A caller without identity never goes through: no lookup for it. */
	return c && c->src_ident && hop_of(w, c, svc, ep, &node, &why) == HOP_TUNNEL;
}

uint64_t attempt_tunnel_epoch(struct worker *w)
{
	return tunnel_retirements(__atomic_load_n(&w->p->tunnel, __ATOMIC_ACQUIRE), w->id);
}

bool attempt_pool_key(struct worker *w, const struct conn *c, const struct config_service *svc,
		      const struct config_endpoint *ep, const char **tunnel_src)
{
	const struct config_mtls_node *node;
	const char *why;

	*tunnel_src = NULL;
	switch (hop_of(w, c, svc, ep, &node, &why)) {
	case HOP_DIRECT:
		return true;
	case HOP_TUNNEL:
		*tunnel_src = c->src_ident;
		return true;
	case HOP_REFUSED:
		break;
	}
	return false;
}

int attempt_connect_ep(struct worker *w, const struct conn *c, const struct config_service *svc,
		       const struct config_endpoint *ep, uint16_t port_be, bool *connected,
		       bool *tunneled)
{
	const struct config_mtls_node *node;
	const char *why = NULL;
	struct tunnel_route r;
	struct tunnel *t;
	int fd;

	*tunneled = false;
	switch (hop_of(w, c, svc, ep, &node, &why)) {
	case HOP_DIRECT:
		return attempt_connect(w, &ep->addr, port_be, connected);
	case HOP_REFUSED:
		worker_warn_ratelimited(w, "mtls: strict for %s/%s: a call to %s on node %s refused: %s",
					svc->namespace, svc->name,
					ep->identity ? ep->identity : "an endpoint", ep->node, why);
		WORKER_STAT_INC(w, mtls_refused);
		return -EACCES;
	case HOP_TUNNEL:
		break;
	}
	r.src = c->src_ident;
	r.dst = ep->identity;
	r.node = node->addr;
	r.node_port_be = htons(w->cfg->mtls.port);
	r.target = ep->addr;
	r.target_port_be = port_be;
	t = __atomic_load_n(&w->p->tunnel, __ATOMIC_ACQUIRE);
	fd = worker_watch_tunnel(w, t);
	if (fd < 0)
		return fd;
	fd = tunnel_open(t, w->id, &r);
	if (fd < 0)
		return fd;
	*connected = true;
	*tunneled = true;
	WORKER_STAT_INC(w, mtls_tunneled);
	return fd;
}

int attempt_connect_result(struct worker *w, int fd, uint32_t events)
{
	int err = w->p->opts.connect_error(fd);

	if (!err && !(events & EPOLLOUT))
		err = ECONNRESET;
	return err;
}
