// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/core_names.h>
#include <stdlib.h>
#include <string.h>

#include "identity/csr.h"
#include "identity/testca.h"

#define ID "spiffe://cluster.local/ns/shop/sa/cart"

static X509_REQ *parse_req(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509_REQ *r = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);

	BIO_free(b);
	cr_assert_not_null(r, "not a PEM CSR: %s", pem);
	return r;
}

Test(identity_csr, one_uri_san_p256_signed_empty_subject)
{
	EVP_PKEY *key, *pub;
	X509_REQ *req;
	STACK_OF(X509_EXTENSION) * exts;
	GENERAL_NAMES *names;
	const GENERAL_NAME *g;
	char why[256], *pem, group[32];
	size_t glen;

	cr_assert_eq(id_key_new(&key, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(id_csr_make(key, ID, &pem, why, sizeof(why)), 0, "%s", why);
	req = parse_req(pem);
	/* signed by the key it carries */
	pub = X509_REQ_get0_pubkey(req);
	cr_assert_eq(X509_REQ_verify(req, pub), 1);
	cr_assert_eq(EVP_PKEY_eq(pub, key), 1);
	cr_assert_eq(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
	cr_assert(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group,
						 sizeof(group), &glen));
	cr_assert_str_eq(group, "prime256v1");
	cr_assert_eq(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA256);
	cr_assert_eq(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
	/* exactly one extension, the SAN, with exactly one name, the URI */
	exts = X509_REQ_get_extensions(req);
	cr_assert_eq(sk_X509_EXTENSION_num(exts), 1);
	cr_assert_eq(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, 0))),
		     NID_subject_alt_name);
	names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	cr_assert_eq(sk_GENERAL_NAME_num(names), 1);
	g = sk_GENERAL_NAME_value(names, 0);
	cr_assert_eq(g->type, GEN_URI);
	cr_assert_eq(ASN1_STRING_length(g->d.uniformResourceIdentifier), (int)strlen(ID));
	cr_assert_eq(memcmp(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), ID, strlen(ID)),
		     0);
	/* and no private key in what is sent */
	cr_assert_null(strstr(pem, "PRIVATE"));
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	free(pem);
	EVP_PKEY_free(key);
}

Test(identity_csr, two_keys_differ_and_bad_ids_are_refused)
{
	EVP_PKEY *a, *b;
	char why[256], *pem;

	cr_assert_eq(id_key_new(&a, why, sizeof(why)), 0);
	cr_assert_eq(id_key_new(&b, why, sizeof(why)), 0);
	cr_assert_neq(EVP_PKEY_eq(a, b), 1);
	cr_assert_eq(id_csr_make(a, "https://x/ns/a/sa/b", &pem, why, sizeof(why)), -EINVAL);
	cr_assert_null(pem);
	cr_assert(strstr(why, "not a SPIFFE ID"), "%s", why);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
}

Test(identity_csr, request_body_is_the_json_of_the_contract)
{
	char *body = id_csr_request_body("-----BEGIN CERTIFICATE REQUEST-----\nAB\"\n", 20);
	json_object *o = json_tokener_parse(body), *v;

	cr_assert_not_null(o, "%s", body);
	cr_assert(json_object_object_get_ex(o, "csr", &v));
	cr_assert_str_eq(json_object_get_string(v), "-----BEGIN CERTIFICATE REQUEST-----\nAB\"\n");
	cr_assert(json_object_object_get_ex(o, "lifetime_s", &v));
	cr_assert_eq(json_object_get_int64(v), 20);
	cr_assert_eq(json_object_object_length(o), 2);
	json_object_put(o);
	free(body);
}

/* An answer as shoal-identity gives it, for key, from a root and an intermediate. */
struct answer {
	EVP_PKEY *key, *root_key, *mid_key;
	X509 *root, *mid, *leaf;
	char *leaf_pem, *mid_pem;
};

static void answer_make(struct answer *a)
{
	a->key = tca_key();
	a->root_key = tca_key();
	a->mid_key = tca_key();
	a->root = tca_cert(a->root_key, "root", NULL, NULL, -60, 86400, 1, NULL);
	a->mid = tca_cert(a->mid_key, "mid", a->root, a->root_key, -60, 86400, 1, NULL);
	a->leaf = tca_cert(a->key, "leaf", a->mid, a->mid_key, -60, 3600, 0, ID);
	a->leaf_pem = tca_pem(a->leaf, NULL);
	a->mid_pem = tca_pem(a->mid, NULL);
}

static void answer_free(struct answer *a)
{
	EVP_PKEY_free(a->key);
	EVP_PKEY_free(a->root_key);
	EVP_PKEY_free(a->mid_key);
	X509_free(a->root);
	X509_free(a->mid);
	X509_free(a->leaf);
	free(a->leaf_pem);
	free(a->mid_pem);
}

static char *json3(const char *cert, const char *chain, const char *expires)
{
	json_object *o = json_object_new_object();
	char *s;

	if (cert)
		json_object_object_add(o, "certificate", json_object_new_string(cert));
	if (chain)
		json_object_object_add(o, "chain", json_object_new_string(chain));
	if (expires)
		json_object_object_add(o, "expires", json_tokener_parse(expires));
	s = strdup(json_object_to_json_string(o));
	json_object_put(o);
	return s;
}

Test(identity_csr, decode_an_answer)
{
	struct answer a;
	STACK_OF(X509) * chain;
	X509 *leaf;
	int64_t exp;
	char why[256], *body;

	answer_make(&a);
	body = json3(a.leaf_pem, a.mid_pem, "1800000000");
	cr_assert_eq(
	    id_issue_decode(body, strlen(body), a.key, &leaf, &chain, &exp, why, sizeof(why)), 0,
	    "%s", why);
	cr_assert_eq(X509_cmp(leaf, a.leaf), 0);
	cr_assert_eq(sk_X509_num(chain), 1);
	cr_assert_eq(X509_cmp(sk_X509_value(chain, 0), a.mid), 0);
	cr_assert_eq(exp, 1800000000);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	free(body);
	/* an empty chain is fine: the leaf signed by the root itself */
	body = json3(a.leaf_pem, "", "1800000000");
	cr_assert_eq(
	    id_issue_decode(body, strlen(body), a.key, &leaf, &chain, &exp, why, sizeof(why)), 0,
	    "%s", why);
	cr_assert_eq(sk_X509_num(chain), 0);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	free(body);
	answer_free(&a);
}

static void decode_fails(const char *body, EVP_PKEY *key, const char *want)
{
	STACK_OF(X509) *chain = (void *)1;
	X509 *leaf = (void *)1;
	int64_t exp;
	char why[256] = "";

	cr_assert_eq(
	    id_issue_decode(body, strlen(body), key, &leaf, &chain, &exp, why, sizeof(why)),
	    -EINVAL, "accepted %s", body);
	cr_assert_null(leaf);
	cr_assert_null(chain);
	cr_assert(strstr(why, want), "why \"%s\" lacks \"%s\"", why, want);
}

Test(identity_csr, decode_refuses_bad_answers)
{
	struct answer a;
	EVP_PKEY *other = tca_key();
	char *b, two[8192];

	answer_make(&a);
	decode_fails("", a.key, "not one JSON object");
	decode_fails("{\"certificate\": \"x\"} trailing", a.key, "not one JSON object");
	decode_fails("[1]", a.key, "not an object");
	b = json3(NULL, a.mid_pem, "1");
	decode_fails(b, a.key, "no \"certificate\"");
	free(b);
	b = json3(a.leaf_pem, a.mid_pem, NULL);
	decode_fails(b, a.key, "no integer \"expires\"");
	free(b);
	b = json3(a.leaf_pem, a.mid_pem, "\"soon\"");
	decode_fails(b, a.key, "no integer \"expires\"");
	free(b);
	b = json3("not pem", a.mid_pem, "1");
	decode_fails(b, a.key, "not a PEM certificate");
	free(b);
	snprintf(two, sizeof(two), "%s%s", a.leaf_pem, a.mid_pem);
	b = json3(two, "", "1");
	decode_fails(b, a.key, "more than one certificate");
	free(b);
	b = json3(a.leaf_pem, a.mid_pem, "1");
	decode_fails(b, other, "not for the key of this request");
	free(b);
	b = json3(a.leaf_pem, "garbage", "1");
	decode_fails(b, a.key, "\"chain\" holds no PEM certificate");
	free(b);
	{
		char *big = malloc(ID_MAX_RESPONSE_BYTES + 2);

		memset(big, ' ', ID_MAX_RESPONSE_BYTES + 1);
		big[ID_MAX_RESPONSE_BYTES + 1] = '\0';
		decode_fails(big, a.key, "larger than");
		free(big);
	}
	EVP_PKEY_free(other);
	answer_free(&a);
}

Test(identity_csr, error_answers)
{
	static const char *const ok = "{\"error\": \"no pod of shop/cart on node n1\"}",
				 *ctl = "{\"error\": \"a\\nb\"}",
				 *lng = "{\"error\": \"0123456789012345678901234567890123456789\"}";
	char why[32];

	cr_assert_str_eq(id_issue_error(ok, strlen(ok), why, sizeof(why)),
			 "no pod of shop/cart on node n1");
	cr_assert_str_eq(id_issue_error(ctl, strlen(ctl), why, sizeof(why)), "a?b");
	cr_assert_str_eq(id_issue_error("<html>", 6, why, sizeof(why)),
			 "no \"error\" in the answer");
	/* cut to the buffer */
	cr_assert_eq(strlen(id_issue_error(lng, strlen(lng), why, sizeof(why))), 31);
}
