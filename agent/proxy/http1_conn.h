/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The HTTP state of one client connection (struct http1_conn, in the
 * connection's allocation) and what every part of the HTTP kind does
 * with it, below both the exchange (http1.c) and the tries of its
 * requests (http1_retry.c): header slots, closing, the connection's one
 * timer and its deadlines, the proxy's own answers, the request head
 * read back. Contracts are at the definitions (http1_conn.c).
 */
#ifndef SHOAL_PROXY_HTTP1_CONN_H
#define SHOAL_PROXY_HTTP1_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
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
	bool up_tunneled;    /* the latest try's connection goes through the mTLS tunnel (span) */
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
	const char *deny_reason;	     /* HTTP_ERR_POLICY_DENIED: the rule, for x-shoal-policy */
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
/* Header slots of one head: proxy.http.max_headers or the default. */
uint32_t http1_max_headers(const struct config *cfg);
/* h holds its header slots (a head is about to be parsed); false: no memory. */
bool http1_headers_hold(struct worker *w, struct http1_conn *h);
/* Between exchanges: no parsed header is used any more. */
void http1_headers_release(struct worker *w, struct http1_conn *h);
/* Give up h's upstream connection, to the pool when reusable. */
void http1_up_release(struct worker *w, struct http1_conn *h, bool reusable);
/* Give the request's replay slab (if any) back to the worker. */
void http1_slab_release(struct worker *w, struct http1_conn *h);
/* Close everything and release c; reset: the peers see RST. */
void http1_close(struct worker *w, struct conn *c, bool reset);
/* Reset both sides and release c: the proxy is stopping, or c cannot go on. */
void http1_abort(struct worker *w, struct conn *c);
/* Arm c's timer at deadline; false when that failed and c was closed. */
bool http1_arm(struct worker *w, struct conn *c, uint64_t deadline);
/* The client buffer is full of request bytes the endpoint has not taken. */
bool http1_rq_backpressured(const struct worker *w, const struct conn *c);
/* When the request body, started, times out for want of a byte. */
uint64_t http1_body_deadline(const struct worker *w, const struct http1_conn *h);
/* When the try in flight times out for want of a response head; 0: not now. */
uint64_t http1_head_deadline(const struct worker *w, const struct http1_conn *h);
/* c's next deadline of any kind (idle, head, body, try, request, retry), 0: none. */
uint64_t http1_idle_deadline(const struct worker *w, const struct conn *c);
/* Arm c's timer at http1_idle_deadline; false: c was closed. */
bool http1_arm_idle(struct worker *w, struct conn *c);
/* Answer err to the client (the proxy's own response), then close. */
void http1_error(struct worker *w, struct conn *c, enum http_error err);
/* The request head's byte at client buffer offset off, or NULL when gone. */
const char *http1_rq_at(const struct conn *c, uint32_t off);
/* http_routes.h header lookup over the parsed request head (ctx: c). */
int http1_route_header(void *ctx, const char *name, size_t name_len, const char **value,
		       size_t *value_len);

#endif
