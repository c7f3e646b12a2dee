// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void addr_set_v4(struct shoal_addr *a, uint32_t ip4_be)
{
	a->ip6[0] = 0;
	a->ip6[1] = 0;
	a->ip6[2] = htonl(0x0000ffff);
	a->ip6[3] = ip4_be;
}

int addr_parse(const char *text, struct shoal_addr *out)
{
	struct in_addr v4;

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, &v4) == 1) {
		addr_set_v4(out, v4.s_addr);
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->ip6) == 1)
		return 0;
	return -EINVAL;
}

int addr_parse_hostport(const char *text, struct shoal_addr *out, uint16_t *port_be)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *start = text;
	size_t len;
	char *end;
	unsigned long port;

	if (*text == '[') {
		colon = strstr(text, "]:");
		start = text + 1;
		if (!colon)
			return -EINVAL;
		len = colon - start;
		colon++;
	} else {
		colon = strrchr(text, ':');
		if (!colon || memchr(text, ':', colon - text))
			return -EINVAL; /* an IPv6 address needs brackets */
		len = colon - start;
	}
	if (len == 0 || len >= sizeof(host))
		return -EINVAL;
	memcpy(host, start, len);
	host[len] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port == 0 || port > 65535 || colon[1] == '-' ||
	    colon[1] == '+')
		return -EINVAL;
	if (addr_parse(host, out))
		return -EINVAL;
	*port_be = htons((uint16_t)port);
	return 0;
}

bool addr_is_v4(const struct shoal_addr *a)
{
	return a->ip6[0] == 0 && a->ip6[1] == 0 && a->ip6[2] == htonl(0x0000ffff);
}

bool addr_is_zero(const struct shoal_addr *a)
{
	return (a->ip6[0] | a->ip6[1] | a->ip6[2] | a->ip6[3]) == 0;
}

bool addr_equal(const struct shoal_addr *a, const struct shoal_addr *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

const char *addr_endpoint_refusal(const struct shoal_addr *a)
{
	if (addr_is_v4(a)) {
		uint32_t v4 = ntohl(a->ip6[3]);

		if ((v4 >> 24) == 0)
			return "unspecified";
		if ((v4 >> 24) == 127)
			return "loopback";
		if ((v4 >> 16) == 0xa9fe)
			return "link-local";
		if ((v4 >> 28) == 0xe)
			return "multicast";
		if (v4 == 0xffffffffu)
			return "broadcast";
		return NULL;
	}
	if (addr_is_zero(a))
		return "unspecified";
	if (a->ip6[0] == 0 && a->ip6[1] == 0 && a->ip6[2] == 0 && a->ip6[3] == htonl(1))
		return "loopback";
	if ((ntohl(a->ip6[0]) & 0xffc00000u) == 0xfe800000u)
		return "link-local";
	if ((ntohl(a->ip6[0]) >> 24) == 0xff)
		return "multicast";
	return NULL;
}

socklen_t addr_to_sockaddr(const struct shoal_addr *a, uint16_t port_be,
			   struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (addr_is_v4(a)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_port = port_be;
		sin->sin_addr.s_addr = a->ip6[3];
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = port_be;
	memcpy(&sin6->sin6_addr, a->ip6, sizeof(sin6->sin6_addr));
	return sizeof(*sin6);
}

int addr_from_sockaddr(const struct sockaddr *sa, struct shoal_addr *out, uint16_t *port_be)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		addr_set_v4(out, sin->sin_addr.s_addr);
		if (port_be)
			*port_be = sin->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(out->ip6, &sin6->sin6_addr, sizeof(out->ip6));
		if (port_be)
			*port_be = sin6->sin6_port;
		return 0;
	}
	return -EAFNOSUPPORT;
}

const char *addr_ntop(const struct shoal_addr *a, char *buf, size_t len)
{
	if (addr_is_v4(a))
		inet_ntop(AF_INET, &a->ip6[3], buf, len);
	else
		inet_ntop(AF_INET6, a->ip6, buf, len);
	return buf;
}

const char *addr_format(const struct shoal_addr *a, uint16_t port_be, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	addr_ntop(a, ip, sizeof(ip));
	snprintf(buf, len, addr_is_v4(a) ? "%s:%u" : "[%s]:%u", ip, ntohs(port_be));
	return buf;
}
