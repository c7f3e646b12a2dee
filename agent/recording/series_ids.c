// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "recording/series_ids.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Hash buckets of namespace/name (a power of two): one per id at the cap. */
#define SERIES_IDS_BUCKETS 16384

_Static_assert((SERIES_IDS_BUCKETS & (SERIES_IDS_BUCKETS - 1)) == 0,
	       "SERIES_IDS_BUCKETS must be a power of two");

struct series_svc {
	char ns[CONFIG_MAX_NAME + 1];
	char name[CONFIG_MAX_NAME + 1];
	uint32_t next;	     /* hash chain, by id; 0 ends it */
	uint64_t gen;	     /* the last publish that held it */
	uint64_t removed_ns; /* when a publish first lacked it; 0 while live */
	char (*routes)[SERIES_IDS_ROUTE_LABEL_MAX]; /* route id - 1 -> label */
	uint32_t n_routes, cap_routes;
	bool routes_warned;
};

struct series_ids {
	pthread_mutex_t lock;	/* publish against scrapes */
	struct series_svc *svc; /* by id - 1; SERIES_IDS_MAX_SERVICES, zero pages until used */
	uint32_t n;
	uint32_t buckets[SERIES_IDS_BUCKETS]; /* first id of the chain; 0: empty */
	uint64_t gen;
	bool full_warned;
};

struct series_ids *series_ids_new(void)
{
	struct series_ids *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->svc = calloc(SERIES_IDS_MAX_SERVICES, sizeof(*r->svc));
	if (!r->svc) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	return r;
}

void series_ids_free(struct series_ids *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->n; i++)
		free(r->svc[i].routes);
	free(r->svc);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* FNV-1a of namespace '/' name. */
static uint32_t name_hash(const char *ns, const char *name)
{
	uint32_t h = 2166136261u;

	for (const char *c = ns; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (const char *c = name; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	return h;
}

/* The id of ns/name, given now when new; 0 when the registry is full. Lock held. */
static uint32_t svc_id(struct series_ids *r, const char *ns, const char *name)
{
	uint32_t b = name_hash(ns, name) & (SERIES_IDS_BUCKETS - 1);
	struct series_svc *e;

	for (uint32_t id = r->buckets[b]; id; id = r->svc[id - 1].next)
		if (!strcmp(r->svc[id - 1].ns, ns) && !strcmp(r->svc[id - 1].name, name))
			return id;
	if (r->n == SERIES_IDS_MAX_SERVICES) {
		if (!r->full_warned)
			pr_warn("metrics: %u services seen, the most series ids there are: %s/%s "
				"and later new services are not recorded until a restart",
				SERIES_IDS_MAX_SERVICES, ns, name);
		r->full_warned = true;
		return 0;
	}
	e = &r->svc[r->n++];
	snprintf(e->ns, sizeof(e->ns), "%s", ns);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->next = r->buckets[b];
	r->buckets[b] = r->n;
	return r->n;
}

/* The id of route label within e, given now when new; 0 when full. Lock held. */
static uint32_t route_id(struct series_svc *e, const char *label)
{
	for (uint32_t i = 0; i < e->n_routes; i++)
		if (!strcmp(e->routes[i], label))
			return i + 1;
	if (e->n_routes == SERIES_IDS_MAX_ROUTES) {
		if (!e->routes_warned)
			pr_warn("metrics: %s/%s: %u route names seen, the most per service: "
				"route %s is recorded as no route",
				e->ns, e->name, SERIES_IDS_MAX_ROUTES, label);
		e->routes_warned = true;
		return 0;
	}
	if (e->n_routes == e->cap_routes) {
		uint32_t cap = e->cap_routes ? 2 * e->cap_routes : 4;
		void *grown;

		if (cap > SERIES_IDS_MAX_ROUTES)
			cap = SERIES_IDS_MAX_ROUTES;
		grown = realloc(e->routes, cap * sizeof(*e->routes));
		if (!grown)
			return 0;
		e->routes = grown;
		e->cap_routes = cap;
	}
	snprintf(e->routes[e->n_routes], sizeof(e->routes[0]), "%s", label);
	return ++e->n_routes;
}

/* Set *field to v unless it holds v already (a shared, published struct). */
static void set_id(uint32_t *field, uint32_t v)
{
	if (*field != v)
		*field = v;
}

void series_ids_publish(struct series_ids *r, struct config *cfg, uint64_t now_ns)
{
	pthread_mutex_lock(&r->lock);
	r->gen++;
	for (int i = 0; i < cfg->n_services; i++) {
		struct config_service *s = cfg->services[i];
		uint32_t id = s->name[0] ? svc_id(r, s->namespace, s->name) : 0;
		struct series_svc *e = id ? &r->svc[id - 1] : NULL;

		set_id(&s->metrics_id, id);
		if (e) {
			e->gen = r->gen;
			e->removed_ns = 0;
		}
		for (int j = 0; j < s->n_routes; j++) {
			struct config_route *rt = &s->routes[j];
			char label[SERIES_IDS_ROUTE_LABEL_MAX];

			/* An unnamed route is named by its position, which the config fixes. */
			if (rt->name[0])
				snprintf(label, sizeof(label), "%s", rt->name);
			else
				snprintf(label, sizeof(label), "route-%d", j + 1);
			set_id(&rt->metrics_id, e ? route_id(e, label) : 0);
		}
	}
	for (uint32_t i = 0; i < r->n; i++)
		if (r->svc[i].gen != r->gen && !r->svc[i].removed_ns)
			r->svc[i].removed_ns = now_ns ? now_ns : 1;
	pthread_mutex_unlock(&r->lock);
}

bool series_ids_service(struct series_ids *r, uint32_t id, uint64_t now_ns, char *label, size_t len)
{
	bool ok = false;

	pthread_mutex_lock(&r->lock);
	if (id && id <= r->n) {
		const struct series_svc *e = &r->svc[id - 1];

		ok = !e->removed_ns || now_ns < e->removed_ns + SERIES_IDS_GRACE_NS;
		if (label)
			snprintf(label, len, "%s/%s", e->ns, e->name);
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

void series_ids_route(struct series_ids *r, uint32_t svc, uint32_t route, char *label, size_t len)
{
	label[0] = '\0';
	pthread_mutex_lock(&r->lock);
	if (svc && svc <= r->n && route && route <= r->svc[svc - 1].n_routes)
		snprintf(label, len, "%s", r->svc[svc - 1].routes[route - 1]);
	pthread_mutex_unlock(&r->lock);
}

uint32_t series_ids_count(struct series_ids *r)
{
	uint32_t n;

	pthread_mutex_lock(&r->lock);
	n = r->n;
	pthread_mutex_unlock(&r->lock);
	return n;
}
