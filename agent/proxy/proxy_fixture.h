/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The fixture of the opaque proxy tests (proxy_test.c, proxy_attempt_test.c,
 * one binary: unit test proxy): a hand-built config of one service, an
 * orig_dst stand-in for the datapath, real backends on loopback ports.
 *
 * Config endpoints carry no port, so tests that need several distinct
 * endpoints name them 192.0.2.N (TEST-NET-1, never dialled) and map
 * them onto 127.0.0.1:ep_port[N] through the proxy's endpoint seam.
 * Test code only: failures are Criterion assertions.
 */
#ifndef SHOAL_PROXY_PROXY_FIXTURE_H
#define SHOAL_PROXY_PROXY_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "config/config.h"
#include "proxy/proxy.h"
#include "proxy/test_support.h"

#define MAX_BACKENDS 4
#define MAX_EPS 4
#define VIP "10.96.0.10"
#define SVC_PORT 80
/* Long enough for a slow sanitizer build, short enough to catch a hang. */
#define IO_TIMEOUT_MS 5000
/* Connections a concurrent backend serves at once, one thread each. */
#define MAX_BACKEND_CONNS 64

enum backend_mode {
	BACKEND_ECHO,	  /* echo until EOF, then close */
	BACKEND_PINGPONG, /* read "ping" up to EOF, answer "pong", close */
	BACKEND_ID,	  /* send the id byte, then wait for EOF */
	BACKEND_RESET,	  /* read one byte, then close with RST */
};

struct backend;

/* One connection of a concurrent backend, served by its own thread. */
struct backend_conn {
	struct backend *b;
	int fd;
	pthread_t thread;
};

struct backend {
	int lfd;
	uint16_t port;
	pthread_t thread;
	bool running;
	enum backend_mode mode;
	char id;
	atomic_int accepted;
	atomic_bool saw_eof_before_reply;
	bool concurrent; /* a thread per connection, else one at a time */
	struct backend_conn conns[MAX_BACKEND_CONNS];
	int n_conns;
};

struct test_dp {
	bool enoent;
	struct shoal_orig_dst orig;
	atomic_int calls;
};

/* Stats move on the workers' threads: poll until field reaches want. */
#define expect_stat(field, want)                                                                   \
	do {                                                                                       \
		uint64_t deadline_ = test_now_ms() + IO_TIMEOUT_MS;                                \
		while (stats_now().field != (want) && test_now_ms() < deadline_)                   \
			usleep(1000);                                                              \
		cr_expect_eq(stats_now().field, (want), #field " is %llu, not %llu",               \
			     (unsigned long long)stats_now().field, (unsigned long long)(want));   \
	} while (0)

/* Reset by each test's setup. */
extern struct config cfg;
extern struct config_service svc;
extern struct config_endpoint eps[MAX_EPS];
extern struct test_dp dp;
extern struct proxy *px;
extern struct backend backends[MAX_BACKENDS];
extern int n_backends;
extern int spare_fds[8];
extern int n_spare_fds;
extern atomic_int sockets_to_fail; /* upstream socket() calls still to fail */
extern atomic_int fail_errno;
extern uint16_t ep_port[MAX_EPS + 1]; /* 192.0.2.N -> 127.0.0.1:ep_port[N] */
/* The caller ("<ns>/<sa>") of every client connection accepted; NULL: unknown. */
extern const char *test_src_ident;

/* A port nobody listens on; it stays bound until teardown so nothing else
 * takes it, and every connect to it is refused. */
uint16_t refused_port(void);

/*
 * A port that never completes a handshake: a listener that never accepts,
 * its one-slot backlog already taken, so the kernel drops further SYNs.
 */
uint16_t blackhole_port(void);

ssize_t read_full(int fd, void *buf, size_t len);

void write_full(int fd, const void *buf, size_t len);

/* Start a backend thread; returns its port. */
uint16_t backend_start(enum backend_mode mode, char id);

int test_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		  struct shoal_orig_dst *orig);

socklen_t test_endpoint_sockaddr(const struct shoal_addr *ep, uint16_t port_be,
				 struct sockaddr_storage *out);

/* Endpoints 192.0.2.1..n, mapped onto the given loopback ports. */
void set_mapped_endpoints(const uint16_t *ports, int n);

/* One endpoint, 127.0.0.1:port, dialled for real (no seam). */
void set_loopback_endpoint(uint16_t port);

/*
 * The last step of every test: tear down, then, under ASan, check that
 * the proxy freed everything. Criterion's test processes end without
 * LeakSanitizer's exit-time check, and a failure in .fini is not
 * reported, so the check runs here, in the test body.
 */
void end_test(void);

/* The open_socket seam: fails while sockets_to_fail lasts. */
int failing_socket(int domain, int type, int protocol);

void start_proxy(void);

/* A blocking client connected to the proxy, with I/O timeouts. */
int client_connect(void);

struct proxy_stats stats_now(void);

/* The client must see a reset: read fails with ECONNRESET. */
void expect_reset(int fd);

#endif
