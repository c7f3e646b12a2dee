/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The destination's callers (docs/mtls.md, "Metrics"): the table behind
 * tunnel_peer_rows and the shoal_tunnel_inbound_* families. A row per
 * pair of identities (kept as tunnel_ident's interned copies, which live
 * as long as the tunnel); the first TUNNEL_PEERS_MAX pairs get rows of
 * their own, every later one the "other" row.
 *
 * One writer (the tunnel's thread, which holds every inbound connection:
 * it adds rows and counts), any number of readers: a row's key is set
 * before n publishes it (release), and counters are relaxed atomics.
 */
#ifndef SHOAL_TUNNEL_TUNNEL_PEERS_H
#define SHOAL_TUNNEL_TUNNEL_PEERS_H

#include <stdatomic.h>
#include <stddef.h>

#include "tunnel/tunnel.h"

struct tpeer {
	const char *src, *dst; /* interned "<ns>/<sa>"; NULL in the "other" row */
#define TPEER_COUNTER(field, name, help) _Atomic unsigned long long field;
	TUNNEL_PEER_STATS(TPEER_COUNTER)
#undef TPEER_COUNTER
};

struct tunnel_peers {
	struct tpeer rows[TUNNEL_PEERS_MAX + 1]; /* [TUNNEL_PEERS_MAX]: "other" */
	_Atomic size_t n;			  /* rows[0 .. n) have their key */
};

/* Count v in field of row p; a NULL p (a client connection has no row) counts nothing. */
#define TPEER_ADD(p, field, v)                                                                     \
	do {                                                                                       \
		if (p)                                                                             \
			atomic_fetch_add_explicit(&(p)->field, (v), memory_order_relaxed);         \
	} while (0)

/* A stable copy of identity id (tunnel_ident), or NULL when it cannot be kept. */
typedef const char *(*tunnel_peers_intern_fn)(void *arg, const char *id);

/*
 * The row of (src, dst) ("<ns>/<sa>" each), added when new with copies
 * intern makes: the writer only. The "other" row when either is NULL,
 * cannot be interned, or the table is full. Never NULL.
 */
struct tpeer *tunnel_peers_row(struct tunnel_peers *p, const char *src, const char *dst,
			       tunnel_peers_intern_fn intern, void *arg);

/*
 * Copy the rows, as SPIFFE IDs of trust domain td, into rows (room for
 * cap), the "other" row last and only once it has counted. Any thread.
 */
size_t tunnel_peers_copy(struct tunnel_peers *p, const char *td, struct tunnel_peer_row *rows,
			 size_t cap);

#endif
