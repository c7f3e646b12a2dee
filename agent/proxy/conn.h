/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's connection core, types only: one proxied connection
 * (struct conn), its two sockets (struct conn_side), the bytes waiting
 * between them (struct conn_buf), what it carries (enum conn_kind) and
 * the operations each kind implements (struct conn_ops). Prototypes live
 * with the code that implements them; this header declares no function,
 * so that every kind and the worker can include it without including
 * each other (docs/architecture.md).
 */
#ifndef SHOAL_PROXY_CONN_H
#define SHOAL_PROXY_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal/abi.h"
#include "proxy/endpoint_pick.h"
#include "proxy/timer.h"

struct worker;
struct config_service;
struct es_svc_view;
struct http1_conn;
struct proxy_snap;

/*
 * Copy rounds (up to one buffer each way) a connection gets per turn
 * before yielding to the others; a bulk transfer then cannot starve its
 * worker's other connections. Every kind's pass over a connection keeps to it.
 */
#define CONN_PUMP_ROUNDS 16

/* Something in the worker's epoll; epoll_event.data.ptr points at it. */
struct pollable {
	/* Called with the ready events of fd, from the worker's thread. */
	void (*on_event)(struct worker *w, struct pollable *pl, uint32_t events);
	int fd;
};

/*
 * What a connection carries. Every connection starts as one of the first
 * three by its port's protocol; DETECT becomes OPAQUE or HTTP, and HTTP
 * becomes OPAQUE when a 101 (or a CONNECT 2xx) turns it into a tunnel.
 */
enum conn_kind {
	CONN_KIND_OPAQUE = 0, /* bytes copied both ways (opaque.c) */
	CONN_KIND_DETECT,     /* peeking at the client's first bytes (detect.c) */
	CONN_KIND_HTTP,	      /* HTTP/1.x requests (http1.c) */
	CONN_KIND_H2,	      /* HTTP/2: a client session, or a pooled upstream one (h2.c) */
};

enum conn_state {
	CONN_CONNECTING,  /* an attempt is in flight on upstream.pl.fd */
	CONN_RETRY,	  /* an attempt failed; the next starts on a deferred turn */
	CONN_ESTABLISHED, /* copying */
	CONN_CLOSED,	  /* sockets closed; memory awaits the end of the turn */
};

/* Bytes read from one side, not yet written to the other. */
struct conn_buf {
	char *data;	     /* cfg->buffer_bytes from the worker while bytes wait; else NULL */
	uint32_t head;	     /* first byte not yet written */
	uint32_t tail;	     /* end of the bytes read */
	uint64_t unreported; /* opaque bytes read into it, not yet in the metrics */
};

/*
 * The tries of one connection (opaque TCP) or of one request (HTTP) to
 * reach an endpoint: the balancer's pick, avoiding the endpoints tried,
 * and the ticket of the try in flight, whose outcome goes to the
 * balancer and the breaker (attempt.h).
 */
struct attempt {
	const struct es_svc_view *sv;	/* balancer state of the service tried; NULL: none */
	struct pick_ticket bt;		/* the try in flight: endpoint and breaker ticket */
	uint32_t avoid[PICK_MAX_AVOID]; /* endpoints tried, so the next try goes elsewhere */
	uint32_t n_avoid;
	uint32_t tried;	   /* tries started so far */
	uint32_t last_idx; /* endpoint index of the latest try (valid once tried > 0) */
	int last_err;	   /* errno of the last failed connect */
	uint64_t deadline_ns;  /* proxy.connect_deadline_ms: no try starts after it */
	uint64_t fail_fast_ns; /* with no candidate endpoint, wait until then at most */
};

struct conn_side {
	struct pollable pl;
	struct conn *conn;
	bool readable;	/* no EAGAIN since the last read edge */
	bool writable;	/* no EAGAIN since the last write edge */
	bool eof;	/* it sent FIN (read returned 0) */
	bool shut_wr;	/* we sent it FIN (shutdown SHUT_WR) */
	bool plain_tcp; /* not on the sockmap shortcut (conn_side_read) */
	bool rdhup;	/* EPOLLRDHUP seen: a FIN waits behind the data */
};

struct conn {
	enum conn_state state; /* for HTTP: ESTABLISHED until CLOSED */
	enum conn_kind kind;
	const struct conn_ops *ops; /* its kind's: what the worker calls (set with kind) */
	struct http1_conn *http;   /* HTTP state from the worker (HTTP mode); else NULL */
	void *h2;		   /* the HTTP/2 kind's session (h2.c); else NULL */
	struct proxy_snap *snap;   /* the config it was routed with: held until reaped */
	struct conn_side client;   /* accepted from the application */
	struct conn_side upstream; /* to the endpoint; fd -1 between attempts */
	struct conn_buf to_upstream;
	struct conn_buf to_client;
	struct timer_node timer; /* connect attempt deadline, then the idle deadline */

	/*
	 * Where the client was going, as the datapath said at accept: an HTTP
	 * connection finds its service again by it in each newer snapshot
	 * (worker_conn_follow), so no service pointer outlives its snapshot.
	 */
	struct shoal_orig_dst orig;
	const struct config_service *svc; /* of snap's config */
	uint16_t svc_port;		  /* service port (host order), for messages */
	uint16_t port_be;		  /* endpoint port */
	struct shoal_addr client_addr;	  /* the client's address (per-client cap) */
	bool client_counted;		  /* counted in the proxy's client table */
	/* The calling workload's identity, interned by the tunnel; NULL: mtls
	 * off or unknown (attempt_src_ident, docs/mtls.md). */
	const char *src_ident;
	uint32_t caller; /* its caller's index in the worker's callers table (observe.h) */
	uint64_t accepted_ns;
	uint64_t last_active_ns;	/* last byte moved either way (idle timeout) */
	const struct es_svc_view *sv;	/* svc's balancer state (its knobs); NULL: none */
	struct attempt at; /* the tries to reach an endpoint: opaque's one, HTTP's per request */

	struct conn *prev, *next;  /* worker's active list, then closed/free */
	struct conn *pending_next; /* worker's deferred list (worker_conn_defer) */
	bool pending;		   /* on that list */
};

/*
 * What one kind of connection does on each of the worker's calls, all on
 * the worker's thread (docs/adding-a-protocol.md). The worker and the
 * event dispatch (conn_on_event) call only these, so that they never
 * name a protocol. Members marked optional may be NULL.
 */
struct conn_ops {
	const char *name; /* "opaque", "detect", "http1": for messages */
	/*
	 * Take over c: its client side is watched, its service and ports are
	 * set, and c->to_upstream may hold client bytes already (read by the
	 * kind before). Sets c->kind and c->ops. Consumes c: it may be closed
	 * on return.
	 */
	void (*start)(struct worker *w, struct conn *c);
	/*
	 * Side s of c had the epoll events (conn_side_note has noted them; c
	 * is not closed): read, write, or fail. s is c->client, c->upstream,
	 * or the side of a pooled connection c owns (struct pool_conn).
	 */
	void (*event)(struct worker *w, struct conn_side *s, uint32_t events);
	/* c->timer fired. */
	void (*timeout)(struct worker *w, struct conn *c);
	/* c's deferred turn (worker_conn_defer); optional. */
	void (*resume)(struct worker *w, struct conn *c);
	/* Reset both sides and release c: the proxy is stopping. */
	void (*abort)(struct worker *w, struct conn *c);
	/*
	 * Optional: may c move to the worker's newest config snapshot now
	 * (worker_conn_follow)? True only when nothing of c but its
	 * service's identity depends on its old config. NULL: never.
	 */
	bool (*settled)(const struct conn *c);
	/* Optional: c moved to a newer snapshot; re-point what the kind keeps of it. */
	void (*followed)(struct conn *c);
	/*
	 * Optional: the proxy is draining; close c if it is idle between two
	 * exchanges and was for idle_ns. True when c was closed.
	 */
	bool (*drain_idle)(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns);
};

#endif
