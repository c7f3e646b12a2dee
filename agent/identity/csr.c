// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Keys, CSRs and the issuer's answers (csr.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/csr.h"
#include "identity/why.h"

int id_key_new(EVP_PKEY **out, char *why, size_t why_len)
{
	char err[160];

	*out = EVP_EC_gen("P-256");
	if (!*out) {
		id_why(why, why_len, "cannot generate a P-256 key: %s",
		       id_ossl_reason(err, sizeof(err)));
		return -EIO;
	}
	return 0;
}

int id_csr_make(EVP_PKEY *key, const char *spiffe_id, char **pem, char *why, size_t why_len)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *names = NULL;
	GENERAL_NAME *gn = NULL;
	ASN1_IA5STRING *uri = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char err[160], *p;
	long n;
	int ret = -EIO;

	*pem = NULL;
	if (strncmp(spiffe_id, "spiffe://", 9)) {
		id_why(why, why_len, "%s is not a SPIFFE ID", spiffe_id);
		return -EINVAL;
	}
	req = X509_REQ_new();
	names = GENERAL_NAMES_new();
	gn = GENERAL_NAME_new();
	uri = ASN1_IA5STRING_new();
	exts = sk_X509_EXTENSION_new_null();
	bio = BIO_new(BIO_s_mem());
	if (!req || !names || !gn || !uri || !exts || !bio) {
		ret = -ENOMEM;
		goto out;
	}
	if (!ASN1_STRING_set(uri, spiffe_id, (int)strlen(spiffe_id)))
		goto fail;
	GENERAL_NAME_set0_value(gn, GEN_URI, uri);
	uri = NULL;
	if (!sk_GENERAL_NAME_push(names, gn))
		goto fail;
	gn = NULL;
	/* The SAN is the only name: SPIFFE leaves the subject empty. */
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key) ||
	    !X509V3_add1_i2d(&exts, NID_subject_alt_name, names, 1, X509V3_ADD_DEFAULT) ||
	    !X509_REQ_add_extensions(req, exts) || !X509_REQ_sign(req, key, EVP_sha256()) ||
	    !PEM_write_bio_X509_REQ(bio, req))
		goto fail;
	n = BIO_get_mem_data(bio, &p);
	*pem = malloc(n + 1);
	if (!*pem) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(*pem, p, n);
	(*pem)[n] = '\0';
	ret = 0;
	goto out;
fail:
	id_why(why, why_len, "cannot make the CSR for %s: %s", spiffe_id,
	       id_ossl_reason(err, sizeof(err)));
out:
	BIO_free(bio);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(names);
	GENERAL_NAME_free(gn);
	ASN1_IA5STRING_free(uri);
	X509_REQ_free(req);
	return ret;
}

char *id_csr_request_body(const char *pem, uint32_t lifetime_s)
{
	json_object *o = json_object_new_object();
	char *out = NULL;

	if (o && !json_object_object_add(o, "csr", json_object_new_string(pem)) &&
	    !json_object_object_add(o, "lifetime_s", json_object_new_int64(lifetime_s))) {
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

		out = s ? strdup(s) : NULL;
	}
	json_object_put(o);
	return out;
}

/* The string field name of o, or NULL. */
static const char *str_field(json_object *o, const char *name, size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	*len = json_object_get_string_len(v);
	return json_object_get_string(v);
}

static json_object *parse_json(const char *body, size_t len, char *why, size_t why_len)
{
	struct json_tokener *tok;
	json_object *o;

	if (len > ID_MAX_RESPONSE_BYTES) {
		id_why(why, why_len, "the answer is larger than %d bytes", ID_MAX_RESPONSE_BYTES);
		return NULL;
	}
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		id_why(why, why_len, "the answer is not one JSON object");
		json_object_put(o);
		o = NULL;
	} else if (!json_object_is_type(o, json_type_object)) {
		id_why(why, why_len, "the answer is JSON but not an object");
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

int id_issue_decode(const char *body, size_t len, EVP_PKEY *key, X509 **leaf,
		    STACK_OF(X509) * *chain, int64_t *expires, char *why, size_t why_len)
{
	json_object *o = parse_json(body, len, why, why_len), *ev;
	const char *cert, *ch;
	size_t cl = 0, chl = 0;
	BIO *bio = NULL;
	X509 *x;
	int ret = -EINVAL;

	*leaf = NULL;
	*chain = NULL;
	if (!o)
		return -EINVAL;
	cert = str_field(o, "certificate", &cl);
	ch = str_field(o, "chain", &chl);
	if (!cert || !cl) {
		id_why(why, why_len, "the answer has no \"certificate\" string");
		goto out;
	}
	if (!json_object_object_get_ex(o, "expires", &ev) ||
	    !json_object_is_type(ev, json_type_int)) {
		id_why(why, why_len, "the answer has no integer \"expires\"");
		goto out;
	}
	*expires = json_object_get_int64(ev);
	bio = BIO_new_mem_buf(cert, (int)cl);
	*chain = sk_X509_new_null();
	if (!bio || !*chain) {
		ret = -ENOMEM;
		goto out;
	}
	*leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!*leaf) {
		id_why(why, why_len, "\"certificate\" is not a PEM certificate");
		goto out;
	}
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x) {
		X509_free(x);
		id_why(why, why_len, "\"certificate\" holds more than one certificate");
		goto out;
	}
	ERR_clear_error();
	if (X509_check_private_key(*leaf, key) != 1) {
		id_why(why, why_len, "\"certificate\" is not for the key of this request");
		goto out;
	}
	BIO_free(bio);
	bio = NULL;
	if (ch && chl) {
		bio = BIO_new_mem_buf(ch, (int)chl);
		if (!bio) {
			ret = -ENOMEM;
			goto out;
		}
		while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
			if (!sk_X509_push(*chain, x)) {
				X509_free(x);
				ret = -ENOMEM;
				goto out;
			}
		}
		ERR_clear_error();
		if (!sk_X509_num(*chain)) {
			id_why(why, why_len, "\"chain\" holds no PEM certificate");
			goto out;
		}
	}
	ret = 0;
out:
	ERR_clear_error();
	BIO_free(bio);
	json_object_put(o);
	if (ret) {
		X509_free(*leaf);
		sk_X509_pop_free(*chain, X509_free);
		*leaf = NULL;
		*chain = NULL;
	}
	return ret;
}

const char *id_issue_error(const char *body, size_t len, char *why, size_t why_len)
{
	char sub[64];
	json_object *o = parse_json(body, len, sub, sizeof(sub));
	const char *e = NULL;
	size_t el = 0;

	if (o)
		e = str_field(o, "error", &el);
	if (!e || !el) {
		id_why(why, why_len, "no \"error\" in the answer");
	} else {
		size_t n = el < why_len - 1 ? el : why_len - 1;

		for (size_t i = 0; i < n; i++)
			why[i] = (e[i] >= 0x20 && e[i] < 0x7f) ? e[i] : '?';
		why[n] = '\0';
	}
	json_object_put(o);
	return why;
}
