// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The identity controller's thread: the files source and the anchors
 * file, watched and swapped; what the issued source records when it
 * cannot ask (no anchors yet, an issuer that does not answer). The round
 * trip with shoal-identity itself is the e2e test's
 * (tests/e2e/identity-agent.sh).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "identity/identity.h"
#include "identity/testca.h"

#define TD "cluster.local"

static char dir[64];
static EVP_PKEY *ka, *kb;
static X509 *ra, *rb;
static struct identity *id;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/identity-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	ka = tca_key();
	kb = tca_key();
	ra = tca_cert(ka, "root A", NULL, NULL, -60, 86400, 1, NULL);
	rb = tca_cert(kb, "root B", NULL, NULL, -60, 86400, 1, NULL);
	id = NULL;
}

static void teardown(void)
{
	char cmd[128];

	identity_stop(id);
	X509_free(ra);
	X509_free(rb);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(identity, .init = setup, .fini = teardown);

static void cfg_init(struct config_identity *c, int source)
{
	memset(c, 0, sizeof(*c));
	c->enabled = true;
	c->source = source;
	snprintf(c->trust_domain, sizeof(c->trust_domain), "%s", TD);
	/* a port nothing listens on: connect refused at once */
	snprintf(c->server_url, sizeof(c->server_url), "https://127.0.0.1:1");
	snprintf(c->token_file, sizeof(c->token_file), "%s/token", dir);
	snprintf(c->anchors_file, sizeof(c->anchors_file), "%s/anchors.pem", dir);
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	c->lifetime_s = 20;
	c->renew_fraction = 0.5;
	c->renew_jitter = 0.1;
	c->backoff_min_ms = 50;
	c->backoff_max_ms = 200;
	c->drop_grace_ms = 0;
	c->poll_ms = 100;
	c->timeout_ms = 1000;
}

/* Write path (in dir) atomically, as the kubelet swaps a ConfigMap volume's files. */
static void put(const char *name, const char *a, const char *b)
{
	char path[128], tmp[140];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	cr_assert_eq(tca_write(tmp, a, b), 0);
	cr_assert_eq(rename(tmp, path), 0);
}

static void put_roots(X509 *a, X509 *b)
{
	char *pa = tca_pem(a, NULL), *pb = b ? tca_pem(b, NULL) : NULL;

	put("anchors.pem", pa, pb);
	free(pa);
	free(pb);
}

/* Wait up to 10 s for cond (the controller polls every 100 ms; a loaded machine, ASan). */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		for (int w_ = 0; w_ < 1000 && !(cond); w_++)                                       \
			usleep(10000);                                                             \
	} while (0)

static int n_anchors(void)
{
	return id_store_n_anchors(identity_store(id));
}

static uint64_t rejects(void)
{
	struct identity_stats st;

	identity_get_stats(id, &st);
	return st.anchors_rejects;
}

static bool anchors_error_has(const char *what)
{
	char err[ID_MAX_ERROR];

	identity_anchors_error(id, err, sizeof(err));
	return strstr(err, what) != NULL;
}

static int no_accounts(void *arg, struct id_account *out, int max)
{
	(void)arg;
	(void)out;
	(void)max;
	return 0;
}

Test(identity, anchors_file_two_roots_then_a_bad_bundle_keeps_the_last_good)
{
	struct config_identity c;
	char err[ID_MAX_ERROR];

	cfg_init(&c, CONFIG_ID_SOURCE_ISSUED);
	put_roots(ra, NULL);
	cr_assert_eq(identity_start(&c, no_accounts, NULL, &id), 0);
	WAIT_FOR(n_anchors() == 1);
	cr_assert_eq(n_anchors(), 1);

	/* the rotation: both roots */
	put_roots(ra, rb);
	WAIT_FOR(n_anchors() == 2);
	cr_assert_eq(n_anchors(), 2);

	/* a bundle with a private key in it: refused, the two roots stay */
	{
		char *pa = tca_pem(ra, NULL), *pk = tca_pem(NULL, ka);

		put("anchors.pem", pa, pk);
		free(pa);
		free(pk);
	}
	WAIT_FOR(rejects() == 1);
	cr_assert_eq(rejects(), 1);
	cr_assert_eq(n_anchors(), 2);
	identity_anchors_error(id, err, sizeof(err));
	cr_assert(strstr(err, "anchors.pem: refused: block 2 is not a CERTIFICATE"), "%s", err);
	/* the same bad bundle is not counted again on every poll */
	usleep(350000);
	cr_assert_eq(rejects(), 1);

	/* the file gone: still the last good bundle */
	{
		char path[128];

		snprintf(path, sizeof(path), "%s/anchors.pem", dir);
		cr_assert_eq(unlink(path), 0);
	}
	WAIT_FOR(anchors_error_has("cannot read"));
	cr_assert_eq(n_anchors(), 2);
	identity_anchors_error(id, err, sizeof(err));
	cr_assert(strstr(err, "cannot read"), "%s", err);

	/* the rotation's end: root B alone */
	put_roots(rb, NULL);
	WAIT_FOR(n_anchors() == 1);
	cr_assert_eq(n_anchors(), 1);
	identity_anchors_error(id, err, sizeof(err));
	cr_assert_str_eq(err, "");
}

static int one_account(void *arg, struct id_account *out, int max)
{
	(void)arg;
	cr_assert_geq(max, 1);
	snprintf(out[0].ns, sizeof(out[0].ns), "shop");
	snprintf(out[0].sa, sizeof(out[0].sa), "cart");
	return 1;
}

static struct id_status status_of_cart(void)
{
	struct id_status *st, one = {0};
	int n = identity_status(id, &st);

	for (int i = 0; i < n; i++)
		if (!strcmp(st[i].sa, "cart"))
			one = st[i];
	free(st);
	return one;
}

Test(identity, issued_without_anchors_asks_nobody_and_says_why)
{
	struct config_identity c;
	struct identity_stats stats;
	struct id_status s;

	cfg_init(&c, CONFIG_ID_SOURCE_ISSUED);
	cr_assert_eq(identity_start(&c, one_account, NULL, &id), 0);
	WAIT_FOR(status_of_cart().failures >= 2);
	s = status_of_cart();
	cr_assert_geq(s.failures, 2);
	cr_assert_str_eq(s.spiffe_id, "spiffe://cluster.local/ns/shop/sa/cart");
	cr_assert(strstr(s.last_error, "local: no trust anchors yet"), "%s", s.last_error);
	cr_assert_eq(s.not_after, 0);
	identity_get_stats(id, &stats);
	cr_assert_geq(stats.requests[ID_OUTCOME_local], 2);
	cr_assert_eq(stats.requests[ID_OUTCOME_transport], 0);
	cr_assert_eq(stats.certificates, 0);
}

Test(identity, issued_with_the_issuer_down_backs_off)
{
	struct config_identity c;
	struct identity_stats stats;
	struct id_status s;
	struct timespec t0, t1;
	double secs;

	cfg_init(&c, CONFIG_ID_SOURCE_ISSUED);
	put_roots(ra, NULL);
	put("token", "e2e-token\n", NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(identity_start(&c, one_account, NULL, &id), 0);
	WAIT_FOR(status_of_cart().failures >= 5);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = status_of_cart();
	cr_assert_geq(s.failures, 5);
	cr_assert(strstr(s.last_error, "transport: https://127.0.0.1:1/v1/certificates"), "%s",
		  s.last_error);
	identity_get_stats(id, &stats);
	cr_assert_geq(stats.requests[ID_OUTCOME_transport], 5);
	/* no certificate was ever held: these are not renewal failures */
	cr_assert_eq(stats.renewal_failures, 0);
	/*
	 * Back-off from 50 ms doubling to 200 ms, equal jitter: the 4 waits
	 * before the 5th try are at least 25 + 50 + 100 + 100 ms.
	 */
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_geq(secs, 0.275, "5 tries in %.3f s: no back-off", secs);
	/* and the next try is planned no further than the cap */
	cr_assert_leq(s.next_ms, (int64_t)time(NULL) * 1000 + 1000 + 200);
}

static bool has_cart(void)
{
	struct id_cred *cred;

	if (id_store_get(identity_store(id), "shop", "cart", &cred))
		return false;
	id_cred_put(cred);
	return true;
}

Test(identity, files_source_loads_and_reloads_the_directory)
{
	struct config_identity c;
	struct id_cred *cred;
	EVP_PKEY *k = tca_key();
	char uri[128], *kp, *cp;
	X509 *leaf;

	snprintf(uri, sizeof(uri), "spiffe://%s/ns/shop/sa/cart", TD);
	leaf = tca_cert(k, "cart", ra, ka, -60, 3600, 0, uri);
	kp = tca_pem(NULL, k);
	cp = tca_pem(leaf, NULL);
	put("shop_cart.key", kp, NULL);
	put("shop_cart.crt", cp, NULL);
	put_roots(ra, NULL);
	cfg_init(&c, CONFIG_ID_SOURCE_FILES);
	cr_assert_eq(identity_start(&c, NULL, NULL, &id), 0);
	WAIT_FOR(has_cart());
	cr_assert_eq(id_store_get(identity_store(id), "shop", "cart", &cred), 0);
	cr_assert_eq(X509_cmp(cred->leaf, leaf), 0);
	id_cred_put(cred);
	/* the status table follows the store (the same poll, a moment later) */
	WAIT_FOR(status_of_cart().not_after != 0);
	{
		int64_t na = status_of_cart().not_after, want = (int64_t)time(NULL) + 3600;

		cr_assert(na >= want - 5 && na <= want + 5, "not_after %lld, want ~%lld",
			  (long long)na, (long long)want);
	}

	/* a second root added: the directory is loaded again */
	put_roots(ra, rb);
	WAIT_FOR(n_anchors() == 2);
	cr_assert_eq(n_anchors(), 2);
	/* a bad change is refused and the last load stays */
	put("shop_cart.crt", "junk", NULL);
	WAIT_FOR(rejects() == 1);
	cr_assert_eq(rejects(), 1);
	cr_assert_eq(id_store_get(identity_store(id), "shop", "cart", &cred), 0);
	id_cred_put(cred);
	cr_assert_eq(n_anchors(), 2);
	free(kp);
	free(cp);
	X509_free(leaf);
	EVP_PKEY_free(k);
}
