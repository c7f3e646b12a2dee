// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/addr.h"

int sock_set_mark(int fd, uint32_t mark)
{
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		return -errno;
	return 0;
}

int sock_set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

void sock_close_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	/* Best effort: if it fails the peer gets a FIN, still not a hang. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

int sock_error(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return errno;
	return soerr;
}

int sock_listen(const struct shoal_addr *addr, uint16_t port_be, uint32_t mark, char *err,
		size_t errlen)
{
	char name[ADDR_STR_MAX];
	struct sockaddr_storage ss;
	socklen_t sslen;
	int one = 1;
	int fd, ret;

	addr_format(addr, port_be, name, sizeof(name));
	sslen = addr_to_sockaddr(addr, port_be, &ss);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create a socket for %s: %s", name, strerror(-ret));
		return ret;
	}
	ret = sock_set_mark(fd, mark);
	if (ret) {
		snprintf(err, errlen,
			 "cannot set SO_MARK 0x%x on the proxy listener %s: %s (it needs "
			 "CAP_NET_ADMIN; without the mark the datapath would loop the proxy's "
			 "own connections)",
			 mark, name, strerror(-ret));
		goto err_close;
	}
	/* REUSEADDR: a restart must not wait out TIME_WAIT of old connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot set SO_REUSEADDR/SO_REUSEPORT on %s: %s", name,
			 strerror(-ret));
		goto err_close;
	}
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot set IPV6_V6ONLY on %s: %s", name, strerror(-ret));
		goto err_close;
	}
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", name, strerror(-ret));
		goto err_close;
	}
	if (listen(fd, SOCK_LISTEN_BACKLOG) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(-ret));
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return ret;
}
