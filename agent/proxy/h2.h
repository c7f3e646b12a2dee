/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/2 (cleartext, prior knowledge) as a kind of connection, on
 * nghttp2 (docs/proxy.md, "HTTP/2 and gRPC"). A client connection is one
 * nghttp2 server session; each of its streams is one request, routed,
 * balanced (one pick per request), timed and recorded on its own. The
 * requests go out on pooled HTTP/2 client sessions to the endpoints,
 * many streams each, up to the peer's MAX_CONCURRENT_STREAMS; each such
 * session is a connection of its own kind (h2_upstream_ops) that no
 * client owns. Flow control is end to end: no window update is sent for
 * a byte before it went on to the other side.
 */
#ifndef SHOAL_PROXY_H2_H
#define SHOAL_PROXY_H2_H

#include <stdint.h>

#include "proxy/conn.h"

/* The client side: a port declared h2c (http2, grpc) or a detected preface. */
extern const struct conn_ops h2_ops;
/* A pooled client session to one endpoint (created by the kind itself). */
extern const struct conn_ops h2_upstream_ops;

struct worker;
/* Free the blocks w's HTTP/2 sessions left for reuse (worker_caches_free). */
void h2_mem_fini(struct worker *w);
/*
 * The tunnel retired a TLS connection of w (its count is now epoch,
 * attempt_tunnel_epoch): w's sessions through the tunnel opened before
 * take no new stream, and close once their streams end.
 */
void h2_up_tunnel_retired(struct worker *w, uint64_t epoch);

#endif
