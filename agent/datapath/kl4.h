/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel-mode L4 (docs/bpf.md, "Kernel mode"): the agent's half. The
 * kernel picks endpoints and measures them; this keeps its two maps in
 * step with the config and runs the breaker over what it measured:
 *   shoal_kl4_sets   (svc_id, port, family) -> endpoints, with ejections
 *   shoal_kl4_costs  endpoint -> cost and counters (the kernel writes)
 * Main thread only.
 */
#ifndef SHOAL_DATAPATH_KL4_H
#define SHOAL_DATAPATH_KL4_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "shoal/abi.h"

struct kl4;

/*
 * An endpoint's cost as connect4/6 read it at now_ns (CLOCK_BOOTTIME):
 * est_us halved for every SHOAL_KL4_HALF_LIFE_NS since its last sample.
 */
uint64_t kl4_cost_now(const struct shoal_kl4_cost *c, uint64_t now_ns);

/*
 * The endpoints ejected at now_ns in any set of the pinned shoal_kl4_sets
 * (fd), the breaker state the agent published: one walk of the map, for
 * kl4_is_ejected to search. Free with kl4_ejected_free.
 */
struct kl4_ejected {
	struct shoal_kl4_cost_key *keys; /* sorted */
	size_t n;
};
void kl4_ejected_read(int sets_fd, uint64_t now_ns, struct kl4_ejected *out);
bool kl4_is_ejected(const struct kl4_ejected *e, const struct shoal_kl4_cost_key *key);
void kl4_ejected_free(struct kl4_ejected *e);

/*
 * Whether port of svc is served in kernel mode: it asks for it, and no
 * family has more endpoints than a set holds (SHOAL_KL4_MAX_ENDPOINTS);
 * a port that does not fit is proxied.
 */
bool kl4_port_is_kernel(const struct config_service *svc, const struct config_port *port);

/* State over the two maps (fds borrowed). 0, or -ENOMEM. */
int kl4_open(int sets_fd, int costs_fd, struct kl4 **out);
void kl4_close(struct kl4 *k);

/*
 * Make the maps hold exactly cfg's kernel-mode sets and a cost entry for
 * each of their endpoints: new endpoints get a zero cost, endpoints that
 * remain keep theirs (and their breaker state), endpoints gone lose both.
 * The first call after open also removes what an earlier agent left that
 * cfg no longer has. Returns 0 or -errno after logging.
 */
int kl4_publish(struct kl4 *k, const struct config *cfg);

/*
 * Read every endpoint's cost and run the breaker: an endpoint with
 * consecutive failed connects (the service's
 * resilience.consecutive_failures) is ejected for its backoff, which
 * doubles while it keeps failing and resets on a connect that
 * establishes; at most max_ejection_pct of a set is out at once. A
 * change is written to shoal_kl4_sets. now_ns is CLOCK_BOOTTIME.
 * Returns the number of endpoints ejected by this call.
 */
int kl4_tick(struct kl4 *k, uint64_t now_ns);

#endif
