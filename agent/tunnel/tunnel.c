// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The tunnel's thread (tunnel.h, docs/mtls.md): one epoll, level
 * triggered, holding the listener on mtls.port, an eventfd for calls the
 * proxy hands over, every TLS connection (both directions) and every
 * stream's local socket (the proxy's socketpair end at the source, the
 * connection to the pod at the destination).
 *
 * Flow control is end to end: nghttp2's automatic window updates are off,
 * and a stream's received bytes are acknowledged (nghttp2_session_consume)
 * only once written to its local socket, so a stream holds at most
 * TUNNEL_STREAM_WINDOW bytes in memory; its local socket is read only
 * when nghttp2 asks for DATA (the data provider), so a slow peer stops
 * the reads.
 */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/addr.h"
#include "common/log.h"
#include "identity/store.h"
#include "identity/verify.h"
#include "policy/policy.h"
#include "proxy/proxy.h"
#include "proxy/sock.h"
#include "recording/policy_stats.h"
#include "tunnel/tunnel_peers.h"

/* A stream's receive window, and so the most it buffers (flow control above). */
#define TUNNEL_STREAM_WINDOW (256u * 1024)
/* A stream's first buffer; it doubles up to the window while bytes wait. */
#define TUNNEL_STREAM_BUF_MIN (16u * 1024)
/* The connection's window: many streams' worth, so one slow stream does not stall the rest. */
#define TUNNEL_CONN_WINDOW (16u * 1024 * 1024)
/* Streams one TLS connection carries at once (the server's SETTINGS). */
#define TUNNEL_MAX_STREAMS 1024
/* TLS records written per connection before yielding (bounds one turn). */
#define TUNNEL_OUT_BYTES (64u * 1024)
/* SSL_read calls per connection per turn; the rest on the next turn. */
#define TUNNEL_READ_ROUNDS 32
/* An idle pooled client connection (no stream) is closed after this. */
#define TUNNEL_IDLE_NS (60ull * 1000000000)
/*
 * A client connection takes no new stream this close to the expiry of a
 * certificate it was set up with (its own or the server's): a stream
 * begun just before would reach the server after it.
 */
#define TUNNEL_EXPIRY_MARGIN_S 2
/* How often the thread wakes with nothing to do, for timeouts. */
#define TUNNEL_TICK_MS 100
#define TUNNEL_EVENTS 64

enum tobj_type { TOBJ_LISTEN, TOBJ_KICK, TOBJ_TICK, TOBJ_CONN, TOBJ_STREAM };

struct tobj {
	enum tobj_type type;
	int fd;
	uint32_t events; /* what epoll watches now */
};

struct tconn;

struct tstream {
	struct tobj o; /* the local socket */
	struct tconn *tc;
	int32_t id;		     /* HTTP/2 stream id; 0 before it is submitted */
	struct tstream *prev, *next; /* tc's streams, or its pending list */
	char *buf;		     /* bytes from the peer not yet written to o.fd */
	uint32_t head, tail, cap;
	bool deferred; /* the data provider waits for o.fd to be readable */
	/*
	 * The last read of o.fd was short: it took all the socket held, so
	 * the next one would be EAGAIN, and the provider defers without it.
	 * Any EPOLLIN edge since clears it (bytes came). Not once the peer
	 * has shut its side (peer_shut): its end may have come with the last
	 * bytes, in the same edge, and only a read shows it.
	 */
	bool drained;
	bool peer_shut;
	bool h2_eof;   /* the peer ended its side: shut o.fd's write once buf drains */
	bool shut_wr;
	bool connecting; /* server: the connect to the pod is in progress */
	bool answered;	 /* client: 2xx received; server: 200 submitted */
	bool h2_closed;	 /* nghttp2 closed the stream; buf still drains to o.fd */
	bool dead;
	struct shoal_addr target;
	uint16_t target_port_be;
	char method[16];
	char authority[ADDR_STR_MAX];
	char denied_by[128]; /* client: the server's x-shoal-policy, for the log */
	struct tstream *reap_next;
};

enum tconn_state { TC_CONNECTING, TC_HANDSHAKE, TC_READY, TC_DEAD };

struct tconn {
	struct tobj o;
	struct tunnel *t;
	struct tloop *l; /* the loop whose epoll holds it and its streams */
	SSL *ssl;
	nghttp2_session *h2;
	bool server;
	enum tconn_state state;
	uint64_t deadline_ns; /* the handshake's */
	uint64_t idle_since_ns;
	/* client: the pool key */
	const char *src, *dst;
	struct shoal_addr node;
	uint16_t node_port_be;
	/*
	 * client: the credential it presented (a reference), compared with the
	 * store's current one for src: once renewed, the connection is retired
	 * (takes no new stream, closes when its last one ends).
	 */
	struct id_cred *cred;
	time_t expires; /* client: the sooner notAfter of its own and the server's certificate */
	bool retired;
	struct shoal_addr peer_addr;	    /* server: the source's address */
	char local_id[CONFIG_MAX_IDENTITY]; /* the identity this side presented */
	char peer_id[CONFIG_MAX_IDENTITY];  /* the identity the peer proved */
	/* server: the peer as policy sees the caller (tc_ready) */
	char peer_spiffe[POLICY_MAX_ID + 1];
	char peer_ns[POLICY_MAX_LABEL + 1], peer_sa[POLICY_MAX_LABEL + 1];
	struct policy_caller caller;
	struct tpeer *peer; /* server: its row of the callers (tc_ready) */
	struct tstream *streams;	    /* open (submitted) */
	struct tstream *pending;	    /* client: waiting for the handshake */
	int n_streams;
	uint8_t out[TUNNEL_OUT_BYTES];
	size_t out_off, out_len;
	bool ktls_tx, ktls_rx;
	bool read_again;   /* SSL_read stopped at its round limit */
	bool flush_due;	   /* frames to send: flushed once, at the end of the turn */
	bool rbio_short;   /* the socket's last read returned less than asked: it is empty */
	bool in_handshake; /* server: counted in t->n_handshakes */
	struct tconn *prev, *next;
	struct tconn *reap_next;
};

/*
 * An event loop of the tunnel: an epoll holding TLS connections and their
 * streams' local sockets. The tunnel's thread runs loop 0, which holds the
 * listener and so every inbound connection. Each proxy worker runs a loop
 * of its own (tunnel_loop_run, from the worker's epoll, which holds this
 * one's fd), holding the outbound connections of the calls it opens: the
 * bytes of a call then go from the worker's socket to TLS on the worker's
 * own thread, with no wake-up of another thread on the way
 * (docs/mtls.md, "Why these choices").
 */
struct tloop {
	struct tunnel *t;
	int ep;
	bool worker; /* run by a proxy worker (tunnel_loop_run), not the thread */
	/* an eventfd: the thread is asked to stop, or a worker's loop to run again */
	struct tobj kick;
	/* a worker's loop: a timerfd, every TUNNEL_TICK_MS while it has a connection */
	struct tobj tick;
	bool tick_armed;
	uint64_t last_sweep_ns;
	uint64_t retirements; /* its client connections retired so far (tunnel_retirements) */
	struct tconn *conns;
	struct tconn *reap_conns;
	struct tstream *reap_streams;
};

struct tunnel {
	const struct config *cfg; /* start-up: mtls section, listener */
	struct id_store *store;
	/*
	 * The proxy, for its newest config (local endpoints, the policy),
	 * until tunnel_release_proxy. A snapshot is used under proxy_lock
	 * only: it refers to the proxy's tables, which proxy_stop frees.
	 */
	struct proxy *proxy;
	pthread_mutex_t proxy_lock;
	SSL_CTX *client_ctx, *server_ctx;
	/* loops[0]: the thread's (inbound); loops[1 + i]: proxy worker i's (outbound) */
	struct tloop *loops;
	int n_loops;
	struct tobj listen[2];
	int n_listen;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	pthread_mutex_t lock; /* idents */
	const char **idents;
	int n_idents;
	uint32_t n_handshakes; /* inbound, so the thread's only */
	/* The destination's policy decisions (tunnel thread only; read by telemetry). */
	struct policy_stats *authz;
	uint64_t policy_serial; /* of the policy the open streams were last decided by */
	uint64_t denial_logged_ns;
	bool mark_warned; /* the pod leg's SO_MARK failed once (logged once) */
	struct tunnel_peers peers; /* the destination's callers (tunnel thread only writes) */
	_Atomic unsigned long long st[sizeof(struct tunnel_stats) / sizeof(unsigned long long)];
};

/* Index of a stat in t->st by its field name. */
#define TSTAT(name) (offsetof(struct tunnel_stats, name) / sizeof(unsigned long long))
#define TSTAT_ADD(t, name, v)                                                                      \
	atomic_fetch_add_explicit(&(t)->st[TSTAT(name)], (v), memory_order_relaxed)
#define TSTAT_INC(t, name) TSTAT_ADD(t, name, 1)
#define TSTAT_DEC(t, name) atomic_fetch_sub_explicit(&(t)->st[TSTAT(name)], 1, memory_order_relaxed)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The OpenSSL error queue as one line (and emptied), for messages. */
static const char *ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t off = 0;

	buf[0] = 0;
	while ((e = ERR_get_error()) && off + 2 < len) {
		if (off)
			buf[off++] = ';';
		ERR_error_string_n(e, buf + off, len - off);
		off += strlen(buf + off);
	}
	if (!buf[0])
		snprintf(buf, len, "%s", "no OpenSSL error");
	return buf;
}

static void tobj_watch(struct tloop *l, struct tobj *o, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = o};

	if (o->fd < 0 || o->events == events)
		return;
	if (epoll_ctl(l->ep, o->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, o->fd, &ev) == 0)
		o->events = events;
	else
		pr_warn("tunnel: cannot watch fd %d: %s", o->fd, strerror(errno));
}

static void tobj_close(struct tloop *l, struct tobj *o)
{
	if (o->fd < 0)
		return;
	if (o->events)
		epoll_ctl(l->ep, EPOLL_CTL_DEL, o->fd, NULL);
	close(o->fd);
	o->fd = -1;
	o->events = 0;
}

/* ---- identities ------------------------------------------------------------- */

const char *tunnel_ident(struct tunnel *t, const char *id)
{
	const char *found = NULL;

	if (!id || !config_identity_valid(id))
		return NULL;
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < t->n_idents && !found; i++)
		if (!strcmp(t->idents[i], id))
			found = t->idents[i];
	if (!found && t->n_idents < TUNNEL_MAX_IDENTS) {
		char *copy = strdup(id);

		if (copy) {
			t->idents[t->n_idents++] = copy;
			found = copy;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

/* Split "<ns>/<sa>" into ns and sa. */
static const char *peer_intern(void *t, const char *id)
{
	return tunnel_ident(t, id);
}

/* The callers' row of tc's pair (peer_id, local_id): the tunnel's thread, once per connection. */
static struct tpeer *peer_row(struct tunnel *t, const char *peer_id, const char *local_id)
{
	return tunnel_peers_row(&t->peers, peer_id, local_id, peer_intern, t);
}

static int ident_split(const char *id, char ns[ID_MAX_NS], char sa[ID_MAX_SA])
{
	const char *slash = strchr(id, '/');

	if (!slash || (size_t)(slash - id) >= ID_MAX_NS || strlen(slash + 1) >= ID_MAX_SA)
		return -EINVAL;
	memcpy(ns, id, (size_t)(slash - id));
	ns[slash - id] = 0;
	snprintf(sa, ID_MAX_SA, "%s", slash + 1);
	return 0;
}

/* id's credentials from the store, or NULL. */
static struct id_cred *cred_of(struct tunnel *t, const char *id)
{
	char ns[ID_MAX_NS], sa[ID_MAX_SA];
	struct id_cred *c = NULL;

	if (ident_split(id, ns, sa) || id_store_get(t->store, ns, sa, &c))
		return NULL;
	return c;
}

/* Present c on ssl: its key, leaf and intermediates. 0 or -EINVAL. */
static int ssl_use_cred(SSL *ssl, const struct id_cred *c)
{
	if (SSL_use_certificate(ssl, c->leaf) != 1 || SSL_use_PrivateKey(ssl, c->key) != 1 ||
	    (c->chain && SSL_set1_chain(ssl, c->chain) != 1))
		return -EINVAL;
	return 0;
}

/* ---- streams ---------------------------------------------------------------- */

static void tc_flush(struct tconn *tc);
static void tc_kill(struct tconn *tc, const char *why);

/*
 * A stream's local socket stays in epoll, edge triggered, from its first
 * watch to its close: EPOLLIN always, EPOLLOUT only while bytes wait for
 * it (or a connect is in progress). A request and its answer then change
 * nothing in epoll. Level triggered, the socket had to leave epoll
 * whenever its data provider was running (else a readable socket, or a
 * hang-up, spun the loop), and come back when it deferred: two
 * epoll_ctl calls per message each way, the tunnel's top syscall in the
 * profile (docs/benchmarks.md, cross-node mTLS). Edges are enough: the
 * provider reads until EAGAIN before it defers, and drain writes until
 * EAGAIN before it waits, so the next edge always comes.
 * EPOLLOUT is not left on: an AF_UNIX socket signals it each time its
 * peer reads, a wake-up per answer for nothing.
 */
static void stream_rewatch(struct tstream *st)
{
	uint32_t ev = EPOLLIN | EPOLLRDHUP | EPOLLET;

	if (st->dead || st->o.fd < 0)
		return;
	if (st->connecting || st->tail > st->head)
		ev |= EPOLLOUT;
	tobj_watch(st->tc->l, &st->o, ev);
}

static struct tstream *stream_new(struct tconn *tc)
{
	struct tstream *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->o.type = TOBJ_STREAM;
	st->o.fd = -1;
	st->tc = tc;
	return st;
}

static void stream_link(struct tstream **list, struct tstream *st)
{
	st->prev = NULL;
	st->next = *list;
	if (*list)
		(*list)->prev = st;
	*list = st;
}

static void stream_unlink(struct tstream **list, struct tstream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else if (*list == st)
		*list = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
}

/* Close st's local socket and free it at the end of the turn. */
static void stream_free(struct tstream *st, bool pending)
{
	struct tconn *tc = st->tc;

	if (st->dead)
		return;
	st->dead = true;
	tobj_close(tc->l, &st->o);
	if (pending) {
		stream_unlink(&tc->pending, st);
	} else {
		stream_unlink(&tc->streams, st);
		tc->n_streams--;
		if (!tc->n_streams)
			tc->idle_since_ns = now_ns();
	}
	free(st->buf);
	st->buf = NULL;
	st->reap_next = tc->l->reap_streams;
	tc->l->reap_streams = st;
}

/* Reset st (code): its local socket closes at once, the peer hears RST_STREAM. */
static void stream_reset(struct tstream *st, uint32_t code)
{
	struct tconn *tc = st->tc;

	if (st->dead)
		return;
	if (st->id > 0 && tc->h2)
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, st->id, code);
	/* on_stream_close frees it; until then nothing more is read or written. */
	tobj_close(tc->l, &st->o);
}

/* Write what the peer sent to the local socket; acknowledge it to the peer. */
static void stream_drain(struct tstream *st)
{
	struct tconn *tc = st->tc;

	if (st->dead || st->o.fd < 0 || st->connecting)
		return;
	while (st->head < st->tail) {
		ssize_t n = send(st->o.fd, st->buf + st->head, st->tail - st->head,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			stream_reset(st, NGHTTP2_CONNECT_ERROR);
			return;
		}
		st->head += (uint32_t)n;
		TPEER_ADD(tc->peer, received_bytes, (unsigned long long)n);
		if (st->h2_closed)
			nghttp2_session_consume_connection(tc->h2, (size_t)n);
		else
			nghttp2_session_consume(tc->h2, st->id, (size_t)n);
	}
	if (st->head == st->tail) {
		st->head = st->tail = 0;
		if (st->h2_eof && !st->shut_wr) {
			shutdown(st->o.fd, SHUT_WR);
			st->shut_wr = true;
		}
		if (st->h2_closed) {
			stream_free(st, false);
			return;
		}
	}
	stream_rewatch(st);
}

/* nghttp2 asks for DATA of stream id: read it from the local socket. */
static ssize_t stream_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			      uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct tstream *st = src->ptr;
	ssize_t n;

	(void)s;
	(void)id;
	(void)user;
	if (st->dead || st->o.fd < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	/* The server reads the pod's bytes only once the connect is done. */
	if (st->connecting) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (st->drained && !st->peer_shut) {
		/* A stream socket returns less than asked only when its queue ran dry. */
		st->drained = false;
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	do
		n = recv(st->o.fd, buf, length, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		st->drained = (size_t)n < length;
		TPEER_ADD(st->tc->peer, sent_bytes, (unsigned long long)n);
		return n;
	}
	if (n == 0) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		st->deferred = true;
		stream_rewatch(st);
		return NGHTTP2_ERR_DEFERRED;
	}
	return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* Events on a stream's local socket. */
static void stream_event(struct tstream *st, uint32_t events)
{
	struct tconn *tc = st->tc;

	if (st->dead || st->o.fd < 0)
		return;
	if (st->connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(st->o.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && !(events & EPOLLOUT))
			err = ECONNRESET;
		st->connecting = false;
		if (err) {
			const nghttp2_nv nv[] = {
			    {(uint8_t *)":status", (uint8_t *)"502", 7, 3, NGHTTP2_NV_FLAG_NONE}};

			pr_debug("tunnel: stream %d from %s: connect to %s failed: %s", st->id,
				 tc->peer_id, st->authority, strerror(err));
			TSTAT_INC(tc->t, streams_failed);
			tobj_close(tc->l, &st->o);
			nghttp2_submit_response(tc->h2, st->id, nv, 1, NULL);
			tc_flush(tc);
			return;
		} else {
			const nghttp2_nv nv[] = {
			    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE}};
			nghttp2_data_provider prd = {.source.ptr = st,
						     .read_callback = stream_read_cb};
			int one = 1;

			setsockopt(st->o.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			st->answered = true;
			st->deferred = false;
			nghttp2_submit_response(tc->h2, st->id, nv, 1, &prd);
		}
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		st->drained = false; /* bytes, an end or an error came: the next read must look */
	if (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP))
		st->peer_shut = true;
	if ((events & EPOLLIN) && st->deferred) {
		st->deferred = false;
		nghttp2_session_resume_data(tc->h2, st->id);
	}
	if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		stream_drain(st);
	if ((events & (EPOLLERR | EPOLLHUP)) && !st->dead && st->o.fd >= 0 && !st->deferred &&
	    st->head == st->tail) {
		/* The local side is gone and nothing waits for it: let the provider see it. */
		st->deferred = false;
		nghttp2_session_resume_data(tc->h2, st->id);
	}
	stream_rewatch(st);
	tc->flush_due = true; /* loop_turn flushes: one SSL_write for every stream of the turn */
}

/* ---- the destination: is a CONNECT's target a local endpoint? ---------------- */

/*
 * True when cfg has an endpoint at target:port_be on this node (its node
 * is mtls.node_name) that serves as identity id: never an open proxy, and
 * never to an endpoint of an identity other than the one the server
 * proved to the client.
 */
/*
 * svc's port whose target port is port_be and its endpoint at target, or
 * NULL: what both of the destination's checks ask of each service.
 */
static const struct config_endpoint *service_endpoint(const struct config_service *svc,
						      const struct shoal_addr *target,
						      uint16_t port_be,
						      const struct config_port **port)
{
	*port = NULL;
	for (int i = 0; i < svc->n_ports && !*port; i++)
		if (htons(svc->ports[i].target_port) == port_be)
			*port = &svc->ports[i];
	for (int e = 0; *port && e < svc->n_endpoints; e++)
		if (addr_equal(&svc->endpoints[e].addr, target))
			return &svc->endpoints[e];
	return NULL;
}

static bool local_endpoint(const struct config *cfg, const char *node, const char *id,
			   const struct shoal_addr *target, uint16_t port_be)
{
	for (int s = 0; s < cfg->n_services; s++) {
		const struct config_port *port;
		const struct config_endpoint *ep =
		    service_endpoint(cfg->services[s], target, port_be, &port);

		if (ep && ep->node && !strcmp(ep->node, node) && ep->identity &&
		    !strcmp(ep->identity, id))
			return true;
	}
	return false;
}

static void server_refuse(struct tconn *tc, struct tstream *st, const char *status, const char *why)
{
	const nghttp2_nv nv[] = {
	    {(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE}};

	TSTAT_INC(tc->t, streams_refused);
	TPEER_ADD(tc->peer, refused, 1);
	pr_info("tunnel: refusing stream %d from %s (%s) to %s: %s", st->id, tc->peer_id,
		tc->local_id, st->authority[0] ? st->authority : "(none)", why);
	nghttp2_submit_response(tc->h2, st->id, nv, 1, NULL);
}

/*
 * Whether the caller tc proved may reach the local endpoint target:port_be
 * under cfg's policy (docs/policy.md, "Cross-node calls"). The CONNECT
 * names an endpoint, not the service the caller dialled, so every service
 * of cfg that has the endpoint on that target port is asked, on its own
 * port, and the call passes when one allows it (a caller may reach the
 * endpoint through any of them). Each service's decision is counted in
 * shoal_policy_decisions_total. *reason names a denying rule or default.
 */
static bool stream_authorized(struct tconn *tc, const struct config *cfg,
			      const struct shoal_addr *target, uint16_t port_be, const char **reason)
{
	struct tunnel *t = tc->t;
	const struct policy_set *set = cfg->policy;
	bool allowed = false;

	*reason = NULL;
	if (!set)
		return true;
	for (int s = 0; s < cfg->n_services && !allowed; s++) {
		const struct config_service *svc = cfg->services[s];
		const struct config_port *port;
		struct policy_decision d;

		if (!service_endpoint(svc, target, port_be, &port))
			continue;
		policy_decide_caller(policy_lookup(set, svc->namespace, svc->name), svc->namespace,
				     port->port, &tc->caller, &d);
		policy_stats_record(t->authz, &(struct policy_stats_decision){
						  .serial = policy_set_serial(set),
						  .svc = svc->metrics_id,
						  .ns = svc->namespace,
						  .service = svc->name,
						  .reason = d.reason,
						  .allow = d.allow,
						  .caller = tc->caller.id,
						  .port = port->port,
					      });
		allowed = d.allow;
		if (!allowed && !*reason)
			*reason = d.reason;
	}
	return allowed || !*reason; /* no service has it: local_endpoint refuses it */
}

/* A denial of st's call, logged at most once a second (the rest counted). */
static void log_denial(struct tconn *tc, const struct tstream *st, const char *reason,
		       const char *what)
{
	uint64_t now = now_ns();

	TSTAT_INC(tc->t, streams_denied);
	if (now - tc->t->denial_logged_ns < 1000000000ull && tc->t->denial_logged_ns)
		return;
	tc->t->denial_logged_ns = now;
	pr_info("policy: %s %s's call to %s (stream %d) by %s", what, tc->caller.id, st->authority,
		st->id, reason);
}

/* Refuse st: the policy denies it (403, and the rule in x-shoal-policy). */
static void server_deny(struct tconn *tc, struct tstream *st, const char *reason)
{
	const nghttp2_nv nv[] = {
	    {(uint8_t *)":status", (uint8_t *)"403", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-shoal-policy", (uint8_t *)reason, 14, strlen(reason),
	     NGHTTP2_NV_FLAG_NONE},
	};

	log_denial(tc, st, reason, "denied");
	TPEER_ADD(tc->peer, refused, 1);
	nghttp2_submit_response(tc->h2, st->id, nv, 2, NULL);
}

/* The request of st is complete: check it, and connect to its target. */
static void server_start_stream(struct tconn *tc, struct tstream *st)
{
	struct tunnel *t = tc->t;
	struct proxy_snap *snap;
	struct sockaddr_storage ss;
	const char *reason = NULL;
	socklen_t len;
	bool ok, allowed;

	if (strcmp(st->method, "CONNECT")) {
		server_refuse(tc, st, "405", "not a CONNECT");
		return;
	}
	if (addr_parse_hostport(st->authority, &st->target, &st->target_port_be)) {
		server_refuse(tc, st, "400", ":authority is not ADDRESS:PORT");
		return;
	}
	pthread_mutex_lock(&t->proxy_lock);
	snap = t->proxy ? proxy_snap_newest(t->proxy) : NULL;
	ok = snap && local_endpoint(proxy_snap_config(snap), t->cfg->mtls.node_name, tc->local_id,
				    &st->target, st->target_port_be);
	allowed = ok && stream_authorized(tc, proxy_snap_config(snap), &st->target,
					  st->target_port_be, &reason);
	proxy_snap_put(snap);
	pthread_mutex_unlock(&t->proxy_lock);
	if (!ok) {
		server_refuse(tc, st, "403", "not a local endpoint of the identity presented");
		return;
	}
	if (!allowed) {
		server_deny(tc, st, reason);
		return;
	}
	len = addr_to_sockaddr(&st->target, st->target_port_be, &ss);
	st->o.fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->o.fd < 0) {
		server_refuse(tc, st, "503", strerror(errno));
		return;
	}
	/*
	 * Marked as the proxy's upstreams are: the leg to the pod is on the
	 * node, so sockops puts it and the pod's accepted socket (an enrolled
	 * pod's) in the SOCKHASH, and the bytes take the shortcut as a local
	 * call's do (docs/mtls.md, "kTLS, and never kTLS with the sockmap").
	 * This socket never carries kTLS; the 15008 ones stay unmarked. A
	 * mark that cannot be set (no CAP_NET_ADMIN) leaves it on plain TCP.
	 */
	if (t->cfg->socket_mark && sock_set_mark(st->o.fd, t->cfg->socket_mark) && !t->mark_warned) {
		t->mark_warned = true;
		pr_warn("tunnel: cannot mark the connections to local pods (SO_MARK 0x%x): they stay "
			"off the sockmap shortcut", t->cfg->socket_mark);
	}
	if (connect(st->o.fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		TSTAT_INC(t, streams_failed);
		pr_debug("tunnel: stream %d from %s: connect to %s failed: %s", st->id, tc->peer_id,
			 st->authority, strerror(errno));
		close(st->o.fd);
		st->o.fd = -1;
		server_refuse(tc, st, "502", "the endpoint refused the connection");
		return;
	}
	TSTAT_INC(t, streams_in);
	TPEER_ADD(tc->peer, streams, 1);
	pr_debug("tunnel: stream %d: %s -> %s (as %s)", st->id, tc->peer_id, st->authority,
		 tc->local_id);
	st->connecting = true;
	stream_rewatch(st);
}

/* ---- nghttp2 callbacks ------------------------------------------------------ */

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t length, int flags,
			  void *user)
{
	struct tconn *tc = user;
	size_t room = sizeof(tc->out) - tc->out_len;

	(void)s;
	(void)flags;
	if (!room)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (length > room)
		length = room;
	memcpy(tc->out + tc->out_len, data, length);
	tc->out_len += length;
	return (ssize_t)length;
}

static int h2_begin_headers_cb(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct tconn *tc = user;
	struct tstream *st;

	if (!tc->server || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = stream_new(tc);
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->id = f->hd.stream_id;
	stream_link(&tc->streams, st);
	tc->n_streams++;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

static int h2_header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	struct tconn *tc = user;
	struct tstream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

	(void)flags;
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (tc->server) {
		if (namelen == 7 && !memcmp(name, ":method", 7) && valuelen < sizeof(st->method)) {
			memcpy(st->method, value, valuelen);
			st->method[valuelen] = 0;
		} else if (namelen == 10 && !memcmp(name, ":authority", 10) &&
			   valuelen < sizeof(st->authority)) {
			memcpy(st->authority, value, valuelen);
			st->authority[valuelen] = 0;
		}
	} else if (namelen == 7 && !memcmp(name, ":status", 7)) {
		st->answered = valuelen == 3 && value[0] == '2';
	} else if (namelen == 14 && !memcmp(name, "x-shoal-policy", 14)) {
		snprintf(st->denied_by, sizeof(st->denied_by), "%.*s", (int)valuelen,
			 (const char *)value);
	}
	return 0;
}

static int h2_frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	struct tconn *tc = user;
	struct tstream *st =
	    f->hd.stream_id ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id) : NULL;

	if (!st || st->dead)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS) {
		if (tc->server && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
			server_start_stream(tc, st);
		} else if (!tc->server && !st->answered) {
			TSTAT_INC(tc->t, streams_failed);
			pr_info("tunnel: %s refused the call of %s to %s%s%s", tc->peer_id, tc->src,
				st->authority, st->denied_by[0] ? ": denied by its policy's " : "",
				st->denied_by);
			stream_reset(st, NGHTTP2_CANCEL);
			return 0;
		}
	}
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		st->h2_eof = true;
		stream_drain(st);
	}
	return 0;
}

static int h2_data_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
		      size_t len, void *user)
{
	struct tstream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	(void)user;
	if (!st || st->dead || st->o.fd < 0) {
		/* Nobody will read it: give the window back at once. */
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	if (st->tail + len > st->cap && st->head) {
		memmove(st->buf, st->buf + st->head, st->tail - st->head);
		st->tail -= st->head;
		st->head = 0;
	}
	if (st->tail + len > TUNNEL_STREAM_WINDOW) {
		/* The peer sent past the window it was given. */
		stream_reset(st, NGHTTP2_FLOW_CONTROL_ERROR);
		return 0;
	}
	if (st->tail + len > st->cap) {
		/*
		 * Grown as bytes wait, up to the window: a connection's streams
		 * together hold at most TUNNEL_CONN_WINDOW unwritten bytes, and
		 * memory follows what waits, not the number of streams.
		 */
		uint32_t cap = st->cap ? st->cap : TUNNEL_STREAM_BUF_MIN;
		char *grown;

		while (cap < st->tail + len)
			cap *= 2;
		if (cap > TUNNEL_STREAM_WINDOW)
			cap = TUNNEL_STREAM_WINDOW;
		grown = realloc(st->buf, cap);
		if (!grown)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		st->buf = grown;
		st->cap = cap;
	}
	memcpy(st->buf + st->tail, data, len);
	st->tail += (uint32_t)len;
	stream_drain(st);
	return 0;
}

static int h2_stream_close_cb(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	struct tstream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)user;
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	/* Closed cleanly with bytes still for the socket: they drain first. */
	if (code == NGHTTP2_NO_ERROR && st->o.fd >= 0 && !st->dead && st->head < st->tail) {
		st->h2_closed = true;
		st->deferred = false;
		stream_rewatch(st);
		return 0;
	}
	if (code != NGHTTP2_NO_ERROR && st->o.fd >= 0 && !st->dead) {
		/* A reset: the pod's connection is reset too, not ended as if complete. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		setsockopt(st->o.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	stream_free(st, false);
	return 0;
}

static nghttp2_session_callbacks *h2_callbacks(void)
{
	/* Built once, by the first tunnel_start (the main thread), never freed. */
	static nghttp2_session_callbacks *cbs;

	if (!cbs && !nghttp2_session_callbacks_new(&cbs)) {
		nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_begin_headers_cb);
		nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_frame_recv_cb);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data_cb);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_stream_close_cb);
	}
	return cbs;
}

/* ---- TLS connections -------------------------------------------------------- */

static void tc_unwatch_all_streams(struct tconn *tc)
{
	while (tc->streams)
		stream_free(tc->streams, false);
	while (tc->pending)
		stream_free(tc->pending, true);
}

/* Close tc and every stream on it; freed at the end of the turn. */
static void tc_kill(struct tconn *tc, const char *why)
{
	struct tunnel *t = tc->t;

	if (tc->state == TC_DEAD)
		return;
	if (why)
		pr_info("tunnel: %s connection %s %s closed: %s",
			tc->server ? "inbound" : "outbound", tc->server ? "from" : "to",
			tc->server ? tc->peer_id : (tc->dst ? tc->dst : "(unknown)"), why);
	if (tc->in_handshake)
		t->n_handshakes--;
	tc->in_handshake = false;
	TSTAT_DEC(t, connections_open);
	if (tc->ktls_tx)
		TSTAT_DEC(t, ktls_tx);
	if (tc->ktls_rx)
		TSTAT_DEC(t, ktls_rx);
	tc->state = TC_DEAD;
	/* The streams first: their close callbacks would look at tc->h2. */
	if (tc->h2) {
		nghttp2_session_del(tc->h2);
		tc->h2 = NULL;
	}
	tc_unwatch_all_streams(tc);
	if (tc->ssl) {
		SSL_free(tc->ssl);
		tc->ssl = NULL;
	}
	id_cred_put(tc->cred);
	tc->cred = NULL;
	tobj_close(tc->l, &tc->o);
	if (tc->prev)
		tc->prev->next = tc->next;
	else if (tc->l->conns == tc)
		tc->l->conns = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	tc->reap_next = tc->l->reap_conns;
	tc->l->reap_conns = tc;
}

/* Write what nghttp2 has to send, through TLS, until the socket is full. */
static void tc_flush(struct tconn *tc)
{
	char ebuf[256];

	if (tc->state != TC_READY)
		return;
	for (;;) {
		if (tc->out_off == tc->out_len) {
			int rv;

			tc->out_off = tc->out_len = 0;
			rv = nghttp2_session_send(tc->h2);
			if (rv) {
				tc_kill(tc, nghttp2_strerror(rv));
				return;
			}
			if (!tc->out_len)
				break;
		}
		int n = SSL_write(tc->ssl, tc->out + tc->out_off, (int)(tc->out_len - tc->out_off));

		if (n > 0) {
			tc->out_off += (size_t)n;
			continue;
		}
		switch (SSL_get_error(tc->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
		case SSL_ERROR_WANT_READ:
			tobj_watch(tc->l, &tc->o, EPOLLIN | EPOLLOUT);
			return;
		default:
			tc_kill(tc, ssl_errors(ebuf, sizeof(ebuf)));
			return;
		}
	}
	if (!nghttp2_session_want_read(tc->h2) && !nghttp2_session_want_write(tc->h2)) {
		/* both sides done (GOAWAY): close_notify, so the peer sees an end, not an EOF */
		SSL_shutdown(tc->ssl);
		tc_kill(tc, NULL);
		return;
	}
	tobj_watch(tc->l, &tc->o, EPOLLIN);
}

static void tc_read(struct tconn *tc)
{
	uint8_t buf[16384];
	char ebuf[256];

	tc->read_again = false;
	for (int round = 0; tc->state == TC_READY; round++) {
		int n;

		if (round == TUNNEL_READ_ROUNDS) {
			tc->read_again = true;
			return;
		}
		n = SSL_read(tc->ssl, buf, sizeof(buf));
		if (n > 0) {
			ssize_t rv = nghttp2_session_mem_recv(tc->h2, buf, (size_t)n);

			if (rv < 0) {
				tc_kill(tc, nghttp2_strerror((int)rv));
				return;
			}
			/*
			 * Nothing buffered and the socket was empty at its last read:
			 * the next SSL_read would be a read() returning EAGAIN. The
			 * connection is level triggered, so bytes that came since
			 * bring it back.
			 */
			if (tc->rbio_short && !SSL_has_pending(tc->ssl))
				return;
			continue;
		}
		switch (SSL_get_error(tc->ssl, n)) {
		case SSL_ERROR_WANT_READ:
			return;
		case SSL_ERROR_WANT_WRITE:
			tobj_watch(tc->l, &tc->o, EPOLLIN | EPOLLOUT);
			return;
		case SSL_ERROR_ZERO_RETURN:
			tc_kill(tc, "the peer closed TLS");
			return;
		default:
			tc_kill(tc, ERR_peek_error() ? ssl_errors(ebuf, sizeof(ebuf))
						     : "the peer closed the connection");
			return;
		}
	}
}

static void client_submit(struct tconn *tc, struct tstream *st)
{
	nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)st->authority, 10, strlen(st->authority),
	     NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = stream_read_cb};
	int32_t id = nghttp2_submit_request(tc->h2, NULL, nv, 2, &prd, st);

	if (id < 0) {
		TSTAT_INC(tc->t, streams_failed);
		stream_link(&tc->streams, st);
		tc->n_streams++;
		stream_free(st, false);
		return;
	}
	st->id = id;
	stream_link(&tc->streams, st);
	tc->n_streams++;
	TSTAT_INC(tc->t, streams_out);
}

/* x's notAfter in Unix seconds; 0 if it cannot be read. */
static time_t cert_not_after(const X509 *x)
{
	struct tm tm;

	if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return timegm(&tm);
}

/*
 * Whether client connection tc may take a new stream, cur being the
 * store's current credential for its source (NULL: none). Not once cur
 * is another than the one tc presented (a renewal: the next handshake
 * proves the new certificate), nor within TUNNEL_EXPIRY_MARGIN_S of
 * tc->expires. Such a connection is retired for good: the streams on it
 * run to their end, and sweep closes it once it has none.
 */
static bool tc_current(struct tconn *tc, const struct id_cred *cur, time_t now)
{
	const char *why;

	if (tc->retired)
		return false;
	if (tc->cred != cur)
		why = "its certificate was renewed";
	else if (tc->expires && now + TUNNEL_EXPIRY_MARGIN_S >= tc->expires)
		why = "a certificate it was set up with expires";
	else
		return true;
	tc->retired = true;
	tc->l->retirements++;
	TSTAT_INC(tc->t, connections_retired);
	pr_info("tunnel: connection to %s as %s retired (%s): new calls go on a new one, its %d "
		"stream%s finish on it",
		tc->dst ? tc->dst : "(unknown)", tc->src, why, tc->n_streams,
		tc->n_streams == 1 ? "" : "s");
	return false;
}

/* The peer's leaf and intermediates, by id_verify_peer's rules. 0 or -errno with why. */
static int tc_verify_svid(struct tconn *tc, X509 *leaf, char *why, size_t why_len)
{
	X509_STORE *anchors = id_store_anchors(tc->t->store);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(tc->ssl); /* the client's holds the leaf */
	struct spiffe_id id;
	int err;

	if (!anchors) {
		snprintf(why, why_len, "no trust anchors");
		return -ENOKEY;
	}
	err = id_verify_peer(anchors, leaf, chain, tc->t->cfg->identity.trust_domain, &id, why,
			     why_len);
	X509_STORE_free(anchors);
	return err;
}

/* The handshake is done: check who the peer is, then start HTTP/2. */
/* tc->caller from the identity the peer proved ("<ns>/<sa>" of trust domain td). */
static int tc_set_caller(struct tconn *tc, const char *td)
{
	const char *slash = strchr(tc->peer_id, '/');
	size_t nl = slash ? (size_t)(slash - tc->peer_id) : 0;

	if (!slash || nl > POLICY_MAX_LABEL || strlen(slash + 1) > POLICY_MAX_LABEL)
		return -EINVAL;
	memcpy(tc->peer_ns, tc->peer_id, nl);
	tc->peer_ns[nl] = '\0';
	snprintf(tc->peer_sa, sizeof(tc->peer_sa), "%s", slash + 1);
	if (snprintf(tc->peer_spiffe, sizeof(tc->peer_spiffe), "spiffe://%s/ns/%s/sa/%s", td,
		     tc->peer_ns, tc->peer_sa) >= (int)sizeof(tc->peer_spiffe))
		return -EINVAL;
	tc->caller = (struct policy_caller){.authenticated = true,
					    .id = tc->peer_spiffe,
					    .trust_domain = td,
					    .ns = tc->peer_ns,
					    .sa = tc->peer_sa};
	return 0;
}

static void tc_ready(struct tconn *tc)
{
	struct tunnel *t = tc->t;
	const nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, TUNNEL_MAX_STREAMS},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, TUNNEL_STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	nghttp2_option *opt = NULL;
	char why[512], ours[ID_SERIAL_MAX], theirs[ID_SERIAL_MAX];
	X509 *leaf = SSL_get0_peer_certificate(tc->ssl);
	time_t peer_expires;
	int rv;

	if (tc->in_handshake)
		t->n_handshakes--;
	tc->in_handshake = false;
	if (!leaf || SSL_get_verify_result(tc->ssl) != X509_V_OK) {
		TSTAT_INC(t, handshake_failures);
		tc_kill(tc, "the peer's certificate is not verified");
		return;
	}
	/*
	 * The handshake verified the chain; id_verify_peer (the identity
	 * module's one definition of an acceptable SVID) checks it again with
	 * the end-entity and key-usage rules, then the SAN is read as ours.
	 */
	if (tc_verify_svid(tc, leaf, why, sizeof(why))) {
		TSTAT_INC(t, handshake_failures);
		tc_kill(tc, why);
		return;
	}
	if (tunnel_peer_identity(leaf, t->cfg->identity.trust_domain, tc->peer_id,
				 sizeof(tc->peer_id), why, sizeof(why))) {
		TSTAT_INC(t, handshake_failures);
		tc_kill(tc, why);
		return;
	}
	if (tc->server && tc_set_caller(tc, t->cfg->identity.trust_domain)) {
		TSTAT_INC(t, handshake_failures);
		tc_kill(tc, "the peer's identity is too long for policy");
		return;
	}
	if (!tc->server && strcmp(tc->peer_id, tc->dst)) {
		TSTAT_INC(t, peer_identity_mismatch);
		snprintf(why, sizeof(why), "the server proved %s, the endpoint is %s", tc->peer_id,
			 tc->dst);
		tc_kill(tc, why);
		return;
	}
	if (tc->server)
		tc->peer = peer_row(t, tc->peer_id, tc->local_id);
	tc->ktls_tx = BIO_get_ktls_send(SSL_get_wbio(tc->ssl));
	tc->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(tc->ssl));
	if (tc->ktls_tx)
		TSTAT_INC(t, ktls_tx);
	if (tc->ktls_rx)
		TSTAT_INC(t, ktls_rx);
	if (nghttp2_option_new(&opt)) {
		tc_kill(tc, "out of memory");
		return;
	}
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_continuations(opt, 8);
	rv = tc->server ? nghttp2_session_server_new2(&tc->h2, h2_callbacks(), tc, opt)
			: nghttp2_session_client_new2(&tc->h2, h2_callbacks(), tc, opt);
	nghttp2_option_del(opt);
	if (rv) {
		tc->h2 = NULL;
		tc_kill(tc, nghttp2_strerror(rv));
		return;
	}
	nghttp2_submit_settings(tc->h2, NGHTTP2_FLAG_NONE, iv, 3);
	nghttp2_session_set_local_window_size(tc->h2, NGHTTP2_FLAG_NONE, 0, TUNNEL_CONN_WINDOW);
	tc->state = TC_READY;
	tc->idle_since_ns = now_ns();
	peer_expires = cert_not_after(leaf);
	if (!tc->server && peer_expires && (!tc->expires || peer_expires < tc->expires))
		tc->expires = peer_expires;
	/* the serials tell which certificate each side proved, across a renewal */
	pr_info("tunnel: %s %s %s as %s (TLS %s, %s; kTLS tx %s, rx %s; serial %s, peer's %s)",
		tc->server ? "accepted" : "connected", tc->server ? "from" : "to", tc->peer_id,
		tc->local_id, SSL_get_version(tc->ssl), SSL_get_cipher_name(tc->ssl),
		tc->ktls_tx ? "on" : "off", tc->ktls_rx ? "on" : "off",
		id_cert_serial(SSL_get_certificate(tc->ssl), ours, sizeof(ours)),
		id_cert_serial(leaf, theirs, sizeof(theirs)));
	while (tc->pending) {
		struct tstream *st = tc->pending;

		stream_unlink(&tc->pending, st);
		client_submit(tc, st);
	}
	tc_flush(tc);
}

static void tc_handshake(struct tconn *tc)
{
	char ebuf[512];
	int rv = SSL_do_handshake(tc->ssl);

	if (rv == 1) {
		tc_ready(tc);
		return;
	}
	switch (SSL_get_error(tc->ssl, rv)) {
	case SSL_ERROR_WANT_READ:
		tobj_watch(tc->l, &tc->o, EPOLLIN);
		return;
	case SSL_ERROR_WANT_WRITE:
		tobj_watch(tc->l, &tc->o, EPOLLIN | EPOLLOUT);
		return;
	default: {
		long vr = SSL_get_verify_result(tc->ssl);
		char why[700];

		TSTAT_INC(tc->t, handshake_failures);
		snprintf(why, sizeof(why), "TLS handshake failed: %s%s%s",
			 ssl_errors(ebuf, sizeof(ebuf)), vr != X509_V_OK ? "; certificate: " : "",
			 vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
		tc_kill(tc, why);
	}
	}
}

static void tc_event(struct tconn *tc, uint32_t events)
{
	if (tc->state == TC_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(tc->o.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && !(events & EPOLLOUT))
			err = ECONNRESET;
		if (err) {
			char why[128];

			snprintf(why, sizeof(why), "connect failed: %s", strerror(err));
			tc_kill(tc, why);
			return;
		}
		tc->state = TC_HANDSHAKE;
	}
	if (tc->state == TC_HANDSHAKE) {
		tc_handshake(tc);
		return;
	}
	if (tc->state != TC_READY)
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		tc_read(tc);
	tc->flush_due = true;
}

/* The socket BIO's reads, watched: a short one means the socket is empty (tc_read). */
static long rbio_watch(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
		       int ret, size_t *processed)
{
	struct tconn *tc = (struct tconn *)BIO_get_callback_arg(b);

	(void)argp;
	(void)argi;
	(void)argl;
	if (tc && oper == (BIO_CB_READ | BIO_CB_RETURN))
		tc->rbio_short = ret > 0 && processed && *processed < len;
	return ret;
}

static struct tconn *tc_new(struct tloop *l, int fd, bool server)
{
	struct tunnel *t = l->t;
	struct tconn *tc = calloc(1, sizeof(*tc));

	if (!tc)
		return NULL;
	tc->o.type = TOBJ_CONN;
	tc->o.fd = fd;
	tc->t = t;
	tc->l = l;
	tc->server = server;
	tc->ssl = SSL_new(server ? t->server_ctx : t->client_ctx);
	if (!tc->ssl || SSL_set_fd(tc->ssl, fd) != 1) {
		SSL_free(tc->ssl);
		free(tc);
		return NULL;
	}
	SSL_set_app_data(tc->ssl, tc);
	BIO_set_callback_arg(SSL_get_rbio(tc->ssl), (char *)tc);
	BIO_set_callback_ex(SSL_get_rbio(tc->ssl), rbio_watch);
	SSL_set_mode(tc->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	tc->next = l->conns;
	if (l->conns)
		l->conns->prev = tc;
	l->conns = tc;
	tc->deadline_ns = now_ns() + (uint64_t)t->cfg->mtls.handshake_timeout_ms * 1000000;
	TSTAT_INC(t, connections_open);
	return tc;
}

/* Give ssl the trust anchors the peer's chain must lead to. 0 or -ENOKEY. */
static int ssl_set_anchors(struct tunnel *t, SSL *ssl)
{
	X509_STORE *anchors = id_store_anchors(t->store);
	int ok;

	if (!anchors)
		return -ENOKEY;
	ok = SSL_set1_verify_cert_store(ssl, anchors);
	X509_STORE_free(anchors);
	return ok == 1 ? 0 : -ENOMEM;
}

/* A new outbound connection on l for route r (its streams come later). */
static struct tconn *client_connect(struct tloop *l, const struct tunnel_route *r)
{
	struct tunnel *t = l->t;
	struct sockaddr_storage ss;
	socklen_t len = addr_to_sockaddr(&r->node, r->node_port_be, &ss);
	char sni[CONFIG_MAX_IDENTITY + 16], to[ADDR_STR_MAX];
	struct id_cred *cred;
	struct tconn *tc;
	int fd, one = 1;

	cred = cred_of(t, r->src);
	if (!cred) {
		pr_warn("tunnel: no certificate for %s: cannot call %s", r->src, r->dst);
		return NULL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		id_cred_put(cred);
		return NULL;
	}
	/* Unmarked on purpose: the datapath never puts it in its SOCKHASH (kTLS). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		pr_info("tunnel: cannot connect to %s: %s",
			addr_format(&r->node, r->node_port_be, to, sizeof(to)), strerror(errno));
		close(fd);
		id_cred_put(cred);
		return NULL;
	}
	tc = tc_new(l, fd, false);
	if (!tc) {
		close(fd);
		id_cred_put(cred);
		return NULL;
	}
	tc->src = r->src;
	tc->dst = tunnel_ident(t, r->dst);
	tc->node = r->node;
	tc->node_port_be = r->node_port_be;
	snprintf(tc->local_id, sizeof(tc->local_id), "%s", r->src);
	tc->cred = cred; /* tc_kill puts it */
	tc->expires = cred->not_after;
	if (!tc->dst || ssl_use_cred(tc->ssl, cred) || ssl_set_anchors(t, tc->ssl) ||
	    tunnel_sni_format(tc->dst, sni, sizeof(sni)) ||
	    SSL_set_tlsext_host_name(tc->ssl, sni) != 1) {
		tc_kill(tc, "cannot set up TLS (certificate, anchors or SNI)");
		return NULL;
	}
	SSL_set_connect_state(tc->ssl);
	TSTAT_INC(t, connections_out);
	tc->state = TC_CONNECTING;
	tobj_watch(l, &tc->o, EPOLLOUT | EPOLLIN);
	return tc;
}

static void reap(struct tloop *l);
static void loop_tick_arm(struct tloop *l);

/* Proxy worker `worker`'s loop. */
static struct tloop *worker_loop(struct tunnel *t, int worker)
{
	return worker >= 0 && worker + 1 < t->n_loops ? &t->loops[worker + 1] : NULL;
}

int tunnel_open(struct tunnel *t, int worker, const struct tunnel_route *r)
{
	struct tloop *l = worker_loop(t, worker);
	struct id_cred *cur;
	struct tstream *st;
	struct tconn *tc;
	time_t now = time(NULL);
	int sv[2];

	if (!l)
		return -EINVAL;
	if (!r->src || !r->dst) {
		TSTAT_INC(t, opens_refused);
		return -ENOKEY;
	}
	cur = cred_of(t, r->src);
	if (!cur) {
		TSTAT_INC(t, opens_refused);
		return -ENOKEY;
	}
	for (tc = l->conns; tc; tc = tc->next)
		if (!tc->server && tc->state != TC_DEAD && tc->src == r->src && tc->dst &&
		    !strcmp(tc->dst, r->dst) && addr_equal(&tc->node, &r->node) &&
		    tc->node_port_be == r->node_port_be && tc->n_streams < TUNNEL_MAX_STREAMS &&
		    tc_current(tc, cur, now))
			break;
	id_cred_put(cur);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (!tc)
		tc = client_connect(l, r);
	st = tc ? stream_new(tc) : NULL;
	if (!st) {
		TSTAT_INC(t, opens_refused);
		close(sv[0]);
		close(sv[1]);
		return -ECONNREFUSED;
	}
	st->o.fd = sv[1];
	st->target = r->target;
	st->target_port_be = r->target_port_be;
	addr_format(&r->target, r->target_port_be, st->authority, sizeof(st->authority));
	if (tc->state == TC_READY) {
		client_submit(tc, st);
		tc_flush(tc);
	} else {
		stream_link(&tc->pending, st);
	}
	/* No tunnel callback is on the stack here: what died can go now. */
	reap(l);
	loop_tick_arm(l); /* a new connection's handshake has a deadline */
	return sv[0];
}

/* ---- the listener ----------------------------------------------------------- */

/* The server's certificate, chosen by the identity the client's SNI names. */
static int sni_cb(SSL *ssl, int *al, void *arg)
{
	struct tconn *tc = SSL_get_app_data(ssl);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	struct id_cred *cred;
	char id[CONFIG_MAX_IDENTITY];

	(void)arg;
	*al = SSL_AD_UNRECOGNIZED_NAME;
	if (!tc || !name || tunnel_sni_parse(name, id, sizeof(id)))
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	cred = cred_of(tc->t, id);
	if (!cred)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	if (ssl_use_cred(ssl, cred)) {
		id_cred_put(cred);
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	id_cred_put(cred);
	snprintf(tc->local_id, sizeof(tc->local_id), "%s", id);
	return SSL_TLSEXT_ERR_OK;
}

static void listen_accept(struct tloop *lp, struct tobj *l)
{
	struct tunnel *t = lp->t;
	int one = 1;

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct shoal_addr from;
		uint16_t port;
		uint32_t same = 0;
		char text[ADDR_STR_MAX];
		struct tconn *tc;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		addr_from_sockaddr((struct sockaddr *)&ss, &from, &port);
		for (tc = lp->conns; tc; tc = tc->next)
			if (tc->server && tc->state == TC_HANDSHAKE &&
			    addr_equal(&tc->peer_addr, &from))
				same++;
		if (t->n_handshakes >= t->cfg->mtls.max_handshakes ||
		    same >= t->cfg->mtls.max_handshakes_per_source) {
			TSTAT_INC(t, handshakes_refused);
			pr_debug("tunnel: refusing a connection from %s: %u handshakes in progress "
				 "(%u from it)",
				 addr_format(&from, port, text, sizeof(text)), t->n_handshakes,
				 same);
			close(fd);
			continue;
		}
		/*
		 * As the outbound side (client_connect): without it, Nagle may
		 * hold one stream's answer back while another's bytes are not
		 * yet acknowledged, one connection carrying many streams.
		 */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tc = tc_new(lp, fd, true);
		if (!tc) {
			close(fd);
			continue;
		}
		tc->peer_addr = from;
		addr_format(&from, port, tc->peer_id, sizeof(tc->peer_id)); /* until verified */
		if (ssl_set_anchors(t, tc->ssl)) {
			tc_kill(tc, "no trust anchors");
			continue;
		}
		SSL_set_accept_state(tc->ssl);
		TSTAT_INC(t, connections_in);
		t->n_handshakes++;
		tc->in_handshake = true;
		tc->state = TC_HANDSHAKE;
		tobj_watch(lp, &tc->o, EPOLLIN);
	}
}

/* ---- the thread ------------------------------------------------------------- */

/*
 * A new policy applies to the calls already open too (docs/policy.md,
 * "Changes"): when the policy's serial moves, every accepted stream is
 * decided again, and a denied one is reset (its local socket closed, the
 * source's call with it), within a tick of the change reaching the proxy.
 */
static void recheck_policy(struct tunnel *t)
{
	struct proxy_snap *snap;
	const struct config *cfg;
	uint64_t serial;

	pthread_mutex_lock(&t->proxy_lock);
	snap = t->proxy ? proxy_snap_newest(t->proxy) : NULL;
	cfg = snap ? proxy_snap_config(snap) : NULL;
	serial = cfg && cfg->policy ? policy_set_serial(cfg->policy) : 0;
	if (!cfg || serial == t->policy_serial) {
		proxy_snap_put(snap);
		pthread_mutex_unlock(&t->proxy_lock);
		return;
	}
	t->policy_serial = serial;
	for (struct tconn *tc = t->loops[0].conns; tc; tc = tc->next) {
		struct tstream *st, *next;

		if (!tc->server || tc->state != TC_READY)
			continue;
		for (st = tc->streams; st; st = next) {
			const char *reason;

			next = st->next;
			if (st->dead || st->o.fd < 0 ||
			    stream_authorized(tc, cfg, &st->target, st->target_port_be, &reason))
				continue;
			log_denial(tc, st, reason, "closed");
			stream_reset(st, NGHTTP2_CANCEL);
		}
		tc_flush(tc);
	}
	proxy_snap_put(snap);
	pthread_mutex_unlock(&t->proxy_lock);
}

static void sweep(struct tloop *l, uint64_t now)
{
	struct tunnel *t = l->t;
	time_t wall = time(NULL);
	struct tconn *tc, *next;

	if (!l->worker)
		recheck_policy(t);

	for (tc = l->conns; tc; tc = next) {
		next = tc->next;
		if (!tc->server && tc->state == TC_READY && !tc->retired) {
			/*
			 * Retired on a renewal or near its expiry now, not only at
			 * the next call: pooled upstreams on it hear of it
			 * (tunnel_retirements) though no call opens a stream.
			 */
			struct id_cred *cur = cred_of(t, tc->src);

			tc_current(tc, cur ? cur : tc->cred, wall);
			id_cred_put(cur);
		}
		if ((tc->state == TC_HANDSHAKE || tc->state == TC_CONNECTING) &&
		    now >= tc->deadline_ns) {
			TSTAT_INC(t, handshake_timeouts);
			tc_kill(tc, "handshake timed out");
		} else if (!tc->server && tc->state == TC_READY && !tc->n_streams &&
			   (tc->retired || now - tc->idle_since_ns >= TUNNEL_IDLE_NS)) {
			if (tc->retired)
				pr_info("tunnel: retired connection to %s as %s closed: its last "
					"stream ended",
					tc->dst ? tc->dst : "(unknown)", tc->src);
			nghttp2_session_terminate_session(tc->h2, NGHTTP2_NO_ERROR);
			tc_flush(tc); /* GOAWAY; it closes tc once nothing is left to send */
			tc_kill(tc, NULL);
		}
	}
}

static void reap(struct tloop *l)
{
	while (l->reap_streams) {
		struct tstream *st = l->reap_streams;

		l->reap_streams = st->reap_next;
		free(st);
	}
	while (l->reap_conns) {
		struct tconn *tc = l->reap_conns;

		l->reap_conns = tc->reap_next;
		free(tc);
	}
}

static void eventfd_clear(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("tunnel: eventfd read: %s", strerror(errno));
}

/*
 * A worker's loop ticks (its timerfd) only while it has a connection to
 * time out or retire: a worker that never calls another node never wakes
 * for the tunnel.
 */
static void loop_tick_arm(struct tloop *l)
{
	bool want = l->conns != NULL;
	struct itimerspec its = {0};

	if (!l->worker || l->tick.fd < 0 || want == l->tick_armed)
		return;
	if (want) {
		its.it_value.tv_nsec = TUNNEL_TICK_MS * 1000000L;
		its.it_interval = its.it_value;
	}
	if (timerfd_settime(l->tick.fd, 0, &its, NULL) == 0)
		l->tick_armed = want;
}

/*
 * One turn of l: its ready events (waiting up to timeout_ms), the reads
 * left over from the last turn, the sweep when a tick is due. True when a
 * connection has records left to read (another turn is due at once).
 */
static bool loop_turn(struct tloop *l, int timeout_ms)
{
	struct epoll_event evs[TUNNEL_EVENTS];
	bool again = false;
	uint64_t now;
	int n = epoll_wait(l->ep, evs, TUNNEL_EVENTS, timeout_ms);

	if (n < 0 && errno != EINTR) {
		pr_warn("tunnel: epoll_wait: %s", strerror(errno));
		return false;
	}
	for (int i = 0; i < n; i++) {
		struct tobj *o = evs[i].data.ptr;

		switch (o->type) {
		case TOBJ_LISTEN:
			listen_accept(l, o);
			break;
		case TOBJ_KICK:
			eventfd_clear(o->fd);
			break;
		case TOBJ_TICK: {
			uint64_t expirations;

			if (read(o->fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
				pr_warn("tunnel: timerfd read: %s", strerror(errno));
			break;
		}
		case TOBJ_CONN: {
			struct tconn *tc = (struct tconn *)o;

			if (tc->state != TC_DEAD)
				tc_event(tc, evs[i].events);
			break;
		}
		case TOBJ_STREAM: {
			struct tstream *st = (struct tstream *)o;

			if (!st->dead && st->tc->state == TC_READY)
				stream_event(st, evs[i].events);
			break;
		}
		}
	}
	/*
	 * The turn's frames go out together: with many streams ready at once
	 * (one event each), a flush per event was an SSL_write, a TLS record
	 * and a send() per stream; gathered, it is one of each for up to
	 * TUNNEL_OUT_BYTES.
	 */
	for (struct tconn *tc = l->conns, *next; tc; tc = next) {
		next = tc->next;
		if (tc->read_again && tc->state == TC_READY) {
			tc_read(tc);
			tc->flush_due = true;
		}
		if (tc->flush_due) {
			tc->flush_due = false;
			tc_flush(tc);
		}
	}
	now = now_ns();
	if (now - l->last_sweep_ns >= TUNNEL_TICK_MS * 1000000ull) {
		l->last_sweep_ns = now;
		sweep(l, now);
	}
	reap(l);
	for (struct tconn *tc = l->conns; tc; tc = tc->next)
		again |= tc->read_again;
	loop_tick_arm(l);
	return again;
}

static void *tunnel_main(void *arg)
{
	struct tunnel *t = arg;
	bool again = false;

	while (!atomic_load(&t->stop))
		again = loop_turn(&t->loops[0], again ? 0 : TUNNEL_TICK_MS);
	return NULL;
}

int tunnel_loop_fd(struct tunnel *t, int worker)
{
	struct tloop *l = t ? worker_loop(t, worker) : NULL;

	return l ? l->ep : -1;
}

void tunnel_loop_run(struct tunnel *t, int worker)
{
	struct tloop *l = worker_loop(t, worker);
	uint64_t one = 1;

	/*
	 * Records left to read: the kick makes the loop's epoll, and so the
	 * worker's, ready again, and the worker comes back after its other
	 * events, as the thread's loop does with a zero timeout.
	 */
	if (l && loop_turn(l, 0) && write(l->kick.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("tunnel: eventfd write: %s", strerror(errno));
}

/* ---- start and stop --------------------------------------------------------- */

/*
 * True when the kernel has the TLS upper-layer protocol (CONFIG_TLS), so
 * that kTLS can be had. A socket that is not connected tells without any
 * traffic: the kernel answers ENOENT when it has no "tls" ULP, and
 * ENOTCONN when it has one (its init refuses an unconnected socket).
 */
static bool kernel_has_tls_ulp(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool has;

	if (fd < 0)
		return true; /* cannot tell: let OpenSSL try */
	has = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) == 0 || errno != ENOENT;
	close(fd);
	return has;
}

/*
 * A TLS 1.3 context for one side: AES-GCM only (what the kernel offloads),
 * kTLS asked for unless mtls.ktls is false (the bench's user-space row).
 * Without kTLS, records are read ahead: OpenSSL then reads what the socket
 * holds in one read(), where it otherwise reads each record's 5-byte
 * header and then its body, two syscalls a record. Read-ahead would stop
 * OpenSSL from handing the receive side to the kernel, so it is off
 * whenever kTLS may be had.
 */
static SSL_CTX *ctx_new(bool server, bool ktls)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, (ktls ? SSL_OP_ENABLE_KTLS : 0) | SSL_OP_NO_TICKET);
	if (!ktls)
		SSL_CTX_set_read_ahead(ctx, 1);
	/* No resumption: every connection proves both certificates again. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, ID_MAX_CHAIN + 1);
	if (server)
		SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
	return ctx;
}

static int listen_on(struct tunnel *t, const struct shoal_addr *a, uint16_t port, char *err,
		     size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_to_sockaddr(a, htons(port), &ss);
	char text[ADDR_STR_MAX];
	int fd, one = 1;

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/*
	 * A new shoald taking over (docs/upgrade.md) binds the port while the
	 * old one still drains: both listen until the old one exits. The
	 * listener is not handed over, so new TLS connections may land on
	 * either; the old one's close with it (docs/mtls.md, "Limits").
	 */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
		goto fail;
	t->listen[t->n_listen].type = TOBJ_LISTEN;
	t->listen[t->n_listen].fd = fd;
	tobj_watch(&t->loops[0], &t->listen[t->n_listen], EPOLLIN);
	t->n_listen++;
	return 0;

fail:
	snprintf(err, errlen, "mtls: cannot listen on %s: %s",
		 addr_format(a, htons(port), text, sizeof(text)), strerror(errno));
	if (fd >= 0)
		close(fd);
	return -errno;
}

static int loop_init(struct tunnel *t, struct tloop *l, bool worker)
{
	l->t = t;
	l->worker = worker;
	l->last_sweep_ns = now_ns();
	l->kick.type = TOBJ_KICK;
	l->tick.type = TOBJ_TICK;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->kick.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->tick.fd = worker ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC) : -1;
	if (l->ep < 0 || l->kick.fd < 0 || (worker && l->tick.fd < 0))
		return -errno;
	tobj_watch(l, &l->kick, EPOLLIN);
	if (worker)
		tobj_watch(l, &l->tick, EPOLLIN);
	return 0;
}

/* Close l's connections (their streams with them), then l itself. */
static void loop_close(struct tloop *l)
{
	if (!l->t)
		return; /* never set up */
	while (l->conns)
		tc_kill(l->conns, NULL);
	reap(l);
	tobj_close(l, &l->kick);
	tobj_close(l, &l->tick);
	if (l->ep >= 0)
		close(l->ep);
	l->ep = -1;
}

int tunnel_start(const struct config *cfg, struct id_store *store, struct proxy *proxy,
		 int workers, struct tunnel **out, char *err, size_t errlen)
{
	struct tunnel *t = calloc(1, sizeof(*t));
	int ret = -ENOMEM;
	bool ktls;

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "mtls: out of memory");
		return -ENOMEM;
	}
	t->cfg = cfg;
	t->store = store;
	t->proxy = proxy;
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->proxy_lock, NULL);
	t->idents = calloc(TUNNEL_MAX_IDENTS, sizeof(*t->idents));
	t->authz = policy_stats_new();
	t->loops = calloc((size_t)(workers > 0 ? workers : 0) + 1, sizeof(*t->loops));
	ktls = cfg->mtls.ktls && kernel_has_tls_ulp();
	if (cfg->mtls.ktls && !ktls)
		pr_info("mtls: kTLS asked for, but the kernel has no TLS ULP (CONFIG_TLS); "
			"TLS stays in user space");
	t->client_ctx = ctx_new(false, ktls);
	t->server_ctx = ctx_new(true, ktls);
	if (!t->idents || !t->authz || !t->loops || !t->client_ctx || !t->server_ctx ||
	    !h2_callbacks()) {
		snprintf(err, errlen, "mtls: cannot set up TLS or HTTP/2 (out of memory)");
		goto fail;
	}
	for (int i = 0; i <= workers; i++) {
		t->loops[i].ep = t->loops[i].kick.fd = t->loops[i].tick.fd = -1;
		t->n_loops = i + 1;
		ret = loop_init(t, &t->loops[i], i > 0);
		if (ret) {
			snprintf(err, errlen, "mtls: epoll, eventfd or timerfd: %s", strerror(-ret));
			goto fail;
		}
	}
	if (!addr_is_zero(&cfg->proxy_v4) &&
	    (ret = listen_on(t, &cfg->proxy_v4, cfg->mtls.port, err, errlen)))
		goto fail;
	if (!addr_is_zero(&cfg->proxy_v6) &&
	    (ret = listen_on(t, &cfg->proxy_v6, cfg->mtls.port, err, errlen)))
		goto fail;
	ret = -pthread_create(&t->thread, NULL, tunnel_main, t);
	if (ret) {
		snprintf(err, errlen, "mtls: cannot start the tunnel thread: %s", strerror(-ret));
		goto fail;
	}
	pthread_setname_np(t->thread, "shoal-tunnel");
	t->started = true;
	*out = t;
	return 0;

fail:
	tunnel_stop(t);
	return ret;
}

/*
 * After proxy_stop: the workers that ran loops 1.. are gone, so their
 * connections are closed here, from this thread.
 */
void tunnel_stop(struct tunnel *t)
{
	uint64_t one = 1;

	if (!t)
		return;
	if (t->started) {
		atomic_store(&t->stop, true);
		if (write(t->loops[0].kick.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			pr_warn("tunnel: eventfd write: %s", strerror(errno));
		pthread_join(t->thread, NULL);
	}
	for (int i = 0; i < t->n_listen; i++)
		tobj_close(&t->loops[0], &t->listen[i]);
	for (int i = 0; i < t->n_loops; i++)
		loop_close(&t->loops[i]);
	free(t->loops);
	for (int i = 0; t->idents && i < t->n_idents; i++)
		free((char *)t->idents[i]);
	free(t->idents);
	policy_stats_free(t->authz);
	SSL_CTX_free(t->client_ctx);
	SSL_CTX_free(t->server_ctx);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->proxy_lock);
	free(t);
}

void tunnel_get_stats(struct tunnel *t, struct tunnel_stats *out)
{
	unsigned long long *v = (unsigned long long *)out;

	memset(out, 0, sizeof(*out));
	if (!t)
		return;
	for (size_t i = 0; i < sizeof(*out) / sizeof(*v); i++)
		v[i] = atomic_load_explicit(&t->st[i], memory_order_relaxed);
}

struct policy_stats *tunnel_policy_stats(struct tunnel *t)
{
	return t ? t->authz : NULL;
}

void tunnel_release_proxy(struct tunnel *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->proxy_lock);
	t->proxy = NULL;
	pthread_mutex_unlock(&t->proxy_lock);
}

size_t tunnel_peer_rows(struct tunnel *t, struct tunnel_peer_row *rows, size_t cap)
{
	return t ? tunnel_peers_copy(&t->peers, t->cfg->identity.trust_domain, rows, cap) : 0;
}

uint64_t tunnel_retirements(struct tunnel *t, int worker)
{
	struct tloop *l = t ? worker_loop(t, worker) : NULL;

	return l ? l->retirements : 0;
}
