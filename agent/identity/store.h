/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The node's workload identities (docs/identity.md, "The agent side"):
 * one key, leaf certificate and chain per service account (ns, sa) with
 * a meshed pod on this node, and the trust anchors that peers' chains
 * are checked against.
 *
 * Readers are the proxy and tunnel workers; writers are the sources (the
 * issued source, which fetches from shoal-identity, or the file source
 * below). A writer builds new credentials and anchors away from the
 * store and publishes them by a pointer swap; a reader takes a
 * reference under a lock held only for a lookup and an increment, never
 * across issuance, I/O or a handshake. What a reader holds stays valid,
 * unchanged, until it drops its reference, whatever the writers do.
 */
#ifndef SHOAL_IDENTITY_STORE_H
#define SHOAL_IDENTITY_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "identity/spiffe.h"

/* Kubernetes' limits: a namespace is a DNS label (63), a service account
 * name a DNS subdomain (253); NUL included. */
#define ID_MAX_NS 64
#define ID_MAX_SA 254
#define ID_MAX_TRUST_DOMAIN 254 /* a DNS name */
/* "spiffe://" td "/ns/" ns "/sa/" sa, NUL included: spiffe.h's bound */
#define ID_MAX_SPIFFE_ID SPIFFE_ID_STR_MAX
/*
 * Service accounts one node holds certificates for: at most one per pod,
 * and a node runs at most ENROLL_MAX_PODS (512) pods.
 */
#define ID_MAX_CREDS 512
/*
 * Roots trusted at once: the current one, and during a rotation the next
 * (or the previous) one. A bundle with more is refused: a third root is
 * a rotation that was never finished, and every extra root widens what a
 * peer may present.
 */
#define ID_MAX_ANCHORS 2
/* An anchors bundle or a PEM file larger than this is refused (a root
 * certificate is ~1 KiB). */
#define ID_MAX_PEM_BYTES (256 * 1024)
/* Intermediates between a leaf and its root. */
#define ID_MAX_CHAIN 4

/*
 * One service account's credentials: immutable once published. Hold it
 * with id_store_get, release with id_cred_put; the fields stay valid in
 * between. Pass key, leaf and chain to OpenSSL (SSL_use_PrivateKey,
 * SSL_use_certificate, SSL_add1_chain_cert...), which takes its own
 * references: a TLS session may outlive the id_cred.
 */
struct id_cred {
	atomic_uint refs;
	EVP_PKEY *key;		/* P-256 private key */
	X509 *leaf;		/* its certificate; one URI SAN, spiffe_id */
	STACK_OF(X509) * chain; /* intermediates up to (not including) a root; may be empty */
	char ns[ID_MAX_NS];
	char sa[ID_MAX_SA];
	char spiffe_id[ID_MAX_SPIFFE_ID]; /* spiffe://<td>/ns/<ns>/sa/<sa> */
	time_t not_before, not_after;	  /* the leaf's validity, Unix seconds */
};

struct id_store;

/*
 * A store for trust domain td (a DNS name, e.g. "cluster.local"), with no
 * credentials and no anchors. Returns 0, -EINVAL (td empty or too long)
 * or -ENOMEM.
 */
int id_store_new(const char *td, struct id_store **out);
/* Frees the store; credentials readers still hold stay valid until put. */
void id_store_free(struct id_store *s);
const char *id_store_trust_domain(const struct id_store *s);

/*
 * A reference to (ns, sa)'s current credentials in *out, to release with
 * id_cred_put. Returns 0, or -ENOENT when the store holds none for it or
 * the one it holds has expired (now >= not_after). Any thread; never
 * waits on issuance.
 */
int id_store_get(struct id_store *s, const char *ns, const char *sa, struct id_cred **out);
/* Drop a reference (NULL is fine); the last one frees the credentials. */
void id_cred_put(struct id_cred *c);
/* Take one more reference; returns c. */
struct id_cred *id_cred_get(struct id_cred *c);

/*
 * The trust anchors, a reference the caller releases with
 * X509_STORE_free; NULL while there are none. One root, or two during a
 * rotation. The X509_STORE is never changed once published (new anchors
 * are a new X509_STORE): use it read-only, e.g. in X509_STORE_CTX_init
 * or SSL_CTX_set1_verify_cert_store. Any thread.
 */
X509_STORE *id_store_anchors(struct id_store *s);
/* Roots in the current anchors (0, 1 or 2). */
int id_store_n_anchors(struct id_store *s);

/*
 * The SPIFFE ID of (td, ns, sa) into buf, by spiffe.h's rules (each part
 * checked as spiffe_id_parse checks it). 0, or -EINVAL/-ENAMETOOLONG for
 * a part that would not parse back, -ENOSPC when buf is too small.
 */
int id_spiffe_string(const char *td, const char *ns, const char *sa, char *buf, size_t len);

/*
 * Build credentials from a key, a leaf and intermediates (chain may be
 * NULL), taking a reference to each (the caller keeps its own). Checks
 * that the key is P-256 and matches the leaf, that the leaf has exactly
 * one URI SAN and that it is spiffe://<td>/ns/<ns>/sa/<sa>. Returns 0 and
 * *out with one reference, or -EINVAL with the reason in why, or -ENOMEM.
 */
int id_cred_new(const struct id_store *s, const char *ns, const char *sa, EVP_PKEY *key, X509 *leaf,
		STACK_OF(X509) * chain, struct id_cred **out, char *why, size_t why_len);

/*
 * Writers. id_store_set publishes c as (c->ns, c->sa)'s credentials,
 * taking over the caller's reference; readers holding the previous ones
 * keep them. Returns 0, -ENOSPC (ID_MAX_CREDS service accounts already)
 * or -ENOMEM (c's reference is then dropped). id_store_drop removes
 * (ns, sa); 0 or -ENOENT. Writers are serialised among themselves.
 */
int id_store_set(struct id_store *s, struct id_cred *c);
int id_store_drop(struct id_store *s, const char *ns, const char *sa);
/* Remove every credential that has expired at now; returns how many. */
int id_store_expire(struct id_store *s, time_t now);

/*
 * Parse a PEM bundle of 1 to ID_MAX_ANCHORS root certificates into a new
 * X509_STORE (one reference, *n_roots set). Every block must be a
 * self-signed CA certificate valid at now; anything else (no
 * certificate, a private key, a leaf, an expired root, more than
 * ID_MAX_ANCHORS, junk between blocks) refuses the whole bundle:
 * -EINVAL with the reason (naming the certificate by position and
 * subject) in why.
 */
int id_anchors_parse(const char *pem, size_t len, time_t now, X509_STORE **out, int *n_roots,
		     char *why, size_t why_len);
/*
 * Publish anchors (the store takes over the caller's reference), replacing
 * the previous ones; readers holding those keep them.
 */
void id_store_set_anchors(struct id_store *s, X509_STORE *anchors, int n_roots);

/*
 * A copy of what the store holds, for metrics and `shoalctl identity`:
 * calls fn once per credential, in (ns, sa) order, with a reference that
 * is valid during the call only. Returns how many.
 */
int id_store_each(struct id_store *s, void (*fn)(const struct id_cred *c, void *arg), void *arg);

/*
 * The file source, for tests and static set-ups: the directory dir holds
 * <ns>_<sa>.key (PEM private key) and <ns>_<sa>.crt (PEM leaf, then its
 * intermediates) per service account, and anchors.pem (the roots). The
 * underscore splits the name: neither a namespace nor a service account
 * name may contain one. Loads all of it and then replaces the store's
 * whole contents at once; on any error (a .key without its .crt, a
 * mismatched pair, a bad anchors.pem...) changes nothing and returns
 * -errno with the file and the reason in why. Returns 0 and, if n_creds
 * is non-NULL, how many credentials were loaded.
 */
int id_store_load_dir(struct id_store *s, const char *dir, int *n_creds, char *why, size_t why_len);

#endif
