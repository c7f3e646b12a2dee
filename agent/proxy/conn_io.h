/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one implementation of what every kind of connection does with its
 * sockets and buffers (types in conn.h): read a side into a buffer and
 * send a buffer to a side, edge-triggered; hold a buffer only while bytes
 * wait in it; close a side; the idle timeout. Opaque TCP, detection,
 * HTTP/1 and the pooled upstream connections all go through it, so the
 * read loop (and its shortcut rule, conn_side_read) exists once.
 */
#ifndef SHOAL_PROXY_CONN_IO_H
#define SHOAL_PROXY_CONN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/conn.h"

/*
 * The core's part of a fresh connection from worker_conn_get: no sockets
 * yet, and both sides report to conn_on_event.
 */
void conn_init(struct conn *c);

/*
 * The epoll handler of a connection's sides (and of a pooled side its
 * owner uses): note the events, then hand them to the kind
 * (conn_ops.event) unless the connection is closed.
 */
void conn_on_event(struct worker *w, struct pollable *pl, uint32_t events);

/* "ns/name:port" of c's service, for messages; returns buf. */
const char *conn_svc_name(const struct conn *c, char *buf, size_t len);

/* s is zeroed: no socket yet, owned by c (NULL: none, a pooled side). */
void conn_side_init(struct conn_side *s, struct conn *c);

/*
 * b holds a buffer before a read into it: false when memory is short. And
 * b gives it back once empty, so that an idle connection holds none.
 */
bool conn_buf_hold(struct worker *w, struct conn_buf *b);
void conn_buf_release_empty(struct worker *w, struct conn_buf *b);

/*
 * Note the epoll events of s: which of its directions may make progress
 * again. The first thing a side's handler does, before any early return:
 * an edge not acted on now is not raised again, and a FIN flagged here
 * must still be read to (conn_side_read).
 */
void conn_side_note(struct conn_side *s, uint32_t events);

/*
 * Read from s into b, up to cap bytes in b, until EAGAIN, EOF (s->eof
 * set), a full buffer, or a short read that proves the socket's queue
 * empty. A full buffer leaves s->readable set, so that reading resumes
 * as soon as the other side drains it: that is the backpressure. b holds
 * its buffer first (nothing is held when s cannot be read). *got counts
 * the bytes read, also on error. Returns 0, -ENOMEM when no buffer could
 * be held, or -errno of the read.
 */
int conn_side_read(struct worker *w, struct conn_side *s, struct conn_buf *b, uint32_t cap,
		   uint32_t *got);

/*
 * Send data[*pos, end) to s while it takes bytes, advancing *pos; EAGAIN
 * clears s->writable. send() with MSG_NOSIGNAL: a peer that reset must
 * yield EPIPE, not a SIGPIPE that kills the daemon. Returns 0 or -errno.
 */
int conn_side_send(struct conn_side *s, const char *data, uint32_t *pos, uint32_t end);

/* Unwatch and close one side (RST when reset); harmless when closed. */
void conn_side_close(struct worker *w, struct conn_side *s, bool reset);

/*
 * The idle timeout of c in ns (0: none): its service's
 * resilience.timeouts.idle_ms, else proxy.idle_timeout_ms.
 */
uint64_t conn_idle_ns(const struct worker *w, const struct conn *c);

#endif
