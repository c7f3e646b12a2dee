// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Peer SVID checks against certificates made here with OpenSSL: a root
 * and an intermediate per trust domain, leaves good and bad, and a
 * second root for a rotation.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "identity/test_certs.h"
#include "identity/verify.h"

#define TD "cluster.local"
#define WEB "spiffe://" TD "/ns/default/sa/web"

static EVP_PKEY *root_key, *int_key, *root2_key, *leaf_key;
static X509 *root, *inter, *root2;
static X509_STORE *anchors;
static STACK_OF(X509) * chain;

static void setup(void)
{
	root_key = tc_key();
	int_key = tc_key();
	root2_key = tc_key();
	leaf_key = tc_key();
	root =
	    tc_cert(root_key,
		    &(struct tc_opts){
			.cn = "root 1", .ca = true, .not_before = -3600, .not_after = 10 * 86400});
	inter = tc_cert(int_key, &(struct tc_opts){.cn = "issuer",
						   .ca = true,
						   .issuer = root,
						   .issuer_key = root_key,
						   .not_before = -3600,
						   .not_after = 5 * 86400});
	root2 =
	    tc_cert(root2_key,
		    &(struct tc_opts){
			.cn = "root 2", .ca = true, .not_before = -3600, .not_after = 10 * 86400});
	anchors = X509_STORE_new();
	cr_assert(X509_STORE_add_cert(anchors, root));
	chain = sk_X509_new_null();
	cr_assert(sk_X509_push(chain, inter));
}

static void teardown(void)
{
	sk_X509_free(chain);
	X509_STORE_free(anchors);
	X509_free(root);
	X509_free(inter);
	X509_free(root2);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(int_key);
	EVP_PKEY_free(root2_key);
	EVP_PKEY_free(leaf_key);
}

TestSuite(identity_verify, .init = setup, .fini = teardown);

/* A leaf signed by the intermediate, with o's fields over the defaults. */
static X509 *leaf(struct tc_opts o)
{
	if (!o.issuer) {
		o.issuer = inter;
		o.issuer_key = int_key;
	}
	if (!o.not_before)
		o.not_before = -60;
	return tc_cert(leaf_key, &o);
}

/* Verify x; assert the result is want, and the reason names want_why. */
static void check(X509 *x, STACK_OF(X509) * c, int want, const char *want_why)
{
	struct spiffe_id id;
	char why[ID_WHY_MAX] = "";
	int err = id_verify_peer(anchors, x, c, TD, &id, why, sizeof(why));

	cr_assert_eq(err, want, "got %d (%s), want %d", err, why, want);
	if (want == 0) {
		cr_assert_str_eq(id.trust_domain, TD);
		cr_assert_str_eq(id.ns, "default");
		cr_assert_str_eq(id.sa, "web");
	} else {
		cr_assert_eq(id.sa[0], 0, "out zeroed on failure");
		cr_assert(strstr(why, want_why), "reason \"%s\" lacks \"%s\"", why, want_why);
	}
	X509_free(x);
}

Test(identity_verify, valid_chain)
{
	check(leaf((struct tc_opts){.uris = {WEB}}), chain, 0, NULL);
	/* other SAN kinds beside the one URI do not matter */
	check(leaf((struct tc_opts){.uris = {WEB}, .dns = "web.default.svc"}), chain, 0, NULL);
	/* no keyUsage at all is allowed by X.509-SVID */
	check(leaf((struct tc_opts){.uris = {WEB}, .no_key_usage = true}), chain, 0, NULL);
	/* a leaf signed by the root directly */
	check(leaf((struct tc_opts){.uris = {WEB}, .issuer = root, .issuer_key = root_key}), NULL,
	      0, NULL);
}

Test(identity_verify, missing_intermediate)
{
	check(leaf((struct tc_opts){.uris = {WEB}}), NULL, -EKEYREJECTED, "issuer");
}

Test(identity_verify, expired)
{
	check(leaf((struct tc_opts){.uris = {WEB}, .not_before = -2 * 86400, .not_after = -60}),
	      chain, -EKEYEXPIRED, "expired");
}

Test(identity_verify, not_yet_valid)
{
	check(leaf((struct tc_opts){.uris = {WEB}, .not_before = 3600, .not_after = 86400}), chain,
	      -EKEYEXPIRED, "not yet valid");
}

Test(identity_verify, expired_intermediate)
{
	X509 *old = tc_cert(int_key, &(struct tc_opts){.cn = "issuer",
						       .ca = true,
						       .issuer = root,
						       .issuer_key = root_key,
						       .not_before = -5 * 86400,
						       .not_after = -1});
	STACK_OF(X509) *c = sk_X509_new_null();

	sk_X509_push(c, old);
	check(leaf((struct tc_opts){.uris = {WEB}}), c, -EKEYEXPIRED, "expired");
	sk_X509_free(c);
	X509_free(old);
}

Test(identity_verify, self_signed_forgery)
{
	/* the right SPIFFE ID, but signed by nobody we trust */
	EVP_PKEY *k = tc_key();
	X509 *forged = tc_cert(k, &(struct tc_opts){.cn = "web", .uris = {WEB}, .not_before = -60});

	check(forged, NULL, -EKEYREJECTED, "self-signed");
	/* nor does presenting it as its own chain help */
	forged = tc_cert(k, &(struct tc_opts){.cn = "web", .uris = {WEB}, .not_before = -60});
	STACK_OF(X509) *c = sk_X509_new_null();
	sk_X509_push(c, forged);
	check(X509_dup(forged), c, -EKEYREJECTED, "self-signed");
	sk_X509_pop_free(c, X509_free);
	EVP_PKEY_free(k);
}

Test(identity_verify, forged_issuer_same_name)
{
	/* an intermediate with the real one's name but another key */
	EVP_PKEY *k = tc_key();
	X509 *fake = tc_cert(
	    k, &(struct tc_opts){
		   .cn = "issuer", .ca = true, .issuer = root, .issuer_key = k, .not_before = -60});
	STACK_OF(X509) *c = sk_X509_new_null();

	sk_X509_push(c, fake);
	check(leaf((struct tc_opts){.uris = {WEB}, .issuer = fake, .issuer_key = k}), c,
	      -EKEYREJECTED, "chain");
	sk_X509_pop_free(c, X509_free);
	EVP_PKEY_free(k);
}

Test(identity_verify, leaf_in_the_store_is_not_an_anchor)
{
	/* even if a self-signed leaf sits among the anchors, a partial chain does not count */
	EVP_PKEY *k = tc_key();
	X509 *x = leaf((struct tc_opts){.uris = {WEB}});

	X509_STORE_add_cert(anchors, x);
	X509_STORE_set_flags(anchors, X509_V_FLAG_PARTIAL_CHAIN);
	check(x, NULL, -EKEYREJECTED, "chain");
	EVP_PKEY_free(k);
}

Test(identity_verify, wrong_trust_domain)
{
	check(leaf((struct tc_opts){.uris = {"spiffe://evil.example/ns/default/sa/web"}}), chain,
	      -EPERM, "trust domain \"evil.example\"");
}

Test(identity_verify, two_uri_sans)
{
	check(leaf((struct tc_opts){.uris = {WEB, "spiffe://" TD "/ns/kube-system/sa/admin"}}),
	      chain, -EINVAL, "2 URI SANs");
}

Test(identity_verify, no_uri_san)
{
	check(leaf((struct tc_opts){.dns = "web.default.svc"}), chain, -EINVAL, "no URI SAN");
	check(leaf((struct tc_opts){0}), chain, -EINVAL, "no URI SAN");
}

Test(identity_verify, malformed_ids)
{
	static const char *const bad[] = {
	    "spiffe://" TD "/ns//sa/web",   "spiffe://" TD "/ns/default/sa/w%65b",
	    "spiffe://" TD "/ns/../sa/web", "SPIFFE://" TD "/ns/default/sa/web",
	    "spiffe://" TD "/default/web",  "https://" TD "/ns/default/sa/web",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check(leaf((struct tc_opts){.uris = {bad[i]}}), chain, -EINVAL, "not a SPIFFE ID");
}

Test(identity_verify, ca_as_leaf)
{
	check(leaf((struct tc_opts){.uris = {WEB}, .ca = true}), chain, -EINVAL, "CA");
}

Test(identity_verify, root_rotation)
{
	/* a leaf issued under the new root, through its own intermediate */
	EVP_PKEY *k2 = tc_key();
	X509 *int2 = tc_cert(k2, &(struct tc_opts){.cn = "issuer 2",
						   .ca = true,
						   .issuer = root2,
						   .issuer_key = root2_key,
						   .not_before = -60});
	STACK_OF(X509) *c2 = sk_X509_new_null();
	char *pem1 = tc_pem(root), *pem2 = tc_pem(root2), both[8192];
	X509_STORE *two;
	char why[ID_WHY_MAX];

	sk_X509_push(c2, int2);
	/* only the old root trusted: refused */
	check(leaf((struct tc_opts){.uris = {WEB}, .issuer = int2, .issuer_key = k2}), c2,
	      -EKEYREJECTED, "issuer");
	/* both roots, as the anchors ConfigMap holds them during a rotation */
	snprintf(both, sizeof(both), "%s%s", pem1, pem2);
	cr_assert_eq(id_anchors_from_pem(both, strlen(both), &two, why, sizeof(why)), 0, "%s", why);
	X509_STORE_free(anchors);
	anchors = two;
	check(leaf((struct tc_opts){.uris = {WEB}, .issuer = int2, .issuer_key = k2}), c2, 0, NULL);
	check(leaf((struct tc_opts){.uris = {WEB}}), chain, 0, NULL);
	/* the old root dropped at the end of the rotation: old leaves refused */
	cr_assert_eq(id_anchors_from_pem(pem2, strlen(pem2), &two, why, sizeof(why)), 0);
	X509_STORE_free(anchors);
	anchors = two;
	check(leaf((struct tc_opts){.uris = {WEB}}), chain, -EKEYREJECTED, "issuer");
	sk_X509_free(c2);
	X509_free(int2);
	EVP_PKEY_free(k2);
	free(pem1);
	free(pem2);
}

Test(identity_verify, anchors_from_pem)
{
	char *pem = tc_pem(root), *ipem = tc_pem(inter), buf[16384];
	X509_STORE *s = NULL;
	STACK_OF(X509) *sk = NULL;
	char why[ID_WHY_MAX];
	X509 *l = leaf((struct tc_opts){.uris = {WEB}});
	char *lpem = tc_pem(l);

	cr_assert_eq(id_anchors_from_pem("", 0, &s, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "no certificate"), "%s", why);
	cr_assert_eq(id_anchors_from_pem(lpem, strlen(lpem), &s, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "not a CA"), "%s", why);
	snprintf(buf, sizeof(buf),
		 "%s-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", pem);
	cr_assert_eq(id_anchors_from_pem(buf, strlen(buf), &s, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "malformed certificate #2"), "%s", why);
	snprintf(buf, sizeof(buf), "%s%s%s%s%s", pem, pem, pem, pem, pem);
	cr_assert_eq(id_anchors_from_pem(buf, strlen(buf), &s, why, sizeof(why)), -E2BIG);
	cr_assert_null(s);
	/* a chain bundle keeps its order */
	snprintf(buf, sizeof(buf), "%s%s", lpem, ipem);
	cr_assert_eq(id_certs_from_pem(buf, strlen(buf), &sk, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(sk_X509_num(sk), 2);
	cr_assert_eq(X509_cmp(sk_X509_value(sk, 1), inter), 0);
	sk_X509_pop_free(sk, X509_free);
	cr_assert_eq(id_certs_from_pem("", 0, &sk, why, sizeof(why)), 0);
	cr_assert_eq(sk_X509_num(sk), 0);
	sk_X509_pop_free(sk, X509_free);
	X509_free(l);
	free(pem);
	free(ipem);
	free(lpem);
}

/* Set x's serial to the big-endian bytes b[0..n). */
static void set_serial(X509 *x, const unsigned char *b, int n)
{
	BIGNUM *bn = BN_bin2bn(b, n, NULL);

	cr_assert_not_null(bn);
	cr_assert_not_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
}

Test(identity_verify, serial_as_openssl_prints_it)
{
	/* a leading zero nibble is kept: "0A..." (a %x of the number would drop it) */
	static const unsigned char lead0[] = {0x0a, 0x00, 0xff, 0x10};
	/* the high bit set: DER adds a zero octet for the sign, which is not part of the number */
	static const unsigned char high[] = {0x80, 0x01};
	/* 127 random bits, as shoal-identity draws them, whose top octet happens to be 0x01 */
	static const unsigned char wide[] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
					     0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
	X509 *l = leaf((struct tc_opts){.uris = {WEB}});
	char buf[ID_SERIAL_MAX], tiny[9];

	set_serial(l, lead0, sizeof(lead0));
	cr_assert_str_eq(id_cert_serial(l, buf, sizeof(buf)), "0A00FF10");
	set_serial(l, high, sizeof(high));
	cr_assert_str_eq(id_cert_serial(l, buf, sizeof(buf)), "8001");
	set_serial(l, wide, sizeof(wide));
	cr_assert_str_eq(id_cert_serial(l, buf, sizeof(buf)), "0123456789ABCDEF0123456789ABCDEF");
	/* cut, and said to be */
	cr_assert_str_eq(id_cert_serial(l, tiny, sizeof(tiny)), "012345..");
	ASN1_INTEGER_set(X509_get_serialNumber(l), 0);
	cr_assert_str_eq(id_cert_serial(l, buf, sizeof(buf)), "00");
	ASN1_INTEGER_set(X509_get_serialNumber(l), -5);
	cr_assert_str_eq(id_cert_serial(l, buf, sizeof(buf)), "-05");
	cr_assert_str_eq(id_cert_serial(NULL, buf, sizeof(buf)), "?");
	X509_free(l);
}
