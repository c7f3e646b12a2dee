// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "identity/store.h"
#include "identity/testca.h"

#define TD "cluster.local"
#define DAY (24 * 3600L)

static struct id_store *st;
static EVP_PKEY *root_key;
static X509 *root;
static char dir[64];

static void setup(void)
{
	cr_assert_eq(id_store_new(TD, &st), 0);
	root_key = tca_key();
	root = tca_cert(root_key, "root A", NULL, NULL, -60, 30 * DAY, 1, NULL);
	snprintf(dir, sizeof(dir), "/tmp/idstore-test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	id_store_free(st);
	X509_free(root);
	EVP_PKEY_free(root_key);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(identity_store, .init = setup, .fini = teardown);

/* A leaf for (ns, sa) signed by root, valid for life seconds from now. */
static X509 *leaf_for(EVP_PKEY *key, const char *ns, const char *sa, long life)
{
	char uri[ID_MAX_SPIFFE_ID];

	snprintf(uri, sizeof(uri), "spiffe://%s/ns/%s/sa/%s", TD, ns, sa);
	return tca_cert(key, sa, root, root_key, -60, life, 0, uri);
}

static struct id_cred *cred_for(const char *ns, const char *sa, long life)
{
	EVP_PKEY *k = tca_key();
	X509 *l = leaf_for(k, ns, sa, life);
	struct id_cred *c;
	char why[256];

	cr_assert_eq(id_cred_new(st, ns, sa, k, l, NULL, &c, why, sizeof(why)), 0, "%s", why);
	EVP_PKEY_free(k);
	X509_free(l);
	return c;
}

Test(identity_store, cred_holds_the_spiffe_id_and_expiry)
{
	struct id_cred *c = cred_for("shop", "cart", 3600), *got;
	time_t now = time(NULL);

	cr_assert_str_eq(c->spiffe_id, "spiffe://cluster.local/ns/shop/sa/cart");
	cr_assert(c->not_after >= now + 3600 - 5 && c->not_after <= now + 3600 + 5,
		  "not_after %ld, now %ld", (long)c->not_after, (long)now);
	cr_assert_eq(id_store_get(st, "shop", "cart", &got), -ENOENT);
	cr_assert_eq(id_store_set(st, c), 0);
	cr_assert_eq(id_store_get(st, "shop", "cart", &got), 0);
	cr_assert_eq(got, c);
	cr_assert_eq(id_store_get(st, "shop", "carts", &got), -ENOENT);
	cr_assert_eq(id_store_get(st, "sho", "cart", &got), -ENOENT);
	id_cred_put(c);
}

Test(identity_store, cred_new_refuses_what_is_not_this_identity)
{
	EVP_PKEY *k = tca_key(), *other = tca_key(), *p384 = EVP_EC_gen("P-384");
	X509 *l = leaf_for(k, "shop", "cart", 3600), *two, *none, *l384;
	struct id_cred *c;
	char why[256];

	/* another service account's certificate */
	cr_assert_eq(id_cred_new(st, "shop", "pay", k, l, NULL, &c, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "spiffe://cluster.local/ns/shop/sa/cart, not "), "%s", why);
	/* a key that is not the certificate's */
	cr_assert_eq(id_cred_new(st, "shop", "cart", other, l, NULL, &c, why, sizeof(why)),
		     -EINVAL);
	cr_assert(strstr(why, "does not match"), "%s", why);
	/* two URI SANs */
	two =
	    tca_cert(k, "x", root, root_key, -60, 3600, 0,
		     "spiffe://cluster.local/ns/shop/sa/cart,URI:spiffe://cluster.local/ns/a/sa/b");
	cr_assert_eq(id_cred_new(st, "shop", "cart", k, two, NULL, &c, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "2 URI SANs"), "%s", why);
	none = tca_cert(k, "x", root, root_key, -60, 3600, 0, NULL);
	cr_assert_eq(id_cred_new(st, "shop", "cart", k, none, NULL, &c, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "no subjectAltName"), "%s", why);
	/* another trust domain's store */
	{
		struct id_store *o;

		cr_assert_eq(id_store_new("other.td", &o), 0);
		cr_assert_eq(id_cred_new(o, "shop", "cart", k, l, NULL, &c, why, sizeof(why)),
			     -EINVAL);
		id_store_free(o);
	}
	/* a namespace that is no Kubernetes name (spiffe.h's rules) */
	cr_assert_eq(id_cred_new(st, "Shop", "cart", k, l, NULL, &c, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "is not a Kubernetes name"), "%s", why);
	/* P-384 is not what the mesh issues */
	l384 = tca_cert(p384, "x", root, root_key, -60, 3600, 0,
			"spiffe://cluster.local/ns/shop/sa/cart");
	cr_assert_eq(id_cred_new(st, "shop", "cart", p384, l384, NULL, &c, why, sizeof(why)),
		     -EINVAL);
	cr_assert(strstr(why, "P-256"), "%s", why);
	X509_free(l);
	X509_free(two);
	X509_free(none);
	X509_free(l384);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
	EVP_PKEY_free(p384);
}

Test(identity_store, a_reader_keeps_what_it_holds_across_a_swap)
{
	struct id_cred *a = cred_for("shop", "cart", 3600), *b = cred_for("shop", "cart", 7200);
	struct id_cred *held, *now;
	X509 *leaf_a;

	cr_assert_eq(id_store_set(st, a), 0);
	cr_assert_eq(id_store_get(st, "shop", "cart", &held), 0);
	leaf_a = held->leaf;
	cr_assert_eq(id_store_set(st, b), 0); /* the store's reference to a is gone */
	cr_assert_eq(id_store_get(st, "shop", "cart", &now), 0);
	cr_assert_eq(now, b);
	/* held is still a, whole: a freed one would fail under ASan here */
	cr_assert_eq(held->leaf, leaf_a);
	cr_assert_eq(X509_check_private_key(held->leaf, held->key), 1);
	id_cred_put(held);
	id_cred_put(now);
	cr_assert_eq(id_store_drop(st, "shop", "cart"), 0);
	cr_assert_eq(id_store_drop(st, "shop", "cart"), -ENOENT);
	cr_assert_eq(id_store_get(st, "shop", "cart", &now), -ENOENT);
}

Test(identity_store, expired_is_not_handed_out_and_expire_removes_it)
{
	struct id_cred *old = cred_for("a", "old", -1), *live = cred_for("a", "live", 3600), *got;

	cr_assert_eq(id_store_set(st, old), 0);
	cr_assert_eq(id_store_set(st, live), 0);
	cr_assert_eq(id_store_get(st, "a", "old", &got), -ENOENT);
	cr_assert_eq(id_store_expire(st, time(NULL)), 1);
	cr_assert_eq(id_store_drop(st, "a", "old"), -ENOENT);
	cr_assert_eq(id_store_get(st, "a", "live", &got), 0);
	id_cred_put(got);
}

static void count_each(const struct id_cred *c, void *arg)
{
	char *order = arg;

	strcat(order, c->sa);
	strcat(order, ",");
}

Test(identity_store, each_walks_in_order)
{
	char order[64] = "";

	cr_assert_eq(id_store_set(st, cred_for("b", "z", 3600)), 0);
	cr_assert_eq(id_store_set(st, cred_for("a", "y", 3600)), 0);
	cr_assert_eq(id_store_set(st, cred_for("b", "x", 3600)), 0);
	cr_assert_eq(id_store_each(st, count_each, order), 3);
	cr_assert_str_eq(order, "y,x,z,");
}

/* PEM of n roots, each self-signed. */
static char *roots_pem(X509 *a, X509 *b)
{
	char *pa = tca_pem(a, NULL), *pb = b ? tca_pem(b, NULL) : strdup(""), *out;

	out = malloc(strlen(pa) + strlen(pb) + 1);
	strcpy(out, pa);
	strcat(out, pb);
	free(pa);
	free(pb);
	return out;
}

/* 0 if leaf verifies against anchors (chain: none). */
static int verify_with(X509_STORE *anchors, X509 *leaf)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;

	X509_STORE_CTX_init(ctx, anchors, leaf, NULL);
	ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	return ok == 1 ? 0 : -1;
}

Test(identity_store, anchors_one_or_two_roots_and_a_swap)
{
	EVP_PKEY *kb = tca_key(), *lk = tca_key();
	X509 *root_b = tca_cert(kb, "root B", NULL, NULL, -60, 30 * DAY, 1, NULL), *leaf_b;
	X509_STORE *a1, *a2, *held;
	char *one = roots_pem(root, NULL), *two = roots_pem(root, root_b), why[256];
	int n;

	leaf_b = tca_cert(lk, "x", root_b, kb, -60, 3600, 0, "spiffe://cluster.local/ns/a/sa/b");
	cr_assert_null(id_store_anchors(st));
	cr_assert_eq(id_anchors_parse(one, strlen(one), time(NULL), &a1, &n, why, sizeof(why)), 0,
		     "%s", why);
	cr_assert_eq(n, 1);
	id_store_set_anchors(st, a1, n);
	held = id_store_anchors(st);
	cr_assert_eq(verify_with(held, leaf_b), -1, "root B is not trusted yet");

	/* the rotation: A and B at once */
	cr_assert_eq(id_anchors_parse(two, strlen(two), time(NULL), &a2, &n, why, sizeof(why)), 0,
		     "%s", why);
	cr_assert_eq(n, 2);
	id_store_set_anchors(st, a2, n);
	cr_assert_eq(id_store_n_anchors(st), 2);
	{
		X509_STORE *cur = id_store_anchors(st);

		cr_assert_eq(verify_with(cur, leaf_b), 0);
		X509_STORE_free(cur);
	}
	/* the reader that took the old anchors still has them, unchanged */
	cr_assert_eq(verify_with(held, leaf_b), -1);
	X509_STORE_free(held);
	free(one);
	free(two);
	X509_free(root_b);
	X509_free(leaf_b);
	EVP_PKEY_free(kb);
	EVP_PKEY_free(lk);
}

static int parse_fails(const char *pem, const char *want)
{
	X509_STORE *a = NULL;
	char why[256] = "";
	int n = -1, ret;

	ret = id_anchors_parse(pem, strlen(pem), time(NULL), &a, &n, why, sizeof(why));
	cr_assert_eq(ret, -EINVAL, "accepted: %s", pem);
	cr_assert_null(a);
	cr_assert_eq(n, 0);
	cr_assert(strstr(why, want), "reason \"%s\" lacks \"%s\"", why, want);
	return 0;
}

Test(identity_store, bad_anchor_bundles_are_refused_by_name)
{
	EVP_PKEY *k = tca_key();
	X509 *r2 = tca_cert(k, "r2", NULL, NULL, -60, DAY, 1, NULL);
	X509 *r3 = tca_cert(k, "r3", NULL, NULL, -60, DAY, 1, NULL);
	X509 *old = tca_cert(k, "old", NULL, NULL, -2 * DAY, -DAY, 1, NULL);
	X509 *leaf = leaf_for(k, "a", "b", 3600);
	char *p1 = tca_pem(root, NULL), *p2 = tca_pem(r2, NULL), *p3 = tca_pem(r3, NULL);
	char *pold = tca_pem(old, NULL), *pleaf = tca_pem(leaf, NULL), *pkey = tca_pem(NULL, k);
	char buf[16384];

	parse_fails("", "no certificate");
	parse_fails("   \n", "no certificate");
	snprintf(buf, sizeof(buf), "%s%s%s", p1, p2, p3);
	parse_fails(buf, "3 certificates, more than 2");
	parse_fails(pleaf, "not a self-signed CA");
	parse_fails(pold, "not valid now");
	snprintf(buf, sizeof(buf), "%s%s", p1, pkey);
	parse_fails(buf, "block 2 is not a CERTIFICATE (-----BEGIN PRIVATE KEY-----)");
	snprintf(buf, sizeof(buf), "%sjunk\n%s", p1, p2);
	parse_fails(buf, "not a PEM block after certificate 1");
	snprintf(buf, sizeof(buf), "%.*s", (int)strlen(p1) - 30, p1);
	parse_fails(buf, "no END line");
	/* a corrupt body */
	snprintf(buf, sizeof(buf), "%s", p1);
	buf[100] = buf[100] == 'A' ? 'B' : 'A';
	buf[101] = '!';
	parse_fails(buf, "does not parse");
	free(p1);
	free(p2);
	free(p3);
	free(pold);
	free(pleaf);
	free(pkey);
	X509_free(r2);
	X509_free(r3);
	X509_free(old);
	X509_free(leaf);
	EVP_PKEY_free(k);
}

/* Write <ns>_<sa>.key/.crt for a fresh key into dir. */
static void write_pair(const char *ns, const char *sa)
{
	EVP_PKEY *k = tca_key();
	X509 *l = leaf_for(k, ns, sa, 3600);
	char path[256], *kp = tca_pem(NULL, k), *cp = tca_pem(l, NULL), *rp = tca_pem(root, NULL);

	snprintf(path, sizeof(path), "%s/%s_%s.key", dir, ns, sa);
	cr_assert_eq(tca_write(path, kp, NULL), 0);
	snprintf(path, sizeof(path), "%s/%s_%s.crt", dir, ns, sa);
	/* the leaf, then (here) the root as if it were an intermediate */
	cr_assert_eq(tca_write(path, cp, rp), 0);
	free(kp);
	free(cp);
	free(rp);
	X509_free(l);
	EVP_PKEY_free(k);
}

static void write_anchors(void)
{
	char path[256], *rp = tca_pem(root, NULL);

	snprintf(path, sizeof(path), "%s/anchors.pem", dir);
	cr_assert_eq(tca_write(path, rp, NULL), 0);
	free(rp);
}

Test(identity_store, file_source_loads_a_directory)
{
	struct id_cred *c;
	X509_STORE *a;
	char why[512];
	int n;

	write_pair("shop", "cart");
	write_pair("shop", "pay");
	write_anchors();
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 2);
	cr_assert_eq(id_store_get(st, "shop", "pay", &c), 0);
	cr_assert_str_eq(c->spiffe_id, "spiffe://cluster.local/ns/shop/sa/pay");
	cr_assert_eq(sk_X509_num(c->chain), 1);
	a = id_store_anchors(st);
	cr_assert_not_null(a);
	cr_assert_eq(verify_with(a, c->leaf), 0);
	X509_STORE_free(a);
	id_cred_put(c);
	cr_assert_eq(id_store_n_anchors(st), 1);
}

Test(identity_store, file_source_error_changes_nothing)
{
	struct id_cred *c;
	char why[512], path[256];
	int n;

	write_pair("shop", "cart");
	write_anchors();
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), 0, "%s", why);

	/* a key without its certificate */
	snprintf(path, sizeof(path), "%s/shop_lone.key", dir);
	cr_assert_eq(tca_write(path, "x", NULL), 0);
	cr_assert_neq(id_store_load_dir(st, dir, &n, why, sizeof(why)), 0);
	cr_assert(strstr(why, "shop_lone.key: not a PEM private key"), "%s", why);
	unlink(path);
	write_pair("shop", "lone");
	snprintf(path, sizeof(path), "%s/shop_lone.crt", dir);
	unlink(path);
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), -ENOENT);
	cr_assert(strstr(why, "shop_lone.crt: cannot read"), "%s", why);
	/* a pair named for another account than its certificate's */
	write_pair("shop", "lone");
	snprintf(path, sizeof(path), "%s/shop_lone.key", dir);
	{
		char to[256];

		snprintf(to, sizeof(to), "%s/shop_other.key", dir);
		cr_assert_eq(rename(path, to), 0);
		snprintf(path, sizeof(path), "%s/shop_lone.crt", dir);
		snprintf(to, sizeof(to), "%s/shop_other.crt", dir);
		cr_assert_eq(rename(path, to), 0);
	}
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "shop_other.crt: the certificate's URI SAN is"), "%s", why);
	/* a name without the underscore */
	snprintf(path, sizeof(path), "%s/shop_other.key", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/noname.key", dir);
	cr_assert_eq(tca_write(path, "x", NULL), 0);
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "noname.key: not named"), "%s", why);
	unlink(path);
	/* a bad anchors.pem */
	snprintf(path, sizeof(path), "%s/anchors.pem", dir);
	cr_assert_eq(tca_write(path, "nothing", NULL), 0);
	cr_assert_eq(id_store_load_dir(st, dir, &n, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "anchors.pem: "), "%s", why);

	/* through all of it, the first load's contents stayed */
	cr_assert_eq(id_store_get(st, "shop", "cart", &c), 0);
	id_cred_put(c);
	cr_assert_eq(id_store_get(st, "shop", "lone", &c), -ENOENT);
	cr_assert_eq(id_store_n_anchors(st), 1);
}

struct race {
	atomic_bool stop;
	atomic_long reads;
};

static void *reader(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		struct id_cred *c;

		if (!id_store_get(st, "shop", "cart", &c)) {
			/* touch what it holds: a freed one is an ASan error */
			cr_assert_eq(strcmp(c->sa, "cart"), 0);
			cr_assert_not_null(X509_get0_notAfter(c->leaf));
			id_cred_put(c);
			atomic_fetch_add(&r->reads, 1);
		}
		X509_STORE_free(id_store_anchors(st));
	}
	return NULL;
}

Test(identity_store, readers_race_writers)
{
	struct race r = {0};
	pthread_t t[3];
	struct id_cred *pool[4];

	for (int i = 0; i < 4; i++)
		pool[i] = cred_for("shop", "cart", 3600);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, reader, &r);
	/* until the readers have raced a fair number of swaps (bounded) */
	for (long i = 0; i < 20000 || (atomic_load(&r.reads) < 1000 && i < 50000000); i++) {
		if (i % 7 == 6)
			id_store_drop(st, "shop", "cart");
		else
			cr_assert_eq(id_store_set(st, id_cred_get(pool[i % 4])), 0);
		if (i % 1000 == 0) {
			X509_STORE *a = X509_STORE_new();

			X509_STORE_add_cert(a, root);
			id_store_set_anchors(st, a, 1);
		}
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		id_cred_put(pool[i]);
	cr_assert_geq(atomic_load(&r.reads), 1000);
}
