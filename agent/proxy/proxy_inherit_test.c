// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The hand-over's half in the proxy (docs/upgrade.md): a second proxy
 * started on the first one's listeners (proxy_start_inherit's seam,
 * proxy_start_opts with inherit and hold), held until the first lets go.
 * Same binary and fixture as proxy_test.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "proxy/proxy_fixture.h"
#include "proxy/proxy_int.h"
#include "proxy/test_support.h"

static uint64_t accepted(struct proxy *p)
{
	struct proxy_stats s;

	proxy_stats(p, &s);
	return s.accepted;
}

/* A connection to the proxy port, answered with backend 'A''s id byte. */
static int served_client(void)
{
	int fd = client_connect();
	char id = 0;

	cr_assert_eq(read(fd, &id, 1), 1, "no answer through the proxy");
	cr_assert_eq(id, 'A');
	return fd;
}

/* Wait (2 s) until p has accepted n connections. */
static void wait_accepted(struct proxy *p, uint64_t n)
{
	for (int i = 0; i < 200 && accepted(p) < n; i++)
		usleep(10000);
	cr_assert_eq(accepted(p), n);
}

Test(proxy, a_second_proxy_takes_the_listeners_over_and_serves_once_the_first_lets_go)
{
	struct proxy_opts opts = {.endpoint_sockaddr = test_endpoint_sockaddr};
	static struct proxy_listen_fds lf, in;
	struct proxy *px2 = NULL;
	char err[256] = "";
	int c1, c2, c3, stray, ret;

	backends[0].concurrent = true; /* several clients open at once */
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	start_proxy();
	c1 = served_client();
	/* Two workers, IPv4 only: two listeners, both handed over (dup'ed, as SCM_RIGHTS does). */
	cr_assert_eq(proxy_listen_fds(px, &lf), 2);
	for (int i = 0; i < lf.n; i++)
		in.fd[i] = dup(lf.fd[i]);
	/* And one bound elsewhere, which the new proxy must not use. */
	stray = test_bound_socket(4);
	in.fd[2] = dup(stray);
	in.n = 3;
	opts.inherit = &in;
	opts.hold = true;
	ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, &dp, &opts, &px2, err,
			       sizeof(err));
	cr_assert_eq(ret, 0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(in.fd[i], -1, "inherited fd %d not consumed", i);

	/* Held: the first proxy still accepts everything. */
	c2 = served_client();
	wait_accepted(px, 2);
	cr_assert_eq(accepted(px2), 0);

	proxy_release_listeners(px);
	proxy_accept_start(px2);
	c3 = served_client();
	wait_accepted(px2, 1);
	cr_assert_eq(accepted(px), 2, "the first proxy accepted after letting go");
	/* The first one's connections are still its own, and open. */
	cr_assert_eq(stats_now().active, 2);
	cr_assert_eq(write(c1, "x", 1), 1);

	close(c1);
	close(c2);
	close(c3);
	close(stray);
	proxy_stop(px2);
	end_test();
}

Test(proxy, an_inherited_fd_that_is_not_a_listener_is_not_used)
{
	struct proxy_opts opts = {.endpoint_sockaddr = test_endpoint_sockaddr};
	static struct proxy_listen_fds in;
	int sv[2], c;

	/* A socket of the right kind of nothing: the proxy binds its own listeners. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	in.fd[0] = sv[0];
	in.n = 1;
	opts.inherit = &in;
	backends[0].concurrent = true; /* several clients open at once */
	set_loopback_endpoint(backend_start(BACKEND_ID, 'A'));
	{
		char err[256] = "";
		int ret = proxy_start_opts(&cfg, test_orig_dst, test_plain_tcp, &dp, &opts, &px,
					   err, sizeof(err));

		cr_assert_eq(ret, 0, "%s", err);
	}
	cr_assert_eq(in.fd[0], -1);
	/* Closed: the peer sees EOF. */
	{
		char b;

		cr_assert_eq(read(sv[1], &b, 1), 0);
	}
	c = served_client();
	close(c);
	close(sv[1]);
	end_test();
}
