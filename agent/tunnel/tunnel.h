/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The encrypted hop between nodes (docs/mtls.md): mutual TLS 1.3 between
 * the shoald of two nodes on mtls.port (15008), each call an HTTP/2
 * CONNECT stream, the TLS connections pooled per (source identity,
 * destination identity, destination node).
 *
 * The proxy hands a call to the tunnel with tunnel_open: it gets back one
 * end of a socketpair, which it uses as the upstream socket of that call
 * as it would a TCP socket to the endpoint (so every kind, and its
 * per-request balancing, retries and metrics, stays as it is); the
 * tunnel carries the other end's bytes over a CONNECT stream to the
 * destination node. There, the tunnel's listener verifies the peer,
 * checks that the CONNECT's target is a local endpoint of the identity
 * it presented, connects to it and copies the bytes both ways.
 *
 * Outbound connections run in the proxy workers: each worker has a loop
 * of its own (an epoll, whose fd tunnel_loop_fd gives, for the worker's
 * epoll to hold; tunnel_loop_run when it is ready), with the TLS
 * connections of the calls it opened, so a call's bytes reach TLS on the
 * worker's thread. Inbound connections (the listener) run on the tunnel's
 * own thread. The stats may be read from any thread.
 */
#ifndef SHOAL_TUNNEL_TUNNEL_H
#define SHOAL_TUNNEL_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "shoal/abi.h"

struct id_store;
struct proxy;
struct tunnel;

/*
 * Identities a node interns (tunnel_ident): the service accounts of its
 * own pods (at most ENROLL_MAX_PODS) and the ones endpoints name. Never
 * freed while shoald runs, so a pointer to one is a stable key; past the
 * cap an identity cannot be interned and its calls are refused.
 */
#define TUNNEL_MAX_IDENTS 4096

/* The counters and gauges of the tunnel (docs/metrics.md, shoal_tunnel_*). */
#define TUNNEL_STATS(X)                                                                            \
	X(connections_out, counter, "TLS connections opened to other nodes.")                      \
	X(connections_in, counter, "TLS connections accepted on mtls.port.")                       \
	X(connections_open, gauge, "TLS connections open, both directions.")                       \
	X(connections_retired, counter,                                                            \
	  "Pooled TLS connections given no new call: their certificate was renewed or expires "    \
	  "soon; their streams finish on them.")                                                   \
	X(ktls_tx, gauge, "Open TLS connections whose transmit side the kernel encrypts (kTLS).")  \
	X(ktls_rx, gauge, "Open TLS connections whose receive side the kernel decrypts (kTLS).")   \
	X(handshake_failures, counter,                                                             \
	  "TLS handshakes that failed: no or a bad certificate, plaintext, wrong identity.")       \
	X(handshake_timeouts, counter,                                                             \
	  "TLS handshakes not done within mtls.handshake_timeout_ms.")                             \
	X(handshakes_refused, counter,                                                             \
	  "Connections on mtls.port refused at max_handshakes or max_handshakes_per_source.")      \
	X(peer_identity_mismatch, counter,                                                         \
	  "Connections closed because the server's identity was not the endpoint's.")              \
	X(streams_out, counter, "CONNECT streams opened to other nodes.")                          \
	X(streams_in, counter, "CONNECT streams accepted from other nodes.")                       \
	X(streams_refused, counter,                                                                \
	  "CONNECT streams refused: not a local endpoint of the presented identity, or bad.")      \
	X(streams_failed, counter, "CONNECT streams whose local connect or remote answer failed.") \
	X(streams_denied, counter,                                                                 \
	  "CONNECT streams the destination's authorization policy refused, or closed on a change.") \
	X(opens_refused, counter, "Calls the tunnel could not take (no certificate, no memory).")

struct tunnel_stats {
#define TUNNEL_STAT_FIELD(field, kind, help) unsigned long long field;
	TUNNEL_STATS(TUNNEL_STAT_FIELD)
#undef TUNNEL_STAT_FIELD
};

/*
 * The destination's callers (docs/mtls.md, "Metrics"): per pair of the
 * identity a peer proved and the local identity it reached, its CONNECT
 * streams and bytes, for the shoal_tunnel_inbound_* families. Bounded:
 * the first TUNNEL_PEERS_MAX pairs a node sees get rows of their own,
 * and every later pair counts in one row named TUNNEL_PEERS_OTHER (a
 * proven identity is one the issuer signed for a service account with
 * a pod, so pairs are few, but a metric family must not grow with
 * input). Rows are never dropped: a counter keeps its series.
 */
#define TUNNEL_PEERS_MAX 256
#define TUNNEL_PEERS_OTHER "other"
/* Room for "spiffe://<td>/ns/<ns>/sa/<sa>" (config limits). */
#define TUNNEL_SPIFFE_MAX (CONFIG_MAX_TRUST_DOMAIN + CONFIG_MAX_IDENTITY + 16)

#define TUNNEL_PEER_STATS(X)                                                                       \
	X(streams, "inbound_streams_total",                                                        \
	  "CONNECT streams accepted from another node, by the identity the caller proved and "     \
	  "the local identity it reached.")                                                        \
	X(refused, "inbound_refused_total",                                                        \
	  "CONNECT streams refused at their start (not a local endpoint, or denied by policy), "   \
	  "by caller and local identity.")            \
	X(received_bytes, "inbound_received_bytes_total",                                          \
	  "Bytes the caller sent through its streams to the local pod.")                           \
	X(sent_bytes, "inbound_sent_bytes_total",                                                  \
	  "Bytes the local pod sent back through the streams to the caller.")

struct tunnel_peer_row {
	char source[TUNNEL_SPIFFE_MAX];	     /* SPIFFE ID, or TUNNEL_PEERS_OTHER */
	char destination[TUNNEL_SPIFFE_MAX]; /* SPIFFE ID, or TUNNEL_PEERS_OTHER */
#define TUNNEL_PEER_FIELD(field, name, help) unsigned long long field;
	TUNNEL_PEER_STATS(TUNNEL_PEER_FIELD)
#undef TUNNEL_PEER_FIELD
};

/*
 * A copy of the callers' rows into rows (room for cap; TUNNEL_PEERS_MAX
 * + 1 always fits: the "other" row comes last, and only once it has
 * counted). Returns the number of rows; 0 for a NULL t. Any thread.
 */
size_t tunnel_peer_rows(struct tunnel *t, struct tunnel_peer_row *rows, size_t cap);

/* One call through the tunnel. */
struct tunnel_route {
	const char *src;	  /* interned (tunnel_ident): the calling workload's "<ns>/<sa>" */
	const char *dst;	  /* the endpoint's "<ns>/<sa>", which the server must prove */
	struct shoal_addr node;	  /* the destination node's address */
	uint16_t node_port_be;	  /* its mtls.port */
	struct shoal_addr target; /* the endpoint */
	uint16_t target_port_be;
};

/*
 * Start the tunnel for cfg's mtls: section (mode not off): the listener
 * on cfg's node addresses, port mtls.port (sockets unmarked, so that the
 * datapath never puts them in its SOCKHASH: docs/mtls.md, "kTLS and the
 * sockmap"), and the thread. store holds the node's certificates and the
 * trust anchors; proxy gives the newest config (the local endpoints). Both
 * must outlive the tunnel; workers is the proxy's worker count (one
 * outbound loop each). Returns 0 and *out, or -errno with err set.
 */
int tunnel_start(const struct config *cfg, struct id_store *store, struct proxy *proxy,
		 int workers, struct tunnel **out, char *err, size_t errlen);
/* Stop the thread and close every connection; NULL is fine. */
void tunnel_stop(struct tunnel *t);
/*
 * Let the proxy go before proxy_stop (its workers may still hand calls
 * over): from then on, the tunnel refuses new streams, as it has no
 * config to check them against. NULL is fine.
 */
void tunnel_release_proxy(struct tunnel *t);

/*
 * The interned copy of identity id ("<ns>/<sa>"): equal identities give
 * the same pointer, valid until tunnel_stop. NULL when id is not valid
 * (config_identity_valid) or TUNNEL_MAX_IDENTS are interned. Any thread.
 */
const char *tunnel_ident(struct tunnel *t, const char *id);

/*
 * A new call along r: returns the caller's end of a connected,
 * non-blocking, close-on-exec AF_UNIX stream socket, whose bytes go to
 * r->target through the tunnel, or -errno (-ENOKEY: no certificate for
 * r->src; -ENOMEM, -EMFILE...). A failure of the stream later (the
 * server refuses it, the endpoint does not answer) resets the socket
 * before any byte of an answer (-EINVAL: no such worker). Only on proxy
 * worker `worker`'s thread: the call joins that worker's loop.
 */
int tunnel_open(struct tunnel *t, int worker, const struct tunnel_route *r);

/* The fd (an epoll) worker `worker` watches for EPOLLIN, or -1. */
int tunnel_loop_fd(struct tunnel *t, int worker);

/* Run worker `worker`'s loop once: its ready events, due timeouts. Its thread only. */
void tunnel_loop_run(struct tunnel *t, int worker);

/*
 * How many outbound TLS connections of worker `worker`'s loop have been
 * retired (a renewed certificate, or one near its notAfter: docs/mtls.md,
 * "A renewed certificate retires the pooled connection"). A pooled
 * upstream the proxy opened when the count was lower may be a stream on
 * a retired connection, so the proxy stops reusing it: keep-alive load
 * then moves to connections that prove the newest certificate. The
 * loop's sweep checks for renewals every tick, not only at a new call.
 * Its thread only; 0 for a NULL t or no such worker.
 */
uint64_t tunnel_retirements(struct tunnel *t, int worker);

/* A snapshot of the counters; any thread. */
void tunnel_get_stats(struct tunnel *t, struct tunnel_stats *out);

/*
 * The destination's policy decisions of tunneled calls (written by the
 * tunnel's thread; read like a proxy worker's: recording/policy_stats.h),
 * or NULL for a NULL t.
 */
struct policy_stats;
struct policy_stats *tunnel_policy_stats(struct tunnel *t);

/*
 * The SNI name a client sends to ask for identity id ("<ns>/<sa>"):
 * "<sa>.<ns>.id.shoal" (docs/mtls.md, "Which certificate the server
 * presents"). Returns 0, or -ENAMETOOLONG.
 */
int tunnel_sni_format(const char *id, char *buf, size_t len);
/* The identity "<ns>/<sa>" an SNI name asks for; 0 or -EINVAL. */
int tunnel_sni_parse(const char *sni, char *id, size_t len);

/*
 * The identity of a verified peer leaf: exactly one URI SAN, which is
 * spiffe://<td>/ns/<ns>/sa/<sa>, into id as "<ns>/<sa>". Returns 0, or
 * -EACCES with the reason in why.
 */
struct x509_st;
int tunnel_peer_identity(struct x509_st *leaf, const char *td, char *id, size_t len, char *why,
			 size_t why_len);

#endif
