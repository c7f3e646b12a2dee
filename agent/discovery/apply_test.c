// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A discovery change applied to a running proxy (proxy_update): new
 * connections follow the new endpoints at once, a connection opened
 * before keeps its endpoint and keeps working (drain), and the old
 * config is freed when that connection ends (ASan builds check it).
 * Real sockets on 127.0.0.1; endpoints 192.0.2.N (never dialled) are
 * mapped onto loopback ports through the proxy's endpoint seam.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"

#define IO_TIMEOUT_MS 5000

/* One connection at a time: send the id byte, then echo until EOF. */
struct backend {
	int lfd;
	uint16_t port;
	char id;
	pthread_t thread;
};

static struct backend be[2];
static struct proxy *px;
static struct config *cfg1;
static uint16_t proxy_port;

static void *backend_main(void *arg)
{
	struct backend *b = arg;
	int fd;

	while ((fd = accept(b->lfd, NULL, NULL)) >= 0) {
		char buf[256];
		ssize_t n;

		if (write(fd, &b->id, 1) != 1) {
			close(fd);
			continue;
		}
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(fd, buf, (size_t)n) != n)
				break;
		close(fd);
	}
	return NULL;
}

static uint16_t listen_any(int *fd_out)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*fd_out = fd;
	return ntohs(sin.sin_port);
}

/* 192.0.2.N -> 127.0.0.1:be[N-1].port */
static socklen_t ep_sockaddr(const struct shoal_addr *ep, uint16_t port_be,
			     struct sockaddr_storage *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	uint32_t n = ntohl(ep->ip6[3]) & 0xff;

	(void)port_be;
	memset(out, 0, sizeof(*out));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(n >= 1 && n <= 2 ? be[n - 1].port : 1);
	return sizeof(*sin);
}

/* Every accepted connection was headed for 10.96.0.10:80. */
static int orig_dst(void *ctx, const struct sockaddr *peer, const struct sockaddr *local,
		    struct shoal_orig_dst *orig)
{
	(void)ctx, (void)peer, (void)local;
	memset(orig, 0, sizeof(*orig));
	addr_parse("10.96.0.10", &orig->ip);
	orig->port = htons(80);
	return 0;
}

static struct config *make_config(const char *endpoint, unsigned int buffer_bytes)
{
	char yaml[512], err[256];
	struct config *c;

	snprintf(yaml, sizeof(yaml),
		 "node: {address_v4: 127.0.0.1, proxy_port: %u}\n"
		 "proxy: {workers: 1, buffer_bytes: %u}\n"
		 "services:\n"
		 "  - name: web\n"
		 "    vips: [10.96.0.10]\n"
		 "    ports: [{port: 80, protocol: tcp}]\n"
		 "    endpoints: [{address: %s}]\n",
		 proxy_port, buffer_bytes, endpoint);
	cr_assert_eq(config_parse("test", yaml, strlen(yaml), &c, err, sizeof(err)), 0, "%s", err);
	return c;
}

static void setup(void)
{
	struct proxy_opts opts = {.endpoint_sockaddr = ep_sockaddr};
	char err[256];
	int fd;

	if (geteuid() != 0)
		cr_skip_test("needs root: the proxy sets SO_MARK on its sockets");
	for (int i = 0; i < 2; i++) {
		be[i].id = (char)('A' + i);
		be[i].port = listen_any(&be[i].lfd);
		cr_assert_eq(pthread_create(&be[i].thread, NULL, backend_main, &be[i]), 0);
	}
	proxy_port = listen_any(&fd); /* a free port for the proxy */
	close(fd);
	cfg1 = make_config("192.0.2.1", 16384);
	cr_assert_eq(proxy_start_opts(cfg1, orig_dst, test_plain_tcp, NULL, &opts, &px, err, sizeof(err)), 0, "%s",
		     err);
}

static void teardown(void)
{
	proxy_stop(px);
	config_free(cfg1);
	for (int i = 0; i < 2; i++) {
		if (!be[i].lfd)
			continue;
		shutdown(be[i].lfd, SHUT_RDWR);
		close(be[i].lfd);
		pthread_join(be[i].thread, NULL);
	}
}

TestSuite(apply, .init = setup, .fini = teardown, .timeout = 30);

static int dial(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(proxy_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* One byte from fd within IO_TIMEOUT_MS, or 0. */
static char read1(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char c = 0;

	if (poll(&pfd, 1, IO_TIMEOUT_MS) != 1 || read(fd, &c, 1) != 1)
		return 0;
	return c;
}

static void expect_echo(int fd, char c)
{
	cr_assert_eq(write(fd, &c, 1), 1);
	cr_expect_eq(read1(fd), c, "no echo of '%c'", c);
}

Test(apply, new_connections_follow_old_ones_drain)
{
	int c1, c2;

	c1 = dial();
	cr_assert_eq(read1(c1), 'A', "the first config's endpoint");
	expect_echo(c1, 'x');

	cr_assert_eq(proxy_update(px, make_config("192.0.2.2", 16384)), 0);
	usleep(100000); /* the worker swaps on its update eventfd */
	c2 = dial();
	cr_expect_eq(read1(c2), 'B', "a new connection goes to the new endpoint");
	expect_echo(c2, 'y');
	/* The first connection still runs on the config it was routed with. */
	expect_echo(c1, 'z');

	/* Two more updates while c1 lives: snapshots pile up and drain in order. */
	cr_assert_eq(proxy_update(px, make_config("192.0.2.1", 16384)), 0);
	cr_assert_eq(proxy_update(px, make_config("192.0.2.2", 16384)), 0);
	usleep(100000);
	expect_echo(c1, 'w');
	close(c1);
	close(c2);
}

Test(apply, a_change_the_proxy_cannot_take_is_refused)
{
	struct config *c = make_config("192.0.2.2", 32768);

	cr_expect_eq(proxy_update(px, c), -EINVAL);
	config_free(c); /* refused: still ours */
	c = make_config("192.0.2.2", 16384);
	cr_expect_eq(proxy_update(px, c), 0);
}
