// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The identity controller (identity.h). One thread does everything slow:
 * reading the anchors, making keys, the round trips to shoal-identity.
 * The account table is guarded by a mutex that is never held across one
 * of those, so identity_status (the admin endpoint) never waits on the
 * issuer; the workers read the store, which has its own short lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "balance/rng.h"
#include "common/curl_api.h"
#include "common/log.h"
#include "identity/csr.h"
#include "identity/identity.h"
#include "identity/sched.h"
#include "identity/verify.h"

/* One account's state; the thread's, copied out under mu for status. */
struct acct {
	char ns[ID_MAX_NS];
	char sa[ID_MAX_SA];
	bool wanted;
	int64_t gone_since; /* ms: when it stopped being wanted; 0 while wanted */
	int64_t next_ms;    /* next request */
	uint32_t failures;
	int64_t not_before, not_after; /* the held certificate, Unix s; 0: none */
	int64_t last_ok;
	char last_error[ID_MAX_ERROR];
};

struct identity {
	struct config_identity cfg;
	id_accounts_fn accounts;
	void *accounts_arg;
	struct id_store *store;
	struct id_sched_params sched;
	struct rng rng;

	pthread_t thread;
	bool started;
	pthread_mutex_t mu; /* guards accts, n_accts, stop, anchors_err; cv sleeps on it */
	pthread_cond_t cv;
	bool stop;
	struct acct *accts; /* ID_MAX_CREDS, sorted by (ns, sa) */
	int n_accts;
	char anchors_err[ID_MAX_ERROR];

	/* the thread's own */
	char *anchors_pem; /* the last good bundle, for libcurl's CA (CAINFO_BLOB) */
	size_t anchors_len;
	char *anchors_seen; /* the last bundle read, good or bad: logged once */
	size_t anchors_seen_len;
	bool anchors_missing; /* the last read failed, and was logged */
	uint64_t dir_sig;     /* source files: the directory's names, sizes, mtimes */
	int64_t next_poll;
	CURL *curl;
	char curl_err[CURL_ERROR_SIZE];

	atomic_uint_fast64_t st_renewal_failures, st_expired, st_dropped, st_anchors_updates,
	    st_anchors_rejects;
	atomic_uint_fast64_t st_requests[ID_OUTCOME__COUNT];
};

/*
 * snprintf for messages and names: cut at len, which is what a message
 * buffer is for (and what gcc's truncation warning cannot know).
 */
static void msgf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

static const char *const outcome_names[] = {
#define ID_OUTCOME_NAME(name, help) [ID_OUTCOME_##name] = #name,
    ID_OUTCOMES(ID_OUTCOME_NAME)
#undef ID_OUTCOME_NAME
};

const char *id_outcome_name(enum id_outcome o)
{
	return (unsigned)o < ID_OUTCOME__COUNT ? outcome_names[o] : "unknown";
}

const char *identity_source_name(const struct identity *id)
{
	return id->cfg.source == CONFIG_ID_SOURCE_FILES ? "files" : "issued";
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int acct_cmp(const char *ns, const char *sa, const struct acct *a)
{
	int r = strcmp(ns, a->ns);

	return r ? r : strcmp(sa, a->sa);
}

/* Index of (ns, sa) or -(insertion point) - 1; mu held. */
static int acct_find(const struct identity *id, const char *ns, const char *sa)
{
	int lo = 0, hi = id->n_accts;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2, r = acct_cmp(ns, sa, &id->accts[mid]);

		if (!r)
			return mid;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -lo - 1;
}

/* ---- files ---- */

/*
 * Read a whole small file into a malloc'd, NUL-terminated buffer (at most
 * max bytes; -EFBIG past it). 0 or -errno.
 */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	size_t got = 0;
	ssize_t n;
	char *buf;
	int fd, ret = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(max + 2);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, buf + got, max + 1 - got)) > 0)
		got += n;
	if (n < 0)
		ret = -errno;
	close(fd);
	if (!ret && got > max)
		ret = -EFBIG;
	if (ret) {
		OPENSSL_cleanse(buf, got);
		free(buf);
		return ret;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

static void set_anchors_err(struct identity *id, const char *msg)
{
	pthread_mutex_lock(&id->mu);
	msgf(id->anchors_err, sizeof(id->anchors_err), "%s", msg);
	pthread_mutex_unlock(&id->mu);
}

/*
 * Re-read anchors_file. A bundle that differs from the last one read is
 * parsed: a good one replaces the store's anchors, a bad one is logged
 * once and counted, and the last good one stays.
 */
static void poll_anchors(struct identity *id)
{
	const char *path = id->cfg.anchors_file;
	char why[ID_MAX_ERROR], msg[ID_MAX_ERROR + 64];
	X509_STORE *st;
	char *pem;
	size_t len;
	int n, err;

	err = read_file(path, ID_MAX_PEM_BYTES, &pem, &len);
	if (err) {
		if (!id->anchors_missing) {
			msgf(msg, sizeof(msg), "%s: cannot read: %s", path, strerror(-err));
			pr_warn("identity: trust anchors %s%s", msg,
				id->anchors_pem ? "; the last good bundle stays" : "");
			set_anchors_err(id, msg);
			id->anchors_missing = true;
			free(id->anchors_seen);
			id->anchors_seen = NULL;
		}
		return;
	}
	id->anchors_missing = false;
	if (id->anchors_seen && id->anchors_seen_len == len &&
	    !memcmp(id->anchors_seen, pem, len)) {
		free(pem);
		return;
	}
	free(id->anchors_seen);
	id->anchors_seen = pem;
	id->anchors_seen_len = len;
	err = id_anchors_parse(pem, len, time(NULL), &st, &n, why, sizeof(why));
	if (err) {
		msgf(msg, sizeof(msg), "%s: refused: %s", path, why);
		pr_warn("identity: trust anchors %s%s", msg,
			id->anchors_pem ? "; the last good bundle stays" : "");
		atomic_fetch_add(&id->st_anchors_rejects, 1);
		set_anchors_err(id, msg);
		return;
	}
	free(id->anchors_pem);
	id->anchors_pem = malloc(len + 1);
	if (!id->anchors_pem) {
		X509_STORE_free(st);
		id->anchors_len = 0;
		free(id->anchors_seen);
		id->anchors_seen = NULL; /* read again next poll */
		return;
	}
	memcpy(id->anchors_pem, pem, len + 1);
	id->anchors_len = len;
	id_store_set_anchors(id->store, st, n);
	atomic_fetch_add(&id->st_anchors_updates, 1);
	set_anchors_err(id, "");
	pr_info("identity: trust anchors from %s: %d root%s", path, n, n == 1 ? "" : "s");
}

/* A cheap signature of dir's entries (name, size, mtime): FNV-1a. */
static uint64_t dir_signature(const char *dir)
{
	uint64_t h = 1469598103934665603ull;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat sb;
		uint64_t v[3];

		if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &sb, 0))
			continue;
		v[0] = (uint64_t)sb.st_size;
		v[1] = (uint64_t)sb.st_mtim.tv_sec;
		v[2] = (uint64_t)sb.st_mtim.tv_nsec;
		/* order-independent: readdir's order is not stable */
		{
			uint64_t e = 1469598103934665603ull;

			for (const char *c = de->d_name; *c; c++)
				e = (e ^ (unsigned char)*c) * 1099511628211ull;
			for (int i = 0; i < 3; i++)
				e = (e ^ v[i]) * 1099511628211ull;
			h += e;
		}
	}
	closedir(d);
	return h;
}

static void files_account(const struct id_cred *c, void *arg)
{
	struct identity *id = arg;
	struct acct *a;

	if (id->n_accts >= ID_MAX_CREDS)
		return;
	a = &id->accts[id->n_accts++];
	memset(a, 0, sizeof(*a));
	msgf(a->ns, sizeof(a->ns), "%s", c->ns);
	msgf(a->sa, sizeof(a->sa), "%s", c->sa);
	a->wanted = true;
	a->not_before = c->not_before;
	a->not_after = c->not_after;
}

/* Source files: reload dir when its signature changed. */
static void poll_dir(struct identity *id)
{
	uint64_t sig = dir_signature(id->cfg.dir);
	char why[ID_MAX_ERROR];
	int n, err;

	if (sig && sig == id->dir_sig)
		return;
	id->dir_sig = sig;
	err = id_store_load_dir(id->store, id->cfg.dir, &n, why, sizeof(why));
	if (err) {
		pr_warn("identity: %s; what was loaded before stays", why);
		atomic_fetch_add(&id->st_anchors_rejects, 1);
		set_anchors_err(id, why);
		return;
	}
	atomic_fetch_add(&id->st_anchors_updates, 1);
	pr_info("identity: %d credential%s and %d root%s from %s", n, n == 1 ? "" : "s",
		id_store_n_anchors(id->store), id_store_n_anchors(id->store) == 1 ? "" : "s",
		id->cfg.dir);
	/* the table mirrors the store; id_store_each calls back without its own lock */
	pthread_mutex_lock(&id->mu);
	msgf(id->anchors_err, sizeof(id->anchors_err), "%s", "");
	id->n_accts = 0;
	id_store_each(id->store, files_account, id);
	pthread_mutex_unlock(&id->mu);
}

/* ---- accounts ---- */

static int want_cmp(const void *a, const void *b)
{
	const struct id_account *x = a, *y = b;
	int r = strcmp(x->ns, y->ns);

	return r ? r : strcmp(x->sa, y->sa);
}

/*
 * Merge the callback's list into the table: new accounts are due now,
 * those no longer named start their grace period, and those named again
 * are wanted again.
 */
static void refresh_accounts(struct identity *id, struct id_account *want, int64_t now)
{
	int n = id->accounts(id->accounts_arg, want, ID_MAX_CREDS);

	if (n < 0)
		return;
	qsort(want, n, sizeof(*want), want_cmp);
	pthread_mutex_lock(&id->mu);
	for (int i = 0; i < id->n_accts; i++)
		id->accts[i].wanted = false;
	for (int k = 0; k < n; k++) {
		int i;

		if (k && !want_cmp(&want[k], &want[k - 1]))
			continue;
		i = acct_find(id, want[k].ns, want[k].sa);
		if (i < 0) {
			struct acct *a;

			if (id->n_accts >= ID_MAX_CREDS)
				continue;
			i = -i - 1;
			memmove(&id->accts[i + 1], &id->accts[i],
				(id->n_accts - i) * sizeof(*id->accts));
			id->n_accts++;
			a = &id->accts[i];
			memset(a, 0, sizeof(*a));
			msgf(a->ns, sizeof(a->ns), "%s", want[k].ns);
			msgf(a->sa, sizeof(a->sa), "%s", want[k].sa);
			a->next_ms = now;
		}
		id->accts[i].wanted = true;
		id->accts[i].gone_since = 0;
	}
	for (int i = 0; i < id->n_accts; i++)
		if (!id->accts[i].wanted && !id->accts[i].gone_since)
			id->accts[i].gone_since = now;
	pthread_mutex_unlock(&id->mu);
}

/* ---- the request ---- */

struct body {
	char *data;
	size_t len;
	bool too_big;
};

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb;

	if (b->len + n > ID_MAX_RESPONSE_BYTES) {
		b->too_big = true;
		return 0; /* ends the transfer */
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	return n;
}

/* The token, without trailing whitespace, into tok (ID_MAX_TOKEN + 1 bytes). */
static int read_token(const char *path, char *tok, char *why, size_t why_len)
{
	char *buf;
	size_t len;
	int err = read_file(path, ID_MAX_TOKEN, &buf, &len);

	if (err) {
		msgf(why, why_len, "cannot read the token %s: %s", path, strerror(-err));
		return err;
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	if (!len || memchr(buf, '\n', len) || memchr(buf, '\0', len)) {
		msgf(why, why_len, "the token %s is empty or not one line", path);
		OPENSSL_cleanse(buf, len);
		free(buf);
		return -EINVAL;
	}
	memcpy(tok, buf, len);
	tok[len] = '\0';
	OPENSSL_cleanse(buf, len);
	free(buf);
	return 0;
}

/*
 * One POST of csr for a; on 200, *body holds the answer. Returns the
 * outcome, with the reason in why when it is not ok.
 */
static enum id_outcome post_csr(struct identity *id, const char *json, struct body *body, char *why,
				size_t why_len)
{
	char url[CONFIG_MAX_URL + sizeof(ID_ISSUE_PATH)], tok[ID_MAX_TOKEN + 1],
	    auth[ID_MAX_TOKEN + 32];
	struct curl_slist *hdr = NULL, *h2;
	struct curl_blob ca;
	CURL *c = id->curl;
	long status = 0;
	CURLcode rc;
	enum id_outcome out;

	if (read_token(id->cfg.token_file, tok, why, why_len))
		return ID_OUTCOME_local;
	msgf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
	OPENSSL_cleanse(tok, sizeof(tok));
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	h2 = hdr ? curl_slist_append(hdr, auth) : NULL;
	OPENSSL_cleanse(auth, sizeof(auth));
	if (!h2) {
		curl_slist_free_all(hdr);
		msgf(why, why_len, "out of memory");
		return ID_OUTCOME_local;
	}
	hdr = h2;
	msgf(url, sizeof(url), "%s%s", id->cfg.server_url, ID_ISSUE_PATH);
	ca.data = id->anchors_pem;
	ca.len = id->anchors_len;
	ca.flags = CURL_BLOB_COPY;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
	/* the issuer is trusted through the mesh's anchors only, never the system's CAs */
	curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
	curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)id->cfg.timeout_ms);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, id->curl_err);
	id->curl_err[0] = '\0';
	rc = curl_easy_perform(c);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	if (rc != CURLE_OK) {
		msgf(why, why_len, "%s: %s", url,
		     body->too_big     ? "the answer is too large"
		     : id->curl_err[0] ? id->curl_err
				       : curl_easy_strerror(rc));
		return body->too_big ? ID_OUTCOME_bad_answer : ID_OUTCOME_transport;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200)
		return ID_OUTCOME_ok;
	{
		char err[160];

		id_issue_error(body->data, body->len, err, sizeof(err));
		msgf(why, why_len, "%s: %ld: %s", url, status, err);
	}
	if (status == 401 || status == 403)
		out = ID_OUTCOME_unauthorized;
	else if (status >= 400 && status < 500)
		out = ID_OUTCOME_refused;
	else
		out = ID_OUTCOME_server_error;
	return out;
}

/*
 * Ask for a's certificate (a is a copy; the table is updated under mu
 * after). Returns the outcome; on ok the store holds the new credential.
 */
static enum id_outcome issue(struct identity *id, const struct acct *a, int64_t *nb, int64_t *na,
			     char serial[ID_SERIAL_MAX], char *why, size_t why_len)
{
	char spiffe[ID_MAX_SPIFFE_ID], sub[ID_MAX_ERROR];
	struct body body = {0};
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	struct id_cred *cred;
	X509 *leaf = NULL;
	int64_t expires;
	char *pem = NULL, *json = NULL;
	enum id_outcome out = ID_OUTCOME_local;

	if (!id->anchors_pem) {
		msgf(why, why_len, "no trust anchors yet (%s)", id->cfg.anchors_file);
		return ID_OUTCOME_local;
	}
	if (id_spiffe_string(id->cfg.trust_domain, a->ns, a->sa, spiffe, sizeof(spiffe))) {
		msgf(why, why_len, "%s/%s is not a namespace and service account name", a->ns,
		     a->sa);
		return ID_OUTCOME_local;
	}
	if (id_key_new(&key, why, why_len) || id_csr_make(key, spiffe, &pem, why, why_len))
		goto out;
	json = id_csr_request_body(pem, id->cfg.lifetime_s);
	body.data = malloc(ID_MAX_RESPONSE_BYTES + 1);
	if (!json || !body.data) {
		msgf(why, why_len, "out of memory");
		goto out;
	}
	out = post_csr(id, json, &body, why, why_len);
	if (out != ID_OUTCOME_ok)
		goto out;
	out = ID_OUTCOME_bad_answer;
	if (id_issue_decode(body.data, body.len, key, &leaf, &chain, &expires, sub, sizeof(sub))) {
		msgf(why, why_len, "the answer for %s: %s", spiffe, sub);
		goto out;
	}
	if (id_cred_new(id->store, a->ns, a->sa, key, leaf, chain, &cred, sub, sizeof(sub))) {
		msgf(why, why_len, "the certificate issued for %s: %s", spiffe, sub);
		goto out;
	}
	if (cred->not_after <= time(NULL) || cred->not_after <= cred->not_before) {
		msgf(why, why_len, "the certificate issued for %s has expired already", spiffe);
		id_cred_put(cred);
		goto out;
	}
	*nb = cred->not_before;
	*na = cred->not_after;
	id_cert_serial(cred->leaf, serial, ID_SERIAL_MAX);
	if (id_store_set(id->store, cred)) {
		msgf(why, why_len, "the store is full (%d accounts)", ID_MAX_CREDS);
		out = ID_OUTCOME_local;
		goto out;
	}
	out = ID_OUTCOME_ok;
out:
	free(body.data);
	free(json);
	free(pem);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key); /* the credential holds its own reference */
	return out;
}

/* True if the recorded error ("outcome: reason") is of outcome o. */
static bool same_outcome(const char *last_error, enum id_outcome o)
{
	size_t n = strlen(id_outcome_name(o));

	return !strncmp(last_error, id_outcome_name(o), n) && last_error[n] == ':';
}

/* Request every due account's certificate, one at a time. */
static void issue_due(struct identity *id, int64_t now)
{
	for (int i = 0;; i++) {
		char why[ID_MAX_ERROR] = "", serial[ID_SERIAL_MAX] = "";
		int64_t nb = 0, na = 0, t;
		enum id_outcome out;
		struct acct a;
		int k;

		pthread_mutex_lock(&id->mu);
		if (id->stop || i >= id->n_accts) {
			pthread_mutex_unlock(&id->mu);
			return;
		}
		a = id->accts[i];
		pthread_mutex_unlock(&id->mu);
		if (!a.wanted || a.next_ms > now)
			continue;

		out = issue(id, &a, &nb, &na, serial, why, sizeof(why));
		atomic_fetch_add(&id->st_requests[out], 1);
		t = now_ms();
		pthread_mutex_lock(&id->mu);
		k = acct_find(id, a.ns, a.sa); /* the table may have moved meanwhile */
		if (k >= 0) {
			struct acct *p = &id->accts[k];

			if (out == ID_OUTCOME_ok) {
				p->not_before = nb;
				p->not_after = na;
				p->failures = 0;
				p->last_ok = t / 1000;
				p->last_error[0] = '\0';
				p->next_ms = id_sched_renew_after(&id->sched, t, nb * 1000,
								  na * 1000, rng_unit(&id->rng));
			} else {
				bool held = p->not_after * 1000 > t;

				p->failures++;
				msgf(p->last_error, sizeof(p->last_error), "%s: %s",
				     id_outcome_name(out), why);
				p->next_ms = id_sched_retry_at(&id->sched, t, p->failures,
							       held ? p->not_after * 1000 : 0,
							       rng_unit(&id->rng));
				if (held)
					atomic_fetch_add(&id->st_renewal_failures, 1);
			}
		}
		pthread_mutex_unlock(&id->mu);
		if (out == ID_OUTCOME_ok) {
			char until[32], after[48] = "";
			time_t tna = (time_t)na;
			struct tm tm;

			strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tna, &tm));
			if (a.failures)
				msgf(after, sizeof(after), " (after %u failed tries)", a.failures);
			/* the serial is what a peer sees in the handshake (the tunnel logs it) */
			pr_info(
			    "identity: spiffe://%s/ns/%s/sa/%s issued, serial %s, valid until %s%s",
			    id->cfg.trust_domain, a.ns, a.sa, serial, until, after);
		} else if (a.failures == 0 || !same_outcome(a.last_error, out))
			/* a down issuer is logged once per account, not per retry */
			pr_warn("identity: %s/%s: %s: %s%s", a.ns, a.sa, id_outcome_name(out), why,
				a.not_after > t / 1000
				    ? "; the certificate held is kept until it expires"
				    : "");
	}
}

/*
 * Drop accounts past their grace period, and forget certificates that
 * expired (the store stops handing them out at not_after by itself).
 */
static void drop_and_expire(struct identity *id, int64_t now)
{
	int j = 0, expired;

	expired = id_store_expire(id->store, now / 1000);
	if (expired)
		atomic_fetch_add(&id->st_expired, expired);
	pthread_mutex_lock(&id->mu);
	for (int i = 0; i < id->n_accts; i++) {
		struct acct *a = &id->accts[i];

		if (a->not_after && a->not_after * 1000 <= now) {
			pr_warn("identity: %s/%s: the certificate expired before a renewal "
				"succeeded (%s)",
				a->ns, a->sa,
				a->last_error[0] ? a->last_error : "no error recorded");
			a->not_after = a->not_before = 0;
		}
		if (!a->wanted && now - a->gone_since >= id->cfg.drop_grace_ms) {
			if (!id_store_drop(id->store, a->ns, a->sa))
				atomic_fetch_add(&id->st_dropped, 1);
			pr_info("identity: %s/%s: no pod on this node any more; dropped", a->ns,
				a->sa);
			continue;
		}
		id->accts[j++] = *a;
	}
	id->n_accts = j;
	pthread_mutex_unlock(&id->mu);
}

/* When the loop has work next (ms). */
static int64_t next_wake(struct identity *id, int64_t now)
{
	int64_t at = id->next_poll;

	if (id->cfg.source == CONFIG_ID_SOURCE_FILES)
		return at;
	if (at > now + ID_ACCOUNTS_REFRESH_MS)
		at = now + ID_ACCOUNTS_REFRESH_MS;
	pthread_mutex_lock(&id->mu);
	for (int i = 0; i < id->n_accts; i++) {
		const struct acct *a = &id->accts[i];

		if (a->wanted && a->next_ms < at)
			at = a->next_ms;
		if (!a->wanted && a->gone_since + id->cfg.drop_grace_ms < at)
			at = a->gone_since + id->cfg.drop_grace_ms;
		if (a->not_after && a->not_after * 1000 < at)
			at = a->not_after * 1000;
	}
	pthread_mutex_unlock(&id->mu);
	return at;
}

static void *identity_main(void *arg)
{
	struct identity *id = arg;
	struct id_account *want = calloc(ID_MAX_CREDS, sizeof(*want));

	if (!want) {
		pr_warn("identity: out of memory; no certificates");
		return NULL;
	}
	for (;;) {
		int64_t now = now_ms(), wake;
		struct timespec ts;

		if (now >= id->next_poll) {
			if (id->cfg.source == CONFIG_ID_SOURCE_FILES)
				poll_dir(id);
			else
				poll_anchors(id);
			id->next_poll = now + id->cfg.poll_ms;
		}
		if (id->cfg.source == CONFIG_ID_SOURCE_ISSUED) {
			refresh_accounts(id, want, now);
			issue_due(id, now);
			drop_and_expire(id, now_ms());
		} else {
			id_store_expire(id->store, now / 1000);
		}
		now = now_ms();
		wake = next_wake(id, now);
		if (wake < now + 1)
			wake = now + 1;
		ts.tv_sec = wake / 1000;
		ts.tv_nsec = (wake % 1000) * 1000000;
		pthread_mutex_lock(&id->mu);
		if (!id->stop)
			pthread_cond_timedwait(&id->cv, &id->mu, &ts);
		if (id->stop) {
			pthread_mutex_unlock(&id->mu);
			break;
		}
		pthread_mutex_unlock(&id->mu);
	}
	free(want);
	return NULL;
}

int identity_start(const struct config_identity *cfg, id_accounts_fn accounts, void *arg,
		   struct identity **out)
{
	pthread_condattr_t ca;
	struct identity *id;
	char err[256];
	int ret;

	*out = NULL;
	if (cfg->source == CONFIG_ID_SOURCE_ISSUED && !accounts)
		return -EINVAL;
	id = calloc(1, sizeof(*id));
	if (!id)
		return -ENOMEM;
	id->cfg = *cfg;
	id->accounts = accounts;
	id->accounts_arg = arg;
	id->sched = (struct id_sched_params){.renew_fraction = cfg->renew_fraction,
					     .jitter = cfg->renew_jitter,
					     .backoff_min_ms = cfg->backoff_min_ms,
					     .backoff_max_ms = cfg->backoff_max_ms};
	rng_seed(&id->rng, (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32));
	pthread_mutex_init(&id->mu, NULL);
	/* the deadlines are wall-clock times (certificates' validity) */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_REALTIME);
	pthread_cond_init(&id->cv, &ca);
	pthread_condattr_destroy(&ca);
	id->accts = calloc(ID_MAX_CREDS, sizeof(*id->accts));
	ret = id->accts ? id_store_new(cfg->trust_domain, &id->store) : -ENOMEM;
	if (ret) {
		pr_warn("identity: cannot make the store for trust domain %s: %s",
			cfg->trust_domain, strerror(-ret));
		goto fail;
	}
	if (cfg->source == CONFIG_ID_SOURCE_ISSUED) {
		/* once per process; 2 means a heap that could not be mlocked (RLIMIT_MEMLOCK) */
		if (!CRYPTO_secure_malloc_initialized()) {
			int sh = CRYPTO_secure_malloc_init(ID_SECURE_HEAP_BYTES, 16);

			if (sh == 0)
				pr_warn("identity: no OpenSSL secure heap: private keys live in "
					"ordinary memory");
			else if (sh == 2)
				pr_warn("identity: the OpenSSL secure heap could not be locked in "
					"memory (RLIMIT_MEMLOCK): keys may be swapped");
		}
		ret = curl_api_load("the identity source (identity.source: issued)", err,
				    sizeof(err));
		if (ret) {
			pr_warn("identity: %s", err);
			goto fail;
		}
		id->curl = curl_easy_init();
		if (!id->curl) {
			pr_warn("identity: cannot make a libcurl handle");
			ret = -ENOMEM;
			goto fail;
		}
	}
	ret = -pthread_create(&id->thread, NULL, identity_main, id);
	if (ret) {
		pr_warn("identity: cannot start its thread: %s", strerror(-ret));
		goto fail;
	}
	id->started = true;
	pr_info("identity: source %s, trust domain %s%s%s", identity_source_name(id),
		cfg->trust_domain, cfg->source == CONFIG_ID_SOURCE_ISSUED ? ", issuer " : ", dir ",
		cfg->source == CONFIG_ID_SOURCE_ISSUED ? cfg->server_url : cfg->dir);
	*out = id;
	return 0;
fail:
	identity_stop(id);
	return ret;
}

void identity_stop(struct identity *id)
{
	if (!id)
		return;
	if (id->started) {
		pthread_mutex_lock(&id->mu);
		id->stop = true;
		pthread_cond_signal(&id->cv);
		pthread_mutex_unlock(&id->mu);
		pthread_join(id->thread, NULL);
	}
	if (id->curl)
		curl_easy_cleanup(id->curl);
	id_store_free(id->store);
	free(id->accts);
	free(id->anchors_pem);
	free(id->anchors_seen);
	pthread_cond_destroy(&id->cv);
	pthread_mutex_destroy(&id->mu);
	free(id);
}

struct id_store *identity_store(struct identity *id)
{
	return id->store;
}

struct soonest {
	time_t now, soonest;
	uint64_t n;
};

static void soonest_cb(const struct id_cred *c, void *arg)
{
	struct soonest *s = arg;

	if (c->not_after <= s->now)
		return;
	s->n++;
	if (!s->soonest || c->not_after < s->soonest)
		s->soonest = c->not_after;
}

void identity_get_stats(struct identity *id, struct identity_stats *out)
{
	struct soonest s = {.now = time(NULL)};

	memset(out, 0, sizeof(*out));
	id_store_each(id->store, soonest_cb, &s);
	out->certificates = s.n;
	out->soonest_expiry_seconds = s.soonest ? (uint64_t)(s.soonest - s.now) : 0;
	out->renewal_failures = atomic_load(&id->st_renewal_failures);
	out->expired = atomic_load(&id->st_expired);
	out->dropped = atomic_load(&id->st_dropped);
	out->anchors = id_store_n_anchors(id->store);
	out->anchors_updates = atomic_load(&id->st_anchors_updates);
	out->anchors_rejects = atomic_load(&id->st_anchors_rejects);
	for (int i = 0; i < ID_OUTCOME__COUNT; i++)
		out->requests[i] = atomic_load(&id->st_requests[i]);
}

int identity_status(struct identity *id, struct id_status **out)
{
	struct id_status *st;
	int n;

	*out = NULL;
	st = calloc(ID_MAX_CREDS, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_lock(&id->mu);
	n = id->n_accts;
	for (int i = 0; i < n; i++) {
		const struct acct *a = &id->accts[i];
		struct id_status *s = &st[i];

		msgf(s->ns, sizeof(s->ns), "%s", a->ns);
		msgf(s->sa, sizeof(s->sa), "%s", a->sa);
		id_spiffe_string(id->cfg.trust_domain, a->ns, a->sa, s->spiffe_id,
				 sizeof(s->spiffe_id));
		s->wanted = a->wanted;
		s->not_after = a->not_after;
		s->next_ms = id->cfg.source == CONFIG_ID_SOURCE_ISSUED ? a->next_ms : 0;
		s->failures = a->failures;
		s->last_ok = a->last_ok;
		msgf(s->last_error, sizeof(s->last_error), "%s", a->last_error);
	}
	pthread_mutex_unlock(&id->mu);
	*out = st;
	return n;
}

void identity_anchors_error(struct identity *id, char *buf, size_t len)
{
	pthread_mutex_lock(&id->mu);
	msgf(buf, len, "%s", id->anchors_err);
	pthread_mutex_unlock(&id->mu);
}
