/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Looking into network namespaces from the node: a netns's cookie (the
 * key of shoal_enrolled) and its interface addresses (to check that it is
 * the pod's before enrolling it), and the set of every netns alive on
 * the node (to find stale entries).
 *
 * Each call enters the namespace with setns() on the calling thread only
 * and returns to the thread's own before it returns; a thread that could
 * not return aborts (staying would misconfigure whatever it does next).
 */
#ifndef SHOAL_ENROLL_NETNS_H
#define SHOAL_ENROLL_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shoal/abi.h"

/* Addresses read from one netns: a pod has a few (lo, eth0, v4 and v6). */
#define ENROLL_NETNS_MAX_ADDRS 16
/*
 * Where bind-mounted namespaces live (ip netns; the CNI plugins of
 * containerd and CRI-O pin a sandbox's netns there before its first
 * process starts).
 */
#define ENROLL_NETNS_DIRS                                                                          \
	{                                                                                          \
		"/run/netns", "/var/run/netns"                                                     \
	}

struct enroll_netns_info {
	uint64_t cookie;
	int n_addrs;
	struct shoal_addr addrs[ENROLL_NETNS_MAX_ADDRS];
};

/*
 * The netns at path (/proc/PID/ns/net, /run/netns/NAME): its cookie and,
 * when info->n_addrs is wanted (addrs true), the addresses of its
 * interfaces. Returns 0, or -errno (quietly: processes come and go).
 */
int enroll_netns_probe(const char *path, bool addrs, struct enroll_netns_info *info);

/* The calling thread's own netns cookie (the node's, for shoald). */
int enroll_netns_self_cookie(uint64_t *cookie);

/* A set of cookies, grown on demand. */
struct enroll_cookie_set {
	uint64_t *v;
	size_t n, cap;
};

int enroll_cookie_set_add(struct enroll_cookie_set *s, uint64_t cookie);
bool enroll_cookie_set_has(const struct enroll_cookie_set *s, uint64_t cookie);
void enroll_cookie_set_clear(struct enroll_cookie_set *s);
void enroll_cookie_set_free(struct enroll_cookie_set *s);

/*
 * Every netns alive on the node, as far as this process sees: those of
 * the processes in /proc and those mounted in ENROLL_NETNS_DIRS. Returns
 * 0 (the set filled), or -errno when /proc cannot be read.
 */
int enroll_netns_live(struct enroll_cookie_set *out);

#endif
