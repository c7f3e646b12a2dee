// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The names of the encrypted hop, pure functions: the SNI name that asks
 * a server for an identity, and the identity a verified peer certificate
 * proves (its one SPIFFE URI SAN). No I/O, no state: unit-tested in
 * tunnel_test.c.
 */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The suffix of every SNI name the tunnel sends: not a DNS zone anyone serves. */
#define TUNNEL_SNI_SUFFIX ".id.shoal"

int tunnel_sni_format(const char *id, char *buf, size_t len)
{
	const char *slash = strchr(id, '/');
	int n;

	if (!slash)
		return -EINVAL;
	/* <sa>.<ns>: a namespace is one label, so it is the last one before the suffix. */
	n = snprintf(buf, len, "%s.%.*s" TUNNEL_SNI_SUFFIX, slash + 1, (int)(slash - id), id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int tunnel_sni_parse(const char *sni, char *id, size_t len)
{
	size_t n = strlen(sni), sl = strlen(TUNNEL_SNI_SUFFIX);
	const char *dot;
	int w;

	if (n <= sl || strcmp(sni + n - sl, TUNNEL_SNI_SUFFIX))
		return -EINVAL;
	n -= sl;
	/* The last label before the suffix is the namespace. */
	dot = memrchr(sni, '.', n);
	if (!dot || dot == sni || (size_t)(dot - sni) + 1 == n)
		return -EINVAL;
	w = snprintf(id, len, "%.*s/%.*s", (int)(n - (size_t)(dot + 1 - sni)), dot + 1,
		     (int)(dot - sni), sni);
	if (w < 0 || (size_t)w >= len)
		return -EINVAL;
	return config_identity_valid(id) ? 0 : -EINVAL;
}

int tunnel_peer_identity(struct x509_st *leaf, const char *td, char *id, size_t len, char *why,
			 size_t why_len)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	const char *uri = NULL, *p, *ns, *sa;
	char prefix[CONFIG_MAX_TRUST_DOMAIN + 16];
	int n_uri = 0, w;
	size_t uri_len = 0, ns_len;

	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

		if (gn->type != GEN_URI)
			continue;
		n_uri++;
		uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		uri_len = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
	}
	if (n_uri != 1) {
		snprintf(why, why_len, "the certificate has %d URI SANs, not exactly one SPIFFE ID",
			 n_uri);
		goto refuse;
	}
	if (strlen(uri) != uri_len) {
		snprintf(why, why_len, "the certificate's URI SAN holds a NUL byte");
		goto refuse;
	}
	snprintf(prefix, sizeof(prefix), "spiffe://%s/ns/", td);
	if (strncmp(uri, prefix, strlen(prefix))) {
		snprintf(why, why_len,
			 "the certificate's SPIFFE ID %.300s is not of trust domain %s", uri, td);
		goto refuse;
	}
	ns = uri + strlen(prefix);
	p = strstr(ns, "/sa/");
	if (!p) {
		snprintf(why, why_len,
			 "the certificate's SPIFFE ID %.300s names no service account", uri);
		goto refuse;
	}
	ns_len = (size_t)(p - ns);
	sa = p + 4;
	w = snprintf(id, len, "%.*s/%s", (int)ns_len, ns, sa);
	if (w < 0 || (size_t)w >= len || !config_identity_valid(id)) {
		snprintf(why, why_len,
			 "the certificate's SPIFFE ID %.300s is not spiffe://%s/ns/<ns>/sa/<sa>",
			 uri, td);
		goto refuse;
	}
	GENERAL_NAMES_free(sans);
	return 0;

refuse:
	GENERAL_NAMES_free(sans);
	return -EACCES;
}
