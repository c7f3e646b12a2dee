/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The response side of one HTTP/1 exchange (http1_response.c), for the
 * exchange's steps (http1.c): framing the response head and body from
 * the upstream, its head's rewrite, the request and age limits and the
 * close a draining proxy announces, and the turn into an opaque tunnel
 * after a 101 (or a CONNECT 2xx). On the connection's state
 * (http1_conn.h); contracts at the definitions.
 */
#ifndef SHOAL_PROXY_HTTP1_RESPONSE_H
#define SHOAL_PROXY_HTTP1_RESPONSE_H

#include <stdbool.h>

#include "proxy/http1_conn.h"

/* Frame response body bytes in [rs_fwd, tail). 0 or a parse error. */
int http1_rs_frame(struct conn *c);
/*
 * Parse response heads; 1xx heads are cleared for the client one by one.
 * Returns false when c closed or turned into a tunnel.
 */
bool http1_rs_head(struct worker *w, struct conn *c);

#endif
