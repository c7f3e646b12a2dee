/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One client connection carried as HTTP/1.x: requests parsed one at a
 * time, each routed on its own, sent on a pooled upstream connection, its
 * response streamed back; a 101 or a CONNECT 2xx turns the connection
 * into an opaque tunnel (opaque.c). Runs on the owning worker's thread.
 *
 * Bodies are forwarded as the client and the server sent them. Heads are
 * parsed in place (http1_parser.h), rewritten as a proxy must
 * (http1_rewrite_head: hop-by-hop fields out, forwarding fields in;
 * docs/proxy.md) back into the same buffer in front of their body bytes,
 * and parsed again: a head and its body stay one contiguous range, and a
 * replay sends the rewritten head as it is. The request head is built in
 * the still-empty response buffer; a response head is rewritten in place.
 * HTTP1_HEAD_RESERVE and HTTP1_RESP_RESERVE keep the room a rewrite may
 * grow into. The connection's two buffers (proxy.buffer_bytes each) hold
 * everything; nothing is allocated per request. A retry-eligible body too
 * large for the buffer is also copied into a replay slab from the
 * worker's bounded pool (worker.h), so that a retry can send it again.
 *
 * One request at a time: later pipelined requests wait in the client
 * buffer until the current response has been written, which answers them
 * in order by construction.
 */
#ifndef SHOAL_PROXY_HTTP1_H
#define SHOAL_PROXY_HTTP1_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/endpoint_pick.h"
#include "proxy/http1_parser.h"
#include "proxy/http_error.h"
#include "proxy/http1_conn.h"
#include "proxy/observe.h"

struct worker;
struct conn;
struct pool_conn;


/*
 * Carry c as HTTP/1: its client is watched; c->to_upstream may already
 * hold bytes (from detection). Consumes c (it may be closed on return).
 */
void http1_start(struct worker *w, struct conn *c);

/* HTTP/1 as a kind of connection (conn.h): its operations. */
extern const struct conn_ops http1_ops;

/* c's timer fired: connect attempt, idle, head or linger deadline. */
void http1_timeout(struct worker *w, struct conn *c);

/* c's deferred turn (worker_conn_defer). */
void http1_resume(struct worker *w, struct conn *c);

/*
 * c is an HTTP connection between two requests: nothing of its next one
 * is routed yet, so it may move to a newer snapshot (worker_conn_follow).
 */
bool http1_between_requests(const struct conn *c);

/*
 * Draining (proxy_drain): close c with a FIN when it is a keep-alive
 * connection idle between requests, nothing of a next one read, for at
 * least idle_ns; a client that wrote nothing for that long is not about to
 * race the close. Returns true when c was closed.
 */
bool http1_drain_idle(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns);


#endif
