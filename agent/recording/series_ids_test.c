// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Series ids: stable by namespace/name across configs, removed ones kept for the grace period. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "recording/series_ids.h"

static struct series_ids *r;
static struct config_service svcs[3];
static struct config_service *svc_list[3] = {&svcs[0], &svcs[1], &svcs[2]}; /* cfg.services */
static struct config_route routes[2];
static struct config cfg;

static void setup(void)
{
	r = series_ids_new();
	cr_assert_not_null(r);
	memset(svcs, 0, sizeof(svcs));
	memset(routes, 0, sizeof(routes));
	memset(&cfg, 0, sizeof(cfg));
	cfg.services = svc_list;
}

static void teardown(void)
{
	series_ids_free(r);
}

TestSuite(series_ids, .init = setup, .fini = teardown);

static void name(int i, const char *ns, const char *n)
{
	snprintf(svcs[i].namespace, sizeof(svcs[i].namespace), "%s", ns);
	snprintf(svcs[i].name, sizeof(svcs[i].name), "%s", n);
	svcs[i].metrics_id = 0;
}

static const char *label(uint32_t id, uint64_t now)
{
	static char buf[SERIES_IDS_SERVICE_LABEL_MAX];

	return series_ids_service(r, id, now, buf, sizeof(buf)) ? buf : NULL;
}

Test(series_ids, a_reordered_config_keeps_each_services_id)
{
	uint32_t a, b;

	name(0, "default", "alpha");
	name(1, "default", "beta");
	cfg.n_services = 2;
	series_ids_publish(r, &cfg, 1);
	a = svcs[0].metrics_id;
	b = svcs[1].metrics_id;
	cr_assert(a && b && a != b);
	name(0, "default", "beta");
	name(1, "default", "alpha");
	series_ids_publish(r, &cfg, 2);
	cr_expect_eq(svcs[0].metrics_id, b);
	cr_expect_eq(svcs[1].metrics_id, a);
	cr_expect_str_eq(label(a, 2), "default/alpha");
	cr_expect_str_eq(label(b, 2), "default/beta");
	cr_expect_eq(series_ids_count(r), 2);
}

Test(series_ids, vacant_entries_get_none_and_removed_services_leave_after_the_grace)
{
	uint64_t t0 = 1000;
	uint32_t a;

	name(0, "shop", "api");
	name(1, "", ""); /* a vacant id of discovery's config */
	cfg.n_services = 2;
	series_ids_publish(r, &cfg, t0);
	a = svcs[0].metrics_id;
	cr_expect_eq(svcs[1].metrics_id, 0);
	name(0, "shop", "db");
	cfg.n_services = 1;
	series_ids_publish(r, &cfg, t0 + 1);
	cr_expect_neq(svcs[0].metrics_id, a, "a new service, a new id");
	cr_expect_str_eq(label(a, t0 + SERIES_IDS_GRACE_NS), "shop/api", "still in its grace");
	cr_expect_null(label(a, t0 + 1 + SERIES_IDS_GRACE_NS), "gone after it");
	/* It comes back: the same id, exported again. */
	name(0, "shop", "api");
	series_ids_publish(r, &cfg, t0 + 2 * SERIES_IDS_GRACE_NS);
	cr_expect_eq(svcs[0].metrics_id, a);
	cr_expect_str_eq(label(a, t0 + 2 * SERIES_IDS_GRACE_NS), "shop/api");
	cr_expect_null(label(0, t0), "id 0 is no service");
}

Test(series_ids, routes_are_labelled_by_name_or_position)
{
	char buf[SERIES_IDS_ROUTE_LABEL_MAX];
	uint32_t slow;

	name(0, "default", "api");
	svcs[0].routes = routes;
	svcs[0].n_routes = 2;
	strcpy(routes[0].name, "slow");
	cfg.n_services = 1;
	series_ids_publish(r, &cfg, 1);
	slow = routes[0].metrics_id;
	series_ids_route(r, svcs[0].metrics_id, slow, buf, sizeof(buf));
	cr_expect_str_eq(buf, "slow");
	series_ids_route(r, svcs[0].metrics_id, routes[1].metrics_id, buf, sizeof(buf));
	cr_expect_str_eq(buf, "route-2");
	/* Swapped: "slow" keeps its id at its new position. */
	strcpy(routes[1].name, "slow");
	strcpy(routes[0].name, "fast");
	series_ids_publish(r, &cfg, 2);
	cr_expect_eq(routes[1].metrics_id, slow);
	series_ids_route(r, svcs[0].metrics_id, routes[0].metrics_id, buf, sizeof(buf));
	cr_expect_str_eq(buf, "fast");
}
