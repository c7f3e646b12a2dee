// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for what reads an identity from hostile bytes
 * (scripts/fuzz-identity.sh). The first byte picks the target:
 *   0: spiffe_id_parse of the rest; what parses must format back to the
 *      same bytes (one spelling per ID), else abort;
 *   1: the rest as a DER certificate request, given to shoal-identity's
 *      issue_csr_check as PEM (what an agent sends);
 *   2: the rest as a DER certificate, its subjectAltName through
 *      id_san_spiffe_id (what a peer's leaf carries).
 */
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity/spiffe.h"
#include "identity/verify.h"
#include "issue.h"

static void spiffe_target(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), buf[SPIFFE_ID_STR_MAX];
	struct spiffe_id id;

	memcpy(s, data, size);
	s[size] = '\0';
	if (spiffe_id_parse(s, &id) == 0) {
		if (spiffe_id_format(&id, buf, sizeof(buf)) != 0 || strcmp(buf, s) != 0)
			abort();
	}
	free(s);
}

static void csr_target(const uint8_t *data, size_t size)
{
	BIO *bio = BIO_new(BIO_s_mem());
	struct spiffe_id id;
	X509_REQ *req = NULL;
	char why[ID_WHY_MAX], *pem;
	long len;

	PEM_write_bio(bio, "CERTIFICATE REQUEST", "", data, (long)size);
	len = BIO_get_mem_data(bio, &pem);
	if (issue_csr_check(pem, (size_t)len, "cluster.local", &req, &id, why, sizeof(why)) == 0) {
		if (!req || strcmp(id.trust_domain, "cluster.local") != 0)
			abort();
	}
	X509_REQ_free(req);
	BIO_free(bio);
}

static void san_target(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509 *x = d2i_X509(NULL, &p, (long)size);
	GENERAL_NAMES *names;
	struct spiffe_id id;
	char why[ID_WHY_MAX];

	if (!x)
		return;
	names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	id_san_spiffe_id(names, NULL, &id, why, sizeof(why));
	GENERAL_NAMES_free(names);
	X509_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		spiffe_target(data + 1, size - 1);
		break;
	case 1:
		csr_target(data + 1, size - 1);
		break;
	default:
		san_target(data + 1, size - 1);
		break;
	}
	return 0;
}
