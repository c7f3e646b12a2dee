// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The credential store (store.h) and its file source.
 *
 * One mutex guards two pointers' worth of state: the sorted array of
 * credential pointers and the anchors pointer. Everything expensive
 * (parsing, key generation, a CSR's round trip) happens before a writer
 * takes it, and every free happens after it lets go, so a reader waits at
 * most for a memmove of ID_MAX_CREDS pointers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/spiffe.h"
#include "identity/store.h"
#include "identity/why.h"

struct id_store {
	pthread_mutex_t lock;	/* guards creds, n_creds, anchors, n_anchors */
	struct id_cred **creds; /* ID_MAX_CREDS slots, sorted by (ns, sa) */
	int n_creds;
	X509_STORE *anchors;
	int n_anchors;
	char td[ID_MAX_TRUST_DOMAIN];
};

int id_store_new(const char *td, struct id_store **out)
{
	struct id_store *s;

	*out = NULL;
	if (!td || !td[0] || strlen(td) >= ID_MAX_TRUST_DOMAIN)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->creds = calloc(ID_MAX_CREDS, sizeof(*s->creds));
	if (!s->creds) {
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->td, sizeof(s->td), "%s", td);
	*out = s;
	return 0;
}

void id_store_free(struct id_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_creds; i++)
		id_cred_put(s->creds[i]);
	X509_STORE_free(s->anchors);
	pthread_mutex_destroy(&s->lock);
	free(s->creds);
	free(s);
}

const char *id_store_trust_domain(const struct id_store *s)
{
	return s->td;
}

static int cred_cmp(const char *ns, const char *sa, const struct id_cred *c)
{
	int r = strcmp(ns, c->ns);

	return r ? r : strcmp(sa, c->sa);
}

/* Index of (ns, sa), or -(insertion point) - 1. Lock held. */
static int find_locked(const struct id_store *s, const char *ns, const char *sa)
{
	int lo = 0, hi = s->n_creds;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int r = cred_cmp(ns, sa, s->creds[mid]);

		if (!r)
			return mid;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -lo - 1;
}

struct id_cred *id_cred_get(struct id_cred *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void id_cred_put(struct id_cred *c)
{
	if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* EVP_PKEY_free zeroizes the private key (OpenSSL clears BIGNUMs it frees). */
	EVP_PKEY_free(c->key);
	X509_free(c->leaf);
	sk_X509_pop_free(c->chain, X509_free);
	free(c);
}

int id_store_get(struct id_store *s, const char *ns, const char *sa, struct id_cred **out)
{
	time_t now = time(NULL);
	int i, ret = -ENOENT;

	*out = NULL;
	pthread_mutex_lock(&s->lock);
	i = find_locked(s, ns, sa);
	if (i >= 0 && now < s->creds[i]->not_after) {
		*out = id_cred_get(s->creds[i]);
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

X509_STORE *id_store_anchors(struct id_store *s)
{
	X509_STORE *a;

	pthread_mutex_lock(&s->lock);
	a = s->anchors;
	if (a)
		X509_STORE_up_ref(a);
	pthread_mutex_unlock(&s->lock);
	return a;
}

int id_store_n_anchors(struct id_store *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->n_anchors;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static time_t asn1_to_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

/*
 * The leaf's one URI SAN into buf; -EINVAL naming the problem when it has
 * none, several, or another kind of name as well (a workload certificate
 * names one identity and nothing else).
 */
static int leaf_uri_san(X509 *leaf, char *buf, size_t len, char *why, size_t why_len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	int n, n_uri = 0, ret = 0;

	if (!names) {
		id_why(why, why_len, "the certificate has no subjectAltName");
		return -EINVAL;
	}
	n = sk_GENERAL_NAME_num(names);
	for (int i = 0; i < n; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const unsigned char *d;
		int dlen;

		if (g->type != GEN_URI) {
			id_why(why, why_len,
			       "the certificate has a subjectAltName other than a URI");
			ret = -EINVAL;
			break;
		}
		n_uri++;
		d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		dlen = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (dlen <= 0 || (size_t)dlen >= len || memchr(d, '\0', dlen)) {
			id_why(why, why_len,
			       "the certificate's URI SAN is empty, too long or has a NUL");
			ret = -EINVAL;
			break;
		}
		memcpy(buf, d, dlen);
		buf[dlen] = '\0';
	}
	if (!ret && n_uri != 1) {
		id_why(why, why_len, "the certificate has %d URI SANs, not exactly one", n_uri);
		ret = -EINVAL;
	}
	GENERAL_NAMES_free(names);
	return ret;
}

/* True if key is an EC key on P-256 (prime256v1). */
static bool key_is_p256(EVP_PKEY *key)
{
	char group[64];
	size_t glen = 0;

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC)
		return false;
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    &glen))
		return false;
	return !strcmp(group, SN_X9_62_prime256v1);
}

int id_spiffe_string(const char *td, const char *ns, const char *sa, char *buf, size_t len)
{
	struct spiffe_id id;
	int err = spiffe_id_make(&id, td, ns, sa);

	return err ? err : spiffe_id_format(&id, buf, len);
}

int id_cred_new(const struct id_store *s, const char *ns, const char *sa, EVP_PKEY *key, X509 *leaf,
		STACK_OF(X509) * chain, struct id_cred **out, char *why, size_t why_len)
{
	char want[ID_MAX_SPIFFE_ID], got[ID_MAX_SPIFFE_ID], err[160];
	struct id_cred *c;
	int n_chain = chain ? sk_X509_num(chain) : 0;
	int ret;

	*out = NULL;
	if (!ns[0] || strlen(ns) >= ID_MAX_NS || !sa[0] || strlen(sa) >= ID_MAX_SA) {
		id_why(why, why_len,
		       "namespace \"%.63s\" or service account \"%.63s\" is empty or too long", ns,
		       sa);
		return -EINVAL;
	}
	if (!key || !leaf) {
		id_why(why, why_len, "no key or no certificate");
		return -EINVAL;
	}
	if (!key_is_p256(key)) {
		id_why(why, why_len, "the key is not an EC P-256 key");
		return -EINVAL;
	}
	if (X509_check_private_key(leaf, key) != 1) {
		id_why(why, why_len, "the key does not match the certificate (%s)",
		       id_ossl_reason(err, sizeof(err)));
		return -EINVAL;
	}
	if (n_chain > ID_MAX_CHAIN) {
		id_why(why, why_len, "the chain has %d intermediates, more than %d", n_chain,
		       ID_MAX_CHAIN);
		return -EINVAL;
	}
	ret = leaf_uri_san(leaf, got, sizeof(got), why, why_len);
	if (ret)
		return ret;
	if (id_spiffe_string(s->td, ns, sa, want, sizeof(want))) {
		id_why(why, why_len,
		       "namespace \"%.63s\" or service account \"%.63s\" is not a "
		       "Kubernetes name",
		       ns, sa);
		return -EINVAL;
	}
	if (strcmp(got, want)) {
		id_why(why, why_len, "the certificate's URI SAN is %s, not %s", got, want);
		return -EINVAL;
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->chain = sk_X509_new_null();
	if (!c->chain) {
		free(c);
		return -ENOMEM;
	}
	for (int i = 0; i < n_chain; i++) {
		X509 *x = sk_X509_value(chain, i);

		if (!sk_X509_push(c->chain, x)) {
			sk_X509_pop_free(c->chain, X509_free);
			free(c);
			return -ENOMEM;
		}
		X509_up_ref(x);
	}
	atomic_init(&c->refs, 1);
	EVP_PKEY_up_ref(key);
	c->key = key;
	X509_up_ref(leaf);
	c->leaf = leaf;
	snprintf(c->ns, sizeof(c->ns), "%s", ns);
	snprintf(c->sa, sizeof(c->sa), "%s", sa);
	snprintf(c->spiffe_id, sizeof(c->spiffe_id), "%s", want);
	c->not_before = asn1_to_unix(X509_get0_notBefore(leaf));
	c->not_after = asn1_to_unix(X509_get0_notAfter(leaf));
	*out = c;
	return 0;
}

int id_store_set(struct id_store *s, struct id_cred *c)
{
	struct id_cred *old = NULL;
	int i, ret = 0;

	pthread_mutex_lock(&s->lock);
	i = find_locked(s, c->ns, c->sa);
	if (i >= 0) {
		old = s->creds[i];
		s->creds[i] = c;
	} else if (s->n_creds >= ID_MAX_CREDS) {
		ret = -ENOSPC;
	} else {
		i = -i - 1;
		memmove(&s->creds[i + 1], &s->creds[i], (s->n_creds - i) * sizeof(*s->creds));
		s->creds[i] = c;
		s->n_creds++;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret)
		id_cred_put(c);
	id_cred_put(old);
	return ret;
}

int id_store_drop(struct id_store *s, const char *ns, const char *sa)
{
	struct id_cred *old = NULL;
	int i;

	pthread_mutex_lock(&s->lock);
	i = find_locked(s, ns, sa);
	if (i >= 0) {
		old = s->creds[i];
		memmove(&s->creds[i], &s->creds[i + 1], (s->n_creds - i - 1) * sizeof(*s->creds));
		s->n_creds--;
	}
	pthread_mutex_unlock(&s->lock);
	id_cred_put(old);
	return old ? 0 : -ENOENT;
}

int id_store_expire(struct id_store *s, time_t now)
{
	struct id_cred *gone[ID_MAX_CREDS];
	int n_gone = 0, j = 0;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n_creds; i++) {
		if (now >= s->creds[i]->not_after)
			gone[n_gone++] = s->creds[i];
		else
			s->creds[j++] = s->creds[i];
	}
	s->n_creds = j;
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < n_gone; i++)
		id_cred_put(gone[i]);
	return n_gone;
}

void id_store_set_anchors(struct id_store *s, X509_STORE *anchors, int n_roots)
{
	X509_STORE *old;

	pthread_mutex_lock(&s->lock);
	old = s->anchors;
	s->anchors = anchors;
	s->n_anchors = anchors ? n_roots : 0;
	pthread_mutex_unlock(&s->lock);
	X509_STORE_free(old);
}

int id_store_each(struct id_store *s, void (*fn)(const struct id_cred *c, void *arg), void *arg)
{
	struct id_cred **held;
	int n;

	held = malloc(ID_MAX_CREDS * sizeof(*held));
	if (!held)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	n = s->n_creds;
	for (int i = 0; i < n; i++)
		held[i] = id_cred_get(s->creds[i]);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < n; i++) {
		fn(held[i], arg);
		id_cred_put(held[i]);
	}
	free(held);
	return n;
}

/* True if only whitespace is in p[0..len). */
static bool only_space(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

/*
 * Check that text holds only PEM blocks labelled label ("CERTIFICATE"),
 * separated by whitespace: PEM_read_bio_X509 would skip a private key or
 * junk between blocks without a word, and a bundle that carries one is a
 * mistake worth refusing. Returns the number of blocks, or -EINVAL.
 */
static int pem_blocks_only(const char *text, size_t len, const char *label, char *why,
			   size_t why_len)
{
	char begin[64], end[64];
	const char *p = text, *stop = text + len;
	int n = 0;

	snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
	snprintf(end, sizeof(end), "-----END %s-----", label);
	for (;;) {
		const char *b = memmem(p, stop - p, "-----BEGIN ", 11), *e;

		if (!only_space(p, (b ? b : stop) - p)) {
			id_why(why, why_len, "text that is not a PEM block after certificate %d",
			       n);
			return -EINVAL;
		}
		if (!b)
			return n;
		if ((size_t)(stop - b) < strlen(begin) || memcmp(b, begin, strlen(begin))) {
			/* its BEGIN line only: what follows may be a private key */
			const char *nl = memchr(b, '\n', stop - b);
			int show = (int)((nl ? nl : stop) - b);

			id_why(why, why_len, "block %d is not a %s (%.*s)", n + 1, label,
			       show > 40 ? 40 : show, b);
			return -EINVAL;
		}
		e = memmem(b, stop - b, end, strlen(end));
		if (!e) {
			id_why(why, why_len, "block %d has no END line", n + 1);
			return -EINVAL;
		}
		p = e + strlen(end);
		n++;
	}
}

int id_anchors_parse(const char *pem, size_t len, time_t now, X509_STORE **out, int *n_roots,
		     char *why, size_t why_len)
{
	X509_STORE *st = NULL;
	BIO *bio = NULL;
	char err[160], subj[256];
	int n, ret = -EINVAL;

	*out = NULL;
	*n_roots = 0;
	if (len > ID_MAX_PEM_BYTES) {
		id_why(why, why_len, "the bundle is larger than %d bytes", ID_MAX_PEM_BYTES);
		return -EINVAL;
	}
	n = pem_blocks_only(pem, len, "CERTIFICATE", why, why_len);
	if (n < 0)
		return n;
	if (n == 0) {
		id_why(why, why_len, "the bundle holds no certificate");
		return -EINVAL;
	}
	if (n > ID_MAX_ANCHORS) {
		id_why(why, why_len, "the bundle holds %d certificates, more than %d roots", n,
		       ID_MAX_ANCHORS);
		return -EINVAL;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	st = X509_STORE_new();
	if (!bio || !st) {
		ret = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		EVP_PKEY *pub;
		bool self_signed;

		if (!x) {
			id_why(why, why_len, "certificate %d does not parse (%s)", i + 1,
			       id_ossl_reason(err, sizeof(err)));
			goto out;
		}
		X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
		pub = X509_get0_pubkey(x);
		self_signed =
		    pub && X509_check_issued(x, x) == X509_V_OK && X509_verify(x, pub) == 1;
		if (X509_check_ca(x) != 1 || !self_signed) {
			id_why(why, why_len,
			       "certificate %d (%s) is not a self-signed CA certificate", i + 1,
			       subj);
			X509_free(x);
			goto out;
		}
		if (X509_cmp_time(X509_get0_notAfter(x), &now) <= 0 ||
		    X509_cmp_time(X509_get0_notBefore(x), &now) > 0) {
			id_why(why, why_len, "certificate %d (%s) is not valid now", i + 1, subj);
			X509_free(x);
			goto out;
		}
		if (!X509_STORE_add_cert(st, x)) {
			id_why(why, why_len, "certificate %d (%s) cannot be added: %s", i + 1, subj,
			       id_ossl_reason(err, sizeof(err)));
			X509_free(x);
			goto out;
		}
		X509_free(x);
	}
	*out = st;
	*n_roots = n;
	st = NULL;
	ret = 0;
out:
	ERR_clear_error();
	BIO_free(bio);
	X509_STORE_free(st);
	return ret;
}

/* Read a whole small file (at most ID_MAX_PEM_BYTES) into a NUL-terminated buffer. */
static int read_small(const char *path, char **out, size_t *len)
{
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(ID_MAX_PEM_BYTES + 2);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, buf + got, ID_MAX_PEM_BYTES + 1 - got)) > 0)
		got += n;
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (!ret && got > ID_MAX_PEM_BYTES)
		ret = -EFBIG;
	if (ret) {
		free(buf);
		return ret;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

/* The key and certificates of one <ns>_<sa> pair; 0 or -errno + why. */
static int load_pair(struct id_store *s, const char *dir, const char *ns, const char *sa,
		     struct id_cred **out, char *why, size_t why_len)
{
	char path[4096], err[160], sub[200];
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL, *x;
	BIO *bio = NULL;
	char *text = NULL;
	size_t len;
	int ret;

	snprintf(path, sizeof(path), "%s/%s_%s.key", dir, ns, sa);
	ret = read_small(path, &text, &len);
	if (ret) {
		id_why(why, why_len, "%s: cannot read: %s", path, strerror(-ret));
		return ret;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	bio = NULL;
	OPENSSL_cleanse(text, len); /* a private key: do not leave it in freed memory */
	free(text);
	text = NULL;
	if (!key) {
		id_why(why, why_len, "%s: not a PEM private key (%s)", path,
		       id_ossl_reason(err, sizeof(err)));
		return -EINVAL;
	}

	snprintf(path, sizeof(path), "%s/%s_%s.crt", dir, ns, sa);
	ret = read_small(path, &text, &len);
	if (ret) {
		id_why(why, why_len, "%s: cannot read: %s", path, strerror(-ret));
		goto out;
	}
	ret = pem_blocks_only(text, len, "CERTIFICATE", sub, sizeof(sub));
	if (ret <= 0) {
		id_why(why, why_len, "%s: %s", path, ret ? sub : "no certificate");
		ret = -EINVAL;
		goto out;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	chain = sk_X509_new_null();
	if (!bio || !chain) {
		ret = -ENOMEM;
		goto out;
	}
	leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	while (leaf && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (!sk_X509_push(chain, x)) {
			X509_free(x);
			ret = -ENOMEM;
			goto out;
		}
	}
	ERR_clear_error(); /* the end of the bundle reads as an error */
	if (!leaf) {
		id_why(why, why_len, "%s: the first certificate does not parse", path);
		ret = -EINVAL;
		goto out;
	}
	ret = id_cred_new(s, ns, sa, key, leaf, chain, out, sub, sizeof(sub));
	if (ret)
		id_why(why, why_len, "%s: %s", path, sub);
out:
	BIO_free(bio);
	free(text);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return ret;
}

static int cred_sort(const void *a, const void *b)
{
	const struct id_cred *x = *(struct id_cred *const *)a, *y = *(struct id_cred *const *)b;

	return cred_cmp(x->ns, x->sa, y);
}

int id_store_load_dir(struct id_store *s, const char *dir, int *n_creds, char *why, size_t why_len)
{
	struct id_cred **creds = NULL, **old = NULL;
	X509_STORE *anchors = NULL;
	char path[4096], sub[256];
	struct dirent *de;
	int n = 0, n_old, n_roots = 0, ret = 0;
	char *text = NULL;
	size_t len;
	DIR *d;

	if (n_creds)
		*n_creds = 0;
	snprintf(path, sizeof(path), "%s/anchors.pem", dir);
	ret = read_small(path, &text, &len);
	if (ret) {
		id_why(why, why_len, "%s: cannot read: %s", path, strerror(-ret));
		return ret;
	}
	ret = id_anchors_parse(text, len, time(NULL), &anchors, &n_roots, sub, sizeof(sub));
	free(text);
	if (ret) {
		id_why(why, why_len, "%s: %s", path, sub);
		return ret;
	}

	creds = calloc(ID_MAX_CREDS, sizeof(*creds));
	old = calloc(ID_MAX_CREDS, sizeof(*old));
	d = opendir(dir);
	if (!creds || !old || !d) {
		ret = d ? -ENOMEM : -errno;
		id_why(why, why_len, "%s: cannot list: %s", dir, strerror(-ret));
		goto out;
	}
	while ((de = readdir(d))) {
		char ns[ID_MAX_NS], sa[ID_MAX_SA];
		size_t nl = strlen(de->d_name);
		const char *us = strchr(de->d_name, '_');

		if (nl < 5 || strcmp(de->d_name + nl - 4, ".key"))
			continue;
		if (!us || us == de->d_name || (size_t)(us - de->d_name) >= sizeof(ns) ||
		    nl - 4 - (us + 1 - de->d_name) == 0 ||
		    nl - 4 - (us + 1 - de->d_name) >= sizeof(sa) || strchr(us + 1, '_')) {
			id_why(why, why_len, "%s/%s: not named <namespace>_<serviceaccount>.key",
			       dir, de->d_name);
			ret = -EINVAL;
			goto out;
		}
		if (n >= ID_MAX_CREDS) {
			id_why(why, why_len, "%s: more than %d key files", dir, ID_MAX_CREDS);
			ret = -ENOSPC;
			goto out;
		}
		snprintf(ns, sizeof(ns), "%.*s", (int)(us - de->d_name), de->d_name);
		snprintf(sa, sizeof(sa), "%.*s", (int)(nl - 4 - (us + 1 - de->d_name)), us + 1);
		ret = load_pair(s, dir, ns, sa, &creds[n], why, why_len);
		if (ret)
			goto out;
		n++;
	}
	qsort(creds, n, sizeof(*creds), cred_sort);

	pthread_mutex_lock(&s->lock);
	n_old = s->n_creds;
	memcpy(old, s->creds, n_old * sizeof(*old));
	memcpy(s->creds, creds, n * sizeof(*creds));
	s->n_creds = n;
	pthread_mutex_unlock(&s->lock);
	id_store_set_anchors(s, anchors, n_roots);
	anchors = NULL;
	for (int i = 0; i < n_old; i++)
		id_cred_put(old[i]);
	if (n_creds)
		*n_creds = n;
	n = 0; /* published: nothing of creds to put below */
out:
	if (d)
		closedir(d);
	for (int i = 0; i < n; i++)
		id_cred_put(creds[i]);
	free(creds);
	free(old);
	X509_STORE_free(anchors);
	return ret;
}
