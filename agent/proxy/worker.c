// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
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
#include "proxy/http1.h"
#include "proxy/l4.h"
#include "proxy/pool.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "recording/http_metrics.h"

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
static int worker_listener_add(struct worker *w, struct worker_listener *l)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->pl};

	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->pl.fd, &ev) < 0)
		return -errno;
	return 0;
}

/*
 * Resume accepting after a pause (EMFILE & co). max_connections does not
 * hold it back: a connection past it is accepted and refused (l4_accept).
 */
static void worker_accept_resume(struct worker *w)
{
	if (w->accepting || w->stopping)
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

/*
 * Stop accepting until a connection closes or, when retry_ms > 0, that
 * long has passed. Pending connections wait in the listener's backlog.
 * Only for a shortage the worker cannot answer (no fd to accept with).
 */
static void worker_accept_pause(struct worker *w, uint32_t retry_ms)
{
	if (w->accepting) {
		for (int i = 0; i < w->n_listeners; i++)
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->listeners[i].pl.fd, NULL);
		w->accepting = false;
	}
	if (retry_ms && timer_heap_add(&w->timers, &w->accept_retry,
				       timer_now_ns() + (uint64_t)retry_ms * 1000000) < 0)
		worker_accept_resume(w); /* no timer, no pause: better a spin than a deaf worker */
}

static void worker_on_accept(struct worker *w, struct pollable *pl, uint32_t events)
{
	(void)events;
	for (int i = 0; i < WORKER_ACCEPT_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd;

		/*
		 * Idle pooled sockets count too; they are the first to go. Still
		 * at max_connections, the connection is accepted all the same and
		 * l4_accept refuses it (503 or reset) and closes it at once: one
		 * fd more than the cap, for the length of that call.
		 */
		while (w->pool->lru_head && w->n_active + w->pool->n_idle >= w->cfg->max_connections)
			pool_close(w, w->pool->lru_head, false);
		fd = accept4(pl->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
				return;
			case EINTR:
			case ECONNABORTED: /* the client gave up while queued */
			case EPERM:	   /* a firewall rule refused it */
			case EPROTO:
				continue;
			default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the process is short */
				worker_warn_ratelimited(
				    w,
				    "proxy worker %d: cannot accept on %s: %s; "
				    "pausing accepts for %d ms",
				    w->id, container_of(pl, struct worker_listener, pl)->name,
				    strerror(errno), WORKER_ACCEPT_RETRY_MS);
				worker_accept_pause(w, WORKER_ACCEPT_RETRY_MS);
				return;
			}
		}
		WORKER_STAT_INC(w, accepted);
		l4_accept(w, fd, &peer);
	}
}

static void worker_on_stop(struct worker *w, struct pollable *pl, uint32_t events)
{
	(void)pl;
	(void)events;
	w->stopping = true;
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

/*
 * c is an opaque connection (not an HTTP tunnel, whose HTTP state still
 * names its old config) that is copying: its endpoint was picked and
 * connected, and it holds no balancer ticket, so nothing of it depends
 * on its config any more but its service's identity and knobs.
 */
static bool worker_conn_settled(const struct conn *c)
{
	return c->kind == CONN_KIND_OPAQUE && c->state == CONN_ESTABLISHED && !c->http &&
	       !c->at.bt.active;
}

/*
 * Take the snapshot proxy_update handed over, if any: new connections use
 * it, and so, at once, do the HTTP connections idle between two requests
 * and the opaque ones that are copying (their endpoint and socket stay):
 * a keep-alive connection waiting minutes for its next request, or a
 * stream open for hours, must not pin the full config of its accept
 * (docs/discovery.md, "Snapshots"). O(connections of w) per change.
 */
static void worker_snap_take(struct worker *w)
{
	struct proxy_snap *s = atomic_exchange(&w->next_snap, NULL);

	if (!s)
		return;
	proxy_snap_put(w->snap); /* connections still on it hold their own */
	w->snap = s;
	w->cfg = s->cfg;
	for (struct conn *c = w->active; c; c = c->next)
		if (c->snap != s && (http1_between_requests(c) || worker_conn_settled(c)))
			worker_conn_follow(w, c); /* a service gone: its next request says so */
}

int worker_conn_follow(struct worker *w, struct conn *c)
{
	const struct config_service *svc;
	const struct config_port *port;
	const struct es_svc_view *sv;

	/*
	 * A config published before this request was read may still wait
	 * for the worker's update event in this same round: take it now, so
	 * that every request dispatched after proxy_update returned uses it.
	 */
	if (atomic_load_explicit(&w->next_snap, memory_order_relaxed))
		worker_snap_take(w);
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
	if (c->kind == CONN_KIND_OPAQUE)
		c->at.sv = sv; /* its tries' service is its own (l4_opaque_start) */
	return 0;
}

/*
 * Draining: close the HTTP keep-alive connections idle for
 * WORKER_DRAIN_IDLE_MS, and come back in WORKER_DRAIN_SWEEP_MS for those
 * that become idle later. O(connections of w) per sweep.
 */
static void worker_drain_sweep(struct worker *w)
{
	uint64_t now = timer_now_ns();
	struct conn *c = w->active;

	while (c) {
		struct conn *next = c->next; /* c may be released */

		if (c->kind == CONN_KIND_HTTP)
			http1_drain_idle(w, c, now, (uint64_t)WORKER_DRAIN_IDLE_MS * 1000000);
		c = next;
	}
	/* Without the timer idle connections wait for the deadline: no worse than before. */
	timer_heap_add(&w->timers, &w->drain_sweep,
		       now + (uint64_t)WORKER_DRAIN_SWEEP_MS * 1000000);
}

static void worker_on_update(struct worker *w, struct pollable *pl, uint32_t events)
{
	uint64_t n;

	(void)events;
	if (read(pl->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn("proxy worker %d: cannot read its update eventfd: %s", w->id,
			strerror(errno));
	worker_snap_take(w);
	if (!w->draining && atomic_load_explicit(&w->p->draining, memory_order_relaxed)) {
		w->draining = true;
		worker_drain_sweep(w);
	}
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

struct http1_conn *worker_http_get(struct worker *w)
{
	return freelist_get(w, &w->https);
}

void worker_http_put(struct worker *w, struct http1_conn *h)
{
	if (h)
		worker_headers_put(w, h->headers);
	freelist_put(w, &w->https, h);
}

struct http1_header *worker_headers_get(struct worker *w)
{
	struct http1_header *hd = freelist_get(w, &w->headers);

	if (hd)
		__atomic_store_n(&w->stats.header_slots, ++w->n_headers_held, __ATOMIC_RELAXED);
	return hd;
}

void worker_headers_put(struct worker *w, struct http1_header *hd)
{
	if (!hd)
		return;
	__atomic_store_n(&w->stats.header_slots, --w->n_headers_held, __ATOMIC_RELAXED);
	freelist_put(w, &w->headers, hd);
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
	l4_conn_init(c);
	/* Routed with w->cfg just now (l4_accept): hold that snapshot. */
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

/*
 * Recycle the connections released this turn. Runs after the deferred
 * turns, so no list still names them: pending only holds connections
 * deferred during that pass, and those were left open.
 */
static void worker_reap(struct worker *w)
{
	while (w->closed) {
		struct conn *c = w->closed;

		w->closed = c->next;
		worker_buf_put(w, c->to_upstream.data);
		worker_buf_put(w, c->to_client.data);
		worker_http_put(w, c->http);
		/* Nothing names c any more: its snapshot may go (the drain ends). */
		proxy_snap_put(c->snap);
		c->snap = NULL;
		if (w->n_free < WORKER_FREE_CONNS_MAX) {
			c->next = w->free;
			w->free = c;
			w->n_free++;
		} else {
			free(c);
		}
	}
}

static void worker_run_timers(struct worker *w)
{
	uint64_t now = timer_now_ns();
	struct timer_node *t;

	while ((t = timer_heap_pop_expired(&w->timers, now))) {
		if (t == &w->accept_retry)
			worker_accept_resume(w);
		else if (t == &w->drain_sweep)
			worker_drain_sweep(w);
		else if (t == &w->pool->timer)
			pool_expire(w);
		else
			l4_timeout(w, container_of(t, struct conn, timer));
	}
}

static void worker_run_pending(struct worker *w)
{
	struct conn *c = w->pending;

	/* Take the whole list: what defers itself again waits for the next turn. */
	w->pending = NULL;
	while (c) {
		struct conn *next = c->pending_next;

		c->pending = false;
		c->pending_next = NULL;
		if (c->state != CONN_CLOSED)
			l4_resume(w, c);
		c = next;
	}
}

/* Close listeners and reset every connection: the proxy is stopping. */
static void worker_drain(struct worker *w)
{
	/* Releasing connections below must not re-arm the listeners. */
	w->stopping = true;
	for (int i = 0; i < w->n_listeners; i++) {
		if (w->listeners[i].pl.fd >= 0) {
			close(w->listeners[i].pl.fd);
			w->listeners[i].pl.fd = -1;
		}
	}
	w->accepting = false;
	while (w->active)
		l4_abort(w, w->active);
	w->pending = NULL; /* every connection on it was just released */
	worker_reap(w);
	if (w->pool) {
		while (w->pool->lru_head)
			pool_close(w, w->pool->lru_head, false);
		pool_reap(w->pool);
	}
}

void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[WORKER_MAX_EVENTS];

	while (!w->stopping) {
		int timeout = w->pending ? 0 : timer_heap_timeout_ms(&w->timers, timer_now_ns());
		uint32_t stall_ms;
		int n;

		/* Waiting is not wedged: only a turn that does not end is. */
		atomic_store_explicit(&w->busy_since_ns, 0, memory_order_relaxed);
		n = epoll_wait(w->epfd, evs, WORKER_MAX_EVENTS, timeout);
		atomic_store_explicit(&w->busy_since_ns, timer_now_ns(), memory_order_relaxed);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* Only a bug gets here (EBADF, EINVAL); say so and stop serving. */
			pr_warn("proxy worker %d: epoll_wait failed: %s; worker exits", w->id,
				strerror(errno));
			break;
		}
		stall_ms = atomic_exchange_explicit(&w->test_stall_ms, 0, memory_order_relaxed);
		if (stall_ms) {
			pr_warn("proxy worker %d: stalling for %u ms, as a test asked", w->id, stall_ms);
			usleep((useconds_t)stall_ms * 1000);
		}
		for (int i = 0; i < n; i++) {
			struct pollable *pl = evs[i].data.ptr;

			pl->on_event(w, pl, evs[i].events);
		}
		worker_run_timers(w);
		worker_run_pending(w);
		worker_reap(w);
		pool_reap(w->pool);
	}
	atomic_store(&w->exited, true);
	worker_drain(w);
	return NULL;
}

int worker_init(struct worker *w, struct proxy *p, int id, char *err, size_t errlen)
{
	const struct config *cfg = p->cfg;
	const struct shoal_addr *addrs[] = {&cfg->proxy_v4, &cfg->proxy_v6};
	struct epoll_event ev;
	int ret;

	memset(w, 0, sizeof(*w));
	w->p = p;
	w->snap = p->snap;
	proxy_snap_get(w->snap);
	w->cfg = w->snap->cfg;
	w->update.fd = -1;
	w->id = id;
	w->epfd = -1;
	w->stop.fd = -1;
	w->bufs.size = cfg->buffer_bytes;
	w->https.size = sizeof(struct http1_conn);
	w->headers.size = http1_headers_size(cfg);
	w->replay_slab_bytes = WORKER_REPLAY_BODY_BYTES + (size_t)cfg->buffer_bytes;
	timer_heap_init(&w->timers);
	timer_node_init(&w->accept_retry);
	timer_node_init(&w->drain_sweep);
	for (int i = 0; i < 2; i++)
		w->listeners[i].pl.fd = -1;

	w->pool = malloc(sizeof(*w->pool));
	if (!w->pool) {
		ret = -ENOMEM;
		snprintf(err, errlen, "proxy worker %d: out of memory", id);
		goto err;
	}
	pool_init(w->pool, cfg->http_pool_max_idle_per_endpoint, cfg->http_pool_idle_timeout_ms);
	/* Without it the worker serves, unmeasured. */
	w->metrics = metrics_http_shard_new();

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "proxy worker %d: cannot create an epoll: %s", id,
			 strerror(-ret));
		goto err;
	}

	for (int i = 0; i < 2; i++) {
		struct worker_listener *l = &w->listeners[w->n_listeners];
		uint16_t port_be = htons(cfg->proxy_port);

		if (addr_is_zero(addrs[i]))
			continue;
		addr_format(addrs[i], port_be, l->name, sizeof(l->name));
		ret = sock_listen(addrs[i], port_be, cfg->socket_mark, err, errlen);
		if (ret < 0)
			goto err;
		l->pl.fd = ret;
		l->pl.on_event = worker_on_accept;
		w->n_listeners++;
		ret = worker_listener_add(w, l);
		if (ret) {
			snprintf(err, errlen, "proxy worker %d: cannot watch %s: %s", id, l->name,
				 strerror(-ret));
			goto err;
		}
	}
	w->accepting = true;

	/* Level-triggered and read by its handler: proxy_update's wakeup. */
	w->update.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	w->update.on_event = worker_on_update;
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &w->update};
	if (w->update.fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->update.fd, &ev) < 0) {
		ret = -errno;
		snprintf(err, errlen, "proxy worker %d: cannot set up its update eventfd: %s", id,
			 strerror(-ret));
		goto err;
	}

	/* Level-triggered and never read: every worker sees it until exit. */
	w->stop.fd = p->stop_fd;
	w->stop.on_event = worker_on_stop;
	ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &w->stop};
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stop.fd, &ev) < 0) {
		ret = -errno;
		snprintf(err, errlen, "proxy worker %d: cannot watch the stop eventfd: %s", id,
			 strerror(-ret));
		goto err;
	}
	return 0;

err:
	worker_fini(w);
	return ret;
}

void worker_fini(struct worker *w)
{
	worker_drain(w);
	while (w->free) {
		struct conn *c = w->free;

		w->free = c->next;
		free(c);
	}
	w->n_free = 0;
	freelist_fini(w, &w->bufs);
	freelist_fini(w, &w->https);
	freelist_fini(w, &w->headers);
	while (w->n_replay_free) {
		free(w->replay_free[--w->n_replay_free]);
		worker_mem_uncharge(w, w->replay_slab_bytes);
	}
	w->n_replay_slabs = 0;
	if (w->pool) {
		pool_fini(w, w->pool);
		free(w->pool);
		w->pool = NULL;
	}
	timer_heap_fini(&w->timers);
	metrics_http_shard_free(w->metrics);
	w->metrics = NULL;
	if (w->epfd >= 0) {
		close(w->epfd);
		w->epfd = -1;
	}
	w->n_listeners = 0;
	if (w->update.fd >= 0) {
		close(w->update.fd);
		w->update.fd = -1;
	}
	/* Every connection was reaped above: only the worker's own references remain. */
	proxy_snap_put(atomic_exchange(&w->next_snap, NULL));
	proxy_snap_put(w->snap);
	w->snap = NULL;
	/* w->stop.fd is the proxy's; it closes it. */
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

bool worker_socket_room(const struct worker *w)
{
	return w->n_active + w->pool->n_idle < w->cfg->max_connections;
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
