/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The HTTP/2 kinds' shared types and calls (h2.h): h2.c (the client's
 * session, streams, the h2 kind), h2_upstream.c (pooled sessions to
 * endpoints, the h2-upstream kind) and h2_session.c (what both use).
 * Three objects:
 * - struct h2_down: the nghttp2 server session of one client connection;
 * - struct h2_up: one pooled nghttp2 client session to an endpoint, a
 *   connection of its own (kind h2_upstream_ops) on the worker's lists;
 * - struct h2_stream: one request, a stream of an h2_down and, once
 *   sent, one of an h2_up. Each links the other; whichever side closes
 *   first unlinks, so that no pointer outlives its object.
 *
 * Nothing is sent from inside an nghttp2 callback, and no session is
 * freed in one: a session another one's callback touched is flushed on
 * its connection's deferred turn (worker_conn_defer), and a session
 * found dead is closed once its own nghttp2 call has returned.
 */
#ifndef SHOAL_PROXY_H2_INT_H
#define SHOAL_PROXY_H2_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

#include "common/addr.h"
#include "proxy/h2.h"
#include "proxy/http_error.h"
#include "resilience/retry_policy.h"

struct config;
struct proxy_snap;
struct worker;
struct metrics_http_key;
struct h2_tele;

struct h2_up;
struct h2_down;

/*
 * Bytes of one stream waiting to go on, one way: at most its window. With
 * keep, bytes already framed stay (off moves, nothing is dropped): a
 * request body held for a retry's replay.
 */
struct h2_bytes {
	uint8_t *data;
	size_t off, len, cap;
	bool keep;
};

/*
 * Header fields kept by reference (nghttp2_rcbuf), in arrival order; a
 * field the proxy added (h2_fields_add_own) has no references, and its
 * bytes, which its owner keeps, are copied by nghttp2 when submitted.
 */
struct h2_fields {
	nghttp2_nv *nv;
	nghttp2_rcbuf **rc; /* 2 per field: name, value; NULL for an own field */
	uint32_t n, cap;
	size_t bytes; /* RFC 9113 6.5.2: name + value + 32 per field */
};

struct h2_stream {
	struct h2_down *d;
	int32_t id; /* on d's session */
	struct h2_up *up;
	int32_t up_id;			     /* on up's session, once submitted */
	struct h2_stream *prev, *next;	     /* d's streams */
	struct h2_stream *up_prev, *up_next; /* up's streams, while linked */
	struct h2_stream *up_hnext;	     /* the next in its bucket of up->by_id */

	struct h2_fields rq;	 /* the request head */
	struct h2_fields rs;	 /* the final response head */
	struct h2_fields tr;	 /* the response trailers */
	struct h2_fields rq_tr;	 /* the request trailers */
	struct h2h1 *h1;	 /* the HTTP/1.1 exchange instead of up (h2_to_h1.c) */
	uint8_t n_interim;	 /* 1xx heads forwarded to the client */
	struct h2_bytes to_up;	 /* request body bytes not yet framed upstream */
	struct h2_bytes to_down; /* response body bytes not yet framed to the client */
	bool rq_end;		 /* the client ended its half */
	bool rs_end;		 /* the endpoint ended its half */
	bool rs_submitted;	 /* a response head went to the client */
	bool up_deferred;	 /* the upstream data source waits for bytes */
	bool down_deferred;	 /* the downstream data source waits for bytes */
	bool answered;		 /* outcome recorded; nothing more goes upstream */
	bool grpc;		 /* content-type application/grpc */
	bool mem_refused;	 /* the buffer budget ran out in its head: REFUSED_STREAM */
	bool up_tunneled;	 /* the latest try went through the mTLS tunnel (its span) */
	int status;		 /* :status of the final response; 0: none yet */
	int grpc_status;	 /* GRPC_STATUS_NONE until read */
	const char *deny_reason; /* HTTP_ERR_POLICY_DENIED: the rule, for x-shoal-policy */

	/*
	 * The request's route, target and try (one pick per try), all of
	 * snap: the newest config when the stream was dispatched, held until
	 * the stream is freed, so that its connection may follow newer ones.
	 */
	struct proxy_snap *snap;
	const struct config_service *svc; /* the connection's service, in snap */
	const struct config_route *route;
	const struct config_service *target;
	const struct es_svc_view *sv;
	struct pick_ticket bt;
	uint16_t port_be; /* the target's port (network order) */
	uint64_t start_ns;
	uint64_t deadline_ns; /* 0: none */
	/* Response bytes have waited since, none framed (stall_timeout_ms); 0: none wait. */
	uint64_t stall_ns;
	/*
	 * The route's idle_timeout_ms (0: none) and when a byte of st last
	 * moved either way (h2_stream_active): a stream silent that long is
	 * timed out as its deadline would be (h2.c, h2_timeout).
	 */
	uint64_t idle_ns;
	uint64_t active_ns;
	struct h2_tele *tele; /* its span while traced (observe.h); freed with it */

	/* Tries (docs/proxy.md, "Retries"). */
	uint32_t avoid[PICK_MAX_AVOID]; /* endpoints tried */
	uint32_t n_avoid;
	uint32_t retries;	  /* tries after the first */
	uint64_t retry_at_ns;	  /* 0: none; else the next try starts then (h2.c) */
	uint64_t fail_fast_ns;	  /* no candidate endpoint: wait for one until then */
	uint64_t try_deadline_ns; /* the try's per-try timeout, until its head; 0: none */
	uint64_t rq_bytes;	  /* request body bytes received from the client */
	uint64_t rq_framed;	  /* of them, framed on the current try */
	uint64_t rq_consumed;	  /* of them, given back to the client's window */
	uint32_t replay_max;	  /* the retry policy's max_body_bytes */
	bool replay_lost;	  /* the body outgrew the replay limit: no retry */
	/*
	 * A gRPC response head (in rs, status set) held back from the client
	 * until then, so that trailers with a retried grpc-status right
	 * behind it can still be retried (proxy.http2.grpc_head_hold_ms);
	 * released by the first DATA, the trailers, or this time. 0: none held.
	 */
	uint64_t hold_until_ns;
};

/*
 * What the upstream side (h2_upstream.c) may ask of a stream's client
 * session, given to it by the downstream side (h2.c) in each h2_down:
 * the upstream side calls back through these and names nothing of h2.c,
 * so that the two files import each other in no loop.
 */
struct h2_down_ops {
	/*
	 * Answer st with the proxy's own error err (gRPC: UNAVAILABLE, or
	 * DEADLINE_EXCEEDED for a timeout, as a trailers-only response), or
	 * reset it once a response head went out; its upstream stream is reset.
	 */
	void (*stream_error)(struct worker *w, struct h2_stream *st, enum http_error err);
	/*
	 * st's try failed (how: f; code: the status for RETRY_FAIL_STATUS,
	 * the grpc-status for RETRY_FAIL_GRPC_STATUS) before a response head
	 * went to the client: may it be tried again? True when the retry
	 * policy and the service's budget allow it: the try's outcome went
	 * to the balancer (a refused stream is no failure of its endpoint),
	 * the response state is reset, and the next try starts on the client
	 * connection's deferred turn or after a backoff. The caller then
	 * unlinks st from its upstream stream, if it has not already, and
	 * drops what it had of the response. False: nothing changed; the
	 * caller answers as it would have.
	 */
	bool (*retry)(struct worker *w, struct h2_stream *st, enum retry_failure f, int code);
	/*
	 * st's gRPC response head came, not its end: hold it back? True when
	 * the hold is on (proxy.http2.grpc_head_hold_ms) and retry could
	 * still say yes to one of the route's gRPC codes (nothing charged to
	 * the budget): st->hold_until_ns is set and in the session's timer,
	 * which releases the head (h2_up_release) when it passes.
	 */
	bool (*hold)(struct worker *w, struct h2_stream *st);
	/* The response body source of a client stream (nghttp2_data_source_read_callback). */
	nghttp2_data_source_read_callback read;
};

/*
 * Runs of skipped stream ids remembered per client session: a client
 * skips none (ids go 1, 3, 5...), so a few runs catch the out-of-order
 * HEADERS of a hostile one; beyond that the oldest run is forgotten.
 */
#define H2_SKIPPED_RANGES 8

struct h2_down {
	const struct h2_down_ops *ops; /* set by h2.c; see struct h2_down_ops */
	struct conn *c;
	struct worker *w;
	nghttp2_session *s;
	const uint8_t *out; /* framed bytes not yet written (nghttp2's buffer) */
	size_t out_len;
	struct h2_stream *streams;
	uint32_t n_streams;
	bool dead;    /* close once the current nghttp2 call returns */
	bool more;    /* reading stopped at the turn's bound: resume reads on */
	bool refused; /* a GOAWAY with an error went out (counted once) */
	/* MadeYouReset: RST_STREAMs we may still send (a bucket, h2_reset_take). */
	uint32_t resets_left;
	uint64_t resets_ns; /* the bucket's last refill */
	/*
	 * x-shoal-peer-identity's value for the connection's caller, made by
	 * its first request that carries it (h2_own_fields, h2.c): the
	 * caller and the trust domain stay for the connection's life. Every
	 * stream's request fields refer to it, so it is freed with d.
	 */
	char *peer_identity;
	size_t peer_identity_len;
	/*
	 * Stream ids the client skipped (RFC 9113 5.1.1: implicitly closed),
	 * the newest H2_SKIPPED_RANGES runs: a HEADERS on one is a PROTOCOL_ERROR,
	 * which nghttp2 ignores instead (it cannot tell them from streams
	 * it closed, whose trailers may still be on their way).
	 */
	/*
	 * When the session's timer must fire at the latest for its streams
	 * (deadlines, tries, stall clocks; 0: none): at or before each
	 * stream's next time, maybe earlier (h2_down_by), made exact again
	 * when the timer fires (h2_timeout), so that arming it takes no walk
	 * of the streams on each flush.
	 */
	uint64_t due_ns;
	int32_t last_id; /* the highest stream id the client opened */
	uint32_t n_skipped;
	struct h2_id_run {
		int32_t lo, hi;
	} skipped[H2_SKIPPED_RANGES];
};

struct h2_up {
	struct conn *c;
	struct worker *w;
	nghttp2_session *s;
	const uint8_t *out;
	size_t out_len;
	struct shoal_addr addr;
	uint16_t port_be;
	const char *tunnel_src; /* through the tunnel as this caller, or NULL: direct */
	uint64_t tunnel_epoch;	/* attempt_tunnel_epoch when it connected, if tunneled */
	uint32_t n_streams;	  /* open streams we submitted, linked or not */
	struct h2_stream *linked; /* streams whose request is ours to answer */
	bool connected;
	bool draining; /* GOAWAY received or sent: no new stream */
	bool dead;
	bool more; /* reading stopped at the turn's bound */
	uint64_t idle_since_ns;
	struct h2_up *prev, *next; /* the worker's upstream sessions */
	/*
	 * The linked streams by their id on s (h2_up_stream): bucket
	 * (id / 2) & by_id_mask, chained through up_hnext. A session's ids
	 * in flight are consecutive odd numbers, so with at least as many
	 * buckets as streams in flight most chains hold one.
	 */
	uint32_t by_id_mask;
	struct h2_stream *by_id[];
};

/* A request head larger than this many fields is refused like a large one. */
#define H2_MAX_FIELDS 256
/*
 * Interim (1xx) heads forwarded per stream: the HTTP/1 side's bound
 * (HTTP1_MAX_INTERIM); later ones are dropped, so that an endpoint
 * cannot queue heads without end for a client that does not read.
 */
#define H2_MAX_INTERIM 8
#define H2_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* d's timer fires by t at the latest (0: nothing); see h2_down.due_ns. */
static inline void h2_down_by(struct h2_down *d, uint64_t t)
{
	if (t && (!d->due_ns || t < d->due_ns))
		d->due_ns = t;
}

/* ---- h2_session.c ---- */

/*
 * Response bytes of st wait for its client's window (st->to_down): its
 * stall clock (proxy.http2.stall_timeout_ms) starts now unless it runs.
 */
void h2_stream_waits(struct worker *w, struct h2_stream *st);
/*
 * When w's loop turn began (timer_now_ns then; now when outside one):
 * for clocks that a turn's length does not matter to (idle, stall).
 */
uint64_t h2_turn_ns(struct worker *w);

/*
 * A byte of st moved (request or response, either side): its idle clock
 * starts again. Only read when the route has an idle timeout; the turn's
 * clock, as the connection's own idle clock uses.
 */
static inline void h2_stream_active(struct worker *w, struct h2_stream *st)
{
	if (st->idle_ns)
		st->active_ns = h2_turn_ns(w);
}

/*
 * nghttp2's allocator for w's sessions, every byte charged to
 * proxy.max_buffer_memory_mib (up to a slack past it: nghttp2 allocates
 * mid-frame); pass it to nghttp2_session_*_new3.
 */
nghttp2_mem h2_mem(struct worker *w);
/* w's sessions run on this thread: charge the streams' buffers to it. */
void h2_mem_bind(struct worker *w);
/* Whether the buffer budget is spent: refuse new streams, grow no buffer. */
bool h2_mem_out(struct worker *w);
/* n zeroed bytes from w's cache, charged to the budget (not past it); NULL: none. */
void *h2_mem_zalloc(struct worker *w, size_t n);
/* Give back what h2_mem_zalloc gave (its charge too); NULL is nothing. */
void h2_mem_free(void *p);

/* Append n bytes to b (grown as needed; a stream's window bounds it). */
int h2_bytes_put(struct h2_bytes *b, const uint8_t *p, size_t n);
void h2_bytes_free(struct h2_bytes *b);
/* Keep name: value (references taken); -E2BIG past H2_MAX_FIELDS. */
int h2_fields_add(struct h2_fields *f, nghttp2_rcbuf *name, nghttp2_rcbuf *value);
void h2_fields_free(struct h2_fields *f);
/* Keep name: value, bytes st's owner keeps alive (no reference); -E2BIG, -ENOMEM. */
int h2_fields_add_own(struct h2_fields *f, const char *name, size_t name_len, const char *value,
		      size_t value_len);
/* Drop every field whose name drop() says (references let go), keeping the order. */
void h2_fields_drop(struct h2_fields *f, bool (*drop)(const char *name, size_t len));
/* Keep a copy of name: value (not referenced: from a source without rcbufs); as h2_fields_add. */
int h2_fields_add_copy(struct h2_fields *f, const char *name, size_t nlen, const char *value,
		       size_t vlen);
/*
 * Submit f as HEADERS on stream id of s (trailers: end set), nghttp2
 * copying the fields: f may be freed before the frame goes out. 0 or
 * nghttp2's error.
 */
int h2_submit_fields(nghttp2_session *s, int32_t id, const struct h2_fields *f, bool end);
/* The first field named name (lower case) in f, or NULL. */
const nghttp2_nv *h2_field(const struct h2_fields *f, const char *name);
/* nghttp2 options from proxy.http2 (no automatic window updates); NULL: no memory. */
nghttp2_option *h2_options(const struct config *cfg);
/* Queue our SETTINGS and set the session's receive window; 0 or -EIO. */
int h2_settings(nghttp2_session *s, const struct config *cfg, bool server);
/*
 * One more RST_STREAM of ours goes to d's client (MadeYouReset): take a
 * token of its bucket (proxy.http2.max_sent_resets, refilled at
 * reset_rate per second). False when none is left: the client made us
 * reset too many of its streams.
 */
bool h2_reset_take(struct h2_down *d, const struct config *cfg, uint64_t now_ns);
/*
 * Write what s has framed to side sd while it takes bytes, gathered in
 * b (a worker buffer, held only while bytes wait; one send for many
 * frames), framing more only once b has room (a slow peer holds one
 * buffer and one chunk of nghttp2's at most). Returns 0 or -errno.
 */
int h2_send(struct worker *w, struct conn_side *sd, nghttp2_session *s, struct conn_buf *b,
	    const uint8_t **out, size_t *len);
/* Bytes h2_send holds for the peer still: in b, or in nghttp2's chunk. */
static inline bool h2_unsent(const struct conn_buf *b, size_t len)
{
	return len || b->head != b->tail;
}
/* The series key of st's request; false when unkeyed (counted). */
bool h2_key(struct worker *w, const struct h2_stream *st, struct metrics_http_key *k,
	    const struct shoal_addr **ep);
/*
 * The status st's request is recorded with: its HTTP status, or for gRPC
 * a failing grpc-status as the HTTP status a client would see for it.
 */
unsigned int h2_recorded_status(const struct h2_stream *st);
/*
 * The grpc-status gRPC call st reads as, as a gRPC client reads it: the
 * endpoint's grpc-status (or the proxy's own), else, when the endpoint's
 * final head had a :status other than 200, that status's code
 * (grpc_status_from_http: 503 UNAVAILABLE, ...); GRPC_STATUS_NONE when
 * neither (no head yet, or a 200 without grpc-status so far).
 */
int h2_grpc_status_of(const struct h2_stream *st);
/*
 * st's request ended (once): to the balancer and the breaker when an
 * endpoint was tried (failed: the endpoint's failure), else its pick is
 * cancelled; to the metrics with status (0: reset).
 */
void h2_done(struct worker *w, struct h2_stream *st, bool tried, bool failed, unsigned int status,
	     const char *what);

/* ---- h2_upstream.c ---- */

/*
 * A session of w to endpoint ep of svc, port port_be, for the callers of dc's
 * identity, with room for one more stream: pooled, else new (connecting;
 * requests wait in it). An endpoint on another node goes through the
 * tunnel as attempt_connect_ep says, one session per caller identity (the
 * destination sees it per TLS connection). NULL with *err set (-EACCES:
 * strict mode, no way through the tunnel).
 */
struct h2_up *h2_up_get(struct worker *w, struct conn *dc, const struct config_service *svc,
			const struct config_endpoint *ep, uint16_t port_be, int *err);
/* Send st's request on up (its body from the first byte); 0 or -EIO. */
int h2_up_submit(struct worker *w, struct h2_up *up, struct h2_stream *st);
/*
 * st's endpoint answered it whole (its END_STREAM, no reset): the outcome
 * by its status (a gRPC call's by its code, h2_grpc_status_of) to the
 * balancer, the breaker and the metrics (h2_done; once).
 */
void h2_up_answered(struct worker *w, struct h2_stream *st);
/* st leaves its upstream stream, reset with error_code unless NO_ERROR. */
void h2_up_unlink(struct h2_stream *st, uint32_t error_code);
/* More request bytes (or their end) for st's upstream stream. */
void h2_up_wake(struct worker *w, struct h2_stream *st);
/* st's held response head (h2_down_ops.hold) goes to the client now, its body to follow. */
void h2_up_release(struct worker *w, struct h2_stream *st);

#endif
