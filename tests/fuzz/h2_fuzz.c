// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for the HTTP/2 frame path: the h2 kind's server
 * session (our nghttp2 callbacks, the proxy.http2 limits, the stream
 * state, the pooled upstream session behind it), driven with the
 * fuzzer's bytes as a client's input. The real proxy runs in this
 * process (proxy_start_opts, one worker) in front of an HTTP/2 endpoint
 * on loopback (h2_test_backend.c); each input is one client connection:
 * its bytes (after the client preface, which the harness adds unless
 * the input starts with "PRI "), then whatever the proxy answers is
 * read until it closes or goes quiet, then the connection is reset.
 * Every 64 inputs a valid request must still get its 200: a proxy that
 * stopped serving aborts, as do ASan and UBSan reports from the worker
 * thread. Built and run by scripts/fuzz-h2.sh (meson -Dfuzz=true).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "config/config.h"
#include "proxy/h2_test_backend.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
/* Quiet this long after the input and the connection is done with. */
#define QUIET_MS 20
/* The most one input may take (a request that never ends waits this long). */
#define INPUT_MS 200
/* A valid request's answer (the first waits for the upstream session's connect). */
#define SERVED_MS 3000

static struct config cfg;
static struct config_service svc;
static struct config_service *svc_list[1] = {&svc};
static struct config_endpoint ep;
/*
 * One route over every path, marked retryable with UNAVAILABLE among its
 * gRPC codes, so that inputs reach retries and the gRPC head hold: the
 * backend answers H2TB_GRPC_FLAKY with a head then trailers UNAVAILABLE,
 * H2TB_GRPC_RESET with a head then a reset (seed grpc-flaky, and the
 * dictionary's paths).
 */
static struct config_route route;
static struct h2tb backend;
static struct proxy *px;
static uint16_t proxy_port;
static unsigned long inputs;

static void die(const char *what)
{
	fprintf(stderr, "h2_fuzz: %s\n", what);
	abort();
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every connection was going to svc (the datapath's stand-in). */
static int fuzz_orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
			 struct shoal_orig_dst *orig)
{
	(void)ctx, (void)peer, (void)local;
	orig->ip = svc.vips[0];
	orig->port = htons(80);
	orig->svc_id = 0;
	return 0;
}

static bool fuzz_plain_tcp(void *ctx, int fd)
{
	(void)ctx, (void)fd;
	return true;
}

/* The one endpoint is the backend on loopback. */
static socklen_t fuzz_endpoint_sockaddr(const struct shoal_addr *a, uint16_t port_be,
					struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;

	(void)a, (void)port_be;
	memset(out, 0, sizeof(*out));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(backend.port);
	return sizeof(*sin);
}

static uint16_t free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    getsockname(fd, (struct sockaddr *)&sin, &len))
		die("no free loopback port");
	close(fd);
	return ntohs(sin.sin_port);
}

static int client_connect(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				  .sin_port = htons(proxy_port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
		die("cannot connect to the proxy");
	return fd;
}

/* Read what the proxy sends until it closes, goes quiet or the input's time is up. */
static void drain(int fd)
{
	uint64_t end = now_ms() + INPUT_MS;
	uint8_t buf[16384];

	while (now_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, QUIET_MS) <= 0 || recv(fd, buf, sizeof(buf), 0) <= 0)
			break;
	}
}

static void client_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return; /* the proxy closed: its answer to this input */
		p += k;
		n -= (size_t)k;
	}
}

/* Whether buf holds a HEADERS on stream 1 whose block starts ":status 200" (HPACK index 8). */
static bool got_200(const uint8_t *buf, size_t n)
{
	for (size_t off = 0; off + 9 <= n;) {
		size_t len = (size_t)buf[off] << 16 | (size_t)buf[off + 1] << 8 | buf[off + 2];

		if (buf[off + 3] == 0x01 && buf[off + 8] == 1 && off + 9 < n &&
		    buf[off + 9] == 0x88)
			return true;
		off += 9 + len;
	}
	return false;
}

/* A valid GET / must still be answered 200, within SERVED_MS. */
static void expect_served(void)
{
	/* SETTINGS; HEADERS 1 END_STREAM|END_HEADERS: GET, http, /, :authority web. */
	static const uint8_t req[] = PREFACE "\0\0\0\x04\0\0\0\0\0"
					     "\0\0\x08\x01\x05\0\0\0\x01\x82\x86\x84\x01\x03web";
	uint8_t got[8192];
	uint64_t end = now_ms() + SERVED_MS;
	int fd = client_connect();
	size_t n = 0;

	send_all(fd, req, sizeof(req) - 1);
	while (!got_200(got, n) && n < sizeof(got) && now_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t k;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		k = recv(fd, got + n, sizeof(got) - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	client_reset(fd);
	if (!got_200(got, n))
		die("the proxy no longer answers a valid request with 200");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct proxy_opts opts = {.endpoint_sockaddr = fuzz_endpoint_sockaddr};
	char err[256] = "";
	int rc;

	(void)argc, (void)argv;
	if (h2tb_start(&backend, 'a'))
		die("cannot start the HTTP/2 backend");
	addr_parse("127.0.0.1", &cfg.proxy_v4);
	proxy_port = free_port();
	cfg.proxy_port = proxy_port;
	cfg.socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg.workers = 1;
	cfg.connect_timeout_ms = 1000;
	cfg.connect_deadline_ms = 3000;
	cfg.buffer_bytes = 16384;
	cfg.max_connections = 1024;
	cfg.http_pool_idle_timeout_ms = 30000;
	/* Short, so that an input that leaves a request open cannot pile connections up. */
	cfg.idle_timeout_ms = 500;
	cfg.http2 = (struct config_http2){
	    .max_concurrent_streams = CONFIG_DEFAULT_H2_MAX_STREAMS,
	    .max_header_list_bytes = CONFIG_DEFAULT_H2_MAX_HEADER_LIST,
	    .hpack_table_bytes = CONFIG_DEFAULT_H2_HPACK_TABLE,
	    .stream_window_bytes = CONFIG_DEFAULT_H2_STREAM_WINDOW,
	    .session_window_bytes = CONFIG_DEFAULT_H2_SESSION_WINDOW,
	    .max_pending_acks = CONFIG_DEFAULT_H2_MAX_PENDING_ACKS,
	    .reset_burst = CONFIG_DEFAULT_H2_RESET_BURST,
	    .reset_rate = CONFIG_DEFAULT_H2_RESET_RATE,
	    .max_continuations = CONFIG_DEFAULT_H2_MAX_CONTINUATIONS,
	    .max_sent_resets = CONFIG_DEFAULT_H2_MAX_SENT_RESETS,
	    .stall_timeout_ms = 300,
	    .grpc_head_hold_ms = CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS,
	};
	strcpy(svc.name, "web");
	strcpy(svc.namespace, "default");
	addr_parse("10.96.0.10", &svc.vips[0]);
	svc.n_vips = 1;
	svc.ports[0].port = 80;
	svc.ports[0].target_port = 8080;
	svc.ports[0].protocol = CONFIG_PROTO_H2C;
	svc.n_ports = 1;
	addr_parse("192.0.2.1", &ep.addr);
	svc.endpoints = &ep;
	svc.n_endpoints = 1;
	route.path_match = CONFIG_PATH_ANY;
	route.n_backends = 1;
	route.backends[0].svc_index = 0;
	route.backends[0].weight = 1;
	route.backends[0].cum_weight = 1;
	route.total_weight = 1;
	route.retryable = true;
	route.retry_grpc_statuses[0] = 14;
	route.n_retry_grpc_statuses = 1;
	svc.routes = &route;
	svc.n_routes = 1;
	cfg.services = svc_list;
	cfg.n_services = 1;
	rc = proxy_start_opts(&cfg, fuzz_orig_dst, fuzz_plain_tcp, NULL, &opts, &px, err,
			      sizeof(err));
	if (rc) {
		fprintf(stderr, "h2_fuzz: proxy_start: %s (%s); SO_MARK needs root\n",
			strerror(-rc), err);
		abort();
	}
	expect_served();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = client_connect();

	if (size < 4 || memcmp(data, "PRI ", 4))
		send_all(fd, (const uint8_t *)PREFACE, sizeof(PREFACE) - 1);
	send_all(fd, data, size);
	drain(fd);
	client_reset(fd);
	if (++inputs % 64 == 0)
		expect_served();
	return 0;
}
