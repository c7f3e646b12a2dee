// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/2 streams to HTTP/1.1-only endpoints (h2_to_h1.h): the pure
 * translation of heads, then the exchange of one stream on a pooled
 * HTTP/1.1 connection.
 */
#include "proxy/h2_to_h1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>

#include "common/log.h"
#include "config/config.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/h2_int.h"
#include "proxy/http1_conn.h"
#include "proxy/pool.h"
#include "proxy/sock.h"
#include "proxy/worker.h"

/* ---- the translation, pure ------------------------------------------------ */

static bool nv_is(const nghttp2_nv *f, const char *name)
{
	size_t n = strlen(name);

	return f->namelen == n && !memcmp(f->name, name, n);
}

static bool eq_nocase(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);

	return an == bn && !strncasecmp(a, b, an);
}

/*
 * Fields that never cross from one protocol to the other: HTTP/2 forbids
 * the connection-specific ones (RFC 9113 8.2.2), and in HTTP/1.1 they are
 * hop-by-hop (RFC 9110 7.6.1), so each hop sets its own.
 */
static bool h2h1_hop_field(const char *name, size_t n)
{
	static const char *const hop[] = {
	    "connection", "keep-alive", "proxy-connection", "transfer-encoding",
	    "upgrade",	  "te",		"http2-settings",
	};

	for (size_t i = 0; i < H2_ARRAY_SIZE(hop); i++)
		if (eq_nocase(name, n, hop[i]))
			return true;
	return false;
}

/* A trailer may not frame, route or authenticate the message (RFC 9110 6.5.1). */
static bool h2h1_trailer_refused(const char *name, size_t n)
{
	return h2h1_hop_field(name, n) || eq_nocase(name, n, "content-length") ||
	       eq_nocase(name, n, "host") || eq_nocase(name, n, "trailer") ||
	       eq_nocase(name, n, "authorization") || eq_nocase(name, n, "content-type");
}

/* nghttp2 checked the client's fields, but a CR, LF or NUL here would be a smuggled line. */
static bool h2h1_clean(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
			return false;
	return true;
}

struct h2h1_out {
	char *p;
	size_t len, cap;
	bool full;
};

static void out_put(struct h2h1_out *o, const void *s, size_t n)
{
	if (o->len + n > o->cap) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void out_str(struct h2h1_out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

static void out_field(struct h2h1_out *o, const nghttp2_nv *f)
{
	out_put(o, f->name, f->namelen);
	out_str(o, ": ");
	out_put(o, f->value, f->valuelen);
	out_str(o, "\r\n");
}

int h2h1_format_request(const nghttp2_nv *nv, size_t n, bool body, char *out, size_t cap,
			size_t *len, bool *chunked)
{
	const nghttp2_nv *method = NULL, *path = NULL, *authority = NULL, *host = NULL;
	struct h2h1_out o = {.p = out, .cap = cap};
	bool has_cl = false, cookie = false;

	for (size_t i = 0; i < n; i++) {
		if (!h2h1_clean(nv[i].name, nv[i].namelen) ||
		    !h2h1_clean(nv[i].value, nv[i].valuelen))
			return -EINVAL;
		if (nv_is(&nv[i], ":method"))
			method = &nv[i];
		else if (nv_is(&nv[i], ":path"))
			path = &nv[i];
		else if (nv_is(&nv[i], ":authority"))
			authority = &nv[i];
		else if (nv_is(&nv[i], ":protocol"))
			return -EOPNOTSUPP; /* extended CONNECT (RFC 8441) */
		else if (nv_is(&nv[i], "host") && !host)
			host = &nv[i];
		else if (nv_is(&nv[i], "content-length"))
			has_cl = true;
	}
	if (method && method->valuelen == 7 && !memcmp(method->value, "CONNECT", 7))
		return -EOPNOTSUPP;
	if (!method || !path || !method->valuelen || !path->valuelen)
		return -EINVAL;
	out_put(&o, method->value, method->valuelen);
	out_str(&o, " ");
	out_put(&o, path->value, path->valuelen);
	out_str(&o, " HTTP/1.1\r\nhost: ");
	/* :authority wins over host (RFC 9113 8.3.1). */
	if (authority)
		out_put(&o, authority->value, authority->valuelen);
	else if (host)
		out_put(&o, host->value, host->valuelen);
	out_str(&o, "\r\n");
	for (size_t i = 0; i < n; i++) {
		const nghttp2_nv *f = &nv[i];

		if (f->namelen && f->name[0] == ':')
			continue;
		if (nv_is(f, "host") || h2h1_hop_field((const char *)f->name, f->namelen))
			continue;
		if (nv_is(f, "cookie")) {
			/* Split across fields in HTTP/2; one line in HTTP/1.1. */
			if (cookie)
				continue;
			cookie = true;
			out_str(&o, "cookie: ");
			for (size_t k = i, first = 1; k < n; k++) {
				if (!nv_is(&nv[k], "cookie"))
					continue;
				if (!first)
					out_str(&o, "; ");
				first = 0;
				out_put(&o, nv[k].value, nv[k].valuelen);
			}
			out_str(&o, "\r\n");
			continue;
		}
		out_field(&o, f);
	}
	*chunked = body && !has_cl;
	if (*chunked)
		out_str(&o, "transfer-encoding: chunked\r\n");
	out_str(&o, "\r\n");
	if (o.full)
		return -E2BIG;
	*len = o.len;
	return 0;
}

int h2h1_format_trailers(const nghttp2_nv *nv, size_t n, char *out, size_t cap, size_t *len)
{
	struct h2h1_out o = {.p = out, .cap = cap};

	out_str(&o, "0\r\n");
	for (size_t i = 0; i < n; i++) {
		if (!h2h1_clean(nv[i].name, nv[i].namelen) ||
		    !h2h1_clean(nv[i].value, nv[i].valuelen))
			return -EINVAL;
		if ((nv[i].namelen && nv[i].name[0] == ':') ||
		    h2h1_trailer_refused((const char *)nv[i].name, nv[i].namelen))
			continue;
		out_field(&o, &nv[i]);
	}
	out_str(&o, "\r\n");
	if (o.full)
		return -E2BIG;
	*len = o.len;
	return 0;
}

/* Add name (lower-cased) and value to f. */
static int h2h1_add_lower(struct h2_fields *f, const char *name, size_t nlen, const char *value,
			  size_t vlen)
{
	char low[256];

	if (nlen > sizeof(low))
		return -E2BIG; /* no field name is this long; the parser bounds the head */
	for (size_t i = 0; i < nlen; i++)
		low[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	return h2_fields_add_copy(f, low, nlen, value, vlen);
}

/* Is name one of the tokens of the Connection fields of h? */
static bool h2h1_conn_listed(const char *buf, const struct http1_head *h, const char *name,
			     size_t nlen)
{
	for (uint32_t i = 0; i < h->n_headers; i++) {
		const struct http1_header *hd = &h->headers[i];
		const char *v = buf + hd->value.off, *end = v + hd->value.len;

		if (!eq_nocase(buf + hd->name.off, hd->name.len, "connection"))
			continue;
		while (v < end) {
			const char *t;

			while (v < end && (*v == ',' || *v == ' ' || *v == '\t'))
				v++;
			t = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if (v > t && (size_t)(v - t) == nlen && !strncasecmp(t, name, nlen))
				return true;
		}
	}
	return false;
}

int h2h1_response_fields(const char *buf, const struct http1_head *h, struct h2_fields *f)
{
	char status[4];
	int err;

	snprintf(status, sizeof(status), "%03u", h->status % 1000);
	err = h2_fields_add_copy(f, ":status", 7, status, 3);
	for (uint32_t i = 0; !err && i < h->n_headers; i++) {
		const char *name = buf + h->headers[i].name.off;
		size_t nlen = h->headers[i].name.len;

		if (h2h1_hop_field(name, nlen) || h2h1_conn_listed(buf, h, name, nlen))
			continue;
		err = h2h1_add_lower(f, name, nlen, buf + h->headers[i].value.off,
				     h->headers[i].value.len);
	}
	return err;
}

int h2h1_chunked_trailers(const char *t, size_t len, struct h2_fields *f)
{
	const char *p = t, *end = t + len;
	int err = 0;

	/* The last data chunk's CRLF, if the body had data; then the "0[;ext]" line. */
	if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
		p += 2;
	p = memchr(p, '\n', (size_t)(end - p));
	if (!p)
		return 0;
	p++;
	while (!err && p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;

		if (!eol || eol - p < 2)
			break; /* the final CRLF */
		ve = eol - 1; /* the CR */
		colon = memchr(p, ':', (size_t)(ve - p));
		if (!colon)
			break;
		v = colon + 1;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (!h2h1_trailer_refused(p, (size_t)(colon - p)))
			err = h2h1_add_lower(f, p, (size_t)(colon - p), v, (size_t)(ve - v));
		p = eol + 1;
	}
	return err;
}

/* ---- the exchange of one stream --------------------------------------------- */

/*
 * Bytes of one buffer (proxy.buffer_bytes) of response body a stream may
 * hold beyond what the client's window took: with the socket buffer read
 * into, at most three buffers per stream; the endpoint's TCP window
 * holds the rest back.
 */
#define H2H1_HOLD_BUFFERS 1
/* What the decoder may read after the last data byte: CRLF, the last-chunk line, trailers, CRLF. */
#define H2H1_TRAILER_BYTES (2 + HTTP1_MAX_CHUNK_LINE + 2 + HTTP1_MAX_TRAILERS + 2)

enum h2h1_rs {
	H2H1_RS_HEAD, /* reading a response head (interim ones included) */
	H2H1_RS_BODY,
	H2H1_RS_DONE,
};

struct h2h1 {
	struct conn *c; /* its own connection (kind h2h1_ops); c->h2 is this */
	struct worker *w;
	struct h2_stream *st; /* NULL once it left */
	struct pool_conn *pc; /* the HTTP/1.1 connection */
	const struct config_service *svc; /* st->target, which outlives the exchange */
	const struct config_endpoint *ep; /* of svc */
	struct shoal_addr addr;
	uint16_t port_be;
	bool connected;
	bool reused;	 /* pc came from the pool: a stale one may close at once */
	bool resent;	 /* the head went again on a fresh connection once */
	bool chunked;	 /* the request body is chunked */
	bool body_sent;	 /* a body byte was written (and given back to the client) */
	bool rq_done;	 /* the whole request was written */
	bool got_bytes;	 /* a response byte arrived */
	bool head_method; /* HEAD: a response without a body, whatever its framing says */
	bool head_pending; /* a chunked final head waits for its first chunk's check */
	char *head;	 /* the request head, until a response byte arrives (resend) */
	size_t head_len;
	char *ob; /* framing to write before more payload: the head, chunk lines, the end */
	uint32_t ob_off, ob_len, ob_cap;
	size_t payload_left; /* body bytes of the current chunk (or CL body) still to write */

	enum h2h1_rs rs;
	struct http1_parser rp;
	struct http1_head rh;
	struct http1_header hdrs[HTTP1_MAX_HEADERS_DEFAULT];
	enum http1_body body;
	uint64_t left; /* Content-Length bytes still to come */
	struct http1_chunked ch;
	char *tr; /* chunk framing since the last data byte: the trailers at the end */
	uint32_t tr_len;
	uint32_t interim;
	const char *why; /* what was wrong with a response refused, for the log */
};

bool h2h1_declared(const struct config_service *svc, uint16_t svc_port)
{
	for (int i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == svc_port)
			return svc->ports[i].upstream == CONFIG_UPSTREAM_HTTP1;
	return false;
}

static void h2h1_free(struct worker *w, struct h2h1 *x)
{
	conn_buf_release_empty(w, &x->c->to_client);
	if (x->c->to_client.data) {
		worker_buf_put(w, x->c->to_client.data);
		x->c->to_client.data = NULL;
	}
	worker_conn_release(w, x->c);
	free(x->head);
	free(x->ob);
	free(x->tr);
	free(x);
}

/*
 * End x: its stream forgets it, its connection goes back to the pool when
 * reuse is set (a complete exchange on a keep-alive connection), else
 * closes (reset when reset is set), and x is freed.
 */
static void h2h1_end(struct worker *w, struct h2h1 *x, bool reuse, bool reset)
{
	if (x->st)
		x->st->h1 = NULL;
	x->st = NULL;
	if (x->pc) {
		if (reuse)
			pool_put(w, x->pc);
		else
			pool_close(w, x->pc, reset);
		x->pc = NULL;
	}
	h2h1_free(w, x);
}

static void h2h1_wake_down(struct worker *w, struct h2_stream *st)
{
	h2_stream_waits(w, st);
	if (st->down_deferred) {
		st->down_deferred = false;
		nghttp2_session_resume_data(st->d->s, st->id);
	}
	worker_conn_defer(w, st->d->c);
}

/*
 * x failed with err: its stream gets the proxy's answer (or a reset once
 * a head went out), recorded with status (the endpoint's failure when
 * tried), and x ends with a reset.
 */
static void h2h1_fail(struct worker *w, struct h2h1 *x, enum http_error err, bool tried,
		      const char *what)
{
	struct h2_stream *st = x->st;

	h2h1_end(w, x, false, true);
	if (!st)
		return;
	h2_done(w, st, tried, tried, st->rs_submitted ? 0 : (unsigned)http_error_status(err), what);
	st->d->ops->stream_error(w, st, err);
}

/*
 * x's endpoint failed (how: f) before a response head went to the
 * client: retried as an upstream stream's try is (h2_down_ops.retry: the
 * policy, the budget, a backoff, another endpoint), x ending with a
 * reset; else answered with err as h2h1_fail does.
 */
static void h2h1_fail_try(struct worker *w, struct h2h1 *x, enum http_error err,
			  enum retry_failure f, const char *what)
{
	struct h2_stream *st = x->st;

	if (st && !st->rs_submitted && st->d->ops->retry(w, st, f, 0)) {
		h2h1_end(w, x, false, true);
		return;
	}
	h2h1_fail(w, x, err, true, what);
}

static int h2h1_ob_put(struct h2h1 *x, const char *p, size_t n)
{
	if (x->ob_off == x->ob_len)
		x->ob_off = x->ob_len = 0;
	if (x->ob_len + n > x->ob_cap) {
		size_t cap = x->ob_len + n;
		char *d = realloc(x->ob, cap);

		if (!d)
			return -ENOMEM;
		x->ob = d;
		x->ob_cap = (uint32_t)cap;
	}
	memcpy(x->ob + x->ob_len, p, n);
	x->ob_len += (uint32_t)n;
	return 0;
}

/*
 * Write what the request has ready: framing, then the client's body
 * bytes, each given back to the client's stream window once written.
 * Returns 0 (done or EAGAIN) or -errno.
 */
static int h2h1_write(struct worker *w, struct h2h1 *x)
{
	struct h2_stream *st = x->st;
	struct conn_side *sd = &x->pc->side;
	struct h2_bytes *b = &st->to_up;
	int err;

	for (;;) {
		size_t avail = b->len - b->off;

		if (x->ob_off < x->ob_len) {
			err = conn_side_send(sd, x->ob, &x->ob_off, x->ob_len);
			if (err || x->ob_off < x->ob_len)
				return err;
			continue;
		}
		if (x->payload_left && avail) {
			uint32_t pos = 0, n = (uint32_t)(avail < x->payload_left ? avail
										  : x->payload_left);

			err = conn_side_send(sd, (const char *)b->data + b->off, &pos, n);
			if (pos) {
				b->off += pos;
				x->payload_left -= pos;
				x->body_sent = true;
				st->rq_framed += pos;
				h2_stream_active(w, st);
				/* A replay writes bytes the client's window got back on an earlier try. */
				if (st->rq_framed > st->rq_consumed) {
					nghttp2_session_consume(st->d->s, st->id,
								st->rq_framed - st->rq_consumed);
					st->rq_consumed = st->rq_framed;
					worker_conn_defer(w, st->d->c);
				}
			}
			if (err || pos < n)
				return err;
			if (!x->payload_left && x->chunked && h2h1_ob_put(x, "\r\n", 2))
				return -ENOMEM;
			continue;
		}
		if (avail && !x->payload_left) {
			if (x->chunked) {
				char line[24];
				int l = snprintf(line, sizeof(line), "%zx\r\n", avail);

				if (h2h1_ob_put(x, line, (size_t)l))
					return -ENOMEM;
			}
			x->payload_left = avail;
			continue;
		}
		if (!avail && st->rq_end && !x->rq_done && !x->payload_left) {
			x->rq_done = true;
			if (x->chunked) {
				size_t cap = 5 + st->rq_tr.bytes, len;
				char *t = malloc(cap);

				if (!t)
					return -ENOMEM;
				err = h2h1_format_trailers(st->rq_tr.nv, st->rq_tr.n, t, cap, &len);
				if (!err)
					err = h2h1_ob_put(x, t, len);
				free(t);
				if (err)
					return err;
			}
			continue;
		}
		return 0;
	}
}

/* Append n response body bytes to st's way to the client, compacted first. */
static int h2h1_down_put(struct h2_stream *st, const char *p, size_t n)
{
	struct h2_bytes *b = &st->to_down;

	if (b->off) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	return h2_bytes_put(b, (const uint8_t *)p, n);
}

/* An interim head to the client, as HEADERS; past H2_MAX_INTERIM dropped. */
static int h2h1_interim(struct worker *w, struct h2h1 *x, const char *base)
{
	struct h2_stream *st = x->st;
	struct h2_fields f = {0};
	int err;

	if (st->n_interim >= H2_MAX_INTERIM)
		return 0;
	err = h2h1_response_fields(base, &x->rh, &f);
	if (!err && h2_submit_fields(st->d->s, st->id, &f, false))
		err = -EIO;
	h2_fields_free(&f);
	if (!err) {
		st->n_interim++;
		worker_conn_defer(w, st->d->c);
	}
	return err;
}

/* The final response head parsed from base: st's, as HTTP/2 fields (copies). */
static int h2h1_final(struct h2h1 *x, const char *base)
{
	struct h2_stream *st = x->st;

	h2_fields_free(&st->rs);
	st->status = x->rh.status;
	return h2h1_response_fields(base, &x->rh, &st->rs);
}

/* The final head to the client, with its body to follow unless end. */
static void h2h1_submit_head(struct worker *w, struct h2h1 *x, bool end)
{
	struct h2_stream *st = x->st;
	nghttp2_data_provider dp = {.read_callback = st->d->ops->read};

	x->head_pending = false;
	st->rs_submitted = true;
	/* No retry once the client has a head: the body need not be kept. */
	st->replay_lost = true;
	st->to_up.keep = false;
	if (end)
		st->rs_end = true;
	/* Its fields are copies (NV_FLAG_NONE): nghttp2 copies them again at submit. */
	if (nghttp2_submit_response(st->d->s, st->id, st->rs.nv, st->rs.n, end ? NULL : &dp))
		nghttp2_submit_rst_stream(st->d->s, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
	worker_conn_defer(w, st->d->c);
}

/*
 * The response is complete: its outcome, the end of the client's stream,
 * and the connection back to the pool when it can carry another request.
 */
static void h2h1_complete(struct worker *w, struct h2h1 *x)
{
	struct h2_stream *st = x->st;
	struct conn_buf *b = &x->c->to_client;
	bool failed = st->status >= 500 || st->status == 429;
	bool reuse = x->rq_done && x->ob_off == x->ob_len && !x->payload_left &&
		     x->rh.keep_alive && x->body != HTTP1_BODY_UNTIL_CLOSE && b->head == b->tail &&
		     !x->pc->side.eof;

	st->rs_end = true;
	/*
	 * Answered before the whole request went: what the client sent and
	 * nobody will read goes back to its windows (the rest is dropped on
	 * arrival, h2.c).
	 */
	if (st->rq_bytes > st->rq_consumed) {
		nghttp2_session_consume(st->d->s, st->id, st->rq_bytes - st->rq_consumed);
		st->rq_consumed = st->rq_bytes;
	}
	st->to_up.keep = false;
	st->to_up.off = st->to_up.len = 0;
	h2_done(w, st, true, failed, (unsigned)st->status, failed ? "failure" : "ok");
	h2h1_wake_down(w, st);
	h2h1_end(w, x, reuse, !x->rq_done);
}

/* h2h1_process: the response head's status was retried elsewhere. */
#define H2H1_RETRIED 2

/*
 * Parse and forward what was read of the response. Returns 1 when the
 * response is complete, H2H1_RETRIED when its head went to a retry, 0 to
 * read more (or wait for the client's window), or a negative
 * http1_result for a malformed response.
 */
static int h2h1_process(struct worker *w, struct h2h1 *x)
{
	struct h2_stream *st = x->st;
	struct conn_buf *b = &x->c->to_client;
	size_t hold = (size_t)H2H1_HOLD_BUFFERS * w->cfg->buffer_bytes;
	int r;

	while (b->head < b->tail) {
		char *p = b->data + b->head;
		size_t avail = b->tail - b->head, consumed = 0;

		if (x->rs == H2H1_RS_HEAD) {
			r = http1_parse_head(&x->rp, p, avail, &x->rh, &consumed);
			if (r == HTTP1_NEED_MORE) {
				if (b->head) {
					/* The next head starts the buffer: all of it fits or 502. */
					memmove(b->data, p, avail);
					b->tail = (uint32_t)avail;
					b->head = 0;
				}
				return b->tail >= w->cfg->buffer_bytes ? HTTP1_E_HEAD_TOO_LARGE : 0;
			}
			if (r < 0)
				return r;
			b->head += (uint32_t)consumed;
			http1_parser_init(&x->rp, HTTP1_RESPONSE, NULL);
			if (x->rh.status == 101) {
				x->why = "a 101 that was not asked for";
				return HTTP1_E_BAD_REQUEST;
			}
			if (x->rh.status < 200) {
				if (++x->interim > HTTP1_MAX_INTERIM) {
					x->why = "more interim heads than HTTP1_MAX_INTERIM";
					return HTTP1_E_BAD_REQUEST;
				}
				if (h2h1_interim(w, x, p))
					return HTTP1_E_BAD_REQUEST;
				continue;
			}
			/*
			 * Both framings: which one the endpoint meant is the smuggler's
			 * question (the parser refuses the pair already; kept here so
			 * that this path never depends on it).
			 */
			if (x->rh.has_content_length && x->rh.has_transfer_encoding) {
				x->why = "both Content-Length and Transfer-Encoding";
				return HTTP1_E_BAD_REQUEST;
			}
			x->body = http1_response_body(x->head_method ? HTTP1_METHOD_HEAD
								     : HTTP1_METHOD_GET,
						      &x->rh);
			if (x->body == HTTP1_BODY_TUNNEL)
				return HTTP1_E_BAD_REQUEST;
			x->left = x->rh.content_length;
			if (x->body == HTTP1_BODY_CHUNKED)
				http1_chunked_init(&x->ch);
			if (h2h1_final(x, p))
				return HTTP1_E_BAD_REQUEST;
			/*
			 * A status the retry policy lists (503 by default): tried
			 * elsewhere before anything of it goes to the client, as an
			 * upstream stream's head is (h2_up_retry_head).
			 */
			if (st->status >= 400 &&
			    st->d->ops->retry(w, st, RETRY_FAIL_STATUS, st->status))
				return H2H1_RETRIED;
			x->rs = H2H1_RS_BODY;
			if (x->body == HTTP1_BODY_NONE ||
			    (x->body == HTTP1_BODY_LENGTH && !x->left)) {
				h2h1_submit_head(w, x, true);
				x->rs = H2H1_RS_DONE;
				return 1;
			}
			/*
			 * A chunked head waits for what already came of its body to
			 * decode: a bad chunk there is still a 502, not a reset. Sent
			 * at the first data, the end, or when the bytes run out, so
			 * never later than without the wait.
			 */
			if (x->body == HTTP1_BODY_CHUNKED)
				x->head_pending = true;
			else
				h2h1_submit_head(w, x, false);
			continue;
		}
		if (x->rs != H2H1_RS_BODY)
			return 1;
		/* The client's window: what it has not taken yet waits, and so does the endpoint. */
		if (st->to_down.len - st->to_down.off >= hold)
			return 0;
		if (x->body == HTTP1_BODY_LENGTH) {
			size_t n = avail < x->left ? avail : (size_t)x->left;

			if (n && h2h1_down_put(st, p, n))
				return HTTP1_E_BAD_REQUEST;
			b->head += (uint32_t)n;
			x->left -= n;
			if (n)
				h2h1_wake_down(w, st);
			if (!x->left) {
				x->rs = H2H1_RS_DONE;
				return 1;
			}
		} else if (x->body == HTTP1_BODY_UNTIL_CLOSE) {
			if (h2h1_down_put(st, p, avail))
				return HTTP1_E_BAD_REQUEST;
			b->head = b->tail;
			h2h1_wake_down(w, st);
		} else {
			struct http1_chunk_step step;

			r = http1_chunked_feed(&x->ch, p, avail, &step);
			if (r < 0)
				return r;
			if (x->head_pending && (step.payload || r == HTTP1_DONE))
				h2h1_submit_head(w, x, false);
			b->head += (uint32_t)step.len;
			if (step.payload) {
				if (h2h1_down_put(st, p, step.len))
					return HTTP1_E_BAD_REQUEST;
				x->tr_len = 0;
				h2h1_wake_down(w, st);
			} else {
				/* The decoder bounds framing between two data runs by these. */
				if (!x->tr && !(x->tr = malloc(H2H1_TRAILER_BYTES)))
					return HTTP1_E_BAD_REQUEST;
				if (x->tr_len + step.len > H2H1_TRAILER_BYTES)
					return HTTP1_E_HEAD_TOO_LARGE;
				memcpy(x->tr + x->tr_len, p, step.len);
				x->tr_len += (uint32_t)step.len;
			}
			if (r == HTTP1_DONE) {
				if (h2h1_chunked_trailers(x->tr, x->tr_len, &st->tr))
					return HTTP1_E_HEAD_TOO_LARGE;
				x->rs = H2H1_RS_DONE;
				return 1;
			}
		}
	}
	if (x->head_pending)
		h2h1_submit_head(w, x, false);
	return 0;
}

/*
 * The response is malformed (r, a parse result): the endpoint's failure,
 * a 502 to the client (or a reset once its head went out).
 */
static void h2h1_bad_response(struct worker *w, struct h2h1 *x, int r)
{
	const struct config_service *t = x->st->target;

	worker_warn_ratelimited(w,
				"proxy worker %d: %s/%s: malformed HTTP/1.1 response to an "
				"HTTP/2 request (%s, parse result %d); %s",
				w->id, t->namespace, t->name,
				x->why ? x->why : "its head or its chunked framing", r,
				x->st->rs_submitted ? "resetting the stream" : "answering 502");
	h2h1_fail(w, x, HTTP_ERR_BAD_RESPONSE, true, "a malformed response");
}

static int h2h1_connect(struct worker *w, struct h2h1 *x);

/*
 * The connection closed (EOF or an error) before the response was
 * complete. A pooled connection the endpoint closed before answering,
 * with no body byte sent yet, carries the request again on a fresh one
 * (pool.h: the server's idle close races the reuse); a response read to
 * the close ends there; anything else is the endpoint's reset.
 */
static void h2h1_closed(struct worker *w, struct h2h1 *x)
{
	if (x->rs == H2H1_RS_BODY && x->body == HTTP1_BODY_UNTIL_CLOSE) {
		h2h1_complete(w, x);
		return;
	}
	if (x->reused && !x->resent && !x->got_bytes && !x->body_sent && x->head) {
		pool_close(w, x->pc, true);
		x->pc = NULL;
		x->resent = true;
		x->ob_off = x->ob_len = 0;
		x->payload_left = 0;
		x->rq_done = false;
		WORKER_STAT_INC(w, http_retries);
		if (h2h1_ob_put(x, x->head, x->head_len) == 0 && h2h1_connect(w, x) >= 0)
			return;
		h2h1_fail_try(w, x, HTTP_ERR_CONNECT_FAILURE, RETRY_FAIL_CONNECT,
			      "connect failure");
		return;
	}
	h2h1_fail_try(w, x, HTTP_ERR_UPSTREAM_RESET, RETRY_FAIL_RESET_EARLY, "reset");
}

/* Write what the request has, read what the response has: one bounded turn of x. */
static void h2h1_pump(struct worker *w, struct h2h1 *x)
{
	struct conn_buf *b = &x->c->to_client;
	struct conn_side *sd;
	int err, r;

	if (!x->st || !x->connected)
		return;
	sd = &x->pc->side;
	err = h2h1_write(w, x);
	if (err == -ENOMEM) {
		h2h1_fail(w, x, HTTP_ERR_LOCAL_RESOURCES, false, "proxy resources");
		return;
	}
	if (err) {
		h2h1_closed(w, x);
		return;
	}
	for (int round = 0;; round++) {
		uint32_t got = 0;

		r = h2h1_process(w, x);
		if (r < 0) {
			h2h1_bad_response(w, x, r);
			return;
		}
		if (r == H2H1_RETRIED) {
			/* The rest of that response is not wanted: its connection goes. */
			h2h1_end(w, x, false, true);
			return;
		}
		if (r == 1) {
			h2h1_complete(w, x);
			return;
		}
		if (x->rs == H2H1_RS_BODY &&
		    x->st->to_down.len - x->st->to_down.off >=
			(size_t)H2H1_HOLD_BUFFERS * w->cfg->buffer_bytes)
			break; /* h2h1_wake, once the client took some */
		if (b->head == b->tail && b->data) {
			b->head = b->tail = 0;
			conn_buf_release_empty(w, b);
		}
		if (!sd->readable || sd->eof)
			break;
		if (round == CONN_PUMP_ROUNDS) {
			worker_conn_defer(w, x->c);
			break;
		}
		err = conn_side_read(w, sd, b, w->cfg->buffer_bytes, &got);
		if (err == -ENOMEM) {
			h2h1_fail(w, x, HTTP_ERR_LOCAL_RESOURCES, false, "proxy resources");
			return;
		}
		if (got)
			h2_stream_active(w, x->st);
		if (got && !x->got_bytes) {
			x->got_bytes = true;
			free(x->head);
			x->head = NULL;
		}
		if (err) {
			h2h1_closed(w, x);
			return;
		}
		if (!got && !sd->eof)
			break;
	}
	if (sd->eof && (!b->data || b->head == b->tail))
		h2h1_closed(w, x);
}

/* The connect of x completed or failed (events of its socket). */
static void h2h1_connected(struct worker *w, struct h2h1 *x, uint32_t events)
{
	int err;

	if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return;
	err = attempt_connect_result(w, x->pc->side.pl.fd, events);
	if (err) {
		worker_warn_ratelimited(w,
					"proxy worker %d: h2 to http1: connect to an endpoint "
					"failed: %s",
					w->id, strerror(err));
		if (sock_err_local(err))
			h2h1_fail(w, x, HTTP_ERR_LOCAL_RESOURCES, false, "connect failure");
		else
			h2h1_fail_try(w, x, HTTP_ERR_CONNECT_FAILURE, RETRY_FAIL_CONNECT,
				      "connect failure");
		return;
	}
	x->connected = true;
	x->pc->connected = true;
	x->pc->side.writable = true;
	x->pc->side.plain_tcp = worker_plain_tcp(w, x->pc->side.pl.fd);
	timer_heap_del(&w->timers, &x->c->timer);
	/* Latency samples are the endpoint's answers, not this connect. */
	if (x->st)
		x->st->bt.start_ns = timer_now_ns();
	h2h1_pump(w, x);
}

/*
 * A connection for x: an idle pooled one to its endpoint, else a new one
 * (its connect timer armed). Returns 0 or -errno (nothing started).
 */
static int h2h1_connect(struct worker *w, struct h2h1 *x)
{
	const char *tunnel_src;
	uint64_t t;
	int rc;

	x->connected = false;
	x->pc = NULL;
	if (!x->resent && attempt_pool_key(w, x->c, x->svc, x->ep, &tunnel_src)) {
		x->pc = pool_take(w, &x->addr, x->port_be, tunnel_src, x->c);
		if (x->pc) {
			x->st->up_tunneled = x->pc->tunnel_src != NULL;
			x->reused = true;
			x->connected = true;
			x->pc->requests++;
			worker_conn_defer(w, x->c);
			return 0;
		}
	}
	x->reused = false;
	rc = pool_connect_ep(w, x->svc, x->ep, x->port_be, x->c, &x->pc);
	if (rc < 0) {
		x->pc = NULL;
		return rc;
	}
	x->st->up_tunneled = x->pc->tunnel_src != NULL;
	x->pc->requests++;
	if (rc == 1) {
		x->connected = true;
		x->pc->connected = true;
		worker_conn_defer(w, x->c);
		return 0;
	}
	t = x->st->sv && x->st->sv->connect_timeout_ns
		? x->st->sv->connect_timeout_ns
		: (uint64_t)w->cfg->connect_timeout_ms * 1000000;
	if (timer_heap_add(&w->timers, &x->c->timer, timer_now_ns() + t)) {
		pool_close(w, x->pc, true);
		x->pc = NULL;
		return -ENOMEM;
	}
	return 0;
}

int h2h1_start(struct worker *w, struct h2_stream *st, const struct config_endpoint *ep,
	       uint16_t port_be)
{
	size_t cap = 64 + st->rq.bytes;
	struct h2h1 *x;
	char *head;
	int err;

	if (st->grpc) {
		worker_warn_ratelimited(w,
					"proxy worker %d: %s/%s: a gRPC call to endpoints declared "
					"HTTP/1.1 only (upstream_protocol: http1); answering "
					"UNAVAILABLE",
					w->id, st->target->namespace, st->target->name);
		h2_done(w, st, false, false, 503, "grpc over http1");
		st->d->ops->stream_error(w, st, HTTP_ERR_GRPC_OVER_HTTP1);
		return -1;
	}
	x = calloc(1, sizeof(*x));
	head = malloc(cap);
	if (!x || !head) {
		free(x);
		free(head);
		h2_done(w, st, false, false, 503, "proxy resources");
		st->d->ops->stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
		return -1;
	}
	err = h2h1_format_request(st->rq.nv, st->rq.n, !st->rq_end, head, cap, &x->head_len,
				  &x->chunked);
	if (err) {
		free(x);
		free(head);
		h2_done(w, st, false, false, err == -EOPNOTSUPP ? 501 : 400, "untranslatable");
		st->d->ops->stream_error(w, st,
					 err == -EOPNOTSUPP ? HTTP_ERR_NOT_IMPLEMENTED
							    : HTTP_ERR_BAD_REQUEST);
		return -1;
	}
	x->head = head;
	{
		const nghttp2_nv *m = h2_field(&st->rq, ":method");

		x->head_method = m && m->valuelen == 4 && !memcmp(m->value, "HEAD", 4);
	}
	x->c = worker_conn_get(w);
	if (!x->c || h2h1_ob_put(x, head, x->head_len)) {
		if (x->c)
			worker_conn_release(w, x->c);
		free(x->ob);
		free(x);
		free(head);
		h2_done(w, st, false, false, 503, "proxy resources");
		st->d->ops->stream_error(w, st, HTTP_ERR_LOCAL_RESOURCES);
		return -1;
	}
	conn_init(x->c);
	x->c->kind = CONN_KIND_H2;
	x->c->ops = &h2h1_ops;
	x->c->state = CONN_ESTABLISHED;
	x->c->h2 = x;
	x->c->accepted_ns = timer_now_ns();
	x->w = w;
	x->st = st;
	x->svc = st->target;
	x->ep = ep;
	x->addr = ep->addr;
	x->port_be = port_be;
	/* The caller's identity, for the tunnel and for the pool's match (pool_take). */
	x->c->src_ident = st->d->c->src_ident;
	http1_parser_init(&x->rp, HTTP1_RESPONSE, NULL);
	x->rh.headers = x->hdrs;
	x->rh.cap = HTTP1_MAX_HEADERS_DEFAULT;
	st->h1 = x;
	WORKER_STAT_INC(w, h2_to_h1_requests);
	err = h2h1_connect(w, x);
	if (err) {
		bool local = sock_err_local(-err);

		worker_warn_ratelimited(
		    w, "proxy worker %d: %s/%s: cannot connect to an HTTP/1.1 endpoint: %s", w->id,
		    st->target->namespace, st->target->name, strerror(-err));
		if (local)
			h2h1_fail(w, x, HTTP_ERR_LOCAL_RESOURCES, false, "connect failure");
		else
			h2h1_fail_try(w, x, HTTP_ERR_CONNECT_FAILURE, RETRY_FAIL_CONNECT,
				      "connect failure");
		return -1;
	}
	return 0;
}

void h2h1_unlink(struct h2_stream *st)
{
	struct h2h1 *x = st->h1;

	if (!x)
		return;
	/* Mid-exchange: the connection cannot carry another request. */
	h2h1_end(x->w, x, false, true);
}

void h2h1_wake(struct worker *w, struct h2_stream *st)
{
	if (st->h1)
		worker_conn_defer(w, st->h1->c);
}

/* ---- the kind of an exchange's connection ------------------------------------ */

static void h2h1_kind_start(struct worker *w, struct conn *c)
{
	(void)w, (void)c; /* created by h2h1_start, never accepted */
}

static void h2h1_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct h2h1 *x = s->conn->h2;

	if (!x->connected) {
		h2h1_connected(w, x, events);
		return;
	}
	if ((events & EPOLLERR) && sock_error(s->pl.fd)) {
		h2h1_closed(w, x);
		return;
	}
	h2h1_pump(w, x);
}

/* The connect timer: the endpoint did not accept in time. */
static void h2h1_timeout(struct worker *w, struct conn *c)
{
	struct h2h1 *x = c->h2;

	if (x->connected)
		return;
	worker_warn_ratelimited(w, "proxy worker %d: h2 to http1: connect to an endpoint timed out",
				w->id);
	h2h1_fail_try(w, x, HTTP_ERR_CONNECT_FAILURE, RETRY_FAIL_CONNECT, "connect timeout");
}

static void h2h1_resume(struct worker *w, struct conn *c)
{
	h2h1_pump(w, c->h2);
}

static void h2h1_abort(struct worker *w, struct conn *c)
{
	h2h1_fail(w, c->h2, HTTP_ERR_UPSTREAM_RESET, false, "stopping");
}

const struct conn_ops h2h1_ops = {
    .name = "h2-http1",
    .start = h2h1_kind_start,
    .event = h2h1_event,
    .timeout = h2h1_timeout,
    .resume = h2h1_resume,
    .abort = h2h1_abort,
};
