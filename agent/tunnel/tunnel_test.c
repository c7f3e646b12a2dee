// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The pure parts of the encrypted hop: the SNI name that asks a server
 * for an identity (both ways, and what a hostile name gets), and the
 * identity a peer certificate proves (exactly one SPIFFE URI SAN of the
 * trust domain). Certificates are made at test time (identity/testca.h).
 * The hop itself is tested end to end in tests/e2e/mtls.sh.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the helpers this test does not use */
#include "identity/testca.h"
#pragma GCC diagnostic pop
#include "tunnel/tunnel.h"

Test(tunnel_sni, round_trip)
{
	char sni[512], id[CONFIG_MAX_IDENTITY];

	cr_assert_eq(tunnel_sni_format("default/web", sni, sizeof(sni)), 0);
	cr_assert_str_eq(sni, "web.default.id.shoal");
	cr_assert_eq(tunnel_sni_parse(sni, id, sizeof(id)), 0);
	cr_assert_str_eq(id, "default/web");
	/* A service account may hold dots; the namespace, one label, is the last. */
	cr_assert_eq(tunnel_sni_format("prod/api.v2", sni, sizeof(sni)), 0);
	cr_assert_str_eq(sni, "api.v2.prod.id.shoal");
	cr_assert_eq(tunnel_sni_parse(sni, id, sizeof(id)), 0);
	cr_assert_str_eq(id, "prod/api.v2");
}

Test(tunnel_sni, too_small_a_buffer)
{
	char sni[8];

	cr_assert_eq(tunnel_sni_format("default/web", sni, sizeof(sni)), -ENAMETOOLONG);
	cr_assert_eq(tunnel_sni_format("no-slash", sni, sizeof(sni)), -EINVAL);
}

Test(tunnel_sni, hostile_names_refused)
{
	static const char *const bad[] = {
	    "",
	    "id.shoal",
	    ".id.shoal",
	    "web.id.shoal",		 /* no namespace */
	    "web.default.id.shoal.evil", /* suffix not last */
	    "web.default.example.com",
	    "WEB.default.id.shoal",  /* not lower case */
	    "we_b.default.id.shoal", /* the file source's separator */
	    "web..default.id.shoal",
	    "web.-default.id.shoal",
	};
	char id[CONFIG_MAX_IDENTITY];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(tunnel_sni_parse(bad[i], id, sizeof(id)), -EINVAL, "accepted \"%s\"",
			     bad[i]);
}

/* The identity a leaf with SAN san (NULL: none) proves in trust domain td. */
static int identity_of(const char *san, const char *td, char *id, size_t len, char *why,
		       size_t why_len)
{
	EVP_PKEY *key = tca_key();
	X509 *x = tca_cert(key, "leaf", NULL, NULL, -60, 3600, 0, san);
	int ret;

	cr_assert(x);
	ret = tunnel_peer_identity(x, td, id, len, why, why_len);
	X509_free(x);
	EVP_PKEY_free(key);
	return ret;
}

Test(tunnel_peer, spiffe_id_of_the_trust_domain)
{
	char id[CONFIG_MAX_IDENTITY], why[256];

	cr_assert_eq(identity_of("spiffe://cluster.local/ns/default/sa/web", "cluster.local", id,
				 sizeof(id), why, sizeof(why)),
		     0, "%s", why);
	cr_assert_str_eq(id, "default/web");
}

Test(tunnel_peer, wrong_trust_domain_refused)
{
	char id[CONFIG_MAX_IDENTITY], why[256];

	cr_assert_eq(identity_of("spiffe://evil.example/ns/default/sa/web", "cluster.local", id,
				 sizeof(id), why, sizeof(why)),
		     -EACCES);
	cr_assert(strstr(why, "not of trust domain cluster.local"), "why: %s", why);
	/* A trust domain that merely starts with ours is another one. */
	cr_assert_eq(identity_of("spiffe://cluster.local.evil/ns/default/sa/web", "cluster.local",
				 id, sizeof(id), why, sizeof(why)),
		     -EACCES);
}

Test(tunnel_peer, not_a_workload_id_refused)
{
	static const char *const bad[] = {
	    "https://cluster.local/ns/default/sa/web",
	    "spiffe://cluster.local/ns/default",
	    "spiffe://cluster.local/ns/default/sa/",
	    "spiffe://cluster.local/ns//sa/web",
	    "spiffe://cluster.local/ns/default/sa/web/extra",
	    "spiffe://cluster.local/ns/Default/sa/web",
	};
	char id[CONFIG_MAX_IDENTITY], why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(identity_of(bad[i], "cluster.local", id, sizeof(id), why, sizeof(why)),
			     -EACCES, "accepted %s", bad[i]);
}

Test(tunnel_peer, no_uri_san_refused)
{
	char id[CONFIG_MAX_IDENTITY], why[256];

	cr_assert_eq(identity_of(NULL, "cluster.local", id, sizeof(id), why, sizeof(why)), -EACCES);
	cr_assert(strstr(why, "0 URI SANs"), "why: %s", why);
}
