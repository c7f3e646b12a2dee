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
#include "proxy/observe.h"

struct worker;
struct conn;
struct pool_conn;

/*
 * How long a client may take to send one complete request head, from its
 * first byte: a slowloris sending a byte now and then keeps the idle
 * timer fresh but not this one. HAProxy's usual "timeout http-request";
 * proxy.idle_timeout_ms caps it when shorter.
 */
#define HTTP1_HEAD_TIMEOUT_MS 10000
/*
 * After answering an error the proxy half-closes and reads for this long
 * before closing: closing with unread request bytes would send a reset
 * that can destroy the error response in flight (RFC 9112 9.6).
 */
#define HTTP1_LINGER_MS 1000
/*
 * Room the client buffer keeps free while reading, so that a request head
 * with the body bytes read along with it still fits once rewritten
 * (http1_rewrite_head grows a head by at most this).
 */
#define HTTP1_HEAD_RESERVE HTTP1_REWRITE_GROWTH_MAX
/*
 * Room the upstream buffer keeps free while a response head is read: its
 * rewrite, in place, re-sends Connection last and may grow the head by the
 * longest such line ("Connection: close, keep-alive, upgrade").
 */
#define HTTP1_RESP_RESERVE HTTP1_REWRITE_RESPONSE_SLACK
/*
 * Interim (1xx) heads forwarded before a final response: a server that
 * sends more is broken or hostile (each 1xx is a free response that
 * holds the client); past it, 502.
 */
#define HTTP1_MAX_INTERIM 8
/*
 * Reads of HTTP1_LINGER_SINK_BYTES a lingering connection gets per turn
 * (64 KiB): a client that keeps writing past its answer is drained in
 * bounded slices, with the worker's other connections served in between,
 * until its FIN or HTTP1_LINGER_MS.
 */
#define HTTP1_LINGER_SINK_BYTES 4096
#define HTTP1_LINGER_ROUNDS 16

enum http1_req_state {
	HTTP1_REQ_HEAD, /* reading the request head */
	HTTP1_REQ_BODY, /* framing the body; bytes up to rq_fwd go upstream */
	HTTP1_REQ_DONE, /* the whole request is framed */
};

enum http1_resp_state {
	HTTP1_RESP_NONE, /* no upstream yet */
	HTTP1_RESP_HEAD, /* upstream assigned: reading the response head (1xx included) */
	HTTP1_RESP_BODY,
	HTTP1_RESP_DONE, /* framed completely (or the proxy's own error is queued) */
};

/* The HTTP state of one client connection; lives in the connection's allocation. */
struct http1_conn {
	enum http1_req_state rq;
	enum http1_resp_state rs;
	bool closing;	     /* no further request: close the client once the response is out */
	bool lingering;	     /* error sent, half-closed: discard input until EOF or timer */
	bool final_started;  /* a final response head went (partly) to the client */
	bool retried;	     /* the request went out again after a stale pooled connection */
	bool rq_replayable;  /* every byte of the request is still in the client buffer */
	bool rq_slab_whole;  /* every framed byte of the request is in rq_slab */
	bool rq_slab_replay; /* the try in flight sends the request from rq_slab */
	bool up_reused;	     /* the upstream connection served an earlier request */
	bool rs_got_bytes;   /* the upstream sent a byte for this request */
	bool rs_until_close; /* the response body ends with the upstream's FIN */

	/* Request: always starts at offset 0 of the client buffer. */
	struct http1_parser rq_parser;
	struct http1_head rq_head;
	enum http1_body rq_body;
	uint64_t rq_left; /* Content-Length bytes not yet framed */
	struct http1_chunked rq_chunked;
	uint32_t rq_begin; /* first byte of the request line (after stray CRLFs) */
	uint32_t rq_fwd;   /* end of the bytes framed as this request's */
	uint64_t rq_head_start_ns;
	uint32_t rq_head_len; /* bytes of the request head, from rq_begin */
	/*
	 * Replay slab (worker_replay_get), taken when the body outgrows the
	 * client buffer: the request's framed bytes, head first. NULL: none.
	 */
	char *rq_slab;
	uint32_t rq_slab_len;  /* bytes copied into it */
	uint32_t rq_slab_cap;  /* head + the body limit: a chunked body past it is not kept */
	uint32_t rq_slab_sent; /* rq_slab_replay: bytes of it sent on this try */

	/* Where it goes. */
	const struct config_route *route;    /* the route it matched, or NULL */
	uint64_t deadline_ns;		     /* route timeout_ms from dispatch; 0: none */
	const struct config_service *target; /* the service whose endpoints serve it */
	uint16_t target_port_be;
	struct pool_conn *up; /* NULL until assigned */

	/*
	 * Resilience (docs/resilience.md, "Wiring"): the tries themselves
	 * (the target's balancer state, the ticket, the endpoints tried) are
	 * the connection's struct attempt.
	 */
	uint32_t retries;	  /* retries of this request so far */
	uint64_t try_deadline_ns; /* the per-try timeout of the try in flight; 0: none */
	uint64_t retry_at_ns;	  /* waiting to start the next try until then; 0: not */
	uint64_t try_start_ns;	  /* when the try in flight started (response head timeout) */

	/* The connection's limits (proxy.http.*, docs/proxy.md, "Timeouts"). */
	uint64_t rq_progress_ns; /* last byte of the request read (request body timeout) */
	uint32_t n_requests;	 /* dispatched on this connection so far */
	bool close_announce;	 /* its last: the response head gets "connection: close" */

	/* Response: starts at offset 0 of the upstream buffer. */
	struct http1_parser rs_parser;
	struct http1_head rs_head;
	enum http1_body rs_body;
	uint64_t rs_left;
	struct http1_chunked rs_chunked;
	uint32_t rs_start; /* where the head being parsed starts (after 1xx heads) */
	uint32_t rs_fwd;   /* end of the bytes cleared for the client */

	uint64_t client_timeout_ns; /* the client's x-shoal-timeout-ms, when honoured; 0: none */
	uint32_t rs_interim;	    /* 1xx heads of this response so far */
	char client_ip[INET6_ADDRSTRLEN]; /* the client's address, for X-Forwarded-For */

	uint64_t last_active_ns;
	struct http1_tele tele; /* metrics and trace of the request in flight */
	/*
	 * The request's header slots, then the response's (http1_headers_size):
	 * from the worker while a head is parsed or in use, back between
	 * exchanges (3.2 KiB by default, most of an idle connection). NULL:
	 * none held.
	 */
	struct http1_header *headers;
};

/* Bytes of the header slots of one struct http1_conn, for cfg's limits. */
size_t http1_headers_size(const struct config *cfg);

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

/* Reset both sides and release c: the proxy is stopping. */
void http1_abort(struct worker *w, struct conn *c);

#endif
