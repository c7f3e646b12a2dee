/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The agent's identity controller (docs/identity.md, "The agent side"):
 * one thread that keeps the credential store (store.h) filled from its
 * source and the trust anchors current.
 *
 *   source issued: for each service account the accounts callback names
 *     (the node's meshed pods, from enrollment), a P-256 key made in
 *     memory and a certificate from shoal-identity, renewed at
 *     renew_fraction of its life with jitter, retried with back-off, and
 *     kept until it expires when renewals fail. An account no longer
 *     named is dropped after drop_grace_ms. The anchors come from
 *     anchors_file (the shoal-trust-anchors ConfigMap, mounted), re-read
 *     every poll_ms.
 *   source files: the directory dir (store.h's file source), re-read when
 *     a file in it changes.
 */
#ifndef SHOAL_IDENTITY_IDENTITY_H
#define SHOAL_IDENTITY_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "identity/store.h"

/* A token file larger than this is refused: projected tokens are ~1 KiB. */
#define ID_MAX_TOKEN 8192
/* The path shoal-identity serves (the contract in docs/identity.md). */
#define ID_ISSUE_PATH "/v1/certificates"
/*
 * How often the accounts callback is asked again while nothing else is
 * due: a new pod's certificate is asked for within this of enrollment
 * seeing it.
 */
#define ID_ACCOUNTS_REFRESH_MS 250
#define ID_MAX_ERROR 256 /* last error kept per account, for shoalctl identity */
/*
 * OpenSSL's secure heap (mlocked, left out of core dumps, cleared on
 * free), where it keeps private scalars: a P-256 key takes ~36 bytes of
 * it, so 256 KiB holds ~7000 keys, the node's ID_MAX_CREDS twice over
 * (renewals in flight) with room for the tunnel's ephemeral handshake
 * keys. A full heap fails key generation, it does not fall back.
 */
#define ID_SECURE_HEAP_BYTES (256 * 1024)

/* Outcomes of a request to shoal-identity: X(name, help). */
#define ID_OUTCOMES(X)                                                                             \
	X(ok, "a certificate was issued and is held")                                              \
	X(refused, "the issuer answered 4xx (other than 401 and 403): the request was refused")    \
	X(unauthorized, "the issuer answered 401 or 403: the agent's token was not accepted")      \
	X(server_error, "the issuer answered 5xx or another status")                               \
	X(transport, "no answer: connect, TLS verification against the anchors, timeout")          \
	X(bad_answer, "a 200 whose body or certificate was not acceptable")                        \
	X(local, "not sent: no trust anchors yet, no token, key or CSR failure")

enum id_outcome {
#define ID_OUTCOME_ENUM(name, help) ID_OUTCOME_##name,
	ID_OUTCOMES(ID_OUTCOME_ENUM)
#undef ID_OUTCOME_ENUM
	    ID_OUTCOME__COUNT
};

const char *id_outcome_name(enum id_outcome o);

/* X(field, kind, help): exported as shoal_identity_<field>[_total]. */
#define IDENTITY_STATS(X)                                                                          \
	X(certificates, gauge, "Service accounts with a certificate held (not expired).")          \
	X(soonest_expiry_seconds, gauge,                                                           \
	  "Seconds until the soonest held certificate expires (0 when none is held).")             \
	X(renewal_failures, counter,                                                               \
	  "Failed requests for an account that holds a certificate; it is kept until it "          \
	  "expires.")                                                                              \
	X(expired, counter, "Certificates dropped because they expired before a renewal.")         \
	X(dropped, counter, "Certificates dropped because the account's last pod left the node.")  \
	X(anchors, gauge, "Trust anchors (roots) trusted now: 2 during a rotation.")               \
	X(anchors_updates, counter, "Anchor bundles (or file-source directories) applied.")        \
	X(anchors_rejects, counter,                                                                \
	  "Anchor bundles (or file-source directories) refused; the last good one stays.")

struct identity_stats {
#define IDENTITY_STATS_FIELD(name, kind, help) uint64_t name;
	IDENTITY_STATS(IDENTITY_STATS_FIELD)
#undef IDENTITY_STATS_FIELD
	uint64_t requests[ID_OUTCOME__COUNT]; /* shoal_identity_requests_total{outcome} */
};

/* One service account the node wants a certificate for. */
struct id_account {
	char ns[ID_MAX_NS];
	char sa[ID_MAX_SA];
};

/*
 * The accounts wanted now, into out (at most max, duplicates allowed).
 * Returns how many, or -errno (then nothing changes: no account is
 * dropped because the list could not be had). Called from the identity
 * thread.
 */
typedef int (*id_accounts_fn)(void *arg, struct id_account *out, int max);

/* What shoalctl identity prints, per account. */
struct id_status {
	char ns[ID_MAX_NS];
	char sa[ID_MAX_SA];
	char spiffe_id[ID_MAX_SPIFFE_ID];
	bool wanted;		       /* a pod names it now (files: always) */
	int64_t not_after;	       /* the held certificate's expiry, Unix s; 0: none held */
	int64_t next_ms;	       /* next request, ms since the epoch; 0: none planned */
	uint32_t failures;	       /* consecutive failed requests */
	int64_t last_ok;	       /* last issuance, Unix s; 0: never */
	char last_error[ID_MAX_ERROR]; /* "" after a success */
};

struct identity;

/*
 * Start the controller for cfg (copied; cfg->enabled must be set).
 * accounts may be NULL for source files. Returns 0 and *out, or -errno
 * after logging (the trust domain, libcurl for source issued).
 */
int identity_start(const struct config_identity *cfg, id_accounts_fn accounts, void *arg,
		   struct identity **out);
/* Stop the thread and free everything; NULL is fine. Credentials readers hold stay valid. */
void identity_stop(struct identity *id);
/* The store the workers read; valid until identity_stop. */
struct id_store *identity_store(struct identity *id);
/* Any thread. */
void identity_get_stats(struct identity *id, struct identity_stats *out);
/*
 * A copy of every account's state, in (ns, sa) order (free it). Returns
 * the count, or -ENOMEM. Any thread.
 */
int identity_status(struct identity *id, struct id_status **out);
/* The anchors' last error ("" when the current bundle is good); into buf. */
void identity_anchors_error(struct identity *id, char *buf, size_t len);
/* Source, for the admin page: "issued" or "files". */
const char *identity_source_name(const struct identity *id);

#endif
