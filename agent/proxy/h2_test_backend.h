/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * An HTTP/2 endpoint on loopback for the tests that drive the h2 kind
 * (h2_test.c, tests/fuzz/h2_fuzz.c): a listener and one thread per
 * connection, each an nghttp2 server session that answers every request
 * once its head came: 200, "x-backend: <id>", the body "ok" (or, for
 * :path /big, H2TB_BIG_BYTES). For :path H2TB_GRPC_FLAKY, a gRPC answer:
 * backend 'a' sends a head and then trailers grpc-status 14 (UNAVAILABLE),
 * no message in between; the others the message "ok", grpc-status 0.
 * For :path H2TB_GRPC_RESET, every backend sends a head and then resets.
 * For H2TB_GRPC_503, H2TB_GRPC_503_BODY and H2TB_GRPC_400, backend 'a'
 * answers as an intermediary in front of a gRPC server would: that HTTP
 * status and no grpc-status (the head ends the stream, or H2TB_HTML
 * follows it); the others as H2TB_GRPC_FLAKY's.
 * It counts the proxy's own fields (x-shoal-*) the requests carried.
 * Test code only; no Criterion, so that the fuzzer can use it too.
 */
#ifndef SHOAL_PROXY_H2_TEST_BACKEND_H
#define SHOAL_PROXY_H2_TEST_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Connections one backend serves at once (a thread each). */
#define H2TB_MAX_CONNS 64
/* The body of /big: several stream windows, so flow control matters. */
#define H2TB_BIG_BYTES (1024 * 1024)
/* A gRPC method that fails on backend 'a' only, with a head before its trailers. */
#define H2TB_GRPC_FLAKY "/shoal.Echo/Flaky"
/* A gRPC method every backend answers with a head, then RST_STREAM INTERNAL_ERROR. */
#define H2TB_GRPC_RESET "/shoal.Echo/Reset"
/* gRPC methods backend 'a' answers with a bare HTTP status (no grpc-status). */
#define H2TB_GRPC_503 "/shoal.Echo/Http503"	     /* :status 503, END_STREAM on the head */
#define H2TB_GRPC_503_BODY "/shoal.Echo/Http503Body" /* :status 503, then H2TB_HTML */
#define H2TB_GRPC_400 "/shoal.Echo/Http400"	     /* :status 400, END_STREAM on the head */
/* The body of H2TB_GRPC_503_BODY's 503, as an overloaded web server sends one. */
#define H2TB_HTML "<html><body><h1>503 Service Unavailable</h1></body></html>\n"

/* Room for a value of x-shoal-peer-identity as the backend keeps it. */
#define H2TB_PEER_ID_MAX 640

struct h2tb {
	int lfd;
	uint16_t port;
	char id; /* the x-backend value */
	pthread_t thread;
	bool running;
	atomic_int requests; /* request heads answered */
	atomic_int conns;    /* connections accepted */
	/* Request fields named x-shoal-peer-identity, and the other x-shoal-* ones, seen. */
	atomic_int peer_ids;
	atomic_int shoal_fields;
	/* The last x-shoal-peer-identity's value (NUL-terminated, cut to fit). */
	char peer_id[H2TB_PEER_ID_MAX];
	/* Connections being served; a finished one's slot is reaped by the next accept. */
	struct h2tb_slot {
		pthread_t thread;
		int fd;
		bool used;	  /* the accept thread's */
		atomic_bool done; /* set by the connection's thread as it ends */
	} slots[H2TB_MAX_CONNS];
};

/* Listen on a fresh 127.0.0.1 port and serve; 0 or -errno. */
int h2tb_start(struct h2tb *b, char id);
/* Stop accepting, end every connection, join every thread. */
void h2tb_stop(struct h2tb *b);

#endif
