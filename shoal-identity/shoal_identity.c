// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoal-identity: the issuer of workload certificates (docs/identity.md).
 * An HTTPS server (TLS 1.3 only, its certificate signed by the issuer)
 * with one endpoint, POST /v1/certificates: a node agent sends a CSR for
 * a SPIFFE ID and its own bound service-account token; the certificate is
 * signed only if the token is the node agent's, its pod is current on its
 * node, and a pod of the requested service account runs on that node.
 *
 * One thread per connection, one request per connection, at most
 * --max-connections at once and --per-source-connections from one
 * address, whose new connections are also rate-limited (a token bucket):
 * a misbehaving node cannot starve the others. Reads are bounded in
 * size and time.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "authz.h"
#include "identity/verify.h"
#include "issue.h"

/* Request head: a request line and a few headers, a ~1 KiB bearer token among them. */
#define SRV_HEAD_MAX 16384
/* Request body: {"csr": PEM} with JSON escaping of the PEM's newlines. */
#define SRV_BODY_MAX (ISSUE_CSR_MAX + 1024)
/* The whole exchange (handshake, request) must fit in this; slow clients are cut. */
#define SRV_DEADLINE_S 10
/* Addresses tracked for the per-source bounds; a cluster's nodes, with room. */
#define SRV_SOURCES_MAX 4096
/*
 * After an answer, what the client still sends is read and dropped, this
 * much at most and for this long: closing on unread bytes would reset the
 * connection, and the client might lose the answer (a 431, a 413) with it.
 */
#define SRV_LINGER_BYTES (64 * 1024)
#define SRV_LINGER_MS 1000
/*
 * The defaults of the bounds (docs/identity.md, "Knobs"). A node asks once
 * per service account per half lifetime, all of them at its agent's start:
 * a burst of a node's pods (the kubelet's 110, with room) from one address,
 * then a trickle; 8 at once per node keeps one node from holding all 256.
 */
#define SRV_DEFAULT_MAX_CONNS 256
#define SRV_DEFAULT_PER_SOURCE_CONNS 8
#define SRV_DEFAULT_PER_SOURCE_RATE 20
#define SRV_DEFAULT_PER_SOURCE_BURST 256
/* One call to the API server; an agent's own request times out at 10 s. */
#define SRV_API_TIMEOUT_MS 5000
/* A connection's thread: OpenSSL and libcurl's handshakes, and our ~30 KiB of buffers. */
#define SRV_THREAD_STACK (512 * 1024)
/* A reason sent and logged: names, IDs and OpenSSL's words. */
#define SRV_WHY_MAX 1024

static int log_verbose;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s shoal-identity: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

struct opts {
	const char *listen;
	const char *issuer_cert, *issuer_key, *anchors;
	const char *trust_domain;
	char agent_ns[SPIFFE_NS_MAX + 1], agent_sa[SPIFFE_SA_MAX + 1];
	const char *server_names;
	const char *port_file;
	long lifetime_s;
	int max_conns, per_source_conns;
	double per_source_rate, per_source_burst;
	struct authz_api api;
};

static struct opts o;
static struct issuer issuer;

/* ---- the server's own certificate, renewed at half its life ---- */

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *cur_ctx;
static time_t cur_ctx_renew;

static SSL_CTX *new_ctx(char *why, size_t why_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int err;

	if (!ctx) {
		snprintf(why, why_len, "cannot allocate a TLS context");
		return NULL;
	}
	err = issue_server_cert(&issuer, o.server_names, &cert, &key, why, why_len);
	if (err)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		snprintf(why, why_len, "cannot set up TLS 1.3 with the server certificate");
		goto fail;
	}
	for (int i = 0; i < sk_X509_num(issuer.chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(issuer.chain, i)) != 1) {
			snprintf(why, why_len, "cannot add the issuer chain to TLS");
			goto fail;
		}
	/* One request per connection: no resumption to keep state for. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ctx;
fail:
	X509_free(cert);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

/* A reference to the current TLS context (SSL_CTX_free), renewing it when due. */
static SSL_CTX *get_ctx(void)
{
	char why[ID_WHY_MAX];
	time_t now = time(NULL);
	SSL_CTX *ctx;

	pthread_mutex_lock(&ctx_lock);
	if (now >= cur_ctx_renew) {
		SSL_CTX *fresh = new_ctx(why, sizeof(why));

		if (fresh) {
			logf_("server certificate for %s %s (valid %ld s)", o.server_names,
			      cur_ctx ? "renewed" : "made", issuer.lifetime_s);
			SSL_CTX_free(cur_ctx);
			cur_ctx = fresh;
			cur_ctx_renew = now + issuer.lifetime_s / 2;
		} else {
			logf_("cannot renew the server certificate: %s (keeping the old one)", why);
			cur_ctx_renew = now + 60;
		}
	}
	ctx = cur_ctx;
	if (ctx)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&ctx_lock);
	return ctx;
}

/* ---- per-source bounds ---- */

struct source {
	struct in6_addr addr; /* IPv4 as v4-mapped */
	int active;	      /* connections open now */
	double tokens;	      /* the rate bucket */
	struct timespec last; /* of the last refill */
	bool used;
};

static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;
static struct source sources[SRV_SOURCES_MAX];
static int total_active;

static double ts_sec(const struct timespec *a, const struct timespec *b)
{
	return (double)(a->tv_sec - b->tv_sec) + (double)(a->tv_nsec - b->tv_nsec) / 1e9;
}

/*
 * Admit a connection from addr: NULL and *why if a bound says no, else
 * the source (release with src_done).
 */
static struct source *src_admit(const struct in6_addr *addr, const char **why)
{
	struct source *s = NULL, *free_slot = NULL;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&src_lock);
	for (int i = 0; i < SRV_SOURCES_MAX; i++) {
		struct source *x = &sources[i];

		if (x->used && memcmp(&x->addr, addr, sizeof(*addr)) == 0) {
			s = x;
			break;
		}
		/* An idle source whose bucket has refilled carries no state worth keeping. */
		if (!free_slot &&
		    (!x->used ||
		     (x->active == 0 && ts_sec(&now, &x->last) * o.per_source_rate + x->tokens >=
					    o.per_source_burst)))
			free_slot = x;
	}
	if (!s) {
		if (!free_slot) {
			*why = "too many sources tracked";
			goto refuse;
		}
		s = free_slot;
		memset(s, 0, sizeof(*s));
		s->used = true;
		s->addr = *addr;
		s->tokens = o.per_source_burst;
		s->last = now;
	}
	s->tokens += ts_sec(&now, &s->last) * o.per_source_rate;
	if (s->tokens > o.per_source_burst)
		s->tokens = o.per_source_burst;
	s->last = now;
	if (total_active >= o.max_conns) {
		*why = "--max-connections reached";
		goto refuse;
	}
	if (s->active >= o.per_source_conns) {
		*why = "--per-source-connections reached";
		goto refuse;
	}
	if (s->tokens < 1) {
		*why = "--per-source-rate exceeded";
		goto refuse;
	}
	s->tokens -= 1;
	s->active++;
	total_active++;
	pthread_mutex_unlock(&src_lock);
	return s;
refuse:
	pthread_mutex_unlock(&src_lock);
	return NULL;
}

static void src_done(struct source *s)
{
	pthread_mutex_lock(&src_lock);
	s->active--;
	total_active--;
	pthread_mutex_unlock(&src_lock);
}

/* ---- one connection ---- */

struct conn {
	int fd;
	struct source *src;
	char peer[INET6_ADDRSTRLEN + 8];
	SSL *ssl;
	struct timespec start;
};

static bool past_deadline(const struct conn *c)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ts_sec(&now, &c->start) > SRV_DEADLINE_S;
}

static void reply(struct conn *c, int code, const char *body)
{
	const char *text = code == 200	 ? "OK"
			   : code == 400 ? "Bad Request"
			   : code == 401 ? "Unauthorized"
			   : code == 403 ? "Forbidden"
			   : code == 404 ? "Not Found"
			   : code == 405 ? "Method Not Allowed"
			   : code == 411 ? "Length Required"
			   : code == 413 ? "Content Too Large"
			   : code == 431 ? "Request Header Fields Too Large"
			   : code == 503 ? "Service Unavailable"
					 : "Internal Server Error";
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 code, text, strlen(body));

	if (SSL_write(c->ssl, head, n) > 0)
		SSL_write(c->ssl, body, (int)strlen(body));
}

/* A JSON error naming the cause, logged with who asked. */
static void refuse(struct conn *c, int code, const char *who, const char *why)
{
	json_object *o_ = json_object_new_object();

	json_object_object_add(o_, "error", json_object_new_string(why));
	reply(c, code, json_object_to_json_string_ext(o_, JSON_C_TO_STRING_PLAIN));
	json_object_put(o_);
	logf_("refused %d to %s%s%s: %s", code, c->peer, who ? " " : "", who ? who : "", why);
}

/* Read into buf until it holds a full head (CRLFCRLF), up to n bytes. Returns its length or -1. */
static int read_head(struct conn *c, char *buf, int n, int *have)
{
	while (*have < n) {
		char *end;
		int r = SSL_read(c->ssl, buf + *have, n - *have);

		if (r <= 0 || past_deadline(c))
			return -1;
		*have += r;
		buf[*have] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end)
			return (int)(end - buf) + 4;
	}
	return -2;
}

/* The value of header name in head (lines after the request line), copied, or false. */
static bool header(const char *head, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 &&
		    line[nl] == ':') {
			const char *v = line + nl + 1;
			size_t len;

			while (*v == ' ' || *v == '\t')
				v++;
			len = (size_t)(eol - v);
			while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			if (len >= n)
				return false;
			memcpy(out, v, len);
			out[len] = '\0';
			return true;
		}
		p = eol;
	}
	return false;
}

static void handle(struct conn *c)
{
	char *buf = malloc(SRV_HEAD_MAX + SRV_BODY_MAX + 1);
	char auth[AUTHZ_TOKEN_MAX + 16], clen[32], te[64], why[SRV_WHY_MAX], who[SRV_WHY_MAX] = "";
	char uri[SPIFFE_ID_STR_MAX], serial[ID_SERIAL_MAX];
	json_object *req = NULL, *csr_v, *life_v, *resp;
	long lifetime = issuer.lifetime_s;
	struct authz_caller caller;
	struct spiffe_id id;
	X509_REQ *csr = NULL;
	X509 *leaf = NULL;
	int have = 0, head_len, body_len, err;
	char *pem = NULL;
	struct tm tm;

	if (!buf)
		return;
	head_len = read_head(c, buf, SRV_HEAD_MAX, &have);
	if (head_len == -2) {
		refuse(c, 431, NULL, "request head over 16 KiB");
		goto out;
	}
	if (head_len < 0)
		goto out; /* gone, or too slow: nothing to answer */
	if (strncmp(buf, "POST ", 5) != 0) {
		refuse(c, strncmp(buf, "GET ", 4) == 0 ? 405 : 400, NULL,
		       "only POST /v1/certificates is served");
		goto out;
	}
	if (strncmp(buf + 5, "/v1/certificates ", 17) != 0) {
		refuse(c, 404, NULL, "no such path (POST /v1/certificates is the API)");
		goto out;
	}
	if (header(buf, "Transfer-Encoding", te, sizeof(te))) {
		refuse(c, 411, NULL, "chunked bodies are not accepted: send Content-Length");
		goto out;
	}
	if (!header(buf, "Content-Length", clen, sizeof(clen)) || !clen[0] ||
	    strspn(clen, "0123456789") != strlen(clen) || strlen(clen) > 9) {
		refuse(c, 411, NULL, "no valid Content-Length");
		goto out;
	}
	body_len = atoi(clen);
	if (body_len > SRV_BODY_MAX) {
		refuse(c, 413, NULL, "body over the size limit (a CSR is under 8 KiB)");
		goto out;
	}
	if (!header(buf, "Authorization", auth, sizeof(auth))) {
		/* header() also says no to a value over the buffer: tell the two apart. */
		refuse(c, 401, NULL,
		       strcasestr(buf, "\r\nAuthorization:") ? "bearer token over 8 KiB"
							     : "no Authorization: Bearer token");
		goto out;
	}
	/* The scheme is case-insensitive (RFC 9110 11.1). */
	if (strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
		refuse(c, 401, NULL, "no Authorization: Bearer token");
		goto out;
	}
	/* The body: what came after the head, then the rest. */
	memmove(buf, buf + head_len, (size_t)(have - head_len));
	have -= head_len;
	if (have > body_len) {
		refuse(c, 400, NULL, "more bytes than Content-Length (one request per connection)");
		goto out;
	}
	while (have < body_len) {
		int r = SSL_read(c->ssl, buf + have, body_len - have);

		if (r <= 0 || past_deadline(c))
			goto out;
		have += r;
	}
	buf[have] = '\0';

	/* Who asks: the token first, before anything of the request counts. */
	err = authz_token_review(&o.api, auth + 7, &caller, why, sizeof(why));
	explicit_bzero(auth, sizeof(auth));
	if (err) {
		refuse(c, err == -EACCES ? 401 : 503, NULL, why);
		goto out;
	}
	snprintf(who, sizeof(who), "(%s/%s, pod %s on node %s)", caller.ns, caller.sa, caller.pod,
		 caller.node);
	if (strcmp(caller.ns, o.agent_ns) != 0 || strcmp(caller.sa, o.agent_sa) != 0) {
		snprintf(why, sizeof(why), "service account %s/%s is not the node agent's (%s/%s)",
			 caller.ns, caller.sa, o.agent_ns, o.agent_sa);
		refuse(c, 403, who, why);
		goto out;
	}
	req = json_tokener_parse(buf);
	if (!req || !json_object_object_get_ex(req, "csr", &csr_v) ||
	    !json_object_is_type(csr_v, json_type_string)) {
		refuse(c, 400, who, "body is not JSON {\"csr\": \"<PEM>\"}");
		goto out;
	}
	/* "lifetime_s": what the agent asks for; it gets that, or our --lifetime if less. */
	if (json_object_object_get_ex(req, "lifetime_s", &life_v)) {
		if (!json_object_is_type(life_v, json_type_int) ||
		    json_object_get_int64(life_v) < ISSUE_REQ_LIFETIME_MIN_S) {
			snprintf(why, sizeof(why), "lifetime_s must be an integer of at least %ld",
				 ISSUE_REQ_LIFETIME_MIN_S);
			refuse(c, 400, who, why);
			goto out;
		}
		if (json_object_get_int64(life_v) < lifetime)
			lifetime = (long)json_object_get_int64(life_v);
	}
	err = issue_csr_check(json_object_get_string(csr_v),
			      (size_t)json_object_get_string_len(csr_v), issuer.trust_domain, &csr,
			      &id, why, sizeof(why));
	if (err) {
		refuse(c, 400, who, why);
		goto out;
	}
	spiffe_id_format(&id, uri, sizeof(uri));
	err = authz_node_pods(&o.api, &caller, &id, why, sizeof(why));
	if (err) {
		size_t used = strlen(why);

		snprintf(why + used, sizeof(why) - used, " (asked for %.100s)", uri);
		refuse(c, err == -EPERM ? 403 : 503, who, why);
		goto out;
	}
	err = issue_leaf(&issuer, csr, &id, lifetime, &leaf, why, sizeof(why));
	pem = err ? NULL : issue_pem(leaf);
	if (!pem) {
		refuse(c, err == -EKEYEXPIRED ? 503 : 500, who,
		       err ? why : "cannot encode the certificate");
		goto out;
	}
	ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm);
	resp = json_object_new_object();
	json_object_object_add(resp, "certificate", json_object_new_string(pem));
	json_object_object_add(resp, "chain", json_object_new_string(issuer.chain_pem));
	json_object_object_add(resp, "expires", json_object_new_int64((int64_t)timegm(&tm)));
	reply(c, 200, json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN));
	json_object_put(resp);
	logf_("issued %s to %s %s, serial %s, expires %lld", uri, c->peer, who,
	      id_cert_serial(leaf, serial, sizeof(serial)), (long long)timegm(&tm));
out:
	free(pem);
	X509_free(leaf);
	X509_REQ_free(csr);
	json_object_put(req);
	free(buf);
}

/* Half-close, then drop what the client still sends (SRV_LINGER_*). */
static void linger_close(int fd)
{
	struct timeval tv = {.tv_usec = 100 * 1000};
	struct timespec t0, now;
	size_t dropped = 0;
	char junk[4096];

	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (dropped < SRV_LINGER_BYTES) {
		ssize_t r = recv(fd, junk, sizeof(junk), 0);

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ||
		    ts_sec(&now, &t0) * 1000 > SRV_LINGER_MS)
			break;
		if (r > 0)
			dropped += (size_t)r;
	}
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct timeval tv = {.tv_sec = SRV_DEADLINE_S};
	SSL_CTX *ctx = get_ctx();

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->ssl = ctx ? SSL_new(ctx) : NULL;
	if (c->ssl && SSL_set_fd(c->ssl, c->fd) == 1) {
		if (SSL_accept(c->ssl) == 1) {
			handle(c);
			SSL_shutdown(c->ssl);
			linger_close(c->fd);
		} else if (log_verbose) {
			logf_("TLS handshake with %s failed", c->peer);
		}
	}
	SSL_free(c->ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	close(c->fd);
	src_done(c->src);
	free(c);
	return NULL;
}

/* ---- start-up ---- */

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: shoal-identity --issuer-cert FILE --issuer-key FILE [options]\n"
	    "  --listen ADDR:PORT          (default [::]:15012)\n"
	    "  --trust-domain TD           (default cluster.local)\n"
	    "  --node-agent NS/SA          the node agent's service account (default "
	    "shoal-system/shoald)\n"
	    "  --anchors FILE              refuse to start unless the issuer chains to these "
	    "roots\n"
	    "  --lifetime SECONDS          of issued certificates (default 86400)\n"
	    "  --server-names LIST         DNS names of our own certificate (comma-separated)\n"
	    "  --api-server URL            (default "
	    "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)\n"
	    "  --api-ca FILE --api-token-file FILE   (default: the pod's service-account mount)\n"
	    "  --audience AUD              the audience agents' tokens carry (default "
	    "shoal-identity)\n"
	    "  --max-connections N --per-source-connections N\n"
	    "  --per-source-rate PER_S --per-source-burst N\n"
	    "  --port-file FILE            write the bound port here once listening (tests)\n"
	    "  --verbose\n");
}

static long num_arg(const char *name, const char *v, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || end == v || n < min || n > max) {
		fprintf(stderr, "shoal-identity: %s %s: want a number in %ld..%ld\n", name, v, min,
			max);
		exit(2);
	}
	return n;
}

static int listen_on(const char *spec, int *port_out)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1, err;
	size_t hl;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - spec);
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	err = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
	if (err)
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && errno == EAFNOSUPPORT && res->ai_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr)) {
		/* A node without IPv6: "[::]" means every address, and IPv4's are all there is. */
		char port[8];

		snprintf(port, sizeof(port), "%s", colon + 1);
		freeaddrinfo(res);
		hints.ai_family = AF_INET;
		if (getaddrinfo("0.0.0.0", port, &hints, &res))
			return -EINVAL;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	if (fd < 0) {
		err = -errno;
		freeaddrinfo(res);
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6) {
		int zero = 0;

		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	}
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		err = -errno;
		close(fd);
		freeaddrinfo(res);
		return err;
	}
	freeaddrinfo(res);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* The issuer must chain to the published anchors, or agents would refuse every leaf. */
static int check_anchors(const char *path)
{
	FILE *f = fopen(path, "re");
	char *pem = malloc(ID_PEM_MAX + 1), why[ID_WHY_MAX];
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx;
	size_t n;
	int err;

	if (!f || !pem) {
		fprintf(stderr, "shoal-identity: cannot read --anchors %s\n", path);
		if (f)
			fclose(f);
		free(pem);
		return -EIO;
	}
	n = fread(pem, 1, ID_PEM_MAX, f);
	fclose(f);
	err = id_anchors_from_pem(pem, n, &store, why, sizeof(why));
	free(pem);
	if (err) {
		fprintf(stderr, "shoal-identity: --anchors %s: %s\n", path, why);
		return err;
	}
	ctx = X509_STORE_CTX_new();
	X509_STORE_CTX_init(ctx, store, issuer.cert, issuer.chain);
	err = X509_verify_cert(ctx) == 1 ? 0 : -EKEYREJECTED;
	if (err)
		fprintf(stderr, "shoal-identity: the issuer does not chain to --anchors %s: %s\n",
			path, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return err;
}

int main(int argc, char **argv)
{
	static char api_url[512];
	static const struct option longopts[] = {
	    {"listen", required_argument, 0, 'l'},
	    {"issuer-cert", required_argument, 0, 'c'},
	    {"issuer-key", required_argument, 0, 'k'},
	    {"anchors", required_argument, 0, 'a'},
	    {"trust-domain", required_argument, 0, 't'},
	    {"node-agent", required_argument, 0, 'n'},
	    {"lifetime", required_argument, 0, 'L'},
	    {"server-names", required_argument, 0, 's'},
	    {"api-server", required_argument, 0, 'A'},
	    {"api-ca", required_argument, 0, 'C'},
	    {"api-token-file", required_argument, 0, 'T'},
	    {"audience", required_argument, 0, 'u'},
	    {"max-connections", required_argument, 0, 'm'},
	    {"per-source-connections", required_argument, 0, 'p'},
	    {"per-source-rate", required_argument, 0, 'r'},
	    {"per-source-burst", required_argument, 0, 'b'},
	    {"port-file", required_argument, 0, 'P'},
	    {"verbose", no_argument, 0, 'v'},
	    {"help", no_argument, 0, 'h'},
	    {0},
	};
	const char *agent = "shoal-system/shoald", *slash;
	char why[ID_WHY_MAX];
	int lfd, port = 0, ch, err;

	o.listen = "[::]:15012";
	o.trust_domain = "cluster.local";
	o.lifetime_s = ISSUE_LIFETIME_DEFAULT_S;
	o.server_names =
	    "shoal-identity.shoal-system.svc,shoal-identity.shoal-system.svc.cluster.local";
	o.max_conns = SRV_DEFAULT_MAX_CONNS;
	o.per_source_conns = SRV_DEFAULT_PER_SOURCE_CONNS;
	o.per_source_rate = SRV_DEFAULT_PER_SOURCE_RATE;
	o.per_source_burst = SRV_DEFAULT_PER_SOURCE_BURST;
	o.api.ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
	o.api.token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
	o.api.audience = "shoal-identity";
	o.api.timeout_ms = SRV_API_TIMEOUT_MS;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			o.listen = optarg;
			break;
		case 'c':
			o.issuer_cert = optarg;
			break;
		case 'k':
			o.issuer_key = optarg;
			break;
		case 'a':
			o.anchors = optarg;
			break;
		case 't':
			o.trust_domain = optarg;
			break;
		case 'n':
			agent = optarg;
			break;
		case 'L':
			o.lifetime_s = num_arg("--lifetime", optarg, ISSUE_LIFETIME_MIN_S,
					       ISSUE_LIFETIME_MAX_S);
			break;
		case 's':
			o.server_names = optarg;
			break;
		case 'A':
			o.api.url = optarg;
			break;
		case 'C':
			o.api.ca_file = optarg;
			break;
		case 'T':
			o.api.token_file = optarg;
			break;
		case 'u':
			o.api.audience = optarg[0] ? optarg : NULL;
			break;
		case 'm':
			o.max_conns = (int)num_arg("--max-connections", optarg, 1, 65536);
			break;
		case 'p':
			o.per_source_conns =
			    (int)num_arg("--per-source-connections", optarg, 1, 65536);
			break;
		case 'r':
			o.per_source_rate = (double)num_arg("--per-source-rate", optarg, 1, 100000);
			break;
		case 'b':
			o.per_source_burst =
			    (double)num_arg("--per-source-burst", optarg, 1, 100000);
			break;
		case 'P':
			o.port_file = optarg;
			break;
		case 'v':
			log_verbose = 1;
			break;
		default:
			usage();
			return ch == 'h' ? 0 : 2;
		}
	}
	if (!o.issuer_cert || !o.issuer_key || optind != argc) {
		usage();
		return 2;
	}
	slash = strchr(agent, '/');
	if (!slash || (size_t)(slash - agent) > SPIFFE_NS_MAX ||
	    strlen(slash + 1) > SPIFFE_SA_MAX || slash == agent || !slash[1]) {
		fprintf(stderr, "shoal-identity: --node-agent %s: want NAMESPACE/SERVICEACCOUNT\n",
			agent);
		return 2;
	}
	memcpy(o.agent_ns, agent, (size_t)(slash - agent));
	snprintf(o.agent_sa, sizeof(o.agent_sa), "%s", slash + 1);
	if (!o.api.url) {
		const char *h = getenv("KUBERNETES_SERVICE_HOST"),
			   *p = getenv("KUBERNETES_SERVICE_PORT");

		if (!h || !p) {
			fprintf(stderr, "shoal-identity: no --api-server and no "
					"KUBERNETES_SERVICE_HOST/PORT\n");
			return 2;
		}
		snprintf(api_url, sizeof(api_url),
			 strchr(h, ':') ? "https://[%s]:%s" : "https://%s:%s", h, p);
		o.api.url = api_url;
	}

	err = issuer_load(&issuer, o.issuer_cert, o.issuer_key, o.trust_domain, o.lifetime_s, why,
			  sizeof(why));
	if (err) {
		fprintf(stderr, "shoal-identity: issuer: %s\n", why);
		return 1;
	}
	if (o.anchors && check_anchors(o.anchors))
		return 1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "shoal-identity: cannot initialise libcurl\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	{
		SSL_CTX *ctx = get_ctx();

		if (!ctx)
			return 1;
		SSL_CTX_free(ctx);
	}
	lfd = listen_on(o.listen, &port);
	if (lfd < 0) {
		fprintf(stderr, "shoal-identity: cannot listen on %s: %s\n", o.listen,
			strerror(-lfd));
		return 1;
	}
	logf_(
	    "listening on %s (port %d), trust domain %s, node agent %s/%s, lifetime %ld s, API %s",
	    o.listen, port, issuer.trust_domain, o.agent_ns, o.agent_sa, o.lifetime_s, o.api.url);
	if (o.port_file) {
		char tmp[4096];
		FILE *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", o.port_file);
		f = fopen(tmp, "we");
		if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, o.port_file)) {
			fprintf(stderr, "shoal-identity: cannot write %s\n", o.port_file);
			return 1;
		}
	}

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct in6_addr a6;
		const char *no = NULL;
		struct source *src;
		struct conn *c;
		pthread_attr_t attr;
		pthread_t t;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		char peer[INET6_ADDRSTRLEN];

		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				usleep(10000); /* EMFILE and the like: do not spin */
			continue;
		}
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			memset(&a6, 0, sizeof(a6));
			a6.s6_addr[10] = a6.s6_addr[11] = 0xff;
			memcpy(&a6.s6_addr[12], &s4->sin_addr, 4);
			inet_ntop(AF_INET, &s4->sin_addr, peer, sizeof(peer));
		} else {
			a6 = ((struct sockaddr_in6 *)&ss)->sin6_addr;
			inet_ntop(AF_INET6, &a6, peer, sizeof(peer));
		}
		src = src_admit(&a6, &no);
		if (!src) {
			/* Closed before any TLS: a refused client costs us no handshake. */
			logf_("refused connection from %s: %s", peer, no);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			src_done(src);
			continue;
		}
		c->fd = fd;
		c->src = src;
		snprintf(c->peer, sizeof(c->peer), "%s", peer);
		clock_gettime(CLOCK_MONOTONIC, &c->start);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, SRV_THREAD_STACK);
		if (pthread_create(&t, &attr, conn_main, c) != 0) {
			close(fd);
			src_done(src);
			free(c);
		}
		pthread_attr_destroy(&attr);
	}
}
