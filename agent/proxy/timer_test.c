// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>

#include "proxy/timer.h"

static struct timer_heap heap;

static void setup(void)
{
	timer_heap_init(&heap);
}

static void teardown(void)
{
	timer_heap_fini(&heap);
}

TestSuite(proxy_timer, .init = setup, .fini = teardown);

/* A cheap deterministic shuffle, so a failure reproduces. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(proxy_timer, pops_in_deadline_order)
{
	enum { N = 1000 };
	static struct timer_node nodes[N];
	uint64_t seed = 0x9e3779b97f4a7c15ull, last = 0;
	struct timer_node *t;
	int popped = 0;

	for (int i = 0; i < N; i++) {
		timer_node_init(&nodes[i]);
		cr_assert_eq(timer_heap_add(&heap, &nodes[i], 1 + next_rand(&seed) % 100000), 0);
	}
	while ((t = timer_heap_pop_expired(&heap, UINT64_MAX))) {
		cr_assert_geq(t->deadline_ns, last);
		cr_assert_not(timer_node_queued(t));
		last = t->deadline_ns;
		popped++;
	}
	cr_assert_eq(popped, N);
	cr_assert_null(timer_heap_peek(&heap));
}

Test(proxy_timer, pops_only_what_expired)
{
	struct timer_node a, b, c;

	timer_node_init(&a);
	timer_node_init(&b);
	timer_node_init(&c);
	timer_heap_add(&heap, &a, 300);
	timer_heap_add(&heap, &b, 100);
	timer_heap_add(&heap, &c, 200);
	cr_assert_eq(timer_heap_pop_expired(&heap, 150), &b);
	cr_assert_null(timer_heap_pop_expired(&heap, 150));
	cr_assert_eq(timer_heap_pop_expired(&heap, 200), &c);
	cr_assert_eq(timer_heap_peek(&heap), &a);
}

Test(proxy_timer, delete_and_move_keep_the_order)
{
	struct timer_node n[6];
	uint64_t deadlines[6] = {50, 10, 40, 20, 60, 30};
	uint64_t want[] = {5, 20, 30, 40, 60};
	int i = 0;
	struct timer_node *t;

	for (int k = 0; k < 6; k++) {
		timer_node_init(&n[k]);
		timer_heap_add(&heap, &n[k], deadlines[k]);
	}
	timer_heap_del(&heap, &n[1]); /* the root */
	timer_heap_del(&heap, &n[1]); /* twice is a no-op */
	cr_assert_not(timer_node_queued(&n[1]));
	timer_heap_add(&heap, &n[0], 5);  /* move up */
	timer_heap_del(&heap, &n[3]);	  /* from the middle */
	timer_heap_add(&heap, &n[3], 20); /* back */
	while ((t = timer_heap_pop_expired(&heap, UINT64_MAX)))
		cr_assert_eq(t->deadline_ns, want[i++]);
	cr_assert_eq(i, 5);
}

Test(proxy_timer, timeout_rounds_up)
{
	struct timer_node a;

	cr_assert_eq(timer_heap_timeout_ms(&heap, 0), -1);
	timer_node_init(&a);
	timer_heap_add(&heap, &a, 10 * 1000000ull + 1);
	cr_assert_eq(timer_heap_timeout_ms(&heap, 0), 11);
	cr_assert_eq(timer_heap_timeout_ms(&heap, 10 * 1000000ull), 1);
	cr_assert_eq(timer_heap_timeout_ms(&heap, 20 * 1000000ull), 0);
}
