// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/balance_rr.h"

#include <errno.h>
#include <stdlib.h>

int balance_rr_init(struct balance_rr *rr, uint32_t n_services)
{
	rr->n_services = n_services;
	rr->next = NULL;
	if (!n_services)
		return 0;
	rr->next = calloc(n_services, sizeof(*rr->next));
	return rr->next ? 0 : -ENOMEM;
}

void balance_rr_fini(struct balance_rr *rr)
{
	free(rr->next);
	rr->next = NULL;
	rr->n_services = 0;
}

uint32_t balance_rr_pick(struct balance_rr *rr, uint32_t svc_id, uint32_t n_endpoints)
{
	uint32_t ticket;

	if (svc_id >= rr->n_services || n_endpoints == 0)
		return 0;
	/*
	 * Relaxed is enough: only the counter's own sequence matters. The
	 * wrap at 2^32 skews one turn when n_endpoints does not divide it,
	 * which is noise.
	 */
	ticket = atomic_fetch_add_explicit(&rr->next[svc_id], 1, memory_order_relaxed);
	return ticket % n_endpoints;
}
