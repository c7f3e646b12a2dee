// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/conn_io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/sock.h"
#include "proxy/worker.h"

void conn_side_init(struct conn_side *s, struct conn *c)
{
	s->pl.fd = -1;
	s->conn = c;
}

void conn_init(struct conn *c)
{
	conn_side_init(&c->client, c);
	conn_side_init(&c->upstream, c);
	c->client.pl.on_event = conn_on_event;
	c->upstream.pl.on_event = conn_on_event;
}

void conn_on_event(struct worker *w, struct pollable *pl, uint32_t events)
{
	struct conn_side *s = container_of(pl, struct conn_side, pl);
	struct conn *c = s->conn;

	conn_side_note(s, events);
	if (c->state != CONN_CLOSED)
		c->ops->event(w, s, events);
}

const char *conn_svc_name(const struct conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s:%u", c->svc->namespace, c->svc->name, c->svc_port);
	return buf;
}

bool conn_buf_hold(struct worker *w, struct conn_buf *b)
{
	if (!b->data)
		b->data = worker_buf_get(w);
	return b->data != NULL;
}

void conn_buf_release_empty(struct worker *w, struct conn_buf *b)
{
	if (!b->data || b->head != b->tail)
		return;
	worker_buf_put(w, b->data);
	b->data = NULL;
	b->head = b->tail = 0;
}

void conn_side_note(struct conn_side *s, uint32_t events)
{
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->rdhup = true;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->writable = true;
}

/*
 * After a read that asked for want bytes got n > 0: may the reader stop
 * until the next edge, without the read that would return EAGAIN? A short
 * read of a plain TCP socket means its queue is empty, and anything that
 * arrives later raises a new edge; a FIN that came with the data was
 * flagged by EPOLLRDHUP, so then read on to the 0. A socket on the
 * shortcut reads its redirected bytes first and its TCP queue after, so
 * a short read there can leave TCP bytes unread with no edge to come.
 * Saves one syscall in three on request/response traffic
 * (docs/benchmarks.md, finding 4).
 */
static bool conn_read_drained(const struct conn_side *s, ssize_t n, size_t want)
{
	return s->plain_tcp && !s->rdhup && (size_t)n < want;
}

int conn_side_read(struct worker *w, struct conn_side *s, struct conn_buf *b, uint32_t cap,
		   uint32_t *got)
{
	*got = 0;
	if (s->readable && !s->eof && b->tail < cap && !conn_buf_hold(w, b))
		return -ENOMEM;
	while (s->readable && !s->eof && b->tail < cap) {
		size_t want = cap - b->tail;
		ssize_t n = read(s->pl.fd, b->data + b->tail, want);

		if (n > 0) {
			b->tail += n;
			*got += n;
			if (conn_read_drained(s, n, want))
				s->readable = false;
		} else if (n == 0) {
			s->eof = true;
		} else if (errno == EAGAIN) {
			s->readable = false;
		} else if (errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

int conn_side_send(struct conn_side *s, const char *data, uint32_t *pos, uint32_t end)
{
	/* A plain copy: no splice, no zerocopy, which the sockmap shortcut
	 * on these sockets does not support. */
	while (s->writable && *pos < end) {
		ssize_t n = send(s->pl.fd, data + *pos, end - *pos, MSG_NOSIGNAL);

		if (n >= 0) {
			*pos += n;
		} else if (errno == EAGAIN) {
			s->writable = false;
		} else if (errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

void conn_side_close(struct worker *w, struct conn_side *s, bool reset)
{
	if (s->pl.fd < 0)
		return;
	worker_unwatch(w, &s->pl);
	if (reset)
		sock_close_reset(s->pl.fd);
	else
		close(s->pl.fd);
	s->pl.fd = -1;
}

uint64_t conn_idle_ns(const struct worker *w, const struct conn *c)
{
	if (c->sv && c->sv->idle_timeout_ns)
		return c->sv->idle_timeout_ns;
	return (uint64_t)w->cfg->idle_timeout_ms * 1000000;
}
