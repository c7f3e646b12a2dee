/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Test-time certificates for the identity unit tests: P-256 keys, roots,
 * intermediates and leaves made with OpenSSL at run time, so that no test
 * depends on a fixture that expires. Header-only (static functions):
 * included by tests, never by the agent.
 */
#ifndef SHOAL_IDENTITY_TESTCA_H
#define SHOAL_IDENTITY_TESTCA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline EVP_PKEY *tca_key(void)
{
	return EVP_EC_gen("P-256");
}

static inline void tca_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (e) {
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
}

/*
 * A certificate for key, valid from now + from_s to now + to_s, signed by
 * issuer/issuer_key (self-signed when issuer is NULL). ca: a CA
 * certificate; uri: the one URI SAN of a leaf (NULL: none).
 */
static inline X509 *tca_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
			     long from_s, long to_s, int ca, const char *uri)
{
	static long serial = 1;
	X509 *x = X509_new();
	char san[600];

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	if (ca) {
		tca_ext(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
		tca_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		tca_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
		tca_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
	}
	if (uri) {
		snprintf(san, sizeof(san), "URI:%s", uri);
		tca_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
	}
	X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
	return x;
}

/* PEM text of x or of a private key, malloc'd. */
static inline char *tca_pem(X509 *x, EVP_PKEY *key)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *out;
	long n;

	if (x)
		PEM_write_bio_X509(b, x);
	else
		PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	out = malloc(n + 1);
	memcpy(out, p, n);
	out[n] = '\0';
	BIO_free(b);
	return out;
}

/* Write a and b (either may be NULL) to path; 0 or -1. */
static inline int tca_write(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	if (a)
		fputs(a, f);
	if (b)
		fputs(b, f);
	return fclose(f) ? -1 : 0;
}

#endif
