/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Certificates made at test time with the OpenSSL 3 API, for the unit
 * tests of identity/ and of what builds on it (tunnel, store). Not part
 * of the agent: linked into test programs only. Every function aborts
 * the test (cr_assert) on an OpenSSL failure.
 */
#ifndef SHOAL_IDENTITY_TEST_CERTS_H
#define SHOAL_IDENTITY_TEST_CERTS_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

struct tc_opts {
	const char *cn;	      /* subject CN */
	X509 *issuer;	      /* NULL: self-signed with key */
	EVP_PKEY *issuer_key; /* with issuer */
	bool ca;	      /* basicConstraints CA:TRUE and keyCertSign */
	long not_before;      /* seconds from now (negative: in the past) */
	long not_after;	      /* seconds from now; 0: one day */
	const char *uris[4];  /* URI SANs, NULL-terminated */
	const char *dns;      /* a DNS SAN too, or NULL */
	bool no_key_usage;    /* leave keyUsage out */
};

/* A new P-256 key. */
EVP_PKEY *tc_key(void);
/* A new certificate for key, as opts says. */
X509 *tc_cert(EVP_PKEY *key, const struct tc_opts *opts);
/* The PEM of x, malloc'd, NUL-terminated. */
char *tc_pem(X509 *x);

#endif
