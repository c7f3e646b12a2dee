/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Budgets the workers share (docs/proxy.md, "Budgets"): the memory of
 * their buffers, and the connections each client holds. Both are
 * checked on a worker's thread and updated atomically or under a short
 * lock, so that all workers together stay within one node-wide number.
 */
#ifndef SHOAL_PROXY_LIMITS_H
#define SHOAL_PROXY_LIMITS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/abi.h"

/*
 * Distinct client addresses the per-client table tracks at once. A node
 * runs at most a few hundred pods; 4096 leaves room for IPv4 and IPv6
 * addresses of each, and host-network clients. A client past it is
 * served untracked (the table fails open) and counted in the log.
 */
#define LIMITS_CLIENTS_MAX 4096
/* Hash buckets of that table (a power of two, as many as entries). */
#define LIMITS_CLIENT_BUCKETS 4096

/* The memory budget: bytes allocated by every worker together. */
struct limits_mem {
	atomic_uint_least64_t used;
	uint64_t budget; /* 0: none */
};

struct limits_client {
	struct shoal_addr addr;
	uint32_t conns; /* connections open from addr */
	int32_t next;	/* next entry in its bucket or on the free list; -1: none */
};

/* Open connections per client address, over all workers. */
struct limits_clients {
	pthread_mutex_t lock;
	uint32_t cap; /* connections per address; 0: none (nothing is tracked) */
	int32_t free; /* first free entry; -1: the table is full */
	int32_t buckets[LIMITS_CLIENT_BUCKETS];
	struct limits_client entries[LIMITS_CLIENTS_MAX];
};

/*
 * Charge bytes to m: false (nothing charged) when that would pass the
 * budget. Any thread.
 */
bool limits_mem_charge(struct limits_mem *m, size_t bytes);
/*
 * The same, allowed up to over bytes past the budget: for what a library
 * allocates mid-frame (nghttp2), which the proxy's own checks at the
 * budget already stopped admitting work for. Any thread.
 */
bool limits_mem_charge_over(struct limits_mem *m, size_t bytes, uint64_t over);
void limits_mem_uncharge(struct limits_mem *m, size_t bytes);

/* Whether m has room for bytes more right now (a hint: nothing charged). */
bool limits_mem_room(struct limits_mem *m, size_t bytes);

/* An empty table allowing cap connections per address (0: no cap). 0 or -errno. */
int limits_clients_init(struct limits_clients *t, uint32_t cap);
void limits_clients_fini(struct limits_clients *t);

/*
 * Count one more connection from addr. Returns 1 (counted: call
 * limits_client_leave later), 0 (not counted: no cap, or the table is
 * full and the connection is served untracked), or -EBUSY when addr
 * holds cap connections already. Any thread.
 */
int limits_client_enter(struct limits_clients *t, const struct shoal_addr *addr);

/* A connection counted by limits_client_enter closed. */
void limits_client_leave(struct limits_clients *t, const struct shoal_addr *addr);

/* Connections counted for addr now (tests, /debug). */
uint32_t limits_client_conns(struct limits_clients *t, const struct shoal_addr *addr);

#endif
