/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Protocol detection for service ports that declare no protocol: peek at
 * the client's first bytes and carry the connection as HTTP/1 or as
 * opaque TCP. A client that says nothing (a server-speaks-first protocol
 * such as MySQL or SMTP) goes opaque after proxy.detect_timeout_ms, so it
 * never stalls the way Linkerd's 10 s detection does.
 *
 * The bytes read while detecting stay in the connection's client buffer
 * and are the first bytes forwarded, whichever way it goes.
 */
#ifndef SHOAL_PROXY_DETECT_H
#define SHOAL_PROXY_DETECT_H

#include <stddef.h>

struct worker;
struct conn;

enum detect_result {
	DETECT_NEED_MORE, /* a prefix of something we would recognise: read on */
	DETECT_HTTP1,	  /* an HTTP/1 request line: a method (A-Z, '-', '_'), then SP */
	DETECT_HTTP2,	  /* the HTTP/2 connection preface: carried by h2.c */
	DETECT_OPAQUE,	  /* anything else */
};

/*
 * Longest method token detection waits for. The registered methods are
 * at most 17 bytes (VERSION-CONTROL); a longer run of token bytes is not
 * a request line anyone sends, and waiting on it would only delay an
 * opaque protocol.
 */
#define DETECT_MAX_METHOD 24

/*
 * Classify the first len bytes a client sent. Pure; the bytes may be
 * any length (0 gives DETECT_NEED_MORE).
 */
enum detect_result detect_classify(const char *buf, size_t len);

/*
 * Start detecting on c: its client socket is watched, its service and
 * ports are set, nothing is connected upstream. Reads into c->to_upstream
 * and hands c on to http1_start, h2_ops.start or opaque_start. Consumes c (it may
 * be closed on return).
 */
void detect_start(struct worker *w, struct conn *c);

/* Detection as a kind of connection (conn.h): its operations. */
extern const struct conn_ops detect_ops;

/* c's detection deadline passed: go opaque with whatever was read. */
void detect_timeout(struct worker *w, struct conn *c);

#endif
