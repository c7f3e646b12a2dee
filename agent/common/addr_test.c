// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/addr.h"

Test(addr, v4_is_mapped_and_round_trips)
{
	struct shoal_addr a, b;
	struct sockaddr_storage ss;
	char buf[ADDR_STR_MAX];
	uint16_t port;

	cr_assert_eq(addr_parse("10.96.0.10", &a), 0);
	cr_assert(addr_is_v4(&a));
	cr_assert_eq(a.ip6[2], htonl(0xffff));
	cr_assert_eq(addr_to_sockaddr(&a, htons(80), &ss), sizeof(struct sockaddr_in));
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&ss, &b, &port), 0);
	cr_assert(addr_equal(&a, &b));
	cr_assert_eq(ntohs(port), 80);
	cr_assert_str_eq(addr_format(&a, htons(80), buf, sizeof(buf)), "10.96.0.10:80");
}

Test(addr, v6_and_mapped_v6_sockaddr)
{
	struct shoal_addr a, m;
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
	char buf[ADDR_STR_MAX];

	cr_assert_eq(addr_parse("fd00:96::10", &a), 0);
	cr_assert_not(addr_is_v4(&a));
	cr_assert_str_eq(addr_format(&a, htons(443), buf, sizeof(buf)), "[fd00:96::10]:443");
	/* An AF_INET6 socket talking to ::ffff:10.0.0.1 must key like AF_INET. */
	inet_pton(AF_INET6, "::ffff:10.0.0.1", &sin6.sin6_addr);
	cr_assert_eq(addr_from_sockaddr((struct sockaddr *)&sin6, &m, NULL), 0);
	cr_assert(addr_is_v4(&m));
	cr_assert_str_eq(addr_ntop(&m, buf, sizeof(buf)), "10.0.0.1");
}

Test(addr, rejects_garbage)
{
	struct shoal_addr a;

	cr_assert_eq(addr_parse("10.0.0", &a), -EINVAL);
	cr_assert_eq(addr_parse("", &a), -EINVAL);
	cr_assert_eq(addr_parse("10.0.0.1:80", &a), -EINVAL);
	cr_assert_eq(addr_parse("zz::1", &a), -EINVAL);
}

Test(addr, hostport)
{
	struct shoal_addr a;
	uint16_t port;
	char buf[ADDR_STR_MAX];

	cr_assert_eq(addr_parse_hostport("127.0.0.1:15020", &a, &port), 0);
	cr_assert_str_eq(addr_format(&a, port, buf, sizeof(buf)), "127.0.0.1:15020");
	cr_assert_eq(addr_parse_hostport("[::1]:80", &a, &port), 0);
	cr_assert_str_eq(addr_format(&a, port, buf, sizeof(buf)), "[::1]:80");
	cr_assert_eq(addr_parse_hostport("::1:80", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("127.0.0.1", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("127.0.0.1:0", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("127.0.0.1:65536", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("127.0.0.1:-1", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("127.0.0.1:8x", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("[::1]80", &a, &port), -EINVAL);
	cr_assert_eq(addr_parse_hostport("[]:80", &a, &port), -EINVAL);
}

/* What no endpoint can be, by family, at the edges of each range. */
Test(addr, endpoint_refusal)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
	    {"0.0.0.0", "unspecified"},
	    {"0.1.2.3", "unspecified"},
	    {"127.0.0.1", "loopback"},
	    {"127.255.255.254", "loopback"},
	    {"169.254.169.254", "link-local"},
	    {"169.254.0.1", "link-local"},
	    {"224.0.0.1", "multicast"},
	    {"239.255.255.250", "multicast"},
	    {"255.255.255.255", "broadcast"},
	    {"::", "unspecified"},
	    {"::1", "loopback"},
	    {"fe80::1", "link-local"},
	    {"febf::1", "link-local"},
	    {"ff02::1", "multicast"},
	    {"::ffff:127.0.0.1", "loopback"},
	    {"10.77.1.3", NULL},
	    {"1.0.0.1", NULL},
	    {"126.255.255.255", NULL},
	    {"128.0.0.1", NULL},
	    {"169.253.255.255", NULL},
	    {"223.255.255.255", NULL},
	    {"240.0.0.1", NULL},
	    {"fd77:1::3", NULL},
	    {"fec0::1", NULL},
	    {"::2", NULL},
	    {"2001:db8::1", NULL},
	};
	struct shoal_addr a;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got;

		cr_assert_eq(addr_parse(cases[i].text, &a), 0, "%s", cases[i].text);
		got = addr_endpoint_refusal(&a);
		if (cases[i].why)
			cr_assert(got && !strcmp(got, cases[i].why), "%s: got %s, want %s",
				  cases[i].text, got ? got : "(accepted)", cases[i].why);
		else
			cr_assert_null(got, "%s: refused as %s", cases[i].text, got);
	}
}
