// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Kernel-mode L4, the agent's half (kl4.h). The agent keeps its own copy
 * of what it wants in the maps (sets sorted by key, endpoints sorted by
 * key), so that a config change or a breaker event writes only the
 * entries that differ.
 */
#include "datapath/kl4.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/log.h"
#include "datapath/env.h"

/* One set the maps should hold. */
struct kl4_want {
	struct shoal_kl4_set_key key;
	struct shoal_kl4_set set; /* ejected_until_boot_ns as last written */
	uint32_t cap;		  /* endpoints of the set that may be ejected at once */
	bool written;		  /* the map holds set as it is here */
};

/* One endpoint of any set, and its breaker. */
struct kl4_ep {
	struct shoal_kl4_cost_key key;
	/* The breaker's knobs: the first kernel-mode service listing it. */
	uint32_t threshold; /* consecutive failures that eject; 0: never */
	uint64_t backoff_min_ns, backoff_max_ns;
	/* The breaker. */
	uint64_t ejected_until_ns; /* 0: admitted */
	uint64_t backoff_ns;	   /* the last ejection's; 0: none since a success */
	uint64_t failures_seen;	   /* cost.failures when it was last ejected */
	uint64_t established_seen; /* cost.established at the last tick */
};

struct kl4 {
	int sets_fd, costs_fd;
	struct kl4_want *sets;
	size_t n_sets;
	struct kl4_ep *eps;
	size_t n_eps;
	bool published; /* a first publish has cleaned the maps */
};

static int set_key_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct kl4_want *)a)->key, &((const struct kl4_want *)b)->key,
		      sizeof(struct shoal_kl4_set_key));
}

/*
 * bsearch, but an empty array (base may then be NULL, which bsearch may
 * not be given) finds nothing.
 */
static void *find_sorted(const void *key, const void *base, size_t n, size_t size,
			 int (*cmp)(const void *, const void *))
{
	return n ? bsearch(key, base, n, size, cmp) : NULL;
}

static int ep_key_cmp(const void *a, const void *b)
{
	return memcmp(&((const struct kl4_ep *)a)->key, &((const struct kl4_ep *)b)->key,
		      sizeof(struct shoal_kl4_cost_key));
}

static struct kl4_ep *ep_find(struct kl4_ep *eps, size_t n, const struct shoal_kl4_cost_key *key)
{
	struct kl4_ep probe = { .key = *key };

	return find_sorted(&probe, eps, n, sizeof(*eps), ep_key_cmp);
}

static bool ep_family_is(const struct config_endpoint *ep, int family)
{
	return addr_is_v4(&ep->addr) == (family == 4);
}

uint64_t kl4_cost_now(const struct shoal_kl4_cost *c, uint64_t now_ns)
{
	uint64_t age = now_ns > c->updated_boot_ns ? now_ns - c->updated_boot_ns : 0;
	uint64_t halvings = age / SHOAL_KL4_HALF_LIFE_NS;

	return halvings >= 63 ? 0 : c->est_us >> halvings;
}

static int cost_key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct shoal_kl4_cost_key));
}

void kl4_ejected_read(int sets_fd, uint64_t now_ns, struct kl4_ejected *out)
{
	struct shoal_kl4_set *set = malloc(sizeof(*set));
	struct shoal_kl4_set_key k, next;
	bool walking = false;
	size_t cap = 0;

	out->keys = NULL;
	out->n = 0;
	if (!set)
		return;
	while (bpf_map_get_next_key(sets_fd, walking ? &k : NULL, &next) == 0) {
		k = next;
		walking = true;
		if (bpf_map_lookup_elem(sets_fd, &next, set) < 0)
			continue;
		for (uint32_t i = 0; i < set->n && i < SHOAL_KL4_MAX_ENDPOINTS; i++) {
			const struct shoal_kl4_endpoint *e = &set->endpoints[i];

			if (e->ejected_until_boot_ns <= now_ns)
				continue;
			if (out->n == cap) {
				struct shoal_kl4_cost_key *grown;

				cap = cap ? 2 * cap : 16;
				grown = realloc(out->keys, cap * sizeof(*grown));
				if (!grown)
					goto done;
				out->keys = grown;
			}
			memset(&out->keys[out->n], 0, sizeof(out->keys[0]));
			out->keys[out->n].ip = e->ip;
			out->keys[out->n].port = e->port;
			out->n++;
		}
	}
done:
	if (out->n)
		qsort(out->keys, out->n, sizeof(*out->keys), cost_key_cmp);
	free(set);
}

bool kl4_is_ejected(const struct kl4_ejected *e, const struct shoal_kl4_cost_key *key)
{
	return e->n && bsearch(key, e->keys, e->n, sizeof(*e->keys), cost_key_cmp);
}

void kl4_ejected_free(struct kl4_ejected *e)
{
	free(e->keys);
	e->keys = NULL;
	e->n = 0;
}

bool kl4_port_is_kernel(const struct config_service *svc, const struct config_port *port)
{
	int n4 = 0, n6 = 0;

	if (port->mode != CONFIG_MODE_KERNEL)
		return false;
	for (int e = 0; e < svc->n_endpoints; e++) {
		if (ep_family_is(&svc->endpoints[e], 4))
			n4++;
		else
			n6++;
	}
	return n4 <= SHOAL_KL4_MAX_ENDPOINTS && n6 <= SHOAL_KL4_MAX_ENDPOINTS;
}

int kl4_open(int sets_fd, int costs_fd, struct kl4 **out)
{
	struct kl4 *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->sets_fd = sets_fd;
	k->costs_fd = costs_fd;
	*out = k;
	return 0;
}

void kl4_close(struct kl4 *k)
{
	if (!k)
		return;
	free(k->sets);
	free(k->eps);
	free(k);
}

/* cfg's sets, sorted, without ejections; *n_out of them. 0 or -ENOMEM. */
static int build_sets(const struct config *cfg, struct kl4_want **out, size_t *n_out)
{
	struct kl4_want *w = NULL;
	size_t n = 0, cap = 0;

	for (int s = 0; s < cfg->n_services; s++) {
		const struct config_service *svc = cfg->services[s];

		if (!svc->n_vips)
			continue;
		for (int p = 0; p < svc->n_ports; p++) {
			const struct config_port *port = &svc->ports[p];

			if (!kl4_port_is_kernel(svc, port)) {
				if (port->mode == CONFIG_MODE_KERNEL)
					pr_warn("%s/%s port %u: more than %d endpoints of one family, "
						"too many for kernel mode; the proxy serves it",
						svc->namespace, svc->name, port->port,
						SHOAL_KL4_MAX_ENDPOINTS);
				continue;
			}
			for (int family = 4; family <= 6; family += 2) {
				struct kl4_want *x;
				uint32_t m = 0;

				if (n == cap) {
					struct kl4_want *grown;

					cap = cap ? 2 * cap : 8;
					grown = realloc(w, cap * sizeof(*w));
					if (!grown) {
						free(w);
						return -ENOMEM;
					}
					w = grown;
				}
				x = &w[n];
				memset(x, 0, sizeof(*x));
				x->key.svc_id = svc->id;
				x->key.port = htons(port->port);
				x->key.family = (uint8_t)family;
				for (int e = 0; e < svc->n_endpoints; e++) {
					const struct config_endpoint *ep = &svc->endpoints[e];

					if (!ep_family_is(ep, family))
						continue;
					x->set.endpoints[m].ip = ep->addr;
					x->set.endpoints[m].port = htons(port->target_port);
					m++;
				}
				if (!m)
					continue; /* no set: connects of that family go untouched */
				x->set.n = m;
				x->cap = m * svc->resilience.max_ejection_pct / 100;
				n++;
			}
		}
	}
	if (n)
		qsort(w, n, sizeof(*w), set_key_cmp);
	*out = w;
	*n_out = n;
	return 0;
}

/*
 * The endpoints of sets (unique, sorted), carrying over the breaker state
 * of those in old. 0 or -ENOMEM.
 */
static int build_eps(const struct config *cfg, const struct kl4_want *sets, size_t n_sets,
		     struct kl4_ep *old, size_t n_old, struct kl4_ep **out, size_t *n_out)
{
	struct kl4_ep *e;
	size_t n = 0, total = 0, u = 0;

	for (size_t i = 0; i < n_sets; i++)
		total += sets[i].set.n;
	e = calloc(total ? total : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < n_sets; i++) {
		/* A service's id is its index in cfg->services. */
		const struct config_service *svc = sets[i].key.svc_id < (uint32_t)cfg->n_services
							   ? cfg->services[sets[i].key.svc_id]
							   : NULL;

		for (uint32_t j = 0; j < sets[i].set.n; j++) {
			struct kl4_ep *x = &e[n++];

			x->key.ip = sets[i].set.endpoints[j].ip;
			x->key.port = sets[i].set.endpoints[j].port;
			if (svc) {
				x->threshold = svc->resilience.consecutive_failures;
				x->backoff_min_ns =
				    (uint64_t)svc->resilience.breaker_backoff_min_ms * 1000000ull;
				x->backoff_max_ns =
				    (uint64_t)svc->resilience.breaker_backoff_max_ms * 1000000ull;
			}
		}
	}
	/* Sort and keep the first of each key (a stable choice of knobs:
	 * qsort is not stable, but every copy's knobs are valid ones). */
	if (n)
		qsort(e, n, sizeof(*e), ep_key_cmp);
	for (size_t i = 0; i < n; i++) {
		struct kl4_ep *was;

		if (u && !ep_key_cmp(&e[u - 1], &e[i]))
			continue;
		e[u] = e[i];
		was = ep_find(old, n_old, &e[u].key);
		if (was) {
			e[u].ejected_until_ns = was->ejected_until_ns;
			e[u].backoff_ns = was->backoff_ns;
			e[u].failures_seen = was->failures_seen;
			e[u].established_seen = was->established_seen;
		}
		u++;
	}
	*out = e;
	*n_out = u;
	return 0;
}

/* Put the breaker's ejections into each set, within its cap. */
static void apply_ejections(struct kl4 *k, uint64_t now_ns)
{
	for (size_t i = 0; i < k->n_sets; i++) {
		struct kl4_want *w = &k->sets[i];
		uint32_t out = 0;

		for (uint32_t j = 0; j < w->set.n; j++) {
			struct shoal_kl4_endpoint *se = &w->set.endpoints[j];
			struct shoal_kl4_cost_key key = { .ip = se->ip, .port = se->port };
			struct kl4_ep *ep = ep_find(k->eps, k->n_eps, &key);
			uint64_t until = 0;

			if (ep && ep->ejected_until_ns > now_ns && out < w->cap) {
				until = ep->ejected_until_ns;
				out++;
			}
			/* An ejection that ran out stays as it was written: the
			 * kernel compares it with its clock, and a rewrite would
			 * be for nothing. */
			if (until != se->ejected_until_boot_ns &&
			    (until || se->ejected_until_boot_ns > now_ns)) {
				se->ejected_until_boot_ns = until;
				w->written = false;
			}
		}
	}
}

/* Write the sets not yet written. 0 or the first -errno (after logging). */
static int write_sets(struct kl4 *k)
{
	int err = 0;

	for (size_t i = 0; i < k->n_sets; i++) {
		struct kl4_want *w = &k->sets[i];

		if (w->written)
			continue;
		if (bpf_map_update_elem(k->sets_fd, &w->key, &w->set, BPF_ANY) < 0) {
			if (!err) {
				err = -errno;
				pr_warn("cannot write the kernel-mode endpoints of service id %u port "
					"%u (IPv%u) to shoal_kl4_sets: %s%s",
					w->key.svc_id, ntohs(w->key.port), w->key.family,
					strerror(-err), err == -E2BIG ? " (map full)" : "");
			}
			continue;
		}
		w->written = true;
	}
	return err;
}

int kl4_publish(struct kl4 *k, const struct config *cfg)
{
	struct kl4_want *sets, *old_sets = k->sets;
	struct kl4_ep *eps, *old_eps = k->eps;
	size_t n_sets, n_eps, n_old_sets = k->n_sets, n_old_eps = k->n_eps;
	struct shoal_kl4_cost zero = {};
	bool first = !k->published;
	int err;

	err = build_sets(cfg, &sets, &n_sets);
	if (err)
		return err;
	err = build_eps(cfg, sets, n_sets, old_eps, n_old_eps, &eps, &n_eps);
	if (err) {
		free(sets);
		return err;
	}
	/* Cost entries first, so that no set names an endpoint whose cost the
	 * kernel cannot find. An entry that exists (an endpoint that stays,
	 * or an earlier agent's) keeps its cost. */
	for (size_t i = 0; i < n_eps; i++) {
		if (!first && ep_find(old_eps, n_old_eps, &eps[i].key))
			continue;
		if (bpf_map_update_elem(k->costs_fd, &eps[i].key, &zero, BPF_NOEXIST) < 0 &&
		    errno != EEXIST && !err) {
			err = -errno;
			pr_warn("cannot add a kernel-mode endpoint to shoal_kl4_costs: %s%s",
				strerror(-err), err == -E2BIG ? " (map full)" : "");
		}
	}
	k->sets = sets;
	k->n_sets = n_sets;
	k->eps = eps;
	k->n_eps = n_eps;
	apply_ejections(k, env_boot_ns());
	/* A set equal to the one written before needs no write. */
	for (size_t i = 0; i < n_sets; i++) {
		struct kl4_want *was =
		    find_sorted(&sets[i], old_sets, n_old_sets, sizeof(*old_sets), set_key_cmp);

		sets[i].written = was && was->written &&
				  !memcmp(&was->set, &sets[i].set, sizeof(sets[i].set));
	}
	if (!err)
		err = write_sets(k);
	else
		write_sets(k);
	/* What is gone: from our copy, or, the first time, from the maps
	 * (an earlier agent's entries). Sets go before the costs they name. */
	if (first) {
		struct shoal_kl4_set_key sk, snext;
		struct shoal_kl4_cost_key ck, cnext;
		bool walking = false;

		while (bpf_map_get_next_key(k->sets_fd, walking ? &sk : NULL, &snext) == 0) {
			struct kl4_want probe = { .key = snext };

			sk = snext;
			walking = true;
			if (!find_sorted(&probe, sets, n_sets, sizeof(*sets), set_key_cmp))
				bpf_map_delete_elem(k->sets_fd, &snext);
		}
		walking = false;
		while (bpf_map_get_next_key(k->costs_fd, walking ? &ck : NULL, &cnext) == 0) {
			ck = cnext;
			walking = true;
			if (!ep_find(eps, n_eps, &cnext))
				bpf_map_delete_elem(k->costs_fd, &cnext);
		}
	} else {
		for (size_t i = 0; i < n_old_sets; i++) {
			if (!find_sorted(&old_sets[i], sets, n_sets, sizeof(*sets), set_key_cmp))
				bpf_map_delete_elem(k->sets_fd, &old_sets[i].key);
		}
		for (size_t i = 0; i < n_old_eps; i++) {
			if (!ep_find(eps, n_eps, &old_eps[i].key))
				bpf_map_delete_elem(k->costs_fd, &old_eps[i].key);
		}
	}
	free(old_sets);
	free(old_eps);
	k->published = true;
	if (n_sets || n_old_sets)
		pr_info("published %zu kernel-mode endpoint sets over %zu endpoints", n_sets, n_eps);
	return err;
}

int kl4_tick(struct kl4 *k, uint64_t now_ns)
{
	int ejected = 0;

	for (size_t i = 0; i < k->n_eps; i++) {
		struct kl4_ep *ep = &k->eps[i];
		struct shoal_kl4_cost c;

		if (bpf_map_lookup_elem(k->costs_fd, &ep->key, &c) < 0)
			continue;
		if (c.established != ep->established_seen) {
			/* A connect established since the last tick: the endpoint
			 * answers, and its next ejection starts from the minimum. */
			ep->established_seen = c.established;
			if (!c.consecutive_failures)
				ep->backoff_ns = 0;
		}
		if (!ep->threshold || c.consecutive_failures < ep->threshold ||
		    c.failures == ep->failures_seen || ep->ejected_until_ns > now_ns)
			continue;
		/* Failed again since it was let back in: the backoff doubles. */
		ep->backoff_ns = ep->backoff_ns ? 2 * ep->backoff_ns : ep->backoff_min_ns;
		if (ep->backoff_ns > ep->backoff_max_ns)
			ep->backoff_ns = ep->backoff_max_ns;
		ep->ejected_until_ns = now_ns + ep->backoff_ns;
		ep->failures_seen = c.failures;
		ejected++;
	}
	if (ejected) {
		apply_ejections(k, now_ns);
		write_sets(k);
	}
	return ejected;
}
