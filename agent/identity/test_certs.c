// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-time certificates (test_certs.h). */
#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity/test_certs.h"

EVP_PKEY *tc_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	cr_assert_not_null(k, "EVP_EC_gen(P-256)");
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	cr_assert_not_null(ext, "extension %d = %s", nid, value);
	cr_assert(X509_add_ext(x, ext, -1));
	X509_EXTENSION_free(ext);
}

X509 *tc_cert(EVP_PKEY *key, const struct tc_opts *o)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;
	char san[2048] = "";

	cr_assert_not_null(x);
	cr_assert(X509_set_version(x, 2));
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	cr_assert(X509_gmtime_adj(X509_getm_notBefore(x), o->not_before));
	cr_assert(X509_gmtime_adj(X509_getm_notAfter(x), o->not_after ? o->not_after : 86400));
	cr_assert(X509_set_pubkey(x, key));
	name = X509_get_subject_name(x);
	cr_assert(X509_NAME_add_entry_by_txt(
	    name, "CN", MBSTRING_ASC, (const unsigned char *)(o->cn ? o->cn : "test"), -1, -1, 0));
	cr_assert(X509_set_issuer_name(x, o->issuer ? X509_get_subject_name(o->issuer) : name));
	add_ext(x, o->issuer, NID_basic_constraints,
		o->ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	if (!o->no_key_usage)
		add_ext(x, o->issuer, NID_key_usage,
			o->ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	add_ext(x, o->issuer, NID_subject_key_identifier, "hash");
	if (o->issuer)
		add_ext(x, o->issuer, NID_authority_key_identifier, "keyid:always");
	for (int i = 0; i < 4 && o->uris[i]; i++) {
		size_t used = strlen(san);

		snprintf(san + used, sizeof(san) - used, "%sURI:%s", used ? "," : "", o->uris[i]);
	}
	if (o->dns) {
		size_t used = strlen(san);

		snprintf(san + used, sizeof(san) - used, "%sDNS:%s", used ? "," : "", o->dns);
	}
	if (san[0])
		add_ext(x, o->issuer, NID_subject_alt_name, san);
	cr_assert(X509_sign(x, o->issuer ? o->issuer_key : key, EVP_sha256()) > 0, "X509_sign");
	return x;
}

char *tc_pem(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;
	long len;

	cr_assert_not_null(bio);
	cr_assert(PEM_write_bio_X509(bio, x));
	len = BIO_get_mem_data(bio, &data);
	out = malloc((size_t)len + 1);
	cr_assert_not_null(out);
	memcpy(out, data, (size_t)len);
	out[len] = '\0';
	BIO_free(bio);
	return out;
}
