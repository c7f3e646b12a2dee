/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the proxy observes of its requests and connections: one-line hooks
 * at the points where a request or a connection changes state, which
 * record its golden metrics into the worker's series table
 * (recording/http_metrics.h) and its span into the worker's trace ring
 * (recording/trace.h), so http1.c and opaque.c stay about moving bytes. Each
 * hook runs on the connection's worker thread, takes no lock and
 * allocates nothing. The tables and rings are read by telemetry/ through
 * proxy.h's read side.
 *
 * For the resilience code: metrics_http_retry(), metrics_http_retry_refused()
 * and metrics_http_deadline() count per (service, route) of the request
 * c is serving; call them where the event happens.
 */
#ifndef SHOAL_PROXY_OBSERVE_H
#define SHOAL_PROXY_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recording/trace.h"

struct worker;
struct conn;
struct config;

/*
 * Telemetry state of the request a connection is serving; part of
 * struct http1_conn. Zeroed with it; needs no reset between requests.
 */
struct http1_tele {
	/* rq_head_start_ns of the request already recorded: one record each. */
	uint64_t recorded_start_ns;
	/* rq_head_start_ns of the request span belongs to; else span is stale. */
	uint64_t traced_start_ns;
	struct trace_span span;
};

/*
 * The request on c ended: its response head had status @status (0: no
 * response, the exchange was reset). Counts it once, with its latency
 * from the first byte of the request head. Harmless when no request is
 * in flight or it was recorded already.
 */
void metrics_http_done(struct worker *w, struct conn *c, unsigned int status);

/*
 * Tracing of the request whose head was just parsed on c (consumed bytes
 * of the client buffer): extract the incoming context, start its span,
 * and rewrite the head in place without the incoming propagation headers
 * and with the outgoing ones (docs/tracing.md). Updates *consumed, the
 * buffer's tail and the parsed head. When the rewritten head would break
 * a limit (buffer, max_head_bytes, max_headers) the head goes on
 * untouched. Does nothing while no tracer is attached. Returns 0, or a
 * parse error (HTTP1_E_*) when the rewritten head no longer parses.
 */
int tele_trace_head(struct worker *w, struct conn *c, size_t *consumed);

/*
 * HTTP/2 (h2_int.h): the span of one stream, allocated only while a
 * tracer is attached, with the outgoing propagation values its request's
 * fields refer to (h2_fields_add_own), so that every submission of the
 * request, retries included, carries them.
 */
struct h2_stream;
struct h2_tele {
	struct trace_span span;
	char out[TRACE_INJECT_MAX];
};

/*
 * Tracing of HTTP/2 request st, whose head is complete: extract the
 * incoming context from its fields, start its span, and replace its
 * propagation fields with the outgoing ones (docs/tracing.md). Does
 * nothing while no tracer is attached, or when memory is short.
 */
void tele_h2_start(struct worker *w, struct h2_stream *st);

/*
 * st ended with recorded status (0: reset), gRPC code grpc_code
 * (negative: none) and last endpoint ep (NULL: none tried): record its
 * span. Harmless without one.
 */
void tele_h2_finish(struct worker *w, struct h2_stream *st, unsigned int status, int grpc_code,
		    const struct shoal_addr *ep);

/* Resilience events of the request on c. */
void metrics_http_retry(struct worker *w, struct conn *c);
void metrics_http_retry_refused(struct worker *w, struct conn *c);
void metrics_http_deadline(struct worker *w, struct conn *c);

/*
 * c was just accepted from peer: name its caller once, for every request
 * it carries (recording/callers.h): proxy_set_caller_fn's name, else the
 * client's address. Never blocks: the callback must not.
 */
struct sockaddr;
struct shoal_addr;
void callers_conn_accept(struct worker *w, struct conn *c, const struct sockaddr *peer,
			 const struct shoal_addr *peer_addr);

/* An opaque connection (or tunnel) c is established to its endpoint. */
void metrics_tcp_open(struct worker *w, struct conn *c);
/* Add the bytes c's buffers took in since the last call. */
void metrics_tcp_flush(struct worker *w, struct conn *c);
/* c is closing: flush, and count the close when it was open. */
void metrics_tcp_close(struct worker *w, struct conn *c);

#endif
