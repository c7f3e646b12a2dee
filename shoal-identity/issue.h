/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The issuer: its key and certificate (from the mounted Secret), the
 * checks on a certificate request, and the leaves it signs
 * (docs/identity.md, "Issuance"). No I/O beyond issuer_load's files, no
 * locking: an issuer is immutable once loaded, and OpenSSL's signing with
 * a shared key is safe from several threads.
 */
#ifndef SHOAL_IDENTITY_ISSUE_H
#define SHOAL_IDENTITY_ISSUE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "identity/spiffe.h"

/* A CSR in PEM: a P-256 key and one SAN make well under 1 KiB. */
#define ISSUE_CSR_MAX 8192
/* Leaves start this far in the past: a peer whose clock is a little behind still accepts them. */
#define ISSUE_BACKDATE_S 60
/* The lifetime bounds an operator may set: an hour (renewal churn) to 30 days (exposure of a key).
 */
#define ISSUE_LIFETIME_MIN_S 3600L
#define ISSUE_LIFETIME_MAX_S (30L * 86400)
#define ISSUE_LIFETIME_DEFAULT_S 86400L
/* The shortest a caller may ask for (the agent's own floor, for tests); it gets at most the
 * configured. */
#define ISSUE_REQ_LIFETIME_MIN_S 10L

struct issuer {
	X509 *cert;		/* signs the leaves */
	EVP_PKEY *key;		/* its key */
	STACK_OF(X509) * chain; /* what a leaf's holder sends after it: cert, then its
				   intermediates; the root not included */
	char *chain_pem;	/* the same, in PEM, for the response's "chain" */
	char trust_domain[SPIFFE_TD_MAX + 1];
	long lifetime_s; /* of the leaves */
};

/*
 * Load the issuer from cert_file (PEM: the issuer's certificate, then
 * its intermediates; a root among them is left out of the chain) and
 * key_file (its PEM private key, which must match). The certificate must
 * be a CA allowed to sign certificates. 0, or -errno with why.
 */
int issuer_load(struct issuer *is, const char *cert_file, const char *key_file,
		const char *trust_domain, long lifetime_s, char *why, size_t why_len);
void issuer_free(struct issuer *is);

/*
 * Check a PEM certificate request: parses, is self-signed by its key, the
 * key is EC P-256, and it asks for exactly one SAN, a URI that is a
 * SPIFFE ID of trust_domain. 0, *out (X509_REQ_free) and *id; or -EINVAL
 * (-EPERM: another trust domain) with why.
 */
int issue_csr_check(const char *pem, size_t len, const char *trust_domain, X509_REQ **out,
		    struct spiffe_id *id, char *why, size_t why_len);

/*
 * Sign a leaf for req's key naming id: lifetime_s (at most
 * is->lifetime_s; cut at the issuer's own expiry), URI SAN id only (critical; empty subject),
 * keyUsage digitalSignature, EKU serverAuth and clientAuth, CA:FALSE, a
 * random serial. 0 and *out, or -errno with why.
 */
int issue_leaf(const struct issuer *is, X509_REQ *req, const struct spiffe_id *id, long lifetime_s,
	       X509 **out, char *why, size_t why_len);

/*
 * A key and a certificate for shoal-identity's own TLS server: DNS SANs
 * from dns_names (comma-separated), signed by the issuer, is->lifetime_s.
 * 0 and *cert, *key; or -errno with why.
 */
int issue_server_cert(const struct issuer *is, const char *dns_names, X509 **cert, EVP_PKEY **key,
		      char *why, size_t why_len);

/* x in PEM, malloc'd and NUL-terminated, or NULL. */
char *issue_pem(X509 *x);

#endif
