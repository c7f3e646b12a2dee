/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket helpers of the proxy. Every socket it opens is non-blocking,
 * close-on-exec and marked, so the datapath leaves it alone.
 */
#ifndef SHOAL_PROXY_SOCK_H
#define SHOAL_PROXY_SOCK_H

#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shoal/abi.h"

/*
 * Listen backlog of each worker's listener. The kernel caps it at
 * net.core.somaxconn; asking for the most lets that sysctl decide.
 */
#define SOCK_LISTEN_BACKLOG 4096

/* Set SO_MARK. Returns 0 or -errno (-EPERM without CAP_NET_ADMIN). */
int sock_set_mark(int fd, uint32_t mark);

/* Disable Nagle: the proxy forwards what it reads at once. Returns 0 or -errno. */
int sock_set_nodelay(int fd);

/*
 * Close fd so that its peer sees a reset (SO_LINGER {1, 0}) rather than
 * an orderly FIN: for connections the proxy gives up on, so the
 * application does not mistake them for a complete exchange.
 */
void sock_close_reset(int fd);

/*
 * A marked, non-blocking SO_REUSEPORT listener on addr:port_be
 * (IPV6_V6ONLY for IPv6). Returns the fd, or -errno with a message in err
 * such as "cannot bind 10.0.1.1:15001: Address already in use".
 */
int sock_listen(const struct shoal_addr *addr, uint16_t port_be, uint32_t mark, char *err,
		size_t errlen);

/* The pending error of fd (SO_ERROR) as a positive errno, 0 for none. */
int sock_error(int fd);

/*
 * Is err (positive errno from socket(), setsockopt(), connect() or
 * epoll_ctl() on a new upstream socket) the proxy's own shortage rather
 * than the endpoint's fault? Out of fds (EMFILE, ENFILE), of memory
 * (ENOBUFS, ENOMEM), of epoll watches (ENOSPC) or of local ports
 * (EADDRNOTAVAIL). Such an attempt says nothing about the endpoint: it
 * must not feed its breaker or latency estimate, nor spend a retry.
 */
static inline bool sock_err_local(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == ENOSPC ||
	       err == EADDRNOTAVAIL;
}

#endif
