// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Certificate requests in, X.509-SVIDs out (issue.h). Nothing of a
 * request is copied into a leaf but its public key and the one SPIFFE ID
 * it was checked to name: extensions, subject and other SANs a client
 * asks for are refused or ignored, so a leaf says only what we decided.
 */
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity/verify.h"
#include "issue.h"

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

/* The whole of a small file (at most max bytes), malloc'd and NUL-terminated. */
static int read_small_file(const char *path, size_t max, char **out, size_t *len, char *why,
			   size_t why_len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;
	int err;

	*out = NULL;
	if (!f) {
		err = -errno;
		return say(why, why_len, err, "cannot open %s: %s", path, strerror(-err));
	}
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return say(why, why_len, -ENOMEM, "cannot allocate for %s", path);
	}
	n = fread(buf, 1, max + 1, f);
	err = ferror(f) ? -EIO : 0;
	fclose(f);
	if (err || n > max) {
		free(buf);
		return err ? say(why, why_len, err, "cannot read %s", path)
			   : say(why, why_len, -E2BIG, "%s is over %zu bytes", path, max);
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

char *issue_pem(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long len;

	if (!bio)
		return NULL;
	if (PEM_write_bio_X509(bio, x) == 1) {
		len = BIO_get_mem_data(bio, &data);
		out = malloc((size_t)len + 1);
		if (out) {
			memcpy(out, data, (size_t)len);
			out[len] = '\0';
		}
	}
	BIO_free(bio);
	return out;
}

void issuer_free(struct issuer *is)
{
	sk_X509_pop_free(is->chain, X509_free);
	X509_free(is->cert);
	EVP_PKEY_free(is->key);
	free(is->chain_pem);
	memset(is, 0, sizeof(*is));
}

int issuer_load(struct issuer *is, const char *cert_file, const char *key_file,
		const char *trust_domain, long lifetime_s, char *why, size_t why_len)
{
	STACK_OF(X509) *all = NULL;
	char *pem = NULL;
	size_t len = 0, used = 0;
	BIO *bio;
	int err;

	memset(is, 0, sizeof(*is));
	if (!spiffe_trust_domain_valid(trust_domain))
		return say(why, why_len, -EINVAL,
			   "trust domain \"%s\" is not a SPIFFE trust domain",
			   trust_domain ? trust_domain : "");
	if (lifetime_s < ISSUE_LIFETIME_MIN_S || lifetime_s > ISSUE_LIFETIME_MAX_S)
		return say(why, why_len, -ERANGE, "lifetime %ld s is outside %ld..%ld s",
			   lifetime_s, ISSUE_LIFETIME_MIN_S, ISSUE_LIFETIME_MAX_S);
	snprintf(is->trust_domain, sizeof(is->trust_domain), "%s", trust_domain);
	is->lifetime_s = lifetime_s;

	err = read_small_file(cert_file, ID_PEM_MAX, &pem, &len, why, why_len);
	if (err)
		return err;
	err = id_certs_from_pem(pem, len, &all, why, why_len);
	free(pem);
	if (err)
		return err;
	if (sk_X509_num(all) == 0) {
		sk_X509_free(all);
		return say(why, why_len, -EINVAL, "no certificate in %s", cert_file);
	}
	is->cert = X509_dup(sk_X509_value(all, 0));
	is->chain = sk_X509_new_null();
	if (!is->cert || !is->chain) {
		err = say(why, why_len, -ENOMEM, "cannot allocate the issuer");
		goto fail;
	}
	if (X509_check_ca(is->cert) < 1 || (X509_get_key_usage(is->cert) != UINT32_MAX &&
					    !(X509_get_key_usage(is->cert) & KU_KEY_CERT_SIGN))) {
		err = say(why, why_len, -EINVAL, "%s: the first certificate is not a signing CA",
			  cert_file);
		goto fail;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(is->cert)) <= 0 ||
	    X509_cmp_current_time(X509_get0_notBefore(is->cert)) >= 0) {
		err = say(why, why_len, -EKEYEXPIRED, "%s: the issuer is not valid now", cert_file);
		goto fail;
	}
	/* The chain a leaf's holder sends: every certificate but a root. */
	for (int i = 0; i < sk_X509_num(all); i++) {
		X509 *x = sk_X509_value(all, i);

		if (X509_self_signed(x, 0) == 1)
			continue;
		if (!X509_up_ref(x) || !sk_X509_push(is->chain, x)) {
			err = say(why, why_len, -ENOMEM, "cannot allocate the issuer chain");
			goto fail;
		}
	}
	is->chain_pem = calloc(1, ID_PEM_MAX + 1);
	if (!is->chain_pem) {
		err = say(why, why_len, -ENOMEM, "cannot allocate the issuer chain");
		goto fail;
	}
	for (int i = 0; i < sk_X509_num(is->chain); i++) {
		char *p = issue_pem(sk_X509_value(is->chain, i));
		size_t n = p ? strlen(p) : 0;

		if (!p || used + n > ID_PEM_MAX) {
			free(p);
			err = say(why, why_len, -ENOMEM, "cannot encode the issuer chain");
			goto fail;
		}
		memcpy(is->chain_pem + used, p, n);
		used += n;
		free(p);
	}

	bio = BIO_new_file(key_file, "r");
	if (!bio) {
		err = say(why, why_len, -ENOENT, "cannot open %s", key_file);
		goto fail;
	}
	is->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!is->key) {
		err = say(why, why_len, -EINVAL, "%s: not a PEM private key", key_file);
		goto fail;
	}
	if (X509_check_private_key(is->cert, is->key) != 1) {
		err = say(why, why_len, -EINVAL, "%s does not match the certificate of %s",
			  key_file, cert_file);
		goto fail;
	}
	sk_X509_pop_free(all, X509_free);
	ERR_clear_error();
	return 0;
fail:
	sk_X509_pop_free(all, X509_free);
	issuer_free(is);
	ERR_clear_error();
	return err;
}

int issue_csr_check(const char *pem, size_t len, const char *trust_domain, X509_REQ **out,
		    struct spiffe_id *id, char *why, size_t why_len)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *names = NULL;
	X509_REQ *req = NULL;
	EVP_PKEY *pub;
	char group[64];
	BIO *bio;
	int crit = -1, err;

	*out = NULL;
	memset(id, 0, sizeof(*id));
	if (len > ISSUE_CSR_MAX)
		return say(why, why_len, -EINVAL, "CSR of %zu bytes (at most %d)", len,
			   ISSUE_CSR_MAX);
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return say(why, why_len, -ENOMEM, "cannot allocate for the CSR");
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!req) {
		err = say(why, why_len, -EINVAL, "csr is not a PEM certificate request");
		goto out;
	}
	pub = X509_REQ_get0_pubkey(req);
	if (!pub || X509_REQ_verify(req, pub) != 1) {
		err = say(why, why_len, -EINVAL, "CSR signature does not verify with its key");
		goto out;
	}
	if (!EVP_PKEY_is_a(pub, "EC") ||
	    EVP_PKEY_get_group_name(pub, group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		err = say(why, why_len, -EINVAL, "CSR key is not EC P-256");
		goto out;
	}
	exts = X509_REQ_get_extensions(req);
	names = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL) : NULL;
	if (!names) {
		err = say(why, why_len, -EINVAL,
			  crit == -2 ? "CSR has more than one subjectAltName extension"
				     : "CSR has no subjectAltName (want one URI SAN)");
		goto out;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		if (sk_GENERAL_NAME_value(names, i)->type != GEN_URI) {
			err = say(why, why_len, -EINVAL,
				  "CSR asks for a SAN other than a URI (want exactly one URI SAN)");
			goto out;
		}
	}
	err = id_san_spiffe_id(names, trust_domain, id, why, why_len);
	if (err)
		goto out;
	*out = req;
	req = NULL;
out:
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	ERR_clear_error();
	return err;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/* A certificate for pub, by the issuer, valid lifetime_s, a random serial, no extensions yet. */
static X509 *new_cert(const struct issuer *is, EVP_PKEY *pub, long lifetime_s)
{
	X509 *x = X509_new();
	BIGNUM *bn = BN_new();
	ASN1_TIME *t = NULL;
	bool ok;

	/* 127 random bits: unpredictable (the CA/B rule is 64), positive, under 20 bytes. */
	ok = x && bn && X509_set_version(x, 2) &&
	     BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ODD) &&
	     BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -ISSUE_BACKDATE_S) &&
	     (t = ASN1_TIME_adj(NULL, time(NULL), 0, lifetime_s)) != NULL &&
	     X509_set1_notAfter(x, ASN1_TIME_compare(t, X509_get0_notAfter(is->cert)) > 0
				       ? X509_get0_notAfter(is->cert)
				       : t) &&
	     X509_set_issuer_name(x, X509_get_subject_name(is->cert)) && X509_set_pubkey(x, pub);
	ASN1_TIME_free(t);
	BN_free(bn);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int issue_leaf(const struct issuer *is, X509_REQ *req, const struct spiffe_id *id, long lifetime_s,
	       X509 **out, char *why, size_t why_len)
{
	char uri[SPIFFE_ID_STR_MAX], san[SPIFFE_ID_STR_MAX + 16];
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	X509 *x;
	int err;

	*out = NULL;
	/* Formatted from the checked parts: no character of it can start another SAN. */
	err = spiffe_id_format(id, uri, sizeof(uri));
	if (err)
		return say(why, why_len, err, "cannot format the SPIFFE ID");
	snprintf(san, sizeof(san), "critical,URI:%s", uri);
	if (lifetime_s < ISSUE_REQ_LIFETIME_MIN_S || lifetime_s > is->lifetime_s)
		return say(why, why_len, -ERANGE, "lifetime %ld s outside %ld..%ld s", lifetime_s,
			   ISSUE_REQ_LIFETIME_MIN_S, is->lifetime_s);
	/* An issuer about to expire would sign leaves that die with it: say so instead. */
	if (X509_cmp_time(X509_get0_notAfter(is->cert),
			  &(time_t){time(NULL) + ISSUE_REQ_LIFETIME_MIN_S}) <= 0)
		return say(why, why_len, -EKEYEXPIRED, "the issuer expires within %ld s: rotate it",
			   ISSUE_REQ_LIFETIME_MIN_S);
	x = pub ? new_cert(is, pub, lifetime_s) : NULL;
	if (!x)
		return say(why, why_len, -ENOMEM, "cannot build a certificate");
	err = add_ext(x, is->cert, NID_basic_constraints, "critical,CA:FALSE");
	err = err ?: add_ext(x, is->cert, NID_key_usage, "critical,digitalSignature");
	err = err ?: add_ext(x, is->cert, NID_ext_key_usage, "serverAuth,clientAuth");
	err = err ?: add_ext(x, is->cert, NID_subject_key_identifier, "hash");
	err = err ?: add_ext(x, is->cert, NID_authority_key_identifier, "keyid:always");
	err = err ?: add_ext(x, is->cert, NID_subject_alt_name, san);
	if (err || X509_sign(x, is->key, EVP_sha256()) <= 0) {
		X509_free(x);
		ERR_clear_error();
		return say(why, why_len, err ?: -EINVAL, "cannot sign the certificate for %s", uri);
	}
	*out = x;
	return 0;
}

int issue_server_cert(const struct issuer *is, const char *dns_names, X509 **cert, EVP_PKEY **key,
		      char *why, size_t why_len)
{
	char san[1024] = "", name[254];
	const char *p = dns_names;
	X509 *x = NULL;
	EVP_PKEY *k;
	int err;

	*cert = NULL;
	*key = NULL;
	/* Each name a DNS name, so that nothing but DNS: entries reach the extension. */
	while (*p) {
		size_t n = strcspn(p, ",");
		size_t used = strlen(san);

		if (n == 0 || n >= sizeof(name) ||
		    strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-") < n)
			return say(why, why_len, -EINVAL, "server name list \"%s\": not DNS names",
				   dns_names);
		memcpy(name, p, n);
		name[n] = '\0';
		if (used + n + 6 >= sizeof(san))
			return say(why, why_len, -E2BIG, "server name list \"%s\" too long",
				   dns_names);
		snprintf(san + used, sizeof(san) - used, "%sDNS:%s", used ? "," : "", name);
		p += n + (p[n] == ',');
	}
	if (!san[0])
		return say(why, why_len, -EINVAL, "no server name");
	k = EVP_EC_gen("P-256");
	if (k)
		x = new_cert(is, k, is->lifetime_s);
	if (!x) {
		EVP_PKEY_free(k);
		return say(why, why_len, -ENOMEM, "cannot build the server certificate");
	}
	err = X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					 (const unsigned char *)"shoal-identity", -1, -1, 0)
		  ? 0
		  : -ENOMEM;
	err = err ?: add_ext(x, is->cert, NID_basic_constraints, "critical,CA:FALSE");
	err = err ?: add_ext(x, is->cert, NID_key_usage, "critical,digitalSignature");
	err = err ?: add_ext(x, is->cert, NID_ext_key_usage, "serverAuth");
	err = err ?: add_ext(x, is->cert, NID_subject_key_identifier, "hash");
	err = err ?: add_ext(x, is->cert, NID_authority_key_identifier, "keyid:always");
	err = err ?: add_ext(x, is->cert, NID_subject_alt_name, san);
	if (err || X509_sign(x, is->key, EVP_sha256()) <= 0) {
		X509_free(x);
		EVP_PKEY_free(k);
		ERR_clear_error();
		return say(why, why_len, err ?: -EINVAL, "cannot sign the server certificate");
	}
	*cert = x;
	*key = k;
	return 0;
}
