// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The destination's callers table: rows by identity pair, bounded, as SPIFFE IDs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "tunnel/tunnel_peers.h"

static struct tunnel_peers *table(void)
{
	struct tunnel_peers *p = calloc(1, sizeof(*p));

	cr_assert(p);
	return p;
}

static struct tunnel_peer_row rows[TUNNEL_PEERS_MAX + 1];
static int interned;

/* As tunnel_ident, but keeping the caller's (static) string, and counting the calls. */
static const char *keep(void *arg, const char *id)
{
	(void)arg;
	interned++;
	return id;
}

static const char *refuse(void *arg, const char *id)
{
	(void)arg;
	(void)id;
	return NULL;
}

Test(tunnel_peers, a_pair_has_one_row_counted_as_spiffe_ids)
{
	struct tunnel_peers *p = table();
	static const char client[] = "default/client", web[] = "default/web", api[] = "prod/api";
	char again[] = "default/client"; /* equal, not the same pointer */
	struct tpeer *a, *b;
	size_t n;

	interned = 0;
	a = tunnel_peers_row(p, client, web, keep, NULL);
	b = tunnel_peers_row(p, client, api, keep, NULL);
	cr_expect_eq(interned, 4, "a new row interns its two identities");
	cr_expect_eq(tunnel_peers_row(p, again, web, keep, NULL), a, "the same pair, the same row");
	cr_expect_eq(interned, 4, "a known pair interns nothing");
	cr_expect_neq(a, b, "another local identity, another row");
	TPEER_ADD(a, streams, 2);
	TPEER_ADD(a, received_bytes, 100);
	TPEER_ADD(b, refused, 1);
	TPEER_ADD((struct tpeer *)NULL, streams, 1); /* a client connection: nothing */
	n = tunnel_peers_copy(p, "cluster.local", rows, TUNNEL_PEERS_MAX + 1);
	cr_assert_eq(n, 2, "two pairs and no 'other' row: %zu", n);
	cr_expect_str_eq(rows[0].source, "spiffe://cluster.local/ns/default/sa/client");
	cr_expect_str_eq(rows[0].destination, "spiffe://cluster.local/ns/default/sa/web");
	cr_expect_eq(rows[0].streams, 2);
	cr_expect_eq(rows[0].received_bytes, 100);
	cr_expect_eq(rows[0].sent_bytes, 0);
	cr_expect_str_eq(rows[1].destination, "spiffe://cluster.local/ns/prod/sa/api");
	cr_expect_eq(rows[1].refused, 1);
	free(p);
}

Test(tunnel_peers, past_the_cap_pairs_count_as_other)
{
	struct tunnel_peers *p = table();
	static char ids[TUNNEL_PEERS_MAX + 2][32];
	static const char web[] = "default/web";
	struct tpeer *last = NULL;
	size_t n;

	for (int i = 0; i < TUNNEL_PEERS_MAX + 2; i++) {
		snprintf(ids[i], sizeof(ids[i]), "ns%d/sa", i);
		last = tunnel_peers_row(p, ids[i], web, keep, NULL);
		TPEER_ADD(last, streams, 1);
	}
	interned = 0;
	cr_expect_eq(tunnel_peers_row(p, ids[TUNNEL_PEERS_MAX], web, keep, NULL), last,
		     "every pair past the cap shares the 'other' row");
	cr_expect_eq(interned, 0, "a full table interns nothing");
	cr_expect_eq(tunnel_peers_row(p, NULL, web, keep, NULL), last, "no identity: 'other'");
	n = tunnel_peers_copy(p, "td", rows, TUNNEL_PEERS_MAX + 1);
	cr_assert_eq(n, TUNNEL_PEERS_MAX + 1);
	cr_expect_str_eq(rows[TUNNEL_PEERS_MAX].source, TUNNEL_PEERS_OTHER);
	cr_expect_str_eq(rows[TUNNEL_PEERS_MAX].destination, TUNNEL_PEERS_OTHER);
	cr_expect_eq(rows[TUNNEL_PEERS_MAX].streams, 2, "the two pairs past the cap");
	cr_expect_str_eq(rows[TUNNEL_PEERS_MAX - 1].source, "spiffe://td/ns/ns255/sa/sa");
	cr_expect_eq(tunnel_peers_copy(p, "td", rows, 3), 3, "a smaller room is not overrun");
	free(p);
}

Test(tunnel_peers, an_identity_that_cannot_be_kept_counts_as_other)
{
	struct tunnel_peers *p = table();
	struct tpeer *r = tunnel_peers_row(p, "default/client", "default/web", refuse, NULL);

	cr_expect_eq(r, &p->rows[TUNNEL_PEERS_MAX], "the intern cap reached: 'other'");
	cr_expect_eq(atomic_load(&p->n), 0, "and no row was added");
	free(p);
}
