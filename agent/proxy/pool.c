// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/sock.h"

void pool_init(struct pool *pl, uint32_t max_idle_per_ep, uint32_t idle_timeout_ms)
{
	memset(pl, 0, sizeof(*pl));
	timer_node_init(&pl->timer);
	pl->max_idle_per_ep = max_idle_per_ep;
	pl->idle_timeout_ns = (uint64_t)idle_timeout_ms * 1000000;
}

static uint32_t pool_hash(const struct shoal_addr *addr, uint16_t port_be)
{
	const uint8_t *b = (const uint8_t *)addr;
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < sizeof(*addr); i++)
		h = (h ^ b[i]) * 16777619u;
	h = (h ^ port_be) * 16777619u;
	return h & (POOL_BUCKETS - 1);
}

/* The endpoint entry for addr:port_be; created when create is set. */
static struct pool_ep *pool_ep_find(struct pool *pl, const struct shoal_addr *addr,
				    uint16_t port_be, bool create)
{
	uint32_t h = pool_hash(addr, port_be);
	struct pool_ep *ep;

	for (ep = pl->buckets[h]; ep; ep = ep->hnext)
		if (ep->port_be == port_be && addr_equal(&ep->addr, addr))
			return ep;
	if (!create)
		return NULL;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->addr = *addr;
	ep->port_be = port_be;
	ep->hnext = pl->buckets[h];
	pl->buckets[h] = ep;
	return ep;
}

static void pool_on_event(struct worker *w, struct pollable *p, uint32_t events)
{
	struct pool_conn *pc = container_of(p, struct pool_conn, side.pl);

	if (pc->side.pl.fd < 0)
		return; /* closed earlier in this turn */
	if (pc->side.conn) {
		conn_on_event(w, p, events); /* to its owner's kind */
		return;
	}
	/*
	 * Idle: a server says nothing between exchanges in HTTP/1.1. A FIN,
	 * a reset or a stray byte (a late 408, say) all mean the connection
	 * is not fit to carry the next request.
	 */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		pool_close(w, pc, false);
}

static struct pool_conn *pool_conn_get(struct pool *pl)
{
	struct pool_conn *pc = pl->free;

	if (pc) {
		pl->free = pc->next;
		pl->n_free--;
	} else {
		pc = malloc(sizeof(*pc));
		if (!pc)
			return NULL;
	}
	memset(pc, 0, sizeof(*pc));
	pc->side.pl.fd = -1;
	pc->side.pl.on_event = pool_on_event;
	return pc;
}

/* Take pc off its endpoint's idle list and the worker's LRU. */
static void pool_unlink_idle(struct pool *pl, struct pool_conn *pc)
{
	if (!pc->idle)
		return;
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		pc->ep->idle = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	pc->ep->n_idle--;
	if (pc->lru_prev)
		pc->lru_prev->lru_next = pc->lru_next;
	else
		pl->lru_head = pc->lru_next;
	if (pc->lru_next)
		pc->lru_next->lru_prev = pc->lru_prev;
	else
		pl->lru_tail = pc->lru_prev;
	pl->n_idle--;
	pc->next = pc->prev = pc->lru_next = pc->lru_prev = NULL;
	pc->idle = false;
}

/* Aim the pool timer at the oldest idle connection's expiry. */
static void pool_arm(struct worker *w, struct pool *pl)
{
	if (!pl->lru_head) {
		timer_heap_del(&w->timers, &pl->timer);
		return;
	}
	/* Without a timer the connection would idle forever: drop it instead. */
	if (timer_heap_add(&w->timers, &pl->timer,
			   pl->lru_head->idle_since_ns + pl->idle_timeout_ns) < 0)
		pool_close(w, pl->lru_head, false);
}

/* Through the tunnel, opened before a TLS connection of w was retired: it may be on it. */
static bool pool_tunnel_stale(const struct pool_conn *pc, uint64_t epoch)
{
	return pc->tunnel_src && pc->tunnel_epoch != epoch;
}

struct pool_conn *pool_take(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
			    const char *tunnel_src, struct conn *owner)
{
	struct pool *pl = w->pool;
	struct pool_ep *ep = pool_ep_find(pl, addr, port_be, false);
	struct pool_conn *pc, *next;
	uint64_t epoch = 0;
	bool was_oldest;

	if (!ep || !ep->idle)
		return NULL;
	/*
	 * A connection through the tunnel carries the identity of the caller
	 * it was opened for: only that caller's requests may reuse it, and a
	 * direct one only calls that would go direct (docs/mtls.md). One
	 * opened before a TLS connection of this worker was retired may be
	 * on it: closed, so that requests move to a connection that proves
	 * the newest certificate. At most max_idle_per_ep to look at.
	 */
	for (pc = ep->idle; pc; pc = next) {
		next = pc->next;
		if (pc->tunnel_src) {
			if (!epoch)
				epoch = attempt_tunnel_epoch(w);
			if (pool_tunnel_stale(pc, epoch)) {
				WORKER_STAT_INC(w, upstream_tunnel_retired);
				pool_close(w, pc, false);
				continue;
			}
		}
		if (pc->tunnel_src == tunnel_src)
			break;
	}
	if (!pc)
		return NULL;
	was_oldest = pc == pl->lru_head;
	pool_unlink_idle(pl, pc);
	pc->side.conn = owner;
	if (was_oldest)
		pool_arm(w, pl);
	WORKER_STAT_INC(w, pool_reused);
	return pc;
}

/* pool_connect and pool_connect_ep: cep NULL dials addr directly. */
static int pool_connect_via(struct worker *w, const struct shoal_addr *addr,
			    const struct config_service *svc, const struct config_endpoint *cep,
			    uint16_t port_be, struct conn *owner, struct pool_conn **out)
{
	struct pool *pl = w->pool;
	struct pool_conn *pc;
	struct pool_ep *ep;
	bool connected, tunneled;
	int fd, err;

	ep = pool_ep_find(pl, addr, port_be, true);
	if (!ep)
		return -ENOMEM;
	pc = pool_conn_get(pl);
	if (!pc)
		return -ENOMEM;
	tunneled = false;
	fd = cep ? attempt_connect_ep(w, owner, svc, cep, port_be, &connected, &tunneled)
		 : attempt_connect(w, addr, port_be, &connected);
	if (fd < 0) {
		err = fd;
		goto err_free;
	}
	pc->side.pl.fd = fd;
	err = worker_watch(w, &pc->side.pl);
	if (err)
		goto err_close;
	pc->ep = ep;
	pc->tunnel_src = tunneled ? owner->src_ident : NULL;
	pc->tunnel_epoch = tunneled ? attempt_tunnel_epoch(w) : 0;
	pc->side.conn = owner;
	pc->connected = connected;
	pc->side.writable = connected;
	pc->side.plain_tcp = connected && worker_plain_tcp(w, fd);
	*out = pc;
	return connected ? 1 : 0;

err_close:
	close(fd);
err_free:
	pc->next = pl->free;
	pl->free = pc;
	pl->n_free++;
	return err;
}

int pool_connect(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
		 struct conn *owner, struct pool_conn **out)
{
	return pool_connect_via(w, addr, NULL, NULL, port_be, owner, out);
}

int pool_connect_ep(struct worker *w, const struct config_service *svc,
		    const struct config_endpoint *ep, uint16_t port_be, struct conn *owner,
		    struct pool_conn **out)
{
	return pool_connect_via(w, &ep->addr, svc, ep, port_be, owner, out);
}

void pool_close(struct worker *w, struct pool_conn *pc, bool reset)
{
	struct pool *pl = w->pool;
	bool was_oldest = pc->idle && pc == pl->lru_head;

	if (pc->side.pl.fd < 0)
		return;
	pool_unlink_idle(pl, pc);
	worker_unwatch(w, &pc->side.pl);
	if (reset)
		sock_close_reset(pc->side.pl.fd);
	else
		close(pc->side.pl.fd);
	pc->side.pl.fd = -1;
	pc->side.conn = NULL;
	pc->next = pl->closed;
	pl->closed = pc;
	if (was_oldest)
		pool_arm(w, pl);
}

int pool_detach(struct worker *w, struct pool_conn *pc)
{
	struct pool *pl = w->pool;
	int fd = pc->side.pl.fd;

	pool_unlink_idle(pl, pc);
	pc->side.pl.fd = -1;
	pc->side.conn = NULL;
	pc->next = pl->closed;
	pl->closed = pc;
	return fd;
}

/*
 * Whether w may hold one more idle pooled socket: its connections and
 * idle pooled sockets together stay below proxy.max_connections, so the
 * worker's fds are at most 2 x max_connections (a client and an upstream
 * socket per connection) whatever the pool holds, plus the one refused
 * socket conn_accept closes before the worker accepts again.
 */
static bool pool_socket_room(const struct worker *w)
{
	return w->n_active + w->pool->n_idle < w->cfg->max_connections;
}

void pool_tunnel_retired(struct worker *w, uint64_t epoch)
{
	struct pool *pl = w->pool;
	struct pool_conn *pc, *next;

	for (pc = pl ? pl->lru_head : NULL; pc; pc = next) {
		next = pc->lru_next;
		if (pool_tunnel_stale(pc, epoch)) {
			WORKER_STAT_INC(w, upstream_tunnel_retired);
			pool_close(w, pc, false);
		}
	}
}

void pool_put(struct worker *w, struct pool_conn *pc)
{
	struct pool *pl = w->pool;
	struct pool_ep *ep = pc->ep;

	pc->side.conn = NULL;
	if (pc->tunnel_src && pool_tunnel_stale(pc, attempt_tunnel_epoch(w))) {
		WORKER_STAT_INC(w, upstream_tunnel_retired);
		pool_close(w, pc, false);
		return;
	}
	/*
	 * A connection that saw a FIN, has unread bytes pending (readable
	 * without an EAGAIN since), whose endpoint list is full, or that would
	 * take the worker's sockets past proxy.max_connections is closed.
	 */
	if (pc->side.eof || pc->side.readable || !pc->connected ||
	    ep->n_idle >= pl->max_idle_per_ep || !pl->idle_timeout_ns || !pool_socket_room(w)) {
		pool_close(w, pc, false);
		return;
	}
	pc->idle = true;
	pc->idle_since_ns = timer_now_ns();
	pc->prev = NULL;
	pc->next = ep->idle;
	if (ep->idle)
		ep->idle->prev = pc;
	ep->idle = pc;
	ep->n_idle++;
	pc->lru_next = NULL;
	pc->lru_prev = pl->lru_tail;
	if (pl->lru_tail)
		pl->lru_tail->lru_next = pc;
	else
		pl->lru_head = pc;
	pl->lru_tail = pc;
	pl->n_idle++;
	if (pl->lru_head == pc)
		pool_arm(w, pl);
}

void pool_expire(struct worker *w)
{
	struct pool *pl = w->pool;
	uint64_t now = timer_now_ns();

	while (pl->lru_head && pl->lru_head->idle_since_ns + pl->idle_timeout_ns <= now) {
		struct pool_conn *pc = pl->lru_head;

		pool_unlink_idle(pl, pc); /* so that pool_close does not re-arm each time */
		pool_close(w, pc, false);
	}
	pool_arm(w, pl);
}

void pool_reap(struct pool *pl)
{
	while (pl->closed) {
		struct pool_conn *pc = pl->closed;

		pl->closed = pc->next;
		if (pl->n_free < POOL_FREE_MAX) {
			pc->next = pl->free;
			pl->free = pc;
			pl->n_free++;
		} else {
			free(pc);
		}
	}
}

void pool_fini(struct worker *w, struct pool *pl)
{
	while (pl->lru_head)
		pool_close(w, pl->lru_head, false);
	timer_heap_del(&w->timers, &pl->timer);
	pool_reap(pl);
	while (pl->free) {
		struct pool_conn *pc = pl->free;

		pl->free = pc->next;
		free(pc);
	}
	pl->n_free = 0;
	for (int i = 0; i < POOL_BUCKETS; i++) {
		while (pl->buckets[i]) {
			struct pool_ep *ep = pl->buckets[i];

			pl->buckets[i] = ep->hnext;
			free(ep);
		}
	}
}
