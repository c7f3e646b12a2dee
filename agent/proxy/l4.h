/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One proxied TCP connection carried as opaque bytes: pick an endpoint,
 * connect with failover, then copy both directions with half-close and
 * reset propagation. Everything runs on the owning worker's thread.
 */
#ifndef SHOAL_PROXY_L4_H
#define SHOAL_PROXY_L4_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config/config.h"
#include "proxy/endpoint_pick.h"
#include "proxy/timer.h"
#include "proxy/worker.h"

/*
 * Copy rounds (up to one buffer each way) a connection gets per turn
 * before yielding to the others; a bulk transfer then cannot starve its
 * worker's other connections.
 */
#define L4_PUMP_ROUNDS 16

/*
 * What a connection carries. Every connection starts as one of the first
 * three by its port's protocol; DETECT becomes OPAQUE or HTTP, and HTTP
 * becomes OPAQUE when a 101 (or a CONNECT 2xx) turns it into a tunnel.
 */
enum l4_mode {
	L4_MODE_OPAQUE = 0, /* bytes copied both ways (this file) */
	L4_MODE_DETECT,	    /* peeking at the client's first bytes (detect.c) */
	L4_MODE_HTTP,	    /* HTTP/1.x requests (http1.c) */
};

enum l4_state {
	L4_CONNECTING,	/* an attempt is in flight on upstream.pl.fd */
	L4_RETRY,	/* an attempt failed; the next starts on a deferred turn */
	L4_ESTABLISHED, /* copying */
	L4_CLOSED,	/* sockets closed; memory awaits the end of the turn */
};

/* Bytes read from one side, not yet written to the other. */
struct l4_buf {
	char *data;    /* cfg->buffer_bytes from the worker while bytes wait; else NULL */
	uint32_t head; /* first byte not yet written */
	uint32_t tail; /* end of the bytes read */
	uint64_t unreported; /* opaque bytes read into it, not yet in the metrics */
};

struct l4_side {
	struct pollable pl;
	struct l4_conn *conn;
	bool readable; /* no EAGAIN since the last read edge */
	bool writable; /* no EAGAIN since the last write edge */
	bool eof;      /* it sent FIN (read returned 0) */
	bool shut_wr;  /* we sent it FIN (shutdown SHUT_WR) */
	bool plain_tcp; /* not on the sockmap shortcut (l4_read_drained) */
	bool rdhup;     /* EPOLLRDHUP seen: a FIN waits behind the data */
};

/*
 * After a read that asked for want bytes got n > 0: may the reader stop
 * until the next edge, without the read that would return EAGAIN? A short
 * read of a plain TCP socket means its queue is empty, and anything that
 * arrives later raises a new edge; a FIN that came with the data was
 * flagged by EPOLLRDHUP, so then read on to the 0. A socket on the
 * shortcut reads its redirected bytes first and its TCP queue after, so
 * a short read there can leave TCP bytes unread with no edge to come.
 * Saves one syscall in three on request/response traffic
 * (docs/benchmarks.md, finding 4).
 */
static inline bool l4_read_drained(bool plain_tcp, bool rdhup, ssize_t n, size_t want)
{
	return plain_tcp && !rdhup && (size_t)n < want;
}

struct http1_conn;
struct proxy_snap;

struct l4_conn {
	enum l4_state state; /* for HTTP: ESTABLISHED until CLOSED */
	enum l4_mode mode;
	struct http1_conn *http; /* HTTP state from the worker (HTTP mode); else NULL */
	struct proxy_snap *snap; /* the config it was routed with: held until reaped */
	struct l4_side client;	 /* accepted from the application */
	struct l4_side upstream; /* to the endpoint; fd -1 between attempts */
	struct l4_buf to_upstream;
	struct l4_buf to_client;
	struct timer_node timer; /* connect attempt deadline, then the idle deadline */

	/*
	 * Where the client was going, as the datapath said at accept: an HTTP
	 * connection finds its service again by it in each newer snapshot
	 * (worker_conn_follow), so no service pointer outlives its snapshot.
	 */
	struct shoal_orig_dst orig;
	const struct config_service *svc; /* of snap's config */
	uint16_t svc_port; /* service port (host order), for messages */
	uint16_t port_be;  /* endpoint port */
	struct shoal_addr client_addr; /* the client's address (per-client cap) */
	bool client_counted;	       /* counted in the proxy's client table */
	uint64_t accepted_ns;
	uint64_t last_active_ns; /* last byte moved either way (idle timeout) */
	uint32_t tried; /* connect attempts so far */
	int last_err;	/* errno of the last failed attempt */
	const struct es_svc_view *sv;	   /* svc's balancer state; NULL: none */
	struct pick_ticket bt;	   /* the connect attempt in flight */
	uint32_t avoid[PICK_MAX_AVOID]; /* endpoints tried, so a retry goes elsewhere */
	uint32_t n_avoid;

	struct l4_conn *prev, *next;  /* worker's active list, then closed/free */
	struct l4_conn *pending_next; /* worker's deferred list (worker_conn_defer) */
	bool pending;		      /* on that list */
};

/* Fresh state for a connection object from worker_conn_get. */
void l4_conn_init(struct l4_conn *c);

/*
 * b holds a buffer before a read into it: false when memory is short. And
 * b gives it back once empty, so that an idle connection holds none.
 */
bool l4_buf_hold(struct worker *w, struct l4_buf *b);
void l4_buf_release_empty(struct worker *w, struct l4_buf *b);

/*
 * Take over fd, just accepted from peer: find where it was going, pick an
 * endpoint and start connecting. Connections that cannot be served are
 * closed here (and counted); fd is always consumed.
 */
void l4_accept(struct worker *w, int fd, const struct sockaddr_storage *peer);

/* The deadline of c's connect attempt passed. */
void l4_timeout(struct worker *w, struct l4_conn *c);

/* c's deferred turn (worker_conn_defer): retry or keep copying. */
void l4_resume(struct worker *w, struct l4_conn *c);

/* Reset both sides of c and release it: the proxy is stopping. */
void l4_abort(struct worker *w, struct l4_conn *c);

/*
 * Carry c as opaque TCP from now on: pick an endpoint, connect, copy.
 * c->to_upstream may hold client bytes already (read while detecting);
 * they go first. A service without endpoints resets the client.
 */
void l4_opaque_start(struct worker *w, struct l4_conn *c);

/*
 * Turn c into an opaque tunnel: both sockets are set (c->upstream watched
 * under its own pollable) and the buffers hold what is still to be
 * written each way.
 */
void l4_tunnel(struct worker *w, struct l4_conn *c);

/*
 * The idle timeout of c in ns (0: none): its service's
 * resilience.timeouts.idle_ms, else proxy.idle_timeout_ms.
 */
uint64_t l4_idle_ns(const struct worker *w, const struct l4_conn *c);

/* Unwatch and close one side (RST when reset); harmless when closed. */
void l4_side_close(struct worker *w, struct l4_side *s, bool reset);

#endif
