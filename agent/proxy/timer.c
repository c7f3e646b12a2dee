// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/timer.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <time.h>

/* First allocation; doubling from here keeps growth rare. */
#define TIMER_HEAP_MIN_CAP 64

uint64_t timer_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void timer_heap_init(struct timer_heap *h)
{
	h->slots = NULL;
	h->n = 0;
	h->cap = 0;
}

void timer_heap_fini(struct timer_heap *h)
{
	free(h->slots);
	timer_heap_init(h);
}

static void timer_heap_set(struct timer_heap *h, uint32_t i, struct timer_node *t)
{
	h->slots[i] = t;
	t->idx = i;
}

/* Restore the heap order upwards from slot i. */
static void timer_heap_sift_up(struct timer_heap *h, uint32_t i)
{
	struct timer_node *t = h->slots[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (h->slots[parent]->deadline_ns <= t->deadline_ns)
			break;
		timer_heap_set(h, i, h->slots[parent]);
		i = parent;
	}
	timer_heap_set(h, i, t);
}

/* Restore the heap order downwards from slot i. */
static void timer_heap_sift_down(struct timer_heap *h, uint32_t i)
{
	struct timer_node *t = h->slots[i];

	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n &&
		    h->slots[child + 1]->deadline_ns < h->slots[child]->deadline_ns)
			child++;
		if (t->deadline_ns <= h->slots[child]->deadline_ns)
			break;
		timer_heap_set(h, i, h->slots[child]);
		i = child;
	}
	timer_heap_set(h, i, t);
}

int timer_heap_add(struct timer_heap *h, struct timer_node *t, uint64_t deadline_ns)
{
	if (timer_node_queued(t)) {
		uint64_t old = t->deadline_ns;

		t->deadline_ns = deadline_ns;
		if (deadline_ns < old)
			timer_heap_sift_up(h, t->idx);
		else
			timer_heap_sift_down(h, t->idx);
		return 0;
	}
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : TIMER_HEAP_MIN_CAP;
		struct timer_node **slots;

		if (h->cap >= UINT32_MAX / 2)
			return -ENOMEM;
		slots = realloc(h->slots, cap * sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		h->slots = slots;
		h->cap = cap;
	}
	t->deadline_ns = deadline_ns;
	timer_heap_set(h, h->n++, t);
	timer_heap_sift_up(h, t->idx);
	return 0;
}

void timer_heap_del(struct timer_heap *h, struct timer_node *t)
{
	uint32_t i = t->idx;
	struct timer_node *last;

	if (!timer_node_queued(t))
		return;
	t->idx = TIMER_IDLE;
	last = h->slots[--h->n];
	if (i == h->n)
		return;
	/* The last node fills the hole; it may belong above or below it. */
	timer_heap_set(h, i, last);
	if (i > 0 && h->slots[(i - 1) / 2]->deadline_ns > last->deadline_ns)
		timer_heap_sift_up(h, i);
	else
		timer_heap_sift_down(h, i);
}

struct timer_node *timer_heap_pop_expired(struct timer_heap *h, uint64_t now_ns)
{
	struct timer_node *t = timer_heap_peek(h);

	if (!t || t->deadline_ns > now_ns)
		return NULL;
	timer_heap_del(h, t);
	return t;
}

int timer_heap_timeout_ms(const struct timer_heap *h, uint64_t now_ns)
{
	const struct timer_node *t = timer_heap_peek(h);
	uint64_t ms;

	if (!t)
		return -1;
	if (t->deadline_ns <= now_ns)
		return 0;
	ms = (t->deadline_ns - now_ns + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}
