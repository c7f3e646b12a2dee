/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fixture of the HTTP proxy tests (http1_test.c, http1_retry_test.c,
 * http1_limits_test.c, one binary: unit test proxy_http1): a hand-built
 * config of one HTTP service, a scripted loopback backend (one thread per
 * connection running the test's script with the connection's index), the
 * proxy started on it, and client helpers. Test code only: failures are
 * Criterion assertions.
 */
#ifndef SHOAL_PROXY_HTTP1_FIXTURE_H
#define SHOAL_PROXY_HTTP1_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "proxy/proxy.h"

#define VIP "10.96.0.10"
#define SVC_PORT 80
/* Long enough for a slow sanitizer build, short enough to catch a hang. */
#define IO_TIMEOUT_MS 5000

#define GET(path) "GET " path " HTTP/1.1\r\nHost: web\r\n\r\n"
#define OK2 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* What the backend does on its index-th connection (fd), on that connection's thread. */
typedef void (*script_fn)(int fd, int index);

/* Reset by each test's setup. */
extern struct config cfg;	  /* one worker, one HTTP service (svc) */
extern struct config_service svc; /* default/web, VIP:SVC_PORT, endpoint ep */
extern struct config_endpoint ep; /* 127.0.0.1, the backend's port */
extern struct proxy *px;
extern atomic_int accepted; /* connections the backend accepted */

/* Two endpoints of svc, both mapped onto the backend (start_two_endpoints). */
extern struct config_endpoint two_eps[2]; /* 192.0.2.1 and .2 */
extern uint16_t two_eps_port;		  /* the backend's loopback port */
extern atomic_int rs_dials[2];		  /* N of 192.0.2.N of the first two connects */
extern atomic_int n_dials;
extern atomic_int rs_requests; /* requests the scripts that count them answered */
extern atomic_int rs_intact;   /* requests whose body arrived as sent */

void send_str(int fd, const char *s);
/* Read up to the end of a head ("\r\n\r\n") into buf; returns its length, 0 on EOF. */
size_t read_head(int fd, char *buf, size_t cap);
/* Read everything until EOF or the timeout; NUL-terminated. */
size_t read_all(int fd, char *buf, size_t cap);
/* Read until buf holds want (or EOF/timeout); NUL-terminated. */
bool read_until(int fd, char *buf, size_t cap, const char *want);

/* Start the backend, each connection running fn; ep and svc point at it. */
void backend_start(script_fn fn);
/* The datapath's stand-in: every connection was going to svc. */
int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		  struct shoal_orig_dst *orig);
void start_proxy(void);
/*
 * The last step of every test: tear down, then, under ASan, check that
 * the proxy freed everything.
 */
void end_test(void);

int client_connect(void);
struct proxy_stats stats_now(void);
/* One request on cfd; the response text in resp, read until it holds until. */
void one_request(int cfd, const char *req, char *resp, size_t cap, const char *until);
/* Keep-alive server: answers every request head with OK2. */
void script_keepalive(int fd, int index);

/* The proxy's endpoint seam: 192.0.2.N goes to the backend; N is noted. */
socklen_t two_eps_sockaddr(const struct shoal_addr *e, uint16_t port_be,
			   struct sockaddr_storage *out);
/* svc with the two endpoints two_eps onto one backend running fn; the proxy started. */
void start_two_endpoints(script_fn fn);
/* The same, with the proxy's other test seams (proxy_int.h) from seams. */
struct proxy_opts;
void start_two_endpoints_opts(script_fn fn, const struct proxy_opts *seams);

#endif
