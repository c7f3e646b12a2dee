// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/endpoint_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/addr.h"
#include "common/log.h"
#include "resilience/backoff.h"
#include "resilience/deadline.h"

#define ES_NS_PER_MS 1000000ull

/* CLOCK_MONOTONIC in ns: the clock the proxy's timers use. */
static uint64_t es_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int es_table_init(struct es_table *t)
{
	memset(t, 0, sizeof(*t));
	return -pthread_mutex_init(&t->lock, NULL);
}

static uint64_t es_addr_hash(const struct shoal_addr *a);

/* Unlink endpoint *pp (on s's list) from s and free it. Under t->lock. */
static void es_endpoint_free(struct es_service *s, struct es_endpoint **pp)
{
	struct es_endpoint *e = *pp, **hp;

	*pp = e->next;
	for (hp = &s->ep_buckets[es_addr_hash(&e->addr) & (s->n_ep_buckets - 1)]; *hp;
	     hp = &(*hp)->hash_next) {
		if (*hp == e) {
			*hp = e->hash_next;
			break;
		}
	}
	s->n_endpoints--;
	breaker_fini(&e->breaker);
	free(e);
}

/* Free s's endpoints that no view lists and the newest config lacks. Under t->lock. */
static void es_service_sweep(struct es_service *s)
{
	struct es_endpoint **pp = &s->endpoints;

	while (*pp) {
		if (!(*pp)->sv_refs && !atomic_load(&(*pp)->live))
			es_endpoint_free(s, pp);
		else
			pp = &(*pp)->next;
	}
}

/* Unlink s (no view has it) from t and free it with its endpoints. Under t->lock. */
static void es_service_free(struct es_table *t, struct es_service *s)
{
	struct es_service **pp;

	for (pp = &t->services; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	for (pp = &t->svc_buckets[s->hash & (t->n_svc_buckets - 1)]; *pp; pp = &(*pp)->hash_next) {
		if (*pp == s) {
			*pp = s->hash_next;
			break;
		}
	}
	t->n_services--;
	while (s->endpoints)
		es_endpoint_free(s, &s->endpoints);
	free(s->ep_buckets);
	free(atomic_load(&s->budget));
	free(s);
}

/*
 * Free sv, which no chunk holds any more, and whatever only it listed:
 * its service when no other view has it, else the endpoints that left.
 * Under t->lock (or no thread left).
 */
static void es_svc_view_free(struct es_table *t, struct es_svc_view *sv)
{
	struct es_service *s = sv->state;

	for (uint32_t i = 0; sv->ep && i < sv->n_endpoints; i++)
		if (sv->ep[i])
			sv->ep[i]->sv_refs--;
	free(sv->ep);
	free(sv);
	if (!s)
		return;
	if (s->last_sv == sv)
		s->last_sv = NULL;
	if (!--s->n_sv)
		es_service_free(t, s);
	else
		es_service_sweep(s);
}

/* Drop v's references to its chunks, and theirs to their services; free v. */
static void es_view_free(struct es_table *t, struct es_view *v)
{
	for (uint32_t c = 0; c < v->n_chunks; c++) {
		struct es_view_chunk *ch = v->chunks[c];

		if (!ch || --ch->refs)
			continue;
		for (uint32_t j = 0; j < ES_VIEW_CHUNK; j++)
			if (ch->svc[j] && !--ch->svc[j]->refs)
				es_svc_view_free(t, ch->svc[j]);
		free(ch);
	}
	free(v->chunks);
	free(v);
}

void es_view_retire(struct es_table *t, struct es_view *v, uint64_t now_ns)
{
	struct es_view **pp;

	pthread_mutex_lock(&t->lock);
	for (pp = &t->views; *pp && *pp != v; pp = &(*pp)->older)
		;
	if (*pp) {
		*pp = v->older;
		v->retired_ns = now_ns;
		v->older = t->retired;
		t->retired = v;
	}
	pthread_mutex_unlock(&t->lock);
}

/* Free the retired views past their grace time. Under t->lock. */
static void es_table_reap(struct es_table *t, uint64_t now_ns)
{
	struct es_view **pp = &t->retired;

	while (*pp) {
		struct es_view *v = *pp;

		if (now_ns - v->retired_ns >= ES_VIEW_GRACE_NS) {
			*pp = v->older;
			es_view_free(t, v);
		} else {
			pp = &v->older;
		}
	}
}

void es_table_free(struct es_table *t)
{
	struct es_service *s, *sn;
	struct es_view *v, *vn;

	for (v = t->views; v; v = vn) {
		vn = v->older;
		es_view_free(t, v);
	}
	for (v = t->retired; v; v = vn) {
		vn = v->older;
		es_view_free(t, v);
	}
	for (s = t->services; s; s = sn) {
		struct es_endpoint *e, *en;

		sn = s->next;
		for (e = s->endpoints; e; e = en) {
			en = e->next;
			breaker_fini(&e->breaker);
			free(e);
		}
		free(s->ep_buckets);
		free(atomic_load(&s->budget));
		free(s);
	}
	for (uint32_t i = 0; i < t->n_old_budgets; i++)
		free(t->old_budgets[i]);
	free(t->svc_buckets);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

int es_svc_view_cfg(struct es_svc_view *sv, const struct config_resilience *in)
{
	struct config_resilience def;
	const struct config_resilience *r = in;

	if (!r->decay_ms) {
		config_resilience_default(&def);
		r = &def;
	}
	sv->ewma_cfg = (struct peak_ewma_cfg){
	    .default_rtt_ns = r->default_rtt_ms * ES_NS_PER_MS,
	    .tau_ns = r->decay_ms * ES_NS_PER_MS,
	    .failure_penalty_ns = r->failure_penalty_ms * ES_NS_PER_MS,
	    .penalty_duration_ns = r->penalty_ms * ES_NS_PER_MS,
	    .retry_after_cap_ns = r->retry_after_cap_ms * ES_NS_PER_MS,
	};
	sv->breaker_cfg = (struct breaker_cfg){
	    .consecutive_failures = r->consecutive_failures,
	    .backoff_min_ns = r->breaker_backoff_min_ms * ES_NS_PER_MS,
	    .backoff_max_ns = r->breaker_backoff_max_ms * ES_NS_PER_MS,
	    .jitter = r->jitter_pct / 100.0,
	    .success_rate_pct = r->success_rate_pct,
	    .success_rate_window_ns = r->success_rate_window_ms * ES_NS_PER_MS,
	    .success_rate_min_requests = r->success_rate_min_requests,
	    .max_ejection_pct = r->max_ejection_pct,
	};
	retry_policy_cfg_default(&sv->retry_cfg);
	sv->retry_cfg.max_retries = r->max_retries;
	sv->retry_cfg.max_body_bytes = r->max_body_bytes;
	sv->retry_cfg.connect_any_method = r->connect_any_method;
	sv->backoff_base_ns = r->backoff_base_ms * ES_NS_PER_MS;
	sv->backoff_max_ns = r->backoff_max_ms * ES_NS_PER_MS;
	sv->fail_fast_ns = r->fail_fast_ms * ES_NS_PER_MS;
	sv->explore_after_ns = r->explore_after_ms * ES_NS_PER_MS;
	sv->connect_timeout_ns = r->connect_timeout_ms * ES_NS_PER_MS;
	sv->request_timeout_ns = r->request_timeout_ms * ES_NS_PER_MS;
	sv->per_try_timeout_ns = r->per_try_timeout_ms * ES_NS_PER_MS;
	sv->idle_timeout_ns = r->idle_timeout_ms * ES_NS_PER_MS;
	if (peak_ewma_cfg_check(&sv->ewma_cfg) || breaker_cfg_check(&sv->breaker_cfg) ||
	    retry_policy_cfg_check(&sv->retry_cfg))
		return -EINVAL;
	return 0;
}

/* The budget knobs of r (zeroed: defaults). */
static void es_budget_cfg(const struct config_resilience *r, struct retry_budget_cfg *out)
{
	if (!r->decay_ms) {
		retry_budget_cfg_default(out);
		return;
	}
	out->ratio_milli = r->budget_ratio_pct * 10;
	out->min_per_s = r->budget_min_per_s;
	out->ttl_ns = (uint64_t)r->budget_window_ms * ES_NS_PER_MS;
}

/* FNV-1a, 64 bits, over len bytes of p, continuing from h. */
static uint64_t es_hash(uint64_t h, const void *p, size_t len)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < len; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

#define ES_HASH_INIT 0xcbf29ce484222325ull

/* The hash of namespace/name; '\0' separates them (a name has none). */
static uint64_t es_svc_hash(const char *namespace, const char *name)
{
	uint64_t h = es_hash(ES_HASH_INIT, namespace, strlen(namespace) + 1);

	return es_hash(h, name, strlen(name));
}

static uint64_t es_addr_hash(const struct shoal_addr *a)
{
	return es_hash(ES_HASH_INIT, a->ip6, sizeof(a->ip6));
}

/*
 * Double t's service buckets when its services outnumber them (or make
 * the first ones). 0, or -ENOMEM when there are no buckets at all; a
 * failed resize keeps the old ones, which still work. Under t->lock.
 */
static int es_svc_buckets_grow(struct es_table *t)
{
	uint32_t n = t->n_svc_buckets ? t->n_svc_buckets * 2 : ES_SVC_BUCKETS_MIN;
	struct es_service **b;

	if (t->n_svc_buckets && t->n_services <= t->n_svc_buckets)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return t->n_svc_buckets ? 0 : -ENOMEM;
	for (struct es_service *s = t->services; s; s = s->next) {
		struct es_service **head = &b[s->hash & (n - 1)];

		s->hash_next = *head;
		*head = s;
	}
	free(t->svc_buckets);
	t->svc_buckets = b;
	t->n_svc_buckets = n;
	return 0;
}

/* The same for s's endpoint buckets. Under the table's lock. */
static int es_ep_buckets_grow(struct es_service *s)
{
	uint32_t n = s->n_ep_buckets ? s->n_ep_buckets * 2 : ES_EP_BUCKETS_MIN;
	struct es_endpoint **b;

	if (s->n_ep_buckets && s->n_endpoints <= s->n_ep_buckets)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return s->n_ep_buckets ? 0 : -ENOMEM;
	for (struct es_endpoint *e = s->endpoints; e; e = e->next) {
		struct es_endpoint **head = &b[es_addr_hash(&e->addr) & (n - 1)];

		e->hash_next = *head;
		*head = e;
	}
	free(s->ep_buckets);
	s->ep_buckets = b;
	s->n_ep_buckets = n;
	return 0;
}

/* The service named like svc, created (with its budget) when new. Under t->lock. */
static struct es_service *es_service_get(struct es_table *t, const struct config_service *svc,
					 const struct retry_budget_cfg *bcfg,
					 const struct breaker_cfg *brcfg)
{
	uint64_t hash = es_svc_hash(svc->namespace, svc->name);
	struct es_service *s, **head;
	struct retry_budget *b;

	if (es_svc_buckets_grow(t))
		return NULL;
	for (s = t->svc_buckets[hash & (t->n_svc_buckets - 1)]; s; s = s->hash_next)
		if (s->hash == hash && !strcmp(s->name, svc->name) &&
		    !strcmp(s->namespace, svc->namespace))
			return s;
	s = calloc(1, sizeof(*s));
	b = calloc(1, sizeof(*b));
	if (!s || !b || retry_budget_init(b, bcfg)) {
		free(s);
		free(b);
		return NULL;
	}
	snprintf(s->namespace, sizeof(s->namespace), "%s", svc->namespace);
	snprintf(s->name, sizeof(s->name), "%s", svc->name);
	atomic_init(&s->budget, b);
	s->budget_cfg = *bcfg;
	breaker_group_init(&s->group, brcfg, 0);
	if (es_ep_buckets_grow(s)) { /* the group holds no resources */
		free(s);
		free(b);
		return NULL;
	}
	s->hash = hash;
	s->next = t->services;
	t->services = s;
	head = &t->svc_buckets[hash & (t->n_svc_buckets - 1)];
	s->hash_next = *head;
	*head = s;
	t->n_services++;
	return s;
}

/* Replace s's budget when its knobs changed. Under t->lock. */
static void es_budget_update(struct es_table *t, struct es_service *s,
			     const struct retry_budget_cfg *bcfg)
{
	struct retry_budget *b;

	if (!memcmp(&s->budget_cfg, bcfg, sizeof(*bcfg)))
		return;
	if (t->n_old_budgets == ES_MAX_OLD_BUDGETS) {
		pr_warn("proxy: %s/%s: too many retry budget changes; keeping the old budget",
			s->namespace, s->name);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b || retry_budget_init(b, bcfg)) {
		free(b);
		return;
	}
	t->old_budgets[t->n_old_budgets++] = atomic_exchange(&s->budget, b);
	s->budget_cfg = *bcfg;
}

/* The endpoint of s at addr, created when new. Under t->lock. */
static struct es_endpoint *es_endpoint_get(struct es_service *s, const struct shoal_addr *addr,
					   const struct es_svc_view *sv, uint64_t now)
{
	uint64_t hash = es_addr_hash(addr);
	struct es_endpoint *e, **head;

	for (e = s->ep_buckets[hash & (s->n_ep_buckets - 1)]; e; e = e->hash_next)
		if (addr_equal(&e->addr, addr))
			return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	if (breaker_init(&e->breaker, &sv->breaker_cfg, &s->group)) {
		free(e);
		return NULL;
	}
	e->addr = *addr;
	e->svc = s;
	if (atomic_load(&s->peer_measured))
		peak_ewma_init_at(&e->ewma, atomic_load(&s->peer_ns), now);
	else
		peak_ewma_init(&e->ewma, &sv->ewma_cfg, now);
	e->next = s->endpoints;
	s->endpoints = e;
	head = &s->ep_buckets[hash & (s->n_ep_buckets - 1)];
	e->hash_next = *head;
	*head = e;
	s->n_endpoints++;
	es_ep_buckets_grow(s); /* a failed resize keeps working buckets */
	return e;
}

/*
 * e left the service: give back its ejection slot, or a pod that crashed
 * (ejected, then removed by discovery) would hold it for good and the
 * service would soon eject nothing. breaker_fini() cannot be used: a
 * worker on an older view may still record into e, so the breaker is
 * closed in place, under its lock, as group_release() would. A late probe
 * outcome is then ignored; a late failure of a request sent before the
 * removal can still eject it again (rare, and undone on the next sync).
 */
static void es_endpoint_retire(struct es_endpoint *e)
{
	struct breaker *br = &e->breaker;
	struct breaker_group *g = br->group;

	pthread_mutex_lock(&br->lock);
	if (atomic_load(&br->state) != BREAKER_CLOSED) {
		uint32_t n = atomic_load(&g->ejected);

		atomic_store(&br->state, BREAKER_CLOSED);
		br->consecutive = 0;
		while (n && !atomic_compare_exchange_weak(&g->ejected, &n, n - 1))
			;
	}
	pthread_mutex_unlock(&br->lock);
}

/* Fill sv for service svc of a config. Under t->lock. 0 or -errno. */
static int es_svc_view_build(struct es_table *t, const struct config_service *svc,
			     struct es_svc_view *sv, uint64_t now)
{
	struct retry_budget_cfg bcfg;
	struct es_service *s;
	struct es_endpoint *e;
	uint32_t n = svc->n_endpoints > 0 ? (uint32_t)svc->n_endpoints : 0;

	if (es_svc_view_cfg(sv, &svc->resilience)) {
		pr_warn("proxy: %s/%s: resilience settings refused by the balancer or breaker",
			svc->namespace, svc->name);
		return -EINVAL;
	}
	es_budget_cfg(&svc->resilience, &bcfg);
	if (retry_budget_cfg_check(&bcfg)) {
		pr_warn("proxy: %s/%s: retry budget settings refused", svc->namespace, svc->name);
		return -EINVAL;
	}
	s = es_service_get(t, svc, &bcfg, &sv->breaker_cfg);
	if (!s)
		return -ENOMEM;
	es_budget_update(t, s, &bcfg);
	if (!atomic_load(&s->peer_ns))
		atomic_store(&s->peer_ns, sv->ewma_cfg.default_rtt_ns);
	sv->state = s;
	s->n_sv++;
	sv->budget = atomic_load(&s->budget);
	sv->n_endpoints = n;
	sv->ep = calloc(n ? n : 1, sizeof(*sv->ep));
	if (!sv->ep)
		return -ENOMEM;
	for (e = s->endpoints; e; e = e->next)
		e->was_live = atomic_exchange(&e->live, false);
	for (uint32_t i = 0; i < n; i++) {
		sv->ep[i] = es_endpoint_get(s, &svc->endpoints[i].addr, sv, now);
		if (!sv->ep[i])
			return -ENOMEM;
		sv->ep[i]->sv_refs++;
		/* Back after a removal: its old record is stale, start from
		 * the peers' like a new endpoint (listed twice: once). */
		if (!sv->ep[i]->was_live && !atomic_exchange(&sv->ep[i]->live, true) &&
		    atomic_load(&s->peer_measured))
			peak_ewma_reset(&sv->ep[i]->ewma, atomic_load(&s->peer_ns), now);
		atomic_store(&sv->ep[i]->live, true);
	}
	for (e = s->endpoints; e; e = e->next)
		if (e->was_live && !atomic_load(&e->live))
			es_endpoint_retire(e);
	es_service_sweep(s);
	s->n_live = n;
	atomic_store(&s->group.max_ejection_pct, sv->breaker_cfg.max_ejection_pct);
	breaker_group_resize(&s->group, n);
	return 0;
}

/* Whether sv, built for an earlier config, still describes svc. Under t->lock. */
static bool es_svc_view_same(const struct es_svc_view *sv, const struct config_service *svc)
{
	if (sv->n_endpoints != (uint32_t)(svc->n_endpoints > 0 ? svc->n_endpoints : 0) ||
	    memcmp(&sv->res, &svc->resilience, sizeof(sv->res)) ||
	    sv->budget != atomic_load(&sv->state->budget))
		return false;
	for (uint32_t i = 0; i < sv->n_endpoints; i++)
		if (!addr_equal(&sv->ep[i]->addr, &svc->endpoints[i].addr) ||
		    !atomic_load(&sv->ep[i]->live))
			return false;
	return true;
}

/*
 * The view of svc for a new config: the service's newest one when svc is
 * unchanged since (same endpoints in the same order, same knobs), else a
 * new one (refs 0 until a chunk takes it). Under t->lock. 0 or -errno.
 */
static int es_svc_view_get(struct es_table *t, const struct config_service *svc,
			   struct es_svc_view **out, uint64_t now)
{
	uint64_t hash = es_svc_hash(svc->namespace, svc->name);
	struct es_svc_view *sv;
	int err;

	for (struct es_service *s = t->n_svc_buckets ? t->svc_buckets[hash & (t->n_svc_buckets - 1)]
						     : NULL;
	     s; s = s->hash_next) {
		if (s->hash == hash && !strcmp(s->name, svc->name) &&
		    !strcmp(s->namespace, svc->namespace)) {
			if (s->last_sv && es_svc_view_same(s->last_sv, svc)) {
				s->last_sv->from_serial = svc->serial;
				*out = s->last_sv;
				return 0;
			}
			break;
		}
	}
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	err = es_svc_view_build(t, svc, sv, now);
	if (err) {
		es_svc_view_free(t, sv);
		return err;
	}
	sv->res = svc->resilience;
	sv->from_serial = svc->serial;
	sv->state->last_sv = sv;
	*out = sv;
	return 0;
}

/*
 * Chunk ch of an earlier view describes chunk c of v (of cfg) as it is:
 * each service is the very object (serial) its view was built from, and
 * that view is still its service's newest, with the same budget and its
 * endpoints live; what es_svc_view_same would say, without the lookup
 * by name and the comparisons. Under t->lock.
 */
static bool es_view_chunk_unchanged(const struct es_view_chunk *ch, const struct config *cfg,
				    const struct es_view *v, uint32_t c)
{
	for (uint32_t j = 0; j < ES_VIEW_CHUNK; j++) {
		uint32_t i = c * ES_VIEW_CHUNK + j;
		const struct es_svc_view *sv = ch->svc[j];

		if (i >= v->n_services) {
			if (sv)
				return false;
			continue;
		}
		if (!sv || !sv->state || !sv->from_serial ||
		    sv->from_serial != cfg->services[i]->serial || sv->state->last_sv != sv ||
		    sv->budget != atomic_load(&sv->state->budget))
			return false;
		for (uint32_t e = 0; e < sv->n_endpoints; e++)
			if (!atomic_load(&sv->ep[e]->live))
				return false;
	}
	return true;
}

/*
 * Chunk c of view v of cfg: prev's chunk c when it holds the same
 * services, else a new one. Under t->lock. 0 or -errno (the chunk then
 * holds what was built before the error, or is NULL).
 */
static int es_view_chunk_build(struct es_table *t, const struct config *cfg, struct es_view *v,
			       const struct es_view *prev, uint32_t c, uint64_t now)
{
	struct es_svc_view *svc[ES_VIEW_CHUNK] = {0};
	struct es_view_chunk *ch;
	int err = 0;

	if (prev && c < prev->n_chunks && prev->chunks[c] &&
	    es_view_chunk_unchanged(prev->chunks[c], cfg, v, c)) {
		v->chunks[c] = prev->chunks[c];
		v->chunks[c]->refs++;
		return 0;
	}
	for (uint32_t j = 0; j < ES_VIEW_CHUNK && !err; j++) {
		uint32_t i = c * ES_VIEW_CHUNK + j;

		if (i < v->n_services)
			err = es_svc_view_get(t, cfg->services[i], &svc[j], now);
	}
	if (!err && prev && c < prev->n_chunks && prev->chunks[c] &&
	    !memcmp(prev->chunks[c]->svc, svc, sizeof(svc))) {
		v->chunks[c] = prev->chunks[c];
		v->chunks[c]->refs++;
		return 0;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		for (uint32_t j = 0; j < ES_VIEW_CHUNK; j++)
			if (svc[j] && !svc[j]->refs)
				es_svc_view_free(t, svc[j]);
		return -ENOMEM;
	}
	memcpy(ch->svc, svc, sizeof(svc));
	for (uint32_t j = 0; j < ES_VIEW_CHUNK; j++)
		if (ch->svc[j])
			ch->svc[j]->refs++;
	ch->refs = 1;
	v->chunks[c] = ch;
	return err;
}

struct es_view *es_table_sync(struct es_table *t, const struct config *cfg)
{
	uint32_t n = cfg->n_services > 0 ? (uint32_t)cfg->n_services : 0;
	uint64_t now = es_now_ns();
	struct es_view *v;
	int err = 0;

	v = calloc(1, sizeof(*v));
	if (!v) {
		errno = ENOMEM;
		return NULL;
	}
	v->cfg = cfg;
	v->n_services = n;
	v->n_chunks = (n + ES_VIEW_CHUNK - 1) / ES_VIEW_CHUNK;
	v->chunks = calloc(v->n_chunks ? v->n_chunks : 1, sizeof(*v->chunks));
	if (!v->chunks) {
		free(v);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&t->lock);
	es_table_reap(t, now);
	/* The newest view so far: the one the previous config change built. */
	for (uint32_t c = 0; c < v->n_chunks && !err; c++)
		err = es_view_chunk_build(t, cfg, v, t->views, c, now);
	/* Even a failed view joins the list: its state is the table's now. */
	v->older = t->views;
	t->views = v;
	pthread_mutex_unlock(&t->lock);
	if (err) {
		errno = -err;
		return NULL;
	}
	return v;
}

const struct es_svc_view *es_view_service(const struct es_view *v, const struct config *cfg,
					  const struct config_service *svc)
{
	if (!v || v->cfg != cfg || !svc || svc->id >= v->n_services ||
	    cfg->services[svc->id] != svc)
		return NULL;
	return es_view_at(v, svc->id);
}

void es_endpoint_read(const struct es_svc_view *sv, uint32_t idx, uint64_t now_ns,
		      struct proxy_endpoint_stats *out)
{
	struct es_endpoint *e;

	memset(out, 0, sizeof(*out));
	if (idx >= sv->n_endpoints)
		return;
	e = sv->ep[idx];
	out->estimate_ns = peak_ewma_estimate(&e->ewma, &sv->ewma_cfg, now_ns,
					      (double)atomic_load(&sv->state->peer_ns));
	out->pending = peak_ewma_pending(&e->ewma);
	out->penalised = peak_ewma_penalised(&e->ewma, now_ns);
	out->explorations = atomic_load_explicit(&e->explorations, memory_order_relaxed);
	out->succeeded = atomic_load_explicit(&e->succeeded, memory_order_relaxed);
	out->failed = atomic_load_explicit(&e->failed, memory_order_relaxed);
	breaker_snapshot(&e->breaker, now_ns, &out->breaker);
}

void es_view_log(const struct es_view *v, uint64_t now_ns)
{
	for (uint32_t i = 0; v && i < v->n_services; i++) {
		const struct es_svc_view *sv = es_view_at(v, i);
		struct proxy_service_stats ss;

		if (!sv)
			continue;

		es_service_read(sv, now_ns, &ss);
		pr_info(
		    "resilience: %s/%s: budget %llu retries, %u of %u endpoints ejected "
		    "(cap %u); requests %llu retries %llu refused %llu deadline %llu "
		    "no-candidate %llu ejections %llu readmissions %llu",
		    sv->state->namespace, sv->state->name, (unsigned long long)ss.budget_balance,
		    ss.ejected, sv->n_endpoints, ss.ejection_cap, (unsigned long long)ss.requests,
		    (unsigned long long)ss.retries, (unsigned long long)ss.retries_refused,
		    (unsigned long long)ss.deadline_exceeded, (unsigned long long)ss.no_candidate,
		    (unsigned long long)ss.ejections, (unsigned long long)ss.readmissions);
		for (uint32_t k = 0; k < sv->n_endpoints; k++) {
			struct proxy_endpoint_stats es;
			char addr[ADDR_STR_MAX];

			es_endpoint_read(sv, k, now_ns, &es);
			pr_info("resilience: %s/%s: endpoint %s: estimate %.3f ms%s, %u pending, "
				"%llu explorations, breaker %s (%u failures in a row, %u/%u ok in "
				"the window, %llu ejections)",
				sv->state->namespace, sv->state->name,
				addr_ntop(&sv->ep[k]->addr, addr, sizeof(addr)),
				es.estimate_ns / 1e6, es.penalised ? " (penalised)" : "",
				es.pending, (unsigned long long)es.explorations,
				breaker_state_name(es.breaker.state), es.breaker.consecutive,
				es.breaker.window_ok, es.breaker.window_ok + es.breaker.window_fail,
				(unsigned long long)es.breaker.ejections);
		}
	}
}

void es_service_read(const struct es_svc_view *sv, uint64_t now_ns, struct proxy_service_stats *out)
{
	struct es_service *s = sv->state;

	memset(out, 0, sizeof(*out));
	out->budget_balance = retry_budget_balance(sv->budget, now_ns);
	out->ejected = atomic_load(&s->group.ejected);
	out->ejection_cap = breaker_group_cap(&s->group);
	out->ejections_refused = atomic_load(&s->group.refused);
	out->requests = atomic_load(&s->requests);
	out->retries = atomic_load(&s->retries);
	out->retries_refused = atomic_load(&s->retries_refused);
	out->deadline_exceeded = atomic_load(&s->deadline_exceeded);
	out->no_candidate = atomic_load(&s->no_candidate);
	out->ejections = atomic_load(&s->ejections);
	out->readmissions = atomic_load(&s->readmissions);
}
