/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the proxy calls to record its golden metrics (http_metrics.h):
 * one-line hooks at the points where a request or a connection changes
 * state, so http1.c and l4.c stay about moving bytes. Each hook runs on
 * the connection's worker thread, takes no lock and allocates nothing.
 *
 * For the resilience code: metrics_http_retry(), metrics_http_retry_refused()
 * and metrics_http_deadline() count per (service, route) of the request
 * c is serving; call them where the event happens.
 */
#ifndef SHOAL_TELEMETRY_PROXY_HOOKS_H
#define SHOAL_TELEMETRY_PROXY_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

struct worker;
struct l4_conn;

/*
 * Telemetry state of the request a connection is serving; part of
 * struct http1_conn. Zeroed with it; needs no reset between requests.
 */
struct http1_tele {
	/* rq_head_start_ns of the request already recorded: one record each. */
	uint64_t recorded_start_ns;
};

/*
 * The request on c ended: its response head had status @status (0: no
 * response, the exchange was reset). Counts it once, with its latency
 * from the first byte of the request head. Harmless when no request is
 * in flight or it was recorded already.
 */
void metrics_http_done(struct worker *w, struct l4_conn *c, unsigned int status);

/* The proxy answered the request on c itself with @status (http_error.h);
 * @deadline: because the request's deadline expired. */
void metrics_http_error(struct worker *w, struct l4_conn *c, unsigned int status, bool deadline);

/* Resilience events of the request on c. */
void metrics_http_retry(struct worker *w, struct l4_conn *c);
void metrics_http_retry_refused(struct worker *w, struct l4_conn *c);
void metrics_http_deadline(struct worker *w, struct l4_conn *c);

/* An opaque connection (or tunnel) c is established to its endpoint. */
void metrics_tcp_open(struct worker *w, struct l4_conn *c);
/* Add the bytes c's buffers took in since the last call. */
void metrics_tcp_flush(struct worker *w, struct l4_conn *c);
/* c is closing: flush, and count the close when it was open. */
void metrics_tcp_close(struct worker *w, struct l4_conn *c);

#endif
