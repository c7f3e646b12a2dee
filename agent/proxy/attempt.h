/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's one attempt loop, for opaque TCP and HTTP alike
 * (docs/proxy.md, "One connection", steps 4 and 5): pick an endpoint
 * (pick_endpoint, avoiding the ones tried), open a connection to it, tell
 * the balancer and the breaker when the connect fails, and go on to the
 * next endpoint, until one connects, the kind allows no further try, or
 * proxy.connect_deadline_ms has passed. With no candidate endpoint it
 * waits, polling, up to the service's fail_fast_ms.
 *
 * A connect that fails for want of the proxy's own resources
 * (sock_err_local: fds, memory, epoll watches, local ports) is no
 * endpoint's failure: the try is cancelled, nothing is tried elsewhere,
 * nothing is spent from the retry budget, and the client is refused.
 *
 * The state is the connection's struct attempt (conn.h). What differs by
 * kind is struct attempt_kind: HTTP takes pooled connections, decides
 * each further try by its retry policy and answers 503; opaque TCP spends
 * the retry budget per failover and resets the client. Everything runs
 * on the connection's worker thread.
 */
#ifndef SHOAL_PROXY_ATTEMPT_H
#define SHOAL_PROXY_ATTEMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/conn.h"

struct config;

/*
 * A connection finding no candidate endpoint (all ejected, probes out)
 * looks again this often until its fail-fast time: a probe's outcome or
 * a backoff ending frees one within milliseconds, and 10 ms costs
 * nothing next to the 1 s wait.
 */
#define ATTEMPT_NO_CANDIDATE_POLL_NS (10 * 1000000ull)

/* Why the tries ended with no endpoint connected. */
enum attempt_end {
	ATTEMPT_EXHAUSTED,    /* connects failed and no further try is allowed, or the deadline */
	ATTEMPT_NO_CANDIDATE, /* no endpoint was a candidate before the fail-fast time */
};

/*
 * What one kind of connection does at each step of the loop. Members
 * marked optional may be NULL.
 */
struct attempt_kind {
	/* The service whose endpoints c's tries go to, and their port (network order). */
	const struct config_service *(*target)(const struct conn *c, uint16_t *port_be);
	/*
	 * Optional. Before each pick, and after a failed connect: has c run
	 * out of a time of its own (HTTP: the request's deadline)? When true,
	 * c was answered (or closed) already.
	 */
	bool (*expired)(struct worker *w, struct conn *c, uint64_t now);
	/*
	 * Optional. A try after the first has its endpoint picked: may it
	 * start? When false, it cancelled c->at.bt and set c->at.last_err;
	 * the tries end (ATTEMPT_EXHAUSTED).
	 */
	bool (*admit)(struct worker *w, struct conn *c, uint64_t now);
	/*
	 * Open the try's connection to endpoint idx of the target, its
	 * connect cut short at deadline at the latest. Returns 1 (connected
	 * at once), 0 (in progress: watched, its timer armed) or -errno
	 * (nothing left open). On 0 or 1, c may have been closed (a timer
	 * that could not be armed): the loop does nothing more with it.
	 */
	int (*open)(struct worker *w, struct conn *c, uint32_t idx, uint64_t now,
		    uint64_t deadline);
	/* Optional. The connect of c->at.bt completed when open returned 1. */
	void (*connected)(struct worker *w, struct conn *c);
	/* A connect failed (recorded): may another try start? */
	bool (*fail_over)(struct worker *w, struct conn *c);
	/*
	 * Wake c at until to pick again (no candidate now). True: c waits, or
	 * was closed for want of a timer; false: c cannot wait, the tries end.
	 */
	bool (*wait)(struct worker *w, struct conn *c, uint64_t until);
	/* No further try (why): answer or reset the client; c is released. */
	void (*give_up)(struct worker *w, struct conn *c, enum attempt_end why);
	/*
	 * No connection for want of the proxy's own resources (err,
	 * sock_err_local), the try cancelled: refuse the client (and say so
	 * in a rate-limited warning); c is released.
	 */
	void (*refuse)(struct worker *w, struct conn *c, int err);
};

/*
 * The tries of one request start at now, to the service of sv (NULL: no
 * balancer state, uniform picks): nothing tried, proxy.connect_deadline_ms
 * of cfg and the service's fail_fast_ms counted from now.
 */
void attempt_begin(struct attempt *at, const struct es_svc_view *sv, const struct config *cfg,
		   uint64_t now);

/*
 * Start tries of c until one is connected (k->connected) or in progress,
 * c waits for a candidate, or the tries end (k->give_up, k->refuse, or
 * k->expired answered c). c may be released on return.
 */
void attempt_next(struct worker *w, struct conn *c, const struct attempt_kind *k);

/*
 * The connect of the try in flight failed with err after it started (an
 * epoll error or SO_ERROR, its timeout), its socket already closed: the
 * endpoint's failure goes to the balancer and the breaker, unless err is
 * the proxy's own shortage (sock_err_local: the try is cancelled and
 * k->refuse refuses the client). Then k->expired and k->fail_over decide.
 * Returns true when another try may start: the caller runs attempt_next,
 * at once or on a deferred turn. False: c was answered or released.
 */
bool attempt_failed(struct worker *w, struct conn *c, const struct attempt_kind *k, int err);

/*
 * A new upstream socket for a try: TCP, non-blocking, close-on-exec,
 * marked (bpf.socket_mark, so that the datapath lets it through), no
 * Nagle, connecting to addr:port_be (through the proxy's test seams).
 * Returns its fd, with *connected set when the connect completed at
 * once; or -errno, with nothing left open.
 */
int attempt_connect(struct worker *w, const struct shoal_addr *addr, uint16_t port_be,
		    bool *connected);

/*
 * attempt_connect for endpoint ep of service svc for a call from c
 * (c->src_ident: the calling workload), by svc's mode
 * (config_mtls_mode_of; docs/mtls.md, "Modes"): an endpoint on another node (ep->node, not
 * mtls.node_name) that has an identity and a node address
 * (config_mtls_node: mtls.nodes, else what its pods report)
 * goes through the tunnel, and *tunneled is set; the fd is then a
 * connected AF_UNIX socket. In strict mode, a call to another node that
 * cannot go through the tunnel (no identity there, the caller's own
 * unknown) is refused with -EACCES; in permissive mode, and for a local
 * endpoint, the endpoint is dialled as attempt_connect does.
 */
int attempt_connect_ep(struct worker *w, const struct conn *c, const struct config_service *svc,
		       const struct config_endpoint *ep, uint16_t port_be, bool *connected,
		       bool *tunneled);
/*
 * Whether attempt_connect_ep sends c's call to endpoint ep of svc through
 * the tunnel (it decides by this): for a pool that keys its shared
 * connections by the caller's identity (an HTTP/2 session) before it dials.
 */
bool attempt_tunnels(struct worker *w, const struct conn *c, const struct config_service *svc,
		     const struct config_endpoint *ep);
/*
 * Which pooled upstreams (HTTP/1 connections, HTTP/2 sessions) c's call
 * to ep of svc may reuse: *tunnel_src is the identity its connection
 * would carry through the tunnel (c->src_ident), or NULL for a direct
 * one, and only a pooled upstream opened the same way fits. false: the
 * call may not go at all (strict mode refuses it), so it reuses nothing
 * and its connect says why. A direct connection opened for an unknown
 * caller (permissive) or under another mode must never carry a call
 * that would be encrypted.
 */
bool attempt_pool_key(struct worker *w, const struct conn *c, const struct config_service *svc,
		      const struct config_endpoint *ep, const char **tunnel_src);

/*
 * The calling workload's identity (interned by the tunnel) for a client
 * at addr: mtls.workloads, else the proxy's identity function (the pod
 * table); NULL when mtls is off or it is unknown.
 */
const char *attempt_src_ident(struct worker *w, const struct shoal_addr *addr);

/* The name of the field that tells the endpoint who called (docs/mtls.md). */
#define PEER_IDENTITY_FIELD "x-shoal-peer-identity"
/* Room for its value: "spiffe://<td>/ns/<ns>/sa/<sa>" (config limits), NUL included. */
#define PEER_IDENTITY_MAX (CONFIG_MAX_TRUST_DOMAIN + CONFIG_MAX_IDENTITY + 16)

/*
 * x-shoal-peer-identity's value for caller src_ident ("<ns>/<sa>",
 * attempt_src_ident's) of trust domain td, into buf (PEER_IDENTITY_MAX
 * bytes always suffice). Returns its length.
 */
size_t attempt_peer_identity(const char *td, const char *src_ident, char *buf, size_t len);

/*
 * The tunnel's retirement count for w (tunnel_retirements; 0 without a
 * tunnel): a pooled upstream through the tunnel records it when it
 * connects, and is not reused once it has grown.
 */
uint64_t attempt_tunnel_epoch(struct worker *w);

/*
 * The result of the non-blocking connect on fd, once epoll reported
 * EPOLLOUT, EPOLLERR or EPOLLHUP on it (events): 0 when connected, else
 * the positive errno of the failure (SO_ERROR; ECONNRESET for a hang-up
 * without one).
 */
int attempt_connect_result(struct worker *w, int fd, uint32_t events);

#endif
