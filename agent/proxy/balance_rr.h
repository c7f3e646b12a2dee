/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Round robin over a service's endpoints: the L4 proxy's balancer. One
 * counter per service, shared by every worker, so consecutive connections
 * of a service spread evenly whichever worker accepted them.
 */
#ifndef SHOAL_PROXY_BALANCE_RR_H
#define SHOAL_PROXY_BALANCE_RR_H

#include <stdatomic.h>
#include <stdint.h>

struct balance_rr {
	_Atomic uint32_t *next; /* per service id: the next ticket */
	uint32_t n_services;
};

/* Counters for service ids [0, n_services). Returns 0 or -ENOMEM. */
int balance_rr_init(struct balance_rr *rr, uint32_t n_services);
void balance_rr_fini(struct balance_rr *rr);

/*
 * The endpoint index in [0, n_endpoints) a new connection of svc_id should
 * try first; a caller failing over walks on from there. Thread-safe and
 * lock-free. n_endpoints must be > 0; an unknown svc_id gets 0.
 */
uint32_t balance_rr_pick(struct balance_rr *rr, uint32_t svc_id, uint32_t n_endpoints);

#endif
