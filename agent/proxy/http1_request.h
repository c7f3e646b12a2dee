/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The request side of one HTTP/1 exchange (http1_request.c), for the
 * exchange's steps (http1.c): framing the request head and body in the
 * client buffer, routing it to a service and endpoint port, its head's
 * rewrite, and dispatching it to its tries (http1_retry.h). On the
 * connection's state (http1_conn.h); contracts at the definitions.
 */
#ifndef SHOAL_PROXY_HTTP1_REQUEST_H
#define SHOAL_PROXY_HTTP1_REQUEST_H

#include "proxy/http1_conn.h"

/* Frame body bytes of the request in [rq_fwd, tail). 0 or a parse error. */
int http1_rq_frame(struct conn *c);
/* Parse the request head in the client buffer; dispatch it once complete. */
void http1_rq_head(struct worker *w, struct conn *c);

#endif
