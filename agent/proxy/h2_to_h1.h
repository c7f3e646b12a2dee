/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/2 streams to HTTP/1.1-only endpoints (docs/proxy.md, "HTTP/1.1-only
 * endpoints"): the upstream half of an h2 stream whose port says
 * upstream_protocol: http1. Each stream is one HTTP/1.1 exchange on a
 * keep-alive connection of the worker's pool (pool.c), owned while the
 * exchange runs by a connection of its own (kind h2h1_ops), so that its
 * socket's events, its connect timer and its deferred turns are its own.
 *
 * - Request: the pseudo-headers become the request line and Host, the
 *   other fields go on minus HTTP/2-only and hop-by-hop ones (cookies
 *   joined), the body as Content-Length when the client gave one, else
 *   chunked with the client's trailers in the last chunk. A client byte
 *   is given back to its stream window only once written to the socket.
 * - Response: parsed by the bounded HTTP/1 parser; interim 1xx heads go
 *   to the client as HTTP/2 HEADERS, the final one as the response, the
 *   body as DATA and chunked trailers as trailers. No more is read from
 *   the socket while one buffer of the body waits for the client's
 *   window. A malformed response (both Content-Length and
 *   Transfer-Encoding, bad chunking, a head too large) is the stream's
 *   502 (or its reset once a head went out).
 * - gRPC needs trailers and HTTP/2 framing: refused with UNAVAILABLE.
 */
#ifndef SHOAL_PROXY_H2_TO_H1_H
#define SHOAL_PROXY_H2_TO_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "proxy/conn.h"
#include "proxy/http1_parser.h"

struct h2_stream;
struct h2_fields;
struct config_service;

/* The exchange of one stream (h2_to_h1.c). */
struct h2h1;

/* The kind of an exchange's own connection (created by h2h1_start). */
extern const struct conn_ops h2h1_ops;

/* Does port svc_port of svc say its endpoints speak HTTP/1.1 only? */
bool h2h1_declared(const struct config_service *svc, uint16_t svc_port);

/*
 * Send st's request (picked: st->bt holds the ticket) to the HTTP/1.1
 * endpoint ep (of st->target, which outlives the exchange), port port_be,
 * on a pooled connection or a new one: through the tunnel for an
 * endpoint on another node (attempt_connect_ep). A failure of the
 * endpoint before a response head went to the client (a connect that
 * fails or times out, a reset, a status the retry policy lists) is given
 * to st's retry (h2_down_ops.retry: another endpoint, the body replayed),
 * else answered; other failures are answered (a gRPC request:
 * UNAVAILABLE at once). Returns 0 when the exchange started, else -1:
 * st was answered or its retry scheduled.
 */
int h2h1_start(struct worker *w, struct h2_stream *st, const struct config_endpoint *ep,
	       uint16_t port_be);

/* st leaves its exchange (answered, reset or closed): its connection is reset. */
void h2h1_unlink(struct h2_stream *st);

/* More request bytes (or their end) for st, or the client took response bytes. */
void h2h1_wake(struct worker *w, struct h2_stream *st);

/* ---- the translation itself, pure (h2_to_h1_test.c) ---- */

/*
 * The HTTP/1.1 request head for the HTTP/2 request fields nv[0..n), as it
 * goes to the endpoint, into out (cap bytes): request line from :method
 * and :path, Host from :authority (else the host field; else empty),
 * the other fields in order, minus pseudo-headers and the fields HTTP/2
 * forbids or HTTP/1.1 gives a hop-by-hop meaning (connection, keep-alive,
 * proxy-connection, transfer-encoding, upgrade, te, http2-settings);
 * cookie fields joined into one (RFC 9113 8.2.3). With body set (more
 * than the head comes) and no content-length, "transfer-encoding:
 * chunked" is added and *chunked set. Returns 0 with *len, -E2BIG when
 * cap is too small, -EINVAL for a missing :method or :path or a CR, LF
 * or NUL in a field, -EOPNOTSUPP for CONNECT (a tunnel is not a request).
 */
int h2h1_format_request(const nghttp2_nv *nv, size_t n, bool body, char *out, size_t cap,
			size_t *len, bool *chunked);

/*
 * The end of a chunked request body with trailers nv[0..n) (pseudo-
 * headers and framing fields left out): "0\r\n", the fields, "\r\n".
 * Returns 0 with *len, -E2BIG, or -EINVAL as above.
 */
int h2h1_format_trailers(const nghttp2_nv *nv, size_t n, char *out, size_t cap, size_t *len);

/*
 * The HTTP/2 fields of HTTP/1 response head h (parsed from buf), into f:
 * ":status", then its fields with lower-case names, minus Connection,
 * the fields it names, and the other hop-by-hop ones as above. Returns 0,
 * -ENOMEM or -E2BIG (more than H2_MAX_FIELDS).
 */
int h2h1_response_fields(const char *buf, const struct http1_head *h, struct h2_fields *f);

/*
 * The trailer fields of the end of a chunked body: t[0..len) is what the
 * decoder read after the last data byte (the data's CRLF, the last-chunk
 * line, the trailer lines, the final CRLF; already checked by
 * http1_chunked_feed). Appended to f, lower-cased, minus framing, routing
 * and hop-by-hop fields. Returns 0, -ENOMEM or -E2BIG.
 */
int h2h1_chunked_trailers(const char *t, size_t len, struct h2_fields *f);

#endif
