// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The h2-upstream kind (h2.h, h2_int.h): per worker, pooled nghttp2
 * client sessions to endpoints, many streams each up to the peer's
 * MAX_CONCURRENT_STREAMS; GOAWAY drains one. Each is a connection of
 * its own on the worker's lists, owned by no client.
 */
#include "proxy/h2_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/h2_grpc.h"
#include "proxy/h2_to_h1.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "proxy/worker.h"

/*
 * The upstream sessions of the worker running on this thread. One worker
 * runs per thread, and the list holds each session's worker, so a test
 * that runs two workers on one thread still gets each its own.
 */
static __thread struct h2_up *h2_ups;

void h2_up_wake(struct worker *w, struct h2_stream *st)
{
	h2h1_wake(w, st);
	if (!st->up)
		return;
	if (st->up_deferred) {
		st->up_deferred = false;
		nghttp2_session_resume_data(st->up->s, st->up_id);
	}
	worker_conn_defer(w, st->up->c);
}

/* ---- upstream: pooled client sessions ---------------------------------- */

static struct h2_stream **h2_up_bucket(struct h2_up *up, int32_t id)
{
	return &up->by_id[((uint32_t)id >> 1) & up->by_id_mask];
}

/* Take st off up's list of linked streams. */
static void h2_up_list_del(struct h2_up *up, struct h2_stream *st)
{
	for (struct h2_stream **pp = h2_up_bucket(up, st->up_id); *pp; pp = &(*pp)->up_hnext)
		if (*pp == st) {
			*pp = st->up_hnext;
			break;
		}
	st->up_hnext = NULL;
	if (st->up_prev)
		st->up_prev->up_next = st->up_next;
	else
		up->linked = st->up_next;
	if (st->up_next)
		st->up_next->up_prev = st->up_prev;
	st->up_prev = st->up_next = NULL;
	st->up = NULL;
}

/* st leaves its upstream stream (reset with error_code when still open). */
void h2_up_unlink(struct h2_stream *st, uint32_t error_code)
{
	struct h2_up *up = st->up;

	h2h1_unlink(st);
	if (!up)
		return;
	h2_up_list_del(up, st);
	if (!up->s)
		return; /* the session is closing */
	/*
	 * Still linked means nghttp2 has not closed it: open, or its HEADERS
	 * still queued (the reset then cancels them, nothing goes out).
	 */
	if (error_code != NGHTTP2_NO_ERROR)
		nghttp2_submit_rst_stream(up->s, NGHTTP2_FLAG_NONE, st->up_id, error_code);
	worker_conn_defer(up->w, up->c);
}

/*
 * The request linked to stream id of up's session, or NULL: by up's
 * table of its linked streams, never by nghttp2's stream user data (none
 * is set): a stream unlinked before its HEADERS went out would keep its
 * old user data inside nghttp2 (set_stream_user_data cannot reach a
 * request still queued), a pointer to a stream maybe freed since.
 */
static struct h2_stream *h2_up_stream(struct h2_up *up, nghttp2_session *s, int32_t id)
{
	(void)s;
	for (struct h2_stream *st = *h2_up_bucket(up, id); st; st = st->up_hnext)
		if (st->up_id == id)
			return st;
	return NULL;
}

/* The request body source of an upstream stream; the mirror of h2_down_ops.read. */
static ssize_t h2_up_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			  uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);
	size_t n;

	(void)src;
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = st->to_up.len - st->to_up.off;
	if (n > length)
		n = length;
	if (n) /* nothing buffered yet: data is NULL, and memcpy wants a valid pointer */
		memcpy(buf, st->to_up.data + st->to_up.off, n);
	st->to_up.off += n;
	st->rq_framed += n;
	if (n)
		h2_stream_active(up->w, st);
	/* A replay frames bytes the client's window got back on an earlier try. */
	if (st->rq_framed > st->rq_consumed) {
		nghttp2_session_consume(st->d->s, st->id, st->rq_framed - st->rq_consumed);
		st->rq_consumed = st->rq_framed;
		worker_conn_defer(up->w, st->d->c);
	}
	if (st->to_up.off < st->to_up.len)
		return (ssize_t)n;
	if (!st->rq_end) {
		if (n)
			return (ssize_t)n;
		st->up_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	/* The client's trailers end the stream instead (copied: st may go first). */
	if (st->rq_tr.n) {
		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (h2_submit_fields(s, id, &st->rq_tr, true))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

int h2_up_submit(struct worker *w, struct h2_up *up, struct h2_stream *st)
{
	nghttp2_data_provider dp = {.read_callback = h2_up_read};
	int32_t id;

	(void)w;
	/* A retry may have the whole body, and the client's END_STREAM, already. */
	id = nghttp2_submit_request(up->s, NULL, st->rq.nv, st->rq.n,
				    st->rq_end && !st->rq_bytes ? NULL : &dp, NULL);
	if (id < 0)
		return -EIO;
	st->up = up;
	st->up_id = id;
	st->up_tunneled = up->tunnel_src != NULL;
	st->up_hnext = *h2_up_bucket(up, id);
	*h2_up_bucket(up, id) = st;
	st->up_prev = NULL;
	st->up_next = up->linked;
	if (up->linked)
		up->linked->up_prev = st;
	up->linked = st;
	up->n_streams++;
	worker_conn_defer(w, up->c);
	return 0;
}

static int h2_up_on_header(nghttp2_session *s, const nghttp2_frame *frame, nghttp2_rcbuf *name,
			   nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
	struct h2_stream *st = h2_up_stream(ud, s, frame->hd.stream_id);
	struct h2_fields *f;
	nghttp2_vec nm;

	(void)flags;
	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	h2_stream_active(st->d->w, st);
	f = frame->headers.cat == NGHTTP2_HCAT_HEADERS && st->status >= 200 ? &st->tr : &st->rs;
	nm = nghttp2_rcbuf_get_buf(name);
	if (nm.len == 11 && !memcmp(nm.base, "grpc-status", 11)) {
		nghttp2_vec v = nghttp2_rcbuf_get_buf(value);

		st->grpc_status = grpc_status_parse((const char *)v.base, v.len);
	}
	if (h2_fields_add(f, name, value))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

static void h2_down_wake(struct worker *w, struct h2_stream *st)
{
	if (st->down_deferred) {
		st->down_deferred = false;
		nghttp2_session_resume_data(st->d->s, st->id);
	}
	worker_conn_defer(w, st->d->c);
}

/* The final response head of st: on to the client, its body to follow. */
static void h2_up_response(struct worker *w, struct h2_stream *st, bool end)
{
	nghttp2_data_provider dp = {.read_callback = st->d->ops->read};
	const nghttp2_nv *status = h2_field(&st->rs, ":status");

	st->status = status ? atoi((const char *)status->value) : 502;
	if (st->status < 200) {
		/*
		 * 1xx (100 Continue, 103 Early Hints): on to the client as HEADERS,
		 * copied; past H2_MAX_INTERIM dropped. The final head follows.
		 */
		if (st->status != 101 && st->n_interim < H2_MAX_INTERIM &&
		    !h2_submit_fields(st->d->s, st->id, &st->rs, false)) {
			st->n_interim++;
			worker_conn_defer(w, st->d->c);
		}
		h2_fields_free(&st->rs);
		st->status = 0;
		return;
	}
	if (end)
		st->rs_end = true;
	st->rs_submitted = true;
	/* No retry once the client has a head: the body need not be kept. */
	st->replay_lost = true;
	st->to_up.keep = false;
	if (nghttp2_submit_response(st->d->s, st->id, st->rs.nv, st->rs.n, end ? NULL : &dp))
		nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
	worker_conn_defer(w, st->d->c);
}

void h2_up_release(struct worker *w, struct h2_stream *st)
{
	st->hold_until_ns = 0;
	h2_up_response(w, st, false);
}

/*
 * A gRPC head that did not end the stream, before it goes to the client:
 * held back (h2_down_ops.hold) while a retry could still replace it, so
 * that trailers right behind it (a head, then UNAVAILABLE, no message)
 * are retried as a trailers-only answer is (h2_up_held_trailers). Its
 * :status is kept in st->status, so that the next HEADERS is read as
 * trailers; the per-try timeout, which runs until a head, stops.
 */
static bool h2_up_hold(struct h2_up *up, struct h2_stream *st)
{
	const nghttp2_nv *sf = h2_field(&st->rs, ":status");

	if (!st->grpc || !sf || sf->valuelen != 3 || memcmp(sf->value, "200", 3) ||
	    !st->d->ops->hold(up->w, st))
		return false;
	st->status = 200;
	st->try_deadline_ns = 0;
	return true;
}

/*
 * Trailers (the stream's end) came while st's head was held: retried as
 * a trailers-only answer would be when their grpc-status is one the
 * route retries (the head and the trailers are dropped), else the head
 * and then the trailers go to the client as they came.
 */
static void h2_up_held_trailers(struct h2_up *up, struct h2_stream *st)
{
	if (st->grpc_status > GRPC_STATUS_OK &&
	    st->d->ops->retry(up->w, st, RETRY_FAIL_GRPC_STATUS, st->grpc_status)) {
		h2_up_unlink(st, NGHTTP2_NO_ERROR);
		return;
	}
	h2_up_release(up->w, st);
	st->rs_end = true;
	h2_down_wake(up->w, st);
}

/*
 * A response head that the retry policy may retry, before it goes to the
 * client: a gRPC trailers-only answer (the head ends the stream; its
 * grpc-status is the call's) with one of the route's codes, a gRPC head
 * whose :status is not 200 and that has no grpc-status, read as a gRPC
 * client reads it (grpc_status_from_http: a 503 is UNAVAILABLE), ending
 * the stream or not, or a non-gRPC status the policy lists. True when st
 * was retried: it left this stream (reset unless the endpoint ended it)
 * and the head, and any body behind it, are dropped. A gRPC head followed
 * by trailers is retried once they come if the head was held
 * (h2_up_hold); a gRPC answer with messages never is.
 */
static bool h2_up_retry_head(struct h2_up *up, struct h2_stream *st, bool end)
{
	const nghttp2_nv *sf = h2_field(&st->rs, ":status");
	int status = sf ? atoi((const char *)sf->value) : 0;
	bool retried;

	if (status < 200)
		return false;
	if (st->grpc) {
		int code = grpc_status_or_http(st->grpc_status, status);

		/*
		 * A head with grpc-status is the call's answer only when it
		 * ends the stream (trailers-only); an intermediary's status
		 * without one (an ingress, an overloaded server) is, body or not.
		 */
		if (code <= GRPC_STATUS_OK || (!end && st->grpc_status != GRPC_STATUS_NONE))
			return false;
		retried = st->d->ops->retry(up->w, st, RETRY_FAIL_GRPC_STATUS, code);
	} else {
		if (status < 400)
			return false;
		retried = st->d->ops->retry(up->w, st, RETRY_FAIL_STATUS, status);
	}
	if (retried)
		h2_up_unlink(st, end ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
	return retried;
}

static int h2_up_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (frame->hd.type == NGHTTP2_GOAWAY) {
		/* Streams above last_stream_id close with REFUSED_STREAM; the rest finish. */
		up->draining = true;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	st = h2_up_stream(up, s, frame->hd.stream_id);
	if (!st)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !st->rs_submitted && st->status == 0) {
		if (h2_up_retry_head(up, st, end))
			return 0;
		if (!end && h2_up_hold(up, st))
			return 0;
		h2_up_response(up->w, st, end);
		return 0;
	}
	if (st->hold_until_ns && !st->rs_submitted) {
		if (frame->hd.type == NGHTTP2_HEADERS && end) {
			h2_up_held_trailers(up, st);
			return 0;
		}
		/* A message (an empty DATA frame too, h2_up_on_data had none): released. */
		if (frame->hd.type == NGHTTP2_DATA)
			h2_up_release(up->w, st);
	}
	if (end) {
		st->rs_end = true;
		h2_down_wake(up->w, st);
	}
	return 0;
}

static int h2_up_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);

	(void)flags;
	if (st)
		h2_stream_active(up->w, st);
	/* The first message of a held head: the call goes on, the head goes first. */
	if (st && st->hold_until_ns && !st->rs_submitted)
		h2_up_release(up->w, st);
	if (!st || !st->rs_submitted) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	if (h2_bytes_put(&st->to_down, data, len)) {
		/* No room (the buffer budget): the client's stream is reset, counted. */
		nghttp2_session_consume(s, id, len);
		worker_refused(up->w, PROXY_CAP_memory, "an HTTP/2 response body");
		h2_done(up->w, st, true, false, 0, "buffer budget");
		st->d->ops->stream_error(up->w, st, HTTP_ERR_LOCAL_RESOURCES);
		return 0;
	}
	/*
	 * The session's window goes back at once, the stream's only once its
	 * client took the bytes (h2_down_read): the session is shared by many
	 * clients' streams, and one that reads nothing must hold back its own
	 * stream (at most stream_window_bytes here), not everyone's.
	 */
	nghttp2_session_consume_connection(s, len);
	h2_stream_waits(up->w, st);
	h2_down_wake(up->w, st);
	return 0;
}

void h2_up_answered(struct worker *w, struct h2_stream *st)
{
	/* A gRPC call's outcome is its code, a non-200 head's as a gRPC client reads it. */
	bool failed = st->status >= 500 || st->status == 429 ||
		      (st->grpc && grpc_status_is_failure(h2_grpc_status_of(st)));

	h2_done(w, st, true, failed, h2_recorded_status(st), failed ? "failure" : "ok");
}

static int h2_up_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct h2_up *up = ud;
	struct h2_stream *st = h2_up_stream(up, s, id);

	up->n_streams--;
	if (!up->n_streams)
		up->idle_since_ns = timer_now_ns();
	if (!st)
		return 0;
	h2_up_list_del(up, st);
	if (error_code == NGHTTP2_REFUSED_STREAM)
		WORKER_STAT_INC(up->w, h2_refused);
	if (error_code != NGHTTP2_NO_ERROR || !st->rs_end) {
		/*
		 * Reset by the endpoint before a head went to the client: a
		 * REFUSED_STREAM (also what nghttp2 closes the streams above a
		 * GOAWAY's last-stream-id with) was never processed and is
		 * retried whatever the method; another reset as the policy says.
		 */
		if (!st->rs_submitted &&
		    st->d->ops->retry(up->w, st,
				      error_code == NGHTTP2_REFUSED_STREAM ? RETRY_FAIL_REFUSED
									   : RETRY_FAIL_RESET_EARLY,
				      0))
			return 0;
		if (!st->rs_submitted) {
			h2_done(up->w, st, true, true, 502, "reset");
			st->d->ops->stream_error(up->w, st, HTTP_ERR_UPSTREAM_RESET);
		} else {
			h2_done(up->w, st, true, true, 0, "reset");
			nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
						  NGHTTP2_INTERNAL_ERROR);
			worker_conn_defer(up->w, st->d->c);
		}
		return 0;
	}
	h2_up_answered(up->w, st);
	h2_down_wake(up->w, st);
	return 0;
}

static void h2_up_free(struct h2_up *up)
{
	if (up->prev)
		up->prev->next = up->next;
	else
		h2_ups = up->next;
	if (up->next)
		up->next->prev = up->prev;
	free(up);
}

/*
 * Close up: each of its streams still open fails (its client gets an
 * error or a reset), its socket closes, its connection is released.
 */
static void h2_up_close(struct worker *w, struct conn *c, bool reset)
{
	struct h2_up *up = c->h2;

	if (up) {
		up->draining = true;
		/* nghttp2_session_del calls no stream callback: fail the streams here. */
		nghttp2_session_del(up->s);
		up->s = NULL;
		while (up->linked) {
			struct h2_stream *st = up->linked;
			bool connected = up->connected;

			h2_up_list_del(up, st);
			/* Never connected: nothing was sent, a connect failure. */
			if (!st->rs_submitted &&
			    st->d->ops->retry(
				w, st, connected ? RETRY_FAIL_RESET_EARLY : RETRY_FAIL_CONNECT, 0))
				continue;
			h2_done(w, st, true, true, st->rs_submitted ? 0 : 502, "connection lost");
			if (st->rs_submitted) {
				nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
							  NGHTTP2_INTERNAL_ERROR);
				worker_conn_defer(w, st->d->c);
			} else {
				st->d->ops->stream_error(w, st,
							 connected ? HTTP_ERR_UPSTREAM_RESET
								   : HTTP_ERR_CONNECT_FAILURE);
			}
		}
		h2_up_free(up);
		c->h2 = NULL;
	}
	conn_side_close(w, &c->upstream, reset);
	worker_conn_release(w, c);
}

static ssize_t h2_up_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
			     void *ud)
{
	(void)s, (void)data, (void)len, (void)flags, (void)ud;
	return NGHTTP2_ERR_CALLBACK_FAILURE; /* mem_send only */
}

/* The streams up may take: the peer's MAX_CONCURRENT_STREAMS, and ours. */
static uint32_t h2_up_room(const struct h2_up *up, const struct config *cfg)
{
	uint32_t peer =
	    nghttp2_session_get_remote_settings(up->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	uint32_t lim =
	    peer < cfg->http2.max_concurrent_streams ? peer : cfg->http2.max_concurrent_streams;

	return up->n_streams < lim ? lim - up->n_streams : 0;
}

static void h2_up_arm(struct worker *w, struct h2_up *up)
{
	struct conn *c = up->c;
	uint64_t idle = (uint64_t)w->cfg->http_pool_idle_timeout_ms * 1000000;

	if (!up->connected)
		return; /* the connect timer is armed */
	if (up->n_streams) {
		timer_heap_del(&w->timers, &c->timer);
		return;
	}
	if (timer_heap_add(&w->timers, &c->timer, up->idle_since_ns + idle))
		up->dead = true;
}

static void h2_up_flush(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;
	int err;

	if (!up || !up->connected)
		return;
	err = h2_send(w, &c->upstream, up->s, &c->to_upstream, &up->out, &up->out_len);
	if (err) {
		h2_up_close(w, c, true);
		return;
	}
	if (up->dead || c->upstream.eof || (up->draining && !up->n_streams) ||
	    (!h2_unsent(&c->to_upstream, up->out_len) && !nghttp2_session_want_read(up->s) &&
	     !nghttp2_session_want_write(up->s))) {
		h2_up_close(w, c, false);
		return;
	}
	h2_up_arm(w, up);
}

static void h2_up_io(struct worker *w, struct conn *c, uint32_t events)
{
	struct h2_up *up = c->h2;
	struct conn_buf *b = &c->to_client;

	if (!up->connected) {
		int err;

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		err = attempt_connect_result(w, c->upstream.pl.fd, events);
		if (err) {
			worker_warn_ratelimited(w,
						"proxy worker %d: h2: connect to an endpoint "
						"failed: %s",
						w->id, strerror(err));
			h2_up_close(w, c, false);
			return;
		}
		up->connected = true;
		timer_heap_del(&w->timers, &c->timer);
		/* Latency samples are the endpoint's answers, not this connect. */
		for (struct h2_stream *st = up->linked; st; st = st->up_next)
			st->bt.start_ns = timer_now_ns();
		c->upstream.plain_tcp = worker_plain_tcp(w, c->upstream.pl.fd);
		c->upstream.readable = c->upstream.writable = true;
	} else if (events & EPOLLERR) {
		if (sock_error(c->upstream.pl.fd)) {
			h2_up_close(w, c, true);
			return;
		}
	}
	for (int round = 0; c->upstream.readable && !c->upstream.eof && !up->dead; round++) {
		uint32_t got;
		int err;
		ssize_t rv;

		if (round == CONN_PUMP_ROUNDS) {
			up->more = true;
			worker_conn_defer(w, c);
			break;
		}
		err = conn_side_read(w, &c->upstream, b, w->cfg->buffer_bytes, &got);
		if (err) {
			h2_up_close(w, c, true);
			return;
		}
		if (!b->tail)
			break;
		rv = nghttp2_session_mem_recv(up->s, (const uint8_t *)b->data + b->head,
					      b->tail - b->head);
		b->head = b->tail = 0;
		if (rv < 0) {
			worker_warn_ratelimited(w,
						"proxy worker %d: h2: an endpoint broke the "
						"protocol: %s",
						w->id, nghttp2_strerror((int)rv));
			up->dead = true;
		}
	}
	conn_buf_release_empty(w, b);
	h2_up_flush(w, c);
}

/*
 * A session through the tunnel, opened before a TLS connection of its
 * worker was retired (its count now epoch), may be on it: it takes no
 * new stream and closes once its streams end (the deferred turn's flush
 * closes it at once when it has none). Whether it was.
 */
static bool h2_up_drain_if_stale(struct worker *w, struct h2_up *up, uint64_t epoch)
{
	if (!up->tunnel_src || up->tunnel_epoch == epoch || up->draining || up->dead)
		return false;
	up->draining = true;
	WORKER_STAT_INC(w, upstream_tunnel_retired);
	worker_conn_defer(w, up->c);
	return true;
}

void h2_up_tunnel_retired(struct worker *w, uint64_t epoch)
{
	for (struct h2_up *up = h2_ups; up; up = up->next)
		if (up->w == w)
			h2_up_drain_if_stale(w, up, epoch);
}

/*
 * A session to addr:port_be with room for one more stream: a pooled one
 * of this worker, else a new one (connecting; the request waits in it).
 * NULL with *err set when no connection could be started.
 */
struct h2_up *h2_up_get(struct worker *w, struct conn *dc, const struct config_service *svc,
			const struct config_endpoint *ep, uint16_t port_be, int *err)
{
	const struct shoal_addr *addr = &ep->addr;
	const char *tunnel_src;
	/* strict mode refuses the call: no session fits, and the new one's connect says why */
	bool reusable = attempt_pool_key(w, dc, svc, ep, &tunnel_src);
	const struct config_port *port = NULL;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_mem mem;
	struct h2_up *up;
	struct conn *c;
	bool connected, tunneled;
	uint64_t epoch = tunnel_src ? attempt_tunnel_epoch(w) : 0;
	uint32_t buckets;
	int fd;

	for (up = reusable ? h2_ups : NULL; up; up = up->next) {
		if (up->w != w || up->draining || up->dead || up->port_be != port_be ||
		    up->tunnel_src != tunnel_src || !addr_equal(&up->addr, addr))
			continue;
		if (h2_up_drain_if_stale(w, up, epoch))
			continue;
		if (h2_up_room(up, w->cfg))
			return up;
	}
	*err = -ENOMEM;
	/* Buckets for the streams in flight: a power of two, 64 to 4096. */
	for (buckets = 64; buckets < w->cfg->http2.max_concurrent_streams && buckets < 4096;)
		buckets *= 2;
	up = calloc(1, sizeof(*up) + buckets * sizeof(up->by_id[0]));
	if (!up)
		return NULL;
	up->by_id_mask = buckets - 1;
	if (nghttp2_session_callbacks_new(&cb)) {
		free(up);
		return NULL;
	}
	nghttp2_session_callbacks_set_send_callback(cb, h2_up_send_cb);
	nghttp2_session_callbacks_set_on_header_callback2(cb, h2_up_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_up_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_up_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_up_on_stream_close);
	opt = h2_options(w->cfg);
	mem = h2_mem(w);
	h2_mem_bind(w);
	if (!opt || nghttp2_session_client_new3(&up->s, cb, up, opt, &mem)) {
		nghttp2_session_callbacks_del(cb);
		nghttp2_option_del(opt);
		free(up);
		return NULL;
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (h2_settings(up->s, w->cfg, false)) {
		nghttp2_session_del(up->s);
		free(up);
		return NULL;
	}
	c = worker_conn_get(w);
	if (!c) {
		nghttp2_session_del(up->s);
		free(up);
		return NULL;
	}
	WORKER_STAT_INC(w, h2_sessions_opened);
	conn_init(c);
	c->kind = CONN_KIND_H2;
	c->ops = &h2_upstream_ops;
	/*
	 * Its service, to follow newer snapshots by (worker_conn_follow), as
	 * its own snapshot has it: dc's may be an older one, freed before
	 * this session closes.
	 */
	c->orig = dc->orig;
	c->svc = service_lookup(worker_conn_config(w, c), &c->orig, &port);
	c->svc_port = port ? port->port : dc->svc_port;
	c->port_be = port_be;
	c->sv = c->svc ? worker_es_service(w, c, worker_conn_config(w, c), c->svc) : NULL;
	c->accepted_ns = timer_now_ns();
	c->h2 = up;
	up->c = c;
	up->w = w;
	up->addr = *addr;
	up->port_be = port_be;
	up->tunnel_src = tunnel_src;
	up->idle_since_ns = c->accepted_ns;
	up->next = h2_ups;
	if (h2_ups)
		h2_ups->prev = up;
	h2_ups = up;

	fd = attempt_connect_ep(w, dc, svc, ep, port_be, &connected, &tunneled);
	if (fd < 0) {
		*err = fd;
		h2_up_close(w, c, false);
		return NULL;
	}
	c->upstream.pl.fd = fd;
	/* After the connect, which may itself have retired one (tunnel_open). */
	up->tunnel_epoch = tunneled ? attempt_tunnel_epoch(w) : 0;
	*err = worker_watch(w, &c->upstream.pl);
	if (*err) {
		sock_close_reset(fd);
		c->upstream.pl.fd = -1;
		h2_up_close(w, c, false);
		return NULL;
	}
	if (connected) {
		up->connected = true;
		c->upstream.plain_tcp = worker_plain_tcp(w, fd);
		c->upstream.readable = c->upstream.writable = true;
	} else {
		uint64_t t = c->sv && c->sv->connect_timeout_ns
				 ? c->sv->connect_timeout_ns
				 : (uint64_t)w->cfg->connect_timeout_ms * 1000000;

		if (timer_heap_add(&w->timers, &c->timer, c->accepted_ns + t)) {
			*err = -ENOMEM;
			h2_up_close(w, c, true);
			return NULL;
		}
	}
	return up;
}

static void h2_up_start(struct worker *w, struct conn *c)
{
	(void)w, (void)c; /* created by h2_up_get, never accepted */
}

static void h2_up_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (s == &c->upstream)
		h2_up_io(w, c, events);
}

static void h2_up_timeout(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;

	if (!up->connected) {
		worker_warn_ratelimited(w, "proxy worker %d: h2: connect to an endpoint timed out",
					w->id);
		h2_up_close(w, c, false);
		return;
	}
	if (!up->n_streams &&
	    timer_now_ns() >=
		up->idle_since_ns + (uint64_t)w->cfg->http_pool_idle_timeout_ms * 1000000) {
		nghttp2_session_terminate_session(up->s, NGHTTP2_NO_ERROR);
		up->dead = true;
	}
	h2_up_flush(w, c);
}

static void h2_up_resume(struct worker *w, struct conn *c)
{
	struct h2_up *up = c->h2;

	if (up && up->more) {
		up->more = false;
		h2_up_io(w, c, 0);
		return;
	}
	h2_up_flush(w, c);
}

static void h2_up_abort(struct worker *w, struct conn *c)
{
	h2_up_close(w, c, true);
}

/* A pooled session keeps nothing of its config but its endpoint's address. */
static bool h2_up_settled(const struct conn *c)
{
	(void)c;
	return true;
}

static bool h2_up_drain_idle(struct worker *w, struct conn *c, uint64_t now, uint64_t idle_ns)
{
	struct h2_up *up = c->h2;

	(void)now, (void)idle_ns;
	if (up->n_streams)
		return false;
	h2_up_close(w, c, false);
	return true;
}

const struct conn_ops h2_upstream_ops = {
    .name = "h2-upstream",
    .start = h2_up_start,
    .event = h2_up_event,
    .timeout = h2_up_timeout,
    .resume = h2_up_resume,
    .abort = h2_up_abort,
    .settled = h2_up_settled,
    .drain_idle = h2_up_drain_idle,
};
