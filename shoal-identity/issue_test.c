// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The issuer's checks and what it signs, with a root, an issuer and
 * CSRs made here with OpenSSL: a leaf must say exactly what was decided
 * and verify as a peer's SVID (identity/verify.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "identity/test_certs.h"
#include "identity/verify.h"
#include "issue.h"

#define TD "cluster.local"
#define WEB "spiffe://" TD "/ns/shop/sa/web"

static EVP_PKEY *root_key, *iss_key;
static X509 *root, *iss;
static char dir[64], crt_path[128], key_path[128];
static struct issuer is;

static void write_file(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(a, f);
	if (b)
		fputs(b, f);
	fclose(f);
}

static char *key_pem(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;
	long len;

	cr_assert(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL));
	len = BIO_get_mem_data(bio, &data);
	out = strndup(data, (size_t)len);
	BIO_free(bio);
	return out;
}

static void setup(void)
{
	char *p1, *p2, *k;
	char why[ID_WHY_MAX];

	snprintf(dir, sizeof(dir), "/tmp/shoal-issue-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(crt_path, sizeof(crt_path), "%s/tls.crt", dir);
	snprintf(key_path, sizeof(key_path), "%s/tls.key", dir);
	root_key = tc_key();
	iss_key = tc_key();
	root = tc_cert(root_key,
		       &(struct tc_opts){
			   .cn = "root", .ca = true, .not_before = -60, .not_after = 30 * 86400});
	iss = tc_cert(iss_key, &(struct tc_opts){.cn = "issuer",
						 .ca = true,
						 .issuer = root,
						 .issuer_key = root_key,
						 .not_before = -60,
						 .not_after = 10 * 86400});
	p1 = tc_pem(iss);
	p2 = tc_pem(root);
	k = key_pem(iss_key);
	/* the issuer, then its root: the root must stay out of the chain */
	write_file(crt_path, p1, p2);
	write_file(key_path, k, NULL);
	free(p1);
	free(p2);
	free(k);
	cr_assert_eq(issuer_load(&is, crt_path, key_path, TD, 86400, why, sizeof(why)), 0, "%s",
		     why);
}

static void teardown(void)
{
	char cmd[128];

	issuer_free(&is);
	X509_free(root);
	X509_free(iss);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(iss_key);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(identity_issue, .init = setup, .fini = teardown);

/* A PEM CSR for key with these SAN entries (OpenSSL's text form), or none. */
static char *csr_pem(EVP_PKEY *key, const char *san)
{
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;
	long len;

	cr_assert(X509_REQ_set_pubkey(req, key));
	if (san) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);

		cr_assert_not_null(e, "SAN %s", san);
		sk_X509_EXTENSION_push(exts, e);
		cr_assert(X509_REQ_add_extensions(req, exts));
	}
	cr_assert(X509_REQ_sign(req, key, EVP_sha256()) > 0);
	cr_assert(PEM_write_bio_X509_REQ(bio, req));
	len = BIO_get_mem_data(bio, &data);
	out = strndup(data, (size_t)len);
	BIO_free(bio);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return out;
}

static void csr_refused(const char *pem, int want, const char *want_why)
{
	X509_REQ *req = (X509_REQ *)1;
	struct spiffe_id id;
	char why[ID_WHY_MAX] = "";
	int err = issue_csr_check(pem, strlen(pem), TD, &req, &id, why, sizeof(why));

	cr_assert_eq(err, want, "got %d (%s), want %d", err, why, want);
	cr_assert_null(req);
	cr_assert(strstr(why, want_why), "reason \"%s\" lacks \"%s\"", why, want_why);
}

Test(identity_issue, issuer_chain_leaves_out_the_root)
{
	cr_assert_eq(sk_X509_num(is.chain), 1);
	cr_assert_eq(X509_cmp(sk_X509_value(is.chain, 0), iss), 0);
	cr_assert(strstr(is.chain_pem, "BEGIN CERTIFICATE"));
	cr_assert_null(strstr(strstr(is.chain_pem, "END CERTIFICATE"), "BEGIN"), "one certificate");
}

Test(identity_issue, issuer_load_refusals)
{
	struct issuer bad;
	char why[ID_WHY_MAX], path[160];
	EVP_PKEY *other = tc_key();
	X509 *leaf = tc_cert(
	    iss_key, &(struct tc_opts){
			 .issuer = root, .issuer_key = root_key, .uris = {WEB}, .not_before = -60});
	char *k = key_pem(other), *lp = tc_pem(leaf);

	snprintf(path, sizeof(path), "%s/other.key", dir);
	write_file(path, k, NULL);
	cr_assert_eq(issuer_load(&bad, crt_path, path, TD, 86400, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "does not match"), "%s", why);
	snprintf(path, sizeof(path), "%s/leaf.crt", dir);
	write_file(path, lp, NULL);
	cr_assert_eq(issuer_load(&bad, path, key_path, TD, 86400, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "not a signing CA"), "%s", why);
	cr_assert_eq(issuer_load(&bad, crt_path, key_path, "Bad/TD", 86400, why, sizeof(why)),
		     -EINVAL);
	cr_assert_eq(issuer_load(&bad, crt_path, key_path, TD, 60, why, sizeof(why)), -ERANGE);
	cr_assert_eq(issuer_load(&bad, "/nonexistent", key_path, TD, 86400, why, sizeof(why)),
		     -ENOENT);
	free(k);
	free(lp);
	X509_free(leaf);
	EVP_PKEY_free(other);
}

Test(identity_issue, csr_good_and_leaf)
{
	EVP_PKEY *k = tc_key();
	char *pem = csr_pem(k, "URI:" WEB);
	X509_REQ *req;
	struct spiffe_id id, peer;
	char why[ID_WHY_MAX];
	X509 *leaf;
	X509_STORE *anchors = X509_STORE_new();
	int crit = -1;
	time_t now = time(NULL);

	cr_assert_eq(issue_csr_check(pem, strlen(pem), TD, &req, &id, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_str_eq(id.ns, "shop");
	cr_assert_str_eq(id.sa, "web");
	cr_assert_eq(issue_leaf(&is, req, &id, 86400, &leaf, why, sizeof(why)), 0, "%s", why);

	/* it verifies as a peer's SVID, through the chain, to the root */
	X509_STORE_add_cert(anchors, root);
	cr_assert_eq(id_verify_peer(anchors, leaf, is.chain, TD, &peer, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert(spiffe_id_equal(&id, &peer));
	/* the CSR's key */
	cr_assert_eq(EVP_PKEY_eq(X509_get0_pubkey(leaf), k), 1);
	/* URI SAN only, critical; empty subject */
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	cr_assert_eq(sk_GENERAL_NAME_num(names), 1);
	cr_assert_eq(sk_GENERAL_NAME_value(names, 0)->type, GEN_URI);
	cr_assert_eq(crit, 1);
	GENERAL_NAMES_free(names);
	cr_assert_eq(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
	/* end entity, signatures, both EKUs */
	cr_assert_eq(X509_check_ca(leaf), 0);
	cr_assert_eq(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
	cr_assert_eq(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	/* 24 h, from a minute ago */
	cr_assert_eq(
	    X509_cmp_time(X509_get0_notBefore(leaf), &(time_t){now - ISSUE_BACKDATE_S + 5}), -1);
	cr_assert_eq(X509_cmp_time(X509_get0_notAfter(leaf), &(time_t){now + 86400 - 5}), 1);
	cr_assert_eq(X509_cmp_time(X509_get0_notAfter(leaf), &(time_t){now + 86400 + 5}), -1);
	X509_free(leaf);

	/* a shorter lifetime; one over the issuer's --lifetime refused */
	cr_assert_eq(issue_leaf(&is, req, &id, 600, &leaf, why, sizeof(why)), 0);
	cr_assert_eq(X509_cmp_time(X509_get0_notAfter(leaf), &(time_t){now + 600 + 5}), -1);
	X509_free(leaf);
	cr_assert_eq(issue_leaf(&is, req, &id, 86401, &leaf, why, sizeof(why)), -ERANGE);
	cr_assert_eq(issue_leaf(&is, req, &id, 5, &leaf, why, sizeof(why)), -ERANGE);
	X509_REQ_free(req);
	X509_STORE_free(anchors);
	free(pem);
	EVP_PKEY_free(k);
}

Test(identity_issue, leaf_never_outlives_the_issuer)
{
	struct issuer short_is;
	X509 *iss2 = tc_cert(iss_key, &(struct tc_opts){.cn = "issuer",
							.ca = true,
							.issuer = root,
							.issuer_key = root_key,
							.not_before = -60,
							.not_after = 7200});
	char *p = tc_pem(iss2), why[ID_WHY_MAX];
	EVP_PKEY *k = tc_key();
	char *pem = csr_pem(k, "URI:" WEB);
	X509_REQ *req;
	struct spiffe_id id;
	X509 *leaf;

	write_file(crt_path, p, NULL);
	cr_assert_eq(issuer_load(&short_is, crt_path, key_path, TD, 86400, why, sizeof(why)), 0);
	cr_assert_eq(issue_csr_check(pem, strlen(pem), TD, &req, &id, why, sizeof(why)), 0);
	cr_assert_eq(issue_leaf(&short_is, req, &id, 86400, &leaf, why, sizeof(why)), 0);
	cr_assert_eq(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(iss2)), 0);
	X509_free(leaf);
	X509_REQ_free(req);
	issuer_free(&short_is);
	X509_free(iss2);
	EVP_PKEY_free(k);
	free(pem);
	free(p);
}

Test(identity_issue, expiring_issuer_signs_nothing)
{
	struct issuer dying;
	X509 *iss2 = tc_cert(iss_key, &(struct tc_opts){.cn = "issuer", .ca = true, .issuer = root,
							.issuer_key = root_key, .not_before = -60,
							.not_after = 5});
	char *p = tc_pem(iss2), why[ID_WHY_MAX];
	EVP_PKEY *k = tc_key();
	char *pem = csr_pem(k, "URI:" WEB);
	X509_REQ *req;
	struct spiffe_id id;
	X509 *leaf = NULL;

	write_file(crt_path, p, NULL);
	cr_assert_eq(issuer_load(&dying, crt_path, key_path, TD, 86400, why, sizeof(why)), 0);
	cr_assert_eq(issue_csr_check(pem, strlen(pem), TD, &req, &id, why, sizeof(why)), 0);
	cr_assert_eq(issue_leaf(&dying, req, &id, 86400, &leaf, why, sizeof(why)), -EKEYEXPIRED);
	cr_assert(strstr(why, "rotate it"), "%s", why);
	cr_assert_null(leaf);
	X509_REQ_free(req);
	issuer_free(&dying);
	X509_free(iss2);
	EVP_PKEY_free(k);
	free(pem);
	free(p);
}

Test(identity_issue, csr_refusals)
{
	EVP_PKEY *k = tc_key(), *p384 = EVP_EC_gen("P-384"), *rsa = EVP_RSA_gen(2048);
	char *pem;

	csr_refused("not a csr", -EINVAL, "not a PEM certificate request");
	pem = csr_pem(k, NULL);
	csr_refused(pem, -EINVAL, "no subjectAltName");
	free(pem);
	pem = csr_pem(k, "URI:" WEB ",URI:spiffe://" TD "/ns/shop/sa/db");
	csr_refused(pem, -EINVAL, "2 URI SANs");
	free(pem);
	pem = csr_pem(k, "URI:" WEB ",DNS:web.shop.svc");
	csr_refused(pem, -EINVAL, "other than a URI");
	free(pem);
	pem = csr_pem(k, "URI:spiffe://evil.example/ns/shop/sa/web");
	csr_refused(pem, -EPERM, "trust domain \"evil.example\"");
	free(pem);
	pem = csr_pem(k, "URI:spiffe://" TD "/ns/shop/sa/../admin");
	csr_refused(pem, -EINVAL, "not a SPIFFE ID");
	free(pem);
	pem = csr_pem(p384, "URI:" WEB);
	csr_refused(pem, -EINVAL, "not EC P-256");
	free(pem);
	pem = csr_pem(rsa, "URI:" WEB);
	csr_refused(pem, -EINVAL, "not EC P-256");
	free(pem);

	/* a CSR whose signature does not match its key: one byte of the signature flipped */
	pem = csr_pem(k, "URI:" WEB);
	{
		BIO *bio = BIO_new_mem_buf(pem, -1);
		X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
		unsigned char *der = NULL;
		int len = i2d_X509_REQ(req, &der);
		BIO *out = BIO_new(BIO_s_mem());
		X509_REQ *bad;
		const unsigned char *q;
		char *data, *bad_pem;
		long n;

		der[len - 3] ^= 0x01;
		q = der;
		bad = d2i_X509_REQ(NULL, &q, len);
		cr_assert_not_null(bad);
		PEM_write_bio_X509_REQ(out, bad);
		n = BIO_get_mem_data(out, &data);
		bad_pem = strndup(data, (size_t)n);
		csr_refused(bad_pem, -EINVAL, "signature does not verify");
		free(bad_pem);
		BIO_free(out);
		BIO_free(bio);
		X509_REQ_free(req);
		X509_REQ_free(bad);
		OPENSSL_free(der);
	}
	free(pem);

	/* over the size bound */
	char big[ISSUE_CSR_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	csr_refused(big, -EINVAL, "CSR of");
	EVP_PKEY_free(k);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
}

Test(identity_issue, server_cert_names)
{
	X509 *x;
	EVP_PKEY *k;
	char why[ID_WHY_MAX];

	cr_assert_eq(issue_server_cert(&is, "localhost,shoal-identity.shoal-system.svc", &x, &k,
				       why, sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(X509_check_host(x, "shoal-identity.shoal-system.svc", 0, 0, NULL), 1);
	cr_assert_eq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	cr_assert_eq(X509_check_ca(x), 0);
	cr_assert_eq(X509_check_private_key(x, k), 1);
	X509_free(x);
	EVP_PKEY_free(k);
	/* no way to smuggle another SAN kind in */
	cr_assert_eq(issue_server_cert(&is, "a,IP:127.0.0.1", &x, &k, why, sizeof(why)), -EINVAL);
	cr_assert_eq(issue_server_cert(&is, "a,,b", &x, &k, why, sizeof(why)), -EINVAL);
	cr_assert_eq(issue_server_cert(&is, "", &x, &k, why, sizeof(why)), -EINVAL);
}
