// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/authz.h"
#include "proxy/detect.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/conn_io.h"
#include "proxy/h2.h"
#include "proxy/http1.h"
#include "proxy/opaque.h"
#include "proxy/sock.h"

/*
 * A byte of a method as detection accepts it: upper-case letters, '-' and
 * '_'. Every registered method (RFC 9110, WebDAV, M-SEARCH) fits, while
 * RFC 9110 would allow any token. Stricter is the safe side: an unusual
 * method carried as opaque TCP still works (without L7 features), but a
 * binary or text protocol taken for HTTP would get a 400 (an SSH client's
 * "SSH-2.0-OpenSSH_9.2p1 Debian" is a token and a space).
 */
static bool detect_is_method_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/* RFC 9113 3.4: every HTTP/2 connection over cleartext starts with this. */
static const char detect_h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum detect_result detect_classify(const char *buf, size_t len)
{
	size_t plen = sizeof(detect_h2_preface) - 1;
	size_t n = len < plen ? len : plen;
	size_t i;

	if (len == 0)
		return DETECT_NEED_MORE;
	/* "PRI " is also a method token and SP: the preface is checked first. */
	if (!memcmp(buf, detect_h2_preface, n))
		return n == plen ? DETECT_HTTP2 : DETECT_NEED_MORE;
	for (i = 0; i < len && i <= DETECT_MAX_METHOD; i++) {
		unsigned char ch = buf[i];

		if (ch == ' ')
			return i > 0 ? DETECT_HTTP1 : DETECT_OPAQUE;
		if (!detect_is_method_char(ch))
			return DETECT_OPAQUE;
	}
	return i > DETECT_MAX_METHOD ? DETECT_OPAQUE : DETECT_NEED_MORE;
}

static void detect_close(struct worker *w, struct conn *c)
{
	timer_heap_del(&w->timers, &c->timer);
	conn_side_close(w, &c->client, false);
	worker_conn_release(w, c);
}

/* Hand c on to its protocol; the bytes read so far stay in to_upstream. */
static void detect_done(struct worker *w, struct conn *c, enum detect_result r)
{
	timer_heap_del(&w->timers, &c->timer);
	if (r == DETECT_HTTP1) {
		WORKER_STAT_INC(w, detect_http);
		http1_start(w, c);
	} else if (r == DETECT_HTTP2) {
		WORKER_STAT_INC(w, detect_h2);
		h2_ops.start(w, c);
	} else {
		const char *reason;

		WORKER_STAT_INC(w, detect_opaque);
		/* Opaque: the connection's one policy decision (authz.h), reset when denied. */
		if (w->cfg->policy &&
		    !authz_allow(w, c, NULL, c->svc, c->svc_port, NULL, &reason)) {
			conn_side_close(w, &c->client, true);
			worker_conn_release(w, c);
			return;
		}
		opaque_start(w, c);
	}
}

/* Read what the client sent (until EAGAIN, EOF or a verdict) and decide. */
static void detect_run(struct worker *w, struct conn *c)
{
	struct conn_buf *b = &c->to_upstream;
	uint32_t cap = w->cfg->buffer_bytes;
	enum detect_result r = b->tail ? detect_classify(b->data, b->tail) : DETECT_NEED_MORE;

	if (!conn_buf_hold(w, b)) {
		pr_debug("proxy worker %d: no memory for a buffer; resetting the client", w->id);
		timer_heap_del(&w->timers, &c->timer);
		conn_side_close(w, &c->client, true);
		worker_conn_release(w, c);
		return;
	}
	if (r == DETECT_NEED_MORE) {
		uint32_t got;
		int err = conn_side_read(w, &c->client, b, cap, &got);

		if (err) {
			pr_debug("proxy worker %d: client failed during detection: %s", w->id,
				 strerror(-err));
			timer_heap_del(&w->timers, &c->timer);
			conn_side_close(w, &c->client, true);
			worker_conn_release(w, c);
			return;
		}
		if (got)
			r = detect_classify(b->data, b->tail);
	}
	if (r != DETECT_NEED_MORE) {
		detect_done(w, c, r);
		return;
	}
	if (c->client.eof) {
		/* Nothing at all: the client left; a few bytes: carry them as they are. */
		if (b->tail == 0)
			detect_close(w, c);
		else
			detect_done(w, c, DETECT_OPAQUE);
		return;
	}
	/* A buffer full of token bytes cannot happen (DETECT_MAX_METHOD); wait
	 * on, without a buffer while nothing came. */
	conn_buf_release_empty(w, b);
}

/* Only the client is watched while detecting. */
static void detect_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;

	if (events & EPOLLERR) {
		int err = sock_error(s->pl.fd);

		if (err) {
			pr_debug("proxy worker %d: client failed during detection: %s", w->id,
				 strerror(err));
			timer_heap_del(&w->timers, &c->timer);
			conn_side_close(w, &c->client, true);
			worker_conn_release(w, c);
			return;
		}
	}
	detect_run(w, c);
}

void detect_start(struct worker *w, struct conn *c)
{
	uint64_t deadline = timer_now_ns() + (uint64_t)w->cfg->detect_timeout_ms * 1000000;

	c->kind = CONN_KIND_DETECT;
	c->ops = &detect_ops;
	/* The connection is fresh from accept: data may be there already. */
	c->client.readable = true;
	c->client.writable = true;
	if (timer_heap_add(&w->timers, &c->timer, deadline) < 0) {
		/* No deadline, no safe wait: a server-speaks-first peer would hang. */
		detect_done(w, c, DETECT_OPAQUE);
		return;
	}
	detect_run(w, c);
}

void detect_timeout(struct worker *w, struct conn *c)
{
	if (c->kind != CONN_KIND_DETECT)
		return;
	pr_debug("proxy worker %d: %u bytes and no verdict after %u ms; carrying as opaque TCP",
		 w->id, c->to_upstream.tail, w->cfg->detect_timeout_ms);
	detect_done(w, c, DETECT_OPAQUE);
}

/* Detection as a kind of connection (conn.h): it hands c on to another. */
const struct conn_ops detect_ops = {
    .name = "detect",
    .start = detect_start,
    .event = detect_event,
    .timeout = detect_timeout,
    .abort = opaque_abort,
};
