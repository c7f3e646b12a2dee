// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/authz.h"
#include "proxy/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/endpoint_pick.h"
#include "proxy/h2.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"

int worker_watch(struct worker *w, struct pollable *pl)
{
	struct epoll_event ev = {
	    .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	    .data.ptr = pl,
	};

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, pl->fd, &ev) < 0)
		return -errno;
	return 0;
}

int worker_rewatch(struct worker *w, struct pollable *pl)
{
	struct epoll_event ev = {
	    .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	    .data.ptr = pl,
	};

	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, pl->fd, &ev) < 0)
		return -errno;
	return 0;
}

void worker_unwatch(struct worker *w, struct pollable *pl)
{
	/*
	 * close() alone would drop the fd from the epoll only if no other
	 * process holds the file (a fork in the daemon would): be explicit.
	 */
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, pl->fd, NULL);
}

/* Listeners are level-triggered: an accept batch may leave connections
 * queued, and epoll must report them again on the next turn. */
int worker_listener_add(struct worker *w, struct worker_listener *l)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->pl};

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->pl.fd, &ev) < 0)
		return -errno;
	return 0;
}

/*
 * Resume accepting after a pause (EMFILE & co). max_connections does not
 * hold it back: a connection past it is accepted and refused (conn_accept).
 */
void worker_accept_resume(struct worker *w)
{
	if (w->accepting || w->stopping || atomic_load(&w->p->hold_accepts))
		return;
	timer_heap_del(&w->timers, &w->accept_retry);
	for (int i = 0; i < w->n_listeners; i++) {
		int err = worker_listener_add(w, &w->listeners[i]);

		if (err)
			pr_warn("proxy worker %d: cannot resume accepting on %s: %s", w->id,
				w->listeners[i].name, strerror(-err));
	}
	w->accepting = true;
}

const struct config *worker_conn_config(const struct worker *w, const struct conn *c)
{
	return c->snap ? c->snap->cfg : w->cfg;
}

const struct es_svc_view *worker_es_service(const struct worker *w, const struct conn *c,
					    const struct config *cfg,
					    const struct config_service *svc)
{
	struct proxy_snap *s = c->snap;

	if (s && s->cfg == cfg)
		return es_view_service(s->es_view, cfg, svc);
	if (w->snap && w->snap->cfg == cfg)
		return es_view_service(w->snap->es_view, cfg, svc);
	return NULL;
}

static int conn_follow(struct worker *w, struct conn *c);

/*
 * Take the snapshot proxy_update handed over, if any: new connections use
 * it, and so, at once, do the HTTP connections idle between two requests
 * and the opaque ones that are copying (their endpoint and socket stay):
 * a keep-alive connection waiting minutes for its next request, or a
 * stream open for hours, must not pin the full config of its accept
 * (docs/discovery.md, "Snapshots"). O(connections of w) per change.
 */
void worker_snap_take(struct worker *w)
{
	struct proxy_snap *s;

	/*
	 * One snapshot at a time, each walk with conn_follow, which takes
	 * none itself: a config published during the walk waits for the
	 * next turn of this loop. worker_conn_follow taking it from inside
	 * the walk put the snapshot the walk was reading (w->snap's
	 * reference, its last), and the walk read it freed (ASan,
	 * bench-snapshots).
	 */
	while ((s = atomic_exchange(&w->next_snap, NULL))) {
		const struct policy_set *old_policy = w->cfg ? w->cfg->policy : NULL;

		proxy_snap_put(w->snap); /* connections still on it hold their own */
		w->snap = s;
		w->cfg = s->cfg;
		for (struct conn *c = w->active, *next; c; c = next) {
			next = c->next;
			if (c->snap != s && c->ops->settled && c->ops->settled(c))
				conn_follow(w, c); /* a service gone: its next request says so */
			/*
			 * A new policy holds for the opaque connections open now too
			 * (docs/policy.md, "Changes"): one it denies is reset at once.
			 * HTTP requests are decided one by one, with the newest config.
			 */
			if (s->cfg->policy != old_policy && s->cfg->policy &&
			    c->kind == CONN_KIND_OPAQUE && c->state == CONN_ESTABLISHED &&
			    !c->http && c->svc && c->snap == s &&
			    !authz_allow(w, c, NULL, c->svc, c->svc_port, NULL,
					 &(const char *){NULL}))
				c->ops->abort(w, c);
		}
	}
}

int worker_conn_follow(struct worker *w, struct conn *c)
{
	/*
	 * A config published before this request was read may still wait
	 * for the worker's update event in this same round: take it now, so
	 * that every request dispatched after proxy_update returned uses it.
	 */
	if (atomic_load_explicit(&w->next_snap, memory_order_relaxed))
		worker_snap_take(w);
	return conn_follow(w, c);
}

/* c onto w's snapshot (worker_conn_follow, without taking a newer one). */
static int conn_follow(struct worker *w, struct conn *c)
{
	const struct config_service *svc;
	const struct config_port *port;
	const struct es_svc_view *sv;

	if (c->snap == w->snap || !w->snap)
		return 0;
	svc = service_lookup(w->snap->cfg, &c->orig, &port);
	if (!svc)
		return -ENOENT;
	sv = es_view_service(w->snap->es_view, w->snap->cfg, svc);
	/*
	 * A connected opaque connection counts in its endpoint's pending
	 * load until it closes (pick_connected): carry that over to the
	 * endpoint's index in the new view. An endpoint the new config
	 * dropped is no candidate any more, so its load stops counting now.
	 */
	if (c->at.bt.pending) {
		uint32_t idx = PICK_NONE;

		for (uint32_t i = 0; c->at.sv && sv && c->at.bt.idx < c->at.sv->n_endpoints &&
				     i < sv->n_endpoints;
		     i++) {
			if (sv->ep[i] == c->at.sv->ep[c->at.bt.idx]) {
				idx = i;
				break;
			}
		}
		if (idx == PICK_NONE)
			pick_cancel(c->at.sv, &c->at.bt, timer_now_ns());
		else
			c->at.bt.idx = idx;
	}
	proxy_snap_get(w->snap);
	proxy_snap_put(c->snap); /* frees it when c was its last user */
	c->snap = w->snap;
	c->svc = svc;
	c->svc_port = port->port;
	c->port_be = service_target_port_be(port);
	c->sv = sv;
	if (c->ops->followed)
		c->ops->followed(c);
	return 0;
}

bool worker_plain_tcp(const struct worker *w, int fd)
{
	return w->p->on_shortcut && !w->p->on_shortcut(w->p->orig_ctx, fd);
}

/*
 * Charge bytes of new memory to the proxy's budget (limits.h) and to w's
 * gauge. False when the budget has no room; when refusal is set, the
 * caller then fails the connection that needed it, counted under
 * cap="memory" and said in a rate-limited line.
 */
static bool worker_mem_charge(struct worker *w, size_t bytes, bool refusal)
{
	if (!limits_mem_charge(&w->p->mem, bytes)) {
		if (refusal)
			worker_refused(w, PROXY_CAP_memory, "a buffer to an open connection");
		return false;
	}
	WORKER_STAT_ADD(w, buffer_memory_bytes, bytes);
	return true;
}

static void worker_mem_uncharge(struct worker *w, size_t bytes)
{
	limits_mem_uncharge(&w->p->mem, bytes);
	__atomic_fetch_sub(&w->stats.buffer_memory_bytes, bytes, __ATOMIC_RELAXED);
}

/* A block of f->size, charged to the budget when it is new; NULL past it. */
static void *freelist_get(struct worker *w, struct worker_freelist *f)
{
	void *p;

	if (f->n)
		return f->items[--f->n];
	if (!worker_mem_charge(w, f->size, true))
		return NULL;
	p = malloc(f->size);
	if (!p)
		worker_mem_uncharge(w, f->size);
	return p;
}

static void freelist_put(struct worker *w, struct worker_freelist *f, void *p)
{
	if (!p)
		return;
	if (f->n < WORKER_FREE_BUFS_MAX) {
		f->items[f->n++] = p;
		return;
	}
	free(p);
	worker_mem_uncharge(w, f->size);
}

static void freelist_fini(struct worker *w, struct worker_freelist *f)
{
	while (f->n) {
		free(f->items[--f->n]);
		worker_mem_uncharge(w, f->size);
	}
}

char *worker_buf_get(struct worker *w)
{
	char *buf = freelist_get(w, &w->bufs);

	if (buf)
		__atomic_store_n(&w->stats.buffers, ++w->n_buf_held, __ATOMIC_RELAXED);
	return buf;
}

void worker_buf_put(struct worker *w, char *buf)
{
	if (!buf)
		return;
	__atomic_store_n(&w->stats.buffers, --w->n_buf_held, __ATOMIC_RELAXED);
	freelist_put(w, &w->bufs, buf);
}

void *worker_state_get(struct worker *w)
{
	return freelist_get(w, &w->states);
}

void worker_state_put(struct worker *w, void *state)
{
	freelist_put(w, &w->states, state);
}

void *worker_slots_get(struct worker *w)
{
	void *hd = freelist_get(w, &w->slots);

	if (hd)
		__atomic_store_n(&w->stats.header_slots, ++w->n_headers_held, __ATOMIC_RELAXED);
	return hd;
}

void worker_slots_put(struct worker *w, void *hd)
{
	if (!hd)
		return;
	__atomic_store_n(&w->stats.header_slots, --w->n_headers_held, __ATOMIC_RELAXED);
	freelist_put(w, &w->slots, hd);
}

struct conn *worker_conn_get(struct worker *w)
{
	struct conn *c = w->free;

	if (c) {
		w->free = c->next;
		w->n_free--;
	} else {
		c = malloc(sizeof(*c));
		if (!c)
			return NULL;
	}
	/* conn_accept gives it its sides (conn_init) right away. */
	memset(c, 0, sizeof(*c));
	timer_node_init(&c->timer);
	/* Routed with w->cfg just now (conn_accept): hold that snapshot. */
	proxy_snap_get(w->snap);
	c->snap = w->snap;
	c->prev = NULL;
	c->next = w->active;
	if (w->active)
		w->active->prev = c;
	w->active = c;
	w->n_active++;
	__atomic_store_n(&w->stats.active, w->n_active, __ATOMIC_RELAXED);
	return c;
}

void worker_conn_release(struct worker *w, struct conn *c)
{
	if (c->client_counted) {
		limits_client_leave(&w->p->clients, &c->client_addr);
		c->client_counted = false;
	}
	c->state = CONN_CLOSED;
	timer_heap_del(&w->timers, &c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->active = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = w->closed;
	w->closed = c;
	w->n_active--;
	__atomic_store_n(&w->stats.active, w->n_active, __ATOMIC_RELAXED);
	worker_accept_resume(w);
}

void worker_conn_defer(struct worker *w, struct conn *c)
{
	if (c->pending)
		return;
	c->pending = true;
	c->pending_next = w->pending;
	w->pending = c;
}

void *worker_replay_get(struct worker *w)
{
	void *slab;

	if (w->n_replay_free)
		return w->replay_free[--w->n_replay_free];
	/* No slab is no refusal: the request streams, unretried (http_replay_no_slab). */
	if (w->n_replay_slabs >= WORKER_REPLAY_SLABS_MAX ||
	    !worker_mem_charge(w, w->replay_slab_bytes, false))
		return NULL;
	slab = malloc(w->replay_slab_bytes);
	if (slab)
		w->n_replay_slabs++;
	else
		worker_mem_uncharge(w, w->replay_slab_bytes);
	return slab;
}

void worker_replay_put(struct worker *w, void *slab)
{
	if (!slab)
		return;
	if (w->n_replay_free < WORKER_REPLAY_SLABS_MAX) {
		w->replay_free[w->n_replay_free++] = slab;
		return;
	}
	free(slab); /* cannot happen: every slab came from this worker */
	worker_mem_uncharge(w, w->replay_slab_bytes);
	w->n_replay_slabs--;
}

void worker_stats_add(struct worker *w, struct proxy_stats *sum)
{
#define WORKER_STATS_SUM(name, kind, help)                                                         \
	sum->name += __atomic_load_n(&w->stats.name, __ATOMIC_RELAXED);
	PROXY_STATS(WORKER_STATS_SUM)
#undef WORKER_STATS_SUM
	for (int i = 0; i < PROXY_CAP__COUNT; i++)
		sum->refused[i] += __atomic_load_n(&w->stats.refused[i], __ATOMIC_RELAXED);
}

bool worker_mem_room(struct worker *w)
{
	return w->bufs.n > 0 || limits_mem_room(&w->p->mem, w->bufs.size);
}

void worker_refused(struct worker *w, enum proxy_cap cap, const char *what)
{
	__atomic_fetch_add(&w->stats.refused[cap], 1, __ATOMIC_RELAXED);
	worker_warn_ratelimited(w, "proxy worker %d: refused %s: cap %s (%s) reached", w->id, what,
				proxy_cap_name(cap), proxy_cap_knob(cap));
}

void worker_warn_ratelimited(struct worker *w, const char *fmt, ...)
{
	uint64_t now = timer_now_ns();
	char msg[512];
	va_list ap;

	if (w->warn_last_ns && now - w->warn_last_ns < WORKER_WARN_INTERVAL_NS) {
		w->warn_suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->warn_suppressed)
		pr_warn("%s (%llu more proxy warnings suppressed since the last one)", msg,
			(unsigned long long)w->warn_suppressed);
	else
		pr_warn("%s", msg);
	w->warn_last_ns = now;
	w->warn_suppressed = 0;
}

void worker_caches_free(struct worker *w)
{
	while (w->free) {
		struct conn *c = w->free;

		w->free = c->next;
		free(c);
	}
	w->n_free = 0;
	freelist_fini(w, &w->bufs);
	freelist_fini(w, &w->states);
	freelist_fini(w, &w->slots);
	h2_mem_fini(w);
	while (w->n_replay_free) {
		free(w->replay_free[--w->n_replay_free]);
		worker_mem_uncharge(w, w->replay_slab_bytes);
	}
	w->n_replay_slabs = 0;
}
