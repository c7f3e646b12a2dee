/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Deadlines of one worker: a binary min-heap of timer nodes embedded in
 * their owners (connections, the worker itself). Single-threaded: each
 * worker owns its heap. The earliest deadline bounds epoll_wait.
 */
#ifndef SHOAL_PROXY_TIMER_H
#define SHOAL_PROXY_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* idx of a node that is not in any heap. */
#define TIMER_IDLE UINT32_MAX

struct timer_node {
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	uint32_t idx;	      /* slot in the heap, or TIMER_IDLE */
};

struct timer_heap {
	struct timer_node **slots;
	uint32_t n;
	uint32_t cap;
};

/* Now on CLOCK_MONOTONIC, in ns: the clock every deadline uses. */
uint64_t timer_now_ns(void);

/* An empty heap; no allocation until the first add. */
void timer_heap_init(struct timer_heap *h);
/* Free the slots. Nodes still queued are left as they are; owners own them. */
void timer_heap_fini(struct timer_heap *h);

/* A node that belongs to no heap yet. */
static inline void timer_node_init(struct timer_node *t)
{
	t->deadline_ns = 0;
	t->idx = TIMER_IDLE;
}

static inline bool timer_node_queued(const struct timer_node *t)
{
	return t->idx != TIMER_IDLE;
}

/*
 * Queue t to expire at deadline_ns, or move it there if it is queued
 * already. Returns 0, or -ENOMEM when the heap cannot grow (t is then
 * left unqueued).
 */
int timer_heap_add(struct timer_heap *h, struct timer_node *t, uint64_t deadline_ns);

/* Remove t; a no-op when it is not queued. */
void timer_heap_del(struct timer_heap *h, struct timer_node *t);

/* The node with the earliest deadline, or NULL when the heap is empty. */
static inline struct timer_node *timer_heap_peek(const struct timer_heap *h)
{
	return h->n ? h->slots[0] : NULL;
}

/*
 * Remove and return the earliest node if its deadline is <= now_ns,
 * else NULL. Call in a loop to drain everything that has expired.
 */
struct timer_node *timer_heap_pop_expired(struct timer_heap *h, uint64_t now_ns);

/*
 * Milliseconds until the earliest deadline, rounded up so a wakeup never
 * comes before it (which would spin); -1 when the heap is empty, as
 * epoll_wait wants it.
 */
int timer_heap_timeout_ms(const struct timer_heap *h, uint64_t now_ns);

#endif
