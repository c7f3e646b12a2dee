/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Small helpers shared by shoal's programs: addresses, config, counters. */
#ifndef SHOAL_BPF_HELPERS_H
#define SHOAL_BPF_HELPERS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "maps.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Store an IPv4 address (network order) in v4-mapped form. */
static __always_inline void addr_from_v4(struct shoal_addr *a, __be32 ip4)
{
	a->ip6[0] = 0;
	a->ip6[1] = 0;
	a->ip6[2] = bpf_htonl(0x0000ffff);
	a->ip6[3] = ip4;
}

static __always_inline bool addr_is_v4mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline bool addr_is_zero(const struct shoal_addr *a)
{
	return (a->ip6[0] | a->ip6[1] | a->ip6[2] | a->ip6[3]) == 0;
}

static __always_inline bool addr_equal(const struct shoal_addr *a, const struct shoal_addr *b)
{
	return a->ip6[0] == b->ip6[0] && a->ip6[1] == b->ip6[1] &&
	       a->ip6[2] == b->ip6[2] && a->ip6[3] == b->ip6[3];
}

static __always_inline struct shoal_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&shoal_config, &zero);
}

/* The proxy is alive while its heartbeat is fresh (fail open otherwise). */
static __always_inline bool proxy_alive(const struct shoal_config *cfg)
{
	__u64 hb = cfg->heartbeat_boot_ns;

	return hb && bpf_ktime_get_boot_ns() - hb < cfg->failopen_after_ns;
}

static __always_inline bool netns_enrolled(__u64 cookie)
{
	struct shoal_enroll_key key = { .netns_cookie = cookie };

	return bpf_map_lookup_elem(&shoal_enrolled, &key) != NULL;
}

static __always_inline struct shoal_counters *counters_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&shoal_counters, &zero);
}

/* Bump one field of shoal_counters, e.g. COUNT(redirect_msgs, 1). */
#define COUNT(field, n)                                          \
	do {                                                     \
		struct shoal_counters *__c = counters_get();     \
		if (__c)                                         \
			__sync_fetch_and_add(&__c->field, (n));  \
	} while (0)

#endif /* SHOAL_BPF_HELPERS_H */
