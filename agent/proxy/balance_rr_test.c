// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <pthread.h>

#include "proxy/balance_rr.h"

static struct balance_rr rr;

static void setup(void)
{
	cr_assert_eq(balance_rr_init(&rr, 4), 0);
}

static void teardown(void)
{
	balance_rr_fini(&rr);
}

TestSuite(proxy_balance_rr, .init = setup, .fini = teardown);

Test(proxy_balance_rr, cycles_per_service)
{
	for (uint32_t i = 0; i < 9; i++)
		cr_assert_eq(balance_rr_pick(&rr, 1, 3), i % 3);
	/* Another service has its own turn. */
	cr_assert_eq(balance_rr_pick(&rr, 2, 3), 0);
	cr_assert_eq(balance_rr_pick(&rr, 2, 3), 1);
	/* Unknown ids and empty services do not crash. */
	cr_assert_eq(balance_rr_pick(&rr, 99, 3), 0);
	cr_assert_eq(balance_rr_pick(&rr, 0, 0), 0);
}

static void *picker(void *arg)
{
	uint32_t *counts = arg;

	for (int i = 0; i < 10000; i++)
		counts[balance_rr_pick(&rr, 0, 4)]++;
	return NULL;
}

Test(proxy_balance_rr, even_across_threads)
{
	uint32_t counts[4][4] = {0};
	pthread_t th[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, picker, counts[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int e = 0; e < 4; e++) {
		uint32_t sum = 0;

		for (int i = 0; i < 4; i++)
			sum += counts[i][e];
		cr_assert_eq(sum, 10000, "endpoint %d got %u of 40000", e, sum);
	}
}
