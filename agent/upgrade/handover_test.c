// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shoal/abi.h"
#include "upgrade/handover.h"

static void pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

Test(handover, offer_carries_fds_that_work)
{
	int sv[2], p[2], fds[HANDOVER_FDS_PER_MSG];
	struct handover_msg m;
	uint32_t n;
	char err[256] = "", c = 0;

	pair(sv);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(handover_send(sv[0], HANDOVER_OFFER, p, 2, 1, 2, NULL), 0);
	cr_assert_eq(handover_recv(sv[1], &m, fds, HANDOVER_FDS_PER_MSG, &n, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(m.type, HANDOVER_OFFER);
	cr_assert_eq(n, 2);
	cr_assert_eq(m.last, 1);
	cr_assert_eq(m.total, 2);
	cr_assert_eq(m.pid, (uint32_t)getpid());
	/* The received ends are the same pipe: a byte written reaches the original. */
	cr_assert_eq(write(fds[1], "x", 1), 1);
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_eq(c, 'x');
	cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	for (int i = 0; i < 2; i++) {
		close(fds[i]);
		close(p[i]);
		close(sv[i]);
	}
}

Test(handover, a_version_mismatch_is_refused_and_named)
{
	struct handover_msg raw = {.magic = HANDOVER_MAGIC,
				   .version = HANDOVER_VERSION + 1,
				   .type = HANDOVER_HELLO,
				   .pid = 4242};
	struct handover_msg m;
	int sv[2], fds[4];
	uint32_t n = 99;
	char err[256] = "", want[64];

	pair(sv);
	cr_assert_eq(send(sv[0], &raw, sizeof(raw), 0), (ssize_t)sizeof(raw));
	cr_assert_eq(handover_recv(sv[1], &m, fds, 4, &n, err, sizeof(err)), -EPROTO);
	cr_assert_eq(n, 0);
	snprintf(want, sizeof(want), "version %u, this shoald version %u", HANDOVER_VERSION + 1,
		 HANDOVER_VERSION);
	cr_assert(strstr(err, want) && strstr(err, "pid 4242"), "%s", err);
	close(sv[0]);
	close(sv[1]);
}

Test(handover, a_packet_of_the_wrong_size_or_magic_is_refused)
{
	struct handover_msg raw = {.magic = 0x12345678, .version = HANDOVER_VERSION};
	struct handover_msg m;
	int sv[2], fds[4];
	uint32_t n;
	char err[256] = "";

	pair(sv);
	cr_assert_eq(send(sv[0], "short", 5, 0), 5);
	cr_assert_eq(handover_recv(sv[1], &m, fds, 4, &n, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "5-byte packet"), "%s", err);
	cr_assert_eq(send(sv[0], &raw, sizeof(raw), 0), (ssize_t)sizeof(raw));
	cr_assert_eq(handover_recv(sv[1], &m, fds, 4, &n, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "bad magic 0x12345678"), "%s", err);
	close(sv[0]);
	close(sv[1]);
}

Test(handover, fds_past_the_room_are_closed_and_refused)
{
	int sv[2], p[2], fds[1];
	struct handover_msg m;
	uint32_t n;
	char err[256] = "", b;

	pair(sv);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(handover_send(sv[0], HANDOVER_OFFER, p, 2, 1, 2, NULL), 0);
	cr_assert_eq(handover_recv(sv[1], &m, fds, 1, &n, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "OFFER says 2 fds"), "%s", err);
	cr_assert_eq(n, 0);
	/* Nothing received was kept open: with our write end closed, no copy of
	 * it is left, and the read end sees EOF instead of waiting. */
	close(p[1]);
	cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	cr_assert_eq(read(p[0], &b, 1), 0, "a received copy of the write end is still open");
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}

Test(handover, too_many_fds_to_send_and_a_closed_peer)
{
	int sv[2], fds[HANDOVER_FDS_PER_MSG + 1] = {0};
	struct handover_msg m;
	uint32_t n;
	char err[64];

	pair(sv);
	cr_assert_eq(
	    handover_send(sv[0], HANDOVER_OFFER, fds, HANDOVER_FDS_PER_MSG + 1, 1, 1, NULL),
	    -E2BIG);
	close(sv[0]);
	cr_assert_eq(handover_recv(sv[1], &m, fds, 1, &n, err, sizeof(err)), -EPIPE);
	close(sv[1]);
}

Test(handover, listen_replaces_a_stale_socket_but_not_a_live_one)
{
	char dir[] = "/tmp/handover-test-XXXXXX", path[128];
	int fd, fd2, c;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/handover.sock", dir);
	cr_assert_eq(handover_connect(path), -ENOENT);
	fd = handover_listen(path);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	/* A second shoald while this one listens: refused. */
	cr_assert_eq(handover_listen(path), -EADDRINUSE);
	c = handover_connect(path);
	cr_assert_geq(c, 0);
	close(c);
	/* The file of a dead listener: replaced. */
	handover_close(fd, NULL);
	cr_assert_eq(handover_connect(path), -ECONNREFUSED);
	fd2 = handover_listen(path);
	cr_assert_geq(fd2, 0, "%s", strerror(-fd2));
	handover_close(fd2, path);
	cr_assert_eq(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	rmdir(dir);
}

Test(handover, one_socket_per_pin_root)
{
	char a[128], b[128], c[128];

	handover_default_path(SHOAL_DEFAULT_PIN_ROOT, a, sizeof(a));
	cr_assert_str_eq(a, HANDOVER_DEFAULT_SOCKET);
	handover_default_path("/sys/fs/bpf/she2e-1", b, sizeof(b));
	handover_default_path("/sys/fs/bpf/she2e-2", c, sizeof(c));
	cr_assert(strncmp(b, "/run/shoal/handover-", 20) == 0, "%s", b);
	cr_assert_str_neq(b, c);
	handover_default_path("/sys/fs/bpf/she2e-1", c, sizeof(c));
	cr_assert_str_eq(b, c);
}
