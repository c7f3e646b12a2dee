/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A new client connection, from accept to its kind: where it was going
 * (the datapath's original destination), its service and port, the
 * budgets (refused with a 503 or a reset at a cap), then the kind its
 * port's protocol names starts it (conn_ops.start).
 */
#ifndef SHOAL_PROXY_ACCEPT_H
#define SHOAL_PROXY_ACCEPT_H

#include <sys/socket.h>

struct config;
struct worker;

/*
 * Take over fd, just accepted from peer: find where it was going and
 * hand it to its kind. Connections that cannot be served are closed
 * here (and counted); fd is always consumed.
 */
void conn_accept(struct worker *w, int fd, const struct sockaddr_storage *peer);

/*
 * Size w's caches of per-kind state by the kinds that keep one (HTTP/1's
 * state and its header slots, for cfg's limits). At worker_init.
 */
void accept_size_caches(struct worker *w, const struct config *cfg);

#endif
