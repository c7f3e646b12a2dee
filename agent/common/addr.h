/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Addresses in the ABI's form (struct shoal_addr: IPv6, or IPv4 v4-mapped)
 * and conversions to and from sockaddr and text.
 */
#ifndef SHOAL_ADDR_H
#define SHOAL_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shoal/abi.h"

/* Longest text addr_format writes: "[v6]:port" plus NUL. */
#define ADDR_STR_MAX (INET6_ADDRSTRLEN + 8)

/* Parse "10.0.0.1" or "fd00::1" (no port). Returns 0 or -EINVAL. */
int addr_parse(const char *text, struct shoal_addr *out);
/* Parse "10.0.0.1:80" or "[fd00::1]:80" (port 1..65535). 0 or -EINVAL. */
int addr_parse_hostport(const char *text, struct shoal_addr *out, uint16_t *port_be);
bool addr_is_v4(const struct shoal_addr *a);
bool addr_is_zero(const struct shoal_addr *a);
bool addr_equal(const struct shoal_addr *a, const struct shoal_addr *b);

/*
 * Why a can never be a service endpoint, or NULL when it can be one:
 * "unspecified" (0.0.0.0/8, ::), "loopback" (127.0.0.0/8, ::1),
 * "link-local" (169.254.0.0/16, fe80::/10), "multicast" (224.0.0.0/4,
 * ff00::/8) or "broadcast" (255.255.255.255). The proxy dials endpoints
 * from the node's own network namespace, so such an address reaches the
 * node itself (a host service, the cloud metadata server) or nothing.
 * The Kubernetes API refuses most of them in Endpoints but not in
 * EndpointSlices, which any user who may write one can fill.
 */
const char *addr_endpoint_refusal(const struct shoal_addr *a);

/*
 * Build a sockaddr for (a, port_be): AF_INET for a v4-mapped address,
 * AF_INET6 otherwise. Returns the length to pass to connect()/bind().
 */
socklen_t addr_to_sockaddr(const struct shoal_addr *a, uint16_t port_be,
			   struct sockaddr_storage *out);
/* The reverse; a v4-mapped AF_INET6 sockaddr becomes the same as AF_INET.
 * Returns 0 or -EAFNOSUPPORT. */
int addr_from_sockaddr(const struct sockaddr *sa, struct shoal_addr *out, uint16_t *port_be);

/* "10.0.0.1" / "fd00::1"; buf needs INET6_ADDRSTRLEN. Returns buf. */
const char *addr_ntop(const struct shoal_addr *a, char *buf, size_t len);
/* "10.0.0.1:80" / "[fd00::1]:80"; buf needs ADDR_STR_MAX. Returns buf. */
const char *addr_format(const struct shoal_addr *a, uint16_t port_be, char *buf, size_t len);

#endif
