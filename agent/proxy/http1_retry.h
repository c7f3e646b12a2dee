/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The tries of one HTTP/1 request (http1_retry.c), for the exchange
 * (http1.c): HTTP's kind of the attempt loop (attempt.h), per-try
 * deadlines, retries and their backoff, replay slabs, resends after a
 * stale pooled connection. Both sit on the connection's state
 * (http1_conn.h). Each function's contract is at its definition.
 */
#ifndef SHOAL_PROXY_HTTP1_RETRY_H
#define SHOAL_PROXY_HTTP1_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/http1_conn.h"

/* Copy request bytes [from, to), just framed, into the replay slab. */
void http1_slab_append(struct conn *c, uint32_t from, uint32_t to);
/* The body outgrows the client buffer: take a replay slab if retryable. */
void http1_slab_take(struct worker *w, struct conn *c);
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
