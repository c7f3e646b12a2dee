// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The destination's callers by proven identity: tunnel_peers.h. */
#include "tunnel/tunnel_peers.h"

#include <stdio.h>
#include <string.h>

struct tpeer *tunnel_peers_row(struct tunnel_peers *p, const char *src, const char *dst,
			       tunnel_peers_intern_fn intern, void *arg)
{
	size_t n = atomic_load_explicit(&p->n, memory_order_relaxed);

	if (!src || !dst)
		return &p->rows[TUNNEL_PEERS_MAX];
	/* Linear: once per inbound connection, never per stream or byte. */
	for (size_t i = 0; i < n; i++)
		if (!strcmp(p->rows[i].src, src) && !strcmp(p->rows[i].dst, dst))
			return &p->rows[i];
	if (n == TUNNEL_PEERS_MAX)
		return &p->rows[TUNNEL_PEERS_MAX];
	/* Interned only for a new row: a full table takes nothing more from the intern cap. */
	src = intern(arg, src);
	dst = intern(arg, dst);
	if (!src || !dst)
		return &p->rows[TUNNEL_PEERS_MAX];
	p->rows[n].src = src;
	p->rows[n].dst = dst;
	atomic_store_explicit(&p->n, n + 1, memory_order_release);
	return &p->rows[n];
}

/* "spiffe://<td>/ns/<ns>/sa/<sa>" of id "<ns>/<sa>"; TUNNEL_PEERS_OTHER for NULL. */
static void spiffe_of(const char *td, const char *id, char out[TUNNEL_SPIFFE_MAX])
{
	const char *slash = id ? strchr(id, '/') : NULL;

	if (!slash)
		snprintf(out, TUNNEL_SPIFFE_MAX, "%s", TUNNEL_PEERS_OTHER);
	else
		snprintf(out, TUNNEL_SPIFFE_MAX, "spiffe://%s/ns/%.*s/sa/%s", td,
			 (int)(slash - id), id, slash + 1);
}

static void row_copy(const char *td, struct tpeer *from, struct tunnel_peer_row *to)
{
	spiffe_of(td, from->src, to->source);
	spiffe_of(td, from->dst, to->destination);
#define TPEER_LOAD(field, name, help)                                                              \
	to->field = atomic_load_explicit(&from->field, memory_order_relaxed);
	TUNNEL_PEER_STATS(TPEER_LOAD)
#undef TPEER_LOAD
}

size_t tunnel_peers_copy(struct tunnel_peers *p, const char *td, struct tunnel_peer_row *rows,
			 size_t cap)
{
	size_t n = atomic_load_explicit(&p->n, memory_order_acquire), out = 0;
	struct tunnel_peer_row *other;

	for (size_t i = 0; i < n && out < cap; i++)
		row_copy(td, &p->rows[i], &rows[out++]);
	if (out == cap)
		return out;
	other = &rows[out];
	row_copy(td, &p->rows[TUNNEL_PEERS_MAX], other);
	return other->streams || other->refused || other->received_bytes || other->sent_bytes
		   ? out + 1
		   : out;
}
