// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * X.509-SVID checks (verify.h). The chain is OpenSSL's X509_verify_cert,
 * with partial chains refused whatever the store says, so that only a
 * path to a root of the anchors counts; what OpenSSL does not know about
 * (the SPIFFE rules on the leaf: one URI SAN, an end entity) is checked
 * here, and only after the chain, so nothing of an unverified certificate
 * is believed.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "identity/verify.h"

/* A chain's worth of certificates in one PEM bundle: leaf, intermediates, slack. */
#define ID_CHAIN_MAX 16

static int say(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int say(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return err;
}

int id_san_spiffe_id(const GENERAL_NAMES *names, const char *trust_domain, struct spiffe_id *out,
		     char *why, size_t why_len)
{
	const ASN1_IA5STRING *uri = NULL;
	char buf[SPIFFE_URI_MAX + 1];
	const char *w;
	int n_uri = 0, len, err;

	memset(out, 0, sizeof(*out));
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

		if (gn->type == GEN_URI) {
			uri = gn->d.uniformResourceIdentifier;
			n_uri++;
		}
	}
	if (n_uri == 0)
		return say(why, why_len, -EINVAL, "no URI SAN");
	if (n_uri > 1)
		return say(why, why_len, -EINVAL, "%d URI SANs (an SVID has exactly one)", n_uri);
	len = ASN1_STRING_length(uri);
	if (len > SPIFFE_URI_MAX)
		return say(why, why_len, -EINVAL, "URI SAN of %d bytes (at most %d)", len,
			   SPIFFE_URI_MAX);
	memcpy(buf, ASN1_STRING_get0_data(uri), (size_t)len);
	buf[len] = '\0';
	if (strlen(buf) != (size_t)len)
		return say(why, why_len, -EINVAL, "NUL byte inside the URI SAN");
	err = spiffe_id_parse_why(buf, out, &w);
	if (err)
		return say(why, why_len, -EINVAL, "URI SAN \"%.*s\" is not a SPIFFE ID: %s", 160,
			   buf, w);
	if (trust_domain && strcmp(out->trust_domain, trust_domain) != 0) {
		err = say(why, why_len, -EPERM, "trust domain \"%.*s\" is not \"%.*s\"", 100,
			  out->trust_domain, 100, trust_domain);
		memset(out, 0, sizeof(*out));
		return err;
	}
	return 0;
}

/* The leaf as an end entity: not a CA; keyUsage (if any) for signatures only. */
static int leaf_check(X509 *leaf, char *why, size_t why_len)
{
	uint32_t ku = X509_get_key_usage(leaf);

	if (X509_check_ca(leaf) != 0)
		return say(why, why_len, -EINVAL, "leaf is a CA certificate");
	if (ku != UINT32_MAX) {
		if (!(ku & KU_DIGITAL_SIGNATURE))
			return say(why, why_len, -EINVAL, "leaf keyUsage lacks digitalSignature");
		if (ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN))
			return say(why, why_len, -EINVAL,
				   "leaf keyUsage allows keyCertSign/cRLSign");
	}
	return 0;
}

int id_verify_peer(X509_STORE *anchors, X509 *leaf, STACK_OF(X509) * chain,
		   const char *trust_domain, struct spiffe_id *out, char *why, size_t why_len)
{
	X509_STORE_CTX *ctx;
	GENERAL_NAMES *names;
	int crit = -1, err, verr;

	memset(out, 0, sizeof(*out));
	if (why && why_len)
		why[0] = '\0';
	if (!anchors || !leaf)
		return say(why, why_len, -EINVAL, "no %s",
			   anchors ? "certificate" : "trust anchors");
	ctx = X509_STORE_CTX_new();
	if (!ctx)
		return say(why, why_len, -ENOMEM, "cannot allocate a verify context");
	if (X509_STORE_CTX_init(ctx, anchors, leaf, chain) != 1) {
		X509_STORE_CTX_free(ctx);
		return say(why, why_len, -ENOMEM, "cannot set up the verify context");
	}
	/* A leaf or intermediate placed among the anchors must not end the path. */
	X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_verify_cert(ctx) != 1) {
		verr = X509_STORE_CTX_get_error(ctx);
		err = (verr == X509_V_ERR_CERT_HAS_EXPIRED || verr == X509_V_ERR_CERT_NOT_YET_VALID)
			  ? -EKEYEXPIRED
			  : -EKEYREJECTED;
		say(why, why_len, err, "chain: %s (depth %d)", X509_verify_cert_error_string(verr),
		    X509_STORE_CTX_get_error_depth(ctx));
		X509_STORE_CTX_free(ctx);
		ERR_clear_error();
		return err;
	}
	X509_STORE_CTX_free(ctx);

	err = leaf_check(leaf, why, why_len);
	if (err)
		return err;
	names = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	if (!names && crit == -2)
		return say(why, why_len, -EINVAL, "more than one subjectAltName extension");
	if (!names && crit != -1) {
		ERR_clear_error();
		return say(why, why_len, -EINVAL, "malformed subjectAltName extension");
	}
	err = id_san_spiffe_id(names, trust_domain, out, why, why_len);
	GENERAL_NAMES_free(names);
	return err;
}

/* Read every certificate of the bundle, at most max, into *out. */
static int read_pem(const char *pem, size_t len, int max, STACK_OF(X509) * *out, char *why,
		    size_t why_len)
{
	STACK_OF(X509) * sk;
	BIO *bio;
	X509 *x;
	unsigned long e;

	*out = NULL;
	if (len > ID_PEM_MAX)
		return say(why, why_len, -E2BIG, "PEM bundle of %zu bytes (at most %d)", len,
			   ID_PEM_MAX);
	sk = sk_X509_new_null();
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!sk || !bio) {
		sk_X509_free(sk);
		BIO_free(bio);
		return say(why, why_len, -ENOMEM, "cannot allocate for a PEM bundle");
	}
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_num(sk) >= max) {
			X509_free(x);
			sk_X509_pop_free(sk, X509_free);
			BIO_free(bio);
			return say(why, why_len, -E2BIG,
				   "more than %d certificates in a PEM bundle", max);
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			sk_X509_pop_free(sk, X509_free);
			BIO_free(bio);
			return say(why, why_len, -ENOMEM, "cannot allocate for a PEM bundle");
		}
	}
	/* The loop ends at the end of input (no start line) or at a bad block. */
	e = ERR_peek_last_error();
	BIO_free(bio);
	ERR_clear_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		int n = sk_X509_num(sk);

		sk_X509_pop_free(sk, X509_free);
		return say(why, why_len, -EINVAL, "malformed certificate #%d in a PEM bundle: %s",
			   n + 1, ERR_reason_error_string(e));
	}
	*out = sk;
	return 0;
}

int id_certs_from_pem(const char *pem, size_t len, STACK_OF(X509) * *out, char *why, size_t why_len)
{
	return read_pem(pem, len, ID_CHAIN_MAX, out, why, why_len);
}

int id_anchors_from_pem(const char *pem, size_t len, X509_STORE **out, char *why, size_t why_len)
{
	STACK_OF(X509) * sk;
	X509_STORE *store;
	int err;

	*out = NULL;
	err = read_pem(pem, len, ID_ANCHORS_MAX, &sk, why, why_len);
	if (err)
		return err;
	if (sk_X509_num(sk) == 0) {
		sk_X509_free(sk);
		return say(why, why_len, -EINVAL, "no certificate in the trust anchors");
	}
	store = X509_STORE_new();
	if (!store) {
		sk_X509_pop_free(sk, X509_free);
		return say(why, why_len, -ENOMEM, "cannot allocate a trust store");
	}
	for (int i = 0; i < sk_X509_num(sk); i++) {
		X509 *x = sk_X509_value(sk, i);

		if (X509_check_ca(x) < 1) {
			err = say(why, why_len, -EINVAL, "trust anchor #%d is not a CA certificate",
				  i + 1);
			break;
		}
		if (X509_STORE_add_cert(store, x) != 1) {
			err = say(why, why_len, -ENOMEM, "cannot add trust anchor #%d", i + 1);
			break;
		}
	}
	sk_X509_pop_free(sk, X509_free);
	ERR_clear_error();
	if (err) {
		X509_STORE_free(store);
		return err;
	}
	*out = store;
	return 0;
}

const char *id_cert_serial(const X509 *x, char *buf, size_t len)
{
	const ASN1_INTEGER *sn = x ? X509_get0_serialNumber(x) : NULL;
	const unsigned char *d;
	size_t off = 0;
	int n;

	if (!len)
		return buf;
	if (!sn || len < 4) {
		snprintf(buf, len, "?");
		return buf;
	}
	d = ASN1_STRING_get0_data(sn);
	n = ASN1_STRING_length(sn);
	if (ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER)
		buf[off++] = '-';
	if (n <= 0) /* the integer 0: one zero octet, as openssl prints it */
		off += (size_t)snprintf(buf + off, len - off, "00");
	for (int i = 0; i < n; i++) {
		if (off + 2 + 3 > len) { /* two digits, and room for ".." and the NUL */
			snprintf(buf + off, len - off, "..");
			return buf;
		}
		off += (size_t)snprintf(buf + off, len - off, "%02X", d[i]);
	}
	return buf;
}
