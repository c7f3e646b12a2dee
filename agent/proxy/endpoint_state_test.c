// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * es_table_sync at scale: proxy_update calls it on every config change,
 * so its cost at 10k services is discovery's latency floor. Builds
 * configs by hand (no parser), syncs a first and an updated config, and
 * prints the time of each; the state of a kept service must survive.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/addr.h"
#include "proxy/endpoint_state.h"

/* The scale of the discovery benchmark (scripts/bench-discovery). */
#define BENCH_SERVICES 10000
#define BENCH_ENDPOINTS 3
/*
 * A loose ceiling, far above the hashed sync (a few ms) and far below
 * the linear one (hundreds of ms), so that a slow sanitizer build passes
 * while a return to a quadratic lookup fails.
 */
#define BENCH_SYNC_MAX_MS 150

static struct es_table table;
static struct config cfg_a, cfg_b;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* n services ns-<i%100>/svc-<i>, each with BENCH_ENDPOINTS endpoints; shift moves one. */
static void cfg_build(struct config *c, int n, int shift)
{
	memset(c, 0, sizeof(*c));
	c->services = calloc(n, sizeof(*c->services));
	cr_assert_not_null(c->services);
	c->n_services = n;
	for (int i = 0; i < n; i++) {
		struct config_service *s = c->services[i] = config_service_new((uint32_t)i);
		struct config_endpoint *eps = calloc(BENCH_ENDPOINTS, sizeof(*eps));
		char ip[32];

		cr_assert(eps && s);
		snprintf(s->namespace, sizeof(s->namespace), "ns-%d", i % 100);
		snprintf(s->name, sizeof(s->name), "svc-%d", i);
		for (int k = 0; k < BENCH_ENDPOINTS; k++) {
			int h = i * BENCH_ENDPOINTS + k + (k == 0 ? shift : 0);

			snprintf(ip, sizeof(ip), "10.%d.%d.%d", (h >> 16) & 255, (h >> 8) & 255,
				 h & 255);
			cr_assert_eq(addr_parse(ip, &eps[k].addr), 0);
		}
		s->endpoints = eps;
		s->n_endpoints = BENCH_ENDPOINTS;
	}
}

static void cfg_drop(struct config *c)
{
	for (int i = 0; i < c->n_services; i++)
		config_service_put(c->services[i]); /* and its endpoints */
	free(c->services);
	memset(c, 0, sizeof(*c));
}

static void setup(void)
{
	cr_assert_eq(es_table_init(&table), 0);
}

static void teardown(void)
{
	es_table_free(&table);
	cfg_drop(&cfg_a);
	cfg_drop(&cfg_b);
}

TestSuite(endpoint_state, .init = setup, .fini = teardown, .timeout = 60);

Test(endpoint_state, sync_of_10k_services_is_fast_and_keeps_state)
{
	struct es_view *va, *vb;
	uint64_t t0, first_ns, update_ns;

	cfg_build(&cfg_a, BENCH_SERVICES, 0);
	/* The update reverses the order and gives every service a new first endpoint. */
	cfg_build(&cfg_b, BENCH_SERVICES, 1000000);
	for (int i = 0; i < BENCH_SERVICES / 2; i++) {
		struct config_service *tmp = cfg_b.services[i];

		cfg_b.services[i] = cfg_b.services[BENCH_SERVICES - 1 - i];
		cfg_b.services[BENCH_SERVICES - 1 - i] = tmp;
	}
	for (int i = 0; i < BENCH_SERVICES; i++)
		cfg_b.services[i]->id = (uint32_t)i; /* services[i]->id == i (config.h) */
	t0 = mono_ns();
	va = es_table_sync(&table, &cfg_a);
	first_ns = mono_ns() - t0;
	cr_assert_not_null(va);
	t0 = mono_ns();
	vb = es_table_sync(&table, &cfg_b);
	update_ns = mono_ns() - t0;
	cr_assert_not_null(vb);
	printf("es_table_sync, %d services x %d endpoints: first %.1f ms, update %.1f ms\n",
	       BENCH_SERVICES, BENCH_ENDPOINTS, first_ns / 1e6, update_ns / 1e6);
	fflush(stdout);

	/* Service i of a is service n-1-i of b: the same state, the kept endpoints too. */
	for (int i = 0; i < BENCH_SERVICES; i += 997) {
		const struct es_svc_view *a = es_view_at(va, (uint32_t)i),
					 *b = es_view_at(vb, (uint32_t)(BENCH_SERVICES - 1 - i));

		cr_assert_eq(a->state, b->state, "service %d lost its state", i);
		cr_assert_neq(a->ep[0], b->ep[0], "a new address is a new endpoint");
		cr_assert_eq(a->ep[1], b->ep[1]);
		cr_assert_eq(a->ep[2], b->ep[2]);
		cr_assert(!atomic_load(&a->ep[0]->live), "the endpoint that left is not live");
	}
	cr_expect_lt(update_ns / 1000000, BENCH_SYNC_MAX_MS, "update sync took %.1f ms",
		     update_ns / 1e6);
}

/*
 * One service changed between two configs: the new view shares every
 * other service's es_svc_view and every chunk but the changed one's, so
 * a view per config change costs its chunk pointers plus what changed
 * (docs/discovery.md, "Snapshots").
 */
Test(endpoint_state, consecutive_views_share_what_did_not_change)
{
	const int changed = 70; /* in chunk 1 */
	struct es_view *va, *vb;

	cfg_build(&cfg_a, BENCH_SERVICES, 0);
	cfg_build(&cfg_b, BENCH_SERVICES, 0);
	cr_assert_eq(addr_parse("192.0.2.7", &cfg_b.services[changed]->endpoints[0].addr), 0);
	va = es_table_sync(&table, &cfg_a);
	vb = es_table_sync(&table, &cfg_b);
	cr_assert_not_null(va);
	cr_assert_not_null(vb);
	for (int i = 0; i < BENCH_SERVICES; i++) {
		const struct es_svc_view *a = es_view_service(va, &cfg_a, cfg_a.services[i]);
		const struct es_svc_view *b = es_view_service(vb, &cfg_b, cfg_b.services[i]);

		cr_assert_not_null(a);
		cr_assert_not_null(b);
		if (i != changed) {
			cr_assert_eq(a, b, "unchanged service %d is not shared", i);
			continue;
		}
		cr_assert_neq(a, b, "the changed service shares its old view");
		cr_assert_eq(a->state, b->state, "the changed service lost its state");
		cr_assert_neq(a->ep[0], b->ep[0]);
		cr_assert_eq(a->ep[1], b->ep[1], "a kept endpoint lost its state");
		cr_assert(!atomic_load(&a->ep[0]->live), "the endpoint that left is still live");
	}
	cr_assert_eq(va->n_chunks, vb->n_chunks);
	for (uint32_t c = 0; c < vb->n_chunks; c++) {
		if (c == changed / ES_VIEW_CHUNK)
			cr_assert_neq(va->chunks[c], vb->chunks[c], "chunk %u", c);
		else
			cr_assert_eq(va->chunks[c], vb->chunks[c], "chunk %u is not shared", c);
	}
	/* The endpoint comes back: a new view again (not the stale first one).
	 * A synced service changes only through config_service_mut (config.h). */
	cr_assert_not_null(config_service_mut(&cfg_b, changed));
	cr_assert_eq(addr_parse("10.0.0.210", &cfg_b.services[changed]->endpoints[0].addr), 0);
	vb = es_table_sync(&table, &cfg_b);
	cr_assert_not_null(vb);
	cr_assert(atomic_load(&es_view_service(vb, &cfg_b, cfg_b.services[changed])->ep[0]->live));
	cr_assert(addr_equal(&es_view_service(vb, &cfg_b, cfg_b.services[changed])->ep[0]->addr,
			     &cfg_b.services[changed]->endpoints[0].addr),
		  "the view describes the changed service, not the one it was");
}

/*
 * Pod churn: every config change replaces one endpoint of a service with
 * a new address, and each view is retired once its snapshot goes. The
 * table must not keep every address ever seen: an endpoint is freed once
 * no view lists it, a service once no view has it. Retired views are
 * dated at 0 here, so the next sync reaps them (past ES_VIEW_GRACE_NS).
 */
Test(endpoint_state, endpoints_and_services_that_left_are_freed)
{
	const int rounds = 200;
	struct es_view *v, *prev = NULL;
	struct es_service *s;
	char ip[32];

	cfg_build(&cfg_a, 2, 0);
	for (int r = 0; r < rounds; r++) {
		snprintf(ip, sizeof(ip), "10.200.%d.%d", r / 250, r % 250 + 1);
		cr_assert_not_null(config_service_mut(&cfg_a, 0)); /* config.h: then change it */
		cr_assert_eq(addr_parse(ip, &cfg_a.services[0]->endpoints[0].addr), 0);
		v = es_table_sync(&table, &cfg_a);
		cr_assert_not_null(v);
		if (prev)
			es_view_retire(&table, prev, 0);
		prev = v;
	}
	s = es_view_at(prev, 0)->state;
	/* The live three, plus the one the newest retired view still lists. */
	cr_assert_leq(s->n_endpoints, BENCH_ENDPOINTS + 1, "%u endpoints kept of %d seen",
		      s->n_endpoints, rounds + BENCH_ENDPOINTS - 1);
	/* The kept endpoints keep their state: the same objects as before. */
	cr_assert(atomic_load(&es_view_at(prev, 0)->ep[1]->live));
	cr_assert_eq(table.n_services, 2u);

	/* Service 1 leaves the config; once the views that had it go, so does it. */
	cfg_a.n_services = 1;
	v = es_table_sync(&table, &cfg_a);
	cr_assert_not_null(v);
	es_view_retire(&table, prev, 0);
	cfg_a.n_services = 2; /* so that cfg_drop frees its endpoints */
	cr_assert_eq(table.n_services, 2u, "freed before its views were reaped");
	cfg_a.n_services = 1;
	v = es_table_sync(&table, &cfg_a); /* reaps prev */
	cfg_a.n_services = 2;
	cr_assert_not_null(v);
	cr_assert_eq(table.n_services, 1u, "a service no view has is still in the table");
	/* And it comes back as a fresh one, with state that works. */
	v = es_table_sync(&table, &cfg_a);
	cr_assert_not_null(v);
	cr_assert_eq(table.n_services, 2u);
	cr_assert_eq(es_view_at(v, 1)->state->n_endpoints, (uint32_t)BENCH_ENDPOINTS);
}

/*
 * The next config shares its services with the last (config_copy): each
 * chunk whose services are the same objects is taken as it is, without
 * the lookups and comparisons; a service changed through
 * config_service_mut is a new object and gets a new view.
 */
Test(endpoint_state, a_config_sharing_its_services_reuses_their_views)
{
	const int changed = 130; /* in chunk 2 */
	struct es_view *va, *vb;
	struct config *next;
	uint64_t t0, same_ns;

	cfg_build(&cfg_a, BENCH_SERVICES, 0);
	va = es_table_sync(&table, &cfg_a);
	cr_assert_not_null(va);
	cr_assert_eq(config_copy(&cfg_a, cfg_a.n_services, &next), 0);
	t0 = mono_ns();
	vb = es_table_sync(&table, next);
	same_ns = mono_ns() - t0;
	cr_assert_not_null(vb);
	for (uint32_t c = 0; c < vb->n_chunks; c++)
		cr_assert_eq(va->chunks[c], vb->chunks[c], "chunk %u is not shared", c);
	printf("es_table_sync, %d services, all shared: %.2f ms\n", BENCH_SERVICES, same_ns / 1e6);

	cr_assert_not_null(config_service_mut(next, changed));
	cr_assert_neq(next->services[changed], cfg_a.services[changed]);
	cr_assert_eq(addr_parse("192.0.2.9", &next->services[changed]->endpoints[0].addr), 0);
	va = vb;
	vb = es_table_sync(&table, next);
	cr_assert_not_null(vb);
	for (uint32_t c = 0; c < vb->n_chunks; c++) {
		if (c == changed / ES_VIEW_CHUNK)
			cr_assert_neq(va->chunks[c], vb->chunks[c], "chunk %u", c);
		else
			cr_assert_eq(va->chunks[c], vb->chunks[c], "chunk %u is not shared", c);
	}
	cr_assert(addr_equal(&es_view_service(vb, next, next->services[changed])->ep[0]->addr,
			     &next->services[changed]->endpoints[0].addr));
	cr_assert_eq(es_view_service(vb, next, next->services[changed])->state,
		     es_view_at(va, changed)->state, "the changed service kept its state");
	config_free(next);
}
