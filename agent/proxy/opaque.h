/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One proxied TCP connection carried as opaque bytes: pick an endpoint,
 * connect with failover, then copy both directions with half-close and
 * reset propagation. Everything runs on the owning worker's thread.
 */
#ifndef SHOAL_PROXY_OPAQUE_H
#define SHOAL_PROXY_OPAQUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config/config.h"
#include "proxy/endpoint_pick.h"
#include "proxy/timer.h"
#include "proxy/conn.h"
#include "proxy/conn_io.h"
#include "proxy/worker.h"

/* Opaque TCP as a kind of connection (conn.h): its operations. */
extern const struct conn_ops opaque_ops;

/* Reset both sides of c and release it (also detection's abort). */
void opaque_abort(struct worker *w, struct conn *c);

/*
 * Carry c as opaque TCP from now on: pick an endpoint, connect, copy.
 * c->to_upstream may hold client bytes already (read while detecting);
 * they go first. A service without endpoints resets the client.
 */
void opaque_start(struct worker *w, struct conn *c);

/*
 * Turn c into an opaque tunnel: both sockets are set (c->upstream watched
 * under its own pollable) and the buffers hold what is still to be
 * written each way.
 */
void opaque_tunnel(struct worker *w, struct conn *c);

#endif
