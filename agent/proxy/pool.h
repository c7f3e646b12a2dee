/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Upstream connection pools of one worker: idle HTTP/1 connections to
 * each endpoint, kept for the next request. Per worker, so nothing is
 * locked; an endpoint is (address, port). Reuse is most recent first
 * (the connection least likely to have been closed by the server's own
 * idle timer); expiry is oldest first, by one timer for the whole worker.
 *
 * An idle connection stays in the worker's epoll: a FIN, reset or stray
 * byte from the server closes it at once, so it is not handed out. A
 * server may still close one just as it is handed out; http1.c detects
 * that (send fails, or EOF before any response byte on a reused
 * connection) and sends the request again on a fresh connection.
 */
#ifndef SHOAL_PROXY_POOL_H
#define SHOAL_PROXY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal/abi.h"
#include "proxy/conn.h"
#include "proxy/timer.h"
#include "proxy/worker.h"

/*
 * Buckets of the per-worker endpoint table (a power of two). Endpoint
 * entries are never freed while the worker runs, so the table is sized
 * for the endpoints one node talks to; chains grow past it, slowly.
 */
#define POOL_BUCKETS 1024
/* Closed connection objects a worker keeps for reuse. */
#define POOL_FREE_MAX 1024

struct pool_ep;

struct pool_conn {
	/*
	 * Its socket (fd -1 once closed) with the read and write state every
	 * side has (conn_io.h); side.conn is the client connection using it,
	 * NULL while idle.
	 */
	struct conn_side side;
	struct pool_ep *ep;	/* the endpoint it is connected to */
	struct pool_conn *next; /* endpoint's idle list, or the free/closed lists */
	struct pool_conn *prev;
	struct pool_conn *lru_next; /* worker's idle list, oldest first */
	struct pool_conn *lru_prev;
	uint64_t idle_since_ns;
	uint32_t requests; /* requests sent on it; > 0 means a reused connection */
	bool connected;	   /* the TCP handshake completed */
	/* Through the tunnel: the caller identity it carries (only its
	 * requests reuse it); NULL: a direct connection. */
	const char *tunnel_src;
	uint64_t tunnel_epoch; /* attempt_tunnel_epoch when it connected, if tunneled */
	bool idle;	   /* on the idle lists */
};

struct pool_ep {
	struct shoal_addr addr;
	uint16_t port_be;
	uint32_t n_idle;
	struct pool_conn *idle; /* most recently used first */
	struct pool_ep *hnext;
};

struct pool {
	struct pool_ep *buckets[POOL_BUCKETS];
	struct pool_conn *lru_head, *lru_tail; /* every idle connection, oldest first */
	uint32_t n_idle;
	struct pool_conn *free; /* reusable objects */
	uint32_t n_free;
	struct pool_conn *closed; /* closed this loop turn; reaped at its end */
	struct timer_node timer;  /* the oldest idle connection's expiry */
	uint32_t max_idle_per_ep; /* 0: no pooling */
	uint64_t idle_timeout_ns;
};

/* An empty pool with the config's cap and idle timeout. */
void pool_init(struct pool *pl, uint32_t max_idle_per_ep, uint32_t idle_timeout_ms);

/* Close every idle connection and free everything; no connection may be
 * checked out. */
void pool_fini(struct worker *w, struct pool *pl);

/*
 * An idle connection to addr:port_be opened as tunnel_src says (the
 * caller identity it carries through the tunnel, NULL: direct;
 * attempt_pool_key), now owned by owner, or NULL when there is none.
 */
struct pool_conn *pool_take(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
			    const char *tunnel_src, struct conn *owner);

/*
 * Start a new, marked, non-blocking connection to addr:port_be for owner.
 * Returns 1 (connected at once) or 0 (in progress; its events go to
 * http1_upstream_event) with *out set, or -errno.
 */
int pool_connect(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
		 struct conn *owner, struct pool_conn **out);

/*
 * pool_connect to endpoint ep of service svc, at port_be: through the
 * encrypted hop when attempt_connect_ep says so (docs/mtls.md), and then
 * reused only by owner's caller identity.
 */
struct config_endpoint;
struct config_service;
int pool_connect_ep(struct worker *w, const struct config_service *svc,
		    const struct config_endpoint *ep, uint16_t port_be, struct conn *owner,
		    struct pool_conn **out);

/*
 * The owner is done with pc after a complete exchange: keep it idle for
 * reuse, or close it when its endpoint's idle list is full or it cannot
 * be reused.
 */
void pool_put(struct worker *w, struct pool_conn *pc);

/* Close pc (with a reset when reset is set); its memory stays valid
 * until the end of the loop turn. */
void pool_close(struct worker *w, struct pool_conn *pc, bool reset);
/*
 * The tunnel retired a TLS connection of w (its count is now epoch,
 * attempt_tunnel_epoch): close every idle connection through the tunnel
 * opened before, which may be a stream on it. pool_put and pool_take
 * catch the ones in use when they come back.
 */
void pool_tunnel_retired(struct worker *w, uint64_t epoch);

/*
 * Give pc's socket away (a tunnel takes it over): the fd is not closed,
 * only forgotten, and pc is released. Returns the fd, still in the
 * worker's epoll; the caller re-points it with EPOLL_CTL_MOD.
 */
int pool_detach(struct worker *w, struct pool_conn *pc);

/* The pool timer fired: close the connections idle for too long. */
void pool_expire(struct worker *w);

/* End of a loop turn: recycle the objects closed during it. */
void pool_reap(struct pool *pl);

#endif
