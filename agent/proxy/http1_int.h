/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the two halves of the HTTP/1 connection share, and nothing else
 * includes: http1.c (the exchange: heads, bodies, routing, errors,
 * timeouts) and http1_retry.c (the tries of one request: HTTP's kind
 * of the attempt loop (attempt.h), per-try deadlines, retries and their
 * backoff, replay slabs, resends after a stale pooled connection). Each
 * function's contract is at its definition.
 */
#ifndef SHOAL_PROXY_HTTP1_INT_H
#define SHOAL_PROXY_HTTP1_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/http1.h"

/* ---- http1.c ------------------------------------------------------------ */

/* Header slots of one head: proxy.http.max_headers or the default. */
uint32_t http1_max_headers(const struct config *cfg);
/* Is debug logging on (worth formatting a message for)? */
bool http1_debug(void);
/* "ns/name:port" of c's service, for messages. */
const char *http1_svc_name(const struct conn *c, char *buf, size_t len);
/* Give up h's upstream connection, to the pool when reusable. */
void http1_up_release(struct worker *w, struct http1_conn *h, bool reusable);
/* Arm c's timer at deadline; false when that failed and c was closed. */
bool http1_arm(struct worker *w, struct conn *c, uint64_t deadline);
/* Arm c's timer at its next deadline (http1_idle_deadline); false: closed. */
bool http1_arm_idle(struct worker *w, struct conn *c);
/* Answer err to the client (the proxy's own response), then close. */
void http1_error(struct worker *w, struct conn *c, enum http_error err);
/* The request head's byte at client buffer offset off, or NULL when gone. */
const char *http1_rq_at(const struct conn *c, uint32_t off);
/* http_routes.h header lookup over the parsed request head (ctx: c). */
int http1_route_header(void *ctx, const char *name, size_t name_len, const char **value,
		       size_t *value_len);
/* Run c until nothing moves (bounded); c may be closed on return. */
void http1_run(struct worker *w, struct conn *c);

/* ---- http1_retry.c ------------------------------------------------------ */

/* Give the request's replay slab (if any) back to the worker. */
void http1_slab_release(struct worker *w, struct http1_conn *h);
/* Copy request bytes [from, to), just framed, into the replay slab. */
void http1_slab_append(struct conn *c, uint32_t from, uint32_t to);
/* The body outgrows the client buffer: take a replay slab if retryable. */
void http1_slab_take(struct worker *w, struct conn *c);
/* When the try in flight times out for want of a response head; 0: not now. */
uint64_t http1_head_deadline(const struct worker *w, const struct http1_conn *h);
/* The request's deadline as of now (0: none). */
uint64_t http1_request_deadline(struct conn *c, uint32_t default_ms, uint64_t now);
/* Start the next try: pick, pooled connection or connect, failover. */
void http1_connect_next(struct worker *w, struct conn *c);
/*
 * The connect of the try in flight failed with err, its connection closed
 * (attempt_failed): fail over, or 503 / 504.
 */
void http1_connect_failed(struct worker *w, struct conn *c, int err);
/* The request's deadline passed before a response head: 504. */
void http1_deadline_passed(struct worker *w, struct conn *c);
/* The upstream connection failed with err: resend, retry or answer. */
void http1_up_failed(struct worker *w, struct conn *c, int err);
/* A final response head arrived: its outcome, and a retry on a listed status. */
bool http1_rs_outcome(struct worker *w, struct conn *c);
/* The try in flight timed out before its head (what: which timeout). */
void http1_try_timed_out(struct worker *w, struct conn *c, uint64_t now, const char *what);

#endif
