// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A worker's thread: its epoll loop, listeners and accepts, timers,
 * deferred turns and end-of-turn reaping, config updates and draining.
 * It calls connections only through their kind's operations (conn.h),
 * and the services they use are in worker.c, below it.
 */
#include "proxy/worker_loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/accept.h"
#include "proxy/h2.h"
#include "proxy/pool.h"
#include "proxy/sock.h"
#include "proxy/worker.h"
#include "recording/callers.h"
#include "recording/policy_stats.h"
#include "recording/http_metrics.h"
#include "tunnel/tunnel.h"

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
		 * conn_accept refuses it (503 or reset) and closes it at once: one
		 * fd more than the cap, for the length of that call.
		 */
		while (w->pool->lru_head &&
		       w->n_active + w->pool->n_idle >= w->cfg->max_connections)
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
		conn_accept(w, fd, &peer);
	}
}

static void worker_on_stop(struct worker *w, struct pollable *pl, uint32_t events)
{
	(void)pl;
	(void)events;
	w->stopping = true;
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

		if (c->ops->drain_idle)
			c->ops->drain_idle(w, c, now, (uint64_t)WORKER_DRAIN_IDLE_MS * 1000000);
		c = next;
	}
	/* Without the timer idle connections wait for the deadline: no worse than before. */
	timer_heap_add(&w->timers, &w->drain_sweep,
		       now + (uint64_t)WORKER_DRAIN_SWEEP_MS * 1000000);
}

/*
 * Hand-over: close the listeners for good (proxy_release_listeners; the
 * new process accepts from the same sockets). Out of the epoll first: the
 * socket outlives our fd, and epoll would keep reporting it.
 */
static void worker_listeners_release(struct worker *w)
{
	for (int i = 0; i < w->n_listeners; i++) {
		if (w->listeners[i].pl.fd < 0)
			continue;
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->listeners[i].pl.fd, NULL);
		close(w->listeners[i].pl.fd);
		w->listeners[i].pl.fd = -1;
	}
	w->n_listeners = 0;
	w->accepting = false;
	timer_heap_del(&w->timers, &w->accept_retry);
}

static void worker_on_update(struct worker *w, struct pollable *pl, uint32_t events)
{
	uint64_t n;

	(void)events;
	if (read(pl->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn("proxy worker %d: cannot read its update eventfd: %s", w->id,
			strerror(errno));
	worker_snap_take(w);
	if (w->n_listeners && atomic_load(&w->p->listeners_released))
		worker_listeners_release(w);
	else if (!w->accepting && !atomic_load(&w->p->hold_accepts))
		worker_accept_resume(w); /* proxy_accept_start (or early after EMFILE) */
	if (!w->draining && atomic_load_explicit(&w->p->draining, memory_order_relaxed)) {
		w->draining = true;
		worker_drain_sweep(w);
	}
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
		worker_state_put(w, c->http);
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

/* c's timer fired: its kind decides what that means. */
static void worker_conn_timeout(struct worker *w, struct conn *c)
{
	c->ops->timeout(w, c);
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
			worker_conn_timeout(w, container_of(t, struct conn, timer));
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
		if (c->state != CONN_CLOSED && c->ops->resume)
			c->ops->resume(w, c);
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
		w->active->ops->abort(w, w->active);
	w->pending = NULL; /* every connection on it was just released */
	worker_reap(w);
	if (w->pool) {
		while (w->pool->lru_head)
			pool_close(w, w->pool->lru_head, false);
		pool_reap(w->pool);
	}
}

static void worker_on_tunnel(struct worker *w, struct pollable *pl, uint32_t events)
{
	(void)pl;
	(void)events;
	uint64_t epoch;

	tunnel_loop_run(w->tunnel, w->id);
	/*
	 * A connection of this worker's loop was retired (a renewal, seen by
	 * the loop's sweep): the upstreams that may ride it take no new
	 * request, so that keep-alive load moves to one proving the newest
	 * certificate (docs/mtls.md).
	 */
	epoch = tunnel_retirements(w->tunnel, w->id);
	if (epoch != w->tunnel_epoch_seen) {
		w->tunnel_epoch_seen = epoch;
		pool_tunnel_retired(w, epoch);
		h2_up_tunnel_retired(w, epoch);
	}
}

int worker_watch_tunnel(struct worker *w, struct tunnel *t)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->tunnel_loop};
	int fd;

	if (w->tunnel_loop.fd >= 0)
		return w->tunnel == t ? 0 : -EINVAL;
	fd = tunnel_loop_fd(t, w->id);
	if (fd < 0)
		return -EINVAL;
	/* Level-triggered: the loop's epoll stays ready while it has events. */
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	w->tunnel = t;
	w->tunnel_loop.on_event = worker_on_tunnel;
	w->tunnel_loop.fd = fd;
	return 0;
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
			pr_warn("proxy worker %d: stalling for %u ms, as a test asked", w->id,
				stall_ms);
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

/*
 * Take an inherited listener (proxy_start_inherit) bound to addr:port_be:
 * its fd, now the caller's, or -ENOENT when none is left.
 */
static int worker_listener_inherit(struct proxy *p, const struct shoal_addr *addr, uint16_t port_be)
{
	struct proxy_listen_fds *in = p->opts.inherit;

	for (int i = 0; in && i < in->n; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct shoal_addr a;
		uint16_t port;
		int listening = 0, fd = in->fd[i];
		socklen_t ol = sizeof(listening);

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
		    addr_from_sockaddr((struct sockaddr *)&ss, &a, &port) < 0 ||
		    !addr_equal(&a, addr) || port != port_be ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) < 0 || !listening)
			continue;
		in->fd[i] = -1;
		return fd;
	}
	return -ENOENT;
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
	w->tunnel_loop.fd = -1;
	w->id = id;
	w->epfd = -1;
	w->stop.fd = -1;
	w->bufs.size = cfg->buffer_bytes;
	accept_size_caches(w, cfg);
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
	w->callers = callers_table_new();
	w->authz = policy_stats_new();

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
		ret = worker_listener_inherit(p, addrs[i], port_be);
		if (ret < 0)
			ret = sock_listen(addrs[i], port_be, cfg->socket_mark, err, errlen);
		if (ret < 0)
			goto err;
		l->pl.fd = ret;
		l->pl.on_event = worker_on_accept;
		w->n_listeners++;
		if (atomic_load(&p->hold_accepts))
			continue; /* proxy_accept_start adds them */
		ret = worker_listener_add(w, l);
		if (ret) {
			snprintf(err, errlen, "proxy worker %d: cannot watch %s: %s", id, l->name,
				 strerror(-ret));
			goto err;
		}
	}
	w->accepting = !atomic_load(&p->hold_accepts);

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
	worker_caches_free(w);
	if (w->pool) {
		pool_fini(w, w->pool);
		free(w->pool);
		w->pool = NULL;
	}
	timer_heap_fini(&w->timers);
	metrics_http_shard_free(w->metrics);
	w->metrics = NULL;
	callers_table_free(w->callers);
	w->callers = NULL;
	policy_stats_free(w->authz);
	w->authz = NULL;
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
