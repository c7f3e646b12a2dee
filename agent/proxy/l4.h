/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One proxied TCP connection carried as opaque bytes: pick an endpoint,
 * connect with failover, then copy both directions with half-close and
 * reset propagation. Everything runs on the owning worker's thread.
 */
#ifndef SHOAL_PROXY_L4_H
#define SHOAL_PROXY_L4_H

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

/*
 * Copy rounds (up to one buffer each way) a connection gets per turn
 * before yielding to the others; a bulk transfer then cannot starve its
 * worker's other connections.
 */
#define L4_PUMP_ROUNDS 16

/* Opaque TCP as a kind of connection (conn.h): its operations. */
extern const struct conn_ops l4_ops;

/* Reset both sides of c and release it (also detection's abort). */
void l4_abort(struct worker *w, struct conn *c);

/*
 * Carry c as opaque TCP from now on: pick an endpoint, connect, copy.
 * c->to_upstream may hold client bytes already (read while detecting);
 * they go first. A service without endpoints resets the client.
 */
void l4_opaque_start(struct worker *w, struct conn *c);

/*
 * Turn c into an opaque tunnel: both sockets are set (c->upstream watched
 * under its own pollable) and the buffers hold what is still to be
 * written each way.
 */
void l4_tunnel(struct worker *w, struct conn *c);

#endif
